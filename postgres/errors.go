package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iu-engine/iu"
)

// PostgreSQL error codes that iu handles
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeQueryCanceled        = "57014"
	codeInvalidPassword      = "28P01"
	codeInvalidAuthorization = "28000"
	codeInvalidCatalogName   = "3D000"
	codeInvalidSchemaName    = "3F000"
	codeInsufficientPriv     = "42501"
	codeDiskFull             = "53100"
	codeUntranslatableChar   = "22P05"
	codeTooManyConnections   = "53300"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isUnique(err error) bool { return pgCode(err) == codeUniqueViolation }

// translate turns pgx's and the server's errors into iu's at the boundary.
// Messages name the server and database, never the password, and carry the
// server's own words rather than a trace.
func (s *Store) translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ie *iu.Error
	if errors.As(err, &ie) {
		return err // already ours
	}
	if cerr := ctx.Err(); cerr != nil {
		// Cancelling a query surfaces as a server error, a closed
		// connection or the context's own error: all mean the caller gave up.
		return fmt.Errorf("postgres: %w", cerr)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == codeSerializationFailure || pe.Code == codeDeadlockDetected:
			return iu.Errorf(iu.ErrRetryable, "%s: %s (SQLSTATE %s); the transaction can be run again", s.desc, pe.Message, pe.Code)
		case pe.Code == codeQueryCanceled:
			return iu.Errorf(iu.ErrUnavailable, "%s: a statement was cancelled by the server (%s); the statement timeout is %s (statement_timeout in the DSN)",
				s.desc, pe.Message, s.timeoutText())
		case pe.Code == codeInvalidPassword || pe.Code == codeInvalidAuthorization:
			return iu.Errorf(iu.ErrUnavailable, "PostgreSQL at %s refused user %q for database %q: %s; check the user and password in the DSN",
				s.host, s.user, s.database, pe.Message)
		case pe.Code == codeInvalidCatalogName:
			return iu.Errorf(iu.ErrUnavailable, "PostgreSQL at %s has no database %q: create it (createdb %s) or fix the DSN", s.host, s.database, s.database)
		case pe.Code == codeInvalidSchemaName:
			return iu.Errorf(iu.ErrUnavailable, "%s: %s: the search_path names no existing schema; create it first (CREATE SCHEMA ...)", s.desc, pe.Message)
		case pe.Code == codeInsufficientPriv:
			return iu.Errorf(iu.ErrUnavailable, "%s: user %q lacks a privilege: %s (iu needs CREATE on its schema to migrate, and SELECT, INSERT, UPDATE, DELETE on its tables)",
				s.desc, s.user, pe.Message)
		case pe.Code == codeUntranslatableChar:
			return iu.Errorf(iu.ErrInvalidEvent, "invalid event: its data holds \\u0000, which PostgreSQL's jsonb cannot store (%s)", pe.Message)
		case strings.HasPrefix(pe.Code, "22"):
			// A value the engine let through and the database refused (the
			// engine refuses those it knows of first): invalid input, so
			// that a batch is split and the request at fault fails alone.
			return iu.Errorf(iu.ErrInvalidInput, "PostgreSQL refused a value: %s", pe.Message)
		case pe.Code == codeDiskFull:
			return iu.Errorf(iu.ErrStoreFull, "PostgreSQL at %s, database %q, is out of disk space: %s", s.host, s.database, pe.Message)
		case pe.Code == codeTooManyConnections || strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P"):
			// Too many connections, connection exceptions, and the server
			// shutting down or starting up.
			return iu.Errorf(iu.ErrUnavailable, "PostgreSQL at %s, database %q, is unavailable: %s", s.host, s.database, pe.Message)
		}
		return fmt.Errorf("postgres: %w", err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return iu.Errorf(iu.ErrUnavailable, "cannot reach PostgreSQL at %s, database %q: %s", s.host, s.database, connectReason(err))
	}
	if isConnLost(err) {
		// The connection broke mid-transaction: the server rolled it back,
		// so running it again from the start is safe.
		return fmt.Errorf("%w (%w)", iu.Errorf(iu.ErrUnavailable, "lost the connection to PostgreSQL at %s, database %q: %v", s.host, s.database, rootCause(err)), iu.ErrRetryable)
	}
	return fmt.Errorf("postgres: %w", err)
}

func (s *Store) timeoutText() string {
	if s.stmtTimeout > 0 {
		return s.stmtTimeout.String()
	}
	return s.stmtSetting
}

// isConnLost reports whether err says the connection is gone.
func isConnLost(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool")
}

// connectReason is the part of a connection failure a person can act on:
// "connection refused", "no such host", a timeout, or the server's refusal.
func connectReason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out (is the server running, and is the host reachable?)"
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return "timed out (is the server running, and is the host reachable?)"
	}
	r := rootCause(err).Error()
	if strings.Contains(r, "refused") {
		return r + " (is the server running and listening there?)"
	}
	return r
}

// rootCause unwraps err to the innermost error, which is where the reason
// is; the wrappers only repeat the address.
func rootCause(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[0]
		default:
			return err
		}
	}
}
