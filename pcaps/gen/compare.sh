#!/usr/bin/env bash
# Compares ctrack with the kernel oracle on one capture, packet by packet and table line by line.
#
#   pcaps/gen/compare.sh FILE [ARGS...]
#
# ARGS are what both the oracle and ctrack get (default: --helper all, as the evaluation uses).
# FILE may be pcap or pcapng (pcapng is converted with editcap for the oracle, which reads
# classic pcap of one link type only, or where editcap cannot, rewritten as raw IP by
# rawip.py). The oracle replays FILE with --out-pcap; ctrack then replays that
# kernel-stamped capture with --sysctl nf_conntrack_checksum=0, so both see the same timing.
#
# Prints one summary line
#   FILE: packets N scored S agree A (P%) table K/T match [ctrack extra E]
# then every disagreement (at most $MAX, default 40). `dropped` kernel lines are not scored;
# table lines (and `# expect` lines, counted with them) compare exactly except the seconds-left
# field (within 2 s); order is irrelevant. A line only ctrack has, with at most 2 s left, is
# counted apart in the summary, not as a disagreement: the oracle lists its table after its
# last packet (about a second later for a 246,137-packet capture), by when the kernel may have
# timed that entry out.
# Exit status: 0 when everything agrees, 1 otherwise, 2 on a usage or tool error.
# Set KEEP=DIR to keep the stamped capture and both outputs there; KTRACE overrides the oracle.
# DIRECT=1 replays FILE itself in ctrack (its own format and timestamps, as an evaluation that
# runs `ctrack replay FILE` does) instead of the kernel-stamped copy: timing-dependent results
# (timeouts, UDP's 2-second stream rule, seconds left) may then differ for long captures.
# EVENTS=1 also compares the connection events: the kernel's, from `conntrack -E` listening
# during the oracle's replay (ktrace_events.sh), with `ctrack replay --events`, by the rules of
# tests/events.rs (same lines in the same order, seconds left within 1, timed-out entries as a
# set the kernel's must be part of, but for those ctrack still has after its last packet,
# which the kernel may have timed out in the time its replay took to end); the summary line
# then ends with `events K/T match`. It also compares the expectation events (`conntrack -E
# expect`, a listener of its own, with ctrack's `# expect-event` lines) as tests/events.rs
# does: new ones in order, destroyed ones as a set both ways (but for those ctrack still has
# pending after its last packet, which the kernel's collector may have taken with a master
# that timed out); the summary then ends with `expectation events K/T match`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ktrace=${KTRACE:-$top/../shared/oracle/ktrace}
[ -x "$ktrace" ] || ktrace=/work/shared/oracle/ktrace
ctrack=${CTRACK:-$top/target/release/ctrack}
[ $# -ge 1 ] || { echo "usage: compare.sh FILE [ARGS...]" >&2; exit 2; }
file=$1
shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--helper all)
[ -x "$ctrack" ] || { echo "compare: build ctrack first (cargo build --release)" >&2; exit 2; }
work=${KEEP:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
in=$file
if [ "$(head -c 4 "$file" | od -An -tx1 | tr -d ' ')" = 0a0d0d0a ]; then
  # A file whose interfaces differ in link type (or whose records classic pcap cannot hold)
  # is rewritten as raw IP instead, frame for frame (rawip.py).
  editcap -F pcap "$file" "$work/input.pcap" 2>/dev/null ||
    python3 "$here/rawip.py" "$file" "$work/input.pcap"
  in=$work/input.pcap
else
  # A classic pcap whose link-type field carries more than the link type (libpcap reads its
  # low 16 bits; tcpdump's tests set the FCS bits above them) reaches the oracle, which reads
  # the whole field, with those bits cleared.
  python3 - "$file" "$work/input.pcap" <<'PY' && in=$work/input.pcap
import struct, sys
data = open(sys.argv[1], "rb").read()
e = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(data[:4])
if e is None or len(data) < 24 or struct.unpack(e + "I", data[20:24])[0] >> 16 == 0:
    sys.exit(1)
link = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
open(sys.argv[2], "wb").write(data[:20] + struct.pack(e + "I", link) + data[24:])
PY
fi
# Timeout policies (ctrack's --timeout-policy) reach the kernel through ktrace_rules.py, which
# makes its ct timeout objects and rules of them.
oracle=("$ktrace")
rules=(env)
if [[ " ${args[*]} " == *" --timeout-policy "* ]]; then
  oracle=(env KTRACE="$ktrace" "$here/ktrace_rules.py")
  rules=(env KTRACE_PY="$here/ktrace_rules.py" KTRACE_RULES_INSIDE=1)
fi
if [ -n "${EVENTS:-}" ]; then
  "${rules[@]}" EXPECT_EVENTS="$work/kernel.expect" \
    "$here/ktrace_events.sh" "$work/kernel.events" "$in" "${args[@]}" \
    --out-pcap "$work/stamped.pcap" > "$work/kernel.out" ||
    { echo "compare: the oracle failed on $file (exit $?)" >&2; exit 2; }
else
  "${oracle[@]}" "$in" "${args[@]}" --out-pcap "$work/stamped.pcap" > "$work/kernel.out" ||
    { echo "compare: the oracle failed on $file (exit $?)" >&2; exit 2; }
fi
replayed=$work/stamped.pcap
[ -z "${DIRECT:-}" ] || replayed=$file
cargs=()
[ -z "${EVENTS:-}" ] || cargs+=(--events)
for a in "${args[@]}"; do
  [ "$a" = --realtime ] || cargs+=("$a")   # the oracle's timing option; the stamped copy carries it
done
"$ctrack" replay "$replayed" --sysctl nf_conntrack_checksum=0 "${cargs[@]}" \
  --verdicts --table --expect > "$work/ctrack.out"
exec python3 - "$file" "$work/kernel.out" "$work/ctrack.out" "${MAX:-40}" \
  "${EVENTS:+$work/kernel.events}" <<'EOF'
import collections, sys

name, kpath, cpath, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
epath = sys.argv[5] if len(sys.argv) > 5 else ""


def parse(path):
    verdicts, tables = {}, []
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# table "):
            tables.append(line[8:])
        elif line.startswith("# expect "):
            # Expectations compare like table lines; their seconds left come first.
            tables.append("expect " + line[9:])
        elif line and not line.startswith("#"):
            i, _, v = line.partition(" ")
            verdicts[int(i)] = v
    return verdicts, tables


def key(line):
    t = line.split()
    at = 1 if t[0] == "expect" else 4
    secs = int(t[at]) if len(t) > at and t[at].isdigit() else -1
    return " ".join(t[:at] + t[at + 1:]), secs


kv, kt = parse(kpath)
cv, ct = parse(cpath)
out = []
scored = agree = 0
for i in sorted(kv):
    if kv[i] == "dropped":
        continue
    scored += 1
    c = cv.get(i, "(none)")
    if c == kv[i]:
        agree += 1
    else:
        out.append(f"packet {i}: kernel {kv[i]}, ctrack {c}")
want = collections.defaultdict(list)
for l in kt:
    k, s = key(l)
    want[k].append(s)
got = collections.defaultdict(list)
for l in ct:
    k, s = key(l)
    got[k].append(s)
match = 0
for k, ws in want.items():
    gs = got.setdefault(k, [])
    gs.sort()
    for s in sorted(ws):
        near = [g for g in gs if abs(g - s) <= 2]
        if near:
            gs.remove(near[0])
            match += 1
        elif gs:
            out.append(f"table seconds: kernel {s}, ctrack {gs.pop(0)}: {k}")
        else:
            out.append(f"table missing: {k}")
# What ctrack holds beyond the kernel's lines. The oracle lists its table some time after its
# last packet (about a second later for a long capture), so a line of ctrack's with at most 2
# seconds left (the seconds' tolerance above) may have timed out in the kernel by then: it
# is counted apart, as timed out before the listing, not as a disagreement.
extra = gone = 0
for k, gs in got.items():
    for g in gs:
        if 0 <= g <= 2:
            gone += 1
        else:
            extra += 1
            out.append(f"table extra: {k}")
events = ""
if epath:
    def ev(line):
        t = line.split()
        secs = int(t[3]) if len(t) > 3 and t[3].isdigit() else None
        rest = " ".join(t[1:3] + t[4 if secs is not None else 3:])
        return t[0], secs, rest

    def expiry(e):
        return e[0] == "[DESTROY]" and e[1] is None

    kev = [ev(l) for l in open(epath) if l.strip()]
    cev = [ev(l[len("# event "):]) for l in open(cpath) if l.startswith("# event ")]
    kseq = [e for e in kev if not expiry(e)]
    cseq = [e for e in cev if not expiry(e)]
    ematch = 0
    for i, (k, c) in enumerate(zip(kseq, cseq)):
        near = (k[1] is None) == (c[1] is None) and (k[1] is None or abs(k[1] - c[1]) <= 1)
        if k[0] != c[0] or k[2] != c[2] or not near:
            out.append(f"event {i}: kernel {k[0]} {k[1]} {k[2]}")
            out.append(f"{'':>{len(str(i)) + 7}}ctrack {c[0]} {c[1]} {c[2]}")
            break
        ematch += 1
    else:
        for k in kseq[len(cseq):]:
            out.append(f"event kernel only: {k[0]} {k[2]}")
        for c in cseq[len(kseq):]:
            out.append(f"event ctrack only: {c[0]} {c[2]}")
    def conn(e):
        # The protocol and original tuple: from the protocol name to the second src=.
        t = e[2].split()
        n = [i for i, x in enumerate(t) if x.startswith("src=")]
        return " ".join(t[:2] + [x for x in t[n[0]:n[1] if len(n) > 1 else len(t)] if "=" in x])

    still = collections.Counter()
    for c in cev:
        still[conn(c)] += 1 if c[0] == "[NEW]" else -1 if c[0] == "[DESTROY]" else 0
    ours = collections.Counter(c[2] for c in cev if expiry(c))
    late = 0
    for k in (k for k in kev if expiry(k)):
        if ours[k[2]] > 0:
            ours[k[2]] -= 1
            ematch += 1
        elif still[conn(k)] > 0:
            # Timed out after the last packet: the oracle lists its table and stops its
            # listener some time after the replay (seconds for a long capture).
            still[conn(k)] -= 1
            late += 1
        else:
            out.append(f"event kernel only, timed out: {k[2]}")
    events = f", events {ematch}/{len(kev)} match" + (f" ({late} timed out after the replay)" if late else "")

    def xev(line):
        t = line.split()
        return t[0], int(t[1]) if len(t) > 1 and t[1].isdigit() else -1, " ".join(t[2:])

    kx = [xev(l) for l in open(epath[: -len("events")] + "expect") if l.strip()]
    # ctrack's expectation events, each with whether a packet caused it (those after the
    # last verdict line came with the expiry at the end).
    cx, lines = [], open(cpath).read().splitlines()
    last_verdict = max([i for i, l in enumerate(lines) if l and not l.startswith("#")], default=-1)
    for i, l in enumerate(lines):
        if l.startswith("# expect-event "):
            cx.append((xev(l[len("# expect-event "):]), i < last_verdict))
    kn = [k for k in kx if k[0] == "[NEW]"]
    cn = [c for c, _ in cx if c[0] == "[NEW]"]
    xmatch = 0
    for i, (k, c) in enumerate(zip(kn, cn)):
        if k[2] != c[2] or abs(k[1] - c[1]) > 1:
            out.append(f"new expectation {i}: kernel {k[1]} {k[2]}")
            out.append(f"{'':>{len(str(i)) + 17}}ctrack {c[1]} {c[2]}")
            break
        xmatch += 1
    else:
        for k in kn[len(cn):]:
            out.append(f"expectation kernel only: {k[0]} {k[2]}")
        for c in cn[len(kn):]:
            out.append(f"expectation ctrack only: {c[0]} {c[2]}")
    left = [(c, p) for c, p in cx if c[0] != "[NEW]"]
    pending = collections.Counter(c[2] for c, _ in cx if c[0] == "[NEW]")
    for c, _ in left:
        pending[c[2]] -= 1
    xlate = 0
    for k in (k for k in kx if k[0] != "[NEW]"):
        at = [j for j, (c, p) in enumerate(left) if p and c[2] == k[2] and abs(c[1] - k[1]) <= 1]
        at = at or [j for j, (c, _) in enumerate(left) if c[2] == k[2]]
        if at:
            left.pop(at[0])
            xmatch += 1
        elif pending[k[2]] > 0:
            pending[k[2]] -= 1
            xlate += 1
        else:
            out.append(f"destroyed expectation kernel only: {k[1]} {k[2]}")
    for c, p in left:
        if p:
            out.append(f"destroyed expectation ctrack only: {c[1]} {c[2]}")
    events += f", expectation events {xmatch}/{len(kx)} match" + (
        f" ({xlate} gone after the replay)" if xlate else "")
pct = 100.0 * agree / scored if scored else 100.0
print(f"{name}: packets {len(kv)} scored {scored} agree {agree} ({pct:.2f}%) "
      f"table {match}/{len(kt)} match, ctrack extra {extra}"
      + (f" ({gone} with at most 2 s left, timed out before the oracle's listing)" if gone else "")
      + events)
for l in out[:limit]:
    print("  " + l)
if len(out) > limit:
    print(f"  ... {len(out) - limit} more")
sys.exit(0 if not out else 1)
EOF
