package smtpd

import (
	"encoding/json"
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
	"time"

	"github.com/mailflow/mailflow/connectors/internal/spoolfile"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/fsync"
)

// A message is answered (commit returns) only once its file is synced
// whole, the journal is synced with its head (the file's length and
// checksum), and a sync of its directory that began after the file was
// there has ended: a crash after the 250 keeps it, a crash before keeps
// nothing that start-up would take. What each sync covered is seen
// through the spool's sync functions, for a file made ahead (blank.go)
// and one made when the message came.
func TestSpoolCommitWaitsForItsSyncs(t *testing.T) {
	for _, ahead := range []bool{true, false} {
		t.Run(map[bool]string{true: "made ahead", false: "made now"}[ahead], func(t *testing.T) {
			testSpoolCommitWaitsForItsSyncs(t, ahead)
		})
	}
}

func testSpoolCommitWaitsForItsSyncs(t *testing.T, ahead bool) {
	dir := t.TempDir()
	body := "Received: by test\r\nSubject: x\r\n\r\n" + strings.Repeat("a line\r\n", 5000)
	sum := crc32.Checksum([]byte(body), castagnoli)
	s, err := openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.stopFilling() // the hooks go in while nothing syncs
	var mu sync.Mutex
	named := map[string]bool{}  // names a finished sync of new/ made durable
	whole := map[string]bool{}  // files synced whole
	headed := map[string]bool{} // heads a finished sync of the journal holds
	s.syncDir = func(g *fsync.Group) error {
		ents, _ := os.ReadDir(g.Dir) // before the sync begins
		err := g.Sync()
		mu.Lock()
		for _, e := range ents {
			named[e.Name()] = true
		}
		mu.Unlock()
		return err
	}
	s.syncFile = func(f *os.File) error {
		if strings.HasPrefix(filepath.Base(f.Name()), "heads") {
			b, _ := os.ReadFile(filepath.Join(dir, "heads"))
			err := f.Sync()
			mu.Lock()
			for _, line := range strings.Split(string(b), "\n") {
				var h headLine
				if json.Unmarshal([]byte(line), &h) == nil && h.Len == int64(len(body)) && h.CRC == sum {
					headed[h.ID] = true
				}
			}
			mu.Unlock()
			return err
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		err = f.Sync()
		mu.Lock()
		whole[filepath.Base(f.Name())] = string(b) == body
		mu.Unlock()
		return err
	}
	if ahead {
		s.startFilling()
		for len(s.blanks) < blankAhead {
			time.Sleep(time.Millisecond)
		}
	}
	before, _ := os.ReadDir(filepath.Join(dir, "new"))
	rcvd := &message.Received{Sender: "a@example.org", Recipients: []string{"b@example.net"}}
	sp, err := s.create(rcvd, false)
	if err != nil {
		t.Fatal(err)
	}
	if made := slices.ContainsFunc(before, func(e os.DirEntry) bool { return e.Name() == sp.id }); made != ahead {
		t.Fatalf("the message's file was made ahead: %v, want %v", made, ahead)
	}
	if _, err := sp.Message.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	en, err := sp.commit()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !named[en.id] || !whole[en.id] || !headed[en.id] {
		t.Fatalf("answered with its name durable %v, its file synced whole %v, its head synced %v", named[en.id], whole[en.id], headed[en.id])
	}
	mu.Unlock()
	if f, ok := spoolfile.Find(s.input, en.id); !ok || f.Size != int64(len(body)) || f.CRC != sum {
		t.Fatalf("the spooled file is not offered to outputs as it is: %+v %v", f, ok)
	}
	if !ahead {
		s.startFilling() // for release
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

	// A spool that keeps all it takes (an output down) outgrows the bound
	// with live heads alone: the journal is rewritten only once half of it
	// is heads of messages gone, not at every message.
	s.heads.rotateAt = 4 << 10
	before := s.heads.rewrite
	for i := range 300 {
		sp, err := s.create(&message.Received{Sender: "a@example.org", Recipients: []string{fmt.Sprintf("k%d@example.net", i)}}, false)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(sp.Message, "Received: by test\r\nSubject: %d\r\n\r\nx\r\n", i)
		if _, err := sp.commit(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.heads.rewrite - before; n > 1 {
		t.Fatalf("the journal was rewritten %d times for 300 messages kept", n)
	}
	if got := len(s.list()); got != len(kept)+300 {
		t.Fatalf("%d messages spooled, want %d", got, len(kept)+300)
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
			s.stopFilling() // the hooks go in while nothing syncs
			defer s.startFilling()
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
			if _, err := os.Stat(filepath.Join(dir, "new", sp.id)); err == nil || len(s.list()) != 0 {
				t.Fatalf("a message not taken is left: %v, listed %d", err, len(s.list()))
			}
		})
	}
}

// remove returns only once a sync of the directory that began after the
// file was unlinked has ended: the engine forgets a message's record on a
// later poll, and a name a crash brought back without its record would
// be delivered again.
func TestSpoolRemoveSyncsAfterTheUnlink(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	sp, err := s.create(&message.Received{Sender: "a@example.org"}, false)
	if err != nil {
		t.Fatal(err)
	}
	sp.Message.Write([]byte("Received: by test\r\nSubject: x\r\n\r\nx\r\n"))
	en, err := sp.commit()
	if err != nil {
		t.Fatal(err)
	}
	s.stopFilling() // the hook goes in while nothing syncs
	defer s.startFilling()
	var mu sync.Mutex
	goneAt := false // a finished sync began with the file gone
	s.syncDir = func(g *fsync.Group) error {
		_, statErr := os.Stat(filepath.Join(g.Dir, en.id))
		err := g.Sync()
		mu.Lock()
		goneAt = goneAt || errors.Is(statErr, os.ErrNotExist)
		mu.Unlock()
		return err
	}
	if failed := s.remove([]*entry{en}); len(failed) != 0 {
		t.Fatal("not removed")
	}
	mu.Lock()
	defer mu.Unlock()
	if !goneAt {
		t.Fatal("remove returned before a sync of new/ that began after the unlink ended")
	}
}
