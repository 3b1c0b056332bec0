package smtpd

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

const rejectScript = `
function filter(msg)
	if msg:header("Subject") == "reject me" then
		return reject("5.7.1 we do not want " .. msg.client.address)
	end
	if msg:header("Subject") == "later" then
		return leave("greylisted")
	end
end`

// With answer = "after_delivery" the client hears what became of its
// message: 250 once delivered; the script's reject() or the output's
// refusal as a 5xx (and mailflow keeps no copy: no quarantine); 451 when
// it could not be delivered yet (and mailflow keeps no copy: the client
// sends it again).
func TestAfterDelivery(t *testing.T) {
	r := newRig(t, "smtp", `answer = "after_delivery"`, rejectScript)
	send := func(subject string) error {
		return sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg(subject, "x\r\n")))
	}
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}
	if err := send("fine"); err != nil {
		t.Fatalf("a message delivered: %v", err)
	}
	if len(r.out.all()) != 1 {
		t.Fatal("250 before the output had it")
	}
	err := send("reject me")
	if code(err) != 550 || !strings.Contains(err.Error(), "we do not want 127.0.0.1") {
		t.Fatalf("a script's reject: %v", err)
	}
	if err := send("later"); code(err) != 451 || !strings.Contains(err.Error(), "greylisted") {
		t.Fatalf("a script's leave: %v", err)
	}

	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		return nil, plugin.Permanent(errors.New("smtp: DATA: 554 5.7.1 content refused"))
	})
	if err := send("refused"); code(err) != 554 || !strings.Contains(err.Error(), "content refused") {
		t.Fatalf("an output's refusal: %v", err)
	}
	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		return nil, errors.New("dial tcp: connection refused")
	})
	if err := send("deferred"); code(err) != 451 {
		t.Fatalf("an output down: %v", err)
	}
	r.out.setFail(nil)
	r.waitSpoolEmpty()
	entries, _ := r.e.Quarantine.List()
	if len(entries) != 0 {
		t.Fatalf("the quarantine keeps %d messages the clients were told to keep", len(entries))
	}
	// Nothing the clients keep comes out later from the spool.
	time.Sleep(300 * time.Millisecond)
	if got := r.out.all(); len(got) != 1 {
		t.Fatalf("%d messages delivered, want the one answered 250", len(got))
	}
}

// A pipeline slower than answer_timeout: the client hears 451 and keeps
// the message, and a message the engine had not read yet leaves the spool.
func TestAfterDeliveryTimeout(t *testing.T) {
	r := newRig(t, "smtp", "answer = \"after_delivery\"\nanswer_timeout = \"300ms\"", "")
	release := make(chan struct{})
	var once sync.Once
	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		<-release
		return nil, nil
	})
	defer once.Do(func() { close(release) })
	err := sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg("slow", "x\r\n")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 7}) {
		t.Fatalf("a slow pipeline: %v", err)
	}
	once.Do(func() { close(release) })
	r.waitFor(1)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "delivered after its client was told to try again") {
		if time.Now().After(deadline) {
			t.Fatal("a delivery after the 451 was not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.waitSpoolEmpty()
}

// LMTP answers per recipient: an output that refuses one recipient of
// three (with answer = "after_delivery") makes that one 550, the others
// 250; over a Unix socket.
func TestLMTPPerRecipient(t *testing.T) {
	sock := t.TempDir() + "/lmtp.sock"
	r := newRig(t, "lmtp", "address = \"unix:"+sock+"\"\nanswer = \"after_delivery\"", "")
	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		var res []plugin.RecipientResult
		for _, rc := range d.Recipients {
			var err error
			if strings.HasPrefix(rc, "refuse@") {
				err = plugin.Permanent(errors.New("smtp: RCPT TO:<refuse@example.net>: 550 5.1.1 no such user here"))
			}
			res = append(res, plugin.RecipientResult{Recipient: rc, Err: err})
		}
		return res, nil
	})
	w := r.dial()
	w.lmtp = true
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<a@example.net>", "RCPT TO:<refuse@example.net>", "RCPT TO:<b@example.net>", "DATA")
	for range 4 {
		w.expect(250)
	}
	w.expect(354)
	w.send("Subject: three", "", "x", ".")
	codes := []int{}
	texts := []string{}
	for range 3 {
		c, m := w.reply()
		codes, texts = append(codes, c), append(texts, m)
	}
	if codes[0] != 250 || codes[1] != 550 || codes[2] != 250 || texts[1] != "5.1.1 <refuse@example.net> no such user here" {
		t.Fatalf("per-recipient replies %v %q", codes, texts)
	}
	got := r.waitFor(1)
	if len(got[0].rcpts) != 3 {
		t.Fatalf("the output was given %v", got[0].rcpts)
	}
	entries, _ := r.e.Quarantine.List()
	if len(entries) != 0 {
		t.Fatal("the refused recipient's copy was quarantined although its client was told")
	}
	r.waitSpoolEmpty()
}

// An LMTP client with answer = "after_spool" hears 250 for every
// recipient once the message is on disk.
func TestLMTPAfterSpool(t *testing.T) {
	r := newRig(t, "lmtp", "", "")
	w := r.dial()
	w.lmtp = true
	w.hello()
	w.send("MAIL FROM:<alice@example.org>", "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.send("Subject: two", "", "x", ".")
	for range 2 {
		if m := w.expect(250); !strings.Contains(m, "queued as") {
			t.Fatalf("reply %q", m)
		}
	}
	r.waitFor(1)
}

// Stopping mailflow answers a client still waiting for an outcome no
// poll will give (its message came after the last poll began) at once,
// 451, rather than when answer_timeout is up or by closing on it.
func TestStopAnswersWaitingClients(t *testing.T) {
	r := newRig(t, "smtp", "answer = \"after_delivery\"\nanswer_timeout = \"1m\"", "")
	block := make(chan struct{})
	r.out.setFail(func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
		<-block
		return nil, nil
	})
	send := func(subject string) chan error {
		got := make(chan error, 1)
		go func() {
			got <- sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg(subject, "x\r\n")))
		}()
		return got
	}
	first := send("first")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "msg=received") {
		if time.Now().After(deadline) {
			t.Fatal("never received")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // in the output now
	second := send("second")
	for len(r.spooled("wait")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second was never spooled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	go r.stop()
	time.Sleep(200 * time.Millisecond)
	close(block) // the poll under way ends; no other starts
	for name, got := range map[string]chan error{"first": first, "second": second} {
		select {
		case err := <-got:
			var se *smtp.SMTPError
			if name == "first" && err != nil || name == "second" && (!errors.As(err, &se) || se.Code != 451) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s was not answered at shutdown", name)
		}
	}
}
