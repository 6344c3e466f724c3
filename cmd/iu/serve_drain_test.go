package main

import (
	"bytes"
	"context"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	iuhttp "github.com/iu-engine/iu/http"
)

// drainServer publishes a template, opens the gates and starts iu serve on
// a unix socket with --drain-delay delay; it returns a client, the server's
// base URL, its admin token, its store, a stop func (the first signal) and
// the exit code's channel.
func drainServer(t *testing.T, delay time.Duration) (hc *nethttp.Client, base, token, db string, stop func(), done chan int) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "iu.db")
	sock, tokenFile := filepath.Join(dir, "iu.sock"), filepath.Join(dir, "admin.token")
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done = make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--db", db, "serve", "--addr", "unix:" + sock, "--drain-delay", delay.String(),
			"--admin-token-file", tokenFile, "--log-level", "warn"}, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	}()
	tr := &nethttp.Transport{}
	base, err := iuhttp.Target("unix:"+sock, tr)
	if err != nil {
		t.Fatal(err)
	}
	hc = &nethttp.Client{Transport: tr, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(10 * time.Second); readyz(hc, base) != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("iu serve did not become ready")
		}
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return hc, base, strings.TrimSpace(string(b)), db, cancel, done
}

func readyz(hc *nethttp.Client, base string) int {
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// With --drain-delay, a stop signal first turns /readyz to 503 while events
// are still taken, for the delay, and only then closes the listener: a load
// balancer sees the server leave before it refuses anyone.
func TestServeDrainDelay(t *testing.T) {
	// Long enough that a loaded machine still posts its event inside it;
	// the test checks the order of what happens, and that the server
	// waited at least the delay it was given.
	const delay = 3 * time.Second
	hc, base, token, db, stop, done := drainServer(t, delay)

	stopped := time.Now()
	stop()
	for deadline := time.Now().Add(10 * time.Second); readyz(hc, base) != 503; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never answered 503 while draining")
		}
	}
	if status, body := post(hc, base, token, "drain-1", wfKey, `{}`); status != 201 {
		t.Errorf("an event while draining: %d %s, want 201", status, body)
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

// A second signal during the drain ends it: an operator pressing Ctrl-C
// again does not wait out a long delay.
func TestServeDrainEndsOnSecondSignal(t *testing.T) {
	const delay = time.Minute
	hc, base, _, _, stop, done := drainServer(t, delay)
	stop()
	// /readyz turns 503 only once serve listens for the second signal.
	for deadline := time.Now().Add(10 * time.Second); readyz(hc, base) != 503; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never answered 503 after the first signal")
		}
	}
	signalled := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("iu serve exited with %d, want 0", code)
		}
		t.Logf("stopped %v after the second signal", time.Since(signalled).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("iu serve still draining 10s after a second signal (drain delay %v)", delay)
	}
}
