//! SCTP associations after Linux's `nf_conntrack_proto_sctp`: chunk checks, the per-chunk
//! state table, verification tags, and a timeout per state.
//!
//! A packet is a 12-byte common header (ports, verification tag, CRC32c) and a run of chunks
//! (type, flags, length, padded to 4 bytes). Every chunk moves the association through
//! [`TABLE`]; DATA, SACK and other chunk types leave the state alone. The last chunk's state
//! picks the timeout; reaching ESTABLISHED makes the entry ASSURED.
//!
//! ```
//! use ctrack_protocols::{sctp, Ctx, Decision, Dir, sysctl::Sysctl};
//! // An INIT (verification tag 0) with initiate tag 0x01020304.
//! let mut init = vec![0x13, 0x88, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20];
//! init.extend_from_slice(&[1, 2, 3, 4, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
//! let p = sctp::parse(&init).unwrap();
//! let mut st = sctp::SctpState::default();
//! let ctx = Ctx { dir: Dir::Original, confirmed: false, seen_reply: false, assured: false,
//!                 now: 0, expires: 0 };
//! assert!(matches!(sctp::track(&mut st, &p, &ctx, &Sysctl::default()), Decision::Accept(_)));
//! assert_eq!(st.state(), sctp::State::Closed);
//! ```

use crate::sysctl::Sysctl;
use crate::{Accept, Ctx, Decision, Dir, Partial, secs};

/// Association states, in the kernel's order (the `/proc` names come from [`State::name`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Nothing seen yet.
    #[default]
    None = 0,
    /// An INIT seen (or the association shut down).
    Closed,
    /// An INIT_ACK answered the INIT.
    CookieWait,
    /// A COOKIE_ECHO followed.
    CookieEchoed,
    /// A COOKIE_ACK answered: the association is up.
    Established,
    /// SHUTDOWN sent in the original direction.
    ShutdownSent,
    /// SHUTDOWN sent in the reply direction.
    ShutdownRecd,
    /// SHUTDOWN_ACK answered a SHUTDOWN.
    ShutdownAckSent,
    /// A HEARTBEAT started a new (secondary path) entry.
    HeartbeatSent,
}

impl State {
    /// The name `/proc/net/nf_conntrack` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::None => "NONE",
            State::Closed => "CLOSED",
            State::CookieWait => "COOKIE_WAIT",
            State::CookieEchoed => "COOKIE_ECHOED",
            State::Established => "ESTABLISHED",
            State::ShutdownSent => "SHUTDOWN_SENT",
            State::ShutdownRecd => "SHUTDOWN_RECD",
            State::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            State::HeartbeatSent => "HEARTBEAT_SENT",
        }
    }

    /// The state's timeout in seconds (NONE uses CLOSED's).
    pub fn timeout(self, s: &Sysctl) -> u32 {
        match self {
            State::None | State::Closed => s.nf_conntrack_sctp_timeout_closed,
            State::CookieWait => s.nf_conntrack_sctp_timeout_cookie_wait,
            State::CookieEchoed => s.nf_conntrack_sctp_timeout_cookie_echoed,
            State::Established => s.nf_conntrack_sctp_timeout_established,
            State::ShutdownSent => s.nf_conntrack_sctp_timeout_shutdown_sent,
            State::ShutdownRecd => s.nf_conntrack_sctp_timeout_shutdown_recd,
            State::ShutdownAckSent => s.nf_conntrack_sctp_timeout_shutdown_ack_sent,
            State::HeartbeatSent => s.nf_conntrack_sctp_timeout_heartbeat_sent,
        }
    }

    /// Shutting-down states, which the table may evict under pressure even when ASSURED.
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            State::ShutdownSent | State::ShutdownRecd | State::ShutdownAckSent
        )
    }
}

/// Chunk types the tracker reads.
pub mod chunk {
    /// DATA.
    pub const DATA: u8 = 0;
    /// INIT.
    pub const INIT: u8 = 1;
    /// INIT_ACK.
    pub const INIT_ACK: u8 = 2;
    /// HEARTBEAT.
    pub const HEARTBEAT: u8 = 4;
    /// HEARTBEAT_ACK.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN_ACK.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// ERROR.
    pub const ERROR: u8 = 9;
    /// COOKIE_ECHO.
    pub const COOKIE_ECHO: u8 = 10;
    /// COOKIE_ACK.
    pub const COOKIE_ACK: u8 = 11;
    /// SHUTDOWN_COMPLETE.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// The T bit of ABORT and SHUTDOWN_COMPLETE: the verification tag is the peer's.
const FLAG_T: u8 = 1;

use State::{
    Closed as CL, CookieEchoed as CE, CookieWait as CW, Established as ES, HeartbeatSent as HS,
    ShutdownAckSent as SA, ShutdownRecd as SR, ShutdownSent as SS,
};

/// `None` marks an invalid transition.
type Row = [Option<State>; 9];

const fn r(v: [State; 9]) -> Row {
    let mut o = [None; 9];
    let mut i = 0;
    while i < 9 {
        o[i] = Some(v[i]);
        i += 1;
    }
    o
}

/// A reply-direction row whose NONE and HEARTBEAT_SENT columns are invalid.
const fn rr(v: [State; 7]) -> Row {
    let mut o = [None; 9];
    let mut i = 0;
    while i < 7 {
        o[i + 1] = Some(v[i]);
        i += 1;
    }
    o
}

/// The state table: `[direction][chunk class][old state]`; chunk classes in the order INIT,
/// INIT_ACK, ABORT, SHUTDOWN, SHUTDOWN_ACK, ERROR, COOKIE_ECHO, COOKIE_ACK, SHUTDOWN_COMPLETE,
/// HEARTBEAT, HEARTBEAT_ACK; old states in [`State`] order.
pub const TABLE: [[Row; 11]; 2] = [
    [
        r([CL, CL, CW, CE, ES, CL, CL, SA, CW]),
        r([CL, CL, CW, CE, ES, SS, SR, SA, CL]),
        r([CL, CL, CL, CL, CL, CL, CL, CL, CL]),
        r([CL, CL, CW, CE, SS, SS, SR, SA, CL]),
        r([SA, CL, CW, CE, ES, SA, SA, SA, SA]),
        r([CL, CL, CW, CE, ES, SS, SR, SA, CL]),
        r([CL, CL, CE, CE, ES, SS, SR, SA, CL]),
        r([CL, CL, CW, ES, ES, SS, SR, SA, CL]),
        r([CL, CL, CW, CE, ES, SS, SR, CL, CL]),
        r([HS, CL, CW, CE, ES, SS, SR, SA, HS]),
        r([CL, CL, CW, CE, ES, SS, SR, SA, HS]),
    ],
    [
        rr([CL, CW, CE, ES, SS, SR, SA]),
        rr([CW, CW, CE, ES, SS, SR, SA]),
        rr([CL, CL, CL, CL, CL, CL, CL]),
        rr([CL, CW, CE, SR, SS, SR, SA]),
        rr([CL, CW, CE, ES, SA, SA, SA]),
        rr([CL, CW, CL, ES, SS, SR, SA]),
        rr([CL, CE, CE, ES, SS, SR, SA]),
        rr([CL, CW, ES, ES, SS, SR, SA]),
        rr([CL, CW, CE, ES, SS, SR, CL]),
        {
            let mut o = rr([CL, CW, CE, ES, SS, SR, SA]);
            o[8] = Some(HS);
            o
        },
        {
            let mut o = rr([CL, CW, CE, ES, SS, SR, SA]);
            o[8] = Some(ES);
            o
        },
    ],
];

/// The state after a chunk of type `ty` in direction `dir`: `Some(old)` for chunk types the
/// table does not list (DATA, SACK, ...), `None` for an invalid transition.
pub fn next_state(dir: Dir, old: State, ty: u8) -> Option<State> {
    let class = match ty {
        chunk::INIT => 0,
        chunk::INIT_ACK => 1,
        chunk::ABORT => 2,
        chunk::SHUTDOWN => 3,
        chunk::SHUTDOWN_ACK => 4,
        chunk::ERROR => 5,
        chunk::COOKIE_ECHO => 6,
        chunk::COOKIE_ACK => 7,
        chunk::SHUTDOWN_COMPLETE => 8,
        chunk::HEARTBEAT => 9,
        chunk::HEARTBEAT_ACK => 10,
        _ => return Some(old),
    };
    TABLE[dir.idx()][class][old as usize]
}

/// Per-entry SCTP state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpState {
    state: State,
    /// Verification tag expected from each direction.
    vtag: [u32; 2],
    /// An INIT was seen from that direction (cleared by COOKIE_ACK).
    init: [bool; 2],
    /// A HEARTBEAT with an unexpected tag was let through, waiting for its HEARTBEAT_ACK.
    hb_vtag_failed: bool,
    /// The direction of that HEARTBEAT.
    last_dir: u8,
}

impl SctpState {
    /// The association state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The verification tags expected from the original and the reply direction.
    pub fn vtags(&self) -> [u32; 2] {
        self.vtag
    }
}

/// Why an SCTP packet is refused before any state is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 12 bytes of common header.
    Short,
    /// No chunk, a zero-length chunk, or COOKIE_ECHO / COOKIE_ACK / INIT / INIT_ACK /
    /// SHUTDOWN_COMPLETE anywhere but alone at the front.
    BadChunks,
}

/// A packet whose common header and chunk layout passed the kernel's basic checks.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    l4: &'a [u8],
    vtag: u32,
    /// Which chunk types the packet carries (bit per type).
    map: [u64; 4],
}

impl Packet<'_> {
    /// The common header's verification tag.
    pub fn vtag(&self) -> u32 {
        self.vtag
    }

    /// True when the packet carries a chunk of type `ty`.
    pub fn has(&self, ty: u8) -> bool {
        self.map[ty as usize / 64] & 1 << (ty % 64) != 0
    }

    /// The chunks: (offset of the chunk header in the packet, type, flags).
    fn chunks(&self) -> impl Iterator<Item = (usize, u8, u8)> + '_ {
        chunk_offsets(self.l4).map(|off| (off, self.l4[off], self.l4[off + 1]))
    }

    /// The initiate tag of an INIT or INIT_ACK chunk at `off`, if its fixed part is there.
    fn init_tag(&self, off: usize) -> Option<u32> {
        // Chunk header (4) then the fixed INIT part (16), of which the tag comes first.
        self.l4.get(off + 4..off + 20)?;
        Some(be32(self.l4, off + 4))
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Offsets of the chunk headers: from byte 12, while a whole 4-byte chunk header fits, each
/// chunk's length rounded up to 4 bytes apart. A zero length would not advance; callers stop
/// at one ([`parse`] refuses such packets).
fn chunk_offsets(l4: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut off = 12usize;
    std::iter::from_fn(move || {
        if off + 4 > l4.len() {
            return None;
        }
        let here = off;
        let len = u16::from_be_bytes([l4[off + 2], l4[off + 3]]) as usize;
        off += (len + 3) & !3;
        if len == 0 {
            off = usize::MAX - 4; // stop after this one
        }
        Some(here)
    })
}

/// Checks the common header and the chunk layout as `sctp_error` and `do_basic_checks` do;
/// `l4` runs from the SCTP header to the end of the IP payload. The CRC32c is checked apart
/// ([`checksum_ok`]), and only when `nf_conntrack_checksum` is on.
pub fn parse(l4: &[u8]) -> Result<Packet<'_>, HeaderError> {
    if l4.len() < 12 {
        return Err(HeaderError::Short);
    }
    let mut map = [0u64; 4];
    let mut count = 0;
    let mut alone = false;
    for off in chunk_offsets(l4) {
        let ty = l4[off];
        let len = u16::from_be_bytes([l4[off + 2], l4[off + 3]]);
        if matches!(ty, chunk::INIT | chunk::INIT_ACK | chunk::SHUTDOWN_COMPLETE) {
            alone = true;
        }
        let front_only = alone || matches!(ty, chunk::COOKIE_ACK | chunk::COOKIE_ECHO);
        if (front_only && count != 0) || len == 0 {
            return Err(HeaderError::BadChunks);
        }
        map[ty as usize / 64] |= 1 << (ty % 64);
        count += 1;
    }
    if count == 0 {
        return Err(HeaderError::BadChunks);
    }
    Ok(Packet {
        l4,
        vtag: be32(l4, 4),
        map,
    })
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) lookup table.
const CRC32C: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// True when the SCTP packet's CRC32c (bytes 8..12, computed with that field zeroed) is right.
///
/// ```
/// // RFC 3720's test vector: 32 zero bytes have CRC32c 0x8A9136AA.
/// # use ctrack_protocols::sctp::crc32c;
/// assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
/// ```
pub fn checksum_ok(l4: &[u8]) -> bool {
    let (Some(head), Some(sent), Some(rest)) = (l4.get(..8), l4.get(8..12), l4.get(12..)) else {
        return false;
    };
    let c = crc_update(crc_update(crc_update(!0, head), &[0; 4]), rest);
    // The CRC goes on the wire least significant byte first.
    (!c).to_le_bytes() == sent
}

/// CRC32c of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc_update(!0, data)
}

/// Folds `data` into a running CRC32c register `c` (the CRC before its final inversion): with
/// the CPU's CRC32 instruction where it has one (SSE4.2 on x86-64, eight bytes an instruction),
/// else a byte at a time from [`CRC32C`]. The table's loop waits on each lookup before the next
/// (about five cycles a byte); on this project's Zen 4 host it was about half of an SCTP
/// packet's time in the tracker (tcpdump's ForCES test capture `forces3.pcap`: 3.3 to 3.7
/// Mpps with checksums, 6.8 without).
#[inline]
fn crc_update(c: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `crc_update_sse42` only requires SSE4.2, which the CPU was just found to have;
        // it has no other precondition.
        return unsafe { crc_update_sse42(c, data) };
    }
    crc_update_table(c, data)
}

/// [`crc_update`] a byte at a time from the table.
fn crc_update_table(mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c = CRC32C[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// [`crc_update`] with SSE4.2's CRC32 instruction, which computes CRC32c: eight bytes at a
/// time (taken little-endian, as the reflected CRC reads them), then the last few one by one.
///
/// # Safety
///
/// The CPU must have SSE4.2. (An `unsafe fn`, as Rust before 1.86 requires of a function with
/// a target feature.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc_update_sse42(c: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let mut c = u64::from(c);
    for w in words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // SAFETY: the intrinsic needs SSE4.2, this function's target feature, and reads no
        // memory. (Rust 1.87 made it safe to call here; the block keeps older Rust building.)
        #[allow(unused_unsafe)]
        let next = unsafe { _mm_crc32_u64(c, u64::from_le_bytes(b)) };
        c = next;
    }
    // The instruction leaves the 32-bit CRC in the low half.
    let mut c = c as u32;
    for &b in tail {
        // SAFETY: as above.
        #[allow(unused_unsafe)]
        let next = unsafe { _mm_crc32_u8(c, b) };
        c = next;
    }
    c
}

/// Tracks one SCTP packet whose header passed [`parse`], for the entry state `st` (a default
/// state when `ctx.confirmed` is false: the packet would create the entry).
///
/// Refused (`Invalid`): a first packet carrying ABORT, SHUTDOWN_COMPLETE or COOKIE_ACK, or any
/// chunk that cannot open an association from nothing (only HEARTBEAT and SHUTDOWN_ACK and the
/// handshake chunks can; DATA cannot), or an INIT with a non-zero tag or a cut fixed part; a
/// verification tag that does not match the direction's (unless an INIT, COOKIE_ECHO,
/// SHUTDOWN_ACK, SHUTDOWN_COMPLETE, ABORT or heartbeat chunk is present, which carry their own
/// rules); an invalid transition. Accepted packets refresh the entry to the last chunk's
/// state's timeout, except a retransmitted INIT in CLOSED and a heartbeat with a surprising
/// tag, which are let through ignored (`Ignore`: no refresh, no accounting). What the chunks
/// before a refused one (or beside such a heartbeat) did stays, as in the kernel: the state
/// they moved to, and ASSURED if one reached ESTABLISHED (`Partial`, which also says that the
/// state moved, for the entry's next event).
pub fn track(st: &mut SctpState, p: &Packet<'_>, ctx: &Ctx, s: &Sysctl) -> Decision {
    use chunk::*;
    let dir = ctx.dir;
    let (d, o) = (dir.idx(), dir.flip().idx());
    if !ctx.confirmed {
        // Out-of-the-blue packets that must not create anything (RFC 4960 8.4).
        if p.has(ABORT) || p.has(SHUTDOWN_COMPLETE) || p.has(COOKIE_ACK) {
            return Decision::Invalid;
        }
        *st = SctpState::default();
        for (off, ty, _) in p.chunks() {
            match next_state(Dir::Original, State::None, ty) {
                None | Some(State::None) => return Decision::Invalid,
                Some(_) => {}
            }
            match ty {
                INIT => {
                    if p.vtag != 0 {
                        return Decision::Invalid;
                    }
                    let Some(tag) = p.init_tag(off) else {
                        return Decision::Invalid;
                    };
                    st.vtag[Dir::Reply.idx()] = tag;
                }
                HEARTBEAT => st.vtag[Dir::Original.idx()] = p.vtag,
                SHUTDOWN_ACK => st.vtag[Dir::Reply.idx()] = p.vtag,
                _ => {}
            }
        }
    }
    let tag_exempt = [
        INIT,
        SHUTDOWN_COMPLETE,
        COOKIE_ECHO,
        ABORT,
        SHUTDOWN_ACK,
        HEARTBEAT,
        HEARTBEAT_ACK,
    ];
    if !tag_exempt.iter().any(|&t| p.has(t)) && p.vtag != st.vtag[d] {
        return Decision::Invalid;
    }
    let mut new_state = State::None;
    let mut ignore = false;
    let mut assured = false;
    let mut changed = false;
    // Each chunk moves the state in turn; one that is refused stops the walk, and what the
    // chunks before it did stays, ASSURED included, as in the kernel.
    let refused = 'chunks: {
        for (off, ty, flags) in p.chunks() {
            let own_or_peer = |st: &SctpState| {
                if flags & FLAG_T == 0 {
                    p.vtag == st.vtag[d]
                } else {
                    p.vtag == st.vtag[o]
                }
            };
            match ty {
                INIT if p.vtag != 0 => break 'chunks true,
                ABORT | SHUTDOWN_COMPLETE if !own_or_peer(st) => break 'chunks true,
                COOKIE_ECHO if p.vtag != st.vtag[d] => break 'chunks true,
                COOKIE_ACK => st.init = [false; 2],
                HEARTBEAT | HEARTBEAT_ACK => {
                    if st.vtag[d] == 0 {
                        st.vtag[d] = p.vtag;
                    } else if p.vtag != st.vtag[d] {
                        if p.has(DATA) || ignore {
                            break 'chunks true;
                        }
                        if ty == HEARTBEAT {
                            // Perhaps a restarted peer: let it through once, untracked.
                            st.hb_vtag_failed = true;
                            st.last_dir = d as u8;
                            ignore = true;
                            continue;
                        }
                        if !st.hb_vtag_failed || st.last_dir == d as u8 {
                            break 'chunks true;
                        }
                        // The answer to that heartbeat: adopt the new tags.
                        st.hb_vtag_failed = false;
                        st.vtag[d] = p.vtag;
                        st.vtag[o] = 0;
                    } else {
                        st.hb_vtag_failed = false;
                    }
                }
                _ => {}
            }
            let old = st.state;
            let Some(next) = next_state(dir, old, ty) else {
                break 'chunks true;
            };
            new_state = next;
            match ty {
                INIT => {
                    let Some(tag) = p.init_tag(off) else {
                        break 'chunks true;
                    };
                    if st.init[d] && st.init[o] {
                        st.init[o] = false;
                    }
                    st.init[d] = true;
                    st.vtag[o] = tag;
                    // A retransmitted INIT must not keep a closed entry alive forever.
                    if next == State::Closed && old == State::Closed && ctx.confirmed {
                        ignore = true;
                    }
                }
                INIT_ACK => {
                    let Some(tag) = p.init_tag(off) else {
                        break 'chunks true;
                    };
                    let known = st.vtag[o];
                    if !st.init[o] && known != 0 && known != tag {
                        break 'chunks true;
                    }
                    if st.init[d] && st.init[o] && known != tag {
                        break 'chunks true; // colliding INITs
                    }
                    st.vtag[o] = tag;
                }
                _ => {}
            }
            st.state = next;
            if old != next {
                changed = true;
                assured |= next == State::Established;
            }
        }
        false
    };
    if refused || ignore {
        // Refused, or let through but neither refreshed nor counted; either way the entry
        // keeps what the chunks walked did to it.
        return match (assured || changed, refused) {
            (true, _) => Decision::Partial(Partial {
                refused,
                assured,
                changed,
            }),
            (false, true) => Decision::Invalid,
            (false, false) => Decision::Ignore,
        };
    }
    Decision::Accept(Accept {
        timeout: Some(secs(new_state.timeout(s))),
        assured,
        kill: false,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(vtag: u32, chunks: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0x13, 0x88, 0x0b, 0xb8];
        b.extend_from_slice(&vtag.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        for (ty, flags, body) in chunks {
            b.push(*ty);
            b.push(*flags);
            b.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            b.extend_from_slice(body);
            while b.len() % 4 != 0 {
                b.push(0);
            }
        }
        b
    }

    fn init_body(tag: u32) -> Vec<u8> {
        let mut v = tag.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        v
    }

    fn ctx(dir: Dir, confirmed: bool) -> Ctx {
        Ctx {
            dir,
            confirmed,
            seen_reply: false,
            assured: false,
            now: 0,
            expires: 0,
        }
    }

    fn run(st: &mut SctpState, dir: Dir, confirmed: bool, b: &[u8]) -> Decision {
        let p = parse(b).expect("basic checks");
        track(st, &p, &ctx(dir, confirmed), &Sysctl::default())
    }

    fn timeout(d: Decision) -> Option<u64> {
        match d {
            Decision::Accept(a) => a.timeout.map(|t| t / crate::NANOS_PER_SEC),
            _ => None,
        }
    }

    /// A handshake up to COOKIE_ECHOED (tags 0xb from the client, 0xa from the server),
    /// each step checked.
    fn cookie_echoed() -> SctpState {
        let mut st = SctpState::default();
        let d = run(
            &mut st,
            Dir::Original,
            false,
            &pkt(0, &[(1, 0, &init_body(0xa))]),
        );
        assert_eq!((st.state(), timeout(d)), (State::Closed, Some(10)));
        let d = run(
            &mut st,
            Dir::Reply,
            true,
            &pkt(0xa, &[(2, 0, &init_body(0xb))]),
        );
        assert_eq!((st.state(), timeout(d)), (State::CookieWait, Some(3)));
        assert_eq!(st.vtags(), [0xb, 0xa]);
        run(
            &mut st,
            Dir::Original,
            true,
            &pkt(0xb, &[(10, 0, b"cookie")]),
        );
        assert_eq!(st.state(), State::CookieEchoed);
        st
    }

    #[test]
    fn four_way_handshake_data_and_shutdown() {
        let mut st = cookie_echoed();
        let d = run(&mut st, Dir::Reply, true, &pkt(0xa, &[(11, 0, b"")]));
        assert_eq!(st.state(), State::Established);
        assert!(matches!(d, Decision::Accept(a) if a.assured && a.timeout == Some(secs(210))));
        // DATA with the right tag; then with a wrong one.
        let d = run(&mut st, Dir::Original, true, &pkt(0xb, &[(0, 3, b"data")]));
        assert_eq!(timeout(d), Some(210));
        let d = run(&mut st, Dir::Original, true, &pkt(0xc, &[(0, 3, b"data")]));
        assert_eq!(d, Decision::Invalid);
        run(
            &mut st,
            Dir::Original,
            true,
            &pkt(0xb, &[(7, 0, &[0, 0, 0, 1])]),
        );
        assert_eq!(st.state(), State::ShutdownSent);
        run(&mut st, Dir::Reply, true, &pkt(0xa, &[(8, 0, b"")]));
        assert_eq!(st.state(), State::ShutdownAckSent);
        let d = run(&mut st, Dir::Original, true, &pkt(0xb, &[(14, 0, b"")]));
        assert_eq!((st.state(), timeout(d)), (State::Closed, Some(10)));
    }

    /// What the chunks before a refused one did stays and is told (`Partial`), as in the
    /// kernel: the state, ASSURED when one reached ESTABLISHED, and that the state moved.
    #[test]
    fn chunks_before_a_refusal_keep_what_they_did() {
        /// A chunk: type, flags, body.
        type Chunk = (u8, u8, &'static [u8]);
        const ABORT: Chunk = (6, 0, b"");
        const COOKIE_ACK: Chunk = (11, 0, b"");
        const HEARTBEAT: Chunk = (4, 0, b"hb");
        const SHUTDOWN: Chunk = (7, 0, &[0, 0, 0, 1]);
        let partial = |refused, assured| {
            Decision::Partial(Partial {
                refused,
                assured,
                changed: true,
            })
        };
        // Each step on the association the one before left (a fresh handshake where `fresh`),
        // all with a stray tag.
        let steps: [(bool, Dir, &[Chunk], Decision, State); 5] = [
            // COOKIE_ACK, then the ABORT: refused, ESTABLISHED and ASSURED.
            (
                true,
                Dir::Reply,
                &[COOKIE_ACK, ABORT],
                partial(true, true),
                State::Established,
            ),
            // SHUTDOWN, then the ABORT: refused, left in SHUTDOWN_SENT, not ASSURED again.
            (
                false,
                Dir::Original,
                &[SHUTDOWN, ABORT],
                partial(true, false),
                State::ShutdownSent,
            ),
            // The ABORT first: refused before anything moves.
            (
                false,
                Dir::Original,
                &[ABORT, (8, 0, b"")],
                Decision::Invalid,
                State::ShutdownSent,
            ),
            // COOKIE_ACK, then a HEARTBEAT: let through untracked, yet ESTABLISHED and
            // ASSURED.
            (
                true,
                Dir::Reply,
                &[COOKIE_ACK, HEARTBEAT],
                partial(false, true),
                State::Established,
            ),
            // A heartbeat alone moves nothing: ignored as before.
            (
                false,
                Dir::Reply,
                &[HEARTBEAT],
                Decision::Ignore,
                State::Established,
            ),
        ];
        let mut st = cookie_echoed();
        for (n, (fresh, dir, chunks, want, state)) in steps.into_iter().enumerate() {
            if fresh {
                st = cookie_echoed();
            }
            let d = run(&mut st, dir, true, &pkt(0x77, chunks));
            assert_eq!((d, st.state()), (want, state), "step {n}");
        }
    }

    #[test]
    fn first_packets_that_create_nothing() {
        for b in [
            pkt(5, &[(1, 0, &init_body(1))]), // INIT with a tag
            pkt(5, &[(0, 3, b"data")]),       // DATA out of the blue
            pkt(5, &[(6, 0, b"")]),           // ABORT
            pkt(5, &[(11, 0, b"")]),          // COOKIE_ACK
            pkt(0, &[(1, 0, &[0, 0, 0, 1])]), // INIT cut short
            pkt(5, &[(14, 0, b"")]),          // SHUTDOWN_COMPLETE
        ] {
            let mut st = SctpState::default();
            assert_eq!(
                run(&mut st, Dir::Original, false, &b),
                Decision::Invalid,
                "{b:?}"
            );
        }
        let mut st = SctpState::default();
        let d = run(&mut st, Dir::Original, false, &pkt(7, &[(4, 0, b"hb")]));
        assert_eq!((st.state(), timeout(d)), (State::HeartbeatSent, Some(30)));
    }

    #[test]
    fn basic_checks() {
        assert_eq!(parse(&[0; 11]).unwrap_err(), HeaderError::Short);
        assert_eq!(parse(&[0; 12]).unwrap_err(), HeaderError::BadChunks);
        let two = pkt(0, &[(1, 0, &init_body(1)), (0, 0, b"x")]);
        assert_eq!(parse(&two).unwrap_err(), HeaderError::BadChunks);
        let cookie_second = pkt(1, &[(0, 0, b"x"), (10, 0, b"c")]);
        assert_eq!(parse(&cookie_second).unwrap_err(), HeaderError::BadChunks);
        let mut zero = pkt(1, &[(0, 0, b"x")]);
        zero[14] = 0;
        zero[15] = 0;
        assert_eq!(parse(&zero).unwrap_err(), HeaderError::BadChunks);
        assert!(parse(&pkt(1, &[(10, 0, b"c"), (0, 0, b"x")])).is_ok());
    }

    #[test]
    fn retransmitted_init_does_not_refresh() {
        let mut st = SctpState::default();
        run(
            &mut st,
            Dir::Original,
            false,
            &pkt(0, &[(1, 0, &init_body(9))]),
        );
        let d = run(
            &mut st,
            Dir::Original,
            true,
            &pkt(0, &[(1, 0, &init_body(9))]),
        );
        assert_eq!(d, Decision::Ignore);
    }

    /// The CRC as the tracker computes it (the CPU's instruction where it has one; under Miri,
    /// given `-C target-feature=+sse4.2`) against the table, byte by byte, at every length
    /// around a word's and from every alignment.
    #[test]
    fn the_crc_instruction_and_the_table_agree() {
        let data: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in (0..=40).chain([100, 192]) {
                let d = &data[start..start + len];
                for c in [!0, 0, 0x1234_5678] {
                    assert_eq!(crc_update(c, d), crc_update_table(c, d), "{start} {len}");
                }
            }
        }
    }

    proptest::proptest! {
        /// Any packet: the check with the field zeroed in place agrees with the table's CRC of
        /// a copy whose field is zeroed, and a packet carrying that CRC passes.
        #[test]
        fn any_packet_checks_as_the_table_says(
            mut l4 in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
        ) {
            if l4.len() >= 12 {
                let mut zeroed = l4.clone();
                zeroed[8..12].fill(0);
                let want = !crc_update_table(!0, &zeroed);
                proptest::prop_assert_eq!(
                    checksum_ok(&l4),
                    want.to_le_bytes() == l4[8..12]
                );
                l4[8..12].copy_from_slice(&want.to_le_bytes());
                proptest::prop_assert!(checksum_ok(&l4));
            } else {
                proptest::prop_assert!(!checksum_ok(&l4));
            }
        }
    }

    #[test]
    fn crc32c_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let mut b = pkt(0, &[(1, 0, &init_body(1))]);
        let c = crc32c(&b);
        b[8..12].copy_from_slice(&c.to_le_bytes());
        assert!(checksum_ok(&b));
        b[20] ^= 1;
        assert!(!checksum_ok(&b));
    }
}
