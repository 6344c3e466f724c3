package iu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Event is the part of a CloudEvent that iu reads. ID and Type are required;
// (Source, ID) identifies the event, as in the CloudEvents spec.
type Event struct {
	ID      string          `json:"id"`
	Source  string          `json:"source"`
	Type    string          `json:"type"`
	Subject string          `json:"subject,omitempty"`
	Time    time.Time       `json:"time,omitzero"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Limits on event attributes and data.
const (
	MaxAttrBytes = 1024
	MaxDataBytes = 1 << 20
)

// Validate checks the event and returns an ErrInvalidEvent *Error naming the
// attribute at fault.
func (e *Event) Validate() error {
	for _, a := range []struct{ name, v string }{{"id", e.ID}, {"type", e.Type}, {"source", e.Source}} {
		if a.v == "" {
			return Errorf(ErrInvalidEvent, "invalid event: %s is required", a.name)
		}
	}
	for _, a := range []struct{ name, v string }{{"id", e.ID}, {"type", e.Type}, {"source", e.Source}, {"subject", e.Subject}} {
		if err := checkAttr(a.name, a.v); err != nil {
			return err
		}
	}
	if len(e.Data) > MaxDataBytes {
		return Errorf(ErrInvalidEvent, "invalid event %q: data is larger than %d bytes", e.ID, MaxDataBytes)
	}
	if !utf8.Valid(e.Data) {
		return Errorf(ErrInvalidEvent, "invalid event %q: data is not valid UTF-8", e.ID)
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return Errorf(ErrInvalidEvent, "invalid event %q: data is not valid JSON", e.ID)
	}
	if why := badEscape(e.Data); why != "" {
		return Errorf(ErrInvalidEvent, "invalid event %q: data %s", e.ID, why)
	}
	return nil
}

// badEscape finds a \u escape in valid JSON that names no character a
// store can keep: \u0000 (PostgreSQL's jsonb refuses it) or half of a
// UTF-16 surrogate pair (it is no character at all; PostgreSQL refuses it,
// Go would read it as U+FFFD). Outside strings JSON has no backslash.
func badEscape(data []byte) string {
	hex4 := func(i int) rune {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return -1
		}
		v, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 32)
		if err != nil {
			return -1
		}
		return rune(v)
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r := hex4(i)
		switch {
		case r == 0:
			return `contains \u0000, which a store cannot keep in text`
		case utf16.IsSurrogate(r):
			if lo := hex4(i + 6); r < 0xdc00 && lo >= 0xdc00 && lo <= 0xdfff {
				i += 11
				continue
			}
			return fmt.Sprintf(`contains \u%s, half of a UTF-16 surrogate pair without its other half`, strings.ToLower(string(data[i+2:i+6])))
		}
		i++ // the escaped character: \\ must not start another escape
	}
	return ""
}

func checkAttr(name, v string) error {
	if len(v) > MaxAttrBytes {
		return Errorf(ErrInvalidEvent, "invalid event: %s is longer than %d bytes", name, MaxAttrBytes)
	}
	if !utf8.ValidString(v) {
		return Errorf(ErrInvalidEvent, "invalid event: %s is not valid UTF-8", name)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return Errorf(ErrInvalidEvent, "invalid event: %s contains a control character", name)
	}
	return nil
}

// IdempotencyKey returns the hex SHA-256 of template key, source and id,
// NUL-separated: one event instantiates one template at most once.
func IdempotencyKey(templateKey, source, id string) string {
	h := sha256.New()
	h.Write([]byte(templateKey))
	h.Write([]byte{0})
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var d Digest
	h.Sum(d[:0])
	return hex.EncodeToString(d[:])
}

// PayloadDigest identifies what an event says, so that a redelivery can be
// told from a different event reusing an id: it covers type, subject and data
// in canonical JSON (sorted keys, no insignificant space), but not time, which
// producers often restamp on redelivery.
func (e *Event) PayloadDigest() Digest {
	h := sha256.New()
	h.Write([]byte(payloadTag))
	writeLP(h, e.Type)
	writeLP(h, e.Subject)
	writeLP(h, string(CanonicalJSON(e.Data)))
	return sum(h)
}

// AutoInstanceKey returns the key of the instance an event makes:
// "tpl-inst:auto:<prefix>-<first 12 hex of the idempotency key>".
func AutoInstanceKey(prefix, idempotencyKey string) string {
	return "tpl-inst:auto:" + prefix + "-" + idempotencyKey[:12]
}

// InstancePrefix is the instance key prefix of a request: the prefix it
// names, else its actor.
func InstancePrefix(prefix, actor string) string {
	if prefix == "" {
		return actor
	}
	return prefix
}

// AutoInstancePrefix is the key prefix shared by the auto instances of one
// instance prefix; the surfaces of a bulk run count by it.
func AutoInstancePrefix(prefix string) string { return "tpl-inst:auto:" + prefix + "-" }

// checkName validates an actor or instance prefix.
func checkName(what, v string, max int) error {
	if v == "" {
		return Errorf(ErrInvalidInput, "%s is required", what)
	}
	if len(v) > max {
		return Errorf(ErrInvalidInput, "%s is longer than %d bytes", what, max)
	}
	if !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return Errorf(ErrInvalidInput, "%s %q must be printable and contain no spaces", what, v)
	}
	return nil
}

// CheckActor validates an actor name.
func CheckActor(actor string) error { return checkName("actor", actor, 256) }

// CheckPrefix validates an instance prefix.
func CheckPrefix(prefix string) error { return checkName("instance prefix", prefix, 128) }
