#!/usr/bin/env bash
# Regenerates pcaps/scale/: the kernel oracle's verdicts on SYN floods into a full table at the
# kernel's default size (262,144 entries, as many hash chains), summarised, since the captures
# (three quarters of a million packets each) are too large to keep. Each capture is written
# by `ctrack bench --workload flood --flows F --packets S --write-pcap` (F established
# connections, ASSURED by their handshakes, then S SYNs of new ones), which tests/early_drop.rs
# generates again in memory with the same generator; the oracle replays it as fast as the
# kernel takes it, and the summary keeps what tests/early_drop.rs compares: how many of the
# SYNs the kernel dropped (table full, nothing to evict), in all and per window of 5,000, and
# the table left. Summaries are never edited by hand: rerun this script.
#
#   pcaps/gen/regen_scale.sh
#
# Needs root and the oracle's needs (../shared/oracle/README.md); about a minute per flood.
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
# name, established flows, SYNs: nine tenths and 97% of the full table ASSURED.
while read -r name flows syns; do
  "$ctrack" bench --workload flood --flows "$flows" --packets "$syns" \
    --write-pcap "$work/$name.pcap" > "$work/bench.out"
  setup=$(sed -n 's/^setup \([0-9]*\) timed.*/\1/p' "$work/bench.out")
  "$ktrace" "$work/$name.pcap" > "$work/$name.out"
  {
    echo "# The kernel oracle on \`ctrack bench --workload flood --flows $flows --packets $syns --write-pcap\`"
    echo "# (kernel $(uname -r)), summarised by pcaps/gen/regen_scale.sh. Not edited by hand."
    echo "flows $flows"
    echo "syns $syns"
    awk -v s="$setup" '$1 ~ /^[0-9]+$/ && $1 >= s && $2 == "dropped" { n++ } END { print "dropped", n + 0 }' "$work/$name.out"
    awk -v s="$setup" -v m="$syns" '$1 ~ /^[0-9]+$/ && $1 >= s { w = int(($1 - s) / 5000); if ($2 == "dropped") d[w]++ }
      END { printf "windows 5000"; for (i = 0; i * 5000 < m; i++) printf " %d", d[i] + 0; print "" }' "$work/$name.out"
    echo "table $(grep -c '^# table' "$work/$name.out")"
    echo "assured $(grep '^# table' "$work/$name.out" | grep -c ASSURED)"
  } > "$top/pcaps/scale/$name.summary"
  cat "$top/pcaps/scale/$name.summary"
done <<'LIST'
flood-assured-90 235930 60000
flood-assured-97 254280 40000
LIST
