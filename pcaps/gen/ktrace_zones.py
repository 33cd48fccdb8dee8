#!/usr/bin/python3
"""The kernel oracle with conntrack zones, for the captures of pcaps/zones/.

    pcaps/gen/ktrace_zones.py FILE.pcap [ktrace's arguments]

Runs ../shared/oracle/ktrace.py (or the one beside $KTRACE) as it is, with one more nftables
chain loaded beside its ruleset: a packet whose IPv4 TTL or IPv6 hop limit is 100 + N
(N = 1 to 9) is put in conntrack zone N before defragmentation (priority -450, ahead of the
defragmenter's -400: the kernel then reassembles each zone's fragments apart, as an embedder
that hands ctrack a packet with its zone asks for). Every other packet stays in zone 0. The
oracle's own chain resets TTL and hop limit to 64 afterwards, so the marking changes nothing
else. Like ktrace, it needs root and runs itself in a private network namespace.
`tests/golden.rs` replays these captures with the same rule (`common::zone_of`).
"""
import os
import sys

ZONES = range(1, 10)
TTL_BASE = 100


def zone_rules():
    pairs = ", ".join(f"{TTL_BASE + z} : {z}" for z in ZONES)
    return "\n".join([
        "table inet zones {",
        "  chain by_ttl { type filter hook prerouting priority -450;",
        f"    meta nfproto ipv4 ct zone set ip ttl map {{ {pairs} }}",
        f"    meta nfproto ipv6 ct zone set ip6 hoplimit map {{ {pairs} }}",
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
    if os.environ.get("KTRACE_ZONES_INSIDE") != "1":
        env = dict(os.environ, KTRACE_ZONES_INSIDE="1")
        os.execvpe("unshare", ["unshare", "--net", "--", sys.executable,
                               os.path.abspath(__file__), *sys.argv[1:]], env)
    sys.path.insert(0, oracle_dir())
    import ktrace  # noqa: E402  (the shared oracle, unchanged)
    base = ktrace.nft_rules
    ktrace.nft_rules = lambda helpers: base(helpers) + "\n" + zone_rules()
    ktrace.main()


if __name__ == "__main__":
    main()
