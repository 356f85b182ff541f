#!/usr/bin/env bash
# Load test on loopback: tollgate demo in front of its demo app, driven by
# hey. Bounded: N requests (default 20000) at C connections (default 32).
#   scripts/load.sh            or   N=50000 C=64 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-32}
PORT=${PORT:-18080}
HEY="go run github.com/rakyll/hey@v0.1.4"

go build -o bin/tollgate ./cmd/tollgate
out=$(mktemp)
bin/tollgate demo -listen "127.0.0.1:$PORT" -log-level error >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q 'export TOKEN=' "$out" && break; sleep 0.1; done
TOKEN=$(sed -n 's/.*export TOKEN=//p' "$out")
[ -n "$TOKEN" ] || { cat "$out"; echo "demo did not start"; exit 1; }
# The demo prints the commands that subscribe cus_demo; subscribe to pro,
# whose api_calls have no quota, so that the gated run measures allowed
# requests rather than 429s.
grep -E '^\s*(bin/)?tollgate trigger|go run ./cmd/tollgate trigger' "$out" | head -1 | sed 's/#.*//' |
  sed 's|go run ./cmd/tollgate|bin/tollgate|; s/-price [^ ]*/-price price_demo_pro/' | bash >/dev/null 2>&1 || true

echo "== public route (no auth, no gate): $N requests, $C connections"
$HEY -n "$N" -c "$C" "http://127.0.0.1:$PORT/healthz" | grep -E 'Requests/sec|Average|99% in|responses'
echo "== authenticated, gated, metered route: $N requests, $C connections"
$HEY -n "$N" -c "$C" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/hello" | grep -E 'Requests/sec|Average|99% in|responses'
