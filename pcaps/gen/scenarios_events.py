"""Event scenarios: what the kernel reports to a `conntrack -E` listener (pcaps/NAME.events,
recorded by regen_events.sh) where the verdicts alone do not show it: an update from a packet
the host drops after tracking waits for the entry's next packet that gets through."""
from ctgen import scenario
from scapy.all import IP, UDP, IPOption_LSRR
from scenarios_helpers import login
from scenarios_tcp import Flow

A, B = "10.44.0.1", "10.44.0.2"
BCAST = "255.255.255.255"


@scenario("events/dropped-reply-update-waits")
def _():
    lsrr = [IPOption_LSRR(routers=["10.44.0.9"])]

    def q(sport, dst=B, dport=53):
        return IP(src=A, dst=dst) / UDP(sport=sport, dport=dport) / b"q"

    def r(sport, src=B, sport_=53, opts=None):
        return IP(src=src, dst=A, options=opts or []) / UDP(sport=sport_, dport=sport) / b"r"

    # Delivered locally, so confirmed; its answer comes from a martian source, which the
    # router drops after tracking: the reply is seen (the table says so) but not reported
    # until the next packet that gets through, after another flow's new entry.
    p = [q(5000, BCAST, 17701), r(5000, BCAST, 17701), q(5010), q(5000, BCAST, 17701)]
    # A forwarded flow whose answer carries a source route, which the router refuses after
    # tracking: the same wait, ended by the next answer without one.
    p += [q(5001), r(5001, opts=lsrr), q(5011), r(5001)]
    # Dropped twice, then a packet that changes nothing itself: one update for both.
    p += [q(5002), r(5002, opts=lsrr), r(5002, opts=lsrr), q(5012), q(5002)]
    # No packet gets through after the dropped answer: never reported.
    p += [q(5003), r(5003, opts=lsrr), q(5013)]
    return p


@scenario("events/helper-drop-update-waits", args="--helper ftp:tcp:21")
def _():
    f = Flow(44001, 21, c=A, s=B)
    p = login(f)
    # A command the FTP helper cannot read whole, with the client's FIN: the state moves to
    # FIN_WAIT, the helper drops the packet, and the move is reported with the server's
    # answer (its own move to CLOSE_WAIT in the same update).
    p += [f.c("FPA", b"PORT 10,44,0,1\r\n", advance=False), f.s("A")]
    return p
