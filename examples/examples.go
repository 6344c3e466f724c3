// Package examples holds iu's example templates and bulk plans, embedded so
// that the demo, the tests and the benchmarks use the very files an operator
// reads in the repository.
//
// templates/ holds the seed's two 8-piece templates, tpl:wf:onboarding/v2 and
// tpl:file:status-report/v2. bulk/ holds the seed's 25000x bulk plan (8 + 4
// events inline) and a plan that streams its events from an NDJSON file.
package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"

	"github.com/iu-engine/iu"
)

// FS holds templates/*.yaml and bulk/*, at those paths.
//
//go:embed templates/*.yaml bulk/*
var FS embed.FS

// Paths of the embedded bulk files.
const (
	SeedPlanPath   = "bulk/seed-25000x.yaml"
	NDJSONPlanPath = "bulk/ndjson-plan.yaml"
)

// Templates parses every embedded template, in file name order. Errors name
// the file, as iu.ParseTemplateFile does.
func Templates() ([]*iu.Template, error) {
	names, err := fs.Glob(FS, "templates/*.yaml")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]*iu.Template, 0, len(names))
	for _, name := range names {
		data, err := FS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		t, err := iu.ParseTemplateFile(name, data)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// SeedPlan parses the seed's bulk plan: actor iu-core-25000x-bulk, 12 inline
// events, both gates switched on inside the transaction.
func SeedPlan() (*iu.BulkPlan, error) { return parsePlan(SeedPlanPath) }

// NDJSONPlan parses the plan whose events are in an NDJSON file. Its
// EventsFile is relative to the plan; open it with EventsFile.
func NDJSONPlan() (*iu.BulkPlan, error) { return parsePlan(NDJSONPlanPath) }

// EventsFile opens a plan's events file, resolved against the bulk
// directory as an events_file path is resolved against its plan.
func EventsFile(p *iu.BulkPlan) (fs.File, string, error) {
	if p.EventsFile == "" {
		return nil, "", fmt.Errorf("plan of %s has its events inline, not in an events_file", p.Actor)
	}
	name := path.Join(path.Dir(SeedPlanPath), p.EventsFile)
	f, err := FS.Open(name)
	return f, name, err
}

func parsePlan(name string) (*iu.BulkPlan, error) {
	data, err := FS.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return iu.ParseBulkPlan(name, data)
}
