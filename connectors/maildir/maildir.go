// Package maildir reads and writes Maildirs (https://cr.yp.to/proto/maildir.html).
//
// The input reads every message in new/ and cur/ and, once the engine has
// settled it, removes its file (or, with delete = false, leaves it and lets
// the ledger remember it). The output writes into tmp/, syncs, and renames
// into new/, so that a reader never sees half a message.
package maildir

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("maildir", func() engine.Input { return &Input{} })
	plugins.AddOutput("maildir", func() engine.Output { return &Output{} })
}

// Input reads a Maildir. Its exported fields are its config.
type Input struct {
	Path           string `toml:"path"`
	Delete         *bool  `toml:"delete"`
	MaxMessageSize int64  `toml:"max_message_size"`

	name   string
	dir    string
	delete bool
	spool  engine.SpoolOptions
	ledger engine.SourceLedger
	log    *slog.Logger
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements engine.Provisioner.
func (in *Input) Provision(env engine.Env) error {
	in.name, in.log, in.ledger, in.spool = env.Name, env.Logger, env.Ledger, env.Spool
	if in.Path != "" && !filepath.IsAbs(in.Path) {
		in.dir = filepath.Join(env.BaseDir, in.Path)
	} else {
		in.dir = in.Path
	}
	return nil
}

// Init implements engine.Initializer.
func (in *Input) Init() error {
	if in.Path == "" {
		return errors.New("path is required")
	}
	in.delete = in.Delete == nil || *in.Delete
	if in.MaxMessageSize > 0 {
		in.spool.MaxSize = in.MaxMessageSize
	}
	return nil
}

// Open implements engine.Input: it lists new/ and cur/.
func (in *Input) Open(ctx context.Context) (engine.Session, error) {
	var files []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(in.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("%s is not a readable Maildir: %w", in.dir, err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(sub, e.Name()))
			}
		}
	}
	sort.Strings(files)
	return &session{in: in, files: files}, nil
}

type session struct {
	in      *Input
	files   []string
	next    int
	mu      sync.Mutex
	removed int
}

// UniqueName is the part of a Maildir file name that stays the same when a
// mail reader moves it to cur/ and adds flags (":2,S").
func UniqueName(file string) string {
	base := filepath.Base(file)
	if i := strings.IndexByte(base, ':'); i >= 0 {
		return base[:i]
	}
	return base
}

func (s *session) Next(ctx context.Context) (*engine.Message, engine.AckFunc, error) {
	for s.next < len(s.files) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		rel := s.files[s.next]
		s.next++
		id := UniqueName(rel)
		if !s.in.delete && s.in.ledger != nil && s.in.ledger.Delivered(id) {
			continue // kept on purpose and already delivered
		}
		path := filepath.Join(s.in.dir, rel)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // another reader took it meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		msg, err := engine.ReadMessage(f, engine.Source{Input: s.in.name, ID: id}, s.in.spool)
		f.Close()
		if errors.Is(err, engine.ErrTooLarge) {
			s.in.log.Warn("message is over max_message_size; left in place", "file", path, "max", s.in.spool.MaxSize)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return msg, s.ackFunc(path), nil
	}
	return nil, nil, engine.ErrEndOfInput
}

func (s *session) ackFunc(path string) engine.AckFunc {
	return func(ctx context.Context, err error) error {
		if err != nil || !s.in.delete {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.mu.Lock()
		s.removed++
		s.mu.Unlock()
		return nil
	}
}

// Close syncs the directories that files were removed from, so that a
// crash does not bring removed messages back (the ledger would skip them,
// but they would be read again).
func (s *session) Close(ctx context.Context) error {
	if s.removed == 0 {
		return nil
	}
	return errors.Join(syncDir(filepath.Join(s.in.dir, "new")), syncDir(filepath.Join(s.in.dir, "cur")))
}

// Output writes messages into a Maildir.
type Output struct {
	Path   string `toml:"path"`
	Create *bool  `toml:"create"`

	dir  string
	host string
}

// SampleConfig returns the documented sample config of both plugins.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements engine.Provisioner.
func (o *Output) Provision(env engine.Env) error {
	if o.Path != "" && !filepath.IsAbs(o.Path) {
		o.dir = filepath.Join(env.BaseDir, o.Path)
	} else {
		o.dir = o.Path
	}
	return nil
}

// Init implements engine.Initializer. It creates the Maildir when create is
// not false; that is the one piece of I/O done this early, so that a wrong
// path fails at start-up and not at the first message.
func (o *Output) Init() error {
	if o.Path == "" {
		return errors.New("path is required")
	}
	host, _ := os.Hostname()
	o.host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if o.host == "" {
		o.host = "localhost"
	}
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

// Deliver implements engine.Output. The file name is derived from the
// delivery key, so a retry after a crash finds the copy it already wrote and
// does not write a second one.
func (o *Output) Deliver(ctx context.Context, msg *engine.Message, d engine.Delivery) ([]engine.RecipientResult, error) {
	name := d.Key + ".mailflow." + o.host
	final := filepath.Join(o.dir, "new", name)
	if _, err := os.Stat(final); err == nil {
		return nil, nil // written on an earlier try
	}
	tmp := filepath.Join(o.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := msg.WriteTo(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return nil, syncDir(filepath.Join(o.dir, "new"))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var (
	_ engine.Input       = (*Input)(nil)
	_ engine.Provisioner = (*Input)(nil)
	_ engine.Initializer = (*Input)(nil)
	_ engine.Output      = (*Output)(nil)
	_ engine.Provisioner = (*Output)(nil)
	_ engine.Initializer = (*Output)(nil)
)
