package gmail_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail"
	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	_ "github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
	_ "github.com/mailflow/mailflow/scripts"
)

// labelScript labels every third message "Work" and "Lists/Weekly", as a
// script does until the script API has msg:label.
const labelScript = `
function filter(msg)
  local n = tonumber((msg:header("Subject") or ""):match("message (%d+)"))
  if n and n % 3 == 0 then
    msg:set_header("X-Mailflow-Labels", "Work, Lists/Weekly")
  end
end
`

// engineRig is a Maildir input whose pipeline runs labelScript and
// delivers to the gmail output, importing into a fake.
type engineRig struct {
	e     *engine.Engine
	fake  *gmailtest.Server
	as    *oauthtest.Server
	out   *gmail.Output
	log   *logBuffer
	dir   string
	state string
}

func newEngineRig(t *testing.T, ttl time.Duration, extra string, onImport func(*gmailtest.Server, int)) *engineRig {
	t.Helper()
	as, err := oauthtest.New("me@example.com", ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	r := &engineRig{as: as, log: &logBuffer{}, dir: t.TempDir()}
	opts := gmailtest.Options{User: "me@example.com", Valid: as.Valid}
	if onImport != nil {
		opts.OnImport = func(n int) { onImport(r.fake, n) }
	}
	if r.fake, err = gmailtest.New(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fake.Close() })
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(r.dir, "maildir", d), 0o700)
	}
	os.WriteFile(filepath.Join(r.dir, "label.lua"), []byte(labelScript), 0o600)
	conf := fmt.Sprintf(`state_dir = "state"

[[input]]
name = "old"
type = "maildir"
path = "maildir"
pipeline = "main"

[[pipeline]]
name = "main"
scripts = ["label.lua"]
outputs = ["gmail"]

[[output]]
name = "gmail"
type = "gmail"
username = "me@example.com"
api_url = %q
oauth2_provider = "custom"
client_id = "mailflow-test"
auth_url = "%[2]s/authorize"
token_url = "%[2]s/token"
device_url = "%[2]s/device"
scopes = ["mail"]
refresh_before = "1s"
labels = ["Imported"]
%s`, r.fake.URL, as.URL, extra)
	path := filepath.Join(r.dir, "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	r.e, err = engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.e.Close() })
	r.out = r.e.Config().Output("gmail").Plugin.(*gmail.Output)
	r.state = r.e.Config().StateDir
	as.LogIn(t, r.out.OAuth(), r.state, "gmail")
	return r
}

// seed puts messages from..to-1 into the Maildir: every fourth read
// (cur/, S), every fifth of those flagged too.
func (r *engineRig) seed(from, to, size int) {
	for i := from; i < to; i++ {
		name := filepath.Join(r.dir, "maildir", "new", fmt.Sprintf("%d.M%d.test", 1700000000+i, i))
		switch {
		case i%20 == 0:
			name = filepath.Join(r.dir, "maildir", "cur", fmt.Sprintf("%d.M%d.test:2,FS", 1700000000+i, i))
		case i%4 == 0:
			name = filepath.Join(r.dir, "maildir", "cur", fmt.Sprintf("%d.M%d.test:2,S", 1700000000+i, i))
		}
		os.WriteFile(name, mailN(i, "", size), 0o600)
	}
}

// runUntil polls until the Maildir is empty, waiting as the engine says
// the output asked, within a bound of polls and time; it returns the
// polls' stats added up.
func (r *engineRig) runUntil(t *testing.T, maxPolls int, maxTime time.Duration) engine.Stats {
	t.Helper()
	var total engine.Stats
	deadline := time.Now().Add(maxTime)
	for poll := 0; poll < maxPolls && time.Now().Before(deadline); poll++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := r.e.PollOnce(ctx, "old")
		cancel()
		if err != nil {
			t.Fatalf("poll %d: %v", poll, err)
		}
		total.Add(st)
		if r.left() == 0 {
			return total
		}
		time.Sleep(min(max(r.e.OutputWait("gmail"), 100*time.Millisecond), time.Until(deadline)))
	}
	t.Fatalf("%d messages still at the source after the polls: %v", r.left(), total)
	return total
}

// left is how many messages the Maildir holds.
func (r *engineRig) left() int {
	n := 0
	for _, d := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(r.dir, "maildir", d))
		n += len(ents)
	}
	return n
}

// checkOnce checks that Gmail holds messages from..to-1 once each, with
// their dates, the config's label, the script's, INBOX, and UNREAD or
// STARRED as the Maildir flags had it.
func (r *engineRig) checkOnce(t *testing.T, from, to int) {
	t.Helper()
	byName := map[string]string{}
	for _, l := range r.fake.Labels() {
		byName[l.ID] = l.Name
	}
	copies := map[string]int{}
	for _, m := range r.fake.Messages() {
		copies[m.MessageID]++
	}
	for i := from; i < to; i++ {
		id := fmt.Sprintf("m%d@example.org", i)
		if copies[id] != 1 {
			t.Errorf("%s: %d copies in Gmail", id, copies[id])
			continue
		}
		m, _ := r.fake.Find(id)
		var names []string
		for _, l := range m.LabelIDs {
			names = append(names, byName[l])
		}
		want := []string{"Imported", "INBOX"}
		if i%4 != 0 {
			want = append(want, "UNREAD")
		}
		if i%20 == 0 {
			want = append(want, "STARRED")
		}
		if i%3 == 0 {
			want = append(want, "Work", "Lists/Weekly")
		}
		if !slices.Equal(names, want) || !m.InternalDate.Equal(date(i)) {
			t.Errorf("%s: labels %v dated %v; want %v dated %v", id, names, m.InternalDate, want, date(i))
		}
		if strings.Contains(strings.ToLower(string(m.Raw)), "x-mailflow-labels") {
			t.Errorf("%s: the labels field reached Gmail", id)
		}
	}
	if len(copies) != to-from {
		t.Errorf("Gmail holds %d messages, want %d", len(copies), to-from)
	}
}

// A Maildir → a script that labels → Gmail, with a 429 storm mid-way: the
// messages the storm meets wait at their source (deferred, not
// quarantined), the output is left alone as long as asked, and when the
// storm ends every message is in Gmail once, with its labels and date.
func TestStormMidway(t *testing.T) {
	stormed := false
	r := newEngineRig(t, time.Hour, "", func(s *gmailtest.Server, n int) {
		if n == 10 && !stormed {
			stormed = true
			s.StormFor(1500*time.Millisecond, time.Second)
		}
	})
	r.seed(1, 41, 200)
	total := r.runUntil(t, 20, 60*time.Second)
	if total.Delivered != 40 || total.Quarantined != 0 || total.Deferred == 0 {
		t.Fatalf("stats %v: want 40 delivered, none quarantined, some deferred by the storm", total)
	}
	r.checkOnce(t, 1, 41)
	c := statuses(r.fake)
	if c["messages.import 429"] == 0 || c["messages.import 429"] > 8 {
		t.Fatalf("%d imports answered 429: want the storm met, and not hammered (replies %v)", c["messages.import 429"], c)
	}
	if c["labels.list 200"] != 1 {
		t.Fatalf("labels listed %d times", c["labels.list 200"])
	}
	if !strings.Contains(r.log.String(), "asked to be left alone") {
		t.Fatal("the engine did not say it waits as asked")
	}
}

// Secrets never reach the log: not the access tokens (across a refresh,
// and a token Gmail refused), not the refresh token, not the client
// secret, not a resumable session's URI; while the log says what
// happened (debug level).
func TestSecretsNeverLogged(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	os.WriteFile(secretFile, []byte("s3cr3t-client-value\n"), 0o600)
	r := newEngineRig(t, 2*time.Second, fmt.Sprintf("client_secret_file = %q\nresumable_above = 65536\n", secretFile), nil)
	var secrets []string
	keep := func() {
		tok, err := oauth.NewStore(r.state).Load("gmail")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	}
	keep()
	r.seed(1, 4, 200)
	r.runUntil(t, 5, 20*time.Second)
	r.seed(4, 6, 200<<10) // resumable; one cut short and resumed
	r.fake.DropUpload(1, 70<<10)
	r.runUntil(t, 5, 20*time.Second)
	keep()
	r.fake.RefuseTokensSeen() // revoked at Google's end before its expiry: refreshed
	r.seed(6, 9, 200)
	r.runUntil(t, 5, 20*time.Second)
	keep()
	time.Sleep(1200 * time.Millisecond) // within refresh_before of expiry: refreshed ahead
	r.seed(9, 12, 200)
	r.fake.DropReply(1) // one in doubt
	r.runUntil(t, 10, 30*time.Second)
	keep()
	r.checkOnce(t, 1, 12)
	secrets = append(secrets, r.fake.TokensSeen()...)
	secrets = append(secrets, r.fake.UploadIDs()...)
	secrets = append(secrets, "s3cr3t-client-value")
	log := r.log.String()
	if os.Getenv("GMAIL_TEST_SHOW_LOG") != "" {
		t.Log(log)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			t.Fatalf("the log holds a secret (%d bytes)", len(s))
		}
	}
	for _, said := range []string{"refreshing it", "resuming", "in doubt", "imported"} {
		if !strings.Contains(log, said) {
			t.Errorf("the log does not say %q: the run did not go through what it should have", said)
		}
	}
	if r.as.Refreshes() < 2 || len(r.fake.UploadIDs()) < 2 || len(r.fake.TokensSeen()) < 3 {
		t.Fatalf("refreshes %d, upload sessions %d, tokens %d", r.as.Refreshes(), len(r.fake.UploadIDs()), len(r.fake.TokensSeen()))
	}
}
