package message

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

const nested = "From: a@example.org\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"SGVsbG8gd29ybGQ=\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"<p>Gr=FC=DFe</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"a.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"=?utf-8?q?R=C3=A9sum=C3=A9.pdf?=\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQK\r\n" +
	"--outer--\r\n" +
	"epilogue\r\n"

func bodyOf(m *Message) string {
	b, _ := io.ReadAll(m.Body())
	return string(b)
}

func TestPartsLocateEveryEntity(t *testing.T) {
	m := New([]byte(nested), Source{})
	parts, err := m.Parts()
	if err != nil {
		t.Fatal(err)
	}
	body := bodyOf(m)
	type want struct {
		ct, enc, file, disp, body string
		parent, depth             int
	}
	wants := []want{
		{ct: "multipart/mixed", enc: "7bit", parent: -1, depth: 0, body: strings.TrimSuffix(body, "")},
		{ct: "multipart/alternative", enc: "7bit", parent: 0, depth: 1, body: body[strings.Index(body, "--inner\r\n") : strings.Index(body, "--inner--\r\n")+len("--inner--")]},
		{ct: "text/plain", enc: "base64", parent: 1, depth: 2, body: "SGVsbG8gd29ybGQ="},
		{ct: "text/html", enc: "quoted-printable", parent: 1, depth: 2, body: "<p>Gr=FC=DFe</p>"},
		{ct: "application/pdf", enc: "base64", parent: 0, depth: 1, file: "Résumé.pdf", disp: "attachment", body: "JVBERi0xLjQK"},
	}
	if len(parts) != len(wants) {
		t.Fatalf("%d parts, want %d: %+v", len(parts), len(wants), parts)
	}
	for i, w := range wants {
		p := parts[i]
		got := body[p.BodyStart:p.BodyEnd]
		if p.ContentType != w.ct || p.Encoding != w.enc || p.Filename != w.file || p.Disposition != w.disp || p.Parent != w.parent || p.Depth != w.depth {
			t.Errorf("part %d: %s %s %q %q parent %d depth %d", i, p.ContentType, p.Encoding, p.Filename, p.Disposition, p.Parent, p.Depth)
		}
		if i >= 2 && got != w.body {
			t.Errorf("part %d body %q, want %q", i, got, w.body)
		}
		if i > 0 && !strings.HasPrefix(body[p.HeaderStart:p.BodyStart], "Content-Type: ") {
			t.Errorf("part %d header at %d: %q", i, p.HeaderStart, body[p.HeaderStart:p.BodyStart])
		}
	}
	if parts[1].BodyEnd != int64(strings.Index(body, "\r\n--outer\r\nContent-Type: application/pdf")) {
		t.Errorf("the alternative ends at %d", parts[1].BodyEnd)
	}
}

func TestPartsOfSignedLFAndBrokenMessages(t *testing.T) {
	signed := "Content-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\n\n--s\nContent-Type: text/plain\n\nsigned text\n--s\nContent-Type: application/pgp-signature\n\nSIG\n--s--\n"
	parts, err := New([]byte(signed), Source{}).Parts()
	if err != nil || len(parts) != 3 || !parts[1].Signed || !parts[2].Signed || parts[1].LineEnd != "\n" {
		t.Fatalf("signed: %v %+v", err, parts)
	}
	m := New([]byte(signed), Source{})
	if b := bodyOf(m); b[parts[1].BodyStart:parts[1].BodyEnd] != "signed text" {
		t.Fatalf("LF body %q", b[parts[1].BodyStart:parts[1].BodyEnd])
	}
	// No closing boundary: the last part ends with the message.
	broken := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nunfinished\r\n"
	parts, err = New([]byte(broken), Source{}).Parts()
	if err != nil || len(parts) != 2 {
		t.Fatalf("broken: %v %+v", err, parts)
	}
	if b := bodyOf(New([]byte(broken), Source{})); b[parts[1].BodyStart:parts[1].BodyEnd] != "unfinished\r\n" {
		t.Fatalf("broken body %q", b[parts[1].BodyStart:parts[1].BodyEnd])
	}
	// A single part message is one part: its whole body.
	parts, _ = New([]byte("Subject: x\r\n\r\nhello\r\n"), Source{}).Parts()
	if len(parts) != 1 || parts[0].BodyStart != 0 || parts[0].BodyEnd != 7 {
		t.Fatalf("single: %+v", parts)
	}
	// A line far longer than the read buffer does not break the count.
	long := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + strings.Repeat("x", 200_000) + "\r\n--b--\r\n"
	parts, _ = New([]byte(long), Source{}).Parts()
	if len(parts) != 2 || parts[1].BodyEnd-parts[1].BodyStart != 200_000 {
		t.Fatalf("long line: %+v", parts)
	}
}

func TestEditBodyKeepsEveryOtherByte(t *testing.T) {
	m := New([]byte(nested), Source{})
	parts, _ := m.Parts()
	orig := bodyOf(m)
	// Replace the html part's body, then the pdf part whole; edits made
	// last-first keep the earlier offsets valid.
	pdf, html := parts[4], parts[3]
	if err := m.EditBody(pdf.HeaderStart, pdf.BodyEnd, []byte("Content-Type: text/plain\r\n\r\nremoved")); err != nil {
		t.Fatal(err)
	}
	if err := m.EditBody(html.BodyStart, html.BodyEnd, []byte("<p>new</p>")); err != nil {
		t.Fatal(err)
	}
	want := orig[:html.BodyStart] + "<p>new</p>" + orig[html.BodyEnd:pdf.HeaderStart] + "Content-Type: text/plain\r\n\r\nremoved" + orig[pdf.BodyEnd:]
	if got := bodyOf(m); got != want {
		t.Fatalf("edited body:\n%s\nwant:\n%s", got, want)
	}
	var all bytes.Buffer
	m.WriteTo(&all)
	if !strings.HasPrefix(all.String(), nested[:strings.Index(nested, "\r\n\r\n")+4]) || int64(all.Len()) != m.Size() {
		t.Fatalf("whole message: %d bytes, Size %d", all.Len(), m.Size())
	}
	// The parts of the edited body are found where they now are.
	parts, _ = m.Parts()
	if b := bodyOf(m); len(parts) != 5 || b[parts[3].BodyStart:parts[3].BodyEnd] != "<p>new</p>" || b[parts[4].BodyStart:parts[4].BodyEnd] != "removed" {
		t.Fatalf("re-read parts: %+v", parts)
	}
}
