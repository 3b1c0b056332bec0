package smtpd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/spoolfile"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fsync"
)

// The spool is where a received message is kept from the moment its
// client is told it was taken until the engine settled it: one file per
// message under state_dir/smtpd/INPUT. The input lists it as a Maildir
// input lists its folder, and the engine's commit removes it; so a crash
// at any point after the 250 leaves the message here, and the first poll
// after the restart takes it through the pipeline again. The ledger keeps
// what the engine did with it, as for every source: a message settled
// before the crash is only removed.
//
//	new/   messages taken (answered 250), waiting for the engine, and the
//	       message being received, until it is finished (below)
//	wait/  messages whose client still waits for the outcome
//	       (answer = "after_delivery"); a crash leaves their clients
//	       unanswered, so they send them again: removed at start-up
//	heads  the journal of the messages' heads (heads.go)
//	tmp/   where an older mailflow received messages; what it holds was
//	       never answered 250, and is removed at start-up
//
// A file holds the message as it will be delivered, and nothing else (the
// Received field mailflow added, then the data with every line end CRLF),
// so that the Maildir output can link it (spoolfile). Its head (the
// envelope and the client, and the file's length and CRC-32C) is a line
// of the heads journal.
//
// A message is written where it will stay (new/ or wait/), not renamed
// there from tmp/: the rename could only follow the file's sync, and the
// directory's sync the rename, so each client waited for two syncs one
// after the other before its 250, and receiving was slower than Postfix
// (smtpdbench). The directory's sync starts as the file is created, and
// runs while the data comes in; once the data is in, the head is
// appended to the journal, and the file and the journal are synced at
// the same time; the 250 waits for all three. A file whose head does not
// say its length and checksum (a crash of the machine before the syncs
// ended may keep any part of the file and of the journal) was never
// answered 250, and start-up removes it.
//
// Files an older mailflow spooled begin with their head: one line of JSON
// (spoolHead), after a mark line ("mailflow-spool LEN CRC") in the files
// of the release before this one; they are read as they were.

// The mark that begins a file of the release before this one:
// markPrefix, the length of the rest of the file (16 hex digits), a
// space, its CRC-32C (Castagnoli, 8 hex digits), a line end; dashes for
// the digits while the file was written.
const (
	markPrefix = "mailflow-spool "
	markLen    = len(markPrefix) + 16 + 1 + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// parseMark reads a finished mark.
func parseMark(b []byte) (n int64, sum uint32, ok bool) {
	if len(b) != markLen || !bytes.HasPrefix(b, []byte(markPrefix)) || b[markLen-1] != '\n' || b[markLen-10] != ' ' {
		return 0, 0, false
	}
	digits := b[len(markPrefix) : markLen-1]
	l, err1 := strconv.ParseUint(string(digits[:16]), 16, 63)
	c, err2 := strconv.ParseUint(string(digits[17:]), 16, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return int64(l), uint32(c), true
}

// errUnfinished is a spool file whose writing a crash cut short: its
// client never heard 250.
var errUnfinished = errors.New("the file was never finished")

// spoolHead is the JSON line of a spool file.
type spoolHead struct {
	V        int               `json:"v"`
	At       time.Time         `json:"at"`
	Received *message.Received `json:"received"`
}

// entryState is where a spooled message is in its client's eyes.
type entryState int

const (
	taken     entryState = iota // its client was told 250: the spool owns it
	waiting                     // its client waits for the outcome (after_delivery)
	answered                    // its client waited and was told the outcome
	abandoned                   // its client was told 451 and sends it again
)

// entry is one spooled message.
type entry struct {
	id      string
	dir     string // "new" or "wait"
	size    int64  // bytes of the message, without the head line
	head    int64  // bytes of the head line (a file an older mailflow spooled)
	crc     uint32 // of the file (with no head line in it)
	at      time.Time
	rcvd    *message.Received
	state   entryState
	fetched bool // a poll has read it: its fate will be answered
	// answer gets the one answer for a waiting client (after_delivery).
	answer chan fate
}

// spool is one input's spool directory. One spool serves the input across
// reloads (spools): the input a reload builds takes it over.
type spool struct {
	dir   string
	input string // its name: the spool's directory's
	log   *slog.Logger
	heads *heads

	mu                sync.Mutex
	entries           map[string]*entry
	bytes             int64 // of the messages spooled, for max_spool_size
	notify            chan struct{}
	seq               atomic.Uint64
	newSync, waitSync fsync.Group
	// syncFile and syncDir make a file and a directory durable; a test
	// sees through them in which order a message's syncs came.
	syncFile func(*os.File) error
	syncDir  func(*fsync.Group) error

	// Blank files made ahead in new/ (blank.go).
	blanks   chan *blank
	stopFill chan struct{}
	fillDone chan struct{}

	refs int // inputs holding it (see spools)
}

// spools are the spools in use, by directory.
var spools = struct {
	sync.Mutex
	m map[string]*spool
}{m: map[string]*spool{}}

// openSpool returns the spool in dir, opening it (and cleaning what a
// crash left) if no input holds it yet.
func openSpool(dir string, log *slog.Logger) (*spool, error) {
	spools.Lock()
	defer spools.Unlock()
	if s := spools.m[dir]; s != nil {
		s.refs++
		return s, nil
	}
	s := &spool{dir: dir, input: filepath.Base(dir), log: log, entries: map[string]*entry{}, notify: make(chan struct{}, 1), refs: 1,
		syncFile: (*os.File).Sync, syncDir: (*fsync.Group).Sync}
	s.newSync.Dir, s.waitSync.Dir = filepath.Join(dir, "new"), filepath.Join(dir, "wait")
	if err := s.load(); err != nil {
		return nil, err
	}
	s.startFilling()
	spools.m[dir] = s
	return s, nil
}

// lastHolder reports whether only one input holds s.
func (s *spool) lastHolder() bool {
	spools.Lock()
	defer spools.Unlock()
	return s.refs == 1
}

// release gives up one input's hold on s; the last one answers the
// clients still waiting and forgets s.
func (s *spool) release() {
	spools.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		delete(spools.m, s.dir)
	}
	spools.Unlock()
	if last {
		s.stopWaiting("mailflow is stopping")
		s.stopFilling()
		s.mu.Lock()
		for id, en := range s.entries {
			if en.head == 0 {
				spoolfile.Remove(s.input, id)
			}
		}
		s.mu.Unlock()
		s.heads.close()
	}
}

// load makes the spool's directories and reads what is spooled: a file in
// tmp/ was never answered 250 and is removed; a file in wait/ belonged to
// a client that waited for its outcome and never got it (it sends the
// message again), and is removed too; so is a file in new/ that was
// never finished.
func (s *spool) load() error {
	for _, sub := range []string{"tmp", "new", "wait"} {
		if err := os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
			return err
		}
	}
	for _, sub := range []string{"tmp", "wait"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := os.Remove(filepath.Join(s.dir, sub, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if sub == "wait" {
				s.log.Warn("removed a message whose client was never answered (answer = \"after_delivery\"); its client sends it again", "id", e.Name())
			}
		}
		if len(ents) > 0 {
			if err := fsync.Dir(filepath.Join(s.dir, sub)); err != nil {
				return err
			}
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "new"))
	if err != nil {
		return err
	}
	hs, err := readHeads(s.dir)
	if err != nil {
		return err
	}
	live := map[string][]byte{}
	unfinished := 0
	for _, e := range ents {
		en, line, err := readEntry(filepath.Join(s.dir, "new", e.Name()), hs)
		if line != nil {
			live[en.id] = line
		}
		if errors.Is(err, errUnfinished) {
			info, _ := e.Info()
			if err := os.Remove(filepath.Join(s.dir, "new", e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if info == nil || info.Size() > 0 { // else a blank file (blank.go)
				s.log.Info("removed a message whose receiving mailflow stopped before its end; its client was never answered, and sends it again", "id", e.Name())
			}
			unfinished++
			continue
		}
		if err != nil {
			// Kept for a person to look at: it was answered 250.
			s.log.Error("a spooled message cannot be read; it stays in the spool", "file", filepath.Join(s.dir, "new", e.Name()), "err", err)
			continue
		}
		s.entries[en.id] = en
		s.bytes += en.size
	}
	if unfinished > 0 {
		if err := fsync.Dir(filepath.Join(s.dir, "new")); err != nil {
			return err
		}
	}
	// A fresh journal of the heads of what is spooled.
	if s.heads, err = openHeads(s.dir, live, func(f *os.File) error { return s.syncFile(f) }); err != nil {
		return err
	}
	for _, en := range s.entries {
		if en.head == 0 {
			spoolfile.Add(s.input, en.id, spoolfile.File{Path: filepath.Join(s.dir, "new", en.id), Size: en.size, CRC: en.crc})
		}
	}
	if len(s.entries) > 0 {
		s.log.Info("messages received before a restart are in the spool; they go through the pipeline now", "count", len(s.entries))
	}
	return nil
}

// readEntry reads a spooled file, after checking that it was finished
// (errUnfinished if not): its head in the journal (hs) says its length
// and checksum. For such a file it returns the head's line, for the
// journal to keep. A file an older mailflow spooled begins with its head
// line: without a mark it is whole; with one, the mark says its length
// and checksum.
func readEntry(path string, hs map[string]headLine) (*entry, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	id := filepath.Base(path)
	sums := func(off, n int64, sum uint32) error {
		if info.Size() != off+n {
			return errUnfinished
		}
		h := crc32.New(castagnoli)
		if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
			return fmt.Errorf("reading it: %w", err)
		}
		if h.Sum32() != sum {
			return errUnfinished
		}
		return nil
	}
	br := bufio.NewReaderSize(f, 64<<10)
	first, _ := br.Peek(len(markPrefix))
	var mark int64
	switch {
	case len(first) > 0 && first[0] == '{':
	case bytes.Equal(first, []byte(markPrefix)):
		b := make([]byte, markLen)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, nil, errUnfinished
		}
		n, sum, ok := parseMark(b)
		if !ok {
			return nil, nil, errUnfinished
		}
		if err := sums(int64(markLen), n, sum); err != nil {
			return nil, nil, err
		}
		mark = int64(markLen)
	default:
		hl, ok := hs[id]
		if !ok {
			return nil, nil, errUnfinished
		}
		if err := sums(0, hl.Len, hl.CRC); err != nil {
			return nil, nil, err
		}
		line, _ := json.Marshal(hl)
		return &entry{id: id, dir: "new", size: hl.Len, crc: hl.CRC, at: hl.At, rcvd: hl.Received}, append(line, '\n'), nil
	}
	line, err := br.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) && len(line) < 16<<20 {
		var more []byte
		more, err = br.ReadSlice('\n')
		line = append(append([]byte(nil), line...), more...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading its head: %w", err)
	}
	var h spoolHead
	if err := json.Unmarshal(line, &h); err != nil || h.V != 1 || h.Received == nil {
		return nil, nil, fmt.Errorf("its head is not a spool head: %v", err)
	}
	head := mark + int64(len(line))
	return &entry{id: id, dir: "new", head: head, size: info.Size() - head, at: h.At, rcvd: h.Received}, nil, nil
}

// newID makes a spool id: the time, a counter and random bytes, so that
// it is never given again (the ledger keeps records by it).
func (s *spool) newID() string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%x.%x.%s", time.Now().UnixNano(), s.seq.Add(1), hex.EncodeToString(rnd[:]))
}

// spooling is one message being written into the spool.
type spooling struct {
	s    *spool
	id   string
	dir  string // "new", or "wait" when its client waits for the outcome
	f    *os.File
	bw   *bufio.Writer
	sum  *summer
	at   time.Time
	rcvd *message.Received
	// dirSynced gets the error of the sync of dir that began once the
	// file was created there.
	dirSynced chan error
	// Message is where the message's bytes go: through it every line
	// end is made CRLF.
	Message *crlfWriter
}

// summer writes to the file, counting and checksumming.
type summer struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (s *summer) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	s.n += int64(n)
	return n, err
}

// create starts a message in new/ (wait/ when its client waits for the
// outcome): in a blank file made ahead, or a file made now. The sync of
// the directory that began once the file was made (one sync for the
// files made meanwhile: group commit) makes its name durable while the
// data comes in.
func (s *spool) create(rcvd *message.Received, wait bool) (*spooling, error) {
	dir, syncer := "new", &s.newSync
	if wait {
		dir, syncer = "wait", &s.waitSync
	}
	var b *blank
	if !wait {
		b = s.takeBlank()
	}
	if b == nil {
		var err error
		if b, err = s.makeFile(dir, syncer); err != nil {
			return nil, err
		}
	}
	sum := &summer{w: b.f}
	sp := &spooling{s: s, id: b.id, dir: dir, f: b.f, bw: bufio.NewWriterSize(sum, 64<<10), sum: sum,
		at: time.Now().UTC(), rcvd: rcvd, dirSynced: b.synced}
	sp.Message = &crlfWriter{w: sp.bw}
	return sp, nil
}

// abort removes a message that will not be taken. Its directory is not
// synced: should the name come back after a crash, no head says it was
// finished, and start-up removes it.
func (sp *spooling) abort() {
	sp.f.Close()
	os.Remove(filepath.Join(sp.s.dir, sp.dir, sp.id))
}

// commit makes the message durable: its head, with the file's length and
// checksum, appended to the journal, and three syncs at once: the file,
// the journal, and the sync of the directory that began after the file
// was created. Only then is it listed, and the engine woken. The entry is
// returned for a waiting client to wait on.
func (sp *spooling) commit() (*entry, error) {
	s := sp.s
	err := sp.Message.Close()
	if err == nil {
		err = sp.bw.Flush()
	}
	var n uint64
	if err == nil {
		n, err = s.heads.add(sp.id, headLine{ID: sp.id, Len: sp.sum.n, CRC: sp.sum.crc, spoolHead: spoolHead{V: 1, At: sp.at, Received: sp.rcvd}})
	}
	headSynced := make(chan error, 1)
	if err == nil {
		go func() { headSynced <- s.heads.sync(n) }()
		err = s.syncFile(sp.f)
	}
	if cerr := sp.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = <-sp.dirSynced
	}
	if err == nil {
		err = <-headSynced
	}
	if err != nil {
		s.heads.forget(sp.id)
		os.Remove(filepath.Join(s.dir, sp.dir, sp.id))
		return nil, err
	}
	en := &entry{id: sp.id, dir: sp.dir, size: sp.sum.n, crc: sp.sum.crc, at: sp.at, rcvd: sp.rcvd}
	if sp.dir == "wait" {
		en.state, en.answer = waiting, make(chan fate, 1)
	}
	s.mu.Lock()
	s.entries[en.id] = en
	s.bytes += en.size
	s.mu.Unlock()
	spoolfile.Add(s.input, en.id, spoolfile.File{Path: filepath.Join(s.dir, en.dir, en.id), Size: en.size, CRC: en.crc})
	s.wake()
	return en, nil
}

// wake tells the engine there is new mail (WaitForMail).
func (s *spool) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// list is what the spool holds, oldest first.
func (s *spool) list() []plugin.Item {
	s.mu.Lock()
	items := make([]plugin.Item, 0, len(s.entries))
	for _, en := range s.entries {
		items = append(items, plugin.Item{ID: en.id, Size: en.size, Date: en.at, Received: en.rcvd, Ref: en})
	}
	s.mu.Unlock()
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	return items
}

// open opens a spooled message for the engine to read, at its first byte.
func (s *spool) open(en *entry) (*os.File, error) {
	s.mu.Lock()
	en.fetched = true
	dir := en.dir
	s.mu.Unlock()
	f, err := os.Open(filepath.Join(s.dir, dir, en.id))
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(en.head, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// remove deletes spooled messages and syncs the directories they were
// in, so that a crash does not bring them back. A message already gone is
// not an error.
func (s *spool) remove(ens []*entry) (failed []*entry) {
	dirs := map[string]bool{}
	for _, en := range ens {
		s.mu.Lock()
		dir := en.dir
		s.mu.Unlock()
		// No output links it from now on; one that found it may still
		// (a link to a name just removed fails, and the output writes a
		// copy).
		spoolfile.Remove(s.input, en.id)
		if err := os.Remove(filepath.Join(s.dir, dir, en.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("could not remove a spooled message", "id", en.id, "err", err)
			failed = append(failed, en)
			continue
		}
		dirs[dir] = true
		s.forget(en)
	}
	// One sync that began after the removals, shared with the messages
	// being received (group commit): a poll's commit is not one more
	// sync of new/ of its own.
	for dir := range dirs {
		syncer := &s.newSync
		if dir == "wait" {
			syncer = &s.waitSync
		}
		if err := s.syncDir(syncer); err != nil {
			s.log.Warn("could not sync the spool after removing messages", "err", err)
		}
	}
	return failed
}

// forget drops en from the listing.
func (s *spool) forget(en *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[en.id]; ok {
		delete(s.entries, en.id)
		s.bytes -= en.size
	}
	s.heads.forget(en.id)
}

// keep moves a message whose client waited into new/: the client is about
// to be told 250, and the spool owns the message from now on.
func (s *spool) keep(en *entry) error {
	if err := os.Rename(filepath.Join(s.dir, "wait", en.id), filepath.Join(s.dir, "new", en.id)); err != nil {
		return err
	}
	if err := s.newSync.Sync(); err != nil {
		return err
	}
	s.mu.Lock()
	en.dir, en.state = "new", taken
	s.mu.Unlock()
	if en.head == 0 {
		spoolfile.Add(s.input, en.id, spoolfile.File{Path: filepath.Join(s.dir, "new", en.id), Size: en.size, CRC: en.crc})
	}
	return nil
}

// size is the bytes of mail in the spool.
func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}
