package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

func TestReadReplyMultiLineAndSplit(t *testing.T) {
	wire := "250-mail.example.com greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n550 5.1.1 <x@y>: no such user\r\n"
	c := &Client{br: bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(wire)), 16)}
	r, err := c.ReadReply("EHLO")
	if err != nil || r.Code != 250 || len(r.Lines) != 4 || r.Lines[3] != "8BITMIME" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = c.ReadReply("RCPT")
	if err != nil || r.Code != 550 || r.Enhanced != "5.1.1" || r.Lines[0] != "<x@y>: no such user" {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestReadReplyRejectsMixedCodes(t *testing.T) {
	c := &Client{br: bufio.NewReader(strings.NewReader("250-a\r\n354 b\r\n"))}
	var pe *ProtocolError
	if _, err := c.ReadReply("EHLO"); !errors.As(err, &pe) || !c.Broken {
		t.Fatalf("want a protocol error and a broken session, got %v", err)
	}
}

// unstuff reverses dotWriter: it removes the doubled dots and the
// terminator, as a server does.
func unstuff(t *testing.T, b []byte) []byte {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\r\n.\r\n")) && !bytes.Equal(b, []byte(".\r\n")) {
		t.Fatalf("data does not end with CRLF.CRLF: %q", b)
	}
	b = b[:len(b)-3]
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(b, []byte("\r\n")) {
		if len(l) > 0 && l[0] == '.' {
			l = l[1:]
		}
		out.Write(l)
	}
	return out.Bytes()
}

func stuffed(in []byte, chunk int) []byte {
	var buf bytes.Buffer
	dw := newDotWriter(&buf)
	for len(in) > 0 {
		n := min(max(chunk, 1), len(in))
		dw.Write(in[:n])
		in = in[n:]
	}
	dw.Close()
	return buf.Bytes()
}

func TestDotWriter(t *testing.T) {
	cases := map[string]string{
		"":                 ".\r\n",
		"a\r\n":            "a\r\n.\r\n",
		".\r\n":            "..\r\n.\r\n",
		"a\n.b\nc":         "a\r\n..b\r\nc\r\n.\r\n",
		"x\r\n..\r\n.\r\n": "x\r\n...\r\n..\r\n.\r\n",
		"no end":           "no end\r\n.\r\n",
		"cr at end\r":      "cr at end\r\n.\r\n",
		"mid\rcr\r\n":      "mid\r\ncr\r\n.\r\n",
		// The SMTP smuggling patterns: a bare CR or LF before a dot line
		// must not end the data early on any server's reading.
		"a\r.\r\nb": "a\r\n..\r\nb\r\n.\r\n",
		"a\n.\nb":   "a\r\n..\r\nb\r\n.\r\n",
		"a\r\n.\rb": "a\r\n..\r\nb\r\n.\r\n",
		"\r\r\n":    "\r\n\r\n.\r\n",
	}
	for in, want := range cases {
		for _, chunk := range []int{1, 2, 1000} {
			if got := stuffed([]byte(in), chunk); string(got) != want {
				t.Errorf("%q (chunks of %d): got %q want %q", in, chunk, got, want)
			}
		}
	}
}

// FuzzDotStuffing: stuffed then unstuffed equals the input with CRLF line
// ends, however the input is cut into writes.
func FuzzDotStuffing(f *testing.F) {
	f.Add([]byte(".\r\n..\n.x"), 1)
	f.Add([]byte("\r\r\n\n."), 3)
	f.Add([]byte(""), 5)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		out := stuffed(in, chunk%64)
		if got, want := unstuff(t, out), enginetest.CanonicalCRLF(in); !bytes.Equal(got, want) {
			t.Fatalf("round trip: got %q want %q", got, want)
		}
		if bytes.Contains(out[:len(out)-3], []byte("\r\n.\r\n")) && !bytes.HasPrefix(out, []byte(".\r\n")) {
			t.Fatalf("terminator inside the data: %q", out)
		}
		for i, c := range out {
			if (c == '\r') != (i+1 < len(out) && out[i+1] == '\n') || (c == '\n' && (i == 0 || out[i-1] != '\r')) {
				t.Fatalf("bare CR or LF at %d on the wire: %q", i, out)
			}
		}
	})
}

// FuzzReadReply: any server bytes give a reply, a typed error, or an I/O
// error — never a panic or an unbounded line.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250-a\r\n250 b\r\n"))
	f.Add([]byte("421 4.3.2 bye\r\n"))
	f.Add([]byte("2\r\n"))
	f.Add([]byte("250-\n250 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{br: bufio.NewReaderSize(bytes.NewReader(data), 16)}
		for i := 0; i < 4; i++ {
			r, err := c.ReadReply("X")
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				return
			}
			if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
				t.Fatalf("bad reply %+v", r)
			}
		}
	})
}

// TestTranscript checks the bytes the client writes for one pipelined
// transaction against a scripted server.
func TestTranscript(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	var wrote bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(server)
		server.Write([]byte("220 test ESMTP\r\n"))
		line, _ := br.ReadString('\n')
		wrote.WriteString(line)
		server.Write([]byte("250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
		for i := 0; i < 4; i++ { // MAIL, RCPT, RCPT, DATA in one flight
			line, _ := br.ReadString('\n')
			wrote.WriteString(line)
		}
		server.Write([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n"))
		for {
			line, err := br.ReadString('\n')
			wrote.WriteString(line)
			if err != nil || line == ".\r\n" {
				break
			}
		}
		server.Write([]byte("250 2.0.0 queued\r\n"))
	}()
	c, err := NewClient(client, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("me.test"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Send(Envelope{From: "a@x", To: []string{"b@y", "c@y"}}, strings.NewReader("Subject: t\n\n.hi\n"))
	<-done
	if err != nil || res[0].Err != nil || res[1].Err == nil {
		t.Fatalf("%+v %v", res, err)
	}
	want := "EHLO me.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\nSubject: t\r\n\r\n..hi\r\n.\r\n"
	if wrote.String() != want {
		t.Fatalf("client wrote\n%q\nwant\n%q", wrote.String(), want)
	}
}

// BenchmarkDotWriter: a 1 MB message of base64 lines with CRLF ends, the
// common case (sizes in the issue: mixed mail is mostly such lines).
func BenchmarkDotWriter(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: a@example.org\r\nSubject: x\r\n\r\n")
	for msg.Len() < 1<<20 {
		msg.WriteString("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
	}
	b.SetBytes(int64(msg.Len()))
	w := bufio.NewWriterSize(io.Discard, 4096)
	for b.Loop() {
		dw := newDotWriter(w)
		dw.Write(msg.Bytes()[:32<<10]) // as io.Copy hands it over: 32 KB at a time
		dw.Write(msg.Bytes()[32<<10:])
		dw.Close()
	}
}
