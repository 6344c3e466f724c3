package main

import (
	"context"

	"github.com/iu-engine/iu"
)

func openPostgres(ctx context.Context, dsn string) (iu.Store, error) {
	return nil, iu.Errorf(iu.ErrUnavailable, "PostgreSQL stores are not supported by this build yet")
}
