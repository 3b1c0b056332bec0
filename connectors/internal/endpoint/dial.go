package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Dial connects to address within timeout and, when cfg is not nil, does
// the TLS handshake at once (implicit TLS), also within timeout. wrap, when
// not nil, wraps the TCP connection before anything is said on it, under
// the TLS if any (IMAP's watchdog counts the bytes).
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
		return nil, err
	}
	return tc, nil
}

// StartTLS does the TLS handshake on conn within timeout, once the
// protocol's own STARTTLS or STLS command was answered yes; the caller
// makes sure first that the server sent nothing after its answer (bytes
// read before the handshake must not pass for TLS-protected ones).
func StartTLS(conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg)
	if timeout > 0 {
		tc.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// Dial connects to the server, with TLS from the first byte when tls =
// "implicit", and returns the connection for the protocol's greeting; with
// tls = "starttls" the connector upgrades it after its own STARTTLS or
// STLS, with TLSConfig. A server that answers the handshake in clear gets
// an error that says which mode its port wants. wrap is as for the
// function Dial.
func (s *Settings) Dial(ctx context.Context, wrap func(net.Conn) net.Conn) (net.Conn, error) {
	var cfg *tls.Config
	if s.TLS == "implicit" {
		cfg = s.tlsCfg
		if len(s.proto.ALPN) > 0 && cfg.NextProtos == nil {
			cfg = cfg.Clone()
			cfg.NextProtos = s.proto.ALPN
		}
	}
	conn, err := Dial(ctx, s.Address, cfg, s.timeout, wrap)
	var rh tls.RecordHeaderError
	if err != nil && cfg != nil && errors.As(err, &rh) && s.proto.StartTLSPort != "" {
		def := ""
		if s.proto.DefaultTLS == "implicit" {
			def = ", the default,"
		}
		return nil, fmt.Errorf("%w (the server answered in clear: for port %s set tls = \"starttls\"; tls = \"implicit\"%s is for port %s)",
			err, s.proto.StartTLSPort, def, s.proto.ImplicitPort)
	}
	return conn, err
}
