-- subject_prefix.lua: prefix the subject by the sender's domain, once,
-- so that mail from a customer or a team stands out in any mail client.

local prefixes = {
  ["shop.example.com"] = "[shop]",
  ["example.de"] = "[de]",
}

function filter(msg)
  local from = msg:from()[1]
  if not from then
    return keep()
  end
  local domain = from.address:lower():match("@(.+)$")
  local prefix = domain and prefixes[domain]
  if not prefix then
    return keep()
  end
  local subject = msg:header("Subject") or ""
  if subject:sub(1, #prefix) ~= prefix then
    msg:set_header("Subject", prefix .. " " .. subject)
  end
end
