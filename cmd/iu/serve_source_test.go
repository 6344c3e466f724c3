package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// One event gets one idempotency key on every path: the key is computed
// from exactly the bytes of source that the producer sent. The same event
// through every path makes one instance; sources that differ only in case
// or percent-encoding are other events.
func TestServeOneKeyOnEveryPath(t *testing.T) {
	forBackends(t, func(t *testing.T, db string) {
		s := startServer(t, db)
		s.setup()
		ingest := s.token("ingest")
		dir := t.TempDir()
		// paths posts the event (id, source) through every path and returns
		// each path's answer: its status and instance key.
		paths := func(id, source string) map[string]string {
			got := map[string]string{}
			ev := map[string]any{"specversion": "1.0", "id": id, "source": source, "type": "hr.hired", "data": map[string]int{"a": 1},
				"iutemplate": wfKey, "iuactor": "paths"}
			answer := func(path string, r response) {
				var a eventAnswer
				r.json(t, &a)
				if len(a.Results) != 1 || a.Results[0].Error != nil {
					t.Fatalf("%s: %d %s", path, r.status, r.body)
				}
				got[path] = fmt.Sprintf("%d %s", r.status, a.Results[0].InstanceKey)
			}
			answer("binary", s.binary(ingest, map[string]string{"Id": id, "Source": source, "Type": "hr.hired", "Iutemplate": wfKey, "Iuactor": "paths"}, `{"a": 1}`))
			answer("structured", s.structured(ingest, "application/cloudevents+json", ev))
			r := s.structured(ingest, "application/cloudevents-batch+json", []any{ev})
			var batch []eventAnswer
			r.json(t, &batch)
			got["batch"] = fmt.Sprintf("%d %s", r.status, batch[0].Results[0].InstanceKey)
			emit, _ := json.Marshal(map[string]any{"template": wfKey, "actor": "paths", "event": map[string]any{"id": id, "source": source, "type": "hr.hired", "data": map[string]int{"a": 1}}})
			r = s.do("POST", "/v1/emit", ingest, nil, emit)
			var res iu.Result
			r.json(t, &res)
			got["/v1/emit"] = fmt.Sprintf("%d %s", r.status, res.InstanceKey)
			cli := func(name string, args ...string) {
				var out, errb bytes.Buffer
				if code := Main(context.Background(), args, strings.NewReader(""), &out, &errb); code != 0 {
					t.Fatalf("%s: exit %d: %s%s", name, code, out.String(), errb.String())
				}
				got[name] = strings.TrimSpace(out.String())
			}
			emitArgs := []string{"--json", "emit", "--template", wfKey, "--event-id", id, "--source", source, "--event-type", "hr.hired", "--data", `{"a":1}`, "--actor", "paths"}
			cli("iu emit", append([]string{"--db", db}, emitArgs...)...)
			cli("iu --server emit", append([]string{"--server", s.url, "--token", s.admin}, emitArgs...)...)
			line, _ := json.Marshal(map[string]any{"template": wfKey, "id": id, "source": source, "type": "hr.hired", "data": map[string]int{"a": 1}})
			plan := filepath.Join(dir, "plan-"+id+".yaml")
			os.WriteFile(plan, []byte("actor: paths\nevents_file: events-"+id+".ndjson\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "events-"+id+".ndjson"), append(line, '\n'), 0o644)
			cli("iu bulk", "--db", db, "--json", "bulk", "--progress", "none", plan)
			cli("iu --server bulk", "--server", s.url, "--token", s.admin, "--json", "bulk", "--progress", "none", plan)
			return got
		}
		count := func(source string) int64 {
			return s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE event_source = " + sqlQuote(source))
		}
		for i, source := range []string{"a b'c", "HR:Workday", "%zz", "https://Example.com/A?b=c"} {
			id := fmt.Sprintf("one-%d", i)
			got := paths(id, source)
			if n := count(source); n != 1 {
				t.Fatalf("source %q through every path: %d instances, want 1 (answers %v)", source, n, got)
			}
			if n := s.count("SELECT count(*) FROM iu_auto_instantiate_event_log WHERE event_id = '" + id + "'"); n != 1 {
				t.Fatalf("source %q: %d event-log rows", source, n)
			}
			if !strings.HasPrefix(got["binary"], "201 tpl-inst:auto:paths-") {
				t.Fatalf("the first path did not create: %v", got)
			}
			key := strings.TrimPrefix(got["binary"], "201 ")
			for path, a := range got {
				switch {
				case strings.HasSuffix(path, "bulk"):
					// A bulk's report counts: the event was a replay.
					var rep iu.BulkReport
					if err := json.Unmarshal([]byte(a), &rep); err != nil || rep.Counts != (iu.BulkCounts{Replayed: 1}) {
						t.Errorf("source %q: %s answered %s, want one replay", source, path, a)
					}
				case path != "binary" && !strings.Contains(a, key):
					t.Errorf("source %q: %s answered %q, want the instance %s", source, path, a, key)
				}
			}
		}
		// Sources that differ only in case or percent-encoding are other
		// events, each with an instance of its own.
		for _, pair := range [][2]string{{"a b", "a%20b"}, {"HR:Workday", "hr:Workday"}} {
			for _, source := range pair {
				if r := s.binary(ingest, map[string]string{"Id": "pair", "Source": source, "Iutemplate": wfKey, "Iuactor": "pairs"}, `{}`); r.status != 201 {
					t.Fatalf("source %q: %d %s", source, r.status, r.body)
				}
			}
		}
		for _, source := range []string{"a b", "a%20b", "hr:Workday"} {
			if n := s.count("SELECT count(*) FROM iu_collection_template_instance_lineage WHERE actor = 'pairs' AND event_source = " + sqlQuote(source)); n != 1 {
				t.Fatalf("source %q: %d instances, want 1", source, n)
			}
		}
	})
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
