package postgres

import (
	"context"

	"github.com/iu-engine/iu"
)

// PoolStats reports the connection pool.
func (s *Store) PoolStats() iu.PoolStats {
	if s.pool == nil {
		return iu.PoolStats{}
	}
	st := s.pool.Stat()
	return iu.PoolStats{
		MaxOpen:      int(st.MaxConns()),
		Open:         int(st.TotalConns()),
		InUse:        int(st.AcquiredConns()),
		Idle:         int(st.IdleConns()),
		WaitCount:    st.EmptyAcquireCount(),
		WaitDuration: st.EmptyAcquireWaitTime(),
	}
}

func (t *tx) SchemaVersion(ctx context.Context) (current, known int64, err error) {
	if err := t.queryRow(ctx, `SELECT version_id FROM `+versionTable+` ORDER BY id DESC LIMIT 1`, nil, &current); err != nil {
		return 0, 0, t.s.translate(ctx, err)
	}
	return current, knownVersion, nil
}
