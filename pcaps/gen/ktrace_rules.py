#!/usr/bin/python3
"""The kernel oracle with the rules of an embedder's ruleset: conntrack zones, connection
marks and timeout policies, for the captures of pcaps/zones/, pcaps/marks/ and
pcaps/timeouts/.

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
And, for each `--timeout-policy PROTO[:PORT]:STATE=SECS,...` among the arguments (ctrack's
option, taken out of those ktrace gets), a `ct timeout` object with those timeouts and a rule
that sets it (priority -100, after conntrack: the kernel gives it to a connection while its
first packet makes it) for packets of that protocol and destination port, in the order given,
so that the last one that matches wins. (nft fills the states a policy does not name with
Linux's defaults, whatever the sysctls say; ctrack's policies do the same.)
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


def timeout_rules(specs):
    """The nftables table for ctrack's `--timeout-policy` rules `specs` (empty: none)."""
    if not specs:
        return ""
    r = ["table inet timeouts {"]
    for i, spec in enumerate(specs):
        fields = spec.split(":")
        proto, port, states = (fields[0], None, fields[1]) if len(fields) == 2 else fields
        policy = ", ".join(f"{k} : {v}" for k, v in (kv.split("=") for kv in states.split(",")))
        r.append(f"  ct timeout p{i} {{ protocol {proto}; l3proto inet; policy = {{ {policy} }}; }}")
    r.append("  chain set_timeout { type filter hook prerouting priority -100;")
    for i, spec in enumerate(specs):
        fields = spec.split(":")
        match = f"{fields[0]} dport {fields[1]}" if len(fields) == 3 else f"meta l4proto {fields[0]}"
        r.append(f'    {match} ct timeout set "p{i}"')
    r.append("  }")
    r.append("}")
    return "\n".join(r)


def take_timeout_rules(argv):
    """Takes the `--timeout-policy X` pairs out of `argv`; returns their values, in order."""
    specs, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--timeout-policy" and i + 1 < len(argv):
            specs.append(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    argv[:] = rest
    return specs


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
    specs = take_timeout_rules(sys.argv)
    base = ktrace.nft_rules

    ktrace.nft_rules = lambda helpers: base(helpers) + "\n" + rules() + "\n" + timeout_rules(specs)
    ktrace.main()


if __name__ == "__main__":
    main()
