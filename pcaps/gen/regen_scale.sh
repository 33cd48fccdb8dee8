#!/usr/bin/env bash
# Regenerates pcaps/scale/: the kernel oracle's verdicts on SYN floods into a full table at the
# kernel's default size (262,144 entries, as many hash chains), summarised, since the captures
# (three quarters of a million packets each) are too large to keep. Each capture is written
# by `ctrack bench --workload flood --flows F --packets S --write-pcap` (F established
# connections, ASSURED by their handshakes, then S SYNs of new ones), which tests/early_drop.rs
# generates again in memory with the same generator; the oracle replays it as fast as the
# kernel takes it (or, for a spaced flood, in real time), and the summary keeps what
# tests/early_drop.rs compares: how many of the SYNs the kernel dropped (table full, nothing
# to evict), in all and per window of 5,000 (2,500 when spaced), and the table left. Summaries are never edited by hand: rerun this script.
#
#   pcaps/gen/regen_scale.sh
#
# Needs root and the oracle's needs (../shared/oracle/README.md); about a minute per flood,
# three for the one replayed in real time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace=${KTRACE:-$top/../shared/oracle/ktrace}
[ -x "$ktrace" ] || { echo "regen_scale: no oracle at $ktrace (set KTRACE)" >&2; exit 1; }
(cd "$top" && cargo build --release -q)
ctrack=$top/target/release/ctrack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$top/pcaps/scale"
# name, established flows, SYNs, SYN spacing in microseconds (0: as fast as the kernel takes
# them; otherwise replayed with --realtime, the setup still at once, a second's pause, then
# one SYN every so often): nine tenths and 97% of the full table ASSURED, and a flood lasting
# 150 s, long enough for the garbage collector's runs to show.
while read -r name flows syns spacing; do
  "$ctrack" bench --workload flood --flows "$flows" --packets "$syns" \
    --write-pcap "$work/$name.pcap" > "$work/bench.out"
  setup=$(sed -n 's/^setup \([0-9]*\) timed.*/\1/p' "$work/bench.out")
  realtime=()
  window=5000
  if [ "$spacing" -gt 0 ]; then
    # The same frames, restamped: the setup one microsecond apart, the SYNs $spacing apart.
    python3 - "$work/$name.pcap" "$work/spaced.pcap" "$setup" "$spacing" <<'PY'
import struct, sys
src, dst, setup, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(src, "rb") as f, open(dst, "wb") as g:
    g.write(f.read(24))
    i, base = 0, None
    while len(h := f.read(16)) == 16:
        sec, usec, incl, orig = struct.unpack("<IIII", h)
        data = f.read(incl)
        base = sec * 1000000 + usec if base is None else base
        t = base + i if i < setup else base + setup + 1000000 + (i - setup) * gap
        g.write(struct.pack("<IIII", t // 1000000, t % 1000000, incl, orig) + data)
        i += 1
PY
    mv "$work/spaced.pcap" "$work/$name.pcap"
    realtime=(--realtime)
    window=2500
  fi
  "$ktrace" "$work/$name.pcap" "${realtime[@]}" > "$work/$name.out"
  {
    echo "# The kernel oracle on \`ctrack bench --workload flood --flows $flows --packets $syns --write-pcap\`"
    echo "# (kernel $(uname -r)), summarised by pcaps/gen/regen_scale.sh. Not edited by hand."
    echo "flows $flows"
    echo "syns $syns"
    echo "spacing_us $spacing"
    awk -v s="$setup" '$1 ~ /^[0-9]+$/ && $1 >= s && $2 == "dropped" { n++ } END { print "dropped", n + 0 }' "$work/$name.out"
    awk -v s="$setup" -v m="$syns" -v w="$window" '$1 ~ /^[0-9]+$/ && $1 >= s { k = int(($1 - s) / w); if ($2 == "dropped") d[k]++ }
      END { printf "windows %d", w; for (i = 0; i * w < m; i++) printf " %d", d[i] + 0; print "" }' "$work/$name.out"
    echo "table $(grep -c '^# table' "$work/$name.out")"
    echo "assured $(grep '^# table' "$work/$name.out" | grep -c ASSURED)"
  } > "$top/pcaps/scale/$name.summary"
  cat "$top/pcaps/scale/$name.summary"
done <<'LIST'
flood-assured-90 235930 60000 0
flood-assured-97 254280 40000 0
flood-assured-90-150s 235930 75000 2000
LIST
