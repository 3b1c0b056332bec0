-- dedupe.lua: drop a message whose Message-ID was already seen in the last
-- week: the same mail fetched from two mailboxes, or a list that sends a
-- copy to each of your addresses. duplicate() (RFC 7352) remembers in
-- state_dir across reloads and restarts; a message without a Message-ID is
-- never taken for a duplicate, and the same message tried again after a
-- delivery failed for now is not its own duplicate.

local window = 7 * 24 * 3600 -- seconds

function filter(msg)
  if duplicate{seconds = window} then
    return drop("duplicate: Message-ID " .. (msg.message_id or "?") .. " was seen already")
  end
  return keep()
end
