package sasl

import (
	"encoding/json"
	"fmt"
	"strings"
)

// OAuthError is what a server said in the JSON error challenge of XOAUTH2
// or OAUTHBEARER (RFC 7628 3.2.2): why the token was refused, and which
// scope it wanted.
type OAuthError struct {
	Status string `json:"status"`
	Scope  string `json:"scope"`
	// OpenIDConfiguration points at the provider's discovery document.
	OpenIDConfiguration string `json:"openid-configuration"`
	raw                 string
}

func (e *OAuthError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("the server refused the token: %q", e.raw)
	}
	s := "the server refused the token: status " + e.Status
	if e.Scope != "" {
		s += ", scope " + e.Scope
	}
	return s
}

// parseOAuthError reads an error challenge; a challenge that is no JSON
// is kept as it came.
func parseOAuthError(ch []byte) *OAuthError {
	e := &OAuthError{raw: string(ch)}
	_ = json.Unmarshal(ch, e)
	return e
}

// OAuthRefused returns the server's error challenge of an XOAUTH2 or
// OAUTHBEARER exchange that ended in a refusal, or nil.
func OAuthRefused(m Mechanism) *OAuthError {
	switch m := m.(type) {
	case *xoauth2:
		return m.refused
	case *oauthBearer:
		return m.refused
	}
	return nil
}

// IsOAuth reports whether name is one of the bearer-token mechanisms.
func IsOAuth(name string) bool {
	return strings.EqualFold(name, "XOAUTH2") || strings.EqualFold(name, "OAUTHBEARER")
}

type xoauth2 struct {
	user, token string
	refused     *OAuthError
}

func (x *xoauth2) Name() string { return "XOAUTH2" }
func (x *xoauth2) Start() ([]byte, error) {
	return []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers the server's error challenge (a JSON status) with an empty
// response, as the mechanism requires, so that the server sends its final
// error reply; the challenge is kept for the error report.
func (x *xoauth2) Next(ch []byte) ([]byte, error) {
	x.refused = parseOAuthError(ch)
	return []byte{}, nil
}

// oauthBearer is RFC 7628's OAUTHBEARER: a GS2 header naming the user,
// then key=value pairs separated by ^A.
type oauthBearer struct {
	user, token string
	host        string // optional: the server's name and port, as the client knows them
	port        int
	refused     *OAuthError
}

// NewOAuthBearer is OAUTHBEARER with the server's host and port named in
// the initial response (RFC 7628 3.1 has them optional).
func NewOAuthBearer(user, token, host string, port int) Mechanism {
	return &oauthBearer{user: user, token: token, host: host, port: port}
}

func (o *oauthBearer) Name() string { return "OAUTHBEARER" }
func (o *oauthBearer) Start() ([]byte, error) {
	if strings.ContainsAny(o.user, ",=") {
		// RFC 5801's saslname would escape them; no mail provider has such
		// user names, and a wrong escape would log in as someone else.
		return nil, fmt.Errorf("OAUTHBEARER: user name %q has a ',' or '='", o.user)
	}
	kv := ""
	if o.host != "" {
		kv += "host=" + o.host + "\x01"
	}
	if o.port > 0 {
		kv += fmt.Sprintf("port=%d\x01", o.port)
	}
	return []byte("n,a=" + o.user + ",\x01" + kv + "auth=Bearer " + o.token + "\x01\x01"), nil
}

// Next answers the error challenge with the single ^A that RFC 7628 3.2.3
// asks for, so that the server ends the exchange with its failure reply.
func (o *oauthBearer) Next(ch []byte) ([]byte, error) {
	o.refused = parseOAuthError(ch)
	return []byte{0x01}, nil
}
