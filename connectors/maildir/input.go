package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailflow/mailflow/connectors/internal/settle"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
	"github.com/mailflow/mailflow/internal/fsync"
)

// Input reads a Maildir. Its exported fields are its config.
type Input struct {
	Path string `toml:"path"`
	// OnSettled is "delete" (default: the file is removed once the engine
	// says its message is settled) or "keep".
	OnSettled string `toml:"on_settled"`
	// Delete is the old name of on_settled: true is "delete", false
	// "keep". Still read, with a warning.
	Delete *bool `toml:"delete"`

	log    *slog.Logger
	dir    string
	delete bool
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.log, in.dir = env.Logger, resolve(env.BaseDir, in.Path)
	return nil
}

// Init implements plugin.Initializer.
func (in *Input) Init() error {
	if in.Path == "" {
		return errors.New("path is required")
	}
	var err error
	in.delete, err = settle.Remove(in.OnSettled, in.Delete, in.log)
	return err
}

// Check implements plugin.Checker: the Maildir is there and can be read,
// which "run" would find only at the first poll.
func (in *Input) Check() error {
	for _, sub := range []string{"new", "cur"} {
		if err := fscheck.ReadableDir(filepath.Join(in.dir, sub)); err != nil {
			return fmt.Errorf("path: %s is not a Maildir one can read: %v", in.dir, err)
		}
	}
	return nil
}

// Open implements plugin.Input.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	return &session{in: in}, nil
}

type session struct {
	in      *Input
	removed bool
}

// UniqueName is the part of a Maildir file name that stays the same when a
// mail reader moves it to cur/ and adds flags (":2,S"): the message's id.
func UniqueName(file string) string {
	base := filepath.Base(file)
	if i := strings.IndexByte(base, ':'); i >= 0 {
		return base[:i]
	}
	return base
}

// List reads new/ and cur/.
func (s *session) List(ctx context.Context) (plugin.Listing, error) {
	l := plugin.Listing{Scheme: "maildir", Stable: true, Keeps: !s.in.delete}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(s.in.dir, sub))
		if err != nil {
			return l, fmt.Errorf("%s is not a readable Maildir: %w", s.in.dir, err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // another reader took it meanwhile
			}
			if err != nil {
				return l, err
			}
			rel := filepath.Join(sub, e.Name())
			l.Items = append(l.Items, plugin.Item{ID: UniqueName(rel), Size: info.Size(), Date: info.ModTime(),
				Flags: flags(e.Name()), Ref: filepath.Join(s.in.dir, rel)})
		}
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Ref.(string) < l.Items[j].Ref.(string) })
	return l, nil
}

// maildirFlags are the Maildir info letters as IMAP flags.
var maildirFlags = map[rune]string{'D': `\Draft`, 'F': `\Flagged`, 'R': `\Answered`, 'S': `\Seen`, 'T': `\Deleted`, 'P': "$Forwarded"}

// flags returns the flags of a Maildir file name (":2,FS"), as IMAP names them.
func flags(name string) []string {
	_, info, ok := strings.Cut(name, ":2,")
	if !ok {
		return nil
	}
	var out []string
	for _, c := range info {
		if f, ok := maildirFlags[c]; ok {
			out = append(out, f)
		}
	}
	return out
}

// Fetch opens each file in turn.
func (s *session) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(it.Ref.(string))
		if err != nil {
			if err := each(it, nil, err); err != nil {
				return err
			}
			continue
		}
		err = each(it, f, nil)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// PeekHeader implements plugin.HeaderPeeker.
func (s *session) PeekHeader(ctx context.Context, it plugin.Item) ([]byte, error) {
	f, err := os.Open(it.Ref.(string))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return message.ReadHeaderBlock(f, 1<<20)
}

// Commit removes the files (with on_settled = "keep", it leaves them).
func (s *session) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	if !s.in.delete {
		return nil, nil
	}
	var failed []plugin.Item
	for _, it := range items {
		if err := os.Remove(it.Ref.(string)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			failed = append(failed, it)
			continue
		}
		s.removed = true
	}
	return failed, nil
}

// Close syncs the directories that files were removed from, so that a
// crash does not bring removed messages back.
func (s *session) Close(ctx context.Context) error {
	if !s.removed {
		return nil
	}
	return errors.Join(fsync.Dir(filepath.Join(s.in.dir, "new")), fsync.Dir(filepath.Join(s.in.dir, "cur")))
}

var (
	_ plugin.Input        = (*Input)(nil)
	_ plugin.Provisioner  = (*Input)(nil)
	_ plugin.Initializer  = (*Input)(nil)
	_ plugin.HeaderPeeker = (*session)(nil)
)
