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
	What        string `json:"what"` // created (by an event), composed (by hand), migrated, compensated, released
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
		// Lives are told in order, each with its migrations: the
		// compensations in the order they were written, since a life may end
		// and the next begin within one clock tick; the migrations in the
		// order they were made (equal times keep the list's order), those
		// older than a life's birth being of an earlier life that left no
		// record (a rollback before schema version 7), told as they are. A
		// life that was migrated was made from the template its first
		// migration moved it from.
		slices.SortStableFunc(ms, func(a, b InstanceMigration) int { return a.At.Time.Compare(b.At.Time) })
		life := func(born Time, mode Mode, actor, key string, digest Digest, ev *Event, ended *Compensation) {
			for len(ms) > 0 && ms[0].At.Before(born.Time) {
				out, ms = append(out, migrated(ms[0])), ms[1:]
			}
			var mine []InstanceMigration
			for len(ms) > 0 && (ended == nil || !ms[0].At.After(ended.At.Time)) {
				mine, ms = append(mine, ms[0]), ms[1:]
			}
			if len(mine) > 0 {
				key, digest = mine[0].FromKey, mine[0].FromDigest
			}
			out = append(out, birth(born, mode, actor, key, digest, ev))
			for _, m := range mine {
				out = append(out, migrated(m))
			}
			if ended != nil {
				out = append(out, HistoryEntry{At: ended.At, What: "compensated", By: ended.By, Claimed: ended.Claimed, TemplateKey: ended.TemplateKey,
					Digest: ended.TemplateDigest, Detail: describeCompensation(*ended)})
			}
			if r := ended; r != nil && r.Later != nil {
				detail := fmt.Sprintf("the key of event %q from %q was released: the event may instantiate again", r.EventID, r.EventSource)
				if r.Later.Reason != "" {
					detail += fmt.Sprintf(" (%q)", r.Later.Reason)
				}
				out = append(out, HistoryEntry{At: r.Later.At, What: "released", By: r.Later.By, Claimed: r.Later.Claimed, TemplateKey: r.TemplateKey,
					Digest: r.TemplateDigest, Detail: detail})
			}
		}
		for i := range cs {
			c := &cs[i]
			life(c.InstanceAt, c.Mode, c.Actor, c.TemplateKey, c.TemplateDigest, &Event{ID: c.EventID, Source: c.EventSource, Type: c.EventType}, c)
		}
		if in != nil {
			life(in.CreatedAt, in.Mode, in.Actor, in.TemplateKey, in.TemplateDigest, in.Event, nil)
		}
		// Migrations no life claimed (a rollback before schema version 7
		// left those of the instances it deleted).
		for _, m := range ms {
			out = append(out, migrated(m))
		}
		if len(out) == 0 {
			return Errorf(ErrNotFound, "no instance %q, and none ever compensated or migrated under that key", key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func migrated(m InstanceMigration) HistoryEntry {
	return HistoryEntry{At: m.At, What: "migrated", By: m.By, Claimed: m.Claimed, TemplateKey: m.ToKey, Digest: m.ToDigest,
		Detail: fmt.Sprintf("from %s (%s) to %s", m.FromKey, m.FromDigest, m.ToKey)}
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
