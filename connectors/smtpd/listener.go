package smtpd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// A listener outlives the input that opened it. A reload that rebuilds an
// input (its config, certificate or users file changed) builds and starts
// the new one while the old one still serves: the new one takes the
// listener over, so that the port never closes and no connection is
// refused meanwhile; the old one finishes the sessions it has and lets go.
// Each accepted connection goes to the newest input that holds it (its
// owner; if a reload fails after taking it, the one before is owner again),
// after the per-client limits, whose counts live here for the same reason.
type listener struct {
	key     string
	network string
	addr    string
	ln      net.Listener
	log     *slog.Logger
	clients *clients

	mu      sync.Mutex
	holders []*server // oldest first; the last is the owner
}

var listeners = struct {
	sync.Mutex
	m map[string]*listener
}{m: map[string]*listener{}}

// sharedListener is the listener this process has on the address, if any.
func sharedListener(network, addr string) *listener {
	listeners.Lock()
	defer listeners.Unlock()
	return listeners.m[network+" "+addr]
}

// acquireListener returns the process's listener on the address, listening
// if there is none yet, for owner s.
func acquireListener(network, addr string, mode os.FileMode, log *slog.Logger, s *server) (*listener, error) {
	key := network + " " + addr
	listeners.Lock()
	defer listeners.Unlock()
	l := listeners.m[key]
	if l == nil {
		ln, err := listen(network, addr, mode)
		if err != nil {
			return nil, err
		}
		l = &listener{key: key, network: network, addr: addr, ln: ln, log: log, clients: newClients()}
		listeners.m[key] = l
		go l.accept()
		log.Info("listening", "address", ln.Addr().String(), "network", network)
	}
	l.mu.Lock()
	l.holders = append(l.holders, s)
	l.mu.Unlock()
	return l, nil
}

// listen listens on a TCP address or a Unix socket. A socket file left by
// a process that died is removed first; one another process still serves
// is not.
func listen(network, addr string, mode os.FileMode) (net.Listener, error) {
	if network != "unix" {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if _, err := os.Stat(addr); err == nil {
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("cannot listen on %s: another process serves that socket", addr)
		}
		if err := os.Remove(addr); err != nil {
			return nil, fmt.Errorf("cannot remove the stale socket %s: %w", addr, err)
		}
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(addr, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// release gives up s's hold on l: new connections no longer go to s, and
// the last holder closes the listener.
func (l *listener) release(s *server) {
	listeners.Lock()
	defer listeners.Unlock()
	l.mu.Lock()
	l.holders = slices.DeleteFunc(l.holders, func(h *server) bool { return h == s })
	last := len(l.holders) == 0
	l.mu.Unlock()
	if last {
		delete(listeners.m, l.key)
		l.ln.Close()
		if l.network == "unix" {
			os.Remove(l.addr) // gone already when the listener unlinked it
		}
	}
}

// accept hands every connection to the owner of the moment.
func (l *listener) accept() {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: wait a little, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accepting a connection failed; trying again", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		var s *server
		l.mu.Lock()
		if n := len(l.holders); n > 0 {
			s = l.holders[n-1]
		}
		l.mu.Unlock()
		if s == nil {
			go refuse(c, "421 4.3.2 Service shutting down, try again later")
			continue
		}
		s.admit(l, c)
	}
}

// refuse answers a connection that is not taken, and closes it.
func refuse(c net.Conn, reply string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(reply + "\r\n"))
	c.Close()
}
