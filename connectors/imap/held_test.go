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
			there, err := h.take(f, "a@x", 0, read(f), nil, &at)
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
		there, err := h.take("A", "a@x", 0, read("A"), nil, &at)
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
