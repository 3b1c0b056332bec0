-- Routes to an output the config does not define, and to one whose name
-- only the run knows.
function filter(msg)
  if msg:header("List-Id") ~= "" then
    return route("lists", "archive")
  end
  if msg:header("X-Spam-Flag") == "YES" then
    return route("spam")
  end
  local folder = msg:header("X-Folder")
  if folder ~= "" then
    return route(folder)
  end
  return keep()
end
