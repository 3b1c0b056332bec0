package scripts

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// openLog defines log.debug/info/warn/error(text, key, value, ...) and
// print(...), both into the structured log with the message's fields.
func (v *vm) openLog() {
	L := v.L
	level := func(lv slog.Level) lua.LGFunction {
		return func(L *lua.LState) int {
			text := L.CheckString(1)
			var attrs []any
			for i := 2; i+1 <= L.GetTop(); i += 2 {
				attrs = append(attrs, L.Get(i).String(), luaToGo(L.Get(i+1)))
			}
			if L.GetTop() >= 2 && L.GetTop()%2 == 0 {
				attrs = append(attrs, "extra", L.Get(L.GetTop()).String())
			}
			v.logger().Log(context.Background(), lv, text, attrs...)
			return 0
		}
	}
	L.SetGlobal("log", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"debug": level(slog.LevelDebug),
		"info":  level(slog.LevelInfo),
		"warn":  level(slog.LevelWarn),
		"error": level(slog.LevelError),
	}))
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		parts := make([]string, L.GetTop())
		for i := range parts {
			parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
		}
		v.logger().Info(strings.Join(parts, "\t"))
		return 0
	}))
}

func luaToGo(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LNumber:
		return float64(v)
	case lua.LBool:
		return bool(v)
	case lua.LString:
		return string(v)
	}
	return v.String()
}

// sharedState is a script's `state` table. Lua tables belong to one state
// and the script runs on several, so state is a Go map behind a lock that
// all of the script's states share. It holds strings, numbers and booleans;
// state.add(key, n) adds atomically (state.x = state.x + 1 from two messages
// at once could lose one). It lives as long as the compiled script: a
// reload starts it empty.
type sharedState struct {
	mu     sync.Mutex
	values map[string]lua.LValue
	bytes  int64 // of keys and string values: bounded like the durable store
}

const maxStateKeys = 100_000

// stateSize is what a key and its value count against the state's bound.
func stateSize(key string, val lua.LValue) int64 {
	n := int64(len(key)) + 16
	if s, ok := val.(lua.LString); ok {
		n += int64(len(s))
	}
	return n
}

func (v *vm) openState() {
	L := v.L
	st := v.s.shared
	maxBytes := v.s.limits.StoreMaxBytes
	if maxBytes <= 0 {
		maxBytes = defaultStoreBytes
	}
	add := L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(1)
		n := L.OptNumber(2, 1)
		st.mu.Lock()
		prev, had := st.values[key]
		if !had && len(st.values) >= maxStateKeys {
			st.mu.Unlock()
			L.RaiseError("state is full (%d keys)", maxStateKeys)
		}
		old, _ := prev.(lua.LNumber)
		sum := old + n
		if had {
			st.bytes -= stateSize(key, prev)
		}
		st.values[key] = sum
		st.bytes += stateSize(key, sum)
		st.mu.Unlock()
		L.Push(sum)
		return 1
	})
	ud := L.NewUserData()
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		if key == "add" {
			L.Push(add)
			return 1
		}
		st.mu.Lock()
		val, ok := st.values[key]
		st.mu.Unlock()
		if !ok {
			val = lua.LNil
		}
		L.Push(val)
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		key := L.CheckString(2)
		val := L.Get(3)
		if key == "add" {
			L.RaiseError("state.add is the atomic counter function; use another key")
		}
		switch val.(type) {
		case lua.LString, lua.LNumber, lua.LBool, *lua.LNilType:
		default:
			L.RaiseError("state.%s: state holds strings, numbers and booleans, not a %s", key, val.Type())
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		prev, exists := st.values[key]
		if exists {
			st.bytes -= stateSize(key, prev)
		}
		if val == lua.LNil {
			delete(st.values, key)
			return 0
		}
		if !exists && len(st.values) >= maxStateKeys {
			L.RaiseError("state is full (%d keys)", maxStateKeys)
		}
		if st.bytes+stateSize(key, val) > maxBytes {
			if exists {
				st.bytes += stateSize(key, prev)
			}
			L.RaiseError("state is full: its keys and values would take more than %d MB (store_max_bytes); use store.* with a ttl for data that grows", maxBytes>>20)
		}
		st.values[key] = val
		st.bytes += stateSize(key, val)
		return 0
	}))
	L.SetMetatable(ud, mt)
	L.SetGlobal("state", ud)
}

// Regular expressions (Go's RE2 syntax: linear time, no catastrophic
// backtracking) for what Lua patterns cannot say.
var regexpCache sync.Map // pattern → *regexp.Regexp
var regexpCount int64
var regexpMu sync.Mutex

const maxCachedRegexps = 1000

func compileRegexp(L *lua.LState, pattern string) *regexp.Regexp {
	if re, ok := regexpCache.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		L.RaiseError("re: %v", err)
	}
	regexpMu.Lock()
	if regexpCount < maxCachedRegexps {
		regexpCount++
		regexpCache.Store(pattern, re)
	}
	regexpMu.Unlock()
	return re
}

func openRegexp(L *lua.LState, b *budget) {
	L.SetGlobal("re", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		// re.match(pattern, s) → true if s contains a match.
		"match": func(L *lua.LState) int {
			re := compileRegexp(L, L.CheckString(1))
			L.Push(lua.LBool(re.MatchString(L.CheckString(2))))
			return 1
		},
		// re.find(pattern, s) → the match and its captures, or nil.
		"find": func(L *lua.LState) int {
			re := compileRegexp(L, L.CheckString(1))
			m := re.FindStringSubmatch(L.CheckString(2))
			if m == nil {
				L.Push(lua.LNil)
				return 1
			}
			for _, s := range m {
				L.Push(lua.LString(s))
			}
			return len(m)
		},
		// re.find_all(pattern, s [, n]) → a list of every match.
		"find_all": func(L *lua.LState) int {
			re := compileRegexp(L, L.CheckString(1))
			n := L.OptInt(3, -1)
			if n < 0 || n > maxMatches {
				n = maxMatches + 1
			}
			found := re.FindAllString(L.CheckString(2), n)
			if len(found) > maxMatches {
				L.RaiseError("re.find_all: more than %d matches; pass a count", maxMatches)
			}
			b.charge(L, int64(len(found))*40, "re.find_all")
			t := L.CreateTable(len(found), 0)
			for _, s := range found {
				t.Append(lua.LString(s))
			}
			L.Push(t)
			return 1
		},
		// re.replace(pattern, s, repl) → s with every match replaced; $1 in
		// repl is the first capture.
		"replace": func(L *lua.LState) int {
			re := compileRegexp(L, L.CheckString(1))
			out := re.ReplaceAllString(L.CheckString(2), L.CheckString(3))
			b.charge(L, int64(len(out)), "re.replace")
			L.Push(lua.LString(out))
			return 1
		},
		// re.split(pattern, s) → the pieces between matches.
		"split": func(L *lua.LState) int {
			re := compileRegexp(L, L.CheckString(1))
			pieces := re.Split(L.CheckString(2), maxMatches+1)
			if len(pieces) > maxMatches {
				L.RaiseError("re.split: more than %d pieces", maxMatches)
			}
			b.charge(L, int64(len(pieces))*40, "re.split")
			t := L.CreateTable(len(pieces), 0)
			for _, s := range pieces {
				t.Append(lua.LString(s))
			}
			L.Push(t)
			return 1
		},
	}))
}

// utf8Funcs are the UTF-8 helpers Lua 5.1 lacks. Those that build a
// string charge it to the call.
func utf8Funcs(b *budget) map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"len": func(L *lua.LState) int {
			L.Push(lua.LNumber(utf8.RuneCountInString(L.CheckString(1))))
			return 1
		},
		"valid": func(L *lua.LState) int {
			L.Push(lua.LBool(utf8.ValidString(L.CheckString(1))))
			return 1
		},
		"lower": func(L *lua.LState) int {
			s := L.CheckString(1)
			b.charge(L, int64(len(s)), "utf8.lower")
			L.Push(lua.LString(strings.ToLower(s)))
			return 1
		},
		"upper": func(L *lua.LState) int {
			s := L.CheckString(1)
			b.charge(L, int64(len(s)), "utf8.upper")
			L.Push(lua.LString(strings.ToUpper(s)))
			return 1
		},
		// utf8.sub(s, i [, j]) counts characters, not bytes; 1-based, inclusive.
		"sub": func(L *lua.LState) int {
			r := []rune(L.CheckString(1))
			i, j := L.CheckInt(2), L.OptInt(3, len(r))
			if i < 0 {
				i = len(r) + i + 1
			}
			if j < 0 {
				j = len(r) + j + 1
			}
			i = max(i, 1)
			j = min(j, len(r))
			if i > j {
				L.Push(lua.LString(""))
				return 1
			}
			L.Push(lua.LString(string(r[i-1 : j])))
			return 1
		},
	}
}

// maxResults bounds the values one built-in may return or put in a table
// (unpack): Go code the watchdog cannot interrupt.
const maxResults = 100_000

// maxMatches bounds the matches of re.find_all and re.split. Go's regexp
// cannot be stopped part-way, and finding 100,000 matches took up to
// 2.7 s on two loaded cores under the race detector: a call could overrun
// its time bound by that much. 10,000 costs a tenth, and is more matches
// than a mail filter needs.
const maxMatches = 10_000

// capTables bounds unpack and table.concat, which run as Go code the
// watchdog cannot stop: unpack(t, 1, 1e8) would push a hundred million
// values, table.concat build a string of any size.
func capTables(L *lua.LState, b *budget) {
	L.SetGlobal("unpack", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		i := L.OptInt(2, 1)
		j := L.OptInt(3, t.Len())
		if j-i+1 > maxResults {
			L.RaiseError("unpack: %d values are more than %d", j-i+1, maxResults)
		}
		n := 0
		for k := i; k <= j; k++ {
			L.Push(t.RawGetInt(k))
			n++
		}
		return n
	}))
	// table.concat of our own: gopher-lua's takes seconds on a table of a
	// million strings, out of the watchdog's reach; this one sizes the
	// result first and builds it once.
	tab := L.GetGlobal("table").(*lua.LTable)
	tab.RawSetString("concat", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		sep := L.OptString(2, "")
		i := L.OptInt(3, 1)
		j := L.OptInt(4, t.Len())
		parts := make([]string, 0, max(0, min(j-i+1, maxResults)))
		size := int64(0)
		for k := i; k <= j; k++ {
			var part string
			switch v := t.RawGetInt(k).(type) {
			case lua.LString:
				part = string(v)
			case lua.LNumber:
				part = v.String()
			default:
				L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
			}
			size += int64(len(part))
			if k > i {
				size += int64(len(sep))
			}
			if size > b.limit {
				b.charge(L, size, "table.concat")
			}
			parts = append(parts, part)
		}
		b.charge(L, size, "table.concat")
		L.Push(lua.LString(strings.Join(parts, sep)))
		return 1
	}))
}

// capStrings bounds the string functions that can build a large string in
// one call, so that string.rep("x", 1e10) fails at once instead of
// allocating; the watchdog bounds everything else.
func capStrings(L *lua.LState, str *lua.LTable, b *budget) {
	rep := str.RawGetString("rep").(*lua.LFunction)
	str.RawSetString("rep", L.NewFunction(func(L *lua.LState) int {
		s := L.CheckString(1)
		n := L.CheckInt64(2)
		sep := L.OptString(3, "")
		if n > 0 {
			if n > b.limit {
				n = b.limit + 1 // the product below cannot overflow
			}
			b.charge(L, (int64(len(s))+int64(len(sep)))*n, "string.rep")
		}
		return callThrough(L, rep)
	}))
	format := str.RawGetString("format").(*lua.LFunction)
	str.RawSetString("format", L.NewFunction(func(L *lua.LState) int {
		if w := widestField(L.CheckString(1)); w > 10_000 {
			L.RaiseError("string.format: field width %d is too large", w)
		}
		size := int64(0)
		for i := 1; i <= L.GetTop(); i++ {
			if s, ok := L.Get(i).(lua.LString); ok {
				size += int64(len(s))
			}
		}
		b.charge(L, size, "string.format")
		return callThrough(L, format)
	}))
}

// callThrough calls fn with the current arguments and returns its results.
func callThrough(L *lua.LState, fn *lua.LFunction) int {
	n := L.GetTop()
	L.Push(fn)
	for i := 1; i <= n; i++ {
		L.Push(L.Get(i))
	}
	L.Call(n, lua.MultRet)
	return L.GetTop() - n
}

// widestField returns the largest width or precision in a format string.
func widestField(f string) int {
	widest := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		n := 0
		for i++; i < len(f) && strings.IndexByte("-+ #0.123456789", f[i]) >= 0; i++ {
			if c := f[i]; c >= '0' && c <= '9' {
				n = n*10 + int(c-'0')
				if n > 1_000_000 {
					n = 1_000_000
				}
			} else {
				n = 0
			}
			widest = max(widest, n)
		}
	}
	return widest
}

// openTime defines now() (Unix seconds) and date([seconds]) (an RFC 5322
// date, for Resent-Date and the like), since os.date is not in the sandbox.
func openTime(L *lua.LState) {
	L.SetGlobal("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}))
	L.SetGlobal("date", L.NewFunction(func(L *lua.LState) int {
		t := time.Now()
		if L.GetTop() >= 1 {
			t = time.Unix(L.CheckInt64(1), 0)
		}
		L.Push(lua.LString(t.Format(time.RFC1123Z)))
		return 1
	}))
}
