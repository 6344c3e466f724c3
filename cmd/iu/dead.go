package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	iunats "github.com/iu-engine/iu/nats"
)

func (a *app) deadCommand() *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "Dead letters of the NATS JetStream intake: list them, redrive them",
		Long: `Events that iu serve --nats could not instantiate as sent are copied to the
dead-letter stream (IU_DEAD, subjects iu.dead.<reason>) with their original
headers and body, and headers Iu-Reason, Iu-Error and Iu-Original-Subject. The
reasons: invalid, unknown_template, no_trigger, conflict, max_deliver.

Once the cause is fixed (a template published, a trigger added), redrive
publishes them back to their original subject and deletes each from the
dead-letter stream once the events stream has stored it.`,
	}
	nf.register(cmd.PersistentFlags(), false)

	var reason string
	list := &cobra.Command{
		Use:   "list [--reason R]",
		Short: "List dead letters: reason, error, event id, time, original subject",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if reason != "" {
				if err := iunats.CheckReason(reason); err != nil {
					return usageError{err}
				}
			}
			conn, err := a.dialNATS(cmd.Context(), nf)
			if err != nil {
				return err
			}
			defer conn.Close()
			var out []iunats.DeadLetter
			err = conn.DeadLetters(cmd.Context(), iunats.DeadFilter{Reason: reason}, func(d iunats.DeadLetter) error {
				out = append(out, d)
				return nil
			})
			if err != nil {
				return deadStreamError(nf, err)
			}
			if a.json {
				if out == nil {
					out = []iunats.DeadLetter{}
				}
				return a.printJSON(out)
			}
			w := table(a.stdout)
			fmt.Fprintln(w, "SEQ\tTIME\tREASON\tEVENT\tSUBJECT\tERROR")
			for _, d := range out {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time.Format("2006-01-02T15:04:05.000Z"), d.Reason, orDash(cell(d.EventID)), cell(d.OriginalSubject), cell(d.Error))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "(%s)\n", deadLetters(len(out)))
			return nil
		}),
	}
	list.Flags().StringVar(&reason, "reason", "", "only this reason: "+strings.Join(iunats.Reasons, ", "))

	var all bool
	var seqs []uint
	redrive := &cobra.Command{
		Use:   "redrive (--reason R | --seq N[,N...] | --all)",
		Short: "Publish dead letters back to their original subject, and delete them once republished",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if reason == "" && len(seqs) == 0 && !all {
				return usagef("dead redrive: say which: --reason R, --seq N or --all")
			}
			if all && (reason != "" || len(seqs) > 0) {
				return usagef("dead redrive: --all redrives every dead letter; leave out --reason and --seq")
			}
			if reason != "" {
				if err := iunats.CheckReason(reason); err != nil {
					return usageError{err}
				}
			}
			conn, err := a.dialNATS(cmd.Context(), nf)
			if err != nil {
				return err
			}
			defer conn.Close()
			f := iunats.DeadFilter{Reason: reason}
			for _, s := range seqs {
				f.Seqs = append(f.Seqs, uint64(s))
			}
			var done []iunats.DeadLetter
			err = conn.DeadLetters(cmd.Context(), f, func(d iunats.DeadLetter) error {
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				if err := conn.Redrive(ctx, d); err != nil {
					return err
				}
				done = append(done, d)
				if !a.json {
					fmt.Fprintf(a.stdout, "redriven %d (%s, event %s) to %s\n", d.Seq, d.Reason, orDash(d.EventID), d.OriginalSubject)
				}
				return nil
			})
			if a.json {
				if done == nil {
					done = []iunats.DeadLetter{}
				}
				if jerr := a.printJSON(map[string]any{"redriven": len(done), "dead_letters": done}); jerr != nil {
					return jerr
				}
			} else {
				fmt.Fprintf(a.stdout, "%s redriven\n", deadLetters(len(done)))
			}
			if err != nil {
				return fmt.Errorf("redrive stopped after %d: %w", len(done), deadStreamError(nf, err))
			}
			return nil
		}),
	}
	rf := redrive.Flags()
	rf.StringVar(&reason, "reason", "", "redrive the dead letters of this reason: "+strings.Join(iunats.Reasons, ", "))
	rf.UintSliceVar(&seqs, "seq", nil, "redrive the dead letters with these sequence numbers (as iu dead list shows them)")
	rf.BoolVar(&all, "all", false, "redrive every dead letter")
	cmd.AddCommand(list, redrive)
	return cmd
}

// deadLetters says "1 dead letter", "2 dead letters".
func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}

// dialNATS connects for a command that only reads or republishes: it
// creates no stream.
func (a *app) dialNATS(ctx context.Context, nf natsFlags) (*iunats.Conn, error) {
	if nf.cfg.URL == "" {
		return nil, usagef("no NATS server: give --nats URL or set IU_NATS_URL")
	}
	cfg := nf.cfg
	cfg.Name = "iu cli"
	return iunats.Dial(ctx, cfg, nil)
}

// deadStreamError says plainly that the dead-letter stream is missing.
func deadStreamError(nf natsFlags, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream %s on %s: iu serve --nats creates it (or name yours with --nats-dead-letter-stream)", nf.cfg.DeadLetterStream, nf.cfg.URL)
	}
	return err
}
