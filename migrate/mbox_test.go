package migrate_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/migrate"
)

// A Takeout into IMAP: each message in the folder of its first label, or
// with ?labels=copies (or folders, the IMAP source's word) in the folder
// of each; the verification finds
// every one; a run again moves nothing. The file is named by a relative
// path and kept absolute in the saved plan.
func TestTakeoutIntoIMAPFoldersFromLabels(t *testing.T) {
	for _, mode := range []string{"first", "copies", "folders"} {
		t.Run(mode, func(t *testing.T) {
			addr := imapServer(t)
			dir := t.TempDir()
			t.Chdir(dir)
			writeMbox(t, filepath.Join(dir, "takeout.mbox"),
				takeoutMail(1, "Inbox,Opened"),
				takeoutMail(2, "Archived,Work,Receipts,Opened"),
				takeoutMail(3, "Work,Unread"),
				takeoutMail(4, "Chat"),
			)
			t.Setenv("MF_MIGRATE_TEST_PW", "p")
			plan := migrate.Plan{From: migrate.Endpoint{URL: "mbox:takeout.mbox?labels=" + mode},
				To: migrate.Endpoint{URL: "imap://dst@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"}, StateDir: "state", AllowPlaintextAuth: true}
			r := migrate.Run(context.Background(), plan, migrate.Options{})
			moved := map[string]int64{"first": 3, "copies": 4, "folders": 4}[mode]
			if r.Result() != migrate.Done || r.Moved != moved || r.Verified() != "yes" {
				t.Fatalf("moved %d (want %d), verified %s, errors %+v", r.Moved, moved, r.Verified(), r.Errors)
			}
			want := map[string]uint32{"INBOX": 1, "Work": 2, "Receipts": 0}
			if mode != "first" {
				want["Receipts"] = 1
			}
			for folder, n := range want {
				if got := count(t, addr, "dst", folder); got != n {
					t.Errorf("%s holds %d, want %d", folder, got, n)
				}
			}
			saved, err := migrate.LoadPlan(filepath.Join(dir, "state"))
			if err != nil || saved.From.URL != "mbox://"+filepath.Join(dir, "takeout.mbox")+"?labels="+mode {
				t.Fatalf("saved plan from %q (%v): want the file's absolute path, options kept", saved.From.URL, err)
			}
			again := migrate.Run(context.Background(), plan, migrate.Options{})
			if again.Moved != 0 || again.Result() != migrate.Done {
				t.Fatalf("again: moved %d, errors %+v", again.Moved, again.Errors)
			}
		})
	}
}

// What an mbox or gmail URL cannot be is said before anything runs, as a
// plan error that names the option.
func TestMboxAndGmailURLsAreChecked(t *testing.T) {
	fake := fakeGmail(t, nil)
	gm := gmailURL(fake, "")
	cases := []struct{ name, from, to, want string }{
		{"mbox with a host", "mbox://takeout.mbox", gm, "three slashes"},
		{"mbox without a file", "mbox:///", gm, "names no file"},
		{"unknown option", "mbox:///x.mbox?label=first", gm, "?label= is no option of mbox:// URLs"},
		{"copies into Gmail", "mbox:///x.mbox?labels=copies", gm, "into gmail:// it is one of all, first, none"},
		{"all into IMAP", "mbox:///x.mbox?labels=all", "imap://u@h", "into imap:// it is one of first, copies, folders, keywords, none"},
		{"not a bool", "mbox:///x.mbox?include_spam_trash=maybe", gm, "give true or false"},
		{"a variant that is none", "mbox:///x.mbox?variant=mboxq", gm, "variant"},
		{"gmail without a client id", "mbox:///x.mbox", "gmail://me@example.com", "client id of your Google Cloud app"},
		{"gmail with a password", "mbox:///x.mbox", "gmail://me:pw@example.com?client_id=x", "no password"},
		{"gmail with a path", "mbox:///x.mbox", "gmail://me@example.com/inbox?client_id=x", "give the Gmail address"},
		{"gmail is no source", "gmail://me@example.com", "imap://u@h", "the scheme must be one of imap://, imaps://, mbox://, pop3://, pop3s://"},
		{"mbox is no destination", "mbox:///x.mbox", "mbox:///y.mbox", "the scheme must be one of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := migrate.Plan{From: migrate.Endpoint{URL: c.from}, To: migrate.Endpoint{URL: c.to, PasswordEnv: "X"}, StateDir: t.TempDir()}
			r := migrate.Run(context.Background(), p, migrate.Options{})
			if r.Class() != migrate.ClassPlan || !strings.Contains(r.Errors[0].Message, c.want) {
				t.Fatalf("errors %+v; want a plan error with %q", r.Errors, c.want)
			}
		})
	}
	for name, edit := range map[string]func(*migrate.Plan){
		"--delete-source": func(p *migrate.Plan) { p.DeleteSource = true },
		"--folder-map":    func(p *migrate.Plan) { p.FolderMap = map[string]string{"Sent": "X"} },
	} {
		p := migrate.Plan{From: migrate.Endpoint{URL: "mbox:///x.mbox"}, To: migrate.Endpoint{URL: gm}, StateDir: t.TempDir()}
		edit(&p)
		if r := migrate.Run(context.Background(), p, migrate.Options{}); r.Class() != migrate.ClassPlan || !strings.Contains(r.Errors[0].Message, name) {
			t.Errorf("%s: errors %+v", name, r.Errors)
		}
	}
}

// The record of a migration into Gmail is found again when an option of
// the URL changes (another client id, a label): otherwise the run would
// start over and import the whole mailbox into Gmail a second time. The
// state directory is named after the file and the account alone, and a
// saved plan with other options is the same migration.
func TestGmailOptionsDoNotChangeTheRecord(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	plan := func(from, to string) migrate.Plan {
		return migrate.Plan{From: migrate.Endpoint{URL: from}, To: migrate.Endpoint{URL: to}}
	}
	a := plan("mbox:///m/Takeout.mbox", "gmail://me@gmail.com?client_id=a")
	b := plan("mbox:///m/Takeout.mbox?include_spam_trash=true", "gmail://Me@gmail.com?client_id=b&label=Old&archive=true")
	c := plan("mbox:///m/Other.mbox", "gmail://me@gmail.com?client_id=a")
	da, _ := a.DefaultStateDir()
	db, _ := b.DefaultStateDir()
	dc, _ := c.DefaultStateDir()
	if da != db || da == dc || !strings.HasPrefix(filepath.Base(da), "mbox-") {
		t.Fatalf("state dirs %s, %s, %s: want the first two the same, the third another", da, db, dc)
	}
	// The first run saves its plan (and asks for the login); the command
	// run again with other options resumes it.
	if r := migrate.Run(context.Background(), a, migrate.Options{}); r.Class() != migrate.ClassPlan || !strings.Contains(r.Errors[0].Message, "auth login") {
		t.Fatalf("first run: %+v", r.Errors)
	}
	if resumed, err := b.Resume(); !resumed || err != nil || b.StateDir != da {
		t.Fatalf("resumed %v, %v, state %s: want the first run's record", resumed, err, b.StateDir)
	}
}
