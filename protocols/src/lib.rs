//! Sans-IO connection-tracking state machines after Linux's nf_conntrack.
//!
//! Each tracker is a pure function of the entry's protocol state, the packet's parsed header,
//! a [`Ctx`] describing the entry (direction, status bits, the time, which the caller supplies)
//! and the [`sysctl::Sysctl`] values. It returns a [`Decision`]: what the engine must do with the
//! entry. Nothing here owns a table, a clock or a socket.
//!
//! ```
//! use ctrack_protocols::{udp, Ctx, Decision, Dir, sysctl::Sysctl};
//! let s = Sysctl::default();
//! let mut st = udp::UdpState::default();
//! let first = Ctx { dir: Dir::Original, confirmed: false, seen_reply: false, assured: false,
//!                   now: 0, expires: 0 };
//! match udp::track(&mut st, &first, &s) {
//!     Decision::Accept(a) => assert_eq!(a.timeout, Some(30 * ctrack_protocols::NANOS_PER_SEC)),
//!     _ => unreachable!(),
//! }
//! ```

#![warn(missing_docs)]

pub mod generic;
pub mod gre;
pub mod icmp;
pub mod sctp;
pub mod sysctl;
pub mod tcp;
pub mod udp;

/// Nanoseconds of the caller's monotonic clock.
pub type Nanos = u64;

/// One second in [`Nanos`].
pub const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// The kernel's clock tick (HZ 250), in which it counts every timeout.
pub const JIFFY: Nanos = 4_000_000;

/// Where ctrack puts a deadline inside the tick-wide window in which the kernel's falls.
///
/// The kernel counts a deadline in whole ticks from the tick its packet came in, at a point
/// of that tick that no timestamp shows. Measured in nanoseconds from the packet, a deadline of
/// `T` therefore falls anywhere in a window one tick wide: an entry set to live `T` is expired
/// from some time in `(T - 1 tick, T]` on, and the UDP stream delay ("strictly after `T`")
/// passes at some time in `(T, T + 1 tick]`. The kernel oracle shows exactly that spread
/// (probes 0 to 3.3 ms before a 3-second timeout found the entry gone in some flows and alive
/// in others). No rule can tell which from the timestamps; the middle of the window, half a
/// tick from `T`, is wrong least often.
pub const HALF_JIFFY: Nanos = JIFFY / 2;

/// Converts whole seconds (as sysctls hold them) into [`Nanos`].
#[inline]
pub const fn secs(s: u32) -> Nanos {
    s as Nanos * NANOS_PER_SEC
}

/// Direction of a packet relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// Same direction as the packet that created the entry.
    Original = 0,
    /// The opposite direction.
    Reply = 1,
}

impl Dir {
    /// The other direction.
    #[inline]
    pub fn flip(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }

    /// 0 for original, 1 for reply: an index into per-direction arrays.
    #[inline]
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// What a tracker knows about the entry a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The packet's direction.
    pub dir: Dir,
    /// False while the entry is being created by this very packet.
    pub confirmed: bool,
    /// The entry has already accepted a packet in the reply direction (before this one).
    pub seen_reply: bool,
    /// The entry is ASSURED.
    pub assured: bool,
    /// The time of this packet.
    pub now: Nanos,
    /// When the entry would expire if nothing refreshed it (0 while unconfirmed).
    pub expires: Nanos,
}

impl Ctx {
    /// The context of the packet that opens an entry at `now` (original direction,
    /// unconfirmed, nothing seen back yet).
    pub fn opening(now: Nanos) -> Ctx {
        Ctx {
            dir: Dir::Original,
            confirmed: false,
            seen_reply: false,
            assured: false,
            now,
            expires: 0,
        }
    }
}

/// The engine's instructions after a tracker has seen a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The packet is accepted and keeps its entry.
    Accept(Accept),
    /// The packet keeps its entry but nothing about the entry changes: no state, timeout or
    /// counter update (the kernel's "ignored" packets).
    Ignore,
    /// The packet loses its entry (verdict `invalid`); the entry itself is left as it was.
    Invalid,
    /// The entry must be destroyed and the packet looked up again, so that it starts a fresh
    /// connection (TCP reopening a closed connection with a SYN).
    Reopen,
    /// [`Decision::Ignore`] or [`Decision::Invalid`] (as [`Partial::refused`] says) for a
    /// packet whose tracker changed its entry before deciding so, as the kernel's SCTP tracker
    /// does chunk by chunk: the state it left stays, and the entry gains what [`Partial`] says.
    Partial(Partial),
}

/// What a packet that is ignored or refused did to its entry on the way (see
/// [`Decision::Partial`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Partial {
    /// The packet is refused (verdict `invalid`); otherwise it is ignored (let through, with
    /// no refresh and no accounting).
    pub refused: bool,
    /// Set the ASSURED bit (a chunk took the association to ESTABLISHED).
    pub assured: bool,
    /// The protocol state moved (see [`Accept::changed`]): the kernel reports it with the
    /// entry's next event, this packet's own if it is let through.
    pub changed: bool,
}

/// Details of an accepted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Accept {
    /// New lifetime counted from now, or `None` to leave the expiry time as it is.
    pub timeout: Option<Nanos>,
    /// Set the ASSURED bit.
    pub assured: bool,
    /// Delete the entry once this packet has been accounted (the kernel's `nf_ct_kill_acct`).
    pub kill: bool,
    /// The tracker's protocol state moved (the kernel then reports the entry's state in an
    /// update event, `IPCT_PROTOINFO`): TCP sets it, as the kernel does, also where it resyncs
    /// an entry from SYN_SENT's view without the visible state changing; SCTP where any chunk
    /// moved the state, even if a later one moved it back.
    pub changed: bool,
}

/// The most common outcome of all: the packet is accepted, the entry lives `timeout` from now
/// and becomes ASSURED if `assured`; an [`Accept`] that neither keeps the old expiry nor kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// New lifetime counted from now.
    pub timeout: Nanos,
    /// Set the ASSURED bit.
    pub assured: bool,
}

impl From<Refresh> for Accept {
    #[inline(always)]
    fn from(r: Refresh) -> Accept {
        Accept {
            timeout: Some(r.timeout),
            assured: r.assured,
            kill: false,
            changed: false,
        }
    }
}

impl Decision {
    /// Accept and refresh the entry to `timeout` from now.
    #[inline]
    pub fn refresh(timeout: Nanos) -> Decision {
        Decision::Accept(Accept {
            timeout: Some(timeout),
            assured: false,
            kill: false,
            changed: false,
        })
    }
}
