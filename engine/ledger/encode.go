package ledger

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Records are written on every delivery (the journal) and read rarely, so
// they are encoded by hand: encoding/json's reflection was a sixth of
// mailflow's CPU on small messages. The output is the JSON encoding/json
// makes of a Record (keys in the same order, empty fields left out, map
// keys sorted), so json.Unmarshal reads it, and old files read the same.

// appendRecord appends rec as JSON.
func appendRecord(b []byte, rec Record) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
	}
	if rec.Settled != "" {
		key("settled")
		b = appendString(b, string(rec.Settled))
	}
	if len(rec.Accepted) > 0 {
		key("accepted")
		b = appendListMap(b, rec.Accepted)
	}
	if len(rec.Refused) > 0 {
		key("refused")
		b = appendListMap(b, rec.Refused)
	}
	if len(rec.Reasons) > 0 {
		key("reasons")
		b = appendList(b, rec.Reasons)
	}
	if len(rec.Sending) > 0 {
		key("sending")
		b = appendList(b, rec.Sending)
	}
	if len(rec.InDoubt) > 0 {
		key("in_doubt")
		b = appendList(b, rec.InDoubt)
	}
	if rec.Digest != "" {
		key("digest")
		b = appendString(b, rec.Digest)
	}
	if rec.Size != 0 {
		key("size")
		b = strconv.AppendInt(b, rec.Size, 10)
	}
	if rec.Listed != 0 {
		key("listed")
		b = strconv.AppendInt(b, rec.Listed, 10)
	}
	if rec.Attempts != 0 {
		key("attempts")
		b = strconv.AppendInt(b, int64(rec.Attempts), 10)
	}
	key("flags")
	b = appendList(b, rec.Flags)
	if len(rec.Where) > 0 {
		key("where")
		b = appendStringMap(b, rec.Where)
	}
	if rec.Removed {
		key("removed")
		b = append(b, "true"...)
	}
	key("at")
	b = append(b, '"')
	b = rec.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	return append(b, '}')
}

// appendJournalEntry appends one journal line's JSON (journalEntry).
func appendJournalEntry(b []byte, input, id string, rec Record) []byte {
	b = append(b, `{"input":`...)
	b = appendString(b, input)
	b = append(b, `,"id":`...)
	b = appendString(b, id)
	b = append(b, `,"rec":`...)
	b = appendRecord(b, rec)
	return append(b, '}')
}

func appendListMap(b []byte, m map[string][]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendList(b, m[k])
	}
	return append(b, '}')
}

func appendStringMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

func appendList(b []byte, l []string) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string, escaped as encoding/json does
// (<, > and & too, so that the bytes are the same).
func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		q, _ := json.Marshal(s) // invalid UTF-8 is replaced, as encoding/json does
		return append(b, q...)
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == '\u2028' || r == '\u2029' {
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hex[r&0xF])
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
