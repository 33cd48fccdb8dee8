//! The batch path: a burst of frames is parsed and hashed first (prefetching each one's index
//! bucket as soon as its hash is known), then tracked shard by shard, one lock per shard,
//! each shard locked and its entries prefetched a few shards before its turn. The common
//! frame (Ethernet with at most one VLAN tag, Linux cooked, BSD loopback or raw IP; TCP or UDP
//! right after a plain IPv4 or IPv6 header) is
//! parsed in one pass; everything else by the general parser, which decides the same for the
//! common frame (a property test holds the two together).
//!
//! Verdicts and table effects are exactly those of calling [`Conntrack::process`] on each
//! frame in order: packets of one connection always share a shard and keep their order within
//! it; packets whose effects reach beyond their own shard (ICMP errors, fragments) and every
//! protocol without a dedicated path are tracked one by one at their place in the burst, after
//! everything before them. With helpers configured, a packet to or from a helper's port is
//! tracked that way too (its helper may announce an expectation), and while any expectation is
//! pending (a new connection in any shard may take it) every packet is; otherwise the shards'
//! packets are tracked as without helpers, as none of them can touch an expectation. When a
//! burst could fill the table (so that which packet meets a full table would depend on the
//! order across shards), the burst is tracked strictly in order. So is every burst while the
//! table is small (see [`crate::Config::in_order_entries`]), frame by frame through
//! [`Conntrack::process`]: its entries are in cache, and sorting the packets by shard costs
//! more than fetching ahead saves. `process` keeps to the same rule with helpers configured:
//! a frame off the helpers' ports takes the one-pass path while no expectation is pending,
//! and while some are, if it refreshes its entry (see [`Lanes`]).

use std::cell::{Cell, RefCell};

use crate::conntrack::{Conntrack, Locked, Ready, ReadyL4, Table};
use crate::packet::{self, LinkType, PendingSum};
use crate::tuple::{Addr, Key, proto};
use crate::verdict::Verdict;
use ctrack_protocols::Nanos;

/// Frames planned and tracked together.
const CHUNK: usize = 256;

/// How many shard groups ahead of the one being tracked their shards are locked and their
/// entries looked up in the index.
const AHEAD: usize = 4;

/// The ring of held shard guards: a power of two, so that its index is a mask.
const HELD: usize = (AHEAD + 1).next_power_of_two();

/// How many packets ahead, in a sorted burst's order, their entries' lines are asked for (see
/// [`Conntrack::run_sorted`]). 12 against 6 gave 1.02 to 1.07 on a Zen 2 host over 100K and
/// 1M flows, 14 and 20 no more (`benches/README.md`).
const SORTED_NEAR: usize = 12;

/// Sorted bursts of at least this many packets ask for their entries `SORTED_NEAR` ahead;
/// shorter ones as each shard is locked.
const SORTED_ROLLING: usize = 64;

/// A packet ready for its shard: position in the chunk, shard, hash, checked headers.
struct Planned<'a, A> {
    shard: u32,
    pos: u32,
    h: u64,
    ready: Ready<'a, A>,
}

/// Long frames this far ahead in a burst have their payload prefetched.
const LOOKAHEAD: usize = 3;

/// How many frames ahead a burst tracked frame by frame because of the helpers (an
/// expectation pending, or an expected connection with a helper of its own) asks for the index
/// line of a frame's connection ...
const STRICT_FAR: usize = 16;
/// ... and then, once that line has arrived, for its entry.
const STRICT_NEAR: usize = 6;
/// The frames between: the hashes the far look leaves for the near one.
const STRICT_RING: usize = 16;

/// What the far look ahead of a frame found (see [`STRICT_FAR`]).
#[derive(Clone, Copy, Default)]
enum Peeked {
    #[default]
    None,
    V4(u64),
    V6(u64),
}
/// Frames at least this long start a prefetch (shorter ones are read in one or two lines).
const LONG_FRAME: usize = 256;

/// Asks for the cache lines of a frame ahead in the burst, so that its parse and checksum
/// find them arriving instead of missing in turn: every line beyond its first (which the
/// parse reads before anything else; a short frame has no other) when `whole`, else its first
/// two, the headers. A long frame breaks the hardware prefetcher's sequential stream through
/// the burst's frames, so its headers are worth asking for even when its payload is not read.
/// Three instructions a line: a range of offsets stepped by 64 and sliced to an address cost
/// seven, 160 for a full-size frame.
#[inline(always)]
fn prefetch_frame(f: &[u8], whole: bool) {
    let p = f.as_ptr();
    if !whole {
        crate::table::prefetch(p);
        crate::table::prefetch(p.wrapping_add(64));
        return;
    }
    let mut off = 64;
    while off < f.len() {
        crate::table::prefetch(p.wrapping_add(off));
        off += 64;
    }
}

/// [`prefetch_frame`] for frame `at` of `chunk` when it is long, and then the first line of
/// the frame after it: a long frame whose payload is not read (no checksum to check) leaves
/// a gap that the hardware prefetcher's stream through the frames does not cross.
#[inline(always)]
fn prefetch_ahead(chunk: &[&[u8]], at: usize, whole: bool) {
    if let Some(f) = long_at(chunk, at) {
        prefetch_long(chunk, at, f, whole);
    }
}

/// A packet the common lanes parsed (its tuple in zone 0), put in zone `zone`. Nothing to do
/// unless `ZONED` (the zone 0 copy of a path touches nothing) or for zone 0, which callers
/// that know no other pass as a constant.
#[inline(always)]
fn in_zone<A: Addr, const ZONED: bool>(mut ready: ReadyOf<'_, A>, zone: u16) -> ReadyOf<'_, A> {
    if ZONED
        && zone != 0
        && let Ok((r, _)) = &mut ready
    {
        r.key.zone = zone;
    }
    ready
}

/// Frame `at` of `chunk`, when there is one and it is long.
#[inline(always)]
fn long_at<'a>(chunk: &[&'a [u8]], at: usize) -> Option<&'a [u8]> {
    chunk.get(at).copied().filter(|f| f.len() >= LONG_FRAME)
}

/// Asks for the headers of a burst's first frames, which no frame before them in the burst
/// asked for [`LOOKAHEAD`] places ahead: the line of each one's first byte and, for a long
/// frame, the next. Behind a long frame the next frame's headers are a gap away that the
/// hardware prefetcher's stream does not cross, and one frame's tracking is longer than the
/// core's window, so without this the burst's first frames would miss one after another.
#[inline(always)]
fn prefetch_first(chunk: &[&[u8]]) {
    for f in chunk.iter().take(LOOKAHEAD) {
        let p = f.as_ptr();
        crate::table::prefetch(p);
        if f.len() >= LONG_FRAME {
            crate::table::prefetch(p.wrapping_add(64));
        }
    }
}

/// [`prefetch_ahead`] for `f`, frame `at` of `chunk`, known to be long.
#[inline(always)]
fn prefetch_long(chunk: &[&[u8]], at: usize, f: &[u8], whole: bool) {
    prefetch_frame(f, whole);
    if let Some(next) = chunk.get(at + 1) {
        crate::table::prefetch(next.as_ptr());
    }
}

/// How many bytes of long frames' lines a burst tracked in order, checksums to check, asks
/// for beyond the frame it is tracking (see [`Ahead`]). 1,536 and 3,072 timed the same on a
/// Zen 2 host's bulk capture (`benches/README.md`).
const AHEAD_BYTES: usize = 2048;

/// The lines of the long frames ahead of the frame being tracked (each line beyond the first,
/// then the first line of the frame after it, as [`prefetch_ahead`] asks), asked for
/// [`AHEAD_BYTES`] ahead: a few lines every frame, so that the memory system streams the
/// payloads without pause, where asking for a whole frame a fixed number of frames ahead asks
/// for nothing while acknowledgements go by and then for a full frame's 23 lines at once.
struct Ahead {
    /// The frame whose lines are asked for next, and the next line's offset in it.
    j: usize,
    off: usize,
    /// Bytes asked for in the frames after the tracked one (whole lines).
    bytes: usize,
}

impl Ahead {
    /// Asks (through `ask`) for the lines ahead of frame `i` of `chunk`, about to be tracked,
    /// the frames before it having been.
    #[inline(always)]
    fn ask(&mut self, chunk: &[&[u8]], i: usize, mut ask: impl FnMut(*const u8)) {
        if self.j > i {
            // Frame `i`'s lines, all asked for, are no longer ahead.
            if let Some(f) = chunk.get(i).filter(|f| f.len() >= LONG_FRAME) {
                self.bytes = self.bytes.saturating_sub(f.len().next_multiple_of(64) - 64);
            }
        } else {
            self.bytes = 0;
            if self.j < i {
                (self.j, self.off) = (i, 64);
            }
        }
        while self.bytes < AHEAD_BYTES {
            let Some(f) = chunk.get(self.j) else { return };
            let len = f.len();
            if len >= LONG_FRAME {
                let p = f.as_ptr();
                let mut off = self.off;
                // The tracked frame's own lines do not count against the budget.
                let stop = if self.j > i {
                    len.min(off + (AHEAD_BYTES - self.bytes))
                } else {
                    len
                };
                while off < stop {
                    ask(p.wrapping_add(off));
                    off += 64;
                }
                if self.j > i {
                    self.bytes += off - self.off;
                }
                self.off = off;
                if off < len {
                    return;
                }
                if let Some(next) = chunk.get(self.j + 1) {
                    ask(next.as_ptr());
                }
            }
            (self.j, self.off) = (self.j + 1, 64);
        }
    }
}

/// The index buffers of the shard sort, kept per thread so that a burst allocates none.
#[derive(Default)]
struct Scratch {
    at: Vec<u32>,
    order: Vec<Sorted>,
    busy: Vec<Group>,
}

/// A packet's place in the shard sort: its position in the queue, and the slab index of the
/// entry its lookup will probably find (see `Shard::hint_of`), read once its shard is locked.
#[derive(Clone, Copy, Default)]
struct Sorted {
    i: u32,
    hint: u32,
}

/// A shard with packets in the burst, and where they lie in the sorted order.
struct Group {
    shard: u32,
    from: u32,
    to: u32,
}

/// The planned-packet queues, kept (empty) per thread between bursts.
#[derive(Default)]
struct Queues {
    v4: Vec<Planned<'static, [u8; 4]>>,
    v6: Vec<Planned<'static, [u8; 16]>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    static QUEUES: Cell<Queues> = Cell::new(Queues::default());
}

/// An emptied vector re-typed for items of another lifetime. The items have the same layout,
/// so the standard library's in-place collection keeps the allocation: a queue outlives the
/// frames its items borrowed, and no burst allocates one anew.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// The IP packet of a frame with one VLAN tag (802.1Q or 802.1ad), a Linux cooked header
/// (v1 or v2) or a BSD loopback header, and the ethertype that announced it (for loopback,
/// the one its address family stands for), for the one-pass lanes to read as raw IP; `None`
/// for every other frame. The lanes take untagged Ethernet and raw IP frames directly; more
/// tags are left to the general parse ([`packet::ip_of_frame`], which strips any number).
/// Loopback frames took the general path until nDPI's `rdp.pcap` (BSD loopback, 2,010
/// packets) showed what that cost: 1,407 instructions a packet in `process_batch`.
#[inline(always)]
fn inner_ip(frame: &[u8], link: LinkType) -> Option<(&[u8], u16)> {
    let (off, at) = match link {
        LinkType::Ethernet => match frame.get(12..14)? {
            [0x81, 0x00] | [0x88, 0xa8] => (18, 16),
            _ => return None,
        },
        LinkType::LinuxSll => (16, 14),
        LinkType::LinuxSll2 => (20, 0),
        LinkType::Loopback => return Some((frame.get(4..)?, packet::loopback_ethertype(frame)?)),
        LinkType::Raw => return None,
    };
    let et = frame.get(at..at + 2)?;
    Some((frame.get(off..)?, u16::from_be_bytes([et[0], et[1]])))
}

/// True when a frame that [`inner_ip`] declined holds no IP packet for the general parse
/// ([`packet::ip_of_frame`]) either: an Ethernet frame too short for an EtherType or with one
/// that is neither IP nor a VLAN tag (ARP, LLDP, ...), or a loopback frame of another address
/// family. Such a frame is skipped at once, where the general path took another 50 to 100
/// instructions to find the same (AoE frames, `AoE_Linux.pcap`: 214 a frame before).
#[inline]
fn no_ip_behind(frame: &[u8], link: LinkType) -> bool {
    match link {
        LinkType::Ethernet => !matches!(frame.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])),
        LinkType::Loopback => true,
        LinkType::Raw | LinkType::LinuxSll | LinkType::LinuxSll2 => false,
    }
}

/// What [`Conntrack::ready_tcp`] and [`Conntrack::ready_udp`] return.
/// What [`Conntrack::process`]'s common lanes take on their own, by whether helpers are
/// configured and what the expectations hold (a const parameter, so each case is compiled
/// apart).
pub(crate) struct Lanes;

impl Lanes {
    /// No helpers configured: every common frame.
    pub(crate) const PLAIN: u8 = 0;
    /// Helpers configured, no expectation pending and no expected connection with a helper of
    /// its own: every common frame off the helpers' ports.
    pub(crate) const QUIET: u8 = 1;
    /// Helpers configured and expectations pending, but no expected connection with a helper
    /// of its own: a common frame off the helpers' ports that refreshes the entry it finds.
    /// Any other (a new connection, which may take an expectation; a header, length or
    /// checksum its tracker refuses, for which the kernel makes an entry that may take one)
    /// goes to the general path.
    pub(crate) const PENDING: u8 = 2;
    /// Helpers configured and an expected connection has a helper of its own (whether or not
    /// expectations are pending): what [`Lanes::PENDING`] takes, but only when the entry the
    /// packet's hash leads to has no helper, since a helper reads every packet of its
    /// connection, on whatever ports the expectation gave it.
    pub(crate) const HELPED: u8 = 3;

    /// Whether lanes `l` take only a refresh of an entry, leaving everything else to the
    /// general path.
    pub(crate) const fn refresh_only(l: u8) -> bool {
        l >= Self::PENDING
    }
}

type ReadyOf<'a, A> = Result<(Ready<'a, A>, Option<PendingSum<'a>>), Verdict>;
type Ready4<'a> = ReadyOf<'a, [u8; 4]>;
type Ready6<'a> = ReadyOf<'a, [u8; 16]>;

/// What the general parse makes of a frame (see [`Conntrack::general`]).
enum General<'a> {
    /// Not an IP frame.
    Skipped,
    /// Tracked on its own, at its place in the burst.
    Alone,
    /// An ordinary IPv4 TCP or UDP packet.
    V4(Ready4<'a>),
    /// An ordinary IPv6 TCP or UDP packet.
    V6(Ready6<'a>),
}

/// What the planning pass decided for a frame.
enum Plan {
    /// The verdict is already known (skipped or refused before any lookup).
    Done,
    /// Tracked on its own, at its place in the burst.
    Alone,
    /// Queued for its shard.
    Queued,
}

impl Conntrack {
    /// Tracks a burst of frames seen at `now`, writing one verdict per frame into `out`
    /// (cleared first). The result is exactly that of [`Conntrack::process`] on each frame in
    /// order; the work is arranged so that memory is fetched ahead and each shard is locked
    /// once per group of its packets.
    ///
    /// The planning buffers are kept per thread and taken fallibly: a burst allocates nothing
    /// once its thread has tracked one of that size, and when memory cannot be had the burst
    /// is tracked frame by frame instead (the same verdicts). `out` is the caller's: given the
    /// capacity for the burst up front, it is not grown.
    ///
    /// ```
    /// use ctrack::{Conntrack, Config, LinkType};
    /// let ct = Conntrack::new(Config::default());
    /// let frames: Vec<&[u8]> = vec![&[0u8; 14], &[0x45u8; 3]];
    /// let mut out = Vec::new();
    /// ct.process_batch(&frames, LinkType::Ethernet, 0, &mut out);
    /// assert_eq!(out.len(), 2);
    /// ```
    pub fn process_batch(
        &self,
        frames: &[&[u8]],
        link: LinkType,
        now: Nanos,
        out: &mut Vec<Verdict>,
    ) {
        self.batch_in::<false>(frames, link, 0, now, out);
        // A mark set after a batch is not one packet's (see `Conntrack::set_mark`).
        self.packet_begins();
    }

    /// [`Conntrack::process_batch`] in zone `zone` (not 0; see
    /// [`crate::InZone::process_batch`]).
    pub(crate) fn process_batch_zoned(
        &self,
        frames: &[&[u8]],
        link: LinkType,
        zone: u16,
        now: Nanos,
        out: &mut Vec<Verdict>,
    ) {
        self.batch_in::<true>(frames, link, zone, now, out);
        self.packet_begins();
    }

    /// The batch path in zone 0, or in `zone` when `ZONED`: each of its steps is compiled
    /// twice, so that zone 0's frames test no zone (the same instructions as before zones).
    #[inline(always)]
    fn batch_in<const ZONED: bool>(
        &self,
        frames: &[&[u8]],
        link: LinkType,
        zone: u16,
        now: Nanos,
        out: &mut Vec<Verdict>,
    ) {
        out.clear();
        if let [frame] = frames {
            // A burst of one: nothing to plan or to fetch ahead.
            out.push(self.process_one::<ZONED>(frame, link, zone, now));
            return;
        }
        out.resize(frames.len(), Verdict::INVALID);
        let max = self.max();
        if frames.len() <= CHUNK && self.keeps_order(frames.len(), max) {
            // One chunk, tracked in order: no queue to take out and put back.
            self.run_in_order::<ZONED>(frames, link, zone, out, now);
        } else {
            self.run_chunks::<ZONED>(frames, link, zone, out, now, max);
        }
    }

    /// One frame tracked alone: [`Conntrack::process`], or in `zone` when `ZONED`.
    #[inline(always)]
    fn process_one<const ZONED: bool>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
    ) -> Verdict {
        if ZONED {
            self.process_zoned(frame, link, zone, now)
        } else {
            self.process(frame, link, now)
        }
    }

    /// [`Conntrack::process_batch`] for a burst of two frames or more, `out` of its length, in
    /// chunks, each tracked in order or planned and sorted by shard; `max` is the table's
    /// limit. Out of line, so that the common burst tracked in order pays nothing for it.
    #[inline(never)]
    fn run_chunks<const ZONED: bool>(
        &self,
        frames: &[&[u8]],
        link: LinkType,
        zone: u16,
        out: &mut [Verdict],
        now: Nanos,
        max: usize,
    ) {
        let helpers = !self.cfg.helpers.is_empty();
        // The queues of the last burst on this thread, empty, re-typed for these frames.
        let kept = QUEUES.take();
        let mut v4: Vec<Planned<'_, [u8; 4]>> = recycle(kept.v4);
        let mut v6: Vec<Planned<'_, [u8; 16]>> = recycle(kept.v6);
        // Whether every queue and sort buffer has room for a chunk: asked before the first
        // chunk to be sorted, kept for the next bursts. Without the memory the burst is
        // tracked in order, frame by frame, which needs none (and decides the same).
        let mut room = None;
        for (chunk, verdicts) in frames.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            if self.keeps_order(chunk.len(), max)
                || !*room.get_or_insert_with(|| {
                    self.room_to_plan(CHUNK.min(frames.len()), &mut v4, &mut v6)
                })
            {
                self.run_in_order::<ZONED>(chunk, link, zone, verdicts, now);
                continue;
            }
            if helpers {
                self.burst::<true, ZONED>(chunk, link, zone, &mut v4, &mut v6, verdicts, now);
            } else {
                self.burst::<false, ZONED>(chunk, link, zone, &mut v4, &mut v6, verdicts, now);
            }
            self.run_queued(&self.v4, &mut v4, verdicts, now);
            self.run_queued(&self.v6, &mut v6, verdicts, now);
        }
        QUEUES.set(Queues {
            v4: recycle(v4),
            v6: recycle(v6),
        });
    }

    /// Whether a chunk of `n` frames is tracked in order, frame by frame, rather than sorted by
    /// shard, with `max` the table's limit (0: none). A small table is in cache: fetching ahead
    /// brings nothing, and sorting the packets by shard costs more than it saves. Near the
    /// limit, which packet meets a full table depends on the order of insertions across
    /// shards: keep it.
    #[inline(always)]
    fn keeps_order(&self, n: usize, max: usize) -> bool {
        let count = self.count();
        count + n <= self.cfg.in_order_entries || (max != 0 && count + n > max)
    }

    /// Makes room for `n` planned packets in both queues and in this thread's sort buffers
    /// (see [`Conntrack::run_sorted`]), without aborting: false when the memory cannot be had.
    fn room_to_plan(
        &self,
        n: usize,
        v4: &mut Vec<Planned<'_, [u8; 4]>>,
        v6: &mut Vec<Planned<'_, [u8; 16]>>,
    ) -> bool {
        let shards = self.v4.shards.len().max(self.v6.shards.len());
        // Each is empty here or cleared before use: room for `k` items is capacity `k`.
        v4.try_reserve_exact(n).is_ok()
            && v6.try_reserve_exact(n).is_ok()
            && SCRATCH.with(|cell| {
                let Ok(mut sc) = cell.try_borrow_mut() else {
                    return false;
                };
                let Scratch { at, order, busy } = &mut *sc;
                at.clear();
                order.clear();
                busy.clear();
                at.try_reserve_exact(shards).is_ok()
                    && busy.try_reserve_exact(shards).is_ok()
                    && order.try_reserve_exact(n).is_ok()
            })
    }

    /// Plans a chunk's frames, tracking on its own (after everything queued before it) each one
    /// the general path must take. With `HELPERS` (helpers configured), also each packet to or
    /// from a helper's port, and every packet while an expectation is pending. Leaves the
    /// queued packets for the caller to run.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn burst<'a, const HELPERS: bool, const ZONED: bool>(
        &self,
        chunk: &[&'a [u8]],
        link: LinkType,
        zone: u16,
        v4: &mut Vec<Planned<'a, [u8; 4]>>,
        v6: &mut Vec<Planned<'a, [u8; 16]>>,
        verdicts: &mut [Verdict],
        now: Nanos,
    ) {
        // The checksum setting as the chunk starts (see `Conntrack::process_with`).
        let cksum = self.checksum();
        let mut i = 0;
        if HELPERS && self.expecting() {
            i = self.run_strict::<ZONED>(chunk, 0, link, zone, verdicts, now, cksum);
        }
        while let Some(&frame) = chunk.get(i) {
            // A long frame a few places ahead is asked for now, so that its checksum finds it
            // arriving instead of missing line after line.
            prefetch_ahead(chunk, i + LOOKAHEAD, cksum);
            let plan =
                self.plan::<HELPERS, ZONED>(frame, link, zone, cksum, i, v4, v6, &mut verdicts[i]);
            let alone = match plan {
                Plan::Done | Plan::Queued => false,
                Plan::Alone => true,
            };
            i += 1;
            if alone {
                // Everything before it first, then it.
                self.run_queued(&self.v4, v4, verdicts, now);
                self.run_queued(&self.v6, v6, verdicts, now);
                verdicts[i - 1] = self.process_one::<ZONED>(frame, link, zone, now);
                // Only a packet tracked this way can have made an expectation.
                if HELPERS && self.expecting() {
                    i = self.run_strict::<ZONED>(chunk, i, link, zone, verdicts, now, cksum);
                }
            }
        }
    }

    /// Tracks the frames of `chunk` from `from` on frame by frame, in order, while an
    /// expectation is pending or an expected connection has a helper of its own (a new
    /// connection in any shard may take an expectation); returns where that ended (the chunk's
    /// length if it did not). Over a table the caches do not hold, each frame would wait for
    /// its index line and then its entry: the index lines of the frames [`STRICT_FAR`] ahead are
    /// asked for, and the entries of those [`STRICT_NEAR`] ahead (the first frames' index lines
    /// all at once). Out of line: the sorted path keeps its registers.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn run_strict<const ZONED: bool>(
        &self,
        chunk: &[&[u8]],
        from: usize,
        link: LinkType,
        zone: u16,
        verdicts: &mut [Verdict],
        now: Nanos,
        cksum: bool,
    ) -> usize {
        let mut ring = [Peeked::None; STRICT_RING];
        for (k, f) in chunk.iter().enumerate().skip(from).take(STRICT_FAR) {
            ring[k % STRICT_RING] = self.prefetch_bucket_of::<ZONED>(f, link, zone);
        }
        for (i, frame) in chunk.iter().enumerate().skip(from) {
            prefetch_ahead(chunk, i + LOOKAHEAD, cksum);
            if let Some(ahead) = chunk.get(i + STRICT_FAR) {
                ring[(i + STRICT_FAR) % STRICT_RING] =
                    self.prefetch_bucket_of::<ZONED>(ahead, link, zone);
            }
            if i + STRICT_NEAR < chunk.len() {
                match std::mem::take(&mut ring[(i + STRICT_NEAR) % STRICT_RING]) {
                    Peeked::V4(h) => self.prefetch_entry_of(&self.v4, h),
                    Peeked::V6(h) => self.prefetch_entry_of(&self.v6, h),
                    Peeked::None => {}
                }
            }
            verdicts[i] = self.process_one::<ZONED>(frame, link, zone, now);
            if !self.expecting() {
                return i + 1;
            }
        }
        chunk.len()
    }

    /// Asks for the index line of the connection of `frame`, tracked a few frames from now, when
    /// it looks like the common lanes' kind: a plain IPv4 or IPv6 header behind untagged
    /// Ethernet or raw, then TCP or UDP. A look at the headers only (no checksum, no length
    /// beyond them): a wrong guess costs one useless prefetch. For bursts tracked frame by
    /// frame over a table the caches do not hold (see [`Conntrack::run_strict`]).
    #[inline(always)]
    fn prefetch_bucket_of<const ZONED: bool>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
    ) -> Peeked {
        let zone = if ZONED { zone } else { 0 };
        let ip = match link {
            LinkType::Ethernet => frame.get(14..).unwrap_or_default(),
            LinkType::Raw => frame,
            _ => return Peeked::None,
        };
        if let Some(h) = ip.first_chunk::<24>().filter(|h| h[0] == 0x45) {
            self.bucket_ahead(&self.v4, h[9], &h[12..20], &h[20..24], zone)
                .map_or(Peeked::None, Peeked::V4)
        } else if let Some(h) = ip.first_chunk::<44>().filter(|h| h[0] >> 4 == 6) {
            self.bucket_ahead(&self.v6, h[6], &h[8..40], &h[40..44], zone)
                .map_or(Peeked::None, Peeked::V6)
        } else {
            Peeked::None
        }
    }

    /// For [`Conntrack::prefetch_bucket_of`]: the hash of a TCP or UDP packet of protocol
    /// `proto` between the addresses `addrs` (source then destination, as its header holds
    /// them) and the ports `ports` (the same), in `zone`, whose index line in `t` it asks for.
    #[inline(always)]
    fn bucket_ahead<A: Addr>(
        &self,
        t: &Table<A>,
        proto: u8,
        addrs: &[u8],
        ports: &[u8],
        zone: u16,
    ) -> Option<u64> {
        if proto != proto::TCP && proto != proto::UDP {
            return None;
        }
        let (src, dst) = addrs.split_at(addrs.len() / 2);
        let key = Key::<A> {
            src: A::from_bytes(src),
            dst: A::from_bytes(dst),
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            zone,
            proto,
        };
        let h = self.hash(&key);
        t.shards[t.shard_of(h)].prefetch_bucket(h);
        Some(h)
    }

    /// Asks for the entry a frame's hash `h` leads to in its shard of `t` (whose index line
    /// was asked for earlier): a moment's lock, to read the index.
    #[inline(always)]
    fn prefetch_entry_of<A: Addr>(&self, t: &Table<A>, h: u64) {
        t.shards[t.shard_of(h)].lock().shard.prefetch_entry(h);
    }

    /// Parses one frame and queues it for its shard when it is an ordinary TCP or UDP packet.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plan<'a, const HELPERS: bool, const ZONED: bool>(
        &self,
        frame: &'a [u8],
        link: LinkType,
        zone: u16,
        cksum: bool,
        pos: usize,
        v4: &mut Vec<Planned<'a, [u8; 4]>>,
        v6: &mut Vec<Planned<'a, [u8; 16]>>,
        out: &mut Verdict,
    ) -> Plan {
        let zone = if ZONED { zone } else { 0 };
        if let Some(ready) = self.common_v4(frame, link, cksum) {
            let ready = in_zone::<_, ZONED>(ready, zone);
            return self.enqueue::<_, HELPERS>(&self.v4, ready, pos, v4, out);
        }
        if let Some(ready) = self.common_v6(frame, link, cksum) {
            let ready = in_zone::<_, ZONED>(ready, zone);
            return self.enqueue::<_, HELPERS>(&self.v6, ready, pos, v6, out);
        }
        // Behind one VLAN tag, a cooked or a loopback header: the same lanes, on the IP packet.
        match inner_ip(frame, link) {
            Some((ip, 0x0800)) => {
                if let Some(ready) = self.common_v4(ip, LinkType::Raw, cksum) {
                    let ready = in_zone::<_, ZONED>(ready, zone);
                    return self.enqueue::<_, HELPERS>(&self.v4, ready, pos, v4, out);
                }
            }
            Some((ip, 0x86dd)) => {
                if let Some(ready) = self.common_v6(ip, LinkType::Raw, cksum) {
                    let ready = in_zone::<_, ZONED>(ready, zone);
                    return self.enqueue::<_, HELPERS>(&self.v6, ready, pos, v6, out);
                }
            }
            _ => {}
        }
        match self.general::<ZONED>(frame, link, zone) {
            General::Skipped => {
                *out = Verdict::SKIPPED;
                Plan::Done
            }
            General::Alone => Plan::Alone,
            General::V4(ready) => self.enqueue::<_, HELPERS>(&self.v4, ready, pos, v4, out),
            General::V6(ready) => self.enqueue::<_, HELPERS>(&self.v6, ready, pos, v6, out),
        }
    }

    /// True when an expectation is pending in either family (a new connection in any shard
    /// may take it) or an expected connection has a helper of its own (whose packets need not
    /// touch a helper's port): packets must then be tracked in order, each by the full path.
    fn expecting(&self) -> bool {
        !self.quiet()
    }

    /// No expectation is pending in either family and no expected connection has a helper of
    /// its own (see [`crate::expect::ExpectCell::is_quiet`]): with helpers configured, a packet
    /// off the helpers' ports may then take the common lanes.
    #[inline]
    pub(crate) fn quiet(&self) -> bool {
        self.v4.expect.is_quiet() && self.v6.expect.is_quiet()
    }

    /// Whether a packet of `proto` between ports `sport` and `dport` may belong to a
    /// connection a helper reads: either port is one a helper is assigned to.
    #[inline]
    fn helped(&self, proto: u8, sport: u16, dport: u16) -> bool {
        let rules = &self.cfg.helpers;
        let assigned =
            |port| self.helper_port(port) && ctrack_helpers::assigned(rules, proto, port).is_some();
        assigned(dport) || assigned(sport)
    }

    /// The general parse of a frame for the batch: not IP, tracked on its own, or an ordinary
    /// TCP or UDP packet of either family with [`Conntrack::ready_tcp`]'s or
    /// [`Conntrack::ready_udp`]'s answer.
    #[inline(always)]
    fn general<'a, const ZONED: bool>(
        &self,
        frame: &'a [u8],
        link: LinkType,
        zone: u16,
    ) -> General<'a> {
        let Some(ip) = packet::ip_of_frame(frame, link) else {
            return General::Skipped;
        };
        // One path per family from here, so that neither parse result meets the other's in
        // memory.
        if ip[0] >> 4 == 4 {
            match packet::parse_v4(ip) {
                // IPv4 options or a size the router may answer or fragment: the ordinary path.
                Ok(p) if p.l4_off > 20 || p.data.len() > crate::host::ROUTER_MTU => General::Alone,
                Ok(mut p) => {
                    if ZONED {
                        p.zone = zone;
                    }
                    self.ready_of(&p).map_or(General::Alone, General::V4)
                }
                // Malformed IP headers take the ordinary path (which counts them).
                Err(_) => General::Alone,
            }
        } else {
            match packet::parse_v6(ip) {
                // A link-local address: the router's ICMP rate limit weighs the packet.
                Ok(p) if p.src()[0] == 0xfe || p.dst()[0] == 0xfe => General::Alone,
                Ok(mut p) => {
                    if ZONED {
                        p.zone = zone;
                    }
                    self.ready_of(&p).map_or(General::Alone, General::V6)
                }
                Err(_) => General::Alone,
            }
        }
    }

    /// A parsed packet's headers checked for its shard when it is an ordinary TCP or UDP
    /// packet; `None` for one tracked on its own (fragments, other protocols).
    #[inline(always)]
    fn ready_of<'a, A: Addr>(&self, p: &packet::IpPacket<'a>) -> Option<ReadyOf<'a, A>> {
        if p.frag.is_some() {
            return None;
        }
        match p.proto {
            proto::TCP => Some(self.ready_tcp::<A>(p)),
            proto::UDP => Some(self.ready_udp::<A>(p)),
            _ => None,
        }
    }

    /// The common IPv4 packet in one pass: untagged Ethernet or raw IP, a 20-byte header with
    /// a right checksum, no fragment, a size the router forwards as it is, and a TCP or UDP
    /// header [`Conntrack::ready_tcp`] or [`Conntrack::ready_udp`] accepts. Returns what those
    /// return for it; `None` (nothing decided) for every other frame, which
    /// [`Conntrack::plan`]'s general path then parses.
    #[inline(always)]
    fn common_v4<'a>(&self, frame: &'a [u8], link: LinkType, cksum: bool) -> Option<Ready4<'a>> {
        let ip = match link {
            LinkType::Ethernet if frame.get(12..14) == Some(&[0x08, 0x00][..]) => &frame[14..],
            LinkType::Raw => frame,
            _ => return None,
        };
        // The IPv4 header and (at least) a UDP header's worth of bytes after it.
        let h: &[u8; 28] = ip.first_chunk()?;
        let tot = u16::from_be_bytes([h[2], h[3]]) as usize;
        // Version 4 with no options; not a fragment (offset and more-fragments clear).
        if h[0] != 0x45
            || tot < 28
            || tot > ip.len()
            || tot > crate::host::ROUTER_MTU
            || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0
        {
            return None;
        }
        let (head, _) = h.split_first_chunk::<20>()?;
        if !packet::csum_ok(packet::csum_add(0, head)) {
            return None;
        }
        let src = head[12..16].try_into().ok()?;
        let dst = head[16..20].try_into().ok()?;
        // Every host model routes a packet of this size without IPv4 options.
        self.common_l4(h[9], &head[12..20], src, dst, ip.get(20..tot)?, tot, cksum)
    }

    /// [`Conntrack::common_v4`] for IPv6: untagged Ethernet or raw IP, the layer-4 header right
    /// after the fixed one, addresses `parse_v6` takes without a second look, and a size the
    /// router forwards as it is.
    #[inline(always)]
    fn common_v6<'a>(&self, frame: &'a [u8], link: LinkType, cksum: bool) -> Option<Ready6<'a>> {
        let ip = match link {
            LinkType::Ethernet if frame.get(12..14) == Some(&[0x86, 0xdd][..]) => &frame[14..],
            LinkType::Raw if frame.first().is_some_and(|b| b >> 4 == 6) => frame,
            _ => return None,
        };
        let fixed: &[u8; 40] = ip.first_chunk()?;
        let tot = 40 + u16::from_be_bytes([fixed[4], fixed[5]]) as usize;
        // What `parse_v6` leaves to its general walk or refuses (the next header is checked
        // below: TCP or UDP only), and link-local addresses (fe80::/10, under fe00::/8), which
        // the router's ICMP rate limit weighs (see `Conntrack::track_limited`).
        if fixed[0] >> 4 != 6
            || tot > ip.len()
            || tot > crate::host::ROUTER_MTU
            || !packet::v6_addrs_plain(fixed)
            || fixed[8] == 0xfe
            || fixed[24] == 0xfe
        {
            return None;
        }
        let src = fixed[8..24].try_into().ok()?;
        let dst = fixed[24..40].try_into().ok()?;
        self.common_l4(
            fixed[6],
            &fixed[8..40],
            src,
            dst,
            ip.get(40..tot)?,
            tot,
            cksum,
        )
    }

    /// The layer-4 half of the one-pass lanes: `l4` is the IP payload of a `tot`-byte packet
    /// with protocol `nh`, `pseudo` its addresses as the pseudo-header sums them.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn common_l4<'a, A: Addr>(
        &self,
        nh: u8,
        pseudo: &[u8],
        src: A,
        dst: A,
        l4: &'a [u8],
        tot: usize,
        cksum: bool,
    ) -> Option<ReadyOf<'a, A>> {
        let (l4r, sum) = match nh {
            proto::TCP => {
                let seg = ctrack_protocols::tcp::parse(l4).ok()?;
                let sum = cksum.then(|| PendingSum::pseudo(pseudo, proto::TCP, l4.len(), l4));
                (ReadyL4::Tcp(seg), sum)
            }
            proto::UDP => {
                let scope = ctrack_protocols::udp::check_udp(l4).ok()?;
                let sum = match scope {
                    ctrack_protocols::udp::ChecksumScope::Bytes(n) if cksum => Some(
                        PendingSum::pseudo(pseudo, proto::UDP, l4.len(), l4.get(..n)?),
                    ),
                    _ => None,
                };
                (ReadyL4::Udp, sum)
            }
            _ => return None,
        };
        let ready = Ready {
            key: Key {
                src,
                dst,
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
                zone: 0,
                proto: nh,
            },
            len: tot as u32,
            // Both lanes take only what every host model routes.
            route: crate::host::Route::Passes,
            l4: l4r,
        };
        Some(Ok((ready, sum)))
    }

    /// Queues a packet whose headers passed their checks for its shard, once its checksum
    /// (if any) is right; otherwise writes its verdict.
    #[inline(always)]
    fn enqueue<'a, A: Addr, const HELPERS: bool>(
        &self,
        t: &Table<A>,
        ready: Result<(Ready<'a, A>, Option<PendingSum<'a>>), Verdict>,
        pos: usize,
        q: &mut Vec<Planned<'a, A>>,
        out: &mut Verdict,
    ) -> Plan {
        match ready {
            Ok((ready, _))
                if HELPERS && self.helped(ready.key.proto, ready.key.sport, ready.key.dport) =>
            {
                // To or from a helper's port: the connection may be the helper's, which reads
                // its packets and may announce expectations.
                Plan::Alone
            }
            Ok((ready, sum)) => {
                let h = self.hash(ready.key());
                let shard = t.shard_of(h);
                t.shards[shard].prefetch_bucket(h);
                q.push(Planned {
                    shard: shard as u32,
                    pos: pos as u32,
                    h,
                    ready,
                });
                // The checksum last, once the parsed headers are stored: they need no
                // registers across its call.
                if self.sum_ok(sum) {
                    Plan::Queued
                } else {
                    q.pop();
                    *out = self.invalid();
                    Plan::Done
                }
            }
            Err(v) => {
                *out = v;
                Plan::Done
            }
        }
    }

    /// Tracks a chunk strictly in order, frame by frame (a SYN flood into a full table spends
    /// its life here), the headers of a long frame a few places ahead asked for meanwhile, and
    /// with checksums to check its payload too (see [`Conntrack::run_in_order_long`]).
    /// Out of line, so that the burst path keeps its registers.
    #[inline(never)]
    fn run_in_order<const ZONED: bool>(
        &self,
        chunk: &[&[u8]],
        link: LinkType,
        zone: u16,
        out: &mut [Verdict],
        now: Nanos,
    ) {
        // The checksum setting as the chunk starts (see `Conntrack::process_with`).
        let cksum = self.checksum();
        let helpers = !self.cfg.helpers.is_empty();
        if !cksum {
            // (With checksums, a long frame near the start hands the chunk to
            // `run_in_order_long`, whose look ahead asks for these lines itself.)
            prefetch_first(chunk);
        }
        for (i, (v, frame)) in out.iter_mut().zip(chunk).enumerate() {
            if let Some(f) = long_at(chunk, i + LOOKAHEAD) {
                if cksum {
                    // Payloads to sum from here on: asked for a steady amount ahead.
                    return self.run_in_order_long::<ZONED>(
                        &chunk[i..],
                        link,
                        zone,
                        &mut out[i..],
                        now,
                    );
                }
                prefetch_long(chunk, i + LOOKAHEAD, f, false);
            }
            *v = if helpers {
                self.process_helped::<ZONED>(frame, link, zone, now, cksum)
            } else {
                self.process_plain::<ZONED>(frame, link, zone, now, cksum)
            };
        }
    }

    /// [`Conntrack::run_in_order`] for the rest of a chunk, checksums to check, once a long
    /// frame is near: the payloads ahead are asked for a steady amount ahead (see [`Ahead`]).
    #[inline(never)]
    fn run_in_order_long<const ZONED: bool>(
        &self,
        chunk: &[&[u8]],
        link: LinkType,
        zone: u16,
        out: &mut [Verdict],
        now: Nanos,
    ) {
        let helpers = !self.cfg.helpers.is_empty();
        let mut ahead = Ahead {
            j: 0,
            off: 64,
            bytes: 0,
        };
        for (i, (v, frame)) in out.iter_mut().zip(chunk).enumerate() {
            ahead.ask(chunk, i, crate::table::prefetch);
            *v = if helpers {
                self.process_helped::<ZONED>(frame, link, zone, now, true)
            } else {
                self.process_plain::<ZONED>(frame, link, zone, now, true)
            };
        }
    }

    /// [`Conntrack::process`] for the common frame (see [`Conntrack::common_v4`]): tracked at
    /// once as a burst of one, without the burst's planning. `None` for every other frame,
    /// which the general path then takes; with helpers configured (`L` other than
    /// [`Lanes::PLAIN`]), also for a frame to or from a helper's port, and those
    /// [`Lanes::PENDING`] leaves to it.
    #[inline(always)]
    pub(crate) fn process_common<const L: u8>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Option<Verdict> {
        if let Some(ready) = self.common_v4(frame, link, cksum) {
            let ready = in_zone::<_, true>(ready, zone);
            if L != Lanes::PLAIN && self.helps::<_, L>(&ready) {
                return None;
            }
            self.track_common::<_, L>(&self.v4, ready, now)
        } else if let Some(ready) = self.common_v6(frame, link, cksum) {
            let ready = in_zone::<_, true>(ready, zone);
            if L != Lanes::PLAIN && self.helps::<_, L>(&ready) {
                return None;
            }
            self.track_common::<_, L>(&self.v6, ready, now)
        } else {
            self.process_inner::<L>(frame, link, zone, now, cksum)
        }
    }

    /// Whether a packet the common lanes parsed goes to or comes from a helper's port (see
    /// [`Conntrack::helped`]). One they decided already (`Err`, a header its tracker refuses)
    /// is not the helpers' business, unless an expectation is pending: the kernel makes an
    /// entry for such a packet that may take it (see `Conntrack::spend_expectation`).
    #[inline(always)]
    fn helps<A: Addr, const L: u8>(&self, ready: &ReadyOf<'_, A>) -> bool {
        match ready {
            Ok((r, _)) => {
                let k = r.key();
                self.helped(k.proto, k.sport, k.dport)
            }
            Err(_) => Lanes::refresh_only(L),
        }
    }

    /// [`Conntrack::process_common`] behind one VLAN tag, a cooked or a loopback header (see
    /// [`inner_ip`]), as [`Conntrack::plan`] takes such frames. Out of line: the untagged
    /// frame's path keeps its registers.
    #[inline(never)]
    fn process_inner<const L: u8>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Option<Verdict> {
        let Some(inner) = inner_ip(frame, link) else {
            return no_ip_behind(frame, link).then_some(Verdict::SKIPPED);
        };
        match inner {
            (ip, 0x0800) => {
                let ready = in_zone::<_, true>(self.common_v4(ip, LinkType::Raw, cksum)?, zone);
                if L != Lanes::PLAIN && self.helps::<_, L>(&ready) {
                    return None;
                }
                self.track_common::<_, L>(&self.v4, ready, now)
            }
            (ip, 0x86dd) => {
                let ready = in_zone::<_, true>(self.common_v6(ip, LinkType::Raw, cksum)?, zone);
                if L != Lanes::PLAIN && self.helps::<_, L>(&ready) {
                    return None;
                }
                self.track_common::<_, L>(&self.v6, ready, now)
            }
            // Another tag behind the first: the general parse strips it.
            (_, packet::ETH_P_8021Q | packet::ETH_P_8021AD) => None,
            // Behind a tag or a cooked header, anything else is no IP packet.
            _ => Some(Verdict::SKIPPED),
        }
    }

    /// Tracks one packet of the common lanes in its shard: what [`Conntrack::enqueue`] and
    /// [`Conntrack::run_sorted`] do for a burst of one. `None` only with [`Lanes::PENDING`]
    /// or [`Lanes::HELPED`], for a packet they leave to the general path.
    #[inline(always)]
    fn track_common<A: Addr, const L: u8>(
        &self,
        t: &Table<A>,
        ready: ReadyOf<'_, A>,
        now: Nanos,
    ) -> Option<Verdict> {
        // Borrowed where it lies: moving the packet's facts out of the `Result` copied them
        // (13 instructions per IPv6 packet).
        let (ready, sum) = match &ready {
            Ok((r, s)) => (r, *s),
            Err(v) => return Some(*v),
        };
        if !self.sum_ok(sum) {
            // A bad checksum may spend a pending expectation (see `Conntrack::helps`).
            return if Lanes::refresh_only(L) {
                None
            } else {
                Some(self.invalid())
            };
        }
        let h = self.hash(ready.key());
        let slot = &t.shards[t.shard_of(h)];
        let mut g = slot.lock();
        let clock = self.advance(t, &mut g, now);
        g.credit_want = 0;
        let hint = g.shard.prefetch_entry(h);
        if L == Lanes::HELPED && g.shard.helper_at(hint) != 0 {
            // The helper's to read: the general path runs it.
            self.settle(&mut g);
            return None;
        }
        let v = match self.run_refresh::<A, true>(&mut g, ready, hint, clock) {
            Some(v) => v,
            None if Lanes::refresh_only(L) => {
                // Not a refresh: it may open a connection that takes an expectation.
                self.settle(&mut g);
                return None;
            }
            None => self.run_ready_locked(t, slot, &mut g, ready, h, hint, now),
        };
        self.settle(&mut g);
        Some(v)
    }

    /// Tracks the queued packets of one family, shard by shard, in order within each shard.
    fn run_queued<A: Addr>(
        &self,
        t: &Table<A>,
        q: &mut Vec<Planned<'_, A>>,
        out: &mut [Verdict],
        now: Nanos,
    ) {
        if q.is_empty() {
            return;
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut sc) => self.run_sorted(t, q, out, now, &mut sc),
            // The buffers are in use (a burst whose room was asked for while they were free,
            // run from inside another): each packet on its own, which needs no buffers.
            Err(_) => self.run_each(t, q, out, now),
        });
        q.clear();
    }

    /// [`Conntrack::run_sorted`] without its buffers: the queued packets one at a time, in
    /// burst order (so each shard's packets keep theirs), each shard locked per packet.
    fn run_each<A: Addr>(
        &self,
        t: &Table<A>,
        q: &[Planned<'_, A>],
        out: &mut [Verdict],
        now: Nanos,
    ) {
        for p in q {
            let slot = &t.shards[p.shard as usize];
            let mut g = slot.lock();
            let clock = self.advance(t, &mut g, now);
            g.credit_want = 0;
            let hint = g.shard.prefetch_entry(p.h);
            out[p.pos as usize] = match self.run_refresh::<A, false>(&mut g, &p.ready, hint, clock)
            {
                Some(v) => v,
                None => self.run_ready_locked(t, slot, &mut g, &p.ready, p.h, hint, now),
            };
            self.settle(&mut g);
        }
    }

    /// [`Conntrack::run_queued`] with its index buffers.
    fn run_sorted<A: Addr>(
        &self,
        t: &Table<A>,
        q: &mut [Planned<'_, A>],
        out: &mut [Verdict],
        now: Nanos,
        sc: &mut Scratch,
    ) {
        // Counting sort of positions in `q` by shard: `q` is already in burst order, so each
        // shard's packets keep their order. `at[s]` counts shard `s`'s packets, then holds
        // where its group starts in `order`; `busy` lists the shards with packets, in
        // ascending order, with their groups' bounds.
        let shards = t.shards.len();
        let Scratch { at, order, busy } = sc;
        at.clear();
        at.resize(shards, 0);
        for p in q.iter() {
            at[p.shard as usize] += 1;
        }
        busy.clear();
        let mut sum = 0;
        for (s, n) in at.iter_mut().enumerate() {
            let c = *n;
            if c != 0 {
                busy.push(Group {
                    shard: s as u32,
                    from: sum,
                    to: sum + c,
                });
            }
            *n = sum;
            sum += c;
        }
        order.clear();
        order.resize(q.len(), Sorted::default());
        for (i, p) in q.iter().enumerate() {
            let f = &mut at[p.shard as usize];
            order[*f as usize].i = i as u32;
            *f += 1;
        }
        // The shards with packets, in order. Each shard is locked once, `AHEAD` groups before
        // its packets are tracked, and the index is read then for the slab slots of their
        // entries (the read needs the lock). Each entry's lines are asked for only
        // `SORTED_NEAR` packets ahead, in the sorted order, under its group's guard: asked for
        // a whole group at a time, they came in worse time over large tables (est 1M: 9.6
        // against 13.8 Mpps in bursts of 256). A short burst (under `SORTED_ROLLING`) still
        // asks for a group's entries as it locks the shard: its groups are a few packets each,
        // and one entry at a time came too late for them (UDP over 100K flows in bursts of 32,
        // 10% fewer packets a second). Up to `AHEAD + 1` shards are held at once, always taken in
        // ascending order and never while holding a higher one, so two bursts on two threads
        // cannot deadlock.
        let (order, busy) = (&mut order[..], &*busy);
        let rolling = order.len() >= SORTED_ROLLING;
        let take = |order: &mut [Sorted], g: &Group| {
            let guard = t.shards[g.shard as usize].lock();
            for o in order
                .get_mut(g.from as usize..g.to as usize)
                .unwrap_or_default()
            {
                if let Some(p) = q.get(o.i as usize) {
                    o.hint = guard.shard.hint_of(p.h);
                    if !rolling {
                        guard.shard.prefetch_at(o.hint);
                    }
                }
            }
            guard
        };
        // Guards by position in `busy`, modulo the window (a power of two above `AHEAD`).
        let mut held: [Option<Locked<'_, A>>; HELD] = Default::default();
        for (k, g) in busy.iter().enumerate().take(AHEAD) {
            held[k] = Some(take(order, g));
        }
        // `pk` is the group of the packet whose entry is asked for next, `pk_to` where that
        // group ends.
        let (mut pk, mut pk_to) = (0usize, busy.first().map_or(0, |g| g.to as usize));
        if let Some(g) = held[0].as_ref().filter(|_| rolling) {
            for o in order.iter().take(SORTED_NEAR.min(pk_to)) {
                g.shard.prefetch_at(o.hint);
            }
        }
        for (k, group) in busy.iter().enumerate() {
            if let Some(next) = busy.get(k + AHEAD) {
                held[(k + AHEAD) % HELD] = Some(take(order, next));
            }
            let Some(mut g) = held[k % HELD].take() else {
                continue; // never: taken above
            };
            let slot = &t.shards[group.shard as usize];
            // Once per group: `now` is the burst's, so the shard's time moves only here.
            let clock = self.advance(t, &mut g, now);
            g.credit_want = group.to - group.from - 1;
            for j in group.from as usize..group.to as usize {
                let f = j + SORTED_NEAR;
                if rolling && let Some(&Sorted { hint, .. }) = order.get(f) {
                    while f >= pk_to {
                        pk += 1;
                        pk_to = busy.get(pk).map_or(usize::MAX, |g| g.to as usize);
                    }
                    if pk == k {
                        g.shard.prefetch_at(hint);
                    } else if pk <= k + AHEAD
                        && let Some(h) = &held[pk % HELD]
                    {
                        h.shard.prefetch_at(hint);
                    }
                }
                let Some(&Sorted { i, hint }) = order.get(j) else {
                    continue; // never: the groups lie inside `order`
                };
                let p = &q[i as usize];
                out[p.pos as usize] =
                    match self.run_refresh::<A, false>(&mut g, &p.ready, hint, clock) {
                        Some(v) => v,
                        None => self.run_ready_locked(t, slot, &mut g, &p.ready, p.h, hint, now),
                    };
            }
            self.settle(&mut g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::host::HostModel;
    use proptest::prelude::*;

    /// What the general planning path makes of a frame, when it queues it: the checked
    /// headers and whether the checksum is right.
    fn general(ct: &Conntrack, frame: &[u8], link: LinkType) -> Option<(String, bool)> {
        match ct.general::<false>(frame, link, 0) {
            General::V4(r) => Some(show(ct, r)),
            General::V6(r) => Some(show(ct, r)),
            General::Skipped | General::Alone => None,
        }
    }

    fn show<A: Addr>(ct: &Conntrack, r: ReadyOf<'_, A>) -> (String, bool) {
        match r {
            Ok((ready, sum)) => (format!("{ready:?}"), ct.sum_ok(sum)),
            Err(v) => (format!("refused {v}"), false),
        }
    }

    /// The one-pass lanes' answer in the same terms.
    fn common(ct: &Conntrack, frame: &[u8], link: LinkType) -> Option<(String, bool)> {
        let lanes = |frame, link| {
            let v4 = ct
                .common_v4(frame, link, ct.checksum())
                .map(|r| show(ct, r));
            let v6 = ct
                .common_v6(frame, link, ct.checksum())
                .map(|r| show(ct, r));
            assert!(v4.is_none() || v6.is_none(), "both lanes took one frame");
            v4.or(v6)
        };
        // As `plan` asks them: the frame itself, then what is behind a tag or cooked header.
        lanes(frame, link).or_else(|| match inner_ip(frame, link)? {
            (ip, 0x0800) => ct
                .common_v4(ip, LinkType::Raw, ct.checksum())
                .map(|r| show(ct, r)),
            (ip, 0x86dd) => ct
                .common_v6(ip, LinkType::Raw, ct.checksum())
                .map(|r| show(ct, r)),
            _ => None,
        })
    }

    proptest! {
        /// Over any burst of short and long frames tracked in order, `Ahead` asks for every
        /// line of a long frame (beyond its first) by the time that frame is tracked, never
        /// for a line twice or outside its frame, and never for more than `AHEAD_BYTES` of
        /// lines in the frames after the tracked one.
        #[test]
        fn the_payload_cursor_asks_for_each_line_once_and_within_its_budget(
            lens in proptest::collection::vec(
                prop_oneof![40usize..LONG_FRAME, LONG_FRAME..1515, 1515usize..9001], 1..64),
        ) {
            let frames: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0u8; n]).collect();
            let chunk: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            // Where an asked-for address lies: (frame, offset).
            let place = |p: *const u8| {
                chunk.iter().enumerate().find_map(|(k, f)| {
                    let at = (p as usize).wrapping_sub(f.as_ptr() as usize);
                    (at < f.len()).then_some((k, at))
                })
            };
            let mut asked = std::collections::BTreeSet::new();
            let mut ahead = Ahead { j: 0, off: 64, bytes: 0 };
            for i in 0..chunk.len() {
                let mut now = Vec::new();
                ahead.ask(&chunk, i, |p| now.push(p));
                for p in now {
                    let (k, at) = place(p).expect("an address inside a frame");
                    // A frame's first line is asked for only as the one after a long frame.
                    if at == 0 {
                        prop_assert!(k > 0 && chunk[k - 1].len() >= LONG_FRAME);
                        continue;
                    }
                    prop_assert!(chunk[k].len() >= LONG_FRAME && at % 64 == 0);
                    prop_assert!(k >= i, "frame {} asked for at {}", k, i);
                    prop_assert!(asked.insert((k, at)), "line {} of frame {} twice", at, k);
                }
                // Every line of the tracked frame, if long, has been asked for.
                if chunk[i].len() >= LONG_FRAME {
                    for at in (64..chunk[i].len()).step_by(64) {
                        prop_assert!(asked.contains(&(i, at)));
                    }
                }
                let beyond = asked.iter().filter(|&&(k, _)| k > i).count() * 64;
                prop_assert!(beyond <= AHEAD_BYTES, "{} bytes ahead at {}", beyond, i);
            }
        }
    }

    proptest! {
        /// A frame that the lanes leave and that holds no IP packet is skipped without the
        /// general path (`no_ip_behind` and the last arm of `Conntrack::process_inner`), and
        /// only when the general parse finds no IP packet in it either, which is what makes
        /// the general path skip a frame.
        #[test]
        fn frames_without_ip_are_skipped_as_the_general_parse_would(
            link_kind in 0usize..5,
            outer in prop_oneof![
                Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8), Just(0x0806),
                any::<u16>()
            ],
            inner in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x0806)],
            family in prop_oneof![Just(2u32), Just(24), Just(28), Just(30), any::<u32>()],
            swap in any::<bool>(),
            mut frame in proptest::collection::vec(any::<u8>(), 80),
            version in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()],
            len in 0usize..80,
        ) {
            let ct = Conntrack::with_seed(Config::default(), 1);
            let (link, at) = match link_kind {
                0 => (LinkType::Raw, 0),
                1 => {
                    frame[12..14].copy_from_slice(&outer.to_be_bytes());
                    frame[16..18].copy_from_slice(&inner.to_be_bytes());
                    // Behind a second tag, IP.
                    frame[20..22].copy_from_slice(&0x0800u16.to_be_bytes());
                    let tags = match (outer, inner) {
                        (0x8100 | 0x88a8, 0x8100) => 2,
                        (0x8100 | 0x88a8, _) => 1,
                        _ => 0,
                    };
                    (LinkType::Ethernet, 14 + 4 * tags)
                }
                2 => {
                    frame[14..16].copy_from_slice(&outer.to_be_bytes());
                    (LinkType::LinuxSll, 16)
                }
                3 => {
                    frame[..2].copy_from_slice(&outer.to_be_bytes());
                    (LinkType::LinuxSll2, 20)
                }
                _ => {
                    let f = if swap { family.swap_bytes() } else { family };
                    frame[..4].copy_from_slice(&f.to_ne_bytes());
                    (LinkType::Loopback, 4)
                }
            };
            frame[at] = version;
            frame.truncate(len);
            let declined = ct.common_v4(&frame, link, true).is_none()
                && ct.common_v6(&frame, link, true).is_none();
            prop_assume!(declined);
            let got = ct.process_inner::<{ Lanes::PLAIN }>(&frame, link, 0, 1, true);
            if got == Some(Verdict::SKIPPED) {
                prop_assert!(packet::ip_of_frame(&frame, link).is_none());
            }
            // An untagged frame of another EtherType, or too short for one, never goes on.
            if link == LinkType::Ethernet
                && (len < 14 || !matches!(outer, 0x0800 | 0x86dd | 0x8100 | 0x88a8))
            {
                prop_assert_eq!(got, Some(Verdict::SKIPPED));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Whatever frame the one-pass IPv4 lane takes, it decides exactly as the general
        /// path does; and it takes every well-formed TCP and UDP packet it is meant for.
        #[test]
        fn one_pass_lanes_agree_with_the_general_path(
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            link_kind in 0usize..7,
            vlan_tci in any::<u16>(),
            ad in any::<bool>(),
            checksum in any::<bool>(),
            router in any::<bool>(),
            udp_sum in any::<bool>(),
            options in 0usize..3,
            mut src in any::<[u8; 16]>(),
            mut dst in any::<[u8; 16]>(),
            special in proptest::option::of((any::<bool>(), 0usize..8)),
            sport in any::<u16>(),
            dport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..80),
            pad in 0usize..8,
            edits in proptest::collection::vec((0usize..160, any::<u8>()), 0..4),
            header_edits in proptest::collection::vec((0usize..24, any::<u8>()), 0..3),
            resum in any::<bool>(),
            cut in proptest::option::of(0usize..160),
        ) {
            let mut cfg = Config::default();
            cfg.sysctl.nf_conntrack_checksum = u32::from(checksum);
            if router {
                cfg.host = HostModel::Router;
            }
            let ct = Conntrack::with_seed(cfg, 1);
            let l2 = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let builder = if v6 {
                // Global unicast, or an address the receive path treats apart (loopback,
                // multicast of each scope, unspecified, link-local) on one side.
                src[0] = 0x20;
                dst[0] = 0x20;
                if let Some((at_src, k)) = special {
                    let mut a = [0u8; 16];
                    match k {
                        0 => a[15] = 1,
                        1..=5 => {
                            a[0] = 0xff;
                            a[1] = [0x00, 0x01, 0x02, 0x05, 0x0e][k - 1];
                            a[15] = 1;
                        }
                        6 => {}
                        _ => {
                            a[0] = 0xfe;
                            a[1] = 0x80;
                            a[15] = 1;
                        }
                    }
                    *(if at_src { &mut src } else { &mut dst }) = a;
                }
                l2.ipv6(src, dst, 64)
            } else {
                let four = |a: [u8; 16]| [a[0], a[1], a[2], a[3]];
                l2.ipv4(four(src), four(dst), 64)
            };
            let l4at = 14 + if v6 { 40 } else { 20 };
            let mut frame = Vec::new();
            if tcp {
                let opts = [const { etherparse::TcpOptionElement::Noop }; 8];
                builder
                    .tcp(sport, dport, 1000, 4096)
                    .ack(77)
                    .options(&opts[..options * 4])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .write(&mut frame, &payload)
            } else {
                builder.udp(sport, dport).write(&mut frame, &payload)
            }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if !tcp && !udp_sum {
                // No UDP checksum at all (allowed over IPv4; conntrack lets it pass over IPv6
                // too).
                frame[l4at + 6] = 0;
                frame[l4at + 7] = 0;
            }
            frame.extend(std::iter::repeat_n(0u8, pad));
            // The same IP packet behind each link header the lanes read, and behind two VLAN
            // tags, which they leave to the general parse.
            let (eth, ip) = frame.split_at(14);
            let et = [eth[12], eth[13]];
            let tag = |tpid: [u8; 2]| [tpid[0], tpid[1], (vlan_tci >> 8) as u8, vlan_tci as u8];
            let (head, link): (Vec<u8>, LinkType) = match link_kind {
                0 => (Vec::new(), LinkType::Raw),
                1 => (eth.to_vec(), LinkType::Ethernet),
                2 => {
                    let one = tag(if ad { [0x88, 0xa8] } else { [0x81, 0x00] });
                    ([&eth[..12], &one, &et].concat(), LinkType::Ethernet)
                }
                3 => {
                    let outer = tag([0x88, 0xa8]);
                    let inner = tag(if ad { [0x88, 0xa8] } else { [0x81, 0x00] });
                    ([&eth[..12], &outer, &inner, &et].concat(), LinkType::Ethernet)
                }
                4 => ([&[0, 0, 0, 1, 0, 6], &eth[6..12], &[0, 0], &et].concat(), LinkType::LinuxSll),
                6 => {
                    // The family in either byte order; IPv6 by any BSD's number.
                    let fam: u32 = if v6 { [24, 28, 30][usize::from(vlan_tci % 3)] } else { 2 };
                    let h = if ad { fam.to_be_bytes() } else { fam.to_le_bytes() };
                    (h.to_vec(), LinkType::Loopback)
                }
                _ => {
                    let sll2 = [&et[..], &[0, 0, 0, 0, 0, 2, 0, 1, 0, 6], &eth[6..12], &[0, 0]];
                    (sll2.concat(), LinkType::LinuxSll2)
                }
            };
            let l3 = head.len();
            let frame = [&head[..], ip].concat();
            // Well-formed: the lane takes it, as the general path does.
            let want = general(&ct, &frame, link);
            if link_kind == 3 {
                prop_assert!(want.is_some() || v6);
                prop_assert_eq!(common(&ct, &frame, link), None);
            } else if want.is_some() || !v6 {
                prop_assert!(want.is_some());
                prop_assert_eq!(common(&ct, &frame, link), want);
            } else {
                // An IPv6 address the receive path refuses: neither lane takes it.
                prop_assert_eq!(common(&ct, &frame, link), None);
            }
            // Damaged anywhere: whatever the lane takes, the general path takes the same way.
            let mut bad = frame.clone();
            for &(at, b) in &edits {
                if let Some(x) = bad.get_mut(at) {
                    *x = b;
                }
            }
            for &(at, b) in &header_edits {
                if let Some(x) = bad.get_mut(l3 + at) {
                    *x = b;
                }
            }
            if let Some(n) = cut {
                bad.truncate(n);
            }
            if resum && !v6 && bad.len() >= l3 + 20 {
                // A right header checksum over the damaged header, so that what follows it
                // is looked at.
                bad[l3 + 10..l3 + 12].fill(0);
                let c = !packet::csum_fold(packet::csum_add(0, &bad[l3..l3 + 20]));
                bad[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
            if let Some(got) = common(&ct, &bad, link) {
                prop_assert_eq!(Some(got), general(&ct, &bad, link));
            }
        }
    }

    /// With the sort buffers in use (as from inside another burst), queued packets are
    /// tracked one at a time, with the same verdicts and table as frame-by-frame tracking.
    #[test]
    fn queued_packets_run_alone_while_the_buffers_are_in_use() {
        use crate::workload::{Kind, Workload};
        for v6 in [false, true] {
            let w = Workload::generate(Kind::Mix, 300, 3000, v6, 5);
            let frames: Vec<&[u8]> = w.all().collect();
            let now = 1_000_000_000;
            let free = Conntrack::with_seed(Config::default(), 3);
            let want: Vec<Verdict> = frames
                .iter()
                .map(|f| free.process(f, LinkType::Raw, now))
                .collect();
            let ct = Conntrack::with_seed(Config::default(), 3);
            let mut got = vec![Verdict::INVALID; frames.len()];
            let (mut q4, mut q6) = (Vec::new(), Vec::new());
            let mut queued = 0;
            SCRATCH.with(|cell| {
                let _busy = cell.borrow_mut();
                for (i, f) in frames.iter().enumerate() {
                    match ct.plan::<false, false>(
                        f,
                        LinkType::Raw,
                        0,
                        ct.checksum(),
                        i,
                        &mut q4,
                        &mut q6,
                        &mut got[i],
                    ) {
                        Plan::Queued => queued += 1,
                        Plan::Done => {}
                        Plan::Alone => panic!("frame {i} of the workload is not common"),
                    }
                }
                ct.run_queued(&ct.v4, &mut q4, &mut got, now);
                ct.run_queued(&ct.v6, &mut q6, &mut got, now);
            });
            assert_eq!(queued, frames.len());
            assert_eq!(got, want);
            assert_eq!(ct.count(), free.count());
            assert!(ct.count() > 300);
        }
    }

    #[test]
    fn recycled_queues_keep_their_allocation() {
        let frame = [0u8; 4];
        let mut v: Vec<Planned<'_, [u8; 4]>> = Vec::with_capacity(CHUNK);
        let ready = Ready {
            key: Default::default(),
            len: 0,
            route: crate::host::Route::Passes,
            l4: crate::conntrack::ReadyL4::Tcp(ctrack_protocols::tcp::Segment {
                options: &frame,
                ..ctrack_protocols::tcp::Segment::new(1, 2, 0x10, 3, 4)
            }),
        };
        v.push(Planned {
            shard: 0,
            pos: 0,
            h: 0,
            ready,
        });
        let at = v.as_ptr() as usize;
        let kept: Vec<Planned<'static, [u8; 4]>> = recycle(v);
        assert_eq!((kept.len(), kept.capacity()), (0, CHUNK));
        assert_eq!(kept.as_ptr() as usize, at);
        let again: Vec<Planned<'_, [u8; 4]>> = recycle(kept);
        assert_eq!((again.capacity(), again.as_ptr() as usize), (CHUNK, at));
    }
}
