package scripts

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/internal/srs"
)

// What forwarding rules need to know about a message: how far it has
// travelled, whether it has been through this mailflow before, what the
// receiving server's checks said, and where a bounce to an SRS address
// should go back to.

// openForwarding defines srs.reverse; the msg methods are in openAPI.
func (v *vm) openForwarding() {
	L := v.L
	t := L.NewTable()
	// srs.reverse(address) → the original sender of an SRS0 address made
	// with one of srs_secret_file's secrets (the first forwarder's SRS0
	// address for an SRS1 one), or nil and why: not SRS, a hash that does
	// not match, too old.
	t.RawSetString("reverse", L.NewFunction(func(L *lua.LState) int {
		addr := L.CheckString(1)
		if len(v.s.limits.SRSSecrets) == 0 {
			L.RaiseError("srs.reverse: no srs_secret_file is configured")
		}
		r := &srs.Rewriter{Secrets: v.s.limits.SRSSecrets, MaxAge: v.s.limits.SRSMaxAge}
		back, err := r.Reverse(strings.Trim(strings.TrimSpace(addr), "<>"))
		if err != nil {
			L.Push(lua.LNil)
			L.Push(lua.LString(err.Error()))
			return 2
		}
		L.Push(lua.LString(back))
		return 1
	}))
	L.SetGlobal("srs", t)
}

// hops is msg:hops(): how many Received fields the message carries.
func (v *vm) hops(L *lua.LState) int {
	m := v.message(L)
	L.Push(lua.LNumber(len(m.Header.Values("Received"))))
	return 1
}

// looped is msg:looped(): whether this mailflow (its instance) already
// sent the message on through any of its outputs.
func (v *vm) looped(L *lua.LState) int {
	m := v.message(L)
	prefix := "mailflow/" + v.s.limits.Instance + "/"
	for _, val := range m.Header.Values("X-Loop") {
		if strings.HasPrefix(strings.TrimSpace(val), prefix) {
			L.Push(lua.LTrue)
			return 1
		}
	}
	L.Push(lua.LFalse)
	return 1
}

// authResults is msg:auth_results(): the results in the
// Authentication-Results fields written by a trusted server
// (trusted_authserv_ids), as {method=, result=, reason=, domain=, from=,
// ...}. A field from any other authserv-id is ignored: any sender can
// write one.
func (v *vm) authResults(L *lua.LState) int {
	m := v.message(L)
	out := L.CreateTable(0, 0)
	trusted := v.s.limits.TrustedAuthServIDs
	for _, raw := range m.Header.Values("Authentication-Results") {
		id, results, err := authres.Parse(strings.Join(strings.Fields(raw), " "))
		if err != nil || !containsFold(trusted, id) {
			continue
		}
		for _, r := range results {
			e := L.CreateTable(0, 6)
			e.RawSetString("authserv_id", lua.LString(id))
			set := func(k, val string) {
				if val != "" {
					e.RawSetString(k, lua.LString(val))
				}
			}
			switch r := r.(type) {
			case *authres.DKIMResult:
				set("method", "dkim")
				set("result", string(r.Value))
				set("reason", r.Reason)
				set("domain", r.Domain)
				set("identifier", r.Identifier)
			case *authres.SPFResult:
				set("method", "spf")
				set("result", string(r.Value))
				set("reason", r.Reason)
				set("from", r.From)
				set("helo", r.Helo)
			case *authres.DMARCResult:
				set("method", "dmarc")
				set("result", string(r.Value))
				set("reason", r.Reason)
				set("from", r.From)
			case *authres.ARCResult:
				set("method", "arc")
				set("result", string(r.Value))
			case *authres.AuthResult:
				set("method", "auth")
				set("result", string(r.Value))
				set("reason", r.Reason)
			case *authres.IPRevResult:
				set("method", "iprev")
				set("result", string(r.Value))
				set("ip", r.IP)
			case *authres.GenericResult:
				set("method", r.Method)
				set("result", string(r.Value))
				for k, val := range r.Params {
					set(strings.ReplaceAll(k, ".", "_"), val)
				}
			default:
				continue
			}
			out.Append(e)
		}
	}
	L.Push(out)
	return 1
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
