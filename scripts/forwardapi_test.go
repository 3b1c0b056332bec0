package scripts

import (
	"context"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/internal/srs"
)

func TestForwardingHelpers(t *testing.T) {
	secret := "a-secret-of-some-length"
	rw := &srs.Rewriter{Domain: "fwd.example", Secrets: []string{secret}}
	bounceTo, _ := rw.Forward("alice@orig.example")
	old := &srs.Rewriter{Domain: "fwd.example", Secrets: []string{secret}, Now: func() time.Time { return time.Now().Add(-40 * 24 * time.Hour) }}
	expired, _ := old.Forward("alice@orig.example")
	limits := plugin.ScriptLimits{Instance: "gw1", SRSSecrets: []string{"new-secret-0123456789", secret}, TrustedAuthServIDs: []string{"mx.example.net"}}
	s := load(t, `function filter(msg)
  local r = {}
  r[#r + 1] = tostring(srs.reverse("`+bounceTo+`"))
  local none, why = srs.reverse("`+expired+`")
  r[#r + 1] = tostring(none) .. ":" .. why
  r[#r + 1] = tostring((srs.reverse("alice@orig.example")))
  r[#r + 1] = tostring(msg:hops())
  r[#r + 1] = tostring(msg:looped())
  for _, a in ipairs(msg:auth_results()) do
    r[#r + 1] = a.authserv_id .. " " .. a.method .. "=" .. a.result .. " " .. (a.domain or a.from or "")
  end
  msg:set_header("X-Out", table.concat(r, "|"))
end`, limits)
	m := mailWith("f1",
		"Received: from a by b; Mon, 30 Nov 2026 10:00:00 +0000",
		"Received: from c by d; Mon, 30 Nov 2026 10:00:01 +0000",
		"X-Loop: mailflow/gw1/smtp",
		"Authentication-Results: mx.example.net; dkim=pass header.d=orig.example; spf=pass smtp.mailfrom=orig.example; dmarc=pass header.from=orig.example",
		"Authentication-Results: evil.example; dmarc=pass header.from=bank.example",
		"From: alice@orig.example")
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	want := "alice@orig.example|nil:srs: the address is too old|nil|2|true|" +
		"mx.example.net dkim=pass orig.example|mx.example.net spf=pass orig.example|mx.example.net dmarc=pass orig.example"
	if got := m.Header.Get("X-Out"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Another instance's trace is not this one's loop.
	s2 := load(t, `function filter(msg) msg:set_header("X-Out", tostring(msg:looped())) end`, plugin.ScriptLimits{Instance: "gw2"})
	m2 := mailWith("f2", "X-Loop: mailflow/gw1/smtp")
	s2.Filter(context.Background(), m2)
	if m2.Header.Get("X-Out") != "false" {
		t.Fatal("another instance's trace taken for a loop")
	}
}
