"""SANE helper scenarios: a scanner client's SANE_NET_START request, answered with success,
announces the data port the client then connects to; refused starts, other requests and
replies to them announce nothing."""
import struct

from ctgen import scenario
from scenarios_tcp import Flow

C, S = "10.46.0.1", "10.46.0.2"
C6, S6 = "2001:db8:46::1", "2001:db8:46::2"


def start():
    return struct.pack("!II", 7, 1)


def reply(status, port, zero=0):
    return struct.pack("!IHH", status, zero, port) + b"\x00" * 8


def data(port, sport, c=C, s=S):
    d = Flow(sport, port, v6=":" in c, c=c, s=s)
    return d.handshake() + [d.s("PA", b"scan data"), d.c("A")]


@scenario("helpers/sane", args="--helper all")
def _():
    f = Flow(43001, 6566, c=C, s=S)
    p = f.handshake()
    # SANE_NET_INIT and its reply: not a start.
    p += [f.c("PA", struct.pack("!II", 0, 1)), f.s("PA", reply(0, 0) + b"\x00\x00\x00\x03")]
    # A start, a successful reply: the data connection is expected.
    p += [f.c("PA", start()), f.s("PA", reply(0, 40001))]
    p += data(40001, 43002)
    # A refused start (status 1), and a reply with a nonzero middle word: nothing.
    p += [f.c("PA", start()), f.s("PA", reply(1, 40002))]
    p += data(40002, 43003)
    p += [f.c("PA", start()), f.s("PA", reply(0, 40003, zero=1))]
    p += data(40003, 43004)
    # A start request of the wrong length is not one.
    p += [f.c("PA", start() + b"\x00"), f.s("PA", reply(0, 40004))]
    p += data(40004, 43005)
    # A start whose reply is pending at the end.
    p += [f.c("PA", start()), f.s("PA", reply(0, 40005))]
    return p


@scenario("helpers/sane-ipv6", args="--helper all")
def _():
    f = Flow(43011, 6566, v6=True, c=C6, s=S6)
    p = f.handshake() + [f.c("PA", start()), f.s("PA", reply(0, 40011))]
    p += data(40011, 43012, c=C6, s=S6)
    return p
