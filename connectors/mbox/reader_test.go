package mbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// got is one message as a Reader handed it over.
type got struct {
	offset    int64
	from      string
	body      string
	truncated bool
	variant   mbox.Variant
}

// readAll reads every message of src.
func readAll(t *testing.T, src io.Reader, v mbox.Variant) []got {
	t.Helper()
	r := mbox.NewReader(src, v)
	var out []got
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("message %d: %v", len(out), err)
		}
		b, err := io.ReadAll(m)
		if err != nil {
			t.Fatalf("message %d: %v", len(out), err)
		}
		if int64(len(b)) != m.Size() {
			t.Fatalf("message %d: read %d bytes, Size says %d", len(out), len(b), m.Size())
		}
		out = append(out, got{m.Offset, m.From, string(b), m.Truncated(), m.Variant()})
	}
}

func bodies(g []got) []string {
	var out []string
	for _, m := range g {
		out = append(out, m.body)
	}
	return out
}

// plainReader hides every method but Read: a pipe, a gzip stream.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// Each dialect, written as its writers write it, with "From " lines (bare
// and quoted) in its bodies, reads back as the messages that were
// written, from a file and from a stream, one byte at a time too.
func TestReaderReadsEachVariant(t *testing.T) {
	want := []string{
		"Subject: one\n\nFrom here on, a line that looks like a separator.\n>From a quoted one\n>>From twice\nend\n",
		"Subject: two\n\nFrom Sat Nov 21 10:00:00 2026\n\nFrom me@example.org Sat Nov 21 10:00:00 2026\nlast\n",
		"Subject: three\n\n",
	}
	// mboxrd: one more '>' on every >*From line.
	rd := "From a@example.org Sat Nov 21 10:00:00 2026\n" +
		"Subject: one\n\n>From here on, a line that looks like a separator.\n>>From a quoted one\n>>>From twice\nend\n\n" +
		"From b@example.org Sat Nov 21 10:00:01 2026\n" +
		"Subject: two\n\n>From Sat Nov 21 10:00:00 2026\n\n>From me@example.org Sat Nov 21 10:00:00 2026\nlast\n\n" +
		"From c@example.org Sat Nov 21 10:00:02 2026\nSubject: three\n\n\n"
	// mboxcl2: nothing quoted; Content-Length counts the body.
	cl2 := ""
	for i, w := range want {
		h, b, _ := strings.Cut(w, "\n\n")
		cl2 += fmt.Sprintf("From %c@example.org Sat Nov 21 10:00:0%d 2026\n%s\nContent-Length: %d\n\n%s\n", 'a'+i, i, h, len(b), b)
	}
	wantCL2 := make([]string, len(want))
	for i, w := range want {
		h, b, _ := strings.Cut(w, "\n\n")
		wantCL2[i] = fmt.Sprintf("%s\nContent-Length: %d\n\n%s", h, len(b), b)
	}
	// mboxo: "From " quoted, ">From " left as it is: a body line ">From "
	// and a quoted "From " read alike, as "From ".
	o := "From a@example.org Sat Nov 21 10:00:00 2026\nSubject: o\n\n>From quoted\n>>From left alone\n\n"
	wantO := []string{"Subject: o\n\nFrom quoted\n>>From left alone\n"}

	cases := []struct {
		name string
		file string
		v    mbox.Variant
		want []string
		kind mbox.Variant
	}{
		{"mboxrd", rd, mbox.Mboxrd, want, mbox.Mboxrd},
		{"mboxrd as auto", rd, mbox.Auto, want, mbox.Mboxrd},
		{"mboxcl2", cl2, mbox.Mboxcl2, wantCL2, mbox.Mboxcl2},
		{"mboxcl2 as auto", cl2, mbox.Auto, wantCL2, mbox.Mboxcl2},
		{"mboxo", o, mbox.Mboxo, wantO, mbox.Mboxo},
		{"mboxrd, CRLF", crlf(rd), mbox.Auto, crlfAll(want), mbox.Mboxrd},
		{"mboxcl2, CRLF", crlfCL2(want), mbox.Auto, crlfAllCL2(want), mbox.Mboxcl2},
	}
	for _, c := range cases {
		for _, src := range []struct {
			name string
			r    func() io.Reader
		}{
			{"file", func() io.Reader { return strings.NewReader(c.file) }},
			{"stream", func() io.Reader { return plainReader{strings.NewReader(c.file)} }},
			{"one byte at a time", func() io.Reader { return iotest.OneByteReader(strings.NewReader(c.file)) }},
		} {
			t.Run(c.name+"/"+src.name, func(t *testing.T) {
				g := readAll(t, src.r(), c.v)
				if b := bodies(g); !equal(b, c.want) {
					t.Fatalf("got\n%q\nwant\n%q", b, c.want)
				}
				for _, m := range g {
					if m.variant != c.kind || m.truncated {
						t.Fatalf("message at %d read as %v (truncated %v), want %v", m.offset, m.variant, m.truncated, c.kind)
					}
					if c.file[m.offset:m.offset+int64(len(m.from))] != m.from {
						t.Fatalf("offset %d does not hold the From_ line %q", m.offset, m.from)
					}
				}
			})
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func crlfAll(s []string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = crlf(s[i])
	}
	return out
}

// crlfCL2 is an mboxcl2 file of msgs with CRLF line ends throughout.
func crlfCL2(msgs []string) string {
	var b strings.Builder
	for i, w := range msgs {
		h, body, _ := strings.Cut(crlf(w), "\r\n\r\n")
		fmt.Fprintf(&b, "From x@example.org Sat Nov 21 10:00:0%d 2026\r\n%s\r\nContent-Length: %d\r\n\r\n%s\r\n", i, h, len(body), body)
	}
	return b.String()
}

func crlfAllCL2(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, w := range msgs {
		h, body, _ := strings.Cut(crlf(w), "\r\n\r\n")
		out[i] = fmt.Sprintf("%s\r\nContent-Length: %d\r\n\r\n%s", h, len(body), body)
	}
	return out
}

// A Content-Length that does not end at a From_ line is not believed by
// Auto: the message ends at the next From_ line, as in mboxrd.
func TestWrongContentLengthIsNotBelieved(t *testing.T) {
	file := "From a@x Sat Nov 21 10:00:00 2026\nContent-Length: 3\n\nlonger than three\n\n" +
		"From b@x Sat Nov 21 10:00:00 2026\nContent-Length: 1000\n\nshorter\n\n" +
		"From c@x Sat Nov 21 10:00:00 2026\nSubject: c\n\nc\n"
	for _, src := range []io.Reader{strings.NewReader(file), plainReader{strings.NewReader(file)}} {
		g := readAll(t, src, mbox.Auto)
		want := []string{"Content-Length: 3\n\nlonger than three\n", "Content-Length: 1000\n\nshorter\n", "Subject: c\n\nc\n"}
		if b := bodies(g); !equal(b, want) {
			t.Fatalf("got %q", b)
		}
		if g[0].variant != mbox.Mboxrd || g[1].variant != mbox.Mboxrd {
			t.Fatalf("read as %v and %v; a wrong Content-Length must not make it mboxcl2", g[0].variant, g[1].variant)
		}
	}
}

// A last message cut short is handed over as it is, and says so: no line
// end at the end of the file, or a Content-Length past it.
func TestTruncatedLastMessage(t *testing.T) {
	whole := "From a@x Sat Nov 21 10:00:00 2026\nSubject: a\n\na\n\n"
	cases := []struct {
		name, file, last string
	}{
		{"no line end", whole + "From b@x Sat Nov 21 10:00:00 2026\nSubject: b\n\nthe download stopp", "Subject: b\n\nthe download stopp"},
		{"no line end, CRLF", crlf(whole) + "From b@x Sat Nov 21 10:00:00 2026\r\nSubject: b\r\n\r\nthe download stopp", "Subject: b\r\n\r\nthe download stopp"},
		{"Content-Length past the end", whole + "From b@x Sat Nov 21 10:00:00 2026\nContent-Length: 500\n\nonly this\n", "Content-Length: 500\n\nonly this\n"},
		{"header cut", whole + "From b@x Sat Nov 21 10:00:00 2026\nSubject: b", "Subject: b"},
	}
	for _, c := range cases {
		for _, v := range []mbox.Variant{mbox.Auto, mbox.Mboxcl2, mbox.Mboxrd} {
			if v == mbox.Mboxrd && strings.Contains(c.name, "Content-Length") {
				continue // mboxrd does not read Content-Length
			}
			t.Run(fmt.Sprintf("%s/%v", c.name, v), func(t *testing.T) {
				g := readAll(t, strings.NewReader(c.file), v)
				if len(g) != 2 || g[0].truncated || !g[1].truncated || g[1].body != c.last {
					t.Fatalf("got %+v", g)
				}
			})
		}
	}
	// A message whose last line ends is whole, blank line or not.
	g := readAll(t, strings.NewReader(strings.TrimSuffix(whole, "\n")), mbox.Auto)
	if len(g) != 1 || g[0].truncated || g[0].body != "Subject: a\n\na\n" {
		t.Fatalf("got %+v", g)
	}
}

// Lines longer than the read buffer are handed over in pieces, and a
// "From " inside one is not the start of a line.
func TestLongLinesAreStreamed(t *testing.T) {
	long := strings.Repeat("x", 64<<10-3) + "\nFrom " + strings.Repeat("y", 300<<10) + "From z\n"
	msg := "Subject: long\n\n" + long + ">From quoted\n"
	var file bytes.Buffer
	w, _ := mbox.NewWriter(&file, mbox.Mboxrd)
	w.WriteMessage("From a@x Sat Nov 21 10:00:00 2026", strings.NewReader(msg))
	w.WriteMessage("From b@x Sat Nov 21 10:00:00 2026", strings.NewReader("Subject: b\n\nb\n"))
	w.Flush()
	for _, src := range []io.Reader{bytes.NewReader(file.Bytes()), iotest.HalfReader(bytes.NewReader(file.Bytes()))} {
		g := readAll(t, src, mbox.Auto)
		if len(g) != 2 || g[0].body != msg || g[1].body != "Subject: b\n\nb\n" {
			t.Fatalf("%d messages; first one %d bytes, want %d", len(g), len(g[0].body), len(msg))
		}
	}
}

// Leading blank lines are passed over; anything else before the first
// From_ line says the file is no mbox; an empty file has no message.
func TestNotAnMbox(t *testing.T) {
	if g := readAll(t, strings.NewReader("\n\nFrom a@x Sat Nov 21 10:00:00 2026\nSubject: a\n\n"), mbox.Auto); len(g) != 1 {
		t.Fatalf("got %+v", g)
	}
	if g := readAll(t, strings.NewReader(""), mbox.Auto); len(g) != 0 {
		t.Fatalf("got %+v", g)
	}
	_, err := mbox.NewReader(strings.NewReader("Return-Path: <a@x>\nSubject: a\n\n"), mbox.Auto).Next()
	if !mbox.IsFormatError(err) {
		t.Fatalf("want a FormatError, got %v", err)
	}
}

// A From_ line not after a blank line starts a message only if it looks
// like one (a time and a year), as Python's mailbox writes them; an
// unquoted "From " line in a body does not.
func TestFromLineWithoutBlankLineBefore(t *testing.T) {
	file := "From a@x Sat Nov 21 10:00:00 2026\nSubject: a\n\nintro\nFrom the desk of a@x\nbody\n" +
		"From b@x Sat Nov 21 10:00:00 2026\nSubject: b\n\nb\n"
	g := readAll(t, strings.NewReader(file), mbox.Auto)
	if b := bodies(g); !equal(b, []string{"Subject: a\n\nintro\nFrom the desk of a@x\nbody\n", "Subject: b\n\nb\n"}) {
		t.Fatalf("got %q", b)
	}
}

// Skipping a message without reading it, or reading part of it, leaves
// the Reader at the next.
func TestNextSkipsWhatWasNotRead(t *testing.T) {
	var file bytes.Buffer
	msgs := enginetest.Mix(20)
	w, _ := mbox.NewWriter(&file, mbox.Mboxrd)
	for _, m := range msgs {
		w.WriteMessage("From a@x Sat Nov 21 10:00:00 2026", bytes.NewReader(m))
	}
	w.Flush()
	r := mbox.NewReader(bytes.NewReader(file.Bytes()), mbox.Auto)
	for i := 0; ; i++ {
		m, err := r.Next()
		if err == io.EOF {
			if i != len(msgs) {
				t.Fatalf("%d messages, want %d", i, len(msgs))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 1:
			io.CopyN(io.Discard, m, 10)
		case 2:
			b, _ := io.ReadAll(m)
			if !bytes.Equal(b, withLineEnd(msgs[i])) {
				t.Fatalf("message %d differs", i)
			}
		}
	}
}

func withLineEnd(m []byte) []byte {
	if len(m) > 0 && m[len(m)-1] != '\n' {
		return append(append([]byte(nil), m...), '\n')
	}
	return m
}

func TestFromLineSenderAndDate(t *testing.T) {
	cases := []struct {
		line, sender string
		date         time.Time
	}{
		{"From joe@example.org Sat Nov 21 10:00:00 2026", "joe@example.org", time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)},
		{"From 1789923658762@xxx Wed Jan 05 12:34:56 +0000 2022", "1789923658762@xxx", time.Date(2022, 1, 5, 12, 34, 56, 0, time.UTC)},
		{"From MAILER-DAEMON Mon Jan  2 15:04:05 2006", "MAILER-DAEMON", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"From a@b Mon Jan  2 15:04:05 2006 remote from uucp", "a@b", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"From a@b", "a@b", time.Time{}},
	}
	for _, c := range cases {
		r := mbox.NewReader(strings.NewReader(c.line+"\n\n"), mbox.Auto)
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Sender() != c.sender || !m.Date().Equal(c.date) {
			t.Errorf("%q: sender %q date %v", c.line, m.Sender(), m.Date())
		}
	}
}

func TestParseVariant(t *testing.T) {
	for _, s := range []string{"", "auto", "mboxo", "mboxrd", "mboxcl2"} {
		v, err := mbox.ParseVariant(s)
		if err != nil || (s != "" && v.String() != s) {
			t.Errorf("%q: %v %v", s, v, err)
		}
	}
	if _, err := mbox.ParseVariant("mmdf"); err == nil {
		t.Error("mmdf must be refused")
	}
	var fe *mbox.FormatError
	if errors.As(errors.New("x"), &fe) {
		t.Fatal()
	}
}

// Whatever a message holds, the Writer and the Reader give it back (with a
// line end at the end if it had none), between two others, read as
// mboxrd, and under Auto unless it has a Content-Length of its own: one
// that happens to count the quoted body exactly makes Auto read it as
// mboxcl2 (which quotes nothing), as such a file would be.
func FuzzWriteThenRead(f *testing.F) {
	for _, m := range specials() {
		f.Add(m)
	}
	f.Add([]byte("Content-Length: 3\n\nabc"))
	f.Add([]byte(">>>From x\r\n\r\nFrom y\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var file bytes.Buffer
		w, _ := mbox.NewWriter(&file, mbox.Mboxrd)
		for _, m := range [][]byte{[]byte("Subject: before\n\nb\n"), msg, []byte("Subject: after\n\na\n")} {
			w.WriteMessage("From a@x Sat Nov 21 10:00:00 2026", bytes.NewReader(m))
		}
		w.Flush()
		for _, v := range []mbox.Variant{mbox.Mboxrd, mbox.Auto} {
			if v == mbox.Auto && bytes.Contains(bytes.ToLower(msg), []byte("content-length")) {
				continue
			}
			g := readAll(t, bytes.NewReader(file.Bytes()), v)
			if len(g) != 3 || g[1].body != string(withLineEnd(msg)) || g[2].body != "Subject: after\n\na\n" {
				t.Fatalf("%v: %q", v, bodies(g))
			}
		}
	})
}

func TestIsMbox(t *testing.T) {
	for head, want := range map[string]bool{
		"From a@x Sat Nov 21 10:00:00 2026\nSubject: a\n":      true,
		"\r\nFrom 1789@xxx Wed Jan 05 12:34:56 +0000 2022\r\n": true,
		"From a@x Sat Nov 21 10:0":                             false, // cut before its date
		"From: a@x\nSubject: a\n":                              false,
		"Return-Path: <a@x>\n":                                 false,
		"":                                                     false,
	} {
		if got := mbox.IsMbox([]byte(head)); got != want {
			t.Errorf("%q: %v", head, got)
		}
	}
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// Passing over the messages of an mboxcl2 file reads their headers, not
// their bodies: listing one costs a read buffer (64 KiB) per message at
// most, whatever the size of the bodies.
func TestContentLengthBodiesAreNotRead(t *testing.T) {
	var file bytes.Buffer
	body := strings.Repeat("From a body line, not quoted in mboxcl2\n", 20000) // 800 KB
	for i := range 20 {
		fmt.Fprintf(&file, "From a@x Sat Nov 21 10:00:00 2026\nSubject: %d\nContent-Length: %d\n\n%s\n", i, len(body), body)
	}
	c := &countingReaderAt{r: bytes.NewReader(file.Bytes())}
	r := mbox.NewReader(io.NewSectionReader(c, 0, int64(file.Len())), mbox.Auto)
	n := 0
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 1 {
			// Read part of the first: the rest is passed over all the same.
			io.CopyN(io.Discard, m, 100)
		}
	}
	if n != 20 || c.n > 21*64<<10 {
		t.Fatalf("%d messages; read %d bytes of %d", n, c.n, file.Len())
	}
}
