-- notify_boss.lua: when mail from the boss arrives, send a short
-- notification to another address (a phone's mail-to-SMS gateway, a pager
-- inbox). The message itself is delivered as usual; the notification is a
-- new message (Auto-Submitted: auto-generated) through the output named
-- here, sent once per message however often it is retried.

local boss = {["boss@example.com"] = true, ["ceo@example.com"] = true}

function filter(msg)
  for _, from in ipairs(msg:from()) do
    if boss[from.address:lower()] then
      notify{
        output = "smtp",
        to = "bob-phone@sms.example.net",
        from = "mailflow <mailflow@example.net>",
        subject = "Mail from " .. (from.name ~= "" and from.name or from.address),
        text = (msg:header("Subject") or "(no subject)"),
      }
      break
    end
  end
  return keep()
end
