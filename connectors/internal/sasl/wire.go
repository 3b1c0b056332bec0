package sasl

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// The parts of an exchange that POP3 (RFC 5034) and SMTP (RFC 4954) share;
// each protocol reads its own replies around them.

// Respond decodes a base64 challenge and returns m's base64 response. On an
// error the client must cancel the exchange by sending "*".
func Respond(m Mechanism, challenge string) (string, error) {
	ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(challenge))
	if err != nil {
		return "", fmt.Errorf("bad challenge: %w", err)
	}
	resp, err := m.Next(ch)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(resp), nil
}

// Exchange is the client's side of one AUTH exchange on a line protocol.
// An initial response that would make the AUTH line longer than the
// protocol allows (POP3: 255 octets, RFC 5034; SMTP: 512, RFC 4954 4) is
// held back and sent as the answer to the server's first, empty, challenge
// (RFC 4422 5): OAuth tokens are often longer than that.
type Exchange struct {
	m       Mechanism
	pending []byte // the held-back initial response
	held    bool
}

// Begin starts m and returns the exchange and its AUTH line, at most
// maxLine octets long with its CRLF.
func Begin(m Mechanism, maxLine int) (*Exchange, string, error) {
	x := &Exchange{m: m}
	ir, err := m.Start()
	if err != nil {
		return nil, "", err
	}
	if ir == nil {
		return x, "AUTH " + m.Name(), nil
	}
	enc := "="
	if len(ir) > 0 {
		enc = base64.StdEncoding.EncodeToString(ir)
	}
	line := "AUTH " + m.Name() + " " + enc
	if maxLine > 0 && len(line)+2 > maxLine {
		x.pending, x.held = ir, true
		return x, "AUTH " + m.Name(), nil
	}
	return x, line, nil
}

// Answer returns the base64 answer to a continuation's challenge. On an
// error the client must cancel the exchange by sending "*".
func (x *Exchange) Answer(challenge string) (string, error) {
	if x.held {
		x.held = false
		return base64.StdEncoding.EncodeToString(x.pending), nil
	}
	return Respond(x.m, challenge)
}

// Refused adds to a failed AUTH's err what the server's OAuth error
// challenge said, if there was one.
func (x *Exchange) Refused(err error) error {
	if oe := OAuthRefused(x.m); oe != nil {
		return fmt.Errorf("%w (%v)", err, oe)
	}
	return err
}
