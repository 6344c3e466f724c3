package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	nethttp "net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	iuhttp "github.com/iu-engine/iu/http"
)

// TestMain makes the test binary double as the iu command: testscript puts
// a copy named "iu" on the scripts' PATH, and running it calls Main, so the
// scripts run the real command line in real processes without a separate
// build.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"iu": func() {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		},
		"exitcode": exitcode,
	})
}

// exitcode runs a command and succeeds when it exits with the given code,
// passing its standard streams through:
//
//	exec exitcode 2 iu frobnicate
//
// testscript's "! exec" only tells zero from non-zero, and iu's contract
// tells 1 (the operation failed) from 2 (the command line was wrong).
func exitcode() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: exitcode N COMMAND [ARG...]")
		os.Exit(2)
	}
	want, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "exitcode: %v\n", err)
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	got := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintf(os.Stderr, "exitcode: %v\n", err)
			os.Exit(2)
		}
		got = ee.ExitCode()
	}
	if got != want {
		fmt.Fprintf(os.Stderr, "exitcode: %s exited with %d, want %d\n", os.Args[2], got, want)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestScripts runs testdata/script/*.txtar. Each script gets $REPO (the
// repository root, for examples/ and testdata/templates/) and a fresh $WORK
// for its SQLite files.
func TestScripts(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("REPO", repo)
			// The scripts pass --db or set IU_DB themselves; never let a
			// stray iu.db in the working directory be the default.
			env.Setenv("IU_DB", "")
			// Under -race every process sleeps a second at exit unless
			// told not to; the scripts start a few hundred.
			gorace := os.Getenv("GORACE")
			if !strings.Contains(gorace, "atexit_sleep_ms") {
				gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=0")
			}
			env.Setenv("GORACE", gorace)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"json":   cmdJSON,
			"jsoneq": cmdJSONEq,
			"sql":    cmdSQL,
			"ready":  cmdReady,
		},
	})
}

// cmdReady waits up to 10 s for the iu serve at an address (unix:PATH or
// host:port) to answer GET /readyz with 200:
//
//	ready unix:$WORK/iu.sock
//
// A server listens before it has opened its store, so the socket existing
// says nothing about its being ready.
func cmdReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: ready ADDR")
	}
	addr := args[0]
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		addr = "unix:" + ts.MkAbs(p)
	}
	tr := &nethttp.Transport{}
	base, err := iuhttp.Target(addr, tr)
	ts.Check(err)
	hc := &nethttp.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("iu serve at %s is not ready after 10 s", args[0])
}

// cmdJSON checks fields of a JSON document:
//
//	json FILE PATH=VALUE... | !PATH...
//
// FILE is stdout, stderr or a file. PATH walks objects by key and arrays by
// index, separated by '/' (keys may contain dots: gates/inside_tx/
// iu_core.composer_enabled); a final '#' is the length of an array or
// object. A string is compared as it is, anything else as compact JSON
// (12, true, [], {"a":1}). !PATH asserts the path does not exist.
func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! json (use !PATH for absent fields)")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: json FILE PATH=VALUE... | !PATH...")
	}
	doc := readJSON(ts, args[0])
	for _, a := range args[1:] {
		if p, ok := strings.CutPrefix(a, "!"); ok {
			if _, found := jsonPath(doc, p); found {
				ts.Fatalf("%s: %s is present, want it absent", args[0], p)
			}
			continue
		}
		p, want, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("json: %q: want PATH=VALUE or !PATH", a)
		}
		v, found := jsonPath(doc, p)
		if !found {
			ts.Fatalf("%s: no %s", args[0], p)
		}
		got, isString := v.(string)
		if !isString {
			b, _ := json.Marshal(v)
			got = string(b)
		}
		if got != want {
			ts.Fatalf("%s: %s = %s, want %s", args[0], p, got, want)
		}
	}
}

func readJSON(ts *testscript.TestScript, name string) any {
	data := ts.ReadFile(name)
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		ts.Fatalf("%s is not JSON: %v\n%s", name, err, data)
	}
	if dec.More() {
		ts.Fatalf("%s holds more than one JSON value", name)
	}
	return doc
}

func jsonPath(doc any, path string) (any, bool) {
	if path == "" || path == "." {
		return doc, true
	}
	v := doc
	for _, k := range strings.Split(path, "/") {
		switch x := v.(type) {
		case map[string]any:
			if k == "#" {
				v = json.Number(strconv.Itoa(len(x)))
				continue
			}
			e, ok := x[k]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			if k == "#" {
				v = json.Number(strconv.Itoa(len(x)))
				continue
			}
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// cmdJSONEq compares two JSON documents by value, ignoring layout:
//
//	jsoneq FILE WANTFILE
func cmdJSONEq(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsoneq FILE WANTFILE")
	}
	got, want := readJSON(ts, args[0]), readJSON(ts, args[1])
	eq := reflect.DeepEqual(got, want)
	if eq == neg {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		if neg {
			ts.Fatalf("%s equals %s", args[0], args[1])
		}
		ts.Fatalf("%s differs from %s\ngot:\n%s\nwant:\n%s", args[0], args[1], g, w)
	}
}

// cmdSQL runs one statement on a SQLite file, outside iu, and prints the
// rows of a query, a line each, columns separated by '|':
//
//	sql FILE STATEMENT
//
// Scripts use it to look at the stored rows, to tamper with them, and to
// make a SQLite database that is not an iu store.
func cmdSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sql FILE STATEMENT")
	}
	err := runSQL(ts, ts.MkAbs(args[0]), args[1])
	if neg {
		if err == nil {
			ts.Fatalf("sql: unexpected success")
		}
		fmt.Fprintln(ts.Stderr(), err)
		return
	}
	ts.Check(err)
}

func runSQL(ts *testscript.TestScript, path, stmt string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(stmt)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			if i > 0 {
				out.WriteByte('|')
			}
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fmt.Fprint(&out, v)
		}
		out.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		return err
	}
	ts.Stdout().Write(out.Bytes())
	return nil
}
