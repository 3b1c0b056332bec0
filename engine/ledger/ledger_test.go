package ledger

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A Note that was never Put (the process was killed in between) is in the
// ledger after the next open; a later Put wins over an older Note.
func TestLedgerJournalSurvivesAKill(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put("in", "put-then-noted", Record{Settled: Delivered}); err != nil {
		t.Fatal(err)
	}
	accepted := Record{Accepted: map[string][]string{"smtp": {"a@example.net"}}, Digest: "d1"}
	if err := l.Note("in", "noted-only", accepted); err != nil {
		t.Fatal(err)
	}
	if err := l.Note("in", "put-then-noted", Record{Accepted: map[string][]string{"x": {"*"}}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Put("in", "put-then-noted", Record{Settled: Delivered, Accepted: map[string][]string{"x": {"*"}}}); err != nil {
		t.Fatal(err)
	}
	// What a SIGKILL leaves: the journal written, the database not closed
	// by Close (which would remove the journal).
	l.journal.Close()
	l.db.Close()

	l2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	rec, ok := l2.Get("in", "noted-only")
	if !ok || len(rec.Accepted["smtp"]) != 1 || rec.Digest != "d1" || rec.Settled != "" {
		t.Fatalf("noted record after reopen: %+v %v", rec, ok)
	}
	rec, _ = l2.Get("in", "put-then-noted")
	if rec.Settled != Delivered {
		t.Fatalf("an older Note overwrote a newer Put: %+v", rec)
	}
}

func TestLedgerJournalRotates(t *testing.T) {
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	big := Record{Reasons: []string{string(make([]byte, 64<<10))}}
	for i := 0; i < 2*journalMaxSize/(64<<10)+2; i++ {
		if err := l.Note("in", "x", big); err != nil {
			t.Fatal(err)
		}
	}
	if l.jsize > journalMaxSize {
		t.Fatalf("journal is %d bytes, over %d", l.jsize, journalMaxSize)
	}
}

// 200,000 messages pass through a source over 20 polls, 10,000 new ones a
// poll, each staying for two polls: after every sweep the ledger holds
// exactly what the source holds, and compaction gives the space back.
func TestRecordsFollowTheSource(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const polls, perPoll = 20, 10_000
	rec := Record{Settled: Delivered, Digest: strings.Repeat("ab", 32), Size: 4096, Listed: 4096, Accepted: map[string][]string{"smtp": {"someone@example.org"}}}
	var peak int64
	for poll := range polls {
		batch := map[string]Record{}
		for i := range perPoll {
			batch[fmt.Sprintf("uid-%07d", poll*perPoll+i)] = rec
		}
		if err := l.PutMany("pop", batch); err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for i := max(0, poll-1) * perPoll; i < (poll+1)*perPoll; i++ {
			present[fmt.Sprintf("uid-%07d", i)] = true
		}
		if _, err := l.Sweep("pop", present); err != nil {
			t.Fatal(err)
		}
		if got := l.Stats()[0].Records; got != len(present) {
			t.Fatalf("poll %d: %d records for %d messages at the source", poll, got, len(present))
		}
		file, _ := l.Size()
		peak = max(peak, file)
	}
	if n, err := l.Sweep("pop", map[string]bool{}); err != nil || n != 2*perPoll {
		t.Fatalf("emptied source: swept %d, %v", n, err)
	}
	before, free := l.Size()
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	after, _ := l.Size()
	t.Logf("ledger file: peak %d bytes; with the source empty %d bytes (%d free); compacted %d bytes", peak, before, free, after)
	if after*4 > before || len(l.Stats()) != 1 || l.Stats()[0].Records != 0 {
		t.Fatalf("compaction: %d → %d bytes, stats %+v", before, after, l.Stats())
	}
	l.Close()
	// A reopen compacts by itself when most of the file is free.
	l, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
}

func TestForgetOrphansAfterGrace(t *testing.T) {
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, in := range []string{"kept", "gone", "back"} {
		l.Put(in, "x", Record{Settled: Delivered})
		l.SetMeta(in, Meta{Scheme: "uidl"})
	}
	t0 := time.Now()
	_, orphaned, err := l.ForgetOrphans([]string{"kept"}, time.Hour, t0)
	if err != nil || len(orphaned) != 2 {
		t.Fatalf("orphaned %v %v", orphaned, err)
	}
	removed, _, _ := l.ForgetOrphans([]string{"kept", "back"}, time.Hour, t0.Add(30*time.Minute))
	if len(removed) != 0 {
		t.Fatalf("removed within the grace period: %v", removed)
	}
	removed, _, _ = l.ForgetOrphans([]string{"kept", "back"}, time.Hour, t0.Add(2*time.Hour))
	if len(removed) != 1 || removed[0] != "gone" {
		t.Fatalf("removed %v; want [gone]", removed)
	}
	var names []string
	for _, st := range l.Stats() {
		names = append(names, st.Input)
		if !st.Meta.Orphaned.IsZero() {
			t.Fatalf("%s still marked orphaned", st.Input)
		}
	}
	if strings.Join(names, ",") != "back,kept" {
		t.Fatalf("inputs left: %v", names)
	}
}

// Settled records wait in memory (seen by Get, GetMany and All) until a
// Flush writes them in one commit; a process killed before the Flush
// leaves them in the journal, which the next Open applies.
func TestSettleWaitsForFlushAndSurvivesAKill(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := l.Settle("in", fmt.Sprint(i), Record{Settled: Delivered, Digest: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if r, ok := l.Get("in", "7"); !ok || r.Settled != Delivered {
		t.Fatal("a waiting record is not seen by Get")
	}
	if n := len(l.GetMany("in", []string{"1", "2", "x"})); n != 2 {
		t.Fatalf("GetMany saw %d", n)
	}
	if n := len(l.All("in")); n != 100 {
		t.Fatalf("All saw %d", n)
	}
	// In the database only after the Flush.
	inDB := func() int {
		n := 0
		l.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketName("in")); b != nil {
				n = b.Stats().KeyN
			}
			return nil
		})
		return n
	}
	if n := inDB(); n != 0 {
		t.Fatalf("%d records in the database before the Flush", n)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := inDB(); n != 100 {
		t.Fatalf("%d records in the database after the Flush", n)
	}
	// A kill: the process ends with records waiting and no Close.
	for i := 100; i < 150; i++ {
		l.Settle("in", fmt.Sprint(i), Record{Settled: Delivered})
	}
	l.journal.Close()
	l.db.Close() // bbolt's lock goes with the process in a real kill
	l2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if n := len(l2.All("in")); n != 150 {
		t.Fatalf("after the kill the ledger has %d records, want 150", n)
	}
	// A newer synchronous Put supersedes a waiting record.
	l2.Settle("in", "200", Record{Settled: Delivered})
	l2.Put("in", "200", Record{Settled: Quarantined})
	l2.Flush()
	if r, _ := l2.Get("in", "200"); r.Settled != Quarantined {
		t.Fatalf("the older waiting record landed last: %v", r.Settled)
	}
}

// Settled records waiting for the group commit when the journal fills up:
// the rotation flushes them first (it once did so holding the journal's
// lock, which the flush takes too, and hung). Four writers settle 6 MB of
// records across a rotation; all of them are there after a reopen, the
// journal rotated, and nothing hung.
func TestJournalRotatesWhileRecordsWaitForTheGroupCommit(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	reason := string(bytes.Repeat([]byte("r"), 1000))
	const writers, each = 4, 1500 // 6,000 records of about 1.1 KB
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				id := fmt.Sprintf("%d-%d", w, i)
				if err := l.Settle("in", id, Record{Settled: Delivered, Reasons: []string{reason}}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	timeout := time.After(60 * time.Second)
	for range writers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("settling hung (a rotation waiting on itself?)")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, journalName+".old")); err != nil {
		t.Fatalf("the journal never rotated: %v", err)
	}
	l.journal.Close() // a kill: no Close, records may still wait
	l.db.Close()
	l2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if n := len(l2.All("in")); n != writers*each {
		t.Fatalf("%d records after the rotation and a kill, want %d", n, writers*each)
	}
}

// BenchmarkLedgerPut records settled deliveries the way a poll does: Put
// is one synced transaction per message (how every message was recorded
// before the group commit); Settle journals it and the group commit
// (Flush, here every 16 messages as a poll's in-flight window would)
// writes many in one transaction.
func BenchmarkLedgerPut(b *testing.B) {
	rec := Record{Settled: Delivered, Digest: strings.Repeat("ab", 32), Size: 2048, Listed: 2048}
	b.Run("put", func(b *testing.B) {
		l, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		for i := range b.N {
			if err := l.Put("in", fmt.Sprint(i), rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("settle", func(b *testing.B) {
		l, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		for i := range b.N {
			if err := l.Settle("in", fmt.Sprint(i), rec); err != nil {
				b.Fatal(err)
			}
			if i%16 == 15 {
				if err := l.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// Stale finds the records a listing no longer holds, within the places a
// partial listing listed whole; Forget removes them; MarkRemoved marks
// records whose messages mailflow took from the source.
func TestStaleForgetAndMarkRemoved(t *testing.T) {
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, id := range []string{"INBOX/1/1", "INBOX/1/2", "Sent/9/1", "Sent/9/2"} {
		if err := l.Put("in", id, Record{Settled: Delivered, Flags: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	present := map[string]bool{"INBOX/1/1": true}
	all, _, _ := l.Stale("in", nil, present)
	inbox, recs, _ := l.Stale("in", []string{"INBOX/1/"}, present)
	if len(all) != 3 || len(inbox) != 1 || inbox[0] != "INBOX/1/2" || recs["INBOX/1/2"].Settled != Delivered {
		t.Fatalf("stale: all %v, in INBOX %v", all, inbox)
	}
	if err := l.MarkRemoved("in", []string{"Sent/9/1"}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := l.Get("in", "Sent/9/1"); !rec.Removed || rec.Flags == nil {
		t.Fatalf("marked: %+v", rec)
	}
	if err := l.Forget("in", inbox); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Get("in", "INBOX/1/2"); ok {
		t.Fatal("a forgotten record is still there")
	}
	if _, ok := l.Get("in", "Sent/9/2"); !ok {
		t.Fatal("a record outside the places swept was forgotten")
	}
}

// Stats counts the settled records without decoding them, and counts
// them right however a record is written: an output named "settled", and
// a record written with its fields in another order than json.Marshal's.
func TestStatsCountsSettledRecords(t *testing.T) {
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Put("in", "delivered", Record{Settled: Delivered, Accepted: map[string][]string{"settled": {"*"}}})
	l.Put("in", "quarantined", Record{Settled: Quarantined})
	l.Put("in", "sending", Record{Sending: []string{"settled"}, Where: map[string]string{"settled": "INBOX;UIDVALIDITY=1/;UID=2"}})
	l.Put("in", "none", Record{Digest: "d"})
	err = l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName("in"))
		if err := b.Put([]byte("reordered"), []byte(`{"digest":"d","settled":"dropped"}`)); err != nil {
			return err
		}
		return b.Put([]byte("reordered-unsettled"), []byte(`{"digest":"d","settled":""}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if len(st) != 1 || st[0].Records != 6 || st[0].Settled != 3 {
		t.Fatalf("stats %+v; want 6 records, 3 settled", st)
	}
	// Outcomes reads the same field, and sees a record waiting for the
	// group commit over the one in the database.
	if err := l.Settle("in", "none", Record{Settled: Held}); err != nil {
		t.Fatal(err)
	}
	got := l.Outcomes("in", []string{"delivered", "quarantined", "sending", "none", "reordered", "reordered-unsettled", "absent"})
	want := map[string]Outcome{"delivered": Delivered, "quarantined": Quarantined, "none": Held, "reordered": Dropped}
	if !maps.Equal(got, want) {
		t.Fatalf("Outcomes = %v, want %v", got, want)
	}
}
