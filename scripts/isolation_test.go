package scripts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// Nothing one call of filter assigns is seen by the next: not a global,
// not a top-level local, not a module's table. The script kept
// every message's 8 MB in a global table: 40 messages took the process to
// 452 MB. Each call now starts from the script's top level afresh, so
// `big` holds one string at a time and the memory goes with its call.
func TestGlobalsDoNotOutliveTheirCall(t *testing.T) {
	s := load(t, `function filter(msg)
  big = big or {}
  big[#big + 1] = string.rep("x", 8 * 1024 * 1024) .. msg.message_id
  state.held = #big
end`, plugin.ScriptLimits{Timeout: time.Minute, MaxMemory: 64 << 20})
	debug.FreeOSMemory()
	base := residentBytes(t)
	peak := base
	for i := range 40 {
		if _, err := s.Filter(context.Background(), mailWith(fmt.Sprint("m", i), "Subject: big")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if held := s.shared.values["held"]; held.String() != "1" && !t.Failed() {
			t.Errorf("message %d saw %s strings in big: the global outlived its call", i, held)
		}
		peak = max(peak, residentBytes(t))
	}
	grew := peak - base
	t.Logf("RSS grew by %d MB over 40 messages of 8 MB each", grew>>20)
	if !raceEnabled && grew > 64<<20+64<<20 {
		t.Fatalf("RSS grew by %d MB: more than the 64 MB bound plus 64 MB", grew>>20)
	}
}

// The same holds for a script's top-level locals and for what a module
// returns: each call builds its own.
func TestTopLevelAndModulesStartAfreshEachCall(t *testing.T) {
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, "counter.lua"), []byte(`local M = {n = 0}
loaded = (loaded or 0) + 1
return M`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := load(t, `local seen = {}
local counter = require("counter")
function filter(msg)
  seen[#seen + 1] = msg.id
  counter.n = counter.n + 1
  state.seen, state.n, state.loaded = #seen, counter.n, loaded
end`, plugin.ScriptLimits{LibDir: lib})
	for i := range 3 {
		if _, err := s.Filter(context.Background(), mailWith(fmt.Sprint("m", i), "Subject: x")); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"seen", "n", "loaded"} {
			if got := s.shared.values[k].String(); got != "1" {
				t.Fatalf("message %d: %s = %s, want 1", i, k, got)
			}
		}
	}
}

// The top level runs when a state is made, and again before a call only
// when the call before changed something it made: a global, a top-level
// local, a table it built (even one filled and emptied again, which keeps
// its room), a module loaded since. Each message sees it as it ran.
func TestTopLevelRunsAgainOnlyAfterACallChangedIt(t *testing.T) {
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, "m.lua"), []byte(`return {}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		change string
		again  bool
	}{
		"reads only":                {`local x = settings.domains["a.example"] and n and #list`, false},
		"sets a global":             {`seen = true`, true},
		"sets a local to itself":    {`n = n`, false},
		"changes a top-level local": {`n = n + 1`, true},
		"adds to a table":           {`list[#list + 1] = "c"`, true},
		"changes a value":           {`settings.domains["a.example"] = false`, true},
		"fills and empties a table": {`for i = 1, 100 do settings["k" .. i] = i ; settings["k" .. i] = nil end`, true},
		"sets a metatable":          {`setmetatable(list, {})`, true},
		"loads a module":            {`require("m")`, true},
		"a local of its own":        {`local mine = {} ; mine.x = 1`, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := load(t, `state.add("runs")
settings = {domains = {["a.example"] = true}}
local list = {"a", "b"}
local n = 0
function filter(msg)
  assert(settings.domains["a.example"] == true and #list == 2 and n == 0 and seen == nil and getmetatable(list) == nil,
    "a call saw what the one before it changed")
  `+c.change+`
end`, plugin.ScriptLimits{LibDir: lib})
			for i := range 4 {
				if _, err := s.Filter(context.Background(), mailWith(fmt.Sprint("m", i), "Subject: x")); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			runs, want := s.shared.values["runs"].String(), "1"
			if c.again {
				want = "4" // at load, then before messages 2, 3 and 4
			}
			if runs != want {
				t.Errorf("the top level ran %s times, want %s", runs, want)
			}
		})
	}
}

// A script that changes the standard library, or the metatable strings
// share, while it filters one message does not change what it computes for
// the next. Each change either fails at once (the libraries are read-only
// views) or vanishes with the call; the second message must compute what
// an untouched sandbox does.
func TestLibraryChangesDoNotOutliveTheirCall(t *testing.T) {
	tamper := map[string]string{
		"assign string.lower":       `string.lower = function() return "changed" end`,
		"define string.trim":        `function string.trim(s) return "changed" end`,
		"replace string":            `string = {lower = function() return "changed" end}`,
		"through _G":                `_G.string.lower = function() return "changed" end`,
		"rawset":                    `rawset(string, "lower", function() return "changed" end)`,
		"table.insert":              `table.insert(string, "changed")`,
		"setmetatable":              `setmetatable(string, {__index = function() return function() return "changed" end end})`,
		"string metatable __index":  `getmetatable("").__index = {lower = function() return "changed" end}`,
		"string metatable method":   `getmetatable("").__index.lower = function() return "changed" end`,
		"string metatable __add":    `getmetatable("").__add = function() return "changed" end`,
		"math.floor":                `math.floor = function() return "changed" end`,
		"environment's metatable":   `getmetatable(_G).__index.string = {lower = function() return "changed" end}`,
		"msg's metatable":           `getmetatable(msg).__index = function() return function() return "changed" end end`,
		"state's metatable":         `getmetatable(state).__index = function() return "changed" end`,
		"verdict metatable":         `getmetatable(keep()).__index = {changed = true}`,
		"a global function":         `keep = function() return "changed" end`,
		"log":                       `log.info = function() error("changed") end`,
		"re":                        `re.match = function() return "changed" end`,
		"define a global of a name": `lower = function() return "changed" end`,
	}
	check := `local s = "ABC"
  state.method = s:lower()
  state.call = string.lower("ABC")
  state.trim = tostring(("x").trim)
  state.floor = math.floor(1.5)
  state.n = tostring(rawget(string, 1))
  state.meta = tostring(pcall(function() return "a" + "b" end))
  state.subject = msg:header("Subject")
  state.missing = tostring(state.nothing_here)
  state.match = tostring(re.match("b", "abc"))
  state.keep = type(keep())
  state.verdict = tostring(pcall(function() return keep().changed end))
  log.debug("fine")
  state.lower = tostring(lower)`
	want := map[string]string{
		"method": "abc", "call": "abc", "trim": "nil", "floor": "1", "n": "nil",
		"meta": "false", "subject": "x", "missing": "nil", "match": "true", "keep": "userdata",
		"verdict": "false", "lower": "nil",
	}
	for name, change := range tamper {
		t.Run(name, func(t *testing.T) {
			s := load(t, `function filter(msg)
  if msg.id == "tamper" then
    local ok, err = pcall(function() `+change+` end)
    state.tampered = tostring(ok) .. " " .. tostring(err)
    return
  end
  `+check+`
end`, plugin.ScriptLimits{})
			for _, id := range []string{"tamper", "next", "and the one after"} {
				if _, err := s.Filter(context.Background(), mailWith(id, "Subject: x")); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
			}
			for k, w := range want {
				if got := s.shared.values[k].String(); got != w {
					t.Errorf("after %q (%s): %s = %q, want %q", change, s.shared.values["tampered"], k, got, w)
				}
			}
		})
	}
}

// Scripts that run at the same time run on Lua states of their own: one
// that rewrites the library in a loop does not reach another's calls.
func TestLibraryChangeDoesNotReachAConcurrentScript(t *testing.T) {
	tamperer := load(t, `function filter(msg)
  for i = 1, 300 do
    pcall(function() string.lower = function() return "changed" end end)
    pcall(function() getmetatable("").__index = {lower = function() return "changed" end} end)
    pcall(function() rawset(string, "lower", function() return "changed" end) end)
    lower = function() return "changed" end
  end
end`, plugin.ScriptLimits{Timeout: 30 * time.Second})
	reader := load(t, `function filter(msg)
  for i = 1, 300 do
    if ("ABC"):lower() ~= "abc" or string.lower("ABC") ~= "abc" or lower ~= nil then
      return quarantine("saw another script's change")
    end
  end
end`, plugin.ScriptLimits{Timeout: 30 * time.Second})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := reader
			if g%2 == 0 {
				s = tamperer
			}
			for i := range 20 {
				v, err := s.Filter(context.Background(), mailWith(fmt.Sprint(g, "-", i), "Subject: x"))
				if err != nil || v.Action != plugin.ActionKeep {
					t.Errorf("goroutine %d, message %d: %v %v", g, i, v.Action, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
