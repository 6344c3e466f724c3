// Package bench is iu bench's load generator, which ships with iu as
// pgbench ships with PostgreSQL. It sends N CloudEvents, a share of them
// repeats of earlier ones, to a running iu serve over HTTP (Run with
// Server), to the engine itself with group commit and no HTTP at all (Run
// with Store), or to NATS JetStream for iu serve --nats to consume
// (RunNATS), and reports the rate and the latencies.
//
// Every event is made under Options.Actor with the instance prefix
// <actor>-<run id>, so that iu rollback --actor removes what a run made.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/iu-engine/iu"
)

// The CloudEvents modes an event is sent in.
const (
	Binary     = "binary"     // the attributes in headers, the data in the body
	Structured = "structured" // the whole event as one JSON document
)

// Options say what a run sends, and where.
type Options struct {
	Events      int           // events to send, repeats included
	Connections int           // concurrent senders: connections over HTTP, callers of the Batcher with Store
	Duplicates  float64       // share of the events that repeat an earlier one, in [0, 1)
	Mode        string        // Binary or Structured
	Template    string        // the template every event names (extension iutemplate), unless Triggered
	Triggered   bool          // name no template: the triggers route the events by Type
	Type        string        // the events' type
	Source      string        // the events' source
	Actor       string        // the instances' actor (extension iuactor)
	Timeout     time.Duration // how long one event may take

	// Run's target: Store when set, else Server.
	Server string          // iu serve's address: http://host:port, host:port or unix:PATH
	Token  string          // the bearer token for Server (scope ingest); "" sends none
	Store  iu.Store        // drive the engine on this store instead; the caller opens and closes it
	Batch  iu.BatchOptions // group commit's settings with Store; Workers 0 takes Store.WriteConcurrency()

	// Progress, when set, has a progress bar drawn on it during Run.
	Progress io.Writer
	// Profile, when set, is called just before the load starts and its
	// stop once the load is over, so that a profile leaves out the setup.
	Profile func() (stop func(), err error)
}

// check refuses options that a run cannot honour. The command line words
// its own refusals in terms of its flags before it gets here.
func (o Options) check() error {
	switch {
	case o.Events <= 0:
		return fmt.Errorf("bench: Events %d: want a positive number", o.Events)
	case o.Duplicates < 0 || o.Duplicates >= 1:
		return fmt.Errorf("bench: Duplicates %v: want a fraction in [0, 1)", o.Duplicates)
	case o.Mode != Binary && o.Mode != Structured:
		return fmt.Errorf("bench: Mode %q: want %s or %s", o.Mode, Binary, Structured)
	}
	return nil
}

// Run sends o.Events events to o.Store or o.Server from o.Connections
// goroutines and reports the rate, the latencies and the answers. An event
// that fails is counted in the report, not returned: the error is for a run
// that could not start, or whose ctx ended.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Connections <= 0 {
		return nil, fmt.Errorf("bench: Connections %d: want a positive number", o.Connections)
	}
	p := newPlan(o)
	t, err := newTarget(ctx, o, p)
	if err != nil {
		return nil, err
	}
	defer t.close()
	res, elapsed, err := load(ctx, o, p, t.send)
	if err != nil {
		return nil, err
	}
	return &Report{
		Target: t.name, Mode: t.mode, Events: o.Events, Connections: o.Connections, DuplicateRatio: o.Duplicates,
		Seconds: elapsed.Seconds(), EventsPerSec: float64(o.Events) / elapsed.Seconds(),
		LatencyMS: percentiles(res.lat), Statuses: res.statuses, Errors: res.errors, FirstError: res.first,
		Actor: o.Actor, InstancePrefix: p.prefix,
	}, nil
}

// target is where Run sends the events.
type target struct {
	name  string // the report's Target
	mode  string // the report's Mode
	send  func(ctx context.Context, k int) (status string, err error)
	close func() error
}

// newTarget sets up the engine on o.Store, or else a client of o.Server.
func newTarget(ctx context.Context, o Options, p plan) (target, error) {
	if o.Store != nil {
		d, err := newDirect(ctx, o, p)
		if err != nil {
			return target{}, err
		}
		return target{name: o.Store.Describe(), mode: "direct", send: d.send, close: d.Close}, nil
	}
	if o.Server == "" {
		return target{}, errors.New("bench: no target: give Options.Server or Options.Store")
	}
	c, err := newClient(o.Server, o.Token, o.Connections, o.Timeout)
	if err != nil {
		return target{}, err
	}
	send := func(_ context.Context, k int) (string, error) { return c.post(p.request(o, k)) }
	return target{name: o.Server, mode: o.Mode, send: send, close: func() error { return nil }}, nil
}

// load sends the plan's events from o.Connections goroutines, each taking
// the next event not yet sent, and returns the answers and how long they
// took from the first send to the last answer.
func load(ctx context.Context, o Options, p plan, send func(ctx context.Context, k int) (string, error)) (*results, time.Duration, error) {
	res := newResults(o.Events)
	bar := newBar(o.Progress, o.Events)
	if o.Profile != nil {
		stop, err := o.Profile()
		if err != nil {
			return nil, 0, err
		}
		defer stop()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range o.Connections {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.Events || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, o.Timeout)
				t0 := time.Now()
				status, err := send(rctx, p.ids[i])
				cancel()
				res.record(i, time.Since(t0), status, err)
				if bar != nil {
					bar.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if bar != nil {
		bar.Finish()
	}
	return res, elapsed, ctx.Err()
}

// newBar returns a progress bar of n events drawn on w, or nil when w is.
func newBar(w io.Writer, n int) *progressbar.ProgressBar {
	if w == nil {
		return nil
	}
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("bench"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
}
