"""Timeout policy scenarios (pcaps/timeouts/): nftables' `ct timeout` objects, given to new
connections by rules on protocol and destination port (`--timeout-policy`, which
ktrace_rules.py turns into the kernel's objects and rules). Replayed in real time, with margins
of at least 0.3 s around every deadline; each flow's last packet shows whether its connection
was still there (a packet the other way that finds none opens a connection of its own, or is
INVALID)."""
from ctgen import scenario
from scapy.all import IP, UDP, IPv6
from scenarios_helpers import login, pasv
from scenarios_tcp import Flow

C, S = "10.43.0.1", "10.43.0.2"
C6, S6 = "2001:db8:43::1", "2001:db8:43::2"


def u(src, dst, sp, dp, v6=False):
    return (IPv6 if v6 else IP)(src=src, dst=dst) / UDP(sport=sp, dport=dp) / b"t"


def flow(c, s, cp, sp, times, v6=False):
    """UDP datagrams between client `c`:`cp` and server `s`:`sp`: (time, 'q' or 'a') pairs,
    q from the client, a from the server."""
    return [(t, u(c, s, cp, sp, v6) if d == "q" else u(s, c, sp, cp, v6)) for t, d in times]


@scenario("timeouts/udp", args="--realtime --timeout-policy udp:5301:unreplied=1,replied=3"
          " --timeout-policy udp:5302:unreplied=40,replied=40 --timeout-policy udp:5302:unreplied=1")
def _():
    p = []
    # To 5301: 1 s until the connection has been answered and is past its 2-second stream
    # delay, then 3 s. The last answer comes 3.2 s after the query before it: no connection.
    p += flow(C, S, 44000, 5301, [(0.0, "q"), (0.1, "a"), (0.7, "q"), (1.4, "a"), (2.3, "q"),
                                   (5.0, "a"), (8.5, "a")])
    # The same timing to a port without a rule: the sysctls' 30 s and 120 s keep it.
    p += flow(C, S, 44001, 5399, [(0.0, "q"), (0.1, "a"), (0.7, "q"), (1.4, "a"), (2.3, "q"),
                                   (5.0, "a"), (8.5, "a")])
    # A connection opened from port 5301, whose answer goes to 5301: the rule matches that
    # answer, but the connection is made by then, so the rule does nothing to it.
    p += [(0.2, u(S, C, 5301, 44002)), (0.3, u(C, S, 44002, 5301)), (2.0, u(S, C, 5301, 44002))]
    # Two rules for 5302: the last one's policy (1 s unanswered), not the first one's.
    p += flow(C, S, 44003, 5302, [(0.0, "q"), (1.5, "a")])
    # IPv6 takes the same rules.
    p += flow(C6, S6, 44004, 5301, [(0.0, "q"), (1.5, "a")], v6=True)
    p += flow(C6, S6, 44005, 5399, [(0.0, "q"), (1.5, "a")], v6=True)
    return p


@scenario("timeouts/tcp", args="--realtime --timeout-policy tcp:5311:syn_sent=1,established=3"
          " --timeout-policy tcp:5312:unack=1 --timeout-policy tcp:5313:syn_recv=1")
def _():
    p = []
    # Established for 3 s: the server's segment 3.5 s after the last one finds nothing and
    # opens a connection of its own (picked up, NEW).
    a = Flow(44100, 5311, c=C, s=S)
    h = a.handshake()
    p += [(0.0, h[0]), (0.01, h[1]), (0.02, h[2]), (0.5, a.c("PA", 10)), (0.51, a.s("A")),
          (4.0, a.s("PA", 10))]
    # A connection picked up mid-stream is timed by the policy's first timeout, SYN_SENT's
    # (1 s), whatever state its first packet led to: the server's answer 1.5 s later is too
    # late.
    b = Flow(44101, 5311, c=C, s=S)
    p += [(0.1, b.c("PA", 10)), (1.6, b.s("A"))]
    # SYN_SENT for 1 s: a SYN-ACK 1.4 s after the SYN finds nothing (INVALID).
    c = Flow(44102, 5311, c=C, s=S)
    p += [(0.2, c.c("S")), (1.6, c.s("SA"))]
    # Data not yet acknowledged caps the timeout at the policy's `unack` (1 s).
    d = Flow(44103, 5312, c=C, s=S)
    h = d.handshake()
    p += [(0.3, h[0]), (0.31, h[1]), (0.32, h[2]), (0.4, d.c("PA", 10)), (1.8, d.s("A"))]
    # SYN_RECV for 1 s: the handshake's last ACK 1.4 s after the SYN-ACK opens a connection
    # of its own.
    e = Flow(44104, 5313, c=C, s=S)
    h = e.handshake()
    p += [(0.5, h[0]), (0.51, h[1]), (1.91, h[2])]
    # A port without a rule: the same as the first connection, still there at the end.
    f = Flow(44105, 5399, c=C, s=S)
    h = f.handshake()
    p += [(0.6, h[0]), (0.61, h[1]), (0.62, h[2]), (0.7, f.c("PA", 10)), (0.71, f.s("A")),
          (4.2, f.s("PA", 10))]
    # IPv6: established for 3 s.
    g = Flow(44106, 5311, v6=True, c=C6, s=S6)
    h = g.handshake()
    p += [(0.8, h[0]), (0.81, h[1]), (0.82, h[2]), (4.4, g.s("PA", 10))]
    return p


@scenario("timeouts/ftp-expected", args="--realtime --helper ftp:tcp:21"
          " --timeout-policy tcp:5321:syn_sent=1,established=2")
def _():
    # A passive data connection to port 5321 takes the rule's policy as it is made, though
    # it is RELATED (an expected connection): established for 2 s, so the server's data 2.5 s
    # after the handshake finds nothing. The control connection, to port 21, keeps the
    # sysctls' timeouts.
    f = Flow(44200, 21, c=C, s=S)
    ctl = login(f) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(5321, S)), f.c("A")]
    p = [(i * 0.001, x) for i, x in enumerate(ctl)]
    d = Flow(44201, 5321, c=C, s=S)
    h = d.handshake()
    p += [(0.2, h[0]), (0.21, h[1]), (0.22, h[2]), (2.72, d.s("PA", b"late data")),
          (2.8, f.c("PA", b"NOOP\r\n"))]
    return p


@scenario("timeouts/sysctl", args="--realtime --sysctl nf_conntrack_udp_timeout_stream=3"
          " --timeout-policy udp:5331:unreplied=1")
def _():
    # The states a policy does not name take Linux's defaults, not the sysctls (nft fills them
    # in so): `replied` is 120 s, though nf_conntrack_udp_timeout_stream is 3, so the answer
    # 3.4 s after the last query still finds its connection. A connection without a policy
    # has the sysctl's 3 s and loses it.
    times = [(0.0, "q"), (0.1, "a"), (0.9, "q"), (1.7, "a"), (2.3, "q"), (5.7, "a")]
    return flow(C, S, 44300, 5331, times) + flow(C, S, 44301, 5332, times)
