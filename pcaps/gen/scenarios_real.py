"""Scenarios distilled from disagreements found on real traffic (see record_real.sh and
compare.sh): each reproduces, with a few synthetic packets, what real programs made ctrack and
the kernel disagree on."""
from ctgen import scenario
from scapy.all import (  # noqa: F401
    IP, UDP, IPOption, IPv6, IPv6ExtHdrHopByHop, HBHOptUnknown, PadN, RouterAlert,
)

A, B = "10.30.0.1", "10.30.0.2"
A6, B6 = "2001:db8:30::1", "2001:db8:30::2"


def opt(b):
    return [IPOption(b)]


@scenario("real/ipv4-options")
def _():
    """IPv4 options are parsed after conntrack has seen the packet: options the router keeps
    (record route, timestamps, router alert, security, unknown types) let a new flow be
    confirmed; a loose or strict source route is dropped by a router that does not accept
    source routing, so its flow is never confirmed, while a source-routed packet on an existing
    flow still counts for it (here: the reply that makes the flow replied). Found with
    `ping -R`, `ping -T` and `hping3 --lsrr`."""
    kept = [b"\x01\x01\x01\x01", b"\x07\x07\x04" + b"\0" * 4 + b"\x00",
            b"\x07\x07\x08\x0a\x1e\x00\x01\x00", b"\x44\x0c\x05\x00" + b"\0" * 8,
            b"\x44\x14\x05\x01" + b"\0" * 16, b"\x94\x04\x00\x00", b"\x82\x0b" + b"\0" * 9 + b"\x00",
            b"\x1e\x04\x00\x00", b"\x00\x00\x00\x00"]
    routed = [b"\x83\x07\x04\x0a\x1e\x00\x02\x00", b"\x83\x07\x08\x0a\x1e\x00\x02\x00",
              b"\x89\x07\x04\x0a\x1e\x00\x02\x00", b"\x01\x83\x03\x04"]
    out = []
    for i, o in enumerate(kept):
        out.append(IP(src=A, dst=B, options=opt(o)) / UDP(sport=20000 + i, dport=9) / b"kept")
    for i, o in enumerate(routed):
        out.append(IP(src=A, dst=B, options=opt(o)) / UDP(sport=21000 + i, dport=9) / b"srr")
        out.append(IP(src=B, dst=A) / UDP(sport=9, dport=21000 + i) / b"answer")
    # A source-routed reply on a confirmed flow is tracked before the router drops it.
    out.append(IP(src=A, dst=B) / UDP(sport=22000, dport=9) / b"q")
    out.append(IP(src=B, dst=A, options=opt(routed[0])) / UDP(sport=9, dport=22000) / b"r")
    out.append(IP(src=A, dst=B) / UDP(sport=22000, dport=9) / b"q2")
    return out


@scenario("real/ipv6-hop-by-hop")
def _():
    """IPv6 hop-by-hop options are parsed on receipt, before conntrack: a header the kernel
    refuses (an unknown option whose action is to discard, more than 7 bytes of padding,
    non-zero PadN, a bad router alert) drops the packet unseen, so a reply carrying one leaves
    its flow unreplied and a first packet carrying one creates nothing; skippable unknown
    options and router alerts pass. MLD reports and some real stacks' probes carry these."""
    hbh = [
        [HBHOptUnknown(otype=0x1e, optdata=b"ab")],
        [HBHOptUnknown(otype=0x5e, optdata=b"ab")],
        [HBHOptUnknown(otype=0x9e, optdata=b"ab")],
        [HBHOptUnknown(otype=0xde, optdata=b"ab")],
        [PadN(optdata=b"\0" * 6)],
        [RouterAlert()],
        [PadN(optdata=b"\x01\x02\x03\x04")],
        [HBHOptUnknown(otype=0x05, optdata=b"\0\0\0\0")],
    ]
    out = []
    for i, o in enumerate(hbh):
        out.append(IPv6(src=A6, dst=B6) / UDP(sport=2000 + i, dport=9) / b"q")
        out.append(IPv6(src=B6, dst=A6) / IPv6ExtHdrHopByHop(options=o) / UDP(sport=9, dport=2000 + i)
                   / b"r")
        out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop(options=o) / UDP(sport=3000 + i, dport=9)
                   / b"q")
        out.append(IPv6(src=A6, dst=B6) / UDP(sport=2000 + i, dport=9) / b"again")
    return out


@scenario("real/lan-noise")
def _():
    """What a LAN capture is full of, as a router without addresses sees it: mDNS, SSDP,
    LLMNR, WS-Discovery and other multicast it has not joined (never confirmed), subnet and
    limited broadcasts (NetBIOS, DHCP, Dropbox), IGMP, OSPF, VRRP, neighbour discovery and MLD
    (untracked), loopback and link-local traffic, tunnels (6in4, IPIP, GRE with a key, Teredo),
    IPsec, and the zero network: only 0.0.0.0 itself is "this host" (0.0.0.0 -> 0.0.0.0 and
    -> 255.255.255.255 are delivered; from or to 0.0.0.0 otherwise martian), while the rest of
    0.0.0.0/8 routes like unicast. Found with a LAN-style capture where a flow from 0.1.2.3 and
    one to 0.0.0.0 disagreed."""
    from scapy.all import (AH, ESP, GRE, TCP, ICMPv6MLReport2, ICMPv6ND_NS, ICMPv6ND_RA,
                           IPOption_Router_Alert, Raw)
    H, G, R = "192.168.1.23", "192.168.1.1", "192.168.1.44"
    ll1, ll2 = "fe80::1", "fe80::2"

    def u(src, dst, sp, dp, payload=b"x", **kw):
        return IP(src=src, dst=dst, **kw) / UDP(sport=sp, dport=dp) / payload

    def u6(src, dst, sp, dp, payload=b"x", **kw):
        return IPv6(src=src, dst=dst, **kw) / UDP(sport=sp, dport=dp) / payload

    out = [
        u(H, "224.0.0.251", 5353, 5353, b"mdns", ttl=255),
        u6(ll1, "ff02::fb", 5353, 5353, b"mdns", hlim=255),
        u(H, "239.255.255.250", 50000, 1900, b"M-SEARCH", ttl=4),
        u(G, H, 1900, 50000, b"HTTP/1.1 200 OK"),
        u(H, "224.0.0.252", 50001, 5355, b"llmnr"),
        u6(ll1, "ff02::1:3", 50001, 5355, b"llmnr"),
        u(H, "192.168.1.255", 137, 137, b"nbns"),
        u(R, H, 137, 137, b"nbns answer"),
        u(H, "192.168.1.255", 138, 138, b"dgm"),
        u("0.0.0.0", "255.255.255.255", 68, 67, b"discover"),
        u(G, "255.255.255.255", 67, 68, b"offer"),
        u(G, "192.168.1.100", 67, 68, b"offer"),
        u(H, G, 68, 67, b"request"),
        u(G, H, 67, 68, b"ack"),
        IP(src=H, dst="224.0.0.22", ttl=1, proto=2, options=[IPOption_Router_Alert()])
        / Raw(b"\x22\x00\xf9\x02\x00\x00\x00\x01\x04\x00\x00\x00\xef\xff\xff\xfa"),
        IP(src=G, dst="224.0.0.1", ttl=1, proto=2) / Raw(b"\x11\x64\xee\x9b\x00\x00\x00\x00"),
        IP(src=G, dst="224.0.0.5", ttl=1, proto=89) / Raw(b"\x02\x01\x00\x2c" + b"\0" * 40),
        IP(src=G, dst="224.0.0.18", ttl=255, proto=112) / Raw(b"\x21\x01\x64\x01\x00\x01\xba\x52"),
        u6(ll1, "ff02::1:2", 546, 547, b"solicit"),
        u(H, "255.255.255.255", 17500, 17500, b"dropbox"),
        u(H, "192.168.1.255", 17500, 17500, b"dropbox"),
        u(H, "239.255.255.250", 50002, 3702, b"probe"),
        IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=40000, dport=80, flags="S"),
        IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=80, dport=40000, flags="SA"),
        u("127.0.0.1", "127.0.0.53", 40001, 53, b"q"),
        u("127.0.0.53", "127.0.0.1", 53, 40001, b"r"),
        IPv6(src="::1", dst="::1") / TCP(sport=40002, dport=80, flags="S"),
        u6(ll1, ll2, 40003, 9),
        u6(ll2, ll1, 9, 40003),
        u("169.254.3.4", "169.254.5.6", 40004, 9),
        u("169.254.3.4", "169.254.255.255", 40005, 9),
        IPv6(src=ll1, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt=ll2),
        IPv6(src=ll1, dst="ff02::1", hlim=255) / ICMPv6ND_RA(),
        IPv6(src=ll1, dst="ff02::16", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        / ICMPv6MLReport2(),
        u6(ll1, "ff02::c", 50003, 1900, b"M-SEARCH"),
        u6("2001:db8::1", "ff05::c", 50004, 1900, b"M-SEARCH"),
        u6("2001:db8::1", "ff0e::101", 50010, 123),
        u(H, "255.255.255.255", 50005, 389),
        u(H, "250.1.2.3", 50007, 9),
        u("250.1.2.3", H, 50008, 9),
        u(H, "65.55.158.118", 50009, 3544,
          bytes(IPv6(src="2001:0:4136:e378::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"x")),
        IP(src=H, dst="203.0.113.9", proto=41) / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / UDP(sport=1, dport=2) / b"x",
        IP(src=H, dst="203.0.113.9", proto=4) / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1, dport=2) / b"x",
        IP(src=H, dst="203.0.113.9") / GRE(key_present=1, key=77, proto=0x800)
        / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2),
        IP(src=H, dst="203.0.113.9") / ESP(spi=0x1234, seq=1, data=b"x" * 20),
        IP(src=H, dst="203.0.113.9") / AH(spi=0x1234, seq=1, nh=17) / UDP(sport=1, dport=2),
        # The zero network.
        u(H, "0.0.0.0", 50006, 9),
        u("0.1.2.3", H, 50011, 9),
        u("127.0.0.1", H, 50012, 9),
        u(H, "127.0.0.1", 50013, 9),
    ]
    zero = [("0.0.0.0", "0.0.0.0"), ("0.0.0.0", "224.0.0.1"), ("0.0.0.0", "224.0.0.22"),
            ("0.0.0.0", "0.0.0.7"), ("0.0.0.0", "10.0.0.255"), ("0.9.9.9", "0.0.0.0"),
            ("0.9.9.9", "255.255.255.255"), ("10.0.0.1", "0.255.255.255"),
            ("0.255.255.255", "10.0.0.1")]
    for i, (s, d) in enumerate(zero):
        out.append(u(s, d, 100 + i, 9))
    return out


def _sctp_flows(v6=False, base=0):
    """SCTP associations and oddities (scapy computes the CRC32c)."""
    from scapy.all import (ICMP, ICMPv6DestUnreach, SCTP, SCTPChunkAbort, SCTPChunkCookieAck,
                           SCTPChunkCookieEcho, SCTPChunkData, SCTPChunkError,
                           SCTPChunkHeartbeatAck, SCTPChunkHeartbeatReq, SCTPChunkInit,
                           SCTPChunkInitAck, SCTPChunkSACK, SCTPChunkShutdown,
                           SCTPChunkShutdownAck, SCTPChunkShutdownComplete, raw)
    c, s = (A6, B6) if v6 else (A, B)
    ip = (lambda a, b: IPv6(src=a, dst=b)) if v6 else (lambda a, b: IP(src=a, dst=b))

    def cs(sp, dp, tag, *chunks):
        p = ip(c, s) / SCTP(sport=sp, dport=dp, tag=tag)
        for ch in chunks:
            p = p / ch
        return p

    def sc(sp, dp, tag, *chunks):
        p = ip(s, c) / SCTP(sport=dp, dport=sp, tag=tag)
        for ch in chunks:
            p = p / ch
        return p

    def data(tsn, text=b"hello"):
        return SCTPChunkData(tsn=tsn, stream_id=0, stream_seq=tsn, proto_id=0, data=text)

    out = []
    p = 36000 + base
    # A whole association: handshake, data and SACKs both ways, heartbeats, graceful shutdown.
    out += [cs(p, 80, 0, SCTPChunkInit(init_tag=0x1111, a_rwnd=65535, n_out_streams=10,
                                       n_in_streams=10, init_tsn=1)),
            sc(p, 80, 0x1111, SCTPChunkInitAck(init_tag=0x2222, a_rwnd=65535, n_out_streams=10,
                                               n_in_streams=10, init_tsn=100)),
            cs(p, 80, 0x2222, SCTPChunkCookieEcho(cookie=b"c" * 16), data(1)),
            sc(p, 80, 0x1111, SCTPChunkCookieAck(), SCTPChunkSACK(cumul_tsn_ack=1, a_rwnd=65535)),
            cs(p, 80, 0x2222, data(2, b"more")),
            sc(p, 80, 0x1111, SCTPChunkSACK(cumul_tsn_ack=2, a_rwnd=65535), data(100, b"answer")),
            cs(p, 80, 0x2222, SCTPChunkSACK(cumul_tsn_ack=100, a_rwnd=65535)),
            cs(p, 80, 0x2222, SCTPChunkHeartbeatReq()),
            sc(p, 80, 0x1111, SCTPChunkHeartbeatAck()),
            cs(p, 80, 0x9999, data(3, b"wrong tag")),
            cs(p, 80, 0x2222, SCTPChunkShutdown(cumul_tsn_ack=100)),
            sc(p, 80, 0x1111, SCTPChunkShutdownAck()),
            cs(p, 80, 0x2222, SCTPChunkShutdownComplete())]
    # An INIT scan answered with ABORT (T bit: the peer's tag reflected).
    p += 1
    out += [cs(p, 5060, 0, SCTPChunkInit(init_tag=0x3333, init_tsn=7)),
            sc(p, 5060, 0x3333, SCTPChunkAbort(TCB=1)),
            cs(p, 5060, 0, SCTPChunkInit(init_tag=0x3334, init_tsn=7))]
    # INIT retransmitted (no refresh), then answered.
    p += 1
    out += [cs(p, 2905, 0, SCTPChunkInit(init_tag=0x4444, init_tsn=1)),
            cs(p, 2905, 0, SCTPChunkInit(init_tag=0x4444, init_tsn=1)),
            sc(p, 2905, 0x4444, SCTPChunkInitAck(init_tag=0x5555, init_tsn=9))]
    # First packets that create nothing: DATA out of the blue, an INIT with a tag, ABORT,
    # COOKIE_ACK, an INIT bundled with DATA, a zero-length chunk, a bare common header.
    p += 1
    out += [cs(p, 80, 0x1234, data(5)),
            cs(p + 1, 80, 0x1234, SCTPChunkInit(init_tag=1, init_tsn=1)),
            cs(p + 2, 80, 0x1234, SCTPChunkAbort()),
            cs(p + 3, 80, 0x1234, SCTPChunkCookieAck()),
            cs(p + 4, 80, 0, SCTPChunkInit(init_tag=2, init_tsn=1), data(1)),
            ip(c, s) / SCTP(sport=p + 5, dport=80, tag=7) / raw(SCTPChunkData(data=b"x"))[:2]
            / b"\x00\x00",
            ip(c, s) / SCTP(sport=p + 6, dport=80, tag=7)]
    # A secondary path's heartbeat starts its own entry; its answer makes it established.
    p += 10
    out += [cs(p, 3868, 0xabc, SCTPChunkHeartbeatReq()),
            sc(p, 3868, 0xdef, SCTPChunkHeartbeatAck()),
            cs(p, 3868, 0xabc, data(9))]
    # SHUTDOWN_ACK out of the blue, answered by SHUTDOWN_COMPLETE with the T bit.
    p += 1
    out += [cs(p, 80, 0x77, SCTPChunkShutdownAck()),
            sc(p, 80, 0x77, SCTPChunkShutdownComplete(TCB=1))]
    # An ERROR in COOKIE_ECHOED from the peer closes the attempt (stale cookie).
    p += 1
    out += [cs(p, 80, 0, SCTPChunkInit(init_tag=0x6666, init_tsn=1)),
            sc(p, 80, 0x6666, SCTPChunkInitAck(init_tag=0x7777, init_tsn=1)),
            cs(p, 80, 0x7777, SCTPChunkCookieEcho(cookie=b"old")),
            sc(p, 80, 0x6666, SCTPChunkError()),
            cs(p, 80, 0x7777, data(1))]
    # A port-unreachable error about an INIT is related to its entry.
    p += 1
    init = cs(p, 9, 0, SCTPChunkInit(init_tag=0x8888, init_tsn=1))
    err = (IPv6(src=s, dst=c) / ICMPv6DestUnreach(code=4) / raw(init) if v6
           else IP(src=s, dst=c) / ICMP(type=3, code=3) / raw(init)[:28])
    out += [init, err]
    return out


@scenario("real/ipv6-link-local-routes")
def _():
    """A router looks a link-local destination up on the receiving interface alone, where only
    fe80::/64 has a route: a packet to fe80::/64 is answered with an ICMPv6 error (time
    exceeded or not a neighbour), which confirms its entry whatever the source, while the rest
    of fe80::/10 has no route and is dropped unconfirmed. Found with tcpdump's test capture
    ospf6_print_lshdr-oobr.pcap (OSPFv3 to fe80:0:ff:ffff:f000::2)."""
    from scapy.all import Raw
    pairs = [("fe80::1", "fe80::2"), ("fe80::1", "fe80:0:0:1::2"),
             ("fe80::1", "fe80:0:ff:ffff:f000::2"), ("fe80::1", "febf::2"),
             ("fe80::1", "fec0::2"), ("2001:db8:30::1", "fe80:1::2"),
             ("2001:db8:30::1", "fe80::3"), ("fe80:1::1", "2001:db8:30::5"),
             ("fe80:1::1", "fe80::7"), ("fe80:1::1", "fe80:2::7"),
             ("febf:ffff::1", "fe80::9"), ("fe80::a", "fe80::ffff:ffff:ffff:ffff")]
    out = []
    for hlim in (1, 64):
        for i, (s, d) in enumerate(pairs):
            out.append(IPv6(src=s, dst=d, hlim=hlim) / UDP(sport=1000 + hlim + i, dport=53)
                       / Raw(b"q"))
    # OSPFv3 (protocol 89) both ways inside fe80::/64, then to the address outside it.
    ospf = [("fe80::2", "fe80::1"), ("fe80::1", "fe80::2"), ("fe80::2", "fe80::1"),
            ("fe80::1", "fe80:0:ff:ffff:f000::2")]
    out += [IPv6(src=s, dst=d, nh=89, hlim=1) / Raw(b"\x03\x02" + bytes(26)) for s, d in ospf]
    return out


@scenario("real/sctp")
def _():
    """SCTP, which ctrack refused as invalid: associations set up, used, heartbeated and shut
    down (IPv4 and IPv6), INIT scans answered by ABORT (as `nmap -sY` makes), retransmitted
    INITs, out-of-the-blue and malformed first packets, wrong verification tags, secondary
    paths started by a HEARTBEAT, stale cookies, and ICMP errors quoting SCTP."""
    return _sctp_flows() + _sctp_flows(v6=True, base=500)


@scenario("real/sctp-checksum", args="--sysctl nf_conntrack_checksum=1")
def _():
    """With checksums on, an SCTP packet whose CRC32c is wrong is invalid."""
    from scapy.all import SCTP, SCTPChunkInit, SCTPChunkInitAck, raw
    good = IP(src=A, dst=B) / SCTP(sport=37000, dport=80, tag=0) / SCTPChunkInit(
        init_tag=0x10, init_tsn=1)
    bad = IP(raw(good))
    bad[SCTP].chksum ^= 0x0101
    bad2 = IP(raw(IP(src=A, dst=B) / SCTP(sport=37001, dport=80, tag=0)
                  / SCTPChunkInit(init_tag=0x11, init_tsn=1)))
    bad2[SCTP].chksum ^= 1
    ack = IP(src=B, dst=A) / SCTP(sport=80, dport=37000, tag=0x10) / SCTPChunkInitAck(
        init_tag=0x20, init_tsn=1)
    ack_bad = IP(raw(ack))
    ack_bad[SCTP].chksum ^= 0x8000
    return [bad, good, bad2, ack_bad, ack]


@scenario("real/router-egress")
def _():
    """What the oracle's router does after tracking, as captures taken on a sending host with
    segmentation offload show: IPv4 packets bigger than its way out (MTU 65000) with DF set are
    dropped and answered with fragmentation-needed, which the oracle prints as `unmarked` (or,
    for some type-of-service bits, as the stamp those bits spell); without DF they leave as two
    fragments (the verdict twice). Refused IPv4 options are answered with parameter problems
    (one source each: those errors are rate-limited per peer). Never answered: ICMP errors,
    multicast and broadcast; IPv6 is dropped with a packet-too-big the oracle cannot see."""
    from scapy.all import ICMP, TCP, IPv6
    out = []
    seq = 1000

    def tcp(src, dst, sp, dp, tcpflags, seq, ack, payload=b"", **kw):
        return IP(src=src, dst=dst, **kw) / TCP(sport=sp, dport=dp, flags=tcpflags, seq=seq,
                                               ack=ack, window=1024) / payload
    out.append(IP(src=A, dst=B, flags="DF") / TCP(sport=1000, dport=80, flags="S", seq=99,
                                                   window=65535, options=[("WScale", 7)]))
    out.append(IP(src=B, dst=A, flags="DF") / TCP(sport=80, dport=1000, flags="SA", seq=seq - 1,
                                                   ack=100, window=65535, options=[("WScale", 7)]))
    out.append(tcp(A, B, 1000, 80, "A", 100, seq, flags="DF"))
    for i, (size, tos, df) in enumerate([(64000, 0, True), (65100, 0, True), (65100, 0x08, True),
                                          (65100, 0, False)]):
        out.append(tcp(B, A, 80, 1000, "A", seq, 100, b"x" * size, tos=tos,
                       flags="DF" if df else 0))
        seq += size
        out.append(tcp(A, B, 1000, 80, "A", 100, seq, flags="DF"))
    big = b"y" * 65200
    out += [IP(src=A, dst=B, flags="DF") / UDP(sport=2000, dport=9) / big,
            IP(src=B, dst=A, flags="DF") / ICMP(type=3, code=3) / big,
            IPv6(src=A6, dst=B6) / UDP(sport=2005, dport=9) / big]
    bad_opts = [b"\x07\x07\x03" + b"\0" * 4 + b"\x00", b"\x44\x0c\x03\x00" + b"\0" * 8,
                b"\x1e\x01\x00\x00", b"\x86\x0a\x00\x00\x00\x01\x01\x04\x00\x00\0\0",
                b"\x07\x03\x04\x07\x03\x04\x00\x00"]
    for i, o in enumerate(bad_opts):
        for tos in (0, 0x08):
            src = "10.31.%d.%d" % (i, tos + 1)
            out.append(IP(src=src, dst=B, tos=tos, options=opt(o)) / UDP(sport=3000 + i, dport=9)
                       / b"bad options")
    out.append(IP(src="10.31.9.1", dst=B, options=opt(bad_opts[0])) / ICMP(type=3, code=1)
               / (b"\0" * 28))
    out.append(IP(src="10.31.9.2", dst="224.0.0.9", options=opt(bad_opts[0])) / UDP(sport=1, dport=9))
    # Datagrams over the MTU that arrive in fragments leave in the same fragments: confirmed.
    from scapy.all import IPv6ExtHdrFragment, fragment6
    out += fragment6(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=5) / UDP(sport=2008, dport=9)
                     / (b"f" * 65100), 1500)
    return out


@scenario("real/own-inverse-tuples", args="--helper all")
def _():
    """A tuple that is its own inverse (the same address and port at both ends: a LAND
    attack's SYNs, a resolver on a loopback talking to itself from port 53) is filed by the
    kernel twice under one hash, the reply direction first in the chain, so every packet after
    the first is found in the reply direction: the entry is replied from its second packet on,
    and a TCP handshake runs as a simultaneous open. Found in dnscap's reassembly tests (a
    fragmented DNS query from 127.0.0.1:53 to itself)."""
    from scapy.all import GRE, ICMP, SCTP, SCTPChunkInit, TCP, fragment
    C, C6 = "10.30.0.3", "2001:db8:30::3"
    land = lambda flags, seq, ack=0, data=b"": IP(src=A, dst=A) / TCP(  # noqa: E731
        sport=80, dport=80, flags=flags, seq=seq, ack=ack, window=1000) / data
    out = [
        IP(src=A, dst=A) / UDP(sport=53, dport=53) / b"q1",
        IP(src=A, dst=A) / UDP(sport=53, dport=53) / b"q2",
        IP(src=A, dst=A) / UDP(sport=53, dport=53) / b"q3",
        # Same addresses, other ports: an ordinary pair of directions.
        IP(src=A, dst=A) / UDP(sport=54, dport=53) / b"x",
        IP(src=A, dst=A) / UDP(sport=53, dport=54) / b"y",
        land("S", 1000), land("S", 1000), land("SA", 1000, 1001), land("A", 1001, 1001),
        land("PA", 1001, 1001, b"hello"), land("FA", 1006, 1001), land("A", 1001, 1007),
        # A LAND SYN and its ACK, as the attack sends them.
        IP(src=B, dst=B) / TCP(sport=81, dport=81, flags="S", seq=5, window=1000),
        IP(src=B, dst=B) / TCP(sport=81, dport=81, flags="A", seq=6, ack=6, window=1000),
        IP(src=A, dst=A, proto=99) / b"gen1",
        IP(src=A, dst=A, proto=99) / b"gen2",
        IP(src=A, dst=A) / GRE() / b"gre1",
        IP(src=A, dst=A) / GRE() / b"gre2",
        IP(src=C, dst=C) / SCTP(sport=7, dport=7, tag=0) / SCTPChunkInit(init_tag=1, n_in_streams=1, n_out_streams=1, a_rwnd=1500),
        IP(src=C, dst=C) / SCTP(sport=7, dport=7, tag=0) / SCTPChunkInit(init_tag=2, n_in_streams=1, n_out_streams=1, a_rwnd=1500),
        IPv6(src=A6, dst=A6) / UDP(sport=500, dport=500) / b"v6a",
        IPv6(src=A6, dst=A6) / UDP(sport=500, dport=500) / b"v6b",
        IPv6(src=C6, dst=C6) / TCP(sport=443, dport=443, flags="S", seq=9, window=1000),
        IPv6(src=C6, dst=C6) / TCP(sport=443, dport=443, flags="SA", seq=9, ack=10, window=1000),
        # An echo to itself is not its own inverse: the reply type differs.
        IP(src=C, dst=C) / ICMP(type=8, id=3, seq=1),
        IP(src=C, dst=C) / ICMP(type=0, id=3, seq=1),
        # An error about the looped UDP flow, from another host.
        IP(src=B, dst=A) / ICMP(type=3, code=3) / IP(src=A, dst=A) / UDP(sport=53, dport=53) / b"q1",
    ]
    # The dnscap case: a fragmented query from port 53 to itself, then two more.
    big = IP(src=C, dst=C, id=77) / UDP(sport=53, dport=53) / (b"d" * 1200)
    out += fragment(big, fragsize=400)
    out += [IP(src=C, dst=C) / UDP(sport=53, dport=53) / b"again"] * 2
    return out
