package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
)

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// cell makes text that iu did not check (a dead letter is what was
// refused) safe for a table on a terminal: control characters (an escape
// sequence would be obeyed; a tab or newline would break the table) and
// bytes that are not UTF-8 are written as Go escapes.
func cell(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func (a *app) printPublish(res []iu.PublishResult) error {
	if a.json {
		return a.printJSON(res)
	}
	tw := table(a.stdout)
	fmt.Fprintln(tw, "KEY\tDIGEST\tPIECES\tRESULT")
	for _, r := range res {
		what := "published"
		if !r.Created {
			what = "unchanged (identical content already published)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Key, r.Digest, r.Pieces, what)
	}
	return tw.Flush()
}

func (a *app) printTemplates(ts []iu.TemplateInfo) error {
	if a.json {
		return a.printJSON(ts)
	}
	tw := table(a.stdout)
	fmt.Fprintln(tw, "KEY\tTITLE\tMODE\tPIECES\tDIGEST\tPUBLISHED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s by %s\n", t.Key, t.Title, t.EmitMode, t.Pieces, t.Digest, t.CreatedAt, t.Actor)
	}
	if len(ts) == 0 {
		fmt.Fprintln(tw, "(no templates: publish one with iu template publish FILE)")
	}
	return tw.Flush()
}

func (a *app) printTemplate(t *iu.Template) error {
	if a.json {
		return a.printJSON(iuhttp.NewTemplateDoc(t))
	}
	fmt.Fprintf(a.stdout, "key:        %s\ntitle:      %s\nemit mode:  %s\ndigest:     %s\npublished:  %s by %s\n\n",
		t.Key, t.Title, t.EmitMode, t.Digest, t.CreatedAt, t.Actor)
	tw := table(a.stdout)
	fmt.Fprintln(tw, "SLOT\tKIND\tAFTER\tPIECE\tBODY")
	for _, s := range t.Slots {
		p := t.Pieces[s.Piece]
		body := strings.ReplaceAll(p.Body, "\n", " ")
		if len(body) > 60 {
			body = body[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, p.Kind, strings.Join(s.After, ","), s.Piece.String()[:19], body)
	}
	return tw.Flush()
}

func (a *app) printGates(g iu.Gates, trail []iu.GateAuditEntry, withTrail bool) error {
	if a.json {
		if !withTrail {
			return a.printJSON(g)
		}
		return a.printJSON(map[string]any{"gates": g, "audit": trail})
	}
	tw := table(a.stdout)
	fmt.Fprintln(tw, "GATE\tENABLED")
	for _, n := range iu.GateNames {
		fmt.Fprintf(tw, "%s\t%t\n", n, g.Get(n))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if withTrail {
		fmt.Fprintln(a.stdout, "\nChanges, newest first (BY: who made it; CLAIMED: the actor the client named):")
		tw = table(a.stdout)
		fmt.Fprintln(tw, "WHEN\tGATE\tENABLED\tBY\tCLAIMED")
		for _, e := range trail {
			fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", e.ChangedAt, e.Name, e.Enabled, e.ChangedBy, orDash(e.Claimed))
		}
		return tw.Flush()
	}
	return nil
}

// printResult prints an emit's result. A gated one wrote nothing: it is
// exit status 3 (exitGated), and the text says which gate to open.
func (a *app) printResult(r iu.Result) error {
	if a.json {
		if err := a.printJSON(r); err != nil {
			return err
		}
	} else if r.Status == iu.StatusGated {
		fmt.Fprintf(a.stdout, "status:          gated\ngate:            %s is off\n", r.Gate)
		fmt.Fprintf(a.stdout, "nothing was written: open the gate (iu gate set %s=true) and send the event again\n", strings.TrimPrefix(r.Gate, "iu_core."))
	} else {
		fmt.Fprintf(a.stdout, "status:          %s\ninstance_key:    %s\nidempotency_key: %s\nreplayed:        %t\n", r.Status, r.InstanceKey, r.IdempotencyKey, r.Replayed)
	}
	if r.Status == iu.StatusGated {
		return gated(fmt.Errorf("gated: gate %s is off; nothing was written", r.Gate))
	}
	return nil
}

// gated is the failure of a command that wrote nothing, or not everything,
// because a gate is closed: exit status 3, after the command printed why.
func gated(err error) error { return failure{err: err, reported: true, code: exitGated} }

// instanceHeader is the head of iu instances' table.
const instanceHeader = "INSTANCE_KEY\tTEMPLATE_KEY\tEVENT_ID\tEVENT_TYPE\tACTOR\tCREATED_AT\tDIGEST_MATCH"

func writeInstanceRows(tw io.Writer, rows []iu.InstanceRow) {
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%t\n", r.InstanceKey, r.TemplateKey, r.EventID, r.EventType, r.Actor, r.CreatedAt, r.DigestMatch)
	}
}

func (a *app) printStats(st []iu.TemplateStat) error {
	if a.json {
		return a.printJSON(st)
	}
	return writeStats(a.stdout, st)
}

// writeStats prints the summary view as psql would.
func writeStats(w io.Writer, st []iu.TemplateStat) error {
	rows := [][]string{{"template_collection_key", "emit_mode", "instance_count", "instances_last_hour"}}
	for _, s := range st {
		rows = append(rows, []string{s.TemplateKey, string(s.EmitMode), fmt.Sprint(s.InstanceCount), fmt.Sprint(s.InstancesLastHour)})
	}
	return psqlTable(w, rows, []bool{false, false, true, true})
}

// psqlTable prints rows (the first is the header) in psql's aligned format.
func psqlTable(w io.Writer, rows [][]string, right []bool) error {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	for n, r := range rows {
		for i, c := range r {
			if i > 0 {
				b.WriteString(" | ")
			} else {
				b.WriteString(" ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if n > 0 && right[i] {
				b.WriteString(pad + c)
			} else if n == 0 {
				l := (width[i] - len(c)) / 2
				b.WriteString(strings.Repeat(" ", l) + c + strings.Repeat(" ", width[i]-len(c)-l))
			} else {
				b.WriteString(c + pad)
			}
		}
		b.WriteString("\n")
		if n == 0 {
			for i := range r {
				if i > 0 {
					b.WriteString("+")
				}
				b.WriteString(strings.Repeat("-", width[i]+2))
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "(%d rows)\n", len(rows)-1)
	_, err := io.WriteString(w, b.String())
	return err
}

func (a *app) printVerify(r *iu.VerifyReport) error {
	if a.json {
		return a.printJSON(r)
	}
	fmt.Fprintf(a.stdout, "Digest-match invariant: %d matches / %d diverges / %d total\n", r.Matches, r.Diverges, r.Total)
	for _, d := range r.Diverging {
		fmt.Fprintf(a.stdout, "  DIVERGES %s (%s)\n", d.InstanceKey, d.TemplateKey)
		for _, why := range d.Reasons {
			fmt.Fprintf(a.stdout, "    - %s\n", why)
		}
	}
	if int64(len(r.Diverging)) < r.Diverges {
		fmt.Fprintf(a.stdout, "  (%d more not listed)\n", r.Diverges-int64(len(r.Diverging)))
	}
	o := r.Orphans
	if o.Total() == 0 {
		fmt.Fprintln(a.stdout, "Orphan rows: none")
	} else {
		fmt.Fprintf(a.stdout, "Orphan rows: %d memberships, %d lineage, %d event log, %d instances without lineage\n", o.Memberships, o.Lineage, o.EventLog, o.Instances)
	}
	return nil
}

func (a *app) printRollback(r iu.RollbackReport) error {
	if a.json {
		return a.printJSON(r)
	}
	verb := "would delete"
	if !r.DryRun {
		verb = "deleted"
	}
	fmt.Fprintf(a.stdout, "rollback %s (%s): %s log_rows=%d / lineage=%d / instances=%d / memberships=%d\n",
		r.Actor, map[bool]string{true: "dry run", false: "applied"}[r.DryRun], verb, r.LogRows, r.LineageRows, r.Instances, r.Memberships)
	if r.DryRun && r.LogRows+r.LineageRows+r.Instances > 0 {
		fmt.Fprintf(a.stdout, "run again with --apply to delete, in one transaction\n")
	}
	return nil
}
