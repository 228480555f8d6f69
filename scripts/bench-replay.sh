#!/usr/bin/env bash
# Replay throughput of smtp-user against tshark on the same generated capture.
#
#   scripts/bench-replay.sh            # 1 GiB capture, 3 runs each
#   SIZE_MIB=128 RUNS=5 scripts/bench-replay.sh
#
# Generates (once) a capture of realistic SMTP sessions with
# `cargo run --release --example gen_capture` under /tmp, warms the page
# cache, then times, pinned to one core (taskset):
#   ours:   smtp-user replay -q FILE --output /dev/null --workers 1
#           (one parsing worker on the pinned core; scripts/bench-workers.sh
#           measures the scaling with workers)
#   tshark: tshark -r FILE -Y smtp -T fields -e smtp.req.parameter > /dev/null
# and prints a Markdown table: medians of wall time and CPU time (user+sys),
# MB/s (10^6 bytes of file per second), transactions/s, and the ratio.
#
# Environment: SIZE_MIB (1024), RUNS (3), TSHARK_RUNS (= RUNS), CORE (1),
# MIX (mixed, or small: ~1 KiB messages only), SEED (1),
# FILE (/tmp/smtp-bench-${SIZE_MIB}m[-small].pcap),
# BASELINE_BIN (optional: an older smtp-user binary, e.g. built from an
# earlier commit; it is timed in the same command, its runs interleaved with
# ours, and the before/after ratio is printed). TSHARK_RUNS=0 skips tshark.
# ARGS (optional): extra `replay` arguments for our binary only, e.g.
# ARGS="--checksum off" (an older baseline may not know them).
# BASELINE_ARGS (optional): extra `replay` arguments for the baseline only;
# with BASELINE_BIN=target/release/smtp-user ARGS="--hashes"
# BASELINE_ARGS="--no-urls" the same binary is timed with and without the
# content features.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
TSHARK_RUNS=${TSHARK_RUNS:-$RUNS}
CORE=${CORE:-1}
SEED=${SEED:-1}
MIX=${MIX:-mixed}
if [ "$MIX" = mixed ]; then SUFFIX=""; else SUFFIX="-$MIX"; fi
FILE=${FILE:-/tmp/smtp-bench-${SIZE_MIB}m${SUFFIX}.pcap}

cd "$(dirname "$0")/.."
cargo build --release -q -p smtp-user --bin smtp-user --example gen_capture 2>/dev/null
BIN=target/release/smtp-user
[ -f "$FILE" ] || target/release/examples/gen_capture "$FILE" "$SIZE_MIB" "$SEED" "$MIX"
BYTES=$(stat -c %s "$FILE")
cat "$FILE" > /dev/null # page cache

PIN=()
if command -v taskset > /dev/null; then PIN=(taskset -c "$CORE"); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Runs "$@" RUNS times; appends "wall cpu" lines to $TMP/$1.times.
measure() {
    local name=$1 runs=$2
    shift 2
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %U %S" -o "$TMP/t" "${PIN[@]}" "$@" > /dev/null 2> "$TMP/$name.err"
        awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$TMP/t" >> "$TMP/$name.times"
    done
}

median() { # column of $TMP/$1.times
    sort -n -k"$2" "$TMP/$1.times" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # ARGS is a list of words
    measure ours 1 "$BIN" replay -q "$FILE" --output /dev/null --workers 1 ${ARGS:-}
    if [ -n "${BASELINE_BIN:-}" ]; then
        # shellcheck disable=SC2086 # BASELINE_ARGS is a list of words
        measure baseline 1 "$BASELINE_BIN" replay -q "$FILE" --output /dev/null ${BASELINE_ARGS:-}
    fi
done
TX=$(grep -o '[0-9]* transactions' "$TMP/ours.err" | awk '{ print $1 }')
SUMMARY=$(grep '^replay:' "$TMP/ours.err")

if [ "$TSHARK_RUNS" = 0 ]; then
    :
elif command -v tshark > /dev/null; then
    measure tshark "$TSHARK_RUNS" tshark -r "$FILE" -Y smtp -T fields -e smtp.req.parameter
    TSHARK_VERSION="tshark $(tshark --version 2> /dev/null | head -1 | awk '{ print $3 }')"
else
    echo "tshark not found: only our numbers" >&2
fi

row() { # name wall cpu
    awk -v n="$1" -v w="$2" -v c="$3" -v b="$BYTES" -v tx="$TX" 'BEGIN {
        printf "| %s | %.2f | %.2f | %.0f | %.0f | %.0f |\n", n, w, c, b / 1e6 / w, b / 1e6 / c, tx / w }'
}

echo
echo "File: $FILE ($MIX mix, $BYTES bytes, $TX transactions); $(nproc) CPUs, pinned to core $CORE;"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Medians of $RUNS runs (ours) / ${TSHARK_RUNS} runs (tshark). Our last summary line:"
echo "\`$SUMMARY\`"
echo
echo "| tool | wall s | cpu s | MB/s (wall) | MB/s (cpu) | transactions/s (wall) |"
echo "|---|---|---|---|---|---|"
OW=$(median ours 1)
OC=$(median ours 2)
row "smtp-user replay" "$OW" "$OC"
if [ -f "$TMP/baseline.times" ]; then
    BW=$(median baseline 1)
    BC=$(median baseline 2)
    row "smtp-user replay (baseline: $BASELINE_BIN ${BASELINE_ARGS:-})" "$BW" "$BC"
fi
if [ -f "$TMP/tshark.times" ]; then
    TW=$(median tshark 1)
    TC=$(median tshark 2)
    row "${TSHARK_VERSION:-tshark}" "$TW" "$TC"
    echo
    awk -v ow="$OW" -v oc="$OC" -v tw="$TW" -v tc="$TC" 'BEGIN {
        printf "Ratio (tshark time / ours): %.1fx wall, %.1fx cpu\n", tw / ow, tc / oc }'
fi
if [ -f "$TMP/baseline.times" ]; then
    echo
    awk -v ow="$OW" -v oc="$OC" -v bw="$BW" -v bc="$BC" 'BEGIN {
        printf "Before/after (ours time / baseline time): %.3f wall, %.3f cpu (above 1 = slower)\n", ow / bw, oc / bc }'
fi
