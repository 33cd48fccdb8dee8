"""Scenario framework for ctrack's kernel-verified captures.

A scenario is a function decorated with @scenario(name, args=...) that returns a list of
(time_offset_seconds, scapy_packet) pairs or plain packets (then spaced 1 ms apart). The
generator writes each to OUT/<name>.pcap with OUT/<name>.args (the ktrace/ctrack arguments);
regen.sh replays them through ../shared/oracle/ktrace and commits the kernel-stamped capture
and its golden output under pcaps/.

Run with Debian's python3 (python3-scapy): /usr/bin/python3 pcaps/gen/generate.py OUT [FILTER]
"""
import os
import struct
import sys

SCENARIOS = []
T0 = 1_700_000_000.0  # capture epoch; the oracle restamps with kernel time anyway


def scenario(name, args="", fmt="pcap", link=None, steps_back=False, zones=False, marks=False):
    """Registers a scenario. args: extra ktrace/ctrack arguments (e.g. '--sysctl X=1').
    fmt: 'pcap', 'pcapng' (produced from the kernel-stamped pcap with editcap) or 'pcapng-be'
    (editcap's pcapng rewritten in big-endian order by pcapng_be.py).
    link: None for Ethernet, or one of 'raw', 'raw4', 'raw6', 'null', 'sll', 'sll2'.
    steps_back: a timed scenario whose packets stay in the order given, timestamps stepping
    back where they say so; regen.sh commits this capture itself (the kernel-stamped one never
    steps back), so it wants --realtime, whose schedule sends a late-stamped packet at once.
    zones: packets with an IPv4 TTL or IPv6 hop limit of 100 + N are in conntrack zone N;
    regen.sh replays the scenario through ktrace_rules.py and writes NAME.zones beside it.
    marks: a packet with DSCP N (1 to 9) sets its connection's mark to N, DSCP 10 sets it to 0;
    regen.sh replays the scenario through ktrace_rules.py and writes NAME.marks beside it."""
    def deco(fn):
        SCENARIOS.append((name, args, fmt, link, fn, steps_back, zones, marks))
        return fn
    return deco


LINKTYPES = {None: 1, "raw": 101, "raw4": 228, "raw6": 229, "null": 0, "sll": 113, "sll2": 276}


def frame_bytes(pkt, link):
    """Serialises a scapy packet for the link type: Ethernet frames as built, or the IP layer
    wrapped in the requested pseudo-header."""
    from scapy.all import Ether, IP, IPv6, raw
    if link is None:
        if not pkt.haslayer(Ether):
            pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt
        return raw(pkt)
    ip = pkt
    if pkt.haslayer(Ether):
        ip = pkt[Ether].payload
    b = raw(ip)
    v6 = len(b) > 0 and b[0] >> 4 == 6
    if link in ("raw", "raw4", "raw6"):
        return b
    if link == "null":
        return struct.pack("<I", 30 if v6 else 2) + b
    et = 0x86DD if v6 else 0x0800
    if link == "sll":
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", et) + b
    if link == "sll2":
        return struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + b
    raise ValueError(link)


def write_pcap(path, frames, linktype):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for t, fr in frames:
            sec = int(t)
            usec = int(round((t - sec) * 1e6))
            if usec >= 1000000:
                sec, usec = sec + 1, usec - 1000000
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)


def build(out, only=None):
    os.makedirs(out, exist_ok=True)
    for name, args, fmt, link, fn, steps_back, zones, marks in SCENARIOS:
        if only and only not in name:
            continue
        items = fn()
        if any(isinstance(it, tuple) for it in items) and not steps_back:
            items = sorted(items, key=lambda it: it[0])  # timed scenarios: file order is time order
        frames = []
        t = T0
        for it in items:
            if isinstance(it, tuple):
                t = T0 + it[0]
                pkt = it[1]
            else:
                t += 0.001
                pkt = it
            fr = pkt if isinstance(pkt, (bytes, bytearray)) else frame_bytes(pkt, link)
            frames.append((t, bytes(fr)))
        base = os.path.join(out, name)
        os.makedirs(os.path.dirname(base), exist_ok=True)
        write_pcap(base + ".pcap", frames, LINKTYPES[link])
        with open(base + ".meta", "w") as f:
            f.write(f"args={args}\nfmt={fmt}\ncommit={'source' if steps_back else 'stamped'}\n")
            if zones:
                f.write("zones=ttl\n")
            if marks:
                f.write("marks=dscp\n")
        print(name)
