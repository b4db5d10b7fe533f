-- Replays pre-built, correctly signed raw HTTP/1.1 requests from a side file.
--
-- bench/ingest.py writes one side file per scenario (AMPECO, EasyPark, ZTLment, mix,
-- Zaptec): records `<length>\n<raw request bytes>`, each a complete request (method, path,
-- Host, Content-Type, signature or Authorization header, Content-Length, body), signed
-- in Python with the same secrets the servers are configured with. Signing in Lua would
-- need an HMAC library wrk does not ship, and would cost wrk CPU.
--
--   wrk -t1 -c64 -d10s --latency -s bench/lua/replay.lua http://127.0.0.1:PORT -- FILE [OFFSET]
--
-- Requests go out in file order starting at record OFFSET (so a warm-up run and the
-- measured run do not resend the same events), wrapping around at the end. Use one wrk
-- thread (-t1): every thread would replay the same records. The script counts what it
-- sent and the answers by class, and prints one line at the end:
--   REPLAY sent=N ok=N conflict=N other=N
-- `ok` is 2xx, `conflict` is 409 (EasyPark's "duplicate, already processed").

local records = {}
local count = 0
local offset = 0

-- Per-thread counters; globals so that done() can read them with thread:get().
sent = 0
ok = 0
conflict = 0
other = 0

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s replay.lua URL -- FILE [OFFSET]")
   end
   local handle = assert(io.open(path, "rb"))
   while true do
      local line = handle:read("*l")
      if line == nil then
         break
      end
      count = count + 1
      records[count] = handle:read(tonumber(line))
   end
   handle:close()
   if count == 0 then
      error(path .. " holds no requests")
   end
   offset = tonumber(args[2] or "0")
end

function request()
   local record = records[((offset + sent) % count) + 1]
   sent = sent + 1
   return record
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   elseif status == 409 then
      conflict = conflict + 1
   else
      other = other + 1
   end
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local totals = { sent = 0, ok = 0, conflict = 0, other = 0 }
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + (thread:get(name) or 0)
      end
   end
   io.write(string.format("REPLAY sent=%d ok=%d conflict=%d other=%d\n",
      totals.sent, totals.ok, totals.conflict, totals.other))
end
