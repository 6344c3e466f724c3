package iu

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
)

// Every list pages with a keyset cursor: a page is read from where the last
// one ended, through an index, so the thousandth page costs what the first
// does and no answer holds more than MaxPageSize rows. The cursor is opaque
// to clients; it names the last row of the page before.

// Page sizes of every list.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Page is one page of a list, in the list's order. Next, when not empty, is
// the cursor of the page after this one.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// PageRequest asks for the page that starts after the cursor After (the
// first page when empty), of at most Limit items (DefaultPageSize when 0;
// at most MaxPageSize).
type PageRequest struct {
	After string
	Limit int
}

// limit returns the page size asked for, checked.
func (r PageRequest) limit() (int, error) {
	switch {
	case r.Limit < 0:
		return 0, Errorf(ErrInvalidInput, "limit %d: want 1 to %d", r.Limit, MaxPageSize)
	case r.Limit == 0:
		return DefaultPageSize, nil
	case r.Limit > MaxPageSize:
		return 0, Errorf(ErrInvalidInput, "limit %d is larger than a page may be (%d): page through with the next cursor", r.Limit, MaxPageSize)
	}
	return r.Limit, nil
}

// A cursor is a letter for the kind of list and the position of the last
// row: a sequence number ("s" + base 36) or a key ("k" + base64url).

func seqCursor(seq int64) string { return "s" + strconv.FormatInt(seq, 36) }

func keyCursor(key string) string { return "k" + base64.RawURLEncoding.EncodeToString([]byte(key)) }

func badCursor(c string) error {
	return Errorf(ErrInvalidInput, "after=%q is not a cursor of this list: pass the next value of the page before", c)
}

// parseSeqCursor reads a sequence cursor; "" is the start (0).
func parseSeqCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	s, ok := strings.CutPrefix(c, "s")
	if !ok {
		return 0, badCursor(c)
	}
	n, err := strconv.ParseInt(s, 36, 64)
	if err != nil || n <= 0 {
		return 0, badCursor(c)
	}
	return n, nil
}

// parseBeforeCursor reads the cursor of a list read newest first: the
// sequence number the next page is older than, math.MaxInt64 at the start.
func parseBeforeCursor(c string) (int64, error) {
	if c == "" {
		return math.MaxInt64, nil
	}
	return parseSeqCursor(c)
}

// parseKeyCursor reads a key cursor; "" is the start.
func parseKeyCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	s, ok := strings.CutPrefix(c, "k")
	if !ok {
		return "", badCursor(c)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return "", badCursor(c)
	}
	return string(b), nil
}

// pageOf makes a page of rows read with a limit of limit+1: the extra row
// says that there is a next page, which starts after the last row kept.
func pageOf[T any](rows []T, limit int, cursor func(*T) string) Page[T] {
	if rows == nil {
		rows = []T{}
	}
	if len(rows) <= limit {
		return Page[T]{Items: rows}
	}
	rows = rows[:limit]
	return Page[T]{Items: rows, Next: cursor(&rows[limit-1])}
}
