-- bench chain 3/3: prefix the subject once, count.
function filter(msg)
  local s = msg:header("Subject") or ""
  if s:sub(1, 8) ~= "[bench] " then msg:set_header("Subject", "[bench] " .. s) end
  state.add("seen")
end
