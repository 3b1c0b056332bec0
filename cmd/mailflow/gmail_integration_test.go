//go:build integration

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// Dovecot users g1..g5 are the Gmail and mbox tests' (issue 29): g3 here.

// gmailLabelScript labels every message for Gmail with msg:label: one
// label for all, two (one nested) for every third, a non-ASCII one for
// every fifth.
const gmailLabelScript = `
function filter(msg)
  local n = tonumber((msg:header("Subject") or ""):match("message (%d+)"))
  msg:label("Old provider")
  if n % 3 == 0 then msg:label("Work", "Work/Inbound") end
  if n % 5 == 0 then msg:label("Geschäftlich") end
end
`

// gmailMail is message i of the POP3 mailbox: CRLF, dated, every 40th
// large enough for the resumable upload.
func gmailMail(i int) []byte {
	size := 2<<10 + i*37%(8<<10)
	if i%40 == 0 {
		size = 96 << 10
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Message-ID: <g%d@old.example>\r\nDate: %s\r\nFrom: Sender %d <s%d@old.example>\r\nTo: me@old.example\r\nSubject: message %d\r\n\r\n",
		i, time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i)*53*time.Minute).Format(time.RFC1123Z), i%7, i%7, i)
	for b.Len() < size {
		fmt.Fprintf(&b, "line %d of message %d, and some text to fill it up to a mail-like length\r\n", b.Len(), i)
	}
	return []byte(b.String())
}

// Gmail's "check mail from other accounts" replaced: a POP3 mailbox on a
// real Dovecot → a script that labels with msg:label → the gmail output,
// into a fake Gmail that lives in this test (so it outlives every kill).
// 500 messages; a 429 storm starts once 100 are in, and the first
// mailflow waits it out; then mailflow is killed with SIGKILL at random
// points, five times, and run to the end with run --once. Every message is in
// Gmail exactly once, byte for byte but the labels field, with its labels
// and its date; none went to the quarantine; the mailbox is empty.
func TestPOP3ToGmailThroughAStormAndKills(t *testing.T) {
	srv := enginetest.RealServers(t)
	const n = 500
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = gmailMail(i)
	}
	srv.SeedPOP3(t, "g3", msgs)

	stormAt, storms := 100, 0
	var fake *gmailtest.Server
	fake, err := gmailtest.New(gmailtest.Options{User: "me@example.com", Tokens: []string{"tok"}, OnImport: func(k int) {
		if k == stormAt && storms == 0 {
			storms++
			fake.StormFor(3*time.Second, time.Second)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "label.lua"), []byte(gmailLabelScript), 0o600)
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"

[[input]]
name = "old"
type = "pop3"
address = %q
tls = "starttls"
tls_ca_file = %q
username = "g3"
password = %q
pipeline = "to-gmail"
schedule = "1s"

[[pipeline]]
name = "to-gmail"
scripts = ["label.lua"]
outputs = ["gmail"]

[[output]]
name = "gmail"
type = "gmail"
username = "me@example.com"
client_id = "mailflow-test"
api_url = %q
quota_units_per_second = 100000
resumable_above = 65536
`, srv.POP3, srv.CA, srv.Password, fake.URL), 0o600)
	// What "mailflow auth login -c mailflow.toml gmail" stores.
	if err := oauth.NewStore(filepath.Join(dir, "state")).Save("gmail", &oauth.Token{AccessToken: "tok", Expiry: time.Now().Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 29))
	for round := range 6 {
		have := len(fake.Messages())
		// The first mailflow runs through the storm; the others are
		// killed when a random number more are in, and every other one
		// also at a random moment if that comes first (between an import
		// and its record, in a poll's listing, at its QUIT).
		target, after := have+20+rng.IntN(50), time.Hour
		if round == 0 {
			target = stormAt + 60
		} else if round%2 == 0 {
			after = time.Duration(20+rng.IntN(800)) * time.Millisecond
		}
		cmd := exec.Command(binary, "run", "-c", conf)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		start, deadline := time.Now(), time.Now().Add(60*time.Second)
	wait:
		for time.Now().Before(deadline) && time.Since(start) < after && len(fake.Messages()) < target {
			select {
			case <-exited:
				break wait
			case <-time.After(2 * time.Millisecond):
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		t.Logf("round %d: SIGKILL with %d in Gmail (%d before), %d at the source", round, len(fake.Messages()), have, srv.POP3Count("g3"))
		if round == 0 && len(fake.Messages()) < target {
			t.Fatalf("the first mailflow did not get through the storm: %d in Gmail after %v\n%s", len(fake.Messages()), time.Since(start), stderr.String())
		}
	}
	for run := 0; srv.POP3Count("g3") > 0; run++ {
		if run == 5 {
			t.Fatalf("%d messages still at the source after 5 runs to the end", srv.POP3Count("g3"))
		}
		r := mailflow(t, "run", "--once", "-c", conf)
		t.Logf("run --once: exit %d: %s", r.code, strings.TrimSpace(r.stdout))
	}

	throttled := 0
	for _, q := range fake.Requests() {
		if q.Status == 429 {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("no request met the storm")
	}
	byID := map[string]string{}
	for _, l := range fake.Labels() {
		byID[l.ID] = l.Name
	}
	copies := map[string][]gmailtest.Message{}
	for _, m := range fake.Messages() {
		copies[m.MessageID] = append(copies[m.MessageID], m)
	}
	for i, orig := range msgs {
		got := copies[fmt.Sprintf("g%d@old.example", i)]
		if len(got) != 1 {
			t.Errorf("message %d: %d copies in Gmail", i, len(got))
			continue
		}
		m := got[0]
		var names []string
		for _, id := range m.LabelIDs {
			names = append(names, byID[id])
		}
		slices.Sort(names)
		want := []string{"INBOX", "Old provider", "UNREAD"}
		if i%3 == 0 {
			want = append(want, "Work", "Work/Inbound")
		}
		if i%5 == 0 {
			want = append(want, "Geschäftlich")
		}
		slices.Sort(want)
		parsed, _ := mail.ReadMessage(bytes.NewReader(orig))
		date, _ := parsed.Header.Date()
		if !slices.Equal(names, want) || !m.InternalDate.Equal(date) || !bytes.Equal(m.Raw, orig) {
			t.Errorf("message %d: labels %q dated %v, %d bytes; want %q dated %v, %d bytes as sent", i, names, m.InternalDate, len(m.Raw), want, date, len(orig))
		}
	}
	if len(copies) != n {
		t.Errorf("Gmail holds %d distinct messages, want %d", len(copies), n)
	}
	if q, _ := filepath.Glob(filepath.Join(dir, "state", "quarantine", "*.eml")); len(q) != 0 {
		t.Fatalf("%d messages were quarantined", len(q))
	}
	t.Logf("%d requests answered 429; %d imports by resumable upload", throttled, resumable(fake))
}

func resumable(s *gmailtest.Server) int {
	k := 0
	for _, m := range s.Messages() {
		if m.Upload == "resumable" {
			k++
		}
	}
	return k
}
