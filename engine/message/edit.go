package message

import (
	"bytes"
	"errors"
	"io"
)

// A filter that changes the body (a footer, an attachment replaced by a
// note) changes a few ranges of it. The body is kept as pieces: ranges of
// the original bytes, which stay where they are (in memory or in the spill
// file), and the new bytes of each edit. Nothing outside an edit is copied
// or re-encoded.

// piece is a run of the current body: original bytes from off (when b is
// nil), or new bytes.
type piece struct {
	off, n int64
	b      []byte
}

// bodyPieces returns the body as pieces, the original body as one when it
// was never edited.
func (m *Message) bodyPieces() []piece {
	if m.pieces != nil {
		return m.pieces
	}
	return []piece{{off: m.headerLen, n: m.data.Size() - m.headerLen}}
}

// BodySize is the size of the body as it would be written now.
func (m *Message) BodySize() int64 {
	var n int64
	for _, p := range m.bodyPieces() {
		n += p.n
	}
	return n
}

// BodyChanged reports whether a filter changed the body.
func (m *Message) BodyChanged() bool { return m.pieces != nil }

// EditBody replaces the bytes [from, to) of the body as it is now (offsets
// from the body's first byte) with with.
func (m *Message) EditBody(from, to int64, with []byte) error {
	if from < 0 || to < from || to > m.BodySize() {
		return errors.New("message: body edit out of range")
	}
	size := m.BodySize()
	pieces := m.bodyPieces()
	out := cutPieces(pieces, 0, from)
	if len(with) > 0 {
		out = append(out, piece{n: int64(len(with)), b: with})
	}
	m.pieces = append(out, cutPieces(pieces, to, size)...)
	if m.pieces == nil {
		m.pieces = []piece{}
	}
	if has8Bit(with) {
		m.eightBit = true
	}
	return nil
}

// cutPieces returns the pieces covering [lo, hi) of the run they make.
func cutPieces(pieces []piece, lo, hi int64) []piece {
	var out []piece
	at := int64(0)
	for _, p := range pieces {
		start, end := at, at+p.n
		at = end
		if end <= lo || start >= hi {
			continue
		}
		i, j := max(lo, start)-start, min(hi, end)-start
		if j > i {
			out = append(out, p.slice(i, j))
		}
	}
	return out
}

// slice is the bytes [i, j) of p.
func (p piece) slice(i, j int64) piece {
	if p.b != nil {
		return piece{n: j - i, b: p.b[i:j]}
	}
	return piece{off: p.off + i, n: j - i}
}

// BodyRange is a reader over the bytes [from, to) of the body as it is now.
func (m *Message) BodyRange(from, to int64) io.Reader {
	pieces := cutPieces(m.bodyPieces(), from, to)
	readers := make([]io.Reader, 0, len(pieces))
	for _, p := range pieces {
		if p.b != nil {
			readers = append(readers, bytes.NewReader(p.b))
		} else {
			readers = append(readers, io.NewSectionReader(m.data.ReaderAt(), p.off, p.n))
		}
	}
	return io.MultiReader(readers...)
}

// body is a reader over the body as it is now.
func (m *Message) body() io.Reader {
	if m.pieces == nil {
		return io.NewSectionReader(m.data.ReaderAt(), m.headerLen, m.data.Size()-m.headerLen)
	}
	readers := make([]io.Reader, 0, len(m.pieces))
	for _, p := range m.pieces {
		if p.b != nil {
			readers = append(readers, bytes.NewReader(p.b))
		} else {
			readers = append(readers, io.NewSectionReader(m.data.ReaderAt(), p.off, p.n))
		}
	}
	return io.MultiReader(readers...)
}
