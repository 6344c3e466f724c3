package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// benchNATSOptions are iu bench's flags for --nats.
type benchNATSOptions struct {
	nf      natsFlags
	subject string
	wait    bool
	invalid int
}

func (o *benchNATSOptions) register(f *pflag.FlagSet) {
	// No default from IU_NATS_URL: an exported variable must not turn an
	// HTTP bench into a NATS one.
	o.nf.registerURL(f, "", "publish the events to this NATS server's JetStream instead of posting them (nats://host:port)", false)
	f.StringVar(&o.subject, "nats-subject", "iu.events.bench", "with --nats: the subject to publish the events on")
	f.BoolVar(&o.wait, "wait", false, "with --nats: wait until the consumer has drained (nothing pending or unacknowledged) and report the end-to-end rate")
	f.IntVar(&o.invalid, "invalid", 0, "with --nats: make this many of the events invalid (no type): they end in the dead-letter stream")
}

// benchNATSReport is what iu bench --nats prints.
type benchNATSReport struct {
	Target          string  `json:"target"`
	Stream          string  `json:"stream"`
	Subject         string  `json:"subject"`
	Mode            string  `json:"mode"`
	Events          int     `json:"events"`
	Distinct        int     `json:"distinct_events"`
	Invalid         int     `json:"invalid_events"`
	DuplicateRatio  float64 `json:"duplicate_ratio"`
	PublishSeconds  float64 `json:"publish_seconds"`
	PublishPerSec   float64 `json:"publish_events_per_second"`
	Waited          bool    `json:"waited"`
	EndToEndSeconds float64 `json:"end_to_end_seconds,omitempty"`
	EventsPerSec    float64 `json:"events_per_second,omitempty"`
	Errors          int     `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
	Actor           string  `json:"actor"`
	InstancePrefix  string  `json:"instance_prefix"`
}

// benchNATS publishes the bench's events to JetStream, each acknowledged
// by the stream, and with --wait waits for the consumer to drain.
func (a *app) benchNATS(ctx context.Context, o benchOptions, no benchNATSOptions) (*benchNATSReport, error) {
	if no.invalid < 0 || no.invalid > o.n {
		return nil, usagef("--invalid %d: want 0 to -n", no.invalid)
	}
	conn, err := a.dialNATS(ctx, no.nf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	js := conn.JetStreamContext()
	cfg := conn.Config()
	var cons jetstream.Consumer
	if no.wait {
		if cons, err = js.Consumer(ctx, cfg.Stream, cfg.Consumer); err != nil {
			return nil, fmt.Errorf("consumer %s on stream %s: %w (start iu serve --nats first: it creates both)", cfg.Consumer, cfg.Stream, err)
		}
	}
	plan := newBenchPlan(o)
	seen := make([]bool, o.n)
	// Every stride-th event is replaced by an invalid one.
	stride := 0
	if no.invalid > 0 {
		stride = o.n / no.invalid
	}
	rep := &benchNATSReport{
		Target: no.nf.cfg.URL, Stream: cfg.Stream, Subject: no.subject, Mode: o.mode, Events: o.n, Invalid: no.invalid,
		DuplicateRatio: o.dup, Actor: o.actor, InstancePrefix: plan.prefix, Waited: no.wait,
	}
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, o.n)
	invalid := 0
	for i := range o.n {
		var m *natsgo.Msg
		if stride > 0 && invalid < no.invalid && i%stride == stride-1 {
			m = &natsgo.Msg{Subject: no.subject, Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}},
				Data: fmt.Appendf(nil, `{"specversion":"1.0","id":"bench-%s-invalid-%d","source":%q}`, plan.run, invalid, o.source)}
			invalid++
		} else {
			if !seen[plan.ids[i]] {
				seen[plan.ids[i]] = true
				rep.Distinct++
			}
			ev := benchRequest(o, plan, plan.ids[i])
			h := natsgo.Header{"Content-Type": {ev.contentType}}
			for _, kv := range ev.headers {
				h[kv[0]] = []string{kv[1]}
			}
			m = &natsgo.Msg{Subject: no.subject, Header: h, Data: ev.body}
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return nil, fmt.Errorf("publish to %s: %w", no.subject, publishHint(err, no.subject))
		}
		futures = append(futures, f)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			rep.Errors++
			if rep.FirstError == "" {
				rep.FirstError = publishHint(err, no.subject).Error()
			}
		}
	}
	pub := time.Since(start)
	rep.PublishSeconds, rep.PublishPerSec = pub.Seconds(), float64(o.n)/pub.Seconds()
	if no.wait {
		for {
			ci, err := cons.Info(ctx)
			if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		e2e := time.Since(start)
		rep.EndToEndSeconds, rep.EventsPerSec = e2e.Seconds(), float64(o.n)/e2e.Seconds()
	}
	return rep, nil
}

// publishHint explains "no responders": no stream takes the subject.
func publishHint(err error, subject string) error {
	if errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("no stream takes subject %s: start iu serve --nats first (it creates the stream on iu.events.>): %w", subject, err)
	}
	return err
}

func printBenchNATS(w io.Writer, r *benchNATSReport) {
	fmt.Fprintf(w, "iu bench: %d events (%d distinct, %d invalid), %s mode, %.0f%% duplicates -> %s, stream %s, subject %s\n",
		r.Events, r.Distinct, r.Invalid, r.Mode, 100*r.DuplicateRatio, r.Target, r.Stream, r.Subject)
	fmt.Fprintf(w, "  published: %.0f events/s (%.2f s, each stored by the stream)\n", r.PublishPerSec, r.PublishSeconds)
	if r.Waited {
		fmt.Fprintf(w, "  end to end: %.0f events/s (%.2f s until the consumer drained)\n", r.EventsPerSec, r.EndToEndSeconds)
	}
	fmt.Fprintf(w, "  errors %d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "  instances: actor %s, prefix %s (iu rollback --actor %s --apply removes them)\n", r.Actor, r.InstancePrefix, r.Actor)
}
