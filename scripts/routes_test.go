package scripts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"
)

// Every route() call is found with its line, wherever it is (a nested
// function, a table of names, a condition), and a name computed at run
// time is told apart from a literal one.
func TestRoutesListsEveryRouteCall(t *testing.T) {
	src := `local spam = "junk"
local function pick(msg)
  if msg.subject:find("invoice") then
    return route("accounts", "archive")
  end
  return nil
end

function filter(msg)
  local r = pick(msg)
  if r then return r end
  if msg:header("X-Spam") == "yes" then return route(spam) end
  if msg.from == "boss@example.com" then return route({"inbox", "phone"}) end
  return keep()
end
`
	path := filepath.Join(t.TempDir(), "r.lua")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, plugin.ScriptLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	routes, err := s.Routes()
	if err != nil {
		t.Fatal(err)
	}
	want := []plugin.Route{
		{Output: "accounts", File: path, Line: 4},
		{Output: "archive", File: path, Line: 4},
		{Output: "", File: path, Line: 12},
		{Output: "inbox", File: path, Line: 13},
		{Output: "phone", File: path, Line: 13},
	}
	if len(routes) != len(want) {
		t.Fatalf("routes %+v, want %+v", routes, want)
	}
	for i := range want {
		if routes[i] != want[i] {
			t.Fatalf("route %d: %+v, want %+v", i, routes[i], want[i])
		}
	}
}
