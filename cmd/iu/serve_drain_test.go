package main

import (
	"bytes"
	"context"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	iuhttp "github.com/iu-engine/iu/http"
)

// With --drain-delay, a stop signal first turns /readyz to 503 while events
// are still taken, for the delay, and only then closes the listener: a load
// balancer sees the server leave before it refuses anyone.
func TestServeDrainDelay(t *testing.T) {
	dir := t.TempDir()
	db, sock, tokenFile := filepath.Join(dir, "iu.db"), filepath.Join(dir, "iu.sock"), filepath.Join(dir, "admin.token")
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	for _, args := range [][]string{
		{"--db", db, "template", "publish", filepath.Join(repo, "examples", "templates", "onboarding.yaml")},
		{"--db", db, "gate", "set", "composer_enabled=true", "auto_instantiate_enabled=true"},
	} {
		var errb bytes.Buffer
		if code := Main(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	const delay = 800 * time.Millisecond
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--db", db, "serve", "--addr", "unix:" + sock, "--drain-delay", delay.String(),
			"--admin-token-file", tokenFile, "--log-level", "warn"}, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	}()
	tr := &nethttp.Transport{}
	base, err := iuhttp.Target("unix:"+sock, tr)
	if err != nil {
		t.Fatal(err)
	}
	hc := &nethttp.Client{Transport: tr, Timeout: 5 * time.Second}
	ready := func() int {
		resp, err := hc.Get(base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(10 * time.Second); ready() != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("iu serve did not become ready")
		}
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))

	stopped := time.Now()
	stop()
	time.Sleep(delay / 4)
	if got := ready(); got != 503 {
		t.Errorf("/readyz while draining: %d, want 503", got)
	}
	if status, body := post(hc, base, token, "drain-1", wfKey, `{}`); status != 201 {
		t.Errorf("an event while draining: %d %s, want 201", status, body)
	}
	select {
	case code := <-done:
		t.Fatalf("iu serve exited (%d) %v after the signal, before its drain delay of %v", code, time.Since(stopped), delay)
	default:
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("iu serve exited with %d, want 0", code)
		}
		if took := time.Since(stopped); took < delay {
			t.Errorf("iu serve stopped %v after the signal, before its drain delay of %v", took, delay)
		}
	case <-time.After(delay + 10*time.Second):
		t.Fatal("iu serve did not stop")
	}
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"--db", db, "--json", "instances", "--actor", "load"}, strings.NewReader(""), &out, &bytes.Buffer{}); code != 0 ||
		!strings.Contains(out.String(), `"event_id": "drain-1"`) {
		t.Errorf("the event taken while draining is not in the store: exit %d\n%s", code, out.String())
	}
}
