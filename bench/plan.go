package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
)

// plan is one run's sequence of events: which earlier event each repeats.
type plan struct {
	run    string // the run's id, in every event id and in the prefix
	prefix string // the instances' prefix: <actor>-<run>
	ids    []int  // the i-th event sent is the event numbered ids[i]
}

// newPlan draws a run id and the sequence: each event after the first is,
// with probability o.Duplicates, a repeat of an event already planned.
func newPlan(o Options) plan {
	var b [4]byte
	rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	p := plan{run: run, prefix: o.Actor + "-" + run, ids: make([]int, o.Events)}
	r := mrand.New(mrand.NewPCG(uint64(b[0])<<8|uint64(b[1]), uint64(b[2])<<8|uint64(b[3])))
	fresh := 0
	for i := range p.ids {
		if fresh > 0 && r.Float64() < o.Duplicates {
			p.ids[i] = r.IntN(fresh)
			continue
		}
		p.ids[i] = fresh
		fresh++
	}
	return p
}

func (p plan) eventID(k int) string { return "bench-" + p.run + "-" + strconv.Itoa(k) }

func (p plan) data(k int) []byte { return fmt.Appendf(nil, `{"seq":%d,"run":"%s"}`, k, p.run) }

// request is one event as a CloudEvents message, over HTTP or NATS: binary
// mode puts the attributes in ce-* headers and the data in the body,
// structured mode all in the body.
type request struct {
	contentType string
	headers     [][2]string
	body        []byte
}

// request encodes event k in o.Mode.
func (p plan) request(o Options, k int) request {
	id := p.eventID(k)
	data := p.data(k)
	if o.Mode == Binary {
		h := make([][2]string, 0, 7)
		h = append(h, [2]string{"Ce-Specversion", "1.0"}, [2]string{"Ce-Id", id}, [2]string{"Ce-Source", o.Source},
			[2]string{"Ce-Type", o.Type}, [2]string{"Ce-Iuactor", o.Actor}, [2]string{"Ce-Iuprefix", p.prefix})
		if !o.Triggered {
			h = append(h, [2]string{"Ce-Iutemplate", o.Template})
		}
		return request{contentType: "application/json", headers: h, body: data}
	}
	ev := map[string]any{"specversion": "1.0", "id": id, "source": o.Source, "type": o.Type,
		"datacontenttype": "application/json", "data": json.RawMessage(data), "iuactor": o.Actor, "iuprefix": p.prefix}
	if !o.Triggered {
		ev["iutemplate"] = o.Template
	}
	body, _ := json.Marshal(ev) // strings and raw JSON: cannot fail
	return request{contentType: "application/cloudevents+json", body: body}
}
