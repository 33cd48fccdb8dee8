#!/usr/bin/env python3
"""Rewrites a capture as classic pcap of raw IP (link type 101), for the kernel oracle, which
reads classic pcap of one link type only.

    pcaps/gen/rawip.py IN OUT

IN is pcap or pcapng, with any number of interfaces of any link types (what `editcap -F pcap`
refuses: a pcapng file whose interfaces differ in link type, or whose records classic pcap
cannot hold). Each frame loses its link header by the oracle's own rules (Ethernet with VLAN
tags, BSD loopback, raw IP, Linux cooked v1 and v2); a frame that carries no IPv4 or IPv6
packet (another ethertype, another link type) becomes a one-byte frame, which the oracle skips
as ctrack does. Frame numbers and timestamps (nanoseconds) are kept, so the oracle's verdicts
line up with ctrack's on IN. Blocks other than packets (statistics, name resolution, custom
blocks) are passed over. IN is not checked beyond what the rewrite needs, but for the
section versions that libpcap and ctrack refuse (other than 1.0 and 1.2).
"""
import struct
import sys

RAW_TYPES = (12, 14, 101, 228, 229)
NOT_IP = b"\0"


def ip_of(linktype, frame):
    """The IP packet a frame carries, by the oracle's rules, or None."""
    ip = None
    if linktype == 1 and len(frame) >= 14:
        et, p = struct.unpack("!H", frame[12:14])[0], 14
        while et in (0x8100, 0x88a8) and len(frame) >= p + 4:
            et, p = struct.unpack("!H", frame[p + 2:p + 4])[0], p + 4
        ip = frame[p:] if et in (0x0800, 0x86dd) else None
    elif linktype in RAW_TYPES:
        ip = frame
    elif linktype == 0 and len(frame) >= 4:
        e = ">" if frame[:2] == b"\0\0" else "<"
        ip = frame[4:] if struct.unpack(e + "I", frame[:4])[0] in (2, 24, 28, 30) else None
    elif linktype == 276 and len(frame) >= 20:
        ip = frame[20:] if struct.unpack("!H", frame[0:2])[0] in (0x0800, 0x86dd) else None
    elif linktype == 113 and len(frame) >= 16:
        ip = frame[16:] if struct.unpack("!H", frame[14:16])[0] in (0x0800, 0x86dd) else None
    if ip is None or len(ip) < 20 or ip[0] >> 4 not in (4, 6):
        return None
    return ip


def classic(data):
    """(nanoseconds, link type, frame) of each record of a classic pcap file."""
    e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < incl:
            break
        yield sec * 1_000_000_000 + frac * (1 if nano else 1000), linktype, frame


def timing(options, e):
    """Timestamp units per second and offset in seconds from an interface block's options
    (if_tsresol, if_tsoffset)."""
    per_sec, offset, off = 1_000_000, 0, 0
    while off + 4 <= len(options):
        code, length = struct.unpack(e + "HH", options[off:off + 4])
        if code == 0:
            break
        value = options[off + 4:off + 4 + length]
        if code == 9 and length >= 1:
            per_sec = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
        elif code == 14 and length >= 8:
            offset = struct.unpack(e + "q", value[:8])[0]
        off += 4 + (length + 3) // 4 * 4
    return per_sec, offset


def pcapng(data):
    """(nanoseconds, link type, frame) of each packet block of a pcapng file, in file order."""
    off, e, ifaces, last = 0, "<", [], 0
    while off + 12 <= len(data):
        btype = struct.unpack("<I", data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:  # section header: byte order and a fresh list of interfaces
            e = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            version = struct.unpack(e + "HH", data[off + 12:off + 16])
            if version not in ((1, 0), (1, 2)):  # as libpcap, and ctrack, refuse the rest
                sys.exit("rawip: unsupported pcapng section version %d.%d" % version)
            ifaces = []
        btype, blen = struct.unpack(e + "II", data[off:off + 8])
        if blen < 12 or off + blen > len(data):
            break
        body = data[off + 8:off + blen - 4]
        off += blen
        if btype == 1 and len(body) >= 8:  # interface description
            ifaces.append((struct.unpack(e + "H", body[0:2])[0], timing(body[8:], e)))
        elif btype in (2, 6) and len(body) >= 20:  # obsolete packet block, enhanced packet block
            if btype == 6:
                iface, hi, lo, cap = struct.unpack(e + "IIII", body[0:16])
            else:
                iface, _, hi, lo, cap = struct.unpack(e + "HHIII", body[0:16])
            link, (per_sec, offset) = ifaces[iface] if iface < len(ifaces) else (None, (1, 0))
            last = max(0, ((hi << 32) | lo) * 1_000_000_000 // per_sec + offset * 1_000_000_000)
            yield last, link, body[20:20 + cap]
        elif btype == 3 and len(body) >= 4:  # simple packet block: the first interface, no time
            link = ifaces[0][0] if ifaces else None
            yield last, link, body[4:]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: rawip.py IN OUT")
    data = open(sys.argv[1], "rb").read()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        records = pcapng(data)
    elif data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        records = classic(data)
    else:
        sys.exit("rawip: not a pcap or pcapng file")
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101)]
    try:
        for ns, link, frame in records:
            ip = ip_of(link, frame) if link is not None else None
            ip = NOT_IP if ip is None else ip
            if ns // 1_000_000_000 > 0xFFFFFFFF:
                sys.exit(f"rawip: {sys.argv[1]}: a timestamp past what a classic pcap holds (2106)")
            out.append(struct.pack("<IIII", ns // 1_000_000_000, ns % 1_000_000_000, len(ip), len(ip)))
            out.append(ip)
    except (struct.error, IndexError, ValueError) as e:
        sys.exit(f"rawip: {sys.argv[1]}: malformed ({e})")
    open(sys.argv[2], "wb").write(b"".join(out))


if __name__ == "__main__":
    main()
