"""Connection mark scenarios (pcaps/marks/): a ruleset's `ct mark set` on the packets of a
connection, what the table and the events show of it, and the mark an expected connection
copies from its master. A packet with DSCP N (1 to 9) sets its connection's mark to N, one with
DSCP 10 sets it to 0 (ktrace_rules.py for the kernel, `common::mark_of` for the tests); any
other leaves it as it is. An ICMP error marks the connection it is about (the kernel attaches
that one to it; the tests find it by `Conntrack::tuple_of`)."""
from ctgen import scenario
from scapy.all import ICMP, IP, UDP, ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scenarios_helpers import FTP, login, pasv, transfer
from scenarios_tcp import Flow
from scenarios_zones import z

C, S = "10.42.0.1", "10.42.0.2"
C6, S6 = "2001:db8:42::1", "2001:db8:42::2"
CLEAR = 10


def m(pkt, mark):
    """`pkt` (or each packet of a list) setting its connection's mark to `mark` (1 to 9), or to
    0 for `CLEAR`."""
    if isinstance(pkt, list):
        return [m(p, mark) for p in pkt]
    if pkt.haslayer(IPv6):
        pkt[IPv6].tc = mark << 2
    else:
        pkt[IP].tos = mark << 2
    return pkt



@scenario("marks/tcp", marks=True)
def _():
    # A SYN marks its connection (the [NEW] event shows the mark); a data segment changes the
    # mark (an [UPDATE] with no state), the same mark again changes nothing, the server's
    # acknowledgement clears it (an [UPDATE] showing mark=0); the connection then closes. A
    # second connection, marked by its server's SYN-ACK (with its state change), is reset.
    a = Flow(44001, 80, c=C, s=S)
    h = a.handshake()
    p = [m(h[0], 1), h[1], h[2]]
    p += [m(a.c("PA", 100), 2), a.s("A"), m(a.c("PA", 10), 2), m(a.s("A"), CLEAR)]
    p += [a.c("FA"), m(a.s("FA"), 3), a.c("A")]
    b = Flow(44002, 443, c=C, s=S)
    p += [b.c("S"), m(b.s("SA"), 4), b.c("A"), b.c("PA", 20), b.s("R")]
    # The first connection's tuple opens again from TIME_WAIT: the old entry's [DESTROY]
    # shows its mark, the new entry starts unmarked.
    again = Flow(44001, 80, c=C, s=S, cseq=900000)
    p += [again.c("S"), again.s("SA")]
    return p


@scenario("marks/udp-icmp-ipv6", marks=True, zones=True)
def _():
    # UDP marked by its first datagram and again by its answer; ICMP echo marked by its reply;
    # the same over IPv6. A datagram marked in a zone leaves the same tuple's connection in
    # zone 0 unmarked. An INVALID packet (an echo reply with no request) marks nothing. A port
    # unreachable marks the datagram's connection it is about (RELATED), over IPv4 and IPv6,
    # in zone 0 and in a zone.
    q, a = IP(src=C, dst=S) / UDP(sport=44100, dport=53) / b"q", IP(src=S, dst=C) / UDP(sport=53, dport=44100) / b"a"
    q6 = IPv6(src=C6, dst=S6) / UDP(sport=44101, dport=53) / b"q"
    a6 = IPv6(src=S6, dst=C6) / UDP(sport=53, dport=44101) / b"a"
    ping, pong = IP(src=C, dst=S) / ICMP(type=8, id=9, seq=1), IP(src=S, dst=C) / ICMP(type=0, id=9, seq=1)
    ping6 = IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(id=10, seq=1)
    pong6 = IPv6(src=S6, dst=C6) / ICMPv6EchoReply(id=10, seq=1)
    stray = IP(src=S, dst=C) / ICMP(type=0, id=11, seq=1)
    un = IP(src=S, dst=C) / ICMP(type=3, code=3) / IP(bytes(q))
    un6 = IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / IPv6(bytes(q6))
    return [m(q.copy(), 5), m(a.copy(), 6), q.copy(),
            m(q6.copy(), 7), a6.copy(), m(q6.copy(), 8),
            ping.copy(), m(pong.copy(), 9), ping6.copy(), m(pong6.copy(), 1),
            z(m(q.copy(), 2), 1), z(a.copy(), 1), m(stray.copy(), 3),
            m(un.copy(), 4), m(un6.copy(), 5), z(m(un.copy(), 6), 1)]


@scenario("marks/ftp-expected", args=FTP, marks=True, zones=True)
def _():
    # An FTP control connection marked 5 announces a passive data connection, which is RELATED
    # with its master's mark. The control connection's mark then changes to 6 while a second
    # announcement is pending: the second data connection gets 6, the mark its master has when
    # it comes, not the one it had when it announced it; that data connection's own mark is
    # then set to 7 without touching its master's. A third announcement's connection comes
    # after the master's mark was cleared, and a fourth's in a zone while the master is in
    # zone 0 (a NEW connection of its own, unmarked).
    f = Flow(44201, 21, c=C, s=S)
    p = m(login(f), 5) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50421, S)), f.c("A")]
    p += transfer(Flow(44202, 50421, c=C, s=S))
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50422, S)), m(f.c("A"), 6)]
    d = Flow(44203, 50422, c=C, s=S)
    p += d.handshake() + [m(d.s("PA", b"data"), 7), d.c("A")]
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50423, S)), m(f.c("A"), CLEAR)]
    p += transfer(Flow(44204, 50423, c=C, s=S), close=False)
    p += [m(f.c("PA", b"PASV\r\n"), 8), f.s("PA", pasv(50424, S)), f.c("A")]
    p += z(transfer(Flow(44205, 50424, c=C, s=S), close=False), 2)
    return p


@scenario("marks/zones", marks=True, zones=True)
def _():
    # One tuple in zones 1 and 2, each marked apart; the listing shows each with its mark and
    # zone, and so do its events.
    a, b = Flow(44301, 80, c=C, s=S), Flow(44301, 80, c=C, s=S)
    p = z([m(a.c("S"), 1), a.s("SA"), a.c("A")], 1)
    p += z([b.c("S"), m(b.s("SA"), 2), b.c("A")], 2)
    p += z([m(a.c("PA", 5), 3)], 1)
    return p
