package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
)

// The command line gives the same output, and the same exit code, whether
// it opens the store (--db) or talks to iu serve (--server): one output
// path. The same commands run against two fresh stores of one backend,
// one directly and one through a server; times and secrets, which differ
// from run to run, are masked.
func TestServerModeMatchesDirectMode(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tpl := func(name string) string { return filepath.Join(repo, "examples", "templates", name) }
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ndjsonPlan := write("plan.yaml", "actor: iu-file\ninstance_prefix: file\ngates: {composer_enabled: true, auto_instantiate_enabled: true}\nevents_file: events.ndjson\n")
	write("events.ndjson", `{"template": "tpl:wf:onboarding/v2", "id": "n-1", "type": "hr.hired", "subject": "Ada", "data": {"team": "core"}}
{"template": "tpl:file:status-report/v2", "id": "n-2", "type": "pm.due"}
{"template": "tpl:wf:onboarding/v2", "id": "n-1", "type": "hr.hired", "subject": "Ada", "data": {"team": "core"}}
`)
	badPlan := write("bad.yaml", "actor: iu-bad\ngates: {composer_enabled: true, auto_instantiate_enabled: true}\nevents_file: bad.ndjson\n")
	write("bad.ndjson", `{"template": "tpl:wf:onboarding/v2", "id": "b-1", "type": "t"}
{"template": "tpl:wf:missing/v1", "id": "b-2", "type": "t"}
`)
	badLine := write("badline.yaml", "actor: iu-bad\nevents_file: badline.ndjson\n")
	write("badline.ndjson", `{"template": "tpl:wf:onboarding/v2", "id": "b-1", "type": "t"}
{"template": "tpl:wf:onboarding/v2", "id": "b-2", "tipe": "t"}
`)
	hire := []string{"--template", wfKey, "--event-id", "e-1", "--event-type", "hr.hired", "--actor", "alice", "--subject", "Grace", "--data", `{"team": "compilers"}`}
	script := [][]string{
		{"template", "list"},
		{"template", "publish", tpl("onboarding.yaml"), tpl("status-report.yaml"), "--actor", "ops"},
		{"template", "publish", tpl("onboarding.yaml"), "--actor", "ops"},
		{"--json", "template", "publish", tpl("onboarding.yaml"), "--actor", "ops"},
		{"template", "list"},
		{"--json", "template", "list"},
		{"template", "show", wfKey},
		{"--json", "template", "show", fileKey},
		{"template", "show", "tpl:wf:missing/v1"},
		{"--json", "template", "show", "tpl:wf:missing/v1"},
		{"gate", "list"},
		{"--json", "gate", "list"},
		append([]string{"emit"}, hire...),
		{"gate", "set", "composer_enabled=true", "auto_instantiate_enabled=true", "--actor", "ops"},
		{"gate", "set", "nonsense=true"},
		{"gate", "list", "--audit", "5"},
		{"--json", "gate", "list", "--audit", "2"},
		append([]string{"emit"}, hire...),
		append([]string{"--json", "emit"}, hire...),
		{"emit", "--template", wfKey, "--event-id", "e-1", "--event-type", "hr.hired", "--actor", "alice", "--subject", "Grace", "--data", `{"team": "other"}`},
		{"--json", "emit", "--template", wfKey, "--event-id", "e-1", "--event-type", "hr.hired", "--actor", "alice", "--data", `{}`},
		{"emit", "--template", "tpl:wf:missing/v1", "--event-id", "e-2", "--event-type", "t", "--actor", "alice"},
		{"emit", "--template", fileKey, "--event-id", "e-3", "--event-type", "pm.due", "--actor", "bob", "--prefix", "reports"},
		{"compose", "--template", wfKey, "--key", "tpl-inst:manual:one", "--actor", "carol"},
		{"compose", "--template", wfKey, "--key", "tpl-inst:manual:one", "--actor", "carol"},
		{"--json", "compose", "--template", fileKey, "--key", "tpl-inst:manual:two", "--actor", "carol"},
		{"bulk", "--progress", "lines", filepath.Join(repo, "examples", "bulk", "seed-25000x.yaml")},
		{"bulk", "--progress", "lines", ndjsonPlan},
		{"--json", "bulk", "--progress", "none", ndjsonPlan},
		{"bulk", "--progress", "lines", badPlan},
		{"bulk", badLine},
		{"instances"},
		{"instances", "--actor", "iu-core-25000x-bulk", "--limit", "3"},
		{"instances", "--actor", "iu-core-25000x-bulk", "--limit", "2", "--after", "s8"},
		{"--json", "events", "--limit", "2"},
		{"events", "--status", "ok", "--actor", "alice"},
		{"audit"},
		{"--json", "instances", "--template", fileKey},
		{"instances", "--prefix", "reports"},
		{"stats"},
		{"--json", "stats"},
		{"verify"},
		{"--json", "verify", "--actor", "alice"},
		{"render", "tpl-inst:auto:alice-RENDERKEY"},
		{"--json", "render", "tpl-inst:manual:one"},
		{"render", "tpl-inst:nope"},
		{"template", "mode", fileKey, "shadow"},
		{"--json", "template", "mode", fileKey, "live"},
		{"template", "mode", "tpl:wf:missing/v1", "shadow"},
		{"trigger", "add", "--type", "com.acme.hr.*", "--template", wfKey, "--name", "hr", "--actor", "hr-bot"},
		{"--json", "trigger", "add", "--type", "pm.due", "--source", "pm:tracker", "--template", fileKey, "--by", "ops"},
		{"trigger", "add", "--type", "com.acme.hr.*", "--template", wfKey, "--name", "hr"},
		{"trigger", "add", "--type", "x", "--template", "tpl:wf:missing/v1"},
		{"trigger", "list"},
		{"--json", "trigger", "list"},
		{"trigger", "remove", "hr"},
		{"trigger", "remove", "hr"},
		{"token", "create", "--scope", "read", "--name", "dash", "--actor", "ops"},
		{"--json", "token", "create", "--scope", "ingest", "--name", "ci", "--actor", "ops"},
		{"token", "create", "--scope", "read", "--name", "dash"},
		{"token", "revoke", "dash"},
		{"token", "revoke", "nobody"},
		{"token", "list"},
		{"rollback", "--actor", "iu-core-25000x-bulk"},
		{"--json", "rollback", "--actor", "iu-core-25000x-bulk", "--apply"},
		{"rollback", "--actor", "alice", "--apply"},
		{"verify"},
		{"stats"},
		{"--json", "audit", "--limit", "3"},
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			direct, remote := b.db(t), b.db(t)
			// Both stores get a server, so both have its admin token; only the
			// second is driven through it.
			startServer(t, direct)
			srv := startServer(t, remote)
			run := func(args []string, server bool) string {
				pre := []string{"--db", direct, "--server="}
				if server {
					pre = []string{"--server", srv.url, "--token", srv.admin}
				}
				// Direct runs are made by "admin", as the server's are
				// (its token's name), so that the audit reads the same.
				ctx := iu.NewContextWithPrincipal(context.Background(), "admin")
				var out, errb bytes.Buffer
				code := Main(ctx, append(pre, args...), strings.NewReader(""), &out, &errb)
				return fmt.Sprintf("exit %d\n-- stdout --\n%s-- stderr --\n%s", code, out.String(), errb.String())
			}
			renderKey := ""
			for _, args := range script {
				args = substitute(args, renderKey)
				d, r := mask(run(args, false)), mask(run(args, true))
				if d != r {
					t.Errorf("iu %s: direct and --server differ\n== direct\n%s\n== server\n%s", strings.Join(args, " "), d, r)
				}
				if args[0] == "emit" && renderKey == "" {
					if m := regexp.MustCompile(`tpl-inst:auto:alice-([0-9a-f]{12})`).FindStringSubmatch(d); m != nil {
						renderKey = m[1]
					}
				}
			}
			if renderKey == "" {
				t.Fatal("no instance key to render")
			}
		})
	}
}

func substitute(args []string, renderKey string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "RENDERKEY", renderKey)
	}
	return out
}

var (
	timeRE   = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	secretRE = regexp.MustCompile(`iu_[A-Za-z0-9_-]{43}`)
	spacesRE = regexp.MustCompile(` +`)
)

// mask hides what differs between two runs: times and token secrets, and
// the table padding that follows from the times' widths.
func mask(s string) string {
	s = timeRE.ReplaceAllString(s, "<time>")
	s = secretRE.ReplaceAllString(s, "<secret>")
	return spacesRE.ReplaceAllString(s, " ")
}
