package ledger

import (
	"testing"
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
