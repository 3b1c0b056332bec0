-- report_prefix.lua: mark machine reports for the team, and count them.

function filter(msg)
  local subject = msg:header("Subject") or "(no subject)"
  if subject:sub(1, 8) ~= "[report]" then
    msg:set_header("Subject", "[report] " .. subject)
  end
  msg:set_header("X-Report-Source", msg.input)
  state.add("reports")
end
