-- forward.lua: forward mail from chosen senders to another address.
--
-- The message goes to the "forward" output (an SMTP output) with a new
-- envelope recipient, and to the archive as well. Its original header is
-- kept; a Resent-* block (RFC 5322 3.6.6) records the forwarding on top.
-- Edit the three settings below.

local forward_to = "bob@elsewhere.example"
local senders = {                -- exact addresses, lower case
  ["alice@example.org"] = true,
}
local domains = {                -- every sender at these domains
  ["partner.example"] = true,
}

function filter(msg)
  for _, from in ipairs(msg:from()) do
    local addr = from.address:lower()
    local domain = addr:match("@(.+)$")
    if senders[addr] or domains[domain] then
      -- add_header puts each field on top: add bottom-up.
      msg:add_header("X-Forwarded-By", "mailflow forward.lua")
      msg:add_header("Resent-To", forward_to)
      msg:add_header("Resent-Date", date())
      msg:set_recipients({ forward_to })
      log.info("forwarding", "from", addr, "to", forward_to)
      return route("forward", "archive")
    end
  end
  -- Anything else goes on to the next script and the pipeline's outputs.
end
