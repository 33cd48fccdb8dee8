#!/usr/bin/python3
"""The kernel oracle with the rules of an embedder's ruleset: conntrack zones and connection
marks, for the captures of pcaps/zones/ and pcaps/marks/.

    pcaps/gen/ktrace_rules.py FILE.pcap [ktrace's arguments]

Runs ../shared/oracle/ktrace.py (or the one beside $KTRACE) as it is, with two more nftables
tables loaded beside its ruleset:
- zones: a packet whose IPv4 TTL or IPv6 hop limit is 100 + N (N = 1 to 9) is put in
  conntrack zone N before defragmentation (priority -450, ahead of the defragmenter's -400:
  the kernel then reassembles each zone's fragments apart, as an embedder that hands ctrack a
  packet with its zone asks for). Every other packet stays in zone 0. The oracle's own chain
  resets TTL and hop limit to 64 afterwards, so this changes nothing else.
- marks: once conntrack has looked the packet up (priority -100, after its -200), a packet
  with DSCP N (1 to 9) sets its connection's mark to N (`ct mark set`), one with DSCP 10 sets
  it to 0. The oracle's own chain rewrites DSCP later (at forward), to report the verdict.
Packets with neither are left alone, so each capture takes the rules its packets ask for.
Like ktrace, it needs root and runs itself in a private network namespace.
`tests/golden.rs` replays these captures with the same rules (`common::zone_of`,
`common::mark_of`).
"""
import os
import sys

ZONES = range(1, 10)
TTL_BASE = 100
# DSCP -> connection mark.
MARKS = {**{n: n for n in range(1, 10)}, 10: 0}


def rules():
    pairs = ", ".join(f"{TTL_BASE + z} : {z}" for z in ZONES)
    marks = ", ".join(f"{d} : {m}" for d, m in MARKS.items())
    return "\n".join([
        "table inet zones {",
        "  chain by_ttl { type filter hook prerouting priority -450;",
        f"    meta nfproto ipv4 ct zone set ip ttl map {{ {pairs} }}",
        f"    meta nfproto ipv6 ct zone set ip6 hoplimit map {{ {pairs} }}",
        "  }",
        "}",
        "table inet marks {",
        "  chain by_dscp { type filter hook prerouting priority -100;",
        f"    meta nfproto ipv4 ct mark set ip dscp map {{ {marks} }}",
        f"    meta nfproto ipv6 ct mark set ip6 dscp map {{ {marks} }}",
        "  }",
        "}",
    ])


def oracle_dir():
    if os.environ.get("KTRACE"):
        return os.path.dirname(os.path.abspath(os.environ["KTRACE"]))
    here = os.path.dirname(os.path.abspath(__file__))
    beside = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "oracle"))
    return beside if os.path.exists(os.path.join(beside, "ktrace.py")) else "/work/shared/oracle"


def main():
    if os.environ.get("KTRACE_RULES_INSIDE") != "1":
        env = dict(os.environ, KTRACE_RULES_INSIDE="1")
        os.execvpe("unshare", ["unshare", "--net", "--", sys.executable,
                               os.path.abspath(__file__), *sys.argv[1:]], env)
    sys.path.insert(0, oracle_dir())
    import ktrace  # noqa: E402  (the shared oracle, unchanged)
    base = ktrace.nft_rules
    ktrace.nft_rules = lambda helpers: base(helpers) + "\n" + rules()
    ktrace.main()


if __name__ == "__main__":
    main()
