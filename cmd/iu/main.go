// Command iu is the command line of iu, the event-driven template
// instantiation engine. See the README for a walkthrough.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// iu allocates in short bursts around a database engine whose page cache
	// lives outside the Go heap, so the live heap stays small; a less eager
	// collector saves a measurable share of a bulk run's CPU. GOGC, when
	// set, still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
