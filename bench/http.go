package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	nethttp "net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	iuhttp "github.com/iu-engine/iu/http"
)

// client posts events with fasthttp, as load generators such as bombardier
// do: its client costs a fraction of net/http's CPU, and on a machine
// shared with the server under test every cycle the load generator spends
// is one the server does not get. The server itself is net/http.
type client struct {
	hc   *fasthttp.HostClient
	url  string
	auth string
}

// newClient keeps up to conns connections to server (an address as
// --server takes it: http://host:port, host:port or unix:PATH).
func newClient(server, token string, conns int, timeout time.Duration) (*client, error) {
	tr := &nethttp.Transport{}
	base, err := iuhttp.Target(server, tr)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
	}
	hc := &fasthttp.HostClient{
		Addr: addr, IsTLS: u.Scheme == "https", MaxConns: conns,
		ReadTimeout: timeout, WriteTimeout: timeout, MaxConnWaitTimeout: timeout, MaxIdleConnDuration: 90 * time.Second,
	}
	if dial := tr.DialContext; dial != nil { // a unix socket
		hc.Dial = func(string) (net.Conn, error) { return dial(context.Background(), "unix", "") }
	}
	c := &client{hc: hc, url: base + "/v1/events"}
	if token != "" {
		c.auth = "Bearer " + token
	}
	return c, nil
}

// post sends one event and returns the answer's status code, or an error
// naming the status and body of any answer but 200 and 201.
func (c *client) post(r request) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType(r.contentType)
	for _, h := range r.headers {
		req.Header.Set(h[0], h[1])
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	req.SetBodyRaw(r.body)
	// The client's read and write timeouts bound each request: DoTimeout
	// would add a timer and a context per request, 13% of the load
	// generator's CPU.
	if err := c.hc.Do(req, resp); err != nil {
		return "", err
	}
	code := resp.StatusCode()
	if code != 200 && code != 201 {
		return "", fmt.Errorf("%d %s: %s", code, nethttp.StatusText(code), bytes.TrimSpace(resp.Body()))
	}
	return strconv.Itoa(code), nil
}
