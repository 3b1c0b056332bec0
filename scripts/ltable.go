package scripts

import (
	"reflect"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// What a table holds, read where gopher-lua's API does not say: whether a
// call changed it (pristine.go), which needs the list of every key it was
// ever given and the capacity of its array part. These are read on the
// state's own goroutine, never written, and checked when the package
// starts: if gopher-lua's LTable changes shape, the package fails to start
// rather than read wrong.

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
