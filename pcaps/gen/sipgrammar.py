"""SIP messages in the many spellings the grammar (and real user agents) allow, for the
differential tests (`difffuzz_ip.py`'s SIP dialogs): header names in any case or compact,
blanks around the colon, folded lines, bare LF or CR line ends, address and port literals
that are valid, odd or broken, SDP bodies with session and media connection lines and several
media, and Content-Length right, wrong or missing. A message is built from a `Msg` and turned
into bytes by `render`, which returns the media and contact ports it announced, so that the
dialog can send traffic to them.
"""

COMPACT = {"via": "v", "contact": "m", "content-length": "l", "call-id": "i", "from": "f",
           "to": "t", "content-type": "c", "expires": None, "cseq": None}


class Spell:
    """The random choices one message's spelling makes."""

    def __init__(self, rng):
        self.rng = rng
        r = rng.random()
        # Mostly CRLF; some agents send bare LF, a broken one bare CR.
        self.eol = "\r\n" if r < 0.85 else ("\n" if r < 0.96 else "\r")
        self.odd = rng.random() < 0.35       # this message takes the unusual spellings

    def name(self, canonical):
        """A header name: as written, in another case, or compact."""
        rng = self.rng
        if not self.odd or rng.random() < 0.5:
            return canonical
        c = COMPACT.get(canonical.lower())
        k = rng.random()
        if c and k < 0.4:
            return c if rng.random() < 0.8 else c.upper()
        if k < 0.7:
            return canonical.lower()
        if k < 0.85:
            return canonical.upper()
        return "".join(ch.upper() if rng.random() < 0.5 else ch for ch in canonical)

    def colon(self):
        if not self.odd or self.rng.random() < 0.5:
            return ": "
        return self.rng.choice([":", " : ", ":\t", ":  ", " :", "\t: "])

    def header(self, canonical, value):
        """One header line; sometimes folded onto a second line before its parameters."""
        v = value
        if self.odd and self.rng.random() < 0.15 and ";" in v:
            i = v.index(";")
            v = v[:i] + self.eol + self.rng.choice([" ", "\t", "  "]) + v[i:]
        elif self.odd and self.rng.random() < 0.08:
            v = self.eol + " " + v
        return f"{self.name(canonical)}{self.colon()}{v}"


def v4_literal(rng, addr):
    """`addr` (dotted quad) as written, or in a form a parser may take or refuse."""
    r = rng.random()
    if r < 0.8:
        return addr
    parts = addr.split(".")
    k = rng.choice(["zeros", "short", "big", "name", "trail", "space"])
    if k == "zeros":
        return ".".join(p.zfill(3) for p in parts)
    if k == "short":
        return ".".join(parts[:3])
    if k == "big":
        return ".".join(parts[:3] + ["300"])
    if k == "name":
        return "pbx.example.com"
    if k == "trail":
        return addr + "."
    return addr + " "


def v6_literal(rng, addr):
    """`addr` (compressed IPv6) as written, or expanded, upper case, or broken."""
    import ipaddress
    r = rng.random()
    if r < 0.8:
        return addr
    k = rng.choice(["full", "upper", "broken", "v4tail"])
    if k == "full":
        return ipaddress.IPv6Address(addr).exploded
    if k == "upper":
        return addr.upper()
    if k == "broken":
        return addr.replace("::", ":::")
    return "::ffff:10.1.0.1"


def port_literal(rng, port):
    """`port` in decimal, or now and then something a parser must refuse or wrap."""
    r = rng.random()
    if r < 0.88:
        return str(port)
    return rng.choice(["0" + str(port), "0", "80", "1023", "65536", "70000", "", "5x60",
                       "4294967297", " " + str(port)])


class Host:
    """An endpoint as the messages name it."""

    def __init__(self, addr, v6):
        self.addr, self.v6 = addr, v6

    def sip(self, rng):
        """The address as a SIP URI's host part (IPv6 in brackets, mostly)."""
        if self.v6:
            lit = v6_literal(rng, self.addr)
            return f"[{lit}]" if rng.random() < 0.95 else lit
        return v4_literal(rng, self.addr)

    def sdp(self, rng):
        return v6_literal(rng, self.addr) if self.v6 else v4_literal(rng, self.addr)


def sdp_body(rng, sp, owner, media, other=None):
    """An SDP body from `owner` (a Host) offering `media`, a list of (kind, port, own_c):
    own_c is a Host for a media-level c= line, or None. `other`, when set, is a Host some
    connection lines name instead (a third party, or the peer)."""
    lines = []
    if rng.random() < 0.95:
        lines.append("v=0")
    ipv = "IP6" if owner.v6 else "IP4"
    lines.append(f"o=- {rng.randint(1, 10**6)} 1 IN {ipv} {owner.addr}")
    lines.append("s=-")

    def cline(h):
        fam = "IP6" if h.v6 else "IP4"
        r = rng.random()
        if r < 0.04:
            fam = "IP4" if h.v6 else "IP6"        # the family the address is not
        elif r < 0.06:
            fam = "IP7"
        head = "c=IN " if rng.random() < 0.95 else rng.choice(["c=in ", "c=IN  ", "C=IN "])
        tail = "/127" if rng.random() < 0.04 else ""
        return f"{head}{fam} {h.sdp(rng)}{tail}"
    session_c = rng.random() < 0.85
    if session_c:
        h = owner if other is None or rng.random() < 0.7 else other
        lines.append(cline(h))
    lines.append("t=0 0")
    for kind, port, own_c in media:
        count = "/2" if rng.random() < 0.05 else ""
        proto = rng.choice(["RTP/AVP 0 8 101", "RTP/AVP 0", "RTP/SAVP 0", "udptl t38"])
        mh = "m=" if rng.random() < 0.97 else rng.choice(["M=", "m ="])
        lines.append(f"{mh}{kind} {port_literal(rng, port)}{count} {proto}")
        if own_c is not None:
            lines.append(cline(own_c))
        if rng.random() < 0.3:
            lines.append(f"a=rtcp:{port + 1}")
        if rng.random() < 0.2:
            lines.append("a=sendrecv")
    eol = "\r\n" if rng.random() < 0.9 else "\n"
    return eol.join(lines) + eol


class Msg:
    """A SIP message before it is spelt: a start line, headers as (name, value) pairs, and a
    body. `length` is how Content-Length is given: "right", "wrong", "missing", "zero"."""

    def __init__(self, start, headers, body="", length="right"):
        self.start, self.headers, self.body, self.length = start, headers, body, length


def render(rng, msg):
    """The message's bytes in one random spelling."""
    sp = Spell(rng)
    lines = [msg.start]
    for name, value in msg.headers:
        lines.append(sp.header(name, value))
    body = msg.body.encode()
    if msg.body and not any(n.lower() == "content-type" for n, _ in msg.headers):
        lines.append(sp.header("Content-Type", "application/sdp"))
    n = len(body)
    if msg.length == "right":
        lines.append(sp.header("Content-Length", str(n)))
    elif msg.length == "wrong":
        lines.append(sp.header("Content-Length", str(rng.choice([n + 7, max(0, n - 9), 100000, 0]))))
    elif msg.length == "zero":
        lines.append(sp.header("Content-Length", "0"))
    text = sp.eol.join(lines) + sp.eol + sp.eol
    data = text.encode() + body
    if rng.random() < 0.04:
        # A flipped or cut byte anywhere: numbers, names and separators a parser must survive.
        b = bytearray(data)
        i = rng.randrange(len(b))
        if rng.random() < 0.5:
            b[i] = rng.choice(b" :;\r\n0123456789<>@[]=")
            data = bytes(b)
        else:
            data = bytes(b[:i])
    return data


def cseq(rng, n, method):
    r = rng.random()
    if r < 0.9:
        return f"{n} {method}"
    return rng.choice([f"{n}  {method}", f" {n} {method}", f"0 {method}", f"{n} {method.lower()}",
                       f"{n}{method}", f"x {method}", f"{n}", f"4294967296 {method}"])


def contact(rng, user, host, port, params=""):
    """A Contact value for `host:port`, in one of its forms (weighted: mostly the usual one)."""
    h = host.sip(rng)
    p = port_literal(rng, port)
    tr = rng.choice(["udp", "tcp", "UDP", "tls"])
    forms = [
        (55, f"<sip:{user}@{h}:{p}{params}>"),
        (15, f"\"{user.title()}\" <sip:{user}@{h}:{p}>{params}"),
        (10, f"sip:{user}@{h}:{p}{params}"),
        (6, f"<sip:{h}:{p}{params}>"),
        (4, f"<sip:{user}@{h}{params}>"),
        (4, f"<sip:{user}@{h}:{p};transport={tr}>{params}"),
        (6, f"<sips:{user}@{h}:{p}>{params}"),
    ]
    return rng.choices([f for _, f in forms], weights=[w for w, _ in forms])[0]
