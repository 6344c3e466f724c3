package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/sqlite"
)

func (a *app) demoCommand() *cobra.Command {
	var keep, serve bool
	var addr string
	cmd := &cobra.Command{
		Use:   "demo [--serve [--addr 127.0.0.1:8080]]",
		Short: "Run the seed's 25000x bulk scale-out on a fresh embedded store and print its tables",
		Long: `Run the seed's story end to end on a new SQLite store in a temporary directory:
publish the example templates, make 1 durable auto instance and 4 manual lineage
rows, then the 8 wf + 4 file bulk through the event path in one transaction, and
print the surfaces, gates, per-template summary, digest invariant and the rollback
dry run. The store is removed afterwards unless --keep is given. It ignores --db.

With --serve it then serves the ops console (and the API) on the demo's store
until Ctrl-C, and prints the URL and an admin token to sign in with.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "iu-demo-")
			if err != nil {
				return err
			}
			if !keep {
				defer os.RemoveAll(dir)
			}
			path := filepath.Join(dir, "iu.db")
			s, err := sqlite.Open(cmd.Context(), path, sqlite.Options{})
			if err != nil {
				return err
			}
			defer s.Close()
			e := iu.NewEngine(s)
			if err := runDemo(cmd.Context(), a.stdout, e, s.Describe()); err != nil {
				return err
			}
			if serve {
				if err := serveDemo(cmd.Context(), a, e, path, addr); err != nil {
					return err
				}
			}
			if keep {
				fmt.Fprintf(a.stdout, "\nThe store is kept: %s\n  sqlite3 %s 'SELECT * FROM iu_auto_instantiate_template_summary'\n  iu --db %s verify\n", path, path, path)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo's store and print its path")
	cmd.Flags().BoolVar(&serve, "serve", false, "then serve the console on the demo's store until Ctrl-C, printing its URL and a sign-in token")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "with --serve: listen on host:port (port 0 picks one)")
	return cmd
}

// serveDemo serves the console and the API on the demo's store until ctx
// ends (Ctrl-C), after making an admin token to sign in with: the demo's
// store is throwaway, so its secret is printed rather than filed.
func serveDemo(ctx context.Context, a *app, e *iu.Engine, path, addr string) error {
	nt, err := e.CreateToken(ctx, "demo-admin", iu.ScopeAdmin, "iu:demo")
	if err != nil {
		return err
	}
	m := newServeMain(a.stderr)
	m.DB, m.Addr, m.LogLevel, m.LogFormat = path, addr, "warn", "text"
	if err := m.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\n== The ops console\n\nOpen %s/ and sign in with this admin token:\n\n    %s\n\nThe API is there too: iu --server %s --token %s stats\nCtrl-C stops the server.\n",
		m.Server.URL(), nt.Secret, m.Server.URL(), nt.Secret)
	<-ctx.Done()
	return m.Close()
}

// The templates the demo's events and compositions name.
const (
	demoWF   = "tpl:wf:onboarding/v2"
	demoFile = "tpl:file:status-report/v2"
)

// runDemo tells the story of the 25000x bulk scale-out on e, writing it to
// w: the templates, what exists before the bulk, the bulk, the views and
// the digest invariant after it, the rollback dry run, one rendered
// instance.
func runDemo(ctx context.Context, w io.Writer, e *iu.Engine, where string) error {
	d := demo{w: w, e: e}
	d.p("iu demo: the seed's 25000x bulk scale-out, on a fresh embedded store\nstore: %s\n", where)
	if err := d.templates(ctx); err != nil {
		return err
	}
	if err := d.before(ctx); err != nil {
		return err
	}
	plan, rep, err := d.bulk(ctx)
	if err != nil {
		return err
	}
	if err := d.summary(ctx, rep); err != nil {
		return err
	}
	if err := d.rollback(ctx, plan); err != nil {
		return err
	}
	return d.render(ctx, plan)
}

// demo is runDemo's engine and output; each method is one section.
type demo struct {
	w io.Writer
	e *iu.Engine
}

func (d demo) p(format string, args ...any) { fmt.Fprintf(d.w, format, args...) }

// templates publishes the example templates and lists them.
func (d demo) templates(ctx context.Context) error {
	tps, err := examples.Templates()
	if err != nil {
		return err
	}
	res, err := d.e.PublishTemplates(ctx, tps, "iu-core-ops")
	if err != nil {
		return err
	}
	d.p("\n== Templates (examples/templates)\n")
	tw := table(d.w)
	fmt.Fprintln(tw, "KEY\tTITLE\tPIECES\tDIGEST")
	for i, r := range res {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Key, tps[i].Title, r.Pieces, r.Digest)
	}
	tw.Flush()
	return nil
}

// before makes what exists before the bulk: one durable auto instance and
// four manual lineage rows, with the gates open, then closes the gates.
func (d demo) before(ctx context.Context) error {
	d.p("\n== Before the bulk: 1 durable auto instance and 4 manual lineage rows\n")
	if _, err := d.e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "iu-core-ops"); err != nil {
		return err
	}
	durable, err := d.e.Emit(ctx, iu.EmitRequest{TemplateKey: demoWF, Actor: "iu-core-25000x-durable", Prefix: "25000x-durable",
		Event: iu.Event{ID: "25000a00-0000-0000-0000-000000000001", Source: iu.DefaultSource, Type: "hr.employee.hired",
			Subject: "Grace Hopper", Data: json.RawMessage(`{"manager":"Howard Aiken","start_date":"2025-03-03","team":"compilers"}`)}})
	if err != nil {
		return err
	}
	d.p("emit   %s  -> %s %s\n", demoWF, durable.Status, durable.InstanceKey)
	manual := []struct{ tpl, key string }{
		{demoWF, "tpl-inst:manual:18000x-wf-1"}, {demoWF, "tpl-inst:manual:18000x-wf-2"}, {demoWF, "tpl-inst:manual:18000x-wf-3"},
		{demoFile, "tpl-inst:manual:18000x-file-1"},
	}
	for _, m := range manual {
		r, err := d.e.Compose(ctx, iu.ComposeRequest{TemplateKey: m.tpl, InstanceKey: m.key, Actor: "iu-core-18000x"})
		if err != nil {
			return err
		}
		d.p("compose %s -> %s (mode manual)\n", m.tpl, r.InstanceKey)
	}
	if _, err := d.e.SetGates(ctx, iu.GateChange{iu.GateComposer: false, iu.GateAutoInstantiate: false}, "iu-core-ops"); err != nil {
		return err
	}
	d.p("gates back to false\n")
	return nil
}

// bulk runs the example bulk plan in one transaction, printing a notice
// per event as the reference design's PL/pgSQL does, and then the bulk's report.
func (d demo) bulk(ctx context.Context) (*iu.BulkPlan, *iu.BulkReport, error) {
	plan, err := examples.SeedPlan()
	if err != nil {
		return nil, nil, err
	}
	d.p("\n== 06 — Bulk scaleout 12x via the event orchestrator (examples/%s)\n", examples.SeedPlanPath)
	d.p("One transaction: flip both gates to true, 8 wf + 4 file events through the event path, read back, flip the gates back to false, COMMIT, re-count on a fresh connection.\n\n")
	seq := map[string]int{}
	ok := map[string]int{}
	rep, err := d.e.Bulk(ctx, plan, nil, func(be iu.BulkEvent, r iu.Result) {
		k := templateKind(be.Template)
		seq[k]++
		if r.Status == iu.StatusOK {
			ok[k]++
		}
		d.p("NOTICE:  %s bulk #%d -> %s %s\n", k, seq[k], r.Status, r.InstanceKey)
	})
	if err != nil {
		return nil, nil, err
	}
	d.p("NOTICE:  wf bulk #1..%d -> ok (%d)\n", seq["wf"], ok["wf"])
	d.p("NOTICE:  file bulk #1..%d -> ok (%d)\n", seq["file"], ok["file"])
	d.p("NOTICE:  bulk scaleout completed: %d wf + %d file instances ok\n", ok["wf"], ok["file"])
	writeBulkReport(d.w, rep, plan)
	return plan, rep, nil
}

// templateKind is a template key's kind (wf of tpl:wf:onboarding/v2), or
// the key itself when it is malformed.
func templateKind(tpl string) string {
	if k, err := iu.ParseTemplateKey(tpl); err == nil {
		return k.Kind
	}
	return tpl
}

// summary prints the per-template view after the bulk and the digest
// invariant over the whole store.
func (d demo) summary(ctx context.Context, rep *iu.BulkReport) error {
	d.p("\n== Per-template observability after bulk (view iu_auto_instantiate_template_summary)\n")
	stats, err := d.e.Stats(ctx)
	if err != nil {
		return err
	}
	if err := writeStats(d.w, stats); err != nil {
		return err
	}
	var auto int64
	for _, s := range stats {
		auto += s.InstanceCount
	}
	all, err := d.e.Verify(ctx, "")
	if err != nil {
		return err
	}
	bulkN := rep.Counts.OK
	d.p("\nTotal auto-instantiated rows: %d (%d durable + %d bulk). With %d pre-existing manual lineage rows: %d total lineage rows.\n",
		auto, auto-bulkN, bulkN, all.Total-auto, all.Total)
	d.p("Digest-match invariant over the whole store: %d matches / %d diverges / %d total; orphan rows: %d\n",
		all.Matches, all.Diverges, all.Total, all.Orphans.Total())
	return nil
}

// rollback prints what rolling back the bulk's actor would delete.
func (d demo) rollback(ctx context.Context, plan *iu.BulkPlan) error {
	d.p("\n== Rollback proof (dry run: nothing is deleted)\n")
	rb, err := d.e.Rollback(ctx, plan.Actor, false)
	if err != nil {
		return err
	}
	d.p("iu rollback --actor %s\n  would_delete_log_rows=%d / lineage=%d / instances=%d (memberships %d)\n",
		rb.Actor, rb.LogRows, rb.LineageRows, rb.Instances, rb.Memberships)
	d.p("  with --apply it cascades event log -> lineage -> instance collection -> membership in one transaction.\n")
	return nil
}

// render prints one of the bulk's wf instances, rendered.
func (d demo) render(ctx context.Context, plan *iu.BulkPlan) error {
	page, err := d.e.Instances(ctx, iu.InstanceFilter{Actor: plan.Actor, TemplateKey: demoWF, PageRequest: iu.PageRequest{Limit: 1}})
	if err != nil {
		return err
	}
	if len(page.Items) != 1 {
		return nil
	}
	key := page.Items[0].InstanceKey
	r, err := d.e.Render(ctx, key)
	if err != nil {
		return err
	}
	d.p("\n== One instance, rendered (iu render %s)\n\n%s", key, indentLines(r.Text, "    "))
	return nil
}

func indentLines(s, pad string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" && l != "\n" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "")
}
