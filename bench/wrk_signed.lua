-- wrk script: send pre-signed request lines from a file, each exactly once.
-- Every ZEGO request needs a fresh SignatureNonce, so the lines are signed beforehand
-- (bench/api_bench.py writes them) and wrk only cycles through them.
-- Usage: wrk -t1 -c64 -d15s --latency -s bench/wrk_signed.lua URL -- LINES_FILE
-- With WRK_RATE set (requests per second, one wrk thread), requests leave on a fixed schedule
-- of 1/WRK_RATE apart across all connections (paced load); without it, wrk sends as fast as
-- the server answers (closed loop).

local lines = {}
local index = 0

function init(args)
    for line in io.lines(args[1]) do
        lines[#lines + 1] = line
    end
end

function request()
    index = index + 1
    if index > #lines then
        index = 1 -- replays would be refused as replays; the file is sized so this never happens
    end
    return wrk.format("GET", lines[index])
end

local rate = tonumber(os.getenv("WRK_RATE") or "")
if rate and rate > 0 then
    local ffi = require("ffi")
    ffi.cdef([[
        typedef struct { long tv_sec; long tv_usec; } bench_timeval;
        int gettimeofday(bench_timeval *tv, void *tz);
    ]])
    local tv = ffi.new("bench_timeval")
    local function now_ms()
        ffi.C.gettimeofday(tv, nil)
        return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
    end
    local interval = 1000 / rate
    local next_slot = nil

    -- Called before every request: wait for the next free slot of the schedule. A server that
    -- falls behind is not sent a catch-up burst; the schedule restarts from now.
    function delay()
        local now = now_ms()
        if next_slot == nil or next_slot < now then
            next_slot = now
        end
        local wait = next_slot - now
        next_slot = next_slot + interval
        return math.floor(wait)
    end
end
