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

	_ "github.com/mailflow/mailflow/connectors/maildir"
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
	cfg, err := engine.LoadConfig(filepath.Join(j.dir, "mailflow.toml"), plugins.Default)
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
	if err == nil || !strings.Contains(err.Error(), "[IN-USE]") || engine.IsPermanent(err) {
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

func TestServerLyingAboutSizeEndsSessionWithoutDeleting(t *testing.T) {
	msgs := crlfMix(3)
	msgs[1] = enginetest.Message(enginetest.Huge, 1, 300_000)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.ListSize = map[int]int64{2: 100} }) // says 100 bytes, sends 300 KB
	j := newJob(t, srv.Addr(), "max_message_size = 200000\npipelining = false")
	if _, err := j.poll(); err == nil || !strings.Contains(err.Error(), "larger than max_message_size") {
		t.Fatalf("want a size error, got %v", err)
	}
	if len(srv.Messages()) != 3 {
		t.Fatal("nothing may be deleted in a session that ended mid-message")
	}
	if got := j.delivered(); len(got) != 1 || !bytes.Equal(got[0], msgs[0]) {
		t.Fatalf("message 1 should have been delivered before the lie; have %d", len(got))
	}
}

func TestNoUIDLFallsBackToHeaderHashAndKeepModeFetchesOnce(t *testing.T) {
	msgs := crlfMix(5)
	srv := newServer(t, msgs)
	srv.Set(func(b *pop3test.Behaviour) { b.NoUIDL = true })
	j := newJob(t, srv.Addr(), "delete = false")
	if st, err := j.poll(); err != nil || st.Delivered != 5 {
		t.Fatalf("%v %v", st, err)
	}
	if len(srv.Messages()) != 5 {
		t.Fatal("keep mode deleted messages")
	}
	st, err := j.poll()
	if err != nil || st.Fetched != 0 {
		t.Fatalf("second poll in keep mode fetched again: %v %v", st, err)
	}
	assertExactlyOnce(t, msgs, j.delivered())
	for _, l := range srv.Log() {
		if strings.HasPrefix(l, "DELE") {
			t.Fatal("keep mode sent DELE")
		}
	}
}

func TestCleartextPasswordRefusedUnlessAllowed(t *testing.T) {
	srv := newServer(t, nil)
	dir := t.TempDir()
	conf := fmt.Sprintf("state_dir = \"s\"\n[[input]]\nname = \"pop\"\ntype = \"pop3\"\naddress = %q\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\npipeline = \"m\"\n[[pipeline]]\nname = \"m\"\noutputs = [\"o\"]\n[[output]]\nname = \"o\"\ntype = \"maildir\"\npath = \"o\"\n", srv.Addr())
	path := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := engine.LoadConfig(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	_, err = engine.Build(cfg, plugins.Default, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "allow_plaintext_auth") {
		t.Fatalf("want a refusal naming allow_plaintext_auth, got %v", err)
	}
}
