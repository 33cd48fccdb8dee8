#!/usr/bin/python3
"""Random differential testing of ctrack's TCP tracking against the kernel oracle.

    /usr/bin/python3 pcaps/gen/difffuzz.py gen SEED OUT.pcap      # one case; prints its args
    /usr/bin/python3 pcaps/gen/difffuzz.py run [--seed S] [--count N] [--out DIR] [--pack K]
                                               [--realtime-only]
    /usr/bin/python3 pcaps/gen/difffuzz.py min DIR                   # shrink a kept case

`gen` writes the capture of case SEED (deterministic) and prints the oracle/ctrack arguments
chosen for it. `run` loops over seeds S, S+1, ...: builds each case, runs `compare.sh` on it
(CTRACK and KTRACE are honoured there) and keeps every disagreeing case under DIR (default
/tmp/difffuzz-tcp/SEED/: the capture, args, the kernel's and ctrack's outputs, compare's
report), printing a running summary line. `--pack K` puts K cases (each with its own addresses,
all with the first one's arguments, no --realtime ones) in one capture, which is many times
faster; the cases of a disagreeing pack are then compared one by one to keep the guilty ones.
Packs leave out the cases replayed in real time (about one in 25, each with gaps of 3.5 s
against shortened timeouts); `--realtime-only` (without `--pack`) runs only those, so that
the two runs together cover every case. `min` drops packets from a kept case one at a time
while any disagreement remains and writes DIR/min.pcap.

A case is one small capture (5-60 packets) holding one to three TCP conversations between a
few hosts through the oracle's router: plausible conversations (handshakes of every kind,
data both ways with consistent seq/ack, window scaling, SACK, timestamps, zero windows,
closes and resets, reopening, pick-up without a SYN, IPv6) perturbed at random (sequence and
ack offsets, duplicates, reordering, losses before the router, odd flags, bad data offsets,
malformed options, urgent data). Needs Debian's python3-scapy.

Every case is compared with `--helper all` unless DIFFFUZZ_HELPERS=0, which compares it with
no helpers (`--sysctl nf_conntrack_checksum=0`, the default of both sides, stands in for
compare.sh's default `--helper all`): ctrack's `process` then takes ordinary TCP and UDP
frames through its one-pass lanes instead of the general path, so run it both ways.
EVENTS=1 (compare.sh's) compares the connection events of every case too. One case in eight
(and half the real-time ones) also gives timeout policies (`--timeout-policy`, see
`Case.policy_args`), which compare.sh hands the kernel through ktrace_rules.py.
DIFFFUZZ_FOCUS=ftp makes most conversations FTP control connections (four in five, against
about one in seven), whose lines are spelt in other ways three times in ten (`ftp_spelling`);
DIFFFUZZ_FOCUS=irc makes them IRC connections, whose DCC offers are spelt in other ways about
one time in three (`dcc_spelling`); DIFFFUZZ_FOCUS=siptcp makes them SIP over TCP (calls and
registrations spelt as sipgrammar.py spells them, whole, two to a segment or split; media and
calls to registered contacts after them), compared with SIP assigned to tcp/5060 and FTP to
tcp/21 instead of `--helper all`, which gives SIP UDP only (the oracle cannot assign SIP to
both protocols at once: it names its helper objects by helper alone).
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Arguments every case starts from (see the module's docstring).
BASE_ARGS = (["--helper", "all"] if os.environ.get("DIFFFUZZ_HELPERS", "1") != "0"
             else ["--sysctl", "nf_conntrack_checksum=0"])
if os.environ.get("DIFFFUZZ_FOCUS") == "siptcp":
    # SIP over TCP: `--helper all` assigns SIP to UDP only. Not sip:udp:5060 beside it: the
    # oracle names its helper objects by helper alone, so the kernel gets SIP for TCP only and
    # UDP to port 5060 would have no helper there.
    BASE_ARGS = ["--helper", "sip:tcp:5060", "--helper", "ftp:tcp:21"]
sys.path.insert(0, HERE)
import ctgen  # noqa: E402
import sipgrammar as G  # noqa: E402

M32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

HOSTS4 = ["10.31.0.1", "10.31.0.2", "10.31.1.7", "192.0.2.33", "172.16.9.4"]
HOSTS6 = ["2001:db8:31::1", "2001:db8:31::2", "2001:db8:77::5"]


def use_slot(slot):
    """Gives case number `slot` of a packed capture its own addresses (slot 0: the usual ones),
    so that packed cases never share a connection."""
    global HOSTS4, HOSTS6
    if slot == 0:
        HOSTS4 = ["10.31.0.1", "10.31.0.2", "10.31.1.7", "192.0.2.33", "172.16.9.4"]
        HOSTS6 = ["2001:db8:31::1", "2001:db8:31::2", "2001:db8:77::5"]
    else:
        a, b = 40 + slot // 250, slot % 250
        HOSTS4 = [f"10.{a}.{b}.1", f"10.{a}.{b}.2", f"10.{a}.{b}.7", f"172.{a - 24}.{b}.33", f"172.{a - 24}.{b}.4"]
        HOSTS6 = [f"2001:db8:{a:x}{b:02x}::1", f"2001:db8:{a:x}{b:02x}::2", f"2001:db8:{a:x}{b:02x}::5"]
SERVER_PORTS = [80, 443, 22, 25, 8080, 5001, 3306, 9000]


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def enc_opts(opts):
    """opts: list of (name, value) or raw bytes; returns padded option bytes (<= 40)."""
    b = b""
    for o in opts:
        if isinstance(o, (bytes, bytearray)):
            b += o
            continue
        k, v = o
        if k == "MSS":
            b += struct.pack("!BBH", 2, 4, v)
        elif k == "WS":
            b += struct.pack("!BBB", 3, 3, v)
        elif k == "SACKOK":
            b += b"\x04\x02"
        elif k == "TS":
            b += struct.pack("!BBII", 8, 10, v[0] & M32, v[1] & M32)
        elif k == "SACK":
            b += struct.pack("!BB", 5, 2 + 8 * len(v)) + b"".join(
                struct.pack("!II", l & M32, r & M32) for l, r in v)
        elif k == "NOP":
            b += b"\x01"
        elif k == "EOL":
            b += b"\x00"
    b = b[:40]
    while len(b) % 4:
        b += b"\x01"
    return b


class Ep:
    """One endpoint's view: what it sends next and what it has received."""

    def __init__(self, rng, addr, port):
        self.addr, self.port = addr, port
        r = rng.random()
        if r < 0.1:
            self.isn = (M32 - rng.randrange(0, 3000)) & M32  # wraps soon
        elif r < 0.15:
            self.isn = rng.randrange(0, 3)
        else:
            self.isn = rng.randrange(0, 1 << 32)
        self.nxt = self.isn  # next sequence to send
        self.rcv = None  # next sequence expected from the peer (None: unknown)
        self.wscale = rng.choice([None, None, 0, 2, 7, 7, 9, 14, 15])
        self.sack = rng.random() < 0.6
        self.ts = rng.random() < 0.5
        self.tsval = rng.randrange(1, 1 << 31)
        self.win = rng.choice([64240, 65535, 29200, 502, 1024, 8192, 65160])
        self.mss = rng.choice([1460, 1440, 536, 1220])
        self.scale_on = False  # both sides sent WS


class Case:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.seed = seed
        self.pkts = []  # list of frames (scapy packets)
        self.conv_streams = []

    def choose_args(self):
        rng = self.rng
        a = list(BASE_ARGS)
        r = rng.random()
        if r < 0.5:
            pass
        elif r < 0.65:
            a += ["--sysctl", "nf_conntrack_tcp_loose=0"]
        elif r < 0.75:
            a += ["--sysctl", "nf_conntrack_tcp_be_liberal=1"]
        elif r < 0.85:
            a += ["--sysctl", "nf_conntrack_tcp_max_retrans=%d" % rng.choice([0, 1, 2])]
        elif r < 0.92:
            a += ["--sysctl", "nf_conntrack_tcp_ignore_invalid_rst=1"]
        else:
            a += ["--sysctl", "nf_conntrack_tcp_loose=0", "--sysctl", "nf_conntrack_tcp_be_liberal=1"]
        if rng.random() < 0.15:
            a += ["--sysctl", "nf_conntrack_tcp_timeout_unacknowledged=%d" % rng.choice([30, 250, 1000])]
        if rng.random() < 0.1:
            a += ["--sysctl", "nf_conntrack_tcp_timeout_max_retrans=%d" % rng.choice([60, 200, 500])]
        self.realtime = rng.random() < 0.04
        if self.realtime:
            # Real gaps of 3.5 s against timeouts of 2 s (expire) or 6 s (survive one gap).
            a.append("--realtime")
            for name in ("syn_sent", "syn_recv", "established", "fin_wait", "close_wait",
                         "last_ack", "time_wait", "close", "max_retrans", "unacknowledged"):
                if rng.random() < 0.5:
                    a += ["--sysctl", "nf_conntrack_tcp_timeout_%s=%d" % (name, rng.choice([2, 6]))]
        return a + self.policy_args()

    def policy_args(self):
        """Timeout policies (`--timeout-policy`, which compare.sh gives the kernel through
        ktrace_rules.py) for one case in eight and half the real-time ones: one for every TCP
        connection, sometimes followed by one for a server port of the cases' conversations
        (which wins there), with some of nft's states set: 2 or 6 s in real time (against its
        gaps of 3.5 s), otherwise long enough to show in the final table and not to end within
        the replay. A generator of its own,
        so that the cases themselves are those the same seeds gave before."""
        rng = random.Random(self.seed * 7919 + 1)
        if rng.random() >= (0.5 if self.realtime else 0.125):
            return []
        # (Not replayed in real time, a pack of cases lasts about a second in the kernel: a
        # timeout that short would end there at a point no timestamp settles.)
        times = [2, 6] if self.realtime else [45, 200, 3000]
        states = ["syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
                  "time_wait", "close", "syn_sent2", "retrans", "unack"]

        def policy():
            chosen = [st for st in states if rng.random() < 0.4] or [rng.choice(states)]
            return ",".join("%s=%d" % (st, rng.choice(times)) for st in chosen)

        a = ["--timeout-policy", "tcp:" + policy()]
        if rng.random() < 0.4:
            a += ["--timeout-policy", "tcp:%d:%s" % (rng.choice(SERVER_PORTS), policy())]
        return a


class Conv:
    """A conversation: client c, server s; emits raw IP packets into a stream."""

    def __init__(self, case, v6, cport=None, sport=None, hosts=None):
        self.case = case
        rng = self.rng = case.rng
        pool = HOSTS6 if v6 else HOSTS4
        if hosts is None:
            ca, sa = rng.sample(pool, 2)
        else:
            ca, sa = hosts
        self.v6 = v6
        self.c = Ep(rng, ca, cport or rng.randrange(1024, 65535))
        focus = os.environ.get("DIFFFUZZ_FOCUS")
        if sport is None and focus == "irc" and rng.random() < 0.8:
            sport = 6667
        elif sport is None and focus == "siptcp" and rng.random() < 0.8:
            sport = 5060
        elif sport is None and rng.random() < (0.8 if focus == "ftp" else 0.15):
            sport = 21
        elif sport is None and rng.random() < 0.06:
            sport = rng.choice([6667, 6566, 1723])
        self.s = Ep(rng, sa, sport or rng.choice(SERVER_PORTS + [rng.randrange(1024, 65535)]))
        if hosts is None and cport is None and rng.random() < 0.02:
            # A LAND conversation: one address and port at both ends, a tuple that is its own
            # inverse (every packet after the first is in the reply direction for the kernel).
            self.s.addr, self.s.port = self.c.addr, self.c.port
        self.out = []
        self.pert = rng.choice([0.0, 0.05, 0.1, 0.2, 0.35])  # perturbation rate
        self.closed = False

    def peer(self, e):
        return self.s if e is self.c else self.c

    # ---------------------------------------------------------------- raw segments

    def raw(self, frm, flags, seq, ack, win, opts=b"", data=b"", doff=None, urp=0):
        to = self.peer(frm)
        o = opts if isinstance(opts, (bytes, bytearray)) else enc_opts(opts)
        hl = 20 + len(o)
        d = (hl // 4) if doff is None else doff
        hdr = struct.pack("!HHIIBBHHH", frm.port, to.port, seq & M32, ack & M32, (d & 15) << 4,
                          flags & 0xFF, win & 0xFFFF, 0, urp & 0xFFFF) + o
        seg = hdr + data
        if self.v6:
            import socket
            ph = (socket.inet_pton(socket.AF_INET6, frm.addr) + socket.inet_pton(socket.AF_INET6, to.addr)
                  + struct.pack("!IxxxB", len(seg), 6))
        else:
            import socket
            ph = (socket.inet_aton(frm.addr) + socket.inet_aton(to.addr)
                  + struct.pack("!xBH", 6, len(seg)))
        c = csum(ph + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
        from scapy.all import IP, IPv6, Raw
        if self.v6:
            p = IPv6(src=frm.addr, dst=to.addr, nh=6, hlim=64) / Raw(seg)
        else:
            p = IP(src=frm.addr, dst=to.addr, proto=6, ttl=64, id=self.rng.randrange(65536)) / Raw(seg)
        self.out.append(p)
        return p

    def adv_win(self, e):
        w = e.win
        if e.scale_on and e.wscale:
            w = max(1, w >> min(e.wscale, 14)) if self.rng.random() < 0.8 else w
        return w

    def data_opts(self, e, sack_blocks=None):
        o = []
        if e.ts and self.peer(e).ts and self.ts_on:
            e.tsval += self.rng.randrange(0, 50)
            o += [("NOP", None), ("NOP", None), ("TS", (e.tsval, self.peer(e).tsval))]
        if sack_blocks:
            o += [("NOP", None), ("NOP", None), ("SACK", sack_blocks)]
        return o

    def syn_opts(self, e):
        rng = self.rng
        if rng.random() < 0.05:
            return b""
        o = [("MSS", e.mss)]
        if e.sack:
            o.append(("SACKOK", None))
        if e.ts:
            o.append(("TS", (e.tsval, 0 if e is self.c else self.c.tsval)))
        if e.wscale is not None:
            o += [("NOP", None), ("WS", e.wscale)]
        if rng.random() < 0.3:
            rng.shuffle(o)
        b = enc_opts(o)
        r = rng.random()
        if r < 0.04:
            b = bytes([3, 1]) + b  # option length too short: parse stops
            b = b[:40]
            while len(b) % 4:
                b += b"\x01"
        elif r < 0.07:
            b = (bytes([0]) + b)[:40]  # EOL first: nothing after counts
            while len(b) % 4:
                b += b"\x00"
        elif r < 0.09:
            b = bytes(rng.randrange(256) for _ in range(rng.choice([4, 8, 12])))
        return b

    # ---------------------------------------------------------------- perturbations

    def maybe_perturb(self, frm, flags, seq, ack, win, data):
        """Returns possibly altered (flags, seq, ack, win, data, kind)."""
        rng = self.rng
        if rng.random() >= self.pert:
            return flags, seq, ack, win, data, None
        k = rng.randrange(12)
        if k == 0:
            seq += rng.choice([-1, 1, -len(data) - 1, 1400, -1400, 70000, -70000, 1 << 30, 1 << 31])
        elif k == 1:
            ack += rng.choice([-1, 1, 1000, -1000, 70000, -70000, 1 << 30, 1 << 31])
        elif k == 2:
            win = rng.choice([0, 1, 65535, win // 2])
        elif k == 3:
            flags ^= rng.choice([FIN, PSH, URG, ECE, CWR, ACK, RST, SYN])
        elif k == 4:
            flags = rng.randrange(256)
        elif k == 5:
            data = b"x" * rng.choice([0, 1, 100, 1400, 3000])
        elif k == 6:
            ack = 0
        else:
            return flags, seq, ack, win, data, None
        return flags, seq, ack, win, data, k

    def seg(self, frm, flags, data_len=0, seq=None, ack=None, win=None, opts=None, advance=True,
            perturb=True, deliver=True, doff=None, urp=0):
        """Sends one segment from endpoint frm with its current numbers, perturbed maybe."""
        rng = self.rng
        to = self.peer(frm)
        data = data_len if isinstance(data_len, (bytes, bytearray)) else b"d" * data_len
        s = frm.nxt if seq is None else seq
        if ack is None:
            a = frm.rcv if (flags & ACK and frm.rcv is not None) else (
                rng.randrange(1 << 32) if flags & ACK else 0)
        else:
            a = ack
        w = (frm.win if flags & SYN else self.adv_win(frm)) if win is None else win
        if opts is None:
            opts = self.data_opts(frm) if not flags & SYN else self.syn_opts(frm)
        kind = None
        if perturb:
            flags, s, a, w, data, kind = self.maybe_perturb(frm, flags, s, a, w, data)
        if kind is None and perturb and rng.random() < 0.03 and doff is None:
            doff = rng.choice([0, 4, 15])
        if flags & URG and urp == 0:
            urp = rng.randrange(1, 200)
        self.raw(frm, flags, s, a, w, opts, data, doff=doff, urp=urp)
        n = len(data) + bool(flags & SYN) + bool(flags & FIN)
        if advance and kind is None:
            e = (s + n) & M32
            if ((e - frm.nxt) & M32) < 0x80000000:
                frm.nxt = e
        if deliver and kind is None and not flags & RST:
            if to.rcv is None or ((s - to.rcv) & M32) == 0 or (
                    ((to.rcv - s) & M32) < 0x80000000 and ((s + n - to.rcv) & M32) < 0x80000000):
                to.rcv = (s + n) & M32
        # Occasional duplicate or reorder of what we just emitted.
        r = rng.random()
        if r < self.pert * 0.3:
            self.out.append(self.out[-1].copy())
        elif r < self.pert * 0.5 and len(self.out) >= 2:
            self.out[-1], self.out[-2] = self.out[-2], self.out[-1]

    def lost(self, frm, data_len):
        """A segment lost before the router: the sender's numbers move, nothing is emitted."""
        frm.nxt = (frm.nxt + data_len) & M32

    # ---------------------------------------------------------------- phases

    def open(self):
        rng = self.rng
        c, s = self.c, self.s
        self.ts_on = c.ts and s.ts
        kind = rng.choice(["normal"] * 6 + ["simopen", "synretrans", "wrongack", "halfopen",
                                            "synonly", "pickup", "pickup", "rst_syn", "syndata",
                                            "synack_lost_ack", "newisn"])
        self.kind = kind
        # window scaling only if both announce
        c.scale_on = s.scale_on = c.wscale is not None and s.wscale is not None
        if kind == "pickup":
            c.rcv, s.rcv = s.nxt, c.nxt
            self.ts_on = False
            return True
        self.seg(c, SYN, perturb=rng.random() < 0.3)
        if kind == "synretrans":
            for _ in range(rng.randrange(1, 3)):
                self.seg(c, SYN, seq=c.isn, advance=False)
        if kind == "newisn":
            c.isn = (c.isn + rng.choice([1, 100000, -100000, 1 << 31])) & M32
            c.nxt = c.isn
            self.seg(c, SYN)
        if kind == "synonly":
            return False
        if kind == "rst_syn":
            self.seg(s, RST | ACK, seq=0, ack=c.nxt, opts=b"")
            if rng.random() < 0.5:
                return False
            c.isn = (c.nxt + rng.randrange(1, 100000)) & M32
            c.nxt = c.isn
            s.rcv = None
            self.seg(c, SYN)
        if kind == "syndata":
            # SYN carrying data (TFO-like)
            self.seg(c, SYN, data_len=rng.choice([1, 10, 100]), seq=c.isn, advance=False)
        if kind == "simopen":
            self.seg(s, SYN)
            self.seg(c, SYN | ACK, seq=c.isn)
            self.seg(s, SYN | ACK, seq=s.isn)
            if rng.random() < 0.7:
                self.seg(c, ACK)
            return True
        if kind == "wrongack":
            self.seg(s, SYN | ACK, ack=(c.nxt + rng.choice([1, -1, 1000])) & M32, advance=False)
            if rng.random() < 0.5:
                self.seg(c, RST, seq=rng.choice([c.nxt, 0]), ack=0)
        self.seg(s, SYN | ACK)
        if rng.random() < 0.15:
            self.seg(s, SYN | ACK, seq=s.isn, advance=False)  # SYN/ACK retransmitted
        if kind == "halfopen":
            return False
        if kind == "synack_lost_ack":
            # ACK lost; client sends data directly
            return True
        self.seg(c, ACK)
        return True

    def data_phase(self):
        rng = self.rng
        c, s = self.c, self.s
        for _ in range(rng.randrange(0, 12)):
            if rng.random() < 0.1:
                self.probe()
                continue
            frm = c if rng.random() < 0.5 else s
            to = self.peer(frm)
            r = rng.random()
            if r < 0.5:
                n = rng.choice([0, 1, 10, 100, 536, 1000, 1400, 1400])
                flags = ACK | (PSH if n and rng.random() < 0.7 else 0)
                if rng.random() < 0.04:
                    flags |= URG
                if rng.random() < 0.1:
                    self.lost(frm, n)
                    continue
                self.seg(frm, flags, n)
                if rng.random() < 0.6:
                    self.seg(to, ACK)
            elif r < 0.6:
                # retransmission of old data
                n = rng.choice([1, 100, 1400])
                self.seg(frm, ACK | PSH, n, seq=(frm.nxt - n) & M32, advance=False)
            elif r < 0.67:
                # SACK: receiver reports a hole
                if to.rcv is not None:
                    hole = rng.choice([100, 1000, 1400])
                    blk = [((to.rcv + hole) & M32, (to.rcv + hole + rng.choice([100, 1400, 3000])) & M32)]
                    if rng.random() < 0.3:
                        blk.append(((blk[0][1] + 500) & M32, (blk[0][1] + 900) & M32))
                    # the data past the hole was really sent
                    frm_peer = self.peer(to)
                    frm_peer.nxt = (frm_peer.nxt + hole + 3000 + 1000) & M32
                    self.seg(to, ACK, opts=self.data_opts(to, blk))
            elif r < 0.72:
                # zero window then a probe and reopen
                self.seg(to, ACK, win=0)
                self.seg(frm, ACK, 1 if rng.random() < 0.5 else 0)
                self.seg(to, ACK, win=rng.choice([0, 1000, to.win]))
            elif r < 0.77:
                # keepalive
                self.seg(frm, ACK, rng.choice([0, 1]), seq=(frm.nxt - 1) & M32, advance=False)
                self.seg(to, ACK)
            elif r < 0.82:
                # out of window data
                self.seg(frm, ACK | PSH, rng.choice([10, 1400]),
                         seq=(frm.nxt + rng.choice([100000, 3000000, 1 << 31, -200000])) & M32,
                         advance=False, deliver=False)
            elif r < 0.86:
                # window update / dup ack
                self.seg(frm, ACK, win=rng.choice([frm.win, 100, 65535]))
                if rng.random() < 0.5:
                    self.seg(frm, ACK, perturb=False)
            elif r < 0.9:
                # stray SYN in the middle of the connection (port reuse attempt / challenge ack)
                isn = rng.randrange(1 << 32)
                self.seg(frm, SYN, seq=isn, advance=False, deliver=False)
                r2 = rng.random()
                if r2 < 0.35:
                    # the peer had restarted: it answers the new SYN and both resynchronise
                    frm.isn, frm.nxt, to.rcv = isn, (isn + 1) & M32, (isn + 1) & M32
                    to.isn = to.nxt = rng.randrange(1 << 32)
                    frm.rcv = None
                    self.seg(to, SYN | ACK)
                    self.seg(frm, ACK)
                elif r2 < 0.75:
                    self.seg(to, ACK)  # challenge ACK
            elif r < 0.93:
                # odd flags
                self.seg(frm, rng.randrange(256), rng.choice([0, 10]), advance=False)
            else:
                # several segments in flight, then one cumulative ack
                for _ in range(rng.randrange(2, 5)):
                    self.seg(frm, ACK | PSH, rng.choice([100, 1400]))
                self.seg(to, ACK)

    def close(self):
        rng = self.rng
        c, s = self.c, self.s
        kind = rng.choice(["fin_c", "fin_c", "fin_s", "fin_s", "simfin", "rst_c", "rst_s", "rst_bad",
                           "rstack", "none", "fin_data", "rst_after_fin", "challenge", "oow"])
        self.close_kind = kind
        a, b = (c, s) if rng.random() < 0.5 else (s, c)
        if kind in ("fin_c", "fin_s", "fin_data", "rst_after_fin"):
            a, b = (c, s) if kind != "fin_s" else (s, c)
            self.seg(a, FIN | ACK, rng.choice([0, 0, 10]))
            self.seg(b, ACK)
            if kind == "fin_data":
                self.seg(b, ACK | PSH, rng.choice([10, 1400]))
                self.seg(a, ACK)
            if kind == "rst_after_fin":
                self.seg(b, RST | rng.choice([0, ACK]))
                return
            self.seg(b, FIN | ACK)
            self.seg(a, ACK)
            if rng.random() < 0.3:
                self.seg(a, ACK, perturb=False)  # retransmitted last ACK
        elif kind == "simfin":
            self.seg(c, FIN | ACK, deliver=False)
            self.seg(s, FIN | ACK, deliver=False)
            c.rcv, s.rcv = s.nxt, c.nxt
            self.seg(c, ACK)
            self.seg(s, ACK)
        elif kind in ("rst_c", "rst_s"):
            a = c if kind == "rst_c" else s
            self.seg(a, RST | rng.choice([0, ACK]))
        elif kind == "rst_bad":
            self.seg(a, RST, seq=(a.nxt + rng.choice([1, 2, 1000, -1, 1 << 20, 1 << 31])) & M32,
                     advance=False)
            if rng.random() < 0.7:
                self.seg(b, ACK)  # challenge ACK
                self.seg(a, RST, seq=b.rcv if b.rcv is not None else a.nxt, advance=False)
        elif kind == "rstack":
            self.seg(a, RST | ACK, ack=rng.choice([0, a.rcv or 0]))
        elif kind == "oow":
            # out-of-window FIN or RST from both sides (the kernel may shorten the timeout)
            for e in (a, b, a)[:rng.randrange(2, 4)]:
                self.seg(e, rng.choice([FIN | ACK, RST, RST | ACK]),
                         seq=(e.nxt + rng.choice([1 << 20, 1 << 30, -(1 << 20)])) & M32,
                         advance=False, deliver=False, perturb=False)
        elif kind == "challenge":
            # SYN in established answered by a challenge ACK then RST
            self.seg(a, SYN, seq=rng.randrange(1 << 32), advance=False, deliver=False)
            self.seg(b, ACK)
            self.seg(a, RST, seq=b.rcv if b.rcv is not None else a.nxt, advance=False)
        # trailing packets after close
        for _ in range(rng.randrange(0, 3)):
            frm = c if rng.random() < 0.5 else s
            self.seg(frm, rng.choice([ACK, ACK | PSH, FIN | ACK, RST]), rng.choice([0, 5]))

    def reopen(self):
        rng = self.rng
        c, s = self.c, self.s
        if rng.random() < 0.3:
            c, s = s, c  # reopen from the other side (same tuple reversed)
            self.c, self.s = c, s
        old = c.nxt
        c.isn = (old + rng.choice([1, 1000, 1 << 20, -1000, -(1 << 20), 1 << 31])) & M32
        c.nxt = c.isn
        s.isn = rng.randrange(1 << 32)
        s.nxt = s.isn
        c.rcv = s.rcv = None
        self.seg(c, SYN)
        self.seg(s, SYN | ACK)
        self.seg(c, ACK)
        for _ in range(rng.randrange(0, 4)):
            frm = c if rng.random() < 0.5 else s
            self.seg(frm, ACK | PSH, rng.choice([1, 100]))
            self.seg(self.peer(frm), ACK)

    def ftp_line(self, frm):
        """A control-connection line for the FTP helper, remembering the data connection it
        announces."""
        rng = self.rng
        c, s = self.c, self.s
        port = rng.randrange(1024, 65535)
        r = rng.random()
        if frm is s:
            if r < 0.35 and not self.v6:
                a = s.addr if rng.random() < 0.8 else rng.choice(HOSTS4)
                self.announce = ("pasv", a, port)
                return "227 Entering Passive Mode (%s,%d,%d)\r\n" % (a.replace(".", ","), port >> 8, port & 255)
            if r < 0.6:
                self.announce = ("pasv", s.addr, port)
                return "229 Entering Extended Passive Mode (|||%d|)\r\n" % port
            return rng.choice(["220 ready\r\n", "331 password\r\n", "150 here\r\n", "226 done\r\n",
                               "227 Entering Passive", "200 ok\r\n230 in\r\n"])
        if r < 0.3 and not self.v6:
            a = c.addr if rng.random() < 0.8 else rng.choice(HOSTS4)
            self.announce = ("port", a, port)
            return "PORT %s,%d,%d\r\n" % (a.replace(".", ","), port >> 8, port & 255)
        if r < 0.55:
            self.announce = ("port", c.addr, port)
            return "EPRT |%d|%s|%d|\r\n" % (2 if self.v6 else 1, c.addr, port)
        return rng.choice(["USER x\r\n", "PASS y\r\n", "PASV\r\n", "EPSV\r\n", "LIST\r\n",
                           "RETR f\r\n", "QUIT\r\n", "PO"])

    def ftp_phase(self):
        rng = self.rng
        self.announce = None
        for _ in range(rng.randrange(2, 10)):
            if rng.random() < 0.1:
                self.probe()
                continue
            frm = self.c if rng.random() < 0.5 else self.s
            to = self.peer(frm)
            line = self.ftp_line(frm)
            if rng.random() < 0.3:
                line = ftp_spelling(rng, line)
            line = line.encode()
            r = rng.random()
            if r < 0.2 and len(line) > 2:
                cut = rng.randrange(1, len(line))
                self.seg(frm, ACK | PSH, line[:cut])
                if rng.random() < 0.5:
                    self.seg(to, ACK)
                self.seg(frm, ACK | PSH, line[cut:])
            elif r < 0.3:
                self.seg(frm, ACK | PSH, line)
                self.seg(frm, ACK | PSH, line, seq=(frm.nxt - len(line)) & M32, advance=False)
            elif r < 0.35:
                # lost before the router, then retransmitted
                self.lost(frm, len(line))
                self.seg(frm, ACK | PSH, b"x\r\n")
                self.seg(frm, ACK | PSH, line, seq=(frm.nxt - len(line) - 3) & M32, advance=False)
            else:
                self.seg(frm, ACK | PSH, line)
            if rng.random() < 0.6:
                self.seg(to, ACK)
        if self.announce and rng.random() < 0.8:
            kind, a, port = self.announce
            if kind == "pasv":
                d = Conv(self.case, self.v6, cport=rng.randrange(1024, 65535), sport=port,
                         hosts=(self.c.addr, a))
            else:
                d = Conv(self.case, self.v6, cport=rng.choice([20, rng.randrange(1024, 65535)]),
                         sport=port, hosts=(self.s.addr, a))
            d.pert = self.pert / 2
            d.open()
            if rng.random() < 0.5:
                d.data_phase()
            if rng.random() < 0.5:
                d.close()
            self.out += d.out

    def irc_phase(self):
        """IRC DCC offers from the client (the IRC helper reads them), split, repeated and
        perturbed like the FTP lines."""
        rng = self.rng
        import ipaddress
        for _ in range(rng.randrange(1, 6)):
            frm = self.c if rng.random() < 0.8 else self.s
            a = frm.addr if rng.random() < 0.8 else rng.choice(HOSTS4)
            ip = int(ipaddress.ip_address(a)) if not self.v6 else rng.randrange(1 << 32)
            port = rng.randrange(1024, 65535)
            kind = rng.choice(["SEND f", "CHAT chat", "SEND f", "RESUME f"])
            line = ("PRIVMSG bob :\x01DCC %s %d %d %d\x01\r\n" % (kind, ip, port, rng.randrange(1, 9999))).encode()
            if rng.random() < 0.35:
                line = dcc_spelling(rng, kind, ip, port).encode()
            if rng.random() < 0.2:
                line = line[:rng.randrange(5, len(line))]
            if rng.random() < 0.25:
                self.push(frm, line, rng.randrange(1, len(line)))
            else:
                self.push(frm, line)
                if rng.random() < 0.2:
                    self.seg(frm, ACK | PSH, line, seq=(frm.nxt - len(line)) & M32, advance=False)
            self.seg(self.peer(frm), ACK)
            if rng.random() < 0.5 and not self.v6:
                d = Conv(self.case, False, cport=rng.randrange(1024, 65535), sport=port,
                         hosts=(self.peer(frm).addr if rng.random() < 0.7 else rng.choice(HOSTS4), a))
                d.pert = self.pert / 2
                d.open()
                if rng.random() < 0.5:
                    d.data_phase()
                self.out += d.out

    def push(self, frm, data, cut=None):
        """Sends `data` from `frm` in one segment, or in two split at `cut`."""
        if cut is None:
            self.seg(frm, ACK | PSH, data)
        else:
            self.seg(frm, ACK | PSH, data[:cut])
            self.seg(frm, ACK | PSH, data[cut:])

    def sip_phase(self):
        """SIP over the connection (see sipgrammar.py): a call or a registration whose messages
        go whole, two to a segment, or split over two, then media to what they announced and
        maybe a call from the registrar to a registered contact."""
        rng = self.rng
        C, S = G.Host(self.c.addr, self.v6), G.Host(self.s.addr, self.v6)
        call, num = rng.randrange(10**9), rng.randrange(1, 50)
        announced = []     # (address, port, peer address)
        contacts = []      # (address, port, transport)

        def offer(owner, peer):
            media = []
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                port = rng.randrange(1024, 65000) & ~1
                media.append((rng.choice(["audio", "audio", "video"]), port, None))
                announced.append((owner.addr, port, peer.addr))
            return G.sdp_body(rng, 0, owner, media)

        def msg(frm, start, method, n, body="", extra=()):
            ep = self.c if frm is C else self.s
            h = [("Via", f"SIP/2.0/TCP {frm.sip(rng)}:{ep.port};branch=z9hG4bK{n}"),
                 ("From", f"<sip:alice@{C.sip(rng)}>;tag=1"), ("To", f"<sip:bob@{S.sip(rng)}>"),
                 ("Call-ID", f"{call}@x"), ("CSeq", G.cseq(rng, n, method))] + list(extra)
            if not extra and rng.random() < 0.9:
                h.append(("Contact", G.contact(rng, "alice" if frm is C else "bob", frm, ep.port)))
            length = rng.choice(["right"] * 8 + ["wrong", "missing"])
            return frm, G.render(rng, G.Msg(start, h, body, length))

        plan = []
        if rng.random() < 0.7:
            plan.append(msg(C, f"INVITE sip:bob@{S.sip(rng)} SIP/2.0", "INVITE", num, offer(C, S)))
            if rng.random() < 0.4:
                plan.append(msg(S, "SIP/2.0 100 Trying", "INVITE", num))
            code = rng.choice([200, 200, 200, 183, 486])
            plan.append(msg(S, f"SIP/2.0 {code} X", "INVITE", num, offer(S, C) if code < 300 else ""))
            plan.append(msg(C, f"ACK sip:bob@{S.sip(rng)} SIP/2.0", "ACK", num))
            if rng.random() < 0.3:
                num += 1
                plan.append(msg(S, f"INVITE sip:alice@{C.sip(rng)} SIP/2.0", "INVITE", num, offer(S, C)))
                plan.append(msg(C, "SIP/2.0 200 OK", "INVITE", num, offer(C, S)))
            if rng.random() < 0.5:
                num += 1
                plan.append(msg(rng.choice([C, S]), f"BYE sip:x@{S.sip(rng)} SIP/2.0", "BYE", num))
        else:
            port = rng.choice([5060, 5062, rng.randrange(1024, 65535)])
            tr = rng.choice(["", ";transport=tcp", ";transport=udp", ";transport=TCP"])
            contacts.append((self.c.addr, port, tr))
            exp = rng.choice(["3600", "600", "0"])
            ct = ("Contact", f"<sip:alice@{C.sip(rng)}:{port}{tr}>")
            plan.append(msg(C, f"REGISTER sip:{S.sip(rng)} SIP/2.0", "REGISTER", num, "",
                            [ct, ("Expires", exp)]))
            if rng.random() < 0.85:
                code = rng.choice([200, 200, 401])
                plan.append(msg(S, f"SIP/2.0 {code} X", "REGISTER", num, "",
                                [(ct[0], ct[1] + f";expires={exp}")]))
        i = 0
        while i < len(plan):
            frm, data = plan[i]
            ep = self.c if frm is C else self.s
            r = rng.random()
            if r < 0.15 and i + 1 < len(plan) and plan[i + 1][0] is frm:
                data += plan[i + 1][1]
                i += 1
            self.push(ep, data, rng.randrange(1, len(data)) if r > 0.8 and len(data) > 2 else None)
            if rng.random() < 0.6:
                self.seg(self.peer(ep), ACK)
            i += 1
        from scapy.all import IP, IPv6, UDP, Raw
        for addr, port, peer in announced:
            if rng.random() < 0.7:
                ip = IPv6(src=peer, dst=addr) if self.v6 else IP(src=peer, dst=addr)
                self.out.append(ip / UDP(sport=rng.randrange(1024, 65535), dport=port) / Raw(b"\x80\x00" + b"M" * 12))
        for addr, port, tr in contacts:
            if rng.random() < 0.6:
                if "udp" in tr.lower() or rng.random() < 0.3:
                    ip = IPv6(src=self.s.addr, dst=addr) if self.v6 else IP(src=self.s.addr, dst=addr)
                    self.out.append(ip / UDP(sport=rng.choice([5060, rng.randrange(1024, 65535)]), dport=port)
                                    / Raw(b"OPTIONS sip:alice SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
                else:
                    d = Conv(self.case, self.v6, cport=rng.randrange(1024, 65535), sport=port,
                             hosts=(self.s.addr, addr))
                    d.pert = self.pert / 2
                    d.open()
                    if rng.random() < 0.6:
                        d.seg(d.c, ACK | PSH, b"OPTIONS sip:alice SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"
                              b"Content-Length: 0\r\n\r\n")
                    self.out += d.out

    def probe(self):
        """A segment chosen relative to the numbers either side has used, whatever the state:
        the corners of the window checks and of the state table."""
        rng = self.rng
        frm = self.c if rng.random() < 0.5 else self.s
        to = self.peer(frm)
        flags = rng.choice([SYN, SYN | ACK, ACK, ACK, ACK | PSH, FIN | ACK, FIN | ACK, RST, RST,
                            RST | ACK, RST | ACK, SYN | ACK | ECE | CWR, ACK | URG, FIN | ACK | PSH,
                            rng.randrange(256)])
        pw = max(1, to.win << (to.wscale if (to.scale_on and to.wscale) else 0))
        seq = (frm.nxt + rng.choice([0, 0, 0, -1, 1, -pw, pw, pw - 1, pw + 1, -(pw + 1), -66000,
                                     66000, 1 << 31, -1400, 1400])) & M32
        r = rng.random()
        if r < 0.05:
            seq = 0
        elif r < 0.1:
            seq = frm.isn
        base = frm.rcv if frm.rcv is not None else to.nxt
        ack = (base + rng.choice([0, 0, 0, -1, 1, -66000, -66001, 66000, 1 << 31, -pw, pw, 2]))
        r = rng.random()
        if r < 0.05:
            ack = 0
        elif r < 0.1:
            ack = to.nxt
        ack &= M32
        n = rng.choice([0, 0, 0, 1, 10, 1400])
        win = rng.choice([None, None, 0, 1, 65535])
        opts = None
        if flags & SYN and rng.random() < 0.3:
            opts = b""
        self.seg(frm, flags, n, seq=seq, ack=ack, win=win, opts=opts, perturb=False,
                 advance=rng.random() < 0.4, deliver=rng.random() < 0.4)

    def probes(self, p):
        while self.rng.random() < p:
            self.probe()

    def run(self):
        rng = self.rng
        pp = rng.choice([0.0, 0.2, 0.4, 0.6, 0.85])
        full = self.open()
        self.probes(pp)
        if self.s.port == 21 and (full or rng.random() < 0.5):
            self.ftp_phase()
        elif self.s.port == 6667 and (full or rng.random() < 0.5):
            self.irc_phase()
        elif self.s.port == 5060 and (full or rng.random() < 0.5):
            self.sip_phase()
        elif full or rng.random() < 0.5:
            self.data_phase()
        self.probes(pp)
        if rng.random() < 0.85:
            self.close()
        self.probes(pp)
        if rng.random() < 0.25:
            self.reopen()
            self.probes(pp)
            if rng.random() < 0.5:
                self.close()
                self.probes(pp)
        return self.out


def ftp_spelling(rng, line):
    """`line` (an FTP command or reply) in another spelling: the command's case, blanks,
    zero-padded or out-of-range numbers, other delimiters, missing brackets or delimiters,
    another line end. The FTP helper reads some of these and refuses others."""
    body = line[:-2] if line.endswith("\r\n") else line
    k = rng.choice(["case", "blanks", "zeros", "range", "short", "trail", "delim", "brackets",
                    "family", "lead", "eol", "eol"])
    if k == "case" and body[:1].isalpha():
        body = body[:4].lower() + body[4:] if rng.random() < 0.7 else body[0] + body[1:4].lower() + body[4:]
    elif k == "blanks":
        body = body.replace(",", rng.choice([", ", " ,", ",  "])) if "," in body else body.replace(" ", "  ", 1)
    elif k == "zeros" and "," in body:
        head, _, nums = body.rpartition(" ")
        body = head + " " + ",".join(n.zfill(3) if n.isdigit() else n for n in nums.split(","))
    elif k == "range":
        digits = [i for i, ch in enumerate(body) if ch.isdigit() and (i == 0 or not body[i - 1].isdigit())]
        if len(digits) > 1:
            i = rng.choice(digits[1:])
            j = i
            while j < len(body) and body[j].isdigit():
                j += 1
            body = body[:i] + rng.choice(["256", "999", "65536", "4294967296", "", "-1", "0"]) + body[j:]
    elif k == "short":
        for sep in (",", "|"):
            if sep in body:
                body = body[:body.rindex(sep)]
                break
    elif k == "trail":
        body += rng.choice([" x", ".", ")", "|", "  "])
    elif k == "delim" and "|" in body:
        body = body.replace("|", rng.choice(["!", "#", "/", " "]))
    elif k == "brackets" and "(" in body:
        body = body.replace("(", rng.choice(["", "=", " ", "(("])).replace(")", rng.choice(["", ")", " "]))
    elif k == "family" and "|1|" in body:
        body = body.replace("|1|", rng.choice(["|2|", "|3|", "||", "|01|"]))
    elif k == "family" and "|2|" in body:
        body = body.replace("|2|", rng.choice(["|1|", "|3|", "||"]))
    elif k == "lead":
        body = rng.choice([" ", "\r\n", "x"]) + body
    return body + rng.choice(["\r\n", "\r\n", "\n", "\r", "", "\r\n\r\n"]) if k == "eol" else body + "\r\n"


def dcc_spelling(rng, kind, ip, port):
    """An IRC DCC offer in another spelling: the command's and the type's case, other types
    (MOVE, TSEND, SCHAT, unknown), names with blanks or quotes, the address dotted, padded or
    too big, ports out of range or padded, blanks doubled, the closing \\x01 missing, two
    offers in one line, or the offer in a NOTICE or with no command before it."""
    name = rng.choice(["f", "a b.txt", '"a b.txt"', "x" * 40, ""])
    kind = rng.choice([kind, kind.lower(), "MOVE f", "TSEND f", "SCHAT chat", "GET f", "SEND"])
    if kind.split()[0] in ("SEND", "MOVE", "TSEND", "GET") and len(kind.split()) > 1:
        kind = kind.split()[0] + " " + name if rng.random() < 0.5 else kind
    addr = rng.choice([str(ip)] * 6 + ["0" + str(ip), str(ip + (1 << 32)), "%d.%d.%d.%d" % tuple(
        (ip >> s) & 255 for s in (24, 16, 8, 0)), "x", ""])
    p = rng.choice([str(port)] * 6 + ["0", "80", "1023", "65536", "0" + str(port), "-1", ""])
    sep = " " if rng.random() < 0.85 else "  "
    dcc = rng.choice(["DCC", "DCC", "DCC", "dcc", "Dcc"])
    offer = "\x01%s %s%s%s%s%s %d" % (dcc, kind, sep, addr, sep, p, rng.randrange(1, 9999))
    if rng.random() < 0.85:
        offer += "\x01"
    lead = rng.choice(["PRIVMSG bob :"] * 4 + ["NOTICE bob :", "privmsg bob :", "", ":x!y@z PRIVMSG bob :"])
    line = lead + offer
    if rng.random() < 0.1:
        line += " " + offer
    return line + rng.choice(["\r\n"] * 5 + ["\n", "", "\r"])


def ip_variants(rng, pkts, q):
    """Rewrites a few packets at the IP layer: IPv4 options, IPv6 extension headers,
    fragments (in or out of order), ICMP errors quoting them."""
    from scapy.all import (IP, IPv6, ICMP, ICMPv6DestUnreach, ICMPv6PacketTooBig, Raw,
                           IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                           fragment, fragment6)
    out = []
    for p in pkts:
        if rng.random() >= q:
            out.append(p)
            continue
        v6 = p.haslayer(IPv6)
        k = rng.randrange(4)
        if k == 0:  # options / extension headers
            if v6:
                ip = p[IPv6]
                ext = rng.choice([IPv6ExtHdrHopByHop(nh=6), IPv6ExtHdrDestOpt(nh=6),
                                  IPv6ExtHdrFragment(nh=6, offset=0, m=0, id=rng.randrange(1 << 32))])
                out.append(IPv6(src=ip.src, dst=ip.dst, hlim=64) / ext / Raw(bytes(ip.payload)))
            else:
                ip = p[IP]
                out.append(IP(src=ip.src, dst=ip.dst, proto=6, ttl=64, id=ip.id,
                              options=[b"\x01\x01\x01\x00"]) / Raw(bytes(ip.payload)))
        elif k == 1:  # fragments
            if v6:
                ip = p[IPv6]
                body = bytes(ip.payload)
                if len(body) < 24:
                    out.append(p)
                    continue
                f = fragment6(IPv6(src=ip.src, dst=ip.dst, hlim=64) /
                              IPv6ExtHdrFragment(nh=6, id=rng.randrange(1 << 32)) / Raw(body),
                              rng.choice([56, 64, 96, 1280]) + 40 + 8)
            else:
                ip = p[IP]
                if len(bytes(ip.payload)) < 16:
                    out.append(p)
                    continue
                f = fragment(IP(src=ip.src, dst=ip.dst, proto=6, ttl=64, id=rng.randrange(1, 65536)) /
                             Raw(bytes(ip.payload)), fragsize=rng.choice([8, 16, 24, 64, 512]))
            f = list(f)
            if rng.random() < 0.3:
                rng.shuffle(f)
            out += f
        else:  # ICMP error about this packet, sent back to its source
            out.append(p)
            q_ = bytes(p[IPv6] if v6 else p[IP])
            q_ = q_[:rng.choice([28, 48, 48 + 8, len(q_)])] if not v6 else q_[:rng.choice([48, 60, len(q_)])]
            if v6:
                ip = p[IPv6]
                src = rng.choice([ip.dst, "2001:db8:99::1"])
                e = IPv6(src=src, dst=ip.src, hlim=64) / (
                    ICMPv6DestUnreach(code=rng.choice([1, 3, 4])) if rng.random() < 0.8
                    else ICMPv6PacketTooBig(mtu=1280)) / Raw(q_)
            else:
                ip = p[IP]
                src = rng.choice([ip.dst, "10.99.0.1"])
                e = IP(src=src, dst=ip.src, ttl=64) / ICMP(type=rng.choice([3, 3, 11]),
                                                           code=rng.choice([1, 3, 4])) / Raw(q_)
            out.append(e)
    return out


def build_case(seed, slot=0):
    use_slot(slot)
    case = Case(seed)
    rng = case.rng
    args = case.choose_args()
    nconv = rng.choice([1, 1, 1, 2, 2, 3])
    streams = []
    for _ in range(nconv):
        v6 = rng.random() < 0.15
        cv = Conv(case, v6)
        st = cv.run()
        if rng.random() < 0.2:
            st = ip_variants(rng, st, rng.choice([0.05, 0.15]))
        streams.append(st)
    # interleave conversations, keeping each one's order
    pkts = []
    idx = [0] * len(streams)
    while any(idx[i] < len(streams[i]) for i in range(len(streams))):
        live = [i for i in range(len(streams)) if idx[i] < len(streams[i])]
        i = rng.choice(live)
        run_len = rng.randrange(1, 5)
        for _ in range(run_len):
            if idx[i] < len(streams[i]):
                pkts.append(streams[i][idx[i]])
                idx[i] += 1
    if len(pkts) < 5:
        # pad with a trailing conversation so every case has something to compare
        cv = Conv(case, False)
        cv.open()
        cv.data_phase()
        pkts += cv.out
    pkts = pkts[:60]
    gaps = set()
    if case.realtime:
        gaps = set(rng.sample(range(len(pkts)), min(len(pkts), rng.choice([1, 2]))))
    return pkts, args, gaps


def write_case(seed, path, slot=0):
    pkts, args, gaps = build_case(seed, slot)
    frames = []
    t = ctgen.T0
    for i, p in enumerate(pkts):
        t += 3.5 if i in gaps else 0.001
        frames.append((t, ctgen.frame_bytes(p, None)))
    ctgen.write_pcap(path, frames, 1)
    return args, len(pkts)


def run(seed0, count, outdir, realtime_only=False):
    compare = os.path.join(HERE, "compare.sh")
    os.makedirs(outdir, exist_ok=True)
    work = os.path.join(outdir, "work")
    os.makedirs(work, exist_ok=True)
    cases = pkts = scored = dis = failing = 0
    t0 = time.time()
    for seed in range(seed0, seed0 + count):
        pcap = os.path.join(work, "case.pcap")
        args, n = write_case(seed, pcap)
        if realtime_only and "--realtime" not in args:
            continue
        keep = os.path.join(work, "keep")
        shutil.rmtree(keep, ignore_errors=True)
        env = dict(os.environ, KEEP=keep, MAX="1000")
        # compare.sh gives --realtime to the oracle only (the stamped copy carries its timing).
        p, line, n, sc = compare_once(compare, pcap, args, env)
        cases += 1
        pkts, scored = pkts + n, scored + sc
        if p.returncode == 2 or not line:
            print(f"seed {seed}: tool error: {p.stderr.strip()[:300]}", flush=True)
            continue
        if p.returncode != 0:
            failing += 1
            ndis = len(p.stdout.splitlines()) - 1
            dis += ndis
            keep_case(os.path.join(outdir, str(seed)), pcap, keep, args, p.stdout)
            print(f"seed {seed}: {ndis} disagreements ({' '.join(args[2:])})", flush=True)
            for l in p.stdout.splitlines()[1:4]:
                print("   " + l, flush=True)
        if cases % 25 == 0:
            print(f"# cases {cases} packets {pkts} scored {scored} failing cases {failing} "
                  f"disagreements {dis} ({time.time() - t0:.0f}s)", flush=True)
    print(f"# cases {cases} packets {pkts} scored {scored} failing cases {failing} "
          f"disagreements {dis} ({time.time() - t0:.0f}s)", flush=True)


def compare_once(compare, pcap, args, env):
    """Runs compare.sh on one capture: its process, summary line, packets and scored packets."""
    p = subprocess.run([compare, pcap] + args, capture_output=True, text=True, env=env)
    line = p.stdout.splitlines()[0] if p.stdout else ""
    return (p, line) + summary_counts(line)


def summary_counts(line):
    """The packets and scored packets of compare.sh's summary line (0, 0 when it has none)."""
    try:
        f = line.split()
        return int(f[f.index("packets") + 1]), int(f[f.index("scored") + 1])
    except (ValueError, IndexError):
        return 0, 0


def keep_case(d, pcap, keep, args, report):
    """Keeps a disagreeing case in directory `d`: its capture, what compare.sh kept (`keep`),
    its arguments and compare.sh's report."""
    os.makedirs(d, exist_ok=True)
    shutil.copy(pcap, os.path.join(d, "case.pcap"))
    for fn in ("stamped.pcap", "kernel.out", "ctrack.out"):
        if os.path.exists(os.path.join(keep, fn)):
            shutil.copy(os.path.join(keep, fn), os.path.join(d, fn))
    with open(os.path.join(d, "args"), "w") as fh:
        fh.write(" ".join(args) + "\n")
    with open(os.path.join(d, "report"), "w") as fh:
        fh.write(report)


def run_packed(seed0, count, outdir, pack):
    """Like run, but `pack` cases (without --realtime) share one capture, each with its own
    addresses, and the sysctl variant of the pack's first case; a disagreement is then
    replayed case by case (each written with its pack's arguments) to name the seed."""
    compare = os.path.join(HERE, "compare.sh")
    os.makedirs(outdir, exist_ok=True)
    work = os.path.join(outdir, "work")
    os.makedirs(work, exist_ok=True)
    cases = pkts = scored = dis = failing = 0
    t0 = time.time()
    seed = seed0
    while seed < seed0 + count:
        frames, spans, args = [], [], None
        t = ctgen.T0
        slot = 0
        while slot < pack and seed < seed0 + count:
            p, a, gaps = build_case(seed, slot + 1)
            seed += 1
            if "--realtime" in a:
                continue
            args = args or a
            spans.append((seed - 1, slot + 1, len(frames), len(p)))
            for q in p:
                t += 0.0005
                frames.append((t, ctgen.frame_bytes(q, None)))
            slot += 1
        if not frames:
            continue
        pcap = os.path.join(work, "pack.pcap")
        ctgen.write_pcap(pcap, frames, 1)
        env = dict(os.environ, MAX="100000")
        p, line, n, sc = compare_once(compare, pcap, args, env)
        cases += len(spans)
        pkts, scored = pkts + n, scored + sc
        if p.returncode == 2 or not line:
            print(f"pack at seed {spans[0][0]}: tool error: {p.stderr.strip()[:300]}", flush=True)
            continue
        if p.returncode != 0:
            # Find the guilty cases: replay each alone with the pack's arguments.
            found = 0
            for s_, slot_, _, _ in spans:
                pc = os.path.join(work, "case.pcap")
                _, n = write_case(s_, pc, slot_)
                keep = os.path.join(work, "keep")
                shutil.rmtree(keep, ignore_errors=True)
                q = subprocess.run([compare, pc] + args, capture_output=True, text=True,
                                   env=dict(os.environ, KEEP=keep, MAX="1000"))
                if q.returncode != 1:
                    continue
                failing += 1
                found += 1
                ndis = len(q.stdout.splitlines()) - 1
                dis += ndis
                keep_case(os.path.join(outdir, f"{s_}-slot{slot_}"), pc, keep, args, q.stdout)
                print(f"seed {s_} (slot {slot_}): {ndis} disagreements ({' '.join(args[2:])})", flush=True)
                for l in q.stdout.splitlines()[1:4]:
                    print("   " + l, flush=True)
            if not found:
                # Only the pack disagrees: keep it whole.
                failing += 1
                d = os.path.join(outdir, f"pack-{spans[0][0]}")
                os.makedirs(d, exist_ok=True)
                shutil.copy(pcap, os.path.join(d, "case.pcap"))
                with open(os.path.join(d, "args"), "w") as fh:
                    fh.write(" ".join(args) + "\n")
                with open(os.path.join(d, "report"), "w") as fh:
                    fh.write(p.stdout)
                print(f"pack at seed {spans[0][0]}: disagrees only as a whole", flush=True)
                for l in p.stdout.splitlines()[1:4]:
                    print("   " + l, flush=True)
        print(f"# cases {cases} packets {pkts} scored {scored} failing cases {failing} "
              f"disagreements {dis} ({time.time() - t0:.0f}s)", flush=True)


def read_frames(path):
    data = open(path, "rb").read()
    e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        out.append((sec + frac / (1e9 if nano else 1e6), data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def minimise(case_dir):
    """Greedily drops packets of a kept case while some disagreement remains; writes
    case_dir/min.pcap and prints its report."""
    compare = os.path.join(HERE, "compare.sh")
    args = open(os.path.join(case_dir, "args")).read().split()
    frames = read_frames(os.path.join(case_dir, "case.pcap"))
    env = dict(os.environ, MAX="1000")
    trial = os.path.join(case_dir, "trial.pcap")

    def fails(fr):
        ctgen.write_pcap(trial, fr, 1)
        p = subprocess.run([compare, trial] + args, capture_output=True, text=True, env=env)
        return p.returncode == 1, p.stdout

    ok, _ = fails(frames)
    if not ok:
        sys.exit("minimise: the case does not fail any more")
    changed = True
    while changed:
        changed = False
        i = len(frames) - 1
        while i >= 0:
            cand = frames[:i] + frames[i + 1:]
            if cand and fails(cand)[0]:
                frames = cand
                changed = True
            i -= 1
    ctgen.write_pcap(os.path.join(case_dir, "min.pcap"), frames, 1)
    print(fails(frames)[1])
    print(f"minimal: {len(frames)} packets in {os.path.join(case_dir, 'min.pcap')}")


def main():
    av = sys.argv[1:]
    if len(av) == 2 and av[0] == "min":
        minimise(av[1])
        return
    if len(av) >= 3 and av[0] == "gen":
        args, n = write_case(int(av[1]), av[2])
        print(" ".join(args))
        return
    if av and av[0] == "run":
        seed, count, out, pack, rt = 1, 100, "/tmp/difffuzz-tcp", 1, False
        i = 1
        while i < len(av):
            if av[i] == "--realtime-only":
                rt = True
                i += 1
                continue
            if av[i] == "--seed":
                seed = int(av[i + 1])
            elif av[i] == "--count":
                count = int(av[i + 1])
            elif av[i] == "--out":
                out = av[i + 1]
            elif av[i] == "--pack":
                pack = int(av[i + 1])
            else:
                sys.exit(f"difffuzz: unknown option {av[i]}")
            i += 2
        if pack > 1 and rt:
            sys.exit("difffuzz: --pack leaves the --realtime cases out; --realtime-only runs only them")
        if pack > 1:
            run_packed(seed, count, out, pack)
        else:
            run(seed, count, out, rt)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
