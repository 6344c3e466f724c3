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

// iu serve mounts the console at / and leaves the API's paths to the API;
// --console=false serves the API alone.
func TestServeMountsConsole(t *testing.T) {
	noRedirect := &nethttp.Client{Timeout: 10 * time.Second, CheckRedirect: func(*nethttp.Request, []*nethttp.Request) error { return nethttp.ErrUseLastResponse }}
	get := func(base, path string) (int, string, string) {
		t.Helper()
		resp, err := noRedirect.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	db := t.TempDir() + "/iu.db"
	s := startServer(t, db)
	for _, c := range []struct {
		path, ctype string
		status      int
	}{
		{"/", "", nethttp.StatusSeeOther},                                 // to the sign-in page
		{"/signin", "text/html; charset=utf-8", 200},                      // the console
		{"/nowhere", "text/html; charset=utf-8", 404},                     // a console page that is not there
		{"/v1/nowhere", "application/json", 404},                          // the API's 404, in JSON
		{"/healthz", "", 200},                                             // the API's
		{"/openapi.json", "application/json", 200},                        // the API's
		{"/v1/templates", "application/json", nethttp.StatusUnauthorized}, // the API's, needing a bearer token
	} {
		status, ctype, body := get(s.url, c.path)
		if status != c.status || c.ctype != "" && !strings.HasPrefix(ctype, c.ctype) {
			t.Errorf("GET %s: %d %q, want %d %q\n%s", c.path, status, ctype, c.status, c.ctype, body)
		}
	}
	s.m.Close()

	off := startServer(t, t.TempDir()+"/iu.db", "--console=false")
	if status, ctype, _ := get(off.url, "/"); status != 404 || !strings.HasPrefix(ctype, "application/json") {
		t.Errorf("--console=false: GET / is %d %q, want the API's JSON 404", status, ctype)
	}
}
