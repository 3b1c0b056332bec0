package ledger

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit. A settled message's record must be on disk before its
// source is told to delete it, not the moment it settles: sources commit
// at the end of a session (POP3 deletes at QUIT, IMAP expunges in a batch).
// So Settle journals the record (one write, kept if the process dies) and
// keeps it in memory, where Get, GetMany and All see it; Flush writes
// every record waiting into one transaction with one set of syncs. The
// engine flushes before it commits at a source, and a timer flushes a
// second after the first record waited (or at flushAt records), so that
// the window in which a power loss could lose an acceptance stays short.
// One commit for a session's messages instead of one per few: on small
// messages the syncs were a third of mailflow's CPU.

const (
	flushAfter = time.Second
	flushAt    = 512
)

// Settle records rec for a message whose delivery is settled: in the
// journal at once, in the database at the next Flush.
func (l *Ledger) Settle(input, id string, rec Record) error {
	rec.At = time.Now().UTC()
	if err := l.note(input, id, rec); err != nil {
		return err
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.pending == nil {
		l.pending = map[string]map[string]Record{}
	}
	if l.pending[input] == nil {
		l.pending[input] = map[string]Record{}
	}
	l.pending[input][id] = rec
	l.npending++
	switch {
	case l.npending >= flushAt:
		go l.Flush()
	case l.timer == nil:
		l.timer = time.AfterFunc(flushAfter, func() { l.Flush() })
	}
	return nil
}

// Flush writes the settled records waiting in memory to the database, in
// one transaction, synced. It returns only once they are on disk (or the
// write failed: they stay waiting, and in the journal).
func (l *Ledger) Flush() error {
	l.fmu.Lock() // one flush at a time, so that an older one cannot land last
	defer l.fmu.Unlock()
	l.pmu.Lock()
	batch := l.pending
	l.pending, l.npending = nil, 0
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.pmu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		for input, recs := range batch {
			b, err := records(tx, input)
			if err != nil {
				return err
			}
			for id, rec := range recs {
				if err := b.Put([]byte(id), appendRecord(nil, rec)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		for input, recs := range batch {
			for id := range recs {
				if _, newer := l.waiting(input, id); !newer {
					l.saved(input, id)
				}
			}
		}
	}
	if err != nil {
		// Put them back, unless a newer record came meanwhile.
		l.pmu.Lock()
		for input, recs := range batch {
			for id, rec := range recs {
				if _, newer := l.pending[input][id]; !newer {
					if l.pending == nil {
						l.pending = map[string]map[string]Record{}
					}
					if l.pending[input] == nil {
						l.pending[input] = map[string]Record{}
					}
					l.pending[input][id] = rec
					l.npending++
				}
			}
		}
		l.pmu.Unlock()
	}
	return err
}

// waiting is the record of id that waits for a Flush, if any.
func (l *Ledger) waiting(input, id string) (Record, bool) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	rec, ok := l.pending[input][id]
	return rec, ok
}

// withWaiting lays the records waiting for a Flush over out.
func (l *Ledger) withWaiting(input string, out map[string]Record) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for id, rec := range l.pending[input] {
		out[id] = rec
	}
}

// forget drops a waiting record that a synchronous Put superseded.
func (l *Ledger) forget(input, id string) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if _, ok := l.pending[input][id]; ok {
		delete(l.pending[input], id)
		l.npending--
	}
}
