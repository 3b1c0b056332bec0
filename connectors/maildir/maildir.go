// Package maildir reads and writes Maildirs (https://cr.yp.to/proto/maildir.html).
//
// The input lists new/ and cur/, fetches a file by its unique name, and
// removes the file when the engine commits it (or leaves it, with
// on_settled = "keep"). The output writes into tmp/, syncs, and renames into
// new/, so that a reader never sees half a message.
package maildir

import (
	_ "embed"
	"path/filepath"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("maildir", func() plugin.Input { return &Input{} })
	plugins.AddOutput("maildir", func() plugin.Output { return &Output{} })
}

// resolve makes a path from the config absolute, relative to base.
func resolve(base, p string) string {
	if p != "" && !filepath.IsAbs(p) {
		return filepath.Join(base, p)
	}
	return p
}
