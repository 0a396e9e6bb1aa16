-- wrk script for `make bench`: POST the JSON body in the file named by $BENCH_BODY.
-- The body is read once per wrk thread at start-up, so requests carry no per-request Lua cost.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("BENCH_BODY")
local file = assert(io.open(path, "rb"), "cannot open BENCH_BODY " .. tostring(path))
wrk.body = file:read("*a")
file:close()
