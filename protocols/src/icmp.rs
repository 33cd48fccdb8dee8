//! ICMP and ICMPv6: which message types form query/answer pseudo-connections, which are
//! errors about another flow, which the kernel leaves untracked; and the query tracker.

use crate::sysctl::Sysctl;
use crate::{Decision, secs};

/// What an ICMP or ICMPv6 type means to connection tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A query that may open a pseudo-connection; the field is its answer's type.
    Query {
        /// The type of the answer.
        answer: u8,
    },
    /// An answer to a query: it has an inverse, so it can match an entry, but never opens one.
    Answer {
        /// The type of the query it answers.
        query: u8,
    },
    /// An error quoting the packet that caused it: tracked as RELATED to that packet's flow.
    Error,
    /// Neighbour discovery and multicast listener messages: never tracked (`untracked`).
    Untracked,
    /// Anything else: there is no tuple for it (`invalid`).
    Invalid,
}

/// Highest ICMPv4 type the kernel knows (`NR_ICMP_TYPES`); anything above is invalid.
pub const V4_MAX_TYPE: u8 = 18;

/// Query/answer pairs for ICMPv4: echo, timestamp, information, address mask.
const V4_PAIRS: [(u8, u8); 4] = [(8, 0), (13, 14), (15, 16), (17, 18)];
/// ICMPv4 error types: unreachable, source quench, redirect, time exceeded, parameter problem.
const V4_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];
/// Query/answer pairs for ICMPv6: echo and node information.
const V6_PAIRS: [(u8, u8); 2] = [(128, 129), (139, 140)];
/// ICMPv6 types the kernel never tracks: MLD query/report/done, router and neighbour
/// discovery, MLDv2 report, multicast router advertisement/solicitation.
const V6_UNTRACKED: [u8; 10] = [130, 131, 132, 133, 134, 135, 136, 143, 151, 152];
/// The ICMPv6 redirect type: an error (quoting a packet in its redirected-header option) only
/// with code 0, hop limit 255 and a link-local source, as neighbour discovery requires.
pub const V6_REDIRECT: u8 = 137;

fn pair_class(pairs: &[(u8, u8)], t: u8) -> Option<Class> {
    pairs.iter().find_map(|&(q, a)| {
        if t == q {
            Some(Class::Query { answer: a })
        } else if t == a {
            Some(Class::Answer { query: q })
        } else {
            None
        }
    })
}

/// Classifies an ICMPv4 type.
pub fn classify_v4(t: u8) -> Class {
    if t > V4_MAX_TYPE {
        Class::Invalid
    } else if V4_ERRORS.contains(&t) {
        Class::Error
    } else {
        pair_class(&V4_PAIRS, t).unwrap_or(Class::Invalid)
    }
}

/// Classifies an ICMPv6 type (the redirect type is classified as [`Class::Invalid`] here;
/// whether a redirect is an error depends on its code, its IP header's hop limit and source,
/// and its first option, which the engine checks before classifying).
pub fn classify_v6(t: u8) -> Class {
    if V6_UNTRACKED.contains(&t) {
        Class::Untracked
    } else if t < 128 {
        Class::Error
    } else {
        pair_class(&V6_PAIRS, t).unwrap_or(Class::Invalid)
    }
}

/// The type that answers (or asks) `t`, if `t` belongs to a query/answer pair.
pub fn inverse(v6: bool, t: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if v6 { &V6_PAIRS } else { &V4_PAIRS };
    match pair_class(pairs, t)? {
        Class::Query { answer } => Some(answer),
        Class::Answer { query } => Some(query),
        _ => None,
    }
}

/// Tracks a query or answer of an existing (or just created) pseudo-connection whose original
/// type is `orig_type`: only a query may own an entry; every packet refreshes it.
pub fn track(v6: bool, orig_type: u8, s: &Sysctl) -> Decision {
    let class = if v6 {
        classify_v6(orig_type)
    } else {
        classify_v4(orig_type)
    };
    match class {
        Class::Query { .. } => Decision::refresh(secs(if v6 {
            s.nf_conntrack_icmpv6_timeout
        } else {
            s.nf_conntrack_icmp_timeout
        })),
        _ => Decision::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_table() {
        assert_eq!(classify_v4(8), Class::Query { answer: 0 });
        assert_eq!(classify_v4(0), Class::Answer { query: 8 });
        assert_eq!(classify_v4(17), Class::Query { answer: 18 });
        for t in [3, 4, 5, 11, 12] {
            assert_eq!(classify_v4(t), Class::Error);
        }
        for t in [1, 2, 6, 7, 9, 10, 19, 255] {
            assert_eq!(classify_v4(t), Class::Invalid);
        }
        assert_eq!(inverse(false, 13), Some(14));
        assert_eq!(inverse(false, 9), None);
    }

    #[test]
    fn v6_table() {
        assert_eq!(classify_v6(128), Class::Query { answer: 129 });
        assert_eq!(classify_v6(140), Class::Answer { query: 139 });
        assert_eq!(classify_v6(1), Class::Error);
        assert_eq!(classify_v6(135), Class::Untracked);
        assert_eq!(classify_v6(152), Class::Untracked);
        assert_eq!(classify_v6(137), Class::Invalid);
        assert_eq!(classify_v6(200), Class::Invalid);
        assert_eq!(inverse(true, 129), Some(128));
    }

    #[test]
    fn only_queries_own_entries() {
        let s = Sysctl::default();
        assert_eq!(track(false, 8, &s), Decision::refresh(secs(30)));
        assert_eq!(track(false, 0, &s), Decision::Invalid);
        assert_eq!(track(true, 139, &s), Decision::refresh(secs(30)));
    }
}
