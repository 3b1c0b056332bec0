// Package enginetest makes test mail: realistic messages, and the awkward
// ones that real mailboxes hold (8-bit headers, bare LF line ends, no header
// at all, empty, huge). Tests of every connector use it, so that each is
// exercised with the same mix.
package enginetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Kind names a shape of message.
type Kind string

const (
	Plain        Kind = "plain"
	Multipart    Kind = "multipart"
	UTF8Header   Kind = "utf8-header" // RFC 2047 encoded subject and from
	RawUTF8      Kind = "raw-8bit"    // 8-bit bytes in the header itself
	BareLF       Kind = "bare-lf"     // LF line ends
	DotLines     Kind = "dot-lines"   // lines starting with '.'
	NoHeader     Kind = "no-header"   // no header at all
	Empty        Kind = "empty"       // zero bytes
	Huge         Kind = "huge"        // Size bytes, default 20 MB
	EightBitBody Kind = "8bit-body"   // Latin-1/UTF-8 body bytes, Content-Transfer-Encoding: 8bit
)

// Message returns message n of the given kind. Every message is distinct (it
// carries n), so a set of them can be compared by digest. size is used by
// Huge (0 means 20 MB) and as the body size hint of others.
func Message(kind Kind, n int, size int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	crlf := "\r\n"
	if kind == BareLF {
		crlf = "\n"
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + crlf) }
	common := func(subject string) {
		hdr("Return-Path", fmt.Sprintf("<sender%d@example.org>", n%17))
		hdr("From", fmt.Sprintf("Sender %d <sender%d@example.org>", n%17, n%17))
		hdr("To", "rcpt@example.net")
		hdr("Subject", subject)
		hdr("Date", "Sat, 21 Nov 2026 10:00:00 +0000")
		hdr("Message-ID", fmt.Sprintf("<msg-%d-%s@example.org>", n, kind))
	}
	text := func(lines int) {
		for i := 0; i < lines; i++ {
			fmt.Fprintf(&b, "Line %d of message %d: %s%s", i, n, words[r.IntN(len(words))], crlf)
		}
	}
	switch kind {
	case Empty:
		return nil
	case NoHeader:
		fmt.Fprintf(&b, "no header in message %d\r\njust text: with a colon\r\n", n)
		return b.Bytes()
	case Huge:
		if size <= 0 {
			size = 20 << 20
		}
		common(fmt.Sprintf("huge %d", n))
		hdr("Content-Type", "text/plain")
		b.WriteString(crlf)
		line := strings.Repeat("0123456789abcdef", 4) + crlf
		for b.Len() < size {
			b.WriteString(line)
		}
		return b.Bytes()
	case UTF8Header:
		common(fmt.Sprintf("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_Nr=2E_%d?=", n))
		hdr("Content-Type", "text/plain; charset=utf-8")
		b.WriteString(crlf)
		text(3 + size/60)
	case RawUTF8:
		common(fmt.Sprintf("Grüße, ça va? 日本 %d", n))
		hdr("X-Latin1", "caf\xe9")
		b.WriteString(crlf)
		text(3 + size/60)
	case EightBitBody:
		common(fmt.Sprintf("8bit body %d", n))
		hdr("Content-Type", "text/plain; charset=utf-8")
		hdr("Content-Transfer-Encoding", "8bit")
		b.WriteString(crlf)
		fmt.Fprintf(&b, "Ünïcödé bödy №%d — ✓%s", n, crlf)
		text(3 + size/60)
	case DotLines:
		common(fmt.Sprintf("dots %d", n))
		b.WriteString(crlf)
		b.WriteString("." + crlf + ".. two dots" + crlf + ".leading dot" + crlf)
		text(2 + size/60)
		b.WriteString("." + crlf + "end." + crlf)
	case Multipart:
		common(fmt.Sprintf("attachment %d", n))
		hdr("MIME-Version", "1.0")
		hdr("Content-Type", `multipart/mixed; boundary="BOUNDARY"`)
		b.WriteString(crlf + "--BOUNDARY" + crlf + "Content-Type: text/plain" + crlf + crlf)
		text(3)
		b.WriteString("--BOUNDARY" + crlf + `Content-Type: application/octet-stream; name="data.bin"` + crlf)
		b.WriteString("Content-Transfer-Encoding: base64" + crlf + crlf)
		raw := make([]byte, max(size, 1024))
		for i := range raw {
			raw[i] = byte(r.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + crlf)
			enc = enc[76:]
		}
		b.WriteString(enc + crlf + "--BOUNDARY--" + crlf)
	default: // Plain, BareLF
		common(fmt.Sprintf("message %d", n))
		hdr("Content-Type", "text/plain; charset=us-ascii")
		b.WriteString(crlf)
		text(3 + size/60)
	}
	return b.Bytes()
}

var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett"}

// Mix returns n messages cycling through every kind except Huge and Empty
// (add those where a test wants them), with sizes from 1 to 20 KB.
func Mix(n int) [][]byte {
	kinds := []Kind{Plain, Multipart, UTF8Header, RawUTF8, BareLF, DotLines, EightBitBody, NoHeader}
	out := make([][]byte, n)
	for i := range out {
		out[i] = Message(kinds[i%len(kinds)], i, 1024+(i*7919)%(19*1024))
	}
	return out
}

var maildirSeq atomic.Int64

// WriteMaildir makes a Maildir at dir holding msgs in new/. Names are unique
// within the process, as the Maildir spec requires, so that a second call
// on the same Maildir adds messages rather than replacing them.
func WriteMaildir(dir string, msgs [][]byte) error {
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		i := maildirSeq.Add(1)
		name := fmt.Sprintf("%d.M%dP%d.test", 1700000000+i, i, os.Getpid())
		if err := os.WriteFile(filepath.Join(dir, "new", name), m, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Digest is the hex SHA-256 of b.
func Digest(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// ReadMaildir returns the contents of every file in dir's new/ and cur/.
func ReadMaildir(dir string) ([][]byte, error) {
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// Count returns how many times each digest occurs in msgs.
func Count(msgs [][]byte) map[string]int {
	c := map[string]int{}
	for _, m := range msgs {
		c[Digest(m)]++
	}
	return c
}
