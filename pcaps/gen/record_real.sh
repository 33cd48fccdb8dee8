#!/usr/bin/env bash
# Records captures of real programs talking through a Linux router, for comparing ctrack with
# the kernel oracle on realistic traffic (see compare.sh) and for the small captures committed
# under pcaps/real/ (see regen_real.sh).
#
#   pcaps/gen/record_real.sh OUTDIR [NAME...]     # default: every recording
#   pcaps/gen/record_real.sh --list
#
# Needs root and Debian's iproute2, tcpdump, wireshark-common (editcap), ethtool, curl, wget,
# python3, dnsmasq-base, dnsutils (dig), iputils-ping, traceroute, openssh-server/-client,
# iperf3, netcat-openbsd, python3-pyftpdlib, tftpd-hpa, tftp-hpa, sip-tester (sipp). Everything
# runs in three private network namespaces made here (client rl-c, router rl-r, server rl-s) and
# removed at exit; no traffic leaves them. Captures are taken on the router's client-side
# interface r0 unless a recording says otherwise, so they hold both directions as a router sees
# them.
#
# Addresses: client 10.99.1.2 / fd99:1::2, router 10.99.1.1 / fd99:1::1 and 10.99.2.1 /
# fd99:2::1, server 10.99.2.2 / fd99:2::2; 10.99.2.99 / fd99:2::99 exist nowhere (the router
# answers with host-unreachable errors). The router and the server are joined through a
# fourth namespace, rl-b: a plain bridge, or impair.py for the lossy recordings. The vlan
# recording's tags are added to the frames after capture.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

ALL="http http6 lossy lossy-small abort refused parallel dns ping traceroute ssh iperf vlan
any-sll2 any-sll1 pcapng one-sided-in one-sided-out half-open ftp tftp slow-reader tso
udp-stream pmtu tfo ecn no-opts port-reuse keepalive half-close simultaneous nmap hping
udp-frag ip-options frag-lossy reorder-heavy loopback client-offload sip"
if [ "${1:-}" = --list ]; then
  echo $ALL
  exit 0
fi
[ $# -ge 1 ] || { echo "usage: record_real.sh OUTDIR [NAME...] | --list" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
names=${*:-$ALL}

C="ip netns exec rl-c"
R="ip netns exec rl-r"
S="ip netns exec rl-s"
tmp=$(mktemp -d)
pids=()

teardown() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  for n in rl-c rl-r rl-s rl-b; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'teardown; rm -rf "$tmp"' EXIT

# Runs a command in the background, remembering its pid for teardown.
daemon() {
  "$@" &
  pids+=($!)
}

setup() {
  teardown
  for n in rl-c rl-r rl-s rl-b; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  # rl-b only passes frames between the router and the server: no addresses at all.
  ip netns exec rl-b sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add c0 netns rl-c type veth peer name r0 netns rl-r
  ip link add r1 netns rl-r type veth peer name b1 netns rl-b
  ip link add b0 netns rl-b type veth peer name s0 netns rl-s
  $R sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ip -n rl-c addr add 10.99.1.2/24 dev c0
  ip -n rl-c addr add fd99:1::2/64 dev c0 nodad
  ip -n rl-r addr add 10.99.1.1/24 dev r0
  ip -n rl-r addr add fd99:1::1/64 dev r0 nodad
  ip -n rl-r addr add 10.99.2.1/24 dev r1
  ip -n rl-r addr add fd99:2::1/64 dev r1 nodad
  ip -n rl-s addr add 10.99.2.2/24 dev s0
  ip -n rl-s addr add fd99:2::2/64 dev s0 nodad
  for l in "rl-c c0" "rl-r r0" "rl-r r1" "rl-b b0" "rl-b b1" "rl-s s0"; do
    set -- $l
    ip -n "$1" link set "$2" up
    # Offloads off: the capture shows wire-sized segments (the tso recording turns them on).
    ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  done
  ip -n rl-c route add default via 10.99.1.1
  ip -n rl-c -6 route add default via fd99:1::1
  ip -n rl-s route add default via 10.99.2.1
  ip -n rl-s -6 route add default via fd99:2::1
  # Content for the web and FTP servers.
  if [ ! -d "$tmp/www" ]; then
    mkdir -p "$tmp/www"
    echo "hello from the test server" > "$tmp/www/index.txt"
    for i in 1 2 3 4 5; do head -c $((i * 700)) /dev/zero | tr '\0' a > "$tmp/www/small$i.txt"; done
    head -c 40000 /dev/urandom > "$tmp/www/40k.bin"
    head -c 300000 /dev/urandom > "$tmp/www/300k.bin"
    head -c 3000000 /dev/urandom > "$tmp/www/3m.bin"
  fi
}

# link [IMPAIR-ARGS...]: joins the router and the server, through a kernel bridge or, with
# arguments, through impair.py (loss, duplication, delay, reordering).
link() {
  if [ $# -eq 0 ]; then
    ip -n rl-b link add br0 type bridge
    ip -n rl-b link set b0 master br0
    ip -n rl-b link set b1 master br0
    ip -n rl-b link set br0 up
  else
    daemon ip netns exec rl-b /usr/bin/python3 "$here/impair.py" b0 b1 "$@"
  fi
  # Neighbour entries settle before capturing.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    $C ping -c1 -W1 10.99.2.2 >/dev/null 2>&1 && break
  done
  $C ping -6 -c1 -W1 fd99:2::2 >/dev/null 2>&1 || true
  sleep 0.3
}

# cap FILE [tcpdump options...]: captures on rl-r r0 (or as the options say) into FILE.
cap() {
  local f=$1
  shift
  local opts=("$@")
  [ ${#opts[@]} -gt 0 ] || opts=(-i r0)
  $R tcpdump -s 0 -U -n --immediate-mode "${opts[@]}" -w "$f" 2>"$tmp/tcpdump.err" &
  cap_pid=$!
  # Wait until tcpdump listens.
  for _ in $(seq 50); do
    grep -q listening "$tmp/tcpdump.err" 2>/dev/null && break
    sleep 0.1
  done
  sleep 0.2
}

endcap() {
  sleep 0.5
  kill -INT "$cap_pid" 2>/dev/null || true
  [ -z "${DEBUG:-}" ] || cat "$tmp/tcpdump.err" >&2
  wait "$cap_pid" 2>/dev/null || true
}

web() {
  daemon $S python3 -m http.server --bind :: --directory "$tmp/www" 80 >/dev/null 2>&1
  sleep 1
}

rec_http() {
  web
  cap "$out/http.pcap"
  $C curl -s http://10.99.2.2/index.txt http://10.99.2.2/small1.txt \
    http://10.99.2.2/small2.txt http://10.99.2.2/missing >/dev/null
  $C curl -s -o /dev/null -I http://10.99.2.2/40k.bin
  $C wget -q -O /dev/null http://10.99.2.2/300k.bin
  $C curl -s -o /dev/null http://10.99.2.2/40k.bin
  endcap
}

rec_http6() {
  web
  cap "$out/http6.pcap"
  $C curl -s -g 'http://[fd99:2::2]/index.txt' 'http://[fd99:2::2]/small3.txt' >/dev/null
  $C wget -q -O /dev/null 'http://[fd99:2::2]/300k.bin'
  $C curl -s -o /dev/null 'http://[fd99:2::2]:81/'
  endcap
}

rec_lossy() {
  link --loss 3 --dup 2 --delay 10 --jitter 5
  web
  cap "$out/lossy.pcap"
  $C curl -s -o /dev/null --max-time 60 http://10.99.2.2/3m.bin
  $C curl -s -o /dev/null --max-time 60 'http://[fd99:2::2]/300k.bin'
  endcap
}

rec_lossy-small() {
  link --loss 5 --dup 3 --delay 5 --jitter 3
  web
  cap "$out/lossy-small.pcap"
  $C curl -s -o /dev/null --max-time 30 http://10.99.2.2/40k.bin
  $C curl -s -o /dev/null --max-time 30 'http://[fd99:2::2]/40k.bin'
  $C curl -s --max-time 30 http://10.99.2.2/small5.txt http://10.99.2.2/small4.txt >/dev/null
  endcap
}

rec_abort() {
  web
  cap "$out/abort.pcap"
  # The client gives up mid-download with unread data: its close sends a reset.
  $C curl -s -o /dev/null --limit-rate 100k --max-time 1 http://10.99.2.2/3m.bin || true
  $C curl -s -o /dev/null --limit-rate 100k --max-time 1 'http://[fd99:2::2]/3m.bin' || true
  # Killed outright.
  $C curl -s -o /dev/null --limit-rate 50k http://10.99.2.2/3m.bin &
  local p=$!
  sleep 1
  kill -9 $p 2>/dev/null || true
  wait $p 2>/dev/null || true
  endcap
}

rec_refused() {
  cap "$out/refused.pcap"
  $C curl -s --max-time 2 http://10.99.2.2:81/ || true            # RST
  $C curl -s --max-time 2 'http://[fd99:2::2]:81/' || true        # RST over IPv6
  echo hi | $C nc -u -w1 10.99.2.2 9999 || true                    # port unreachable
  echo hi | $C nc -u -w1 fd99:2::2 9999 || true
  $C curl -s --max-time 5 http://10.99.2.99/ || true              # host unreachable
  $C curl -s --max-time 5 'http://[fd99:2::99]/' || true
  $C nc -z -w1 10.99.2.2 22 23 24 25 || true
  endcap
}

rec_parallel() {
  web
  cap "$out/parallel.pcap"
  seq 1 60 | sed 's|.*|http://10.99.2.2/small2.txt|' |
    $C xargs -P 20 -n 3 curl -s -o /dev/null -o /dev/null -o /dev/null
  seq 1 30 | sed 's|.*|http://[fd99:2::2]/small1.txt|' |
    $C xargs -P 15 -n 2 curl -s -g -o /dev/null -o /dev/null
  endcap
}

dnsd() {
  local big
  big=$(printf 'v=%0200d' 0)
  daemon $S dnsmasq -k --no-resolv --no-hosts --bind-interfaces --listen-address=10.99.2.2 \
    --listen-address=fd99:2::2 --address=/www.example.test/10.99.2.2 \
    --address=/www.example.test/fd99:2::2 --mx-host=example.test,mail.example.test,10 \
    --txt-record=big.example.test,"$big","$big","$big","$big","$big","$big" \
    --txt-record=t.example.test,hello --pid-file="$tmp/dnsmasq.pid" --log-facility=/dev/null
  sleep 1
}

rec_dns() {
  dnsd
  cap "$out/dns.pcap"
  $C dig +short +tries=1 @10.99.2.2 www.example.test A
  $C dig +short +tries=1 @10.99.2.2 www.example.test AAAA
  $C dig +short +tries=1 @10.99.2.2 example.test MX
  $C dig +short +tries=1 @10.99.2.2 nothing.example.test A
  $C dig +short +tries=1 @10.99.2.2 t.example.test TXT
  $C dig +short +tries=1 +tcp @10.99.2.2 www.example.test A
  $C dig +short +tries=1 +ignore +bufsize=512 @10.99.2.2 big.example.test TXT >/dev/null
  $C dig +short +tries=1 +bufsize=512 @10.99.2.2 big.example.test TXT >/dev/null  # TC -> TCP
  $C dig +short +tries=1 @fd99:2::2 www.example.test AAAA
  $C dig +short +tries=1 +tcp @fd99:2::2 t.example.test TXT
  $C dig +short +tries=1 +timeout=1 @10.99.2.99 www.example.test || true
  $C dig +short +tries=1 +timeout=1 @10.99.2.2 -p 5353 www.example.test || true
  endcap
}

rec_ping() {
  cap "$out/ping.pcap"
  $C ping -c 3 -i 0.2 10.99.2.2 >/dev/null
  $C ping -6 -c 3 -i 0.2 fd99:2::2 >/dev/null
  $C ping -c 2 -i 0.2 -s 3000 10.99.2.2 >/dev/null
  $C ping -6 -c 2 -i 0.2 -s 3000 fd99:2::2 >/dev/null
  $C ping -c 2 -i 0.2 -t 1 10.99.2.2 >/dev/null || true           # time exceeded
  $C ping -6 -c 2 -i 0.2 -t 1 fd99:2::2 >/dev/null || true
  $C ping -c 1 -W 4 10.99.2.99 >/dev/null || true                 # host unreachable
  $C ping -6 -c 1 -W 4 fd99:2::99 >/dev/null || true
  $C ping -c 2 -i 0.2 10.99.1.1 >/dev/null
  endcap
}

rec_traceroute() {
  cap "$out/traceroute.pcap"
  $C traceroute -n -q 2 -w 1 10.99.2.2 >/dev/null || true
  $C traceroute -6 -n -q 2 -w 1 fd99:2::2 >/dev/null || true
  $C traceroute -I -n -q 2 -w 1 10.99.2.2 >/dev/null || true
  $C traceroute -T -n -q 2 -w 1 -p 80 10.99.2.2 >/dev/null || true
  $C traceroute -T -n -q 2 -w 1 -p 22 10.99.2.2 >/dev/null || true
  endcap
}

rec_ssh() {
  mkdir -p "$tmp/ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/host" </dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/user" </dev/null
  cp "$tmp/ssh/user.pub" "$tmp/ssh/authorized_keys"
  chmod 600 "$tmp/ssh/authorized_keys"
  mkdir -p /run/sshd
  daemon $S /usr/sbin/sshd -D -e -p 22 -h "$tmp/ssh/host" -o "AuthorizedKeysFile=$tmp/ssh/authorized_keys" \
    -o StrictModes=no -o PidFile=none -o UsePAM=no
  sleep 1
  local o=(-i "$tmp/ssh/user" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR)
  cap "$out/ssh.pcap"
  $C ssh "${o[@]}" root@10.99.2.2 'echo hi; head -c 100000 /dev/zero' >/dev/null || true
  $C ssh "${o[@]}" root@fd99:2::2 'uname' >/dev/null || true
  $C ssh "${o[@]}" -p 2222 root@10.99.2.2 true 2>/dev/null || true
  endcap
}

rec_iperf() {
  link --delay 20
  daemon $S iperf3 -s -1 -p 5201
  sleep 0.5
  cap "$out/iperf.pcap"
  $C iperf3 -c 10.99.2.2 -p 5201 -n 4M -w 1M >/dev/null || true
  daemon $S iperf3 -s -1 -p 5202
  sleep 0.5
  $C iperf3 -6 -c fd99:2::2 -p 5202 -R -n 4M >/dev/null || true
  daemon $S iperf3 -s -1 -p 5203
  sleep 0.5
  $C iperf3 -c 10.99.2.2 -p 5203 -u -b 2M -t 1 -l 1200 >/dev/null || true
  endcap
}

# tag IN OUT: inserts an 802.1Q tag (VLAN 10) into every Ethernet frame of IN, and a second,
# outer 802.1ad tag (VLAN 100) into every frame from the server side (this kernel has neither
# 8021q nor bridge VLAN filtering, so the tags are added after capture).
tag() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
hdr, off, out = data[:24], 24, []
while off + 16 <= len(data):
    sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    fr = data[off + 16:off + 16 + incl]
    off += 16 + incl
    tags = b"\x81\x00\x00\x0a"
    if fr[26:29] == bytes([10, 99, 2]) or fr[22:26] == bytes.fromhex("fd990002"):
        tags = b"\x88\xa8\x00\x64" + tags
    fr = fr[:12] + tags + fr[12:]
    out.append(struct.pack("<IIII", sec, usec, len(fr), orig + len(fr) - incl) + fr)
open(dst, "wb").write(hdr + b"".join(out))
PY
}

rec_vlan() {
  web
  dnsd
  cap "$tmp/plain.pcap"
  mixed
  $C ping -c 1 -s 3000 10.99.2.2 >/dev/null
  endcap
  tag "$tmp/plain.pcap" "$out/vlan.pcap"
}

mixed() {
  $C curl -s http://10.99.2.2/small1.txt http://10.99.2.2/40k.bin >/dev/null
  $C curl -s -g -o /dev/null 'http://[fd99:2::2]/small2.txt'
  $C ping -c 2 -i 0.2 10.99.2.2 >/dev/null
  $C ping -6 -c 2 -i 0.2 fd99:2::2 >/dev/null
  $C dig +short +tries=1 @10.99.2.2 www.example.test
  $C curl -s --max-time 2 http://10.99.2.2:81/ || true
  echo hi | $C nc -u -w1 10.99.2.2 9999 || true
}

rec_any-sll2() {
  web
  dnsd
  cap "$out/any-sll2.pcap" -i any -y LINUX_SLL2
  mixed
  endcap
}

rec_any-sll1() {
  web
  dnsd
  cap "$out/any-sll1.pcap" -i any -y LINUX_SLL
  mixed
  endcap
}

rec_pcapng() {
  web
  dnsd
  cap "$tmp/ng.pcap"
  mixed
  endcap
  editcap -F pcapng "$tmp/ng.pcap" "$out/pcapng.pcapng"
}

rec_one-sided-in() {
  web
  cap "$out/one-sided-in.pcap" -i r0 -Q in
  $C curl -s http://10.99.2.2/small1.txt http://10.99.2.2/40k.bin >/dev/null
  $C curl -s -g -o /dev/null 'http://[fd99:2::2]/small3.txt'
  $C ping -c 2 -i 0.2 10.99.2.2 >/dev/null
  endcap
}

rec_one-sided-out() {
  web
  cap "$out/one-sided-out.pcap" -i r0 -Q out
  $C curl -s http://10.99.2.2/small1.txt http://10.99.2.2/40k.bin >/dev/null
  $C curl -s -g -o /dev/null 'http://[fd99:2::2]/small3.txt'
  $C ping -c 2 -i 0.2 10.99.2.2 >/dev/null
  endcap
}

rec_half-open() {
  web
  # The server drops SYNs to port 82; the client drops the server's SYN-ACKs from port 80
  # for a while, so the server retransmits them; then a client that never completes.
  $S nft -f - <<'EOF'
table inet t { chain inp { type filter hook input priority 0; tcp dport 82 drop; }; }
EOF
  cap "$out/half-open.pcap"
  $C curl -s --max-time 3 http://10.99.2.2:82/ || true
  $C curl -s -g --max-time 3 'http://[fd99:2::2]:82/' || true
  $C nft -f - <<'EOF'
table inet t { chain inp { type filter hook input priority 0; tcp sport 80 tcp flags syn|ack drop; }; }
EOF
  $C curl -s -o /dev/null --max-time 4 http://10.99.2.2/small1.txt || true
  $C nft delete table inet t
  endcap
  $S nft delete table inet t
}

rec_ftp() {
  mkdir -p "$tmp/ftp"
  cp "$tmp/www/40k.bin" "$tmp/www/index.txt" "$tmp/ftp/"
  daemon $S /usr/bin/python3 -m pyftpdlib -i :: -p 21 -d "$tmp/ftp" -w
  sleep 1
  cap "$out/ftp.pcap"
  $C curl -s -o /dev/null ftp://10.99.2.2/40k.bin || true                   # passive (EPSV)
  $C curl -s -o /dev/null --disable-epsv ftp://10.99.2.2/index.txt || true  # PASV
  $C curl -s -o /dev/null -P 10.99.1.2 --disable-eprt ftp://10.99.2.2/index.txt || true  # PORT
  $C curl -s -g -o /dev/null 'ftp://[fd99:2::2]/index.txt' || true          # EPSV over IPv6
  $C curl -s -g -o /dev/null -P - 'ftp://[fd99:2::2]/index.txt' || true     # EPRT over IPv6
  endcap
}

rec_tftp() {
  mkdir -p "$tmp/tftp"
  cp "$tmp/www/40k.bin" "$tmp/tftp/"
  daemon $S in.tftpd -L -s -a :69 "$tmp/tftp"
  sleep 1
  cap "$out/tftp.pcap"
  (cd "$tmp" && $C tftp 10.99.2.2 -c get 40k.bin /dev/null) || true
  (cd "$tmp" && $C tftp 10.99.2.2 -c get missing.bin /dev/null) || true
  endcap
}

rec_slow-reader() {
  web
  cap "$out/slow-reader.pcap"
  # A reader slower than the sender: the receive window closes and zero-window probes follow.
  $C sysctl -qw net.ipv4.tcp_rmem="4096 8192 16384"
  $C curl -s -o /dev/null --limit-rate 20k --max-time 4 http://10.99.2.2/300k.bin || true
  $C sysctl -qw net.ipv4.tcp_rmem="4096 131072 6291456"
  endcap
}

rec_tso() {
  web
  # Segmentation offload on: the senders hand the router segments of many MSS.
  for l in "rl-c c0" "rl-r r0" "rl-r r1" "rl-s s0"; do
    set -- $l
    ip netns exec "$1" ethtool -K "$2" tx on >/dev/null 2>&1 || true
    ip netns exec "$1" ethtool -K "$2" tso on gso on gro on >/dev/null 2>&1 || true
  done
  cap "$out/tso.pcap"
  $C curl -s -o /dev/null http://10.99.2.2/300k.bin
  $C curl -s -o /dev/null -T "$tmp/www/300k.bin" http://10.99.2.2/upload
  endcap
}

rec_udp-stream() {
  cap "$out/udp-stream.pcap"
  # A UDP exchange that lasts past the 2-second stream rule, and one that never gets a reply.
  # A UDP echo that stops after 3 s of silence (socat is not always installed).
  daemon $S python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000))
s.settimeout(3)
while True:
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        break
    s.sendto(d, a)'
  sleep 0.3
  (for i in 1 2 3 4 5 6; do echo "ping $i"; sleep 0.6; done) | $C nc -u -w1 -p 7001 10.99.2.2 7000 || true
  (for i in 1 2 3; do echo "x $i"; sleep 0.3; done) | $C nc -u -w1 10.99.2.2 7002 || true
  endcap
}

rec_pmtu() {
  web
  # The server's link has a smaller MTU: the router answers big packets from the client with
  # fragmentation-needed / packet-too-big errors, and forwarded fragments show up for UDP.
  ip -n rl-r link set r1 mtu 1280
  ip -n rl-b link set b1 mtu 1280
  ip -n rl-b link set b0 mtu 1280
  ip -n rl-s link set s0 mtu 1280
  cap "$out/pmtu.pcap"
  head -c 30000 /dev/urandom > "$tmp/up.bin"
  $C curl -s -o /dev/null -T "$tmp/up.bin" http://10.99.2.2/up
  $C curl -s -g -o /dev/null -T "$tmp/up.bin" 'http://[fd99:2::2]/up'
  $C ping -c 2 -i 0.2 -M do -s 1400 10.99.2.2 >/dev/null
  $C ping -c 1 -M dont -s 1400 10.99.2.2 >/dev/null
  $C ping -6 -c 2 -i 0.2 -s 1400 fd99:2::2 >/dev/null
  endcap
}

rec_tfo() {
  web
  $C sysctl -qw net.ipv4.tcp_fastopen=3
  $S sysctl -qw net.ipv4.tcp_fastopen=3
  daemon $S /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, 23, 16)  # TCP_FASTOPEN queue
s.bind(("::", 7070)); s.listen(16)
while True:
    c, _ = s.accept()
    d = c.recv(1000)
    c.sendall(b"echo:" + d)
    c.close()
'
  sleep 0.5
  cap "$out/tfo.pcap"
  for a in 10.99.2.2 10.99.2.2 10.99.2.2 fd99:2::2 fd99:2::2; do
    $C /usr/bin/python3 -c '
import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
s.sendto(b"hello fast open", 0x20000000, (a, 7070))  # MSG_FASTOPEN: data in the SYN
s.recv(100); s.close()
' "$a"
    sleep 0.2
  done
  endcap
}

rec_ecn() {
  web
  $C sysctl -qw net.ipv4.tcp_ecn=1
  $S sysctl -qw net.ipv4.tcp_ecn=1
  cap "$out/ecn.pcap"
  $C curl -s -o /dev/null http://10.99.2.2/40k.bin
  $C curl -s -g -o /dev/null 'http://[fd99:2::2]/40k.bin'
  $S sysctl -qw net.ipv4.tcp_ecn=0
  $C curl -s -o /dev/null http://10.99.2.2/small1.txt
  endcap
}

rec_no-opts() {
  web
  cap "$out/no-opts.pcap"
  # No window scaling on one side, then no SACK and no timestamps, then none of them.
  $C sysctl -qw net.ipv4.tcp_window_scaling=0
  $C curl -s -o /dev/null http://10.99.2.2/300k.bin
  $C sysctl -qw net.ipv4.tcp_window_scaling=1 net.ipv4.tcp_sack=0 net.ipv4.tcp_timestamps=0
  $C curl -s -o /dev/null http://10.99.2.2/40k.bin
  $S sysctl -qw net.ipv4.tcp_window_scaling=0 net.ipv4.tcp_sack=0 net.ipv4.tcp_timestamps=0
  $C curl -s -g -o /dev/null 'http://[fd99:2::2]/300k.bin'
  endcap
}

rec_port-reuse() {
  web
  cap "$out/port-reuse.pcap"
  # The same client port again and again: the server closes first (HTTP/1.0), so each new SYN
  # meets the old entry in TIME_WAIT; then after resets and refusals.
  for i in 1 2 3; do $C curl -s -o /dev/null --local-port 40000 http://10.99.2.2/index.txt; done
  for i in 1 2; do $C curl -s -g -o /dev/null --local-port 40001 'http://[fd99:2::2]/index.txt'; done
  for i in 1 2 3; do $C curl -s --max-time 1 --local-port 40002 http://10.99.2.2:81/; done
  $C curl -s -o /dev/null --limit-rate 20k --max-time 1 --local-port 40003 http://10.99.2.2/3m.bin
  $C curl -s -o /dev/null --local-port 40003 http://10.99.2.2/index.txt
  endcap
}

rec_keepalive() {
  # A server that answers after 4 s; the client probes the idle connection every second.
  daemon $S /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7071)); s.listen(4)
while True:
    c, _ = s.accept()
    c.recv(100); time.sleep(4); c.sendall(b"late answer"); c.close()
'
  sleep 0.5
  cap "$out/keepalive.pcap"
  for a in 10.99.2.2 fd99:2::2; do
    $C /usr/bin/python3 -c '
import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.connect((a, 7071)); s.sendall(b"question"); s.recv(100); s.close()
' "$a"
  done
  endcap
}

rec_half-close() {
  # The client half-closes after its request; the server keeps sending for a while.
  daemon $S /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7072)); s.listen(4)
while True:
    c, _ = s.accept()
    while c.recv(100): pass
    for i in range(5):
        c.sendall(b"x" * 3000); time.sleep(0.2)
    c.close()
'
  sleep 0.5
  cap "$out/half-close.pcap"
  echo request | $C nc -N 10.99.2.2 7072 >/dev/null
  echo request | $C nc -N fd99:2::2 7072 >/dev/null
  endcap
}

rec_simultaneous() {
  link --delay 50
  cap "$out/simultaneous.pcap"
  # Both ends connect to each other at the same moment: the SYNs cross in the bridge.
  local prog='
import socket, sys, time
fam, me, peer = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((me, 6000))
time.sleep(float(sys.argv[4]) - time.time())
s.settimeout(5)
try:
    s.connect((peer, 6000)); s.sendall(b"hi from " + me.encode()); s.recv(100)
except OSError as e:
    print(e)
s.close()
'
  local at
  at=$(python3 -c 'import time; print(time.time() + 1)')
  $C /usr/bin/python3 -c "$prog" 4 10.99.1.2 10.99.2.2 "$at" &
  local p=$!
  $S /usr/bin/python3 -c "$prog" 4 10.99.2.2 10.99.1.2 "$at"
  wait $p
  at=$(python3 -c 'import time; print(time.time() + 1)')
  $C /usr/bin/python3 -c "$prog" 6 fd99:1::2 fd99:2::2 "$at" &
  p=$!
  $S /usr/bin/python3 -c "$prog" 6 fd99:2::2 fd99:1::2 "$at"
  wait $p
  endcap
}

rec_nmap() {
  web
  cap "$out/nmap.pcap"
  local n=(nmap -n -Pn --max-retries 1 --host-timeout 20s -T4)
  $C "${n[@]}" -sS -p 20-25,79-81,443 10.99.2.2 >/dev/null
  $C "${n[@]}" -sT -p 22,80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sF -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sX -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sN -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sA -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sW -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sM -p 80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -sU -p 53,123,161 10.99.2.2 >/dev/null  # not 69: the TFTP helper
  $C "${n[@]}" -sO -p 1,2,4,6,17,41,47,50,51,58,132,136 10.99.2.2 >/dev/null
  $C "${n[@]}" -sY -p 80,5060 10.99.2.2 >/dev/null
  $C "${n[@]}" -sZ -p 80 10.99.2.2 >/dev/null
  $C nmap -n -sn -PE -PP -PM -PS80 -PA80 -PU53 -PY80 -PO 10.99.2.2 >/dev/null
  $C "${n[@]}" -O --osscan-guess -p 22,80,81 10.99.2.2 >/dev/null
  $C "${n[@]}" -6 -sS -p 22,80,81 fd99:2::2 >/dev/null
  $C "${n[@]}" -6 -sU -p 53,123 fd99:2::2 >/dev/null
  endcap
}

rec_hping() {
  web
  cap "$out/hping.pcap"
  local h=(hping3 -q -c 2 -i u200000)
  $C "${h[@]}" -S -p 80 10.99.2.2
  $C "${h[@]}" -S -p 80 -d 100 10.99.2.2               # SYN with data
  $C "${h[@]}" -SF -p 80 10.99.2.2                     # SYN|FIN
  $C "${h[@]}" -SR -p 80 10.99.2.2
  $C "${h[@]}" -F -p 80 10.99.2.2
  $C "${h[@]}" -X -Y -S -p 80 10.99.2.2                # SYN with ECE|CWR
  $C "${h[@]}" -FPU -p 80 10.99.2.2                    # Xmas
  $C "${h[@]}" -A -p 80 10.99.2.2
  $C "${h[@]}" -R -p 80 10.99.2.2
  $C "${h[@]}" -p 80 10.99.2.2                         # no flags
  $C "${h[@]}" -S -p 80 -f -d 40 10.99.2.2             # fragmented SYN
  $C "${h[@]}" --icmp --icmptype 13 10.99.2.2           # timestamp
  $C "${h[@]}" --icmp --icmptype 17 10.99.2.2           # address mask
  $C "${h[@]}" --icmp --icmptype 15 10.99.2.2           # information request
  $C "${h[@]}" --icmp --icmptype 0 10.99.2.2            # echo reply, unsolicited
  $C "${h[@]}" --icmp --icmptype 3 --icmpcode 3 10.99.2.2  # error quoting nothing known
  $C "${h[@]}" --udp -p 53 -d 30 10.99.2.2
  $C "${h[@]}" --rawip -H 47 -d 20 10.99.2.2            # GRE
  $C "${h[@]}" --rawip -H 132 -d 20 10.99.2.2           # SCTP, garbage
  $C "${h[@]}" --rawip -H 99 -d 20 10.99.2.2
  endcap
}

rec_udp-frag() {
  # EDNS answers bigger than the MTU arrive as IPv4 and IPv6 fragments.
  local big
  big=$(printf 'v=%0240d' 0)
  daemon $S dnsmasq -k --no-resolv --no-hosts --bind-interfaces --listen-address=10.99.2.2 \
    --listen-address=fd99:2::2 --edns-packet-max=4096 \
    --txt-record=big.example.test,"$big","$big","$big","$big","$big","$big","$big","$big","$big","$big","$big","$big" \
    --pid-file="$tmp/dnsmasq.pid" --log-facility=/dev/null
  sleep 1
  cap "$out/udp-frag.pcap"
  $C dig +short +tries=1 +bufsize=4096 @10.99.2.2 big.example.test TXT >/dev/null
  $C dig +short +tries=1 +bufsize=4096 @fd99:2::2 big.example.test TXT >/dev/null
  $C dig +short +tries=1 +bufsize=4096 @10.99.2.2 big.example.test TXT >/dev/null
  endcap
}

rec_ip-options() {
  web
  cap "$out/ip-options.pcap"
  $C ping -c 2 -i 0.2 -R 10.99.2.2 >/dev/null
  $C ping -c 2 -i 0.2 -T tsonly 10.99.2.2 >/dev/null
  $C ping -c 2 -i 0.2 -T tsandaddr 10.99.2.2 >/dev/null
  $C hping3 -q -c 2 -i u200000 -S -p 80 --rroute 10.99.2.2
  $C hping3 -q -c 2 -i u200000 --udp -p 53 --lsrr 10.99.2.2 10.99.2.2
  endcap
}

rec_frag-lossy() {
  # Fragments lost, duplicated and reordered on the way back from the server.
  link --loss 5 --dup 20 --delay 10 --jitter 9 --seed 7
  cap "$out/frag-lossy.pcap"
  $C ping -c 6 -i 0.3 -W 1 -s 3000 10.99.2.2 >/dev/null
  $C ping -6 -c 6 -i 0.3 -W 1 -s 3000 fd99:2::2 >/dev/null
  $C ping -c 4 -i 0.3 -W 1 -s 6000 10.99.2.2 >/dev/null
  $C ping -6 -c 4 -i 0.3 -W 1 -s 6000 fd99:2::2 >/dev/null
  endcap
}

rec_reorder-heavy() {
  # Heavy reordering and duplication, some loss: out-of-order segments, SACK blocks, D-SACK,
  # spurious retransmissions.
  link --loss 2 --dup 10 --delay 15 --jitter 14 --seed 11
  web
  cap "$out/reorder-heavy.pcap"
  $C curl -s -o /dev/null --max-time 30 http://10.99.2.2/300k.bin
  $C curl -s -g -o /dev/null --max-time 30 'http://[fd99:2::2]/300k.bin'
  $C curl -s -o /dev/null --max-time 30 -T "$tmp/www/300k.bin" http://10.99.2.2/up
  endcap
}

rec_loopback() {
  # Client and server on one host, captured on every interface (cooked v2): each packet on lo
  # shows up twice, once leaving and once arriving.
  daemon $C python3 -m http.server --bind :: --directory "$tmp/www" 8080 >/dev/null 2>&1
  sleep 1
  $C ip link set lo up
  $C tcpdump -s 0 -U -n --immediate-mode -i any -w "$out/loopback.pcap" 2>"$tmp/tcpdump.err" &
  cap_pid=$!
  sleep 1
  $C curl -s -o /dev/null http://127.0.0.1:8080/small1.txt
  $C curl -s -o /dev/null http://127.0.0.1:8080/40k.bin
  $C curl -s -o /dev/null -g 'http://[::1]:8080/small2.txt'
  $C curl -s -o /dev/null http://127.0.0.1:8081/
  $C ping -c 2 -i 0.2 127.0.0.1 >/dev/null
  $C dig +short +tries=1 +timeout=1 @127.0.0.1 example.test >/dev/null
  endcap
}

rec_client-offload() {
  # Captured on the client itself with segmentation and checksum offload on, as on a desktop:
  # outgoing segments bigger than the MTU with unfinished checksums.
  web
  $C ethtool -K c0 tx on >/dev/null 2>&1
  $C ethtool -K c0 tso on gso on gro on >/dev/null 2>&1
  $R ethtool -K r0 tx on >/dev/null 2>&1
  $R ethtool -K r0 tso on gso on gro on >/dev/null 2>&1
  $S ethtool -K s0 tx on >/dev/null 2>&1
  $S ethtool -K s0 tso on gso on gro on >/dev/null 2>&1
  $C tcpdump -s 0 -U -n --immediate-mode -i c0 -w "$out/client-offload.pcap" 2>"$tmp/tcpdump.err" &
  cap_pid=$!
  sleep 1
  head -c 100000 /dev/urandom > "$tmp/up.bin"
  $C curl -s -o /dev/null -T "$tmp/up.bin" http://10.99.2.2/up
  $C curl -s -o /dev/null http://10.99.2.2/40k.bin
  $C curl -s -g -o /dev/null -T "$tmp/up.bin" 'http://[fd99:2::2]/up'
  endcap
}

# sip_scenarios DIR: writes the sipp scenarios rec_sip needs besides the built-in ones.
#   reg-server.xml   a registrar: 200 OK to any REGISTER, the Contact sent back with
#                    ;expires= set to the request's Expires header (0 unregisters)
#   register.xml     REGISTER with a Contact and Expires: 300, expecting 200 OK
#   unregister.xml   register.xml, then the same binding again with Expires: 0
#   uac-dtmf.xml     uac_pcap with only its short RFC 2833 event as media (the g711a stream is
#                    73 KB a direction: once is enough), SDP c= from [media_ip]
#   uac-dtmf-b.xml   the same with c= from [local_ip] as uac_pcap writes it: for IPv6 that is
#                    the bracketed "c=IN IP6 [fd99:1::2]", which the kernel's helper cannot parse
sip_scenarios() {
  local d=$1
  # A second REGISTER of the same Call-ID (the unregistration) is answered within the call.
  local answer='
  <recv request="REGISTER"TIMEOUT>
    <action>
      <ereg regexp="Expires: *([0-9]+)" search_in="msg" check_it="true" assign_to="all,exp"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=[$exp]
      Content-Length: 0

    ]]></send>'
  {
    echo '<?xml version="1.0" encoding="ISO-8859-1" ?>'
    echo '<scenario name="registrar">'
    echo "$answer" | sed 's/TIMEOUT//'
    echo "$answer" | sed 's/TIMEOUT/ timeout="2000" ontimeout="done"/'
    echo '  <label id="done"/>'
    echo '  <Reference variables="all"/>'
    echo '</scenario>'
  } >"$d/reg-server.xml"
  local reg='
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@[remote_ip]:[remote_port]>;tag=[pid]reg[call_number]
      To: <sip:alice@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: CSEQ REGISTER
      Contact: <sip:alice@[local_ip]:[local_port]>
      Expires: EXPIRES
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>'
  local head='<?xml version="1.0" encoding="ISO-8859-1" ?>'
  {
    echo "$head"
    echo '<scenario name="register">'
    echo "$reg" | sed 's/CSEQ/1/; s/EXPIRES/300/'
    echo '</scenario>'
  } >"$d/register.xml"
  {
    echo "$head"
    echo '<scenario name="unregister">'
    echo "$reg" | sed 's/CSEQ/1/; s/EXPIRES/300/'
    echo '  <pause milliseconds="300"/>'
    echo "$reg" | sed 's/CSEQ/2/; s/EXPIRES/0/'
    echo '</scenario>'
  } >"$d/unregister.xml"
  local call='<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with a DTMF event">
  <send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Subject: Performance Test
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] CADDR
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-11,16

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Subject: Performance Test
      Content-Length: 0

    ]]></send>
  <nop>
    <action>
      <exec play_pcap_audio="DIR/pcap/dtmf_2833_1.pcap"/>
    </action>
  </nop>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Subject: Performance Test
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
</scenario>'
  echo "$call" | sed "s|CADDR|[media_ip]|; s|DIR|$d|" >"$d/uac-dtmf.xml"
  echo "$call" | sed "s|CADDR|[local_ip]|; s|DIR|$d|" >"$d/uac-dtmf-b.xml"
}

rec_sip() {
  # sipp's built-in uac_pcap plays pcap/g711a.pcap and pcap/dtmf_2833_1.pcap, relative to the
  # working directory: Debian installs them under /usr/share/sip-tester.
  local d=$tmp/sip p
  mkdir -p "$d/pcap"
  ln -sf /usr/share/sip-tester/g711a.pcap /usr/share/sip-tester/dtmf_2833_1.pcap "$d/pcap/"
  sip_scenarios "$d"
  cd "$d"
  local q=(-nostdin -timeout 30s -timeout_error)
  # UASes on 5060 that echo the RTP reaching their media port 6000 back to its sender.
  daemon $S sipp -sn uas -i 10.99.2.2 -p 5060 -rtp_echo -nostdin >/dev/null 2>&1
  p=$!
  daemon $S sipp -sn uas -i fd99:2::2 -p 5060 -rtp_echo -nostdin >/dev/null 2>&1
  sleep 1
  cap "$out/sip.pcap"
  # uac_pcap as shipped: 8 s of G.711 then a DTMF event, RTP 10.99.1.2:6000 <-> 10.99.2.2:6000.
  $C sipp -sn uac_pcap -i 10.99.1.2 -p 5061 -m 1 "${q[@]}" 10.99.2.2:5060 >/dev/null 2>&1
  # Two plain calls without media from one port, the second INVITE before the first BYE.
  $C sipp -sn uac -i 10.99.1.2 -p 5062 -mp 6010 -m 2 -r 10 -d 300 "${q[@]}" 10.99.2.2:5060 \
    >/dev/null 2>&1
  # IPv6: a call whose SDP the helper reads, RTP both ways, then one with uac_pcap's bracketed
  # c= address (the kernel's helper drops that INVITE: "cannot parse SDP message").
  $C sipp -sf uac-dtmf.xml -i fd99:1::2 -p 5061 -m 1 "${q[@]}" '[fd99:2::2]:5060' >/dev/null 2>&1
  $C sipp -sf uac-dtmf-b.xml -i fd99:1::2 -p 5063 -mp 6100 -m 1 "${q[@]}" '[fd99:2::2]:5060' \
    >/dev/null 2>&1
  # A registrar on 10.99.2.2:5060 in place of the UAS.
  kill "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  daemon $S sipp -sf reg-server.xml -i 10.99.2.2 -p 5060 -nostdin >/dev/null 2>&1
  sleep 0.5
  # Registered from 5064, then called there by the server from 5070: the kernel expects that
  # call (sip/signalling) and tracks it with the SIP helper; its media is a DTMF event each way.
  $C sipp -sf register.xml -i 10.99.1.2 -p 5064 -m 1 "${q[@]}" 10.99.2.2:5060 >/dev/null 2>&1
  daemon $C sipp -sn uas -i 10.99.1.2 -p 5064 -mp 6020 -rtp_echo -nostdin >/dev/null 2>&1
  sleep 0.5
  $S sipp -sf uac-dtmf.xml -i 10.99.2.2 -p 5070 -mp 6030 -m 1 "${q[@]}" 10.99.1.2:5064 \
    >/dev/null 2>&1
  # Registered from 5066 and unregistered: the response with ;expires=0 removes the expectation.
  $C sipp -sf unregister.xml -i 10.99.1.2 -p 5066 -m 1 "${q[@]}" 10.99.2.2:5060 >/dev/null 2>&1
  endcap
  cd /
}

for rec in $names; do
  setup
  case $rec in lossy* | iperf | simultaneous | frag-lossy | reorder-heavy) ;; *) link ;; esac
  echo "record: $rec" >&2
  # Failing clients are part of the traffic (refused, unreachable, timed out).
  set +e
  "rec_$rec"
  set -e
  teardown
done
ls -la "$out" >&2
