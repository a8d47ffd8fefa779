-- wrk script: password sign-ins (correct passwords: every request is a real argon2id
-- verification plus a session and an audit event), spread over 16 accounts as real traffic is.
-- Many parallel sign-ins to one account would trip its lockout: in-flight attempts count as
-- failures until they succeed.
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"email":"bench%d@example.com","password":"violet-kettle-orbit-93"}', n % 16)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
