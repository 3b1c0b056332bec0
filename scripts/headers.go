package scripts

import (
	"errors"
	"mime"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader decodes RFC 2047 encoded words to UTF-8. Raw 8-bit values
// that are not UTF-8 are read as Latin-1, the usual culprit. A value that
// does not decode is returned as it stands rather than lost.
func decodeHeader(v string) string {
	if strings.Contains(v, "=?") {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	return toUTF8(v)
}

// toUTF8 returns s if it is valid UTF-8, else s read as Latin-1.
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// encodeHeader encodes a value for the wire: runs of words with non-ASCII
// characters become RFC 2047 encoded words (UTF-8, Q or B, whichever is
// shorter, as mime does); ASCII words, and so addresses in angle brackets,
// stay as they are. Encoding whole runs keeps the spaces between their words,
// which decoders drop between adjacent encoded words.
func encodeHeader(v string) string {
	if isASCII(v) {
		return v
	}
	words := strings.Split(v, " ")
	var out []string
	for i := 0; i < len(words); {
		if isASCII(words[i]) {
			out = append(out, words[i])
			i++
			continue
		}
		// Extend the run to the last non-ASCII word before the next ASCII
		// word that is followed by no more non-ASCII ones.
		j := i + 1
		for k := i + 1; k < len(words); k++ {
			if !isASCII(words[k]) {
				j = k + 1
			} else if strings.ContainsAny(words[k], "<>@\"") {
				break // an address or quoted part ends the run
			}
		}
		out = append(out, mime.QEncoding.Encode("utf-8", strings.Join(words[i:j], " ")))
		i = j
	}
	return strings.Join(out, " ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkFieldName accepts RFC 5322 field names: printable ASCII, no colon.
func checkFieldName(name string) error {
	if name == "" {
		return errors.New("a header name cannot be empty")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return errors.New("header name " + strconvQuote(name) + " may only hold printable ASCII without spaces or ':'")
		}
	}
	return nil
}

// checkFieldValue refuses line breaks and NULs, which would let a value
// start new header fields or end the header (header injection).
func checkFieldValue(v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return errors.New("value contains CR, LF or NUL; a header value is one line (header injection refused)")
	}
	return nil
}

func strconvQuote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

type address struct{ Name, Address string }

var looseAddr = regexp.MustCompile(`[^\s<>,;:"()\[\]]+@[^\s<>,;:"()\[\]]+`)

// parseAddresses parses address fields. A field that is not valid RFC 5322
// (common in spam and old mailers) still yields the addresses in it, found
// loosely, rather than nothing.
func parseAddresses(values []string) []address {
	var out []address
	for _, v := range values {
		list, err := mail.ParseAddressList(v)
		if err == nil {
			for _, a := range list {
				out = append(out, address{Name: toUTF8(a.Name), Address: a.Address})
			}
			continue
		}
		for _, a := range looseAddr.FindAllString(v, -1) {
			out = append(out, address{Address: a})
		}
	}
	return out
}
