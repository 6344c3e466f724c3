package iu

// Reading the views: instances, the event log, the per-template summary.

import (
	"context"
)

// Instances reads the per-instance view in creation order, a page at a
// time.
func (e *Engine) Instances(ctx context.Context, f InstanceFilter) (Page[InstanceRow], error) {
	limit, err := f.limit()
	if err != nil {
		return Page[InstanceRow]{}, err
	}
	var after int64
	cursor := func(r *InstanceRow) string { return seqCursor(r.Seq) }
	if f.Prefix != "" { // key order: see InstanceFilter
		if f.AfterKey, err = parseKeyCursor(f.After); err != nil {
			return Page[InstanceRow]{}, err
		}
		cursor = func(r *InstanceRow) string { return keyCursor(r.InstanceKey) }
	} else if after, err = parseSeqCursor(f.After); err != nil {
		return Page[InstanceRow]{}, err
	}
	var rows []InstanceRow
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListInstances(ctx, f, after, limit+1)
		return err
	})
	return pageOf(rows, limit, cursor), err
}

// EventLog reads the event log newest first, a page at a time.
func (e *Engine) EventLog(ctx context.Context, f EventFilter) (Page[LogEntry], error) {
	limit, err := f.limit()
	if err != nil {
		return Page[LogEntry]{}, err
	}
	if f.Status != "" && f.Status != StatusOK && f.Status != StatusShadow && f.Status != StatusCompensated {
		return Page[LogEntry]{}, Errorf(ErrInvalidInput, "status %q: the event log holds ok, shadow and compensated entries", f.Status)
	}
	before, err := parseBeforeCursor(f.After)
	if err != nil {
		return Page[LogEntry]{}, err
	}
	var rows []LogEntry
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListEvents(ctx, f, before, limit+1)
		return err
	})
	return pageOf(rows, limit, func(l *LogEntry) string { return seqCursor(l.Seq) }), err
}

// Stats reads the per-template summary.
func (e *Engine) Stats(ctx context.Context) ([]TemplateStat, error) {
	var out []TemplateStat
	err := e.store.View(ctx, func(tx Tx) (err error) {
		out, err = tx.ListTemplateStats(ctx)
		return err
	})
	return out, err
}
