package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

const (
	// bufSize is the read buffer: the most of the stream held at once. A
	// line longer than it is handed over in pieces, never gathered whole.
	bufSize = 64 << 10
	// maxFromLine is the most of a From_ line kept; the rest of a longer
	// one (never a message's byte) is passed over.
	maxFromLine = 1 << 10
)

// FormatError says that a stream is not an mbox, or not the one its
// variant promised.
type FormatError struct {
	Offset int64 // where, in bytes from the start of the stream
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("mbox: at byte %d: %s", e.Offset, e.Reason)
}

// Reader reads the messages of an mbox one after the other, with a
// bounded buffer whatever the size of the file, its lines or its
// messages:
//
//	r := mbox.NewReader(f, mbox.Auto)
//	for {
//		m, err := r.Next()
//		if err == io.EOF {
//			break
//		}
//		if err != nil {
//			return err
//		}
//		// m reads the message's bytes: as the file holds them, without
//		// its From_ line, the blank line that separates it from the
//		// next, and the quoting of its "From " lines.
//		io.Copy(dst, m)
//	}
//
// A message's bytes are handed over exactly as the file holds them (CRLF
// or LF, whatever their mix), but for the From_ line, the separating
// blank line and the quoting. A message that does not end with a line
// end, or whose Content-Length runs past the end of the file, is handed
// over as it is and marked Truncated.
//
// A Reader is not safe for use from several goroutines.
type Reader struct {
	br      *bufio.Reader
	src     io.Reader
	ra      io.ReaderAt // the stream, for checking a Content-Length; nil if it is no ReaderAt
	seeker  io.Seeker   // the stream, for passing over a counted body; nil with ra
	base    int64       // ra's offset of the stream's first byte
	variant Variant
	off     int64 // stream offset of br's next byte

	started  bool
	haveFrom bool   // from holds the From_ line of the next message
	from     []byte // without its line end
	fromOff  int64
	msg      Message
	err      error // sticky
}

// NewReader returns a Reader of the mbox r in the given variant (Auto
// recognises each). When r is also an io.ReaderAt and an io.Seeker (an
// *os.File, an *io.SectionReader, a *bytes.Reader), a Content-Length is
// checked by reading ahead where it points; on a plain stream only when
// that is within the read buffer (64 KiB), and Auto reads a message whose
// Content-Length could not be checked as mboxrd.
func NewReader(r io.Reader, v Variant) *Reader {
	rd := &Reader{variant: v}
	rd.Reset(r)
	return rd
}

// Reset makes the Reader read r from its start, keeping its buffer.
func (r *Reader) Reset(src io.Reader) {
	if r.br == nil {
		r.br = bufio.NewReaderSize(src, bufSize)
	} else {
		r.br.Reset(src)
	}
	r.src, r.ra, r.seeker, r.base = src, nil, nil, 0
	if ra, ok := src.(io.ReaderAt); ok {
		if s, ok := src.(io.Seeker); ok {
			if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
				r.ra, r.seeker, r.base = ra, s, pos
			}
		}
	}
	r.off, r.started, r.haveFrom, r.from, r.fromOff, r.err = 0, false, false, r.from[:0], 0, nil
	r.msg = Message{}
}

// Next returns the next message, or io.EOF after the last. What is left
// unread of the message before is passed over. The Message is valid until
// the next call of Next or Reset.
func (r *Reader) Next() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.started {
		r.started = true
		if err := r.first(); err != nil {
			r.err = err
			return nil, err
		}
	} else if !r.msg.done {
		r.msg.skip()
		if r.msg.err != nil {
			r.err = r.msg.err
			return nil, r.err
		}
	}
	if !r.haveFrom {
		r.err = io.EOF
		return nil, io.EOF
	}
	r.haveFrom = false
	r.msg = Message{
		Offset: r.fromOff, From: string(r.from), r: r,
		atStart: true, header: true, headerEnd: -1, cl: -1, lastNL: true,
	}
	switch r.variant {
	case Mboxo:
		r.msg.quote, r.msg.kind = quoteOne, Mboxo
	case Mboxcl2:
		r.msg.quote, r.msg.kind = quoteNone, Mboxcl2
	default:
		r.msg.quote, r.msg.kind = quoteAll, Mboxrd
	}
	return &r.msg, nil
}

// first reads up to the first From_ line, past blank lines.
func (r *Reader) first() error {
	for {
		start := r.off
		line, partial, err := r.line()
		if err != nil {
			return err // io.EOF: no message at all
		}
		if !partial && isBlank(line) {
			continue
		}
		if !bytes.HasPrefix(line, fromPrefix) {
			return &FormatError{start, "the first line is no From_ line: not an mbox"}
		}
		return r.setFrom(line, partial, start)
	}
}

// line reads the next line, or the next bufSize bytes of a longer one.
// partial says that it does not end with '\n' (a longer line goes on, or
// the stream ends without a line end). err is io.EOF only with no bytes.
func (r *Reader) line() (b []byte, partial bool, err error) {
	b, err = r.br.ReadSlice('\n')
	r.off += int64(len(b))
	if err == bufio.ErrBufferFull || (err == io.EOF && len(b) > 0) {
		err = nil
	}
	return b, len(b) == 0 || b[len(b)-1] != '\n', err
}

// setFrom keeps line, which starts at off, as the next message's From_
// line, and passes over the rest of it if it is longer than bufSize.
func (r *Reader) setFrom(line []byte, partial bool, off int64) error {
	keep := trimLineEnd(line)
	keep = keep[:min(len(keep), maxFromLine)]
	r.from = append(r.from[:0], keep...)
	r.fromOff, r.haveFrom = off, true
	for partial {
		var err error
		if _, partial, err = r.line(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
	return nil
}

type quoting int

const (
	quoteNone quoting = iota // mboxcl2
	quoteOne                 // mboxo: ">From "
	quoteAll                 // mboxrd: ">>*From "
)

// Message is one message of an mbox, read through Read (or WriteTo).
// Size, End, Truncated and Variant are known once it was read to its end.
type Message struct {
	// Offset is where its From_ line starts, in bytes from the start of
	// the stream.
	Offset int64
	// From is its From_ line without the line end ("From sender date"),
	// cut at 1 KiB.
	From string

	r       *Reader
	pending []byte // read and not yet handed over
	// A line read while a held blank line went out first.
	la        []byte
	laPartial bool
	hasLA     bool
	held      [2]byte // a blank line held back: it is the separator if a From_ line follows
	heldN     int
	atStart   bool  // the next byte starts a line
	header    bool  // still in the header block
	headerEnd int64 // stream offset just past the header's blank line; -1 while unknown
	cl        int64 // the Content-Length field's value; -1 for none
	counted   bool  // in a body whose end the Content-Length gives
	remaining int64 // of that body
	clPastEOF bool
	quote     quoting
	kind      Variant
	size      int64
	unquoted  int
	lastNL    bool // the last byte handed over was '\n', or none was
	truncated bool
	end       int64
	done      bool
	err       error
}

// Read reads the message's bytes.
func (m *Message) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(m.pending) > 0 {
			c := copy(p[n:], m.pending)
			m.pending = m.pending[c:]
			n += c
			continue
		}
		if m.done {
			break
		}
		m.advance()
	}
	if n > 0 {
		return n, nil
	}
	if m.err != nil {
		return 0, m.err
	}
	return 0, io.EOF
}

// WriteTo writes the rest of the message's bytes to w, without copying
// them through a buffer of the caller's.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		if len(m.pending) > 0 {
			c, err := w.Write(m.pending)
			m.pending = m.pending[c:]
			n += int64(c)
			if err != nil {
				return n, err
			}
			continue
		}
		if m.done {
			return n, m.err
		}
		m.advance()
	}
}

// skip reads the message to its end, handing nothing over. A body
// whose Content-Length ends it is not read at all where the stream can
// seek: listing an mboxcl2 file reads its headers only.
func (m *Message) skip() {
	r := m.r
	for !m.done {
		m.pending = nil
		if m.counted && r.seeker != nil && m.remaining > int64(r.br.Buffered()) {
			b := r.br.Buffered()
			r.br.Discard(b)
			rest := m.remaining - int64(b)
			// The underlying stream is where br's buffer ended: at r.off+b.
			if _, err := r.seeker.Seek(rest, io.SeekCurrent); err != nil {
				m.fail(err)
				break
			}
			r.br.Reset(r.src)
			r.off += int64(b) + rest
			m.size += int64(b) + rest
			m.remaining = 0
			continue
		}
		m.advance()
	}
	m.pending = nil
}

// Size is the number of bytes the message handed over.
func (m *Message) Size() int64 { return m.size }

// End is where the message ends in the stream, its separating blank
// line included: where the next From_ line starts, or the end of the
// stream.
func (m *Message) End() int64 { return m.end }

// HeaderEnd is where the message's header block ends in the stream, just
// past its blank line; -1 when the header had no end.
func (m *Message) HeaderEnd() int64 { return m.headerEnd }

// Truncated reports whether the message was cut short at the end of the
// stream: its last line has no line end, or its Content-Length runs past
// the end.
func (m *Message) Truncated() bool { return m.truncated }

// Variant is how the message was read: Mboxcl2 when its Content-Length
// ended it, else the unquoting applied (Mboxrd or Mboxo).
func (m *Message) Variant() Variant { return m.kind }

// Unquoted is the number of lines that had a '>' taken off.
func (m *Message) Unquoted() int { return m.unquoted }

// Sender is the From_ line's envelope sender ("" if it has none).
func (m *Message) Sender() string { return fromSender(m.From) }

// Date is the From_ line's date (the zero time if it has none that can be
// read). Google Takeout writes the message's arrival there.
func (m *Message) Date() time.Time { return fromDate(m.From) }

var fromPrefix = []byte("From ")

// advance reads what comes next: it sets pending, or ends the message.
func (m *Message) advance() {
	r := m.r
	if m.counted {
		m.advanceCounted()
		return
	}
	var line []byte
	var partial bool
	if m.hasLA {
		line, partial, m.hasLA = m.la, m.laPartial, false
		m.la = nil
	} else {
		var err error
		start := r.off
		if line, partial, err = r.line(); err == io.EOF {
			// A blank line held at the end is the last separator.
			m.finish(start, true)
			return
		} else if err != nil {
			m.fail(err)
			return
		}
	}
	if !m.atStart {
		m.emit(line)
		m.atStart = !partial
		return
	}
	start := r.off - int64(len(line))
	if bytes.HasPrefix(line, fromPrefix) && (m.heldN > 0 || looksLikeFromLine(line)) {
		if err := r.setFrom(line, partial, start); err != nil {
			m.fail(err)
			return
		}
		m.finish(start, false)
		return
	}
	if m.heldN > 0 {
		// Not a separator after all: the blank line goes out, then this.
		m.pending = m.held[:m.heldN]
		m.size += int64(m.heldN)
		m.lastNL, m.heldN = true, 0
		m.la, m.laPartial, m.hasLA = line, partial, true
		return
	}
	if !partial && isBlank(line) {
		m.heldN = copy(m.held[:], line)
		if m.header {
			m.endHeader()
		}
		return
	}
	if m.header && !partial {
		m.field(line)
	}
	if m.quote != quoteNone && line[0] == '>' && m.quoted(line) {
		line = line[1:]
		m.unquoted++
	}
	m.emit(line)
	m.atStart = !partial
}

// quoted reports whether line is a "From " line the variant quoted.
func (m *Message) quoted(line []byte) bool {
	i := 1
	if m.quote == quoteAll {
		for i < len(line) && line[i] == '>' {
			i++
		}
	}
	return bytes.HasPrefix(line[i:], fromPrefix)
}

// field notes a header line's Content-Length.
func (m *Message) field(line []byte) {
	const name = "content-length:"
	if len(line) < len(name) || (line[0]|0x20) != 'c' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return
	}
	v := bytes.TrimSpace(line[len(name):])
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' || n > 1<<50 {
			return
		}
		n = n*10 + int64(c-'0')
	}
	if len(v) == 0 {
		return
	}
	if m.cl >= 0 && m.cl != n {
		m.cl = -2 // two that disagree: neither is believed
		return
	}
	if m.cl != -2 {
		m.cl = n
	}
}

// endHeader is called on the header's blank line (held in m.held): a
// Content-Length that ends the message at a From_ line makes the body a
// counted one, and the blank line goes out at once.
func (m *Message) endHeader() {
	r := m.r
	m.header, m.headerEnd = false, r.off
	if m.cl < 0 || r.variant == Mboxo || r.variant == Mboxrd {
		return
	}
	switch r.check(m.cl, m.held[m.heldN-1]) {
	case clFits:
	case clUnknown:
		if r.variant != Mboxcl2 {
			return
		}
		// Forced mboxcl2 on a stream that cannot be read ahead: the
		// Content-Length is believed, and checked when it is reached.
	case clPastEOF:
		m.clPastEOF = true
		return
	default:
		return
	}
	m.counted, m.remaining, m.kind, m.quote = true, m.cl, Mboxcl2, quoteNone
	m.pending = m.held[:m.heldN]
	m.size += int64(m.heldN)
	m.lastNL, m.heldN = true, 0
}

// advanceCounted reads a body whose Content-Length gives its end, then
// what separates it from the next From_ line.
func (m *Message) advanceCounted() {
	r := m.r
	if m.remaining > 0 {
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err == io.EOF {
				m.truncated = true
				m.finish(r.off, true)
				return
			} else if err != nil {
				m.fail(err)
				return
			}
		}
		k := int(min(int64(r.br.Buffered()), m.remaining))
		b, _ := r.br.Peek(k)
		r.br.Discard(k)
		r.off += int64(k)
		m.remaining -= int64(k)
		m.emit(b)
		return
	}
	start := r.off
	line, partial, err := r.line()
	if err == io.EOF {
		m.finish(start, true)
		return
	} else if err != nil {
		m.fail(err)
		return
	}
	if !partial && isBlank(line) {
		start = r.off
		if line, partial, err = r.line(); err == io.EOF {
			m.finish(start, true)
			return
		} else if err != nil {
			m.fail(err)
			return
		}
	}
	if bytes.HasPrefix(line, fromPrefix) {
		if err := r.setFrom(line, partial, start); err != nil {
			m.fail(err)
			return
		}
		m.finish(start, false)
		return
	}
	m.fail(&FormatError{start, fmt.Sprintf("the Content-Length of the message at byte %d does not end at a From_ line", m.Offset)})
}

func (m *Message) emit(b []byte) {
	m.pending = b
	m.size += int64(len(b))
	if len(b) > 0 {
		m.lastNL = b[len(b)-1] == '\n'
	}
}

// finish ends the message at end; atEOF says the stream ended there. A
// body its Content-Length ended is whole with or without a last line end.
func (m *Message) finish(end int64, atEOF bool) {
	m.done, m.end, m.heldN = true, end, 0
	if atEOF && (!m.lastNL && !m.counted || m.clPastEOF) {
		m.truncated = true
	}
}

func (m *Message) fail(err error) {
	m.done, m.err, m.pending = true, err, nil
	if m.r.err == nil {
		m.r.err = err
	}
}

type clVerdict int

const (
	clUnknown clVerdict = iota // cannot be checked
	clFits                     // a From_ line, or the end, is where it points
	clWrong                    // something else is
	clPastEOF                  // the stream ends before it
)

// check looks at where a Content-Length of cl, counted from the stream's
// current offset (just past the header's blank line, whose last byte is
// last), points: the body's last byte, then the end of the stream, or a
// From_ line (after the body's own line end, or a blank line).
func (r *Reader) check(cl int64, last byte) clVerdict {
	var buf [8]byte
	var b []byte // the body's last byte, then up to 7 after it
	switch {
	case r.ra != nil:
		n, err := r.ra.ReadAt(buf[:], r.base+r.off+cl-1)
		if n == 0 {
			if err == io.EOF {
				return clPastEOF
			}
			return clUnknown
		}
		b = buf[:n]
	case cl+7 <= bufSize:
		p, err := r.br.Peek(int(cl) + 7)
		if int64(len(p)) < cl {
			if err == io.EOF {
				return clPastEOF
			}
			return clUnknown
		}
		if cl == 0 {
			b = append(buf[:0], last)
		} else {
			b = append(buf[:0], p[cl-1])
		}
		b = append(b, p[cl:]...)
	default:
		return clUnknown
	}
	prev, rest := b[0], b[1:]
	if len(rest) == 0 {
		return clFits // the end of the stream
	}
	if bytes.HasPrefix(rest, fromPrefix) {
		if prev == '\n' {
			return clFits
		}
		return clWrong
	}
	for _, le := range []string{"\n", "\r\n"} {
		if after, ok := bytes.CutPrefix(rest, []byte(le)); ok {
			if len(after) == 0 && len(b) < len(buf) || bytes.HasPrefix(after, fromPrefix) {
				return clFits
			}
		}
	}
	return clWrong
}

func isBlank(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

func trimLineEnd(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// IsMbox reports whether head, the first bytes of a file (a few hundred
// are enough), is the start of an mbox: its first line that is not blank
// is a From_ line with a date. A single message never starts so: its
// header's From field has a colon ("From: …").
func IsMbox(head []byte) bool {
	head = bytes.TrimLeft(head, "\r\n")
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i+1]
	}
	return bytes.HasPrefix(head, fromPrefix) && looksLikeFromLine(head)
}

// IsFormatError reports whether err says the stream is not an mbox (or
// not of the variant it was read as).
func IsFormatError(err error) bool {
	var f *FormatError
	return errors.As(err, &f)
}
