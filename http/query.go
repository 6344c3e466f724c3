package http

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/iu-engine/iu"
)

// queryParams is, for each route ("GET /v1/instances"), the query
// parameters openapi.json documents for it: the document is where a route's
// parameters are stated, and a route that takes some refuses any other. A
// misspelt filter (actr=alice) must not answer as if there were no filter
// at all.
var queryParams = documentedQueryParams(openapiJSON)

func documentedQueryParams(doc []byte) map[string][]string {
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var d struct {
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
		Paths map[string]map[string]struct {
			Parameters []param `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		panic(fmt.Sprintf("http: openapi.json: %v", err)) // embedded: a build that cannot read it is broken
	}
	out := map[string][]string{}
	for path, ops := range d.Paths {
		for method, op := range ops {
			var names []string
			for _, p := range op.Parameters {
				if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
					p = d.Components.Parameters[ref]
				}
				if p.In == "query" {
					names = append(names, p.Name)
				}
			}
			slices.Sort(names)
			out[strings.ToUpper(method)+" "+path] = names
		}
	}
	return out
}

// checkQuery refuses, on a route that takes query parameters, one it does
// not take (naming it and those the route takes) and one given twice. A
// route that takes none ignores a query string: probes and webhooks add
// their own (cache busters, a key in the URL), and there is no filter to
// misspell.
func checkQuery(rt *route, raw string) error {
	known := queryParams[rt.method+" "+rt.pattern]
	if len(known) == 0 {
		return nil
	}
	// Parsed strictly: url.URL.Query drops a malformed pair (actor=%zz,
	// a;b) without a word, and with it the filter.
	q, err := url.ParseQuery(raw)
	if err != nil {
		return httpError(iu.CodeInvalid, "malformed query string: %s", clip(err.Error()))
	}
	for name, values := range q {
		if slices.Contains(known, name) {
			if len(values) > 1 {
				return httpError(iu.CodeInvalid, "query parameter %q is given %d times: give it once", name, len(values))
			}
			continue
		}
		if name == "offset" && slices.Contains(known, "after") {
			return httpError(iu.CodeInvalid, "offset is not supported: lists page with a cursor (after=NEXT, the next of the page before)")
		}
		return httpError(iu.CodeInvalid, "unknown query parameter %q: %s %s takes %s", clip(name), rt.method, rt.pattern, strings.Join(known, ", "))
	}
	return nil
}

// clip shortens what a client sent to what an answer may repeat of it.
func clip(s string) string {
	const most = 64
	if len(s) <= most {
		return s
	}
	return s[:most] + "..."
}
