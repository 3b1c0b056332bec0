package oauth_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
)

func server(t *testing.T, ttl time.Duration) *oauthtest.Server {
	t.Helper()
	s, err := oauthtest.New("me@example.com", ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func config(t *testing.T, s *oauthtest.Server, refreshBefore string) *oauth.Config {
	t.Helper()
	c := &oauth.Config{Provider: "custom", ClientID: "mailflow-test", AuthURL: s.URL + "/authorize", TokenURL: s.URL + "/token",
		DeviceURL: s.URL + "/device", Scopes: []string{"mail"}, RefreshBefore: refreshBefore}
	if err := c.Init(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return c
}

// login runs f, reading its printed instructions line by line and handing
// each to act, as a person at the terminal would.
func login(t *testing.T, f func(io.Writer) (*oauth.Token, error), act func(line string)) *oauth.Token {
	t.Helper()
	pr, pw := io.Pipe()
	var tok *oauth.Token
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		tok, err = f(pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		act(sc.Text())
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The authorization-code flow with PKCE: the printed address, opened by a
// browser-less client that follows the redirect back to the loopback
// listener, gives tokens the server accepts.
func TestLoginWithCodeAndPKCE(t *testing.T) {
	s := server(t, time.Hour)
	cfg := config(t, s, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok := login(t, func(w io.Writer) (*oauth.Token, error) { return oauth.LoginCode(ctx, cfg, w) }, func(line string) {
		if u := strings.TrimSpace(line); strings.HasPrefix(u, s.URL+"/authorize?") {
			if !strings.Contains(u, "code_challenge_method=S256") {
				t.Errorf("no PKCE in %s", u)
			}
			go func() {
				resp, err := http.Get(u) // follows the redirect to 127.0.0.1
				if err == nil {
					resp.Body.Close()
				}
			}()
		}
	})
	if !s.Valid(tok.AccessToken) || tok.RefreshToken == "" || time.Until(tok.Expiry) < 50*time.Minute {
		t.Fatalf("token %+v", tok)
	}
}

// The device flow: the printed code, approved at the server, gives tokens.
func TestLoginWithDeviceCode(t *testing.T) {
	s := server(t, time.Hour)
	cfg := config(t, s, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := regexp.MustCompile(`^\s+([0-9a-f]{8})$`)
	tok := login(t, func(w io.Writer) (*oauth.Token, error) { return oauth.LoginDevice(ctx, cfg, w) }, func(line string) {
		if m := code.FindStringSubmatch(line); m != nil && !s.Approve(m[1]) {
			t.Errorf("no device login with code %s", m[1])
		}
	})
	if !s.Valid(tok.AccessToken) {
		t.Fatalf("token %+v", tok)
	}
}

// A Source refreshes ahead of expiry, stores the rotated refresh token,
// shares one refresh between sessions asking at once, and after a
// revocation asks for a login, naming the command.
func TestSourceRefreshesRotatesAndAsksForLogin(t *testing.T) {
	s := server(t, 3*time.Second)
	cfg := config(t, s, "2s")
	ctx := context.Background()
	store := oauth.NewStore(t.TempDir())
	first := login(t, func(w io.Writer) (*oauth.Token, error) { return oauth.LoginDevice(ctx, cfg, w) }, func(line string) {
		if f := strings.Fields(line); len(f) == 1 && len(f[0]) == 8 {
			s.Approve(f[0])
		}
	})
	if err := store.Save("inbox", first); err != nil {
		t.Fatal(err)
	}
	src := oauth.NewSource(cfg, store, "inbox", "/etc/mailflow.toml")
	if tok, err := src.Token(ctx); err != nil || tok != first.AccessToken {
		t.Fatalf("a fresh token is used as it is: %q %v", tok, err)
	}
	time.Sleep(1100 * time.Millisecond) // now within refresh_before of expiry
	tok, err := src.Token(ctx)
	if err != nil || tok == first.AccessToken || !s.Valid(tok) {
		t.Fatalf("refresh ahead of expiry: %q %v", tok, err)
	}
	saved, err := store.Load("inbox")
	if err != nil || saved.RefreshToken == first.RefreshToken || saved.AccessToken != tok || saved.LastRefresh.IsZero() {
		t.Fatalf("the rotated refresh token was not stored: %+v %v", saved, err)
	}

	// Ten sessions find the token refused at once: one refresh.
	before := s.Refreshes()
	src.Invalidate()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := src.Token(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := s.Refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes for ten sessions at once, want 1", n)
	}

	s.RevokeAll()
	src.Invalidate()
	_, err = src.Token(ctx)
	var ln *oauth.LoginNeeded
	if !errors.As(err, &ln) || !strings.Contains(err.Error(), "mailflow auth login -c /etc/mailflow.toml inbox") {
		t.Fatalf("after a revocation: %v", err)
	}
	if saved, _ := store.Load("inbox"); !strings.Contains(saved.LastError, "invalid_grant") {
		t.Fatalf("the token file does not say what went wrong: %+v", saved)
	}
	// A refresh given up because mailflow is stopping leaves that error for
	// "mailflow auth status" to show.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	src.Invalidate()
	src.Token(cancelled)
	if saved, _ := store.Load("inbox"); !strings.Contains(saved.LastError, "invalid_grant") {
		t.Fatalf("a cancelled refresh replaced the recorded error: %q", saved.LastError)
	}
	if got := s.RefreshScope(); got != "mail" {
		t.Fatalf("the refresh carried scope %q, want the configured \"mail\" (Microsoft wants them)", got)
	}

	// A person runs "mailflow auth login" while mailflow runs: the next
	// ask takes the new login, without a restart.
	again, err := s.DeviceLogin(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save("inbox", again); err != nil {
		t.Fatal(err)
	}
	if tok, err := src.Token(ctx); err != nil || !s.Valid(tok) {
		t.Fatalf("after a new login: %q %v", tok, err)
	}
}

// Token files are 0600, written whole, and a corrupt one is named.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	store := oauth.NewStore(dir)
	if _, err := store.Load("x"); !errors.Is(err, oauth.ErrNoToken) {
		t.Fatalf("missing file: %v", err)
	}
	tok := &oauth.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour).UTC().Round(time.Second)}
	for range 3 {
		if err := store.Save("x", tok); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "tokens", "x.json")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tokens")); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	back, err := store.Load("x")
	if err != nil || back.RefreshToken != "r" || !back.Expiry.Equal(tok.Expiry) {
		t.Fatalf("%+v %v", back, err)
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := store.Load("x"); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "auth login") {
		t.Fatalf("corrupt file: %v", err)
	}
	if err := store.Save("../escape", tok); err == nil {
		t.Fatal("a name with a path in it was accepted")
	}
}
