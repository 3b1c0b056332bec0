package imap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/config"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/plugins"
)

// memServer is go-imap's in-memory IMAP server on 127.0.0.1 with users
// "src" and "dst" (password "p").
func memServer(t *testing.T) string { return memServerWith(t, nil) }

// memServerWith is memServer with each session passed through wrap, to
// misbehave on demand.
func memServerWith(t *testing.T, wrap func(*imapserver.Conn, imapserver.Session) imapserver.Session) string {
	t.Helper()
	mem := imapmemserver.New()
	for _, u := range []string{"src", "dst"} {
		user := imapmemserver.NewUser(u, "p")
		user.Create("INBOX", nil)
		mem.AddUser(user)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if wrap != nil {
				return wrap(c, mem.NewSession()), nil, nil
			}
			return mem.NewSession(), nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}, goimap.CapLiteralPlus: {}},
		InsecureAuth: true,
		Logger:       silent{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type silent struct{}

func (silent) Printf(string, ...any) {}

func login(t *testing.T, addr, user string) *conn {
	t.Helper()
	e := &Endpoint{Settings: endpoint.Settings{Address: addr, TLS: "none", Username: user, Password: "p", AllowPlaintextAuth: true, Timeout: "5s"}}
	if err := e.init(); err != nil {
		t.Fatal(err)
	}
	c, err := e.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	return c
}

// stored is one message as a mailbox holds it.
type stored struct {
	folder string
	flags  []string
	date   time.Time
	data   []byte
}

func seed(t *testing.T, c *conn, msgs []stored) {
	t.Helper()
	for _, m := range msgs {
		if m.folder != "INBOX" {
			c.create(m.folder)
		}
		if _, err := c.appendMsg(m.folder, m.flags, m.date, int64(len(m.data)), bytes.NewReader(m.data)); err != nil {
			t.Fatal(err)
		}
	}
}

// dump reads every message of every folder.
func dump(t *testing.T, c *conn) []stored {
	t.Helper()
	folders, err := c.folders([]string{"*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for _, f := range folders {
		_, n, err := c.examine(f.name, false)
		if err != nil {
			t.Fatal(err)
		}
		infos, err := c.messages(n)
		if err != nil {
			t.Fatal(err)
		}
		byUID := map[uint32]msgInfo{}
		var uids []uint32
		for _, i := range infos {
			byUID[i.UID] = i
			uids = append(uids, i.UID)
		}
		if len(uids) == 0 {
			continue
		}
		err = c.fetch(uids, func(uid uint32, r io.Reader) error {
			b, _ := io.ReadAll(r)
			fl := slices.DeleteFunc(slices.Clone(byUID[uid].Flags), func(s string) bool { return s == `\Recent` })
			sort.Strings(fl)
			out = append(out, stored{folder: f.path, flags: fl, date: byUID[uid].Date, data: b})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func key(s stored) string {
	return fmt.Sprintf("%s|%v|%d|%s", s.folder, s.flags, s.date.Unix(), enginetest.Digest(s.data))
}

func newEngine(t *testing.T, conf string) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(path, []byte("state_dir = \"state\"\n"+conf), 0o600)
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(testLog, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func imapToIMAP(addr, onSettled, extra string) string {
	return fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "none"
allow_plaintext_auth = true
username = "src"
password = "p"
folders = ["*"]
on_settled = %q
pipeline = "move"
[[pipeline]]
name = "move"
outputs = ["new"]
[[output]]
name = "new"
type = "imap"
address = %q
tls = "none"
allow_plaintext_auth = true
username = "dst"
password = "p"
%s`, addr, onSettled, addr, extra)
}

func sample(n int) []stored {
	folders := []string{"INBOX", "Archive", "Archive/2025", "Gelöscht"}
	flagSets := [][]string{nil, {`\Seen`}, {`\Flagged`, `\Seen`}, {`$Forwarded`, `\Answered`}}
	var out []stored
	var msgs [][]byte
	for _, m := range enginetest.CRLF(enginetest.Mix(2 * n)) {
		// go-imap's memory server answers BODY[] of a message without a
		// header with nothing (the engine then holds it, as it should);
		// Dovecot does not, and the integration tests send those.
		if len(msgs) < n && !bytes.HasPrefix(m, []byte("no header in message")) {
			msgs = append(msgs, m)
		}
	}
	for i, m := range msgs {
		fl := slices.Clone(flagSets[i%len(flagSets)])
		sort.Strings(fl)
		out = append(out, stored{folder: folders[i%len(folders)], flags: fl,
			date: time.Date(2019, 1, 1+i%28, 10, i%60, 0, 0, time.UTC), data: m})
	}
	return out
}

// IMAP → IMAP keeps folder, flags, INTERNALDATE and bytes; the source is
// emptied (on_settled = "delete"); a second poll moves nothing.
func TestIMAPToIMAPKeepsFoldersFlagsAndDates(t *testing.T) {
	addr := memServer(t)
	want := sample(40)
	seed(t, login(t, addr, "src"), want)
	e := newEngine(t, imapToIMAP(addr, "delete", ""))
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 40 {
		t.Fatalf("%v %v", st, err)
	}
	got := dump(t, login(t, addr, "dst"))
	w, g := map[string]int{}, map[string]int{}
	for _, m := range want {
		w[key(m)]++
	}
	for _, m := range got {
		g[key(m)]++
	}
	for k, n := range w {
		if g[k] != n {
			t.Errorf("%s: want %d, have %d", k[:60], n, g[k])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d at the destination, want %d", len(got), len(want))
	}
	if left := dump(t, login(t, addr, "src")); len(left) != 0 {
		t.Fatalf("%d left at the source", len(left))
	}
	if st, _ := e.PollOnce(context.Background(), "old"); st.Fetched != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %v", st)
	}
}

// In keep mode the source is not touched, and later polls move nothing,
// without fetching: the ledger knows each folder/UIDVALIDITY/UID.
func TestIMAPKeepModeMovesEachOnce(t *testing.T) {
	addr := memServer(t)
	seed(t, login(t, addr, "src"), sample(12))
	e := newEngine(t, imapToIMAP(addr, "keep", ""))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 12 {
		t.Fatalf("%v %v", st, err)
	}
	for range 2 {
		if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Fetched != 0 || st.Skipped != 12 {
			t.Fatalf("later poll: %v %v", st, err)
		}
	}
	if n := len(dump(t, login(t, addr, "src"))); n != 12 {
		t.Fatalf("keep mode changed the source: %d", n)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 12 {
		t.Fatalf("destination has %d", n)
	}
}

// on_settled = "flag:$Forwarded" flags each delivered message and keeps it.
func TestIMAPFlagOnSettled(t *testing.T) {
	addr := memServer(t)
	seed(t, login(t, addr, "src"), sample(4))
	e := newEngine(t, imapToIMAP(addr, "flag:$Mailflow", ""))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 4 {
		t.Fatalf("%v %v", st, err)
	}
	for _, m := range dump(t, login(t, addr, "src")) {
		if !containsFold(m.flags, "$Mailflow") {
			t.Fatalf("source message flags %v", m.flags)
		}
	}
}

// A message from a source without folders (POP3, Maildir) goes to the
// output's folder; folder_map renames a tree.
func TestIMAPOutputFolderMap(t *testing.T) {
	addr := memServer(t)
	seed(t, login(t, addr, "src"), sample(8))
	e := newEngine(t, imapToIMAP(addr, "delete", "folder_map = { \"Archive/*\" = \"Old/*\" }\n"))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 8 {
		t.Fatalf("%v %v", st, err)
	}
	folders := map[string]int{}
	for _, m := range dump(t, login(t, addr, "dst")) {
		folders[m.folder]++
	}
	if folders["Old"] != 2 || folders["Old/2025"] != 2 || folders["Archive"] != 0 || folders["INBOX"] != 2 {
		t.Fatalf("folders at the destination: %v", folders)
	}
}

var testLog io.Writer = io.Discard

// A folder recreated under a new UIDVALIDITY (its UIDs renumbered) changes
// the input's id scheme: the engine matches its messages by content that
// poll, so nothing is delivered again and nothing is lost.
func TestUIDValidityChangeRedeliversNothing(t *testing.T) {
	addr := memServer(t)
	msgs := sample(8)
	src := login(t, addr, "src")
	seed(t, src, msgs)
	e := newEngine(t, imapToIMAP(addr, "keep", ""))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 8 {
		t.Fatalf("%v %v", st, err)
	}
	// Archive is dropped and made again with the same messages.
	if err := src.c.Delete("Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	var again []stored
	for _, m := range msgs {
		if m.folder == "Archive" {
			again = append(again, m)
		}
	}
	seed(t, src, again)
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 0 || st.Skipped != 8 {
		t.Fatalf("poll after the new UIDVALIDITY: %v %v", st, err)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 8 {
		t.Fatalf("destination has %d, want 8", n)
	}
	// And the poll after that trusts the new ids again: no fetching.
	if st, _ := e.PollOnce(context.Background(), "old"); st.Fetched != 0 {
		t.Fatalf("third poll fetched: %v", st)
	}
}

// With idle = true, mail appended to the source's INBOX is delivered long
// before the next scheduled poll (an hour away).
func TestIdleDeliversNewMailAtOnce(t *testing.T) {
	addr := memServer(t)
	conf := imapToIMAP(addr, "delete", "")
	conf = strings.Replace(conf, "folders = [\"*\"]", "folders = [\"INBOX\"]\nidle = true\nschedule = \"1h\"", 1)
	e := newEngine(t, conf)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	src, dst := login(t, addr, "src"), login(t, addr, "dst")
	time.Sleep(300 * time.Millisecond) // the first poll (of nothing) and the IDLE begin
	var lat []time.Duration
	for i := range 5 {
		m := sample(1)[0]
		m.folder = "INBOX"
		m.data = append([]byte(fmt.Sprintf("X-Idle: %d\r\n", i)), m.data...)
		start := time.Now()
		seed(t, src, []stored{m})
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, n, err := dst.examine("INBOX", false)
			if err != nil {
				t.Fatal(err)
			}
			if int(n) == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d not delivered 20 s after it arrived, with the next poll an hour away", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	t.Logf("arrival → delivered: %v", lat)
}

// faultySession answers APPEND as told: NO [OVERQUOTA], or storing the
// message and then dropping the connection before the reply.
type faultySession struct {
	imapserver.SessionIMAP4rev2
	conn  *imapserver.Conn
	fault *atomic.Value // "", "overquota" or "drop-after-store" (once)
}

func (s faultySession) Append(mbox string, r goimap.LiteralReader, opts *goimap.AppendOptions) (*goimap.AppendData, error) {
	switch s.fault.Load() {
	case "overquota":
		io.Copy(io.Discard, r)
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeOverQuota, Text: "quota exceeded"}
	case "drop-after-store":
		s.fault.Store("")
		data, err := s.SessionIMAP4rev2.Append(mbox, r, opts)
		s.conn.NetConn().Close()
		return data, err
	}
	return s.SessionIMAP4rev2.Append(mbox, r, opts)
}

// Fetch with the fault "hang" answers nothing for 20 s: a server that
// stopped answering.
func (s faultySession) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	if s.fault.Load() == "hang" && len(options.BodySection) > 0 && options.BodySection[0].Specifier == goimap.PartSpecifierNone {
		time.Sleep(20 * time.Second)
	}
	return s.SessionIMAP4rev2.Fetch(w, numSet, options)
}

func faultyServer(t *testing.T) (string, *atomic.Value) {
	fault := &atomic.Value{}
	fault.Store("")
	addr := memServerWith(t, func(c *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return faultySession{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), conn: c, fault: fault}
	})
	return addr, fault
}

// NO [OVERQUOTA] on APPEND is temporary: nothing is quarantined, and the
// messages stay at their source.
func TestOverQuotaIsTemporary(t *testing.T) {
	addr, fault := faultyServer(t)
	seed(t, login(t, addr, "src"), sample(3))
	fault.Store("overquota")
	e := newEngine(t, imapToIMAP(addr, "delete", ""))
	st, _ := e.PollOnce(context.Background(), "old")
	if st.Deferred != 3 || st.Quarantined != 0 || st.Delivered != 0 {
		t.Fatalf("%v", st)
	}
	if n := len(dump(t, login(t, addr, "src"))); n != 3 {
		t.Fatalf("%d left at the source, want 3", n)
	}
}

// The connection drops after the server stored an APPENDed message but
// before its reply: the delivery is in doubt, and the next try finds the
// Message-ID in the folder instead of appending a second copy.
func TestLostAppendReplyLeavesOneCopy(t *testing.T) {
	addr, fault := faultyServer(t)
	msgs := sample(1)
	msgs[0].folder = "INBOX"
	seed(t, login(t, addr, "src"), msgs)
	fault.Store("drop-after-store")
	conf := imapToIMAP(addr, "delete", "max_connections = 1\n")
	e := newEngine(t, conf)
	st, _ := e.PollOnce(context.Background(), "old")
	if st.InDoubt != 1 || st.Deferred != 1 {
		t.Fatalf("first poll: %v", st)
	}
	// The output backs off after the failure; wait it out, as the next
	// scheduled poll would.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ = e.PollOnce(context.Background(), "old")
		if st.Delivered == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Delivered != 1 {
		t.Fatalf("retry: %v", st)
	}
	if got := dump(t, login(t, addr, "dst")); len(got) != 1 {
		t.Fatalf("the destination holds %d copies, want 1", len(got))
	}
}

// A server that stops answering in the middle of a FETCH: with timeout =
// "1s" the poll fails within a few seconds instead of hanging, nothing is
// lost or delivered twice, and the next poll moves everything.
func TestServerThatStopsAnsweringFailsThePoll(t *testing.T) {
	addr, fault := faultyServer(t)
	msgs := sample(6)
	seed(t, login(t, addr, "src"), msgs)
	conf := strings.Replace(imapToIMAP(addr, "delete", ""), `on_settled = "delete"`, "on_settled = \"delete\"\ntimeout = \"1s\"", 1)
	e := newEngine(t, conf)
	fault.Store("hang")
	start := time.Now()
	st, err := e.PollOnce(context.Background(), "old")
	took := time.Since(start)
	if err == nil || st.Delivered != 0 {
		t.Fatalf("a hung FETCH must fail the poll: %v %v", st, err)
	}
	if took > 5*time.Second {
		t.Fatalf("the poll took %v with timeout = 1s", took)
	}
	// Not taken for a session the server ended (and fetched again three
	// times over): the error says the server stopped answering.
	if !strings.Contains(err.Error(), "no answer within 1s") {
		t.Fatalf("the error does not say the server stopped answering: %v", err)
	}
	fault.Store("")
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 6 {
		t.Fatalf("next poll: %v %v", st, err)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 6 {
		t.Fatalf("%d at the destination", n)
	}
}
