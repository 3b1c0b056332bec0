package smtpd

import (
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/fsync"
)

// A message is answered (commit returns) only once its file is synced
// with its mark finished over the whole message, and a sync of its
// directory that began after the file was there has ended: a crash after
// the 250 keeps it, a crash before keeps nothing that start-up would take.
// The order is seen through the spool's sync functions.
func TestSpoolCommitWaitsForBothSyncs(t *testing.T) {
	dir := t.TempDir()
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
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		if n, sum, ok := parseMark(b[:min(len(b), markLen)]); !ok || int64(len(b)-markLen) != n || crc32.Checksum(b[markLen:], castagnoli) != sum {
			event("file synced before its mark was finished over the whole message")
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
	body := "Subject: x\r\n\r\n" + strings.Repeat("a line\r\n", 5000)
	if _, err := sp.Message.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	en, err := sp.commit()
	if err != nil {
		t.Fatal(err)
	}
	event("answered")
	mu.Lock()
	got := strings.Join(events, ", ")
	mu.Unlock()
	if got != "dir synced, file synced, answered" && got != "file synced, dir synced, answered" {
		t.Fatalf("events: %s", got)
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
