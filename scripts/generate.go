package scripts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

// vacation{} and notify{} make new messages. They are not sent from here:
// they go back to the engine with the verdict (plugin.Generated) and are
// delivered as part of settling the message they were made from, recorded
// in its ledger record, so a retry or a crash never sends one twice.
// Their Message-ID and name are derived from the message they answer, so
// the same message filtered again makes the same reply.

// openGenerate defines vacation{...} and notify{...}.
func (v *vm) openGenerate() {
	v.L.SetGlobal("vacation", v.L.NewFunction(v.vacation))
	v.L.SetGlobal("notify", v.L.NewFunction(v.notify))
}

// vacation{output=, text=, days=7, subject=, from=, addresses={...},
// handle=} answers the message's sender at most once per days, with
// RFC 5230's rules. It returns true when a reply was made, else false and
// why not.
func (v *vm) vacation(L *lua.LState) int {
	m := v.current(L, "vacation")
	args := L.CheckTable(1)
	output := tableString(L, args, "output", true)
	text := tableString(L, args, "text", true)
	subject := tableString(L, args, "subject", false)
	from := tableString(L, args, "from", false)
	handle := tableString(L, args, "handle", false)
	days := 7.0
	if d, ok := args.RawGetString("days").(lua.LNumber); ok {
		days = max(float64(d), 1) // RFC 5230 4.1: at least one day
	}
	var mine []string
	if t, ok := args.RawGetString("addresses").(*lua.LTable); ok {
		t.ForEach(func(_, a lua.LValue) {
			if s, ok := a.(lua.LString); ok && s != "" {
				mine = append(mine, strings.ToLower(string(s)))
			}
		})
	}
	fromAddr := ""
	if from != "" {
		a, err := mail.ParseAddress(from)
		if err != nil {
			L.RaiseError("vacation: from %q is not an address: %v", from, err)
		}
		fromAddr = a.Address
		mine = append(mine, strings.ToLower(a.Address))
	}
	if len(mine) == 0 {
		L.RaiseError("vacation: give from or addresses: the user's own addresses, to know mail sent to them")
	}
	if from == "" {
		from, fromAddr = mine[0], mine[0]
	}
	if v.cur.vacationDone {
		L.RaiseError("vacation: called twice for one message")
	}

	no := func(why string) int {
		L.Push(lua.LFalse)
		L.Push(lua.LString(why))
		return 2
	}
	sender, why := replyAddress(m)
	if sender == "" {
		return no(why)
	}
	if why := automated(m); why != "" {
		return no(why)
	}
	if isRobot(sender) {
		return no("the sender " + sender + " is a mailing list or a mail system")
	}
	lower := strings.ToLower(sender)
	for _, a := range mine {
		if a == lower {
			return no("the sender is the user")
		}
	}
	if !addressedTo(m, mine) {
		return no("none of the user's addresses is in To or Cc")
	}
	// Once per sender per days, durably; recorded with the message that
	// made the reply, so that the same message filtered again (a retry)
	// makes the same reply and the ledger keeps it from going twice.
	self := m.Key()
	replied := false
	v.storeUpdate(L, "\x00vacation\x00"+handle+"\x00"+lower, func(r storeRec, ok bool) (storeRec, bool, error) {
		if ok && r.V != self {
			replied = true
			return r, false, nil
		}
		now := time.Now()
		return storeRec{V: self, Exp: now.Add(time.Duration(days * 24 * float64(time.Hour))).UnixNano(), At: now.UnixNano()}, false, nil
	})
	if replied {
		return no(fmt.Sprintf("already replied to %s within %g days", sender, days))
	}

	if subject == "" {
		subject = "Auto: " + m.Header.Get("Subject")
	}
	name := v.s.name + ":vacation"
	hdr := [][2]string{
		{"From", from},
		{"To", sender},
		{"Subject", subject},
		{"Auto-Submitted", "auto-replied"},
	}
	if id := m.MessageID(); id != "" {
		hdr = append(hdr, [2]string{"In-Reply-To", "<" + id + ">"})
		refs := strings.TrimSpace(m.Header.Get("References"))
		if refs != "" {
			refs += " "
		}
		hdr = append(hdr, [2]string{"References", refs + "<" + id + ">"})
	}
	reply := newGenerated(L, "vacation", hdr, text, self+name, fromAddr)
	// RFC 5230 5.1 and RFC 3834: a reply goes out with a null sender, so
	// that nothing answers it in turn.
	reply.Envelope = message.Envelope{Sender: message.NullSender, Recipients: []string{sender}}
	v.cur.vacationDone = true
	v.cur.generated = append(v.cur.generated, plugin.Generated{Name: name, Output: output, Message: reply})
	L.Push(lua.LTrue)
	return 1
}

// notify{output=, to=, subject=, text=, from=} makes a new message, marked
// Auto-Submitted: auto-generated, to the addresses in to (a string or a
// list). Its envelope sender is left to the output, as for any message.
func (v *vm) notify(L *lua.LState) int {
	m := v.current(L, "notify")
	args := L.CheckTable(1)
	output := tableString(L, args, "output", true)
	subject := tableString(L, args, "subject", true)
	text := tableString(L, args, "text", false)
	from := tableString(L, args, "from", false)
	var to []string
	switch t := args.RawGetString("to").(type) {
	case lua.LString:
		to = append(to, string(t))
	case *lua.LTable:
		t.ForEach(func(_, a lua.LValue) { to = append(to, a.String()) })
	}
	if len(to) == 0 {
		L.RaiseError("notify: to is required (an address or a list of them)")
	}
	for _, a := range to {
		checkAddress(L, a)
	}
	fromAddr := ""
	if from != "" {
		a, err := mail.ParseAddress(from)
		if err != nil {
			L.RaiseError("notify: from %q is not an address: %v", from, err)
		}
		fromAddr = a.Address
	} else {
		from = "mailflow <mailflow@localhost>"
	}
	v.cur.notified++
	name := fmt.Sprintf("%s:notify.%d", v.s.name, v.cur.notified)
	hdr := [][2]string{
		{"From", from},
		{"To", strings.Join(to, ", ")},
		{"Subject", subject},
		{"Auto-Submitted", "auto-generated"},
	}
	if id := m.MessageID(); id != "" {
		hdr = append(hdr, [2]string{"References", "<" + id + ">"})
	}
	note := newGenerated(L, "notify", hdr, text, m.Key()+name, fromAddr)
	note.Envelope = message.Envelope{Recipients: to}
	v.cur.generated = append(v.cur.generated, plugin.Generated{Name: name, Output: output, Message: note})
	return 0
}

// current is the message being filtered, for the functions that are not
// its methods.
func (v *vm) current(L *lua.LState, fn string) *message.Message {
	if v.cur.m == nil {
		L.RaiseError("%s{} is for filter(msg), while a message is filtered", fn)
	}
	return v.cur.m
}

// tableString reads a string field of an argument table.
func tableString(L *lua.LState, t *lua.LTable, key string, required bool) string {
	switch s := t.RawGetString(key).(type) {
	case lua.LString:
		if s == "" && required {
			break
		}
		return string(s)
	case *lua.LNilType:
		if !required {
			return ""
		}
	default:
		L.RaiseError("%s must be a string, not a %s", key, s.Type())
	}
	L.RaiseError("%s is required", key)
	return ""
}

// newGenerated writes a text/plain message: the fields in hdr (checked for
// line breaks, non-ASCII words encoded), a Date, a Message-ID made from
// seed, and text in quoted-printable UTF-8 with CRLF line ends.
func newGenerated(L *lua.LState, kind string, hdr [][2]string, text, seed, fromAddr string) *message.Message {
	var b bytes.Buffer
	for _, f := range hdr {
		if strings.ContainsAny(f[1], "\r\n\x00") {
			L.RaiseError("%s: %s must not contain a line break", kind, strings.ToLower(f[0]))
		}
		val := f[1]
		if f[0] == "Subject" {
			val = mime.QEncoding.Encode("utf-8", val)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], val)
	}
	domain := "mailflow.invalid"
	if i := strings.LastIndexByte(fromAddr, '@'); i > 0 {
		domain = fromAddr[i+1:]
	}
	sum := sha256.Sum256([]byte(seed))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", kind, hex.EncodeToString(sum[:12]), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(text, "\r\n") {
		text += "\r\n"
	}
	qp.Write([]byte(text))
	qp.Close()
	return message.New(b.Bytes(), message.Source{Input: "generated", ID: kind + "." + hex.EncodeToString(sum[:8])})
}

// replyAddress is where a reply to m goes: its envelope sender, else its
// Return-Path, else its From. "" and why when it must not be answered.
func replyAddress(m *message.Message) (string, string) {
	switch s := m.Envelope.Sender; s {
	case message.NullSender:
		return "", "the message has a null sender (a bounce or an auto-reply)"
	case "":
	default:
		return s, ""
	}
	if m.Header.Has("Return-Path") {
		rp := strings.TrimSpace(m.Header.Get("Return-Path"))
		if rp == "<>" || rp == "" {
			return "", "the message has a null sender (Return-Path: <>)"
		}
		if a, err := mail.ParseAddress(rp); err == nil {
			return a.Address, ""
		}
		return strings.Trim(rp, "<>"), ""
	}
	if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		return a.Address, ""
	}
	return "", "the message has no sender to answer"
}

// automated says why m was sent by a program (RFC 3834, RFC 5230 4.5),
// or "".
func automated(m *message.Message) string {
	if m.Header.Has("Auto-Submitted") {
		v := strings.ToLower(strings.TrimSpace(strings.SplitN(m.Header.Get("Auto-Submitted"), ";", 2)[0]))
		if v != "no" {
			return "the message is Auto-Submitted: " + v
		}
	}
	list := ""
	m.Header.Each(func(k, _ string) {
		if list == "" && len(k) > 5 && strings.EqualFold(k[:5], "List-") {
			list = k
		}
	})
	if list != "" {
		return "the message came through a mailing list (" + list + ")"
	}
	switch strings.ToLower(strings.TrimSpace(m.Header.Get("Precedence"))) {
	case "bulk", "list", "junk":
		return "the message is Precedence: " + strings.TrimSpace(m.Header.Get("Precedence"))
	}
	return ""
}

// isRobot reports senders RFC 5230 4.6 names as not to be answered.
func isRobot(addr string) bool {
	local := strings.ToLower(addr)
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	switch {
	case local == "mailer-daemon", local == "listserv", local == "majordomo", local == "postmaster":
		return true
	case strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"), strings.HasSuffix(local, "-bounces"):
		return true
	}
	return false
}

// addressedTo reports whether one of the addresses in mine is in the
// message's To, Cc, Bcc or their Resent- forms.
func addressedTo(m *message.Message, mine []string) bool {
	for _, field := range []string{"To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"} {
		for _, raw := range m.Header.Values(field) {
			list, err := mail.ParseAddressList(raw)
			if err != nil {
				continue
			}
			for _, a := range list {
				for _, my := range mine {
					if strings.EqualFold(a.Address, my) {
						return true
					}
				}
			}
		}
	}
	return false
}
