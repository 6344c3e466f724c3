package iu

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"gopkg.in/yaml.v3"
)

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

// NewBulkEvent builds and checks one event of a bulk run from its parts,
// as ParseEventLine does from an NDJSON line: the HTTP API receives events
// with the place they came from (where) attached. An empty source is
// DefaultSource.
func NewBulkEvent(where, template string, ev Event) (BulkEvent, error) {
	l := bulkEventLine{Template: template, ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject, Time: ev.Time, Data: ev.Data}
	return l.event(where)
}
