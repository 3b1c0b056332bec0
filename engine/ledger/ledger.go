package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Ledger is the durable record of what was delivered. It is what makes the
// delivery contract hold across crashes: a message is recorded as settled,
// and the record synced to disk, before its source is told to delete it. On
// the next poll a message whose record says settled is committed at the
// source again without being delivered again.
//
// bbolt is used because it gives exactly this with one fsync per committed
// transaction and no server: a crash leaves the last committed state.
//
// Between an output's acceptance (SMTP 250) and the synced Put there is the
// time an fsync takes, a few milliseconds when several messages wait for
// it; a process killed then would send the message again on the next run,
// since SMTP gives no way to ask whether the server kept it. So the engine
// first Notes the acceptance in a journal, one plain write (microseconds):
// the kernel keeps it when the process dies, and Open replays it.
// Only the machine losing power in that window can still cause a repeat.
type Ledger struct {
	db *bolt.DB

	jmu     sync.Mutex
	dir     string
	journal *os.File
	jsize   int64
	jbuf    []byte // the journal line being written, reused
	// unsaved are the journaled records not yet in the database: when
	// none is left at Close, the journal need not be read back.
	unsaved map[string]bool

	// Settled records waiting for a Flush (group.go).
	fmu      sync.Mutex
	pmu      sync.Mutex
	pending  map[string]map[string]Record
	npending int
	timer    *time.Timer
}

const (
	journalName    = "ledger.journal"
	journalMaxSize = 4 << 20 // then it is rotated; one older file is kept
)

// journalEntry is one line of the journal.
type journalEntry struct {
	Input string `json:"input"`
	ID    string `json:"id"`
	Rec   Record `json:"rec"`
}

// Open opens (creating it if needed) the ledger in dir. Only one process
// may have it open: bbolt locks the file.
func Open(dir string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "ledger.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening ledger in %s (is another mailflow running with this state_dir?): %w", dir, err)
	}
	// A message waits at most this long for others to share its commit.
	db.MaxBatchDelay = 2 * time.Millisecond
	l := &Ledger{db: db, dir: dir}
	if err := l.replay(); err != nil {
		db.Close()
		return nil, fmt.Errorf("replaying the ledger journal in %s: %w", dir, err)
	}
	if file, free := l.Size(); file >= compactMinSize && free > file/2 {
		if err := l.Compact(); err != nil {
			l.db.Close()
			return nil, err
		}
	}
	if l.journal, err = os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	return l, nil
}

// replay puts into the database the journal entries (of the previous run)
// that are newer than what it holds, syncs, and removes the journals.
func (l *Ledger) replay() error {
	paths := []string{filepath.Join(l.dir, journalName+".old"), filepath.Join(l.dir, journalName)}
	var entries []journalEntry
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var e journalEntry
			if json.Unmarshal(line, &e) == nil && e.ID != "" { // a torn last line is skipped
				entries = append(entries, e)
			}
		}
	}
	if len(entries) > 0 {
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, e := range entries {
				b, err := records(tx, e.Input)
				if err != nil {
					return err
				}
				var have Record
				if v := b.Get([]byte(e.ID)); v != nil && json.Unmarshal(v, &have) == nil && !have.At.Before(e.Rec.At) {
					continue
				}
				v, err := json.Marshal(e.Rec)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(e.ID), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Note records rec at once, without waiting for the disk: it survives the
// process being killed, not the machine losing power. Put follows to make
// it durable; Open replays Notes that Put did not get to.
func (l *Ledger) Note(input, id string, rec Record) error {
	rec.At = time.Now().UTC()
	return l.note(input, id, rec)
}

func (l *Ledger) note(input, id string, rec Record) error {
	l.jmu.Lock()
	defer l.jmu.Unlock()
	line := append(appendJournalEntry(l.jbuf[:0], input, id, rec), '\n')
	l.jbuf = line
	if l.journal == nil {
		return errors.New("ledger is closed")
	}
	if l.jsize+int64(len(line)) > journalMaxSize {
		// Rotate, keeping one older journal. What the older one held that
		// was settled but waits for the group commit is written first, so
		// nothing rotated away is needed; replaying what is kept is
		// harmless, as only newer records are applied. Flush takes jmu
		// (saved), so it is let go meanwhile, and the line, in a buffer
		// another note may reuse, copied.
		line = bytes.Clone(line)
		l.jmu.Unlock()
		err := l.Flush()
		l.jmu.Lock()
		if err != nil {
			return err
		}
		if l.journal == nil {
			return errors.New("ledger is closed")
		}
		if l.jsize+int64(len(line)) > journalMaxSize { // no other note rotated it meanwhile
			l.journal.Close()
			cur := filepath.Join(l.dir, journalName)
			if err := os.Rename(cur, cur+".old"); err != nil {
				return err
			}
			f, err := os.OpenFile(cur, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			l.journal, l.jsize = f, 0
		}
	}
	if l.unsaved == nil {
		l.unsaved = map[string]bool{}
	}
	l.unsaved[input+"\x00"+id] = true
	n, err := l.journal.Write(line)
	l.jsize += int64(n)
	return err
}

// Close closes the ledger. What was Noted but never Put (a partial
// delivery whose Put failed) is applied to the database first, the way Open
// applies it after a kill, and the journal removed.
func (l *Ledger) Close() error {
	flushErr := l.Flush()
	l.jmu.Lock()
	if l.journal != nil {
		l.journal.Close()
		l.journal = nil
	}
	clean := flushErr == nil && len(l.unsaved) == 0
	l.jmu.Unlock()
	if clean {
		// Everything journaled is in the database: no need to read it back.
		for _, p := range []string{filepath.Join(l.dir, journalName+".old"), filepath.Join(l.dir, journalName)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return errors.Join(err, l.db.Close())
			}
		}
		return l.db.Close()
	}
	return errors.Join(flushErr, l.replay(), l.db.Close())
}

// saved records that id's latest journaled record is in the database.
func (l *Ledger) saved(input, id string) {
	l.jmu.Lock()
	delete(l.unsaved, input+"\x00"+id)
	l.jmu.Unlock()
}

func bucketName(input string) []byte { return []byte("input/" + input) }

// recordFill is how full bbolt fills the pages of an input's records when
// they split. Sources mostly make ids that sort in the order messages
// arrive (an mbox's offsets, IMAP UIDs, Maildir names), so records are
// mostly appended, and bbolt's default of half full left the ledger of a
// 10,000-message import at 48% of its pages: twice the file, and twice
// the pages a run reads (and maps, which counts in its RSS) to find what
// is settled.
const recordFill = 0.9

// records is input's bucket in a writing transaction, made if need be,
// filling its pages to recordFill.
func records(tx *bolt.Tx, input string) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(bucketName(input))
	if err != nil {
		return nil, err
	}
	b.FillPercent = recordFill
	return b, nil
}

// Get returns the record of one message, if any.
func (l *Ledger) Get(input, id string) (Record, bool) {
	if rec, ok := l.waiting(input, id); ok {
		return rec, true
	}
	var rec Record
	var ok bool
	_ = l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = json.Unmarshal(v, &rec) == nil
		return nil
	})
	return rec, ok
}

// PutMany writes several records of one input in one transaction, synced
// once.
func (l *Ledger) PutMany(input string, recs map[string]Record) error {
	for id := range recs {
		l.forget(input, id)
	}
	now := time.Now().UTC()
	return l.db.Update(func(tx *bolt.Tx) error {
		b, err := records(tx, input)
		if err != nil {
			return err
		}
		for id, rec := range recs {
			rec.At = now
			if err := b.Put([]byte(id), appendRecord(nil, rec)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Put writes the record of one message and syncs it to disk before
// returning. Puts made at the same moment from several goroutines (the
// messages in flight) share one transaction and one set of syncs (bbolt's
// Batch): each still returns only once the commit holding its record has.
func (l *Ledger) Put(input, id string, rec Record) error {
	l.forget(input, id)
	rec.At = time.Now().UTC()
	v := appendRecord(nil, rec)
	err := l.db.Batch(func(tx *bolt.Tx) error {
		b, err := records(tx, input)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
	if err == nil {
		l.saved(input, id)
	}
	return err
}
