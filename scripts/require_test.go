package scripts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"
)

func TestRequireLoadsFromScriptLibOnly(t *testing.T) {
	lib := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(lib, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("company.lua", `local M = {} ; M.loads = (M.loads or 0) + 1
function M.internal(addr) return addr:lower():match("@example%.com$") ~= nil end
counter = (counter or 0) + 1
return M`)
	write("loop_a.lua", `return require("loop_b")`)
	write("loop_b.lua", `return require("loop_a")`)
	write("broken.lua", "local x = \n")
	limits := plugin.ScriptLimits{LibDir: lib}
	s := load(t, `local company = require("company")
local again = require("company")
function filter(msg)
  assert(company == again and counter == 1, "a module runs once per state")
  if company.internal(msg:from()[1].address) then return drop("internal") end
  return keep()
end`, limits)
	v, err := s.Filter(context.Background(), mailWith("r1", "From: Boss <BOSS@example.com>"))
	if err != nil || v.Action != plugin.ActionDrop {
		t.Fatalf("%v %v", v, err)
	}
	for src, want := range map[string]string{
		`require("../etc/passwd")`: "is not a module name",
		`require("a/b")`:           "is not a module name",
		`require("missing")`:       "no such file",
		`require("loop_a")`:        "requires itself",
		`require("broken")`:        "broken.lua",
	} {
		path := filepath.Join(t.TempDir(), "test.lua")
		os.WriteFile(path, []byte(src+"\nfunction filter(msg) end"), 0o644)
		_, err := Load(path, limits)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "test.lua")
	os.WriteFile(path, []byte(`require("company") function filter(msg) end`), 0o644)
	if _, err := Load(path, plugin.ScriptLimits{}); err == nil || !strings.Contains(err.Error(), "no script_lib") {
		t.Errorf("without script_lib: %v", err)
	}
}
