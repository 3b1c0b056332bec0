package scripts

import (
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// The rewritten `..` must give what Lua's gives: numbers formatted as Lua
// does, right-to-left metamethods, errors for nil and tables without one.
func TestBoundedConcatMatchesLua(t *testing.T) {
	src := `
local mt = {__concat = function(a, b)
  local x = type(a) == "table" and a.name or a
  local y = type(b) == "table" and b.name or b
  return "<" .. x .. "|" .. y .. ">"
end}
local t = setmetatable({name = "T"}, mt)
local out = {}
out[#out + 1] = "a" .. "b" .. "c"
out[#out + 1] = 1 .. 2
out[#out + 1] = 1.5 .. "x" .. -0.25 .. 1e100
out[#out + 1] = "x" .. t .. "y"
out[#out + 1] = t .. "z"
out[#out + 1] = ("p" .. "q"):upper()
local f = function(...) return ... end
out[#out + 1] = f("m" .. "n", "o")
out[#out + 1] = tostring(pcall(function() return "a" .. nil end))
out[#out + 1] = tostring(pcall(function() return {} .. "a" end))
result = table.concat(out, ",")
`
	run := func(rewrite bool) string {
		L := lua.NewState()
		defer L.Close()
		L.SetGlobal(concatName, L.NewFunction(boundedConcat(&budget{limit: 1 << 20})))
		chunk, err := parse.Parse(strings.NewReader(src), "t.lua")
		if err != nil {
			t.Fatal(err)
		}
		if rewrite {
			chunk = rewriteConcat(chunk)
		}
		proto, err := lua.Compile(chunk, "t.lua")
		if err != nil {
			t.Fatal(err)
		}
		L.Push(L.NewFunctionFromProto(proto))
		if err := L.PCall(0, 0, nil); err != nil {
			t.Fatal(err)
		}
		return L.GetGlobal("result").String()
	}
	want, got := run(false), run(true)
	if got != want {
		t.Fatalf("rewritten: %s\nLua:       %s", got, want)
	}
	t.Log(got)
}

func TestBoundedConcatRefusesPastTheBound(t *testing.T) {
	s := load(t, "function filter(msg)\n  local s = 'x'\n  for i = 1, 40 do s = s .. s end\nend", plugin.ScriptLimits{MaxMemory: 1 << 20})
	_, err := s.Filter(t.Context(), eml(t, "qp-latin1.eml"))
	if err == nil || !strings.Contains(err.Error(), "over the script memory limit") || !strings.Contains(err.Error(), "test.lua:3") {
		t.Fatalf("got %v, want a refusal naming test.lua:3", err)
	}
}
