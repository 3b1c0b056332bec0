package gmailimaptest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func dial(t *testing.T, s *Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// The account shows as Gmail shows one: X-GM-EXT-1, the special folders
// with their attributes, a folder per label, each message once in All
// Mail with its labels and id, Spam and Trash apart.
func TestTheFakeShowsAnAccountAsGmailDoes(t *testing.T) {
	s := New(t)
	ids := s.Add(
		Message{Labels: []string{`\Inbox`, "Work/2024", "Reçus"}, Flags: []string{`\Seen`}, Body: []byte("Subject: a\r\n\r\na\r\n")},
		Message{Labels: []string{`\Sent`, `\Starred`}, Body: []byte("Subject: b\r\n\r\nb\r\n")},
		Message{Labels: []string{"Work/2024"}, Spam: true, Body: []byte("Subject: c\r\n\r\nc\r\n")},
	)
	c := dial(t, s)
	if !c.Caps().Has(Cap) {
		t.Fatalf("capabilities %v", c.Caps())
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		attrs[l.Mailbox] = l.Attrs
	}
	for name, attr := range map[string]imap.MailboxAttr{AllMail: imap.MailboxAttrAll, SentMail: imap.MailboxAttrSent,
		Spam: imap.MailboxAttrJunk, Trash: imap.MailboxAttrTrash, Starred: imap.MailboxAttrFlagged, parent: imap.MailboxAttrNoSelect} {
		if !slices.Contains(attrs[name], attr) {
			t.Errorf("%s: attributes %v, want %s", name, attrs[name], attr)
		}
	}
	for _, name := range []string{"INBOX", "Work/2024", "Reçus"} {
		if _, ok := attrs[name]; !ok {
			t.Errorf("no folder %s in %v", name, attrs)
		}
	}
	count := func(folder string) uint32 {
		data, err := c.Select(folder, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return data.NumMessages
	}
	for folder, want := range map[string]uint32{"INBOX": 1, AllMail: 2, "Work/2024": 1, SentMail: 1, Starred: 1, Spam: 1, Trash: 0} {
		if n := count(folder); n != want {
			t.Errorf("%s holds %d, want %d", folder, n, want)
		}
	}
	count(AllMail)
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, GmailMsgID: true, GmailLabels: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].GmailMsgID != ids[0] || !slices.Equal(msgs[0].GmailLabels, []string{`\Inbox`, "Work/2024", "Reçus"}) ||
		msgs[1].GmailMsgID != ids[1] || !slices.Contains(msgs[1].Flags, imap.FlagFlagged) {
		t.Fatalf("All Mail: %+v", msgs)
	}
	if s.BodiesSent() != 0 {
		t.Fatalf("a listing sent %d bodies", s.BodiesSent())
	}
}

// A storm armed at some point hits the commands it names, as many times
// as it was told, in the words Gmail and Microsoft use.
func TestAStormHitsWhatItNames(t *testing.T) {
	s := New(t)
	s.Add(Sample(10)...)
	c := dial(t, s)
	if _, err := c.Select(AllMail, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	s.Storm(3, 1, Fault{Command: "fetch", Reply: Throttled})
	s.Storm(3, 1, Fault{Command: "FETCH", After: 1, Reply: Backoff, Wait: 1500 * time.Millisecond})
	bodies := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
	first := imap.SeqSetNum(1, 2, 3)
	if msgs, err := c.Fetch(first, bodies).Collect(); err != nil || len(msgs) != 3 {
		t.Fatalf("before the storm: %d messages, %v", len(msgs), err)
	}
	var ie *imap.Error
	if _, err := c.Fetch(all, bodies).Collect(); !errors.As(err, &ie) || ie.Code != "THROTTLED" {
		t.Fatalf("in the storm: %v, want NO [THROTTLED]", err)
	}
	msgs, err := c.Fetch(all, bodies).Collect()
	if !errors.As(err, &ie) || !strings.Contains(ie.Text, "Suggested Backoff Time: 1500 milliseconds") || len(msgs) != 1 {
		t.Fatalf("in the storm: %d messages, %v; want one, then Microsoft's backoff", len(msgs), err)
	}
	if calm, faults := s.Calm(); !calm || faults != 2 {
		t.Fatalf("calm %v after %d faults", calm, faults)
	}
	if msgs, err := c.Fetch(all, bodies).Collect(); err != nil || len(msgs) != 10 {
		t.Fatalf("after the storm: %d messages, %v", len(msgs), err)
	}
	if n := s.BodiesSent(); n != 3+1+10 {
		t.Fatalf("%d bodies sent", n)
	}

	s.Storm(0, 1, Fault{Command: "FETCH", After: 2, Reply: Drop})
	if msgs, err := c.Fetch(all, bodies).Collect(); err == nil || len(msgs) > 2 {
		t.Fatalf("a dropped session: %d messages, %v", len(msgs), err)
	}
	c = dial(t, s)
	s.Storm(0, 1, Fault{Command: "SELECT", Reply: Unavailable})
	if _, err := c.Select(AllMail, nil).Wait(); !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("SELECT: %v, want BYE [UNAVAILABLE]", err)
	}
}

// A label added or taken away shows the message in its folder or not;
// STORE changes flags for every folder; an EXPUNGE in a label's folder
// takes the label away.
func TestLabelsAndFlagsChange(t *testing.T) {
	s := New(t)
	id := s.Add(Message{Labels: []string{`\Inbox`}, Body: []byte("Subject: x\r\n\r\nx\r\n")})[0]
	s.Label(id, "Later", false)
	c := dial(t, s)
	if data, err := c.Select("Later", nil).Wait(); err != nil || data.NumMessages != 1 {
		t.Fatalf("Later: %v %v", data, err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	m := s.Messages()[0]
	if slices.Contains(m.Labels, "Later") || !slices.Contains(m.Labels, `\Inbox`) || slices.Contains(m.Flags, `\Deleted`) {
		t.Fatalf("after EXPUNGE in Later: %+v", m)
	}
}
