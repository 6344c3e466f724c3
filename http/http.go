// Package http is iu's HTTP adapter: Server serves CloudEvents intake and
// the whole API over an Engine; Client implements iu.Service against a
// running server, so that the command line talks to either with one output
// path.
//
// Errors are answered as {"error": {"code": ..., "message": ...}}, the
// shape of the command line's --json errors, with the status of the code
// (statusOf: one table). Messages never carry SQL or a stack trace:
// internal errors are logged and answered with the request id only.
package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

// Codes of refusals that happen before the domain is asked; the domain's
// own codes are iu.Code values.
const (
	CodeTooLarge         iu.Code = "too_large"
	CodeUnsupportedMedia         = intake.CodeUnsupportedMedia
	CodeMethodNotAllowed iu.Code = "method_not_allowed"
)

// statuses is the one table from error codes to HTTP statuses.
var statuses = map[iu.Code]int{
	iu.CodeInvalid:       nethttp.StatusBadRequest,
	iu.CodeNotFound:      nethttp.StatusNotFound,
	iu.CodeConflict:      nethttp.StatusConflict,
	iu.CodeGateClosed:    nethttp.StatusServiceUnavailable,
	iu.CodeUnavailable:   nethttp.StatusServiceUnavailable,
	iu.CodeInternal:      nethttp.StatusInternalServerError,
	iu.CodeUnauthorized:  nethttp.StatusUnauthorized,
	iu.CodeForbidden:     nethttp.StatusForbidden,
	iu.CodeUnmatched:     nethttp.StatusUnprocessableEntity,
	CodeTooLarge:         nethttp.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: nethttp.StatusUnsupportedMediaType,
	CodeMethodNotAllowed: nethttp.StatusMethodNotAllowed,
}

// statusOf returns the HTTP status for an error code.
func statusOf(code iu.Code) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return nethttp.StatusInternalServerError
}

// sentinels maps codes back to sentinels on the client side, so that
// errors.Is works on errors that crossed the wire.
var sentinels = map[iu.Code]error{
	iu.CodeInvalid:       iu.ErrInvalidInput,
	iu.CodeNotFound:      iu.ErrNotFound,
	iu.CodeConflict:      iu.ErrIdempotencyConflict,
	iu.CodeGateClosed:    iu.ErrGateClosed,
	iu.CodeUnavailable:   iu.ErrUnavailable,
	iu.CodeUnauthorized:  iu.ErrUnauthorized,
	iu.CodeForbidden:     iu.ErrForbidden,
	iu.CodeUnmatched:     iu.ErrUnmatched,
	CodeTooLarge:         iu.ErrInvalidInput,
	CodeUnsupportedMedia: iu.ErrInvalidInput,
}

// errorBody is the wire shape of an error: a code (which sets the status),
// the name of the sentinel it is an instance of (so that a client's
// errors.Is holds as the server's does), and a message for people.
type errorBody struct {
	Code    iu.Code `json:"code"`
	Reason  string  `json:"reason,omitempty"`
	Message string  `json:"message"`
}

type errorDoc struct {
	Error errorBody `json:"error"`
}

// toError turns a wire error back into an *iu.Error, of the sentinel its
// reason names (else the code's).
func (e errorBody) toError() error {
	s := iu.ReasonSentinel(e.Reason)
	if s == nil {
		s = sentinels[e.Code]
	}
	return &iu.Error{Code: e.Code, Message: e.Message, Err: s}
}

// httpError is a refusal of the HTTP layer: a code and a message.
func httpError(code iu.Code, format string, args ...any) error {
	return &iu.Error{Code: code, Message: fmt.Sprintf(format, args...), Err: sentinels[code]}
}

// publicError returns what may be said about err: its code and message,
// except for internal errors and the store's failures, whose text may hold
// SQL, file paths, hosts, database names or a driver's words, which are
// nobody's business but the operator's: those are said in words of their
// own and the request id, and the server's log has the rest.
func publicError(err error, requestID string) errorBody {
	code, reason := iu.ErrorCode(err), iu.ErrorReason(err)
	switch code {
	case iu.CodeInternal:
		return errorBody{Code: code, Message: "internal error (request " + requestID + "); the server's log has the details"}
	case iu.CodeUnavailable:
		return errorBody{Code: code, Reason: reason, Message: unavailableMessage(err) + " (request " + requestID + ")"}
	}
	var mbe *nethttp.MaxBytesError
	if errors.As(err, &mbe) {
		return errorBody{Code: CodeTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}
	}
	return errorBody{Code: code, Reason: reason, Message: err.Error()}
}

// unavailableMessage words a failure to reach or write the store.
func unavailableMessage(err error) string {
	switch {
	case errors.Is(err, iu.ErrShuttingDown):
		return "the server is shutting down and takes no more events: send them again to another server or later"
	case errors.Is(err, iu.ErrStoreFull):
		return "the store is full: nothing was written; send it again once an operator has made room"
	case errors.Is(err, iu.ErrStoreBusy):
		return "the store is busy: nothing was written; send it again later"
	case errors.Is(err, iu.ErrUnavailable):
		return "the database is unavailable: nothing was written; send it again later"
	case errors.Is(err, iu.ErrRetryable):
		return "the store could not complete the transaction: nothing was written; send it again"
	}
	return "the database is unavailable: nothing was written; send it again later"
}

// writeJSON answers v with status. < > & are written as they are: the
// answer is JSON for programs (nosniff keeps browsers from taking it for
// anything else), and "\u003c" only puzzles the people who read it.
func writeJSON(w nethttp.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = nethttp.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"error":{"code":"internal","message":"cannot encode the answer"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// decodeJSON reads a JSON request body strictly into v: unknown fields,
// a field given twice, trailing data and a non-JSON content type are
// refused. The body is already bounded by a MaxBytesReader.
func decodeJSON(r *nethttp.Request, v any) error {
	if mt := intake.MediaType(r.Header.Get("Content-Type")); mt != "" && !intake.IsJSONType(mt) {
		return httpError(CodeUnsupportedMedia, "the body must be JSON (Content-Type: application/json), not %s", mt)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	// Go's decoder keeps the last of a field given twice and matches names
	// without regard to case: {"apply": false, "Apply": true} would apply
	// where a proxy that read the first saw a dry run.
	if name, ok := repeatedField(body); ok {
		return httpError(iu.CodeInvalid, "invalid JSON body: %q is given twice (field names match without regard to case)", clip(name))
	}
	// Go's decoder also takes a look-alike ("releaſe", a long s) for a
	// field; every field of the API is named in ASCII.
	if name, ok := nonASCIIField(body); ok {
		return httpError(iu.CodeInvalid, "invalid JSON body: unknown field %q", clip(name))
	}
	return decodeStrict(bytes.NewReader(body), v)
}

// decodeStrict decodes exactly one JSON value from rd into v.
func decodeStrict(rd io.Reader, v any) error {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *nethttp.MaxBytesError
		if errors.As(err, &mbe) {
			return bodyError(err)
		}
		return httpError(iu.CodeInvalid, "invalid JSON body: more than one JSON value")
	}
	return nil
}

// repeatedField returns a name that the top-level object of a JSON document
// has twice, without regard to case. What the fields hold (an event's data)
// is not looked into. A document that is not valid JSON has none: the
// decoder words that.
func repeatedField(doc []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	names := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		name, _ := tok.(string)
		k := fold(name)
		if names[k] {
			return name, true
		}
		names[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// nonASCIIField returns a name of the top-level object of a JSON document
// that is not all ASCII.
func nonASCIIField(doc []byte) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return "", false
	}
	for k := range m {
		for i := 0; i < len(k); i++ {
			if k[i] >= utf8.RuneSelf {
				return k, true
			}
		}
	}
	return "", false
}

// fold returns one spelling for every name Go's decoder takes as the same
// field: each letter as the least of its Unicode case folding orbit ("ſ",
// the long s, is an "s" to it, which strings.ToLower does not make).
func fold(name string) string {
	var b strings.Builder
	for _, r := range name {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// bodyError words a failure to read or decode a body.
func bodyError(err error) error {
	var mbe *nethttp.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ie *iu.Error
	switch {
	case errors.As(err, &mbe):
		return httpError(CodeTooLarge, "the body is larger than %d bytes", mbe.Limit)
	case errors.As(err, &ie):
		return err
	case errors.As(err, &se):
		return httpError(iu.CodeInvalid, "invalid JSON body at byte %d: %v", se.Offset, se)
	case errors.As(err, &te) && te.Field != "":
		return httpError(iu.CodeInvalid, "invalid JSON body: %s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.As(err, &te):
		return httpError(iu.CodeInvalid, "invalid JSON body: want %s, got JSON %s", te.Type, te.Value)
	case errors.Is(err, io.EOF):
		return httpError(iu.CodeInvalid, "empty body: want a JSON value")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return httpError(iu.CodeInvalid, "invalid JSON body: unexpected end")
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field") {
		return httpError(iu.CodeInvalid, "invalid JSON body: %s", strings.TrimPrefix(msg, "json: "))
	}
	return httpError(iu.CodeInvalid, "invalid body: %v", err)
}

// readAll reads a bounded body.
func readAll(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, bodyError(err)
	}
	return buf.Bytes(), nil
}
