package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// iu bench posts to a real server: every event is answered, the duplicates
// are replays, and the store holds one instance per distinct event. A token
// the server refuses fails the run with the answer's status.
func TestBenchAgainstServer(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		tokenFile := filepath.Join(t.TempDir(), "ingest.token")
		if err := os.WriteFile(tokenFile, []byte(s.token(iu.ScopeIngest)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		const n = 400
		created := 0
		for _, mode := range []string{"binary", "structured"} {
			var out, errb bytes.Buffer
			code := Main(context.Background(), []string{"--server", s.url, "--token-file", tokenFile, "--json",
				"bench", "-n", "400", "-c", "8", "--mode", mode, "--dup", "0.25", "--progress", "none", "--actor", "bench-" + mode},
				strings.NewReader(""), &out, &errb)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", mode, code, errb.String())
			}
			var rep struct {
				Events         int            `json:"events"`
				EventsPerSec   float64        `json:"events_per_second"`
				Statuses       map[string]int `json:"statuses"`
				Errors         int            `json:"errors"`
				InstancePrefix string         `json:"instance_prefix"`
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%s: %v\n%s", mode, err, out.String())
			}
			if rep.Events != n || rep.Errors != 0 || rep.Statuses["200"]+rep.Statuses["201"] != n || rep.EventsPerSec <= 0 {
				t.Fatalf("%s: report %+v, want %d events answered 200 or 201", mode, rep, n)
			}
			if rep.Statuses["200"] == 0 {
				t.Errorf("%s: no replays among %d events with a duplicate ratio of 0.25: %+v", mode, n, rep.Statuses)
			}
			got := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'bench-" + mode + "'")
			if got != int64(rep.Statuses["201"]) {
				t.Errorf("%s: %d instances of actor bench-%s, but %d answers 201", mode, got, mode, rep.Statuses["201"])
			}
			created += rep.Statuses["201"]
		}
		if got := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log"); got != int64(created) {
			t.Errorf("%d event log rows, want %d", got, created)
		}

		before := s.snapshot()
		var out, errb bytes.Buffer
		code := Main(context.Background(), []string{"--server", s.url, "--token", "iu_not-a-token", "bench", "-n", "5", "-c", "2", "--progress", "none"},
			strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "401 Unauthorized") {
			t.Errorf("bench with a refused token: exit %d, stderr %q; want a failure naming 401 Unauthorized", code, errb.String())
		}
		if after := s.snapshot(); after != before {
			t.Errorf("a refused bench changed the store:\n%s\n%s", before, after)
		}
	})
}

// iu bench refuses, in its flags' words and with exit 2, what makes no run,
// before it opens a store or dials anything.
func TestBenchUsage(t *testing.T) {
	t.Setenv("IU_SERVER", "")
	db := filepath.Join(t.TempDir(), "absent", "iu.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "-n and -c must be positive"},
		{[]string{"-c", "-1"}, "-n and -c must be positive"},
		{[]string{"--dup", "1"}, "--dup 1: want a fraction in [0, 1)"},
		{[]string{"--mode", "xml"}, `--mode "xml": want binary or structured`},
		{[]string{"--template", "nope"}, `malformed template key "nope"`},
		{[]string{"--progress", "maybe"}, `--progress "maybe": want auto, bar or none`},
		{[]string{"--direct", "--dup", "2"}, "--dup 2: want a fraction in [0, 1)"},
		{[]string{"--nats", "nats://127.0.0.1:1", "-n", "3", "--invalid", "4"}, "--invalid 4: want 0 to -n"},
		{nil, "bench needs a server (--server URL or IU_SERVER), or --direct to drive the Go API on --db"},
	} {
		code, out, errs := iuMain(t, append([]string{"--db", db, "bench", "--progress", "none"}, c.args...)...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errs, "iu: "+c.want) || !strings.Contains(errs, "Run 'iu bench --help' for usage.") {
			t.Errorf("bench %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errs, c.want)
		}
	}
}
