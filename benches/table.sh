#!/usr/bin/env bash
# Prints the performance table of the README: ctrack's engine on generated workloads against
# the targets of the performance issue. Run on an otherwise idle machine:
#   benches/table.sh            (PACKETS=5000000 REPS=3 by default; best of REPS)
# CTRACK=BINARY times that binary instead of building target/release/ctrack (e.g. the
# profile-guided build of benches/pgo.sh).
set -euo pipefail
[ -z "${CTRACK:-}" ] || CTRACK=$(realpath "$CTRACK")
cd "$(dirname "$0")/.."
if [ -n "${CTRACK:-}" ]; then
  bin=$CTRACK
else
  cargo build --release -q
  bin=target/release/ctrack
fi
packets=${PACKETS:-5000000}
reps=${REPS:-3}
best() { # best mpps of REPS runs; also remembers bytes per entry of the last run
  local b=0 out
  for _ in $(seq "$reps"); do
    out=$("$bin" bench "$@")
    m=$(tail -1 <<<"$out" | awk '{print $NF}')
    bpe=$(grep -o 'bytes-per-entry [0-9]*' <<<"$out" | awk '{print $2}')
    b=$(awk -v a="$b" -v c="$m" 'BEGIN{print (c>a)?c:a}')
  done
  echo "$b $bpe"
}
row() { # label target args...
  local label=$1 target=$2; shift 2
  read -r m bpe < <(best "$@")
  printf '| %s | %s | %s | %s |\n' "$label" "$m" "$target" "$bpe"
}
echo "| workload (1 thread unless noted) | ctrack Mpps | target | bytes/entry |"
echo "|---|---|---|---|"
row "established TCP, 1K flows" ">= 25" --workload est --flows 1000 --packets "$packets"
row "established TCP, 100K flows" ">= 15" --workload est --flows 100000 --packets "$packets"
row "established TCP, 1M flows" ">= 10" --workload est --flows 1000000 --packets "$packets"
row "established TCP, 1K flows, every helper assigned (--helper all)" "-" --workload est --flows 1000 --packets "$packets" --helper all
row "established TCP, 100K flows, an FTP expectation pending (--helper all --expectation)" "-" --workload est --flows 100000 --packets "$packets" --helper all --expectation
row "established TCP, 1K flows, IPv6" "-" --workload est --flows 1000 --packets "$packets" --ipv6
row "established TCP, 100K flows, IPv6" "-" --workload est --flows 100000 --packets "$packets" --ipv6
row "new connections (SYN flood, empty table)" ">= 6" --workload syn --packets "$packets"
row "new connections, table growing on demand (--no-reserve)" "-" --workload syn --packets "$packets" --no-reserve
row "new connections into a full table (max 65,536: early drop)" "-" --workload syn --packets "$packets" --sysctl nf_conntrack_max=65536
row "SYN flood into a table full of ASSURED connections (65,536: nothing to evict, all dropped)" "-" --workload flood --flows 65536 --packets "$packets"
# Bulk data: 1,400-byte segments (and their acknowledgements), at most 1M packets (1.5 GB).
row "established TCP, 1K flows, 1,400-byte segments" "-" --workload est --flows 1000 --payload 1400 --packets "$((packets < 1000000 ? packets : 1000000))"
row "UDP, 100K flows" "-" --workload udp --flows 100000 --packets "$packets"
row "mix, 100K flows" "-" --workload mix --flows 100000 --packets "$packets"
# Two threads against one: REPS interleaved pairs (so that both see the same machine), the
# best two-thread rate and the median of the pairs' ratios. Each run times SCALING_PACKETS
# packets (default four times PACKETS): at the default PACKETS two threads finish in about
# 0.15 s, short enough for a moment of the host's own load on one core to decide the ratio.
scaling() { # args...
  local one two b=0 ratios=() bpe
  for _ in $(seq "$reps"); do
    one=$("$bin" bench "$@" --threads 1 | tail -1 | awk '{print $NF}')
    out=$("$bin" bench "$@" --threads 2)
    two=$(tail -1 <<<"$out" | awk '{print $NF}')
    bpe=$(grep -o 'bytes-per-entry [0-9]*' <<<"$out" | awk '{print $2}')
    b=$(awk -v a="$b" -v c="$two" 'BEGIN{print (c>a)?c:a}')
    ratios+=("$(awk -v a="$one" -v c="$two" 'BEGIN{printf "%.2f", c/a}')")
  done
  med=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}')
  printf '| %s | %s (%sx) | %s | %s |\n' "established TCP, 100K flows, 2 threads" "$b" "$med" ">= 1.8x one thread" "$bpe"
}
scaling --workload est --flows 100000 --packets "${SCALING_PACKETS:-$((packets * 4))}"
