-- wrk script of bench/events.py: one registry event per POST, each with an id of its own.
--   wrk -t THREADS ... -s bench/events.lua URL -- KIND DIGESTS_FILE TOKEN PER_THREAD RUN_ID THREADS
-- KIND is push (each event names the next blob of DIGESTS_FILE, "repo digest" a line, so every
-- accepted event leaves a blob of its own in the cache) or pull (of the same blobs). A thread
-- stops after PER_THREAD answers: the run is bounded in count (and by wrk's -d in time).

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  kind, digests_file, token, per_thread, run_id = args[1], args[2], args[3], tonumber(args[4]), args[5]
  nthreads = tonumber(args[6])
  blobs = {}
  for line in io.lines(digests_file) do
    local repo, digest = line:match("^(%S+) (%S+)$")
    table.insert(blobs, {repo, digest})
  end
  n = 0
  answered = 0
  refused = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  -- Threads interleave over the blobs: thread t takes blobs t, t+T, t+2T, ...
  local index = (n * nthreads + tid - 1) % #blobs + 1
  n = n + 1
  local blob = blobs[index]
  local repo, digest = blob[1], blob[2]
  local method = kind == "pull" and "GET" or "PUT"
  local body = '{"events":[{"id":"' .. run_id .. "-" .. tid .. "-" .. n .. '",'
    .. '"timestamp":"2026-11-29T07:18:44.169Z","action":"' .. kind .. '",'
    .. '"target":{"mediaType":"application/octet-stream","size":10,"digest":"' .. digest .. '",'
    .. '"length":10,"repository":"' .. repo .. '",'
    .. '"url":"http://reg/v2/' .. repo .. "/blobs/" .. digest .. '"},'
    .. '"request":{"id":"r","method":"' .. method .. '","useragent":"bench"},'
    .. '"actor":{},"source":{"addr":"bench:5000"}}]}'
  return wrk.format(nil, "/events", nil, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 202 then
    refused = refused + 1
  end
  if answered >= per_thread then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local answered_all, refused_all = 0, 0
  for _, thread in ipairs(threads) do
    answered_all = answered_all + thread:get("answered")
    refused_all = refused_all + thread:get("refused")
  end
  io.write(string.format(
    '{"answered": %d, "refused": %d, "errors": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f}\n',
    answered_all, refused_all,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
