package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
)

// "mailflow migrate --to gmail://" as a person runs it: the first run
// says how to log in, and the login command it names finds the Gmail
// output in the migration's state; after the login the same command
// moves the mailbox into the inbox, and the report says that Gmail was
// not read back to verify it.
func TestMigrateIntoGmailAsAPersonRunsIt(t *testing.T) {
	src, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := range 5 {
		src.Add(fmt.Appendf(nil, "Message-ID: <cli%d@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:0%d +0000\r\nFrom: a@example.org\r\nSubject: %d\r\n\r\nbody\r\n", i, i, i))
	}
	fake, err := gmailtest.New(gmailtest.Options{User: "me@example.com", Tokens: []string{"tok"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("MF_POP3_PW", "p")
	args := []string{"migrate", "--from", "pop3://u@" + src.Addr() + "?tls=none", "--allow-plaintext-auth", "--password-env", "MF_POP3_PW",
		"--to", "gmail://me@example.com?client_id=mailflow-test&api_url=" + url.QueryEscape(fake.URL), "--state", state, "--progress", "none"}

	r := mailflow(t, args...)
	login := "mailflow auth login -c " + state + " gmail"
	if r.code != 2 || !strings.Contains(r.stderr, login) || len(fake.Requests()) != 0 {
		t.Fatalf("first run: exit %d, %d requests\n%s%s\nwant exit 2 and %q", r.code, len(fake.Requests()), r.stdout, r.stderr, login)
	}
	st := mailflow(t, "auth", "status", "-c", state)
	if st.code != 0 || !strings.Contains(st.stdout, "gmail") || !strings.Contains(st.stdout, "not logged in") {
		t.Fatalf("auth status -c STATE: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	// What "mailflow auth login" stores (it needs a browser and Google).
	if err := oauth.NewStore(state).Save("gmail", &oauth.Token{AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r = mailflow(t, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "moved:                  5") || !strings.Contains(r.stdout, "not verified, old → gmail") {
		t.Fatalf("second run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i := range 5 {
		m, err := fake.Find(fmt.Sprintf("cli%d@example.org", i))
		slices.Sort(m.LabelIDs)
		if err != nil || strings.Join(m.LabelIDs, ",") != "INBOX,UNREAD" {
			t.Fatalf("message %d: %+v, %v", i, m.LabelIDs, err)
		}
	}
	if n := len(src.Messages()); n != 0 {
		t.Fatalf("%d left at the source", n)
	}
}
