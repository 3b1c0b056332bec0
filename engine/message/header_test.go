package message

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// headerCases are header blocks (with a body after them) that must come
// back byte for byte when nothing is edited.
var headerCases = map[string]string{
	"crlf":                "From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n",
	"lf":                  "From: a@x.test\nSubject: hi\n\nbody\n",
	"bare cr":             "From: a@x.test\rSubject: hi\r\rbody\r",
	"folded":              "Subject: a\r\n  long\r\n\tsubject\r\nTo: b@x.test\r\n\r\nbody",
	"malformed in middle": "From: a@x.test\r\n: no name\r\nthis line has no colon\r\nSubject: hi\r\n\r\nbody",
	"header only":         "From: a@x.test\r\nSubject: no body",
	"header only, eol":    "From: a@x.test\r\nSubject: no body\r\n",
	"odd spacing":         "Subject :  spaced   \r\nX-Empty:\r\n\r\n",
	"8-bit":               "Subject: caf\xe9\r\n\r\nbody",
	"empty header":        "\r\nbody only",
}

func TestUneditedHeaderRoundTrips(t *testing.T) {
	for name, raw := range headerCases {
		t.Run(name, func(t *testing.T) {
			m := New([]byte(raw), Source{})
			if m.HeaderErr != nil {
				t.Fatal(m.HeaderErr)
			}
			m.MarkHeaderChanged() // write the header from its fields
			var out bytes.Buffer
			m.WriteTo(&out)
			if out.String() != raw {
				t.Fatalf("got\n%q\nwant\n%q", out.String(), raw)
			}
		})
	}
}

// An edit changes the edited field and nothing else: every other byte,
// malformed lines and line-end style included, stays.
func TestEditChangesOnlyTheEditedField(t *testing.T) {
	cases := []struct{ name, raw, want string }{
		{"replace in place", "A: 1\r\nSubject: old\r\n folded\r\nB: 2\r\n\r\nbody", "A: 1\r\nSubject: new\r\nB: 2\r\n\r\nbody"},
		{"lf style kept", "A: 1\nSubject: old\n\nbody\n", "A: 1\nSubject: new\n\nbody\n"},
		{"bare cr kept", "A: 1\rSubject: old\r\rbody", "A: 1\rSubject: new\r\rbody"},
		{"malformed kept", "A: 1\r\n: odd\r\nSubject: old\r\n\r\n", "A: 1\r\n: odd\r\nSubject: new\r\n\r\n"},
		{"header only", "A: 1\r\nSubject: old", "A: 1\r\nSubject: new\r\n"},
		{"added on top", "A: 1\r\n\r\nb", "Subject: new\r\nA: 1\r\n\r\nb"},
		{"duplicates go", "Subject: a\r\nX: 1\r\nSubject: b\r\n\r\n", "Subject: new\r\nX: 1\r\n\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New([]byte(c.raw), Source{})
			m.Header.Set("Subject", "new")
			m.MarkHeaderChanged()
			var out bytes.Buffer
			m.WriteTo(&out)
			if out.String() != c.want {
				t.Fatalf("got\n%q\nwant\n%q", out.String(), c.want)
			}
			if m.Size() != int64(out.Len()) {
				t.Fatalf("Size %d, wrote %d", m.Size(), out.Len())
			}
		})
	}
}

// A folded Cc of 60,000 addresses (1.4 MB) is parsed whole: an edit keeps
// every field, and the blank line where it was.
func TestHugeFoldedHeaderIsParsedWhole(t *testing.T) {
	var cc strings.Builder
	cc.WriteString("Cc: ")
	for i := range 60000 {
		if i > 0 {
			cc.WriteString(",\r\n ")
		}
		fmt.Fprintf(&cc, "user%05d@example.org", i)
	}
	raw := "From: a@x.test\r\n" + cc.String() + "\r\nSubject: big\r\nMessage-ID: <big@x.test>\r\n\r\nbody\r\n"
	if len(raw) < 1<<20 {
		t.Fatalf("test header only %d bytes", len(raw))
	}
	m := New([]byte(raw), Source{})
	if m.HeaderErr != nil || m.Header.Get("Message-Id") != "<big@x.test>" || len(strings.Split(m.Header.Get("Cc"), ",")) != 60000 {
		t.Fatalf("parse: %v", m.HeaderErr)
	}
	m.Header.Set("X-Seen", "yes")
	m.MarkHeaderChanged()
	var out bytes.Buffer
	m.WriteTo(&out)
	if out.String() != "X-Seen: yes\r\n"+raw {
		t.Fatal("the edit changed more than the added field")
	}
}

func TestHeaderOverMaxIsLeftAlone(t *testing.T) {
	raw := []byte("Subject: " + strings.Repeat("x", 5000) + "\r\n\r\nbody")
	m, err := Read(bytes.NewReader(raw), Source{}, SpoolOptions{MaxHeader: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if m.HeaderErr != ErrHeaderTooLarge {
		t.Fatalf("HeaderErr %v", m.HeaderErr)
	}
	var out bytes.Buffer
	m.WriteTo(&out)
	if !bytes.Equal(out.Bytes(), raw) {
		t.Fatal("a message with a header over the bound must flow untouched")
	}
}

func TestLongNewValueIsFoldedUnder998(t *testing.T) {
	v := strings.TrimSpace(strings.Repeat("word ", 1000))
	m := New([]byte("A: 1\r\n\r\n"), Source{})
	m.Header.Set("X-Long", v)
	m.MarkHeaderChanged()
	var out bytes.Buffer
	m.WriteTo(&out)
	for _, line := range strings.Split(out.String(), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("a line of %d octets", len(line))
		}
	}
	m2 := New(out.Bytes(), Source{})
	if m2.Header.Get("X-Long") != v {
		t.Fatal("folding changed the value")
	}
}

// FuzzHeaderEditKeepsOtherBytes: parse any bytes; when they have a header,
// adding a field and writing gives the new field on top of the original
// bytes, every one of them.
func FuzzHeaderEditKeepsOtherBytes(f *testing.F) {
	for _, raw := range headerCases {
		f.Add([]byte(raw))
	}
	f.Add([]byte("A: 1\r\n\r"))
	f.Add([]byte("A:\r\n \r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := New(raw, Source{})
		if m.HeaderErr != nil {
			return
		}
		m.Header.Set("X-Fuzz", "1")
		m.MarkHeaderChanged()
		var out bytes.Buffer
		m.WriteTo(&out)
		nl := m.Header.nl
		want := append([]byte("X-Fuzz: 1"+nl), raw...)
		if !hadXFuzz(raw) && !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("in  %q\nout %q", raw, out.Bytes())
		}
		if int64(out.Len()) != m.Size() {
			t.Fatalf("Size %d, wrote %d", m.Size(), out.Len())
		}
	})
}

func hadXFuzz(raw []byte) bool { return bytes.Contains(bytes.ToLower(raw), []byte("x-fuzz")) }

// CheckSet and CheckAdd refuse what could not be sent: a line that cannot
// be folded under RFC 5322's 998 octets, and a header past the
// max_header_size it was read under. What they accept, Set writes folded.
func TestCheckRefusesWhatCannotBeSent(t *testing.T) {
	read := func(t *testing.T, raw string, maxHeader int64) *Message {
		t.Helper()
		m, err := Read(strings.NewReader(raw), Source{}, SpoolOptions{MaxHeader: maxHeader})
		if err != nil || m.HeaderErr != nil {
			t.Fatal(err, m.HeaderErr)
		}
		return m
	}
	big := "X-Big: " + strings.Repeat("b ", 1500) + "\r\n" // 3,009 bytes, folded
	cases := []struct {
		name, raw   string
		maxHeader   int64
		field, val  string
		add         bool
		want        error
		wantWritten bool
	}{
		{"folds at spaces", "A: 1\r\n\r\n", 0, "X-Long", strings.Repeat("word ", 10000), false, nil, true},
		{"a word of 998 octets cannot fold", "A: 1\r\n\r\n", 0, "X-Long", "a " + strings.Repeat("x", 998), false, ErrLineTooLong, false},
		{"50 MB without a space", "A: 1\r\n\r\n", 0, "X", strings.Repeat("a", 1<<20), false, ErrLineTooLong, false},
		{"a name too long to fit a line", "A: 1\r\n\r\n", 0, strings.Repeat("N", 997), "v", false, ErrLineTooLong, false},
		{"the first line holds the name", "A: 1\r\n\r\n", 0, "Subject", strings.Repeat("x", 990), false, ErrLineTooLong, false},
		{"just fits", "A: 1\r\n\r\n", 0, "Subject", strings.Repeat("x", 998-len("Subject: ")), false, nil, true},
		{"over max_header_size", "A: 1\r\n\r\n", 4096, "X-Long", strings.Repeat("word ", 1000), false, ErrHeaderTooLarge, false},
		{"set replaces what it counts", big + "A: 1\r\n\r\n", 4096, "X-Big", strings.Repeat("s ", 1000), false, nil, true},
		{"add keeps what it counts", big + "A: 1\r\n\r\n", 4096, "X-Big", strings.Repeat("s ", 1000), true, ErrHeaderTooLarge, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := read(t, c.raw, c.maxHeader)
			check := m.Header.CheckSet
			if c.add {
				check = m.Header.CheckAdd
			}
			err := check(c.field, c.val)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !c.wantWritten {
				return
			}
			if c.add {
				m.Header.Add(c.field, c.val)
			} else {
				m.Header.Set(c.field, c.val)
			}
			m.MarkHeaderChanged()
			var out bytes.Buffer
			m.WriteTo(&out)
			for _, line := range strings.Split(out.String(), "\r\n") {
				if len(line) > 998 {
					t.Fatalf("a line of %d octets was written", len(line))
				}
			}
			if limit := c.maxHeader; limit > 0 && int64(out.Len()) > limit+int64(len("\r\n")) {
				t.Fatalf("wrote a header of %d bytes over max_header_size %d", out.Len(), limit)
			}
			if got := New(out.Bytes(), Source{}).Header.Get(c.field); got != strings.TrimSpace(c.val) {
				t.Fatalf("read back %d bytes, not the %d set", len(got), len(c.val))
			}
		})
	}
}
