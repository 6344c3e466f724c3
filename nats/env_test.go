package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/examples"
	"github.com/iu-engine/iu/internal/pgtest"
	iunats "github.com/iu-engine/iu/nats"
	"github.com/iu-engine/iu/postgres"
	"github.com/iu-engine/iu/sqlite"
)

const onboarding = "tpl:wf:onboarding/v2"

// runNATS starts an in-process NATS server with JetStream on a port of its
// own, its store in a temporary directory; dir, if not empty, is that
// directory (to restart a server on the same store).
func runNATS(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if port == 0 {
		port = -1
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// forStores runs fn on a new SQLite store and, when IU_TEST_POSTGRES is set,
// on a schema of its own on PostgreSQL (failing if the server is
// unreachable).
func forStores(t *testing.T, fn func(t *testing.T, store iu.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "iu.db")
		open := func(t *testing.T) iu.Store {
			s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open(t)
		reopeners.Store(s, open)
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Schema(t, pgtest.DSN(t), "iu_nats_")
		open := func(t *testing.T) iu.Store {
			s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
			if err != nil {
				t.Fatalf("%s is set but: %v", pgtest.EnvDSN, err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open(t)
		reopeners.Store(s, open)
		fn(t, s)
	})
}

// reopeners maps a store made by forStores to a function that opens it
// again.
var reopeners sync.Map

func newSQLite(t testing.TB) iu.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "iu.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// env is one worker on a store and a NATS server, with a publisher.
type env struct {
	t       testing.TB
	srv     *server.Server
	engine  *iu.Engine
	batcher *iu.Batcher
	cfg     iunats.Config
	conn    *iunats.Conn
	src     *iunats.Source
	js      iunats.JetStream // what the worker uses (src, or a wrapper)
	metrics *iunats.Metrics
	worker  *iunats.Worker
	pub     jetstream.JetStream
	pubNC   *natsgo.Conn
}

// newEnv publishes the example templates, opens the gates, connects, sets
// up the streams and the consumer with cfg (short timings), and returns
// the env without a worker.
func newEnv(t testing.TB, store iu.Store, srv *server.Server, cfg iunats.Config) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, srv: srv, engine: iu.NewEngine(store)}
	tpls, err := examples.Templates()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.PublishTemplates(ctx, tpls, "test"); err != nil {
		t.Fatal(err)
	}
	e.setGates(true)
	e.batcher = e.engine.NewBatcher(iu.BatchOptions{})
	t.Cleanup(func() { e.batcher.Close(context.Background()) })
	cfg.URL = srv.ClientURL()
	if cfg.AckWait == 0 {
		// Long enough that a loaded machine never makes a test see a
		// redelivery it did not ask for.
		cfg.AckWait = 30 * time.Second
	}
	if cfg.GatePoll == 0 {
		cfg.GatePoll = 50 * time.Millisecond
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = 200 * time.Millisecond
	}
	if cfg.Stream == "" {
		cfg.Stream = iunats.DefaultStream
	}
	if cfg.Consumer == "" {
		cfg.Consumer = iunats.DefaultConsumer
	}
	e.cfg = cfg
	if e.conn, err = iunats.Dial(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	if e.src, err = e.conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	e.js = e.src
	e.pubNC, err = natsgo.Connect(srv.ClientURL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pubNC.Close)
	if e.pub, err = jetstream.New(e.pubNC); err != nil {
		t.Fatal(err)
	}
	return e
}

// start starts a worker with opt (engine, batcher and metrics filled in).
func (e *env) start(opt iunats.Options) *iunats.Worker {
	e.t.Helper()
	opt.Engine, opt.Batcher = e.engine, e.batcher
	if opt.MaxDeliver == 0 {
		opt.MaxDeliver = e.src.MaxDeliver()
	}
	opt.WorkQueue = true
	e.metrics = iunats.NewMetrics(e.cfg, e.js)
	opt.Metrics = e.metrics
	w := iunats.NewWorker(e.js, e.conn.Config(), opt)
	if err := w.Start(e.conn.NATS()); err != nil {
		e.t.Fatal(err)
	}
	e.worker = w
	e.t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func (e *env) setGates(open bool) {
	e.t.Helper()
	if _, err := e.engine.SetGates(context.Background(), iu.GateChange{iu.GateComposer: open, iu.GateAutoInstantiate: open}, "test"); err != nil {
		e.t.Fatal(err)
	}
}

// ev is one CloudEvent as a structured-mode message.
type ev struct {
	ID, Source, Type, Template, Actor string
	Data                              string
}

func (x ev) structured() []byte {
	m := map[string]any{"specversion": "1.0", "id": x.ID, "source": x.Source, "type": x.Type}
	if x.Template != "" {
		m["iutemplate"] = x.Template
	}
	if x.Actor != "" {
		m["iuactor"] = x.Actor
	}
	if x.Data != "" {
		m["datacontenttype"] = "application/json"
		m["data"] = json.RawMessage(x.Data)
	}
	b, _ := json.Marshal(m)
	return b
}

// publish publishes a structured-mode event and waits for the stream's
// acknowledgement.
func (e *env) publish(x ev) {
	e.t.Helper()
	m := &natsgo.Msg{Subject: "iu.events.test", Header: natsgo.Header{"Content-Type": {"application/cloudevents+json"}}, Data: x.structured()}
	e.publishMsg(m)
}

func (e *env) publishMsg(m *natsgo.Msg) {
	e.t.Helper()
	if _, err := e.pub.PublishMsg(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing after timeout with what
// describe says.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drained reports whether the consumer has nothing pending or unacknowledged.
func (e *env) drained() bool {
	ci, err := e.pubConsumerInfo()
	return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
}

func (e *env) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	ci, err := e.pubConsumerInfo()
	if err != nil {
		e.t.Fatal(err)
	}
	return ci
}

// pubConsumerInfo reads the consumer's state over the publisher's
// connection, which outlives the worker's.
func (e *env) pubConsumerInfo() (*jetstream.ConsumerInfo, error) {
	c, err := e.pub.Consumer(context.Background(), e.cfg.Stream, e.cfg.Consumer)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// instances counts the instances of actor ("" for all), and fails if any
// diverges or is orphaned.
func (e *env) instances(actor string) int64 {
	e.t.Helper()
	r, err := e.engine.Verify(context.Background(), actor)
	if err != nil {
		e.t.Fatal(err)
	}
	if !r.OK() {
		e.t.Fatalf("verify: %+v", r)
	}
	return r.Total
}

// deadLetters lists the dead letters.
func (e *env) deadLetters() []iunats.DeadLetter {
	e.t.Helper()
	var out []iunats.DeadLetter
	if err := e.conn.DeadLetters(context.Background(), iunats.DeadFilter{}, func(d iunats.DeadLetter) error {
		out = append(out, d)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// deadCount counts the dead-letter stream's messages.
func (e *env) deadCount() uint64 {
	e.t.Helper()
	s, err := e.pub.Stream(context.Background(), iunats.DefaultDeadLetterStream)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// count reads a counter of the worker's metrics.
func (e *env) count(outcome, reason string) float64 { return e.metrics.Count(outcome, reason) }

// failingJS wraps the worker's JetStream to make publishing fail on
// demand (the dead-letter stream unreachable).
type failingJS struct {
	iunats.JetStream
	failPublish atomic.Int32 // publishes left to fail
}

func (f *failingJS) Publish(ctx context.Context, m *natsgo.Msg) (*jetstream.PubAck, error) {
	if f.failPublish.Add(-1) >= 0 {
		return nil, fmt.Errorf("injected: publish to %s failed", m.Subject)
	}
	return f.JetStream.Publish(ctx, m)
}
