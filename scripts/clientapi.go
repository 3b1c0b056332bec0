package scripts

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

// pushClient pushes msg.client: who handed the message over SMTP or LMTP
// (an smtp or lmtp input), as a table of strings, or nil for a message
// fetched from a mailbox. A field the client did not give is absent, so
// that `if msg.client and msg.client.auth then` reads as it means.
func pushClient(L *lua.LState, m *message.Message) {
	r := m.Received
	if r == nil {
		L.Push(lua.LNil)
		return
	}
	t := L.CreateTable(0, 8)
	set := func(k, v string) {
		if v != "" {
			t.RawSetString(k, lua.LString(v))
		}
	}
	c := r.Client
	set("address", c.Address)
	set("name", c.Name)
	set("helo", c.Helo)
	set("tls", c.TLS)
	set("auth", c.Auth)
	set("protocol", c.Protocol)
	// The envelope as it arrived, whatever scripts before this one did
	// with msg.sender and msg:recipients().
	set("sender", r.Sender)
	rcpts := L.CreateTable(len(r.Recipients), 0)
	for _, a := range r.Recipients {
		rcpts.Append(lua.LString(a))
	}
	t.RawSetString("recipients", rcpts)
	t.RawSetString("forwarded", lua.LBool(c.Forwarded))
	L.Push(t)
}
