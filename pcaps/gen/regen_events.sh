#!/usr/bin/env bash
# Records the kernel's connection events (`conntrack -E`) and expectation events
# (`conntrack -E expect`) for the committed captures.
#
#   pcaps/gen/regen_events.sh [PATH-FILTER]
#
# Needs root, the kernel oracle (../shared/oracle, or $KTRACE_PY for its ktrace.py), nftables
# and conntrack-tools (`conntrack`). For each capture under pcaps/ with a golden whose path
# contains PATH-FILTER: replay it through the oracle while `conntrack -E` listens
# (ktrace_events.sh), and, when the oracle's verdicts are the golden's
# (the replay's timing decided the same as when the golden was made), write what the kernel
# reported as pcaps/NAME.events: one line per event, as `conntrack -E` prints it, without
# the kernel's entry id; and, when the kernel reported any, its expectation events as
# pcaps/NAME.expect-events, as `conntrack -E expect` prints them (no file: none). Captures
# whose replay did not reproduce the golden's verdicts get no events files (old ones are
# removed) and are listed on standard error.
# A zone or mark scenario (NAME.zones or NAME.marks beside it), or one whose arguments give
# timeout policies (--timeout-policy), is replayed through
# ktrace_rules.py, as regen.sh does.
# Event files are never edited by hand: rerun this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
command -v conntrack >/dev/null || { echo "regen_events: conntrack (conntrack-tools) is missing" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
  # (`env` first, so that EXPECT_EVENTS below stays an assignment whatever comes before it.)
  oracle=(env)
  if [ -f "$base.zones" ] || [ -f "$base.marks" ] || [[ " $args " == *" --timeout-policy "* ]]; then
    # Already in ktrace_events.sh's namespace: the rules' oracle must not make one of its own.
    oracle=(env KTRACE_PY="$here/ktrace_rules.py" KTRACE_RULES_INSIDE=1)
  fi
  # shellcheck disable=SC2086
  "${oracle[@]}" EXPECT_EVENTS="$work/expect" "$here/ktrace_events.sh" "$work/events" "$cap" $args > "$work/verdicts"
  if diff -q <(grep -v '^#' "$golden") <(grep -v '^#' "$work/verdicts") > /dev/null; then
    cp "$work/events" "$base.events"
    if [ -s "$work/expect" ]; then
      cp "$work/expect" "$base.expect-events"
    else
      rm -f "$base.expect-events"
    fi
    n=$((n + 1))
  else
    rm -f "$base.events" "$base.expect-events"
    skipped=$((skipped + 1))
    echo "regen_events: ${base#"$top"/}: the replay's verdicts differ from the golden, no events" >&2
  fi
done < <(find "$top/pcaps" -name '*.golden' -not -path '*/gen/*' | sort)
echo "regen_events: $n captures with events, $skipped skipped"
