package scripts

import (
	"reflect"
	"sync"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// footprint estimates how many bytes of Lua values the running call holds:
// everything reachable from its stack (each frame's function and
// registers), its global environment and the modules it required. A state
// runs one call at a time and no call sees another's values (env.go), so
// that is what this call made and holds, with what the script's top level
// made for it, and nothing another call made: the memory bound is charged
// to the call that allocates, where the process heap cannot tell one call
// from another. Garbage is not counted: the collector takes it back.
//
// It must run on the state's own goroutine, between two instructions,
// when nothing changes under it: the watchdog asks, and the state answers
// from its context's Done (watchdog.go). It stops counting once past
// limit, so that a runaway's measure costs no more than the bound's worth.
//
// The sizes are gopher-lua's and Go's layouts, rounded up: a table's
// struct, its array and key list by capacity, its maps by their room
// (ltable.go); 16 bytes for a number's box, 16 for a string's header plus
// its bytes.
func footprint(v *vm, limit int64, stopped func() bool) int64 {
	walkMu.Lock()
	defer walkMu.Unlock()
	w := &walk
	w.limit, w.size, w.stopped = limit, 0, stopped
	if w.each == nil {
		w.each = w.pushValue // made once: a method value passed on is made anew each time
	}
	defer w.reset() // marks must come off whatever happens
	// The sandbox is not the call's, and stays: not counted.
	w.skip(v.sb.globals)
	w.skip(v.sb.envMeta)
	for view := range v.sb.views {
		w.skip(view)
	}

	L := v.L
	frames := map[uintptr]bool{}
	for level := 0; level < maxWalkLevels; level++ {
		dbg, ok := L.GetStack(level)
		if !ok {
			break
		}
		// A frame that made tail calls answers to several levels.
		frame := reflect.ValueOf(dbg).Elem().Field(0).Pointer()
		if frames[frame] {
			continue
		}
		frames[frame] = true
		if fn, err := L.GetInfo("f", dbg, lua.LNil); err == nil {
			w.push(fn)
		}
		for i := 1; ; i++ {
			name, val := L.GetLocal(dbg, i)
			if name == "" {
				break
			}
			w.push(val)
		}
	}
	if v.env != nil {
		w.push(v.env)
	}
	for _, mod := range v.loaded {
		if mod != loading { // shared by every state: not to be marked
			w.push(mod)
		}
	}
	w.run()
	return w.size
}

// maxWalkLevels bounds the stack levels looked at: a frame that made a
// million tail calls answers to a million levels, and the frames are at
// most callStackSize.
const maxWalkLevels = 100 * callStackSize

// Walks are rare (the watchdog asks when the heap grew) and take room:
// one walker, reused, serves them all in turn.
var (
	walkMu sync.Mutex
	walk   = walker{strs: map[*byte]struct{}{}}
)

// walker marks what it has counted in the values themselves, as a tracing
// collector does: a table's or userdata's metatable becomes walkMark, a
// function's environment walkEnv, and what was there is kept aside and put
// back when the walk ends. A set of addresses would do, at several times
// the cost per value, and this runs on a call that may hold millions.
type walker struct {
	limit, size int64
	todo        []lua.LValue
	tables      []*lua.LTable // marked, with no metatable of their own
	metas       []marked      // marked, with one
	fns         []*lua.LFunction
	envs        []*lua.LTable      // fns[i]'s environment
	strs        map[*byte]struct{} // the bytes of large strings counted
	each        func(k, v lua.LValue)
	stopped     func() bool
}

type marked struct {
	v    lua.LValue // *lua.LTable or *lua.LUserData
	meta lua.LValue
}

var (
	walkMark = &lua.LUserData{}
	walkEnv  = &lua.LTable{}
)

// Sizes, in bytes, of what a value costs beyond the 16 of the slot that
// holds it, measured on gopher-lua 1.1 and Go 1.26 (TestFootprintIsClose).
const (
	tableBytes    = 96  // an LTable
	arraySlot     = 16  // an LValue in a table's array
	strSlot       = 32  // a string key and its value in a Go map
	valueSlot     = 32  // an LValue key and its value in a Go map
	keyIndexSlot  = 24  // an LValue key and its index in a table's key index
	keySlot       = 16  // an LValue in a table's list of keys
	mapBytes      = 48  // a Go map's header
	functionBytes = 64  // an LFunction
	upvalueBytes  = 64  // an Upvalue and its pointer
	userdataBytes = 48  // an LUserData
	numberBox     = 16  // a float64 boxed by gopher-lua's allocator, with its share of the block
	stringHeader  = 16  // a string header boxed in an interface
	sharedString  = 256 // strings from this long are counted once however often held
)

// pushValue counts or pushes a table's value; its key was counted from
// the table's key list.
func (w *walker) pushValue(_, v lua.LValue) { w.push(v) }

// pushKey counts or pushes a key, but a number: those are counted in
// their slot.
func (w *walker) pushKey(k lua.LValue) {
	if _, ok := k.(lua.LNumber); !ok {
		w.push(k)
	}
}

// push counts a number or small string at once, and keeps anything else to
// be looked at: a table of a million strings must not make a list of a
// million.
func (w *walker) push(v lua.LValue) {
	switch v := v.(type) {
	case nil, *lua.LNilType, lua.LBool:
	case lua.LNumber:
		w.size += numberBox
	case lua.LString:
		// A small string is counted wherever it is held (its box and
		// bytes are usually its own); a large one once.
		if len(v) < sharedString {
			w.size += stringHeader + int64(len(v)+15)&^15 // the allocator's size classes
		} else if p := unsafe.StringData(string(v)); !w.counted(p) {
			w.size += stringHeader + int64(len(v))
		}
	default:
		w.todo = append(w.todo, v)
	}
}

func (w *walker) run() {
	for n := 0; len(w.todo) > 0 && w.size <= w.limit; n++ {
		if n%4096 == 0 && w.stopped() {
			return // the watchdog stopped the call: its measure no longer matters
		}
		v := w.todo[len(w.todo)-1]
		w.todo = w.todo[:len(w.todo)-1]
		switch v := v.(type) {
		case *lua.LTable:
			if v.Metatable == walkMark {
				continue
			}
			w.push(v.Metatable)
			w.markTable(v)
			w.size += tableSize(v)
			// Keys come from the table's list of every key it was
			// given, which keeps deleted ones (and so their strings).
			for _, k := range *partsOf(v).keys {
				w.pushKey(k)
			}
			v.ForEach(w.each)
		case *lua.LFunction:
			if v.Env == walkEnv {
				continue
			}
			if v.Env != nil {
				w.push(v.Env)
			}
			w.fns = append(w.fns, v)
			w.envs = append(w.envs, v.Env)
			v.Env = walkEnv
			w.size += functionBytes + upvalueBytes*int64(len(v.Upvalues))
			for _, up := range v.Upvalues {
				w.push(up.Value())
			}
		case *lua.LUserData:
			if v.Metatable == walkMark {
				continue
			}
			w.push(v.Metatable)
			if v.Env != nil {
				w.push(v.Env)
			}
			w.metas = append(w.metas, marked{v, v.Metatable})
			v.Metatable = walkMark
			w.size += userdataBytes
		}
	}
}

// skip marks v as counted without counting it.
func (w *walker) skip(v lua.LValue) {
	switch v := v.(type) {
	case *lua.LTable:
		w.markTable(v)
	}
}

func (w *walker) markTable(t *lua.LTable) {
	if t.Metatable == lua.LNil {
		w.tables = append(w.tables, t)
	} else {
		w.metas = append(w.metas, marked{t, t.Metatable})
	}
	t.Metatable = walkMark
}

// counted reports whether a large string's bytes were counted already, and
// notes them.
func (w *walker) counted(p *byte) bool {
	if _, ok := w.strs[p]; ok {
		return true
	}
	w.strs[p] = struct{}{}
	return false
}

// reset puts back what the walk marked and empties the walker for the next
// one. Lists that grew large are let go rather than kept: a walk that
// counted a runaway's million tables must not hold on to their room.
func (w *walker) reset() {
	for _, t := range w.tables {
		t.Metatable = lua.LNil
	}
	for _, m := range w.metas {
		switch v := m.v.(type) {
		case *lua.LTable:
			v.Metatable = m.meta
		case *lua.LUserData:
			v.Metatable = m.meta
		}
	}
	for i, fn := range w.fns {
		fn.Env = w.envs[i]
	}
	w.todo = shrink(w.todo)
	w.tables = shrink(w.tables)
	w.metas = shrink(w.metas)
	w.fns = shrink(w.fns)
	w.envs = shrink(w.envs)
	clear(w.strs)
	w.stopped = nil
}

func shrink[T any](s []T) []T {
	if cap(s) > 1<<14 {
		return nil
	}
	clear(s)
	return s[:0]
}

// tableSize is what a table's own parts take, its contents' values aside.
// Its hash parts are Go maps, whose room is not their length: gopher-lua
// makes a map for 32 entries the first time a table is given a string key
// (2.7 KB for a table of two fields), and a map keeps its room when keys
// are deleted. So they are counted by their room (mapSlots).
func tableSize(t *lua.LTable) int64 {
	p := partsOf(t)
	return tableBytes +
		arraySlot*int64(cap(*p.array)) +
		keySlot*int64(cap(*p.keys)) +
		mapSize(mapSlots(p.strdict), strSlot) +
		mapSize(mapSlots(p.dict), valueSlot) +
		mapSize(mapSlots(p.k2i), keyIndexSlot)
}

// mapSize is what a Go map with room for slots entries of slot bytes
// takes: groups of eight slots and a control word, and the map's header.
func mapSize(slots int, slot int64) int64 {
	if slots == 0 {
		return 0
	}
	return mapBytes + int64(slots)/8*(8+8*slot)
}
