//! Per-segment cost of the TCP tracker on an established, in-window stream: data (PSH|ACK,
//! 64-byte payload) one way, pure ACKs the other, no options, both sides tracked, not liberal.
//!
//! `cargo bench -p ctrack-protocols --bench tcp` times it with criterion. For instruction
//! counts, run the built bench binary under callgrind with `CTRACK_CALLGRIND=<segments>`
//! (`<segments>:stream`, `:stale`, `:parse`, `:syn` or `:lifecycle` for one workload alone): it
//! then skips criterion and just feeds that many segments through [`step`] (and as many header
//! parses through [`parse_step`]), whose inclusive cost divided by the count is the cost per
//! call; then count/10 entry-creating SYNs ([`syn_step`]) and count/100 whole 14-segment
//! connections ([`lifecycle`], 14 `track_full` calls each):
//!
//! ```text
//! CTRACK_CALLGRIND=100000 valgrind --tool=callgrind target/release/deps/tcp-<hash>
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep -E 'step|track_full|parse'
//! ```

use criterion::{Criterion, Throughput};
use ctrack_protocols::sysctl::Sysctl;
use ctrack_protocols::tcp::{self, ACK, FIN, PSH, SYN, Segment, TcpState, Verdict};
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

/// Linux's SYN options: MSS, SACK permitted, timestamps, window scale 7.
const SYN_OPTS: [u8; 20] = [
    2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// A SYN creating an entry: `new_conn` then the first `track_full` (the SYN-flood path).
#[inline(never)]
fn syn_step(seq: u32, s: &Sysctl) -> Verdict {
    let seg = Segment::new(seq, 0, SYN, 64240, 0).with_options(&SYN_OPTS);
    let mut st = tcp::new_conn(black_box(&seg), s).expect("SYN opens");
    let ctx = Ctx {
        dir: Dir::Original,
        confirmed: false,
        seen_reply: false,
        assured: false,
        now: 0,
        expires: 0,
    };
    let v = tcp::track_full(&mut st, &seg, &ctx, s);
    black_box(st);
    v
}

/// A whole short connection: handshake with options, two data segments each way with their
/// ACKs, FIN from each side and the last ACK: 14 segments through `track_full` (the first
/// after `new_conn`).
#[inline(never)]
fn lifecycle(i: u32, s: &Sysctl) -> u32 {
    let (c, v) = (i.wrapping_mul(0x9e37_79b9), i.wrapping_mul(0x85eb_ca6b));
    let mut ctx = Ctx {
        dir: Dir::Original,
        confirmed: false,
        seen_reply: false,
        assured: false,
        now: 0,
        expires: 0,
    };
    let mut accepted = 0;
    let mut send = |st: &mut TcpState, ctx: &mut Ctx, dir: Dir, seg: Segment<'_>| {
        ctx.dir = dir;
        let out = tcp::track_full(st, black_box(&seg), ctx, s);
        if let Decision::Accept(a) = out.decision {
            accepted += 1;
            ctx.assured |= a.assured;
            ctx.seen_reply |= dir == Dir::Reply;
        }
        ctx.confirmed = true;
    };
    let syn = Segment::new(c, 0, SYN, 64240, 0).with_options(&SYN_OPTS);
    let mut st = tcp::new_conn(&syn, s).expect("SYN opens");
    send(&mut st, &mut ctx, Dir::Original, syn);
    let (mut c, mut v) = (c.wrapping_add(1), v);
    send(
        &mut st,
        &mut ctx,
        Dir::Reply,
        Segment::new(v, c, SYN | ACK, 65160, 0).with_options(&SYN_OPTS),
    );
    v = v.wrapping_add(1);
    send(
        &mut st,
        &mut ctx,
        Dir::Original,
        Segment::new(c, v, ACK, 502, 0),
    );
    for _ in 0..2 {
        send(
            &mut st,
            &mut ctx,
            Dir::Original,
            Segment::new(c, v, PSH | ACK, 502, 100),
        );
        c = c.wrapping_add(100);
        send(
            &mut st,
            &mut ctx,
            Dir::Reply,
            Segment::new(v, c, ACK, 509, 0),
        );
        send(
            &mut st,
            &mut ctx,
            Dir::Reply,
            Segment::new(v, c, PSH | ACK, 509, 1000),
        );
        v = v.wrapping_add(1000);
        send(
            &mut st,
            &mut ctx,
            Dir::Original,
            Segment::new(c, v, ACK, 502, 0),
        );
    }
    send(
        &mut st,
        &mut ctx,
        Dir::Original,
        Segment::new(c, v, FIN | ACK, 502, 0),
    );
    c = c.wrapping_add(1);
    send(
        &mut st,
        &mut ctx,
        Dir::Reply,
        Segment::new(v, c, FIN | ACK, 509, 0),
    );
    v = v.wrapping_add(1);
    send(
        &mut st,
        &mut ctx,
        Dir::Original,
        Segment::new(c, v, ACK, 502, 0),
    );
    assert_eq!(tcp::state_name(&st), "TIME_WAIT");
    accepted
}

impl Flow {
    /// An old retransmission from the client, far below the window: ignored (the fast path
    /// turns it down after its bound checks and the general code decides).
    fn stale(&mut self) -> Segment<'static> {
        self.ctx.dir = Dir::Original;
        Segment::new(
            self.cseq.wrapping_sub(200_000),
            self.sseq,
            PSH | ACK,
            65535,
            PAYLOAD,
        )
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

/// The plain loops for callgrind; `only` limits them to one workload ("stream", "stale",
/// "parse", "syn", "lifecycle").
fn callgrind(n: usize, only: Option<&str>) {
    let s = Sysctl::default();
    let on = |w: &str| only.is_none_or(|o| o == w);
    if on("stream") {
        let mut f = Flow::established(&s);
        for _ in 0..n {
            let seg = f.next();
            let v = step(&mut f.st, black_box(&seg), &f.ctx, &s);
            assert!(matches!(v.decision, Decision::Accept(_)));
        }
    }
    if on("stale") {
        let mut f = Flow::established(&s);
        let seg = f.stale();
        for _ in 0..n {
            let v = step(&mut f.st, black_box(&seg), &f.ctx, &s);
            assert_eq!(v.decision, Decision::Ignore);
        }
    }
    if on("parse") {
        let h = header();
        for _ in 0..n {
            assert!(parse_step(black_box(&h)).is_some());
        }
    }
    if on("syn") {
        for i in 0..n / 10 {
            let v = syn_step(i as u32, &s);
            assert!(matches!(v.decision, Decision::Accept(_)));
        }
    }
    if on("lifecycle") {
        for i in 0..n / 100 {
            assert_eq!(lifecycle(i as u32, &s), 14);
        }
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
    let mut f = Flow::established(&s);
    let stale = f.stale();
    g.bench_function("track_full/established_old_retransmission", |b| {
        b.iter(|| step(&mut f.st, black_box(&stale), &f.ctx, &s))
    });
    let h = header();
    g.bench_function("parse/psh_ack_64", |b| b.iter(|| parse_step(black_box(&h))));
    let mut i = 0u32;
    g.bench_function("new_conn+track_full/syn", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            syn_step(i, &s)
        })
    });
    g.throughput(Throughput::Elements(14));
    g.bench_function("track_full/lifecycle_14_segments", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            lifecycle(i, &s)
        })
    });
    g.finish();
}

fn main() {
    if let Ok(v) = std::env::var("CTRACK_CALLGRIND") {
        let (n, only) = match v.split_once(':') {
            Some((n, w)) => (n, Some(w)),
            None => (v.as_str(), None),
        };
        callgrind(
            n.parse().expect("CTRACK_CALLGRIND=<count>[:<workload>]"),
            only,
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
