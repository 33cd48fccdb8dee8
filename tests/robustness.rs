//! Properties: no frame, however malformed, makes the engine panic; the table never exceeds
//! its limit; every confirmed entry is listed and counted.

use ctrack::packet::{csum_add, csum_fold};
use ctrack::{Config, Conntrack, LinkType, State};
use proptest::prelude::*;

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Loopback,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
];

fn ipv4(src: u8, dst: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let tot = 20 + l4.len();
    let mut p = vec![
        0x45,
        0,
        (tot >> 8) as u8,
        tot as u8,
        0,
        0,
        0,
        0,
        64,
        proto,
        0,
        0,
        10,
        0,
        0,
        src,
        10,
        0,
        0,
        dst,
    ];
    let c = !csum_fold(csum_add(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 9, 0, 0, b'x']);
    u
}

fn quiet() -> Config {
    let mut c = Config::default();
    c.set_sysctl("nf_conntrack_checksum=0").unwrap();
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes under every link type: a verdict, never a panic.
    #[test]
    fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200), l in 0usize..5) {
        let ct = Conntrack::new(Config::default());
        let v = ct.process(&frame, LINKS[l], 1);
        prop_assert!(v.frames >= 1);
    }

    /// Valid packets with bytes flipped and tails cut: still no panic, and the valid packets
    /// around them keep their connection.
    #[test]
    fn mutated_packets_never_panic(
        flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..6),
        cut in 0usize..64,
        proto in prop::sample::select(vec![1u8, 6, 17, 47, 58, 132, 136, 253]),
        v6 in any::<bool>(),
    ) {
        let ct = Conntrack::new(quiet());
        let good = ipv4(1, 2, 17, &udp(1000, 53));
        let first = ct.process(&good, LinkType::Raw, 1);
        prop_assert_eq!(first.state, State::New);
        let mut l4 = vec![8u8, 0, 0, 0, 0, 1, 0, 1, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0,
                          10, 0, 0, 2, 10, 0, 0, 1, 0, 53, 3, 232, 0, 8, 0, 0];
        l4.resize(48, 0);
        let mut p = if v6 {
            let mut h = vec![0x60, 0, 0, 0, 0, l4.len() as u8, proto, 64];
            h.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
            h.extend_from_slice(&[0; 12]);
            h.extend_from_slice(&[0x20, 1, 0x0d, 0xb8]);
            h.extend_from_slice(&[0; 11]);
            h.push(2);
            h.extend_from_slice(&l4);
            h
        } else {
            ipv4(1, 2, proto, &l4)
        };
        for (at, b) in flips {
            if at < p.len() {
                p[at] = b;
            }
        }
        p.truncate(p.len().saturating_sub(cut));
        let _ = ct.process(&p, LinkType::Raw, 2);
        // The original flow is unharmed by whatever that was.
        let again = ct.process(&good, LinkType::Raw, 3);
        prop_assert!(again.tracked());
    }

    /// Random UDP traffic among a few hosts and ports into a tiny table: never above the
    /// limit, and the count never under what a listing shows (over it by the entries that
    /// have timed out and not been reaped yet), and equal to it once they have been.
    #[test]
    fn table_limit_and_count(
        pkts in proptest::collection::vec((1u8..6, 1u8..6, 0u16..4, 0u16..4, 0u64..3), 1..300),
        max in 1u32..24,
    ) {
        let mut cfg = quiet();
        cfg.set_sysctl(&format!("nf_conntrack_max={max}")).unwrap();
        cfg.shards = 4;
        let ct = Conntrack::new(cfg);
        let mut now = 1_000_000_000u64;
        for (s, d, sp, dp, step) in pkts {
            now += step * 500_000_000;
            let v = ct.process(&ipv4(s, d, 17, &udp(1000 + sp, 2000 + dp)), LinkType::Raw, now);
            prop_assert!(v.state != State::Invalid);
            prop_assert!(ct.count() <= max as usize, "count {} > max {}", ct.count(), max);
            let mut listed = 0;
            ct.for_each_entry(0, |_| listed += 1);
            prop_assert!(listed <= ct.count(), "listed {} > count {}", listed, ct.count());
        }
        // Every entry times out within 180 s, and the collector's next run reaps it.
        let later = now + 300 * 1_000_000_000;
        ct.expire(later);
        let mut listed = 0;
        ct.for_each_entry(later, |_| listed += 1);
        prop_assert_eq!((listed, ct.count()), (0, 0));
    }
}

#[test]
fn full_table_drops_when_everything_is_assured() {
    let mut cfg = quiet();
    cfg.set_sysctl("nf_conntrack_max=4").unwrap();
    cfg.shards = 1;
    let ct = Conntrack::new(cfg);
    let s = 1_000_000_000u64;
    // Four UDP streams made ASSURED (reply, then traffic after the 2-second mark).
    for i in 0..4u8 {
        ct.process(&ipv4(1, 10 + i, 17, &udp(1000, 53)), LinkType::Raw, s);
        ct.process(&ipv4(10 + i, 1, 17, &udp(53, 1000)), LinkType::Raw, s);
    }
    for i in 0..4u8 {
        let v = ct.process(&ipv4(1, 10 + i, 17, &udp(1000, 53)), LinkType::Raw, 4 * s);
        assert!(v.assured);
    }
    let v = ct.process(&ipv4(1, 99, 17, &udp(1000, 53)), LinkType::Raw, 5 * s);
    assert_eq!(v.state, State::Dropped);
    assert_eq!(ct.stats().drop, 1);
    assert_eq!(ct.count(), 4);
    // Once one of them expires (stream timeout 120 s), there is room again.
    let v = ct.process(&ipv4(1, 99, 17, &udp(1000, 53)), LinkType::Raw, 200 * s);
    assert_eq!(v.state, State::New);
}

/// A full table whose entries time out: the kernel counts them against the limit until
/// something meets them (a lookup or early drop walking their hash chain) or its collector
/// runs (once a minute over long-lived entries; modelled on the minute). Over the default
/// 262,144 chains, four entries are almost never met, so new connections are dropped until
/// the collector's run; when every tuple shares one chain, the first new connection's lookup
/// meets them all.
#[test]
fn timed_out_entries_hold_their_room_until_reaped() {
    let s = 1_000_000_000u64;
    for buckets in [None, Some(1)] {
        let mut cfg = quiet();
        cfg.set_sysctl("nf_conntrack_max=4").unwrap();
        if let Some(b) = buckets {
            cfg.set_sysctl(&format!("nf_conntrack_buckets={b}"))
                .unwrap();
        }
        cfg.shards = 1;
        let ct = Conntrack::new(cfg);
        // Four unanswered UDP flows at 1 s: they time out at 31 s.
        for i in 0..4u8 {
            let v = ct.process(&ipv4(1, 10 + i, 17, &udp(1000, 53)), LinkType::Raw, s);
            assert_eq!(v.state, State::New);
        }
        let fresh = |i: u8, at: u64| ct.process(&ipv4(2, i, 17, &udp(1000, 53)), LinkType::Raw, at);
        let mut listed = 0;
        ct.for_each_entry(40 * s, |_| listed += 1);
        assert_eq!((listed, ct.count()), (0, 4), "buckets {buckets:?}");
        if buckets.is_none() {
            // Nothing reaps them before the run at 60 s: every new flow is dropped.
            for (i, at) in [40, 50, 59].into_iter().enumerate() {
                let v = fresh(i as u8, at * s);
                assert_eq!(v.state, State::Dropped, "at {at} s");
            }
            assert_eq!(ct.count(), 4);
            assert_eq!(fresh(9, 60 * s).state, State::New);
            assert_eq!(ct.count(), 1);
        } else {
            // The first new flow's lookup reaps all four (one chain holds their tuples).
            assert_eq!(fresh(0, 40 * s).state, State::New);
            assert_eq!(ct.count(), 1);
        }
    }
}

/// The kernel's lookup of a connection walks its hash chain from the newest tuple, reaping
/// the timed-out entries it passes: with every tuple in one chain, a packet of the oldest
/// connection passes all the others' and reaps those that have timed out.
#[test]
fn lookups_reap_the_timed_out_entries_they_pass() {
    let s = 1_000_000_000u64;
    let mut cfg = quiet();
    cfg.set_sysctl("nf_conntrack_buckets=1").unwrap();
    cfg.shards = 1;
    let ct = Conntrack::new(cfg);
    // A UDP stream (120 s once ASSURED), then two unanswered flows (30 s).
    ct.process(&ipv4(1, 10, 17, &udp(1000, 53)), LinkType::Raw, s);
    ct.process(&ipv4(10, 1, 17, &udp(53, 1000)), LinkType::Raw, s);
    let v = ct.process(&ipv4(1, 10, 17, &udp(1000, 53)), LinkType::Raw, 4 * s);
    assert!(v.assured);
    for i in 0..2u8 {
        ct.process(&ipv4(1, 20 + i, 17, &udp(1000, 53)), LinkType::Raw, 4 * s);
    }
    assert_eq!(ct.count(), 3);
    // At 40 s the two have timed out but are still counted; the stream's next packet
    // passes them and reaps them.
    let v = ct.process(&ipv4(10, 1, 17, &udp(53, 1000)), LinkType::Raw, 40 * s);
    assert_eq!(v.to_string(), "established,reply+assured");
    assert_eq!(ct.count(), 1);
}

#[test]
fn early_drop_evicts_unassured_only() {
    let mut cfg = quiet();
    cfg.set_sysctl("nf_conntrack_max=8").unwrap();
    // One hash chain holding every entry, so that early drop always meets the unanswered
    // ones (with the default 262,144 chains it would almost never meet any of eight).
    cfg.set_sysctl("nf_conntrack_buckets=1").unwrap();
    cfg.shards = 1;
    let ct = Conntrack::new(cfg);
    let s = 1_000_000_000u64;
    for i in 0..4u8 {
        ct.process(&ipv4(2, 10 + i, 17, &udp(1000, 53)), LinkType::Raw, s);
        ct.process(&ipv4(10 + i, 2, 17, &udp(53, 1000)), LinkType::Raw, s);
    }
    for i in 0..4u8 {
        assert!(
            ct.process(&ipv4(2, 10 + i, 17, &udp(1000, 53)), LinkType::Raw, 4 * s)
                .assured
        );
    }
    // A flood of unanswered flows: the table stays full, the ASSURED four survive.
    for i in 0..200u16 {
        let v = ct.process(&ipv4(3, 30, 17, &udp(2000 + i, 80)), LinkType::Raw, 5 * s);
        assert_eq!(v.state, State::New, "flood packet {i}");
        assert!(ct.count() <= 8);
    }
    assert!(ct.stats().early_drop >= 192);
    for i in 0..4u8 {
        let v = ct.process(&ipv4(10 + i, 2, 17, &udp(53, 1000)), LinkType::Raw, 6 * s);
        assert_eq!(v.to_string(), "established,reply+assured");
    }
}
