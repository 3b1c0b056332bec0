// Package sasl has the client side of the SASL mechanisms that mailflow's
// POP3 and SMTP clients speak (RFC 4422): PLAIN (RFC 4616), LOGIN (the
// de facto base64 user/password exchange), CRAM-MD5 (RFC 2195) and XOAUTH2
// and the bearer-token mechanisms XOAUTH2 (Google's and Microsoft's) and
// OAUTHBEARER (RFC 7628).
package sasl

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Mechanism is one client-side SASL exchange.
type Mechanism interface {
	// Name is the mechanism's name as sent in AUTH.
	Name() string
	// Start returns the initial response (nil for none).
	Start() ([]byte, error)
	// Next answers a server challenge.
	Next(challenge []byte) ([]byte, error)
}

// New returns the named mechanism (case-insensitive) for these credentials;
// for XOAUTH2 and OAUTHBEARER the secret is the bearer token.
func New(name, user, secret string) (Mechanism, error) {
	switch strings.ToUpper(name) {
	case "PLAIN":
		return &plain{user, secret}, nil
	case "LOGIN":
		return &login{user: user, pass: secret}, nil
	case "CRAM-MD5":
		return &cramMD5{user, secret}, nil
	case "XOAUTH2":
		return &xoauth2{user: user, token: secret}, nil
	case "OAUTHBEARER":
		return &oauthBearer{user: user, token: secret}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q (supported: PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER)", name)
}

// SendsSecret reports whether the mechanism puts the secret on the wire in a
// form that can be replayed (so it must not go over cleartext).
func SendsSecret(name string) bool { return !strings.EqualFold(name, "CRAM-MD5") }

type plain struct{ user, pass string }

func (p *plain) Name() string                { return "PLAIN" }
func (p *plain) Start() ([]byte, error)      { return []byte("\x00" + p.user + "\x00" + p.pass), nil }
func (p *plain) Next([]byte) ([]byte, error) { return nil, errors.New("PLAIN: unexpected challenge") }

type login struct {
	user, pass string
	step       int
}

func (l *login) Name() string           { return "LOGIN" }
func (l *login) Start() ([]byte, error) { return nil, nil }
func (l *login) Next(ch []byte) ([]byte, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte(l.user), nil
	case 2:
		return []byte(l.pass), nil
	}
	return nil, fmt.Errorf("LOGIN: unexpected challenge %q", ch)
}

type cramMD5 struct{ user, pass string }

func (c *cramMD5) Name() string           { return "CRAM-MD5" }
func (c *cramMD5) Start() ([]byte, error) { return nil, nil }
func (c *cramMD5) Next(ch []byte) ([]byte, error) {
	mac := hmac.New(md5.New, []byte(c.pass))
	mac.Write(ch)
	return []byte(c.user + " " + hex.EncodeToString(mac.Sum(nil))), nil
}
