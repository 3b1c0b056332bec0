-- blocklist.lua: drop mail from blocked senders, domains and subjects.
--
-- A dropped message is removed from its source and delivered nowhere; the
-- log line says which rule matched. Use quarantine(reason) instead of drop
-- if you want to look at what was caught first.

local addresses = {
  ["offers@spam.example"] = true,
}
local domains = {
  ["spam.example"] = true,
  ["junk.example"] = true,
}
-- Go regular expressions (RE2), matched against the decoded subject.
local subjects = {
  "(?i)\\bcheap (meds|watches)\\b",
  "(?i)you have won",
}

function filter(msg)
  for _, from in ipairs(msg:from()) do
    local addr = from.address:lower()
    if addresses[addr] then
      return drop("blocked sender " .. addr)
    end
    local domain = addr:match("@(.+)$")
    if domain and domains[domain] then
      return drop("blocked domain " .. domain)
    end
  end
  local subject = msg:header("Subject") or ""
  for _, pattern in ipairs(subjects) do
    if re.match(pattern, subject) then
      return drop("blocked subject /" .. pattern .. "/")
    end
  end
end
