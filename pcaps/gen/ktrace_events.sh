#!/usr/bin/env bash
# The kernel oracle, with the kernel's connection events.
#
#   pcaps/gen/ktrace_events.sh EVENTS-OUT CAPTURE [ORACLE-ARGS...]
#
# Replays CAPTURE through the oracle (../shared/oracle/ktrace.py, or $KTRACE_PY) in a private
# network namespace, as `ktrace` does, while `conntrack -E` (conntrack-tools) listens in that
# namespace. The oracle's output goes to standard output; EVENTS-OUT gets the events, one per
# line as `conntrack -E` prints them, without the kernel's entry id. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace_py=${KTRACE_PY:-$top/../shared/oracle/ktrace.py}
[ -r "$ktrace_py" ] || ktrace_py=/work/shared/oracle/ktrace.py
[ $# -ge 2 ] || { echo "usage: ktrace_events.sh EVENTS-OUT CAPTURE [ARGS...]" >&2; exit 2; }
command -v conntrack > /dev/null ||
  { echo "ktrace_events: conntrack (conntrack-tools) is missing" >&2; exit 2; }
out=$1
shift
raw=$(mktemp)
errs=$(mktemp)
trap 'rm -f "$raw" "$errs"' EXIT
expect_out=${EXPECT_EVENTS:-}
me=$(readlink /proc/self/ns/net)
unshare --net -- python3 "$ktrace_py" "$@" &
pid=$!
# The oracle sets its namespace up for 0.2 s before the first packet: listen in it by then.
for _ in $(seq 1 500); do
  ns=$(readlink "/proc/$pid/ns/net" 2> /dev/null) || ns=""
  [ -n "$ns" ] && [ "$ns" != "$me" ] && break
  sleep 0.001
done
# A socket buffer of 64 MiB: with the default, a listener falls behind on a large capture and
# the kernel drops events it has no room for (conntrack then warns of ENOBUFS, see below).
nsenter --net="/proc/$pid/ns/net" conntrack -E -o id -b 67108864 > "$raw" 2> "$errs" &
listener=$!
expect_listener=
if [ -n "$expect_out" ]; then
  nsenter --net="/proc/$pid/ns/net" conntrack -E expect > "$expect_out" 2>> "$errs" &
  expect_listener=$!
fi
status=0
wait "$pid" || status=$?
# Events are queued on the listener's socket as the packets pass; give it time to print them.
sleep 0.3
kill "$listener" $expect_listener 2> /dev/null || true
wait "$listener" $expect_listener 2> /dev/null || true
# The entry id comes last on every line (an ICMP tuple's own id= comes before it).
sed -E 's/ id=[0-9]+$//' "$raw" > "$out"
if grep -q ENOBUFS "$errs"; then
  echo "ktrace_events: the listener lost events (ENOBUFS): $out is incomplete" >&2
  [ "$status" != 0 ] || status=3
fi
exit "$status"
