package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"iter"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/iu-engine/iu"
)

func (a *app) bulkCommand() *cobra.Command {
	var progress string
	cmd := &cobra.Command{
		Use:   "bulk PLAN",
		Short: "Run a bulk plan: many events in ONE all-or-nothing transaction",
		Long: `Run a bulk plan in one transaction. The plan's gates are set inside the
transaction and restored before commit; every event is instantiated (a repeat is
answered replayed); the surfaces are read back before commit and counted again on a
fresh connection after; the actor's instances are verified. Any error rolls the
whole transaction back and names the offending event.

Events are listed in the plan (events:) or streamed from an NDJSON file
(events_file:, relative to the plan; - for standard input), one event per line:
  {"template": "tpl:wf:onboarding/v2", "id": "e-1", "type": "hr.hired", "subject": "Ada", "data": {...}}

--progress: lines (a line per event), bar (a progress bar on a terminal), none;
auto picks lines for plans that list their events and a bar for streamed files on a terminal.

Exit status: 0 when every event was applied, 1 when the run failed and nothing was
written, 3 when it committed but some events were gated (nothing was written for
them; the report names the closed gates).`,
		Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			switch progress {
			case "auto", "lines", "bar", "none":
			default:
				return usagef("--progress %q: want auto, lines, bar or none", progress)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read plan: %w", err)
			}
			plan, err := iu.ParseBulkPlan(args[0], data)
			if err != nil {
				return err
			}
			events, total, closeEvents, err := a.planEvents(args[0], plan)
			if err != nil {
				return err
			}
			defer closeEvents()
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			mode := progress
			if mode == "auto" {
				switch {
				case plan.EventsFile == "":
					mode = "lines"
				case isTerminal(a.stderr):
					mode = "bar"
				default:
					mode = "none"
				}
			}
			rep, err := svc.Bulk(cmd.Context(), plan, events, a.bulkProgress(mode, total))
			a.finishProgress()
			if err != nil {
				return err
			}
			return a.printBulkReport(rep, plan)
		}),
	}
	cmd.Flags().StringVar(&progress, "progress", "auto", "how to report events as they go: auto, lines, bar, none")
	return cmd
}

// planEvents returns the plan's event stream and, when it can be known
// cheaply, how many events it has (-1 otherwise).
func (a *app) planEvents(planFile string, plan *iu.BulkPlan) (iter.Seq2[iu.BulkEvent, error], int64, func(), error) {
	if plan.EventsFile == "" {
		return iu.SliceEvents(plan.Events), int64(len(plan.Events)), func() {}, nil
	}
	if plan.EventsFile == "-" {
		return iu.ReadNDJSON("stdin", a.stdin), -1, func() {}, nil
	}
	name := relTo(planFile, plan.EventsFile)
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("events_file: %w", err)
	}
	total := int64(-1)
	if n, err := countLines(f); err == nil {
		total = n
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return iu.ReadNDJSON(name, bufio.NewReaderSize(f, 1<<20)), total, func() { f.Close() }, nil
}

func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressState is the live report of a running bulk.
type progressState struct {
	bar     *progressbar.ProgressBar
	seq     int
	byTpl   map[string]map[string]int
	lines   bool
	linesTo io.Writer
}

func (a *app) bulkProgress(mode string, total int64) iu.BulkProgress {
	if mode == "none" {
		return nil
	}
	st := &progressState{byTpl: map[string]map[string]int{}}
	a.progress = st
	if mode == "bar" {
		st.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription("bulk"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionClearOnFinish(),
		)
		return func(iu.BulkEvent, iu.Result) { st.bar.Add(1) }
	}
	st.lines, st.linesTo = true, a.stdout
	if a.json {
		st.linesTo = a.stderr
	}
	return func(be iu.BulkEvent, r iu.Result) {
		st.seq++
		status := string(r.Status)
		if r.Replayed {
			status += " (replayed)"
		}
		if st.byTpl[be.Template] == nil {
			st.byTpl[be.Template] = map[string]int{}
		}
		st.byTpl[be.Template][status]++
		extra := r.InstanceKey
		if r.Gate != "" {
			extra = "gate " + r.Gate + " is off"
		}
		fmt.Fprintf(st.linesTo, "NOTICE:  #%d %s %s -> %s %s\n", st.seq, be.Template, be.Event.ID, status, extra)
	}
}

// finishProgress ends the bar, or sums up the lines per template.
func (a *app) finishProgress() {
	st := a.progress
	if st == nil {
		return
	}
	a.progress = nil
	if st.bar != nil {
		st.bar.Finish()
		return
	}
	tpls := make([]string, 0, len(st.byTpl))
	for t := range st.byTpl {
		tpls = append(tpls, t)
	}
	sort.Strings(tpls)
	for _, t := range tpls {
		var parts []string
		for s, n := range st.byTpl[t] {
			parts = append(parts, fmt.Sprintf("%s (%d)", s, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(st.linesTo, "NOTICE:  %s -> %s\n", t, strings.Join(parts, ", "))
	}
}

// printBulkReport prints the report. A run some of whose events were held
// back by a closed gate committed the others: it is exit status 3.
func (a *app) printBulkReport(rep *iu.BulkReport, plan *iu.BulkPlan) error {
	if a.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		writeBulkReport(a.stdout, rep, plan)
	}
	if rep.Counts.Gated > 0 {
		return gated(fmt.Errorf("%d events gated", rep.Counts.Gated))
	}
	return nil
}

// writeBulkReport prints the seed's report: surfaces pre / post / delta, the
// gates inside the transaction and after commit, and the digest invariant.
func writeBulkReport(w io.Writer, rep *iu.BulkReport, plan *iu.BulkPlan) {
	c := rep.Counts
	fmt.Fprintf(w, "\nbulk %s: committed %d events in one transaction: ok %d, replayed %d, shadow %d, gated %d\n\n",
		rep.Actor, c.Total(), c.OK, c.Replayed, c.Shadow, c.Gated)
	prefix := plan.Prefix()
	tw := table(w)
	fmt.Fprintln(tw, "Surface\tPre-call\tRead-back in TX\tPost-commit\tDelta")
	row := func(name string, d iu.SurfaceDelta, readBack int64) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%+d\n", name, d.Pre, readBack, d.Post, d.Delta)
	}
	row("iu_auto_instantiate_event_log for actor "+rep.Actor, rep.Surfaces.EventLog, rep.ReadBack.EventLog)
	row("iu_collection_template_instance_lineage for actor", rep.Surfaces.Lineage, rep.ReadBack.Lineage)
	row("iu_piece_collection matching "+iu.AutoInstancePrefix(prefix)+"%", rep.Surfaces.Instances, rep.ReadBack.Instances)
	tw.Flush()
	g := rep.Gates
	fmt.Fprintf(w, "gates composer_enabled / auto_instantiate_enabled: %t / %t (inside TX) -> %t / %t (post-commit)\n",
		g.InsideTx.ComposerEnabled, g.InsideTx.AutoInstantiateEnabled, g.PostCommit.ComposerEnabled, g.PostCommit.AutoInstantiateEnabled)
	if c.Gated > 0 {
		var open []string
		for _, g := range rep.ClosedGates {
			open = append(open, strings.TrimPrefix(g, "iu_core.")+"=true")
		}
		fmt.Fprintf(w, "\n%d events were gated: nothing was written for them (closed: %s). Open the gates (iu gate set %s), or set them in the plan's gates:, and run the plan again; the events already written answer replayed.\n",
			c.Gated, strings.Join(rep.ClosedGates, ", "), strings.Join(open, " "))
	}
	d := rep.Digest
	fmt.Fprintf(w, "\nDigest-match invariant: %d matches / %d diverges / %d total\n", d.Matches, d.Diverges, d.Total)
	if rep.Committing > 0 && c.Total() >= 1000 {
		fmt.Fprintf(w, "Transaction: %s (%.0f events/s); verify: %s\n", rep.Committing.Round(time.Millisecond),
			float64(c.Total())/rep.Committing.Seconds(), rep.Verifying.Round(time.Millisecond))
	}
}
