package smtpd

import (
	"net"
	"strconv"
	"strings"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/message"
)

// Postfix's XCLIENT and XFORWARD (www.postfix.org/XCLIENT_README.html,
// XFORWARD_README.html): a peer in trusted_networks that hands over mail
// it received itself, such as Postfix sending to its content_filter with
// smtp_send_xforward_command = yes, says who its own client was, so that
// the Received field and the scripts (msg.client) see that client.
// XFORWARD only describes the client of the next transaction; XCLIENT
// makes the session act as that client (whether it may relay is judged
// on the address it gives), and starts again at the greeting. Both are
// offered, and taken, from trusted peers only.

// Extensions implements smtp.CommandSession.
func (se *session) Extensions() []string {
	if !se.peerTrusted {
		return nil
	}
	return []string{"XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT", "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"}
}

// Command implements smtp.CommandSession.
func (se *session) Command(cmd, arg string) (restart bool, err error) {
	if cmd != "XCLIENT" && cmd != "XFORWARD" {
		return false, smtp.ErrCommandUnknown
	}
	if !se.peerTrusted {
		return false, se.fail(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Error: insufficient authorization"})
	}
	if se.from != "" {
		return false, se.fail(&smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: MAIL transaction in progress"})
	}
	c, ok := parseAttributes(arg, cmd == "XCLIENT")
	if !ok {
		return false, se.fail(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Bad " + cmd + " syntax"})
	}
	if cmd == "XFORWARD" {
		se.xforward = merge(se.xforward, c)
		return false, nil
	}
	se.xclient = merge(se.xclient, c)
	se.in.log.Debug("XCLIENT", "peer", se.raw.addr, "client", c.Address, "name", c.Name)
	return true, nil
}

// parseAttributes reads "NAME=value ADDR=value ..." (values xtext, RFC
// 3461; "[UNAVAILABLE]" and "[TEMPUNAVAIL]" say nothing). Attributes this
// does not keep (PORT, IDENT, SOURCE, DESTADDR, DESTPORT) are checked for
// syntax only.
func parseAttributes(arg string, xclient bool) (*message.Client, bool) {
	c := &message.Client{}
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return nil, false
	}
	for _, f := range fields {
		name, raw, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return nil, false
		}
		v, ok := xtext(raw)
		if !ok {
			return nil, false
		}
		if v == "[UNAVAILABLE]" || v == "[TEMPUNAVAIL]" {
			v = ""
		}
		switch strings.ToUpper(name) {
		case "NAME":
			c.Name = v
		case "ADDR":
			a := v
			if len(a) > 5 && strings.EqualFold(a[:5], "IPV6:") {
				a = a[5:]
			}
			if a != "" && net.ParseIP(a) == nil {
				return nil, false
			}
			c.Address = a
		case "HELO":
			c.Helo = v
		case "PROTO":
			c.Protocol = strings.ToUpper(v)
		case "LOGIN":
			if !xclient {
				return nil, false
			}
			c.Auth = v
		case "PORT", "DESTPORT":
			if v != "" {
				if _, err := strconv.ParseUint(v, 10, 16); err != nil {
					return nil, false
				}
			}
		case "IDENT", "SOURCE", "DESTADDR":
		default:
			return nil, false
		}
	}
	return c, true
}

// merge lays what a later command said over an earlier one.
func merge(old, c *message.Client) *message.Client {
	if old == nil {
		return c
	}
	m := *old
	for _, f := range []struct {
		dst *string
		src string
	}{{&m.Address, c.Address}, {&m.Name, c.Name}, {&m.Helo, c.Helo}, {&m.Protocol, c.Protocol}, {&m.Auth, c.Auth}} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	return &m
}

// xtext decodes RFC 3461 xtext ("+2B" is "+").
func xtext(s string) (string, bool) {
	if !strings.Contains(s, "+") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}
