//! GRE: version-1 (PPTP) packets keyed by call ID, everything else keyed like a generic flow;
//! the `gre`/`gre_stream` timeouts are stamped into the entry when it is created.

use crate::sysctl::Sysctl;
use crate::{Accept, Ctx, Decision, secs};

/// The GRE protocol number for PPP, the only payload version-1 GRE may carry.
pub const PROTO_PPP: u16 = 0x880b;

/// Per-entry GRE state: the two timeouts the kernel keeps (and prints) with the entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GreState {
    /// Lifetime in seconds before a reply.
    pub timeout: u32,
    /// Lifetime in seconds once both directions have been seen.
    pub stream_timeout: u32,
}

/// The tuple keys a GRE header yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GreKey {
    /// Not version 1, or too short to read a call ID: no keys (both zero).
    Unkeyed,
    /// Version-1 PPP: the destination key is the call ID.
    CallId(u16),
    /// Version 1 carrying something other than PPP: the kernel cannot build a tuple.
    Unsupported,
}

/// Reads the keys from a GRE header; `l4` starts at the GRE header.
pub fn key(l4: &[u8]) -> GreKey {
    if l4.len() < 4 || l4[1] & 0x07 != 1 {
        return GreKey::Unkeyed;
    }
    if l4.len() < 8 {
        return GreKey::Unkeyed;
    }
    if u16::from_be_bytes([l4[2], l4[3]]) != PROTO_PPP {
        return GreKey::Unsupported;
    }
    GreKey::CallId(u16::from_be_bytes([l4[6], l4[7]]))
}

/// Tracks one GRE packet: the first stamps the timeouts; with a reply seen the entry gets the
/// stream timeout and ASSURED, otherwise the short one.
pub fn track(st: &mut GreState, ctx: &Ctx, s: &Sysctl) -> Decision {
    if !ctx.confirmed {
        st.timeout = s.nf_conntrack_gre_timeout;
        st.stream_timeout = s.nf_conntrack_gre_timeout_stream;
    }
    if ctx.seen_reply {
        Decision::Accept(Accept {
            timeout: Some(secs(st.stream_timeout)),
            assured: !ctx.assured,
            kill: false,
            changed: false,
        })
    } else {
        Decision::refresh(secs(st.timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dir;

    #[test]
    fn keys() {
        assert_eq!(key(&[0, 0, 0x08, 0]), GreKey::Unkeyed);
        assert_eq!(key(&[0x30, 0x81, 0x88, 0x0b, 0, 8]), GreKey::Unkeyed);
        assert_eq!(
            key(&[0x30, 0x81, 0x88, 0x0b, 0, 8, 0, 9]),
            GreKey::CallId(9)
        );
        assert_eq!(
            key(&[0x30, 0x81, 0x08, 0x00, 0, 8, 0, 9]),
            GreKey::Unsupported
        );
    }

    #[test]
    fn stream() {
        let s = Sysctl::default();
        let mut st = GreState::default();
        let mut c = Ctx {
            dir: Dir::Original,
            confirmed: false,
            seen_reply: false,
            assured: false,
            now: 0,
            expires: 0,
        };
        assert_eq!(track(&mut st, &c, &s), Decision::refresh(secs(30)));
        assert_eq!(
            st,
            GreState {
                timeout: 30,
                stream_timeout: 180
            }
        );
        c.confirmed = true;
        c.seen_reply = true;
        assert_eq!(
            track(&mut st, &c, &s),
            Decision::Accept(Accept {
                timeout: Some(secs(180)),
                assured: true,
                kill: false,
                changed: false
            })
        );
    }
}
