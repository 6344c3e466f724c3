package bench

import (
	"context"

	"github.com/iu-engine/iu"
)

// direct drives the engine on a store through a Batcher, as iu serve does
// behind its HTTP layer: group commit, and no network at all.
type direct struct {
	o        Options
	p        plan
	b        *iu.Batcher
	triggers []iu.Trigger // with o.Triggered: what routes the events
}

// newDirect starts a Batcher on o.Store with o.Batch, its workers
// defaulting to what the store says suits it. Close stops it.
func newDirect(ctx context.Context, o Options, p plan) (*direct, error) {
	bo := o.Batch
	if bo.Workers <= 0 {
		bo.Workers = o.Store.WriteConcurrency()
	}
	e := iu.NewEngine(o.Store)
	d := &direct{o: o, p: p, b: e.NewBatcher(bo)}
	if o.Triggered {
		var err error
		if d.triggers, err = e.Triggers(ctx); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// send routes event k as the HTTP intake would and submits it: "201" when
// it made an instance, "200" when every request it routed to was a replay.
func (d *direct) send(ctx context.Context, k int) (string, error) {
	ev := iu.Event{ID: d.p.eventID(k), Source: d.o.Source, Type: d.o.Type, Data: d.p.data(k)}
	routing := iu.Routing{Actor: d.o.Actor, Prefix: d.p.prefix}
	if !d.o.Triggered {
		routing.Template = d.o.Template
	}
	reqs, err := iu.Route(ev, routing, d.triggers, d.o.Actor)
	if err != nil {
		return "", err
	}
	outs, err := d.b.Submit(ctx, reqs)
	if err != nil {
		return "", err
	}
	status := "200"
	for _, out := range outs {
		if out.Err != nil {
			return "", out.Err
		}
		if out.Result.Created() {
			status = "201"
		}
	}
	return status, nil
}

// Close commits what the Batcher holds and stops it.
func (d *direct) Close() error { return d.b.Close(context.Background()) }
