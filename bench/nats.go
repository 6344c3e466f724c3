package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	iunats "github.com/iu-engine/iu/nats"
)

// NATSOptions say what RunNATS publishes beyond Options.
type NATSOptions struct {
	Subject string // the subject to publish on: one the events stream takes
	Wait    bool   // wait until the consumer has drained, and report the end-to-end rate
	Invalid int    // make this many of the events invalid (no type), spread over the run: they end in the dead-letter stream
}

// RunNATS publishes o.Events events to JetStream on conn, each stored by
// the stream before it counts, and reports the publish rate; with n.Wait
// it then waits until the stream's consumer (iu serve --nats's) has
// settled every message published and holds none unacknowledged, and
// reports the end-to-end rate. Options' target, Connections, Timeout, Progress and Profile play
// no part. A publish the stream refuses is counted in the report.
func RunNATS(ctx context.Context, conn *iunats.Conn, o Options, n NATSOptions) (*NATSReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if n.Invalid < 0 || n.Invalid > o.Events {
		return nil, fmt.Errorf("bench: Invalid %d: want 0 to Events", n.Invalid)
	}
	js := conn.JetStreamContext()
	cfg := conn.Config()
	var cons jetstream.Consumer
	if n.Wait {
		var err error
		if cons, err = js.Consumer(ctx, cfg.Stream, cfg.Consumer); err != nil {
			return nil, fmt.Errorf("consumer %s on stream %s: %w (start iu serve --nats first: it creates both)", cfg.Consumer, cfg.Stream, err)
		}
	}
	p := newPlan(o)
	rep := &NATSReport{
		Target: cfg.URL, Stream: cfg.Stream, Subject: n.Subject, Mode: o.Mode, Events: o.Events, Invalid: n.Invalid,
		DuplicateRatio: o.Duplicates, Actor: o.Actor, InstancePrefix: p.prefix, Waited: n.Wait,
	}
	start := time.Now()
	futures, err := publish(ctx, js, o, n, p, rep)
	if err != nil {
		return nil, err
	}
	last, err := settle(ctx, js, futures, n.Subject, cfg.Stream, rep)
	if err != nil {
		return nil, err
	}
	pub := time.Since(start)
	rep.PublishSeconds, rep.PublishPerSec = pub.Seconds(), float64(o.Events)/pub.Seconds()
	if n.Wait {
		if err := drained(ctx, cons, last); err != nil {
			return nil, err
		}
		e2e := time.Since(start)
		rep.EndToEndSeconds, rep.EventsPerSec = e2e.Seconds(), float64(o.Events)/e2e.Seconds()
	}
	return rep, nil
}

// publish publishes the plan's events without waiting for each answer,
// counting the distinct ones in rep; every stride-th event is replaced by
// an invalid one until n.Invalid are.
func publish(ctx context.Context, js jetstream.JetStream, o Options, n NATSOptions, p plan, rep *NATSReport) ([]jetstream.PubAckFuture, error) {
	seen := make([]bool, o.Events)
	stride := 0
	if n.Invalid > 0 {
		stride = o.Events / n.Invalid
	}
	futures := make([]jetstream.PubAckFuture, 0, o.Events)
	invalid := 0
	for i := range o.Events {
		var m *natsgo.Msg
		if stride > 0 && invalid < n.Invalid && i%stride == stride-1 {
			m = &natsgo.Msg{Subject: n.Subject, Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}},
				Data: fmt.Appendf(nil, `{"specversion":"1.0","id":"bench-%s-invalid-%d","source":%q}`, p.run, invalid, o.Source)}
			invalid++
		} else {
			k := p.ids[i]
			if !seen[k] {
				seen[k] = true
				rep.Distinct++
			}
			m = message(n.Subject, p.request(o, k))
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return nil, fmt.Errorf("publish to %s: %w", n.Subject, publishHint(err, n.Subject))
		}
		futures = append(futures, f)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return futures, nil
}

// message is r as a NATS message on subject: the same headers (binary
// mode) and body as over HTTP.
func message(subject string, r request) *natsgo.Msg {
	h := natsgo.Header{"Content-Type": {r.contentType}}
	for _, kv := range r.headers {
		h[kv[0]] = []string{kv[1]}
	}
	return &natsgo.Msg{Subject: subject, Header: h, Data: r.body}
}

// settle waits for the stream's answers to every publish, counts the
// refusals in rep and returns the highest sequence stream stored. An event
// stored by another stream is an error: iu serve would never see it.
func settle(ctx context.Context, js jetstream.JetStream, futures []jetstream.PubAckFuture, subject, stream string, rep *NATSReport) (uint64, error) {
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	var last uint64
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Stream != stream {
				return 0, fmt.Errorf("subject %s is stored by stream %s, not %s (the stream iu serve --nats reads): publish to a subject of %s", subject, ack.Stream, stream, stream)
			}
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			rep.Errors++
			if rep.FirstError == "" {
				rep.FirstError = publishHint(err, subject).Error()
			}
		}
	}
	return last, nil
}

// drained waits until cons has settled every message up to stream sequence
// last (acknowledged or terminated: its ack floor has reached it) and has
// none pending or unacknowledged (a gated message published anew lies past
// last). The pending count alone is not enough: the server updates it after
// answering the publish, so a consumer asked at once can look drained
// before it has seen the last messages.
func drained(ctx context.Context, cons jetstream.Consumer, last uint64) error {
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.AckFloor.Stream >= last && ci.NumPending == 0 && ci.NumAckPending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// publishHint explains "no responders": no stream takes the subject.
func publishHint(err error, subject string) error {
	if errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("no stream takes subject %s: start iu serve --nats first (it creates the stream on iu.events.>): %w", subject, err)
	}
	return err
}
