package imap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/imap/gmailimaptest"
	"github.com/mailflow/mailflow/engine/plugin"
)

// gmailToIMAP is a config that moves the fake Gmail g into the memory
// server's "dst", with extra lines for the input.
func gmailToIMAP(g *gmailimaptest.Server, dst, onSettled, extra string) string {
	return fmt.Sprintf(`[[input]]
name = "gmail"
type = "imap"
address = %q
tls = "none"
allow_plaintext_auth = true
username = %q
password = %q
folders = ["*"]
on_settled = %q
gmail = "on"
pipeline = "move"
%s
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
`, g.Addr, g.User, g.Password, onSettled, extra, dst)
}

// Gmail's All Mail is read once; under each rule the destination holds
// each message once per place the rule gives it, with its flags, \Starred
// as \Flagged and \Important as $Important; Spam and Trash only when
// asked; each body is fetched once whatever its copies; a second poll
// moves nothing.
func TestGmailLabelsBecomeFoldersKeywordsOrTheFirst(t *testing.T) {
	msgs := gmailimaptest.Sample(120)
	for _, c := range []struct {
		rule      string
		spamTrash bool
	}{{"folders", false}, {"keywords", false}, {"first", false}, {"folders", true}} {
		t.Run(fmt.Sprintf("%s spam_trash=%v", c.rule, c.spamTrash), func(t *testing.T) {
			g := gmailimaptest.New(t)
			g.Add(msgs...)
			dst := memServer(t)
			e := newEngine(t, gmailToIMAP(g, dst, "keep", fmt.Sprintf("gmail_labels = %q\ngmail_spam_trash = %v", c.rule, c.spamTrash)))
			want := gmailimaptest.Want(c.rule, msgs, c.spamTrash)
			copies := int64(gmailimaptest.Copies(want))
			st, err := e.PollOnce(context.Background(), "gmail")
			if err != nil || st.Delivered != copies || st.Deferred != 0 || st.Quarantined != 0 {
				t.Fatalf("%+v %v; want %d delivered", st, err, copies)
			}
			if d := gmailimaptest.Diff(want, gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
				t.Fatalf("the destination holds:%s", d)
			}
			for id, n := range g.Fetches() {
				if n != 1 {
					t.Fatalf("message %d fetched %d times", id, n)
				}
			}
			if n := g.BodiesSent(); c.rule == "folders" && int64(n) >= copies {
				t.Fatalf("%d bodies fetched for %d copies", n, copies)
			}
			st, err = e.PollOnce(context.Background(), "gmail")
			if err != nil || st.Delivered != 0 || st.Skipped != copies || g.BodiesSent() != len(g.Fetches()) {
				t.Fatalf("second poll: %+v %v", st, err)
			}
		})
	}
}

// A label added at Gmail adds one copy in its folder, and nothing else
// moves; a run with a fresh ledger (skip_existing) copies nothing twice.
func TestALabelAddedLaterAddsOneCopy(t *testing.T) {
	g := gmailimaptest.New(t)
	ids := g.Add(gmailimaptest.Sample(30)...)
	dst := memServer(t)
	conf := gmailToIMAP(g, dst, "keep", "") + "skip_existing = true\n"
	e := newEngine(t, conf)
	first, err := e.PollOnce(context.Background(), "gmail")
	if err != nil || first.Deferred != 0 {
		t.Fatalf("%+v %v", first, err)
	}
	g.Label(ids[3], "Later/On", false)
	st, err := e.PollOnce(context.Background(), "gmail")
	if err != nil || st.Delivered != 1 || st.Skipped != first.Delivered {
		t.Fatalf("after a label was added: %+v %v", st, err)
	}
	if d := gmailimaptest.Diff(gmailimaptest.Want("folders", g.Messages(), false), gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
		t.Fatalf("the destination holds:%s", d)
	}
	fresh := newEngine(t, conf)
	st, err = fresh.PollOnce(context.Background(), "gmail")
	if err != nil || st.Delivered != first.Delivered+1 {
		t.Fatalf("with a fresh ledger: %+v %v", st, err)
	}
	if d := gmailimaptest.Diff(gmailimaptest.Want("folders", g.Messages(), false), gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
		t.Fatalf("with a fresh ledger the destination holds:%s", d)
	}
}

// Throttling in the middle of a FETCH: Gmail's NO [THROTTLED] (no time
// named: a short wait, twice as long if it comes again), Microsoft's
// Suggested Backoff Time (its time), and a dropped session (logged in
// again at once). What was fetched before is delivered, the poll says how
// long to wait, and the next poll fetches the rest: nothing lost, nothing
// twice.
func TestGmailThrottlingStopsThePollAndTheNextGoesOn(t *testing.T) {
	msgs := gmailimaptest.Sample(60)
	g := gmailimaptest.New(t)
	g.Add(msgs...)
	dst := memServer(t)
	e := newEngine(t, gmailToIMAP(g, dst, "keep", ""))
	want := gmailimaptest.Want("folders", msgs, false)
	copies := int64(gmailimaptest.Copies(want))
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", After: 10, Reply: gmailimaptest.Throttled})
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", Reply: gmailimaptest.Throttled})
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", After: 10, Reply: gmailimaptest.Backoff, Wait: 300 * time.Millisecond})
	g.Storm(0, 1, gmailimaptest.Fault{Command: "FETCH", After: 10, Reply: gmailimaptest.Drop})
	var delivered int64
	waits := []time.Duration{firstThrottleWait, 2 * firstThrottleWait, 300 * time.Millisecond}
	for i, want := range waits {
		st, err := e.PollOnce(context.Background(), "gmail")
		d, ok := plugin.ThrottledFor(err)
		if !ok || d != want {
			t.Fatalf("poll %d: %+v %v (a wait of %v, %v); want a wait of %v", i+1, st, err, d, ok, want)
		}
		delivered += st.Delivered
	}
	st, err := e.PollOnce(context.Background(), "gmail")
	if err != nil {
		t.Fatalf("after the storm: %+v %v", st, err)
	}
	delivered += st.Delivered
	if calm, faults := g.Calm(); !calm || faults != 4 || delivered != copies {
		t.Fatalf("calm %v after %d faults; %d delivered, want %d", calm, faults, delivered, copies)
	}
	if d := gmailimaptest.Diff(want, gmailimaptest.Holds(t, dst, "dst", "p")); d != "" {
		t.Fatalf("the destination holds:%s", d)
	}
}

// A Gmail without X-GM-EXT-1 is no Gmail: "on" says so, "auto" reads its
// folders as they are; "move:" cannot take a message out of All Mail.
func TestGmailOnlyWhereTheServerIsGmail(t *testing.T) {
	addr := memServer(t)
	seed(t, login(t, addr, "src"), sample(4))
	conf := strings.ReplaceAll(imapToIMAP(addr, "keep", ""), `on_settled = "keep"`, `on_settled = "keep"`+"\ngmail = %q")
	e := newEngine(t, fmt.Sprintf(conf, "on"))
	if _, err := e.PollOnce(context.Background(), "old"); err == nil || !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "X-GM-EXT-1") {
		t.Fatalf(`gmail = "on" without X-GM-EXT-1: %v`, err)
	}
	e = newEngine(t, fmt.Sprintf(conf, "auto"))
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 4 {
		t.Fatalf(`gmail = "auto" without X-GM-EXT-1: %+v %v`, st, err)
	}
	in := &Input{OnSettled: "move:Done", GmailSource: GmailSource{Gmail: "on"}}
	in.Address, in.TLS, in.Username, in.Password, in.AllowPlaintextAuth = addr, "none", "src", "p", true
	if err := in.Init(); err == nil || !strings.Contains(err.Error(), "All Mail") {
		t.Fatalf("move with gmail on: %v", err)
	}
}

// on_settled = "delete" deletes a message at Gmail (into its Trash, as
// Gmail does with one expunged from All Mail) with the last of its
// copies, never with one while another may not have gone.
func TestGmailDeletesAMessageWithItsLastCopy(t *testing.T) {
	g := gmailimaptest.New(t)
	g.Add(gmailimaptest.Message{Labels: []string{`\Inbox`, "Work"}, Body: []byte("Message-ID: <a@x>\r\nSubject: a\r\n\r\na\r\n")},
		gmailimaptest.Message{Labels: []string{"Work"}, Body: []byte("Message-ID: <b@x>\r\nSubject: b\r\n\r\nb\r\n")})
	dst := memServer(t)
	e := newEngine(t, gmailToIMAP(g, dst, "delete", ""))
	if st, err := e.PollOnce(context.Background(), "gmail"); err != nil || st.Delivered != 3 {
		t.Fatalf("%+v %v", st, err)
	}
	for _, m := range g.Messages() {
		if !m.Trash {
			t.Fatalf("not deleted: %+v", m)
		}
	}

	s := &session{in: &Input{action: "delete"}, gm: &gmailView{copies: map[ref]int{{"all", 1}: 2, {"all", 2}: 1}}}
	a1 := plugin.Item{ID: "gm/1/INBOX", Ref: ref{"all", 1}}
	a2 := plugin.Item{ID: "gm/1/Work", Ref: ref{"all", 1}}
	b := plugin.Item{ID: "gm/2/Work", Ref: ref{"all", 2}}
	now, later := s.gmailCommit([]plugin.Item{a1, b})
	if len(now) != 1 || now[0].ID != b.ID || len(later) != 1 || later[0].ID != a1.ID {
		t.Fatalf("one of two copies settled: now %v, later %v", now, later)
	}
	if now, later = s.gmailCommit([]plugin.Item{a1, a2}); len(now) != 2 || len(later) != 0 {
		t.Fatalf("both copies settled: now %v, later %v", now, later)
	}
}

func TestGmailPlaces(t *testing.T) {
	labels := []string{`\Important`, `\Inbox`, "Zeta", `\Sent`, "alpha/b", `\Starred`, "a b", `\Muted`}
	cases := []struct {
		rule  labelRule
		want  []string
		flags []string
	}{
		{labelFolders, []string{"Zeta", "a b", "alpha/b", "INBOX", "Sent"}, []string{`\Seen`, "$Important", `\Flagged`}},
		{labelFirst, []string{"Zeta", "a b", "alpha/b", "INBOX", "Sent"}, []string{`\Seen`, "$Important", `\Flagged`}},
		{labelKeywords, []string{"INBOX"}, []string{`\Seen`, "$Important", `\Flagged`, "Zeta", "a_b", "alpha/b"}},
	}
	for _, c := range cases {
		places, flags := c.rule.places(labels, []string{`\Seen`}, nil)
		var got []string
		for _, p := range places {
			got = append(got, p.folder)
		}
		if !slices.Equal(got, c.want) || !slices.Equal(flags, c.flags) {
			t.Errorf("%s: %v %v, want %v %v", c.rule, got, flags, c.want, c.flags)
		}
	}
	if places, _ := labelFolders.places([]string{`\Important`}, nil, nil); len(places) != 1 || places[0] != archivePlace {
		t.Errorf("no label: %v", places)
	}
	if places, _ := labelFolders.places([]string{`\Inbox`}, nil, &spamPlace); len(places) != 1 || places[0] != spamPlace {
		t.Errorf("spam: %v", places)
	}
}

// max_bytes_per_day lets through what fits, a message's copies with it,
// and says how long until the next would.
func TestMaxBytesPerDayOfTheInput(t *testing.T) {
	in := &Input{MaxBytesPerDay: 1000, day: newDayBudget(1000)}
	items := []plugin.Item{
		{ID: "a/INBOX", Size: 400, Ref: ref{"all", 1}}, {ID: "a/Work", Size: 400, Ref: ref{"all", 1}},
		{ID: "b", Size: 400, Ref: ref{"all", 2}}, {ID: "c", Size: 400, Ref: ref{"all", 3}}, {ID: "c/Work", Size: 400, Ref: ref{"all", 3}},
	}
	got, err := in.withinDay(items)
	d, ok := plugin.ThrottledFor(err)
	if len(got) != 3 || got[2].ID != "b" || !ok || d <= 0 || d > 24*time.Hour || !strings.Contains(err.Error(), "2 messages wait") {
		t.Fatalf("%v; %v (%v)", got, err, d)
	}
}

// Gmail's folders are not the places its view lists: a verification is
// not given their states as if they were.
func TestGmailViewListsNoServerFolders(t *testing.T) {
	s := &session{in: &Input{}, c: &conn{caps: goimap.CapSet{goimap.CapCondStore: {}}}, gm: &gmailView{}}
	if _, err := s.Folders(context.Background()); err != errGmailFolders {
		t.Fatalf("Folders in Gmail's view: %v", err)
	}
}
