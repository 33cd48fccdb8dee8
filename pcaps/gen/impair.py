#!/usr/bin/python3
"""A userspace Ethernet bridge between two interfaces that loses, duplicates, delays and so
reorders frames, for kernels without the netem qdisc (record_real.sh uses it).

    impair.py IF_A IF_B [--loss P] [--dup P] [--delay MS] [--jitter MS] [--seed N]

P is a probability in percent, applied to each frame in both directions; each frame is held
for DELAY +/- JITTER milliseconds (uniform), so a large jitter reorders. Runs until killed.
"""
import argparse
import heapq
import random
import select
import socket
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    o = ap.parse_args()
    rnd = random.Random(o.seed)
    socks = {}
    for name in (o.a, o.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    other = {socks[o.a]: socks[o.b], socks[o.b]: socks[o.a]}
    queue = []  # (due, seq, socket, frame)
    seq = 0
    poll = select.poll()
    for s in socks.values():
        poll.register(s, select.POLLIN)
    fds = {s.fileno(): s for s in socks.values()}
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, s, frame = heapq.heappop(queue)
            try:
                s.send(frame)
            except OSError:
                pass
        wait = max(0, int((queue[0][0] - now) * 1000)) if queue else 1000
        for fd, _ in poll.poll(wait):
            s = fds[fd]
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                if rnd.random() * 100 < o.loss:
                    continue
                copies = 2 if rnd.random() * 100 < o.dup else 1
                for _ in range(copies):
                    d = o.delay + rnd.uniform(-o.jitter, o.jitter)
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + max(0.0, d) / 1000, seq,
                                           other[s], frame))


if __name__ == "__main__":
    main()
