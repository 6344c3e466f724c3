package main

import (
	"context"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/postgres"
)

// openPostgres opens the PostgreSQL store named by a DSN, with the store's
// defaults (pool size, statement timeouts). The DSN's search_path picks the
// schema. Without create it refuses a schema that holds no iu store.
func openPostgres(ctx context.Context, dsn string, create bool) (iu.Store, error) {
	return postgres.Open(ctx, dsn, postgres.Options{MustExist: !create})
}
