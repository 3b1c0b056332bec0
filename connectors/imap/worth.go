package imap

import (
	"math"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// How many sessions a piece of work is worth. Another session costs the
// server a login (on Dovecot a process, and the folder indexes opened
// again) before it carries anything; it pays only where round trips are
// what the work waits for.

// A fetch on one session costs about a round trip and a little server
// time per folder (its SELECT and FETCH go out together), and the bytes at
// about what a session carries on a fast link.
const (
	folderServerTime = 2 * time.Millisecond
	sessionBandwidth = 50e6 // bytes a second
)

// sessionsWorth is how many sessions a fetch of bytes from folders is
// worth, as far as c (the listing's session) says: more than one only
// when the fetch on c alone would take longer than two logins (as c's
// took). Another session fetches nothing until logged in, and a login
// costs the server more than a folder's few messages do: a changed pass
// on loopback (10 folders, 50 messages, 160 kB) is about 30 ms on one
// session, where a login to a busy Dovecot took 20 to 60 ms. Over 50 ms
// each folder costs a round trip, and the sessions pay.
func sessionsWorth(c *conn, folders int, bytes int64) int {
	if c.rtt == 0 || c.dialTook == 0 {
		return math.MaxInt // not measured: as many as the config allows
	}
	one := time.Duration(folders)*(c.rtt+folderServerTime) + time.Duration(float64(bytes)/sessionBandwidth*float64(time.Second))
	if one < 2*c.dialTook {
		return 1
	}
	return math.MaxInt
}

// bytesOf is the size of items, as listed.
func bytesOf(items []plugin.Item) int64 {
	var n int64
	for _, it := range items {
		n += max(it.Size, 0)
	}
	return n
}

// cheapRoundTrip is a round trip short enough that a command waiting
// for a session's earlier ones loses next to nothing (a NAMESPACE answered
// within it): a LAN, loopback.
const cheapRoundTrip = 2 * time.Millisecond

// roundTripsCheap reports whether a session of the lanes measured a
// cheap round trip; l.mu is held. More sessions to such a server buy no
// overlap of waiting, only logins (and, with the server on the same
// machine, its processes competing with ours): a session with room in
// its window is waited for rather than another dialed. On loopback a
// changed pass of 50 messages took 0.60 s with four sessions to the
// destination, 0.50 s with one or two.
func (l *lanes) roundTripsCheap() bool {
	for _, ln := range l.all {
		if ln.c.rtt > 0 {
			return ln.c.rtt < cheapRoundTrip
		}
	}
	return false
}
