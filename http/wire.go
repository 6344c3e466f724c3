package http

import (
	"encoding/json"

	"github.com/iu-engine/iu"
)

// The JSON shapes of the API that are not already the domain's own. Answers
// have the shapes of the command line's --json output.

// TemplateDoc is a template with its pieces, as `iu template show --json`
// prints it.
type TemplateDoc struct {
	Key       string      `json:"key"`
	Title     string      `json:"title"`
	EmitMode  iu.EmitMode `json:"emit_mode"`
	Digest    iu.Digest   `json:"digest"`
	Actor     string      `json:"actor"`
	CreatedAt iu.Time     `json:"created_at"`
	Pieces    []PieceDoc  `json:"pieces"`
}

// PieceDoc is one slot of a TemplateDoc.
type PieceDoc struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Body    string    `json:"body"`
	After   []string  `json:"after,omitempty"`
	PieceID iu.Digest `json:"piece_id"`
}

// NewTemplateDoc describes t (whose Pieces must be loaded).
func NewTemplateDoc(t *iu.Template) TemplateDoc {
	out := TemplateDoc{Key: t.Key, Title: t.Title, EmitMode: t.EmitMode, Digest: t.Digest, Actor: t.Actor, CreatedAt: t.CreatedAt, Pieces: []PieceDoc{}}
	for _, s := range t.Slots {
		p := t.Pieces[s.Piece]
		out.Pieces = append(out.Pieces, PieceDoc{ID: s.ID, Kind: p.Kind, Body: p.Body, After: s.After, PieceID: s.Piece})
	}
	return out
}

// Template rebuilds the template a TemplateDoc describes.
func (d *TemplateDoc) Template() *iu.Template {
	t := &iu.Template{Key: d.Key, Title: d.Title, EmitMode: d.EmitMode, Digest: d.Digest, Actor: d.Actor, CreatedAt: d.CreatedAt,
		Pieces: make(map[iu.Digest]iu.Piece, len(d.Pieces))}
	for _, p := range d.Pieces {
		t.Slots = append(t.Slots, iu.Slot{ID: p.ID, Piece: p.PieceID, After: p.After})
		t.Pieces[p.PieceID] = iu.Piece{Kind: p.Kind, Body: p.Body}
	}
	return t
}

// PublishBody is POST /v1/templates: template files (JSON) published in one
// transaction.
type PublishBody struct {
	Actor     string            `json:"actor,omitempty"`
	Templates []json.RawMessage `json:"templates"`
}

// ModeBody is PUT /v1/templates/{key}/mode, and its answer with the key.
type ModeBody struct {
	Key      string      `json:"key,omitempty"`
	EmitMode iu.EmitMode `json:"emit_mode"`
}

// EmitBody is POST /v1/emit: one event for one template, as `iu emit` takes
// it.
type EmitBody struct {
	Template string   `json:"template"`
	Actor    string   `json:"actor"`
	Prefix   string   `json:"prefix,omitempty"`
	Event    iu.Event `json:"event"`
}

// ComposeBody is POST /v1/compose.
type ComposeBody struct {
	Template string `json:"template"`
	Key      string `json:"key"`
	Actor    string `json:"actor"`
}

// RollbackBody is POST /v1/rollback: a dry run unless Apply.
type RollbackBody struct {
	Actor string `json:"actor"`
	Apply bool   `json:"apply"`
}

// TriggerBody is POST /v1/triggers.
type TriggerBody struct {
	Name     string `json:"name,omitempty"`
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Template string `json:"template"`
	Actor    string `json:"actor,omitempty"`
	Prefix   string `json:"instance_prefix,omitempty"`
}

// TokenBody is POST /v1/tokens.
type TokenBody struct {
	Name  string   `json:"name,omitempty"`
	Scope iu.Scope `json:"scope"`
}

// InstanceDoc is GET /v1/instances/{key}: an instance with its lineage.
type InstanceDoc struct {
	Key            string    `json:"instance_key"`
	Title          string    `json:"title"`
	Digest         iu.Digest `json:"digest"`
	TemplateKey    string    `json:"template_key"`
	TemplateDigest iu.Digest `json:"template_digest"`
	Actor          string    `json:"actor"`
	Mode           iu.Mode   `json:"mode"`
	Event          *iu.Event `json:"event,omitempty"`
	CreatedAt      iu.Time   `json:"created_at"`
	Slots          []SlotDoc `json:"slots"`
}

// SlotDoc is one slot of an instance.
type SlotDoc struct {
	ID      string    `json:"id"`
	PieceID iu.Digest `json:"piece_id"`
	After   []string  `json:"after,omitempty"`
}

func newInstanceDoc(r *iu.Instance) InstanceDoc {
	d := InstanceDoc{Key: r.Key, Title: r.Title, Digest: r.Digest, TemplateKey: r.TemplateKey, TemplateDigest: r.TemplateDigest,
		Actor: r.Actor, Mode: r.Mode, Event: r.Event, CreatedAt: r.CreatedAt, Slots: []SlotDoc{}}
	for _, s := range r.Slots {
		d.Slots = append(d.Slots, SlotDoc{ID: s.ID, PieceID: s.Piece, After: s.After})
	}
	return d
}

// bulkHeader is the first line of a POST /v1/bulk body: the plan without
// its events.
type bulkHeader struct {
	Actor          string        `json:"actor"`
	InstancePrefix string        `json:"instance_prefix,omitempty"`
	Gates          iu.GateChange `json:"gates,omitempty"`
}

// bulkLine is one event line of a POST /v1/bulk body: the NDJSON event
// format of events files, and where the event came from (for messages).
type bulkLine struct {
	Where    string `json:"where,omitempty"`
	Template string `json:"template"`
	iu.Event
}

// bulkFrame is one line of a streamed bulk answer: a progress report, or
// the end (the report, or the error).
type bulkFrame struct {
	Template string         `json:"template,omitempty"`
	ID       string         `json:"id,omitempty"`
	Result   *iu.Result     `json:"result,omitempty"`
	Done     int64          `json:"done,omitempty"`
	Report   *iu.BulkReport `json:"report,omitempty"`
	ReadBack *iu.Surfaces   `json:"read_back,omitempty"`
	Error    *errorBody     `json:"error,omitempty"`
}
