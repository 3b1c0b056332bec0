package smtpd

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A message sent with an ordinary client arrives once, as sent, with a
// Received field in front and its envelope (sender, recipients) kept;
// the spool is empty afterwards.
func TestReceivesAndDelivers(t *testing.T) {
	r := newRig(t, "smtp", "", "")
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := msg("hello", "line one\r\n.a line that starts with a dot\r\nlast\r\n")
	if err := c.SendMail("alice@example.org", []string{"bob@example.net", "carol@example.net", "BOB@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	got := r.waitFor(1)[0]
	if !strings.HasPrefix(string(got.msg), "Received: from client.example.org") && !strings.HasPrefix(string(got.msg), "Received: from localhost") {
		t.Errorf("no Received field in front:\n%s", got.msg)
	}
	_, rest, _ := strings.Cut(string(got.msg), "\r\nFrom: ")
	if "From: "+rest != body {
		t.Errorf("the message changed on the way:\n%q\nwant\n%q", "From: "+rest, body)
	}
	if got.sender != "alice@example.org" || !slices.Equal(got.rcpts, []string{"bob@example.net", "carol@example.net"}) {
		t.Errorf("envelope: from %q to %q", got.sender, got.rcpts)
	}
	if got.client == nil || got.client.Client.Address != "127.0.0.1" || got.client.Client.Protocol != "ESMTP" {
		t.Errorf("client: %+v", got.client)
	}
	r.waitSpoolEmpty()
}

// The null sender is kept as the null sender.
func TestNullSender(t *testing.T) {
	r := newRig(t, "smtp", "", "")
	if err := sendMail(r.addr, "", []string{"bob@example.net"}, strings.NewReader(msg("bounce", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	if got := r.waitFor(1)[0]; got.sender != message.NullSender {
		t.Fatalf("sender %q, want the null sender", got.sender)
	}
}

// A bare LF or CR in DATA is a line end, made CRLF as the smtp output
// sends it; only CRLF.CRLF ends the data, so "\n.\n" inside a message
// cannot smuggle a second message through (CVE-2023-51766 and kin).
func TestBareLineEndsAndSmuggling(t *testing.T) {
	r := newRig(t, "smtp", "", "")
	w := r.dial()
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.w.WriteString("Subject: smuggle\r\n\r\nbare lf\nbare cr\rcrlf\r\n\n.\nMAIL FROM:<mallory@example.org>\nRCPT TO:<victim@example.net>\nDATA\nSubject: smuggled\n\r\n.\r\n")
	w.w.Flush()
	w.expect(250)
	w.send("QUIT")
	w.expect(221)
	got := r.waitFor(1)
	time.Sleep(200 * time.Millisecond)
	if got = r.out.all(); len(got) != 1 {
		t.Fatalf("%d messages arrived, want 1 (a second was smuggled)", len(got))
	}
	_, body, _ := strings.Cut(string(got[0].msg), "Subject: smuggle\r\n")
	want := "\r\nbare lf\r\nbare cr\r\ncrlf\r\n\r\n.\r\nMAIL FROM:<mallory@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
	if body != want {
		t.Fatalf("body %q\nwant %q", body, want)
	}
}

// A message over max_message_size is refused with 552: at MAIL when its
// SIZE says so, and as it comes otherwise (1 GiB against 25 MB), without
// being stored or held in memory; the session goes on. (128 MiB under the
// race detector, which makes go-smtp's reading 30 times slower.)
func TestSizeLimit(t *testing.T) {
	r := newRig(t, "smtp", "max_message_size = 26214400", "")
	w := r.dial()
	ehlo := w.hello()
	if !strings.Contains(ehlo, fmt.Sprintf("SIZE %d", 26214400-traceReserve)) {
		t.Errorf("EHLO does not announce the size: %q", ehlo)
	}
	w.send("MAIL FROM:<alice@example.org> SIZE=1073741824")
	w.expect(552)

	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	stop := make(chan struct{})
	biggest := make(chan [2]int64)
	go func() { // what the spool's new/ and the heap hold while the data comes
		var most, heap int64
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				biggest <- [2]int64{most, heap}
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, name := range r.spooled("new") {
				if fi, err := osStat(r, name); err == nil && fi > most {
					most = fi
				}
			}
			runtime.ReadMemStats(&ms)
			heap = max(heap, int64(ms.HeapAlloc))
		}
	}()
	line := strings.Repeat("x", 1022) + "\r\n"
	chunk := []byte(strings.Repeat(line, 1024)) // 1 MiB
	w.w.WriteString("Subject: huge\r\n\r\n")
	mib := 1024 // 1 GiB
	if raceDetector {
		mib = 128
	}
	for range mib {
		if _, err := w.w.Write(chunk); err != nil {
			t.Fatalf("the server stopped reading: %v", err)
		}
	}
	w.w.WriteString(".\r\n")
	w.w.Flush()
	msg := w.expect(552)
	close(stop)
	if most := <-biggest; most[0] > 26214400+1<<20 || most[1] > 64<<20 {
		t.Errorf("the spool held %d bytes of the message, the heap %d bytes", most[0], most[1])
	}
	if len(r.spooled("new")) != 0 {
		t.Errorf("the refused message left %v behind", r.spooled("new"))
	}
	t.Logf("552 %s", msg)
	// The session goes on.
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.send("Subject: small", "", "ok", ".")
	w.expect(250)
	if got := r.waitFor(1); len(got) != 1 || !strings.Contains(string(got[0].msg), "Subject: small") {
		t.Fatalf("delivered %d messages", len(got))
	}
}

// 10,000 RCPTs in one pipelined flight: max_recipients are taken and the
// rest refused 452; past max_errors the client is hung up on.
func TestTooManyRecipients(t *testing.T) {
	flood := func(t *testing.T, r *rig) (w *wire, accepted, refused, other int, last string) {
		w = r.dial()
		w.hello()
		w.send("MAIL FROM:<alice@example.org>")
		w.expect(250)
		go func() {
			for i := range 10000 {
				w.w.WriteString(fmt.Sprintf("RCPT TO:<r%d@example.net>\r\n", i))
			}
			w.w.Flush()
		}()
		for accepted+refused+other < 10000 {
			code, msg := w.reply()
			switch code {
			case 250:
				accepted++
			case 452:
				refused++
			default:
				return w, accepted, refused, other + 1, fmt.Sprintf("%d %s", code, msg)
			}
		}
		return w, accepted, refused, other, ""
	}
	t.Run("every one answered", func(t *testing.T) {
		r := newRig(t, "smtp", "max_recipients = 100\nmax_errors = 0", "")
		w, accepted, refused, other, last := flood(t, r)
		if accepted != 100 || refused != 9900 || other != 0 {
			t.Fatalf("%d accepted, %d refused, then %q", accepted, refused, last)
		}
		w.send("DATA")
		w.expect(354)
		w.send("Subject: many", "", "x", ".")
		w.expect(250)
		if got := r.waitFor(1)[0]; len(got.rcpts) != 100 {
			t.Fatalf("delivered to %d recipients", len(got.rcpts))
		}
	})
	t.Run("hung up on", func(t *testing.T) {
		r := newRig(t, "smtp", "max_recipients = 100", "")
		w, accepted, refused, _, last := flood(t, r)
		// Replies may be lost at the end: the client is still writing when
		// the server closes, and the reset drops what it had not read.
		if accepted > 100 || refused > 19 || last == "" {
			t.Fatalf("%d accepted, %d refused, then %q", accepted, refused, last)
		}
		if !w.closed(5 * time.Second) {
			t.Fatal("the connection stayed open")
		}
		if !strings.Contains(r.log.String(), "too many errors") {
			t.Fatal("not logged")
		}
	})
}

// A client that sends a command, or its data, a byte now and then is cut
// off (timeout, min_data_rate), and leaves nothing behind.
func TestSlowClientsAreCutOff(t *testing.T) {
	r := newRig(t, "smtp", "timeout = \"1s\"\nmin_data_rate = 1000", "")
	trickle := func(w *wire, s string) (cut time.Duration) {
		start := time.Now()
		for i := 0; i < len(s); i++ {
			if _, err := w.c.Write([]byte{s[i]}); err != nil {
				return time.Since(start)
			}
			time.Sleep(100 * time.Millisecond)
			if time.Since(start) > 8*time.Second {
				break
			}
		}
		return 0
	}
	w := r.dial()
	w.expect(220)
	go trickle(w, "EHLO slow.example.org\r\n")
	if code, msg := w.reply(); code != 421 {
		t.Fatalf("a command trickled in: reply %d %q, want 421", code, msg)
	}
	if !w.closed(3 * time.Second) {
		t.Fatal("still open")
	}

	w = r.dial()
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	start := time.Now()
	done := make(chan struct{})
	go func() { trickle(w, "Subject: slow\r\n\r\n"+strings.Repeat("z", 200)); close(done) }()
	w.closed(6 * time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a trickling DATA was cut off only after %v", took)
	}
	<-done
	time.Sleep(100 * time.Millisecond)
	if n := len(r.spooled("tmp")) + len(r.spooled("new")); n != 0 || len(r.out.all()) != 0 {
		t.Fatalf("a message cut off left %d files, %d deliveries", n, len(r.out.all()))
	}
}

// A client that goes away in the middle of its data leaves nothing behind.
func TestDisconnectMidData(t *testing.T) {
	r := newRig(t, "smtp", "", "")
	w := r.dial()
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.w.WriteString("Subject: cut\r\n\r\n" + strings.Repeat("half a message\r\n", 5000))
	w.w.Flush()
	w.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "client gone before the end of its message") {
		if time.Now().After(deadline) {
			t.Fatal("the server never noticed the client was gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(r.spooled("tmp")) + len(r.spooled("new")); n != 0 {
		t.Fatalf("%d files left in the spool", n)
	}
	time.Sleep(100 * time.Millisecond)
	if len(r.out.all()) != 0 {
		t.Fatal("half a message was delivered")
	}
}

// A spooled message is delivered even when mailflow stopped before the
// engine took it: the next start takes it. What tmp/ and wait/ hold, and
// a file in new/ whose writing was cut short (never answered 250), is
// removed.
func TestSpoolSurvivesARestart(t *testing.T) {
	r := newRig(t, "smtp", "", "")
	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		return nil, errors.New("421 down for now")
	})
	if err := sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg("survivor", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "outcome=deferred") {
		if time.Now().After(deadline) {
			t.Fatal("never deferred")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop()
	if n := len(r.spooled("new")); n != 1 {
		t.Fatalf("the spool holds %d messages after the stop, want 1", n)
	}
	for _, sub := range []string{"tmp", "wait"} {
		osWrite(r, sub, "leftover", "never answered")
	}
	// A file whose head is not in the journal, or says another length or
	// checksum (torn, cut short), was never finished.
	head := `{"v":1,"at":"2026-12-03T00:00:00Z","received":{"sender":"a@example.org","recipients":["bob@example.net"]}}` + "\n"
	bare := "Received: by test\r\n" + msg("bare", "z\r\n")
	journal, err := os.OpenFile(filepath.Join(r.state, "smtpd", "in", "heads"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"6.torn", "7.short", "8.bare"} {
		line := fmt.Sprintf(`{"id":%q,"len":%d,"crc":%d,"v":1,"at":"2026-12-03T00:00:00Z","received":{"sender":"a@example.org","recipients":["bob@example.net"]}}`+"\n",
			name, len(bare), crc32.Checksum([]byte(bare), castagnoli))
		journal.WriteString(line)
	}
	journal.WriteString(`{"id":"9.cut","len":`) // a line a crash cut short
	journal.Close()
	osWrite(r, "new", "5.nohead", bare)
	osWrite(r, "new", "6.torn", strings.Replace(bare, "bare", "bAre", 1))
	osWrite(r, "new", "7.short", bare[:len(bare)-1])
	osWrite(r, "new", "8.bare", bare)
	osWrite(r, "new", "9.cut", bare)
	osWrite(r, "new", "a.empty", "")
	// The release before this one began a file with a mark: cut short
	// before it was finished, finished but torn (the rest is not what the
	// mark sums), or short.
	rest := head + msg("torn", "x\r\n")
	osWrite(r, "new", "1.unfinished", markPrefix+strings.Repeat("-", 16)+" "+strings.Repeat("-", 8)+"\n"+rest)
	osWrite(r, "new", "2.torn", string(finishedMark(int64(len(rest)), crc32.Checksum([]byte(rest), castagnoli)))+strings.Replace(rest, "torn", "tOrn", 1))
	osWrite(r, "new", "3.short", string(finishedMark(int64(len(rest)), crc32.Checksum([]byte(rest), castagnoli)))+rest[:len(rest)-1])
	marked := head + msg("marked", "w\r\n")
	osWrite(r, "new", "4.marked", string(finishedMark(int64(len(marked)), crc32.Checksum([]byte(marked), castagnoli)))+marked)
	// Older still: the head line first, no mark; whole.
	osWrite(r, "new", "0.older", head+msg("older", "y\r\n"))
	r.out.setFail(nil)
	r.log = &syncBuffer{}
	r.start(r.dir + "/mailflow.toml")
	got := r.waitFor(4)
	var subjects []string
	for _, d := range got {
		subjects = append(subjects, d.msg2subject())
	}
	slices.Sort(subjects)
	if strings.Join(subjects, ",") != "bare,marked,older,survivor" {
		t.Fatalf("after the restart: %v", subjects)
	}
	r.waitSpoolEmpty()
	time.Sleep(100 * time.Millisecond)
	if got := r.out.all(); len(got) != 4 {
		t.Fatalf("%d deliveries after the restart, want 4 (no unfinished file delivered)", len(got))
	}
}

// sendMail sends one message without STARTTLS.
func sendMail(addr, from string, to []string, body *strings.Reader) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, body); err != nil {
		return err
	}
	return c.Quit()
}

// Several inputs in one process, each on its own address with its own
// spool: an smtp one on TCP and an lmtp one on a Unix socket.
func TestSeveralInputs(t *testing.T) {
	r := &rig{t: t, out: &memOut{}, dir: t.TempDir(), log: &syncBuffer{}}
	r.state = r.dir + "/state"
	memOuts.Store("several", r.out)
	sock := r.dir + "/lmtp.sock"
	conf := fmt.Sprintf(`state_dir = %q
[[input]]
name = "in"
type = "smtp"
pipeline = "p"
address = "127.0.0.1:0"
[[input]]
name = "local"
type = "lmtp"
pipeline = "p"
address = "unix:%s"
[[pipeline]]
name = "p"
outputs = ["several"]
[[output]]
name = "several"
type = "smtpdtest"
`, r.state, sock)
	os.WriteFile(r.dir+"/mailflow.toml", []byte(conf), 0o600)
	r.start(r.dir + "/mailflow.toml")
	if err := sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg("over smtp", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lmtp input never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lr := *r
	lr.addr = "unix:" + sock
	w := lr.dial()
	w.lmtp = true
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.send("Subject: over lmtp", "", "x", ".")
	w.expect(250)
	got := r.waitFor(2)
	protocols := map[string]bool{}
	for _, g := range got {
		protocols[g.client.Client.Protocol] = true
	}
	if !protocols["ESMTP"] || !protocols["LMTP"] {
		t.Fatalf("protocols %v", protocols)
	}
	for _, name := range []string{"in", "local"} {
		if _, err := os.Stat(r.state + "/smtpd/" + name + "/new"); err != nil {
			t.Errorf("no spool of its own for %s: %v", name, err)
		}
	}
}

// msg2subject is a delivered message's Subject.
func (d delivered) msg2subject() string {
	_, rest, _ := strings.Cut(string(d.msg), "Subject: ")
	subject, _, _ := strings.Cut(rest, "\r\n")
	return subject
}

// finishedMark is the mark of a file of the release before this one.
func finishedMark(n int64, sum uint32) []byte {
	return fmt.Appendf(nil, "%s%016x %08x\n", markPrefix, n, sum)
}
