package scripts

import (
	"bytes"
	"errors"
	"io"
	"strings"

	gomessage "github.com/emersion/go-message"
	"golang.org/x/net/html"

	"github.com/mailflow/mailflow/engine/message"
)

// textLimit bounds how much decoded text msg:text() returns, so that a huge
// message cannot make a huge Lua string.
const textLimit = 1 << 20

var errFound = errors.New("found")

// bodyText returns the first text/plain part that is not an attachment,
// decoded from its transfer encoding and charset to UTF-8; failing that, the
// first text/html part with its tags stripped; failing that (no MIME
// structure, or a broken one), the raw body as UTF-8. At most max bytes.
func bodyText(m *message.Message, max int) string {
	ent, err := gomessage.Read(m.Reader())
	if ent == nil {
		return rawBody(m, max)
	}
	_ = err // an unknown charset or encoding: the entity is still readable
	var plain, htmlText string
	var havePlain, haveHTML bool
	walkErr := ent.Walk(func(_ []int, part *gomessage.Entity, _ error) error {
		t, _, _ := part.Header.ContentType()
		if t == "" {
			t = "text/plain"
		}
		if strings.HasPrefix(t, "multipart/") || isAttachment(part) {
			return nil
		}
		switch t {
		case "text/plain":
			plain, havePlain = readText(part.Body, max), true
			return errFound
		case "text/html":
			if !haveHTML {
				htmlText, haveHTML = stripTags(readText(part.Body, 4*max), max), true
			}
		}
		return nil
	})
	switch {
	case havePlain:
		return plain
	case haveHTML:
		return htmlText
	case walkErr != nil && walkErr != errFound:
		return rawBody(m, max)
	}
	return ""
}

func readText(r io.Reader, max int) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(max)))
	return strings.ToValidUTF8(toUTF8(string(b)), "\uFFFD")
}

func rawBody(m *message.Message, max int) string {
	return readText(m.Body(), max)
}

// isAttachment reports whether a part is meant as a file rather than text
// to read.
func isAttachment(part *gomessage.Entity) bool {
	disp, params, _ := part.Header.ContentDisposition()
	if disp == "attachment" {
		return true
	}
	if params["filename"] != "" {
		return true
	}
	_, ctParams, _ := part.Header.ContentType()
	return ctParams["name"] != "" && disp != "inline"
}

// stripTags returns the text of an HTML document, without script and style,
// with block elements on lines of their own.
func stripTags(doc string, max int) string {
	z := html.NewTokenizer(strings.NewReader(doc))
	var b strings.Builder
	skip := 0
	for b.Len() < max {
		switch z.Next() {
		case html.ErrorToken:
			return strings.TrimSpace(b.String())
		case html.TextToken:
			if skip == 0 {
				b.Write(bytes.TrimLeft(z.Text(), "\r\n"))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style":
				skip++
			case "br", "p", "div", "tr", "li", "h1", "h2", "h3":
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if n := string(name); (n == "script" || n == "style") && skip > 0 {
				skip--
			}
		}
	}
	return strings.TrimSpace(b.String())
}

// attachment describes one attached file.
type attachment struct {
	Name        string
	ContentType string
	Size        int64 // decoded bytes
}

// listAttachments lists the parts that are files: those with an attachment
// disposition or a file name, and non-text leaves of a multipart message.
func listAttachments(m *message.Message) []attachment {
	ent, _ := gomessage.Read(m.Reader())
	if ent == nil {
		return nil
	}
	var out []attachment
	_ = ent.Walk(func(path []int, part *gomessage.Entity, _ error) error {
		t, params, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		inner := len(path) > 0
		if !isAttachment(part) && !(inner && t != "" && !strings.HasPrefix(t, "text/") && t != "message/delivery-status") {
			return nil
		}
		_, dparams, _ := part.Header.ContentDisposition()
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		n, _ := io.Copy(io.Discard, part.Body)
		out = append(out, attachment{Name: decodeHeader(name), ContentType: t, Size: n})
		return nil
	})
	return out
}
