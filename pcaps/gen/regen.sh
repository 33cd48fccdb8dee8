#!/usr/bin/env bash
# Regenerates the scenario captures in pcaps/ and their golden kernel verdicts.
#
#   pcaps/gen/regen.sh [NAME-FILTER]
#
# Needs root, Debian's python3-scapy, nftables and (for pcapng scenarios) editcap. For each
# scenario: build the capture, replay it through the kernel oracle (../shared/oracle/ktrace,
# or $KTRACE) with --out-pcap, and commit the kernel-stamped capture as pcaps/NAME.pcap (or
# .pcapng), the oracle's output as pcaps/NAME.golden and the arguments as pcaps/NAME.args.
# A scenario whose timestamps step back on purpose (commit=source in its meta, --realtime)
# commits the capture as built instead: the kernel-stamped copy would not step back. A zone
# scenario (zones=ttl in its meta, pcaps/zones/) or a mark scenario (marks=dscp, pcaps/marks/)
# is replayed through ktrace_rules.py, which puts packets in conntrack zones by their TTL and
# marks connections by their DSCP, and gets pcaps/NAME.zones or pcaps/NAME.marks beside it;
# so is one whose arguments give timeout policies (--timeout-policy, pcaps/timeouts/), which
# that wrapper turns into the kernel's `ct timeout` objects and rules.
# Goldens are never edited by hand: rerun this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace=${KTRACE:-$top/../shared/oracle/ktrace}
[ -x "$ktrace" ] || { echo "regen: no oracle at $ktrace (set KTRACE)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/generate.py" "$work/src" "${1:-}" > "$work/list"
while read -r name; do
  meta="$work/src/$name.meta"
  args=$(sed -n 's/^args=//p' "$meta")
  fmt=$(sed -n 's/^fmt=//p' "$meta")
  commit=$(sed -n 's/^commit=//p' "$meta")
  zones=$(sed -n 's/^zones=//p' "$meta")
  marks=$(sed -n 's/^marks=//p' "$meta")
  dest="$top/pcaps/$name"
  mkdir -p "$(dirname "$dest")"
  oracle=$ktrace
  [ -z "$zones$marks" ] || oracle=$here/ktrace_rules.py
  [[ " $args " != *" --timeout-policy "* ]] || oracle=$here/ktrace_rules.py
  # shellcheck disable=SC2086
  KTRACE=$ktrace "$oracle" "$work/src/$name.pcap" $args --out-pcap "$work/stamped.pcap" > "$work/golden"
  rm -f "$dest.pcap" "$dest.pcapng" "$dest.zones" "$dest.marks"
  if [ "$commit" = source ]; then
    cp "$work/src/$name.pcap" "$work/stamped.pcap"
  fi
  if [ "$fmt" = pcapng ]; then
    editcap -F pcapng "$work/stamped.pcap" "$dest.pcapng"
  elif [ "$fmt" = pcapng-be ]; then
    editcap -F pcapng "$work/stamped.pcap" "$work/stamped.pcapng"
    /usr/bin/python3 "$here/pcapng_be.py" "$work/stamped.pcapng" "$dest.pcapng"
  else
    cp "$work/stamped.pcap" "$dest.pcap"
  fi
  cp "$work/golden" "$dest.golden"
  printf '%s\n' "$args" > "$dest.args"
  [ -z "$zones" ] || printf '%s\n' "$zones" > "$dest.zones"
  [ -z "$marks" ] || printf '%s\n' "$marks" > "$dest.marks"
  echo "regen: $name ($(grep -vc '^#' "$dest.golden") packets, $(grep -c '^# table' "$dest.golden" || true) table lines)"
done < "$work/list"
