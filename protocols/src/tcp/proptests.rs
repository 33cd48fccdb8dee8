//! Property tests: parsing and tracking never panic, whatever the bytes or the order of
//! segments in either direction; after each segment the window bookkeeping keeps its
//! invariants.

use super::*;
use crate::NANOS_PER_SEC;
use proptest::prelude::*;

/// How a generated segment picks its numbers.
#[derive(Clone, Debug)]
struct Gen {
    /// The engine direction bit (which endpoint sends).
    from_b: bool,
    /// Index into [`FLAG_CHOICES`], plus extra PSH/ECE/CWR bits.
    flags: usize,
    extra: u8,
    /// Relative to the sender's end (or absolute when `wild`).
    seq_delta: i32,
    /// Relative to the receiver's end (or absolute when `wild`).
    ack_delta: i32,
    wild: bool,
    raw_seq: u32,
    raw_ack: u32,
    window: u16,
    data_len: u32,
    options: Vec<u8>,
    /// Seconds to wait before the segment.
    wait_ms: u32,
}

/// Flag bytes to draw from: all valid classes plus a few invalid ones.
const FLAG_CHOICES: [u8; 12] = [
    SYN,
    SYN | ACK,
    ACK,
    ACK,
    ACK,
    FIN | ACK,
    RST,
    RST | ACK,
    SYN | URG,
    ACK | URG,
    FIN,
    SYN | FIN,
];

/// Options to draw from: none, SYN-style, SACK blocks, garbage.
fn options() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => (0u8..20, any::<bool>()).prop_map(|(ws, sack)| {
            let mut o = vec![2, 4, 5, 0xb4, 1, 3, 3, ws];
            if sack {
                o.extend_from_slice(&[1, 1, 4, 2]);
            }
            o
        }),
        1 => (any::<u32>(), -5000i32..5000, 1usize..4).prop_map(|(l, r, n)| {
            let mut o = vec![1, 1, 5, (2 + 8 * n) as u8];
            for i in 0..n {
                o.extend_from_slice(&l.wrapping_add(i as u32).to_be_bytes());
                o.extend_from_slice(&(r as u32).wrapping_add(i as u32).to_be_bytes());
            }
            o
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn segment_gen() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        0..FLAG_CHOICES.len(),
        prop_oneof![Just(0u8), Just(PSH), Just(ECE | CWR)],
        -70_000i32..70_000,
        -70_000i32..70_000,
        prop::bool::weighted(0.1),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![any::<u16>(), Just(0u16), 1u16..2000],
        prop_oneof![Just(0u32), 1u32..3000, Just(1u32)],
        options(),
        prop_oneof![Just(0u32), 1u32..3000, Just(200_000)],
    )
        .prop_map(
            |(
                from_b,
                flags,
                extra,
                seq_delta,
                ack_delta,
                wild,
                raw_seq,
                raw_ack,
                window,
                data_len,
                options,
                wait_ms,
            )| Gen {
                from_b,
                flags,
                extra,
                seq_delta,
                ack_delta,
                wild,
                raw_seq,
                raw_ack,
                window,
                data_len,
                options,
                wait_ms,
            },
        )
}

fn sysctl() -> impl Strategy<Value = Sysctl> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0u32..5).prop_map(|(loose, lib, rst, mr)| {
        Sysctl {
            nf_conntrack_tcp_loose: u32::from(loose),
            nf_conntrack_tcp_be_liberal: u32::from(lib),
            nf_conntrack_tcp_ignore_invalid_rst: u32::from(rst),
            nf_conntrack_tcp_max_retrans: mr,
            nf_conntrack_tcp_timeout_syn_sent: 5,
            nf_conntrack_tcp_timeout_close: 3,
            ..Sysctl::default()
        }
    })
}

/// One entry driven like the engine drives it.
struct Entry {
    st: TcpState,
    /// Which endpoint (`Gen::from_b`) sent the entry's first segment.
    orig_b: bool,
    seen_reply: bool,
    assured: bool,
    expires: Nanos,
}

/// Checks what must hold after every segment; `before` is the state the segment saw.
fn check_invariants(
    before: &TcpState,
    after: &TcpState,
    dir: Dir,
    seg: &Segment<'_>,
    d: Decision,
    s: &Sysctl,
) {
    for side in [Dir::Original, Dir::Reply] {
        assert!(after.scale(side) <= options::MAX_WSCALE);
        let (b, a) = (before.side(side), after.side(side));
        // Once initialised, a side keeps a window of at least 1.
        if b.maxwin != 0 {
            assert_ne!(a.maxwin, 0, "{side:?} lost its window");
        }
        // Accepted strict segments never move a known end backwards (a SYN/ACK may resync).
        let strict = s.nf_conntrack_tcp_be_liberal == 0
            && !before.liberal(Dir::Original)
            && !before.liberal(Dir::Reply);
        if strict
            && matches!(d, Decision::Accept(_))
            && b.maxwin != 0
            && Class::of(seg.flags) != Class::SynAck
        {
            assert!(!super::before(a.end, b.end), "{side:?} end moved back");
        }
        // The highest ACK only grows, except where a SYN or SYN/ACK with higher sequence
        // numbers starts its side over (as the kernel's `tcp_options` does, the side's flags
        // are reset then, `F_MAXACK_SET` with them, and its next acknowledgement is taken as
        // it comes).
        let restarts = matches!(Class::of(seg.flags), Class::Syn | Class::SynAck);
        if before.flags(side.idx()) & F_MAXACK_SET != 0
            && matches!(d, Decision::Accept(_))
            && !restarts
        {
            assert!(
                !super::before(a.maxack, b.maxack),
                "{side:?} maxack moved back"
            );
        }
    }
    let class = Class::of(seg.flags);
    match d {
        Decision::Reopen => {
            assert_eq!(class, Class::Syn);
            assert!(matches!(before.state(), State::TimeWait | State::Close));
            assert_eq!(after, before);
        }
        Decision::Accept(a) if a.kill => assert_eq!(class, Class::Rst),
        _ => {}
    }
    let _ = dir;
}

fn run(gens: &[Gen], s: &Sysctl, check: bool) {
    let mut entry: Option<Entry> = None;
    let mut now: Nanos = NANOS_PER_SEC;
    for g in gens {
        now += Nanos::from(g.wait_ms) * 1_000_000;
        if entry.as_ref().is_some_and(|e| e.expires <= now) {
            entry = None;
        }
        let flags = FLAG_CHOICES[g.flags] | g.extra;
        let (seq, ack) = match &entry {
            Some(e) if !g.wild => {
                let dir = if g.from_b == e.orig_b {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                let snd = e.st.side(dir).end;
                let rcv = e.st.side(dir.flip()).end;
                (
                    snd.wrapping_add(g.seq_delta as u32),
                    rcv.wrapping_add(g.ack_delta as u32),
                )
            }
            _ => (g.raw_seq, g.raw_ack),
        };
        let seg = Segment {
            seq,
            ack,
            flags,
            window: g.window,
            data_len: g.data_len,
            options: &g.options,
        };
        if !flags_valid(flags) {
            continue; // parse() refuses it before any tracker sees it
        }
        let mut again = true;
        while again {
            again = false;
            match &mut entry {
                None => {
                    let Some(mut st) = new_conn(&seg, s) else {
                        break;
                    };
                    let ctx = Ctx::opening(now);
                    let before = st;
                    let d = track(&mut st, &seg, &ctx, s);
                    if check {
                        check_invariants(&before, &st, Dir::Original, &seg, d, s);
                    }
                    // The first segment of a new entry is always accepted with a timeout.
                    assert!(
                        matches!(d, Decision::Accept(a) if a.timeout.is_some() && !a.kill),
                        "{d:?}"
                    );
                    if let Decision::Accept(a) = d {
                        entry = Some(Entry {
                            st,
                            orig_b: g.from_b,
                            seen_reply: false,
                            assured: a.assured,
                            expires: now + a.timeout.unwrap_or(0),
                        });
                    }
                }
                Some(e) => {
                    let dir = if g.from_b == e.orig_b {
                        Dir::Original
                    } else {
                        Dir::Reply
                    };
                    let ctx = Ctx {
                        dir,
                        confirmed: true,
                        seen_reply: e.seen_reply,
                        assured: e.assured,
                        now,
                        expires: e.expires,
                    };
                    let before = e.st;
                    let v = track_full(&mut e.st, &seg, &ctx, s);
                    if check {
                        check_invariants(&before, &e.st, dir, &seg, v.decision, s);
                    }
                    if v.lower_timeout.is_some() {
                        assert_eq!(v.decision, Decision::Invalid);
                        assert!(e.assured);
                    }
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
                                assert!(!e.seen_reply);
                                entry = None;
                            } else {
                                assert!(a.timeout.is_some() || !e.seen_reply);
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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(seg) = parse(&bytes) {
            let hlen = usize::from(bytes[12] >> 4) * 4;
            prop_assert_eq!(seg.data_len as usize + hlen, bytes.len());
            prop_assert_eq!(seg.options.len() + MIN_HEADER, hlen);
            prop_assert!(flags_valid(seg.flags));
        }
    }

    #[test]
    fn option_walks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48), ack: u32) {
        let _ = options::syn_options(&bytes);
        let s = options::highest_sack(&bytes, ack);
        // The acknowledgement itself or a right edge from the options. (Not necessarily after
        // the acknowledgement: edges are compared one after another, as the kernel does, and
        // "after" is not transitive modulo 2^32.)
        prop_assert!(s == ack || bytes.windows(4).any(|w| w == s.to_be_bytes()));
    }

    #[test]
    fn tracking_keeps_invariants(gens in proptest::collection::vec(segment_gen(), 1..60), s in sysctl()) {
        run(&gens, &s, true);
    }

    /// Arbitrary header bytes in arbitrary order, and arbitrary entry bits: no panic.
    #[test]
    fn track_never_panics(
        pkts in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), any::<bool>(),
             proptest::collection::vec(any::<u8>(), 20..72)),
            1..40),
        s in sysctl(),
        now: u64,
        expires: u64,
    ) {
        let mut st: Option<TcpState> = None;
        for (reply, seen_reply, assured, bytes) in &pkts {
            let mut b = bytes.clone();
            // Keep the data offset sane often enough to get past parse().
            if b[12] >> 4 < 5 {
                b[12] = 0x50 | (b[12] & 0x0f);
            }
            let Ok(seg) = parse(&b) else { continue };
            let dir = if *reply { Dir::Reply } else { Dir::Original };
            match st.as_mut() {
                None => st = new_conn(&seg, &s),
                Some(t) => {
                    let ctx = Ctx { dir, confirmed: true, seen_reply: *seen_reply,
                                    assured: *assured, now, expires };
                    let v = track_full(t, &seg, &ctx, &s);
                    prop_assert!(t.scale(Dir::Original) <= 14 && t.scale(Dir::Reply) <= 14);
                    if v.decision == Decision::Reopen {
                        st = None;
                    }
                }
            }
        }
    }
}

/// One write to a packed field of [`TcpState`].
#[derive(Clone, Debug)]
enum Write {
    Flags(usize, u8),
    Scale(usize, u8),
    LastIndex(usize),
    LastDir(u8),
    Last(usize, u8),
    LastWscale(u8),
    LastFlags(u8),
}

fn write() -> impl Strategy<Value = Write> {
    let last_flags = (0u8..16).prop_map(|c| {
        [F_WSCALE, F_SACK_PERM, F_CHALLENGE_ACK, F_SIMULTANEOUS_OPEN]
            .iter()
            .enumerate()
            .filter(|(b, _)| c & (1 << b) != 0)
            .fold(0, |f, (_, bit)| f | bit)
    });
    prop_oneof![
        (0usize..2, any::<u8>()).prop_map(|(d, f)| Write::Flags(d, f)),
        (0usize..2, 0u8..=14).prop_map(|(d, s)| Write::Scale(d, s)),
        (0usize..6).prop_map(Write::LastIndex),
        (0u8..2).prop_map(Write::LastDir),
        (0usize..6, 0u8..2).prop_map(|(c, d)| Write::Last(c, d)),
        (0u8..=14).prop_map(Write::LastWscale),
        last_flags.prop_map(Write::LastFlags),
    ]
}

proptest! {
    /// The packed fields behave as separate fields: after any writes, each reads back what
    /// was last written to it (a side's flags without the two that only the last segment
    /// holds), and the unpacked fields are untouched.
    #[test]
    fn packed_fields_are_independent(
        writes in proptest::collection::vec(write(), 0..40),
        add in (0usize..2, any::<u8>()),
        clear in (0usize..2, any::<u8>()),
    ) {
        let mut st = TcpState { last_seq: 7, last_win: 9, retrans: 3, ..TcpState::default() };
        let (mut flags, mut scale) = ([0u8; 2], [0u8; 2]);
        let (mut index, mut dir, mut wscale, mut last) = (Class::None, 0, 0, 0);
        for w in &writes {
            match *w {
                Write::Flags(d, f) => { st.set_flags(d, f); flags[d] = f & SIDE_FLAGS; }
                Write::Scale(d, s) => { st.set_scale(d, s); scale[d] = s; }
                Write::LastIndex(c) => { st.set_last_index(CLASS_OF[c]); index = CLASS_OF[c]; }
                Write::LastDir(d) => { st.set_last_dir(d); dir = d; }
                Write::Last(c, d) => {
                    st.set_last(CLASS_OF[c], d);
                    (index, dir) = (CLASS_OF[c], d);
                }
                Write::LastWscale(s) => { st.set_last_wscale(s); wscale = s; }
                Write::LastFlags(f) => { st.set_last_flags(f); last = f; }
            }
        }
        let (d, f) = add;
        st.add_flags(d, f & SIDE_FLAGS);
        flags[d] |= f & SIDE_FLAGS;
        let (d, f) = clear;
        st.clear_flags(d, f);
        flags[d] &= !f;
        prop_assert_eq!([st.flags(0), st.flags(1)], flags);
        for f in [F_WSCALE, F_SACK_PERM, F_CLOSE_INIT, F_BE_LIBERAL, F_DATA_UNACK, F_MAXACK_SET] {
            prop_assert_eq!(st.either_has(f), (flags[0] | flags[1]) & f != 0);
        }
        prop_assert_eq!([st.scale_of(0), st.scale_of(1)], scale);
        prop_assert_eq!(st.scale(Dir::Reply), scale[1]);
        prop_assert_eq!(st.last_index(), index);
        prop_assert_eq!(st.last_dir(), dir);
        prop_assert_eq!(st.last_wscale(), wscale);
        prop_assert_eq!(st.last_flags(), last);
        prop_assert_eq!((st.last_seq, st.last_win, st.retrans, st.state), (7, 9, 3, State::None));
    }
}
