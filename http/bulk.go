package http

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	nethttp "net/http"
	"sync"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/intake"
)

// Bulk over HTTP: POST /v1/bulk with Content-Type application/x-ndjson. The
// first line is the plan without its events ({"actor", "instance_prefix",
// "gates"}), every other line one event in the NDJSON format of events
// files, optionally with "where" (the place it came from, for messages).
// The body is streamed into ONE transaction, so a million events keep the
// server's memory flat, and a body cut short rolls everything back.
//
// The answer is the report of `iu bulk --json`. With Accept:
// application/x-ndjson it is streamed instead, one JSON object a line:
// progress ({"template", "id", "result"} per event with ?progress=events,
// {"done": N} now and then with ?progress=count), then {"report",
// "read_back"} or {"error"}. The command line's client uses that form.

const ctNDJSON = "application/x-ndjson"

func (s *Server) handleBulk(c *call) error {
	mt := intake.MediaType(c.r.Header.Get("Content-Type"))
	if mt != ctNDJSON && mt != "application/jsonl" {
		return httpError(CodeUnsupportedMedia, "a bulk body is NDJSON (Content-Type: %s): the plan on the first line, then one event a line", ctNDJSON)
	}
	// A large bulk takes longer than the server's usual timeouts.
	rc := nethttp.NewResponseController(c.w)
	deadline := time.Now().Add(s.cfg.BulkTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)

	q := c.r.URL.Query()
	name := q.Get("name")
	if name == "" {
		name = "body"
	}
	progress := q.Get("progress")
	switch progress {
	case "", "none", "count", "events":
	default:
		return httpError(iu.CodeInvalid, "progress=%q: want events, count or none", progress)
	}
	stream := intake.MediaType(c.r.Header.Get("Accept")) == ctNDJSON

	br := bufio.NewReaderSize(c.r.Body, 64<<10)
	head, err := readLine(br, iu.MaxNDJSONLine)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return httpError(iu.CodeInvalid, "empty bulk body: the first line is the plan, {\"actor\": ...}")
		}
		return bodyError(err)
	}
	var h bulkHeader
	if err := decodeStrict(bytes.NewReader(head), &h); err != nil {
		return httpError(iu.CodeInvalid, "bulk plan (first line): %v", err)
	}
	plan := &iu.BulkPlan{Actor: h.Actor, InstancePrefix: h.InstancePrefix, Gates: h.Gates}

	var out *frameWriter
	var prog iu.BulkProgress
	if stream {
		if err := rc.EnableFullDuplex(); err != nil {
			c.logger().Warn("bulk: full duplex unavailable", "err", err)
		}
		c.w.Header().Set("Content-Type", ctNDJSON)
		c.w.WriteHeader(nethttp.StatusOK)
		out = &frameWriter{w: c.w, rc: rc}
		switch progress {
		case "events":
			prog = func(be iu.BulkEvent, r iu.Result) {
				out.write(bulkFrame{Template: be.Template, ID: be.Event.ID, Result: &r}, false)
			}
		case "count":
			var done int64
			var last time.Time
			prog = func(iu.BulkEvent, iu.Result) {
				done++
				if time.Since(last) >= 100*time.Millisecond {
					last = time.Now()
					out.write(bulkFrame{Done: done}, true)
				}
			}
		}
	}
	rep, err := s.engine.Bulk(c.ctx(), plan, bulkEvents(br, name), prog)
	if err != nil {
		body := publicError(err, c.id)
		if body.Code == iu.CodeInternal || body.Code == iu.CodeUnavailable {
			c.logger().Error("bulk failed", "actor", plan.Actor, "err", err)
		}
		c.outcome = "rolled back"
		if !stream {
			return err
		}
		out.write(bulkFrame{Error: &body}, true)
		return nil
	}
	c.outcome = fmt.Sprintf("committed %d", rep.Counts.Total())
	c.logger().Info("bulk committed", "actor", plan.Actor, "events", rep.Counts.Total(), "token", c.token.Name)
	if !stream {
		writeJSON(c.w, nethttp.StatusOK, rep)
		return nil
	}
	out.write(bulkFrame{Report: rep, ReadBack: &rep.ReadBack}, true)
	return nil
}

// readLine reads one line (without its end), refusing lines longer than max.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return nil, iu.Errorf(iu.ErrInvalidEvent, "a line is longer than %d bytes", max)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return bytes.TrimRight(line, "\r\n"), nil
			}
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

// bulkEvents streams the event lines of a bulk body.
func bulkEvents(br *bufio.Reader, name string) iter.Seq2[iu.BulkEvent, error] {
	return func(yield func(iu.BulkEvent, error) bool) {
		n := 1 // the plan is line 1: lines are counted as the client wrote them
		for {
			line, err := readLine(br, iu.MaxNDJSONLine)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var ie *iu.Error
				var mbe *nethttp.MaxBytesError
				switch {
				case errors.As(err, &mbe):
					err = bodyError(err)
				case !errors.As(err, &ie):
					err = iu.Errorf(iu.ErrUnavailable, "reading the bulk body after %s:%d: %v", name, n, err)
				}
				yield(iu.BulkEvent{}, err)
				return
			}
			n++
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			where := fmt.Sprintf("%s:%d", name, n)
			var l bulkLine
			if err := decodeStrict(bytes.NewReader(line), &l); err != nil {
				yield(iu.BulkEvent{Where: where}, iu.Errorf(iu.ErrInvalidEvent, "%s: %v", where, err))
				return
			}
			if l.Where != "" {
				where = l.Where
			}
			be, err := iu.NewBulkEvent(where, l.Template, l.Event)
			if !yield(be, err) || err != nil {
				return
			}
		}
	}
}

// frameWriter writes NDJSON frames of a streamed answer, flushing at most
// every 100 ms while the run goes, and at the end.
type frameWriter struct {
	mu    sync.Mutex
	w     io.Writer
	rc    *nethttp.ResponseController
	buf   []byte
	flush time.Time
}

func (f *frameWriter) write(fr bulkFrame, last bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(fr)
	if err != nil {
		return
	}
	f.buf = append(append(f.buf, b...), '\n')
	if !last && time.Since(f.flush) < 100*time.Millisecond && len(f.buf) < 64<<10 {
		return
	}
	f.w.Write(f.buf)
	f.buf = f.buf[:0]
	f.rc.Flush()
	f.flush = time.Now()
}
