package scripts

import (
	"fmt"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"
)

const verdictType = "mailflow.verdict"

// openVerdicts defines keep, drop, route, redirect, quarantine, reject and leave. Each
// returns a verdict value that filter(msg) returns.
func openVerdicts(L *lua.LState) {
	L.NewTypeMetatable(verdictType)
	mk := func(v plugin.Verdict) lua.LValue {
		ud := L.NewUserData()
		ud.Value = &v
		L.SetMetatable(ud, L.GetTypeMetatable(verdictType))
		return ud
	}
	keep := mk(plugin.Verdict{Action: plugin.ActionKeep})
	L.SetGlobal("keep", L.NewFunction(func(L *lua.LState) int {
		L.Push(keep)
		return 1
	}))
	L.SetGlobal("drop", L.NewFunction(func(L *lua.LState) int {
		L.Push(mk(plugin.Verdict{Action: plugin.ActionDrop, Reason: L.OptString(1, "")}))
		return 1
	}))
	L.SetGlobal("quarantine", L.NewFunction(func(L *lua.LState) int {
		L.Push(mk(plugin.Verdict{Action: plugin.ActionQuarantine, Reason: L.OptString(1, "")}))
		return 1
	}))
	// reject refuses the message for good: an SMTP or LMTP client still
	// waiting for the outcome (answer = "after_delivery") is told 5xx
	// with the reason, and keeps it; otherwise it is quarantined.
	L.SetGlobal("reject", L.NewFunction(func(L *lua.LState) int {
		L.Push(mk(plugin.Verdict{Action: plugin.ActionReject, Reason: L.OptString(1, "rejected")}))
		return 1
	}))
	L.SetGlobal("leave", L.NewFunction(func(L *lua.LState) int {
		L.Push(mk(plugin.Verdict{Action: plugin.ActionLeave, Reason: L.OptString(1, "")}))
		return 1
	}))
	L.SetGlobal("route", L.NewFunction(func(L *lua.LState) int {
		outs := stringArgs(L, "route", "output name")
		L.Push(mk(plugin.Verdict{Action: plugin.ActionRoute, Outputs: outs}))
		return 1
	}))
	L.SetGlobal("redirect", L.NewFunction(func(L *lua.LState) int {
		rcpts := stringArgs(L, "redirect", "address")
		for _, r := range rcpts {
			checkAddress(L, r)
		}
		L.Push(mk(plugin.Verdict{Action: plugin.ActionRedirect, Recipients: uniqueRecipients(rcpts)}))
		return 1
	}))
}

// stringArgs takes either several string arguments or one table of strings.
func stringArgs(L *lua.LState, fn, what string) []string {
	var out []string
	add := func(v lua.LValue) {
		s, ok := v.(lua.LString)
		if !ok || s == "" {
			L.RaiseError("%s: each %s must be a non-empty string, got %s", fn, what, v.Type())
		}
		out = append(out, string(s))
	}
	if t, ok := L.Get(1).(*lua.LTable); ok && L.GetTop() == 1 {
		t.ForEach(func(_, v lua.LValue) { add(v) })
	} else {
		for i := 1; i <= L.GetTop(); i++ {
			add(L.Get(i))
		}
	}
	if len(out) == 0 {
		L.RaiseError("%s: needs at least one %s", fn, what)
	}
	return out
}

// toVerdict turns what filter returned into a verdict: nothing means keep.
func toVerdict(v lua.LValue) (plugin.Verdict, error) {
	if v == lua.LNil {
		return plugin.Verdict{Action: plugin.ActionKeep}, nil
	}
	if ud, ok := v.(*lua.LUserData); ok {
		if vd, ok := ud.Value.(*plugin.Verdict); ok {
			return *vd, nil
		}
	}
	return plugin.Verdict{}, fmt.Errorf("filter returned a %s; return keep(), drop(reason), route(outputs...), redirect(addresses...), quarantine(reason), reject(reason) or leave(reason)", v.Type())
}
