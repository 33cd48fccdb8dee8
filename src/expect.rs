//! Expectations: connections a helper has announced (an FTP data connection, a TFTP
//! transfer), which the first packet of a matching new connection takes, making it RELATED
//! to its master; with what helpers remember of their masters and which masters have live
//! expected connections.
//!
//! An expectation names the source and destination addresses, the protocol and the
//! destination port of the connection to come; any source port matches. It lives for its
//! helper's policy timeout, and a master holds at most the policy's number at once (a new one
//! replaces the oldest). Expectations go with their master.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use ctrack_helpers::ftp;
use ctrack_protocols::{NANOS_PER_SEC, Nanos};

use crate::tuple::{Addr, Key};

/// What an expectation expects: a connection from `src` to `dst`:`dport` over `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Expected<A> {
    pub(crate) src: A,
    pub(crate) dst: A,
    pub(crate) dport: u16,
    pub(crate) zone: u16,
    pub(crate) proto: u8,
}

impl<A: Addr> Expected<A> {
    /// What a new connection with original tuple `k` would match.
    fn of(k: &Key<A>) -> Self {
        Expected {
            src: k.src,
            dst: k.dst,
            dport: k.dport,
            zone: k.zone,
            proto: k.proto,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending<A> {
    master: Key<A>,
    expires: Nanos,
    /// Registry index of the master's helper.
    helper: u8,
}

/// What the table keeps about a master connection (one with a helper).
#[derive(Clone, Debug, Default)]
pub(crate) struct Master<A> {
    /// Where lines start on an FTP control connection.
    pub(crate) lines: ftp::Lines,
    /// Its pending expectations, oldest first.
    expecting: VecDeque<Expected<A>>,
}

/// Why an expectation could not be added (the kernel drops the packet that announced it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another master already expects the same connection.
    Clash,
    /// `nf_conntrack_expect_max` expectations are pending.
    Full,
}

/// One address family's expectations.
#[derive(Debug, Default)]
pub(crate) struct Expectations<A: Addr> {
    pending: HashMap<Expected<A>, Pending<A>>,
    masters: HashMap<Key<A>, Master<A>>,
    /// Live expected connections (original tuple) and their master's original tuple.
    children: HashMap<Key<A>, Key<A>>,
    /// Live expected connections per master.
    child_count: HashMap<Key<A>, u32>,
}

impl<A: Addr> Expectations<A> {
    /// True when no expectation is pending (new connections need not look).
    #[inline]
    pub(crate) fn none_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// The expectation a new connection with original tuple `k` takes at `now`, if any:
    /// removed, and its master's tuple returned.
    pub(crate) fn take(&mut self, k: &Key<A>, now: Nanos) -> Option<Key<A>> {
        let want = Expected::of(k);
        let p = self.pending.remove(&want)?;
        if let Some(m) = self.masters.get_mut(&p.master) {
            m.expecting.retain(|e| *e != want);
        }
        (p.expires > now).then_some(p.master)
    }

    /// The state kept for master `k` (made on first use).
    pub(crate) fn master(&mut self, k: &Key<A>) -> &mut Master<A> {
        self.masters.entry(*k).or_default()
    }

    /// Adds master `m`'s expectation of `e`, with its helper's policy (at most `max_expected`
    /// pending per master, 0 for no limit; living `timeout`), under a table-wide limit of
    /// `max_total`. The same expectation from the same master is renewed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn expect(
        &mut self,
        m: &Key<A>,
        helper: u8,
        e: Expected<A>,
        max_expected: u32,
        timeout: Nanos,
        max_total: usize,
        now: Nanos,
    ) -> Result<(), Refused> {
        self.purge_master(m, now);
        if let Some(old) = self.pending.get(&e) {
            if old.expires <= now || old.master == *m {
                self.drop_pending(&e);
            } else {
                return Err(Refused::Clash);
            }
        }
        let mine = self.masters.entry(*m).or_default();
        if max_expected != 0 && mine.expecting.len() >= max_expected as usize {
            if let Some(oldest) = mine.expecting.pop_front() {
                self.pending.remove(&oldest);
            }
        }
        if self.pending.len() >= max_total {
            self.pending.retain(|_, p| p.expires > now);
            let pending = &self.pending;
            for master in self.masters.values_mut() {
                master.expecting.retain(|x| pending.contains_key(x));
            }
            if self.pending.len() >= max_total {
                return Err(Refused::Full);
            }
        }
        self.pending.insert(
            e,
            Pending {
                master: *m,
                expires: now.saturating_add(timeout),
                helper,
            },
        );
        self.masters.entry(*m).or_default().expecting.push_back(e);
        Ok(())
    }

    /// Drops master `m`'s expectations that have run out at `now`.
    fn purge_master(&mut self, m: &Key<A>, now: Nanos) {
        let Some(master) = self.masters.get_mut(m) else {
            return;
        };
        let pending = &mut self.pending;
        master.expecting.retain(|e| match pending.get(e) {
            Some(p) if p.expires > now => true,
            Some(_) => {
                pending.remove(e);
                false
            }
            None => false,
        });
    }

    fn drop_pending(&mut self, e: &Expected<A>) {
        if let Some(p) = self.pending.remove(e)
            && let Some(m) = self.masters.get_mut(&p.master)
        {
            m.expecting.retain(|x| x != e);
        }
    }

    /// Records that the new connection `child` took an expectation of `master`.
    pub(crate) fn adopt(&mut self, child: Key<A>, master: Key<A>) {
        if let Some(old) = self.children.insert(child, master) {
            self.release_child_of(&old);
        }
        *self.child_count.entry(master).or_default() += 1;
    }

    fn release_child_of(&mut self, master: &Key<A>) {
        if let Some(n) = self.child_count.get_mut(master) {
            *n -= 1;
            if *n == 0 {
                self.child_count.remove(master);
            }
        }
    }

    /// A connection with original tuple `k` has left the table: as a master (`master`) its
    /// expectations and helper state go, as an expected connection (`child`) it no longer
    /// holds its master.
    pub(crate) fn forget(&mut self, k: &Key<A>, master: bool, child: bool) {
        if master && let Some(m) = self.masters.remove(k) {
            for e in m.expecting {
                self.pending.remove(&e);
            }
        }
        if child && let Some(m) = self.children.remove(k) {
            self.release_child_of(&m);
        }
    }

    /// Live expected connections of master `k`.
    pub(crate) fn children_of(&self, k: &Key<A>) -> u32 {
        self.child_count.get(k).copied().unwrap_or(0)
    }

    /// Pending expectations at `now` as `/proc/net/nf_conntrack_expect` prints them.
    pub(crate) fn lines(&self, now: Nanos, out: &mut Vec<String>) {
        for (e, p) in &self.pending {
            if p.expires <= now {
                continue;
            }
            let mut s = String::with_capacity(120);
            let _ = write!(
                s,
                "{} l3proto = {} proto={} src=",
                (p.expires - now) / NANOS_PER_SEC,
                if A::V6 { 10 } else { 2 },
                e.proto
            );
            crate::format::push_addr(&mut s, &e.src.ip());
            s.push_str(" dst=");
            crate::format::push_addr(&mut s, &e.dst.ip());
            let _ = write!(s, " sport=0 dport={} ", e.dport);
            if let Some(h) = ctrack_helpers::at_index(p.helper) {
                s.push_str(h.name);
            }
            out.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::proto;

    const SEC: Nanos = NANOS_PER_SEC;

    fn key(a: u8, b: u8, sport: u16, dport: u16) -> Key<[u8; 4]> {
        Key {
            src: [10, 0, 0, a],
            dst: [10, 0, 0, b],
            sport,
            dport,
            zone: 0,
            proto: proto::TCP,
        }
    }

    fn exp(a: u8, b: u8, dport: u16) -> Expected<[u8; 4]> {
        Expected::of(&key(a, b, 0, dport))
    }

    #[test]
    fn taken_once_any_source_port_until_it_expires() {
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 21);
        assert!(x.none_pending());
        x.expect(&m, 1, exp(1, 2, 5000), 1, 300 * SEC, 100, 0)
            .unwrap();
        assert!(!x.none_pending());
        assert_eq!(x.take(&key(1, 2, 1234, 5001), 1), None);
        assert_eq!(x.take(&key(1, 2, 1234, 5000), 1), Some(m));
        assert_eq!(x.take(&key(1, 2, 999, 5000), 1), None);
        x.expect(&m, 1, exp(1, 2, 5000), 1, 300 * SEC, 100, 0)
            .unwrap();
        assert_eq!(x.take(&key(1, 2, 1, 5000), 300 * SEC), None, "expired");
        assert!(x.none_pending());
    }

    #[test]
    fn a_master_holds_its_policy_and_others_clash() {
        let mut x = Expectations::default();
        let (m, other) = (key(1, 2, 40000, 21), key(3, 2, 40001, 21));
        x.expect(&m, 1, exp(1, 2, 5000), 1, 300 * SEC, 100, 0)
            .unwrap();
        // The second replaces the first (one per master).
        x.expect(&m, 1, exp(1, 2, 5001), 1, 300 * SEC, 100, 0)
            .unwrap();
        assert_eq!(x.take(&key(1, 2, 1, 5000), 1), None);
        assert_eq!(x.take(&key(1, 2, 1, 5001), 1), Some(m));
        // Another master expecting the same connection clashes; renewing one's own does not.
        x.expect(&m, 1, exp(1, 2, 6000), 1, 300 * SEC, 100, 0)
            .unwrap();
        x.expect(&m, 1, exp(1, 2, 6000), 1, 300 * SEC, 100, 10)
            .unwrap();
        let clash = x.expect(&other, 1, exp(1, 2, 6000), 1, 300 * SEC, 100, 0);
        assert_eq!(clash, Err(Refused::Clash));
        // A table-wide limit.
        assert_eq!(
            x.expect(&other, 1, exp(3, 2, 7000), 1, 300 * SEC, 1, 0),
            Err(Refused::Full)
        );
        // The master leaves: its expectations go.
        x.forget(&m, true, false);
        assert!(x.none_pending());
    }

    #[test]
    fn children_are_counted_while_they_live() {
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 21);
        let (c1, c2) = (key(1, 2, 1, 5000), key(1, 2, 2, 5001));
        x.adopt(c1, m);
        x.adopt(c2, m);
        assert_eq!(x.children_of(&m), 2);
        x.forget(&c1, false, true);
        assert_eq!(x.children_of(&m), 1);
        x.forget(&c2, false, true);
        x.forget(&c2, false, true);
        assert_eq!(x.children_of(&m), 0);
        assert!(x.child_count.is_empty() && x.children.is_empty());
    }

    #[test]
    fn listing() {
        let mut x = Expectations::default();
        let m = key(2, 1, 40000, 69);
        let e = Expected {
            proto: proto::UDP,
            ..exp(1, 2, 40000)
        };
        let tftp = ctrack_helpers::index_of(ctrack_helpers::by_name("tftp").unwrap());
        x.expect(&m, tftp, e, 1, 300 * SEC, 100, 0).unwrap();
        let mut out = Vec::new();
        x.lines(SEC / 2, &mut out);
        assert_eq!(
            out,
            ["299 l3proto = 2 proto=17 src=10.0.0.1 dst=10.0.0.2 sport=0 dport=40000 tftp"]
        );
    }
}
