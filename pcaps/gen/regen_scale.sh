#!/usr/bin/env bash
# Regenerates pcaps/scale/: the kernel oracle's verdicts on SYN floods into a full table at the
# kernel's default size (262,144 entries, as many hash chains), summarised, since the captures
# (three quarters of a million packets each) are too large to keep. Each capture is written
# by `ctrack bench --workload flood --flows F --packets S --write-pcap` (F established
# connections, ASSURED by their handshakes, then S SYNs of new ones), which tests/early_drop.rs
# generates again in memory with the same generator; the oracle replays it as fast as the
# kernel takes it (or, for a spaced flood or one with a pause, in real time), and the summary
# keeps what tests/early_drop.rs compares: how many of the SYNs the kernel dropped (table
# full, nothing to evict), in all and per window, and the table left. Summaries are never
# edited by hand: rerun this script.
#
#   pcaps/gen/regen_scale.sh [NAME]
#
# Needs root and the oracle's needs (../shared/oracle/README.md); about a minute per flood,
# three for the one replayed in real time. NAME: only that scenario.
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
# name, established flows, SYNs, SYN spacing in microseconds (0: one microsecond apart, as
# written), window, then for a flood with a pause: after how many SYNs, for how many seconds,
# and a sysctl for the oracle (- for none). A spaced flood is replayed with --realtime, the
# setup still at once, a second's pause, then one SYN every so often; a paused one too, where
# the pause is in the capture's time, so that the oracle waits for it. The scenarios: nine
# tenths and 97% of the full table ASSURED; a flood lasting 150 s, long enough for the
# garbage collector's runs to show; and a table filled to its limit with SYNs that time out
# (SYN_SENT shortened to 5 s), then, 35 s on, a burst of new SYNs: the kernel still counts
# the timed-out entries, and reaps only those its lookups and early drop meet.
while read -r name flows syns spacing window pause_after pause sysctl; do
  [ -z "${1:-}" ] || [ "$1" = "$name" ] || continue
  "$ctrack" bench --workload flood --flows "$flows" --packets "$syns" \
    --write-pcap "$work/$name.pcap" > "$work/bench.out"
  setup=$(sed -n 's/^setup \([0-9]*\) timed.*/\1/p' "$work/bench.out")
  oracle=()
  [ "$sysctl" = - ] || oracle+=(--sysctl "$sysctl")
  if [ "$spacing" -gt 0 ] || [ "$pause" -gt 0 ]; then
    # The same frames, restamped: the setup one microsecond apart; the SYNs a second later
    # and $spacing apart, or one microsecond apart on, with $pause seconds after the first
    # $pause_after of them.
    python3 - "$work/$name.pcap" "$work/spaced.pcap" "$setup" "$spacing" "$pause_after" "$pause" <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
setup, gap, after, pause = (int(a) for a in sys.argv[3:7])
with open(src, "rb") as f, open(dst, "wb") as g:
    g.write(f.read(24))
    i, base = 0, None
    while len(h := f.read(16)) == 16:
        sec, usec, incl, orig = struct.unpack("<IIII", h)
        data = f.read(incl)
        base = sec * 1000000 + usec if base is None else base
        if i < setup:
            t = base + i
        elif gap > 0:
            t = base + setup + 1000000 + (i - setup) * gap
        else:
            t = base + i + (pause * 1000000 if i - setup >= after else 0)
        g.write(struct.pack("<IIII", t // 1000000, t % 1000000, incl, orig) + data)
        i += 1
PY
    mv "$work/spaced.pcap" "$work/$name.pcap"
    oracle+=(--realtime)
  fi
  "$ktrace" "$work/$name.pcap" "${oracle[@]}" > "$work/$name.out"
  {
    echo "# The kernel oracle on \`ctrack bench --workload flood --flows $flows --packets $syns --write-pcap\`"
    echo "# (kernel $(uname -r)), summarised by pcaps/gen/regen_scale.sh. Not edited by hand."
    echo "flows $flows"
    echo "syns $syns"
    echo "spacing_us $spacing"
    echo "pause $pause_after $pause"
    echo "sysctl $sysctl"
    awk -v s="$setup" '$1 ~ /^[0-9]+$/ && $1 >= s && $2 == "dropped" { n++ } END { print "dropped", n + 0 }' "$work/$name.out"
    awk -v s="$setup" -v m="$syns" -v w="$window" '$1 ~ /^[0-9]+$/ && $1 >= s { k = int(($1 - s) / w); if ($2 == "dropped") d[k]++ }
      END { printf "windows %d", w; for (i = 0; i * w < m; i++) printf " %d", d[i] + 0; print "" }' "$work/$name.out"
    echo "table $(grep -c '^# table' "$work/$name.out")"
    echo "assured $(grep '^# table' "$work/$name.out" | grep -c ASSURED)"
  } > "$top/pcaps/scale/$name.summary"
  cat "$top/pcaps/scale/$name.summary"
done <<'LIST'
flood-assured-90 235930 60000 0 5000 0 0 -
flood-assured-97 254280 40000 0 5000 0 0 -
flood-assured-90-150s 235930 75000 2000 2500 0 0 -
flood-timed-out 235930 31214 0 1000 26214 35 nf_conntrack_tcp_timeout_syn_sent=5
LIST
