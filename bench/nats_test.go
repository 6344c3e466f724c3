package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	iunats "github.com/iu-engine/iu/nats"
)

// runNATS starts an in-process NATS server with JetStream and connects to
// it, with the streams and the consumer iu serve --nats sets up.
func runNATS(t *testing.T) (*iunats.Conn, *iunats.Source) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	conn, err := iunats.Dial(context.Background(), iunats.Config{URL: s.ClientURL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	src, err := conn.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return conn, src
}

// RunNATS publishes every event, each stored by the stream, with the
// invalid ones spread among them; with Wait it returns once the consumer
// has acknowledged everything. A subject no stream takes fails each
// publish with a hint, counted in the report.
func TestRunNATS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, _ := runNATS(t)
	js := conn.JetStreamContext()
	o := options()
	o.Events = 200
	rep, err := RunNATS(ctx, conn, o, NATSOptions{Subject: "iu.events.bench", Invalid: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 200 || rep.Invalid != 4 || rep.Errors != 0 || rep.Distinct == 0 || rep.Distinct >= 196 || rep.PublishPerSec <= 0 ||
		rep.Waited || rep.EventsPerSec != 0 || rep.Target != conn.Config().URL || rep.Stream != conn.Config().Stream {
		t.Fatalf("report %+v", rep)
	}
	st, err := js.Stream(ctx, conn.Config().Stream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 200 {
		t.Fatalf("stream info %+v, %v: want 200 messages", info, err)
	}

	// A consumer that acknowledges everything, as a worker would.
	cons, err := js.Consumer(ctx, conn.Config().Stream, conn.Config().Consumer)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	o.Events = 50
	rep, err = RunNATS(ctx, conn, o, NATSOptions{Subject: "iu.events.bench", Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Waited || rep.EventsPerSec <= 0 || rep.EndToEndSeconds < rep.PublishSeconds {
		t.Errorf("with Wait: report %+v", rep)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := cons.Info(ctx); err != nil || ci.NumPending != 0 || ci.NumAckPending != 0 || ci.AckFloor.Stream != info.State.LastSeq {
		t.Errorf("after Wait: consumer %+v, %v; want every message to sequence %d acknowledged", ci, err, info.State.LastSeq)
	}

	// A subject another stream stores is never read by iu serve: waiting
	// for it would never end.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := RunNATS(ctx, conn, o, NATSOptions{Subject: "other.x", Wait: true}); err == nil || !strings.Contains(err.Error(), "subject other.x is stored by stream OTHER") {
		t.Errorf("a subject of another stream: %v", err)
	}

	o.Events = 3
	rep, err = RunNATS(ctx, conn, o, NATSOptions{Subject: "nobody.listens"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 3 || !strings.Contains(rep.FirstError, "no stream takes subject nobody.listens") {
		t.Errorf("on a subject no stream takes: %d errors, first %q", rep.Errors, rep.FirstError)
	}
	if _, err := RunNATS(ctx, conn, o, NATSOptions{Subject: "iu.events.bench", Invalid: 4}); err == nil {
		t.Error("more invalid events than events: no error")
	}
}
