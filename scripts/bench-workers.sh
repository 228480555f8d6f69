#!/usr/bin/env bash
# Replay scaling with parsing workers: `replay --workers 1` vs `--workers N`
# on the same generated capture, and the reader alone (`--bench-reader`).
#
#   scripts/bench-workers.sh                 # mixed and small, 256 MiB, 5 runs
#   MIXES=small SIZE_MIB=128 RUNS=3 WORKERS=2 scripts/bench-workers.sh
#
# Captures come from `cargo run --release --example gen_capture` (the same
# files as scripts/bench-replay.sh). Runs are interleaved (1 worker, N
# workers, reader alone, repeated) so that a change of machine load hits all
# of them alike; no CPU pinning (the workers need every core). Prints a
# Markdown table per mix: medians of wall and CPU time, MB/s, transactions/s,
# and the speed-up of N workers over one, with the load average before and
# after (the machine may be shared: read the figures with it).
#
# Environment: SIZE_MIB (256), RUNS (5), WORKERS (2), MIXES ("mixed small"),
# SEED (1), PRIO (optional: a nice value for the timed runs, e.g. -10 on a
# machine busy with other work at nice 0, so that the runs get the cores;
# the line under each table says which was used).
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-5}
WORKERS=${WORKERS:-2}
MIXES=${MIXES:-mixed small}
SEED=${SEED:-1}

cd "$(dirname "$0")/.."
cargo build --release -q -p smtp-user --bin smtp-user --example gen_capture 2>/dev/null
BIN=target/release/smtp-user
NICE=()
if [ -n "${PRIO:-}" ]; then NICE=(nice -n "$PRIO"); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Runs "$@" once; appends "wall cpu" to $TMP/$1.times, stderr to $TMP/$1.err.
measure() {
    local name=$1
    shift
    /usr/bin/time -f "%e %U %S" -o "$TMP/t" "${NICE[@]}" "$@" > /dev/null 2> "$TMP/$name.err"
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$TMP/t" >> "$TMP/$name.times"
}

median() { # file column
    sort -n -k"$2" "$TMP/$1.times" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

for MIX in $MIXES; do
    if [ "$MIX" = mixed ]; then SUFFIX=""; else SUFFIX="-$MIX"; fi
    FILE=/tmp/smtp-bench-${SIZE_MIB}m${SUFFIX}.pcap
    [ -f "$FILE" ] || target/release/examples/gen_capture "$FILE" "$SIZE_MIB" "$SEED" "$MIX"
    BYTES=$(stat -c %s "$FILE")
    cat "$FILE" > /dev/null # page cache
    rm -f "$TMP"/*.times
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    for _ in $(seq "$RUNS"); do
        measure one "$BIN" replay -q "$FILE" --output /dev/null --workers 1
        measure many "$BIN" replay -q "$FILE" --output /dev/null --workers "$WORKERS"
        measure reader "$BIN" replay -q "$FILE" --output /dev/null --workers "$WORKERS" --bench-reader
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    TX=$(grep -o '[0-9]* transactions' "$TMP/one.err" | awk '{ print $1 }')
    TX_MANY=$(grep -o '[0-9]* transactions' "$TMP/many.err" | awk '{ print $1 }')
    [ "$TX" = "$TX_MANY" ] || { echo "transactions differ: $TX vs $TX_MANY" >&2; exit 1; }
    row() { # name wall cpu
        awk -v n="$1" -v w="$2" -v c="$3" -v b="$BYTES" -v tx="$4" 'BEGIN {
            printf "| %s | %.2f | %.2f | %.0f | %s |\n", n, w, c, b / 1e6 / w, tx == "" ? "" : sprintf("%.0f", tx / w) }'
    }
    echo
    echo "File: $FILE ($MIX mix, $BYTES bytes, $TX transactions); $(nproc) CPUs,"
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average before $LOAD_BEFORE, after $LOAD_AFTER."
    echo "Medians of $RUNS interleaved runs. Summary line with $WORKERS workers:"
    echo "\`$(grep '^replay:' "$TMP/many.err")\`"
    echo
    echo "| replay | wall s | cpu s | MB/s (wall) | transactions/s (wall) |"
    echo "|---|---|---|---|---|"
    OW=$(median one 1); MW=$(median many 1); RW=$(median reader 1)
    row "--workers 1" "$OW" "$(median one 2)" "$TX"
    row "--workers $WORKERS" "$MW" "$(median many 2)" "$TX"
    row "reader alone (--bench-reader)" "$RW" "$(median reader 2)" ""
    echo
    OC=$(median one 2); MC=$(median many 2)
    awk -v o="$OW" -v m="$MW" -v n="$WORKERS" -v oc="$OC" -v mc="$MC" -v p="${PRIO:-0}" 'BEGIN {
        printf "Speed-up, %d workers over 1: %.2fx (wall, runs at nice %s); CPU time %.2fx of one worker'"'"'s,\n", n, o / m, p, mc / oc
        printf "so on %d idle cores at most %.2fx (one worker'"'"'s CPU time over the %d-worker CPU time spread evenly).\n", n, oc / (mc / n), n }'
done
