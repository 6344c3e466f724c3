package console

import (
	"context"
	"errors"
	"time"

	"github.com/iu-engine/iu"
)

// chartWindow is how far back the overview's charts reach.
const chartWindow = 15 * time.Minute

// overviewWait is how long the overview waits for the per-template counts
// when it has none: past it, it answers without them (see summaryCache).
const overviewWait = 50 * time.Millisecond

// overviewPage is what the overview shows.
type overviewPage struct {
	Stats         []iu.TemplateStat
	Instances     int64 // auto instances, all templates
	LastHour      int64 // of which made in the last hour
	Gates         []gateRow
	Activity      *activityView // nil when the console has no intake to watch
	CountedAt     time.Time     // when the summary was read
	Counting      bool          // the summary is being read: the next refresh brings it
	Store         string
	Schema        int64
	SchemaProblem string // why the schema is not the one this iu knows, "" when it is
	At            time.Time
}

// gateRow is one gate as a page shows it.
type gateRow struct {
	Name  string
	On    bool
	Help  string
	Admin bool   // offer the switch
	CSRF  string // for the switch's form
	Back  string // the page to come back to
}

// gateHelp says what a closed gate stops.
var gateHelp = map[string]string{
	iu.GateComposer:        "all composition, manual and by events",
	iu.GateAutoInstantiate: "instantiation by events",
}

// activityView is the intake's recent activity.
type activityView struct {
	Outcomes []outcomeCount // last hour
	Rate     float64        // events per second over the last 5 minutes
	P99      time.Duration  // over the last 5 minutes
	Rates    chart
	Latency  chart
	Minutes  []minuteRow // the charts' numbers, newest first
}

type outcomeCount struct {
	Name  string
	Count int64
	Help  string
}

type minuteRow struct {
	Start  time.Time
	Events int64
	Rate   float64
	P99    time.Duration
}

func gateRows(g iu.Gates) []gateRow {
	rows := make([]gateRow, len(iu.GateNames))
	for i, name := range iu.GateNames {
		rows[i] = gateRow{Name: name, On: g.Get(name), Help: "stops " + gateHelp[name] + " when off"}
	}
	return rows
}

// overviewData gathers the overview: the per-template summary, the gates,
// the intake's activity, the store and its schema.
func (c *Console) overviewData(ctx context.Context) (overviewPage, error) {
	p := overviewPage{At: c.opt.Now().UTC(), Store: c.e.Store().Describe()}
	var err error
	p.Stats, p.CountedAt, err = c.stats(ctx, overviewWait)
	switch {
	case errors.Is(err, errCounting):
		p.Counting = true
	case err != nil:
		return p, err
	}
	for _, s := range p.Stats {
		p.Instances += s.InstanceCount
		p.LastHour += s.InstancesLastHour
	}
	g, err := c.e.Gates(ctx)
	if err != nil {
		return p, err
	}
	p.Gates = gateRows(g)
	if p.Schema, err = c.e.SchemaVersion(ctx); err != nil {
		return p, err
	}
	if err := c.e.Ready(ctx); err != nil {
		p.SchemaProblem = publicMessage(err, "")
	}
	if c.opt.Activity != nil {
		p.Activity = activityOf(c.opt.Activity())
	}
	return p, nil
}

// activityOf turns the batcher's snapshot into what the overview shows.
func activityOf(s iu.ActivitySnapshot) *activityView {
	h := s.LastHour
	v := &activityView{Outcomes: []outcomeCount{
		{iu.OutcomeOK, h.OK, "new instances"},
		{iu.OutcomeReplayed, h.Replayed, "redeliveries answered with the first instance"},
		{iu.OutcomeShadow, h.Shadow, "logged for a shadow template, nothing made"},
		{iu.OutcomeGated, h.Gated, "a gate was off, nothing written"},
		{iu.OutcomeRefused, h.Refused, "errors: invalid, unknown template, conflict, store failure"},
	}}
	_, v.Rate, v.P99 = s.Summary(5 * time.Minute)
	pts := s.Recent(chartWindow)
	v.Rates, v.Latency = rateChart(pts), latencyChart(pts)
	perMinute := int(time.Minute / iu.ActivityBucket)
	for i := len(pts); i >= perMinute; i -= perMinute {
		var n int64
		var p99 time.Duration
		for _, p := range pts[i-perMinute : i] {
			n += p.Counts.Total()
			p99 = max(p99, p.P99)
		}
		v.Minutes = append(v.Minutes, minuteRow{Start: pts[i-perMinute].Start, Events: n, Rate: float64(n) / 60, P99: p99})
	}
	return v
}

// withSession fills in what only the session knows: whether to offer the
// switches, and the CSRF token their forms carry.
func (p *overviewPage) withSession(q *request, back string) {
	for i := range p.Gates {
		p.Gates[i].Admin = q.s.tok.Scope == iu.ScopeAdmin
		p.Gates[i].CSRF = q.s.csrf
		p.Gates[i].Back = back
	}
}

func (c *Console) handleOverview(q *request) error {
	p, err := c.overviewData(q.ctx())
	p.withSession(q, "/")
	refresh := int(c.opt.Refresh / time.Second)
	if p.Counting {
		refresh = 1 // the counts are on their way
	}
	return c.show(q, "overview", layout{Title: "Overview", Refresh: refresh}, p, err)
}

// handleOverviewLive answers the overview's live part, for the script
// that refreshes it.
func (c *Console) handleOverviewLive(q *request) error {
	p, err := c.overviewData(q.ctx())
	if err != nil {
		return err
	}
	p.withSession(q, "/")
	c.renderLive(q, "overview", layout{Refresh: int(c.opt.Refresh / time.Second)}, p)
	return nil
}
