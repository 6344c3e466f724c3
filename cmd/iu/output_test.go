package main

import "testing"

// TestCellDisarmsTerminalEscapes: a dead letter holds what iu refused, an
// event id with an escape sequence among it; a table prints it escaped,
// never as bytes the terminal obeys.
func TestCellDisarmsTerminalEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"esc\x1b[31mRED":          `esc\x1b[31mRED`,
		"\x1b]0;pwned\a":          `\x1b]0;pwned\a`,
		"tab\there":               `tab\there`,
		"bad\xffutf8":             `bad\xffutf8`,
		"plain-id 42 é":           "plain-id 42 é",
		`quote " and \ backslash`: `quote " and \ backslash`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}
