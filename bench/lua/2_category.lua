-- bench chain 2/3: mark list mail.
function filter(msg)
  if msg:header("List-Id") or msg:header("List-Unsubscribe") then
    msg:set_header("X-Category", "list")
  else
    msg:set_header("X-Category", "personal")
  end
end
