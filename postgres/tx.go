package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// tx is an iu.Tx on a PostgreSQL transaction (conn.go has how it talks).
//
// Batch-shaped methods send arrays and let the server unnest them: one
// statement, one round trip, however many rows.
type tx struct {
	s       *Store
	c       *pgx.Conn
	write   bool
	begin   string   // the BEGIN still to send; "" once sent
	pending []queued // writes held back until the next round trip
	modes   map[string]templateHead
	// speculate lets Gates assume the state read last; expect is the state
	// assumed, checked with the first round trip (see state.go).
	speculate bool
	expect    *state
	deferred  *deferredClaim // a claim held for COMMIT (deferred.go)
	ended     bool           // COMMIT has run
	cursors   int            // cursors declared, for their names
	// atEnd runs as the transaction ends: it stops work begun on other
	// connections from this one's snapshot.
	atEnd []func()
	// changedState says that the transaction changed the gates or an emit
	// mode, which transactions assume (state.go).
	changedState bool
}

// long runs fn with the statement timeout raised to LongStatementTimeout,
// for statements whose work grows with the whole store. The settings ride
// along with the statements around them.
func (t *tx) long(ctx context.Context, fn func() error) error {
	t.hold(queued{sql: `SELECT set_config('statement_timeout', $1, true)`, args: []any{pgInterval(t.s.longTimeout)}})
	if err := fn(); err != nil {
		return err
	}
	t.hold(queued{sql: `SELECT set_config('statement_timeout', $1, true)`, args: []any{t.s.stmtSetting}})
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// The rollback statements reach memberships one instance at a time, through
// the primary key: a correlated subquery for the count, an array of ids for
// the delete. Written as joins, they were planned as hash joins over every
// membership row whenever the table had no statistics yet (right after a
// bulk run: 8 million rows read to roll back 3 instances).
