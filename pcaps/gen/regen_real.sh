#!/usr/bin/env bash
# Records small captures of real programs (record_real.sh) and commits them with their kernel
# goldens under pcaps/real/recorded/, the way regen.sh does for scenarios.
#
#   pcaps/gen/regen_real.sh [NAME...]     # default: the set below
#
# Each recording is replayed through the kernel oracle (../shared/oracle/ktrace, or $KTRACE)
# with --helper all and --out-pcap; the kernel-stamped capture becomes
# pcaps/real/recorded/NAME.pcap (or .pcapng for the pcapng recording), the oracle's output
# NAME.golden and the arguments NAME.args. A recording over 200 KB is refused. Recorded traffic
# differs from run to run (ports, tags, timing, what the lossy link lost), so rerunning this
# replaces the captures with new ones of the same kind; goldens are never edited by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace=${KTRACE:-$top/../shared/oracle/ktrace}
[ -x "$ktrace" ] || { echo "regen_real: no oracle at $ktrace (set KTRACE)" >&2; exit 1; }
names=${*:-"dns ping traceroute refused lossy-small half-close keepalive tfo simultaneous nmap
hping udp-frag any-sll2 vlan pcapng one-sided-in pmtu ecn ssh ftp tftp half-open udp-stream
sip"}
args="--helper all"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/record_real.sh" "$work/rec" $names >"$work/record.log" 2>&1 || {
  tail -20 "$work/record.log" >&2
  exit 1
}
dest=$top/pcaps/real/recorded
mkdir -p "$dest"
for n in $names; do
  src=$work/rec/$n.pcap
  fmt=pcap
  if [ -f "$work/rec/$n.pcapng" ]; then
    editcap -F pcap "$work/rec/$n.pcapng" "$work/$n.in.pcap"
    src=$work/$n.in.pcap
    fmt=pcapng
  fi
  # shellcheck disable=SC2086
  "$ktrace" "$src" $args --out-pcap "$work/stamped.pcap" >"$work/golden"
  rm -f "$dest/$n.pcap" "$dest/$n.pcapng"
  if [ "$fmt" = pcapng ]; then
    editcap -F pcapng "$work/stamped.pcap" "$dest/$n.pcapng"
  else
    cp "$work/stamped.pcap" "$dest/$n.pcap"
  fi
  size=$(stat -c %s "$dest/$n.$fmt")
  if [ "$size" -gt 204800 ]; then
    rm -f "$dest/$n.$fmt"
    echo "regen_real: $n is $size bytes, over 200 KB: not kept" >&2
    continue
  fi
  cp "$work/golden" "$dest/$n.golden"
  printf '%s\n' "$args" >"$dest/$n.args"
  echo "regen_real: $n ($(grep -vc '^#' "$dest/$n.golden") packets, $(grep -c '^# table' "$dest/$n.golden" || true) table lines, $size bytes)"
done
