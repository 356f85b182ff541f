#!/usr/bin/env bash
# Two builds of one Go benchmark, run at the same time, round after round
# (issue 13; docs/performance.md). On a virtual machine whose host is busy
# by the minute, runs of two builds one after the other differ by more than
# most changes do; run together, both builds see the same host, and their
# ratio is what to quote (each figure is higher than a run alone: they
# share the 2 cores and the memory).
#
#   scripts/bench-ab.sh [-rounds 3] [-benchtime 20s] [-pkg ./internal/sidecar/]
#                       [-no-barrier] -bench REGEX BASE [NEW]
#
# REGEX should match one benchmark. BASE and NEW are git revisions; NEW
# defaults to the working tree. Prints each round's ns/op of both and
# NEW/BASE, then the median ratio. The two measured loops start together:
# both benchmarks wait after their setup (benchBarrier, internal/sidecar)
# until both are ready, and with a -benchtime that is a duration (not Nx)
# both then measure over the same seconds. A build whose benchmark has no
# such wait is refused; -no-barrier runs it anyway, its loop then
# overlapping the other's only by chance.
set -euo pipefail
rounds=3 benchtime=20s pkg=./internal/sidecar/ bench="" barrier=1
usage() { sed -n '2,19p' "$0"; }
while [ $# -gt 0 ]; do
	case "$1" in
	-rounds | -benchtime | -pkg | -bench)
		[ $# -ge 2 ] || { echo "bench-ab: $1 needs a value (see -h)" >&2; exit 2; }
		case "$1" in
		-rounds) [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench-ab: -rounds $2: want a whole number of at least 1" >&2; exit 2; }; rounds=$2 ;;
		-benchtime) benchtime=$2 ;;
		-pkg) pkg=$2 ;;
		-bench) bench=$2 ;;
		esac
		shift 2 ;;
	-no-barrier) barrier=0; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "bench-ab: unknown flag $1 (see -h)" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ -n "$bench" ] || { echo "bench-ab: -bench REGEX is required (see -h)" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "bench-ab: want BASE [NEW] revisions (see -h)" >&2; exit 2; }
base=$1 new=${2-}
cd "$(dirname "$0")/.."
git rev-parse --verify -q "$base^{commit}" >/dev/null || { echo "bench-ab: $base is not a revision here" >&2; exit 2; }
[ -z "$new" ] || git rev-parse --verify -q "$new^{commit}" >/dev/null || { echo "bench-ab: $new is not a revision here" >&2; exit 2; }
work=$(mktemp -d)
cleanup() {
	for d in "$work"/tree-*; do [ -d "$d" ] && git worktree remove --force "$d" >/dev/null 2>&1; done
	rm -rf "$work"
}
trap cleanup EXIT
build() { # build NAME REV: the test binary of pkg at REV ("" for the working tree)
	local dir=.
	if [ -n "$2" ]; then
		dir=$work/tree-$1
		git worktree add -q --detach "$dir" "$2"
	fi
	echo "== building $1 (${2:-working tree})" >&2
	(cd "$dir" && go test -c -o "$work/$1.test" "$pkg")
}
build base "$base"
build new "$new"
if [ $barrier = 1 ]; then
	for b in base new; do
		grep -q TOLLGATE_BENCH_BARRIER "$work/$b.test" || {
			echo "bench-ab: the $b build's benchmarks do not wait for each other (no benchBarrier); -no-barrier to run it anyway" >&2
			exit 2
		}
	done
fi
run() { "$work/$1.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" >"$work/$1.out" 2>&1; }
# release DIR PID...: once both benchmarks are ready in DIR, let them go.
release() {
	local dir=$1; shift
	while [ "$(find "$dir" -name 'ready.*' | wc -l)" -lt 2 ]; do
		for p in "$@"; do kill -0 "$p" 2>/dev/null || return 0; done # one ended: its error is reported below
		sleep 0.1
	done
	touch "$dir/go"
}
nsop() { awk '/^Benchmark/ { for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") { print $i; exit } }' "$work/$1.out"; }
ratios=()
for i in $(seq 1 "$rounds"); do
	gate=$work/barrier.$i
	mkdir "$gate"
	[ $barrier = 0 ] || export TOLLGATE_BENCH_BARRIER=$gate
	run base & a=$!
	run new & b=$!
	[ $barrier = 0 ] || release "$gate" $a $b
	wait $a || { cat "$work/base.out" >&2; exit 1; }
	wait $b || { cat "$work/new.out" >&2; exit 1; }
	x=$(nsop base) y=$(nsop new)
	[ -n "$x" ] && [ -n "$y" ] || { echo "bench-ab: no benchmark matched $bench" >&2; cat "$work/new.out" >&2; exit 1; }
	r=$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.3f", y / x }')
	ratios+=("$r")
	echo "round $i: base $x ns/op, new $y ns/op, new/base $r"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median new/base over %d rounds: %.3f\n", NR, m }'
