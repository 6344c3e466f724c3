package iu

import (
	"errors"
	"fmt"
)

// Code classifies an error for the adapters: the HTTP layer maps codes to
// status codes and the command line maps them to exit codes, each in one
// table of its own.
type Code string

const (
	CodeInvalid     Code = "invalid"     // bad input: nothing was written
	CodeNotFound    Code = "not_found"   // the named thing does not exist
	CodeConflict    Code = "conflict"    // the write contradicts what is stored
	CodeGateClosed  Code = "gate_closed" // a kill switch is off
	CodeUnavailable Code = "unavailable" // the store is busy or unreachable; retry later
	CodeInternal    Code = "internal"    // a bug or an unexpected failure

	CodeUnauthorized Code = "unauthorized" // no credentials, or unknown or revoked ones
	CodeForbidden    Code = "forbidden"    // the credentials lack the scope the operation needs
	CodeUnmatched    Code = "unmatched"    // an event that no trigger matches and that names no template
)

// Sentinel errors for the cases callers handle. Match them with errors.Is;
// the *Error that wraps them carries the message for people.
var (
	ErrInvalidTemplate     = errors.New("invalid template")
	ErrInvalidEvent        = errors.New("invalid event")
	ErrInvalidInput        = errors.New("invalid input")
	ErrUnknownTemplate     = errors.New("unknown template")
	ErrNotFound            = errors.New("not found")
	ErrTemplateExists      = errors.New("template exists with other content")
	ErrInstanceExists      = errors.New("instance exists")
	ErrIdempotencyConflict = errors.New("idempotency conflict")
	ErrGateClosed          = errors.New("gate closed")
	ErrStoreBusy           = errors.New("store busy")
	ErrShuttingDown        = fmt.Errorf("shutting down: %w", ErrUnavailable)
	ErrUnavailable         = errors.New("store unavailable")
	ErrNotStore            = errors.New("not an iu store")
	ErrNoStore             = errors.New("no iu store")
	ErrStoreFull           = fmt.Errorf("store full: %w", ErrUnavailable)
	ErrSchemaTooNew        = errors.New("store schema is newer than this iu")
	ErrTriggerExists       = errors.New("trigger exists")
	// ErrTriggerRouteTaken is a trigger whose type, source and template
	// another trigger has already (its name is free).
	ErrTriggerRouteTaken = fmt.Errorf("trigger route taken: %w", ErrTriggerExists)
	ErrTokenExists       = errors.New("token exists")
	ErrUnauthorized      = errors.New("unauthorized")
	ErrForbidden         = errors.New("forbidden")
	ErrUnmatched         = errors.New("event matches no trigger")

	// ErrRetryable marks a transient failure of a transaction (a
	// serialization failure, a deadlock, a busy database) that is safe to run
	// again from the start. Backends wrap their native errors with it; the
	// engine retries with bounded, jittered backoff.
	ErrRetryable = errors.New("transient transaction failure")
)

// NoStore is ErrNoStore for the place named ("at PATH", "in schema S of
// DB"), where a store must already exist and none does.
func NoStore(where string) error {
	return Errorf(ErrNoStore, "no iu store %s", where)
}

// MissingGate is a gate row missing from a store, whose gates its first
// migration made: the store was changed outside iu.
func MissingGate(name string) error {
	return fmt.Errorf("gate %s is missing from iu_gate (a row iu's schema made; was the store changed outside iu?)", name)
}

// ErrWriteInView is a write attempted in a read-only transaction: a bug
// in the caller.
var ErrWriteInView = errors.New("write in a read-only transaction")

var sentinelCodes = map[error]Code{
	ErrInvalidTemplate:     CodeInvalid,
	ErrInvalidEvent:        CodeInvalid,
	ErrInvalidInput:        CodeInvalid,
	ErrUnknownTemplate:     CodeNotFound,
	ErrNotFound:            CodeNotFound,
	ErrTemplateExists:      CodeConflict,
	ErrInstanceExists:      CodeConflict,
	ErrIdempotencyConflict: CodeConflict,
	ErrGateClosed:          CodeGateClosed,
	ErrStoreBusy:           CodeUnavailable,
	ErrShuttingDown:        CodeUnavailable,
	ErrUnavailable:         CodeUnavailable,
	ErrRetryable:           CodeUnavailable,
	ErrNotStore:            CodeInvalid,
	ErrNoStore:             CodeNotFound,
	ErrStoreFull:           CodeUnavailable,
	ErrSchemaTooNew:        CodeInvalid,
	ErrTriggerExists:       CodeConflict,
	ErrTriggerRouteTaken:   CodeConflict,
	ErrTokenExists:         CodeConflict,
	ErrUnauthorized:        CodeUnauthorized,
	ErrForbidden:           CodeForbidden,
	ErrUnmatched:           CodeUnmatched,
}

// sentinelReasons names each sentinel for programs, on the wire: an
// answer's "reason", from which a client gets the sentinel back, so that
// errors.Is holds across the wire as it does in process.
var sentinelReasons = map[error]string{
	ErrInvalidTemplate:     "invalid_template",
	ErrInvalidEvent:        "invalid_event",
	ErrInvalidInput:        "invalid_input",
	ErrUnknownTemplate:     "unknown_template",
	ErrNotFound:            "not_found",
	ErrTemplateExists:      "template_exists",
	ErrInstanceExists:      "instance_exists",
	ErrIdempotencyConflict: "idempotency_conflict",
	ErrGateClosed:          "gate_closed",
	ErrStoreBusy:           "store_busy",
	ErrShuttingDown:        "shutting_down",
	ErrStoreFull:           "store_full",
	ErrUnavailable:         "unavailable",
	ErrRetryable:           "retryable",
	ErrNotStore:            "not_a_store",
	ErrNoStore:             "no_store",
	ErrSchemaTooNew:        "schema_too_new",
	ErrTriggerExists:       "trigger_exists",
	ErrTriggerRouteTaken:   "trigger_route_taken",
	ErrTokenExists:         "token_exists",
	ErrUnauthorized:        "unauthorized",
	ErrForbidden:           "forbidden",
	ErrUnmatched:           "unmatched",
}

// ErrorReason returns the name of the sentinel err is an instance of (the
// outermost *Error's, else the first that errors.Is finds), or "".
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if r, ok := sentinelReasons[e.Err]; ok {
			return r
		}
	}
	// The more specific sentinels first: ErrShuttingDown and ErrStoreFull
	// are ErrUnavailable too.
	for _, s := range []error{ErrShuttingDown, ErrStoreFull} {
		if errors.Is(err, s) {
			return sentinelReasons[s]
		}
	}
	for s, r := range sentinelReasons {
		if errors.Is(err, s) {
			return r
		}
	}
	return ""
}

// ReasonSentinel returns the sentinel a reason names, or nil.
func ReasonSentinel(reason string) error {
	for s, r := range sentinelReasons {
		if r == reason {
			return s
		}
	}
	return nil
}

// Error is iu's error for people and programs: a Code for programs, a
// Message for people, and the sentinel it is an instance of for errors.Is.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the kind of sentinel with a formatted message.
// The message should name the thing at fault and, where it helps, say what to
// do about it.
func Errorf(sentinel error, format string, args ...any) *Error {
	code, ok := sentinelCodes[sentinel]
	if !ok {
		code = CodeInternal
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: sentinel}
}

// ErrorCode returns the code of err: that of the outermost *Error, else that
// of a sentinel it wraps, else CodeInternal. nil has no code ("").
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	for s, c := range sentinelCodes {
		if errors.Is(err, s) {
			return c
		}
	}
	return CodeInternal
}
