package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

// Reasons a message is dead-lettered for: the last part of its dead-letter
// subject (iu.dead.<reason>) and its Iu-Reason header.
const (
	ReasonInvalid         = "invalid"
	ReasonUnknownTemplate = "unknown_template"
	ReasonNoTrigger       = "no_trigger"
	ReasonConflict        = "conflict"
	ReasonMaxDeliver      = "max_deliver"
)

// Reasons lists every dead-letter reason.
var Reasons = []string{ReasonInvalid, ReasonUnknownTemplate, ReasonNoTrigger, ReasonConflict, ReasonMaxDeliver}

// Options wire a Worker to iu.
type Options struct {
	Engine  *iu.Engine
	Batcher *iu.Batcher // shared with the HTTP intake: one group commit
	Log     *slog.Logger
	Metrics *Metrics // may be nil

	// MaxDeliver is the consumer's MaxDeliver (0 or less: unlimited).
	MaxDeliver int
	// WorkQueue says the events stream removes acknowledged messages; a
	// message dead-lettered from the max-deliveries advisory is then
	// deleted from it, as its acknowledgement would have.
	WorkQueue bool
	// Gates reports whether events may be fetched: nil when both gates are
	// open, else ErrGated naming the gate, or the store's error. Default:
	// the engine's committed gates. Tests replace it.
	Gates func(ctx context.Context) error
}

// ErrGated is what Options.Gates returns while a gate is closed.
var ErrGated = errors.New("a gate is closed")

// Worker consumes the events stream through the durable consumer: any
// number of workers, in any number of processes, share it.
type Worker struct {
	js   JetStream
	cfg  Config
	opt  Options
	log  *slog.Logger
	m    *Metrics
	trig intake.TriggerCache

	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	adv     *natsgo.Subscription

	mu     sync.Mutex
	paused string        // why fetching is paused ("" while running)
	resume chan struct{} // closed when fetching may resume
	poke   chan struct{} // wakes the watcher
}

// NewWorker returns a worker over js, not yet started. cfg names the
// stream and consumer (for logs, metrics and dead letters) and tunes the
// fetches.
func NewWorker(js JetStream, cfg Config, opt Options) *Worker {
	cfg.defaults()
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Gates == nil {
		e := opt.Engine
		opt.Gates = func(ctx context.Context) error {
			g, err := e.Gates(ctx)
			if err != nil {
				return err
			}
			for _, name := range iu.GateNames {
				if !g.Get(name) {
					return fmt.Errorf("%w: %s", ErrGated, name)
				}
			}
			return nil
		}
	}
	w := &Worker{
		js: js, cfg: cfg, opt: opt, m: opt.Metrics,
		log:  opt.Log.With("stream", cfg.Stream, "consumer", cfg.Consumer),
		stop: make(chan struct{}),
		poke: make(chan struct{}, 1),
	}
	w.trig.TTL = time.Second
	// A worker starts paused: it fetches nothing before it has seen the
	// gates open, so that a message is not delivered only to be handed back.
	w.paused, w.resume = "starting", make(chan struct{})
	if w.m == nil {
		w.m = NewMetrics(cfg, nil)
	}
	return w
}

// Start starts fetching in the background, and, when nc is not nil,
// listens for the consumer's max-deliveries advisories on it.
func (w *Worker) Start(nc *natsgo.Conn) error {
	if nc != nil {
		subj := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + w.cfg.Stream + "." + w.cfg.Consumer
		sub, err := nc.QueueSubscribe(subj, "iu-advisory-"+w.cfg.Consumer, w.onMaxDeliveries)
		if err != nil {
			return fmt.Errorf("nats: subscribe to %s: %w", subj, err)
		}
		w.adv = sub
	}
	w.wg.Add(1)
	go w.watch()
	for range w.cfg.Fetchers {
		w.wg.Add(1)
		go w.fetchLoop()
	}
	w.log.Info("nats: worker started", "batch", w.cfg.Batch, "fetchers", w.cfg.Fetchers, "max_deliver", w.opt.MaxDeliver)
	return nil
}

// Close stops fetching, commits and acknowledges the messages in hand (a
// pull request still open is read to its end, at most FetchWait) and
// returns when that is done or ctx ends. Safe to call twice. Close the
// Conn afterwards: it flushes the acknowledgements.
func (w *Worker) Close(ctx context.Context) error {
	w.stopped.Do(func() {
		close(w.stop)
		if w.adv != nil {
			w.adv.Unsubscribe()
		}
	})
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: worker: %w", ctx.Err())
	}
}

// Ready reports whether the worker can do its work: NATS connected and the
// store answering. A closed gate is not unreadiness: events wait in the
// stream, as they should.
func (w *Worker) Ready(ctx context.Context) error {
	if err := w.js.Connected(); err != nil {
		return err
	}
	w.mu.Lock()
	p := w.paused
	w.mu.Unlock()
	if p == pausedUnavailable {
		return errors.New("nats worker: the store is unavailable; messages wait in the stream")
	}
	return nil
}

// Paused returns why the worker does not fetch ("" while it does).
func (w *Worker) Paused() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paused
}

const pausedUnavailable = "store unavailable"

// pause stops the fetch loops from starting new pull requests until the
// watcher sees the gates open and the store answering.
func (w *Worker) pause(why string) {
	w.mu.Lock()
	if w.paused == "" {
		w.resume = make(chan struct{})
		w.log.Info("nats: stopped fetching", "why", why)
	}
	w.paused = why
	w.m.setPaused(why)
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// waitRunning blocks while fetching is paused; false means stop.
func (w *Worker) waitRunning() bool {
	for {
		w.mu.Lock()
		ch := w.resume
		paused := w.paused != ""
		w.mu.Unlock()
		if !paused {
			select {
			case <-w.stop:
				return false
			default:
				return true
			}
		}
		select {
		case <-ch:
		case <-w.stop:
			return false
		}
	}
}

// watch looks at the gates and the store while fetching is paused, every
// GatePoll and whenever a fetch loop pokes it, and resumes fetching when
// both gates are open and the store answers.
func (w *Worker) watch() {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.GatePoll)
	defer t.Stop()
	check := true // at start
	for {
		if check {
			w.mu.Lock()
			paused := w.paused != ""
			w.mu.Unlock()
			if paused {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := w.opt.Gates(ctx)
				cancel()
				w.mu.Lock()
				switch {
				case err == nil:
					if w.paused != "" {
						w.log.Info("nats: fetching", "was", w.paused)
						w.paused = ""
						close(w.resume)
					}
				case errors.Is(err, ErrGated):
					w.paused = err.Error()
				default:
					w.paused = pausedUnavailable
					w.log.Warn("nats: the store does not answer; waiting before fetching", "err", err)
				}
				w.m.setPaused(w.paused)
				w.mu.Unlock()
			}
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
			check = true
		case <-w.poke:
			check = true
		}
	}
}

// fetchLoop keeps a pull request going while fetching is not paused.
func (w *Worker) fetchLoop() {
	defer w.wg.Done()
	backoff := 100 * time.Millisecond
	for w.waitRunning() {
		b, err := w.js.Fetch(w.cfg.Batch, w.cfg.FetchWait)
		if err != nil {
			w.log.Warn("nats: fetch failed", "err", err, "retry_in", backoff)
			select {
			case <-w.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		w.drain(b)
	}
}

// lingerWait bounds how long a chunk waits for more messages of the same
// pull request before it is committed: under load the request's messages
// arrive back to back, and a lone message should not wait out FetchWait.
const lingerWait = 2 * time.Millisecond

// drain reads one pull request to its end, committing its messages in
// chunks as they arrive.
func (w *Worker) drain(b Batch) {
	ch := b.Messages()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		m, ok := <-ch
		if !ok {
			if err := b.Error(); err != nil && !errors.Is(err, natsgo.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
				w.log.Warn("nats: pull request ended", "err", err)
			}
			return
		}
		chunk := []jetstream.Msg{m}
		timer.Reset(lingerWait)
	gather:
		for len(chunk) < w.cfg.Batch {
			select {
			case m, ok := <-ch:
				if !ok {
					break gather
				}
				chunk = append(chunk, m)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		w.handle(chunk)
	}
}

// decode reads a message's events as the CloudEvents NATS binding has
// them: structured mode, binary mode (ce-* headers), and, for a message
// with neither a content type nor ce-* headers, the event as a JSON body:
// the binding's form from before NATS had headers.
func decode(h natsgo.Header, body []byte) ([]intake.Event, error) {
	if !hasHeader(h, "content-type") && !hasHeader(h, "ce-") && len(body) > 0 {
		ev, err := intake.DecodeStructured(body)
		return []intake.Event{ev}, err
	}
	ins, _, err := intake.Decode(nethttp.Header(h), body)
	return ins, err // on error, ins may still hold what was read (the event id)
}

// hasHeader reports whether h has a header named name, or, for a name
// ending in '-', starting with it; in any case, as NATS keeps names as
// sent.
func hasHeader(h natsgo.Header, name string) bool {
	for k := range h {
		if strings.HasSuffix(name, "-") && len(k) > len(name) && strings.EqualFold(k[:len(name)], name) || strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// message is one fetched message on its way through.
type message struct {
	msg     jetstream.Msg
	meta    *jetstream.MsgMetadata
	eventID string
	units   []int // indexes into the chunk's units
	reason  string
	err     error
	retry   bool   // the store failed: hand it back
	gate    string // a gate answered
}

// handle commits one chunk: it routes every message's events, submits them
// to the batcher together, and then settles each message by the worst of
// its answers: the store failed (hand back, with backoff), a gate is closed
// (hand back, delayed), a dead-letter reason (copy, then terminate), or
// committed (acknowledge).
func (w *Worker) handle(chunk []jetstream.Msg) {
	w.m.fetched(len(chunk))
	ms := make([]message, len(chunk))
	var units [][]iu.EmitRequest
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, msg := range chunk {
		mm := &ms[i]
		mm.msg = msg
		if md, err := msg.Metadata(); err == nil {
			mm.meta = md
			if md.NumDelivered > 1 {
				w.m.redelivered()
			}
		}
		ins, err := decode(msg.Headers(), msg.Data())
		if err != nil {
			if len(ins) > 0 {
				mm.eventID = ins[0].Event.ID
			}
			mm.reason, mm.err = ReasonInvalid, err
			continue
		}
		for _, in := range ins {
			if mm.eventID == "" {
				mm.eventID = in.Event.ID
			}
			if in.Err != nil {
				mm.setDead(ReasonInvalid, in.Err)
				continue
			}
			var triggers []iu.Trigger
			if in.Routing.Template == "" {
				if triggers, err = w.trig.Get(ctx, w.opt.Engine); err != nil {
					mm.retry, mm.err = true, err
					continue
				}
			}
			reqs, err := iu.Route(in.Event, in.Routing, triggers, "nats:"+w.cfg.Consumer)
			if errors.Is(err, iu.ErrUnmatched) {
				// A dead letter waits for a person: before writing one,
				// make sure no trigger was added since the cache was read.
				if triggers, err = w.trig.Refresh(ctx, w.opt.Engine); err != nil {
					mm.retry, mm.err = true, err
					continue
				}
				reqs, err = iu.Route(in.Event, in.Routing, triggers, "nats:"+w.cfg.Consumer)
			}
			if err != nil {
				mm.setDead(reasonOf(err), err)
				continue
			}
			mm.units = append(mm.units, len(units))
			units = append(units, reqs)
		}
	}
	results := w.opt.Batcher.SubmitAll(ctx, units)
	for i := range ms {
		mm := &ms[i]
		for _, u := range mm.units {
			res := results[u]
			if res.Err != nil {
				w.classify(mm, res.Err)
				continue
			}
			for _, o := range res.Outcomes {
				if o.Err != nil {
					w.classify(mm, o.Err)
				} else if o.Result.Status == iu.StatusGated {
					mm.gate = o.Result.Gate
				}
			}
		}
	}
	gated := ""
	for i := range ms {
		if g := w.settle(ctx, &ms[i]); g != "" {
			gated = g
		}
	}
	if gated != "" {
		w.pause("gate " + gated + " is closed")
	}
}

// classify records a failed answer on its message.
func (w *Worker) classify(mm *message, err error) {
	switch iu.ErrorCode(err) {
	case iu.CodeUnavailable, iu.CodeInternal, "":
		if !mm.retry {
			w.log.Warn("nats: commit failed; the message will be delivered again", "event", mm.eventID, "err", err)
		}
		mm.retry, mm.err = true, err
	default:
		mm.setDead(reasonOf(err), err)
	}
}

// setDead keeps the first reason of a message.
func (mm *message) setDead(reason string, err error) {
	if mm.reason == "" {
		mm.reason, mm.err = reason, err
	}
}

// reasonOf names the dead-letter reason of an error.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, iu.ErrUnmatched):
		return ReasonNoTrigger
	case errors.Is(err, iu.ErrUnknownTemplate):
		return ReasonUnknownTemplate
	case errors.Is(err, iu.ErrIdempotencyConflict):
		return ReasonConflict
	}
	return ReasonInvalid
}

// delivered returns how often the message was delivered (1 if unknown).
func (mm *message) delivered() int {
	if mm.meta == nil {
		return 1
	}
	return int(mm.meta.NumDelivered)
}

// settle answers one message to JetStream; it returns the gate that held
// the message back, if one did.
func (w *Worker) settle(ctx context.Context, mm *message) string {
	n, max := mm.delivered(), w.opt.MaxDeliver
	switch {
	case mm.retry:
		if max > 0 && n >= max {
			// The last delivery JetStream makes: give up on it in the open.
			w.deadLetter(ctx, mm, ReasonMaxDeliver, fmt.Errorf("delivered %d times (the consumer's MaxDeliver) and never committed: %v", n, mm.err))
			return ""
		}
		delay := min(time.Duration(1<<min(n-1, 6))*time.Second, time.Minute)
		mm.msg.NakWithDelay(delay)
		w.m.outcome("nak_unavailable", "")
		w.pause(pausedUnavailable)
		return ""
	case mm.gate != "":
		// A delivery handed back for a closed gate must not use up
		// MaxDeliver: JetStream counts it all the same, so a message
		// that comes near its last delivery that way is published anew
		// (a fresh count) before the old copy is acknowledged. The
		// idempotency key makes the two copies one event.
		if max > 0 && n >= max-1 {
			if err := w.requeue(ctx, mm); err != nil {
				w.log.Warn("nats: could not publish a gated message anew; handing it back", "event", mm.eventID, "err", err)
				mm.msg.NakWithDelay(w.cfg.GatedDelay)
			}
			w.m.outcome("requeued_gated", "")
			return mm.gate
		}
		mm.msg.NakWithDelay(w.cfg.GatedDelay)
		w.m.outcome("nak_gated", "")
		return mm.gate
	case mm.reason != "":
		w.deadLetter(ctx, mm, mm.reason, mm.err)
		return ""
	}
	// Committed (created, replayed, shadow): the store holds it now, so
	// losing this acknowledgement costs only a redelivery answered
	// "replayed".
	mm.msg.Ack()
	w.m.outcome("acked", "")
	return ""
}

// requeue publishes a copy of a gated message to its subject and, once the
// stream holds it, acknowledges the original.
func (w *Worker) requeue(ctx context.Context, mm *message) error {
	h := copyHeader(mm.msg.Headers())
	n, _ := strconv.Atoi(h.Get(HeaderRequeued))
	h.Set(HeaderRequeued, strconv.Itoa(n+1))
	if id := w.msgID("iu-requeue", mm.meta); id != "" {
		h.Set(natsgo.MsgIdHdr, id)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.js.Publish(pctx, &natsgo.Msg{Subject: mm.msg.Subject(), Header: h, Data: mm.msg.Data()}); err != nil {
		return err
	}
	return mm.msg.Ack()
}

// msgID names a copy of a stored message, so that publishing the copy
// again (a worker died between publishing it and settling the original) is
// recognised by the stream as a duplicate.
func (w *Worker) msgID(kind string, md *jetstream.MsgMetadata) string {
	if md == nil {
		return ""
	}
	return fmt.Sprintf("%s:%s:%d:%d", kind, md.Stream, md.Sequence.Stream, md.Timestamp.UnixNano())
}

// deadLetter copies the message to the dead-letter stream and terminates
// it once the copy is stored. If the copy cannot be stored the message is
// handed back, to be tried again.
func (w *Worker) deadLetter(ctx context.Context, mm *message, reason string, cause error) {
	dl := DeadLetter{
		Reason: reason, Error: errText(cause), EventID: mm.eventID,
		OriginalSubject: mm.msg.Subject(), Header: mm.msg.Headers(), Data: mm.msg.Data(),
		Delivered: mm.delivered(),
	}
	if md := mm.meta; md != nil {
		dl.OriginalStream, dl.OriginalSeq = md.Stream, md.Sequence.Stream
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.js.Publish(pctx, dl.message(w.msgID("iu-dead", mm.meta))); err != nil {
		w.log.Warn("nats: could not store a dead letter; the message will be delivered again", "reason", reason, "event", mm.eventID, "err", err)
		mm.msg.NakWithDelay(time.Second)
		w.m.outcome("dead_letter_failed", reason)
		return
	}
	// Term, not TermWithReason: servers before 2.10.4 ignore the latter
	// and would deliver the message again.
	mm.msg.Term()
	w.m.outcome("dead_lettered", reason)
	w.log.Info("nats: dead-lettered", "reason", reason, "event", mm.eventID, "subject", dl.OriginalSubject, "err", dl.Error)
}

// onMaxDeliveries dead-letters a message JetStream gave up delivering
// (a worker died holding it on its last delivery), with reason
// max_deliver. Advisories are not stored: one sent while no worker listens
// is lost, and the message stays in the stream, undelivered.
func (w *Worker) onMaxDeliveries(m *natsgo.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
		w.log.Warn("nats: unreadable max-deliveries advisory", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := w.js.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return // settled meanwhile
	}
	if err != nil {
		w.log.Warn("nats: could not read a message that reached MaxDeliver", "seq", adv.StreamSeq, "err", err)
		return
	}
	dl := DeadLetter{
		Reason: ReasonMaxDeliver, OriginalSubject: raw.Subject, OriginalStream: w.cfg.Stream, OriginalSeq: raw.Sequence,
		Error:  fmt.Sprintf("delivered %d times (the consumer's MaxDeliver) and never acknowledged: a worker stopped while holding it each time", adv.Deliveries),
		Header: raw.Header, Data: raw.Data, Delivered: adv.Deliveries,
	}
	if ins, err := decode(raw.Header, raw.Data); err == nil && len(ins) > 0 {
		dl.EventID = ins[0].Event.ID
	}
	id := fmt.Sprintf("iu-dead:%s:%d:%d", w.cfg.Stream, raw.Sequence, raw.Time.UnixNano())
	if _, err := w.js.Publish(ctx, dl.message(id)); err != nil {
		w.log.Warn("nats: could not store a dead letter for a message that reached MaxDeliver", "seq", adv.StreamSeq, "err", err)
		w.m.outcome("dead_letter_failed", ReasonMaxDeliver)
		return
	}
	w.m.outcome("dead_lettered", ReasonMaxDeliver)
	w.log.Info("nats: dead-lettered", "reason", ReasonMaxDeliver, "event", dl.EventID, "seq", raw.Sequence)
	if w.opt.WorkQueue {
		// Its acknowledgement would have removed it; nothing delivers it
		// again, and the dead letter holds it now.
		if err := w.js.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			w.log.Warn("nats: could not delete a dead-lettered message from the stream", "seq", raw.Sequence, "err", err)
		}
	}
}
