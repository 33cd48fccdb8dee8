//! The table operations an embedder calls between packets: `get`, `remove`, `retain` and
//! `flush` (`conntrack -G`, `-D`, `-D` with a filter, `-F`), and `set_sysctl` (`sysctl -w`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ctrack::packet::{csum_add, csum_fold};

use ctrack::table::status;
use ctrack::{Config, Conntrack, EntryView, EventKind, L4, LinkType, NANOS_PER_SEC, State, Tuple};
use proptest::prelude::*;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = SYN | ACK;
const S: u64 = NANOS_PER_SEC;

fn tracker(events: usize) -> Conntrack {
    let mut cfg = Config {
        events,
        ..Config::default()
    };
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    Conntrack::new(cfg)
}

/// A raw IPv6 UDP datagram with 4 bytes of payload (checksum left zero: unchecked).
fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
    p
}

fn ports(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src,
        dst,
        proto,
        zone: 0,
        l4: L4::Ports {
            src: sport,
            dst: dport,
        },
    }
}

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// 10.0.0.1:40000 -> 10.0.0.2:80, through the handshake's first two segments.
fn half_open(ct: &Conntrack) -> (Tuple, Tuple) {
    let v = ct.process(&common::tcp(A, B, 40000, 80, SYN, 1, 0), LinkType::Raw, 0);
    assert_eq!(v.to_string(), "new,orig");
    let v = ct.process(
        &common::tcp(B, A, 80, 40000, SYNACK, 7, 2),
        LinkType::Raw,
        S,
    );
    assert_eq!(v.to_string(), "established,reply");
    (
        ports(v4(A), v4(B), 6, 40000, 80),
        ports(v4(B), v4(A), 6, 80, 40000),
    )
}

fn listing(ct: &Conntrack, now: u64) -> Vec<EntryView> {
    let mut all = Vec::new();
    ct.for_each_entry(now, |e| all.push(e));
    all.sort_by_key(|e| format!("{:?}", e.orig));
    all
}

#[test]
fn get_finds_a_connection_by_either_tuple_and_changes_nothing() {
    let ct = tracker(0);
    let (orig, reply) = half_open(&ct);
    let before = listing(&ct, 2 * S);
    let e = ct.get(&orig, 2 * S).expect("found by its original tuple");
    assert_eq!(ct.get(&reply, 2 * S), Some(e.clone()));
    assert_eq!((e.orig, e.reply), (orig, reply));
    assert_eq!(e.tcp_state, Some("SYN_RECV"));
    assert_eq!(e.seconds_left, 59);
    assert_eq!(vec![e], before);
    assert_eq!(listing(&ct, 2 * S), before);
    // Another port, another family, or a layer-4 part its protocol cannot have: no entry.
    let other = ports(v4(A), v4(B), 6, 40001, 80);
    assert_eq!(ct.get(&other, 2 * S), None);
    let six = ports(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        6,
        40000,
        80,
    );
    assert_eq!(ct.get(&six, 2 * S), None);
    let mixed = ports(v4(A), IpAddr::V6(Ipv6Addr::LOCALHOST), 6, 40000, 80);
    assert_eq!(ct.get(&mixed, 2 * S), None);
    let as_icmp = Tuple {
        l4: L4::Icmp {
            id: 40000,
            kind: 0,
            code: 80,
        },
        ..orig
    };
    assert_eq!(ct.get(&as_icmp, 2 * S), None);
    // SYN_RECV lasts 60 s: gone once that has passed, without a packet.
    assert!(ct.get(&orig, 60 * S).is_some());
    assert_eq!(ct.get(&orig, 62 * S), None);
}

#[test]
fn remove_takes_a_connection_out_and_reports_it_destroyed() {
    let ct = tracker(1 << 10);
    let (orig, reply) = half_open(&ct);
    let ack = common::tcp(A, B, 40000, 80, ACK, 2, 8);
    assert_eq!(
        ct.process(&ack, LinkType::Raw, 2 * S).to_string(),
        "established,orig+assured"
    );
    let udp_flow = common::udp(A, B, 5353, 53);
    ct.process(&udp_flow, LinkType::Raw, 2 * S);
    let listed = listing(&ct, 3 * S);
    let kinds: Vec<_> = ct.events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], EventKind::New);
    assert!(kinds[1..].iter().all(|&k| k != EventKind::Destroy));

    // By its reply tuple: the connection as it was.
    let gone = ct.remove(&reply, 3 * S).expect("removed");
    assert_eq!(Some(&gone), listed.iter().find(|e| e.orig == orig));
    assert_eq!(gone.tcp_state, Some("ESTABLISHED"));
    assert_eq!(ct.count(), 1);
    assert_eq!(ct.get(&orig, 3 * S), None);
    let ev = ct.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Destroy);
    assert_eq!((ev[0].entry.orig, ev[0].entry.reply), (orig, reply));
    assert_eq!(ev[0].time, 3 * S);
    // Nothing more goes: a second removal finds nothing and reports nothing.
    assert_eq!(ct.remove(&orig, 3 * S), None);
    assert!(ct.events().is_empty());
    assert_eq!(listing(&ct, 3 * S).len(), 1);

    // The connection's next segment finds no entry: picked up mid-stream, as by a tracker
    // that never saw it.
    let fresh = tracker(0);
    let expect = fresh.process(&ack, LinkType::Raw, 4 * S);
    let v = ct.process(&ack, LinkType::Raw, 4 * S);
    assert_eq!(v, expect);
    assert_eq!(v.state, State::New);
}

#[test]
fn remove_of_an_ipv6_connection() {
    let ct = tracker(0);
    let (a, b) = (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    );
    ct.process(&udp6(a.octets(), b.octets(), 1000, 2000), LinkType::Raw, 0);
    let v = ct.process(&udp6(b.octets(), a.octets(), 2000, 1000), LinkType::Raw, S);
    assert_eq!(v.to_string(), "established,reply");
    let reply = ports(IpAddr::V6(b), IpAddr::V6(a), 17, 2000, 1000);
    let gone = ct.remove(&reply, S).expect("removed");
    assert_eq!(gone.status & status::SEEN_REPLY, status::SEEN_REPLY);
    assert_eq!(ct.count(), 0);
    let again = ct.process(
        &udp6(b.octets(), a.octets(), 2000, 1000),
        LinkType::Raw,
        2 * S,
    );
    assert_eq!(again.to_string(), "new,orig");
}

#[test]
fn an_echo_is_found_and_removed_by_its_reply_tuple() {
    let ct = tracker(0);
    let mut ping = common::ipv4(A, B, 1, 8);
    ping.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let c = !csum_fold(csum_add(0, &ping[20..]));
    ping[22..24].copy_from_slice(&c.to_be_bytes());
    assert_eq!(ct.process(&ping, LinkType::Raw, 0).to_string(), "new,orig");
    let e = listing(&ct, S).pop().expect("the echo's entry");
    assert_eq!(
        e.reply.l4,
        L4::Icmp {
            id: 0x1234,
            kind: 0,
            code: 0
        }
    );
    assert_eq!(ct.get(&e.reply, S).as_ref(), Some(&e));
    assert_eq!(ct.remove(&e.reply, S), Some(e));
    assert_eq!(ct.count(), 0);
}

#[test]
fn retain_removes_what_the_filter_rejects() {
    let ct = tracker(1 << 12);
    for p in 0..50u16 {
        ct.process(
            &common::tcp(A, B, 1000 + p, 80, SYN, 1, 0),
            LinkType::Raw,
            0,
        );
        ct.process(&common::udp(A, B, 2000 + p, 53), LinkType::Raw, 0);
    }
    // A reply for half of the UDP flows.
    for p in 0..25u16 {
        ct.process(&common::udp(B, A, 53, 2000 + p), LinkType::Raw, S);
    }
    ct.events();
    let mut asked = 0;
    let removed = ct.retain(2 * S, |e| {
        asked += 1;
        e.orig.proto != 17 || e.status & status::SEEN_REPLY != 0
    });
    assert_eq!((asked, removed), (100, 25));
    assert_eq!(ct.count(), 75);
    let left = listing(&ct, 2 * S);
    assert_eq!(left.iter().filter(|e| e.orig.proto == 6).count(), 50);
    assert!(
        left.iter()
            .filter(|e| e.orig.proto == 17)
            .all(|e| e.status & status::SEEN_REPLY != 0)
    );
    let ev = ct.events();
    assert_eq!(ev.len(), 25);
    assert!(ev.iter().all(|e| e.kind == EventKind::Destroy));
    assert!(
        ev.iter()
            .all(|e| e.entry.orig.proto == 17 && e.entry.status & status::SEEN_REPLY == 0)
    );
    // Keeping everything removes nothing.
    assert_eq!(ct.retain(2 * S, |_| true), 0);
    assert_eq!(ct.count(), 75);
}

/// A capture's frames: time, link type, bytes.
type Frames = Vec<(u64, LinkType, Vec<u8>)>;

/// `pcaps/helpers/ftp-active.pcap` (the FTP helper on port 21) tracked up to the first packet
/// after which an expectation is pending: the tracker, the capture's frames and that index.
fn ftp_until_expecting() -> (Conntrack, Frames, usize) {
    ftp_until_expecting_with("")
}

/// [`ftp_until_expecting`] with more scenario arguments (`--sysctl NAME=VALUE ...`).
fn ftp_until_expecting_with(more: &str) -> (Conntrack, Frames, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/helpers");
    let args = std::fs::read_to_string(dir.join("ftp-active.args")).unwrap();
    let mut cfg = common::config(&format!("{args} {more}"));
    cfg.events = 1 << 12;
    let ct = Conntrack::new(cfg);
    let cap = ctrack::capture::load(&dir.join("ftp-active.pcap")).unwrap();
    let frames: Vec<_> = cap.packets().map(|(t, l, f)| (t, l, f.to_vec())).collect();
    for (i, (t, l, f)) in frames.iter().enumerate() {
        ct.process(f, *l, *t);
        let mut n = 0;
        ct.for_each_expectation(*t, |_| n += 1);
        if n > 0 {
            return (ct, frames, i);
        }
    }
    panic!("ftp-active.pcap never announces an expectation");
}

#[test]
fn removing_a_master_takes_its_expectations_with_it() {
    let (ct, frames, at) = ftp_until_expecting();
    let now = frames[at].0;
    ct.events();
    let announced = ct.expect_events();
    assert!(!announced.is_empty());
    let master = listing(&ct, now)
        .into_iter()
        .find(|e| e.helper == Some("ftp"))
        .expect("the control connection");
    let gone = ct.remove(&master.orig, now).expect("removed");
    assert_eq!(gone, master);
    let mut left = 0;
    ct.for_each_expectation(now, |_| left += 1);
    assert_eq!(left, 0);
    let ev = ct.expect_events();
    assert_eq!(ev.len(), announced.len());
    assert!(ev.iter().all(|e| e.kind == EventKind::Destroy));
    // The data connection the expectation was for is no longer RELATED.
    for (t, l, f) in &frames[at + 1..] {
        let v = ct.process(f, *l, *t);
        assert_ne!(v.state, State::Related, "{v}");
        assert!(!v.expected, "{v}");
    }
}

#[test]
fn flush_empties_the_table_and_the_expectations() {
    let (ct, frames, at) = ftp_until_expecting();
    let now = frames[at].0;
    ct.events();
    ct.expect_events();
    let live = listing(&ct, now);
    assert!(!live.is_empty());
    assert_eq!(ct.flush(now), live.len());
    assert_eq!(ct.count(), 0);
    assert!(listing(&ct, now).is_empty());
    let mut left = 0;
    ct.for_each_expectation(now, |_| left += 1);
    assert_eq!(left, 0);
    let destroyed: Vec<_> = ct.events().into_iter().map(|e| e.entry.orig).collect();
    assert_eq!(destroyed.len(), live.len());
    assert!(live.iter().all(|e| destroyed.contains(&e.orig)));
    assert!(!ct.expect_events().is_empty());
    assert_eq!(ct.flush(now), 0);
}

#[test]
fn flush_takes_the_expectations_of_a_master_already_swept_out() {
    // The control connection times out a second after its last packet; its expectation
    // (five minutes) outlives it.
    let (ct, frames, at) =
        ftp_until_expecting_with("--sysctl nf_conntrack_tcp_timeout_established=1");
    let later = frames[at].0 + 3 * S;
    // Packets of other flows into every shard sweep it out there, and only there: unlike
    // `expire`, which collects the whole table, that leaves its expectation pending (the
    // kernel's table keeps such a master until its garbage collection comes by).
    for p in 0..256 {
        ct.process(&common::udp(A, B, 10_000 + p, 53), LinkType::Raw, later);
    }
    assert!(listing(&ct, later).iter().all(|e| e.helper.is_none()));
    ct.expect_events();
    assert_eq!(ct.flush(later), 256);
    let ev = ct.expect_events();
    assert!(!ev.is_empty());
    assert!(ev.iter().all(|e| e.kind == EventKind::Destroy));
    // The data connection finds no expectation to take.
    for (_, l, f) in &frames[at + 1..] {
        let v = ct.process(f, *l, later);
        assert_ne!(v.state, State::Related, "{v}");
    }
}

#[test]
fn flush_takes_entries_expired_but_not_yet_swept() {
    let ct = tracker(1 << 10);
    ct.process(&common::udp(A, B, 1, 2), LinkType::Raw, 0);
    ct.events();
    // UDP's 30 s have passed, but within the wheel's tick nothing has swept it yet.
    let t = 30 * S + 1;
    assert_eq!(ct.get(&ports(v4(A), v4(B), 17, 1, 2), t), None);
    assert_eq!(ct.flush(t), 0);
    assert_eq!(ct.count(), 0);
    let ev = ct.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Destroy);
}

proptest! {
    /// Whichever connections are removed, the listing keeps exactly the others, each as it was,
    /// and the count follows.
    #[test]
    fn removal_leaves_exactly_the_others(
        flows in proptest::collection::btree_set(1u16..2000, 1..120),
        pick in proptest::collection::vec(any::<bool>(), 120),
        by_reply in any::<bool>(),
    ) {
        let ct = tracker(0);
        for &p in &flows {
            ct.process(&common::udp(A, B, p, 53), LinkType::Raw, 0);
        }
        let before = listing(&ct, S);
        let mut kept = Vec::new();
        for (e, &go) in before.iter().zip(pick.iter()) {
            if go {
                let t = if by_reply { e.reply } else { e.orig };
                let gone = ct.remove(&t, S);
                prop_assert_eq!(gone.as_ref(), Some(e));
            } else {
                kept.push(e.clone());
            }
        }
        kept.extend(before.iter().skip(pick.len()).cloned());
        prop_assert_eq!(listing(&ct, S), kept.clone());
        prop_assert_eq!(ct.count(), kept.len());
        for e in &kept {
            let found = ct.get(&e.orig, S);
            prop_assert_eq!(found.as_ref(), Some(e));
        }
    }
}

proptest! {
    /// Under any mix of packets, marks, removals and timeouts, a connection's mark is the last
    /// one set on it since it was made (0 before), whichever slot of the table it reuses.
    #[test]
    fn a_connection_has_the_last_mark_set_on_it_since_it_was_made(
        ops in proptest::collection::vec((0u8..4, 0u16..12, 0u32..4), 1..300),
    ) {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        cfg.shards = 1;
        let ct = Conntrack::new(cfg);
        let mut model = std::collections::HashMap::<u16, u32>::new();
        let mut now = S;
        for (op, port, mark) in ops {
            let t = ports(v4(A), v4(B), 17, 1000 + port, 53);
            match op {
                0 => {
                    // (A datagram before any reply is NEW whether or not it made the entry.)
                    let v = ct.process(&common::udp(A, B, 1000 + port, 53), LinkType::Raw, now);
                    prop_assert!(v.tracked());
                    model.entry(port).or_insert(0);
                }
                1 => {
                    let was = ct.set_mark(&t, mark, now);
                    prop_assert_eq!(was, model.get(&port).copied());
                    if let Some(m) = model.get_mut(&port) {
                        *m = mark;
                    }
                }
                2 => {
                    prop_assert_eq!(ct.remove(&t, now).map(|e| e.mark), model.remove(&port));
                }
                _ => {
                    // Past every UDP timeout: all go.
                    now += 200 * S;
                    ct.expire(now);
                    model.clear();
                }
            }
            now += 1_000;
            for p in 0..12 {
                let t = ports(v4(A), v4(B), 17, 1000 + p, 53);
                prop_assert_eq!(ct.get(&t, now).map(|e| e.mark), model.get(&p).copied());
            }
        }
    }
}

fn udp_port(ct: &Conntrack, from: [u8; 4], to: [u8; 4], sport: u16, dport: u16, t: u64) -> String {
    ct.process(&common::udp(from, to, sport, dport), LinkType::Raw, t)
        .to_string()
}

fn seconds_left(ct: &Conntrack, sport: u16, now: u64) -> Option<u64> {
    ct.get(&ports(v4(A), v4(B), 17, sport, 53), now)
        .map(|e| e.seconds_left)
}

#[test]
fn times_up_to_the_latest_a_capture_gives_are_kept_as_any_others() {
    // A capture's times reach `capture::MAX_TIME` (2262); a replay's deadlines past them
    // neither overflow nor end early.
    let ct = tracker(0);
    let start = ctrack::capture::MAX_TIME - 100 * S;
    assert_eq!(udp_port(&ct, A, B, 1000, 53, start), "new,orig");
    assert_eq!(
        udp_port(&ct, B, A, 53, 1000, start + S),
        "established,reply"
    );
    assert_eq!(seconds_left(&ct, 1000, start + 20 * S), Some(11));
    assert_eq!(seconds_left(&ct, 1000, start + 32 * S), None);
    assert_eq!(
        udp_port(&ct, A, B, 1001, 53, ctrack::capture::MAX_TIME),
        "new,orig"
    );
    assert_eq!(seconds_left(&ct, 1001, ctrack::capture::MAX_TIME), Some(30));
    // Port 1000's entry is reaped by now: by the last packet when both ports' entries share a
    // shard (which the table's random hash seed decides), else by this expiry.
    ct.expire(ctrack::capture::MAX_TIME);
    assert_eq!((ct.entries(), ct.count()), (1, 1));
    assert_eq!(seconds_left(&ct, 1001, ctrack::capture::MAX_TIME), Some(30));
}

#[test]
fn a_new_timeout_counts_from_the_next_packet() {
    let ct = tracker(0);
    for sport in [1000, 1001] {
        assert_eq!(udp_port(&ct, A, B, sport, 53, 0), "new,orig");
    }
    assert_eq!(seconds_left(&ct, 1000, 0), Some(30));
    ct.set_sysctl("net.netfilter.nf_conntrack_udp_timeout=10")
        .unwrap();
    // The entries keep their deadlines until a packet refreshes them.
    assert_eq!(seconds_left(&ct, 1000, S), Some(29));
    assert_eq!(udp_port(&ct, A, B, 1000, 53, S), "new,orig");
    assert_eq!(seconds_left(&ct, 1000, S), Some(10));
    assert_eq!(seconds_left(&ct, 1001, S), Some(29));
    assert_eq!(seconds_left(&ct, 1000, 12 * S), None);
    assert_eq!(seconds_left(&ct, 1001, 12 * S), Some(18));
    // A connection made from then on starts with the new timeout.
    assert_eq!(udp_port(&ct, A, B, 1002, 53, 12 * S), "new,orig");
    assert_eq!(seconds_left(&ct, 1002, 12 * S), Some(10));
}

#[test]
fn a_lower_limit_refuses_what_early_drop_cannot_make_room_for() {
    let ct = tracker(0);
    // Three UDP streams, ASSURED (a reply, then traffic past two seconds): early drop may not
    // take them. Time only moves forward: a shard's clock does not go back, and which streams
    // share a shard depends on the tracker's random hash seed.
    for (i, sport) in [1000, 1001, 1002].into_iter().enumerate() {
        let t0 = i as u64 * 4 * S;
        assert_eq!(udp_port(&ct, A, B, sport, 53, t0), "new,orig");
        assert_eq!(
            udp_port(&ct, B, A, 53, sport, t0 + S / 10),
            "established,reply"
        );
        assert_eq!(
            udp_port(&ct, A, B, sport, 53, t0 + 3 * S),
            "established,orig+assured"
        );
    }
    ct.set_sysctl("nf_conntrack_max=2").unwrap();
    assert_eq!(ct.count(), 3, "a lower limit removes nothing");
    assert_eq!(udp_port(&ct, A, B, 2000, 53, 12 * S), "dropped");
    assert_eq!(ct.count(), 3);
    assert_eq!(
        udp_port(&ct, A, B, 1000, 53, 12 * S),
        "established,orig+assured"
    );
    ct.set_sysctl("nf_conntrack_max=4").unwrap();
    assert_eq!(udp_port(&ct, A, B, 2000, 53, 13 * S), "new,orig");
    assert_eq!(ct.count(), 4);
}

#[test]
fn sysctls_change_while_other_threads_track() {
    // A tracker its workers share: a third thread turns the UDP timeout over and over while
    // two track streams of their own.
    let ct = tracker(0);
    let start = std::sync::Barrier::new(3);
    std::thread::scope(|scope| {
        for w in 0..2u16 {
            let (ct, start) = (&ct, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..3000u16 {
                    let sport = 2000 + w * 1000 + i % 300;
                    let v = udp_port(ct, A, B, sport, 53, u64::from(i) * 1_000_000);
                    assert!(v == "new,orig" || v == "established,orig", "{v}");
                }
            });
        }
        scope.spawn(|| {
            start.wait();
            for i in 0..300 {
                let t = if i % 2 == 0 { 10 } else { 40 };
                ct.set_sysctl(&format!("nf_conntrack_udp_timeout={t}"))
                    .unwrap();
            }
        });
    });
    assert_eq!(ct.count(), 600);
    // Every stream's deadline is its last packet's time plus one of the values (the first
    // one, 30, if the worker got there before any change).
    let end = 3 * S;
    for e in listing(&ct, end) {
        let L4::Ports { src, .. } = e.orig.l4 else {
            panic!("{e:?}")
        };
        let i = u64::from((src - 2000) % 1000);
        let last = (i + 2700) * 1_000_000;
        let left = e.seconds_left as i64;
        let due = |t: u64| ((last + t * S).saturating_sub(end) / S) as i64;
        assert!(
            [10, 30, 40].iter().any(|&t| (left - due(t)).abs() <= 1),
            "{e:?}"
        );
    }
    // Once a change has returned, every packet after it sees it, on any thread.
    ct.set_sysctl("nf_conntrack_udp_timeout=17").unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| udp_port(&ct, A, B, 9999, 53, 4 * S));
    });
    assert_eq!(seconds_left(&ct, 9999, 4 * S), Some(17));
    assert_eq!(ct.config().sysctl.nf_conntrack_udp_timeout, 17);
}

#[test]
fn checksums_are_checked_from_when_the_sysctl_says() {
    // The segment's checksum is left zero: wrong.
    let ct = tracker(0);
    let syn = |sport| common::tcp(A, B, sport, 80, SYN, 1, 0);
    assert_eq!(
        ct.process(&syn(1000), LinkType::Raw, 0).to_string(),
        "new,orig"
    );
    ct.set_sysctl("nf_conntrack_checksum=1").unwrap();
    assert_eq!(
        ct.process(&syn(1001), LinkType::Raw, S).to_string(),
        "invalid"
    );
    // In a burst as well as alone.
    let frames = [syn(1002), syn(1003)];
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let mut out = Vec::new();
    ct.process_batch(&refs, LinkType::Raw, 2 * S, &mut out);
    assert_eq!(
        out.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        ["invalid"; 2]
    );
    ct.set_sysctl("nf_conntrack_checksum=0").unwrap();
    assert_eq!(
        ct.process(&syn(1004), LinkType::Raw, 3 * S).to_string(),
        "new,orig"
    );
    assert_eq!(ct.count(), 2);
}

#[test]
fn settings_every_connection_is_shaped_by_are_fixed() {
    use ctrack::SysctlError;
    let ct = tracker(16);
    for (set, name) in [
        ("nf_conntrack_acct=1", "nf_conntrack_acct"),
        ("nf_conntrack_timestamp=1", "nf_conntrack_timestamp"),
        ("nf_conntrack_events=0", "nf_conntrack_events"),
    ] {
        assert_eq!(ct.set_sysctl(set), Err(SysctlError::Fixed(name)));
    }
    // The value they have already, or another that means the same (events 2 is "on" too).
    ct.set_sysctl("nf_conntrack_acct=0").unwrap();
    ct.set_sysctl("nf_conntrack_events=1").unwrap();
    assert!(matches!(
        ct.set_sysctl("nf_conntrack_udp_timeout=x"),
        Err(SysctlError::BadValue { .. })
    ));
    assert!(matches!(
        ct.set_sysctl("nf_conntrack_nonsense=1"),
        Err(SysctlError::UnknownName(_))
    ));
    let s = &ct.config().sysctl;
    assert_eq!((s.nf_conntrack_acct, s.nf_conntrack_events), (0, 1));
    assert_eq!(s.nf_conntrack_udp_timeout, 30);
    // Still tracking, and still reporting.
    assert_eq!(udp_port(&ct, A, B, 1000, 53, 0), "new,orig");
    assert_eq!(ct.events().len(), 1);
}

/// Conntrack zones between packets: one tuple in zones 0 and 3 is two connections, each found,
/// listed, reported and removed by its own zone's tuple; a worker split (`queue_of`) gives both
/// directions of a zoned connection one queue.
#[test]
fn zones_keep_one_tuple_as_two_connections() {
    let ct = tracker(64);
    let c6 = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let s6 = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let q = udp6(c6, s6, 40000, 53);
    let a = udp6(s6, c6, 53, 40000);
    let zone3 = ct.in_zone(3);
    assert_eq!(zone3.zone(), 3);
    assert_eq!(zone3.process(&q, LinkType::Raw, S).to_string(), "new,orig");
    // The answer in zone 0 is a connection of its own there; in zone 3 it is the reply.
    assert_eq!(ct.process(&a, LinkType::Raw, S).to_string(), "new,orig");
    assert_eq!(
        zone3.process(&a, LinkType::Raw, S).to_string(),
        "established,reply"
    );
    assert_eq!(ct.count(), 2);
    for queues in [2, 3, 8] {
        assert_eq!(
            zone3.queue_of(&q, LinkType::Raw, queues),
            zone3.queue_of(&a, LinkType::Raw, queues)
        );
    }
    let events: Vec<String> = ct.events().iter().map(|e| e.line()).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    let events: Vec<&str> = events.iter().map(|e| e.trim_start()).collect();
    assert!(
        events[0].starts_with("[NEW] udp") && events[0].ends_with(" zone=3"),
        "{events:?}"
    );
    assert!(
        !events[1].contains("zone="),
        "zone 0 is not shown: {}",
        events[1]
    );
    assert!(events[2].starts_with("[UPDATE] udp") && events[2].ends_with(" zone=3"));
    // `process_ip` takes the same zone: the query again is zone 3's connection, not zone 0's.
    assert_eq!(zone3.process_ip(&q, S).to_string(), "established,orig");
    assert_eq!(ct.process_ip(&q, S).to_string(), "established,reply");

    let mut t = ports(
        IpAddr::V6(Ipv6Addr::from(c6)),
        IpAddr::V6(Ipv6Addr::from(s6)),
        17,
        40000,
        53,
    );
    t.zone = 3;
    let found = ct.get(&t, S).expect("zone 3's connection");
    assert!(
        found.proc_line().contains(" zone=3 "),
        "{}",
        found.proc_line()
    );
    assert_eq!(found.status & status::SEEN_REPLY, status::SEEN_REPLY);
    t.zone = 4;
    assert!(ct.get(&t, S).is_none(), "nothing in zone 4");
    t.zone = 3;
    assert!(ct.remove(&t, S).is_some());
    assert_eq!(ct.count(), 1);
    let left = listing(&ct, S);
    assert_eq!(left.len(), 1);
    assert!(left[0].proc_line().contains(" zone=0 "));
    // Zone 3 starts afresh; zone 0's connection was not touched.
    assert_eq!(
        zone3.process(&a, LinkType::Raw, 2 * S).to_string(),
        "new,orig"
    );
    assert_eq!(
        ct.process(&q, LinkType::Raw, 2 * S).to_string(),
        "established,reply"
    );
}

#[test]
fn a_mark_shows_in_listings_and_events_as_the_kernel_reports_it() {
    let ct = tracker(64);
    let (c, s) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let q = common::udp(c, s, 41000, 53);
    let a = common::udp(s, c, 53, 41000);
    let orig = ports(IpAddr::from(c), IpAddr::from(s), 17, 41000, 53);
    let reply = ports(IpAddr::from(s), IpAddr::from(c), 17, 53, 41000);
    let lines = |ct: &Conntrack| -> Vec<String> {
        ct.events()
            .iter()
            .map(|e| e.line().trim_start().to_string())
            .collect()
    };
    assert_eq!(ct.set_mark(&orig, 1, S), None, "no connection yet");
    // Set right after its packet: the packet's [NEW] shows it.
    ct.process(&q, LinkType::Raw, S);
    assert_eq!(ct.set_mark(&orig, 5, S), Some(0));
    let ev = lines(&ct);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].starts_with("[NEW] udp") && ev[0].ends_with(" mark=5"),
        "{ev:?}"
    );
    // The same mark again reports nothing; by the reply tuple, after a packet that reported
    // nothing, the change is an [UPDATE] of its own.
    assert_eq!(ct.set_mark(&orig, 5, S), Some(5));
    ct.process(&q, LinkType::Raw, 2 * S);
    assert!(lines(&ct).is_empty());
    assert_eq!(ct.set_mark(&reply, 6, 2 * S), Some(5));
    let ev = lines(&ct);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].starts_with("[UPDATE] udp")
            && ev[0]
                .ends_with(" [UNREPLIED] src=10.9.0.2 dst=10.9.0.1 sport=53 dport=41000 mark=6"),
        "{ev:?}"
    );
    // The reply's own [UPDATE] takes a mark set right after it, even 0, which it then shows.
    ct.process(&a, LinkType::Raw, 3 * S);
    assert_eq!(ct.set_mark(&orig, 0, 3 * S), Some(6));
    let ev = lines(&ct);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].starts_with("[UPDATE] udp") && ev[0].ends_with(" mark=0"),
        "{ev:?}"
    );
    // After a batch, a mark is an event of its own, not the batch's last packet's.
    let mut out = Vec::new();
    ct.process_batch(&[&q, &a], LinkType::Raw, 4 * S, &mut out);
    assert_eq!(ct.set_mark(&orig, 7, 4 * S), Some(0));
    let ev = lines(&ct);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        ev[0].ends_with(" [ASSURED]"),
        "the batch's, unmarked: {ev:?}"
    );
    assert!(
        ev[1].starts_with("[UPDATE] udp") && ev[1].ends_with(" [ASSURED] mark=7"),
        "{ev:?}"
    );
    let e = ct.get(&reply, 4 * S).unwrap();
    assert_eq!(e.mark, 7);
    assert!(
        e.proc_line().contains(" mark=7 zone=0 "),
        "{}",
        e.proc_line()
    );
    // A zone's connection of the same tuple is another connection, with a mark of its own.
    ct.in_zone(2).process(&q, LinkType::Raw, 4 * S);
    let mut zoned = orig;
    zoned.zone = 2;
    assert_eq!(ct.set_mark(&zoned, 8, 4 * S), Some(0));
    assert_eq!(ct.get(&orig, 4 * S).unwrap().mark, 7);
    assert_eq!(ct.get(&zoned, 4 * S).unwrap().mark, 8);
    let ev = lines(&ct);
    assert!(
        ev[0].starts_with("[NEW] udp") && ev[0].ends_with(" mark=8 zone=2"),
        "{ev:?}"
    );
    // Timed out, it leaves with its mark.
    assert_eq!(ct.expire(200 * S), 2);
    let gone = lines(&ct);
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(
        gone.iter().all(|l| l.starts_with("[DESTROY] udp")),
        "{gone:?}"
    );
    assert!(
        gone.iter().any(|l| l.ends_with(" [ASSURED] mark=7")),
        "{gone:?}"
    );
    assert!(
        gone.iter().any(|l| l.ends_with(" mark=8 zone=2")),
        "{gone:?}"
    );
    assert_eq!(ct.set_mark(&orig, 1, 200 * S), None, "gone");
}

#[test]
fn tuple_of_gives_the_tuple_a_packet_finds_its_connection_by() {
    let ct = tracker(0);
    let (c, s) = ([10, 7, 0, 1], [10, 7, 0, 2]);
    let with = |proto: u8, l4: &[u8]| {
        let mut p = common::ipv4(c, s, proto, l4.len() as u16);
        p.extend_from_slice(l4);
        p
    };
    let echo = with(1, &[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let gre = with(47, &[0, 0, 0x08, 0]);
    let other = with(253, b"experimental");
    let frames = [
        common::tcp(c, s, 40000, 80, 0x02, 1, 0),
        common::udp(c, s, 40001, 53),
        echo.clone(),
        gre,
        other,
        udp6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            40002,
            53,
        ),
    ];
    for f in &frames {
        let v = ct.process(f, LinkType::Raw, S);
        assert!(v.tracked(), "{v}");
        let t = ct.tuple_of(f, LinkType::Raw).expect("a tuple");
        assert_eq!(ct.get(&t, S).map(|e| e.orig), Some(t), "{t:?}");
    }
    assert_eq!(
        ct.tuple_of(&echo, LinkType::Raw).unwrap().l4,
        L4::Icmp {
            id: 0x1234,
            kind: 8,
            code: 0
        }
    );
    // The echo reply finds the request's connection by its own tuple.
    let reply = {
        let mut p = common::ipv4(s, c, 1, 8);
        p.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]);
        p
    };
    let t = ct.tuple_of(&reply, LinkType::Raw).unwrap();
    assert_eq!(
        ct.get(&t, S).unwrap().orig,
        ct.tuple_of(&echo, LinkType::Raw).unwrap()
    );
    // In a zone: the same tuple with the zone's number.
    assert_eq!(
        ct.in_zone(4).tuple_of(&echo, LinkType::Raw).unwrap().zone,
        4
    );
    // None: no tuple to give.
    let advert = with(1, &[9, 0, 0, 0, 0, 0, 0, 0]);
    let short = with(17, &[0x9c]);
    let v6_icmp_in_v4 = with(58, &[128, 0, 0, 0, 0, 1, 0, 1]);
    let mut later_fragment = common::udp(c, s, 40003, 53);
    later_fragment[6..8].copy_from_slice(&[0, 1]);
    let sum = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &{
        let mut h = later_fragment[..20].to_vec();
        h[10..12].copy_from_slice(&[0, 0]);
        h
    }));
    later_fragment[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut first_fragment = later_fragment.clone();
    first_fragment[6..8].copy_from_slice(&[0x20, 0]);
    let sum = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &{
        let mut h = first_fragment[..20].to_vec();
        h[10..12].copy_from_slice(&[0, 0]);
        h
    }));
    first_fragment[10..12].copy_from_slice(&sum.to_be_bytes());
    for (what, f) in [
        ("router advertisement", &advert),
        ("UDP without its ports", &short),
        ("ICMPv6 in IPv4", &v6_icmp_in_v4),
        ("a fragment past the first", &later_fragment),
    ] {
        assert_eq!(ct.tuple_of(f, LinkType::Raw), None, "{what}");
    }
    assert_eq!(
        ct.tuple_of(&first_fragment, LinkType::Raw).unwrap().l4,
        L4::Ports {
            src: 40003,
            dst: 53
        }
    );
    assert_eq!(ct.tuple_of(&[0u8; 10], LinkType::Ethernet), None);
}

#[test]
fn a_timeout_policy_times_the_connections_its_rule_gives_it_to() {
    let mut cfg = Config {
        events: 64,
        ..Config::default()
    };
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    // Any UDP: 10 s unanswered. Port 53: 4 s unanswered, 9 s answered (the later rule wins).
    cfg.add_timeout_rule("udp:unreplied=10").unwrap();
    cfg.add_timeout_rule("udp:53:unreplied=4,replied=9")
        .unwrap();
    cfg.add_timeout_rule("tcp:22:established=50").unwrap();
    assert!(cfg.add_timeout_rule("udp:53:established=4").is_err());
    let ct = Conntrack::new(cfg);
    let (c, s) = ([10, 9, 1, 1], [10, 9, 1, 2]);
    let dns = ports(IpAddr::from(c), IpAddr::from(s), 17, 41000, 53);
    let other = ports(IpAddr::from(c), IpAddr::from(s), 17, 41001, 123);
    let left = |t: &Tuple, now| ct.get(t, now).map(|e| e.seconds_left);
    ct.process(&common::udp(c, s, 41000, 53), LinkType::Raw, S);
    ct.process(&common::udp(c, s, 41001, 123), LinkType::Raw, S);
    assert_eq!(left(&dns, S), Some(4));
    assert_eq!(left(&other, S), Some(10));
    // The [NEW] event shows the policy's first timeout, as the kernel's does.
    let ev: Vec<String> = ct.events().iter().map(|e| e.line()).collect();
    assert!(ev[0].contains("[NEW] udp      17 4 "), "{ev:?}");
    assert!(ev[1].contains("[NEW] udp      17 10 "), "{ev:?}");
    // A sysctl changed later changes no policy's timeouts, only those of connections without.
    ct.set_sysctl("nf_conntrack_udp_timeout=20").unwrap();
    ct.process(&common::udp(c, s, 41000, 53), LinkType::Raw, 2 * S);
    assert_eq!(left(&dns, 2 * S), Some(4));
    // Answered, then past the two-second stream delay: the policy's 9 s, ASSURED.
    ct.process(&common::udp(s, c, 53, 41000), LinkType::Raw, 3 * S);
    ct.process(&common::udp(c, s, 41000, 53), LinkType::Raw, 4 * S);
    let e = ct.get(&dns, 4 * S).unwrap();
    assert_eq!((e.seconds_left, e.status & status::ASSURED != 0), (9, true));
    // Through the batch, and with the tuple reversed: the same entry, the same policy.
    let mut out = Vec::new();
    ct.process_batch(
        &[&common::udp(s, c, 53, 41000), &common::udp(c, s, 41000, 53)],
        LinkType::Raw,
        5 * S,
        &mut out,
    );
    assert_eq!(left(&dns, 5 * S), Some(9));
    // Gone 9 s after its last packet; the other one 10 s after its own.
    assert_eq!(left(&dns, 14 * S + 1), None);
    assert_eq!(left(&other, 11 * S + 1), None);
    // A connection opened from port 53 is not the port's rule's (its first packet goes
    // elsewhere) but any UDP's, and an answer to port 53 later does not give it the port's
    // policy (4 s): it keeps its own (10 s).
    let back = ports(IpAddr::from(s), IpAddr::from(c), 17, 53, 41002);
    ct.process(&common::udp(s, c, 53, 41002), LinkType::Raw, 20 * S);
    ct.process(&common::udp(c, s, 41002, 53), LinkType::Raw, 20 * S);
    assert_eq!(left(&back, 20 * S), Some(10));
    // TCP by its state: established for 50 s on port 22, once its handshake is done.
    let ssh = ports(IpAddr::from(c), IpAddr::from(s), 6, 41003, 22);
    for (p, t) in [
        (common::tcp(c, s, 41003, 22, 0x02, 1, 0), 30),
        (common::tcp(s, c, 22, 41003, 0x12, 9, 2), 30),
        (common::tcp(c, s, 41003, 22, 0x10, 2, 10), 31),
    ] {
        ct.process(&p, LinkType::Raw, t * S);
    }
    let e = ct.get(&ssh, 31 * S).unwrap();
    assert_eq!((e.tcp_state, e.seconds_left), (Some("ESTABLISHED"), 50));
}
