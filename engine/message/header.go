package message

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"sync"
)

// Header is a message's header block: its fields in order, each kept as
// its exact bytes (folded lines, spacing, line ends) until it is edited.
// Lines that are not a field (a line with no name before its colon, a line
// without a colon) are kept where they stand. So writing a header gives back
// every byte that was read but for the fields a filter changed, and the cost
// of an edit is linear in the size of the header.
type Header struct {
	fields []field
	nl     string // the line end of new fields, as the block's own lines end
	sep    []byte // what ended the block: the blank line as it was, or nothing (header-only message)
	max    int64  // the max_header_size it was read under; 0: DefaultSpool's
}

type field struct {
	key string // canonical name; "" for a line that is no field
	raw []byte // the bytes as read, line ends included; nil once edited
	val string // the value given, for an edited or new field
}

// ErrHeaderTooLarge is the HeaderErr of a message whose header block is
// larger than SpoolOptions.MaxHeader: it flows on untouched, and a filter
// that edits its header fails.
var ErrHeaderTooLarge = errors.New("the header is larger than max_header_size")

// readHeader reads a header block from r, at most max bytes. A message
// whose first line is no field (no colon, or a continuation) has no header:
// the error says so, and the whole message counts as body.
func readHeader(r io.Reader, max int64) (Header, int64, error) {
	h := Header{nl: "\r\n", max: max}
	// Every message's header is read once: its read buffer goes round
	// rather than being made (and cleared) for each. Lines point into it
	// and are copied where the header keeps them.
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(io.LimitReader(r, max+1))
	defer func() { br.Reset(nil); headerReaders.Put(br) }()
	var n int64
	first := true
	for {
		line, err := readLine(br)
		n += int64(len(line))
		if n > max {
			return Header{}, 0, ErrHeaderTooLarge
		}
		if len(line) == 0 {
			if err == io.EOF {
				if first {
					return Header{}, 0, errors.New("message is empty")
				}
				return h, n, nil // header only, no blank line
			}
			return Header{}, 0, err
		}
		if isBlank(line) {
			if first {
				h.nl = string(line) // an empty header: the blank line opens the body
			}
			h.sep = bytes.Clone(line)
			return h, n, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				return Header{}, 0, fmt.Errorf("malformed header: the first line is a continuation: %q", trimEnd(line, 60))
			}
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, line...)
			continue
		}
		key := fieldName(line)
		if first {
			if key == "" {
				return Header{}, 0, fmt.Errorf("malformed header line: %q", trimEnd(line, 60))
			}
			h.nl = lineEnd(line)
		}
		first = false
		h.fields = append(h.fields, field{key: key, raw: append([]byte(nil), line...)})
		if err == io.EOF {
			return h, n, nil
		}
	}
}

var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// readLine reads one line with its end: CRLF, LF, or a CR alone. A line
// that was whole in br's buffer is returned in it, not copied: it is
// valid until the next read from br, and a caller that keeps it copies it.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte // a line longer than what was buffered
	for {
		if _, err := br.Peek(1); err != nil {
			return out, err
		}
		buf, _ := br.Peek(br.Buffered())
		end := bytes.IndexByte(buf, '\n') + 1 // 0: none buffered
		scan := buf
		if end > 0 {
			scan = buf[:end-1]
		}
		if cr := bytes.IndexByte(scan, '\r'); cr >= 0 && cr != end-2 {
			// A CR alone ends the line, unless it is the last byte
			// buffered: then the next byte says.
			end = cr + 1
			if cr == len(buf)-1 {
				out = append(out, buf...)
				br.Discard(len(buf))
				if next, err := br.Peek(1); err == nil && next[0] == '\n' {
					out = append(out, '\n')
					br.Discard(1)
				}
				return out, nil
			}
		}
		if end == 0 {
			out = append(out, buf...)
			br.Discard(len(buf))
			continue
		}
		line := buf[:end]
		if out != nil {
			line = append(out, line...)
		}
		br.Discard(end)
		return line, nil
	}
}

func isBlank(line []byte) bool {
	s := string(line)
	return s == "\r\n" || s == "\n" || s == "\r"
}

func lineEnd(line []byte) string {
	switch {
	case bytes.HasSuffix(line, []byte("\r\n")):
		return "\r\n"
	case bytes.HasSuffix(line, []byte("\n")):
		return "\n"
	case bytes.HasSuffix(line, []byte("\r")):
		return "\r"
	}
	return "\r\n"
}

func trimEnd(line []byte, n int) string {
	s := strings.TrimRight(string(line), "\r\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// fieldName returns the canonical name of the field that line starts, or
// "" when the line is no field (RFC 5322 2.2: printable ASCII but colon,
// before a colon; spaces before the colon are tolerated).
func fieldName(line []byte) string {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return ""
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return ""
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// value unfolds a field's value: the text after the colon, with the line
// ends of folding and the space around them taken out, as go-message and
// net/mail do.
func (f *field) value() string {
	if f.raw == nil {
		return f.val
	}
	i := bytes.IndexByte(f.raw, ':')
	v := f.raw[i+1:]
	var b strings.Builder
	for len(v) > 0 {
		j := bytes.IndexAny(v, "\r\n")
		var line []byte
		if j < 0 {
			line, v = v, nil
		} else {
			line, v = v[:j], v[j+1:]
		}
		line = bytes.Trim(line, " \t")
		if len(line) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.Write(line)
	}
	return b.String()
}

// Has reports whether a field of that name exists.
func (h *Header) Has(name string) bool {
	key := textproto.CanonicalMIMEHeaderKey(name)
	for i := range h.fields {
		if h.fields[i].key == key {
			return true
		}
	}
	return false
}

// Get returns the first value of a field, unfolded, or "".
func (h *Header) Get(name string) string {
	key := textproto.CanonicalMIMEHeaderKey(name)
	for i := range h.fields {
		if h.fields[i].key == key {
			return h.fields[i].value()
		}
	}
	return ""
}

// Values returns every value of a field, in order.
func (h *Header) Values(name string) []string {
	key := textproto.CanonicalMIMEHeaderKey(name)
	var out []string
	for i := range h.fields {
		if h.fields[i].key == key {
			out = append(out, h.fields[i].value())
		}
	}
	return out
}

// Len is the number of fields (lines that are no field not counted).
func (h *Header) Len() int {
	n := 0
	for i := range h.fields {
		if h.fields[i].key != "" {
			n++
		}
	}
	return n
}

// Each calls fn with every field's name and unfolded value, in order.
func (h *Header) Each(fn func(name, value string)) {
	for i := range h.fields {
		if h.fields[i].key != "" {
			fn(h.fields[i].key, h.fields[i].value())
		}
	}
}

// Lines returns every line of the block but the blank line at its end, each
// field (or line that is no field) as it would be written, folded lines
// included: for showing a header, and diffing one.
func (h *Header) Lines() []string {
	out := make([]string, 0, len(h.fields))
	for i := range h.fields {
		var b bytes.Buffer
		h.writeField(&b, &h.fields[i])
		out = append(out, strings.TrimRight(b.String(), "\r\n"))
	}
	return out
}

// Set replaces the first field of that name, in its place, and removes the
// others of that name; without one, the field is added on top (as trace
// fields are). Every other field keeps its bytes.
func (h *Header) Set(name, value string) {
	key := textproto.CanonicalMIMEHeaderKey(name)
	out := h.fields[:0]
	done := false
	for _, f := range h.fields {
		if f.key != key {
			out = append(out, f)
			continue
		}
		if !done {
			out = append(out, field{key: key, val: value})
			done = true
		}
	}
	clear(h.fields[len(out):])
	h.fields = out
	if !done {
		h.Add(name, value)
	}
}

// Add puts a field on top of the header (where trace fields go).
func (h *Header) Add(name, value string) {
	key := textproto.CanonicalMIMEHeaderKey(name)
	h.fields = append(h.fields, field{})
	copy(h.fields[1:], h.fields)
	h.fields[0] = field{key: key, val: value}
}

// Del removes every field of that name.
func (h *Header) Del(name string) {
	key := textproto.CanonicalMIMEHeaderKey(name)
	out := h.fields[:0]
	for _, f := range h.fields {
		if f.key != key {
			out = append(out, f)
		}
	}
	clear(h.fields[len(out):])
	h.fields = out
}

// maxLine is RFC 5322's limit on a line (2.1.1), line end excluded: a new
// value longer than that is folded at a space before it.
const maxLine = 998

// ErrLineTooLong is why CheckSet or CheckAdd refuse a value that cannot be
// folded into lines of RFC 5322's 998 octets: a run of that many octets
// without a space or tab (or a name that long) cannot be broken anywhere.
var ErrLineTooLong = errors.New("a header line would be longer than RFC 5322's 998 octets")

// foldValue calls line with each line of a new field "key: value" as
// writeField writes it, line ends excluded and without the "key: " that
// opens the first: folded at the last space or tab within maxLine, else at
// the next one, which leaves a line too long only where there is no space
// to fold at.
func foldValue(key, v string, line func(s string, first bool)) {
	col := len(key) + len(": ")
	first := true
	for len(v) > maxLine-col {
		cut := strings.LastIndexAny(v[:max(maxLine-col, 0)], " \t")
		if cut <= 0 {
			// No space in reach: fold at the next one, if there is one.
			k := strings.IndexAny(v[1:], " \t")
			if k < 0 {
				break
			}
			cut = k + 1
		}
		line(v[:cut], first)
		v = v[cut:] // the space stays, opening the continuation line
		col, first = 0, false
	}
	line(v, first)
}

// writeField writes one field: its bytes as read, or a new "Name: value"
// with the block's own line ends, folded where a line would pass maxLine.
func (h *Header) writeField(w *bytes.Buffer, f *field) {
	if f.raw != nil {
		w.Write(f.raw)
		return
	}
	nl := h.lineEnd()
	foldValue(f.key, f.val, func(s string, first bool) {
		if first {
			w.WriteString(f.key)
			w.WriteString(": ")
		}
		w.WriteString(s)
		w.WriteString(nl)
	})
}

func (h *Header) lineEnd() string {
	if h.nl == "" {
		return "\r\n"
	}
	return h.nl
}

// fieldSize is how many bytes writeField writes for f.
func (h *Header) fieldSize(f *field) int64 {
	if f.raw != nil {
		return int64(len(f.raw))
	}
	n := int64(len(f.key) + len(": "))
	nl := int64(len(h.lineEnd()))
	if n+int64(len(f.val)) <= maxLine {
		return n + int64(len(f.val)) + nl // one line, as nearly every field
	}
	foldValue(f.key, f.val, func(s string, _ bool) { n += int64(len(s)) + nl })
	return n
}

// CheckSet reports whether Set(name, value) would give a header that can
// be sent: every line of the new field within 998 octets once folded
// (else ErrLineTooLong), and the whole block within the max_header_size the
// header was read under (else ErrHeaderTooLarge). A filter checks before
// it sets, so that what it cannot send is refused where it was asked for.
func (h *Header) CheckSet(name, value string) error {
	return h.check(textproto.CanonicalMIMEHeaderKey(name), value, true)
}

// CheckAdd is CheckSet for Add(name, value): the fields of that name stay.
func (h *Header) CheckAdd(name, value string) error {
	return h.check(textproto.CanonicalMIMEHeaderKey(name), value, false)
}

func (h *Header) check(key, value string, replace bool) error {
	longest := len(key) + len(": ") + len(value) // one line, as nearly every field
	if longest > maxLine {
		longest = 0
		foldValue(key, value, func(s string, first bool) {
			n := len(s)
			if first {
				n += len(key) + len(": ")
			}
			longest = max(longest, n)
		})
	}
	if longest > maxLine {
		return fmt.Errorf("%w: a line of %s would have %d, with no space or tab to fold it at", ErrLineTooLong, key, longest)
	}
	limit := h.max
	if limit <= 0 {
		limit = DefaultSpool.MaxHeader
	}
	size := h.fieldSize(&field{key: key, val: value}) + int64(len(h.sep))
	for i := range h.fields {
		if f := &h.fields[i]; !replace || f.key != key {
			size += h.fieldSize(f)
		}
	}
	if size > limit {
		return fmt.Errorf("%w: it would be %d bytes, over %d", ErrHeaderTooLarge, size, limit)
	}
	return nil
}

// WriteTo writes the header block: every field, then the blank line that
// ended it (nothing for a header-only message that had none).
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for i := range h.fields {
		h.writeField(&b, &h.fields[i])
	}
	if h.sep != nil {
		b.Write(h.sep)
	} else if h.nl == "" {
		b.WriteString("\r\n") // a header built from nothing ends like any other
	}
	return b.WriteTo(w)
}

// Clone returns a copy of h that can be edited without changing h.
func (h *Header) Clone() Header {
	c := *h
	c.fields = append([]field(nil), h.fields...)
	return c
}
