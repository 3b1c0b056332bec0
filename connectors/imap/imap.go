// Package imap is mailflow's IMAP input and output, on emersion/go-imap/v2.
//
// The input lists the folders it is given (patterns, less exclusions),
// names each message by folder, UIDVALIDITY and UID, fetches with
// BODY.PEEK[] (reading does not set \Seen) and, once the engine says a
// message is settled, deletes, moves or flags it, or keeps it. The output
// APPENDs each message into its folder (mapped by folder_map) with its flags
// and INTERNALDATE, creating folders as needed.
package imap

import (
	_ "embed"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("imap", func() plugin.Input { return &Input{} })
	plugins.AddOutput("imap", func() plugin.Output { return &Output{} })
}

// Endpoint is the connection settings both plugins share (address, tls,
// tls_*, username, password*, auth, allow_plaintext_auth, timeout and the
// oauth2 keys), and their dial (conn.go).
type Endpoint struct {
	endpoint.Settings

	log *slog.Logger
}

// protocol is what IMAP adds to the shared endpoint settings: implicit TLS
// on port 993 by default, a username always, and "login" (the password) as
// the one auth method besides "oauth2".
var protocol = endpoint.Protocol{
	DefaultTLS: "implicit", StartTLSPort: "143", ImplicitPort: "993",
	ALPN:    []string{"imap"},
	Timeout: time.Minute,
	CheckAuth: func(auth string) error {
		switch strings.ToLower(auth) {
		case "", "login":
			return nil
		}
		return fmt.Errorf(`auth must be "login" or "oauth2", not %q`, auth)
	},
}

// provision resolves relative paths against the config's directory.
func (e *Endpoint) provision(env plugin.Env) {
	e.log = env.Logger
	e.Settings.Provision(env)
}

// init checks the settings and reads the secret. No I/O but reading the
// secret and CA files.
func (e *Endpoint) init() error { return e.Settings.Init(protocol) }
