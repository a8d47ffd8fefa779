-- wrk script for the load suite: a mix of reads, writes and sign-ins against one organization.
--   every 20th request: a password sign-in (spread over 16 accounts: load0..load15@example.com)
--   every 4th: a record create; the rest: a single-record read or a list of 50, alternating.
-- REL_DELAY_MS (per connection, between requests) paces the load below capacity; 0 = flat out.
local org = os.getenv("REL_ORG")
local token = os.getenv("REL_TOKEN")
local ids = {}
for id in string.gmatch(os.getenv("REL_RECORD_IDS") or "", "%S+") do table.insert(ids, id) end
local pace = tonumber(os.getenv("REL_DELAY_MS") or "0")
local base = "/api/v1/orgs/" .. (org or "") .. "/collections/work_orders/records"
local auth = {["Authorization"] = "Bearer " .. (token or ""), ["Content-Type"] = "application/json"}
local n = 0

function init(args)
  -- Each thread starts at another place in the mix, so threads don't sign in in lockstep.
  n = math.random(0, 1000)
end

function delay()
  return pace
end

request = function()
  n = n + 1
  if n % 20 == 0 then
    local body = string.format('{"email":"load%d@example.com","password":"violet-kettle-orbit-93"}', n % 16)
    return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"}, body)
  elseif n % 4 == 0 then
    local body = string.format('{"data":{"title":"load %d","status":"open","hours":%d}}', n, n % 40)
    return wrk.format("POST", base, auth, body)
  elseif n % 2 == 0 then
    return wrk.format("GET", base .. "/" .. ids[(n % #ids) + 1], auth)
  else
    return wrk.format("GET", base .. "?limit=50", auth)
  end
end
