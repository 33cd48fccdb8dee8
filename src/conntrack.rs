//! The engine: frames in, verdicts out, over one sharded table per address family.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use ctrack_helpers::Assignment;
use ctrack_protocols::icmp::{self, Class};
use ctrack_protocols::sysctl::{Sysctl, SysctlError};
use ctrack_protocols::{Accept, Ctx, Decision, Dir, Nanos, Refresh, generic, gre, sctp, tcp, udp};
use foldhash::fast::FixedState;
use parking_lot::Mutex;

use crate::batch::Lanes;
use crate::defrag::{Defrag, Reassembled};
use crate::event::{Event, EventKind, EventQueue, ExpectEvent};
use crate::expect::{ExpectCell, Expectations, Expected, PENDING, Refused, Reporter, Spec};
use crate::format::EntryView;
use crate::host::{HostModel, Limited, Route};
use crate::icmp_error::{self, Redirect};
use crate::packet::{self, IpPacket, LinkType, PendingSum};
use crate::policy::Policies;
use crate::ratelimit::{IcmpPeers, REDIRECT};
use crate::stats::{Counter, ShardStats, Stats};
use crate::table::{Counters, Entry, Found, ProtoState, Shard, status};
use crate::timer::NIL;
use crate::tuple::{Addr, Key, Tuple, proto};
use crate::verdict::{State, Verdict};
use crate::zone::InZone;
use ctrack_helpers::{amanda, ftp, irc, pptp, sip, tftp};

mod helping;
mod lookup;
mod manage;
mod pressure;

use helping::NoRoom;
use pressure::GcClock;

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
    /// Number of lock shards per address family (rounded up to a power of two; 0 is taken
    /// as 1 and more than [`MAX_SHARDS`] as that many). The default
    /// is four per CPU the process may run on, from 4 to 256: 8 on two CPUs, enough for
    /// [`Conntrack::queue_of`] to give every thread shards of its own. More shards mean less
    /// waiting between threads that do not steer their traffic that way; fewer mean bigger
    /// groups per lock in a burst and less fixed memory (each shard holds about 1.5 KiB
    /// before its first entries: its lock, counters, index and timer wheel). The verdicts do
    /// not depend on it, but for which of several equally likely entries early drop evicts.
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
    /// Timeout policies for new connections, as a ruleset's `ct timeout set` gives them (see
    /// [`crate::TimeoutRule`]): a connection whose first packet a rule matches is timed by
    /// that rule's policy (the last matching rule's). At most [`crate::MAX_TIMEOUT_RULES`]
    /// are honoured, as [`Config::add_timeout_rule`] checks.
    pub timeout_rules: Vec<crate::TimeoutRule>,
}

/// The most lock shards a family has (see [`Config::shards`]).
pub const MAX_SHARDS: usize = 1024;

/// [`Config::shards`]' default: four per CPU the process may run on (1 when that cannot be
/// told), as a power of two from 4 to 256.
fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.saturating_mul(4).next_power_of_two().clamp(4, 256)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sysctl: Sysctl::default(),
            helpers: Vec::new(),
            host: HostModel::ConfirmAll,
            shards: default_shards(),
            in_order_entries: 4096,
            events: 0,
            timeout_rules: Vec::new(),
        }
    }
}

impl Config {
    /// Applies one `NAME=VALUE` sysctl assignment (with or without `net.netfilter.`).
    pub fn set_sysctl(&mut self, assignment: &str) -> Result<&mut Self, SysctlError> {
        self.sysctl.apply(assignment)?;
        Ok(self)
    }

    /// Adds a timeout rule from its text (see [`crate::TimeoutRule`]), after the others: it
    /// wins over them where both match. Refuses a bad rule, and one past the
    /// [`crate::MAX_TIMEOUT_RULES`]th.
    ///
    /// ```
    /// use ctrack::Config;
    /// let mut c = Config::default();
    /// c.add_timeout_rule("udp:53:unreplied=5,replied=10").unwrap();
    /// assert_eq!(c.timeout_rules.len(), 1);
    /// assert!(c.add_timeout_rule("udp:53:closed=5").is_err());
    /// ```
    pub fn add_timeout_rule(&mut self, rule: &str) -> Result<&mut Self, crate::TimeoutRuleError> {
        let r: crate::TimeoutRule = rule.parse()?;
        if self.timeout_rules.len() >= crate::MAX_TIMEOUT_RULES {
            return Err(crate::policy::too_many(rule));
        }
        self.timeout_rules.push(r);
        Ok(self)
    }
}

pub(crate) struct Table<A: Addr> {
    pub(crate) shards: Box<[CachePadded<Slot<A>>]>,
    mask: usize,
    /// Pending expectations and helper state (taken after a shard lock, never before).
    pub(crate) expect: ExpectCell<A>,
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
    /// The collector's run that reaps them all (see [`GC_INTERVAL`](pressure::GC_INTERVAL)).
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
        let n = n.clamp(1, MAX_SHARDS).next_power_of_two();
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
            expect: ExpectCell::new(Expectations::reporting(events)),
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

/// The sysctls in force, which packets read under a shard's lock and
/// [`Conntrack::set_sysctl`] writes with every shard of both families locked: a packet never
/// meets a change half made, and reading costs what reading a plain field does.
struct LiveSysctl(std::cell::UnsafeCell<Live>);

/// What [`LiveSysctl`] holds: the sysctls, and those that time the connections of each
/// timeout policy (the same, but for the policy's own timeouts; see [`Policies::in_force`]).
struct Live {
    sysctl: Sysctl,
    policies: Box<[Sysctl]>,
}

// SAFETY: the set is written only while every shard of both families is locked (see
// `Conntrack::set_sysctl`), and read only by holders of a shard's lock (see
// `LiveSysctl::in_shard` and `LiveSysctl::unbound`), so no read overlaps a write; `Sysctl`
// is plain data.
unsafe impl Sync for LiveSysctl {}

impl LiveSysctl {
    /// The set, for the holder of the lock of shard `locked` (a `ShardBox` is only reached
    /// through its lock, or with the whole tracker borrowed mutably).
    #[inline(always)]
    fn in_shard<'a, A>(&'a self, locked: &'a ShardBox<A>) -> &'a Sysctl {
        let _ = locked;
        // SAFETY: the caller holds a shard's lock for as long as the reference lives (it
        // borrows the locked shard), and writes happen only under every shard's lock.
        unsafe { &(*self.0.get()).sysctl }
    }

    /// [`LiveSysctl::in_shard`] for a caller that goes on changing the locked shard while it
    /// reads the set.
    ///
    /// # Safety
    ///
    /// The caller holds a shard's lock and does not use the reference once it lets that lock
    /// go.
    #[inline(always)]
    unsafe fn unbound<'s>(&self) -> &'s Sysctl {
        // SAFETY: writes happen only under every shard's lock; the caller holds one for as
        // long as it uses the reference (this function's contract), and the cell lives as
        // long as the tracker, which outlives every lock on its shards.
        unsafe { &(*self.0.get()).sysctl }
    }

    /// [`LiveSysctl::unbound`] for a connection with timeout policy `policy` (0: none, which
    /// is what a policy the tracker does not have is taken as).
    ///
    /// # Safety
    ///
    /// As for [`LiveSysctl::unbound`].
    #[inline(always)]
    unsafe fn unbound_for<'s>(&self, policy: u8) -> &'s Sysctl {
        // SAFETY: as in `unbound` (this function's contract is the same).
        let live = unsafe { &*self.0.get() };
        match usize::from(policy).checked_sub(1) {
            Some(i) => live.policies.get(i).unwrap_or(&live.sysctl),
            None => &live.sysctl,
        }
    }
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
    /// The configuration the tracker was made with. Its `sysctl` is that of the start: the
    /// set in force is `sysctl` and `live` below, and the values read without a shard's lock
    /// (`checksum`, `max`, `expect_max`).
    pub(crate) cfg: Config,
    /// The sysctls in force, for readers without a shard's lock; its lock orders the changes.
    sysctl: Mutex<Sysctl>,
    /// The same set, for packets (see [`LiveSysctl`]).
    live: LiveSysctl,
    /// The timeout rules, made (see [`crate::policy`]).
    pub(crate) policies: Policies,
    /// Whether the fast refresh has more to do than refresh: events to report, or timeout
    /// policies to time connections by (see [`Conntrack::run_refresh`]).
    refresh_extras: bool,
    /// `nf_conntrack_checksum`, read where a packet's headers are checked (before a lock).
    checksum: AtomicBool,
    /// `nf_conntrack_max`, read where a burst is planned (before a lock).
    max: AtomicU32,
    /// `nf_conntrack_expect_max`, read by helpers announcing expectations.
    expect_max: AtomicU32,
    hasher: FixedState,
    pub(crate) v4: Table<[u8; 4]>,
    pub(crate) v6: Table<[u8; 16]>,
    count: AtomicUsize,
    /// The garbage collector's passes owed after "table full" drops.
    gc: GcClock,
    stats: Stats,
    frags: Mutex<Defrag>,
    /// The router's rate limit on its own ICMP messages (see [`crate::ratelimit`]).
    icmp_peers: Mutex<IcmpPeers>,
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
        crate::checksum::detect_cpu();
        pressure::warm_up();
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
        let sysctl = cfg.sysctl.clone();
        let policies = Policies::new(&cfg.timeout_rules);
        Conntrack {
            refresh_extras: events.is_some() || !policies.is_empty(),
            events,
            helper_ports: helper_ports.into_boxed_slice(),
            v4: Table::new(cfg.shards, acct, tstamp, reporter.clone()),
            v6: Table::new(cfg.shards, acct, tstamp, reporter),
            checksum: AtomicBool::new(sysctl.nf_conntrack_checksum != 0),
            max: AtomicU32::new(sysctl.nf_conntrack_max),
            expect_max: AtomicU32::new(sysctl.nf_conntrack_expect_max),
            live: LiveSysctl(std::cell::UnsafeCell::new(Live {
                sysctl: sysctl.clone(),
                policies: policies.in_force(&sysctl),
            })),
            policies,
            sysctl: Mutex::new(sysctl),
            cfg,
            hasher: FixedState::with_seed(seed),
            count: AtomicUsize::new(0),
            gc: GcClock::default(),
            stats: Stats::default(),
            frags: Mutex::new(frags),
            icmp_peers: Mutex::new(IcmpPeers::default()),
        }
    }

    /// The configuration: as the tracker was made, with the sysctls in force (see
    /// [`Conntrack::set_sysctl`]).
    ///
    /// ```
    /// use ctrack::{Config, Conntrack};
    /// let ct = Conntrack::new(Config::default());
    /// ct.set_sysctl("nf_conntrack_udp_timeout=10").unwrap();
    /// assert_eq!(ct.config().sysctl.nf_conntrack_udp_timeout, 10);
    /// assert_eq!(ct.config().shards, Config::default().shards);
    /// ```
    pub fn config(&self) -> Config {
        Config {
            sysctl: self.sysctl.lock().clone(),
            ..self.cfg.clone()
        }
    }

    /// Whether layer-4 checksums are checked (`nf_conntrack_checksum`), as of now.
    #[inline(always)]
    pub(crate) fn checksum(&self) -> bool {
        self.checksum.load(Ordering::Relaxed)
    }

    /// `nf_conntrack_max`, as of now (0: no limit).
    #[inline(always)]
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed) as usize
    }

    /// `nf_conntrack_expect_max`, as of now.
    #[inline]
    pub(crate) fn expect_max(&self) -> usize {
        self.expect_max.load(Ordering::Relaxed) as usize
    }

    /// Changes one sysctl of a running tracker (`NAME=VALUE`, with or without
    /// `net.netfilter.`), as `sysctl -w` changes the kernel's, keeping the table. Threads may
    /// go on tracking meanwhile: the change waits until no shard is in use (it holds them all
    /// for the moment of the write), so a packet sees the old set or the new one whole, and
    /// every packet after the call returns sees the new one, except that a burst under way
    /// keeps the `nf_conntrack_checksum` it started with.
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
    /// let ct = Conntrack::new(Config::default());
    /// ct.set_sysctl("net.netfilter.nf_conntrack_udp_timeout=10").unwrap();
    /// assert_eq!(ct.config().sysctl.nf_conntrack_udp_timeout, 10);
    /// assert!(ct.set_sysctl("nf_conntrack_acct=1").is_err());
    /// ```
    pub fn set_sysctl(&self, assignment: &str) -> Result<(), SysctlError> {
        let mut master = self.sysctl.lock();
        let mut s = master.clone();
        s.apply(assignment)?;
        for (name, before, after) in [
            (
                "nf_conntrack_acct",
                master.nf_conntrack_acct,
                s.nf_conntrack_acct,
            ),
            (
                "nf_conntrack_timestamp",
                master.nf_conntrack_timestamp,
                s.nf_conntrack_timestamp,
            ),
            (
                "nf_conntrack_events",
                master.nf_conntrack_events,
                s.nf_conntrack_events,
            ),
        ] {
            if (before != 0) != (after != 0) {
                return Err(SysctlError::Fixed(name));
            }
        }
        {
            // Every shard, in the order a burst takes them (ascending, IPv4's before IPv6's,
            // which no holder of an IPv6 shard goes back to), so that no tracking thread
            // can be inside one while the set changes.
            let v4: Vec<_> = self.v4.shards.iter().map(|slot| slot.lock()).collect();
            let v6: Vec<_> = self.v6.shards.iter().map(|slot| slot.lock()).collect();
            // SAFETY: every shard of both families is locked (`v4`, `v6`), so no packet reads
            // the set now (see `LiveSysctl`), and writers are ordered by `master`.
            unsafe {
                *self.live.0.get() = Live {
                    sysctl: s.clone(),
                    policies: self.policies.in_force(&s),
                }
            };
            drop((v4, v6));
        }
        self.checksum
            .store(s.nf_conntrack_checksum != 0, Ordering::Relaxed);
        self.max.store(s.nf_conntrack_max, Ordering::Relaxed);
        self.expect_max
            .store(s.nf_conntrack_expect_max, Ordering::Relaxed);
        self.frags.lock().configure(&s);
        *master = s;
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
    /// Times up to [`crate::capture::MAX_TIME`] (the year 2262) leave room for any timeout.
    ///
    /// The common frame (a plain IPv4 or IPv6 header behind untagged Ethernet or raw, then
    /// TCP or UDP) goes straight to its shard; every other frame takes the general path, which
    /// decides the same for the common one. With helpers configured, so does every frame to or
    /// from a port a helper is assigned to; while an expectation is pending, every frame but
    /// one that refreshes the entry it belongs to; and while an expected connection has a
    /// helper of its own, also every frame of a connection with a helper.
    pub fn process(&self, frame: &[u8], link: LinkType, now: Nanos) -> Verdict {
        self.packet_begins();
        if self.cfg.helpers.is_empty() {
            self.process_with(frame, link, now, self.checksum())
        } else {
            self.process_helped::<false>(frame, link, 0, now, self.checksum())
        }
    }

    /// The tracker's view of conntrack zone `zone`: packets given through it are tracked in
    /// that zone, as the kernel tracks a packet a ruleset put in a zone (`ct zone set`, before
    /// defragmentation) or Open vSwitch's `ct(zone=N)` action does. A zone is a table of its
    /// own inside the table: the same tuple in two zones is two connections, a packet finds
    /// only its zone's connections and expectations (a helper's expectation is in its
    /// master's zone), an ICMP error is matched with its zone's connections, and fragments
    /// are reassembled per zone. The limit, early drop, timeouts and counters are shared.
    /// `/proc` lines show the zone (`zone=N`), and so do connection events outside zone 0;
    /// expectation lines and events show none, as the kernel's do. Zone 0 is the default:
    /// `in_zone(0)` is [`Conntrack`] itself.
    ///
    /// ```
    /// use ctrack::{Config, Conntrack, LinkType};
    /// let mut cfg = Config::default();
    /// cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    /// let ct = Conntrack::new(cfg);
    /// // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53 as raw IPv4 (layer-4 checksum unchecked).
    /// let mut d = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &d));
    /// d[10..12].copy_from_slice(&c.to_be_bytes());
    /// d.extend([0x03, 0xe8, 0, 53, 0, 8, 0, 0]);
    /// assert_eq!(ct.in_zone(7).process(&d, LinkType::Raw, 0).to_string(), "new,orig");
    /// // Again in zone 7: still new there (no reply yet); in zone 0 another connection.
    /// assert_eq!(ct.in_zone(7).process(&d, LinkType::Raw, 1).to_string(), "new,orig");
    /// assert_eq!(ct.process(&d, LinkType::Raw, 2).to_string(), "new,orig");
    /// assert_eq!(ct.count(), 2);
    /// ```
    pub fn in_zone(&self, zone: u16) -> InZone<'_> {
        InZone { ct: self, zone }
    }

    /// [`Conntrack::process`] in zone `zone` (see [`Conntrack::in_zone`]).
    pub(crate) fn process_zoned(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
    ) -> Verdict {
        self.packet_begins();
        let cksum = self.checksum();
        if !self.cfg.helpers.is_empty() {
            return self.process_helped::<true>(frame, link, zone, now, cksum);
        }
        self.process_with_in::<true>(frame, link, zone, now, cksum)
    }

    /// [`Conntrack::process`] with the checksum setting already read (`cksum`): a burst reads
    /// it once, as it starts, so a change of `nf_conntrack_checksum` counts from the next
    /// burst for the frames that go straight to their shard (the others read it themselves).
    #[inline]
    pub(crate) fn process_with(
        &self,
        frame: &[u8],
        link: LinkType,
        now: Nanos,
        cksum: bool,
    ) -> Verdict {
        self.process_with_in::<false>(frame, link, 0, now, cksum)
    }

    /// [`Conntrack::process_with`] in zone 0, or in `zone` when `ZONED`.
    #[inline(always)]
    pub(crate) fn process_with_in<const ZONED: bool>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Verdict {
        let zone = if ZONED { zone } else { 0 };
        if self.cfg.helpers.is_empty()
            && let Some(v) = self.process_common::<{ Lanes::PLAIN }>(frame, link, zone, now, cksum)
        {
            return v;
        }
        self.process_frame(frame, link, zone, now)
    }

    /// [`Conntrack::process_with_in`] out of line, for a burst's in-order loops
    /// (`Conntrack::run_in_order`). Inlined there, as it was from faa55e8 on, the loop's one
    /// body held both families' lanes, and IPv6 over 1,000 established flows ran at 16.6 Mpps
    /// against 20.7 out of line on a Zen 4 host, with 1% more instructions (660 a packet
    /// against 653); IPv4's time and instructions (616 against 617) the same.
    #[inline(never)]
    pub(crate) fn process_plain<const ZONED: bool>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Verdict {
        self.process_with_in::<ZONED>(frame, link, zone, now, cksum)
    }

    /// [`Conntrack::process_with`] with helpers configured: the common lanes take a frame off
    /// the helpers' ports while no expectation is pending; while some are, a frame that
    /// refreshes its entry (see [`Lanes::PENDING`]); and while an expected connection has a
    /// helper of its own, a frame that refreshes an entry without a helper (see
    /// [`Lanes::HELPED`]). A copy of its own, so that the path without helpers carries
    /// nothing of theirs. In zone 0 unless `ZONED` (then in `zone`): a copy for each, so that
    /// zone 0's frames test no zone.
    #[inline(never)]
    pub(crate) fn process_helped<const ZONED: bool>(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Verdict {
        let zone = if ZONED { zone } else { 0 };
        let common = match self.v4.expect.flags() | self.v6.expect.flags() {
            0 => self.process_common::<{ Lanes::QUIET }>(frame, link, zone, now, cksum),
            PENDING => self.process_common::<{ Lanes::PENDING }>(frame, link, zone, now, cksum),
            _ => self.process_helped_child(frame, link, zone, now, cksum),
        };
        common.unwrap_or_else(|| self.process_frame(frame, link, zone, now))
    }

    /// The lanes of [`Lanes::HELPED`], out of line: inlined, they cost the quiet lanes' frames
    /// 1.2% more instructions.
    #[inline(never)]
    fn process_helped_child(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        now: Nanos,
        cksum: bool,
    ) -> Option<Verdict> {
        self.process_common::<{ Lanes::HELPED }>(frame, link, zone, now, cksum)
    }

    /// The general path for a frame of any link type, in zone `zone`.
    #[inline]
    fn process_frame(&self, frame: &[u8], link: LinkType, zone: u16, now: Nanos) -> Verdict {
        match packet::ip_of_frame(frame, link) {
            Some(ip) => self.process_ip_zoned(ip, zone, now),
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
        self.queue_of_zoned(frame, link, 0, queues)
    }

    /// [`Conntrack::queue_of`] for a packet tracked in zone `zone`.
    pub(crate) fn queue_of_zoned(
        &self,
        frame: &[u8],
        link: LinkType,
        zone: u16,
        queues: usize,
    ) -> usize {
        if queues <= 1 {
            return 0;
        }
        let Some(mut p) = packet::ip_of_frame(frame, link).and_then(|ip| packet::parse_ip(ip).ok())
        else {
            return 0;
        };
        p.zone = zone;
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
                proto: 0,
                ..addr_key::<A>(p)
            }
        };
        t.shard_of(self.hash(&key)) % queues
    }

    /// Tracks one IP packet (starting at its IPv4 or IPv6 header).
    pub fn process_ip(&self, ip: &[u8], now: Nanos) -> Verdict {
        self.packet_begins();
        self.process_ip_zoned(ip, 0, now)
    }

    /// With events on, notes that this thread hands the tracker a packet, whose events a
    /// mark set for its connection right after may amend (see [`Conntrack::set_mark`]).
    #[inline(always)]
    pub(crate) fn packet_begins(&self) {
        if let Some(q) = &self.events {
            q.packet_begins();
        }
    }

    /// [`Conntrack::process_ip`] in zone `zone`.
    pub(crate) fn process_ip_zoned(&self, ip: &[u8], zone: u16, now: Nanos) -> Verdict {
        if ip.len() < 20 || !matches!(ip[0] >> 4, 4 | 6) {
            return Verdict::SKIPPED;
        }
        let mut p = match packet::parse_ip(ip) {
            Ok(p) => IpPacket { zone, ..p },
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
                    let v = self.track_limited(&mut p, now);
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
                            let mut q = IpPacket {
                                reassembled: true,
                                zone,
                                ..q
                            };
                            // The helper of the connection as the datagram finds it: the
                            // datagram may end that connection (a reply RST to a SYN), and the
                            // kernel's helper still reads it, as it holds the connection.
                            let helper = self.helper_before(&q);
                            let v = self.track_limited(&mut q, now);
                            let len = packet.len() as u32;
                            if q.v6 && len <= max_frag {
                                // No larger than a fragment it came in: sent on whole.
                                frames = 1;
                            } else if early_demux_pulls(&q, first_len)
                                || self.sctp_checksum_pulls(&q, len, head_len, first_len)
                                || self.helper_linearizes(&q, v, helper)
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
        let v = self.track_limited(&mut p, now);
        self.cfg.host.after_tracking(&p, v)
    }

    /// Tracks `p` as the router around the tracker sees it through its rate limit on ICMP
    /// messages (see [`crate::ratelimit`]): first whether the error it would answer `p` with
    /// can go (`p` is marked [`IpPacket::unanswered`] when not), then, once `p` is tracked and
    /// not dropped, the tokens of what the router sent or checked for it.
    fn track_limited(&self, p: &mut IpPacket<'_>, now: Nanos) -> Verdict {
        let limited = self.cfg.host.limited(p);
        if let Some(Limited::Error { to, cost }) = limited {
            let peers = self.icmp_peers.lock();
            p.unanswered = !if p.v6 {
                peers.v6.would_allow(&<[u8; 16]>::from_bytes(to), now, cost)
            } else {
                peers.v4.would_allow(&<[u8; 4]>::from_bytes(to), now, cost)
            };
        }
        let v = self.track_packet(p, now);
        if let Some(l) = limited
            && v.state != State::Dropped
        {
            let mut peers = self.icmp_peers.lock();
            match l {
                Limited::Error { to, cost } if p.v6 => {
                    peers.v6.allow(<[u8; 16]>::from_bytes(to), now, cost);
                }
                Limited::Error { to, cost } => {
                    peers.v4.allow(<[u8; 4]>::from_bytes(to), now, cost);
                }
                Limited::Redirect { dst, src } => {
                    if peers.v6.allow(<[u8; 16]>::from_bytes(dst), now, REDIRECT)
                        && let Some(src) = src
                    {
                        peers.v6.allow(<[u8; 16]>::from_bytes(src), now, REDIRECT);
                    }
                }
            }
        }
        v
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
        self.checksum()
            && q.proto == proto::SCTP
            && l4 >= SCTP_HEADER
            && first_len < at + SCTP_HEADER
    }

    /// The helper of the connection reassembled packet `q` belongs to before it is tracked
    /// (`None` without helpers configured, for a packet of no TCP or UDP connection yet, or
    /// of one without a helper).
    #[cold]
    fn helper_before(&self, q: &IpPacket<'_>) -> Option<&'static ctrack_helpers::Helper> {
        if self.cfg.helpers.is_empty() || !matches!(q.proto, proto::TCP | proto::UDP) {
            return None;
        }
        self.helper_now(q).flatten()
    }

    /// The helper (`Some(None)`: none) of the connection TCP or UDP packet `q` belongs to in
    /// the table now; `None` when the table has no such connection.
    fn helper_now(&self, q: &IpPacket<'_>) -> Option<Option<&'static ctrack_helpers::Helper>> {
        let l4 = q.l4();
        if q.v6 {
            self.helper_of(&self.v6, q, l4)
        } else {
            self.helper_of(&self.v4, q, l4)
        }
    }

    /// Whether the connection's helper linearised reassembled packet `q` (tracked as `v`),
    /// losing the fragments it came in: the SIP helper does for every UDP packet with a
    /// payload, and the SIP and FTP helpers for TCP segments with one once established. The
    /// helper is the connection's in the table after tracking, or, when tracking removed it
    /// (a reply RST to a SYN kills its connection at once), `before`, what the connection had
    /// when the packet came: the kernel's helper runs after tracking on the connection the
    /// packet holds, removed or not.
    #[cold]
    fn helper_linearizes(
        &self,
        q: &IpPacket<'_>,
        v: Verdict,
        before: Option<&'static ctrack_helpers::Helper>,
    ) -> bool {
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
        let helper = self.helper_now(q).unwrap_or(before);
        helper.is_some_and(|h| h.name == "sip" || (h.name == "ftp" && q.proto == proto::TCP))
    }

    /// The helper (`Some(None)`: none) of the connection TCP or UDP packet `p` (layer 4 `l4`)
    /// belongs to; `None` when the table has no such connection.
    fn helper_of<A: Addr>(
        &self,
        t: &Table<A>,
        p: &IpPacket<'_>,
        l4: &[u8],
    ) -> Option<Option<&'static ctrack_helpers::Helper>> {
        // Too short for ports: no connection of a helper's (the tracker refuses the packet).
        if l4.len() < 4 {
            return None;
        }
        let key = port_key::<A>(p, l4, p.proto);
        let inv = key.inverse()?;
        let h = self.hash(&key);
        let g = t.shards[t.shard_of(h)].lock();
        let f = g.shard.find(h, &key, &inv)?;
        Some(ctrack_helpers::at_index(g.shard.get(f.idx).helper))
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
                // (the entry is then never confirmed): a helper is assigned to its port, or a
                // pending expectation may give it one (SIP's registrations do).
                let fresh = (ctrack_helpers::assigned(&self.cfg.helpers, r.key.proto, r.key.dport)
                    .is_some()
                    || t.expect.flags() & PENDING != 0)
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
        let sum = self
            .checksum()
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
            udp::ChecksumScope::Bytes(n) if self.checksum() => {
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
            entry: EntryView::new(
                shard.get(i),
                now,
                shard.counters(i).copied(),
                shard.born(i),
                shard.mark(i),
            ),
            state_changed,
            mark_changed: false,
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

    /// Reports that entry `e` (its counters `c`, its mark `mark`) timed out and left the
    /// table (`staged`: its locked shard's staged events).
    #[inline]
    fn report_gone<A: Addr>(
        &self,
        staged: &mut VecDeque<Event>,
        e: &Entry<A>,
        c: Option<Counters>,
        mark: u32,
        now: Nanos,
    ) {
        if let Some(q) = &self.events {
            stage(q, staged, || Event {
                kind: EventKind::Destroy,
                time: now,
                entry: EntryView::new(e, now, c, None, mark),
                state_changed: true,
                mark_changed: false,
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
        if self.refresh_extras {
            // Apart, so that the common case keeps nothing live for the report, and tests no
            // timeout policy.
            return self.run_refresh_extras::<A, FRESH>(sb, r, hint, now);
        }
        // SAFETY: `s` is used in this call only, while the caller's lock on `sb` is held.
        let s = unsafe { self.live.unbound() };
        let (dir, before, after) = self.refresh_hinted::<A, FRESH>(sb, r, hint, now, s)?;
        Some(refreshed(dir, before, after))
    }

    /// [`Conntrack::run_refresh`] with an event stream or timeout policies: a connection with
    /// a policy is refreshed by its policy's timeouts, and the update of an entry whose status
    /// the packet changed (its first reply, or ASSURED) is reported.
    #[inline(never)]
    fn run_refresh_extras<A: Addr, const FRESH: bool>(
        &self,
        sb: &mut ShardBox<A>,
        r: &Ready<'_, A>,
        hint: u32,
        now: Nanos,
    ) -> Option<Verdict> {
        let policy = if self.policies.is_empty() {
            0
        } else {
            // The hinted entry's: if the hint is another connection's, the refresh finds that
            // it is not the packet's and does nothing.
            sb.shard.policy_at(hint)
        };
        // SAFETY: `s` is used in this call only, while the caller's lock on `sb` is held.
        let s = unsafe { self.live.unbound_for(policy) };
        let (dir, before, after) = self.refresh_hinted::<A, FRESH>(sb, r, hint, now, s)?;
        if self.events.is_some() && (before != after || before & status::UNREPORTED != 0) {
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
        s: &Sysctl,
    ) -> Option<(Dir, u8, u8)> {
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
                |st, ctx, s| refresh_tcp(st, seg, ctx, s),
                |st, _, ctx, s| match st {
                    ProtoState::Tcp(st) => {
                        let v = tcp::track_full(st, seg, ctx, s);
                        (v.decision, v.lower_timeout)
                    }
                    _ => (Decision::Invalid, None),
                },
                |s| match tcp::open_syn(seg, s) {
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
                refresh_udp,
                |st, _, ctx, s| match st {
                    ProtoState::Udp(u) => (udp::track(u, ctx, s), None),
                    _ => (Decision::Invalid, None),
                },
                |_| Open::Track(ProtoState::Udp(Default::default())),
            ),
        }
    }

    /// Every other protocol: UDP-Lite, ICMP and ICMPv6 (with errors), GRE, generic.
    #[inline(never)]
    fn track_other<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, now: Nanos) -> Verdict {
        let l4 = p.l4();
        let cksum = self.checksum();
        let mut key = addr_key::<A>(p);
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
            |st, k, ctx, s| run_tracker(st, k, input, ctx, s),
            |_| {
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
        track: impl FnMut(&mut ProtoState, &Key<A>, &Ctx, &Sysctl) -> (Decision, Option<Nanos>),
        init: impl FnOnce(&Sysctl) -> Open,
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
            |_, _, _| None,
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
        mut fast: impl FnMut(&mut ProtoState, &Ctx, &Sysctl) -> Option<Refresh>,
        mut track: impl FnMut(&mut ProtoState, &Key<A>, &Ctx, &Sysctl) -> (Decision, Option<Nanos>),
        init: impl FnOnce(&Sysctl) -> Open,
    ) -> Verdict {
        let Some(inv) = key.inverse() else {
            return self.invalid();
        };
        // SAFETY: `s` is used in this call only, while the caller's lock on the shard is held.
        let s = unsafe { self.live.unbound() };
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
            return self.create(t, slot, sb, h, key, now, len, route, s, &mut track, init);
        };
        // The connection's timeout policy times it from now on; a new connection made in its
        // place (below) starts without one, as every connection does.
        let live = s;
        let s = if self.policies.is_empty() {
            s
        } else {
            // SAFETY: as for `s` above.
            unsafe { self.live.unbound_for(sb.shard.policy_at(idx)) }
        };
        sb.stats.found += 1;
        // The batch has tried the hinted entry already (`run_refresh`); the general decision
        // agrees with the fast one wherever that one answers, so skipping it is only slower.
        if idx != hint
            && let Some((dir, before, after)) =
                sb.shard
                    .refresh_at(idx, &key, now, len, |st, ctx| fast(st, ctx, s))
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
        let (d, lower) = track(&mut e.proto, &e.key, &ctx, s);
        match d {
            Decision::Accept(a) => self.apply(t, sb, h, idx, dir, state, a, now, len, was),
            Decision::Ignore => self.ignored(sb, idx, dir, state, was, false, now),
            Decision::Partial(p) => {
                if p.assured {
                    sb.shard.get_mut(idx).status |= status::ASSURED;
                }
                if !p.refused {
                    return self.ignored(sb, idx, dir, state, was, p.changed, now);
                }
                sb.stats.invalid += 1;
                if let Some(was) = was {
                    // No event for a refused packet: the kernel keeps what it changed for
                    // the entry's next packet that gets through, as for one the host drops.
                    self.report_change(sb, idx, was.status, p.changed, false, now);
                }
                Verdict::INVALID
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
                self.create(t, slot, sb, h, key, now, len, route, live, &mut track, init)
            }
        }
    }

    /// An ignored packet of a confirmed entry (let through, neither refreshing nor counted):
    /// only its direction is noted. `changed`: its tracker moved the state on the way (see
    /// [`Partial::changed`]).
    #[allow(clippy::too_many_arguments)]
    fn ignored<A: Addr>(
        &self,
        sb: &mut ShardBox<A>,
        idx: u32,
        dir: Dir,
        state: State,
        was: Option<Was>,
        changed: bool,
        now: Nanos,
    ) -> Verdict {
        sb.stats.ignore += 1;
        let e = sb.shard.get_mut(idx);
        if dir == Dir::Reply {
            e.status |= status::SEEN_REPLY;
        }
        let v = verdict_of(e, state, dir);
        if let Some(was) = was {
            // A retransmitted SYN the tracker ignores may still have moved the state
            // (SYN_SENT to SYN_SENT2).
            let moved = changed || phase(&sb.shard.get(idx).proto) != was.phase;
            self.report_change(sb, idx, was.status, moved, was.passes, now);
        }
        v
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
        s: &Sysctl,
        track: &mut impl FnMut(&mut ProtoState, &Key<A>, &Ctx, &Sysctl) -> (Decision, Option<Nanos>),
        init: impl FnOnce(&Sysctl) -> Open,
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
        let taken = if self.cfg.helpers.is_empty() {
            None
        } else {
            match self.expected_and_helper(t, &mut e, now) {
                // An expected connection gets its master's mark: room for the shard's marks
                // first, so that nothing fails once the entry is in.
                Ok(Some(tk)) if tk.mark != 0 && sb.shard.keep_marks().is_err() => {
                    return self.out_of_memory(sb);
                }
                Ok(m) => m,
                Err(NoRoom) => return self.out_of_memory(sb),
            }
        };
        let decided = match init(s) {
            Open::Decided(st, r) => {
                e.proto = st;
                Decision::Accept(r.into())
            }
            Open::Track(st) => {
                e.proto = st;
                track(&mut e.proto, &e.key, &Ctx::opening(now), s).0
            }
            Open::Refused => Decision::Invalid,
        };
        let a = match decided {
            Decision::Accept(a) => a,
            Decision::Ignore | Decision::Invalid | Decision::Reopen | Decision::Partial(_) => {
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
        // Room for the shard's timeout policies first, so that nothing fails once the entry is
        // in.
        if !self.policies.is_empty() && sb.shard.keep_policies().is_err() {
            return self.out_of_memory(sb);
        }
        let Ok(idx) = sb.shard.insert(h, e, now, &hash) else {
            // Never after `make_room` above (nothing has been allocated since).
            return self.out_of_memory(sb);
        };
        sb.shard.count_packet(idx, Dir::Original, len);
        if !self.policies.is_empty() {
            self.give_policy(sb, idx, now);
        }
        if let Some(tk) = taken {
            // Within the room kept above: cannot fail.
            let _ = sb.shard.set_mark(idx, tk.mark);
            t.expect.lock().adopt(key, tk.master, helped);
        }
        slot.publish(sb);
        sb.stats.insert += 1;
        if let Some(q) = &self.events {
            self.report(q, EventKind::New, sb, idx, now, true);
        }
        v
    }

    /// A ruleset's `ct timeout set` for entry `idx`, just made by its first packet (at `now`)
    /// in a shard with room for its policy: the policy of the last rule that matches it, if
    /// any, times the connection from that packet on, that one by the policy's first timeout.
    /// Out of line: a tracker without rules never calls it.
    #[inline(never)]
    fn give_policy<A: Addr>(&self, sb: &mut ShardBox<A>, idx: u32, now: Nanos) {
        let key = sb.shard.get(idx).key;
        let p = self.policies.of(key.proto, key.dport);
        if let Some(first) = self.policies.first_timeout(p) {
            sb.shard.set_policy(idx, p);
            sb.shard
                .set_expiry(idx, now.saturating_add(ctrack_protocols::secs(first)), now);
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
        let Some((mut quoted, call)) = icmp_error::quoted::<A>(inner) else {
            return self.icmp_refused();
        };
        // The error is matched with the connections of its own zone.
        quoted.zone = p.zone;
        if call {
            // As for the GRE packet itself: its source key is what a PPTP master mapped.
            quoted.sport = self.gre_source_key(t, &quoted);
        }
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
        zone: p.zone,
        proto,
    }
}

/// A packet's addresses, zone and protocol, its ports (or ICMP id and type) left 0: the
/// tuple of a protocol tracked without ports, which the others fill in.
#[inline(always)]
fn addr_key<A: Addr>(p: &IpPacket<'_>) -> Key<A> {
    Key {
        src: A::from_bytes(p.src()),
        dst: A::from_bytes(p.dst()),
        sport: 0,
        dport: 0,
        zone: p.zone,
        proto: p.proto,
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
    /// A reassembled datagram's helper is looked up before it is tracked, whatever its
    /// layer 4 holds: one too short for ports (the tracker refuses it later) has no helper.
    #[test]
    fn a_helper_lookup_before_tracking_takes_a_layer_4_too_short_for_ports() {
        let cfg = Config {
            helpers: ctrack_helpers::parse_assignments(["all"]).unwrap(),
            ..Config::default()
        };
        let ct = Conntrack::with_seed(cfg, 7);
        for proto in [proto::TCP, proto::UDP] {
            for n in 0..4 {
                let bytes = ip4(A, B, proto, &[0x15; 4][..n]);
                let q = packet::parse_ip(&bytes).unwrap();
                assert_eq!(q.l4().len(), n);
                assert!(ct.helper_before(&q).is_none());
            }
        }
    }

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

    /// Any shard count is taken: rounded up to a power of two from 1 to `MAX_SHARDS` (an
    /// absurd one neither overflows nor asks for the memory of that many locks).
    #[test]
    fn shard_counts_are_bounded() {
        for (asked, got) in [
            (0, 1),
            (3, 4),
            (1024, 1024),
            (1025, 1024),
            (usize::MAX, 1024),
        ] {
            let ct = Conntrack::new(Config {
                shards: asked,
                ..Config::default()
            });
            assert_eq!(
                (ct.v4.shards.len(), ct.v6.shards.len()),
                (got, got),
                "{asked}"
            );
            let syn =
                crate::workload::Workload::generate(crate::workload::Kind::Syn, 1, 3, false, 1);
            for p in syn.all() {
                assert!(ct.process(p, crate::LinkType::Raw, 1).tracked());
            }
            assert_eq!(ct.count(), 3);
        }
    }

    /// The shards' sysctls, read through `ShardBox::sysctl_unbound` while their shard changes,
    /// replaced by another thread meanwhile (small enough for Miri, which checks the reads
    /// against the replacements).
    #[test]
    fn sysctls_replaced_under_tracking_threads() {
        let cfg = Config {
            shards: 2,
            ..Config::default()
        };
        let ct = Conntrack::with_seed(cfg, 3);
        ct.set_sysctl("nf_conntrack_checksum=0").unwrap();
        let s = ctrack_protocols::NANOS_PER_SEC;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..12u16 {
                    let t = u64::from(i) * s;
                    let v = ct.process(
                        &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i % 3, 53),
                        LinkType::Raw,
                        t,
                    );
                    assert!(v.tracked(), "{v}");
                    let v = ct.process(
                        &udp4([10, 0, 0, 2], [10, 0, 0, 1], 53, 1000 + i % 3),
                        LinkType::Raw,
                        t,
                    );
                    assert!(v.tracked(), "{v}");
                }
            });
            scope.spawn(|| {
                for t in [10, 50, 20, 70] {
                    ct.set_sysctl(&format!("nf_conntrack_udp_timeout_stream={t}"))
                        .unwrap();
                    ct.set_sysctl(&format!("nf_conntrack_udp_timeout={t}"))
                        .unwrap();
                }
            });
        });
        assert_eq!(ct.count(), 3);
        assert_eq!(ct.config().sysctl.nf_conntrack_udp_timeout, 70);
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
    fn seconds_left_count_to_the_nearest_tick() {
        // A UDP entry gets 30 s at time 0. The kernel counts what is left in ticks from
        // the refreshing tick: within half a tick of the packet it still has all 30 s (an
        // entry killed then reports 30, or 1 of a 1 s timeout, not one less).
        let ct = tracker();
        assert_eq!(run(&ct, &udp4(A, B, 1000, 53), 0), "new,orig");
        let half = ctrack_protocols::HALF_JIFFY;
        assert_eq!(seconds_left(&ct, 20_000), vec![30]);
        assert_eq!(seconds_left(&ct, half), vec![30]);
        assert_eq!(seconds_left(&ct, half + 1), vec![29]);
        assert_eq!(seconds_left(&ct, 29 * SEC + half), vec![1]);
        assert_eq!(seconds_left(&ct, 29 * SEC + half + 1), vec![0]);
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
