"""Reductions of what random differential testing (difffuzz_ip.py) found on non-TCP and
IP-layer traffic: one scenario per divergence, each kept small and deterministic."""
import struct

from ctgen import scenario
from scapy.all import (  # noqa: F401
    ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, Raw, raw,
)

A, B = "10.12.0.1", "10.12.0.2"
A6, B6 = "2001:db8:12::1", "2001:db8:12::2"


def frags6(l4, nh, cuts, ident, src=A6, dst=B6):
    """IPv6 fragments of upper-layer bytes `l4` (protocol `nh`), cut into pieces of the given
    sizes, in order."""
    out, off = [], 0
    for c in cuts:
        more = off + c < len(l4)
        out.append(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(nh=nh, offset=off // 8, m=int(more), id=ident)
                   / Raw(l4[off:off + c]))
        off += c
    return out


def frags4(l4, proto, cuts, ident, src=A, dst=B):
    out, off = [], 0
    for c in cuts:
        more = off + c < len(l4)
        out.append(IP(src=src, dst=dst, id=ident, proto=proto, flags="MF" if more else 0, frag=off // 8)
                   / Raw(l4[off:off + c]))
        off += c
    return out


def l4_of(pkt, layer):
    return raw(pkt[layer])


@scenario("difffuzz/v6-first-fragment-short-header")
def _():
    # Fragment zero must hold the whole upper-layer header (RFC 8200 section 4.5). Linux's
    # conntrack defragmenter does not queue one that does not: it is tracked as it is
    # (a cut TCP header: invalid) and the fragments after it never complete.
    syn = l4_of(IPv6(src=A6, dst=B6) / TCP(sport=40000, dport=80, flags="S") / (b"T" * 40), TCP)
    out = frags6(syn, 6, [8, 8, 8, 8, 8, len(syn) - 40], 0x100)
    # The same datagram cut after 16 bytes: still short of a TCP header.
    out += frags6(syn, 6, [16, len(syn) - 16], 0x101)
    # A whole TCP header in fragment zero: reassembled and tracked.
    out += frags6(syn, 6, [24, len(syn) - 24], 0x102)
    # UDP and ICMPv6 headers are 8 bytes: an 8-byte fragment zero holds them.
    dg = l4_of(IPv6(src=A6, dst=B6) / UDP(sport=40001, dport=53) / (b"U" * 40), UDP)
    out += frags6(dg, 17, [8, len(dg) - 8], 0x103)
    echo = l4_of(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=7) / (b"E" * 40), ICMPv6EchoRequest)
    out += frags6(echo, 58, [8, len(echo) - 8], 0x104)
    # Another protocol needs one byte; its fragment zero holds eight.
    out += frags6(b"G" * 48, 99, [8, 40], 0x105)
    return out


@scenario("difffuzz/refragment-after-sip", args="--helper all")
def _():
    # The router sends a reassembled datagram on in the fragments it came in, but the SIP
    # helper linearises every packet it reads: the router then cuts it again itself, as
    # large as the largest fragment (for IPv6 never below 1280 bytes). An IPv6 datagram no
    # larger than its largest fragment goes on whole.
    out = []
    for dport in (5060, 5070):
        def u6(n):
            return l4_of(IPv6(src=A6, dst=B6) / UDP(sport=7000 + n, dport=dport) / (b"S" * n), UDP)

        def u4(n):
            return l4_of(IP(src=A, dst=B) / UDP(sport=7000 + n, dport=dport) / (b"S" * n), UDP)
        out += frags6(u6(2556), 17, [1232, 1232, 100], dport + 1)     # as it came: three
        out += frags6(u6(292), 17, [16] * 19, dport + 2)               # one 1280-byte piece
        out += frags4(u4(208), 17, [200, 8, 8], dport + 3)             # 200-byte pieces: two
        out += frags6(u6(1), 17, [8, 1], dport + 4)                    # 49 bytes in 56: whole
        out += frags4(u4(1), 17, [8, 1], dport + 5)                    # IPv4 cuts it anyway
        out += frags4(u4(300), 17, [16] * 19 + [4], dport + 6)
        # A fragment not a multiple of 8 long is cut down to one: its trimmed size bounds the
        # pieces (94 bytes sent, 88 kept: 94 bytes of datagram are then two frames).
        d = u4(86)
        first = IP(src=A, dst=B, id=dport + 7, proto=17, flags="MF") / Raw(d)
        out += [first] + frags4(d, 17, [88, 6], dport + 7)[1:]
    return out


@scenario("difffuzz/v6-extension-past-the-end")
def _():
    # Linux walks IPv6 extension headers reading only their first two bytes: a destination
    # options or AH header whose length runs past the end of the packet is skipped all the
    # same. A protocol that reads no header of its own (generic, GRE without a readable
    # header) is then tracked; one that needs its header (UDP, ICMPv6, TCP, SCTP, UDP-Lite)
    # is invalid, and so is a further extension header or "no next header".
    out = []
    for nh in (99, 47, 17, 58, 6, 132, 136, 60, 44, 59):
        out.append(IPv6(src=A6, dst=B6, nh=60) / Raw(bytes([nh, 9]) + b"\x01\x04\0\0\0\0" + b"xyz"))
        out.append(IPv6(src=A6, dst=B6, nh=51) / Raw(bytes([nh, 30]) + b"\0" * 10))
        out.append(IPv6(src=A6, dst=B6, nh=60) / Raw(bytes([nh, 0]) + b"\x01\x04\0\0\0\0"))
    # A reply to the generic flow, with a well-formed header.
    out.append(IPv6(src=B6, dst=A6, nh=99) / Raw(b"reply"))
    return out


@scenario("difffuzz/v6-atomic-fragment-accounting", args="--sysctl nf_conntrack_acct=1")
def _():
    # An IPv6 atomic fragment (offset 0, no more fragments) is reassembled like any other:
    # it loses its fragment header, and the bytes counted are 8 fewer.
    out = [
        IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x200) / ICMPv6EchoRequest(id=9) / (b"p" * 24),
        IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x201) / UDP(sport=4000, dport=4001) / (b"u" * 30),
        IPv6(src=B6, dst=A6) / UDP(sport=4001, dport=4000) / (b"r" * 30),
    ]
    # An atomic fragment whose identification matches a datagram still being reassembled.
    dg = l4_of(IPv6(src=A6, dst=B6) / UDP(sport=4002, dport=4003) / (b"d" * 40), UDP)
    out += frags6(dg, 17, [16], 0x202)
    out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x202) / UDP(sport=4004, dport=4005) / b"atomic")
    out += frags6(dg, 17, [16, len(dg) - 16], 0x202)[1:]
    # Two fragment headers: the second is left in the reassembled packet, where only an offset
    # other than 0 hides the upper layer (its more-fragments flag does not).
    out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x205) / IPv6ExtHdrFragment(id=0x206)
               / ICMPv6EchoRequest(id=10))
    out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x207) / IPv6ExtHdrFragment(m=1, id=0x208)
               / UDP(sport=4006, dport=4007) / b"inner")
    out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x209) / IPv6ExtHdrFragment(nh=59, id=0x20a))
    out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0x203) / IPv6ExtHdrFragment(offset=2, id=0x204)
               / Raw(b"z" * 16))
    return out


@scenario("difffuzz/v6-fragment-refusals")
def _():
    # How Linux's IPv6 conntrack defragmenter refuses a fragment: one that is not the last
    # but whose end is not a multiple of 8 ends its datagram and is tracked as it is (fragment
    # zero of a generic protocol or an echo request: a new connection; of UDP: invalid, its
    # length field says more; a later fragment: invalid); a last
    # fragment that ends before data already queued is dropped alone, and the datagram still
    # completes.
    dg = l4_of(IPv6(src=A6, dst=B6) / UDP(sport=5000, dport=5001) / (b"v" * 40), UDP)
    odd = [IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=17, m=1, id=0x300) / Raw(dg[:21]),
           IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=17, m=1, offset=2, id=0x301) / Raw(dg[16:29]),
           IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=99, m=1, id=0x303) / Raw(b"g" * 13),
           IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=58, m=1, id=0x304)
           / Raw(raw(ICMPv6EchoRequest(id=3, cksum=0)) + b"e" * 5)]
    first, last = frags6(dg, 17, [16, len(dg) - 16], 0x302)
    short = IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=17, m=0, id=0x302) / Raw(dg[:8])
    return odd + [first, short, last, IPv6(src=B6, dst=A6) / UDP(sport=5001, dport=5000) / b"reply"]


def bad_udp_len(src, dst, sport, dport, payload):
    """A UDP datagram whose length field claims 8 bytes more than the packet holds."""
    p = IP(src=src, dst=dst) / UDP(sport=sport, dport=dport, len=8 + len(payload) + 8) / payload
    return p


@scenario("difffuzz/refused-packet-spends-expectation", args="--helper all")
def _():
    # Linux looks a packet's connection up before its tracker checks the header: a packet
    # that takes a pending expectation and is then refused (UDP length beyond the packet, a
    # TCP header shorter than 20 bytes) uses the expectation up. The next good packet of
    # the tuple is a new connection of its own, not a related one.
    C = "10.12.0.3"
    out = [IP(src=A, dst=B) / UDP(sport=3000, dport=69) / b"\x00\x01file\x00octet\x00",
           bad_udp_len(B, A, 3001, 3000, b"\x00\x03\x00\x01data"),
           IP(src=B, dst=A) / UDP(sport=3001, dport=3000) / b"\x00\x03\x00\x01data"]
    # A second request, whose expectation the good answer takes as usual.
    out += [IP(src=A, dst=C) / UDP(sport=3002, dport=69) / b"\x00\x01file\x00octet\x00",
            IP(src=C, dst=A) / UDP(sport=3003, dport=3002) / b"\x00\x03\x00\x01data"]
    # FTP passive mode: the data connection's first segment has a 16-byte TCP header.
    seq_c, seq_s = 1000, 5000
    out += [IP(src=A, dst=B) / TCP(sport=3100, dport=21, flags="S", seq=seq_c),
            IP(src=B, dst=A) / TCP(sport=21, dport=3100, flags="SA", seq=seq_s, ack=seq_c + 1),
            IP(src=A, dst=B) / TCP(sport=3100, dport=21, flags="A", seq=seq_c + 1, ack=seq_s + 1)]
    pasv = b"227 Entering Passive Mode (10,12,0,2,40,1)\r\n"
    out += [IP(src=B, dst=A) / TCP(sport=21, dport=3100, flags="PA", seq=seq_s + 1, ack=seq_c + 1) / pasv]
    syn = bytearray(raw(IP(src=A, dst=B) / TCP(sport=3101, dport=10241, flags="S", seq=1)))
    syn[32] = 4 << 4                                         # data offset 4: 16 bytes
    out += [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800) / Raw(bytes(syn)),
            IP(src=A, dst=B) / TCP(sport=3101, dport=10241, flags="S", seq=1)]
    return out


@scenario("difffuzz/v4-tcp-header-across-fragments")
def _():
    # A reassembled IPv4 TCP segment whose fragment zero held less than the 20-byte TCP header:
    # the receive path pulls the header together while looking for a local socket, and the
    # router then cuts the datagram again itself, in pieces as large as its largest fragment
    # (not as it came). UDP (8-byte header, always whole in fragment zero) keeps its pieces.
    seg = l4_of(IP(src=A, dst=B) / TCP(sport=1000, dport=2000, flags="S") / (b"x" * 107), TCP)
    dg = l4_of(IP(src=A, dst=B) / UDP(sport=1000, dport=2000) / (b"y" * 119), UDP)
    eights = [8] * 15 + [7]
    out = frags4(seg, 6, [8, 8, 24] + [8] * 10 + [7], 0x400, dst="10.12.1.1")
    out += frags4(seg, 6, [16] + [8] * 13 + [7], 0x401, dst="10.12.1.2")
    out += frags4(seg, 6, [16, 40, 71], 0x402, dst="10.12.1.3")
    out += frags4(seg, 6, [24, 8, 95], 0x403, dst="10.12.1.4")            # header whole: as it came
    out += frags4(seg, 6, eights, 0x404, dst="10.12.1.5")                  # all 8: the same pieces
    out += frags4(dg, 17, [8, 8, 24] + [8] * 10 + [7], 0x405, dst="10.12.1.6")
    # The last piece the router cuts need not be a multiple of 8: 83 bytes in pieces of at
    # most 43 are two frames (40 and 43), not three.
    short = l4_of(IP(src=A, dst=B) / TCP(sport=1001, dport=2001, flags="S") / (b"z" * 63), TCP)
    out += frags4(short, 6, [16, 24, 43], 0x406, dst="10.12.1.7")
    out += frags4(short, 6, [8, 32, 43], 0x407, dst="10.12.1.8")
    return out


@scenario("difffuzz/fragments-mixed-ecn")
def _():
    # RFC 3168 section 5.3 as Linux applies it: a datagram whose fragments mix not-ECN-capable
    # with ECN-capable or congestion-experienced codepoints is not reassembled (no entry); ECT
    # mixed with CE is, and so is a datagram all of one codepoint.
    dg = l4_of(IP(src=A, dst=B) / UDP(sport=6000, dport=6001) / (b"n" * 40), UDP)
    dg6 = l4_of(IPv6(src=A6, dst=B6) / UDP(sport=6000, dport=6001) / (b"n" * 40), UDP)
    out = []
    for i, ecns in enumerate([(0, 2), (0, 3), (1, 0), (2, 3), (1, 2), (3, 3)]):
        fr = frags4(dg, 17, [16, len(dg) - 16], 0x500 + i, dst="10.12.2.%d" % (i + 1))
        for f, e in zip(fr, ecns):
            f[IP].tos = e
        out += fr
        fr = frags6(dg6, 17, [16, len(dg6) - 16], 0x500 + i, dst="2001:db8:12:2::%d" % (i + 1))
        for f, e in zip(fr, ecns):
            f[IPv6].tc = e
        out += fr
    return out


@scenario("difffuzz/sctp-ignored-not-counted", args="--sysctl nf_conntrack_acct=1")
def _():
    # SCTP packets the kernel lets through without tracking them (a HEARTBEAT whose tag is not
    # the association's, perhaps from a restarted peer; an INIT retransmitted into a closed
    # association) refresh nothing and are not counted.
    from scapy.all import (SCTP, SCTPChunkAbort, SCTPChunkCookieAck, SCTPChunkCookieEcho,
                           SCTPChunkData, SCTPChunkHeartbeatReq, SCTPChunkInit, SCTPChunkInitAck)
    va, vb = 0x1111, 0x2222

    def s(src, dst, sp, dp, tag, chunk):
        return IP(src=src, dst=dst) / SCTP(sport=sp, dport=dp, tag=tag) / chunk
    out = [s(A, B, 7000, 7001, 0, SCTPChunkInit(init_tag=va, n_out_streams=1, n_in_streams=1, init_tsn=1)),
           s(B, A, 7001, 7000, va, SCTPChunkInitAck(init_tag=vb, n_out_streams=1, n_in_streams=1, init_tsn=1)),
           s(A, B, 7000, 7001, vb, SCTPChunkCookieEcho(cookie=b"cookie!!")),
           s(B, A, 7001, 7000, va, SCTPChunkCookieAck()),
           s(A, B, 7000, 7001, vb, SCTPChunkData(tsn=1, data=b"hello")),
           s(A, B, 7000, 7001, 0x3333, SCTPChunkHeartbeatReq()),       # the wrong tag: ignored
           s(A, B, 7000, 7001, vb, SCTPChunkData(tsn=2, data=b"again"))]
    # Another association, aborted, then its INIT again.
    out += [s(A, B, 7002, 7003, 0, SCTPChunkInit(init_tag=va, n_out_streams=1, n_in_streams=1, init_tsn=1)),
            s(B, A, 7003, 7002, va, SCTPChunkAbort()),
            s(A, B, 7002, 7003, 0, SCTPChunkInit(init_tag=va, n_out_streams=1, n_in_streams=1, init_tsn=1))]
    return out


@scenario("difffuzz/refragment-after-ftp", args="--helper all")
def _():
    # The FTP helper reads the established segments of its control connection the way the SIP
    # helper does, and the router then cuts a reassembled one again itself, as large as its
    # largest fragment (IPv6: as the SIP case), instead of sending it on in the fragments it
    # came in. A segment with no payload goes on as it came; so does the same traffic on a
    # port no helper is assigned to.
    out = []
    for dport in (21, 2121):
        for v6, (c, s) in ((False, (A, B)), (True, (A6, B6))):
            ip = IPv6 if v6 else IP
            sport = 40000 + dport + 7 * v6
            cs, ss = 1000, 5000

            def seg(src, dst, sp, dp, flags, seq, ack, data=b""):
                return ip(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack,
                                                  window=65535) / data

            def cut(p, cuts, ident):
                l4 = l4_of(p, TCP)
                src, dst = (p.src, p.dst)
                if v6:
                    return frags6(l4, 6, cuts, ident, src=src, dst=dst)
                return frags4(l4, 6, cuts, ident, src=src, dst=dst)

            syn = seg(c, s, sport, dport, "S", cs, 0)
            out.append(syn)
            out.append(seg(s, c, dport, sport, "SA", ss, cs + 1))
            out.append(seg(c, s, sport, dport, "A", cs + 1, ss + 1))
            banner = b"220 ready\r\n" * 6
            out += cut(seg(s, c, dport, sport, "PA", ss + 1, cs + 1, banner), [24, 48, 14],
                       dport + 10 * v6 + 2)
            cmd = b"NOOP\r\n" * 10
            out += cut(seg(c, s, sport, dport, "PA", cs + 1, ss + 1 + len(banner), cmd), [24, 48, 8],
                       dport + 10 * v6 + 3)
            # A bare acknowledgement in fragments: no payload for the helper to read.
            out += cut(seg(s, c, dport, sport, "A", ss + 1 + len(banner), cs + 1 + len(cmd)), [8, 12],
                       dport + 10 * v6 + 4)
    return out


@scenario("difffuzz/refragment-after-ftp-reset", args="--helper all")
def _():
    # A reply RST to a SYN ends its connection at once, but the kernel's helper still reads
    # the packet, on the connection the packet holds: an FTP control connection's reply RST
    # that carries data, reassembled, is cut again by the router (IPv6: in pieces of at least
    # 1280 bytes) instead of going on in the fragments it came in. On a port no helper is
    # assigned to, it goes on as it came.
    out = []
    for dport in (21, 2121):
        for v6, (c, s) in ((False, (A, B)), (True, (A6, B6))):
            ip = IPv6 if v6 else IP
            for k, flags in enumerate(("R", "RA")):
                sport = 41000 + dport + 7 * v6 + k
                cs = 3000 + k
                out.append(ip(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="S", seq=cs,
                                                  window=1024))
                data = b"550 no\r\n" * (175 if v6 else 23)
                rst = ip(src=s, dst=c) / TCP(sport=dport, dport=sport, flags=flags, seq=777000,
                                             ack=cs + 1 if "A" in flags else 0, window=65535) / data
                l4 = l4_of(rst, TCP)
                ident = dport * 4 + 2 * v6 + k
                if v6:
                    out += frags6(l4, 6, [96] * (len(l4) // 96) + [len(l4) % 96], ident, src=s, dst=c)
                else:
                    out += frags4(l4, 6, [24, 48, len(l4) - 72], ident, src=s, dst=c)
    return out


@scenario("difffuzz/sctp-partial-chunks", args="--sysctl nf_conntrack_acct=1")
def _():
    # The kernel walks an SCTP packet's chunks one by one and keeps what each did before one
    # is refused (an ABORT whose tag is neither side's) or the packet is let through untracked
    # (a HEARTBEAT whose tag is not the association's): a state a chunk moved to stays, a
    # chunk that reaches ESTABLISHED makes the connection ASSURED there and then, and the
    # event of that change waits for the connection's next packet that gets through. (A
    # packet whose INIT is not its only chunk, or whose COOKIE_ACK is not its first, is
    # refused before any chunk is walked.)
    from scapy.all import (SCTP, SCTPChunkAbort, SCTPChunkCookieAck, SCTPChunkCookieEcho,
                           SCTPChunkData, SCTPChunkHeartbeatReq, SCTPChunkInit,
                           SCTPChunkInitAck, SCTPChunkShutdown)
    va, vb, stray = 0x1111, 0x2222, 0x7777

    def s(src, dst, sp, dp, tag, *chunks):
        p = SCTP(sport=sp, dport=dp, tag=tag)
        for c in chunks:
            p = p / c
        return IP(src=src, dst=dst) / p

    def opening(sp, dp):
        # INIT, INIT_ACK, COOKIE_ECHO: the association waits in COOKIE_ECHOED.
        return [s(A, B, sp, dp, 0, SCTPChunkInit(init_tag=va, n_out_streams=1, n_in_streams=1, init_tsn=1)),
                s(B, A, dp, sp, va, SCTPChunkInitAck(init_tag=vb, n_out_streams=1, n_in_streams=1, init_tsn=1)),
                s(A, B, sp, dp, vb, SCTPChunkCookieEcho(cookie=b"cookie!!"))]

    # COOKIE_ACK (ESTABLISHED, ASSURED), then an ABORT with a stray tag: refused, the
    # connection ASSURED all the same; the client's next DATA carries the update event.
    out = opening(7010, 7011) + [
        s(B, A, 7011, 7010, stray, SCTPChunkCookieAck(), SCTPChunkAbort()),
        s(A, B, 7010, 7011, vb, SCTPChunkData(tsn=1, data=b"hello")),
        s(B, A, 7011, 7010, va, SCTPChunkData(tsn=1, data=b"reply"))]
    # Established; then SHUTDOWN (SHUTDOWN_SENT) and an ABORT with a stray tag: refused, left
    # in SHUTDOWN_SENT, which the server's next DATA chunk reports.
    out += opening(7012, 7013) + [
        s(B, A, 7013, 7012, va, SCTPChunkCookieAck()),
        s(A, B, 7012, 7013, stray, SCTPChunkShutdown(cumul_tsn_ack=1), SCTPChunkAbort()),
        s(B, A, 7013, 7012, va, SCTPChunkData(tsn=1, data=b"late"))]
    # COOKIE_ACK, then a HEARTBEAT with a stray tag: let through untracked (no refresh), yet
    # ESTABLISHED and ASSURED.
    out += opening(7014, 7015) + [
        s(B, A, 7015, 7014, stray, SCTPChunkCookieAck(), SCTPChunkHeartbeatReq()),
        s(A, B, 7014, 7015, vb, SCTPChunkData(tsn=1, data=b"after"))]
    # Established; the ABORT with a stray tag first: refused before SHUTDOWN moves anything.
    out += opening(7016, 7017) + [
        s(B, A, 7017, 7016, va, SCTPChunkCookieAck()),
        s(A, B, 7016, 7017, stray, SCTPChunkAbort(), SCTPChunkShutdown(cumul_tsn_ack=1)),
        s(B, A, 7017, 7016, va, SCTPChunkData(tsn=1, data=b"still"))]
    return out
