"""Helper scenarios: FTP control connections announcing data connections (PASV/227, EPSV/229,
PORT, EPRT; the line-start rule, partial commands, foreign addresses, one expectation per
master, clashes, IPv6) and TFTP requests; the data connections then arrive RELATED."""
from ctgen import scenario
from scapy.all import IP, IPv6, TCP, UDP, Raw, raw
from scenarios_tcp import Flow

C, S, C2 = "10.30.0.1", "10.30.0.2", "10.30.0.3"
C6, S6 = "2001:db8:30::1", "2001:db8:30::2"
FTP = "--helper ftp:tcp:21"


def login(f):
    """Handshake, banner and login: after it, each side's next segment starts a line."""
    return f.handshake() + [
        f.s("PA", b"220 ctrack test FTP\r\n"), f.c("A"),
        f.c("PA", b"USER anonymous\r\n"), f.s("PA", b"331 Password please\r\n"),
        f.c("PA", b"PASS x\r\n"), f.s("PA", b"230 Logged in\r\n"),
    ]


def transfer(d, data=b"file contents\n", close=True):
    """A data connection: handshake, a few bytes from the server, and a close."""
    p = d.handshake() + [d.s("PA", data), d.c("A")]
    if close:
        p += [d.s("FA"), d.c("FA"), d.s("A")]
    return p


def pasv(port, server="10.30.0.2"):
    """The server's answer to PASV: a data connection to `server`:`port`."""
    h = server.replace(".", ",").encode()
    return b"227 Entering Passive Mode (%s,%d,%d).\r\n" % (h, port >> 8, port & 255)


@scenario("helpers/ftp-passive", args=FTP)
def _():
    f = Flow(42001, 21, c=C, s=S)
    p = login(f) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50001)), f.c("A")]
    p += transfer(Flow(42002, 50001, c=C, s=S))
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50002)), f.c("A")]
    p += transfer(Flow(42003, 50002, c=C, s=S), close=False)
    # Another connection to the same port is not expected any more.
    p += [Flow(42004, 50002, c=C, s=S).c("S")]
    p += [f.c("PA", b"QUIT\r\n"), f.s("PA", b"221 Bye\r\n"), f.c("FA"), f.s("FA"), f.c("A")]
    return p


@scenario("helpers/ftp-active", args=FTP)
def _():
    f = Flow(42011, 21, c=C, s=S)
    p = login(f) + [f.c("PA", b"PORT 10,30,0,1,164,1\r\n"), f.s("PA", b"200 PORT ok\r\n")]
    p += transfer(Flow(20, 41985, c=S, s=C))
    p += [f.c("PA", b"port 10,30,0,1,164,2\r\n"), f.s("PA", b"200 PORT ok\r\n")]
    p += transfer(Flow(20, 41986, c=S, s=C), close=False)
    # A command that is not read: a PORT glued to the end of another line's segment.
    p += [f.c("PA", b"NOOP\r\nPORT 10,30,0,1,164,3\r\n"), f.s("PA", b"200 ok\r\n200 ok\r\n")]
    p += [Flow(20, 41987, c=S, s=C).c("S")]
    return p


@scenario("helpers/ftp-extended", args=FTP)
def _():
    f = Flow(42021, 21, c=C, s=S)
    p = login(f) + [f.c("PA", b"EPSV\r\n"),
                    f.s("PA", b"229 Entering Extended Passive Mode (|||50021|)\r\n"), f.c("A")]
    p += transfer(Flow(42022, 50021, c=C, s=S))
    p += [f.c("PA", b"EPRT |1|10.30.0.1|41990|\r\n"), f.s("PA", b"200 EPRT ok\r\n")]
    p += transfer(Flow(20, 41990, c=S, s=C))
    # A different delimiter is as good.
    p += [f.c("PA", b"EPRT !1!10.30.0.1!41991!\r\n"), f.s("PA", b"200 EPRT ok\r\n")]
    p += [Flow(20, 41991, c=S, s=C).c("S")]
    return p


@scenario("helpers/ftp-line-starts", args=FTP)
def _():
    f = Flow(42031, 21, c=C, s=S)
    # The first segment each way is never read: this PORT announces nothing.
    p = f.handshake() + [f.c("PA", b"PORT 10,30,0,1,164,10\r\n"), f.s("PA", b"200 ok\r\n")]
    p += [Flow(20, 41994, c=S, s=C).c("S")]
    # A reply split over two segments: the second does not start a line.
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", b"227 Entering Passive"),
          f.s("PA", b" Mode (10,30,0,2,195,90).\r\n"), f.c("A")]
    p += [Flow(42032, 50010, c=C, s=S).c("S")]
    # The next one, at a line start, is read.
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50011)), f.c("A")]
    p += [Flow(42033, 50011, c=C, s=S).c("S")]
    return p


@scenario("helpers/ftp-refused", args=FTP)
def _():
    f = Flow(42041, 21, c=C, s=S)
    p = login(f)
    # Commands that start like PORT or 227 but cannot be read: the kernel drops them
    # (unscored) and does not move its line start past them.
    p += [f.c("PA", b"PORT\r\n", advance=False), f.c("PA", b"PORT 10,30,0,1\r\n", advance=False),
          f.c("PA", b"PASV\r\n"), f.s("PA", b"227 No numbers here\r\n", advance=False),
          f.s("PA", pasv(50041)), f.c("A")]
    p += [Flow(42042, 50041, c=C, s=S).c("S")]
    # An address other than the sender's is not followed.
    p += [f.c("PA", b"PORT 10,30,0,9,164,20\r\n"), f.s("PA", b"200 ok\r\n")]
    p += [Flow(20, 42004, c=S, s="10.30.0.9").c("S"), Flow(20, 42004, c=S, s=C).c("S")]
    return p


@scenario("helpers/ftp-one-per-master", args=FTP)
def _():
    f = Flow(42051, 21, c=C, s=S)
    g = Flow(42052, 21, c=C, s=S)
    p = login(f) + login(g)
    # A second announcement replaces the first.
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50051)), f.c("A"),
          f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50052)), f.c("A")]
    p += [Flow(42053, 50051, c=C, s=S).c("S"), Flow(42054, 50052, c=C, s=S).c("S")]
    # Two masters announcing the same connection: the second clashes and is dropped.
    p += [f.c("PA", b"PORT 10,30,0,1,164,30\r\n"), f.s("PA", b"200 ok\r\n"),
          g.c("PA", b"PORT 10,30,0,1,164,30\r\n"), g.s("PA", b"200 ok\r\n")]
    p += [Flow(20, 42014, c=S, s=C).c("S")]
    # A master's reset leaves its pending expectation behind (until the entry goes).
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50053)), f.c("A"), f.c("R")]
    p += [Flow(42055, 50053, c=C, s=S).c("S")]
    return p


@scenario("helpers/ftp-ipv6", args=FTP)
def _():
    f = Flow(42061, 21, v6=True, c=C6, s=S6)
    p = login(f) + [f.c("PA", b"EPSV\r\n"),
                    f.s("PA", b"229 Entering Extended Passive Mode (|||50061|)\r\n"), f.c("A")]
    p += transfer(Flow(42062, 50061, v6=True, c=C6, s=S6))
    p += [f.c("PA", b"EPRT |2|2001:db8:30::1|42070|\r\n"), f.s("PA", b"200 ok\r\n")]
    p += [Flow(20, 42070, v6=True, c=S6, s=C6).c("S")]
    # An IPv4 EPRT or PORT on an IPv6 connection: refused, or not followed.
    p += [f.c("PA", b"EPRT |1|10.30.0.1|42071|\r\n", advance=False),
          f.c("PA", b"PORT 10,30,0,1,164,80\r\n"), f.s("PA", b"200 ok\r\n")]
    p += [Flow(20, 42064, v6=True, c=S6, s=C6).c("S")]
    return p


def tftp(src, dst, sport, dport, payload):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)


@scenario("helpers/tftp", args="--helper tftp:udp:69")
def _():
    rrq = b"\x00\x01boot.img\x00octet\x00"
    wrq = b"\x00\x02upload.bin\x00octet\x00"
    return [
        tftp(C, S, 42100, 69, rrq), tftp(S, C, 33001, 42100, b"\x00\x03\x00\x01data"),
        tftp(C, S, 42100, 33001, b"\x00\x04\x00\x01"),
        tftp(C, S, 42101, 69, wrq), tftp(S, C, 33002, 42101, b"\x00\x04\x00\x00"),
        tftp(C, S, 42101, 33002, b"\x00\x03\x00\x01data"),
        # Neither a request nor from the master: nothing expected.
        tftp(C, S, 42102, 69, b"\x00\x05\x00\x01oops\x00"), tftp(S, C, 33003, 42102, b"\x00\x03"),
        # A request retransmitted: the expectation is renewed, not doubled.
        tftp(C2, S, 42103, 69, rrq), tftp(C2, S, 42103, 69, rrq),
        tftp(S, C2, 33004, 42103, b"\x00\x03\x00\x01data"),
        # A pending one, listed at the end.
        tftp(C2, S, 42104, 69, rrq),
    ]


@scenario("helpers/unassigned-port", args=FTP)
def _():
    # The same dialogue on a port without a helper announces nothing.
    f = Flow(42111, 2121, c=C, s=S)
    p = login(f) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50111)), f.c("A")]
    return p + [Flow(42112, 50111, c=C, s=S).c("S")]


@scenario("helpers/ftp-master-reopened", args=FTP)
def _():
    # A control connection reset and reopened on the same ports is a new entry: the data
    # connection of the old one still holds the old entry, not the new (use= counts).
    f = Flow(42081, 21, c=C, s=S)
    p = login(f) + [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50081)), f.c("A")]
    d1 = Flow(42082, 50081, c=C, s=S)
    p += transfer(d1, close=False)
    p += [f.c("R")]
    g = Flow(42081, 21, c=C, s=S, cseq=900000, sseq=800000)
    p += login(g) + [g.c("PA", b"PASV\r\n"), g.s("PA", pasv(50082)), g.c("A")]
    p += transfer(Flow(42083, 50082, c=C, s=S), close=False)
    # The old data connection goes (reset, then reopened: no longer expected); the new
    # master keeps its own child.
    p += [d1.c("R"), Flow(42082, 50081, c=C, s=S, cseq=700000).c("S")]
    # Again, with the old data connection left open: the new master holds none.
    h = Flow(42084, 21, c=C, s=S)
    p += login(h) + [h.c("PA", b"PASV\r\n"), h.s("PA", pasv(50083)), h.c("A")]
    p += transfer(Flow(42085, 50083, c=C, s=S), close=False)
    p += [h.c("R")]
    k = Flow(42084, 21, c=C, s=S, cseq=600000, sseq=500000)
    p += login(k)
    return p


@scenario("helpers/expectation-taken-by-invalid", args="--helper all")
def _():
    # The kernel finds a packet's expectation before its protocol checks the header: a packet
    # of an expected connection that is then invalid (bad data offset, a flag combination no
    # TCP sends, a truncated header, a UDP length past the datagram) takes the expectation
    # with it, and the connection's real first packet is only NEW. The data connection of an
    # expectation left alone is RELATED.
    f = Flow(42091, 21, c=C, s=S)
    p = login(f)
    bad = [
        lambda port: IP(src=S, dst=C, proto=6) / Raw(bytes(TCP(sport=20, dport=port, flags="S"))[:12]
                                            + b"\xf0" + bytes(TCP(sport=20, dport=port, flags="S"))[13:]),
        lambda port: IP(src=S, dst=C) / TCP(sport=20, dport=port, flags="F"),
        lambda port: IP(src=S, dst=C, proto=6) / Raw(bytes(TCP(sport=20, dport=port))[:6]),
        None,
    ]
    for i, b in enumerate(bad):
        port = 42092 + i
        p += [f.c("PA", b"PORT 10,30,0,1,%d,%d\r\n" % (port >> 8, port & 255)),
              f.s("PA", b"200 ok\r\n")]
        if b:
            p.append(b(port))
        p += [Flow(20, port, c=S, s=C).c("S")]
    rrq = b"\x00\x01boot.img\x00octet\x00"
    p += [tftp(C, S, 42096, 69, rrq),
          IP(src=S, dst=C) / UDP(sport=33005, dport=42096, len=200) / Raw(b"\x00\x03\x00\x01"),
          tftp(S, C, 33005, 42096, b"\x00\x03\x00\x01data")]
    return p


def bad_sum(pkt, layer):
    """`pkt` with the checksum of its `layer` (TCP or UDP) wrong."""
    p = IP(raw(pkt))
    p[layer].chksum ^= 0x5a5a
    return p


@scenario("helpers/expectation-taken-by-bad-checksum",
          args="--helper all --sysctl nf_conntrack_checksum=1")
def _():
    # With checksums checked, a segment or datagram of an expected connection whose checksum
    # is wrong takes the expectation as any other invalid first packet does (the kernel looks
    # the connection up before its protocol checks the checksum): the real first packet is
    # only NEW. Meanwhile the established traffic of other connections (here the control
    # connection itself and a finished data connection) goes on, and a bad checksum there
    # takes nothing. An expectation left alone still makes its connection RELATED.
    f = Flow(42111, 21, c=C, s=S)
    p = login(f)
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50111)), f.c("A")]
    d = Flow(42112, 50111, c=C, s=S)
    p += transfer(d, close=False)
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50112)), f.c("A")]
    # While it is pending: a bad segment of the established data connection, then its good
    # ones, and the control connection's.
    p += [bad_sum(d.s("PA", b"more", advance=False), TCP), d.s("PA", b"more"), d.c("A"),
          f.c("PA", b"NOOP\r\n"), f.s("PA", b"200 ok\r\n")]
    e = Flow(42113, 50112, c=C, s=S)
    p += [bad_sum(e.c("S", advance=False), TCP), e.c("S")]
    p += [f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50113)), f.c("A")]
    p += [Flow(42114, 50113, c=C, s=S).c("S")]
    rrq = b"\x00\x01boot.img\x00octet\x00"
    p += [tftp(C, S, 42115, 69, rrq),
          bad_sum(tftp(S, C, 33011, 42115, b"\x00\x03\x00\x01data"), UDP),
          tftp(S, C, 33011, 42115, b"\x00\x03\x00\x01data"),
          tftp(C, S, 42116, 69, rrq),
          tftp(S, C, 33012, 42116, b"\x00\x03\x00\x01data")]
    return p


@scenario("helpers/ftp-line-start-half-space",
          args=FTP + " --sysctl nf_conntrack_tcp_be_liberal=1")
def _():
    # The helper remembers two places where a line starts in each direction; with both taken,
    # a new one replaces the older if it lies after it in TCP's sequence order, where two
    # numbers exactly 2^31 apart each lie after the other. Here the older place is a stray
    # line far from the stream (accepted with be_liberal), the newer the start of the 227
    # reply, and the place after that reply exactly 2^31 past the stray one: it replaces it, so
    # the next 227 is read too and its expectation replaces the first. Found by difffuzz.py
    # (seed 736657).
    f = Flow(42101, 21, c=C, s=S, sseq=4294965110)
    p = f.handshake()
    # The banner at the stream start: its end, B, is the first place remembered.
    p += [f.s("PA", b"220 hi\r\n"), f.c("A")]
    b = (4294965110 + 1 + 8) & 0xffffffff
    first = pasv(50101)
    # A stray line ending at A = B + len(first) - 2^31: the second place, and the older one.
    a = (b + len(first) - (1 << 31)) & 0xffffffff
    p += [f.s("PA", b"x\r\n", seq=a - 3), f.c("PA", b"PASV\r\n")]
    p += [f.s("PA", first), f.c("A"), f.c("PA", b"PASV\r\n"), f.s("PA", pasv(50102)), f.c("A")]
    p += [Flow(42102, 50101, c=C, s=S).c("S"), Flow(42103, 50102, c=C, s=S).c("S")]
    # Once more, one byte short of the edge: the new place lies after the older one as well.
    g = Flow(42104, 21, c=C, s=S, sseq=4294965110)
    p += g.handshake() + [g.s("PA", b"220 hi\r\n"), g.c("A")]
    p += [g.s("PA", b"x\r\n", seq=a - 2), g.c("PA", b"PASV\r\n")]
    p += [g.s("PA", first), g.c("A"), g.c("PA", b"PASV\r\n"), g.s("PA", pasv(50103)), g.c("A")]
    p += [Flow(42105, 50103, c=C, s=S).c("S")]
    # And one byte past it: the stray place is newer, the 227 reply's end is forgotten, and
    # the next 227 is not read.
    h = Flow(42106, 21, c=C, s=S, sseq=4294965110)
    p += h.handshake() + [h.s("PA", b"220 hi\r\n"), h.c("A")]
    p += [h.s("PA", b"x\r\n", seq=a - 4), h.c("PA", b"PASV\r\n")]
    p += [h.s("PA", first), h.c("A"), h.c("PA", b"PASV\r\n"), h.s("PA", pasv(50104)), h.c("A")]
    p += [Flow(42107, 50104, c=C, s=S).c("S")]
    return p
