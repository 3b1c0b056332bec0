//go:build integration

package imap

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// BenchmarkDovecotAppend APPENDs 400 mixed messages (2 KB to 5 MB) into a
// new folder of Dovecot user u20 per iteration, from as many goroutines at
// once as the engine would deliver (migrate's max_in_flight, 8, and 32),
// over sessions × window, on 127.0.0.1 and through a proxy that adds 20 ms
// of round trip (a server across a country): what chose append_window's
// default.
//
//	go test -tags integration -run - -bench DovecotAppend -benchtime 2x -count 5 ./connectors/imap/
func BenchmarkDovecotAppend(b *testing.B) {
	srv := enginetest.RealServers(b)
	far := delayProxy(b, srv.IMAP, 10*time.Millisecond)
	var msgs []*message.Message
	var total int64
	for i, raw := range enginetest.CRLF(enginetest.Mix(400)) {
		if len(raw) == 0 {
			continue
		}
		msgs = append(msgs, message.New(raw, message.Source{Input: "in", ID: fmt.Sprint(i)}))
		total += int64(len(raw))
	}
	folder := 0
	for _, c := range []struct {
		rtt                        string
		inFlight, sessions, window int
	}{
		{"0", 8, 4, 1}, {"0", 8, 4, 2}, {"0", 8, 4, 8}, {"0", 8, 1, 8},
		{"0", 32, 4, 1}, {"0", 32, 4, 8}, {"0", 32, 4, 16},
		{"20ms", 8, 4, 1}, {"20ms", 8, 4, 2}, {"20ms", 8, 4, 8}, {"20ms", 8, 1, 8},
		{"20ms", 32, 4, 1}, {"20ms", 32, 4, 4}, {"20ms", 32, 4, 8}, {"20ms", 32, 4, 16},
	} {
		b.Run(fmt.Sprintf("rtt=%s/inflight=%d/sessions=%d/window=%d", c.rtt, c.inFlight, c.sessions, c.window), func(b *testing.B) {
			empty(b, dovecot(b, srv, "u20"))
			addr := srv.IMAP
			if c.rtt != "0" {
				addr = far
			}
			o := dovecotOutput(b, srv, addr, "u20", func(o *Output) { o.MaxConnections, o.AppendWindow = c.sessions, c.window })
			b.SetBytes(total)
			b.ResetTimer()
			for range b.N {
				folder++
				name := fmt.Sprintf("bench%d", folder)
				work := make(chan *message.Message)
				var wg sync.WaitGroup
				var failed error
				var mu sync.Mutex
				for range c.inFlight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for m := range work {
							m.Folder = name
							if _, err := o.Deliver(context.Background(), m, plugin.Delivery{Key: m.Key()}); err != nil {
								mu.Lock()
								failed = err
								mu.Unlock()
							}
						}
					}()
				}
				for _, m := range msgs {
					work <- m
				}
				close(work)
				wg.Wait()
				if failed != nil {
					b.Fatal(failed)
				}
			}
			b.ReportMetric(float64(len(msgs)*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// delayProxy forwards connections to addr, each byte arriving one way
// later than it was sent (as over a long line; the bandwidth is the
// machine's).
func delayProxy(tb testing.TB, addr string, oneWay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	pipe := func(dst, src net.Conn) {
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 1<<12)
		go func() {
			for c := range q {
				time.Sleep(time.Until(c.at))
				if _, err := dst.Write(c.b); err != nil {
					break
				}
			}
			dst.Close()
		}()
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(oneWay), buf[:n]}
			}
			if err != nil {
				close(q)
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return ln.Addr().String()
}
