package scripts

import (
	"context"
	"testing"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A script sees who handed a message over SMTP, and the envelope as it
// arrived; a fetched message has no client.
func TestClient(t *testing.T) {
	s := load(t, `
		function filter(msg)
			local c = msg.client
			if c == nil then return drop("fetched") end
			assert(c.address == "192.0.2.7", c.address)
			assert(c.helo == "mx.example.org")
			assert(c.name == "mx.example.org")
			assert(c.tls == "TLSv1.3 TLS_AES_128_GCM_SHA256")
			assert(c.auth == nil)
			assert(c.protocol == "ESMTPS")
			assert(c.forwarded == true)
			assert(c.sender == "alice@example.org")
			assert(#c.recipients == 2 and c.recipients[2] == "bob@example.net")
			-- the envelope scripts change starts as the one received
			assert(msg.sender == "alice@example.org")
			assert(msg:recipients()[1] == "carol@example.net")
			if c.address:match("^192%.0%.2%.") then return reject("5.7.1 not from that network") end
		end`, plugin.ScriptLimits{})
	m := eml(t, "qp-latin1.eml")
	m.Received = &message.Received{Sender: "alice@example.org", Recipients: []string{"carol@example.net", "bob@example.net"},
		Client: message.Client{Address: "192.0.2.7", Name: "mx.example.org", Helo: "mx.example.org",
			TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256", Protocol: "ESMTPS", Forwarded: true}}
	m.Envelope = m.Received.Envelope()
	v, err := s.Filter(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != plugin.ActionReject || v.Reason != "5.7.1 not from that network" {
		t.Fatalf("verdict %+v", v)
	}
	v, err = s.Filter(context.Background(), eml(t, "qp-latin1.eml"))
	if err != nil || v.Action != plugin.ActionDrop {
		t.Fatalf("a fetched message: %+v %v", v, err)
	}
}
