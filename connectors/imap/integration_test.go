//go:build integration

package imap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/migrate/survey"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	_ "github.com/mailflow/mailflow/connectors/pop3"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// Users u2 (source) and u4 (destination) of the test Dovecot are this
// package's.

// dovecot logs in to the real Dovecot over IMAP with STARTTLS.
func dovecot(t testing.TB, srv *enginetest.Servers, user string) *conn {
	t.Helper()
	e := &Endpoint{Settings: endpoint.Settings{Address: srv.IMAP, TLS: "starttls", Username: user, Password: srv.Password}}
	e.Options.CAFile = srv.CA
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

// empty removes every folder but INBOX, and everything in INBOX.
func empty(t testing.TB, c *conn) {
	t.Helper()
	folders, err := c.folders([]string{"*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].name > folders[j].name }) // children first
	for _, f := range folders {
		if f.name != "INBOX" {
			if err := c.c.Delete(f.name).Wait(); err != nil {
				t.Fatalf("DELETE %s: %v", f.name, err)
			}
		}
	}
	_, n, err := c.examine("INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	if infos, _ := c.messages(n); len(infos) > 0 {
		var uids []uint32
		for _, i := range infos {
			uids = append(uids, i.UID)
		}
		if err := c.remove(uids); err != nil {
			t.Fatal(err)
		}
	}
}

// 2,000 messages over 10 folders (nested, one with a non-ASCII name) with
// mixed flags and dates, IMAP → IMAP on real Dovecot: every message once,
// byte-identical, same folder, same flags, same INTERNALDATE; the source
// emptied; a second poll moves nothing.
func TestDovecotIMAPToIMAPTwoThousand(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u2"), dovecot(t, srv, "u4")
	empty(t, src)
	empty(t, dst)
	folders := []string{"INBOX", "Archive", "Archive/2024", "Archive/2025", "Projekte", "Projekte/Größe", "Sent", "Drafts", "Lists/go", "Lists/rust"}
	flagSets := [][]string{nil, {`\Seen`}, {`\Flagged`, `\Seen`}, {`$Forwarded`, `\Answered`, `\Seen`}, {`\Draft`}}
	var want []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(2000)) {
		fl := append([]string(nil), flagSets[i%len(flagSets)]...)
		sort.Strings(fl)
		want = append(want, stored{folder: folders[i%len(folders)], flags: fl,
			date: time.Date(2015+i%10, time.Month(1+i%12), 1+i%28, i%24, i%60, 0, 0, time.UTC), data: m})
	}
	seed(t, src, want)
	conf := fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u2"
password = %q
folders = ["*"]
pipeline = "move"
[[pipeline]]
name = "move"
outputs = ["new"]
[[output]]
name = "new"
type = "imap"
address = %q
tls = "implicit"
tls_ca_file = %q
username = "u4"
password = %q
max_connections = 4
`, srv.IMAP, srv.CA, srv.Password, srv.IMAPS, srv.CA, srv.Password)
	e := newEngine(t, conf)
	start := time.Now()
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 2000 {
		t.Fatalf("%v %v", st, err)
	}
	t.Logf("2,000 messages IMAP → IMAP in %v", time.Since(start).Round(time.Millisecond))
	got := dump(t, dovecot(t, srv, "u4"))
	w, g := map[string]int{}, map[string]int{}
	for _, m := range want {
		w[key(m)]++
	}
	for _, m := range got {
		g[key(m)]++
	}
	bad := 0
	for k, n := range w {
		if g[k] != n && bad < 5 {
			t.Errorf("%.80s: want %d, have %d", k, n, g[k])
			bad++
		}
	}
	if len(got) != 2000 {
		t.Fatalf("%d at the destination", len(got))
	}
	if left := dump(t, dovecot(t, srv, "u2")); len(left) != 0 {
		t.Fatalf("%d left at the source", len(left))
	}
	if st, _ := e.PollOnce(context.Background(), "old"); st.Fetched != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %v", st)
	}
}

// With idle = true against Dovecot, each message appended to the source
// INBOX is delivered long before the next poll (an hour away); halfway, the
// server drops every session of the user (doveadm kick), and the watch
// comes back by itself. Logs the latencies.
func TestDovecotIdle(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u2"), dovecot(t, srv, "u4")
	empty(t, src)
	empty(t, dst)
	conf := fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u2"
password = %q
idle = true
schedule = "1h"
pipeline = "move"
[[pipeline]]
name = "move"
outputs = ["new"]
[[output]]
name = "new"
type = "imap"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u4"
password = %q
`, srv.IMAP, srv.CA, srv.Password, srv.IMAP, srv.CA, srv.Password)
	e := newEngine(t, conf)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(500 * time.Millisecond)
	var lat []time.Duration
	for i := range 10 {
		if i == 5 {
			if out, err := exec.Command("doveadm", "-c", os.Getenv("MAILFLOW_TEST_DOVECOT_CONF"), "kick", "u2").CombinedOutput(); err != nil {
				t.Logf("doveadm kick: %v %s", err, out)
			}
			src = dovecot(t, srv, "u2") // the test's own session went too
		}
		m := stored{folder: "INBOX", date: time.Now(), data: []byte(fmt.Sprintf("Message-ID: <idle%d@x.test>\r\nSubject: idle %d\r\n\r\nbody\r\n", i, i))}
		start := time.Now()
		seed(t, src, []stored{m})
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, n, err := dst.examine("INBOX", false)
			if err != nil {
				t.Fatal(err)
			}
			if int(n) == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d not delivered 30 s after it arrived, the next poll an hour away", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	sorted := append([]time.Duration(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("arrival → delivered over IDLE: %v; median %v", lat, sorted[len(sorted)/2])
}

// POP3 → IMAP on Dovecot: a POP3 mailbox moved into another user's IMAP
// INBOX, each message with its Date header as INTERNALDATE.
func TestDovecotPOP3ToIMAPKeepsTheDate(t *testing.T) {
	srv := enginetest.RealServers(t)
	empty(t, dovecot(t, srv, "u2"))
	empty(t, dovecot(t, srv, "u4"))
	var msgs [][]byte
	dates := map[string]time.Time{}
	for i := range 50 {
		d := time.Date(2012+i%10, time.Month(1+i%12), 1+i%28, 8, i, 0, 0, time.UTC)
		id := fmt.Sprintf("pop%d@x.test", i)
		dates[id] = d
		msgs = append(msgs, []byte(fmt.Sprintf("Message-ID: <%s>\r\nDate: %s\r\nSubject: %d\r\n\r\nbody %d\r\n", id, d.Format(time.RFC1123Z), i, i)))
	}
	srv.SeedPOP3(t, "u2", msgs)
	conf := fmt.Sprintf(`[[input]]
name = "pop"
type = "pop3"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u2"
password = %q
pipeline = "move"
[[pipeline]]
name = "move"
outputs = ["new"]
[[output]]
name = "new"
type = "imap"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u4"
password = %q
`, srv.POP3, srv.CA, srv.Password, srv.IMAP, srv.CA, srv.Password)
	e := newEngine(t, conf)
	if st, err := e.PollOnce(context.Background(), "pop"); err != nil || st.Delivered != 50 {
		t.Fatalf("%v %v", st, err)
	}
	dst := dovecot(t, srv, "u4")
	if _, _, err := dst.examine("INBOX", false); err != nil {
		t.Fatal(err)
	}
	infos, err := dst.fetchInfoWith(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{
		UID: true, RFC822Size: true, InternalDate: true, BodySection: []*goimap.FetchItemBodySection{identityFields}})
	if err != nil || len(infos) != 50 {
		t.Fatalf("%d in the destination INBOX (%v)", len(infos), err)
	}
	for _, m := range infos {
		if want := dates[m.Identity]; !m.Date.Equal(want) {
			t.Errorf("<%s>: INTERNALDATE %v, want its Date %v", m.Identity, m.Date, want)
		}
	}
	if srv.POP3Count("u2") != 0 {
		t.Fatal("the POP3 mailbox was not emptied")
	}
}

// Against Dovecot with SPECIAL-USE: the source's \Sent folder ("Sent")
// lands in the destination's \Sent folder ("Sent Items"), and the
// verification looks for it there. Users u11 (source) and u12.
func TestDovecotSentLandsInTheDestinationsSentFolder(t *testing.T) {
	srv := enginetest.RealServers(t)
	src, dst := dovecot(t, srv, "u11"), dovecot(t, srv, "u12")
	empty(t, src)
	empty(t, dst)
	if err := dst.create("Sent Items"); err != nil {
		t.Fatal(err)
	}
	var want []stored
	for i, m := range enginetest.CRLF(enginetest.Mix(40)) {
		folder := "INBOX"
		if i%2 == 0 {
			folder = "Sent"
		}
		want = append(want, stored{folder: folder, date: time.Date(2020, 1, 1+i%28, 0, 0, 0, 0, time.UTC), data: m})
	}
	seed(t, src, want)
	conf := fmt.Sprintf(`[[input]]
name = "old"
type = "imap"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "u11"
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
tls = "starttls"
tls_ca_file = %q
username = "u12"
password = %q
skip_existing = true
`, srv.IMAP, srv.CA, srv.Password, srv.IMAP, srv.CA, srv.Password)
	e := newEngine(t, conf)
	if st, err := e.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 40 {
		t.Fatalf("%v %v", st, err)
	}
	in := map[string]int{}
	for _, m := range dump(t, dovecot(t, srv, "u12")) {
		in[m.folder]++
	}
	if in["Sent Items"] != 20 || in["Sent"] != 0 || in["INBOX"] != 20 {
		t.Fatalf("destination folders: %v", in)
	}
	checks, err := survey.Verify(context.Background(), e, "old", "new")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.Found != c.Source || len(c.Missing) > 0 {
			t.Fatalf("verification: %+v", c)
		}
	}
	// A second engine with a fresh ledger (another machine) appends nothing.
	e2 := newEngine(t, conf)
	if st, err := e2.PollOnce(context.Background(), "old"); err != nil || st.Delivered != 40 {
		t.Fatalf("fresh ledger: %v %v", st, err)
	}
	if n := len(dump(t, dovecot(t, srv, "u12"))); n != 40 {
		t.Fatalf("%d at the destination after a run with a fresh ledger, want 40", n)
	}
}

// STARTTLS to Dovecot with a certificate this machine cannot check: the
// error says which key fixes it, as POP3's and SMTP's do, not only what
// crypto/x509 said.
func TestDovecotSTARTTLSCertificateErrorsNameTheFix(t *testing.T) {
	srv := enginetest.RealServers(t)
	for _, c := range []struct {
		ca, name, want string
	}{
		{"", "", "set tls_ca_file to its PEM file"},
		{srv.CA, "mail.example", `set tls_server_name = "`},
	} {
		e := &Endpoint{Settings: endpoint.Settings{Address: srv.IMAP, TLS: "starttls", Username: "u2", Password: srv.Password}}
		e.Options.CAFile, e.Options.ServerName = c.ca, c.name
		if err := e.init(); err != nil {
			t.Fatal(err)
		}
		conn, err := e.dial(context.Background())
		if err == nil {
			conn.close()
			t.Fatalf("ca %q, name %q: logged in", c.ca, c.name)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ca %q, name %q: %v; want it to say %q", c.ca, c.name, err, c.want)
		}
	}
}
