//! Criterion benchmarks of the engine's three costs that matter: an established hit with a TCP
//! window update, a miss that inserts a new connection, and expiry; at 1K, 100K, 1M and 10M
//! entries, IPv4 and IPv6. Run with `cargo bench --bench engine` (a filter such as
//! `-- established/v4/1000` narrows it).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctrack::packet::{csum_add, csum_add_u32, csum_fold};
use ctrack::{Config, Conntrack, LinkType, NANOS_PER_SEC};

const SIZES: [usize; 4] = [1_000, 100_000, 1_000_000, 10_000_000];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// A raw IPv4 or IPv6 TCP segment without payload, checksums filled in.
fn tcp(v6: bool, flow: u32, to_server: bool, flags: u8, seq: u32, ack: u32, win: u16) -> Vec<u8> {
    let (mut c, mut s) = ([0u8; 16], [0u8; 16]);
    if v6 {
        c[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        c[12..].copy_from_slice(&flow.to_be_bytes());
        s[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb9]);
        s[15] = 1;
    } else {
        c[..4].copy_from_slice(&[10, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8]);
        c[0] |= ((flow >> 24) as u8) << 4;
        s[..4].copy_from_slice(&[192, 0, 2, 1]);
    }
    let (src, dst, sp, dp) = if to_server {
        (c, s, 1024 + (flow % 50_000) as u16, 443)
    } else {
        (s, c, 443, 1024 + (flow % 50_000) as u16)
    };
    let alen = if v6 { 16 } else { 4 };
    let mut l4 = Vec::with_capacity(20);
    l4.extend_from_slice(&sp.to_be_bytes());
    l4.extend_from_slice(&dp.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.extend_from_slice(&[0x50, flags]);
    l4.extend_from_slice(&win.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 0]);
    let mut sum = csum_add(0, &src[..alen]);
    sum = csum_add(sum, &dst[..alen]);
    sum = csum_add_u32(sum, 6 + 20);
    sum = csum_add(sum, &l4);
    l4[16..18].copy_from_slice(&(!csum_fold(sum)).to_be_bytes());
    let mut p = if v6 {
        let mut h = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    } else {
        let mut h = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        h.extend_from_slice(&src[..4]);
        h.extend_from_slice(&dst[..4]);
        let c = !csum_fold(csum_add(0, &h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    };
    p.extend_from_slice(&l4);
    p
}

/// A tracker holding `n` established (ASSURED) connections, flows 0..n.
fn filled(n: usize, v6: bool) -> Conntrack {
    let mut cfg = Config::default();
    cfg.set_sysctl(&format!("nf_conntrack_max={}", n * 2 + 1_000_000))
        .unwrap();
    let ct = Conntrack::with_seed(cfg, 7);
    let now = NANOS_PER_SEC;
    for f in 0..n as u32 {
        ct.process(&tcp(v6, f, true, SYN, 100, 0, 65535), LinkType::Raw, now);
        ct.process(
            &tcp(v6, f, false, SYN | ACK, 500, 101, 65535),
            LinkType::Raw,
            now,
        );
        ct.process(&tcp(v6, f, true, ACK, 101, 501, 65535), LinkType::Raw, now);
    }
    ct
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for v6 in [false, true] {
        for &n in &SIZES {
            let ring = 65_536.min(2 * n);
            g.throughput(Throughput::Elements(ring as u64));
            let fam = if v6 { "v6" } else { "v4" };
            g.bench_function(BenchmarkId::new(fam, n), |b| {
                let ct = filled(n, v6);
                // Two ACKs per flow whose windows differ: every packet updates the window and
                // none is a retransmission.
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                let pkts: Vec<Vec<u8>> = (0..ring)
                    .map(|i| {
                        let f = (xorshift(&mut x) % n as u64) as u32;
                        tcp(v6, f, true, ACK, 101, 501, 65535 - (i % 2) as u16)
                    })
                    .collect();
                let frames: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
                let mut out = Vec::new();
                b.iter(|| {
                    for chunk in frames.chunks(256) {
                        ct.process_batch(chunk, LinkType::Raw, 2 * NANOS_PER_SEC, &mut out);
                    }
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("miss_insert");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for v6 in [false, true] {
        for &n in &SIZES {
            let fam = if v6 { "v6" } else { "v4" };
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(fam, n), |b| {
                let ct = filled(n, v6);
                let mut next = n as u32;
                b.iter_custom(|iters| {
                    // New flows, built outside the timed part.
                    let pkts: Vec<Vec<u8>> = (0..iters)
                        .map(|k| tcp(v6, next + k as u32, true, SYN, 7, 0, 65535))
                        .collect();
                    next += iters as u32;
                    let frames: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
                    let mut out = Vec::new();
                    let t = Instant::now();
                    for chunk in frames.chunks(256) {
                        ct.process_batch(chunk, LinkType::Raw, 2 * NANOS_PER_SEC, &mut out);
                    }
                    t.elapsed()
                })
            });
        }
    }
    g.finish();
}

fn expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("expiry");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for v6 in [false, true] {
        for &n in &SIZES {
            let fam = if v6 { "v6" } else { "v4" };
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new(fam, n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // n connections left in SYN_SENT: all expire together.
                        let mut cfg = Config::default();
                        cfg.set_sysctl(&format!("nf_conntrack_max={}", n + 1))
                            .unwrap();
                        let ct = Conntrack::with_seed(cfg, 3);
                        for f in 0..n as u32 {
                            ct.process(
                                &tcp(v6, f, true, SYN, 1, 0, 65535),
                                LinkType::Raw,
                                NANOS_PER_SEC,
                            );
                        }
                        let t = Instant::now();
                        let gone = ct.expire(200 * NANOS_PER_SEC);
                        total += t.elapsed();
                        assert_eq!(gone, n);
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, established, insert, expiry);
criterion_main!(benches);
