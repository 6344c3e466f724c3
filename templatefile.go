package iu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// templateFile is the on-disk shape of a template (YAML, or JSON, which YAML
// reads too). Unknown fields are refused so that a typo such as "afer:" is
// not silently ignored.
type templateFile struct {
	Key      string      `yaml:"key" json:"key"`
	Title    string      `yaml:"title" json:"title"`
	EmitMode string      `yaml:"emit_mode" json:"emit_mode"`
	Pieces   []pieceFile `yaml:"pieces" json:"pieces"`
}

type pieceFile struct {
	ID    string   `yaml:"id" json:"id"`
	Kind  string   `yaml:"kind" json:"kind"`
	Body  string   `yaml:"body" json:"body"`
	After []string `yaml:"after" json:"after"`
}

// MaxTemplateFileBytes bounds a template file.
const MaxTemplateFileBytes = 8 << 20

// ParseTemplateFile parses and validates one template file. name is used in
// messages only. Errors are *Error with ErrInvalidTemplate and say which file
// and line is at fault.
func ParseTemplateFile(name string, data []byte) (*Template, error) {
	parse := ParseTemplateSpec
	if strings.EqualFold(path.Ext(name), ".json") {
		parse = parseTemplateJSON
	}
	spec, err := parse(data)
	if err == nil {
		var t *Template
		if t, err = spec.Build(); err == nil {
			return t, nil
		}
	}
	var e *Error
	if errors.As(err, &e) {
		return nil, &Error{Code: e.Code, Message: name + ": " + e.Message, Err: e.Err}
	}
	return nil, Errorf(ErrInvalidTemplate, "%s: %v", name, err)
}

// parseTemplateJSON decodes a .json template strictly: JSON's own grammar
// (no trailing commas or comments, which the YAML reader would forgive),
// unknown fields refused, errors with their line.
func parseTemplateJSON(data []byte) (*TemplateSpec, error) {
	if len(data) > MaxTemplateFileBytes {
		return nil, Errorf(ErrInvalidTemplate, "file is larger than %d bytes", MaxTemplateFileBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errorf(ErrInvalidTemplate, "empty file: want a template with key, title and pieces")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f templateFile
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	if err := dec.Decode(&f); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, Errorf(ErrInvalidTemplate, "line %d: invalid JSON: %v", lineAt(se.Offset), se)
		case errors.As(err, &te):
			return nil, Errorf(ErrInvalidTemplate, "line %d: %s: want %s, got JSON %s", lineAt(te.Offset), te.Field, te.Type, te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, Errorf(ErrInvalidTemplate, "unexpected end of JSON")
		}
		return nil, Errorf(ErrInvalidTemplate, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return nil, Errorf(ErrInvalidTemplate, "line %d: more than one JSON value: put one template in each file", lineAt(dec.InputOffset()))
	}
	spec := &TemplateSpec{Key: f.Key, Title: f.Title, EmitMode: f.EmitMode}
	for _, p := range f.Pieces {
		spec.Pieces = append(spec.Pieces, SlotSpec{ID: p.ID, Kind: p.Kind, Body: p.Body, After: p.After})
	}
	return spec, nil
}

// TemplateFileJSON writes t, with its piece bodies, as a template file in
// JSON that ParseTemplateFile reads back as the same template: how a client
// sends templates to a server.
func TemplateFileJSON(t *Template) ([]byte, error) {
	f := templateFile{Key: t.Key, Title: t.Title, EmitMode: string(t.EmitMode)}
	for _, s := range t.Slots {
		p, ok := t.Pieces[s.Piece]
		if !ok {
			return nil, Errorf(ErrInvalidTemplate, "template %s: slot %q has no piece body loaded", t.Key, s.ID)
		}
		f.Pieces = append(f.Pieces, pieceFile{ID: s.ID, Kind: p.Kind, Body: p.Body, After: s.After})
	}
	return json.Marshal(f)
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): `)

// ParseTemplateSpec decodes a template file without validating its content
// beyond its shape.
func ParseTemplateSpec(data []byte) (*TemplateSpec, error) {
	if len(data) > MaxTemplateFileBytes {
		return nil, Errorf(ErrInvalidTemplate, "file is larger than %d bytes", MaxTemplateFileBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errorf(ErrInvalidTemplate, "empty file: want a template with key, title and pieces")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f templateFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errorf(ErrInvalidTemplate, "empty file: want a template with key, title and pieces")
		}
		return nil, Errorf(ErrInvalidTemplate, "%s", yamlDataMessage(err, data))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, Errorf(ErrInvalidTemplate, "more than one YAML document: put one template in each file")
	}
	// A second pass for line numbers: the strict decode above has no positions.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errorf(ErrInvalidTemplate, "%s", yamlMessage(err))
	}
	spec := &TemplateSpec{Key: f.Key, Title: f.Title, EmitMode: f.EmitMode}
	var lines []int
	if doc := docMapping(&root); doc != nil {
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "pieces" {
				spec.Line = doc.Content[i].Line
				for _, p := range doc.Content[i+1].Content {
					lines = append(lines, p.Line)
				}
			}
		}
	}
	for i, p := range f.Pieces {
		s := SlotSpec{ID: p.ID, Kind: p.Kind, Body: p.Body, After: p.After}
		if i < len(lines) {
			s.Line = lines[i]
		}
		spec.Pieces = append(spec.Pieces, s)
	}
	return spec, nil
}

func docMapping(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	return n
}

// yamlMessage turns yaml.v3's messages into ours: "line N: problem", with
// Go type names replaced by what the author wrote.
// yamlDataMessage is yamlMessage, and says so when the line at fault is
// indented with a tab, which YAML does not allow and whose own message
// ("found character that cannot start any token") does not name.
func yamlDataMessage(err error, data []byte) string {
	msg := yamlMessage(err)
	m := yamlLineNumberRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(m[1])
	lines := bytes.Split(data, []byte("\n"))
	if n < 1 || n > len(lines) {
		return msg
	}
	if indent := lines[n-1][:len(lines[n-1])-len(bytes.TrimLeft(lines[n-1], " \t"))]; bytes.ContainsRune(indent, '\t') {
		return fmt.Sprintf("line %d is indented with a tab: YAML indents with spaces only (%s)", n, strings.TrimPrefix(msg, m[0]))
	}
	return msg
}

var yamlLineNumberRE = regexp.MustCompile(`^line (\d+): `)

func yamlMessage(err error) string {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	msg = yamlLineRE.ReplaceAllString("yaml: "+msg, "line $1: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	if i := strings.Index(msg, " not found in type iu."); i >= 0 {
		// "field afer not found in type iu.pieceFile"
		msg = strings.Replace(msg[:i], "field ", "unknown field ", 1)
	}
	msg = strings.NewReplacer(
		"!!seq", "a list", "!!map", "a mapping", "!!str", "a string", "!!int", "a number", "!!bool", "a boolean",
		"into string", "into a string", "into []string", "into a list of slot ids",
		"into []iu.pieceFile", "into a list of pieces", "into iu.templateFile", "into a template", "into iu.pieceFile", "into a piece",
		"into iu.planFile", "into a plan", "into []yaml.Node", "into a list of events", "into map[string]bool", "into a mapping of gate names to true or false",
	).Replace(msg)
	return fmt.Sprint(msg)
}
