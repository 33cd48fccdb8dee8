"""Foundation scenarios: UDP, ICMP echo, generic and GRE flows, link types, IPv6 extension
headers, fragments, the host's routing step, malformed layer-3/4 headers, pcapng input."""
import struct

from ctgen import scenario
from scapy.all import (  # noqa: F401
    AH, ESP, GRE, ICMP, IP, UDP, Dot1Q, Dot1AD, Ether, ICMPv6EchoReply, ICMPv6EchoRequest,
    IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw,
    fragment, fragment6, raw,
)

A, B, C = "10.1.0.1", "10.1.0.2", "10.1.0.3"
A6, B6 = "2001:db8:1::1", "2001:db8:1::2"


def udp(src, dst, sport, dport, payload=b"x", **kw):
    return IP(src=src, dst=dst, **kw) / UDP(sport=sport, dport=dport) / payload


def udp6(src, dst, sport, dport, payload=b"x"):
    return IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


@scenario("udp/request-response")
def _():
    return [udp(A, B, 40000, 53, b"q1"), udp(B, A, 53, 40000, b"r1"),
            udp(A, B, 40000, 53, b"q2"), udp(B, A, 53, 40000, b"r2"),
            udp(A, B, 40001, 123, b"ntp"), udp(B, A, 123, 40001, b"ntp")]


@scenario("udp/one-sided")
def _():
    return [udp(A, C, 5000 + (i % 3), 514, b"syslog %d" % i) for i in range(9)]


@scenario("udp/dns-burst")
def _():
    out = []
    for i in range(40):
        out.append(udp("10.2.0.%d" % (1 + i % 5), "10.2.1.53", 30000 + i, 53, b"query"))
    for i in range(0, 40, 3):  # about a third answered, out of order
        out.append(udp("10.2.1.53", "10.2.0.%d" % (1 + i % 5), 53, 30000 + i, b"answer"))
    for i in range(0, 40, 6):  # retries on answered and unanswered flows
        out.append(udp("10.2.0.%d" % (1 + i % 5), "10.2.1.53", 30000 + i, 53, b"retry"))
    return out


@scenario("udp/repeated-originals")
def _():
    out = [udp(A, B, 41000, 9999, b"o%d" % i) for i in range(4)]
    out.append(udp(B, A, 9999, 41000, b"first reply"))
    out += [udp(A, B, 41000, 9999, b"after"), udp(B, A, 9999, 41000, b"r"),
            udp(B, A, 9999, 41000, b"r")]
    # The reply tuple seen first: it starts its own connection in that direction.
    out += [udp(C, A, 7777, 41001, b"unsolicited"), udp(A, C, 41001, 7777, b"answer")]
    return out


@scenario("udp/udplite")
def _():
    def lite(src, dst, sp, dp, cov, payload=b"lite"):
        p = IP(src=src, dst=dst, proto=136) / UDP(sport=sp, dport=dp, len=cov) / payload
        return p
    return [lite(A, B, 1000, 2000, 8), lite(B, A, 2000, 1000, 0), lite(A, B, 1000, 2000, 12),
            lite(A, B, 1001, 2001, 3), lite(A, B, 1002, 2002, 200)]


@scenario("udp/malformed")
def _():
    good = udp(A, B, 42000, 4242, b"payload")
    short = IP(src=A, dst=B, proto=17) / Raw(b"\x01\x02\x03")
    ports_only = IP(src=A, dst=B, proto=17) / Raw(b"\xa4\x10\x10\x92\x00\x08")
    long_len = IP(src=A, dst=B) / UDP(sport=42000, dport=4242, len=200) / b"short"
    tiny_len = IP(src=A, dst=B) / UDP(sport=42000, dport=4242, len=4) / b"x"
    zero_csum = IP(src=A, dst=B) / UDP(sport=42001, dport=4243, chksum=0) / b"nocsum"
    bad_csum = IP(src=A, dst=B) / UDP(sport=42002, dport=4244, chksum=0x1234) / b"bad"
    return [good, short, ports_only, long_len, tiny_len, zero_csum, bad_csum,
            udp(B, A, 4242, 42000, b"reply")]


@scenario("icmp/echo-v4")
def _():
    out = []
    for seq in range(3):
        out.append(IP(src=A, dst=B) / ICMP(type=8, id=0x1234, seq=seq) / b"ping")
        out.append(IP(src=B, dst=A) / ICMP(type=0, id=0x1234, seq=seq) / b"ping")
    out.append(IP(src=A, dst=B) / ICMP(type=8, id=0x1234, seq=9) / b"dup")
    out.append(IP(src=B, dst=A) / ICMP(type=0, id=0x1234, seq=9) / b"dup")
    out.append(IP(src=B, dst=A) / ICMP(type=0, id=0x1234, seq=9) / b"dup again")
    # Reply with no request, a second identifier, other query types and their answers.
    out.append(IP(src=C, dst=A) / ICMP(type=0, id=0x99, seq=1))
    out.append(IP(src=A, dst=C) / ICMP(type=8, id=0x55, seq=1))
    # (Timestamps of 0: scapy's default is the time the scenario is built.)
    out.append(IP(src=A, dst=C) / ICMP(type=13, id=0x56, ts_ori=0, ts_rx=0, ts_tx=0))
    out.append(IP(src=C, dst=A) / ICMP(type=14, id=0x56, ts_ori=0, ts_rx=0, ts_tx=0))
    out.append(IP(src=A, dst=C) / ICMP(type=17, id=0x57))
    out.append(IP(src=A, dst=C) / ICMP(type=15, id=0x58))
    out.append(IP(src=C, dst=A) / ICMP(type=16, id=0x58))
    # Types that are neither query nor error, and beyond the known range.
    out.append(IP(src=A, dst=C) / ICMP(type=9))
    out.append(IP(src=A, dst=C) / ICMP(type=10))
    out.append(IP(src=A, dst=C) / ICMP(type=42))
    # A truncated header and an echo with a non-zero code answered with another code.
    out.append(IP(src=A, dst=C, proto=1) / Raw(b"\x08\x00\x00"))
    out.append(IP(src=A, dst=C) / ICMP(type=8, code=5, id=0x60))
    out.append(IP(src=C, dst=A) / ICMP(type=0, code=0, id=0x60))
    out.append(IP(src=C, dst=A) / ICMP(type=0, code=5, id=0x60))
    return out


@scenario("icmp/echo-v6")
def _():
    out = []
    for seq in range(3):
        out.append(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=0x4321, seq=seq, data=b"ping"))
        out.append(IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=0x4321, seq=seq, data=b"ping"))
    out.append(IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=0x77, seq=1))
    out.append(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=0x78, seq=1))
    # Node information query (139) and its reply (140), then an unassigned type.
    out.append(IPv6(src=A6, dst=B6, nh=58) / Raw(b"\x8b\x00\x00\x00" + b"\x00\x02\x00\x00" + b"\x00" * 8))
    out.append(IPv6(src=B6, dst=A6, nh=58) / Raw(b"\x8c\x00\x00\x00" + b"\x00\x02\x00\x00" + b"\x00" * 8))
    out.append(IPv6(src=A6, dst=B6, nh=58) / Raw(b"\xc8\x00\x00\x00\x00\x01\x00\x01"))
    # Neighbour solicitation and MLD report: untracked.
    out.append(IPv6(src=A6, dst="ff02::1:ff00:2", nh=58, hlim=255) / Raw(b"\x87\x00\x00\x00\x00\x00\x00\x00" + bytes(16)))
    out.append(IPv6(src=A6, dst="ff02::16", nh=58) / Raw(b"\x8f\x00\x00\x00\x00\x00\x00\x00"))
    # ICMPv4 inside IPv6 and ICMPv6 inside IPv4 are nobody's business.
    out.append(IPv6(src=A6, dst=B6, nh=1) / Raw(b"\x08\x00\x00\x00\x00\x01\x00\x01"))
    out.append(IP(src=A, dst=B, proto=58) / Raw(b"\x80\x00\x00\x00\x00\x01\x00\x01"))
    return out


@scenario("generic/unknown-protocols")
def _():
    out = []
    for proto in (50, 89, 103, 253, 4, 41, 33):
        out.append(IP(src=A, dst="10.3.0.%d" % (proto % 250), proto=proto) / Raw(b"\x00" * 24))
    out.append(IP(src="10.3.0.50", dst=A, proto=50) / Raw(b"\x00" * 24))
    out.append(IP(src=A, dst="10.3.0.50", proto=50) / Raw(b"\x01" * 24))
    out.append(IPv6(src=A6, dst=B6, nh=50) / Raw(b"\x00" * 24))
    out.append(IPv6(src=B6, dst=A6, nh=50) / Raw(b"\x00" * 24))
    out.append(IP(src=A, dst=B, proto=2) / Raw(b"\x11\x64\xee\x9b\x00\x00\x00\x00"))
    return out


def gre1(src, dst, proto, call, payload=b"ppp!", hdr=None):
    h = hdr if hdr is not None else struct.pack("!BBHHH", 0x30, 0x81, proto, len(payload), call)
    return IP(src=src, dst=dst, proto=47) / Raw(h + payload)


@scenario("generic/gre")
def _():
    return [
        IP(src=A, dst=B) / GRE(proto=0x0800) / IP(src="192.168.0.1", dst="192.168.0.2") / UDP(),
        IP(src=B, dst=A) / GRE(proto=0x0800) / IP(src="192.168.0.2", dst="192.168.0.1") / UDP(),
        IP(src=A, dst=B) / GRE(proto=0x0800, key_present=1, key=77) / b"keyed v0",
        # Version 1 (PPTP) with PPP payload: keyed by call ID, one flow per call and direction.
        gre1(A, C, 0x880b, 0x2a),
        gre1(C, A, 0x880b, 0x11),
        gre1(A, C, 0x880b, 0x2a, b"more"),
        # Version 1 carrying something other than PPP, and a v1 header cut at 6 bytes.
        gre1(A, C, 0x0800, 0x2b),
        gre1(A, "10.1.0.9", 0x880b, 0, b"", hdr=bytes([0x30, 0x81, 0x88, 0x0b, 0x00, 0x04])),
    ]


def vlan_frames():
    base = udp("10.4.0.1", "10.4.0.2", 1111, 2222, b"tagged")
    rep = udp("10.4.0.2", "10.4.0.1", 2222, 1111, b"tagged")
    e = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        Ether(**e) / Dot1Q(vlan=10) / base,
        Ether(**e) / Dot1Q(vlan=10) / rep,
        Ether(**e, type=0x88a8) / Dot1AD(vlan=100) / Dot1Q(vlan=20) / base,
        Ether(**e) / Dot1Q(vlan=30) / IPv6(src=A6, dst=B6) / UDP(sport=3, dport=4) / b"v6",
        Ether(**e) / Dot1Q(vlan=30) / Raw(b"\x08\x06" + bytes(28)),  # ARP inside a tag
        Ether(**e, type=0x0806) / Raw(bytes(28)),  # plain ARP
        Ether(**e, type=0x88cc) / Raw(bytes(30)),  # LLDP
    ]


@scenario("link/vlan")
def _():
    return vlan_frames()


def mixed_ip():
    return [udp("10.5.0.1", "10.5.0.2", 5353, 9000, b"a"), udp("10.5.0.2", "10.5.0.1", 9000, 5353, b"b"),
            IPv6(src=A6, dst=B6) / UDP(sport=7, dport=8) / b"c",
            IP(src="10.5.0.1", dst="10.5.0.2") / ICMP(type=8, id=3),
            IP(src="10.5.0.2", dst="10.5.0.1") / ICMP(type=0, id=3)]


@scenario("link/raw-ip", link="raw")
def _():
    return mixed_ip()


@scenario("link/raw-ipv4", link="raw4")
def _():
    return mixed_ip()[:2] + mixed_ip()[3:]


@scenario("link/raw-ipv6", link="raw6")
def _():
    return [IPv6(src=A6, dst=B6) / UDP(sport=7, dport=8) / b"c", IPv6(src=B6, dst=A6) / UDP(sport=8, dport=7) / b"d"]


@scenario("link/bsd-loopback", link="null")
def _():
    return mixed_ip()


@scenario("link/linux-cooked", link="sll")
def _():
    return mixed_ip()


@scenario("link/linux-cooked-v2", link="sll2")
def _():
    return mixed_ip()


@scenario("link/pcapng", fmt="pcapng")
def _():
    return mixed_ip() + vlan_frames()[:3]


@scenario("link/pcapng-big-endian", fmt="pcapng-be")
def _():
    # As a big-endian machine writes pcapng: every block's fields in that order.
    return mixed_ip() + vlan_frames()[:3] + [udp("10.7.0.2", "10.7.0.1", 53, 40000, b"r")]


@scenario("link/short-and-odd-frames")
def _():
    e = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    good = udp("10.6.0.1", "10.6.0.2", 1, 2, b"ok")
    return [
        Ether(**e) / good,
        Ether(**e, type=0x0800) / Raw(raw(good)[:12]),             # IP header cut short
        Ether(**e, type=0x0800) / Raw(b"\x55" + raw(good)[1:]),     # version 5
        Ether(**e, type=0x86dd) / Raw(raw(good)),                   # IPv4 under the IPv6 type
        Ether(**e, type=0x0800) / Raw(raw(IPv6(src=A6, dst=B6) / UDP(sport=1, dport=2))),
        Ether(**e, type=0x0800) / Raw(raw(good)[:24]),              # total length past the end
        Ether(**e) / IP(src="10.6.0.1", dst="10.6.0.2", ihl=4) / UDP(sport=1, dport=2),
        Ether(**e) / IP(src="10.6.0.1", dst="10.6.0.2", chksum=0x1111) / UDP(sport=1, dport=2),
        Ether(**e) / IP(src="10.6.0.1", dst="10.6.0.2", options=[b"\x01\x01\x01\x00"]) / UDP(sport=3, dport=4),
        Ether(**e) / Raw(raw(good) + b"\x00" * 20),                 # padded
        Ether(**e, type=0x0800) / Raw(b""),
    ]


@scenario("ipv6/extension-headers")
def _():
    S, D = "2001:db8:6::1", "2001:db8:6::2"
    return [
        IPv6(src=S, dst=D) / IPv6ExtHdrHopByHop() / UDP(sport=10, dport=20) / b"hbh",
        IPv6(src=D, dst=S) / IPv6ExtHdrDestOpt() / UDP(sport=20, dport=10) / b"dst",
        IPv6(src=S, dst=D) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=[]) / UDP(sport=11, dport=21) / b"chain",
        IPv6(src=S, dst=D) / IPv6ExtHdrFragment(offset=0, m=0, id=5) / UDP(sport=12, dport=22) / b"atomic",
        IPv6(src=S, dst=D) / AH(nh=17, payloadlen=4, spi=1, icv=b"\x00" * 12) / UDP(sport=13, dport=23) / b"ah",
        IPv6(src=S, dst=D) / IPv6ExtHdrDestOpt(nh=59),
        IPv6(src=S, dst=D, nh=59),
        IPv6(src=S, dst=D) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(id=9),
        IPv6(src=D, dst=S) / IPv6ExtHdrDestOpt() / ICMPv6EchoReply(id=9),
        IPv6(src=S, dst=D) / IPv6ExtHdrDestOpt(nh=59) / Raw(b"\x00" * 30),  # data after "no next header"
        IPv6(src=S, dst=D) / IPv6ExtHdrDestOpt(nh=17, len=6) / UDP(sport=14, dport=24),  # header runs past the end
    ]


@scenario("ipv6/fragment-header-cut-short")
def _():
    """A fragment header that the payload length cuts short (the frame itself holds all of it
    and more): reassembly lets the packet through as it is, and the tracker takes the header's
    next header and offset (its first four bytes) as a first fragment's, with the upper-layer
    header past the end. Generic protocols are then tracked; UDP is invalid; fewer than four
    bytes, or a nonzero offset, and the oracle sees no packet come out (dropped)."""
    S, D = "2001:db8:6::11", "2001:db8:6::12"

    def cut(nh, ext, plen):
        return IPv6(src=S, dst=D, nh=nh, plen=plen) / Raw(ext)

    def frag(nh, off_m, ident):
        return struct.pack("!BBHI", nh, 0, off_m, ident)

    routing = struct.pack("!BBBBI", 44, 0, 0, 0, 0)
    udp_hdr = struct.pack("!HHHH", 53, 53, 16, 0)
    return [
        cut(43, routing + frag(99, 1, 0x11) + b"\xb3" * 8, 14),  # 6 bytes, after a routing header
        cut(44, frag(98, 1, 0x12) + b"\xb3" * 8, 6),            # 6 bytes, first header
        cut(43, routing + frag(17, 1, 0x13) + udp_hdr, 14),      # UDP: no header left
        cut(43, routing + frag(97, 1, 0x14) + b"\xb3" * 8, 12),  # 4 bytes
        cut(43, routing + frag(96, 0, 0x15) + b"\xb3" * 8, 14),  # no more fragments
        cut(44, frag(95, 1, 0x16) + b"\xb3" * 8, 7),             # 7 bytes
        cut(43, routing + frag(94, 1, 0x17) + b"\xb3" * 8, 11),  # 3 bytes: dropped
        cut(43, routing + frag(93, 8 | 1, 0x18) + b"x" * 8, 14),  # offset 8: dropped
        cut(44, frag(92, 0x10, 0x19) + b"x" * 8, 6),             # offset 16, last: dropped
        IPv6(src=S, dst=D) / IPv6ExtHdrFragment(offset=0, m=0, id=0x20) / UDP(sport=12, dport=22) / b"whole",
    ]


@scenario("ip/fragments")
def _():
    big = IP(src="10.7.0.1", dst="10.7.0.2", id=0x77) / UDP(sport=7000, dport=7001) / (b"A" * 3000)
    f = fragment(big, fragsize=1200)
    big2 = IP(src="10.7.0.2", dst="10.7.0.1", id=0x78) / UDP(sport=7001, dport=7000) / (b"B" * 2000)
    g = fragment(big2, fragsize=800)
    big3 = IP(src="10.7.0.1", dst="10.7.0.3", id=0x79) / ICMP(type=8, id=1) / (b"C" * 2000)
    h = fragment(big3, fragsize=1000)
    ov = IP(src="10.7.0.1", dst="10.7.0.4", id=0x80) / UDP(sport=1, dport=2) / (b"D" * 100)
    o = fragment(ov, fragsize=48)
    b6 = IPv6(src="2001:db8:7::1", dst="2001:db8:7::2") / IPv6ExtHdrFragment(id=0x1234) / UDP(sport=5, dport=6) / (b"E" * 2500)
    v6 = fragment6(b6, 1000)
    out = list(f)                       # in order
    out += [g[2], g[0], g[1], g[1]]     # out of order, with a duplicate
    out += [h[0], h[1], h[2]]
    out += [o[0], IP(src="10.7.0.1", dst="10.7.0.4", id=0x80, flags=1, frag=3, proto=17) / (b"Z" * 24), o[1], o[2]]
    out += list(v6)
    out += [udp("10.7.0.1", "10.7.0.2", 7000, 7001, b"unfragmented")]
    return out


def frag4(src, dst, ident, sport, dport, size, pieces):
    """An IPv4 UDP datagram with `size` bytes of payload cut into `pieces` fragments."""
    dg = IP(src=src, dst=dst, id=ident) / UDP(sport=sport, dport=dport) / (b"F" * size)
    f = fragment(dg, fragsize=(size + 8 + pieces - 1) // pieces + 7 & ~7)
    assert len(f) == pieces, (len(f), pieces)
    return f


@scenario("ip/fragments-far")
def _():
    """net.ipv4.ipfrag_max_dist (64): a datagram whose next fragment comes after more than 64
    other fragments from its source starts over from that fragment."""
    out = []
    # At the limit: 63 other first fragments between a datagram's two (64 counted): whole.
    a = frag4("10.9.1.1", "10.9.0.1", 1000, 100, 200, 64, 2)
    out += [a[0]] + [frag4("10.9.1.1", "10.9.0.1", 2000 + i, 101, 201, 64, 2)[0] for i in range(63)] + [a[1]]
    # One more: the first fragment is thrown away; its retransmission completes the datagram
    # from the last one, kept in the emptied queue. The middle one, before it, is held.
    b = frag4("10.9.2.1", "10.9.0.1", 1000, 110, 210, 96, 3)
    out += [b[0], b[1]] + [frag4("10.9.2.1", "10.9.0.1", 2000 + i, 111, 211, 64, 2)[0] for i in range(64)]
    out += [b[2], b[1], b[0]]
    # Fragments from other sources do not count.
    c = frag4("10.9.3.1", "10.9.0.1", 1000, 120, 220, 64, 2)
    out += [c[0]] + [frag4("10.9.3.%d" % (2 + i % 2), "10.9.0.1", 3000 + i, 121, 221, 64, 2)[0]
                     for i in range(80)] + [c[1]]
    # Fragments of datagrams completed meanwhile count: 32 whole datagrams (64 fragments) put
    # the last fragment 65 counts after the first.
    d = frag4("10.9.4.1", "10.9.0.1", 1000, 130, 230, 64, 2)
    out += [d[0]]
    for i in range(32):
        out += list(frag4("10.9.4.1", "10.9.0.1", 4000 + i, 131, 231, 64, 2))
    out += [d[1], d[0]]
    # What a source sent before its datagram was queued does not count.
    for i in range(100):
        out += list(frag4("10.9.5.1", "10.9.0.1", 5000 + i, 140, 240, 64, 2))
    e = frag4("10.9.5.1", "10.9.0.1", 1000, 141, 241, 64, 2)
    out += [e[0], e[1]]
    # A duplicate that comes too far: the queue keeps only it, and the datagram completes
    # when the rest come again.
    g = frag4("10.9.6.1", "10.9.0.1", 1000, 150, 250, 96, 3)
    out += [g[0], g[1]] + [frag4("10.9.6.1", "10.9.0.1", 6000 + i, 151, 251, 64, 2)[0] for i in range(70)]
    out += [g[1], g[2], g[0]]
    return out


@scenario("ip/host-routing")
def _():
    pairs4 = [("10.8.0.1", "255.255.255.255"), ("0.0.0.0", "255.255.255.255"), ("10.8.0.1", "224.0.0.1"),
              ("10.8.0.1", "224.0.0.251"), ("10.8.0.1", "239.255.255.250"), ("0.0.0.0", "10.8.0.2"),
              ("224.0.0.9", "10.8.0.2"), ("10.8.0.1", "10.8.0.255"), ("127.0.0.1", "10.8.0.2"),
              ("10.8.0.1", "240.0.0.1"), ("169.254.1.1", "169.254.1.2")]
    pairs6 = [("fe80::1", "ff02::1"), ("fe80::1", "ff02::2"), ("2001:db8:8::1", "ff05::2"),
              ("fe80::1", "ff02::fb"), ("2001:db8:8::1", "ff02::1:ff00:1"), ("fe80::1", "2001:db8:8::2"),
              ("2001:db8:8::1", "fe80::2"), ("fe80::1", "fe80::2"), ("::", "2001:db8:8::2"),
              ("::", "ff02::16"), ("2001:db8:8::1", "ff0e::1"), ("fc00::1", "fc00::2")]
    out = []
    for i, (s, d) in enumerate(pairs4):
        out.append(udp(s, d, 1000 + i, 2000 + i, b"h"))
    for i, (s, d) in enumerate(pairs6):
        out.append(udp6(s, d, 3000 + i, 4000 + i, b"h"))
    # Replies to what was delivered or forwarded.
    out.append(udp("10.8.0.255", "10.8.0.1", 2007, 1007, b"r"))
    out.append(udp6("fe80::2", "fe80::1", 4007, 3007, b"r"))
    return out


@scenario("udp/stream-2s", args="--realtime")
def _():
    # Replied within 2 s: not a stream yet; traffic after the 2-second mark makes it one.
    return [(0.0, udp(A, B, 43000, 5000, b"1")), (0.1, udp(B, A, 5000, 43000, b"2")),
            (0.5, udp(A, B, 43000, 5000, b"3")),
            (0.0, udp(A, C, 43001, 5001, b"1")), (0.2, udp(C, A, 5001, 43001, b"2")),
            (2.6, udp(A, C, 43001, 5001, b"3")), (2.7, udp(C, A, 5001, 43001, b"4")),
            (0.3, udp(A, B, 43002, 5002, b"1")), (2.9, udp(B, A, 5002, 43002, b"late first reply")),
            (3.0, udp(A, B, 43002, 5002, b"after"))]


def tcp_seg(src, dst, sp, dp, flags, seq, ack=0, data=b"", win=8192):
    from scapy.all import TCP
    return IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=win) / data


@scenario("generic/accounting", args="--sysctl nf_conntrack_acct=1")
def _():
    S, D = "10.30.0.1", "10.30.0.2"
    out = [
        tcp_seg(S, D, 4000, 80, "S", 1000),
        tcp_seg(D, S, 80, 4000, "SA", 5000, 1001),
        tcp_seg(S, D, 4000, 80, "A", 1001, 5001),
        tcp_seg(S, D, 4000, 80, "PA", 1001, 5001, b"x" * 100),
        tcp_seg(D, S, 80, 4000, "SA", 5000, 1001),            # ignored: not counted
        tcp_seg(S, D, 4000, 80, "PA", 900000, 5001, b"far"),   # out of window: invalid, not counted
        tcp_seg(D, S, 80, 4000, "A", 5001, 1101),
        udp(S, D, 5000, 53, b"q" * 30), udp(D, S, 53, 5000, b"r" * 70), udp(S, D, 5000, 53, b"q"),
        IP(src=S, dst=D) / ICMP(type=8, id=3) / (b"p" * 56),
        IP(src=D, dst=S) / ICMP(type=0, id=3) / (b"p" * 56),
        IPv6(src=A6, dst=B6) / UDP(sport=1, dport=2) / (b"6" * 10),
        tcp_seg(S, "10.30.0.3", 4001, 80, "S", 1),
        tcp_seg("10.30.0.3", S, 80, 4001, "R", 0),            # RST before a reply: counted, then gone
    ]
    big = IP(src=S, dst="10.30.0.4", id=9) / UDP(sport=6000, dport=6001) / (b"F" * 2500)
    out += list(fragment(big, fragsize=1000))
    return out


def _sctp_fragments():
    """SCTP INITs of 132 bytes (a host name parameter makes them long) cut into fragments whose first carries 8 bytes of the 12-byte
    SCTP header (or 16: the whole of it), IPv6 (one with a hop-by-hop header before the
    fragment header, one arriving in reverse) and IPv4."""
    from scapy.all import SCTP, SCTPChunkInit, SCTPChunkParamHostname

    def sctp(sport):
        return raw(SCTP(sport=sport, dport=9, tag=0) / SCTPChunkInit(
            init_tag=5, a_rwnd=1500, n_in_streams=1, n_out_streams=1, init_tsn=1,
            params=[SCTPChunkParamHostname(hostname=b"h" * 96)]))

    def cuts(n, first, step):
        out, off = [], 0
        for c in [first] + [step] * ((n - first + step - 1) // step):
            out.append((off, min(c, n - off)))
            off += c
        return out

    def v6(sport, first, step, ident, hbh=False):
        data = sctp(sport)
        out = []
        for off, c in cuts(len(data), first, step):
            base = IPv6(src="2001:db8:51::1", dst="2001:db8:51::2")
            if hbh:
                base = base / IPv6ExtHdrHopByHop()
            frag = IPv6ExtHdrFragment(nh=132, offset=off // 8, m=int(off + c < len(data)), id=ident)
            out.append(base / frag / data[off:off + c])
        return out

    def v4(sport, first, step, ident):
        data = sctp(sport)
        return [IP(src="10.51.0.1", dst="10.51.0.2", proto=132, id=ident, frag=off // 8,
                   flags=int(off + c < len(data))) / data[off:off + c]
                for off, c in cuts(len(data), first, step)]

    return (v6(1001, 8, 16, 1) + v6(1002, 16, 16, 2) + v6(1003, 8, 8, 3, hbh=True)
            + list(reversed(v6(1004, 8, 16, 4))) + v4(2001, 8, 16, 11) + v4(2002, 16, 16, 12)
            + v4(2003, 8, 24, 13))


@scenario("ip/sctp-fragments-checksum", args="--sysctl nf_conntrack_checksum=1")
def _():
    """With the checksum check on, conntrack makes the SCTP header writable before summing the
    packet, which pulls it together when fragment zero carried less than all of it: the
    reassembled datagram no longer has its fragments' shape, and the router cuts it again
    itself (IPv6 at no less than 1,280 bytes: one frame; IPv4 at its largest fragment's size)."""
    return _sctp_fragments()


@scenario("ip/sctp-fragments")
def _():
    """The same fragments with the checksum check off: each goes on as it came."""
    return _sctp_fragments()


@scenario("udp/checksum-long-datagrams", args="--sysctl nf_conntrack_checksum=1")
def _():
    """With the checksum check on, UDP datagrams of layer-4 lengths around the sizes where
    ctrack's vector loop takes over (256 bytes) and its 128-byte blocks end, over IPv4 and
    IPv6, each first with one byte wrong (invalid: no entry is made and no reply counts),
    then right. A datagram without a checksum (zero) is taken unchecked over IPv6 too:
    conntrack lets it pass there as over IPv4 (the IPv6 stack refuses one only for delivery to
    the host, which a forwarded packet never reaches)."""
    from scenarios_tcp import corrupt
    out = []
    for v6 in (False, True):
        src, dst = (A6, B6) if v6 else (A, B)
        mk = udp6 if v6 else udp
        for k, n in enumerate([200, 247, 248, 249, 375, 376, 377, 503, 1000, 1001, 1399, 1432]):
            port = 41000 + 100 * v6 + k
            data = bytes((i * 13 + n) & 0xFF for i in range(n))
            q = mk(src, dst, port, 7, data)
            r = mk(dst, src, 7, port, data)
            out += [corrupt(q, [n - 5, n // 2, 40, 1][k % 4], 0x21), q,
                    corrupt(r, [1, 40, n // 2, n - 5][k % 4], 0x84), r]
        zero = mk(src, dst, 41099 + 100 * v6, 7, bytes(300))
        zero[UDP].chksum = 0
        out += [zero, mk(dst, src, 7, 41099 + 100 * v6, bytes(300))]
    return out
