package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/iu-engine/iu"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the bearer tokens of iu serve",
		Long: `Tokens let producers and operators use iu serve. A token has one scope:
  ingest  post events (POST /v1/events, iu emit)
  read    read templates, gates, instances, stats, verify, triggers, metrics
  admin   everything: gates, publish, mode, triggers, bulk, rollback, tokens
iu keeps only a hash of each token: its secret is printed once, when it is made.`,
	}
	var scope, name, actor string
	create := &cobra.Command{
		Use:   "create --scope ingest|read|admin [--name NAME]",
		Short: "Make a token and print its secret, once",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "scope"); err != nil {
				return err
			}
			sc, err := iu.ParseScope(scope)
			if err != nil {
				return usageError{err}
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			t, err := svc.CreateToken(cmd.Context(), name, sc, actor)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "name:   %s\nscope:  %s\ntoken:  %s\n", t.Name, t.Scope, t.Secret)
			fmt.Fprintln(a.stderr, "iu: keep the token now: iu stores only its hash and cannot show it again")
			return nil
		}),
	}
	create.Flags().StringVar(&scope, "scope", "", "ingest, read or admin (required)")
	create.Flags().StringVar(&name, "name", "", "a name to know it by (default: SCOPE-<8 hex>)")
	create.Flags().StringVar(&actor, "actor", "", "an actor to record beside you (as claimed; the token is recorded as made by you, or by the token you use through --server)")

	list := &cobra.Command{
		Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			svc, err := a.reader(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := allItems(cmd.Context(), svc.ListTokens)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(ts)
			}
			tw := table(a.stdout)
			fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tBY\tREVOKED")
			for _, t := range ts {
				revoked := "-"
				if t.Revoked() {
					revoked = t.RevokedAt.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Scope, t.CreatedAt, t.CreatedBy, revoked)
			}
			if len(ts) == 0 {
				fmt.Fprintln(tw, "(no tokens: iu serve makes an admin token on its first start, or run iu token create)")
			}
			return tw.Flush()
		}),
	}
	revoke := &cobra.Command{
		Use: "revoke NAME", Short: "Revoke a token: it stops working at once on this server, within a second on others", Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			t, err := svc.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "token %s (%s) revoked at %s\n", t.Name, t.Scope, t.RevokedAt)
			return nil
		}),
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
