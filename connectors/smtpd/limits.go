package smtpd

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rate is a limit of n events per period ("600/m", "5/10m").
type rate struct {
	n   int
	per time.Duration
}

// parseRate reads "N/s", "N/m", "N/h" or "N/DURATION" ("5/10m"); "" is
// no limit (nil).
func parseRate(s string) (*rate, error) {
	if s == "" {
		return nil, nil
	}
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || count <= 0 {
		return nil, fmt.Errorf("%q: want a count per time like \"60/m\" or \"5/10m\"", s)
	}
	per = strings.TrimSpace(per)
	d, ok := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[per]
	if !ok {
		if d, err = time.ParseDuration(per); err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: the time must be s, m, h or a duration like 10m", s)
		}
	}
	return &rate{n: count, per: d}, nil
}

// clients counts, per client address, what the per-client limits bound:
// open connections, connections and messages per period, failed logins.
// It belongs to a listener, so that a reload keeps the counts.
type clients struct {
	mu        sync.Mutex
	open      map[string]int
	total     int
	conns     map[string]*window
	msgs      map[string]*window
	authFails map[string]*window
}

// window counts events in the current period of a rate (Postfix's anvil
// counts the same way: a fixed period that starts at the first event).
type window struct {
	start time.Time
	n     int
}

func newClients() *clients {
	return &clients{open: map[string]int{}, conns: map[string]*window{}, msgs: map[string]*window{}, authFails: map[string]*window{}}
}

// count adds an event for key under r and reports whether it is within
// the limit. A nil r has none.
func count(m map[string]*window, key string, r *rate, now time.Time) bool {
	if r == nil {
		return true
	}
	w := m[key]
	if w == nil || now.Sub(w.start) >= r.per {
		if len(m) > 10000 {
			sweep(m, r, now)
		}
		w = &window{start: now}
		m[key] = w
	}
	w.n++
	return w.n <= r.n
}

// sweep forgets the windows whose period is over.
func sweep(m map[string]*window, r *rate, now time.Time) {
	for k, w := range m {
		if now.Sub(w.start) >= r.per {
			delete(m, k)
		}
	}
}

// connect admits a connection from addr ("" for a Unix socket) or says
// why not. Trusted clients are bound only by max, the total.
func (c *clients) connect(addr string, trusted bool, max, perClient int, r *rate) (ok bool, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.total >= max {
		return false, "too many connections"
	}
	if !trusted {
		// Every attempt counts toward the rate, one refused included, as
		// Postfix's anvil counts them.
		if !count(c.conns, addr, r, time.Now()) {
			return false, "too many connections from " + addr + " in a short time"
		}
		if perClient > 0 && c.open[addr] >= perClient {
			return false, "too many connections from " + addr
		}
	}
	c.total++
	c.open[addr]++
	return true, ""
}

// closed ends a connection connect admitted.
func (c *clients) closed(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.open[addr]--; c.open[addr] <= 0 {
		delete(c.open, addr)
	}
}

// message counts a message started by addr under r.
func (c *clients) message(addr string, r *rate) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return count(c.msgs, addr, r, time.Now())
}

// authFailed counts a failed login from addr under r, and reports
// whether addr may still try.
func (c *clients) authFailed(addr string, r *rate) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return count(c.authFails, addr, r, time.Now())
}

// authLocked reports whether addr failed to log in as often as r allows
// in the current period.
func (c *clients) authLocked(addr string, r *rate) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.authFails[addr]
	return r != nil && w != nil && time.Since(w.start) < r.per && w.n >= r.n
}
