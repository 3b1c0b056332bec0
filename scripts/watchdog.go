package scripts

import (
	"context"
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// The watchdog bounds every script call in time and memory without adding a
// timer, a context or a metrics read to each call (a call costs microseconds;
// those would cost more than the script). Each Lua state has a long-lived
// cancellable context; a call only stores its start time. One goroutine
// ticks while states exist and cancels a state whose call has run past its
// deadline, or during which the Go heap grew by more than the memory limit.
// gopher-lua checks the context before every instruction, so a runaway
// script stops within one tick. The heap is process-wide, so the memory
// check only applies to calls that have already run for two ticks: a
// normal filter call is long finished by then.
var watchdog = &dog{states: map[*watched]struct{}{}}

const watchTick = 5 * time.Millisecond

type dog struct {
	mu      sync.Mutex
	states  map[*watched]struct{}
	running bool
	heap    atomic.Uint64 // heap object bytes at the last tick
}

// watched is the watchdog's view of one Lua state.
type watched struct {
	cancel  context.CancelFunc
	limits  plugin.ScriptLimits
	started atomic.Int64  // unix nanoseconds when the running call began; 0 when idle
	heap0   atomic.Uint64 // heap bytes when it began
	reason  atomic.Pointer[string]
}

func (d *dog) add(cancel context.CancelFunc, limits plugin.ScriptLimits) *watched {
	w := &watched{cancel: cancel, limits: limits}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.states[w] = struct{}{}
	if !d.running {
		d.running = true
		d.heap.Store(heapBytes())
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
		heap := heapBytes()
		d.heap.Store(heap)
		now := time.Now().UnixNano()
		for _, w := range busy {
			w.check(now, heap)
		}
	}
}

func (w *watched) check(now int64, heap uint64) {
	start := w.started.Load()
	if start == 0 {
		return
	}
	ran := time.Duration(now - start)
	switch {
	case ran > w.limits.Timeout:
		w.stop(fmt.Sprintf("script ran longer than %v and was stopped", w.limits.Timeout))
	case ran > 2*watchTick && heap > w.heap0.Load() && heap-w.heap0.Load() > uint64(w.limits.MaxMemory):
		w.stop(fmt.Sprintf("script used more than %d MB of memory and was stopped (the heap grew by %d MB while it ran)", w.limits.MaxMemory>>20, (heap-w.heap0.Load())>>20))
	}
}

func (w *watched) stop(reason string) {
	if w.reason.CompareAndSwap(nil, &reason) {
		w.cancel()
	}
}

// begin marks the start of a call.
func (w *watched) begin() {
	w.heap0.Store(watchdog.heap.Load())
	w.started.Store(time.Now().UnixNano())
}

// end marks its end and returns why the watchdog stopped it, if it did.
func (w *watched) end() string {
	w.started.Store(0)
	if r := w.reason.Load(); r != nil {
		return *r
	}
	return ""
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
var heapMu sync.Mutex

func heapBytes() uint64 {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(heapSample)
	if heapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return heapSample[0].Value.Uint64()
}
