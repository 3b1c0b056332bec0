//go:build integration

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// malformedCorpus builds messages of the kinds that break mail software,
// each in several sizes: bare LF and bare CR line ends, NUL bytes, 8-bit
// headers in unknown charsets, 10,000 header fields, MIME nested 1,000
// deep, lines over 1,000 octets, leading dots, no final newline, a header
// and no body, and no header at all or no bytes at all. (Lines that are no
// header field inside a header are kept byte for byte by mailflow, as the
// smtp package's tests check on the wire; Postfix itself ends the header
// there and inserts a blank line, so they are not sent through it here.)
func malformedCorpus() [][]byte {
	var out [][]byte
	id := 0
	hdr := func(extra string) string {
		id++
		return fmt.Sprintf("From: corpus@x.test\r\nTo: sink@example.org\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <c%03d@corpus.test>\r\nSubject: case %d\r\n%s", id, id, extra)
	}
	for v := 1; v <= 24; v++ {
		n := v * 7
		body := strings.Repeat("line of text\r\n", n)
		out = append(out,
			[]byte(strings.ReplaceAll(hdr("")+"\r\n"+body, "\r\n", "\n")),                                                    // bare LF
			[]byte(strings.ReplaceAll(hdr("")+"\r\n"+body, "\r\n", "\r")),                                                    // bare CR
			[]byte(hdr("")+"\r\nnul\x00byte "+strings.Repeat("\x00", v)+"\r\n"+body),                                         // NUL
			[]byte(hdr(fmt.Sprintf("X-Odd: =?x-unknown-%d?q?caf=E9?=\r\nX-Raw: caf\xe9 na\xefve %d\r\n", v, v))+"\r\n"+body), // 8-bit headers
			[]byte(hdr("")+"\r\n"+strings.Repeat("x", 1000*v)+"\r\n"),                                                        // long line
			[]byte(hdr("")+"\r\n.\r\n..\r\n.leading dot\r\n"+body+"."),                                                       // dots, no final newline
			[]byte(hdr("")+"\r\n"+body[:len(body)-2]),                                                                        // no final newline
			[]byte(hdr("")), // header only
		)
		if v <= 3 {
			var fields strings.Builder
			for i := range 10000 {
				fmt.Fprintf(&fields, "X-Field-%05d: value %d\r\n", i, i)
			}
			out = append(out, []byte(hdr(fields.String())+"\r\n"+body))
			depth := 1000
			var nest strings.Builder
			nest.WriteString(hdr("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n") + "\r\n")
			for d := 0; d < depth; d++ {
				fmt.Fprintf(&nest, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", d, d+1)
			}
			nest.WriteString(fmt.Sprintf("--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n", depth))
			for d := depth; d >= 0; d-- {
				fmt.Fprintf(&nest, "--b%d--\r\n", d)
			}
			out = append(out, []byte(nest.String()))
			out = append(out, []byte("this message has no header at all\r\n\r\n"+body), []byte{})
		}
	}
	return out
}

// corpusRun moves msgs from a Maildir through a script that adds one header
// field to real Postfix, and returns what arrived and what was quarantined.
func corpusRun(t *testing.T, srv *enginetest.Servers, run string, msgs [][]byte) (arrived [][]byte, quarantined []string) {
	t.Helper()
	dir := t.TempDir()
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), msgs); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tag.lua"), fmt.Appendf(nil, "function filter(msg)\n  msg:set_header(\"X-Test-Run\", %q)\nend\n", run), 0o600)
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
[[input]]
name = "src"
type = "maildir"
path = "src"
pipeline = "main"
[[pipeline]]
name = "main"
scripts = ["tag.lua"]
outputs = ["postfix"]
[[output]]
name = "postfix"
type = "smtp"
address = %q
tls = "starttls"
tls_ca_file = %q
to = ["sink@example.org"]
`, srv.SMTP, srv.CA), 0o600)
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 && r.code != 3 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("summary: %s", strings.TrimSpace(r.stdout))
	if left, _ := enginetest.ReadMaildir(filepath.Join(dir, "src")); len(left) != 0 {
		t.Fatalf("%d messages left at the source", len(left))
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "state", "quarantine", "*.json"))
	for _, e := range entries {
		b, _ := os.ReadFile(e)
		var q struct{ ID, Reason string }
		json.Unmarshal(b, &q)
		quarantined = append(quarantined, q.Reason)
	}
	arrived = enginetest.SinkMessages(t, srv.SinkDir, run, len(msgs)-len(quarantined))
	return arrived, quarantined
}

// Every message of the malformed corpus goes through a script that edits
// its header and arrives with only that edit changed (line ends made CRLF
// on the wire), or is quarantined with a reason. None arrives corrupted.
func TestMalformedCorpusArrivesIntactOrQuarantined(t *testing.T) {
	srv := enginetest.RealServers(t)
	msgs := malformedCorpus()
	run := fmt.Sprintf("corpus-%d", os.Getpid())
	arrived, quarantined := corpusRun(t, srv, run, msgs)
	want := map[string]int{}
	for _, m := range msgs {
		want[enginetest.Digest(enginetest.CanonicalCRLF(append([]byte("X-Test-Run: "+run+"\r\n"), m...)))]++
	}
	for _, a := range arrived {
		d := enginetest.Digest(enginetest.WithoutTrace(a))
		if want[d] == 0 {
			t.Errorf("arrived changed beyond the edit:\n%.300q", enginetest.WithoutTrace(a))
			continue
		}
		want[d]--
	}
	for _, reason := range quarantined {
		if reason == "" {
			t.Error("quarantined without a reason")
		}
	}
	if len(arrived)+len(quarantined) != len(msgs) {
		t.Fatalf("%d messages: %d arrived, %d quarantined", len(msgs), len(arrived), len(quarantined))
	}
	reasons := map[string]int{}
	for _, r := range quarantined {
		reasons[r]++
	}
	t.Logf("%d messages: %d arrived intact, %d quarantined: %v", len(msgs), len(arrived), len(quarantined), reasons)
}

// A legal folded Cc of 60,000 addresses (1.4 MB of header) edited by a
// script arrives with every field, byte-identical apart from the edit.
func TestMegabyteFoldedCcEditedArrivesIntact(t *testing.T) {
	srv := enginetest.RealServers(t)
	var cc strings.Builder
	for i := range 60000 {
		if i > 0 {
			cc.WriteString(",\r\n ")
		}
		fmt.Fprintf(&cc, "user%05d@example.org", i)
	}
	msg := []byte("From: a@x.test\r\nTo: sink@example.org\r\nCc: " + cc.String() + "\r\nSubject: big header\r\nMessage-ID: <bigcc@x.test>\r\n\r\nbody\r\n")
	run := fmt.Sprintf("bigcc-%d", os.Getpid())
	arrived, quarantined := corpusRun(t, srv, run, [][]byte{msg})
	if len(quarantined) != 0 || len(arrived) != 1 {
		t.Fatalf("arrived %d, quarantined %v", len(arrived), quarantined)
	}
	got := enginetest.WithoutTrace(arrived[0])
	if want := append([]byte("X-Test-Run: "+run+"\r\n"), msg...); !bytes.Equal(got, want) {
		t.Fatalf("the header arrived changed (%d bytes, want %d); Subject and Message-ID still in the header: %v",
			len(got), len(want), bytes.Contains(got[:bytes.Index(got, []byte("\r\n\r\n"))], []byte("Message-ID: <bigcc@x.test>")))
	}
}
