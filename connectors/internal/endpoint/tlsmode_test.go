package endpoint

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// server is a listener on 127.0.0.1 that hands each connection, with its
// number (0 for the first), to serve, and closes every connection when the
// test ends.
type server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newServer(t *testing.T, cfg *tls.Config, serve func(n int, c net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln}
	if cfg != nil {
		s.ln = tls.NewListener(ln, cfg)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serve(n, c) }()
		}
	}()
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// greetTLS serves implicit TLS: the handshake, then a POP3 greeting.
func greetTLS(_ int, c net.Conn) {
	if c.(*tls.Conn).Handshake() == nil {
		c.Write([]byte("+OK POP3 ready\r\n"))
	}
	c.Read(make([]byte, 1)) // until the client goes
}

func settings(t *testing.T, address, mode string, opts ...func(*Settings)) *Settings {
	t.Helper()
	s := &Settings{Address: address, TLS: mode, Username: "u", Password: "p", AllowPlaintextAuth: true, Timeout: "60s"}
	for _, o := range opts {
		o(s)
	}
	if err := s.Init(pop3ish); err != nil {
		t.Fatal(err)
	}
	return s
}

// A client in clear (tls = "starttls" or "none") on a port of implicit TLS
// waits for a greeting that never comes in clear: it is told so, and the
// fix, long before the timeout of 60 s (the 20 s context would end a wait
// that went on).
func TestPlainClientOnATLSPortIsToldToSetImplicit(t *testing.T) {
	t.Parallel()
	cert, _ := enginetest.TLSCert(t)
	srv := newServer(t, &tls.Config{Certificates: []tls.Certificate{cert}}, greetTLS)
	for _, mode := range []string{"starttls", "none"} {
		t.Run(mode, func(t *testing.T) {
			s := settings(t, srv.addr(), mode)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := s.Dial(ctx, nil)
			if err == nil {
				c.Close()
				t.Fatal("a port of implicit TLS was taken for one in clear")
			}
			want := `the server speaks TLS at once, with no greeting in plain text: set tls = "implicit"`
			if mode == "starttls" {
				want += ` (tls = "starttls" is for port 110)`
			}
			var me *ModeError
			if err.Error() != want || !errors.As(err, &me) || me.Want != "implicit" {
				t.Fatalf("got %v\nwant %s", err, want)
			}
			if ctx.Err() != nil {
				t.Fatal("it waited out the context")
			}
		})
	}
}

// A plain server that greets only after greetWait is waited for, whatever
// the probe hears (here: nothing, the server holds the second connection
// silent), and its greeting reaches the connector whole.
func TestSlowGreetingInClearIsWaitedFor(t *testing.T) {
	t.Parallel()
	probe := make(chan []byte, 1)
	srv := newServer(t, nil, func(n int, c net.Conn) {
		if n > 0 {
			b := make([]byte, 3)
			_, err := c.Read(b)
			if err == nil {
				probe <- b
			}
			c.Read(make([]byte, 1))
			return
		}
		time.Sleep(greetWait + 500*time.Millisecond)
		c.Write([]byte("+OK slow but here\r\n"))
		c.Read(make([]byte, 1))
	})
	s := settings(t, srv.addr(), "starttls")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+OK slow but here\r\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	select {
	case b := <-probe:
		if !looksLikeTLS(b) {
			t.Fatalf("the probe sent %q, not the start of a TLS handshake", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no probe after a second of silence")
	}
}

// A plain server that says nothing, and answers the probe in clear, is
// waited for until the timeout, which is then named; a context that ends
// first ends the wait.
func TestSilentServerInClearTimesOutOrStopsWithTheContext(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil, func(_ int, c net.Conn) {
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err == nil && looksLikeTLS(b) {
			c.Write([]byte("-ERR what?\r\n")) // the probe
		}
		c.Read(make([]byte, 1))
	})
	s := settings(t, srv.addr(), "none", func(s *Settings) { s.Timeout = "1500ms" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "the server sent no greeting within 1.5s") || !isTimeout(err) {
		t.Fatalf("got %v", err)
	}

	s = settings(t, srv.addr(), "none")
	ctx, cancel = context.WithTimeout(context.Background(), greetWait+time.Second)
	defer cancel()
	if _, err := s.Dial(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's end", err)
	}
}

// A server in clear that closes at once: the connector reads the end where
// it reads the greeting, as before.
func TestServerClosingAtOnceIsTheConnectorsToRead(t *testing.T) {
	srv := newServer(t, nil, func(_ int, c net.Conn) { c.Close() })
	s := settings(t, srv.addr(), "none")
	c, err := s.Dial(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatal("read from a closed connection")
	}
}

// testCA makes a CA, writes it to a PEM file, and signs a leaf for
// 127.0.0.1 valid from notBefore to notAfter.
func testCA(t *testing.T, notBefore, notAfter time.Time) (tls.Certificate, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: notBefore, NotAfter: notAfter,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificate(der)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, caFile
}

// A certificate that is not accepted is said in words that name the key
// that fixes it, on an implicit TLS connection and after STARTTLS alike.
func TestCertificateErrorsNameTheKeyToSet(t *testing.T) {
	t.Parallel()
	now := time.Now()
	good, goodCA := testCA(t, now.Add(-time.Hour), now.Add(time.Hour))
	_, otherCA := testCA(t, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredCA := testCA(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	cases := []struct {
		name string
		cert tls.Certificate
		opts func(*Settings)
		want []string // the words in order, after "the server's certificate "
	}{
		{"self-signed or private CA", good, func(*Settings) {}, []string{
			"is signed by an authority this machine does not trust (x509: certificate signed by unknown authority)",
			": for a private CA or a self-signed certificate, set tls_ca_file to its PEM file"}},
		{"another CA in tls_ca_file", good, func(s *Settings) { s.CAFile = otherCA }, []string{
			"is not signed by the CA in tls_ca_file (x509: certificate signed by unknown authority",
			": set tls_ca_file to the PEM file of the CA that signed it"}},
		{"another name", good, func(s *Settings) { s.CAFile, s.ServerName = goodCA, "mail.example.com" }, []string{
			`is for 127.0.0.1, not mail.example.com: set tls_server_name = "127.0.0.1", or give that name in address`}},
		{"expired", expired, func(s *Settings) { s.CAFile = expiredCA }, []string{
			"expired on " + expired.Leaf.NotAfter.UTC().Format(time.DateTime+" MST"),
			": the server must renew it, or this machine's clock is wrong"}},
	}
	says := func(err error, want []string) bool {
		if err == nil {
			return false
		}
		rest, ok := strings.CutPrefix(err.Error(), "the server's certificate ")
		for _, w := range want {
			i := strings.Index(rest, w)
			if !ok || i < 0 {
				return false
			}
			rest = rest[i+len(w):]
		}
		return ok
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, &tls.Config{Certificates: []tls.Certificate{c.cert}}, greetTLS)
			s := settings(t, srv.addr(), "implicit", c.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := s.Dial(ctx, nil)
			if !says(err, c.want) {
				t.Fatalf("got %v\nwant the server's certificate %q", err, c.want)
			}
			var ve *tls.CertificateVerificationError
			if !errors.As(err, &ve) {
				t.Fatal("the certificate error is no longer wrapped")
			}

			// After STARTTLS: the same words.
			plain := newServer(t, nil, func(_ int, conn net.Conn) {
				tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{c.cert}}).Handshake()
			})
			conn, err := net.Dial("tcp", plain.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = StartTLS(conn, s.TLSConfig(), 10*time.Second)
			if !says(err, c.want) {
				t.Fatalf("after STARTTLS: got %v\nwant the server's certificate %q", err, c.want)
			}
		})
	}
}
