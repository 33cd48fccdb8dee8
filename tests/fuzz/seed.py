#!/usr/bin/env python3
"""Seeds the fuzz corpora from the project's captures: corpus/capture gets small capture
files as they are, corpus/frames gets each classic pcap's first 200 frames (up to 2,048 bytes
each) as `frames` records (raw frames, lengths as captured, one-second time steps; the
helpers' captures also with edits of the table and sysctl changes between frames), and
corpus/helpers gets the payloads the helper captures carry to and from the helpers' ports,
as `helpers` inputs (a selector byte, then the messages). Inputs that once crashed a target,
kept in regressions/TARGET/, join its corpus too."""
import glob
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PCAPS = os.path.join(HERE, '..', '..', 'pcaps')
# pcap link type -> index into the `frames` target's link list
LINKS = {1: 1, 101: 0, 228: 0, 229: 0, 12: 0, 14: 0, 0: 2, 113: 3, 276: 4}

os.makedirs(os.path.join(HERE, 'corpus', 'capture'), exist_ok=True)
os.makedirs(os.path.join(HERE, 'corpus', 'frames'), exist_ok=True)
# Inputs that once crashed a target (regressions/TARGET/NAME) join its corpus, so that every
# smoke run replays them first.
for f in sorted(glob.glob(os.path.join(HERE, 'regressions', '*', '*'))):
    target = os.path.basename(os.path.dirname(f))
    os.makedirs(os.path.join(HERE, 'corpus', target), exist_ok=True)
    shutil.copy(f, os.path.join(HERE, 'corpus', target, 'regression-' + os.path.basename(f)))
for f in sorted(glob.glob(os.path.join(PCAPS, '**', '*.pcap*'), recursive=True)):
    name = os.path.relpath(f, PCAPS).replace(os.sep, '-')
    if os.path.getsize(f) <= 8192:
        shutil.copy(f, os.path.join(HERE, 'corpus', 'capture', name))
    d = open(f, 'rb').read()
    if len(d) < 24 or struct.unpack('<I', d[:4])[0] not in (0xa1b2c3d4, 0xa1b23c4d):
        continue
    lt = struct.unpack('<I', d[20:24])[0]
    if lt not in LINKS:
        continue
    # Every helper on for the captures compared with them.
    args = os.path.splitext(f)[0] + '.args'
    helpers = ('helper' in name or 'ftp' in name
               or (os.path.exists(args) and '--helper' in open(args).read()))
    # The zone scenarios' frames go in zones (0x20: each burst's zone by its first `dt`).
    zoned = os.path.exists(os.path.splitext(f)[0] + '.zones')
    # The timeout policy captures with the target's short policies (0x40).
    policed = os.path.exists(args) and '--timeout-policy' in open(args).read()
    out = bytearray([0, int(helpers) | (0x20 if zoned else 0) | (0x40 if policed else 0)])  # router, checksums off, one shard
    off, prev, n = 24, None, 0
    while off + 16 <= len(d) and n < 200:
        ts, _, incl, _ = struct.unpack('<IIII', d[off:off + 16])
        frame = d[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) > 2048 or (len(frame) > 255 and len(frame) % 256 == 0):
            # (A long record's low length byte is never 0: that makes it an edit.)
            continue
        dt = 0 if prev is None else min(255, max(0, ts - prev))
        prev = ts
        # flags: link index, 0x08 = bytes as given, 0x10 = time steps in seconds, 0x40 = a
        # long frame (a second length byte, the high one)
        if len(frame) > 255:
            out += bytes([LINKS[lt] | 0x08 | 0x10 | 0x40, len(frame) & 255, dt, len(frame) >> 8]) + frame
        else:
            out += bytes([LINKS[lt] | 0x08 | 0x10, len(frame), dt]) + frame
        n += 1
    if n:
        open(os.path.join(HERE, 'corpus', 'frames', name), 'wb').write(out)
    if n and helpers:
        # The same frames with an edit of the table after every tenth (a record with flag
        # 0x40 and no bytes; `dt` picks it): remove the first listed connection by its
        # original tuple, the second by its reply tuple, drop the UDP ones, flush; and a
        # sysctl change after every seventh (flags 0x60; `dt` picks one of the target's list
        # in turn); and a connection mark after every fifth (flags 0x50; `dt` picks the
        # listed connection, the mark and the tuple in turn), which expected connections get.
        edited, k, rec = bytearray(out[:2]), 0, 2
        while rec < len(out):
            size = 3 + out[rec + 1]
            if out[rec] & 0xc0 == 0x40 and out[rec + 1]:
                size += 1 + 256 * out[rec + 3]
            edited += out[rec:rec + size]
            rec += size
            k += 1
            if k % 10 == 0:
                edited += bytes([0x40, 0, [0, 5, 17 * 4 + 2, 3][k // 10 % 4]])
            if k % 7 == 3:
                edited += bytes([0x60, 0, k // 7 % 256])
            if k % 5 == 1:
                j = k // 5
                edited += bytes([0x50, 0, (j * 8 + (j % 4) * 2 + j % 2) % 256])
        open(os.path.join(HERE, 'corpus', 'frames', name + '-edits'), 'wb').write(edited)


# The helpers' ports and their `helpers` target selectors.
HELPED = {5060: 0, 6667: 2, 10080: 3, 6566: 4, 1723: 5}
SEP = b"\xff\x00\xff"


def payload(frame):
    """The (source port, destination port, payload) of an Ethernet TCP or UDP frame."""
    if len(frame) < 14:
        return None
    et = struct.unpack('!H', frame[12:14])[0]
    ip = frame[14:]
    if et == 0x0800 and len(ip) >= 20:
        nh, off = ip[9], (ip[0] & 15) * 4
        end = struct.unpack('!H', ip[2:4])[0]
    elif et == 0x86dd and len(ip) >= 40:
        nh, off = ip[6], 40
        end = 40 + struct.unpack('!H', ip[4:6])[0]
    else:
        return None
    l4 = ip[off:end]
    if nh == 17 and len(l4) >= 8:
        return struct.unpack('!HH', l4[:4]) + (l4[8:],)
    if nh == 6 and len(l4) >= 20:
        return struct.unpack('!HH', l4[:4]) + (l4[(l4[12] >> 4) * 4:],)
    return None


os.makedirs(os.path.join(HERE, 'corpus', 'helpers'), exist_ok=True)
for f in sorted(glob.glob(os.path.join(PCAPS, '**', '*.pcap'), recursive=True)):
    d = open(f, 'rb').read()
    if len(d) < 24 or struct.unpack('<I', d[20:24])[0] != 1:
        continue
    runs = {}
    off = 24
    while off + 16 <= len(d):
        incl = struct.unpack('<IIII', d[off:off + 16])[2]
        p = payload(d[off + 16:off + 16 + incl])
        off += 16 + incl
        if not p or not p[2]:
            continue
        sport, dport, data = p
        for port, sel in HELPED.items():
            if port in (sport, dport):
                runs.setdefault(sel | (8 if port == sport else 0), []).append(data)
    name = os.path.relpath(f, PCAPS).replace(os.sep, '-')
    for sel, msgs in runs.items():
        out = bytes([sel]) + SEP.join(msgs[:40])
        open(os.path.join(HERE, 'corpus', 'helpers', '%s-%d' % (name, sel)), 'wb').write(out)
