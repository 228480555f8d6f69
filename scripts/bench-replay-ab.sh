#!/usr/bin/env bash
# Before/after replay throughput of two smtp-user binaries on one capture.
#
#   scripts/bench-replay-ab.sh BEFORE_BIN AFTER_BIN FILE [RUNS] [-- AFTER_ARGS...]
#
# Runs `BIN replay -q FILE --output /dev/null` RUNS times (default 5) for
# each binary, alternating before/after so both see the same machine load,
# pinned to one core (CORE, default 1) with taskset. AFTER_ARGS are extra
# replay arguments for the after binary only (e.g. --checksum off).
# Prints the medians of wall time and CPU time (user+sys), MB/s (10^6 bytes
# of file per second) and the after/before ratio of each.
set -euo pipefail

BEFORE=$1 AFTER=$2 FILE=$3
RUNS=${4:-5}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
CORE=${CORE:-1}
BYTES=$(stat -c %s "$FILE")
cat "$FILE" > /dev/null # page cache

PIN=()
if command -v taskset > /dev/null; then PIN=(taskset -c "$CORE"); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

run() { # name bin args...
    local name=$1
    shift
    /usr/bin/time -f "%e %U %S" -o "$TMP/t" "${PIN[@]}" "$@" > /dev/null 2> "$TMP/$name.err"
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$TMP/t" >> "$TMP/$name.times"
}

for _ in $(seq "$RUNS"); do
    run before "$BEFORE" replay -q "$FILE" --output /dev/null
    run after "$AFTER" replay -q "$FILE" --output /dev/null "${EXTRA[@]}"
done

median() { # name column
    sort -n -k"$2" "$TMP/$1.times" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

BW=$(median before 1) BC=$(median before 2) AW=$(median after 1) AC=$(median after 2)
echo "File: $FILE ($BYTES bytes); $RUNS runs each, alternating, pinned to core $CORE; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "after args: ${EXTRA[*]:-(none)}"
echo "before: $(grep '^replay:' "$TMP/before.err")"
echo "after:  $(grep '^replay:' "$TMP/after.err")"
echo
echo "| binary | wall s (median) | cpu s (median) | MB/s (wall) | MB/s (cpu) |"
echo "|---|---|---|---|---|"
awk -v n=before -v w="$BW" -v c="$BC" -v b="$BYTES" 'BEGIN { printf "| %s | %.2f | %.2f | %.0f | %.0f |\n", n, w, c, b / 1e6 / w, b / 1e6 / c }'
awk -v n=after -v w="$AW" -v c="$AC" -v b="$BYTES" 'BEGIN { printf "| %s | %.2f | %.2f | %.0f | %.0f |\n", n, w, c, b / 1e6 / w, b / 1e6 / c }'
awk -v bw="$BW" -v bc="$BC" -v aw="$AW" -v ac="$AC" 'BEGIN { printf "\nafter/before: wall %.3f, cpu %.3f\n", aw / bw, ac / bc }'
