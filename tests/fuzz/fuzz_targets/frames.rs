//! Frames in, verdicts out: no input may panic the engine, and `process` and the batch path
//! (sorted by shard or in order) must decide exactly what the general path decides (same
//! verdicts, table and counters); `process`, recording events, must give events that tell the
//! table's story (a connection or an expectation new once until destroyed, a connection
//! updated only between, every one destroyed once expiry has emptied the table); with a host
//! that confirms every entry, a frame tracked alone must find its connection by the tuple
//! `tuple_of` gives.
//!
//! The input is two configuration bytes, then records `[flags][len][dt][len bytes]`. A record
//! is either a raw frame (any link type, bytes as given, or raw IP with the lengths and the
//! IPv4 header checksum made right so that the bytes reach the trackers) or a packet built
//! from a compact description (TCP, UDP, ICMP echo or an ICMP error quoting the previous
//! packet, between a handful of endpoints, so that records keep meeting the same
//! connections). A raw frame with flag `0x40` is a long one, `[flags][len][dt][hi][bytes]`
//! with `len + 256 hi` bytes (a SIP registration's messages do not fit in 255). A record with
//! flag `0x40` and no bytes is an edit of the table between packets, made on all three
//! trackers alike (`dt` picks it): removing one listed connection by either tuple, removing
//! those of one protocol, or a flush; with flag `0x20` as well, a change of one sysctl (`dt`
//! picks it from [`SYSCTLS`]); with flag `0x10` instead, a connection mark (0 to 3) on one
//! listed connection. With bit `0x20` of the second configuration byte, each burst is
//! tracked in a conntrack zone, 0, 1 or 2 by the `dt` of its first record (mod 3).

#![no_main]

use std::collections::BTreeSet;

use ctrack::{Config, Conntrack, EventKind, HostModel, L4, LinkType, Verdict, packet};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 5] = [
    LinkType::Raw,
    LinkType::Ethernet,
    LinkType::Loopback,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
];

/// The sysctl changes an edit record makes between packets: limits, switches and short
/// timeouts that change verdicts, and settings a running tracker refuses to change.
const SYSCTLS: [&str; 22] = [
    "nf_conntrack_max=3",
    "nf_conntrack_max=0",
    "nf_conntrack_max=65536",
    "nf_conntrack_tcp_loose=0",
    "nf_conntrack_tcp_loose=1",
    "nf_conntrack_tcp_be_liberal=1",
    "nf_conntrack_tcp_be_liberal=0",
    "nf_conntrack_checksum=1",
    "nf_conntrack_checksum=0",
    "nf_conntrack_udp_timeout=1",
    "nf_conntrack_udp_timeout_stream=2",
    "nf_conntrack_tcp_timeout_established=2",
    "nf_conntrack_tcp_timeout_syn_sent=1",
    "nf_conntrack_tcp_ignore_invalid_rst=1",
    "nf_conntrack_tcp_max_retrans=0",
    "nf_conntrack_icmp_timeout=1",
    "nf_conntrack_generic_timeout=1",
    "nf_conntrack_sctp_timeout_established=1",
    "nf_conntrack_gre_timeout=1",
    "nf_conntrack_frag6_timeout=1",
    "nf_conntrack_expect_max=1",
    "nf_conntrack_acct=1",
];

fn config(b: u8, extra: u8) -> Config {
    let mut cfg = Config {
        host: if b & 1 != 0 {
            HostModel::ConfirmAll
        } else {
            HostModel::Router
        },
        shards: [1, 2, 16, 4][(b >> 1 & 3) as usize],
        ..Config::default()
    };
    let set = |cfg: &mut Config, s: &str| {
        cfg.set_sysctl(s).expect("known sysctl");
    };
    set(
        &mut cfg,
        if b & 8 != 0 {
            "nf_conntrack_checksum=1"
        } else {
            "nf_conntrack_checksum=0"
        },
    );
    if b & 16 != 0 {
        set(&mut cfg, "nf_conntrack_max=6");
    }
    if b & 32 != 0 {
        set(&mut cfg, "nf_conntrack_tcp_loose=0");
    }
    if b & 64 != 0 {
        set(&mut cfg, "nf_conntrack_tcp_be_liberal=1");
    }
    if b & 128 != 0 {
        set(&mut cfg, "nf_conntrack_acct=1");
        set(&mut cfg, "nf_conntrack_timestamp=1");
    }
    if extra & 1 != 0 {
        cfg.helpers = ctrack_helpers::parse_assignments(["all"]).expect("all helpers");
    }
    if extra & 2 != 0 {
        set(&mut cfg, "nf_conntrack_expect_max=2");
    }
    if extra & 16 != 0 {
        // Few hash chains, each holding many tuples: early drop, and the lookups that reap
        // timed-out entries, meet entries on every walk.
        set(&mut cfg, "nf_conntrack_buckets=2");
    }
    if extra & 64 != 0 {
        // Timeout policies: short ones for every TCP and UDP connection, and those of a
        // port after them (which win there).
        for r in [
            "tcp:established=2,syn_sent=1,time_wait=1,close=1,unack=1,retrans=1",
            "udp:unreplied=1,replied=2",
            "udp:53:unreplied=0,replied=1",
            "tcp:80:syn_sent2=1,syn_recv=1,fin_wait=1",
        ] {
            cfg.add_timeout_rule(r).expect("a valid rule");
        }
    }
    // Bursts sorted by shard, or in order while the table is small.
    cfg.in_order_entries = [0, 4096, 3, 20][usize::from(extra >> 2 & 3)];
    cfg
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Makes a raw IP packet's length fields (and an IPv4 header's checksum) agree with its bytes.
fn fix_lengths(p: &mut [u8]) {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let hl = usize::from(p[0] & 15) * 4;
            let n = (p.len() as u16).to_be_bytes();
            p[2..4].copy_from_slice(&n);
            if hl >= 20 && hl <= p.len() {
                p[10..12].fill(0);
                let c = csum(&p[..hl]);
                p[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        Some(6) if p.len() >= 40 => {
            let n = ((p.len() - 40) as u16).to_be_bytes();
            p[4..6].copy_from_slice(&n);
        }
        _ => {}
    }
}

/// An IPv4 or IPv6 packet around `l4` (protocol `proto`) between endpoint numbers `a` -> `b`.
fn ip(v6: bool, a: u8, b: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = if v6 {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a]);
        h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b]);
        h
    } else {
        vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, a, 10, 0, 0, b,
        ]
    };
    p.extend_from_slice(l4);
    fix_lengths(&mut p);
    p
}

/// A packet built from its compact description `d`; `last` is the previous built packet
/// (quoted by ICMP errors).
fn build(d: &[u8], last: &[u8]) -> Vec<u8> {
    let g = |i: usize| d.get(i).copied().unwrap_or(0);
    let w32 = |i: usize| u32::from_be_bytes([g(i), g(i + 1), g(i + 2), g(i + 3)]);
    let k = g(0);
    let v6 = k & 4 != 0;
    // Two clients and two servers; bit 3 turns the packet around.
    let (c, s) = (1 + (k >> 4 & 1), 100 + (k >> 5 & 1));
    let (a, b) = if k & 8 != 0 { (s, c) } else { (c, s) };
    let cport = [1000u16, 1001][usize::from(k >> 6 & 1)];
    let sport = [80u16, 21][usize::from(k >> 7)];
    let (p1, p2) = if k & 8 != 0 {
        (sport, cport)
    } else {
        (cport, sport)
    };
    match k & 3 {
        0 => {
            // TCP: flags, seq, ack, window, then payload length and options selector.
            let opts: &[u8] = match g(12) & 3 {
                0 => &[],
                1 => &[3, 3, 7, 1],                 // window scale 7
                2 => &[4, 2, 1, 1],                 // SACK permitted
                _ => &[2, 4, 5, 0xb4, 3, 3, 14, 0], // MSS, window scale 14
            };
            let hl = 20 + opts.len();
            let mut t = vec![0u8; hl];
            t[0..2].copy_from_slice(&p1.to_be_bytes());
            t[2..4].copy_from_slice(&p2.to_be_bytes());
            t[4..8].copy_from_slice(&w32(2).to_be_bytes());
            t[8..12].copy_from_slice(&w32(6).to_be_bytes());
            t[12] = ((hl / 4) as u8) << 4;
            t[13] = g(1);
            t[14] = g(10);
            t[15] = g(12) | 0x0f;
            t[20..hl].copy_from_slice(opts);
            // Payload: the record's remaining bytes (FTP commands, for the helper).
            t.extend_from_slice(d.get(13..).unwrap_or_default());
            ip(v6, a, b, 6, &t)
        }
        1 => {
            // UDP to port 69 instead of 21 (TFTP); the payload is the record's rest.
            let port = |p: u16| if p == 21 { 69 } else { p };
            let body = d.get(1..).unwrap_or_default();
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&port(p1).to_be_bytes());
            u[2..4].copy_from_slice(&port(p2).to_be_bytes());
            u[4..6].copy_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            u.extend_from_slice(body);
            ip(v6, a, b, 17, &u)
        }
        2 => {
            // Echo request or reply with a small id space.
            let ty = match (v6, g(1) & 1) {
                (false, 0) => 8,
                (false, _) => 0,
                (true, 0) => 128,
                (true, _) => 129,
            };
            let m = [ty, 0, 0, 0, 0, g(2) & 1, 0, g(3)];
            ip(v6, a, b, if v6 { 58 } else { 1 }, &m)
        }
        _ => {
            // An ICMP error about the previous packet, from either endpoint or a router.
            let from = [a, b, 254][usize::from(g(1) % 3)];
            let ty = if v6 {
                [1u8, 2, 3, 4][usize::from(g(2) & 3)]
            } else {
                [3u8, 11, 12, 5][usize::from(g(2) & 3)]
            };
            let mut m = vec![ty, g(3) & 3, 0, 0, 0, 0, 0, 0];
            let quote = last.len().min(usize::from(g(4)).max(8));
            m.extend_from_slice(&last[..quote]);
            ip(v6, from, a, if v6 { 58 } else { 1 }, &m)
        }
    }
}

fn table(ct: &Conntrack, now: u64) -> Vec<String> {
    let mut t = Vec::new();
    ct.for_each_entry(now, |e| t.push(e.proc_line()));
    t.sort();
    t
}

/// The live entries, in the listing's order.
fn table_views(ct: &Conntrack, now: u64) -> Vec<ctrack::EntryView> {
    let mut t = Vec::new();
    ct.for_each_entry(now, |e| t.push(e));
    t.sort_by_cached_key(|e| e.proc_line());
    t
}

/// A frame just tracked (not a datagram gathered from fragments) by a host that confirms
/// every entry finds its connection by the tuple `tuple_of` gives: the table has it, but after
/// an RST that ended a connection that never saw a reply (the kernel kills it). (The oracle's
/// router leaves some first packets unconfirmed, and prints for a packet it answers with an
/// error of its own the verdict its quote carries, with no entry behind it.) With the
/// timeout policies of `config` (`policed`), a UDP connection to port 53 has none to find: its
/// policy's timeouts are 0 s, so it is gone as soon as made, as in the kernel.
fn check_tuple_of(
    ct: &Conntrack,
    z: &ctrack::InZone<'_>,
    v: Verdict,
    f: &[u8],
    link: LinkType,
    now: u64,
    policed: bool,
) {
    let Some(t) = z.tuple_of(f, link) else {
        // Only a fragment past the first has none among tracked packets.
        let p = packet::ip_of_frame(f, link).and_then(|ip| packet::parse_ip(ip).ok());
        assert!(p.is_some_and(|p| p.frag.is_some()), "a tracked packet without a tuple");
        return;
    };
    let dns = matches!(t.l4, L4::Ports { src: 53, .. } | L4::Ports { dst: 53, .. });
    if ct.get(&t, now).is_none() && !(policed && t.proto == 17 && dns) {
        let rst = packet::ip_of_frame(f, link)
            .and_then(|ip| packet::parse_ip(ip).ok())
            .is_some_and(|p| p.proto == 6 && p.l4().get(13).is_some_and(|fl| fl & 4 != 0));
        // A GRE packet's source key is its PPTP master's mapping, read as the packet's tuple is
        // made; a master that timed out is reaped when the packet meets the clock, and its
        // mappings with it, so the entry made keeps a key where `tuple_of` now gives 0.
        let gre_remapped = matches!(t.l4, L4::Gre { src_key: 0, .. })
            && table_views(ct, now).iter().any(|e| {
                [e.orig, e.reply].iter().any(|o| {
                    (o.src, o.dst, o.proto, o.zone) == (t.src, t.dst, t.proto, t.zone)
                        && matches!((o.l4, t.l4), (L4::Gre { dst_key: a, .. }, L4::Gre { dst_key: b, .. }) if a == b)
                })
            });
        assert!(rst || gre_remapped, "{v}: tuple_of gives {t:?}, which finds no connection");
    }
}

fuzz_target!(|data: &[u8]| {
    let [cfg_byte, extra, ref body @ ..] = *data else {
        return;
    };
    let mut rest = body;
    let cfg = config(cfg_byte, extra);
    // The general path frame by frame, `process` frame by frame (its shortcut for the common
    // frame), and the batch.
    let reference = Conntrack::with_seed(cfg.clone(), 1);
    let one = Conntrack::with_seed(
        Config {
            events: 1 << 16,
            ..cfg.clone()
        },
        1,
    );
    let many = Conntrack::with_seed(cfg, 1);
    // `process_ip` frame by frame, `process` frame by frame (recording events), the batch.
    let mut cts = [reference, one, many];
    let mut open = BTreeSet::new();
    let mut expected = std::collections::BTreeMap::<String, u32>::new();
    let mut story = |ct: &Conntrack| {
        for e in ct.expect_events() {
            // The expectation and its master, without the time left and the flags.
            let line = e.line();
            // (With its zone, which the line leaves out as the kernel's does: one tuple may be
            // expected in two zones.)
            let k = (line.split_whitespace().skip(2))
                .filter(|t| !t.starts_with("PERMANENT") && !t.starts_with("INACTIVE"))
                .chain([format!("zone={}", e.expect.zone).as_str()])
                .collect::<Vec<_>>()
                .join(" ");
            let n = expected.entry(k).or_default();
            match e.kind {
                EventKind::New => {
                    assert_eq!(*n, 0, "expectation announced twice: {line}");
                    *n = 1;
                }
                _ => {
                    assert_eq!(*n, 1, "expectation gone before announced: {line}");
                    *n = 0;
                }
            }
        }
        for e in ct.events() {
            let k = format!("{:?}", e.entry.orig);
            assert!(!e.line().is_empty());
            match e.kind {
                EventKind::New => assert!(open.insert(k), "new twice: {}", e.line()),
                EventKind::Update => assert!(open.contains(&k), "update of none: {}", e.line()),
                EventKind::Destroy => assert!(open.remove(&k), "destroy of none: {}", e.line()),
            }
        }
        assert_eq!(ct.events_lost(), 0);
    };
    let mut now: u64 = 1_000_000_000_000;
    let mut burst: Vec<Vec<u8>> = Vec::new();
    let mut burst_link = LinkType::Raw;
    let mut last = Vec::new();
    let mut out: Vec<Verdict> = Vec::new();
    let zones = extra & 0x20 != 0;
    let confirm_all = cfg_byte & 1 != 0;
    let mut zone = 0u16;
    let mut run = |cts: &[Conntrack; 3],
                   burst: &mut Vec<Vec<u8>>,
                   link: LinkType,
                   zone: u16,
                   now: u64| {
        if burst.is_empty() {
            return;
        }
        let [reference, one, many] = cts.each_ref().map(|ct| ct.in_zone(zone));
        let frames: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
        many.process_batch(&frames, link, now, &mut out);
        assert_eq!(out.len(), frames.len());
        for (f, v) in frames.iter().zip(&out) {
            let want = match packet::ip_of_frame(f, link) {
                Some(ip) => reference.process_ip(ip, now),
                None => Verdict::SKIPPED,
            };
            assert_eq!(one.process(f, link, now), want, "process and general disagree");
            assert_eq!(*v, want, "batch and general disagree");
            if confirm_all && want.tracked() && want.frames == 1 {
                check_tuple_of(&cts[1], &one, want, f, link, now, extra & 64 != 0);
            }
        }
        burst.clear();
    };
    while let [flags, len, dt, tail @ ..] = rest {
        // A raw frame with flag `0x40` takes one more length byte, the high one.
        let (want, tail) = match tail.split_first() {
            Some((hi, t)) if flags & 0xc0 == 0x40 && *len != 0 => {
                (usize::from(*len) | usize::from(*hi) << 8, t)
            }
            _ => (usize::from(*len), tail),
        };
        let n = want.min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        if flags & 0x40 != 0 && n == 0 {
            // An edit between packets, the same on all three: remove one connection (by
            // either tuple), drop those of one protocol, or flush.
            run(&cts, &mut burst, burst_link, zone, now);
            if flags & 0x20 != 0 {
                let set = SYSCTLS[usize::from(*dt) % SYSCTLS.len()];
                let r = cts.each_mut().map(|ct| ct.set_sysctl(set));
                assert!(r.iter().all(|x| *x == r[0]), "{set}: trackers differ: {r:?}");
                continue;
            }
            let [reference, one, many] = &cts;
            let trackers = [reference, one, many];
            if flags & 0x10 != 0 {
                // A mark on one listed connection (by either tuple), which its expected
                // connections then get.
                let listed = table_views(one, now);
                if let Some(e) = listed.get(usize::from(*dt >> 3) % listed.len().max(1)) {
                    let t = if dt & 1 == 0 { e.orig } else { e.reply };
                    let mark = u32::from(*dt >> 1 & 3);
                    let was = trackers.map(|ct| ct.set_mark(&t, mark, now));
                    assert_eq!(was[1], Some(e.mark), "marked another entry");
                    assert!(was.iter().all(|w| *w == was[0]), "marks differ: {was:?}");
                    let got = trackers.map(|ct| ct.get(&t, now).map(|e| e.mark));
                    assert!(got.iter().all(|g| *g == Some(mark)), "mark not set: {got:?}");
                }
                continue;
            }
            match dt % 4 {
                3 => {
                    let gone = trackers.map(|ct| ct.flush(now));
                    assert!(gone.iter().all(|&g| g == gone[0]), "flushes differ: {gone:?}");
                }
                2 => {
                    let gone = trackers.map(|ct| ct.retain(now, |e| e.orig.proto != dt >> 2));
                    assert!(gone.iter().all(|&g| g == gone[0]), "filters differ: {gone:?}");
                }
                _ => {
                    let listed = table_views(one, now);
                    if let Some(e) = listed.get(usize::from(*dt >> 2) % listed.len().max(1)) {
                        let t = if dt & 1 == 0 { e.orig } else { e.reply };
                        let gone = trackers.map(|ct| ct.remove(&t, now));
                        // (Its count of expected connections may differ from the listing's:
                        // removal first sweeps the shard, which may take an expired child.)
                        let orig = gone[1].as_ref().map(|g| g.orig);
                        assert_eq!(orig, Some(e.orig), "removed another entry");
                        assert_eq!(gone[0], gone[1], "removals differ");
                        assert_eq!(gone[1], gone[2], "removals differ");
                    }
                }
            }
            continue;
        }
        let (frame, link) = if flags & 0x80 != 0 {
            let f = build(body, &last);
            last = f.clone();
            (f, LinkType::Raw)
        } else {
            let link = LINKS[usize::from(flags & 7) % LINKS.len()];
            let mut f = body.to_vec();
            if link == LinkType::Raw && flags & 8 == 0 {
                fix_lengths(&mut f);
            }
            (f, link)
        };
        // A new time (milliseconds, seconds or ten minutes per step) ends the burst.
        if *dt != 0 || link != burst_link {
            run(&cts, &mut burst, burst_link, zone, now);
            if zones {
                zone = u16::from(*dt % 3);
            }
            let unit: u64 =
                [1_000_000, 1_000_000_000, 600_000_000_000][usize::from(flags >> 4 & 3) % 3];
            now += u64::from(*dt) * unit;
            burst_link = link;
        }
        burst.push(frame);
    }
    run(&cts, &mut burst, burst_link, zone, now);
    let [reference, one, many] = &cts;
    story(one);
    assert_eq!(table(reference, now), table(one, now), "final tables differ");
    assert_eq!(table(one, now), table(many, now), "final tables differ");
    assert_eq!(reference.stats(), one.stats(), "counters differ");
    assert_eq!(one.stats(), many.stats(), "counters differ");
    // Expiry far ahead empties them all.
    let later = now + 1_000_000 * 1_000_000_000;
    for ct in [reference, one, many] {
        ct.expire(later);
        assert!(table(ct, later).is_empty());
        let mut pending = 0;
        ct.for_each_expectation(later, |_| pending += 1);
        assert_eq!(pending, 0, "expectations outlive their time");
    }
    story(one);
    assert!(open.is_empty(), "entries never destroyed: {open:?}");
    expected.retain(|_, n| *n > 0);
    assert!(expected.is_empty(), "expectations never gone: {expected:?}");
});
