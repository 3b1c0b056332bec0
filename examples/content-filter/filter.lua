-- A content filter between Postfix's receiving and its delivery: it may
-- read and change every message, and refuse one back to the sending
-- server (reject: Postfix bounces it to the sender) or hold one for a
-- person (quarantine: "mailflow quarantine list").
--
-- msg.client is the client Postfix received the message from (Postfix
-- says so with XFORWARD); msg.sender and msg:recipients() its envelope.

-- Attachments no one should be sent by mail.
local refused = { exe = true, scr = true, com = true, bat = true, js = true, vbs = true, msi = true }

function filter(msg)
  for _, a in ipairs(msg:attachments()) do
    local ext = (a.name or ""):lower():match("%.(%w+)$")
    if ext and refused[ext] then
      return reject("5.7.1 attachments of type ." .. ext .. " are not accepted here")
    end
  end

  -- Mail from outside that claims to be from us.
  local from = (msg:from()[1] or {}).address or ""
  local client = msg.client or {}
  if from:lower():match("@example%.org$") and not client.auth and client.address
     and not client.address:match("^127%.") and not client.address:match("^::1$") then
    msg:set_header("Subject", "[external] " .. (msg:header("Subject") or ""))
  end

  -- A trace of the filter, for whoever reads the header.
  msg:add_header("X-Filtered-By", "mailflow (" .. (client.address or "local") .. ")")
end
