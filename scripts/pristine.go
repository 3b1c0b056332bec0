package scripts

import (
	lua "github.com/yuin/gopher-lua"
)

// A call must find the script's top level as the top level left it, not as
// the call before changed it (env.go). Running the top level again for
// every message would do that, at a cost the Chain3 bench put at 40% more
// per message; so the top level runs once per state, and what it
// made — its globals, the tables and functions reachable from them and
// from its functions' upvalues (the top-level locals), the modules it
// required — is recorded as it stands (snapshot). After each call the
// record is checked (same); if anything in it changed, in content or in
// the room it takes, the state runs the top level again, in a new
// environment, before its next call, and what the call made is garbage.
// A script that changes nothing there (nearly all: a filter reads its
// settings) pays a check of its top-level values per call; one that
// changes them pays its top level per call. Either way no call sees what
// another assigned.

// pristine is the record of what a top level made.
type pristine struct {
	tables []tableShot
	fns    []fnShot
	uds    []udShot
	loaded map[string]lua.LValue
}

type tableShot struct {
	t       *lua.LTable
	meta    lua.LValue
	names   []string     // its string keys (nearly all)
	byName  []lua.LValue // and their values
	pairs   []lua.LValue // every other key and value, in turn
	entries int          // how many in all
	room    int          // the array part's capacity
	keys    int          // the length of its list of keys ever given
}

type fnShot struct {
	fn  *lua.LFunction
	env *lua.LTable
	ups []lua.LValue
}

type udShot struct {
	ud   *lua.LUserData
	meta lua.LValue
	env  *lua.LTable
}

// snapshot records what is reachable from env and the modules loaded,
// but the sandbox (which no script can change).
func (sb *sandbox) snapshot(env *lua.LTable, loaded map[string]lua.LValue) *pristine {
	p := &pristine{loaded: map[string]lua.LValue{}}
	seen := map[lua.LValue]bool{}
	todo := []lua.LValue{env}
	for name, mod := range loaded {
		p.loaded[name] = mod
		todo = append(todo, mod)
	}
	push := func(v lua.LValue) {
		switch v.(type) {
		case *lua.LTable, *lua.LFunction, *lua.LUserData:
			if !seen[v] && !sb.fixed[v] {
				seen[v] = true
				todo = append(todo, v)
			}
		}
	}
	seen[env] = true
	for len(todo) > 0 {
		v := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch v := v.(type) {
		case *lua.LTable:
			parts := partsOf(v)
			s := tableShot{t: v, meta: v.Metatable, room: cap(*parts.array), keys: len(*parts.keys)}
			v.ForEach(func(k, val lua.LValue) {
				if name, ok := k.(lua.LString); ok {
					s.names, s.byName = append(s.names, string(name)), append(s.byName, val)
				} else {
					s.pairs = append(s.pairs, k, val)
				}
				s.entries++
				push(k)
				push(val)
			})
			push(v.Metatable)
			p.tables = append(p.tables, s)
		case *lua.LFunction:
			s := fnShot{fn: v, env: v.Env}
			for _, up := range v.Upvalues {
				s.ups = append(s.ups, up.Value())
				push(up.Value())
			}
			if v.Env != nil {
				push(v.Env)
			}
			p.fns = append(p.fns, s)
		case *lua.LUserData:
			p.uds = append(p.uds, udShot{ud: v, meta: v.Metatable, env: v.Env})
			push(v.Metatable)
			if v.Env != nil {
				push(v.Env)
			}
		}
	}
	return p
}

// same reports whether everything recorded is as it was, and no module was
// loaded since.
func (p *pristine) same(loaded map[string]lua.LValue) bool {
	if len(loaded) != len(p.loaded) {
		return false
	}
	for name, mod := range loaded {
		if p.loaded[name] != mod {
			return false
		}
	}
	for i := range p.fns {
		s := &p.fns[i]
		if s.fn.Env != s.env || len(s.fn.Upvalues) != len(s.ups) {
			return false
		}
		for j, up := range s.fn.Upvalues {
			if up.Value() != s.ups[j] {
				return false
			}
		}
	}
	for i := range p.uds {
		s := &p.uds[i]
		if s.ud.Metatable != s.meta || s.ud.Env != s.env {
			return false
		}
	}
	for i := range p.tables {
		if !p.tables[i].same() {
			return false
		}
	}
	return true
}

// same reports whether the table holds what it held and takes the room it
// took: a call that filled it and emptied it again has left its room
// behind.
func (s *tableShot) same() bool {
	t, parts := s.t, partsOf(s.t)
	if t.Metatable != s.meta || cap(*parts.array) != s.room || len(*parts.keys) != s.keys {
		return false
	}
	// Same entries as many as before, each with its value: the same table.
	if parts.hashed()+parts.arrayEntries() != s.entries {
		return false
	}
	for i, name := range s.names {
		if t.RawGetString(name) != s.byName[i] {
			return false
		}
	}
	for i := 0; i < len(s.pairs); i += 2 {
		if t.RawGet(s.pairs[i]) != s.pairs[i+1] {
			return false
		}
	}
	return true
}
