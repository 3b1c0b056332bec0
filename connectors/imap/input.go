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

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/connectors/internal/rate"
	"github.com/mailflow/mailflow/engine/plugin"
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
	// GmailSource: read Gmail's All Mail once and make its labels folders
	// (gmail.go).
	GmailSource
	// MaxBytesPerDay bounds the bytes fetched in a day (Gmail lets about
	// 2,500 MB a day be read over IMAP); 0: no bound.
	MaxBytesPerDay int64 `toml:"max_bytes_per_day"`

	action string // delete, move, flag, keep
	arg    string // the folder or flag
	since  func() time.Time
	spool  string     // where a message with several copies may be held (gmail.go)
	day    *dayBudget // max_bytes_per_day
	streak int        // throttling replies without a wait in a row (in.mu)

	mu      sync.Mutex
	watched string // the folder IDLE watches
	uidNext uint32 // its UIDNEXT at the last listing
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.provision(env)
	in.spool = env.Spool.Dir
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
	if err := in.initGmail(in.action); err != nil {
		return err
	}
	if in.MaxBytesPerDay < 0 {
		return fmt.Errorf("max_bytes_per_day must not be negative")
	}
	in.day = newDayBudget(in.MaxBytesPerDay)
	return in.init()
}

// Open implements plugin.Input: it connects and logs in.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	c, err := in.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	gm, err := in.gmailView(c)
	if err != nil {
		c.close()
		return nil, err
	}
	return &session{in: in, c: c, gm: gm}, nil
}

type session struct {
	in *Input
	c  *conn
	gm *gmailView // Gmail's view (gmail.go), or nil
	// named are the folders Folders last listed, by path, for ListNamed.
	named map[string]mailbox
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
	if s.gm != nil {
		d, err := s.gmailList(ctx)
		return d.Listing, err
	}
	d, err := s.listAll(ctx, nil)
	return d.Listing, s.in.throttled(err)
}

// listAll lists every folder whole, and says where each stood (the
// checkpoint of a delta listing, delta.go) where the server has CONDSTORE.
// With folders not nil, those are the folders (already listed).
func (s *session) listAll(ctx context.Context, folders []mailbox) (plugin.Delta, error) {
	d := plugin.Delta{Listing: s.listing()}
	if folders == nil {
		var err error
		if folders, err = s.folders(nil); err != nil {
			return d, err
		}
	}
	cp := s.in.checkpoint()
	for _, f := range folders {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		items, m, err := s.listFolder(f)
		if err != nil {
			return d, err
		}
		d.Items = append(d.Items, items...)
		cp.folders[f.path] = m
	}
	d.Scheme = scheme(cp)
	if s.c.condStore() {
		d.Checkpoint = cp.encode()
	}
	return d, nil
}

// listing is an empty listing with what the input's listings all say.
func (s *session) listing() plugin.Listing {
	return plugin.Listing{Stable: true, Unique: true, Keeps: s.in.action == "keep" || s.in.action == "flag"}
}

// folders lists the input's folders, sorted by name, with their STATUS
// when status is not nil; and notes the one IDLE watches.
func (s *session) folders(status *goimap.StatusOptions) ([]mailbox, error) {
	folders, err := s.c.listFolders(s.in.Folders, s.in.Exclude, status)
	if err != nil {
		return nil, err
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].path < folders[j].path })
	watch := ""
	for _, f := range folders {
		if watch == "" || f.path == "INBOX" {
			watch = f.name
		}
	}
	s.in.mu.Lock()
	if s.in.watched != watch {
		s.in.watched, s.in.uidNext = watch, 0
	}
	s.in.mu.Unlock()
	return folders, nil
}

// listFolder lists one folder whole (the messages the selection takes),
// and where it stands.
func (s *session) listFolder(f mailbox) ([]plugin.Item, mark, error) {
	data, err := s.c.selectFolder(f.name)
	if err != nil {
		return nil, mark{}, err
	}
	m := mark{validity: data.UIDValidity, modSeq: data.HighestModSeq, uidNext: uint32(data.UIDNext), messages: data.NumMessages}
	s.in.noteUIDNext(f.name, m.uidNext)
	msgs, err := s.c.matching(data.NumMessages, s.in.criteria())
	if err != nil {
		return nil, m, err
	}
	var items []plugin.Item
	for _, msg := range msgs {
		if it, ok := item(f, m.validity, msg); ok {
			items = append(items, it)
		}
	}
	return items, m, nil
}

// item is a listed message as the engine sees it; not ok for one marked
// \Deleted, which is on its way out and not ours to deliver.
func item(f mailbox, validity uint32, m msgInfo) (plugin.Item, bool) {
	if containsFold(m.Flags, `\Deleted`) {
		return plugin.Item{}, false
	}
	return plugin.Item{
		ID: fmt.Sprintf("%s/%d/%d", f.path, validity, m.UID), Size: m.Size,
		Folder: f.path, FolderRole: f.role, Flags: m.Flags, Date: m.Date, Identity: m.Identity, Ref: ref{f.name, m.UID},
	}, true
}

// noteUIDNext records the UIDNEXT of the folder IDLE watches, when it is
// that folder.
func (in *Input) noteUIDNext(folder string, uidNext uint32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if folder == in.watched {
		in.uidNext = uidNext
	}
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
func byFolder(items []plugin.Item) (folders []string, of map[string][]plugin.Item) {
	of = map[string][]plugin.Item{}
	for _, it := range items {
		r := it.Ref.(ref)
		if _, ok := of[r.folder]; !ok {
			folders = append(folders, r.folder)
		}
		of[r.folder] = append(of[r.folder], it)
	}
	return folders, of
}

// uidsOf are the UIDs of items.
func uidsOf(items []plugin.Item) []uint32 {
	out := make([]uint32, len(items))
	for i, it := range items {
		out[i] = it.Ref.(ref).uid
	}
	return out
}

// Fetch implements plugin.Session: per folder, one UID FETCH BODY.PEEK[]
// of every message asked for (the UIDs as ranges, "1:40,45"), each handed
// on as it streams in; a message with several copies (Gmail's labels) is
// fetched once and handed on as each. Past max_bytes_per_day, what does
// not fit is not fetched, and Fetch says how long until it would.
func (s *session) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	items, over := s.in.withinDay(items)
	if err := s.fetch(ctx, items, each); err != nil {
		return err
	}
	return over
}

func (s *session) fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	folders, of := byFolder(items)
	workers := min(s.in.Parallel, len(folders), sessionsWorth(s.c, len(folders), bytesOf(items)))
	if workers <= 1 {
		for _, f := range folders {
			if err := s.in.fetchFolder(ctx, &s.c, f, of[f], each); err != nil {
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
			c := &s.c // only this worker uses the session's own meanwhile
			if w > 0 {
				own, err := s.in.dial(ctx)
				if err != nil {
					cancel(err)
					return
				}
				c = &own
				defer func() { (*c).close() }()
			}
			for f := range todo {
				if ctx.Err() != nil {
					return
				}
				if err := s.in.fetchFolder(ctx, c, f, of[f], each); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// handError is an error of the engine's each, which ends a Fetch as it is.
type handError struct{ err error }

func (e *handError) Error() string { return e.err.Error() }

// Reconnecting in the middle of a Fetch: at most fetchRetries times a
// folder, and only when the server asked to wait no longer than
// fetchRetryWait (a longer wait is the engine's to keep, by polling later).
const (
	fetchRetries   = 3
	fetchRetryWait = 10 * time.Second
)

// fetchFolder streams the messages of one folder with one UID FETCH over
// *c. When the server ends the session midway (it closed it, or said BYE),
// it logs in again, replacing *c, and fetches the rest.
func (in *Input) fetchFolder(ctx context.Context, c **conn, f string, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	todo := make(map[uint32][]plugin.Item, len(items))
	for _, it := range items {
		uid := it.Ref.(ref).uid
		todo[uid] = append(todo[uid], it)
	}
	for try := 0; ; try++ {
		err := in.fetchOnce(ctx, *c, f, todo, each)
		if err == nil {
			break
		}
		var he *handError
		if errors.As(err, &he) {
			return he.err
		}
		if (*c).wd.silenced() {
			// A server that stopped answering once is not asked again
			// within this poll: the next one tries, and the messages wait.
			return in.throttled(fmt.Errorf("imap FETCH in %q: no answer within %v (timeout): %w", f, (*c).wd.timeout, err))
		}
		wait, _ := serverWait(err)
		if !gone(*c) || try == fetchRetries || wait > fetchRetryWait || ctx.Err() != nil {
			return in.throttled(err)
		}
		in.log.Info("the server ended the session in the middle of a FETCH; logging in again", "folder", f, "left", len(todo), "err", err)
		if err := rate.Sleep(ctx, wait); err != nil {
			return err
		}
		nc, derr := in.dial(ctx)
		if derr != nil {
			return errors.Join(err, derr)
		}
		(*c).c.Close()
		*c = nc
	}
	for _, its := range todo {
		for _, it := range its {
			if err := each(it, nil, errors.New("the server no longer has it")); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetchOnce is one UID FETCH of the messages of todo in folder f; each
// message handed on (as each of its copies) leaves todo.
func (in *Input) fetchOnce(ctx context.Context, c *conn, f string, todo map[uint32][]plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	if err := ctx.Err(); err != nil {
		return &handError{err}
	}
	if len(todo) == 0 {
		return nil
	}
	uids := make([]uint32, 0, len(todo))
	for u := range todo {
		uids = append(uids, u)
	}
	// The FETCH goes with the EXAMINE (selectThen).
	var cmd *imapclient.FetchCommand
	if _, err := c.selectThen(f, &goimap.SelectOptions{ReadOnly: true}, func() { cmd = c.bodiesCmd(uids) }); err != nil {
		cmd.Close()
		return err
	}
	return c.bodies(cmd, func(uid uint32, r io.Reader) error {
		its, ok := todo[uid]
		if !ok {
			return nil
		}
		if len(its) > 1 {
			err := handCopies(its, r, in.spool, each)
			var he *handError
			if err == nil || errors.As(err, &he) {
				delete(todo, uid)
				in.calm()
			}
			return err
		}
		delete(todo, uid)
		if err := each(its[0], r, nil); err != nil {
			return &handError{err}
		}
		in.calm()
		return nil
	})
}

// gone reports whether the server closed c, or said BYE.
func gone(c *conn) bool { return !c.open() }

// Identify implements plugin.Identifier: per folder, one UID FETCH of the
// header fields that name a message.
func (s *session) Identify(ctx context.Context, items []plugin.Item) error {
	folders, of := byFolder(items)
	found := map[ref]string{}
	for _, f := range folders {
		if err := ctx.Err(); err != nil {
			return err
		}
		var cmd *imapclient.FetchCommand
		_, err := s.c.selectThen(f, &goimap.SelectOptions{ReadOnly: true}, func() { cmd = s.c.identifyCmd(uidSet(uidsOf(of[f]))) })
		infos, ferr := s.c.infoOf(cmd, true)
		if err == nil {
			err = ferr
		}
		if err != nil {
			return s.in.throttled(err)
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

// Commit implements plugin.Session with on_settled's action. A session the
// server ended since the listing is logged in again first.
func (s *session) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	if s.in.action == "keep" || len(items) == 0 {
		return nil, nil
	}
	if gone(s.c) {
		c, err := s.in.dial(ctx)
		if err != nil {
			return items, nil
		}
		s.c.c.Close()
		s.c = c
	}
	var later []plugin.Item
	if s.gm != nil {
		items, later = s.gmailCommit(items)
	}
	folders, of := byFolder(items)
	failed := later
	for _, f := range folders {
		uids := uidsOf(of[f])
		_, _, err := s.c.examine(f, true)
		if err == nil {
			switch s.in.action {
			case "delete":
				err = s.c.remove(uids)
			case "move":
				err = s.moveTo(uids, s.in.arg)
			case "flag":
				err = s.c.addFlags(uids, s.in.arg)
			}
		}
		if err != nil {
			s.in.log.Warn("could not commit settled messages; they are committed on the next poll", "folder", f, "count", len(uids), "err", err)
			failed = append(failed, of[f]...)
		}
	}
	return failed, nil
}

// moveTo moves uids of the selected folder to folder (mailflow's name),
// making it first if it is not there.
func (s *session) moveTo(uids []uint32, folder string) error {
	n, err := s.c.names()
	if err != nil {
		return err
	}
	to, err := n.server(folder)
	if err != nil {
		return err
	}
	if err := s.c.create(to); err != nil {
		return err
	}
	return s.c.move(uids, to)
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

// Reusable implements plugin.Reusable: Close only logs out (what a poll
// settles, Commit moved, flagged or deleted). A session that said nothing
// for reuseIdle may have been dropped by the server or a NAT on the way
// without a word, and is not offered.
func (s *session) Reusable() bool {
	return s.c.open() && time.Since(time.Unix(0, s.c.wd.last.Load())) < reuseIdle
}

// reuseIdle is how long a session may have been quiet and still be
// offered for reuse: as long as an output's session waits before it is
// asked a NOOP first (lanes.checkAfter).
const reuseIdle = 30 * time.Second

var (
	_ plugin.Input        = (*Input)(nil)
	_ plugin.Provisioner  = (*Input)(nil)
	_ plugin.Initializer  = (*Input)(nil)
	_ plugin.FileUser     = (*Input)(nil)
	_ plugin.MailWaiter   = (*Input)(nil)
	_ plugin.Identifier   = (*session)(nil)
	_ plugin.DeltaSession = (*session)(nil)
	_ plugin.FolderStater = (*session)(nil)
	_ plugin.Reusable     = (*session)(nil)
)
