package scripts

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"
)

// Our bounded pattern and table functions give what gopher-lua's own give, case by
// case (a differential test): matches, captures, positions, gsub with
// strings, tables and functions, and errors for malformed patterns.
func TestPatternsMatchGopherLua(t *testing.T) {
	cases := []string{
		`string.find("hello world", "o w")`, `string.find("hello", "l+")`, `string.find("hello", "^h")`,
		`string.find("hello", "o$")`, `string.find("a.b", ".", 1, true)`, `string.find("abc", "b", -1)`,
		`string.find("abc", "b", -2)`, `string.find("", "")`,
		`string.find("key = value", "(%w+)%s*=%s*(%w+)")`, `string.find("THE (quick) fox", "%((%a+)%)")`,
		`string.find("f(a(b)c)d", "%b()")`,
		`string.find("aaa", "a-")`, `string.find("aaa", "a-$")`, `string.find("x=1, y=2", "()=()")`,
		`string.find("hello", "[^aeiou]+")`, `string.find("a]b", "[]]")`, `string.find("a-b", "[a%-]+")`,
		`string.find("2024-01-31", "(%d+)-(%d+)-(%d+)")`, `string.find("abcabc", "(a)(b)c%1%2")`,
		`string.find("x", "[a-")`, `string.find("x", "(x")`,
		`string.find("x", "%1")`, `string.find("  trim  ", "^%s*(.-)%s*$")`, `string.find("a.b.c", "%.", 3)`,
		`string.find("Ünïcode bytes", "[\128-\255]+")`, `string.find("tab\there", "%c")`, `string.find("A1_b", "%W")`,
		`string.find("0x1F", "%x+", 3)`, `string.find("end", "$")`, `string.find("a$b", "$b")`, `string.find("ab", "a?b")`,
		`string.match("  trim  ", "^%s*(.-)%s*$")`, `string.match("From: A <a@b.c>", "<(.-)>")`,
		`string.match("user+tag@example.org", "^([^+@]+)%+?([^@]*)@(.+)$")`, `string.match("abc", "()b()")`,
		`string.match("hello", "xyz")`, `string.match("hello", ".", -1)`, `string.match("[[x]]", "%[(%b[])%]")`,
		`string.match("THE END", "%u+$")`, `string.match("a,b,,c", "([^,]*),([^,]*),([^,]*)")`,
		`(function() local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t+1] = w end return table.concat(t, "|") end)()`,
		`(function() local t = {} for k, v in string.gmatch("k=v, a=b", "(%w+)=(%w+)") do t[#t+1] = k .. ":" .. v end return table.concat(t, "|") end)()`,
		`(function() local t = {} for w in string.gmatch("abc", "") do t[#t+1] = "[" .. w .. "]" end return table.concat(t) end)()`,
		`(function() local t = {} for w in string.gmatch("aaa b", "a*") do t[#t+1] = "[" .. w .. "]" end return table.concat(t) end)()`,
		`(function() local t = {} for p in string.gmatch("abc", "()") do t[#t+1] = p end return table.concat(t, ",") end)()`,
		`string.gsub("hello world", "o", "0")`, `string.gsub("hello", "", "-")`, `string.gsub("abc", "%w", "%0%0")`,
		`string.gsub("$name is $age", "%$(%w+)", {name = "x", age = 3})`, `string.gsub("abc", "b", function(c) return c:upper() end)`,
		`string.gsub("abc", "%w", "%1")`, `string.gsub("hello world", "(o)", "[%1]", 1)`, `string.gsub("abc", "^a", "X")`,
		`string.gsub("x", "x", "%%")`, `string.gsub("abc", "b", false)`,
		`string.gsub("abc", "(b)", {})`, `string.gsub("a b c", "%s", function() return nil end)`, `string.gsub("abc", "", "")`,
		`string.gsub("hello", "l", "L", 0)`, `string.gsub("one two", "(%w+) (%w+)", "%2 %1")`, `string.gsub("abc", "b", "%2")`,
		`string.gsub("x = 1", "%s*=%s*", "=")`, `string.gsub("aaa", "a*", "-")`, `string.gsub("hello", "(l)(l)", "%2%1")`,
		`("method"):find("th")`, `("A-B"):gsub("-", "+")`, `("k: v"):match("^(%w+):%s*(.*)$")`,
		// The bounded table functions too.
		`table.concat({1, 2, 3}, ", ")`, `table.concat({}, "x")`, `table.concat({"a", "b", "c"}, "-", 2, 3)`,
		`table.concat({"a", {}})`, `table.concat({"a", "b"}, "", 3)`, `table.concat({1.5, "x"})`,
		`unpack({1, 2, 3})`, `unpack({1, 2, 3}, 2)`, `unpack({1, 2, 3}, 2, 5)`, `unpack({}, 1, 0)`, `select("#", unpack({nil, nil}, 1, 2))`,
	}
	ref := lua.NewState()
	defer ref.Close()
	ours := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer ours.Close()
	openSandbox(ours, &budget{limit: 1 << 20})
	run := func(L *lua.LState, expr string) string {
		err := L.DoString(`local function ser(...) local t = {} for i = 1, select("#", ...) do t[#t+1] = type((select(i, ...))) .. ":" .. tostring((select(i, ...))) end return table.concat(t, " ") end
			local r = {pcall(function() return ` + expr + ` end)}
			if r[1] then result = ser(unpack(r, 2, table.maxn(r))) else result = "error" end`)
		if err != nil {
			return "load error: " + err.Error()
		}
		return L.GetGlobal("result").String()
	}
	for _, c := range cases {
		want, got := run(ref, c), run(ours, c)
		if got != want {
			t.Errorf("%s\n  gopher-lua: %s\n  mailflow:   %s", c, want, got)
		}
	}
	// Where gopher-lua departs from Lua 5.1, ours gives Lua 5.1's answer.
	for c, want := range map[string]string{
		`string.find("abc", "", 10)`:                     "number:4 number:3", // init past the end is clamped
		`string.find("abc", "", 4)`:                      "number:4 number:3",
		`string.find("THE (quick) fox", "%f[%a]%a+", 5)`: "number:6 number:10", // the frontier before "quick"
		`string.find("x", "%")`:                          "error",              // malformed pattern (ends with '%')
		`string.find("x", "x)")`:                         "",                   // no specials: a plain find
		`string.gsub("abc", "(b)", {b = true})`:          "error",              // invalid replacement value (a boolean)
	} {
		if got := run(ours, c); got != want {
			t.Errorf("%s: %q, want Lua 5.1's %q", c, got, want)
		}
	}
}

// A pattern that backtracks exponentially is stopped at the script's time
// bound, where gopher-lua's matcher would run for ever; so are gsub and
// gmatch over one, and a gsub whose result outgrows the memory bound is
// refused.
func TestRunawayPatternsAreStopped(t *testing.T) {
	bound := 200 * time.Millisecond
	for name, body := range map[string]string{
		"find":   `local s = string.rep("a", 30); s:find(string.rep("a*", 30) .. "b")`,
		"match":  `local s = string.rep("a", 40); return keep(s:match(string.rep("a-", 40) .. "b"))`,
		"gsub":   `local s = string.rep("a", 30); s:gsub(string.rep("a*", 30) .. "b", "x")`,
		"gmatch": `local s = string.rep("a", 30); for x in s:gmatch(string.rep("a*", 30) .. "b") do end`,
		"grow":   `local s = string.rep("a", 4096); for i = 1, 20 do s = s:gsub("a", "aa") end`,
	} {
		t.Run(name, func(t *testing.T) {
			s := load(t, "function filter(msg)\n  "+body+"\nend", plugin.ScriptLimits{Timeout: bound, MaxMemory: 16 << 20})
			start := time.Now()
			_, err := s.Filter(context.Background(), eml(t, "qp-latin1.eml"))
			took := time.Since(start)
			if err == nil {
				t.Fatal("a runaway pattern was not stopped")
			}
			if took > 2*bound+300*time.Millisecond {
				t.Fatalf("stopped after %v with a %v bound", took, bound)
			}
			t.Logf("%v: %v", took.Round(time.Millisecond), strings.SplitN(err.Error(), "\n", 2)[0])
		})
	}
}
