package scripts

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// labelsField is the header field the gmail output reads a message's
// labels from (its labels_header, by default), and removes before the
// import. It is named here, not imported: the script runtime depends on
// no connector.
const labelsField = "X-Mailflow-Labels"

// label is msg:label(name, ...): the message gets these Gmail labels
// ("Work", "Clients/Acme" nests under Clients), created if missing, when
// it goes to a gmail output; other outputs carry the field as it is.
//
// Each call adds a field of its own rather than appending to one that is
// there: the gmail output ignores the field a message arrives with (mail
// must not label itself), and tells the script's from the source's by
// comparing them whole, so an appended-to field of the source's would
// pass the source's labels off as the script's. A name is one label:
// commas separate labels in the field, so a name holding one is refused,
// as are CR, LF and NUL. Non-ASCII names are written as RFC 2047 encoded
// words, which the output decodes. The field is folded, and checked
// against max_header_size, by the header API as any other.
func (v *vm) label(L *lua.LState) int {
	m := v.message(L)
	if L.GetTop() < 2 {
		L.RaiseError("msg:label: give a label name: msg:label(\"Work\")")
	}
	names := make([]string, 0, L.GetTop()-1)
	for i := 2; i <= L.GetTop(); i++ {
		name := strings.TrimSpace(L.CheckString(i))
		switch {
		case name == "":
			L.RaiseError("msg:label: an empty label name")
		case strings.ContainsRune(name, ','):
			L.RaiseError("msg:label: %s holds a comma, which separates labels in %s; one label a name", strconvQuote(name), labelsField)
		}
		if err := checkFieldValue(name); err != nil {
			L.RaiseError("msg:label: %s: %v", strconvQuote(name), err)
		}
		names = append(names, encodeHeader(name))
	}
	v.mustBeEditable(L, m, "msg:label")
	value := strings.Join(names, ", ")
	if err := m.Header.CheckAdd(labelsField, value); err != nil {
		L.RaiseError("msg:label: %v", err)
	}
	m.Header.Add(labelsField, value)
	m.MarkHeaderChanged()
	return 0
}
