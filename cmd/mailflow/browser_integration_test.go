//go:build integration

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// The status page in a real browser (headless Chromium, driven over the
// DevTools protocol by chromedp, so the test is Go like every other): a
// mailflow with a POP3 input that cannot connect, a healthy Maildir input
// and a message a script quarantined. The page shows the failing input's
// error in words and lists the message; the message's text, which holds a
// <script>, is shown as text and nothing runs; the admin resends it and it
// arrives. Without an admin token there is no resend, and a forged POST is
// refused.
func TestStatusPageInABrowser(t *testing.T) {
	chromium := browser(t)
	shots := screenshotDir(t)
	dir := t.TempDir()
	hold := func(n int) []byte {
		return []byte(fmt.Sprintf("From: Mallory <m@example.org>\r\nTo: me@example.net\r\nSubject: hold me <script>%d</script>\r\nMessage-ID: <hold-%d@example.org>\r\n"+
			"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"+
			"--b\r\nContent-Type: text/plain\r\n\r\nHello <script>document.title='pwned'</script> there\r\n"+
			"--b\r\nContent-Type: text/html\r\n\r\n<p>Hello<script>document.title='pwned'</script><img src=\"http://127.0.0.1:1/track\"></p>\r\n--b--\r\n", n, n))
	}
	if err := enginetest.WriteMaildir(filepath.Join(dir, "inbox"), [][]byte{enginetest.Message(enginetest.Plain, 1, 0), hold(1)}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "hold.lua"), []byte(`
-- The first time a message asking to be held is seen, it goes to the
-- quarantine; resent, it goes on.
function filter(msg)
  local s = msg:header("Subject") or ""
  if s:find("hold me", 1, true) and not store.get("held:" .. msg.message_id) then
    store.set("held:" .. msg.message_id, true)
    return quarantine("held for a person to look at")
  end
end
`), 0o600)
	token := filepath.Join(dir, "admin-token")
	os.WriteFile(token, []byte("a-long-enough-admin-token\n"), 0o600)
	addr := freeAddr(t)
	conf := func(admin bool) string {
		extra := ""
		if admin {
			extra = fmt.Sprintf("admin_token_file = %q\n", token)
		}
		path := filepath.Join(dir, "mailflow.toml")
		os.WriteFile(path, []byte(fmt.Sprintf(`state_dir = "state"
[http]
listen = %q
degraded_after = 1
%s
[[input]]
name = "mailbox"
type = "pop3"
address = "127.0.0.1:1"
tls = "none"
allow_plaintext_auth = true
username = "me"
password = "secret"
pipeline = "main"
schedule = "1s"

[[input]]
name = "inbox"
type = "maildir"
path = "inbox"
pipeline = "main"
schedule = "1s"

[[pipeline]]
name = "main"
scripts = ["hold.lua"]
outputs = ["archive"]

[[output]]
name = "archive"
type = "maildir"
path = "archive"
`, addr, extra)), 0o600)
		return path
	}
	start := func(admin bool) func() {
		cmd := exec.Command(binary, "run", "--log-level", "warn", "-c", conf(admin))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
		waitUntil(t, "mailflow to be ready", func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
		return stop
	}
	stop := start(true)
	waitUntil(t, "the held message in the quarantine", func() bool { return quarantined(t, dir) == 1 })
	waitUntil(t, "the POP3 input to fail", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz?strict=1")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusServiceUnavailable
	})

	ctx := chrome(t, chromium)
	b := &page{t: t, ctx: ctx}
	base := "http://" + addr
	b.do(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#inputs")))
	b.shot(filepath.Join(shots, "overview.png"))
	if overview := b.text("#inputs"); !strings.Contains(overview, "connection refused") || !strings.Contains(overview, "does not answer on that address") || !strings.Contains(overview, "failing") {
		t.Fatalf("the overview does not show the POP3 input's error in words:\n%s", overview)
	}
	b.do(chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.CSS("input[name=token]"), "a-long-enough-admin-token"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#entries")))
	b.shot(filepath.Join(shots, "quarantine.png"))
	if list := b.text("#entries"); !strings.Contains(list, "hold me <script>1</script>") || !strings.Contains(list, "held for a person to look at") {
		t.Fatalf("the quarantine page does not list the message:\n%s", list)
	}
	b.do(chromedp.Click(chromedp.CSS("#entries a")), chromedp.WaitVisible(chromedp.CSS("#text")))
	if title, text := b.title(), b.text("#text"); title == "pwned" || !strings.Contains(text, "<script>document.title='pwned'</script>") {
		t.Fatalf("the message's script ran or its text was not shown as text: title %q, text %q", title, text)
	}
	b.do(chromedp.Click(chromedp.CSS(`a[href$="/resend"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if flash, list := b.text(".flash"), b.text("#entries"); !strings.Contains(flash, "delivered") || !strings.Contains(list, "The quarantine is empty") {
		t.Fatalf("after the resend: %q\n%s", flash, list)
	}
	if n := archived(t, dir); n != 2 {
		t.Fatalf("%d messages in the archive, want both", n)
	}
	stop()

	// Without an admin token: no resend, and a forged POST is refused.
	enginetest.WriteMaildir(filepath.Join(dir, "inbox"), [][]byte{hold(2)})
	stop = start(false)
	defer stop()
	waitUntil(t, "the second held message", func() bool { return quarantined(t, dir) == 1 })
	b.do(chromedp.Navigate(base+"/quarantine"), chromedp.Click(chromedp.CSS("#entries a")), chromedp.WaitVisible(chromedp.CSS("#text")))
	page := b.html("main")
	if strings.Contains(page, "Resend") {
		t.Fatalf("a read-only page offers a resend:\n%s", page)
	}
	id := strings.TrimPrefix(mustFind(t, page, `/quarantine/`, `/raw`), "/quarantine/")
	resp, err := http.PostForm(base+"/quarantine/"+id+"/resend", url.Values{"csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a forged POST: %d, want 403", resp.StatusCode)
	}
	if quarantined(t, dir) != 1 {
		t.Fatal("the forged POST changed the quarantine")
	}
	t.Logf("screenshots in %s", shots)
}

// browser is Debian's Chromium. In CI it must be there (.ci/testenv
// installs it); elsewhere the test is skipped, saying how to get it.
func browser(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is missing: .ci/testenv install puts Debian's chromium package in")
	}
	t.Skip("no Chromium here: apt-get install chromium (or .ci/testenv install) to run the browser test")
	return ""
}

// screenshotDir keeps the screenshots: MAILFLOW_SCREENSHOTS if set (docs/
// takes one from there), else a directory that outlives the test, for CI
// to keep as artifacts.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("MAILFLOW_SCREENSHOTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	d, err := os.MkdirTemp("", "mailflow-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func chrome(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancel(); cancelAlloc() })
	return ctx
}

// page drives one browser tab.
type page struct {
	t   *testing.T
	ctx context.Context
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatal(err)
	}
}

func get[T any](p *page, a chromedp.Action[T]) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, a)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

func (p *page) text(css string) string { return get(p, chromedp.Text(chromedp.CSS(css))) }
func (p *page) html(css string) string { return get(p, chromedp.OuterHTML(chromedp.CSS(css))) }
func (p *page) title() string          { return get(p, chromedp.Title()) }

// shot keeps a screenshot of the whole page.
func (p *page) shot(path string) {
	p.t.Helper()
	os.WriteFile(path, get(p, chromedp.FullScreenshot(100)), 0o644)
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func quarantined(t *testing.T, dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "state", "quarantine", "*.json"))
	return len(files)
}

func archived(t *testing.T, dir string) int {
	msgs, _ := enginetest.ReadMaildir(filepath.Join(dir, "archive"))
	return len(msgs)
}

// mustFind returns the first part of s from the first of from to the
// first of to after it.
func mustFind(t *testing.T, s, from, to string) string {
	t.Helper()
	i := strings.Index(s, from)
	if i < 0 {
		t.Fatalf("no %q in\n%s", from, s)
	}
	j := strings.Index(s[i:], to)
	if j < 0 {
		t.Fatalf("no %q after %q", to, from)
	}
	return s[i : i+j]
}
