package scripts

import (
	"context"
	"fmt"
	"log/slog"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
)

// vm is one sandboxed Lua state with the script's top level already run.
// It serves one message at a time.
type vm struct {
	s      *Script
	L      *lua.LState
	filter *lua.LFunction
	watch  *watched // the watchdog's view of this state
	cancel context.CancelFunc
	msgUD  *lua.LUserData // reused for every call; Value is nil between calls
	cur    msgRef
	broken bool // cancelled or otherwise unfit for another call
}

// msgRef is what the msg userdata points to during a call.
type msgRef struct {
	m   *message.Message
	log *slog.Logger
}

const (
	callStackSize   = 200     // nested Lua calls; deeper recursion is an error
	registrySize    = 1024    // initial value stack
	registryMaxSize = 1 << 18 // values on the stack at most
)

func (s *Script) newVM() (*vm, error) {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       callStackSize,
		RegistrySize:        registrySize,
		RegistryMaxSize:     registryMaxSize,
		MinimizeStackMemory: true,
	})
	ctx, cancel := context.WithCancel(context.Background())
	L.SetContext(ctx)
	v := &vm{s: s, L: L, cancel: cancel}
	v.watch = watchdog.add(cancel, s.limits)
	openSandbox(L, s.limits.MaxMemory)
	v.openAPI()

	// The top level runs under the same bounds as a filter call.
	v.watch.begin()
	L.Push(L.NewFunctionFromProto(s.proto))
	err := L.PCall(0, 0, nil)
	reason := v.watch.end()
	if err != nil {
		v.close()
		if reason != "" {
			return nil, fmt.Errorf("%s: top level: %s", s.path, reason)
		}
		return nil, fmt.Errorf("%s", s.scriptError(err))
	}
	fn, ok := L.GetGlobal("filter").(*lua.LFunction)
	if !ok {
		v.close()
		return nil, fmt.Errorf("%s: does not define function filter(msg)", s.path)
	}
	v.filter = fn
	return v, nil
}

// call runs filter(msg) and turns what it returned into a verdict.
func (v *vm) call(m *message.Message) (engine.Verdict, error) {
	v.cur = msgRef{m: m}
	v.msgUD.Value = &v.cur
	defer func() {
		v.msgUD.Value = nil // a script that kept msg in a global cannot reach the next one's
		v.cur = msgRef{}
	}()

	v.watch.begin()
	v.L.Push(v.filter)
	v.L.Push(v.msgUD)
	err := v.L.PCall(1, 1, nil)
	if reason := v.watch.end(); reason != "" {
		v.broken = true
		v.L.SetTop(0)
		return engine.Verdict{}, fmt.Errorf("%s", reason)
	}
	if err != nil {
		v.L.SetTop(0)
		return engine.Verdict{}, v.s.scriptError(err)
	}
	ret := v.L.Get(-1)
	v.L.Pop(1)
	return toVerdict(ret)
}

// logger is the logger for the message being filtered, with its fields.
func (v *vm) logger() *slog.Logger {
	if v.cur.log == nil {
		l := v.s.log.With("script", v.s.name)
		if m := v.cur.m; m != nil {
			l = l.With("input", m.Source.Input, "id", m.Source.ID, "message_id", m.MessageID())
		}
		v.cur.log = l
	}
	return v.cur.log
}

func (v *vm) close() {
	watchdog.remove(v.watch)
	v.cancel()
	v.L.Close()
}

// openSandbox opens the safe parts of the standard library: base (without
// the functions that load code or reach the host), string, table and math.
// os, io, debug, package and coroutine are never opened.
func openSandbox(L *lua.LState, maxString int64) {
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	for _, name := range []string{
		"dofile", "loadfile", "load", "loadstring", "require", "module",
		"_printregs", "collectgarbage", "newproxy", "getfenv", "setfenv",
	} {
		L.SetGlobal(name, lua.LNil)
	}
	str := L.GetGlobal("string").(*lua.LTable)
	str.RawSetString("dump", lua.LNil)
	capStrings(L, str, maxString)
	capTables(L, maxString)
	boundPatterns(L, str, maxString)
	// math.random is seeded per state by gopher-lua; nothing else to remove.
	L.SetGlobal("utf8", L.SetFuncs(L.NewTable(), utf8Funcs))
}
