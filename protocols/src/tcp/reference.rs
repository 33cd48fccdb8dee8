//! The TCP tracker as it was before the per-packet fast path: a frozen, straightforward copy of
//! `track_full` and the window check, kept only for tests. The differential property test runs
//! every generated segment through this and through the production code from identical states
//! and requires identical verdicts and identical resulting states.
//!
//! Do not optimise this file: its value is that it is the plain transcription the 83 kernel
//! goldens were first matched with.

use super::options::{self, highest_sack};
use super::window::{MAX_ACK_WINDOW_FLOOR, WindowVerdict};
use super::*;

/// Records an ignored segment (sIG) and lets it pass. Returns `true` instead when the segment
/// is a SYN/ACK answering a SYN we ignored earlier: both ends are in sync and we are not, so
/// the state is rebuilt from that SYN and the segment continues as SYN_SENT -> SYN_RECV.
fn ignore_or_resync(st: &mut TcpState, seg: &Segment<'_>, dir: Dir, index: Class) -> bool {
    let old = st.state;
    let d8 = dir as u8;
    if index == Class::SynAck
        && st.last_index == Class::Syn
        && st.last_dir != d8
        && seg.ack == st.last_end
    {
        let l = usize::from(st.last_dir & 1);
        st.seen[l].end = st.last_end;
        st.seen[l].maxend = st.last_end;
        st.seen[l].maxwin = u32::from(st.last_win).max(1);
        st.scale[l] = st.last_wscale;
        st.last_flags &= !F_CHALLENGE_ACK;
        st.flags[l] = st.last_flags;
        let d = dir.idx();
        st.seen[d] = Side::default();
        st.scale[d] = 0;
        st.flags[d] &= F_BE_LIBERAL;
        return true;
    }
    st.last_index = index;
    st.last_dir = d8;
    st.last_seq = seg.seq;
    st.last_end = seg.end();
    st.last_win = seg.window;
    if index == Class::Syn && dir == Dir::Original {
        // Remember the SYN's options in case the peer answers it.
        st.last_flags = 0;
        st.last_wscale = 0;
        if let Some(o) = options::syn_options(seg.options) {
            if o.wscale_present {
                st.last_flags |= F_WSCALE;
                st.last_wscale = o.wscale;
            }
            if o.sack_perm {
                st.last_flags |= F_SACK_PERM;
            }
        }
        // The peer may answer with a challenge ACK, which must not count as the last ACK.
        if old == State::LastAck {
            st.last_flags |= F_CHALLENGE_ACK;
        }
    }
    if old == State::SynSent && index == Class::Ack && dir == Dir::Reply {
        // Perhaps a challenge ACK answering the SYN.
        st.last_ack = seg.ack;
    }
    false
}

/// Where the RST checks leave a segment headed for CLOSE.
enum RstCheck {
    /// Check the window, then move to this state.
    Window(State),
    /// Move to this state without the window check.
    SkipWindow(State),
    /// Refuse.
    Invalid,
}

/// The RST checks (the segment's table entry is CLOSE).
fn check_rst(st: &TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> RstCheck {
    let dir = ctx.dir;
    let peer = dir.flip().idx();
    let old = st.state;
    // Closing: the tuple may already be reused, so the bookkeeping is stale. Let it through.
    if old.is_closing() {
        return RstCheck::SkipWindow(State::Close);
    }
    let mut new = State::Close;
    let established = old == State::Established && ctx.assured;
    // The peer's highest ACK is trustworthy unless we let a SYN through since.
    if st.flags[peer] & F_MAXACK_SET != 0 && st.last_index != Class::Syn {
        let seq = seg.seq;
        if seq == 0 && !established {
            // Most likely answering a SYN we let through.
            return RstCheck::Window(new);
        }
        if before(seq, st.seen[peer].maxack) && s.nf_conntrack_tcp_ignore_invalid_rst == 0 {
            return RstCheck::Invalid;
        }
        if !established || seq == st.seen[peer].maxack {
            return RstCheck::Window(new);
        }
        if st.last_index == Class::Ack && st.last_dir == dir as u8 && seq == st.last_end {
            // Continues a train of segments from the same sender.
            return RstCheck::Window(new);
        }
        // Not exactly where expected: keep the state until a challenge ACK settles it.
        new = old;
    }
    let answers_ignored = (ctx.seen_reply && st.last_index == Class::Syn)
        || (!ctx.assured && st.last_index == Class::Ack);
    if answers_ignored && seg.ack == st.last_end {
        // Answers a SYN or ACK we let through unchecked: the window may not know its numbers.
        return RstCheck::SkipWindow(new);
    }
    if old == State::SynSent
        && st.last_index == Class::Ack
        && st.last_dir == Dir::Reply as u8
        && seg.seq == st.last_ack
    {
        // Answers a challenge ACK we let through.
        return RstCheck::SkipWindow(new);
    }
    RstCheck::Window(new)
}

/// [`track`] with the timeout change the kernel makes to some entries whose packet is invalid.
pub(crate) fn track_full(st: &mut TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> Verdict {
    let dir = ctx.dir;
    let d8 = dir as u8;
    let index = Class::of(seg.flags);
    let mut old = st.state;
    let mut skip_window = false;
    let new = match transition(dir, index, old) {
        Next::Invalid => return Decision::Invalid.into(),
        Next::To(State::SynSent) if old >= State::TimeWait => {
            // A SYN reopening a closed connection: only if it is really over (someone sent a
            // FIN, or this side reset it). Otherwise it is ignored like other stray SYNs.
            let closing = (st.flags[0] | st.flags[1]) & F_CLOSE_INIT != 0;
            if closing || (st.last_dir == d8 && st.last_index == Class::Rst) {
                return Decision::Reopen.into();
            }
            ignore_or_resync(st, seg, dir, index);
            return Decision::Ignore.into();
        }
        Next::Ignore => {
            if !ignore_or_resync(st, seg, dir, index) {
                return Decision::Ignore.into();
            }
            old = State::SynSent;
            State::SynRecv
        }
        Next::To(State::TimeWait)
            if old == State::LastAck
                && index == Class::Ack
                && st.last_dir != d8
                && st.last_index == Class::Syn
                && st.last_flags & F_CHALLENGE_ACK != 0 =>
        {
            // RFC 5961 challenge ACK answering a SYN in LAST_ACK: not the last ACK.
            st.last_flags &= !F_CHALLENGE_ACK;
            return Decision::Ignore.into();
        }
        Next::To(State::SynSent2) => {
            st.last_flags |= F_SIMULTANEOUS_OPEN;
            State::SynSent2
        }
        Next::To(State::SynRecv)
            if dir == Dir::Reply
                && index == Class::Ack
                && st.last_flags & F_SIMULTANEOUS_OPEN != 0 =>
        {
            State::Established
        }
        Next::To(State::Close) if index == Class::Rst => match check_rst(st, seg, ctx, s) {
            RstCheck::Invalid => return Decision::Invalid.into(),
            RstCheck::SkipWindow(n) => {
                skip_window = true;
                n
            }
            RstCheck::Window(n) => n,
        },
        Next::To(n) => n,
    };

    if !skip_window {
        match in_window(st, dir, index, seg, s) {
            WindowVerdict::Accept => {}
            WindowVerdict::Ignore => return Decision::Ignore.into(),
            WindowVerdict::Invalid => {
                return Verdict {
                    decision: Decision::Invalid,
                    lower_timeout: handle_invalid(st, dir, index, ctx, s),
                };
            }
        }
    }

    // In window from here on.
    st.last_index = index;
    st.last_dir = d8;
    st.state = new;
    if old != new && new == State::FinWait {
        st.flags[dir.idx()] |= F_CLOSE_INIT;
    }

    let timeout = choose_timeout(st, new, index, s);
    if !ctx.seen_reply {
        if index == Class::Rst {
            // Only an RST came back (or we reset before any reply): the connection never was.
            return Decision::Accept(Accept {
                timeout: None,
                assured: false,
                kill: true,
            })
            .into();
        }
        if index == Class::Syn && old == State::SynSent {
            // A retransmitted SYN does not extend the entry's life (port reuse could keep it
            // alive for ever).
            return Decision::Ignore.into();
        }
        let mut timeout = timeout;
        if new == State::Established {
            // A picked-up connection without an answer yet stays short-lived.
            timeout = timeout.min(s.nf_conntrack_tcp_timeout_unacknowledged);
        }
        return Decision::refresh(secs(timeout)).into();
    }
    let assured = !ctx.assured
        && matches!(old, State::SynRecv | State::Established)
        && new == State::Established;
    Decision::Accept(Accept {
        timeout: Some(secs(timeout)),
        assured,
        kill: false,
    })
    .into()
}

/// The timeout, in seconds, an accepted segment sets, first match wins.
fn choose_timeout(st: &TcpState, new: State, index: Class, s: &Sysctl) -> u32 {
    let state_t = new.timeout(s);
    let retrans_t = s.nf_conntrack_tcp_timeout_max_retrans;
    let unack_t = s.nf_conntrack_tcp_timeout_unacknowledged;
    if u32::from(st.retrans) >= s.nf_conntrack_tcp_max_retrans && state_t > retrans_t {
        retrans_t
    } else if index == Class::Rst {
        s.nf_conntrack_tcp_timeout_close
    } else if (st.flags[0] | st.flags[1]) & F_DATA_UNACK != 0 && state_t > unack_t {
        unack_t
    } else if st.last_win == 0 && state_t > retrans_t {
        retrans_t
    } else {
        state_t
    }
}

/// What the kernel does to an ASSURED entry whose FIN or RST fell outside the window: if it
/// answers an out-of-window FIN/RST from the other side, the entry's life is cut to the
/// "unacknowledged" timeout (when it has at least two minutes left and more than that);
/// otherwise the segment is remembered as the last one.
fn handle_invalid(
    st: &mut TcpState,
    dir: Dir,
    index: Class,
    ctx: &Ctx,
    s: &Sysctl,
) -> Option<Nanos> {
    if !ctx.assured || !matches!(index, Class::Rst | Class::Fin) {
        return None;
    }
    if st.last_dir != dir as u8 && matches!(st.last_index, Class::Fin | Class::Rst) {
        let left = ctx.expires.saturating_sub(ctx.now);
        let unack = secs(s.nf_conntrack_tcp_timeout_unacknowledged);
        if left >= secs(LOWER_TIMEOUT_FLOOR) && left > unack {
            return Some(unack);
        }
        None
    } else {
        st.last_index = index;
        st.last_dir = dir as u8;
        None
    }
}

/// Sets a side up from a SYN or SYN/ACK: its end and window, the options it announces. A reply
/// SYN settles window scaling: unless both sides sent the option, neither side scales.
fn init_sender(st: &mut TcpState, dir: Dir, seg: &Segment<'_>, end: u32) {
    let (d, r) = (dir.idx(), dir.flip().idx());
    st.seen[d].end = end;
    st.seen[d].maxend = end;
    st.seen[d].maxwin = u32::from(seg.window).max(1);
    st.apply_syn_options(d, seg.options);
    if dir == Dir::Reply && !(st.flags[d] & F_WSCALE != 0 && st.flags[r] & F_WSCALE != 0) {
        st.scale[d] = 0;
        st.scale[r] = 0;
    }
}

/// Checks a segment against the sender's and receiver's windows and, when it is in window,
/// records what it shows. Liberal tracking (the sysctl or the side's flag) turns every failure
/// into [`WindowVerdict::Accept`] without recording anything.
fn in_window(
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

    if st.flags[r] & F_SACK_PERM != 0 {
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
            let swin = win << st.scale[d];
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

    let liberal = s.nf_conntrack_tcp_be_liberal != 0 || st.flags[d] & F_BE_LIBERAL != 0;
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
            st.flags[d] |= F_DATA_UNACK;
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
        win <<= st.scale[d];
    }

    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if st.seen[d].maxwin < swin {
        st.seen[d].maxwin = swin;
    }
    if after(end, st.seen[d].end) {
        st.seen[d].end = end;
        st.flags[d] |= F_DATA_UNACK;
    }
    if has_ack {
        if st.flags[d] & F_MAXACK_SET == 0 {
            st.seen[d].maxack = ack;
            st.flags[d] |= F_MAXACK_SET;
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
        st.flags[r] &= !F_DATA_UNACK;
    }

    if index == Class::Ack {
        let d8 = dir as u8;
        if st.last_dir == d8
            && st.last_seq == seq
            && st.last_ack == ack
            && st.last_end == end
            && st.last_win == win_raw
        {
            st.retrans = st.retrans.wrapping_add(1);
        } else {
            st.last_dir = d8;
            st.last_seq = seq;
            st.last_ack = ack;
            st.last_end = end;
            st.last_win = win_raw;
            st.retrans = 0;
        }
    }
    WindowVerdict::Accept
}
