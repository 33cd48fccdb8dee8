"""Deadlines inside the kernel's 4 ms tick: replayed in real time (--realtime), each probe a
few milliseconds from its flow's deadline, where the kernel's answer depends on the point of
its tick at which the flow began, which no timestamp shows. The kernel's answers there are
not reproducible one by one, so these captures live in pcaps/ticks/, which the exact golden
comparison leaves out: tests/golden.rs checks that every other packet agrees exactly and that
ctrack's half-tick rule (ctrack_protocols::HALF_JIFFY) misses on at most a set share of the
probes (about a quarter expected, half for a rule at either edge of the tick). Each probe
carries the payload b"probe"; the seed is fixed, so the unstamped capture is reproducible."""
import random

from ctgen import scenario
from scapy.all import IP, UDP

FLOWS = 300
PROBE = b"probe"


def u(src, dst, sp, dp, data=b"t"):
    return IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / data


def starts(seed):
    """Flow start times 4 ms apart with a random point in each tick, and a probe offset in
    (0, 4 ms) from the deadline for each."""
    rnd = random.Random(seed)
    return [(i * 0.004 + rnd.random() * 0.004, rnd.random() * 0.004) for i in range(FLOWS)]


@scenario("ticks/udp-stream", args="--realtime")
def _():
    # Replied at once, then a probe just past the 2-second stream delay: ASSURED when the
    # kernel's tick count has passed it, not yet otherwise.
    pkts = []
    for i, (t, off) in enumerate(starts(1)):
        a, sp = f"10.31.{i // 250}.{i % 250 + 1}", 20000 + i
        pkts += [(t, u(a, "10.31.9.1", sp, 700)),
                 (t + 0.05, u("10.31.9.1", a, 700, sp)),
                 (t + 2.0 + off, u(a, "10.31.9.1", sp, 700, PROBE))]
    return pkts


@scenario("ticks/expiry", args="--realtime --sysctl nf_conntrack_udp_timeout=3")
def _():
    # Unreplied, then a "reply" probe just before the 3-second timeout: the reply of a live
    # entry, or a new connection when the kernel's tick count has reached the deadline.
    pkts = []
    for i, (t, off) in enumerate(starts(2)):
        a, sp = f"10.32.{i // 250}.{i % 250 + 1}", 20000 + i
        pkts += [(t, u(a, "10.32.9.1", sp, 700)),
                 (t + 3.0 - off, u("10.32.9.1", a, 700, sp, PROBE))]
    return pkts
