// Package message is one e-mail as mailflow carries it: its original bytes
// (in memory or spilled to disk), its parsed header, its envelope and where
// it came from.
package message

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Message is one e-mail moving through mailflow.
//
// The original bytes are kept exactly as the source gave them (in memory, or
// spilled to a file when large). The header is parsed once into a Header
// that keeps every field's bytes; when a filter changes it, the header block
// is written from it (unchanged fields byte for byte), and the body is always
// streamed from the original bytes.
type Message struct {
	// Source says where the message came from.
	Source Source
	// Envelope is the SMTP envelope. Recipients are empty unless a filter set
	// them; an output then uses its own configured recipients.
	Envelope Envelope
	// Received is the envelope and client of a message that came over SMTP
	// or LMTP; nil for one fetched from a mailbox (received.go).
	Received *Received
	// ReceivedAt is when mailflow read the message from its source.
	ReceivedAt time.Time
	// What the source knew of it, where it knew it: the folder it was in,
	// its flags (IMAP's \Seen, \Flagged, keywords; Maildir's letters made
	// IMAP flags), and when it arrived there (IMAP INTERNALDATE). Outputs
	// that store them (IMAP) keep them.
	// Folder has "/" between levels, whatever the source's separator;
	// FolderRole is its SPECIAL-USE attribute (\Sent, \Drafts, ...), if any.
	Folder       string
	FolderRole   string
	Flags        []string
	InternalDate time.Time
	// Header is the parsed header. When the header could not be parsed (no
	// field on the first line, or larger than SpoolOptions.MaxHeader),
	// HeaderErr says why, Header is empty, and the message flows with its
	// bytes untouched.
	Header    Header
	HeaderErr error
	// Digest is the SHA-256 of the original bytes.
	Digest [32]byte

	data        Data
	eightBit    bool    // some byte of the original is >= 0x80
	header8Bit  bool    // some byte of the original header is >= 0x80
	headerLen   int64   // bytes of the original header block, blank line included
	headerDirty bool    // a filter changed Header
	pieces      []piece // the body as edited (edit.go); nil when it was not
	lineEnds    sync.Once
	crlf        int64 // CRLF line ends in the original (see LineEnds)
	bareLF      int64 // LF line ends without a CR before them
}

// Source identifies a message at its origin.
type Source struct {
	Input string // the configured input name
	ID    string // the source's own id (POP3 UIDL, Maildir unique name)
}

// Envelope is the SMTP envelope of a message.
type Envelope struct {
	// Sender is the reverse-path (MAIL FROM): "" leaves it to the output
	// (its from, else the message's Return-Path or From); NullSender is
	// the null reverse-path of bounces and auto-replies, which no output
	// replaces.
	Sender     string
	Recipients []string
}

// NullSender in Envelope.Sender is the null reverse-path, MAIL FROM:<>
// (RFC 5321 4.5.5): bounces and auto-replies, which must never be answered.
const NullSender = "<>"

// ErrTooLarge is returned by Read when a message exceeds the
// configured maximum size. The source must leave such a message in place.
var ErrTooLarge = errors.New("message exceeds the maximum size")

// SpoolOptions bound how a message is read in.
type SpoolOptions struct {
	Dir       string // where large messages spill; "" means os.TempDir()
	InMemory  int64  // messages up to this size stay in memory
	MaxSize   int64  // 0 means no limit
	MaxHeader int64  // bytes of header parsed at most
	// SizeHint is the size the source announced for this message (-1 or 0
	// when unknown): the memory for it is taken once, up front, instead of
	// doubling as the bytes come in.
	SizeHint int64
	// Pool, if set, lends the memory for a message of announced size (a
	// chunk at least: a small message then leaves no garbage on the heap);
	// it goes back when the message is closed.
	Pool *BufferPool
}

// DefaultSpool is used where no options are configured.
var DefaultSpool = SpoolOptions{InMemory: 1 << 20, MaxSize: 0, MaxHeader: 16 << 20}

// Read reads a whole message from r, keeping at most opts.InMemory
// bytes in memory and spilling the rest to a temporary file. The caller owns
// the message and must call Close when done with it.
func Read(r io.Reader, src Source, opts SpoolOptions) (*Message, error) {
	if opts.InMemory <= 0 {
		opts.InMemory = DefaultSpool.InMemory
	}
	if opts.MaxHeader <= 0 {
		opts.MaxHeader = DefaultSpool.MaxHeader
	}
	h := &scanHash{Hash: sha256.New()}
	limit := opts.InMemory + 1
	if opts.MaxSize > 0 && opts.MaxSize < opts.InMemory {
		limit = opts.MaxSize + 1
	}
	in := io.TeeReader(io.LimitReader(r, limit), h)
	var held interface {
		Data
		io.WriterTo
	}
	var n int64
	if opts.Pool != nil && opts.SizeHint > 0 {
		d, err := readChunks(in, limit, opts.Pool)
		if err != nil {
			return nil, fmt.Errorf("reading message: %w", err)
		}
		held, n = d, d.size
	} else {
		var buf bytes.Buffer
		if opts.SizeHint > 0 {
			// bytes.Buffer.ReadFrom wants MinRead bytes free to see the end;
			// without them an exact size would double the buffer at the last
			// read. A hint counted with CRLF for bytes held with LF is a little
			// more than needed, never less.
			buf.Grow(int(min(opts.SizeHint, limit)) + bytes.MinRead)
		}
		var err error
		if n, err = io.Copy(&buf, in); err != nil {
			return nil, fmt.Errorf("reading message: %w", err)
		}
		held = memData(buf.Bytes())
	}
	var data Data = held
	if n >= limit {
		if opts.MaxSize > 0 && n > opts.MaxSize {
			held.Release()
			return nil, ErrTooLarge
		}
		f, err := os.CreateTemp(opts.Dir, "mailflow-spill-*.eml")
		if err != nil {
			held.Release()
			return nil, fmt.Errorf("spilling message to disk: %w", err)
		}
		fd := &fileData{f: f}
		var rest io.Reader = r
		if opts.MaxSize > 0 {
			rest = io.LimitReader(r, opts.MaxSize-n+1)
		}
		_, err = held.WriteTo(f)
		held.Release()
		if err != nil {
			fd.Release()
			return nil, fmt.Errorf("spilling message to disk: %w", err)
		}
		m, err := io.Copy(f, io.TeeReader(rest, h))
		if err != nil {
			fd.Release()
			return nil, fmt.Errorf("reading message: %w", err)
		}
		fd.size = n + m
		if opts.MaxSize > 0 && fd.size > opts.MaxSize {
			fd.Release()
			return nil, ErrTooLarge
		}
		data = fd
	}
	msg := &Message{Source: src, ReceivedAt: time.Now(), data: data, eightBit: h.eightBit}
	copy(msg.Digest[:], h.Sum(nil))
	msg.parseHeader(opts.MaxHeader)
	return msg, nil
}

// New makes a message from bytes held in memory.
func New(b []byte, src Source) *Message {
	msg := &Message{Source: src, ReceivedAt: time.Now(), data: memData(b), eightBit: has8Bit(b)}
	msg.Digest = sha256.Sum256(b)
	msg.parseHeader(DefaultSpool.MaxHeader)
	return msg
}

func (m *Message) parseHeader(max int64) {
	h, n, err := readHeader(m.data.Reader(), max)
	if err != nil {
		// Keep the bytes as they are; the whole message counts as body.
		m.Header, m.HeaderErr, m.headerLen, m.header8Bit = Header{}, err, 0, m.eightBit
		return
	}
	m.Header, m.headerLen = h, n
	if m.eightBit {
		m.header8Bit = has8Bit(m.headerBytes())
	}
}

// headerBytes returns the original header block.
func (m *Message) headerBytes() []byte {
	head := make([]byte, m.headerLen)
	io.ReadFull(m.data.Reader(), head)
	return head
}

// EightBit reports whether the message has bytes >= 0x80 anywhere, and in
// its header: an SMTP client must then ask for 8BITMIME, and SMTPUTF8.
func (m *Message) EightBit() (any, inHeader bool) {
	if m.headerDirty {
		var buf bytes.Buffer
		_ = m.writeHeader(&buf)
		inHeader = has8Bit(buf.Bytes())
		return m.eightBit || inHeader, inHeader
	}
	return m.eightBit, m.header8Bit
}

func has8Bit(b []byte) bool {
	// 32 bytes at a time: this runs over every byte of every message.
	const high = 0x8080808080808080
	for len(b) >= 32 {
		if (binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]))&high != 0 {
			return true
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&high != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// scanHash hashes what is written to it and notes any 8-bit byte.
type scanHash struct {
	hash.Hash
	eightBit bool
}

func (s *scanHash) Write(p []byte) (int, error) {
	if !s.eightBit {
		s.eightBit = has8Bit(p)
	}
	return s.Hash.Write(p)
}

// countLineEnds counts CRLF line ends, and LF ones without a CR, in r.
func countLineEnds(r io.Reader) (crlf, bareLF int64) {
	buf := make([]byte, 32<<10)
	lastCR := false
	for {
		n, err := r.Read(buf)
		p := buf[:n]
		for at := 0; n > 0; at++ {
			i := bytes.IndexByte(p[at:], '\n')
			if i < 0 {
				break
			}
			at += i // p[at] is the LF
			if at > 0 && p[at-1] == '\r' || at == 0 && lastCR {
				crlf++
			} else {
				bareLF++
			}
		}
		if n > 0 {
			lastCR = p[n-1] == '\r'
		}
		if err != nil {
			return crlf, bareLF
		}
	}
}

// LineEnds counts the original's line ends: CRLF, and LF without a CR.
// They are counted on first use, from the bytes held: most messages never
// need them, as their size is the one their source announced.
func (m *Message) LineEnds() (crlf, bareLF int64) {
	m.lineEnds.Do(func() { m.crlf, m.bareLF = countLineEnds(m.data.Reader()) })
	return m.crlf, m.bareLF
}

// Size is the size in bytes of the message as it would be written now.
func (m *Message) Size() int64 {
	if !m.headerDirty && m.pieces == nil {
		return m.data.Size()
	}
	head := m.headerLen
	if m.headerDirty {
		var buf bytes.Buffer
		_ = m.writeHeader(&buf)
		head = int64(buf.Len())
	}
	return head + m.BodySize()
}

// EndsInCRLF reports whether the original bytes end in CRLF.
func (m *Message) EndsInCRLF() bool {
	var tail [2]byte
	n, _ := m.data.ReaderAt().ReadAt(tail[:], m.data.Size()-2)
	return n == 2 && tail == [2]byte{'\r', '\n'}
}

// OriginalSize is the size of the bytes the source gave.
func (m *Message) OriginalSize() int64 { return m.data.Size() }

// HeaderChanged reports whether a filter changed the header.
func (m *Message) HeaderChanged() bool { return m.headerDirty }

// MarkHeaderChanged records that Header was modified, so that output
// re-writes the header block. Filters must call it after changing Header.
func (m *Message) MarkHeaderChanged() { m.headerDirty = true }

// Original returns a reader over the bytes exactly as the source gave them.
func (m *Message) Original() io.Reader { return m.data.Reader() }

// Body returns a reader over the body as it would be delivered now: the
// original bytes, with a filter's edits (EditBody) if it made any.
func (m *Message) Body() io.Reader { return m.body() }

// Reader returns a reader over the message as it would be delivered now:
// the original bytes when nothing changed, else the header (new if a
// filter changed it) followed by the body (edited if a filter changed it).
func (m *Message) Reader() io.Reader {
	if !m.headerDirty && m.pieces == nil {
		return m.data.Reader()
	}
	if !m.headerDirty {
		return io.MultiReader(io.NewSectionReader(m.data.ReaderAt(), 0, m.headerLen), m.body())
	}
	var buf bytes.Buffer
	if err := m.writeHeader(&buf); err != nil {
		return &errReader{err}
	}
	return io.MultiReader(&buf, m.body())
}

// WriteTo writes the message as it would be delivered now.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, m.Reader())
}

func (m *Message) writeHeader(w io.Writer) error {
	_, err := m.Header.WriteTo(w)
	return err
}

// Key is a stable identity for this message from this source, used to make
// deliveries idempotent: the same source id with the same bytes gives the
// same key, a reused id with other bytes does not.
func (m *Message) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", m.Source.Input, m.Source.ID)
	h.Write(m.Digest[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// MessageID returns the Message-ID header without angle brackets.
func (m *Message) MessageID() string {
	return strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>")
}

// Close releases the message's storage (its spill file, if any).
func (m *Message) Close() error {
	if m.data == nil {
		return nil
	}
	return m.data.Release()
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// Data holds a message's original bytes.
type Data interface {
	Size() int64
	Reader() io.Reader
	ReaderAt() io.ReaderAt
	Release() error
}

type memData []byte

func (d memData) Size() int64           { return int64(len(d)) }
func (d memData) Reader() io.Reader     { return bytes.NewReader(d) }
func (d memData) ReaderAt() io.ReaderAt { return bytes.NewReader(d) }
func (d memData) Release() error        { return nil }
func (d memData) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(d)
	return int64(n), err
}

type fileData struct {
	f    *os.File
	size int64
}

func (d *fileData) Size() int64           { return d.size }
func (d *fileData) Reader() io.Reader     { return io.NewSectionReader(d.f, 0, d.size) }
func (d *fileData) ReaderAt() io.ReaderAt { return d.f }
func (d *fileData) Release() error {
	name := d.f.Name()
	d.f.Close()
	return os.Remove(name)
}

// ReadHeaderBlock reads a message's header block from r: every byte up to
// and including the blank line that ends it, at most max bytes (a message
// without a blank line gives what was read).
func ReadHeaderBlock(r io.Reader, max int64) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, max))
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		out = append(out, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(line) <= 2 && (string(line) == "\n" || string(line) == "\r\n") {
			return out, nil
		}
	}
}
