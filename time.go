package iu

import (
	"fmt"
	"time"
)

// TimeFormat is how iu writes its own times, everywhere people or programs
// read them: UTC, always three digits of milliseconds
// (2026-11-27T10:32:54.090Z), as the stores keep them. encoding/json's form
// of a time.Time drops trailing zeros (10:32:54.09Z), so the same instant
// read in two places would not look the same.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Time is a time iu recorded (when a row was written): a time.Time that
// prints and encodes in TimeFormat. The zero Time is "no time" (a token
// never revoked).
type Time struct{ time.Time }

// TimeOf returns t as a Time in UTC, truncated to milliseconds.
func TimeOf(t time.Time) Time {
	if t.IsZero() {
		return Time{}
	}
	return Time{t.UTC().Truncate(time.Millisecond)}
}

// String returns the time in TimeFormat, "" for the zero time.
func (t Time) String() string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}

// MarshalJSON writes the time as a JSON string in TimeFormat.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`null`), nil
	}
	return fmt.Appendf(nil, `"%s"`, t.String()), nil
}

// UnmarshalJSON reads any RFC 3339 time, or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = TimeOf(v)
	return nil
}

// Scan reads a time from a database column (a timestamp, or text in
// TimeFormat or RFC 3339): the stores scan into it (sql.Scanner).
func (t *Time) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = Time{}
	case time.Time:
		*t = TimeOf(v)
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	default:
		return fmt.Errorf("iu.Time: cannot scan %T", src)
	}
	return nil
}

func (t *Time) parse(s string) error {
	v, err := time.Parse(TimeFormat, s)
	if err != nil {
		// Rows written by hand may use other RFC 3339 forms.
		if v2, err2 := time.Parse(time.RFC3339Nano, s); err2 == nil {
			v, err = v2, nil
		}
	}
	if err != nil {
		return fmt.Errorf("stored time %q: %w", s, err)
	}
	*t = TimeOf(v)
	return nil
}
