-- wrk script: refresh-token rotations. Every connection needs a live token family, and a token
-- works once: each thread takes its share of the tokens in $REFRESH_TOKENS (one per line), sends
-- one per request and puts back the successor from the answer. A thread never has more requests
-- in flight than connections, so it always holds a token to send. wrk builds one request in the
-- first thread before the run to check the script (never sent): every thread gets one spare.
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  local per_thread = tonumber(os.getenv("REFRESH_PER_THREAD"))
  local line_no = 0
  for line in io.lines(os.getenv("REFRESH_TOKENS")) do
    line_no = line_no + 1
    if math.floor((line_no - 1) / per_thread) + 1 == id then
      table.insert(tokens, line)
    end
  end
  failures = 0
end

request = function()
  local token = table.remove(tokens)
  if token == nil then
    -- Only after a failed rotation lost a token; count it and send something that fails fast.
    token = "prf_lost"
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, '{"refresh_token":"' .. token .. '"}')
end

response = function(status, headers, body)
  local next_token = body:match('"refresh_token":"(prf_[^"]+)"')
  if status == 200 and next_token then
    table.insert(tokens, next_token)
  else
    failures = failures + 1
  end
end
