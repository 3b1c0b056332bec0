package scripts

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// require("name") loads name.lua from the configured script_lib directory
// and nowhere else: no search path, no C modules, no "..". A module is
// compiled once per loaded script (its states share the compiled code) and
// run in the global environment of the script's top level, in the same
// sandbox and under the same bounds; what it returns is what require
// returns, as in Lua, and it is the top level's like the rest of what the
// top level made (pristine.go). Modules are reloaded with the scripts: a
// new config generation loads them afresh.

var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// loading marks a module whose top level is running, to catch require loops.
var loading = &lua.LUserData{}

func (v *vm) require(L *lua.LState) int {
	name := L.CheckString(1)
	if !moduleName.MatchString(name) {
		L.RaiseError("require: %q is not a module name (letters, digits, _ and -; it names script_lib/NAME.lua)", name)
	}
	if got, ok := v.loaded[name]; ok {
		if got == loading {
			L.RaiseError("require: %q requires itself (through the modules it requires)", name)
		}
		L.Push(got)
		return 1
	}
	proto, err := v.s.module(name)
	if err != nil {
		L.RaiseError("require: %v", err)
	}
	if v.loaded == nil {
		v.loaded = map[string]lua.LValue{}
	}
	v.loaded[name] = loading
	// A module runs in the environment of the call that requires it, as a
	// Lua 5.1 module shares the globals of its script: what it defines
	// goes with the call, like everything else the call made.
	mod := L.NewFunctionFromProto(proto)
	mod.Env = v.env
	L.Push(mod)
	L.Push(lua.LString(name))
	L.Call(1, 1)
	ret := L.Get(-1)
	L.Pop(1)
	if ret == lua.LNil {
		ret = lua.LTrue
	}
	v.loaded[name] = ret
	L.Push(ret)
	return 1
}

// module compiles script_lib/name.lua, once.
func (s *Script) module(name string) (*lua.FunctionProto, error) {
	s.modMu.Lock()
	defer s.modMu.Unlock()
	if p, ok := s.modules[name]; ok {
		return p, nil
	}
	if s.limits.LibDir == "" {
		return nil, errors.New("no script_lib directory is configured")
	}
	path := filepath.Join(s.limits.LibDir, name+".lua")
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	proto, err := compile(src, path, name+".lua")
	if err != nil {
		return nil, err
	}
	if s.modules == nil {
		s.modules = map[string]*lua.FunctionProto{}
	}
	s.modules[name] = proto
	return proto, nil
}

// compile parses and compiles a script or module, with `..` bounded
// (concat.go). Errors name the file and line.
func compile(src []byte, path, chunkName string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(bytes.NewReader(src), chunkName)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			if pe.Pos.Line == parse.EOF {
				return nil, fmt.Errorf("%s: at end of file: %s", path, pe.Message)
			}
			return nil, fmt.Errorf("%s:%d: %s near %q", path, pe.Pos.Line, pe.Message, pe.Token)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	proto, err := lua.Compile(rewriteConcat(chunk), chunkName)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	// The chunk runs for every message (env.go). As a vararg function that
	// does not use `...`, gopher-lua would give each run Lua 5.0's `arg`
	// table, 2.7 KB nobody reads: a chunk's arguments are none.
	proto.IsVarArg &^= lua.VarArgNeedsArg
	return proto, nil
}
