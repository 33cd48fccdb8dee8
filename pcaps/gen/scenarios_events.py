"""Event scenarios: what the kernel reports to a `conntrack -E` listener (pcaps/NAME.events,
recorded by regen_events.sh) where the verdicts alone do not show it: an update from a packet
the host drops after tracking waits for the entry's next packet that gets through, or for an
ICMP error that takes the connection out of the host (the router's own, or one it forwards)."""
from ctgen import scenario
from scapy.all import ICMP, IP, UDP, ICMPv6ParamProblem, IPOption, IPOption_LSRR, IPv6
import scenarios_pptp as pptp
from scenarios_helpers import login
from scenarios_tcp import Flow

A, B = "10.44.0.1", "10.44.0.2"
BCAST = "255.255.255.255"
A6, B6, LL6 = "2001:db8:44::1", "2001:db8:44::2", "fe80::44"


@scenario("events/dropped-reply-update-waits")
def _():
    lsrr = [IPOption_LSRR(routers=["10.44.0.9"])]

    def q(sport, dst=B, dport=53):
        return IP(src=A, dst=dst) / UDP(sport=sport, dport=dport) / b"q"

    def r(sport, src=B, sport_=53, opts=None):
        return IP(src=src, dst=A, options=opts or []) / UDP(sport=sport_, dport=sport) / b"r"

    # Delivered locally, so confirmed; its answer comes from a martian source, which the
    # router drops after tracking: the reply is seen (the table says so) but not reported
    # until the next packet that gets through, after another flow's new entry.
    p = [q(5000, BCAST, 17701), r(5000, BCAST, 17701), q(5010), q(5000, BCAST, 17701)]
    # A forwarded flow whose answer carries a source route, which the router refuses after
    # tracking: the same wait, ended by the next answer without one.
    p += [q(5001), r(5001, opts=lsrr), q(5011), r(5001)]
    # Dropped twice, then a packet that changes nothing itself: one update for both.
    p += [q(5002), r(5002, opts=lsrr), r(5002, opts=lsrr), q(5012), q(5002)]
    # No packet gets through after the dropped answer: never reported.
    p += [q(5003), r(5003, opts=lsrr), q(5013)]
    return p


@scenario("events/helper-drop-update-waits", args="--helper ftp:tcp:21")
def _():
    f = Flow(44001, 21, c=A, s=B)
    p = login(f)
    # A command the FTP helper cannot read whole, with the client's FIN: the state moves to
    # FIN_WAIT, the helper drops the packet, and the move is reported with the server's
    # answer (its own move to CLOSE_WAIT in the same update).
    p += [f.c("FPA", b"PORT 10,44,0,1\r\n", advance=False), f.s("A")]
    return p


@scenario("events/answered-drop-reports-at-once")
def _():
    # Packets the router drops but answers with an ICMP error of its own: the error carries
    # the connection out of the router, so the kernel reports the update right away (each
    # followed by another flow's new entry, which shows the order).
    def q(sport, dst=B, src=A, v6=False):
        ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
        return ip / UDP(sport=sport, dport=53) / b"q"

    def r(sport, src=B, dst=A, v6=False, **kw):
        ip = IPv6(src=src, dst=dst, **kw) if v6 else IP(src=src, dst=dst, **kw)
        return ip / UDP(sport=53, dport=sport) / b"r"

    bad_rr = [IPOption(b"\x07\x07\x03\x00\x00\x00\x00\x00")]  # record route, pointer too low
    p = [q(5100), IP(src=B, dst=A, options=bad_rr) / UDP(sport=53, dport=5100) / b"r", q(5110)]
    # Too big for the router's way out (65,000 bytes), with DF set: fragmentation needed.
    p += [q(5101), IP(src=B, dst=A, flags="DF") / UDP(sport=53, dport=5101) / (b"r" * 65100),
          q(5111)]
    # IPv6: too big (a packet-too-big error), and an answer from a link-local source, which
    # the router must not forward (beyond scope).
    p += [q(5102, A6, B6, True),
          IPv6(src=A6, dst=B6) / UDP(sport=53, dport=5102) / (b"r" * 65100),
          q(5112, A6, B6, True)]
    p += [q(5103, LL6, B6, True), r(5103, LL6, B6, True), q(5113, A6, B6, True)]
    return p


@scenario("events/icmp-error-reports-what-waits")
def _():
    # An answer from a martian source leaves its update unreported; an ICMP error about the
    # connection that gets through reports it.
    p = [IP(src=A, dst=BCAST) / UDP(sport=5200, dport=17701) / b"q",
         IP(src=BCAST, dst=A) / UDP(sport=17701, dport=5200) / b"r",
         IP(src=A, dst=B) / UDP(sport=5210, dport=53) / b"q",
         IP(src=B, dst=A) / ICMP(type=3, code=3)
         / IP(src=A, dst=BCAST) / UDP(sport=5200, dport=17701),
         IP(src=A, dst=B) / UDP(sport=5211, dport=53) / b"q"]
    # The same, about an IPv6 flow to the unspecified address, which nothing answers.
    p += [IPv6(src=A6, dst="::") / UDP(sport=5201, dport=9) / b"q",
          IPv6(src="::", dst=A6) / UDP(sport=9, dport=5201) / b"r",
          IPv6(src=A6, dst=B6) / UDP(sport=5212, dport=53) / b"q",
          IPv6(src=B6, dst=A6) / ICMPv6ParamProblem(code=1)
          / IPv6(src=A6, dst="::") / UDP(sport=5201, dport=9),
          IPv6(src=A6, dst=B6) / UDP(sport=5213, dport=53) / b"q"]
    return p


@scenario(
    "events/expectation-runs-out",
    args="--realtime --helper tftp:udp:69 --sysctl nf_conntrack_udp_timeout=400",
)
def _():
    # TFTP requests' expectations (5 minutes) while their masters live on (UDP timeout
    # 400 s). The kernel removes one when its timer fires, which its wheel does some time in
    # the 16.4 s after the deadline (its granularity for a 300 s timer). Well after that, the
    # first is gone: its timer reported it with no time left, and the server's data opens a
    # connection of its own (NEW, not RELATED). The third is taken 0.3 s past its deadline,
    # before its timer fires (unless the tick count put the firing in those 0.3 s: about
    # one chance in 55). The second is taken at once with all its time left.
    rrq = b"\x00\x01file.bin\x00octet\x00"
    data = b"\x00\x03\x00\x01data"
    C = "10.44.0.3"

    def u(src, dst, sp, dp, payload):
        return IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / payload

    return [
        (0.0, u(A, B, 1123, 69, rrq)),
        (1.0, u(A, C, 1124, 69, rrq)),
        (2.0, u(C, A, 3000, 1124, data)),  # RELATED
        (17.0, u(A, C, 1125, 69, rrq)),
        (317.0, u(A, B, 1200, 53, b"q")),
        (317.3, u(C, A, 3002, 1125, data)),  # RELATED: past its deadline, timer not fired
        (317.6, u(B, A, 3001, 1123, data)),  # NEW: the first ran out
    ]


@scenario("events/rate-limit-v4-errors", args="--realtime")
def _():
    # The router's parameter-problem errors (bad IPv4 options) are rate-limited per
    # destination, one second each from a bucket of six: an answer whose error is held back
    # is dropped silently, its update waits, and the oracle sees nothing of it. Its
    # fragmentation-needed errors are exempt and take nothing from the bucket.
    C = "10.44.0.3"
    bad_rr = [IPOption(b"\x07\x07\x03\x00\x00\x00\x00\x00")]  # record route, pointer too low

    def q(sport, dst=B):
        return IP(src=A, dst=dst) / UDP(sport=sport, dport=53) / b"q"

    def bad(sport, src=B):
        return IP(src=src, dst=A, options=bad_rr) / UDP(sport=53, dport=sport) / b"r"

    def big(sport, src=C):
        return IP(src=src, dst=A, flags="DF") / UDP(sport=53, dport=sport) / (b"r" * 65100)

    p = [(i * 0.001, q(5300 + i)) for i in range(12)]
    # Eight at once: six errors go.
    p += [(0.1 + i * 0.001, bad(5300 + i)) for i in range(8)]
    # 1.1 s later one more second's worth: one of two goes; 2.3 s after that, both.
    p += [(1.2, bad(5308)), (1.201, bad(5309)), (3.5, bad(5310)), (3.501, bad(5311))]
    p += [(3.6, q(5320))]
    # Seven too big with DF from another source: every error goes, and that source's
    # bucket is still full for a parameter problem after them.
    p += [(4.0 + i * 0.001, q(5330 + i, C)) for i in range(8)]
    p += [(4.1 + i * 0.001, big(5330 + i)) for i in range(7)]
    p += [(4.2, bad(5337, C)), (4.3, q(5321))]
    return p


@scenario("events/rate-limit-v6-link-local", args="--realtime")
def _():
    # An IPv6 router answers a packet from a link-local source that it would route elsewhere
    # with a beyond-scope error, rate-limited per destination (100 ms, 25 ticks each, at
    # most six at once); a packet it sends back out of the way it came (to fe80::/64) is
    # checked for a redirect, which takes a second from its destination's bucket, and when
    # that allows and its source is on the link, a second from the source's. An answer whose
    # error is held back is dropped silently and its update waits.
    LL2, LL3, LL4, LL5 = "fe80::52", "fe80::53", "fe80::54", "fe80::55"

    def q(sport, dst, src=A6):
        return IPv6(src=src, dst=dst) / UDP(sport=sport, dport=53) / b"q"

    def r(sport, src, dst=A6):
        return IPv6(src=src, dst=dst) / UDP(sport=53, dport=sport) / b"r"

    # Nine queries to fe80::44: six redirect checks empty its bucket; the first answer's
    # error then cannot go.
    p = [(i * 0.001, q(5400 + i, LL6)) for i in range(9)]
    p += [(0.01, r(5400, LL6))]
    # Three seconds on, the bucket holds six errors' worth (not twelve seconds' worth):
    # six of eight answers are answered; 0.15 s later one more (a quarter second's worth
    # would not have come back yet), and 0.15 s after that another.
    p += [(3.0 + i * 0.001, r(5401 + i, LL6)) for i in range(8)]
    p += [(3.15, r(5407, LL6)), (3.3, r(5408, LL6)), (3.31, q(5420, B6))]
    # Six packets from fe80::52 to fe80::53: each redirect check goes and takes a second
    # from the source's bucket too, which is then empty for fe80::52's answer to a global
    # address. fe80::54's packet to fe80::53 finds that bucket empty: no check of the
    # source, whose answer then goes.
    p += [(4.0 + i * 0.001, q(5430 + i, LL3, LL2)) for i in range(6)]
    p += [(4.01, q(5440, LL3, LL4))]
    p += [(4.02, q(5441, LL2)), (4.03, r(5441, LL2)), (4.04, q(5442, LL4)), (4.05, r(5442, LL4))]
    # A redirect check, an error (the bucket then holds six errors' worth, 150 ticks, less
    # the error), a second redirect check (refused: under a second's worth), and a second
    # error, which goes.
    p += [(4.1, q(5450, LL5)), (4.101, r(5450, LL5)), (4.102, q(5451, LL5)), (4.103, r(5451, LL5))]
    p += [(4.2, q(5421, B6))]
    return p


@scenario(
    "events/kill-in-the-refreshing-tick",
    args="--helper all --sysctl nf_conntrack_tcp_timeout_close=1"
         " --sysctl nf_conntrack_gre_timeout=1",
)
def _():
    # Entries killed (not timed out) a few microseconds after a packet gave them one second:
    # the kernel counts what is left in ticks from the refreshing tick, so each destroy event
    # says 1 second left, which also marks it as a kill, not an expiry.
    # A client's reset, then its SYN on the same ports: the closed entry (1 s in CLOSE) is
    # killed and the SYN opens a new one.
    f = Flow(44100, 80, c=A, s=B)
    p = f.handshake() + [f.c("RA"), f.c("S", seq=f.nxt["c"] + 100000)]
    # A PPTP call whose GRE has gone one way only (1 s, unreplied) when the server's
    # Call-Disconnect-Notify kills it.
    pns, pac = "10.44.0.11", "10.44.0.12"
    g = Flow(44101, pptp.PORT, c=pns, s=pac)
    p += pptp.session(g)
    p += [g.c("PA", pptp.ocrq(0x1111)), g.s("PA", pptp.ocrp(0x2222, 0x1111)), g.c("A")]
    p += [pptp.gre(pns, pac, 0x2222, 0), g.s("PA", pptp.cdn(0x2222)), g.c("A")]
    return p
