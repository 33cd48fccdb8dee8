//! Sequence and window tracking: the four bounds a segment must meet (after Guido van Rooij's
//! "Real Stateful TCP Packet Filtering in IP Filter", as Linux applies them), and the
//! bookkeeping an accepted segment leaves behind.

use super::options::highest_sack;
use super::{
    ACK, Class, F_BE_LIBERAL, F_DATA_UNACK, F_MAXACK_SET, F_SACK_PERM, F_WSCALE, RST, SYN, Segment,
    State, TcpState, after, before,
};
use crate::Dir;
use crate::sysctl::Sysctl;

/// The smallest window the ACK lower bound (IV) allows for: acknowledgements this far behind
/// the receiver's highest sequence are still fresh.
pub const MAX_ACK_WINDOW_FLOOR: u32 = 66_000;

/// What the window check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowVerdict {
    /// In window: the caller goes on with the state change and the timeout.
    Accept,
    /// Outside the window in a way that may be our own fault: pass it, change nothing more.
    Ignore,
    /// Outside the window for sure: the packet loses its entry.
    Invalid,
}

/// Sets a side up from a SYN or SYN/ACK: its end and window, the options it announces. A reply
/// SYN settles window scaling: unless both sides sent the option, neither side scales.
pub(super) fn init_sender(st: &mut TcpState, dir: Dir, seg: &Segment<'_>, end: u32) {
    let (d, r) = (dir.idx(), dir.flip().idx());
    st.seen[d].end = end;
    st.seen[d].maxend = end;
    st.seen[d].maxwin = u32::from(seg.window).max(1);
    st.apply_syn_options(d, seg.options);
    if dir == Dir::Reply && !(st.flags(d) & F_WSCALE != 0 && st.flags(r) & F_WSCALE != 0) {
        st.set_scale(d, 0);
        st.set_scale(r, 0);
    }
}

/// Checks a segment against the sender's and receiver's windows and, when it is in window,
/// records what it shows. Liberal tracking (the sysctl or the side's flag) turns every failure
/// into [`WindowVerdict::Accept`] without recording anything.
pub(super) fn in_window(
    st: &mut TcpState,
    dir: Dir,
    index: Class,
    seg: &Segment<'_>,
    s: &Sysctl,
) -> WindowVerdict {
    let (d, r) = (dir.idx(), dir.flip().idx());
    let has_ack = seg.flags & ACK != 0;
    let is_syn = seg.flags & SYN != 0;
    let is_rst = seg.flags & RST != 0;

    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut sack = ack;
    let win_raw = seg.window;
    let mut win = u32::from(win_raw);
    let mut end = seg.end();

    if st.flags(r) & F_SACK_PERM != 0 {
        sack = highest_sack(seg.options, sack);
    }

    if st.seen[d].maxwin == 0 {
        if is_syn {
            // First SYN/ACK, or the reply side's SYN in a simultaneous open.
            init_sender(st, dir, seg, end);
            if !has_ack {
                return WindowVerdict::Accept;
            }
        } else {
            // The sender's history is unknown (picked-up connection): trust this segment.
            st.seen[d].end = end;
            let swin = win << st.scale_of(d);
            st.seen[d].maxwin = swin.max(1);
            st.seen[d].maxend = end.wrapping_add(st.seen[d].maxwin);
            if st.seen[r].maxwin == 0 {
                // Nothing seen the other way yet: make the ACK bounds pass until it is.
                st.seen[r].end = sack;
                st.seen[r].maxend = sack;
            } else if sack == st.seen[r].end.wrapping_add(1) {
                // Most likely answering a keepalive probe.
                st.seen[r].end = st.seen[r].end.wrapping_add(1);
            }
        }
    } else if is_syn
        && after(end, st.seen[d].end)
        && matches!(st.state, State::SynSent | State::SynRecv)
    {
        // A new SYN with higher sequence numbers: the endpoint restarted; start the side over.
        init_sender(st, dir, seg, end);
        if dir == Dir::Reply && !has_ack {
            return WindowVerdict::Accept;
        }
    }

    if !has_ack || (is_rst && ack == 0) {
        // No acknowledgement (or a broken stack's RST|ACK with ack 0): assume a perfect one.
        ack = st.seen[r].end;
        sack = ack;
    }

    if is_rst && seq == 0 && st.state == State::SynSent {
        // An RST answering our SYN, as some stacks send it.
        seq = st.seen[d].end;
        end = seq;
    }

    let liberal = s.nf_conntrack_tcp_be_liberal != 0 || st.flags(d) & F_BE_LIBERAL != 0;
    let fail = |v: WindowVerdict| if liberal { WindowVerdict::Accept } else { v };

    let sender = st.seen[d];
    let receiver = st.seen[r];
    let max_ack_window = sender.maxwin.max(MAX_ACK_WINDOW_FLOOR);
    // IV: the (s)ack is not too far behind what the receiver has sent.
    let ack_fresh = after(
        sack,
        receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
    );
    // III: the (s)ack does not cover data the receiver has not sent.
    let ack_seen = before(sack, receiver.end.wrapping_add(1));

    // I: the segment starts within what the receiver allowed.
    if !before(seq, sender.maxend.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
        let in_recv_win = receiver.maxwin != 0
            && after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            );
        if in_recv_win && ack_fresh && overshot <= receiver.maxwin && ack_seen {
            // A little more than the window: tolerated, and its end remembered so that the
            // receiver's acknowledgement of it passes III.
            st.seen[d].end = end;
            st.add_flags(d, F_DATA_UNACK);
            return fail(WindowVerdict::Ignore);
        }
        return fail(WindowVerdict::Invalid);
    }
    if !ack_seen {
        return fail(WindowVerdict::Invalid);
    }
    // II: the segment ends after the receiver's window start (else: an old retransmission).
    let in_recv_win = receiver.maxwin == 0
        || after(
            end,
            sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
        );
    if !in_recv_win {
        return fail(WindowVerdict::Ignore);
    }
    if !ack_fresh {
        return fail(WindowVerdict::Ignore);
    }

    // In window: windows in SYNs are never scaled.
    if !is_syn {
        win <<= st.scale_of(d);
    }

    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if st.seen[d].maxwin < swin {
        st.seen[d].maxwin = swin;
    }
    if after(end, st.seen[d].end) {
        st.seen[d].end = end;
        st.add_flags(d, F_DATA_UNACK);
    }
    if has_ack {
        if st.flags(d) & F_MAXACK_SET == 0 {
            st.seen[d].maxack = ack;
            st.add_flags(d, F_MAXACK_SET);
        } else if after(ack, st.seen[d].maxack) {
            st.seen[d].maxack = ack;
        }
    }

    let sender_maxend = st.seen[d].maxend;
    if st.seen[r].maxwin != 0 && after(end, sender_maxend) {
        st.seen[r].maxwin = st.seen[r]
            .maxwin
            .wrapping_add(end.wrapping_sub(sender_maxend));
    }
    let right = sack.wrapping_add(win);
    if after(right, st.seen[r].maxend.wrapping_sub(1)) {
        st.seen[r].maxend = if win == 0 {
            right.wrapping_add(1)
        } else {
            right
        };
    }
    if ack == st.seen[r].end {
        st.clear_flags(r, F_DATA_UNACK);
    }

    if index == Class::Ack {
        note_ack(st, dir as u8, seq, ack, end, win_raw);
    }
    WindowVerdict::Accept
}

/// Records an in-window ACK-class segment from `d8`, which becomes the last segment (class
/// ACK, direction `d8`): the same (direction, seq, ack, end, raw window) as the last one
/// counts as a retransmission, anything else becomes the new last segment.
#[inline(always)]
pub(super) fn note_ack(st: &mut TcpState, d8: u8, seq: u32, ack: u32, end: u32, win: u16) {
    if st.last_dir() == d8
        && st.last_seq == seq
        && st.last_ack == ack
        && st.last_end == end
        && st.last_win == win
    {
        st.retrans = st.retrans.wrapping_add(1);
    } else {
        st.last_seq = seq;
        st.last_ack = ack;
        st.last_end = end;
        st.last_win = win;
        st.retrans = 0;
    }
    st.set_last(Class::Ack, d8);
}
