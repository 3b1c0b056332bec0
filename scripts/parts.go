package scripts

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/charset"
	lua "github.com/yuin/gopher-lua"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"

	"github.com/mailflow/mailflow/engine/message"
)

// msg:parts(), msg:add_footer() and msg:remove_attachments() work on the
// message's MIME structure as message.Parts locates it, and change it with
// message.EditBody: only the parts they change are decoded and encoded
// again; every other byte of the message stays as it came.

const partType = "mailflow.part"

// partRef is what a part value points to. edits is the message's edit
// count when the part was listed: a part listed before the body changed
// no longer says where its bytes are.
type partRef struct {
	v     *vm
	m     *message.Message
	p     message.Part
	edits int
}

func (v *vm) openParts() {
	L := v.L
	mt := L.NewTypeMetatable(partType)
	methods := map[string]lua.LGFunction{
		"text":   v.partText,
		"header": v.partHeader,
	}
	fns := map[string]lua.LValue{}
	for name, fn := range methods {
		fns[name] = L.NewFunction(fn)
	}
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		ref := v.partOf(L)
		key := L.CheckString(2)
		if fn, ok := fns[key]; ok {
			L.Push(fn)
			return 1
		}
		p := ref.p
		switch key {
		case "content_type":
			L.Push(lua.LString(p.ContentType))
		case "filename":
			L.Push(lua.LString(p.Filename))
		case "disposition":
			L.Push(lua.LString(p.Disposition))
		case "encoding":
			L.Push(lua.LString(p.Encoding))
		case "charset":
			L.Push(lua.LString(p.Params["charset"]))
		case "size":
			// The encoded body's size, as it is in the message.
			L.Push(lua.LNumber(p.BodyEnd - p.BodyStart))
		case "index":
			L.Push(lua.LNumber(p.Index + 1))
		case "depth":
			L.Push(lua.LNumber(p.Depth))
		case "multipart":
			L.Push(lua.LBool(p.IsMultipart()))
		case "signed":
			L.Push(lua.LBool(p.Signed))
		case "attachment":
			L.Push(lua.LBool(isAttachmentPart(p)))
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		ref := v.partOf(L)
		L.Push(lua.LString(fmt.Sprintf("part %d (%s)", ref.p.Index+1, ref.p.ContentType)))
		return 1
	}))
}

// parts is msg:parts(): every MIME part, the message itself first.
func (v *vm) parts(L *lua.LState) int {
	m := v.message(L)
	list := v.listParts(L, m)
	t := L.CreateTable(len(list), 0)
	for _, p := range list {
		t.Append(v.partValue(L, m, p))
	}
	L.Push(t)
	return 1
}

func (v *vm) listParts(L *lua.LState, m *message.Message) []message.Part {
	list, err := m.Parts()
	if err != nil {
		L.RaiseError("parts: %v", err)
	}
	return list
}

func (v *vm) partValue(L *lua.LState, m *message.Message, p message.Part) lua.LValue {
	ud := L.NewUserData()
	ud.Value = &partRef{v: v, m: m, p: p, edits: v.cur.edits}
	L.SetMetatable(ud, L.GetTypeMetatable(partType))
	return ud
}

func (v *vm) partOf(L *lua.LState) *partRef {
	ud, ok := L.Get(1).(*lua.LUserData)
	if !ok {
		L.RaiseError("call part methods with a colon: part:text()")
	}
	ref, ok := ud.Value.(*partRef)
	if !ok || ref.m != v.cur.m {
		L.RaiseError("this part belongs to a message that is no longer being filtered")
	}
	if ref.edits != v.cur.edits {
		L.RaiseError("the message's body changed since this part was listed; call msg:parts() again")
	}
	return ref
}

// partText is part:text(): the body decoded from its transfer encoding and
// charset to UTF-8, at most textLimit bytes.
func (v *vm) partText(L *lua.LState) int {
	ref := v.partOf(L)
	if ref.p.IsMultipart() {
		L.Push(lua.LString(""))
		return 1
	}
	b, err := decodePart(ref.m, ref.p, textLimit)
	if err != nil {
		L.RaiseError("part:text(): %v", err)
	}
	s := charsetToUTF8(ref.p.Params["charset"], b)
	v.budget.charge(L, int64(len(s)), "part:text()")
	L.Push(lua.LString(s))
	return 1
}

// partHeader is part:header(name): the first value of a field of the
// part's own header, decoded to UTF-8.
func (v *vm) partHeader(L *lua.LState) int {
	ref := v.partOf(L)
	name := L.CheckString(2)
	h := ref.p.Header
	if !h.Has(name) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(decodeHeader(h.Get(name))))
	return 1
}

// decodePart reads a part's body and undoes its transfer encoding, at most
// max bytes of the result.
func decodePart(m *message.Message, p message.Part, max int64) ([]byte, error) {
	raw := m.BodyRange(p.BodyStart, p.BodyEnd)
	var r io.Reader
	switch p.Encoding {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &base64Clean{r: raw})
	case "quoted-printable":
		r = quotedprintable.NewReader(raw)
	default:
		r = raw
	}
	return io.ReadAll(io.LimitReader(r, max))
}

// base64Clean drops what is not base64 (line ends, stray spaces), as mail
// readers do.
type base64Clean struct{ r io.Reader }

func (c *base64Clean) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// charsetToUTF8 converts text in charset cs to UTF-8 (Latin-1 when the
// charset is unknown or the bytes are not what it says).
func charsetToUTF8(cs string, b []byte) string {
	if cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") {
		return strings.ToValidUTF8(toUTF8(string(b)), "\uFFFD")
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return strings.ToValidUTF8(toUTF8(string(b)), "\uFFFD")
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return strings.ToValidUTF8(toUTF8(string(b)), "\uFFFD")
	}
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// encoderFor is the encoder from UTF-8 to charset cs, nil for UTF-8 and
// ASCII, and false when the charset is unknown.
func encoderFor(cs string) (*encoding.Encoder, bool) {
	if cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") {
		return nil, true
	}
	enc, err := ianaindex.MIME.Encoding(cs)
	if enc == nil || err != nil {
		enc, err = htmlindex.Get(cs)
	}
	if enc == nil || err != nil {
		return nil, false
	}
	return encoding.ReplaceUnsupported(enc.NewEncoder()), true
}

// isAttachmentPart reports whether a part is a file rather than the text
// of the message: marked attachment, or named, or neither text nor a
// container.
func isAttachmentPart(p message.Part) bool {
	switch {
	case p.IsMultipart() || p.Index == 0:
		return false
	case p.Disposition == "attachment" || p.Filename != "":
		return true
	}
	return !strings.HasPrefix(p.ContentType, "text/")
}

// addFooter is msg:add_footer(text [, html]): the footer goes at the end of
// the message's first text/plain body and (as html, or the text escaped) of
// its first text/html body, in each one's charset and transfer encoding.
// Signed parts are left alone, with a warning. Returns how many parts
// changed.
func (v *vm) addFooter(L *lua.LState) int {
	m := v.message(L)
	v.mustBeEditable(L, m, "add_footer")
	text := L.CheckString(2)
	htmlFooter := L.OptString(3, "")
	if htmlFooter == "" {
		htmlFooter = "<div>" + strings.ReplaceAll(html.EscapeString(text), "\n", "<br>\n") + "</div>"
	}
	list := v.listParts(L, m)
	var targets []message.Part
	var plain, htmlDone bool
	for _, p := range list {
		if p.IsMultipart() || isAttachmentPart(p) || p.Disposition == "attachment" {
			continue
		}
		switch {
		case p.ContentType == "text/plain" && !plain:
			plain = true
		case p.ContentType == "text/html" && !htmlDone:
			htmlDone = true
		default:
			continue
		}
		if p.Signed {
			v.logger().Warn("add_footer: a signed part is left alone (a change would break its signature)", "part", p.Index+1, "content_type", p.ContentType)
			continue
		}
		targets = append(targets, p)
	}
	// Last first: an edit moves what follows it.
	for i := len(targets) - 1; i >= 0; i-- {
		p := targets[i]
		footer := text
		if p.ContentType == "text/html" {
			footer = htmlFooter
		}
		v.appendToPart(L, m, p, footer)
	}
	if len(targets) > 0 {
		v.cur.edits++
	}
	L.Push(lua.LNumber(len(targets)))
	return 1
}

// appendToPart adds footer to the end of part p's text (for HTML, before
// </body> when there is one) and writes the part back in its own charset
// and transfer encoding.
func (v *vm) appendToPart(L *lua.LState, m *message.Message, p message.Part, footer string) {
	limit := v.budget.limit
	decoded, err := decodePart(m, p, limit+1)
	if err != nil {
		L.RaiseError("add_footer: part %d cannot be decoded: %v", p.Index+1, err)
	}
	v.budget.charge(L, int64(len(decoded))*2, "add_footer")
	le := p.LineEnd
	cs := p.Params["charset"]
	enc, known := encoderFor(cs)
	footerBytes := []byte(strings.ReplaceAll(strings.ReplaceAll(footer, "\r\n", "\n"), "\n", le))
	switch {
	case !known:
		v.logger().Warn("add_footer: the part's charset is unknown; the footer is left out of it", "part", p.Index+1, "charset", cs)
		return
	case enc != nil:
		if b, err := enc.Bytes(footerBytes); err == nil {
			footerBytes = b
		}
	case (cs == "" || strings.EqualFold(cs, "us-ascii")) && !isASCII(footer):
		// ASCII cannot carry the footer: the part becomes UTF-8, which
		// ASCII is a subset of.
		v.setPartField(L, m, p, "Content-Type", withCharset(p, "utf-8"))
		p, _ = v.refind(L, m, p)
	}
	var body []byte
	if p.ContentType == "text/html" {
		lower := bytes.ToLower(decoded)
		at := bytes.LastIndex(lower, []byte("</body>"))
		if at < 0 {
			at = bytes.LastIndex(lower, []byte("</html>"))
		}
		if at < 0 {
			at = len(decoded)
		}
		body = append(append(append(append([]byte{}, decoded[:at]...), footerBytes...), []byte(le)...), decoded[at:]...)
	} else {
		body = append([]byte{}, decoded...)
		if len(body) > 0 && !bytes.HasSuffix(body, []byte("\n")) {
			body = append(body, le...)
		}
		body = append(append(body, footerBytes...), le...)
	}
	encodingName := p.Encoding
	if (encodingName == "7bit" || encodingName == "") && !isASCII(string(body)) {
		encodingName = "quoted-printable"
		v.setPartField(L, m, p, "Content-Transfer-Encoding", encodingName)
		p, _ = v.refind(L, m, p)
	}
	out := encodeBody(body, encodingName, le)
	// The line end before the next boundary belongs to the boundary: keep
	// the part ending as it did.
	raw, _ := io.ReadAll(m.BodyRange(p.BodyStart, p.BodyEnd))
	if !bytes.HasSuffix(raw, []byte("\n")) {
		out = bytes.TrimRight(out, "\r\n")
	} else if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, le...)
	}
	if err := m.EditBody(p.BodyStart, p.BodyEnd, out); err != nil {
		L.RaiseError("add_footer: %v", err)
	}
}

// encodeBody applies a transfer encoding, with line ends le.
func encodeBody(b []byte, enc, le string) []byte {
	var out bytes.Buffer
	switch enc {
	case "base64":
		s := base64.StdEncoding.EncodeToString(b)
		for len(s) > 76 {
			out.WriteString(s[:76])
			out.WriteString(le)
			s = s[76:]
		}
		out.WriteString(s)
		out.WriteString(le)
	case "quoted-printable":
		w := quotedprintable.NewWriter(&out)
		w.Write(b)
		w.Close()
		if le == "\n" {
			return bytes.ReplaceAll(out.Bytes(), []byte("\r\n"), []byte("\n"))
		}
	default:
		out.Write(b)
	}
	return out.Bytes()
}

// withCharset is p's Content-Type with its charset parameter set.
func withCharset(p message.Part, cs string) string {
	var b strings.Builder
	b.WriteString(p.ContentType)
	for k, val := range p.Params {
		if strings.EqualFold(k, "charset") {
			continue
		}
		fmt.Fprintf(&b, "; %s=%q", k, val)
	}
	fmt.Fprintf(&b, "; charset=%s", cs)
	return b.String()
}

// setPartField sets a field of part p's header: the message's own header
// for the message itself, else the part's header bytes in the body.
func (v *vm) setPartField(L *lua.LState, m *message.Message, p message.Part, name, value string) {
	if p.Index == 0 {
		m.Header.Set(name, value)
		m.MarkHeaderChanged()
		return
	}
	h := p.Header.Clone()
	h.Set(name, value)
	var b bytes.Buffer
	h.WriteTo(&b)
	if !bytes.HasSuffix(b.Bytes(), []byte(p.LineEnd+p.LineEnd)) {
		b.WriteString(p.LineEnd)
	}
	if err := m.EditBody(p.HeaderStart, p.BodyStart, b.Bytes()); err != nil {
		L.RaiseError("%v", err)
	}
}

// refind locates part p again after its header changed.
func (v *vm) refind(L *lua.LState, m *message.Message, p message.Part) (message.Part, bool) {
	for _, q := range v.listParts(L, m) {
		if q.Index == p.Index {
			return q, true
		}
	}
	return p, false
}

// removeAttachments is msg:remove_attachments([fn]): each attachment that
// fn(part) selects (all of them without fn) is replaced by a short
// text/plain part naming it. Returns how many were removed.
func (v *vm) removeAttachments(L *lua.LState) int {
	m := v.message(L)
	v.mustBeEditable(L, m, "remove_attachments")
	fn := L.OptFunction(2, nil)
	list := v.listParts(L, m)
	var chosen []message.Part
	for _, p := range list {
		if !isAttachmentPart(p) {
			continue
		}
		if fn != nil {
			L.Push(fn)
			L.Push(v.partValue(L, m, p))
			L.Call(1, 1)
			pick := lua.LVAsBool(L.Get(-1))
			L.Pop(1)
			if !pick {
				continue
			}
		}
		if p.Signed {
			v.logger().Warn("remove_attachments: a signed part is left alone (a change would break its signature)", "part", p.Index+1, "filename", p.Filename)
			continue
		}
		chosen = append(chosen, p)
	}
	for i := len(chosen) - 1; i >= 0; i-- {
		p := chosen[i]
		le := p.LineEnd
		name := p.Filename
		if name == "" {
			name = "(no name)"
		}
		size := p.BodyEnd - p.BodyStart
		if p.Encoding == "base64" {
			size = size * 3 / 4 // about: base64 is 4/3 of the file
		}
		note := fmt.Sprintf("The attachment %q (%s, %s) was removed by mailflow.", name, p.ContentType, humanSize(size))
		cte := "7bit"
		if !isASCII(note) {
			cte = "quoted-printable"
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8%sContent-Transfer-Encoding: %s%sContent-Disposition: inline%s%s", le, cte, le, le, le)
		b.Write(encodeBody([]byte(note), cte, le))
		out := b.Bytes()
		raw, _ := io.ReadAll(m.BodyRange(p.BodyEnd-min(2, p.BodyEnd-p.BodyStart), p.BodyEnd))
		if bytes.HasSuffix(raw, []byte("\n")) {
			if !bytes.HasSuffix(out, []byte("\n")) {
				out = append(out, le...)
			}
		} else {
			out = bytes.TrimRight(out, "\r\n")
		}
		if err := m.EditBody(p.HeaderStart, p.BodyEnd, out); err != nil {
			L.RaiseError("remove_attachments: %v", err)
		}
	}
	if len(chosen) > 0 {
		v.cur.edits++
	}
	L.Push(lua.LNumber(len(chosen)))
	return 1
}

// humanSize says n bytes for people.
func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
