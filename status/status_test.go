package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/metrics"
	"github.com/mailflow/mailflow/plugins"
	"github.com/mailflow/mailflow/status"
)

// box is an input whose polls fail while down is set.
type box struct {
	mu   sync.Mutex
	down error
	msgs [][]byte
}

func (b *box) Open(context.Context) (plugin.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down != nil {
		return nil, b.down
	}
	return &boxSession{b}, nil
}

type boxSession struct{ b *box }

func (s *boxSession) List(context.Context) (plugin.Listing, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	l := plugin.Listing{Scheme: "box", Stable: true}
	for i, m := range s.b.msgs {
		l.Items = append(l.Items, plugin.Item{ID: fmt.Sprint(i), Size: int64(len(m)), Ref: i})
	}
	return l, nil
}

func (s *boxSession) Fetch(_ context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		if err := each(it, bytes.NewReader(s.b.msgs[it.Ref.(int)]), nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *boxSession) Commit(_ context.Context, items []plugin.Item) ([]plugin.Item, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.msgs = nil
	return nil, nil
}

func (s *boxSession) Close(context.Context) error { return nil }

// sink is an output that fails while fail is set.
type sink struct {
	mu   sync.Mutex
	fail error
	got  int
}

func (o *sink) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return nil, o.fail
	}
	o.got++
	return nil, nil
}

type rig struct {
	e   *engine.Engine
	t   *status.Tracker
	srv *httptest.Server
	in  *box
	out *sink
}

func newRig(t *testing.T, opts status.Options) *rig {
	t.Helper()
	r := &rig{t: status.NewTracker(), in: &box{}, out: &sink{}}
	reg := &plugins.Registry{}
	reg.AddInput("box", func() plugin.Input { return r.in })
	reg.AddOutput("sink", func() plugin.Output { return r.out })
	conf := filepath.Join(t.TempDir(), "mailflow.toml")
	os.WriteFile(conf, []byte("state_dir = \"state\"\n[[input]]\nname = \"inbox\"\ntype = \"box\"\npipeline = \"p\"\n[[pipeline]]\nname = \"p\"\noutputs = [\"relay\"]\n[[output]]\nname = \"relay\"\ntype = \"sink\"\n"), 0o600)
	cfg, err := config.Load(conf, reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := status.NewServer(r.t, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(s.Handler())
	t.Cleanup(r.srv.Close)
	// Not ready before the engine runs.
	if code, _ := get(t, r.srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before the engine: %d, want 503", code)
	}
	if r.e, err = engine.Open(cfg, reg, slog.New(slog.DiscardHandler), engine.WithObserver(r.t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.e.Close() })
	s.SetEngine(r.e)
	return r
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func health(t *testing.T, r *rig, strict bool) (int, status.Health) {
	t.Helper()
	u := r.srv.URL + "/healthz"
	if strict {
		u += "?strict=1"
	}
	code, body := get(t, u)
	var h status.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return code, h
}

// The health says ok only when mail moves: an input that failed its last
// three polls degrades it, with the error; an output that fails degrades
// it, named; both recover to ok; the strict form answers 503 meanwhile.
func TestHealthTellsTheTruth(t *testing.T) {
	r := newRig(t, status.Options{})
	ctx := context.Background()
	if code, _ := get(t, r.srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz once running: %d", code)
	}
	if _, h := health(t, r, false); h.Status != "ok" || h.Inputs[0].State != "waiting" {
		t.Fatalf("before any poll: %+v", h)
	}
	r.in.down = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	for i := 1; i <= 3; i++ {
		r.e.PollOnce(ctx, "inbox")
		code, h := health(t, r, true)
		if i < 3 && (h.Status != "ok" || code != 200 || h.Inputs[0].Failures != i || !strings.Contains(h.Inputs[0].LastError, "connection refused")) {
			t.Fatalf("after %d failed polls: %d %+v", i, code, h)
		}
		if i == 3 && (h.Status != "degraded" || code != http.StatusServiceUnavailable || h.Inputs[0].State != "failing" || !strings.Contains(strings.Join(h.Problems, " "), "connection refused")) {
			t.Fatalf("after 3 failed polls: %d %+v", code, h)
		}
	}
	if code, h := health(t, r, false); code != 200 || h.Status != "degraded" {
		t.Fatalf("without strict a degraded health answers 200 (for load balancers): %d", code)
	}
	r.in.down = nil
	r.e.PollOnce(ctx, "inbox")
	if _, h := health(t, r, true); h.Status != "ok" || h.Inputs[0].State != "ok" || h.Inputs[0].LastError != "" {
		t.Fatalf("after the input recovered: %+v", h)
	}

	r.in.msgs = enginetest.Mix(2)
	r.out.fail = errors.New("421 4.3.2 too busy")
	r.e.PollOnce(ctx, "inbox")
	code, h := health(t, r, true)
	if code != http.StatusServiceUnavailable || h.Outputs[0].Name != "relay" || h.Outputs[0].State != "backing off" || !strings.Contains(strings.Join(h.Problems, " "), "output relay") {
		t.Fatalf("with the output failing: %d %+v", code, h)
	}
	if h.Inputs[0].Today.Deferred == 0 {
		t.Fatalf("the deferred messages are not counted: %+v", h.Inputs[0].Today)
	}
}

// The overview page shows an input's error in words, with what to do.
func TestOverviewShowsAFailingInputInWords(t *testing.T) {
	r := newRig(t, status.Options{})
	r.in.down = errors.New("dial tcp 127.0.0.1:110: connect: connection refused")
	for range 3 {
		r.e.PollOnce(context.Background(), "inbox")
	}
	code, page := get(t, r.srv.URL+"/")
	if code != 200 || !strings.Contains(page, "connection refused") || !strings.Contains(page, "does not answer on that address") || !strings.Contains(page, `class="state failing"`) {
		t.Fatalf("%d\n%s", code, page)
	}
}

// Without an admin token the page is read-only: no action is offered and
// a forged POST is refused; with it, a POST needs the admin cookie, the
// CSRF token of its session and this origin.
func TestActionsNeedTheAdminAndComeFromThePage(t *testing.T) {
	ro := newRig(t, status.Options{})
	resp, err := http.PostForm(ro.srv.URL+"/quarantine/x/delete", url.Values{"csrf": {"guess"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a POST on a read-only page: %d", resp.StatusCode)
	}

	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("correct-horse-battery-staple\n"), 0o600)
	r := newRig(t, status.Options{AdminTokenFile: token})
	jar := &cookieJar{}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ = c.PostForm(r.srv.URL+"/login", url.Values{"token": {"wrong-wrong-wrong-wrong"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a wrong token: %d", resp.StatusCode)
	}
	resp, _ = c.PostForm(r.srv.URL+"/login", url.Values{"token": {"correct-horse-battery-staple"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the right token: %d", resp.StatusCode)
	}
	// Logged in, a POST without the page's CSRF token, or from another
	// origin, is refused.
	req, _ := http.NewRequest("POST", r.srv.URL+"/quarantine/x/delete", strings.NewReader("csrf=guess"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ = c.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a POST without the CSRF token: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp, _ = c.Get(r.srv.URL + "/quarantine/all/delete")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no CSRF token on the confirmation page:\n%s", b)
	}
	req, _ = http.NewRequest("POST", r.srv.URL+"/quarantine/all/delete", strings.NewReader("csrf="+string(m[1])))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, _ = c.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a POST from another origin: %d", resp.StatusCode)
	}
	resp.Body.Close()
	req.Header.Set("Origin", r.srv.URL)
	req.Body = io.NopCloser(strings.NewReader("csrf=" + string(m[1])))
	if resp, _ = c.Do(req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the page's own POST: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// cookieJar keeps the cookies of one host.
type cookieJar struct {
	mu sync.Mutex
	c  []*http.Cookie
}

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.c = append(j.c, cs...)
}

func (j *cookieJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.c
}

// An OAuth login without a token it can use (revoked, lapsed) degrades
// the health, named, with what to do.
func TestHealthNamesAnOAuthLoginThatNeedsALogin(t *testing.T) {
	r := newRig(t, status.Options{Auth: func() []metrics.AuthStatus {
		return []metrics.AuthStatus{
			{Connector: "gmail", Expiry: time.Now().Add(30 * time.Minute)},
			{Connector: "m365", Expiry: time.Now().Add(-time.Minute), Error: "the provider refused the refresh: invalid_grant"},
		}
	}})
	_, h := health(t, r, false)
	if h.Status != "degraded" || len(h.OAuth) != 2 || !h.OAuth[0].Healthy || h.OAuth[1].Healthy || !strings.Contains(strings.Join(h.Problems, " "), "m365") {
		t.Fatalf("%+v", h)
	}
}

// A migration's page is served on loopback only, and / leads to it when
// there is no engine to show.
func TestMigrationPage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	page := &status.MailboxProgress{Title: "Migration of imap://me@old.example"}
	if err := status.ServeMigration(ctx, "0.0.0.0:0", page, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a migration's page was served beyond loopback")
	}
	s, err := status.NewServer(status.NewTracker(), status.Options{Migration: page})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	code, body := get(t, srv.URL+"/")
	if code != 200 || !strings.Contains(body, "Migration of imap://me@old.example") || !strings.Contains(body, "surveying the source") {
		t.Fatalf("%d\n%s", code, body)
	}
}
