package message

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
)

// Part is one MIME entity of a message, where its bytes are in the body as
// it is now (offsets from the body's first byte), so that a filter can read
// one part and replace it without touching the others.
type Part struct {
	// Index is the part's place among all parts, in order; Parent is the
	// index of the multipart that holds it (-1 for the message itself).
	Index, Parent int
	// Depth is 0 for the message itself.
	Depth int
	// Header is the part's header (the message's for the message itself).
	Header Header
	// ContentType is the media type, lowercase ("text/plain" when not
	// given); Params its parameters (charset, name, boundary).
	ContentType string
	Params      map[string]string
	// Disposition is "inline", "attachment" or "", and Filename the file
	// name from the disposition or, failing that, the type's name.
	Disposition string
	Filename    string
	// Encoding is the Content-Transfer-Encoding, lowercase ("7bit" when not
	// given).
	Encoding string
	// HeaderStart, BodyStart and BodyEnd locate the part: its header from
	// HeaderStart (for the message itself there is none in the body: 0),
	// its body from BodyStart up to BodyEnd (the line end before the next
	// boundary belongs to the boundary, RFC 2046 5.1.1).
	HeaderStart, BodyStart, BodyEnd int64
	// Signed is true for a part under multipart/signed, or of an encrypted
	// type: changing its bytes would break the signature.
	Signed bool
	// LineEnd is the line end the part's header uses ("\r\n" or "\n").
	LineEnd string
}

// IsMultipart reports whether the part holds other parts.
func (p *Part) IsMultipart() bool { return strings.HasPrefix(p.ContentType, "multipart/") }

// maxPartHeader bounds the header of one part; a larger one is kept as
// bytes but not parsed.
const maxPartHeader = 64 << 10

// maxParts bounds how many parts are listed.
const maxParts = 10_000

// ErrTooManyParts is returned by Parts past maxParts.
var ErrTooManyParts = errors.New("message: more than 10000 MIME parts")

// Parts lists the message's MIME parts, the message itself first. It reads
// the body once, line by line, holding no more than one part header. A
// message whose structure is broken (a missing closing boundary) still
// lists what it has: the open parts end where the body ends.
func (m *Message) Parts() ([]Part, error) {
	top := newPart(m.Header, 0, -1, 0)
	top.LineEnd = "\r\n"
	if crlf, bareLF := m.LineEnds(); crlf == 0 && bareLF > 0 {
		top.LineEnd = "\n"
	}
	parts := []Part{top}
	type frame struct {
		boundary string
		owner    int // the multipart part's index
	}
	var stack []frame
	const (
		inBody = iota // a leaf's body, a preamble or an epilogue
		inHeader
	)
	mode := inBody
	if top.IsMultipart() && top.Params["boundary"] != "" {
		stack = append(stack, frame{top.Params["boundary"], 0})
	}
	open := []int{0} // parts whose body has not ended, outermost first
	var head bytes.Buffer
	headTooBig := false
	cur := 0 // the part whose header is being read

	r := bufio.NewReaderSize(m.body(), 32<<10)
	var at int64
	prevEOL := int64(0) // length of the line end that ended the line before
	for {
		content, n, eol, err := scanLine(r)
		start := at
		at += n
		if n == 0 && err != nil {
			if err != io.EOF {
				return parts, err
			}
			break
		}

		if mode == inHeader {
			if len(content) == 0 {
				p := &parts[cur]
				var hdr Header
				if head.Len() > 0 && !headTooBig {
					if h, _, herr := readHeader(bytes.NewReader(head.Bytes()), maxPartHeader); herr == nil {
						hdr = h
					}
				}
				parent, depth, hs := p.Parent, p.Depth, p.HeaderStart
				*p = newPart(hdr, cur, parent, depth)
				p.HeaderStart, p.BodyStart = hs, at
				p.Signed = p.Signed || parts[parent].Signed || parts[parent].ContentType == "multipart/signed"
				p.LineEnd = "\r\n"
				if eol == 1 {
					p.LineEnd = "\n"
				}
				if p.IsMultipart() && p.Params["boundary"] != "" {
					stack = append(stack, frame{p.Params["boundary"], cur})
				}
				mode = inBody
				head.Reset()
				headTooBig = false
			} else if head.Len()+len(content)+2 <= maxPartHeader && int64(len(content)) == n-eol {
				head.Write(content)
				head.WriteString("\r\n")
			} else {
				headTooBig = true
			}
			prevEOL = eol
			continue
		}

		// A delimiter line closes the parts opened inside its multipart.
		if bytes.HasPrefix(content, []byte("--")) && len(stack) > 0 {
			for i := len(stack) - 1; i >= 0; i-- {
				b := stack[i].boundary
				rest := bytes.TrimRight(content[2:], " \t")
				closing := bytes.Equal(rest, []byte(b+"--"))
				if !closing && !bytes.Equal(rest, []byte(b)) {
					continue
				}
				end := start - prevEOL // the line end before belongs to the delimiter
				end = max(end, 0)
				owner := stack[i].owner
				for len(open) > 0 && open[len(open)-1] != owner {
					parts[open[len(open)-1]].BodyEnd = max(end, parts[open[len(open)-1]].BodyStart)
					open = open[:len(open)-1]
				}
				stack = stack[:i+1]
				if closing {
					stack = stack[:i]
					break
				}
				if len(parts) >= maxParts {
					return parts, ErrTooManyParts
				}
				child := Part{Index: len(parts), Parent: owner, Depth: parts[owner].Depth + 1, HeaderStart: at, BodyStart: at}
				parts = append(parts, child)
				open = append(open, child.Index)
				cur = child.Index
				mode = inHeader
				break
			}
		}
		prevEOL = eol
		if err != nil {
			break
		}
	}
	for _, i := range open {
		parts[i].BodyEnd = max(at, parts[i].BodyStart)
	}
	if mode == inHeader {
		// The body ended in a part's header: it has no body.
		parts[cur].BodyStart, parts[cur].BodyEnd = at, at
	}
	return parts, nil
}

// scanLine reads one line: its first bytes (at most lineKeep, enough for
// any delimiter or header line worth parsing), its full length with its
// line end, and the length of that line end. A body line is never kept
// whole: a 100 MB base64 line costs a buffer, not 100 MB.
func scanLine(r *bufio.Reader) (head []byte, n, eol int64, err error) {
	var keep []byte
	for {
		chunk, e := r.ReadSlice('\n')
		n += int64(len(chunk))
		if len(keep) < lineKeep {
			keep = append(keep, chunk[:min(len(chunk), lineKeep-len(keep))]...)
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		err = e
		// The line end: LF or CRLF at the end of the last chunk.
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			eol = 1
			if len(chunk) > 1 && chunk[len(chunk)-2] == '\r' {
				eol = 2
			}
		}
		break
	}
	// Trim the line end from what is kept, if it was kept.
	if int64(len(keep)) == n {
		keep = keep[:len(keep)-int(eol)]
	} else if int64(len(keep)) > n-eol {
		keep = keep[:n-eol]
	}
	return keep, n, eol, err
}

const lineKeep = 4 << 10

// newPart reads what a part's header says about it.
func newPart(h Header, index, parent, depth int) Part {
	p := Part{Index: index, Parent: parent, Depth: depth, Header: h, ContentType: "text/plain", Encoding: "7bit"}
	if ct := h.Get("Content-Type"); ct != "" {
		if t, params, err := mime.ParseMediaType(ct); err == nil {
			p.ContentType, p.Params = strings.ToLower(t), params
		} else if t, _, _ := strings.Cut(ct, ";"); strings.Contains(t, "/") {
			p.ContentType = strings.ToLower(strings.TrimSpace(t))
		}
	}
	if p.Params == nil {
		p.Params = map[string]string{}
	}
	if cd := h.Get("Content-Disposition"); cd != "" {
		if d, params, err := mime.ParseMediaType(cd); err == nil {
			p.Disposition = strings.ToLower(d)
			p.Filename = params["filename"]
		} else {
			d, _, _ := strings.Cut(cd, ";")
			p.Disposition = strings.ToLower(strings.TrimSpace(d))
		}
	}
	if p.Filename == "" {
		p.Filename = p.Params["name"]
	}
	if p.Filename != "" {
		if dec, err := new(mime.WordDecoder).DecodeHeader(p.Filename); err == nil {
			p.Filename = dec
		}
	}
	if e := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); e != "" {
		p.Encoding = e
	}
	switch p.ContentType {
	case "multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime":
		p.Signed = true
	}
	return p
}
