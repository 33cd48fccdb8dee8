#!/usr/bin/env bash
# Builds a profile-guided (PGO) ctrack binary: an instrumented build runs the bench workloads
# and replays the committed captures, and the release build is then optimised with the
# profile it wrote (branch weights, inlining, code layout). The engine's code is the same;
# only the compiler's choices differ.
#
#   benches/pgo.sh                     # writes target/pgo/ctrack, prints its path last
#   CTRACK=target/pgo/ctrack benches/table.sh
#
# Needs rustup's llvm-tools component for the toolchain in use (installed when missing) for
# llvm-profdata, whose profile format must match rustc's LLVM. The profile is made afresh
# each run and is never committed: it is tied to the source and the compiler.
# PACKETS (default 2000000) sets the packets of each training workload.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
packets=${PACKETS:-2000000}
log() { echo "pgo.sh: $*" >&2; }

host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
  log "installing rustup's llvm-tools (for llvm-profdata)"
  rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || { log "no llvm-profdata at $profdata"; exit 1; }

data=$top/target/pgo/profiles
rm -rf "$data"
mkdir -p "$data"
log "instrumented build"
RUSTFLAGS="-Cprofile-generate=$data" cargo build --release -q -p ctrack --target-dir target/pgo/gen
gen=target/pgo/gen/release/ctrack

log "training: bench workloads, $packets packets each"
while read -r args; do
  # shellcheck disable=SC2086 # each line is a list of arguments
  "$gen" bench $args --packets "$packets" >/dev/null
done <<'EOF'
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
EOF
log "training: replaying the committed captures (general path, helpers, events)"
find pcaps -name '*.pcap' -not -path 'pcaps/ticks/*' | sort | while read -r f; do
  # (A capture made to be refused, if one is ever added, only trains the error path.)
  "$gen" replay "$f" --helper all --verdicts --table --expect --events >/dev/null 2>&1 || true
done

"$profdata" merge -o target/pgo/ctrack.profdata "$data"
log "optimised build"
RUSTFLAGS="-Cprofile-use=$top/target/pgo/ctrack.profdata" \
  cargo build --release -q -p ctrack --target-dir target/pgo/use
cp target/pgo/use/release/ctrack target/pgo/ctrack
echo "$top/target/pgo/ctrack"
