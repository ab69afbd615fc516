-- wrk script of bench/run.py: sends BENCH_METHOD with the JSON body in the file BENCH_BODY, sorts every
-- response into ok / 409 / failed, and prints one line "BENCH_JSON {...}" at the end.
-- BENCH_EXPECT=prediction counts a 200 as ok only when its body says the prediction succeeded.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY") or ""
if body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
local expect_prediction = os.getenv("BENCH_EXPECT") == "prediction"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  conflicts = 0
  failed = 0
end

function response(status, headers, body)
  if status == 409 then
    conflicts = conflicts + 1
  elseif status >= 200 and status < 300 then
    if expect_prediction and not (body:find('"status":"succeeded"', 1, true)
        or body:find('"status": "succeeded"', 1, true)) then
      failed = failed + 1
    else
      ok = ok + 1
    end
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local t_ok, t_conflicts, t_failed = 0, 0, 0
  for _, thread in ipairs(threads) do
    t_ok = t_ok + thread:get("ok")
    t_conflicts = t_conflicts + thread:get("conflicts")
    t_failed = t_failed + thread:get("failed")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"ok":%d,"conflicts":%d,"failed":%d,"errors":%d,"requests":%d,"duration_us":%d,"p50_us":%.1f,"p99_us":%.1f}\n',
    t_ok, t_conflicts, t_failed, e.connect + e.read + e.write + e.timeout, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
