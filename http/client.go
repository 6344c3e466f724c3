package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	nethttp "net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

// Client is iu.Service over HTTP: every method is one request to a running
// `iu serve`. Errors come back as *iu.Error with the server's code and
// message, so the command line prints the same whichever service it has.
type Client struct {
	base  string // http://host:port, without a trailing slash
	token string
	hc    *nethttp.Client
}

var _ iu.Service = (*Client)(nil)

// NewClient returns a client of the server at addr: http://host:port,
// https://..., host:port, or unix:PATH for a Unix socket. token is the
// bearer token sent with every request.
func NewClient(addr, token string) (*Client, error) {
	tr := nethttp.DefaultTransport.(*nethttp.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	base, err := Target(addr, tr)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, token: token, hc: &nethttp.Client{Transport: tr}}, nil
}

// Target resolves a server address (http://host:port, https://...,
// host:port, or unix:PATH) into the base URL of its requests, pointing tr's
// dialer at the socket for a unix: address.
func Target(addr string, tr *nethttp.Transport) (string, error) {
	base := strings.TrimRight(addr, "/")
	switch {
	case strings.HasPrefix(base, "unix:"):
		path := strings.TrimPrefix(base, "unix:")
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return "http://iu", nil
	case strings.HasPrefix(base, "http://"), strings.HasPrefix(base, "https://"):
	case base == "":
		return "", iu.Errorf(iu.ErrInvalidInput, "no server address: give --server http://host:port (or IU_SERVER)")
	default:
		base = "http://" + base
	}
	if _, err := url.Parse(base); err != nil {
		return "", iu.Errorf(iu.ErrInvalidInput, "server address %q: %v", addr, err)
	}
	return base, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// request builds a request; body is JSON-encoded unless it is an io.Reader.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, body any) (*nethttp.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ct = b, ctNDJSON
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ct = bytes.NewReader(buf), "application/json"
	}
	req, err := nethttp.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, iu.Errorf(iu.ErrInvalidInput, "request %s %s: %v", method, path, err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// send sends a request and returns the response, or the transport's failure
// as ErrUnavailable.
func (c *Client) send(req *nethttp.Request) (*nethttp.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		failed := iu.Errorf(iu.ErrUnavailable, "cannot reach the iu server at %s: %v", c.base, rootCause(err))
		if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
			return nil, unsent{failed}
		}
		return nil, failed
	}
	return resp, nil
}

// unsent marks a failure to connect: the server never had the request.
type unsent struct{ error }

func (u unsent) Unwrap() error { return u.error }

func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// do sends a JSON request and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return iu.Errorf(iu.ErrUnavailable, "%s %s: the server's answer is not what this iu expects: %v", method, path, err)
	}
	return nil
}

// responseError turns a non-2xx answer into an error: the server's own
// {"error"} when it sent one.
func responseError(resp *nethttp.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var doc errorDoc
	if err := json.Unmarshal(b, &doc); err == nil && doc.Error.Code != "" {
		return doc.Error.toError()
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	code := iu.CodeUnavailable
	if resp.StatusCode/100 == 4 {
		code = iu.CodeInvalid
	}
	return &iu.Error{Code: code, Message: fmt.Sprintf("the server answered %s: %s", resp.Status, text), Err: sentinels[code]}
}

// esc escapes a key for one path segment (template keys hold '/').
func esc(key string) string { return url.PathEscape(key) }

func actorQuery(actor string) url.Values {
	if actor == "" {
		return nil
	}
	return url.Values{"actor": {actor}}
}

func (c *Client) PublishTemplates(ctx context.Context, templates []*iu.Template, actor string) ([]iu.PublishResult, error) {
	b := PublishBody{Actor: actor}
	for _, t := range templates {
		raw, err := iu.TemplateFileJSON(t)
		if err != nil {
			return nil, err
		}
		b.Templates = append(b.Templates, raw)
	}
	var out []iu.PublishResult
	return out, c.do(ctx, "POST", "/v1/templates", nil, b, &out)
}

// pageQuery is a list request's after and limit parameters.
func pageQuery(r iu.PageRequest) url.Values {
	q := url.Values{}
	if r.After != "" {
		q.Set("after", r.After)
	}
	if r.Limit != 0 {
		q.Set("limit", strconv.Itoa(r.Limit))
	}
	return q
}

// list reads one page of a list route.
func list[T any](ctx context.Context, c *Client, path string, q url.Values) (iu.Page[T], error) {
	var out iu.Page[T]
	err := c.do(ctx, "GET", path, q, nil, &out)
	return out, err
}

func (c *Client) ListTemplates(ctx context.Context, r iu.PageRequest) (iu.Page[iu.TemplateInfo], error) {
	return list[iu.TemplateInfo](ctx, c, "/v1/templates", pageQuery(r))
}

func (c *Client) GetTemplate(ctx context.Context, key string) (*iu.Template, error) {
	var d TemplateDoc
	if err := c.do(ctx, "GET", "/v1/templates/"+esc(key), nil, nil, &d); err != nil {
		return nil, err
	}
	return d.Template(), nil
}

func (c *Client) SetEmitMode(ctx context.Context, key string, mode iu.EmitMode) error {
	return c.do(ctx, "PUT", "/v1/templates/"+esc(key)+"/mode", nil, ModeBody{EmitMode: mode}, nil)
}

func (c *Client) Gates(ctx context.Context) (iu.Gates, error) {
	var g iu.Gates
	return g, c.do(ctx, "GET", "/v1/gates", nil, nil, &g)
}

func (c *Client) SetGates(ctx context.Context, change iu.GateChange, actor string) (iu.Gates, error) {
	var g iu.Gates
	body := map[string]bool(change)
	if body == nil {
		body = map[string]bool{}
	}
	return g, c.do(ctx, "PUT", "/v1/gates", actorQuery(actor), body, &g)
}

func (c *Client) GateAudit(ctx context.Context, r iu.PageRequest) (iu.Page[iu.GateAuditEntry], error) {
	return list[iu.GateAuditEntry](ctx, c, "/v1/gates/audit", pageQuery(r))
}

func (c *Client) Audit(ctx context.Context, r iu.PageRequest) (iu.Page[iu.AuditEntry], error) {
	return list[iu.AuditEntry](ctx, c, "/v1/audit", pageQuery(r))
}

// Emit posts one event for one template. A gated answer (503) is a result,
// as it is from the engine.
func (c *Client) Emit(ctx context.Context, r iu.EmitRequest) (iu.Result, error) {
	req, err := c.request(ctx, "POST", "/v1/emit", nil, EmitBody{Template: r.TemplateKey, Actor: r.Actor, Prefix: r.Prefix, Event: r.Event})
	if err != nil {
		return iu.Result{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return iu.Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.Header.Get("Iu-Gate") == "" {
		return iu.Result{}, responseError(resp)
	}
	var res iu.Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || res.Status == "" {
		return iu.Result{}, iu.Errorf(iu.ErrUnavailable, "POST /v1/emit: the server's answer is not a result: %v", err)
	}
	return res, nil
}

func (c *Client) Compose(ctx context.Context, r iu.ComposeRequest) (iu.ComposeResult, error) {
	var out iu.ComposeResult
	return out, c.do(ctx, "POST", "/v1/compose", nil, ComposeBody{Template: r.TemplateKey, Key: r.InstanceKey, Actor: r.Actor}, &out)
}

// Bulk streams the plan and its events to the server as NDJSON, in one
// request and so in one transaction on the server, and reads the progress
// and the report as they come. An event stream that fails on this side
// (a bad line in a file) aborts the upload, and the server rolls back.
func (c *Client) Bulk(ctx context.Context, plan *iu.BulkPlan, events iter.Seq2[iu.BulkEvent, error], progress iu.BulkProgress) (*iu.BulkReport, error) {
	if events == nil {
		events = iu.SliceEvents(plan.Events)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close()
	localErr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		enc := json.NewEncoder(bw)
		err := enc.Encode(bulkHeader{Actor: plan.Actor, InstancePrefix: plan.InstancePrefix, Gates: plan.Gates})
		if err == nil {
			for be, ierr := range events {
				if ierr != nil {
					err = ierr
					break
				}
				if err = enc.Encode(bulkLine{Where: be.Where, Template: be.Template, Event: be.Event}); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = bw.Flush()
			pw.Close()
			localErr <- nil
			return
		}
		localErr <- err
		pw.CloseWithError(err)
	}()
	q := url.Values{"name": {"client"}}
	switch {
	case progress == nil:
		q.Set("progress", "none")
	default:
		q.Set("progress", "events")
	}
	req, err := c.request(ctx, "POST", "/v1/bulk", q, io.Reader(pr))
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Accept", ctNDJSON)
	resp, err := c.send(req)
	if err != nil {
		pr.CloseWithError(err)
		if lerr := localFailure(localErr); lerr != nil {
			return nil, fmt.Errorf("bulk rolled back, nothing written: %w", lerr)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		pr.CloseWithError(errors.New("the server refused the bulk"))
		if lerr := localFailure(localErr); lerr != nil {
			return nil, fmt.Errorf("bulk rolled back, nothing written: %w", lerr)
		}
		return nil, responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var f bulkFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, iu.Errorf(iu.ErrUnavailable, "POST /v1/bulk: the server's answer is not what this iu expects: %v", err)
		}
		switch {
		case f.Error != nil:
			if lerr := localFailure(localErr); lerr != nil {
				return nil, fmt.Errorf("bulk rolled back, nothing written: %w", lerr)
			}
			return nil, f.Error.toError()
		case f.Report != nil:
			if f.ReadBack != nil {
				f.Report.ReadBack = *f.ReadBack
			}
			return f.Report, nil
		case f.Result != nil && progress != nil:
			progress(iu.BulkEvent{Template: f.Template, Event: iu.Event{ID: f.ID}}, *f.Result)
		}
	}
	if lerr := localFailure(localErr); lerr != nil {
		return nil, fmt.Errorf("bulk rolled back, nothing written: %w", lerr)
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, iu.Errorf(iu.ErrUnavailable, "the connection to the iu server broke during the bulk run; whether it committed is unknown (iu instances --actor %s tells): %v", plan.Actor, err)
	}
	return nil, iu.Errorf(iu.ErrUnavailable, "the iu server ended the bulk answer without a report; whether it committed is unknown (iu instances --actor %s tells)", plan.Actor)
}

// localFailure returns the error of the event stream on this side, if it
// failed, waiting briefly for the uploader to say.
func localFailure(ch chan error) error {
	select {
	case err := <-ch:
		ch <- err
		return err
	case <-time.After(100 * time.Millisecond):
		return nil
	}
}

func (c *Client) Instances(ctx context.Context, f iu.InstanceFilter) (iu.Page[iu.InstanceRow], error) {
	q := pageQuery(f.PageRequest)
	for k, v := range map[string]string{"actor": f.Actor, "template": f.TemplateKey, "prefix": f.Prefix, "event_id": f.EventID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return list[iu.InstanceRow](ctx, c, "/v1/instances", q)
}

func (c *Client) EventLog(ctx context.Context, f iu.EventFilter) (iu.Page[iu.LogEntry], error) {
	q := pageQuery(f.PageRequest)
	for k, v := range map[string]string{"status": string(f.Status), "actor": f.Actor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return list[iu.LogEntry](ctx, c, "/v1/events", q)
}

// GetInstance returns one instance with its lineage.
func (c *Client) GetInstance(ctx context.Context, key string) (*InstanceDoc, error) {
	var d InstanceDoc
	if err := c.do(ctx, "GET", "/v1/instances/"+esc(key), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (c *Client) Stats(ctx context.Context) ([]iu.TemplateStat, error) {
	var out []iu.TemplateStat
	return out, c.do(ctx, "GET", "/v1/stats", nil, nil, &out)
}

func (c *Client) Verify(ctx context.Context, actor string) (*iu.VerifyReport, error) {
	var out iu.VerifyReport
	if err := c.do(ctx, "GET", "/v1/verify", actorQuery(actor), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Rollback(ctx context.Context, actor string, apply bool) (iu.RollbackReport, error) {
	var out iu.RollbackReport
	return out, c.do(ctx, "POST", "/v1/rollback", nil, RollbackBody{Actor: actor, Apply: apply}, &out)
}

func (c *Client) Render(ctx context.Context, key string) (*iu.Rendered, error) {
	var out iu.Rendered
	if err := c.do(ctx, "GET", "/v1/instances/"+esc(key)+"/render", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) History(ctx context.Context, key string) ([]iu.HistoryEntry, error) {
	var out []iu.HistoryEntry
	return out, c.do(ctx, "GET", "/v1/instances/"+esc(key)+"/history", nil, nil, &out)
}

func (c *Client) Compensate(ctx context.Context, r iu.CompensateRequest) (iu.CompensateReport, error) {
	var out iu.CompensateReport
	return out, c.do(ctx, "POST", "/v1/instances/"+esc(r.InstanceKey)+"/compensate", actorQuery(r.Actor),
		CompensateBody{Apply: r.Apply, Reason: r.Reason, Release: r.Release}, &out)
}

// Migrate runs a migration on the server. With progress it reads the
// streamed answer, a frame after each batch.
func (c *Client) Migrate(ctx context.Context, r iu.MigrateRequest, progress iu.MigrateProgress) (*iu.MigrateReport, error) {
	report, err := c.migrate(ctx, r, progress)
	if err != nil && report == nil && r.Apply && errors.Is(err, iu.ErrUnavailable) && !errors.As(err, new(unsent)) && ctx.Err() == nil {
		// The server may have moved batches before the connection broke (a
		// report, when there is one, says how many, and the CLI says so).
		return nil, fmt.Errorf("%w; run the same command again to finish the migration (instances already moved are skipped)", err)
	}
	return report, err
}

func (c *Client) migrate(ctx context.Context, r iu.MigrateRequest, progress iu.MigrateProgress) (*iu.MigrateReport, error) {
	if progress == nil {
		var out iu.MigrateReport
		if err := c.do(ctx, "POST", "/v1/migrations", actorQuery(r.Claimed), r, &out); err != nil {
			return nil, err
		}
		return &out, nil
	}
	req, err := c.request(ctx, "POST", "/v1/migrations", actorQuery(r.Claimed), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", ctNDJSON)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var sofar *iu.MigrateReport // what the progress frames told
	for sc.Scan() {
		var f migrateFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, iu.Errorf(iu.ErrUnavailable, "POST /v1/migrations: the server's answer is not what this iu expects: %v", err)
		}
		switch {
		case f.Error != nil:
			return f.Report, f.Error.toError()
		case f.Report != nil:
			return f.Report, nil
		default:
			progress(f.Moved, f.Total)
			sofar = &iu.MigrateReport{From: r.From, To: r.To, Instances: f.Total, Moved: f.Moved}
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() != nil {
		return sofar, ctx.Err()
	}
	return sofar, iu.Errorf(iu.ErrUnavailable, "the connection to the iu server broke during the migration")
}

func (c *Client) ListTriggers(ctx context.Context, r iu.PageRequest) (iu.Page[iu.Trigger], error) {
	return list[iu.Trigger](ctx, c, "/v1/triggers", pageQuery(r))
}

func (c *Client) AddTrigger(ctx context.Context, t iu.Trigger, actor string) (iu.Trigger, error) {
	var out iu.Trigger
	b := TriggerBody{Name: t.Name, Type: t.Type, Source: t.Source, Template: t.Template, Actor: t.Actor, Prefix: t.Prefix}
	return out, c.do(ctx, "POST", "/v1/triggers", actorQuery(actor), b, &out)
}

func (c *Client) RemoveTrigger(ctx context.Context, name string) (iu.Trigger, error) {
	var out iu.Trigger
	return out, c.do(ctx, "DELETE", "/v1/triggers/"+esc(name), nil, nil, &out)
}

func (c *Client) CreateToken(ctx context.Context, name string, scope iu.Scope, actor string) (iu.NewToken, error) {
	var out iu.NewToken
	return out, c.do(ctx, "POST", "/v1/tokens", actorQuery(actor), TokenBody{Name: name, Scope: scope}, &out)
}

func (c *Client) ListTokens(ctx context.Context, r iu.PageRequest) (iu.Page[iu.Token], error) {
	return list[iu.Token](ctx, c, "/v1/tokens", pageQuery(r))
}

func (c *Client) RevokeToken(ctx context.Context, name string) (iu.Token, error) {
	var out iu.Token
	return out, c.do(ctx, "DELETE", "/v1/tokens/"+esc(name), nil, nil, &out)
}
