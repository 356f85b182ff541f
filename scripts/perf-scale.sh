#!/usr/bin/env bash
# Where the time of BenchmarkCachedPathScale's 100,000-user case goes
# (issue 13; docs/performance.md, "Scale"): a perf record of the measured
# loop (cpu-clock: the development VM has no hardware counters), each
# sample charged to the step of the path it is in (token, decision,
# reservation, count) and to the function it is in.
#
#   scripts/perf-scale.sh [-n 3000000] [-o /tmp/tollgate-scale]
#
# Needs perf (Debian: linux-perf) and python3; installs perf if missing.
# (Not under /tmp/perf-*: perf reads files there as JIT symbol maps.)
set -euo pipefail
n=3000000 out=/tmp/tollgate-scale
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	-h | --help) sed -n '2,10p' "$0"; exit 0 ;;
	*) echo "perf-scale: unknown flag $1 (see -h)" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
if ! command -v perf >/dev/null; then
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq && $sudo apt-get install -y -qq linux-perf >/dev/null
fi
mkdir -p "$out"
go test -c -o "$out/sidecar.test" ./internal/sidecar/
echo "== recording ($n requests, with a setup of 100,000 users first)" >&2
perf record -q -e cpu-clock -F 2000 -g -o "$out/perf.data" "$out/sidecar.test" -test.run '^$' \
	-test.bench 'CachedPathScale/cached=100000$' -test.benchtime "${n}x" | tee "$out/bench.txt" | grep Benchmark
perf script -i "$out/perf.data" 2>/dev/null | python3 scripts/perf-loop.py
