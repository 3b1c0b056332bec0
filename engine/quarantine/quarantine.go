// Package quarantine keeps the messages that could not be delivered and
// must not be lost, as plain files under state_dir/quarantine: ID.eml, the
// original message byte for byte, and ID.json, why, when and from where.
// Being plain files beside the ledger, it is read and changed by "mailflow
// quarantine" while "mailflow run" holds the state_dir.
package quarantine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/flock"
	"github.com/mailflow/mailflow/internal/fsync"
)

// Store keeps messages that could not be delivered and must not be lost:
// an output refused them for good, or a filter broke on them. Each entry is
// the original .eml, exactly as the source gave it, plus a JSON record of
// why, when and from where.
type Store struct {
	dir string
}

// Entry is the record kept beside a quarantined message.
type Entry struct {
	ID        string    `json:"id"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
	Input     string    `json:"input"`
	SourceID  string    `json:"source_id"`
	Pipeline  string    `json:"pipeline"`
	MessageID string    `json:"message_id,omitempty"`
	Size      int64     `json:"size"`
	// Accepted holds, per output, the recipients that already have the
	// message: a resend does not send it to them again.
	Accepted map[string][]string `json:"accepted,omitempty"`
	// Held is set when the source still holds the message (the ledger has
	// it as held, after fetches that did not match the source's size):
	// this is a copy for a person to look at, and deleting it loses nothing.
	Held bool `json:"held,omitempty"`
	// Received is the envelope and client of a message that came over
	// SMTP or LMTP: a resend sends it to those recipients again.
	Received *message.Received `json:"received,omitempty"`
	// WasKept is Held as records before 2026-12 called it; read only.
	WasKept bool `json:"kept,omitempty"`
}

// Open uses dir (creating it) for the quarantine.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is where the quarantine keeps its files.
func (q *Store) Dir() string { return q.dir }

// Put writes msg's original bytes and the record e (its Reason, Pipeline,
// Accepted and Held; the rest is filled in), each synced and renamed into
// place, so that a crash leaves either a whole entry or none.
func (q *Store) Put(msg *message.Message, e Entry) (Entry, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	e.ID = time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(rnd[:])
	e.At = time.Now().UTC()
	e.Input, e.SourceID = msg.Source.Input, msg.Source.ID
	e.MessageID, e.Size, e.Received = msg.MessageID(), msg.OriginalSize(), msg.Received
	if err := fsync.WriteFile(filepath.Join(q.dir, e.ID+".eml"), msg.Original()); err != nil {
		return e, fmt.Errorf("quarantine: %w", err)
	}
	if err := q.Update(e); err != nil {
		return e, err
	}
	return e, fsync.Dir(q.dir)
}

// Update replaces the record of an entry, atomically: a partial resend
// records there who has the message now.
func (q *Store) Update(e Entry) error {
	rec, _ := json.MarshalIndent(e, "", "  ")
	if err := fsync.WriteFile(filepath.Join(q.dir, e.ID+".json"), strings.NewReader(string(rec)+"\n")); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return nil
}

// List returns every entry, oldest first.
func (q *Store) List() ([]Entry, error) {
	names, err := filepath.Glob(filepath.Join(q.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		e, err := decode(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns an entry and its message.
func (q *Store) Get(id string) (Entry, *message.Message, error) {
	var e Entry
	if !validEntryID(id) {
		return e, nil, errors.New("bad quarantine id")
	}
	b, err := os.ReadFile(filepath.Join(q.dir, id+".json"))
	if err != nil {
		return e, nil, fmt.Errorf("no quarantined message %q: %w", id, err)
	}
	if e, err = decode(b); err != nil {
		return e, nil, err
	}
	f, err := os.Open(filepath.Join(q.dir, id+".eml"))
	if err != nil {
		return e, nil, err
	}
	defer f.Close()
	msg, err := message.Read(f, message.Source{Input: e.Input, ID: e.SourceID}, message.DefaultSpool)
	if err == nil && e.Received != nil {
		msg.Received, msg.Envelope = e.Received, e.Received.Envelope()
	}
	return e, msg, err
}

// Claim takes an entry for this process, so that two resends of one entry
// (or a resend and a delete) cannot run at once, in this process or
// another. The claim ends when release is called or the process exits.
func (q *Store) Claim(id string) (release func(), err error) {
	if !validEntryID(id) {
		return nil, errors.New("bad quarantine id")
	}
	if _, err := os.Stat(filepath.Join(q.dir, id+".json")); err != nil {
		return nil, fmt.Errorf("no quarantined message %q", id)
	}
	unlock, err := flock.Lock(filepath.Join(q.dir, id+".lock"))
	if err != nil {
		return nil, fmt.Errorf("quarantined message %s is being resent or deleted by another process: %w", id, err)
	}
	// The lock file stays until the entry is removed: removing it here
	// would let a waiting process lock a file no one else can see.
	return unlock, nil
}

// decode reads a record, as this version writes it or as an earlier one did.
func decode(b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return e, err
	}
	e.Held, e.WasKept = e.Held || e.WasKept, false
	return e, nil
}

func validEntryID(id string) bool { return id != "" && !strings.ContainsAny(id, `/\.`) }

// Delete removes an entry once no resend holds it.
func (q *Store) Delete(id string) error {
	release, err := q.Claim(id)
	if err != nil {
		return err
	}
	defer release()
	return q.Remove(id)
}

// Remove deletes an entry, whoever holds it: for the one holding its claim.
func (q *Store) Remove(id string) error {
	if !validEntryID(id) {
		return errors.New("bad quarantine id")
	}
	if err := os.Remove(filepath.Join(q.dir, id+".eml")); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(q.dir, id+".json")); err != nil {
		return err
	}
	os.Remove(filepath.Join(q.dir, id+".lock"))
	return nil
}
