#!/usr/bin/env bash
# Side-by-side benchmark: tollgate against a bare Go httputil.ReverseProxy,
# nginx, HAProxy and Caddy, all in front of one small upstream, on loopback
# (issue 13). Method and latest results: docs/performance.md.
#
#   scripts/bench-compare.sh                    quick look (a few minutes)
#   scripts/bench-compare.sh -rounds 3 -d 10s   the issue's method; run it twice
#   scripts/bench-compare.sh -h                 every flag
#
# Installs what is missing (Debian: wrk nginx haproxy caddy redis-server
# valgrind) after apt-get update, builds tollgate and internal/cmd/benchrig,
# starts every process on loopback ports, and stops them all at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

ROUNDS=3
DUR=3s
CONNS=64
THREADS=2
TARGETS="direct bare bare-headers nginx haproxy caddy tollgate tollgate-public tollgate-nolog"
CG=1
CG_N=4000
CG_REPS=3
CG_TARGETS="bare bare-headers tollgate tollgate-public tollgate-nolog"
OL=1
OL_RATE=2000
OL_DUR=6s
OL_ROUNDS=2
OL_TARGETS="direct bare tollgate tollgate-public"
OUT=""
LOGS=0

usage() {
	cat <<EOF
usage: scripts/bench-compare.sh [flags]

Closed loop (wrk, alternating rounds, order reversed every other round):
  -rounds N          rounds (default $ROUNDS; the issue's method: 3, and run twice)
  -d DURATION        wrk duration per target and round, in s (default $DUR; the issue's: 10s)
  -c N               connections (default $CONNS)
  -t N               wrk threads (default $THREADS)
  -targets "A B"     of: direct bare bare-headers nginx haproxy caddy tollgate tollgate-public tollgate-nolog
                     (default: all; bare is always measured, ratios are paired with it)
Instructions per request (valgrind callgrind, GODEBUG=asyncpreemptoff=1):
  -callgrind-n N     requests per measurement, after a warm-up not counted (default $CG_N)
  -callgrind-reps N  measurements per target, reported together (default $CG_REPS)
  -callgrind "A B"   targets (default: $CG_TARGETS)
  -no-callgrind      skip
Open loop (fixed schedule, latency from each request's scheduled time):
  -rate N            requests per second (default $OL_RATE)
  -openloop-d D      per target and round, 1 s warm-up included (default $OL_DUR)
  -openloop-rounds N (default $OL_ROUNDS)
  -openloop "A B"    targets (default: $OL_TARGETS)
  -no-openloop       skip
Other:
  -o DIR             keep every measurement, config and the report in DIR
  -logs              keep tollgate's logs (default: written to /dev/null, as a log shipper would take them)
  -h                 this help

Targets: direct = the upstream itself; bare = httputil.ReverseProxy, tuned
transport; bare-headers = the same, adding the headers tollgate's full path
adds (identity, X-Request-Id, RateLimit) at no cost of its own, to show what
net/http spends on them; nginx/haproxy/caddy = Debian's, plain reverse proxies, access logs
off; tollgate = full path (RS256 token verified from a JWKS and cached,
user->customer link, gated route, metered with a plan limit, so a quota
reservation too; access log at info); tollgate-nolog = the same at log level
warn; tollgate-public = the same request on an auth: none route. Every
target gets the same request bytes, the RS256 bearer token included.
EOF
}

die() { echo "bench-compare: $*" >&2; exit 2; }
count() { [[ $2 =~ ^[0-9]+$ ]] && (($2 >= 1 && $2 <= $3)) || die "$1 must be 1..$3, got '$2'"; }
secs() { [[ $2 =~ ^[0-9]+s$ ]] && ((${2%s} >= 1 && ${2%s} <= $3)) || die "$1 must be 1s..${3}s, got '$2'"; }

while (($#)); do
	case $1 in
	-h | -help | --help) usage; exit 0 ;;
	-rounds) count "$1" "${2-}" 20; ROUNDS=$2; shift ;;
	-d) secs "$1" "${2-}" 60; DUR=$2; shift ;;
	-c) count "$1" "${2-}" 1024; CONNS=$2; shift ;;
	-t) count "$1" "${2-}" 16; THREADS=$2; shift ;;
	-targets) TARGETS=${2-}; shift ;;
	-callgrind-n) count "$1" "${2-}" 100000; CG_N=$2; shift ;;
	-callgrind-reps) count "$1" "${2-}" 10; CG_REPS=$2; shift ;;
	-callgrind) CG_TARGETS=${2-}; shift ;;
	-no-callgrind) CG=0 ;;
	-rate) count "$1" "${2-}" 20000; OL_RATE=$2; shift ;;
	-openloop-d) secs "$1" "${2-}" 60; OL_DUR=$2; shift ;;
	-openloop-rounds) count "$1" "${2-}" 10; OL_ROUNDS=$2; shift ;;
	-openloop) OL_TARGETS=${2-}; shift ;;
	-no-openloop) OL=0 ;;
	-o) OUT=${2-}; [ -n "$OUT" ] || die "-o needs a directory"; shift ;;
	-logs) LOGS=1 ;;
	*) usage >&2; die "unknown flag $1" ;;
	esac
	shift
done
ALL="direct bare bare-headers nginx haproxy caddy tollgate tollgate-public tollgate-nolog"
for t in $TARGETS $CG_TARGETS $OL_TARGETS; do
	[[ " $ALL " == *" $t "* ]] || die "unknown target $t (known: $ALL)"
done
[[ " $TARGETS " == *" bare "* ]] || TARGETS="bare $TARGETS"

# 1. What the targets need, from Debian, after apt-get update.
install_missing() {
	local need=() cmd pkg
	for pair in redis-server:redis-server wrk:wrk nginx:nginx haproxy:haproxy caddy:caddy valgrind:valgrind; do
		cmd=${pair%%:*} pkg=${pair#*:}
		case $cmd in nginx | haproxy | caddy) [[ " $TARGETS " == *" $cmd "* ]] || continue ;; esac
		[ "$cmd" = valgrind ] && ((CG == 0)) && continue
		command -v "$cmd" >/dev/null || need+=("$pkg")
	done
	((${#need[@]})) || return 0
	echo "== installing ${need[*]}"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
install_missing

W=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$OUT" ]; then
		mkdir -p "$OUT" && cp -r "$W"/*.conf "$W"/*.yaml "$W"/*.txt "$W"/Caddyfile "$W"/cg-*.out.* "$OUT"/ 2>/dev/null || true
		echo "measurements kept in $OUT"
	fi
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building tollgate and benchrig"
go build -o "$W/tollgate" ./cmd/tollgate
go build -o "$W/benchrig" ./internal/cmd/benchrig
RIG=$W/benchrig

# start NAME CMD...: runs CMD in the background, its output in $W/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$W/$name.log" 2>&1 &
	PIDS+=($!)
	printf -v "PID_${name//-/_}" %s $!
}
pid_of() { local v="PID_${1//-/_}"; echo "${!v}"; }

mapfile -t P < <("$RIG" ports -n 22)
declare -A PORT=([upstream]=${P[0]} [issuer]=${P[1]} [redis]=${P[2]} [direct]=${P[0]} [bare]=${P[3]}
	[nginx]=${P[4]} [haproxy]=${P[5]} [caddy]=${P[6]} [tollgate]=${P[7]} [tollgate-public]=${P[8]}
	[tollgate-nolog]=${P[9]} [cg-bare]=${P[13]} [cg-tollgate]=${P[14]} [cg-tollgate-public]=${P[15]}
	[cg-tollgate-nolog]=${P[16]} [bare-headers]=${P[20]} [cg-bare-headers]=${P[21]})
ADMIN=(${P[10]} ${P[11]} ${P[12]} ${P[17]} ${P[18]} ${P[19]})
PATH_=/api/bench
HOST_H="Host: bench.invalid"

# 2. The parts every target shares: upstream, Redis, the JWKS issuer.
start upstream "$RIG" upstream -listen "127.0.0.1:${PORT[upstream]}"
start redis redis-server --bind 127.0.0.1 --port "${PORT[redis]}" --save "" --appendonly no
start issuer "$RIG" issuer -listen "127.0.0.1:${PORT[issuer]}" -token-out "$W/token"

# until DEADLINE_S WHAT CMD...: retries CMD until it succeeds.
until_ok() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { echo "bench-compare: $what did not come up; its log:" >&2; tail -20 "$W/${what}.log" >&2 || true; exit 1; }
		sleep 0.2
	done
}
until_ok 30 issuer test -s "$W/token"
until_ok 30 redis redis-cli -p "${PORT[redis]}" ping
TOKEN=$(cat "$W/token")
AUTH_H="Authorization: Bearer $TOKEN"
"$RIG" seed -redis "redis://127.0.0.1:${PORT[redis]}/0" -prefix "bench:" >/dev/null

# 3. The targets' configurations, on loopback ports.
tollgate_config() { # FILE PORT ADMIN LEVEL ROUTE
	cat >"$1" <<EOF
listen: "127.0.0.1:$2"
admin_listen: "127.0.0.1:$3"
upstream: "http://127.0.0.1:${PORT[upstream]}"
log: { level: $4, format: json }
server: { drain_delay: 0s, shutdown_timeout: 5s }
redis: { url: "redis://127.0.0.1:${PORT[redis]}/0", prefix: "bench:" }
stripe: { trusted_payloads: true, webhook_secrets: ["whsec_bench_loopback_only"] }
auth:
  jwt:
    algorithms: [RS256]
    issuer: "https://issuer.bench.invalid/"
    audience: [api]
    jwks_url: "http://127.0.0.1:${PORT[issuer]}/jwks.json"
plans:
  bench: { prices: [price_bench], features: [bench], limits: { api_calls: 1000000000000 } }
routes:
  - $5
metering:
  meters: { api_calls: { event_name: api_calls } }
EOF
}
GATED="{ path: /api/**, require: { features: [bench] }, meter: api_calls }"
PUBLIC="{ path: /api/**, auth: none }"
tollgate_config "$W/tollgate.yaml" "${PORT[tollgate]}" "${ADMIN[0]}" info "$GATED"
tollgate_config "$W/tollgate-public.yaml" "${PORT[tollgate-public]}" "${ADMIN[1]}" info "$PUBLIC"
tollgate_config "$W/tollgate-nolog.yaml" "${PORT[tollgate-nolog]}" "${ADMIN[2]}" warn "$GATED"
tollgate_config "$W/cg-tollgate.yaml" "${PORT[cg-tollgate]}" "${ADMIN[3]}" info "$GATED"
tollgate_config "$W/cg-tollgate-public.yaml" "${PORT[cg-tollgate-public]}" "${ADMIN[4]}" info "$PUBLIC"
tollgate_config "$W/cg-tollgate-nolog.yaml" "${PORT[cg-tollgate-nolog]}" "${ADMIN[5]}" warn "$GATED"

mkdir -p "$W/nginx"
cat >"$W/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  upstream app { server 127.0.0.1:${PORT[upstream]}; keepalive 128; }
  server {
    listen 127.0.0.1:${PORT[nginx]};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
cat >"$W/haproxy.conf" <<EOF
global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:${PORT[upstream]}
EOF
cat >"$W/Caddyfile" <<EOF
{
  admin off
  auto_https off
}
http://:${PORT[caddy]} {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:${PORT[upstream]}
}
EOF

tollgate_sink() { if ((LOGS)); then echo "$W/$1.log"; else echo /dev/null; fi; }
run_tollgate() { # NAME CONFIG [valgrind...]
	local name=$1 cfg=$2
	shift 2
	"$@" "$W/tollgate" serve -config "$cfg" >"$(tollgate_sink "$name")" 2>&1 &
	PIDS+=($!)
	printf -v "PID_${name//-/_}" %s $!
}

echo "== starting targets: $TARGETS"
for t in $TARGETS; do
	case $t in
	direct) PID_direct=$PID_upstream ;;
	bare) start bare "$RIG" bare -listen "127.0.0.1:${PORT[bare]}" -upstream "http://127.0.0.1:${PORT[upstream]}" ;;
	bare-headers) start bare-headers "$RIG" bare -headers -listen "127.0.0.1:${PORT[bare-headers]}" -upstream "http://127.0.0.1:${PORT[upstream]}" ;;
	nginx) start nginx nginx -e "$W/nginx/error.log" -p "$W/nginx" -c "$W/nginx.conf" ;;
	haproxy) start haproxy haproxy -db -f "$W/haproxy.conf" ;;
	caddy) XDG_DATA_HOME=$W/caddy XDG_CONFIG_HOME=$W/caddy start caddy caddy run --adapter caddyfile --config "$W/Caddyfile" ;;
	tollgate*) run_tollgate "$t" "$W/$t.yaml" ;;
	esac
done

# fire_one PORT: one request, the measured one's bytes; fails unless 200.
fire_one() { "$RIG" fire -n 1 -c 1 -H "$HOST_H" -H "$AUTH_H" "http://127.0.0.1:$1$PATH_"; }
for t in $TARGETS; do until_ok 60 "$t" fire_one "${PORT[$t]}"; done

# pids TARGET: the target's processes (nginx: the master and its workers).
pids() {
	local p
	p=$(pid_of "$1")
	echo "$p"
	[ "$1" = nginx ] && pgrep -P "$p"
	true
}
# cpu_ticks PID...: user+system CPU of the processes, in clock ticks.
cpu_ticks() {
	local p t=0 u s
	for p in "$@"; do
		read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
		t=$((t + u + s))
	done
	echo "$t"
}
rss_mb() { local p; for p in "$@"; do awk '/^VmRSS:/{print $2}' "/proc/$p/status"; done | awk '{s+=$1} END {printf "%.0f", s/1024}'; }
CLK=$(getconf CLK_TCK)

# wrk_once ROUND TARGET: one measurement line into rounds.txt.
wrk_once() {
	local round=$1 t=$2 out ps c0 c1
	fire_one "${PORT[$t]}" >/dev/null || { echo "bench-compare: $t did not answer 200 before round $round" >&2; exit 1; }
	mapfile -t ps < <(pids "$t")
	c0=$(cpu_ticks "${ps[@]}")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -H "$HOST_H" -H "$AUTH_H" "http://127.0.0.1:${PORT[$t]}$PATH_")
	c1=$(cpu_ticks "${ps[@]}")
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "bench-compare: $t answered errors in round $round:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk -v round="$round" -v t="$t" -v ticks=$((c1 - c0)) -v clk="$CLK" -v rss="$(rss_mb "${ps[@]}")" '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
		/requests in/ { n = $1 } /^Requests\/sec:/ { rps = $2 }
		END { printf "round=%d target=%s rps=%.0f p50_ms=%.3f p99_ms=%.3f requests=%d cpu_us_per_req=%.2f rss_mb=%s\n",
			round, t, rps, p50, p99, n, ticks * 1e6 / clk / n, rss }' <<<"$out" | tee -a "$W/rounds.txt"
}

# order ROUND LIST: the list, reversed in even rounds.
order() {
	local r=$1
	shift
	if ((r % 2)); then echo "$@"; else echo "$@" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

echo "== load: $(uptime)"
echo "== closed loop: $ROUNDS rounds x $DUR per target, wrk -t$THREADS -c$CONNS"
for r in $(seq "$ROUNDS"); do
	for t in $(order "$r" $TARGETS); do wrk_once "$r" "$t"; done
done

if ((OL)); then
	echo "== open loop: $OL_ROUNDS rounds x $OL_DUR at $OL_RATE requests/s"
	for r in $(seq "$OL_ROUNDS"); do
		for t in $(order "$r" $OL_TARGETS); do
			[[ " $TARGETS " == *" $t "* ]] || continue
			fire_one "${PORT[$t]}" >/dev/null
			echo "round=$r target=$t $("$RIG" openloop -rate "$OL_RATE" -d "$OL_DUR" -warmup 1s -c "$CONNS" \
				-H "$HOST_H" -H "$AUTH_H" "http://127.0.0.1:${PORT[$t]}$PATH_")" | tee -a "$W/openloop.txt"
		done
	done
fi

# callgrind_target TARGET: instructions of CG_N requests, CG_REPS times,
# after a warm-up (caches, connection pools, quota share) not counted.
callgrind_target() {
	local t=$1 name=cg-$1 port=${PORT[cg-$1]} vg pid i f
	vg=(env GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/$name.out")
	case $t in
	bare) start "$name" "${vg[@]}" "$RIG" bare -listen "127.0.0.1:$port" -upstream "http://127.0.0.1:${PORT[upstream]}" ;;
	bare-headers) start "$name" "${vg[@]}" "$RIG" bare -headers -listen "127.0.0.1:$port" -upstream "http://127.0.0.1:${PORT[upstream]}" ;;
	tollgate*) run_tollgate "$name" "$W/$name.yaml" "${vg[@]}" ;;
	esac
	pid=$(pid_of "$name")
	until_ok 180 "$name" fire_one "$port"
	"$RIG" fire -n 1000 -c 8 -H "$HOST_H" -H "$AUTH_H" "http://127.0.0.1:$port$PATH_" >/dev/null
	for i in $(seq "$CG_REPS"); do
		callgrind_control -z "$pid" >/dev/null 2>&1
		callgrind_control -i on "$pid" >/dev/null 2>&1
		"$RIG" fire -n "$CG_N" -c 8 -H "$HOST_H" -H "$AUTH_H" "http://127.0.0.1:$port$PATH_" >/dev/null
		callgrind_control -i off "$pid" >/dev/null 2>&1
		callgrind_control -d "$pid" >/dev/null 2>&1
		f="$W/$name.out.$i"
		until_ok 60 "$name" test -s "$f"
		echo "target=$t rep=$i n=$CG_N ir=$(awk '/^totals:/ {print $2}' "$f")" | tee -a "$W/callgrind.txt"
	done
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}
if ((CG)); then
	echo "== callgrind: $CG_REPS x $CG_N requests per target (slow: valgrind)"
	for t in $CG_TARGETS; do callgrind_target "$t"; done
fi

uptime >"$W/uptime.txt"
"$RIG" report -rounds "$W/rounds.txt" -callgrind "$W/callgrind.txt" -openloop "$W/openloop.txt" | tee "$W/report.txt"
echo
echo "(load when finished: $(cat "$W/uptime.txt"); $(nproc) cores)"
