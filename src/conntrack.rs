//! The engine: frames in, verdicts out, over one sharded table per address family.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use ctrack_helpers::Assignment;
use ctrack_protocols::icmp::{self, Class};
use ctrack_protocols::sysctl::{Sysctl, SysctlError};
use ctrack_protocols::{Accept, Ctx, Decision, Dir, Nanos, Refresh, generic, gre, sctp, tcp, udp};
use foldhash::fast::FixedState;
use parking_lot::Mutex;

use crate::defrag::{Defrag, Reassembled};
use crate::event::{Event, EventKind, EventQueue, ExpectEvent};
use crate::expect::{Expectations, Expected, Refused, Reporter, Spec};
use crate::format::EntryView;
use crate::host::{HostModel, Route};
use crate::icmp_error::{self, Redirect};
use crate::packet::{self, IpPacket, LinkType, PendingSum};
use crate::stats::{Counter, ShardStats, Stats};
use crate::table::{Counters, Entry, Found, ProtoState, Shard, status};
use crate::timer::NIL;
use crate::tuple::{Addr, Key, Tuple, proto};
use crate::verdict::{State, Verdict};
use ctrack_helpers::{amanda, ftp, irc, pptp, sip, tftp};

/// How long the Amanda helper keeps its master connection after each reply (seconds).
const AMANDA_MASTER_TIMEOUT: u32 = 300;

/// An address in sixteen bytes, an IPv4 one in the first four (what `Addr::from_bytes` reads).
fn pad16(a: &[u8]) -> [u8; 16] {
    let mut b = [0; 16];
    let n = a.len().min(16);
    b[..n].copy_from_slice(&a[..n]);
    b
}

/// The memory something needed could not be had.
#[derive(Clone, Copy, Debug)]
struct NoRoom;

/// The expectation table as the SIP helper's reading asks it (see [`sip::Expect`]): for the
/// master `master` (helper `index`), whose packet went to `peer`.
struct SipTable<'x, A: Addr> {
    x: &'x mut Expectations<A>,
    master: Key<A>,
    helper: &'static ctrack_helpers::Helper,
    peer: A,
    max_total: usize,
    now: Nanos,
}

/// The policy of `helper`'s expectation class `class` as an expectation spec.
fn policy_spec(helper: &ctrack_helpers::Helper, class: u8) -> Spec {
    let p = helper.policies.get(usize::from(class));
    Spec {
        class,
        ..Spec::plain(
            p.map_or(0, |p| p.max_expected),
            ctrack_protocols::secs(p.map_or(0, |p| p.timeout)),
        )
    }
}

impl<A: Addr> SipTable<'_, A> {
    /// The policy of `class` as an expectation spec.
    fn spec(&self, class: sip::Class) -> Spec {
        policy_spec(self.helper, class as u8)
    }

    fn expected(&self, src: Option<A>, dst: [u8; 16], proto: u8, dport: u16) -> Expected<A> {
        Expected {
            src,
            sport: None,
            dst: A::from_bytes(&dst),
            dport,
            zone: self.master.zone,
            proto,
        }
    }
}

impl<A: Addr> sip::Expect for SipTable<'_, A> {
    fn flush(&mut self, media: bool) {
        self.x.flush_sip(&self.master, media, self.now);
    }

    fn media(&mut self, class: sip::Class, addr: [u8; 16], port: u16) -> bool {
        let index = ctrack_helpers::index_of(self.helper);
        // Media from the peer: when another SIP master already expects this very stream in
        // the same class (one call seen on two signalling connections), nothing is added.
        let asked = self.expected(Some(self.peer), addr, proto::UDP, port);
        if let Some((m, helper, c)) = self.x.matching(&asked, self.now)
            && m != self.master
            && helper == index
            && c == class as u8
        {
            return true;
        }
        // The RTP port is the even one of the pair, RTCP the odd one after it.
        let base = port & !1;
        let spec = Spec {
            skip_master: true,
            ..self.spec(class)
        };
        let rtp = self.expected(Some(self.peer), addr, proto::UDP, base);
        let rtcp = Expected {
            dport: base.wrapping_add(1),
            ..rtp
        };
        let (m, n, now) = (self.master, self.max_total, self.now);
        let first = self.x.expect(&m, index, rtp, spec, n, now);
        if !matches!(first, Ok(()) | Err(Refused::Already)) {
            return false;
        }
        match self.x.expect(&m, index, rtcp, spec, n, now) {
            Ok(()) | Err(Refused::Already) => true,
            Err(_) => {
                if first.is_ok() {
                    self.x.unexpect(&rtp, now);
                }
                false
            }
        }
    }

    fn signalling(&mut self, addr: [u8; 16], proto: u8, port: u16) -> bool {
        // Incoming calls from the registrar (the peer), to the registered contact; the
        // connection gets the SIP helper. Permanent, and inactive until the registrar agrees.
        let index = ctrack_helpers::index_of(self.helper);
        let spec = Spec {
            permanent: true,
            inactive: true,
            child_helper: index,
            ..self.spec(sip::Class::Signalling)
        };
        let e = self.expected(Some(self.peer), addr, proto, port);
        let (m, n, now) = (self.master, self.max_total, self.now);
        self.x.expect(&m, index, e, spec, n, now).is_ok()
    }

    fn refresh_signalling(&mut self, addr: [u8; 16], proto: u8, port: u16, expires: u32) -> bool {
        let dst = A::from_bytes(&addr);
        self.x
            .refresh_signalling(&self.master, dst, proto, port, expires, self.now)
    }
}

/// Engine settings: the Linux sysctls, helper assignments, and how the table is laid out.
///
/// Every sysctl of the kernel's `net.netfilter` set is accepted. `nf_conntrack_buckets` (the
/// kernel's hash table size, 262,144 by default as on the oracle's machine) does not size this
/// table's index, which sizes itself, doubling as it fills; it sets how many entries the
/// kernel's early drop would meet, which early drop here follows (see `Conntrack::early_drop`:
/// with `nf_conntrack_max` far below it, as in the kernel, a full table almost never makes
/// room). `nf_conntrack_log_invalid` is kept only so that configurations carry over (nothing
/// is logged). `nf_conntrack_events` set to 0 turns the event stream off (see `events`).
///
/// `helpers` assigns helpers to new connections by protocol and destination port, as an
/// `nft ct helper set` rule does. The FTP, TFTP, SIP, IRC, Amanda, SANE and PPTP helpers read
/// their connections and announce expectations (at most `nf_conntrack_expect_max` pending);
/// SNMP and NetBIOS-NS are assigned but, as for traffic the kernel forwards, announce nothing.
///
/// ```
/// use ctrack::Config;
/// let mut c = Config::default();
/// c.set_sysctl("net.netfilter.nf_conntrack_udp_timeout=10").unwrap();
/// assert_eq!(c.sysctl.nf_conntrack_udp_timeout, 10);
/// assert!(c.set_sysctl("nf_conntrack_nonsense=1").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Every `net.netfilter` value, Linux defaults unless changed.
    pub sysctl: Sysctl,
    /// Helpers assigned by destination port, as a ruleset's `ct helper set` would.
    pub helpers: Vec<Assignment>,
    /// Which new connections the surrounding host confirms.
    pub host: HostModel,
    /// Number of lock shards per address family (rounded up to a power of two; default 16).
    /// More shards mean less waiting between threads that do not steer their traffic with
    /// [`Conntrack::queue_of`], fewer mean bigger groups per lock in a burst and less fixed
    /// memory per shard.
    pub shards: usize,
    /// While the table holds at most this many entries (both families; default 4,096, about
    /// half a megabyte) and no helpers are configured, a burst is tracked frame by frame in its
    /// order instead of sorted by shard: the entries are in cache, so fetching them ahead gains
    /// nothing, and the sort costs more than it saves (at 1,000 flows in bursts of 256, 8% to
    /// 12% more packets per second in order, IPv4 and IPv6).
    /// 0 sorts every burst of more than one frame. Either way the verdicts are the same. In
    /// order, a shard's lock is taken once per packet rather than once per group. For threads
    /// that share shards (traffic not steered by [`Conntrack::queue_of`]) that is better in
    /// short bursts and worse in long ones: two such threads over 1,000 flows did about twice
    /// the packets in order in bursts of 32, but 18% fewer in bursts of 256 (`bench --threads
    /// 2 --steer flow`), where such a deployment may prefer 0.
    pub in_order_entries: usize,
    /// How many events [`Conntrack::events`] may have waiting, and as many
    /// [`Conntrack::expect_events`] (default 0: none are recorded). Like `conntrack -E` and
    /// `conntrack -E expect` listeners: with room for them, every new, updated and destroyed
    /// entry, and every expectation announced and gone, is reported as the kernel reports it
    /// to its listeners, unless `nf_conntrack_events` is 0. Past the limit, events are lost
    /// and counted ([`Conntrack::events_lost`]), as a listener's socket loses them when full.
    /// Besides the queue, each shard keeps room for the 32 events it may stage while locked
    /// (about 7 KiB per shard once it has reported any).
    pub events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sysctl: Sysctl::default(),
            helpers: Vec::new(),
            host: HostModel::ConfirmAll,
            shards: 16,
            in_order_entries: 4096,
            events: 0,
        }
    }
}

impl Config {
    /// Applies one `NAME=VALUE` sysctl assignment (with or without `net.netfilter.`).
    pub fn set_sysctl(&mut self, assignment: &str) -> Result<&mut Self, SysctlError> {
        self.sysctl.apply(assignment)?;
        Ok(self)
    }
}

/// How often the kernel's garbage collector runs over a table of long-lived entries
/// (`GC_SCAN_INTERVAL_MAX`): each run reaps every entry that has timed out, and, after a
/// "table full" drop, also makes room (see [`GcClock`]). Its runs are modelled at the
/// multiples of this interval on the packets' clock: the kernel's phase is the machine's and
/// nothing a capture shows, and the multiples make a run's moment depend on time alone, the
/// same for every shard and thread. A drop or a timeout waits 30 s for the next run on
/// average, as it would for the kernel's.
const GC_INTERVAL: Nanos = 60 * ctrack_protocols::NANOS_PER_SEC;

/// The first run of the kernel's garbage collector after `t` (see [`GC_INTERVAL`]).
#[inline]
fn gc_run_after(t: Nanos) -> Nanos {
    (t / GC_INTERVAL)
        .saturating_add(1)
        .saturating_mul(GC_INTERVAL)
}

/// The table's size as shard `sb` of `t` sees it: its own entries, timed-out ones not yet
/// reaped included, times the shards. Early drop and the pressure pass take this, not the
/// shared count, which would make them depend on what other shards (or threads) tracked
/// meanwhile, and a burst give other verdicts than its packets one by one.
fn seen_size<A: Addr>(t: &Table<A>, sb: &ShardBox<A>) -> usize {
    (sb.shard.len() + sb.zombies as usize).saturating_mul(t.shards.len())
}

/// The passes of the kernel's garbage collector that "table full" drops owe, numbered from
/// 1: a drop while no pass is pending schedules one for the collector's next run (see
/// [`GC_INTERVAL`]), drops before it begins are absorbed, and every shard sweeps itself once
/// for the latest pass begun by its own clock. What a shard owes depends on the drops and on time only, not
/// on the order in which shards meet a burst's packets, so a burst gets the verdicts of its
/// packets one by one.
#[derive(Default)]
struct GcClock {
    /// The latest pass scheduled.
    pass: AtomicU64,
    /// When it begins.
    due: AtomicU64,
}

impl GcClock {
    /// The latest pass begun at `now`, when a shard that last finished pass `swept` owes it.
    #[inline]
    fn owed(&self, swept: u64, now: Nanos) -> Option<u64> {
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
    fn schedule(&self, now: Nanos) {
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
const GC_PASS_MOST: u32 = 256;

/// How many hash chains the kernel's early drop walks (`NF_CT_EVICTION_RANGE`).
const EVICTION_RANGE: usize = 8;

/// The most tuples one chain of [`chain_sizes`] holds: a bound on early drop's walk when
/// `nf_conntrack_buckets` is set far below the number of entries.
const CHAIN_MOST: u32 = 64;

/// How many tuples each of the [`EVICTION_RANGE`] kernel hash chains that early drop walks
/// for the tuple hashed `h` holds, in a table of `entries` entries over `buckets` chains:
/// each entry's two tuples are hashed into the chains, so a chain holds a Poisson-distributed
/// number of them, of mean `2 * entries / buckets`. Drawn from `h` (deterministic for a
/// tuple, as the kernel's chains are for its hash seed); at most [`CHAIN_MOST`] each.
///
/// At the kernel's default table (as many buckets as `nf_conntrack_max`) a full table's
/// chains hold two tuples on average: a new connection finds a victim among about 16 entries,
/// so a flood into a table nine tenths ASSURED is dropped one time in five, as the kernel's
/// replay of such a flood shows (`tests/early_drop.rs`).
fn chain_sizes(h: u64, entries: usize, buckets: u32) -> [u32; EVICTION_RANGE] {
    let mean = 2.0 * entries as f64 / f64::from(buckets.max(1));
    let mut x = h;
    std::array::from_fn(|_| {
        // A uniform draw in [0, 1) from the hash, a fresh one per chain.
        x = splitmix(x);
        poisson(mean, (x >> 11) as f64 / (1u64 << 53) as f64)
    })
}

/// The next state of a splitmix64 sequence from `x`, mixed: what early drop draws from.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The Poisson-distributed count of mean `mean` whose cumulative probability first passes
/// `u` (inversion), at most [`CHAIN_MOST`]; a mean past 30 is taken as its rounded self.
fn poisson(mean: f64, u: f64) -> u32 {
    if mean > 30.0 {
        return (mean.round() as u32).min(CHAIN_MOST);
    }
    let (mut p, mut n) = ((-mean).exp(), 0);
    let mut f = p;
    while u >= f && n < CHAIN_MOST {
        n += 1;
        p *= mean / f64::from(n);
        f += p;
    }
    n
}

pub(crate) struct Table<A: Addr> {
    pub(crate) shards: Box<[CachePadded<Slot<A>>]>,
    mask: usize,
    /// Pending expectations and helper state (taken after a shard lock, never before).
    pub(crate) expect: Mutex<Expectations<A>>,
}

/// A shard and what may be read of it without its lock.
pub(crate) struct Slot<A> {
    mutex: Mutex<ShardBox<A>>,
    /// Where the shard's index buckets were last seen, and their mask: for prefetching only
    /// (the address may be stale, which costs nothing but a useless prefetch).
    buckets: AtomicPtr<u8>,
    bucket_mask: AtomicUsize,
}

impl<A: Addr> Slot<A> {
    /// Locks the shard. The connection events queued while it is held are staged in the
    /// shard and move to the event queue when the lock is released.
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_, A> {
        Locked(self.mutex.lock())
    }

    /// Asks the memory system for the bucket line `h` hashes to.
    #[inline]
    pub(crate) fn prefetch_bucket(&self, h: u64) {
        let base = self.buckets.load(Ordering::Relaxed);
        let off = (h as usize & self.bucket_mask.load(Ordering::Relaxed)) * 64;
        crate::table::prefetch(base.wrapping_add(off));
    }

    /// Records where the shard's buckets now are, after an insertion that may have grown them.
    #[inline]
    fn publish(&self, sb: &ShardBox<A>) {
        let (base, mask) = sb.shard.bucket_base();
        if !std::ptr::eq(self.buckets.load(Ordering::Relaxed), base) {
            self.buckets.store(base as *mut u8, Ordering::Relaxed);
            self.bucket_mask.store(mask, Ordering::Relaxed);
        }
    }
}

/// A locked shard (see [`Slot::lock`]): on release, the connection events its holder
/// queued (staged in the shard, in order) move to the event queue, under one lock of the
/// queue for all of them.
pub(crate) struct Locked<'a, A>(parking_lot::MutexGuard<'a, ShardBox<A>>);

impl<A> std::ops::Deref for Locked<'_, A> {
    type Target = ShardBox<A>;
    #[inline(always)]
    fn deref(&self) -> &ShardBox<A> {
        &self.0
    }
}

impl<A> std::ops::DerefMut for Locked<'_, A> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut ShardBox<A> {
        &mut self.0
    }
}

impl<A> Drop for Locked<'_, A> {
    #[inline(always)]
    fn drop(&mut self) {
        // Before the guard, so while the lock is still held: another thread's events of the
        // same entries come before or after these, not between.
        if !self.0.staged.is_empty() {
            self.0.flush();
        }
    }
}

/// Events a shard stages at most before they move to the queue while it is still locked.
const STAGED: usize = 32;

/// Stages the event `make` makes among a locked shard's events (`staged`), moving them all
/// to `q` first when [`STAGED`] already wait or no room can be had for one more.
#[inline(always)]
fn stage(q: &EventQueue, staged: &mut VecDeque<Event>, make: impl FnOnce() -> Event) {
    if staged.len() == staged.capacity() {
        if staged.len() >= STAGED || staged.try_reserve(STAGED).is_err() {
            q.push_all(staged);
        }
        if staged.len() == staged.capacity() {
            // Nowhere to stage it: straight to the queue.
            q.push(make());
            return;
        }
    }
    staged.push_back(make());
}

pub(crate) struct ShardBox<A> {
    pub(crate) shard: Shard<A>,
    /// Connection events queued while the shard is locked, in order: they move to the event
    /// queue when the lock is released (see [`Locked`]), or when [`STAGED`] wait.
    staged: VecDeque<Event>,
    /// Where staged events go: the event queue, when there is one.
    sink: Option<Arc<EventQueue>>,
    pub(crate) stats: ShardStats,
    /// Next slab index the pressure sweep looks at.
    gc_cursor: u32,
    /// The last pressure pass this shard finished (see [`GcClock`]).
    gc_swept: u64,
    /// Entries of this shard that timed out and left it, but that the kernel would still
    /// count against `nf_conntrack_max`: it takes a timed-out entry out only when something
    /// meets it (a lookup walking its hash chain, early drop, its garbage collector). They
    /// stay in the shared count until then (see [`Conntrack::sweep`]).
    zombies: u32,
    /// The collector's run that reaps them all (see [`GC_INTERVAL`]).
    zombies_due: Nanos,
    /// The random state of the lookups that meet zombies (see [`Conntrack::found_reaps`]).
    reap_draw: u64,
    /// Entries the pass under way has removed, and slots it has looked at.
    gc_killed: u32,
    gc_seen: u32,
    /// Table-count units this shard's burst group has claimed but not used yet: its new
    /// entries take one each without touching the shared count (see `Conntrack::claim`).
    /// Zero outside a group.
    pub(crate) credit: u32,
    /// How many more units the group's first creation should claim with its own: the
    /// group's size. Zero outside a group.
    pub(crate) credit_want: u32,
}

impl<A> ShardBox<A> {
    /// Moves the staged events to the event queue.
    #[cold]
    #[inline(never)]
    fn flush(&mut self) {
        if let Some(q) = &self.sink {
            q.push_all(&mut self.staged);
        }
    }
}

impl<A: Addr> Table<A> {
    fn new(n: usize, acct: bool, timestamps: bool, events: Reporter) -> Self {
        let n = n.max(1).next_power_of_two();
        Table {
            shards: (0..n)
                .map(|_| {
                    let sb = ShardBox {
                        shard: Shard::with_extras(acct, timestamps),
                        stats: ShardStats::default(),
                        gc_cursor: 0,
                        gc_swept: 0,
                        zombies: 0,
                        zombies_due: 0,
                        reap_draw: 0,
                        gc_killed: 0,
                        gc_seen: 0,
                        credit: 0,
                        credit_want: 0,
                        staged: VecDeque::new(),
                        sink: events.0.clone(),
                    };
                    let (base, mask) = sb.shard.bucket_base();
                    CachePadded::new(Slot {
                        mutex: Mutex::new(sb),
                        buckets: AtomicPtr::new(base as *mut u8),
                        bucket_mask: AtomicUsize::new(mask),
                    })
                })
                .collect(),
            mask: n - 1,
            expect: Mutex::new(Expectations::reporting(events)),
        }
    }

    #[inline]
    pub(crate) fn shard_of(&self, h: u64) -> usize {
        (h >> 32) as usize & self.mask
    }
}

/// A TCP or UDP packet whose headers have passed every check, ready for its table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready<'a, A> {
    pub(crate) key: Key<A>,
    /// Layer-3 length, for accounting.
    pub(crate) len: u32,
    /// What the host does with the packet (see [`HostModel::route`]): a new entry may be
    /// confirmed only when it passes.
    pub(crate) route: Route,
    pub(crate) l4: ReadyL4<'a>,
}

/// The protocol part of a [`Ready`] packet.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadyL4<'a> {
    Tcp(tcp::Segment<'a>),
    Udp,
}

impl<A: Addr> Ready<'_, A> {
    #[inline]
    pub(crate) fn key(&self) -> &Key<A> {
        &self.key
    }
}

/// How a protocol opens an entry for a packet that found none.
pub(crate) enum Open {
    /// The packet may not create an entry: it is invalid.
    Refused,
    /// The entry's initial state; the tracker then decides the packet as for any entry.
    Track(ProtoState),
    /// The initial state with the packet already decided: accepted with this refresh.
    Decided(ProtoState, Refresh),
}

/// Layer-4 facts of a packet, once its header has passed the protocol's checks.
#[derive(Clone, Copy, Debug)]
enum Input<'a> {
    Sctp(sctp::Packet<'a>),
    UdpLite,
    Icmp,
    Gre,
    Generic,
}

/// The connection tracker: `Send + Sync`, share it between worker threads.
///
/// ```
/// use ctrack::{Conntrack, Config, LinkType, State};
/// let ct = Conntrack::new(Config::default());
/// // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53 as a raw IPv4 packet.
/// let mut p = vec![0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
///                  0x03, 0xe8, 0, 53, 0, 9, 0, 0, b'x'];
/// let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &p[..20]));
/// p[10..12].copy_from_slice(&c.to_be_bytes());
/// let v = ct.process(&p, LinkType::Raw, 1_000_000_000);
/// assert_eq!(v.state, State::New);
/// assert_eq!(ct.count(), 1);
/// ```
pub struct Conntrack {
    cfg: Config,
    hasher: FixedState,
    pub(crate) v4: Table<[u8; 4]>,
    pub(crate) v6: Table<[u8; 16]>,
    count: AtomicUsize,
    /// The garbage collector's passes owed after "table full" drops.
    gc: GcClock,
    stats: Stats,
    frags: Mutex<Defrag>,
    /// One bit per port a helper is assigned to (any protocol); empty without helpers.
    helper_ports: Box<[u64]>,
    /// The event streams, when the configuration asks for them.
    events: Option<Arc<EventQueue>>,
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back on the clock and an address (still per-instance).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (&b as *const _ as u64).rotate_left(29);
    }
    u64::from_ne_bytes(b)
}

impl Conntrack {
    /// A tracker with a fresh random hash seed.
    pub fn new(cfg: Config) -> Conntrack {
        Self::with_seed(cfg, random_seed())
    }

    /// A tracker whose hash seed is fixed (reproducible table layout, for tests and benches).
    pub fn with_seed(cfg: Config, seed: u64) -> Conntrack {
        // Its own seed, so that what one table's layout shows says nothing of the other's.
        let frags = Defrag::new(&cfg.sysctl, seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15);
        let acct = cfg.sysctl.nf_conntrack_acct != 0;
        let tstamp = cfg.sysctl.nf_conntrack_timestamp != 0;
        let mut helper_ports = vec![0u64; if cfg.helpers.is_empty() { 0 } else { 1 << 10 }];
        for a in &cfg.helpers {
            helper_ports[usize::from(a.port >> 6)] |= 1 << (a.port & 63);
        }
        let events = (cfg.events > 0 && cfg.sysctl.nf_conntrack_events != 0)
            .then(|| Arc::new(EventQueue::new(cfg.events)));
        let reporter = Reporter(events.clone());
        Conntrack {
            events,
            helper_ports: helper_ports.into_boxed_slice(),
            v4: Table::new(cfg.shards, acct, tstamp, reporter.clone()),
            v6: Table::new(cfg.shards, acct, tstamp, reporter),
            cfg,
            hasher: FixedState::with_seed(seed),
            count: AtomicUsize::new(0),
            gc: GcClock::default(),
            stats: Stats::default(),
            frags: Mutex::new(frags),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Changes one sysctl of a running tracker (`NAME=VALUE`, with or without
    /// `net.netfilter.`), as `sysctl -w` changes the kernel's, keeping the table.
    ///
    /// As in the kernel, a new value counts from the next packet: a timeout applies to the
    /// packets that refresh a connection from then on, and connections keep the deadlines
    /// their last packets gave them; `nf_conntrack_max` bounds the connections made from then
    /// on (a lower limit removes nothing, but new connections must make room by early drop,
    /// which seldom finds any while the limit is far below `nf_conntrack_buckets`, as in the
    /// kernel; `nf_conntrack_buckets` itself counts from the next early drop);
    /// `nf_conntrack_frag6_timeout` applies to the reassembly queues opened from then on.
    ///
    /// `nf_conntrack_acct`, `nf_conntrack_timestamp` and `nf_conntrack_events` decide what the
    /// tracker keeps for every connection, so turning one of them on or off is refused
    /// ([`SysctlError::Fixed`]); make a new tracker for that. A refused assignment changes
    /// nothing.
    ///
    /// ```
    /// use ctrack::{Config, Conntrack};
    /// let mut ct = Conntrack::new(Config::default());
    /// ct.set_sysctl("net.netfilter.nf_conntrack_udp_timeout=10").unwrap();
    /// assert_eq!(ct.config().sysctl.nf_conntrack_udp_timeout, 10);
    /// assert!(ct.set_sysctl("nf_conntrack_acct=1").is_err());
    /// ```
    pub fn set_sysctl(&mut self, assignment: &str) -> Result<(), SysctlError> {
        let mut s = self.cfg.sysctl.clone();
        s.apply(assignment)?;
        let was = &self.cfg.sysctl;
        for (name, before, after) in [
            (
                "nf_conntrack_acct",
                was.nf_conntrack_acct,
                s.nf_conntrack_acct,
            ),
            (
                "nf_conntrack_timestamp",
                was.nf_conntrack_timestamp,
                s.nf_conntrack_timestamp,
            ),
            (
                "nf_conntrack_events",
                was.nf_conntrack_events,
                s.nf_conntrack_events,
            ),
        ] {
            if (before != 0) != (after != 0) {
                return Err(SysctlError::Fixed(name));
            }
        }
        self.frags.get_mut().configure(&s);
        self.cfg.sysctl = s;
        Ok(())
    }

    /// True when some helper is assigned to `port` (for some protocol): a quick test before
    /// the rules themselves.
    #[inline]
    pub(crate) fn helper_port(&self, port: u16) -> bool {
        self.helper_ports
            .get(usize::from(port >> 6))
            .is_some_and(|w| w >> (port & 63) & 1 != 0)
    }

    /// Entries counted against `nf_conntrack_max` (both families), as the kernel counts them:
    /// entries that have timed out stay counted until the kernel would have reaped them (a
    /// lookup or early drop meeting them, or its collector's next run), so this may exceed
    /// what [`Conntrack::for_each_entry`] lists.
    /// While another thread tracks a burst, this may be high by up to the size of the shard
    /// group it is working on (see `Conntrack::claim`); it is exact between bursts.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Entries the table holds (both families): [`Conntrack::count`] without those that have
    /// timed out and left the table but still count against the limit. Locks every shard in
    /// turn.
    ///
    /// ```
    /// use ctrack::{Config, Conntrack};
    /// let ct = Conntrack::new(Config::default());
    /// assert_eq!((ct.entries(), ct.count()), (0, 0));
    /// ```
    pub fn entries(&self) -> usize {
        let v4: usize = self.v4.shards.iter().map(|s| s.lock().shard.len()).sum();
        let v6: usize = self.v6.shards.iter().map(|s| s.lock().shard.len()).sum();
        v4 + v6
    }

    #[inline]
    pub(crate) fn hash<A: Addr>(&self, k: &Key<A>) -> u64 {
        k.symmetric_hash(&self.hasher)
    }

    /// Tracks one frame captured at time `now` (nanoseconds of any monotonic clock).
    ///
    /// Time must not go back from one call to the next, as the kernel's never does. A `now`
    /// earlier than what a shard has seen is taken as that shard's latest time, so a packet's
    /// effect then depends on which connections share its shard, which the random hash seed
    /// decides. A caller reading timestamps it does not control (a capture's) passes the
    /// largest seen so far, as [`crate::capture::Capture::packets_monotonic`] gives them.
    ///
    /// With no helpers configured, the common frame (a plain IPv4 or IPv6 header behind
    /// untagged Ethernet or raw, then TCP or UDP) goes straight to its shard; every other
    /// frame takes the general path, which decides the same for the common one.
    pub fn process(&self, frame: &[u8], link: LinkType, now: Nanos) -> Verdict {
        if self.cfg.helpers.is_empty()
            && let Some(v) = self.process_common(frame, link, now)
        {
            return v;
        }
        match packet::ip_of_frame(frame, link) {
            Some(ip) => self.process_ip(ip, now),
            None => Verdict::SKIPPED,
        }
    }

    /// Which of `queues` worker threads should track `frame`, for embedders that spread traffic
    /// over threads the way a NIC's receive-side scaling does.
    ///
    /// Both directions of a connection get the same queue, and two queues never share a shard
    /// of the table, so workers that follow this never wait for each other's locks or pull each
    /// other's cache lines. TCP and UDP go by their connection's shard; other packets (ICMP,
    /// fragments, other protocols) by their address pair only, so an ICMP error may land on
    /// another queue than its connection, which is correct (every shard is locked) but shares
    /// a shard for that packet. Following it is optional: any split of the traffic that keeps
    /// each connection's packets in order on one thread gets the same verdicts.
    ///
    /// ```
    /// use ctrack::{Conntrack, Config, LinkType};
    /// let ct = Conntrack::new(Config::default());
    /// // 10.0.0.1:1000 -> 10.0.0.2:80 UDP, and its reply.
    /// let mut a = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// a.extend([0x03, 0xe8, 0, 80, 0, 8, 0, 0]);
    /// let mut b = a.clone();
    /// b[12..16].copy_from_slice(&[10, 0, 0, 2]);
    /// b[16..20].copy_from_slice(&[10, 0, 0, 1]);
    /// b[20..24].copy_from_slice(&[0, 80, 0x03, 0xe8]);
    /// let q = ct.queue_of(&a, LinkType::Raw, 4);
    /// assert!(q < 4);
    /// assert_eq!(ct.queue_of(&b, LinkType::Raw, 4), q);
    /// ```
    pub fn queue_of(&self, frame: &[u8], link: LinkType, queues: usize) -> usize {
        if queues <= 1 {
            return 0;
        }
        let Some(p) = packet::ip_of_frame(frame, link).and_then(|ip| packet::parse_ip(ip).ok())
        else {
            return 0;
        };
        let ports = p.frag.is_none() && matches!(p.proto, proto::TCP | proto::UDP);
        if p.v6 {
            self.queue_in(&self.v6, &p, ports, queues)
        } else {
            self.queue_in(&self.v4, &p, ports, queues)
        }
    }

    fn queue_in<A: Addr>(
        &self,
        t: &Table<A>,
        p: &IpPacket<'_>,
        ports: bool,
        queues: usize,
    ) -> usize {
        let l4 = p.l4();
        let key = if ports && l4.len() >= 4 {
            port_key::<A>(p, l4, p.proto)
        } else {
            Key {
                src: A::from_bytes(p.src()),
                dst: A::from_bytes(p.dst()),
                ..Key::default()
            }
        };
        t.shard_of(self.hash(&key)) % queues
    }

    /// Tracks one IP packet (starting at its IPv4 or IPv6 header).
    pub fn process_ip(&self, ip: &[u8], now: Nanos) -> Verdict {
        if ip.len() < 20 || !matches!(ip[0] >> 4, 4 | 6) {
            return Verdict::SKIPPED;
        }
        let p = match packet::parse_ip(ip) {
            Ok(p) => p,
            Err(_) => {
                self.stats.bump(Counter::Invalid);
                return Verdict::INVALID;
            }
        };
        if let Some(fi) = p.frag {
            let done = if p.v6 && fi.offset == 0 && crate::defrag::v6_head_truncated(&p) {
                // Never queued.
                Reassembled::Passed
            } else {
                self.frags.lock().add(&p, fi, now)
            };
            return match done {
                Reassembled::Held => Verdict::HELD,
                // Tracked as it is: a fragment past the first has no upper-layer header.
                Reassembled::Passed if fi.offset == 0 => {
                    let v = self.track_packet(&p, now);
                    self.cfg.host.after_tracking(&p, v)
                }
                Reassembled::Passed => self.invalid(),
                Reassembled::Dropped => {
                    self.stats.bump(Counter::Invalid);
                    Verdict::INVALID
                }
                Reassembled::Complete {
                    packet,
                    fragments,
                    max_frag,
                    head_len,
                    first_len,
                } => {
                    let mut frames = fragments;
                    let mut v = match packet::parse_ip(&packet) {
                        // A fragment header left inside (the datagram was fragmented twice)
                        // hides the upper layer when it is not at offset 0, and is followed
                        // by none when it says "no next header".
                        Ok(q)
                            if q.frag
                                .is_none_or(|f| f.offset == 0 && q.proto != NO_NEXT_HEADER) =>
                        {
                            let q = IpPacket {
                                reassembled: true,
                                ..q
                            };
                            let v = self.track_packet(&q, now);
                            let len = packet.len() as u32;
                            if q.v6 && len <= max_frag {
                                // No larger than a fragment it came in: sent on whole.
                                frames = 1;
                            } else if early_demux_pulls(&q, first_len)
                                || self.sctp_checksum_pulls(&q, len, head_len, first_len)
                                || self.helper_linearizes(&q, v)
                            {
                                frames = crate::defrag::refragmented_frames(
                                    q.v6, len, head_len, max_frag,
                                );
                            }
                            v
                        }
                        _ => {
                            self.stats.bump(Counter::Invalid);
                            Verdict::INVALID
                        }
                    };
                    v.frames = frames;
                    v
                }
            };
        }
        let v = self.track_packet(&p, now);
        self.cfg.host.after_tracking(&p, v)
    }

    /// Whether conntrack's SCTP checksum check pulls reassembled datagram `q`'s 12-byte common
    /// header together: with `nf_conntrack_checksum` on, it makes the header writable before it
    /// sums the packet, and when fragment zero carried only `first_len` bytes past the
    /// unfragmentable part (`head_len` of the datagram's `len` bytes), not all of the header,
    /// the datagram no longer has the shape of its fragments and the router cuts it again
    /// itself.
    fn sctp_checksum_pulls(
        &self,
        q: &IpPacket<'_>,
        len: u32,
        head_len: u32,
        first_len: u32,
    ) -> bool {
        const SCTP_HEADER: u32 = 12;
        let l4 = q.l4().len() as u32;
        // Where the SCTP header starts past the unfragmentable part (after any IPv6 extension
        // headers that came in the fragmentable one).
        let at = len.saturating_sub(l4).saturating_sub(head_len);
        self.cfg.sysctl.nf_conntrack_checksum != 0
            && q.proto == proto::SCTP
            && l4 >= SCTP_HEADER
            && first_len < at + SCTP_HEADER
    }

    /// Whether the connection's helper linearised reassembled packet `q` (tracked as `v`),
    /// losing the fragments it came in: the SIP helper does for every UDP packet with a
    /// payload, and the SIP and FTP helpers for TCP segments with one once established.
    #[cold]
    fn helper_linearizes(&self, q: &IpPacket<'_>, v: Verdict) -> bool {
        if self.cfg.helpers.is_empty() || !v.tracked() {
            return false;
        }
        let l4 = q.l4();
        let has_payload = match q.proto {
            proto::UDP => l4.len() > 8,
            proto::TCP => {
                v.state == State::Established
                    && l4.len() > 12
                    && l4.len() > usize::from(l4[12] >> 4) * 4
            }
            _ => false,
        };
        if !has_payload {
            return false;
        }
        let helper = if q.v6 {
            self.helper_of(&self.v6, q, l4)
        } else {
            self.helper_of(&self.v4, q, l4)
        };
        helper.is_some_and(|h| h.name == "sip" || (h.name == "ftp" && q.proto == proto::TCP))
    }

    /// The helper of the connection TCP or UDP packet `p` (layer 4 `l4`) belongs to.
    fn helper_of<A: Addr>(
        &self,
        t: &Table<A>,
        p: &IpPacket<'_>,
        l4: &[u8],
    ) -> Option<&'static ctrack_helpers::Helper> {
        let key = port_key::<A>(p, l4, p.proto);
        let inv = key.inverse()?;
        let h = self.hash(&key);
        let g = t.shards[t.shard_of(h)].lock();
        let f = g.shard.find(h, &key, &inv)?;
        ctrack_helpers::at_index(g.shard.get(f.idx).helper)
    }

    fn track_packet(&self, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        if p.v6 {
            self.track(&self.v6, p, now)
        } else {
            self.track(&self.v4, p, now)
        }
    }

    pub(crate) fn invalid(&self) -> Verdict {
        self.stats.bump(Counter::Invalid);
        Verdict::INVALID
    }

    #[inline]
    fn track<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        match p.proto {
            proto::TCP => self.track_tcp(t, p, now),
            proto::UDP => self.track_udp(t, p, now),
            _ => self.track_other(t, p, now),
        }
    }

    /// TCP: header checks, checksum, then the TCP tracker.
    #[inline(never)]
    fn track_tcp<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        self.track_ready(t, p, self.ready_tcp(p), now)
    }

    /// UDP: header checks, checksum, then the UDP tracker.
    #[inline(never)]
    fn track_udp<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        self.track_ready(t, p, self.ready_udp(p), now)
    }

    /// A TCP or UDP packet whose headers were checked (`ready`): its checksum, its tracker,
    /// then its connection's helper.
    #[inline(always)]
    fn track_ready<A: Addr>(
        &self,
        t: &Table<A>,
        p: &IpPacket<'_>,
        ready: Result<(Ready<'_, A>, Option<PendingSum<'_>>), Verdict>,
        now: Nanos,
    ) -> Verdict {
        match ready {
            Ok((r, sum)) if self.sum_ok(sum) => {
                let h = self.hash(r.key());
                if self.cfg.helpers.is_empty() {
                    return self.run_ready(t, &r, h, now);
                }
                // Whether this packet may create its entry, for a helper that may refuse it
                // (the entry is then never confirmed): a helper is assigned to its port.
                let fresh = ctrack_helpers::assigned(&self.cfg.helpers, r.key.proto, r.key.dport)
                    .is_some()
                    && !self.in_table(t, &r.key, h, now);
                let mark = self.events.as_ref().map_or(0, |q| q.mark());
                let v = self.run_ready(t, &r, h, now);
                self.help(t, &r, p.l4(), v, fresh, now, mark)
            }
            Ok(_) => {
                self.spend_expectation(t, p, now);
                self.invalid()
            }
            Err(v) => {
                self.spend_expectation(t, p, now);
                v
            }
        }
    }

    /// A TCP or UDP packet its tracker refuses (bad header, length or checksum): Linux looks
    /// its connection up before those checks and, finding none, makes one that takes a
    /// pending expectation for its tuple, then throws both away.
    #[cold]
    #[inline(never)]
    fn spend_expectation<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) {
        let l4 = p.l4();
        if self.cfg.helpers.is_empty() || l4.len() < 4 || t.expect.lock().none_pending() {
            return;
        }
        let key = port_key::<A>(p, l4, p.proto);
        let Some(inv) = key.inverse() else {
            return;
        };
        let h = self.hash(&key);
        {
            let mut g = t.shards[t.shard_of(h)].lock();
            self.advance(t, &mut g, now);
            if g.shard.find(h, &key, &inv).is_some() {
                return;
            }
        }
        let mut x = t.expect.lock();
        x.bury(&key, now);
        let _ = x.take(&key, now);
    }

    /// With helpers configured, what a new entry `e` gets: the pending expectation its tuple
    /// takes, if any (EXPECTED, and its master returned), and its helper: the ruleset's for
    /// its port, or else the one the expectation gives. [`NoRoom`] when the memory to record
    /// an expected connection cannot be had: nothing is taken then.
    #[inline(never)]
    fn expected_and_helper<A: Addr>(
        &self,
        t: &Table<A>,
        e: &mut Entry<A>,
        now: Nanos,
    ) -> Result<Option<Key<A>>, NoRoom> {
        let taken = {
            let mut x = t.expect.lock();
            if x.none_pending() {
                None
            } else {
                x.bury(&e.key, now);
                // Room to record the connection as expected, before it takes anything.
                if !x.room_to_adopt(true) {
                    return Err(NoRoom);
                }
                x.take(&e.key, now)
            }
        };
        if taken.is_some() {
            e.status |= status::EXPECTED;
        }
        e.helper = match ctrack_helpers::assigned(&self.cfg.helpers, e.key.proto, e.key.dport) {
            Some(hl) => ctrack_helpers::index_of(hl),
            None => taken.map_or(0, |tk| tk.child_helper),
        };
        Ok(taken.map(|tk| tk.master))
    }

    /// The source key of a version-1 GRE packet with tuple `k` (its destination key set): what
    /// a PPTP master mapped, or 0.
    fn gre_source_key<A: Addr>(&self, t: &Table<A>, k: &Key<A>) -> u16 {
        if self.cfg.helpers.is_empty() {
            return 0;
        }
        let x = t.expect.lock();
        if !x.has_keymap() {
            return 0;
        }
        x.gre_source_key(&k.src, &k.dst, k.dport)
    }

    /// A PPTP call was answered: expect its GRE both ways, keyed by the call IDs (`pac` the
    /// server's, `pns` the client's), and map the keys. Nothing is dropped when this fails.
    #[allow(clippy::too_many_arguments)]
    fn expect_gre<A: Addr>(
        &self,
        t: &Table<A>,
        orig: &Key<A>,
        helper: u8,
        spec: Spec,
        pac: u16,
        pns: u16,
        now: Nanos,
    ) {
        let gre = |src: A, sport: u16, dst: A, dport: u16| Expected {
            src: Some(src),
            sport: Some(sport),
            dst,
            dport,
            zone: orig.zone,
            proto: proto::GRE,
        };
        let to_server = gre(orig.src, pns, orig.dst, pac);
        let to_client = gre(orig.dst, pac, orig.src, pns);
        let spec = Spec {
            gre_call: true,
            ..spec
        };
        let max_total = self.cfg.sysctl.nf_conntrack_expect_max as usize;
        let mut x = t.expect.lock();
        if x.expect(orig, helper, to_server, spec, max_total, now)
            .is_err()
        {
            return;
        }
        if x.expect(orig, helper, to_client, spec, max_total, now)
            .is_err()
        {
            x.unexpect(&to_server, now);
            return;
        }
        let mapped = x.keymap_add(orig, 0, orig.src, orig.dst, pac, pns).is_ok()
            && (x.keymap_add(orig, 1, orig.dst, orig.src, pns, pac).is_ok() || {
                x.keymap_destroy(orig);
                false
            });
        if !mapped {
            x.unexpect(&to_client, now);
            x.unexpect(&to_server, now);
        }
    }

    /// A PPTP call ended: its key mappings go, and in each direction its GRE connection (or,
    /// when there is none, the expectation of it).
    fn pptp_disconnect<A: Addr>(
        &self,
        t: &Table<A>,
        orig: &Key<A>,
        pac: u16,
        pns: u16,
        now: Nanos,
    ) {
        t.expect.lock().keymap_destroy(orig);
        for (src, dst, sport, dport) in [
            (orig.src, orig.dst, pns, pac),
            (orig.dst, orig.src, pac, pns),
        ] {
            let k = Key {
                src,
                dst,
                sport,
                dport,
                zone: orig.zone,
                proto: proto::GRE,
            };
            let Some(inv) = k.inverse() else {
                continue;
            };
            let h = self.hash(&k);
            let mut g = t.shards[t.shard_of(h)].lock();
            // The GRE entry's shard may have seen no packet for a while: brought up to now,
            // its clock gives the time the entry has left, and a timed-out entry is not
            // found (it leaves as timed out, as the kernel's lookup lets it).
            let now = self.advance(t, &mut g, now);
            if let Some(f) = g.shard.find(h, &k, &inv) {
                let expired = g.shard.get(f.idx).expired(now);
                self.drop_entry(t, &mut g, h, f.idx);
                if !expired {
                    continue;
                }
            }
            drop(g);
            t.expect.lock().withdraw(&k, now);
        }
    }

    /// True when the connection of a packet with tuple `k` (hash `h`) is in the table at
    /// `now`: an entry that has timed out but is not swept yet does not count (the packet
    /// will make a new one).
    fn in_table<A: Addr>(&self, t: &Table<A>, k: &Key<A>, h: u64, now: Nanos) -> bool {
        let Some(inv) = k.inverse() else {
            return false;
        };
        let g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        g.shard
            .find(h, k, &inv)
            .is_some_and(|f| !g.shard.get(f.idx).expired(now))
    }

    /// The connection's helper, when it has one, reads a packet its tracker let through (`v`;
    /// `fresh`: the packet found no entry and may have made one), may refresh the connection
    /// (SIP, Amanda) and may announce expectations; the packet is dropped when the helper
    /// refuses it (a command it could not read whole, an expectation it could not add), and a
    /// connection it opened is then never confirmed. The SNMP and NetBIOS-NS helpers are
    /// assigned but announce nothing (they only follow packets the host sends itself).
    /// `mark`: where the event queue stood before the packet was tracked (see
    /// [`EventQueue::mark`]); what the helper changes of the packet's events is among those
    /// queued since.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn help<A: Addr>(
        &self,
        t: &Table<A>,
        r: &Ready<'_, A>,
        l4: &[u8],
        v: Verdict,
        fresh: bool,
        now: Nanos,
        mark: u64,
    ) -> Verdict {
        if !v.tracked() || r.route != Route::Passes {
            return v;
        }
        let Some(inv) = r.key.inverse() else {
            return v;
        };
        let orig = if v.dir == Dir::Original { r.key } else { inv };
        if !self.cfg.host.confirms(&orig.src, &orig.dst) {
            return v;
        }
        let payload = match &r.l4 {
            ReadyL4::Tcp(seg) => l4.get(l4.len().saturating_sub(seg.data_len as usize)..),
            ReadyL4::Udp => l4.get(8..),
        };
        let payload = payload.unwrap_or_default();
        let is_udp = matches!(r.l4, ReadyL4::Udp);
        // Only a connection still in the table has a helper (its tracker may have killed it
        // with this very packet); the SIP and Amanda helpers refresh it before reading.
        let h = self.hash(&orig);
        let (helper, expected) = {
            let mut g = t.shards[t.shard_of(h)].lock();
            let Some(f) = g.shard.find(h, &orig, &inv) else {
                return v;
            };
            let e = g.shard.get(f.idx);
            let (index, expected) = (e.helper, e.status & status::EXPECTED != 0);
            let Some(helper) = ctrack_helpers::at_index(index) else {
                return v;
            };
            let keep = match helper.name {
                "sip" if !payload.is_empty() && (is_udp || v.state == State::Established) => {
                    Some(sip::SIP_TIMEOUT)
                }
                "amanda" if v.dir == Dir::Reply => Some(AMANDA_MASTER_TIMEOUT),
                _ => None,
            };
            if let Some(secs) = keep {
                g.shard
                    .set_expiry(f.idx, now.saturating_add(ctrack_protocols::secs(secs)), now);
                if let Some(q) = &self.events {
                    // The kernel reports the packet's events after its helper has run.
                    q.amend_seconds(&orig.to_tuple(), now, u64::from(secs), mark);
                }
            }
            (helper, expected)
        };
        let out = self.read_for_helper(t, r, helper, &orig, v, payload, expected, now);
        if out.state == State::Dropped && fresh && v.state == State::New {
            // Dropped before it was confirmed: the entry never was. (An entry that was
            // already there keeps living; only the packet is dropped.)
            let slot = &t.shards[t.shard_of(h)];
            let mut g = slot.lock();
            if let Some(f) = g.shard.find(h, &orig, &inv) {
                let e = g.shard.remove(h, f.idx);
                self.forget(t, &e, now);
                self.count.fetch_sub(1, Ordering::Relaxed);
                g.stats.insert -= 1;
                if let Some(q) = &self.events {
                    q.retract_new(&orig.to_tuple(), mark);
                }
            }
        } else if out.state == State::Dropped
            && let Some(q) = &self.events
            && let Some(moved) = q.retract_update(&orig.to_tuple(), now, mark)
        {
            // The packet's update waits for the entry's next packet that gets through.
            let mut g = t.shards[t.shard_of(h)].lock();
            if let Some(f) = g.shard.find(h, &orig, &inv) {
                let e = g.shard.get_mut(f.idx);
                e.status |= status::UNREPORTED;
                if moved {
                    e.status |= status::UNREPORTED_STATE;
                }
            }
        }
        out
    }

    /// What `helper` makes of a packet of its master `orig` (see [`Conntrack::help`]):
    /// `payload` is the layer-4 payload, `expected` the master's EXPECTED status.
    #[allow(clippy::too_many_arguments)]
    fn read_for_helper<A: Addr>(
        &self,
        t: &Table<A>,
        r: &Ready<'_, A>,
        helper: &'static ctrack_helpers::Helper,
        orig: &Key<A>,
        v: Verdict,
        payload: &[u8],
        expected: bool,
        now: Nanos,
    ) -> Verdict {
        let index = ctrack_helpers::index_of(helper);
        let max_total = self.cfg.sysctl.nf_conntrack_expect_max as usize;
        let plain = |class| policy_spec(helper, class);
        let tcp_from = |src: Option<A>, dst: A, dport: u16| Expected {
            src,
            sport: None,
            dst,
            dport,
            zone: orig.zone,
            proto: proto::TCP,
        };
        match (helper.name, &r.l4) {
            ("ftp", ReadyL4::Tcp(seg)) => {
                if v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let (dir, sender) = (v.dir, r.key.src);
                let mut x = t.expect.lock();
                let mut out = v;
                // Without the memory for what it remembers, the segment is dropped.
                let Some(master) = x.master(orig) else {
                    return Verdict::DROPPED;
                };
                if master.lines.starts_line(dir, seg.seq) {
                    match ftp::parse(dir, payload, A::V6) {
                        ftp::Found::Nothing => {}
                        // The kernel drops it, and remembers nothing of it.
                        ftp::Found::Partial => return Verdict::DROPPED,
                        ftp::Found::Address { v4, v6, port } => {
                            let announced = match (v4, v6) {
                                (Some(a), _) => {
                                    // Over IPv6, the IPv4 address lands on the first four
                                    // bytes of the sender's.
                                    let mut bytes = pad16(sender.as_ref());
                                    bytes[..4].copy_from_slice(&a);
                                    A::from_bytes(&bytes)
                                }
                                (None, Some(a)) => A::from_bytes(&a),
                                (None, None) => sender,
                            };
                            // An address other than the sender's is not followed.
                            if announced == sender {
                                let e = tcp_from(Some(r.key.dst), sender, port);
                                if x.expect(orig, index, e, plain(0), max_total, now).is_err() {
                                    out = Verdict::DROPPED;
                                }
                            }
                        }
                    }
                }
                if let Some(master) = x.master(orig) {
                    master.lines.note_segment(dir, seg.seq, payload);
                }
                out
            }
            ("tftp", ReadyL4::Udp) => {
                if !tftp::is_request(payload) {
                    return v;
                }
                // The transfer comes back from the server, from any port, to the client's.
                let e = Expected {
                    proto: proto::UDP,
                    ..tcp_from(Some(orig.dst), orig.src, orig.sport)
                };
                let mut x = t.expect.lock();
                match x.expect(orig, index, e, plain(0), max_total, now) {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("irc", ReadyL4::Tcp(_)) => {
                // Client to server only, once both ways have been seen; IPv4 only.
                if A::V6 || v.dir != Dir::Original || v.state != State::Established {
                    return v;
                }
                let client = orig.src;
                // The first offer read decides: one naming another address (or port zero)
                // ends the reading, as kernels since 2026 do.
                let offer = irc::offer(payload)
                    .filter(|&(ip, port)| A::from_bytes(&pad16(&ip)) == client && port != 0);
                let Some((_, port)) = offer else {
                    return v;
                };
                // To the client, from anywhere.
                let e = tcp_from(None, client, port);
                match t
                    .expect
                    .lock()
                    .expect(orig, index, e, plain(0), max_total, now)
                {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("amanda", ReadyL4::Udp) => {
                if v.dir != Dir::Reply || payload.is_empty() {
                    return v;
                }
                let mut out = v;
                let mut x = t.expect.lock();
                for port in amanda::ports(payload) {
                    let e = tcp_from(Some(orig.src), orig.dst, port);
                    if x.expect(orig, index, e, plain(0), max_total, now).is_err() {
                        out = Verdict::DROPPED;
                    }
                }
                out
            }
            ("sane", ReadyL4::Tcp(_)) => {
                if v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let mut x = t.expect.lock();
                let Some(master) = x.master(orig) else {
                    return Verdict::DROPPED;
                };
                if v.dir == Dir::Original {
                    master.sane.client(payload);
                    return v;
                }
                let Some(port) = master.sane.server(payload) else {
                    return v;
                };
                // The client opens the data connection to the server.
                let e = tcp_from(Some(orig.src), orig.dst, port);
                match x.expect(orig, index, e, plain(0), max_total, now) {
                    Ok(()) => v,
                    Err(_) => Verdict::DROPPED,
                }
            }
            ("sip", l4) => {
                // Over TCP, established connections only.
                let tcp = matches!(l4, ReadyL4::Tcp(_));
                if tcp && v.state != State::Established {
                    return v;
                }
                let mut x = t.expect.lock();
                let Some(mut m) = x.master(orig).map(|m| m.sip) else {
                    return Verdict::DROPPED;
                };
                let conn = sip::Conn {
                    v6: A::V6,
                    src: pad16(r.key.src.as_ref()),
                    dst: pad16(r.key.dst.as_ref()),
                    expected,
                };
                let mut table = SipTable {
                    x: &mut x,
                    master: *orig,
                    helper,
                    peer: r.key.dst,
                    max_total,
                    now,
                };
                let outcome = if tcp {
                    sip::help_tcp(&mut m, &conn, payload, &mut table)
                } else {
                    sip::help_udp(&mut m, &conn, payload, &mut table)
                };
                if let Some(master) = x.master(orig) {
                    master.sip = m;
                }
                match outcome {
                    sip::Outcome::Accept => v,
                    sip::Outcome::Drop => Verdict::DROPPED,
                }
            }
            ("pptp", ReadyL4::Tcp(_)) => {
                // IPv4 only; once both ways have been seen; never dropped.
                if A::V6 || v.state != State::Established || payload.is_empty() {
                    return v;
                }
                let from_client = v.dir == Dir::Original;
                let act = (t.expect.lock().master(orig)).map(|m| m.pptp.read(from_client, payload));
                let Some(act) = act else {
                    return Verdict::DROPPED;
                };
                match act {
                    pptp::Action::None => {}
                    pptp::Action::ExpectGre { pac, pns } => {
                        self.expect_gre(t, orig, index, plain(0), pac, pns, now);
                    }
                    pptp::Action::Disconnect { pac, pns } => {
                        self.pptp_disconnect(t, orig, pac, pns, now)
                    }
                }
                v
            }
            _ => v,
        }
    }

    /// Verifies a checksum [`Conntrack::ready_tcp`] or [`Conntrack::ready_udp`] left pending
    /// (a failure is the caller's to count as invalid).
    #[inline(always)]
    pub(crate) fn sum_ok(&self, sum: Option<PendingSum<'_>>) -> bool {
        sum.is_none_or(|s| s.ok())
    }

    /// Checks a TCP segment's header and flags and builds its tuple; the checksum, when the
    /// sysctl asks for one, is returned for the caller to verify with [`Conntrack::sum_ok`]
    /// once it has stored the rest.
    #[inline(always)]
    pub(crate) fn ready_tcp<'a, A: Addr>(
        &self,
        p: &IpPacket<'a>,
    ) -> Result<(Ready<'a, A>, Option<PendingSum<'a>>), Verdict> {
        let l4 = p.l4();
        // A segment shorter than its header has no tuple either: invalid both ways.
        let Ok(seg) = tcp::parse(l4) else {
            return Err(self.invalid());
        };
        let sum = (self.cfg.sysctl.nf_conntrack_checksum != 0)
            .then(|| PendingSum::new(p, proto::TCP, l4.len(), l4));
        let r = Ready {
            key: port_key(p, l4, proto::TCP),
            len: p.data.len() as u32,
            route: self.cfg.host.route(p),
            l4: ReadyL4::Tcp(seg),
        };
        Ok((r, sum))
    }

    /// Checks a UDP datagram's header and length and builds its tuple; the checksum as for
    /// [`Conntrack::ready_tcp`].
    #[inline(always)]
    pub(crate) fn ready_udp<'a, A: Addr>(
        &self,
        p: &IpPacket<'a>,
    ) -> Result<(Ready<'a, A>, Option<PendingSum<'a>>), Verdict> {
        let l4 = p.l4();
        let scope = match udp::check_udp(l4) {
            Ok(scope) => scope,
            Err(_) => return Err(self.invalid()),
        };
        let sum = match scope {
            udp::ChecksumScope::Bytes(n) if self.cfg.sysctl.nf_conntrack_checksum != 0 => {
                Some(PendingSum::new(p, proto::UDP, l4.len(), &l4[..n]))
            }
            _ => None,
        };
        let r = Ready {
            key: port_key(p, l4, proto::UDP),
            len: p.data.len() as u32,
            route: self.cfg.host.route(p),
            l4: ReadyL4::Udp,
        };
        Ok((r, sum))
    }

    /// Locks the shard of a ready packet (hash `h`) and tracks it.
    #[inline]
    fn run_ready<A: Addr>(&self, t: &Table<A>, r: &Ready<'_, A>, h: u64, now: Nanos) -> Verdict {
        let slot = &t.shards[t.shard_of(h)];
        let mut g = slot.lock();
        self.run_ready_locked(t, slot, &mut g, r, h, NIL, now)
    }

    /// Brings a locked shard up to `now`: its clock (which never goes back), and the entries
    /// whose time has come. Returns the shard's time. Until the time moves on, doing it again
    /// changes nothing.
    #[inline(always)]
    pub(crate) fn advance<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, now: Nanos) -> Nanos {
        let now = now.max(sb.shard.clock);
        sb.shard.clock = now;
        if sb.shard.timers_due(now) {
            self.sweep(t, sb, now, false);
        }
        now
    }

    /// Takes the entries of a locked shard that have timed out by `now` out of it. The kernel
    /// counts them against `nf_conntrack_max` until its collector's next run (or something
    /// else meeting them; see [`ShardBox::zombies`]), so they stay counted until then; its
    /// runs since their timeouts have reaped them. Returns how many left the shard.
    /// `collect`: a collection of the whole table ([`Conntrack::expire`]), for which the
    /// expectations learn that the entries have left (see [`Conntrack::forget`]), not only
    /// that they were swept.
    fn sweep<A: Addr>(
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
        let expired = sb.shard.expire(now, &hash, |e, c| {
            if collect {
                self.forget(t, e, now);
            } else {
                self.swept(t, e, now);
            }
            self.report_gone(staged, e, c, now);
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
    fn draw_zombie<A: Addr>(sb: &ShardBox<A>, x: &mut u64) -> bool {
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
    fn reap_zombie<A>(&self, sb: &mut ShardBox<A>) {
        if sb.zombies != 0 {
            sb.zombies -= 1;
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Lets the expectations know that entry `e` has left the table (only masters and
    /// expected connections concern them).
    #[inline]
    fn forget<A: Addr>(&self, t: &Table<A>, e: &Entry<A>, now: Nanos) {
        let (master, child) = (e.helper != 0, e.status & status::EXPECTED != 0);
        if master || child {
            t.expect.lock().forget(&e.key, master, child, now);
        }
    }

    /// Lets the expectations know that entry `e` expired and its shard swept it out (see
    /// [`Expectations::swept`](crate::expect::Expectations::swept)).
    #[inline]
    fn swept<A: Addr>(&self, t: &Table<A>, e: &Entry<A>, now: Nanos) {
        let (master, child) = (e.helper != 0, e.status & status::EXPECTED != 0);
        if master || child {
            t.expect.lock().swept(&e.key, master, child, now);
        }
    }

    /// Removes entry `i` (hash `h`) from its shard, with everything that goes with it.
    fn drop_entry<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, h: u64, i: u32) {
        if let Some(q) = &self.events {
            let clock = sb.shard.clock;
            self.report(q, EventKind::Destroy, sb, i, clock, true);
        }
        let e = sb.shard.remove(h, i);
        self.forget(t, &e, sb.shard.clock);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues an event of `kind` for entry `i` of a locked shard, as it is at `now`
    /// (`state_changed`: its protocol state changed; see [`Event::state_changed`]).
    #[cold]
    #[inline(never)]
    fn report<A: Addr>(
        &self,
        q: &EventQueue,
        kind: EventKind,
        sb: &mut ShardBox<A>,
        i: u32,
        now: Nanos,
        state_changed: bool,
    ) {
        let shard = &sb.shard;
        stage(q, &mut sb.staged, || Event {
            kind,
            time: now,
            entry: EntryView::new(shard.get(i), now, shard.counters(i).copied(), shard.born(i)),
            state_changed,
        });
    }

    /// Whether a packet with tuple `key` (in its own direction) gets through the host, to
    /// where the kernel reports its events: routed (see [`HostModel::route`]) from a source to
    /// a destination the host accepts (see [`HostModel::confirms`]), or answered with an ICMP
    /// error of the host's own, which carries the connection out.
    #[cold]
    #[inline(never)]
    fn passes<A: Addr>(&self, route: Route, key: &Key<A>) -> bool {
        match route {
            Route::Answered => true,
            Route::Dropped => false,
            Route::Passes => {
                self.cfg.host.confirms(&key.src, &key.dst)
                    || self.cfg.host.answers(&key.src, &key.dst)
            }
        }
    }

    /// Reports the update of entry `i` by a packet: when the packet changed its status bits
    /// (from `before`) or moved its protocol state (`moved`, see [`Accept::changed`]), or an
    /// earlier packet's change is still unreported. A packet the host drops after tracking
    /// (`passes` false) reports nothing: its change waits, as the kernel keeps it for the
    /// entry's next packet that gets through.
    #[cold]
    #[inline(never)]
    fn report_change<A: Addr>(
        &self,
        sb: &mut ShardBox<A>,
        i: u32,
        before: u8,
        moved: bool,
        passes: bool,
        now: Nanos,
    ) {
        let Some(q) = &self.events else {
            return;
        };
        let e = sb.shard.get_mut(i);
        let changed = moved || (e.status ^ before) & status::KERNEL != 0;
        if !passes {
            if changed {
                e.status |= status::UNREPORTED;
                if moved {
                    e.status |= status::UNREPORTED_STATE;
                }
            }
            return;
        }
        if !changed && e.status & status::UNREPORTED == 0 {
            return;
        }
        let state_changed = moved || e.status & status::UNREPORTED_STATE != 0;
        e.status &= !(status::UNREPORTED | status::UNREPORTED_STATE);
        self.report(q, EventKind::Update, sb, i, now, state_changed);
    }

    /// Reports that entry `e` (its counters `c`) timed out and left the table (`staged`: its
    /// locked shard's staged events).
    #[inline]
    fn report_gone<A: Addr>(
        &self,
        staged: &mut VecDeque<Event>,
        e: &Entry<A>,
        c: Option<Counters>,
        now: Nanos,
    ) {
        if let Some(q) = &self.events {
            stage(q, staged, || Event {
                kind: EventKind::Destroy,
                time: now,
                entry: EntryView::new(e, now, c, None),
                state_changed: true,
            });
        }
    }

    /// The batch's common case, tried before [`Conntrack::run_ready_locked`]: the entry at slab
    /// index `hint` is the packet's, and its tracker refreshes it without the general decision
    /// (see [`Shard::refresh_at`]). `now` is the shard's time from [`Conntrack::advance`].
    /// `None` (nothing changed) leaves the packet to the general path. `FRESH`: the packet's
    /// tuple was just stored (a frame tracked on its own; see [`Shard::refresh_with`]).
    #[inline(always)]
    pub(crate) fn run_refresh<A: Addr, const FRESH: bool>(
        &self,
        sb: &mut ShardBox<A>,
        r: &Ready<'_, A>,
        hint: u32,
        now: Nanos,
    ) -> Option<Verdict> {
        if hint == NIL || self.gc.owed(sb.gc_swept, now).is_some() {
            // No entry to try, or the general path owes a collection step first.
            return None;
        }
        if self.events.is_some() {
            // Apart, so that the common case keeps nothing live for the report.
            return self.run_refresh_reporting::<A, FRESH>(sb, r, hint, now);
        }
        let (dir, before, after) = self.refresh_hinted::<A, FRESH>(sb, r, hint, now)?;
        Some(refreshed(dir, before, after))
    }

    /// [`Conntrack::run_refresh`] with an event stream: reports the update of an entry whose
    /// status the packet changed (its first reply, or ASSURED).
    #[inline(never)]
    fn run_refresh_reporting<A: Addr, const FRESH: bool>(
        &self,
        sb: &mut ShardBox<A>,
        r: &Ready<'_, A>,
        hint: u32,
        now: Nanos,
    ) -> Option<Verdict> {
        let (dir, before, after) = self.refresh_hinted::<A, FRESH>(sb, r, hint, now)?;
        if before != after || before & status::UNREPORTED != 0 {
            let passes = self.passes(r.route, &r.key);
            self.report_change(sb, hint, before, false, passes, now);
        }
        Some(refreshed(dir, before, after))
    }

    /// The fast refresh itself (see [`Conntrack::run_refresh`]): the direction and the status
    /// bits before and after.
    #[inline(always)]
    fn refresh_hinted<A: Addr, const FRESH: bool>(
        &self,
        sb: &mut ShardBox<A>,
        r: &Ready<'_, A>,
        hint: u32,
        now: Nanos,
    ) -> Option<(Dir, u8, u8)> {
        let s = &self.cfg.sysctl;
        let found = match &r.l4 {
            ReadyL4::Tcp(seg) => sb.shard.refresh_with::<FRESH>(
                hint,
                &r.key,
                now,
                r.len,
                #[inline(always)]
                |st, ctx| refresh_tcp(st, seg, ctx, s),
            ),
            ReadyL4::Udp => sb.shard.refresh_with::<FRESH>(
                hint,
                &r.key,
                now,
                r.len,
                #[inline(always)]
                |st, ctx| refresh_udp(st, ctx, s),
            ),
        }?;
        sb.stats.found += 1;
        self.lookup_found(sb);
        Some(found)
    }

    /// Tracks a ready packet in its shard, already locked.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn run_ready_locked<A: Addr>(
        &self,
        t: &Table<A>,
        slot: &Slot<A>,
        sb: &mut ShardBox<A>,
        r: &Ready<'_, A>,
        h: u64,
        hint: u32,
        now: Nanos,
    ) -> Verdict {
        let s = &self.cfg.sysctl;
        match &r.l4 {
            ReadyL4::Tcp(seg) => self.conn_locked(
                t,
                slot,
                sb,
                r.key,
                h,
                hint,
                now,
                r.len,
                r.route,
                #[inline(always)]
                |st, ctx| refresh_tcp(st, seg, ctx, s),
                |st, _, ctx| match st {
                    ProtoState::Tcp(st) => {
                        let v = tcp::track_full(st, seg, ctx, s);
                        (v.decision, v.lower_timeout)
                    }
                    _ => (Decision::Invalid, None),
                },
                || match tcp::open_syn(seg, s) {
                    Some((st, r)) => Open::Decided(ProtoState::Tcp(st), r),
                    None => tcp::new_conn(seg, s)
                        .map_or(Open::Refused, |st| Open::Track(ProtoState::Tcp(st))),
                },
            ),
            ReadyL4::Udp => self.conn_locked(
                t,
                slot,
                sb,
                r.key,
                h,
                hint,
                now,
                r.len,
                r.route,
                #[inline(always)]
                |st, ctx| refresh_udp(st, ctx, s),
                |st, _, ctx| match st {
                    ProtoState::Udp(u) => (udp::track(u, ctx, s), None),
                    _ => (Decision::Invalid, None),
                },
                || Open::Track(ProtoState::Udp(Default::default())),
            ),
        }
    }

    /// Every other protocol: UDP-Lite, ICMP and ICMPv6 (with errors), GRE, generic.
    #[inline(never)]
    fn track_other<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        let s = &self.cfg.sysctl;
        let l4 = p.l4();
        let cksum = s.nf_conntrack_checksum != 0;
        let mut key = Key {
            src: A::from_bytes(p.src()),
            dst: A::from_bytes(p.dst()),
            sport: 0,
            dport: 0,
            zone: 0,
            proto: p.proto,
        };
        let ports = |key: &mut Key<A>| -> bool {
            if l4.len() < 4 {
                return false;
            }
            key.sport = u16::from_be_bytes([l4[0], l4[1]]);
            key.dport = u16::from_be_bytes([l4[2], l4[3]]);
            true
        };
        let input = match p.proto {
            proto::UDPLITE => {
                if !ports(&mut key) {
                    return self.invalid();
                }
                match udp::check_udplite(l4) {
                    Err(_) => return self.invalid(),
                    Ok(udp::ChecksumScope::Bytes(n)) if cksum => {
                        if !packet::l4_checksum_ok(p, p.proto, l4.len(), &l4[..n]) {
                            return self.invalid();
                        }
                    }
                    Ok(_) => {}
                }
                Input::UdpLite
            }
            proto::ICMP | proto::ICMPV6 => {
                // ICMP of the other family is not the ICMP tracker's: without a tuple it is
                // invalid like any packet. Our own family's header must be whole.
                let own = (p.proto == proto::ICMPV6) == A::V6;
                if !own {
                    return self.invalid();
                }
                let (Some(&ty), Some(&code), Some(inner)) = (l4.first(), l4.get(1), l4.get(8..))
                else {
                    return self.icmp_refused();
                };
                if cksum {
                    let ok = if A::V6 {
                        packet::l4_checksum_ok(p, p.proto, l4.len(), l4)
                    } else {
                        packet::plain_checksum_ok(l4)
                    };
                    if !ok {
                        return self.icmp_refused();
                    }
                }
                if A::V6 && ty == icmp::V6_REDIRECT {
                    let hop_limit = p.data.get(7).copied().unwrap_or(0);
                    return match icmp_error::v6_redirect(l4, hop_limit, p.src()) {
                        Redirect::Quoted(q) => self.icmp_error(t, p, q, now),
                        Redirect::Refused => self.icmp_refused(),
                        Redirect::NotError => self.invalid(),
                    };
                }
                let class = if A::V6 {
                    icmp::classify_v6(ty)
                } else {
                    icmp::classify_v4(ty)
                };
                match class {
                    Class::Untracked => return Verdict::UNTRACKED,
                    Class::Error => return self.icmp_error(t, p, inner, now),
                    // Types past the last known one are refused as bad ICMP; the others
                    // (router advertisement and such) merely have no tuple.
                    Class::Invalid if !A::V6 && ty > icmp::V4_MAX_TYPE => {
                        return self.icmp_refused();
                    }
                    Class::Invalid => return self.invalid(),
                    Class::Query { .. } | Class::Answer { .. } => {}
                }
                let (Some(&id0), Some(&id1)) = (l4.get(4), l4.get(5)) else {
                    return self.icmp_refused();
                };
                key.sport = u16::from_be_bytes([id0, id1]);
                key.dport = (ty as u16) << 8 | code as u16;
                Input::Icmp
            }
            proto::GRE => {
                match gre::key(l4) {
                    gre::GreKey::Unsupported => return self.invalid(),
                    gre::GreKey::Unkeyed => {}
                    gre::GreKey::CallId(k) => {
                        key.dport = k;
                        key.sport = self.gre_source_key(t, &key);
                    }
                }
                Input::Gre
            }
            proto::SCTP => {
                if !ports(&mut key) {
                    return self.invalid();
                }
                let Ok(pkt) = sctp::parse(l4) else {
                    return self.invalid();
                };
                if cksum && !sctp::checksum_ok(l4) {
                    return self.invalid();
                }
                Input::Sctp(pkt)
            }
            _ => Input::Generic,
        };
        self.conn(
            t,
            key,
            self.hash(&key),
            now,
            p.data.len() as u32,
            self.cfg.host.route(p),
            |st, k, ctx| run_tracker(st, k, input, ctx, s),
            || {
                Open::Track(match input {
                    Input::Gre => ProtoState::Gre(Default::default()),
                    Input::Sctp(_) => ProtoState::Sctp(Default::default()),
                    Input::UdpLite | Input::Icmp | Input::Generic => ProtoState::None,
                })
            },
        )
    }

    /// Looks the connection (hash `h`) up, runs its tracker and applies the decision.
    /// `track` runs the protocol's tracker on an entry's state and original tuple (returning
    /// the decision and, for TCP, a timeout to impose even on an invalid packet); `init` opens
    /// a new entry (see [`Open`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn conn<A: Addr>(
        &self,
        t: &Table<A>,
        key: Key<A>,
        h: u64,
        now: Nanos,
        len: u32,
        route: Route,
        track: impl FnMut(&mut ProtoState, &Key<A>, &Ctx) -> (Decision, Option<Nanos>),
        init: impl FnOnce() -> Open,
    ) -> Verdict {
        let slot = &t.shards[t.shard_of(h)];
        let mut g = slot.lock();
        self.conn_locked(
            t,
            slot,
            &mut g,
            key,
            h,
            NIL,
            now,
            len,
            route,
            |_, _| None,
            track,
            init,
        )
    }

    /// [`Conntrack::conn`] with the shard already locked.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn conn_locked<A: Addr>(
        &self,
        t: &Table<A>,
        slot: &Slot<A>,
        sb: &mut ShardBox<A>,
        key: Key<A>,
        h: u64,
        hint: u32,
        now: Nanos,
        len: u32,
        route: Route,
        mut fast: impl FnMut(&mut ProtoState, &Ctx) -> Option<Refresh>,
        mut track: impl FnMut(&mut ProtoState, &Key<A>, &Ctx) -> (Decision, Option<Nanos>),
        init: impl FnOnce() -> Open,
    ) -> Verdict {
        let Some(inv) = key.inverse() else {
            return self.invalid();
        };
        let now = self.advance(t, sb, now);
        if let Some(pass) = self.gc.owed(sb.gc_swept, now) {
            self.gc_step(t, sb, pass, now);
        }
        let found = match sb.shard.find_hinted(hint, h, &key, &inv) {
            Some(f) if sb.shard.get(f.idx).expired(now) => {
                self.drop_entry(t, sb, h, f.idx);
                None
            }
            f => f,
        };
        let Some(Found { idx, dir }) = found else {
            return self.create(t, slot, sb, h, key, now, len, route, &mut track, init);
        };
        sb.stats.found += 1;
        // The batch has tried the hinted entry already (`run_refresh`); the general decision
        // agrees with the fast one wherever that one answers, so skipping it is only slower.
        if idx != hint
            && let Some((dir, before, after)) = sb.shard.refresh_at(idx, &key, now, len, &mut fast)
        {
            if self.events.is_some() && (before != after || before & status::UNREPORTED != 0) {
                let passes = self.passes(route, &key);
                self.report_change(sb, idx, before, false, passes, now);
            }
            self.lookup_found(sb);
            return refreshed(dir, before, after);
        }
        self.lookup_found(sb);
        let e = sb.shard.get_mut(idx);
        let ctx = e.ctx(dir, now);
        let state = state_of(dir, e.status);
        let was = if self.events.is_some() {
            Some(Was {
                status: e.status,
                phase: phase(&e.proto),
                passes: self.passes(route, &key),
            })
        } else {
            None
        };
        let (d, lower) = track(&mut e.proto, &e.key, &ctx);
        match d {
            Decision::Accept(a) => self.apply(t, sb, h, idx, dir, state, a, now, len, was),
            Decision::Ignore => {
                sb.stats.ignore += 1;
                let e = sb.shard.get_mut(idx);
                if dir == Dir::Reply {
                    e.status |= status::SEEN_REPLY;
                }
                let v = verdict_of(e, state, dir);
                if let Some(was) = was {
                    // A retransmitted SYN the tracker ignores may still have moved the state
                    // (SYN_SENT to SYN_SENT2).
                    let moved = phase(&sb.shard.get(idx).proto) != was.phase;
                    self.report_change(sb, idx, was.status, moved, was.passes, now);
                }
                v
            }
            Decision::Invalid => {
                if let Some(t) = lower {
                    sb.shard.set_expiry(idx, now.saturating_add(t), now);
                }
                sb.stats.invalid += 1;
                Verdict::INVALID
            }
            Decision::Reopen => {
                // The kernel kills the entry and looks the packet up again, which finds
                // nothing now (a tuple is in the table once): a new connection.
                self.drop_entry(t, sb, h, idx);
                sb.stats.search_restart += 1;
                self.create(t, slot, sb, h, key, now, len, route, &mut track, init)
            }
        }
    }

    /// Applies an accepted decision to a confirmed entry.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn apply<A: Addr>(
        &self,
        t: &Table<A>,
        sb: &mut ShardBox<A>,
        h: u64,
        idx: u32,
        dir: Dir,
        state: State,
        a: Accept,
        now: Nanos,
        len: u32,
        was: Option<Was>,
    ) -> Verdict {
        sb.shard.count_packet(idx, dir, len);
        if let Some(t) = a.timeout {
            sb.shard.set_expiry(idx, now.saturating_add(t), now);
        }
        let e = sb.shard.get_mut(idx);
        let before = e.status;
        if a.assured {
            e.status |= status::ASSURED;
        }
        if dir == Dir::Reply {
            e.status |= status::SEEN_REPLY;
        }
        let v = verdict_of(e, state, dir);
        if a.kill {
            // The kernel kills the entry before the packet's status bits are set, and
            // reports only its destruction.
            e.status = before;
            self.drop_entry(t, sb, h, idx);
        } else if let Some(was) = was {
            let moved = a.changed || phase(&sb.shard.get(idx).proto) != was.phase;
            self.report_change(sb, idx, was.status, moved, was.passes, now);
        }
        v
    }

    /// The first packet of a connection: make an entry, track it, confirm it. Out of line, so
    /// that the lookup of an existing connection keeps its registers.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn create<A: Addr>(
        &self,
        t: &Table<A>,
        slot: &Slot<A>,
        sb: &mut ShardBox<A>,
        h: u64,
        key: Key<A>,
        now: Nanos,
        len: u32,
        route: Route,
        track: &mut impl FnMut(&mut ProtoState, &Key<A>, &Ctx) -> (Decision, Option<Nanos>),
        init: impl FnOnce() -> Open,
    ) -> Verdict {
        // The kernel's lookup that found no entry walked the tuple's whole hash chain,
        // reaping the timed-out entries it met there.
        if sb.zombies != 0 {
            self.lookup_reaps(t, sb, h);
        }
        // Table limit, checked as the kernel does when it allocates the entry.
        if !self.claim(sb) {
            if self.early_drop(t, sb, h, now) {
                // The unit the evicted entries gave back.
                self.count.fetch_add(1, Ordering::Relaxed);
            } else {
                return self.table_full(sb);
            }
        }
        // The memory for the entry, also taken now: when it cannot be had, the packet is
        // dropped as the kernel drops it when its allocation fails, and nothing tracked is
        // lost.
        let hash = |k: &Key<A>| self.hash(k);
        if sb.shard.make_room(&hash).is_err() {
            return self.out_of_memory(sb);
        }
        let mut e = Entry::new(key);
        // A pending expectation is taken by the new connection whatever its tracker then
        // decides, as the kernel takes it when it allocates the entry.
        let master = if self.cfg.helpers.is_empty() {
            None
        } else {
            match self.expected_and_helper(t, &mut e, now) {
                Ok(m) => m,
                Err(NoRoom) => return self.out_of_memory(sb),
            }
        };
        let decided = match init() {
            Open::Decided(st, r) => {
                e.proto = st;
                Decision::Accept(r.into())
            }
            Open::Track(st) => {
                e.proto = st;
                track(&mut e.proto, &e.key, &Ctx::opening(now)).0
            }
            Open::Refused => Decision::Invalid,
        };
        let a = match decided {
            Decision::Accept(a) => a,
            Decision::Ignore | Decision::Invalid | Decision::Reopen => {
                self.count.fetch_sub(1, Ordering::Relaxed);
                sb.stats.invalid += 1;
                return Verdict::INVALID;
            }
        };
        e.expires = now.saturating_add(a.timeout.unwrap_or(0));
        if a.assured {
            e.status |= status::ASSURED;
        }
        let v = verdict_of(&e, state_of(Dir::Original, e.status), Dir::Original);
        if a.kill || route != Route::Passes || !self.cfg.host.confirms(&key.src, &key.dst) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return v;
        }
        let helped = e.helper != 0;
        let Ok(idx) = sb.shard.insert(h, e, now, &hash) else {
            // Never after `make_room` above (nothing has been allocated since).
            return self.out_of_memory(sb);
        };
        sb.shard.count_packet(idx, Dir::Original, len);
        slot.publish(sb);
        sb.stats.insert += 1;
        if let Some(q) = &self.events {
            self.report(q, EventKind::New, sb, idx, now, true);
        }
        if let Some(m) = master {
            t.expect.lock().adopt(key, m, helped);
        }
        v
    }

    /// The verdict of a new connection that found the table full with nothing to evict:
    /// dropped, counted as `drop`, and a pressure pass of the garbage collector owed (see
    /// [`GcClock`]), as the drop tells the kernel's collector.
    #[cold]
    fn table_full<A: Addr>(&self, sb: &mut ShardBox<A>) -> Verdict {
        sb.stats.drop += 1;
        self.gc.schedule(sb.shard.clock);
        Verdict::DROPPED
    }

    /// The verdict of a new connection whose entry could not be allocated: dropped, counted
    /// as `drop`, and its unit of `nf_conntrack_max` given back.
    #[cold]
    fn out_of_memory<A>(&self, sb: &mut ShardBox<A>) -> Verdict {
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
    fn claim<A>(&self, sb: &mut ShardBox<A>) -> bool {
        if sb.credit > 0 {
            sb.credit -= 1;
            return true;
        }
        let max = self.cfg.sysctl.nf_conntrack_max as usize;
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
    fn lookup_reaps<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, h: u64) {
        let sizes = chain_sizes(h, seen_size(t, sb), self.cfg.sysctl.nf_conntrack_buckets);
        let mut z = h ^ 0xbb67_ae85_84ca_a73b;
        for _ in 0..sizes[0] {
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
    fn lookup_found<A>(&self, sb: &mut ShardBox<A>) {
        if sb.zombies != 0 {
            self.found_reaps(&mut sb.zombies, &mut sb.reap_draw);
        }
    }

    /// [`Conntrack::lookup_found`]'s reaping, out of line: zombies only come with timeouts.
    #[cold]
    #[inline(never)]
    fn found_reaps(&self, zombies: &mut u32, draw: &mut u64) {
        let all = u64::from(*zombies).saturating_mul(self.v4.shards.len() as u64);
        let buckets = u64::from(self.cfg.sysctl.nf_conntrack_buckets.max(1));
        *draw = splitmix(*draw);
        let part = ((u128::from(*draw) * u128::from(buckets)) >> 64) as u64;
        let n = (all / buckets + u64::from(part < all % buckets)).min(u64::from(*zombies));
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
    fn early_drop<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, h: u64, now: Nanos) -> bool {
        let sizes = chain_sizes(h, seen_size(t, sb), self.cfg.sysctl.nf_conntrack_buckets);
        let slots = sb.shard.slots() as u64;
        if sb.shard.is_empty() && sb.zombies == 0 {
            return false;
        }
        // The draws, with nothing allocated: a full table under a flood comes here for every
        // new connection. A draw that meets a free slot draws again, a few times at most. A
        // timed-out entry's tuple is marked, and reaped when the walk gets there.
        const ZOMBIE: u32 = NIL - 1;
        let mut picks = [NIL; EVICTION_RANGE * CHAIN_MOST as usize];
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
        for &size in &sizes {
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
    fn gc_step<A: Addr>(&self, t: &Table<A>, sb: &mut ShardBox<A>, pass: u64, now: Nanos) {
        const STEP: u32 = 32;
        let max = self.cfg.sysctl.nf_conntrack_max as usize;
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

    /// An ICMP or ICMPv6 packet refused as a bad or unmatched error. The kernel leaves it
    /// without an entry and counts it as `error` only (not also as `invalid`).
    fn icmp_refused(&self) -> Verdict {
        self.stats.bump(Counter::Error);
        Verdict::INVALID
    }

    /// An ICMP or ICMPv6 error whose quoted packet is `inner`: RELATED to that packet's
    /// connection (reply-side when the quote's inverse is the entry's reply tuple), provided
    /// the error goes where that tuple goes. Never creates, refreshes or changes an entry.
    fn icmp_error<A: Addr>(
        &self,
        t: &Table<A>,
        p: &IpPacket<'_>,
        inner: &[u8],
        now: Nanos,
    ) -> Verdict {
        let Some(quoted) = icmp_error::quoted_tuple::<A>(inner) else {
            return self.icmp_refused();
        };
        // The quote is a packet sent to the error's sender: its inverse is what the table
        // knows; both it and its own inverse are needed to search both directions.
        let (Some(target), Some(target_inv)) =
            (quoted.inverse(), quoted.inverse().and_then(|k| k.inverse()))
        else {
            return self.icmp_refused();
        };
        let h = self.hash(&target);
        let mut g = t.shards[t.shard_of(h)].lock();
        // Expired entries are as good as gone (the kernel's lookup skips them).
        let now = now.max(g.shard.clock);
        let found = g
            .shard
            .find(h, &target, &target_inv)
            .filter(|f| !g.shard.get(f.idx).expired(now));
        let Some(Found { idx, dir }) = found else {
            drop(g);
            return self.icmp_refused();
        };
        let e = g.shard.get(idx);
        // The matched tuple's destination must be where the error is going.
        let dst = if dir == Dir::Original {
            e.key.dst
        } else {
            e.key.src
        };
        if dst.as_ref() != p.dst() {
            drop(g);
            return self.icmp_refused();
        }
        let v = verdict_of(e, State::Related, dir);
        if self.events.is_some() && e.status & status::UNREPORTED != 0 {
            // The error takes its connection out of the host with it: the kernel reports
            // what that connection's dropped packets left unreported.
            let key = Key {
                src: A::from_bytes(p.src()),
                dst: A::from_bytes(p.dst()),
                ..target
            };
            let passes = self.passes(self.cfg.host.route(p), &key);
            let before = e.status;
            self.report_change(&mut g, idx, before, false, passes, now);
        }
        v
    }

    /// Advances every shard's timer wheel to `now`, removing expired entries. Embedders that
    /// go idle call this; packet processing advances the shards it touches by itself.
    pub fn expire(&self, now: Nanos) -> usize {
        let mut n = self.expire_table(&self.v4, now);
        n += self.expire_table(&self.v6, now);
        self.frags.lock().expire(now);
        n
    }

    fn expire_table<A: Addr>(&self, t: &Table<A>, now: Nanos) -> usize {
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

    fn reserve_in<A: Addr>(
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

    /// Bytes of memory held by the tables (entries, indexes, wheels).
    pub fn memory(&self) -> usize {
        let mut n = 0;
        for sh in self.v4.shards.iter() {
            n += sh.lock().shard.memory();
        }
        for sh in self.v6.shards.iter() {
            n += sh.lock().shard.memory();
        }
        n
    }

    /// Calls `f` for every live entry at time `now` (expired entries are skipped, as
    /// `/proc/net/nf_conntrack` skips them).
    pub fn for_each_entry(&self, now: Nanos, mut f: impl FnMut(crate::format::EntryView)) {
        self.each_in(&self.v4, now, &mut f);
        self.each_in(&self.v6, now, &mut f);
    }

    fn each_in<A: Addr>(
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
    fn view_at<A: Addr>(&self, t: &Table<A>, sb: &ShardBox<A>, i: u32, now: Nanos) -> EntryView {
        let e = sb.shard.get(i);
        let mut view = EntryView::new(e, now, sb.shard.counters(i).copied(), sb.shard.born(i));
        if e.helper != 0 {
            view.children = t.expect.lock().children_of(&e.key);
        }
        view
    }

    /// The slab index of the entry live at `now` whose original or reply tuple is `k` (hash
    /// `h`), in a locked shard.
    fn live_index<A: Addr>(&self, sb: &ShardBox<A>, k: &Key<A>, h: u64, now: Nanos) -> Option<u32> {
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

    fn get_in<A: Addr>(&self, t: &Table<A>, k: &Key<A>, now: Nanos) -> Option<EntryView> {
        let h = self.hash(k);
        let g = t.shards[t.shard_of(h)].lock();
        let now = now.max(g.shard.clock);
        let i = self.live_index(&g, k, h, now)?;
        Some(self.view_at(t, &g, i, now))
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

    fn remove_in<A: Addr>(&self, t: &Table<A>, k: &Key<A>, now: Nanos) -> Option<EntryView> {
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
    fn retain_in<A: Addr>(
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

    fn expectations_in<A: Addr>(&self, t: &Table<A>, now: Nanos, f: &mut impl FnMut(String)) {
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
    fn live_at<A: Addr>(&self, t: &Table<A>, k: &Key<A>, now: Nanos) -> bool {
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

/// The tuple of a packet whose layer-4 header starts with two ports (callers have checked that
/// the header is there).
#[inline(always)]
fn port_key<A: Addr>(p: &IpPacket<'_>, l4: &[u8], proto: u8) -> Key<A> {
    Key {
        src: A::from_bytes(p.src()),
        dst: A::from_bytes(p.dst()),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        zone: 0,
        proto,
    }
}

/// IPv6 "no next header".
const NO_NEXT_HEADER: u8 = 59;

/// Whether the IPv4 receive path, looking for a local socket before routing (early demux),
/// pulls reassembled datagram `q`'s TCP header together when fragment zero carried only
/// `first_len` bytes of it: the datagram then no longer has the shape of the fragments it
/// came in, and the router cuts it again itself.
fn early_demux_pulls(q: &IpPacket<'_>, first_len: u32) -> bool {
    !q.v6 && q.proto == proto::TCP && first_len < 20 && q.l4().len() >= 20
}

/// Runs the tracker of a protocol without a dedicated path (no invalid-packet timeout change).
fn run_tracker<A: Addr>(
    st: &mut ProtoState,
    key: &Key<A>,
    input: Input<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> (Decision, Option<Nanos>) {
    let d = match (st, input) {
        (ProtoState::None, Input::UdpLite) => udp::track_lite(ctx, s),
        (ProtoState::Gre(g), Input::Gre) => gre::track(g, ctx, s),
        (ProtoState::None, Input::Icmp) => icmp::track(A::V6, (key.dport >> 8) as u8, s),
        (ProtoState::None, Input::Generic) => generic::track(s),
        (ProtoState::Sctp(st), Input::Sctp(p)) => sctp::track(st, &p, ctx, s),
        // A packet whose protocol disagrees with its entry's state cannot happen (the protocol
        // is part of the tuple); refuse it rather than guess.
        _ => Decision::Invalid,
    };
    (d, None)
}

/// A TCP entry's refresh by an established segment, when the fast path decides it.
#[inline(always)]
fn refresh_tcp(
    st: &mut ProtoState,
    seg: &tcp::Segment<'_>,
    ctx: &Ctx,
    s: &Sysctl,
) -> Option<Refresh> {
    match st {
        ProtoState::Tcp(st) => tcp::track_established(st, seg, ctx, s),
        _ => None,
    }
}

/// A UDP entry's refresh (UDP always refreshes).
#[inline(always)]
fn refresh_udp(st: &mut ProtoState, ctx: &Ctx, s: &Sysctl) -> Option<Refresh> {
    match st {
        ProtoState::Udp(u) => Some(udp::refresh(u, ctx, s)),
        _ => None,
    }
}

/// What an entry was before a packet, for its update event (small, so that it stays in a
/// register across the tracker).
#[derive(Clone, Copy)]
struct Was {
    status: u8,
    /// See [`phase`].
    phase: u8,
    /// The packet gets through the host (it reaches the point where the kernel reports).
    passes: bool,
}

/// An entry's TCP or SCTP state as a number (for events: whether a packet changed it).
fn phase(p: &ProtoState) -> u8 {
    match p {
        ProtoState::Tcp(t) => 1 + t.state() as u8,
        ProtoState::Sctp(t) => 0x80 | t.state() as u8,
        _ => 0,
    }
}

/// The ct state of a packet in `dir` of a confirmed entry whose status, before the packet,
/// is `before`.
#[inline(always)]
fn state_of(dir: Dir, before: u8) -> State {
    if dir == Dir::Reply || before & status::SEEN_REPLY != 0 {
        State::Established
    } else if before & status::EXPECTED != 0 {
        State::Related
    } else {
        State::New
    }
}

/// The verdict of a packet [`Shard::refresh_at`] applied, from the entry's status bits before
/// and after it.
#[inline(always)]
fn refreshed(dir: Dir, before: u8, after: u8) -> Verdict {
    Verdict {
        state: state_of(dir, before),
        dir,
        assured: after & status::ASSURED != 0,
        expected: after & status::EXPECTED != 0,
        frames: 1,
    }
}

fn verdict_of<A>(e: &Entry<A>, state: State, dir: Dir) -> Verdict {
    Verdict {
        state,
        dir,
        assured: e.status & status::ASSURED != 0,
        expected: e.status & status::EXPECTED != 0,
        frames: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{csum_add, csum_fold};

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];
    const R: [u8; 4] = [10, 0, 0, 254];
    const SEC: Nanos = crate::NANOS_PER_SEC;

    fn tracker() -> Conntrack {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        Conntrack::with_seed(cfg, 7)
    }

    fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        let tot = (20 + payload.len()) as u16;
        let mut p = vec![
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = !csum_fold(csum_add(0, &p));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0, 12, 0, 0, b'd', b'a', b't', b'a']);
        ip4(src, dst, proto::UDP, &u)
    }

    /// A TFTP request whose expectation cannot be added (the kernel's global limit, which
    /// its namespaced oracle cannot lower) is dropped before its entry is confirmed: the
    /// entry never exists, and the request is NEW again once there is room.
    #[test]
    fn tftp_request_over_the_expectation_limit_leaves_no_entry() {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        cfg.set_sysctl("nf_conntrack_expect_max=1").unwrap();
        cfg.helpers = ctrack_helpers::parse_assignments(["tftp:udp:69"]).unwrap();
        cfg.events = 64;
        let ct = Conntrack::with_seed(cfg, 7);
        let rrq = |src: [u8; 4], sport: u16| {
            let body = b"\x00\x01f\x00octet\x00";
            let mut u = Vec::new();
            u.extend_from_slice(&sport.to_be_bytes());
            u.extend_from_slice(&69u16.to_be_bytes());
            u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(body);
            ip4(src, B, proto::UDP, &u)
        };
        let entries = |ct: &Conntrack| {
            let mut n = 0;
            ct.for_each_entry(SEC, |_| n += 1);
            n
        };
        assert_eq!(
            ct.process(&rrq(A, 4000), LinkType::Raw, SEC).state,
            State::New
        );
        assert_eq!(
            ct.process(&rrq(R, 4001), LinkType::Raw, SEC),
            Verdict::DROPPED
        );
        assert_eq!((entries(&ct), ct.stats().count), (1, 1));
        // The refused request's entry never was: no event tells of it.
        let ev = ct.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::New);
        assert_eq!(ev[0].entry.orig.l4, crate::L4::Ports { src: 4000, dst: 69 });
        // The first expectation taken: room for the second request.
        let data = udp4(B, A, 33000, 4000);
        assert_eq!(ct.process(&data, LinkType::Raw, SEC).state, State::Related);
        assert_eq!(
            ct.process(&rrq(R, 4001), LinkType::Raw, SEC).state,
            State::New
        );
        assert_eq!(entries(&ct), 3);
        let mut exp = Vec::new();
        ct.for_each_expectation(SEC, |l| exp.push(l));
        assert_eq!(exp.len(), 1);
        assert!(exp[0].ends_with("src=10.0.0.2 dst=10.0.0.254 sport=0 dport=4001 tftp"));
        // A repeated request of an entry already in the table, refused the same way: the
        // packet is dropped, the entry stays.
        assert_eq!(
            ct.process(&rrq(A, 4000), LinkType::Raw, SEC),
            Verdict::DROPPED
        );
        assert_eq!((entries(&ct), ct.stats().count), (3, 3));
    }

    #[test]
    fn chains_hold_as_many_tuples_as_the_kernels_would() {
        // Over many tuples: the mean of each chain's count is 2 * entries / buckets, and as
        // many chains are empty as a Poisson count of that mean would leave (e^-mean).
        for (entries, buckets, mean) in [
            (262_144, 262_144, 2.0),
            (65_536, 262_144, 0.5),
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
            assert!((zero - (-mean).exp()).abs() < 0.01, "empty {zero}");
        }
        // A tiny table at the default bucket count: the chains are almost always empty.
        let busy = (0..10_000u64)
            .filter(|&i| chain_sizes(i.wrapping_mul(0x2545_f491), 8, 262_144) != [0; 8])
            .count();
        assert!(busy < 20, "{busy}");
    }

    #[test]
    fn early_drop_and_expiry_report_what_they_remove() {
        let mut cfg = Config::default();
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        cfg.set_sysctl("nf_conntrack_max=1").unwrap();
        // One hash chain, as a table this small has in the kernel only with one bucket:
        // early drop then meets the entry (with the default 262,144 it almost never would).
        cfg.set_sysctl("nf_conntrack_buckets=1").unwrap();
        cfg.shards = 1;
        cfg.events = 64;
        let ct = Conntrack::with_seed(cfg, 7);
        ct.process(&udp4(A, B, 1000, 53), LinkType::Raw, SEC);
        // The table is full: the unreplied entry is evicted for the next one.
        ct.process(&udp4(A, B, 1001, 53), LinkType::Raw, 2 * SEC);
        let lines: Vec<String> = ct.events().iter().map(|e| e.line()).collect();
        assert_eq!(
            lines,
            [
                "    [NEW] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=53 \
                 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1000",
                "[DESTROY] udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=53 \
                 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1000",
                "    [NEW] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=1001 dport=53 \
                 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1001",
            ]
        );
        // Timed out: destroyed without time left.
        assert_eq!(ct.expire(40 * SEC), 1);
        let ev = ct.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Destroy);
        assert!(
            ev[0]
                .line()
                .starts_with("[DESTROY] udp      17 src=10.0.0.1")
        );
        assert_eq!(ct.events_lost(), 0);
    }

    #[test]
    fn events_staged_under_a_shard_lock_reach_the_queue_in_order() {
        // One shard: the expiry of 100 entries in one advance stages more events than the
        // shard holds at once (`STAGED`), so some move to the queue while it is still locked.
        // 100 entries made at 1 s, all expired by a packet at 40 s, in a queue of `room`.
        let expire_100 = |room: usize| {
            let mut cfg = Config::default();
            cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
            cfg.shards = 1;
            cfg.events = room;
            let ct = Conntrack::with_seed(cfg, 7);
            for port in 1000..1100 {
                ct.process(&udp4(A, B, port, 53), LinkType::Raw, SEC);
            }
            ct.process(&udp4(A, B, 2000, 53), LinkType::Raw, 40 * SEC);
            (ct.events(), ct.events_lost())
        };
        let (ev, lost) = expire_100(1_000);
        let port = |e: &Event| match e.entry.orig.l4 {
            crate::L4::Ports { src, .. } => src,
            _ => 0,
        };
        let got: Vec<(EventKind, u16)> = ev.iter().map(|e| (e.kind, port(e))).collect();
        // The wheel expires a slot's entries newest first; the new entry's event comes after
        // the expiries its packet's advance made.
        let want: Vec<(EventKind, u16)> = (1000..1100)
            .map(|p| (EventKind::New, p))
            .chain((1000..1100).rev().map(|p| (EventKind::Destroy, p)))
            .chain([(EventKind::New, 2000)])
            .collect();
        assert_eq!(got, want);
        assert_eq!(lost, 0);

        // A queue with room for 150: the rest of a hold's events are counted lost.
        let (ev, lost) = expire_100(150);
        assert_eq!(ev.len(), 150);
        assert!(ev[100..].iter().all(|e| e.kind == EventKind::Destroy));
        assert_eq!(lost, 51);
    }

    #[test]
    fn queue_of_keeps_connections_together_and_queues_apart() {
        let ct = tracker();
        for queues in [2, 3, 4, 64, 100] {
            let mut shards_of_queue = std::collections::HashMap::new();
            for n in 0..2000u32 {
                let a = [10, (n >> 8) as u8, n as u8, 1];
                let (sp, dp) = (1024 + (n % 5000) as u16, 53);
                let fwd = udp4(a, R, sp, dp);
                let rev = udp4(R, a, dp, sp);
                let q = ct.queue_of(&fwd, LinkType::Raw, queues);
                assert!(q < queues);
                assert_eq!(ct.queue_of(&rev, LinkType::Raw, queues), q);
                let key =
                    port_key::<[u8; 4]>(&packet::parse_ip(&fwd).unwrap(), &fwd[20..], proto::UDP);
                let shard = ct.v4.shard_of(ct.hash(&key));
                // A shard belongs to one queue only.
                assert_eq!(*shards_of_queue.entry(shard).or_insert(q), q);
            }
        }
        assert_eq!(ct.queue_of(&[1, 2, 3], LinkType::Raw, 8), 0);
        assert_eq!(ct.queue_of(&udp4(A, B, 1, 2), LinkType::Raw, 1), 0);
    }

    /// An ICMPv4 error from `src` to `dst` quoting the first 28 bytes of `quoted`.
    fn err4(src: [u8; 4], dst: [u8; 4], ty: u8, quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&quoted[..quoted.len().min(28)]);
        ip4(src, dst, proto::ICMP, &m)
    }

    fn run(ct: &Conntrack, p: &[u8], t: Nanos) -> String {
        ct.process(p, LinkType::Raw, t).to_string()
    }

    fn seconds_left(ct: &Conntrack, now: Nanos) -> Vec<u64> {
        let mut v = Vec::new();
        ct.for_each_entry(now, |e| v.push(e.seconds_left));
        v
    }

    #[test]
    fn errors_are_related_and_leave_their_entry_alone() {
        let ct = tracker();
        let q = udp4(A, B, 1000, 53);
        assert_eq!(run(&ct, &q, 0), "new,orig");
        // About A's packet, back to A: reply side. No refresh, no SEEN_REPLY.
        assert_eq!(run(&ct, &err4(B, A, 3, &q), 10 * SEC), "related,reply");
        assert_eq!(run(&ct, &err4(R, A, 11, &q), 10 * SEC), "related,reply");
        assert_eq!(seconds_left(&ct, 10 * SEC), vec![20]);
        assert_eq!(run(&ct, &q, 11 * SEC), "new,orig");
        // About a packet of the reply direction, to B: original side.
        let r = udp4(B, A, 53, 1000);
        assert_eq!(run(&ct, &err4(R, B, 3, &r), 12 * SEC), "related,orig");
        // Addressed elsewhere than the matched tuple's destination.
        assert_eq!(run(&ct, &err4(R, B, 3, &q), 12 * SEC), "invalid");
        assert_eq!(
            run(&ct, &err4(R, [10, 0, 0, 3], 3, &q), 12 * SEC),
            "invalid"
        );
        let s = ct.stats();
        assert_eq!((s.error, s.invalid, s.count), (2, 0, 1));
        // Once the entry has expired there is nothing to be related to.
        assert_eq!(run(&ct, &err4(B, A, 3, &q), 42 * SEC), "invalid");
        assert_eq!(ct.stats().error, 3);
    }

    #[test]
    fn errors_never_create_entries() {
        let ct = tracker();
        let q = udp4(A, B, 1000, 53);
        assert_eq!(run(&ct, &err4(B, A, 3, &q), 0), "invalid");
        // An error about an error has no tuple to invert.
        let e = err4(B, A, 3, &q);
        assert_eq!(run(&ct, &err4(R, B, 3, &e), 0), "invalid");
        assert_eq!(ct.count(), 0);
        assert_eq!(ct.stats().error, 2);
    }

    #[test]
    fn bad_icmp_counts_as_error_and_typeless_icmp_as_invalid() {
        let ct = tracker();
        assert_eq!(run(&ct, &ip4(A, B, proto::ICMP, &[8, 0, 0]), 0), "invalid");
        assert_eq!(
            run(&ct, &ip4(A, B, proto::ICMP, &[19, 0, 0, 0, 0, 0, 0, 0]), 0),
            "invalid"
        );
        assert_eq!(ct.stats().error, 2);
        assert_eq!(
            run(&ct, &ip4(A, B, proto::ICMP, &[9, 0, 0, 0, 0, 0, 0, 0]), 0),
            "invalid"
        );
        let s = ct.stats();
        assert_eq!((s.error, s.invalid), (2, 1));
    }

    fn ip6(src: &[u8; 16], dst: &[u8; 16], nh: u8, hlim: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u16;
        let mut p = vec![0x60, 0, 0, 0, (len >> 8) as u8, len as u8, nh, hlim];
        p.extend_from_slice(src);
        p.extend_from_slice(dst);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn v6_redirect_quotes_after_its_option() {
        let a6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let router: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];
        let q = ip6(&a6, &b6, proto::UDP, 64, &[3, 232, 0, 53, 0, 8, 0, 0]);
        let ct = tracker();
        assert_eq!(run(&ct, &q, 0), "new,orig");
        let redirect = |src: &[u8; 16], hlim: u8, code: u8, opt: &[u8]| {
            let mut m = vec![137, code, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&router);
            m.extend_from_slice(&b6);
            m.extend_from_slice(opt);
            m.extend_from_slice(&q);
            ip6(src, &a6, proto::ICMPV6, hlim, &m)
        };
        let opt = [4, 7, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            run(&ct, &redirect(&router, 255, 0, &opt), SEC),
            "related,reply"
        );
        // Not as neighbour discovery sends it, or without the redirected-header option.
        assert_eq!(run(&ct, &redirect(&router, 64, 0, &opt), SEC), "invalid");
        assert_eq!(run(&ct, &redirect(&b6, 255, 0, &opt), SEC), "invalid");
        assert_eq!(
            run(
                &ct,
                &redirect(&router, 255, 0, &[4, 0, 0, 0, 0, 0, 0, 0]),
                SEC
            ),
            "invalid"
        );
        assert_eq!(ct.stats().error, 3);
        // A nonzero code, or another option first: not an error at all.
        assert_eq!(run(&ct, &redirect(&router, 255, 1, &opt), SEC), "invalid");
        assert_eq!(
            run(
                &ct,
                &redirect(&router, 255, 0, &[2, 1, 0, 0, 0, 0, 0, 0]),
                SEC
            ),
            "invalid"
        );
        let s = ct.stats();
        assert_eq!((s.error, s.invalid, s.count), (3, 2, 1));
        assert_eq!(run(&ct, &q, 2 * SEC), "new,orig");
    }
}
