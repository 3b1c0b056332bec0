-- Who gets the mail sent to example.org. An address not listed is
-- refused while the sending server still waits (550): it bounces it to
-- its sender, and no bounce of ours goes to a forged one.
local forwards = {
  ["alice@example.org"]      = { "alice.smith@mail.example.net" },
  ["bob@example.org"]        = { "bob@isp.example" },
  ["postmaster@example.org"] = { "alice.smith@mail.example.net" },
  ["team@example.org"]       = { "alice.smith@mail.example.net", "bob@isp.example" },
}

function filter(msg)
  -- The envelope as it arrived (a saved message in "mailflow test" has
  -- none: its To and Cc stand in).
  local rcpts = msg:recipients()
  if #rcpts == 0 then
    for _, a in ipairs(msg:to()) do table.insert(rcpts, a.address) end
    for _, a in ipairs(msg:cc()) do table.insert(rcpts, a.address) end
  end
  -- A bounce to one of our SRS addresses goes back to the original sender.
  local to = {}
  for _, rcpt in ipairs(rcpts) do
    local back = srs.reverse(rcpt)
    if back then
      table.insert(to, back)
    else
      local user, domain = rcpt:lower():match("^([^@]+)@(.+)$")
      local base = (user or ""):gsub("%+.*$", "")          -- alice+news@ is alice@
      local list = forwards[base .. "@" .. (domain or "")]
      if not list then
        return reject("5.1.1 <" .. rcpt .. ">: no such user here")
      end
      for _, a in ipairs(list) do table.insert(to, a) end
    end
  end
  msg:set_recipients(to)
  return route("out")
end
