package smtpd

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/connectors/smtpd/spoolfile"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/fsync"
)

// A message is answered (commit returns) only once its file is synced
// whole, the journal is synced with its head (the file's length and
// checksum), and a sync of its directory that began after the file was
// there has ended: a crash after the 250 keeps it, a crash before keeps
// nothing that start-up would take. The order is seen through the
// spool's sync functions.
func TestSpoolCommitWaitsForItsSyncs(t *testing.T) {
	dir := t.TempDir()
	body := "Received: by test\r\nSubject: x\r\n\r\n" + strings.Repeat("a line\r\n", 5000)
	s, err := openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	event := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	var id string
	s.syncDir = func(g *fsync.Group) error {
		mu.Lock()
		path := filepath.Join(g.Dir, id)
		mu.Unlock()
		if _, err := os.Stat(path); err != nil {
			event("dir sync began before the file was there")
		}
		err := g.Sync()
		event("dir synced")
		return err
	}
	s.syncFile = func(f *os.File) error {
		if strings.HasPrefix(filepath.Base(f.Name()), "heads") {
			b, _ := os.ReadFile(filepath.Join(dir, "heads"))
			mu.Lock()
			h := headLine{ID: id, Len: int64(len(body)), CRC: crc32.Checksum([]byte(body), castagnoli)}
			mu.Unlock()
			if !strings.Contains(string(b), fmt.Sprintf(`{"id":%q,"len":%d,"crc":%d,`, h.ID, h.Len, h.CRC)) {
				event("journal synced without the message's head")
			}
			err := f.Sync()
			event("journal synced")
			return err
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		if string(b) != body {
			event("file synced before it was whole")
		}
		err = f.Sync()
		event("file synced")
		return err
	}
	mu.Lock() // the id is known once create returns: the dir sync waits for it
	rcvd := &message.Received{Sender: "a@example.org", Recipients: []string{"b@example.net"}}
	sp, err := s.create(rcvd, false)
	if err != nil {
		mu.Unlock()
		t.Fatal(err)
	}
	id = sp.id
	mu.Unlock()
	if _, err := sp.Message.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	en, err := sp.commit()
	if err != nil {
		t.Fatal(err)
	}
	event("answered")
	mu.Lock()
	got := events
	mu.Unlock()
	slices.Sort(got[:len(got)-1])
	if strings.Join(got, ", ") != "dir synced, file synced, journal synced, answered" {
		t.Fatalf("events: %s", strings.Join(got, ", "))
	}
	if f, ok := spoolfile.Find(s.input, en.id); !ok || f.Size != int64(len(body)) || f.CRC != crc32.Checksum([]byte(body), castagnoli) {
		t.Fatalf("the spooled file is not offered to outputs as it is: %+v %v", f, ok)
	}

	// Read back as the engine reads it, and again after a restart.
	read := func(s *spool, en *entry) string {
		f, err := s.open(en)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		return string(b)
	}
	if got := read(s, en); got != body {
		t.Fatalf("read back %d bytes, want the %d sent", len(got), len(body))
	}
	s.release()
	s, err = openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	items := s.list()
	if len(items) != 1 || items[0].ID != en.id || items[0].Size != int64(len(body)) {
		t.Fatalf("after a restart the spool lists %+v", items)
	}
	if got := read(s, items[0].Ref.(*entry)); got != body {
		t.Fatalf("after a restart read back %d bytes, want the %d sent", len(got), len(body))
	}
	if _, ok := spoolfile.Find(s.input, en.id); !ok {
		t.Fatal("after a restart the spooled file is not offered to outputs")
	}
	if failed := s.remove([]*entry{items[0].Ref.(*entry)}); len(failed) != 0 {
		t.Fatal("not removed")
	}
	if _, ok := spoolfile.Find(s.input, en.id); ok {
		t.Fatal("a removed file is still offered to outputs")
	}
}

// The journal is rewritten when it outgrows its bound, holding the heads
// of the messages spooled and none of those gone; a message answered
// across a rewrite is found at the next start.
func TestSpoolHeadsRotate(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := openSpool(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	s.heads.rotateAt = 4 << 10
	var kept []*entry
	for i := range 200 {
		sp, err := s.create(&message.Received{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("r%d@example.net", i)}}, false)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(sp.Message, "Received: by test\r\nSubject: %d\r\n\r\nx\r\n", i)
		en, err := sp.commit()
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			kept = append(kept, en)
		} else {
			s.remove([]*entry{en})
		}
	}
	if s.heads.rotations == 0 {
		t.Fatal("the journal was never rewritten")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "heads")); fi.Size() > 8<<10 {
		t.Fatalf("the journal is %d bytes after its rewrites", fi.Size())
	}
	s.release()
	s, err = openSpool(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	items := s.list()
	if len(items) != len(kept) {
		t.Fatalf("after a restart %d messages, want %d", len(items), len(kept))
	}
	for i, it := range items {
		if it.ID != kept[i].id || it.Received.Recipients[0] != kept[i].rcvd.Recipients[0] {
			t.Fatalf("after a restart: %s %v, want %s %v", it.ID, it.Received.Recipients, kept[i].id, kept[i].rcvd.Recipients)
		}
	}
	hs, _ := readHeads(dir)
	if len(hs) != len(kept) {
		t.Fatalf("the journal rewritten at start holds %d heads, want %d", len(hs), len(kept))
	}
}

// A message whose file or directory could not be synced is not taken: the
// client hears an error, and the file is gone.
func TestSpoolCommitFailsWhenASyncFails(t *testing.T) {
	boom := errors.New("boom")
	for _, which := range []string{"file", "dir"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer s.release()
			if which == "file" {
				s.syncFile = func(*os.File) error { return boom }
			} else {
				s.syncDir = func(*fsync.Group) error { return boom }
			}
			sp, err := s.create(&message.Received{Sender: "a@example.org"}, false)
			if err != nil {
				t.Fatal(err)
			}
			sp.Message.Write([]byte("Subject: x\r\n\r\nx\r\n"))
			if _, err := sp.commit(); !errors.Is(err, boom) {
				t.Fatalf("commit: %v, want the sync's error", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 || len(s.list()) != 0 {
				t.Fatalf("a message not taken is left: %v, listed %d", ents, len(s.list()))
			}
		})
	}
}
