package main

import (
	"fmt"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
)

// What happens to an instance after it is made: iu compensate, iu migrate,
// iu history.

func (a *app) compensateCommand() *cobra.Command {
	var req iu.CompensateRequest
	cmd := &cobra.Command{
		Use:   "compensate INSTANCE_KEY [--reason TEXT] [--release] [--apply]",
		Short: "Undo one instance (dry run unless --apply)",
		Long: `Undo one instance, leaving its neighbours alone: its memberships, its collection and
its lineage are deleted in one transaction, and the compensation is recorded (who,
when, why) in iu_compensation. The event's idempotency key stays claimed: its log
entry becomes "compensated", and a redelivery of the event answers compensated and
makes nothing. With --release the log entry is deleted instead, so that the same
event may instantiate again; --release on an instance compensated earlier without
it releases its event's key now. A manual instance (no event) may be compensated
too. Without --apply it only says what would go.`,
		Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req.InstanceKey = args[0]
			svc, err := a.open(cmd.Context(), req.Apply)
			if err != nil {
				return err
			}
			r, err := svc.Compensate(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			verb := "would delete"
			if !r.DryRun {
				verb = "deleted"
			}
			if r.Action == iu.CompensateActionRelease {
				fmt.Fprintf(a.stdout, "release %s (%s), compensated earlier: %s the event's log entry, nothing else\n",
					r.InstanceKey, map[bool]string{true: "dry run", false: "applied"}[r.DryRun], verb)
			} else {
				fmt.Fprintf(a.stdout, "compensate %s (%s): %s lineage=%d / instances=%d / memberships=%d\n",
					r.InstanceKey, map[bool]string{true: "dry run", false: "applied"}[r.DryRun], verb, r.Lineage, r.Instances, r.Memberships)
			}
			fmt.Fprintf(a.stdout, "  %s of %s, actor %s", r.Mode, r.TemplateKey, r.Actor)
			if r.EventID != "" {
				fmt.Fprintf(a.stdout, ", event %q", r.EventID)
			}
			fmt.Fprintln(a.stdout)
			switch r.LogEntry {
			case "compensated":
				fmt.Fprintln(a.stdout, "  the event's log entry: compensated (its key stays claimed: a redelivery answers compensated and makes nothing)")
			case "deleted":
				fmt.Fprintln(a.stdout, "  the event's log entry: deleted (released: the event may instantiate again)")
			default:
				fmt.Fprintln(a.stdout, "  no log entry (a manual instance, or its event was rolled back)")
			}
			if r.DryRun {
				fmt.Fprintf(a.stdout, "run again with --apply to %s, in one transaction\n", r.Action)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why, for the record")
	cmd.Flags().BoolVar(&req.Release, "release", false, "delete the event's log entry, so that the event may instantiate again")
	cmd.Flags().BoolVar(&req.Apply, "apply", false, "compensate (default: dry run)")
	cmd.Flags().StringVar(&req.Actor, "actor", "", "an actor to record beside you (as claimed)")
	return cmd
}

func (a *app) migrateCommand() *cobra.Command {
	var req iu.MigrateRequest
	var progress string
	cmd := &cobra.Command{
		Use:   "migrate --from KEY --to KEY [--actor A] [--prefix P] [--apply]",
		Short: "Move instances to another version of their template (dry run unless --apply)",
		Long: `Move the instances of one version of a template (auto and manual; those of --actor,
or under --prefix, when given) to another version of the same template: each
instance's memberships become the target's graph (the slots the versions differ
in are rewritten, the rest left as they are, so an instance altered outside iu
stays altered and iu verify still names it), its digest and lineage follow, and
each move is recorded in iu_instance_migration. Log entries keep the template
their events were claimed for: a redelivered event of the old version is still a
replay, answering the moved instance.

It moves the instances in batches (--batch), each its own transaction: an
instance is never half moved, memory stays flat, and a run that stops is
finished by running it again (instances already on the target are skipped).
Without --apply it counts the instances and shows how the two graphs differ.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "from", "to"); err != nil {
				return err
			}
			switch progress {
			case "auto", "bar", "none":
			default:
				return usagef("--progress %q: want auto, bar or none", progress)
			}
			switch {
			case !cmd.Flags().Changed("batch"):
				req.Batch = 0 // the server's default, and a request an older server takes
			case req.Batch < 1: // typed (the engine reads 0 as its default)
				return usagef("--batch %d: want at least 1 instance per transaction", req.Batch)
			}
			svc, err := a.open(cmd.Context(), req.Apply)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			var report iu.MigrateProgress
			if req.Apply && (progress == "bar" || progress == "auto" && isTerminal(a.stderr)) {
				report = func(moved, total int64) {
					if bar == nil {
						bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("migrate"),
							progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("instances"),
							progressbar.OptionThrottle(100_000_000), progressbar.OptionClearOnFinish())
					}
					bar.Set64(moved)
				}
			}
			r, err := svc.Migrate(cmd.Context(), req, report)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				if r != nil && r.Moved > 0 {
					return fmt.Errorf("%w (moved %d of %d before it stopped: run the same command again to finish)", err, r.Moved, r.Instances)
				}
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			a.printMigrate(r)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.From, "from", "", "the version the instances are on (required)")
	f.StringVar(&req.To, "to", "", "the version to move them to, published (required)")
	f.StringVar(&req.Actor, "actor", "", "only this actor's instances")
	f.StringVar(&req.Prefix, "prefix", "", "only instances under this instance prefix")
	f.BoolVar(&req.Apply, "apply", false, "move them (default: dry run)")
	f.StringVar(&progress, "progress", "auto", "auto (a bar on a terminal), bar, none")
	f.IntVar(&req.Batch, "batch", iu.DefaultMigrateBatch, fmt.Sprintf("instances per transaction (1 to %d)", iu.MaxMigrateBatch))
	return cmd
}

func (a *app) printMigrate(r *iu.MigrateReport) {
	if r.DryRun {
		fmt.Fprintf(a.stdout, "migrate %s -> %s (dry run): would move %d instances\n", r.From, r.To, r.Instances)
	} else {
		fmt.Fprintf(a.stdout, "migrate %s -> %s (applied): moved %d instances in %d %s\n", r.From, r.To, r.Moved, r.Batches,
			map[bool]string{true: "transaction", false: "transactions"}[r.Batches == 1])
	}
	fmt.Fprintf(a.stdout, "  digest %s -> %s\n", r.FromDigest, r.ToDigest)
	d := r.Diff
	fmt.Fprintf(a.stdout, "  slots added: %s\n  slots removed: %s\n", orNone(d.Added), orNone(d.Removed))
	if len(d.Changed) == 0 {
		fmt.Fprintln(a.stdout, "  slots changed: none")
	}
	for _, c := range d.Changed {
		var what []string
		if c.PieceChange {
			what = append(what, fmt.Sprintf("other piece (%s -> %s)", c.FromPiece.String()[:19], c.ToPiece.String()[:19]))
		}
		if c.EdgesChange {
			what = append(what, fmt.Sprintf("other edges ([%s] -> [%s])", strings.Join(c.FromAfter, ","), strings.Join(c.ToAfter, ",")))
		}
		fmt.Fprintf(a.stdout, "  slot changed: %s: %s\n", c.Slot, strings.Join(what, ", "))
	}
	fmt.Fprintf(a.stdout, "  slots alike: %d\n", d.Same)
	if r.DryRun && r.Instances > 0 {
		fmt.Fprintln(a.stdout, "run again with --apply to move them, a batch per transaction")
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (a *app) historyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "history INSTANCE_KEY",
		Short: "Everything that happened to an instance, oldest first (a compensated one too)",
		Args:  cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			h, err := svc.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(h)
			}
			tw := table(a.stdout)
			fmt.Fprintln(tw, "WHEN\tWHAT\tBY\tTEMPLATE\tDETAIL")
			for _, e := range h {
				by := e.By
				if e.Claimed != "" {
					by += " (claimed " + e.Claimed + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At, e.What, by, e.TemplateKey, e.Detail)
			}
			return tw.Flush()
		}),
	}
}
