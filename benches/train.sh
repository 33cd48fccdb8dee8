#!/usr/bin/env bash
# Runs a ctrack binary through what the profile-guided builds learn from (benches/pgo.sh,
# benches/bolt.sh): the bench workloads of benches/table.sh, the OVS bench's burst size on a
# capture, and a replay of every committed capture (general path, helpers, events).
#
#   benches/train.sh BINARY
#
# PACKETS (default 2000000) sets the packets of each workload.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
packets=${PACKETS:-2000000}
while read -r args; do
  # shellcheck disable=SC2086 # each line is a list of arguments
  "$bin" bench $args --packets "$packets" >/dev/null
done <<'LIST'
--workload est --flows 1000
--workload est --flows 100000
--workload est --flows 1000 --ipv6
--workload est --flows 100000 --ipv6
--workload est --flows 1000 --payload 1400
--workload est --flows 1000000
--workload syn
--workload syn --no-reserve
--workload udp --flows 100000
--workload mix --flows 100000
LIST
# A capture in bursts of 32, as benches/ovs/run.sh times it.
cap=$(mktemp --suffix=.pcap)
trap 'rm -f "$cap"' EXIT
"$bin" bench --workload est --flows 1000 --packets "$packets" --write-pcap "$cap" >/dev/null
"$bin" bench --pcap "$cap" --setup 3000 --batch 32 >/dev/null
find pcaps -name '*.pcap' -not -path 'pcaps/ticks/*' | sort | while read -r f; do
  # (A capture made to be refused, if one is ever added, only trains the error path.)
  "$bin" replay "$f" --helper all --verdicts --table --expect --events >/dev/null 2>&1 || true
done
