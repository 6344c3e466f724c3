package iu

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// The payload digest of every event hashes its data in canonical form, and
// stored digests must not change: a redelivery would be taken for a
// conflicting event. So the canonical form is, byte for byte, what
// encoding/json gives for the data decoded with UseNumber and encoded
// again (canonicalJSONStd). Decoding to maps and encoding them back by
// reflection was a twentieth of `iu serve`'s CPU. canonicalJSON writes the
// same bytes in one pass over the input for the JSON it is sure of, and
// leaves everything else (invalid JSON, trailing data, deep nesting,
// invalid UTF-8, escaped surrogates) to encoding/json. TestCanonicalJSON*
// hold it to encoding/json's output.

// CanonicalJSON returns data with object keys sorted and insignificant space
// removed; numbers keep their text. Invalid JSON is returned unchanged
// (Validate rejects it first).
func CanonicalJSON(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	if out, ok := canonicalJSON(data); ok {
		return out
	}
	return canonicalJSONStd(data)
}

// canonicalJSONStd is CanonicalJSON by encoding/json: data decoded with
// UseNumber (the first value; what follows it is ignored) and encoded again.
func canonicalJSONStd(data []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return data
	}
	out, err := json.Marshal(v)
	if err != nil {
		return data
	}
	return out
}

// maxCanonicalDepth is the deepest nesting canonicalJSON handles itself.
const maxCanonicalDepth = 64

// canonicalJSON returns the canonical form of data and true, or false if
// data is outside what it handles.
func canonicalJSON(data []byte) ([]byte, bool) {
	p := canonParser{src: data}
	p.space()
	out, ok := p.value(make([]byte, 0, len(data)), 0)
	if !ok {
		return nil, false
	}
	p.space()
	return out, p.pos == len(p.src)
}

type canonParser struct {
	src  []byte
	pos  int
	str  []byte // a decoded string
	keys []byte // the decoded keys of the objects being read
	// scratch[d] holds the member values of the object being read at
	// depth d, until they are sorted.
	scratch [][]byte
}

// member is an object member: where its decoded key is in keys and its
// canonical value in the scratch of its depth.
type member struct {
	key        [2]int
	start, end int
}

func (p *canonParser) space() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// next is the byte at the position, or 0 at the end.
func (p *canonParser) next() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

// value appends the canonical form of the value at the position to dst.
func (p *canonParser) value(dst []byte, depth int) ([]byte, bool) {
	switch c := p.next(); {
	case c == '{':
		return p.object(dst, depth+1)
	case c == '[':
		return p.array(dst, depth+1)
	case c == '"':
		if !p.string() {
			return nil, false
		}
		return appendJSONString(dst, p.str, true), true
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	case c == '-' || isDigit(c):
		return p.number(dst)
	}
	return nil, false
}

func (p *canonParser) literal(dst []byte, lit string) ([]byte, bool) {
	if len(p.src)-p.pos < len(lit) || string(p.src[p.pos:p.pos+len(lit)]) != lit {
		return nil, false
	}
	p.pos += len(lit)
	return append(dst, lit...), true
}

// number copies a number as written: encoding/json keeps a json.Number's
// text.
func (p *canonParser) number(dst []byte) ([]byte, bool) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
			p.pos++
			n++
		}
		return n
	}
	if p.next() == '-' {
		p.pos++
	}
	switch c := p.next(); {
	case c == '0':
		p.pos++
	case c != '0' && isDigit(c):
		digits()
	default:
		return nil, false
	}
	if p.next() == '.' {
		p.pos++
		if digits() == 0 {
			return nil, false
		}
	}
	if c := p.next(); c == 'e' || c == 'E' {
		p.pos++
		if c := p.next(); c == '+' || c == '-' {
			p.pos++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return append(dst, p.src[start:p.pos]...), true
}

func (p *canonParser) array(dst []byte, depth int) ([]byte, bool) {
	if depth > maxCanonicalDepth {
		return nil, false
	}
	p.pos++ // [
	dst = append(dst, '[')
	p.space()
	if p.next() == ']' {
		p.pos++
		return append(dst, ']'), true
	}
	for {
		p.space()
		var ok bool
		if dst, ok = p.value(dst, depth); !ok {
			return nil, false
		}
		p.space()
		switch p.next() {
		case ',':
			p.pos++
			dst = append(dst, ',')
		case ']':
			p.pos++
			return append(dst, ']'), true
		default:
			return nil, false
		}
	}
}

// object writes the members sorted by key, as encoding/json writes a map;
// of members with the same key the last one stays, as decoding into a map
// keeps it.
func (p *canonParser) object(dst []byte, depth int) ([]byte, bool) {
	if depth > maxCanonicalDepth {
		return nil, false
	}
	p.pos++ // {
	p.space()
	if p.next() == '}' {
		p.pos++
		return append(dst, '{', '}'), true
	}
	for len(p.scratch) <= depth {
		p.scratch = append(p.scratch, nil)
	}
	scratch := p.scratch[depth][:0]
	keysAt := len(p.keys)
	ms := make([]member, 0, 16)
	for {
		p.space()
		if p.next() != '"' || !p.string() {
			return nil, false
		}
		key := [2]int{len(p.keys), len(p.keys) + len(p.str)}
		p.keys = append(p.keys, p.str...)
		p.space()
		if p.next() != ':' {
			return nil, false
		}
		p.pos++
		p.space()
		start := len(scratch)
		var ok bool
		if scratch, ok = p.value(scratch, depth); !ok {
			return nil, false
		}
		ms = append(ms, member{key: key, start: start, end: len(scratch)})
		p.space()
		if p.next() == ',' {
			p.pos++
			continue
		}
		if p.next() != '}' {
			return nil, false
		}
		p.pos++
		break
	}
	p.scratch[depth] = scratch
	key := func(m member) []byte { return p.keys[m.key[0]:m.key[1]] }
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(key(a), key(b)) })
	dst = append(dst, '{')
	first := true
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(key(ms[i+1]), key(m)) {
			continue // a later member has this key
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, key(m), true)
		dst = append(dst, ':')
		dst = append(dst, scratch[m.start:m.end]...)
	}
	p.keys = p.keys[:keysAt]
	return append(dst, '}'), true
}

// string decodes the string at the position into p.str. It declines
// invalid UTF-8, raw control characters and escaped surrogates.
func (p *canonParser) string() bool {
	p.pos++ // "
	p.str = p.str[:0]
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.pos+1 >= len(p.src) {
				return false
			}
			e := p.src[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				p.str = append(p.str, e)
			case 'b':
				p.str = append(p.str, '\b')
			case 'f':
				p.str = append(p.str, '\f')
			case 'n':
				p.str = append(p.str, '\n')
			case 'r':
				p.str = append(p.str, '\r')
			case 't':
				p.str = append(p.str, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok || utf8.RuneLen(r) < 0 { // a surrogate
					return false
				}
				p.str = utf8.AppendRune(p.str, r)
			default:
				return false
			}
		case c < utf8.RuneSelf:
			p.str = append(p.str, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.src[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return false
			}
			p.str = append(p.str, p.src[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return false
}

// hex4 reads the four hex digits of a \u escape.
func (p *canonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.src) {
		return 0, false
	}
	var r rune
	for _, c := range p.src[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// AppendJSONString appends s quoted as an encoding/json Encoder writes a
// string with SetEscapeHTML(false): \" \\ \b \f \n \r \t, \u00XX for the
// other control characters, \u2028 and \u2029, and \ufffd for each byte
// that is not UTF-8. iu's answers are read by programs and people, never
// pasted into HTML, so < > & are written as they are.
func AppendJSONString[S string | []byte](dst []byte, s S) []byte {
	return appendJSONString(dst, s, false)
}

// appendJSONString appends s quoted; with html it also escapes < > & as
// \u003c \u003e \u0026, as json.Marshal does. Canonical JSON keeps that
// escaping: it is hashed into payload digests, which must never change.
func appendJSONString[S string | []byte](dst []byte, s S, html bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!html || c != '<' && c != '>' && c != '&') {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + size
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
