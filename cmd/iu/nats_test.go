package main

// End-to-end tests of the JetStream intake as the command line drives it:
// iu serve --nats (serveMain) over a real store, an in-process NATS server
// with JetStream, iu bench --nats, iu dead list and redrive.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/bench"
)

// runNATS starts an in-process NATS server with JetStream on a port of its
// own and returns its URL.
func runNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// iuMain runs the command line and returns its exit code and output.
func iuMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// waitUntil polls cond until it holds or fails the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// iu serve --nats consumes what iu bench --nats publishes: every distinct
// event once, the invalid ones in the dead-letter stream; iu dead list
// shows them; events that matched no trigger are redriven once a trigger
// exists and then commit; /readyz and /metrics cover the intake; Close
// (SIGTERM) returns no error.
func TestServeNATS(t *testing.T) {
	t.Setenv("IU_NATS_URL", "")
	forBackends(t, func(t *testing.T, db string) {
		url := runNATS(t)
		s := startServer(t, db, "--nats", url, "--nats-ack-wait", "5s")
		s.setup()

		code, out, errs := iuMain(t, "--json", "bench", "--nats", url, "-n", "400", "--dup", "0.25", "--invalid", "4",
			"--wait", "--progress", "none", "--actor", "nats-bench")
		if code != 0 {
			t.Fatalf("bench --nats: exit %d: %s%s", code, out, errs)
		}
		var rep bench.NATSReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if rep.Events != 400 || rep.Invalid != 4 || rep.Errors != 0 || rep.EventsPerSec <= 0 || rep.Distinct >= 396 {
			t.Fatalf("report %+v: want 400 events, 4 invalid, fewer distinct than valid, a rate", rep)
		}
		if got := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'nats-bench'"); got != int64(rep.Distinct) {
			t.Errorf("%d instances, want one per distinct event: %d", got, rep.Distinct)
		}

		// Events that name no template and match no trigger.
		code, out, errs = iuMain(t, "--json", "bench", "--nats", url, "-n", "3", "--dup", "0", "--triggered", "--type", "com.example.hired",
			"--wait", "--progress", "none", "--actor", "nats-trig")
		if code != 0 {
			t.Fatalf("bench --nats --triggered: exit %d: %s%s", code, out, errs)
		}
		code, out, errs = iuMain(t, "--json", "dead", "list", "--nats", url)
		if code != 0 {
			t.Fatalf("dead list: exit %d: %s%s", code, out, errs)
		}
		var dls []struct {
			Seq             uint64    `json:"seq"`
			Reason          string    `json:"reason"`
			Error           string    `json:"error"`
			EventID         string    `json:"event_id"`
			OriginalSubject string    `json:"original_subject"`
			Time            time.Time `json:"time"`
		}
		if err := json.Unmarshal([]byte(out), &dls); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		reasons := map[string]int{}
		for _, d := range dls {
			reasons[d.Reason]++
			if d.EventID == "" || d.Error == "" || d.OriginalSubject != "iu.events.bench" || d.Time.IsZero() {
				t.Errorf("dead letter %+v lacks an event id, error, subject or time", d)
			}
		}
		if reasons["invalid"] != 4 || reasons["no_trigger"] != 3 || len(dls) != 7 {
			t.Fatalf("dead letters by reason %v, want 4 invalid and 3 no_trigger", reasons)
		}
		code, out, _ = iuMain(t, "dead", "list", "--nats", url, "--reason", "no_trigger")
		if code != 0 || !strings.Contains(out, "(3 dead letters)") || !strings.Contains(out, "com.example.hired") {
			t.Errorf("dead list --reason no_trigger: exit %d:\n%s", code, out)
		}

		if _, err := s.m.Engine.AddTrigger(context.Background(), iu.Trigger{Type: "com.example.hired", Template: wfKey}, "tester"); err != nil {
			t.Fatal(err)
		}
		code, out, errs = iuMain(t, "dead", "redrive", "--nats", url, "--reason", "no_trigger")
		if code != 0 || !strings.Contains(out, "3 dead letters redriven") {
			t.Fatalf("dead redrive: exit %d: %s%s", code, out, errs)
		}
		waitUntil(t, 20*time.Second, "the redriven events to commit", func() bool {
			return s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'nats-trig'") == 3
		})
		code, out, _ = iuMain(t, "--json", "dead", "list", "--nats", url)
		if code != 0 || strings.Count(out, `"reason": "invalid"`) != 4 || strings.Contains(out, "no_trigger") {
			t.Errorf("after the redrive: exit %d, want the 4 invalid dead letters left:\n%s", code, out)
		}

		// One dead letter by its sequence: still invalid, it comes back
		// under a new one.
		var first uint64
		for _, d := range dls {
			if d.Reason == "invalid" {
				first = d.Seq
				break
			}
		}
		code, out, errs = iuMain(t, "--json", "dead", "redrive", "--nats", url, "--seq", fmt.Sprint(first))
		if code != 0 || !strings.Contains(out, `"redriven": 1`) {
			t.Fatalf("dead redrive --seq %d: exit %d: %s%s", first, code, out, errs)
		}
		waitUntil(t, 20*time.Second, "the redriven invalid event to be dead-lettered again", func() bool {
			_, out, _ := iuMain(t, "--json", "dead", "list", "--nats", url, "--reason", "invalid")
			return strings.Count(out, `"reason": "invalid"`) == 4 && !strings.Contains(out, fmt.Sprintf(`"seq": %d,`, first))
		})

		if r := s.do("GET", "/readyz", "", nil, nil); r.status != 200 {
			t.Errorf("/readyz %d: %s", r.status, r.body)
		}
		r := s.do("GET", "/metrics", s.token(iu.ScopeRead), nil, nil)
		for _, want := range []string{`iu_nats_messages_total{consumer="iu",outcome="dead_lettered",reason="invalid",stream="IU_EVENTS"} 5`,
			`iu_nats_consumer_pending_messages{consumer="iu",stream="IU_EVENTS"} 0`, "iu_nats_fetch_batch_messages_count"} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if err := s.m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// Usage errors of iu dead, and a NATS that cannot be reached: iu serve
// fails to start and leaves a new SQLite store uncreated.
func TestDeadUsageAndUnreachableNATS(t *testing.T) {
	t.Setenv("IU_NATS_URL", "")
	for _, args := range [][]string{
		{"dead", "list"},
		{"dead", "redrive", "--nats", "nats://127.0.0.1:1"},
		{"dead", "redrive", "--nats", "nats://127.0.0.1:1", "--all", "--reason", "invalid"},
		{"dead", "list", "--nats", "nats://127.0.0.1:1", "--reason", "nope"},
	} {
		if code, out, errs := iuMain(t, args...); code != exitUsage {
			t.Errorf("iu %s: exit %d, want %d: %s%s", strings.Join(args, " "), code, exitUsage, out, errs)
		}
	}
	db := t.TempDir() + "/iu.db"
	m := newServeMain(&bytes.Buffer{})
	if err := m.ParseFlags([]string{"--db", db, "--addr", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	err := m.Open(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("iu serve started without a NATS to connect to")
	}
	if !strings.Contains(err.Error(), "nats: connect to nats://127.0.0.1:1") {
		t.Errorf("error %q does not name the NATS URL", err)
	}
	if code, _, _ := iuMain(t, "--db", db, "stats"); code == 0 {
		t.Errorf("a failed start created the store %s", db)
	}
}
