package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
)

func (a *app) templateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Publish, list, inspect templates and set their emit mode"}
	var actor string
	publish := &cobra.Command{
		Use:   "publish FILE...",
		Short: "Publish YAML or JSON template files (all or none)",
		Long: `Publish template files. Every file is validated first; if any is invalid nothing is
published. Publishing identical content again is a no-op; the same key with other
content is refused: templates are immutable, publish a new version instead.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			var tps []*iu.Template
			for _, f := range args {
				data, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("read template: %w", err)
				}
				tp, err := iu.ParseTemplateFile(f, data)
				if err != nil {
					return err
				}
				tps = append(tps, tp)
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			res, err := svc.PublishTemplates(cmd.Context(), tps, actor)
			if err != nil {
				return err
			}
			return a.printPublish(res)
		}),
	}
	publish.Flags().StringVar(&actor, "actor", "", "an actor to record beside you (audited as claimed; the change is recorded under you, or under the token through --server)")

	list := &cobra.Command{
		Use: "list", Short: "List templates", Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := allItems(cmd.Context(), svc.ListTemplates)
			if err != nil {
				return err
			}
			return a.printTemplates(ts)
		}),
	}
	show := &cobra.Command{
		Use: "show KEY", Short: "Show a template's graph and pieces", Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			t, err := svc.GetTemplate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printTemplate(t)
		}),
	}
	mode := &cobra.Command{
		Use: "mode KEY live|shadow", Short: "Set a template's emit mode", Args: cobra.ExactArgs(2),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			m, err := iu.ParseEmitMode(args[1])
			if err != nil {
				return usageError{err}
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			if err := svc.SetEmitMode(cmd.Context(), args[0], m); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]string{"key": args[0], "emit_mode": string(m)})
			}
			fmt.Fprintf(a.stdout, "%s: emit mode %s\n", args[0], m)
			return nil
		}),
	}
	cmd.AddCommand(publish, list, show, mode)
	return cmd
}

func (a *app) gateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "gate", Short: "Read and set the global gates (kill switches)"}
	var audit int
	list := &cobra.Command{
		Use: "list", Short: "Show the gates", Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			g, err := svc.Gates(cmd.Context())
			if err != nil {
				return err
			}
			trail := []iu.GateAuditEntry{}
			if audit > 0 {
				_, err := eachPage(cmd.Context(), "", audit, svc.GateAudit, func(es []iu.GateAuditEntry) error {
					trail = append(trail, es...)
					return nil
				})
				if err != nil {
					return err
				}
			}
			return a.printGates(g, trail, audit > 0)
		}),
	}
	list.Flags().IntVar(&audit, "audit", 0, "also show the last N changes")
	var actor string
	set := &cobra.Command{
		Use:   "set NAME=BOOL...",
		Short: "Set gates, e.g. iu gate set composer_enabled=true auto_instantiate_enabled=true",
		Args:  cobra.MinimumNArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			change := iu.GateChange{}
			for _, arg := range args {
				name, val, ok := strings.Cut(arg, "=")
				if !ok {
					return usagef("gate set: %q: want NAME=true or NAME=false", arg)
				}
				b, err := strconv.ParseBool(val)
				if err != nil {
					return usagef("gate set: %q: %q is not true or false", arg, val)
				}
				full, err := iu.ParseGateName(name)
				if err != nil {
					return usageError{err}
				}
				if _, dup := change[full]; dup {
					return usagef("gate set: %s is given twice: give each gate once", full)
				}
				change[full] = b
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			g, err := svc.SetGates(cmd.Context(), change, actor)
			if err != nil {
				return err
			}
			return a.printGates(g, nil, false)
		}),
	}
	set.Flags().StringVar(&actor, "actor", "", "an actor to record beside you in the audit trail (as claimed; the change is recorded under you, or under the token through --server)")
	cmd.AddCommand(list, set)
	return cmd
}

// eventFlags are the flags that describe one event.
type eventFlags struct {
	id, typ, source, subject, data, at string
}

func (f *eventFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.id, "event-id", "", "event id (required)")
	fl.StringVar(&f.typ, "event-type", "", "event type (required)")
	fl.StringVar(&f.source, "source", iu.DefaultSource, "event source")
	fl.StringVar(&f.subject, "subject", "", "event subject")
	fl.StringVar(&f.data, "data", "", "event data: JSON, or @FILE to read it from a file")
	fl.StringVar(&f.at, "time", "", "event time (RFC 3339)")
}

func (f *eventFlags) event() (iu.Event, error) {
	ev := iu.Event{ID: f.id, Type: f.typ, Source: f.source, Subject: f.subject}
	if f.data != "" {
		data := []byte(f.data)
		if name, ok := strings.CutPrefix(f.data, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return ev, usagef("--data: %v", err)
			}
			data = b
		}
		if !json.Valid(data) {
			return ev, usagef("--data is not valid JSON")
		}
		ev.Data = iu.CanonicalJSON(data)
	}
	if f.at != "" {
		t, err := time.Parse(time.RFC3339Nano, f.at)
		if err != nil {
			return ev, usagef("--time: want RFC 3339 (2026-11-27T10:00:00Z): %v", err)
		}
		ev.Time = t
	}
	return ev, nil
}

func (a *app) emitCommand() *cobra.Command {
	var ef eventFlags
	var tpl, actor, prefix string
	cmd := &cobra.Command{
		Use:   "emit --template KEY --event-id ID --event-type TYPE --actor A",
		Short: "Instantiate a template from one event, exactly once",
		Long: `Instantiate a template from one event. Safe to repeat: a redelivered event returns
the first instance with replayed: true. The same event id with another payload is
an idempotency conflict. With a gate off the answer is "gated" and nothing is written.

Exit status: 0 when the event was applied (made, replayed or shadowed), 1 when it
failed (an unknown template, a conflict, bad input), 3 when a gate is closed and
nothing was written (the output names the gate to open).`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "template", "event-id", "event-type", "actor"); err != nil {
				return err
			}
			ev, err := ef.event()
			if err != nil {
				return err
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			r, err := svc.Emit(cmd.Context(), iu.EmitRequest{TemplateKey: tpl, Event: ev, Actor: actor, Prefix: prefix})
			if err != nil {
				return err
			}
			return a.printResult(r)
		}),
	}
	cmd.Flags().StringVar(&tpl, "template", "", "template key (required)")
	cmd.Flags().StringVar(&actor, "actor", "", "who causes the instantiation (required)")
	cmd.Flags().StringVar(&prefix, "prefix", "", "instance key prefix (default: the actor)")
	ef.register(cmd)
	return cmd
}

func (a *app) composeCommand() *cobra.Command {
	var req iu.ComposeRequest
	cmd := &cobra.Command{
		Use:   "compose --template KEY --key INSTANCE_KEY --actor A",
		Short: "Compose an instance by hand and record its lineage (mode manual)",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "template", "key", "actor"); err != nil {
				return err
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			r, err := svc.Compose(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "composed %s from %s (%d pieces, digest %s)\n", r.InstanceKey, r.TemplateKey, r.Pieces, r.Digest)
			return nil
		}),
	}
	cmd.Flags().StringVar(&req.TemplateKey, "template", "", "template key (required)")
	cmd.Flags().StringVar(&req.InstanceKey, "key", "", "instance key, e.g. tpl-inst:manual:onboarding-ada (required)")
	cmd.Flags().StringVar(&req.Actor, "actor", "", "who composes (required)")
	return cmd
}

func (a *app) instancesCommand() *cobra.Command {
	var f iu.InstanceFilter
	var limit int
	cmd := &cobra.Command{
		Use:   "instances [--actor A] [--template KEY] [--prefix P] [--event-id ID] [--limit N] [--after CURSOR]",
		Short: "List auto instances (view iu_auto_instantiate_instances), in creation order",
		Long: `List auto instances in creation order, from the view iu_auto_instantiate_instances;
under --prefix in key order (the key index serves it at any size).
At most --limit rows are printed (--limit 0 prints every row, page by page, in
bounded memory); when more remain, the last line says how to go on (--after).`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit wants 0 (every row) or more")
			}
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			next, err := printList(a, cmd.Context(), f.After, limit, func(ctx context.Context, r iu.PageRequest) (iu.Page[iu.InstanceRow], error) {
				f.PageRequest = r
				return svc.Instances(ctx, f)
			}, instanceHeader, writeInstanceRows)
			if err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(a.stdout, "(first %d rows; the next ones: --after %s; --limit 0 lists every row)\n", limit, next)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&f.Actor, "actor", "", "only this actor's instances")
	cmd.Flags().StringVar(&f.TemplateKey, "template", "", "only instances of this template")
	cmd.Flags().StringVar(&f.Prefix, "prefix", "", "only instances under this instance prefix")
	cmd.Flags().StringVar(&f.EventID, "event-id", "", "only the instances of this event id")
	cmd.Flags().IntVar(&limit, "limit", 1000, "print at most this many rows (0: every row)")
	cmd.Flags().StringVar(&f.After, "after", "", "start after this cursor (printed when --limit stops the list)")
	return cmd
}

func (a *app) eventsCommand() *cobra.Command {
	var f iu.EventFilter
	var status string
	var limit int
	cmd := &cobra.Command{
		Use:   "events [--status ok|shadow|compensated] [--actor A] [--limit N] [--after CURSOR]",
		Short: "List the event log (iu_auto_instantiate_event_log), newest first",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit wants 0 (every entry) or more")
			}
			f.Status = iu.Status(status)
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			next, err := printList(a, cmd.Context(), f.After, limit, func(ctx context.Context, r iu.PageRequest) (iu.Page[iu.LogEntry], error) {
				f.PageRequest = r
				return svc.EventLog(ctx, f)
			}, "CREATED_AT\tSTATUS\tEVENT_ID\tEVENT_TYPE\tEVENT_SOURCE\tTEMPLATE_KEY\tINSTANCE_KEY\tACTOR", func(tw io.Writer, es []iu.LogEntry) {
				for _, e := range es {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.CreatedAt, e.Status, e.EventID, e.EventType, e.EventSource, e.TemplateKey, e.InstanceKey, e.Actor)
				}
			})
			if err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(a.stdout, "(first %d entries; the next ones: --after %s; --limit 0 lists every entry)\n", limit, next)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&status, "status", "", "only entries of this status: ok, shadow or compensated")
	cmd.Flags().StringVar(&f.Actor, "actor", "", "only this actor's entries")
	cmd.Flags().IntVar(&limit, "limit", 100, "print at most this many entries (0: every entry)")
	cmd.Flags().StringVar(&f.After, "after", "", "start after this cursor (printed when --limit stops the list)")
	return cmd
}

func (a *app) auditCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--limit N]",
		Short: "Show who changed what (templates, triggers, tokens, bulk runs, rollbacks), newest first",
		Long: `Show the audit trail, newest first: every template published and emit mode set,
trigger added or removed, token created or revoked, bulk run and rollback applied,
with who made it (BY: you at the command line, the token's name through iu serve)
and the actor the client named, if another (CLAIMED). Gates have their own trail:
iu gate list --audit N.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit wants 0 (every entry) or more")
			}
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			var all []iu.AuditEntry
			if _, err := eachPage(cmd.Context(), "", limit, svc.Audit, func(es []iu.AuditEntry) error {
				all = append(all, es...)
				return nil
			}); err != nil {
				return err
			}
			if a.json {
				if all == nil {
					all = []iu.AuditEntry{}
				}
				return a.printJSON(all)
			}
			tw := table(a.stdout)
			fmt.Fprintln(tw, "WHEN\tBY\tCLAIMED\tACTION\tSUBJECT\tDETAIL")
			for _, e := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At, e.By, orDash(e.Claimed), e.Action, e.Subject, e.Detail)
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many entries (0: all)")
	return cmd
}

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the store named by --db, or bring its schema up to date",
		Long: `Create an empty iu store where --db (or IU_DB) says, or migrate an existing one to
this iu's schema, and print where it is. Every command that writes does the same
on its way; commands that only read refuse a store that does not exist, so that
a mistyped --db is not taken for an empty store.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if a.server.url != "" {
				return usagef("init opens the store itself (--db): --server does not apply")
			}
			if _, err := a.service(cmd.Context()); err != nil {
				return err
			}
			v, err := iu.NewEngine(a.store).SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"store": a.store.Describe(), "schema_version": v})
			}
			fmt.Fprintf(a.stdout, "iu store at %s, schema version %d\n", a.store.Describe(), v)
			return nil
		}),
	}
}

func (a *app) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Per-template summary (view iu_auto_instantiate_template_summary)",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			st, err := svc.Stats(cmd.Context())
			if err != nil {
				return err
			}
			return a.printStats(st)
		}),
	}
}

func (a *app) verifyCommand() *cobra.Command {
	var actor string
	cmd := &cobra.Command{
		Use:   "verify [--actor A]",
		Short: "Recompute every instance's digest and check the shared graph (exit 1 on divergence)",
		Long: `Recompute every instance's digest from its stored membership rows and the stored
piece bodies, compare it with the template's digest, the digest recorded in lineage
and the instance's own, check that each instance shares its template's pieces, and
count orphan rows. Prints matches / diverges / total; exit 1 on any divergence.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			rep, err := svc.Verify(cmd.Context(), actor)
			if err != nil {
				return err
			}
			if err := a.printVerify(rep); err != nil {
				return err
			}
			if !rep.OK() {
				return failure{err: fmt.Errorf("verify: %d of %d instances diverge, %d orphan rows", rep.Diverges, rep.Total, rep.Orphans.Total()), reported: true}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&actor, "actor", "", "only this actor's instances")
	return cmd
}

func (a *app) rollbackCommand() *cobra.Command {
	var actor string
	var apply bool
	cmd := &cobra.Command{
		Use:   "rollback --actor A [--apply]",
		Short: "Undo an actor's auto instantiations (dry run unless --apply)",
		Long: `Undo everything an actor's auto-instantiations wrote: event log rows, then lineage,
then instance collections and their memberships, in one transaction. Without
--apply it only reports what would be deleted. Templates, pieces and other actors'
rows are untouched; rolled-back events can be instantiated again.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "actor"); err != nil {
				return err
			}
			svc, err := a.open(cmd.Context(), apply)
			if err != nil {
				return err
			}
			r, err := svc.Rollback(cmd.Context(), actor, apply)
			if err != nil {
				return err
			}
			return a.printRollback(r)
		}),
	}
	cmd.Flags().StringVar(&actor, "actor", "", "whose auto instantiations to undo (required)")
	cmd.Flags().BoolVar(&apply, "apply", false, "delete (default: dry run)")
	return cmd
}

func (a *app) renderCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "render INSTANCE_KEY",
		Short: "Show an instance as a document (file) or checklist (wf), with its event's data filled in",
		Args:  cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			r, err := svc.Render(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprint(a.stdout, r.Text)
			return nil
		}),
	}
}

// version, when the linker sets it (-ldflags "-X main.version=..."),
// overrides the module version the build recorded.
var version = ""

// buildVersion is what a binary knows of where it came from: the module
// version (v1.2.3 when installed with go install ...@v1.2.3, "(devel)" when
// built in a checkout), the VCS revision and its time, whether the work
// tree had changes, and the Go toolchain.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: "(unknown)", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		v.Version = version
	}
	return v
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print iu's version and the revision it was built from", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := readBuildVersion()
			if a.json {
				return a.printJSON(v)
			}
			line := "iu " + v.Version
			if v.Revision != "" {
				line += " revision " + v.Revision
				if v.Time != "" {
					line += " of " + v.Time
				}
				if v.Modified {
					line += " (with uncommitted changes)"
				}
			}
			fmt.Fprintf(a.stdout, "%s, built with %s\n", line, v.Go)
			return nil
		},
	}
}

// relTo resolves name relative to the directory of file.
func relTo(file, name string) string {
	if filepath.IsAbs(name) || name == "-" {
		return name
	}
	return filepath.Join(filepath.Dir(file), name)
}
