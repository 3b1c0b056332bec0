package mbox_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// specials are messages that put the quoting to the test.
func specials() [][]byte {
	return [][]byte{
		[]byte("Subject: from lines\n\nFrom the start of a line\n>From one\n>>From two\n>>>From three\n\nFrom me@x Sat Nov 21 10:00:00 2026\n>From\n>From_\nFrom\n"),
		[]byte("From a header-less first line\nand more\n"),
		nil, // empty
		[]byte("\n\n\n"),
		[]byte("Subject: blank lines at the end\n\nbody\n\n\n"),
		[]byte("Subject: no line end at the end\n\nlast line"),
		[]byte("Subject: x\n\n" + strings.Repeat("y", 100<<10) + "\n>From after a long line\n"),
	}
}

func lf(msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))
	}
	return out
}

// crlfKeep gives msgs CRLF line ends, keeping a last line without one so.
func crlfKeep(msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range lf(msgs) {
		out[i] = bytes.ReplaceAll(m, []byte("\n"), []byte("\r\n"))
	}
	return out
}

func newOutput(t testing.TB, path string, set func(*mbox.Output)) *mbox.Output {
	t.Helper()
	o := &mbox.Output{Path: path}
	if set != nil {
		set(o)
	}
	if err := o.Provision(plugin.Env{BaseDir: "/"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o
}

func deliver(t testing.TB, o *mbox.Output, msgs [][]byte) {
	t.Helper()
	for i, b := range msgs {
		msg := message.New(b, message.Source{Input: "in", ID: strconv.Itoa(i)})
		msg.InternalDate = time.Date(2026, 11, 21, 10, 0, i%60, 0, time.UTC)
		if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{Key: strconv.Itoa(i)}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

func readFile(t *testing.T, path string, v mbox.Variant) []got {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, f, v)
}

// hasQuotable reports whether m has a line of >+"From ", which mboxo
// cannot give back.
func hasQuotable(m []byte) bool {
	return regexp.MustCompile(`(?m)^>+From `).Match(m)
}

// What the output writes, the Reader gives back byte for byte, for LF and
// CRLF mail alike: with mboxrd every message (a last line without a line
// end comes back with one), with mboxo every message without a line of
// ">From " (which mboxo gives back as "From ").
func TestOutputThenInputRoundTrips(t *testing.T) {
	for _, ends := range []string{"LF", "CRLF"} {
		msgs := append(enginetest.Mix(40), specials()...)
		if ends == "LF" {
			msgs = lf(msgs)
		} else {
			msgs = crlfKeep(msgs)
		}
		for _, v := range []mbox.Variant{mbox.Mboxrd, mbox.Mboxo} {
			t.Run(ends+"/"+v.String(), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "out.mbox")
				o := newOutput(t, path, func(o *mbox.Output) { o.Variant = v.String() })
				deliver(t, o, msgs)
				for _, read := range []mbox.Variant{v, mbox.Auto} {
					if v == mbox.Mboxo && read == mbox.Auto {
						continue
					}
					g := readFile(t, path, read)
					if len(g) != len(msgs) {
						t.Fatalf("read %d messages, wrote %d", len(g), len(msgs))
					}
					for i, m := range msgs {
						same := g[i].body == string(withLineEnd(m))
						if v == mbox.Mboxo && hasQuotable(m) {
							if same {
								t.Fatalf("message %d: mboxo cannot give a >From line back, yet it did", i)
							}
							continue
						}
						if !same {
							t.Fatalf("message %d (%d bytes) did not round-trip:\n%q\n%q", i, len(m), trunc(g[i].body), trunc(string(m)))
						}
						if want := fmt.Sprintf("From sender%d@example.org Sat Nov 21 10:00:%02d 2026", i%17, i%60); i < 40 && i%8 != 7 && g[i].from != want {
							t.Fatalf("message %d: From_ line %q, want %q", i, g[i].from, want)
						}
					}
				}
			})
		}
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// quoteRD is m as mboxrd writes it into the file.
func quoteRD(m []byte) []byte {
	return regexp.MustCompile(`(?m)^(>*From )`).ReplaceAll(withLineEnd(m), []byte(">$1"))
}

// An mbox the output wrote is read by Python's mailbox module (which
// does not unquote: it sees the quoted lines) message for message, with
// the From_ lines the output wrote, LF and CRLF mail alike.
func TestPythonReadsWhatTheOutputWrote(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the mbox is not checked with Python's mailbox module")
	}
	for _, ends := range []string{"LF", "CRLF"} {
		t.Run(ends, func(t *testing.T) {
			msgs := append(enginetest.Mix(24), specials()...)
			if ends == "LF" {
				msgs = lf(msgs)
			} else {
				msgs = crlfKeep(msgs)
			}
			path := filepath.Join(t.TempDir(), "out.mbox")
			deliver(t, newOutput(t, path, nil), msgs)
			script := `
import hashlib, json, mailbox, sys
out = []
for key in mailbox.mbox(sys.argv[1], create=False).iterkeys():
    box = mailbox.mbox(sys.argv[1], create=False)
    out.append(["From " + box.get_message(key).get_from(), hashlib.sha256(box.get_bytes(key)).hexdigest()])
print(json.dumps(out))
`
			cmd := exec.Command(python, "-c", script, path)
			b, err := cmd.Output()
			if err != nil {
				t.Fatalf("python: %v", err)
			}
			var py [][2]string
			if err := json.Unmarshal(b, &py); err != nil {
				t.Fatal(err)
			}
			ours := readFile(t, path, mbox.Auto)
			if len(py) != len(msgs) || len(ours) != len(msgs) {
				t.Fatalf("python read %d messages, we %d, of %d written", len(py), len(ours), len(msgs))
			}
			for i, m := range msgs {
				sum := sha256.Sum256(quoteRD(m))
				if py[i][1] != hex.EncodeToString(sum[:]) {
					t.Errorf("message %d: python read other bytes", i)
				}
				if py[i][0] != ours[i].from {
					t.Errorf("message %d: python's From_ line %q, ours %q", i, py[i][0], ours[i].from)
				}
			}
		})
	}
}

// formail (procmail) splits what the output wrote into the same messages,
// each with its From_ line. formail takes a From_ line for one only when a
// header follows it, so the messages here all have one. (mutt would be the
// third reader, but it is not installed here, and it reads a mailbox only
// in a terminal.)
func TestFormailReadsWhatTheOutputWrote(t *testing.T) {
	var msgs [][]byte
	for _, m := range lf(append(enginetest.Mix(16), specials()...)) {
		if regexp.MustCompile(`^[A-Za-z-]+:`).Match(m) {
			msgs = append(msgs, m)
		}
	}
	path := filepath.Join(t.TempDir(), "out.mbox")
	deliver(t, newOutput(t, path, nil), msgs)
	ours := readFile(t, path, mbox.Auto)
	formail, err := exec.LookPath("formail")
	if err != nil {
		t.Skip("formail is not installed (apt-get install procmail): the mbox is not split with it")
	}
	dir := t.TempDir()
	in, _ := os.Open(path)
	defer in.Close()
	cmd := exec.Command(formail, "-s", "sh", "-c", `cat > "$0/msg.$FILENO"`, dir)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("formail: %v %s", err, out)
	}
	for i, m := range msgs {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("msg.%03d", i)))
		if err != nil {
			t.Fatalf("formail made no message %d: %v", i, err)
		}
		want := ours[i].from + "\n" + string(quoteRD(m))
		if string(b) != want && string(b) != want+"\n" {
			t.Fatalf("message %d: formail split off\n%q\nwant\n%q", i, trunc(string(b)), trunc(want))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("msg.%03d", len(msgs)))); err == nil {
		t.Fatal("formail found more messages than were written")
	}
}

// Goroutines delivering at once write one message after the other, never
// into each other.
func TestConcurrentDeliveriesDoNotInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.mbox")
	o := newOutput(t, path, nil)
	const workers, each = 8, 25
	var all [][]byte
	var wg sync.WaitGroup
	for w := range workers {
		var msgs [][]byte
		for i := range each {
			msgs = append(msgs, bigMessage(w*1000+i))
		}
		all = append(all, msgs...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			deliver(t, o, msgs)
		}()
	}
	wg.Wait()
	assertHolds(t, path, all)
}

// bigMessage is a message larger than the Writer's buffer, so that it
// takes several writes: another writer could land between them.
func bigMessage(n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Subject: message %d\nMessage-ID: <%d@test>\n\n", n, n)
	for b.Len() < 150<<10 {
		fmt.Fprintf(&b, "From line %d of message %d, quoted in the file\n", b.Len(), n)
	}
	return b.Bytes()
}

// assertHolds checks that the mbox at path holds want, each once, in any
// order.
func assertHolds(t *testing.T, path string, want [][]byte) {
	t.Helper()
	g := readFile(t, path, mbox.Auto)
	var have [][]byte
	for _, m := range g {
		have = append(have, []byte(m.body))
	}
	var ended [][]byte
	for _, m := range want {
		ended = append(ended, withLineEnd(m))
	}
	w, h := enginetest.Count(ended), enginetest.Count(have)
	for d, n := range w {
		if h[d] != n {
			t.Fatalf("a message is there %d times, want %d (%d messages read, %d written)", h[d], n, len(have), len(want))
		}
	}
	if len(have) != len(want) {
		t.Fatalf("%d messages read, %d written", len(have), len(want))
	}
}

// helperEnv runs this test binary as a helper process: an appender that
// delivers messages with its own Output, or a holder of an fcntl lock.
const helperEnv = "MBOX_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "append":
		os.Exit(helperAppend())
	case "hold":
		os.Exit(helperHold())
	case "import":
		os.Exit(helperImport())
	}
	os.Exit(2)
}

func helperAppend() int {
	path := os.Getenv("MBOX_PATH")
	id, _ := strconv.Atoi(os.Getenv("MBOX_ID"))
	n, _ := strconv.Atoi(os.Getenv("MBOX_N"))
	o := &mbox.Output{Path: path}
	o.Provision(plugin.Env{BaseDir: "/"})
	if err := o.Init(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		msg := message.New(bigMessage(id*1000+i), message.Source{})
		if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// helperHold takes an fcntl write lock on MBOX_PATH, says so on stdout,
// and holds it for MBOX_HOLD.
func helperHold() int {
	f, err := os.OpenFile(os.Getenv("MBOX_PATH"), os.O_RDWR, 0)
	if err != nil {
		return 1
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
		return 1
	}
	fmt.Println("locked")
	d, _ := time.ParseDuration(os.Getenv("MBOX_HOLD"))
	time.Sleep(d)
	return 0
}

func helper(t *testing.T, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// Three processes appending to one file at once, each with its own
// Output: the fcntl and dot-file locks keep their messages apart.
func TestProcessesAppendingAtOnceDoNotInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	os.WriteFile(path, nil, 0o600)
	const procs, each = 3, 20
	var cmds []*exec.Cmd
	var want [][]byte
	for p := range procs {
		cmd := helper(t, "append", "MBOX_PATH="+path, fmt.Sprintf("MBOX_ID=%d", p), fmt.Sprintf("MBOX_N=%d", each))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		for i := range each {
			want = append(want, bigMessage(p*1000+i))
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	assertHolds(t, path, want)
	if _, err := os.Stat(path + ".lock"); err == nil {
		t.Fatal("the dot-file lock was left behind")
	}
}

// A delivery waits for another program's fcntl lock, up to lock_timeout.
func TestDeliveryWaitsForAnotherProgramsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	o := newOutput(t, path, func(o *mbox.Output) { o.LockTimeout = "300ms" })
	hold := helper(t, "hold", "MBOX_PATH="+path, "MBOX_HOLD=1500ms")
	out, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Wait()
	line := make([]byte, 7)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "locked\n" {
		t.Fatalf("the holder did not lock: %q %v", line, err)
	}
	msg := message.New([]byte("Subject: x\n\nx\n"), message.Source{})
	_, err := o.Deliver(context.Background(), msg, plugin.Delivery{})
	var le *mbox.LockError
	if !errors.As(err, &le) || le.Kind != "fcntl" || plugin.IsPermanent(err) {
		t.Fatalf("want a temporary fcntl LockError, got %v", err)
	}
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Fatal("written without the lock")
	}
	patient := newOutput(t, path, func(o *mbox.Output) { o.LockTimeout = "20s" })
	start := time.Now()
	if _, err := patient.Deliver(context.Background(), msg, plugin.Delivery{}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatal("delivered while the other program held its lock")
	}
	assertHolds(t, path, [][]byte{[]byte("Subject: x\n\nx\n")})
}

// A fresh dot-file lock is waited for; one older than stale_lock is
// removed; the delivery's own is removed after it.
func TestDotlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	o := newOutput(t, path, func(o *mbox.Output) { o.LockTimeout = "200ms"; o.StaleLock = "1m" })
	lock := path + ".lock"
	os.WriteFile(lock, []byte("12345\n"), 0o644)
	msg := message.New([]byte("Subject: x\n\nx\n"), message.Source{})
	_, err := o.Deliver(context.Background(), msg, plugin.Delivery{})
	var le *mbox.LockError
	if !errors.As(err, &le) || le.Kind != "dotlock" {
		t.Fatalf("want a dotlock LockError, got %v", err)
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(lock, old, old)
	if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{}); err != nil {
		t.Fatalf("a stale lock must be removed: %v", err)
	}
	if _, err := os.Stat(lock); err == nil {
		t.Fatal("the dot-file lock was left behind")
	}
	off := newOutput(t, path, func(o *mbox.Output) { no := false; o.Dotlock = &no; o.LockTimeout = "200ms" })
	os.WriteFile(lock, nil, 0o644)
	if _, err := off.Deliver(context.Background(), msg, plugin.Delivery{}); err != nil {
		t.Fatalf("dotlock = false must not wait for a dot-file lock: %v", err)
	}
}

// failingWriter fails after n bytes.
type failingWriter struct {
	w io.Writer
	n int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, errors.New("disk full")
	}
	f.n -= len(p)
	return f.w.Write(p)
}

// A write that fails part-way is taken back: the file ends where it
// ended, and is a valid mbox the next delivery appends to.
func TestFailedWriteIsTruncatedBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.mbox")
	o := newOutput(t, path, nil)
	first := bigMessage(1)
	deliver(t, o, [][]byte{first})
	before, _ := os.Stat(path)
	mbox.SetWrap(o, func(w io.Writer) io.Writer { return &failingWriter{w: w, n: 100 << 10} })
	msg := message.New(bigMessage(2), message.Source{})
	if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{}); err == nil {
		t.Fatal("the failed write was reported accepted")
	}
	if after, _ := os.Stat(path); after.Size() != before.Size() {
		t.Fatalf("the file is %d bytes after the failure, %d before", after.Size(), before.Size())
	}
	mbox.SetWrap(o, nil)
	third := bigMessage(3)
	deliver(t, o, [][]byte{third})
	assertHolds(t, path, [][]byte{first, third})
}

// After a hard stop in the middle of a delivery (Delivery.InDoubt), a
// message already at the end of the file is not written again; one that
// is not there is.
func TestInDoubtDeliveryIsNotWrittenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.mbox")
	o := newOutput(t, path, nil)
	msgs := lf(append(enginetest.Mix(5), specials()...))
	deliver(t, o, msgs)
	for _, b := range msgs {
		msg := message.New(b, message.Source{})
		if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{InDoubt: true}); err != nil {
			t.Fatal(err)
		}
	}
	assertHolds(t, path, msgs)
	extra := []byte("Subject: not written before\n\nx\n")
	if _, err := o.Deliver(context.Background(), message.New(extra, message.Source{}), plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, path, append(msgs, extra))
}

// A file another writer left without a blank line at its end (or without
// a line end at all) gets one before the next From_ line, so that its last
// message stays as it was.
func TestAppendAfterAnotherWriter(t *testing.T) {
	for tail, last := range map[string]string{
		"last line\n":   "last line\n",
		"last line":     "last line\n", // cut short: it gains the line end it lacked
		"last line\n\n": "last line\n",
		"last line\r\n": "last line\r\n",
	} {
		path := filepath.Join(t.TempDir(), "spool")
		os.WriteFile(path, []byte("From a@x Sat Nov 21 10:00:00 2026\nSubject: a\n\n"+tail), 0o600)
		deliver(t, newOutput(t, path, nil), [][]byte{[]byte("Subject: b\n\nb\n")})
		g := readFile(t, path, mbox.Auto)
		if len(g) != 2 || g[0].body != "Subject: a\n\n"+last || g[1].body != "Subject: b\n\nb\n" {
			t.Fatalf("after %q: %q", tail, bodies(g))
		}
	}
}

func TestOutputConfig(t *testing.T) {
	for _, c := range []struct {
		o   *mbox.Output
		err string
	}{
		{&mbox.Output{}, "path is required"},
		{&mbox.Output{Path: "x", Variant: "mboxcl2"}, "cannot be written"},
		{&mbox.Output{Path: "x", Variant: "nope"}, "variant must be"},
		{&mbox.Output{Path: "x", LockTimeout: "soon"}, "lock_timeout"},
		{&mbox.Output{Path: "x", StaleLock: "-1s"}, "stale_lock"},
	} {
		if err := c.o.Init(); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v, want %q", err, c.err)
		}
	}
	dir := t.TempDir()
	no := false
	o := &mbox.Output{Path: "missing.mbox", Create: &no}
	o.Provision(plugin.Env{BaseDir: dir})
	o.Init()
	if err := o.Start(context.Background()); err == nil {
		t.Fatal("create = false must not create the file")
	}
}

// A spool a mail reader removed once it was empty is made again; with
// create = false the delivery fails and is tried again later.
func TestRemovedFileIsMadeAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool")
	o := newOutput(t, path, nil)
	os.Remove(path)
	deliver(t, o, [][]byte{[]byte("Subject: a\n\na\n")})
	assertHolds(t, path, [][]byte{[]byte("Subject: a\n\na\n")})
	no := false
	strict := newOutput(t, path, func(o *mbox.Output) { o.Create = &no })
	os.Remove(path)
	_, err := strict.Deliver(context.Background(), message.New([]byte("Subject: b\n\nb\n"), message.Source{}), plugin.Delivery{})
	if err == nil || plugin.IsPermanent(err) {
		t.Fatalf("want a temporary error, got %v", err)
	}
}
