package gmail_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail"
	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// logBuffer is a log a test reads when the run is over.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// rig is an output logged in at a test authorization server, importing
// into a fake Gmail.
type rig struct {
	fake  *gmailtest.Server
	as    *oauthtest.Server
	out   *gmail.Output
	log   *logBuffer
	state string
}

type rigOptions struct {
	ttl       time.Duration // access tokens' life; default an hour
	fake      gmailtest.Options
	configure func(*gmail.Output)
	// login logs in with the device flow, for a refresh token; else an
	// access token is issued and stored (a login takes a second).
	login bool
	// onImport is called with the fake and the number of messages stored
	// after each import.
	onImport func(*gmailtest.Server, int)
}

func newRig(t *testing.T, ro rigOptions) *rig {
	t.Helper()
	if ro.ttl == 0 {
		ro.ttl = time.Hour
	}
	as, err := oauthtest.New("me@example.com", ro.ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	r := &rig{as: as, log: &logBuffer{}, state: t.TempDir()}
	ro.fake.Valid = as.Valid
	ro.fake.User = "me@example.com"
	if ro.onImport != nil {
		ro.fake.OnImport = func(n int) { ro.onImport(r.fake, n) }
	}
	if r.fake, err = gmailtest.New(ro.fake); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fake.Close() })
	o := &gmail.Output{Username: "me@example.com", APIURL: r.fake.URL}
	o.Config = oauth.Config{Provider: "custom", ClientID: "mailflow-test", AuthURL: as.URL + "/authorize",
		TokenURL: as.URL + "/token", DeviceURL: as.URL + "/device", Scopes: []string{"mail"}, RefreshBefore: "1s"}
	if ro.configure != nil {
		ro.configure(o)
	}
	if err := o.Provision(plugin.Env{Name: "gmail", Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		StateDir: r.state, ConfigPath: "/etc/mailflow.toml"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	if ro.login {
		as.LogIn(t, o.OAuth(), r.state, "gmail")
	} else {
		tok, _ := as.Issue()
		if err := oauth.NewStore(r.state).Save("gmail", &oauth.Token{AccessToken: tok, Expiry: time.Now().Add(ro.ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	r.out = o
	return r
}

// date is message i's Date.
func date(i int) time.Time {
	return time.Date(2023, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 97 * time.Minute)
}

// mailN is message i, with extra header lines (each ending in CRLF) and
// a body of at least size bytes.
func mailN(i int, extra string, size int) []byte {
	var body strings.Builder
	fmt.Fprintf(&body, "message %d\r\n", i)
	for body.Len() < size {
		body.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	return []byte(fmt.Sprintf("Message-ID: <m%d@example.org>\r\nDate: %s\r\nFrom: Old <old@example.org>\r\nTo: me@example.com\r\nSubject: message %d\r\n%s\r\n%s",
		i, date(i).Format(time.RFC1123Z), i, extra, body.String()))
}

func newMsg(b []byte, flags ...string) *message.Message {
	m := message.New(b, message.Source{Input: "old", ID: fmt.Sprintf("%x", len(b))})
	m.Flags = flags
	return m
}

// deliver delivers m once and returns what it placed.
func (r *rig) deliver(t *testing.T, m *message.Message, d plugin.Delivery) (string, error) {
	t.Helper()
	var placed string
	d.Placed = func(where string) { placed = where }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.out.Deliver(ctx, m, d)
	return placed, err
}

// labelsOf are the names of a stored message's labels, sorted as given.
func (r *rig) labelsOf(m gmailtest.Message) []string {
	byID := map[string]string{}
	for _, l := range r.fake.Labels() {
		byID[l.ID] = l.Name
	}
	var out []string
	for _, id := range m.LabelIDs {
		out = append(out, byID[id])
	}
	return out
}

// statuses counts the fake's replies by op and status ("messages.import 429").
func statuses(s *gmailtest.Server) map[string]int {
	out := map[string]int{}
	for _, r := range s.Requests() {
		out[fmt.Sprintf("%s %d", r.Op, r.Status)]++
	}
	return out
}
