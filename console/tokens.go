package console

import (
	"context"
	"net/http"

	"github.com/iu-engine/iu"
)

// tokensPage lists the tokens, offers to create one and to revoke them.
type tokensPage struct {
	Tokens []iu.Token
	Scopes []iu.Scope
	Self   string // the signed-in token: revoking it signs you out
	CSRF   string
}

func (c *Console) tokensData(ctx context.Context) (tokensPage, error) {
	p := tokensPage{Scopes: iu.Scopes}
	var err error
	p.Tokens, err = listTokens(ctx, c.e)
	return p, err
}

func (c *Console) handleTokens(q *request) error {
	p, err := c.tokensData(q.ctx())
	p.Self, p.CSRF = q.s.tok.Name, q.s.csrf
	return c.show(q, "tokens", layout{Title: "Tokens"}, p, err)
}

// handleCreateToken makes a token and shows its secret once, on the next
// page only: the secret is kept in the session until that page is shown,
// and nowhere else.
func (c *Console) handleCreateToken(q *request) error {
	scope, err := iu.ParseScope(q.r.PostFormValue("scope"))
	if err != nil {
		return err
	}
	nt, err := c.e.CreateToken(q.ctx(), q.r.PostFormValue("name"), scope, q.actor())
	if err != nil {
		return err
	}
	c.log.Info("console: token created", "new_token", nt.Name, "scope", nt.Scope, "token", q.s.tok.Name)
	c.sessions.mu.Lock()
	q.s.secret = nt.Secret
	c.sessions.mu.Unlock()
	return c.redirect(q, "/tokens", "Token "+nt.Name+" created with scope "+string(nt.Scope)+".")
}

func (c *Console) handleRevokeToken(q *request) error {
	t, err := c.e.RevokeToken(q.ctx(), q.r.PostFormValue("name"))
	if err != nil {
		return err
	}
	c.tokens.forget() // its sessions end now, here
	c.log.Info("console: token revoked", "revoked", t.Name, "token", q.s.tok.Name)
	if t.Name == q.s.tok.Name {
		http.Redirect(q.w, q.r, "/signin", http.StatusSeeOther)
		return nil
	}
	return c.redirect(q, "/tokens", "Token "+t.Name+" revoked: it no longer signs in or posts.")
}
