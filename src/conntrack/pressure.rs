//! The full table: early drop, the kernel's garbage collector as packets meet it (its
//! pressure passes and the timed-out entries it reaps), and the limit's accounting.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// How often the kernel's garbage collector runs over a table of long-lived entries
/// (`GC_SCAN_INTERVAL_MAX`): each run reaps every entry that has timed out, and, after a
/// "table full" drop, also makes room (see [`GcClock`]). Its runs are modelled at the
/// multiples of this interval on the packets' clock: the kernel's phase is the machine's and
/// nothing a capture shows, and the multiples make a run's moment depend on time alone, the
/// same for every shard and thread. A drop or a timeout waits 30 s for the next run on
/// average, as it would for the kernel's.
pub(super) const GC_INTERVAL: Nanos = 60 * ctrack_protocols::NANOS_PER_SEC;

/// The first run of the kernel's garbage collector after `t` (see [`GC_INTERVAL`]).
#[inline]
pub(super) fn gc_run_after(t: Nanos) -> Nanos {
    (t / GC_INTERVAL)
        .saturating_add(1)
        .saturating_mul(GC_INTERVAL)
}

/// The table's size as shard `sb` of `t` sees it: its own entries, timed-out ones not yet
/// reaped included, times the shards. Early drop and the pressure pass take this, not the
/// shared count, which would make them depend on what other shards (or threads) tracked
/// meanwhile, and a burst give other verdicts than its packets one by one.
pub(super) fn seen_size<A: Addr>(t: &Table<A>, sb: &ShardBox<A>) -> usize {
    (sb.shard.len() + sb.zombies as usize).saturating_mul(t.shards.len())
}

/// The passes of the kernel's garbage collector that "table full" drops owe, numbered from
/// 1: a drop while no pass is pending schedules one for the collector's next run (see
/// [`GC_INTERVAL`]), drops before it begins are absorbed, and every shard sweeps itself once
/// for the latest pass begun by its own clock. What a shard owes depends on the drops and on time only, not
/// on the order in which shards meet a burst's packets, so a burst gets the verdicts of its
/// packets one by one.
#[derive(Default)]
pub(super) struct GcClock {
    /// The latest pass scheduled.
    pass: AtomicU64,
    /// When it begins.
    due: AtomicU64,
}

impl GcClock {
    /// The latest pass begun at `now`, when a shard that last finished pass `swept` owes it.
    #[inline]
    pub(super) fn owed(&self, swept: u64, now: Nanos) -> Option<u64> {
        let pass = self.pass.load(Ordering::Relaxed);
        if pass == swept {
            return None;
        }
        let begun = if now >= self.due.load(Ordering::Relaxed) {
            pass
        } else {
            pass - 1
        };
        (begun > swept).then_some(begun)
    }

    /// A "table full" drop at `now`: the next pass is scheduled unless one is pending.
    pub(super) fn schedule(&self, now: Nanos) {
        let pass = self.pass.load(Ordering::Relaxed);
        if pass == 0 || now >= self.due.load(Ordering::Relaxed) {
            // When first, then which: a reader meeting the new time with the old number
            // only waits one packet longer.
            self.due.store(gc_run_after(now), Ordering::Relaxed);
            self.pass.store(pass + 1, Ordering::Relaxed);
        }
    }
}

/// The most entries one pressure pass removes, table-wide (each shard its share): the
/// kernel's collector stops a run after that many (`GC_SCAN_EXPIRED_MAX`, 64,000 / HZ at
/// the oracle's 250 Hz) and forgets the pressure until the next "table full" drop. Replayed
/// by the kernel, a SYN flood into a full table nine tenths ASSURED, 500 SYNs a second for
/// 150 s, was dropped steadily throughout: no pass emptied the table of its unreplied
/// entries, as a pass without a limit did here (`tests/early_drop.rs`).
pub(super) const GC_PASS_MOST: u32 = 256;

/// How many hash chains the kernel's early drop walks (`NF_CT_EVICTION_RANGE`).
pub(super) const EVICTION_RANGE: usize = 8;

/// The most tuples one chain of [`chain_sizes`] holds: a bound on early drop's walk when
/// `nf_conntrack_buckets` is set far below the number of entries.
pub(super) const CHAIN_MOST: u32 = 64;

/// Tuples in all of early drop's chains that its walk takes without the bound's array: at the
/// default bucket count a full table's chains hold 16 in all on average, and more than 32
/// about once in 8,000 walks (a binomial count of mean 16, as good as Poisson there).
const FEW_PICKS: usize = 32;

/// How many tuples each of the [`EVICTION_RANGE`] kernel hash chains that early drop walks
/// for the tuple hashed `h` holds, in a table of `entries` entries over `buckets` chains:
/// each entry's two tuples are hashed into the chains, each into a given chain with
/// probability `1 / buckets`, so a chain holds a binomially distributed number of them, of
/// mean `2 * entries / buckets` (all of them when there is one chain). Drawn from `h`
/// (deterministic for a tuple, as the kernel's chains are for its hash seed); at most
/// [`CHAIN_MOST`] each.
///
/// At the kernel's default table (as many buckets as `nf_conntrack_max`) a full table's
/// chains hold two tuples on average: a new connection finds a victim among about 16 entries,
/// so a flood into a table nine tenths ASSURED is dropped one time in five, as the kernel's
/// replay of such a flood shows (`tests/early_drop.rs`).
pub(super) fn chain_sizes(h: u64, entries: usize, buckets: u32) -> [u32; EVICTION_RANGE] {
    let mut x = h;
    std::array::from_fn(|_| {
        // A fresh draw per chain.
        x = splitmix(x);
        chain_size(x, entries, buckets)
    })
}

/// The first of [`chain_sizes`], alone: the chain of the tuple hashed `h` itself.
pub(super) fn first_chain_size(h: u64, entries: usize, buckets: u32) -> u32 {
    chain_size(splitmix(h), entries, buckets)
}

/// One chain's size for [`chain_sizes`], from its draw `x`.
fn chain_size(x: u64, entries: usize, buckets: u32) -> u32 {
    let tuples = (entries as u64).saturating_mul(2);
    // A uniform draw in [0, 1) from the hash.
    binomial(tuples, buckets, (x >> 11) as f64 / (1u64 << 53) as f64)
}

/// The next state of a splitmix64 sequence from `x`, mixed: what early drop draws from.
pub(super) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs [`binomial`]'s floating-point functions once, so that the first new connection that
/// meets timed-out entries does not wait for their code to be mapped in (they are libm's, and
/// on the project's KVM guests that was about 5% of `bench --pcap`'s time on a capture of
/// 3,284 packets). [`crate::Conntrack`] calls it as it is made.
pub(crate) fn warm_up() {
    std::hint::black_box(binomial(
        std::hint::black_box(4),
        std::hint::black_box(2),
        std::hint::black_box(0.5),
    ));
}

/// How many of `n` tuples, each hashed into one of `buckets` chains (at least one) with equal
/// chances, land in a given chain: the binomial count whose cumulative probability first
/// passes `u` (inversion), at most [`CHAIN_MOST`]. A mean past 30 is taken as its rounded
/// self; with one chain, every tuple is in it.
pub(super) fn binomial(n: u64, buckets: u32, u: f64) -> u32 {
    let most = u64::from(CHAIN_MOST);
    if buckets <= 1 {
        return n.min(most) as u32;
    }
    let p = 1.0 / f64::from(buckets);
    let mean = n as f64 * p;
    if mean > 30.0 {
        return (mean.round() as u64).min(most) as u32;
    }
    // P(0) = (1 - p)^n, then P(k + 1) = P(k) * (n - k) / (k + 1) * p / (1 - p).
    let ratio = p / (1.0 - p);
    let mut pk = (n as f64 * (-p).ln_1p()).exp();
    let (mut f, mut k) = (pk, 0u64);
    while u >= f && k < n && k < most {
        pk *= (n - k) as f64 / (k + 1) as f64 * ratio;
        k += 1;
        f += pk;
    }
    k as u32
}

impl Conntrack {
    /// Takes the entries of a locked shard that have timed out by `now` out of it. The kernel
    /// counts them against `nf_conntrack_max` until its collector's next run (or something
    /// else meeting them; see [`ShardBox::zombies`]), so they stay counted until then; its
    /// runs since their timeouts have reaped them. Returns how many left the shard.
    /// `collect`: a collection of the whole table ([`Conntrack::expire`]), for which the
    /// expectations learn that the entries have left (see [`Conntrack::forget`]), not only
    /// that they were swept.
    pub(super) fn sweep<A: Addr>(
        &self,
        t: &Table<A>,
        sb: &mut ShardBox<A>,
        now: Nanos,
        collect: bool,
    ) -> usize {
        let hash = |k: &Key<A>| self.hash(k);
        let mut reaped = 0;
        if sb.zombies != 0 && now >= sb.zombies_due {
            reaped = std::mem::take(&mut sb.zombies) as usize;
        }
        let staged = &mut sb.staged;
        let mut zombies = 0u32;
        let expired = sb.shard.expire(now, &hash, |e, c, mark| {
            if collect {
                self.forget(t, e, now);
            } else {
                self.swept(t, e, now);
            }
            self.report_gone(staged, e, c, mark, now);
            if gc_run_after(e.expires) <= now {
                reaped += 1;
            } else {
                zombies += 1;
            }
        });
        if zombies != 0 {
            if sb.zombies == 0 {
                sb.zombies_due = gc_run_after(now);
            }
            sb.zombies = sb.zombies.saturating_add(zombies);
        }
        if reaped != 0 {
            self.count.fetch_sub(reaped, Ordering::Relaxed);
        }
        expired
    }

    /// Whether the next tuple a walk of the kernel's hash chains meets in shard `sb` (a lookup,
    /// early drop) is a timed-out entry's (see [`ShardBox::zombies`]): as often as zombies
    /// are among the shard's entries, the chains being a random sample of the table. `x` is
    /// the walk's random state, advanced only while there are zombies.
    #[inline]
    pub(super) fn draw_zombie<A: Addr>(sb: &ShardBox<A>, x: &mut u64) -> bool {
        if sb.zombies == 0 {
            return false;
        }
        *x = splitmix(*x);
        let all = sb.shard.len() as u64 + u64::from(sb.zombies);
        (((u128::from(*x) * u128::from(all)) >> 64) as u64) < u64::from(sb.zombies)
    }

    /// A walk met one of shard `sb`'s timed-out entries (see [`ShardBox::zombies`]) and
    /// reaped it: it no longer counts against `nf_conntrack_max`.
    #[inline]
    pub(super) fn reap_zombie<A>(&self, sb: &mut ShardBox<A>) {
        if sb.zombies != 0 {
            sb.zombies -= 1;
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The verdict of a new connection that found the table full with nothing to evict:
    /// dropped, counted as `drop`, and a pressure pass of the garbage collector owed (see
    /// [`GcClock`]), as the drop tells the kernel's collector.
    #[cold]
    pub(super) fn table_full<A: Addr>(&self, sb: &mut ShardBox<A>) -> Verdict {
        sb.stats.drop += 1;
        self.gc.schedule(sb.shard.clock);
        Verdict::DROPPED
    }

    /// The verdict of a new connection whose entry could not be allocated: dropped, counted
    /// as `drop`, and its unit of `nf_conntrack_max` given back.
    #[cold]
    pub(super) fn out_of_memory<A>(&self, sb: &mut ShardBox<A>) -> Verdict {
        self.count.fetch_sub(1, Ordering::Relaxed);
        sb.stats.drop += 1;
        Verdict::DROPPED
    }

    /// Counts one more entry against `nf_conntrack_max`; false, counting nothing, when that
    /// would go past it. The count is shared by every thread, and a locked add per new entry
    /// would wait for the writes of the entries before it, so a burst group claims the units
    /// of its whole size at its first creation, when they fit, and the group's other
    /// creations use them up locally ([`Conntrack::settle`] returns what is left). Near the
    /// limit every creation claims its own unit, so the limit holds exactly.
    #[inline]
    pub(super) fn claim<A>(&self, sb: &mut ShardBox<A>) -> bool {
        if sb.credit > 0 {
            sb.credit -= 1;
            return true;
        }
        let max = self.live.in_shard(sb).nf_conntrack_max as usize;
        let extra = std::mem::take(&mut sb.credit_want) as usize;
        // A full table, every new connection's lot under a flood, is seen by reading alone:
        // an add and its undo would take the count's line from whichever core had it last.
        if max != 0 && self.count.load(Ordering::Relaxed) >= max {
            return false;
        }
        let n = self.count.fetch_add(1 + extra, Ordering::Relaxed) + 1 + extra;
        if max == 0 || n <= max {
            sb.credit = extra as u32;
            return true;
        }
        if n - extra <= max {
            self.count.fetch_sub(extra, Ordering::Relaxed);
            return true;
        }
        self.count.fetch_sub(1 + extra, Ordering::Relaxed);
        false
    }

    /// Returns the units a burst group claimed and did not use (see [`Conntrack::claim`]).
    #[inline]
    pub(crate) fn settle<A>(&self, sb: &mut ShardBox<A>) {
        sb.credit_want = 0;
        if sb.credit > 0 {
            self.count
                .fetch_sub(std::mem::take(&mut sb.credit) as usize, Ordering::Relaxed);
        }
    }

    /// The timed-out entries (see [`ShardBox::zombies`]) that the kernel's lookup of a new
    /// tuple (hash `h`) meets and reaps as it walks the tuple's hash chain: the first of the
    /// chains early drop walks ([`chain_sizes`]).
    #[cold]
    #[inline(never)]
    pub(super) fn lookup_reaps<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, h: u64) {
        let size = first_chain_size(
            h,
            seen_size(t, sb),
            self.live.in_shard(sb).nf_conntrack_buckets,
        );
        let mut z = h ^ 0xbb67_ae85_84ca_a73b;
        for _ in 0..size {
            if Self::draw_zombie(sb, &mut z) {
                self.reap_zombie(sb);
            }
        }
    }

    /// The timed-out entries (see [`ShardBox::zombies`]) that the kernel's lookup of a
    /// packet's connection reaps on its way along the hash chain to the connection's tuple:
    /// a chain lists its newest tuples first, so the lookup of a connection passes those that
    /// came after it, half of the chain on average, about `count / nf_conntrack_buckets`
    /// tuples, of which a zombie's as often as zombies are counted. In all, the table's
    /// zombies over the bucket count: that many are reaped, the fraction with its probability.
    #[inline(always)]
    pub(super) fn lookup_found<A>(&self, sb: &mut ShardBox<A>) {
        if sb.zombies != 0 {
            let buckets = self.live.in_shard(sb).nf_conntrack_buckets;
            self.found_reaps(&mut sb.zombies, &mut sb.reap_draw, buckets);
        }
    }

    /// [`Conntrack::lookup_found`]'s reaping, out of line: zombies only come with timeouts.
    #[cold]
    #[inline(never)]
    pub(super) fn found_reaps(&self, zombies: &mut u32, draw: &mut u64, buckets: u32) {
        let all = u64::from(*zombies).saturating_mul(self.v4.shards.len() as u64);
        let buckets = u64::from(buckets.max(1));
        *draw = splitmix(*draw);
        let part = ((u128::from(*draw) * u128::from(buckets)) >> 64) as u64;
        let n = reaped_on_the_way(all, buckets, part, *zombies);
        if n != 0 {
            *zombies -= n as u32;
            self.count.fetch_sub(n as usize, Ordering::Relaxed);
        }
    }

    /// Makes room for one entry as the kernel's early drop does: it walks the
    /// [`EVICTION_RANGE`] hash chains from the new tuple's, and evicts every non-ASSURED entry
    /// of the first chain that has any; expired entries met on the way are reaped without
    /// counting. Returns false when nothing could be evicted.
    ///
    /// The kernel's chains are not this table's buckets: each of its `nf_conntrack_buckets`
    /// chains holds the tuples of about `2 * count / nf_conntrack_buckets` entries (both
    /// tuples of every entry are hashed), two at the full default table, and far fewer when
    /// `nf_conntrack_max` is set below the bucket count. So how many entries each chain holds
    /// is drawn from that distribution ([`chain_sizes`]), and each of them is an entry of the
    /// shard drawn at random, both from the tuple's hash, as hashing makes the kernel's chains
    /// a random sample of its table. (Walking this table's own buckets instead, whose slots
    /// the newest entries refill where early drop freed them, found the unreplied entries of a
    /// flood bunched together: a flood into a table nine tenths ASSURED was dropped 28% of the
    /// time where the kernel drops 20%.)
    pub(super) fn early_drop<A: Addr>(
        &self,
        t: &Table<A>,
        sb: &mut ShardBox<A>,
        h: u64,
        now: Nanos,
    ) -> bool {
        let sizes = chain_sizes(
            h,
            seen_size(t, sb),
            self.live.in_shard(sb).nf_conntrack_buckets,
        );
        if sb.shard.is_empty() && sb.zombies == 0 {
            return false;
        }
        // The draws go on the stack: a full table under a flood comes here for every new
        // connection. Room for the usual few dozen is cheap to clear; the bound (when
        // `nf_conntrack_buckets` is far below the entries) takes a larger array.
        if sizes.iter().sum::<u32>() as usize <= FEW_PICKS {
            self.walk_chains::<A, FEW_PICKS>(t, sb, h, &sizes, now)
        } else {
            self.walk_chains::<A, { EVICTION_RANGE * CHAIN_MOST as usize }>(t, sb, h, &sizes, now)
        }
    }

    /// [`Conntrack::early_drop`]'s walk of the chains of `sizes` tuples, whose total is at
    /// most `N`.
    #[inline(always)]
    fn walk_chains<A: Addr, const N: usize>(
        &self,
        t: &Table<A>,
        sb: &mut ShardBox<A>,
        h: u64,
        sizes: &[u32; EVICTION_RANGE],
        now: Nanos,
    ) -> bool {
        let slots = sb.shard.slots() as u64;
        // A draw that meets a free slot draws again, a few times at most. A timed-out entry's
        // tuple is marked, and reaped when the walk gets there.
        const ZOMBIE: u32 = NIL - 1;
        let mut picks = [NIL; N];
        let mut x = h ^ 0x2545_f491_4f6c_dd1d;
        let mut z = h ^ 0x6a09_e667_f3bc_c909;
        let mut n = 0;
        for (k, &size) in sizes.iter().enumerate() {
            for _ in 0..size {
                // The first chain is the new tuple's, whose timed-out entries the lookup
                // before reaped already (see `Conntrack::lookup_reaps`).
                if k > 0 && Self::draw_zombie(sb, &mut z) {
                    picks[n] = ZOMBIE;
                    n += 1;
                    continue;
                }
                for _ in 0..4 {
                    x = splitmix(x);
                    let i = ((u128::from(x) * u128::from(slots)) >> 64) as u32;
                    if sb.shard.is_live(i) {
                        picks[n] = i;
                        sb.shard.prefetch_head(i);
                        break;
                    }
                }
                n += 1;
            }
        }
        let mut at = 0;
        for &size in sizes {
            let mut drops = 0;
            for &i in &picks[at..at + size as usize] {
                if i == ZOMBIE {
                    // Reaped, not evicted: it makes room, but the kernel's walk does not count
                    // it, so this packet is dropped all the same if nothing else goes.
                    self.reap_zombie(sb);
                    continue;
                }
                // Gone already (drawn twice, or reaped by this walk), or no live entry found.
                if i == NIL || !sb.shard.is_live(i) {
                    continue;
                }
                let e = sb.shard.get(i);
                // The hash only for an entry that goes: most of a flood's walk goes past
                // ASSURED entries.
                if e.expired(now) {
                    let eh = self.hash(&e.key);
                    self.drop_entry(t, sb, eh, i);
                } else if e.status & status::ASSURED == 0 {
                    let eh = self.hash(&e.key);
                    self.drop_entry(t, sb, eh, i);
                    drops += 1;
                }
            }
            at += size as usize;
            if drops > 0 {
                sb.stats.early_drop += drops;
                return true;
            }
        }
        false
    }

    /// One bounded step of the garbage-collection pass owed after a "table full" drop: while
    /// the table is at least 95% full, entries that early drop may take (not ASSURED, or TCP
    /// connections already closing) are removed, expired ones too. The pass ends once it has
    /// removed this shard's share of [`GC_PASS_MOST`] entries, or covered the whole shard;
    /// the next one goes on from where it stopped, as the kernel's collector goes on from the
    /// bucket it stopped at.
    pub(super) fn gc_step<A: Addr>(
        &self,
        t: &Table<A>,
        sb: &mut ShardBox<A>,
        pass: u64,
        now: Nanos,
    ) {
        const STEP: u32 = 32;
        let max = self.live.in_shard(sb).nf_conntrack_max as usize;
        let max95 = max / 100 * 95;
        let quota = GC_PASS_MOST.div_ceil(t.shards.len() as u32);
        let slots = sb.shard.slots() as u32;
        for _ in 0..STEP {
            if sb.gc_killed >= quota || sb.gc_seen >= slots {
                sb.gc_killed = 0;
                sb.gc_seen = 0;
                sb.gc_swept = pass;
                return;
            }
            if sb.gc_cursor >= slots {
                sb.gc_cursor = 0;
            }
            let i = sb.gc_cursor;
            sb.gc_cursor += 1;
            sb.gc_seen += 1;
            let e = sb.shard.get(i);
            if e.status & status::CONFIRMED == 0 {
                continue;
            }
            let doomed = if e.expired(now) {
                true
            } else if max != 0 && seen_size(t, sb) >= max95 {
                e.status & status::ASSURED == 0
                    || matches!(e.proto, ProtoState::Tcp(st) if st.state().is_closing())
                    || matches!(e.proto, ProtoState::Sctp(st) if st.state().is_closing())
            } else {
                false
            };
            if doomed {
                let h = self.hash(&e.key);
                self.drop_entry(t, sb, h, i);
                sb.gc_killed += 1;
            }
        }
    }
}

/// How many zombies [`Conntrack::found_reaps`] reaps: `all / buckets` (`all`, the table's
/// zombies; `buckets`, at least 1), and one more when `part` (drawn uniformly below `buckets`)
/// falls under the remainder, at most the shard's own `zombies`. With fewer zombies than
/// chains, the usual case, that is one or none, found with no division: a 64-bit one costs
/// tens of cycles, and a long capture with timeouts makes this call for two packets in five
/// (the 4SICS capture: 97,540 calls for 246,137 packets).
#[inline]
fn reaped_on_the_way(all: u64, buckets: u64, part: u64, zombies: u32) -> u64 {
    if all < buckets {
        u64::from(part < all).min(u64::from(zombies))
    } else {
        (all / buckets + u64::from(part < all % buckets)).min(u64::from(zombies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaping_without_a_division_reaps_as_the_quotient_does() {
        let mut x = 1u64;
        for _ in 0..200_000 {
            x = splitmix(x);
            let buckets = [1, 2, 7, 4_096, 65_536, 262_144, u64::from(u32::MAX)][(x % 7) as usize];
            let zombies = [1, 3, 1_000, 70_000, u32::MAX][((x >> 8) % 5) as usize];
            let all = u64::from(zombies) * [1, 16, 64][((x >> 16) % 3) as usize];
            let part = ((u128::from(splitmix(x)) * u128::from(buckets)) >> 64) as u64;
            let want = (all / buckets + u64::from(part < all % buckets)).min(u64::from(zombies));
            assert_eq!(reaped_on_the_way(all, buckets, part, zombies), want);
        }
        // At the edges of the short cut: one zombie short of the chains, and exactly as many.
        assert_eq!(reaped_on_the_way(4_095, 4_096, 4_094, 300), 1);
        assert_eq!(reaped_on_the_way(4_095, 4_096, 4_095, 300), 0);
        assert_eq!(reaped_on_the_way(4_096, 4_096, 0, 300), 1);
        assert_eq!(reaped_on_the_way(4_096, 4_096, 4_095, 300), 1);
    }

    #[test]
    fn a_lookups_chain_is_the_first_early_drop_walks() {
        for i in 0..20_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for (entries, buckets) in [(262_144, 262_144), (9_000, 4_096), (8, 4), (3, 1)] {
                assert_eq!(
                    first_chain_size(h, entries, buckets),
                    chain_sizes(h, entries, buckets)[0]
                );
            }
        }
    }

    #[test]
    fn chains_hold_as_many_tuples_as_the_kernels_would() {
        // Over many tuples: the mean of each chain's count is 2 * entries / buckets, and as
        // many chains are empty as a binomial count would leave ((1 - 1 / buckets)^tuples).
        for (entries, buckets, mean) in [
            (262_144, 262_144, 2.0),
            (65_536, 262_144, 0.5),
            (8, 4, 4.0),
            (100, 1, 200.0),
        ] {
            let n = 40_000u64;
            let (mut total, mut empty) = (0u64, 0u64);
            for i in 0..n {
                let sizes = chain_sizes(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), entries, buckets);
                total += sizes.iter().map(|&c| u64::from(c)).sum::<u64>();
                empty += sizes.iter().filter(|&&c| c == 0).count() as u64;
            }
            let chains = (n * EVICTION_RANGE as u64) as f64;
            let got = total as f64 / chains;
            if entries == 100 {
                // A mean past the inversion's range: every chain holds its rounded mean,
                // within the bound.
                assert_eq!(got, f64::from(CHAIN_MOST), "{got}");
                continue;
            }
            assert!((got - mean).abs() < 0.02 * mean, "mean {got}, want {mean}");
            let zero = empty as f64 / chains;
            let want = (1.0 - 1.0 / f64::from(buckets)).powf(2.0 * entries as f64);
            assert!((zero - want).abs() < 0.01, "empty {zero}, want {want}");
        }
        // One chain holds every tuple of the table, whatever the draw: a lookup walks them all.
        for i in 0..1_000u64 {
            assert_eq!(
                chain_sizes(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 4, 1),
                [8; 8]
            );
            assert_eq!(chain_sizes(i, 0, 1), [0; 8]);
        }
        // Two chains: never more tuples than the table has.
        for i in 0..1_000u64 {
            assert!(
                chain_sizes(i.wrapping_mul(0x2545_f491), 3, 2)
                    .iter()
                    .all(|&c| c <= 6)
            );
        }
        // A tiny table at the default bucket count: the chains are almost always empty.
        let busy = (0..10_000u64)
            .filter(|&i| chain_sizes(i.wrapping_mul(0x2545_f491), 8, 262_144) != [0; 8])
            .count();
        assert!(busy < 20, "{busy}");
    }
}
