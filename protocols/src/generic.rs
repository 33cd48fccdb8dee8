//! Protocols without a tracker of their own: one pseudo-connection per address pair and
//! protocol number, refreshed by every packet, never ASSURED.

use crate::sysctl::Sysctl;
use crate::{Decision, secs};

/// Tracks a packet of an untracked-by-name protocol: refresh to `nf_conntrack_generic_timeout`.
pub fn track(s: &Sysctl) -> Decision {
    Decision::refresh(secs(s.nf_conntrack_generic_timeout))
}

#[cfg(test)]
mod tests {
    #[test]
    fn refreshes_to_generic_timeout() {
        let s = crate::sysctl::Sysctl {
            nf_conntrack_generic_timeout: 5,
            ..Default::default()
        };
        assert_eq!(super::track(&s), crate::Decision::refresh(crate::secs(5)));
    }
}
