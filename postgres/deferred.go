package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

// A lone claim goes out with COMMIT (Claim of one entry, whose answer is
// due only once the transaction has committed): the claim and the instance
// (written only if the claim wins, in the same statement) are one round
// trip, and with an assumed state (state.go) one statement with no BEGIN or
// COMMIT of its own.
//
// Nothing can be decided between the claim and COMMIT, so the statement
// decides on the server: it writes only if the state the transaction assumed
// is the stored one, and says whether it was. A transaction that wrote
// nothing commits nothing.

// deferredClaim is a claim held for COMMIT.
type deferredClaim struct {
	args  []any
	res   *iu.Claim
	entry iu.LogEntry
	in    *iu.Instance
}

// claimDeferred claims a key ($1 to $10, the log columns) and writes the
// instance ($11 to $21) if the claim wins and $13 says there is one. It
// writes nothing unless $22 is false (the state was read in this
// transaction) or the stored gates and template head are $23 to $27. It
// returns whether that held and whether the key was claimed.
const claimDeferred = `WITH ok AS MATERIALIZED (
		SELECT NOT $22::boolean OR (
			(SELECT enabled FROM iu_gate WHERE name = '` + iu.GateComposer + `') IS NOT DISTINCT FROM $23::boolean
			AND (SELECT enabled FROM iu_gate WHERE name = '` + iu.GateAutoInstantiate + `') IS NOT DISTINCT FROM $24::boolean
			AND EXISTS (SELECT FROM iu_piece_collection WHERE collection_key = $5 AND collection_kind = 'template'
				AND collection_id = $25 AND emit_mode = $26 AND digest = $27)) AS ok
	), claim AS (
		INSERT INTO iu_auto_instantiate_event_log (` + logColumns + `)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM ok WHERE ok.ok
		ON CONFLICT (idempotency_key) DO NOTHING
		RETURNING idempotency_key
	), c AS (
		INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
		SELECT $6, 'instance', $11, $12, $7, $10 FROM claim WHERE $13::boolean
		RETURNING collection_id
	), m AS (
		INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
		SELECT c.collection_id, s.pos, s.slot, $6, s.piece, s.after
		FROM c, unnest($14::int[], $15::text[], $16::text[], $17::text[]) AS s(pos, slot, piece, after)
	), l AS (
		INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
			event_id, event_type, event_source, event_subject, event_time, event_data, created_at)
		SELECT c.collection_id, $6, $5, $18, $7, 'auto', $2, $3, $4, $19, $20, $21::text::jsonb, $10 FROM c
	)
	SELECT ok.ok, EXISTS (SELECT FROM claim) FROM ok`

// lookUpKey reads one key's log entry.
const lookUpKey = `SELECT ` + logColumns + ` FROM iu_auto_instantiate_event_log WHERE idempotency_key = $1`

// Claim claims the entries' keys and writes the instances of those it
// wins. A lone entry, in a transaction with nothing else held, is held for
// COMMIT (see above); several are claimed at once.
func (t *tx) Claim(ctx context.Context, entries []iu.LogEntry, instances []*iu.Instance) ([]iu.Claim, error) {
	if !t.write {
		return nil, iu.ErrWriteInView
	}
	claims := make([]iu.Claim, len(entries))
	if len(entries) == 1 && len(t.pending) == 0 && t.deferred == nil {
		return claims, t.claimDeferred(ctx, entries[0], instances[0], &claims[0])
	}
	priors, err := t.claimNow(ctx, entries, instances)
	if err != nil {
		return nil, err
	}
	for i, p := range priors {
		claims[i].Prior = p
	}
	return claims, nil
}

// Settle sends a claim held for COMMIT now, for a transaction that reads
// its answer before it commits.
func (t *tx) Settle(ctx context.Context) error { return t.undefer(ctx) }

// claimDeferred holds e's claim (and in, its instance) for COMMIT, to be
// answered in res.
func (t *tx) claimDeferred(ctx context.Context, e iu.LogEntry, in *iu.Instance, res *iu.Claim) error {
	// With the state assumed and not yet checked, the statement checks it.
	assumed := t.expect != nil && t.begin != ""
	var gates iu.Gates
	var head templateHead
	if assumed {
		var ok bool
		if head, ok = t.expect.heads[e.TemplateKey]; !ok {
			// The engine knows the template from elsewhere than the
			// state assumed: check the state in a round trip of its own.
			priors, err := t.claimNow(ctx, []iu.LogEntry{e}, []*iu.Instance{in})
			if err != nil {
				return err
			}
			res.Prior = priors[0]
			return nil
		}
		gates = t.expect.gates
	}
	args := []any{e.IdempotencyKey, e.EventID, e.EventType, e.EventSource, e.TemplateKey, e.InstanceKey, e.Actor,
		string(e.Status), e.PayloadDigest.String(), e.CreatedAt.Time,
		"", "", in != nil, noSlots.pos, noSlots.slot, noSlots.piece, noSlots.after, "", nil, nil, nil,
		assumed, gates.ComposerEnabled, gates.AutoInstantiateEnabled, head.id, string(head.mode), head.digest}
	if in != nil {
		sl := t.s.literals.get(in.TemplateKey, in.TemplateDigest, in.Slots)
		ev := eventArgs(in.Event)
		args[10], args[11] = in.Title, in.Digest.String()
		args[13], args[14], args[15], args[16] = sl.pos, sl.slot, sl.piece, sl.after
		args[17], args[18], args[19], args[20] = in.TemplateDigest.String(), ev[3], ev[4], ev[5]
	}
	t.deferred = &deferredClaim{args: args, res: res, entry: e, in: in}
	return nil
}

// claimNow claims entries and writes the instances of those it wins in the
// usual way, and returns for each entry the one that held its key before
// (nil: claimed here).
func (t *tx) claimNow(ctx context.Context, entries []iu.LogEntry, instances []*iu.Instance) ([]*iu.LogEntry, error) {
	existing, err := t.claimEvents(ctx, entries)
	if err != nil {
		return nil, err
	}
	priors, won := iu.SplitClaims(entries, instances, existing)
	if len(won) > 0 {
		if err := t.InsertInstances(ctx, won); err != nil {
			return nil, err
		}
	}
	return priors, nil
}

// undefer claims a held claim now, for a transaction that goes on after
// all: its statements and writes come after the claim.
func (t *tx) undefer(ctx context.Context) error {
	d := t.deferred
	if d == nil {
		return nil
	}
	t.deferred = nil
	pending := t.pending
	t.pending = nil
	priors, err := t.claimNow(ctx, []iu.LogEntry{d.entry}, []*iu.Instance{d.in})
	if err != nil {
		return err
	}
	d.res.Prior = priors[0]
	t.pending = append(t.pending, pending...)
	return nil
}

// commitDeferred sends the held claim and COMMIT in one round trip and fills
// in the claim's answer. A transaction that has sent nothing yet sends
// neither BEGIN nor COMMIT: the statement is the implicit transaction of
// its pipeline, which the server commits at the pipeline's end (or rolls
// back, on an error), at READ COMMITTED (see Open). Only a claim that lost
// (a redelivery) reads the entry that won, after the commit.
func (t *tx) commitDeferred(ctx context.Context) error {
	d := t.deferred
	t.deferred = nil
	implicit := t.begin != ""
	t.begin = ""
	b := &pgx.Batch{}
	b.Queue(claimDeferred, d.args...)
	if !implicit {
		b.Queue("COMMIT")
	}
	br := t.c.SendBatch(ctx, b)
	if implicit {
		t.ended = true // the pipeline's end ends it, whatever happens
	}
	var ok, claimed bool
	if err := br.QueryRow().Scan(&ok, &claimed); err != nil {
		br.Close()
		if implicit {
			return instanceExists(t.commitFailed(ctx, err))
		}
		return instanceExists(t.s.translate(ctx, err))
	}
	if !implicit {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return t.commitFailed(ctx, err)
		}
		t.ended = true
	}
	if err := br.Close(); err != nil {
		return t.commitFailed(ctx, err)
	}
	// Committed. A transaction that wrote nothing runs again if it assumed
	// a stale state, or if it lost its key to an entry that a rollback has
	// deleted since.
	switch {
	case !ok:
		return errStale
	case claimed:
		return nil
	}
	rows, err := t.c.Query(ctx, lookUpKey, d.entry.IdempotencyKey)
	if err != nil {
		return t.s.translate(ctx, err)
	}
	found := make(map[string]iu.LogEntry, 1)
	if err := t.scanLog(ctx, rows, found); err != nil {
		return err
	}
	prior, taken := found[d.entry.IdempotencyKey]
	if !taken {
		return iu.Errorf(iu.ErrRetryable, "%s: idempotency key %s changed hands while being claimed (a rollback racing an emit)", t.s.desc, d.entry.IdempotencyKey)
	}
	d.res.Prior = &prior
	return nil
}
