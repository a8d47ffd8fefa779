-- wrk script: record creates spread over the organizations listed in BENCH_ORGS (space-separated
-- org ids, all owned by the bearer of BENCH_TOKEN), each with a unique title.
local orgs = {}
for org in string.gmatch(os.getenv("BENCH_ORGS") or "", "%S+") do table.insert(orgs, org) end
local token = os.getenv("BENCH_TOKEN")
local n = 0
request = function()
  n = n + 1
  local org = orgs[(n % #orgs) + 1]
  local body = string.format('{"data":{"title":"job %d","status":"open","hours":%d}}', n, n % 40)
  return wrk.format("POST", "/api/v1/orgs/" .. org .. "/collections/work_orders/records",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
