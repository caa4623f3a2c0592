-- wrk script: POST an Anthropic Messages request (/v1/messages); STREAM=1 in the environment asks for a stream.
-- The same conversation as post.lua, in the Messages API's shape.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-bench")
wrk.headers["anthropic-version"] = "2023-06-01"
local model = os.getenv("MODEL") or "claude-sonnet-4-5"
local stream = os.getenv("STREAM") == "1"
wrk.body = '{"model":"' .. model .. '","system":"You are terse.","messages":[' ..
  '{"role":"user","content":"Tell me a short story about a gateway."}],"max_tokens":64' ..
  (stream and ',"stream":true' or '') .. '}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
