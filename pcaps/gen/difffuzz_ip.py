#!/usr/bin/python3
"""Random differential testing of ctrack against the kernel oracle on non-TCP and IP-layer
traffic (a development tool; see README.md).

    /usr/bin/python3 pcaps/gen/difffuzz_ip.py gen SEED OUT.pcap     # one case; prints its args
    /usr/bin/python3 pcaps/gen/difffuzz_ip.py run [--seed S] [--count N] [--out DIR]

A case is a small capture (5-60 packets) built from plausible events (UDP and UDP-Lite flows,
ICMP/ICMPv6 queries, ICMP errors about flows that exist or not, IPv4/IPv6 fragments, IPv4
options, IPv6 extension headers, GRE, SCTP, generic protocols, helper traffic: FTP, TFTP, SIP
calls and registrations, IRC, Amanda, PPTP with its GRE, SANE) of which some are then
perturbed (lengths, checksums, truncation, TTL, flipped bytes). `run` generates cases SEED-0,
SEED-1, ..., compares each with compare.sh (kernel-stamped replay) and keeps every failing case
(capture, arguments, both outputs, the disagreements and a packet listing) under OUT (default
/tmp/difffuzz-ip), with a running summary in OUT/summary.txt.
`gen` rebuilds one case from its seed string (e.g. `gen 7-123 case.pcap`) and prints the
arguments it is compared with. DIFFFUZZ_HELPERS=0 compares with no helpers instead of
`--helper all` (see difffuzz.py). EVENTS=1 (compare.sh's) compares the connection events too.
One case in eight (and half the timed ones) also gives UDP and TCP timeout policies
(`--timeout-policy`, see `Case.policy_args`). SIP dialogs and registrations are also spelt in
the grammar's many ways (`sipgrammar.py`), Amanda replies now and then in other spellings
(`Case.amanda_spelling`); DIFFFUZZ_FOCUS=sip or DIFFFUZZ_FOCUS=amanda makes cases of little else.
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

from scapy.all import (  # noqa: E402
    GRE, ICMP, IP, SCTP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoReply,
    ICMPv6EchoRequest, ICMPv6PacketTooBig, ICMPv6ParamProblem, ICMPv6TimeExceeded, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw,
    SCTPChunkAbort, SCTPChunkCookieAck, SCTPChunkCookieEcho, SCTPChunkData, SCTPChunkHeartbeatReq,
    SCTPChunkInit, SCTPChunkInitAck, SCTPChunkShutdown, SCTPChunkShutdownAck,
    SCTPChunkShutdownComplete, conf, raw,
)

from scapy.layers.sctp import crc32c  # noqa: E402

sys.path.insert(0, HERE)
import scenarios_pptp as pptp  # noqa: E402
import scenarios_sane as sane  # noqa: E402
import sipgrammar as G  # noqa: E402

conf.verb = 0

C4 = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
S4 = ["10.2.0.1", "10.2.0.2", "10.2.0.3"]
R4 = ["10.3.0.1", "192.0.2.9"]
M4 = ["224.0.0.1", "239.1.2.3", "255.255.255.255", "224.0.0.251", "10.2.0.255", "0.0.0.0",
      "127.0.0.1", "240.0.0.1"]
C6 = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"]
S6 = ["2001:db8:2::1", "2001:db8:2::2", "2001:db8:2::3"]
R6 = ["2001:db8:3::1", "2001:db8:3::2"]
M6 = ["ff02::1", "ff05::2", "ff0e::1:3", "fe80::1", "::1", "::"]

# (nf_conntrack_max, nf_conntrack_expect_max and nf_conntrack_buckets cannot be set in the
# oracle's private network namespace on this kernel: the kernel keeps its defaults.)
SYSCTL_VARIANTS = [
    "--sysctl nf_conntrack_checksum=1",
    "--sysctl nf_conntrack_udp_timeout=1 --sysctl nf_conntrack_icmp_timeout=1",
    "--sysctl nf_conntrack_generic_timeout=1 --sysctl nf_conntrack_gre_timeout=1",
    "--sysctl nf_conntrack_acct=1",
    "--sysctl nf_conntrack_icmpv6_timeout=1 --sysctl nf_conntrack_udp_timeout_stream=2",
    "--sysctl nf_conntrack_sctp_timeout_cookie_wait=1 --sysctl nf_conntrack_sctp_timeout_established=2",
    "--sysctl nf_conntrack_tcp_loose=0",
    "--sysctl nf_conntrack_udp_timeout=2 --sysctl nf_conntrack_generic_timeout=2 --sysctl nf_conntrack_icmp_timeout=2"
    " --sysctl nf_conntrack_icmpv6_timeout=2 --sysctl nf_conntrack_gre_timeout=2 --sysctl nf_conntrack_frag6_timeout=2",
]


def icmp6_with_csum(src, dst, body):
    """ICMPv6 message `body` with its checksum (over the IPv6 pseudo-header) filled in."""
    import socket
    body = body[:2] + b"\0\0" + body[4:]
    ph = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
        struct.pack("!IxxxB", len(body), 58)
    return body[:2] + struct.pack("!H", csum16(ph + body)) + body[4:]


def csum16(b):
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class Flow:
    """Something packets can belong to: proto 'udp', 'udplite', 'icmp', 'tcp', 'gre', 'sctp',
    'gen'; a and b are the originator and responder."""

    def __init__(self, v6, proto, a, b, sp=0, dp=0, **kw):
        self.v6, self.proto, self.a, self.b, self.sp, self.dp = v6, proto, a, b, sp, dp
        self.kw = kw


class Case:
    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(str(seed))
        self.items = []      # (time, ip bytes or scapy pkt, note, frame-kind)
        self.flows = []
        self.t = 0.0
        self.realtime = False
        self.far = False     # an ipfrag_max_dist event (see far_fill)
        self.later = []      # fragments held back to arrive later (see held_back)
        self.first_frag = 0.0
        self.tcp = {}

    # ------------------------------------------------------------ helpers

    def r(self):
        return self.rng.random()

    def ch(self, xs):
        return self.rng.choice(xs)

    def ip(self, v6, src, dst, l4, proto=None, **kw):
        if v6:
            p = IPv6(src=src, dst=dst, **kw)
            if proto is not None:
                p.nh = proto
            return p / l4
        p = IP(src=src, dst=dst, **kw)
        if proto is not None:
            p.proto = proto
        return p / l4

    def emit(self, pkt, note="", gap=None):
        if gap is None:
            gap = 0.001
        self.t += gap
        self.items.append([self.t, pkt, note])

    def held_back(self, n):
        """With realtime on, now and then the fragments of a datagram from a random one on
        (of `n`) arrive later: 1.37 s after its first (its queue still there) or 3.37 s (past a
        2-second nf_conntrack_frag6_timeout, whose kernel timer fires within 32 ms of it).
        Returns (index, delay), or (n, 0) for all at once."""
        if not self.realtime or n < 2 or self.r() >= 0.6:
            return n, 0
        return self.rng.randint(1, n - 1), self.ch([1.37, 3.37])

    def emit_frag(self, i, cut, delay, pkt, note):
        """Emits fragment `i` of a datagram now, or `delay` after its first from `cut` on."""
        if i < cut:
            self.emit(pkt, note)
            if i == 0:
                self.first_frag = self.t
        else:
            self.later.append([self.first_frag + delay + 0.001 * (i - cut), pkt, note + f" [{delay} s later]"])

    def hosts(self, v6):
        if v6:
            return self.ch(C6), self.ch(S6)
        return self.ch(C4), self.ch(S4)

    def port(self):
        r = self.r()
        if r < 0.1:
            return self.ch([0, 1, 53, 123, 500, 4500, 65535])
        return self.rng.randint(1024, 65535)

    def payload(self, lo=0, hi=60):
        return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(lo, hi)))

    def gap(self):
        """Most packets follow at once; with realtime on, a few wait a while."""
        if self.realtime and self.r() < 0.25:
            return self.ch([0.5, 1.2, 2.1, 2.6])
        return 0.001

    # ------------------------------------------------------------ L4 builders for a flow

    def l4(self, f, reply, data=None, **kw):
        src, dst = (f.b, f.a) if reply else (f.a, f.b)
        sp, dp = (f.dp, f.sp) if reply else (f.sp, f.dp)
        if data is None:
            data = self.payload()
        if f.proto == "udp":
            l4 = UDP(sport=sp, dport=dp) / Raw(data)
            return self.ip(f.v6, src, dst, l4)
        if f.proto == "udplite":
            cov = f.kw.get("cov", 8)
            hdr = struct.pack("!HHHH", sp, dp, cov, 0) + data
            return self.ip(f.v6, src, dst, Raw(hdr), proto=136)
        if f.proto == "icmp":
            if f.v6:
                ty = ICMPv6EchoReply if reply else ICMPv6EchoRequest
                return self.ip(f.v6, src, dst, ty(id=f.sp, seq=kw.get("seq", 1)) / Raw(data))
            return self.ip(f.v6, src, dst, ICMP(type=0 if reply else 8, id=f.sp, seq=kw.get("seq", 1)) / Raw(data))
        if f.proto == "gre":
            if f.kw.get("ver", 0) == 1:
                # enhanced GRE (PPTP): key holds payload length and call ID of the receiver
                call = f.dp if not reply else f.sp
                l4 = GRE(version=1, key_present=1, proto=0x880B, key=(len(data) << 16) | call) / Raw(data)
            else:
                key = f.kw.get("key")
                l4 = GRE(proto=0x0800, key_present=1 if key is not None else 0, key=key or 0) / Raw(data)
            return self.ip(f.v6, src, dst, l4)
        if f.proto == "gen":
            return self.ip(f.v6, src, dst, Raw(data), proto=f.kw["num"])
        if f.proto == "tcp":
            return self.ip(f.v6, src, dst, TCP(sport=sp, dport=dp, flags=kw.get("flags", "S"),
                                               seq=kw.get("seq", 1000), ack=kw.get("ack", 0)) / Raw(data))
        if f.proto == "sctp":
            vt = f.kw["vtag_b"] if not reply else f.kw["vtag_a"]
            chunk = kw.get("chunk")
            if chunk is None:
                chunk = SCTPChunkData(tsn=self.rng.randint(0, 2**32 - 1), data=data or b"x")
            return self.ip(f.v6, src, dst, SCTP(sport=sp, dport=dp, tag=kw.get("tag", vt)) / chunk)
        raise ValueError(f.proto)

    # ------------------------------------------------------------ events

    def ev_udp(self, v6, proto="udp"):
        a, b = self.hosts(v6)
        if self.r() < 0.1:
            b = self.ch(M6 if v6 else M4)
        f = Flow(v6, proto, a, b, self.port(), self.port(), cov=self.ch([0, 8, 8, 12, 4, 200]))
        self.flows.append(f)
        n = self.rng.randint(1, 4)
        for i in range(n):
            reply = i > 0 and self.r() < 0.5
            self.emit(self.l4(f, reply), f"{proto} {'reply' if reply else 'orig'}", self.gap())
        if self.r() < 0.3:
            self.emit(self.l4(f, True), f"{proto} reply", self.gap())

    def ev_echo(self, v6):
        a, b = self.hosts(v6)
        f = Flow(v6, "icmp", a, b, self.rng.randint(0, 65535))
        self.flows.append(f)
        r = self.r()
        if r < 0.15:
            self.emit(self.l4(f, True), "echo reply without request")
            return
        for seq in range(self.rng.randint(1, 3)):
            self.emit(self.l4(f, False, seq=seq), "echo request", self.gap())
            if self.r() < 0.7:
                self.emit(self.l4(f, True, seq=seq), "echo reply", self.gap())

    def ev_icmp_query(self, v6):
        a, b = self.hosts(v6)
        if self.r() < 0.15:
            b = self.ch(M6 if v6 else M4)
        ident = self.rng.randint(0, 65535)
        if v6:
            ty = self.ch([128, 129, 130, 131, 133, 134, 135, 136, 137, 139, 140, 141, 200, 201, 255, 100, 4])
            body = struct.pack("!BBHHH", ty, self.ch([0, 0, 1]), 0, ident, 1) + self.payload(0, 24)
            if self.r() < 0.9:
                body = icmp6_with_csum(a, b, body)
            self.emit(IPv6(src=a, dst=b, nh=58, hlim=self.ch([64, 255])) / Raw(body), f"icmpv6 type {ty}")
            if ty in (128, 139) and self.r() < 0.6:
                rt = ty + 1
                body = icmp6_with_csum(b, a, struct.pack("!BBHHH", rt, 0, 0, ident, 1))
                self.emit(IPv6(src=b, dst=a, nh=58) / Raw(body), f"icmpv6 type {rt}")
            return
        pairs = [(8, 0), (13, 14), (15, 16), (17, 18), (10, 9), (42, 43), (6, None), (1, None), (19, None),
                 (0, None), (14, None), (16, None), (18, None), (40, None), (255, None)]
        q, rp = self.ch(pairs)
        code = self.ch([0, 0, 0, 1, 255])
        body = ICMP(type=q, code=code, id=ident, seq=1) / Raw(self.payload(0, 20))
        self.emit(IP(src=a, dst=b) / body, f"icmp type {q}")
        if rp is not None and self.r() < 0.7:
            self.emit(IP(src=b, dst=a) / ICMP(type=rp, code=0, id=ident, seq=1), f"icmp type {rp}")

    def ev_tcp(self, v6):
        a, b = self.hosts(v6)
        f = Flow(v6, "tcp", a, b, self.port(), self.ch([80, 443, 22, self.port()]))
        self.flows.append(f)
        self.emit(self.l4(f, False, data=b"", flags="S", seq=1000), "tcp syn")
        if self.r() < 0.7:
            self.emit(self.l4(f, True, data=b"", flags="SA", seq=5000, ack=1001), "tcp synack")
            if self.r() < 0.7:
                self.emit(self.l4(f, False, data=b"", flags="A", seq=1001, ack=5001), "tcp ack")

    def ev_gre(self, v6):
        a, b = self.hosts(v6)
        ver = self.ch([0, 0, 1])
        f = Flow(v6, "gre", a, b, self.rng.randint(0, 65535), self.rng.randint(0, 65535), ver=ver,
                 key=self.ch([None, 7, self.rng.randint(0, 2**32 - 1)]))
        self.flows.append(f)
        for _ in range(self.rng.randint(1, 4)):
            rep = self.r() < 0.4
            self.emit(self.l4(f, rep), f"gre v{ver} {'reply' if rep else 'orig'}", self.gap())

    def ev_generic(self, v6):
        a, b = self.hosts(v6)
        num = self.ch([33, 50, 51, 99, 103, 112, 115, 253, 254, 41, 4, 94, 2, 89, 0, 255, 59, 43, 60])
        if v6 and num in (0, 43, 60, 44):
            num = 99
        f = Flow(v6, "gen", a, b, num=num)
        self.flows.append(f)
        for _ in range(self.rng.randint(1, 3)):
            rep = self.r() < 0.4
            self.emit(self.l4(f, rep), f"proto {num} {'reply' if rep else 'orig'}", self.gap())

    def ev_sctp(self, v6):
        a, b = self.hosts(v6)
        va, vb = self.rng.randint(1, 2**32 - 1), self.rng.randint(1, 2**32 - 1)
        f = Flow(v6, "sctp", a, b, self.port(), self.ch([36412, 2905, self.port()]), vtag_a=va, vtag_b=vb)
        self.flows.append(f)
        steps = [
            (False, SCTPChunkInit(init_tag=va, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1), 0),
            (True, SCTPChunkInitAck(init_tag=vb, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1), va),
            (False, SCTPChunkCookieEcho(cookie=b"cookie!!"), vb),
            (True, SCTPChunkCookieAck(), va),
            (False, SCTPChunkData(tsn=1, data=b"hello"), vb),
            (True, SCTPChunkData(tsn=1, data=b"world"), va),
            (False, SCTPChunkHeartbeatReq(), vb),
            (False, SCTPChunkShutdown(), vb),
            (True, SCTPChunkShutdownAck(), va),
            (False, SCTPChunkShutdownComplete(), vb),
        ]
        n = self.rng.randint(1, len(steps))
        for i, (rep, chunk, tag) in enumerate(steps[:n]):
            if self.r() < 0.1:
                tag = self.rng.randint(0, 2**32 - 1)                       # wrong vtag
            if self.r() < 0.08:
                chunk = SCTPChunkAbort()
                rep = self.r() < 0.5
            if self.r() < 0.05:
                continue                                                    # a lost chunk
            self.emit(self.l4(f, rep, chunk=chunk, tag=tag), f"sctp {chunk.name}", self.gap())

    def ev_own_inverse(self, v6):
        """A flow whose tuple is its own inverse (one address and port at both ends, as a LAND
        attack sends): the kernel finds every packet after the first in the reply direction."""
        a, _ = self.hosts(v6)
        proto = self.ch(["udp", "udp", "tcp", "tcp", "gre", "gen", "sctp"])
        p = self.port()
        if proto == "gen":
            f = Flow(v6, "gen", a, a, num=self.ch([99, 253]))
        elif proto == "gre":
            f = Flow(v6, "gre", a, a, p, p, ver=0, key=None)
        elif proto == "sctp":
            f = Flow(v6, "sctp", a, a, p, p, vtag_a=7, vtag_b=7)
        else:
            f = Flow(v6, proto, a, a, p, p)
        self.flows.append(f)
        for i in range(self.rng.randint(2, 5)):
            rep = self.r() < 0.5
            if proto == "tcp":
                flags = self.ch(["S", "S", "SA", "A", "PA", "FA", "R"])
                data = self.payload(1, 20) if "P" in flags else b""
                pkt = self.l4(f, rep, data=data, flags=flags, seq=1000 + 7 * i, ack=1001 + 7 * i)
            elif proto == "sctp":
                chunk = self.ch([SCTPChunkInit(init_tag=7, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1),
                                 SCTPChunkInitAck(init_tag=7, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1),
                                 SCTPChunkData(tsn=1, data=b"x"), SCTPChunkAbort()])
                pkt = self.l4(f, rep, chunk=chunk, tag=self.ch([0, 7]))
            else:
                pkt = self.l4(f, rep)
            self.emit(pkt, f"own-inverse {proto}", self.gap())

    def ev_sctp_raw(self, v6):
        """SCTP packets of hand-made chunk bundles: any chunk types and flags, odd lengths,
        tags right or wrong, both directions."""
        a, b = self.hosts(v6)
        sp, dp = self.port(), self.port()
        va, vb = self.rng.randint(1, 2**32 - 1), self.rng.randint(1, 2**32 - 1)

        def chunk():
            ty = self.ch([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 192, 193, 63, 128, 130])
            flags = self.ch([0, 0, 1, 2, 3, 7])
            if ty in (1, 2):                                          # INIT, INIT ACK
                body = struct.pack("!IIHHI", self.ch([va, vb, 0]), 65535, 1, 1, 1)
            elif ty == 3:                                             # SACK
                body = struct.pack("!IIHH", 1, 65535, 0, 0)
            elif ty in (4, 5):                                        # HEARTBEAT (ACK)
                body = struct.pack("!HH", 1, 8) + b"hbinfo!!"[:4]
            else:
                body = bytes(self.rng.getrandbits(8) for _ in range(self.ch([0, 4, 8, 5])))
            ln = 4 + len(body)
            if self.r() < 0.1:
                ln = self.ch([0, 2, 3, ln + 8])
            c = struct.pack("!BBH", ty, flags, ln) + body
            return c + bytes(-len(c) % 4)
        for _ in range(self.rng.randint(1, 6)):
            rep = self.r() < 0.45
            chunks = b"".join(chunk() for _ in range(self.ch([1, 1, 1, 2, 3])))
            tag = self.ch([0, va, vb, va if rep else vb, self.rng.randint(0, 2**32 - 1)])
            src, dst, s_, d_ = (b, a, dp, sp) if rep else (a, b, sp, dp)
            hdr = struct.pack("!HHII", s_, d_, tag, 0)
            pkt = self.ip(v6, src, dst, Raw(hdr + chunks), proto=132)
            b_ = bytearray(raw(pkt))
            hl = 40 if v6 else 20
            if self.r() < 0.9:
                b_[hl + 8:hl + 12] = struct.pack(">I", crc32c(bytes(b_[hl:])))
            self.emit(bytes(b_), f"sctp raw {chunks[:1].hex()} tag {tag:#x}", self.gap())

    def quoted_packet(self, v6):
        """A packet some host sent (of a known flow or not): (sender, receiver, packet)."""
        fl = [f for f in self.flows if f.v6 == v6]
        if fl and self.r() < 0.8:
            f = self.ch(fl)
            reply = self.r() < 0.35
            p = self.l4(f, reply, data=self.payload(0, 30), flags="S", seq=1000, ack=0) if f.proto == "tcp" else \
                self.l4(f, reply, data=self.payload(0, 30))
            if isinstance(p, tuple):
                p = p[0]
            if self.r() < 0.1:
                # a port of the flow off by one: no match
                if p.haslayer(UDP):
                    p[UDP].sport = (p[UDP].sport + 1) % 65536
            return (f.b, f.a, p) if reply else (f.a, f.b, p)
        a, b = self.hosts(v6)
        proto = self.ch(["udp", "tcp", "icmp", "gre", "sctp", "gen", "udplite"])
        f = Flow(v6, proto, a, b, self.port(), self.port(), num=99, vtag_a=1, vtag_b=2, key=None, ver=0)
        p = self.l4(f, False, data=self.payload(0, 20))
        if isinstance(p, tuple):
            p = p[0]
        return a, b, p

    def ev_icmp_error(self, v6):
        sender, receiver, q = self.quoted_packet(v6)
        if self.r() < 0.1 and self.items:
            # an error about an earlier error (or any earlier packet)
            prev = self.ch(self.items)[1]
            if not isinstance(prev, bytes):
                q = prev
                if (IPv6 in q) == v6:
                    sender, receiver = (q[IPv6].src, q[IPv6].dst) if v6 else (q[IP].src, q[IP].dst)
                else:
                    return
        qb = raw(q)
        hl = 40 if v6 else (qb[0] & 15) * 4
        if v6 and q.haslayer(IPv6ExtHdrFragment):
            hl = 48
        r = self.r()
        if r < 0.06 and not v6:
            qb = qb[:6] + struct.pack("!H", self.ch([0x2000, 0x2001, 0x0003, 0x4000])) + qb[8:]  # quoted fragment
        elif r < 0.1 and not v6:
            qb = bytes([0x46]) + qb[1:2] + struct.pack("!H", len(qb) + 4) + qb[4:20] + b"\x01\x01\x01\x00" + qb[20:]
            hl = 24                                                            # quoted options
        elif r < 0.14 and v6:
            ext = self.ch([bytes([qb[6], 0, 1, 4, 0, 0, 0, 0]),                # destination options
                           bytes([qb[6], 0, 0, 0]) + struct.pack("!I", self.rng.randint(0, 2**32 - 1)),
                           bytes([qb[6], 0]) + struct.pack("!H", self.ch([0, 1, 8, 9])) + b"\0\0\0\x07"])
            nh = 60 if len(ext) == 8 and ext[2] == 1 else 44
            qb = qb[:4] + struct.pack("!H", len(qb) - 40 + len(ext)) + bytes([nh]) + qb[7:40] + ext + qb[40:]
            hl = 40 + len(ext)
        r = self.r()
        if r < 0.5:
            qb = qb[:hl + 8]
        elif r < 0.6:
            qb = qb[:hl + self.ch([0, 2, 4, 6])]
        elif r < 0.65:
            qb = qb[:self.rng.randint(0, hl)]
        elif r < 0.7 and not v6:
            qb = qb[:2] + struct.pack("!H", self.ch([20, 28, 1500, 0])) + qb[4:hl + 8]   # odd inner length
        src = self.ch([q[IPv6].dst if v6 else q[IP].dst] + (R6 if v6 else R4))
        dst = q[IPv6].src if v6 else q[IP].src
        if self.r() < 0.08:
            dst = self.ch((C6 + S6) if v6 else (C4 + S4))                      # the wrong host
        if v6:
            ty, code = self.ch([(1, 0), (1, 1), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (2, 0), (3, 0),
                                (3, 1), (4, 0), (4, 1), (4, 2), (137, 0), (128, 0)])
            rest = struct.pack("!I", 1280 if ty == 2 else self.ch([0, 6, 40]))
            body = struct.pack("!BBH", ty, code, 0) + rest + qb
            if self.r() < 0.9:
                body = icmp6_with_csum(src, dst, body)
            self.emit(IPv6(src=src, dst=dst, nh=58) / Raw(body), f"icmpv6 error {ty}/{code} quoting {q.summary()}")
            return
        ty, code = self.ch([(3, 0), (3, 1), (3, 3), (3, 4), (3, 13), (11, 0), (11, 1), (12, 0), (12, 1),
                            (4, 0), (5, 0), (5, 1), (5, 2), (5, 3), (0, 0), (8, 0), (13, 0), (9, 0), (3, 77)])
        rest = struct.pack("!HH", 0, 1280) if (ty, code) == (3, 4) else \
            (bytes([10, 3, 0, 2]) if ty == 5 else (bytes([self.ch([0, 9, 20]), 0, 0, 0]) if ty == 12 else b"\0" * 4))
        body = bytearray(struct.pack("!BBH", ty, code, 0) + rest + qb)
        if self.r() < 0.9:
            body[2:4] = struct.pack("!H", csum16(bytes(body)))
        self.emit(IP(src=src, dst=dst, proto=1) / Raw(bytes(body)), f"icmp error {ty}/{code} quoting {q.summary()}")

    def ev_frag4(self):
        a, b = self.hosts(False)
        kind = self.ch(["udp", "udp", "icmp", "gen", "gre", "sctp", "tcp"])
        f = Flow(False, kind, a, b, self.port(), self.ch([self.port(), 69, 5060]), num=99, key=None, ver=0,
                 vtag_a=5, vtag_b=6)
        if self.r() < 0.5:
            self.flows.append(f)
        rep = self.r() < 0.2
        p = self.l4(f, rep, data=self.payload(20, 300))
        if isinstance(p, tuple):
            p = p[0]
        p[IP].id = self.rng.randint(0, 65535)
        b = raw(p)
        hl = 20
        hdr, data = bytearray(b[:hl]), b[hl:]
        size = self.ch([8, 16, 24, 64, 128, 8 * self.rng.randint(1, 20)])
        frags = []
        off = 0
        while off < len(data):
            chunk = data[off:off + size]
            frags.append((off, chunk, off + size < len(data)))
            off += size
        mode = self.ch(["order", "order", "reverse", "shuffle", "dup", "missing", "overlap", "tiny", "single",
                        "far"])
        if mode == "reverse":
            frags.reverse()
        elif mode == "shuffle":
            self.rng.shuffle(frags)
        elif mode == "dup" and frags:
            i = self.rng.randrange(len(frags))
            frags.insert(self.rng.randrange(len(frags) + 1), frags[i])
        elif mode == "missing" and len(frags) > 1:
            del frags[self.rng.randrange(len(frags))]
        elif mode == "overlap" and frags:
            o, c, mf = self.ch(frags)
            o2 = max(0, o - 8 * self.rng.randint(0, 2))
            frags.insert(self.rng.randrange(len(frags) + 1), (o2, data[o2:o2 + len(c) + 8 * self.rng.randint(0, 2)],
                                                              o2 + len(c) < len(data) or mf))
            if self.r() < 0.3:
                frags.insert(0, (o2, bytes(len(c)), True))                     # differing bytes
        elif mode == "tiny":
            frags = [(0, data[:8], True), (8, data[8:], False)]
        elif mode == "single":
            frags = [(0, data, self.r() < 0.5)] if self.r() < 0.5 else [(8 * self.rng.randint(1, 4), data[:40], False)]
        if len(frags) > 30:
            frags = frags[:30]
        if mode == "far" and frags:
            # ipfrag_max_dist (64): other fragments from the same source, around the limit,
            # between two of the datagram's (some of them whole datagrams, which count too).
            frags.insert(self.rng.randint(1, len(frags)), ("fill", self.rng.randint(55, 75)))
        cut, delay = (len(frags), 0) if mode == "far" else self.held_back(len(frags))
        for i, item in enumerate(frags):
            if item[0] == "fill":
                self.far_fill(hdr, data, item[1])
                continue
            o, c, mf = item
            h = bytearray(hdr)
            flags = (0x2000 if mf else 0) | (0x4000 if self.r() < 0.05 else 0)
            h[6:8] = struct.pack("!H", flags | (o // 8))
            h[2:4] = struct.pack("!H", hl + len(c))
            h[10:12] = b"\0\0"
            h[10:12] = struct.pack("!H", csum16(bytes(h)))
            self.emit_frag(i, cut, delay, bytes(h) + c, f"v4 frag {mode} off {o} len {len(c)} mf {int(mf)} of {kind}")

    def far_fill(self, hdr, data, n):
        """n fragments from the source of IPv4 header hdr, of other datagrams: first fragments
        left incomplete, and now and then both halves of a whole one."""
        own = struct.unpack("!H", hdr[4:6])[0]
        self.far = True
        sent = 0
        while sent < n:
            ident = (own + self.rng.randint(1, 65534)) % 65536
            pieces = [(0, data[:8] or b"\0" * 8, True)]
            if self.r() < 0.3 and sent + 2 <= n:
                pieces.append((8, b"\0" * 8, False))
            for o, c, mf in pieces:
                h = bytearray(hdr)
                h[4:6] = struct.pack("!H", ident)
                h[6:8] = struct.pack("!H", (0x2000 if mf else 0) | (o // 8))
                h[2:4] = struct.pack("!H", 20 + len(c))
                h[10:12] = b"\0\0"
                h[10:12] = struct.pack("!H", csum16(bytes(h)))
                self.emit(bytes(h) + c, f"v4 frag far filler id {ident} off {o} mf {int(mf)}")
                sent += 1

    def ev_frag6(self):
        a, b = self.hosts(True)
        kind = self.ch(["udp", "udp", "icmp", "gen", "tcp", "sctp"])
        f = Flow(True, kind, a, b, self.port(), self.ch([self.port(), 69, 5060]), num=99, vtag_a=5, vtag_b=6)
        if self.r() < 0.5:
            self.flows.append(f)
        p = self.l4(f, self.r() < 0.2, data=self.payload(20, 300))
        if isinstance(p, tuple):
            p = p[0]
        b = raw(p)
        nh = b[6]
        data = b[40:]
        ident = self.rng.randint(0, 2**32 - 1)
        size = self.ch([8, 16, 64, 128, 8 * self.rng.randint(1, 20)])
        frags = []
        off = 0
        while off < len(data):
            frags.append((off, data[off:off + size], off + size < len(data)))
            off += size
        mode = self.ch(["order", "order", "reverse", "dup", "missing", "overlap", "atomic"])
        if mode == "reverse":
            frags.reverse()
        elif mode == "dup" and frags:
            frags.append(frags[0])
        elif mode == "missing" and len(frags) > 1:
            del frags[self.rng.randrange(len(frags))]
        elif mode == "overlap" and len(frags) > 1:
            o, c, mf = frags[1]
            frags.insert(1, (o - 8, data[o - 8:o + len(c)], mf))
        elif mode == "atomic":
            frags = [(0, data, False)]
        pre = b""
        first_nh = 44
        if self.r() < 0.2:
            pre = bytes([44, 0, 1, 4, 0, 0, 0, 0])                              # hop-by-hop before it
            first_nh = 0
        frags = frags[:30]
        cut, delay = self.held_back(len(frags))
        for i, (o, c, mf) in enumerate(frags):
            fh = struct.pack("!BBHI", nh, 0, o | (1 if mf else 0), ident)
            body = pre + fh + c
            h = bytearray(b[:40])
            h[6] = first_nh
            h[4:6] = struct.pack("!H", len(body))
            self.emit_frag(i, cut, delay, bytes(h) + body, f"v6 frag {mode} off {o} len {len(c)} mf {int(mf)} of {kind}")

    def ev_frag_wild(self, v6):
        """Fragments cut at random: any offsets, lengths and more-fragments flags over a real
        datagram (UDP, TCP, ICMP echo or an ICMP error), IPv4 options or IPv6 extension
        headers before the fragment header, fragments of two datagrams interleaved."""
        a, b = self.hosts(v6)
        kind = self.ch(["udp", "tcp", "icmp", "error", "gen"])
        if kind == "error":
            sender, receiver, q = self.quoted_packet(v6)
            body = struct.pack("!BBHI", 1 if v6 else 3, self.ch([0, 3, 4]), 0, 0) + raw(q)
            a, b = q[IPv6].dst if v6 else q[IP].dst, q[IPv6].src if v6 else q[IP].src
            body = icmp6_with_csum(a, b, body) if v6 else body[:2] + struct.pack("!H", csum16(body)) + body[4:]
            data, proto = body, 58 if v6 else 1
        else:
            f = Flow(v6, kind, a, b, self.port(), self.ch([self.port(), 69, 5060, 21]), num=99)
            if self.r() < 0.5:
                self.flows.append(f)
            b_ = raw(self.l4(f, self.r() < 0.2, data=self.payload(0, 200), flags="S", seq=9))
            data, proto = b_[40:] if v6 else b_[20:], b_[6] if v6 else b_[9]
        ident = self.rng.randint(0, 2**32 - 1 if v6 else 65535)
        cuts = []
        n = self.rng.randint(1, 6)
        for _ in range(n):
            off = 8 * self.rng.randint(0, max(0, len(data) // 8))
            ln = self.ch([8, 16, 24, 1, 7, 13, 48, len(data) - off, 8 * self.rng.randint(1, 8)])
            cuts.append((off, max(0, ln), off + ln < len(data) if self.r() < 0.85 else self.r() < 0.5))
        if self.r() < 0.5:
            cuts.insert(0, (0, 8 * self.rng.randint(1, 4), True))
        if self.r() < 0.5:
            last = 8 * self.rng.randint(1, max(1, len(data) // 8))
            cuts.append((min(last, len(data)), len(data) - min(last, len(data)), False))
        opts = b""
        if not v6 and self.r() < 0.25:
            opts = self.ch([b"\x01\x01\x01\x00", b"\x94\x04\x00\x00", b"\x07\x07\x04\x00\x00\x00\x00\x00"])
        pre = b""
        pre_nh = 44
        if v6 and self.r() < 0.3:
            pre = self.ch([bytes([44, 0, 1, 4, 0, 0, 0, 0]),                          # hop-by-hop
                           bytes([44, 0, 0, 0, 0, 0, 0, 0]) + b""])                   # routing type 0, 0 left
            pre_nh = 0 if pre[2] == 1 else 43
        for off, ln, mf in cuts:
            chunk = data[off:off + ln]
            if v6:
                fh = struct.pack("!BBHI", proto, 0, off | int(mf), ident)
                body = pre + fh + chunk
                h = raw(IPv6(src=a, dst=b, nh=pre_nh if pre else 44, plen=len(body)))
                self.emit(h + body, f"v6 wild frag off {off} len {len(chunk)} mf {int(mf)} of {kind}")
            else:
                hl = 20 + len(opts)
                h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, 0, hl + len(chunk), ident,
                                          (0x2000 if mf else 0) | off // 8, 64, proto, 0,
                                          bytes(map(int, a.split("."))), bytes(map(int, b.split(".")))) + opts)
                h[10:12] = struct.pack("!H", csum16(bytes(h)))
                self.emit(bytes(h) + chunk, f"v4 wild frag off {off} len {len(chunk)} mf {int(mf)} of {kind}")

    def ev_ipopts(self):
        a, b = self.hosts(False)
        opts = self.ch([
            b"\x01\x01\x01\x00",                      # NOPs, EOL
            b"\x94\x04\x00\x00",                      # router alert
            b"\x07\x07\x04\x00\x00\x00\x00\x00",     # record route
            b"\x44\x0c\x05\x00" + b"\0" * 8,          # timestamp
            b"\x83\x07\x04\x0a\x02\x00\x01\x00",     # LSRR
            b"\x89\x07\x04\x0a\x02\x00\x01\x00",     # SSRR
            b"\x9e\x04\x00\x00",                      # unknown option
            b"\x07\x28\x04\x00",                      # length beyond the header
            b"\x01\x00\x07\x03",                      # after EOL
            b"\x44\x04\x05\x01",                      # timestamp too short
            b"\x82\x0b" + b"\0" * 9 + b"\0",          # security
        ])
        kind = self.ch(["udp", "icmp", "gen"])
        f = Flow(False, kind, a, b, self.port(), self.port(), num=99)
        self.flows.append(f)
        b = raw(self.l4(f, False))
        opts += bytes(-len(opts) % 4)
        h = bytearray(b[:20] + opts)
        h[0] = 0x40 | (len(h) // 4)
        h[2:4] = struct.pack("!H", len(b) + len(opts))
        h[10:12] = b"\0\0"
        h[10:12] = struct.pack("!H", csum16(bytes(h)))
        self.emit(bytes(h) + b[20:], f"ipv4 options {opts.hex()}")
        if self.r() < 0.5:
            self.emit(self.l4(f, True), "reply without options")

    def ev_ext6(self):
        a, b = self.hosts(True)
        kind = self.ch(["udp", "icmp", "gen", "tcp", "udplite"])
        f = Flow(True, kind, a, b, self.port(), self.port(), num=99, cov=8)
        self.flows.append(f)
        p = self.l4(f, False)
        if isinstance(p, tuple):
            p = p[0]
        inner = p[IPv6].payload
        chain = []
        for _ in range(self.rng.randint(1, 4)):
            chain.append(self.ch(["hbh", "rt0", "rt2", "rt4", "dst", "dst", "frag0", "nonext"]))
        hdr = IPv6(src=a, dst=b)
        ext = None
        for e in chain:
            if e == "hbh":
                x = IPv6ExtHdrHopByHop()
            elif e.startswith("rt"):
                x = IPv6ExtHdrRouting(type=int(e[2:]), segleft=self.ch([0, 0, 1]), addresses=[self.ch(S6)])
            elif e == "dst":
                x = IPv6ExtHdrDestOpt()
            elif e == "frag0":
                x = IPv6ExtHdrFragment(m=0, offset=0, id=self.rng.randint(0, 2**32 - 1))
            else:
                x = IPv6ExtHdrDestOpt()
            ext = x if ext is None else ext / x
        if "nonext" in chain:
            pkt = hdr / ext
        else:
            pkt = hdr / ext / inner
        self.emit(pkt, f"ipv6 ext {'-'.join(chain)} {kind}")
        if self.r() < 0.5:
            rp = self.l4(f, True)
            self.emit(rp[0] if isinstance(rp, tuple) else rp, "plain reply")

    def tcp_session(self, v6, a, b, sp, dp):
        """A TCP handshake; returns a sender of data segments (reply flag, payload)."""
        st = {"a": self.rng.randint(0, 2**31), "b": self.rng.randint(0, 2**31)}
        f = Flow(v6, "tcp", a, b, sp, dp)
        self.emit(self.l4(f, False, data=b"", flags="S", seq=st["a"]), "tcp syn")
        self.emit(self.l4(f, True, data=b"", flags="SA", seq=st["b"], ack=st["a"] + 1), "tcp synack")
        st["a"] += 1
        st["b"] += 1
        self.emit(self.l4(f, False, data=b"", flags="A", seq=st["a"], ack=st["b"]), "tcp ack")

        def send(reply, data, note=""):
            me, them = ("b", "a") if reply else ("a", "b")
            self.emit(self.l4(f, reply, data=data, flags="PA", seq=st[me], ack=st[them]), note or f"tcp data {data[:40]!r}")
            st[me] += len(data)
        return send

    def ev_ftp(self, v6):
        a, b = self.hosts(v6)
        sp = self.rng.randint(1024, 65535)
        send = self.tcp_session(v6, a, b, sp, 21)
        send(True, b"220 ready\r\n")
        port = self.rng.randint(1024, 65535)
        sep = self.ch([" ", "  ", "\t", ""])
        mode = self.ch(["PORT", "PASV", "EPRT", "EPSV"])
        if mode == "PORT" and not v6:
            addr = a if self.r() < 0.8 else self.ch(C4)
            nums = addr.split(".") + [str(port >> 8), str(port & 255)]
            cmd = self.ch(["PORT", "port", "Port"]) + sep + ",".join(nums) + self.ch(["", ",", " ", "x"]) + "\r\n"
            send(False, cmd.encode())
            send(True, b"200 ok\r\n")
            data_src, data_dst, dsp, ddp = b, a, 20, port
        elif mode == "EPRT" or (mode == "PORT" and v6):
            fam = "2" if v6 else "1"
            d = self.ch(["|", "!", "|"])
            cmd = f"EPRT{sep}{d}{fam}{d}{a}{d}{port}{d}\r\n"
            send(False, cmd.encode())
            send(True, b"200 ok\r\n")
            data_src, data_dst, dsp, ddp = b, a, 20, port
        elif mode == "PASV" and not v6:
            send(False, b"PASV\r\n")
            nums = b.split(".") + [str(port >> 8), str(port & 255)]
            resp = "227 Entering Passive Mode" + self.ch([" (", "(", " ", " =", " (x"]) + ",".join(nums) + ")\r\n"
            send(True, resp.encode())
            data_src, data_dst, dsp, ddp = a, b, self.rng.randint(1024, 65535), port
        else:
            send(False, b"EPSV\r\n")
            resp = f"229 Entering Extended Passive Mode{sep}(|||{port}|)\r\n"
            send(True, resp.encode())
            data_src, data_dst, dsp, ddp = a, b, self.rng.randint(1024, 65535), port
        if self.r() < 0.8:
            df = Flow(v6, "tcp", data_src, data_dst, dsp, ddp)
            self.emit(self.l4(df, False, data=b"", flags="S", seq=77), "ftp data syn")
            self.emit(self.l4(df, True, data=b"", flags="SA", seq=99, ack=78), "ftp data synack")

    def ev_tftp(self, v6):
        a, b = self.hosts(v6)
        f = Flow(v6, "udp", a, b, self.port(), 69)
        self.emit(self.l4(f, False, data=b"\x00\x01file.bin\x00octet\x00"), "tftp rrq")
        g = Flow(v6, "udp", b, a, self.rng.randint(1024, 65535), f.sp)
        if self.r() < 0.2:
            g.a = self.ch(S6 if v6 else S4)
        self.emit(self.l4(g, False, data=b"\x00\x03\x00\x01" + b"D" * 20), "tftp data from a new port")
        self.emit(self.l4(g, True, data=b"\x00\x04\x00\x01"), "tftp ack")

    def ev_sip(self, v6):
        a, b = self.hosts(v6)
        sp = self.ch([5060, self.rng.randint(1024, 65535)])
        f = Flow(v6, "udp", a, b, sp, 5060)
        rtp = self.rng.randint(1024, 65535) & ~1
        ipv = "IP6" if v6 else "IP4"
        sdp = (f"v=0\r\no=- 1 1 IN {ipv} {a}\r\ns=-\r\nc=IN {ipv} {a}\r\nt=0 0\r\n"
               f"m=audio {rtp} RTP/AVP 0\r\n")
        host = f"[{a}]" if v6 else a
        bhost = f"[{b}]" if v6 else b
        msg = (f"INVITE sip:bob@{bhost} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{sp};branch=z9hG4bK1\r\n"
               f"From: <sip:alice@{host}>;tag=1\r\nTo: <sip:bob@{bhost}>\r\nCall-ID: {self.rng.randint(0, 10**9)}@x\r\n"
               f"CSeq: 1 INVITE\r\nContact: <sip:alice@{host}:{sp}>\r\nContent-Type: application/sdp\r\n"
               f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        if self.r() < 0.2:
            msg = msg.replace("Content-Length: ", self.ch(["l: ", "Content-Length:", "Content-Length:  "]))
        self.emit(self.l4(f, False, data=msg.encode()), "sip invite")
        if self.r() < 0.7:
            m = Flow(v6, "udp", b, a, self.rng.randint(1024, 65535), rtp)
            self.emit(self.l4(m, False, data=b"\x80\x00" + b"R" * 20), "rtp to the offered port")
            m2 = Flow(v6, "udp", b, a, self.rng.randint(1024, 65535), rtp + 1)
            self.emit(self.l4(m2, False, data=b"\x80\xc8" + b"R" * 20), "rtcp to the offered port")

    def ev_sip_reply(self, v6):
        """A SIP call answered: INVITE with SDP, 200 OK with SDP, media both ways, maybe BYE."""
        a, b = self.hosts(v6)
        f = Flow(v6, "udp", a, b, 5060, 5060)
        ipv = "IP6" if v6 else "IP4"
        host = lambda x: f"[{x}]" if v6 else x  # noqa: E731
        call = self.rng.randint(0, 10**9)
        ports = {a: self.rng.randint(1024, 65000) & ~1, b: self.rng.randint(1024, 65000) & ~1}

        def msg(first, frm, to, cseq, sdp_of):
            sdp = ""
            if sdp_of:
                sdp = (f"v=0\r\no=- 1 1 IN {ipv} {sdp_of}\r\ns=-\r\nc=IN {ipv} {sdp_of}\r\nt=0 0\r\n"
                       f"m=audio {ports[sdp_of]} RTP/AVP 0\r\n")
            return (f"{first}\r\nVia: SIP/2.0/UDP {host(frm)}:5060;branch=z9hG4bK{cseq}\r\n"
                    f"From: <sip:a@{host(a)}>;tag=1\r\nTo: <sip:b@{host(b)}>;tag=2\r\nCall-ID: {call}@x\r\n"
                    f"CSeq: {cseq}\r\nContact: <sip:x@{host(frm)}:5060>\r\n"
                    + (f"Content-Type: application/sdp\r\n" if sdp else "")
                    + f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
        self.emit(self.l4(f, False, data=msg(f"INVITE sip:b@{host(b)} SIP/2.0", a, b, "1 INVITE", a)), "sip invite")
        if self.r() < 0.8:
            code = self.ch(["200 OK", "200 OK", "183 Session Progress", "486 Busy Here", "180 Ringing"])
            self.emit(self.l4(f, True, data=msg(f"SIP/2.0 {code}", b, a, "1 INVITE",
                                                b if code[0] in "12" else None)), f"sip {code}")
        for x, y in ((b, a), (a, b)):
            if self.r() < 0.6:
                m = Flow(v6, "udp", x, y, ports[x], ports[y])
                self.emit(self.l4(m, False, data=b"\x80\x00" + b"M" * 12), "rtp", self.gap())
        if self.r() < 0.3:
            self.emit(self.l4(f, self.r() < 0.5, data=msg(f"BYE sip:b@{host(b)} SIP/2.0", a, b, "2 BYE", None)),
                      "sip bye")

    def ev_sip_register(self, v6):
        """A SIP registration: REGISTER with a Contact port (the kernel expects signalling from
        the registrar, any port, to it: PERMANENT, with the SIP helper for the connection it
        becomes), maybe refused, answered with an expiry (0 unregisters), then maybe a call
        from the registrar to the contact, which the helper reads as it reads its master.
        Everything after it in the case runs while that connection has a helper of its own."""
        a, b = self.hosts(v6)
        host = lambda x: f"[{x}]" if v6 else x  # noqa: E731
        ipv = "IP6" if v6 else "IP4"
        f = Flow(v6, "udp", a, b, self.ch([5060, self.rng.randint(1024, 65535)]), 5060)
        cport = self.ch([5062, self.rng.randint(1024, 65535)])
        call = self.rng.randint(0, 10**9)
        contact = f"Contact: <sip:alice@{host(a)}:{cport}>"
        if self.r() < 0.2:
            contact = f"m: <sip:alice@{host(a)}:{cport}>"

        def msg(first, cseq, extra, sdp_of=None, rtp=0):
            body = ""
            if sdp_of:
                body = (f"v=0\r\no=- 1 1 IN {ipv} {sdp_of}\r\ns=-\r\nc=IN {ipv} {sdp_of}\r\nt=0 0\r\n"
                        f"m=audio {rtp} RTP/AVP 0\r\n")
            return (f"{first}\r\nVia: SIP/2.0/UDP {host(a)}:{f.sp};branch=z9hG4bK{cseq.split()[0]}\r\n"
                    f"From: <sip:alice@{host(b)}>;tag=1\r\nTo: <sip:alice@{host(b)}>\r\n"
                    f"Call-ID: {call}@x\r\nCSeq: {cseq}\r\n" + "".join(e + "\r\n" for e in extra)
                    + ("Content-Type: application/sdp\r\n" if body else "")
                    + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
        expires = self.ch(["3600", "600", "0", "60"])
        self.emit(self.l4(f, False, data=msg(f"REGISTER sip:{host(b)} SIP/2.0", "1 REGISTER",
                                             [contact, f"Expires: {expires}"])), "sip register")
        if self.r() < 0.85:
            code = self.ch(["200 OK", "200 OK", "200 OK", "401 Unauthorized", "100 Trying"])
            ext = self.ch(["", f";expires={expires}", ";expires=300"])
            self.emit(self.l4(f, True, data=msg(f"SIP/2.0 {code}", "1 REGISTER", [contact + ext])),
                      f"sip register {code}")
        for _ in range(self.ch([0, 1, 1, 2])):
            # The registrar calls the contact from a port of its own (maybe its own 5060).
            c = Flow(v6, "udp", b, a, self.ch([5060, self.rng.randint(1024, 65535)]), cport)
            rtp = self.rng.randint(1024, 65000) & ~1
            self.emit(self.l4(c, False, data=msg(f"INVITE sip:alice@{host(a)}:{cport} SIP/2.0", "1 INVITE",
                                                 [f"Contact: <sip:reg@{host(b)}:{c.sp}>"], b, rtp)),
                      "sip call to the contact")
            if self.r() < 0.7:
                mine = self.rng.randint(1024, 65000) & ~1
                self.emit(self.l4(c, True, data=msg("SIP/2.0 200 OK", "1 INVITE",
                                                    [f"Contact: <sip:alice@{host(a)}:{cport}>"], a, mine)),
                          "sip call answered")
                if self.r() < 0.7:
                    m = Flow(v6, "udp", a, b, mine, rtp)
                    self.emit(self.l4(m, False, data=b"\x80\x00" + b"M" * 12), "rtp of the call")
            if self.r() < 0.5:
                self.emit(self.l4(c, self.r() < 0.5, data=self.payload(0, 40)), "call signalling, not SIP")

    def ev_sip_dialog(self, v6):
        """A SIP call spelt in random ways (see sipgrammar.py): an offer, provisional and final
        answers, ACK, maybe re-offers and other requests from either side, media to what the
        bodies announced (and next to it), then BYE or CANCEL or nothing, and media after it."""
        rng = self.rng
        a, b = self.hosts(v6)
        A, B = G.Host(a, v6), G.Host(b, v6)
        third = G.Host(self.ch(R6 if v6 else R4), v6)
        f = Flow(v6, "udp", a, b, self.ch([5060, 5060, self.rng.randint(1024, 65535)]),
                 self.ch([5060] * 9 + [5061]))
        call = rng.randint(0, 10**9)
        num = rng.randint(1, 60)
        announced = []     # (address, port, peer address): media one side offered the other

        def media(owner, peer):
            out = []
            for _ in range(self.ch([0, 1, 1, 1, 1, 2, 2, 3, 4])):
                kind = self.ch(["audio", "audio", "audio", "video", "image", "application", "text", "AUDIO"])
                port = rng.randint(1024, 65000) & ~1 if self.r() < 0.9 else rng.randint(1, 65535)
                own_c = None
                if self.r() < 0.15:
                    own_c = self.ch([owner, third, peer])
                out.append((kind, port, own_c))
                announced.append(((own_c or owner).addr, port, peer.addr))
            return out

        def offer(owner, peer):
            other = None if self.r() < 0.85 else self.ch([third, peer])
            return G.sdp_body(rng, f.sp, owner, media(owner, peer), other)

        def heads(frm, to, method, n, with_contact=True):
            h = [("Via", f"SIP/2.0/UDP {frm.sip(rng)}:{f.sp if frm is A else f.dp};branch=z9hG4bK{n}"
                  + self.ch(["", "", ";rport", f";received={frm.addr}"])),
                 ("From", f"<sip:alice@{A.sip(rng)}>;tag=1"),
                 ("To", f"<sip:bob@{B.sip(rng)}>" + ("" if method == "INVITE" and n == num else ";tag=2")),
                 ("Call-ID", f"{call}@x"),
                 ("CSeq", G.cseq(rng, n, method))]
            if with_contact and self.r() < 0.9:
                h.append(("Contact", G.contact(rng, "alice" if frm is A else "bob", frm,
                                               f.sp if frm is A else f.dp)))
            if self.r() < 0.1:
                h.insert(rng.randrange(1, len(h)), ("Max-Forwards", "70"))
            return h

        def length():
            return self.ch(["right"] * 17 + ["wrong", "missing", "zero"])

        def send(frm, start, h, body, note):
            msg = G.Msg(start, h, body, length())
            self.emit(self.l4(f, frm is B, data=G.render(rng, msg)), note, self.gap())

        def request(frm, method, n, body=""):
            to = B if frm is A else A
            uri = self.ch([f"sip:bob@{to.sip(rng)}", f"sip:{to.sip(rng)}", f"sip:bob@{to.sip(rng)}:5060"])
            verb = method if self.r() < 0.97 else self.ch([method.lower(), method + "X", " " + method])
            send(frm, f"{verb} {uri} SIP/2.0", heads(frm, to, method, n), body, f"sip {method}")

        def response(frm, code, method, n, body=""):
            reason = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK"}.get(code, "Other")
            start = f"SIP/2.0 {code} {reason}" if self.r() < 0.97 else self.ch(
                [f"SIP/2.0  {code} {reason}", f"sip/2.0 {code} {reason}", f"SIP/2.0 x{code}", "SIP/2.0 0 Zero"])
            send(frm, start, heads(frm, A if frm is B else B, method, n, code < 300), body, f"sip {code} {method}")

        # The offer and its answers.
        early = self.r() < 0.9
        request(A, "INVITE", num, offer(A, B) if early else "")
        if self.r() < 0.5:
            response(B, 100, "INVITE", num)
        if self.r() < 0.4:
            response(B, self.ch([180, 183]), "INVITE", num, offer(B, A) if self.r() < 0.5 else "")
        final = self.ch([200] * 6 + [486, 487, 603, 404, 302, 401, 199, 0])
        if final and self.r() < 0.9:
            response(B, final, "INVITE", num, offer(B, A) if final < 300 and self.r() < 0.85 else "")
        if self.r() < 0.8:
            request(A, "ACK", num, "" if early or self.r() < 0.3 else offer(A, B))
        # Mid-dialog requests from either side.
        for _ in range(self.ch([0, 0, 1, 1, 2, 3])):
            num += 1
            frm = self.ch([A, B])
            method = self.ch(["INVITE", "UPDATE", "PRACK", "OPTIONS", "INFO", "MESSAGE", "REGISTER"])
            body = offer(frm, B if frm is A else A) if method in ("INVITE", "UPDATE", "PRACK") and self.r() < 0.8 else ""
            request(frm, method, num, body)
            if self.r() < 0.8:
                code = self.ch([200, 200, 200, 491, 500, 183])
                back = B if frm is A else A
                response(back, code, method, num, offer(back, frm) if code < 300 and body and self.r() < 0.8 else "")

        def traffic(note):
            for addr, port, peer in announced:
                if self.r() < 0.6:
                    src = peer if self.r() < 0.85 else self.ch(R6 if v6 else R4)
                    dport = port + self.ch([0, 0, 0, 1, 1, 2, -1]) if 0 < port < 65534 else port
                    m = Flow(v6, "udp", src, addr, rng.randint(1024, 65535), max(0, dport))
                    self.emit(self.l4(m, False, data=b"\x80\x00" + b"M" * 12), note, self.gap())
                    if self.r() < 0.3:
                        self.emit(self.l4(m, True, data=b"\x80\x00" + b"N" * 12), note + " back")
        traffic("media to an announced port")
        end = self.ch(["BYE", "BYE", "CANCEL", None])
        if end:
            num += 1 if end == "BYE" else 0
            frm = self.ch([A, B])
            request(frm, end, num)
            if self.r() < 0.7:
                response(B if frm is A else A, 200, end, num)
            if self.r() < 0.5:
                traffic("media after the call ended")

    def ev_sip_register_wild(self, v6):
        """A SIP registration spelt in random ways: contacts in a list or several headers, the
        expiry in a header or a parameter, refusals and re-registrations, answers that list
        contacts with other expiries, calls from the registrar to a contact, unregistering."""
        rng = self.rng
        a, b = self.hosts(v6)
        A, B = G.Host(a, v6), G.Host(b, v6)
        third = G.Host(self.ch(R6 if v6 else R4), v6)
        f = Flow(v6, "udp", a, b, self.ch([5060, self.rng.randint(1024, 65535)]), 5060)
        call = rng.randint(0, 10**9)
        num = rng.randint(1, 9)
        ports = [self.ch([5060, 5062, rng.randint(1024, 65535)]) for _ in range(self.ch([1, 1, 1, 2, 3]))]
        owners = [A if self.r() < 0.9 else third for _ in ports]

        def contacts(exp_param):
            vals = []
            for p, o in zip(ports, owners):
                params = ""
                if exp_param is not None and self.r() < 0.8:
                    params = f";expires={exp_param}" if self.r() < 0.9 else self.ch([";EXPIRES=0", ";expires=x", ";expires"])
                vals.append(G.contact(rng, "alice", o, p, params))
            if len(vals) > 1 and self.r() < 0.5:
                return [("Contact", ", ".join(vals))]
            return [("Contact", v) for v in vals]

        def send(reply, start, n, extra, body="", note="sip"):
            h = [("Via", f"SIP/2.0/UDP {A.sip(rng)}:{f.sp};branch=z9hG4bK{n}"),
                 ("From", f"<sip:alice@{B.sip(rng)}>;tag=1"), ("To", f"<sip:alice@{B.sip(rng)}>"),
                 ("Call-ID", f"{call}@x"), ("CSeq", G.cseq(rng, n, "REGISTER"))] + extra
            rng.shuffle(h) if self.r() < 0.1 else None
            msg = G.Msg(start, h, body, self.ch(["right"] * 18 + ["missing", "wrong"]))
            self.emit(self.l4(f, reply, data=G.render(rng, msg)), note, self.gap())

        def register(expires):
            hdr = self.r() < 0.6
            extra = contacts(None if hdr and self.r() < 0.7 else expires)
            if hdr:
                extra.append(("Expires", expires if self.r() < 0.95 else self.ch(["", "abc", "-1", "99999999999"])))
            if expires == "0" and self.r() < 0.2:
                extra = [("Contact", "*"), ("Expires", "0")]
            send(False, f"REGISTER sip:{B.sip(rng)} SIP/2.0", num, extra, note=f"sip register {expires}")

        def answer(code, expires):
            extra = contacts(expires) if code < 300 and self.r() < 0.9 else []
            if self.r() < 0.3:
                extra.append(("Expires", expires))
            reason = "OK" if code == 200 else "Other"
            send(True, f"SIP/2.0 {code} {reason}", num, extra, note=f"sip register {code}")

        expires = self.ch(["3600", "600", "60", "0", "7200", "1"])
        register(expires)
        if self.r() < 0.25:
            answer(self.ch([401, 407, 100]), expires)
            num += 1
            register(expires)
        if self.r() < 0.85:
            answer(self.ch([200, 200, 200, 202, 403, 500]), self.ch([expires, expires, "0", "300", "120"]))
        for _ in range(self.ch([0, 1, 1, 2])):
            k = rng.randrange(len(ports))
            c = Flow(v6, "udp", self.ch([b, b, b, third.addr]), owners[k].addr,
                     self.ch([5060, rng.randint(1024, 65535)]), ports[k])
            rtp = rng.randint(1024, 65000) & ~1
            body = G.sdp_body(rng, c.sp, G.Host(c.a, v6), [("audio", rtp, None)])
            msg = G.Msg(f"INVITE sip:alice@{owners[k].sip(rng)}:{ports[k]} SIP/2.0",
                        [("Via", f"SIP/2.0/UDP {G.Host(c.a, v6).sip(rng)}:{c.sp};branch=z9hG4bKc"),
                         ("From", "<sip:reg@x>;tag=9"), ("To", "<sip:alice@y>"), ("Call-ID", f"{call + 1}@x"),
                         ("CSeq", "1 INVITE"), ("Contact", G.contact(rng, "reg", G.Host(c.a, v6), c.sp))], body)
            self.emit(self.l4(c, False, data=G.render(rng, msg)), "sip call to a registered contact", self.gap())
            if self.r() < 0.6:
                m = Flow(v6, "udp", owners[k].addr, c.a, rng.randint(1024, 65535), rtp)
                self.emit(self.l4(m, False, data=b"\x80\x00" + b"M" * 12), "rtp to the registrar's offer")
        if self.r() < 0.3:
            num += 1
            register("0")
            if self.r() < 0.7:
                answer(200, "0")
            k = rng.randrange(len(ports))
            c = Flow(v6, "udp", b, owners[k].addr, rng.randint(1024, 65535), ports[k])
            self.emit(self.l4(c, False, data=b"INVITE sip:x SIP/2.0\r\n\r\n"), "to a contact unregistered")

    def ev_irc(self, v6):
        a, b = self.hosts(v6)
        send = self.tcp_session(v6, a, b, self.rng.randint(1024, 65535), 6667)
        port = self.rng.randint(1024, 65535)
        if v6:
            addr = self.ch([a, "2001:db8:1::99"])
        else:
            ip = self.ch([a, self.ch(C4)])
            addr = str(struct.unpack("!I", bytes(map(int, ip.split("."))))[0])
        kind = self.ch(["SEND f.txt", "CHAT chat", "SEND \"a b\"", "RESUME f.txt"])
        line = f"PRIVMSG bob :\x01DCC {kind} {addr} {port} 1234\x01\r\n"
        send(False, line.encode(), "irc dcc")
        if self.r() < 0.7:
            df = Flow(v6, "tcp", b, a, self.rng.randint(1024, 65535), port)
            self.emit(self.l4(df, False, data=b"", flags="S", seq=5), "dcc syn")

    def ev_pptp(self, v6):
        """A PPTP control connection (tcp/1723; the kernel's helper reads IPv4 only): session,
        call and clear messages from both ends in random order, some cut short, split or with
        a wrong cookie, call IDs from a pool of three, and enhanced GRE both ways keyed by IDs
        from the same pool (the receiver's, or another)."""
        a, b = self.hosts(v6)
        send = self.tcp_session(v6, a, b, self.rng.randint(1024, 65535), pptp.PORT)
        ids = [self.rng.randint(1, 0xFFFF) for _ in range(3)]
        def pick():
            return self.ch(ids)

        # The PNS's call IDs (0, 1) and the PAC's (1, 2); a reply mostly names the latest.
        last = {"pns": ids[0], "pac": ids[2]}

        def fresh(side):
            last[side] = ids[0 if side == "pns" else 2] if self.r() < 0.5 else ids[1]
            return last[side]

        def peer(side):
            return last[side] if self.r() < 0.9 else pick()

        msgs = {
            "sccrq": lambda: (False, pptp.sccrq()),
            "sccrp": lambda: (True, pptp.sccrp(result=1 if self.r() < 0.9 else 2)),
            "ocrq": lambda: (False, pptp.ocrq(fresh("pns"))),
            "ocrp": lambda: (True, pptp.ocrp(fresh("pac"), peer("pns"), result=1 if self.r() < 0.9 else 3)),
            "icrq": lambda: (True, pptp.icrq(fresh("pac"))),
            "icrp": lambda: (False, pptp.icrp(fresh("pns"), peer("pac"))),
            "iccn": lambda: (True, pptp.iccn(peer("pns"))),
            "ccrq": lambda: (False, pptp.ccrq(pick())),
            "cdn": lambda: (True, pptp.cdn(pick())),
            "sli": lambda: (False, pptp.sli(pick())),
            "echo": lambda: (self.r() < 0.5, pptp.echorq(7)),
            "stop": lambda: (self.r() < 0.5, self.ch([pptp.stopccrq(), pptp.stopccrp()])),
        }
        plan = ["sccrq", "sccrp"] if self.r() < 0.85 else []
        r = self.r()
        if r < 0.4:
            plan += ["ocrq", "ocrp"]
        elif r < 0.6:
            plan += ["icrq", "icrp", "iccn"]
        # Enhanced GRE mostly once the call is made: before, it opens entries of its own.
        setup = len(plan)
        plan += self.rng.choices(list(msgs), weights=[1, 1, 4, 4, 2, 2, 2, 2, 2, 1, 1, 1],
                                 k=self.rng.randint(1, 6))
        for n, m in enumerate(plan):
            reply, msg = msgs[m]()
            r = self.r()
            if r < 0.06:
                msg = msg[:-1]
            elif r < 0.09:
                msg = msg[:4] + b"\xde\xad\xbe\xef" + msg[8:]
            if self.r() < 0.1 and len(msg) > 2:
                k = self.rng.randint(1, len(msg) - 1)
                send(reply, msg[:k], f"pptp {m} (first part)")
                send(reply, msg[k:], f"pptp {m} (rest)")
            else:
                send(reply, msg, f"pptp {m}")
            while self.r() < (0.6 if n + 1 >= setup else 0.1):
                to_pac = self.r() < 0.5
                key = peer("pac" if to_pac else "pns")
                g = Flow(v6, "gre", a, b, 0 if to_pac else key, key if to_pac else 0, ver=1)
                self.emit(self.l4(g, not to_pac, data=b"\xff\x03\x00\x21ppp"),
                          f"gre to the {'pac' if to_pac else 'pns'} key {key:#x}")

    def ev_sane(self, v6):
        """A SANE start request (tcp/6566) and its reply, announcing a data port the client
        then may connect to; some requests are not starts, some replies refuse."""
        a, b = self.hosts(v6)
        send = self.tcp_session(v6, a, b, self.rng.randint(1024, 65535), 6566)
        port = self.rng.randint(1024, 65535)
        req = self.ch([sane.start(), sane.start(), sane.start() + b"\x00", struct.pack("!II", 0, 1)])
        send(False, req, "sane request")
        send(True, sane.reply(self.ch([0, 0, 0, 1]), port, zero=self.ch([0, 0, 0, 1])), "sane reply")
        if self.r() < 0.8:
            df = Flow(v6, "tcp", a, self.ch([b, b, b, self.ch(S6 if v6 else S4)]),
                      self.rng.randint(1024, 65535), port)
            self.emit(self.l4(df, False, data=b"", flags="S", seq=11), "sane data syn")
            self.emit(self.l4(df, True, data=b"", flags="SA", seq=21, ack=12), "sane data synack")

    def ev_amanda(self, v6):
        a, b = self.hosts(v6)
        f = Flow(v6, "udp", a, b, self.rng.randint(800, 1023), 10080)
        self.emit(self.l4(f, False, data=b"Amanda 2.6 REQ HANDLE 000-1 SEQ 1\nSERVICE sendbackup\n"), "amanda req")
        ports = " ".join(f"{n} {self.rng.randint(1024, 65535)}" for n in self.rng.sample(["DATA", "MESG", "INDEX"], 2))
        rep = f"Amanda 2.6 REP HANDLE 000-1 SEQ 1\nCONNECT {ports}\n\x00"
        if self.r() < 0.4:
            rep = self.amanda_spelling(rep)
        self.emit(self.l4(f, True, data=rep.encode("latin-1")), "amanda rep")
        if self.r() < 0.7:
            port = int(ports.split()[1])
            df = Flow(v6, "tcp", a, b, self.rng.randint(1024, 65535), port)
            self.emit(self.l4(df, False, data=b"", flags="S", seq=5), "amanda data syn")

    def amanda_spelling(self, rep):
        """An Amanda reply in another spelling: the keywords' case, blanks, ports padded, out
        of range or missing, all three streams or one, the line end or the NUL missing, the
        CONNECT line first, twice, or not at the start of a line."""
        k = self.ch(["case", "blanks", "ports", "three", "one", "end", "first", "twice", "inline"])
        head, _, rest = rep.partition("CONNECT ")
        line, _, tail = rest.partition("\n")
        if k == "case":
            return head + self.ch(["connect ", "Connect ", "CONNECT  "]) + (line.lower() if self.r() < 0.5 else line) + "\n" + tail
        if k == "blanks":
            return head + "CONNECT " + line.replace(" ", self.ch(["  ", "\t", " \t"])) + "\n" + tail
        if k == "ports":
            toks = line.split()
            i = self.rng.randrange(1, len(toks), 2)
            toks[i] = self.ch(["0", "65535", "65536", "99999", "0" + toks[i], "-5", "x", "1023", ""])
            return head + "CONNECT " + " ".join(toks) + "\n" + tail
        if k == "three":
            return head + "CONNECT " + " ".join(f"{n} {self.rng.randint(1024, 65535)}"
                                                for n in ["DATA", "MESG", "INDEX"]) + "\n" + tail
        if k == "one":
            return head + "CONNECT " + " ".join(line.split()[:2]) + "\n" + tail
        if k == "end":
            return rep.rstrip("\x00") if self.r() < 0.5 else rep.replace("\n\x00", "")
        if k == "first":
            return "CONNECT " + line + "\n" + head + tail
        if k == "twice":
            return head + "CONNECT " + line + "\nCONNECT " + line + "\n" + tail
        return head.rstrip("\n") + " CONNECT " + line + "\n" + tail

    # ------------------------------------------------------------ perturbations

    def perturb(self, b):
        """Damages an IP packet's bytes in one way; returns (bytes, note)."""
        b = bytearray(b)
        v6 = b[0] >> 4 == 6
        hl = 40 if v6 else (b[0] & 15) * 4
        k = self.ch(["total-short", "total-long", "udplen", "truncate", "ttl1", "flip-l4", "l4csum",
                     "ipcsum", "tos", "pad", "df", "ihl"])
        if k == "total-short" and not v6:
            b[2:4] = struct.pack("!H", max(0, len(b) - self.rng.randint(1, 12)))
        elif k == "total-long" and not v6:
            b[2:4] = struct.pack("!H", len(b) + self.rng.randint(1, 40))
        elif k in ("total-short", "total-long") and v6:
            plen = len(b) - 40 + self.rng.randint(-12, 12)
            b[4:6] = struct.pack("!H", max(0, plen))
        elif k == "udplen" and len(b) >= hl + 8:
            b[hl + 4:hl + 6] = struct.pack("!H", self.ch([0, 1, 7, 8, len(b) - hl + 1, len(b) - hl - 1, 65535]))
        elif k == "truncate":
            b = b[:self.rng.randint(max(1, hl - 4), len(b))]
        elif k == "ttl1":
            if v6:
                b[7] = self.ch([0, 1])
            else:
                b[8] = self.ch([0, 1])
        elif k in ("flip-l4", "l4csum") and len(b) > hl:
            i = self.rng.randrange(hl, min(len(b), hl + (8 if k == "l4csum" else 24)))
            b[i] ^= 1 << self.rng.randrange(8)
        elif k == "ipcsum" and not v6:
            b[10] ^= 0x55
        elif k == "tos":
            if v6:
                b[1] |= 0x0F
            else:
                b[1] = self.rng.randint(0, 255) & 0x03
        elif k == "pad":
            b += bytes(self.rng.randint(1, 20))
        elif k == "df" and not v6:
            b[6] |= 0x40
        elif k == "ihl" and not v6:
            b[0] = 0x40 | self.ch([4, 6, 15])
        if not v6 and k not in ("ipcsum", "truncate", "ihl") and len(b) >= 20:
            b[10:12] = b"\0\0"
            b[10:12] = struct.pack("!H", csum16(bytes(b[:hl])))
        return bytes(b), k

    # ------------------------------------------------------------ the case

    def build(self):
        rng = self.rng
        # DIFFFUZZ_REALTIME=1 makes every case a timed one (the same draws otherwise).
        self.realtime = rng.random() < 0.08 or os.environ.get("DIFFFUZZ_REALTIME") == "1"
        mix6 = rng.random()
        events = [
            (self.ev_udp, 8), (lambda v6: self.ev_udp(v6, "udplite"), 2), (self.ev_echo, 5),
            (self.ev_icmp_query, 3), (self.ev_icmp_error, 8), (self.ev_tcp, 2), (self.ev_gre, 2),
            (self.ev_generic, 2), (self.ev_sctp, 2), (self.ev_sctp_raw, 2), (self.ev_frag_wild, 3), (lambda v6: self.ev_frag6() if v6 else self.ev_frag4(), 3),
            (lambda v6: self.ev_ext6() if v6 else self.ev_ipopts(), 2), (self.ev_ftp, 1), (self.ev_tftp, 1),
            (self.ev_sip, 1), (self.ev_sip_reply, 1), (self.ev_sip_register, 1), (self.ev_irc, 1), (self.ev_amanda, 1),
            (self.ev_own_inverse, 1), (self.ev_pptp, 1), (self.ev_sane, 1),
            (self.ev_sip_dialog, 1), (self.ev_sip_register_wild, 1),
        ]
        if os.environ.get("DIFFFUZZ_FOCUS") == "amanda":
            events = [(self.ev_amanda, 6), (self.ev_udp, 1)]
        if os.environ.get("DIFFFUZZ_FOCUS") == "sip":
            # SIP dialogs and registrations in their many spellings, with a little other UDP.
            events = [(self.ev_sip_dialog, 6), (self.ev_sip_register_wild, 3), (self.ev_sip_reply, 1),
                      (self.ev_sip_register, 1), (self.ev_udp, 1)]
        fns = [f for f, w in events for _ in range(w)]
        target = rng.randint(5, 60)
        while len(self.items) < target:
            v6 = rng.random() < mix6
            self.ch(fns)(v6)
            if self.realtime and self.t > 5:
                break
        # Fragments held back arrive among what came after (the sort keeps the order of equal
        # times).
        if self.later:
            self.items = sorted(self.items + self.later, key=lambda it: it[0])
            self.t = max(self.t, self.items[-1][0])
        # A datagram kept apart by fragments from its source (ipfrag_max_dist) needs more.
        self.items = self.items[:160 if self.far else 60]
        if rng.random() < 0.3 and len(self.items) > 3:
            # replay some earlier packets later (retransmissions and late errors)
            for _ in range(rng.randint(1, 4)):
                it = list(rng.choice(self.items))
                self.t += 0.001
                it[0] = self.t
                self.items.append(it)
        vlan = rng.random() < 0.1
        pert = rng.choice([0, 0, 0.05, 0.15])
        frames = []
        notes = []
        for t, pkt, note in self.items:
            b = pkt if isinstance(pkt, (bytes, bytearray)) else raw(pkt)
            if rng.random() < pert:
                b, k = self.perturb(b)
                note += f" [perturbed: {k}]"
            et = 0x86DD if b and b[0] >> 4 == 6 else 0x0800
            eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
            if vlan and rng.random() < 0.7:
                eth += struct.pack("!HH", 0x8100, rng.randint(1, 4094))
                note += " [vlan]"
            frames.append((t, eth + struct.pack("!H", et) + bytes(b)))
            notes.append(note)
        args = ("--helper all" if os.environ.get("DIFFFUZZ_HELPERS", "1") != "0"
                else "--sysctl nf_conntrack_checksum=0")
        if self.realtime:
            args += " --realtime"
        if self.realtime and rng.random() < 0.6:
            args += " " + SYSCTL_VARIANTS[-1]
        elif rng.random() < 0.3:
            args += " " + rng.choice(SYSCTL_VARIANTS)
        if "acct" not in args and rng.random() < 0.4:
            args += " --sysctl nf_conntrack_acct=1"        # counters show what was counted
        return frames, notes, args + self.policy_args()

    def policy_args(self):
        """Timeout policies (`--timeout-policy`, which compare.sh gives the kernel through
        ktrace_rules.py) for one case in eight and half the timed ones: for UDP or TCP, for
        every port or one of the ports cases favour, one to three rules (the last that matches
        wins), some of nft's states set: 1 or 2 s in real time (as the shortened sysctls are),
        otherwise long enough not to end within the replay. A generator of its own, so that the
        cases themselves are those the same seeds gave before."""
        rng = random.Random("policy-" + str(self.seed))
        if rng.random() >= (0.5 if self.realtime else 0.125):
            return ""
        times = [1, 2] if self.realtime else [45, 200, 3000]
        states = {"udp": ["unreplied", "replied"],
                  "tcp": ["syn_sent", "syn_recv", "established", "fin_wait", "close_wait",
                          "last_ack", "time_wait", "close", "syn_sent2", "retrans", "unack"]}
        out = ""
        for _ in range(rng.choice([1, 1, 2, 3])):
            proto = rng.choice(["udp", "udp", "tcp"])
            chosen = [st for st in states[proto] if rng.random() < 0.5] or [rng.choice(states[proto])]
            port = rng.choice(["", "", "53:", "123:", "500:"])
            out += " --timeout-policy %s:%s%s" % (proto, port, ",".join(
                "%s=%d" % (st, rng.choice(times)) for st in chosen))
        return out


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for t, fr in frames:
            t += 1_700_000_000.0
            sec = int(t)
            usec = int(round((t - sec) * 1e6))
            if usec >= 1000000:
                sec, usec = sec + 1, usec - 1000000
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)


def gen(seed, path):
    frames, notes, args = Case(seed).build()
    write_pcap(path, frames)
    with open(path + ".txt", "w") as f:
        for i, n in enumerate(notes):
            f.write(f"{i} {n}\n")
    return args, len(frames)


def only_use_counts(out):
    """True when compare.sh's disagreements are all table lines that differ only in use=."""
    import re
    miss, extra = [], []
    for line in out.splitlines()[1:]:
        line = line.strip()
        for tag, into in (("table missing: ", miss), ("table extra: ", extra)):
            if line.startswith(tag):
                into.append(re.sub(r" use=\d+", "", line[len(tag):]))
                break
        else:
            return False
    return bool(miss) and sorted(miss) == sorted(extra)


def run(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", default=str(int(time.time())))
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--out", default="/tmp/difffuzz-ip")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    work = os.path.join(a.out, "work")
    env = dict(os.environ)
    env.setdefault("CTRACK", os.path.join(TOP, "target/release/ctrack"))
    cases = packets = scored = bad = failing = errors = noise = 0
    summary = os.path.join(a.out, "summary.txt")
    for n in range(a.start, a.start + a.count):
        seed = f"{a.seed}-{n}"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        pcap = os.path.join(work, "case.pcap")
        args, npk = gen(seed, pcap)
        p = subprocess.run([os.path.join(HERE, "compare.sh"), pcap] + args.split(), env=dict(env, KEEP=work, MAX="1000"),
                           capture_output=True, text=True)
        cases += 1
        packets += npk
        first = p.stdout.splitlines()[0] if p.stdout else ""
        try:
            toks = first.split()
            s = int(toks[toks.index("scored") + 1])
            ag = int(toks[toks.index("agree") + 1])
        except (ValueError, IndexError):
            s = ag = 0
        scored += s
        if p.returncode == 2 or not first:
            errors += 1
            print(f"{seed}: tool error: {p.stderr.strip()[:300]}", flush=True)
        if p.returncode == 1 and only_use_counts(p.stdout):
            # An expected connection whose time is up holds its master (use=) until the kernel
            # reaps it, which its garbage collector and its listing order decide: noise.
            noise += 1
            print(f"{seed}: use= only ({args})", flush=True)
        elif p.returncode == 1:
            failing += 1
            bad += s - ag + sum(1 for line in p.stdout.splitlines() if line.startswith("  table"))
            dest = os.path.join(a.out, f"fail-{seed}")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest)
            with open(os.path.join(dest, "args"), "w") as f:
                f.write(args + "\n")
            with open(os.path.join(dest, "compare.txt"), "w") as f:
                f.write(p.stdout + p.stderr)
            print(f"{seed} [{args}]: " + p.stdout.strip().replace("\n", "\n    "), flush=True)
        line = (f"cases {cases} packets {packets} scored {scored} failing-cases {failing} "
                f"disagreements {bad} use-only {noise} tool-errors {errors} last {seed}")
        with open(summary, "w") as f:
            f.write(line + "\n")
        if cases % 25 == 0:
            print(line, flush=True)
    print(line, flush=True)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "gen":
        args, _ = gen(sys.argv[2], sys.argv[3])
        print(args)
    elif len(sys.argv) >= 2 and sys.argv[1] == "run":
        run(sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
