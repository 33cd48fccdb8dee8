//! The table seen from outside: expiry, listing, lookup, removal and flushing, reservation,
//! and the counters, events and memory an embedder reads.

use super::*;

impl Conntrack {
    /// Advances every shard's timer wheel to `now`, removing expired entries. Embedders that
    /// go idle call this; packet processing advances the shards it touches by itself.
    pub fn expire(&self, now: Nanos) -> usize {
        let mut n = self.expire_table(&self.v4, now);
        n += self.expire_table(&self.v6, now);
        self.frags.lock().expire(now);
        n
    }

    pub(super) fn expire_table<A: Addr>(&self, t: &Table<A>, now: Nanos) -> usize {
        let mut n = 0;
        for sh in t.shards.iter() {
            let mut g = sh.lock();
            let sb = &mut *g;
            let now = now.max(sb.shard.clock);
            sb.shard.clock = now;
            n += self.sweep(t, sb, now, true);
        }
        // A collection of the whole table: masters swept before it go for good too, and
        // expectations that have run out are reported gone.
        let mut x = t.expect.lock();
        x.bury_all(now);
        if self.events.is_some() {
            x.purge(now);
        }
        drop(x);
        n
    }

    /// Whether the tracker records connection events: [`Config::events`] gave them room and
    /// `nf_conntrack_events` is on (a cheap test, for a listener's loop).
    ///
    /// ```
    /// use ctrack::{Config, Conntrack};
    /// assert!(!Conntrack::new(Config::default()).records_events());
    /// let ct = Conntrack::new(Config { events: 64, ..Config::default() });
    /// assert!(ct.records_events());
    /// ```
    pub fn records_events(&self) -> bool {
        self.events.is_some()
    }

    /// Takes the events waiting, oldest first (see [`Config::events`]; empty when the
    /// configuration records none). An entry's events are in the order they happened; the
    /// order across threads is the order in which they reached the queue. Events reach the
    /// queue when the call that caused them lets go of the entry's shard: a thread's events
    /// are all there once its `process` or `process_batch` call returns.
    pub fn events(&self) -> Vec<Event> {
        self.events.as_ref().map_or_else(Vec::new, |q| q.take())
    }

    /// Takes the expectation events waiting, oldest first (see [`Config::events`], which
    /// bounds this queue too; empty when the configuration records no events): helpers'
    /// announcements and their ends, as `conntrack -E expect` reports them. The kernel sends
    /// these to listeners of their own, apart from the connections' events; here too they
    /// wait apart from [`Conntrack::events`]. Of one packet's events, the kernel reports
    /// those of expectations first: a connection takes its expectation, and a helper
    /// announces one, before the packet's connection event.
    pub fn expect_events(&self) -> Vec<ExpectEvent> {
        self.events
            .as_ref()
            .map_or_else(Vec::new, |q| q.take_expect())
    }

    /// Events lost so far because a queue was full (see [`Config::events`]).
    pub fn events_lost(&self) -> u64 {
        self.events.as_ref().map_or(0, |q| q.lost())
    }

    /// Counters like `conntrack -S`.
    pub fn stats(&self) -> crate::stats::Snapshot {
        let mut snap = self.stats.snapshot();
        for sh in self.v4.shards.iter() {
            snap.add(&sh.lock().stats);
        }
        for sh in self.v6.shards.iter() {
            snap.add(&sh.lock().stats);
        }
        snap.count = self.count() as u64;
        snap
    }

    /// Makes room for `entries` connections of one family (IPv6 when `ipv6`), committing the
    /// memory now, so that a table filled up to that size allocates nothing and takes no page
    /// fault on the packet path: what an embedder does that sizes its table for its
    /// `nf_conntrack_max` before traffic arrives. The table still grows past it on demand.
    /// When the memory cannot be had, the error says so (as `Vec::try_reserve` does) and the
    /// tracker works on, with whatever room the shards before the failing one got.
    ///
    /// ```
    /// use ctrack::{Config, Conntrack};
    /// let ct = Conntrack::new(Config::default());
    /// let empty = ct.memory();
    /// ct.reserve(10_000, false).unwrap();
    /// assert!(ct.memory() >= empty + 10_000 * 64);
    /// assert_eq!(ct.count(), 0);
    /// ```
    pub fn reserve(
        &self,
        entries: usize,
        ipv6: bool,
    ) -> Result<(), std::collections::TryReserveError> {
        if ipv6 {
            self.reserve_in(&self.v6, entries)
        } else {
            self.reserve_in(&self.v4, entries)
        }
    }

    pub(super) fn reserve_in<A: Addr>(
        &self,
        t: &Table<A>,
        entries: usize,
    ) -> Result<(), std::collections::TryReserveError> {
        // A shard's share of a hashed population varies by about its square root (one
        // standard deviation): a margin of four covers every shard but a rare one, which
        // then grows as usual.
        let share = entries.div_ceil(t.shards.len());
        let share = share.saturating_add(4 * share.isqrt());
        let hash = |k: &Key<A>| self.hash(k);
        for slot in t.shards.iter() {
            let mut g = slot.lock();
            let r = g.shard.reserve(share, &hash);
            slot.publish(&g);
            r?;
        }
        Ok(())
    }

    /// Bytes of memory the connection table holds: the tracker itself, every shard of both
    /// families (its lock, timer wheel and counters) and what the shards have allocated
    /// (entries, indexes, the wheels' levels, counters and creation times when kept). The
    /// expectations, reassembly queues, event queue and the router's ICMP rate-limit buckets
    /// (see [`crate::ratelimit`]), each bounded by its own limit, are not counted.
    pub fn memory(&self) -> usize {
        fn table<A: Addr>(t: &Table<A>) -> usize {
            t.shards.len() * std::mem::size_of::<CachePadded<Slot<A>>>()
                + t.shards
                    .iter()
                    .map(|sh| sh.lock().shard.heap_memory())
                    .sum::<usize>()
        }
        std::mem::size_of::<Self>() + table(&self.v4) + table(&self.v6)
    }

    /// Calls `f` for every live entry at time `now` (expired entries are skipped, as
    /// `/proc/net/nf_conntrack` skips them).
    pub fn for_each_entry(&self, now: Nanos, mut f: impl FnMut(crate::format::EntryView)) {
        self.each_in(&self.v4, now, &mut f);
        self.each_in(&self.v6, now, &mut f);
    }

    pub(super) fn each_in<A: Addr>(
        &self,
        t: &Table<A>,
        now: Nanos,
        f: &mut impl FnMut(crate::format::EntryView),
    ) {
        for sh in t.shards.iter() {
            let g = sh.lock();
            for (i, e) in g.shard.iter() {
                if !e.expired(now) {
                    f(self.view_at(t, &g, i, now));
                }
            }
        }
    }

    /// Entry `i` of a locked shard of `t` as the listing shows it at `now`.
    pub(super) fn view_at<A: Addr>(
        &self,
        t: &Table<A>,
        sb: &ShardBox<A>,
        i: u32,
        now: Nanos,
    ) -> EntryView {
        let e = sb.shard.get(i);
        let shard = &sb.shard;
        let mut view = EntryView::new(
            e,
            now,
            shard.counters(i).copied(),
            shard.born(i),
            shard.mark(i),
        );
        if e.helper != 0 {
            view.children = t.expect.lock().children_of(&e.key);
        }
        view
    }

    /// The slab index of the entry live at `now` whose original or reply tuple is `k` (hash
    /// `h`), in a locked shard.
    pub(super) fn live_index<A: Addr>(
        &self,
        sb: &ShardBox<A>,
        k: &Key<A>,
        h: u64,
        now: Nanos,
    ) -> Option<u32> {
        let inv = k.inverse().unwrap_or(*k);
        (sb.shard.find(h, k, &inv))
            .map(|f| f.idx)
            .filter(|&i| !sb.shard.get(i).expired(now))
    }

    /// The connection whose original or reply tuple is `tuple`, as `conntrack -G` shows it;
    /// `None` when the table has none live at `now`. Changes nothing.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use ctrack::{Conntrack, Config, L4, LinkType, Tuple};
    /// # let mut cfg = Config::default();
    /// # cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    /// # let ct = Conntrack::new(cfg);
    /// # let mut syn = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// # let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &syn));
    /// # syn[10..12].copy_from_slice(&c.to_be_bytes());
    /// # syn.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    /// // A SYN from 10.0.0.1:40000 to 10.0.0.2:80, tracked at time 0.
    /// ct.process(&syn, LinkType::Raw, 0);
    /// let reply = Tuple {
    ///     src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    ///     dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    ///     proto: 6,
    ///     zone: 0,
    ///     l4: L4::Ports { src: 80, dst: 40000 },
    /// };
    /// let e = ct.get(&reply, 0).unwrap();
    /// assert_eq!(e.tcp_state, Some("SYN_SENT"));
    /// assert_eq!(e.reply, reply);
    /// ```
    pub fn get(&self, tuple: &Tuple, now: Nanos) -> Option<EntryView> {
        match Key::<[u8; 4]>::from_tuple(tuple) {
            Some(k) => self.get_in(&self.v4, &k, now),
            None => self.get_in(&self.v6, &Key::<[u8; 16]>::from_tuple(tuple)?, now),
        }
    }

    pub(super) fn get_in<A: Addr>(
        &self,
        t: &Table<A>,
        k: &Key<A>,
        now: Nanos,
    ) -> Option<EntryView> {
        let h = self.hash(k);
        let g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        let i = self.live_index(&g, k, h, now)?;
        Some(self.view_at(t, &g, i, now))
    }

    /// Sets the mark of the connection whose original or reply tuple is `tuple`, as a
    /// ruleset's `ct mark set` does, and returns the mark it had; `None` when the table has no
    /// such connection live at `now`, or the memory for marks cannot be had (nothing changes
    /// then). A firewall's rule that marks the packet's connection passes the packet's own
    /// tuple, in either direction.
    ///
    /// A mark changes nothing ctrack decides. [`Conntrack::get`] and the listings show it, and
    /// a connection that takes one of its expectations gets it, as the kernel's expected
    /// connection copies its master's mark when it is made.
    ///
    /// With [`Config::events`], a changed mark is reported as the kernel reports one: set
    /// right after the connection's packet was tracked (by [`Conntrack::process`] or
    /// [`Conntrack::process_ip`], on the same thread), it goes into that packet's event for
    /// the connection (its `[NEW]` or `[UPDATE]`); otherwise, or after a batch, into an
    /// `[UPDATE]` of its own, which shows no TCP state (as the kernel's for a mark its
    /// ruleset set; `conntrack -U --mark`'s update, which comes from outside the packet path,
    /// shows the state as well). Setting the mark it has reports nothing.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use ctrack::{Conntrack, Config, L4, LinkType, Tuple};
    /// # let mut cfg = Config::default();
    /// # cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    /// # let ct = Conntrack::new(cfg);
    /// # let mut syn = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// # let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &syn));
    /// # syn[10..12].copy_from_slice(&c.to_be_bytes());
    /// # syn.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    /// // A SYN from 10.0.0.1:40000 to 10.0.0.2:80, and a rule that marks its connection.
    /// ct.process(&syn, LinkType::Raw, 0);
    /// let orig = Tuple {
    ///     src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    ///     dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    ///     proto: 6,
    ///     zone: 0,
    ///     l4: L4::Ports { src: 40000, dst: 80 },
    /// };
    /// assert_eq!(ct.set_mark(&orig, 7, 0), Some(0));
    /// let e = ct.get(&orig, 0).unwrap();
    /// assert_eq!(e.mark, 7);
    /// assert!(e.proc_line().contains(" mark=7 "));
    /// ```
    pub fn set_mark(&self, tuple: &Tuple, mark: u32, now: Nanos) -> Option<u32> {
        match Key::<[u8; 4]>::from_tuple(tuple) {
            Some(k) => self.set_mark_in(&self.v4, &k, mark, now),
            None => self.set_mark_in(&self.v6, &Key::<[u8; 16]>::from_tuple(tuple)?, mark, now),
        }
    }

    fn set_mark_in<A: Addr>(&self, t: &Table<A>, k: &Key<A>, mark: u32, now: Nanos) -> Option<u32> {
        let h = self.hash(k);
        let mut g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        let i = self.live_index(&g, k, h, now)?;
        let was = g.shard.mark(i);
        if was == mark {
            return Some(was);
        }
        let (key, helper) = {
            let e = g.shard.get(i);
            (e.key, e.helper)
        };
        g.shard.set_mark(i, mark).ok()?;
        // A master's expectations hand its mark on: they learn it now.
        if helper != 0 && !t.expect.lock().set_master_mark(&key, mark) {
            let _ = g.shard.set_mark(i, was);
            return None;
        }
        if let Some(q) = &self.events
            && !q.amend_mark(&key.to_tuple(), mark)
        {
            let shard = &g.shard;
            let entry = EntryView::new(
                shard.get(i),
                now,
                shard.counters(i).copied(),
                shard.born(i),
                mark,
            );
            let g = &mut *g;
            stage(q, &mut g.staged, || Event {
                kind: EventKind::Update,
                time: now,
                entry,
                state_changed: false,
                mark_changed: true,
            });
        }
        Some(was)
    }

    /// Removes the connection whose original or reply tuple is `tuple`, as `conntrack -D`
    /// does, and returns it as it was at `now`; `None` (nothing removed) when the table has
    /// none live then. What leaves the table with a connection leaves with this one: its
    /// destroy event (with [`Config::events`]), its pending expectations (with their events),
    /// its hold on its master; connections it was expecting stay. Entries of its shard whose
    /// time has come by `now` expire first, as for a packet. The next packet of that
    /// connection finds no entry, as in the kernel after `conntrack -D`.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use ctrack::{Conntrack, Config, L4, LinkType, Tuple};
    /// # let mut cfg = Config::default();
    /// # cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    /// # let ct = Conntrack::new(cfg);
    /// # let mut syn = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// # let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &syn));
    /// # syn[10..12].copy_from_slice(&c.to_be_bytes());
    /// # syn.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    /// // A SYN from 10.0.0.1:40000 to 10.0.0.2:80.
    /// ct.process(&syn, LinkType::Raw, 0);
    /// let orig = Tuple {
    ///     src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    ///     dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    ///     proto: 6,
    ///     zone: 0,
    ///     l4: L4::Ports { src: 40000, dst: 80 },
    /// };
    /// assert_eq!(ct.remove(&orig, 1_000).unwrap().orig, orig);
    /// assert_eq!(ct.count(), 0);
    /// assert!(ct.remove(&orig, 1_000).is_none());
    /// // Its retransmission opens a new entry.
    /// assert_eq!(ct.process(&syn, LinkType::Raw, 2_000).to_string(), "new,orig");
    /// ```
    pub fn remove(&self, tuple: &Tuple, now: Nanos) -> Option<EntryView> {
        match Key::<[u8; 4]>::from_tuple(tuple) {
            Some(k) => self.remove_in(&self.v4, &k, now),
            None => self.remove_in(&self.v6, &Key::<[u8; 16]>::from_tuple(tuple)?, now),
        }
    }

    pub(super) fn remove_in<A: Addr>(
        &self,
        t: &Table<A>,
        k: &Key<A>,
        now: Nanos,
    ) -> Option<EntryView> {
        let h = self.hash(k);
        let mut g = t.shards[t.shard_of(h)].lock();
        let now = self.advance(t, &mut g, now);
        let i = self.live_index(&g, k, h, now)?;
        let view = self.view_at(t, &g, i, now);
        // The hash is the same for either direction's tuple: it is the entry's.
        self.drop_entry(t, &mut g, h, i);
        Some(view)
    }

    /// Keeps the connections for which `keep` returns true and removes the others, each as
    /// [`Conntrack::remove`] removes one (as `conntrack -D` with a filter removes every
    /// connection the filter matches); returns how many were removed. `keep` sees every
    /// connection live at `now`, as [`Conntrack::for_each_entry`] lists it, while that
    /// connection's shard is locked: it must not call into this tracker.
    ///
    /// ```
    /// # use ctrack::{Conntrack, Config};
    /// use ctrack::table::status::SEEN_REPLY;
    /// # let ct = Conntrack::new(Config::default());
    /// // Forget every UDP pseudo-connection that has not seen a reply.
    /// let removed = ct.retain(0, |e| e.orig.proto != 17 || e.status & SEEN_REPLY != 0);
    /// # assert_eq!(removed, 0);
    /// ```
    pub fn retain(&self, now: Nanos, mut keep: impl FnMut(&EntryView) -> bool) -> usize {
        self.retain_in(&self.v4, now, false, &mut keep)
            + self.retain_in(&self.v6, now, false, &mut keep)
    }

    /// Removes every connection, each as [`Conntrack::remove`] removes one, and with them
    /// every pending expectation, as `conntrack -F` does; returns how many live connections
    /// were removed. Entries that have expired by `now` but not been swept out yet go too, as
    /// they would at their shard's next tick, and those swept out but still counted against
    /// the limit are reaped (the kernel's flush meets them all).
    pub fn flush(&self, now: Nanos) -> usize {
        let mut n = self.retain_in(&self.v4, now, true, &mut |_| false);
        n += self.retain_in(&self.v6, now, true, &mut |_| false);
        // Masters swept out earlier took their expectations' masters with them; those
        // expectations go now, as the kernel's flush would have met their masters.
        self.v4.expect.lock().bury_all(now);
        self.v6.expect.lock().bury_all(now);
        n
    }

    /// [`Conntrack::retain`] over one table; `expired`: entries expired by `now` and not yet
    /// swept go too, without `keep` being asked (they are not live). Counts those it asked
    /// about and removed.
    pub(super) fn retain_in<A: Addr>(
        &self,
        t: &Table<A>,
        now: Nanos,
        expired: bool,
        keep: &mut impl FnMut(&EntryView) -> bool,
    ) -> usize {
        let mut n = 0;
        for sh in t.shards.iter() {
            let mut g = sh.lock();
            let now = self.advance(t, &mut g, now);
            // Removing an entry frees its slot and moves no other.
            for i in 0..g.shard.slots() as u32 {
                let e = g.shard.get(i);
                if e.status & status::CONFIRMED == 0 {
                    continue;
                }
                let live = !e.expired(now);
                if (live && !keep(&self.view_at(t, &g, i, now))) || (!live && expired) {
                    let h = self.hash(&g.shard.get(i).key);
                    self.drop_entry(t, &mut g, h, i);
                    n += usize::from(live);
                }
            }
            if expired && g.zombies != 0 {
                // Timed out before, and still counted: the flush meets them too.
                let z = std::mem::take(&mut g.zombies);
                self.count.fetch_sub(z as usize, Ordering::Relaxed);
            }
        }
        n
    }

    /// Calls `f` with every expectation pending at `now`, as a line of
    /// `/proc/net/nf_conntrack_expect` (in no particular order). An expectation whose master
    /// has expired is gone with it, as in the kernel once its table has been listed (listing
    /// removes the expired entries it meets, and their expectations with them), even where
    /// no packet has swept the master out yet.
    pub fn for_each_expectation(&self, now: Nanos, mut f: impl FnMut(String)) {
        self.expectations_in(&self.v4, now, &mut f);
        self.expectations_in(&self.v6, now, &mut f);
    }

    pub(super) fn expectations_in<A: Addr>(
        &self,
        t: &Table<A>,
        now: Nanos,
        f: &mut impl FnMut(String),
    ) {
        let mut lines = Vec::new();
        // The expectations' lock is released before any shard's is taken (the lock order).
        t.expect.lock().lines(now, &mut lines);
        for (master, line) in lines {
            if self.live_at(t, &master, now) {
                f(line);
            }
        }
    }

    /// True when the entry with tuple `k` (either direction) is in the table and not expired
    /// at `now` (or its shard's later time).
    pub(super) fn live_at<A: Addr>(&self, t: &Table<A>, k: &Key<A>, now: Nanos) -> bool {
        let Some(inv) = k.inverse() else {
            return false;
        };
        let h = self.hash(k);
        let g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        g.shard
            .find(h, k, &inv)
            .is_some_and(|f| !g.shard.get(f.idx).expired(now))
    }
}
