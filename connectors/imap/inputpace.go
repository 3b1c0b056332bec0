package imap

import (
	"fmt"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// How the input waits when a server asks it to (throttle.go) without
// saying how long ([THROTTLED], [UNAVAILABLE]): first a little, then twice
// as long each time it asks again without a message fetched between, up
// to throttleWait. Gmail's [THROTTLED] is often over in seconds, and a
// migration that waited a minute at every one would crawl; one that keeps
// being refused soon waits the minute.
const firstThrottleWait = 2 * time.Second

// throttled is throttled(err) for the input: a wait the server named
// (Microsoft's "Suggested Backoff Time", [OVERQUOTA]'s quarter of an hour)
// as it is, one it did not name as above.
func (in *Input) throttled(err error) error {
	if _, marked := plugin.ThrottledFor(err); marked {
		return err
	}
	d, ok := serverWait(err)
	if !ok {
		return err
	}
	if _, named := namedWait(err); !named && d == throttleWait {
		in.mu.Lock()
		d = min(firstThrottleWait<<min(in.streak, 10), throttleWait)
		in.streak++
		in.mu.Unlock()
	}
	return plugin.Throttled(err, d)
}

// calm is told that a message was fetched: the next ask to wait starts
// short again.
func (in *Input) calm() {
	in.mu.Lock()
	in.streak = 0
	in.mu.Unlock()
}

// namedWait is the wait a server's answer names in its text (Microsoft
// 365's "Suggested Backoff Time: N milliseconds"), if it names one.
func namedWait(err error) (time.Duration, bool) {
	d, ok := serverWait(err)
	if !ok {
		return 0, false
	}
	if backoffText.MatchString(err.Error()) {
		return d, true
	}
	return 0, false
}

// withinDay is the part of items that max_bytes_per_day lets be fetched
// now, in their order (a message's copies count once, and go with it),
// and, when some are left out, the error that says how long until the
// next would fit.
func (in *Input) withinDay(items []plugin.Item) ([]plugin.Item, error) {
	if in.day == nil {
		return items, nil
	}
	taken := map[ref]bool{}
	var out []plugin.Item
	var wait time.Duration
	for _, it := range items {
		r := it.Ref.(ref)
		if !taken[r] {
			if wait > 0 {
				continue
			}
			d, ok := in.day.take(it.Size)
			if !ok {
				wait = d
				continue
			}
			taken[r] = true
		}
		out = append(out, it)
	}
	if wait == 0 {
		return out, nil
	}
	return out, plugin.Throttled(fmt.Errorf("imap: max_bytes_per_day (%d) fetched; %d messages wait, the next may be fetched in %v",
		in.MaxBytesPerDay, len(items)-len(out), wait.Round(time.Second)), wait)
}
