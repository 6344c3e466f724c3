package iu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// StatusCompensated is the status of a log entry whose instance was
// compensated: the event's key stays claimed, and a redelivery answers
// compensated (replayed) and makes nothing.
const StatusCompensated Status = "compensated"

// Compensation is the record of one compensated instance, in
// iu_compensation: what it was, what made it, and who undid it, when and
// why. It outlives the instance, so that its history can still be told.
type Compensation struct {
	Seq            int64  `json:"-"`
	InstanceKey    string `json:"instance_key"`
	TemplateKey    string `json:"template_key"`
	TemplateDigest Digest `json:"template_digest"`
	Mode           Mode   `json:"mode"`
	EventID        string `json:"event_id,omitempty"`
	EventSource    string `json:"event_source,omitempty"`
	EventType      string `json:"event_type,omitempty"`
	Actor          string `json:"actor"`               // the instance's actor
	InstanceAt     Time   `json:"instance_created_at"` // when the instance was made
	Reason         string `json:"reason,omitempty"`
	At             Time   `json:"compensated_at"`
	By             string `json:"compensated_by"` // the principal
	Claimed        string `json:"claimed_actor,omitempty"`
	Released       bool   `json:"released"` // the event's key was released: it may instantiate again
	// Later is the release of the event's key after the compensation
	// (compensate --release on an instance compensated earlier); nil when
	// it was released with the compensation, or is still claimed.
	Later *Release `json:"released_later,omitempty"`
}

// Release is a later release of a compensated instance's event key: when,
// by whom (the principal, and an actor claimed beside it), and why.
type Release struct {
	At      Time   `json:"released_at"`
	By      string `json:"released_by"`
	Claimed string `json:"claimed_actor,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// CompensateRequest asks to undo one instance. Apply false is a dry run.
type CompensateRequest struct {
	InstanceKey string
	Reason      string
	Release     bool // delete the event's log entry, so that the event may instantiate again
	Apply       bool
	Actor       string // an actor the caller names, recorded beside the principal
}

// CompensateReport says what a compensation deletes and keeps, or would.
type CompensateReport struct {
	InstanceKey string `json:"instance_key"`
	DryRun      bool   `json:"dry_run"`
	// Action is what was done, or would be: "compensate" (the instance
	// goes) or "release" (--release on an instance compensated earlier:
	// only its event's log entry goes).
	Action      string `json:"action"`
	TemplateKey string `json:"template_key"`
	Mode        Mode   `json:"mode"`
	Actor       string `json:"actor"`
	EventID     string `json:"event_id,omitempty"`
	Lineage     int64  `json:"lineage_rows"`
	Instances   int64  `json:"instances"`
	Memberships int64  `json:"memberships"`
	// LogEntry is what happens to the event's log entry: "compensated" (its
	// status becomes compensated; a redelivery makes nothing), "deleted"
	// (with Release: the event may instantiate again) or "none" (a manual
	// instance has no event).
	LogEntry string `json:"log_entry"`
}

// What a compensation does (CompensateReport.Action).
const (
	CompensateActionCompensate = "compensate"
	CompensateActionRelease    = "release"
)

// maxReasonBytes bounds a compensation's reason.
const maxReasonBytes = 1024

// Compensate undoes one instance in one transaction: its memberships,
// collection and lineage are deleted, and the compensation is recorded in
// iu_compensation under the principal. The event's idempotency key stays
// claimed (its log entry's status becomes compensated, and a redelivery
// answers compensated, making nothing), unless Release deletes the entry so
// that the event may instantiate again. A manual instance, which has no
// event, may be compensated too. Nothing is written unless Apply. An
// instance that does not exist (or no longer: compensated already) is
// ErrNotFound, and nothing is written, except that Release on an instance
// compensated earlier without it releases its event's key now.
func (e *Engine) Compensate(ctx context.Context, req CompensateRequest) (CompensateReport, error) {
	if err := CheckInstanceKeyRef(req.InstanceKey); err != nil {
		return CompensateReport{}, err
	}
	if err := checkText("reason", req.Reason, maxReasonBytes); err != nil {
		return CompensateReport{}, err
	}
	w, err := claimIfApplied(ctx, req.Actor, req.Apply)
	if err != nil {
		return CompensateReport{}, err
	}
	rep := CompensateReport{InstanceKey: req.InstanceKey, DryRun: !req.Apply, Action: CompensateActionCompensate}
	run := e.update
	if !req.Apply {
		run = e.store.View
	}
	err = run(ctx, func(tx Tx) error {
		in, err := tx.GetInstance(ctx, req.InstanceKey)
		if errors.Is(err, ErrNotFound) && req.Release {
			return e.releaseLater(ctx, tx, req, w, &rep)
		}
		if errors.Is(err, ErrNotFound) {
			return e.noInstance(ctx, tx, req.InstanceKey)
		}
		if err != nil {
			return err
		}
		rep.TemplateKey, rep.Mode, rep.Actor = in.TemplateKey, in.Mode, in.Actor
		rep.Lineage, rep.Instances, rep.Memberships = 1, 1, int64(len(in.Slots))
		if in.Mode == "" { // a collection without lineage: verify reports it
			rep.Lineage = 0
		}
		var entry *LogEntry
		if in.Event != nil {
			rep.EventID = in.Event.ID
			if entry, err = e.claimingEntry(ctx, tx, in); err != nil {
				return err
			}
		}
		switch {
		case entry == nil:
			rep.LogEntry = "none"
		case req.Release:
			rep.LogEntry = "deleted"
		default:
			rep.LogEntry = string(StatusCompensated)
		}
		if !req.Apply {
			return nil
		}
		gone, err := tx.DeleteInstance(ctx, in.Key)
		if err != nil {
			return err
		}
		// A migration batch that was writing the instance when it was read
		// has moved it since: the record says what was deleted.
		if gone.TemplateKey != "" {
			in.TemplateKey, in.TemplateDigest, rep.TemplateKey = gone.TemplateKey, gone.TemplateDigest, gone.TemplateKey
		}
		rep.Memberships = gone.Memberships
		if entry != nil {
			if req.Release {
				err = tx.DeleteLogEntry(ctx, entry.IdempotencyKey)
			} else {
				err = tx.SetLogStatus(ctx, entry.IdempotencyKey, StatusCompensated)
			}
			if err != nil {
				return err
			}
		}
		c := Compensation{
			InstanceKey: in.Key, TemplateKey: in.TemplateKey, TemplateDigest: in.TemplateDigest, Mode: in.Mode,
			Actor: in.Actor, InstanceAt: in.CreatedAt, Reason: req.Reason, At: TimeOf(e.clock()),
			By: w.By, Claimed: w.Claimed, Released: req.Release && entry != nil,
		}
		if ev := in.Event; ev != nil {
			c.EventID, c.EventSource, c.EventType = ev.ID, ev.Source, ev.Type
		}
		if err := tx.InsertCompensation(ctx, c); err != nil {
			return err
		}
		return e.audit(ctx, tx, w, AuditCompensate, in.Key, "%s, actor %s; log entry %s; reason %q", in.TemplateKey, in.Actor, rep.LogEntry, req.Reason)
	})
	if err != nil {
		return CompensateReport{}, err
	}
	return rep, nil
}

// releaseLater releases the key of an event whose instance was compensated
// earlier, keeping it claimed: the log entry is deleted, so that the event
// may instantiate again, and the compensation is marked released.
func (e *Engine) releaseLater(ctx context.Context, tx Tx, req CompensateRequest, w Who, rep *CompensateReport) error {
	cs, err := tx.ListCompensations(ctx, req.InstanceKey)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return e.noInstance(ctx, tx, req.InstanceKey)
	}
	c := cs[len(cs)-1]
	rep.Action = CompensateActionRelease
	rep.TemplateKey, rep.Mode, rep.Actor, rep.EventID = c.TemplateKey, c.Mode, c.Actor, c.EventID
	if c.EventID == "" {
		return Errorf(ErrInvalidInput, "instance %q was compensated already, and was composed by hand: there is no event whose key could be released", req.InstanceKey)
	}
	entry, err := compensatedEntry(ctx, tx, c)
	if err != nil {
		return err
	}
	if entry == nil {
		return Errorf(ErrNotFound, "instance %q was compensated already, at %s by %s, and its event's key is not held any more (released already, or rolled back): nothing to release (iu history %s)",
			req.InstanceKey, c.At, c.By, req.InstanceKey)
	}
	rep.LogEntry = "deleted"
	if !req.Apply {
		return nil
	}
	// Marked first, and only if not yet: of releases that race, one goes
	// on (the others wait for its row and find it marked), so none deletes
	// the entry of a life the event has made since.
	marked, err := tx.SetCompensationReleased(ctx, c.Seq, Release{At: TimeOf(e.clock()), By: w.By, Claimed: w.Claimed, Reason: req.Reason})
	if err != nil {
		return err
	}
	if !marked {
		return Errorf(ErrNotFound, "instance %q: its event's key was released already, just now: nothing to release (iu history %s)", req.InstanceKey, req.InstanceKey)
	}
	if err := tx.DeleteLogEntry(ctx, entry.IdempotencyKey); err != nil {
		return err
	}
	return e.audit(ctx, tx, w, AuditRelease, req.InstanceKey, "event %q from %q may instantiate again; reason %q", c.EventID, c.EventSource, req.Reason)
}

// DeletedInstance is what deleting one instance deleted: its membership
// rows, and the template its lineage named (empty for a collection without
// lineage).
type DeletedInstance struct {
	Memberships    int64
	TemplateKey    string
	TemplateDigest Digest
}

// compensatedEntry returns the log entry that a compensated instance's
// event still holds (status compensated), or nil. Its key was claimed for
// the template the instance was made from: the one it was compensated on,
// or one it was migrated from.
func compensatedEntry(ctx context.Context, tx Tx, c Compensation) (*LogEntry, error) {
	ms, err := tx.ListMigrations(ctx, c.InstanceKey)
	if err != nil {
		return nil, err
	}
	templates := []string{c.TemplateKey}
	for _, m := range ms {
		templates = append(templates, m.FromKey)
	}
	for _, tpl := range templates {
		entry, err := tx.GetLogEntry(ctx, IdempotencyKey(tpl, c.EventSource, c.EventID))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if entry.InstanceKey == c.InstanceKey && entry.Status == StatusCompensated {
			return &entry, nil
		}
	}
	return nil, nil
}

// noInstance words the absence of an instance: compensated already, or
// never there.
func (e *Engine) noInstance(ctx context.Context, tx Tx, key string) error {
	cs, err := tx.ListCompensations(ctx, key)
	if err != nil {
		return err
	}
	if len(cs) > 0 {
		c := cs[len(cs)-1]
		hint := ""
		if c.EventID != "" && !c.Released {
			hint = "; its event's key is still claimed: --release lets the event instantiate again"
		}
		return Errorf(ErrNotFound, "instance %q was compensated already, at %s by %s: nothing to undo (iu history %s)%s", key, c.At, c.By, key, hint)
	}
	return Errorf(ErrNotFound, "no instance %q (iu instances lists them)", key)
}

// claimingEntry returns the log entry that claimed an auto instance's
// event, or nil (none: rolled back, or released). Its idempotency key is
// computed from the template the event was claimed for: the instance's
// template, or, if it has been migrated since, the template it was first
// on.
func (e *Engine) claimingEntry(ctx context.Context, tx Tx, in *Instance) (*LogEntry, error) {
	tpl := in.TemplateKey
	ms, err := tx.ListMigrations(ctx, in.Key)
	if err != nil {
		return nil, err
	}
	if len(ms) > 0 {
		tpl = ms[0].FromKey
	}
	entry, err := tx.GetLogEntry(ctx, IdempotencyKey(tpl, in.Event.Source, in.Event.ID))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case entry.InstanceKey != in.Key:
		return nil, nil // the key now makes another instance
	}
	return &entry, nil
}

// CheckInstanceKeyRef validates a key that names an existing instance (auto
// or manual).
func CheckInstanceKeyRef(key string) error {
	if key == "" {
		return Errorf(ErrInvalidInput, "instance key is required")
	}
	return checkText("instance key", key, 512)
}

// checkText validates free text a caller gives (a reason): valid UTF-8, no
// control characters but newlines and tabs, at most max bytes.
func checkText(what, v string, max int) error {
	switch {
	case len(v) > max:
		return Errorf(ErrInvalidInput, "the %s is longer than %d bytes", what, max)
	case !utf8.ValidString(v):
		return Errorf(ErrInvalidInput, "the %s is not valid UTF-8", what)
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		return Errorf(ErrInvalidInput, "the %s contains a control character", what)
	}
	return nil
}

// describeCompensation is a compensation in one line, for history.
func describeCompensation(c Compensation) string {
	s := "compensated"
	if c.Reason != "" {
		s += fmt.Sprintf(": %q", c.Reason)
	}
	switch {
	case c.Later != nil:
		s += "; the event's key stayed claimed until its release later"
	case c.Released:
		s += "; the event's key was released (it may instantiate again)"
	case c.EventID != "":
		s += "; the event's key stays claimed (a redelivery answers compensated)"
	}
	return s
}
