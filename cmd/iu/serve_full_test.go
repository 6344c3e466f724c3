package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A full disk answers an ingest client in words ("the store is full") and a
// request id, and never with the store's path or SQLite's text, which go to
// the server's log only. The store lives on a real filesystem of 1 MiB (a
// tmpfs, which takes root to mount: the test says so and skips without).
func TestServeDiskFullAnswersInWords(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem takes root; the answer's wording is tested without one in package http")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the answer's wording is tested without one in package http", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s := startServer(t, filepath.Join(dir, "iu.db"))
	s.setup()
	ingest := s.token("ingest")
	data := fmt.Sprintf(`{"note": %q}`, strings.Repeat("x", 64<<10))
	for i := range 200 {
		r := s.binary(ingest, map[string]string{"Id": fmt.Sprintf("full-%d", i), "Iutemplate": wfKey}, data)
		if r.status == 201 {
			continue
		}
		if r.status != 503 || r.errorCode(t) != "unavailable" {
			t.Fatalf("event %d: %d %s, want 503 unavailable", i, r.status, r.body)
		}
		body := string(r.body)
		for _, leak := range []string{dir, "iu.db", "disk full", "database or disk", "sqlite"} {
			if strings.Contains(body, leak) {
				t.Fatalf("the answer to a full disk says %q: %s", leak, body)
			}
		}
		if !strings.Contains(body, "the store is full") || !strings.Contains(body, "(request ") || r.header.Get("Retry-After") == "" {
			t.Fatalf("the answer to a full disk: %s", body)
		}
		noInternals(t, "disk full", r)
		return
	}
	t.Fatal("200 events of 64 KiB fit in 1 MiB: the disk never filled")
}
