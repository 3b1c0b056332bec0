-- send_as_addressed.lua: send each message to the addresses in its own To,
-- Cc and Bcc fields (what `sendmail -t` does), and remove Bcc so that the
-- blind copies stay blind.

function filter(msg)
  local rcpts, seen = {}, {}
  for _, field in ipairs({ "To", "Cc", "Bcc" }) do
    for _, a in ipairs(msg:addresses(field)) do
      local addr = a.address:lower()
      if addr ~= "" and not seen[addr] then
        seen[addr] = true
        rcpts[#rcpts + 1] = a.address
      end
    end
  end
  if #rcpts == 0 then
    return quarantine("no To, Cc or Bcc address to send to")
  end
  msg:remove_header("Bcc")
  return redirect(rcpts)
end
