//! Memory running out: a new connection whose entry cannot be allocated is dropped and
//! counted (as the kernel drops a packet whose allocation fails), nothing already tracked is
//! lost, and the process neither aborts nor panics. The allocator of this test binary refuses
//! whatever would take it past a limit the test sets. (On Linux a shard's slab past 256 KiB
//! lives in a mapping of its own, outside the allocator: the flood then runs out in the index
//! and the small shards' slabs, which the allocator still hands out.)

use std::alloc::System;

use cap::Cap;
mod common;

use common::{captures, config, tcp};
use ctrack::packet::{csum_add, csum_fold};
use ctrack::{Config, Conntrack, LinkType, State};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SERVER: [u8; 4] = [192, 0, 2, 1];

fn client(i: u32) -> [u8; 4] {
    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

/// Both scenarios in one test: the allocator's limit is global, and a second test running
/// beside the first would meet it.
#[test]
fn tracking_within_a_memory_limit() {
    new_connections_are_dropped_when_memory_runs_out();
    a_full_table_under_a_flood_allocates_nothing();
    entries_expire_without_memory();
    a_first_burst_plans_without_memory();
    helpers_refuse_what_memory_cannot_hold();
    fragments_wait_for_memory();
    every_capture_under_random_limits();
}

fn new_connections_are_dropped_when_memory_runs_out() {
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    // No table limit: only memory stops the table from growing.
    cfg.set_sysctl("nf_conntrack_max=0").unwrap();
    let ct = Conntrack::with_seed(cfg, 0x5eed);
    let now = 1_000_000_000_000u64;
    for i in 0..200 {
        let c = client(i);
        ct.process(
            &tcp(c, SERVER, 40000, 443, SYN, 1000, 0),
            LinkType::Raw,
            now,
        );
        ct.process(
            &tcp(SERVER, c, 443, 40000, SYN | ACK, 5000, 1001),
            LinkType::Raw,
            now,
        );
        let v = ct.process(
            &tcp(c, SERVER, 40000, 443, ACK, 1001, 5001),
            LinkType::Raw,
            now,
        );
        assert_eq!(v.to_string(), "established,orig+assured");
    }

    ALLOC.set_limit(ALLOC.allocated() + (8 << 20)).unwrap();
    // A reservation the memory cannot hold is an error, and changes nothing tracked.
    assert!(ct.reserve(50_000_000, false).is_err());
    assert_eq!(ct.count(), 200);

    // A flood of new connections until the table cannot grow any more.
    let (mut news, mut drops) = (0usize, 0u64);
    for n in 0..2_000_000u32 {
        let src = [172, 16 + (n >> 16) as u8, (n >> 8) as u8, n as u8];
        let v = ct.process(&tcp(src, SERVER, 1024, 443, SYN, n, 0), LinkType::Raw, now);
        match v.state {
            State::New => news += 1,
            State::Dropped => drops += 1,
            s => panic!("SYN {n}: {s:?}"),
        }
        if drops >= 10_000 {
            break;
        }
    }
    assert!(
        drops >= 10_000,
        "the flood never ran out of memory ({news} new)"
    );
    assert!(news > 10_000, "only {news} connections fitted in 8 MiB");
    assert_eq!(ct.stats().drop, drops);
    assert_eq!(ct.count(), 200 + news);
    assert!(ALLOC.allocated() <= ALLOC.limit());

    // Every connection tracked before is still there, and so are the flood's.
    for i in 0..200 {
        let c = client(i);
        let v = ct.process(
            &tcp(c, SERVER, 40000, 443, ACK, 1001, 5001),
            LinkType::Raw,
            now,
        );
        assert_eq!(v.to_string(), "established,orig+assured", "client {i}");
    }
    let first = tcp([172, 16, 0, 0], SERVER, 1024, 443, SYN, 0, 0);
    assert_eq!(ct.process(&first, LinkType::Raw, now).state, State::New);
    // The batch path under the same limit: the same answers.
    let frames: Vec<Vec<u8>> = (0..200)
        .map(|i| tcp(client(i), SERVER, 40000, 443, ACK, 1001, 5001))
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let mut out = Vec::with_capacity(refs.len());
    ct.process_batch(&refs, LinkType::Raw, now, &mut out);
    assert!(
        out.iter()
            .all(|v| v.to_string() == "established,orig+assured")
    );

    // With memory back, new connections are tracked again.
    ALLOC.set_limit(usize::MAX).unwrap();
    let late = tcp([198, 51, 100, 7], SERVER, 1024, 443, SYN, 7, 0);
    assert_eq!(ct.process(&late, LinkType::Raw, now).state, State::New);
    assert_eq!(ct.count(), 200 + news + 1);
}

/// A full table under a SYN flood evicts and inserts for every packet: with not one byte of
/// memory to spare, it decides exactly what it decides with memory to spare.
fn a_full_table_under_a_flood_allocates_nothing() {
    let engine = || {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        cfg.set_sysctl("nf_conntrack_max=1000").unwrap();
        // As many hash buckets as the limit, the kernel's default relation, so that early
        // drop finds the unreplied entries it evicts (see `Conntrack::early_drop`).
        cfg.set_sysctl("nf_conntrack_buckets=1000").unwrap();
        // One shard with room for four times the limit: with several shards, or an index
        // near its load limit, the table may grow as the flood churns (a shard's share
        // changes, an index wears out), which a memory limit rightly refuses.
        cfg.shards = 1;
        let ct = Conntrack::with_seed(cfg, 0x5eed);
        ct.reserve(4000, false).unwrap();
        ct
    };
    let now = 2_000_000_000_000u64;
    let syn = |n: u32| {
        let src = [172, 20 + (n >> 16) as u8, (n >> 8) as u8, n as u8];
        tcp(src, SERVER, 2048, 443, SYN, n, 0)
    };
    let flood: Vec<Vec<u8>> = (1000..51_000).map(syn).collect();
    let run = |ct: &Conntrack, spare: bool, out: &mut Vec<State>| {
        for n in 0..1000 {
            assert_eq!(ct.process(&syn(n), LinkType::Raw, now).state, State::New);
        }
        if !spare {
            ALLOC.set_limit(ALLOC.allocated()).unwrap();
        }
        out.extend(
            flood
                .iter()
                .map(|f| ct.process(f, LinkType::Raw, now).state),
        );
        ALLOC.set_limit(usize::MAX).unwrap();
    };
    let (free, tight) = (engine(), engine());
    let mut with_room = Vec::with_capacity(flood.len());
    run(&free, true, &mut with_room);
    let mut without = Vec::with_capacity(flood.len());
    run(&tight, false, &mut without);
    assert_eq!(with_room, without);
    found_room(&without);
    assert_eq!(tight.count(), free.count());
    assert!(tight.count() <= 1000);
    assert_eq!(tight.stats().early_drop, free.stats().early_drop);

    // Without the room reserved, the churn wears the index out, and the shard would rebuild
    // it at twice the size: with no memory for that, the flood goes on in the worn index.
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    cfg.set_sysctl("nf_conntrack_max=1000").unwrap();
    cfg.set_sysctl("nf_conntrack_buckets=1000").unwrap();
    cfg.shards = 1;
    let worn = Conntrack::with_seed(cfg, 0x5eed);
    let mut states = Vec::with_capacity(flood.len());
    run(&worn, false, &mut states);
    found_room(&states);
    assert!(worn.count() <= 1000);
}

/// A flood of 50,000 SYNs into a full table: each one new (it made room by early drop) or
/// dropped, and most of them new.
fn found_room(states: &[State]) {
    let news = states.iter().filter(|s| **s == State::New).count();
    assert!(news > 10_000, "only {news} of 50,000 SYNs found room");
    assert!(
        states
            .iter()
            .all(|s| matches!(s, State::New | State::Dropped))
    );
}

/// Time passing needs no memory: entries come down the timer wheel's levels as their deadline
/// nears, into levels no entry of their shard used before (whose slot heads the wheel then
/// allocates), and with not one byte to spare they still expire on time.
fn entries_expire_without_memory() {
    const SEC: u64 = 1_000_000_000;
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    let ct = Conntrack::with_seed(cfg, 0x5eed);
    let now = 3_000_000_000_000u64;
    // SYN_SENT: 120 s, far enough that every shard files them two levels up.
    for n in 0..2000u32 {
        let src = [172, 30, (n >> 8) as u8, n as u8];
        let v = ct.process(&tcp(src, SERVER, 3000, 443, SYN, n, 0), LinkType::Raw, now);
        assert_eq!(v.state, State::New);
    }
    let before = ct.memory();
    ALLOC.set_limit(ALLOC.allocated()).unwrap();
    let mut t = now;
    while t < now + 119 * SEC {
        t += SEC / 4;
        assert_eq!(ct.expire(t), 0, "expired early, at {} s", (t - now) / SEC);
    }
    assert_eq!(ct.count(), 2000);
    // Due at 120 s, examined within a tick (about 17 ms) of it.
    assert_eq!(ct.expire(now + 120 * SEC + SEC / 20), 2000);
    // Out of the table, but counted against the limit until the kernel's collector would
    // have reaped them, at its next run (on the minute), which needs no memory either.
    assert_eq!(ct.count(), 2000);
    assert_eq!(ct.expire(now + 180 * SEC), 0);
    assert_eq!(ct.count(), 0);
    assert!(ALLOC.allocated() <= ALLOC.limit());
    ALLOC.set_limit(usize::MAX).unwrap();
    assert!(ct.memory() <= before);
}

/// The batch path's planning buffers are kept per thread and made on a thread's first sorted
/// burst: with not one byte to spare then, the burst is tracked frame by frame, with the
/// verdicts the sorted path gives, and the next burst, with memory back, is sorted.
fn a_first_burst_plans_without_memory() {
    let engine = || {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        // Every burst sorted by shard, however small the table.
        cfg.in_order_entries = 0;
        Conntrack::with_seed(cfg, 0x5eed)
    };
    let now = 4_000_000_000_000u64;
    let burst = |n: u32| -> Vec<Vec<u8>> {
        (0..200u32)
            .flat_map(|i| {
                let c = [172, 40, n as u8, i as u8];
                [
                    tcp(c, SERVER, 5000, 443, SYN, i, 0),
                    tcp(SERVER, c, 443, 5000, SYN | ACK, 9000, i + 1),
                    tcp(c, SERVER, 5000, 443, ACK, i + 1, 9001),
                ]
            })
            .collect()
    };
    let (first, second) = (burst(1), burst(2));
    let (first, second) = (refs(&first), refs(&second));

    // The same bursts with memory to spare, on this thread.
    let free = engine();
    let mut want = (Vec::new(), Vec::new());
    free.process_batch(&first, LinkType::Raw, now, &mut want.0);
    free.process_batch(&second, LinkType::Raw, now, &mut want.1);
    assert!(want.0.iter().all(|v| v.state != State::Invalid));

    let tight = engine();
    // A thread of its own: this one has its buffers already.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = (
                Vec::with_capacity(first.len()),
                Vec::with_capacity(second.len()),
            );
            // Room for the entries, taken before the limit: only the burst's own buffers are
            // left to allocate.
            tight.reserve(1000, false).unwrap();
            ALLOC.set_limit(ALLOC.allocated()).unwrap();
            tight.process_batch(&first, LinkType::Raw, now, &mut out.0);
            ALLOC.set_limit(usize::MAX).unwrap();
            tight.process_batch(&second, LinkType::Raw, now, &mut out.1);
            assert_eq!(out, want);
        });
    });
    assert_eq!(tight.count(), free.count());
    assert_eq!(tight.count(), 400);
}

fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(|f| &f[..]).collect()
}

/// `tcp` carrying `payload`, its IPv4 lengths and header checksum made right.
fn tcp_with(frame: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    let mut p = frame;
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = !csum_fold(csum_add(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// With not one byte to spare, a helper's announcement is dropped (the kernel drops a packet
/// whose expectation it cannot allocate) and so is a new connection that would take an
/// expectation, which stays for the retransmission; a master that ends with expectations
/// pending is swept out with them. With memory back, the retransmissions go through.
fn helpers_refuse_what_memory_cannot_hold() {
    const PSH_ACK: u8 = 0x18;
    const RST: u8 = 0x04;
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    cfg.helpers = ctrack_helpers::parse_assignments(["ftp:tcp:21"]).unwrap();
    cfg.shards = 1;
    let ct = Conntrack::with_seed(cfg, 0x5eed);
    ct.reserve(1000, false).unwrap();
    let now = 5_000_000_000_000u64;
    let state = |f: &[u8]| ct.process(f, LinkType::Raw, now).to_string();
    let expectations = || {
        let mut n = 0;
        ct.for_each_expectation(now, |_| n += 1);
        n
    };
    // Two FTP control connections, each past its banner (the helper's state is made then).
    let control = |c: [u8; 4], port: u16| {
        assert_eq!(state(&tcp(c, SERVER, port, 21, SYN, 100, 0)), "new,orig");
        state(&tcp(SERVER, c, 21, port, SYN | ACK, 700, 101));
        state(&tcp(c, SERVER, port, 21, ACK, 101, 701));
        let banner = tcp_with(tcp(SERVER, c, 21, port, PSH_ACK, 701, 101), b"220 hi\r\n");
        assert_eq!(state(&banner), "established,reply+assured");
    };
    let (c1, c2) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    control(c1, 41000);
    control(c2, 42000);
    // 192.0.2.1 port 50000.
    let pasv = |c: [u8; 4], port: u16| {
        let m = b"227 Entering Passive Mode (192,0,2,1,195,80).\r\n";
        tcp_with(tcp(SERVER, c, 21, port, PSH_ACK, 709, 101), m)
    };

    // The frame is built first, the verdict read after: only the engine runs at the limit.
    let tight = |f: &[u8]| {
        ALLOC.set_limit(ALLOC.allocated()).unwrap();
        let v = ct.process(f, LinkType::Raw, now);
        ALLOC.set_limit(usize::MAX).unwrap();
        v.to_string()
    };
    assert_eq!(tight(&pasv(c1, 41000)), "dropped");
    assert_eq!(expectations(), 0);
    assert_eq!(state(&pasv(c1, 41000)), "established,reply+assured");
    assert_eq!(expectations(), 1);

    let data = tcp(c1, SERVER, 41001, 50000, SYN, 5, 0);
    assert_eq!(tight(&data), "dropped");
    assert_eq!(expectations(), 1);
    assert_eq!(state(&data), "related,orig+expected");
    assert_eq!(expectations(), 0);

    // The second master announces, then is reset: a packet ten seconds after its close has
    // its shard (the only one) sweep it out with its expectation pending, which then goes
    // with it instead of staying as an orphan's.
    assert_eq!(state(&pasv(c2, 42000)), "established,reply+assured");
    assert_eq!(
        state(&tcp(c2, SERVER, 42000, 21, RST, 101, 0)),
        "established,orig+assured"
    );
    assert_eq!(expectations(), 1);
    let listed = |at: u64| {
        let mut n = 0;
        ct.for_each_entry(at, |_| n += 1);
        n
    };
    let count = listed(now);
    let later = now + 20 * 1_000_000_000;
    let ack = tcp(c1, SERVER, 41000, 21, ACK, 101, 709);
    ALLOC.set_limit(ALLOC.allocated()).unwrap();
    let v = ct.process(&ack, LinkType::Raw, later);
    ALLOC.set_limit(usize::MAX).unwrap();
    assert_eq!(v.to_string(), "established,orig+assured");
    assert_eq!(listed(later), count - 1);
    let mut left = 0;
    ct.for_each_expectation(later, |_| left += 1);
    assert_eq!(left, 0);
}

/// A raw IPv4 UDP fragment of datagram `id` (offset in 8-byte units), its header checksum right.
fn fragment(id: u16, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let frag = offset | if more { 0x2000 } else { 0 };
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[10, 9, 1, 1]);
    p.extend_from_slice(&SERVER);
    let c = !csum_fold(csum_add(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// With not one byte to spare, a fragment whose copy cannot be kept is refused, for its
/// datagram's queue as for a new one; with memory back, the datagram reassembles from the
/// fragments sent again.
fn fragments_wait_for_memory() {
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    let ct = Conntrack::with_seed(cfg, 0x5eed);
    let now = 6_000_000_000_000u64;
    ct.reserve(100, false).unwrap();
    // UDP 5353 to 53, 16 bytes of data after the header, in two fragments.
    let udp = [0x14, 0xe9, 0, 53, 0, 24, 0, 0];
    let first = fragment(7, 0, true, &[&udp[..], &[1; 8]].concat());
    let second = fragment(7, 2, false, &[2; 8]);
    let other = fragment(8, 0, true, &[&udp[..], &[1; 8]].concat());
    let tight = |f: &[u8]| {
        ALLOC.set_limit(ALLOC.allocated()).unwrap();
        let v = ct.process(f, LinkType::Raw, now);
        ALLOC.set_limit(usize::MAX).unwrap();
        v.to_string()
    };
    assert_eq!(tight(&first), "invalid");
    assert_eq!(ct.process(&first, LinkType::Raw, now).to_string(), "held");
    // Another datagram's first fragment: no queue for it.
    assert_eq!(tight(&other), "invalid");
    // The queued datagram's last fragment: its copy is refused, and the queue stays.
    assert_eq!(tight(&second), "invalid");
    assert_eq!(
        ct.process(&second, LinkType::Raw, now).to_string(),
        "new,orig"
    );
    assert_eq!(ct.count(), 1);

    // A refused fragment leaves no queue behind: a last fragment refused first does not fix
    // the datagram's length for the one that then comes with another.
    let short_last = fragment(9, 2, false, &[2; 8]);
    let long_last = fragment(9, 3, false, &[2; 8]);
    assert_eq!(tight(&short_last), "invalid");
    assert_eq!(
        ct.process(&long_last, LinkType::Raw, now).to_string(),
        "held"
    );
}

/// Every scenario capture of `pcaps/` (every protocol, helper, fragment and ICMP error case
/// the goldens cover), replayed with the allocator's room cut to a few bytes or kilobytes
/// before most packets, bursts and expiries, from a fixed pseudo-random sequence: whatever
/// allocation fails, and wherever, nothing aborts or panics, and with memory back the engine
/// tracks, lists and expires as usual. The second pass takes bursts too and records events
/// (lost, and counted, when their queue cannot grow). `CTRACK_OOM_SEED=N` replays another sequence, and
/// `CTRACK_OOM_DIR` the captures under another directory (each `NAME.pcap` or `.pcapng` beside
/// a `NAME.golden`, whose content is not read, and optionally `NAME.args`).
fn every_capture_under_random_limits() {
    let mut files = Vec::new();
    let dir = std::env::var_os("CTRACK_OOM_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps"),
        std::path::PathBuf::from,
    );
    captures(&dir, &mut files);
    files.sort();
    assert!(files.len() > 100, "{} captures", files.len());
    let mut rng = (std::env::var("CTRACK_OOM_SEED").ok())
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0x9e37_79b9_7f4a_7c15, |s| s | 1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut limited, mut refused) = (0usize, 0usize);
    for golden in &files {
        let args = std::fs::read_to_string(golden.with_extension("args")).unwrap_or_default();
        let path = ["pcap", "pcapng"]
            .map(|e| golden.with_extension(e))
            .into_iter()
            .find(|p| p.exists())
            .unwrap();
        // (Another directory may hold link types ctrack does not read.)
        let Ok(cap) = ctrack::capture::load(&path) else {
            assert!(
                std::env::var_os("CTRACK_OOM_DIR").is_some(),
                "{}",
                path.display()
            );
            continue;
        };
        let frames: Vec<_> = cap.packets().collect();
        for pass in 0..2 {
            let mut cfg = config(&args);
            if pass == 1 {
                // With an event stream, whose queue grows only with the memory it can have.
                cfg.events = 1 << 12;
            }
            let ct = Conntrack::new(cfg);
            let mut out = Vec::with_capacity(frames.len());
            let mut states = Vec::with_capacity(frames.len());
            let mut i = 0;
            while i < frames.len() {
                let r = next();
                // Most steps at a limit: none, 16 bytes, 256 bytes or 4 KiB to spare.
                let room = [None, Some(0), Some(16), Some(256), Some(4096)][(r % 5) as usize];
                if let Some(room) = room {
                    ALLOC.set_limit(ALLOC.allocated() + room).unwrap();
                    limited += 1;
                }
                let (ts, link, frame) = frames[i];
                if pass == 1 && r & 0x30 == 0 {
                    // A burst of up to eight frames of one link type.
                    let n = (1 + (r >> 8) as usize % 8).min(frames.len() - i);
                    let burst: [&[u8]; 8] = std::array::from_fn(|k| {
                        frames
                            .get(i + k)
                            .filter(|f| f.1 == link)
                            .map_or(&[][..], |f| f.2)
                    });
                    let n = burst[..n]
                        .iter()
                        .take_while(|f| !f.is_empty())
                        .count()
                        .max(1);
                    ct.process_batch(&burst[..n], link, ts, &mut out);
                    states.extend(out.iter().map(|v| v.state));
                    i += n;
                } else {
                    states.push(ct.process(frame, link, ts).state);
                    i += 1;
                }
                if r & 0x1c0 == 0 {
                    ct.expire(ts + (r >> 16) % 30 * 1_000_000_000);
                }
                if r & 0x600 == 0 {
                    drop(ct.events());
                }
                ALLOC.set_limit(usize::MAX).unwrap();
            }
            refused += states.iter().filter(|s| **s == State::Dropped).count();
            assert_eq!(states.len(), frames.len(), "{}", golden.display());
            // With memory back: listed, counted and emptied as usual.
            let end = frames.last().map_or(0, |f| f.0);
            let mut listed = 0;
            ct.for_each_entry(end, |_| listed += 1);
            ct.for_each_expectation(end, |_| {});
            assert!(listed <= ct.count(), "{}", golden.display());
            ct.expire(end + 1_000_000 * 1_000_000_000);
            assert_eq!(ct.count(), 0, "{}", golden.display());
        }
    }
    assert!(
        limited > 5000 && refused > 100,
        "{limited} steps limited, {refused} dropped"
    );
}
