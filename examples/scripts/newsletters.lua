-- newsletters.lua: tag mailing-list and bulk mail and route it to its own
-- output, so it does not crowd the inbox.
--
-- A message counts as a newsletter if it has a List-Id or List-Unsubscribe
-- header or says "Precedence: bulk/list". It is tagged with
-- X-Mailflow-Category and sent to the "newsletters" output; the counter
-- state.newsletters says how many were seen since the script was loaded.

local output = "newsletters"

local function is_newsletter(msg)
  if msg:header("List-Id") or msg:header("List-Unsubscribe") then
    return true
  end
  local precedence = (msg:header("Precedence") or ""):lower()
  return precedence == "bulk" or precedence == "list"
end

function filter(msg)
  if not is_newsletter(msg) then
    return keep()
  end
  msg:set_header("X-Mailflow-Category", "newsletter")
  local n = state.add("newsletters")
  log.info("newsletter", "list", msg:header("List-Id") or "", "seen", n)
  return route(output)
end
