package message

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// IdentityDomain ends every identity made for a message without a
// Message-ID; ".invalid" (RFC 2606) so that it can never be a real one.
const IdentityDomain = "mailflow.invalid"

// Identity is what names a message across mailboxes, for a migration's
// "is it already there?" and its closing verification: the Message-ID
// (without angle brackets) when the header has one; otherwise, as
// imapsync's --useheader does, a digest of the Date, From and Subject
// fields and the size, written like a Message-ID ("HEX@mailflow.invalid")
// so that a copy given that Message-ID (migrate --add-message-id) is still
// found under it.
func Identity(h *Header, size int64) string {
	if id := strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>"); id != "" {
		return id
	}
	return MadeIdentity(h, size)
}

// MadeIdentity is the identity of a message without a Message-ID.
func MadeIdentity(h *Header, size int64) string {
	d := sha256.New()
	fmt.Fprintf(d, "%s\x00%s\x00%s\x00%d", h.Get("Date"), h.Get("From"), h.Get("Subject"), size)
	return hex.EncodeToString(d.Sum(nil)[:16]) + "@" + IdentityDomain
}

// HeaderIdentity is Identity over a header block given as bytes (what an
// IMAP server returns for BODY.PEEK[HEADER.FIELDS (...)]), for listings that
// do not fetch the whole message.
func HeaderIdentity(block []byte, size int64) string {
	h, _, err := readHeader(bytes.NewReader(block), int64(len(block))+1)
	if err != nil {
		return MadeIdentity(&Header{}, size)
	}
	return Identity(&h, size)
}

// Identity is the message's Identity as it is now (after any header edit).
func (m *Message) Identity() string { return Identity(&m.Header, m.Size()) }
