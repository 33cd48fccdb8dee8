"""Timed scenarios: replayed by the oracle in real time (--realtime) with shortened timeouts so
entries expire mid-capture. Margins around every deadline are at least 0.3 s, far above the
kernel's 4 ms jiffy and the replay's jitter."""
from ctgen import scenario
from scapy.all import GRE, ICMP, IP, UDP, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, Raw

A, B, C = "10.20.0.1", "10.20.0.2", "10.20.0.3"


def u(src, dst, sp, dp, data=b"t"):
    return IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / data


@scenario("timers/udp-expiry", args="--realtime --sysctl nf_conntrack_udp_timeout=2")
def _():
    return [
        (0.0, u(A, B, 1000, 53)),
        (1.0, u(A, B, 1000, 53)),        # refreshed: now lives until 3.0
        (2.5, u(A, B, 1000, 53)),        # still the same entry (until 4.5)
        (5.0, u(A, B, 1000, 53)),        # expired at 4.5: NEW again
        (5.1, u(B, A, 53, 1000)),        # the reply belongs to the new entry
        (0.2, u(A, C, 1001, 53)),        # a second flow, never refreshed: gone at 2.2
        (2.6, u(C, A, 53, 1001)),        # its "reply" arrives too late: a NEW flow C -> A
        (5.6, u(A, B, 1002, 54)),        # last packet; table read at about 5.6
    ]


@scenario("timers/udp-stream-timeout",
          args="--realtime --sysctl nf_conntrack_udp_timeout=1 --sysctl nf_conntrack_udp_timeout_stream=3")
def _():
    return [
        (0.0, u(A, B, 2000, 500)),
        (0.1, u(B, A, 500, 2000)),       # first reply: 1 s timeout (until 1.1)
        (0.8, u(A, B, 2000, 500)),       # replied, still young: 1 s (until 1.8)
        (1.5, u(B, A, 500, 2000)),       # 1 s again (until 2.5)
        (2.3, u(A, B, 2000, 500)),       # past 2 s: stream, ASSURED, 3 s (until 5.3)
        (5.0, u(A, B, 2000, 500)),       # alive: stream timeout again (until 8.0)
        (0.0, u(A, C, 2001, 501)),       # reply, then silence past the unreplied timeout
        (0.2, u(C, A, 501, 2001)),
        (1.6, u(A, C, 2001, 501)),       # expired at 1.2: NEW
        (8.4, u(A, B, 2000, 500)),       # expired at 8.0: NEW, not assured
    ]


@scenario("timers/icmp-expiry", args="--realtime --sysctl nf_conntrack_icmp_timeout=1 --sysctl nf_conntrack_icmpv6_timeout=1")
def _():
    a6, b6 = "2001:db8:20::1", "2001:db8:20::2"
    return [
        (0.0, IP(src=A, dst=B) / ICMP(type=8, id=7, seq=1)),
        (0.1, IP(src=B, dst=A) / ICMP(type=0, id=7, seq=1)),
        (0.6, IP(src=A, dst=B) / ICMP(type=8, id=7, seq=2)),   # refresh: until 1.6
        (2.0, IP(src=B, dst=A) / ICMP(type=0, id=7, seq=2)),   # late reply: no entry, invalid
        (2.1, IP(src=A, dst=B) / ICMP(type=8, id=7, seq=3)),   # NEW again
        (2.2, IP(src=B, dst=A) / ICMP(type=0, id=7, seq=3)),
        (0.0, IPv6(src=a6, dst=b6) / ICMPv6EchoRequest(id=9, seq=1)),
        (1.4, IPv6(src=b6, dst=a6) / ICMPv6EchoReply(id=9, seq=1)),  # too late: invalid
        (1.5, IPv6(src=a6, dst=b6) / ICMPv6EchoRequest(id=9, seq=2)),
        (1.6, IPv6(src=b6, dst=a6) / ICMPv6EchoReply(id=9, seq=2)),
    ]


@scenario("timers/generic-and-gre-expiry",
          args="--realtime --sysctl nf_conntrack_generic_timeout=2 --sysctl nf_conntrack_gre_timeout=1 "
               "--sysctl nf_conntrack_gre_timeout_stream=3")
def _():
    return [
        (0.0, IP(src=A, dst=B, proto=253) / Raw(b"generic")),
        (1.0, IP(src=B, dst=A, proto=253) / Raw(b"reply")),    # refresh: until 3.0, never assured
        (3.4, IP(src=A, dst=B, proto=253) / Raw(b"again")),    # expired: NEW
        (0.0, IP(src=A, dst=C) / GRE(proto=0x0800) / Raw(b"g")),
        (0.3, IP(src=C, dst=A) / GRE(proto=0x0800) / Raw(b"g")),   # first reply: 1 s (until 1.3)
        (1.0, IP(src=A, dst=C) / GRE(proto=0x0800) / Raw(b"g")),   # replied: stream 3 s, assured (until 4.0)
        (3.6, IP(src=C, dst=A) / GRE(proto=0x0800) / Raw(b"g")),   # alive (until 6.6)
        (3.7, IP(src=A, dst="10.20.0.9") / GRE(proto=0x0800) / Raw(b"g")),
        (5.0, IP(src=A, dst="10.20.0.9") / GRE(proto=0x0800) / Raw(b"g")),  # expired at 4.7: NEW
    ]


@scenario("timers/udp-stream-boundary", args="--realtime --sysctl nf_conntrack_udp_timeout=5")
def _():
    # Two flows replied at once; one talks again at 1.7 s (still young), one at 2.4 s (stream).
    return [
        (0.0, u(A, B, 3000, 600)), (0.05, u(B, A, 600, 3000)),
        (0.0, u(A, C, 3001, 601)), (0.05, u(C, A, 601, 3001)),
        (1.7, u(A, B, 3000, 600)),
        (2.4, u(A, C, 3001, 601)),
        (2.5, u(B, A, 600, 3000)),
    ]


def t(src, dst, sp, dp, flags, seq, ack=0, data=b""):
    from scapy.all import TCP
    return IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=8192) / data


@scenario("timers/tcp-states",
          args="--realtime --sysctl nf_conntrack_tcp_timeout_syn_sent=1 "
               "--sysctl nf_conntrack_tcp_timeout_syn_recv=1 --sysctl nf_conntrack_tcp_timeout_established=2 "
               "--sysctl nf_conntrack_tcp_timeout_time_wait=1 --sysctl nf_conntrack_tcp_timeout_close=1 "
               "--sysctl nf_conntrack_tcp_timeout_fin_wait=1 --sysctl nf_conntrack_tcp_timeout_close_wait=1")
def _():
    out = []
    # SYN_SENT expires: the late SYN/ACK finds nothing.
    out += [(0.0, t(A, B, 5000, 80, "S", 100)), (1.5, t(B, A, 80, 5000, "SA", 900, 101))]
    # SYN_RECV expires: the late ACK is picked up as a new ESTABLISHED entry (loose).
    out += [(0.0, t(A, B, 5001, 80, "S", 200)), (0.1, t(B, A, 80, 5001, "SA", 700, 201)),
            (1.6, t(A, B, 5001, 80, "A", 201, 701))]
    # ESTABLISHED expires after 2 s of silence; traffic inside the window keeps it.
    out += [(0.0, t(A, C, 5002, 22, "S", 300)), (0.1, t(C, A, 22, 5002, "SA", 800, 301)),
            (0.2, t(A, C, 5002, 22, "A", 301, 801)), (1.5, t(A, C, 5002, 22, "PA", 301, 801, b"x" * 10)),
            (1.6, t(C, A, 22, 5002, "A", 801, 311)), (4.0, t(A, C, 5002, 22, "PA", 311, 801, b"late"))]
    # FIN_WAIT and CLOSE_WAIT expire; TIME_WAIT expires, then the port is reused.
    out += [(0.0, t(A, B, 5003, 443, "S", 400)), (0.1, t(B, A, 443, 5003, "SA", 600, 401)),
            (0.2, t(A, B, 5003, 443, "A", 401, 601)), (0.3, t(A, B, 5003, 443, "FA", 401, 601)),
            (1.8, t(B, A, 443, 5003, "A", 601, 402))]
    out += [(0.0, t(A, B, 5004, 443, "S", 500)), (0.1, t(B, A, 443, 5004, "SA", 650, 501)),
            (0.2, t(A, B, 5004, 443, "A", 501, 651)), (0.3, t(A, B, 5004, 443, "FA", 501, 651)),
            (0.4, t(B, A, 443, 5004, "A", 651, 502)), (1.9, t(B, A, 443, 5004, "FA", 651, 502))]
    out += [(0.0, t(A, C, 5005, 25, "S", 700)), (0.1, t(C, A, 25, 5005, "SA", 750, 701)),
            (0.2, t(A, C, 5005, 25, "A", 701, 751)), (0.3, t(A, C, 5005, 25, "FA", 701, 751)),
            (0.4, t(C, A, 25, 5005, "FA", 751, 702)), (0.5, t(A, C, 5005, 25, "A", 702, 752)),
            (2.0, t(A, C, 5005, 25, "S", 99999))]
    # CLOSE after an RST expires; the table at the end shows the survivors' seconds left.
    out += [(0.0, t(A, B, 5006, 8080, "S", 1000)), (0.1, t(B, A, 8080, 5006, "SA", 2000, 1001)),
            (0.2, t(A, B, 5006, 8080, "A", 1001, 2001)), (0.3, t(B, A, 8080, 5006, "R", 2001)),
            (1.7, t(A, B, 5006, 8080, "A", 1001, 2001)),
            (3.9, t(A, "10.20.0.7", 5007, 8080, "S", 1)), (4.1, t(A, "10.20.0.8", 5008, 8080, "S", 1))]
    return out


@scenario("timers/acct-timestamps", args="--realtime --sysctl nf_conntrack_acct=1 --sysctl nf_conntrack_timestamp=1")
def _():
    return [
        (0.0, u(A, B, 7000, 53, b"first")),
        (1.3, u(B, A, 53, 7000, b"reply")),
        (2.6, u(A, B, 7000, 53, b"again")),
        (1.5, u(A, C, 7001, 53, b"later flow")),
        (3.2, IP(src=A, dst=C) / ICMP(type=8, id=1)),
    ]


TFTP_2S = "--realtime --helper all --sysctl nf_conntrack_udp_timeout=2"
RRQ = b"\x00\x01file.bin\x00octet\x00"


def tftp_data(src, dst, sp, dp):
    return u(src, dst, sp, dp, b"\x00\x03\x00\x01data")


@scenario("timers/expired-master-expectations", args=TFTP_2S)
def _():
    # A TFTP request's master expires (2 s) with its expectation pending (5 minutes) and no
    # later packet in its shard to sweep it: listing the table removes the expired master and
    # its expectation with it, so none is listed. A second request, still alive when the
    # table is read, keeps its own. Found by difffuzz_ip.py (seed 9301-1674).
    return [
        (0.0, u(A, B, 1123, 69, RRQ)),
        (0.1, tftp_data(C, A, 15873, 1123)),  # not from B: not expected
        (2.6, u(A, C, 1124, 69, RRQ)),
        (3.0, u(A, B, 1200, 53)),
    ]


@scenario("timers/expired-master-expectation-taken", args=TFTP_2S)
def _():
    # Two TFTP requests whose masters expire (2 s) with their expectations pending. The kernel
    # removes an expired entry when its garbage collection comes by (seconds to a minute
    # later) or a lookup of its tuple meets it; until then the expectation is taken as usual,
    # whichever packets came in between (here one that would sweep its shard). The second
    # master's tuple is looked up again (a packet that is no request): that ends it, and its
    # expectation with it. Golden replays also run on one shard, where every packet sweeps
    # every expired entry.
    return [
        (0.0, u(A, B, 1123, 69, RRQ)),
        (0.1, u(A, B, 1124, 69, RRQ)),
        (2.5, u(C, B, 1200, 53)),
        (2.6, tftp_data(B, A, 3000, 1123)),  # RELATED
        (2.7, u(A, B, 1124, 69, b"x")),      # NEW: ends the old master
        (2.8, tftp_data(B, A, 3001, 1124)),  # NEW: nothing expected
    ]


@scenario("timers/fragments-far-rearm", args="--realtime")
def _():
    """A datagram that starts over (net.ipv4.ipfrag_max_dist) gets a new 30-second reassembly
    timer: its first fragment again at 40 s, 20 s after the restart, completes it."""
    from scapy.all import fragment
    dg = IP(src="10.20.9.1", dst="10.20.9.2", id=77) / UDP(sport=900, dport=901) / (b"R" * 64)
    f = fragment(dg, fragsize=40)
    out = [(0.0, f[0])]
    for i in range(64):
        other = IP(src="10.20.9.1", dst="10.20.9.2", id=1000 + i) / UDP(sport=902, dport=903) / (b"o" * 64)
        out.append((1.0 + i * 0.001, fragment(other, fragsize=40)[0]))
    out += [(20.0, f[-1]), (40.0, f[0]), (40.5, u(A, B, 1000, 53))]
    return out


@scenario("timers/fragments-timer-window", args="--realtime --sysctl nf_conntrack_frag6_timeout=20")
def _():
    """A reassembly queue lives until its kernel timer fires, which the timer wheel does at the
    first granule of 512 ticks (2.048 s) past its deadline (30 s for IPv4, 20 s here for
    IPv6): a last fragment 0.05 s past the deadline still completes its datagram (the timer
    fires that early about one time in 40), one 2.3 s past it finds the queue gone and waits
    in a new one."""
    from scapy.all import IPv6ExtHdrFragment, fragment, fragment6
    out = []
    for ident, last in ((501, 30.05), (502, 32.3)):
        dg = IP(src="10.20.9.1", dst="10.20.9.2", id=ident) / UDP(sport=ident, dport=901) / (b"W" * 64)
        f = fragment(dg, fragsize=40)
        out += [(0.0, f[0]), (last, f[-1])]
    for ident, last in ((601, 20.05), (602, 22.3)):
        dg = (IPv6(src="fd00:20::1", dst="fd00:20::2") / IPv6ExtHdrFragment(id=ident)
              / UDP(sport=ident, dport=901) / (b"W" * 96))
        f = fragment6(dg, 104)
        out += [(0.0, f[0]), (last, f[-1])]
    out.append((32.5, u(A, B, 1000, 53)))
    return out


@scenario("timers/timestamps-step-back", args="--realtime", steps_back=True)
def _():
    # The capture's clock steps back by 2 s after the first stream is ASSURED. The kernel's
    # clock does not: it meets the late-stamped packets at once (the replay's schedule is
    # already past their stamps), so the second streams' third packets come 0.5 s after their
    # first, short of the 2 s a UDP stream waits for ASSURED, though their stamps say 2.5 s.
    # Four streams, so that some of them land in shards the first one does not use.
    out = [
        (0.0, u(A, B, 3000, 53)),
        (0.1, u(B, A, 53, 3000)),
        (3.0, u(A, B, 3000, 53)),        # 3 s after its first: ASSURED
    ]
    for k in range(4):
        sp = 3001 + k
        out += [
            (1.0 + 0.01 * k, u(A, B, sp, 53)),   # stamped 2 s back: met at about 3.0
            (1.1 + 0.01 * k, u(B, A, 53, sp)),
        ]
    out += [(3.5 + 0.01 * k, u(A, B, 3001 + k, 53)) for k in range(4)]  # not yet ASSURED
    out.append((6.0, u(A, B, 3000, 53)))
    return out


@scenario("timers/pptp-clear-after-idle",
          args="--realtime --helper all --sysctl nf_conntrack_gre_timeout=2"
               " --sysctl nf_conntrack_gre_timeout_stream=4")
def _():
    # Two PPTP calls, one after the other (the helper follows one call per control
    # connection); each call's GRE session (both ways: stream, 4 s) goes quiet. The first call
    # is cleared 2.3 s later: the kernel destroys its GRE entry with 1.7 s left (the event says
    # 1). The second is cleared after its GRE has timed out: there is no entry to destroy (the
    # timed-out one leaves as timed out). Only the control connection talks meanwhile, so the
    # GRE entries' part of the table sees no packet in between.
    from scenarios_pptp import PORT, ccrq, cdn, echorp, echorq, gre, ocrp, ocrq, session
    from scenarios_tcp import Flow
    pns, pac = "10.20.4.1", "10.20.4.2"
    f = Flow(43100, PORT, c=pns, s=pac)
    p = session(f) + [f.c("PA", ocrq(0x1111)), f.s("PA", ocrp(0x2222, 0x1111)), f.c("A")]
    out = [(0.01 * i, x) for i, x in enumerate(p)]
    out += [
        (0.5, gre(pns, pac, 0x2222, 0)), (0.55, gre(pac, pns, 0x1111, 0, ack=0)),
        (0.6, gre(pns, pac, 0x2222, 1, ack=0)),                   # until 4.6
        (1.5, f.c("PA", echorq(1))), (1.55, f.s("PA", echorp(1))),
        (2.8, f.c("PA", ccrq(0x1111))), (2.9, f.s("PA", cdn(0x2222))),  # 1.7 s left
        (2.95, f.c("A")),
        (3.0, f.c("PA", ocrq(0x1112, serial=2))), (3.05, f.s("PA", ocrp(0x2223, 0x1112))),
        (3.1, f.c("A")),
        (3.2, gre(pns, pac, 0x2223, 0)), (3.25, gre(pac, pns, 0x1112, 0, ack=0)),
        (3.3, gre(pns, pac, 0x2223, 1, ack=0)),                   # until 7.3
        (8.0, f.c("PA", echorq(2))), (8.05, f.s("PA", echorp(2))),
        (8.5, f.c("PA", ccrq(0x1112))), (8.6, f.s("PA", cdn(0x2223))),  # timed out at 7.3
        (8.65, f.c("A")),
        (9.0, gre(pns, pac, 0x2223, 2)),                          # new, with no source key
    ]
    return out


@scenario("timers/sip-drop-after-expiry",
          args="--realtime --helper all --sysctl nf_conntrack_udp_timeout=1")
def _():
    # An empty datagram to the SIP port makes an entry the helper does not refresh (1 s). When
    # it has timed out, a request the helper refuses (no CSeq) finds no entry: it makes one
    # that is never confirmed, so the answer starts a connection of its own.
    from scenarios_app import Dialog, udp
    A, B = "10.20.5.1", "10.20.5.2"
    d = Dialog(A, B, callid="late1")
    nocseq = [x for x in d._hdrs("a", "INVITE", 1, "l1") if not x.startswith("CSeq")]
    return [
        (0.0, udp(A, B, 5060, 5060)),
        (2.0, d.req("INVITE", 1, hdrs=nocseq)),          # dropped, never confirmed
        (2.2, d.resp(100, "Trying", 1, "INVITE")),       # new: nothing to answer
        (2.4, d.req("OPTIONS", 2)),
    ]
