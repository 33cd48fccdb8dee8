"""Scenarios distilled from disagreements found on real traffic (see record_real.sh and
compare.sh): each reproduces, with a few synthetic packets, what real programs made ctrack and
the kernel disagree on."""
from ctgen import scenario
from scapy.all import (  # noqa: F401
    IP, UDP, IPOption, IPv6, IPv6ExtHdrHopByHop, HBHOptUnknown, PadN, RouterAlert,
)

A, B = "10.30.0.1", "10.30.0.2"
A6, B6 = "2001:db8:30::1", "2001:db8:30::2"


def opt(b):
    return [IPOption(b)]


@scenario("real/ipv4-options")
def _():
    """IPv4 options are parsed after conntrack has seen the packet: options the router keeps
    (record route, timestamps, router alert, security, unknown types) let a new flow be
    confirmed; a loose or strict source route is dropped by a router that does not accept
    source routing, so its flow is never confirmed, while a source-routed packet on an existing
    flow still counts for it (here: the reply that makes the flow replied). Found with
    `ping -R`, `ping -T` and `hping3 --lsrr`."""
    kept = [b"\x01\x01\x01\x01", b"\x07\x07\x04" + b"\0" * 4 + b"\x00",
            b"\x07\x07\x08\x0a\x1e\x00\x01\x00", b"\x44\x0c\x05\x00" + b"\0" * 8,
            b"\x44\x14\x05\x01" + b"\0" * 16, b"\x94\x04\x00\x00", b"\x82\x0b" + b"\0" * 9 + b"\x00",
            b"\x1e\x04\x00\x00", b"\x00\x00\x00\x00"]
    routed = [b"\x83\x07\x04\x0a\x1e\x00\x02\x00", b"\x83\x07\x08\x0a\x1e\x00\x02\x00",
              b"\x89\x07\x04\x0a\x1e\x00\x02\x00", b"\x01\x83\x03\x04"]
    out = []
    for i, o in enumerate(kept):
        out.append(IP(src=A, dst=B, options=opt(o)) / UDP(sport=20000 + i, dport=9) / b"kept")
    for i, o in enumerate(routed):
        out.append(IP(src=A, dst=B, options=opt(o)) / UDP(sport=21000 + i, dport=9) / b"srr")
        out.append(IP(src=B, dst=A) / UDP(sport=9, dport=21000 + i) / b"answer")
    # A source-routed reply on a confirmed flow is tracked before the router drops it.
    out.append(IP(src=A, dst=B) / UDP(sport=22000, dport=9) / b"q")
    out.append(IP(src=B, dst=A, options=opt(routed[0])) / UDP(sport=9, dport=22000) / b"r")
    out.append(IP(src=A, dst=B) / UDP(sport=22000, dport=9) / b"q2")
    return out


@scenario("real/ipv6-hop-by-hop")
def _():
    """IPv6 hop-by-hop options are parsed on receipt, before conntrack: a header the kernel
    refuses (an unknown option whose action is to discard, more than 7 bytes of padding,
    non-zero PadN, a bad router alert) drops the packet unseen, so a reply carrying one leaves
    its flow unreplied and a first packet carrying one creates nothing; skippable unknown
    options and router alerts pass. MLD reports and some real stacks' probes carry these."""
    hbh = [
        [HBHOptUnknown(otype=0x1e, optdata=b"ab")],
        [HBHOptUnknown(otype=0x5e, optdata=b"ab")],
        [HBHOptUnknown(otype=0x9e, optdata=b"ab")],
        [HBHOptUnknown(otype=0xde, optdata=b"ab")],
        [PadN(optdata=b"\0" * 6)],
        [RouterAlert()],
        [PadN(optdata=b"\x01\x02\x03\x04")],
        [HBHOptUnknown(otype=0x05, optdata=b"\0\0\0\0")],
    ]
    out = []
    for i, o in enumerate(hbh):
        out.append(IPv6(src=A6, dst=B6) / UDP(sport=2000 + i, dport=9) / b"q")
        out.append(IPv6(src=B6, dst=A6) / IPv6ExtHdrHopByHop(options=o) / UDP(sport=9, dport=2000 + i)
                   / b"r")
        out.append(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop(options=o) / UDP(sport=3000 + i, dport=9)
                   / b"q")
        out.append(IPv6(src=A6, dst=B6) / UDP(sport=2000 + i, dport=9) / b"again")
    return out
