package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
)

func (a *app) triggerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "Route events to templates: add, list and remove triggers",
		Long: `A trigger sends every event of a type (exact, a prefix such as com.acme.hr.*, or *
for all), and optionally of one source, to a template. An event that several
triggers match instantiates each of their templates, in one transaction. An event
may instead name its template itself (CloudEvents extension iutemplate).`,
	}
	var t iu.Trigger
	var actor string
	add := &cobra.Command{
		Use:   "add --type TYPE --template KEY [--source S] [--actor A] [--prefix P] [--name N]",
		Short: "Add a trigger",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "type", "template"); err != nil {
				return err
			}
			if err := t.Validate(); err != nil {
				return usageError{err}
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			added, err := svc.AddTrigger(cmd.Context(), t, actor)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(added)
			}
			fmt.Fprintf(a.stdout, "trigger %s: %s\n", added.Name, describeTrigger(added))
			return nil
		}),
	}
	f := add.Flags()
	f.StringVar(&t.Type, "type", "", "event type: exact, a prefix ending in .* (com.acme.hr.*), or * (required)")
	f.StringVar(&t.Template, "template", "", "template key (required)")
	f.StringVar(&t.Source, "source", "", "only events from this source")
	f.StringVar(&t.Actor, "actor", "", "actor of the instantiations (default: the event's iuactor, else the posting token's name)")
	f.StringVar(&t.Prefix, "prefix", "", "instance key prefix (default: the actor)")
	f.StringVar(&t.Name, "name", "", "the trigger's name (default: trg-<8 hex> from type, source and template)")
	f.StringVar(&actor, "by", "", "an actor to record beside you (as claimed; the trigger is recorded as added by you, or by the token through --server)")

	list := &cobra.Command{
		Use: "list", Short: "List triggers", Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := allItems(cmd.Context(), svc.ListTriggers)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(ts)
			}
			tw := table(a.stdout)
			fmt.Fprintln(tw, "NAME\tTYPE\tSOURCE\tTEMPLATE\tACTOR\tPREFIX")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Type, orDash(t.Source), t.Template, orDash(t.Actor), orDash(t.Prefix))
			}
			if len(ts) == 0 {
				fmt.Fprintln(tw, "(no triggers: add one with iu trigger add --type TYPE --template KEY)")
			}
			return tw.Flush()
		}),
	}
	remove := &cobra.Command{
		Use: "remove NAME", Short: "Remove a trigger", Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			t, err := svc.RemoveTrigger(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "removed trigger %s: %s\n", t.Name, describeTrigger(t))
			return nil
		}),
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

func describeTrigger(t iu.Trigger) string { return t.Describe() }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
