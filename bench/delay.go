package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// delayProxy forwards TCP connections from a listener on 127.0.0.1 to a
// target, holding every chunk read in either direction for delay before it
// is written on: a link whose round-trip time is 2×delay, with no bandwidth
// limit of its own (up to delayWindow chunks in flight each way). It is
// -rtt's stand-in for tc netem, which this machine's kernel lacks: a client
// that waits for each answer before its next command pays the round trip
// on every command, one that pipelines pays it once.
//
// Its own CPU (copying every byte twice) is the bench's, not the tool's: it
// shows in "machine busy", not in a tool's CPU.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
}

// delayWindow is how many chunks (each at most delayChunk bytes) one
// direction of a connection holds before its reader waits.
const (
	delayWindow = 4096
	delayChunk  = 64 << 10
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, delayChunk); return &b }}

// startDelayProxy listens on a free port of 127.0.0.1 and forwards each
// connection to target, delaying each direction by delay.
func startDelayProxy(target string, delay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, target: target, delay: delay}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is where clients connect instead of the target.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting; connections already open run until either side
// closes them.
func (p *delayProxy) Close() error {
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c.(*net.TCPConn))
	}
}

func (p *delayProxy) forward(client *net.TCPConn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	server := s.(*net.TCPConn)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(client, server) }()
	go func() { defer wg.Done(); p.pipe(server, client) }()
	wg.Wait()
	client.Close()
	server.Close()
}

type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

// pipe copies from src to dst, each chunk delay after it was read; at the
// end of src it half-closes dst, as the far end would see it. A write that
// fails closes src, so that the other side's reader stops too.
func (p *delayProxy) pipe(src, dst *net.TCPConn) {
	ch := make(chan chunk, delayWindow)
	go func() {
		defer close(ch)
		for {
			buf := chunkPool.Get().(*[]byte)
			n, err := src.Read(*buf)
			if n > 0 {
				ch <- chunk{buf: buf, n: n, due: time.Now().Add(p.delay)}
			} else {
				chunkPool.Put(buf)
			}
			if err != nil {
				return
			}
		}
	}()
	var werr error
	for c := range ch {
		if werr == nil {
			time.Sleep(time.Until(c.due))
			_, werr = dst.Write((*c.buf)[:c.n])
			if werr != nil {
				src.Close()
			}
		}
		chunkPool.Put(c.buf)
	}
	if werr == nil {
		dst.CloseWrite()
	}
}

// parseRTT is -rtt's value: "" or "0" for none, else a duration whose half
// is each direction's delay.
func parseRTT(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("a negative round-trip time")
	}
	return d, nil
}

var _ io.Closer = (*delayProxy)(nil)
