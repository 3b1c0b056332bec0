package scripts

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// boundPatterns replaces string.find, match, gmatch and gsub with ones on
// mailflow's bounded matcher (pattern.go); gsub also refuses a result over
// max bytes.
func boundPatterns(L *lua.LState, str *lua.LTable, b *budget) {
	str.RawSetString("find", L.NewFunction(func(L *lua.LState) int { return strFind(L, true) }))
	str.RawSetString("match", L.NewFunction(func(L *lua.LState) int { return strFind(L, false) }))
	str.RawSetString("gmatch", L.NewFunction(strGmatch))
	str.RawSetString("gsub", L.NewFunction(func(L *lua.LState) int { return strGsub(L, b) }))
}

// guarded runs f, turning a malformed pattern into a Lua error and the
// context's end into one that says the match was stopped.
func guarded(L *lua.LState, f func()) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case patternError:
			L.RaiseError("%s", r.msg)
		case patternStopped:
			L.RaiseError("pattern matching stopped: %v", r.err)
		default:
			panic(r)
		}
	}()
	f()
}

func pushCaptures(L *lua.LState, caps []any) int {
	for _, c := range caps {
		switch c := c.(type) {
		case string:
			L.Push(lua.LString(c))
		case int:
			L.Push(lua.LNumber(c))
		}
	}
	return len(caps)
}

// startIndex is Lua 5.1's init argument made a 0-based index: negative
// counts from the end, and past the end is the end.
func startIndex(init, n int) int {
	if init < 0 {
		init = n + init + 1
		if init < 1 {
			init = 1
		}
	} else if init == 0 {
		init = 1
	}
	return min(init-1, n)
}

// strFind is string.find (find) and string.match.
func strFind(L *lua.LState, find bool) int {
	src, pat := L.CheckString(1), L.CheckString(2)
	start := startIndex(L.OptInt(3, 1), len(src))
	if find && (lua.LVAsBool(L.Get(4)) || noSpecials(pat)) {
		if i := strings.Index(src[start:], pat); i >= 0 {
			L.Push(lua.LNumber(start + i + 1))
			L.Push(lua.LNumber(start + i + len(pat)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	n := 0
	guarded(L, func() {
		m := &matcher{src: src, pat: pat, ctx: L.Context()}
		p, anchor := 0, len(pat) > 0 && pat[0] == '^'
		if anchor {
			p = 1
		}
		for s := start; ; s++ {
			m.level, m.depth = 0, 0
			if e := m.match(s, p); e != -1 {
				if find {
					L.Push(lua.LNumber(s + 1))
					L.Push(lua.LNumber(e))
					n = 2 + pushCaptures(L, m.captures(s, e, false))
				} else {
					n = pushCaptures(L, m.captures(s, e, true))
				}
				return
			}
			if s >= len(src) || anchor {
				break
			}
		}
		L.Push(lua.LNil)
		n = 1
	})
	return n
}

// strGmatch is string.gmatch: an iterator over the matches.
func strGmatch(L *lua.LState) int {
	src, pat := L.CheckString(1), L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		n := 0
		guarded(L, func() {
			m := &matcher{src: src, pat: pat, ctx: L.Context()}
			for s := pos; s <= len(src); s++ {
				m.level, m.depth = 0, 0
				if e := m.match(s, 0); e != -1 {
					pos = e
					if e == s {
						pos++ // an empty match: go on at least one position
					}
					n = pushCaptures(L, m.captures(s, e, true))
					return
				}
			}
			pos = len(src) + 1
		})
		return n
	}))
	return 1
}

// strGsub is string.gsub, its result bounded by max bytes.
func strGsub(L *lua.LState, bud *budget) int {
	src, pat := L.CheckString(1), L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	var b strings.Builder
	count := 0
	grow := func(s string) {
		if int64(b.Len()+len(s)) > bud.limit {
			bud.charge(L, int64(b.Len()+len(s)), "string.gsub")
		}
		b.WriteString(s)
	}
	guarded(L, func() {
		m := &matcher{src: src, pat: pat, ctx: L.Context()}
		p, anchor := 0, len(pat) > 0 && pat[0] == '^'
		if anchor {
			p = 1
		}
		s := 0
		for count < maxN {
			m.level, m.depth = 0, 0
			e := m.match(s, p)
			if e != -1 {
				count++
				grow(replacement(L, m, repl, s, e))
			}
			switch {
			case e != -1 && e > s:
				s = e
			case s < len(src):
				grow(src[s : s+1])
				s++
			default:
				s = len(src) + 1
			}
			if s > len(src) || anchor {
				break
			}
		}
		if s < len(src) {
			grow(src[s:])
		}
	})
	bud.charge(L, int64(b.Len()), "string.gsub")
	L.Push(lua.LString(b.String()))
	L.Push(lua.LNumber(count))
	return 2
}

// replacement is what a match from s to e becomes in gsub.
func replacement(L *lua.LState, m *matcher, repl lua.LValue, s, e int) string {
	whole := m.src[s:e]
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		t := lua.LVAsString(r)
		var b strings.Builder
		for i := 0; i < len(t); i++ {
			if t[i] != patternEscape || i+1 == len(t) {
				b.WriteByte(t[i])
				continue
			}
			i++
			switch c := t[i]; {
			case c == '0':
				b.WriteString(whole)
			case isdigit(c):
				switch v := m.oneCapture(int(c-'1'), s, e).(type) {
				case string:
					b.WriteString(v)
				case int:
					b.WriteString(lua.LNumber(v).String())
				}
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	case *lua.LTable:
		v = L.GetTable(r, captureValue(m.oneCapture(0, s, e)))
	case *lua.LFunction:
		caps := m.captures(s, e, true)
		L.Push(r)
		for _, c := range caps {
			L.Push(captureValue(c))
		}
		L.Call(len(caps), 1)
		v = L.Get(-1)
		L.Pop(1)
	}
	switch v := v.(type) {
	case nil:
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	default:
		if v == lua.LNil || v == lua.LFalse {
			return whole // keep the original
		}
		L.RaiseError("invalid replacement value (a %s)", v.Type())
	}
	return whole
}

func captureValue(c any) lua.LValue {
	switch c := c.(type) {
	case string:
		return lua.LString(c)
	case int:
		return lua.LNumber(c)
	}
	return lua.LNil
}
