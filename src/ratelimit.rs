//! The router's per-destination rate limit on its own ICMP messages: the token buckets Linux
//! keeps for each peer address, which decide whether an error the host model answers a packet
//! with (and the connection events that error carries out) is sent at all.
//!
//! Facts (Linux 6.x, HZ 250, default sysctls), each checked against the kernel oracle:
//! - A bucket gains one token per tick and holds at most six messages' worth of the message
//!   being sent; a message costing `c` goes when the bucket holds `c`, and takes it. A peer
//!   the kernel has not met (or has forgotten) starts full.
//! - An IPv4 parameter-problem error costs `icmp_ratelimit` (one second) from the bucket of
//!   its destination, the offending packet's source: six go at once, then one a second.
//!   Fragmentation-needed errors are exempt.
//! - An IPv6 router answers a packet from a link-local source that it would route elsewhere
//!   with a beyond-scope error, which costs `net.ipv6.icmp.ratelimit` (100 ms, 25 ticks; the
//!   kernel's widening for routes shorter than a host route does not apply to the route it
//!   looks up for such an error, as measured: 20 ticks after a drained bucket is too soon, 25
//!   enough) from the source's bucket. Packet-too-big errors are exempt.
//! - An IPv6 packet the router sends back out of the interface it came in on (a link-local
//!   destination) is checked for a redirect: a second (250 ticks) from the destination's
//!   bucket, whether or not a redirect goes out, and when that allows and the source is on the
//!   link too, another second from the source's.
//!
//! Not modelled: the host-wide limit of `icmp_msgs_per_sec` (1,000 a second, bursts of 50),
//! whose every message takes a random 0 to 2 credits, so that no model can follow it exactly.

use std::collections::HashMap;
use std::hash::Hash;

use ctrack_protocols::{JIFFY, Nanos};
use foldhash::fast::RandomState;

/// Kernel ticks per second.
pub const HZ: u64 = 1_000_000_000 / JIFFY;
/// What an IPv4 error costs (`net.ipv4.icmp_ratelimit`, 1,000 ms by default), in ticks.
pub const V4_ERROR: u64 = HZ;
/// What an IPv6 error costs (`net.ipv6.icmp.ratelimit`, 100 ms by default), in ticks.
pub const V6_ERROR: u64 = HZ / 10;
/// What a redirect check costs (a second, fixed), in ticks.
pub const REDIRECT: u64 = HZ;
/// A bucket holds at most this many messages' worth of tokens (the kernel's burst factor).
const BURST: u64 = 6;
/// The largest cost of any message: the bucket of a peer left alone this many ticks times
/// [`BURST`] is full whatever the next message costs, as a new peer's is.
const MAX_COST: u64 = HZ;
/// Peers kept per address family at most. Past it, those that are as good as new are
/// forgotten, then the least recently weighed half.
const MAX_PEERS: usize = 1024;

/// One peer's bucket: its tokens, in ticks, as of tick `last`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    last: u64,
}

impl Bucket {
    /// The tokens the bucket would hold at `tick` before a message of `cost` is weighed (the
    /// kernel caps them at that message's burst).
    fn tokens_at(&self, tick: u64, cost: u64) -> u64 {
        (self.tokens + tick.saturating_sub(self.last)).min(BURST * cost)
    }

    /// True when, at `tick`, the bucket is as full as a new peer's for any message.
    fn as_new(&self, tick: u64) -> bool {
        self.tokens + tick.saturating_sub(self.last) >= BURST * MAX_COST
    }
}

/// The buckets of one address family's peers (`A`: the address bytes).
#[derive(Debug)]
pub struct Peers<A> {
    map: HashMap<A, Bucket, RandomState>,
}

impl<A> Default for Peers<A> {
    fn default() -> Self {
        Peers {
            map: HashMap::default(),
        }
    }
}

impl<A: Hash + Eq + Copy> Peers<A> {
    /// Whether a message of `cost` ticks to `addr` at `now` would go, changing nothing.
    pub fn would_allow(&self, addr: &A, now: Nanos, cost: u64) -> bool {
        let tick = now / JIFFY;
        self.map
            .get(addr)
            .is_none_or(|b| b.tokens_at(tick, cost) >= cost)
    }

    /// Weighs a message of `cost` ticks to `addr` at `now`: true when it goes (its cost is
    /// taken). Either way the bucket is brought up to `now`. A peer there is no memory for
    /// is let through unrecorded, as the kernel lets a message through when it cannot
    /// allocate the peer.
    ///
    /// ```
    /// use ctrack::ratelimit::{HZ, Peers};
    /// use ctrack::NANOS_PER_SEC;
    /// let mut p = Peers::default();
    /// // Six at once, then one a second.
    /// assert!((0..6).all(|_| p.allow([10, 0, 0, 1], 0, HZ)));
    /// assert!(!p.allow([10, 0, 0, 1], 0, HZ));
    /// assert!(p.allow([10, 0, 0, 2], 0, HZ)); // another peer
    /// assert!(p.allow([10, 0, 0, 1], NANOS_PER_SEC, HZ));
    /// ```
    pub fn allow(&mut self, addr: A, now: Nanos, cost: u64) -> bool {
        let tick = now / JIFFY;
        if !self.map.contains_key(&addr) {
            if self.map.len() >= MAX_PEERS {
                self.forget(tick);
            }
            if self.map.try_reserve(1).is_err() {
                return true;
            }
        }
        let b = self.map.entry(addr).or_insert(Bucket {
            tokens: BURST * MAX_COST,
            last: tick,
        });
        let mut tokens = b.tokens_at(tick, cost);
        let go = tokens >= cost;
        if go {
            tokens -= cost;
        }
        *b = Bucket {
            tokens,
            last: b.last.max(tick),
        };
        go
    }

    /// Makes room: forgets the peers a new one would equal, and when that is not enough, the
    /// half least recently weighed (a flood of distinct peers costs one pass per half table).
    fn forget(&mut self, tick: u64) {
        self.map.retain(|_, b| !b.as_new(tick));
        if self.map.len() >= MAX_PEERS {
            let mut lasts = [0u64; MAX_PEERS];
            for (l, b) in lasts.iter_mut().zip(self.map.values()) {
                *l = b.last;
            }
            let lasts = &mut lasts[..self.map.len().min(MAX_PEERS)];
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            self.map.retain(|_, b| b.last > cut);
        }
    }

    /// Peers kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no peer is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The router's buckets, one set per family (the kernel keeps IPv4 and IPv6 peers apart).
#[derive(Debug, Default)]
pub struct IcmpPeers {
    /// IPv4 peers.
    pub v4: Peers<[u8; 4]>,
    /// IPv6 peers.
    pub v6: Peers<[u8; 16]>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctrack_protocols::NANOS_PER_SEC;

    const BEYOND_SCOPE: u64 = V6_ERROR;

    #[test]
    fn a_bucket_caps_at_six_of_the_message_being_weighed() {
        let mut p = Peers::default();
        let a = [1u8; 16];
        // Six redirect checks empty a new bucket; a beyond-scope error then waits for 25 ticks.
        assert!((0..6).all(|_| p.allow(a, 0, HZ)));
        assert!(!p.allow(a, 0, BEYOND_SCOPE));
        assert!(!p.allow(a, 24 * JIFFY, BEYOND_SCOPE));
        assert!(p.allow(a, 25 * JIFFY, BEYOND_SCOPE));
        // Ten idle seconds fill it, but only to six errors' worth (150 ticks), not 1,500.
        let t = 10 * NANOS_PER_SEC;
        assert!((0..6).all(|_| p.allow(a, t, BEYOND_SCOPE)));
        assert!(!p.allow(a, t, BEYOND_SCOPE));
        assert!(!p.allow(a, t, HZ));
    }

    #[test]
    fn a_refused_message_takes_nothing() {
        let mut p = Peers::default();
        assert!((0..6).all(|_| p.allow([9u8; 4], 0, HZ)));
        for _ in 0..10 {
            assert!(!p.allow([9u8; 4], 0, HZ));
        }
        assert!(!p.would_allow(&[9u8; 4], 249 * JIFFY, HZ));
        assert!(p.would_allow(&[9u8; 4], 250 * JIFFY, HZ));
        assert!(p.allow([9u8; 4], 250 * JIFFY, HZ));
    }

    #[test]
    fn would_allow_changes_nothing_and_agrees() {
        let mut p = Peers::default();
        for i in 0..20u64 {
            let now = i * 100 * JIFFY;
            let w = p.would_allow(&[7u8; 4], now, HZ);
            assert_eq!(w, p.would_allow(&[7u8; 4], now, HZ));
            assert_eq!(w, p.allow([7u8; 4], now, HZ), "{i}");
        }
    }

    #[test]
    fn time_going_back_neither_refills_nor_panics() {
        let mut p = Peers::default();
        assert!((0..6).all(|_| p.allow([3u8; 4], 10 * NANOS_PER_SEC, HZ)));
        assert!(!p.allow([3u8; 4], 0, HZ));
        assert!(!p.allow([3u8; 4], 10 * NANOS_PER_SEC, HZ));
        assert!(p.allow([3u8; 4], 11 * NANOS_PER_SEC, HZ));
    }

    proptest::proptest! {
        /// Whatever the messages, `would_allow` foretells `allow`, and no peer gets more than
        /// a burst plus what its bucket gained: over any stretch of `d` ticks, at most
        /// `6 + d / cost` messages of one cost go.
        #[test]
        fn a_bucket_never_lets_more_through_than_it_gains(
            steps in proptest::collection::vec((0u8..3, 0u64..400), 1..300),
        ) {
            let mut p = Peers::default();
            let mut now = 0u64;
            let mut sent: Vec<Vec<u64>> = vec![Vec::new(); 3];
            for (who, gap) in steps {
                now += gap * JIFFY / 4;
                // One cost per peer, so that the bound is the simple one.
                let cost = if who == 0 { HZ } else { BEYOND_SCOPE };
                let addr = [who; 16];
                let w = p.would_allow(&addr, now, cost);
                proptest::prop_assert_eq!(w, p.allow(addr, now, cost));
                if w {
                    sent[who as usize].push(now / JIFFY);
                }
            }
            for (who, ticks) in sent.iter().enumerate() {
                let cost = if who == 0 { HZ } else { BEYOND_SCOPE };
                for (i, &a) in ticks.iter().enumerate() {
                    for (j, &b) in ticks.iter().enumerate().skip(i) {
                        let n = (j - i + 1) as u64;
                        proptest::prop_assert!(n <= BURST + (b - a) / cost, "{who}: {n} in {} ticks", b - a);
                    }
                }
            }
        }
    }

    #[test]
    fn a_flood_of_peers_stays_bounded_and_forgets_the_oldest() {
        let mut p = Peers::default();
        for i in 0..100_000u32 {
            // All within a second: none is as good as new.
            p.allow(i.to_be_bytes(), u64::from(i) * 1_000, HZ);
            assert!(p.len() <= MAX_PEERS);
        }
        // The latest peers are still known (and charged), the first ones forgotten (new).
        assert!(!p.is_empty());
        let last = 99_999u32.to_be_bytes();
        assert!((0..5).all(|_| p.allow(last, 100_000_000, HZ)));
        assert!(!p.allow(last, 100_000_000, HZ));
        assert!((0..6).all(|_| p.allow(0u32.to_be_bytes(), 100_000_000, HZ)));
    }

    #[test]
    fn idle_peers_are_forgotten_first() {
        let mut p = Peers::default();
        for i in 0..MAX_PEERS as u32 {
            p.allow(i.to_be_bytes(), 0, HZ);
        }
        // Six seconds later every one of them is as good as new: all go at the next insert.
        p.allow(u32::MAX.to_be_bytes(), 6 * NANOS_PER_SEC, HZ);
        assert_eq!(p.len(), 1);
    }
}
