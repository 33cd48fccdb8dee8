//! Per-segment cost of the TCP tracker on an established, in-window stream: data (PSH|ACK,
//! 64-byte payload) one way, pure ACKs the other, no options, both sides tracked, not liberal.
//!
//! `cargo bench -p ctrack-protocols --bench tcp` times it with criterion. For instruction
//! counts, run the built bench binary under callgrind with `CTRACK_CALLGRIND=<segments>`: it
//! then skips criterion and just feeds that many segments through [`step`] (and as many header
//! parses through [`parse_step`]), whose inclusive cost divided by the count is the cost per
//! call:
//!
//! ```text
//! CTRACK_CALLGRIND=100000 valgrind --tool=callgrind target/release/deps/tcp-<hash>
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep -E 'step|track_full|parse'
//! ```

use criterion::{Criterion, Throughput};
use ctrack_protocols::sysctl::Sysctl;
use ctrack_protocols::tcp::{self, ACK, PSH, SYN, Segment, TcpState, Verdict};
use ctrack_protocols::{Ctx, Decision, Dir};
use std::hint::black_box;

/// One tracked flow and the engine-side bits the tracker is told about.
struct Flow {
    st: TcpState,
    ctx: Ctx,
    cseq: u32,
    sseq: u32,
    client_turn: bool,
}

const PAYLOAD: u32 = 64;

/// The tracker call being measured (kept out of line so callgrind can attribute it).
#[inline(never)]
fn step(st: &mut TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> Verdict {
    tcp::track_full(st, seg, ctx, s)
}

/// The header parse being measured.
#[inline(never)]
fn parse_step(l4: &[u8]) -> Option<Segment<'_>> {
    tcp::parse(l4).ok()
}

impl Flow {
    /// A flow through its three-way handshake, as the engine would drive it.
    fn established(s: &Sysctl) -> Flow {
        let (c0, s0) = (0x1234_5678u32, 0xfedc_ba98u32);
        let syn = Segment::new(c0, 0, SYN, 65535, 0);
        let mut st = tcp::new_conn(&syn, s).expect("SYN opens");
        let mut ctx = Ctx {
            dir: Dir::Original,
            confirmed: false,
            seen_reply: false,
            assured: false,
            now: 0,
            expires: 0,
        };
        let mut f = Flow {
            st: TcpState::default(),
            ctx,
            cseq: c0.wrapping_add(1),
            sseq: s0.wrapping_add(1),
            client_turn: true,
        };
        tcp::track_full(&mut st, &syn, &ctx, s);
        ctx.confirmed = true;
        ctx.dir = Dir::Reply;
        let synack = Segment::new(s0, f.cseq, SYN | ACK, 65535, 0);
        tcp::track_full(&mut st, &synack, &ctx, s);
        ctx.seen_reply = true;
        ctx.dir = Dir::Original;
        let ack = Segment::new(f.cseq, f.sseq, ACK, 65535, 0);
        let v = tcp::track_full(&mut st, &ack, &ctx, s);
        assert!(matches!(v.decision, Decision::Accept(a) if a.assured));
        ctx.assured = true;
        f.st = st;
        f.ctx = ctx;
        f
    }

    /// The next segment of the stream, alternating data from the client and the server's ACK.
    fn next(&mut self) -> Segment<'static> {
        let turn = self.client_turn;
        self.client_turn = !turn;
        if turn {
            self.ctx.dir = Dir::Original;
            let seg = Segment::new(self.cseq, self.sseq, PSH | ACK, 65535, PAYLOAD);
            self.cseq = self.cseq.wrapping_add(PAYLOAD);
            seg
        } else {
            self.ctx.dir = Dir::Reply;
            Segment::new(self.sseq, self.cseq, ACK, 65535, 0)
        }
    }
}

/// A 20-byte header plus payload, as the engine hands `parse` an established flow's segment.
fn header() -> Vec<u8> {
    let mut h = vec![0u8; 20 + PAYLOAD as usize];
    h[0..4].copy_from_slice(&[0x30, 0x39, 0, 80]);
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[8..12].copy_from_slice(&2000u32.to_be_bytes());
    h[12] = 0x50;
    h[13] = PSH | ACK;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h
}

fn callgrind(n: usize) {
    let s = Sysctl::default();
    let mut f = Flow::established(&s);
    for _ in 0..n {
        let seg = f.next();
        let v = step(&mut f.st, black_box(&seg), &f.ctx, &s);
        assert!(matches!(v.decision, Decision::Accept(_)));
    }
    let h = header();
    for _ in 0..n {
        assert!(parse_step(black_box(&h)).is_some());
    }
}

fn bench(c: &mut Criterion) {
    let s = Sysctl::default();
    let mut g = c.benchmark_group("tcp");
    g.throughput(Throughput::Elements(1));
    let mut f = Flow::established(&s);
    g.bench_function("track_full/established_ack_stream", |b| {
        b.iter(|| {
            let seg = f.next();
            step(&mut f.st, black_box(&seg), &f.ctx, &s)
        })
    });
    let h = header();
    g.bench_function("parse/psh_ack_64", |b| b.iter(|| parse_step(black_box(&h))));
    g.finish();
}

fn main() {
    if let Some(n) = std::env::var("CTRACK_CALLGRIND")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        callgrind(n);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
