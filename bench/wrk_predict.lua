-- wrk script for bench_serve.py: POST /v1/predict with one text per request, cycling through
-- the JSON-encoded texts (one per line) of the file named by $JIYI_WRK_TEXTS.
local texts = {}
for line in io.lines(os.getenv("JIYI_WRK_TEXTS")) do
  texts[#texts + 1] = line
end
local i = 0

request = function()
  i = i + 1
  local body = '{"texts": [' .. texts[(i % #texts) + 1] .. ']}'
  return wrk.format("POST", "/v1/predict", { ["Content-Type"] = "application/json" }, body)
end
