package migrate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/survey"
	_ "github.com/mailflow/mailflow/plugins/all"
)

// pop3ToSMTP is a POP3 mailbox holding msgs and an SMTP server, and a plan
// between them.
func pop3ToSMTP(t *testing.T, msgs [][]byte) (*pop3test.Server, *smtptest.Server, migrate.Plan) {
	t.Helper()
	src, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	src.Add(msgs...)
	dst, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	t.Setenv("MF_MIGRATE_TEST_PW", "p")
	return src, dst, migrate.Plan{
		From:               migrate.Endpoint{URL: "pop3://u@" + src.Addr() + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		To:                 migrate.Endpoint{URL: "smtp://" + dst.Addr() + "?tls=none"},
		Rcpt:               "new@example.net",
		AllowPlaintextAuth: true,
		StateDir:           filepath.Join(t.TempDir(), "state"),
	}
}

// counter is an Observer that counts what it is told.
type counter struct {
	mu       sync.Mutex // Message is called for several messages at once
	started  int
	totals   migrate.Totals
	messages map[engine.Outcome]int
	last     migrate.Progress
	meter    *migrate.Meter
	waits    int
}

func (c *counter) Started(m *migrate.Meter)      { c.started++; c.totals = m.Totals(); c.meter = m }
func (c *counter) Waiting(string, time.Duration) { c.waits++ }
func (c *counter) Message(ev engine.MessageEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.messages[ev.Outcome]++
	if p := c.meter.Progress(); p.Done.Messages >= c.last.Done.Messages {
		c.last = p // the latest, whichever message's call came last
	}
}

// A run moves every message once and its report says so, in numbers a
// program can read; the observer sees the survey's totals and each
// message; a second run finds nothing left, and says that too.
func TestRunMovesAMailboxAndReportsWhatItDid(t *testing.T) {
	msgs := enginetest.CRLF(enginetest.Mix(24))
	src, dst, plan := pop3ToSMTP(t, msgs)
	var size int64
	for _, m := range msgs {
		size += int64(len(m))
	}
	obs := &counter{messages: map[engine.Outcome]int{}}
	r := migrate.Run(context.Background(), plan, migrate.Options{Observer: obs})
	if r.Result() != migrate.Done || len(r.Errors) > 0 {
		t.Fatalf("result %v, errors %+v", r.Result(), r.Errors)
	}
	if r.Moved != 24 || r.MovedBytes != size || r.Surveyed.ToMove.Messages != 24 || r.Surveyed.ToMove.Bytes != size {
		t.Fatalf("moved %d (%d bytes) of %+v; want 24 (%d bytes)", r.Moved, r.MovedBytes, r.Surveyed.ToMove, size)
	}
	if n := len(dst.Mails()); n != 24 || len(src.Messages()) != 0 {
		t.Fatalf("%d arrived, %d left at the source; want 24 and 0", n, len(src.Messages()))
	}
	if r.Verified() != "n/a" || r.StateDir != plan.StateDir {
		t.Fatalf("verified %q (an SMTP destination cannot be searched), state %q", r.Verified(), r.StateDir)
	}
	if obs.started != 1 || obs.totals.ToMove.Messages != 24 || obs.messages[engine.Delivered] != 24 {
		t.Fatalf("observer: started %d, totals %+v, messages %v", obs.started, obs.totals, obs.messages)
	}
	if obs.last.Done.Messages != 24 || obs.last.Done.Bytes != size || obs.last.Total.Messages != 24 {
		t.Fatalf("last progress %+v", obs.last)
	}
	// The report is plain data.
	b, _ := json.Marshal(r)
	var back migrate.Report
	if err := json.Unmarshal(b, &back); err != nil || back.Moved != 24 || back.StateDir != r.StateDir {
		t.Fatalf("the report does not survive JSON: %v %+v", err, back)
	}

	again := migrate.Run(context.Background(), plan, migrate.Options{})
	if again.Result() != migrate.Done || again.Moved != 0 || again.Surveyed.ToMove.Messages != 0 || len(dst.Mails()) != 24 {
		t.Fatalf("second run: %+v, %d at the destination", again, len(dst.Mails()))
	}
}

// With --keep the source keeps its mail, and a second run counts it as
// moved before instead of moving it again.
func TestRunAgainWithKeepMovesNothingTwice(t *testing.T) {
	_, dst, plan := pop3ToSMTP(t, enginetest.CRLF(enginetest.Mix(8)))
	plan.Keep = true
	if r := migrate.Run(context.Background(), plan, migrate.Options{}); r.Moved != 8 || r.Result() != migrate.Done {
		t.Fatalf("first run: moved %d, %v", r.Moved, r.Errors)
	}
	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Moved != 0 || r.AlreadyMoved != 8 || r.Surveyed.MovedEarlier.Messages != 8 || len(dst.Mails()) != 8 {
		t.Fatalf("second run: moved %d, already %d, surveyed %+v, %d arrived", r.Moved, r.AlreadyMoved, r.Surveyed, len(dst.Mails()))
	}
}

// --since is a filter given in code: older messages stay at the source
// (and are counted as left), undated ones move.
func TestSinceLeavesOlderMessagesAtTheSource(t *testing.T) {
	mail := func(n int, date string) []byte {
		h := fmt.Sprintf("From: a@example.org\r\nMessage-ID: <since-%d@example.org>\r\nSubject: %d\r\n", n, n)
		if date != "" {
			h += "Date: " + date + "\r\n"
		}
		return []byte(h + "\r\nbody\r\n")
	}
	msgs := [][]byte{
		mail(1, "Mon, 01 Jan 2024 10:00:00 +0000"),
		mail(2, "Tue, 02 Jul 2024 10:00:00 +0000"),
		mail(3, "Wed, 03 Jan 2024 10:00:00 +0000"),
		mail(4, ""),
	}
	src, dst, plan := pop3ToSMTP(t, msgs)
	var err error
	if plan.Since, err = migrate.ParseSince("2024-06-01"); err != nil {
		t.Fatal(err)
	}
	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Moved != 2 || r.Left != 2 || r.Result() != migrate.Done {
		t.Fatalf("moved %d, left %d, errors %+v", r.Moved, r.Left, r.Errors)
	}
	var got []string
	for _, m := range dst.Mails() {
		got = append(got, string(m.Untraced()))
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, ""), "since-2@") || !strings.Contains(strings.Join(got, ""), "since-4@") {
		t.Fatalf("arrived: %q", got)
	}
	if len(src.Messages()) != 2 {
		t.Fatalf("%d left at the source, want the 2 older ones", len(src.Messages()))
	}
}

// A plan that cannot run as written fails with the plan class, which a
// batch does not retry; a server that is down fails with the connection
// class, which it does; a password never appears in a report.
func TestErrorsCarryTheirClass(t *testing.T) {
	_, _, good := pop3ToSMTP(t, nil)
	cases := []struct {
		name  string
		edit  func(p *migrate.Plan)
		class migrate.Class
		want  string
	}{
		{"password in the URL", func(p *migrate.Plan) { p.From.URL = strings.Replace(p.From.URL, "u@", "u:hunter2@", 1) }, migrate.ClassPlan, "put no password in the URL"},
		{"no rcpt for SMTP", func(p *migrate.Plan) { p.Rcpt = "" }, migrate.ClassPlan, "--rcpt"},
		{"wrong scheme", func(p *migrate.Plan) { p.To.URL = "ftp://h" }, migrate.ClassPlan, "the scheme must be one of"},
		{"delete-source from POP3", func(p *migrate.Plan) { p.DeleteSource = true }, migrate.ClassPlan, "--delete-source is for an IMAP source"},
		{"secret not set", func(p *migrate.Plan) { p.From.PasswordEnv = "MF_MIGRATE_UNSET" }, migrate.ClassPlan, "MF_MIGRATE_UNSET"},
		{"server down", func(p *migrate.Plan) { p.From.URL = "pop3://u@127.0.0.1:1?tls=none" }, migrate.ClassConnection, "127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := good
			c.edit(&p)
			r := migrate.Run(context.Background(), p, migrate.Options{})
			if r.Result() != migrate.Failed || r.Class() != c.class || !strings.Contains(r.Errors[0].Message, c.want) {
				t.Fatalf("result %v, errors %+v; want class %s with %q", r.Result(), r.Errors, c.class, c.want)
			}
			if c.class.Retry() != (c.class == migrate.ClassConnection) {
				t.Fatalf("class %s: retry %v", c.class, c.class.Retry())
			}
			b, _ := json.Marshal(r)
			if strings.Contains(string(b), "hunter2") {
				t.Fatal("a password is in the report")
			}
		})
	}
}

// A run stopped before it begins says it was interrupted, a class that
// resumes when run again.
func TestInterruptedRunSaysSo(t *testing.T) {
	_, dst, plan := pop3ToSMTP(t, enginetest.CRLF(enginetest.Mix(5)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := migrate.Run(ctx, plan, migrate.Options{})
	if r.Result() != migrate.Failed || r.Class() != migrate.ClassInterrupted || len(dst.Mails()) != 0 {
		t.Fatalf("errors %+v, %d arrived", r.Errors, len(dst.Mails()))
	}
	if r = migrate.Run(context.Background(), plan, migrate.Options{}); r.Moved != 5 {
		t.Fatalf("the run after the interruption moved %d, want 5", r.Moved)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("MF_MIGRATE_CHILD") != "" {
		os.Exit(serveChild())
	}
	os.Exit(m.Run())
}

// A verification against a destination that cannot say its flags shows
// "-" for them and says so, rather than 0 as if they agreed.
func TestVerificationSaysWhenFlagsWereNotCompared(t *testing.T) {
	r := &migrate.Report{Verifications: []migrate.Verification{{Input: "src", Output: "dst", Folders: []survey.FolderCheck{
		{Folder: "INBOX", Source: 3, Found: 3, FlagsNotCompared: true},
	}}}}
	var b strings.Builder
	r.WriteText(&b, "")
	if !regexp.MustCompile(`INBOX\s+3\s+3\s+0\s+-\s`).MatchString(b.String()) || !strings.Contains(b.String(), "dst cannot say the flags it holds; only presence was checked") {
		t.Fatalf("report:\n%s", b.String())
	}
}
