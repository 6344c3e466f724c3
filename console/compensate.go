package console

import (
	"context"
	"net/http"

	"github.com/iu-engine/iu"
)

// compensatePage is the Compensate form of one instance, the preview (dry
// run) of its compensation, or what an applied one did and the history
// that follows.
type compensatePage struct {
	Key     string
	Reason  string
	Release bool
	Preview *iu.CompensateReport
	Applied *iu.CompensateReport
	History []iu.HistoryEntry // after Applied
	CSRF    string
}

// compensateData previews compensating key: what the dry run says would
// go. Without a key it is the empty form.
func (c *Console) compensateData(ctx context.Context, key, reason string, release bool) (compensatePage, error) {
	p := compensatePage{Key: key, Reason: reason, Release: release}
	if key == "" {
		return p, nil
	}
	rep, err := c.e.Compensate(ctx, iu.CompensateRequest{InstanceKey: key, Reason: reason, Release: release})
	if err != nil {
		return p, err
	}
	p.Preview = &rep
	return p, nil
}

// compensateForm reads the form's fields, from the query (preview) or the
// posted form (apply).
func compensateForm(get func(string) string) (key, reason string, release bool) {
	return get("key"), get("reason"), get("release") == "yes"
}

func compensateTitle(key string) string {
	if key == "" {
		return "Compensate"
	}
	return "Compensate " + key
}

func (c *Console) handleCompensate(q *request) error {
	key, reason, release := compensateForm(q.r.URL.Query().Get)
	p, err := c.compensateData(q.ctx(), key, reason, release)
	p.CSRF = q.s.csrf
	return c.show(q, "compensate", layout{Title: compensateTitle(key), Nav: "instances"}, p, err)
}

// handleApplyCompensate compensates one instance, once the operator has
// typed its key to confirm. It is recorded under the signed-in token's
// name; a second one of the same instance is refused by the engine and
// writes nothing.
func (c *Console) handleApplyCompensate(q *request) error {
	key, reason, release := compensateForm(q.r.PostFormValue)
	if err := iu.CheckInstanceKeyRef(key); err != nil {
		return err
	}
	l := layout{Title: compensateTitle(key), Nav: "instances"}
	if typed := q.r.PostFormValue("confirm"); typed != key {
		p, err := c.compensateData(q.ctx(), key, reason, release)
		p.CSRF = q.s.csrf
		if err == nil {
			err = httpError(http.StatusBadRequest, "Nothing was compensated: type the instance's key, %s, exactly, to confirm.", key)
		}
		return c.show(q, "compensate", l, p, err)
	}
	rep, err := c.e.Compensate(q.ctx(), iu.CompensateRequest{InstanceKey: key, Reason: reason, Release: release, Apply: true})
	c.summary.forget() // either way: a commit whose answer was lost may have happened
	if err != nil {
		return c.show(q, "compensate", l, compensatePage{Key: key, Reason: reason, Release: release, CSRF: q.s.csrf}, err)
	}
	c.log.Info("console: instance compensated", "instance", key, "release", release, "token", q.s.tok.Name, "log_entry", rep.LogEntry)
	p := compensatePage{Key: key, Reason: reason, Release: release, Applied: &rep, CSRF: q.s.csrf}
	// The compensation is done: a history that cannot be read now is no
	// reason to show the page as a failure.
	if p.History, err = c.e.History(q.ctx(), key); err != nil {
		c.log.Warn("console: history after a compensation", "request_id", q.id, "instance", key, "err", err)
	}
	l.Notice = "Compensated " + key + "."
	if rep.Action == iu.CompensateActionRelease {
		l.Notice = "Released the event's key of " + key + ", compensated earlier: the event may instantiate again."
	}
	return c.show(q, "compensate", l, p, nil)
}
