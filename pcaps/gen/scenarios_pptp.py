"""PPTP helper scenarios (tcp/1723, nf_conntrack_pptp, IPv4 only): the control connection's
session and call messages (outgoing and incoming calls, clears, refusals, malformed messages)
and the enhanced GRE (version 1, PPP) data sessions they announce, keyed by the receiver's call
ID. All with the oracle's full helper set; each scenario uses its own addresses (10.43.x).

The kernel's rules, from net/netfilter/nf_conntrack_pptp.c:
- Only ESTABLISHED segments are read; a segment must hold the 8-byte pptp_pkt_hdr (its length
  field is not checked) with packet type 1 and magic cookie 0x1A2B3C4D, the 4-byte control
  header, and at least the message's full body (sizes below); anything else is passed as is.
- The client (original direction) is the PNS, the server the PAC. An Outgoing-Call-Reply with
  result 1 (Connected) whose peer call ID is the PNS's, or an Incoming-Call-Connected, makes two
  GRE expectations (PNS->PAC and PAC->PNS) and two GRE keymap entries; the first GRE packet of
  either removes the other. A Call-Disconnect-Notify from the PAC kills the GRE entries or
  expectations of the call and forgets the keymap.
- A second Connected reply while the first call's keymap is in place evicts the first call's
  expectations (at most 2 per master), then fails to add its keymap and withdraws its own: no
  expectation is left, and the old keymap still gives the first call's GRE its source key.
- The helper sets the expected GRE entry's timeouts to 600/18000 s, but the GRE tracker then
  resets them to the defaults (30/180 s) on the still unconfirmed entry: the table shows
  `timeout=30, stream_timeout=180`.
- The helper never drops a packet (without NAT)."""
import struct

from ctgen import scenario
from scapy.all import ICMP, IP, Raw
from scenarios_tcp import Flow

ALL = "--helper all"
PORT = 1723
COOKIE = 0x1A2B3C4D

# Control message types.
SCCRQ, SCCRP, STOPCCRQ, STOPCCRP, ECHORQ, ECHORP = 1, 2, 3, 4, 5, 6
OCRQ, OCRP, ICRQ, ICRP, ICCN, CCRQ, CDN, WEN, SLI = 7, 8, 9, 10, 11, 12, 13, 14, 15

Z64 = b"\x00" * 64


def name64(s):
    return s.encode().ljust(64, b"\x00")


def pptp(msg, body, ptype=1, cookie=COOKIE, length=None):
    """A PPTP control message: pptp_pkt_hdr (length, packet type, magic cookie), the control
    header (message type, reserved) and the body."""
    n = 12 + len(body) if length is None else length
    return struct.pack("!HHIHH", n, ptype, cookie, msg, 0) + body


# Bodies, each exactly the size of the kernel's struct (given after the name).

def sccrq(**kw):  # PptpStartSessionRequest, 144
    b = struct.pack("!HHIIHH", 0x0100, 0, 1, 1, 0, 1) + name64("pns") + name64("ctrack")
    return pptp(SCCRQ, b, **kw)


def sccrp(result=1, **kw):  # PptpStartSessionReply, 144
    b = struct.pack("!HBBIIHH", 0x0100, result, 0, 1, 1, 1, 1) + name64("pac") + name64("ctrack")
    return pptp(SCCRP, b, **kw)


def stopccrq():  # PptpStopSessionRequest, 4
    return pptp(STOPCCRQ, struct.pack("!BBH", 1, 0, 0))


def stopccrp(result=1):  # PptpStopSessionReply, 4
    return pptp(STOPCCRP, struct.pack("!BBH", result, 0, 0))


def echorq(ident):  # PptpEchoRequest, 4 (no minimum size in the kernel)
    return pptp(ECHORQ, struct.pack("!I", ident))


def echorp(ident):  # PptpEchoReply, 8
    return pptp(ECHORP, struct.pack("!IBBH", ident, 1, 0, 0))


def ocrq(call, serial=1, **kw):  # PptpOutCallRequest, 156
    b = struct.pack("!HHIIIIHHHH", call, serial, 300, 100000000, 3, 3, 64, 0, 0, 0) + Z64 + Z64
    return pptp(OCRQ, b, **kw)


def ocrp(call, peer, result=1, extra=b"", cut=0, **kw):  # PptpOutCallReply, 20
    b = struct.pack("!HHBBHIHHI", call, peer, result, 0, 0, 100000000, 64, 0, 0) + extra
    return pptp(OCRP, b[:len(b) - cut], **kw)


def icrq(call, serial=1):  # PptpInCallRequest, 208
    b = struct.pack("!HHIIHH", call, serial, 3, 0, 0, 0) + Z64 + Z64 + Z64
    return pptp(ICRQ, b)


def icrp(call, peer, result=1):  # PptpInCallReply, 12
    return pptp(ICRP, struct.pack("!HHBBHHH", call, peer, result, 0, 64, 0, 0))


def iccn(peer):  # PptpInCallConnected, 16
    return pptp(ICCN, struct.pack("!HHIHHI", peer, 0, 100000000, 64, 0, 3))


def ccrq(call):  # PptpClearCallRequest, 4
    return pptp(CCRQ, struct.pack("!HH", call, 0))


def cdn(call, result=3):  # PptpCallDisconnectNotify, 136
    return pptp(CDN, struct.pack("!HBBHH", call, result, 0, 0, 0) + b"\x00" * 128)


def sli(peer):  # PptpSetLinkInfo, 12
    return pptp(SLI, struct.pack("!HHII", peer, 0, 0xFFFFFFFF, 0xFFFFFFFF))


def gre(src, dst, key, seq, ack=None, payload=b"\xff\x03\x00\x21ppp-data"):
    """Enhanced GRE (RFC 2637): flags K and S (and A with an ack), version 1, protocol 0x880B
    (PPP), payload length, call ID (the receiver's: the conntrack key), sequence, ack."""
    if ack is None:
        h = struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, len(payload), key, seq)
    else:
        h = struct.pack("!BBHHHII", 0x30, 0x81, 0x880B, len(payload), key, seq, ack)
    return IP(src=src, dst=dst, proto=47) / Raw(h + payload)


def session(f):
    """Handshake and Start-Control-Connection-Request/Reply: the session is confirmed."""
    return f.handshake() + [f.c("PA", sccrq()), f.s("PA", sccrp())]


# ---------------------------------------------------------------- scenarios

@scenario("helpers/pptp-call", args=ALL)
def _():
    pns, pac = "10.43.1.1", "10.43.1.2"
    f = Flow(43001, PORT, c=pns, s=pac)
    p = session(f)
    p += [f.c("PA", ocrq(0x1111)), f.s("PA", ocrp(0x2222, 0x1111)), f.c("A")]
    # GRE to the PAC carries the PAC's call ID, GRE to the PNS the PNS's.
    p += [gre(pns, pac, 0x2222, 0), gre(pac, pns, 0x1111, 0, ack=0),
          gre(pns, pac, 0x2222, 1, ack=0), gre(pac, pns, 0x1111, 1, ack=1),
          gre(pns, pac, 0x2222, 2, ack=1)]
    p += [f.c("PA", echorq(7)), f.s("PA", echorp(7)), f.c("PA", sli(0x2222)), f.s("A")]
    p += [gre(pac, pns, 0x1111, 2, ack=2)]
    # Clear: the GRE entry of the call goes; later GRE is new, with no source key.
    p += [f.c("PA", ccrq(0x1111)), f.s("PA", cdn(0x2222)), f.c("A")]
    p += [gre(pns, pac, 0x2222, 3), gre(pac, pns, 0x1111, 3)]
    # A second call on the same session, its GRE left running.
    p += [f.c("PA", ocrq(0x1112, serial=2)), f.s("PA", ocrp(0x2223, 0x1112)), f.c("A")]
    p += [gre(pns, pac, 0x2223, 0), gre(pac, pns, 0x1112, 0, ack=0),
          gre(pns, pac, 0x2223, 1, ack=0)]
    p += [f.c("PA", stopccrq()), f.s("PA", stopccrp()),
          f.c("FA"), f.s("FA"), f.c("A")]
    return p


@scenario("helpers/pptp-refused", args=ALL)
def _():
    pns, pac = "10.43.2.1", "10.43.2.2"
    f = Flow(43002, PORT, c=pns, s=pac)

    def call(cid, pcid, **kw):
        """Outgoing-Call-Request/Reply and a GRE probe to the PAC."""
        return [f.c("PA", ocrq(pcid)), f.s("PA", ocrp(cid, pcid, **kw)), gre(pns, pac, cid, 0)]

    p = f.handshake()
    # Before any session: a call is not followed.
    p += call(0x2001, 0x1001)
    # Start requests that are not read: a bad magic cookie, a management packet type, a body one
    # byte short; the replies then find no request.
    p += [f.c("PA", sccrq(cookie=0xDEADBEEF)), f.s("PA", sccrp())] + call(0x2002, 0x1002)
    p += [f.c("PA", sccrq(ptype=2)), f.s("PA", sccrp())] + call(0x2003, 0x1003)
    p += [f.c("PA", sccrq()[:-1]), f.s("PA", sccrp())] + call(0x2004, 0x1004)
    # A request read, a reply one byte short: still not confirmed.
    p += [f.c("PA", sccrq()), f.s("PA", sccrp()[:-1])] + call(0x2005, 0x1005)
    # Confirmed now. An unknown message type and a bare pptp header pass unread.
    p += [f.s("PA", sccrp()), f.c("PA", pptp(0x20, b"\x00" * 4)), f.c("PA", sccrq()[:8]),
          f.s("A")]
    # Calls refused (result 3: no carrier), a reply one byte short, a reply for another call.
    p += call(0x2006, 0x1006, result=3)
    p += call(0x2007, 0x1007, cut=1)
    p += [f.c("PA", ocrq(0x1008)), f.s("PA", ocrp(0x2008, 0x9999)), gre(pns, pac, 0x2008, 0)]
    # The right reply for the pending request, with a wrong length field and 4 bytes too many:
    # expected now, both ways.
    p += [f.s("PA", ocrp(0x2008, 0x1008, extra=b"\x00" * 4, length=0)), f.c("A"),
          gre(pns, pac, 0x2008, 1), gre(pac, pns, 0x1008, 0, ack=1)]
    # A start reply that fails: later calls are not followed.
    p += [f.c("PA", sccrq()), f.s("PA", sccrp(result=2))] + call(0x2009, 0x1009)
    return p


@scenario("helpers/pptp-incoming", args=ALL)
def _():
    pns, pac = "10.43.3.1", "10.43.3.2"
    f = Flow(43003, PORT, c=pns, s=pac)
    p = session(f)
    # PAC announces call 0x3333, PNS accepts as 0x4444; a Connected for another peer is
    # ignored, the right one makes the expectations.
    p += [f.s("PA", icrq(0x3333)), f.c("PA", icrp(0x4444, 0x3333)),
          f.s("PA", iccn(0x9999)), gre(pac, pns, 0x4444, 0),
          f.s("PA", iccn(0x4444)), f.c("A")]
    # The PAC sends first: the GRE entry's original direction is PAC -> PNS.
    p += [gre(pac, pns, 0x4444, 1), gre(pns, pac, 0x3333, 0, ack=1),
          gre(pac, pns, 0x4444, 2, ack=0), gre(pns, pac, 0x3333, 1, ack=2)]
    # An incoming call the PNS refuses: nothing expected.
    p += [f.s("PA", icrq(0x3334, serial=2)), f.c("PA", icrp(0x4445, 0x3334, result=3)),
          f.s("PA", iccn(0x4445)), f.c("A"), gre(pac, pns, 0x4445, 0)]
    return p


@scenario("helpers/pptp-pending", args=ALL)
def _():
    # A: a call announced, never used, then a second call on the same session.
    pns, pac = "10.43.4.1", "10.43.4.2"
    f = Flow(43004, PORT, c=pns, s=pac)
    p = session(f)
    p += [f.c("PA", ocrq(0x5001)), f.s("PA", ocrp(0x6001, 0x5001)), f.c("A")]
    p += [f.c("PA", ocrq(0x5002, serial=2)), f.s("PA", ocrp(0x6002, 0x5002)), f.c("A")]
    p += [gre(pns, pac, 0x6002, 0), gre(pac, pns, 0x5002, 0),
          gre(pns, pac, 0x6001, 0), gre(pac, pns, 0x5001, 0)]
    # B: a call cleared before any GRE, a second call, its reply retransmitted; pending at the end.
    pns, pac = "10.43.5.1", "10.43.5.2"
    g = Flow(43005, PORT, c=pns, s=pac)
    p += session(g)
    p += [g.c("PA", ocrq(0x7001)), g.s("PA", ocrp(0x8001, 0x7001)), g.c("A")]
    p += [g.c("PA", ccrq(0x7001)), g.s("PA", cdn(0x8001)), g.c("A")]
    p += [g.c("PA", ocrq(0x7002, serial=2))]
    seq = g.nxt["s"]
    p += [g.s("PA", ocrp(0x8002, 0x7002)), g.s("PA", ocrp(0x8002, 0x7002), seq=seq), g.c("A")]
    # C: a call the PAC disconnects (no Call-Clear-Request) before any GRE: nothing left pending.
    pns, pac = "10.43.6.1", "10.43.6.2"
    h = Flow(43006, PORT, c=pns, s=pac)
    p += session(h)
    p += [h.c("PA", ocrq(0x9001)), h.s("PA", ocrp(0xA001, 0x9001)), h.c("A"),
          h.s("PA", cdn(0xA001)), h.c("A")]
    return p


@scenario("helpers/pptp-icmp-errors", args=ALL)
def _():
    # ICMP errors quoting a call's GRE: the kernel reads the quoted packet's tuple as it reads
    # the packet's own, its source key from the PPTP helper's key map, so the errors are
    # RELATED to the call's GRE connection (not to a keyless GRE entry of the same addresses
    # and destination key, which a GRE packet sent before the call made).
    pns, pac, rtr = "10.43.7.1", "10.43.7.2", "10.43.9.9"
    f = Flow(43007, PORT, c=pns, s=pac)

    def error(to, quoted, code=13):
        return IP(src=rtr, dst=to) / ICMP(type=3, code=code) / bytes(quoted)

    p = [gre(pac, pns, 0x1111, 0)]  # before any call: keyless (source key 0)
    p += session(f)
    p += [f.c("PA", ocrq(0x1111)), f.s("PA", ocrp(0x2222, 0x1111)), f.c("A")]
    p += [gre(pns, pac, 0x2222, 0), gre(pac, pns, 0x1111, 0, ack=0),
          gre(pns, pac, 0x2222, 1, ack=0), gre(pac, pns, 0x1111, 1, ack=1)]
    # Both ways: about GRE to the PAC (back to the PNS) and to the PNS (back to the PAC).
    p += [error(pns, gre(pns, pac, 0x2222, 2)), error(pac, gre(pac, pns, 0x1111, 2))]
    # The call cleared: the key map goes with it, so a quote of GRE to the PNS now has
    # source key 0, the keyless entry's.
    p += [f.c("PA", ccrq(0x1111)), f.s("PA", cdn(0x2222)), f.c("A")]
    p += [error(pac, gre(pac, pns, 0x1111, 3)), error(pns, gre(pns, pac, 0x2222, 3))]
    return p
