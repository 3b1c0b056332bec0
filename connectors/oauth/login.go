package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// LoginCode runs the authorization-code flow with PKCE (RFC 7636) through
// a loopback redirect (RFC 8252 7.3): it prints the URL for a person to open,
// waits on 127.0.0.1 for the provider to send the browser back with a code,
// and trades the code for tokens. It opens no browser itself.
func LoginCode(ctx context.Context, cfg *Config, out io.Writer) (*Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://127.0.0.1:%d/", ln.Addr().(*net.TCPAddr).Port)
	conf := cfg.oauth2Config(redirect)
	verifier := oauth2.GenerateVerifier()
	state := randomString()
	authURL := conf.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier))
	fmt.Fprintf(out, "Open this address in a browser, log in and allow access:\n\n  %s\n\nWaiting for the browser to come back to %s …\n", authURL, redirect)

	type answer struct {
		code string
		err  error
	}
	got := make(chan answer, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var a answer
		switch {
		case q.Get("state") != state:
			http.Error(w, "This is not the answer to mailflow's request.", http.StatusBadRequest)
			return
		case q.Get("error") != "":
			a.err = fmt.Errorf("the provider said %s: %s", q.Get("error"), q.Get("error_description"))
			fmt.Fprintln(w, "mailflow was not given access:", q.Get("error"))
		default:
			a.code = q.Get("code")
			fmt.Fprintln(w, "mailflow has what it needs. You can close this window.")
		}
		select {
		case got <- a:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	select {
	case a := <-got:
		if a.err != nil {
			return nil, a.err
		}
		t, err := conf.Exchange(ctx, a.code, oauth2.VerifierOption(verifier))
		if err != nil {
			return nil, fmt.Errorf("trading the code for tokens: %w", err)
		}
		return fromOAuth2(t, cfg), nil
	case <-ctx.Done():
		return nil, errors.New("no answer from the browser in time")
	}
}

// LoginDevice runs the device flow (RFC 8628) for a machine without a
// browser: it prints a code and an address to enter it at from any device,
// and polls the provider as it asks until the person has allowed access.
//
// Google's device flow grants a short list of scopes, and none of Gmail's
// (https://mail.google.com/, gmail.*): Google answers invalid_scope. It is
// refused here with what to do instead.
func LoginDevice(ctx context.Context, cfg *Config, out io.Writer) (*Token, error) {
	if cfg.endpoint.DeviceAuthURL == "" {
		return nil, errors.New("this provider has no device flow configured (device_url)")
	}
	if cfg.Provider == "google" && slices.ContainsFunc(cfg.Scopes, func(s string) bool {
		return s == "https://mail.google.com/" || strings.HasPrefix(s, "https://www.googleapis.com/auth/gmail.")
	}) {
		return nil, errors.New("Google's device flow does not grant Gmail's scopes; log in without --device where a browser can reach " +
			"this machine's 127.0.0.1 (ssh -L PORT:127.0.0.1:PORT, PORT from the address it prints), or on another machine " +
			"with the same config, and copy state_dir/tokens/NAME.json here (mode 0600)")
	}
	conf := cfg.oauth2Config("")
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking for a device code: %w", err)
	}
	where := da.VerificationURI
	if da.VerificationURIComplete != "" {
		where = da.VerificationURIComplete
	}
	fmt.Fprintf(out, "On any device, open %s and enter the code\n\n  %s\n\nWaiting …\n", where, da.UserCode)
	t, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("waiting for the device login: %w", err)
	}
	return fromOAuth2(t, cfg), nil
}

func fromOAuth2(t *oauth2.Token, cfg *Config) *Token {
	now := time.Now().UTC()
	tok := &Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: t.Expiry.UTC(), Scopes: cfg.Scopes, RefreshIssued: now, LastRefresh: now}
	if s, ok := t.Extra("scope").(string); ok && s != "" {
		tok.Scopes = strings.Fields(s)
	}
	return tok
}

func randomString() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
