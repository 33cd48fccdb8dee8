#!/usr/bin/env bash
# Builds a ctrack binary whose machine code BOLT (LLVM's post-link optimiser) has laid out from
# a profile of benches/train.sh: hot blocks and functions placed together, cold ones split
# off, branches arranged to fall through. The instructions are the compiler's; only where
# they lie and which way the branches go differ.
#
#   benches/bolt.sh               # lays out the release build: target/bolt/ctrack
#   PGO=1 benches/bolt.sh         # lays out benches/pgo.sh's profile-guided build instead
#   CTRACK=target/bolt/ctrack benches/table.sh
#
# Prints the binary's path last, after replaying every committed capture with it and with the
# plain release build (same seed, helpers, verdicts, tables, expectations and events): any
# difference fails the script. Needs llvm-bolt and merge-fdata (Debian's bolt-16, installed
# when missing). The input is linked with --emit-relocs, so that BOLT may move functions too.
# Like PGO's, the profile is made afresh each run and never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
log() { echo "bolt.sh: $*" >&2; }

find_tool() { # name: on PATH, else the newest LLVM's
  command -v "$1" 2>/dev/null || find /usr/lib -maxdepth 3 -path '/usr/lib/llvm-*/bin/*' -name "$1" | sort -V | tail -1
}
bolt=$(find_tool llvm-bolt)
if [ -z "$bolt" ]; then
  log "installing Debian's bolt-16"
  apt-get install -y -qq bolt-16 >&2
  bolt=$(find_tool llvm-bolt)
fi
merge=$(dirname "$bolt")/merge-fdata
[ -x "$bolt" ] && [ -x "$merge" ] || { log "no llvm-bolt and merge-fdata"; exit 1; }

out=$top/target/bolt
rm -rf "$out/profiles"
mkdir -p "$out/profiles"
relocs="-C link-arg=-Wl,--emit-relocs"
if [ -n "${PGO:-}" ]; then
  log "profile-guided build (benches/pgo.sh), relocations kept"
  EXTRA_RUSTFLAGS=$relocs benches/pgo.sh >/dev/null
  cp target/pgo/ctrack "$out/input"
else
  log "release build, relocations kept"
  RUSTFLAGS=$relocs cargo build --release -q -p ctrack --target-dir target/bolt/build
  cp target/bolt/build/release/ctrack "$out/input"
fi

log "instrumented binary"
"$bolt" "$out/input" -instrument -o "$out/instrumented" \
  -instrumentation-file="$out/profiles/prof" -instrumentation-file-append-pid >/dev/null 2>&1
log "training (benches/train.sh)"
benches/train.sh "$out/instrumented"
"$merge" "$out"/profiles/*.fdata > "$out/profile.fdata" 2>/dev/null

log "laid-out binary"
"$bolt" "$out/input" -o "$out/ctrack" -data="$out/profile.fdata" \
  -reorder-blocks=ext-tsp -reorder-functions=hfsort+ -split-functions -split-all-cold \
  -split-eh -icf=1 -use-gnu-stack >"$out/bolt.log" 2>&1 ||
  { log "llvm-bolt failed (see $out/bolt.log)"; exit 1; }

log "checking it against the release build on every committed capture"
cargo build --release -q -p ctrack
n=0
while read -r f; do
  args=(replay "$f" --seed 1 --helper all --verdicts --table --expect --events)
  [ "$(target/release/ctrack "${args[@]}" 2>&1)" = "$("$out/ctrack" "${args[@]}" 2>&1)" ] ||
    { log "$f replays otherwise than in the release build"; exit 1; }
  n=$((n + 1))
done < <(find pcaps \( -name '*.pcap' -o -name '*.pcapng' \) | sort)
log "$n captures replay alike"
echo "$out/ctrack"
