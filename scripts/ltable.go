package scripts

import (
	"reflect"
	"sync"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// What a table holds, read where gopher-lua's API does not say: how much
// room its parts take (footprint.go) and whether a call changed them
// (pristine.go), which are the list of every key it was ever given, the
// capacity of its array part, the room of its Go maps. These are read on
// the state's own goroutine, never written, and checked when the package
// starts: if gopher-lua's LTable or Go's maps change shape, the package
// fails to start (LTable) or counts maps as it must guess (maps), rather
// than read wrong.

// tableParts points into one table's parts.
type tableParts struct {
	array   *[]lua.LValue
	dict    *map[lua.LValue]lua.LValue
	strdict *map[string]lua.LValue
	keys    *[]lua.LValue // every key given but array ones, deleted ones too
	k2i     *map[lua.LValue]int
}

// partOffsets are where LTable keeps its parts, checked against their types.
var partOffsets = func() (o struct{ array, dict, strdict, keys, k2i uintptr }) {
	t := reflect.TypeFor[lua.LTable]()
	for _, f := range []struct {
		name string
		typ  reflect.Type
		at   *uintptr
	}{
		{"array", reflect.TypeFor[[]lua.LValue](), &o.array},
		{"dict", reflect.TypeFor[map[lua.LValue]lua.LValue](), &o.dict},
		{"strdict", reflect.TypeFor[map[string]lua.LValue](), &o.strdict},
		{"keys", reflect.TypeFor[[]lua.LValue](), &o.keys},
		{"k2i", reflect.TypeFor[map[lua.LValue]int](), &o.k2i},
	} {
		sf, ok := t.FieldByName(f.name)
		if !ok || sf.Type != f.typ {
			panic("scripts: gopher-lua's LTable has no " + f.name + " of type " + f.typ.String())
		}
		*f.at = sf.Offset
	}
	return o
}()

func partsOf(t *lua.LTable) tableParts {
	p := unsafe.Pointer(t)
	return tableParts{
		array:   (*[]lua.LValue)(unsafe.Add(p, partOffsets.array)),
		dict:    (*map[lua.LValue]lua.LValue)(unsafe.Add(p, partOffsets.dict)),
		strdict: (*map[string]lua.LValue)(unsafe.Add(p, partOffsets.strdict)),
		keys:    (*[]lua.LValue)(unsafe.Add(p, partOffsets.keys)),
		k2i:     (*map[lua.LValue]int)(unsafe.Add(p, partOffsets.k2i)),
	}
}

// hashed counts the entries of a table's hash parts.
func (p tableParts) hashed() int { return len(*p.strdict) + len(*p.dict) }

// arrayEntries counts the entries of its array part that are not nil.
func (p tableParts) arrayEntries() int {
	n := 0
	for _, v := range *p.array {
		if v != lua.LNil && v != nil {
			n++
		}
	}
	return n
}

// mapSlots is how many entries a map has room for, 0 for a nil map. Go
// does not say; its maps (internal/runtime/maps, Go 1.24 on) start with
// their entry count, a seed, and a directory of tables (none for a map of
// one group of eight), each table with its capacity. mapsReadable checks
// that layout against maps of known room the first time it is asked (not
// when the package starts: building a map of 5,000 was a tenth of the
// start-up of every mailflow command, scripts or not); where
// it does not hold, a map counts as the 32 entries gopher-lua asks for, or
// its length if more (an estimate that errs large).
func mapSlots[M ~map[K]V, K comparable, V any](m *M) int {
	if *m == nil {
		return 0
	}
	if !mapsReadable() {
		return max(len(*m), 32)
	}
	return goMapSlots(*(*unsafe.Pointer)(unsafe.Pointer(m)))
}

type goMap struct {
	used   uint64
	seed   uintptr
	dirPtr unsafe.Pointer
	dirLen int
}

type goMapTable struct {
	used, capacity uint16
}

func goMapSlots(p unsafe.Pointer) int {
	m := (*goMap)(p)
	if m.dirLen == 0 {
		return 8 // one group
	}
	// A table that serves several directory entries sits in consecutive
	// ones.
	slots := 0
	var last unsafe.Pointer
	for _, t := range unsafe.Slice((*unsafe.Pointer)(m.dirPtr), m.dirLen) {
		if t != last {
			slots += int((*goMapTable)(t).capacity)
			last = t
		}
	}
	return slots
}

var mapsReadable = sync.OnceValue(func() bool {
	slots := func(m map[string]lua.LValue) int { return goMapSlots(*(*unsafe.Pointer)(unsafe.Pointer(&m))) }
	big := make(map[string]lua.LValue)
	for i := range 5000 {
		big[string(rune(i+0x100))] = lua.LTrue
	}
	if slots(make(map[string]lua.LValue, 2)) != 8 {
		return false
	}
	n32, nBig := slots(make(map[string]lua.LValue, 32)), slots(big)
	return n32 >= 32 && n32 <= 128 && nBig >= 5000 && nBig <= 16384
})
