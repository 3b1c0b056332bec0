package migrate_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/batch"
)

// serveChild is this test binary run as a batch's child (TestMain).
func serveChild() int {
	if os.Getenv("MF_MIGRATE_CHILD") == "crash" {
		fmt.Fprintln(os.Stderr, "panic: the child fell over")
		return 7
	}
	if err := migrate.ServeChild(context.Background(), os.Stdin, os.Stdout, slog.New(slog.DiscardHandler)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// child runs this test binary as a migration's child process.
func child(t *testing.T, mode string) migrate.Child {
	t.Setenv("MF_MIGRATE_CHILD", mode)
	return migrate.Child{Command: []string{os.Args[0], "-test.run=^$"}}
}

// A plan goes to a child process as JSON and its report comes back as
// JSON, with its progress on the way: the numbers, not text to parse.
func TestChildRunsAPlanAndHandsBackItsReport(t *testing.T) {
	_, dst, plan := pop3ToSMTP(t, enginetest.CRLF(enginetest.Mix(30)))
	c := child(t, "serve")
	var mu sync.Mutex
	var seen []migrate.Progress
	c.Progress = func(p migrate.Progress) { mu.Lock(); seen = append(seen, p); mu.Unlock() }
	r := c.Run(context.Background(), plan)
	if r.Result() != migrate.Done || r.Moved != 30 || len(dst.Mails()) != 30 {
		t.Fatalf("child's report: moved %d, errors %+v; %d arrived", r.Moved, r.Errors, len(dst.Mails()))
	}
	if len(seen) == 0 || seen[len(seen)-1].Done.Messages != 30 || seen[len(seen)-1].Total.Messages != 30 {
		t.Fatalf("progress seen: %+v", seen)
	}
}

// A child that dies without a report gives a report that says so, with
// the last line it wrote, in the connection class (worth another try).
func TestChildThatDiesWithoutAReport(t *testing.T) {
	_, _, plan := pop3ToSMTP(t, nil)
	r := child(t, "crash").Run(context.Background(), plan)
	if r.Result() != migrate.Failed || r.Class() != migrate.ClassConnection || !strings.Contains(r.Errors[0].Message, "the child fell over") {
		t.Fatalf("errors %+v", r.Errors)
	}
}

// A batch retries a mailbox while its error's class says a retry may
// help (a server down), and not when the row itself is wrong; the good
// ones go through beside them.
func TestBatchRetriesByClass(t *testing.T) {
	_, dst, good := pop3ToSMTP(t, enginetest.CRLF(enginetest.Mix(6)))
	down := good
	down.From.URL = "pop3://u@127.0.0.1:1?tls=none"
	wrong := good
	wrong.Rcpt = "not an address"
	jobs := []*batch.Job{{Row: 2, Plan: good}, {Row: 3, Plan: down}, {Row: 4, Plan: wrong}}
	for _, j := range jobs {
		j.Plan.StateDir, j.State = "", batch.Waiting
	}
	r := batch.Runner{Child: child(t, "serve"), StateDir: t.TempDir(), Parallel: 3, PerHost: 3, Retries: 3}
	r.Run(context.Background(), jobs)
	if jobs[0].State != batch.Done || jobs[0].Tries != 1 || jobs[0].Report.Moved != 6 || len(dst.Mails()) != 6 {
		t.Fatalf("good: %s after %d tries, %+v", jobs[0].State, jobs[0].Tries, jobs[0].Report)
	}
	if jobs[1].State != batch.Failed || jobs[1].Tries != 3 || jobs[1].Report.Class() != migrate.ClassConnection {
		t.Fatalf("server down: %s after %d tries (want 3), class %s", jobs[1].State, jobs[1].Tries, jobs[1].Report.Class())
	}
	if jobs[2].State != batch.Failed || jobs[2].Tries != 1 || jobs[2].Report.Class() != migrate.ClassPlan {
		t.Fatalf("wrong row: %s after %d tries (want 1), class %s", jobs[2].State, jobs[2].Tries, jobs[2].Report.Class())
	}
	report := filepath.Join(t.TempDir(), "report.csv")
	if err := batch.WriteReport(report, jobs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(report)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 4 || !strings.Contains(lines[1], ",done,1,6,n/a,") {
		t.Fatalf("report:\n%s", b)
	}
}
