-- strip_attachments.lua: take executable and archive attachments out of
-- mail, and anything larger than 10 MB, leaving a short note in their
-- place ("The attachment "setup.exe" (application/octet-stream, 2 MB) was
-- removed by mailflow."). The text of the message and the other
-- attachments stay byte for byte; signed parts are left alone.

local dangerous = {exe = true, scr = true, bat = true, cmd = true, js = true, vbs = true, jar = true, zip = true, rar = true, ["7z"] = true}
local max_size = 10 * 1024 * 1024

function filter(msg)
  local removed = msg:remove_attachments(function(part)
    local ext = part.filename:lower():match("%.([%w]+)$")
    return (ext and dangerous[ext]) or part.size > max_size
  end)
  if removed > 0 then
    msg:set_header("X-Attachments-Removed", tostring(removed))
  end
  return keep()
end
