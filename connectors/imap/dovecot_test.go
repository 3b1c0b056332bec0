//go:build integration

package imap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Users u15..u20, ns1, ns2 and fs1 of the test Dovecot are these tests'
// (.ci/testenv says what ns* and fs1 are).

// dovecotOutput is an IMAP output for user at addr (plain IMAP, the
// password of every test user), its config changed by set before Init.
func dovecotOutput(t testing.TB, srv *enginetest.Servers, addr, user string, set func(*Output)) *Output {
	t.Helper()
	o := &Output{Endpoint: Endpoint{Settings: endpoint.Settings{Address: addr, TLS: "none", Username: user, Password: srv.Password,
		AllowPlaintextAuth: true, Timeout: "10s"}}}
	o.Provision(plugin.Env{Name: "out", Logger: slog.New(slog.NewTextHandler(testLog, nil)), BaseDir: t.TempDir()})
	if set != nil {
		set(o)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// cutProxy forwards connections to addr, and cuts the first one once the
// client has sent it more than after bytes: a session lost in the middle
// of a window of APPENDs.
func cutProxy(t *testing.T, addr string, after int64) (string, *atomic.Bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cut := &atomic.Bool{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go func() { io.Copy(c, s); c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				var sent int64
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if sent+int64(n) > after && cut.CompareAndSwap(false, true) {
							s.Write(buf[:after-sent])
							s.Close()
							c.Close()
							return
						}
						sent += int64(n)
						if _, err := s.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						s.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), cut
}

// 80 messages of mixed sizes are APPENDed to Dovecot, eight in flight per
// session on two sessions, and one session is cut after a fifth of their
// bytes went out: every
// message the output said it accepted is there once, every one it said
// failed and not in doubt is not there, and the ones in doubt are there at
// most once. Delivered again as the engine would (the ones in doubt
// looked for first), every message is there exactly once.
func TestDovecotAPipelineCutMidWindowLosesNothing(t *testing.T) {
	srv := enginetest.RealServers(t)
	empty(t, dovecot(t, srv, "u15"))
	var msgs []*message.Message
	total := 0
	for i, raw := range enginetest.CRLF(enginetest.Mix(80)) {
		if len(raw) == 0 {
			continue
		}
		m := message.New(raw, message.Source{Input: "in", ID: fmt.Sprint(i)})
		m.Folder = "INBOX"
		msgs = append(msgs, m)
		total += len(raw)
	}
	addr, cut := cutProxy(t, srv.IMAP, int64(total/5))
	o := dovecotOutput(t, srv, addr, "u15", func(o *Output) { o.MaxConnections, o.AppendWindow = 2, 8 })
	res := deliverAll(o, msgs, false)
	if !cut.Load() {
		t.Fatal("the proxy never cut the session")
	}
	count := func() map[string]int {
		out := map[string]int{}
		for _, m := range dump(t, dovecot(t, srv, "u15")) {
			out[enginetest.Digest(m.data)]++
		}
		return out
	}
	there := count()
	var again []*message.Message
	inDoubt := map[int]bool{}
	accepted, failed := 0, 0
	for i, r := range res {
		raw, _ := rawOf(msgs[i])
		n := there[enginetest.Digest(raw)]
		switch {
		case r.err == nil:
			accepted++
			if n != 1 {
				t.Errorf("message %d was accepted; the mailbox holds it %d times", i, n)
			}
		case plugin.IsInDoubt(r.err):
			inDoubt[len(again)] = true
			again = append(again, msgs[i])
			if n > 1 {
				t.Errorf("message %d is in doubt; the mailbox holds it %d times", i, n)
			}
		default:
			failed++
			again = append(again, msgs[i])
			if n != 0 {
				t.Errorf("message %d failed (%v), not in doubt; the mailbox holds it %d times", i, r.err, n)
			}
		}
	}
	t.Logf("after the cut: %d accepted, %d in doubt, %d failed and not sent", accepted, len(inDoubt), failed)
	if len(again) == 0 {
		t.Fatal("the cut lost no reply")
	}
	for j, m := range again {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := o.Deliver(ctx, m, plugin.Delivery{Key: m.Key(), InDoubt: inDoubt[j]})
		cancel()
		if err != nil {
			t.Fatalf("again: %v", err)
		}
	}
	final := count()
	for i, m := range msgs {
		raw, _ := rawOf(m)
		if n := final[enginetest.Digest(raw)]; n != 1 {
			t.Errorf("message %d is there %d times, want once", i, n)
		}
	}
}

// A delta listing against Dovecot (CONDSTORE): the first lists everything
// with a checkpoint; an unchanged mailbox lists nothing; a flag changed
// lists that message with its flags; a message that came is listed; a
// message expunged lists its folder whole and names it complete; a folder
// made again (new UIDVALIDITY) lists everything.
func TestDovecotDeltaListing(t *testing.T) {
	srv := enginetest.RealServers(t)
	src := dovecot(t, srv, "u16")
	empty(t, src)
	folders := []string{"INBOX", "Archive", "Archive/2024", "Lists/go", "Entwürfe"}
	var msgs []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(250)) {
		if len(m) == 0 {
			continue
		}
		msgs = append(msgs, stored{folder: folders[i%len(folders)], date: time.Date(2020, 1, 1+i%28, 0, 0, 0, 0, time.UTC), data: m})
	}
	seed(t, src, msgs)
	in := &Input{Endpoint: Endpoint{Settings: endpoint.Settings{Address: srv.IMAP, TLS: "none", Username: "u16", Password: srv.Password,
		AllowPlaintextAuth: true}}, Folders: []string{"*"}, OnSettled: "keep"}
	in.Provision(plugin.Env{Name: "in", Logger: slog.New(slog.NewTextHandler(testLog, nil)), BaseDir: t.TempDir()})
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	list := func(cp []byte) plugin.Delta {
		t.Helper()
		sess, err := in.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(context.Background())
		d, err := sess.(plugin.DeltaSession).ListSince(context.Background(), cp)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := list(nil)
	if first.Partial || len(first.Items) != len(msgs) || first.Checkpoint == nil {
		t.Fatalf("first listing: partial %v, %d items of %d, checkpoint %q", first.Partial, len(first.Items), len(msgs), first.Checkpoint)
	}
	for _, it := range first.Items {
		if it.Flags == nil {
			t.Fatalf("%s: flags not known", it.ID)
		}
	}
	var took []time.Duration
	for range 5 {
		start := time.Now()
		same := list(first.Checkpoint)
		took = append(took, time.Since(start))
		if !same.Partial || len(same.Items) != 0 || len(same.Complete) != 0 || same.Scheme != first.Scheme {
			t.Fatalf("unchanged: partial %v, %d items, complete %v, scheme %q", same.Partial, len(same.Items), same.Complete, same.Scheme)
		}
	}
	slices.Sort(took)
	t.Logf("a delta listing of an unchanged mailbox (%d messages, %d folders, login included): median %v", len(msgs), len(folders), took[len(took)/2])

	// A flag set on one message of Archive/2024, a message in INBOX.
	if _, _, err := src.examine("Archive/2024", true); err != nil {
		t.Fatal(err)
	}
	if err := src.addFlags([]uint32{3}, `\Flagged`, "$Work"); err != nil {
		t.Fatal(err)
	}
	seed(t, src, []stored{{folder: "INBOX", data: []byte("Message-ID: <new@x.test>\r\nSubject: new\r\n\r\nnew\r\n")}})
	d := list(first.Checkpoint)
	if !d.Partial || len(d.Items) != 2 || len(d.Complete) != 0 {
		t.Fatalf("after a flag and a message: partial %v, items %+v, complete %v", d.Partial, d.Items, d.Complete)
	}
	for _, it := range d.Items {
		switch it.Folder {
		case "Archive/2024":
			if !strings.HasSuffix(it.ID, "/3") || !slices.Contains(it.Flags, `\Flagged`) || !slices.Contains(it.Flags, "$Work") {
				t.Errorf("the flagged message: %+v", it)
			}
		case "INBOX":
			if it.Size != int64(len("Message-ID: <new@x.test>\r\nSubject: new\r\n\r\nnew\r\n")) {
				t.Errorf("the new message: %+v", it)
			}
		default:
			t.Errorf("listed %+v", it)
		}
	}
	// From that checkpoint: one message of Lists/go expunged.
	cp := d.Checkpoint
	if _, _, err := src.examine("Lists/go", true); err != nil {
		t.Fatal(err)
	}
	if err := src.remove([]uint32{1}); err != nil {
		t.Fatal(err)
	}
	d = list(cp)
	if !d.Partial || len(d.Complete) != 1 || !strings.HasPrefix(d.Complete[0], "Lists/go/") || len(d.Items) != len(msgs)/len(folders)-1 {
		t.Fatalf("after an expunge: partial %v, %d items, complete %v", d.Partial, len(d.Items), d.Complete)
	}
	// Archive made again: a new UIDVALIDITY, everything listed.
	cp = d.Checkpoint
	if err := src.c.Delete("Archive/2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := src.create("Archive/2024"); err != nil {
		t.Fatal(err)
	}
	d = list(cp)
	if d.Partial || d.Scheme == first.Scheme {
		t.Fatalf("after a new UIDVALIDITY: partial %v, scheme %q", d.Partial, d.Scheme)
	}
}

// IMAP → IMAP in keep mode on Dovecot, both with CONDSTORE: after the
// first pass a flag changed at the source reaches the copy, and, with
// sync_deletes, a message deleted at the source is deleted at the
// destination; the later passes fetch nothing.
func TestDovecotFlagsAndDeletionsFollowTheSource(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u17"), dovecot(t, srv, "u18")
	empty(t, src)
	empty(t, dst)
	var msgs []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(30)) {
		if len(m) == 0 {
			continue
		}
		msgs = append(msgs, stored{folder: []string{"INBOX", "Archive"}[i%2], date: time.Date(2021, 3, 1+i%28, 0, 0, 0, 0, time.UTC), data: m})
	}
	seed(t, src, msgs)
	e := newEngine(t, u17ToU18(srv, srv.IMAP, "sync_deletes = true\n"))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != int64(len(msgs)) {
		t.Fatalf("%v %v", st, err)
	}
	if _, _, err := src.examine("Archive", true); err != nil {
		t.Fatal(err)
	}
	if err := src.addFlags([]uint32{1, 2}, `\Flagged`, "$Later"); err != nil {
		t.Fatal(err)
	}
	if err := src.remove([]uint32{3}); err != nil {
		t.Fatal(err)
	}
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Fetched != 0 || st.Updated != 2 || st.Deleted != 1 {
		t.Fatalf("second pass: %v (updated %d, deleted %d) %v", st, st.Updated, st.Deleted, err)
	}
	want, got := map[string]string{}, map[string]string{}
	for _, m := range dump(t, dovecot(t, srv, "u17")) {
		want[m.folder+" "+enginetest.Digest(m.data)] = strings.Join(m.flags, " ")
	}
	for _, m := range dump(t, dovecot(t, srv, "u18")) {
		got[m.folder+" "+enginetest.Digest(m.data)] = strings.Join(m.flags, " ")
	}
	if len(got) != len(want) {
		t.Fatalf("the destination holds %d messages, the source %d", len(got), len(want))
	}
	for k, fl := range want {
		if got[k] != fl {
			t.Errorf("%.40s: flags %q at the destination, %q at the source", k, got[k], fl)
		}
	}
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Fetched != 0 || st.Updated != 0 || st.Deleted != 0 {
		t.Fatalf("third pass: %v %v", st, err)
	}
}

// Folders between layouts, with no folder_map: from fs1 (Dovecot, "/"
// between levels, LAYOUT=fs) to ns1 (personal namespace "INBOX.", "."
// between levels), non-ASCII names (modified UTF-7 on the wire) land under
// INBOX., a/b becomes INBOX.a.b, Sent lands in INBOX.Sent; v1.2, which "."
// would split, is refused for good and its messages quarantined. And back,
// from ns2 to u19: INBOX.Sent is Sent, INBOX.Archive.2024 is Archive/2024.
func TestDovecotFoldersBetweenNamespaces(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "fs1"), dovecot(t, srv, "ns1")
	empty(t, src)
	empty(t, dst)
	folders := []string{"INBOX", "Entwürfe", "Отправленные", "日本語", "a/b", "Sent", "v1.2"}
	var msgs []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(42)) {
		if len(m) == 0 {
			continue
		}
		msgs = append(msgs, stored{folder: folders[i%len(folders)], date: time.Date(2022, 5, 1+i%28, 0, 0, 0, 0, time.UTC), data: m})
	}
	seed(t, src, msgs)
	move := func(from, to string) string {
		return fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "none"
allow_plaintext_auth = true
username = %q
password = %q
folders = ["*"]
on_settled = "keep"
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
username = %q
password = %q
`, srv.IMAP, from, srv.Password, srv.IMAP, to, srv.Password)
	}
	conf := move("fs1", "ns1")
	e := newEngine(t, conf)
	clash := 0
	for _, m := range msgs {
		if m.folder == "v1.2" {
			clash++
		}
	}
	st, err := e.PollOnce(context.Background(), "old")
	if st.Delivered != int64(len(msgs)-clash) || st.Quarantined != int64(clash) {
		t.Fatalf("fs1 → ns1: %v %v; want %d delivered, %d quarantined", st, err, len(msgs)-clash, clash)
	}
	names := map[string]bool{}
	for _, f := range mustFolders(t, dovecot(t, srv, "ns1")) {
		names[f.name] = true
	}
	want := map[string]int{"INBOX": 0, "Entwürfe": 0, "Отправленные": 0, "日本語": 0, "a/b": 0, "Sent": 0}
	for _, m := range msgs {
		if m.folder != "v1.2" {
			want[m.folder]++
		}
	}
	got := map[string]int{}
	for _, m := range dump(t, dovecot(t, srv, "ns1")) {
		got[m.folder]++
	}
	for f, n := range want {
		if got[f] != n {
			t.Errorf("%s at ns1: %d messages, want %d", f, got[f], n)
		}
	}
	for name := range names {
		if name != "INBOX" && !strings.HasPrefix(name, "INBOX.") {
			t.Errorf("ns1 has a folder %q outside its namespace", name)
		}
	}
	if !names["INBOX.a.b"] {
		t.Errorf("a/b is not INBOX.a.b at ns1: %v", names)
	}

	back, to := dovecot(t, srv, "ns2"), dovecot(t, srv, "u19")
	empty(t, back)
	empty(t, to)
	var theirs []stored
	for i, m := range msgs[:20] {
		m.folder = []string{"INBOX", "INBOX.Sent", "INBOX.Archive.2024", "INBOX.Entwürfe"}[i%4]
		theirs = append(theirs, m)
	}
	seed(t, back, theirs)
	conf = move("ns2", "u19")
	e2 := newEngine(t, conf)
	if st, err := e2.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 20 {
		t.Fatalf("ns2 → u19: %v %v", st, err)
	}
	got = map[string]int{}
	for _, m := range dump(t, dovecot(t, srv, "u19")) {
		got[m.folder]++
	}
	if got["INBOX"] != 5 || got["Sent"] != 5 || got["Archive/2024"] != 5 || got["Entwürfe"] != 5 {
		t.Fatalf("folders at u19: %v", got)
	}
}

// mustFolders lists every folder of c.
func mustFolders(t *testing.T, c *conn) []mailbox {
	t.Helper()
	fs, err := c.folders([]string{"*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	return fs
}

// A verification after a pass asks each side what changed in a folder
// since the token it kept when it found the two equal: on Dovecot, with
// CONDSTORE, nothing when nothing moved; the message flagged and the one
// that came, named, with their flags; and not ok (read it whole) once a
// message left, or for a token of an older mailflow.
func TestDovecotChangesSinceAToken(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u16"), dovecot(t, srv, "u15")
	empty(t, src)
	empty(t, dst)
	var msgs []stored
	for i := range 12 {
		msgs = append(msgs, stored{folder: []string{"INBOX", "Archive"}[i%2], flags: []string{`\Seen`},
			data: fmt.Appendf(nil, "Message-ID: <m%d@x.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)})
	}
	seed(t, src, msgs)
	seed(t, dst, msgs)
	in := &Input{Endpoint: Endpoint{Settings: endpoint.Settings{Address: srv.IMAP, TLS: "none", Username: "u16", Password: srv.Password,
		AllowPlaintextAuth: true}}, Folders: []string{"*"}, OnSettled: "keep"}
	in.Provision(plugin.Env{Name: "in", Logger: slog.New(slog.NewTextHandler(testLog, nil)), BaseDir: t.TempDir()})
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	out := dovecotOutput(t, srv, srv.IMAP, "u15", nil)
	ctx := context.Background()
	sess, err := in.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx)
	folders, err := sess.(plugin.FolderLister).Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(folders, func(f plugin.Folder) bool { return f.Name == "Archive" })
	if i < 0 {
		t.Fatalf("no Archive among %+v", folders)
	}
	stok := folders[i].State
	dtok, err := out.FolderState(ctx, "Archive", "")
	if err != nil {
		t.Fatal(err)
	}
	// since asks both sides; each side's changes come as
	// "came=[identity flags...] changed=[...]", flags sorted.
	since := func(stok, dtok string) (string, bool, string, bool) {
		t.Helper()
		came, changed, sok, err := sess.(plugin.FolderChangeNamer).ListNamedSince(ctx, "Archive", stok)
		if err != nil {
			t.Fatal(err)
		}
		copiesCame, copiesChanged, dok, err := out.HoldsFlagsSince(ctx, "Archive", "", dtok)
		if err != nil {
			t.Fatal(err)
		}
		items := func(its []plugin.Item) string {
			var s []string
			for _, it := range its {
				s = append(s, fmt.Sprint(it.Identity, slices.Sorted(slices.Values(it.Flags))))
			}
			return fmt.Sprint(s)
		}
		copies := func(m map[string][][]string) string {
			var s []string
			for id, fls := range m {
				for _, fl := range fls {
					s = append(s, fmt.Sprint(id, fl))
				}
			}
			slices.Sort(s)
			return fmt.Sprint(s)
		}
		return "came=" + items(came) + " changed=" + items(changed), sok, "came=" + copies(copiesCame) + " changed=" + copies(copiesChanged), dok
	}
	if s, sok, d, dok := since(stok, dtok); !sok || !dok || s != "came=[] changed=[]" || d != s {
		t.Fatalf("unchanged: %v %s, %v %s", sok, s, dok, d)
	}

	// A pass: the second message of Archive flagged, a message came; on
	// both sides.
	for _, c := range []*conn{src, dst} {
		if _, _, err := c.examine("Archive", true); err != nil {
			t.Fatal(err)
		}
		if err := c.addFlags([]uint32{2}, `\Flagged`, "$Work"); err != nil {
			t.Fatal(err)
		}
		seed(t, c, []stored{{folder: "Archive", data: []byte("Message-ID: <new@x.test>\r\nSubject: new\r\n\r\nnew\r\n")}})
	}
	want := "came=[new@x.test[]] changed=[m3@x.test[$Work \\Flagged \\Seen]]"
	if s, sok, d, dok := since(stok, dtok); !sok || !dok || s != want || d != want {
		t.Fatalf("after a pass:\n source      %v %s\n destination %v %s\n want        %s", sok, s, dok, d, want)
	}

	// A message gone at the destination: its change list is not the
	// whole story. A token without UIDNEXT (an older mailflow's) is not
	// understood.
	if _, _, err := dst.examine("Archive", true); err != nil {
		t.Fatal(err)
	}
	if err := dst.remove([]uint32{1}); err != nil {
		t.Fatal(err)
	}
	if _, sok, _, dok := since(stok, dtok); !sok || dok {
		t.Fatalf("after an expunge at the destination: source ok %v, destination ok %v (want true, false)", sok, dok)
	}
	old := stok[:strings.LastIndex(stok, ".")]
	if _, sok, _, _ := since(old, dtok); sok {
		t.Fatalf("a token of three numbers (%q) was taken", old)
	}
}

// A pass after flags changed in one folder and a message came to another
// selects each of them once at the source, with its read sent behind the
// SELECT: the listing names the changed messages as it lists them (no
// SELECT and FETCH more to identify them), and the new one's body is
// fetched with its folder's EXAMINE.
func TestDovecotChangedPassSelectsEachFolderOnce(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u17"), dovecot(t, srv, "u18")
	empty(t, src)
	empty(t, dst)
	var msgs []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(12)) {
		if len(m) > 0 {
			msgs = append(msgs, stored{folder: []string{"INBOX", "Archive"}[i%2], date: time.Date(2021, 3, 1+i%28, 0, 0, 0, 0, time.UTC), data: m})
		}
	}
	seed(t, src, msgs)
	probe := &selectProbe{}
	e := newEngine(t, u17ToU18(srv, probe.listen(t, srv.IMAP), ""))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != int64(len(msgs)) {
		t.Fatalf("first pass: %v %v", st, err)
	}
	if _, _, err := src.examine("Archive", true); err != nil {
		t.Fatal(err)
	}
	if err := src.addFlags([]uint32{1, 2}, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	seed(t, src, []stored{{folder: "INBOX", date: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC),
		data: []byte("Message-ID: <later@x.test>\r\nSubject: later\r\n\r\nbody\r\n")}})
	probe.mu.Lock()
	probe.turns = nil
	probe.mu.Unlock()
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 1 || st.Updated != 2 {
		t.Fatalf("second pass: %v (updated %d) %v; want 1 delivered, 2 updated", st, st.Updated, err)
	}
	n, before := probe.after("")
	if n != 3 || before != n {
		t.Fatalf("the source was selected %d times in the second pass (%d with their read sent behind); want 3 (Archive and INBOX listed, INBOX's new message fetched), each with its read", n, before)
	}
}

// u17ToU18 is the config that moves u17's mail (at from) to u18, keeping
// it at the source, with the output's extra settings.
func u17ToU18(srv *enginetest.Servers, from, extra string) string {
	return fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "none"
allow_plaintext_auth = true
username = "u17"
password = %q
folders = ["*"]
on_settled = "keep"
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
username = "u18"
password = %q
%s`, from, srv.Password, srv.IMAP, srv.Password, extra)
}
