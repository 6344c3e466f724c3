package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/iu-engine/iu"
)

// eachPage reads a list page by page from after, handing each page to fn,
// until the list ends or limit items have been read (limit 0: all of them).
// It returns the cursor to go on from when it stopped at limit. Memory is
// one page, however long the list.
func eachPage[T any](ctx context.Context, after string, limit int, fetch func(context.Context, iu.PageRequest) (iu.Page[T], error), fn func([]T) error) (string, error) {
	read := 0
	for {
		size := iu.MaxPageSize
		if limit > 0 {
			size = min(size, limit-read)
		}
		page, err := fetch(ctx, iu.PageRequest{After: after, Limit: size})
		if err != nil {
			return "", err
		}
		if err := fn(page.Items); err != nil {
			return "", err
		}
		read += len(page.Items)
		after = page.Next
		if after == "" || (limit > 0 && read >= limit) {
			return after, nil
		}
	}
}

// printList prints a list page by page from after, at most limit items
// (0: every one): with --json as one JSON array, else as a table under
// header, each page written as it comes. It returns the cursor where it
// stopped (none with --json, which prints every item asked for).
func printList[T any](a *app, ctx context.Context, after string, limit int, fetch func(context.Context, iu.PageRequest) (iu.Page[T], error), header string, writeRows func(io.Writer, []T)) (string, error) {
	out := &jsonArray{w: a.stdout}
	first := true
	next, err := eachPage(ctx, after, limit, fetch, func(rows []T) error {
		if a.json {
			for _, r := range rows {
				if err := out.add(r); err != nil {
					return err
				}
			}
			return nil
		}
		tw := table(a.stdout)
		if first {
			fmt.Fprintln(tw, header)
			first = false
		}
		writeRows(tw, rows)
		return tw.Flush()
	})
	if err != nil {
		return "", err
	}
	if a.json {
		return "", out.close()
	}
	return next, nil
}

// allItems reads a whole list: for the short ones (templates, triggers,
// tokens), printed as one table.
func allItems[T any](ctx context.Context, fetch func(context.Context, iu.PageRequest) (iu.Page[T], error)) ([]T, error) {
	var out []T
	_, err := eachPage(ctx, "", 0, fetch, func(items []T) error {
		out = append(out, items...)
		return nil
	})
	return out, err
}

// marshalIndent encodes v as printJSON does: indented, and without
// escaping <, > and & (iu's output is read by people and programs, never
// embedded in HTML).
func marshalIndent(v any, prefix string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent(prefix, "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// jsonArray writes a JSON array one element at a time, as printJSON would
// write the whole array, so that a long list streams in bounded memory.
type jsonArray struct {
	w io.Writer
	n int
}

func (j *jsonArray) add(v any) error {
	b, err := marshalIndent(v, "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if j.n == 0 {
		sep = "[\n  "
	}
	j.n++
	_, err = io.WriteString(j.w, sep+string(b))
	return err
}

func (j *jsonArray) close() error {
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}
