package bench

import (
	"context"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/intake"
	"github.com/iu-engine/iu/internal/pgtest"
	"github.com/iu-engine/iu/postgres"
	"github.com/iu-engine/iu/sqlite"
)

// options are a small run's.
func options() Options {
	return Options{Events: 300, Connections: 8, Duplicates: 0.25, Mode: Binary, Template: "tpl:wf:onboarding/v2",
		Type: "iu.bench.event", Source: "iu:bench", Actor: "bench-test", Timeout: 10 * time.Second}
}

// intakeServer answers events as iu serve would, without a store: 201 for
// an event id it has not seen, 200 for a repeat; 401 without the token.
type intakeServer struct {
	t     *testing.T
	token string
	o     Options
	mu    sync.Mutex
	seen  map[string]bool
}

func (s *intakeServer) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if r.URL.Path != "/v1/events" || r.Method != nethttp.MethodPost {
		nethttp.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		nethttp.Error(w, `{"error":"no such token"}`, nethttp.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	evs, _, err := intake.Decode(r.Header, body)
	if err != nil || len(evs) != 1 || evs[0].Routing.Actor != s.o.Actor || evs[0].Routing.Template != s.o.Template {
		s.t.Errorf("the server read %+v: %v", evs, err)
		nethttp.Error(w, "bad event", nethttp.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := evs[0].Event.ID; !s.seen[id] {
		s.seen[id] = true
		w.WriteHeader(nethttp.StatusCreated)
		return
	}
	w.WriteHeader(nethttp.StatusOK)
}

// Over HTTP, on TCP and on a unix socket, every event is answered once, the
// repeats 200, each distinct event 201; a refused token fails every event
// with the answer's status and body, and Run still reports.
func TestRunServer(t *testing.T) {
	t.Parallel()
	listeners := map[string]func(t *testing.T) (net.Listener, func(*httptest.Server) string){
		"tcp": func(t *testing.T) (net.Listener, func(*httptest.Server) string) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			return must(t, l, err), func(s *httptest.Server) string { return s.URL }
		},
		"unix": func(t *testing.T) (net.Listener, func(*httptest.Server) string) {
			path := filepath.Join(t.TempDir(), "iu.sock")
			l, err := net.Listen("unix", path)
			return must(t, l, err), func(*httptest.Server) string { return "unix:" + path }
		},
	}
	for name, listen := range listeners {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := options()
			is := &intakeServer{t: t, token: "secret", o: o, seen: map[string]bool{}}
			srv := httptest.NewUnstartedServer(is)
			l, addr := listen(t)
			srv.Listener = l
			srv.Start()
			t.Cleanup(srv.Close)
			o.Server, o.Token = addr(srv), "secret"
			for _, mode := range []string{Binary, Structured} {
				o.Mode = mode
				rep, err := Run(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Target != o.Server || rep.Mode != mode || rep.Errors != 0 || rep.Statuses["200"]+rep.Statuses["201"] != o.Events ||
					rep.Statuses["200"] == 0 || rep.EventsPerSec <= 0 || rep.LatencyMS.Max <= 0 || rep.InstancePrefix == "" {
					t.Errorf("%s: report %+v", mode, rep)
				}
				is.mu.Lock()
				if len(is.seen) != rep.Statuses["201"] {
					t.Errorf("%s: the server saw %d distinct events, the report %d answers 201", mode, len(is.seen), rep.Statuses["201"])
				}
				clear(is.seen)
				is.mu.Unlock()
			}

			o.Token = "wrong"
			rep, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Errors != o.Events || len(rep.Statuses) != 0 || !strings.HasPrefix(rep.FirstError, `401 Unauthorized: {"error":"no such token"}`) {
				t.Errorf("with a refused token: %d errors, statuses %v, first %q", rep.Errors, rep.Statuses, rep.FirstError)
			}
		})
	}
}

func must(t *testing.T, l net.Listener, err error) net.Listener {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// forStores runs fn on a new SQLite store, and on a PostgreSQL schema of
// its own when IU_TEST_POSTGRES names a server.
func forStores(t *testing.T, fn func(t *testing.T, s iu.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "iu.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		s, err := postgres.Open(context.Background(), pgtest.Schema(t, pgtest.DSN(t), "iu_bench_"), postgres.Options{})
		if err != nil {
			t.Fatalf("%s is set but: %v", pgtest.EnvDSN, err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

// Run on a store drives the engine with group commit: one instance per
// distinct event, the repeats replayed, all under the run's actor. Events
// that fail are counted, not returned.
func TestRunDirect(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, s iu.Store) {
		ctx := context.Background()
		e := iu.NewEngine(s)
		tpls, err := examples.Templates()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.PublishTemplates(ctx, tpls, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "test"); err != nil {
			t.Fatal(err)
		}
		o := options()
		o.Store = s
		o.Batch = iu.BatchOptions{MaxEvents: 16, MaxWait: time.Millisecond}
		rep, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Target != s.Describe() || rep.Mode != "direct" || rep.Errors != 0 || rep.Statuses["200"]+rep.Statuses["201"] != o.Events || rep.Statuses["200"] == 0 {
			t.Fatalf("report %+v", rep)
		}
		rb, err := e.Rollback(ctx, o.Actor, false)
		if err != nil {
			t.Fatal(err)
		}
		if rb.LineageRows != int64(rep.Statuses["201"]) {
			t.Errorf("%d instances of actor %s, but %d answers 201", rb.LineageRows, o.Actor, rep.Statuses["201"])
		}

		// No trigger takes the events: each fails, and the run reports it.
		o.Triggered, o.Events = true, 20
		rep, err = Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errors != o.Events || !strings.Contains(rep.FirstError, "matches no trigger") {
			t.Errorf("triggered, with no trigger: %d errors, first %q", rep.Errors, rep.FirstError)
		}
	})
}

// Options a run cannot honour are refused before anything is sent.
func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*Options){
		"no events":      func(o *Options) { o.Events = 0 },
		"no connections": func(o *Options) { o.Connections = 0 },
		"all repeats":    func(o *Options) { o.Duplicates = 1 },
		"unknown mode":   func(o *Options) { o.Mode = "batch" },
		"no target":      func(o *Options) {},
	} {
		o := options()
		change(&o)
		if rep, err := Run(context.Background(), o); err == nil || !strings.HasPrefix(err.Error(), "bench: ") {
			t.Errorf("%s: report %+v, error %v; want a refusal", name, rep, err)
		}
	}
	o := options()
	o.Server = "http://[::1"
	if _, err := Run(context.Background(), o); err == nil {
		t.Errorf("server address %q: no error", o.Server)
	}
}
