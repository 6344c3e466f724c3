package postgres

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
)

// A write transaction's first round trip reads the gates and the heads of
// the templates used last (state). A transaction that may be run again
// (UpdateRepeatable) does not wait for that read: Gates answers from the
// state the last transaction read, and the read goes out with the
// transaction's next round trip (the claim, or COMMIT). If the state read
// there is not the one assumed, the transaction fails with errStale, is
// rolled back, and runs again reading first. Gates and emit modes change
// seldom, so a single emit is two round trips instead of three.
//
// The guarantee is the one of reading first: a gate closed by a commit
// before the transaction's first statement is seen, and the transaction's
// writes depend on it. At READ COMMITTED nothing stronger held before
// either: a gate closed between the read and the claim was not seen.

// state is the gates and the heads of some templates, as one statement read
// them.
type state struct {
	gates iu.Gates
	heads map[string]templateHead // by template key; missing: not a template
}

// errStale is a transaction that assumed a state and found another.
var errStale = iu.Errorf(iu.ErrRetryable, "the gates or a template's emit mode changed while a transaction assumed them")

// lastState is the state the store's transactions read last, shared by them.
type lastState struct {
	mu sync.Mutex
	st *state
}

func (l *lastState) get() *state {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

func (l *lastState) set(st *state) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st = st
}

// stateQuery reads the gates and the heads of keys in one statement. Up to
// four keys are parameters of a fixed list (the last repeated), which gets
// a generic plan that the server reuses; with an array parameter it planned
// the query anew in every transaction.
func stateQuery(keys []string) (string, []any) {
	const gates = `SELECT 'g', name, enabled, 0::bigint, '', '' FROM iu_gate`
	const heads = ` UNION ALL SELECT 't', collection_key, false, collection_id, emit_mode, digest FROM iu_piece_collection
		WHERE collection_kind = 'template' AND collection_key `
	switch {
	case len(keys) == 0:
		return gates, nil
	case len(keys) <= 4:
		args := make([]any, 4)
		for i := range args {
			args[i] = keys[min(i, len(keys)-1)]
		}
		return gates + heads + `IN ($1, $2, $3, $4)`, args
	default:
		return gates + heads + `= ANY($1)`, []any{keys}
	}
}

// readState scans stateQuery's rows.
func (t *tx) readState(ctx context.Context, rows pgx.Rows) (*state, error) {
	defer rows.Close()
	st := &state{heads: make(map[string]templateHead)}
	for rows.Next() {
		var kind, name, mode, digest string
		var on bool
		var id int64
		if err := rows.Scan(&kind, &name, &on, &id, &mode, &digest); err != nil {
			return nil, t.s.translate(ctx, err)
		}
		if kind == "g" {
			st.gates.Set(name, on)
		} else {
			st.heads[name] = templateHead{id: id, mode: iu.EmitMode(mode), digest: digest}
		}
	}
	return st, t.s.translate(ctx, rows.Err())
}

// assume answers Gates from the state read last, if the transaction may
// speculate and has sent nothing yet, and arranges for the state to be read
// again with its first round trip and checked.
func (t *tx) assume() (iu.Gates, bool) {
	if !t.speculate || !t.write || t.begin == "" || len(t.pending) > 0 || t.expect != nil {
		return iu.Gates{}, false
	}
	st := t.s.last.get()
	if st == nil {
		return iu.Gates{}, false
	}
	t.expect, t.modes = st, st.heads
	return st.gates, true
}

// check is the statement that reads the state again, queued after BEGIN,
// with the keys assumed and those used last since, and its reader, which
// fails with errStale if the state is not the one assumed.
func (t *tx) check() queued {
	want := t.expect
	keys := slices.Sorted(maps.Keys(want.heads))
	for _, k := range t.s.cache.recent() {
		if _, ok := want.heads[k]; !ok {
			keys = append(keys, k)
		}
	}
	sql, args := stateQuery(keys)
	return queued{sql: sql, args: args, read: func(ctx context.Context, rows pgx.Rows) error {
		got, err := t.readState(ctx, rows)
		if err != nil {
			return err
		}
		t.s.last.set(got)
		if got.gates != want.gates {
			return errStale
		}
		for k, h := range want.heads {
			if got.heads[k] != h {
				return errStale
			}
		}
		return nil
	}}
}
