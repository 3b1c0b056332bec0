package pop3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/config"

	"github.com/mailflow/mailflow/engine/plugin"

	_ "github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/connectors/pop3"
	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/plugins"
)

// crlfMix is test mail as a POP3 server holds it: CRLF line ends, ending
// with CRLF (POP3 cannot carry anything else).
func crlfMix(n int) [][]byte { return enginetest.CRLF(enginetest.Mix(n)) }

type job struct {
	t      *testing.T
	dir    string
	engine *engine.Engine
}

// newJob runs a POP3 → Maildir job against addr, with extra input options.
// Unless own is set, it logs in as the fake server's user over clear text.
func newJob(t *testing.T, addr, extra string, own ...bool) *job {
	t.Helper()
	dir := t.TempDir()
	if len(own) == 0 {
		extra = "tls = \"none\"\nallow_plaintext_auth = true\nusername = \"u\"\npassword = \"p\"\n" + extra
	}
	conf := fmt.Sprintf(`state_dir = "state"
[[input]]
name = "pop"
type = "pop3"
address = %q
timeout = "10s"
pipeline = "main"
%s
[[pipeline]]
name = "main"
outputs = ["out"]
[[output]]
name = "out"
type = "maildir"
path = "out"
`, addr, extra)
	path := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	j := &job{t: t, dir: dir}
	j.open()
	return j
}

func (j *job) open() {
	cfg, err := config.Load(filepath.Join(j.dir, "mailflow.toml"), plugins.Default)
	if err != nil {
		j.t.Fatal(err)
	}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		j.t.Fatal(err)
	}
	j.engine = e
	j.t.Cleanup(func() { e.Close() })
}

// restart simulates a new mailflow process on the same state.
func (j *job) restart() {
	j.engine.Close()
	j.open()
}

func (j *job) poll() (engine.Stats, error) {
	return j.engine.PollOnce(context.Background(), "pop")
}

func (j *job) delivered() [][]byte {
	got, err := enginetest.ReadMaildir(filepath.Join(j.dir, "out"))
	if err != nil {
		j.t.Fatal(err)
	}
	return got
}

// assertExactlyOnce checks that out holds each of want once, byte for byte.
func assertExactlyOnce(t *testing.T, want, got [][]byte) {
	t.Helper()
	w, g := enginetest.Count(want), enginetest.Count(got)
	for d, n := range w {
		if g[d] != n {
			t.Errorf("message %s…: want %d, have %d", d[:10], n, g[d])
		}
	}
	if len(got) != len(want) {
		t.Errorf("want %d messages, have %d", len(want), len(got))
	}
}

func newServer(t *testing.T, msgs [][]byte) *pop3test.Server {
	t.Helper()
	s, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Add(msgs...)
	return s
}

func TestFetchesEverythingByteIdenticalAndDeletes(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			msgs := crlfMix(40)
			srv := newServer(t, msgs)
			srv.Set(func(b *pop3test.Behaviour) { b.NoPipelining = !pipelining })
			j := newJob(t, srv.Addr(), "")
			st, err := j.poll()
			if err != nil || st.Delivered != 40 {
				t.Fatalf("%v %v", st, err)
			}
			assertExactlyOnce(t, msgs, j.delivered())
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("%d messages left on the server", n)
			}
			// With PIPELINING several RETRs go out before the first reply
			// is read; without it, every command waits for its reply.
			if p := srv.Pipelined(); pipelining != (p > 0) {
				t.Fatalf("pipelining=%v but %d commands arrived pipelined", pipelining, p)
			}
		})
	}
}

func TestRepliesSplitIntoSingleBytes(t *testing.T) {
	msgs := crlfMix(10)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.OneByteWrites = true })
	j := newJob(t, srv.Addr(), "")
	if st, err := j.poll(); err != nil || st.Delivered != 10 {
		t.Fatalf("%v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
}

// dropAt drops the connection once, at the given point.
func dropAt(cmd string, arg int, after bool) func(string, int, bool) bool {
	done := false
	return func(c string, a int, af bool) bool {
		if !done && c == cmd && (arg == 0 || a == arg) && af == after {
			done = true
			return true
		}
		return false
	}
}

func TestDroppedConnectionsLoseAndDuplicateNothing(t *testing.T) {
	cases := []struct {
		name  string
		drop  func(string, int, bool) bool
		first int // messages delivered by the first, broken poll (at least)
	}{
		{"after RETR 5", dropAt("RETR", 5, true), 1},
		{"after DELE 3", dropAt("DELE", 3, true), 12},
		{"before QUIT", dropAt("QUIT", 0, false), 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := crlfMix(12)
			srv := newServer(t, msgs)
			srv.Set(func(b *pop3test.Behaviour) { b.Drop = c.drop })
			j := newJob(t, srv.Addr(), "pipeline_window = 2")
			st, err := j.poll()
			if err == nil {
				t.Fatalf("a dropped connection must fail the poll: %v", st)
			}
			if len(srv.Messages()) != 12 {
				t.Fatalf("a session without QUIT must delete nothing; server has %d", len(srv.Messages()))
			}
			if st.Delivered < int64(c.first) {
				t.Fatalf("first poll delivered %d", st.Delivered)
			}
			j.restart() // as a new process would
			st2, err := j.poll()
			if err != nil {
				t.Fatal(err)
			}
			if st.Delivered+st2.Delivered != 12 {
				t.Fatalf("delivered %d then %d", st.Delivered, st2.Delivered)
			}
			assertExactlyOnce(t, msgs, j.delivered())
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("%d messages left on the server", n)
			}
		})
	}
}

func TestInUseIsTemporaryAndLosesNothing(t *testing.T) {
	msgs := crlfMix(3)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.InUse = true })
	j := newJob(t, srv.Addr(), "")
	_, err := j.poll()
	if err == nil || !strings.Contains(err.Error(), "[IN-USE]") || plugin.IsPermanent(err) {
		t.Fatalf("want a temporary [IN-USE] error, got %v", err)
	}
	srv.Set(func(b *pop3test.Behaviour) { b.InUse = false })
	if st, err := j.poll(); err != nil || st.Delivered != 3 {
		t.Fatalf("%v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
}

func TestRetrErrorLeavesThatMessage(t *testing.T) {
	msgs := crlfMix(4)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.RetrErr = map[int]string{2: "[SYS/TEMP] cannot read message"} })
	j := newJob(t, srv.Addr(), "")
	if st, err := j.poll(); err != nil || st.Delivered != 3 {
		t.Fatalf("%v %v", st, err)
	}
	if left := srv.Messages(); len(left) != 1 || !bytes.Equal(left[0], msgs[1]) {
		t.Fatalf("message 2 must stay on the server")
	}
	srv.Set(func(b *pop3test.Behaviour) { b.RetrErr = nil })
	if st, err := j.poll(); err != nil || st.Delivered != 1 {
		t.Fatalf("%v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
}

func TestOversizedMessagesStayOnTheServer(t *testing.T) {
	msgs := crlfMix(4)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.ListSize = map[int]int64{3: 2 << 30} }) // "2 GB"
	j := newJob(t, srv.Addr(), "max_message_size = 1000000")
	st, err := j.poll()
	if err != nil || st.Delivered != 3 {
		t.Fatalf("%v %v", st, err)
	}
	for _, l := range srv.Log() {
		if l == "RETR 3" {
			t.Fatal("a message announced over the limit must not be fetched")
		}
	}
	if left := srv.Messages(); len(left) != 1 || !bytes.Equal(left[0], msgs[2]) {
		t.Fatal("the oversized message must stay on the server")
	}
}

func TestServerLyingAboutSizeLeavesThatMessage(t *testing.T) {
	msgs := crlfMix(3)
	msgs[1] = enginetest.Message(enginetest.Huge, 1, 300_000)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.ListSize = map[int]int64{2: 100} }) // says 100 bytes, sends 300 KB
	j := newJob(t, srv.Addr(), "max_message_size = 200000\npipelining = false")
	st, err := j.poll()
	if err != nil || st.Delivered != 2 {
		t.Fatalf("the other messages must go through: %v %v", st, err)
	}
	if left := srv.Messages(); len(left) != 1 || !bytes.Equal(left[0], msgs[1]) {
		t.Fatal("the message over the bound must stay on the server, and only it")
	}
	assertExactlyOnce(t, [][]byte{msgs[0], msgs[2]}, j.delivered())
}

func TestNoUIDLKeepModeDeliversEachOnceByContent(t *testing.T) {
	msgs := crlfMix(5)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.NoUIDL = true })
	j := newJob(t, srv.Addr(), `on_settled = "keep"`)
	if st, err := j.poll(); err != nil || st.Delivered != 5 {
		t.Fatalf("%v %v", st, err)
	}
	if len(srv.Messages()) != 5 {
		t.Fatal("keep mode deleted messages")
	}
	// Without UIDL the ids are only hints: every poll fetches, and the
	// content (digest) says each one was delivered already.
	for range 2 {
		st, err := j.poll()
		if err != nil || st.Delivered != 0 || st.Skipped != 5 {
			t.Fatalf("later poll in keep mode: %v %v", st, err)
		}
	}
	assertExactlyOnce(t, msgs, j.delivered())
	for _, l := range srv.Log() {
		if strings.HasPrefix(l, "DELE") {
			t.Fatal("keep mode sent DELE")
		}
	}
}

// sameHeaders are three messages whose headers are byte-identical and
// whose bodies differ (in length too): without UIDL, a header hash alone
// named all three the same.
func sameHeaders() [][]byte {
	h := "From: a@example.org\r\nTo: b@example.org\r\nSubject: same\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n"
	return [][]byte{[]byte(h + "first body\r\n"), []byte(h + "the second body\r\n"), []byte(h + "and the third, longest body\r\n")}
}

func TestNoUIDLIdenticalHeadersDroppedMidRetrLoseNothing(t *testing.T) {
	for _, sameSize := range []bool{false, true} {
		t.Run(fmt.Sprintf("same size=%v", sameSize), func(t *testing.T) {
			msgs := sameHeaders()
			if sameSize {
				for i := range msgs {
					msgs[i] = append(bytes.TrimSuffix(msgs[i], []byte("\r\n")), bytes.Repeat([]byte("x"), 160-len(msgs[i]))...)
					msgs[i] = append(msgs[i], "\r\n"...)
				}
			}
			srv := newServer(t, msgs)
			srv.Set(func(b *pop3test.Behaviour) { b.NoUIDL = true; b.Drop = dropAt("RETR", 3, false) })
			j := newJob(t, srv.Addr(), "pipelining = false")
			if _, err := j.poll(); err == nil {
				t.Fatal("a session dropped during RETR must fail the poll")
			}
			if len(srv.Messages()) != 3 {
				t.Fatal("nothing may be deleted by a session that never QUIT")
			}
			for range 2 {
				j.restart()
				if _, err := j.poll(); err != nil {
					t.Fatal(err)
				}
			}
			assertExactlyOnce(t, msgs, j.delivered())
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("%d left on the server", n)
			}
		})
	}
}

func TestUIDLRefusedOnceInKeepModeRefetchesNothing(t *testing.T) {
	msgs := crlfMix(5)
	srv := newServer(t, msgs)
	j := newJob(t, srv.Addr(), `on_settled = "keep"`)
	if st, err := j.poll(); err != nil || st.Delivered != 5 {
		t.Fatalf("%v %v", st, err)
	}
	srv.Set(func(b *pop3test.Behaviour) { b.UIDLErrOnce = true })
	st, err := j.poll()
	if err == nil || st.Fetched != 0 {
		t.Fatalf("a UIDL refused by a server that lists it must stop the poll before fetching: %v %v", st, err)
	}
	if st, err := j.poll(); err != nil || st.Fetched != 0 || st.Delivered != 0 {
		t.Fatalf("poll after the hiccup: %v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
}

func TestReusedUIDLIsReadBeforeDeleting(t *testing.T) {
	msgs := crlfMix(3)
	srv := newServer(t, msgs)
	// The first session's QUIT is lost: everything stays on the server.
	srv.Set(func(b *pop3test.Behaviour) { b.Drop = dropAt("QUIT", 0, false) })
	j := newJob(t, srv.Addr(), "")
	if st, _ := j.poll(); st.Delivered != 3 {
		t.Fatalf("first poll: %v", st)
	}
	// The server now gives the first UIDL to other bytes of the same size.
	other := bytes.Replace(msgs[0], []byte("Subject: "), []byte("Subject! "), 1)
	if len(other) != len(msgs[0]) || bytes.Equal(other, msgs[0]) {
		t.Fatal("test message has no Subject")
	}
	srv.Replace(0, other)
	if st, err := j.poll(); err != nil || st.Delivered != 1 || st.Skipped != 2 {
		t.Fatalf("second poll: %v %v", st, err)
	}
	assertExactlyOnce(t, append(msgs, other), j.delivered())
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d left on the server", n)
	}
}

// settleOdd polls until the messages a server cannot send right are held
// (fetch_attempts, 3, polls at most) and then twice more, and checks that
// each was held once (first is the first poll's stats), that the source
// keeps them all, and that they are not fetched again once held.
func settleOdd(t *testing.T, j *job, srv *pop3test.Server, first engine.Stats, odd [][]byte) {
	t.Helper()
	held := first.Held
	for poll := 2; poll <= 5; poll++ {
		st, err := j.poll()
		if err != nil {
			t.Fatalf("poll %d: %v", poll, err)
		}
		held += st.Held
		if poll > 3 && st.Fetched != 0 {
			t.Fatalf("poll %d fetched %d: a held message is fetched again", poll, st.Fetched)
		}
	}
	entries, _ := j.engine.Quarantine.List()
	if held != int64(len(odd)) || len(entries) != len(odd) {
		t.Fatalf("held %d times, quarantine %d; want each of %d held once", held, len(entries), len(odd))
	}
	for _, e := range entries {
		if !e.Held || !strings.Contains(e.Reason, "the source keeps the message") {
			t.Fatalf("quarantine: %+v", e)
		}
	}
	left := srv.Messages()
	if len(left) != len(odd) {
		t.Fatalf("the server holds %d messages, want the %d it cannot send right", len(left), len(odd))
	}
	for i := range odd {
		if !bytes.Equal(left[i], odd[i]) {
			t.Fatalf("the server lost %q", odd[i])
		}
	}
}

// Dovecot 2.3 does not byte-stuff a message's first line, and sends an
// empty message (LIST: 0 bytes) as one empty line. In a mailbox of 200, a
// first line "." or ".x" is read as the message has it and delivered; the
// message whose first line starts with ".." (one dot is lost, whatever the
// reading) and the empty one are never delivered short and are held, each
// once; and every other message is delivered in the first poll.
func TestDovecotLeadingDotsAndEmptyMessageHoldUpNothing(t *testing.T) {
	msgs := crlfMix(200)
	msgs[40] = []byte{}
	msgs[100] = []byte(".\r\nSubject: a lone dot first\r\n\r\nbody\r\n")
	msgs[120] = []byte(".hidden: x\r\nSubject: a dot first\r\n\r\nbody\r\n")
	msgs[150] = []byte("..two: dots\r\nSubject: two dots first\r\n\r\nbody\r\n")
	odd := [][]byte{msgs[40], msgs[150]}
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.FirstLineUnstuffed, b.EmptyAsBlankLine = true, true })
	j := newJob(t, srv.Addr(), "")
	st, err := j.poll()
	if err != nil || st.Delivered != 198 || st.Held != 2 || st.Deferred != 0 {
		t.Fatalf("first poll: %+v %v; want 198 delivered, 2 held at once (their readers say why)", st, err)
	}
	var good [][]byte
	for i, m := range msgs {
		if i != 40 && i != 150 {
			good = append(good, m)
		}
	}
	assertExactlyOnce(t, good, j.delivered())
	// The reply of the ".." message ended before its listed size: the
	// rest came in a second session, not in the first one out of step.
	if n := srv.Sessions(); n != 2 {
		t.Fatalf("%d sessions in the first poll, want 2", n)
	}
	settleOdd(t, j, srv, st, odd)
	assertExactlyOnce(t, good, j.delivered())
}

// A server that stuffs no line at all: a "." line in a message's middle
// ends its reply early, and the rest of the message comes where the next
// reply should. That message is never delivered short and is held; the
// session goes on in a new one and delivers the others in the first poll;
// lines the reader can read whole (a first "." line, a ".x" line) are.
func TestUnstuffedDotLinesHoldUpNothing(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			mix := withoutDotLines(crlfMix(10))[:4]
			broken := []byte("Subject: a dot line inside\r\n\r\nabove\r\n.\r\nbelow\r\n")
			msgs := [][]byte{mix[0], broken, mix[1], []byte(".\r\n"), mix[2], []byte(".hidden: x\r\n\r\nbody\r\n.also: here\r\n"), mix[3]}
			srv := newServer(t, msgs)
			srv.Set(func(b *pop3test.Behaviour) { b.NoDotStuff, b.NoPipelining = true, !pipelining })
			j := newJob(t, srv.Addr(), "")
			st, err := j.poll()
			if err != nil || st.Delivered != 6 || st.Deferred+st.Held != 1 {
				t.Fatalf("first poll: %+v %v", st, err)
			}
			good := append(msgs[:1:1], msgs[2:]...)
			assertExactlyOnce(t, good, j.delivered())
			settleOdd(t, j, srv, st, [][]byte{broken})
			for _, got := range j.delivered() {
				if bytes.HasPrefix(got, []byte("Subject: a dot line inside")) {
					t.Fatalf("a short copy was delivered: %q", got)
				}
			}
		})
	}
}

// withoutDotLines are the messages of msgs that have no line starting
// with a dot: whole, even from a server that stuffs none.
func withoutDotLines(msgs [][]byte) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if m[0] != '.' && !bytes.Contains(m, []byte("\n.")) {
			out = append(out, m)
		}
	}
	return out
}

// A poll starts at most maxRestarts (5) new sessions; past that it ends,
// and the next polls go on where the held messages let them: in the end
// every other message is delivered once and every broken one is held.
func TestRestartsPerPollAreBounded(t *testing.T) {
	var msgs, good, broken [][]byte
	for i, m := range withoutDotLines(crlfMix(30))[:20] {
		if i%3 == 1 && len(broken) < 7 {
			m = fmt.Appendf(nil, "Subject: broken %d\r\n\r\nabove\r\n.\r\nbelow\r\n", i)
			broken = append(broken, m)
		} else {
			good = append(good, m)
		}
		msgs = append(msgs, m)
	}
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.NoDotStuff = true })
	j := newJob(t, srv.Addr(), "")
	if _, err := j.poll(); err == nil || srv.Sessions() != 6 {
		t.Fatalf("first poll: %v after %d sessions; want it to end after 6", err, srv.Sessions())
	}
	var err error
	for poll := 2; poll <= 12; poll++ {
		var st engine.Stats
		if st, err = j.poll(); err == nil && st.Fetched == 0 {
			break
		}
	}
	if err != nil {
		t.Fatalf("still failing after 12 polls: %v", err)
	}
	assertExactlyOnce(t, good, j.delivered())
	if left := srv.Messages(); len(left) != len(broken) {
		t.Fatalf("the server holds %d, want the %d broken", len(left), len(broken))
	}
	if entries, _ := j.engine.Quarantine.List(); len(entries) != len(broken) {
		t.Fatalf("%d held, want %d", len(entries), len(broken))
	}
}

// After a reply that ended early, the session goes on in a new one, where
// message numbers are the new session's: another client deleted a message
// in between, so every later number is one less, and a message it deleted
// is reported gone. Each reader says, once read, whether its bytes are
// known not to be the message (Misread), for the engine to hold it at once.
func TestSessionGoesOnAfterAReplyEndsEarly(t *testing.T) {
	ctx := context.Background()
	msgs := crlfMix(7)
	msgs[2] = []byte("..two: dots\r\n\r\nbody\r\n")
	msgs[6] = []byte{}
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.FirstLineUnstuffed, b.EmptyAsBlankLine = true, true })
	in := &pop3.Input{}
	in.Address, in.TLS, in.AllowPlaintextAuth, in.Username, in.Password = srv.Addr(), "none", true, "u", "p"
	in.Provision(plugin.Env{Name: "pop", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	s, err := in.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close(ctx) // before the server's Close, which waits for the session to end
		}
	})
	l, err := s.List(ctx)
	if err != nil || len(l.Items) != 7 {
		t.Fatalf("listing %+v %v", l, err)
	}
	got := map[int][]byte{}
	misread := map[int]error{}
	fetchErr := map[int]error{}
	err = s.Fetch(ctx, l.Items, func(it plugin.Item, r io.Reader, err error) error {
		i := slices.IndexFunc(l.Items, func(x plugin.Item) bool { return x.ID == it.ID })
		if err != nil {
			fetchErr[i] = err
			return nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		got[i] = b
		misread[i] = r.(interface{ Misread() error }).Misread()
		if i == 2 {
			srv.Remove(4) // another client's session, before ours starts again
			srv.Remove(0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		switch i {
		case 2, 6:
			var me *pop3.MisreadError
			if !errors.As(misread[i], &me) || me.Listed != int64(len(m)) || bytes.Equal(got[i], m) {
				t.Errorf("message %d: read %q, misread %v; want it known misread", i, got[i], misread[i])
			}
		case 4:
			if fetchErr[i] == nil || !strings.Contains(fetchErr[i].Error(), "no longer on the server") {
				t.Errorf("message %d, deleted by another client: %v", i, fetchErr[i])
			}
		default:
			if !bytes.Equal(got[i], m) || misread[i] != nil {
				t.Errorf("message %d: read %q (misread %v), want %q", i, got[i], misread[i], m)
			}
		}
	}
	// Deleted under the new session's numbers.
	if failed, err := s.Commit(ctx, []plugin.Item{l.Items[1], l.Items[3], l.Items[4], l.Items[5]}); err != nil || len(failed) != 1 || failed[0].ID != l.Items[4].ID {
		t.Fatalf("commit: %v %v; want only the gone message back", failed, err)
	}
	closed = true
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := srv.Messages(); len(left) != 2 || !bytes.Equal(left[0], msgs[2]) || !bytes.Equal(left[1], msgs[6]) {
		t.Fatalf("the server holds %q", left)
	}
}

func TestDeleRefusedForOneCommitsTheRest(t *testing.T) {
	msgs := crlfMix(4)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.DeleErr = map[int]string{2: "[SYS/TEMP] cannot delete now"} })
	j := newJob(t, srv.Addr(), "")
	if st, err := j.poll(); err != nil || st.Delivered != 4 {
		t.Fatalf("%v %v", st, err)
	}
	if left := srv.Messages(); len(left) != 1 || !bytes.Equal(left[0], msgs[1]) {
		t.Fatalf("only message 2 must stay; %d left", len(left))
	}
	srv.Set(func(b *pop3test.Behaviour) { b.DeleErr = nil })
	if st, err := j.poll(); err != nil || st.Skipped != 1 || st.Delivered != 0 {
		t.Fatalf("%v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
	if len(srv.Messages()) != 0 {
		t.Fatal("message 2 not deleted on the next poll")
	}
}

func TestCleartextPasswordRefusedUnlessAllowed(t *testing.T) {
	srv := newServer(t, nil)
	dir := t.TempDir()
	conf := fmt.Sprintf("state_dir = \"s\"\n[[input]]\nname = \"pop\"\ntype = \"pop3\"\naddress = %q\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\npipeline = \"m\"\n[[pipeline]]\nname = \"m\"\noutputs = [\"o\"]\n[[output]]\nname = \"o\"\ntype = \"maildir\"\npath = \"o\"\n", srv.Addr())
	path := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	_, err = engine.Build(cfg, plugins.Default, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "allow_plaintext_auth") {
		t.Fatalf("want a refusal naming allow_plaintext_auth, got %v", err)
	}
}

// The default tls = "implicit" against a server that speaks in clear (port
// 110) fails with a hint, not a bare TLS error.
func TestImplicitTLSOnAPlainPortSaysWhatToSet(t *testing.T) {
	srv := newServer(t, crlfMix(1))
	j := newJob(t, srv.Addr(), "username = \"u\"\npassword = \"p\"\ntls_insecure_skip_verify = true\n", true)
	_, err := j.poll()
	if err == nil || !strings.Contains(err.Error(), `set tls = "starttls"`) {
		t.Fatalf("want a hint to set tls = \"starttls\", got %v", err)
	}
	if len(srv.Messages()) != 1 {
		t.Fatal("nothing may change on the server")
	}
}

// on_settled = "keep" and the key it replaces, delete = false, keep every
// message on the server; the old key says in the log what to write instead.
func TestOnSettledKeepAndTheOldDeleteKey(t *testing.T) {
	no := false
	cases := []struct {
		name string
		in   *pop3.Input
		warn string // a part of the log; "" for an empty log
	}{
		{"on_settled", &pop3.Input{OnSettled: "keep"}, ""},
		{"old key", &pop3.Input{Delete: &no}, `delete = false is deprecated; write on_settled = \"keep\" instead`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			srv := newServer(t, crlfMix(3))
			in := c.in
			in.Address, in.TLS, in.AllowPlaintextAuth, in.Username, in.Password = srv.Addr(), "none", true, "u", "p"
			var log bytes.Buffer
			if err := in.Provision(plugin.Env{Name: "pop", Logger: slog.New(slog.NewTextHandler(&log, nil))}); err != nil {
				t.Fatal(err)
			}
			if err := in.Init(); err != nil {
				t.Fatal(err)
			}
			if c.warn == "" && log.Len() > 0 || !strings.Contains(log.String(), c.warn) {
				t.Fatalf("log %q, want %q", log.String(), c.warn)
			}
			s, err := in.Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			l, err := s.List(ctx)
			if err != nil || !l.Keeps || len(l.Items) != 3 {
				t.Fatalf("listing %+v %v", l, err)
			}
			if failed, err := s.Commit(ctx, l.Items); err != nil || len(failed) != 0 {
				t.Fatalf("commit: %v %v", failed, err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(srv.Messages()); n != 3 {
				t.Fatalf("%d of 3 messages left on the server", n)
			}
		})
	}
	both := &pop3.Input{OnSettled: "keep", Delete: &no}
	both.Address, both.Username, both.Password = "pop.example.com:995", "u", "p"
	if err := both.Init(); err == nil || !strings.Contains(err.Error(), "on_settled") {
		t.Fatalf("on_settled and delete together: %v", err)
	}
	odd := &pop3.Input{OnSettled: "move:Archive"}
	odd.Address, odd.Username, odd.Password = "pop.example.com:995", "u", "p"
	if err := odd.Init(); err == nil || !strings.Contains(err.Error(), `on_settled must be "delete" or "keep"`) {
		t.Fatalf("on_settled = move: %v", err)
	}
}
