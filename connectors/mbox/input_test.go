package mbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// writeMbox writes msgs to path as an mboxrd file (appending to it),
// each under a Takeout-like From_ line.
func writeMbox(t testing.TB, path string, msgs [][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, _ := mbox.NewWriter(f, mbox.Mboxrd)
	for i, m := range msgs {
		if _, err := w.WriteMessage(fmt.Sprintf("From 17899236587%04d@xxx Wed Jan 05 12:34:%02d +0000 2022", i, i%60), bytes.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// takeout is a message as Google Takeout writes it: CRLF, with
// X-GM-THRID and X-Gmail-Labels first.
func takeout(n int, labels string, extra ...string) []byte {
	h := fmt.Sprintf("X-GM-THRID: 17%d\r\nX-Gmail-Labels: %s\r\n", n, labels)
	for _, e := range extra {
		h += e + "\r\n"
	}
	return []byte(h + fmt.Sprintf("Message-ID: <takeout-%d@example.org>\r\nFrom: a@example.org\r\nSubject: takeout %d\r\n\r\nFrom a body line\r\n>From another\r\nbody %d\r\n", n, n, n))
}

func newInput(t testing.TB, path string, set func(*mbox.Input), env ...plugin.Env) *mbox.Input {
	t.Helper()
	in := &mbox.Input{Path: path}
	if set != nil {
		set(in)
	}
	e := plugin.Env{BaseDir: "/", Logger: quiet, Name: "src"}
	if len(env) > 0 {
		e = env[0]
	}
	if err := in.Provision(e); err != nil {
		t.Fatal(err)
	}
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	return in
}

// list opens a session and lists it; the session is closed at the end of
// the test.
func list(t testing.TB, in *mbox.Input) (plugin.Session, plugin.Listing) {
	t.Helper()
	s, err := in.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	l, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

func fetchAll(t testing.TB, s plugin.Session, items []plugin.Item) [][]byte {
	t.Helper()
	var out [][]byte
	err := s.Fetch(context.Background(), items, func(it plugin.Item, r io.Reader, err error) error {
		if err != nil {
			return err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if int64(len(b)) != it.Size {
			t.Errorf("%s: fetched %d bytes, listed %d", it.ID, len(b), it.Size)
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInputListsAndFetches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.mbox")
	msgs := append(enginetest.Mix(30), specials()...)
	writeMbox(t, path, msgs)
	in := newInput(t, path, nil)
	s, l := list(t, in)
	if !l.Stable || !l.Keeps || l.Scheme != "mbox-offset" || len(l.Items) != len(msgs) {
		t.Fatalf("listing: scheme %q stable %v keeps %v, %d items", l.Scheme, l.Stable, l.Keeps, len(l.Items))
	}
	got := fetchAll(t, s, l.Items)
	for i, m := range msgs {
		if !bytes.Equal(got[i], withLineEnd(m)) {
			t.Fatalf("message %d differs", i)
		}
		it := l.Items[i]
		if !it.Date.Equal(time.Date(2022, 1, 5, 12, 34, i%60, 0, time.UTC)) {
			t.Fatalf("message %d: date %v", i, it.Date)
		}
		if i < 30 && i%8 != 7 && it.Identity != fmt.Sprintf("msg-%d-%s", i, []string{"plain", "multipart", "utf8-header", "raw-8bit", "bare-lf", "dot-lines", "8bit-body"}[i%8])+"@example.org" {
			t.Fatalf("message %d: identity %q", i, it.Identity)
		}
	}
	// The ids are the same at every listing, and at a new process's.
	_, again := list(t, newInput(t, path, nil))
	for i := range l.Items {
		if again.Items[i].ID != l.Items[i].ID || again.Items[i].Size != l.Items[i].Size {
			t.Fatalf("item %d: %s/%d, then %s/%d", i, l.Items[i].ID, l.Items[i].Size, again.Items[i].ID, again.Items[i].Size)
		}
	}
	if failed, err := s.Commit(context.Background(), l.Items); err != nil || len(failed) != 0 {
		t.Fatal(failed, err)
	}
}

type placed struct {
	folder, role string
	flags        []string
	suffix       string // of the id, after the message's own
}

func TestTakeoutLabels(t *testing.T) {
	cases := []struct {
		name, labels string
		mode         string
		spamTrash    bool
		extra        []string
		want         []placed // nil: skipped
	}{
		{"inbox", "Inbox,Important,Opened,Category Updates", "first", false, nil,
			[]placed{{"INBOX", "", []string{`\Seen`, "$Important", "Category_Updates"}, ""}}},
		{"unread and starred", "Unread,Inbox,Starred", "first", false, nil,
			[]placed{{"INBOX", "", []string{`\Flagged`}, ""}}},
		{"archived with a label", "Archived,Work/Projects,Opened", "first", false, nil,
			[]placed{{"Work/Projects", "", []string{`\Seen`}, ""}}},
		{"archived alone", "Archived,Opened", "first", false, nil,
			[]placed{{"Archive", `\Archive`, []string{`\Seen`}, ""}}},
		{"sent", "Sent,Opened", "first", false, nil,
			[]placed{{"Sent", `\Sent`, []string{`\Seen`}, ""}}},
		{"draft", "Drafts,IMAP_$Forwarded", "first", false, nil,
			[]placed{{"Drafts", `\Drafts`, []string{`\Seen`, `\Draft`, "$Forwarded"}, ""}}},
		{"copies", `Inbox,Work,"Family, friends",Opened`, "copies", false, nil,
			[]placed{{"INBOX", "", []string{`\Seen`}, ""}, {"Work", "", []string{`\Seen`}, "/Work"}, {"Family, friends", "", []string{`\Seen`}, "/Family, friends"}}},
		{"keywords", "Inbox,Work,Family friends,Opened", "keywords", false, nil,
			[]placed{{"INBOX", "", []string{`\Seen`, "Work", "Family_friends"}, ""}}},
		{"keywords, no place", "Unread,Work", "keywords", false, nil,
			[]placed{{"Archive", `\Archive`, []string{"Work"}, ""}}},
		{"encoded label", "=?UTF-8?Q?Rechnungen_=C3=9Cbersicht?=,Opened", "first", false, nil,
			[]placed{{"Rechnungen Übersicht", "", []string{`\Seen`}, ""}}},
		{"encoded label as keyword", "Inbox,=?UTF-8?Q?Rechnungen_=C3=9Cbersicht?=", "keywords", false, nil,
			[]placed{{"INBOX", "", []string{`\Seen`, "Rechnungen__bersicht"}, ""}}},
		{"spam skipped", "Spam,Unread", "first", false, nil, nil},
		{"spam imported", "Spam,Unread", "first", true, nil,
			[]placed{{"Spam", `\Junk`, nil, ""}}},
		{"trash wins over labels", "Trash,Work,Opened", "copies", true, nil,
			[]placed{{"Trash", `\Trash`, []string{`\Seen`}, ""}}},
		{"chat skipped", "Chat,Opened", "first", true, nil, nil},
		{"none", "Inbox,Work", "none", false, []string{"Status: RO"},
			[]placed{{"Imported", "", []string{`\Seen`}, ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "takeout.mbox")
			writeMbox(t, path, [][]byte{takeout(1, c.labels, c.extra...), takeout(2, "Inbox")})
			_, l := list(t, newInput(t, path, func(in *mbox.Input) {
				in.Labels, in.IncludeSpamTrash, in.Folder = c.mode, c.spamTrash, "Imported"
			}))
			var got []placed
			base := l.Items[len(l.Items)-1].ID // the second message's
			first := ""
			for _, it := range l.Items {
				if it.ID == base {
					continue
				}
				if first == "" {
					first = it.ID
				}
				got = append(got, placed{it.Folder, it.FolderRole, it.Flags, strings.TrimPrefix(it.ID, first)})
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i].folder != c.want[i].folder || got[i].role != c.want[i].role || !slices.Equal(got[i].flags, c.want[i].flags) || got[i].suffix != c.want[i].suffix {
					t.Fatalf("got %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

// Messages from mutt and Thunderbird carry their flags in the header.
func TestStatusFlagsWithoutLabels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.mbox")
	writeMbox(t, path, [][]byte{
		[]byte("Status: RO\nX-Status: AF\nSubject: mutt\n\nx\n"),
		[]byte("X-Mozilla-Status: 1005\nSubject: thunderbird\n\nx\n"),
		[]byte("Status: O\nSubject: unread\n\nx\n"),
	})
	_, l := list(t, newInput(t, path, nil))
	want := [][]string{{`\Seen`, `\Answered`, `\Flagged`}, {`\Seen`, `\Flagged`, "$Forwarded"}, nil}
	for i, it := range l.Items {
		if !slices.Equal(it.Flags, want[i]) || it.Folder != "" {
			t.Errorf("message %d: %q in %q, want %q", i, it.Flags, it.Folder, want[i])
		}
	}
}

// recorder keeps the log records of a test.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// A file that grew is read from its last message on; every message
// before keeps its id, and the last one, completed since, is listed with
// its new size.
func TestAppendedFileIsReadFromItsLastMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	writeMbox(t, path, enginetest.Mix(10))
	// The last message cut short, as by a writer that does not lock.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("From x@y Sat Nov 21 10:00:00 2026\nSubject: growing\n\nhalf")
	f.Close()
	var log recorder
	in := newInput(t, path, nil, plugin.Env{BaseDir: "/", Name: "src", Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, l1 := list(t, in)
	if len(l1.Items) != 11 || !strings.Contains(log.String(), "cut short") {
		t.Fatalf("%d items; log %s", len(l1.Items), log.String())
	}
	last := l1.Items[10]
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(" and the rest\n\n")
	f.Close()
	writeMbox(t, path, enginetest.Mix(3))
	s, l2 := list(t, in)
	if len(l2.Items) != 14 {
		t.Fatalf("%d items after the append", len(l2.Items))
	}
	for i := range 10 {
		if l2.Items[i].ID != l1.Items[i].ID {
			t.Fatalf("item %d changed its id", i)
		}
	}
	if l2.Items[10].ID != last.ID || l2.Items[10].Size == last.Size {
		t.Fatalf("the completed message: %s/%d, was %s/%d", l2.Items[10].ID, l2.Items[10].Size, last.ID, last.Size)
	}
	if !strings.Contains(log.String(), "read what was appended") || strings.Count(log.String(), "mbox: listed") != 1 {
		t.Fatalf("the file was read whole again: %s", log.String())
	}
	got := fetchAll(t, s, l2.Items[10:11])
	if string(got[0]) != "Subject: growing\n\nhalf and the rest\n" {
		t.Fatalf("%q", got[0])
	}
}

// A file rewritten under the input (a message expunged, the rest moved)
// makes a new scheme, for one poll, in this process and in the next; an
// unchanged file keeps it.
func TestRewrittenFileChangesTheScheme(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.mbox")
	msgs := enginetest.Mix(6)
	writeMbox(t, path, msgs)
	env := plugin.Env{BaseDir: "/", Name: "src", Logger: quiet, StateDir: filepath.Join(dir, "state")}
	in := newInput(t, path, nil, env)
	if _, l := list(t, in); l.Scheme != "mbox-offset" {
		t.Fatal(l.Scheme)
	}
	os.Remove(path)
	writeMbox(t, path, msgs[1:])
	if _, l := list(t, in); l.Scheme != "mbox-offset/1" {
		t.Fatalf("after a rewrite: %q", l.Scheme)
	}
	writeMbox(t, path, enginetest.Mix(2)) // appended: no change
	if _, l := list(t, in); l.Scheme != "mbox-offset/1" {
		t.Fatalf("after an append: %q", l.Scheme)
	}
	// A new process finds the scheme in state_dir.
	if _, l := list(t, newInput(t, path, nil, env)); l.Scheme != "mbox-offset/1" {
		t.Fatalf("in a new process: %q", l.Scheme)
	}
	// Rewritten while mailflow was stopped.
	os.Remove(path)
	writeMbox(t, path, msgs[2:])
	in = newInput(t, path, nil, env)
	if _, l := list(t, in); l.Scheme != "mbox-offset/2" {
		t.Fatalf("rewritten while stopped: %q", l.Scheme)
	}
	// Rewritten in place, longer than it was: where its last message
	// started, there is none now.
	var b bytes.Buffer
	for _, m := range enginetest.Mix(12)[6:] {
		b.Write(m)
	}
	big := append([][]byte{[]byte("Subject: a longer first message\n\n" + strings.Repeat("x", 777) + "\n")}, msgs[2:]...)
	big = append(big, b.Bytes())
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	f.Close()
	writeMbox(t, path, big)
	if _, l := list(t, in); l.Scheme != "mbox-offset/3" || len(l.Items) != len(big) {
		t.Fatalf("rewritten in place: %q, %d items", l.Scheme, len(l.Items))
	}
}

// A message whose bytes changed between the listing and the fetch stops
// the fetch with a ChangedError, and is not handed over.
func TestFileChangedBetweenListAndFetch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.mbox")
	writeMbox(t, path, [][]byte{[]byte("Subject: one\n\n1\n"), []byte("Subject: two\n\n2\n")})
	s, l := list(t, newInput(t, path, nil))
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte("Subject: two"), []byte("Subject: TWO"), 1), 0o600)
	var handed []string
	err := s.Fetch(context.Background(), l.Items, func(it plugin.Item, r io.Reader, err error) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		handed = append(handed, string(b))
		return nil
	})
	var ce *mbox.ChangedError
	if !errors.As(err, &ce) || len(handed) != 1 {
		t.Fatalf("err %v, handed %q", err, handed)
	}
}

type job struct {
	t   *testing.T
	dir string
	e   *engine.Engine
}

// newJob runs an mbox → Maildir job on dir/src.mbox.
func newJob(t *testing.T, dir, extra string) *job {
	conf := fmt.Sprintf(`state_dir = "state"
[[input]]
name = "src"
type = "mbox"
path = "src.mbox"
pipeline = "p"
%s
[[pipeline]]
name = "p"
outputs = ["dst"]
[[output]]
name = "dst"
type = "maildir"
path = "out"
`, extra)
	if err := os.WriteFile(filepath.Join(dir, "mailflow.toml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &job{t: t, dir: dir}
	j.open()
	return j
}

func (j *job) open() {
	cfg, err := config.Load(filepath.Join(j.dir, "mailflow.toml"), plugins.Default)
	if err != nil {
		j.t.Fatal(err)
	}
	e, err := engine.Open(cfg, plugins.Default, quiet)
	if err != nil {
		j.t.Fatal(err)
	}
	j.e = e
	j.t.Cleanup(func() { e.Close() })
}

func (j *job) poll() engine.Stats {
	j.t.Helper()
	st, err := j.e.PollOnce(context.Background(), "src")
	if err != nil {
		j.t.Fatal(err)
	}
	return st
}

func (j *job) delivered() [][]byte {
	got, err := enginetest.ReadMaildir(filepath.Join(j.dir, "out"))
	if err != nil {
		j.t.Fatal(err)
	}
	return got
}

func assertExactlyOnce(t *testing.T, want, got [][]byte) {
	t.Helper()
	var ended [][]byte
	for _, m := range want {
		ended = append(ended, withLineEnd(m))
	}
	w, g := enginetest.Count(ended), enginetest.Count(got)
	for d, n := range w {
		if g[d] != n {
			t.Errorf("message %s…: want %d, have %d", d[:10], n, g[d])
		}
	}
	if len(got) != len(want) {
		t.Errorf("want %d messages, have %d", len(want), len(got))
	}
}

// helperImport is a mailflow process: it polls the job in MBOX_DIR once,
// and is killed part-way by the test.
func helperImport() int {
	dir := os.Getenv("MBOX_DIR")
	cfg, err := config.Load(filepath.Join(dir, "mailflow.toml"), plugins.Default)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := engine.Open(cfg, plugins.Default, quiet)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := e.PollOnce(context.Background(), "src"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e.Close()
	return 0
}

// An import killed part-way (SIGKILL: no shutdown, no flush) goes on where
// it stopped when mailflow starts again: every message once, and what
// was settled before the kill is not read again.
func TestInterruptedImportResumes(t *testing.T) {
	dir := t.TempDir()
	var msgs [][]byte
	for i := range 3000 {
		msgs = append(msgs, takeout(i, []string{"Inbox", "Archived,Work", "Sent", "Unread,Inbox"}[i%4]))
	}
	writeMbox(t, filepath.Join(dir, "src.mbox"), msgs)
	newJob(t, dir, `labels = "first"`).e.Close()

	cmd := helper(t, "import", "MBOX_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killedAt := -1
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		ents, _ := os.ReadDir(filepath.Join(dir, "out", "new"))
		if len(ents) >= 500 {
			cmd.Process.Signal(syscall.SIGKILL)
			killedAt = len(ents)
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the import ended before it could be killed: %v", err)
		default:
		}
	}
	<-done
	if killedAt < 0 {
		t.Fatal("the import never got to 500 messages")
	}
	j := newJob(t, dir, `labels = "first"`)
	st := j.poll()
	got := j.delivered()
	assertExactlyOnce(t, msgs, got)
	t.Logf("killed after %d messages; the next poll fetched %d, delivered %d, skipped %d (in doubt %d)", killedAt, st.Fetched, st.Delivered, st.Skipped, st.InDoubt)
	if st.Skipped < int64(killedAt)-100 || st.Fetched > int64(len(msgs)-killedAt)+100 {
		t.Fatalf("the resumed import read again what was settled: %+v", st)
	}
	if st2 := j.poll(); st2.Fetched != 0 || st2.Delivered != 0 {
		t.Fatalf("a third poll of an unchanged file: %+v", st2)
	}
}

// Through the engine: a file rewritten (its first message expunged) and
// appended to delivers the new messages only.
func TestRewrittenFileDeliversNothingTwice(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.mbox")
	msgs := enginetest.Mix(20)
	writeMbox(t, src, msgs)
	j := newJob(t, dir, "")
	if st := j.poll(); st.Delivered != 20 {
		t.Fatalf("%+v", st)
	}
	os.Remove(src)
	writeMbox(t, src, msgs[1:])
	more := [][]byte{[]byte("Subject: new\n\nnew\n")}
	writeMbox(t, src, more)
	j.e.Close()
	j.open() // as a new process would
	st := j.poll()
	if st.Delivered != 1 {
		t.Fatalf("after the rewrite: %+v", st)
	}
	assertExactlyOnce(t, append(msgs, more...), j.delivered())
	if st := j.poll(); st.Delivered != 0 || st.Fetched != 0 {
		t.Fatalf("the poll after: %+v", st)
	}
}

// 10,000 messages listed and fetched with the heap bounded: the listing
// grows with the number of messages, never with their bytes.
func TestTenThousandMessagesInBoundedMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.mbox")
	f, _ := os.Create(path)
	w, _ := mbox.NewWriter(f, mbox.Mboxrd)
	const n = 10000
	body := strings.Repeat("From a line quoted in the file, and text around it to fill the line\n", 150) // ~10 KB
	for i := range n {
		w.WriteMessage(fmt.Sprintf("From a@x Sat Nov 21 10:00:%02d 2026", i%60), strings.NewReader(fmt.Sprintf("Message-ID: <%d@x>\nSubject: %d\n\n%s", i, i, body)))
	}
	w.Flush()
	f.Close()
	st, _ := os.Stat(path)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	in := newInput(t, path, nil)
	s, l := list(t, in)
	if len(l.Items) != n {
		t.Fatalf("%d items", len(l.Items))
	}
	var peak uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	sample()
	count := 0
	buf := make([]byte, 32<<10)
	err := s.Fetch(context.Background(), l.Items, func(it plugin.Item, r io.Reader, err error) error {
		if err != nil {
			return err
		}
		k, err := io.CopyBuffer(io.Discard, r, buf)
		if k != it.Size {
			return fmt.Errorf("%d bytes of %d", k, it.Size)
		}
		if count++; count%1000 == 0 {
			sample()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak) - int64(base.HeapInuse)
	t.Logf("%d messages, %.1f MB: heap in use grew by %.1f MB at most (%d B per message)", n, float64(st.Size())/1e6, float64(grew)/1e6, grew/n)
	// The listing is some 300 bytes a message; the file is 100 MB.
	if grew > 16<<20 {
		t.Fatalf("the heap grew by %d bytes for a %d-byte file", grew, st.Size())
	}
}

func TestInputConfig(t *testing.T) {
	for _, c := range []struct {
		in  *mbox.Input
		err string
	}{
		{&mbox.Input{}, "path is required"},
		{&mbox.Input{Path: "x", OnSettled: "delete"}, `on_settled must be "keep"`},
		{&mbox.Input{Path: "x", Variant: "mmdf"}, "variant must be"},
		{&mbox.Input{Path: "x", Labels: "all"}, "labels must be"},
		{&mbox.Input{Path: "x", LockTimeout: "1"}, "lock_timeout"},
	} {
		if err := c.in.Init(); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v, want %q", err, c.err)
		}
	}
	if err := (&mbox.Input{Path: "x", OnSettled: "keep"}).Init(); err != nil {
		t.Error(err)
	}
}

// An mboxcl2 file (bodies with unquoted From_ lines, after blank lines
// too) is listed by its Content-Lengths and fetched byte for byte.
func TestInputReadsMboxcl2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cl2.mbox")
	var file bytes.Buffer
	var want [][]byte
	for i := range 30 {
		body := fmt.Sprintf("text\r\n\r\nFrom me@example.org Sat Nov 21 10:00:00 2026\r\n>From quoted stays\r\n%s", strings.Repeat("x", i*3000))
		msg := fmt.Sprintf("Subject: %d\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
		fmt.Fprintf(&file, "From a@x Sat Nov 21 10:00:00 2026\r\n%s\r\n", msg)
		want = append(want, []byte(msg))
	}
	os.WriteFile(path, file.Bytes(), 0o600)
	s, l := list(t, newInput(t, path, nil))
	if len(l.Items) != len(want) {
		t.Fatalf("%d items, want %d", len(l.Items), len(want))
	}
	for i, b := range fetchAll(t, s, l.Items) {
		if !bytes.Equal(b, want[i]) {
			t.Fatalf("message %d: %q", i, trunc(string(b)))
		}
	}
}
