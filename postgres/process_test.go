package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iu-engine/iu"
	"github.com/iu-engine/iu/postgres"
)

// helperDSN, when set, makes TestHelperProcess a worker of
// TestSeparateProcesses instead of a test.
const helperDSN = "IU_TEST_POSTGRES_HELPER_DSN"

// Separate processes on one store, as several `iu` processes would be: each
// opens the store itself (all at once, so the migration lock is contended),
// emits the same event and events of its own. Exactly one process makes the
// shared event's instance; nothing is lost or doubled.
func TestSeparateProcesses(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	const procs, each = 4, 25
	seed := open(t, dsn)
	e := iu.NewEngine(seed)
	ctx := context.Background()
	tpl := template8(t)
	if _, err := e.PublishTemplates(ctx, []*iu.Template{tpl}, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetGates(ctx, iu.GateChange{iu.GateComposer: true, iu.GateAutoInstantiate: true}, "tester"); err != nil {
		t.Fatal(err)
	}
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*bytes.Buffer, procs)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmds[i].Env = append(os.Environ(), helperDSN+"="+dsn, fmt.Sprintf("IU_TEST_WORKER=%d", i), fmt.Sprintf("IU_TEST_EACH=%d", each))
		outs[i] = &bytes.Buffer{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	created, total := 0, 0
	var key string
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
		sc := bufio.NewScanner(outs[i])
		for sc.Scan() {
			var r iu.Result
			if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			total++
			if r.IdempotencyKey == iu.IdempotencyKey(tpl.Key, "test", "shared") {
				if key != "" && r.InstanceKey != key {
					t.Fatalf("worker %d got instance %s for the shared event, another got %s", i, r.InstanceKey, key)
				}
				key = r.InstanceKey
				if !r.Replayed {
					created++
				}
			}
		}
	}
	if total != procs*(each+1) || created != 1 {
		t.Fatalf("%d answers (want %d), the shared event created %d times (want 1)", total, procs*(each+1), created)
	}
	rep, err := e.Verify(ctx, "")
	if err != nil || rep.Total != int64(1+procs*each) || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestHelperProcess is one worker process of TestSeparateProcesses.
func TestHelperProcess(t *testing.T) {
	dsn := os.Getenv(helperDSN)
	if dsn == "" {
		t.Skip("a worker of TestSeparateProcesses, not a test of its own")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := iu.NewEngine(s)
	w, each := os.Getenv("IU_TEST_WORKER"), 0
	fmt.Sscan(os.Getenv("IU_TEST_EACH"), &each)
	emit := func(id string) {
		r, err := e.Emit(ctx, iu.EmitRequest{TemplateKey: "tpl:wf:procs/v1", Actor: "worker-" + w,
			Event: iu.Event{ID: id, Source: "test", Type: "test.created"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
	}
	for i := 0; i < each; i++ {
		if i == each/2 {
			emit("shared")
		}
		emit(fmt.Sprintf("w%s-%d", w, i))
	}
}

func template8(t *testing.T) *iu.Template {
	t.Helper()
	spec := &iu.TemplateSpec{Key: "tpl:wf:procs/v1", Title: "Processes"}
	for i := 1; i <= 8; i++ {
		spec.Pieces = append(spec.Pieces, iu.SlotSpec{ID: fmt.Sprintf("s%d", i), Kind: "step", Body: fmt.Sprintf("Step %d", i)})
	}
	tp, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// A statement that runs past the statement timeout fails with a message
// that names the timeout, as ErrUnavailable.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	s, err := postgres.Open(context.Background(), freshSchema(t), postgres.Options{StatementTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = postgres.ExecRaw(context.Background(), s, "SELECT pg_sleep(2)")
	if !errors.Is(err, iu.ErrUnavailable) || !strings.Contains(err.Error(), "100ms") {
		t.Fatalf("statement past the timeout: %v", err)
	}
}
