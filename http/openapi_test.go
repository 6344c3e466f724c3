package http_test

import (
	"context"
	"encoding/json"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/iu-engine/iu"
	iuhttp "github.com/iu-engine/iu/http"
	"github.com/iu-engine/iu/sqlite"
)

func newServer(t *testing.T) *iuhttp.Server {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "iu.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := iuhttp.NewServer(iu.NewEngine(st), iuhttp.Config{}, nil)
	t.Cleanup(func() {
		s.Close(context.Background())
		st.Close()
	})
	return s
}

// GET /openapi.json describes exactly the routes the router serves, each
// with the scope the router asks for.
func TestOpenAPIMatchesRouter(t *testing.T) {
	s := newServer(t)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /openapi.json: %d", rec.Code)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Summary   string                `json:"summary"`
			Scope     string                `json:"x-iu-scope"`
			Security  []map[string][]string `json:"security"`
			Responses map[string]any        `json:"responses"`
		} `json:"paths"`
	}
	body, _ := io.ReadAll(rec.Body)
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			key := strings.ToUpper(method) + " " + path
			documented[key] = op.Scope
			if op.Summary == "" || len(op.Responses) == 0 {
				t.Errorf("%s has no summary or no responses", key)
			}
			if op.Scope != "" && (len(op.Security) != 1 || len(op.Security[0]["bearer"]) != 1 || op.Security[0]["bearer"][0] != op.Scope) {
				t.Errorf("%s: security %v does not name scope %s", key, op.Security, op.Scope)
			}
			if op.Scope != "" && (op.Responses["401"] == nil || op.Responses["403"] == nil) {
				t.Errorf("%s does not document 401 and 403", key)
			}
		}
	}
	served := map[string]string{}
	for _, r := range s.Routes() {
		served[r.Method+" "+r.Pattern] = string(r.Scope)
	}
	var missing, extra, scope []string
	for k, sc := range served {
		d, ok := documented[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case d != sc:
			scope = append(scope, k+": router "+sc+", document "+d)
		}
	}
	for k := range documented {
		if _, ok := served[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra)+len(scope) > 0 {
		t.Fatalf("openapi.json and the router differ:\nnot documented: %v\nnot served: %v\nscopes: %v", missing, extra, scope)
	}
	// Every documented route answers something other than the router's 404.
	for k := range documented {
		method, path, _ := strings.Cut(k, " ")
		path = strings.NewReplacer("{key}", "x", "{name}", "x").Replace(path)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		if rec.Code == nethttp.StatusNotFound && strings.Contains(rec.Body.String(), "no route") {
			t.Errorf("%s is documented but the router has no route", k)
		}
	}
}
