"""ICMP and ICMPv6 error scenarios: errors RELATED to the flow of the packet they quote.

Cast (per scenario the same roles): A is the client, B the server, R a router in the middle
(neither endpoint), C an unrelated host. Every error is addressed so the oracle forwards it
(global unicast destinations; link-local sources are not forwarded and come back `dropped`).
"""
import struct

from ctgen import scenario
from scapy.all import (  # noqa: F401
    AH, GRE, ICMP, IP, TCP, UDP, ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest,
    ICMPv6ND_Redirect, ICMPv6NDOptRedirectedHdr, ICMPv6PacketTooBig, ICMPv6ParamProblem,
    ICMPv6TimeExceeded, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting, Raw, fragment, raw,
)

A, B, R, C = "10.9.0.1", "10.9.0.2", "10.9.0.254", "10.9.0.3"
A6, B6, R6, C6 = "2001:db8:9::1", "2001:db8:9::2", "2001:db8:9::fe", "2001:db8:9::3"


# ---------------------------------------------------------------- building blocks

def udp(src, dst, sport, dport, payload=b"data", **kw):
    return IP(src=src, dst=dst, **kw) / UDP(sport=sport, dport=dport) / payload


def udp6(src, dst, sport, dport, payload=b"data"):
    return IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def l4_offset(pkt):
    """Offset of the innermost payload-carrying header (after IP and extension headers)."""
    b = raw(pkt)
    for layer in (UDP, TCP, ICMP, GRE, ICMPv6EchoRequest, ICMPv6EchoReply):
        if pkt.haslayer(layer):
            return len(b) - len(raw(pkt.getlayer(layer)))
    if b[0] >> 4 == 4:
        return (b[0] & 15) * 4
    return 40


def quote(pkt, l4=8):
    """The bytes an error quotes: the IP header (and extensions) plus `l4` bytes of layer 4
    (None: the whole packet). 8 bytes is what routers normally send for IPv4."""
    b = raw(pkt)
    if l4 is None:
        return b
    return b[:l4_offset(pkt) + l4]


def err4(src, dst, ty, code, quoted, rest=b"\x00\x00\x00\x00"):
    """An ICMPv4 error carrying raw quoted bytes (rest: bytes 4-7 of the ICMP header)."""
    hdr = struct.pack("!BBH", ty, code, 0) + rest
    return IP(src=src, dst=dst, proto=1) / Raw(with_csum(hdr + quoted))


def with_csum(icmp):
    s = 0
    b = icmp + (b"\x00" if len(icmp) % 2 else b"")
    for i in range(0, len(b), 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = (~s) & 0xFFFF
    return icmp[:2] + struct.pack("!H", c) + icmp[4:]


def err6(src, dst, ty, code, quoted, rest=b"\x00\x00\x00\x00", hlim=64):
    """An ICMPv6 error of any type carrying raw quoted bytes (checksum left to scapy's
    IPv6 layer is not possible for Raw, and the oracle does not check it)."""
    return IPv6(src=src, dst=dst, nh=58, hlim=hlim) / Raw(struct.pack("!BBH", ty, code, 0) + rest + quoted)


def unreach6(src, dst, code, quoted):
    return IPv6(src=src, dst=dst) / ICMPv6DestUnreach(code=code) / Raw(quoted)


def ip4_header(src, dst, proto, total, ihl=5, ver=4, frag=0, options=b""):
    """A hand-made IPv4 header, for quoting headers scapy would 'fix'."""
    h = struct.pack("!BBHHHBBH4s4s", ver << 4 | ihl, 0, total, 0x4242, frag, 64, proto, 0,
                    bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return h + options


# ---------------------------------------------------------------- UDP, IPv4

@scenario("icmp/udp-unreach-v4")
def _():
    q = udp(A, B, 40000, 53, b"query")
    out = [q, udp(B, A, 53, 40000, b"answer")]
    # Port unreachable from the server itself, quoting the usual 8 bytes of UDP.
    out.append(err4(B, A, 3, 3, quote(q)))
    # Host unreachable from a router in the middle, quoting the whole datagram.
    out.append(err4(R, A, 3, 1, quote(q, None)))
    # Network unreachable, protocol unreachable, admin prohibited: all unreachable codes.
    out += [err4(R, A, 3, 0, quote(q)), err4(B, A, 3, 2, quote(q)), err4(R, A, 3, 13, quote(q))]
    # A second, unreplied flow and a port unreachable about it.
    q2 = udp(A, B, 40001, 5353, b"nobody home")
    out += [q2, err4(B, A, 3, 3, quote(q2))]
    # The flows go on as before: the errors changed nothing.
    out += [udp(A, B, 40000, 53, b"query 2"), udp(A, B, 40001, 5353, b"again")]
    # A large error (quoting a 3000-byte datagram whole) that arrives in fragments.
    big = udp(A, B, 40000, 53, b"Q" * 3000)
    e = err4(R, A, 3, 1, quote(big, None))
    e[IP].id = 0x3131
    out += fragment(e, fragsize=1200)
    return out


@scenario("icmp/frag-needed-v4")
def _():
    q = udp(A, B, 41000, 4500, b"D" * 1400, flags="DF")
    out = [q, udp(B, A, 4500, 41000, b"ok")]
    out.append(err4(R, A, 3, 4, quote(q), rest=struct.pack("!HH", 0, 1280)))
    # Same error but the router quotes the whole datagram (as Linux does up to 576 bytes).
    out.append(err4(R, A, 3, 4, quote(q, None)[:548], rest=struct.pack("!HH", 0, 1280)))
    # Frag needed about a packet of the reply direction, sent to the server.
    r = udp(B, A, 4500, 41000, b"E" * 1400, flags="DF")
    out.append(err4(R, B, 3, 4, quote(r), rest=struct.pack("!HH", 0, 1280)))
    return out


@scenario("icmp/time-exceeded-v4")
def _():
    q = udp(A, B, 33434, 33435, b"traceroute", ttl=1)
    out = [q]
    # Time exceeded in transit from routers along the path (neither endpoint).
    out.append(err4(R, A, 11, 0, quote(q)))
    out.append(err4("192.0.2.77", A, 11, 0, quote(q)))
    # Fragment reassembly time exceeded from the destination.
    out.append(err4(B, A, 11, 1, quote(q)))
    # The next probes are new flows of their own; an error about each.
    for port in (33436, 33437):
        p = udp(A, B, 33434, port, b"traceroute", ttl=2)
        out += [p, err4(R, A, 11, 0, quote(p))]
    return out


@scenario("icmp/param-problem-v4")
def _():
    q = udp(A, B, 42000, 7, b"echo me")
    out = [q, udp(B, A, 7, 42000, b"echo me")]
    out.append(err4(R, A, 12, 0, quote(q), rest=b"\x09\x00\x00\x00"))   # pointer at byte 9
    out.append(err4(B, A, 12, 1, quote(q)))                                # missing option
    out.append(err4(B, A, 12, 2, quote(q)))                                # bad length
    # Source quench (deprecated, still an error type to conntrack).
    out.append(err4(B, A, 4, 0, quote(q)))
    # Non-error types carrying a quoted packet are not errors: no tuple, invalid.
    out.append(err4(R, A, 9, 0, quote(q)))     # router advertisement
    out.append(err4(R, A, 10, 0, quote(q)))    # router solicitation
    out.append(err4(R, A, 6, 0, quote(q)))     # alternate host address
    out.append(err4(R, A, 19, 0, quote(q)))    # beyond the known types
    return out


@scenario("icmp/redirect-v4")
def _():
    q = udp(A, B, 43000, 9000, b"via the wrong router")
    out = [q]
    for code in range(4):
        out.append(err4(R, A, 5, code, quote(q), rest=bytes([10, 9, 0, 253])))
    # A redirect quoting a flow nobody saw.
    out.append(err4(R, A, 5, 1, quote(udp(A, B, 43001, 9000)), rest=bytes([10, 9, 0, 253])))
    return out


@scenario("icmp/no-match-v4")
def _():
    q = udp(A, B, 44000, 161, b"get")
    out = [q, udp(B, A, 161, 44000, b"response")]
    # Quoted flows that do not exist: other port, other address, other protocol.
    out.append(err4(B, A, 3, 3, quote(udp(A, B, 44001, 161))))
    out.append(err4(B, A, 3, 3, quote(udp(A, C, 44000, 161))))
    out.append(err4(B, A, 3, 3, quote(IP(src=A, dst=B, proto=136) / UDP(sport=44000, dport=161) / b"x")))
    # Before anything was seen at all.
    out.append(err4(C, A, 3, 3, quote(udp(A, C, 1, 2))))
    # An error quoting the tuple as the reply would carry it, addressed to A: the inverse of
    # the quoted packet is the original tuple, whose destination is B, not A.
    out.append(err4(R, A, 3, 3, quote(udp(B, A, 161, 44000))))
    return out


@scenario("icmp/one-sided-v4")
def _():
    q = udp(A, B, 45000, 514, b"syslog")
    out = [q]
    # The flow has no reply yet: an error about it is reply-side RELATED and does not make
    # the entry replied.
    out.append(err4(B, A, 3, 3, quote(q)))
    out.append(udp(A, B, 45000, 514, b"still new"))
    # An error addressed to B quoting a B->A packet that never passed: it matches too.
    out.append(err4(R, B, 3, 1, quote(udp(B, A, 514, 45000))))
    out.append(udp(A, B, 45000, 514, b"still new"))
    out.append(udp(B, A, 514, 45000, b"first real reply"))
    out.append(err4(B, A, 3, 3, quote(q)))
    return out


@scenario("icmp/outer-dst-mismatch-v4")
def _():
    q = udp(A, B, 46000, 80, b"x")
    out = [q, udp(B, A, 80, 46000, b"y")]
    out.append(err4(R, A, 3, 1, quote(q)))    # correct: to the quoted packet's source
    out.append(err4(R, C, 3, 1, quote(q)))    # to a third host
    out.append(err4(R, B, 3, 1, quote(q)))    # to the quoted packet's destination
    out.append(err4(A, B, 3, 3, quote(q)))    # from A to B about A's own packet
    r = udp(B, A, 80, 46000, b"y")
    out.append(err4(R, B, 3, 1, quote(r)))    # correct: about the reply, to B
    out.append(err4(R, A, 3, 1, quote(r)))    # about the reply, to A
    out.append(err4(R, C, 3, 1, quote(r)))
    return out


@scenario("icmp/both-directions-v4")
def _():
    q = udp(A, B, 47000, 3478, b"stun")
    r = udp(B, A, 3478, 47000, b"stun reply")
    out = [q, r]
    out += [err4(B, A, 3, 3, quote(q)), err4(A, B, 3, 3, quote(r)),
            err4(R, A, 11, 0, quote(q)), err4(R, B, 11, 0, quote(r)),
            err4(C, A, 3, 10, quote(q)), err4(C, B, 3, 10, quote(r))]
    return out


# ---------------------------------------------------------------- other flows, IPv4

@scenario("icmp/about-echo-v4")
def _():
    req = IP(src=A, dst=B) / ICMP(type=8, id=0x2222, seq=1) / b"ping"
    rep = IP(src=B, dst=A) / ICMP(type=0, id=0x2222, seq=1) / b"ping"
    ts = IP(src=A, dst=C) / ICMP(type=13, id=0x3333, ts_ori=0, ts_rx=0, ts_tx=0)
    out = [req, rep, ts]
    out.append(err4(R, A, 11, 0, quote(req)))                 # about the request, to A
    out.append(err4(R, B, 11, 0, quote(rep)))                 # about the reply, to B
    out.append(err4(R, A, 3, 1, quote(ts)))                   # about a timestamp query
    out.append(err4(R, A, 11, 0, quote(IP(src=A, dst=B) / ICMP(type=8, id=0x2223))))  # other id
    out.append(err4(R, A, 11, 0, quote(IP(src=A, dst=B) / ICMP(type=8, code=1, id=0x2222))))
    out.append(err4(R, A, 11, 0, quote(req, 4)))              # ICMP header cut to 4 bytes
    out.append(err4(R, A, 11, 0, quote(req, 7)))              # ... and to 7
    # Unanswered echo: error about it; the entry stays unreplied.
    req2 = IP(src=A, dst=C) / ICMP(type=8, id=0x4444)
    out += [req2, err4(C, A, 3, 3, quote(req2))]
    return out


@scenario("icmp/about-generic-v4")
def _():
    esp = IP(src=A, dst=B, proto=50) / Raw(b"\x00\x00\x10\x01" + b"\x00" * 20)
    exp = IP(src=A, dst=B, proto=253) / Raw(b"experimental")
    out = [esp, exp]
    out.append(err4(R, A, 3, 1, quote(esp)))
    out.append(err4(R, A, 3, 1, quote(exp, 0)))               # only the IP header quoted
    out.append(err4(B, A, 3, 2, quote(exp, 0)))               # protocol unreachable
    out.append(err4(R, A, 3, 1, quote(IP(src=A, dst=B, proto=252) / Raw(b"x"))))  # not seen
    # GRE: version 0 (no keys) and version 1 (PPTP, keyed by call ID).
    g0 = IP(src=A, dst=B) / GRE(proto=0x0800) / IP(src="192.168.0.1", dst="192.168.0.2") / UDP()
    g1 = IP(src=A, dst=C, proto=47) / Raw(struct.pack("!BBHHH", 0x30, 0x81, 0x880B, 4, 0x2A) + b"ppp!")
    out += [g0, g1]
    out.append(err4(R, A, 3, 1, quote(g0)))
    out.append(err4(R, A, 3, 1, quote(g1)))
    # Version 1 carrying something other than PPP: no tuple.
    g1ip = IP(src=A, dst=C, proto=47) / Raw(struct.pack("!BBHHH", 0x30, 0x81, 0x0800, 4, 0x2A) + b"ppp!")
    out.append(err4(R, A, 3, 1, quote(g1ip)))
    # Version 1 cut at 6 bytes: keys 0/0, which is the version-0 flow's tuple (A->B).
    g1short = IP(src=A, dst=B, proto=47) / Raw(struct.pack("!BBHH", 0x30, 0x81, 0x880B, 4))
    out.append(err4(R, A, 3, 1, quote(g1short, 0) + raw(g1short)[20:26]))
    # Version 1 with another call ID.
    g1other = IP(src=A, dst=C, proto=47) / Raw(struct.pack("!BBHHH", 0x30, 0x81, 0x880B, 4, 0x2B))
    out.append(err4(R, A, 3, 1, quote(g1other, 8)))
    return out


# ---------------------------------------------------------------- odd quoted packets, IPv4

@scenario("icmp/truncated-inner-v4")
def _():
    q = udp(A, B, 48000, 69, b"read request")
    out = [q]
    full = raw(q)
    out.append(err4(R, A, 3, 1, full[:12]))          # cut before the addresses
    out.append(err4(R, A, 3, 1, full[:19]))          # IP header one byte short
    out.append(err4(R, A, 3, 1, full[:20]))          # IP header, no UDP
    out.append(err4(R, A, 3, 1, full[:23]))          # cut before the ports end
    out.append(err4(R, A, 3, 1, full[:24]))          # ports only
    out.append(err4(R, A, 3, 1, full[:28]))          # the normal 8 bytes
    out.append(err4(R, A, 3, 1, b""))                # nothing quoted
    out.append(IP(src=R, dst=A, proto=1) / Raw(b"\x03\x01\x00\x00\x00\x00\x00"))  # ICMP header cut
    # A UDP header whose length field is nonsense: not looked at.
    out.append(err4(R, A, 3, 1, full[:24] + b"\x00\x00\x00\x00"))
    return out


@scenario("icmp/odd-inner-header-v4")
def _():
    q = udp(A, B, 49000, 1000, b"x")
    out = [q]
    u = raw(q)[20:28]
    # Inner header with options (IHL 6).
    out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 32, ihl=6, options=b"\x01\x01\x01\x00") + u))
    # IHL 15 with 40 bytes of options present, then the UDP header.
    out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 68, ihl=15, options=b"\x01" * 40) + u))
    # IHL 15 claiming options that are not there (header runs past the quote).
    out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 68, ihl=15) + u))
    # Wrong version nibble: 6, 0 and 15, otherwise a good IPv4 header.
    for ver in (6, 0, 15):
        out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 28, ver=ver) + u))
    # IHL below 5: the ports are read from inside the IP header. IHL 3 reads them from the
    # source address (10.9 -> port 2569, 0.1 -> port 1); a flow with those ports exists.
    f = udp(A, B, 2569, 1, b"odd ports")
    out.append(f)
    out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 28, ihl=3) + u))
    # IHL 0: the ports are the first four bytes of the IP header itself (0x4000, length).
    g = udp(A, B, 0x4000, 28, b"odd ports 2")
    out.append(g)
    out.append(err4(R, A, 3, 1, ip4_header(A, B, 17, 28, ihl=0) + u))
    # A quoted IPv6 packet inside an IPv4 error.
    out.append(err4(R, A, 3, 1, quote(udp6(A6, B6, 49000, 1000))))
    return out


@scenario("icmp/inner-fragment-v4")
def _():
    big = udp(A, B, 50000, 2049, b"F" * 2000, id=0x5151)
    frags = fragment(big, fragsize=800)
    out = list(frags)                                   # the flow itself, reassembled
    out.append(err4(R, A, 3, 4, quote(frags[0], 8), rest=struct.pack("!HH", 0, 576)))  # first fragment
    second = raw(frags[1])
    out.append(err4(R, A, 11, 1, second[:28]))          # a non-first fragment quoted
    # The same bytes as the first fragment's but with the offset changed: refused.
    first = bytearray(raw(frags[0])[:28])
    first[6:8] = struct.pack("!H", 0x2000 | 1)
    out.append(err4(R, A, 11, 1, bytes(first)))
    # Only MF set, offset 0: a first fragment, accepted.
    first[6:8] = struct.pack("!H", 0x2000)
    out.append(err4(R, A, 11, 1, bytes(first)))
    # DF and offset 0: fine.
    first[6:8] = struct.pack("!H", 0x4000)
    out.append(err4(R, A, 11, 1, bytes(first)))
    return out


@scenario("icmp/error-about-error-v4")
def _():
    q = udp(A, B, 51000, 123, b"ntp")
    out = [q, udp(B, A, 123, 51000, b"ntp")]
    e1 = err4(B, A, 3, 3, quote(q))
    out.append(e1)
    # An error quoting that error (as if A's reply to it failed): never RELATED.
    out.append(err4(R, B, 3, 1, quote(e1, 8)))
    out.append(err4(R, B, 3, 1, quote(e1, None)))
    e2 = err4(R, A, 11, 0, quote(q))
    out.append(err4(R, R, 11, 0, quote(e2)))
    out.append(err4(R, B, 12, 0, quote(IP(src=B, dst=A) / ICMP(type=12) / Raw(quote(q)))))
    return out


# ---------------------------------------------------------------- timing

@scenario("icmp/no-refresh-v4", args="--realtime --sysctl nf_conntrack_udp_timeout=3")
def _():
    q = udp(A, B, 52000, 53, b"q")
    ping = IP(src=A, dst=C) / ICMP(type=8, id=0x5252)
    return [
        (0.0, q), (0.0, ping),
        (2.0, err4(B, A, 3, 3, quote(q))),        # related; must not extend the 3-second life
        (4.0, err4(B, A, 3, 3, quote(q))),        # the flow expired at 3 s: nothing to match
        (4.0, err4(C, A, 3, 3, quote(ping))),     # the echo entry shows 26 s left, not 30
    ]


# ---------------------------------------------------------------- IPv6

@scenario("icmp/udp-unreach-v6")
def _():
    q = udp6(A6, B6, 40000, 53, b"query")
    out = [q, udp6(B6, A6, 53, 40000, b"answer")]
    out.append(unreach6(B6, A6, 4, quote(q)))          # port unreachable, 8 bytes of UDP
    out.append(unreach6(R6, A6, 3, quote(q, None)))    # address unreachable, whole datagram
    out.append(unreach6(R6, A6, 0, quote(q)))          # no route
    out.append(unreach6(R6, A6, 1, quote(q)))          # administratively prohibited
    out.append(unreach6(R6, A6, 5, quote(q)))          # source address failed policy
    q2 = udp6(A6, B6, 40001, 5353, b"nobody home")
    out += [q2, unreach6(B6, A6, 4, quote(q2)), udp6(A6, B6, 40001, 5353, b"again")]
    return out


@scenario("icmp/packet-too-big-v6")
def _():
    q = udp6(A6, B6, 41000, 4500, b"D" * 1400)
    out = [q, udp6(B6, A6, 4500, 41000, b"ok")]
    out.append(IPv6(src=R6, dst=A6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote(q, None)[:1232]))
    out.append(IPv6(src=R6, dst=A6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote(q)))
    r = udp6(B6, A6, 4500, 41000, b"E" * 1400)
    out.append(IPv6(src=R6, dst=B6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote(r)))
    out.append(IPv6(src=R6, dst=C6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote(r)))
    return out


@scenario("icmp/time-exceeded-v6")
def _():
    q = udp6(A6, B6, 33434, 33435, b"traceroute")
    out = [q]
    out.append(IPv6(src=R6, dst=A6) / ICMPv6TimeExceeded(code=0) / Raw(quote(q)))
    out.append(IPv6(src="2001:db8:77::1", dst=A6) / ICMPv6TimeExceeded(code=0) / Raw(quote(q)))
    out.append(IPv6(src=B6, dst=A6) / ICMPv6TimeExceeded(code=1) / Raw(quote(q)))
    out.append(IPv6(src=R6, dst=B6) / ICMPv6TimeExceeded(code=0) / Raw(quote(q)))   # wrong way
    return out


@scenario("icmp/param-problem-v6")
def _():
    q = udp6(A6, B6, 42000, 7, b"echo me")
    out = [q, udp6(B6, A6, 7, 42000, b"echo me")]
    for code, ptr in ((0, 4), (1, 40), (2, 6), (3, 40)):
        out.append(IPv6(src=R6, dst=A6) / ICMPv6ParamProblem(code=code, ptr=ptr) / Raw(quote(q)))
    # Error types without a name: every type below 128 is an error to conntrack.
    for ty in (0, 5, 100, 127):
        out.append(err6(R6, A6, ty, 0, quote(q)))
    # Informational types above 128 that are not queries: no tuple.
    out.append(err6(R6, A6, 200, 0, quote(q)))
    out.append(err6(R6, A6, 141, 0, quote(q)))
    return out


@scenario("icmp/redirect-v6")
def _():
    q = udp6(A6, B6, 43000, 9000, b"via the wrong router")
    out = [q]
    def redirect(src, dst, code=0, hlim=255, quoted=None, opts=True):
        rd = ICMPv6ND_Redirect(code=code, tgt="fe80::fd", dst=B6)
        if opts:
            rd = rd / ICMPv6NDOptRedirectedHdr(pkt=quoted if quoted is not None else quote(q))
        return IPv6(src=src, dst=dst, hlim=hlim) / rd
    # As neighbour discovery sends it: link-local source, hop limit 255. The oracle's router
    # does not forward a link-local source, so this one comes back dropped.
    out.append(redirect("fe80::fe", A6))
    # Global source: a redirect that neighbour discovery would not accept. The oracle also
    # rewrites the hop limit to 64 before conntrack, so no redirect can be RELATED there.
    out.append(redirect(R6, A6))
    out.append(redirect(R6, A6, hlim=64))
    out.append(redirect(R6, A6, code=1))
    out.append(redirect(R6, A6, opts=False))
    return out


@scenario("icmp/no-match-v6")
def _():
    q = udp6(A6, B6, 44000, 161, b"get")
    out = [q, udp6(B6, A6, 161, 44000, b"response")]
    out.append(unreach6(B6, A6, 4, quote(udp6(A6, B6, 44001, 161))))
    out.append(unreach6(B6, A6, 4, quote(udp6(A6, C6, 44000, 161))))
    out.append(unreach6(C6, A6, 4, quote(udp6(A6, C6, 1, 2))))
    out.append(unreach6(R6, A6, 3, quote(udp6(B6, A6, 161, 44000))))
    # Outer destination differs from the matched tuple's destination.
    out.append(unreach6(R6, C6, 3, quote(q)))
    out.append(unreach6(R6, B6, 3, quote(q)))
    return out


@scenario("icmp/both-directions-v6")
def _():
    q = udp6(A6, B6, 47000, 3478, b"stun")
    r = udp6(B6, A6, 3478, 47000, b"stun reply")
    one = udp6(A6, C6, 47001, 3478, b"unanswered")
    out = [q, r, one]
    out += [unreach6(B6, A6, 4, quote(q)), unreach6(A6, B6, 4, quote(r)),
            IPv6(src=R6, dst=A6) / ICMPv6TimeExceeded() / Raw(quote(q)),
            IPv6(src=R6, dst=B6) / ICMPv6TimeExceeded() / Raw(quote(r)),
            unreach6(C6, A6, 4, quote(one)),
            unreach6(R6, C6, 3, quote(udp6(C6, A6, 3478, 47001))),
            udp6(A6, C6, 47001, 3478, b"still unanswered")]
    return out


@scenario("icmp/about-echo-v6")
def _():
    req = IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=0x2222, seq=1, data=b"ping")
    rep = IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=0x2222, seq=1, data=b"ping")
    out = [req, rep]
    out.append(IPv6(src=R6, dst=A6) / ICMPv6TimeExceeded() / Raw(quote(req)))
    out.append(IPv6(src=R6, dst=B6) / ICMPv6TimeExceeded() / Raw(quote(rep)))
    out.append(IPv6(src=R6, dst=A6) / ICMPv6TimeExceeded() / Raw(quote(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=0x2223))))
    out.append(IPv6(src=R6, dst=A6) / ICMPv6TimeExceeded() / Raw(quote(req, 6)))
    # Generic flows and an error quoting an error.
    esp = IPv6(src=A6, dst=B6, nh=50) / Raw(b"\x00\x00\x10\x01" + b"\x00" * 20)
    out += [esp, unreach6(R6, A6, 3, quote(esp, 0))]
    e = unreach6(B6, A6, 4, quote(udp6(A6, B6, 1, 2)))
    out.append(unreach6(R6, B6, 3, raw(e)[:48]))
    return out


@scenario("icmp/inner-extension-headers-v6")
def _():
    S, D = A6, B6
    out = [udp6(S, D, 45000, 9999, b"flow")]
    hbh = IPv6(src=S, dst=D) / IPv6ExtHdrHopByHop() / UDP(sport=45000, dport=9999) / b"flow"
    chain = (IPv6(src=S, dst=D) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
             IPv6ExtHdrRouting(addresses=[]) / UDP(sport=45000, dport=9999) / b"flow")
    ah = IPv6(src=S, dst=D) / AH(nh=17, payloadlen=4, spi=1, icv=b"\x00" * 12) / UDP(sport=45000, dport=9999) / b"x"
    frag0 = IPv6(src=S, dst=D) / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(sport=45000, dport=9999) / b"x"
    atomic = IPv6(src=S, dst=D) / IPv6ExtHdrFragment(offset=0, m=0, id=8) / UDP(sport=45000, dport=9999) / b"x"
    later = IPv6(src=S, dst=D) / IPv6ExtHdrFragment(offset=100, m=0, id=7, nh=17) / Raw(b"\xaf\xc8\x27\x0f\x00\x10\x00\x00")
    nonext = IPv6(src=S, dst=D) / IPv6ExtHdrDestOpt(nh=59) / Raw(b"\xaf\xc8\x27\x0f\x00\x10\x00\x00")
    for p in (hbh, chain, ah, frag0, atomic):
        out.append(unreach6(D, S, 4, quote(p)))
    out.append(unreach6(D, S, 4, raw(later)[:56]))             # non-first fragment
    out.append(unreach6(D, S, 4, raw(nonext)[:56]))            # no next header
    # Extension chain cut inside: the destination-options header says 16 bytes, 10 quoted.
    cut = IPv6(src=S, dst=D) / IPv6ExtHdrDestOpt(nh=17, len=1, options=[]) / UDP(sport=45000, dport=9999)
    out.append(unreach6(D, S, 4, raw(cut)[:50]))
    out.append(unreach6(D, S, 4, raw(chain)[:41]))             # hop-by-hop cut after one byte
    # The ports only, and one byte short of them.
    out.append(unreach6(D, S, 4, quote(hbh, 4)))
    out.append(unreach6(D, S, 4, quote(hbh, 3)))
    out.append(unreach6(D, S, 4, raw(hbh)[:39]))               # IPv6 header itself cut
    # The error itself carries extension headers before the ICMPv6 header.
    out.append(IPv6(src=D, dst=S) / IPv6ExtHdrDestOpt() / ICMPv6DestUnreach(code=4) / Raw(quote(hbh)))
    # An inner header with the version nibble wrong.
    bad = bytearray(quote(udp6(S, D, 45000, 9999)))
    bad[0] = 0x40
    out.append(unreach6(D, S, 4, bytes(bad)))
    # An IPv4 packet quoted in an ICMPv6 error.
    out.append(unreach6(D, S, 4, quote(udp(A, B, 45000, 9999))))
    return out


# ---------------------------------------------------------------- TCP (needs the TCP tracker)

def tcp_handshake(a, b, sport, dport, ip):
    return [ip(src=a, dst=b) / TCP(sport=sport, dport=dport, flags="S", seq=1000, window=64240),
            ip(src=b, dst=a) / TCP(sport=dport, dport=sport, flags="SA", seq=5000, ack=1001, window=65160),
            ip(src=a, dst=b) / TCP(sport=sport, dport=dport, flags="A", seq=1001, ack=5001, window=502)]


@scenario("icmp/tcp-v4")
def _():
    out = tcp_handshake(A, B, 53000, 80, IP)
    data = IP(src=A, dst=B, flags="DF") / TCP(sport=53000, dport=80, flags="PA", seq=1001, ack=5001, window=502) / (b"G" * 1400)
    out.append(data)
    out.append(err4(R, A, 3, 4, quote(data), rest=struct.pack("!HH", 0, 1280)))   # PMTU discovery
    out.append(err4(R, A, 3, 4, quote(data, 4), rest=struct.pack("!HH", 0, 1280)))
    out.append(err4(R, A, 3, 4, quote(data, 3), rest=struct.pack("!HH", 0, 1280)))
    resp = IP(src=B, dst=A) / TCP(sport=80, dport=53000, flags="A", seq=5001, ack=2401, window=501)
    out.append(resp)
    out.append(err4(R, B, 11, 0, quote(resp)))
    out.append(err4(R, C, 11, 0, quote(resp)))
    # A connection attempt refused by a router (SYN_SENT).
    syn = IP(src=A, dst=B) / TCP(sport=53001, dport=443, flags="S", seq=7000)
    out += [syn, err4(R, A, 3, 13, quote(syn)), err4(R, A, 3, 1, quote(syn))]
    # Port unreachable quoting a TCP segment to a port nobody connected to.
    out.append(err4(B, A, 3, 3, quote(IP(src=A, dst=B) / TCP(sport=53002, dport=81, flags="S"))))
    # The connection still works after the errors.
    out.append(IP(src=A, dst=B) / TCP(sport=53000, dport=80, flags="A", seq=2401, ack=5001, window=502))
    return out


@scenario("icmp/tcp-v6")
def _():
    out = tcp_handshake(A6, B6, 53000, 80, IPv6)
    data = IPv6(src=A6, dst=B6) / TCP(sport=53000, dport=80, flags="PA", seq=1001, ack=5001, window=502) / (b"G" * 1400)
    out.append(data)
    out.append(IPv6(src=R6, dst=A6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote(data, None)[:1232]))
    resp = IPv6(src=B6, dst=A6) / TCP(sport=80, dport=53000, flags="A", seq=5001, ack=2401, window=501)
    out.append(resp)
    out.append(IPv6(src=R6, dst=B6) / ICMPv6TimeExceeded() / Raw(quote(resp)))
    out.append(unreach6(R6, C6, 3, quote(resp)))
    syn = IPv6(src=A6, dst=B6) / TCP(sport=53001, dport=443, flags="S", seq=7000)
    out += [syn, unreach6(R6, A6, 1, quote(syn)), unreach6(B6, A6, 4, quote(syn))]
    out.append(IPv6(src=A6, dst=B6) / TCP(sport=53000, dport=80, flags="A", seq=2401, ack=5001, window=502))
    return out


@scenario("icmp/tcp-states-v4")
def _():
    out = []
    # SYN_RECV: SYN and SYN/ACK seen, errors about either before the final ACK.
    syn = IP(src=A, dst=B) / TCP(sport=54000, dport=22, flags="S", seq=100)
    synack = IP(src=B, dst=A) / TCP(sport=22, dport=54000, flags="SA", seq=900, ack=101)
    out += [syn, synack, err4(R, A, 11, 0, quote(syn)), err4(R, B, 3, 1, quote(synack))]
    # An established connection reset by A: the entry lives on in CLOSE for 10 s.
    out += tcp_handshake(A, B, 54001, 25, IP)
    rst = IP(src=A, dst=B) / TCP(sport=54001, dport=25, flags="R", seq=1001)
    out += [rst, err4(R, A, 3, 1, quote(rst)), err4(R, B, 3, 1, quote(IP(src=B, dst=A) / TCP(sport=25, dport=54001, flags="A")))]
    # A SYN answered by an RST before any reply deletes its entry: nothing left to relate to.
    syn2 = IP(src=A, dst=B) / TCP(sport=54002, dport=23, flags="S", seq=300)
    out += [syn2, IP(src=B, dst=A) / TCP(sport=23, dport=54002, flags="RA", seq=0, ack=301),
            err4(R, A, 3, 1, quote(syn2))]
    # Errors quoting segments the tracker would call invalid (flags nonsense): the error
    # itself is still RELATED, only the tuple counts.
    out.append(err4(R, A, 3, 1, quote(IP(src=A, dst=B) / TCP(sport=54000, dport=22, flags="FSRPAU"))))
    return out
