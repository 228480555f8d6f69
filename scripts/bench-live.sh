#!/usr/bin/env bash
# Live benchmark: Postfix smtp-source → smtp-sink across a veth pair while
# `smtp-user run` (release build) watches the server side. For each number of
# concurrent sessions it reports the mail rate, what the daemon saw
# (transactions, ring-buffer records lost, reassembly gap bytes) and the
# daemon's CPU and peak RSS. A fresh daemon per level, so counters are per level.
#
# Usage: scripts/bench-live.sh [MESSAGES_PER_LEVEL] [MESSAGE_BYTES] [LEVELS...]
# Needs root, iproute2, postfix (smtp-sink, smtp-source). Only the test
# address range 198.18.0.0/15 inside namespaces made here is used.
# ARGS (optional): extra `run` arguments, e.g. ARGS="--workers 1".
set -euo pipefail

MSGS=${1:-4000}
SIZE=${2:-20000}
shift $(( $# > 2 ? 2 : $# )) || true
LEVELS=("$@")
[ ${#LEVELS[@]} -gt 0 ] || LEVELS=(1 10 50 100 200 400)

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/smtp-user"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SINK" ] && [ -x "$SOURCE" ] || { echo "bench-live: needs postfix (smtp-sink, smtp-source): apt-get install postfix" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-live: needs root (network namespaces, BPF)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p smtp-user)

tag="bl$$"
C="$tag-c"; S="$tag-s"; work=$(mktemp -d)
pid=""; sink=""
cleanup() {
  # Only the processes started here, by pid.
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$sink" ] || kill "$sink" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$C"; ip netns add "$S"
ip link add "${tag}c" netns "$C" type veth peer name "${tag}s" netns "$S"
ip -n "$C" addr add 198.18.0.1/24 dev "${tag}c"; ip -n "$S" addr add 198.18.0.2/24 dev "${tag}s"
for ns in "$C" "$S"; do ip -n "$ns" link set lo up; done
ip -n "$C" link set "${tag}c" up; ip -n "$S" link set "${tag}s" up
ip netns exec "$S" "$SINK" -c -u root 198.18.0.2:25 1024 >/dev/null 2>&1 &
sink=$!
sleep 0.5

clk=$(getconf CLK_TCK)
printf "%-8s %-7s %-9s %-9s %-8s %-10s %-9s %-9s %-8s %-9s\n" \
  sessions mails seconds mails/s MB/s seen_tx rec_lost gap_bytes cpu_% rss_MiB
for n in "${LEVELS[@]}"; do
  log="$work/run-$n.log"
  # shellcheck disable=SC2086 # ARGS is a list of words
  ip netns exec "$S" "$bin" run --iface "${tag}s" --output /dev/null --stats-interval 3600 ${ARGS:-} 2>"$log" &
  pid=$!
  for _ in $(seq 100); do [ -e "/sys/fs/bpf/smtp-monitor/${tag}s/VERDICTS" ] && break; sleep 0.1; done
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  s0=$(date +%s.%N)
  timeout 600 ip netns exec "$C" "$SOURCE" -s "$n" -m "$MSGS" -l "$SIZE" -f bench@example.org -t sink@example.net 198.18.0.2:25
  s1=$(date +%s.%N)
  sleep 1.5   # let the daemon drain and expire nothing: flows closed by FIN
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  pid=""
  secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN{print b-a}')
  tx=$(grep -o 'transactions=[0-9]*' "$log" | tail -1 | cut -d= -f2)
  lost=$(grep -o 'records_lost=[0-9]*' "$log" | tail -1 | cut -d= -f2)
  gaps=$(grep -o 'gap_bytes=[0-9]*' "$log" | tail -1 | cut -d= -f2)
  awk -v n="$n" -v m="$MSGS" -v sz="$SIZE" -v s="$secs" -v tx="${tx:-?}" -v lost="${lost:-?}" \
      -v gaps="${gaps:-?}" -v c0="$t0" -v c1="$t1" -v clk="$clk" -v rss="$rss" 'BEGIN {
    printf "%-8s %-7s %-9.2f %-9.0f %-8.1f %-10s %-9s %-9s %-8.1f %-9.1f\n",
      n, m, s, m / s, m * sz / s / 1e6, tx, lost, gaps, (c1 - c0) / clk / s * 100, rss / 1024 }'
done
