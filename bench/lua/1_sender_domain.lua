-- bench chain 1/3: tag by sender domain.
function filter(msg)
  local from = msg:header("From") or ""
  local domain = from:match("@([%w%.%-]+)")
  if domain then msg:set_header("X-Sender-Domain", domain) end
end
