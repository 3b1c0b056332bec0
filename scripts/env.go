package scripts

import (
	lua "github.com/yuin/gopher-lua"
)

// Nothing one call of filter assigns may be seen by the next: not a global
// table that grows by 8 MB a message, not a redefined string.lower, not a
// counter kept in a top-level local. Lua 5.1 keeps a function's globals in
// its environment table (fn.Env), and a closure takes the environment of
// the function that made it; so a script's top level runs with a new table
// as its environment, and filter and everything else the top level defines
// have that table for their globals. What a call changes there, or in
// anything else the top level made, is found after the call, and the top
// level then runs again in a new environment before the next one
// (pristine.go). The compiled code and the Lua state are kept: only the
// values are new.
//
// An environment falls back (__index) on the state's sandbox: the global
// table where the libraries and mailflow's API were opened. The sandbox
// lives as long as the state, so a script must not be able to change it,
// nor anything reachable from it:
//
//   - Each library table (string, table, math, re, utf8, log, store, srs)
//     is replaced by an empty read-only view: reading a field finds the
//     library's, setting one is an error. rawset, table.insert,
//     table.remove and table.sort, which write without asking, refuse a
//     view too. The library tables themselves are out of reach.
//   - The metatable strings share is a new table of ours whose __index is
//     the string library; getmetatable("") gives a read-only view of it.
//     (gopher-lua makes the string library its own metatable, so that
//     string.__index = f would have changed every string's methods.)
//   - The metatables of msg, state, parts, verdicts and environments are
//     protected (__metatable): getmetatable gives false, and setmetatable
//     refuses to change them.
//   - _G is the environment, not the sandbox.
//
// So a change to the sandbox fails where the script makes it, and a new
// global is gone by the next call. The only ways to keep anything from one
// message to the next are state and store, which are bounded. Each state
// has a sandbox of its own, and a state serves one call at a time: calls
// running at once, of one script or of several, share nothing Lua.

// sandbox is the read-only part of one state's globals.
type sandbox struct {
	globals *lua.LTable            // the libraries and the API; never seen by a script
	envMeta *lua.LTable            // every environment's metatable: falls back on globals
	views   map[*lua.LTable]string // read-only views, by the name of their library
	fixed   map[lua.LValue]bool    // everything above and reachable from it: no script changes it
}

// freeze makes the state's globals the read-only sandbox described above.
// It runs once per state, after everything a script sees has been opened.
func freeze(L *lua.LState) *sandbox {
	g := L.G.Global
	sb := &sandbox{globals: g, views: map[*lua.LTable]string{}}

	// Raw writes refuse the views before the views exist.
	guard := func(lib *lua.LTable, name, what string) {
		orig := lib.RawGetString(name).(*lua.LFunction)
		lib.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			sb.mustWrite(L, L.CheckTable(1), what)
			return callThrough(L, orig)
		}))
	}
	guard(g, "rawset", "rawset")
	tab := g.RawGetString("table").(*lua.LTable)
	for _, name := range []string{"insert", "remove", "sort"} {
		guard(tab, name, "table."+name)
	}

	str := g.RawGetString("string").(*lua.LTable)
	str.RawSetString("__index", lua.LNil) // it was its own metatable
	var libs []string
	g.ForEach(func(k, v lua.LValue) {
		if _, ok := v.(*lua.LTable); ok && k.String() != "_G" {
			libs = append(libs, k.String())
		}
	})
	for _, name := range libs {
		g.RawSetString(name, sb.view(L, name, g.RawGetString(name).(*lua.LTable)))
	}
	g.RawSetString("_G", lua.LNil)

	strMeta := L.NewTable()
	strMeta.RawSetString("__index", str)
	shown := L.NewTable()
	shown.RawSetString("__index", g.RawGetString("string"))
	strMeta.RawSetString("__metatable", sb.view(L, "the string metatable", shown))
	L.SetMetatable(lua.LString(""), strMeta)

	for _, typ := range []string{messageType, partType, verdictType} {
		protect(L.GetTypeMetatable(typ))
	}
	g.ForEach(func(_, v lua.LValue) {
		if ud, ok := v.(*lua.LUserData); ok {
			protect(ud.Metatable)
		}
	})

	sb.envMeta = L.NewTable()
	sb.envMeta.RawSetString("__index", g)
	protect(sb.envMeta)
	sb.fixed = reachable(sb.envMeta, strMeta, L.G.Registry)
	return sb
}

// reachable is the set of tables, functions and userdata reachable from
// roots.
func reachable(roots ...lua.LValue) map[lua.LValue]bool {
	seen := map[lua.LValue]bool{}
	todo := roots
	for len(todo) > 0 {
		v := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch v.(type) {
		case *lua.LTable, *lua.LFunction, *lua.LUserData:
			if seen[v] {
				continue
			}
			seen[v] = true
		default:
			continue
		}
		switch v := v.(type) {
		case *lua.LTable:
			v.ForEach(func(k, val lua.LValue) { todo = append(todo, k, val) })
			todo = append(todo, v.Metatable)
		case *lua.LFunction:
			if v.Env != nil {
				todo = append(todo, v.Env)
			}
			for _, up := range v.Upvalues {
				todo = append(todo, up.Value())
			}
		case *lua.LUserData:
			todo = append(todo, v.Metatable)
			if v.Env != nil {
				todo = append(todo, v.Env)
			}
		}
	}
	return seen
}

// view returns an empty table that reads through to lib and refuses writes.
func (sb *sandbox) view(L *lua.LState, name string, lib *lua.LTable) *lua.LTable {
	mt := L.NewTable()
	mt.RawSetString("__index", lib)
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("%s.%s cannot be changed: the libraries are shared by every message and read-only (keep a function of your own in a local)", name, L.ToStringMeta(L.Get(2)))
		return 0
	}))
	protect(mt)
	v := L.CreateTable(0, 0)
	v.Metatable = mt
	sb.views[v] = name
	return v
}

// mustWrite raises an error when t is a read-only view.
func (sb *sandbox) mustWrite(L *lua.LState, t *lua.LTable, what string) {
	if t.Metatable == lua.LNil {
		return // a plain table, as nearly always
	}
	if name, ok := sb.views[t]; ok {
		L.RaiseError("%s: %s is read-only: the libraries are shared by every message", what, name)
	}
}

// protect sets __metatable, so that getmetatable gives false and
// setmetatable refuses to replace the metatable.
func protect(mt lua.LValue) {
	if t, ok := mt.(*lua.LTable); ok {
		t.RawSetString("__metatable", lua.LFalse)
	}
}

// newEnv makes a global environment for the top level. It is made with
// room for a few names (_G, filter, a setting or two): a table given its
// first name later makes room for 32, 2.7 KB.
func (sb *sandbox) newEnv(L *lua.LState) *lua.LTable {
	env := L.CreateTable(0, 4)
	env.Metatable = sb.envMeta
	env.RawSetString("_G", env)
	return env
}
