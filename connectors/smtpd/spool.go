package smtpd

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fsync"
)

// The spool is where a received message is kept from the moment its
// client is told it was taken until the engine settled it: one file per
// message under state_dir/smtpd/INPUT, written to tmp/, synced, renamed
// into place, and the directory synced, before the client hears 250. The
// input lists it as a Maildir input lists its folder, and the engine's
// commit removes it; so a crash at any point after the 250 leaves the
// message here, and the first poll after the restart takes it through
// the pipeline again. The ledger keeps what the engine did with it, as
// for every source: a message settled before the crash is only removed.
//
//	tmp/   messages being received; whatever a crash leaves here was never
//	       answered 250, and is removed at start-up
//	new/   messages taken (answered 250), waiting for the engine
//	wait/  messages whose client still waits for the outcome
//	       (answer = "after_delivery"); a crash leaves their clients
//	       unanswered, so they send them again: removed at start-up
//
// A file is one line of JSON (the envelope and the client: spoolHead),
// then the message as it will be delivered (the Received field mailflow
// added, then the data with every line end CRLF).

// spoolHead is the first line of a spool file.
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
	head    int64  // bytes of the head line
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
	dir string
	log *slog.Logger

	mu                sync.Mutex
	entries           map[string]*entry
	bytes             int64 // of the messages spooled, for max_spool_size
	notify            chan struct{}
	seq               atomic.Uint64
	newSync, waitSync fsync.Group

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
	s := &spool{dir: dir, log: log, entries: map[string]*entry{}, notify: make(chan struct{}, 1), refs: 1}
	s.newSync.Dir, s.waitSync.Dir = filepath.Join(dir, "new"), filepath.Join(dir, "wait")
	if err := s.load(); err != nil {
		return nil, err
	}
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
	}
}

// load makes the spool's directories and reads what is spooled: a file in
// tmp/ was never answered 250 and is removed; a file in wait/ belonged to
// a client that waited for its outcome and never got it (it sends the
// message again), and is removed too.
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
	for _, e := range ents {
		en, err := readEntry(filepath.Join(s.dir, "new", e.Name()))
		if err != nil {
			// Kept for a person to look at: it was answered 250.
			s.log.Error("a spooled message cannot be read; it stays in the spool", "file", filepath.Join(s.dir, "new", e.Name()), "err", err)
			continue
		}
		s.entries[en.id] = en
		s.bytes += en.size
	}
	if len(s.entries) > 0 {
		s.log.Info("messages received before a restart are in the spool; they go through the pipeline now", "count", len(s.entries))
	}
	return nil
}

// readEntry reads the head of a spooled file.
func readEntry(path string) (*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 4096)
	line, err := br.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) && len(line) < 16<<20 {
		var more []byte
		more, err = br.ReadSlice('\n')
		line = append(append([]byte(nil), line...), more...)
	}
	if err != nil {
		return nil, fmt.Errorf("reading its head: %w", err)
	}
	var h spoolHead
	if err := json.Unmarshal(line, &h); err != nil || h.V != 1 || h.Received == nil {
		return nil, fmt.Errorf("its head is not a spool head: %v", err)
	}
	return &entry{id: filepath.Base(path), dir: "new", head: int64(len(line)), size: info.Size() - int64(len(line)), at: h.At, rcvd: h.Received}, nil
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
	f    *os.File
	bw   *bufio.Writer
	head int64
	at   time.Time
	rcvd *message.Received
	// Message is where the message's bytes go: through it every line
	// end is made CRLF.
	Message *crlfWriter
}

// create starts a message in tmp/ with its head line.
func (s *spool) create(rcvd *message.Received) (*spooling, error) {
	id := s.newID()
	f, err := os.OpenFile(filepath.Join(s.dir, "tmp", id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	at := time.Now().UTC()
	head, _ := json.Marshal(spoolHead{V: 1, At: at, Received: rcvd})
	head = append(head, '\n')
	sp := &spooling{s: s, id: id, f: f, bw: bufio.NewWriterSize(f, 64<<10), head: int64(len(head)), at: at, rcvd: rcvd}
	sp.Message = &crlfWriter{w: sp.bw}
	sp.bw.Write(head)
	return sp, nil
}

// abort removes a message that will not be taken.
func (sp *spooling) abort() {
	sp.f.Close()
	os.Remove(filepath.Join(sp.s.dir, "tmp", sp.id))
}

// commit makes the message durable: synced, renamed into new/ (or wait/
// when its client waits for the outcome), the directory synced (one sync
// for the messages that arrive meanwhile: group commit). Only then is it
// listed, and the engine woken. The entry is returned for a waiting
// client to wait on.
func (sp *spooling) commit(wait bool) (*entry, error) {
	s := sp.s
	err := sp.Message.Close()
	if err == nil {
		err = sp.bw.Flush()
	}
	if err == nil {
		err = sp.f.Sync()
	}
	if cerr := sp.f.Close(); err == nil {
		err = cerr
	}
	dir, syncer := "new", &s.newSync
	if wait {
		dir, syncer = "wait", &s.waitSync
	}
	if err == nil {
		err = os.Rename(filepath.Join(s.dir, "tmp", sp.id), filepath.Join(s.dir, dir, sp.id))
	}
	if err != nil {
		os.Remove(filepath.Join(s.dir, "tmp", sp.id))
		return nil, err
	}
	if err := syncer.Sync(); err != nil {
		os.Remove(filepath.Join(s.dir, dir, sp.id))
		return nil, err
	}
	en := &entry{id: sp.id, dir: dir, head: sp.head, size: sp.Message.nwrote, at: sp.at, rcvd: sp.rcvd}
	if wait {
		en.state, en.answer = waiting, make(chan fate, 1)
	}
	s.mu.Lock()
	s.entries[en.id] = en
	s.bytes += en.size
	s.mu.Unlock()
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
		if err := os.Remove(filepath.Join(s.dir, dir, en.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("could not remove a spooled message", "id", en.id, "err", err)
			failed = append(failed, en)
			continue
		}
		dirs[dir] = true
		s.forget(en)
	}
	for dir := range dirs {
		if err := fsync.Dir(filepath.Join(s.dir, dir)); err != nil {
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
	return nil
}

// size is the bytes of mail in the spool.
func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}
