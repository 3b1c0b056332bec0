package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
type Ledger struct {
	db *bolt.DB
}

// Outcome is how a message was settled.
type Outcome string

const (
	OutcomeDelivered   Outcome = "delivered"
	OutcomeDropped     Outcome = "dropped"
	OutcomeQuarantined Outcome = "quarantined"
)

// Record is what the ledger holds for one message.
type Record struct {
	// Settled is set once the message needs nothing more but its commit at
	// the source.
	Settled Outcome `json:"settled,omitempty"`
	// Accepted holds, per output, the recipients that accepted the message
	// ("*" for an output without recipients, such as a Maildir).
	Accepted map[string][]string `json:"accepted,omitempty"`
	// Refused holds, per output, the recipients that refused the message for
	// good, and Reasons their replies; they are not tried again.
	Refused map[string][]string `json:"refused,omitempty"`
	Reasons []string            `json:"reasons,omitempty"`
	// Digest is the SHA-256 of the message's bytes, so that a source id
	// reused for another message is not mistaken for this one.
	Digest string    `json:"digest,omitempty"`
	At     time.Time `json:"at"`
}

// OpenLedger opens (creating it if needed) the ledger in dir.
func OpenLedger(dir string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "ledger.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening ledger in %s (is another mailflow running with this state_dir?): %w", dir, err)
	}
	return &Ledger{db: db}, nil
}

// Close closes the ledger.
func (l *Ledger) Close() error { return l.db.Close() }

func bucketName(input string) []byte { return []byte("input/" + input) }

// Get returns the record of one message, if any.
func (l *Ledger) Get(input, id string) (Record, bool) {
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

// Put writes the record of one message and syncs it to disk before returning.
func (l *Ledger) Put(input, id string, rec Record) error {
	rec.At = time.Now().UTC()
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName(input))
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// Forget removes the records of these ids.
func (l *Ledger) Forget(input string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Known lists the ids recorded for an input, sorted.
func (l *Ledger) Known(input string) []string {
	var ids []string
	_ = l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	sort.Strings(ids)
	return ids
}

// For returns the view of the ledger that one input gets.
func (l *Ledger) For(input string) SourceLedger { return inputLedger{l, input} }

type inputLedger struct {
	l     *Ledger
	input string
}

func (il inputLedger) Delivered(id string) bool {
	rec, ok := il.l.Get(il.input, id)
	return ok && rec.Settled != ""
}
func (il inputLedger) Forget(ids []string) error { return il.l.Forget(il.input, ids) }
func (il inputLedger) Known() []string           { return il.l.Known(il.input) }
