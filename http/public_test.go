package http

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// An answer never carries what only the operator should see: the store's
// file path, the database's host and name, a driver's words. It names the
// problem in words of its own, with the request id that finds the rest in
// the server's log.
func TestPublicErrorsHideInternals(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{iu.Errorf(iu.ErrStoreFull, "/srv/secret/iu.db: disk full: database or disk is full (13)"), "the store is full"},
		{iu.Errorf(iu.ErrStoreFull, "PostgreSQL at db.internal:5432, database \"prod\", is out of disk space: could not extend file"), "the store is full"},
		{iu.Errorf(iu.ErrUnavailable, "cannot reach PostgreSQL at db.internal:5432, database \"prod\": dial tcp 10.0.0.5:5432: connect: connection refused"), "the database is unavailable"},
		{fmt.Errorf("%w (%w)", iu.Errorf(iu.ErrUnavailable, "lost the connection to PostgreSQL at db.internal:5432, database \"prod\": EOF"), iu.ErrRetryable), "the database is unavailable"},
		{iu.Errorf(iu.ErrStoreBusy, "/srv/secret/iu.db is busy: database is locked (5); try again"), "the store is busy"},
		{iu.Errorf(iu.ErrRetryable, "postgres://db.internal:5432/prod: could not serialize access (SQLSTATE 40001)"), "the store could not complete the transaction"},
		{iu.Errorf(iu.ErrShuttingDown, "the server is shutting down"), "the server is shutting down"},
		{errors.New("sqlite: SELECT * FROM iu_piece: no such table /srv/secret/iu.db"), "internal error"},
	}
	for _, c := range cases {
		body := publicError(c.err, "req-42")
		for _, secret := range []string{"/srv/secret", "db.internal", "prod", "10.0.0.5", "SQLSTATE", "(13)", "(5)", "SELECT", "EOF"} {
			if strings.Contains(body.Message, secret) {
				t.Errorf("%v: the answer %q says %q", c.err, body.Message, secret)
			}
		}
		if !strings.HasPrefix(body.Message, c.want) || !strings.Contains(body.Message, "req-42") {
			t.Errorf("%v: the answer %q, want it to start %q and name the request", c.err, body.Message, c.want)
		}
		if body.Code != iu.ErrorCode(c.err) {
			t.Errorf("%v: code %s, want %s", c.err, body.Code, iu.ErrorCode(c.err))
		}
	}
	// Bad input is the client's own business: its message is said as it is.
	bad := iu.Errorf(iu.ErrInvalidEvent, "invalid event \"e-1\": type is required")
	if body := publicError(bad, "req-1"); body.Message != bad.Error() {
		t.Errorf("an invalid event answers %q, want %q", body.Message, bad.Error())
	}
}
