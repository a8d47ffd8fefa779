-- wrk script: an interactive reader, not a load generator. Each connection waits 5 ms after
-- every answer before it asks again, so 4 connections send about 600 reads/s: a rate the
-- machine serves with room to spare when nothing else runs. (A reader that asks as fast as it
-- can saturates the two cores by itself, and then its p99 measures its own queue, whatever else
-- is going on.) wrk's latency excludes the wait.
function delay()
  return 5
end
