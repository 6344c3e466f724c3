package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers iu adds to a dead letter, beside the original message's own.
const (
	HeaderReason          = "Iu-Reason"
	HeaderError           = "Iu-Error"
	HeaderOriginalSubject = "Iu-Original-Subject"
	HeaderOriginalStream  = "Iu-Original-Stream"
	HeaderOriginalSeq     = "Iu-Original-Seq"
	HeaderEventID         = "Iu-Event-Id"
	HeaderDelivered       = "Iu-Delivered"
	// HeaderRequeued counts how often a gated message was published anew
	// to reset its delivery count.
	HeaderRequeued = "Iu-Requeued"
)

// iuHeaders are the headers a dead letter adds; a redrive drops them.
var iuHeaders = []string{HeaderReason, HeaderError, HeaderOriginalSubject, HeaderOriginalStream, HeaderOriginalSeq, HeaderEventID, HeaderDelivered}

// DeadLetter is a message iu gave up on, as stored in the dead-letter
// stream: the original headers and body, and why.
type DeadLetter struct {
	Seq             uint64        `json:"seq"` // in the dead-letter stream
	Time            time.Time     `json:"time"`
	Reason          string        `json:"reason"`
	Error           string        `json:"error"`
	EventID         string        `json:"event_id,omitempty"`
	OriginalSubject string        `json:"original_subject"`
	OriginalStream  string        `json:"original_stream,omitempty"`
	OriginalSeq     uint64        `json:"original_seq,omitempty"`
	Delivered       int           `json:"delivered,omitempty"`
	Header          natsgo.Header `json:"-"`
	Data            []byte        `json:"-"`
}

// message builds the dead letter to publish; id, if set, lets the stream
// drop a second copy of the same dead letter.
func (d *DeadLetter) message(id string) *natsgo.Msg {
	h := copyHeader(d.Header)
	h.Set(HeaderReason, d.Reason)
	h.Set(HeaderError, d.Error)
	h.Set(HeaderOriginalSubject, d.OriginalSubject)
	if d.OriginalStream != "" {
		h.Set(HeaderOriginalStream, d.OriginalStream)
		h.Set(HeaderOriginalSeq, strconv.FormatUint(d.OriginalSeq, 10))
	}
	if d.EventID != "" {
		h.Set(HeaderEventID, headerValue(d.EventID))
	}
	if d.Delivered > 0 {
		h.Set(HeaderDelivered, strconv.Itoa(d.Delivered))
	}
	if id != "" {
		h.Set(natsgo.MsgIdHdr, id)
	}
	return &natsgo.Msg{Subject: DeadLetterPrefix + d.Reason, Header: h, Data: d.Data}
}

// copyHeader copies h without the Nats-* headers that steer a publish
// (message id, expected stream or sequence): they were the original
// publisher's and would make the copy a duplicate or fail it.
func copyHeader(h natsgo.Header) natsgo.Header {
	out := make(natsgo.Header, len(h)+6)
	for k, v := range h {
		if len(k) >= 5 && strings.EqualFold(k[:5], "nats-") {
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// errText turns an error into a header value: one line, bounded.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return headerValue(err.Error())
}

func headerValue(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	return s
}

// readDeadLetter reads a stored dead letter.
func readDeadLetter(m jetstream.Msg) DeadLetter {
	h := m.Headers()
	d := DeadLetter{
		Reason: h.Get(HeaderReason), Error: h.Get(HeaderError), EventID: h.Get(HeaderEventID),
		OriginalSubject: h.Get(HeaderOriginalSubject), OriginalStream: h.Get(HeaderOriginalStream),
		Header: h, Data: m.Data(),
	}
	d.OriginalSeq, _ = strconv.ParseUint(h.Get(HeaderOriginalSeq), 10, 64)
	d.Delivered, _ = strconv.Atoi(h.Get(HeaderDelivered))
	if d.Reason == "" {
		d.Reason = strings.TrimPrefix(m.Subject(), DeadLetterPrefix)
	}
	if md, err := m.Metadata(); err == nil {
		d.Seq, d.Time = md.Sequence.Stream, md.Timestamp.UTC()
	}
	return d
}

// DeadFilter picks dead letters: by reason (all if empty) and by sequence
// in the dead-letter stream (all if empty).
type DeadFilter struct {
	Reason string
	Seqs   []uint64
}

func (f DeadFilter) subject() string {
	if f.Reason == "" {
		return DeadLetterPrefix + ">"
	}
	return DeadLetterPrefix + f.Reason
}

func (f DeadFilter) match(seq uint64) bool {
	if len(f.Seqs) == 0 {
		return true
	}
	for _, s := range f.Seqs {
		if s == seq {
			return true
		}
	}
	return false
}

// CheckReason refuses a reason that is not one of Reasons.
func CheckReason(r string) error {
	for _, x := range Reasons {
		if r == x {
			return nil
		}
	}
	return fmt.Errorf("unknown dead-letter reason %q: want one of %s", r, strings.Join(Reasons, ", "))
}

// DeadLetters lists the dead letters that f picks, oldest first, calling
// fn for each. It reads the dead-letter stream with an ephemeral ordered
// consumer, from its first message to the last one stored when it began.
func (c *Conn) DeadLetters(ctx context.Context, f DeadFilter, fn func(DeadLetter) error) error {
	stream, err := c.js.Stream(ctx, c.cfg.DeadLetterStream)
	if err != nil {
		return fmt.Errorf("nats: dead-letter stream %s: %w", c.cfg.DeadLetterStream, err)
	}
	last := stream.CachedInfo().State.LastSeq
	if stream.CachedInfo().State.Msgs == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{f.subject()}})
	if err != nil {
		return fmt.Errorf("nats: read %s: %w", c.cfg.DeadLetterStream, err)
	}
	for {
		b, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("nats: read %s: %w", c.cfg.DeadLetterStream, err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > last {
				return nil
			}
			if f.match(md.Sequence.Stream) {
				if err := fn(readDeadLetter(m)); err != nil {
					return err
				}
			}
			if md.NumPending == 0 || md.Sequence.Stream == last {
				return nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, natsgo.ErrTimeout) {
			return fmt.Errorf("nats: read %s: %w", c.cfg.DeadLetterStream, err)
		}
		if got == 0 {
			return nil // nothing more matches the filter
		}
	}
}

// Redrive publishes a dead letter back to its original subject, without
// iu's headers, and deletes it from the dead-letter stream once the events
// stream has stored it. The copy carries a message id derived from the
// dead letter, so a redrive repeated after a failure between the two
// steps publishes it once.
func (c *Conn) Redrive(ctx context.Context, d DeadLetter) error {
	if d.OriginalSubject == "" {
		return fmt.Errorf("dead letter %d has no %s header: cannot tell where it came from", d.Seq, HeaderOriginalSubject)
	}
	h := copyHeader(d.Header)
	for _, k := range iuHeaders {
		h.Del(k)
	}
	h.Set(natsgo.MsgIdHdr, fmt.Sprintf("iu-redrive:%s:%d:%d", c.cfg.DeadLetterStream, d.Seq, d.Time.UnixNano()))
	if _, err := c.js.PublishMsg(ctx, &natsgo.Msg{Subject: d.OriginalSubject, Header: h, Data: d.Data}); err != nil {
		return fmt.Errorf("republish dead letter %d to %s: %w", d.Seq, d.OriginalSubject, err)
	}
	stream, err := c.js.Stream(ctx, c.cfg.DeadLetterStream)
	if err != nil {
		return fmt.Errorf("nats: dead-letter stream %s: %w", c.cfg.DeadLetterStream, err)
	}
	if err := stream.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("republished dead letter %d, but could not delete it from %s: %w", d.Seq, c.cfg.DeadLetterStream, err)
	}
	return nil
}
