package smtpd

import (
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

// receivedField is the trace field mailflow puts in front of a message it
// receives (RFC 5321 4.4), in Postfix's layout, which people and tools
// read:
//
//	Received: from HELO (NAME [ADDRESS])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)
//		by HOST (mailflow) with ESMTPS id ID
//		for <RCPT>; DATE
//
// The recipient is named only when there is one (more would tell each
// recipient of a Bcc the others). No name is looked up: NAME is what a
// trusted peer said (XCLIENT, XFORWARD), else "unknown". Its loop count
// is what max_hops counts.
func receivedField(host, id string, r *message.Received, now time.Time) []byte {
	c := r.Client
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(traceWord(c.Helo, "unknown"))
	if c.Address != "" {
		name := traceWord(c.Name, "unknown")
		b.WriteString(" (" + name + " [" + c.Address + "])")
	}
	if c.TLS != "" {
		version, cipher, _ := strings.Cut(c.TLS, " ")
		b.WriteString("\r\n\t(using " + version + " with cipher " + cipher + ")")
	}
	b.WriteString("\r\n\tby " + traceWord(host, "localhost") + " (mailflow) with " + traceWord(c.Protocol, "ESMTP") + " id " + id)
	if len(r.Recipients) == 1 && traceSafe(r.Recipients[0]) {
		b.WriteString("\r\n\tfor <" + r.Recipients[0] + ">")
	}
	b.WriteString("; " + now.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)") + "\r\n")
	return []byte(b.String())
}

// traceWord makes s safe as one word of a Received field: printable
// ASCII without spaces, parentheses, semicolons or angle brackets (those
// would change what the field says; square ones stay, for a HELO address
// literal "[192.0.2.1]"), at most 255 bytes; def when nothing is left.
func traceWord(s, def string) string {
	out := []byte(s)
	if len(out) > 255 {
		out = out[:255]
	}
	for i, ch := range out {
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte("();\\\"<>", ch) >= 0 {
			out[i] = '_'
		}
	}
	if len(out) == 0 {
		return def
	}
	return string(out)
}

// traceSafe reports whether an address can stand in "for <...>" as it is.
func traceSafe(addr string) bool {
	return addr != "" && len(addr) <= 320 && !strings.ContainsAny(addr, "\r\n<>;()")
}
