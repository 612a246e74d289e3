-- wrk script for bench/check.py: POSTs pregenerated request bodies in rotation and prints a
-- one-line JSON summary (latency percentiles in microseconds) from done().
--
--   BENCH_AUTHORIZATION="Bearer ..." wrk -t2 -c32 -d15s -s bench/wrk_check.lua URL -- BODIES
--
-- BODIES holds one JSON request body per line. BENCH_AUTHORIZATION (optional) is sent as the
-- Authorization header.

local bodies = {}
local index = 0
local headers = { ["Content-Type"] = "application/json" }
local threads_started = 0

function setup(thread)
  thread:set("thread_number", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s wrk_check.lua URL -- BODIES_FILE")
  end
  for line in io.lines(path) do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  if #bodies == 0 then
    error("no request bodies in " .. path)
  end
  local authorization = os.getenv("BENCH_AUTHORIZATION")
  if authorization ~= nil and #authorization > 0 then
    headers["Authorization"] = authorization
  end
  -- Threads start at different places in the list so that they don't send the same bodies.
  index = ((thread_number or 0) * 7919) % #bodies
end

function request()
  index = index % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[index])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
