package nats_test

import (
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
	iunats "github.com/iu-engine/iu/nats"
)

// Every way a CloudEvent travels in a NATS message is taken: structured
// mode, binary mode with header names in any case, and a bare JSON event
// with no headers at all (the binding's form from before NATS had
// headers). Each committed message is acknowledged and the stream is left
// empty; a repeat is one instance; the actor is the trigger's, else
// iuactor, else nats:<consumer>.
func TestCommitAndAck(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		e := newEnv(t, store, runNATS(t, "", 0), iunats.Config{})
		ctx := context.Background()
		if _, err := e.engine.AddTrigger(ctx, iu.Trigger{Type: "hr.hired", Template: onboarding, Actor: "hr-bot"}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.engine.AddTrigger(ctx, iu.Trigger{Type: "hr.left", Template: onboarding}, "test"); err != nil {
			t.Fatal(err)
		}
		e.start(iunats.Options{})

		e.publish(ev{ID: "s-1", Source: "hr", Type: "x.y", Template: onboarding, Actor: "alice", Data: `{"n":1}`})
		e.publishMsg(&natsgo.Msg{Subject: "iu.events.b", Header: natsgo.Header{
			"ce-specversion": {"1.0"}, "CE-ID": {"b-1"}, "ce-source": {"a b"}, "Ce-Type": {"x.y"},
			"ce-iutemplate": {onboarding}, "content-type": {"application/json"},
		}, Data: []byte(`{"n":2}`)})
		e.publishMsg(&natsgo.Msg{Subject: "iu.events.bare", Data: ev{ID: "bare-1", Source: "hr", Type: "x.y", Template: onboarding}.structured()})
		e.publish(ev{ID: "t-1", Source: "hr", Type: "hr.hired"})                                                   // trigger's actor
		e.publish(ev{ID: "t-2", Source: "hr", Type: "hr.left", Actor: "bob"})                                      // iuactor
		e.publish(ev{ID: "t-3", Source: "hr", Type: "hr.left"})                                                    // nats:iu
		e.publish(ev{ID: "s-1", Source: "hr", Type: "x.y", Template: onboarding, Actor: "alice", Data: `{"n":1}`}) // a repeat

		waitFor(t, 20*time.Second, "the consumer to drain", e.drained)
		if got := e.instances(""); got != 6 {
			t.Errorf("%d instances, want 6 (7 messages, one a repeat)", got)
		}
		for actor, want := range map[string]int64{"alice": 1, "hr-bot": 1, "bob": 1, "nats:iu": 3} {
			if got := e.instances(actor); got != want {
				t.Errorf("actor %s: %d instances, want %d", actor, got, want)
			}
		}
		if got := e.count("acked", ""); got != 7 {
			t.Errorf("acked %v messages, want 7", got)
		}
		if n := e.deadCount(); n != 0 {
			t.Errorf("%d dead letters, want none: %+v", n, e.deadLetters())
		}
		// The work queue removes what was acknowledged.
		s, _ := e.pub.Stream(ctx, iunats.DefaultStream)
		if n := s.CachedInfo().State.Msgs; n != 0 {
			t.Errorf("the events stream still holds %d messages", n)
		}
	})
}

// Messages that can never succeed as sent are copied to the dead-letter
// stream with their reason, error, original subject, headers and body, and
// terminated; their neighbours in the same batch commit. After the cause
// is fixed, redrive publishes them back and they commit.
func TestDeadLettersAndRedrive(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		e := newEnv(t, store, runNATS(t, "", 0), iunats.Config{})
		ctx := context.Background()
		// Publish before the worker starts, so that one fetch takes the
		// good and the bad together.
		e.publish(ev{ID: "good-1", Source: "s", Type: "x", Template: onboarding})
		e.publishMsg(&natsgo.Msg{Subject: "iu.events.broken", Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}, "X-Trace": {"t-42"}}, Data: []byte(`{"specversion":"1.0","id":`)})
		e.publish(ev{ID: "unk-1", Source: "s", Type: "x", Template: "tpl:wf:nope/v1"})
		e.publish(ev{ID: "notrig-1", Source: "s", Type: "com.example.nobody"})
		e.publish(ev{ID: "c-1", Source: "s", Type: "x", Template: onboarding, Data: `{"v":1}`})
		e.publish(ev{ID: "c-1", Source: "s", Type: "x", Template: onboarding, Data: `{"v":2}`}) // conflict
		e.publishMsg(&natsgo.Msg{Subject: "iu.events.nohdr", Header: natsgo.Header{"ce-id": {"x"}}, Data: []byte(`{}`)})
		e.publish(ev{ID: "good-2", Source: "s", Type: "x", Template: onboarding})
		e.start(iunats.Options{})

		waitFor(t, 20*time.Second, "the consumer to drain", e.drained)
		if got := e.instances(""); got != 3 {
			t.Errorf("%d instances, want 3 (good-1, good-2, the first c-1)", got)
		}
		dls := e.deadLetters()
		reasons := map[string]int{}
		for _, d := range dls {
			reasons[d.Reason]++
			if d.Error == "" || d.OriginalSubject == "" || d.Time.IsZero() || d.Seq == 0 {
				t.Errorf("dead letter lacks error, subject, time or seq: %+v", d)
			}
			if d.Header.Get(iunats.HeaderReason) != d.Reason || d.Header.Get(iunats.HeaderError) == "" {
				t.Errorf("dead letter %d: headers %v", d.Seq, d.Header)
			}
		}
		want := map[string]int{"invalid": 2, "unknown_template": 1, "no_trigger": 1, "conflict": 1}
		if fmt.Sprint(reasons) != fmt.Sprint(want) {
			t.Fatalf("dead letters by reason %v, want %v", reasons, want)
		}
		for _, d := range dls {
			switch d.Reason {
			case "invalid":
				if d.OriginalSubject == "iu.events.broken" {
					if d.Header.Get("X-Trace") != "t-42" || string(d.Data) != `{"specversion":"1.0","id":` {
						t.Errorf("the dead letter lost the original headers or body: %v %q", d.Header, d.Data)
					}
				}
			case "unknown_template":
				if d.EventID != "unk-1" || !strings.Contains(d.Error, "tpl:wf:nope/v1") {
					t.Errorf("unknown_template dead letter: %+v", d)
				}
			case "no_trigger":
				if d.EventID != "notrig-1" {
					t.Errorf("no_trigger dead letter: %+v", d)
				}
			}
		}
		if got := e.count("dead_lettered", "invalid"); got != 2 {
			t.Errorf("metric dead_lettered{invalid} = %v, want 2", got)
		}

		// Fix the causes: a trigger for the unmatched type. Redrive that
		// reason only: the others stay.
		if _, err := e.engine.AddTrigger(ctx, iu.Trigger{Type: "com.example.nobody", Template: onboarding}, "test"); err != nil {
			t.Fatal(err)
		}
		n := 0
		err := e.conn.DeadLetters(ctx, iunats.DeadFilter{Reason: "no_trigger"}, func(d iunats.DeadLetter) error {
			n++
			return e.conn.Redrive(ctx, d)
		})
		if err != nil || n != 1 {
			t.Fatalf("redrive no_trigger: %d redriven, %v", n, err)
		}
		waitFor(t, 20*time.Second, "the redriven event to commit", func() bool { return e.drained() && e.instances("") == 4 })
		if got := e.deadCount(); got != 4 {
			t.Errorf("%d dead letters after redriving one of 5, want 4", got)
		}
		for _, d := range e.deadLetters() {
			if d.Reason == "no_trigger" {
				t.Errorf("the redriven dead letter is still there: %+v", d)
			}
		}
	})
}

// A closed gate never uses up MaxDeliver. First the honest way: the gates
// close behind a running worker's back, events arrive, the worker gets
// "gated", hands them back and stops fetching; it waits far longer than
// MaxDeliver deliveries would take. Then the hard way: a worker that
// believes the gates open fetches every message again and again, each
// delivery answered "gated", well past MaxDeliver. Either way, once the
// gates open every event is instantiated once and none is dead-lettered.
func TestGateNeverUsesUpMaxDeliver(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		const maxDeliver, n = 3, 20
		cfg := iunats.Config{MaxDeliver: maxDeliver, AckWait: 300 * time.Millisecond, GatedDelay: 50 * time.Millisecond}
		e := newEnv(t, store, runNATS(t, "", 0), cfg)
		w := e.start(iunats.Options{})
		waitFor(t, 10*time.Second, "the worker to fetch", func() bool { return w.Paused() == "" })

		e.setGates(false)
		for i := range n {
			e.publish(ev{ID: fmt.Sprintf("g-%d", i), Source: "s", Type: "x", Template: onboarding})
		}
		waitFor(t, 10*time.Second, "a gated answer", func() bool { return e.count("nak_gated", "") > 0 })
		waitFor(t, 10*time.Second, "the worker to stop fetching", func() bool { return strings.Contains(w.Paused(), "gate") })
		// Long enough for every message to be delivered MaxDeliver times
		// over if anything fetched it.
		time.Sleep(2 * maxDeliver * (cfg.AckWait + cfg.GatedDelay))
		if got := e.instances(""); got != 0 {
			t.Fatalf("%d instances behind a closed gate", got)
		}
		e.setGates(true)
		waitFor(t, 20*time.Second, "every event to commit", func() bool { return e.drained() && e.instances("") == n })
		if d := e.deadCount(); d != 0 {
			t.Fatalf("%d dead letters after waiting behind a closed gate: %+v", d, e.deadLetters())
		}
		w.Close(context.Background())

		// The hard way: the worker is told the gates are open while the
		// store says closed, so every delivery is answered "gated".
		e.setGates(false)
		for i := range n {
			e.publish(ev{ID: fmt.Sprintf("h-%d", i), Source: "s", Type: "x", Template: onboarding})
		}
		w2 := e.start(iunats.Options{Gates: func(context.Context) error { return nil }})
		// Each message is published anew at least twice: more than 2 *
		// MaxDeliver deliveries answered "gated".
		waitFor(t, 60*time.Second, "gated messages to be published anew twice over", func() bool {
			return e.count("requeued_gated", "") >= 2*n
		})
		if d := e.deadCount(); d != 0 {
			t.Fatalf("%d dead letters while gated: %+v", d, e.deadLetters())
		}
		e.setGates(true)
		waitFor(t, 20*time.Second, "every event to commit", func() bool { return e.drained() && e.instances("") == 2*n })
		if d := e.deadCount(); d != 0 {
			t.Fatalf("%d dead letters: %+v", d, e.deadLetters())
		}
		w2.Close(context.Background())
	})
}

// flakyStore makes the store unavailable on demand: writes only
// (readOnly), or everything (down).
type flakyStore struct {
	iu.Store
	down, readOnly atomic.Bool
}

func (f *flakyStore) View(ctx context.Context, fn func(iu.Tx) error) error {
	if f.down.Load() {
		return iu.Errorf(iu.ErrUnavailable, "injected: the database does not answer")
	}
	return f.Store.View(ctx, fn)
}

func (f *flakyStore) ViewFresh(ctx context.Context, fn func(iu.Tx) error) error {
	if f.down.Load() {
		return iu.Errorf(iu.ErrUnavailable, "injected: the database does not answer")
	}
	return f.Store.ViewFresh(ctx, fn)
}

func (f *flakyStore) Update(ctx context.Context, fn func(iu.Tx) error) error {
	if f.down.Load() || f.readOnly.Load() {
		return iu.Errorf(iu.ErrUnavailable, "injected: the database does not answer")
	}
	return f.Store.Update(ctx, fn)
}

func (f *flakyStore) UpdateOnce(ctx context.Context, fn func(iu.Tx) error) error {
	if f.down.Load() || f.readOnly.Load() {
		return iu.Errorf(iu.ErrUnavailable, "injected: the database does not answer")
	}
	return f.Store.UpdateOnce(ctx, fn)
}

// The store unavailable: nothing is acknowledged, the worker reports not
// ready and stops fetching (so the outage does not use up deliveries), and
// once the store answers again every event commits. A store that answers
// reads but refuses writes on a message's last delivery gives it up as
// max_deliver.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		fs := &flakyStore{Store: store}
		e := newEnv(t, fs, runNATS(t, "", 0), iunats.Config{MaxDeliver: 2, AckWait: 300 * time.Millisecond})
		w := e.start(iunats.Options{})
		waitFor(t, 10*time.Second, "the worker to fetch", func() bool { return w.Paused() == "" })
		if err := w.Ready(context.Background()); err != nil {
			t.Fatalf("ready: %v", err)
		}
		fs.down.Store(true)
		for i := range 5 {
			e.publish(ev{ID: fmt.Sprintf("u-%d", i), Source: "s", Type: "x", Template: onboarding})
		}
		waitFor(t, 10*time.Second, "the worker to report the store unavailable", func() bool { return w.Ready(context.Background()) != nil })
		if got := e.count("acked", ""); got != 0 {
			t.Fatalf("%v messages acknowledged while the store was down", got)
		}
		ci := e.consumerInfo()
		if ci.NumPending+uint64(ci.NumAckPending) != 5 {
			t.Fatalf("pending %d + ack pending %d, want the 5 events kept", ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(3 * (300*time.Millisecond + time.Second)) // more than MaxDeliver deliveries' worth
		fs.down.Store(false)
		waitFor(t, 30*time.Second, "every event to commit", func() bool { return e.drained() && e.instances("") == 5 })
		if err := w.Ready(context.Background()); err != nil {
			t.Errorf("not ready after the store came back: %v", err)
		}
		if d := e.deadCount(); d != 0 {
			t.Fatalf("%d dead letters after an outage: %+v", d, e.deadLetters())
		}

		// Reads answer, writes fail: the worker keeps fetching, and the
		// message is given up on its last delivery.
		fs.readOnly.Store(true)
		e.publish(ev{ID: "ro-1", Source: "s", Type: "x", Template: onboarding})
		waitFor(t, 30*time.Second, "a max_deliver dead letter", func() bool { return e.deadCount() == 1 })
		fs.readOnly.Store(false)
		d := e.deadLetters()[0]
		if d.Reason != "max_deliver" || d.EventID != "ro-1" || d.Delivered != 2 || !strings.Contains(d.Error, "does not answer") {
			t.Errorf("dead letter %+v, want max_deliver for ro-1 after 2 deliveries naming the store's error", d)
		}
		waitFor(t, 10*time.Second, "the consumer to drain", e.drained)
	})
}

// A message whose every delivery went to a worker that died holding it
// reaches MaxDeliver without any worker seeing a failure: JetStream's
// max-deliveries advisory makes a listening worker dead-letter it.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	t.Parallel()
	store := newSQLite(t)
	e := newEnv(t, store, runNATS(t, "", 0), iunats.Config{MaxDeliver: 2, AckWait: 200 * time.Millisecond})
	// A worker that never fetches (the gates look closed to it) but
	// listens for advisories.
	e.start(iunats.Options{Gates: func(context.Context) error { return iunats.ErrGated }})
	e.publish(ev{ID: "lost-1", Source: "s", Type: "x", Template: onboarding})
	// The "workers that died": fetch on the durable consumer and never
	// answer, twice.
	cons, err := e.pub.Consumer(context.Background(), iunats.DefaultStream, iunats.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for range b.Messages() {
			got++
		}
		if got != 1 {
			t.Fatalf("delivery %d: got %d messages", i+1, got)
		}
	}
	// JetStream notices the exhausted message when it next looks for one
	// to deliver: a third pull, which gets nothing.
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		t.Fatalf("a message delivered past MaxDeliver: %s", m.Data())
	}
	waitFor(t, 10*time.Second, "a max_deliver dead letter", func() bool { return e.deadCount() == 1 })
	d := e.deadLetters()[0]
	if d.Reason != "max_deliver" || d.EventID != "lost-1" || d.OriginalSubject != "iu.events.test" {
		t.Errorf("dead letter %+v", d)
	}
	// The work queue no longer holds it.
	waitFor(t, 10*time.Second, "the message to leave the stream", func() bool {
		s, err := e.pub.Stream(context.Background(), iunats.DefaultStream)
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
}

// If the dead letter cannot be stored, the message is not terminated: it
// comes back and is dead-lettered once, when publishing works again.
func TestDeadLetterPublishFails(t *testing.T) {
	t.Parallel()
	store := newSQLite(t)
	e := newEnv(t, store, runNATS(t, "", 0), iunats.Config{})
	f := &failingJS{JetStream: e.src}
	f.failPublish.Store(2)
	e.js = f
	e.start(iunats.Options{})
	e.publish(ev{ID: "u-1", Source: "s", Type: "x", Template: "tpl:wf:nope/v1"})
	e.publish(ev{ID: "ok-1", Source: "s", Type: "x", Template: onboarding})
	waitFor(t, 20*time.Second, "the dead letter to be stored", func() bool { return e.deadCount() == 1 && e.drained() })
	if got := e.count("dead_letter_failed", "unknown_template"); got != 2 {
		t.Errorf("dead_letter_failed = %v, want the 2 injected failures", got)
	}
	if got := e.count("dead_lettered", "unknown_template"); got != 1 {
		t.Errorf("dead_lettered = %v, want 1", got)
	}
	if got := e.instances(""); got != 1 {
		t.Errorf("%d instances, want 1", got)
	}
}

// Close (SIGTERM) stops fetching and settles what is in hand: afterwards
// nothing is left unacknowledged, and every message that left the stream
// was committed.
func TestCloseSettlesWhatIsInHand(t *testing.T) {
	t.Parallel()
	store := newSQLite(t)
	e := newEnv(t, store, runNATS(t, "", 0), iunats.Config{AckWait: time.Minute})
	const n = 3000
	for i := range n {
		m := &natsgo.Msg{Subject: "iu.events.t", Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}},
			Data: ev{ID: fmt.Sprintf("c-%d", i), Source: "s", Type: "x", Template: onboarding}.structured()}
		if _, err := e.pub.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	<-e.pub.PublishAsyncComplete()
	w := e.start(iunats.Options{})
	waitFor(t, 20*time.Second, "some events to commit", func() bool { return e.count("acked", "") >= 300 })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Close(); err != nil { // flushes the acknowledgements
		t.Fatal(err)
	}
	// The server applies acknowledgements in the background: wait for
	// them, well within the minute of AckWait after which a lost one
	// would show as a redelivery instead.
	waitFor(t, 10*time.Second, "every message in hand to be acknowledged", func() bool {
		ci, err := e.pubConsumerInfo()
		return err == nil && ci.NumAckPending == 0
	})
	s, _ := e.pub.Stream(context.Background(), iunats.DefaultStream)
	left := int64(s.CachedInfo().State.Msgs)
	if got := e.instances(""); got != n-left || got == n {
		t.Errorf("%d instances, %d messages left in the stream: want them to add up to %d, with some left", got, left, n)
	}
}

// The same event over HTTP and over NATS is one instance (one idempotency
// key, from the very bytes of source); /readyz reports the NATS connection
// through the server's readiness hook, and turns ready again when NATS
// comes back.
func TestSameEventOverHTTPAndNATS(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		dir := t.TempDir()
		srv := runNATS(t, dir, 0)
		e := newEnv(t, store, srv, iunats.Config{})
		hs := iuhttp.NewServer(e.engine, iuhttp.Config{}, nil)
		e.batcher = hs.Batcher()
		w := e.start(iunats.Options{})
		hs.AddReadyCheck("nats", w.Ready)
		ts := httptest.NewServer(hs.Handler())
		defer ts.Close()
		tok, err := e.engine.CreateToken(context.Background(), "producer", iu.ScopeIngest, "test")
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{"HR:Workday a b", "hr:Workday%20a%20b"} {
			req, _ := nethttp.NewRequest("POST", ts.URL+"/v1/events", strings.NewReader(`{"n":1}`))
			req.Header = nethttp.Header{"Authorization": {"Bearer " + tok.Secret}, "Content-Type": {"application/json"},
				"Ce-Specversion": {"1.0"}, "Ce-Id": {"same-1"}, "Ce-Source": {src}, "Ce-Type": {"x"}, "Ce-Iutemplate": {onboarding}}
			resp, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				t.Fatalf("HTTP: %d %s", resp.StatusCode, body)
			}
			e.publish(ev{ID: "same-1", Source: src, Type: "x", Template: onboarding, Data: `{"n":1}`})
		}
		waitFor(t, 20*time.Second, "the consumer to drain", e.drained)
		if got := e.instances(""); got != 2 {
			t.Errorf("%d instances, want 2: one per source, each event once over HTTP and NATS", got)
		}
		if got := e.count("acked", ""); got != 2 {
			t.Errorf("acked %v, want 2 (answered replayed)", got)
		}

		ready := func() int {
			resp, err := nethttp.Get(ts.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if c := ready(); c != 200 {
			t.Fatalf("/readyz %d with NATS up", c)
		}
		addr := srv.ClientURL()
		srv.Shutdown()
		srv.WaitForShutdown()
		waitFor(t, 10*time.Second, "/readyz to turn 503 without NATS", func() bool { return ready() == 503 })
		runNATS(t, dir, portOf(t, addr))
		waitFor(t, 20*time.Second, "/readyz to turn 200 with NATS back", func() bool { return ready() == 200 })
		// And the worker consumes again.
		e.publish(ev{ID: "after-restart", Source: "s", Type: "x", Template: onboarding})
		waitFor(t, 20*time.Second, "the event after the restart to commit", func() bool { return e.instances("") == 3 })
		hs.Close(context.Background())
	})
}

func portOf(t testing.TB, url string) int {
	t.Helper()
	i := strings.LastIndex(url, ":")
	var p int
	if _, err := fmt.Sscan(url[i+1:], &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Two workers, each with its own connection, store handle and batcher (as
// two processes have), share the durable consumer: every distinct event is
// instantiated once, and both workers do some of the work.
func TestWorkersShareTheConsumer(t *testing.T) {
	t.Parallel()
	forStores(t, func(t *testing.T, store iu.Store) {
		srv := runNATS(t, "", 0)
		a := newEnv(t, store, srv, iunats.Config{})
		b := newEnv(t, reopen(t, store), srv, iunats.Config{})
		const n, distinct = 2000, 1500
		for i := range n {
			k := i % distinct // the last 500 repeat earlier events
			m := &natsgo.Msg{Subject: "iu.events.t", Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}},
				Data: ev{ID: fmt.Sprintf("w-%d", k), Source: "s", Type: "x", Template: onboarding, Data: fmt.Sprintf(`{"k":%d}`, k)}.structured()}
			if _, err := a.pub.PublishMsgAsync(m); err != nil {
				t.Fatal(err)
			}
		}
		<-a.pub.PublishAsyncComplete()
		a.start(iunats.Options{})
		b.start(iunats.Options{})
		waitFor(t, 60*time.Second, "the consumer to drain", a.drained)
		if got := a.instances(""); got != distinct {
			t.Errorf("%d instances, want %d", got, distinct)
		}
		ca, cb := a.count("acked", ""), b.count("acked", "")
		if ca+cb != n || ca == 0 || cb == 0 {
			t.Errorf("acked %v and %v, want %d between them, some by each", ca, cb, n)
		}
	})
}

// reopen opens a second handle on the same store, as another process
// would.
func reopen(t *testing.T, s iu.Store) iu.Store {
	t.Helper()
	open, ok := reopeners.Load(s)
	if !ok {
		t.Fatalf("reopen: store %s was not made by forStores", s.Describe())
	}
	return open.(func(*testing.T) iu.Store)(t)
}

// Streams and a consumer that exist are used as they are: Setup changes
// none of their configuration, and the worker obeys the existing
// consumer's MaxDeliver. Missing ones are made with file storage.
func TestSetupUsesExistingStreams(t *testing.T) {
	t.Parallel()
	srv := runNATS(t, "", 0)
	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	mine := jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"hr.>"}, Storage: jetstream.MemoryStorage,
		Retention: jetstream.LimitsPolicy, MaxAge: time.Hour}
	if _, err := js.CreateStream(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 4}); err != nil {
		t.Fatal(err)
	}
	before, _ := js.Stream(ctx, "EVENTS")

	conn, err := iunats.Dial(ctx, iunats.Config{URL: srv.ClientURL(), Stream: "EVENTS", Consumer: "workers", Subjects: []string{"ignored.>"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	src, err := conn.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := js.Stream(ctx, "EVENTS")
	b, a := before.CachedInfo().Config, after.CachedInfo().Config
	if fmt.Sprint(b.Subjects, b.Storage, b.Retention, b.MaxAge) != fmt.Sprint(a.Subjects, a.Storage, a.Retention, a.MaxAge) {
		t.Errorf("Setup changed the existing stream: %+v -> %+v", b, a)
	}
	if got := src.MaxDeliver(); got != 4 {
		t.Errorf("MaxDeliver %d, want the existing consumer's 4", got)
	}
	dead, err := js.Stream(ctx, iunats.DefaultDeadLetterStream)
	if err != nil {
		t.Fatalf("the missing dead-letter stream was not made: %v", err)
	}
	if c := dead.CachedInfo().Config; c.Storage != jetstream.FileStorage || fmt.Sprint(c.Subjects) != "[iu.dead.>]" {
		t.Errorf("dead-letter stream %+v, want file storage on iu.dead.>", c)
	}

	// A consumer that does not acknowledge explicitly is refused, by name.
	if _, err := js.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "noack", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	conn2, err := iunats.Dial(ctx, iunats.Config{URL: srv.ClientURL(), Stream: "EVENTS", Consumer: "noack"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := conn2.Setup(ctx); err == nil || !strings.Contains(err.Error(), "explicit acks") {
		t.Errorf("Setup on a consumer without explicit acks: %v", err)
	}
}
