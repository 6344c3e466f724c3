package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	nethttp "net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
)

// benchOptions are iu bench's flags.
type benchOptions struct {
	n         int
	conns     int
	dup       float64
	mode      string
	template  string
	typ       string
	source    string
	actor     string
	direct    bool
	progress  string
	batch     iu.BatchOptions
	timeout   time.Duration
	triggered bool
	cpuprof   string
}

// benchReport is what iu bench prints (--json: as is).
type benchReport struct {
	Target         string         `json:"target"`
	Mode           string         `json:"mode"`
	Events         int            `json:"events"`
	Connections    int            `json:"connections"`
	DuplicateRatio float64        `json:"duplicate_ratio"`
	Seconds        float64        `json:"seconds"`
	EventsPerSec   float64        `json:"events_per_second"`
	LatencyMS      benchLatency   `json:"latency_ms"`
	Statuses       map[string]int `json:"statuses"`
	Errors         int            `json:"errors"`
	FirstError     string         `json:"first_error,omitempty"`
	Actor          string         `json:"actor"`
	InstancePrefix string         `json:"instance_prefix"`
}

type benchLatency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func (a *app) benchCommand() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench [-n N] [-c C] [--dup 0.1] [--mode binary|structured] [--direct]",
		Short: "Load generator: post N CloudEvents over C connections and report events/s and latency",
		Long: `Post N events to a running iu serve (--server, IU_SERVER; a token of scope ingest)
over C concurrent connections, in CloudEvents binary or structured mode, a share of
them (--dup) repeats of earlier events (answered replayed). Each event names its
template (--template, extension iutemplate), or with --triggered relies on the
server's triggers (--type). Prints events/s and the latency percentiles; --json for
scripts.

--direct drives the Go API instead (the engine with group commit, on --db), with no
HTTP at all: the difference is what the network and the HTTP layer cost.

The instances are made under actor --actor with instance prefix <actor>-<run id>:
iu rollback --actor ACTOR --apply removes them.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if o.n <= 0 || o.conns <= 0 {
				return usagef("-n and -c must be positive")
			}
			tuneGC()
			if o.dup < 0 || o.dup >= 1 {
				return usagef("--dup %v: want a fraction in [0, 1)", o.dup)
			}
			if o.mode != "binary" && o.mode != "structured" {
				return usagef("--mode %q: want binary or structured", o.mode)
			}
			if _, err := iu.ParseTemplateKey(o.template); err != nil && !o.triggered {
				return usageError{err}
			}
			switch o.progress {
			case "auto", "bar", "none":
			default:
				return usagef("--progress %q: want auto, bar or none", o.progress)
			}
			rep, err := a.bench(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(rep)
			}
			printBench(a.stdout, rep)
			if rep.Errors > 0 {
				return failure{err: fmt.Errorf("bench: %d of %d events failed (first: %s)", rep.Errors, rep.Events, rep.FirstError)}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.IntVarP(&o.n, "events", "n", 10000, "events to send")
	f.IntVarP(&o.conns, "connections", "c", 64, "concurrent connections (callers with --direct)")
	f.Float64Var(&o.dup, "dup", 0.1, "share of events that repeat an earlier one")
	f.StringVar(&o.mode, "mode", "binary", "CloudEvents mode: binary or structured")
	f.StringVar(&o.template, "template", "tpl:wf:onboarding/v2", "template the events name (extension iutemplate)")
	f.BoolVar(&o.triggered, "triggered", false, "name no template: let the server's triggers route the events (by --type)")
	f.StringVar(&o.typ, "type", "iu.bench.event", "event type")
	f.StringVar(&o.source, "source", "iu:bench", "event source")
	f.StringVar(&o.actor, "actor", "iu-bench", "actor of the instances (extension iuactor)")
	f.BoolVar(&o.direct, "direct", false, "drive the Go API on --db instead of a server: no HTTP")
	f.StringVar(&o.progress, "progress", "auto", "progress bar: auto (on a terminal), bar, none")
	f.IntVar(&o.batch.MaxEvents, "batch-events", iu.DefaultBatchEvents, "with --direct: group commit's most events per transaction")
	f.DurationVar(&o.batch.MaxWait, "batch-wait", iu.DefaultBatchWait, "with --direct: group commit's longest wait")
	f.IntVar(&o.batch.Workers, "batch-workers", 0, "with --direct: transactions in flight (default 1 on SQLite, 2 on PostgreSQL)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	f.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the run to this file")
	f.MarkHidden("cpuprofile")
	return cmd
}

// benchPlan is the sequence of events: which earlier event each repeats.
type benchPlan struct {
	run    string
	prefix string
	ids    []int // event i sends the event numbered ids[i]
}

func newBenchPlan(o benchOptions) benchPlan {
	var b [4]byte
	rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	p := benchPlan{run: run, prefix: o.actor + "-" + run, ids: make([]int, o.n)}
	r := mrand.New(mrand.NewPCG(uint64(b[0])<<8|uint64(b[1]), uint64(b[2])<<8|uint64(b[3])))
	fresh := 0
	for i := range p.ids {
		if fresh > 0 && r.Float64() < o.dup {
			p.ids[i] = r.IntN(fresh)
			continue
		}
		p.ids[i] = fresh
		fresh++
	}
	return p
}

func (p benchPlan) eventID(k int) string { return "bench-" + p.run + "-" + strconv.Itoa(k) }

func (p benchPlan) data(k int) []byte { return fmt.Appendf(nil, `{"seq":%d,"run":"%s"}`, k, p.run) }

// benchResults collects the answers.
type benchResults struct {
	lat      []time.Duration
	mu       sync.Mutex
	statuses map[string]int
	errors   int
	first    string
}

func (r *benchResults) record(i int, took time.Duration, status string, err error) {
	r.lat[i] = took
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.first == "" {
			r.first = err.Error()
		}
		return
	}
	r.statuses[status]++
}

func (a *app) bench(ctx context.Context, o benchOptions) (*benchReport, error) {
	plan := newBenchPlan(o)
	res := &benchResults{lat: make([]time.Duration, o.n), statuses: map[string]int{}}
	var send func(ctx context.Context, i int) (string, error)
	target := ""
	mode := o.mode
	if o.direct {
		mode = "direct"
		s, err := openStore(ctx, a.db, true)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		target = s.Describe()
		bo := o.batch
		if bo.Workers <= 0 {
			bo.Workers = s.WriteConcurrency()
		}
		b := iu.NewEngine(s).NewBatcher(bo)
		defer b.Close(context.Background())
		var triggers []iu.Trigger
		if o.triggered {
			if triggers, err = iu.NewEngine(s).Triggers(ctx); err != nil {
				return nil, err
			}
		}
		send = func(ctx context.Context, i int) (string, error) {
			k := plan.ids[i]
			ev := iu.Event{ID: plan.eventID(k), Source: o.source, Type: o.typ, Data: plan.data(k)}
			routing := iu.Routing{Actor: o.actor, Prefix: plan.prefix}
			if !o.triggered {
				routing.Template = o.template
			}
			reqs, err := iu.Route(ev, routing, triggers, o.actor)
			if err != nil {
				return "", err
			}
			outs, err := b.Submit(ctx, reqs)
			if err != nil {
				return "", err
			}
			status := "200"
			for _, out := range outs {
				if out.Err != nil {
					return "", out.Err
				}
				if out.Result.Created() {
					status = "201"
				}
			}
			return status, nil
		}
	} else {
		if a.server.url == "" {
			return nil, usagef("bench needs a server (--server URL or IU_SERVER), or --direct to drive the Go API on --db")
		}
		secret, err := a.server.secret()
		if err != nil {
			return nil, err
		}
		hc, err := newBenchClient(a.server.url, secret, o.conns, o.timeout)
		if err != nil {
			return nil, err
		}
		target = a.server.url
		send = func(ctx context.Context, i int) (string, error) {
			return hc.post(benchRequest(o, plan, plan.ids[i]))
		}
	}

	var bar *progressbar.ProgressBar
	if o.progress == "bar" || (o.progress == "auto" && isTerminal(a.stderr)) {
		bar = progressbar.NewOptions(o.n, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("bench"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	if o.cpuprof != "" {
		stop, err := startCPUProfile(o.cpuprof)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.n || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, o.timeout)
				t0 := time.Now()
				status, err := send(rctx, i)
				cancel()
				res.record(i, time.Since(t0), status, err)
				if bar != nil {
					bar.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if bar != nil {
		bar.Finish()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep := &benchReport{
		Target: target, Mode: mode, Events: o.n, Connections: o.conns, DuplicateRatio: o.dup,
		Seconds: elapsed.Seconds(), EventsPerSec: float64(o.n) / elapsed.Seconds(),
		Statuses: res.statuses, Errors: res.errors, FirstError: res.first,
		Actor: o.actor, InstancePrefix: plan.prefix,
	}
	rep.LatencyMS = percentiles(res.lat)
	return rep, nil
}

// benchClient posts events with fasthttp, as load generators such as
// bombardier do: its client costs a fraction of net/http's CPU, and on a
// machine shared with the server under test every cycle the load generator
// spends is one the server does not get. The server itself is net/http.
type benchClient struct {
	hc   *fasthttp.HostClient
	url  string
	auth string
}

// newBenchClient keeps up to conns connections to server (an address as
// --server takes it: http://host:port, host:port or unix:PATH).
func newBenchClient(server, secret string, conns int, timeout time.Duration) (*benchClient, error) {
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
	c := &benchClient{hc: hc, url: base + "/v1/events"}
	if secret != "" {
		c.auth = "Bearer " + secret
	}
	return c, nil
}

// post sends one event and returns the answer's status code, or an error
// naming the status and body of any answer but 200 and 201.
func (c *benchClient) post(r benchEvent) (string, error) {
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

// benchEvent is one event as a request: binary mode puts the attributes in
// ce-* headers and the data in the body, structured mode all in the body.
type benchEvent struct {
	contentType string
	headers     [][2]string
	body        []byte
}

// benchRequest builds the CloudEvent for event k, in binary or structured
// mode.
func benchRequest(o benchOptions, p benchPlan, k int) benchEvent {
	id := p.eventID(k)
	data := p.data(k)
	if o.mode == "binary" {
		h := make([][2]string, 0, 7)
		h = append(h, [2]string{"Ce-Specversion", "1.0"}, [2]string{"Ce-Id", id}, [2]string{"Ce-Source", o.source},
			[2]string{"Ce-Type", o.typ}, [2]string{"Ce-Iuactor", o.actor}, [2]string{"Ce-Iuprefix", p.prefix})
		if !o.triggered {
			h = append(h, [2]string{"Ce-Iutemplate", o.template})
		}
		return benchEvent{contentType: "application/json", headers: h, body: data}
	}
	ev := map[string]any{"specversion": "1.0", "id": id, "source": o.source, "type": o.typ,
		"datacontenttype": "application/json", "data": json.RawMessage(data), "iuactor": o.actor, "iuprefix": p.prefix}
	if !o.triggered {
		ev["iutemplate"] = o.template
	}
	body, _ := json.Marshal(ev) // strings and raw JSON: cannot fail
	return benchEvent{contentType: "application/cloudevents+json", body: body}
}

// startCPUProfile profiles the process into file until stop is called.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func percentiles(lat []time.Duration) benchLatency {
	if len(lat) == 0 {
		return benchLatency{}
	}
	s := slices.Clone(lat)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return benchLatency{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func printBench(w io.Writer, r *benchReport) {
	fmt.Fprintf(w, "iu bench: %d events, %d connections, %s mode, %.0f%% duplicates -> %s\n", r.Events, r.Connections, r.Mode, 100*r.DuplicateRatio, r.Target)
	fmt.Fprintf(w, "  %.0f events/s (%.2f s)\n", r.EventsPerSec, r.Seconds)
	l := r.LatencyMS
	fmt.Fprintf(w, "  latency ms: p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  mean %.2f\n", l.P50, l.P95, l.P99, l.Max, l.Mean)
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Statuses[k]))
	}
	fmt.Fprintf(w, "  answers: %s; errors %d\n", strings.Join(parts, ", "), r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "  instances: actor %s, prefix %s (iu rollback --actor %s --apply removes them)\n", r.Actor, r.InstancePrefix, r.Actor)
}
