package sqlite

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
