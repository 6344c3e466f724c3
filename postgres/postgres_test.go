package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/internal/pgtest"
	"github.com/iu-engine/iu/postgres"
	"github.com/iu-engine/iu/storetest"
)

// envDSN names the server the tests use. Unset, they skip; set but
// unreachable, they fail.
const envDSN = pgtest.EnvDSN

// serverDSN returns the test server's DSN or skips the test.
func serverDSN(t testing.TB) string { return pgtest.DSN(t) }

func withSearchPath(t testing.TB, dsn, schema string) string {
	return pgtest.WithSearchPath(t, dsn, schema)
}

// freshSchema creates a schema of its own for one test, dropped by the
// test's cleanup, and returns a DSN that uses it.
func freshSchema(t testing.TB) string { return pgtest.Schema(t, pgtest.DSN(t), "iu_test_") }

// dsns remembers each store's DSN, for Reopen.
var dsns sync.Map // *postgres.Store -> string

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dsns.Store(s, dsn)
	t.Cleanup(func() {
		dsns.Delete(s)
		s.Close()
	})
	return s
}

func harness() storetest.Harness {
	return storetest.Harness{
		Open: func(t *testing.T) iu.Store { return open(t, freshSchema(t)) },
		Exec: func(t *testing.T, s iu.Store, query string) {
			t.Helper()
			if err := postgres.ExecRaw(context.Background(), s.(*postgres.Store), query); err != nil {
				t.Fatalf("exec %q: %v", query, err)
			}
		},
		Count: func(t *testing.T, s iu.Store, query string) int64 {
			t.Helper()
			n, err := postgres.CountRaw(context.Background(), s.(*postgres.Store), query)
			if err != nil {
				t.Fatalf("count %q: %v", query, err)
			}
			return n
		},
		Reopen: func(t *testing.T, s iu.Store) iu.Store {
			dsn, ok := dsns.Load(s.(*postgres.Store))
			if !ok {
				t.Fatal("reopen: store was not opened by this harness")
			}
			return open(t, dsn.(string))
		},
		DownTo: func(t *testing.T, s iu.Store, version int64) {
			t.Helper()
			if err := postgres.DownTo(context.Background(), s.(*postgres.Store), version); err != nil {
				t.Fatalf("down to %d: %v", version, err)
			}
		},
		Blank: func(t *testing.T) storetest.Location {
			dsn := freshSchema(t)
			return storetest.Location{
				Exec: func(query string) error {
					ctx := context.Background()
					c, err := pgx.Connect(ctx, dsn)
					if err != nil {
						return err
					}
					defer c.Close(ctx)
					_, err = c.Exec(ctx, query)
					return err
				},
				Open: func(mustExist bool) (iu.Store, error) {
					s, err := postgres.Open(context.Background(), dsn, postgres.Options{MustExist: mustExist})
					if err == nil {
						t.Cleanup(func() { s.Close() })
					}
					return s, err
				},
			}
		},
	}
}

func TestConformance(t *testing.T) {
	serverDSN(t)
	storetest.Exercise(t, harness())
}

// An unreachable server is named with its host and database, and the
// password is not repeated. This needs no server: nothing listens on port 1.
func TestUnreachableServerIsNamed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://alice:s3cret-pw@127.0.0.1:1/inventory?sslmode=disable&connect_timeout=5", postgres.Options{})
	if !errors.Is(err, iu.ErrUnavailable) || iu.ErrorCode(err) != iu.CodeUnavailable {
		t.Fatalf("open of an unreachable server: %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	for _, want := range []string{"127.0.0.1:1", `"inventory"`, "refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "s3cret-pw") || strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") {
		t.Errorf("message %q leaks the password or a trace", msg)
	}
}

func TestBadDSNIsRefused(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(context.Background(), "postgres://alice:s3cret-pw@127.0.0.1:notaport/db", postgres.Options{})
	if !errors.Is(err, iu.ErrInvalidInput) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("bad DSN: %v", err)
	}
}

func TestWrongCredentialsAreNamed(t *testing.T) {
	t.Parallel()
	dsn, cfg := serverDSNWith(t, map[string]string{"user": "iu_no_such_role", "password": "s3cret-pw"})
	_, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if !errors.Is(err, iu.ErrUnavailable) {
		t.Fatalf("open as an unknown role: %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	for _, want := range []string{cfg.Host, "iu_no_such_role", cfg.Database} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "s3cret-pw") {
		t.Errorf("message %q leaks the password", msg)
	}
}

// serverDSNWith returns the test server's DSN with some settings replaced
// (libpq's names: user, password, dbname), as a URL or as key=value pairs,
// whichever the DSN is, and the settings it names.
func serverDSNWith(t *testing.T, set map[string]string) (string, *pgconn.Config) {
	t.Helper()
	dsn := serverDSN(t)
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		pw, _ := u.User.Password()
		user := u.User.Username()
		for k, v := range set {
			switch k {
			case "user":
				user = v
			case "password":
				pw = v
			case "dbname":
				u.Path = "/" + v
			default:
				t.Fatalf("serverDSNWith: %s", k)
			}
		}
		if _, ok := set["user"]; ok {
			u.User = url.UserPassword(user, pw)
		}
		dsn = u.String()
	} else {
		// In key=value form a later setting replaces an earlier one.
		for k, v := range set {
			dsn += " " + k + "=" + v
		}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return dsn, &cfg.Config
}

func TestMissingDatabaseIsNamed(t *testing.T) {
	t.Parallel()
	dsn, _ := serverDSNWith(t, map[string]string{"dbname": "iu_no_such_database"})
	_, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if !errors.Is(err, iu.ErrUnavailable) || !strings.Contains(err.Error(), "iu_no_such_database") {
		t.Fatalf("open of a missing database: %v", err)
	}
}

func TestMissingSchemaIsNamed(t *testing.T) {
	t.Parallel()
	dsn := withSearchPath(t, serverDSN(t), "iu_no_such_schema")
	_, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if !errors.Is(err, iu.ErrUnavailable) || !strings.Contains(err.Error(), "iu_no_such_schema") {
		t.Fatalf("open with a missing schema: %v", err)
	}
}

func TestDescribeHasNoPassword(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	u, _ := url.Parse(dsn)
	s := open(t, dsn)
	d := s.Describe()
	if !strings.HasPrefix(d, "postgres://"+u.Host+u.Path) || !strings.Contains(d, "search_path=iu_test_") {
		t.Fatalf("Describe() = %q", d)
	}
	if p, ok := u.User.Password(); ok && p != "" && strings.Contains(d, p) {
		t.Fatalf("Describe() = %q shows the password", d)
	}
}
