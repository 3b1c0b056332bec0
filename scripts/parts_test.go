package scripts

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	gomessage "github.com/emersion/go-message"

	"github.com/mailflow/mailflow/engine/message"
)

// run runs body as filter(msg) on the message and returns the message.
func runOn(t *testing.T, m *message.Message, body string) *message.Message {
	t.Helper()
	s := load(t, "function filter(msg)\n"+body+"\nend", plugin.ScriptLimits{})
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// decodedParts reads the message as a mail reader would: each leaf part's
// content type and decoded text.
func decodedParts(t *testing.T, m *message.Message) (types []string, texts []string) {
	t.Helper()
	e, err := gomessage.Read(m.Reader())
	if err != nil {
		t.Fatal(err)
	}
	e.Walk(func(_ []int, p *gomessage.Entity, err error) error {
		ct, _, _ := p.Header.ContentType()
		if strings.HasPrefix(ct, "multipart/") {
			return nil
		}
		b, _ := io.ReadAll(p.Body)
		types = append(types, ct)
		texts = append(texts, string(b))
		return nil
	})
	return
}

// rawPart is the bytes of part i of the message as it is now.
func rawPart(t *testing.T, m *message.Message, i int) string {
	parts, err := m.Parts()
	if err != nil || i >= len(parts) {
		t.Fatalf("part %d of %d: %v", i, len(parts), err)
	}
	b, _ := io.ReadAll(m.BodyRange(parts[i].HeaderStart, parts[i].BodyEnd))
	return string(b)
}

func TestPartsWalk(t *testing.T) {
	out := eval(t, "multipart.eml", `
  local seen = {}
  for _, p in ipairs(msg:parts()) do
    seen[#seen + 1] = p.content_type .. "|" .. p.filename .. "|" .. p.disposition .. "|" .. tostring(p.attachment)
  end
  out.list = table.concat(seen, ";")
  out.text = msg:parts()[3]:text()
  out.ct = msg:parts()[5]:header("Content-Disposition")
  out.size = msg:parts()[5].size`, "list", "text", "ct", "size")
	if out["list"] != "multipart/mixed|||false;multipart/alternative|||false;text/plain|||false;text/html|||false;application/pdf|Bericht für 2026.pdf|attachment|true" {
		t.Errorf("parts: %s", out["list"])
	}
	if out["text"] != "Grüße aus Köln — café ☕\nZweite Zeile\n" {
		t.Errorf("text: %q", out["text"])
	}
	if !strings.Contains(out["ct"], "Bericht für 2026.pdf") || out["size"] == "0" {
		t.Errorf("header %q size %s", out["ct"], out["size"])
	}
}

// The footer is in the decoded text of the plain and the HTML part, each in
// its own encoding; the attachment and every header are byte-identical.
func TestAddFooterToAlternativeBase64UTF8(t *testing.T) {
	m := eml(t, "multipart.eml")
	pdfBefore := rawPart(t, m, 4)
	var head bytes.Buffer
	io.Copy(&head, io.LimitReader(m.Reader(), 400))
	runOn(t, m, `assert(msg:add_footer("-- \nSent through mailflow — ü") == 2)`)
	types, texts := decodedParts(t, m)
	if len(types) != 3 {
		t.Fatalf("parts %v", types)
	}
	if !strings.HasSuffix(texts[0], "Zweite Zeile\n-- \r\nSent through mailflow — ü\r\n") {
		t.Errorf("plain: %q", texts[0])
	}
	if !strings.Contains(texts[1], "<p>HTML version</p><div>-- <br>\r\nSent through mailflow — ü</div>\r\n</body>") {
		t.Errorf("html: %q", texts[1])
	}
	if rawPart(t, m, 4) != pdfBefore {
		t.Error("the attachment's bytes changed")
	}
	if !strings.Contains(rawPart(t, m, 2), "Content-Transfer-Encoding: base64") {
		t.Error("the plain part is no longer base64")
	}
	if !strings.Contains(rawPart(t, m, 3), "Content-Transfer-Encoding: quoted-printable") {
		t.Error("the 7bit HTML part with an 8-bit footer must become quoted-printable")
	}
	var after bytes.Buffer
	io.Copy(&after, io.LimitReader(m.Reader(), 400))
	if head.String() != after.String() {
		t.Error("the bytes before the first edit changed")
	}
}

func TestAddFooterToQuotedPrintableLatin1(t *testing.T) {
	m := runOn(t, eml(t, "qp-latin1.eml"), `msg:add_footer("Envoyé par mailflow, à bientôt")`)
	e, _ := gomessage.Read(m.Reader())
	if _, params, _ := e.Header.ContentType(); params["charset"] != "ISO-8859-1" {
		t.Errorf("charset now %q", params["charset"])
	}
	b, _ := io.ReadAll(e.Body) // go-message decodes QP and Latin-1
	if !strings.HasSuffix(string(b), "Caf\u00e9 \u00e0 10h.\r\nEnvoyé par mailflow, à bientôt\r\n") {
		t.Errorf("decoded: %q", b)
	}
	raw, _ := io.ReadAll(m.Body())
	if !bytes.Contains(raw, []byte("Envoy=E9 par mailflow, =E0 bient=F4t")) {
		t.Errorf("not QP Latin-1 on the wire: %q", raw)
	}
}

func TestSignedPartsAreLeftAlone(t *testing.T) {
	m := eml(t, "signed.eml")
	before, _ := io.ReadAll(m.Reader())
	runOn(t, m, `assert(msg:add_footer("footer") == 0) ; assert(msg:remove_attachments() == 0)`)
	after, _ := io.ReadAll(m.Reader())
	if !bytes.Equal(before, after) {
		t.Fatal("a signed message changed")
	}
}

func TestRemoveAttachments(t *testing.T) {
	m := eml(t, "multipart.eml")
	altBefore := rawPart(t, m, 1)
	runOn(t, m, `assert(msg:remove_attachments(function(p) return p.content_type ~= "application/pdf" end) == 0)
  assert(msg:remove_attachments(function(p) return p.content_type == "application/pdf" and p.size > 1000 end) == 1)`)
	types, texts := decodedParts(t, m)
	if len(types) != 3 || types[2] != "text/plain" || !strings.Contains(texts[2], `The attachment "Bericht für 2026.pdf" (application/pdf, 1.0 KB`) && !strings.Contains(texts[2], `"Bericht für 2026.pdf"`) {
		t.Fatalf("%v %q", types, texts)
	}
	if rawPart(t, m, 1) != altBefore {
		t.Error("the text parts changed")
	}
	// Parts listed before an edit refuse to be used after it.
	s := load(t, `function filter(msg)
  local p = msg:parts()[3]
  msg:add_footer("x")
  return keep(p:text())
end`, plugin.ScriptLimits{})
	if _, err := s.Filter(context.Background(), eml(t, "multipart.eml")); err == nil || !strings.Contains(err.Error(), "call msg:parts() again") {
		t.Fatalf("stale part: %v", err)
	}
}
