package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
)

// Input reads a Maildir. Its exported fields are its config.
type Input struct {
	Path   string `toml:"path"`
	Delete *bool  `toml:"delete"`

	dir    string
	delete bool
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements engine.Provisioner.
func (in *Input) Provision(env engine.Env) error {
	in.dir = resolve(env.BaseDir, in.Path)
	return nil
}

// Init implements engine.Initializer.
func (in *Input) Init() error {
	if in.Path == "" {
		return errors.New("path is required")
	}
	in.delete = in.Delete == nil || *in.Delete
	return nil
}

// Open implements engine.Input.
func (in *Input) Open(ctx context.Context) (engine.Session, error) {
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
func (s *session) List(ctx context.Context) (engine.Listing, error) {
	l := engine.Listing{Scheme: "maildir", Stable: true, Keeps: !s.in.delete}
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
			l.Items = append(l.Items, engine.Item{ID: UniqueName(rel), Size: info.Size(), Date: info.ModTime(),
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
func (s *session) Fetch(ctx context.Context, items []engine.Item, each func(engine.Item, io.Reader, error) error) error {
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

// PeekHeader implements engine.HeaderPeeker.
func (s *session) PeekHeader(ctx context.Context, it engine.Item) ([]byte, error) {
	f, err := os.Open(it.Ref.(string))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return message.ReadHeaderBlock(f, 1<<20)
}

// Commit removes the files (with delete = false, it leaves them).
func (s *session) Commit(ctx context.Context, items []engine.Item) ([]engine.Item, error) {
	if !s.in.delete {
		return nil, nil
	}
	var failed []engine.Item
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
	return errors.Join(syncDir(filepath.Join(s.in.dir, "new")), syncDir(filepath.Join(s.in.dir, "cur")))
}

var (
	_ engine.Input        = (*Input)(nil)
	_ engine.Provisioner  = (*Input)(nil)
	_ engine.Initializer  = (*Input)(nil)
	_ engine.HeaderPeeker = (*session)(nil)
)
