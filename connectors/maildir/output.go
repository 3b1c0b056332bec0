package maildir

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailflow/mailflow/connectors/internal/spoolfile"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
	"github.com/mailflow/mailflow/internal/fsync"
)

// Output writes messages into a Maildir.
type Output struct {
	Path   string `toml:"path"`
	Create *bool  `toml:"create"`

	dir     string
	host    string
	newSync fsync.Group // new/, synced once for the deliveries at once
}

// SampleConfig returns the documented sample config of both plugins.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.dir = resolve(env.BaseDir, o.Path)
	o.newSync.Dir = filepath.Join(o.dir, "new")
	return nil
}

// Init implements plugin.Initializer.
func (o *Output) Init() error {
	if o.Path == "" {
		return errors.New("path is required")
	}
	host, _ := os.Hostname()
	o.host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if o.host == "" {
		o.host = "localhost"
	}
	return nil
}

// Start implements plugin.Starter: it creates the Maildir when create is
// not false, so that a wrong path fails at start-up and not at the first
// message ("mailflow check" creates nothing).
func (o *Output) Start(ctx context.Context) error {
	if o.Create == nil || *o.Create {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(o.dir, sub), 0o700); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(o.dir, "new")); err != nil {
		return fmt.Errorf("%s is not a Maildir: %w", o.dir, err)
	}
	return nil
}

// Check implements plugin.Checker: what Start would find, without
// making anything.
func (o *Output) Check() error {
	if o.Create != nil && !*o.Create {
		if err := fscheck.ReadableDir(filepath.Join(o.dir, "new")); err != nil {
			return fmt.Errorf("path: %s is not a Maildir and create = false: %v", o.dir, err)
		}
	}
	for _, sub := range []string{"tmp", "new"} {
		if err := fscheck.Writable(filepath.Join(o.dir, sub)); err != nil {
			return fmt.Errorf("path: %v", err)
		}
	}
	return nil
}

// Deliver implements plugin.Output. The file name is derived from the
// delivery key, so a retry after a crash finds the copy it already wrote and
// does not write a second one.
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	name := d.Key + ".mailflow." + o.host
	final := filepath.Join(o.dir, "new", name)
	if _, err := os.Stat(final); err == nil {
		return nil, nil // written on an earlier try
	}
	if f, ok := spooled(msg); ok {
		// The message is, byte for byte, a file the smtp input spooled:
		// synced before its client heard 250, never written again, and
		// kept by the input until the engine recorded this delivery. A
		// second name for it in new/ is the whole message at once (no
		// reader sees it partial, so tmp/ is not needed), and durable once
		// new/ is synced, below, before Deliver returns. On another file
		// system, or when the spool has just removed its name, the link
		// fails and a copy is written.
		switch err := os.Link(f.Path, final); {
		case err == nil:
			return nil, o.newSync.Sync()
		case errors.Is(err, fs.ErrExist):
			return nil, nil // made by an earlier try
		}
	}
	err := fsync.Replace(filepath.Join(o.dir, "tmp", name), final, func(w io.Writer) error {
		_, err := msg.WriteTo(w)
		return err
	})
	if err != nil {
		return nil, err
	}
	// One sync of new/ for the messages renamed into it meanwhile: with
	// max_in_flight deliveries at once, a sync each was most of a small
	// message's cost.
	return nil, o.newSync.Sync()
}

// castagnoli is the CRC-32C table, as the spool sums its files.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// spooled returns the spool file that holds msg exactly as it would be
// written: no filter changed it, and the file has its length and
// checksum.
func spooled(msg *message.Message) (spoolfile.File, bool) {
	if msg.HeaderChanged() || msg.BodyChanged() {
		return spoolfile.File{}, false
	}
	f, ok := spoolfile.Find(msg.Source.Input, msg.Source.ID)
	if !ok || f.Size != msg.Size() {
		return spoolfile.File{}, false
	}
	h := crc32.New(castagnoli)
	if n, err := msg.WriteTo(h); err != nil || n != f.Size || h.Sum32() != f.CRC {
		return spoolfile.File{}, false
	}
	return f, true
}

var (
	_ plugin.Output      = (*Output)(nil)
	_ plugin.Provisioner = (*Output)(nil)
	_ plugin.Initializer = (*Output)(nil)
	_ plugin.Starter     = (*Output)(nil)
)
