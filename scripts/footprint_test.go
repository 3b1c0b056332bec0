package scripts

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"
)

// footprint's count of what a call holds is close to what the Go heap
// says the same values take, for the shapes scripts build: within a
// factor of 1.5 either way (it was off by four for small tables before it
// read their maps' room).
func TestFootprintIsClose(t *testing.T) {
	shapes := map[string]string{
		"records {name=, value=}":  `local t = {} ; for i = 1, N do t[i] = {name = "n", value = "v" .. i} end ; measure(t)`,
		"tables given names later": `local t = {} ; for i = 1, N do local r = {} ; r.name = "n" ; t[i] = r end ; measure(t)`,
		"arrays {i, i, i}":         `local t = {} ; for i = 1, N do t[i] = {i, i, i} end ; measure(t)`,
		"a chain c[1] = {}":        `local t = {} ; local c = t ; for i = 1, N do c[1] = {} ; c = c[1] end ; measure(t)`,
		"closures":                 `local f = function() end ; for i = 1, N do local g = f ; f = function() return g() end end ; measure(f)`,
		"strings":                  `local t = {} ; for i = 1, N do t[i] = "item" .. i end ; measure(t)`,
		"string keys":              `local t = {} ; for i = 1, N do t["k" .. i] = i end ; measure(t)`,
		"numbers":                  `local t = {} ; for i = 1, N do t[i] = i + 0.5 end ; measure(t)`,
		"keys set and deleted":     `local t = {} ; for i = 1, N do t["k" .. i] = 1 ; t["k" .. i] = nil end ; measure(t)`,
		"one string many times":    `local s = string.rep("x", 4096) ; local t = {} ; for i = 1, N do t[i] = s end ; measure(t)`,
	}
	for name, body := range shapes {
		t.Run(name, func(t *testing.T) {
			s := load(t, "N = 50000\nfunction filter(msg)\n"+body+"\nend", plugin.ScriptLimits{MaxMemory: 1 << 40, Timeout: time.Minute})
			v := s.get()
			var before, after runtime.MemStats
			var counted int64
			v.L.SetGlobal("measure", v.L.NewFunction(func(L *lua.LState) int {
				runtime.GC()
				runtime.ReadMemStats(&after)
				counted = footprint(v, 1<<40, func() bool { return false })
				return 0
			}))
			s.put(v)
			runtime.GC()
			runtime.ReadMemStats(&before)
			if _, err := s.Filter(context.Background(), mailWith("x", "Subject: x")); err != nil {
				t.Fatal(err)
			}
			held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			ratio := float64(counted) / float64(held)
			t.Logf("heap %6d KB, counted %6d KB: %.2f", held>>10, counted>>10, ratio)
			if ratio < 1/1.5 || ratio > 1.5 {
				t.Errorf("counted %d KB of %d KB", counted>>10, held>>10)
			}
		})
	}
}
