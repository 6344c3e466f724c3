package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iu-engine/iu/internal/pgtest"
)

// readmeBlock is one ```sh block of the README.
type readmeBlock struct {
	line    int    // where it starts
	section string // the "## " heading it is under
	text    string
}

// pgSection is the README section whose blocks need a PostgreSQL store
// (IU_DB); the others run on SQLite.
const pgSection = "Running on PostgreSQL"

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []readmeBlock
	var cur *readmeBlock
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case line == "```sh":
			cur = &readmeBlock{line: n, section: section}
		case strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README.md:%d: a block that never ends", cur.line)
	}
	return out
}

// TestReadme runs every shell block of the README as a reader would paste
// it: in order, from the repository's root (a copy of it), with `iu`
// installed by the README's own install block, each block in bash with
// errexit, so that any command that fails fails the test. The first block
// is CI's own two commands (`go test ./...` cannot run from inside itself).
// The blocks of "Running on PostgreSQL" run against a fresh database of the
// test server when IU_TEST_POSTGRES is set.
func TestReadme(t *testing.T) {
	if raceEnabled {
		t.Skip("the README's blocks run real processes, not this test binary; the race detector adds nothing here")
	}
	strict := os.Getenv("IU_TEST_README") != ""
	dsn := os.Getenv(pgtest.EnvDSN)
	tools := []string{"bash", "curl", "sqlite3", "go", "nats-server"}
	if dsn != "" {
		tools = append(tools, "psql")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if strict {
				t.Fatalf("the README's blocks need %s, which is not on PATH (IU_TEST_README is set)", tool)
			}
			t.Skipf("the README's blocks need %s, which is not on PATH; set IU_TEST_README=1 to make this a failure", tool)
		}
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(repo, "README.md"))
	if len(blocks) < 10 {
		t.Fatalf("README.md has %d sh blocks; the parser is broken", len(blocks))
	}
	work := t.TempDir()
	copyRepo(t, repo, work)
	bin := filepath.Join(work, "bin")
	env := []string{"GOBIN=" + bin, "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PATH", "GOBIN", "IU_DB", "IU_SERVER", "IU_TOKEN", "IU_TOKEN_FILE", "IU_ADDR", "GOFLAGS":
			continue
		}
		env = append(env, kv)
	}
	run := func(b readmeBlock, env []string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", b.text)
		cmd.Dir, cmd.Env = work, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// A block that fails with a server still running in the background
		// leaves the output pipe open: stop waiting for it soon after.
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // servers the block left behind
		}
		if err != nil {
			t.Errorf("README.md:%d (%s): %v\n--- block\n%s--- output\n%s", b.line, b.section, err, b.text, out.String())
		}
	}
	var install readmeBlock
	for i, b := range blocks[1:] {
		if strings.Contains(b.text, "go install ./cmd/iu") {
			install = b
		}
		if b.section == pgSection {
			continue
		}
		run(b, env)
		if t.Failed() {
			t.Fatalf("stopping at the first failing block (%d of %d)", i+2, len(blocks))
		}
	}
	if dsn == "" {
		t.Logf("the blocks of %q need PostgreSQL: set %s to run them", pgSection, pgtest.EnvDSN)
		return
	}
	pgURL := readmeDatabase(t, dsn)
	pgEnv := append(append([]string{}, env...), "IU_DB="+pgURL)
	ran := 0
	for _, b := range blocks {
		if b.section == pgSection {
			run(b, pgEnv)
			ran++
		}
	}
	if ran == 0 || install.text == "" {
		t.Fatalf("no blocks under %q, or no install block: the README changed shape", pgSection)
	}
}

// readmeDatabase makes a fresh database on the test server with an empty
// schema iu, dropped when the test ends, and returns its URL as the README
// tells readers to write it: the schema as options=-csearch_path=iu, which
// both iu and psql understand.
func readmeDatabase(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("%s is set but the server cannot be reached: %v", pgtest.EnvDSN, err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("iu_readme_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL for the README test: %v", pgtest.EnvDSN, err)
	}
	u.Path = "/" + name
	q := u.Query()
	q.Del("search_path")
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "CREATE SCHEMA iu")
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q.Set("options", "-csearch_path=iu")
	u.RawQuery = q.Encode()
	return u.String()
}

// copyRepo copies the repository's files (not .git, not stores or
// binaries) to dst, so that the blocks' files land in a directory of the
// test's own.
func copyRepo(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		switch ext := filepath.Ext(p); {
		case ext == ".db", strings.Contains(p, ".db-"), ext == ".token", ext == ".test", ext == ".prof":
			return nil
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
