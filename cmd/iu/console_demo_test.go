package main

import (
	"context"
	"io"
	nethttp "net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// iu demo --serve tells the seed story, then serves the console on the
// demo's store, printing where and a token that signs in, until Ctrl-C.
func TestDemoServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--serve", "--addr", "127.0.0.1:0"}, strings.NewReader(""), &out, &errs)
	}()
	re := regexp.MustCompile(`Open (http://127\.0\.0\.1:\d+)/ and sign in with this admin token:\s+(iu_\S+)`)
	var m []string
	for deadline := time.Now().Add(30 * time.Second); m == nil; time.Sleep(20 * time.Millisecond) {
		m = re.FindStringSubmatch(out.String())
		select {
		case code := <-done:
			t.Fatalf("iu demo --serve exited with %d before serving:\n%s\n%s", code, out.String(), errs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("iu demo --serve printed no URL and token:\n%s\n%s", out.String(), errs.String())
		}
	}
	if !strings.Contains(out.String(), "12 matches / 0 diverges / 12 total") {
		t.Errorf("the seed story was not told first:\n%s", out.String())
	}
	base, secret := m[1], m[2]
	jar, _ := cookiejar.New(nil)
	hc := &nethttp.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if csrf == nil {
		t.Fatalf("no sign-in form:\n%s", page)
	}
	resp, err = hc.PostForm(base+"/signin", url.Values{"csrf": {string(csrf[1])}, "token": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "tpl:wf:onboarding/v2") || !strings.Contains(string(page), "demo-admin") {
		t.Fatalf("the overview after signing in with the printed token: %d\n%s", resp.StatusCode, page)
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("iu demo --serve exited with %d after Ctrl-C:\n%s", code, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("iu demo --serve did not stop after Ctrl-C")
	}
}
