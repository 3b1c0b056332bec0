package smtpd

import (
	"bytes"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/message"
)

func TestCRLFWriter(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"a\r\nb\r\n"}, "a\r\nb\r\n"},
		{[]string{"a\nb\n"}, "a\r\nb\r\n"},
		{[]string{"a\rb\r"}, "a\r\nb\r\n"},
		{[]string{"a\r", "\nb"}, "a\r\nb"},
		{[]string{"a\r", "b"}, "a\r\nb"},
		{[]string{"\r\r\n\n"}, "\r\n\r\n\r\n"},
		{[]string{"x\r"}, "x\r\n"},
	} {
		var b bytes.Buffer
		w := &crlfWriter{w: &b}
		for _, p := range c.in {
			w.Write([]byte(p))
		}
		w.Close()
		if b.String() != c.want || w.nwrote != int64(len(c.want)) {
			t.Errorf("%q: %q (%d), want %q", c.in, b.String(), w.nwrote, c.want)
		}
	}
}

func TestPermFail(t *testing.T) {
	for _, c := range []struct {
		text string
		code int
		ec   smtp.EnhancedCode
		msg  string
	}{
		{"smtp: RCPT TO:<a@b>: 550 5.1.1 no such user", 550, smtp.EnhancedCode{5, 1, 1}, "no such user"},
		{"out: 554 transaction failed", 554, smtp.EnhancedCode{5, 0, 0}, "transaction failed"},
		{"5.7.1 go away", 550, smtp.EnhancedCode{5, 7, 1}, "go away"},
		{"5.2.2 mailbox full", 550, smtp.EnhancedCode{5, 2, 2}, "mailbox full"},
		{"spam score\r\ntoo high", 550, smtp.EnhancedCode{5, 7, 1}, "spam score too high"},
		{"a 451 4.3.0 temporary hiccup", 550, smtp.EnhancedCode{5, 7, 1}, "a 451 4.3.0 temporary hiccup"},
	} {
		e := permFail(c.text)
		if e.Code != c.code || e.EnhancedCode != c.ec || e.Message != c.msg {
			t.Errorf("%q: %d %v %q", c.text, e.Code, e.EnhancedCode, e.Message)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	c, ok := parseAttributes("NAME=mx.example ADDR=IPV6:2001:db8::1 HELO=[UNAVAILABLE] LOGIN=al+2Bice PORT=25", true)
	if !ok || c.Name != "mx.example" || c.Address != "2001:db8::1" || c.Helo != "" || c.Auth != "al+ice" {
		t.Fatalf("%+v %v", c, ok)
	}
	for _, bad := range []string{"", "ADDR=nonsense", "NAME", "LOGIN=x", "COLOR=blue", "NAME=a+zz", "PORT=99999"} {
		if _, ok := parseAttributes(bad, false); ok {
			t.Errorf("%q accepted for XFORWARD", bad)
		}
	}
}

func TestReceivedField(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	got := string(receivedField("mx.example.net", "ID1", &message.Received{Recipients: []string{"bob@example.net"},
		Client: message.Client{Address: "192.0.2.1", Helo: "evil) (fake", TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256", Protocol: "ESMTPS"}}, at))
	want := "Received: from evil___fake (unknown [192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n\tby mx.example.net (mailflow) with ESMTPS id ID1\r\n\tfor <bob@example.net>; Thu, 3 Dec 2026 10:00:00 +0000 (UTC)\r\n"
	if got != want {
		t.Fatalf("%q\nwant %q", got, want)
	}
}
