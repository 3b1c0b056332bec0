package mbox

import (
	"bytes"
	"net/mail"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

// looksLikeFromLine reports whether a line starting "From " has the shape
// of a From_ line: a time of day and a year after the sender, as in
// "From joe@example.org Sat Nov 21 10:00:00 2026" and Takeout's
// "From 1789…@xxx Sat Nov 21 10:00:00 +0000 2026". A "From " line after a
// blank line is a From_ line whatever its shape (every writer quotes the
// body's); one after any other line only if it has this shape, as mutt
// requires, so that an unquoted "From the desk of…" in a body that some
// writer forgot to quote does not split its message.
func looksLikeFromLine(line []byte) bool {
	rest := trimLineEnd(line[len(fromPrefix):])
	// The sender is the first word; what follows must hold the date.
	if i := bytes.IndexByte(rest, ' '); i >= 0 {
		rest = rest[i+1:]
	} else {
		return false
	}
	clock, year := false, false
	for len(rest) > 0 {
		var w []byte
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			w, rest = rest[:i], rest[i+1:]
		} else {
			w, rest = rest, nil
		}
		clock = clock || isClock(w)
		year = year || isYear(w)
	}
	return clock && year
}

// isClock reports whether w is "h:mm" or "hh:mm:ss" (or "hh:mm").
func isClock(w []byte) bool {
	i := bytes.IndexByte(w, ':')
	if i < 1 || i > 2 || len(w) < i+3 || !digits(w[:i]) || !digits(w[i+1:i+3]) {
		return false
	}
	switch rest := w[i+3:]; {
	case len(rest) == 0:
		return true
	case len(rest) == 3 && rest[0] == ':':
		return digits(rest[1:])
	}
	return false
}

func isYear(w []byte) bool { return len(w) == 4 && digits(w) }

func digits(w []byte) bool {
	for _, c := range w {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(w) > 0
}

// fromSender is the envelope sender of a From_ line.
func fromSender(line string) string {
	rest, ok := strings.CutPrefix(line, "From ")
	if !ok {
		return ""
	}
	rest = strings.TrimLeft(rest, " ")
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		return rest[:i]
	}
	return rest
}

// fromLayouts are the dates From_ lines carry: asctime (mutt, procmail,
// Python, Thunderbird), with a zone before the year (Google Takeout) or
// after it.
var fromLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04 2006",
	"Mon, 2 Jan 2006 15:04:05 -0700",
}

// fromDate is the date of a From_ line; the zero time when it has none
// that can be read.
func fromDate(line string) time.Time {
	rest, ok := strings.CutPrefix(line, "From ")
	if !ok {
		return time.Time{}
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return time.Time{}
	}
	f = f[1:]
	// The two shapes nearly every file has, without trying the others.
	if len(f) >= 5 && isYear([]byte(f[4])) {
		if t, err := time.Parse(fromLayouts[0], strings.Join(f[:5], " ")); err == nil {
			return t
		}
	}
	if len(f) >= 6 && (f[4][0] == '+' || f[4][0] == '-') {
		if t, err := time.Parse(fromLayouts[1], strings.Join(f[:6], " ")); err == nil {
			return t
		}
	}
	// "remote from host" and the like may follow the date: the longest
	// run of words from the start that parses wins.
	for n := min(len(f), 6); n >= 4; n-- {
		s := strings.Join(f[:n], " ")
		for _, l := range fromLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// asctime is the From_ line's date format, always in UTC.
const asctime = "Mon Jan _2 15:04:05 2006"

// fromLine makes the From_ line (without line end) for msg: its envelope
// sender, else its Return-Path, else its From address, else
// MAILER-DAEMON (for the null sender too, as mail spools write it); and
// when it arrived at its source (the source's own date), else when
// mailflow read it, else now.
func fromLine(msg *message.Message, now time.Time) []byte {
	sender := msg.Envelope.Sender
	if sender == message.NullSender {
		sender = "MAILER-DAEMON"
	}
	if sender == "" {
		sender = strings.Trim(strings.TrimSpace(msg.Header.Get("Return-Path")), "<>")
	}
	if sender == "" {
		if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
			sender = a.Address
		}
	}
	if sender == "" || strings.ContainsFunc(sender, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		sender = "MAILER-DAEMON"
	}
	date := msg.InternalDate
	if date.IsZero() {
		date = msg.ReceivedAt
	}
	if date.IsZero() {
		date = now
	}
	b := make([]byte, 0, 5+len(sender)+1+len(asctime))
	b = append(b, "From "...)
	b = append(b, sender...)
	b = append(b, ' ')
	return date.UTC().AppendFormat(b, asctime)
}
