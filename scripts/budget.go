package scripts

import (
	lua "github.com/yuin/gopher-lua"
)

// budget is the memory one call may take through the built-ins that build
// strings in Go code: `..`, string.rep, string.format, table.concat, gsub,
// re.*, utf8.* and the message readers. Those are the only ways a script
// can ask for megabytes in one step, and they run where the watchdog
// cannot interrupt them, so each checks its result before building it and
// charges it to the call that asked: Go cannot measure a goroutine's
// allocations, and the process heap is shared with every other call
// running at the same time. What the VM allocates an instruction at a time
// (tables, closures) the call measures itself when the heap grows
// (footprint.go, watchdog.go).
//
// Strings under chargeFrom bytes are not counted: a loop of small edits is
// bounded by time, and counting every small string would stop an
// innocent script that builds a header a piece at a time.
type budget struct {
	limit int64 // the script's memory bound
	used  int64 // bytes of large strings built by the running call
}

const chargeFrom = 64 << 10

// charge accounts for a string of n bytes that what is about to build,
// and raises a Lua error instead if it would go over the bound. Only the
// state's own goroutine calls it.
func (b *budget) charge(L *lua.LState, n int64, what string) {
	if n > b.limit {
		L.RaiseError("%s would build a string of about %d bytes, over the script memory limit of %d", what, n, b.limit)
	}
	if n < chargeFrom {
		return
	}
	b.used += n
	if b.used > b.limit {
		L.RaiseError("%s: the strings this call built add up to %d MB, over the script memory limit of %d MB", what, b.used>>20, b.limit>>20)
	}
}

// fits refuses, before it is built, a result of about n bytes over the
// bound that a built-in would make in one step (a table of a header's
// fields); one within it is not added up here: while the script holds it,
// it counts in the call's footprint.
func (b *budget) fits(L *lua.LState, n int64, what string) {
	if n > b.limit {
		L.RaiseError("%s would take about %d MB, over the script memory limit of %d MB", what, n>>20, b.limit>>20)
	}
}

// reset begins a new call.
func (b *budget) reset() { b.used = 0 }
