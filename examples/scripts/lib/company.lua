-- company.lua: settings shared by the example scripts, loaded with
-- require("company") from the directory named by script_lib. A module runs
-- once per script state, in the same sandbox; what it returns is what
-- require returns.

local M = {}

M.name = "Example Ltd"
M.domains = {["example.net"] = true, ["work.example.net"] = true}

M.footer = "-- \nExample Ltd · 1 Example Street · Springfield\nThis message was checked by mailflow."

-- internal reports whether an address is one of the company's.
function M.internal(address)
  local domain = address:lower():match("@([^@]+)$")
  return domain ~= nil and M.domains[domain] == true
end

return M
