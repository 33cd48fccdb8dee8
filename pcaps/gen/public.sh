#!/usr/bin/env bash
# Compares ctrack with the kernel oracle on the capture collections of public test suites:
# tcpdump's printer tests (small, many malformed on purpose), nDPI's protocol-detection
# captures (real application traffic) and Wireshark's dissector captures, and the smaller sets
# of dnscap (DNS over UDP and TCP, fragments, VLAN), dpkt, tcpflow (TCP reassembly cases),
# termshark and libpcap (file-format edge cases), fetched as Debian source packages. Nothing is
# copied into the repository.
#
#   pcaps/gen/public.sh [DIR]        (default DIR: /tmp/ctrack-public)
#
# Needs root (the oracle), apt-get with a deb-src entry (added for bookworm if missing),
# editcap, and ctrack built (cargo build --release; CTRACK overrides). MAXSIZE (bytes, default
# 30000000) skips larger captures. Every capture whose link type the oracle reads goes
# through compare.sh with its default arguments (--helper all); DIR/results.txt gets one line
# per capture (compare.sh's exit status and summary), DIR/keep/NAME what compare.sh printed
# for each that did not agree. Exit status 1 when any capture disagreed (status 1), 0 otherwise;
# captures the oracle itself cannot replay (status 2, or a traceback) are listed, not counted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-/tmp/ctrack-public}
max=${MAXSIZE:-30000000}
mkdir -p "$dir/src" "$dir/keep"
cd "$dir/src"
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    > /etc/apt/sources.list.d/ctrack-public-src.sources
  apt-get update -qq
fi
for pkg in tcpdump ndpi wireshark dnscap python-dpkt tcpflow termshark libpcap; do
  # apt-get may fail on a package's Debian part yet have fetched its upstream tarball.
  ls "$pkg"_*.orig.tar.?z* >/dev/null 2>&1 || apt-get source --download-only "$pkg" >/dev/null 2>&1 || true
  found=
  for t in "$pkg"_*.orig.tar.gz "$pkg"_*.orig.tar.bz2 "$pkg"_*.orig.tar.xz; do
    [ -e "$t" ] || continue
    found=1
    [ -e "$t.unpacked" ] && continue
    tar xf "$t" --wildcards '*.pcap' '*.pcapng' '*.cap' 2>/dev/null || true
    touch "$t.unpacked"
  done
  [ -n "$found" ] || echo "public: could not fetch $pkg's source" >&2
done
# The link types the oracle reads: Ethernet, BSD loopback, raw IP (three codes), Linux cooked
# v1 and v2; pcapng files are tried as they are (compare.sh converts them).
find "$dir/src" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) -size -"$max"c | sort |
  /usr/bin/python3 -c '
import struct, sys
ok = {0, 1, 12, 14, 101, 113, 228, 229, 276}
for path in sys.stdin.read().split("\n"):
    if not path:
        continue
    head = open(path, "rb").read(24)
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        print(path)
    elif len(head) == 24 and head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        if struct.unpack("<I", head[20:24])[0] in ok:
            print(path)
    elif len(head) == 24 and head[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        if struct.unpack(">I", head[20:24])[0] in ok:
            print(path)
' > "$dir/list.txt"
: > "$dir/results.txt"
bad=0
while read -r f; do
  name=${f#"$dir/src/"}
  keep=$dir/keep/${name//\//_}
  set +e
  r=$(MAX=20 timeout 600 "$here/compare.sh" "$f" 2>&1)
  rc=$?
  set -e
  line=$(grep -m1 ': packets ' <<<"$r" || tail -1 <<<"$r")
  echo "rc=$rc $name: ${line#"$f: "}" >> "$dir/results.txt"
  if [ $rc != 0 ]; then
    printf '%s\n' "$r" > "$keep"
    grep -q ': packets ' <<<"$r" && bad=$((bad + 1))
  fi
done < "$dir/list.txt"
awk '{for (i = 1; i <= NF; i++) { if ($i == "scored") s += $(i + 1); if ($i == "packets") p += $(i + 1) } }
     /^rc=0 / { a++ } /: packets / { n++ }
     END { printf "public: %d captures compared, %d agree; %d packets, %d scored\n", n, a, p, s }' \
  "$dir/results.txt"
echo "public: $bad disagree; the oracle could not replay $(grep -vc ': packets ' "$dir/results.txt" || true) (see $dir/results.txt)"
[ "$bad" = 0 ]
