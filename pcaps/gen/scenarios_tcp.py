"""TCP scenarios: handshakes, closes, resets, window tracking, scaling, SACK, timeouts, pickup,
reopening, simultaneous open, invalid headers. Each scenario uses its own ports."""
from ctgen import scenario
from scapy.all import IP, IPv6, TCP, Raw

C4, S4 = "10.20.0.1", "10.20.0.2"
C6, S6 = "2001:db8:20::1", "2001:db8:20::2"
M32 = 0xFFFFFFFF

# SYN options of a Linux stack, and variants.
OPT_LINUX = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
OPT_MSS = [("MSS", 1460)]
OPT_SACK = [("MSS", 1460), ("SAckOK", b"")]


def ws(n):
    return [("MSS", 1460), ("NOP", None), ("WScale", n)]


class Flow:
    """One TCP connection between a client and a server; keeps each side's next sequence
    number so that scenarios only spell out what is unusual."""

    def __init__(self, cport, sport=80, v6=False, cseq=1000, sseq=5000, cwin=64240, swin=65160,
                 c=None, s=None):
        self.v6 = v6
        self.c_addr = c or (C6 if v6 else C4)
        self.s_addr = s or (S6 if v6 else S4)
        self.cport, self.sport = cport, sport
        self.nxt = {"c": cseq & M32, "s": sseq & M32}
        self.win = {"c": cwin, "s": swin}

    def _ip(self, frm):
        a, b = (self.c_addr, self.s_addr) if frm == "c" else (self.s_addr, self.c_addr)
        return IPv6(src=a, dst=b) if self.v6 else IP(src=a, dst=b)

    def pkt(self, frm, flags, data=b"", seq=None, ack=None, win=None, opts=None, advance=None):
        other = "s" if frm == "c" else "c"
        if isinstance(data, int):
            data = b"d" * data
        s = self.nxt[frm] if seq is None else seq & M32
        a = 0
        if "A" in flags:
            a = self.nxt[other] if ack is None else ack & M32
        elif ack is not None:
            a = ack & M32
        w = self.win[frm] if win is None else win
        sp, dp = (self.cport, self.sport) if frm == "c" else (self.sport, self.cport)
        t = TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=a, window=w, options=opts or [])
        p = self._ip(frm) / t
        if data:
            p = p / Raw(data)
        if advance if advance is not None else seq is None:
            n = len(data) + ("S" in flags) + ("F" in flags)
            e = (s + n) & M32
            if ((e - self.nxt[frm]) & M32) < 0x80000000:
                self.nxt[frm] = e
        return p

    def c(self, flags, data=b"", **kw):
        return self.pkt("c", flags, data, **kw)

    def s(self, flags, data=b"", **kw):
        return self.pkt("s", flags, data, **kw)

    def handshake(self, copts=None, sopts=None):
        return [self.c("S", opts=copts if copts is not None else OPT_MSS),
                self.s("SA", opts=sopts if sopts is not None else OPT_MSS),
                self.c("A")]


def timed(pkts, gap=0.001, start=0.0):
    return [(start + i * gap, p) for i, p in enumerate(pkts)]


# ---------------------------------------------------------------- handshakes and closes

@scenario("tcp/handshake_data_close_client_first")
def _():
    f = Flow(41001, 80)
    return f.handshake(OPT_LINUX, OPT_LINUX) + [
        f.c("PA", 100), f.s("A"), f.s("PA", 300), f.c("A"),
        f.c("FA"), f.s("A"), f.s("FA"), f.c("A"),
        f.c("A"),  # retransmitted last ACK in TIME_WAIT
    ]


@scenario("tcp/close_server_first")
def _():
    f = Flow(41002, 8080)
    return f.handshake() + [
        f.c("PA", 20), f.s("PA", 40), f.c("A"),
        f.s("FA"), f.c("A"), f.c("PA", 10), f.s("A"), f.c("FA"), f.s("A"),
    ]


@scenario("tcp/close_simultaneous_fin")
def _():
    f = Flow(41003, 443)
    p = f.handshake() + [f.c("PA", 5), f.s("A")]
    fc = f.c("FA")
    fs = f.s("FA", ack=f.nxt["c"] - 1)
    return p + [fc, fs, f.c("A"), f.s("A")]


@scenario("tcp/close_half_then_data")
def _():
    # Client closes its side, server keeps sending (CLOSE_WAIT), then closes.
    f = Flow(41004, 22)
    return f.handshake() + [
        f.c("FA"), f.s("A"), f.s("PA", 1000), f.c("A"), f.s("PA", 1000), f.c("A"),
        f.s("FA"), f.c("A"),
    ]


@scenario("tcp/syn_only_unreplied")
def _():
    # A SYN nobody answers: SYN_SENT, UNREPLIED; an orig ACK before the SYN/ACK is invalid.
    f = Flow(41005, 25)
    return [f.c("S"), f.c("A", ack=77), f.c("FA", ack=77)]


@scenario("tcp/handshake_ipv6")
def _():
    f = Flow(41006, 80, v6=True)
    return f.handshake(OPT_LINUX, OPT_LINUX) + [
        f.c("PA", 200), f.s("PA", 1400), f.c("A"),
        f.c("PA", 50, seq=f.nxt["c"] + 50000000),  # beyond even the scaled window: invalid
        f.c("FA"), f.s("FA"), f.c("A"),
    ]


@scenario("tcp/handshake_sll2_ipv6_rst", link="sll2")
def _():
    f = Flow(41007, 993, v6=True)
    return f.handshake() + [f.c("PA", 10), f.s("A"), f.s("R", seq=f.nxt["s"])]


# ---------------------------------------------------------------- resets

@scenario("tcp/rst_before_reply_from_server")
def _():
    f = Flow(41010, 81)
    # Refused: RST|ACK answers the SYN; the entry is deleted, so the retry is new again.
    p = [f.c("S"), f.s("RA", seq=0, ack=f.nxt["c"])]
    f2 = Flow(41010, 81, cseq=900000)
    return p + [f2.c("S"), f2.s("SA"), f2.c("A")]


@scenario("tcp/rst_before_reply_from_client")
def _():
    f = Flow(41011, 82)
    p = [f.c("S"), f.c("R", seq=f.nxt["c"])]
    # The entry is gone: a SYN/ACK now has nothing to match and cannot create one.
    return p + [f.s("SA"), f.c("S", seq=3000), f.s("SA", ack=3001), f.c("A", seq=3001)]


@scenario("tcp/rst_syn_sent_seq0")
def _():
    # RST without ACK and seq 0 answering the SYN (some stacks): seq taken as the expected one.
    f = Flow(41012, 83)
    return [f.c("S"), f.s("R", seq=0), f.c("S", seq=7000)]


@scenario("tcp/rst_in_syn_recv")
def _():
    f = Flow(41013, 84)
    return [f.c("S"), f.s("SA"), f.c("R"), f.c("S", seq=20000), f.s("SA", ack=20001)]


@scenario("tcp/rst_established_checks")
def _():
    # Assured connection: RST below the peer's highest ACK is invalid; an RST not exactly at
    # it keeps ESTABLISHED (waiting for a challenge ACK); the exact one closes.
    f = Flow(41014, 85)
    p = f.handshake() + [f.c("PA", 100), f.s("A"), f.s("PA", 100), f.c("A")]
    base = f.nxt["c"]
    return p + [
        f.c("R", seq=base - 50),  # before td_maxack: invalid
        f.c("R", seq=base + 10),  # in window, not exact: state kept
        f.s("A"),                 # challenge ACK
        f.c("R", seq=base),       # exact: CLOSE
        f.c("A", seq=base),       # ACK in CLOSE
    ]


@scenario("tcp/rst_train")
def _():
    # Data then an RST right after it from the same side, before the peer ACKed: part of a train.
    f = Flow(41015, 86)
    p = f.handshake() + [f.c("PA", 100), f.s("A"), f.s("PA", 50), f.c("A")]
    return p + [f.s("PA", 19), f.s("R", seq=f.nxt["s"])]


@scenario("tcp/rst_fin_wait")
def _():
    f = Flow(41016, 87)
    return f.handshake() + [f.c("FA"), f.s("R", seq=f.nxt["s"] + 5000000)]


@scenario("tcp/rst_close_wait")
def _():
    f = Flow(41017, 88)
    return f.handshake() + [f.c("FA"), f.s("A"), f.c("R", seq=12345)]


@scenario("tcp/rst_last_ack")
def _():
    f = Flow(41018, 89)
    return f.handshake() + [f.c("FA"), f.s("FA"), f.s("R", seq=1)]


@scenario("tcp/rst_time_wait_then_syn")
def _():
    # RST in TIME_WAIT, then the same client reconnects: reopened.
    f = Flow(41019, 90)
    p = f.handshake() + [f.c("FA"), f.s("FA"), f.c("A"), f.c("R")]
    g = Flow(41019, 90, cseq=40000, sseq=60000)
    return p + g.handshake()


@scenario("tcp/rst_ack_zero_and_invalid_rst")
def _():
    # RST|ACK with ack 0 is treated as acking everything; a RST far out of window is invalid.
    f = Flow(41020, 91)
    p = f.handshake() + [f.c("PA", 10), f.s("A")]
    return p + [f.s("RA", seq=f.nxt["s"] + 3000000, ack=0), f.s("RA", seq=f.nxt["s"], ack=0)]


@scenario("tcp/ignore_invalid_rst", args="--sysctl nf_conntrack_tcp_ignore_invalid_rst=1")
def _():
    f = Flow(41021, 92)
    p = f.handshake() + [f.c("PA", 100), f.s("A"), f.s("PA", 100), f.c("A")]
    return p + [f.c("R", seq=f.nxt["c"] - 50)]


@scenario("tcp/rst_after_reply_syn_sent_challenge")
def _():
    # Reply ACK in SYN_SENT is ignored (half-open); the RST answering it with seq == that ack
    # skips the window check.
    f = Flow(41022, 93)
    return [f.c("S"), f.s("A", ack=123456, seq=99999), f.c("R", seq=123456)]


# ---------------------------------------------------------------- window tracking

@scenario("tcp/out_of_window_orig")
def _():
    f = Flow(41030, 100, swin=1000)
    p = f.handshake() + [f.c("PA", 500), f.s("A")]
    n = f.nxt["c"]
    return p + [
        f.c("PA", 100, seq=n + 5000, advance=False),  # beyond the server's window: invalid
        f.c("FA", seq=n - 300000, advance=False),     # long before the window: ignored (no FIN_WAIT)
        f.c("PA", 100, seq=n - 500, advance=False),   # ordinary retransmission: fine
        f.c("PA", 100),
        f.s("A"),                                      # all acked: ESTABLISHED, full timeout
    ]


@scenario("tcp/out_of_window_reply")
def _():
    f = Flow(41031, 101, cwin=2000)
    p = f.handshake() + [f.s("PA", 1500), f.c("A")]
    n = f.nxt["s"]
    return p + [
        f.s("PA", 100, seq=n + 10000, advance=False),   # invalid
        f.s("PA", 100, seq=n + 2001, advance=False),    # just past the window: tolerated
        f.c("A", ack=n + 2101),                         # its ACK passes
        f.s("FA", seq=n - 2000000, advance=False),      # far behind: ignored, no FIN_WAIT
        f.s("PA", 100, seq=n, advance=False),
        f.c("A", ack=n + 2101),
    ]


@scenario("tcp/ack_bounds")
def _():
    f = Flow(41032, 102)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    return p + [
        f.s("A", ack=f.nxt["c"] + 10),             # acks data never sent: invalid
        f.s("FA", ack=f.nxt["c"] - 100000, advance=False),  # ack far behind: ignored, no FIN_WAIT
        f.s("PA", 10),
        f.c("A"),
    ]


@scenario("tcp/overshoot_window")
def _():
    # The client sends past the server's window (seq beyond td_maxend) by less than the
    # server's largest window: ignored, but its end is recorded, so the ACK for it passes.
    # Past by more than that window: invalid, and its ACK is then invalid too.
    f = Flow(41033, 103, swin=1000)
    p = f.handshake() + [f.c("PA", 1000)]
    n = f.nxt["c"]
    return p + [
        f.c("PA", 100, seq=n + 1),        # overshoot: ignored, td_end moves
        f.s("A", ack=n + 101),             # acks it: fine
        f.c("PA", 3000, seq=n + 101 + 1000 + 5),  # more than the window beyond: invalid
        f.s("A", ack=n + 101 + 1000 + 5 + 3000),  # acks unseen data: invalid
        f.c("PA", 10, seq=n + 101),
        f.s("A", ack=n + 111),
    ]


def wscale_probe(cport, sport, copts, sopts):
    # Windows of 100; the server's first non-SYN ACK opens the client's window to 100 << scale.
    # A segment starting 5000 bytes ahead is in window only with scaling.
    f = Flow(cport, sport, cwin=100, swin=100)
    p = f.handshake(copts, sopts) + [f.c("PA", 50), f.s("A")]
    n = f.nxt["c"]
    return p + [f.c("PA", 10, seq=n + 5000, advance=False), f.s("PA", 10), f.c("A")]


@scenario("tcp/wscale_both")
def _():
    return wscale_probe(41034, 104, ws(7), ws(7))


@scenario("tcp/wscale_client_only")
def _():
    return wscale_probe(41035, 105, ws(7), OPT_MSS)


@scenario("tcp/wscale_server_only")
def _():
    return wscale_probe(41036, 106, OPT_MSS, ws(9))


@scenario("tcp/wscale_none")
def _():
    return wscale_probe(41037, 107, OPT_MSS, OPT_MSS)


@scenario("tcp/wscale_capped_15")
def _():
    # Scale 15 is capped at 14: a window of 4 opens 65536 bytes, not 131072; a segment starting
    # at +131072 is past it by more than the server's largest window: invalid.
    f = Flow(41038, 108, cwin=4, swin=4)
    p = f.handshake(ws(15), ws(15)) + [f.c("PA", 1), f.s("A")]
    n = f.nxt["c"]
    return p + [f.c("PA", 10, seq=n + 65536 - 10, advance=False),
                f.c("PA", 10, seq=n + 131072, advance=False), f.s("PA", 5), f.c("A")]


@scenario("tcp/wscale_on_syn_not_applied")
def _():
    # The window in the SYN/ACK is never scaled: the client may only send 50 bytes until the
    # server's first scaled window arrives.
    f = Flow(41039, 109, cwin=50, swin=50)
    p = [f.c("S", opts=ws(8)), f.s("SA", opts=ws(8)), f.c("A", win=50)]
    n = f.nxt["c"]
    return p + [f.c("PA", 2000, seq=n + 200), f.s("A", win=50), f.c("PA", 2000, seq=n + 200)]


@scenario("tcp/sack_edges")
def _():
    f = Flow(41040, 110)
    p = f.handshake(OPT_SACK, OPT_SACK) + [f.c("PA", 1000)]
    n = f.nxt["c"]
    base = n - 1000
    return p + [
        f.s("A", ack=base, opts=[("NOP", None), ("NOP", None), ("SAck", (base + 500, n))]),
        f.s("A", ack=base, opts=[("NOP", None), ("NOP", None), ("SAck", (base + 500, n + 10))]),
        f.s("A"),
    ]


@scenario("tcp/sack_not_permitted")
def _():
    # Without SACK_PERM on the receiving side the SACK blocks are not read at all.
    f = Flow(41041, 111)
    p = f.handshake(OPT_MSS, OPT_SACK) + [f.c("PA", 1000)]
    n = f.nxt["c"]
    base = n - 1000
    return p + [
        f.s("A", ack=base, opts=[("NOP", None), ("NOP", None), ("SAck", (base + 500, n + 10))]),
        f.s("A"),
    ]


@scenario("tcp/seq_wrap")
def _():
    f = Flow(41042, 112, cseq=M32 - 100, sseq=M32 - 3)
    p = f.handshake(OPT_LINUX, OPT_LINUX)
    return p + [f.c("PA", 1000), f.s("A"), f.s("PA", 500), f.c("A"), f.c("PA", 1000), f.s("A"),
                f.c("PA", 10, seq=f.nxt["c"] + 50000000), f.c("FA"), f.s("FA"), f.c("A")]


@scenario("tcp/be_liberal", args="--sysctl nf_conntrack_tcp_be_liberal=1")
def _():
    f = Flow(41043, 113, swin=1000)
    p = f.handshake() + [f.c("PA", 500), f.s("A")]
    n = f.nxt["c"]
    return p + [
        f.c("PA", 100, seq=n + 500000),   # out of window, accepted
        f.s("A", ack=n + 999999),         # acks unseen data, accepted
        f.s("R", seq=f.nxt["s"] + 7777777),  # RST out of window still checked?
    ]


# ---------------------------------------------------------------- timeouts

@scenario("tcp/retrans_max", args="--sysctl nf_conntrack_tcp_timeout_max_retrans=200")
def _():
    # The same data segment, unacknowledged... then the same pure ACK over and over: after
    # nf_conntrack_tcp_max_retrans identical ACKs the timeout drops to max_retrans.
    f = Flow(41050, 120)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    a = f.s("A")
    return p + [a, a, a, a]


@scenario("tcp/retrans_below_max", args="--sysctl nf_conntrack_tcp_timeout_max_retrans=200")
def _():
    f = Flow(41051, 121)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    a = f.s("A")
    return p + [a, a]


@scenario("tcp/retrans_custom_limit", args="--sysctl nf_conntrack_tcp_max_retrans=1 --sysctl nf_conntrack_tcp_timeout_max_retrans=222")
def _():
    f = Flow(41052, 122)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    a = f.s("A")
    return p + [a]


@scenario("tcp/unacked_data_timeout", args="--sysctl nf_conntrack_tcp_timeout_unacknowledged=250")
def _():
    f = Flow(41053, 123)
    return f.handshake() + [f.c("PA", 100), f.s("PA", 30), f.c("PA", 30)]


@scenario("tcp/zero_window_keepalive", args="--sysctl nf_conntrack_tcp_timeout_max_retrans=180")
def _():
    f = Flow(41054, 124)
    p = f.handshake() + [f.c("PA", 100), f.s("A", win=0)]
    n = f.nxt["c"]
    return p + [
        f.c("A", seq=n - 1, advance=False),          # keepalive / zero-window probe
        f.c("PA", b"x", seq=n - 1, advance=False),  # probe with one old byte
        f.s("A", win=0),
    ]


@scenario("tcp/keepalive_established", args="--sysctl nf_conntrack_tcp_timeout_established=1000")
def _():
    f = Flow(41055, 125)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    n = f.nxt["c"]
    return p + [f.c("A", seq=n - 1, advance=False), f.s("A"), f.c("A", seq=n - 1, advance=False), f.s("A")]


@scenario("tcp/syn_retransmit_no_refresh", args="--realtime")
def _():
    f = Flow(41056, 126)
    syn = f.c("S")
    return [(0.0, syn), (1.5, syn), (3.0, syn)]


@scenario("tcp/syn_recv_timeout_custom", args="--sysctl nf_conntrack_tcp_timeout_syn_recv=33 --sysctl nf_conntrack_tcp_timeout_syn_sent=44")
def _():
    f = Flow(41057, 127)
    g = Flow(41058, 127)
    return [f.c("S"), f.s("SA"), g.c("S")]


@scenario("tcp/close_timeouts_custom", args="--sysctl nf_conntrack_tcp_timeout_time_wait=11 --sysctl nf_conntrack_tcp_timeout_close=7 --sysctl nf_conntrack_tcp_timeout_last_ack=13 --sysctl nf_conntrack_tcp_timeout_fin_wait=17 --sysctl nf_conntrack_tcp_timeout_close_wait=19")
def _():
    out = []
    f1 = Flow(41060, 128); out += f1.handshake() + [f1.c("FA")]                       # FIN_WAIT
    f2 = Flow(41061, 128); out += f2.handshake() + [f2.c("FA"), f2.s("A")]            # CLOSE_WAIT
    f3 = Flow(41062, 128); out += f3.handshake() + [f3.c("FA"), f3.s("FA")]           # LAST_ACK
    f4 = Flow(41063, 128); out += f4.handshake() + [f4.c("FA"), f4.s("FA"), f4.c("A")]  # TIME_WAIT
    f5 = Flow(41064, 128); out += f5.handshake() + [f5.c("PA", 3), f5.s("A"), f5.c("R")]  # CLOSE
    return out


@scenario("tcp/expiry_realtime", args="--realtime --sysctl nf_conntrack_tcp_timeout_syn_sent=1")
def _():
    # The SYN_SENT entry expires after 1 s: the late SYN/ACK is invalid, the new SYN is new.
    f = Flow(41065, 129)
    syn = f.c("S")
    return [(0.0, syn), (0.3, f.c("S", seq=f.nxt["c"] - 1)), (2.2, f.s("SA")), (2.3, syn)]


@scenario("tcp/out_of_window_fin_rst_lowers_timeout", args="--sysctl nf_conntrack_tcp_timeout_unacknowledged=250")
def _():
    f = Flow(41066, 130)
    p = f.handshake() + [f.c("PA", 10), f.s("A"), f.s("PA", 10), f.c("A")]
    return p + [f.c("FA", seq=f.nxt["c"] + 9000000), f.s("R", seq=f.nxt["s"] + 9000000)]


# ---------------------------------------------------------------- odd opens

@scenario("tcp/simultaneous_open")
def _():
    f = Flow(41070, 41071)
    a = f.c("S")
    b = f.s("S")
    return [a, b, f.c("SA", seq=1000, advance=False), f.s("SA", seq=5000, advance=False),
            f.c("A"), f.s("A"), f.c("PA", 10), f.s("A")]


@scenario("tcp/simultaneous_open_ack_only")
def _():
    # SYN both ways, one SYN/ACK, then a plain ACK from the reply side finishes it.
    f = Flow(41072, 41073)
    return [f.c("S"), f.s("S"), f.c("SA", seq=1000, advance=False), f.s("A"), f.c("PA", 5),
            f.s("A")]


@scenario("tcp/syn_retransmit_new_isn")
def _():
    # SYN retransmitted, then a SYN with a later ISN re-initialises the client side.
    f = Flow(41074, 131)
    syn = f.c("S")
    return [syn, syn, f.c("S", seq=9000), f.s("SA", ack=9001), f.c("A", seq=9001), f.c("PA", 10, seq=9001)]


@scenario("tcp/synack_retransmit_and_late_ack")
def _():
    f = Flow(41075, 132)
    syn, sa = f.c("S"), f.s("SA")
    return [syn, sa, sa, f.c("A"), sa, f.s("PA", 10), f.c("A")]


@scenario("tcp/packets_without_connection")
def _():
    f = Flow(41076, 133)
    g = Flow(41077, 133)
    h = Flow(41078, 133)
    return [f.s("SA"), f.c("FA"), g.c("R"), g.c("RA"), h.c("SA"), f.c("PA", 10), f.s("A")]


@scenario("tcp/invalid_flag_combinations")
def _():
    f = Flow(41079, 134)
    p = f.handshake()
    n = f.nxt["c"]
    bad = ["", "F", "SF", "SR", "FPU", "SRAF", "FU", "RF", "SAF", "SAR"]
    return p + [f.c(b, seq=n, advance=False) for b in bad] + [
        f.c("SEC", seq=77000),  # SYN|ECE|CWR is fine (ignored in ESTABLISHED)
        f.c("PAEC", 10),        # ECN bits with ACK: fine
        f.c("AU", 5),           # ACK|URG
        f.s("A"),
    ]


@scenario("tcp/bad_data_offset")
def _():
    f = Flow(41080, 135)
    p = f.handshake()
    short = f.c("PA", 10, advance=False)
    short[TCP].dataofs = 4
    longh = f.c("PA", 10, advance=False)
    longh[TCP].dataofs = 15
    return p + [short, longh, f.c("PA", 10)]


@scenario("tcp/pickup_loose")
def _():
    # No handshake seen: an ACK picks the connection up, both sides liberal.
    f = Flow(41081, 136, cseq=777777, sseq=888888)
    return [f.c("PA", 100), f.s("A"), f.s("PA", 100, seq=f.nxt["s"] + 900000), f.c("A", ack=5),
            f.c("PA", 10)]


@scenario("tcp/pickup_liberal_last",
          args="--sysctl nf_conntrack_tcp_timeout_max_retrans=200 "
               "--sysctl nf_conntrack_tcp_timeout_unacknowledged=250")
def _():
    # Picked-up connections (liberal for life) whose last segment misses the window: each
    # final table line shows the timeout that acceptance chose. Far beyond the window (nothing
    # recorded: ESTABLISHED's); a small overshoot (its end recorded as unacknowledged data:
    # the "unacknowledged" timeout); far beyond after a zero window (the last in-window
    # segment's window decides: the "max_retrans" timeout).
    f = Flow(41123, 161, cseq=100000, sseq=200000)
    g = Flow(41124, 161, cseq=300000, sseq=400000, cwin=200)
    h = Flow(41125, 161, cseq=500000, sseq=600000)
    return [
        f.c("PA", 100), f.s("A", win=1000), f.c("PA", 100, seq=f.nxt["c"] + 500000),
        g.c("PA", 100), g.s("A", win=200), g.c("PA", 50, seq=g.nxt["c"] + 201),
        h.c("PA", 100), h.s("A", win=0), h.c("PA", 100, seq=h.nxt["c"] + 500000),
    ]


@scenario("tcp/pickup_loose_server_side")
def _():
    # Picked up from the server's side; a FIN later.
    f = Flow(41082, 137)
    return [f.s("PA", 100), f.c("A"), f.s("FA"), f.c("FA"), f.s("A")]


@scenario("tcp/pickup_no_loose", args="--sysctl nf_conntrack_tcp_loose=0")
def _():
    f = Flow(41083, 138)
    g = Flow(41084, 138)
    return [f.c("PA", 100), f.s("A"), f.c("FA")] + g.handshake()


@scenario("tcp/pickup_keepalive")
def _():
    # Picked up by the server's keepalive probe; the client's answer acks one byte more.
    f = Flow(41085, 139)
    n = f.nxt["s"]
    return [f.s("A", seq=n - 1, advance=False), f.c("A", ack=n), f.s("A"), f.c("PA", 10)]


@scenario("tcp/pickup_fin")
def _():
    # A FIN cannot pick up a connection.
    f = Flow(41086, 140)
    return [f.c("FA"), f.s("A"), f.c("A")]


@scenario("tcp/reopen_time_wait")
def _():
    f = Flow(41087, 141)
    p = f.handshake() + [f.c("PA", 10), f.s("A"), f.c("FA"), f.s("FA"), f.c("A")]
    g = Flow(41087, 141, cseq=f.nxt["c"] + 100000, sseq=70000)
    return p + g.handshake() + [g.c("PA", 10), g.s("A")]


@scenario("tcp/reopen_time_wait_from_server")
def _():
    # In TIME_WAIT a SYN from the reply side is also allowed to reopen (role switch).
    f = Flow(41088, 142)
    p = f.handshake() + [f.c("FA"), f.s("FA"), f.c("A")]
    return p + [f.s("S", seq=123456), f.c("SA", ack=123457, seq=654321), f.s("A", seq=123457, ack=654322)]


@scenario("tcp/syn_in_established_ignored_resync")
def _():
    # The firewall thinks the connection is established, the endpoints restarted: a SYN is
    # ignored, the SYN/ACK that answers it resynchronises the entry.
    f = Flow(41089, 143)
    p = f.handshake() + [f.c("PA", 10), f.s("A")]
    g = Flow(41089, 143, cseq=3333333, sseq=4444444)
    return p + [g.c("S", opts=ws(6)), g.s("SA", opts=ws(6)), g.c("A"), g.c("PA", 100), g.s("A")]


@scenario("tcp/syn_in_established_not_answered")
def _():
    # A stray SYN in ESTABLISHED is ignored; the server's challenge ACK, the old conversation goes on.
    f = Flow(41090, 144)
    p = f.handshake() + [f.c("PA", 10), f.s("A")]
    return p + [f.c("S", seq=5555555), f.s("A"), f.c("PA", 10), f.s("A")]


@scenario("tcp/last_ack_challenge_ack")
def _():
    # RFC 5961: in LAST_ACK a new SYN from the client draws a challenge ACK from the server,
    # which must not be taken for the last ACK; the client's RST then reopens...
    f = Flow(41091, 145)
    p = f.handshake() + [f.s("FA"), f.c("FA")]
    n = f.nxt["c"]
    return p + [f.c("S", seq=n + 100000), f.s("A"), f.c("R", seq=f.nxt["c"]), f.c("S", seq=n + 100000)]


@scenario("tcp/syn_sent_reply_ack_ignored")
def _():
    # A reply ACK in SYN_SENT (half-open connection on the server) is ignored; the SYN
    # retransmission that follows is still "new".
    f = Flow(41092, 146)
    return [f.c("S"), f.s("A", seq=50, ack=1), f.s("A", seq=50, ack=1), f.c("S")]


@scenario("tcp/fin_in_syn_sent_and_syn_recv")
def _():
    f = Flow(41093, 147)
    # FIN in SYN_SENT (either way) is invalid; in SYN_RECV it starts the close.
    return [f.c("S"), f.c("FA", ack=1, advance=False), f.s("FA", advance=False), f.s("SA"),
            f.s("FA"), f.c("A")]


@scenario("tcp/syn_with_data")
def _():
    f = Flow(41094, 148)
    return [f.c("S", b"hello"), f.s("SA"), f.c("A"), f.s("PA", 10), f.c("A")]


@scenario("tcp/urg_and_push")
def _():
    f = Flow(41095, 149)
    return f.handshake() + [f.c("PAU", 10), f.s("AU"), f.c("FAU"), f.s("FA"), f.c("A")]


@scenario("tcp/last_ack_challenge_ack_state")
def _():
    # The challenge ACK answering a SYN in LAST_ACK leaves the entry in LAST_ACK.
    f = Flow(41096, 150)
    p = f.handshake() + [f.s("FA"), f.c("FA")]
    return p + [f.c("S", seq=f.nxt["c"] + 100000, advance=False), f.s("A")]


@scenario("tcp/rst_answering_ignored_syn")
def _():
    # A SYN in ESTABLISHED is ignored; the server's RST answering it (ack = SYN + 1) closes
    # without a window check; the client's next SYN in CLOSE is not a reopen (the RST came from
    # the other side) but ignored, and the SYN/ACK answering it resynchronises.
    f = Flow(41097, 151)
    p = f.handshake() + [f.c("PA", 10), f.s("A")]
    return p + [
        f.c("S", seq=7000000, advance=False),
        f.s("RA", seq=0, ack=7000001, advance=False),
        f.c("S", seq=8000000, advance=False),
        f.s("SA", seq=9000000, ack=8000001, advance=False),
        f.c("A", seq=8000001, ack=9000001, advance=False),
    ]


@scenario("tcp/rst_seq0_syn_recv")
def _():
    # An RST with seq 0 once the peer has acked something: the window check decides.
    f = Flow(41098, 152)
    return [f.c("S"), f.s("SA"), f.c("R", seq=0, advance=False), f.c("A"), f.c("PA", 3), f.s("A")]


@scenario("tcp/rst_syn_sent2_and_close")
def _():
    # RST in SYN_SENT2 (simultaneous open), then another RST and an ACK in CLOSE.
    f = Flow(41099, 41100)
    return [f.c("S"), f.s("S"), f.c("R"), f.s("R", seq=5001), f.s("A", seq=5001)]


@scenario("tcp/lower_timeout_needs_120s", args="--sysctl nf_conntrack_tcp_timeout_established=100 --sysctl nf_conntrack_tcp_timeout_unacknowledged=50")
def _():
    # Out-of-window FIN then RST the other way on an assured entry with under 120 s left: the
    # timeout is not lowered.
    f = Flow(41101, 153)
    p = f.handshake() + [f.c("PA", 10), f.s("A"), f.s("PA", 10), f.c("A")]
    return p + [f.c("FA", seq=f.nxt["c"] + 9000000), f.s("R", seq=f.nxt["s"] + 9000000)]


@scenario("tcp/lower_timeout_exactly_120s", args="--sysctl nf_conntrack_tcp_timeout_unacknowledged=30")
def _():
    # A FIN in window (FIN_WAIT: 120 s), then the other side's FIN acknowledging more than was
    # sent (out of window) in the same clock tick: the kernel counts the life left in ticks,
    # finds all 120 s of it, and lowers the timeout to the "unacknowledged" 30 s. Found by
    # difffuzz.py (seed 806045).
    # The server's FIN repeats old sequence space (in window, sending nothing new, so no data
    # is left unacknowledged and FIN_WAIT gets its full 120 s).
    f = Flow(41104, 156)
    p = f.handshake() + [f.s("FA", seq=f.nxt["s"] - 1400, advance=False)]
    return p + [f.c("FA", 10, ack=f.nxt["s"] + 2)]


@scenario("tcp/out_of_window_same_side_twice", args="--sysctl nf_conntrack_tcp_timeout_unacknowledged=250")
def _():
    # Two out-of-window FINs from the same side do not lower the timeout, and an in-window ACK
    # in between breaks the pairing: the other side's out-of-window RST then lowers nothing.
    f = Flow(41102, 154)
    p = f.handshake() + [f.c("PA", 10), f.s("A")]
    bad = f.c("FA", seq=f.nxt["c"] + 9000000)
    return p + [bad, bad, f.s("A"), f.s("R", seq=f.nxt["s"] + 9000000)]


@scenario("tcp/handshake_fin_no_assured")
def _():
    # The handshake's third segment is a FIN: SYN_RECV -> FIN_WAIT, never ASSURED.
    f = Flow(41103, 155)
    return [f.c("S"), f.s("SA"), f.c("FA"), f.s("FA"), f.c("A")]


@scenario("tcp/be_liberal_rst_below_maxack", args="--sysctl nf_conntrack_tcp_be_liberal=1")
def _():
    # Liberal window tracking does not cover the RST sequence check.
    f = Flow(41104, 156)
    p = f.handshake() + [f.c("PA", 100), f.s("A")]
    return p + [f.c("R", seq=f.nxt["c"] - 50, advance=False), f.c("PA", 5)]


@scenario("tcp/sack_blocks_wrap")
def _():
    # SACK blocks across the 2^32 wrap: the highest right edge counts; one edge past the data
    # sent is invalid.
    f = Flow(41105, 157, cseq=M32 - 2000, sseq=100)
    p = f.handshake(OPT_LINUX, OPT_LINUX) + [f.c("PA", 1000), f.c("PA", 1000), f.c("PA", 1000)]
    n = f.nxt["c"]
    b0 = (n - 3000) & M32
    blocks = ((b0 + 1000) & M32, (b0 + 2000) & M32, (b0 + 2500) & M32, n)
    return p + [
        f.s("A", ack=b0, opts=[("NOP", None), ("NOP", None), ("SAck", blocks)]),
        f.s("A", ack=b0, opts=[("NOP", None), ("NOP", None), ("SAck", ((b0 + 1000) & M32, (n + 1) & M32))]),
        f.s("A"),
    ]


@scenario("tcp/synack_wrong_ack")
def _():
    # A SYN/ACK acking something other than the SYN: acks unsent data -> invalid; acks less ->
    # accepted; the connection goes on.
    f = Flow(41106, 158)
    return [f.c("S"), f.s("SA", ack=1005, advance=False), f.s("SA", ack=900, advance=False),
            f.c("A", ack=5001), f.s("PA", 5, seq=5001)]


@scenario("tcp/reopen_after_client_rst_in_established")
def _():
    # The client resets an established connection and reconnects at once with the same ports.
    f = Flow(41107, 159)
    p = f.handshake() + [f.c("PA", 10), f.s("A"), f.c("R")]
    g = Flow(41107, 159, cseq=5000000, sseq=6000000)
    return p + g.handshake() + [g.c("PA", 10), g.s("A")]


@scenario("tcp/syn_after_server_rst_in_established_ignored")
def _():
    # The server resets; the client's new SYN in CLOSE is ignored (the RST came from the other
    # side and nobody sent a FIN), so it keeps the old entry.
    f = Flow(41108, 160)
    p = f.handshake() + [f.c("PA", 10), f.s("A"), f.s("R")]
    return p + [f.c("S", seq=5000000), f.s("SA", seq=6000000, ack=5000001), f.c("A", seq=5000001, ack=6000001)]


@scenario("tcp/syn_reinit_keeps_options_without_option_bytes")
def _():
    # A SYN with a later ISN re-initialises the client side. Without any option bytes the old
    # window-scale flag survives (scaling on); with only an MSS option it is cleared (off).
    out = []
    for port, opts in ((41109, []), (41110, OPT_MSS)):
        f = Flow(port, 161, cwin=100, swin=100)
        out += [f.c("S", opts=ws(7)), f.c("S", seq=9000, opts=opts)]
        f.nxt["c"] = 9001
        out += [f.s("SA", opts=ws(7)), f.c("A"), f.s("A")]
        n = f.nxt["c"]
        out += [f.c("PA", 10, seq=n + 5000, advance=False), f.s("PA", 5), f.c("A")]
    return out


@scenario("tcp/syn_retransmit_in_syn_recv_resync")
def _():
    # The client's SYN retransmitted after the SYN/ACK is ignored; the server's SYN/ACK
    # retransmission answering it resynchronises; the handshake completes.
    f = Flow(41111, 162)
    syn, sa = f.c("S"), f.s("SA")
    return [syn, sa, syn, sa, f.c("A"), f.c("PA", 10), f.s("A")]


@scenario("tcp/syn_sent2_timeout", args="--sysctl nf_conntrack_tcp_timeout_syn_sent=44")
def _():
    # SYN_SENT2 has its own fixed 120 s (the reply SYN itself does not refresh the entry; the
    # client's retransmitted SYN in SYN_SENT2 does).
    f = Flow(41112, 41113)
    g = Flow(41114, 41115)
    syn = f.c("S")
    return [syn, f.s("S"), syn, g.c("S"), g.s("S")]


@scenario("tcp/rst_syn_sent_bad_ack")
def _():
    # An RST|ACK answering a SYN must ack it: acking more is invalid (the entry stays).
    f = Flow(41116, 163)
    return [f.c("S"), f.s("RA", seq=0, ack=f.nxt["c"] + 5, advance=False), f.s("SA"), f.c("A")]


@scenario("tcp/retrans_limit_zero", args="--sysctl nf_conntrack_tcp_max_retrans=0 --sysctl nf_conntrack_tcp_timeout_max_retrans=77")
def _():
    # With nf_conntrack_tcp_max_retrans=0 every segment counts as retransmitted: any state
    # whose timeout is longer than max_retrans gets max_retrans, even SYN_SENT.
    f = Flow(41117, 164)
    g = Flow(41118, 164)
    h = Flow(41119, 164)
    return f.handshake() + [g.c("S"), h.c("S"), h.s("SA"), h.c("A"), h.c("R")]


@scenario("tcp/rst_after_own_syn")
def _():
    # An RST skips the window check as the answer to a SYN we let through only when it comes
    # from the other side: an RST from the SYN's own sender is checked like any other.
    # Established: the client's stray SYN is ignored; its own RST acking that SYN, far past the
    # window, is invalid; the connection goes on.
    f = Flow(41120, 165)
    p = f.handshake() + [f.c("PA", 5), f.s("A"), f.c("S", seq=7000000, advance=False),
                         f.c("R", seq=f.nxt["c"] + 10000000, ack=7000001, advance=False),
                         f.c("PA", 5), f.s("A")]
    # SYN_SENT: a SYN/ACK acking too little is ignored (the last packet stays the SYN); the
    # client's RST with ack 0, far behind, is ignored too; the real SYN/ACK then opens.
    g = Flow(41121, 166, cseq=4285797668)
    p += [g.c("S"), g.s("SA", ack=g.nxt["c"] - 66001, advance=False),
          g.c("R", seq=g.nxt["c"] - 2000000, ack=0, advance=False), g.s("SA"), g.c("A")]
    # Simultaneous open: the server's RST after its own SYN is checked (and ignored); the
    # client's RST is the answer and closes.
    h = Flow(41122, 41123)
    p += [h.c("S"), h.s("S"), h.s("R", seq=h.nxt["s"] - 2000000, ack=0, advance=False),
          h.c("R", seq=h.nxt["c"] - 2000000, ack=0, advance=False)]
    return p


# ---------------------------------------------------------------- checksums of long segments

def corrupt(pkt, back, bits=0x40):
    """`pkt` as sent (checksums computed) with the byte `back` places from its end changed:
    its IP header stays right, its TCP or UDP checksum no longer adds up."""
    b = bytearray(bytes(pkt))
    b[-back] ^= bits
    return IPv6(bytes(b)) if IPv6 in pkt else IP(bytes(b))


def swap_words(pkt, back):
    """`pkt` as sent with the two 16-bit words that end `back` places from its end swapped: a
    different packet whose one's-complement sum is the same, so its checksum still adds up."""
    b = bytearray(bytes(pkt))
    i = len(b) - back
    b[i - 4:i - 2], b[i - 2:i] = b[i - 2:i], b[i - 4:i - 2]
    return IPv6(bytes(b)) if IPv6 in pkt else IP(bytes(b))


def _long_segments(f, sizes):
    """Data segments of the given payload sizes on flow `f`, each first sent with one byte
    wrong (at a place that moves through the segment: its first block, a middle one, the
    tail under a block, the last byte), which is invalid and changes nothing, then right."""
    out = []
    for k, n in enumerate(sizes):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        frm = f.c if k % 2 == 0 else f.s
        back = [n - 3, n // 2, 37, 1][k % 4]
        out.append(corrupt(frm("PA", data, advance=False), max(back, 1)))
        out.append(frm("PA", data))
    return out


@scenario("tcp/checksum-long-segments", args="--sysctl nf_conntrack_checksum=1")
def _():
    # With the checksum check on, every segment's TCP checksum is summed, the long ones (a
    # layer 4 of 256 bytes or more) by ctrack's vector loop in blocks of 128 bytes and the rest
    # of them word by word. Segments of layer-4 lengths around those sizes (236 to 1,460 bytes
    # of payload, odd and even), over IPv4 and IPv6, each first with one byte wrong (invalid),
    # then right. A segment whose words are swapped keeps its sum and is taken as right; so is
    # one where a word of zeros became a word of ones (0x0000 and 0xffff are the same in
    # one's complement).
    sizes = [180, 235, 236, 237, 363, 364, 365, 491, 748, 981, 1399, 1400, 1401, 1460]
    f = Flow(41130, 80)
    p = f.handshake() + _long_segments(f, sizes)
    g = Flow(41131, 80, v6=True)
    p += g.handshake() + _long_segments(g, [s for s in sizes if s <= 1440] + [1440])
    for h in (Flow(41132, 80), Flow(41133, 80, v6=True)):
        p += h.handshake()
        data = bytes(range(256)) * 4 + b"\0" * 200
        p.append(swap_words(h.c("PA", data, advance=False), 301))
        ones = bytearray(bytes(h.c("PA", data, advance=False)))
        ones[-10:-8] = b"\xff\xff"
        p.append(IPv6(bytes(ones)) if h.v6 else IP(bytes(ones)))
        p += [h.c("PA", data), h.s("A")]
    return p
