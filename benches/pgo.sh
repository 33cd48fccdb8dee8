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
# PACKETS (default 2000000) sets the packets of each training workload. EXTRA_RUSTFLAGS are
# added to the optimised build's (benches/bolt.sh links it with its relocations kept).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
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

log "training (benches/train.sh)"
benches/train.sh "$gen"

"$profdata" merge -o target/pgo/ctrack.profdata "$data"
log "optimised build"
RUSTFLAGS="-Cprofile-use=$top/target/pgo/ctrack.profdata ${EXTRA_RUSTFLAGS:-}" \
  cargo build --release -q -p ctrack --target-dir target/pgo/use
cp target/pgo/use/release/ctrack target/pgo/ctrack
echo "$top/target/pgo/ctrack"
