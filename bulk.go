package iu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// BulkPlan is a bulk run: many events in ONE transaction, optionally with
// gates set inside it and restored before commit.
type BulkPlan struct {
	Actor          string      `yaml:"actor" json:"actor"`
	InstancePrefix string      `yaml:"instance_prefix" json:"instance_prefix,omitempty"`
	Gates          GateChange  `yaml:"-" json:"gates,omitempty"`
	Events         []BulkEvent `yaml:"-" json:"-"`
	// EventsFile names an NDJSON file of events, relative to the plan file.
	EventsFile string `yaml:"events_file" json:"events_file,omitempty"`
}

// Prefix is the plan's instance key prefix: InstancePrefix, else its
// actor.
func (p *BulkPlan) Prefix() string { return InstancePrefix(p.InstancePrefix, p.Actor) }

// BulkEvent is one event of a bulk run and the template it instantiates.
type BulkEvent struct {
	Template string
	Event    Event
	Where    string // for messages: "events.ndjson:17" or "plan.yaml:9"
}

// bulkEventLine is the shape of one event in a plan or an NDJSON line.
type bulkEventLine struct {
	Template string          `yaml:"template" json:"template"`
	ID       string          `yaml:"id" json:"id"`
	Type     string          `yaml:"type" json:"type"`
	Source   string          `yaml:"source" json:"source"`
	Subject  string          `yaml:"subject" json:"subject"`
	Time     time.Time       `yaml:"time" json:"time"`
	Data     json.RawMessage `yaml:"-" json:"data"`
}

func (l *bulkEventLine) event(where string) (BulkEvent, error) {
	if l.Template == "" {
		return BulkEvent{Where: where}, Errorf(ErrInvalidEvent, "%s: template is required", where)
	}
	src := l.Source
	if src == "" {
		src = DefaultSource
	}
	be := BulkEvent{Template: l.Template, Where: where, Event: Event{
		ID: l.ID, Source: src, Type: l.Type, Subject: l.Subject, Time: l.Time, Data: l.Data,
	}}
	if _, err := ParseTemplateKey(l.Template); err != nil {
		return be, Errorf(ErrInvalidEvent, "%s: %v", where, err)
	}
	if err := be.Event.Validate(); err != nil {
		return be, Errorf(ErrInvalidEvent, "%s: %v", where, err)
	}
	return be, nil
}

// planFile is the YAML shape of a plan.
type planFile struct {
	Actor          string          `yaml:"actor"`
	InstancePrefix string          `yaml:"instance_prefix"`
	Gates          map[string]bool `yaml:"gates"`
	Events         []yaml.Node     `yaml:"events"`
	EventsFile     string          `yaml:"events_file"`
}

// ParseBulkPlan parses a plan file (YAML or JSON). name is used in messages.
func ParseBulkPlan(name string, data []byte) (*BulkPlan, error) {
	fail := func(format string, args ...any) (*BulkPlan, error) {
		return nil, Errorf(ErrInvalidInput, "%s: %s", name, fmt.Sprintf(format, args...))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail("empty plan: want actor and events or events_file")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f planFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return fail("empty plan: want actor and events or events_file")
		}
		return fail("%s", yamlDataMessage(err, data))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return fail("more than one YAML document: put one plan in each file")
	}
	p := &BulkPlan{Actor: f.Actor, InstancePrefix: f.InstancePrefix, EventsFile: f.EventsFile}
	if err := CheckActor(p.Actor); err != nil {
		return fail("%v", err)
	}
	if err := CheckPrefix(p.Prefix()); err != nil {
		return fail("%v", err)
	}
	if f.Gates != nil {
		g, err := ParseGateChange(f.Gates)
		if err != nil {
			return fail("gates: %v", err)
		}
		p.Gates = g
	}
	if (len(f.Events) == 0) == (f.EventsFile == "") {
		return fail("give either events (a list) or events_file (an NDJSON file), not both and not neither")
	}
	for i := range f.Events {
		n := &f.Events[i]
		where := fmt.Sprintf("%s:%d", name, n.Line)
		var l bulkEventLine
		if err := decodeEventNode(n, &l); err != nil {
			return fail("line %d: event %d: %v", n.Line, i+1, err)
		}
		be, err := l.event(where)
		if err != nil {
			return nil, err
		}
		p.Events = append(p.Events, be)
	}
	return p, nil
}

// decodeEventNode decodes one YAML event mapping strictly; data may be any
// YAML value and is kept as JSON.
func decodeEventNode(n *yaml.Node, l *bulkEventLine) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("want a mapping with template, id and type")
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if seen[k] {
			return fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		var dst any
		switch k {
		case "template":
			dst = &l.Template
		case "id":
			dst = &l.ID
		case "type":
			dst = &l.Type
		case "source":
			dst = &l.Source
		case "subject":
			dst = &l.Subject
		case "time":
			dst = &l.Time
		case "data":
			var x any
			keepTimestampsAsText(v)
			if err := v.Decode(&x); err != nil {
				return fmt.Errorf("data: %s", yamlMessage(err))
			}
			b, err := json.Marshal(jsonable(x))
			if err != nil {
				return fmt.Errorf("data: %v", err)
			}
			l.Data = b
			continue
		default:
			return fmt.Errorf("unknown field %q (want template, id, type, source, subject, time, data)", k)
		}
		if err := v.Decode(dst); err != nil {
			return fmt.Errorf("%s: %s", k, yamlMessage(err))
		}
	}
	return nil
}

// keepTimestampsAsText makes unquoted dates in event data decode as the text
// the author wrote ("2025-04-07"), as they do from an NDJSON line, rather
// than as time.Time ("2025-04-07T00:00:00Z").
func keepTimestampsAsText(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" {
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		keepTimestampsAsText(c)
	}
}

// jsonable converts YAML's map[string]any / map[any]any trees into values
// encoding/json accepts.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

// MaxNDJSONLine bounds one line of an events file: an event with the largest
// data allowed, and room for its attributes.
const MaxNDJSONLine = MaxDataBytes + 64<<10

// ReadNDJSON streams events from r, one JSON object per line; blank lines
// are skipped. name is used in messages ("events.ndjson:17"). Memory stays
// flat however long the stream is.
func ReadNDJSON(name string, r io.Reader) iter.Seq2[BulkEvent, error] {
	return func(yield func(BulkEvent, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), MaxNDJSONLine)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			where := fmt.Sprintf("%s:%d", name, line)
			be, err := ParseEventLine(where, b)
			if !yield(be, err) || err != nil {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = Errorf(ErrInvalidEvent, "%s:%d: line is longer than %d bytes", name, line+1, MaxNDJSONLine)
			} else {
				err = fmt.Errorf("read %s: %w", name, err)
			}
			yield(BulkEvent{}, err)
		}
	}
}

// ParseEventLine parses one NDJSON event line strictly.
func ParseEventLine(where string, b []byte) (BulkEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l bulkEventLine
	if err := dec.Decode(&l); err != nil {
		return BulkEvent{Where: where}, Errorf(ErrInvalidEvent, "%s: %v", where, jsonMessage(err))
	}
	if dec.More() {
		return BulkEvent{Where: where}, Errorf(ErrInvalidEvent, "%s: more than one JSON value on the line", where)
	}
	return l.event(where)
}

// jsonMessage words encoding/json's errors for people.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("want a JSON object with template, id and type, got JSON %s", te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of JSON"
	}
	return err.Error()
}

// SliceEvents turns a plan's inline events into a stream.
func SliceEvents(events []BulkEvent) iter.Seq2[BulkEvent, error] {
	return func(yield func(BulkEvent, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// BulkCounts tallies a bulk run's answers. A replayed event counts as
// replayed whatever its first status was.
type BulkCounts struct {
	OK       int64 `json:"ok"`
	Replayed int64 `json:"replayed"`
	Shadow   int64 `json:"shadow"`
	Gated    int64 `json:"gated"`
}

func (c *BulkCounts) add(r Result) {
	switch {
	case r.Replayed:
		c.Replayed++
	case r.Status == StatusOK:
		c.OK++
	case r.Status == StatusShadow:
		c.Shadow++
	case r.Status == StatusGated:
		c.Gated++
	}
}

// Total is the number of events answered.
func (c BulkCounts) Total() int64 { return c.OK + c.Replayed + c.Shadow + c.Gated }

// SurfaceDelta is one surface before and after a bulk run.
type SurfaceDelta struct {
	Pre   int64 `json:"pre"`
	Post  int64 `json:"post"`
	Delta int64 `json:"delta"`
}

func delta(pre, post int64) SurfaceDelta {
	return SurfaceDelta{Pre: pre, Post: post, Delta: post - pre}
}

// BulkReport is the seed's report of a bulk run.
type BulkReport struct {
	Actor     string     `json:"actor"`
	Committed bool       `json:"committed"`
	Counts    BulkCounts `json:"counts"`
	Surfaces  struct {
		EventLog  SurfaceDelta `json:"event_log"`
		Lineage   SurfaceDelta `json:"lineage"`
		Instances SurfaceDelta `json:"instances"`
	} `json:"surfaces"`
	Gates struct {
		InsideTx   Gates `json:"inside_tx"`
		PostCommit Gates `json:"post_commit"`
	} `json:"gates"`
	Digest VerifySummary `json:"digest"`
	// ClosedGates names the gates that held events back (Counts.Gated of
	// them): nothing was written for those events.
	ClosedGates []string `json:"closed_gates,omitempty"`
	// ReadBack is what the transaction saw of its own surfaces just before
	// commit; the JSON report leaves it out, as the seed's does.
	ReadBack Surfaces `json:"-"`
	// Committing is how long the transaction took, from BEGIN to COMMIT;
	// Verifying how long the post-commit verify took. Left out of JSON too.
	Committing time.Duration `json:"-"`
	Verifying  time.Duration `json:"-"`
}

// BulkProgress is told of each event's answer as the run goes. The answers
// are final only once the run has committed.
type BulkProgress func(BulkEvent, Result)

// Bulk runs a plan in ONE transaction: the plan's gates are set inside it,
// every event is instantiated (a repeat within the plan is answered
// replayed), the surfaces are read back, the gates are restored, and the
// transaction commits. Any error rolls everything back and names the event
// at fault. After commit the surfaces and gates are read again on a fresh
// connection, and the actor's instances are verified.
//
// events streams the events (nil means plan.Events); it is consumed once, so
// a bulk run is never retried.
func (e *Engine) Bulk(ctx context.Context, plan *BulkPlan, events iter.Seq2[BulkEvent, error], progress BulkProgress) (*BulkReport, error) {
	if err := CheckActor(plan.Actor); err != nil {
		return nil, err
	}
	prefix := plan.Prefix()
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if events == nil {
		events = SliceEvents(plan.Events)
	}
	keyPrefix := AutoInstancePrefix(prefix)
	w := who(ctx, plan.Actor)
	rep := &BulkReport{Actor: plan.Actor}
	var pre Surfaces
	if err := e.store.View(ctx, func(tx Tx) (err error) {
		pre, err = tx.CountSurfaces(ctx, plan.Actor, keyPrefix)
		return err
	}); err != nil {
		return nil, err
	}
	txStart := time.Now()
	err := e.store.UpdateOnce(ctx, func(tx Tx) error {
		before, err := tx.Gates(ctx)
		if err != nil {
			return err
		}
		if rep.Gates.InsideTx, err = e.setGates(ctx, tx, plan.Gates, w); err != nil {
			return err
		}
		templates := make(map[string]*Template)
		reqs := make([]EmitRequest, 0, e.chunk)
		evs := make([]BulkEvent, 0, e.chunk)
		flush := func() error {
			if len(reqs) == 0 {
				return nil
			}
			ps := make([]prepared, len(reqs))
			for i := range reqs {
				p, err := prepare(&reqs[i])
				if err != nil {
					return Errorf(ErrInvalidEvent, "%s: %v", evs[i].Where, err)
				}
				ps[i] = p
			}
			b, err := e.instantiate(ctx, tx, ps, templates)
			if err != nil {
				return err
			}
			// The run reads its answers before it commits.
			if err := tx.Settle(ctx); err != nil {
				return err
			}
			for i, o := range b.resolve() {
				if o.Err != nil {
					return wrapAt(evs[i], o.Err)
				}
				rep.Counts.add(o.Result)
				if g := o.Result.Gate; g != "" && !slices.Contains(rep.ClosedGates, g) {
					rep.ClosedGates = append(rep.ClosedGates, g)
				}
				if progress != nil {
					progress(evs[i], o.Result)
				}
			}
			reqs, evs = reqs[:0], evs[:0]
			return ctx.Err()
		}
		for be, err := range events {
			if err != nil {
				return err
			}
			reqs = append(reqs, EmitRequest{TemplateKey: be.Template, Event: be.Event, Actor: plan.Actor, Prefix: prefix})
			evs = append(evs, be)
			if len(reqs) == cap(reqs) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if rep.ReadBack, err = tx.CountSurfaces(ctx, plan.Actor, keyPrefix); err != nil {
			return err
		}
		c := rep.Counts
		if err := e.audit(ctx, tx, w, AuditBulk, plan.Actor, "%d events: ok %d, replayed %d, shadow %d, gated %d",
			c.Total(), c.OK, c.Replayed, c.Shadow, c.Gated); err != nil {
			return err
		}
		restore := GateChange{}
		for name := range plan.Gates {
			restore[name] = before.Get(name)
		}
		_, err = e.setGates(ctx, tx, restore, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bulk rolled back, nothing written: %w", err)
	}
	rep.Committed = true
	rep.Committing = time.Since(txStart)
	var post Surfaces
	if err := e.store.ViewFresh(ctx, func(tx Tx) (err error) {
		if post, err = tx.CountSurfaces(ctx, plan.Actor, keyPrefix); err != nil {
			return err
		}
		rep.Gates.PostCommit, err = tx.Gates(ctx)
		return err
	}); err != nil {
		return rep, fmt.Errorf("bulk committed; reading it back on a fresh connection: %w", err)
	}
	rep.Surfaces.EventLog = delta(pre.EventLog, post.EventLog)
	rep.Surfaces.Lineage = delta(pre.Lineage, post.Lineage)
	rep.Surfaces.Instances = delta(pre.Instances, post.Instances)
	verifyStart := time.Now()
	v, err := e.verify(ctx, plan.Actor, false)
	if err != nil {
		return rep, fmt.Errorf("bulk committed; verify: %w", err)
	}
	rep.Verifying = time.Since(verifyStart)
	rep.Digest = v.VerifySummary
	return rep, nil
}

// wrapAt prefixes an event's error with where the event came from, keeping
// its code and sentinel.
func wrapAt(be BulkEvent, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Code: e.Code, Message: fmt.Sprintf("%s: event %q: %s", be.Where, be.Event.ID, e.Message), Err: e.Err}
	}
	return fmt.Errorf("%s: event %q: %w", be.Where, be.Event.ID, err)
}
