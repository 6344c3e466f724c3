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
// parameters are stated, and the server refuses any other. A misspelt
// filter (actr=alice) must not answer as if there were no filter at all.
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

// checkQuery refuses a query parameter the route does not take, naming it
// and those the route takes.
func checkQuery(rt *route, q url.Values) error {
	known := queryParams[rt.method+" "+rt.pattern]
	for name := range q {
		if slices.Contains(known, name) {
			continue
		}
		if name == "offset" && slices.Contains(known, "after") {
			return httpError(iu.CodeInvalid, "offset is not supported: lists page with a cursor (after=NEXT, the next of the page before)")
		}
		if len(known) == 0 {
			return httpError(iu.CodeInvalid, "unknown query parameter %q: %s %s takes none", name, rt.method, rt.pattern)
		}
		return httpError(iu.CodeInvalid, "unknown query parameter %q: %s %s takes %s", name, rt.method, rt.pattern, strings.Join(known, ", "))
	}
	return nil
}
