package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/message"
)

// session is one client's SMTP or LMTP session from its HELO/EHLO/LHLO on
// (go-smtp makes a new one after STARTTLS): its mail transactions, each
// checked against the input's rules and spooled.
type session struct {
	s   *server
	in  *Input
	c   *smtp.Conn
	raw *conn

	// peerTrusted: the connection comes from trusted_networks (or a Unix
	// socket): it may send XCLIENT and XFORWARD, and the per-client
	// limits do not bind it.
	peerTrusted bool
	auth        string          // who the client authenticated as
	xclient     *message.Client // what XCLIENT said, for the rest of the session
	xforward    *message.Client // what XFORWARD said, for this transaction
	errors      int             // replies 4xx and 5xx, for max_errors

	from  string
	rcpts []string // as go-smtp counts them: every RCPT accepted, repeats included
}

func newSession(s *server, c *smtp.Conn) *session {
	raw := rawConn(c.Conn())
	if _, tlsOn := c.TLSConnectionState(); tlsOn {
		raw.plain.Store(false) // after STARTTLS
	}
	se := &session{s: s, in: s.in, c: c, raw: raw}
	se.peerTrusted = s.in.trustedAddr(raw.addr)
	return se
}

// trustedAddr reports whether a client address is in trusted_networks; a
// Unix socket's client (addr "") is trusted: only local users can reach it.
func (in *Input) trustedAddr(addr string) bool {
	if addr == "" {
		return true
	}
	ip := net.ParseIP(addr)
	return slices.ContainsFunc(in.trusted, func(n *net.IPNet) bool { return n.Contains(ip) })
}

// client is who the client is, as the Received field and the scripts see
// it: the connection, with what XCLIENT and then XFORWARD said over it.
func (se *session) client() message.Client {
	c := message.Client{Address: se.raw.addr, Helo: se.c.Hostname(), Auth: se.auth}
	tlsOn := false
	if st, ok := se.c.TLSConnectionState(); ok {
		tlsOn = true
		c.TLS = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
		c.TLS = strings.Replace(c.TLS, "TLS 1.", "TLSv1.", 1)
	}
	c.Protocol = protocol(se.in.lmtp, tlsOn, c.Auth != "")
	for _, x := range []*message.Client{se.xclient, se.xforward} {
		if x == nil {
			continue
		}
		c.Forwarded = true
		if x.Address != "" {
			c.Address = x.Address
		}
		if x.Name != "" {
			c.Name = x.Name
		}
		if x.Helo != "" {
			c.Helo = x.Helo
		}
		if x.Protocol != "" {
			c.Protocol = x.Protocol
		}
		if x.Auth != "" {
			c.Auth = x.Auth
		}
	}
	return c
}

// protocol is the RFC 3848 "with" keyword of a session.
func protocol(lmtp, tlsOn, auth bool) string {
	p := "ESMTP"
	if lmtp {
		p = "LMTP"
	}
	if tlsOn {
		p += "S"
	}
	if auth {
		p += "A"
	}
	return p
}

// mayRelay reports whether the client may send to any recipient: it is
// in trusted_networks (as XCLIENT made it), or it authenticated.
func (se *session) mayRelay() bool {
	if se.auth != "" {
		return true
	}
	if se.xclient != nil {
		return se.xclient.Auth != "" || (se.xclient.Address != "" && se.in.trustedAddr(se.xclient.Address))
	}
	return se.peerTrusted
}

// fail counts a refusal toward max_errors; past it the client is told so
// and hung up on.
func (se *session) fail(err *smtp.SMTPError) *smtp.SMTPError {
	se.errors++
	if se.in.maxErrs > 0 && se.errors >= se.in.maxErrs {
		if se.errors == se.in.maxErrs {
			se.in.log.Warn("client hung up on: too many errors", "client", se.raw.addr, "errors", se.errors, "last", err.Message)
		}
		se.raw.hangUp()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: se.in.Hostname + " Error: too many errors"}
	}
	return err
}

// Mail implements smtp.Session: a transaction starts if the input can take
// mail now and from this client.
func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	in := se.in
	if se.s.isClosing() {
		se.raw.hangUp()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	}
	if _, tlsOn := se.c.TLSConnectionState(); in.RequireTLS && !tlsOn {
		return se.fail(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"})
	}
	if in.RequireAuth && se.auth == "" {
		return se.fail(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"})
	}
	if why := in.roomFor(se.s.spool, opts.Size); why != "" {
		in.log.Warn("mail refused for now: "+why, "client", se.raw.addr)
		return se.fail(&smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage"})
	}
	if !se.peerTrusted && !se.s.l.clients.message(se.raw.addr, in.msgRate) {
		in.log.Warn("mail refused for now: message_rate_per_client", "client", se.raw.addr)
		return se.fail(&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Error: too much mail from " + se.raw.addr})
	}
	se.from = from
	se.raw.busy.Store(true)
	return nil
}

// Rcpt implements smtp.Session: the recipient must be one the input
// accepts (accept_recipients, accept_domains), or the client one that
// may send anywhere (trusted, or authenticated).
func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	in := se.in
	if in.maxRcpt > 0 && len(se.rcpts) >= in.maxRcpt {
		return se.fail(&smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Error: too many recipients"})
	}
	if !in.accepts(to) && !se.mayRelay() {
		if len(in.acceptRcpt)+len(in.acceptDomain) > 0 {
			in.log.Info("recipient refused: not in accept_recipients or accept_domains", "client", se.raw.addr, "recipient", to)
			return se.fail(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf("<%s>: Recipient address rejected: not accepted here", to)})
		}
		in.log.Info("recipient refused: the client may not relay", "client", se.raw.addr, "recipient", to)
		return se.fail(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("<%s>: Relay access denied", to)})
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

// accepts reports whether to is a recipient the input takes from anyone.
func (in *Input) accepts(to string) bool {
	to = strings.ToLower(to)
	return in.acceptRcpt[to] || in.acceptDomain[to[strings.LastIndexByte(to, '@')+1:]]
}

// Data implements smtp.Session.
func (se *session) Data(r io.Reader) error {
	en, err := se.receive(r)
	if err != nil {
		return err
	}
	if !se.in.afterDelivery {
		return queued(en.id)
	}
	if f := se.in.wait(se.s.spool, en); f.reply != nil {
		return f.reply
	}
	return queued(en.id)
}

// LMTPData implements smtp.LMTPSession: a reply per recipient (RFC 2033).
func (se *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	en, err := se.receive(r)
	if err != nil {
		return err
	}
	var f fate
	if se.in.afterDelivery {
		f = se.in.wait(se.s.spool, en)
	}
	ok := queued(en.id)
	for _, rcpt := range se.rcpts {
		var reply error = ok
		switch {
		case f.perRcpt != nil:
			for r, e := range f.perRcpt {
				if strings.EqualFold(r, rcpt) {
					reply = e
				}
			}
		case f.reply != nil:
			reply = f.reply
		}
		status.SetStatus(rcpt, reply)
	}
	return nil
}

// queued is the 250 reply for a message taken: go-smtp sends an
// SMTPError's code as it is, and Postfix logs the "queued as" id, by which
// a message is found in mailflow's log.
func queued(id string) error {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// receive writes the message into the spool, durably, with the Received
// field in front. A message not taken whole (too large, the client gone
// mid-DATA, the disk full) leaves nothing behind.
func (se *session) receive(r io.Reader) (*entry, error) {
	in := se.in
	rcvd := &message.Received{Sender: se.from, Recipients: uniqueFold(se.rcpts), Client: se.client()}
	if rcvd.Sender == "" {
		rcvd.Sender = message.NullSender
	}
	sp, err := se.s.spool.create(rcvd, in.afterDelivery)
	if err != nil {
		in.log.Error("cannot spool a message", "err", err)
		return nil, tempFail("4.3.0", "cannot store the message now, try again later")
	}
	if _, err := sp.Message.Write(receivedField(in.Hostname, sp.id, rcvd, time.Now())); err != nil {
		sp.abort()
		return nil, tempFail("4.3.0", "cannot store the message now, try again later")
	}
	dr := &dataReader{r: r, c: se.raw, timeout: in.timeout, rate: in.minDataRate, start: time.Now()}
	dr.extend()
	buf := make([]byte, 32<<10)
	_, err = io.CopyBuffer(sp.Message, dr, buf)
	var werr *writeError
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		sp.abort()
		// go-smtp reads the rest to the final dot and drops it: give it the
		// time that takes at min_data_rate.
		dr.extend()
		in.log.Warn("message refused: over max_message_size", "client", se.raw.addr, "max", in.maxSize)
		return nil, smtp.ErrDataTooLarge
	case errors.As(err, &werr):
		sp.abort()
		in.log.Error("cannot spool a message", "err", werr.err)
		return nil, tempFail("4.3.0", "cannot store the message now, try again later")
	case err != nil:
		sp.abort()
		in.log.Info("client gone before the end of its message; nothing was kept", "client", se.raw.addr, "err", err)
		return nil, err
	}
	en, err := sp.commit()
	if err != nil {
		in.log.Error("cannot spool a message", "err", err)
		return nil, tempFail("4.3.0", "cannot store the message now, try again later")
	}
	in.log.Info("received", "id", en.id, "client", rcvd.Client.Address, "helo", rcvd.Client.Helo, "from", rcvd.Sender,
		"recipients", len(rcvd.Recipients), "bytes", en.size, "tls", rcvd.Client.TLS != "", "auth", rcvd.Client.Auth)
	return en, nil
}

// uniqueFold drops repeated recipients (the same address in another case
// included), keeping the first spelling.
func uniqueFold(rcpts []string) []string {
	out := make([]string, 0, len(rcpts))
	for _, r := range rcpts {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, r) }) {
			out = append(out, r)
		}
	}
	return out
}

// dataReader reads a message's data with a deadline that moves with it:
// timeout from the start, plus a second for every min_data_rate bytes
// received (Postfix's smtpd_min_data_rate), so that a client that sends
// a byte now and then (slow loris) is cut off, and a large message at a
// fair rate is not. Errors writing the spool are told apart (writeError).
type dataReader struct {
	r       io.Reader
	c       *conn
	timeout time.Duration
	rate    int
	start   time.Time
	n       int64
}

func (d *dataReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.n += int64(n)
	if n > 0 {
		d.extend()
	}
	return n, err
}

// extend sets the read deadline for what was received so far.
func (d *dataReader) extend() {
	if d.rate <= 0 {
		d.c.SetReadDeadline(time.Now().Add(d.timeout))
		return
	}
	d.c.SetReadDeadline(d.start.Add(d.timeout + time.Duration(d.n)*time.Second/time.Duration(d.rate)))
}

// writeError is an error writing the spool, not reading the client.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// Reset implements smtp.Session: the transaction ends (after DATA, RSET,
// a new EHLO); a stopping server hangs up now.
func (se *session) Reset() {
	se.from, se.rcpts, se.xforward = "", nil, nil
	se.raw.busy.Store(false)
	if se.s.isClosing() {
		se.raw.hangUp()
	}
}

// Logout implements smtp.Session.
func (se *session) Logout() error { return nil }

var (
	_ smtp.Session        = (*session)(nil)
	_ smtp.LMTPSession    = (*session)(nil)
	_ smtp.AuthSession    = (*session)(nil)
	_ smtp.CommandSession = (*session)(nil)
)
