package sasl

import (
	"encoding/base64"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestCommandCarriesTheInitialResponse(t *testing.T) {
	cases := []struct{ mech, want string }{
		{"plain", "AUTH PLAIN " + b64("\x00tim\x00secret")},
		{"LOGIN", "AUTH LOGIN"},
		{"cram-md5", "AUTH CRAM-MD5"},
		{"xoauth2", "AUTH XOAUTH2 " + b64("user=tim\x01auth=Bearer secret\x01\x01")},
	}
	for _, c := range cases {
		m, err := New(c.mech, "tim", "secret")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Command(m); err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.mech, got, err, c.want)
		}
	}
	if _, err := New("GSSAPI", "tim", "x"); err == nil {
		t.Error("an unknown mechanism was accepted")
	}
}

func TestRespondToChallenges(t *testing.T) {
	// RFC 2195's worked example.
	m, _ := New("CRAM-MD5", "tim", "tanstaaftanstaaf")
	Command(m)
	got, err := Respond(m, " "+b64("<1896.697170952@postoffice.reston.mci.net>")+" ")
	if err != nil || got != b64("tim b913a602c7eda7a495b4e6e7334d3890") {
		t.Errorf("CRAM-MD5: %q %v", got, err)
	}
	// LOGIN answers the user, then the password, then nothing more.
	m, _ = New("LOGIN", "tim", "secret")
	Command(m)
	for _, want := range []string{"tim", "secret"} {
		if got, err := Respond(m, b64("Username:")); err != nil || got != b64(want) {
			t.Errorf("LOGIN: %q %v, want %q", got, err, b64(want))
		}
	}
	if _, err := Respond(m, b64("More:")); err == nil {
		t.Error("LOGIN answered a third challenge")
	}
	// A challenge that is not base64 is an error (the caller then cancels).
	if _, err := Respond(m, "not base64!"); err == nil || !strings.Contains(err.Error(), "bad challenge") {
		t.Errorf("bad base64: %v", err)
	}
	// PLAIN has nothing to say to a challenge.
	m, _ = New("PLAIN", "tim", "secret")
	if _, err := Respond(m, b64("x")); err == nil {
		t.Error("PLAIN answered a challenge")
	}
}
