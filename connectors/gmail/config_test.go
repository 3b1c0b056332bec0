package gmail_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// The sample config, put in a config of its own, passes what "mailflow
// check" does (as plugins/all's test does for every connector): read
// strictly, provisioned and initialised, with no warning. Its values are
// the defaults.
func TestSampleConfigPassesCheck(t *testing.T) {
	sample := (&gmail.Output{}).SampleConfig()
	dir := t.TempDir()
	path := filepath.Join(dir, "mailflow.toml")
	src := "state_dir = \"state\"\n\n" + sample + `
[[input]]
name = "in"
type = "maildir"
path = "in"
pipeline = "main"

[[pipeline]]
name = "main"
outputs = ["gmail"]
`
	os.WriteFile(path, []byte(src), 0o600)
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s, err := engine.Build(cfg, plugins.Default, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if log.Len() > 0 {
		t.Fatalf("the check warned:\n%s", log.String())
	}
	got := cfg.Output("gmail").Plugin.(*gmail.Output)
	def := &gmail.Output{Username: "me@gmail.com"}
	def.ClientID = "x"
	if err := def.Init(); err != nil {
		t.Fatal(err)
	}
	if got.MaxMessageSize != def.MaxMessageSize || got.ResumableAbove != def.ResumableAbove ||
		got.QuotaUnitsPerSecond != def.QuotaUnitsPerSecond || got.MaxConcurrent != def.MaxConcurrent ||
		got.LabelsHeader != def.LabelsHeader || got.InternalDateSource != def.InternalDateSource ||
		strings.Join(got.Scopes, " ") != gmail.ScopeModify || got.Provider != "google" {
		t.Fatalf("the sample's values are not the defaults:\n%+v\n%+v", got, def)
	}

	bad := strings.Replace(src, "unread = true", "unread = true\nlables = [\"x\"]", 1)
	os.WriteFile(path, []byte(bad), 0o600)
	if _, err := config.Load(path, plugins.Default); err == nil || !strings.Contains(err.Error(), "lables") {
		t.Fatalf("an unknown key: %v", err)
	}
}

// Init refuses what cannot work, saying why.
func TestInitRefuses(t *testing.T) {
	cases := []struct {
		name string
		set  func(*gmail.Output)
		says string
	}{
		{"no username", func(o *gmail.Output) { o.Username = "" }, "username"},
		{"another provider", func(o *gmail.Output) { o.Provider = "microsoft" }, "google"},
		{"no client id", func(o *gmail.Output) { o.ClientID = "" }, "client_id"},
		{"scopes that cannot import", func(o *gmail.Output) { o.Scopes = []string{gmail.ScopeReadonly} }, "import"},
		{"a user label without the scope for it", func(o *gmail.Output) {
			o.Scopes, o.Labels = []string{gmail.ScopeInsert}, []string{"Work"}
		}, "Work"},
		{"an empty label", func(o *gmail.Output) { o.Labels = []string{" "} }, "empty"},
		{"http elsewhere", func(o *gmail.Output) { o.APIURL = "http://gmail.example.com" }, "https"},
		{"ftp", func(o *gmail.Output) { o.APIURL = "ftp://127.0.0.1" }, "https"},
		{"a date source that is none", func(o *gmail.Output) { o.InternalDateSource = "header" }, "internal_date_source"},
		{"a header name that is none", func(o *gmail.Output) { o.LabelsHeader = "X-Labels:" }, "labels_header"},
		{"a budget below one import", func(o *gmail.Output) { o.QuotaUnitsPerSecond = 10 }, "quota_units_per_second"},
		{"a timeout that is none", func(o *gmail.Output) { o.Timeout = "soon" }, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := &gmail.Output{Username: "me@gmail.com"}
			o.ClientID = "x"
			tc.set(o)
			o.Provision(plugin.Env{Name: "gmail", StateDir: t.TempDir()})
			if err := o.Init(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%v; want it to say %q", err, tc.says)
			}
		})
	}
	o := &gmail.Output{Username: "me@gmail.com", APIURL: "http://127.0.0.1:8080/"}
	o.ClientID = "x"
	if err := o.Init(); err != nil {
		t.Fatalf("http to 127.0.0.1: %v", err)
	}
}

// A token refreshed during a run: access tokens of two seconds, refreshed
// ahead of expiry while messages go; none is refused. A token Gmail
// refuses before its expiry is refreshed and the import made again. After
// a revocation the message waits, and the error names the command that
// logs in again.
func TestTokenRefreshDuringRun(t *testing.T) {
	r := newRig(t, rigOptions{ttl: 2 * time.Second, login: true})
	for i := range 12 {
		if _, err := r.deliver(t, newMsg(mailN(i, "", 10)), plugin.Delivery{}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if c := statuses(r.fake); c["messages.import 401"] != 0 || c["messages.import 200"] != 12 {
		t.Fatalf("replies %v", c)
	}
	if r.as.Refreshes() < 2 || len(r.fake.TokensSeen()) < 3 {
		t.Fatalf("%d refreshes, %d tokens over the run", r.as.Refreshes(), len(r.fake.TokensSeen()))
	}
	// A token just handed out has a second left before it is refreshed
	// ahead: refused by Gmail at once, it is refreshed for the 401.
	if _, err := r.deliver(t, newMsg(mailN(19, "", 10)), plugin.Delivery{}); err != nil {
		t.Fatal(err)
	}
	r.fake.RefuseTokensSeen()
	if _, err := r.deliver(t, newMsg(mailN(20, "", 10)), plugin.Delivery{}); err != nil {
		t.Fatalf("after Gmail refused the token: %v", err)
	}
	if c := statuses(r.fake); c["messages.import 401"] != 1 {
		t.Fatalf("replies %v", c)
	}
	r.as.RevokeAll()
	r.fake.RefuseTokensSeen()
	_, err := r.deliver(t, newMsg(mailN(21, "", 10)), plugin.Delivery{})
	var ln *oauth.LoginNeeded
	if !errors.As(err, &ln) || plugin.IsPermanent(err) || !strings.Contains(err.Error(), "mailflow auth login -c /etc/mailflow.toml gmail") {
		t.Fatalf("after a revocation: %v", err)
	}
	if n := len(r.fake.Messages()); n != 14 {
		t.Fatalf("%d messages", n)
	}
}
