package smtp_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
)

// auth = "oauth2" on the SMTP output: 2-second tokens over 6 s of sending
// (each message on a new session) are refreshed as they expire; tokens too
// long for the AUTH line go after the 334; once the tokens are revoked,
// delivery fails for now, never for good, with the command to run.
func TestSMTPOAuth2(t *testing.T) {
	as, err := oauthtest.New("me@example.com", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.LongTokens(1500)
	srv := newFake(t, func(b *smtptest.Behaviour) {
		b.Extensions = append(b.Extensions, "AUTH XOAUTH2 OAUTHBEARER")
		b.Bearer = as.Valid
	})
	state := t.TempDir()
	o := &smtp.Output{Settings: endpoint.Settings{Address: srv.Addr(), TLS: "none", AllowPlaintextAuth: true, Username: "me@example.com", Auth: "oauth2", Config: oauth.Config{Provider: "custom", ClientID: "c", AuthURL: as.URL + "/authorize", TokenURL: as.URL + "/token",
		DeviceURL: as.URL + "/device", Scopes: []string{"mail"}, RefreshBefore: "1s"}},
		To: []string{"a@x.test"}, IdleTimeout: "1ms"}
	env := plugin.Env{Name: "out", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StateDir: state, ConfigPath: filepath.Join(state, "m.toml")}
	if err := o.Provision(env); err != nil {
		t.Fatal(err)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	smtp.WithoutHoldDown(o) // the login is tried at once after the failure
	if _, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n")); err == nil || plugin.IsPermanent(err) || !strings.Contains(err.Error(), "mailflow auth login") {
		t.Fatalf("before a login: %v", err)
	}
	as.LogIn(t, o.OAuth(), state, "out")
	for i := range 6 {
		if _, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		time.Sleep(time.Second)
	}
	if n := len(srv.Mails()); n != 6 {
		t.Fatalf("%d mails", n)
	}
	if srv.Refused() != 0 || as.Refreshes() < 2 {
		t.Fatalf("refused %d, refreshes %d", srv.Refused(), as.Refreshes())
	}
	as.RevokeAll()
	time.Sleep(1100 * time.Millisecond)
	_, err = deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
	if err == nil || plugin.IsPermanent(err) || !strings.Contains(err.Error(), "mailflow auth login") {
		t.Fatalf("after a revocation: %v", err)
	}
}
