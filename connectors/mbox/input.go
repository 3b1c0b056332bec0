package mbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
	"github.com/mailflow/mailflow/internal/fsync"
)

// Input imports an mbox file. Its exported fields are its config.
//
// A message's id is its byte offset in the file and a digest of its From_
// line and header ("1234567-9f86d081884c7d65"), so an interrupted import
// goes on where it stopped: the ledger has every id it settled, and a
// message settled before is passed over on its id and size without being
// read. The file is never changed (on_settled is "keep"), so the ids are
// Stable for as long as the file does not change:
//
//   - Appended to (a mail spool, a second export written onto the first):
//     every message before keeps its offset and its id, and only the new
//     ones are imported. The file is read again from its last message on,
//     not from the start (that message may have been cut short and
//     completed since).
//   - Rewritten (a mail reader expunged a message, a new export replaced
//     the file): the messages after the change move, and under ids of
//     their offsets they would all be imported again. The input sees it
//     (the ids it listed before are no longer all where they were), and
//     for that poll changes its Scheme ("mbox-offset/2"): the engine then
//     reads every message and matches it to what it delivered by content,
//     so none is delivered twice, and the next polls go by id again. The
//     input keeps what it needs for this in state_dir (mbox/NAME.json: the
//     file's size, a digest of its ids, the scheme's number), so that a
//     rewrite while mailflow was stopped is seen too.
//
// Listing costs one read of the file (a scan for From_ lines that hashes
// no more than each header), fetching another read of the messages not yet
// delivered. A file that did not change since the last poll of this
// process is not read again at all, and one that grew is read from its
// last message on. No index file is kept: after a restart the first poll
// reads the file once to list it, at disk speed, which is what an index
// would have had to be checked against anyway.
//
// While it lists, the input holds a read lock (fcntl) on the file, and
// again while it reads each message: a writer that locks (Postfix, procmail,
// mutt, this package's output) is never seen half-way through a message.
// A last message cut short all the same (a download interrupted; a writer
// that does not lock) is delivered as it is, with a warning: what the file
// holds of it is all there will ever be of it, and holding it back would
// lose it. If the file later grows at that point, the message has a new
// size, the engine reads it again, finds other bytes under its id, and
// delivers the whole one too: a second copy, never a lost one.
type Input struct {
	Path string `toml:"path"`
	// Variant is "auto" (default), "mboxo", "mboxrd" or "mboxcl2".
	Variant string `toml:"variant"`
	// Labels is what Takeout's X-Gmail-Labels become: "first" (default),
	// "copies", "keywords" or "none" (see labels.go and sample.conf).
	Labels           string `toml:"labels"`
	IncludeSpamTrash bool   `toml:"include_spam_trash"`
	// Folder is the folder of a message without labels.
	Folder string `toml:"folder"`
	// OnSettled can only be "keep": an mbox being imported is never
	// rewritten.
	OnSettled   string `toml:"on_settled"`
	LockTimeout string `toml:"lock_timeout"`

	log         *slog.Logger
	file        string
	stateFile   string // "" without a state_dir
	variant     Variant
	mode        labelMode
	lockTimeout time.Duration

	mu   sync.Mutex
	last *listed // the last listing, while the file does not change
}

// SampleConfig returns the documented sample config of both plugins.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.log, in.file = env.Logger, resolve(env.BaseDir, in.Path)
	if env.StateDir != "" && env.Name != "" {
		in.stateFile = filepath.Join(env.StateDir, "mbox", url.PathEscape(env.Name)+".json")
	}
	return nil
}

// Check implements plugin.Checker: the file is there and can be read.
func (in *Input) Check() error {
	if err := fscheck.ReadableFile(in.file); err != nil {
		return fmt.Errorf("path: %v", err)
	}
	return nil
}

// Init implements plugin.Initializer.
func (in *Input) Init() error {
	if in.Path == "" {
		return errors.New("path is required")
	}
	if in.file == "" {
		in.file = in.Path
	}
	if in.log == nil {
		in.log = slog.Default()
	}
	if in.OnSettled != "" && in.OnSettled != "keep" {
		return fmt.Errorf(`on_settled must be "keep" for an mbox (the file is never changed), not %q`, in.OnSettled)
	}
	var err error
	if in.variant, err = ParseVariant(in.Variant); err != nil {
		return err
	}
	if in.mode, err = parseLabelMode(in.Labels); err != nil {
		return err
	}
	in.lockTimeout = 30 * time.Second
	if in.LockTimeout != "" {
		if in.lockTimeout, err = time.ParseDuration(in.LockTimeout); err != nil || in.lockTimeout <= 0 {
			return fmt.Errorf("lock_timeout: %q is no duration such as \"30s\"", in.LockTimeout)
		}
	}
	return nil
}

// Open implements plugin.Input.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	return &session{in: in}, nil
}

// maxIDHeader is the most of a message's From_ line and header that its
// id's digest covers, and that is read for its labels.
const maxIDHeader = 64 << 10

// span is one message's place in the file.
type span struct {
	off, end  int64 // its From_ line to the next one (or the end of the file)
	size      int64 // the bytes handed over
	idLen     int64 // the bytes from off that the digest covers
	digest    [8]byte
	truncated bool
	items     int    // how many items it made (0: skipped)
	ident     string // id(), made once
}

func (sp *span) id() string {
	return strconv.FormatInt(sp.off, 10) + "-" + hex.EncodeToString(sp.digest[:])
}

// listed is a listing of the file, and what it was made from.
type listed struct {
	dev, ino uint64
	size     int64
	mtime    int64
	spans    []*span
	items    []plugin.Item
	gen      int
	chain    [32]byte // over the ids of spans[:len(spans)-1]
	labels   labeller
	scheme   string
}

// state is what a listing leaves in state_dir, for the next process to
// tell a file appended to from one rewritten.
type state struct {
	Path  string `json:"path"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Gen   int    `json:"gen"`
	N     int    `json:"messages"` // the messages chain covers: all but the last
	Chain string `json:"chain"`
}

type session struct {
	in  *Input
	f   *os.File
	rd  *Reader
	raw []byte // for checking a message's id before reading it
}

// List reads the file (or the part of it that is new) under a read lock.
func (s *session) List(ctx context.Context) (plugin.Listing, error) {
	in := s.in
	if s.f == nil {
		f, err := os.Open(in.file)
		if err != nil {
			return plugin.Listing{}, err
		}
		s.f = f
	}
	unlock, err := fcntlLock(ctx, s.f, syscall.F_RDLCK, in.lockTimeout)
	if errors.Is(err, errNoLocks) {
		in.log.Debug("mbox: reading without a lock", "err", err)
	} else if err != nil {
		return plugin.Listing{}, err
	}
	defer unlock()
	st, err := s.f.Stat()
	if err != nil {
		return plugin.Listing{}, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	l, err := in.list(ctx, s.f, st)
	if err != nil {
		return plugin.Listing{}, err
	}
	// The engine reads Items and does not change them (only a session
	// that is a plugin.Identifier has its items' Identity filled in), so
	// the kept listing is handed over without a copy.
	return plugin.Listing{Scheme: l.scheme, Stable: true, Keeps: true, Items: l.items}, nil
}

// list returns the listing of f as it is now: the last one if f did not
// change, the last one and f's new messages if it grew, else a new one.
func (in *Input) list(ctx context.Context, f *os.File, st os.FileInfo) (*listed, error) {
	sys, _ := st.Sys().(*syscall.Stat_t)
	now := &listed{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys != nil {
		now.dev, now.ino = uint64(sys.Dev), sys.Ino
	}
	prev := in.last
	same := prev != nil && prev.dev == now.dev && prev.ino == now.ino
	if same && prev.size == now.size && prev.mtime == now.mtime {
		return prev, nil
	}
	start := time.Now()
	if same && prev.size < now.size && len(prev.spans) > 0 {
		if ok, err := in.extend(ctx, f, prev, now); err != nil {
			return nil, err
		} else if ok {
			in.log.Debug("mbox: read what was appended", "path", in.file, "messages", len(now.spans)-len(prev.spans)+1,
				"from", now.spans[len(prev.spans)-1].off, "took", time.Since(start).Round(time.Millisecond))
			in.last = now
			in.save(now)
			return now, nil
		}
		now.spans, now.items, now.labels = nil, nil, labeller{}
	}
	// What the file held before: this process's last listing, else what
	// the last process left in state_dir.
	prevN, prevGen, prevChain := 0, 0, [32]byte{}
	if prev != nil {
		prevN, prevGen, prevChain = max(len(prev.spans)-1, 0), prev.gen, prev.chain
	} else if s, ok := in.load(); ok {
		prevN, prevGen = s.N, s.Gen
		hex.Decode(prevChain[:], []byte(s.Chain))
	}
	var atPrev [32]byte
	if err := in.scan(ctx, f, 0, now, func(i int, chain [32]byte) {
		if i == prevN {
			atPrev = chain
		}
	}); err != nil {
		return nil, err
	}
	now.gen = prevGen
	if prevN > 0 && (len(now.spans)-1 < prevN || atPrev != prevChain) {
		now.gen++
		in.log.Warn("mbox: the file was rewritten since it was last listed (messages are no longer where they were); this poll matches every message to what was delivered by its content, so none is delivered twice",
			"path", in.file, "scheme", schemeName(now.gen))
	}
	now.scheme = schemeName(now.gen)
	in.log.Info("mbox: listed", "path", in.file, "messages", len(now.spans), "items", len(now.items), "bytes", now.size,
		"took", time.Since(start).Round(time.Millisecond))
	in.logSkipped(now)
	in.last = now
	in.save(now)
	return now, nil
}

func schemeName(gen int) string {
	if gen == 0 {
		return "mbox-offset"
	}
	return "mbox-offset/" + strconv.Itoa(gen)
}

// extend reads f from prev's last message on into now, which keeps prev's
// messages before it. It reports false when that last message is not
// where it was (the file was rewritten, not appended to).
func (in *Input) extend(ctx context.Context, f *os.File, prev, now *listed) (bool, error) {
	n := len(prev.spans)
	last := prev.spans[n-1]
	now.gen, now.scheme, now.chain = prev.gen, prev.scheme, prev.chain
	now.labels = prev.labels
	now.labels.chats, now.labels.junk = 0, 0
	// The last message's items are the listing's last ones.
	now.items = prev.items[: len(prev.items)-last.items : len(prev.items)-last.items]
	now.spans = prev.spans[: n-1 : n-1]
	err := in.scanFrom(ctx, f, last.off, now, now.chain, func(int, [32]byte) {})
	if IsFormatError(err) {
		return false, nil // no From_ line where the last message was
	}
	if err != nil {
		return false, err
	}
	if len(now.spans) < n || now.spans[n-1].off != last.off || now.spans[n-1].digest != last.digest {
		return false, nil
	}
	in.logSkipped(now)
	return true, nil
}

// scan lists f whole into now.
func (in *Input) scan(ctx context.Context, f *os.File, from int64, now *listed, at func(int, [32]byte)) error {
	return in.scanFrom(ctx, f, from, now, [32]byte{}, at)
}

// scanFrom reads f from offset from (a From_ line) to now.size, adding a
// span per message and its items to now. chain is the digest of the ids
// of now.spans so far; at is told each next value (with the number of
// messages it covers), and now.chain is left covering all but the last.
func (in *Input) scanFrom(ctx context.Context, f *os.File, from int64, now *listed, chain [32]byte, at func(int, [32]byte)) error {
	rd := NewReader(io.NewSectionReader(f, from, now.size-from), in.variant)
	hdr := make([]byte, maxIDHeader)
	raw := make([]byte, maxIDHeader)
	now.labels.mode, now.labels.spamTrash, now.labels.folder = in.mode, in.IncludeSpamTrash, in.Folder
	covered := len(now.spans) // chain covers them
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", in.file, shifted(err, from))
		}
		k, _ := io.ReadFull(m, hdr)
		block, whole := headerBlock(hdr[:k], k < len(hdr))
		m.skip()
		if m.err != nil {
			return fmt.Errorf("%s: %w", in.file, shifted(m.err, from))
		}
		sp := &span{off: from + m.Offset, end: from + m.End(), size: m.Size(), truncated: m.Truncated()}
		idEnd := m.HeaderEnd()
		if idEnd < 0 {
			idEnd = m.End()
		}
		sp.idLen = min(idEnd-m.Offset, maxIDHeader)
		if _, err := f.ReadAt(raw[:sp.idLen], sp.off); err != nil {
			return fmt.Errorf("%s: %w", in.file, err)
		}
		d := sha256.Sum256(raw[:sp.idLen])
		copy(sp.digest[:], d[:])
		if sp.truncated {
			in.log.Warn("mbox: the file's last message is cut short (its last line has no line end, or its Content-Length runs past the end of the file); it is delivered as it is",
				"path", in.file, "offset", sp.off, "bytes", sp.size)
		}
		identity := ""
		if whole {
			identity = headerIdentity(block, sp.size)
		}
		mk := now.labels.marks(block)
		id, date := sp.id(), m.Date()
		sp.ident = id
		if mk.skip == "" {
			for _, p := range mk.places {
				it := plugin.Item{ID: id, Size: sp.size, Folder: p.folder, FolderRole: p.role, Flags: mk.flags,
					Date: date, Identity: identity, Ref: sp}
				if p.copy != "" {
					it.ID = id + "/" + p.copy
				}
				now.items = append(now.items, it)
				sp.items++
			}
		}
		// The chain covers every message but the last, which may yet
		// grow: it takes a message in once the next one is seen.
		for ; covered < len(now.spans); covered++ {
			chain = sha256.Sum256(append(chain[:], now.spans[covered].ident...))
			at(covered+1, chain)
		}
		now.spans = append(now.spans, sp)
	}
	now.chain = chain
	return nil
}

// headerIdentity is message.HeaderIdentity(block, size), without
// parsing the whole header where it need not: a header that the engine's
// parser reads as this one does (its first line a field, every line
// ended by LF or CRLF, no "Message-ID :") and that has a one-line
// Message-ID is named by it, as message.Identity names it.
func headerIdentity(block []byte, size int64) string {
	if simpleHeader(block) {
		if v, folded, ok := field(block, "Message-ID"); ok && !folded {
			if id := strings.Trim(v, "<>"); id != "" {
				return id
			}
		}
	}
	return message.HeaderIdentity(block, size)
}

// simpleHeader reports whether block is a header that field reads as the
// engine's parser does.
func simpleHeader(block []byte) bool {
	colon, nl := bytes.IndexByte(block, ':'), bytes.IndexByte(block, '\n')
	if colon <= 0 || nl >= 0 && nl < colon {
		return false
	}
	name := bytes.TrimRight(block[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	for rest := block; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if i := bytes.IndexByte(line, '\r'); i >= 0 && (i != len(line)-2 || line[i+1] != '\n') {
			return false // a CR that is no CRLF ends a line for the engine
		}
		if isBlank(line) && len(rest) > 0 {
			return false // the header ended before
		}
		const name = "message-id"
		if len(line) > len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) && line[len(name)] != ':' {
			return false
		}
	}
	return true
}

// headerBlock is the header block at the start of b (the bytes of a
// message, all of them if ended): up to and with its blank line. whole
// is false when b ends inside the header.
func headerBlock(b []byte, ended bool) (block []byte, whole bool) {
	if bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) {
		return nil, true
	}
	end := -1
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		end = i + 2
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i+3 < end) {
		end = i + 3
	}
	if end < 0 {
		return b, ended
	}
	return b[:end], true
}

// shifted moves the offset of a FormatError by from.
func shifted(err error, from int64) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return &FormatError{Offset: fe.Offset + from, Reason: fe.Reason}
	}
	return err
}

func (in *Input) logSkipped(l *listed) {
	if l.labels.chats > 0 || l.labels.junk > 0 {
		in.log.Info("mbox: skipped Takeout messages", "path", in.file, "chats", l.labels.chats,
			"spam_and_trash", l.labels.junk, "hint", "include_spam_trash = true imports Spam and Trash")
	}
}

// load reads what the last listing left in state_dir, if it was of this
// path.
func (in *Input) load() (state, bool) {
	var s state
	if in.stateFile == "" {
		return s, false
	}
	b, err := os.ReadFile(in.stateFile)
	if err != nil {
		return s, false
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Path != in.file {
		return state{}, false
	}
	return s, true
}

// save leaves what tells a later process whether the file was rewritten.
// A failure is logged: the next listing would then compare with an older
// state, and at worst match by content once more than it had to.
func (in *Input) save(l *listed) {
	if in.stateFile == "" {
		return
	}
	s := state{Path: in.file, Dev: l.dev, Ino: l.ino, Size: l.size, Gen: l.gen,
		N: max(len(l.spans)-1, 0), Chain: hex.EncodeToString(l.chain[:])}
	b, _ := json.Marshal(s)
	if old, err := os.ReadFile(in.stateFile); err == nil && bytes.Equal(old, b) {
		return
	}
	err := os.MkdirAll(filepath.Dir(in.stateFile), 0o700)
	if err == nil {
		err = fsync.WriteFile(in.stateFile, bytes.NewReader(b))
	}
	if err != nil {
		in.log.Warn("mbox: could not keep the file's state", "path", in.stateFile, "err", err)
	}
}

// ChangedError says that the file changed between the listing and the
// fetch of a message: the poll stops, and the next one lists it again.
type ChangedError struct {
	Path   string
	Offset int64
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("%s changed since it was listed (the message at byte %d is no longer there); it is listed again at the next poll", e.Path, e.Offset)
}

// Fetch reads each message by its byte range, under a read lock taken
// when the engine starts reading it.
func (s *session) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	if s.rd == nil {
		s.rd = NewReader(bytes.NewReader(nil), s.in.variant)
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		sp, ok := it.Ref.(*span)
		if !ok || s.f == nil {
			if err := each(it, nil, fmt.Errorf("mbox: item %s was not listed by this session", it.ID)); err != nil {
				return err
			}
			continue
		}
		g := &guarded{ctx: ctx, s: s, sp: sp}
		err := each(it, g, nil)
		g.release()
		if err != nil {
			var ce *ChangedError
			if errors.As(err, &ce) {
				s.in.forget()
			}
			return err
		}
	}
	return nil
}

// forget drops the kept listing, so that the next lists the file afresh.
func (in *Input) forget() {
	in.mu.Lock()
	in.last = nil
	in.mu.Unlock()
}

// guarded reads one message: at its first read it takes the read lock
// and checks that the message is still the one listed; at its end it lets
// the lock go. The engine may wait for room in memory between being
// handed the reader and reading it, and no writer should wait for that.
type guarded struct {
	ctx    context.Context
	s      *session
	sp     *span
	m      *Message
	unlock func()
	err    error
}

func (g *guarded) Read(p []byte) (int, error) {
	if g.m == nil {
		if g.err == nil {
			g.err = g.open()
		}
		if g.err != nil {
			g.release()
			return 0, g.err
		}
	}
	n, err := g.m.Read(p)
	if err != nil {
		g.release()
	}
	return n, err
}

func (g *guarded) open() error {
	s, sp := g.s, g.sp
	unlock, err := fcntlLock(g.ctx, s.f, syscall.F_RDLCK, s.in.lockTimeout)
	if err != nil && !errors.Is(err, errNoLocks) {
		return err
	}
	g.unlock = unlock
	if s.raw == nil {
		s.raw = make([]byte, maxIDHeader)
	}
	raw := s.raw
	if n, _ := s.f.ReadAt(raw[:sp.idLen], sp.off); int64(n) != sp.idLen {
		return &ChangedError{s.in.file, sp.off}
	}
	if d := sha256.Sum256(raw[:sp.idLen]); !bytes.Equal(d[:len(sp.digest)], sp.digest[:]) {
		return &ChangedError{s.in.file, sp.off}
	}
	s.rd.Reset(io.NewSectionReader(s.f, sp.off, sp.end-sp.off))
	m, err := s.rd.Next()
	if err != nil {
		return &ChangedError{s.in.file, sp.off}
	}
	g.m = m
	return nil
}

func (g *guarded) release() {
	if g.unlock != nil {
		g.unlock()
		g.unlock = nil
	}
}

// PeekHeader implements plugin.HeaderPeeker.
func (s *session) PeekHeader(ctx context.Context, it plugin.Item) ([]byte, error) {
	sp, ok := it.Ref.(*span)
	if !ok || s.f == nil {
		return nil, fmt.Errorf("mbox: item %s was not listed by this session", it.ID)
	}
	m, err := NewReader(io.NewSectionReader(s.f, sp.off, sp.end-sp.off), s.in.variant).Next()
	if err != nil {
		return nil, err
	}
	return message.ReadHeaderBlock(m, 1<<20)
}

// Commit does nothing: the file is never changed, and the ledger
// remembers what was settled.
func (s *session) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	return nil, nil
}

// Close closes the file.
func (s *session) Close(ctx context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

var (
	_ plugin.Input        = (*Input)(nil)
	_ plugin.Provisioner  = (*Input)(nil)
	_ plugin.Initializer  = (*Input)(nil)
	_ plugin.HeaderPeeker = (*session)(nil)
)
