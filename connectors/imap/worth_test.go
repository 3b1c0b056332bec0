package imap

import (
	"math"
	"testing"
	"time"
)

// A few small messages from a dozen folders come quicker over the one
// session there is than another login takes, where round trips cost
// little; over a distance, or with much to carry, the sessions pay.
func TestSessionsAreWorthTheirLoginOnlyWhereTheWorkWaitsLongerThanOne(t *testing.T) {
	const kB, MB = 1000, 1000 * 1000
	for _, c := range []struct {
		name          string
		dialTook, rtt time.Duration
		folders       int
		bytes         int64
		want          int
	}{
		{"a changed pass on loopback", 25 * time.Millisecond, 400 * time.Microsecond, 10, 160 * kB, 1},
		{"the same over 50 ms", 200 * time.Millisecond, 50 * time.Millisecond, 10, 160 * kB, math.MaxInt},
		{"a first copy on loopback", 25 * time.Millisecond, 400 * time.Microsecond, 10, 1100 * MB, math.MaxInt},
		{"a login not measured", 0, 0, 10, 160 * kB, math.MaxInt},
		{"no NAMESPACE asked", 25 * time.Millisecond, 0, 10, 160 * kB, math.MaxInt},
	} {
		if got := sessionsWorth(&conn{dialTook: c.dialTook, rtt: c.rtt}, c.folders, c.bytes); got != c.want {
			t.Errorf("%s: %d sessions, want %d", c.name, got, c.want)
		}
	}
}
