#!/usr/bin/env bash
# Records the kernel's connection events (`conntrack -E`) for the committed captures.
#
#   pcaps/gen/regen_events.sh [PATH-FILTER]
#
# Needs root, the kernel oracle (../shared/oracle, or $KTRACE_PY for its ktrace.py), nftables
# and conntrack-tools (`conntrack`). For each capture under pcaps/ with a golden whose path
# contains PATH-FILTER: replay it through the oracle in a fresh network namespace while
# `conntrack -E` listens in that namespace, and, when the oracle's verdicts are the golden's
# (the replay's timing decided the same as when the golden was made), write what the kernel
# reported as pcaps/NAME.events: one line per event, as `conntrack -E` prints it, without
# the kernel's entry id. Captures whose replay did not reproduce the golden's verdicts get no
# events file (an old one is removed) and are listed on standard error.
# Event files are never edited by hand: rerun this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace_py=${KTRACE_PY:-$top/../shared/oracle/ktrace.py}
[ -r "$ktrace_py" ] || { echo "regen_events: no oracle at $ktrace_py (set KTRACE_PY)" >&2; exit 1; }
command -v conntrack >/dev/null || { echo "regen_events: conntrack (conntrack-tools) is missing" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
me=$(readlink /proc/self/ns/net)

# events CAPTURE ARGS...: the oracle's output on stdout, the kernel's events in $work/events.
events() {
  local cap=$1; shift
  unshare --net -- python3 "$ktrace_py" "$cap" "$@" > "$work/verdicts" &
  local pid=$! ns="" i
  # The oracle sets its namespace up for 0.2 s before the first packet: listen in it by then.
  for i in $(seq 1 500); do
    ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || ns=""
    [ -n "$ns" ] && [ "$ns" != "$me" ] && break
    sleep 0.001
  done
  nsenter --net="/proc/$pid/ns/net" conntrack -E -o id > "$work/raw" 2> /dev/null &
  local listener=$!
  wait "$pid"
  # Events are queued on the listener's socket as the packets pass; give it time to print.
  sleep 0.3
  kill "$listener" 2> /dev/null || true
  wait "$listener" 2> /dev/null || true
  # The entry id comes last on every line (an ICMP tuple's own id= comes before it).
  sed -E 's/ id=[0-9]+$//' "$work/raw" > "$work/events"
}

n=0 skipped=0
while read -r golden; do
  case "$golden" in *"${1:-}"*) ;; *) continue ;; esac
  base=${golden%.golden}
  cap="$base.pcap"
  [ -f "$cap" ] || cap="$base.pcapng"
  if [ "${cap##*.}" = pcapng ]; then
    editcap -F pcap "$cap" "$work/cap.pcap"
    cap="$work/cap.pcap"
  fi
  args=$(cat "$base.args" 2> /dev/null || true)
  # shellcheck disable=SC2086
  events "$cap" $args
  if diff -q <(grep -v '^#' "$golden") <(grep -v '^#' "$work/verdicts") > /dev/null; then
    cp "$work/events" "$base.events"
    n=$((n + 1))
  else
    rm -f "$base.events"
    skipped=$((skipped + 1))
    echo "regen_events: ${base#"$top"/}: the replay's verdicts differ from the golden, no events" >&2
  fi
done < <(find "$top/pcaps" -name '*.golden' -not -path '*/gen/*' | sort)
echo "regen_events: $n captures with events, $skipped skipped"
