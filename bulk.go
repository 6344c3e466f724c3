package iu

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"
)

// BulkCounts tallies a bulk run's answers. A replayed event counts as
// replayed whatever its first status was.
type BulkCounts struct {
	OK       int64 `json:"ok"`
	Replayed int64 `json:"replayed"`
	Shadow   int64 `json:"shadow"`
	Gated    int64 `json:"gated"`
}

func (c *BulkCounts) add(r Result) {
	switch {
	case r.Replayed:
		c.Replayed++
	case r.Status == StatusOK:
		c.OK++
	case r.Status == StatusShadow:
		c.Shadow++
	case r.Status == StatusGated:
		c.Gated++
	}
}

// Total is the number of events answered.
func (c BulkCounts) Total() int64 { return c.OK + c.Replayed + c.Shadow + c.Gated }

// SurfaceDelta is one surface before and after a bulk run.
type SurfaceDelta struct {
	Pre   int64 `json:"pre"`
	Post  int64 `json:"post"`
	Delta int64 `json:"delta"`
}

func delta(pre, post int64) SurfaceDelta {
	return SurfaceDelta{Pre: pre, Post: post, Delta: post - pre}
}

// BulkReport is the seed's report of a bulk run.
type BulkReport struct {
	Actor     string     `json:"actor"`
	Committed bool       `json:"committed"`
	Counts    BulkCounts `json:"counts"`
	Surfaces  struct {
		EventLog  SurfaceDelta `json:"event_log"`
		Lineage   SurfaceDelta `json:"lineage"`
		Instances SurfaceDelta `json:"instances"`
	} `json:"surfaces"`
	Gates struct {
		InsideTx   Gates `json:"inside_tx"`
		PostCommit Gates `json:"post_commit"`
	} `json:"gates"`
	Digest VerifySummary `json:"digest"`
	// ClosedGates names the gates that held events back (Counts.Gated of
	// them): nothing was written for those events.
	ClosedGates []string `json:"closed_gates,omitempty"`
	// ReadBack is what the transaction saw of its own surfaces just before
	// commit; the JSON report leaves it out, as the seed's does.
	ReadBack Surfaces `json:"-"`
	// Committing is how long the transaction took, from BEGIN to COMMIT;
	// Verifying how long the post-commit verify took. Left out of JSON too.
	Committing time.Duration `json:"-"`
	Verifying  time.Duration `json:"-"`
}

// BulkProgress is told of each event's answer as the run goes. The answers
// are final only once the run has committed.
type BulkProgress func(BulkEvent, Result)

// Bulk runs a plan in ONE transaction: the plan's gates are set inside it,
// every event is instantiated (a repeat within the plan is answered
// replayed), the surfaces are read back, the gates are restored, and the
// transaction commits. Any error rolls everything back and names the event
// at fault. After commit the surfaces and gates are read again on a fresh
// connection, and the actor's instances are verified.
//
// events streams the events (nil means plan.Events); it is consumed once, so
// a bulk run is never retried.
func (e *Engine) Bulk(ctx context.Context, plan *BulkPlan, events iter.Seq2[BulkEvent, error], progress BulkProgress) (*BulkReport, error) {
	if err := CheckActor(plan.Actor); err != nil {
		return nil, err
	}
	if err := CheckPrefix(plan.Prefix()); err != nil {
		return nil, err
	}
	if events == nil {
		events = SliceEvents(plan.Events)
	}
	r := &bulkRun{e: e, plan: plan, keyPrefix: AutoInstancePrefix(plan.Prefix()), who: who(ctx, plan.Actor),
		progress: progress, rep: &BulkReport{Actor: plan.Actor}}
	var pre Surfaces
	if err := e.store.View(ctx, func(tx Tx) (err error) {
		pre, err = tx.CountSurfaces(ctx, plan.Actor, r.keyPrefix)
		return err
	}); err != nil {
		return nil, err
	}
	txStart := time.Now()
	if err := e.store.UpdateOnce(ctx, func(tx Tx) error { return r.transaction(ctx, tx, events) }); err != nil {
		return nil, fmt.Errorf("bulk rolled back, nothing written: %w", err)
	}
	r.rep.Committed, r.rep.Committing = true, time.Since(txStart)
	return r.rep, r.afterCommit(ctx, pre)
}

// bulkRun is one bulk run's state: its plan, what it reports, and where
// the report goes as it goes.
type bulkRun struct {
	e         *Engine
	plan      *BulkPlan
	keyPrefix string
	who       Who
	progress  BulkProgress
	rep       *BulkReport
}

// transaction is the run's one transaction: the plan's gates set, every
// event instantiated a chunk at a time, the surfaces read back, the run
// audited, the gates restored.
func (r *bulkRun) transaction(ctx context.Context, tx Tx, events iter.Seq2[BulkEvent, error]) error {
	e, plan := r.e, r.plan
	before, err := tx.Gates(ctx)
	if err != nil {
		return err
	}
	if r.rep.Gates.InsideTx, err = e.setGates(ctx, tx, plan.Gates, r.who); err != nil {
		return err
	}
	templates := make(map[string]*Template)
	chunk := make([]BulkEvent, 0, e.chunk)
	for be, err := range events {
		if err != nil {
			return err
		}
		if chunk = append(chunk, be); len(chunk) == cap(chunk) {
			if err := r.instantiate(ctx, tx, chunk, templates); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	if err := r.instantiate(ctx, tx, chunk, templates); err != nil {
		return err
	}
	if r.rep.ReadBack, err = tx.CountSurfaces(ctx, plan.Actor, r.keyPrefix); err != nil {
		return err
	}
	c := r.rep.Counts
	if err := e.audit(ctx, tx, r.who, AuditBulk, plan.Actor, "%d events: ok %d, replayed %d, shadow %d, gated %d",
		c.Total(), c.OK, c.Replayed, c.Shadow, c.Gated); err != nil {
		return err
	}
	restore := GateChange{}
	for name := range plan.Gates {
		restore[name] = before.Get(name)
	}
	_, err = e.setGates(ctx, tx, restore, r.who)
	return err
}

// instantiate applies one chunk of events and counts and reports their
// answers; an event's error stops the run, naming the event.
func (r *bulkRun) instantiate(ctx context.Context, tx Tx, chunk []BulkEvent, templates map[string]*Template) error {
	if len(chunk) == 0 {
		return nil
	}
	ps := make([]prepared, len(chunk))
	for i, be := range chunk {
		p, err := prepare(&EmitRequest{TemplateKey: be.Template, Event: be.Event, Actor: r.plan.Actor, Prefix: r.plan.Prefix()})
		if err != nil {
			return Errorf(ErrInvalidEvent, "%s: %v", be.Where, err)
		}
		ps[i] = p
	}
	b, err := r.e.instantiate(ctx, tx, ps, templates)
	if err != nil {
		return err
	}
	// The run reads its answers before it commits.
	if err := tx.Settle(ctx); err != nil {
		return err
	}
	for i, o := range b.resolve() {
		if o.Err != nil {
			return wrapAt(chunk[i], o.Err)
		}
		r.rep.Counts.add(o.Result)
		if g := o.Result.Gate; g != "" && !slices.Contains(r.rep.ClosedGates, g) {
			r.rep.ClosedGates = append(r.rep.ClosedGates, g)
		}
		if r.progress != nil {
			r.progress(chunk[i], o.Result)
		}
	}
	return ctx.Err()
}

// afterCommit completes the report once the run has committed: its
// surfaces and the gates counted again on a fresh connection (the
// durability check), and the actor's instances verified.
func (r *bulkRun) afterCommit(ctx context.Context, pre Surfaces) error {
	rep := r.rep
	var post Surfaces
	if err := r.e.store.ViewFresh(ctx, func(tx Tx) (err error) {
		if post, err = tx.CountSurfaces(ctx, r.plan.Actor, r.keyPrefix); err != nil {
			return err
		}
		rep.Gates.PostCommit, err = tx.Gates(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("bulk committed; reading it back on a fresh connection: %w", err)
	}
	rep.Surfaces.EventLog = delta(pre.EventLog, post.EventLog)
	rep.Surfaces.Lineage = delta(pre.Lineage, post.Lineage)
	rep.Surfaces.Instances = delta(pre.Instances, post.Instances)
	verifyStart := time.Now()
	v, err := r.e.verify(ctx, r.plan.Actor, false)
	if err != nil {
		return fmt.Errorf("bulk committed; verify: %w", err)
	}
	rep.Verifying = time.Since(verifyStart)
	rep.Digest = v.VerifySummary
	return nil
}

// wrapAt prefixes an event's error with where the event came from, keeping
// its code and sentinel.
func wrapAt(be BulkEvent, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Code: e.Code, Message: fmt.Sprintf("%s: event %q: %s", be.Where, be.Event.ID, e.Message), Err: e.Err}
	}
	return fmt.Errorf("%s: event %q: %w", be.Where, be.Event.ID, err)
}
