-- clean_headers.lua: strip headers that leak private details, and rewrite
-- the reply prefixes of other languages ("AW:", "SV:", "Antw:") to "Re:".
--
-- Only the header is rewritten; the body keeps its exact bytes.

local strip = { "X-Originating-IP", "X-Mailer", "User-Agent", "X-MS-Exchange-Organization-AuthAs" }

function filter(msg)
  for _, name in ipairs(strip) do
    msg:remove_header(name)
  end
  local subject = msg:header("Subject")
  if subject then
    local fixed = re.replace("^(?i)((re|aw|sv|antw|vs|rif|r|odp)\\s*:\\s*)+", subject, "Re: ")
    if fixed ~= subject then
      msg:set_header("Subject", fixed)
    end
  end
end
