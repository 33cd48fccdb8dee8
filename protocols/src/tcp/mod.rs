//! TCP: header and flag checks, the connection state machine, sequence/window tracking and the
//! timeout each segment earns, after Linux's `nf_conntrack_proto_tcp`.
//!
//! The engine calls [`parse`] on every TCP segment (an error means `invalid`), [`new_conn`]
//! when no entry matches, then [`track`] with the entry's state ([`track_full`] also reports
//! the one case where an invalid segment still shortens its entry's life). The first segment
//! of a new entry is always accepted. Everything here is a pure function of its inputs;
//! comparisons of sequence numbers are modulo 2^32.
//!
//! Most segments of a running connection (ACK-class, ESTABLISHED, in window) take a fast path
//! that reaches the general code's decision and state in about half the instructions; a
//! differential property test holds the two to identical verdicts and states.
//!
//! ```
//! use ctrack_protocols::{tcp, Accept, Ctx, Decision, Dir, secs, sysctl::Sysctl};
//! let s = Sysctl::default();
//! // A SYN: 20-byte header, no options.
//! let syn = [0x30, 0x39, 0, 80, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, tcp::SYN, 0xff, 0xff, 0, 0, 0, 0];
//! let seg = tcp::parse(&syn).unwrap();
//! let mut st = tcp::new_conn(&seg, &s).unwrap();
//! let ctx = Ctx { dir: Dir::Original, confirmed: false, seen_reply: false, assured: false,
//!                 now: 0, expires: 0 };
//! // Accepted for 120 s, and the state moved (from NONE to SYN_SENT).
//! let opened = Accept { timeout: Some(secs(120)), assured: false, kill: false, changed: true };
//! assert_eq!(tcp::track(&mut st, &seg, &ctx, &s), Decision::Accept(opened));
//! assert_eq!(tcp::state_name(&st), "SYN_SENT");
//! ```

mod fast;
pub use fast::{open_syn, track_established};
pub mod options;
pub mod window;

#[cfg(test)]
mod difftests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::sysctl::Sysctl;
use crate::{Accept, Ctx, Decision, Dir, JIFFY, Nanos, secs};
use window::WindowVerdict;

/// TCP flag bit: no more data from the sender.
pub const FIN: u8 = 0x01;
/// TCP flag bit: synchronise sequence numbers.
pub const SYN: u8 = 0x02;
/// TCP flag bit: reset the connection.
pub const RST: u8 = 0x04;
/// TCP flag bit: push.
pub const PSH: u8 = 0x08;
/// TCP flag bit: the acknowledgement field is significant.
pub const ACK: u8 = 0x10;
/// TCP flag bit: the urgent pointer is significant.
pub const URG: u8 = 0x20;
/// TCP flag bit: ECN echo.
pub const ECE: u8 = 0x40;
/// TCP flag bit: congestion window reduced.
pub const CWR: u8 = 0x80;

/// Length of a TCP header without options.
pub const MIN_HEADER: usize = 20;

/// Lifetime of an entry in SYN_SENT2 (simultaneous open), which has no sysctl (a timeout
/// policy may change it: [`Sysctl::tcp_timeout_syn_sent2`]).
pub const SYN_SENT2_TIMEOUT: u32 = 120;

/// An out-of-window FIN or RST may lower the timeout only of an entry with at least this much
/// life left.
pub const LOWER_TIMEOUT_FLOOR: u32 = 120;

/// Parsed facts of a TCP segment. Borrows the options bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful only with [`ACK`]).
    pub ack: u32,
    /// Flag byte: [`FIN`] 0x01, [`SYN`] 0x02, [`RST`] 0x04, [`PSH`] 0x08, [`ACK`] 0x10,
    /// [`URG`] 0x20, [`ECE`] 0x40, [`CWR`] 0x80.
    pub flags: u8,
    /// Advertised window, unscaled.
    pub window: u16,
    /// Payload bytes after the TCP header.
    pub data_len: u32,
    /// The option bytes (the header past its first 20 bytes).
    pub options: &'a [u8],
}

impl<'a> Segment<'a> {
    /// A segment without options.
    pub fn new(seq: u32, ack: u32, flags: u8, window: u16, data_len: u32) -> Segment<'static> {
        Segment {
            seq,
            ack,
            flags,
            window,
            data_len,
            options: &[],
        }
    }

    /// The same segment carrying `options`.
    pub fn with_options<'b>(self, options: &'b [u8]) -> Segment<'b> {
        Segment {
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            data_len: self.data_len,
            options,
        }
    }

    /// Sequence space the segment occupies: `seq` + payload + 1 for SYN + 1 for FIN (mod 2^32).
    pub fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.data_len)
            .wrapping_add(u32::from(self.flags & SYN != 0))
            .wrapping_add(u32::from(self.flags & FIN != 0))
    }
}

/// Why a TCP header is refused (the packet is `invalid` and never creates an entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 20 bytes.
    Short,
    /// The data offset says the header is under 20 bytes.
    BadDataOffset,
    /// The data offset says the header is longer than the segment.
    Truncated,
    /// A flag combination no TCP sends (NULL, FIN alone, SYN|FIN, SYN|RST, ...); the field is
    /// the flag byte.
    BadFlags(u8),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => f.write_str("truncated TCP header"),
            HeaderError::BadDataOffset => f.write_str("TCP data offset under 5"),
            HeaderError::Truncated => f.write_str("TCP header longer than the segment"),
            HeaderError::BadFlags(b) => write!(f, "invalid TCP flag combination {b:#04x}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The flag combinations (PSH, ECE and CWR masked off) a valid segment may carry.
pub const VALID_FLAGS: [u8; 9] = [
    SYN,
    SYN | URG,
    SYN | ACK,
    RST,
    RST | ACK,
    FIN | ACK,
    FIN | ACK | URG,
    ACK,
    ACK | URG,
];

/// [`VALID_FLAGS`] as a bitmap over the 64 values the remaining flag bits can take.
const VALID_MASK: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < VALID_FLAGS.len() {
        m |= 1 << VALID_FLAGS[i];
        i += 1;
    }
    m
};

/// Whether a flag byte is one a tracked segment may carry.
#[inline]
pub fn flags_valid(flags: u8) -> bool {
    VALID_MASK >> (flags & !(ECE | CWR | PSH)) & 1 != 0
}

/// Checks a TCP header as the kernel's `tcp_error` does, minus the checksum (the engine
/// verifies it): `l4` is the TCP header and payload, already trimmed to the IP length.
#[inline(always)]
pub fn parse(l4: &[u8]) -> Result<Segment<'_>, HeaderError> {
    let h: &[u8; MIN_HEADER] = l4
        .get(..MIN_HEADER)
        .and_then(|h| h.try_into().ok())
        .ok_or(HeaderError::Short)?;
    let hlen = usize::from(h[12] >> 4) * 4;
    if hlen < MIN_HEADER {
        return Err(HeaderError::BadDataOffset);
    }
    let options = l4.get(MIN_HEADER..hlen).ok_or(HeaderError::Truncated)?;
    let flags = h[13];
    if !flags_valid(flags) {
        return Err(HeaderError::BadFlags(flags));
    }
    Ok(Segment {
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags,
        window: u16::from_be_bytes([h[14], h[15]]),
        data_len: u32::try_from(l4.len() - hlen).unwrap_or(u32::MAX),
        options,
    })
}

/// Connection states, numbered as the kernel numbers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum State {
    /// Nothing seen yet.
    #[default]
    None = 0,
    /// A SYN seen.
    SynSent = 1,
    /// A SYN/ACK seen.
    SynRecv = 2,
    /// The handshake's ACK (or a picked-up connection's first segment) seen.
    Established = 3,
    /// A FIN seen.
    FinWait = 4,
    /// The first FIN acknowledged.
    CloseWait = 5,
    /// FINs seen both ways.
    LastAck = 6,
    /// The last FIN acknowledged.
    TimeWait = 7,
    /// Reset.
    Close = 8,
    /// SYNs seen both ways (simultaneous open).
    SynSent2 = 9,
}

/// The states in kernel order, with their `/proc/net/nf_conntrack` names.
pub const STATES: [(State, &str); 10] = [
    (State::None, "NONE"),
    (State::SynSent, "SYN_SENT"),
    (State::SynRecv, "SYN_RECV"),
    (State::Established, "ESTABLISHED"),
    (State::FinWait, "FIN_WAIT"),
    (State::CloseWait, "CLOSE_WAIT"),
    (State::LastAck, "LAST_ACK"),
    (State::TimeWait, "TIME_WAIT"),
    (State::Close, "CLOSE"),
    (State::SynSent2, "SYN_SENT2"),
];

impl State {
    /// The kernel's name for the state.
    pub fn name(self) -> &'static str {
        STATES[self as usize].1
    }

    /// The timeout, in seconds, of an entry that enters this state.
    pub fn timeout(self, s: &Sysctl) -> u32 {
        match self {
            // The kernel's slot 0 is a copy of SYN_SENT's.
            State::None | State::SynSent => s.nf_conntrack_tcp_timeout_syn_sent,
            State::SynRecv => s.nf_conntrack_tcp_timeout_syn_recv,
            State::Established => s.nf_conntrack_tcp_timeout_established,
            State::FinWait => s.nf_conntrack_tcp_timeout_fin_wait,
            State::CloseWait => s.nf_conntrack_tcp_timeout_close_wait,
            State::LastAck => s.nf_conntrack_tcp_timeout_last_ack,
            State::TimeWait => s.nf_conntrack_tcp_timeout_time_wait,
            State::Close => s.nf_conntrack_tcp_timeout_close,
            State::SynSent2 => s.tcp_timeout_syn_sent2,
        }
    }

    /// Whether the entry is closing (the kernel lets early drop and GC under pressure take
    /// these, and accepts RSTs in them without checks).
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            State::FinWait | State::CloseWait | State::LastAck | State::TimeWait | State::Close
        )
    }
}

/// Which row of the transition table a segment uses, checked in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Class {
    /// SYN without ACK.
    Syn = 0,
    /// SYN with ACK.
    SynAck = 1,
    /// FIN (and no SYN or RST).
    Fin = 2,
    /// ACK alone (with PSH, URG, ECN bits).
    Ack = 3,
    /// RST, whatever else is set.
    Rst = 4,
    /// None of the above.
    #[default]
    None = 5,
}

impl Class {
    /// Classifies a flag byte: RST first, then SYN (with or without ACK), FIN, ACK.
    pub fn of(flags: u8) -> Class {
        if flags & RST != 0 {
            Class::Rst
        } else if flags & SYN != 0 {
            if flags & ACK != 0 {
                Class::SynAck
            } else {
                Class::Syn
            }
        } else if flags & FIN != 0 {
            Class::Fin
        } else if flags & ACK != 0 {
            Class::Ack
        } else {
            Class::None
        }
    }
}

/// A cell of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Move to this state (subject to the checks that follow).
    To(State),
    /// The tracker may be out of sync: let the segment pass, change nothing (sIG).
    Ignore,
    /// The segment is invalid here (sIV).
    Invalid,
}

const NO: Next = Next::To(State::None);
const SS: Next = Next::To(State::SynSent);
const SR: Next = Next::To(State::SynRecv);
const ES: Next = Next::To(State::Established);
const FW: Next = Next::To(State::FinWait);
const CW: Next = Next::To(State::CloseWait);
const LA: Next = Next::To(State::LastAck);
const TW: Next = Next::To(State::TimeWait);
const CL: Next = Next::To(State::Close);
const S2: Next = Next::To(State::SynSent2);
const IV: Next = Next::Invalid;
const IG: Next = Next::Ignore;

/// The state transition table: `TRANSITIONS[direction][class][old state]`.
#[rustfmt::skip]
pub const TRANSITIONS: [[[Next; 10]; 6]; 2] = [
    // ORIGINAL   NONE SYN_SENT SYN_RECV ESTAB FIN_WAIT CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE SYN_SENT2
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

// `NO` documents the table's first column; no transition leads back to NONE.
const _: Next = NO;

/// Looks up the transition for a segment of `class` in `dir` while in `state`.
pub fn transition(dir: Dir, class: Class, state: State) -> Next {
    TRANSITIONS[dir.idx()][class as usize][state as usize]
}

// Per-side flags (the kernel's IP_CT_TCP_FLAG_* values).
pub(crate) const F_WSCALE: u8 = 0x01;
pub(crate) const F_SACK_PERM: u8 = 0x02;
pub(crate) const F_CLOSE_INIT: u8 = 0x04;
pub(crate) const F_BE_LIBERAL: u8 = 0x08;
pub(crate) const F_DATA_UNACK: u8 = 0x10;
pub(crate) const F_MAXACK_SET: u8 = 0x20;
// Bits of `last_flags` only.
pub(crate) const F_CHALLENGE_ACK: u8 = 0x40;
pub(crate) const F_SIMULTANEOUS_OPEN: u8 = 0x80;

/// Sequence bookkeeping for one direction's sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// Highest sequence end (seq + len) sent.
    pub end: u32,
    /// Highest right edge of the window the peer has offered.
    pub maxend: u32,
    /// Largest window seen from this sender (scaled), at least 1 once initialised; 0 = unknown.
    pub maxwin: u32,
    /// Highest acknowledgement this sender has sent.
    pub maxack: u32,
}

/// Per-connection TCP state: the connection state, both sides' windows, and what the last
/// interesting segment looked like.
///
/// The kernel's per-connection fields, in 52 bytes: the small ones (each side's flags and window
/// scale, and the last segment's class, direction, window scale and option flags) share one
/// word, so that a connection table entry holding this state fits in 88 bytes (IPv4) or 112
/// (IPv6).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TcpState {
    seen: [Side; 2],
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    state: State,
    retrans: u8,
    /// The packed fields, laid out by the `B_*` constants.
    bits: u32,
}

const _: () = assert!(std::mem::size_of::<TcpState>() == 52);

// Where the packed fields of `TcpState::bits` lie: each side's flags (6 bits: `F_WSCALE` to
// `F_MAXACK_SET`), each side's window scale (4 bits: at most 14), then the last segment's
// window scale (4 bits), class (3 bits), direction (1 bit) and flags (4 bits: `F_WSCALE`,
// `F_SACK_PERM`, `F_CHALLENGE_ACK` and `F_SIMULTANEOUS_OPEN`, the only ones it holds).
const B_FLAGS: [u32; 2] = [0, 6];
const B_SCALE: [u32; 2] = [12, 16];
const B_LAST_WSCALE: u32 = 20;
const B_LAST_INDEX: u32 = 24;
const B_LAST_DIR: u32 = 27;
const B_LAST_FLAGS: u32 = 28;
/// The flags a side keeps (`F_CHALLENGE_ACK` and `F_SIMULTANEOUS_OPEN` are the last segment's
/// only).
const SIDE_FLAGS: u8 =
    F_WSCALE | F_SACK_PERM | F_CLOSE_INIT | F_BE_LIBERAL | F_DATA_UNACK | F_MAXACK_SET;
/// The classes by their numbers, padded to the field's eight values.
const CLASS_OF: [Class; 8] = [
    Class::Syn,
    Class::SynAck,
    Class::Fin,
    Class::Ack,
    Class::Rst,
    Class::None,
    Class::None,
    Class::None,
];

impl Default for TcpState {
    fn default() -> Self {
        TcpState {
            seen: [Side::default(); 2],
            last_seq: 0,
            last_ack: 0,
            last_end: 0,
            last_win: 0,
            state: State::default(),
            retrans: 0,
            bits: (Class::None as u32) << B_LAST_INDEX,
        }
    }
}

impl std::fmt::Debug for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpState")
            .field("seen", &self.seen)
            .field("last_seq", &self.last_seq)
            .field("last_ack", &self.last_ack)
            .field("last_end", &self.last_end)
            .field("last_win", &self.last_win)
            .field("scale", &[self.scale_of(0), self.scale_of(1)])
            .field("flags", &[self.flags(0), self.flags(1)])
            .field("state", &self.state)
            .field("last_dir", &self.last_dir())
            .field("last_index", &self.last_index())
            .field("last_wscale", &self.last_wscale())
            .field("last_flags", &self.last_flags())
            .field("retrans", &self.retrans)
            .finish()
    }
}

/// Accessors of the packed fields.
impl TcpState {
    #[inline(always)]
    fn field(&self, at: u32, width: u32) -> u8 {
        ((self.bits >> at) & ((1 << width) - 1)) as u8
    }

    #[inline(always)]
    fn set_field(&mut self, at: u32, width: u32, v: u8) {
        let mask = ((1u32 << width) - 1) << at;
        debug_assert_eq!(
            u32::from(v) << at & !mask,
            0,
            "{v} does not fit {width} bits"
        );
        self.bits = (self.bits & !mask) | (u32::from(v) << at & mask);
    }

    /// Side `d`'s flags (`F_*`).
    #[inline(always)]
    fn flags(&self, d: usize) -> u8 {
        self.field(B_FLAGS[d], 6)
    }

    /// Sets side `d`'s flags; the last segment's own flags (challenge ACK, simultaneous open)
    /// are not a side's and are left out.
    #[inline(always)]
    fn set_flags(&mut self, d: usize, f: u8) {
        self.set_field(B_FLAGS[d], 6, f & SIDE_FLAGS);
    }

    /// Adds `f` to side `d`'s flags.
    #[inline(always)]
    fn add_flags(&mut self, d: usize, f: u8) {
        debug_assert_eq!(f & !SIDE_FLAGS, 0);
        self.bits |= u32::from(f & SIDE_FLAGS) << B_FLAGS[d];
    }

    /// Removes `f` from side `d`'s flags.
    #[inline(always)]
    fn clear_flags(&mut self, d: usize, f: u8) {
        self.bits &= !(u32::from(f & SIDE_FLAGS) << B_FLAGS[d]);
    }

    /// Whether either side has any of the flags `f`.
    #[inline(always)]
    fn either_has(&self, f: u8) -> bool {
        let f = u32::from(f & SIDE_FLAGS);
        self.bits & (f << B_FLAGS[0] | f << B_FLAGS[1]) != 0
    }

    /// Side `d`'s window scale.
    #[inline(always)]
    fn scale_of(&self, d: usize) -> u8 {
        self.field(B_SCALE[d], 4)
    }

    #[inline(always)]
    fn set_scale(&mut self, d: usize, v: u8) {
        self.set_field(B_SCALE[d], 4, v);
    }

    /// The last segment's class.
    #[inline(always)]
    fn last_index(&self) -> Class {
        CLASS_OF[usize::from(self.field(B_LAST_INDEX, 3))]
    }

    #[inline(always)]
    fn set_last_index(&mut self, c: Class) {
        self.set_field(B_LAST_INDEX, 3, c as u8);
    }

    /// Sets the last segment's class and direction (0 original, 1 reply) at once.
    #[inline(always)]
    fn set_last(&mut self, c: Class, d: u8) {
        const { assert!(B_LAST_DIR == B_LAST_INDEX + 3) };
        self.set_field(B_LAST_INDEX, 4, c as u8 | d << 3);
    }

    /// The last segment's direction (0 original, 1 reply).
    #[inline(always)]
    fn last_dir(&self) -> u8 {
        self.field(B_LAST_DIR, 1)
    }

    #[cfg(test)]
    fn set_last_dir(&mut self, d: u8) {
        self.set_field(B_LAST_DIR, 1, d);
    }

    /// The window scale of the last SYN ignored.
    #[inline(always)]
    fn last_wscale(&self) -> u8 {
        self.field(B_LAST_WSCALE, 4)
    }

    #[inline(always)]
    fn set_last_wscale(&mut self, v: u8) {
        self.set_field(B_LAST_WSCALE, 4, v);
    }

    /// The last segment's flags, as the kernel's bits.
    #[inline(always)]
    fn last_flags(&self) -> u8 {
        let c = self.field(B_LAST_FLAGS, 4);
        (c & 0x3) | (c & 0xc) << 4
    }

    #[inline(always)]
    fn set_last_flags(&mut self, f: u8) {
        debug_assert_eq!(
            f & !(F_WSCALE | F_SACK_PERM | F_CHALLENGE_ACK | F_SIMULTANEOUS_OPEN),
            0
        );
        self.set_field(B_LAST_FLAGS, 4, (f & 0x3) | (f >> 4 & 0xc));
    }
}

impl TcpState {
    /// A new connection's state after its opening SYN: the sender side set up from it
    /// (end, window, options), nothing known of the receiver.
    #[inline(always)]
    fn opened_by_syn(seg: &Segment<'_>) -> TcpState {
        let end = seg.end();
        let mut st = TcpState::default();
        st.seen[0] = Side {
            end,
            maxend: end,
            maxwin: u32::from(seg.window).max(1),
            maxack: 0,
        };
        st.apply_syn_options(0, seg.options);
        st
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The bookkeeping of the sender in `dir`.
    pub fn side(&self, dir: Dir) -> Side {
        self.seen[dir.idx()]
    }

    /// The window-scale shift applied to non-SYN windows from `dir` (0 unless both sides sent
    /// the option).
    pub fn scale(&self, dir: Dir) -> u8 {
        self.scale_of(dir.idx())
    }

    /// Whether `dir`'s window is checked liberally for the rest of the connection (picked up
    /// mid-stream).
    pub fn liberal(&self, dir: Dir) -> bool {
        self.flags(dir.idx()) & F_BE_LIBERAL != 0
    }

    /// Whether `dir` announced SACK (or is assumed to, when picked up).
    pub fn sack_permitted(&self, dir: Dir) -> bool {
        self.flags(dir.idx()) & F_SACK_PERM != 0
    }

    /// Whether `dir` has sent data the other side has not acknowledged.
    pub fn unacknowledged(&self, dir: Dir) -> bool {
        self.flags(dir.idx()) & F_DATA_UNACK != 0
    }

    /// Whether `dir` sent the first FIN.
    pub fn close_initiator(&self, dir: Dir) -> bool {
        self.flags(dir.idx()) & F_CLOSE_INIT != 0
    }

    /// How many times the last ACK has been seen again unchanged.
    pub fn retransmissions(&self) -> u8 {
        self.retrans
    }

    /// Reads a SYN's options into side `d`: an empty option area leaves the side as it was;
    /// otherwise scale and flags restart from the options (keeping only the liberal flag).
    #[inline(always)]
    fn apply_syn_options(&mut self, d: usize, opts: &[u8]) {
        if let Some(o) = options::syn_options(opts) {
            self.set_scale(d, 0);
            self.set_flags(d, self.flags(d) & F_BE_LIBERAL);
            if o.sack_perm {
                self.add_flags(d, F_SACK_PERM);
            }
            if o.wscale_present {
                self.set_scale(d, o.wscale);
                self.add_flags(d, F_WSCALE);
            }
        }
    }
}

/// `a` is before `b` in sequence space.
#[inline]
pub fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` is after `b` in sequence space.
#[inline]
pub fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Decides whether a segment with no entry may create one (the kernel's `tcp_new`). Only a SYN
/// (-> SYN_SENT) or, with `nf_conntrack_tcp_loose`, an ACK picking up a running connection
/// (-> ESTABLISHED, both sides liberal and SACK-permitted for life) does; `None` = `invalid`.
pub fn new_conn(seg: &Segment<'_>, s: &Sysctl) -> Option<TcpState> {
    let next = transition(Dir::Original, Class::of(seg.flags), State::None);
    let mut st = TcpState::default();
    let end = seg.end();
    let maxwin = u32::from(seg.window).max(1);
    match next {
        Next::To(State::SynSent) => st = TcpState::opened_by_syn(seg),
        Next::To(_) if s.nf_conntrack_tcp_loose != 0 => {
            st.seen[0] = Side {
                end,
                maxend: end.wrapping_add(maxwin),
                maxwin,
                maxack: 0,
            };
            st.set_flags(0, F_SACK_PERM | F_BE_LIBERAL);
            st.set_flags(1, F_SACK_PERM | F_BE_LIBERAL);
        }
        _ => return None,
    }
    st.set_last_index(Class::None);
    Some(st)
}

/// [`track`]'s full answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What the engine does with the packet and the entry.
    pub decision: Decision,
    /// Only with [`Decision::Invalid`]: the entry's remaining life must be cut to this (the
    /// kernel shortens an ASSURED entry to the "unacknowledged" timeout when an out-of-window
    /// FIN or RST answers one from the other side).
    pub lower_timeout: Option<Nanos>,
}

impl From<Decision> for Verdict {
    fn from(decision: Decision) -> Verdict {
        Verdict {
            decision,
            lower_timeout: None,
        }
    }
}

/// Tracks one segment of an existing entry (`ctx.confirmed`) or of the entry [`new_conn`] has
/// just made (`!ctx.confirmed`): the kernel's `tcp_packet`.
///
/// This drops [`Verdict::lower_timeout`]; engines that honour the kernel's timeout lowering on
/// out-of-window FIN/RST call [`track_full`].
pub fn track(st: &mut TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> Decision {
    track_full(st, seg, ctx, s).decision
}

/// Records an ignored segment (sIG) and lets it pass. Returns `true` instead when the segment
/// is a SYN/ACK answering a SYN we ignored earlier: both ends are in sync and we are not, so
/// the state is rebuilt from that SYN and the segment continues as SYN_SENT -> SYN_RECV.
fn ignore_or_resync(st: &mut TcpState, seg: &Segment<'_>, dir: Dir, index: Class) -> bool {
    let old = st.state;
    let d8 = dir as u8;
    if index == Class::SynAck
        && st.last_index() == Class::Syn
        && st.last_dir() != d8
        && seg.ack == st.last_end
    {
        let l = usize::from(st.last_dir());
        st.seen[l].end = st.last_end;
        st.seen[l].maxend = st.last_end;
        st.seen[l].maxwin = u32::from(st.last_win).max(1);
        st.set_scale(l, st.last_wscale());
        st.set_last_flags(st.last_flags() & !F_CHALLENGE_ACK);
        st.set_flags(l, st.last_flags());
        let d = dir.idx();
        st.seen[d] = Side::default();
        st.set_scale(d, 0);
        st.set_flags(d, st.flags(d) & F_BE_LIBERAL);
        return true;
    }
    st.set_last(index, d8);
    st.last_seq = seg.seq;
    st.last_end = seg.end();
    st.last_win = seg.window;
    if index == Class::Syn && dir == Dir::Original {
        // Remember the SYN's options in case the peer answers it.
        st.set_last_flags(0);
        st.set_last_wscale(0);
        if let Some(o) = options::syn_options(seg.options) {
            if o.wscale_present {
                st.set_last_flags(st.last_flags() | F_WSCALE);
                st.set_last_wscale(o.wscale);
            }
            if o.sack_perm {
                st.set_last_flags(st.last_flags() | F_SACK_PERM);
            }
        }
        // The peer may answer with a challenge ACK, which must not count as the last ACK.
        if old == State::LastAck {
            st.set_last_flags(st.last_flags() | F_CHALLENGE_ACK);
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
    if st.flags(peer) & F_MAXACK_SET != 0 && st.last_index() != Class::Syn {
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
        if st.last_index() == Class::Ack && st.last_dir() == dir as u8 && seq == st.last_end {
            // Continues a train of segments from the same sender.
            return RstCheck::Window(new);
        }
        // Not exactly where expected: keep the state until a challenge ACK settles it.
        new = old;
    }
    // The SYN must have come from the other side (an RST cannot answer its own sender's SYN);
    // the unassured-ACK case has no such condition.
    let answers_ignored =
        (ctx.seen_reply && st.last_index() == Class::Syn && st.last_dir() != dir as u8)
            || (!ctx.assured && st.last_index() == Class::Ack);
    if answers_ignored && seg.ack == st.last_end {
        // Answers a SYN or ACK we let through unchecked: the window may not know its numbers.
        return RstCheck::SkipWindow(new);
    }
    if old == State::SynSent
        && st.last_index() == Class::Ack
        && st.last_dir() == Dir::Reply as u8
        && seg.seq == st.last_ack
    {
        // Answers a challenge ACK we let through.
        return RstCheck::SkipWindow(new);
    }
    RstCheck::Window(new)
}

/// [`track`] with the timeout change the kernel makes to some entries whose packet is invalid.
#[inline]
pub fn track_full(st: &mut TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> Verdict {
    if fast::candidate(st, seg) {
        fast::established_ack(st, seg, ctx, s)
    } else {
        track_general(st, seg, ctx, s)
    }
}

/// [`track_full`] for every segment: the transition table, its special cases, the RST checks,
/// the window check and the timeout choice, step by step.
#[inline(never)]
fn track_general(st: &mut TcpState, seg: &Segment<'_>, ctx: &Ctx, s: &Sysctl) -> Verdict {
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
            let closing = st.either_has(F_CLOSE_INIT);
            if closing || (st.last_dir() == d8 && st.last_index() == Class::Rst) {
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
                && st.last_dir() != d8
                && st.last_index() == Class::Syn
                && st.last_flags() & F_CHALLENGE_ACK != 0 =>
        {
            // RFC 5961 challenge ACK answering a SYN in LAST_ACK: not the last ACK.
            st.set_last_flags(st.last_flags() & !F_CHALLENGE_ACK);
            return Decision::Ignore.into();
        }
        Next::To(State::SynSent2) => {
            st.set_last_flags(st.last_flags() | F_SIMULTANEOUS_OPEN);
            State::SynSent2
        }
        Next::To(State::SynRecv)
            if dir == Dir::Reply
                && index == Class::Ack
                && st.last_flags() & F_SIMULTANEOUS_OPEN != 0 =>
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
        match window::in_window(st, dir, index, seg, s) {
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
    st.set_last(index, d8);
    st.state = new;
    if old != new && new == State::FinWait {
        st.add_flags(dir.idx(), F_CLOSE_INIT);
    }

    let timeout = choose_timeout(st, new, index, s);
    if !ctx.seen_reply {
        if index == Class::Rst {
            // Only an RST came back (or we reset before any reply): the connection never was.
            return Decision::Accept(Accept {
                timeout: None,
                assured: false,
                kill: true,
                changed: old != new,
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
        return Decision::Accept(Accept {
            timeout: Some(secs(timeout)),
            assured: false,
            kill: false,
            changed: old != new,
        })
        .into();
    }
    let assured = !ctx.assured
        && matches!(old, State::SynRecv | State::Established)
        && new == State::Established;
    Decision::Accept(Accept {
        timeout: Some(secs(timeout)),
        assured,
        kill: false,
        changed: old != new,
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
    } else if st.either_has(F_DATA_UNACK) && state_t > unack_t {
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
    if st.last_dir() != dir as u8 && matches!(st.last_index(), Class::Fin | Class::Rst) {
        // The kernel counts the life left in whole ticks: its timeout was set in ticks at the
        // last refresh, and only the ticks since then count against it. A segment in the same
        // tick as the refresh (a few microseconds later, as in a burst) still finds all of it.
        let left = ctx.expires.saturating_sub(ctx.now).div_ceil(JIFFY) * JIFFY;
        let unack = secs(s.nf_conntrack_tcp_timeout_unacknowledged);
        if left >= secs(LOWER_TIMEOUT_FLOOR) && left > unack {
            return Some(unack);
        }
        None
    } else {
        st.set_last(index, dir as u8);
        None
    }
}

/// The kernel's name for the state as `/proc/net/nf_conntrack` prints it.
pub fn state_name(st: &TcpState) -> &'static str {
    st.state.name()
}
