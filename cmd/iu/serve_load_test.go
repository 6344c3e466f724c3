package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iu-engine/iu"
)

// post sends one binary-mode event and returns the status (0 when the
// request failed at the transport).
func post(hc *nethttp.Client, url, token, id, template, data string) (int, string) {
	req, _ := nethttp.NewRequest("POST", url+"/v1/events", strings.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "load")
	req.Header.Set("Ce-Type", "load.test")
	req.Header.Set("Ce-Iuactor", "load")
	if template != "" {
		req.Header.Set("Ce-Iutemplate", template)
	}
	if data != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Graceful shutdown with requests in flight: every event that got a 2xx is
// in the store exactly once afterwards, and none is there twice.
func TestServeGracefulShutdown(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db, "--batch-wait", "5ms")
		s.setup()
		tok := s.token(iu.ScopeIngest)
		const workers = 16
		var mu sync.Mutex
		ok := map[string]int{}
		refused := 0
		var wg sync.WaitGroup
		started := make(chan struct{}, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := newTestClient()
				for i := 0; ; i++ {
					id := fmt.Sprintf("sd-%d-%d", w, i)
					status, _ := post(hc, s.url, tok, id, wfKey, `{"w":`+strconv.Itoa(w)+`}`)
					if i == 0 {
						started <- struct{}{}
					}
					mu.Lock()
					switch {
					case status == 201 || status == 200:
						ok[id]++
					case status == 0 || status == 503:
						refused++
					default:
						mu.Unlock()
						t.Errorf("event %s: status %d", id, status)
						return
					}
					mu.Unlock()
					if status == 0 || i > 5000 {
						return
					}
				}
			}()
		}
		for range workers {
			<-started
		}
		time.Sleep(200 * time.Millisecond)
		if err := s.m.Close(); err != nil {
			t.Fatalf("graceful shutdown: %v (iu serve would not exit 0)", err)
		}
		wg.Wait()
		if len(ok) < workers {
			t.Fatalf("only %d events answered before shutdown", len(ok))
		}
		// Read what was committed on a store of our own.
		st, err := openStore(context.Background(), db, true)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stored := map[string]int{}
		e := iu.NewEngine(st)
		_, err = eachPage(context.Background(), "", 0, func(ctx context.Context, r iu.PageRequest) (iu.Page[iu.InstanceRow], error) {
			return e.Instances(ctx, iu.InstanceFilter{Actor: "load", PageRequest: r})
		}, func(rows []iu.InstanceRow) error {
			for _, r := range rows {
				stored[r.EventID]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for id, n := range ok {
			if n != 1 {
				t.Fatalf("event %s was answered %d times", id, n)
			}
			if stored[id] != 1 {
				t.Fatalf("event %s got a 2xx but is stored %d times", id, stored[id])
			}
		}
		for id, n := range stored {
			if n != 1 {
				t.Fatalf("event %s is stored %d times", id, n)
			}
			if ok[id] == 0 {
				t.Errorf("event %s is stored but its producer got no 2xx (it would resend it and get replayed)", id)
			}
		}
		t.Logf("%d events committed and answered before shutdown, %d refused or cut off", len(ok), refused)
	})
}

// Group commit under concurrent load: new events, duplicates of one
// another, conflicts, invalid events, unknown templates and unmatched
// events, all at once. Each gets its own right answer, the duplicates make
// one instance each, and transactions hold more than one event.
func TestServeGroupCommitUnderLoad(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db, "--batch-wait", "3ms")
		s.setup()
		tok := s.token(iu.ScopeIngest)
		// An event to conflict with, stored before the load.
		if st, body := post(s.hc, s.url, tok, "pre-1", wfKey, `{"v":1}`); st != 201 {
			t.Fatalf("pre-1: %d %s", st, body)
		}
		const workers, per = 24, 30
		type answer struct {
			kind, id string
			status   int
			body     string
		}
		answers := make(chan answer, workers*per)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := newTestClient()
				for i := range per {
					var kind, id, tpl, data string
					switch (w + i) % 8 {
					case 0, 1, 2:
						kind, id, tpl, data = "fresh", fmt.Sprintf("f-%d-%d", w, i), wfKey, `{"n":1}`
					case 3, 4:
						kind, id, tpl, data = "dup", fmt.Sprintf("d-%d", i%5), fileKey, `{"same":true}`
					case 5:
						kind, id, tpl, data = "conflict", "pre-1", wfKey, fmt.Sprintf(`{"v":%d}`, 100+w)
					case 6:
						kind, id, tpl, data = "invalid", fmt.Sprintf("i-%d-%d", w, i), wfKey, `{"broken":`
					case 7:
						if i%2 == 0 {
							kind, id, tpl = "unknown", fmt.Sprintf("u-%d-%d", w, i), "tpl:wf:missing/v1"
						} else {
							kind, id = "unmatched", fmt.Sprintf("x-%d-%d", w, i)
						}
					}
					st, body := post(hc, s.url, tok, id, tpl, data)
					answers <- answer{kind, id, st, body}
				}
			}()
		}
		wg.Wait()
		close(answers)
		want := map[string]int{"fresh": 201, "conflict": 409, "invalid": 400, "unknown": 404, "unmatched": 422}
		created := map[string]int{}
		fresh := 0
		for a := range answers {
			if a.kind == "dup" {
				switch a.status {
				case 201:
					created[a.id]++
				case 200:
				default:
					t.Fatalf("duplicate %s: %d %s", a.id, a.status, a.body)
				}
				continue
			}
			if a.status != want[a.kind] {
				t.Fatalf("%s event %s: %d, want %d: %s", a.kind, a.id, a.status, want[a.kind], a.body)
			}
			if a.kind == "fresh" {
				fresh++
			}
		}
		for id, n := range created {
			if n != 1 {
				t.Fatalf("duplicate %s was created %d times", id, n)
			}
		}
		if len(created) != 5 {
			t.Fatalf("%d duplicated events were created, want 5", len(created))
		}
		if n := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); n != int64(fresh+5+1) {
			t.Fatalf("%d log rows, want %d fresh + 5 duplicated + 1", n, fresh)
		}
		rep, err := s.m.Engine.Verify(context.Background(), "")
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %+v %v", rep, err)
		}
		m := s.do("GET", "/metrics", s.admin, nil, nil)
		sum, count := metricValue(t, m.body, "iu_batch_size_events_sum"), metricValue(t, m.body, "iu_batch_size_events_count")
		if count >= sum {
			t.Fatalf("group commit did not group: %v requests in %v transactions", sum, count)
		}
		t.Logf("%v emit requests in %v transactions", sum, count)
		if n := metricValue(t, m.body, "iu_batch_pending_events"); n != 0 {
			t.Fatalf("%v requests pending once every one is answered", n)
		}
	})
}

func metricValue(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	for _, l := range bytes.Split(body, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
