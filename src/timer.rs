//! A hierarchical timing wheel that finds expired entries in O(1) amortised time.
//!
//! Entries are linked into slots through two `u32` links they carry themselves (the wheel owns
//! no per-entry memory). Refreshing an entry only rewrites its deadline: the wheel files it by
//! the deadline it had when it was filed and, when that slot comes due, either expires it or
//! files it again by its current deadline. A deadline that moves *earlier* is re-filed at once
//! by the caller (see [`Wheel::needs_refile`]), so an entry is always examined no later than
//! one tick after it expires.
//!
//! Levels: 6 levels of 64 slots; a level-0 slot spans one tick (2^24 ns, about 16.8 ms), a
//! level-L slot 64^L ticks, so the wheel covers about 570 years; longer deadlines are clamped.
//!
//! The wheel never aborts for want of memory: a level's slot heads are allocated fallibly the
//! first time an entry is filed there, and an entry whose level cannot be had waits on a list
//! examined at the next tick (early, which is always allowed: it is then filed again). Nothing
//! else allocates: the lists drained from their slots are kept by their heads on the stack.

use ctrack_protocols::Nanos;

/// Nanoseconds per tick, as a shift.
pub const TICK_SHIFT: u32 = 24;
const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// "No entry" in links and slot heads.
pub const NIL: u32 = u32::MAX;
/// "Not filed" for an entry's slot number.
pub const UNFILED: u16 = u16::MAX;
/// The slot number of an entry waiting on the list examined at the next tick (its level could
/// not be allocated).
const PENDING: u16 = u16::MAX - 1;
/// How many drained lists [`Wheel::advance`] keeps in its short array (the waiting list and
/// up to 15 slots); more take an array with room for every slot.
const FEW_LISTS: usize = 16;

/// What the wheel needs to read and write in the entries it links.
pub trait Links {
    /// The deadline of entry `i`.
    fn deadline(&self, i: u32) -> Nanos;
    /// Entry `i`'s (prev, next) links.
    fn links(&mut self, i: u32) -> (&mut u32, &mut u32, &mut u16);
}

/// One level's slot heads.
type Level = Box<[u32; SLOTS]>;

/// The wheel: slot heads plus a bitmap of non-empty slots per level. A level's heads are
/// allocated the first time an entry is filed there, so an unused wheel (an empty shard)
/// costs nothing beyond this struct.
#[derive(Clone, Debug)]
pub struct Wheel {
    heads: [Option<Level>; LEVELS],
    occupied: [u64; LEVELS],
    /// Head of the list of entries examined at the next tick whatever their deadline: those
    /// whose level could not be allocated.
    pending: u32,
    /// Ticks processed so far: every slot due at or before this tick has been drained.
    tick: u64,
    started: bool,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            heads: Default::default(),
            occupied: [0; LEVELS],
            pending: NIL,
            tick: 0,
            started: false,
        }
    }
}

/// A level's slot heads, all empty; `None` when the memory cannot be had.
fn new_level() -> Option<Level> {
    #[cfg(test)]
    if tests::REFUSE.get() {
        return None;
    }
    let mut v: Vec<u32> = Vec::new();
    v.try_reserve_exact(SLOTS).ok()?;
    v.resize(SLOTS, NIL);
    v.into_boxed_slice().try_into().ok()
}

#[inline]
fn tick_of(t: Nanos) -> u64 {
    t >> TICK_SHIFT
}

impl Wheel {
    /// Files entry `i` by its current deadline. The entry must not be filed.
    pub fn insert<L: Links>(&mut self, ls: &mut L, i: u32, now: Nanos) {
        if !self.started {
            self.tick = tick_of(now);
            self.started = true;
        }
        let due = tick_of(ls.deadline(i)).max(self.tick + 1);
        let mut level = 0;
        while level < LEVELS - 1 {
            let shift = SLOT_BITS * level as u32;
            if (due >> shift) - (self.tick >> shift) < SLOTS as u64 {
                break;
            }
            level += 1;
        }
        let shift = SLOT_BITS * level as u32;
        let turn = if level == LEVELS - 1 {
            (due >> shift).min((self.tick >> shift) + SLOTS as u64 - 1)
        } else {
            due >> shift
        };
        let slot = (turn & (SLOTS as u64 - 1)) as usize;
        let heads = match &mut self.heads[level] {
            Some(h) => h,
            empty => match new_level() {
                Some(h) => empty.insert(h),
                None => return self.defer(ls, i),
            },
        };
        let head = heads[slot];
        heads[slot] = i;
        self.occupied[level] |= 1 << slot;
        self.link_before(ls, i, head, (level * SLOTS + slot) as u16);
    }

    /// Makes entry `i` the head of a list whose old head is `head`, in slot `id`.
    #[inline]
    fn link_before<L: Links>(&mut self, ls: &mut L, i: u32, head: u32, id: u16) {
        {
            let (p, n, s) = ls.links(i);
            *p = NIL;
            *n = head;
            *s = id;
        }
        if head != NIL {
            *ls.links(head).0 = i;
        }
    }

    /// Files entry `i` on the list examined at the next tick: its level could not be had.
    #[cold]
    fn defer<L: Links>(&mut self, ls: &mut L, i: u32) {
        let head = std::mem::replace(&mut self.pending, i);
        self.link_before(ls, i, head, PENDING);
    }

    /// Unlinks entry `i` from whatever slot holds it (no-op when it is not filed).
    pub fn remove<L: Links>(&mut self, ls: &mut L, i: u32) {
        let (prev, next, id) = {
            let (p, n, s) = ls.links(i);
            let r = (*p, *n, *s);
            *p = NIL;
            *n = NIL;
            *s = UNFILED;
            r
        };
        if id == UNFILED {
            return;
        }
        if prev != NIL {
            *ls.links(prev).1 = next;
        } else if id == PENDING {
            self.pending = next;
        } else {
            let (level, slot) = (id as usize / SLOTS, id as usize % SLOTS);
            if let Some(heads) = self.heads[level].as_mut() {
                heads[slot] = next;
            }
            if next == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        }
        if next != NIL {
            *ls.links(next).0 = prev;
        }
    }

    /// True when entry `i`, filed in slot `id`, must be re-filed because its deadline moved
    /// before the time its slot comes due.
    #[inline(always)]
    pub fn needs_refile(&self, id: u16, new_deadline: Nanos) -> bool {
        if id == UNFILED {
            return true;
        }
        if id == PENDING {
            // Examined at the next tick: as early as any slot.
            return false;
        }
        let (level, slot) = (id as usize / SLOTS, id as u64 % SLOTS as u64);
        let shift = SLOT_BITS * level as u32;
        // The earliest tick at which this slot can come due.
        let cur = self.tick >> shift;
        let mut turn = (cur & !(SLOTS as u64 - 1)) | slot;
        if turn <= cur {
            turn += SLOTS as u64;
        }
        tick_of(new_deadline) < (turn << shift)
    }

    /// Advances the wheel to `now`, calling `expire(i)` for every entry whose deadline has
    /// passed (the callback must free the entry; it is already unlinked) and re-filing the
    /// others. Returns the number expired.
    pub fn advance<L: Links>(
        &mut self,
        ls: &mut L,
        now: Nanos,
        expire: impl FnMut(&mut L, u32),
    ) -> usize {
        let target = tick_of(now);
        if !self.started {
            self.tick = target;
            self.started = true;
            return 0;
        }
        if target <= self.tick {
            return 0;
        }
        let from = self.tick;
        self.tick = target;
        // The occupied slots that came due, level by level, and how many lists that makes
        // with the waiting list.
        let mut due = [0u64; LEVELS];
        let mut lists = 1;
        for (level, due) in due.iter_mut().enumerate() {
            let shift = SLOT_BITS * level as u32;
            let (a, b) = (from >> shift, target >> shift);
            if a == b {
                break;
            }
            // Slots a+1 to b of the level, wrapping round: every slot after a full turn.
            let turns = b - a;
            let mask = if turns >= SLOTS as u64 {
                u64::MAX
            } else {
                ((1u64 << turns) - 1).rotate_left(((a + 1) % SLOTS as u64) as u32)
            };
            *due = self.occupied[level] & mask;
            lists += due.count_ones() as usize;
        }
        // Most advances drain a few slots, whose heads fit a short array; a long jump gets
        // room for every slot of every level.
        if lists <= FEW_LISTS {
            self.drain(ls, now, &due, &mut [NIL; FEW_LISTS], expire)
        } else {
            self.drain(ls, now, &due, &mut [NIL; LEVELS * SLOTS + 1], expire)
        }
    }

    /// [`Wheel::advance`]'s work once the slots that came due are known: takes the waiting
    /// list and those slots' lists (their heads into `lists`, which has room for them all),
    /// then expires or re-files their entries, in that order.
    fn drain<L: Links>(
        &mut self,
        ls: &mut L,
        now: Nanos,
        due: &[u64; LEVELS],
        lists: &mut [u32],
        mut expire: impl FnMut(&mut L, u32),
    ) -> usize {
        lists[0] = std::mem::replace(&mut self.pending, NIL);
        let mut n = 1;
        for (level, &due) in due.iter().enumerate() {
            let mut todo = due;
            while todo != 0 {
                let slot = todo.trailing_zeros() as usize;
                todo &= todo - 1;
                // An occupied slot's level is allocated.
                if let Some(h) = self.heads[level].as_mut() {
                    lists[n] = std::mem::replace(&mut h[slot], NIL);
                    n += 1;
                }
                self.occupied[level] &= !(1 << slot);
            }
        }
        let mut expired = 0;
        for &head in &lists[..n] {
            let mut i = head;
            while i != NIL {
                let next = {
                    let (p, n, s) = ls.links(i);
                    *p = NIL;
                    *s = UNFILED;
                    std::mem::replace(n, NIL)
                };
                if ls.deadline(i) <= now {
                    expire(ls, i);
                    expired += 1;
                } else {
                    self.insert(ls, i, now);
                }
                i = next;
            }
        }
        expired
    }

    /// True when [`Wheel::advance`] would do anything at `now`.
    #[inline]
    pub fn due(&self, now: Nanos) -> bool {
        !self.started || tick_of(now) > self.tick
    }

    /// Bytes of memory the wheel holds (itself and its allocated levels).
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Wheel>() + self.levels_memory()
    }

    /// Bytes of memory the wheel has allocated: its levels.
    pub fn levels_memory(&self) -> usize {
        self.heads.iter().flatten().count() * std::mem::size_of::<[u32; SLOTS]>()
    }

    /// The tick up to which the wheel has been advanced.
    pub fn tick(&self) -> u64 {
        self.tick
    }
}

/// Ticks per second of the kernel whose timers are modelled (`CONFIG_HZ=250`, the oracle's).
const KERNEL_HZ: u64 = 250;

/// When a timer of the kernel's, armed at `now` to run `timeout` later, fires, as far as can
/// be told: its timer wheel (not this one) files a timer on a level by how far off it is, and
/// fires it at the first tick of that level's granularity past the deadline: up to 16.4 s
/// late for the 180 s and 300 s of most helpers' expectations (4,096 ticks), 2 s for the 30 s
/// and 60 s of reassembly queues (512), a quarter of a second for 3 s (64). Where in that
/// window depends on the kernel's tick count, which no packet shows, so the middle of it is
/// taken: it misses least (as the half tick does for entries, see
/// [`ctrack_protocols::HALF_JIFFY`]). Expectations and reassembly queues live until then;
/// connections do not use timers (the kernel's collector finds them, see [`Wheel`]).
pub(crate) fn kernel_timer_fires(now: Nanos, timeout: Nanos) -> Nanos {
    let tick = ctrack_protocols::NANOS_PER_SEC / KERNEL_HZ;
    let ticks = timeout / tick;
    // Level n takes timers under 63 << 3(n - 1) ticks away (level 0: under 63), each
    // level's slots 8 times coarser than the one below; nine levels.
    let level = (1..9u32)
        .find(|&n| ticks < 63 << (3 * (n - 1)))
        .map_or(8, |n| n - 1);
    let granularity = (1u64 << (3 * level)) * tick;
    now.saturating_add(timeout).saturating_add(granularity / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Nanos = ctrack_protocols::NANOS_PER_SEC;

    #[test]
    fn timers_fire_within_their_wheel_levels_granularity() {
        // (timeout, half the granularity of the wheel level it lands on), at 250 ticks a
        // second: 3 s is 750 ticks (level 2, 64 ticks), 30 s level 3 (512), 180 s and 300 s
        // level 4 (4,096).
        for (secs, half) in [
            (0, 2_000_000),
            (3, 128_000_000),
            (30, 1_024_000_000),
            (60, 1_024_000_000),
            (180, 8_192_000_000),
            (300, 8_192_000_000),
        ] {
            assert_eq!(
                kernel_timer_fires(SEC, secs * SEC),
                SEC + secs * SEC + half,
                "{secs} s"
            );
        }
    }

    #[derive(Default)]
    struct Arena {
        dl: Vec<Nanos>,
        p: Vec<u32>,
        n: Vec<u32>,
        s: Vec<u16>,
        alive: Vec<bool>,
    }

    impl Arena {
        fn add(&mut self, d: Nanos) -> u32 {
            self.dl.push(d);
            self.p.push(NIL);
            self.n.push(NIL);
            self.s.push(UNFILED);
            self.alive.push(true);
            (self.dl.len() - 1) as u32
        }
    }

    impl Links for Arena {
        fn deadline(&self, i: u32) -> Nanos {
            self.dl[i as usize]
        }
        fn links(&mut self, i: u32) -> (&mut u32, &mut u32, &mut u16) {
            let i = i as usize;
            (&mut self.p[i], &mut self.n[i], &mut self.s[i])
        }
    }

    const S: Nanos = 1_000_000_000;

    thread_local! {
        /// Makes every level allocation of this thread's wheels fail, as when memory runs out.
        pub(super) static REFUSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn refused_levels_wait_for_the_next_tick() {
        let mut w = Wheel::default();
        let mut a = Arena::default();
        let now = 5 * S;
        REFUSE.set(true);
        let ids: Vec<u32> = [30, 31, 432_000]
            .iter()
            .map(|&d| a.add(now + d * S))
            .collect();
        for &i in &ids {
            w.insert(&mut a, i, now);
        }
        assert_eq!(w.memory(), std::mem::size_of::<Wheel>());
        assert!(!w.needs_refile(a.s[0], now + S));
        // Taken off the waiting list like any slot (the last one filed heads it).
        w.remove(&mut a, ids[2]);
        w.remove(&mut a, ids[2]);
        let mut gone = vec![];
        // Examined at every tick, and put back while memory stays short.
        for t in 1..4 {
            w.advance(&mut a, now + t * (1 << TICK_SHIFT), |_, i| gone.push(i));
            assert!(gone.is_empty());
            assert_eq!(a.s[ids[0] as usize], PENDING);
        }
        REFUSE.set(false);
        w.advance(&mut a, now + S, |_, i| gone.push(i));
        assert!(gone.is_empty());
        assert!(a.s[ids[0] as usize] < PENDING && a.s[ids[1] as usize] < PENDING);
        assert_eq!(a.s[ids[2] as usize], UNFILED);
        w.advance(&mut a, now + 30 * S + (2 << TICK_SHIFT), |_, i| {
            gone.push(i)
        });
        assert_eq!(gone, vec![ids[0]]);
        w.advance(&mut a, now + 432_001 * S, |_, i| gone.push(i));
        assert_eq!(gone, vec![ids[0], ids[1]]);
    }

    #[test]
    fn expires_in_order_and_refiles() {
        let mut w = Wheel::default();
        let mut a = Arena::default();
        let now = 5 * S;
        let e1 = a.add(now + 30 * S);
        let e2 = a.add(now + 432_000 * S);
        w.insert(&mut a, e1, now);
        w.insert(&mut a, e2, now);
        let mut gone = vec![];
        w.advance(&mut a, now + 29 * S, |_, i| gone.push(i));
        assert!(gone.is_empty());
        // Refresh e1 later: lazily re-filed when its slot comes due.
        a.dl[e1 as usize] = now + 60 * S;
        w.advance(&mut a, now + 31 * S, |_, i| gone.push(i));
        assert!(gone.is_empty());
        w.advance(&mut a, now + 61 * S, |_, i| gone.push(i));
        assert_eq!(gone, vec![e1]);
        w.advance(&mut a, now + 432_001 * S, |_, i| gone.push(i));
        assert_eq!(gone, vec![e1, e2]);
    }

    #[test]
    fn a_jump_drains_any_number_of_slots_at_once() {
        const TICK: Nanos = 1 << TICK_SHIFT;
        // 14 to 16 level-0 slots (with the waiting list, either side of the short array's
        // room), every level-0 slot, and slots of three levels at once; the wheel's tick
        // starts mid-turn, so that the slots that come due wrap round.
        for (count, spacing) in [(14, 1), (15, 1), (16, 1), (63, 1), (40, 70), (30, 4_500)] {
            let mut w = Wheel::default();
            let mut a = Arena::default();
            let now = 1_000 * TICK + 37 * TICK;
            let ids: Vec<u32> = (1..=count)
                .map(|k| a.add(now + k * spacing * TICK + TICK / 2))
                .collect();
            for &i in &ids {
                w.insert(&mut a, i, now);
            }
            let last = now + (count + 1) * spacing * TICK;
            let mut gone = vec![];
            w.advance(&mut a, last, |_, i| gone.push(i));
            gone.sort();
            assert_eq!(gone, ids, "{count} entries {spacing} ticks apart");
            assert_eq!(w.occupied, [0; LEVELS]);
        }
    }

    #[test]
    fn levels_are_allocated_on_first_use() {
        let mut w = Wheel::default();
        let mut a = Arena::default();
        let bare = std::mem::size_of::<Wheel>();
        assert_eq!(w.memory(), bare);
        let level = std::mem::size_of::<[u32; SLOTS]>();
        let e1 = a.add(5 * S);
        w.insert(&mut a, e1, 0);
        assert_eq!(w.memory(), bare + level);
        let e2 = a.add(6 * S);
        w.insert(&mut a, e2, 0);
        assert_eq!(w.memory(), bare + level);
        let e3 = a.add(432_000 * S);
        w.insert(&mut a, e3, 0);
        assert_eq!(w.memory(), bare + 2 * level);
        let mut gone = vec![];
        w.advance(&mut a, 432_001 * S, |_, i| gone.push(i));
        assert_eq!(gone.len(), 3);
    }

    #[test]
    fn remove_unlinks() {
        let mut w = Wheel::default();
        let mut a = Arena::default();
        let ids: Vec<u32> = (0..5).map(|k| a.add(S * (k + 1))).collect();
        for &i in &ids {
            w.insert(&mut a, i, 0);
        }
        w.remove(&mut a, ids[2]);
        w.remove(&mut a, ids[2]);
        let mut gone = vec![];
        w.advance(&mut a, 100 * S, |_, i| gone.push(i));
        gone.sort();
        assert_eq!(gone, vec![ids[0], ids[1], ids[3], ids[4]]);
    }

    proptest! {
        /// Every entry is expired exactly once, never before its deadline and no later than
        /// one tick after the first advance past it, whatever the refreshes and time steps.
        #[test]
        fn never_early_never_lost(
            ops in proptest::collection::vec((0u8..4, 0u64..600, 1u64..5_000), 1..300)
        ) {
            // Op 3 turns level allocation failures on or off (entries then wait for the next
            // tick instead of their slot).
            REFUSE.set(false);
            let mut w = Wheel::default();
            let mut a = Arena::default();
            let mut now: Nanos = 1_000 * S;
            let mut expired_at: Vec<Option<Nanos>> = vec![];
            for (op, x, step) in ops {
                match op {
                    0 => {
                        let i = a.add(now + x * S / 4);
                        expired_at.push(None);
                        w.insert(&mut a, i, now);
                    }
                    1 if !a.dl.is_empty() => {
                        let i = (x as usize) % a.dl.len();
                        if a.alive[i] {
                            let nd = now + (step % 900) * S / 3;
                            let id = a.s[i];
                            a.dl[i] = nd;
                            if w.needs_refile(id, nd) {
                                w.remove(&mut a, i as u32);
                                w.insert(&mut a, i as u32, now);
                            }
                        }
                    }
                    3 => REFUSE.set(!REFUSE.get()),
                    _ => {
                        now += step * 10_000_000;
                        let t = now;
                        w.advance(&mut a, now, |ar, i| {
                            assert!(ar.alive[i as usize]);
                            ar.alive[i as usize] = false;
                            expired_at[i as usize] = Some(t);
                        });
                        for (i, al) in a.alive.iter().enumerate() {
                            if *al {
                                // Still alive: its deadline has not passed by more than a tick.
                                prop_assert!(a.dl[i] + (1 << TICK_SHIFT) > now,
                                    "entry {} deadline {} now {}", i, a.dl[i], now);
                            } else {
                                prop_assert!(a.dl[i] <= expired_at[i].unwrap());
                            }
                        }
                    }
                }
            }
        }
    }
}
