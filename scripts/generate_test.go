package scripts

import (
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/message"
)

const vacationScript = `
function filter(msg)
  local ok, why = vacation{output = "replies", from = "Alice <alice@example.org>",
    addresses = {"alice@work.example"}, days = 7,
    text = "I am away until Monday.\nÉté oblige."}
  msg:set_header("X-Vacation", ok and "replied" or why)
  return keep()
end
`

// mail makes a message with the given header lines and a short body.
func mailWith(id string, fields ...string) *message.Message {
	return message.New([]byte(strings.Join(fields, "\r\n")+"\r\nMessage-ID: <"+id+"@example.net>\r\n\r\nHello.\r\n"),
		message.Source{Input: "inbox", ID: id})
}

func loadVacation(t *testing.T, dir string) *Script {
	return loadAt(t, filepath.Join(dir, "vacation.lua"), vacationScript, plugin.ScriptLimits{StoreDir: filepath.Join(dir, "state")})
}

// RFC 5230's rules: one reply per sender per days, durable across a
// restart; none to bounces, auto-replies, lists, bulk mail, robots, the
// user's own mail, or mail not addressed to the user.
func TestVacationRepliesOncePerSenderAndNeverToMachines(t *testing.T) {
	dir := t.TempDir()
	s := loadVacation(t, dir)
	bob := "From: Bob <bob@example.net>"
	toAlice := "To: Alice <alice@work.example>"
	cases := []struct {
		msg  *message.Message
		want string // "replied" or a word of the reason
	}{
		{mailWith("1", bob, toAlice, "Subject: lunch?"), "replied"},
		{mailWith("2", bob, toAlice, "Subject: lunch? (again)"), "already replied"},
		{mailWith("3", bob, "To: team@work.example", "Cc: alice@WORK.example", "Subject: third"), "already replied"},
		{mailWith("4", "From: news@lists.example", toAlice, "List-Id: <news.lists.example>"), "mailing list"},
		{mailWith("5", "From: robot@example.com", toAlice, "Auto-Submitted: auto-replied"), "Auto-Submitted"},
		{mailWith("6", "Return-Path: <>", "From: MAILER-DAEMON@example.com", toAlice), "null sender"},
		{mailWith("7", "From: promo@shop.example", toAlice, "Precedence: bulk"), "Precedence"},
		{mailWith("8", "From: carol@example.net", "To: someone@else.example"), "is in To or Cc"},
		{mailWith("9", "From: alice@example.org", toAlice), "the user"},
		{mailWith("10", "From: owner-list@example.net", toAlice), "mail system"},
		{mailWith("11", "From: carol@example.net", toAlice, "Auto-Submitted: no", "Subject: Grüße"), "replied"},
	}
	var replies []plugin.Generated
	for i, c := range cases {
		v, err := s.Filter(context.Background(), c.msg)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		got := c.msg.Header.Get("X-Vacation")
		if !strings.Contains(got, c.want) {
			t.Errorf("message %d: %q, want %q", i+1, got, c.want)
		}
		if (c.want == "replied") != (len(v.Generated) == 1) {
			t.Errorf("message %d: %d generated", i+1, len(v.Generated))
		}
		replies = append(replies, v.Generated...)
	}
	if len(replies) != 2 {
		t.Fatalf("%d replies, want 2 (bob, carol)", len(replies))
	}
	r := replies[0]
	if r.Output != "replies" || r.Name != "vacation.lua:vacation" {
		t.Errorf("output %q name %q", r.Output, r.Name)
	}
	env := r.Message.Envelope
	if env.Sender != message.NullSender || len(env.Recipients) != 1 || env.Recipients[0] != "bob@example.net" {
		t.Errorf("envelope %+v: want MAIL FROM:<> to bob", env)
	}
	h := r.Message.Header
	for field, want := range map[string]string{
		"Auto-Submitted": "auto-replied",
		"In-Reply-To":    "<1@example.net>",
		"References":     "<1@example.net>",
		"To":             "bob@example.net",
		"Subject":        "Auto: lunch?",
		"From":           "Alice <alice@example.org>",
	} {
		if got := h.Get(field); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	if !strings.HasSuffix(h.Get("Message-ID"), "@example.org>") {
		t.Errorf("Message-ID %q", h.Get("Message-ID"))
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(r.Message.Body()))
	if string(body) != "I am away until Monday.\r\nÉté oblige.\r\n" {
		t.Errorf("body %q", body)
	}
	if subj := replies[1].Message.Header.Get("Subject"); !strings.Contains(subj, "=?utf-8?q?") {
		t.Errorf("a non-ASCII subject must be encoded: %q", subj)
	}

	// The same message filtered again (a retry) makes the same reply, with
	// the same Message-ID: the engine's ledger keeps it from going twice.
	again, err := s.Filter(context.Background(), mailWith("1", bob, toAlice, "Subject: lunch?"))
	if err != nil || len(again.Generated) != 1 || again.Generated[0].Message.Header.Get("Message-ID") != h.Get("Message-ID") {
		t.Fatalf("refiltered: %v %v", again.Generated, err)
	}

	// Restart: the store is on disk.
	s.Close()
	s = loadVacation(t, dir)
	defer s.Close()
	m := mailWith("12", bob, toAlice)
	v, err := s.Filter(context.Background(), m)
	if err != nil || len(v.Generated) != 0 || !strings.Contains(m.Header.Get("X-Vacation"), "already replied") {
		t.Fatalf("after a restart: %d replies, %q, %v", len(v.Generated), m.Header.Get("X-Vacation"), err)
	}
}

func TestNotifyMakesAnAutoGeneratedMessage(t *testing.T) {
	s := load(t, `
function filter(msg)
  if msg:header("From"):find("boss@", 1, true) then
    notify{output = "sms", to = {"me@example.org", "pager@example.org"}, from = "mailflow <mailflow@example.org>",
      subject = "Mail from the boss: " .. (msg:header("Subject") or ""), text = "It arrived."}
  end
  return keep()
end`, plugin.ScriptLimits{})
	v, err := s.Filter(context.Background(), mailWith("b1", "From: The Boss <boss@example.com>", "To: me@example.org", "Subject: now"))
	if err != nil || len(v.Generated) != 1 {
		t.Fatalf("%v %v", v.Generated, err)
	}
	g := v.Generated[0]
	h := g.Message.Header
	if g.Output != "sms" || h.Get("Auto-Submitted") != "auto-generated" || h.Get("Subject") != "Mail from the boss: now" ||
		fmt.Sprint(g.Message.Envelope.Recipients) != "[me@example.org pager@example.org]" || h.Get("References") != "<b1@example.net>" {
		t.Fatalf("%s %q %q %v", g.Output, h.Get("Auto-Submitted"), h.Get("Subject"), g.Message.Envelope.Recipients)
	}
	v, _ = s.Filter(context.Background(), mailWith("b2", "From: someone@example.com", "To: me@example.org"))
	if len(v.Generated) != 0 {
		t.Fatal("notified for someone else")
	}
	_, err = s.Filter(context.Background(), mailWith("b3", "From: boss@example.com", "Subject: x\r\n injected"))
	if err != nil {
		t.Fatal(err)
	}
	// A line break in a field is refused, not written into the header.
	bad := load(t, `function filter(msg) notify{output = "o", to = "a@b.c", subject = "x\r\nBcc: evil@example.com"} end`, plugin.ScriptLimits{})
	if _, err := bad.Filter(context.Background(), mailWith("b4", "From: a@b.c")); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Fatalf("header injection: %v", err)
	}
}
