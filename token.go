package iu

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Scope is what a token may do. Admin may do everything; ingest and read
// only what they name.
type Scope string

const (
	ScopeIngest Scope = "ingest" // post events (and iu emit)
	ScopeRead   Scope = "read"   // read templates, gates, instances, stats, verify, triggers, metrics
	ScopeAdmin  Scope = "admin"  // everything: gates, publish, mode, triggers, bulk, rollback, tokens
)

// Scopes lists the scopes in display order.
var Scopes = []Scope{ScopeIngest, ScopeRead, ScopeAdmin}

// ParseScope accepts ingest, read and admin.
func ParseScope(s string) (Scope, error) {
	for _, sc := range Scopes {
		if string(sc) == s {
			return sc, nil
		}
	}
	return "", Errorf(ErrInvalidInput, "unknown scope %q: want ingest, read or admin", s)
}

// Allows reports whether a token of scope s may do what needs scope need.
func (s Scope) Allows(need Scope) bool { return s == ScopeAdmin || s == need }

// Token is a bearer credential as stored: its secret is never kept, only
// the SHA-256 of it.
type Token struct {
	Name      string `json:"name"`
	Scope     Scope  `json:"scope"`
	Hash      string `json:"-"` // hex SHA-256 of the secret
	CreatedAt Time   `json:"created_at"`
	CreatedBy string `json:"created_by"`
	RevokedAt Time   `json:"revoked_at,omitzero"`
}

// Revoked reports whether the token has been revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// NewToken is a token just created, with its secret: the only time the
// secret is seen.
type NewToken struct {
	Token
	Secret string `json:"token"`
}

// tokenPrefix marks iu's secrets, so that they are recognisable in a leaked
// file or a secret scanner.
const tokenPrefix = "iu_"

// GenerateToken returns a new random secret (256 bits) and its hash.
func GenerateToken() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashToken(secret), nil
}

// HashToken returns the hex SHA-256 of a secret, as stored.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SameHash compares two token hashes in constant time.
func SameHash(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// CreateToken makes a token of scope with a new secret and stores its hash.
// An empty name gets one derived from the hash. The secret is in the answer
// and nowhere else.
func (e *Engine) CreateToken(ctx context.Context, name string, scope Scope, actor string) (NewToken, error) {
	if _, err := ParseScope(string(scope)); err != nil {
		return NewToken{}, err
	}
	w, err := claim(ctx, actor)
	if err != nil {
		return NewToken{}, err
	}
	secret, hash, err := GenerateToken()
	if err != nil {
		return NewToken{}, Errorf(ErrUnavailable, "generate a token: %v", err)
	}
	if name == "" {
		name = string(scope) + "-" + hash[:8]
	}
	if err := CheckName("token", name); err != nil {
		return NewToken{}, err
	}
	t := Token{Name: name, Scope: scope, Hash: hash, CreatedAt: TimeOf(e.clock()), CreatedBy: w.By}
	err = e.update(ctx, func(tx Tx) error {
		if err := tx.InsertToken(ctx, &t); err != nil {
			if errors.Is(err, ErrTokenExists) {
				return Errorf(ErrTokenExists, "a token named %q already exists: choose another name (iu token list shows them)", t.Name)
			}
			return err
		}
		return e.audit(ctx, tx, w, AuditTokenCreate, t.Name, "scope %s", t.Scope)
	})
	if err != nil {
		return NewToken{}, err
	}
	return NewToken{Token: t, Secret: secret}, nil
}

// ListTokens lists tokens, revoked ones too, by name, a page at a time.
func (e *Engine) ListTokens(ctx context.Context, r PageRequest) (Page[Token], error) {
	limit, err := r.limit()
	if err != nil {
		return Page[Token]{}, err
	}
	after, err := parseKeyCursor(r.After)
	if err != nil {
		return Page[Token]{}, err
	}
	var rows []Token
	err = e.store.View(ctx, func(tx Tx) (err error) {
		rows, err = tx.ListTokens(ctx, after, limit+1)
		return err
	})
	return pageOf(rows, limit, func(t *Token) string { return keyCursor(t.Name) }), err
}

// RevokeToken revokes a token by name and returns it. Revoking a revoked
// token again changes nothing. ErrNotFound if there is none.
func (e *Engine) RevokeToken(ctx context.Context, name string) (Token, error) {
	if err := CheckName("token", name); err != nil {
		return Token{}, err
	}
	w := who(ctx, "")
	var t Token
	err := e.update(ctx, func(tx Tx) (err error) {
		var revoked bool
		t, revoked, err = tx.RevokeToken(ctx, name, e.clock())
		if errors.Is(err, ErrNotFound) {
			return Errorf(ErrNotFound, "no token named %q (iu token list shows them)", name)
		}
		if err != nil || !revoked {
			return err // revoked before: nothing changed
		}
		return e.audit(ctx, tx, w, AuditTokenRevoke, t.Name, "scope %s", t.Scope)
	})
	return t, err
}

// Authenticate returns the live token whose secret this is. Unknown,
// malformed and revoked secrets are ErrUnauthorized; the message does not
// say which, nor anything about the secret.
func (e *Engine) Authenticate(ctx context.Context, secret string) (Token, error) {
	denied := Errorf(ErrUnauthorized, "invalid or revoked token")
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) > 256 {
		return Token{}, denied
	}
	hash := HashToken(secret)
	var t Token
	err := e.store.View(ctx, func(tx Tx) (err error) {
		t, err = tx.GetToken(ctx, hash)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Token{}, denied
	}
	if err != nil {
		return Token{}, err
	}
	if !SameHash(t.Hash, hash) || t.Revoked() {
		return Token{}, denied
	}
	return t, nil
}
