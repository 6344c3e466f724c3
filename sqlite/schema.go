package sqlite

// What iu serve asks of the store: its schema version, for readiness, and its pool, for metrics.

import (
	"context"
	"database/sql"

	"github.com/iu-engine/iu"
)

func (t *tx) SchemaVersion(ctx context.Context) (current, known int64, err error) {
	if err := t.queryRow(ctx, `SELECT version_id FROM `+versionTable+` ORDER BY id DESC LIMIT 1`, nil, &current); err != nil {
		return 0, 0, t.s.translate(err)
	}
	return current, knownVersion, nil
}

// PoolStats sums the writer connection and the read pool.
func (s *Store) PoolStats() iu.PoolStats {
	var p iu.PoolStats
	for _, db := range []*sql.DB{s.w, s.r} {
		if db == nil {
			continue
		}
		st := db.Stats()
		p.MaxOpen += st.MaxOpenConnections
		p.Open += st.OpenConnections
		p.InUse += st.InUse
		p.Idle += st.Idle
		p.WaitCount += st.WaitCount
		p.WaitDuration += st.WaitDuration
	}
	return p
}
