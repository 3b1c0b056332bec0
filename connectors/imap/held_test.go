package imap

import (
	"bytes"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// Line ends aside, the same bytes give the same digest, however they are
// read; other bytes another.
func TestCRLFDigest(t *testing.T) {
	crlf := []byte("a: b\r\n\r\nline\r\n\r\nend\r\n")
	lf := []byte("a: b\n\nline\n\nend\n")
	want, _ := crlfDigest(bytes.NewReader(crlf))
	for _, r := range []*bytes.Reader{bytes.NewReader(lf), bytes.NewReader(crlf)} {
		if got, err := crlfDigest(iotest.OneByteReader(r)); err != nil || got != want {
			t.Fatalf("%x %v, want %x", got, err, want)
		}
	}
	if got, _ := crlfDigest(bytes.NewReader([]byte("a: b\r\n\r\nline\r\n"))); got == want {
		t.Fatal("other bytes, same digest")
	}
}

// Two folders are read at once: a delivery to one does not wait while
// another is read (a pass that delivers to ten folders read them one
// after the other, every delivery waiting). Within a folder, the second
// take waits for the first read and does not read again.
func TestHeldFoldersAreReadAtOnce(t *testing.T) {
	var h heldIndex
	started := make(chan string, 2)
	release := make(chan struct{})
	reads := map[string]int{}
	var mu sync.Mutex
	read := func(folder string) func() (*folderCopies, error) {
		return func() (*folderCopies, error) {
			mu.Lock()
			reads[folder]++
			mu.Unlock()
			started <- folder
			<-release
			return &folderCopies{validity: 1, uids: map[string][]uint32{"a@x": {7}}}, nil
		}
	}
	type result struct {
		there bool
		err   error
	}
	done := make(chan result, 3)
	for _, f := range []string{"A", "B"} {
		go func() {
			var at heldCopy
			there, _, err := h.take(f, "a@x", 0, read(f), nil, nil, &at)
			done <- result{there, err}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the second folder was not read while the first was")
		}
	}
	go func() {
		var at heldCopy
		there, _, err := h.take("A", "a@x", 0, read("A"), nil, nil, &at)
		done <- result{there, err}
	}()
	close(release)
	var claimed int
	for range 3 {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.there {
			claimed++
		}
	}
	// A's one copy is claimed once; the third take found it claimed.
	if claimed != 2 {
		t.Fatalf("%d copies claimed, want 2 (one in A, one in B)", claimed)
	}
	if reads["A"] != 1 || reads["B"] != 1 {
		t.Fatalf("reads: %v, want each folder once", reads)
	}
}

// In a folder of 320 messages, the first ten deliveries look for their
// copies one at a time instead of reading the folder: a copy that was
// there is claimed once; a copy this output appended while looking is
// never taken for one that was there, and the next look for that identity
// waits for the APPEND to say its UID (a look for another identity does
// not); an identity whose APPEND was in doubt is never claimed again;
// after the ten, the folder is read, without the copies claimed or
// appended. An empty folder is never looked in again.
func TestHeldLooksBeforeItReads(t *testing.T) {
	var h heldIndex
	var mu sync.Mutex
	folder := map[string][]uint32{"x@x": {5}, "y@x": {9}}
	looks, reads := 0, 0
	look := func(identity string) func() (uint32, uint32, []uint32, error) {
		return func() (uint32, uint32, []uint32, error) {
			mu.Lock()
			defer mu.Unlock()
			looks++
			return 1, 320, append([]uint32(nil), folder[identity]...), nil
		}
	}
	read := func() (*folderCopies, error) {
		mu.Lock()
		defer mu.Unlock()
		reads++
		idx := &folderCopies{validity: 1, uids: map[string][]uint32{}}
		for id, uids := range folder {
			idx.uids[id] = append([]uint32(nil), uids...)
		}
		return idx, nil
	}
	take := func(identity string) (bool, func(uint32, bool), heldCopy) {
		t.Helper()
		var at heldCopy
		there, sent, err := h.take("A", identity, 0, read, look(identity), nil, &at)
		if err != nil {
			t.Fatal(err)
		}
		return there, sent, at
	}
	if there, sent, at := take("x@x"); !there || sent != nil || at.uid != 5 {
		t.Fatalf("the copy that was there: %v %v", there, at)
	}
	there, sent, _ := take("x@x") // a second message of that identity: appended
	if there || sent == nil {
		t.Fatalf("a twin took a claimed copy: %v", there)
	}
	mu.Lock()
	folder["x@x"] = append(folder["x@x"], 400) // its APPEND, in flight
	mu.Unlock()
	other := make(chan func(uint32, bool), 1)
	go func() { _, sent, _ := take("w@x"); other <- sent }()
	select {
	case sent := <-other: // another identity does not wait: no copy of it can be in flight
		sent(0, true)
	case <-time.After(10 * time.Second):
		t.Fatal("a look for another identity waited for the APPEND in flight")
	}
	waited := make(chan bool)
	go func() {
		there, _, _ := take("x@x") // a third: must wait for the second's UID
		waited <- there
	}()
	select {
	case <-waited:
		t.Fatal("a look did not wait for the APPEND in flight")
	case <-time.After(100 * time.Millisecond):
	}
	sent(400, true)
	if there := <-waited; there {
		t.Fatal("the copy this output appended was taken for one that was there")
	}
	// The third's APPEND ends in doubt (the take above returned a sent
	// the goroutine dropped: end it as in doubt here).
	h.folder("A").sent("x@x", 0, false)
	if there, sent, _ := take("x@x"); there || sent != nil {
		t.Fatalf("an identity in doubt: there %v, sent %v", there, sent != nil)
	}
	for looks < 10 {
		there, sent, _ := take("z@x")
		if there || sent == nil {
			t.Fatal("z@x is not there")
		}
		sent(0, true) // refused: nothing stored
	}
	if reads != 0 {
		t.Fatalf("read after %d looks", looks)
	}
	if there, _, at := take("y@x"); !there || at.uid != 9 || reads != 1 || looks != 10 {
		t.Fatalf("after ten looks: there %v at %v, %d reads, %d looks", there, at, reads, looks)
	}
	if there, _, _ := take("x@x"); there {
		t.Fatal("the read gave back a copy claimed or appended while looking")
	}

	// An empty folder: one look, then nothing more is asked.
	empty := func() (uint32, uint32, []uint32, error) { looks++; return 2, 0, nil, nil }
	for range 3 {
		var at heldCopy
		if there, sent, err := h.take("B", "x@x", 0, read, empty, nil, &at); there || sent != nil || err != nil {
			t.Fatalf("empty folder: %v %v %v", there, sent != nil, err)
		}
	}
	if looks != 11 || reads != 1 {
		t.Fatalf("empty folder: %d looks, %d reads", looks, reads)
	}
}

// Looks for different identities in one folder go on at once: a slow
// look does not hold up another's.
func TestHeldLooksGoOnAtOnce(t *testing.T) {
	var h heldIndex
	release := make(chan struct{})
	look := func(slow bool) func() (uint32, uint32, []uint32, error) {
		return func() (uint32, uint32, []uint32, error) {
			if slow {
				<-release
			}
			return 1, 320, nil, nil
		}
	}
	read := func() (*folderCopies, error) { t.Fatal("read while looks may go on"); return nil, nil }
	take := func(identity string, slow bool) func(uint32, bool) {
		var at heldCopy
		there, sent, err := h.take("A", identity, 0, read, look(slow), nil, &at)
		if err != nil || there || sent == nil {
			t.Errorf("%s: there %v, sent %v, %v", identity, there, sent != nil, err)
		}
		return sent
	}
	take("first@x", false)(0, true) // says how many the folder holds
	slow := make(chan func(uint32, bool))
	go func() { slow <- take("slow@x", true) }()
	time.Sleep(20 * time.Millisecond) // the slow look begins
	done := make(chan func(uint32, bool))
	go func() { done <- take("quick@x", false) }()
	select {
	case sent := <-done:
		sent(0, true)
	case <-time.After(10 * time.Second):
		t.Fatal("a look waited for another identity's")
	}
	close(release)
	(<-slow)(0, true)
}
