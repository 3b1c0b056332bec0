package pop3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

func TestUndottedLeadingDotIsNeverDeliveredShort(t *testing.T) {
	// Dovecot 2.3 sent these without doubling the leading dot: the first
	// is read as 0 bytes, the others one byte short.
	odd := [][]byte{[]byte(".\r\n"), []byte(".hidden: x\r\n\r\nbody\r\n")}
	msgs := append(crlfMix(3), odd...)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.NoDotStuff = true })
	j := newJob(t, srv.Addr(), "pipelining = false") // fetch_attempts: 3
	// The 0-byte read leaves the stream out of step, so each poll ends
	// there until that message is held; then the next one gets its tries.
	var held int64
	for range 6 {
		st, _ := j.poll()
		held += st.Held
	}
	for _, got := range j.delivered() {
		if bytes.HasPrefix(got, []byte("hidden")) || len(got) == 0 {
			t.Fatalf("a short copy was delivered: %q", got)
		}
	}
	assertExactlyOnce(t, msgs[:3], j.delivered())
	left := srv.Messages()
	if len(left) != 2 || !bytes.Equal(left[0], odd[0]) || !bytes.Equal(left[1], odd[1]) {
		t.Fatalf("the misread messages must stay on the server; it has %d", len(left))
	}
	if held != 2 {
		t.Fatalf("want both held after 3 attempts, got %d", held)
	}
	entries, _ := j.engine.Quarantine.List()
	if len(entries) != 2 || !entries[0].Held || !strings.Contains(entries[0].Reason, "the source keeps the message") {
		t.Fatalf("quarantine: %+v", entries)
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
