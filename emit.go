package iu

// One event, or a batch of them, instantiating templates exactly once.

import (
	"context"
	"errors"
)

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
		if err := checkStoredDigest(t); err != nil {
			b.outs[i].Err = err
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
