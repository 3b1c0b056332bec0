package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// stuff encodes data as a POP3 multi-line body, CRLF line ends, with its
// terminator; data's own line ends may be LF or CRLF.
func stuff(data []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if l[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(l)
		if l[len(l)-1] != '\n' {
			b.WriteString("\r\n")
		}
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func TestDotReaderUnstuffsAndStopsAtTerminator(t *testing.T) {
	body := "Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nnot the end\r\nend\r\n"
	wire := string(stuff([]byte(body))) + "+OK next reply\r\n"
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(wire),
		"one byte": iotest.OneByteReader(strings.NewReader(wire)),
		"half":     iotest.HalfReader(strings.NewReader(wire)),
	} {
		t.Run(name, func(t *testing.T) {
			br := bufio.NewReaderSize(r, 16) // smaller than a line
			got, err := io.ReadAll(newDotReader(br, 0))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != body {
				t.Fatalf("got %q", got)
			}
			next, err := readLine(br, 100)
			if err != nil || next != "+OK next reply" {
				t.Fatalf("the next reply must follow untouched: %q %v", next, err)
			}
		})
	}
}

func TestDotReaderBoundAndTruncation(t *testing.T) {
	wire := stuff(bytes.Repeat([]byte("0123456789\r\n"), 100))
	_, err := io.ReadAll(newDotReader(bufio.NewReader(bytes.NewReader(wire)), 500))
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge, got %v", err)
	}
	_, err = io.ReadAll(newDotReader(bufio.NewReader(bytes.NewReader(wire[:len(wire)-3])), 0))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a reply cut before its terminator must be an error, got %v", err)
	}
}

func TestReadLineBound(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)+"\r\n"), 16)
	if _, err := readLine(br, 50); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("want ErrLineTooLong, got %v", err)
	}
	br = bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader("+OK 2 320\r\n")), 16)
	if l, err := readLine(br, 50); err != nil || l != "+OK 2 320" {
		t.Fatalf("%q %v", l, err)
	}
}

func TestParseErrResponseCodes(t *testing.T) {
	cases := []struct {
		text       string
		code       string
		temp, perm bool
	}{
		{"[IN-USE] locked", "IN-USE", true, false},
		{"[LOGIN-DELAY] wait", "LOGIN-DELAY", true, false},
		{"[SYS/TEMP] disk", "SYS/TEMP", true, false},
		{"[SYS/PERM] gone", "SYS/PERM", false, true},
		{"[AUTH] bad password", "AUTH", false, true},
		{"no such message", "", false, false},
	}
	for _, c := range cases {
		e := parseErr("PASS", c.text)
		if e.Code != c.code || e.Temporary() != c.temp || e.Permanent() != c.perm {
			t.Errorf("%q: %+v temp=%v perm=%v", c.text, e, e.Temporary(), e.Permanent())
		}
	}
}

// FuzzDotReader: whatever the body, stuffing it and reading it back gives
// it again (with CRLF line ends), and the reader never reads past the
// terminator.
func FuzzDotReader(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n..c\r\n.\r\n"), 3)
	f.Add([]byte(".\n.\n"), 1)
	f.Add([]byte("no newline at end"), 7)
	f.Add([]byte("\r\r\n.\r.\n"), 2)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		wire := append(stuff(data), "TAIL"...)
		r := io.Reader(bytes.NewReader(wire))
		if chunk%3 == 0 {
			r = iotest.OneByteReader(r)
		}
		size := 16 // every edge case at a buffer's end
		if chunk%2 == 1 {
			size = 4096 // runs of many lines
		}
		br := bufio.NewReaderSize(r, size)
		got, err := io.ReadAll(newDotReader(br, 0))
		if err != nil {
			t.Fatal(err)
		}
		want := normalize(data)
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q want %q", got, want)
		}
		tail, _ := io.ReadAll(br)
		if string(tail) != "TAIL" {
			t.Fatalf("read past the terminator: tail %q", tail)
		}
		// Read as a RETR whose size LIST gave: a server that stuffs
		// right is read the same, and never found out of step or misread.
		c, _ := retrClient("", map[int]int64{1: int64(len(want))}, 1, 2)
		c.br = bufio.NewReaderSize(strings.NewReader("+OK\r\n"+string(stuff(data))+"+OK next\r\n"), size)
		retr, err := c.ReadRetr(0)
		if err != nil {
			t.Fatal(err)
		}
		d := retr.(*dotReader)
		if got, err := io.ReadAll(d); err != nil || !bytes.Equal(got, want) || c.OutOfStep() != nil || d.Misread() != nil {
			t.Fatalf("as a RETR of its size: %q %v, out of step %v, misread %v", got, err, c.OutOfStep(), d.Misread())
		}
	})
}

// normalize gives data as the wire carries it: every line ended by CRLF
// (a bare LF gets a CR; a last line without a line end gets CRLF).
func normalize(data []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if l[len(l)-1] != '\n' {
			b.Write(l)
			b.WriteString("\r\n")
			continue
		}
		b.Write(l)
	}
	return b.Bytes()
}

// FuzzReadReply: arbitrary server bytes never panic the status and line
// readers, and lines stay bounded.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte("+OK hello\r\n"))
	f.Add([]byte("-ERR [IN-USE] x\r\n"))
	f.Add([]byte("+OK\r\n1 2\r\n.\r\n"))
	f.Add([]byte("\n\n\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{br: bufio.NewReaderSize(bytes.NewReader(data), 16), maxLine: 64}
		for i := 0; i < 4; i++ {
			line, err := c.readStatus("X")
			if err != nil {
				var pe *Error
				var pr *ProtocolError
				if !errors.As(err, &pe) && !errors.As(err, &pr) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("unexpected error type %T %v", err, err)
				}
				return
			}
			if len(line) > 64 {
				t.Fatalf("line longer than the bound: %d", len(line))
			}
		}
		_ = c.readLines("X", func(l string) error {
			if len(l) > 64 {
				t.Fatalf("line longer than the bound")
			}
			return nil
		})
	})
}

// BenchmarkDotReader reads a 1 MB message of 76-byte lines, one in 200
// dot-stuffed, through the 64 KiB buffer the client reads with.
func BenchmarkDotReader(b *testing.B) {
	var body bytes.Buffer
	for i := 0; body.Len() < 1<<20; i++ {
		if i%200 == 0 {
			body.WriteString(".")
		}
		body.WriteString("a line of text in the body of a message, as mail has it, seventy-six b\r\n")
	}
	wire := stuff(body.Bytes())
	b.SetBytes(int64(len(wire)))
	rd := bytes.NewReader(wire)
	br := bufio.NewReaderSize(rd, 64<<10)
	for range b.N {
		rd.Reset(wire)
		br.Reset(rd)
		if _, err := io.Copy(io.Discard, newDotReader(br, 0)); err != nil {
			b.Fatal(err)
		}
	}
}

// retrClient is a client whose server sends wire, with the sizes LIST gave
// and RETRs for the messages queued already; what it writes is kept.
func retrClient(wire string, sizes map[int]int64, queued ...int) (*Client, *bytes.Buffer) {
	sent := &bytes.Buffer{}
	c := &Client{br: bufio.NewReaderSize(strings.NewReader(wire), 16), bw: bufio.NewWriter(sent), maxLine: 64,
		sizes: sizes, retrs: queued}
	return c, sent
}

// A RETR reply is checked against the size LIST gave. Dovecot 2.3 sends a
// message's first line as it is: a first ".x" line is read with its dot, a
// first "." line that the message goes on after is the message's, and a
// reply that ends early leaves the stream out of step; where the reader can
// tell why the bytes differ from the message, Misread says so.
func TestRetrCheckedAgainstListSize(t *testing.T) {
	cases := []struct {
		name    string
		body    string // the reply after +OK, terminator included
		size    int64
		want    string
		lost    bool // the stream is out of step after it
		misread bool
	}{
		{"stuffed first line", "..x: y\r\n\r\nbody\r\n.\r\n", 15, ".x: y\r\n\r\nbody\r\n", false, false},
		{"first line .x not stuffed", ".hidden: x\r\n\r\nbody\r\n.\r\n", 20, ".hidden: x\r\n\r\nbody\r\n", false, false},
		{"first line . not stuffed", ".\r\nrest: line\r\n\r\nbody\r\n.\r\n", 23, ".\r\nrest: line\r\n\r\nbody\r\n", false, false},
		{"a message that is one . line", ".\r\n.\r\n", 3, ".\r\n", false, false},
		{"first line .. not stuffed", "..x: y\r\n\r\nbody\r\n.\r\n", 16, ".x: y\r\n\r\nbody\r\n", true, true},
		{"empty reply for a listed message", ".\r\n", 23, "", true, true},
		{"empty message as an empty line", "\r\n.\r\n", 0, "\r\n", false, true},
		{"empty message", ".\r\n", 0, "", false, false},
		{"a later . line not stuffed", "a: b\r\n\r\n.\r\nmore\r\n.\r\n", 15, "a: b\r\n\r\n", true, false},
		{"LIST too small", "a: b\r\n\r\nbody\r\n.\r\n", 5, "a: b\r\n\r\nbody\r\n", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// RETR 1 is read while RETR 2 is in flight: its reply follows.
			cl, _ := retrClient("+OK\r\n"+c.body+"+OK next\r\nnext\r\n.\r\n", map[int]int64{1: c.size, 2: 5}, 1, 2)
			r, err := cl.ReadRetr(0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != c.want {
				t.Fatalf("read %q, %v; want %q", got, err, c.want)
			}
			lost := cl.OutOfStep()
			if (lost != nil) != c.lost || lost != nil && !errors.Is(lost, ErrOutOfStep) {
				t.Fatalf("out of step: %v, want %v", lost, c.lost)
			}
			var m *MisreadError
			if err := r.(*dotReader).Misread(); (err != nil) != c.misread || err != nil && (!errors.As(err, &m) || m.Number != 1 || m.Listed != c.size || m.Read != int64(len(got))) {
				t.Fatalf("misread: %#v, want one: %v", err, c.misread)
			}
			next, err := cl.ReadRetr(0)
			if c.lost {
				if !errors.Is(err, ErrOutOfStep) {
					t.Fatalf("a reply read after the stream went out of step: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the next reply: %v", err)
			}
			if b, err := io.ReadAll(next); err != nil || string(b) != "next\r\n" {
				t.Fatalf("the next reply: %q %v", b, err)
			}
		})
	}
}

// With no reply in flight after it, a reader that must see what follows a
// first "." line sends a NOOP, and its reply is read before the next
// command's.
func TestLeadingDotLineWithNothingInFlightSendsNOOP(t *testing.T) {
	for _, body := range []string{".\r\nrest: line\r\n\r\nbody\r\n.\r\n", ".\r\n"} {
		cl, sent := retrClient("+OK\r\n"+body+"+OK noop\r\n+OK deleted\r\n", map[int]int64{1: 23}, 1)
		r, err := cl.ReadRetr(0)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(r)
		if sent.String() != "NOOP\r\n" {
			t.Fatalf("sent %q, want a NOOP", sent)
		}
		if cl.OutOfStep() != nil {
			continue // the empty reply: nothing more is read
		}
		if _, err := cl.readStatus("DELE"); err != nil || cl.noops != 0 {
			t.Fatalf("the NOOP's reply must be read before the next one: %v", err)
		}
	}
}
