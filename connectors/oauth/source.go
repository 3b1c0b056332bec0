package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoginNeeded is the error when no access token can be had without a
// person: nobody logged in, or the refresh token was revoked or lapsed. Its
// text names the command that fixes it. The connector's messages stay at
// their source meanwhile.
type LoginNeeded struct {
	Name, Config string
	Err          error
}

func (e *LoginNeeded) Error() string {
	return fmt.Sprintf("oauth2 for %q: %v; log in again with: mailflow auth login -c %s %s", e.Name, e.Err, e.Config, e.Name)
}

func (e *LoginNeeded) Unwrap() error { return e.Err }

// Source hands one connector's sessions an access token, refreshing it
// ahead of its expiry. Sessions that ask at once share one refresh.
type Source struct {
	cfg    *Config
	store  Store
	name   string // the connector's name, which names its token file
	config string // the config file, for the hint in LoginNeeded
	client *http.Client

	mu     sync.Mutex
	tok    *Token
	forced bool // the server refused the token: refresh on the next ask

	failures atomic.Uint64 // tokens refused by a server, and tokens that could not be had
}

// NewSource is the Source of connector name, whose tokens are in store.
func NewSource(cfg *Config, store Store, name, configPath string) *Source {
	return &Source{cfg: cfg, store: store, name: name, config: configPath, client: &http.Client{Timeout: 30 * time.Second}}
}

// Token returns an access token that is good for at least the config's
// refresh_before, refreshing it first if need be. A *LoginNeeded error
// means a person has to log in again; any other error is temporary.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		t, err := s.store.Load(s.name)
		if err != nil {
			s.failures.Add(1)
			return "", &LoginNeeded{Name: s.name, Config: s.config, Err: err}
		}
		s.tok = t
	}
	if !s.forced && s.tok.AccessToken != "" && time.Until(s.tok.Expiry) > s.cfg.refreshBefore {
		return s.tok.AccessToken, nil
	}
	// "mailflow auth login" may have stored a new login meanwhile (after a
	// revocation, while mailflow runs): take it rather than refresh with a
	// refresh token that is no good.
	if t, err := s.store.Load(s.name); err == nil && t.RefreshToken != s.tok.RefreshToken {
		s.tok, s.forced = t, false
		if t.AccessToken != "" && time.Until(t.Expiry) > s.cfg.refreshBefore {
			return t.AccessToken, nil
		}
	}
	err := s.refresh(ctx)
	if err == nil {
		s.forced = false
		return s.tok.AccessToken, nil
	}
	var ln *LoginNeeded
	if !errors.As(err, &ln) && !s.forced && time.Now().Before(s.tok.Expiry) {
		// The provider is down for now, and the token is still good.
		return s.tok.AccessToken, nil
	}
	s.failures.Add(1)
	return "", err
}

// Invalidate says the server refused the last token: the next Token
// refreshes it, once, before the connector gives up.
func (s *Source) Invalidate() {
	s.failures.Add(1)
	s.mu.Lock()
	s.forced = true
	s.mu.Unlock()
}

// Failures counts the tokens a server refused and the times no token
// could be had (for mailflow_auth_failures_total).
func (s *Source) Failures() uint64 { return s.failures.Load() }

// Status is the token as last loaded or refreshed (a copy), for metrics
// and health; nil before the first Token.
func (s *Source) Status() *Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		return nil
	}
	t := *s.tok
	return &t
}

// refresh trades the refresh token for a new access token (RFC 6749 6),
// keeps a rotated refresh token, and records the outcome in the token file.
func (s *Source) refresh(ctx context.Context) error {
	if s.tok.RefreshToken == "" {
		return &LoginNeeded{Name: s.name, Config: s.config, Err: errors.New("the token has expired and there is no refresh token")}
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.tok.RefreshToken}, "client_id": {s.cfg.ClientID}}
	if s.cfg.secret != "" {
		form.Set("client_secret", s.cfg.secret)
	}
	if s.cfg.scopeRefresh {
		// Microsoft's v2 endpoint issues a token for the scopes asked for.
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	got, err := s.post(ctx, form)
	now := time.Now().UTC()
	if err != nil {
		// A refresh given up because mailflow is stopping says nothing
		// about the account: it must not replace the error a user needs
		// to see in "mailflow auth status" (invalid_grant, say).
		if ctx.Err() == nil {
			s.tok.LastError = err.Error()
			_ = s.store.Save(s.name, s.tok)
		}
		var re *refusal
		if errors.As(err, &re) && (re.Code == "invalid_grant" || re.Code == "invalid_client" || re.Code == "unauthorized_client") {
			return &LoginNeeded{Name: s.name, Config: s.config, Err: err}
		}
		return err
	}
	s.tok.AccessToken, s.tok.Expiry = got.AccessToken, now.Add(time.Duration(got.ExpiresIn)*time.Second)
	if got.RefreshToken != "" && got.RefreshToken != s.tok.RefreshToken {
		s.tok.RefreshToken, s.tok.RefreshIssued = got.RefreshToken, now
	}
	if got.Scope != "" {
		s.tok.Scopes = strings.Fields(got.Scope)
	}
	s.tok.LastRefresh, s.tok.LastError = now, ""
	if err := s.store.Save(s.name, s.tok); err != nil {
		// A rotated refresh token that is not stored is lost at the next
		// start; say so loudly, but use the access token.
		return fmt.Errorf("oauth2: refreshed, but could not store the token: %w", err)
	}
	return nil
}

// tokenReply is a token endpoint's answer (RFC 6749 5.1, 5.2).
type tokenReply struct {
	AccessToken      string `json:"access_token"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// refusal is a token endpoint's error reply.
type refusal struct {
	Code, Description string
}

func (r *refusal) Error() string {
	if r.Description != "" {
		return fmt.Sprintf("the provider refused the refresh: %s (%s)", r.Code, r.Description)
	}
	return "the provider refused the refresh: " + r.Code
}

func (s *Source) post(ctx context.Context, form url.Values) (*tokenReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauth2 refresh: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("oauth2 refresh: %w", err)
	}
	var r tokenReply
	jerr := json.Unmarshal(body, &r)
	switch {
	case r.Error != "":
		return nil, &refusal{Code: r.Error, Description: r.ErrorDescription}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("oauth2 refresh: %s from %s", resp.Status, req.URL.Host)
	case jerr != nil || r.AccessToken == "":
		return nil, fmt.Errorf("oauth2 refresh: the provider's answer has no access token")
	}
	return &r, nil
}
