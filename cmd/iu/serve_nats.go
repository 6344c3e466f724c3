package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	iunats "github.com/iu-engine/iu/nats"
)

// natsFlags are the flags that name a NATS server, its streams and the
// consumer: iu serve, iu dead and iu bench share them.
type natsFlags struct {
	cfg      iunats.Config
	subjects string
	worker   bool // the worker's flags are registered
}

// register adds the connection and naming flags; worker adds the flags
// that only a consuming worker needs.
func (n *natsFlags) register(fs *pflag.FlagSet, worker bool) {
	n.registerURL(fs, os.Getenv("IU_NATS_URL"), "NATS server URL (nats://host:4222; several separated by commas) (env IU_NATS_URL)", worker)
}

// registerURL registers the flags with the given default and help for --nats.
func (n *natsFlags) registerURL(fs *pflag.FlagSet, def, help string, worker bool) {
	c := &n.cfg
	fs.StringVar(&c.URL, "nats", def, help)
	fs.StringVar(&c.Stream, "nats-stream", iunats.DefaultStream, "JetStream stream of the events")
	fs.StringVar(&c.Consumer, "nats-consumer", iunats.DefaultConsumer, "durable pull consumer shared by all workers")
	fs.StringVar(&c.DeadLetterStream, "nats-dead-letter-stream", iunats.DefaultDeadLetterStream, "JetStream stream of the dead letters (subjects "+iunats.DeadLetterPrefix+">)")
	fs.StringVar(&c.Creds, "nats-creds", "", "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", "", "CA certificates to verify the NATS server with")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", "", "client certificate for NATS (with --nats-tls-key)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", "", "client key for NATS (with --nats-tls-cert)")
	if n.worker = worker; !worker {
		return
	}
	fs.StringVar(&n.subjects, "nats-subjects", iunats.DefaultSubjects, "subjects of the events stream when iu creates it (comma-separated)")
	fs.IntVar(&c.Batch, "nats-batch", iunats.DefaultBatch, "messages per fetch, committed in one group-commit transaction")
	fs.IntVar(&c.MaxDeliver, "nats-max-deliver", iunats.DefaultMaxDeliver, "deliveries of a message before it is dead-lettered as max_deliver, -1 for no limit (when iu creates the consumer)")
	fs.DurationVar(&c.AckWait, "nats-ack-wait", iunats.DefaultAckWait, "how long a worker may hold a message before JetStream delivers it again (when iu creates the consumer)")
	fs.DurationVar(&c.GatedDelay, "nats-gated-delay", iunats.DefaultGatedDelay, "how long a message answered gated is held back before it may be delivered again")
}

// config returns the configuration with the subjects split.
func (n *natsFlags) config() (iunats.Config, error) {
	c := n.cfg
	for _, s := range strings.Split(n.subjects, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Subjects = append(c.Subjects, s)
		}
	}
	return c, n.check(c)
}

// check refuses worker settings that cannot be meant: the worker reads
// zero as "the default", which a typed 0 must not silently become. It
// checks whether or not --nats is given, as serve's other flags are.
func (n *natsFlags) check(c iunats.Config) error {
	if !n.worker {
		return nil
	}
	if len(c.Subjects) == 0 {
		return usagef("--nats-subjects %q names no subject", n.subjects)
	}
	switch {
	case c.Batch <= 0:
		return usagef("--nats-batch wants a positive number, got %d", c.Batch)
	case c.MaxDeliver == 0 || c.MaxDeliver < -1:
		return usagef("--nats-max-deliver wants a positive number, or -1 for no limit, got %d", c.MaxDeliver)
	case c.AckWait <= 0:
		return usagef("--nats-ack-wait wants a positive duration, got %s", c.AckWait)
	case c.GatedDelay <= 0:
		return usagef("--nats-gated-delay wants a positive duration, got %s", c.GatedDelay)
	}
	return nil
}

// natsIntake is iu serve's JetStream worker and its connection.
type natsIntake struct {
	conn   *iunats.Conn
	src    *iunats.Source
	worker *iunats.Worker // nil until startNATS
}

// dialNATS connects to NATS and sets up the streams and the consumer,
// before the store is opened: a NATS that cannot be reached fails the start
// with nothing written.
func (m *serveMain) dialNATS(ctx context.Context) error {
	if m.NATS.cfg.URL == "" {
		return nil
	}
	cfg, err := m.NATS.config()
	if err != nil {
		return err
	}
	conn, err := iunats.Dial(ctx, cfg, m.log.With("intake", "nats"))
	if err != nil {
		return err
	}
	src, err := conn.Setup(ctx)
	if err != nil {
		conn.Close()
		return err
	}
	m.nats = &natsIntake{conn: conn, src: src}
	return nil
}

// startNATS starts the worker, submitting through the HTTP server's
// batcher, and adds its metrics and readiness to the server's.
func (m *serveMain) startNATS() error {
	n := m.nats
	if n == nil {
		return nil
	}
	metrics := iunats.NewMetrics(n.conn.Config(), n.src)
	if err := m.Server.Register(metrics.Collectors()...); err != nil {
		return fmt.Errorf("nats metrics: %w", err)
	}
	w := iunats.NewWorker(n.src, n.conn.Config(), iunats.Options{
		Engine: m.Engine, Batcher: m.Server.Batcher(), Log: m.log.With("intake", "nats"), Metrics: metrics,
		MaxDeliver: n.src.MaxDeliver(), WorkQueue: n.src.Retention() == jetstream.WorkQueuePolicy,
	})
	if err := w.Start(n.conn.NATS()); err != nil {
		return err
	}
	n.worker = w
	m.Server.AddReadyCheck("nats", w.Ready)
	return nil
}

// closeNATS stops fetching, settles the messages in hand and closes the
// connection (flushing the acknowledgements). Safe to call twice.
func (m *serveMain) closeNATS() error {
	n := m.nats
	if n == nil {
		return nil
	}
	m.nats = nil
	timeout := m.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	if n.worker != nil {
		m.log.Info("nats: stopping: settling the messages in hand")
		err = n.worker.Close(ctx)
	}
	if cerr := n.conn.Close(); cerr != nil {
		// Committed messages whose acknowledgement did not reach NATS are
		// delivered again and answered "replayed": worth a warning, not a
		// failed stop.
		m.log.Warn("nats: acknowledgements not flushed; those messages will be delivered again and answered replayed", "err", cerr)
	}
	return err
}

// natsLogAttrs describes the intake for the start-up log line.
func (m *serveMain) natsLogAttrs() []any {
	if m.nats == nil {
		return nil
	}
	c := m.nats.conn.Config()
	return []any{slog.String("nats_stream", c.Stream), slog.String("nats_consumer", c.Consumer)}
}
