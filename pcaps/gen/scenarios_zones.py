"""Conntrack zone scenarios (pcaps/zones/): the same tuples tracked apart in different zones,
replies and ICMP errors that find only their own zone's connection, fragments reassembled per
zone, a helper's expectation taken only in its master's zone (FTP, a SIP call's media, a PPTP
call's GRE, whose key map every zone shares), and the trackers that build their own tuples
(echo, GRE, generic) and a VLAN-tagged frame in zones. A packet's IPv4 TTL or IPv6 hop limit of
100 + N puts it in zone N (ktrace_rules.py for the kernel, `common::zone_of` for the tests); any
other leaves it in zone 0."""
from ctgen import scenario
from scapy.all import (
    GRE, ICMP, IP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest,
    IPv6, IPv6ExtHdrFragment, fragment, fragment6,
)
from scenarios_tcp import Flow
from scenarios_helpers import FTP, login, pasv, transfer

C, S = "10.40.0.1", "10.40.0.2"
C6, S6 = "2001:db8:40::1", "2001:db8:40::2"


def z(pkt, zone):
    """`pkt` (or each packet of a list) in conntrack zone `zone`."""
    if isinstance(pkt, list):
        return [z(p, zone) for p in pkt]
    if zone:
        if pkt.haslayer(IPv6):
            pkt[IPv6].hlim = 100 + zone
        else:
            pkt[IP].ttl = 100 + zone
    return pkt


def udp(src, dst, sport, dport, payload=b"x"):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def udp6(src, dst, sport, dport, payload=b"x"):
    return IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


@scenario("zones/tcp-same-tuple", zones=True)
def _():
    # One tuple opened in zones 1, 2 and 0: three connections. The server's answer in zone 2
    # finds zone 2's SYN; zone 1's connection goes on alone; a SYN-ACK for zone 1's
    # connection sent in zone 3 finds nothing there.
    a, b, c = Flow(43001, 80, c=C, s=S), Flow(43001, 80, c=C, s=S), Flow(43001, 80, c=C, s=S)
    p = z(a.handshake(), 1) + [z(b.c("S"), 2), c.c("S")]
    p += [z(b.s("SA"), 2), z(a.c("PA", 100), 1), z(a.s("A"), 1)]
    p += [z(Flow(43002, 80, c=C, s=S).s("SA"), 3)]
    p += [z(b.c("A"), 2), z(a.c("FA"), 1), z(a.s("FA"), 1), z(a.c("A"), 1)]
    return p


@scenario("zones/udp-replies", zones=True)
def _():
    # A query in zone 1; its answer in zone 2 opens a connection there (the reply tuple seen
    # first), the same answer in zone 1 is its reply; IPv6 the same way.
    return [z(udp(C, S, 43100, 53, b"q"), 1), z(udp(S, C, 53, 43100, b"a"), 2),
            z(udp(S, C, 53, 43100, b"a"), 1), z(udp(C, S, 43100, 53, b"q2"), 1),
            udp(C, S, 43100, 53, b"zone 0"),
            z(udp6(C6, S6, 43101, 53, b"q"), 4), z(udp6(S6, C6, 53, 43101, b"a"), 5),
            z(udp6(S6, C6, 53, 43101, b"a"), 4)]


@scenario("zones/icmp-errors", zones=True)
def _():
    # A port unreachable about a zone-1 flow is RELATED in zone 1 only.
    q = udp(C, S, 43200, 9999, b"probe")
    err = IP(src=S, dst=C) / ICMP(type=3, code=3) / q
    q6 = udp6(C6, S6, 43201, 9999, b"probe")
    err6 = IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / q6
    return [z(q.copy(), 1), z(err.copy(), 2), err.copy(), z(err.copy(), 1),
            z(q6.copy(), 1), z(err6.copy(), 2), z(err6.copy(), 1)]


@scenario("zones/fragments", zones=True)
def _():
    # Fragments of one datagram (same addresses, id and protocol) are gathered per zone: the
    # first in zone 1 and the second in zone 2 complete nothing; each zone's datagram is
    # complete once the other fragment comes in that zone, and is tracked there. The same
    # for IPv6.
    d = IP(src=C, dst=S, id=4242) / UDP(sport=43300, dport=7000) / (b"f" * 1200)
    a1, a2 = fragment(d, fragsize=608)
    d6 = IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=4243) / UDP(sport=43301, dport=7000) / (b"g" * 1200)
    b1, b2 = fragment6(d6, 700)
    return [z(a1.copy(), 1), z(a2.copy(), 2), z(a2.copy(), 1), z(a1.copy(), 2),
            z(b1.copy(), 1), z(b2.copy(), 2), z(b2.copy(), 1), z(b1.copy(), 2)]


@scenario("zones/ftp-expectation", args=FTP, zones=True)
def _():
    # An FTP control connection in zone 1 announces a passive data connection: the expectation
    # is zone 1's, so the data connection is NEW in zone 2 and RELATED in zone 1; a second
    # announcement's expectation is left pending (in zone 1).
    f = Flow(43401, 21, c=C, s=S)
    p = z(login(f) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50401, S)), f.c("A")], 1)
    p += [z(Flow(43402, 50401, c=C, s=S).c("S"), 2)]
    p += z(transfer(Flow(43403, 50401, c=C, s=S)), 1)
    p += z([f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50402, S)), f.c("A")], 1)
    return p



@scenario("zones/echo-gre-vlan", zones=True)
def _():
    # The trackers that build their own tuples (ICMP and ICMPv6 echo, GRE, a protocol the
    # generic tracker takes) and a frame behind a VLAN tag, each in zones: an echo reply in
    # another zone than its request is INVALID there (a reply seen first), in its own it is
    # the reply; GRE and the generic protocol open one connection per zone.
    e = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    ping = IP(src=C, dst=S) / ICMP(type=8, id=7, seq=1)
    pong = IP(src=S, dst=C) / ICMP(type=0, id=7, seq=1)
    ping6 = IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(id=8, seq=1)
    pong6 = IPv6(src=S6, dst=C6) / ICMPv6EchoReply(id=8, seq=1)
    gre = IP(src=C, dst=S) / GRE(proto=0x0800) / IP(src="192.168.40.1", dst="192.168.40.2") / UDP()
    other = IP(src=C, dst=S, proto=253) / b"experimental"
    tagged = Ether(**e) / Dot1Q(vlan=40) / udp(C, S, 43500, 4500, b"tagged")
    tagged_reply = Ether(**e) / Dot1Q(vlan=40) / udp(S, C, 4500, 43500, b"tagged reply")
    return [z(ping.copy(), 1), z(pong.copy(), 2), z(pong.copy(), 1),
            z(ping6.copy(), 3), z(pong6.copy(), 0), z(pong6.copy(), 3),
            z(gre.copy(), 1), z(gre.copy(), 2), gre.copy(),
            z(other.copy(), 2), other.copy(), z(other.copy(), 2),
            z(tagged.copy(), 2), tagged_reply.copy(), z(tagged_reply.copy(), 2)]


@scenario("zones/sip-call", args="--helper all", zones=True)
def _():
    # A SIP call signalled in zone 2: its media expectations are zone 2's. The caller's RTP
    # sent in zone 1 is NEW there; in zone 2 it is RELATED, and the answer its reply.
    from scenarios_app import Dialog, rtp, sdp
    A, B = "10.40.2.1", "10.40.2.2"
    d = Dialog(A, B, callid="zoned")
    offer = sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 40100 RTP/AVP 0",
                    "a=rtpmap:0 PCMU/8000", "a=sendrecv"])
    answer = sdp(B, ["c=IN IP4 %s" % B, "t=0 0", "m=audio 50100 RTP/AVP 0",
                     "a=rtpmap:0 PCMU/8000", "a=sendrecv"])
    p = z([d.req("INVITE", 1, offer), d.resp(100, "Trying", 1, "INVITE"),
           d.resp(200, "OK", 1, "INVITE", answer), d.req("ACK", 1)], 2)
    p += [z(rtp(A, B, 40100, 50100, 1), 1), z(rtp(A, B, 40100, 50100, 2), 2),
          z(rtp(B, A, 50100, 40100, 1), 2)]
    return p


@scenario("zones/pptp-gre", args="--helper all", zones=True)
def _():
    # A PPTP call in zone 1: its GRE is RELATED in zone 1 only. The GRE key map is the whole
    # host's, as the kernel keeps it: GRE in zone 2 between the same ends is NEW there, yet its
    # tuple takes the call's source key.
    from scenarios_pptp import PORT, gre, ocrp, ocrq, session
    pns, pac = "10.40.3.1", "10.40.3.2"
    f = Flow(43601, PORT, c=pns, s=pac)
    p = z(session(f) + [f.c("PA", ocrq(0x3111)), f.s("PA", ocrp(0x3222, 0x3111)), f.c("A")], 1)
    p += [z(gre(pns, pac, 0x3222, 0), 2), z(gre(pns, pac, 0x3222, 0), 1),
          z(gre(pac, pns, 0x3111, 0, ack=0), 1), z(gre(pac, pns, 0x3111, 1, ack=0), 2)]
    return p
