//! The connection table: sharded, each shard a slab of entries, a bucketed index and a timer
//! wheel, all behind one lock.
//!
//! A connection is hashed direction-blind (see [`Key::symmetric_hash`]), so one index slot
//! finds it from its original or its reply tuple, and both directions land in the same shard.
//! The index is open addressing over 64-byte buckets of 10 slots, each slot a 16-bit tag and a
//! 32-bit entry number; a per-bucket overflow count, and a filter of the tags of the entries
//! displaced past the bucket, let a lookup stop at the first bucket its tuple's entry cannot
//! have been displaced past. Lookups touch one bucket line and then one entry.

use ctrack_protocols::gre::GreState;
use ctrack_protocols::sctp::SctpState;
use ctrack_protocols::tcp::TcpState;
use ctrack_protocols::udp::UdpState;
use ctrack_protocols::{Ctx, Dir, Nanos, Refresh};
use std::collections::TryReserveError;

use crate::store::Store;

use crate::timer::{Links, NIL, UNFILED, Wheel};
use crate::tuple::{Addr, Key};

/// Status bits, numbered as the kernel numbers them (its first four: the engine keeps no
/// others, so they fit a byte).
pub mod status {
    /// The connection was expected (created through an expectation).
    pub const EXPECTED: u8 = 1 << 0;
    /// A packet has been seen in the reply direction.
    pub const SEEN_REPLY: u8 = 1 << 1;
    /// The connection is ASSURED: early drop and GC under pressure spare it.
    pub const ASSURED: u8 = 1 << 2;
    /// The entry is in the table.
    pub const CONFIRMED: u8 = 1 << 3;
    /// Not one of the kernel's: a packet changed the entry but the host dropped it after
    /// tracking, so no event has reported the change yet (the kernel keeps such an event for
    /// the entry's next packet that gets through).
    pub const UNREPORTED: u8 = 1 << 6;
    /// Not one of the kernel's: with [`UNREPORTED`], the change moved the protocol state.
    pub const UNREPORTED_STATE: u8 = 1 << 7;
    /// The bits of the kernel's own numbering.
    pub const KERNEL: u8 = EXPECTED | SEEN_REPLY | ASSURED | CONFIRMED;
}

/// Protocol state kept with an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtoState {
    /// ICMP, generic: nothing beyond the tuple.
    #[default]
    None,
    /// UDP and UDP-Lite.
    Udp(UdpState),
    /// GRE.
    Gre(GreState),
    /// TCP.
    Tcp(TcpState),
    /// SCTP.
    Sctp(SctpState),
}

/// One connection.
#[derive(Clone, Copy, Debug)]
pub struct Entry<A> {
    /// Original-direction tuple.
    pub key: Key<A>,
    /// [`status`] bits.
    pub status: u8,
    /// Assigned helper (index into the helper registry, 0 = none).
    pub helper: u8,
    /// Wheel slot holding the entry.
    wslot: u16,
    /// Absolute expiry time.
    pub expires: Nanos,
    prev: u32,
    next: u32,
    /// Protocol state.
    pub proto: ProtoState,
}

impl<A: Addr> Entry<A> {
    fn vacant() -> Self {
        Entry {
            key: Key::default(),
            status: 0,
            helper: 0,
            wslot: UNFILED,
            expires: 0,
            prev: NIL,
            next: NIL,
            proto: ProtoState::None,
        }
    }

    /// A fresh, unconfirmed entry for `key`.
    pub fn new(key: Key<A>) -> Self {
        Entry {
            key,
            ..Self::vacant()
        }
    }

    /// Where this entry (slab index `i`) answers a lookup of `key` or its inverse `inv`. A
    /// tuple that is its own inverse is found in the reply direction, as the kernel finds it
    /// (see [`Key::is_own_inverse`]).
    #[inline(always)]
    fn matches(&self, i: u32, key: &Key<A>, inv: &Key<A>) -> Option<Found> {
        let dir = if self.key.same(key) {
            if key.is_own_inverse() {
                Dir::Reply
            } else {
                Dir::Original
            }
        } else if self.key.same(inv) {
            Dir::Reply
        } else {
            return None;
        };
        Some(Found { idx: i, dir })
    }

    /// What a tracker is told about this confirmed entry for a packet in `dir` at `now`.
    #[inline(always)]
    pub fn ctx(&self, dir: Dir, now: Nanos) -> Ctx {
        Ctx {
            dir,
            confirmed: true,
            seen_reply: self.status & status::SEEN_REPLY != 0,
            assured: self.status & status::ASSURED != 0,
            now,
            expires: self.expires,
        }
    }

    /// The entry is expired at `now`: the kernel's timeout minus now is not positive, which,
    /// counted in its ticks, happens at some time in the tick before `expires`; ctrack takes
    /// half a tick before (see [`ctrack_protocols::HALF_JIFFY`]).
    #[inline]
    pub fn expired(&self, now: Nanos) -> bool {
        self.expires <= now.saturating_add(ctrack_protocols::HALF_JIFFY)
    }
}

const SLOTS: usize = 10;

/// Asks the processor to bring the cache line at `p` closer. Any address is acceptable: a
/// prefetch never faults and changes nothing the program can observe.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it reads nothing into the program, cannot fault, even on
    // an unmapped or stale address, and needs only SSE, which x86_64 always has.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches every cache line of the entry at `e`. The slab has the allocator's alignment
/// (16 bytes), so an entry may start anywhere in a line: an 88-byte IPv4 entry spans two or
/// three lines, a 112-byte IPv6 one as well (fetching only the first two left one packet in
/// two to miss on its entry's last line). Asking for a line twice costs one instruction.
#[inline(always)]
fn prefetch_lines<A: Addr>(e: *const Entry<A>) {
    let size = std::mem::size_of::<Entry<A>>();
    let p = e as *const u8;
    prefetch(p);
    prefetch(p.wrapping_add(64));
    prefetch(p.wrapping_add(size - 1));
}

/// Ten index slots in one cache line: 16-bit tags packed four to a word (lanes 0-9; lane 10
/// holds the overflow count, lane 11 the passed filter), then the entry numbers.
///
/// The passed filter has bit [`passed_bit`] of the tag of every entry that overflowed past
/// the bucket (as far as it knows: a bit stays after its entry has gone, until no entry
/// passes the bucket any more). A lookup stops its walk at a bucket without its tag's bit,
/// instead of going on to the next one as long as the overflow count is not zero: in an
/// index near its load limit a fifth of the buckets have overflowed, and a new connection's
/// lookup (which finds nothing) would read the next bucket's line, a cache miss, for most of
/// them.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u64; 3],
    idx: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [0; 3],
    idx: [NIL; SLOTS],
};

/// High bit of every 16-bit lane that is zero in `x`, exactly (no borrow between lanes).
#[inline]
fn zero_lanes(x: u64) -> u64 {
    const LOW: u64 = 0x7fff_7fff_7fff_7fff;
    !(((x & LOW) + LOW) | x | LOW)
}

/// Packs the four lane flags of [`zero_lanes`] into four low bits.
#[inline]
fn lane_bits(m: u64) -> u32 {
    (((m >> 15) & 1) | ((m >> 30) & 2) | ((m >> 45) & 4) | ((m >> 60) & 8)) as u32
}

impl Bucket {
    /// Slots whose tag equals `tag`, as a bit mask (tag 0: the empty slots): the bucket's first
    /// 32 bytes (the ten tags, the overflow count, the passed filter and two entry numbers) in
    /// two SSE2 compares, the lanes past the tenth masked off.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn matching(&self, tag: u16) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi16, _mm_load_si128, _mm_movemask_epi8, _mm_packs_epi16,
            _mm_set1_epi16,
        };
        let at = (self as *const Bucket).cast::<__m128i>();
        // SAFETY: SSE2 is part of the x86_64 baseline the compiler targets. A `Bucket` is 64
        // bytes aligned to 64 (`repr(C, align(64))`), so both 16-byte loads are aligned and
        // lie inside `self`, and every byte of it is initialised (no padding before `idx`'s
        // end at byte 64: 24 bytes of tags, 40 of entry numbers).
        let m = unsafe {
            let t = _mm_set1_epi16(tag as i16);
            let a = _mm_cmpeq_epi16(_mm_load_si128(at), t);
            let b = _mm_cmpeq_epi16(_mm_load_si128(at.add(1)), t);
            _mm_movemask_epi8(_mm_packs_epi16(a, b)) as u32
        };
        m & ((1 << SLOTS) - 1)
    }

    /// Slots whose tag equals `tag`, as a bit mask (tag 0: the empty slots).
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn matching(&self, tag: u16) -> u32 {
        self.matching_swar(tag)
    }

    /// The portable form of [`Bucket::matching`]: four lanes per word, compared at once.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline]
    fn matching_swar(&self, tag: u16) -> u32 {
        let b = tag as u64 * 0x0001_0001_0001_0001;
        lane_bits(zero_lanes(self.tags[0] ^ b))
            | lane_bits(zero_lanes(self.tags[1] ^ b)) << 4
            | (lane_bits(zero_lanes(self.tags[2] ^ b)) & 0b11) << 8
    }

    #[inline]
    fn tag(&self, s: usize) -> u16 {
        (self.tags[s / 4] >> (16 * (s % 4))) as u16
    }

    #[inline]
    fn set_tag(&mut self, s: usize, t: u16) {
        let sh = 16 * (s % 4);
        let w = &mut self.tags[s / 4];
        *w = (*w & !(0xffff << sh)) | (t as u64) << sh;
    }

    #[inline]
    fn overflow(&self) -> u16 {
        (self.tags[2] >> 32) as u16
    }

    #[inline]
    fn set_overflow(&mut self, o: u16) {
        self.tags[2] = (self.tags[2] & !(0xffff << 32)) | (o as u64) << 32;
    }

    /// Whether an entry under `tag` may have overflowed past this bucket (see [`Bucket`]).
    #[inline]
    fn passed(&self, tag: u16) -> bool {
        self.tags[2] & passed_bit(tag) != 0
    }

    /// Counts one more entry under `tag` overflowing past this bucket; returns the count
    /// before.
    #[inline]
    fn pass(&mut self, tag: u16) -> u16 {
        let o = self.overflow();
        self.set_overflow(o.saturating_add(1));
        self.tags[2] |= passed_bit(tag);
        o
    }

    /// Counts one entry fewer overflowing past this bucket (a saturated count stays): with
    /// none left, the passed filter is cleared. Returns whether none is left.
    #[inline]
    fn unpass(&mut self) -> bool {
        let o = self.overflow();
        if o == u16::MAX {
            return false;
        }
        self.set_overflow(o - 1);
        if o == 1 {
            self.tags[2] &= !(0xffff << 48);
        }
        o == 1
    }
}

/// An index with no more open buckets than this is never called worn out (see
/// [`Shard::make_room`]): a small one is walked in a few buckets whatever happens.
const WORN_MIN: usize = 32;

#[inline]
fn tag_of(h: u64) -> u16 {
    (h >> 48) as u16 | 1
}

/// The bit of a bucket's passed filter (lane 11, see [`Bucket`]) for entries under `tag`: one
/// of 16, from the tag's top four bits.
#[inline]
fn passed_bit(tag: u16) -> u64 {
    1 << (48 + (tag >> 12))
}

/// Where a lookup found its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Slab index.
    pub idx: u32,
    /// Which tuple matched.
    pub dir: Dir,
}

/// Packet and byte counters of one entry, per direction (with `nf_conntrack_acct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets, original then reply direction.
    pub packets: [u64; 2],
    /// Bytes at layer 3, original then reply direction.
    pub bytes: [u64; 2],
}

/// Starts keeping a per-slot array, when not kept yet: one default value for each of the `len`
/// slots in use, with room for the slab's `cap`.
fn keep_per_slot<T: Copy + Default>(
    kept: &mut Option<Vec<T>>,
    len: usize,
    cap: usize,
) -> Result<(), TryReserveError> {
    if kept.is_none() {
        let mut v = Vec::new();
        v.try_reserve_exact(cap)?;
        v.resize(len, T::default());
        *kept = Some(v);
    }
    Ok(())
}

/// One shard: entries, their index and their timer wheel.
pub struct Shard<A> {
    /// Per-entry counters, kept only with accounting on (indexed like the entries).
    acct: Option<Vec<Counters>>,
    /// Per-entry creation times, kept only with timestamps on.
    born: Option<Vec<Nanos>>,
    /// Per-entry connection marks (the kernel's `ct mark`), kept from the first mark set in
    /// the shard on; before that every entry's mark is 0.
    marks: Option<Vec<u32>>,
    /// Per-entry timeout policies (1 up, see `crate::policy`; 0: timed by the sysctls), kept
    /// from the first entry with one in the shard on.
    policies: Option<Vec<u8>>,
    buckets: Vec<Bucket>,
    mask: usize,
    /// Buckets with a nonzero overflow count, which a lookup that reaches them walks past
    /// (see [`Shard::make_room`]).
    open: usize,
    /// More than two thirds of the buckets were open after an insertion: the index has worn
    /// out.
    worn: bool,
    /// Live (confirmed) entries.
    count: usize,
    entries: Store<Entry<A>>,
    free: u32,
    wheel: Wheel,
    /// Latest time this shard has seen; time never goes backwards inside a shard.
    pub clock: Nanos,
}

struct Slab<'a, A>(&'a mut Store<Entry<A>>);

impl<A> Links for Slab<'_, A> {
    #[inline]
    fn deadline(&self, i: u32) -> Nanos {
        self.0[i as usize].expires
    }
    #[inline]
    fn links(&mut self, i: u32) -> (&mut u32, &mut u32, &mut u16) {
        let e = &mut self.0[i as usize];
        (&mut e.prev, &mut e.next, &mut e.wslot)
    }
}

impl<A: Addr> Default for Shard<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Addr> Shard<A> {
    /// An empty shard.
    pub fn new() -> Self {
        Self::with_extras(false, false)
    }

    /// An empty shard that also keeps per-entry counters (`acct`) and creation times
    /// (`timestamps`).
    pub fn with_extras(acct: bool, timestamps: bool) -> Self {
        Shard {
            acct: acct.then(Vec::new),
            born: timestamps.then(Vec::new),
            marks: None,
            policies: None,
            buckets: vec![EMPTY_BUCKET; 1],
            mask: 0,
            open: 0,
            worn: false,
            count: 0,
            entries: Store::new(),
            free: NIL,
            wheel: Wheel::default(),
            clock: 0,
        }
    }

    /// Number of confirmed entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the shard holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Slab slots allocated (live and free).
    #[inline]
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// The entry at slab index `i`.
    #[inline]
    pub fn get(&self, i: u32) -> &Entry<A> {
        &self.entries[i as usize]
    }

    /// The helper assigned to the entry at slab index `i` (0: none, or no such entry, as for
    /// [`NIL`]).
    #[inline]
    pub fn helper_at(&self, i: u32) -> u8 {
        self.entries.get(i as usize).map_or(0, |e| e.helper)
    }

    /// The timeout policy of the entry at slab index `i` (0: none, or no such entry).
    #[inline]
    pub fn policy_at(&self, i: u32) -> u8 {
        self.policies
            .as_ref()
            .and_then(|p| p.get(i as usize).copied())
            .unwrap_or(0)
    }

    /// Gives entry `i` timeout policy `policy`, within the room [`Shard::keep_policies`] made.
    pub fn set_policy(&mut self, i: u32, policy: u8) {
        if let Some(p) = self.policies.as_mut().and_then(|p| p.get_mut(i as usize)) {
            *p = policy;
        }
    }

    /// Starts keeping timeout policies (all 0), with room for every slot of the slab, as
    /// [`Shard::keep_marks`] does for marks.
    pub fn keep_policies(&mut self) -> Result<(), TryReserveError> {
        keep_per_slot(
            &mut self.policies,
            self.entries.len(),
            self.entries.capacity(),
        )
    }

    /// The entry at slab index `i`, mutably.
    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut Entry<A> {
        &mut self.entries[i as usize]
    }

    /// Bytes of memory the shard has allocated (slab, index, the wheel's levels, extras), for
    /// per-entry accounting; the shard itself is its owner's to count.
    pub fn heap_memory(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<A>>()
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self
                .acct
                .as_ref()
                .map_or(0, |a| a.capacity() * std::mem::size_of::<Counters>())
            + self
                .born
                .as_ref()
                .map_or(0, |b| b.capacity() * std::mem::size_of::<Nanos>())
            + self.marks.as_ref().map_or(0, |m| m.capacity() * 4)
            + self.policies.as_ref().map_or(0, Vec::capacity)
            + self.wheel.levels_memory()
    }

    /// Entry `i`'s counters, when accounting is on.
    #[inline]
    pub fn counters(&self, i: u32) -> Option<&Counters> {
        self.acct.as_ref().and_then(|a| a.get(i as usize))
    }

    /// Counts one packet of `bytes` in direction `dir` for entry `i` (when accounting is on).
    #[inline]
    pub fn count_packet(&mut self, i: u32, dir: Dir, bytes: u32) {
        if let Some(c) = self.acct.as_mut().and_then(|a| a.get_mut(i as usize)) {
            c.packets[dir.idx()] += 1;
            c.bytes[dir.idx()] += bytes as u64;
        }
    }

    /// When entry `i` was created, when timestamps are on.
    #[inline]
    pub fn born(&self, i: u32) -> Option<Nanos> {
        self.born.as_ref().and_then(|b| b.get(i as usize).copied())
    }

    /// Entry `i`'s connection mark (0 until one is set).
    #[inline]
    pub fn mark(&self, i: u32) -> u32 {
        self.marks
            .as_ref()
            .and_then(|m| m.get(i as usize).copied())
            .unwrap_or(0)
    }

    /// Sets entry `i`'s connection mark. The shard keeps marks from the first one that is not
    /// 0 on, with room for every slot of its slab; when that memory cannot be had, nothing
    /// changes.
    pub fn set_mark(&mut self, i: u32, mark: u32) -> Result<(), TryReserveError> {
        if self.marks.is_none() && mark == 0 {
            return Ok(());
        }
        self.keep_marks()?;
        if let Some(m) = self.marks.as_mut().and_then(|m| m.get_mut(i as usize)) {
            *m = mark;
        }
        Ok(())
    }

    /// Starts keeping marks (all 0), with room for every slot of the slab, so that inserting
    /// within the slab's capacity allocates nothing for them.
    pub fn keep_marks(&mut self) -> Result<(), TryReserveError> {
        keep_per_slot(&mut self.marks, self.entries.len(), self.entries.capacity())
    }

    /// Where the buckets start and the mask that picks one: for prefetching from outside
    /// the lock.
    #[inline]
    pub fn bucket_base(&self) -> (*const u8, usize) {
        (self.buckets.as_ptr() as *const u8, self.mask)
    }

    /// Prefetches the entry that the bucket of `h` holds under `h`'s tag, if any, and returns
    /// its slab index ([`NIL`] when there is none) as a hint for [`Shard::find_hinted`].
    #[inline]
    pub fn prefetch_entry(&self, h: u64) -> u32 {
        let i = self.hint_of(h);
        self.prefetch_at(i);
        i
    }

    /// The slab index of the entry that the lookup of a tuple of hash `h` will probably find,
    /// or `NIL`: [`Shard::prefetch_entry`] without asking for the entry's lines.
    #[inline]
    pub fn hint_of(&self, h: u64) -> u32 {
        let b = h as usize & self.mask;
        let bk = &self.buckets[b];
        let m = bk.matching(tag_of(h));
        if m != 0 {
            bk.idx[m.trailing_zeros() as usize]
        } else if bk.passed(tag_of(h)) {
            // A fuller index puts a few entries in a bucket after their own.
            self.overflowed(b, tag_of(h))
        } else {
            self.missed(b);
            NIL
        }
    }

    /// For [`Shard::hint_of`] when bucket `b` cannot hold the tuple's entry, nor any bucket
    /// after it: a new connection's entry then goes to bucket `b`, or when that is full (as it
    /// often is in a growing table) to the next one, which is asked for now. Out of line: the
    /// hint of an entry that is there does not carry it.
    #[inline(never)]
    fn missed(&self, b: usize) {
        if self.buckets[b].matching(0) == 0 {
            prefetch(self.buckets[(b + 1) & self.mask].tags.as_ptr() as *const u8);
        }
    }

    /// Asks for the cache lines of entry `i` (nothing for `NIL` or a slot past the slab),
    /// and with accounting on for its counters.
    #[inline]
    pub fn prefetch_at(&self, i: u32) {
        if let Some(e) = self.entries.get(i as usize) {
            // The tuple in the first line, TCP state in the others.
            prefetch_lines(e);
        }
        // With accounting on, the packet's counters too (32 bytes, maybe across a line).
        if let Some(c) = self.acct.as_ref().and_then(|a| a.get(i as usize)) {
            let p = c as *const Counters as *const u8;
            prefetch(p);
            prefetch(p.wrapping_add(std::mem::size_of::<Counters>() - 1));
        }
    }

    /// The first slot under `tag` in the buckets after bucket `b`, whose filter has `tag`'s
    /// bit (its caller has seen it), as far as entries under such tags overflowed (the walk
    /// `find` makes), or [`NIL`].
    #[inline(never)]
    fn overflowed(&self, mut b: usize, tag: u16) -> u32 {
        for _ in 1..self.buckets.len() {
            b = (b + 1) & self.mask;
            let bk = &self.buckets[b];
            let m = bk.matching(tag);
            if m != 0 {
                return bk.idx[m.trailing_zeros() as usize];
            }
            if !bk.passed(tag) {
                break;
            }
        }
        NIL
    }

    /// [`Shard::find`], trying slab index `hint` first (from [`Shard::prefetch_entry`], taken
    /// earlier, perhaps before other changes to the shard). The answer is the same: a live
    /// tuple is in the table once, in one direction, and a free slot holds the all-zero tuple,
    /// which no tracked packet has.
    #[inline]
    pub fn find_hinted(&self, hint: u32, h: u64, key: &Key<A>, inv: &Key<A>) -> Option<Found> {
        if let Some(f) = self
            .entries
            .get(hint as usize)
            .and_then(|e| e.matches(hint, key, inv))
        {
            return Some(f);
        }
        self.find(h, key, inv)
    }

    /// Looks up `key` (with precomputed `inv`, its inverse) under hash `h`.
    #[inline]
    pub fn find(&self, h: u64, key: &Key<A>, inv: &Key<A>) -> Option<Found> {
        let tag = tag_of(h);
        let mut b = h as usize & self.mask;
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            let m = bk.matching(tag);
            // Only a tag match reads entries (and needs the tuples in registers): a miss,
            // a new connection's lookup, stays a walk over bucket words.
            if m != 0
                && let Some(f) = self.match_tagged(bk, m, key, inv)
            {
                return Some(f);
            }
            if !bk.passed(tag) {
                return None;
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    /// The entry among the slots `m` of `bk` that holds `key` or `inv`.
    #[inline(never)]
    fn match_tagged(&self, bk: &Bucket, mut m: u32, key: &Key<A>, inv: &Key<A>) -> Option<Found> {
        while m != 0 {
            let s = m.trailing_zeros() as usize;
            m &= m - 1;
            let i = bk.idx[s];
            if let Some(f) = self.entries[i as usize].matches(i, key, inv) {
                return Some(f);
            }
        }
        None
    }

    #[inline(always)]
    fn index_insert(&mut self, h: u64, i: u32) {
        let tag = tag_of(h);
        let mut b = h as usize & self.mask;
        loop {
            let bk = &mut self.buckets[b];
            let free = bk.matching(0);
            if free != 0 {
                let s = free.trailing_zeros() as usize;
                bk.set_tag(s, tag);
                bk.idx[s] = i;
                return;
            }
            if bk.pass(tag) == 0 {
                self.open += 1;
                self.worn |= self.open > WORN_MIN && 3 * self.open > 2 * self.buckets.len();
            }
            b = (b + 1) & self.mask;
        }
    }

    fn index_remove(&mut self, h: u64, i: u32) {
        let home = h as usize & self.mask;
        let mut b = home;
        for _ in 0..self.buckets.len() {
            let bk = &mut self.buckets[b];
            if let Some(s) = (0..SLOTS).find(|&s| bk.tag(s) != 0 && bk.idx[s] == i) {
                bk.set_tag(s, 0);
                bk.idx[s] = NIL;
                let mut c = home;
                while c != b {
                    self.open -= usize::from(self.buckets[c].unpass());
                    c = (c + 1) & self.mask;
                }
                return;
            }
            b = (b + 1) & self.mask;
        }
        debug_assert!(false, "entry {i} missing from the index");
    }

    /// Makes sure one more entry can be inserted without allocating: doubles the index when
    /// the entry would take it past its load limit, or when it has worn out (see below), and
    /// grows the slab (by a quarter, a sixteenth once it is in a mapping of its own, see
    /// `Store::growth`: geometric growth that leaves little room unused) when it has no free
    /// slot. Fails, instead of aborting as an infallible
    /// allocation would, when the memory cannot be had; the shard is then as usable as before
    /// (its index may be larger).
    ///
    /// An index near its load limit wears out under churn (connections ending and others
    /// starting): an entry stays in the later bucket it overflowed to after the entries that
    /// filled its own have gone, keeping the buckets in between open to lookups, and new ones
    /// overflow past it, until a lookup that finds nothing walks five or ten buckets where a
    /// freshly built index walks one. Once more than two thirds of the buckets are open, the
    /// index is rebuilt at twice the size, where churn keeps the walks short. (Filled without
    /// churn up to its load limit, an index has under half its buckets open.)
    #[inline]
    pub fn make_room(&mut self, hash: &impl Fn(&Key<A>) -> u64) -> Result<(), TryReserveError> {
        if self.index_full()
            || self.worn
            || (self.free == NIL && self.entries.len() == self.entries.capacity())
        {
            return self.grow(hash);
        }
        Ok(())
    }

    /// True when one more entry would take the index past its load limit.
    #[inline]
    fn index_full(&self) -> bool {
        (self.count + 1) * 8 > self.buckets.len() * SLOTS * 7
    }

    /// The growth [`Shard::make_room`] found needed.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, hash: &impl Fn(&Key<A>) -> u64) -> Result<(), TryReserveError> {
        if self.index_full() || self.worn {
            let n = self.buckets.len() * 2;
            let mut buckets = Vec::new();
            match buckets.try_reserve_exact(n) {
                Ok(()) => {
                    buckets.resize(n, EMPTY_BUCKET);
                    self.rebuild_into(buckets, hash);
                }
                Err(e) if self.index_full() => return Err(e),
                // Worn but not full: the entry still fits, only lookups stay slower.
                Err(_) => self.worn = false,
            }
        }
        if self.free == NIL && self.entries.len() == self.entries.capacity() {
            self.entries.try_reserve_exact(self.entries.growth())?;
            self.commit_spare();
        }
        self.reserve_extras()
    }

    /// Room in the counters and creation times (when kept) for every slot of the slab.
    fn reserve_extras(&mut self) -> Result<(), TryReserveError> {
        let cap = self.entries.capacity();
        if let Some(a) = self.acct.as_mut() {
            a.try_reserve_exact(cap.saturating_sub(a.len()))?;
        }
        if let Some(b) = self.born.as_mut() {
            b.try_reserve_exact(cap.saturating_sub(b.len()))?;
        }
        if let Some(m) = self.marks.as_mut() {
            m.try_reserve_exact(cap.saturating_sub(m.len()))?;
        }
        if let Some(p) = self.policies.as_mut() {
            p.try_reserve_exact(cap.saturating_sub(p.len()))?;
        }
        Ok(())
    }

    /// Buckets an index needs to hold `entries` within its load limit (a power of two).
    fn buckets_for(entries: usize) -> usize {
        entries
            .saturating_mul(8)
            .div_ceil(SLOTS * 7)
            .max(1)
            .next_power_of_two()
    }

    /// Makes room for `entries` entries in all (index, slab, and the counters and creation
    /// times when kept), so that inserting up to that many allocates nothing. The slab's new
    /// room is written once, so that the memory is committed now and no page fault waits for
    /// the first packets of a flood. At most `u32::MAX - 1` entries (the slab's index range);
    /// when the memory cannot be had, the error says so and the shard is as usable as before
    /// (the index may already be larger).
    pub fn reserve(
        &mut self,
        entries: usize,
        hash: &impl Fn(&Key<A>) -> u64,
    ) -> Result<(), TryReserveError> {
        // Slab indexes are 32-bit, `NIL` excluded: no shard holds more.
        let entries = entries.min(NIL as usize);
        let n = Self::buckets_for(entries);
        if n > self.buckets.len() {
            let mut buckets = Vec::new();
            buckets.try_reserve_exact(n)?;
            buckets.resize(n, EMPTY_BUCKET);
            self.rebuild_into(buckets, hash);
        }
        if entries > self.entries.capacity() {
            self.entries
                .try_reserve_exact(entries - self.entries.len())?;
            self.commit_spare();
        }
        self.reserve_extras()
    }

    /// Writes the slab's room beyond its entries once, so that its pages are mapped now, in
    /// one sweep, rather than faulted in one at a time by the insertions, whose prefetch of
    /// the slot ahead (see [`Shard::insert`]) can then reach it.
    fn commit_spare(&mut self) {
        self.entries.commit_spare();
    }

    /// Re-indexes every confirmed entry of the slab into `buckets`, all empty (their number a
    /// power of two), which replace the index.
    fn rebuild_into(&mut self, buckets: Vec<Bucket>, hash: &impl Fn(&Key<A>) -> u64) {
        let n = buckets.len();
        self.buckets = buckets;
        self.mask = n - 1;
        self.open = 0;
        self.worn = false;
        // Entries are read in order (prefetched further ahead, as the hardware does not keep
        // up), but each lands in a random bucket of the new index: a block's entries are
        // hashed first, each asking for its bucket's line, then inserted.
        const BLOCK: usize = 16;
        let len = self.entries.len();
        let mut hs = [0u64; BLOCK];
        let mut at = [0u32; BLOCK];
        let mut from = 0;
        while from < len {
            let to = (from + BLOCK).min(len);
            let mut n = 0;
            for i in from..to {
                if let Some(e) = self.entries.get(i + 2 * BLOCK) {
                    prefetch((e as *const Entry<A> as *const u8).wrapping_add(64));
                }
                let e = &self.entries[i];
                if e.status & status::CONFIRMED != 0 {
                    let h = hash(&e.key);
                    prefetch(self.buckets[h as usize & self.mask].tags.as_ptr() as *const u8);
                    hs[n] = h;
                    at[n] = i as u32;
                    n += 1;
                }
            }
            for k in 0..n {
                self.index_insert(hs[k], at[k]);
            }
            from = to;
        }
    }

    /// Inserts (confirms) `e` under hash `h`; returns its slab index, or the allocation
    /// failure that left no room for it (see [`Shard::make_room`], which a caller that must
    /// not lose anything to a failure calls first: the insertion then allocates nothing).
    pub fn insert(
        &mut self,
        h: u64,
        mut e: Entry<A>,
        now: Nanos,
        hash: &impl Fn(&Key<A>) -> u64,
    ) -> Result<u32, TryReserveError> {
        self.make_room(hash)?;
        e.status |= status::CONFIRMED;
        e.prev = NIL;
        e.next = NIL;
        e.wslot = UNFILED;
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.entries[i as usize].next;
            self.entries[i as usize] = e;
            // The next insertion's slot, fetched while this packet finishes.
            if let Some(next) = self.entries.get(self.free as usize) {
                prefetch_lines(next);
            }
            i
        } else {
            self.entries.push(e)?;
            // Entries are appended in order: ask for the lines of one a few places on, so
            // that its writes find them in cache (a flood otherwise waits on each).
            prefetch_lines(self.entries.as_ptr().wrapping_add(self.entries.len() + 3));
            (self.entries.len() - 1) as u32
        };
        self.index_insert(h, i);
        self.count += 1;
        self.wheel.insert(&mut Slab(&mut self.entries), i, now);
        // Within the capacity `make_room` reserved: no allocation.
        let n = self.entries.len();
        if let Some(a) = self.acct.as_mut() {
            a.resize(n, Counters::default());
            a[i as usize] = Counters::default();
        }
        if let Some(b) = self.born.as_mut() {
            b.resize(n, 0);
            b[i as usize] = now;
        }
        if let Some(m) = self.marks.as_mut() {
            m.resize(n, 0);
            m[i as usize] = 0;
        }
        if let Some(p) = self.policies.as_mut() {
            p.resize(n, 0);
            p[i as usize] = 0;
        }
        Ok(i)
    }

    /// Sets entry `i`'s expiry, re-filing it in the wheel only when the new time is earlier
    /// than its slot.
    #[inline(always)]
    pub fn set_expiry(&mut self, i: u32, expires: Nanos, now: Nanos) {
        let e = &mut self.entries[i as usize];
        let id = e.wslot;
        let earlier = expires < e.expires;
        e.expires = expires;
        if earlier && self.wheel.needs_refile(id, expires) {
            self.refile(i, now);
        }
    }

    /// The established packet's whole visit to its entry, in one place: when slab index `i`
    /// holds `key` (the packet is original) or its inverse (reply; only then computed), the
    /// entry is live at `now` and `refresh` answers for its protocol state, applies the answer
    /// (expiry, ASSURED, SEEN_REPLY, accounting of `bytes`) and returns the direction with the
    /// status bits from before and after the packet. Otherwise changes nothing and returns
    /// `None` (any index is acceptable, [`NIL`] included).
    #[inline(always)]
    pub fn refresh_at(
        &mut self,
        i: u32,
        key: &Key<A>,
        now: Nanos,
        bytes: u32,
        refresh: impl FnOnce(&mut ProtoState, &Ctx) -> Option<Refresh>,
    ) -> Option<(Dir, u8, u8)> {
        self.refresh_with::<false>(i, key, now, bytes, refresh)
    }

    /// [`Shard::refresh_at`], comparing tuples through [`Key::probe`] when `FRESH`: for a
    /// `key` just stored field by field (a packet tracked frame by frame), which the probe
    /// reads one field at a time instead of as words that would wait for those stores. That
    /// costs a few dozen instructions more, a loss where the tuple was stored long before (a
    /// sorted burst's queue).
    #[inline(always)]
    pub(crate) fn refresh_with<const FRESH: bool>(
        &mut self,
        i: u32,
        key: &Key<A>,
        now: Nanos,
        bytes: u32,
        refresh: impl FnOnce(&mut ProtoState, &Ctx) -> Option<Refresh>,
    ) -> Option<(Dir, u8, u8)> {
        let e = self.entries.get_mut(i as usize)?;
        // The inverse only for a packet that is not in the original direction.
        let dir = if FRESH {
            let p = key.probe();
            if e.key.same_probe(key, &p, false) {
                Some(if key.is_own_inverse() {
                    Dir::Reply
                } else {
                    Dir::Original
                })
            } else if if key.is_icmp() {
                e.key.same(&key.inverse()?)
            } else {
                e.key.same_probe(key, &p, true)
            } {
                Some(Dir::Reply)
            } else {
                None
            }
        } else if e.key.same(key) {
            Some(if key.is_own_inverse() {
                Dir::Reply
            } else {
                Dir::Original
            })
        } else if e.key.same(&if key.is_icmp() {
            key.inverse()?
        } else {
            key.swapped()
        }) {
            Some(Dir::Reply)
        } else {
            None
        };
        let dir = dir?;
        if e.expired(now) {
            return None;
        }
        let before = e.status;
        let ctx = e.ctx(dir, now);
        let r = refresh(&mut e.proto, &ctx)?;
        let mut after = before;
        if r.assured {
            after |= status::ASSURED;
        }
        if dir == Dir::Reply {
            after |= status::SEEN_REPLY;
        }
        e.status = after;
        let expires = now.saturating_add(r.timeout);
        let (id, earlier) = (e.wslot, expires < e.expires);
        e.expires = expires;
        if earlier && self.wheel.needs_refile(id, expires) {
            self.refile(i, now);
        }
        self.count_packet(i, dir, bytes);
        Some((dir, before, after))
    }

    /// Moves entry `i` to the wheel slot of its new, earlier expiry.
    #[inline(never)]
    fn refile(&mut self, i: u32, now: Nanos) {
        let mut s = Slab(&mut self.entries);
        self.wheel.remove(&mut s, i);
        self.wheel.insert(&mut s, i, now);
    }

    /// Removes entry `i` (hash `h`) from the index and wheel and frees its slot; returns it.
    pub fn remove(&mut self, h: u64, i: u32) -> Entry<A> {
        self.index_remove(h, i);
        self.wheel.remove(&mut Slab(&mut self.entries), i);
        self.release(i)
    }

    fn release(&mut self, i: u32) -> Entry<A> {
        let e = &mut self.entries[i as usize];
        let old = *e;
        *e = Entry::vacant();
        e.next = self.free;
        self.free = i;
        self.count -= 1;
        old
    }

    /// True when the wheel has ticks to process at `now` (cheap: call [`Shard::expire`] only
    /// then).
    #[inline]
    pub fn timers_due(&self, now: Nanos) -> bool {
        self.wheel.due(now)
    }

    /// Advances the wheel to `now`, removing expired entries; `gone` sees each one, with its
    /// counters when the shard keeps them.
    pub fn expire(
        &mut self,
        now: Nanos,
        hash: &impl Fn(&Key<A>) -> u64,
        mut gone: impl FnMut(&Entry<A>, Option<Counters>, u32),
    ) -> usize {
        // The expired entries, chained through their (now unused) `next` links in the order
        // the wheel gives them: nothing is allocated, so memory running out cannot stop expiry.
        let (mut first, mut last) = (NIL, NIL);
        let n = self
            .wheel
            .advance(&mut Slab(&mut self.entries), now, |ls, i| {
                if last == NIL {
                    first = i;
                } else {
                    *ls.links(last).1 = i;
                }
                last = i;
            });
        let mut i = first;
        while i != NIL {
            let next = std::mem::replace(&mut self.entries[i as usize].next, NIL);
            let h = hash(&self.entries[i as usize].key);
            self.index_remove(h, i);
            let (c, mark) = (self.counters(i).copied(), self.mark(i));
            let e = self.release(i);
            gone(&e, c, mark);
            i = next;
        }
        n
    }

    /// Every confirmed entry with its slab index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Entry<A>)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status & status::CONFIRMED != 0)
            .map(|(i, e)| (i as u32, e))
    }

    /// True when slab slot `i` holds a live entry (one in the index), as [`Shard::iter`]
    /// lists them.
    #[inline]
    pub fn is_live(&self, i: u32) -> bool {
        self.entries
            .get(i as usize)
            .is_some_and(|e| e.status & status::CONFIRMED != 0)
    }

    /// Prefetches what early drop reads first of the entry in slot `i` (its expiry and
    /// status).
    #[inline]
    pub fn prefetch_head(&self, i: u32) {
        if let Some(e) = self.entries.get(i as usize) {
            prefetch(std::ptr::addr_of!(e.expires).cast());
            prefetch(std::ptr::addr_of!(e.status).cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::proto;

    /// One second: the tests' times stay well clear of the half tick that expiry allows.
    const S: Nanos = ctrack_protocols::NANOS_PER_SEC;

    fn key(n: u32) -> Key<[u8; 4]> {
        Key {
            src: n.to_be_bytes(),
            dst: [10, 0, 0, 1],
            sport: (n % 60000) as u16,
            dport: 80,
            zone: 0,
            proto: proto::UDP,
        }
    }

    fn h(k: &Key<[u8; 4]>) -> u64 {
        k.symmetric_hash(&foldhash::fast::FixedState::with_seed(7))
    }

    #[test]
    fn expires_half_a_tick_before_its_deadline() {
        let mut e = Entry::<[u8; 4]>::new(Key::default());
        e.expires = 3_000_000_000;
        let half = ctrack_protocols::HALF_JIFFY;
        assert!(!e.expired(e.expires - half - 1));
        assert!(e.expired(e.expires - half));
        assert!(e.expired(e.expires));
        e.expires = 0;
        assert!(e.expired(0));
    }

    #[test]
    fn insert_find_remove_many() {
        let mut s = Shard::<[u8; 4]>::new();
        let mut ids = vec![];
        for n in 0..5000 {
            let k = key(n);
            let mut e = Entry::new(k);
            e.expires = 1_000_000_000_000;
            ids.push(s.insert(h(&k), e, 0, &h).unwrap());
        }
        assert_eq!(s.len(), 5000);
        for n in 0..5000u32 {
            let k = key(n);
            let inv = k.inverse().unwrap();
            assert_eq!(s.find(h(&k), &k, &inv).unwrap().dir, Dir::Original);
            assert_eq!(s.find(h(&k), &inv, &k).unwrap().dir, Dir::Reply);
        }
        for n in (0..5000u32).step_by(2) {
            let k = key(n);
            s.remove(h(&k), ids[n as usize]);
        }
        for n in 0..5000u32 {
            let k = key(n);
            let inv = k.inverse().unwrap();
            assert_eq!(s.find(h(&k), &k, &inv).is_some(), n % 2 == 1, "{n}");
        }
        assert_eq!(s.len(), 2500);
    }

    /// A shard holding `key(0..n)` under `hash`, never expiring, and their slab indexes.
    fn filled(n: u32, hash: &impl Fn(&Key<[u8; 4]>) -> u64) -> (Shard<[u8; 4]>, Vec<u32>) {
        let mut s = Shard::new();
        let ids = (0..n)
            .map(|n| {
                let mut e = Entry::new(key(n));
                e.expires = u64::MAX;
                s.insert(hash(&key(n)), e, 0, hash).unwrap()
            })
            .collect();
        (s, ids)
    }

    #[test]
    fn marks_are_kept_from_the_first_one_and_start_at_zero_in_a_reused_slot() {
        let (mut s, ids) = filled(100, &h);
        let bare = s.heap_memory();
        // Setting 0 before any mark keeps nothing.
        s.set_mark(ids[3], 0).unwrap();
        assert_eq!(s.heap_memory(), bare);
        s.set_mark(ids[3], 7).unwrap();
        assert!(s.heap_memory() > bare);
        assert_eq!((s.mark(ids[3]), s.mark(ids[4]), s.mark(NIL)), (7, 0, 0));
        // The slot of a removed entry is reused unmarked, and growth keeps the marks.
        s.remove(h(&key(3)), ids[3]);
        let mut e = Entry::new(key(1000));
        e.expires = u64::MAX;
        let i = s.insert(h(&key(1000)), e, 0, &h).unwrap();
        assert_eq!((i, s.mark(i)), (ids[3], 0));
        s.set_mark(ids[50], 9).unwrap();
        for n in 2000..4000 {
            let mut e = Entry::new(key(n));
            e.expires = u64::MAX;
            let i = s.insert(h(&key(n)), e, 0, &h).unwrap();
            assert_eq!(s.mark(i), 0);
        }
        assert_eq!(s.mark(ids[50]), 9);
        // The marks have room for the whole slab: what the shard holds grows with it.
        assert!(s.heap_memory() >= s.entries.capacity() * (size_of::<Entry<[u8; 4]>>() + 4));
    }

    #[test]
    fn policies_are_kept_from_the_first_one_and_start_at_zero_in_a_reused_slot() {
        let (mut s, ids) = filled(100, &h);
        let bare = s.heap_memory();
        // Nothing is kept until asked for; a policy set before that changes nothing.
        s.set_policy(ids[3], 2);
        assert_eq!((s.heap_memory(), s.policy_at(ids[3])), (bare, 0));
        s.keep_policies().unwrap();
        s.set_policy(ids[3], 2);
        assert!(s.heap_memory() > bare);
        assert_eq!(
            (s.policy_at(ids[3]), s.policy_at(ids[4]), s.policy_at(NIL)),
            (2, 0, 0)
        );
        // The slot of a removed entry is reused without a policy, and growth keeps them.
        s.remove(h(&key(3)), ids[3]);
        let mut e = Entry::new(key(1000));
        e.expires = u64::MAX;
        let i = s.insert(h(&key(1000)), e, 0, &h).unwrap();
        assert_eq!((i, s.policy_at(i)), (ids[3], 0));
        s.set_policy(ids[50], 9);
        for n in 2000..4000 {
            let mut e = Entry::new(key(n));
            e.expires = u64::MAX;
            let i = s.insert(h(&key(n)), e, 0, &h).unwrap();
            assert_eq!(s.policy_at(i), 0);
        }
        assert_eq!(s.policy_at(ids[50]), 9);
        assert!(s.heap_memory() >= s.entries.capacity() * (size_of::<Entry<[u8; 4]>>() + 1));
    }

    #[test]
    fn every_kept_array_has_room_for_every_slot_as_the_slab_grows() {
        // Insertion writes the per-slot arrays within room made beforehand (fallibly, with
        // the slab's): an array that had to grow during insertion would allocate infallibly,
        // and abort the process when memory runs out.
        let mut s: Shard<[u8; 4]> = Shard::with_extras(true, true);
        s.keep_marks().unwrap();
        s.keep_policies().unwrap();
        let room = |s: &Shard<[u8; 4]>| {
            [
                s.acct.as_ref().map(Vec::capacity),
                s.born.as_ref().map(Vec::capacity),
                s.marks.as_ref().map(Vec::capacity),
                s.policies.as_ref().map(Vec::capacity),
            ]
        };
        let mut grew = 0;
        for n in 0..3000 {
            let cap = s.entries.capacity();
            let mut e = Entry::new(key(n));
            e.expires = u64::MAX;
            s.insert(h(&key(n)), e, 0, &h).unwrap();
            grew += usize::from(s.entries.capacity() > cap);
            for r in room(&s) {
                assert!(r.unwrap() >= s.entries.capacity(), "{n}: {:?}", room(&s));
            }
        }
        // The slab grew many times, on the heap and in a mapping.
        assert!(grew > 10 && s.entries.is_mapped(), "{grew}");
    }

    #[test]
    fn slab_grows_by_a_quarter_then_a_sixteenth() {
        let size = std::mem::size_of::<Entry<[u8; 4]>>();
        // Sizes whose last growth was clearly on the heap (under 2,979 entries of 88 bytes)
        // or clearly in a mapping.
        for n in [1, 5, 17, 100, 1000, 5000, 20_000] {
            let (s, _) = filled(n, &h);
            let len = s.entries.len();
            assert_eq!(len, n as usize);
            // A slab in a mapping of its own (see `crate::store`) grows by a sixteenth, and
            // also has the rest of its last page.
            let page = 4096 / size + 1;
            assert_eq!(s.entries.is_mapped(), len * size >= crate::store::MAP_MIN);
            let step = if s.entries.is_mapped() {
                (len / 16).max(4)
            } else {
                (len / 4).max(4)
            };
            assert!(s.entries.capacity() <= len + step + page, "{n}");
        }
    }

    #[test]
    fn reserve_keeps_entries_and_leaves_nothing_to_grow() {
        let (mut s, _) = filled(300, &h);
        s.reserve(5000, &h).unwrap();
        let (base, mask, cap) = (s.bucket_base().0, s.mask, s.entries.capacity());
        assert!(cap >= 5000);
        // Entries already there are found through the rebuilt index.
        for n in 0..300 {
            let k = key(n);
            assert!(s.find(h(&k), &k, &k.inverse().unwrap()).is_some(), "{n}");
        }
        for n in 300..5000 {
            let mut e = Entry::new(key(n));
            e.expires = u64::MAX;
            s.insert(h(&key(n)), e, 0, &h).unwrap();
        }
        assert_eq!(
            (s.bucket_base().0, s.mask, s.entries.capacity()),
            (base, mask, cap)
        );
        // A smaller reservation changes nothing.
        s.reserve(10, &h).unwrap();
        assert_eq!(s.mask, mask);
        assert_eq!(s.len(), 5000);
    }

    /// A rebuild indexes every live entry, and nothing of the slots freed before it: removed
    /// keys stay unknown, and a new entry that reuses a freed slot is found under its own key.
    #[test]
    fn a_rebuild_indexes_the_live_entries_and_nothing_else() {
        for n in [5u32, 17, 100, 3000] {
            let (mut s, ids) = filled(n, &h);
            for m in (0..n).step_by(3) {
                s.remove(h(&key(m)), ids[m as usize]);
            }
            s.reserve(n as usize * 8, &h).unwrap();
            let live = |m: u32| !m.is_multiple_of(3);
            for m in 0..n {
                let k = key(m);
                assert_eq!(
                    s.find(h(&k), &k, &k.inverse().unwrap()).is_some(),
                    live(m),
                    "{n} {m}"
                );
            }
            assert_eq!(s.len(), (0..n).filter(|&m| live(m)).count());
            assert_eq!(indexed(&s), s.len(), "{n}");
            // Refill the freed slots, then rebuild again: all of them and only them are found.
            for m in (0..n).step_by(3) {
                let mut e = Entry::new(key(m + n));
                e.expires = u64::MAX;
                s.insert(h(&key(m + n)), e, 0, &h).unwrap();
            }
            s.reserve(n as usize * 32, &h).unwrap();
            for m in 0..2 * n {
                let k = key(m);
                let want = if m < n { live(m) } else { (m - n) % 3 == 0 };
                assert_eq!(
                    s.find(h(&k), &k, &k.inverse().unwrap()).is_some(),
                    want,
                    "{n} {m}"
                );
            }
            assert_eq!(indexed(&s), s.len(), "{n}");
        }
    }

    /// Index slots in use.
    fn indexed(s: &Shard<[u8; 4]>) -> usize {
        s.buckets
            .iter()
            .map(|b| (0..SLOTS).filter(|&i| b.tag(i) != 0).count())
            .sum()
    }

    #[test]
    fn hinted_lookup_agrees_with_plain_lookup_whatever_the_hint() {
        let (mut s, ids) = filled(300, &h);
        // Free every third slot, so that some hints point at vacant slots.
        for n in (0..300u32).step_by(3) {
            s.remove(h(&key(n)), ids[n as usize]);
        }
        let hints = [0, 1, 2, 150, 299, 300, 5000, NIL];
        for n in 0..310u32 {
            let k = key(n);
            let inv = k.inverse().unwrap();
            for (a, b) in [(&k, &inv), (&inv, &k)] {
                let want = s.find(h(a), a, b);
                assert_eq!(s.find_hinted(s.prefetch_entry(h(a)), h(a), a, b), want);
                for &hint in &hints {
                    assert_eq!(s.find_hinted(hint, h(a), a, b), want, "{n} {hint}");
                }
            }
        }
    }

    /// A reply to an ICMP echo is matched through the ICMP inverse (the type changes), not by
    /// swapping the "ports" as for TCP and UDP.
    #[test]
    fn refresh_at_finds_an_icmp_reply_by_its_type() {
        refresh_at_finds_an_icmp_reply_by_its_type_with::<false>();
        refresh_at_finds_an_icmp_reply_by_its_type_with::<true>();
    }

    fn refresh_at_finds_an_icmp_reply_by_its_type_with<const F: bool>() {
        let echo = Key {
            src: [10, 0, 0, 2],
            dst: [10, 0, 0, 1],
            sport: 77,     // identifier
            dport: 8 << 8, // echo request, code 0
            zone: 0,
            proto: proto::ICMP,
        };
        let mut s = Shard::new();
        let mut e = Entry::new(echo);
        e.expires = 1_000 * S;
        let i = s.insert(h(&echo), e, 0, &h).unwrap();
        let keep = |_: &mut ProtoState, _: &Ctx| {
            Some(Refresh {
                timeout: 30 * S,
                assured: false,
            })
        };
        let reply = echo.inverse().unwrap();
        assert_eq!(reply.dport >> 8, 0, "echo reply");
        assert_eq!(
            s.refresh_with::<F>(i, &reply, 10 * S, 40, keep)
                .map(|r| r.0),
            Some(Dir::Reply)
        );
        // The same addresses with the request's type back are not its reply.
        assert_eq!(
            s.refresh_with::<F>(i, &echo.swapped(), 10 * S, 40, keep),
            None
        );
    }

    #[test]
    fn refresh_at_applies_only_to_the_live_entry_of_the_packet() {
        refresh_at_applies_only_to_the_live_entry_of_the_packet_with::<false>();
        refresh_at_applies_only_to_the_live_entry_of_the_packet_with::<true>();
    }

    fn refresh_at_applies_only_to_the_live_entry_of_the_packet_with<const F: bool>() {
        let (mut s, ids) = filled(10, &h);
        let (k, other) = (key(3), key(4));
        let (inv, i) = (k.inverse().unwrap(), ids[3]);
        s.get_mut(i).proto = ProtoState::Udp(UdpState::default());
        s.get_mut(i).expires = 1_000 * S;
        let sec = |t| {
            move |_: &mut ProtoState, _: &Ctx| {
                Some(Refresh {
                    timeout: t * S,
                    assured: false,
                })
            }
        };
        // Not the packet's entry, no entry, or no answer from the tracker: nothing changes.
        for j in [ids[4], NIL, 10, 5000] {
            assert_eq!(s.refresh_with::<F>(j, &k, 10 * S, 40, sec(30)), None, "{j}");
        }
        assert_eq!(s.refresh_with::<F>(i, &other, 10 * S, 40, sec(30)), None);
        assert_eq!(s.refresh_with::<F>(i, &k, 10 * S, 40, |_, _| None), None);
        assert_eq!(
            (s.get(i).expires, s.get(i).status),
            (1_000 * S, status::CONFIRMED)
        );
        // Original, then reply: the new expiry, SEEN_REPLY from the reply on, the status the
        // tracker saw before each packet.
        let c = status::CONFIRMED;
        assert_eq!(
            s.refresh_with::<F>(i, &k, 10 * S, 40, sec(30)),
            Some((Dir::Original, c, c))
        );
        assert_eq!(s.get(i).expires, 40 * S);
        let seen = |_: &mut ProtoState, ctx: &Ctx| {
            assert!(ctx.confirmed && !ctx.seen_reply && ctx.dir == Dir::Reply);
            assert_eq!((ctx.now, ctx.expires), (20 * S, 40 * S));
            Some(Refresh {
                timeout: 100 * S,
                assured: true,
            })
        };
        let after = c | status::SEEN_REPLY | status::ASSURED;
        assert_eq!(
            s.refresh_with::<F>(i, &inv, 20 * S, 40, seen),
            Some((Dir::Reply, c, after))
        );
        assert_eq!((s.get(i).expires, s.get(i).status), (120 * S, after));
        // Expired at `now` (and from half a kernel tick before): left to the general path,
        // which removes it.
        for now in [120 * S - ctrack_protocols::HALF_JIFFY, 120 * S] {
            assert_eq!(s.refresh_with::<F>(i, &k, now, 40, sec(30)), None);
            assert_eq!(s.get(i).expires, 120 * S);
        }
        // Alive just before that.
        let at = 120 * S - ctrack_protocols::HALF_JIFFY - 1;
        assert!(s.refresh_with::<F>(i, &k, at, 40, sec(30)).is_some());
    }

    #[test]
    fn colliding_hashes_overflow_and_clean_up() {
        // Every key in the same bucket: overflow chains must stay correct.
        let same = |_: &Key<[u8; 4]>| 0xabcd_0000_0000_0000u64;
        let (mut s, ids) = filled(100, &same);
        for n in 0..100u32 {
            let k = key(n);
            assert!(s.find(same(&k), &k, &k.inverse().unwrap()).is_some());
        }
        for n in 0..100u32 {
            s.remove(0xabcd_0000_0000_0000, ids[n as usize]);
        }
        assert!(
            s.buckets
                .iter()
                .all(|b| b.overflow() == 0 && b.tags == [0; 3])
        );
    }

    #[test]
    fn prefetch_hint_finds_an_entry_that_overflowed_its_bucket() {
        // Ten keys fill bucket 0 under one tag; the eleventh, same bucket, other tag, lands
        // in bucket 1, where the hint must still find it.
        let hash = |k: &Key<[u8; 4]>| {
            let n = u32::from_be_bytes(k.src);
            if n < 10 { 1u64 << 60 } else { 2u64 << 60 }
        };
        let (s, ids) = filled(11, &hash);
        assert!(s.mask > 0);
        assert_eq!(s.prefetch_entry(hash(&key(10))), ids[10]);
        assert_eq!(s.prefetch_entry(3u64 << 60), NIL);
    }

    /// Checks every bucket's overflow count and passed filter against the entries: the count
    /// is the number of entries that overflowed past the bucket (from their home bucket to
    /// the one holding them), each of their tags has its bit in the filter, and a bucket no
    /// entry passes has an empty filter.
    fn check_passed(s: &Shard<[u8; 4]>, hash: &impl Fn(&Key<[u8; 4]>) -> u64) {
        let n = s.buckets.len();
        let mut count = vec![0u32; n];
        let mut bits = vec![0u64; n];
        for (p, bk) in s.buckets.iter().enumerate() {
            for slot in 0..SLOTS {
                if bk.tag(slot) == 0 {
                    continue;
                }
                let h = hash(&s.entries[bk.idx[slot] as usize].key);
                assert_eq!(bk.tag(slot), tag_of(h));
                let mut c = h as usize & s.mask;
                while c != p {
                    count[c] += 1;
                    bits[c] |= passed_bit(tag_of(h));
                    c = (c + 1) & s.mask;
                }
            }
        }
        for (c, bk) in s.buckets.iter().enumerate() {
            let filter = bk.tags[2] & 0xffff << 48;
            assert_eq!(u32::from(bk.overflow()), count[c], "bucket {c}");
            assert_eq!(
                filter & bits[c],
                bits[c],
                "bucket {c}: a passing tag's bit is missing"
            );
            if count[c] == 0 {
                assert_eq!(filter, 0, "bucket {c}: nothing passes it");
            }
        }
    }

    proptest::proptest! {
        /// Insertions and removals into a few crowded buckets (some tags sharing a filter
        /// bit, others not) keep every bucket's count and filter right, and every entry found
        /// by its lookup and by the prefetch hint, through the index's growth.
        #[test]
        fn passed_filters_follow_insertions_and_removals(
            ops in proptest::collection::vec((0u32..300, proptest::prelude::any::<bool>()), 1..400),
        ) {
            // Four home buckets while the index is small, eight tags over four filter bits.
            let hash = |k: &Key<[u8; 4]>| {
                let n = u32::from_be_bytes(k.src) as u64;
                (n % 8) << 60 | (n / 8 % 3) << 49 | (n % 4)
            };
            let mut s = Shard::<[u8; 4]>::new();
            let mut live = std::collections::HashMap::new();
            for (n, add) in ops {
                let k = key(n);
                match (add, live.get(&n).copied()) {
                    (true, None) => {
                        let mut e = Entry::new(k);
                        e.expires = u64::MAX;
                        live.insert(n, s.insert(hash(&k), e, 0, &hash).unwrap());
                    }
                    (false, Some(i)) => {
                        s.remove(hash(&k), i);
                        live.remove(&n);
                    }
                    _ => {}
                }
                check_passed(&s, &hash);
            }
            for n in 0..300u32 {
                let k = key(n);
                let found = s.find(hash(&k), &k, &k.inverse().unwrap()).map(|f| f.idx);
                proptest::prop_assert_eq!(found, live.get(&n).copied(), "key {}", n);
                if live.contains_key(&n) {
                    // The hint is the first slot under the tag; a same-tag entry before it
                    // may come first, but a hint is always a live entry under that tag.
                    let hint = s.hint_of(hash(&k));
                    proptest::prop_assert!(hint != NIL);
                    proptest::prop_assert_eq!(
                        tag_of(hash(&s.entries[hint as usize].key)),
                        tag_of(hash(&k))
                    );
                }
            }
        }
    }

    #[test]
    fn a_lookup_stops_at_a_bucket_its_tag_did_not_pass() {
        // Bucket 0 full under tag A, an eleventh entry under tag B in bucket 1: B's bit is in
        // bucket 0's filter, C's (another filter bit) is not.
        let (tag_a, tag_b, tag_c) = (1u64 << 60, 2u64 << 60, 3u64 << 60);
        let hash = |k: &Key<[u8; 4]>| {
            if u32::from_be_bytes(k.src) < 10 {
                tag_a
            } else {
                tag_b
            }
        };
        let (mut s, ids) = filled(11, &hash);
        check_passed(&s, &hash);
        assert!(s.buckets[0].passed(tag_of(tag_b)));
        assert!(!s.buckets[0].passed(tag_of(tag_c)));
        let k = key(10);
        let inv = k.inverse().unwrap();
        assert_eq!(s.find(tag_b, &k, &inv).unwrap().idx, ids[10]);
        assert_eq!(s.hint_of(tag_b), ids[10]);
        // Re-tag that entry C (an index state no insertion makes, to see where a walk stops):
        // a lookup under C misses bucket 0 and ends there, where walking on to bucket 1 as
        // long as bucket 0's overflow count is not zero would find it.
        let slot = (0..SLOTS).find(|&x| s.buckets[1].tag(x) != 0).unwrap();
        s.buckets[1].set_tag(slot, tag_of(tag_c));
        assert_eq!(s.find(tag_c, &k, &inv), None);
        assert_eq!(s.hint_of(tag_c), NIL);
    }

    /// The buckets a lookup of a tuple hashing to each bucket walks past its own, on average
    /// over the buckets, as far as the overflow counts send it.
    fn mean_walk(s: &Shard<[u8; 4]>) -> f64 {
        let n = s.buckets.len();
        let mut walked = 0;
        for b in 0..n {
            let mut c = b;
            while s.buckets[c].overflow() != 0 && walked < n * n {
                c = (c + 1) & s.mask;
                walked += 1;
            }
        }
        walked as f64 / n as f64
    }

    #[test]
    fn churn_near_the_load_limit_keeps_lookups_short() {
        // 3,900 entries in 512 buckets of ten (76% full), then 60,000 times one leaves and
        // another arrives: left as it is, such an index walks about ten buckets per lookup.
        let hs = foldhash::fast::FixedState::with_seed(7);
        let h = |k: &Key<[u8; 4]>| k.symmetric_hash(&hs);
        let key = |n: u64| Key {
            src: (n as u32).to_be_bytes(),
            dst: [10, 0, 0, (n >> 32) as u8],
            sport: (n % 60000) as u16,
            dport: 80,
            zone: 0,
            proto: proto::TCP,
        };
        let mut s = Shard::<[u8; 4]>::new();
        s.reserve(4352, &h).unwrap();
        assert_eq!(s.buckets.len(), 512);
        let mut live = Vec::new();
        let add = |s: &mut Shard<[u8; 4]>, n: u64| {
            let mut e = Entry::new(key(n));
            e.expires = u64::MAX;
            (n, s.insert(h(&key(n)), e, 0, &h).unwrap())
        };
        for n in 0..3900 {
            live.push(add(&mut s, n));
        }
        let fresh = mean_walk(&s);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..60_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (n, i) = live.swap_remove(x as usize % live.len());
            s.remove(h(&key(n)), i);
            live.push(add(&mut s, 1 << 20 | (x >> 24)));
            let open = s.buckets.iter().filter(|b| b.overflow() != 0).count();
            assert_eq!(s.open, open);
        }
        let churned = mean_walk(&s);
        assert!(churned < 2.0, "fresh {fresh:.2}, after churn {churned:.2}");
        assert_eq!(s.len(), 3900);
        for &(n, i) in &live {
            let k = key(n);
            let f = s.find(h(&k), &k, &k.inverse().unwrap()).unwrap();
            assert_eq!(f.idx, i);
        }
    }

    #[test]
    fn wheel_expires_entries() {
        let mut s = Shard::<[u8; 4]>::new();
        for n in 0..10 {
            let mut e = Entry::new(key(n));
            e.expires = (n as u64 + 1) * 1_000_000_000;
            s.insert(h(&key(n)), e, 0, &h).unwrap();
        }
        let mut seen = 0;
        s.expire(5_500_000_000, &h, |_, _, _| seen += 1);
        assert_eq!(seen, 5);
        assert_eq!(s.len(), 5);
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The packed-lane match agrees with comparing the tags one by one, whatever the
        /// overflow count and the passed filter (lanes 10 and 11) hold.
        #[test]
        fn matching_is_exact(
            tags in proptest::array::uniform10(any::<u16>()),
            probe in any::<u16>(),
            o in any::<u16>(),
            passed in proptest::collection::vec(any::<u16>(), 0..4),
        ) {
            let mut b = EMPTY_BUCKET;
            for (s, &t) in tags.iter().enumerate() {
                b.set_tag(s, t);
            }
            b.set_overflow(o);
            for &t in &passed {
                b.tags[2] |= passed_bit(t);
            }
            let want: u32 = (0..SLOTS).filter(|&s| tags[s] == probe).map(|s| 1 << s).sum();
            prop_assert_eq!(b.matching(probe), want);
            prop_assert_eq!(b.matching_swar(probe), want);
            prop_assert_eq!(b.overflow(), o);
            for &t in &passed {
                prop_assert!(b.passed(t));
            }
            for (s, &t) in tags.iter().enumerate() {
                prop_assert_eq!(b.tag(s), t);
            }
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn entries_stay_compact() {
        // One IPv4 entry, index and wheel links included, fits in 88 bytes; IPv6 adds 24
        // bytes of addresses. (The protocol state is 52 bytes with 4-byte alignment, so that
        // nothing pads it.)
        assert_eq!(std::mem::size_of::<ProtoState>(), 52);
        assert!(
            std::mem::size_of::<Entry<[u8; 4]>>() <= 88,
            "{}",
            std::mem::size_of::<Entry<[u8; 4]>>()
        );
        assert!(
            std::mem::size_of::<Entry<[u8; 16]>>() <= 112,
            "{}",
            std::mem::size_of::<Entry<[u8; 16]>>()
        );
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    #[test]
    fn an_entry_spans_at_most_three_cache_lines() {
        // `prefetch_lines` asks for the line of an entry's first byte, the next one and the
        // line of its last byte: all of them as long as an entry is at most 128 bytes. With
        // the allocator's alignment an 88-byte entry crosses two line boundaries one time in four.
        for size in [
            std::mem::size_of::<Entry<[u8; 4]>>(),
            std::mem::size_of::<Entry<[u8; 16]>>(),
        ] {
            assert!((65..=128).contains(&size), "{size}");
            for start in (0..64).step_by(8) {
                let lines = (start + size - 1) / 64 + 1;
                let fetched: std::collections::BTreeSet<usize> =
                    [start, start + 64, start + size - 1]
                        .iter()
                        .map(|b| b / 64)
                        .collect();
                assert_eq!(fetched.len(), lines, "size {size}, start {start}");
            }
        }
    }
}
