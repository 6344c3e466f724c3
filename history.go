package iu

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// HistoryEntry is one thing that happened to an instance.
type HistoryEntry struct {
	At          Time   `json:"at"`
	What        string `json:"what"` // created (by an event), composed (by hand), migrated, compensated
	By          string `json:"by"`   // the instance's actor (created, composed), or who did it
	Claimed     string `json:"claimed_actor,omitempty"`
	TemplateKey string `json:"template_key"`
	Digest      Digest `json:"template_digest"`
	Detail      string `json:"detail"`
	Event       *Event `json:"event,omitempty"` // the event that made it
}

// History tells an instance's history, oldest first: the event that made
// it (or its manual composition), every migration to another version, and
// its compensation if any. It is told for a compensated instance too, from
// what iu_compensation kept. A key that never named an instance is
// ErrNotFound.
func (e *Engine) History(ctx context.Context, key string) ([]HistoryEntry, error) {
	if err := CheckInstanceKeyRef(key); err != nil {
		return nil, err
	}
	var out []HistoryEntry
	err := e.store.View(ctx, func(tx Tx) error {
		ms, err := tx.ListMigrations(ctx, key)
		if err != nil {
			return err
		}
		cs, err := tx.ListCompensations(ctx, key)
		if err != nil {
			return err
		}
		in, err := tx.GetInstance(ctx, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		// Each compensation ends one life of the key (a released event may
		// make it again); the instance, if it is there, is the last life.
		// A life that was migrated was made from the template its first
		// migration moved it from.
		madeFrom := func(born, ended Time, key string, digest Digest) (string, Digest) {
			for _, m := range ms {
				if !m.At.Before(born.Time) && (ended.IsZero() || !m.At.After(ended.Time)) {
					return m.FromKey, m.FromDigest
				}
			}
			return key, digest
		}
		for _, c := range cs {
			k, d := madeFrom(c.InstanceAt, c.At, c.TemplateKey, c.TemplateDigest)
			out = append(out, birth(c.InstanceAt, c.Mode, c.Actor, k, d, &Event{ID: c.EventID, Source: c.EventSource, Type: c.EventType}))
		}
		if in != nil {
			k, d := madeFrom(in.CreatedAt, Time{}, in.TemplateKey, in.TemplateDigest)
			out = append(out, birth(in.CreatedAt, in.Mode, in.Actor, k, d, in.Event))
		}
		for _, m := range ms {
			out = append(out, HistoryEntry{At: m.At, What: "migrated", By: m.By, Claimed: m.Claimed, TemplateKey: m.ToKey, Digest: m.ToDigest,
				Detail: fmt.Sprintf("from %s (%s) to %s", m.FromKey, m.FromDigest, m.ToKey)})
		}
		for _, c := range cs {
			out = append(out, HistoryEntry{At: c.At, What: "compensated", By: c.By, Claimed: c.Claimed, TemplateKey: c.TemplateKey,
				Digest: c.TemplateDigest, Detail: describeCompensation(c)})
		}
		if len(out) == 0 {
			return Errorf(ErrNotFound, "no instance %q, and none ever compensated or migrated under that key", key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b HistoryEntry) int { return a.At.Compare(b.At.Time) })
	return out, nil
}

// birth is the entry of an instance's making.
func birth(at Time, mode Mode, actor, tpl string, digest Digest, ev *Event) HistoryEntry {
	h := HistoryEntry{At: at, By: actor, TemplateKey: tpl, Digest: digest}
	switch {
	case mode == ModeManual || ev == nil || ev.ID == "":
		h.What, h.Detail = "composed", "composed by hand from "+tpl
	default:
		h.What, h.Event = "created", ev
		h.Detail = fmt.Sprintf("made from %s by event %q (%s) from %q", tpl, ev.ID, ev.Type, ev.Source)
	}
	return h
}
