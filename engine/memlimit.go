package engine

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// runtimeBase is what the process holds in the Go runtime besides the
// messages memory_budget bounds: the runtime's own metadata and stacks,
// the sessions' buffers, a listing of some ten thousand messages.
const runtimeBase = 12 << 20

// The runtime's soft memory limit (debug.SetMemoryLimit), kept at
// runtimeBase + memory_budget. The collector lets the heap grow to twice
// what is live (GOGC=100) and keeps freed pages a while; with a live heap
// of a few MB that headroom is most of the process's memory. Under the
// limit it collects sooner and gives freed pages back. The limit never
// asks for less than half again what is live (as GOGC=50 would): a heap
// that outgrows it (a listing of a million messages) is collected as
// often as that, never continuously. GOMEMLIMIT, if set, is the
// operator's word and is left alone.
var memLimit struct {
	mu      sync.Mutex
	floor   int64
	samples []metrics.Sample // nil until the first engine sets the limit
}

// limitMemory sets the soft memory limit for an engine with this
// memory_budget (the largest, when several engines share the process).
func limitMemory(budget int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	memLimit.mu.Lock()
	defer memLimit.mu.Unlock()
	memLimit.floor = max(memLimit.floor, runtimeBase+budget)
	if memLimit.samples == nil {
		memLimit.samples = []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		}
		runtime.SetFinalizer(&gcTick{}, afterGC)
	}
	adjustLimit()
}

// gcTick is garbage made to be collected: its finalizer runs after each
// collection and makes it again.
type gcTick struct{ _ *byte }

func afterGC(t *gcTick) {
	memLimit.mu.Lock()
	adjustLimit()
	memLimit.mu.Unlock()
	runtime.SetFinalizer(t, afterGC)
}

// adjustLimit sets the limit to the floor, or to half again the live heap
// and the rest of what the runtime holds but free pages (stacks, its
// metadata, the unused ends of its spans), whichever is more. Only the
// finalizer goroutine and limitMemory call it, holding memLimit.mu.
func adjustLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	s := memLimit.samples
	metrics.Read(s)
	live, total, released := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	objects, free := s[3].Value.Uint64(), s[4].Value.Uint64()
	var rest uint64
	if total > released+objects+free {
		rest = total - released - objects - free
	}
	debug.SetMemoryLimit(max(memLimit.floor, int64(live+live/2+rest)))
}
