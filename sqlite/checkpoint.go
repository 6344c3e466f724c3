package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// checkpointer copies committed pages from the WAL into the database file in
// the background, on a connection of its own. The writer connection runs
// with wal_autocheckpoint off, so a commit never waits for a checkpoint:
// with SQLite's default, the commit that crosses 1,000 WAL pages copies them
// all before it returns, which stalls every writer behind it. A PASSIVE
// checkpoint runs beside readers and the writer; Close runs a last, full one.
//
// Under a steady stream of commits a PASSIVE checkpoint never copies the
// whole WAL, which then grows without end; so past restartFrames a round
// ends with a second checkpoint under the write lock (wmu), which leaves
// the WAL wholly copied and restarts it (128 MiB: not every round, as
// writers wait for it). TestWALStaysBoundedUnderSteadyCommits holds it.
type checkpointer struct {
	db    *sql.DB
	wmu   *sync.Mutex // the store's write lock
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
	every time.Duration
}

// restartFrames is the WAL length (128 MiB of 8 KiB pages) above which a
// checkpoint round finishes under the write lock.
var restartFrames = 16384 // a variable so that a test can lower it

func startCheckpointer(path string, wmu *sync.Mutex) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, "synchronous(FULL)"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	c := &checkpointer{db: db, wmu: wmu, kick: make(chan struct{}, 1), stop: make(chan struct{}), every: 250 * time.Millisecond}
	c.wg.Add(1)
	go c.loop()
	return c, nil
}

// committed tells the checkpointer that a transaction committed. It never
// blocks.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer c.wg.Done()
	var last time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		// At most one checkpoint per interval: under a stream of small
		// commits each checkpoint then carries many of them.
		if wait := c.every - time.Since(last); wait > 0 {
			select {
			case <-c.stop:
				return
			case <-time.After(wait):
			}
		}
		// Errors are not fatal here: SQLITE_BUSY means someone else is
		// checkpointing, and the next commit will kick again.
		var busy, frames, copied int
		err := c.db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		if err == nil && frames > restartFrames {
			c.wmu.Lock()
			c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			c.wmu.Unlock()
		}
		last = time.Now()
	}
}

// close stops the loop and runs a last checkpoint that empties the WAL when
// no other process is reading it.
func (c *checkpointer) close() error {
	close(c.stop)
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return c.db.Close()
}
