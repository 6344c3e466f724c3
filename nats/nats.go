// Package nats is iu's NATS JetStream intake: an adapter like package http.
// It fetches CloudEvents from a durable pull consumer, turns them into the
// same emit requests as HTTP (intake.Decode, then iu.Route) and commits them
// through the same group-commit Batcher. No engine rule lives here: the
// store's unique idempotency key is what makes an event's effect happen
// once; JetStream only holds events until a worker has committed them.
//
// A message is acknowledged only after the transaction that holds it has
// committed. A closed gate writes nothing and the message is handed back
// (NakWithDelay) while the worker stops fetching until the gate opens; an
// event that can never succeed as sent (invalid, unknown template, no
// trigger, idempotency conflict) is copied to the dead-letter stream and
// then terminated.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config, as iu serve's flags offer them.
const (
	DefaultStream           = "IU_EVENTS"
	DefaultSubjects         = "iu.events.>"
	DefaultConsumer         = "iu"
	DefaultDeadLetterStream = "IU_DEAD"
	DefaultBatch            = 256
	DefaultMaxDeliver       = 10
	DefaultAckWait          = 30 * time.Second
	DefaultGatedDelay       = 5 * time.Second
	DefaultGatePoll         = time.Second
	DefaultFetchWait        = time.Second
	DefaultFetchers         = 2
	DefaultMaxAckPending    = 20000

	// DeadLetterPrefix starts the subject of every dead letter:
	// iu.dead.<reason>. The dead-letter stream iu creates takes iu.dead.>.
	DeadLetterPrefix = "iu.dead."
)

// Config names the streams and the consumer and tunes the intake. The zero
// value of each field means its default.
type Config struct {
	URL string // nats://host:port, or several separated by commas

	Stream           string   // the events stream (IU_EVENTS)
	Subjects         []string // its subjects when iu creates it (iu.events.>)
	Consumer         string   // the durable pull consumer all workers share (iu)
	DeadLetterStream string   // the dead-letter stream (IU_DEAD, subjects iu.dead.>)

	// Batch is how many messages one fetch asks for; they are committed in
	// one group-commit transaction (with whatever HTTP sends meanwhile).
	Batch int
	// MaxDeliver and AckWait configure the consumer when iu creates it (-1:
	// deliver without end); an existing consumer keeps its own, and its
	// MaxDeliver is the one obeyed.
	MaxDeliver int
	AckWait    time.Duration

	// GatedDelay is how long a message answered "gated" is held back by
	// JetStream before it may be delivered again (NakWithDelay).
	GatedDelay time.Duration
	// GatePoll is how often a worker that stopped fetching looks at the
	// gates (or at the store, when it was unavailable) again.
	GatePoll time.Duration
	// FetchWait bounds one pull request's wait for messages.
	FetchWait time.Duration
	// Fetchers is how many pull requests a worker keeps going at once, so
	// that one batch is fetched and decoded while the other commits.
	Fetchers int

	// Credentials and TLS, as nats.go takes them.
	Creds   string // a .creds file (JWT and NKey seed)
	TLSCA   string // CA certificates to verify the server with
	TLSCert string // client certificate, with TLSKey
	TLSKey  string
	Name    string // the connection's name, as the server's monitoring shows it
}

func (c *Config) defaults() {
	str := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	str(&c.Stream, DefaultStream)
	str(&c.Consumer, DefaultConsumer)
	str(&c.DeadLetterStream, DefaultDeadLetterStream)
	str(&c.Name, "iu")
	if len(c.Subjects) == 0 {
		c.Subjects = []string{DefaultSubjects}
	}
	num := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	num(&c.Batch, DefaultBatch)
	if c.MaxDeliver == 0 { // -1 stays: unlimited
		c.MaxDeliver = DefaultMaxDeliver
	}
	num(&c.Fetchers, DefaultFetchers)
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.AckWait, DefaultAckWait)
	dur(&c.GatedDelay, DefaultGatedDelay)
	dur(&c.GatePoll, DefaultGatePoll)
	dur(&c.FetchWait, DefaultFetchWait)
}

// Conn is a connection to NATS with its JetStream context.
type Conn struct {
	cfg Config
	nc  *natsgo.Conn
	js  jetstream.JetStream
	log *slog.Logger
}

// Dial connects to the NATS servers of cfg.URL. It keeps reconnecting for
// as long as the Conn is open: a worker outlives a restart of NATS.
func Dial(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" {
		return nil, errors.New("nats: no server URL (--nats or IU_NATS_URL)")
	}
	opts := []natsgo.Option{
		natsgo.Name(cfg.Name),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.RetryOnFailedConnect(false),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted()) }),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats: error", "subject", subj, "err", err)
		}),
	}
	if cfg.Creds != "" {
		opts = append(opts, natsgo.UserCredentials(cfg.Creds))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, natsgo.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, errors.New("nats: a client certificate needs both --nats-tls-cert and --nats-tls-key")
		}
		opts = append(opts, natsgo.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	// RootCAs and ClientCert turn TLS on themselves (TLS 1.2 at least), as
	// does a tls:// URL; natsgo.Secure here would replace their settings.
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", redact(cfg.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	return &Conn{cfg: cfg, nc: nc, js: js, log: log}, nil
}

// redact drops the password of a URL, for messages.
func redact(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// Config returns the connection's configuration, defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// NATS returns the underlying connection.
func (c *Conn) NATS() *natsgo.Conn { return c.nc }

// JetStreamContext returns the underlying JetStream context.
func (c *Conn) JetStreamContext() jetstream.JetStream { return c.js }

// Connected reports whether the connection is up; nil when it is.
func (c *Conn) Connected() error {
	if st := c.nc.Status(); st != natsgo.CONNECTED {
		return fmt.Errorf("nats: %s", strings.ToLower(st.String()))
	}
	return nil
}

// Close flushes what is buffered (acknowledgements among it) and closes
// the connection.
func (c *Conn) Close() error {
	if c.nc.IsClosed() {
		return nil
	}
	var err error
	if c.nc.IsConnected() {
		err = c.nc.FlushTimeout(5 * time.Second)
	} else {
		err = errors.New("nats: not connected")
	}
	c.nc.Close()
	if errors.Is(err, natsgo.ErrConnectionClosed) {
		err = nil
	}
	return err
}

// Setup makes sure the events stream, the dead-letter stream and the
// durable consumer exist: it creates those that are missing (file storage)
// and uses existing ones as they are, logging what it found. It never
// changes an existing stream or consumer. Several workers may run it at
// once.
func (c *Conn) Setup(ctx context.Context) (*Source, error) {
	cfg := c.cfg
	events, err := c.ensureStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "CloudEvents for iu; a worker acknowledges each once committed",
		Subjects:    cfg.Subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
	})
	if err != nil {
		return nil, err
	}
	dead, err := c.ensureStream(ctx, jetstream.StreamConfig{
		Name:        cfg.DeadLetterStream,
		Description: "Events iu refused or gave up on; iu dead list | redrive",
		Subjects:    []string{DeadLetterPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// Long enough that a dead letter published again after a worker
		// died before terminating the original is recognised as the same.
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	cons, err := c.js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cons, err = c.js.CreateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
			Durable:       cfg.Consumer,
			Description:   "iu workers",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxDeliver:    cfg.MaxDeliver,
			MaxAckPending: DefaultMaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = c.js.Consumer(ctx, cfg.Stream, cfg.Consumer) // another worker made it first
		}
		if err != nil {
			return nil, fmt.Errorf("nats: create consumer %s on stream %s: %w", cfg.Consumer, cfg.Stream, err)
		}
		c.log.Info("nats: created durable consumer", "stream", cfg.Stream, "consumer", cfg.Consumer,
			"max_deliver", cons.CachedInfo().Config.MaxDeliver, "ack_wait", cons.CachedInfo().Config.AckWait)
	case err != nil:
		return nil, fmt.Errorf("nats: consumer %s on stream %s: %w", cfg.Consumer, cfg.Stream, err)
	default:
		ci := cons.CachedInfo()
		c.log.Info("nats: using existing consumer", "stream", cfg.Stream, "consumer", cfg.Consumer,
			"max_deliver", ci.Config.MaxDeliver, "ack_wait", ci.Config.AckWait, "pending", ci.NumPending, "ack_pending", ci.NumAckPending)
	}
	if ci := cons.CachedInfo(); ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("nats: consumer %s on stream %s acknowledges %s: iu needs explicit acks (delete it, or name another with --nats-consumer)",
			cfg.Consumer, cfg.Stream, ci.Config.AckPolicy)
	}
	return &Source{conn: c, events: events, dead: dead, cons: cons}, nil
}

func (c *Conn) ensureStream(ctx context.Context, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = c.js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = c.js.Stream(ctx, sc.Name) // another worker made it first
		} else if err == nil {
			c.log.Info("nats: created stream", "stream", sc.Name, "subjects", sc.Subjects, "storage", "file", "retention", sc.Retention.String())
			return s, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats: stream %s: %w", sc.Name, err)
	}
	info := s.CachedInfo()
	c.log.Info("nats: using existing stream", "stream", sc.Name, "subjects", info.Config.Subjects,
		"storage", info.Config.Storage.String(), "retention", info.Config.Retention.String(), "messages", info.State.Msgs)
	return s, nil
}

// Source is the real JetStream behind the JetStream interface: the
// consumer, the two streams, and publishing with acknowledgement.
type Source struct {
	conn   *Conn
	events jetstream.Stream
	dead   jetstream.Stream
	cons   jetstream.Consumer
}

// Batch is a pull request's messages as they arrive; the channel closes
// when the request is done, and Error then says why if it failed.
type Batch interface {
	Messages() <-chan jetstream.Msg
	Error() error
}

// JetStream is the narrow part of JetStream the worker uses. Source is the
// real one; tests wrap it to inject failures.
type JetStream interface {
	// Fetch asks the consumer for up to n messages, waiting up to wait.
	Fetch(n int, wait time.Duration) (Batch, error)
	// Publish publishes m and waits for the stream's acknowledgement.
	Publish(ctx context.Context, m *natsgo.Msg) (*jetstream.PubAck, error)
	// ConsumerInfo returns the consumer's state (pending, ack pending).
	ConsumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error)
	// GetMsg reads a message of the events stream by sequence.
	GetMsg(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error)
	// DeleteMsg deletes a message of the events stream.
	DeleteMsg(ctx context.Context, seq uint64) error
	// Connected reports whether NATS answers; nil when it does.
	Connected() error
}

var _ JetStream = (*Source)(nil)

// Fetch implements JetStream.
func (s *Source) Fetch(n int, wait time.Duration) (Batch, error) {
	return s.cons.Fetch(n, jetstream.FetchMaxWait(wait))
}

// Publish implements JetStream.
func (s *Source) Publish(ctx context.Context, m *natsgo.Msg) (*jetstream.PubAck, error) {
	return s.conn.js.PublishMsg(ctx, m)
}

// ConsumerInfo implements JetStream.
func (s *Source) ConsumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return s.cons.Info(ctx)
}

// GetMsg implements JetStream.
func (s *Source) GetMsg(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	return s.events.GetMsg(ctx, seq)
}

// DeleteMsg implements JetStream.
func (s *Source) DeleteMsg(ctx context.Context, seq uint64) error {
	return s.events.DeleteMsg(ctx, seq)
}

// Connected implements JetStream.
func (s *Source) Connected() error { return s.conn.Connected() }

// Retention returns the events stream's retention policy, as last read.
func (s *Source) Retention() jetstream.RetentionPolicy {
	return s.events.CachedInfo().Config.Retention
}

// MaxDeliver returns the consumer's MaxDeliver (-1 or 0: unlimited).
func (s *Source) MaxDeliver() int { return s.cons.CachedInfo().Config.MaxDeliver }

// Conn returns the connection the source uses.
func (s *Source) Conn() *Conn { return s.conn }
