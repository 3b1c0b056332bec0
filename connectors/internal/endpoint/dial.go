package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// Dial connects to address within timeout and, when cfg is not nil, does
// the TLS handshake at once (implicit TLS), also within timeout. wrap, when
// not nil, wraps the TCP connection before anything is said on it, under
// the TLS if any (IMAP's watchdog counts the bytes). A certificate that
// was not accepted is said in words that name the key to set.
func Dial(ctx context.Context, address string, cfg *tls.Config, timeout time.Duration, wrap func(net.Conn) net.Conn) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	if wrap != nil {
		conn = wrap(conn)
	}
	if cfg == nil {
		return conn, nil
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, tlsWords(err, cfg)
	}
	return tc, nil
}

// StartTLS does the TLS handshake on conn within timeout, once the
// protocol's own STARTTLS or STLS command was answered yes; the caller
// makes sure first that the server sent nothing after its answer (bytes
// read before the handshake must not pass for TLS-protected ones). A
// certificate that was not accepted is said in words, as by Dial.
func StartTLS(conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg)
	if timeout > 0 {
		tc.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		return nil, tlsWords(err, cfg)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// Dial connects to the server, with TLS from the first byte when tls =
// "implicit", and returns the connection for the protocol's greeting; with
// tls = "starttls" the connector upgrades it after its own STARTTLS or
// STLS, with TLSConfig. wrap is as for the function Dial.
//
// A port that wants the other mode is told within a second or so, with
// the fix (a ModeError): a server that answers the handshake in plain
// text wants tls = "starttls"; one that, in clear, says nothing and
// answers a TLS handshake on a second connection wants tls = "implicit"
// (awaitGreeting).
func (s *Settings) Dial(ctx context.Context, wrap func(net.Conn) net.Conn) (net.Conn, error) {
	if s.TLS != "implicit" {
		conn, err := Dial(ctx, s.Address, nil, s.timeout, wrap)
		if err != nil {
			return nil, err
		}
		return s.awaitGreeting(ctx, conn)
	}
	cfg := s.tlsCfg
	if len(s.proto.ALPN) > 0 && cfg.NextProtos == nil {
		cfg = cfg.Clone()
		cfg.NextProtos = s.proto.ALPN
	}
	conn, err := Dial(ctx, s.Address, cfg, s.timeout, wrap)
	var rh tls.RecordHeaderError
	if err != nil && errors.As(err, &rh) {
		return nil, s.greetsInClear(rh.RecordHeader[:], err)
	}
	return conn, err
}
