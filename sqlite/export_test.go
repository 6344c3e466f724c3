package sqlite

// SetWALRestartFrames sets the WAL length past which a checkpoint round
// finishes under the write lock, until the returned func restores it.
func SetWALRestartFrames(n int) (restore func()) {
	old := restartFrames
	restartFrames = n
	return func() { restartFrames = old }
}
