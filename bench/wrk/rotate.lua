-- wrk script for every HTTP scenario: optionally rotates headers over the values in a file
-- (one request per line: API keys for the edge and the peer; for the direct scenario, the
-- signed identity the edge would send, its four headers' values separated by tabs), and
-- prints one JSON line with exact figures at the end.
-- usage: wrk ... -s rotate.lua URL -- [HEADER[,HEADER...] FILE]

local requests = {}
local index = 0
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("id", threads)
end

function init(args)
   local header, path = args[1], args[2]
   if header == nil then
      requests[1] = wrk.format()
      return
   end
   local names = {}
   for name in string.gmatch(header, "[^,]+") do names[#names + 1] = name end
   for line in io.lines(path) do
      local headers = {}
      for k, v in pairs(wrk.headers) do headers[k] = v end
      local i = 1
      for value in string.gmatch(line, "[^\t]+") do
         headers[names[i]] = value
         i = i + 1
      end
      requests[#requests + 1] = wrk.format(nil, nil, headers)
   end
   -- every thread (and every run) starts at a different place in the list
   math.randomseed(os.time() * 100 + (id or 0))
   index = math.random(#requests) - 1
end

function request()
   index = index % #requests + 1
   return requests[index]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
