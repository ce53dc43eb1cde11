-- wrk script: top-10 :predict requests for random known users, p50/p95/p99 at the end.
-- A load generator in C, to cross-check benchmarks/serving.py's Python clients (which
-- share the machine's cores with the server). wrk is Debian's `wrk` package.
--
--   .venv/bin/movierec serve --workers 2 &           # or any other server flags
--   USERS_FILE=outputs/serving/mf/<version>/assets/user_id \
--     wrk -t1 -c8 -d5s -s benchmarks/wrk_predict.lua http://127.0.0.1:8501/v1/models/mf:predict
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local users = {}
for line in io.lines(os.getenv("USERS_FILE")) do users[#users + 1] = line end
request = function()
  local u = users[math.random(#users)]
  return wrk.format(nil, nil, nil, '{"instances":[{"user_id":"' .. u .. '"}]}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("requests %d, errors %d, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
