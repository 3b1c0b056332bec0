package scripts

import (
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// The watchdog bounds every script call in time and memory without adding a
// timer, a context or a metrics read to each call (a call costs microseconds;
// those would cost more than the script). Each Lua state's context is its
// watched value; a call only stores its start time. One goroutine ticks
// while states exist and stops a call that has run past its deadline.
//
// Memory is charged to the call that allocates it (README, "The memory
// bound"). The process heap is shared by every call running at once, so
// its growth says that some call may be growing, never which: when the
// heap has grown by half a call's bound since the call began (or was last
// measured), the watchdog asks that call to measure itself. gopher-lua
// calls its context's Done before every instruction, on the state's own
// goroutine; Done is where the state answers, by adding up what its call
// holds (footprint.go) and stopping itself if that is over its bound.
// An innocent call measured beside a runaway finds itself small and goes
// on.
//
// The heap is the last resort, for memory a call might hold where the
// measure does not look: when the heap has grown, since the oldest running
// call began, by more than the bounds of all the calls running together
// allow (and one more, for the rest of the process), and that growth is
// live (a collection since then found it so) and not only garbage (twice
// as much in the heap as the bounds), every running call is measured and
// the largest is stopped: not the one that happens to be running.
var watchdog = &dog{states: map[*watched]struct{}{}}

const watchTick = 5 * time.Millisecond

type dog struct {
	mu      sync.Mutex
	states  map[*watched]struct{}
	running bool
	sample  atomic.Pointer[heapSample] // the heap at the last tick

	// The last resort's own state, touched by the ticking goroutine only.
	overSince int64  // when the heap went over what the running calls may hold; 0: it is not
	waitGC    uint64 // after a stop, no other until the collection after this one
}

// watched is the watchdog's view of one Lua state, and the state's
// context: gopher-lua calls Done before each instruction, and stops the
// running script with Err once done is closed.
type watched struct {
	v       *vm
	limits  plugin.ScriptLimits
	done    chan struct{}
	started atomic.Int64               // unix nanoseconds when the running call began; 0 when idle
	base    atomic.Pointer[heapSample] // the heap when it began
	measure atomic.Bool                // the watchdog asks the state to measure its call
	held    atomic.Int64               // what the call held when it last measured itself
	heldAt  atomic.Int64               // when that was (unix nanoseconds)
	err     atomic.Pointer[error]

	// Touched by the ticking goroutine only.
	markFor  int64  // the call mark is for (its start)
	markHeap uint64 // heap bytes when it began, or was last asked to measure
}

// heapSample is the heap as one tick found it.
type heapSample struct {
	heap   uint64 // object bytes, garbage not yet swept included
	live   uint64 // what the last collection found live
	cycles uint64 // collections done
}

func (d *dog) add(v *vm, limits plugin.ScriptLimits) *watched {
	w := &watched{v: v, limits: limits, done: make(chan struct{})}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.states[w] = struct{}{}
	if !d.running {
		d.running = true
		d.sample.Store(readHeap())
		go d.loop()
	}
	return w
}

func (d *dog) remove(w *watched) {
	d.mu.Lock()
	delete(d.states, w)
	d.mu.Unlock()
}

func (d *dog) loop() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	var busy []*watched
	for range t.C {
		busy = busy[:0]
		d.mu.Lock()
		if len(d.states) == 0 {
			d.running = false
			d.mu.Unlock()
			return
		}
		for w := range d.states {
			if w.started.Load() != 0 {
				busy = append(busy, w)
			}
		}
		d.mu.Unlock()
		// Sampled every tick, busy or not, so that a call's baseline is
		// never older than one tick.
		sample := readHeap()
		d.sample.Store(sample)
		now := time.Now().UnixNano()
		for _, w := range busy {
			w.check(now, sample.heap)
		}
		d.lastResort(busy, now, sample)
	}
}

// check stops a call past its deadline, and asks one during which the heap
// grew to measure what it holds.
func (w *watched) check(now int64, heap uint64) {
	start := w.started.Load()
	if start == 0 {
		return
	}
	ran := time.Duration(now - start)
	if ran > w.limits.Timeout {
		w.stop(fmt.Sprintf("script ran longer than %v and was stopped", w.limits.Timeout))
		return
	}
	if w.markFor != start {
		w.markFor, w.markHeap = start, w.base.Load().heap
	}
	// An ordinary call is over within two ticks; only longer ones are
	// measured, and only as the heap grows.
	if ran > 2*watchTick && heap > w.markHeap && heap-w.markHeap > uint64(w.limits.MaxMemory)/2 {
		w.markHeap = heap
		w.measure.Store(true)
	}
}

// lastResort stops the largest running call when the process has grown by
// more than the running calls may hold together (see the top of this
// file). Every call is measured first; the largest is stopped a tick
// later, when they have answered.
func (d *dog) lastResort(busy []*watched, now int64, at *heapSample) {
	if len(busy) == 0 || at.cycles <= d.waitGC {
		d.overSince = 0
		return
	}
	oldest := busy[0]
	var allowed, widest uint64
	for _, w := range busy {
		if w.started.Load() < oldest.started.Load() {
			oldest = w
		}
		allowed += uint64(w.limits.MaxMemory)
		widest = max(widest, uint64(w.limits.MaxMemory))
	}
	allowed += widest
	base := oldest.base.Load()
	grewLive := at.live > base.live && at.live-base.live > allowed
	grewHeap := at.heap > base.heap && at.heap-base.heap > 2*allowed
	// A collection that began after the oldest call did has ended: the live
	// figure is about the calls now running, not garbage from before.
	fresh := at.cycles >= base.cycles+2
	if !grewLive || !grewHeap || !fresh {
		d.overSince = 0
		return
	}
	if d.overSince == 0 {
		d.overSince = now
		for _, w := range busy {
			w.measure.Store(true)
		}
		return
	}
	var worst *watched
	for _, w := range busy {
		if w.heldAt.Load() >= d.overSince && (worst == nil || w.held.Load() > worst.held.Load()) {
			worst = w
		}
	}
	if worst == nil {
		return // none has answered yet: each is inside a built-in
	}
	worst.stop(fmt.Sprintf("the process's memory grew by %d MB while scripts ran, more than their bounds allow together; this script held the most (%d MB) and was stopped",
		(at.live-base.live)>>20, worst.held.Load()>>20))
	d.overSince = 0
	d.waitGC = at.cycles + 1 // until a collection after the stop says what is left
}

// stop ends the running call (and makes the state unfit for another).
func (w *watched) stop(reason string) {
	err := errors.New(reason)
	if w.err.CompareAndSwap(nil, &err) {
		close(w.done)
	}
}

// begin marks the start of a call.
func (w *watched) begin() {
	// What a measure of the last call left (held, heldAt, a request that
	// came as it ended) is older than anything this call is judged by.
	w.base.Store(watchdog.sample.Load())
	w.started.Store(time.Now().UnixNano())
}

// end marks its end and returns why the watchdog stopped it, if it did.
func (w *watched) end() string {
	w.started.Store(0)
	if err := w.Err(); err != nil {
		return err.Error()
	}
	return ""
}

// Done is called by gopher-lua before every instruction, on the state's
// goroutine: it answers the watchdog's request to measure.
func (w *watched) Done() <-chan struct{} {
	if w.measure.Load() {
		w.measureCall()
	}
	return w.done
}

// measureCall adds up what the running call holds and stops it when that
// is over its bound.
func (w *watched) measureCall() {
	w.measure.Store(false)
	if w.started.Load() == 0 {
		return
	}
	limit := w.limits.MaxMemory
	held := footprint(w.v, limit, func() bool { return w.err.Load() != nil })
	if w.err.Load() != nil {
		return // stopped while it measured: the count is not whole
	}
	w.held.Store(held)
	w.heldAt.Store(time.Now().UnixNano())
	if held > limit {
		w.stop(fmt.Sprintf("script held more than %d MB of memory (the tables, strings and functions it made) and was stopped", limit>>20))
	}
}

// Err says why the call was stopped, or nil while it may run.
func (w *watched) Err() error {
	if err := w.err.Load(); err != nil {
		return *err
	}
	return nil
}

// Deadline is none: the watchdog keeps the time.
func (w *watched) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value carries nothing.
func (w *watched) Value(any) any { return nil }

var heapMetrics = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/cycles/total:gc-cycles"},
}
var heapMu sync.Mutex

func readHeap() *heapSample {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(heapMetrics)
	get := func(i int) uint64 {
		if heapMetrics[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return heapMetrics[i].Value.Uint64()
	}
	return &heapSample{heap: get(0), live: get(1), cycles: get(2)}
}
