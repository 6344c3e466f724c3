package console

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iu-engine/iu"
)

// A migration of a million instances takes a minute, longer than a page
// should wait: like a verify, it runs as a job in the background and its
// page shows the progress. One migration per (from, to) runs at a time:
// asking again, or reloading, shows the running one instead of starting
// another. A job that is stopped (the server shuts down) leaves no
// instance half moved; starting it again finishes it.

const (
	maxMigrateJobs    = 16 // jobs remembered; the oldest finished ones go first
	maxMigrateRunning = 2  // jobs running at once: each writes in batches
	migrateTimeout    = 12 * time.Hour
)

type migrateJob struct {
	id      string
	req     iu.MigrateRequest
	by      string
	started time.Time
	moved   atomic.Int64
	total   atomic.Int64
	done    chan struct{}
	// Set before done is closed.
	took   time.Duration
	report *iu.MigrateReport
	err    error
}

func (j *migrateJob) running() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

type migrateJobs struct {
	mu    sync.Mutex
	jobs  []*migrateJob // oldest first
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	ended bool
}

func (mj *migrateJobs) init() {
	mj.ctx, mj.stop = context.WithCancel(context.Background())
}

// start runs req under by's name, or returns the migration already
// running between the same two versions, and running true: two at once
// would only contend for the same instances.
func (mj *migrateJobs) start(e *iu.Engine, req iu.MigrateRequest, by string, now time.Time, finished func()) (j *migrateJob, running bool, err error) {
	mj.mu.Lock()
	defer mj.mu.Unlock()
	if mj.ended {
		return nil, false, httpError(http.StatusServiceUnavailable, "The server is shutting down.")
	}
	n := 0
	for _, o := range mj.jobs {
		if o.running() {
			if o.req.From == req.From && o.req.To == req.To {
				return o, true, nil
			}
			n++
		}
	}
	if n >= maxMigrateRunning {
		return nil, false, httpError(http.StatusServiceUnavailable, "%d migrations are running already; wait for one of them to finish.", n)
	}
	req.Apply = true
	j = &migrateJob{id: randomID()[:22], req: req, by: by, started: now, done: make(chan struct{})}
	j.total.Store(-1)
	for len(mj.jobs) >= maxMigrateJobs {
		k := -1
		for i, o := range mj.jobs {
			if !o.running() {
				k = i
				break
			}
		}
		if k < 0 {
			break
		}
		mj.jobs = append(mj.jobs[:k], mj.jobs[k+1:]...)
	}
	mj.jobs = append(mj.jobs, j)
	mj.wg.Add(1)
	go func() {
		defer mj.wg.Done()
		ctx, cancel := context.WithTimeout(iu.NewContextWithPrincipal(mj.ctx, by), migrateTimeout)
		defer cancel()
		t0 := time.Now()
		j.report, j.err = e.Migrate(ctx, req, func(moved, total int64) {
			j.moved.Store(moved)
			j.total.Store(total)
		})
		j.took = time.Since(t0)
		finished()
		close(j.done)
	}()
	return j, false, nil
}

func (mj *migrateJobs) get(id string) *migrateJob {
	mj.mu.Lock()
	defer mj.mu.Unlock()
	for _, j := range mj.jobs {
		if j.id == id {
			return j
		}
	}
	return nil
}

// close cancels the running migrations (each stops between two batches)
// and waits for them.
func (mj *migrateJobs) close() {
	mj.mu.Lock()
	mj.ended = true
	mj.mu.Unlock()
	mj.stop()
	mj.wg.Wait()
}

// migratePage is the form of a migration from one version of a template,
// its preview (dry run), or its job.
type migratePage struct {
	From          string
	To            string
	Actor, Prefix string
	Versions      []iu.TemplateInfo // the other versions of From
	Selected      string            // the version the form offers first
	Preview       *iu.MigrateReport
	Slots         []slotDiff // the preview's graph difference, slot by slot
	Job           *migrateView
	CSRF          string
}

// Nothing says that the preview found no instance to move.
func (p migratePage) Nothing() bool { return p.Preview != nil && p.Preview.Instances == 0 }

// slotDiff is one slot that the two versions do not have alike.
type slotDiff struct {
	Slot      string
	Change    string // added, removed, changed
	FromBody  string // the source's piece; "" when added
	ToBody    string // the target's piece; "" when removed
	FromAfter []string
	ToAfter   []string
	Piece     bool // the piece changed
	Edges     bool // the after edges changed
}

func (c *Console) migrateData(ctx context.Context, req iu.MigrateRequest) (migratePage, error) {
	p := migratePage{From: req.From, To: req.To, Actor: req.Actor, Prefix: req.Prefix}
	if req.From == "" {
		return p, httpError(http.StatusBadRequest, "Choose the template whose instances are to move: its page (under Templates) offers to migrate them.")
	}
	var err error
	if p.Versions, err = otherVersions(ctx, c.e, req.From); err != nil {
		return p, err
	}
	p.Selected = req.To
	if p.Selected == "" && len(p.Versions) > 0 {
		p.Selected = p.Versions[len(p.Versions)-1].Key // the latest
	}
	if req.To == "" {
		return p, nil
	}
	req.Apply = false
	if p.Preview, err = c.e.Migrate(ctx, req, nil); err != nil {
		return p, err
	}
	from, err := c.e.GetTemplate(ctx, req.From)
	if err != nil {
		return p, err
	}
	to, err := c.e.GetTemplate(ctx, req.To)
	if err != nil {
		return p, err
	}
	p.Slots = diffSlots(from, to, p.Preview.Diff)
	return p, nil
}

// otherVersions are the published versions of key's template but key.
func otherVersions(ctx context.Context, e *iu.Engine, key string) ([]iu.TemplateInfo, error) {
	vs, err := e.TemplateVersions(ctx, key)
	if err != nil {
		return nil, err
	}
	out := vs[:0]
	for _, v := range vs {
		if v.Key != key {
			out = append(out, v)
		}
	}
	return out, nil
}

// diffSlots lays the graph difference out slot by slot, with the bodies of
// the pieces, so that a person sees what an instance will say.
func diffSlots(from, to *iu.Template, d iu.GraphDiff) []slotDiff {
	slot := func(t *iu.Template, id string) (string, []string) {
		for _, s := range t.Slots {
			if s.ID == id {
				return t.Pieces[s.Piece].Body, s.After
			}
		}
		return "", nil
	}
	var out []slotDiff
	for _, id := range d.Added {
		body, after := slot(to, id)
		out = append(out, slotDiff{Slot: id, Change: "added", ToBody: body, ToAfter: after, Piece: true, Edges: len(after) > 0})
	}
	for _, id := range d.Removed {
		body, after := slot(from, id)
		out = append(out, slotDiff{Slot: id, Change: "removed", FromBody: body, FromAfter: after, Piece: true, Edges: len(after) > 0})
	}
	for _, ch := range d.Changed {
		s := slotDiff{Slot: ch.Slot, Change: "changed", FromAfter: ch.FromAfter, ToAfter: ch.ToAfter, Piece: ch.PieceChange, Edges: ch.EdgesChange}
		s.FromBody, _ = slot(from, ch.Slot)
		s.ToBody, _ = slot(to, ch.Slot)
		out = append(out, s)
	}
	return out
}

// migrateForm reads a migration's fields, from the query (preview) or the
// posted form (apply).
func migrateForm(get func(string) string) iu.MigrateRequest {
	return iu.MigrateRequest{From: get("from"), To: get("to"), Actor: get("actor"), Prefix: get("prefix")}
}

func migrateTitle(from string) string {
	if from == "" {
		return "Migrate"
	}
	return "Migrate " + from
}

func (c *Console) handleMigrate(q *request) error {
	if id := q.r.URL.Query().Get("job"); id != "" {
		return c.showMigrateJob(q, id)
	}
	req := migrateForm(q.r.URL.Query().Get)
	p, err := c.migrateData(q.ctx(), req)
	p.CSRF = q.s.csrf
	return c.show(q, "migrate", layout{Title: migrateTitle(req.From), Nav: "templates"}, p, err)
}

// handleApplyMigrate starts a migration once the operator has seen its
// preview and confirmed it, and sends them to its progress. A migration
// between the same two versions that is running already is shown instead
// of starting another.
func (c *Console) handleApplyMigrate(q *request) error {
	req := migrateForm(q.r.PostFormValue)
	// The dry run checks the request (one template, the target published)
	// here, where a mistake can be shown with the form, not in the job.
	p, err := c.migrateData(q.ctx(), req)
	p.CSRF = q.s.csrf
	l := layout{Title: migrateTitle(req.From), Nav: "templates"}
	if err == nil && req.To == "" {
		err = httpError(http.StatusBadRequest, "Nothing was moved: choose the version to migrate to.")
	}
	if err == nil && q.r.PostFormValue("confirm") != "yes" {
		err = httpError(http.StatusBadRequest, "Nothing was moved: tick the box to confirm the migration.")
	}
	if err != nil {
		return c.show(q, "migrate", l, p, err)
	}
	j, running, err := c.migrations.start(c.e, req, q.s.tok.Name, c.opt.Now(), c.summary.forget)
	if err != nil {
		return c.show(q, "migrate", l, p, err)
	}
	notice := ""
	if running {
		notice = "A migration from " + req.From + " to " + req.To + " is running already, started by " + j.by + "; this is its progress. Start another once it has finished."
	} else {
		c.log.Info("console: migration started", "from", req.From, "to", req.To, "actor", req.Actor, "prefix", req.Prefix, "token", q.s.tok.Name)
	}
	return c.redirect(q, "/migrate?job="+j.id, notice)
}

// migrateView is a migration job as its page shows it.
type migrateView struct {
	ID      string
	From    string
	To      string
	Actor   string
	Prefix  string
	By      string
	Started time.Time
	Moved   int64
	Total   int64 // -1 until the first batch
	Percent int
	Done    bool
	Took    time.Duration
	Report  *iu.MigrateReport
	Error   string
}

// Again is the address of the job's preview, to run it again.
func (v *migrateView) Again() string {
	q := url.Values{"from": {v.From}, "to": {v.To}}
	if v.Actor != "" {
		q.Set("actor", v.Actor)
	}
	if v.Prefix != "" {
		q.Set("prefix", v.Prefix)
	}
	return "/migrate?" + q.Encode()
}

func (j *migrateJob) view(reqID string) *migrateView {
	v := &migrateView{ID: j.id, From: j.req.From, To: j.req.To, Actor: j.req.Actor, Prefix: j.req.Prefix, By: j.by, Started: j.started,
		Moved: j.moved.Load(), Total: j.total.Load()}
	if !j.running() {
		v.Done, v.Took, v.Report = true, j.took, j.report
		if v.Report != nil {
			v.Moved = v.Report.Moved
		}
		if j.err != nil {
			v.Error = publicMessage(j.err, reqID)
		}
	}
	switch {
	case v.Done && v.Error == "":
		v.Percent = 100
	case v.Total > 0:
		// Instances made during the run may move too: more than counted.
		v.Percent = int(min(100, v.Moved*100/v.Total))
	}
	return v
}

func (c *Console) migrateJob(id string) (*migrateJob, error) {
	j := c.migrations.get(id)
	if j == nil {
		return nil, httpError(http.StatusNotFound, "That migration is no longer remembered (the server restarted, or it ended long ago); its template's page shows where the instances are now.")
	}
	return j, nil
}

func (c *Console) showMigrateJob(q *request, id string) error {
	j, err := c.migrateJob(id)
	if err != nil {
		return c.show(q, "migrate", layout{Title: "Migrate", Nav: "templates"}, migratePage{}, err)
	}
	v := j.view(q.id)
	p := migratePage{From: v.From, To: v.To, Actor: v.Actor, Prefix: v.Prefix, Job: v, CSRF: q.s.csrf}
	return c.show(q, "migrate", layout{Title: "Migrate " + v.From + " to " + v.To, Nav: "templates", Refresh: 1}, p, nil)
}

func (c *Console) handleMigrateLive(q *request) error {
	j, err := c.migrateJob(q.r.URL.Query().Get("job"))
	if err != nil {
		return err
	}
	v := j.view(q.id)
	c.renderLive(q, "migrate", layout{Refresh: 1}, migratePage{From: v.From, To: v.To, Job: v})
	return nil
}
