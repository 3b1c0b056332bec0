-- footer.lua: add the company footer to mail going out. The footer goes at
-- the end of the first text/plain and text/html body, each in its own
-- charset and transfer encoding (a base64 UTF-8 part stays base64 UTF-8,
-- a quoted-printable Latin-1 part stays that); attachments and every other
-- byte stay as they were. A signed message is left alone (a change would
-- break its signature), with a warning. The footer text comes from the
-- shared module examples/scripts/lib/company.lua (script_lib).

local company = require("company")

function filter(msg)
  if msg:header("X-Footer-Added") then
    return keep() -- already has it (mail that went round once)
  end
  if msg:add_footer(company.footer) > 0 then
    msg:set_header("X-Footer-Added", company.name)
  end
  return keep()
end
