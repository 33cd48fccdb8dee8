//! The per-segment fast path: an ACK-class segment (ACK, with or without PSH, URG, ECE, CWR;
//! no SYN, FIN or RST) of an ESTABLISHED entry whose sender side is initialised, which meets
//! all four window bounds. That is almost every segment of a running connection.
//!
//! For such a segment the general code's outcome is fixed: the transition is ESTABLISHED ->
//! ESTABLISHED with none of its special cases, the window check accepts (so liberal tracking
//! does not matter), and the timeout choice can only pick the established, retransmission or
//! unacknowledged timeout. This module computes exactly that with the state read once;
//! nothing is written before every bound has passed. A segment that fails a bound gets the
//! outcome of the first bound it fails (ignored or invalid, as `in_window` decides), or under
//! liberal tracking the acceptance that replaces it (see [`liberal_pass`]); the rare rest (a
//! sender not yet seen) goes to the general code untouched.
//!
//! The differential property test (`difftests.rs`) holds this, with the general code behind it,
//! to the frozen reference implementation.

use super::options::{OPT_NOP, OPT_TIMESTAMP, highest_sack};
use super::window::MAX_ACK_WINDOW_FLOOR;
use super::{
    ACK, Class, F_BE_LIBERAL, F_DATA_UNACK, F_MAXACK_SET, F_SACK_PERM, FIN, RST, SYN, Segment,
    Side, State, TcpState, Verdict, after, before, choose_timeout, track_general,
};
use crate::sysctl::Sysctl;
use crate::{Ctx, Decision, Dir, Refresh, secs};

/// The flag bits that decide a segment's class; the fast path takes `ACK` alone among them.
const CLASS_BITS: u8 = SYN | FIN | RST | ACK;

/// Whether `seg` may be the common case: an ACK-class segment of an ESTABLISHED entry. The
/// rest is decided by [`established_ack`].
#[inline(always)]
pub(super) fn candidate(st: &TcpState, seg: &Segment<'_>) -> bool {
    st.state == State::Established && seg.flags & CLASS_BITS == ACK
}

/// Tracks a [`candidate`] segment: in window by [`track_established`], anything else by
/// [`turned_down`].
#[inline(always)]
pub(super) fn established_ack(
    st: &mut TcpState,
    seg: &Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> Verdict {
    match track_established(st, seg, ctx, s) {
        Some(r) => Decision::Accept(r.into()).into(),
        None => match ctx.dir {
            Dir::Original => turned_down::<0>(st, seg, ctx, s),
            Dir::Reply => turned_down::<1>(st, seg, ctx, s),
        },
    }
}

/// The common case alone: `Some` for an ACK-class segment (no SYN, FIN or RST) of an
/// ESTABLISHED entry whose sender's window is known, when it meets all four window bounds or
/// its sender is tracked liberally (the state then updated exactly as [`super::track_full`]
/// would, which would accept it with the same refresh); `None` with the state untouched
/// otherwise, for `track_full` to decide.
///
/// This lets an engine keep the common outcome, a plain refresh, apart from the general
/// [`Decision`] it has to merge with every other outcome (merged, the outcome goes through
/// memory, and its wide reload stalls on store forwarding).
#[inline(always)]
pub fn track_established(
    st: &mut TcpState,
    seg: &Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> Option<Refresh> {
    if !candidate(st, seg) {
        return None;
    }
    // One copy per direction: every field offset is then a constant.
    match ctx.dir {
        Dir::Original => established_ack_from::<0>(st, seg, ctx, s),
        Dir::Reply => established_ack_from::<1>(st, seg, ctx, s),
    }
}

/// [`established_ack`] for a segment from direction `D` (0 original, 1 reply).
#[inline(always)]
fn established_ack_from<const D: usize>(
    st: &mut TcpState,
    seg: &Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> Option<Refresh> {
    let (d, r) = (D, 1 - D);
    let snd_maxwin = st.seen[d].maxwin;
    if snd_maxwin == 0 {
        // A picked-up connection's first segment this way: the general code initialises it.
        return None;
    }
    let (seq, ack, window) = (seg.seq, seg.ack, seg.window);
    let end = seq.wrapping_add(seg.data_len);
    let sack = if st.flags(r) & F_SACK_PERM != 0 && !sack_free(seg.options) {
        sack_edge(seg.options, ack)
    } else {
        ack
    };
    let rcv_end = st.seen[r].end;
    let rcv_maxwin = st.seen[r].maxwin;
    let snd_end = st.seen[d].end;
    let snd_maxend = st.seen[d].maxend;

    // The four bounds, as `in_window` checks them: I (starts within what the receiver
    // allowed), III (acknowledges nothing unsent), II (not an old retransmission; always met
    // while the receiver's window is unknown), IV (acknowledgement not too old).
    let in_window = before(seq, snd_maxend.wrapping_add(1))
        && before(sack, rcv_end.wrapping_add(1))
        && (rcv_maxwin == 0 || after(end, snd_end.wrapping_sub(rcv_maxwin).wrapping_sub(1)))
        && after(
            sack,
            rcv_end
                .wrapping_sub(snd_maxwin.max(MAX_ACK_WINDOW_FLOOR))
                .wrapping_sub(1),
        );
    let unack_t = s.nf_conntrack_tcp_timeout_unacknowledged;
    let timeout = if in_window {
        // Retransmission count: the same ACK again from the same side (these fields are not
        // touched by the window bookkeeping, so doing this first changes nothing).
        super::window::note_ack(st, d as u8, seq, ack, end, window);

        // The bookkeeping `in_window` does, in the same order (the sides are distinct, so the
        // order between them does not matter).
        let win = u32::from(window) << st.scale_of(d);
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        st.seen[d].maxwin = snd_maxwin.max(swin);
        let flags_d = st.flags(d);
        let mut added = F_MAXACK_SET;
        if after(end, snd_end) {
            st.seen[d].end = end;
            added |= F_DATA_UNACK;
        }
        if flags_d & F_MAXACK_SET == 0 || after(ack, st.seen[d].maxack) {
            st.seen[d].maxack = ack;
        }
        st.add_flags(d, added);
        if rcv_maxwin != 0 && after(end, snd_maxend) {
            st.seen[r].maxwin = rcv_maxwin.wrapping_add(end.wrapping_sub(snd_maxend));
        }
        let right = sack.wrapping_add(win);
        if after(right, st.seen[r].maxend.wrapping_sub(1)) {
            st.seen[r].maxend = right.wrapping_add(u32::from(win == 0));
        }
        if ack == rcv_end {
            st.clear_flags(r, F_DATA_UNACK);
        }

        // `choose_timeout` for ESTABLISHED and a non-RST segment (`last_win` is now this
        // segment's window).
        let state_t = s.nf_conntrack_tcp_timeout_established;
        let retrans_t = s.nf_conntrack_tcp_timeout_max_retrans;
        if u32::from(st.retrans) >= s.nf_conntrack_tcp_max_retrans && state_t > retrans_t {
            retrans_t
        } else if st.either_has(F_DATA_UNACK) && state_t > unack_t {
            unack_t
        } else if window == 0 && state_t > retrans_t {
            retrans_t
        } else {
            state_t
        }
    } else if s.nf_conntrack_tcp_be_liberal != 0 || st.flags(d) & F_BE_LIBERAL != 0 {
        liberal_pass::<D>(st, seg, sack, s)
    } else {
        return None;
    };
    // Accepted with a reply seen: refresh, and assure if not yet. Before any reply (a
    // picked-up connection), refresh only, no longer than the "unacknowledged" timeout.
    let (timeout, assured) = if ctx.seen_reply {
        (timeout, !ctx.assured)
    } else {
        (timeout.min(unack_t), false)
    };
    Some(Refresh {
        timeout: secs(timeout),
        assured,
    })
}

/// A new connection's first segment when it is a plain SYN (SYN without ACK, FIN or RST; any
/// of PSH, URG, ECE, CWR): the state and the refresh that [`super::new_conn`] followed by
/// [`super::track_full`] produce for it, computed directly. `None` for any other segment, for
/// those two to decide.
///
/// For such a SYN the general code's path is fixed: NONE -> SYN_SENT, the sender side set up
/// from the SYN, and every window bound met (nothing is known of the receiver, whose end the
/// missing acknowledgement is taken to be), which leaves the receiver's right edge at the
/// SYN's (unscaled) window.
///
/// ```
/// use ctrack_protocols::sysctl::Sysctl;
/// use ctrack_protocols::tcp::{self, Segment, SYN};
/// let s = Sysctl::default();
/// let (st, r) = tcp::open_syn(&Segment::new(1000, 0, SYN, 64240, 0), &s).unwrap();
/// assert_eq!(tcp::state_name(&st), "SYN_SENT");
/// assert_eq!(r.timeout, 120 * 1_000_000_000);
/// assert!(tcp::open_syn(&Segment::new(1000, 1, SYN | tcp::ACK, 64240, 0), &s).is_none());
/// ```
#[inline(always)]
pub fn open_syn(seg: &Segment<'_>, s: &Sysctl) -> Option<(TcpState, Refresh)> {
    if seg.flags & CLASS_BITS != SYN {
        return None;
    }
    let mut st = TcpState::opened_by_syn(seg);
    st.seen[1].maxend = st.seen[0].maxwin;
    st.set_last_index(Class::Syn);
    st.state = State::SynSent;
    let timeout = choose_timeout(&st, State::SynSent, Class::Syn, s);
    Some((
        st,
        Refresh {
            timeout: secs(timeout),
            assured: false,
        },
    ))
}

/// A [`candidate`] segment from direction `D` (0 original, 1 reply) of a known sender that
/// failed a window bound under liberal tracking (the sysctl, or the sender's flag, which every
/// picked-up connection carries for life): accepted all the same, as `in_window` accepts it,
/// without the window bookkeeping but with the overshoot of bound I recorded when it is small
/// enough to be tolerated; ESTABLISHED stays ESTABLISHED. Returns the timeout in seconds,
/// chosen with the last in-window segment's window (`last_win`), as the general code chooses
/// it, for the caller to finish as it finishes an in-window segment. `sack` is the segment's
/// highest (selective) acknowledgement.
///
/// A capture that starts mid-connection tracks most of its segments here: without the window
/// scale its SYNs announced, the connection's windows look tiny.
#[cold]
#[inline(never)]
fn liberal_pass<const D: usize>(
    st: &mut TcpState,
    seg: &Segment<'_>,
    sack: u32,
    s: &Sysctl,
) -> u32 {
    let (d, r) = (D, 1 - D);
    let sender = st.seen[d];
    let receiver = st.seen[r];
    let end = seg.seq.wrapping_add(seg.data_len);
    if !before(seg.seq, sender.maxend.wrapping_add(1)) {
        let (ack_fresh, ack_seen) = ack_bounds(&sender, &receiver, sack);
        if overshoot_tolerated(&sender, &receiver, end, ack_fresh && ack_seen) {
            st.seen[d].end = end;
            st.add_flags(d, F_DATA_UNACK);
        }
    }
    st.set_last(Class::Ack, D as u8);
    choose_timeout(st, State::Established, Class::Ack, s)
}

/// Bounds IV and III for a segment whose (selective) acknowledgement is `sack`: whether it is
/// fresh (not too far behind what the receiver has sent) and whether it acknowledges only data
/// the receiver has sent.
#[inline(always)]
fn ack_bounds(sender: &Side, receiver: &Side, sack: u32) -> (bool, bool) {
    let fresh = after(
        sack,
        receiver
            .end
            .wrapping_sub(sender.maxwin.max(MAX_ACK_WINDOW_FLOOR))
            .wrapping_sub(1),
    );
    (fresh, before(sack, receiver.end.wrapping_add(1)))
}

/// For a segment ending at `end` that failed bound I (it starts past the receiver's window):
/// whether it overshoots by so little that `in_window` tolerates it (and records its end), given
/// whether its acknowledgement met bounds III and IV (`ack_ok`).
#[inline(always)]
fn overshoot_tolerated(sender: &Side, receiver: &Side, end: u32, ack_ok: bool) -> bool {
    let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
    let in_recv_win = receiver.maxwin != 0
        && after(
            end,
            sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
        );
    in_recv_win && ack_ok && overshot <= receiver.maxwin
}

/// A [`candidate`] segment [`established_ack_from`] turned down, from an untouched state.
///
/// An unknown sender window goes to the general code (liberal tracking, where a failed bound
/// still accepts the segment, never comes here: see [`liberal_pass`]). Otherwise the outcome is
/// the first failed bound's, in `in_window`'s order: I (beyond the window: the small overshoot
/// it tolerates is recorded and ignored, anything more is invalid), III (acknowledges unsent
/// data: invalid), II or IV (old segment or old acknowledgement: ignored). An invalid ACK-class
/// segment never lowers the timeout, so `handle_invalid` has nothing to do.
#[cold]
#[inline(never)]
fn turned_down<const D: usize>(
    st: &mut TcpState,
    seg: &Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> Verdict {
    let (d, r) = (D, 1 - D);
    let sender = st.seen[d];
    let receiver = st.seen[r];
    if sender.maxwin == 0 {
        return track_general(st, seg, ctx, s);
    }
    let end = seg.seq.wrapping_add(seg.data_len);
    let sack = if st.flags(r) & F_SACK_PERM != 0 {
        highest_sack(seg.options, seg.ack)
    } else {
        seg.ack
    };
    let (ack_fresh, ack_seen) = ack_bounds(&sender, &receiver, sack);
    if !before(seg.seq, sender.maxend.wrapping_add(1)) {
        // I: beyond what the receiver allowed.
        if overshoot_tolerated(&sender, &receiver, end, ack_fresh && ack_seen) {
            // A little more than the window: its end is remembered, the segment ignored.
            st.seen[d].end = end;
            st.add_flags(d, F_DATA_UNACK);
            return Decision::Ignore.into();
        }
        return Decision::Invalid.into();
    }
    if !ack_seen {
        // III: acknowledges data the receiver has not sent.
        return Decision::Invalid.into();
    }
    // II or IV (`established_ack_from` accepts whatever meets all four): an old segment or
    // an old acknowledgement.
    Decision::Ignore.into()
}

/// Option areas [`highest_sack`] answers with the acknowledgement itself without walking: none
/// at all, or Linux's lone aligned timestamp.
#[inline(always)]
fn sack_free(opts: &[u8]) -> bool {
    opts.is_empty() || (opts.len() == 12 && opts.get(..4) == Some(&TS_ALIGNED[..]))
}

/// NOP, NOP, timestamp kind and length: how Linux starts the options of every segment.
const TS_ALIGNED: [u8; 4] = [OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10];

/// The SACK walk, out of line so the fast path keeps its registers.
#[inline(never)]
fn sack_edge(opts: &[u8], ack: u32) -> u32 {
    highest_sack(opts, ack)
}
