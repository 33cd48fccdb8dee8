#!/usr/bin/env python3
"""Rewrites a little-endian pcapng file (as editcap writes one) in big-endian byte order, the
order of a capture taken on a big-endian machine, which editcap cannot write.

    pcaps/gen/pcapng_be.py IN OUT

Every block is kept, with its fields and the numeric values of its options swapped; option
values that are bytes (names, comments, hashes) are kept as they are. A block or option this
script does not know is refused rather than copied with the wrong byte order.
"""
import struct
import sys

SHB, IDB, SPB, ISB, EPB = 0x0A0D0D0A, 1, 3, 5, 6

# Per block type: option code -> struct format of its value ("" for bytes kept as they are).
# Code 0 ends the options; 1 is a comment and 2988/2989/19372/19373 are custom options
# (bytes) in every block.
COMMON = {1: "", 2988: "", 2989: "", 19372: "", 19373: ""}
OPTIONS = {
    SHB: {2: "", 3: "", 4: ""},
    IDB: {2: "", 3: "", 4: "", 5: "", 6: "", 7: "", 8: "Q", 9: "", 10: "", 11: "", 12: "",
          13: "", 14: "q", 15: "", 16: "Q", 17: "Q"},
    EPB: {2: "I", 3: "", 4: "Q", 5: "Q", 6: "I", 7: ""},
    ISB: {2: "II", 3: "II", 4: "Q", 5: "Q", 6: "Q", 7: "Q", 8: "Q"},
    SPB: {},
}
# Per block type: the struct format of its fixed fields before the packet data or options.
FIXED = {SHB: "IHHq", IDB: "HHI", EPB: "IIIII", SPB: "I", ISB: "III"}


def swap(fmt, b):
    return struct.pack(">" + fmt, *struct.unpack("<" + fmt, b))


def options(btype, b):
    known = {**COMMON, **OPTIONS[btype]}
    out, off = [], 0
    while off + 4 <= len(b):
        code, length = struct.unpack("<HH", b[off:off + 4])
        value = b[off + 4:off + 4 + length]
        pad = b[off + 4 + length:off + 4 + (length + 3) // 4 * 4]
        out.append(struct.pack(">HH", code, length))
        if code == 0:
            out.append(b[off + 4:])
            break
        if code not in known:
            sys.exit(f"pcapng_be: option {code} of block type {btype} is not known")
        fmt = known[code]
        out.append(swap(fmt, value) if fmt else value)
        out.append(pad)
        off += 4 + (length + 3) // 4 * 4
    else:
        out.append(b[off:])
    return b"".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: pcapng_be.py IN OUT")
    data = open(sys.argv[1], "rb").read()
    if data[:4] != b"\x0a\x0d\x0d\x0a" or data[8:12] != b"\x4d\x3c\x2b\x1a":
        sys.exit("pcapng_be: not a little-endian pcapng file")
    try:
        out = convert(data)
    except (struct.error, IndexError) as e:
        sys.exit(f"pcapng_be: {sys.argv[1]}: malformed ({e})")
    open(sys.argv[2], "wb").write(b"".join(out))


def convert(data):
    """The big-endian blocks of a little-endian pcapng file."""
    out, off = [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack("<II", data[off:off + 8])
        body = data[off + 8:off + blen - 4]
        off += blen
        if btype not in FIXED:
            sys.exit(f"pcapng_be: block type {btype} is not known")
        n = struct.calcsize("<" + FIXED[btype])
        fields = struct.unpack("<" + FIXED[btype], body[:n])
        rest = body[n:]
        if btype == SHB:
            fields = (0x1A2B3C4D,) + fields[1:]
        head = struct.pack(">" + FIXED[btype], *fields)
        if btype in (EPB, SPB):
            cap = fields[3] if btype == EPB else min(fields[0], len(rest))
            padded = (cap + 3) // 4 * 4
            rest = rest[:padded] + options(btype, rest[padded:])
        else:
            rest = options(btype, rest)
        out.append(struct.pack(">II", btype, blen) + head + rest + struct.pack(">I", blen))
    return out


if __name__ == "__main__":
    main()
