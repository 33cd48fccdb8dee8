//! A full table under a SYN flood: bounded, and ASSURED connections survive.

mod common;

use common::tcp;
use ctrack::{Config, Conntrack, LinkType, State};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn engine(max: u32, shards: usize) -> Conntrack {
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    cfg.set_sysctl(&format!("nf_conntrack_max={max}")).unwrap();
    cfg.shards = shards;
    Conntrack::with_seed(cfg, 0x5eed)
}

const SERVER: [u8; 4] = [192, 0, 2, 1];

/// Opens connection `i` (client 10.x.y.z:40000 -> server:443) and makes it ASSURED.
fn establish(ct: &Conntrack, i: u32, now: u64) -> [u8; 4] {
    let c = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    assert_eq!(
        ct.process(
            &tcp(c, SERVER, 40000, 443, SYN, 1000, 0),
            LinkType::Raw,
            now
        )
        .state,
        State::New
    );
    let r = ct.process(
        &tcp(SERVER, c, 443, 40000, SYN | ACK, 5000, 1001),
        LinkType::Raw,
        now,
    );
    assert_eq!(r.to_string(), "established,reply");
    let a = ct.process(
        &tcp(c, SERVER, 40000, 443, ACK, 1001, 5001),
        LinkType::Raw,
        now,
    );
    assert_eq!(a.to_string(), "established,orig+assured");
    c
}

#[test]
fn million_syn_flood_keeps_table_bounded_and_assured_alive() {
    const MAX: u32 = 65_536;
    let ct = engine(MAX, 64);
    let t0 = 1_000_000_000_000u64;
    let clients: Vec<[u8; 4]> = (0..2_000).map(|i| establish(&ct, i, t0)).collect();
    let mut x: u32 = 0x1234_5678;
    let mut peak_mem = 0;
    for n in 0..1_000_000u32 {
        // xorshift: spoofed sources and ports, as a flood has.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = [172, 16 + (x >> 28) as u8, (x >> 16) as u8, (x >> 8) as u8];
        let now = t0 + n as u64 * 1_000; // 1 M SYNs per second
        let v = ct.process(
            &tcp(src, SERVER, x as u16 | 1024, 443, SYN, x, 0),
            LinkType::Raw,
            now,
        );
        assert!(matches!(v.state, State::New | State::Dropped), "{v}");
        if n % 4096 == 0 {
            assert!(ct.count() <= MAX as usize, "count {} over max", ct.count());
            peak_mem = peak_mem.max(ct.memory());
        }
    }
    assert!(ct.count() <= MAX as usize);
    // The count of entries against the limit is exact: every early drop gave back the units
    // of what it evicted, and every new entry took one.
    let mut listed = 0;
    ct.for_each_entry(t0 + 1_000_000_000, |_| listed += 1);
    assert_eq!(ct.count(), listed);
    let stats = ct.stats();
    assert!(stats.early_drop > 900_000, "{stats}");
    // Memory is bounded by the limit, not by the flood: well under 256 bytes per allowed entry.
    assert!(peak_mem < MAX as usize * 256, "peak {peak_mem} bytes");
    let now = t0 + 1_001_000_000;
    for c in clients {
        let v = ct.process(
            &tcp(c, SERVER, 40000, 443, ACK, 1001, 5001),
            LinkType::Raw,
            now,
        );
        assert_eq!(v.to_string(), "established,orig+assured", "client {c:?}");
    }
}

#[test]
fn pressure_sweep_takes_closing_connections() {
    const MAX: u32 = 64;
    let ct = engine(MAX, 1);
    let t0 = 1_000_000_000u64;
    let clients: Vec<[u8; 4]> = (0..MAX).map(|i| establish(&ct, i, t0)).collect();
    // Half of them start closing (FIN from the client): still ASSURED, but fair game for GC.
    for c in clients.iter().step_by(2) {
        let v = ct.process(
            &tcp(*c, SERVER, 40000, 443, FIN | ACK, 1001, 5001),
            LinkType::Raw,
            t0,
        );
        assert!(v.assured);
    }
    // Everything is ASSURED: early drop finds nothing, the packet is dropped.
    let syn = |i: u16| tcp([198, 51, 100, 1], SERVER, 1000 + i, 443, SYN, 7, 0);
    assert_eq!(ct.process(&syn(0), LinkType::Raw, t0).state, State::Dropped);
    // The pass that drop owes the garbage collector comes at the collector's next run: once
    // a minute (the kernel's interval over long-lived entries), modelled on the minute of
    // the packets' clock, here 59 s after the drop. Until then every new connection is
    // dropped as well.
    let sec = 1_000_000_000u64;
    for i in 1..100u16 {
        let at = t0 + u64::from(i) * (58 * sec / 100);
        assert_eq!(ct.process(&syn(i), LinkType::Raw, at).state, State::Dropped);
    }
    // Then it frees the closing ones as traffic comes in.
    let later = 60 * sec;
    let mut admitted = 0;
    for i in 100..300u16 {
        if ct
            .process(&syn(i), LinkType::Raw, later + u64::from(i))
            .state
            == State::New
        {
            admitted += 1;
        }
    }
    assert!(admitted >= 1, "the sweep freed nothing");
    // The established (not closing) half is untouched.
    for c in clients.iter().skip(1).step_by(2) {
        let v = ct.process(
            &tcp(*c, SERVER, 40000, 443, ACK, 1001, 5001),
            LinkType::Raw,
            later + 300,
        );
        assert_eq!(v.to_string(), "established,orig+assured");
    }
    assert!(ct.count() <= MAX as usize);
}
