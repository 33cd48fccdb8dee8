#!/usr/bin/env bash
# Cache lines the engine takes from memory per established packet, counted by valgrind's cache
# simulation rather than timed: the issue's "at most about two cache misses per established
# packet", checked on any machine, hardware counters or not.
#
# usage: CTRACK=path/to/ctrack bash benches/misses.sh [FLOWS] [PACKETS]
#
# `ctrack bench --workload est --flows FLOWS --packets PACKETS --write-pcap` writes the
# workload (its handshakes as setup, then PACKETS established segments); `bench --pcap --setup
# --hot` replays it under callgrind, which counts only inside `process_batch` and starts its
# counts afresh as each burst loop starts, so that what it collects is the timed loop's calls
# of `process_batch`. With `--hot` each burst's frames are read just before that call, so the
# misses counted are the engine's (index buckets, entries, the shard's own lines), not the
# packets' bytes. The simulation runs no software prefetch (valgrind drops the instructions)
# and has no hardware prefetcher, so each line missed is one line fetched from memory, whether
# or not a real run waits for it.
#
# LL (bytes, default 1 MiB) sizes the simulated last-level cache; D1 is 32 KiB, 8-way, as on
# the Zen 2 and Zen 4 hosts. With 1,000,000 flows the table (about 98 MB) is far larger than
# either, so nearly every line of it the packet touches is a miss. BATCH (default 32) is the
# burst size; IPV6=1 generates IPv6 flows. Prints one line: `flows F packets P d1-misses-per-packet X ll-misses-per-packet
# Y instructions-per-packet Z`. Needs valgrind.
set -euo pipefail
flows=${1:-1000000}
packets=${2:-200000}
ll=${LL:-1048576}
batch=${BATCH:-32}
for v in "flows=$flows" "packets=$packets" "LL=$ll" "BATCH=$batch"; do
  [[ ${v#*=} =~ ^[1-9][0-9]{0,9}$ ]] ||
    { echo "misses.sh: ${v%%=*} must be a positive whole number, not '${v#*=}'" >&2; exit 2; }
done
family=()
[ "${IPV6:-0}" = 1 ] && family=(--ipv6)
bin=${CTRACK:-target/release/ctrack}
command -v valgrind >/dev/null || { echo "misses.sh: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
[ -x "$bin" ] || { echo "misses.sh: no ctrack binary at $bin (set CTRACK)" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
read -r setup timed < <("$bin" bench --workload est --flows "$flows" --packets "$packets" \
  "${family[@]}" --batch "$batch" --write-pcap "$dir/est.pcap" | awk '$1 == "setup" { print $2, $4 }') || true
[ -n "${timed:-}" ] || { echo "misses.sh: bench printed no setup and timed counts" >&2; exit 1; }
valgrind --tool=callgrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL="$ll",16,64 \
  --zero-before='*Bursts*track*' --toggle-collect='*Conntrack*process_batch*' \
  --callgrind-out-file="$dir/cg" \
  "$bin" bench --pcap "$dir/est.pcap" --setup "$setup" --hot --batch "$batch" \
  >"$dir/bench.txt" 2>"$dir/valgrind.txt" || { cat "$dir/valgrind.txt" >&2; exit 1; }
# Collected: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
awk -v f="$flows" -v p="$timed" '
  $2 == "Collected" {
    for (i = 1; i <= NF; i++) if ($i == ":") break
    ir = $(i + 1); d1 = $(i + 5) + $(i + 6); ll = $(i + 8) + $(i + 9); found = 1
  }
  END {
    if (!found) { print "misses.sh: valgrind collected nothing" > "/dev/stderr"; exit 1 }
    printf "flows %d packets %d d1-misses-per-packet %.2f ll-misses-per-packet %.2f instructions-per-packet %.0f\n",
      f, p, d1 / p, ll / p, ir / p
  }' "$dir/valgrind.txt"
