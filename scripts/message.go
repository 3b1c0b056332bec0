package scripts

import (
	"net/mail"
	"net/textproto"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

const messageType = "mailflow.message"

// openAPI defines everything a script sees besides the standard library:
// the msg type, the verdicts, log, print, state and re.
func (v *vm) openAPI() {
	L := v.L
	methods := map[string]lua.LGFunction{
		"header":             v.header,
		"headers":            v.headers,
		"raw_header":         v.rawHeader,
		"set_header":         v.setHeader,
		"add_header":         v.addHeader,
		"remove_header":      v.removeHeader,
		"from":               v.addresses("From"),
		"to":                 v.addresses("To"),
		"cc":                 v.addresses("Cc"),
		"reply_to":           v.addresses("Reply-To"),
		"addresses":          v.addressesOf,
		"recipients":         v.recipients,
		"set_recipients":     v.setRecipients,
		"text":               v.text,
		"attachments":        v.attachments,
		"parts":              v.parts,
		"add_footer":         v.addFooter,
		"remove_attachments": v.removeAttachments,
		"hops":               v.hops,
		"looped":             v.looped,
		"auth_results":       v.authResults,
		"label":              v.label,
	}
	fns := make(map[string]lua.LValue, len(methods))
	for name, fn := range methods {
		fns[name] = L.NewFunction(fn)
	}
	mt := L.NewTypeMetatable(messageType)
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		if fn, ok := fns[key]; ok {
			L.Push(fn)
			return 1
		}
		m := v.message(L)
		switch key {
		case "sender":
			L.Push(lua.LString(m.Envelope.Sender))
		case "client":
			pushClient(L, m) // clientapi.go
		case "size":
			L.Push(lua.LNumber(m.Size()))
		case "input":
			L.Push(lua.LString(m.Source.Input))
		case "id":
			L.Push(lua.LString(m.Source.ID))
		case "message_id":
			L.Push(lua.LString(m.MessageID()))
		case "received_at":
			L.Push(lua.LNumber(m.ReceivedAt.Unix()))
		case "folder":
			// The source's folder (IMAP), "" for sources without folders.
			L.Push(lua.LString(m.Folder))
		case "flags":
			t := L.CreateTable(len(m.Flags), 0)
			for _, f := range m.Flags {
				t.Append(lua.LString(f))
			}
			L.Push(t)
		case "internal_date":
			// When the source received it (IMAP INTERNALDATE, a Maildir
			// file's time), as Unix seconds; nil when it does not say.
			if m.InternalDate.IsZero() {
				L.Push(lua.LNil)
			} else {
				L.Push(lua.LNumber(m.InternalDate.Unix()))
			}
		case "date":
			// The Date header as Unix seconds; nil when missing or unreadable.
			t, err := mail.ParseDate(m.Header.Get("Date"))
			if err != nil {
				L.Push(lua.LNil)
			} else {
				L.Push(lua.LNumber(t.Unix()))
			}
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		m := v.message(L)
		key := L.CheckString(2)
		switch key {
		case "folder":
			// Where an output that stores folders (IMAP) puts it.
			f := L.CheckString(3)
			if strings.ContainsAny(f, "\r\n\x00") || f == "" {
				L.RaiseError("msg.folder: %q is not a folder name", f)
			}
			m.Folder = f
			return 0
		case "flags":
			t := L.CheckTable(3)
			var flags []string
			t.ForEach(func(_, f lua.LValue) {
				s := f.String()
				if s == "" || strings.ContainsAny(s, " ()\r\n\"\x00{%*]") {
					L.RaiseError("msg.flags: %q is not a flag", s)
				}
				flags = append(flags, s)
			})
			m.Flags = flags
			return 0
		case "sender":
		default:
			L.RaiseError("msg.%s cannot be set; only msg.sender, msg.folder and msg.flags can (use the methods to change headers)", key)
		}
		// nil: the output decides again; "" or "<>": the null sender of a
		// bounce or an auto-reply; else an address.
		if L.Get(3) == lua.LNil {
			m.Envelope.Sender = ""
			return 0
		}
		s := L.CheckString(3)
		switch s {
		case "", message.NullSender:
			s = message.NullSender
		default:
			checkAddress(L, s)
		}
		m.Envelope.Sender = s
		return 0
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		m := v.message(L)
		L.Push(lua.LString("message " + m.Source.Input + "/" + m.Source.ID))
		return 1
	}))
	v.msgUD = L.NewUserData()
	L.SetMetatable(v.msgUD, mt)

	openVerdicts(L)
	v.openLog()
	v.openState()
	v.openStore()
	v.openGenerate()
	v.openParts()
	v.openForwarding()
	openRegexp(L, &v.budget)
	openTime(L)
}

// message is the message behind the msg argument of the running call.
func (v *vm) message(L *lua.LState) *message.Message {
	ud, ok := L.Get(1).(*lua.LUserData)
	if !ok {
		L.RaiseError("call message methods with a colon: msg:header(\"Subject\")")
	}
	ref, ok := ud.Value.(*msgRef)
	if !ok || ref.m == nil {
		L.RaiseError("this message is no longer being filtered (msg was kept past its call)")
	}
	return ref.m
}

// header returns the first value of a field, RFC 2047-decoded to UTF-8.
func (v *vm) header(L *lua.LState) int {
	m := v.message(L)
	name := L.CheckString(2)
	if !m.Header.Has(name) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(decodeHeader(m.Header.Get(name))))
	return 1
}

// headers returns every value of a field, or with no name every field as
// {name=..., value=...} in order.
//
// The tables are built in one step the watchdog cannot interrupt: a 16 MB
// header of short fields would make a million of them. So their size is
// reckoned first, and a list over the memory bound is an error before it
// is built; one within it counts, while the script holds it, against the
// call's bound like any table it makes (footprint.go).
func (v *vm) headers(L *lua.LState) int {
	m := v.message(L)
	if L.GetTop() < 2 {
		n, size := 0, int64(0)
		m.Header.Each(func(name, value string) {
			n++
			size += fieldTableBytes + int64(len(name)+len(value))
		})
		v.budget.fits(L, size, "msg:headers()")
		t := L.CreateTable(n, 0)
		m.Header.Each(func(name, value string) {
			f := L.CreateTable(0, 2)
			f.RawSetString("name", lua.LString(name))
			f.RawSetString("value", lua.LString(decodeHeader(value)))
			t.Append(f)
		})
		L.Push(t)
		return 1
	}
	values := m.Header.Values(L.CheckString(2))
	t := L.CreateTable(len(values), 0)
	for _, val := range values {
		t.Append(lua.LString(decodeHeader(val)))
	}
	L.Push(t)
	return 1
}

// fieldTableBytes is about what one {name=, value=} of msg:headers() takes
// besides its strings' bytes: the table, its map of two, two boxed strings
// and the list's slot.
const fieldTableBytes = 800

// rawHeader returns the first value as it stands in the message, without
// decoding, or nil.
func (v *vm) rawHeader(L *lua.LState) int {
	m := v.message(L)
	name := L.CheckString(2)
	if !m.Header.Has(name) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(m.Header.Get(name)))
	return 1
}

// setHeader replaces a field in place, or adds it on top.
func (v *vm) setHeader(L *lua.LState) int {
	m, name, value := v.fieldArgs(L, "set_header")
	if err := m.Header.CheckSet(name, value); err != nil {
		L.RaiseError("set_header: %v", err)
	}
	m.Header.Set(name, value)
	m.MarkHeaderChanged()
	return 0
}

// addHeader adds a field above the others of the same name (where trace
// fields belong), keeping any that are there. A second field of a name
// RFC 5322 allows once (Subject, From, ...) is refused: which of two
// Subjects a client shows is anyone's guess, and a script that meant to
// replace one says so with set_header.
func (v *vm) addHeader(L *lua.LState) int {
	m, name, value := v.fieldArgs(L, "add_header")
	if key := textproto.CanonicalMIMEHeaderKey(name); singleFields[key] && m.Header.Has(key) {
		L.RaiseError("add_header: the message has a %s field already, and RFC 5322 allows one; use set_header to replace it", key)
	}
	if err := m.Header.CheckAdd(name, value); err != nil {
		L.RaiseError("add_header: %v", err)
	}
	m.Header.Add(name, value)
	m.MarkHeaderChanged()
	return 0
}

// singleFields are the fields a message has at most once (RFC 5322 3.6,
// the table of 3.6's last page), by their canonical names.
var singleFields = map[string]bool{
	"Date": true, "From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Message-Id": true, "In-Reply-To": true, "References": true, "Subject": true,
}

func (v *vm) removeHeader(L *lua.LState) int {
	m := v.message(L)
	name := L.CheckString(2)
	if err := checkFieldName(name); err != nil {
		L.RaiseError("remove_header: %v", err)
	}
	if !m.Header.Has(name) {
		return 0
	}
	v.mustBeEditable(L, m, "remove_header")
	m.Header.Del(name)
	m.MarkHeaderChanged()
	return 0
}

// fieldArgs checks a name and value for set_header and add_header, and
// encodes the value for the wire.
func (v *vm) fieldArgs(L *lua.LState, fn string) (*message.Message, string, string) {
	m := v.message(L)
	name, value := L.CheckString(2), L.CheckAny(3)
	if err := checkFieldName(name); err != nil {
		L.RaiseError("%s: %v", fn, err)
	}
	var s string
	switch value := value.(type) {
	case lua.LString:
		s = string(value)
	case lua.LNumber:
		s = value.String()
	default:
		L.RaiseError("%s: the value of %s must be a string, got %s", fn, name, value.Type())
	}
	if err := checkFieldValue(s); err != nil {
		L.RaiseError("%s: %s: %v", fn, name, err)
	}
	v.mustBeEditable(L, m, fn)
	return m, name, encodeHeader(s)
}

// mustBeEditable refuses to change a header that could not be parsed: what
// would be written back is not what came in.
func (v *vm) mustBeEditable(L *lua.LState, m *message.Message, fn string) {
	if m.HeaderErr != nil {
		L.RaiseError("%s: the message header could not be parsed (%v); it is left as it is", fn, m.HeaderErr)
	}
}

// addresses returns a method that parses the addresses of one field.
func (v *vm) addresses(field string) lua.LGFunction {
	return func(L *lua.LState) int {
		m := v.message(L)
		L.Push(v.addressTable(L, parseAddresses(m.Header.Values(field))))
		return 1
	}
}

// addressesOf is msg:addresses("Field").
func (v *vm) addressesOf(L *lua.LState) int {
	m := v.message(L)
	L.Push(v.addressTable(L, parseAddresses(m.Header.Values(L.CheckString(2)))))
	return 1
}

func (v *vm) addressTable(L *lua.LState, addrs []address) *lua.LTable {
	t := L.CreateTable(len(addrs), 0)
	for _, a := range addrs {
		e := L.CreateTable(0, 6)
		e.RawSetString("name", lua.LString(a.Name))
		e.RawSetString("address", lua.LString(a.Address))
		setAddressParts(e, a.Address, v.s.limits.Separator)
		t.Append(e)
	}
	return t
}

// setAddressParts adds localpart, domain, user and detail (RFC 5233's
// subaddress: "user+detail"; detail is nil without a separator) to an
// address table.
func setAddressParts(e *lua.LTable, addr, sep string) {
	if sep == "" {
		sep = "+"
	}
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i+1:]
	}
	e.RawSetString("localpart", lua.LString(local))
	e.RawSetString("domain", lua.LString(domain))
	user, detail, found := strings.Cut(local, sep)
	e.RawSetString("user", lua.LString(user))
	if found {
		e.RawSetString("detail", lua.LString(detail))
	}
}

// recipients returns the envelope recipients: empty means each output's own.
func (v *vm) recipients(L *lua.LState) int {
	m := v.message(L)
	t := L.CreateTable(len(m.Envelope.Recipients), 0)
	for _, r := range m.Envelope.Recipients {
		t.Append(lua.LString(r))
	}
	L.Push(t)
	return 1
}

func (v *vm) setRecipients(L *lua.LState) int {
	m := v.message(L)
	t := L.CheckTable(2)
	var rcpts []string
	t.ForEach(func(_, val lua.LValue) {
		s, ok := val.(lua.LString)
		if !ok {
			L.RaiseError("set_recipients: addresses must be strings, got %s", val.Type())
		}
		checkAddress(L, string(s))
		rcpts = append(rcpts, string(s))
	})
	m.Envelope.Recipients = uniqueRecipients(rcpts)
	return 0
}

// uniqueRecipients drops repeated envelope recipients, keeping the first
// of each in its order and spelling: an output sends RCPT TO once per
// entry, and the same mailbox twice is the same mail delivered twice.
// Domains compare without case (RFC 5321 2.4); local parts exactly, since
// only the receiving server may decide that "Bob" and "bob" are one.
func uniqueRecipients(addrs []string) []string {
	seen := make(map[string]bool, len(addrs))
	out := addrs[:0:0]
	for _, a := range addrs {
		key := a
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			key = a[:i+1] + strings.ToLower(a[i+1:])
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, a)
		}
	}
	return out
}

// text returns the message's readable text (see bodyText).
func (v *vm) text(L *lua.LState) int {
	m := v.message(L)
	L.Push(lua.LString(bodyText(m, textLimit)))
	return 1
}

func (v *vm) attachments(L *lua.LState) int {
	m := v.message(L)
	list := listAttachments(m)
	t := L.CreateTable(len(list), 0)
	for _, a := range list {
		e := L.CreateTable(0, 3)
		e.RawSetString("name", lua.LString(a.Name))
		e.RawSetString("content_type", lua.LString(a.ContentType))
		e.RawSetString("size", lua.LNumber(a.Size))
		t.Append(e)
	}
	L.Push(t)
	return 1
}

// checkAddress refuses envelope addresses that would break the SMTP
// command they end up in.
func checkAddress(L *lua.LState, s string) {
	if s == "" || strings.ContainsAny(s, "\r\n\x00 <>") {
		L.RaiseError("%q is not an address (no spaces, angle brackets or line breaks)", s)
	}
}
