#!/usr/bin/env bash
# Side-by-side benchmark: Open vSwitch's userspace conntrack (lib/conntrack.c, from Debian's
# openvswitch-source) against ctrack, one thread each, on identical packets.
#
#   sudo benches/ovs/run.sh            # everything; prints Markdown tables on stdout
#
# Environment:
#   OVS_BUILD_DIR  where OVS is unpacked and built, and the harness binary goes
#                  (default: ovs-build beside the repository; reused when present)
#   DATA_DIR       where the workload captures go (default: $OVS_BUILD_DIR/data; reused)
#   PACKETS        timed packets per workload (default 5000000; syn uses 2000000 SYNs,
#                  bulk cases with a payload BULK_PACKETS, default 1000000)
#   REPS           runs of each measurement; the best is reported (default 3)
#   CASES          space-separated subset of the cases below, e.g. "est:1000 syn:0"
#   CTRACK         a ctrack binary to time instead of building target/release/ctrack
#   PCAPS          space-separated captures to time as they are, instead of CASES: classic
#                  pcap, Ethernet (as the harness reads them), e.g. real traffic; each is
#                  replayed once, whole (no untimed setup), from an empty table on both sides
#   NO_WARM_UP=1   time each side's first pass through its code (both warm up by default on
#                  copies of the capture's first 4,096 packets, in a scratch tracker)
#
# Progress goes to stderr; the tables go to stdout and to $DATA_DIR/results.md.
set -euo pipefail
[ -z "${CTRACK:-}" ] || CTRACK=$(realpath "$CTRACK")

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${OVS_BUILD_DIR:-$(dirname "$REPO")/ovs-build}
DATA=${DATA_DIR:-$BUILD/data}
PACKETS=${PACKETS:-5000000}
REPS=${REPS:-3}
# workload:flows[:v6[:payload]]; syn ignores flows (every packet a new connection); a payload
# is the bytes of each TCP data segment (bulk data; the default is 64).
CASES=${CASES:-"est:1000 est:100000 est:1000000 syn:0 udp:100000 mix:100000 est:1000:v6 est:1000::1400"}
SYN_PACKETS=${SYN_PACKETS:-2000000}
BULK_PACKETS=${BULK_PACKETS:-1000000}

log() { echo "run.sh: $*" >&2; }

case "$BUILD" in "$REPO"|"$REPO"/*)
  log "OVS_BUILD_DIR must be outside the repository"; exit 1 ;;
esac

# 1. Build dependencies (Debian).
DEPS="openvswitch-source build-essential autoconf automake libtool python3 libssl-dev
      libcap-ng-dev pkg-config"
missing=$(for p in $DEPS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  log "installing:" $missing
  if [ "$(id -u)" != 0 ]; then log "need root to apt-get install"; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
fi
command -v cargo >/dev/null || { log "cargo is not installed"; exit 1; }

# 2. OVS: unpack Debian's source tarball and build only the library (static).
OVS=$BUILD/openvswitch
mkdir -p "$BUILD" "$DATA"
if [ ! -f "$OVS/lib/.libs/libopenvswitch.a" ]; then
  if [ ! -f "$OVS/configure" ]; then
    log "unpacking /usr/src/openvswitch/openvswitch.tar.gz into $BUILD"
    tar xzf /usr/src/openvswitch/openvswitch.tar.gz -C "$BUILD"
  fi
  cd "$OVS"
  if [ ! -f config.status ]; then
    log "configuring OVS (default CFLAGS -g -O2, no DPDK, no AF_XDP)"
    ./configure --enable-static --disable-shared >"$BUILD/configure.log" 2>&1
  fi
  # Generated headers the library needs, then the library itself.
  built=$(printf 'include Makefile\nprint-built-sources:\n\t@echo $(BUILT_SOURCES)\n' |
          make -s -f - print-built-sources)
  log "building OVS's library (a few minutes)"
  make -j"$(nproc)" $built >"$BUILD/make.log" 2>&1
  make -j"$(nproc)" lib/libopenvswitch.la >>"$BUILD/make.log" 2>&1
fi
OVS_VERSION=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' "$OVS/config.h")

# 3. The harness.
HARNESS=$BUILD/ovs_ct_bench
if [ ! -x "$HARNESS" ] || [ "$REPO/benches/ovs/ovs_ct_bench.c" -nt "$HARNESS" ] ||
   [ "$OVS/lib/.libs/libopenvswitch.a" -nt "$HARNESS" ]; then
  log "building the harness"
  gcc -O2 -g -Wall -Wextra -Wno-sign-compare -Wno-unused-parameter \
    -I"$OVS" -I"$OVS/include" -I"$OVS/lib" \
    -o "$HARNESS" "$REPO/benches/ovs/ovs_ct_bench.c" \
    "$OVS/lib/.libs/libopenvswitch.a" "$OVS/lib/.libs/libopenvswitchavx512.a" \
    -lssl -lcrypto -lcap-ng -latomic -lm -lpthread
fi

# 4. ctrack (CTRACK=BINARY times that binary instead, e.g. benches/pgo.sh's).
if [ -z "${CTRACK:-}" ]; then
  log "building ctrack (release)"
  (cd "$REPO" && cargo build --release --quiet)
  CTRACK=$REPO/target/release/ctrack
fi

# 5. Helpers.
mpps() { awk '/^packets /{m=$6} END{print m}'; }   # the last `packets N seconds S mpps M`
best() { sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a > 0) printf "%.2fx", b / a; else print "-" }'; }

# Captures: one per case, written by ctrack from its own generator (setup packets first).
gen() { # kind flows v6 payload -> sets PCAP, SETUP, FLAGS, NPK
  local kind=$1 flows=$2 v6=$3 payload=$4
  NPK=$PACKETS
  [ "$kind" = syn ] && NPK=$SYN_PACKETS && flows=1
  [ -n "$payload" ] && [ "$NPK" -gt "$BULK_PACKETS" ] && NPK=$BULK_PACKETS
  FLAGS=(--workload "$kind" --flows "$flows" --packets "$NPK")
  [ -n "$v6" ] && FLAGS+=(--ipv6)
  [ -n "$payload" ] && FLAGS+=(--payload "$payload")
  PCAP=$DATA/$kind-$flows-$NPK${v6:+-v6}${payload:+-p$payload}.pcap
  if [ ! -s "$PCAP" ] || [ ! -s "$PCAP.setup" ] || [ "$CTRACK" -nt "$PCAP" ]; then
    log "writing $PCAP"
    "$CTRACK" bench "${FLAGS[@]}" --write-pcap "$PCAP" |
      awk '/^setup /{print $2}' >"$PCAP.setup"
  fi
  SETUP=$(cat "$PCAP.setup")
}

# Verdict agreement: OVS's ct_state class against ctrack's verdict class, packet by packet.
# Classes: new / established / related each with ,orig or ,reply; invalid; untracked.
# ctrack's +assured / +expected carry no counterpart in ct_state and are dropped.
agree() { # pcap setup packets -> one line
  local pcap=$1 setup=$2 n=$3 o=$DATA/verdicts.ovs c=$DATA/verdicts.ct
  "$HARNESS" --verdicts "$pcap" | awk '/^[0-9]+ /{print $1, $2}' >"$o"
  # Room for every packet to open a connection, as both benches give themselves.
  "$CTRACK" replay "$pcap" --verdicts --sysctl "nf_conntrack_max=$n" |
    awk '{sub(/\+.*/, "", $2); print $1, $2}' >"$c"
  paste -d' ' "$o" "$c" | awk -v setup="$setup" '
    $1 != $3 { print "index mismatch at line " NR > "/dev/stderr"; exit 1 }
    { n++; if ($2 == $4) a++; else d[$2 " (OVS) vs " $4 " (ctrack)"]++
      if ($1 >= setup) { tn++; if ($2 == $4) ta++ } }
    END {
      printf "%d of %d packets agree (%.4f%%); timed packets %d of %d", a, n, 100*a/n, ta, tn
      k = 0; for (x in d) { printf "%s %s: %d", (k++ ? ";" : "; differing:"), x, d[x] }
      printf "\n" }'
  rm -f "$o" "$c"
}

# 6. Run.  Every measurement of a case runs once per rep, interleaved, so that load from other
# processes falls on both engines alike; the best of the reps is kept.
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
ROWS=() CSUM_ROWS=() EXTRA_ROWS=() AGREE=()
if [ -n "${PCAPS:-}" ]; then
  ITEMS=()
  for f in $PCAPS; do ITEMS+=("file:$(realpath "$f")"); done
else
  read -r -a ITEMS <<<"$CASES"
fi
for c in "${ITEMS[@]}"; do
  if [ "${c%%:*}" = file ]; then
    # A capture as it is: every packet timed, from an empty table.
    PCAP=${c#file:} SETUP=0 FLAGS=()
    # A capture with a bad record: ctrack times the packets before it and exits 1; skipped.
    NPK=$("$CTRACK" bench --pcap "$PCAP" --batch 32 | awk '/^packets /{print $2}') || NPK=
    [ -n "$NPK" ] || { log "skipping $PCAP: ctrack cannot bench it whole"; continue; }
    "$HARNESS" "$PCAP" >/dev/null 2>&1 || { log "skipping $PCAP: the harness cannot read it"; continue; }
    label=$(basename "$PCAP") fl="- ($NPK packets)" what="$label, $NPK packets"
  else
    IFS=: read -r kind flows v6 payload <<<"$c"
    gen "$kind" "$flows" "$v6" "$payload"
    label="$kind${v6:+ (IPv6)}${payload:+, $payload-byte segments}"
    fl=$flows; [ "$kind" = syn ] && fl="- ($NPK SYNs)"
    what="$label, $fl flows"
  fi
  log "case $label ($fl): $PCAP, setup $SETUP"
  declare -A runs=()
  OVS_ARGS=(--setup "$SETUP" ${NO_WARM_UP:+--no-warm-up})
  CT_ARGS=(bench --pcap "$PCAP" --setup "$SETUP" --batch 32 ${NO_WARM_UP:+--no-warm-up})
  CSUM0=(--sysctl nf_conntrack_checksum=0)
  for r in $(seq "$REPS"); do
    log "  rep $r/$REPS"
    runs[ovs]+=" $("$HARNESS" "${OVS_ARGS[@]}" "$PCAP" | mpps)"
    runs[ct]+=" $("$CTRACK" "${CT_ARGS[@]}" | mpps)"
    runs[ovs_hot]+=" $("$HARNESS" "${OVS_ARGS[@]}" --hot "$PCAP" | mpps)"
    runs[ct_hot]+=" $("$CTRACK" "${CT_ARGS[@]}" --hot | mpps)"
    runs[ovs_off]+=" $("$HARNESS" "${OVS_ARGS[@]}" --csum-offload "$PCAP" | mpps)"
    runs[ct_off]+=" $("$CTRACK" "${CT_ARGS[@]}" "${CSUM0[@]}" | mpps)"
    runs[ovs_off_hot]+=" $("$HARNESS" "${OVS_ARGS[@]}" --csum-offload --hot "$PCAP" | mpps)"
    runs[ct_off_hot]+=" $("$CTRACK" "${CT_ARGS[@]}" "${CSUM0[@]}" --hot | mpps)"
    runs[ct256]+=" $("$CTRACK" bench --pcap "$PCAP" --setup "$SETUP" --batch 256 ${NO_WARM_UP:+--no-warm-up} | mpps)"
    [ ${#FLAGS[@]} = 0 ] || runs[ctw]+=" $("$CTRACK" bench "${FLAGS[@]}" | mpps)"
  done
  declare -A b=()
  for k in "${!runs[@]}"; do
    b[$k]=$(printf '%s\n' ${runs[$k]} | best)
    log "  $k:${runs[$k]} -> ${b[$k]}"
  done
  ROWS+=("| $label | $fl | ${b[ovs]} | ${b[ct]} | $(ratio "${b[ovs]}" "${b[ct]}") | ${b[ovs_hot]} | ${b[ct_hot]} | $(ratio "${b[ovs_hot]}" "${b[ct_hot]}") |")
  CSUM_ROWS+=("| $label | $fl | ${b[ovs_off]} | ${b[ct_off]} | $(ratio "${b[ovs_off]}" "${b[ct_off]}") | ${b[ovs_off_hot]} | ${b[ct_off_hot]} | $(ratio "${b[ovs_off_hot]}" "${b[ct_off_hot]}") |")
  EXTRA_ROWS+=("| $label | $fl | ${b[ct]} | ${b[ct256]} | ${b[ctw]:--} |")
  unset runs b
  log "  verdicts"
  AGREE+=("- $what: $(agree "$PCAP" "$SETUP" $((SETUP + NPK)))")
done

{
  if [ -n "${PCAPS:-}" ]; then
    what="each capture replayed whole from an empty table, every packet timed"
  else
    what="$PACKETS timed packets per workload (syn: $SYN_PACKETS; bulk: $BULK_PACKETS)"
  fi
  echo "OVS $OVS_VERSION (Debian openvswitch-source, gcc -g -O2) vs ctrack $(git -C "$REPO" rev-parse --short HEAD); $CPU, $(nproc) CPUs; $(date -u +%Y-%m-%d); best of $REPS; $what; one thread each; bursts of 32."
  echo
  if [ -n "${NO_WARM_UP:-}" ]; then
    echo "No warm-up: each timed pass is the process's first through the engine's code."
  else
    echo "Each side first replayed copies of the capture's first 4,096 packets into a scratch tracker (untimed; the timed tracker starts empty), so that neither fetches its code from memory inside the timed loop."
  fi
  echo
  echo "Checksums validated in software by both (OVS: packets without offload flags; ctrack: nf_conntrack_checksum=1, its default). *Cold*: one clock around the timed loop, packets read from memory. *Hot*: each burst timed alone after its packets were read untimed."
  echo
  echo "| workload | flows | OVS Mpps | ctrack Mpps | ratio | OVS Mpps, hot | ctrack Mpps, hot | ratio, hot |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "No software checksum (OVS: packets flagged IP and L4 checksum good, as a NIC with receive offload does; ctrack: nf_conntrack_checksum=0)."
  echo
  echo "| workload | flows | OVS Mpps | ctrack Mpps | ratio | OVS Mpps, hot | ctrack Mpps, hot | ratio, hot |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${CSUM_ROWS[@]}"
  echo
  echo "ctrack alone: the same capture in bursts of 32 and of 256 (its default), and \`ctrack bench --workload\` on the same packets generated in memory (raw IP, bursts of 256)."
  echo
  echo "| workload | flows | ctrack --pcap, burst 32 | ctrack --pcap, burst 256 | ctrack --workload |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${EXTRA_ROWS[@]}"
  echo
  echo "Verdict agreement (OVS ct_state class vs ctrack verdict class, every packet including setup):"
  echo
  printf '%s\n' "${AGREE[@]}"
} | tee "$DATA/results.md"
