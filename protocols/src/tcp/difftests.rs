//! Differential property tests: the production tracker ([`track_full`], fast path included)
//! against the general path alone ([`track_general`], the plain transcription of the kernel's
//! logic that the kernel goldens were first matched with). Every segment goes through both from
//! identical states; the verdicts and the resulting states must be identical, after every
//! segment.
//!
//! Two drivers: [`run_realistic`] opens entries the way the engine does (optionally through a
//! forced handshake or simultaneous open) and draws each segment's numbers relative to the live
//! window state, so most segments are in window and the common ESTABLISHED/ACK case is hit
//! often, next to every other state and class; [`run_arbitrary`] starts from arbitrary states
//! (any connection state, windows, flags and last-segment memory) with arbitrary entry bits.
//!
//! `PROPTEST_CASES=50000 cargo test -p ctrack-protocols --release difftests` runs many cases.

use super::*;
use crate::NANOS_PER_SEC;
use proptest::prelude::*;

/// How a number of the segment is chosen, relative to the state it will meet.
#[derive(Clone, Copy, Debug)]
enum Num {
    /// Exactly the expected value (the sender's end for `seq`, the receiver's end for `ack`).
    Exact,
    /// The expected value plus this.
    Delta(i32),
    /// Near the edge: the sender's `maxend` for `seq`, the sender's own `maxack` for `ack`.
    Edge(i8),
    /// Near the lower bounds: `seq` such that the segment ends this far from where bound II
    /// starts refusing (the receiver's window below the sender's end); `ack` this far from
    /// where bound IV starts refusing (the ACK window below the receiver's end).
    Floor(i8),
    /// This value, whatever the state.
    Raw(u32),
}

fn num() -> impl Strategy<Value = Num> {
    prop_oneof![
        30 => Just(Num::Exact),
        4 => (-3000i32..3000).prop_map(Num::Delta),
        1 => prop_oneof![
            -140_000i32..-60_000,
            60_000i32..140_000,
            any::<i32>()
        ]
        .prop_map(Num::Delta),
        2 => (-3i8..4).prop_map(Num::Edge),
        2 => (-2i8..3).prop_map(Num::Floor),
        1 => prop_oneof![Just(0u32), any::<u32>()].prop_map(Num::Raw),
    ]
}

/// The sequence number `n` picks for a segment from `snd` to `rcv` occupying `span`.
fn seq_of(n: Num, snd: Side, rcv: Side, span: u32) -> u32 {
    match n {
        Num::Exact => snd.end,
        Num::Delta(d) => snd.end.wrapping_add(d as u32),
        Num::Edge(d) => snd.maxend.wrapping_add(d as u32),
        Num::Floor(d) => snd
            .end
            .wrapping_sub(rcv.maxwin)
            .wrapping_sub(1)
            .wrapping_add(d as u32)
            .wrapping_sub(span),
        Num::Raw(v) => v,
    }
}

/// The acknowledgement number `n` picks for a segment from `snd` to `rcv`.
fn ack_of(n: Num, snd: Side, rcv: Side) -> u32 {
    match n {
        Num::Exact => rcv.end,
        Num::Delta(d) => rcv.end.wrapping_add(d as u32),
        Num::Edge(d) => snd.maxack.wrapping_add(d as u32),
        Num::Floor(d) => rcv
            .end
            .wrapping_sub(snd.maxwin.max(window::MAX_ACK_WINDOW_FLOOR))
            .wrapping_sub(1)
            .wrapping_add(d as u32),
        Num::Raw(v) => v,
    }
}

/// Sequence space a segment with these flags and payload occupies.
fn span(flags: u8, data_len: u32) -> u32 {
    data_len
        .wrapping_add(u32::from(flags & SYN != 0))
        .wrapping_add(u32::from(flags & FIN != 0))
}

/// The option area, some of it computed from the segment's acknowledgement.
#[derive(Clone, Debug)]
enum Opts {
    None,
    /// NOP NOP TIMESTAMP, as Linux sends it on every segment.
    Timestamp,
    /// MSS, optionally SACK permitted, optionally a window scale.
    Syn {
        sack: bool,
        ws: Option<u8>,
    },
    /// One SACK option with these blocks, edges relative to the acknowledgement.
    Sack(Vec<(i32, i32)>),
    /// A timestamp then a SACK option (the timestamp shortcut must not apply).
    TimestampSack(i32),
    /// Anything.
    Bytes(Vec<u8>),
}

fn opts() -> impl Strategy<Value = Opts> {
    prop_oneof![
        10 => Just(Opts::None),
        3 => Just(Opts::Timestamp),
        2 => (any::<bool>(), proptest::option::of(0u8..20))
            .prop_map(|(sack, ws)| Opts::Syn { sack, ws }),
        2 => proptest::collection::vec((-5000i32..5000, -5000i32..90_000), 1..5)
            .prop_map(Opts::Sack),
        1 => (-100i32..5000).prop_map(Opts::TimestampSack),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Opts::Bytes),
    ]
}

impl Opts {
    fn bytes(&self, ack: u32) -> Vec<u8> {
        match self {
            Opts::None => Vec::new(),
            Opts::Timestamp => vec![1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0],
            Opts::Syn { sack, ws } => {
                let mut o = vec![2, 4, 5, 0xb4];
                if *sack {
                    o.extend_from_slice(&[1, 1, 4, 2]);
                }
                if let Some(w) = ws {
                    o.extend_from_slice(&[1, 3, 3, *w]);
                }
                o
            }
            Opts::Sack(blocks) => {
                let mut o = vec![1, 1, 5, (2 + 8 * blocks.len()) as u8];
                for &(l, r) in blocks {
                    o.extend_from_slice(&ack.wrapping_add(l as u32).to_be_bytes());
                    o.extend_from_slice(&ack.wrapping_add(r as u32).to_be_bytes());
                }
                o
            }
            Opts::TimestampSack(r) => {
                let mut o = vec![1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 5, 10];
                o.extend_from_slice(&ack.to_be_bytes());
                o.extend_from_slice(&ack.wrapping_add(*r as u32).to_be_bytes());
                o
            }
            Opts::Bytes(b) => b.clone(),
        }
    }
}

/// Flag bytes: every valid class (ACK-heavy), with PSH/URG/ECE/CWR noise, and now and then
/// any byte at all (the engine's `parse` would refuse some; the trackers must still agree).
fn flags() -> impl Strategy<Value = u8> {
    let base = prop_oneof![
        90 => Just(ACK),
        2 => Just(SYN),
        2 => Just(SYN | ACK),
        3 => Just(FIN | ACK),
        1 => Just(RST),
        2 => Just(RST | ACK),
        1 => Just(ACK | URG),
        1 => Just(FIN | ACK | URG),
        1 => Just(SYN | URG),
    ];
    let extra = prop_oneof![
        4 => Just(0u8),
        3 => Just(PSH),
        1 => Just(ECE),
        1 => Just(CWR),
        1 => Just(ECE | CWR | PSH),
    ];
    prop_oneof![
        60 => (base, extra).prop_map(|(b, e)| b | e),
        1 => any::<u8>(),
    ]
}

/// One generated segment.
#[derive(Clone, Debug)]
struct Gen {
    /// Sent by endpoint B (the one that did not open the entry, in the realistic driver).
    from_b: bool,
    flags: u8,
    seq: Num,
    ack: Num,
    window: u16,
    data_len: u32,
    opts: Opts,
    /// Resend the previous segment exactly instead (retransmissions, duplicate ACKs).
    repeat: bool,
    /// Milliseconds before the segment.
    wait_ms: u32,
    /// Override the entry's seen-reply and assured bits for this segment.
    ctx_noise: Option<(bool, bool)>,
}

fn segment() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        flags(),
        num(),
        num(),
        prop_oneof![
            4 => Just(65535u16),
            1 => Just(0u16),
            2 => 1u16..3000,
            2 => any::<u16>()
        ],
        prop_oneof![
            6 => Just(0u32),
            3 => Just(64u32),
            1 => Just(1u32),
            2 => Just(1460u32),
            2 => 1u32..70_000,
            1 => any::<u32>()
        ],
        opts(),
        prop::bool::weighted(0.08),
        prop_oneof![
            30 => Just(0u32),
            3 => 1u32..5000,
            1 => Just(400_000u32)
        ],
        prop::option::weighted(0.05, (any::<bool>(), any::<bool>())),
    )
        .prop_map(
            |(from_b, flags, seq, ack, window, data_len, opts, repeat, wait_ms, ctx_noise)| Gen {
                from_b,
                flags,
                seq,
                ack,
                window,
                data_len,
                opts,
                repeat,
                wait_ms,
                ctx_noise,
            },
        )
}

/// Sysctl values that move decisions: the switches, and timeouts on both sides of each other
/// (the timeout choice compares the state's timeout with the retransmission and
/// unacknowledged ones).
fn sysctl() -> impl Strategy<Value = Sysctl> {
    (
        any::<bool>(),
        prop::bool::weighted(0.15),
        any::<bool>(),
        0u32..5,
        prop_oneof![Just(432_000u32), Just(300), Just(100), Just(2)],
        prop_oneof![Just(300u32), Just(1_000_000), Just(50)],
        prop_oneof![Just(300u32), Just(1_000_000), Just(50)],
        prop_oneof![Just(120u32), Just(5)],
        prop_oneof![Just(10u32), Just(3), Just(1_000_000)],
    )
        .prop_map(
            |(loose, lib, rst, mr, est, unack, retrans, syn, close)| Sysctl {
                nf_conntrack_tcp_loose: u32::from(loose),
                nf_conntrack_tcp_be_liberal: u32::from(lib),
                nf_conntrack_tcp_ignore_invalid_rst: u32::from(rst),
                nf_conntrack_tcp_max_retrans: mr,
                nf_conntrack_tcp_timeout_established: est,
                nf_conntrack_tcp_timeout_unacknowledged: unack,
                nf_conntrack_tcp_timeout_max_retrans: retrans,
                nf_conntrack_tcp_timeout_syn_sent: syn,
                nf_conntrack_tcp_timeout_close: close,
                ..Sysctl::default()
            },
        )
}

/// What a run hit, to check the generators reach the cases that matter.
#[derive(Debug, Default)]
struct Stats {
    segments: u64,
    /// Accepted ACK-class segments of ESTABLISHED entries with both sides known.
    fast_eligible: u64,
    /// Segments [`track_established`] answered on its own.
    established: u64,
    /// (old state, class, decision kind) combinations seen.
    combos: std::collections::BTreeMap<(u8, u8, u8), u64>,
}

fn decision_kind(d: Decision) -> u8 {
    match d {
        Decision::Accept(a) if a.kill => 0,
        Decision::Accept(_) => 1,
        Decision::Ignore => 2,
        Decision::Invalid => 3,
        Decision::Reopen => 4,
        Decision::Partial(_) => 5,
    }
}

/// Runs one segment through both trackers from `st`, requires identical outcomes, and leaves
/// the common result in `st`.
fn both(
    st: &mut TcpState,
    seg: &Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
    stats: &mut Option<&mut Stats>,
) -> Result<Verdict, TestCaseError> {
    let start = *st;
    let mut fast = *st;
    let want = track_general(st, seg, ctx, s);
    let got = track_full(&mut fast, seg, ctx, s);
    prop_assert_eq!(
        got,
        want,
        "verdict differs\nstate {:?}\nseg {:?}\nctx {:?}",
        start,
        seg,
        ctx
    );
    prop_assert_eq!(
        fast,
        *st,
        "state differs\nstart {:?}\nseg {:?}\nctx {:?}",
        start,
        seg,
        ctx
    );
    // `track_established` is the accepting half of the fast path: the same refresh and state
    // when it answers, the state untouched when it does not.
    let mut alone = start;
    let answered = track_established(&mut alone, seg, ctx, s);
    match answered {
        Some(r) => {
            prop_assert_eq!(Verdict::from(Decision::Accept(r.into())), want);
            prop_assert_eq!(alone, *st);
        }
        None => prop_assert_eq!(alone, start),
    }
    // `track` is `track_full` without the timeout lowering.
    let mut plain = start;
    prop_assert_eq!(track(&mut plain, seg, ctx, s), want.decision);
    prop_assert_eq!(plain, *st);
    if let Some(stats) = stats {
        stats.segments += 1;
        stats.established += u64::from(answered.is_some());
        let class = Class::of(seg.flags);
        if start.state == State::Established
            && class == Class::Ack
            && start.seen[0].maxwin != 0
            && start.seen[1].maxwin != 0
            && matches!(want.decision, Decision::Accept(_))
        {
            stats.fast_eligible += 1;
        }
        *stats
            .combos
            .entry((start.state as u8, class as u8, decision_kind(want.decision)))
            .or_default() += 1;
    }
    Ok(want)
}

/// The engine's view of one entry.
struct Entry {
    st: TcpState,
    orig_b: bool,
    seen_reply: bool,
    assured: bool,
    expires: Nanos,
}

/// A segment as sent: from B, seq, ack, flags, window, payload length, options.
type Sent = (bool, u32, u32, u8, u16, u32, Vec<u8>);

/// Drives entries as the engine does, the first `opening` segments forced into a handshake
/// (1: SYN; 2: + SYN/ACK; 3: + ACK; 4: simultaneous open SYN, SYN, SYN/ACK, SYN/ACK).
fn run_realistic(
    gens: &[Gen],
    opening: u8,
    s: &Sysctl,
    mut stats: Option<&mut Stats>,
) -> Result<(), TestCaseError> {
    let mut entry: Option<Entry> = None;
    let mut now: Nanos = NANOS_PER_SEC;
    let mut prev: Option<Sent> = None;
    for (i, g) in gens.iter().enumerate() {
        now += Nanos::from(g.wait_ms) * 1_000_000;
        if entry.as_ref().is_some_and(|e| e.expires <= now) {
            entry = None;
        }
        let mut g = g.clone();
        let forced: &[(bool, u8)] = match opening {
            1..=3 => &[(false, SYN), (true, SYN | ACK), (false, ACK)][..usize::from(opening)],
            4 => &[
                (false, SYN),
                (true, SYN),
                (false, SYN | ACK),
                (true, SYN | ACK),
            ],
            _ => &[],
        };
        if let Some(&(from_b, flags)) = forced.get(i) {
            g.from_b = entry.as_ref().map_or(from_b, |e| e.orig_b ^ from_b);
            g.flags = flags;
            g.seq = if i == 0 { g.seq } else { Num::Exact };
            g.ack = Num::Exact;
            g.data_len = 0;
            g.repeat = false;
            if !matches!(g.opts, Opts::Syn { .. }) {
                g.opts = Opts::None;
            }
        }
        let (from_b, seq, ack, flags, window, data_len, options) = match &prev {
            Some(p) if g.repeat => p.clone(),
            _ => {
                let (seq, ack) = match &entry {
                    Some(e) => {
                        let dir = if g.from_b == e.orig_b {
                            Dir::Original
                        } else {
                            Dir::Reply
                        };
                        let (snd, rcv) = (e.st.side(dir), e.st.side(dir.flip()));
                        let seq = seq_of(g.seq, snd, rcv, span(g.flags, g.data_len));
                        let ack = ack_of(g.ack, snd, rcv);
                        (seq, ack)
                    }
                    None => {
                        let raw = |n: Num, dflt: u32| match n {
                            Num::Raw(v) => v,
                            Num::Delta(d) => dflt.wrapping_add(d as u32),
                            _ => dflt,
                        };
                        (raw(g.seq, 0x8000_0000), raw(g.ack, 0))
                    }
                };
                let options = g.opts.bytes(ack);
                (g.from_b, seq, ack, g.flags, g.window, g.data_len, options)
            }
        };
        prev = Some((from_b, seq, ack, flags, window, data_len, options.clone()));
        let seg = Segment {
            seq,
            ack,
            flags,
            window,
            data_len,
            options: &options,
        };
        let mut again = true;
        while again {
            again = false;
            match &mut entry {
                None => {
                    let Some(mut st) = new_conn(&seg, s) else {
                        break;
                    };
                    let ctx = Ctx::opening(now);
                    let v = both(&mut st, &seg, &ctx, s, &mut stats)?;
                    if let Decision::Accept(a) = v.decision {
                        entry = Some(Entry {
                            st,
                            orig_b: from_b,
                            seen_reply: false,
                            assured: a.assured,
                            expires: now + a.timeout.unwrap_or(0),
                        });
                    }
                }
                Some(e) => {
                    let dir = if from_b == e.orig_b {
                        Dir::Original
                    } else {
                        Dir::Reply
                    };
                    let (seen_reply, assured) = g.ctx_noise.unwrap_or((e.seen_reply, e.assured));
                    let ctx = Ctx {
                        dir,
                        confirmed: true,
                        seen_reply,
                        assured,
                        now,
                        expires: e.expires,
                    };
                    let v = both(&mut e.st, &seg, &ctx, s, &mut stats)?;
                    match v.decision {
                        Decision::Invalid => {
                            if let Some(t) = v.lower_timeout {
                                e.expires = now + t;
                            }
                        }
                        Decision::Reopen => {
                            entry = None;
                            again = true;
                        }
                        Decision::Ignore => e.seen_reply |= dir == Dir::Reply,
                        Decision::Partial(_) => unreachable!("TCP decides whole"),
                        Decision::Accept(a) => {
                            if a.kill {
                                entry = None;
                            } else {
                                e.seen_reply |= dir == Dir::Reply;
                                e.assured |= a.assured;
                                if let Some(t) = a.timeout {
                                    e.expires = now + t;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// A number near `anchor` most of the time.
fn near(anchor: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (-70_000i32..70_000).prop_map(move |d| anchor.wrapping_add(d as u32)),
        1 => Just(anchor),
        1 => any::<u32>(),
    ]
}

fn side(anchor: u32) -> impl Strategy<Value = Side> {
    (
        near(anchor),
        near(anchor),
        prop_oneof![
            1 => Just(0u32),
            1 => Just(1u32),
            3 => 1u32..200_000,
            1 => any::<u32>()
        ],
        near(anchor),
    )
        .prop_map(|(end, maxend, maxwin, maxack)| Side {
            end,
            maxend,
            maxwin,
            maxack,
        })
}

/// Every set of flags a last segment can hold.
const LAST_FLAG_SETS: [u8; 16] = {
    let bits = [F_WSCALE, F_SACK_PERM, F_CHALLENGE_ACK, F_SIMULTANEOUS_OPEN];
    let mut sets = [0; 16];
    let mut i = 0;
    while i < 16 {
        let mut b = 0;
        while b < 4 {
            if i & (1 << b) != 0 {
                sets[i] |= bits[b];
            }
            b += 1;
        }
        i += 1;
    }
    sets
};

/// Any state the tracker could be handed: every connection state, sides near each other (or
/// not), any flag bits, any memory of the last segment. Scales stay within 14, as the option
/// parser guarantees.
fn arbitrary_state() -> impl Strategy<Value = TcpState> {
    any::<u32>().prop_flat_map(|a| {
        let b = a.wrapping_add(0x4000_0000);
        (
            (side(a), side(b)),
            (near(a), near(b), near(a), any::<u16>()),
            ((0u8..=14, 0u8..=14), (any::<u8>(), any::<u8>())),
            (0usize..10, 0u8..2, 0usize..6, 0u8..=14),
            (
                proptest::sample::select(LAST_FLAG_SETS.to_vec()),
                prop_oneof![0u8..5, any::<u8>()],
            ),
        )
            .prop_map(
                |(
                    (s0, s1),
                    (last_seq, last_ack, last_end, last_win),
                    ((sc0, sc1), (f0, f1)),
                    (state, last_dir, last_index, last_wscale),
                    (last_flags, retrans),
                )| {
                    let mut st = TcpState {
                        seen: [s0, s1],
                        last_seq,
                        last_ack,
                        last_end,
                        last_win,
                        state: STATES[state].0,
                        retrans,
                        ..TcpState::default()
                    };
                    st.set_scale(0, sc0);
                    st.set_scale(1, sc1);
                    st.set_flags(0, f0);
                    st.set_flags(1, f1);
                    st.set_last_dir(last_dir);
                    st.set_last_index(CLASS_OF[last_index]);
                    st.set_last_wscale(last_wscale);
                    st.set_last_flags(last_flags);
                    st
                },
            )
    })
}

/// From an arbitrary state, a run of segments with arbitrary entry bits and times.
fn run_arbitrary(
    start: TcpState,
    segs: &[(Gen, bool, bool, u64, u64)],
    s: &Sysctl,
    mut stats: Option<&mut Stats>,
) -> Result<(), TestCaseError> {
    let mut st = start;
    for (g, seen_reply, assured, now, left) in segs {
        let dir = if g.from_b { Dir::Reply } else { Dir::Original };
        let (snd, rcv) = (st.side(dir), st.side(dir.flip()));
        let seq = seq_of(g.seq, snd, rcv, span(g.flags, g.data_len));
        let ack = ack_of(g.ack, snd, rcv);
        let options = g.opts.bytes(ack);
        let seg = Segment {
            seq,
            ack,
            flags: g.flags,
            window: g.window,
            data_len: g.data_len,
            options: &options,
        };
        let ctx = Ctx {
            dir,
            confirmed: true,
            seen_reply: *seen_reply,
            assured: *assured,
            now: *now,
            expires: now.saturating_add(*left),
        };
        if both(&mut st, &seg, &ctx, s, &mut stats)?.decision == Decision::Reopen {
            st = new_conn(&seg, s).unwrap_or(start);
        }
    }
    Ok(())
}

fn expiry_left() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(120 * NANOS_PER_SEC),
        Just(300 * NANOS_PER_SEC),
        (0u64..1_000_000).prop_map(|s| s * NANOS_PER_SEC / 1000),
        any::<u64>(),
    ]
}

proptest! {
    /// Realistic entries: the production tracker decides and records exactly as the general path.
    #[test]
    fn fast_matches_reference_realistic(
        gens in proptest::collection::vec(segment(), 1..80),
        opening in prop_oneof![1 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 6 => Just(3u8), 1 => Just(4u8)],
        s in sysctl(),
    ) {
        run_realistic(&gens, opening, &s, None)?;
    }

    /// Arbitrary starting states and entry bits: the same.
    #[test]
    fn fast_matches_reference_arbitrary(
        start in arbitrary_state(),
        segs in proptest::collection::vec(
            (segment(), any::<bool>(), any::<bool>(), any::<u64>(), expiry_left()), 1..24),
        s in sysctl(),
    ) {
        run_arbitrary(start, &segs, &s, None)?;
    }
}

/// The generators reach the common case often and every corner of the state machine.
#[test]
fn generators_cover_the_state_machine() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut stats = Stats::default();
    let strategy = (
        proptest::collection::vec(segment(), 1..80),
        prop_oneof![1 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 6 => Just(3u8), 1 => Just(4u8)],
        sysctl(),
    );
    for _ in 0..400 {
        let (gens, opening, s) = strategy.new_tree(&mut runner).unwrap().current();
        run_realistic(&gens, opening, &s, Some(&mut stats)).unwrap();
    }
    let mut arb = Stats::default();
    let strategy = (
        arbitrary_state(),
        proptest::collection::vec(
            (
                segment(),
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
                expiry_left(),
            ),
            1..24,
        ),
        sysctl(),
    );
    for _ in 0..400 {
        let (start, segs, s) = strategy.new_tree(&mut runner).unwrap().current();
        run_arbitrary(start, &segs, &s, Some(&mut arb)).unwrap();
    }
    // The common case is a large share of the realistic runs.
    assert!(
        stats.fast_eligible * 5 > stats.segments,
        "{} of {}",
        stats.fast_eligible,
        stats.segments
    );
    assert!(arb.fast_eligible > 100, "{arb:?}");
    // And `track_established` answers most of it alone (the rest: segments outside the
    // window under strict tracking, and first segments of picked-up senders).
    assert!(
        stats.established * 4 > stats.fast_eligible * 3,
        "{} of {}",
        stats.established,
        stats.fast_eligible
    );
    // Every state meets every valid class, in the two drivers together.
    let mut all = stats.combos.clone();
    all.extend(arb.combos.iter().map(|(&k, &n)| (k, n)));
    for state in 0..10u8 {
        for class in 0..5u8 {
            assert!(
                all.keys().any(|&(st, c, _)| st == state && c == class),
                "state {state} class {class} never seen"
            );
        }
    }
    // Every kind of decision comes out of the realistic driver.
    for kind in 0..5u8 {
        assert!(
            stats.combos.keys().any(|&(_, _, k)| k == kind),
            "decision kind {kind} never seen: {:?}",
            stats.combos
        );
    }
    eprintln!(
        "realistic: {} segments, {} fast-path eligible, {} combos; arbitrary: {} segments, {} eligible, {} combos",
        stats.segments,
        stats.fast_eligible,
        stats.combos.len(),
        arb.segments,
        arb.fast_eligible,
        arb.combos.len()
    );
}

proptest! {
    /// A new connection's first segment: [`open_syn`] answers every plain SYN (whatever its
    /// PSH, URG, ECE and CWR bits, sequence number, window, length and options, under any
    /// sysctls) exactly as [`new_conn`] then [`track_full`] do, state included, and nothing
    /// else.
    #[test]
    fn open_syn_matches_new_conn_then_track(
        flags in prop_oneof![
            8 => prop_oneof![Just(0u8), Just(PSH), Just(URG), Just(ECE | CWR), Just(0xe8)]
                .prop_map(|e| SYN | e),
            1 => any::<u8>(),
        ],
        seq in any::<u32>(),
        g in segment(),
        s in sysctl(),
    ) {
        let opts = g.opts.bytes(0);
        let seg = Segment::new(seq, 0, flags, g.window, g.data_len % 70_000).with_options(&opts);
        let ctx = Ctx::opening(5 * NANOS_PER_SEC);
        let general = new_conn(&seg, &s).map(|mut st| {
            let v = track_full(&mut st, &seg, &ctx, &s);
            (st, v)
        });
        match open_syn(&seg, &s) {
            Some((st, r)) => {
                let (gst, v) = general.expect("a plain SYN always opens");
                prop_assert_eq!(st, gst);
                // The general path moves the new state out of NONE: a change, which a new
                // entry's event reports anyway.
                prop_assert_eq!(v.decision, Decision::Accept(Accept { changed: true, ..r.into() }));
                prop_assert_eq!(v.lower_timeout, None);
            }
            None => prop_assert!(flags & (SYN | ACK | FIN | RST) != SYN),
        }
    }
}
