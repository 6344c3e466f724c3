package http_test

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
)

// A server that dies during a migration (its connection closed after it
// read the request) may have moved batches: the client's error says to run
// the command again, with a progress bar or without, and keeps its kind;
// after progress, its report says how many moved. A dry run, or a server
// never reached, gets no such hint.
func TestMigrateOnABrokenConnectionSaysRunAgain(t *testing.T) {
	c := dyingServer(t, nil)
	ctx := context.Background()
	req := iu.MigrateRequest{From: "tpl:wf:a/v1", To: "tpl:wf:a/v2", Apply: true}
	for name, progress := range map[string]iu.MigrateProgress{"plain": nil, "progress": func(int64, int64) {}} {
		_, err := c.Migrate(ctx, req, progress)
		if !errors.Is(err, iu.ErrUnavailable) || !strings.Contains(err.Error(), "run the same command again") {
			t.Errorf("%s: %v, want ErrUnavailable saying to run the command again", name, err)
		}
	}
	// Broken after a frame of progress: the same.
	cm := dyingServer(t, func(w nethttp.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, `{"moved":1000,"total":5000}`+"\n")
		w.(nethttp.Flusher).Flush()
	})
	// The client knows how many moved: its report says so (the CLI tells
	// the user to run the command again with those figures).
	var seen int64
	rep, err := cm.Migrate(ctx, req, func(moved, _ int64) { seen = moved })
	if seen != 1000 || !errors.Is(err, iu.ErrUnavailable) || !strings.Contains(err.Error(), "broke during the migration") {
		t.Errorf("broken after a frame: saw %d moved, %v", seen, err)
	}
	if rep == nil || rep.Moved != 1000 || rep.Instances != 5000 || rep.From != req.From || rep.To != req.To {
		t.Errorf("broken after a frame: report %+v, want 1000 of 5000 moved", rep)
	}
	// A server that cannot be reached never had the request: no hint.
	down := httptest.NewServer(nethttp.NotFoundHandler())
	down.Close()
	cd, err := iuhttp.NewClient(down.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cd.Migrate(ctx, req, nil); !errors.Is(err, iu.ErrUnavailable) || strings.Contains(err.Error(), "again") {
		t.Errorf("server down: %v, want ErrUnavailable without the hint", err)
	}
	req.Apply = false
	if _, err := c.Migrate(ctx, req, nil); !errors.Is(err, iu.ErrUnavailable) || strings.Contains(err.Error(), "again") {
		t.Errorf("dry run: %v, want ErrUnavailable without the hint", err)
	}
}

// dyingServer returns a client of a server that reads a request, writes
// what before writes (if anything), and closes the connection, as a server
// killed in the middle of the answer.
func dyingServer(t *testing.T, before func(nethttp.ResponseWriter)) *iuhttp.Client {
	t.Helper()
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		if before != nil {
			before(w)
		}
		conn, _, err := w.(nethttp.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	c, err := iuhttp.NewClient(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
