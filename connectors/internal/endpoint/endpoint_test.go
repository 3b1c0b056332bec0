package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/engine/plugin"
)

// pop3ish is a protocol with every rule set, as POP3's.
var pop3ish = Protocol{DefaultTLS: "implicit", StartTLSPort: "110", ImplicitPort: "995", Timeout: time.Minute,
	SafeInClear: []string{"apop"},
	CheckAuth: func(a string) error {
		if a == "" || strings.EqualFold(a, "apop") {
			return nil
		}
		return fmt.Errorf("auth must be apop, not %q", a)
	}}

func TestInitRules(t *testing.T) {
	relay := pop3ish
	relay.UsernameOptional, relay.DefaultTLS = true, "starttls"
	cases := []struct {
		name  string
		s     Settings
		p     Protocol
		want  string // a part of the error; "" for none
		check func(t *testing.T, s *Settings)
	}{
		{"defaults", Settings{Address: "h:1", Username: "u", Password: "p"}, pop3ish, "", func(t *testing.T, s *Settings) {
			if s.TLS != "implicit" || s.Wait() != time.Minute || s.Secret() != "p" || s.TLSConfig() == nil || s.Tokens() != nil || s.OAuth() != nil {
				t.Fatalf("%+v", s)
			}
		}},
		{"no address", Settings{Username: "u"}, pop3ish, "address is required", nil},
		{"bad tls", Settings{Address: "h:1", TLS: "maybe", Username: "u"}, pop3ish, `tls must be "implicit", "starttls" or "none"`, nil},
		{"bad auth", Settings{Address: "h:1", Username: "u", Auth: "digest"}, pop3ish, `auth must be apop, not "digest"`, nil},
		{"no check takes only the password", Settings{Address: "h:1", Username: "u", Auth: "plain"}, Protocol{}, `auth must be "oauth2" or left out`, nil},
		{"username required", Settings{Address: "h:1"}, pop3ish, "username is required", nil},
		{"username optional", Settings{Address: "h:1"}, relay, "", func(t *testing.T, s *Settings) {
			if s.TLS != "starttls" {
				t.Fatalf("default tls %q", s.TLS)
			}
		}},
		{"oauth2 needs a username even where optional", Settings{Address: "h:1", Auth: "OAuth2"}, relay, `auth = "oauth2" needs username`, nil},
		{"two secrets", Settings{Address: "h:1", Username: "u", Password: "p", PasswordEnv: "X"}, pop3ish, "give only one of password, password_env and password_file", nil},
		{"password in clear", Settings{Address: "h:1", TLS: "none", Username: "u", Password: "p"}, pop3ish,
			`tls = "none" would send the password in clear; set allow_plaintext_auth = true if you mean it, or use auth = "apop"`, nil},
		{"allowed in clear", Settings{Address: "h:1", TLS: "none", Username: "u", Password: "p", AllowPlaintextAuth: true}, pop3ish, "", func(t *testing.T, s *Settings) {
			if s.TLSConfig() != nil {
				t.Fatal("a TLS config for tls = none")
			}
		}},
		{"safe in clear", Settings{Address: "h:1", TLS: "none", Username: "u", Password: "p", Auth: "APOP"}, pop3ish, "", nil},
		{"no login in clear is no password in clear", Settings{Address: "h:1", TLS: "none"}, relay, "", nil},
		{"timeout", Settings{Address: "h:1", Username: "u", Timeout: "5s"}, pop3ish, "", func(t *testing.T, s *Settings) {
			if s.Wait() != 5*time.Second {
				t.Fatal(s.Wait())
			}
		}},
		{"bad timeout", Settings{Address: "h:1", Username: "u", Timeout: "soon"}, pop3ish, "timeout: ", nil},
		{"oauth2 without a provider", Settings{Address: "h:1", Username: "u", Auth: "oauth2"}, pop3ish, "oauth2_provider", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			err := s.Init(c.p)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("want an error with %q, got %v", c.want, err)
			case c.check != nil:
				c.check(t, &s)
			}
		})
	}
}

func TestProvisionResolvesPathsAndFilesListsThem(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("secret\n"), 0o600)
	s := Settings{Address: "h:1", Username: "u", PasswordFile: "pw"}
	s.CAFile = "/etc/ca.pem"
	s.Provision(plugin.Env{BaseDir: dir})
	if want := []string{filepath.Join(dir, "pw"), "/etc/ca.pem"}; !slices.Equal(s.Files(), want) {
		t.Fatalf("files %v, want %v", s.Files(), want)
	}
	s.CAFile = ""
	if err := s.Init(pop3ish); err != nil || s.Secret() != "secret" {
		t.Fatalf("%q %v", s.Secret(), err)
	}
}

// A server that answers a TLS handshake in clear (an implicit-TLS client
// on a STARTTLS port) gets an error that names the mode its port wants.
func TestDialHintsAtTheModeOfAPortThatSpeaksInClear(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("+OK POP3 server ready\r\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	s := Settings{Address: ln.Addr().String(), Username: "u", Password: "p", Timeout: "5s"}
	if err := s.Init(pop3ish); err != nil {
		t.Fatal(err)
	}
	_, err = s.Dial(context.Background(), nil)
	want := `the server greets in plain text ("+OK P…"), not in TLS: set tls = "starttls" (tls = "implicit", the default, is for port 995)`
	var me *ModeError
	if err == nil || err.Error() != want || !errors.As(err, &me) || me.Want != "starttls" {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	// In clear, Dial gives the connection as it is, through wrap.
	s = Settings{Address: ln.Addr().String(), TLS: "none", Username: "u", Password: "p", AllowPlaintextAuth: true}
	if err := s.Init(pop3ish); err != nil {
		t.Fatal(err)
	}
	wrapped := false
	c, err := s.Dial(context.Background(), func(c net.Conn) net.Conn { wrapped = true; return c })
	if err != nil || !wrapped {
		t.Fatalf("wrapped %v, %v", wrapped, err)
	}
	defer c.Close()
	buf := make([]byte, 3)
	if _, err := c.Read(buf); err != nil || string(buf) != "+OK" {
		t.Fatalf("read %q %v", buf, err)
	}
}

// loggedIn is Settings with auth = "oauth2" against a test authorization
// server, logged in once.
func loggedIn(t *testing.T) (*Settings, *oauthtest.Server) {
	t.Helper()
	as, err := oauthtest.New("me@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	state := t.TempDir()
	s := &Settings{Address: "h:1", Username: "me@example.com", Auth: "oauth2",
		Config: oauth.Config{Provider: "custom", ClientID: "c", AuthURL: as.URL + "/authorize", TokenURL: as.URL + "/token",
			DeviceURL: as.URL + "/device", Scopes: []string{"mail"}}}
	s.Provision(plugin.Env{Name: "in", StateDir: state, ConfigPath: filepath.Join(state, "m.toml")})
	if err := s.Init(pop3ish); err != nil {
		t.Fatal(err)
	}
	if s.OAuth() == nil || s.Tokens() == nil || s.Secret() != "" || s.Config.Account != "me@example.com" {
		t.Fatalf("oauth2 not set up: %+v", s)
	}
	as.LogIn(t, s.OAuth(), state, "in")
	return s, as
}

func TestLoginOAuth(t *testing.T) {
	refusal := errors.New("-ERR [AUTH] no")
	refused := func(err error) bool { return errors.Is(err, refusal) }
	cases := []struct {
		name    string
		bearer  bool
		answers []error // the server's answer to each AUTH
		tries   int
		want    error
	}{
		{"accepted", true, []error{nil}, 1, nil},
		{"refused once, a fresh token is accepted", false, []error{refusal, nil}, 2, nil},
		{"refused twice", false, []error{refusal, refusal}, 2, refusal},
		{"a broken connection is not tried again", false, []error{io.ErrUnexpectedEOF}, 1, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, as := loggedIn(t)
			var tokens []string
			m, err := s.LoginOAuth(context.Background(), c.bearer, func(m sasl.Mechanism) error {
				ir, _ := m.Start()
				tokens = append(tokens, string(ir))
				return c.answers[len(tokens)-1]
			}, refused)
			if !errors.Is(err, c.want) || len(tokens) != c.tries {
				t.Fatalf("%d tries, %v; want %d, %v", len(tokens), err, c.tries, c.want)
			}
			if want := map[bool]string{true: "OAUTHBEARER", false: "XOAUTH2"}[c.bearer]; m.Name() != want {
				t.Fatalf("mechanism %s, want %s", m.Name(), want)
			}
			if c.tries == 2 && (tokens[0] == tokens[1] || as.Refreshes() == 0) {
				t.Fatal("the second try did not get a fresh token")
			}
		})
	}
}
