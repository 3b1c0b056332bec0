package oauth_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/connectors/oauth"
)

// Google's device flow grants none of Gmail's scopes: "auth login
// --device" for Gmail says so, and what to do, before asking Google.
func TestGoogleDeviceLoginForGmailSaysWhatToDoInstead(t *testing.T) {
	for _, scopes := range [][]string{nil, {"https://www.googleapis.com/auth/gmail.modify"}} {
		cfg := &oauth.Config{Provider: "google", ClientID: "x", Scopes: scopes}
		if err := cfg.Init(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, err := oauth.LoginDevice(context.Background(), cfg, &out)
		if err == nil || !strings.Contains(err.Error(), "does not grant Gmail's scopes") || !strings.Contains(err.Error(), "ssh -L") || out.Len() != 0 {
			t.Fatalf("scopes %v: %v, printed %q", cfg.Scopes, err, out.String())
		}
	}
}
