package sqlite

import "context"

// ExecRaw runs a statement outside the engine, in its own write transaction.
// It exists for tests and repairs; the engine never needs it.
func ExecRaw(ctx context.Context, s *Store, query string, args ...any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.wconn.ExecContext(ctx, query, args...)
	return s.translate(err)
}

// CountRaw runs a query that returns one integer.
func CountRaw(ctx context.Context, s *Store, query string, args ...any) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, query, args...).Scan(&n)
	return n, s.translate(err)
}
