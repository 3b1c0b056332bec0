package sasl

import (
	"encoding/base64"
	"errors"
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
		if _, got, err := Begin(m, 0); err != nil || got != c.want {
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
	m.Start()
	got, err := Respond(m, " "+b64("<1896.697170952@postoffice.reston.mci.net>")+" ")
	if err != nil || got != b64("tim b913a602c7eda7a495b4e6e7334d3890") {
		t.Errorf("CRAM-MD5: %q %v", got, err)
	}
	// LOGIN answers the user, then the password, then nothing more.
	m, _ = New("LOGIN", "tim", "secret")
	m.Start()
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

// The vectors of RFC 7628 4.1 and 4.3 and of Google's XOAUTH2 page.
func TestOAuthMechanismsMatchTheirSpecs(t *testing.T) {
	m := NewOAuthBearer("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143)
	_, line, err := Begin(m, 0)
	want := "AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
	if err != nil || line != want {
		t.Fatalf("OAUTHBEARER initial response:\n%q\nwant\n%q", line, want)
	}
	// 4.3: the server's error challenge is answered with ^A, and read.
	x, _, _ := Begin(m, 0)
	got, err := x.Answer("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=")
	if err != nil || got != "AQ==" {
		t.Fatalf("answer to the error challenge: %q %v", got, err)
	}
	oe := OAuthRefused(m)
	if oe == nil || oe.Status != "invalid_token" || oe.Scope != "example_scope" || !strings.Contains(oe.OpenIDConfiguration, "openid-configuration") {
		t.Fatalf("error challenge read as %+v", oe)
	}
	if e := x.Refused(errors.New("535 no")); !strings.Contains(e.Error(), "invalid_token") {
		t.Fatalf("the refusal does not say why: %v", e)
	}

	g, _ := New("XOAUTH2", "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
	_, line, _ = Begin(g, 0)
	if want := "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="; line != want {
		t.Fatalf("XOAUTH2:\n%q\nwant\n%q", line, want)
	}
	x, _, _ = Begin(g, 0)
	if got, _ := x.Answer(b64(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`)); got != "" {
		t.Fatalf("XOAUTH2 answers an error challenge with an empty line, not %q", got)
	}
	if oe := OAuthRefused(g); oe == nil || oe.Status != "401" || oe.Scope != "https://mail.google.com/" {
		t.Fatalf("XOAUTH2 error read as %+v", oe)
	}
}

// A token too long for the AUTH line (POP3: 255 octets) is sent after the
// server's empty challenge.
func TestLongInitialResponseWaitsForTheContinuation(t *testing.T) {
	token := strings.Repeat("t", 1500)
	m, _ := New("XOAUTH2", "me@example.com", token)
	x, line, err := Begin(m, 255)
	if err != nil || line != "AUTH XOAUTH2" {
		t.Fatalf("line %q %v", line, err)
	}
	got, err := x.Answer("")
	if err != nil || got != b64("user=me@example.com\x01auth=Bearer "+token+"\x01\x01") {
		t.Fatalf("answer %q %v", got, err)
	}
	short, _ := New("XOAUTH2", "me@example.com", "abc")
	if _, line, _ := Begin(short, 255); !strings.HasPrefix(line, "AUTH XOAUTH2 ") {
		t.Fatalf("a short one goes on the line: %q", line)
	}
}
