// Package labels is what Gmail's labels become where IMAP has no labels,
// the same for every connector that reads them (a Takeout mbox, Gmail's
// own IMAP view), so that one account moved either way ends the same.
package labels

import "strings"

// Keyword makes an IMAP keyword of a label: an atom (RFC 3501), so a space
// and what an atom cannot hold (non-ASCII, "(){%*\"\\]") each become "_".
func Keyword(label string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(label) {
		if r > 0x20 && r < 0x7f && !strings.ContainsRune(`(){%*"\]`, r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
