package migrate_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/imap/gmailimaptest"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/migrate"
)

// gmailPlan moves the fake Gmail g into the memory server dst's "dst".
func gmailPlan(t *testing.T, g *gmailimaptest.Server, dst string) migrate.Plan {
	t.Setenv("MF_GMAIL_TEST_PW", g.Password)
	t.Setenv("MF_DST_TEST_PW", "p")
	return migrate.Plan{
		From:               migrate.Endpoint{URL: "imap://" + url.PathEscape(g.User) + "@" + g.Addr + "?tls=none", PasswordEnv: "MF_GMAIL_TEST_PW"},
		To:                 migrate.Endpoint{URL: "imap://dst@" + dst + "?tls=none", PasswordEnv: "MF_DST_TEST_PW"},
		AllowPlaintextAuth: true,
		StateDir:           filepath.Join(t.TempDir(), "state"),
	}
}

// gmailWaits records what a run said while it waited for a server.
type gmailWaits struct {
	mu    sync.Mutex
	m     *migrate.Meter
	shown []string // the progress line's Waiting, while it waited
	why   []string
}

func (w *gmailWaits) Started(m *migrate.Meter)       { w.m = m }
func (w *gmailWaits) Message(ev engine.MessageEvent) {}
func (w *gmailWaits) Waiting(why string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shown = append(w.shown, w.m.Progress().Waiting)
	w.why = append(w.why, why)
}

// 1,000 messages in Gmail's All Mail with 3 labels each on average: with
// the source offering X-GM-EXT-1 the migration reads Gmail's view by
// itself, and under each label rule the destination holds each message
// once per place the rule gives it, Spam and Trash left out; mailflow's
// own verification finds every copy (a message once per label is neither
// missing nor twice there), and so does reading the destination. Each
// message's body is fetched from Gmail once, whatever its labels.
func TestGmailMigrationUnderEachLabelRule(t *testing.T) {
	msgs := gmailimaptest.Sample(1000)
	for _, rule := range []string{"", "keywords", "first"} {
		t.Run("labels="+rule, func(t *testing.T) {
			g := gmailimaptest.New(t)
			g.Add(msgs...)
			dst := imapServer(t)
			plan := gmailPlan(t, g, dst)
			plan.Labels = rule
			if rule == "" {
				rule = "folders"
			}
			want := gmailimaptest.Want(rule, msgs, false)
			r := migrate.Run(context.Background(), plan, migrate.Options{})
			if r.Result() != migrate.Done || r.Moved != int64(gmailimaptest.Copies(want)) {
				t.Fatalf("moved %d, want %d; errors %+v", r.Moved, gmailimaptest.Copies(want), r.Errors)
			}
			if r.Verified() != "yes" || len(r.Verifications) != 1 {
				t.Fatalf("verified %q: %+v", r.Verified(), r.Verifications)
			}
			checked := 0
			for _, f := range r.Verifications[0].Folders {
				if f.Found != f.Source || len(f.Missing) > 0 || len(f.FlagsDiffer) > 0 {
					t.Fatalf("folder %+v", f)
				}
				checked += f.Found
			}
			if checked != gmailimaptest.Copies(want) {
				t.Fatalf("the verification checked %d copies, want %d", checked, gmailimaptest.Copies(want))
			}
			if d := gmailimaptest.Diff(want, gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
				t.Fatalf("the destination holds:%s", d)
			}
			for id, n := range g.Fetches() {
				if n != 1 {
					t.Fatalf("message %d fetched %d times", id, n)
				}
			}
			if rule == "folders" && len(g.Fetches()) >= gmailimaptest.Copies(want) {
				t.Fatalf("%d messages fetched for %d copies", len(g.Fetches()), gmailimaptest.Copies(want))
			}
		})
	}
}

// Storms in the middle of the run: Gmail's NO [THROTTLED], Microsoft's
// Suggested Backoff Time, and a dropped session. The run waits as the
// server asked, saying so on its progress line, goes on by itself, and
// ends with every copy there once: nothing lost, nothing twice, no body
// fetched twice; Spam and Trash are moved when asked.
func TestGmailMigrationWaitsOutThrottlingStorms(t *testing.T) {
	msgs := gmailimaptest.Sample(1000)
	g := gmailimaptest.New(t)
	g.Add(msgs...)
	dst := imapServer(t)
	plan := gmailPlan(t, g, dst)
	plan.IncludeSpamTrash = true
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", After: 300, Reply: gmailimaptest.Throttled})
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", Reply: gmailimaptest.Throttled})
	g.Storm(0, 2, gmailimaptest.Fault{Command: "FETCH", After: 150, Reply: gmailimaptest.Backoff, Wait: 700 * time.Millisecond})
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", After: 100, Reply: gmailimaptest.Drop})
	w := &gmailWaits{}
	r := migrate.Run(context.Background(), plan, migrate.Options{Observer: w})
	want := gmailimaptest.Want("folders", msgs, true)
	if r.Result() != migrate.Done || r.Moved != int64(gmailimaptest.Copies(want)) || r.InDoubt != 0 {
		t.Fatalf("moved %d, want %d, in doubt %d; errors %+v", r.Moved, gmailimaptest.Copies(want), r.InDoubt, r.Errors)
	}
	if calm, faults := g.Calm(); !calm || faults != 5 {
		t.Fatalf("calm %v after %d faults", calm, faults)
	}
	w.mu.Lock()
	shown, why := w.shown, w.why
	w.mu.Unlock()
	// Messages are fetched over several sessions at once, so faults that
	// come together are one wait: the longest asked for. Gmail's
	// THROTTLED names no time (2 s the first time, doubled while it goes
	// on: the imap package's tests); Microsoft's names one (700 ms, a
	// second on the progress line).
	if len(why) < 2 || len(why) > 4 || len(shown) != len(why) {
		t.Fatalf("the run waited %d times for 4 storms: %q", len(why), why)
	}
	if !strings.Contains(why[0], "THROTTLED") || shown[0] != "waiting: the server asked for 2s" {
		t.Fatalf("first wait %q, shown as %q", why[0], shown[0])
	}
	last := len(why) - 1
	if !strings.Contains(why[last], "Suggested Backoff Time: 700 milliseconds") || shown[last] != "waiting: the server asked for 1s" {
		t.Fatalf("last wait %q, shown as %q; want the backoff the server named", why[last], shown[last])
	}
	if d := gmailimaptest.Diff(want, gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
		t.Fatalf("the destination holds:%s", d)
	}
	for id, n := range g.Fetches() {
		if n != 1 {
			t.Fatalf("message %d fetched %d times", id, n)
		}
	}
	if r.Verified() != "yes" {
		t.Fatalf("verified %q: %+v", r.Verified(), r.Verifications)
	}
}

// A run killed midway (here: its context ended once 400 bodies were
// fetched) and run again with no option repeated goes on where it
// stopped: the saved plan keeps --labels, and every copy is there once.
func TestGmailMigrationResumes(t *testing.T) {
	msgs := gmailimaptest.Sample(600)
	g := gmailimaptest.New(t)
	g.Add(msgs...)
	dst := imapServer(t)
	plan := gmailPlan(t, g, dst)
	plan.Labels = "first"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for g.BodiesSent() < 400 {
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	r := migrate.Run(ctx, plan, migrate.Options{})
	cancel()
	<-done
	want := gmailimaptest.Want("first", msgs, false)
	if r.Result() == migrate.Done || r.Moved >= int64(gmailimaptest.Copies(want)) {
		t.Fatalf("the interrupted run moved %d of %d: %+v", r.Moved, gmailimaptest.Copies(want), r.Errors)
	}
	again := migrate.Plan{StateDir: plan.StateDir}
	if _, err := again.Resume(); err != nil || again.Labels != "first" {
		t.Fatalf("resumed plan: labels %q, %v", again.Labels, err)
	}
	r2 := migrate.Run(context.Background(), again, migrate.Options{})
	if r2.Result() != migrate.Done || r.Moved+r2.Moved+r2.AlreadyThere != int64(gmailimaptest.Copies(want)) {
		t.Fatalf("moved %d then %d (%d already there), want %d in all; errors %+v", r.Moved, r2.Moved, r2.AlreadyThere, gmailimaptest.Copies(want), r2.Errors)
	}
	if d := gmailimaptest.Diff(want, gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
		t.Fatalf("the destination holds:%s", d)
	}
}

// --gmail=false copies the folders as they are (All Mail, each label's
// folder, Spam and Trash: a message once per folder); the Gmail options
// are refused for a source that cannot be Gmail, and --labels takes one of
// its three rules.
func TestGmailOptionsAreChecked(t *testing.T) {
	g := gmailimaptest.New(t)
	g.Add(gmailimaptest.Message{Labels: []string{`\Inbox`, "Work"}, Body: []byte("Message-ID: <a@x>\r\nSubject: a\r\n\r\na\r\n")})
	dst := imapServer(t)
	plan := gmailPlan(t, g, dst)
	off := false
	plan.Gmail = &off
	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Result() != migrate.Done || r.Moved != 3 { // INBOX, Work, [Gmail]/All Mail
		t.Fatalf("--gmail=false: moved %d; errors %+v", r.Moved, r.Errors)
	}
	for _, c := range []struct {
		mod  func(*migrate.Plan)
		want string
	}{
		{func(p *migrate.Plan) { p.Labels = "copies" }, "--labels=copies"},
		{func(p *migrate.Plan) { p.Labels = "first"; p.Gmail = &off }, "--gmail=false"},
		{func(p *migrate.Plan) { p.From.URL = "pop3://u@" + g.Addr + "?tls=none"; p.IncludeSpamTrash = true }, "IMAP source"},
		{func(p *migrate.Plan) { p.MaxBytesPerDay = -1 }, "--max-bytes-per-day"},
	} {
		p := gmailPlan(t, g, dst)
		c.mod(&p)
		r := migrate.Run(context.Background(), p, migrate.Options{})
		if r.Class() != migrate.ClassPlan || !strings.Contains(r.Errors[0].Message, c.want) {
			t.Errorf("%s: %+v", c.want, r.Errors)
		}
	}
}
