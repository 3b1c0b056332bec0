package sasl

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// The parts of an exchange that POP3 (RFC 5034) and SMTP (RFC 4954) share;
// each protocol reads its own replies around them.

// Command starts m and returns the AUTH command line: the mechanism, and its
// initial response in base64 when it has one ("=" for an empty one).
func Command(m Mechanism) (string, error) {
	ir, err := m.Start()
	if err != nil {
		return "", err
	}
	if ir == nil {
		return "AUTH " + m.Name(), nil
	}
	enc := "="
	if len(ir) > 0 {
		enc = base64.StdEncoding.EncodeToString(ir)
	}
	return "AUTH " + m.Name() + " " + enc, nil
}

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
