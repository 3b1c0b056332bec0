package imap

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
)

// oauthSession is a memory-server session that takes OAUTHBEARER with the
// tokens the test authorization server approves (and no LOGIN).
type oauthSession struct {
	imapserver.SessionIMAP4rev2
	valid   func(string) bool
	refused *atomic.Int32
}

func (s oauthSession) AuthenticateMechanisms() []string { return []string{"OAUTHBEARER"} }

func (s oauthSession) Authenticate(mech string) (sasl.Server, error) {
	return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		if !s.valid(o.Token) {
			s.refused.Add(1)
			return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		}
		if err := s.SessionIMAP4rev2.Login(o.Username, "p"); err != nil {
			return &sasl.OAuthBearerError{Status: "invalid_request"}
		}
		return nil
	}), nil
}

// auth = "oauth2" on the IMAP input: 2-second tokens over polls spread
// across 6 s, refreshed as they expire (the server refuses none); after a
// revocation the poll fails naming the command, and the mail stays.
func TestIMAPOAuth2(t *testing.T) {
	as, err := oauthtest.New("src", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	var refused atomic.Int32
	addr := memServerWith(t, func(c *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return oauthSession{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), valid: as.Valid, refused: &refused}
	})
	conf := strings.Replace(imapToIMAP(addr, "delete", ""), `password = "p"
folders`, fmt.Sprintf(`auth = "oauth2"
oauth2_provider = "custom"
client_id = "c"
auth_url = "%[1]s/authorize"
token_url = "%[1]s/token"
device_url = "%[1]s/device"
scopes = ["mail"]
refresh_before = "1s"
folders`, as.URL), 1)
	e := newEngine(t, conf)
	in := e.Config().Input("old").Plugin.(*Input)
	as.LogIn(t, in.OAuth(), e.Config().StateDir, "old")
	src := login(t, addr, "src")
	msgs := sample(12)
	for round := range 6 {
		seed(t, src, msgs[2*round:2*round+2])
		if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 2 {
			t.Fatalf("round %d: %v %v", round, st, err)
		}
		time.Sleep(time.Second)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 12 {
		t.Fatalf("%d at the destination", n)
	}
	if refused.Load() != 0 || as.Refreshes() < 2 {
		t.Fatalf("refused %d, refreshes %d", refused.Load(), as.Refreshes())
	}
	as.RevokeAll()
	seed(t, src, sample(1))
	st, err := e.PollOnce(context.Background(), "old")
	if err == nil || !strings.Contains(err.Error(), "mailflow auth login") || st.Fetched != 0 {
		t.Fatalf("after a revocation: %v %v", st, err)
	}
}
