package imap

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// probes count what the memory server is asked, and say how it is to
// misbehave.
type probes struct {
	mu      sync.Mutex
	creates map[string]int
	fetches []string // the UID sets of each FETCH BODY[]
	// refuse answers a CREATE of that folder; appendErr every APPEND.
	refuse    map[string]*goimap.Error
	appendErr *goimap.Error
	// dropAfter, when more than 0, ends the session after that many
	// messages of the next FETCH BODY[].
	dropAfter int
}

// probe is a memory-server session under probes.
type probe struct {
	imapserver.SessionIMAP4rev2
	conn *imapserver.Conn
	p    *probes
}

func (s probe) Create(name string, opts *goimap.CreateOptions) error {
	s.p.mu.Lock()
	s.p.creates[name]++
	refuse := s.p.refuse[name]
	s.p.mu.Unlock()
	if refuse != nil {
		return refuse
	}
	return s.SessionIMAP4rev2.Create(name, opts)
}

func (s probe) Append(mbox string, r goimap.LiteralReader, opts *goimap.AppendOptions) (*goimap.AppendData, error) {
	s.p.mu.Lock()
	err := s.p.appendErr
	s.p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.SessionIMAP4rev2.Append(mbox, r, opts)
}

func (s probe) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, opts *goimap.FetchOptions) error {
	whole := len(opts.BodySection) > 0 && opts.BodySection[0].Specifier == goimap.PartSpecifierNone
	if !whole {
		return s.SessionIMAP4rev2.Fetch(w, numSet, opts)
	}
	s.p.mu.Lock()
	s.p.fetches = append(s.p.fetches, numSet.String())
	drop := s.p.dropAfter
	s.p.dropAfter = 0
	s.p.mu.Unlock()
	if uids, ok := numSet.(goimap.UIDSet); ok && drop > 0 {
		nums, _ := uids.Nums()
		err := s.SessionIMAP4rev2.Fetch(w, goimap.UIDSetNum(nums[:min(drop, len(nums))]...), opts)
		s.conn.NetConn().Close()
		return err
	}
	return s.SessionIMAP4rev2.Fetch(w, numSet, opts)
}

func probedServer(t *testing.T) (string, *probes) {
	p := &probes{creates: map[string]int{}, refuse: map[string]*goimap.Error{}}
	addr := memServerWith(t, func(c *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return probe{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), conn: c, p: p}
	})
	return addr, p
}

// The input asks for each folder's messages with one UID FETCH, the UIDs
// as ranges: 30 messages of INBOX are "1:30", not 30 commands.
func TestFetchAsksForRangesOncePerFolder(t *testing.T) {
	addr, p := probedServer(t)
	var msgs []stored
	for i, m := range sample(40) {
		m.folder = "INBOX"
		if i >= 30 {
			m.folder = "Archive"
		}
		msgs = append(msgs, m)
	}
	seed(t, login(t, addr, "src"), msgs)
	e := newEngine(t, imapToIMAP(addr, "keep", ""))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 40 {
		t.Fatalf("%v %v", st, err)
	}
	slices.Sort(p.fetches)
	if want := []string{"1:10", "1:30"}; !slices.Equal(p.fetches, want) {
		t.Fatalf("FETCH BODY[] of %q, want %q", p.fetches, want)
	}
}

// The server ends the session after five messages of a FETCH: the input
// logs in again and fetches the rest; every message arrives once.
func TestFetchGoesOnAfterTheServerDropsTheSession(t *testing.T) {
	addr, p := probedServer(t)
	var msgs []stored
	for _, m := range sample(20) {
		m.folder = "INBOX"
		msgs = append(msgs, m)
	}
	seed(t, login(t, addr, "src"), msgs)
	p.dropAfter = 5
	e := newEngine(t, imapToIMAP(addr, "delete", ""))
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 20 {
		t.Fatalf("%v %v", st, err)
	}
	if len(p.fetches) != 2 || p.fetches[0] != "1:20" || p.fetches[1] != "6:20" {
		t.Fatalf("FETCH BODY[] of %q, want 1:20 then 6:20", p.fetches)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 20 {
		t.Fatalf("%d at the destination, want 20", n)
	}
	if n := len(dump(t, login(t, addr, "src"))); n != 0 {
		t.Fatalf("%d left at the source", n)
	}
}

// A CREATE the server refuses is a permanent refusal of the folder (not of
// the message: plugin.RefusedPlaceError) with the server's reason, asked
// once however many messages are for that folder; a folder that came is
// CREATEd once, whatever comes after.
func TestEachFolderIsCreatedOnceAndARefusalIsPermanent(t *testing.T) {
	addr, p := probedServer(t)
	p.refuse["Bad"] = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Character not allowed in mailbox name"}
	o := newOutput(t, addr, nil)
	// Made ahead, as a migration checks its folders (MakePlace), then
	// delivered to: still one CREATE each.
	if err := o.MakePlace(context.Background(), "Archive", ""); err != nil {
		t.Fatalf("MakePlace Archive: %v", err)
	}
	if rp, ok := plugin.PlaceRefused(o.MakePlace(context.Background(), "Bad", "")); !ok || rp.Place != "Bad" || !strings.Contains(rp.Error(), "Character not allowed") {
		t.Fatalf("MakePlace Bad: %v, want the folder refused with the server's reason", rp)
	}
	var msgs []*message.Message
	for i := range 12 {
		msgs = append(msgs, testMessage(i, []string{"Bad", "Lists/go", "Lists", "Archive"}[i%4]))
	}
	for i, r := range deliverAll(o, msgs, false) {
		if msgs[i].Folder == "Bad" {
			if rp, ok := plugin.PlaceRefused(r.err); !ok || rp.Place != "Bad" || !plugin.IsPermanent(r.err) || !strings.Contains(r.err.Error(), "Character not allowed") {
				t.Errorf("message for Bad: %v, want the folder refused for good, with the server's reason", r.err)
			}
			continue
		}
		if r.err != nil {
			t.Errorf("message %d for %s: %v", i, msgs[i].Folder, r.err)
		}
	}
	for _, f := range []string{"Bad", "Lists/go", "Lists", "Archive"} {
		if p.creates[f] != 1 {
			t.Errorf("CREATE %s sent %d times, want once", f, p.creates[f])
		}
	}
}

// A server that asks to wait ([THROTTLED], Microsoft's "Suggested Backoff
// Time", even on a BAD) makes the output wait that long: temporary, not in
// doubt, never the message's fault.
func TestAThrottledAppendWaits(t *testing.T) {
	cases := []struct {
		answer *goimap.Error
		wait   time.Duration
	}{
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "THROTTLED", Text: "slow down"}, throttleWait},
		{&goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Request is throttled. Suggested Backoff Time: 1500 milliseconds"}, 1500 * time.Millisecond},
		{&goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeOverQuota, Text: "full"}, overQuotaWait},
	}
	for _, c := range cases {
		t.Run(c.answer.Text, func(t *testing.T) {
			addr, p := probedServer(t)
			p.appendErr = c.answer
			o := newOutput(t, addr, nil)
			r := deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false)[0]
			d, ok := plugin.ThrottledFor(r.err)
			if !ok || d != c.wait || plugin.IsPermanent(r.err) || plugin.IsInDoubt(r.err) {
				t.Fatalf("%v: waits %v (%v), permanent %v, in doubt %v; want a temporary wait of %v",
					r.err, d, ok, plugin.IsPermanent(r.err), plugin.IsInDoubt(r.err), c.wait)
			}
		})
	}
}

// Flags set and cleared at the source are set and cleared on the copy
// APPENDUID named, or, where that is not known, on the copy found by
// identity; keep_flags = false changes nothing; sync_deletes deletes the
// copy, and a copy that is gone is ErrNotHeld.
func TestTheOutputFollowsFlagsAndDeletions(t *testing.T) {
	addr := memServer(t)
	o := newOutput(t, addr, func(o *Output) { o.SyncDeletes = true })
	msgs := []*message.Message{testMessage(1, "Archive"), testMessage(2, "Archive")}
	res := deliverAll(o, msgs, false)
	for i, r := range res {
		if r.err != nil || r.placed == "" {
			t.Fatalf("message %d: %v, placed %q", i, r.err, r.placed)
		}
	}
	ctx := context.Background()
	flagsOf := func() map[string][]string {
		out := map[string][]string{}
		for _, m := range dump(t, login(t, addr, "dst")) {
			out[message.New(m.data, message.Source{}).MessageID()] = m.flags
		}
		return out
	}
	if err := o.SetFlags(ctx, plugin.Placement{Where: res[0].placed}, []string{`\Flagged`, "$label"}, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	byIdentity := plugin.Placement{Folder: "Archive", Identity: msgs[1].Identity()}
	if err := o.SetFlags(ctx, byIdentity, []string{`\Answered`}, nil); err != nil {
		t.Fatal(err)
	}
	got := flagsOf()
	if !slices.Equal(got["p1@x.test"], []string{"$label", `\Flagged`}) || !slices.Equal(got["p2@x.test"], []string{`\Answered`, `\Seen`}) {
		t.Fatalf("flags at the destination: %v", got)
	}
	held, err := o.HoldsFlags(ctx, "Archive", "")
	if err != nil || len(held["p1@x.test"]) != 1 || !slices.Equal(held["p1@x.test"][0], []string{"$label", `\Flagged`}) {
		t.Fatalf("HoldsFlags: %v %v", held, err)
	}
	o.KeepFlags = new(bool)
	if err := o.SetFlags(ctx, plugin.Placement{Where: res[0].placed}, []string{`\Deleted`}, nil); err != nil {
		t.Fatal(err)
	}
	if got := flagsOf(); !slices.Equal(got["p1@x.test"], []string{"$label", `\Flagged`}) {
		t.Fatalf("keep_flags = false changed flags: %v", got)
	}
	o.KeepFlags = nil
	if !o.MirrorsDeletes() {
		t.Fatal("sync_deletes is set")
	}
	if err := o.Delete(ctx, plugin.Placement{Where: res[0].placed}); err != nil {
		t.Fatal(err)
	}
	if got := flagsOf(); len(got) != 1 || got["p2@x.test"] == nil {
		t.Fatalf("after the delete: %v", got)
	}
	if err := o.Delete(ctx, plugin.Placement{Where: res[0].placed}); !errors.Is(err, plugin.ErrNotHeld) {
		t.Fatalf("deleting it again: %v, want ErrNotHeld", err)
	}
	if err := o.SetFlags(ctx, plugin.Placement{Where: res[0].placed, Folder: "Archive", Identity: msgs[0].Identity()}, []string{`\Seen`}, nil); !errors.Is(err, plugin.ErrNotHeld) {
		t.Fatalf("flags of a deleted copy: %v, want ErrNotHeld", err)
	}
}

// In keep mode against the memory server (no CONDSTORE: every listing is
// whole), a flag changed and a message deleted at the source after
// delivery reach the destination with sync_deletes.
func TestFlagChangesAndDeletionsReachTheDestination(t *testing.T) {
	addr := memServer(t)
	src := login(t, addr, "src")
	var msgs []stored
	for i, m := range sample(6) {
		m.folder, m.flags = "INBOX", nil
		m.data = []byte(strings.Replace(string(m.data), "\r\n", "\r\nX-N: "+string(rune('a'+i))+"\r\n", 1))
		msgs = append(msgs, m)
	}
	seed(t, src, msgs)
	e := newEngine(t, imapToIMAP(addr, "keep", "sync_deletes = true\n"))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 6 {
		t.Fatalf("%v %v", st, err)
	}
	if _, _, err := src.examine("INBOX", true); err != nil {
		t.Fatal(err)
	}
	if err := src.addFlags([]uint32{1, 2}, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	if err := src.remove([]uint32{3}); err != nil {
		t.Fatal(err)
	}
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 0 {
		t.Fatalf("second poll: %v %v", st, err)
	}
	got := dump(t, login(t, addr, "dst"))
	flagged := 0
	for _, m := range got {
		if slices.Contains(m.flags, `\Flagged`) {
			flagged++
		}
	}
	if len(got) != 5 || flagged != 2 {
		t.Fatalf("the destination holds %d messages, %d flagged; want 5 and 2", len(got), flagged)
	}
}
