package sqlite

import (
	"context"
	"database/sql"

	"github.com/pressly/goose/v3"
)

// SetWALRestartFrames sets the WAL length past which a checkpoint round
// finishes under the write lock, until the returned func restores it.
func SetWALRestartFrames(n int) (restore func()) {
	old := restartFrames
	restartFrames = n
	return func() { restartFrames = old }
}

// SetRollbackChunk sets how many rows one statement of a rollback deletes,
// until the returned func restores it.
func SetRollbackChunk(n int) (restore func()) {
	old := rollbackChunk
	rollbackChunk = n
	return func() { rollbackChunk = old }
}

// DownTo runs the schema's down migrations on the file at path, outside any
// store, until its schema is at version: a store as an older iu left it.
func DownTo(ctx context.Context, path string, version int64) error {
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrationsFS,
		goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}
