package main

import (
	"runtime/debug"
	"testing"
)

// serve and bench raise the collector's target unless GOGC is set.
func TestTuneGCLeavesAnOperatorsGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100)) // restore whatever the test binary had

	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	tuneGC()
	if got := debug.SetGCPercent(100); got != serviceGCPercent {
		t.Fatalf("GOGC unset: the collector's target is %d, want %d", got, serviceGCPercent)
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50) // as the runtime read it at start
	tuneGC()
	if got := debug.SetGCPercent(100); got != 50 {
		t.Fatalf("GOGC=50: the collector's target is %d, want 50 kept", got)
	}
}
