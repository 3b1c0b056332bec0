package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	goimap "github.com/emersion/go-imap/v2"
)

// Input fetches mail from IMAP folders. Its exported fields are its config.
type Input struct {
	Endpoint
	Folders   []string `toml:"folders"`
	Exclude   []string `toml:"exclude"`
	OnSettled string   `toml:"on_settled"`
	// Idle: between polls, wait for new mail in the first folder (INBOX
	// when listed) with IMAP IDLE, and poll as soon as it comes.
	Idle bool `toml:"idle"`
	// Parallel is how many folders are fetched at once, each on a session
	// of its own. Default 4.
	Parallel int `toml:"parallel"`
	// Selection, by SEARCH on the server: only messages that arrived on or
	// after Since (a date, 2006-01-02, or an age such as "720h"), that are
	// not \Seen (Unseen), or whose size is within MinSize..MaxSize bytes.
	// Messages outside it are not listed: left as they are, not fetched.
	Since   string `toml:"since"`
	Unseen  bool   `toml:"unseen"`
	MinSize int64  `toml:"min_size"`
	MaxSize int64  `toml:"max_size"`

	action string // delete, move, flag, keep
	arg    string // the folder or flag
	since  func() time.Time

	mu      sync.Mutex
	watched string // the folder IDLE watches
	uidNext uint32 // its UIDNEXT at the last listing
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.provision(env)
	return nil
}

// Init implements plugin.Initializer.
func (in *Input) Init() error {
	if len(in.Folders) == 0 {
		in.Folders = []string{"INBOX"}
	}
	if in.Parallel <= 0 {
		in.Parallel = 4
	}
	settled := in.OnSettled
	if settled == "" {
		settled = "delete"
	}
	if in.Since != "" {
		if t, err := time.Parse(time.DateOnly, in.Since); err == nil {
			in.since = func() time.Time { return t }
		} else if age, err := time.ParseDuration(in.Since); err == nil && age > 0 {
			in.since = func() time.Time { return time.Now().Add(-age) }
		} else {
			return fmt.Errorf(`since must be a date ("2024-01-31") or an age ("720h"), not %q`, in.Since)
		}
	}
	if in.MinSize < 0 || in.MaxSize < 0 || in.MaxSize > 0 && in.MaxSize < in.MinSize {
		return fmt.Errorf("min_size %d and max_size %d do not make a range", in.MinSize, in.MaxSize)
	}
	in.action, in.arg, _ = strings.Cut(settled, ":")
	switch {
	case in.action == "delete" || in.action == "keep":
	case (in.action == "move" || in.action == "flag") && in.arg != "":
	default:
		return fmt.Errorf(`on_settled must be "delete", "keep", "move:FOLDER" or "flag:FLAG", not %q`, in.OnSettled)
	}
	return in.init()
}

// Open implements plugin.Input: it connects and logs in.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	c, err := in.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	return &session{in: in, c: c}, nil
}

type session struct {
	in    *Input
	c     *conn
	delim rune // the server's hierarchy separator, from List
}

// ref is where a listed message is: the input's handle for it.
type ref struct {
	folder string
	uid    uint32
}

// List implements plugin.Session: every message of every folder, named
// folder/UIDVALIDITY/UID. The scheme carries each folder's UIDVALIDITY, so
// that a folder whose UIDs were renumbered (a new UIDVALIDITY) makes the
// engine match messages by content for that poll, never taking them all for
// new or all for settled.
func (s *session) List(ctx context.Context) (plugin.Listing, error) {
	l := plugin.Listing{Stable: true, Unique: true, Keeps: s.in.action == "keep" || s.in.action == "flag"}
	folders, err := s.c.folders(s.in.Folders, s.in.Exclude)
	if err != nil {
		return l, err
	}
	if s.delim, err = s.c.separator(); err != nil {
		return l, err
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].path() < folders[j].path() })
	var scheme []string
	watch := ""
	for _, f := range folders {
		if watch == "" || f.name == "INBOX" {
			watch = f.name
		}
	}
	for _, f := range folders {
		data, err := s.c.selectData(f.name, false)
		if err != nil {
			return l, err
		}
		validity, n := data.UIDValidity, data.NumMessages
		if f.name == watch {
			s.in.mu.Lock()
			s.in.watched, s.in.uidNext = f.name, uint32(data.UIDNext)
			s.in.mu.Unlock()
		}
		path := f.path()
		scheme = append(scheme, fmt.Sprintf("%s=%d", path, validity))
		msgs, err := s.c.matching(n, s.in.criteria())
		if err != nil {
			return l, err
		}
		for _, m := range msgs {
			if containsFold(m.Flags, `\Deleted`) {
				continue // on its way out; not ours to deliver
			}
			l.Items = append(l.Items, plugin.Item{
				ID: fmt.Sprintf("%s/%d/%d", path, validity, m.UID), Size: m.Size,
				Folder: path, FolderRole: f.role, Flags: m.Flags, Date: m.Date, Identity: m.Identity, Ref: ref{f.name, m.UID},
			})
		}
	}
	l.Scheme = "imap-uid " + strings.Join(scheme, " ")
	return l, nil
}

// criteria is the input's selection as a SEARCH, or nil for every message.
func (in *Input) criteria() *goimap.SearchCriteria {
	if in.since == nil && !in.Unseen && in.MinSize == 0 && in.MaxSize == 0 {
		return nil
	}
	c := &goimap.SearchCriteria{}
	if in.since != nil {
		c.Since = in.since()
	}
	if in.Unseen {
		c.NotFlag = []goimap.Flag{goimap.FlagSeen}
	}
	if in.MinSize > 0 {
		c.Larger = in.MinSize - 1 // LARGER is "more than"
	}
	if in.MaxSize > 0 {
		c.Smaller = in.MaxSize + 1
	}
	return c
}

func containsFold(xs []string, x string) bool {
	for _, y := range xs {
		if strings.EqualFold(x, y) {
			return true
		}
	}
	return false
}

// byFolder groups items by their folder, keeping the order of first sight.
func byFolder(items []plugin.Item) (folders []string, uids map[string][]uint32, of map[string][]plugin.Item) {
	uids, of = map[string][]uint32{}, map[string][]plugin.Item{}
	for _, it := range items {
		r := it.Ref.(ref)
		if _, ok := uids[r.folder]; !ok {
			folders = append(folders, r.folder)
		}
		uids[r.folder] = append(uids[r.folder], r.uid)
		of[r.folder] = append(of[r.folder], it)
	}
	return folders, uids, of
}

// Fetch implements plugin.Session: per folder, one UID FETCH BODY.PEEK[]
// streaming every message asked for.
func (s *session) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	folders, uids, of := byFolder(items)
	workers := min(s.in.Parallel, len(folders))
	if workers <= 1 {
		for _, f := range folders {
			if err := fetchFolder(ctx, s.c, f, uids[f], of[f], each); err != nil {
				return err
			}
		}
		return nil
	}
	// Folders in parallel, each worker on a session of its own (the first
	// on this one): one folder's FETCH streams while another's does.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	todo := make(chan string, len(folders))
	for _, f := range folders {
		todo <- f
	}
	close(todo)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.c
			if w > 0 {
				var err error
				if c, err = s.in.dial(ctx); err != nil {
					cancel(err)
					return
				}
				defer c.close()
			}
			for f := range todo {
				if ctx.Err() != nil {
					return
				}
				if err := fetchFolder(ctx, c, f, uids[f], of[f], each); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// fetchFolder streams the messages of one folder with one UID FETCH.
func fetchFolder(ctx context.Context, c *conn, f string, uids []uint32, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, _, err := c.examine(f, false); err != nil {
		return err
	}
	byUID := map[uint32]plugin.Item{}
	for _, it := range items {
		byUID[it.Ref.(ref).uid] = it
	}
	err := c.fetch(uids, func(uid uint32, r io.Reader) error {
		it, ok := byUID[uid]
		if !ok {
			return nil
		}
		delete(byUID, uid)
		return each(it, r, nil)
	})
	if err != nil {
		return err
	}
	for _, it := range byUID {
		if err := each(it, nil, errors.New("the server no longer has it")); err != nil {
			return err
		}
	}
	return nil
}

// Identify implements plugin.Identifier: per folder, one UID FETCH of the
// header fields that name a message.
func (s *session) Identify(ctx context.Context, items []plugin.Item) error {
	folders, uids, _ := byFolder(items)
	found := map[ref]string{}
	for _, f := range folders {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, _, err := s.c.examine(f, false); err != nil {
			return err
		}
		set := goimap.UIDSet{}
		for _, u := range uids[f] {
			set.AddNum(goimap.UID(u))
		}
		infos, err := s.c.identify(set)
		if err != nil {
			return err
		}
		for _, m := range infos {
			found[ref{f, m.UID}] = m.Identity
		}
	}
	for i := range items {
		items[i].Identity = found[items[i].Ref.(ref)]
	}
	return nil
}

// Commit implements plugin.Session with on_settled's action.
func (s *session) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	if s.in.action == "keep" || len(items) == 0 {
		return nil, nil
	}
	folders, uids, of := byFolder(items)
	var failed []plugin.Item
	for _, f := range folders {
		_, _, err := s.c.examine(f, true)
		if err == nil {
			switch s.in.action {
			case "delete":
				err = s.c.remove(uids[f])
			case "move":
				to := serverName(s.in.arg, s.delim)
				if err = s.c.create(to); err == nil {
					err = s.c.move(uids[f], to)
				}
			case "flag":
				err = s.c.addFlags(uids[f], s.in.arg)
			}
		}
		if err != nil {
			s.in.log.Warn("could not commit settled messages; they are committed on the next poll", "folder", f, "count", len(uids[f]), "err", err)
			failed = append(failed, of[f]...)
		}
	}
	return failed, nil
}

// idleRecheck is how soon an IDLE first looks at UIDNEXT itself, and
// idleRecheckMost how seldom at the least: the wait doubles while nothing
// comes.
const (
	idleRecheck     = 5 * time.Second
	idleRecheckMost = 2 * time.Minute
)

// WaitForMail implements plugin.MailWaiter with IDLE on the watched folder.
// Mail that came after the last listing (UIDNEXT moved on) is reported at
// once; otherwise it IDLEs until the server says EXISTS, ctx ends, or the
// connection drops (the library re-issues IDLE before 29 minutes).
func (in *Input) WaitForMail(ctx context.Context) error {
	in.mu.Lock()
	folder, seen := in.watched, in.uidNext
	in.mu.Unlock()
	if !in.Idle || folder == "" {
		return plugin.ErrNotWatching
	}
	c, news, err := in.dialNotified(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if !c.canIdle() {
		in.log.Warn("the server has no IDLE; polling on the schedule", "server", in.Address)
		return plugin.ErrNotWatching
	}
	data, err := c.selectData(folder, false)
	if err != nil {
		return err
	}
	if uint32(data.UIDNext) != seen {
		return nil
	}
	return c.idle(ctx, news, folder, seen, idleRecheck, idleRecheckMost)
}

// Close implements plugin.Session: LOGOUT.
func (s *session) Close(ctx context.Context) error { return s.c.close() }

var (
	_ plugin.Input       = (*Input)(nil)
	_ plugin.Provisioner = (*Input)(nil)
	_ plugin.Initializer = (*Input)(nil)
	_ plugin.FileUser    = (*Input)(nil)
	_ plugin.MailWaiter  = (*Input)(nil)
	_ plugin.Identifier  = (*session)(nil)
)
