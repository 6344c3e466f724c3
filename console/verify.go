package console

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iu-engine/iu"
)

// A verify of a million instances takes seconds, longer than a page should
// wait: it runs as a job in the background, and its page shows progress
// until the report is there.

const (
	maxVerifyJobs    = 16 // jobs remembered; the oldest finished ones go first
	maxVerifyRunning = 2  // jobs running at once: each reads the whole store
	verifyTimeout    = time.Hour
)

type verifyJob struct {
	id      string
	actor   string
	by      string
	started time.Time
	checked atomic.Int64
	total   atomic.Int64
	done    chan struct{}
	// Set before done is closed.
	took   time.Duration
	report *iu.VerifyReport
	err    error
}

type verifyJobs struct {
	mu    sync.Mutex
	jobs  []*verifyJob // oldest first
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	ended bool
}

func (vj *verifyJobs) init() {
	vj.ctx, vj.stop = context.WithCancel(context.Background())
}

func (j *verifyJob) running() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// start runs a verify of actor ("" for all), or returns the one already
// running for the same actor: asking twice does not double the work.
func (vj *verifyJobs) start(e *iu.Engine, actor, by string, now time.Time) (*verifyJob, error) {
	vj.mu.Lock()
	defer vj.mu.Unlock()
	if vj.ended {
		return nil, httpError(http.StatusServiceUnavailable, "The server is shutting down.")
	}
	running := 0
	for _, j := range vj.jobs {
		if j.running() {
			if j.actor == actor {
				return j, nil
			}
			running++
		}
	}
	if running >= maxVerifyRunning {
		return nil, httpError(http.StatusServiceUnavailable, "%d verifies are running already; wait for one of them to finish.", running)
	}
	j := &verifyJob{id: randomID()[:22], actor: actor, by: by, started: now, done: make(chan struct{})}
	j.total.Store(-1)
	// Forget the oldest finished jobs beyond the bound.
	for len(vj.jobs) >= maxVerifyJobs {
		k := -1
		for i, o := range vj.jobs {
			if !o.running() {
				k = i
				break
			}
		}
		if k < 0 {
			break
		}
		vj.jobs = append(vj.jobs[:k], vj.jobs[k+1:]...)
	}
	vj.jobs = append(vj.jobs, j)
	vj.wg.Add(1)
	go func() {
		defer vj.wg.Done()
		ctx, cancel := context.WithTimeout(vj.ctx, verifyTimeout)
		defer cancel()
		t0 := time.Now()
		j.report, j.err = e.VerifyProgress(ctx, actor, func(checked, total int64) {
			j.checked.Store(checked)
			j.total.Store(total)
		})
		j.took = time.Since(t0)
		close(j.done)
	}()
	return j, nil
}

func (vj *verifyJobs) get(id string) *verifyJob {
	vj.mu.Lock()
	defer vj.mu.Unlock()
	for _, j := range vj.jobs {
		if j.id == id {
			return j
		}
	}
	return nil
}

// close cancels the running jobs and waits for them.
func (vj *verifyJobs) close() {
	vj.mu.Lock()
	vj.ended = true
	vj.mu.Unlock()
	vj.stop()
	vj.wg.Wait()
}

// Close stops the console's background work (running verifies and
// migrations) and waits for it. The store must stay open until it returns.
func (c *Console) Close() {
	c.jobs.close()
	c.migrations.close()
}

// verifyPage is the verify form and, once one was started, its job.
type verifyPage struct {
	Actor  string
	Actors []string
	CSRF   string
	Job    *jobView
}

// jobView is a verify job as its page shows it.
type jobView struct {
	ID      string
	Actor   string
	By      string
	Started time.Time
	Checked int64
	Total   int64 // -1 when unknown
	Percent int
	Done    bool
	Took    time.Duration
	Report  *iu.VerifyReport
	Error   string
}

func (j *verifyJob) view(reqID string) *jobView {
	v := &jobView{ID: j.id, Actor: j.actor, By: j.by, Started: j.started, Checked: j.checked.Load(), Total: j.total.Load()}
	if !j.running() {
		v.Done, v.Took, v.Report = true, j.took, j.report
		if j.err != nil {
			v.Error = publicMessage(j.err, reqID)
		}
	}
	if v.Total > 0 {
		v.Percent = int(min(100, v.Checked*100/v.Total))
	} else if v.Done {
		v.Percent = 100
	}
	return v
}

func (c *Console) verifyData(ctx context.Context, jobID, reqID string) (verifyPage, error) {
	var p verifyPage
	if jobID != "" {
		j := c.jobs.get(jobID)
		if j == nil {
			return p, httpError(http.StatusNotFound, "That verify is no longer remembered: run it again.")
		}
		p.Job = j.view(reqID)
		p.Actor = j.actor
	}
	actors, err := c.e.Actors(ctx, "", 200)
	if err != nil {
		return p, err
	}
	p.Actors = actors
	return p, nil
}

func (c *Console) handleVerify(q *request) error {
	p, err := c.verifyData(q.ctx(), q.r.URL.Query().Get("job"), q.id)
	p.CSRF = q.s.csrf
	return c.show(q, "verify", layout{Title: "Verify", Refresh: 1}, p, err)
}

func (c *Console) handleVerifyLive(q *request) error {
	j := c.jobs.get(q.r.URL.Query().Get("job"))
	if j == nil {
		return httpError(http.StatusNotFound, "That verify is no longer remembered: run it again.")
	}
	c.renderLive(q, "verify", layout{Refresh: 1}, verifyPage{Job: j.view(q.id), Actor: j.actor})
	return nil
}

// handleStartVerify starts a verify. It changes nothing in the store, so
// a read token may run it; it is a POST because it starts work.
func (c *Console) handleStartVerify(q *request) error {
	actor := q.r.PostFormValue("actor")
	if actor != "" {
		if err := iu.CheckActor(actor); err != nil {
			return err
		}
	}
	j, err := c.jobs.start(c.e, actor, q.s.tok.Name, c.opt.Now())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/verify?job="+j.id, http.StatusSeeOther)
	return nil
}
