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
type checkpointer struct {
	db    *sql.DB
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
	every time.Duration
}

func startCheckpointer(path string) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, "synchronous(FULL)"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), stop: make(chan struct{}), every: 250 * time.Millisecond}
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
		c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
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
