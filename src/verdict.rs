//! What ctrack decided about one packet, and its text form (the kernel oracle's format).

use std::fmt;

pub use ctrack_protocols::Dir;

/// The packet's connection-tracking state (the kernel's ctinfo), or what happened instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// First packets of a connection, before any reply.
    New,
    /// Part of a connection that has seen both directions, or a reply.
    Established,
    /// A new connection an expectation announced, or an ICMP error about a known connection.
    Related,
    /// No connection: malformed, out of window, or not trackable.
    Invalid,
    /// Deliberately not tracked (ICMPv6 neighbour discovery and MLD).
    Untracked,
    /// Not an IPv4/IPv6 frame.
    Skipped,
    /// ctrack itself drops the packet (table full and nothing could be evicted).
    Dropped,
    /// A fragment held until its datagram is complete.
    Held,
    /// The oracle's router tracked the packet but answered it with an ICMP error of its own
    /// instead of forwarding it (see [`crate::host::Egress`]); the oracle, which sees only
    /// that error, prints `unmarked`.
    Unmarked,
}

/// The decision for one packet.
///
/// ```
/// use ctrack::{Conntrack, Config, LinkType};
/// let ct = Conntrack::new(Config::default());
/// let v = ct.process(&[0u8; 10], LinkType::Ethernet, 0);
/// assert_eq!(v.to_string(), "skipped");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// The state.
    pub state: State,
    /// Direction of the packet within its connection (meaningful for New, Established,
    /// Related).
    pub dir: Dir,
    /// The connection is ASSURED after this packet.
    pub assured: bool,
    /// The connection was created by an expectation.
    pub expected: bool,
    /// How many frames this verdict stands for: 1, or for a reassembled datagram the number of
    /// fragments it was made of (the kernel forwards them again one by one).
    pub frames: u16,
}

impl Verdict {
    pub(crate) const fn bare(state: State) -> Verdict {
        Verdict {
            state,
            dir: Dir::Original,
            assured: false,
            expected: false,
            frames: 1,
        }
    }

    /// `invalid`.
    pub const INVALID: Verdict = Verdict::bare(State::Invalid);
    /// `untracked`.
    pub const UNTRACKED: Verdict = Verdict::bare(State::Untracked);
    /// `skipped`.
    pub const SKIPPED: Verdict = Verdict::bare(State::Skipped);
    /// `dropped`.
    pub const DROPPED: Verdict = Verdict::bare(State::Dropped);
    /// `held`.
    pub const HELD: Verdict = Verdict::bare(State::Held);
    /// `unmarked`.
    pub const UNMARKED: Verdict = Verdict::bare(State::Unmarked);

    /// True for states that carry a connection (new, established, related).
    pub fn tracked(&self) -> bool {
        matches!(self.state, State::New | State::Established | State::Related)
    }

    /// Writes the verdict as the oracle prints it, once per frame it stands for.
    pub fn write_line(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for i in 0..self.frames.max(1) {
            if i > 0 {
                out.write_char(' ')?;
            }
            write!(out, "{self}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.state {
            State::New => "new",
            State::Established => "established",
            State::Related => "related",
            State::Invalid => return f.write_str("invalid"),
            State::Untracked => return f.write_str("untracked"),
            State::Skipped => return f.write_str("skipped"),
            State::Dropped => return f.write_str("dropped"),
            State::Held => return f.write_str("held"),
            State::Unmarked => return f.write_str("unmarked"),
        };
        f.write_str(name)?;
        f.write_str(match self.dir {
            Dir::Original => ",orig",
            Dir::Reply => ",reply",
        })?;
        if self.assured {
            f.write_str("+assured")?;
        }
        if self.expected {
            f.write_str("+expected")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let v = Verdict {
            state: State::Established,
            dir: Dir::Reply,
            assured: true,
            expected: false,
            frames: 1,
        };
        assert_eq!(v.to_string(), "established,reply+assured");
        let v = Verdict {
            state: State::Related,
            dir: Dir::Original,
            assured: false,
            expected: true,
            frames: 3,
        };
        let mut s = String::new();
        v.write_line(&mut s).unwrap();
        assert_eq!(
            s,
            "related,orig+expected related,orig+expected related,orig+expected"
        );
        assert_eq!(Verdict::INVALID.to_string(), "invalid");
    }
}
