package postgres

import "context"

// ExecRaw runs a statement outside the engine, in its own transaction. It
// exists for tests and repairs; the engine never needs it.
func ExecRaw(ctx context.Context, s *Store, query string, args ...any) error {
	_, err := s.pool.Exec(ctx, query, args...)
	return s.translate(ctx, err)
}

// CountRaw runs a query that returns one integer.
func CountRaw(ctx context.Context, s *Store, query string, args ...any) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, query, args...).Scan(&n)
	return n, s.translate(ctx, err)
}
