package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/postgres"
)

// A server started on a fresh schema must not keep plans made while its
// tables were empty. The lookup of redelivered events once ran from a
// generic plan cached after a few batches on a nearly empty log: a
// sequential scan, kept by the connection for as long as autovacuum left
// the table unanalyzed, which read the whole log for every batch with a
// redelivery. One connection runs batches with redeliveries while the log
// is small, the log grows, and more such batches run; the server's own
// statistics must show no scan of the log's rows.
func TestRedeliveryLookupNeverScansTheLog(t *testing.T) {
	dsn := freshSchema(t)
	ctx := context.Background()
	s, e, keys := readyStore(t, dsn, postgres.Options{MaxConns: 1})
	next := 0
	// batch emits n new events and, if replay, three redeliveries of
	// earlier ones, as group commit's batches have.
	batch := func(n int, replay bool) {
		t.Helper()
		var reqs []iu.EmitRequest
		for range n {
			reqs = append(reqs, iu.EmitRequest{TemplateKey: keys[0], Actor: "tester",
				Event: iu.Event{ID: fmt.Sprint("plan-", next), Source: "test", Type: "t"}})
			next++
		}
		if replay {
			for k := range 3 {
				reqs = append(reqs, iu.EmitRequest{TemplateKey: keys[0], Actor: "tester",
					Event: iu.Event{ID: fmt.Sprint("plan-", k*7%max(next-n, 1)), Source: "test", Type: "t"}})
			}
		}
		outs, err := e.EmitBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range outs {
			if o.Err != nil || o.Result.Status != iu.StatusOK || o.Result.Replayed != (replay && i >= n) {
				t.Fatalf("request %d: %+v %v", i, o.Result, o.Err)
			}
		}
	}
	batch(1, false)
	for range 10 { // more than the five custom plans after which a generic one may stick
		batch(30, true)
	}
	small := int64(next) // the log's rows when the first lookups ran, at most
	for range 12 {
		batch(250, false)
	}
	for range 10 {
		batch(3, true)
	}
	want := int64(next)
	s.Close() // the server process flushes its statistics as it exits

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var inserted, scanned int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := conn.QueryRow(ctx, `SELECT n_tup_ins, seq_tup_read FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'iu_auto_instantiate_event_log'`, schema).Scan(&inserted, &scanned)
		if err != nil {
			t.Fatal(err)
		}
		if inserted >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
		conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
	}
	if inserted < want {
		t.Fatalf("the server's statistics show %d rows inserted into the log, want %d: they were never flushed", inserted, want)
	}
	// Scans by the first lookups, while the log held a few hundred rows, are
	// a planner's fair choice. The last ten lookups, on a log of over 3,000
	// rows, would read over 30,000 more if they scanned it.
	if scanned > 10*small {
		t.Errorf("sequential scans read %d rows of the event log (%d rows): a lookup is not using the index", scanned, inserted)
	}
}
