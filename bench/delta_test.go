package main

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

func TestCompareBoxes(t *testing.T) {
	src := boxState{
		key("INBOX", "<a>"): {{uid: 1, flags: `\seen`}},
		key("INBOX", "<b>"): {{uid: 2, flags: `\flagged \seen`}},
		key("Sent", "<c>"):  {{uid: 1, flags: "work"}},
	}
	for _, tc := range []struct {
		name string
		dst  boxState
		want string
	}{
		{"same", boxState{
			key("INBOX", "<a>"): {{uid: 7, flags: `\seen`}},
			key("INBOX", "<b>"): {{uid: 8, flags: `\flagged \seen`}},
			key("Sent", "<c>"):  {{uid: 9, flags: "work"}},
		}, "none"},
		{"a keyword lost, a message missing", boxState{
			key("INBOX", "<a>"): {{uid: 7, flags: `\seen`}},
			key("Sent", "<c>"):  {{uid: 9, flags: ""}},
		}, "1 missing, 1 with other flags"},
		{"a duplicate, a stranger, in another folder", boxState{
			key("INBOX", "<a>"):   {{uid: 7, flags: `\seen`}, {uid: 10, flags: `\seen`}},
			key("INBOX", "<b>"):   {{uid: 8, flags: `\flagged \seen`}},
			key("INBOX", "<c>"):   {{uid: 11, flags: "work"}},
			key("Sent", "<c>"):    {{uid: 9, flags: "work"}},
			key("Drafts", "<x>"):  {{uid: 1}},
			key("Archive", "<a>"): {{uid: 1, flags: `\seen`}},
		}, "4 extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := compareBoxes(src, tc.dst).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCarried(t *testing.T) {
	ch := deltaChange{
		flagged: []string{key("INBOX", "<a>"), key("INBOX", "<b>")},
		unkeyed: []string{key("Sent", "<c>"), key("Sent", "<d>")},
		added:   []string{key("INBOX", "<new1>"), key("INBOX", "<new2>")},
	}
	before := boxState{
		key("INBOX", "<a>"): {{flags: `\seen`}},
		key("INBOX", "<b>"): {{flags: ""}},
		key("Sent", "<c>"):  {{flags: "work"}},
		key("Sent", "<d>"):  {{flags: ""}}, // never had the keyword: nothing to carry
	}
	after := boxState{
		key("INBOX", "<a>"):    {{flags: `\flagged \seen`}},
		key("INBOX", "<b>"):    {{flags: ""}},
		key("Sent", "<c>"):     {{flags: ""}},
		key("Sent", "<d>"):     {{flags: ""}},
		key("INBOX", "<new1>"): {{flags: ""}, {flags: ""}},
	}
	flagged, unkeyed, had, added, dups := ch.carried(before, after)
	if flagged != 1 || unkeyed != 1 || had != 1 || added != 1 || dups != 1 {
		t.Errorf("carried: flagged %d, unkeyed %d of %d, added %d (+%d); want 1, 1 of 1, 1 (+1)", flagged, unkeyed, had, added, dups)
	}
}

func TestPickIsSpreadAndRepeatable(t *testing.T) {
	st := boxState{}
	for i := range 100 {
		st[key("INBOX", string(rune('A'+i%26))+string(rune('a'+i/26)))] = []copyState{{uid: 1, flags: ""}}
	}
	a := pick(st, 10, func(string, copyState) bool { return true })
	b := pick(st, 10, func(string, copyState) bool { return true })
	if len(a) != 10 || a[0] != b[0] || a[9] != b[9] || a[0] == a[1] {
		t.Errorf("pick: %v then %v", a, b)
	}
}

func TestMessageID(t *testing.T) {
	if got := messageID([]byte("Subject: x\r\nmessage-id:  <m@x>\r\n\r\n")); got != "<m@x>" {
		t.Errorf("got %q", got)
	}
}

// TestDelayProxy: a request and its answer through the proxy take at
// least the round trip, and bytes arrive whole and in order.
func TestDelayProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	p, err := startDelayProxy(ln.Addr().String(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, line := range []string{"a001 NOOP\r\n", "a002 NOOP\r\n"} {
		start := time.Now()
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got != line {
			t.Errorf("got %q, want %q", got, line)
		}
		if rtt := time.Since(start); rtt < 40*time.Millisecond {
			t.Errorf("a round trip took %v, want at least 40ms", rtt)
		}
	}
	// A large write arrives whole: the window holds it.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	go c.Write(big)
	back := make([]byte, len(big))
	if _, err := io.ReadFull(r, back); err != nil {
		t.Fatal(err)
	}
	for i := range back {
		if back[i] != byte(i) {
			t.Fatalf("byte %d: %d", i, back[i])
		}
	}
}

func TestParseRTT(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "50ms": 50 * time.Millisecond} {
		if got, err := parseRTT(in); err != nil || got != want {
			t.Errorf("parseRTT(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseRTT("-1s"); err == nil {
		t.Error("a negative RTT was taken")
	}
}
