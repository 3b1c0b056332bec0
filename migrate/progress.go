package migrate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/migrate/survey"
)

// Totals is what a survey found before a run: the messages to move, and
// those moved before or too large to move, overall and per folder.
type Totals struct {
	ToMove       Count            `json:"to_move"`
	MovedEarlier Count            `json:"moved_earlier"`
	TooLarge     Count            `json:"too_large"`
	Folders      map[string]Count `json:"folders,omitempty"` // to move, per source folder ("" without folders)
}

// Count is a number of messages and their bytes.
type Count struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
}

func (c Count) plus(n, bytes int64) Count { return Count{c.Messages + n, c.Bytes + bytes} }

// add counts a survey's items.
func (t *Totals) add(items []survey.Item) {
	if t.Folders == nil {
		t.Folders = map[string]Count{}
	}
	for _, it := range items {
		switch {
		case it.Settled:
			t.MovedEarlier = t.MovedEarlier.plus(1, it.Size)
		case it.TooLarge:
			t.TooLarge = t.TooLarge.plus(1, it.Size)
		default:
			t.ToMove = t.ToMove.plus(1, it.Size)
			t.Folders[it.Folder] = t.Folders[it.Folder].plus(1, it.Size)
		}
	}
}

// without is t less the folders of refused, which the run leaves out.
func (t Totals) without(refused []RefusedFolder) Totals {
	out := t
	out.Folders = maps.Clone(t.Folders)
	for _, f := range refused {
		c, ok := out.Folders[f.Folder]
		if !ok {
			continue
		}
		delete(out.Folders, f.Folder)
		out.ToMove = Count{out.ToMove.Messages - c.Messages, out.ToMove.Bytes - c.Bytes}
	}
	return out
}

// FolderNames are the surveyed folders with something to move, in order.
func (t *Totals) FolderNames() []string {
	names := make([]string, 0, len(t.Folders))
	for f := range t.Folders {
		names = append(names, f)
	}
	slices.Sort(names)
	return names
}

// Progress is how far a run is at one moment: what a progress bar, a
// batch's table and a status page show.
type Progress struct {
	Done    Count            `json:"done"`  // messages dealt with (moved, refused, left, deferred) and their bytes
	Total   Count            `json:"total"` // what the survey found to move
	Elapsed time.Duration    `json:"elapsed"`
	Rate    float64          `json:"rate"`          // messages a second, so far
	ETA     time.Duration    `json:"eta,omitempty"` // 0: unknown
	Folders []FolderProgress `json:"folders,omitempty"`
	// Waiting says why the run is waiting, while it waits for a server
	// that asked it to ("waiting: the server asked for 30s").
	Waiting string `json:"waiting,omitempty"`
}

// FolderProgress is Progress for one source folder.
type FolderProgress struct {
	Folder string `json:"folder"`
	Done   Count  `json:"done"`
	Total  Count  `json:"total"`
}

// Observer follows a run.
type Observer interface {
	// Started is called once the survey is done, before the first
	// message: m counts as the run goes (m.Progress).
	Started(m *Meter)
	// Message is called as each message's turn ends, after m counted it;
	// from several goroutines at once, one per message in flight.
	Message(ev engine.MessageEvent)
	// Waiting is called when the run waits for a server that asked it
	// to (a throttling reply), before it goes on by itself.
	Waiting(why string, d time.Duration)
}

// Meter counts a run's progress from the engine's events: the one source
// of the numbers every view shows. It is the engine's Observer during a
// run, and passes each message on to the run's Observer.
type Meter struct {
	engine.NopObserver
	totals Totals
	start  time.Time
	next   Observer

	mu      sync.Mutex
	done    Count
	folders map[string]Count
	moved   Count // delivered
	// throttled is the longest wait a server asked for since the last
	// pass (0: none asked), and why.
	throttled time.Duration
	why       string
	waiting   string // what Progress says while the run waits
	// refused are the source folders whose place the destination
	// refused, with its answer and the messages of the pass refused so.
	refused map[string]*RefusedFolder
}

func newMeter(next Observer) *Meter {
	return &Meter{next: next, folders: map[string]Count{}}
}

// begin sets the totals the survey found and starts the clock.
func (m *Meter) begin(t Totals) {
	m.mu.Lock()
	m.totals, m.start = t, time.Now()
	m.mu.Unlock()
	if m.next != nil {
		m.next.Started(m)
	}
}

// MessageDone implements engine.Observer.
func (m *Meter) MessageDone(ev engine.MessageEvent) {
	if ev.Outcome == engine.Skipped {
		return // moved by an earlier run: not in the totals
	}
	m.mu.Lock()
	m.done = m.done.plus(1, ev.Bytes)
	m.folders[ev.Folder] = m.folders[ev.Folder].plus(1, ev.Bytes)
	if ev.Outcome == engine.Delivered {
		m.moved = m.moved.plus(1, ev.Bytes)
	}
	m.mu.Unlock()
	if m.next != nil {
		m.next.Message(ev)
	}
}

// OutputDone implements engine.Observer: a server's ask to wait is noted,
// and a place it refused (plugin.RefusedPlaceError) with the folder.
func (m *Meter) OutputDone(ev engine.OutputEvent) {
	if d, ok := plugin.ThrottledFor(ev.Err); ok {
		m.noteThrottle(d, ev.Err)
	}
	if _, ok := plugin.PlaceRefused(ev.Err); ok {
		m.mu.Lock()
		if m.refused == nil {
			m.refused = map[string]*RefusedFolder{}
		}
		f := m.refused[ev.Folder]
		if f == nil {
			f = &RefusedFolder{Folder: ev.Folder, Reason: ev.Err.Error()}
			m.refused[ev.Folder] = f
		}
		f.Messages, f.Bytes = f.Messages+1, f.Bytes+ev.Bytes
		m.mu.Unlock()
	}
}

// newPass forgets the counts of refused folders of the pass before (a pass
// deals with every message again).
func (m *Meter) newPass() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.refused {
		f.Messages, f.Bytes = 0, 0
	}
}

// refusedFolders are the folders refused in the last pass, by name.
func (m *Meter) refusedFolders() []RefusedFolder {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []RefusedFolder
	for _, f := range m.refused {
		if f.Messages > 0 {
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b RefusedFolder) int { return strings.Compare(a.Folder, b.Folder) })
	return out
}

// PollDone implements engine.Observer: likewise for the source.
func (m *Meter) PollDone(ev engine.PollEvent) {
	if d, ok := plugin.ThrottledFor(ev.Err); ok {
		m.noteThrottle(d, ev.Err)
	}
}

func (m *Meter) noteThrottle(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d >= m.throttled {
		m.throttled, m.why = max(d, time.Second), err.Error()
	}
}

// takeThrottle returns, and forgets, the longest wait asked for since the
// last call.
func (m *Meter) takeThrottle() (time.Duration, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, why := m.throttled, m.why
	m.throttled, m.why = 0, ""
	return d, why
}

// wait tells the observer and waits d, or until ctx ends.
func (m *Meter) wait(ctx context.Context, why string, d time.Duration) {
	m.mu.Lock()
	m.waiting = fmt.Sprintf("waiting: the server asked for %s", d.Round(time.Second))
	m.mu.Unlock()
	if m.next != nil {
		m.next.Waiting(why, d)
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	m.mu.Lock()
	m.waiting = ""
	m.mu.Unlock()
}

// Totals is what the survey found.
func (m *Meter) Totals() Totals {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.totals
}

// Progress is where the run stands now.
func (m *Meter) Progress() Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := Progress{Done: m.done, Total: m.totals.ToMove, Elapsed: time.Since(m.start), Waiting: m.waiting}
	if s := p.Elapsed.Seconds(); s > 0 {
		p.Rate = float64(p.Done.Messages) / s
	}
	if p.Done.Bytes > 0 && p.Total.Bytes > p.Done.Bytes {
		p.ETA = time.Duration(float64(p.Elapsed) * float64(p.Total.Bytes-p.Done.Bytes) / float64(p.Done.Bytes))
	}
	for _, f := range m.totals.FolderNames() {
		p.Folders = append(p.Folders, FolderProgress{Folder: f, Done: m.folders[f], Total: m.totals.Folders[f]})
	}
	return p
}

// moved is what was delivered so far.
func (m *Meter) movedCount() Count {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.moved
}

// Observers tells each of obs every event, in order.
func Observers(obs ...Observer) Observer { return observers(obs) }

type observers []Observer

func (o observers) Started(m *Meter) {
	for _, x := range o {
		x.Started(m)
	}
}

func (o observers) Message(ev engine.MessageEvent) {
	for _, x := range o {
		x.Message(ev)
	}
}

func (o observers) Waiting(why string, d time.Duration) {
	for _, x := range o {
		x.Waiting(why, d)
	}
}
