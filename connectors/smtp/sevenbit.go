package smtp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// To a server without 8BITMIME an 8-bit body must go as 7-bit MIME (RFC
// 6152 section 3): the client converts it. Each leaf part holding 8-bit
// bytes is re-encoded — quoted-printable for text, base64 otherwise — and
// its Content-Transfer-Encoding says so; the MIME structure, every boundary,
// every other part and every header field stay as they were. A part that
// claims quoted-printable or base64 yet holds 8-bit bytes, and 8-bit bytes
// in a header, cannot be converted without guessing, and are refused.

// maxConvert bounds the messages converted (they are converted in memory).
const maxConvert = 64 << 20

// errNotConvertible is wrapped by to7Bit's refusals.
var errNotConvertible = errors.New("cannot be converted to 7-bit MIME")

// to7Bit returns msg (a whole message, header and body) as 7-bit MIME.
func to7Bit(msg []byte) ([]byte, error) {
	if len(msg) > maxConvert {
		return nil, fmt.Errorf("%w: larger than %d MB", errNotConvertible, maxConvert>>20)
	}
	return convertEntity(msg, 0)
}

// convertEntity converts one MIME entity: a header block, then its body.
func convertEntity(ent []byte, depth int) ([]byte, error) {
	if depth > 50 {
		return nil, fmt.Errorf("%w: MIME nested deeper than 50", errNotConvertible)
	}
	head, body, nl := splitEntity(ent)
	if has8BitBytes(head) {
		return nil, fmt.Errorf("%w: a header field holds 8-bit bytes", errNotConvertible)
	}
	if !has8BitBytes(body) {
		return ent, nil
	}
	ctype, params := "text/plain", map[string]string{}
	if v := fieldValue(head, "Content-Type"); v != "" {
		if t, p, err := mime.ParseMediaType(v); err == nil {
			ctype, params = t, p
		}
	}
	cte := strings.ToLower(strings.TrimSpace(fieldValue(head, "Content-Transfer-Encoding")))
	switch {
	case strings.HasPrefix(ctype, "multipart/") && params["boundary"] != "":
		out, err := convertMultipart(body, params["boundary"], depth)
		if err != nil {
			return nil, err
		}
		return append(head, out...), nil
	case ctype == "message/rfc822" || ctype == "message/global":
		inner, err := convertEntity(body, depth+1)
		if err != nil {
			return nil, err
		}
		return append(head, inner...), nil
	case cte == "quoted-printable" || cte == "base64":
		return nil, fmt.Errorf("%w: a %s part holds 8-bit bytes", errNotConvertible, cte)
	}
	var enc bytes.Buffer
	newCTE := "base64"
	if strings.HasPrefix(ctype, "text/") {
		newCTE = "quoted-printable"
		w := quotedprintable.NewWriter(&enc)
		// Line ends stay line ends (a hard break in quoted-printable).
		w.Write(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))
		w.Close()
		if nl == "\r\n" {
			b := bytes.ReplaceAll(enc.Bytes(), []byte("\r\n"), []byte("\n"))
			enc.Reset()
			enc.Write(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
		}
	} else {
		b64 := base64.StdEncoding.EncodeToString(body)
		for len(b64) > 76 {
			enc.WriteString(b64[:76] + nl)
			b64 = b64[76:]
		}
		enc.WriteString(b64 + nl)
	}
	return append(setCTE(head, newCTE, nl), enc.Bytes()...), nil
}

// convertMultipart converts each part of a multipart body, keeping the
// preamble, the delimiter lines and the epilogue as they are.
func convertMultipart(body []byte, boundary string, depth int) ([]byte, error) {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	lines := bytes.SplitAfter(body, []byte("\n"))
	var part []byte
	inPart := false
	flush := func() error {
		if !inPart {
			out.Write(part)
			return nil
		}
		// The line end before a delimiter belongs to the delimiter.
		end := []byte{}
		if bytes.HasSuffix(part, []byte("\r\n")) {
			part, end = part[:len(part)-2], []byte("\r\n")
		} else if bytes.HasSuffix(part, []byte("\n")) {
			part, end = part[:len(part)-1], []byte("\n")
		}
		conv, err := convertEntity(part, depth+1)
		if err != nil {
			return err
		}
		out.Write(conv)
		out.Write(end)
		return nil
	}
	for _, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.HasPrefix(t, delim) && (len(t) == len(delim) || string(t[len(delim):]) == "--") {
			if err := flush(); err != nil {
				return nil, err
			}
			out.Write(l)
			part, inPart = nil, len(t) == len(delim)
			continue
		}
		part = append(part, l...)
	}
	if inPart {
		// No closing delimiter: what follows the last one is a part.
		conv, err := convertEntity(part, depth+1)
		if err != nil {
			return nil, err
		}
		out.Write(conv)
		return out.Bytes(), nil
	}
	out.Write(part) // the epilogue
	return out.Bytes(), nil
}

// splitEntity splits an entity after the blank line that ends its header,
// and says its line end.
func splitEntity(ent []byte) (head, body []byte, nl string) {
	nl = "\r\n"
	if i := bytes.IndexByte(ent, '\n'); i >= 0 && (i == 0 || ent[i-1] != '\r') {
		nl = "\n"
	}
	if bytes.HasPrefix(ent, []byte(nl)) {
		return ent[:len(nl)], ent[len(nl):], nl
	}
	if i := bytes.Index(ent, []byte(nl+nl)); i >= 0 {
		return ent[:i+2*len(nl)], ent[i+2*len(nl):], nl
	}
	return ent, nil, nl
}

// fieldValue returns the unfolded value of the first field called name.
func fieldValue(head []byte, name string) string {
	lines := strings.SplitAfter(string(head), "\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			v += lines[i]
		}
		return strings.Join(strings.Fields(v), " ")
	}
	return ""
}

// setCTE replaces the Content-Transfer-Encoding field of a header block
// (with its folded lines), or adds one before the blank line.
func setCTE(head []byte, cte, nl string) []byte {
	lines := strings.SplitAfter(string(head), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		k, _, ok := strings.Cut(lines[i], ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "Content-Transfer-Encoding") {
			for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
				i++
			}
			continue
		}
		if i == len(lines)-2 && strings.TrimRight(lines[i], "\r\n") == "" { // the blank line
			out.WriteString("Content-Transfer-Encoding: " + cte + nl)
			out.WriteString(lines[i])
			for _, rest := range lines[i+1:] {
				out.WriteString(rest)
			}
			return []byte(out.String())
		}
		out.WriteString(lines[i])
	}
	out.WriteString("Content-Transfer-Encoding: " + cte + nl)
	return []byte(out.String())
}

func has8BitBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
