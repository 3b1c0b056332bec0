package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailflow/mailflow/internal/fsync"
)

// A record lives while its message is at the source: Sweep removes the
// records of ids that a complete listing no longer holds. So the ledger's
// size follows what the sources hold now, not how much ever went through
// them; and an input that left the config is forgotten after a grace period
// (ForgetOrphans), in case it was only renamed for a while.

var metaBucket = []byte("meta")

// GetMany returns the records of these ids that exist, in one transaction.
func (l *Ledger) GetMany(input string, ids []string) map[string]Record {
	out := map[string]Record{}
	_ = l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		for _, id := range ids {
			var rec Record
			if v := b.Get([]byte(id)); v != nil && json.Unmarshal(v, &rec) == nil {
				out[id] = rec
			}
		}
		return nil
	})
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if waiting := l.pending[input]; len(waiting) > 0 {
		for _, id := range ids {
			if rec, ok := waiting[id]; ok {
				out[id] = rec
			}
		}
	}
	return out
}

// Outcomes returns how each of these ids was settled, for those whose
// record says it was, decoding no more of a record than its Settled field
// (settledAs): a survey asks it of every message of a mailbox, where
// GetMany's records would cost a kilobyte of memory each.
func (l *Ledger) Outcomes(input string, ids []string) map[string]Outcome {
	out := map[string]Outcome{}
	_ = l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if v := b.Get([]byte(id)); v != nil {
				if o := settledAs(v); o != "" {
					out[id] = o
				}
			}
		}
		return nil
	})
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if waiting := l.pending[input]; len(waiting) > 0 {
		for _, id := range ids {
			if rec, ok := waiting[id]; ok && rec.Settled != "" {
				out[id] = rec.Settled
			}
		}
	}
	return out
}

// All returns every record of an input, by id.
func (l *Ledger) All(input string) map[string]Record {
	out := map[string]Record{}
	_ = l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec Record
			if json.Unmarshal(v, &rec) == nil {
				out[string(k)] = rec
			}
			return nil
		})
	})
	l.withWaiting(input, out)
	return out
}

// Sweep removes the records of input whose id is not in present: the
// source no longer holds those messages. Call it only with a complete
// listing, never with one cut short. It returns how many it removed.
func (l *Ledger) Sweep(input string, present map[string]bool) (int, error) {
	stale, _, err := l.Stale(input, nil, present)
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	return len(stale), l.Forget(input, stale)
}

// Stale returns the records of input that a listing no longer holds, and
// their ids: with prefixes nil, every record whose id is not in present (a
// complete listing); otherwise only those whose id starts with one of
// prefixes (the places a partial listing listed whole).
func (l *Ledger) Stale(input string, prefixes []string, present map[string]bool) ([]string, map[string]Record, error) {
	if err := l.Flush(); err != nil {
		return nil, nil, err
	}
	in := func(id string) bool {
		if prefixes == nil {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(id, p) {
				return true
			}
		}
		return false
	}
	var ids []string
	recs := map[string]Record{}
	// Most polls have nothing to forget: a read transaction that looks at
	// the keys, and decodes only the records of the stale ones.
	err := l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			id := string(k)
			if present[id] || !in(id) {
				continue
			}
			var rec Record
			if json.Unmarshal(v, &rec) == nil {
				recs[id] = rec
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, recs, err
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
			l.forget(input, id)
		}
		return nil
	})
}

// MarkRemoved records that the source was told to remove these messages
// (Record.Removed), in one transaction.
func (l *Ledger) MarkRemoved(input string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := l.Flush(); err != nil {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(input))
		if b == nil {
			return nil
		}
		b.FillPercent = recordFill
		for _, id := range ids {
			v := b.Get([]byte(id))
			var rec Record
			if v == nil || json.Unmarshal(v, &rec) != nil || rec.Removed {
				continue
			}
			rec.Removed = true
			if err := b.Put([]byte(id), appendRecord(nil, rec)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Meta returns what the ledger keeps about an input as a whole.
func (l *Ledger) Meta(input string) Meta {
	var m Meta
	_ = l.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(metaBucket); b != nil {
			if v := b.Get([]byte(input)); v != nil {
				_ = json.Unmarshal(v, &m)
			}
		}
		return nil
	})
	return m
}

// SetMeta stores what the ledger keeps about an input as a whole.
func (l *Ledger) SetMeta(input string, m Meta) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte(input), v)
	})
}

// InputStats is how much the ledger holds for one input.
type InputStats struct {
	Input   string
	Records int
	Settled int
	Meta    Meta
}

// Stats lists every input the ledger holds records or meta for.
func (l *Ledger) Stats() []InputStats {
	by := map[string]*InputStats{}
	get := func(name string) *InputStats {
		if by[name] == nil {
			by[name] = &InputStats{Input: name}
		}
		return by[name]
	}
	_ = l.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if input, ok := strings.CutPrefix(string(name), "input/"); ok {
				st := get(input)
				return b.ForEach(func(_, v []byte) error {
					st.Records++
					if settled(v) {
						st.Settled++
					}
					return nil
				})
			}
			if string(name) == string(metaBucket) {
				return b.ForEach(func(k, v []byte) error {
					_ = json.Unmarshal(v, &get(string(k)).Meta)
					return nil
				})
			}
			return nil
		})
	})
	out := make([]InputStats, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Input < out[j].Input })
	return out
}

// settled reports whether the record encoded as v is settled, without
// decoding the rest of it (a ledger of a large mailbox is counted at every
// start): appendRecord, as json.Marshal, writes Settled first and only
// when it is set, so a record that starts so is settled and one that never
// names the field is not; any other is decoded.
func settled(v []byte) bool {
	if bytes.HasPrefix(v, []byte(`{"settled":"`)) {
		return true
	}
	return settledAs(v) != ""
}

// outcomes are the Outcomes there are, for settledAs to hand out without
// making a string per record.
var outcomes = []Outcome{Delivered, Dropped, Quarantined, Rejected, Held}

// settledAs is the Settled field of the record encoded as v ("" when it
// is not settled), read as settled reads it: from the start of the record
// where appendRecord put it, else decoding that field alone.
func settledAs(v []byte) Outcome {
	if rest, ok := bytes.CutPrefix(v, []byte(`{"settled":"`)); ok {
		for _, o := range outcomes {
			if len(rest) > len(o) && string(rest[:len(o)]) == string(o) && rest[len(o)] == '"' {
				return o
			}
		}
	}
	if !bytes.Contains(v, []byte(`"settled"`)) {
		return ""
	}
	var rec struct {
		Settled Outcome `json:"settled"`
	}
	if json.Unmarshal(v, &rec) != nil {
		return ""
	}
	return rec.Settled
}

// metas are the inputs the ledger holds records or meta for, each with its
// meta, read without reading the records.
func (l *Ledger) metas() map[string]Meta {
	out := map[string]Meta{}
	_ = l.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if input, ok := strings.CutPrefix(string(name), "input/"); ok {
				if _, seen := out[input]; !seen {
					out[input] = Meta{}
				}
			}
			if string(name) == string(metaBucket) {
				return b.ForEach(func(k, v []byte) error {
					var m Meta
					_ = json.Unmarshal(v, &m)
					out[string(k)] = m
					return nil
				})
			}
			return nil
		})
	})
	return out
}

// ForgetOrphans is called with the inputs the config has now. An input
// the ledger knows but the config does not is marked orphaned the first
// time; once it has been orphaned for longer than grace, its records and
// meta are removed. An orphan that comes back is kept, with its records.
// It returns the inputs it removed and those newly orphaned.
func (l *Ledger) ForgetOrphans(configured []string, grace time.Duration, now time.Time) (removed, orphaned []string, err error) {
	want := map[string]bool{}
	for _, n := range configured {
		want[n] = true
	}
	metas := l.metas()
	inputs := slices.Sorted(maps.Keys(metas))
	for _, input := range inputs {
		st := InputStats{Input: input, Meta: metas[input]}
		m := st.Meta
		switch {
		case want[st.Input] && !m.Orphaned.IsZero():
			m.Orphaned = time.Time{}
			err = l.SetMeta(st.Input, m)
		case want[st.Input]:
		case m.Orphaned.IsZero():
			m.Orphaned = now
			orphaned = append(orphaned, st.Input)
			err = l.SetMeta(st.Input, m)
		case now.Sub(m.Orphaned) >= grace:
			removed = append(removed, st.Input)
			err = l.db.Update(func(tx *bolt.Tx) error {
				if tx.Bucket(bucketName(st.Input)) != nil {
					if err := tx.DeleteBucket(bucketName(st.Input)); err != nil {
						return err
					}
				}
				if b := tx.Bucket(metaBucket); b != nil {
					return b.Delete([]byte(st.Input))
				}
				return nil
			})
		}
		if err != nil {
			return removed, orphaned, err
		}
	}
	return removed, orphaned, nil
}

// Size is the ledger file's size in bytes, and how many of them are free
// pages that bbolt would reuse (a file never shrinks by itself).
func (l *Ledger) Size() (file, free int64) {
	if st, err := os.Stat(l.db.Path()); err == nil {
		file = st.Size()
	}
	s := l.db.Stats()
	free = int64(s.FreePageN+s.PendingPageN) * int64(l.db.Info().PageSize)
	return file, free
}

// compactWhen says when Open compacts: a file of at least compactMinSize
// whose pages are more than half free.
const compactMinSize = 1 << 20

// Compact rewrites the ledger into a new file holding only live pages and
// puts it in place of the old. It needs the ledger to itself: Open calls it
// before anything else can use the database.
func (l *Ledger) Compact() error {
	if err := l.Flush(); err != nil {
		return err
	}
	path := l.db.Path()
	tmp := filepath.Join(filepath.Dir(path), ".ledger.db.compact")
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, l.db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compacting the ledger: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := l.db.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := fsync.Dir(filepath.Dir(path)); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	db.MaxBatchDelay = l.db.MaxBatchDelay
	l.db = db
	return nil
}
