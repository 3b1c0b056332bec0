package pop3_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/connectors/pop3"
	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// auth = "oauth2" against a server that takes bearer tokens the test
// authorization server issued: tokens that last 2 s, over polls spread
// across 7 s with new mail each time, are refreshed as they expire (the
// server never refuses one); tokens too long for the AUTH line go after
// the continuation; after a revocation the poll fails saying which command
// to run, and the mail stays on the server.
func TestOAuth2TokensRefreshAsTheyExpire(t *testing.T) {
	as, err := oauthtest.New("u", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.LongTokens(1200)
	srv := newServer(t, nil)
	srv.Set(func(b *pop3test.Behaviour) { b.Bearer = as.Valid })
	j := newJob(t, srv.Addr(), fmt.Sprintf(`tls = "none"
allow_plaintext_auth = true
username = "u"
auth = "oauth2"
oauth2_provider = "custom"
client_id = "mailflow-test"
auth_url = "%s/authorize"
token_url = "%s/token"
device_url = "%s/device"
scopes = ["mail"]
refresh_before = "1s"
`, as.URL, as.URL, as.URL), true)

	// A person logs in once (the device flow; the test approves it).
	in := j.engine.Config().Input("pop").Plugin.(*pop3.Input)
	as.LogIn(t, in.OAuth(), j.engine.Config().StateDir, "pop")

	all := enginetest.CRLF(enginetest.Mix(14))
	var sent [][]byte
	for round := range 7 {
		srv.Add(all[2*round : 2*round+2]...)
		sent = append(sent, all[2*round:2*round+2]...)
		st, err := j.poll()
		if err != nil || st.Delivered != 2 {
			t.Fatalf("round %d: %v %v", round, st, err)
		}
		time.Sleep(time.Second)
	}
	assertExactlyOnce(t, sent, j.delivered())
	if n := srv.Refused(); n != 0 {
		t.Fatalf("the server refused %d tokens: a token was used past its expiry", n)
	}
	if n := as.Refreshes(); n < 2 {
		t.Fatalf("%d refreshes over 7 s of 2 s tokens", n)
	}

	as.RevokeAll()
	srv.Add([]byte("Subject: after the revocation\r\n\r\nstays\r\n"))
	st, err := j.poll()
	if err == nil || !strings.Contains(err.Error(), "mailflow auth login -c") || st.Fetched != 0 {
		t.Fatalf("after a revocation: %v %v", st, err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d on the server, want the 1 that arrived after the revocation", n)
	}
}
