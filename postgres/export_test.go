package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// DownTo runs the schema's down migrations on s's schema, outside the
// store, until it is at version: a store as an older iu left it.
func DownTo(ctx context.Context, s *Store, version int64) error {
	db := stdlib.OpenDB(*s.conn.Copy())
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrationsFS,
		goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}
