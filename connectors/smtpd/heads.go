package smtpd

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/mailflow/mailflow/internal/fsync"
)

// The heads journal keeps the head of every spooled message (its
// envelope and client, and the length and CRC-32C of its file) apart from
// the file, which holds only the message as it will be delivered: so an
// output can link that file instead of writing a copy (spoolfile). A
// message's head line is appended once its file is written, and synced
// (one sync for the lines appended meanwhile: group commit) alongside the
// file and its directory, before the client hears 250. At start-up a file
// is taken only when a head says its length and checksum; one without, or
// whose bytes do not match, was never answered.
//
// The journal is rewritten with only the heads of the messages still
// spooled at start-up, and when it outgrows headsRotateAt and twice what
// those heads take (so that a large spool, kept while an output is down,
// is not rewritten at every message): the new one is written beside it,
// synced, renamed over it and the directory synced, while no line is
// appended.

// headsRotateAt is the size at which the journal is rewritten.
const headsRotateAt = 4 << 20

// headLine is one line of the journal.
type headLine struct {
	ID  string `json:"id"`
	Len int64  `json:"len"`
	CRC uint32 `json:"crc"`
	spoolHead
}

type heads struct {
	dir      string // the spool's
	syncFile func(*os.File) error

	mu   sync.Mutex
	cond *sync.Cond
	f    *os.File
	size int64
	// live are the lines of the messages spooled, or being answered;
	// liveBytes their length.
	live               map[string][]byte
	liveBytes          int64
	appended, synced   uint64 // lines appended; of them, those synced
	running            bool   // a sync is under way, mu not held
	rotateAt           int64
	rotations, rewrite int // for tests
}

// readHeads reads the journal in dir: the last head of each id. A line a
// crash cut short is skipped.
func readHeads(dir string) (map[string]headLine, error) {
	out := map[string]headLine{}
	f, err := os.Open(filepath.Join(dir, "heads"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var h headLine
			if json.Unmarshal(line, &h) == nil && h.ID != "" && h.Received != nil {
				out[h.ID] = h
			}
		}
		if err != nil {
			return out, nil
		}
	}
}

// openHeads starts the journal in dir afresh with the lines of live.
func openHeads(dir string, live map[string][]byte, syncFile func(*os.File) error) (*heads, error) {
	h := &heads{dir: dir, syncFile: syncFile, live: live, rotateAt: headsRotateAt}
	for _, line := range live {
		h.liveBytes += int64(len(line))
	}
	h.cond = sync.NewCond(&h.mu)
	if err := h.rewriteLocked(); err != nil {
		return nil, err
	}
	return h, nil
}

// rewriteLocked writes the live lines into a new journal and puts it in
// place of the old one, durably. Called with mu held, and no sync running.
func (h *heads) rewriteLocked() error {
	path := filepath.Join(h.dir, "heads")
	f, err := os.OpenFile(path+".new", os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	var size int64
	for _, line := range h.live {
		n, _ := bw.Write(line)
		size += int64(n)
	}
	err = bw.Flush()
	if err == nil {
		err = h.syncFile(f)
	}
	if err == nil {
		err = os.Rename(path+".new", path)
	}
	if err == nil {
		err = fsync.Dir(h.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path + ".new")
		return err
	}
	if h.f != nil {
		h.f.Close()
	}
	h.f, h.size, h.synced = f, size, h.appended
	h.rewrite++
	return nil
}

// add appends the head line of message id, and returns its place, for
// sync.
func (h *heads) add(id string, hl headLine) (uint64, error) {
	line, err := json.Marshal(hl)
	if err != nil {
		return 0, err
	}
	line = append(line, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return 0, errors.New("the spool is closed")
	}
	n, err := h.f.Write(line)
	h.size += int64(n)
	if err != nil {
		return 0, err
	}
	if old, ok := h.live[id]; ok {
		h.liveBytes -= int64(len(old))
	}
	h.live[id] = line
	h.liveBytes += int64(len(line))
	h.appended++
	return h.appended, nil
}

// sync returns once the line at place n is durable: synced by a sync that
// began after it was appended (several callers share one), or written
// into a rewritten journal.
func (h *heads) sync(n uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.synced < n {
		if h.running {
			h.cond.Wait()
			continue
		}
		if h.size > h.rotateAt && h.size > 2*h.liveBytes {
			err := h.rewriteLocked()
			h.rotations++
			h.cond.Broadcast()
			if err != nil {
				return err
			}
			continue
		}
		h.running = true
		target, f := h.appended, h.f
		h.mu.Unlock()
		err := h.syncFile(f)
		h.mu.Lock()
		h.running = false
		h.cond.Broadcast()
		if err != nil {
			return err
		}
		h.synced = max(h.synced, target)
	}
	return nil
}

// forget drops the head of a message leaving the spool from the next
// rewrite. Nothing is written now: a head whose file is gone is ignored
// at start-up.
func (h *heads) forget(id string) {
	h.mu.Lock()
	if line, ok := h.live[id]; ok {
		h.liveBytes -= int64(len(line))
		delete(h.live, id)
	}
	h.mu.Unlock()
}

// close closes the journal.
func (h *heads) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f != nil {
		h.f.Close()
		h.f = nil
	}
}
