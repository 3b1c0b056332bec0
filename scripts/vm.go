package scripts

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

// vm is one sandboxed Lua state. It serves one message at a time, each of
// which finds the script's top level as it ran (env.go, pristine.go).
type vm struct {
	s       *Script
	L       *lua.LState
	sb      *sandbox
	watch   *watched              // the watchdog's view of this state, and its context
	msgUD   *lua.LUserData        // reused for every call; Value is nil between calls
	keepErr *lua.LFunction        // error handler that returns the error as it is
	budget  budget                // what the running call has built (budget.go)
	env     *lua.LTable           // the globals the top level made (env.go)
	filter  *lua.LFunction        // the filter function it defined
	shot    *pristine             // what it made, as it made it (pristine.go)
	dirty   bool                  // a call changed it: the top level runs again first
	loaded  map[string]lua.LValue // modules required since the top level ran (require.go)
	cur     msgRef
	broken  bool // cancelled or otherwise unfit for another call
}

// msgRef is what the msg userdata points to during a call.
type msgRef struct {
	m   *message.Message
	log *slog.Logger

	generated    []plugin.Generated // made by vacation{} and notify{} (generate.go)
	vacationDone bool
	notified     int
	edits        int // body edits so far: parts listed before one are stale (parts.go)
}

const (
	callStackSize   = 200     // nested Lua calls; deeper recursion is an error
	registrySize    = 1024    // initial value stack
	registryMaxSize = 1 << 18 // values on the stack at most
)

func (s *Script) newVM() *vm {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       callStackSize,
		RegistrySize:        registrySize,
		RegistryMaxSize:     registryMaxSize,
		MinimizeStackMemory: true,
	})
	v := &vm{s: s, L: L, keepErr: L.NewFunction(keepError), budget: budget{limit: s.limits.MaxMemory}}
	v.watch = watchdog.add(v, s.limits)
	L.SetContext(v.watch)
	openSandbox(L, &v.budget)
	L.SetGlobal("pcall", L.NewFunction(v.pcall))
	L.SetGlobal("require", L.NewFunction(v.require))
	v.openAPI()
	v.sb = freeze(L)
	v.dirty = true // the top level has not run
	return v
}

// check runs the script's top level, as the first call would, to find an
// error there, or a missing filter function, when the script is loaded.
func (v *vm) check() error {
	v.watch.begin()
	v.budget.reset()
	err := v.prepare()
	reason := v.watch.end()
	v.L.SetTop(0)
	switch {
	case reason != "":
		v.broken = true
		return fmt.Errorf("%s: top level: %s", v.s.path, reason)
	case errors.Is(err, errNoFilter):
		return fmt.Errorf("%s: %w", v.s.path, err)
	case err != nil:
		return fmt.Errorf("%s", v.s.scriptError(err))
	}
	return nil
}

var errNoFilter = errors.New("does not define function filter(msg)")

// prepare runs the script's top level in a new global environment, keeps
// the filter function it defined there, and records what it made
// (pristine.go).
func (v *vm) prepare() error {
	v.dirty = true // until it has run whole
	v.env, v.filter, v.shot, v.loaded = v.sb.newEnv(v.L), nil, nil, nil
	top := v.L.NewFunctionFromProto(v.s.proto)
	top.Env = v.env
	v.L.Push(top)
	if err := v.L.PCall(0, 0, v.keepErr); err != nil {
		return err
	}
	fn, ok := v.env.RawGetString("filter").(*lua.LFunction)
	if !ok {
		return errNoFilter
	}
	v.filter = fn
	v.shot = v.sb.snapshot(v.env, v.loaded)
	v.dirty = false
	return nil
}

// finish ends a call. When the call changed anything the top level made,
// that is let go, to be made anew before the next call.
func (v *vm) finish() {
	v.L.SetTop(0)
	if v.broken {
		return // closed, not reused
	}
	if !v.dirty && !v.shot.same(v.loaded) {
		v.dirty = true
	}
	if v.dirty {
		v.env, v.filter, v.shot, v.loaded = nil, nil, nil, nil
	}
}

// call runs filter(msg), after the top level if it must run again, and
// turns what filter returned into a verdict.
func (v *vm) call(m *message.Message) (plugin.Verdict, error) {
	v.cur = msgRef{m: m}
	v.msgUD.Value = &v.cur
	defer func() {
		v.msgUD.Value = nil // a script that kept msg somewhere cannot reach the next one's
		v.cur = msgRef{}
		v.finish()
	}()

	v.watch.begin()
	v.budget.reset()
	var err error
	if v.dirty {
		err = v.prepare()
	}
	if err == nil {
		v.L.Push(v.filter)
		v.L.Push(v.msgUD)
		err = v.L.PCall(1, 1, v.keepErr)
	}
	if reason := v.watch.end(); reason != "" {
		v.broken = true
		return plugin.Verdict{}, fmt.Errorf("%s", reason)
	}
	if errors.Is(err, errNoFilter) {
		return plugin.Verdict{}, err
	}
	if err != nil {
		return plugin.Verdict{}, v.s.scriptError(err)
	}
	verdict, err := toVerdict(v.L.Get(-1))
	if err == nil {
		verdict.Generated = v.cur.generated
	}
	return verdict, err
}

// keepError is the error handler of every protected call. Without one,
// gopher-lua writes a traceback of the whole call stack into each error,
// a line per tail call: a script that tail-recursed a million times would
// spend longer on its traceback than its time bound. The message already
// names the file and line.
func keepError(L *lua.LState) int { return 1 }

// pcall is Lua's pcall with keepError as its handler, for the same reason:
// a script that catches errors in a loop must not pay for a traceback each
// time.
func (v *vm) pcall(L *lua.LState) int {
	L.CheckAny(1)
	fn := L.Get(1)
	if fn.Type() != lua.LTFunction && L.GetMetaField(fn, "__call").Type() != lua.LTFunction {
		L.Push(lua.LFalse)
		L.Push(lua.LString("attempt to call a " + fn.Type().String() + " value"))
		return 2
	}
	if err := L.PCall(L.GetTop()-1, lua.MultRet, v.keepErr); err != nil {
		L.Push(lua.LFalse)
		if ae, ok := err.(*lua.ApiError); ok {
			L.Push(ae.Object)
		} else {
			L.Push(lua.LString(err.Error()))
		}
		return 2
	}
	L.Insert(lua.LTrue, 1)
	return L.GetTop()
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
	v.watch.stop("the script was unloaded")
	v.L.Close()
}

// openSandbox opens the safe parts of the standard library: base (without
// the functions that load code or reach the host), string, table and math.
// os, io, debug, package and coroutine are never opened.
func openSandbox(L *lua.LState, b *budget) {
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
	L.SetGlobal(concatName, L.NewFunction(boundedConcat(b)))
	capStrings(L, str, b)
	capTables(L, b)
	boundPatterns(L, str, b)
	// math.random is seeded per state by gopher-lua; nothing else to remove.
	L.SetGlobal("utf8", L.SetFuncs(L.NewTable(), utf8Funcs(b)))
}
