"""Application helper scenarios: SIP (udp/5060: SDP media expectations, REGISTER signalling
expectations, flushes, refusals, IPv6), IRC (tcp/6667: DCC from the client) and Amanda
(udp/10080: CONNECT ports in the reply). All with the oracle's full helper set; each scenario
uses its own addresses (10.40.x SIP, 10.41.x IRC, 10.42.x Amanda)."""
import socket
import struct

from ctgen import scenario
from scapy.all import IP, IPv6, TCP, UDP, Raw  # noqa: F401
from scenarios_tcp import Flow

ALL = "--helper all"


# ---------------------------------------------------------------- building blocks

def udp(src, dst, sport, dport, payload=b""):
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    p = ip / UDP(sport=sport, dport=dport)
    return p / Raw(payload) if payload else p


def rtp(src, dst, sport, dport, seq=1):
    """An RTP packet (PCMU, 20 bytes of silence)."""
    hdr = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5EED0000 | (sport & 0xFFFF))
    return udp(src, dst, sport, dport, hdr + b"\xff" * 20)


def rtcp(src, dst, sport, dport):
    """An RTCP receiver report with no blocks."""
    return udp(src, dst, sport, dport, struct.pack("!BBHI", 0x80, 201, 1, 0x5EED0000 | sport))


def host(a):
    return "[%s]" % a if ":" in a else a


def sdp(origin, lines):
    """An SDP body: v=, o=, s=, then the given lines (c=, t=, m=, a=), CRLF line ends."""
    ipv = "IP6" if ":" in origin else "IP4"
    out = ["v=0", "o=- 20518 0 IN %s %s" % (ipv, origin), "s=ctrack"] + list(lines)
    return ("\r\n".join(out) + "\r\n").encode()


def sip_msg(first, headers, body=b"", clen="Content-Length", ctype="Content-Type"):
    h = list(headers)
    if body and ctype:
        h.append("%s: application/sdp" % ctype)
    if clen:
        h.append("%s: %d" % (clen, len(body)))
    return ("\r\n".join([first] + h) + "\r\n\r\n").encode() + body


class Dialog:
    """SIP signalling between a (the caller / registering client) and b, each on its own port;
    builds requests and responses with the usual headers and correct Content-Length."""

    def __init__(self, a, b, aport=5060, bport=5060, callid="c1", auser="alice", buser="bob"):
        self.a, self.b, self.aport, self.bport = a, b, aport, bport
        self.callid, self.auser, self.buser = callid, auser, buser

    def _hdrs(self, frm, method, cseq, branch):
        src, sport = (self.a, self.aport) if frm == "a" else (self.b, self.bport)
        return [
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s" % (host(src), sport, branch),
            "Max-Forwards: 70",
            "From: <sip:%s@%s>;tag=%s1" % (self.auser, host(self.a), self.callid),
            "To: <sip:%s@%s>" % (self.buser, host(self.b)),
            "Call-ID: %s@%s" % (self.callid, host(self.a)),
            "CSeq: %d %s" % (cseq, method),
        ]

    def req(self, method, cseq, body=b"", extra=(), frm="a", uri=None, hdrs=None, **kw):
        src, dst, sp, dp = ((self.a, self.b, self.aport, self.bport) if frm == "a"
                            else (self.b, self.a, self.bport, self.aport))
        user = self.buser if frm == "a" else self.auser
        uri = uri or "sip:%s@%s:%d" % (user, host(dst), dp)
        h = hdrs if hdrs is not None else self._hdrs(frm, method, cseq, "%s%d" % (method, cseq))
        h = h + ["Contact: <sip:%s@%s:%d>" % (self.auser if frm == "a" else self.buser,
                                              host(src), sp)] * (method != "REGISTER")
        payload = sip_msg("%s %s SIP/2.0" % (method, uri), h + list(extra), body, **kw)
        return udp(src, dst, sp, dp, payload)

    def resp(self, code, reason, cseq, method, body=b"", extra=(), frm="b", hdrs=None, **kw):
        src, dst, sp, dp = ((self.b, self.a, self.bport, self.aport) if frm == "b"
                            else (self.a, self.b, self.aport, self.bport))
        h = hdrs if hdrs is not None else self._hdrs("a" if frm == "b" else "b", method, cseq,
                                                     "%s%d" % (method, cseq))
        payload = sip_msg("SIP/2.0 %d %s" % (code, reason), h + list(extra), body, **kw)
        return udp(src, dst, sp, dp, payload)


# ---------------------------------------------------------------- SIP

@scenario("helpers/sip-call", args=ALL)
def _():
    """A basic call: INVITE and 200 OK each announce an RTP/RTCP pair, expected from the other
    signalling end (any source port) to the announcing end; media both ways; BYE flushes the
    media expectations that were not used (an RTP flow answered from the other side leaves the
    other side's expectation unused)."""
    A, B = "10.40.1.1", "10.40.1.2"
    d = Dialog(A, B, callid="call1")
    offer = sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 40000 RTP/AVP 0",
                    "a=rtpmap:0 PCMU/8000", "a=sendrecv"])
    answer = sdp(B, ["c=IN IP4 %s" % B, "t=0 0", "m=audio 50000 RTP/AVP 0",
                     "a=rtpmap:0 PCMU/8000", "a=sendrecv"])
    return [
        d.req("INVITE", 1, offer),                                      # 0
        d.resp(100, "Trying", 1, "INVITE"),
        d.resp(180, "Ringing", 1, "INVITE"),
        d.resp(200, "OK", 1, "INVITE", answer),
        d.req("ACK", 1),
        rtp(A, B, 40000, 50000, 1),                                     # 5: related
        rtp(B, A, 50000, 40000, 1),                                     # reply of 5
        rtp(A, B, 40000, 50000, 2),
        rtcp(B, A, 50001, 40001),                                       # 8: related
        rtcp(A, B, 40001, 50001),
        d.req("BYE", 2),                                                # 10
        d.resp(200, "OK", 2, "BYE"),
        # After BYE: announced ports whose expectations were never used are not expected.
        rtp(B, A, 50002, 40000, 1),                                     # 12
        rtcp(A, B, 40010, 50001),                                       # 13
        # The media flows themselves keep running.
        rtp(A, B, 40000, 50000, 3),
    ]


@scenario("helpers/sip-busy", args=ALL)
def _():
    """A failure response to the INVITE (same CSeq) flushes the media expectations; one with
    another CSeq (a stale 487) does not."""
    A, B = "10.40.2.1", "10.40.2.2"
    d = Dialog(A, B, callid="busy1")
    offer = sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 40000 RTP/AVP 0 8",
                    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"])
    return [
        d.req("INVITE", 10, offer),                                     # 0
        d.resp(100, "Trying", 10, "INVITE"),
        d.resp(487, "Request Terminated", 9, "INVITE"),                 # 2: other CSeq
        rtcp(B, A, 50001, 40001),                                       # 3: still expected
        d.resp(486, "Busy Here", 10, "INVITE"),                         # 4: flush
        d.req("ACK", 10),
        rtp(B, A, 50000, 40000, 1),                                     # 6: new
        rtp(A, B, 40000, 50000, 1),
    ]


@scenario("helpers/sip-media", args=ALL)
def _():
    """SDP details: a media-level c= overrides the session's; a c= that is not the sender's
    announces nothing; audio, video and image (T.38) classes; port 0 and unknown media types
    are skipped; an odd port gives the pair port&~1, +1; only three media lines are read per
    message; the audio class holds 4 expectations (the oldest is evicted); a re-INVITE replaces
    the media expectations; compact header forms. The class limits count per master, both
    directions together: the image class holds 2, so the answer's T.38 pair evicts the
    offer's."""
    A, B, X = "10.40.3.1", "10.40.3.2", "10.40.3.9"
    # Master 1: compact headers; session c= is a third host, overridden per media.
    h = ["v: SIP/2.0/UDP %s:5060;branch=z9hG4bKm1" % A, "f: <sip:alice@%s>;tag=m1" % A,
         "t: <sip:bob@%s>" % B, "i: media1@%s" % A, "CSeq: 1 INVITE",
         "m: <sip:alice@%s:5060>" % A, "Max-Forwards: 70"]
    offer = sdp(A, ["c=IN IP4 %s" % X, "t=0 0",
                    "m=audio 40000 RTP/AVP 0", "c=IN IP4 %s" % A, "a=rtpmap:0 PCMU/8000",
                    "m=video 40002 RTP/AVP 96", "a=rtpmap:96 H264/90000",
                    "m=image 40005 udptl t38", "c=IN IP4 %s" % A, "a=T38FaxVersion:0"])
    offer_msg = sip_msg("INVITE sip:bob@%s SIP/2.0" % B, h, offer, clen="l", ctype="c")
    hr = h[:5]  # the answer echoes Via, From, To, Call-ID and CSeq
    answer = sdp(B, ["c=IN IP4 %s" % B, "t=0 0",
                     "m=audio 0 RTP/AVP 0",
                     "m=application 50010 UDP/BFCP *",
                     "m=video 50002 RTP/AVP 96", "a=rtpmap:96 H264/90000",
                     "m=image 50004 udptl t38"])
    answer_msg = sip_msg("SIP/2.0 200 OK", hr + ["m: <sip:bob@%s:5060>" % B], answer,
                         clen="l", ctype="c")
    p = [
        udp(A, B, 5060, 5060, offer_msg),                               # 0
        udp(B, A, 5060, 5060, answer_msg),                              # 1
        rtp(B, A, 50000, 40000),                                        # 2: related (audio)
        rtp(B, A, 50002, 40002),                                        # 3: new (c= was X)
        rtp(B, X, 50002, 40002),                                        # 4: new
        udp(B, A, 50004, 40004, b"\x00\x00\x00\x00t38"),                # 5: new (evicted)
        rtp(A, B, 40100, 50002),                                        # 6: related (video)
        udp(A, B, 40102, 50005, b"\x00\x00\x00\x00t38"),                # 7: related (image RTCP)
        rtp(A, B, 40104, 50000),                                        # 8: new (port 0)
        rtp(A, B, 40106, 50010),                                        # 9: new (application)
    ]
    # Master 2: four audio streams; three are read, the third pair evicts the first.
    d = Dialog(A, B, aport=5062, callid="media2")
    offer = sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 41000 RTP/AVP 0",
                    "m=audio 41002 RTP/AVP 0", "m=audio 41004 RTP/AVP 0",
                    "m=audio 41006 RTP/AVP 0"])
    p += [
        d.req("INVITE", 1, offer),                                      # 10
        rtp(B, A, 51000, 41000),                                        # 11: new (evicted)
        rtcp(B, A, 51001, 41001),                                       # 12: new (evicted)
        rtp(B, A, 51002, 41002),                                        # 13: related
        rtp(B, A, 51004, 41004),                                        # 14: related
        rtp(B, A, 51006, 41006),                                        # 15: new (4th line)
    ]
    # Master 3: odd audio port; a re-INVITE replaces the first offer's expectations.
    d = Dialog(A, B, aport=5064, callid="media3")
    p += [
        d.req("INVITE", 1, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 42001 RTP/AVP 0"])),
        d.resp(200, "OK", 1, "INVITE"),
        d.req("ACK", 1),
        d.req("INVITE", 2, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 42011 RTP/AVP 0"])),
        rtp(B, A, 52000, 42000),                                        # 20: new (replaced)
        rtp(B, A, 52010, 42010),                                        # 21: related (odd->even)
        # 42011 stays pending: listed at the end.
    ]
    return p


@scenario("helpers/sip-register", args=ALL)
def _():
    """REGISTER with a Contact on another port creates an INACTIVE PERMANENT signalling
    expectation (from the registrar, any port, to the contact); a failure response flushes it;
    a 2xx activates it with the Contact's expires=; incoming calls then arrive RELATED and
    carry the SIP helper (their own SDP creates media expectations); unregistering
    (Expires: 0, then 2xx) flushes it. Also compact `m:` and a still-inactive one."""
    C, R, C2, C3 = "10.40.4.1", "10.40.4.2", "10.40.4.3", "10.40.4.4"
    d = Dialog(C, R, callid="reg1", buser="alice")
    contact = "Contact: <sip:alice@%s:5062>" % C
    p = [
        d.req("REGISTER", 1, extra=[contact, "Expires: 3600"], uri="sip:%s" % R),       # 0
        udp(R, C, 5070, 5062, sip_msg("OPTIONS sip:alice@%s:5062 SIP/2.0" % C,          # 1: new
                                      ["CSeq: 1 OPTIONS", "Call-ID: probe1@x"])),
        d.resp(401, "Unauthorized", 1, "REGISTER",
               extra=['WWW-Authenticate: Digest realm="ctrack", nonce="abc123"']),      # 2: flush
        d.req("REGISTER", 2, extra=[contact, "Expires: 3600",
                                    'Authorization: Digest username="alice", realm="ctrack", '
                                    'nonce="abc123", uri="sip:%s", response="0123"' % R],
              uri="sip:%s" % R),                                                         # 3
        d.resp(200, "OK", 2, "REGISTER", extra=[contact + ";expires=600"]),              # 4
    ]
    # The registrar (from its port 5060) calls the registered contact.
    inv = Dialog(R, C, aport=5060, bport=5062, callid="in1", auser="carol", buser="alice")
    p += [
        inv.req("INVITE", 1, sdp(R, ["c=IN IP4 %s" % R, "t=0 0", "m=audio 30000 RTP/AVP 0"])),
        inv.resp(180, "Ringing", 1, "INVITE"),                                           # 6
        inv.resp(200, "OK", 1, "INVITE",
                 sdp(C, ["c=IN IP4 %s" % C, "t=0 0", "m=audio 40000 RTP/AVP 0"])),
        inv.req("ACK", 1),
        rtp(C, R, 40000, 30000),                                                         # 9
        rtp(R, C, 30000, 40000),
        # PERMANENT: another source port is expected too.
        udp(R, C, 5090, 5062, sip_msg("OPTIONS sip:alice@%s:5062 SIP/2.0" % C,          # 11
                                      ["CSeq: 1 OPTIONS", "Call-ID: probe2@x"])),
        # Unregister.
        d.req("REGISTER", 3, extra=[contact, "Expires: 0"], uri="sip:%s" % R),           # 12
        d.resp(200, "OK", 3, "REGISTER", extra=[contact + ";expires=0"]),                # 13
        udp(R, C, 5100, 5062, sip_msg("OPTIONS sip:alice@%s:5062 SIP/2.0" % C,          # 14: new
                                      ["CSeq: 1 OPTIONS", "Call-ID: probe3@x"])),
    ]
    # Compact Contact (m:) with the expiry only as a contact parameter: stays pending.
    d2 = Dialog(C2, R, callid="reg2", auser="carol")
    p += [
        d2.req("REGISTER", 1, extra=["m: <sip:carol@%s:5064>;expires=300" % C2],
               uri="sip:%s" % R, clen="l"),                                              # 15
        d2.resp(200, "OK", 1, "REGISTER", extra=["m: <sip:carol@%s:5064>;expires=300" % C2],
                clen="l"),
    ]
    # A REGISTER that is never answered: its expectation stays INACTIVE.
    d3 = Dialog(C3, R, callid="reg3", auser="dave")
    p += [
        d3.req("REGISTER", 1, extra=["Contact: <sip:dave@%s:5066>" % C3, "Expires: 3600"],
               uri="sip:%s" % R),                                                        # 17
        udp(R, C3, 5060, 5066, sip_msg("OPTIONS sip:dave@%s:5066 SIP/2.0" % C3,        # 18: new
                                       ["CSeq: 1 OPTIONS", "Call-ID: probe4@x"])),
    ]
    return p


@scenario("helpers/sip-register-child", args=ALL)
def _():
    """A call to a registered contact from a port no helper is assigned to: the call's
    connection carries the SIP helper it got from the expectation, and keeps it once the
    registration is gone (its re-INVITE still announces media)."""
    C, R = "10.40.7.1", "10.40.7.2"
    d = Dialog(C, R, callid="reg7", buser="alice")
    contact = "Contact: <sip:alice@%s:5062>" % C
    p = [
        d.req("REGISTER", 1, extra=[contact, "Expires: 600"], uri="sip:%s" % R),        # 0
        d.resp(200, "OK", 1, "REGISTER", extra=[contact + ";expires=600"]),              # 1
    ]
    inv = Dialog(R, C, aport=5070, bport=5062, callid="in7", auser="carol", buser="alice")
    p += [
        # Media put on hold (port 0): nothing is expected but the registration.
        inv.req("INVITE", 1, sdp(R, ["c=IN IP4 %s" % R, "t=0 0", "m=audio 0 RTP/AVP 0"])),
        inv.resp(200, "OK", 1, "INVITE",
                 sdp(C, ["c=IN IP4 %s" % C, "t=0 0", "m=audio 0 RTP/AVP 0"])),           # 3
        inv.req("ACK", 1),
        # Unregister: the signalling expectation goes, the call stays.
        d.req("REGISTER", 2, extra=[contact, "Expires: 0"], uri="sip:%s" % R),           # 5
        d.resp(200, "OK", 2, "REGISTER", extra=[contact + ";expires=0"]),                # 6
        # A re-INVITE on the call, away from every helper's port, brings the media.
        inv.req("INVITE", 2, sdp(R, ["c=IN IP4 %s" % R, "t=0 0", "m=audio 31000 RTP/AVP 0"])),
        inv.resp(200, "OK", 2, "INVITE",
                 sdp(C, ["c=IN IP4 %s" % C, "t=0 0", "m=audio 41000 RTP/AVP 0"])),       # 8
        inv.req("ACK", 2),
        rtp(C, R, 41000, 31000),                                                         # 10
        rtp(R, C, 31000, 41000),
    ]
    return p


@scenario("helpers/sip-register-refused", args=ALL)
def _():
    """A packet that opens a connection through a registration's expectation (so it carries
    the SIP helper) and that the helper refuses (an INVITE without CSeq): it is dropped and its
    connection never confirmed, so no entry, no event and no hold on the master remain; the
    expectation is permanent, so the same source port then opens the connection with a message
    the helper reads (RELATED), and a refused packet on that confirmed connection leaves it be."""
    C, R = "10.40.8.1", "10.40.8.2"
    d = Dialog(C, R, callid="reg8", buser="alice")
    contact = "Contact: <sip:alice@%s:5062>" % C
    bad = sip_msg("INVITE sip:alice@%s:5062 SIP/2.0" % C, ["Call-ID: bad8@x"])
    return [
        d.req("REGISTER", 1, extra=[contact, "Expires: 600"], uri="sip:%s" % R),        # 0
        d.resp(200, "OK", 1, "REGISTER", extra=[contact + ";expires=600"]),              # 1
        udp(R, C, 5070, 5062, bad),                                                      # 2: dropped
        udp(R, C, 5070, 5062, bad),                                                      # 3: again
        udp(R, C, 5070, 5062, sip_msg("OPTIONS sip:alice@%s:5062 SIP/2.0" % C,          # 4: related
                                      ["CSeq: 1 OPTIONS", "Call-ID: probe8@x"])),
        udp(C, R, 5062, 5070, sip_msg("SIP/2.0 200 OK",                                  # 5
                                      ["CSeq: 1 OPTIONS", "Call-ID: probe8@x"])),
        udp(R, C, 5070, 5062, bad),                                                      # 6: dropped
        udp(R, C, 5080, 5062, bad),                                                      # 7: dropped
    ]


@scenario("helpers/sip-bad", args=ALL)
def _():
    """Messages the helper refuses (the packet is dropped after tracking): a handled request
    without CSeq, a response without CSeq or with no status code, an SDP port below 1024
    (media lines before it have already created their expectations). Accepted untouched: an
    unhandled method without CSeq, payloads shorter than 11 bytes, non-SIP text, an empty
    datagram (which does not refresh the master to 3600 s, so the UDP timeout shows). A dropped
    first packet leaves no entry behind; a dropped packet on a confirmed master has already
    refreshed it to 3600 s. An SDP port beyond 32 bits is skipped like port 0 (this kernel
    parses with sip_strtouint; simple_strtoul kernels refused it as a wrong port)."""
    A, B = "10.40.5.1", "10.40.5.2"
    d = Dialog(A, B, callid="bad1")
    nocseq = [x for x in d._hdrs("a", "INVITE", 2, "b2") if not x.startswith("CSeq")]
    p = [
        d.req("OPTIONS", 1),                                                             # 0
        d.resp(200, "OK", 1, "OPTIONS"),                                                 # 1
        d.req("INVITE", 2, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 40000 RTP/AVP 0"]),
              hdrs=nocseq),  # 2: dropped
        rtp(B, A, 50000, 40000),                                                         # 3: new
        d.req("INVITE", 3, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 80 RTP/AVP 0"])),
        d.req("INVITE", 4, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 40100 RTP/AVP 0",
                                   "m=audio 80 RTP/AVP 0"])),  # 5: dropped
        rtp(B, A, 50100, 40100),  # 6: related
        # A port beyond 32 bits: refused as "wrong port" by simple_strtoul kernels, skipped
        # like port 0 by kernels with sip_strtouint (2026).
        d.req("INVITE", 5, sdp(A, ["c=IN IP4 %s" % A, "t=0 0", "m=audio 99999999999 RTP/AVP 0",
                                   "m=audio 40200 RTP/AVP 0"])),                         # 7
        rtp(B, A, 50200, 40200),                                                         # 8
        udp(A, B, 5060, 5060, b"INVITE x\r\n"),  # 9: 10 bytes
        udp(A, B, 5060, 5060, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"),                     # 10
        udp(B, A, 5060, 5060, b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.40.5.1:5060\r\n"
                              b"Content-Length: 0\r\n\r\n"),  # 11: dropped
        udp(B, A, 5060, 5060, b"SIP/2.0 OK\r\nCSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n"),
        d.req("OPTIONS", 6, hdrs=[x for x in d._hdrs("a", "OPTIONS", 6, "o6")
                                  if not x.startswith("CSeq")]),                         # 13
        udp(A, B, 5060, 5060),                                                           # 14: empty
    ]
    # A dropped first packet: never confirmed, so the answer starts a new connection.
    d2 = Dialog(A, B, aport=5070, callid="bad2")
    p += [
        d2.req("INVITE", 1, hdrs=[x for x in d2._hdrs("a", "INVITE", 1, "i1")
                                  if not x.startswith("CSeq")]),                         # 15
        d2.resp(100, "Trying", 1, "INVITE"),                                             # 16
    ]
    # A dropped packet as the last one: the helper refreshed the master before refusing it.
    d3 = Dialog(A, B, aport=5080, callid="bad3")
    p += [
        d3.req("OPTIONS", 1), d3.resp(200, "OK", 1, "OPTIONS"),                          # 17, 18
        udp(A, B, 5080, 5060, b"BYE sip:bob@10.40.5.2 SIP/2.0\r\nCall-ID: bad3\r\n\r\n"),  # 19
    ]
    return p


@scenario("helpers/sip-ipv6", args=ALL)
def _():
    """An IPv6 call (c=IN IP6, bracketed URIs), an IPv6 REGISTER whose [addr]:port contact is
    then called; a re-INVITE whose SDP has only an IPv4 c= cannot be read and is dropped, after
    it has flushed the call's media expectations."""
    A, B, R = "2001:db8:40:6::1", "2001:db8:40:6::2", "2001:db8:40:6::3"
    d = Dialog(A, B, callid="v6call")
    p = [
        d.req("INVITE", 1, sdp(A, ["c=IN IP6 %s" % A, "t=0 0", "m=audio 40000 RTP/AVP 0"])),
        d.resp(180, "Ringing", 1, "INVITE"),
        d.resp(200, "OK", 1, "INVITE", sdp(B, ["c=IN IP6 %s" % B, "t=0 0",
                                                "m=audio 50000 RTP/AVP 0"])),
        d.req("ACK", 1),
        rtp(A, B, 40000, 50000),                                                         # 4
        rtp(B, A, 50000, 40000),
        rtcp(B, A, 50001, 40001),                                                        # 6
        d.req("INVITE", 2, sdp(A, ["c=IN IP4 10.40.6.1", "t=0 0", "m=audio 40002 RTP/AVP 0"])),
        rtp(B, A, 50010, 40000),                                                         # 8
        rtcp(A, B, 40011, 50001),                                                        # 9
    ]
    r = Dialog(A, R, callid="v6reg")
    contact = "Contact: <sip:alice@[%s]:5062>" % A
    p += [
        r.req("REGISTER", 1, extra=[contact, "Expires: 3600"], uri="sip:[%s]" % R),      # 10
        r.resp(200, "OK", 1, "REGISTER", extra=[contact + ";expires=1800"]),
        udp(R, A, 5060, 5062, sip_msg("OPTIONS sip:alice@[%s]:5062 SIP/2.0" % A,         # 12
                                      ["CSeq: 7 OPTIONS", "Call-ID: v6probe@x"])),
        udp(A, R, 5062, 5060, sip_msg("SIP/2.0 200 OK",
                                      ["CSeq: 7 OPTIONS", "Call-ID: v6probe@x"])),
    ]
    return p


# ---------------------------------------------------------------- IRC

def ip_u32(a):
    return struct.unpack("!I", socket.inet_aton(a))[0]


def dcc(kind, arg, addr, port, extra=" 1234", target="bob", cmd="PRIVMSG"):
    return ("%s %s :\x01DCC %s %s %d %d%s\x01\r\n"
            % (cmd, target, kind, arg, ip_u32(addr), port, extra)).encode()


def irc_login(f, nick="alice"):
    return f.handshake() + [
        f.c("PA", ("NICK %s\r\nUSER %s 0 * :A. Lice\r\n" % (nick, nick)).encode()),
        f.s("PA", (":irc.test 001 %s :Welcome to the test network\r\n" % nick).encode()),
        f.c("A"),
    ]


@scenario("helpers/irc-dcc", args=ALL)
def _():
    """DCC SEND and CHAT from the client announce a TCP connection from anyone to the client's
    port; a DCC naming another address is ignored, and so is one sent by the server."""
    C, S, P, X = "10.41.1.1", "10.41.1.2", "10.41.1.3", "10.41.1.9"
    f = Flow(43001, 6667, c=C, s=S)
    p = irc_login(f)
    p += [f.c("PA", dcc("SEND", "file.txt", C, 5000)), f.s("A")]                     # 6
    g = Flow(44001, 5000, c=P, s=C)
    p += g.handshake() + [g.c("PA", b"hello"), g.s("A")]                              # 8: related
    p += [f.c("PA", dcc("CHAT", "chat", C, 5001, extra="")), f.s("A")]
    p += Flow(44002, 5001, c=P, s=C).handshake()                                      # 15: related
    # Another host's address: not followed.
    p += [f.c("PA", dcc("SEND", "x.bin", X, 5002, extra=" 99")), f.s("A")]
    p += [Flow(44003, 5002, c=P, s=X).c("S"), Flow(44004, 5002, c=P, s=C).c("S")]
    # Sent by the server (reply direction): never read.
    p += [f.s("PA", b":bob!b@h " + dcc("SEND", "y.txt", S, 5003, extra=" 10", target="alice")),
          f.c("A")]
    p += [Flow(44005, 5003, c=C, s=S).c("S"), Flow(44006, 5003, c=P, s=S).c("S")]
    # One left pending.
    p += [f.c("PA", dcc("SEND", "later.txt", C, 5004)), f.s("A")]
    return p


@scenario("helpers/irc-parse", args=ALL)
def _():
    """What the IRC helper reads: only a segment that starts with PRIVMSG (any case, after
    blanks and line ends) and whose first " :" is followed by \\1DCC (case-sensitive); a DCC
    naming another address ends the segment's parsing (a later valid DCC in the same segment
    is not read: upstream 66eba0ffce3b, 2026; older kernels scanned on); the port is truncated
    to 16 bits; IPv6 has no IRC helper."""
    C, S, P, X = "10.41.2.1", "10.41.2.2", "10.41.2.3", "10.41.2.9"
    f = Flow(43101, 6667, c=C, s=S)
    p = irc_login(f)
    p += [f.c("PA", b"NOTICE bob :hi\r\n" + dcc("SEND", "a.txt", C, 5010)), f.s("A")]  # 6
    p += [Flow(44101, 5010, c=P, s=C).c("S")]                                          # 8: new
    p += [f.c("PA", dcc("SEND", "f.txt", X, 5011) + dcc("SEND", "g.txt", C, 5012)), f.s("A")]
    p += [Flow(44102, 5011, c=P, s=C).c("S"), Flow(44103, 5012, c=P, s=C).c("S")]     # 11, 12: new
    p += [f.c("PA", dcc("SEND", "big.iso", C, 70000, cmd="privmsg")), f.s("A")]       # 13
    p += [Flow(44104, 70000 & 0xFFFF, c=P, s=C).c("S")]                                # 15: related
    p += [f.c("PA", dcc("send", "h.txt", C, 5013).replace(b"DCC", b"dcc")), f.s("A")]  # 16
    p += [Flow(44105, 5013, c=P, s=C).c("S")]                                          # 18: new
    p += [f.c("PA", b"  \r\n" + dcc("CHAT", "chat", C, 5014, extra="")), f.s("A")]     # 19
    p += [Flow(44106, 5014, c=P, s=C).c("S")]                                          # 21: related
    # IPv6: no helper is attached, nothing is expected.
    C6, S6, P6 = "2001:db8:41:2::1", "2001:db8:41:2::2", "2001:db8:41:2::3"
    h = Flow(43102, 6667, v6=True, c=C6, s=S6)
    p += irc_login(h) + [h.c("PA", b"PRIVMSG bob :\x01DCC SEND v6.txt 1 5015 5\x01\r\n"), h.s("A")]
    p += [Flow(44107, 5015, v6=True, c=P6, s=C6).c("S")]
    return p


@scenario("helpers/irc-limits", args=ALL)
def _():
    """Expectation bookkeeping for IRC: re-announcing the same port on one master replaces
    the expectation; the same port announced by a second master clashes (the segment is
    dropped); 8 expectations per master, the oldest is evicted by the 9th."""
    C, S, P = "10.41.3.1", "10.41.3.2", "10.41.3.3"
    f = Flow(43201, 6667, c=C, s=S)
    g = Flow(43202, 6667, c=C, s=S)
    p = irc_login(f) + irc_login(g, nick="alice2")
    p += [f.c("PA", dcc("SEND", "a", C, 5020)), f.c("PA", dcc("SEND", "a", C, 5020)), f.s("A")]
    p += [g.c("PA", dcc("SEND", "b", C, 5020)), g.s("A")]                              # 15: dropped
    p += [Flow(44201, 5020, c=P, s=C).c("S"), Flow(44202, 5020, c=P, s=C).c("S")]     # 17, 18
    for port in range(5030, 5039):
        p.append(f.c("PA", dcc("SEND", "n%d" % port, C, port)))                        # 19..27
    p.append(f.s("A"))
    p += [Flow(44203, 5030, c=P, s=C).c("S"), Flow(44204, 5031, c=P, s=C).c("S"),
          Flow(44205, 5038, c=P, s=C).c("S")]                                          # 29..31
    return p


# ---------------------------------------------------------------- Amanda

AMANDA_REQ = (b"Amanda 2.6 REQ HANDLE 000-%s SEQ 1700000000\n"
              b"SECURITY USER amandabackup\nSERVICE sendbackup\n"
              b"OPTIONS features=9ffe00;hostname=client;config=daily;\n"
              b"GNUTAR /home 0 1970:1:1:0:0:0 OPTIONS |;auth=BSD;index;\n")


def amanda_rep(handle, connect):
    return (b"Amanda 2.6 REP HANDLE 000-%s SEQ 1700000000\n" % handle) + connect + \
        b"OPTIONS features=9ffe00;\n"


@scenario("helpers/amanda", args=ALL)
def _():
    """The reply's CONNECT line announces TCP ports: expected from the requester's address
    (any port) to the replier's address on each port. Replies refresh the master to 300 s;
    packets from the requester don't (the final ACK puts it back on the UDP timeout)."""
    C, S = "10.42.1.1", "10.42.1.2"
    p = [
        udp(C, S, 850, 10080, AMANDA_REQ % b"00000001"),                                # 0
        udp(S, C, 10080, 850, amanda_rep(b"00000001",
                                         b"CONNECT DATA 50001 MESG 50002 INDEX 50003\n")),
        udp(C, S, 850, 10080, b"Amanda 2.6 ACK HANDLE 000-00000001 SEQ 1700000000\n"),  # 2
    ]
    d = Flow(40001, 50001, c=C, s=S)
    p += d.handshake() + [d.c("PA", b"backup data"), d.s("A")]                         # 3..7
    p += Flow(40002, 50002, c=C, s=S).handshake()                                       # 8..10
    p += [Flow(50003, 40003, c=S, s=C).c("S")]                                          # 11: new
    # A second request whose exchange ends with the reply: the master shows 300 s.
    p += [
        udp(C, S, 851, 10080, AMANDA_REQ % b"00000002"),                                # 12
        udp(S, C, 10080, 851, amanda_rep(b"00000002", b"CONNECT DATA 50011 MESG 50012\n")),
        Flow(40011, 50011, c=C, s=S).c("S"),                                           # 14
    ]
    return p


@scenario("helpers/amanda-parse", args=ALL)
def _():
    """What the Amanda helper reads: keywords are looked up in the order DATA, MESG, INDEX,
    STATE and the first bad port stops the rest; at most 5 digits are read and the port is
    truncated to 16 bits; a CONNECT without a newline after it, or sent by the requester, is
    ignored; 4 expectations per master, the oldest evicted; IPv6."""
    C, S = "10.42.2.1", "10.42.2.2"
    p = [
        udp(C, S, 860, 10080, AMANDA_REQ % b"00000010"),
        udp(S, C, 10080, 860, amanda_rep(b"00000010",
                                         b"CONNECT MESG 50021 DATA 0 INDEX 50022\n")),  # 1
        Flow(40021, 50021, c=C, s=S).c("S"), Flow(40022, 50022, c=C, s=S).c("S"),     # 2, 3
        udp(C, S, 861, 10080, AMANDA_REQ % b"00000011"),
        udp(S, C, 10080, 861, amanda_rep(b"00000011",
                                         b"CONNECT DATA 70000 MESG 500319\n")),        # 5
        Flow(40023, 70000 & 0xFFFF, c=C, s=S).c("S"), Flow(40024, 50031, c=C, s=S).c("S"),
        udp(C, S, 862, 10080, b"CONNECT DATA 50041\n"),                                 # 8
        udp(S, C, 10080, 862, b"Amanda 2.6 REP HANDLE 000-00000012 SEQ 1\nCONNECT DATA 50042"),
        Flow(40025, 50041, c=C, s=S).c("S"), Flow(40026, 50042, c=C, s=S).c("S"),     # 10, 11
        udp(C, S, 863, 10080, AMANDA_REQ % b"00000013"),                                # 12
        udp(S, C, 10080, 863, amanda_rep(
            b"00000013", b"CONNECT DATA 50051 MESG 50052 INDEX 50053 STATE 50054\n")),
        udp(S, C, 10080, 863, amanda_rep(b"00000013", b"CONNECT DATA 50055\n")),      # 14
        Flow(40027, 50051, c=C, s=S).c("S"), Flow(40028, 50055, c=C, s=S).c("S"),     # 15, 16
    ]
    C6, S6 = "2001:db8:42:2::1", "2001:db8:42:2::2"
    p += [
        udp(C6, S6, 870, 10080, AMANDA_REQ % b"00000020"),                              # 17
        udp(S6, C6, 10080, 870, amanda_rep(b"00000020", b"CONNECT DATA 50061\n")),
        Flow(40029, 50061, v6=True, c=C6, s=S6).c("S"),                                # 19
    ]
    return p


# ---------------------------------------------------------------- SIP over TCP

@scenario("helpers/sip-tcp-register", args="--helper sip:tcp:5060")
def _():
    """A registration over TCP: the Contact's transport defaults to the connection's own, so
    the registrar's calls back are expected over TCP (a connection to the contact is RELATED,
    and the SIP helper reads it), not over UDP; a Contact asking for UDP on the TCP connection
    is not followed."""
    C, R = "10.40.9.1", "10.40.9.2"
    f = Flow(43061, 5060, c=C, s=R)

    def reg(cseq, contact, answer=False):
        hdrs = ["Via: SIP/2.0/TCP %s:43061;branch=z9hG4bKr%d" % (C, cseq),
                "From: <sip:alice@%s>;tag=r9" % R, "To: <sip:alice@%s>" % R,
                "Call-ID: tcpreg@%s" % C, "CSeq: %d REGISTER" % cseq,
                "Contact: %s" % contact + (";expires=600" if answer else "")]
        if not answer:
            hdrs.append("Expires: 600")
        first = "SIP/2.0 200 OK" if answer else "REGISTER sip:%s SIP/2.0" % R
        return sip_msg(first, hdrs)

    here = "<sip:alice@%s:5062>" % C
    udp_only = "<sip:alice@%s:5064;transport=udp>" % C
    p = f.handshake()                                                                    # 0-2
    p += [f.c("PA", reg(1, here)), f.s("PA", reg(1, here, answer=True)), f.c("A")]      # 3-5
    p += [f.c("PA", reg(2, udp_only)), f.s("PA", reg(2, udp_only, answer=True))]        # 6, 7
    # The registrar calls back over UDP: nothing expects it.
    p += [udp(R, C, 5070, 5062, sip_msg("OPTIONS sip:alice@%s:5062 SIP/2.0" % C,        # 8
                                        ["CSeq: 1 OPTIONS", "Call-ID: u9@x"])),
          udp(R, C, 5071, 5064, sip_msg("OPTIONS sip:alice@%s:5064 SIP/2.0" % C,        # 9
                                        ["CSeq: 1 OPTIONS", "Call-ID: u10@x"]))]
    # Over TCP: expected, with the SIP helper, whose reading of its INVITE expects media.
    g = Flow(40000, 5062, c=R, s=C)
    p += g.handshake()                                                                   # 10-12
    invite = sip_msg("INVITE sip:alice@%s:5062 SIP/2.0" % C,
                     ["Via: SIP/2.0/TCP %s:40000;branch=z9hG4bKi9" % R, "CSeq: 1 INVITE",
                      "Call-ID: t9@x"], sdp(R, ["c=IN IP4 %s" % R, "t=0 0", "m=audio 30000 RTP/AVP 0"]))
    p += [g.c("PA", invite), g.s("A"), rtp(C, R, 41000, 30000)]                          # 13-15
    return p


@scenario("helpers/sip-tcp", args="--helper sip:tcp:5060")
def _():
    """SIP over TCP (the helper assigned with sip:tcp:5060): only established segments are
    read, each whole message framed by the first Content-Length found and the blank line after
    it, several per segment; a message that runs past its segment is not read. A message without
    a length borrows the next one's: both are read as one (the first's method, the media of
    both SDP bodies). Each segment with payload sets the master to 3600 s, and the next one
    without gives the TCP timeout back."""
    C, S = "10.40.8.1", "10.40.8.2"
    f = Flow(43060, 5060, c=C, s=S)

    def req(method, cseq, body=b"", length=True):
        hdrs = ["Via: SIP/2.0/TCP %s:43060;branch=z9hG4bK%s%d" % (C, method, cseq),
                "From: <sip:alice@%s>;tag=t1" % C, "To: <sip:bob@%s>" % S,
                "Call-ID: tcp1@%s" % C, "CSeq: %d %s" % (cseq, method)]
        return sip_msg("%s sip:bob@%s SIP/2.0" % (method, S), hdrs, body,
                       clen="Content-Length" if length else None)

    def resp(code, reason, cseq, method, body=b""):
        hdrs = ["Via: SIP/2.0/TCP %s:43060;branch=z9hG4bK%s%d" % (C, method, cseq),
                "From: <sip:alice@%s>;tag=t1" % C, "To: <sip:bob@%s>;tag=t2" % S,
                "Call-ID: tcp1@%s" % C, "CSeq: %d %s" % (cseq, method)]
        return sip_msg("SIP/2.0 %d %s" % (code, reason), hdrs, body)

    def media(origin, port):
        return sdp(origin, ["c=IN IP4 %s" % origin, "t=0 0", "m=audio %d RTP/AVP 0" % port])

    p = f.handshake()                                                                    # 0-2
    p += [f.c("PA", req("INVITE", 1, media(C, 40000))), f.s("A")]                       # 3, 4
    # Two responses in one segment: both read.
    p += [f.s("PA", resp(100, "Trying", 1, "INVITE") + resp(200, "OK", 1, "INVITE", media(S, 50000)))]
    p += [f.c("PA", req("ACK", 1)), f.s("A")]                                           # 6, 7
    p += [rtp(S, C, 50000, 40000), rtp(C, S, 40000, 50000)]                              # 8, 9
    # A re-INVITE cut in the middle of its body: not read (its port is not expected).
    whole = req("INVITE", 2, media(C, 41000))
    p += [f.c("PA", whole[:-20]), f.s("A"), f.c("PA", whole[-20:]), f.s("A")]           # 10-13
    p += [rtp(S, C, 50000, 41000)]                                                       # 14
    # A message without Content-Length: the next message's length frames both as one UPDATE.
    p += [f.c("PA", req("UPDATE", 3, media(C, 42000), length=False) + req("ACK", 4, media(C, 43000))),
          f.s("A")]                                                                      # 15, 16
    p += [rtp(S, C, 50000, 42000), rtp(S, C, 50000, 43000)]                              # 17, 18
    # A lone ACK with media after it: read.
    p += [f.c("PA", req("ACK", 5, media(C, 44000))), f.s("A"), rtp(S, C, 50000, 44000)]  # 19-21
    # The last segment has a payload: the master is left at 3600 s.
    p += [f.c("PA", req("OPTIONS", 6))]                                                  # 22
    return p
