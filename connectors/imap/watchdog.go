package imap

import (
	"net"
	"sync/atomic"
	"time"
)

// watchdog closes a connection on which a command has waited longer than
// timeout without a byte going either way: a server that stops answering
// (a hung process, a peer gone without a reset) must not hold a poll, a
// delivery or a stop for ever. Time the client spends away from the server
// (handing a fetched message to the engine) is not counted.
type watchdog struct {
	timeout time.Duration
	last    atomic.Int64 // when a byte last went in or out (UnixNano)
	busy    atomic.Int32 // commands waiting on the server
	fired   atomic.Bool  // it closed the connection: the server stopped answering
}

// watchedConn counts every byte read or written as progress.
type watchedConn struct {
	net.Conn
	w *watchdog
}

func (c watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.touch()
	}
	return n, err
}

func (c watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.w.touch()
	}
	return n, err
}

func (w *watchdog) touch() { w.last.Store(time.Now().UnixNano()) }

// begin marks a command under way; the returned func ends it.
func (w *watchdog) begin() func() {
	if w == nil {
		return func() {}
	}
	w.touch()
	w.busy.Add(1)
	return func() { w.busy.Add(-1) }
}

// away marks time spent away from the server during a command (the
// caller is handing data on); the returned func comes back.
func (w *watchdog) away() func() {
	if w == nil {
		return func() {}
	}
	w.busy.Add(-1)
	return func() { w.touch(); w.busy.Add(1) }
}

// watch checks every quarter timeout until done is closed, and calls
// kill once when a command has waited too long.
func (w *watchdog) watch(done <-chan struct{}, kill func()) {
	t := time.NewTicker(w.timeout / 4)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if w.busy.Load() > 0 && time.Since(time.Unix(0, w.last.Load())) > w.timeout {
				w.fired.Store(true)
				kill()
				return
			}
		}
	}
}

// silenced reports whether w closed its connection because the server
// stopped answering (the error the command got then reads only "EOF").
func (w *watchdog) silenced() bool { return w != nil && w.fired.Load() }
