package migrate_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/migrate"
)

// waits is an Observer that counts the waits a server asked for.
type waits struct{ n atomic.Int64 }

func (*waits) Started(*migrate.Meter)          {}
func (*waits) Message(engine.MessageEvent)     {}
func (w *waits) Waiting(string, time.Duration) { w.n.Add(1) }

// fakeGmail is a fake Gmail API for me@example.com that takes the bearer
// token "tok"; onImport, if set, is called after each import.
func fakeGmail(t *testing.T, onImport func(s *gmailtest.Server, n int)) *gmailtest.Server {
	t.Helper()
	var fake *gmailtest.Server
	opts := gmailtest.Options{User: "me@example.com", Tokens: []string{"tok"}}
	if onImport != nil {
		opts.OnImport = func(n int) { onImport(fake, n) }
	}
	fake, err := gmailtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

// gmailURL is the --to of a migration into fake, with extra options.
func gmailURL(fake *gmailtest.Server, extra string) string {
	return "gmail://me@example.com?client_id=mailflow-test&api_url=" + url.QueryEscape(fake.URL) + extra
}

// logIn stores the token the fake takes as "mailflow auth login" would,
// in the migration's state.
func logIn(t *testing.T, state string) {
	t.Helper()
	tok := &oauth.Token{AccessToken: "tok", Expiry: time.Now().Add(time.Hour), Account: "me@example.com"}
	if err := oauth.NewStore(state).Save("gmail", tok); err != nil {
		t.Fatal(err)
	}
}

// labelNames are the names of a message's labels in fake, sorted.
func labelNames(fake *gmailtest.Server, m gmailtest.Message) []string {
	var out []string
	for _, l := range fake.Labels() {
		if slices.Contains(m.LabelIDs, l.ID) {
			out = append(out, l.Name)
		}
	}
	slices.Sort(out)
	return out
}

// writeMbox writes msgs as an mboxrd file, each under a From_ line.
func writeMbox(t *testing.T, path string, msgs ...string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, _ := mbox.NewWriter(f, mbox.Mboxrd)
	for i, m := range msgs {
		if _, err := w.WriteMessage(fmt.Sprintf("From 1789923658%04d@xxx Wed Jan 05 12:34:56 +0000 2022", i), strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// takeoutMail is message n as Google Takeout writes it.
func takeoutMail(n int, labels string, extra ...string) string {
	h := fmt.Sprintf("X-GM-THRID: 17%d\r\n", n)
	if labels != "" {
		h += "X-Gmail-Labels: " + labels + "\r\n"
	}
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + fmt.Sprintf("Message-ID: <takeout-%d@example.org>\r\nDate: Wed, 0%d Jan 2022 12:34:56 +0000\r\nFrom: a@example.org\r\nSubject: takeout %d\r\n\r\nFrom a body line\r\n>From another\r\nbody %d\r\n", n, n%10, n, n)
}

// A Google Takeout into Gmail: every message imported once under all
// its labels (Gmail's own by id, a name Gmail keeps for itself with "_",
// a comma made ";", an encoded label decoded), read as it was read; Spam
// and Chats left out; a plain mbox message in the inbox. The first run
// asks for the login and touches nothing; a run again moves nothing
// twice; the report says that Gmail was not read back.
func TestTakeoutIntoGmailWithAllItsLabels(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "All mail Including Spam and Trash.mbox")
	writeMbox(t, path,
		takeoutMail(1, "Inbox,Opened,Category Updates"),
		takeoutMail(2, "Archived,Work,Opened,Muted"),
		takeoutMail(3, "Sent,Opened"),
		takeoutMail(4, "Inbox,Unread,Important,Starred"),
		takeoutMail(5, "Receipts,Clients/Acme"),
		takeoutMail(6, "Spam,Unread"),
		takeoutMail(7, "Chat"),
		takeoutMail(8, "Drafts"),
		takeoutMail(9, "", "Status: RO"),
		takeoutMail(10, "=?UTF-8?Q?Gesch=C3=A4ftlich?=,Inbox"),
		takeoutMail(11, `"Smith, John",Inbox,Unread`, "X-Mailflow-Labels: TRASH"),
	)
	fake := fakeGmail(t, nil)
	state := filepath.Join(dir, "state")
	plan := migrate.Plan{From: migrate.Endpoint{URL: "mbox://" + path}, To: migrate.Endpoint{URL: gmailURL(fake, "")}, StateDir: state}

	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Class() != migrate.ClassPlan || !strings.Contains(r.Errors[0].Message, "log in to me@example.com once") ||
		!strings.Contains(r.Errors[0].Message, "mailflow auth login -c "+state+" gmail") {
		t.Fatalf("without a login: %+v; want the command that logs in", r.Errors)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Fatalf("%d requests before the login", n)
	}

	logIn(t, state)
	r = migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Result() != migrate.Done || r.Moved != 9 {
		t.Fatalf("moved %d, result %v, errors %+v, refused %+v", r.Moved, r.Result(), r.Errors, r.Refused)
	}
	if r.Verified() != "n/a" || len(r.Unverified) != 1 || !strings.Contains(r.Unverified[0].Why, "does not read Gmail back") {
		t.Fatalf("verified %q, unverified %+v: the report must say that Gmail was not compared", r.Verified(), r.Unverified)
	}
	want := map[int][]string{
		1:  {"CATEGORY_UPDATES", "INBOX"},
		2:  {"Work", "_Muted"},
		3:  {"SENT"},
		4:  {"IMPORTANT", "INBOX", "STARRED", "UNREAD"},
		5:  {"Clients/Acme", "Receipts"},
		8:  {"_Drafts"},
		9:  {"INBOX"},
		10: {"Geschäftlich", "INBOX"},
		11: {"INBOX", "Smith; John", "UNREAD"},
	}
	for n, labels := range want {
		m, err := fake.Find(fmt.Sprintf("takeout-%d@example.org", n))
		if err != nil {
			t.Errorf("message %d: %v", n, err)
			continue
		}
		if got := labelNames(fake, m); !slices.Equal(got, labels) {
			t.Errorf("message %d: labels %q, want %q", n, got, labels)
		}
		if day := m.InternalDate.UTC().Day(); day != n%10 && n%10 != 0 {
			t.Errorf("message %d: dated %v", n, m.InternalDate)
		}
	}
	if len(fake.Messages()) != 9 || fake.LabelID("Clients") == "" {
		t.Fatalf("%d messages in Gmail; labels %+v", len(fake.Messages()), fake.Labels())
	}

	again := migrate.Run(context.Background(), plan, migrate.Options{})
	if again.Result() != migrate.Done || again.Moved != 0 || again.AlreadyMoved != 9 || len(fake.Messages()) != 9 {
		t.Fatalf("again: moved %d, already %d, errors %+v; %d in Gmail", again.Moved, again.AlreadyMoved, again.Errors, len(fake.Messages()))
	}
}

// An IMAP mailbox into Gmail: each folder a label, the ones Gmail has by
// their ids, an archive none; read and flagged as they were. With
// archive=true and a label of its own for all, nothing is in the inbox
// and nothing unread.
func TestIMAPIntoGmailLabelsFromFolders(t *testing.T) {
	for _, archive := range []bool{false, true} {
		t.Run(fmt.Sprintf("archive=%v", archive), func(t *testing.T) {
			addr := imapServer(t)
			src := imapLogin(t, addr, "src")
			put := func(folder string, n int, flags ...goimap.Flag) {
				src.Create(folder, nil).Wait()
				msg := fmt.Sprintf("Message-ID: <f%d@example.org>\r\nDate: Mon, 0%d Jan 2024 10:00:00 +0000\r\nFrom: a@example.org\r\nSubject: %d\r\n\r\nbody\r\n", n, n, n)
				cmd := src.Append(folder, int64(len(msg)), &goimap.AppendOptions{Flags: flags})
				cmd.Write([]byte(msg))
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			put("INBOX", 1)
			put("INBOX", 2, goimap.FlagSeen, goimap.FlagFlagged)
			put("Sent", 3, goimap.FlagSeen)
			put("Work", 4)
			put("Work/2024", 5, goimap.FlagSeen)
			put("Junk", 6)
			put("Archive", 7, goimap.FlagSeen)
			fake := fakeGmail(t, nil)
			extra := ""
			if archive {
				extra = "&archive=true&label=Old+mailbox"
			}
			t.Setenv("MF_MIGRATE_TEST_PW", "p")
			plan := migrate.Plan{From: migrate.Endpoint{URL: "imap://src@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
				To: migrate.Endpoint{URL: gmailURL(fake, extra)}, StateDir: filepath.Join(t.TempDir(), "state"), AllowPlaintextAuth: true}
			logIn(t, plan.StateDir)
			r := migrate.Run(context.Background(), plan, migrate.Options{})
			if r.Result() != migrate.Done || r.Moved != 7 {
				t.Fatalf("moved %d, errors %+v, refused %+v", r.Moved, r.Errors, r.Refused)
			}
			want := map[int][]string{
				1: {"INBOX", "UNREAD"},
				2: {"INBOX", "STARRED"},
				3: {"SENT"},
				4: {"UNREAD", "Work"},
				5: {"Work/2024"},
				6: {"SPAM", "UNREAD"},
				7: nil,
			}
			for n, labels := range want {
				if archive {
					labels = slices.DeleteFunc(slices.Clone(labels), func(l string) bool { return l == "INBOX" || l == "UNREAD" })
					labels = append(labels, "Old mailbox")
					slices.Sort(labels)
				}
				m, err := fake.Find(fmt.Sprintf("f%d@example.org", n))
				if err != nil {
					t.Errorf("message %d: %v", n, err)
					continue
				}
				if got := labelNames(fake, m); !slices.Equal(got, labels) {
					t.Errorf("message %d: labels %q, want %q", n, got, labels)
				}
			}
		})
	}
}

// A POP3 mailbox into Gmail through a 429 storm that starts mid-way: the
// messages it meets wait at the source while the run waits as asked, and
// then arrive, once each, none refused; the source is emptied.
func TestPOP3IntoGmailWaitsOutAStorm(t *testing.T) {
	src, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var msgs [][]byte
	for i := range 30 {
		msgs = append(msgs, fmt.Appendf(nil, "Message-ID: <s%d@example.org>\r\nDate: Mon, 01 Jan 2024 10:%02d:00 +0000\r\nFrom: a@example.org\r\nSubject: %d\r\n\r\nbody\r\n", i, i, i))
	}
	src.Add(msgs...)
	stormed := false
	fake := fakeGmail(t, func(s *gmailtest.Server, n int) {
		if n == 10 && !stormed {
			stormed = true
			s.StormFor(1500*time.Millisecond, time.Second)
		}
	})
	t.Setenv("MF_MIGRATE_TEST_PW", "p")
	plan := migrate.Plan{From: migrate.Endpoint{URL: "pop3://u@" + src.Addr() + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		To: migrate.Endpoint{URL: gmailURL(fake, "")}, StateDir: filepath.Join(t.TempDir(), "state"), AllowPlaintextAuth: true}
	logIn(t, plan.StateDir)
	obs := &waits{}
	r := migrate.Run(context.Background(), plan, migrate.Options{Observer: obs})
	if r.Result() != migrate.Done || r.Moved != 30 || len(r.Refused) != 0 {
		t.Fatalf("moved %d, errors %+v, refused %+v", r.Moved, r.Errors, r.Refused)
	}
	throttled := 0
	for _, q := range fake.Requests() {
		if q.Status == 429 {
			throttled++
		}
	}
	if throttled == 0 || obs.n.Load() == 0 {
		t.Fatalf("%d replies 429, %d waits: the storm was not met", throttled, obs.n.Load())
	}
	copies := map[string]int{}
	for _, m := range fake.Messages() {
		copies[m.MessageID]++
	}
	for i := range 30 {
		if id := fmt.Sprintf("s%d@example.org", i); copies[id] != 1 {
			t.Errorf("%s: %d copies", id, copies[id])
		}
	}
	if n := len(src.Messages()); n != 0 {
		t.Fatalf("%d left at the source", n)
	}
}
