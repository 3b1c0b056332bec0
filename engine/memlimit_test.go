package engine

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// The soft memory limit is runtimeBase + memory_budget (the largest
// budget of the process's engines); when the live heap outgrows it, it
// follows at half again the live heap, so that the collector never runs
// without a pause; GOMEMLIMIT set by the operator is left alone.
func TestMemoryLimitFromTheBudget(t *testing.T) {
	t.Cleanup(func() {
		memLimit.mu.Lock()
		memLimit.floor = 0
		adjustLimit()
		memLimit.mu.Unlock()
	})
	const budget = 64 << 20
	limitMemory(budget)
	if got := debug.SetMemoryLimit(-1); got < runtimeBase+budget || got > 2*(runtimeBase+budget) {
		t.Fatalf("limit %d with memory_budget %d, want %d (or a little more)", got, budget, runtimeBase+budget)
	}

	live := make([]byte, 3*(runtimeBase+budget)/2) // live past the floor
	for i := range live {
		live[i] = byte(i)
	}
	want := int64(len(live)) * 3 / 2
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) < want && time.Now().Before(deadline) {
		runtime.GC() // the limit follows after a collection
		time.Sleep(10 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got < want || got > 2*want {
		t.Fatalf("limit %d with %d bytes live, want %d (or a little more)", got, len(live), want)
	}
	runtime.KeepAlive(live)

	t.Setenv("GOMEMLIMIT", "1GiB")
	old := debug.SetMemoryLimit(1 << 30)
	defer debug.SetMemoryLimit(old)
	limitMemory(2 << 30)
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("limit %d with GOMEMLIMIT=1GiB, want it left at 1GiB", got)
	}
}
