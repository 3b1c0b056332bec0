// Package oauthtest is a small but real OAuth 2.0 authorization server for
// tests, on 127.0.0.1: the authorization-code flow with PKCE (S256), the
// device flow, refresh with rotation (a refresh token works once), expiry,
// revocation, and token introspection (RFC 7662) for a mail server to
// check the tokens with. Every login is approved for the account the test
// names: there is no one to click.
package oauthtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth"
)

// Server is a running authorization server.
type Server struct {
	URL string // http://127.0.0.1:PORT

	mu        sync.Mutex
	account   string
	accessTTL time.Duration
	codes     map[string]grant   // authorization codes
	devices   map[string]*device // by device code
	access    map[string]time.Time
	refresh   map[string]bool // refresh token → still valid
	refreshes int
	tokenLen  int // 0: short tokens
	srv       *http.Server
	grace     time.Duration // see IntrospectGrace

	refreshScope string // the scope parameter of the last refresh
}

// RefreshScope is the scope parameter the last refresh grant carried.
func (s *Server) RefreshScope() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshScope
}

// IntrospectGrace lets a mail server's introspection (not Valid) take a
// token this long past its expiry: Dovecot holds an AUTH back for up to
// 15 s after failed logins from the same address (its auth penalty), which
// would outlast a token of a few seconds.
func (s *Server) IntrospectGrace(d time.Duration) {
	s.mu.Lock()
	s.grace = d
	s.mu.Unlock()
}

// LongTokens makes access tokens n characters long (Microsoft's are over
// a thousand): longer than a POP3 AUTH line may be.
func (s *Server) LongTokens(n int) {
	s.mu.Lock()
	s.tokenLen = n
	s.mu.Unlock()
}

type grant struct {
	challenge, redirect, scope string
}

type device struct {
	user     string
	approved bool
	scope    string
}

// New starts a server on a free port of 127.0.0.1 that logs every user
// in as account, with access tokens that last ttl.
func New(account string, ttl time.Duration) (*Server, error) {
	return NewAt("127.0.0.1:0", account, ttl)
}

// NewAt is New on the address a mail server was told to ask
// (MAILFLOW_TEST_OAUTH, for Dovecot's oauth2 passdb).
func NewAt(addr, account string, ttl time.Duration) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), account: account, accessTTL: ttl,
		codes: map[string]grant{}, devices: map[string]*device{}, access: map[string]time.Time{}, refresh: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/device", s.device)
	mux.HandleFunc("/introspect", s.introspect)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Valid reports whether an access token is known and not expired.
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[token]
	return ok && time.Now().Before(exp)
}

// Refreshes is how many refresh grants were answered with tokens.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// RevokeAll makes every refresh and access token invalid (a password
// change, an admin's revocation).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.refresh)
	clear(s.access)
}

// Approve lets the device flow with this user code through.
func (s *Server) Approve(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.user == userCode {
			d.approved = true
			return true
		}
	}
	return false
}

func random() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// authorize approves at once and sends the browser back with a code.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Hostname() != "127.0.0.1" || q.Get("response_type") != "code" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		back.Set("error", "invalid_request")
		back.Set("error_description", "PKCE with S256 is required")
	} else {
		code := random()
		s.mu.Lock()
		s.codes[code] = grant{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), scope: q.Get("scope")}
		s.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	code, user := random(), hex.EncodeToString([]byte(random()))[:8]
	s.mu.Lock()
	s.devices[code] = &device{user: user, scope: r.Form.Get("scope")}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"device_code": code, "user_code": user,
		"verification_uri": s.URL + "/activate", "expires_in": 300, "interval": 1})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f := r.Form
	s.mu.Lock()
	defer s.mu.Unlock()
	scope := ""
	switch f.Get("grant_type") {
	case "authorization_code":
		g, ok := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code"))
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if !ok || g.redirect != f.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "unknown code, or a verifier that does not match its challenge"})
			return
		}
		scope = g.scope
	case "urn:ietf:params:oauth:grant-type:device_code":
		d, ok := s.devices[f.Get("device_code")]
		switch {
		case !ok:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "expired_token"})
			return
		case !d.approved:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "authorization_pending"})
			return
		}
		delete(s.devices, f.Get("device_code"))
		scope = d.scope
	case "refresh_token":
		if !s.refresh[f.Get("refresh_token")] {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "the refresh token is not valid"})
			return
		}
		delete(s.refresh, f.Get("refresh_token")) // rotation: it works once
		scope = f.Get("scope")
		s.refreshScope = scope
		s.refreshes++
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	access, refresh := random(), random()
	for len(access) < s.tokenLen {
		access += random()
	}
	if s.tokenLen > 0 {
		access = access[:s.tokenLen]
	}
	s.access[access] = time.Now().Add(s.accessTTL)
	s.refresh[refresh] = true
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "token_type": "Bearer", "refresh_token": refresh,
		"expires_in": int(s.accessTTL.Seconds()), "scope": scope})
}

// introspect answers RFC 7662 for a mail server checking a token.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	tok := r.Form.Get("token")
	if tok == "" {
		tok = r.Header.Get("Authorization")
		if len(tok) > 7 && tok[:7] == "Bearer " {
			tok = tok[7:]
		}
	}
	s.mu.Lock()
	exp, ok := s.access[tok]
	grace := s.grace
	s.mu.Unlock()
	if !ok || time.Now().After(exp.Add(grace)) {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": true, "username": s.account, "email": s.account, "exp": exp.Unix()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// DeviceLogin runs oauth.LoginDevice against s and approves the code it
// prints, as a person at another device would.
func (s *Server) DeviceLogin(ctx context.Context, cfg *oauth.Config) (*oauth.Token, error) {
	pr, pw := io.Pipe()
	type result struct {
		tok *oauth.Token
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := oauth.LoginDevice(ctx, cfg, pw)
		pw.Close()
		done <- result{tok, err}
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 1 {
			s.Approve(f[0])
		}
	}
	r := <-done
	return r.tok, r.err
}

// LogIn does what "mailflow auth login --device" does for the connector
// name: a device login with cfg, approved, its tokens saved in stateDir.
func (s *Server) LogIn(t testing.TB, cfg *oauth.Config, stateDir, name string) {
	t.Helper()
	tok, err := s.DeviceLogin(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := oauth.NewStore(stateDir).Save(name, tok); err != nil {
		t.Fatal(err)
	}
}

// Issue makes an access token as a grant would, for a test that talks to
// a mail server itself.
func (s *Server) Issue() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	access := random()
	s.access[access] = time.Now().Add(s.accessTTL)
	return access, nil
}
