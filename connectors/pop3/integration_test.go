//go:build integration

package pop3_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/pop3"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// dovecotJob is a POP3 → Maildir job against the real Dovecot.
func dovecotJob(t *testing.T, srv *enginetest.Servers, user, address, tlsMode, extra string) *job {
	return newJob(t, address, fmt.Sprintf("tls = %q\ntls_ca_file = %q\nusername = %q\npassword = %q\n%s",
		tlsMode, srv.CA, user, srv.Password, extra), true)
}

func TestDovecotThousandMessages(t *testing.T) {
	srv := enginetest.RealServers(t)
	msgs := enginetest.CRLF(enginetest.Mix(1000))
	// u2 is the IMAP tests' source mailbox, read while this package's
	// tests run; u3 is this package's (TestDovecotKeepModeFetchesOnce
	// seeds it again).
	cases := []struct{ name, user, addr, tls string }{
		{"STLS", "u1", srv.POP3, "starttls"},
		{"implicit TLS", "u3", srv.POP3S, "implicit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv.SeedPOP3(t, c.user, msgs)
			j := dovecotJob(t, srv, c.user, c.addr, c.tls, "")
			start := time.Now()
			st, err := j.poll()
			if err != nil || st.Delivered != 1000 {
				t.Fatalf("%v %v", st, err)
			}
			t.Logf("%s: 1000 messages in %v", c.name, time.Since(start).Round(time.Millisecond))
			assertExactlyOnce(t, msgs, j.delivered())
			if n := srv.POP3Count(c.user); n != 0 {
				t.Fatalf("%d messages left in the mailbox", n)
			}
		})
	}
}

func TestDovecotKeepModeFetchesOnce(t *testing.T) {
	srv := enginetest.RealServers(t)
	msgs := enginetest.CRLF(enginetest.Mix(50))
	srv.SeedPOP3(t, "u3", msgs)
	j := dovecotJob(t, srv, "u3", srv.POP3S, "implicit", `on_settled = "keep"`)
	if st, err := j.poll(); err != nil || st.Delivered != 50 {
		t.Fatalf("%v %v", st, err)
	}
	st, err := j.poll()
	if err != nil || st.Fetched != 0 {
		t.Fatalf("second run fetched again: %v %v", st, err)
	}
	if n := srv.POP3Count("u3"); n != 50 {
		t.Fatalf("keep mode: mailbox has %d, want 50", n)
	}
	assertExactlyOnce(t, msgs, j.delivered())
}

// Dovecot 2.3 does not byte-stuff a message's first line, and sends an
// empty file (LIST: 0 bytes) as one empty line. In a mailbox of 50 with a
// file whose first line is ".", one whose first line starts with ".." and
// an empty one, the first is delivered as the file has it and every other
// message but the last two in the first poll; those two are held in that
// poll (the reader says why its bytes are wrong), once each, and stay in
// the mailbox. u3 is this package's mailbox.
func TestDovecotLeadingDotAndEmptyFileHoldUpNothing(t *testing.T) {
	srv := enginetest.RealServers(t)
	msgs := enginetest.CRLF(enginetest.Mix(50))
	msgs[10] = []byte(".\r\nSubject: a lone dot first\r\n\r\nbody\r\n")
	msgs[25] = []byte{}
	msgs[40] = []byte("..two: dots\r\nSubject: two dots first\r\n\r\nbody\r\n")
	srv.SeedPOP3(t, "u3", msgs)
	j := dovecotJob(t, srv, "u3", srv.POP3S, "implicit", "")
	st, err := j.poll()
	if err != nil || st.Delivered != 48 || st.Held != 2 || st.Deferred != 0 {
		t.Fatalf("first poll: %+v %v; want 48 delivered, 2 held", st, err)
	}
	var good [][]byte
	for i, m := range msgs {
		if i != 25 && i != 40 {
			good = append(good, m)
		}
	}
	assertExactlyOnce(t, good, j.delivered())
	held := st.Held
	for poll := 2; poll <= 5; poll++ {
		st, err := j.poll()
		if err != nil {
			t.Fatalf("poll %d: %v", poll, err)
		}
		if held += st.Held; st.Fetched != 0 {
			t.Fatalf("poll %d fetched %d: a held message is fetched again", poll, st.Fetched)
		}
	}
	if entries, _ := j.engine.Quarantine.List(); held != 2 || len(entries) != 2 {
		t.Fatalf("held %d times, %d in the quarantine; want the empty file and the \"..\" one, once each", held, len(entries))
	}
	if n := srv.POP3Count("u3"); n != 2 {
		t.Fatalf("the mailbox holds %d messages, want the 2 held", n)
	}
	assertExactlyOnce(t, good, j.delivered())
}

func TestDovecotRefusesUnverifiedCertificate(t *testing.T) {
	srv := enginetest.RealServers(t)
	// Without tls_ca_file the test CA is unknown: the session must fail.
	j := newJob(t, srv.POP3S, fmt.Sprintf("tls = \"implicit\"\nusername = \"u4\"\npassword = %q\n", srv.Password), true)
	if _, err := j.poll(); err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}
}

// BenchmarkDovecotRetr measures RETR throughput from Dovecot, with and
// without PIPELINING: each iteration logs in and fetches every message of
// a seeded mailbox (without deleting).
func BenchmarkDovecotRetr(b *testing.B) {
	srv := enginetest.RealServers(b)
	const n = 500
	msgs := enginetest.CRLF(enginetest.Mix(n))
	var total int64
	for _, m := range msgs {
		total += int64(len(m))
	}
	srv.SeedPOP3(b, "u5", msgs)
	pem, _ := os.ReadFile(srv.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, window := range []int{1, 16} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			for b.Loop() {
				c, err := pop3.Dial(context.Background(), srv.POP3S, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.User("u5"); err != nil {
					b.Fatal(err)
				}
				if err := c.Pass(srv.Password); err != nil {
					b.Fatal(err)
				}
				sent := 0
				for i := 1; i <= n; i++ {
					for sent < n && sent < i-1+window {
						sent++
						c.SendRetr(sent)
					}
					c.Flush()
					r, err := c.ReadRetr(0)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, r); err != nil {
						b.Fatal(err)
					}
				}
				c.Quit()
			}
			secs := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(n)/secs, "msgs/s")
			b.ReportMetric(float64(total)/secs/1e6, "MB/s")
		})
	}
}
