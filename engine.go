package iu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"
)

// DefaultSource is the event source used when a caller gives none (the
// command line and bulk plans).
const DefaultSource = "iu:cli"

// Engine applies iu's rules over a Store. It is safe for concurrent use and
// holds no state of its own besides configuration: several engines (or
// processes) may share one store.
type Engine struct {
	store        Store
	now          func() time.Time
	maxRetries   int
	chunk        int
	migrateBatch int
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock sets the clock stamped on every row (UTC, millisecond precision).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithMaxRetries bounds how often a transaction that failed transiently is
// run again before the failure is returned.
func WithMaxRetries(n int) Option { return func(e *Engine) { e.maxRetries = n } }

// WithBulkChunk sets how many events a bulk run hands the store at once.
func WithBulkChunk(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.chunk = n
		}
	}
}

// WithMigrateBatch sets how many instances one transaction of a migration
// moves.
func WithMigrateBatch(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.migrateBatch = n
		}
	}
}

// NewEngine returns an engine over store.
func NewEngine(store Store, opts ...Option) *Engine {
	e := &Engine{store: store, now: time.Now, maxRetries: 8, chunk: 512, migrateBatch: DefaultMigrateBatch}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Store returns the engine's store.
func (e *Engine) Store() Store { return e.store }

func (e *Engine) clock() time.Time { return e.now().UTC().Truncate(time.Millisecond) }

// update runs fn in a write transaction, again from the start when the store
// reports a transient failure, with bounded, jittered exponential backoff.
// fn must be safe to run more than once.
func (e *Engine) update(ctx context.Context, fn func(Tx) error) error {
	backoff := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := e.store.Update(ctx, fn)
		if err == nil || !errors.Is(err, ErrRetryable) {
			return err
		}
		if attempt >= e.maxRetries {
			return Errorf(ErrUnavailable, "gave up after %d attempts: %v", attempt+1, err)
		}
		sleep := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// PublishResult says what publishing one template did.
type PublishResult struct {
	Key     string `json:"key"`
	Digest  Digest `json:"digest"`
	Pieces  int    `json:"pieces"`
	Created bool   `json:"created"`
}

// PublishTemplates publishes templates in one transaction: all or none.
// Publishing identical content again is a no-op (Created false); the same key
// with other content is ErrTemplateExists.
func (e *Engine) PublishTemplates(ctx context.Context, templates []*Template, actor string) ([]PublishResult, error) {
	w, err := claim(ctx, actor)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]*Template)
	for _, t := range templates {
		if t.Digest != GraphDigest(t.Slots) {
			return nil, Errorf(ErrInvalidTemplate, "template %s: digest does not match its graph", t.Key)
		}
		for _, s := range t.Slots {
			if _, ok := t.Pieces[s.Piece]; !ok {
				return nil, Errorf(ErrInvalidTemplate, "template %s: slot %q: piece %s has no content", t.Key, s.ID, s.Piece)
			}
		}
		if o, dup := seen[t.Key]; dup && !o.SameContent(t) {
			return nil, Errorf(ErrTemplateExists, "template %s is given twice with different content", t.Key)
		}
		seen[t.Key] = t
	}
	var results []PublishResult
	err = e.update(ctx, func(tx Tx) error {
		results = results[:0]
		at := e.clock()
		for _, t := range templates {
			r := PublishResult{Key: t.Key, Digest: t.Digest, Pieces: len(t.Slots)}
			stored, err := tx.GetTemplate(ctx, t.Key)
			switch {
			case err == nil:
				if !stored.SameContent(t) {
					next := t.Key
					if k, err := ParseTemplateKey(t.Key); err == nil {
						k.Version++
						next = k.String()
					}
					return Errorf(ErrTemplateExists,
						"template %s is already published with other content (stored %s, given %s); templates are immutable: publish the change as a new version, e.g. %s",
						t.Key, stored.Digest, t.Digest, next)
				}
			case errors.Is(err, ErrUnknownTemplate):
				c := *t
				c.Actor, c.CreatedAt = w.By, TimeOf(at)
				if c.EmitMode == "" {
					c.EmitMode = EmitLive
				}
				if err := tx.InsertTemplate(ctx, &c); err != nil {
					return err
				}
				if err := e.audit(ctx, tx, w, AuditPublish, t.Key, "%s, %d pieces, emit mode %s", t.Digest, len(t.Slots), c.EmitMode); err != nil {
					return err
				}
				r.Created = true
			default:
				return err
			}
			results = append(results, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// GetTemplate returns a template with its piece bodies.
func (e *Engine) GetTemplate(ctx context.Context, key string) (*Template, error) {
	var t *Template
	err := e.store.View(ctx, func(tx Tx) error {
		var err error
		if t, err = getTemplate(ctx, tx, key); err != nil {
			return err
		}
		ids := make([]Digest, len(t.Slots))
		for i, s := range t.Slots {
			ids[i] = s.Piece
		}
		t.Pieces, err = tx.GetPieces(ctx, ids)
		return err
	})
	return t, err
}

// ListTemplates lists templates by key, a page at a time.
func (e *Engine) ListTemplates(ctx context.Context, r PageRequest) (Page[TemplateInfo], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[TemplateInfo]{}, err
	}
	after, err := parseKeyCursor(r.After)
	if err != nil {
		return Page[TemplateInfo]{}, err
	}
	var rows []TemplateInfo
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListTemplates(ctx, after, limit+1)
		return err
	})
	return pageOf(rows, limit, func(t *TemplateInfo) string { return keyCursor(t.Key) }), err
}

// SetEmitMode switches a template between live and shadow, audited under
// the principal. Setting the mode it has changes nothing and records
// nothing.
func (e *Engine) SetEmitMode(ctx context.Context, key string, mode EmitMode) error {
	if _, err := ParseEmitMode(string(mode)); err != nil {
		return err
	}
	w := who(ctx, "")
	return e.update(ctx, func(tx Tx) error {
		t, err := getTemplate(ctx, tx, key)
		if err != nil {
			return err
		}
		if t.EmitMode == mode {
			return nil
		}
		if err := tx.SetEmitMode(ctx, key, mode); err != nil {
			return err
		}
		return e.audit(ctx, tx, w, AuditEmitMode, key, "%s -> %s", t.EmitMode, mode)
	})
}

// Gates returns the committed state of the gates.
func (e *Engine) Gates(ctx context.Context) (Gates, error) {
	var g Gates
	err := e.store.View(ctx, func(tx Tx) (err error) {
		g, err = tx.Gates(ctx)
		return err
	})
	return g, err
}

// SetGates changes gates and returns the new state. Each change is audited
// under the principal, with actor kept as what the client claimed; a gate
// set to the value it has is not a change and records nothing.
func (e *Engine) SetGates(ctx context.Context, change GateChange, actor string) (Gates, error) {
	w, err := claim(ctx, actor)
	if err != nil {
		return Gates{}, err
	}
	if len(change) == 0 {
		return Gates{}, Errorf(ErrInvalidInput, "no gate to set: give NAME=true or NAME=false")
	}
	var g Gates
	err = e.update(ctx, func(tx Tx) (err error) {
		g, err = e.setGates(ctx, tx, change, w)
		return err
	})
	return g, err
}

// setGates applies the part of change that changes something, audited
// under w, and returns the gates as they are then.
func (e *Engine) setGates(ctx context.Context, tx Tx, change GateChange, w Who) (Gates, error) {
	g, err := tx.Gates(ctx)
	if err != nil {
		return Gates{}, err
	}
	real := GateChange{}
	for name, on := range change {
		if g.Get(name) != on {
			real[name] = on
			g.Set(name, on)
		}
	}
	if len(real) == 0 {
		return g, nil
	}
	return g, tx.SetGates(ctx, real, w, e.clock())
}

// GateAudit returns the gates' audit trail newest first, a page at a time.
func (e *Engine) GateAudit(ctx context.Context, r PageRequest) (Page[GateAuditEntry], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[GateAuditEntry]{}, err
	}
	before, err := parseSeqCursor(r.After)
	if err != nil {
		return Page[GateAuditEntry]{}, err
	}
	var rows []GateAuditEntry
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListGateAudit(ctx, before, limit+1)
		return err
	})
	return pageOf(rows, limit, func(a *GateAuditEntry) string { return seqCursor(a.Seq) }), err
}

// EmitRequest asks for one event to instantiate one template.
type EmitRequest struct {
	TemplateKey string
	Event       Event
	Actor       string
	Prefix      string // instance key prefix; defaults to Actor
}

// prepared is a validated request with its derived keys.
type prepared struct {
	req            *EmitRequest
	idempotencyKey string
	instanceKey    string
	payload        Digest
}

// prepare validates a request. It touches no store, so a bad event is
// refused before any transaction.
func prepare(r *EmitRequest) (prepared, error) {
	if _, err := ParseTemplateKey(r.TemplateKey); err != nil {
		return prepared{}, err
	}
	if err := r.Event.Validate(); err != nil {
		return prepared{}, err
	}
	if err := CheckActor(r.Actor); err != nil {
		return prepared{}, err
	}
	prefix := InstancePrefix(r.Prefix, r.Actor)
	if err := CheckPrefix(prefix); err != nil {
		return prepared{}, err
	}
	k := IdempotencyKey(r.TemplateKey, r.Event.Source, r.Event.ID)
	return prepared{req: r, idempotencyKey: k, instanceKey: AutoInstanceKey(prefix, k), payload: r.Event.PayloadDigest()}, nil
}

// Outcome is the answer to one request of a batch: a result or an error.
type Outcome struct {
	Result Result
	Err    error
}

// Emit instantiates one template from one event, exactly once. It is safe
// to call again with the same event: the retry returns the first answer with
// Replayed set. The same event with another payload is ErrIdempotencyConflict.
func (e *Engine) Emit(ctx context.Context, req EmitRequest) (Result, error) {
	p, err := prepare(&req)
	if err != nil {
		return Result{}, err
	}
	outs, err := e.emitPrepared(ctx, []prepared{p})
	if err != nil {
		return Result{}, err
	}
	return outs[0].Result, outs[0].Err
}

// EmitBatch applies many requests in one transaction and answers each on its
// own: a bad request fails alone and writes nothing, its neighbours commit.
// The returned error is for the batch as a whole (the store failed).
func (e *Engine) EmitBatch(ctx context.Context, reqs []EmitRequest) ([]Outcome, error) {
	outs := make([]Outcome, len(reqs))
	var ps []prepared
	var at []int
	for i := range reqs {
		p, err := prepare(&reqs[i])
		if err != nil {
			outs[i].Err = err
			continue
		}
		ps = append(ps, p)
		at = append(at, i)
	}
	if len(ps) == 0 {
		return outs, nil
	}
	res, err := e.emitPrepared(ctx, ps)
	if err != nil {
		return nil, err
	}
	for j, o := range res {
		outs[at[j]] = o
	}
	return outs, nil
}

// emitPrepared applies prepared requests in one transaction (retried on a
// transient failure) and answers each, once the transaction has committed.
func (e *Engine) emitPrepared(ctx context.Context, ps []prepared) ([]Outcome, error) {
	var b *batchOutcomes
	err := e.update(ctx, func(tx Tx) (err error) {
		b, err = e.instantiate(ctx, tx, ps, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b.resolve(), nil
}

// batchOutcomes are the outcomes of a batch of requests in a transaction,
// which become final once the claims of its log entries are answered (when
// the transaction has committed, or Tx.Settle has returned).
type batchOutcomes struct {
	ps       []prepared
	outs     []Outcome
	entries  []LogEntry
	claimant []int       // index into ps for each entry
	dupOf    map[int]int // later duplicate -> first request
	claims   []Claim
}

// resolve completes the outcomes from the claims' answers: a key held
// before is a replay (or a conflict), one claimed here is the entry's
// status; repeats within the batch answer as replays of their first.
func (b *batchOutcomes) resolve() []Outcome {
	existing := make(map[string]LogEntry)
	for k, entry := range b.entries {
		i := b.claimant[k]
		if prior := b.claims[k].Prior; prior != nil {
			existing[entry.IdempotencyKey] = *prior
			b.outs[i] = replay(b.ps[i], *prior)
			continue
		}
		b.outs[i].Result.Status = entry.Status
	}
	resolveDuplicates(b.ps, b.outs, b.dupOf, existing)
	return b.outs
}

// instantiate applies prepared requests inside tx. It reads the gates and
// the templates once, then claims every new idempotency key and writes the
// instances of the keys it wins in one Tx.Claim. Per-request failures
// (unknown template, idempotency conflict) are outcomes of their own and
// write nothing; the returned error is a store failure. templates caches
// graphs across calls within one transaction (may be nil).
func (e *Engine) instantiate(ctx context.Context, tx Tx, ps []prepared, templates map[string]*Template) (*batchOutcomes, error) {
	b := &batchOutcomes{ps: ps, outs: make([]Outcome, len(ps)), dupOf: make(map[int]int)}
	for i, p := range ps {
		b.outs[i].Result = Result{TemplateKey: p.req.TemplateKey, InstanceKey: p.instanceKey, IdempotencyKey: p.idempotencyKey}
	}
	gates, err := tx.Gates(ctx)
	if err != nil {
		return nil, err
	}
	if templates == nil {
		templates = make(map[string]*Template)
	}
	at := e.clock()
	var instances []*Instance
	first := make(map[string]int) // idempotency key -> first request in this batch
	for i, p := range ps {
		t, ok := templates[p.req.TemplateKey]
		if !ok {
			t, err = tx.GetTemplate(ctx, p.req.TemplateKey)
			if err != nil && !errors.Is(err, ErrUnknownTemplate) {
				return nil, err
			}
			templates[p.req.TemplateKey] = t // nil for unknown
		}
		// An unknown template is bad input whatever the gates say; a closed
		// gate is only an answer for a request that could otherwise succeed.
		if t == nil {
			b.outs[i].Err = unknownTemplate(p.req.TemplateKey)
			continue
		}
		if !gates.AutoInstantiateEnabled {
			b.outs[i].Result.Status, b.outs[i].Result.Gate = StatusGated, GateAutoInstantiate
			continue
		}
		status := StatusOK
		if t.EmitMode == EmitShadow {
			status = StatusShadow
		} else if !gates.ComposerEnabled {
			b.outs[i].Result.Status, b.outs[i].Result.Gate = StatusGated, GateComposer
			continue
		}
		if j, dup := first[p.idempotencyKey]; dup {
			b.dupOf[i] = j
			continue
		}
		first[p.idempotencyKey] = i
		ev := p.req.Event
		b.entries = append(b.entries, LogEntry{
			IdempotencyKey: p.idempotencyKey, EventID: ev.ID, EventType: ev.Type, EventSource: ev.Source,
			TemplateKey: p.req.TemplateKey, InstanceKey: p.instanceKey, Actor: p.req.Actor,
			Status: status, PayloadDigest: p.payload, CreatedAt: TimeOf(at),
		})
		b.claimant = append(b.claimant, i)
		var in *Instance
		if status == StatusOK {
			in = &Instance{
				Key: p.instanceKey, Title: t.Title, TemplateKey: t.Key, TemplateDigest: t.Digest, Digest: t.Digest,
				Actor: p.req.Actor, Mode: ModeAuto, Event: &ev, Slots: t.Slots, CreatedAt: TimeOf(at),
			}
		}
		instances = append(instances, in)
	}
	if len(b.entries) > 0 {
		if b.claims, err = tx.Claim(ctx, b.entries, instances); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// replay answers a request whose idempotency key was already claimed.
func replay(p prepared, prior LogEntry) Outcome {
	if prior.PayloadDigest != p.payload || prior.TemplateKey != p.req.TemplateKey {
		ev := p.req.Event
		return Outcome{Err: Errorf(ErrIdempotencyConflict,
			"idempotency conflict: event %q from %q was already applied to %s with a different payload (type, subject or data); a new event needs a new id",
			ev.ID, ev.Source, prior.TemplateKey)}
	}
	return Outcome{Result: Result{
		Status: prior.Status, TemplateKey: prior.TemplateKey, InstanceKey: prior.InstanceKey,
		IdempotencyKey: prior.IdempotencyKey, Replayed: true,
	}}
}

// resolveDuplicates answers the repeats of an event within one batch as
// replays: of the stored entry if there was one, else of the first
// occurrence in the batch.
func resolveDuplicates(ps []prepared, outs []Outcome, dupOf map[int]int, existing map[string]LogEntry) {
	for i, j := range dupOf {
		if prior, ok := existing[ps[i].idempotencyKey]; ok {
			outs[i] = replay(ps[i], prior)
			continue
		}
		if outs[j].Err != nil {
			outs[i].Err = outs[j].Err
			continue
		}
		r := outs[j].Result
		outs[i] = replay(ps[i], LogEntry{
			IdempotencyKey: r.IdempotencyKey, TemplateKey: r.TemplateKey, InstanceKey: r.InstanceKey,
			Status: r.Status, PayloadDigest: ps[j].payload,
		})
	}
}

// ComposeRequest asks for a manual composition: the older path, where an
// operator names the instance.
type ComposeRequest struct {
	TemplateKey string
	InstanceKey string
	Actor       string
}

// ComposeResult describes a composed instance.
type ComposeResult struct {
	InstanceKey string `json:"instance_key"`
	TemplateKey string `json:"template_key"`
	Digest      Digest `json:"digest"`
	Pieces      int    `json:"pieces"`
}

// CheckInstanceKey validates a manually chosen instance key.
func CheckInstanceKey(key string) error {
	if key == "" {
		return Errorf(ErrInvalidInput, "instance key is required")
	}
	if len(key) > 256 || strings.IndexFunc(key, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return Errorf(ErrInvalidInput, "instance key %q must be printable, without spaces, at most 256 bytes", key)
	}
	if strings.HasPrefix(key, "tpl:") || strings.HasPrefix(key, "tpl-inst:auto:") {
		return Errorf(ErrInvalidInput, "instance key %q: the prefixes tpl: and tpl-inst:auto: are reserved (try tpl-inst:manual:...)", key)
	}
	return nil
}

// Compose makes an instance of a template under a chosen key and records
// its lineage with mode manual. The composer gate must be on.
func (e *Engine) Compose(ctx context.Context, req ComposeRequest) (ComposeResult, error) {
	if _, err := ParseTemplateKey(req.TemplateKey); err != nil {
		return ComposeResult{}, err
	}
	if err := CheckInstanceKey(req.InstanceKey); err != nil {
		return ComposeResult{}, err
	}
	if err := CheckActor(req.Actor); err != nil {
		return ComposeResult{}, err
	}
	var res ComposeResult
	err := e.update(ctx, func(tx Tx) error {
		g, err := tx.Gates(ctx)
		if err != nil {
			return err
		}
		if !g.ComposerEnabled {
			return Errorf(ErrGateClosed, "gate %s is off: composition is disabled (iu gate set composer_enabled=true)", GateComposer)
		}
		t, err := getTemplate(ctx, tx, req.TemplateKey)
		if err != nil {
			return err
		}
		in := Instance{
			Key: req.InstanceKey, Title: t.Title, TemplateKey: t.Key, TemplateDigest: t.Digest, Digest: GraphDigest(t.Slots),
			Actor: req.Actor, Mode: ModeManual, Slots: t.Slots, CreatedAt: TimeOf(e.clock()),
		}
		if err := tx.InsertInstances(ctx, []Instance{in}); err != nil {
			if errors.Is(err, ErrInstanceExists) {
				return Errorf(ErrInstanceExists, "instance %q already exists: choose another key", req.InstanceKey)
			}
			return err
		}
		res = ComposeResult{InstanceKey: in.Key, TemplateKey: t.Key, Digest: in.Digest, Pieces: len(t.Slots)}
		return nil
	})
	return res, err
}

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
	if f.Status != "" && f.Status != StatusOK && f.Status != StatusShadow {
		return Page[LogEntry]{}, Errorf(ErrInvalidInput, "status %q: the event log holds ok and shadow entries", f.Status)
	}
	before, err := parseSeqCursor(f.After)
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

// RollbackReport says what a rollback deleted, or would delete.
type RollbackReport struct {
	Actor  string `json:"actor"`
	DryRun bool   `json:"dry_run"`
	RollbackCounts
}

// Rollback removes an actor's auto instantiations: event log rows, then
// lineage, then instance collections and their memberships, in one
// transaction. With apply false it only counts (the default of the command
// line). Templates, pieces and other actors' rows are untouched, and a
// rolled-back event may be instantiated again.
func (e *Engine) Rollback(ctx context.Context, actor string, apply bool) (RollbackReport, error) {
	if err := CheckActor(actor); err != nil {
		return RollbackReport{}, err
	}
	r := RollbackReport{Actor: actor, DryRun: !apply}
	run := e.update
	if !apply {
		run = e.store.View
	}
	w := who(ctx, "")
	err := run(ctx, func(tx Tx) (err error) {
		if r.RollbackCounts, err = tx.RollbackActor(ctx, actor, apply); err != nil || !apply {
			return err
		}
		c := r.RollbackCounts
		return e.audit(ctx, tx, w, AuditRollback, actor, "deleted log_rows=%d lineage=%d instances=%d memberships=%d",
			c.LogRows, c.LineageRows, c.Instances, c.Memberships)
	})
	if err != nil {
		return RollbackReport{}, fmt.Errorf("rollback %s: %w", actor, err)
	}
	return r, nil
}
