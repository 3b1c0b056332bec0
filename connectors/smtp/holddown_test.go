package smtp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/plugins"
)

// An output that lost STARTTLS (a proxy strips it from the EHLO reply: a
// downgrade) sends nothing in clear and keeps every message at its source.
// The messages already in flight when the first connection is refused do
// not each connect in turn: the poll makes one connection, and the rest of
// it is deferred without another.
func TestLostStartTLSConnectsOncePerPoll(t *testing.T) {
	const n = 30                // more than max_in_flight (16), more than max_connections (4)
	p := newPeer(t, peerOpts{}) // offers no STARTTLS
	dir := t.TempDir()
	msgs := enginetest.CRLF(enginetest.Mix(n))
	if err := enginetest.WriteMaildir(filepath.Join(dir, "in"), msgs); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`state_dir = "state"
[[input]]
name = "in"
type = "maildir"
path = "in"
pipeline = "main"
[[pipeline]]
name = "main"
outputs = ["out"]
[[output]]
name = "out"
type = "smtp"
address = %q
tls = "starttls"
to = ["x@example.net"]
`, p.addr)
	path := filepath.Join(dir, "mailflow.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := e.PollOnce(context.Background(), "in")
	if err != nil || st.Fetched != n || st.Deferred != n || st.Delivered != 0 {
		t.Fatalf("poll: %+v %v; want all %d deferred", st, err, n)
	}
	if s := p.sessions.Load(); s != 1 {
		t.Fatalf("%d connections in the poll, want 1", s)
	}
	if len(p.received()) != 0 {
		t.Fatal("sent in clear")
	}
	if left, err := enginetest.ReadMaildir(filepath.Join(dir, "in")); err != nil || len(left) != n {
		t.Fatalf("the source holds %d of %d: %v", len(left), n, err)
	}
}
