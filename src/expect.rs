//! Expectations: connections a helper has announced (an FTP data connection, a TFTP
//! transfer, a SIP media stream, an IRC DCC), which the first packet of a matching new
//! connection takes, making it RELATED to its master; with what helpers remember of their
//! masters and which masters have live expected connections.
//!
//! An expectation names the destination address, protocol and destination port of the
//! connection to come, and its source address or any source (any source port always). It
//! belongs to a class of its helper's policy, which bounds how many a master holds at once (a
//! new one evicts the oldest of its class) and how long each lives. It may be permanent (taken
//! by every match, not consumed) and inactive (not matched until its helper activates it).
//! Expectations go with their master.
//!
//! Nothing here aborts when memory runs out: what an expectation, a master's state or an
//! expected connection's bookkeeping needs is reserved before anything changes, and the
//! packet that needed it is refused (dropped, as the kernel drops a packet whose helper cannot
//! allocate); removals allocate nothing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ctrack_helpers::{ftp, pptp, sane, sip};
use ctrack_protocols::{NANOS_PER_SEC, Nanos};

use crate::event::{EventKind, EventQueue, ExpectEvent};
use crate::format::ExpectView;
use crate::timer::kernel_timer_fires as timer_fires;
use crate::tuple::{Addr, Key};

/// What an expectation expects: a connection from `src`:`sport` (`None`: any address, any
/// port; a GRE source key is a port here) to `dst`:`dport` over `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Expected<A> {
    pub(crate) src: Option<A>,
    pub(crate) sport: Option<u16>,
    pub(crate) dst: A,
    pub(crate) dport: u16,
    pub(crate) zone: u16,
    pub(crate) proto: u8,
}

/// The destination side of an expectation: where pending ones are filed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Dest<A> {
    dst: A,
    dport: u16,
    zone: u16,
    proto: u8,
}

impl<A: Addr> Expected<A> {
    /// Whether a connection from `src`:`sport` is one this expects.
    fn admits(&self, src: &A, sport: u16) -> bool {
        self.src.is_none_or(|s| s == *src) && self.sport.is_none_or(|p| p == sport)
    }

    /// Whether two expectations to the same place can both match some connection.
    fn overlaps(&self, o: &Self) -> bool {
        let src = self.src.is_none() || o.src.is_none() || self.src == o.src;
        src && (self.sport.is_none() || o.sport.is_none() || self.sport == o.sport)
    }

    /// The source side (address and port) is the same.
    fn same_source(&self, o: &Self) -> bool {
        self.src == o.src && self.sport == o.sport
    }

    fn dest(&self) -> Dest<A> {
        Dest {
            dst: self.dst,
            dport: self.dport,
            zone: self.zone,
            proto: self.proto,
        }
    }
}

/// How an expectation is added: its helper's policy for its class, and its flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// Class within the helper's policy (0 for single-class helpers).
    pub(crate) class: u8,
    /// Most pending expectations of this class per master (0: no limit).
    pub(crate) max_expected: u32,
    /// Lifetime.
    pub(crate) timeout: Nanos,
    /// Not consumed by the connections that take it.
    pub(crate) permanent: bool,
    /// Not matched until activated.
    pub(crate) inactive: bool,
    /// Registry index of the helper the expected connection gets (0: none).
    pub(crate) child_helper: u8,
    /// The same expectation from another master (or of another class) is taken as already
    /// there instead of clashing (the kernel's `NF_CT_EXP_F_SKIP_MASTER`).
    pub(crate) skip_master: bool,
    /// A PPTP call's GRE: the connection that takes it withdraws the other direction's.
    pub(crate) gre_call: bool,
}

impl Spec {
    /// A plain expectation of class 0.
    pub(crate) fn plain(max_expected: u32, timeout: Nanos) -> Self {
        Spec {
            class: 0,
            max_expected,
            timeout,
            permanent: false,
            inactive: false,
            child_helper: 0,
            skip_master: false,
            gre_call: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending<A> {
    /// What it expects.
    e: Expected<A>,
    master: Key<A>,
    /// When it runs out: its time left counts to this.
    expires: Nanos,
    /// When it is gone: the kernel's timer fires some time after the deadline (see
    /// [`timer_fires`]), and until then the expectation is there to be taken.
    fires: Nanos,
    /// Registry index of the master's helper.
    helper: u8,
    class: u8,
    permanent: bool,
    inactive: bool,
    child_helper: u8,
    gre_call: bool,
}

/// The expectation a new connection took (see [`Expectations::take`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken<A> {
    /// The master's original tuple.
    pub(crate) master: Key<A>,
    /// The helper the connection gets (0: none).
    pub(crate) child_helper: u8,
    /// The master's connection mark, which the connection gets.
    pub(crate) mark: u32,
}

/// What a GRE packet's source key is looked up by: its addresses and destination key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct GreDest<A> {
    src: A,
    dst: A,
    dstkey: u16,
}

/// The GRE key mappings of PPTP masters (the kernel's GRE keymap): GRE from `src` to `dst`
/// with destination key `dstkey` has a master's source key. Kept by master, one per direction
/// of its call, and by what a packet looks up, oldest first, so that neither a packet's lookup
/// nor a master's change walks them all (the kernel walks one list; a host opening many
/// calls would make every GRE packet slow).
#[derive(Debug, Default)]
struct KeyMaps<A: Addr> {
    /// Each master's mapping per direction (0: the call's client to server, 1: back).
    by_master: HashMap<Key<A>, [Option<GreDest<A>>; 2]>,
    /// The mappings of each lookup, oldest first.
    by_dest: HashMap<GreDest<A>, Vec<Mapped<A>>>,
}

/// One mapping as a lookup lists it: master, direction, source key.
type Mapped<A> = (Key<A>, u8, u16);

/// What the table keeps about a master connection (one with a helper).
#[derive(Clone, Debug, Default)]
pub(crate) struct Master<A> {
    /// Where lines start on an FTP control connection.
    pub(crate) lines: ftp::Lines,
    /// Whether a SANE client asked to start a scan.
    pub(crate) sane: sane::Sane,
    /// What the SIP helper remembers of the REGISTER and INVITE it saw.
    pub(crate) sip: sip::Master,
    /// The PPTP helper's session and call states.
    pub(crate) pptp: pptp::Pptp,
    /// The master's connection mark, which a connection taking one of its expectations gets
    /// (as the kernel's new expected connection copies its master's mark).
    pub(crate) mark: u32,
    /// Its pending expectations, oldest first.
    expecting: Vec<Expected<A>>,
}

/// Why an expectation could not be added (the kernel drops the packet that announced it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another master already expects the same connection, or one it overlaps.
    Clash,
    /// `nf_conntrack_expect_max` expectations are pending.
    Full,
    /// The memory for it could not be had.
    NoMemory,
    /// An equal one of another master or class is pending (the kernel's `-EALREADY`, which
    /// the SIP helper takes as success).
    Already,
}

/// One family's [`Expectations`] behind their lock, with what the common lanes need to know
/// of them readable without it ([`ExpectCell::flags`]): with helpers configured, they track a
/// packet off the helpers' ports on their own while nothing is pending, and only a packet
/// that refreshes its entry while expectations are pending but no expected connection has a
/// helper of its own. Every change goes through [`ExpectCell::lock`], whose guard records
/// the flags as it lets go, so they are never stale for the thread that made the change.
#[derive(Debug)]
pub(crate) struct ExpectCell<A: Addr> {
    inner: parking_lot::Mutex<Expectations<A>>,
    flags: AtomicU8,
}

/// [`ExpectCell::flags`]: an expectation is pending.
pub(crate) const PENDING: u8 = 1;
/// [`ExpectCell::flags`]: an expected connection has a helper of its own.
pub(crate) const HELPED: u8 = 2;

impl<A: Addr> ExpectCell<A> {
    pub(crate) fn new(x: Expectations<A>) -> Self {
        ExpectCell {
            flags: AtomicU8::new(x.flags()),
            inner: parking_lot::Mutex::new(x),
        }
    }

    /// Locks the expectations; the guard updates [`ExpectCell::flags`] when dropped.
    #[inline]
    pub(crate) fn lock(&self) -> ExpectGuard<'_, A> {
        ExpectGuard {
            guard: self.inner.lock(),
            flags: &self.flags,
        }
    }

    /// [`PENDING`] and [`HELPED`] as the last lock left them, read without locking.
    #[inline]
    pub(crate) fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Quiet as the last lock left it (no flag: nothing pending, no expected connection with a
    /// helper of its own), without locking.
    #[inline]
    pub(crate) fn is_quiet(&self) -> bool {
        self.flags() == 0
    }
}

/// The locked expectations of an [`ExpectCell`].
pub(crate) struct ExpectGuard<'a, A: Addr> {
    guard: parking_lot::MutexGuard<'a, Expectations<A>>,
    flags: &'a AtomicU8,
}

impl<A: Addr> std::ops::Deref for ExpectGuard<'_, A> {
    type Target = Expectations<A>;
    fn deref(&self) -> &Expectations<A> {
        &self.guard
    }
}

impl<A: Addr> std::ops::DerefMut for ExpectGuard<'_, A> {
    fn deref_mut(&mut self) -> &mut Expectations<A> {
        &mut self.guard
    }
}

impl<A: Addr> Drop for ExpectGuard<'_, A> {
    fn drop(&mut self) {
        // Still under the lock: the flags follow the changes in the lock's order.
        self.flags.store(self.guard.flags(), Ordering::Release);
    }
}

/// One address family's expectations.
#[derive(Debug, Default)]
pub(crate) struct Expectations<A: Addr> {
    /// Pending expectations by destination, oldest first.
    pending: HashMap<Dest<A>, Vec<Pending<A>>>,
    /// How many are pending.
    count: usize,
    /// No pending expectation runs out before this (a lower bound, exact after a purge): a
    /// full table's purge is skipped until then, instead of walking every expectation for
    /// each announcement it refuses.
    next_expiry: Nanos,
    masters: HashMap<Key<A>, Master<A>>,
    /// Live expected connections (original tuple) and their master's original tuple.
    children: HashMap<Key<A>, Key<A>>,
    /// Live expected connections per master.
    child_count: HashMap<Key<A>, u32>,
    /// GRE key mappings of PPTP masters.
    keymap: KeyMaps<A>,
    /// Live expected connections that have a helper of their own (a SIP call to a registered
    /// contact): its packets must reach it wherever their ports lie.
    helped_children: std::collections::HashSet<Key<A>>,
    /// Masters whose entry expired and was swept out of its shard while expectations of theirs
    /// were pending. The kernel removes an expired entry only when its garbage collection (a
    /// worker that comes by every few seconds to a minute) or a lookup of its tuple meets it,
    /// and until then its expectations are taken as usual; here a shard sweeps at its next
    /// packet, which depends on how the hash seed spread the entries. So the expectations
    /// stay, whichever shard the master was in, until they run out, or a connection with the
    /// master's tuple is looked up ([`Expectations::bury`]), or the table is collected.
    orphans: std::collections::HashSet<Key<A>>,
    /// Where expectation events go, when the engine records them.
    events: Reporter,
}

/// The event queue expectation events go to (none: they are not recorded).
#[derive(Clone, Default)]
pub(crate) struct Reporter(pub(crate) Option<Arc<EventQueue>>);

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reporter(on)"
        } else {
            "Reporter(off)"
        })
    }
}

impl<A: Addr> Expectations<A> {
    /// An empty table whose expectation events go to `events`.
    pub(crate) fn reporting(events: Reporter) -> Self {
        Expectations {
            events,
            ..Default::default()
        }
    }

    /// Reports what happened to `p` at `now`, when events are recorded.
    fn report(&self, kind: EventKind, p: &Pending<A>, now: Nanos) {
        let Some(q) = &self.events.0 else {
            return;
        };
        q.push_expect(ExpectEvent {
            kind,
            time: now,
            expect: ExpectView {
                proto: p.e.proto,
                src: p.e.src.map(|a| a.ip()),
                dst: p.e.dst.ip(),
                sport: p.e.sport,
                dport: p.e.dport,
                zone: p.e.zone,
                master: p.master.to_tuple(),
                // The kernel counts in ticks: what is left to the nearest one (an
                // expectation taken in the tick that made it still has all its time).
                seconds_left: p
                    .expires
                    .saturating_sub(now)
                    .saturating_add(ctrack_protocols::HALF_JIFFY)
                    / NANOS_PER_SEC,
                helper: ctrack_helpers::at_index(p.helper).map(|h| h.name),
                class: p.class,
                permanent: p.permanent,
                inactive: p.inactive,
            },
        });
    }

    /// True when no expectation is pending (new connections need not look).
    #[inline]
    pub(crate) fn none_pending(&self) -> bool {
        self.count == 0
    }

    /// The expectation a new connection with original tuple `k` takes at `now`, if any: the
    /// newest active one that matches, removed unless permanent. A PPTP call's GRE withdraws
    /// the other direction's expectation.
    pub(crate) fn take(&mut self, k: &Key<A>, now: Nanos) -> Option<Taken<A>> {
        let dest = Dest {
            dst: k.dst,
            dport: k.dport,
            zone: k.zone,
            proto: k.proto,
        };
        let list = self.pending.get(&dest)?;
        let i = list
            .iter()
            .rposition(|p| !p.inactive && p.fires > now && p.e.admits(&k.src, k.sport))?;
        let p = list[i];
        if !p.permanent {
            self.remove(&dest, i, now);
        }
        if p.gre_call {
            let other = Expected {
                src: Some(p.e.dst),
                sport: Some(p.e.dport),
                dst: p.e.src.unwrap_or(p.e.dst),
                dport: p.e.sport.unwrap_or(0),
                zone: p.e.zone,
                proto: p.e.proto,
            };
            if let Some(j) = (self.pending.get(&other.dest()))
                .and_then(|l| l.iter().rposition(|q| q.e.overlaps(&other)))
            {
                self.remove(&other.dest(), j, now);
            }
        }
        Some(Taken {
            master: p.master,
            child_helper: p.child_helper,
            mark: self.masters.get(&p.master).map_or(0, |m| m.mark),
        })
    }

    /// Master `k`'s connection mark is now `mark`: connections that take its expectations
    /// from now on get it. Made on first use, as [`Expectations::master`]; false when the
    /// memory for it cannot be had.
    pub(crate) fn set_master_mark(&mut self, k: &Key<A>, mark: u32) -> bool {
        match self.masters.get_mut(k) {
            Some(m) => m.mark = mark,
            None if mark == 0 => {}
            None => match self.master(k) {
                Some(m) => m.mark = mark,
                None => return false,
            },
        }
        true
    }

    /// The state kept for master `k` (made on first use); `None` when the memory for it
    /// cannot be had.
    pub(crate) fn master(&mut self, k: &Key<A>) -> Option<&mut Master<A>> {
        if !self.masters.contains_key(k) {
            self.masters.try_reserve(1).ok()?;
        }
        Some(self.masters.entry(*k).or_default())
    }

    /// Adds master `m`'s expectation of `e` (its helper's registry index `helper`) as `spec`
    /// says, under a table-wide limit of `max_total`, in the kernel's order: an equal one of
    /// the same master and class is replaced, an equal one of another master (with
    /// `skip_master`) or class is left as it is ([`Refused::Already`]), one that overlaps it
    /// from another master clashes; then the class limit evicts the master's oldest of the
    /// class, and the table-wide limit refuses.
    pub(crate) fn expect(
        &mut self,
        m: &Key<A>,
        helper: u8,
        e: Expected<A>,
        spec: Spec,
        max_total: usize,
        now: Nanos,
    ) -> Result<(), Refused> {
        let dest = e.dest();
        // Everything it needs first, as the kernel allocates an expectation before it looks
        // for clashes: a list for its destination (the one there may be emptied below).
        let mut fresh = Vec::new();
        if fresh.try_reserve_exact(1).is_err() || self.room_to_expect(m, &dest).is_err() {
            return Err(Refused::NoMemory);
        }
        self.purge_master(m, now);
        // Those that have run out here are gone already, for the kernel.
        while let Some(i) =
            (self.pending.get(&dest)).and_then(|l| l.iter().position(|p| p.fires <= now))
        {
            self.remove(&dest, i, now);
        }
        if let Some(list) = self.pending.get(&dest) {
            // Newest first, as the kernel's hash chain holds them.
            let mut replace = None;
            for (i, p) in list.iter().enumerate().rev() {
                if (spec.skip_master || p.master == *m) && p.e.same_source(&e) {
                    if p.class != spec.class || p.master != *m {
                        return Err(Refused::Already);
                    }
                    replace = Some(i);
                    break;
                }
                if p.e.overlaps(&e) {
                    return Err(Refused::Clash);
                }
            }
            if let Some(i) = replace {
                self.remove(&dest, i, now);
            }
        }
        if spec.max_expected != 0 {
            let mine = self.masters.get(m).map_or(&[][..], |x| &x.expecting[..]);
            let of_class = |x: &Expected<A>| self.find(x).is_some_and(|p| p.class == spec.class);
            if mine.iter().filter(|x| of_class(x)).count() >= spec.max_expected as usize
                && let Some(oldest) = mine.iter().find(|x| of_class(x)).copied()
            {
                self.drop_pending(&oldest, now);
            }
        }
        if self.count >= max_total {
            self.purge(now);
            if self.count >= max_total {
                return Err(Refused::Full);
            }
        }
        let list = self.pending.entry(dest).or_insert(fresh);
        let p = Pending {
            e,
            master: *m,
            expires: now.saturating_add(spec.timeout),
            fires: {
                let at = timer_fires(now, spec.timeout);
                self.next_expiry = self.next_expiry.min(at);
                at
            },
            helper,
            class: spec.class,
            permanent: spec.permanent,
            inactive: spec.inactive,
            child_helper: spec.child_helper,
            gre_call: spec.gre_call,
        };
        list.push(p);
        self.count += 1;
        self.masters.entry(*m).or_default().expecting.push(e);
        self.report(EventKind::New, &p, now);
        Ok(())
    }

    /// Room for one more pending expectation of master `m` to `dest`, in the maps and in
    /// the lists it joins (master `m`'s state is made if need be).
    fn room_to_expect(
        &mut self,
        m: &Key<A>,
        dest: &Dest<A>,
    ) -> Result<(), std::collections::TryReserveError> {
        self.pending.try_reserve(1)?;
        self.masters.try_reserve(1)?;
        if let Some(list) = self.pending.get_mut(dest) {
            list.try_reserve(1)?;
        }
        self.masters.entry(*m).or_default().expecting.try_reserve(1)
    }

    /// The SIP helper's flush of master `m`: with `media`, every expectation not of class 0
    /// (signalling); otherwise the newest signalling one.
    pub(crate) fn flush_sip(&mut self, m: &Key<A>, media: bool, now: Nanos) {
        // One at a time, newest first (removing one takes it off the master's list).
        let mut from = usize::MAX;
        loop {
            let Some(master) = self.masters.get(m) else {
                return;
            };
            let upto = from.min(master.expecting.len());
            let Some((i, e)) = (master.expecting[..upto].iter().enumerate().rev())
                .find(|(_, e)| self.find(e).is_some_and(|p| (p.class != 0) == media))
                .map(|(i, e)| (i, *e))
            else {
                return;
            };
            self.drop_pending(&e, now);
            if !media {
                return;
            }
            from = i;
        }
    }

    /// The SIP helper's refresh of master `m`'s signalling expectation of `dst`:`dport` over
    /// `proto`: when one is alive at `now`, it lives `secs` from now and becomes active.
    pub(crate) fn refresh_signalling(
        &mut self,
        m: &Key<A>,
        dst: A,
        proto: u8,
        dport: u16,
        secs: u32,
        now: Nanos,
    ) -> bool {
        let Some(master) = self.masters.get(m) else {
            return false;
        };
        for e in master.expecting.iter().rev() {
            if e.dst != dst || e.proto != proto || e.dport != dport {
                continue;
            }
            let Some(list) = self.pending.get_mut(&e.dest()) else {
                continue;
            };
            let hit = list
                .iter_mut()
                .rev()
                .find(|p| p.e.same_source(e) && p.master == *m);
            if let Some(p) = hit
                && p.class == 0
                && p.fires > now
            {
                let timeout = u64::from(secs) * NANOS_PER_SEC;
                p.expires = now.saturating_add(timeout);
                p.fires = timer_fires(now, timeout);
                self.next_expiry = self.next_expiry.min(p.fires);
                p.inactive = false;
                return true;
            }
        }
        false
    }

    /// The newest live expectation a connection from `e.src` to `e`'s destination would
    /// match (inactive ones included): its master, the master's helper and its class.
    pub(crate) fn matching(&self, e: &Expected<A>, now: Nanos) -> Option<(Key<A>, u8, u8)> {
        let list = self.pending.get(&e.dest())?;
        let p = list
            .iter()
            .rev()
            .find(|p| p.fires > now && p.e.overlaps(e))?;
        Some((p.master, p.helper, p.class))
    }

    /// Withdraws the newest pending expectation a connection with tuple `k` would match.
    pub(crate) fn withdraw(&mut self, k: &Key<A>, now: Nanos) {
        let dest = Dest {
            dst: k.dst,
            dport: k.dport,
            zone: k.zone,
            proto: k.proto,
        };
        if let Some(i) = (self.pending.get(&dest))
            .and_then(|l| l.iter().rposition(|p| p.e.admits(&k.src, k.sport)))
        {
            self.remove(&dest, i, now);
        }
    }

    /// Withdraws the pending expectation `e`.
    pub(crate) fn unexpect(&mut self, e: &Expected<A>, now: Nanos) {
        self.drop_pending(e, now);
    }

    /// The pending expectation `e` (of whichever master).
    fn find(&self, e: &Expected<A>) -> Option<&Pending<A>> {
        self.pending
            .get(&e.dest())?
            .iter()
            .find(|p| p.e.same_source(e))
    }

    /// Removes the `i`th pending expectation of `dest` at `now`, from its master's list too.
    fn remove(&mut self, dest: &Dest<A>, i: usize, now: Nanos) {
        let Some(list) = self.pending.get_mut(dest) else {
            return;
        };
        let p = list.remove(i);
        if list.is_empty() {
            self.pending.remove(dest);
        }
        self.count -= 1;
        self.report(EventKind::Destroy, &p, now);
        if let Some(m) = self.masters.get_mut(&p.master)
            && let Some(j) = m
                .expecting
                .iter()
                .position(|x| x.dest() == *dest && x.same_source(&p.e))
        {
            m.expecting.remove(j);
        }
        // An orphaned master has nothing left to keep once its last expectation is gone.
        if self.orphans.contains(&p.master)
            && self
                .masters
                .get(&p.master)
                .is_none_or(|m| m.expecting.is_empty())
        {
            self.forget(&p.master, true, false, now);
        }
    }

    /// Removes the pending expectation `e` at `now`.
    fn drop_pending(&mut self, e: &Expected<A>, now: Nanos) {
        let dest = e.dest();
        if let Some(i) = self
            .pending
            .get(&dest)
            .and_then(|l| l.iter().position(|p| p.e.same_source(e)))
        {
            self.remove(&dest, i, now);
        }
    }

    /// Drops master `m`'s expectations that have run out at `now`, oldest first.
    fn purge_master(&mut self, m: &Key<A>, now: Nanos) {
        // Removing one also takes it off its master's list (see `remove`), and the ones
        // before it stay: the search goes on from where it stopped.
        let mut at = 0;
        loop {
            let Some(master) = self.masters.get(m) else {
                return;
            };
            let Some((i, e)) = (master.expecting.iter().enumerate().skip(at))
                .find(|(_, e)| self.find(e).is_some_and(|p| p.fires <= now))
                .map(|(i, e)| (i, *e))
            else {
                return;
            };
            let before = master.expecting.len();
            self.drop_pending(&e, now);
            // It left the list, unless the one dropped was another master's.
            let left = self
                .masters
                .get(m)
                .is_none_or(|x| x.expecting.len() < before);
            at = if left { i } else { i + 1 };
        }
    }

    /// Drops every expectation that has run out at `now`.
    pub(crate) fn purge(&mut self, now: Nanos) {
        if now < self.next_expiry {
            return;
        }
        let n = (self.pending.values())
            .map(|l| l.iter().filter(|p| p.fires <= now).count())
            .sum();
        let mut gone = Vec::new();
        if gone.try_reserve_exact(n).is_ok() {
            gone.extend(
                self.pending
                    .values()
                    .flat_map(|l| l.iter().filter(|p| p.fires <= now).map(|p| p.e)),
            );
            for e in &gone {
                self.drop_pending(e, now);
            }
        } else {
            // Without the memory for the list: one at a time.
            while let Some(e) =
                (self.pending.values()).find_map(|l| l.iter().find(|p| p.fires <= now).map(|p| p.e))
            {
                self.drop_pending(&e, now);
            }
        }
        self.next_expiry = (self.pending.values().flatten())
            .map(|p| p.fires)
            .min()
            .unwrap_or(Nanos::MAX);
    }

    /// Maps GRE from `src` to `dst` with destination key `dstkey` to source key `srckey` for
    /// master `m`'s direction `dir`. A master holds one mapping per direction: the same one
    /// again is a retransmission; another is refused.
    pub(crate) fn keymap_add(
        &mut self,
        m: &Key<A>,
        dir: u8,
        src: A,
        dst: A,
        dstkey: u16,
        srckey: u16,
    ) -> Result<(), ()> {
        debug_assert!(dir < 2);
        let d = GreDest { src, dst, dstkey };
        let km = &mut self.keymap;
        match km.by_master.get(m).and_then(|x| x[usize::from(dir.min(1))]) {
            Some(x) if x == d => return Ok(()),
            Some(_) => return Err(()),
            None => {}
        }
        // Room in both maps and in the lookup's list before either changes.
        km.by_master.try_reserve(1).map_err(|_| ())?;
        km.by_dest.try_reserve(1).map_err(|_| ())?;
        let list = km.by_dest.entry(d).or_default();
        if list.try_reserve(1).is_err() {
            if list.is_empty() {
                km.by_dest.remove(&d);
            }
            return Err(());
        }
        list.push((*m, dir, srckey));
        km.by_master.entry(*m).or_default()[usize::from(dir.min(1))] = Some(d);
        Ok(())
    }

    /// Removes master `m`'s GRE key mappings.
    pub(crate) fn keymap_destroy(&mut self, m: &Key<A>) {
        let km = &mut self.keymap;
        let Some(dests) = km.by_master.remove(m) else {
            return;
        };
        for (dir, d) in dests.iter().enumerate() {
            let Some(d) = d else {
                continue;
            };
            if let Some(list) = km.by_dest.get_mut(d) {
                list.retain(|&(x, xd, _)| !(x == *m && usize::from(xd.min(1)) == dir));
                if list.is_empty() {
                    km.by_dest.remove(d);
                }
            }
        }
    }

    /// The GRE source key of a packet from `src` to `dst` with destination key `dstkey`: the
    /// oldest mapping's, or 0.
    pub(crate) fn gre_source_key(&self, src: &A, dst: &A, dstkey: u16) -> u16 {
        let d = GreDest {
            src: *src,
            dst: *dst,
            dstkey,
        };
        (self.keymap.by_dest.get(&d))
            .and_then(|l| l.first())
            .map_or(0, |&(_, _, srckey)| srckey)
    }

    /// True when some GRE key mapping exists.
    pub(crate) fn has_keymap(&self) -> bool {
        !self.keymap.by_master.is_empty()
    }

    /// [`PENDING`] when an expectation is pending, [`HELPED`] when an expected connection has
    /// a helper of its own. With neither (quiet), the batch may track packets off the
    /// helpers' ports shard by shard.
    pub(crate) fn flags(&self) -> u8 {
        let pending = if self.count != 0 { PENDING } else { 0 };
        let helped = if self.helped_children.is_empty() {
            0
        } else {
            HELPED
        };
        pending | helped
    }

    /// Room for [`Expectations::adopt`] to record one more expected connection; false when
    /// the memory cannot be had.
    pub(crate) fn room_to_adopt(&mut self, helped: bool) -> bool {
        self.children.try_reserve(1).is_ok()
            && self.child_count.try_reserve(1).is_ok()
            && (!helped || self.helped_children.try_reserve(1).is_ok())
    }

    /// Records that the new connection `child` took an expectation of `master`; `helped`:
    /// it has a helper of its own. Allocates nothing after [`Expectations::room_to_adopt`].
    pub(crate) fn adopt(&mut self, child: Key<A>, master: Key<A>, helped: bool) {
        if helped {
            self.helped_children.insert(child);
        }
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

    /// Entry `k` expired and its shard swept it out: as [`Expectations::forget`], except that a
    /// master with pending expectations keeps them, and its state, as an orphan.
    pub(crate) fn swept(&mut self, k: &Key<A>, master: bool, child: bool, now: Nanos) {
        let keep = master
            && self.masters.get(k).is_some_and(|m| !m.expecting.is_empty())
            // Without the memory to remember it, it goes now, as if collected.
            && self.orphans.try_reserve(1).is_ok();
        if keep {
            self.orphans.insert(*k);
        }
        self.forget(k, master && !keep, child, now);
    }

    /// A packet with tuple `k` (either direction) found no entry: an orphaned master with that
    /// tuple goes for good, its expectations with it (the kernel's lookup would have met the
    /// expired entry and removed it).
    pub(crate) fn bury(&mut self, k: &Key<A>, now: Nanos) {
        if self.orphans.is_empty() {
            return;
        }
        for c in [Some(*k), k.inverse()].into_iter().flatten() {
            if self.orphans.contains(&c) {
                self.forget(&c, true, false, now);
            }
        }
    }

    /// Every orphaned master goes (the table was collected).
    pub(crate) fn bury_all(&mut self, now: Nanos) {
        if self.orphans.is_empty() {
            return;
        }
        for k in &std::mem::take(&mut self.orphans) {
            self.forget(k, true, false, now);
        }
    }

    /// A connection with original tuple `k` has left the table: as a master (`master`) its
    /// expectations and helper state go, as an expected connection (`child`) it no longer
    /// holds its master.
    pub(crate) fn forget(&mut self, k: &Key<A>, master: bool, child: bool, now: Nanos) {
        if master {
            self.orphans.remove(k);
            self.keymap_destroy(k);
            if let Some(m) = self.masters.get_mut(k) {
                // Taken off the master first: each removal would look for it there.
                for e in &std::mem::take(&mut m.expecting) {
                    self.drop_pending(e, now);
                }
                self.masters.remove(k);
            }
            // Its live children keep holding the entry that left, not whichever entry takes
            // the same tuple next (a reopened control connection starts with none).
            if self.child_count.remove(k).is_some() {
                self.children.retain(|_, m| m != k);
            }
        }
        if child {
            self.helped_children.remove(k);
        }
        if child && let Some(m) = self.children.remove(k) {
            self.release_child_of(&m);
        }
    }

    /// Live expected connections of master `k`.
    pub(crate) fn children_of(&self, k: &Key<A>) -> u32 {
        self.child_count.get(k).copied().unwrap_or(0)
    }

    /// Pending expectations at `now` as `/proc/net/nf_conntrack_expect` prints them, each
    /// with its master's original tuple.
    pub(crate) fn lines(&self, now: Nanos, out: &mut Vec<(Key<A>, String)>) {
        for (d, list) in &self.pending {
            for p in list.iter().filter(|p| p.fires > now) {
                let mut s = String::with_capacity(120);
                // Past its deadline, its timer not yet fired: the kernel prints the time
                // left as it is, below zero (in whole seconds, rounded toward zero).
                if p.expires < now && (now - p.expires) >= NANOS_PER_SEC {
                    let _ = write!(s, "-{} ", (now - p.expires) / NANOS_PER_SEC);
                } else {
                    let _ = write!(s, "{} ", p.expires.saturating_sub(now) / NANOS_PER_SEC);
                }
                let _ = write!(
                    s,
                    "l3proto = {} proto={} src=",
                    if A::V6 { 10 } else { 2 },
                    d.proto
                );
                let any = A::from_bytes(&[0; 16]);
                crate::format::push_addr(&mut s, &p.e.src.unwrap_or(any).ip());
                s.push_str(" dst=");
                crate::format::push_addr(&mut s, &d.dst.ip());
                let sport = p.e.sport.unwrap_or(0);
                if d.proto == crate::tuple::proto::GRE {
                    let _ = write!(s, " srckey=0x{sport:x} dstkey=0x{:x} ", d.dport);
                } else {
                    let _ = write!(s, " sport={sport} dport={} ", d.dport);
                }
                let flags = match (p.permanent, p.inactive) {
                    (true, true) => "PERMANENT,INACTIVE ",
                    (true, false) => "PERMANENT ",
                    (false, true) => "INACTIVE ",
                    (false, false) => "",
                };
                s.push_str(flags);
                if let Some(h) = ctrack_helpers::at_index(p.helper) {
                    s.push_str(h.name);
                    let class = h.policies.get(usize::from(p.class)).map_or("", |c| c.name);
                    if !class.is_empty() {
                        s.push('/');
                        s.push_str(class);
                    }
                } else {
                    s.truncate(s.trim_end().len());
                }
                out.push((p.master, s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::proto;
    use proptest::prelude::*;

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
        Expected {
            src: Some([10, 0, 0, a]),
            sport: None,
            dst: [10, 0, 0, b],
            dport,
            zone: 0,
            proto: proto::TCP,
        }
    }

    fn took(master: Key<[u8; 4]>, child_helper: u8) -> Taken<[u8; 4]> {
        Taken {
            master,
            child_helper,
            mark: 0,
        }
    }

    #[test]
    fn a_full_table_purges_once_something_has_run_out() {
        let mut x: Expectations<[u8; 4]> = Expectations::default();
        let spec = |secs: u64| Spec::plain(10, secs * SEC);
        let m = key(1, 2, 40000, 21);
        let e = |dport: u16| exp(3, 2, dport);
        for d in 1..=4 {
            x.expect(&m, 1, e(d), spec(10), 4, 0).unwrap();
        }
        // Full, nothing run out at 1 s.
        assert_eq!(x.expect(&m, 1, e(5), spec(10), 4, SEC), Err(Refused::Full));
        // One taken, and one added that runs out at 3 s, before the others' 10 s.
        let taken = Key {
            proto: proto::TCP,
            ..key(3, 2, 5555, 1)
        };
        assert!(x.take(&taken, SEC).is_some());
        x.expect(&m, 1, e(6), spec(2), 4, SEC).unwrap();
        assert_eq!(
            x.expect(&m, 1, e(7), spec(10), 4, 2 * SEC),
            Err(Refused::Full)
        );
        x.check();
        // At 4 s it has: the full table makes room.
        assert_eq!(x.expect(&m, 1, e(7), spec(10), 4, 4 * SEC), Ok(()));
        // A signalling expectation whose life a refresh shortens.
        let sip = key(1, 2, 5060, 5060);
        let sig = Expected {
            proto: proto::UDP,
            ..exp(3, 2, 5060)
        };
        x.forget(&m, true, false, 0);
        for d in 1..=3 {
            x.expect(&m, 1, e(d), spec(10), 4, 4 * SEC).unwrap();
        }
        x.expect(&sip, 1, sig, spec(60), 4, 4 * SEC).unwrap();
        assert_eq!(
            x.expect(&m, 1, e(8), spec(10), 4, 5 * SEC),
            Err(Refused::Full)
        );
        assert!(x.refresh_signalling(&sip, [10, 0, 0, 2], proto::UDP, 5060, 1, 5 * SEC));
        x.check();
        assert_eq!(x.expect(&m, 1, e(8), spec(10), 4, 7 * SEC), Ok(()));
    }

    #[test]
    fn the_oldest_gre_mapping_answers_among_many() {
        let mut x: Expectations<[u8; 4]> = Expectations::default();
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        // 50,000 calls between two hosts, each keyed apart; then two masters map one key.
        for n in 0..50_000u32 {
            let m = key(1, 2, 1024 + n as u16, 1723);
            x.keymap_add(&m, 0, a, b, n as u16, 7).unwrap();
        }
        assert_eq!(x.gre_source_key(&a, &b, 49_999), 7);
        assert_eq!(x.gre_source_key(&b, &a, 49_999), 0);
        let (m1, m2) = (key(3, 2, 1, 1723), key(4, 2, 1, 1723));
        x.keymap_add(&m1, 1, b, a, 9, 0x1111).unwrap();
        x.keymap_add(&m2, 1, b, a, 9, 0x2222).unwrap();
        assert_eq!(x.gre_source_key(&b, &a, 9), 0x1111);
        x.keymap_destroy(&m1);
        assert_eq!(x.gre_source_key(&b, &a, 9), 0x2222);
        x.keymap_destroy(&m2);
        assert_eq!(x.gre_source_key(&b, &a, 9), 0);
        for n in 0..50_000u32 {
            x.keymap_destroy(&key(1, 2, 1024 + n as u16, 1723));
        }
        assert!(!x.has_keymap());
    }

    #[test]
    fn pptp_calls_are_keyed_and_take_one_direction() {
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 1723);
        let gre = |a: u8, sport: u16, b: u8, dport: u16| Expected {
            src: Some([10, 0, 0, a]),
            sport: Some(sport),
            dst: [10, 0, 0, b],
            dport,
            zone: 0,
            proto: proto::GRE,
        };
        let spec = Spec {
            gre_call: true,
            ..Spec::plain(2, 300 * SEC)
        };
        x.expect(&m, 7, gre(1, 0x1111, 2, 0x2222), spec, 100, 0)
            .unwrap();
        x.expect(&m, 7, gre(2, 0x2222, 1, 0x1111), spec, 100, 0)
            .unwrap();
        x.keymap_add(&m, 0, [10, 0, 0, 1], [10, 0, 0, 2], 0x2222, 0x1111)
            .unwrap();
        x.keymap_add(&m, 1, [10, 0, 0, 2], [10, 0, 0, 1], 0x1111, 0x2222)
            .unwrap();
        // A retransmitted mapping is fine, another one for the same direction is not.
        x.keymap_add(&m, 0, [10, 0, 0, 1], [10, 0, 0, 2], 0x2222, 0x1111)
            .unwrap();
        assert!(
            x.keymap_add(&m, 0, [10, 0, 0, 1], [10, 0, 0, 2], 0x2223, 0x1112)
                .is_err()
        );
        assert_eq!(
            x.gre_source_key(&[10, 0, 0, 1], &[10, 0, 0, 2], 0x2222),
            0x1111
        );
        assert_eq!(x.gre_source_key(&[10, 0, 0, 1], &[10, 0, 0, 2], 0x2223), 0);
        let mut flow = Key {
            proto: proto::GRE,
            ..key(1, 2, 0x1111, 0x2222)
        };
        flow.sport = 0x1110;
        assert_eq!(x.take(&flow, 1), None, "another source key");
        flow.sport = 0x1111;
        assert_eq!(x.take(&flow, 1), Some(took(m, 0)));
        // The other direction's expectation went with it.
        assert!(x.none_pending());
        let mut out = Vec::new();
        x.expect(&m, 7, gre(1, 0x1111, 2, 0x2222), spec, 100, 0)
            .unwrap();
        x.lines(0, &mut out);
        assert_eq!(out[0].0, m);
        assert!(
            out[0].1.contains(" srckey=0x1111 dstkey=0x2222 "),
            "{out:?}"
        );
        x.forget(&m, true, false, 0);
        assert!(x.none_pending() && !x.has_keymap());
    }

    fn one(max: u32) -> Spec {
        Spec::plain(max, 300 * SEC)
    }

    #[test]
    fn taken_once_any_source_port_until_it_expires() {
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 21);
        assert!(x.none_pending());
        x.expect(&m, 1, exp(1, 2, 5000), one(1), 100, 0).unwrap();
        assert!(!x.none_pending());
        assert_eq!(x.take(&key(1, 2, 1234, 5001), 1), None);
        assert_eq!(x.take(&key(3, 2, 1234, 5000), 1), None, "another source");
        assert_eq!(x.take(&key(1, 2, 1234, 5000), 1), Some(took(m, 0)));
        assert_eq!(x.take(&key(1, 2, 999, 5000), 1), None);
        x.expect(&m, 1, exp(1, 2, 5000), one(1), 100, 0).unwrap();
        // Its timer fires half its wheel's granularity (16.384 s) after the deadline.
        let gone = 300 * SEC + 8_192_000_000;
        assert_eq!(x.take(&key(1, 2, 1, 5000), gone), None, "expired");
        x.expect(&m, 1, exp(1, 2, 5000), one(1), 100, 0).unwrap();
        assert_eq!(
            x.take(&key(1, 2, 1, 5000), gone - 1),
            Some(took(m, 0)),
            "its timer has not fired yet"
        );
    }

    #[test]
    fn a_master_holds_its_policy_and_others_clash() {
        let mut x = Expectations::default();
        let (m, other) = (key(1, 2, 40000, 21), key(3, 2, 40001, 21));
        x.expect(&m, 1, exp(1, 2, 5000), one(1), 100, 0).unwrap();
        // The second replaces the first (one per master).
        x.expect(&m, 1, exp(1, 2, 5001), one(1), 100, 0).unwrap();
        assert_eq!(x.take(&key(1, 2, 1, 5000), 1), None);
        assert_eq!(x.take(&key(1, 2, 1, 5001), 1), Some(took(m, 0)));
        // Another master expecting the same connection clashes; renewing one's own does not.
        x.expect(&m, 1, exp(1, 2, 6000), one(1), 100, 0).unwrap();
        x.expect(&m, 1, exp(1, 2, 6000), one(1), 100, 10).unwrap();
        let clash = x.expect(&other, 1, exp(1, 2, 6000), one(1), 100, 0);
        assert_eq!(clash, Err(Refused::Clash));
        // Any source overlaps every source.
        let any = Expected {
            src: None,
            ..exp(1, 2, 6000)
        };
        assert_eq!(
            x.expect(&other, 1, any, one(1), 100, 0),
            Err(Refused::Clash)
        );
        // Another source to the same place does not.
        x.expect(&other, 1, exp(4, 2, 6000), one(1), 100, 0)
            .unwrap();
        // A table-wide limit.
        assert_eq!(
            x.expect(&other, 1, exp(3, 2, 7000), one(1), 1, 0),
            Err(Refused::Full)
        );
        // The masters leave: their expectations go.
        x.forget(&m, true, false, 0);
        x.forget(&other, true, false, 0);
        assert!(x.none_pending());
    }

    #[test]
    fn classes_flags_and_wildcards() {
        let mut x = Expectations::default();
        let (m, other) = (key(1, 2, 5060, 5060), key(3, 2, 5060, 5060));
        let media = |class| Spec {
            class,
            max_expected: 2,
            skip_master: true,
            ..Spec::plain(0, 180 * SEC)
        };
        for port in [40000, 40001, 40002] {
            x.expect(&m, 4, exp(2, 1, port), media(1), 100, 0).unwrap();
        }
        // Two per class: the oldest went.
        assert_eq!(x.take(&key(2, 1, 9, 40000), 1), None);
        // Of another master or class: already there, left alone.
        let again = x.expect(&other, 4, exp(2, 1, 40002), media(1), 100, 0);
        assert_eq!(again, Err(Refused::Already));
        let again = x.expect(&m, 4, exp(2, 1, 40002), media(2), 100, 0);
        assert_eq!(again, Err(Refused::Already));
        x.expect(&m, 4, exp(2, 1, 41000), media(2), 100, 0).unwrap();
        // A permanent, inactive expectation from any source, for a child with a helper.
        let sig = Spec {
            permanent: true,
            inactive: true,
            child_helper: 4,
            ..Spec::plain(1, 180 * SEC)
        };
        let any = Expected {
            src: None,
            proto: proto::UDP,
            ..exp(0, 1, 5062)
        };
        x.expect(&m, 4, any, sig, 100, 0).unwrap();
        let call = Key {
            proto: proto::UDP,
            ..key(7, 1, 5060, 5062)
        };
        assert_eq!(x.take(&call, 1), None, "inactive");
        assert!(x.refresh_signalling(&m, [10, 0, 0, 1], proto::UDP, 5062, 600, 1));
        assert_eq!(x.take(&call, 2), Some(took(m, 4)));
        assert_eq!(x.take(&call, 3), Some(took(m, 4)), "permanent");
        // Flushes: media ones, then the signalling one.
        x.flush_sip(&m, true, 0);
        assert_eq!(x.take(&key(2, 1, 9, 40002), 4), None);
        assert_eq!(x.take(&key(2, 1, 9, 41000), 4), None);
        assert_eq!(x.take(&call, 4), Some(took(m, 4)));
        x.flush_sip(&m, false, 0);
        assert!(x.none_pending());
    }

    #[test]
    fn the_cell_tells_its_flags_as_its_last_lock_left_them() {
        let cell = ExpectCell::new(Expectations::default());
        assert!(cell.is_quiet());
        let m = key(1, 2, 40000, 21);
        let c = key(1, 2, 1, 5000);
        // An expected connection with a helper of its own, once the lock is let go.
        cell.lock().adopt(c, m, true);
        assert_eq!(cell.flags(), HELPED);
        // Read-only locks leave the answer as it was.
        assert_eq!(cell.lock().children_of(&m), 1);
        assert_eq!(cell.flags(), HELPED);
        cell.lock().forget(&c, false, true, 0);
        assert!(cell.is_quiet());
        // One without a helper keeps it quiet; a pending expectation does not.
        cell.lock().adopt(c, m, false);
        assert!(cell.is_quiet());
        let e = exp(3, 2, 5000);
        cell.lock()
            .expect(&m, 1, e, Spec::plain(10, 10 * SEC), 4, 0)
            .unwrap();
        assert_eq!(cell.flags(), PENDING);
        // Taken by its connection: nothing pending.
        assert!(cell.lock().take(&key(3, 2, 1234, 5000), SEC).is_some());
        assert!(cell.is_quiet());
    }

    #[test]
    fn children_are_counted_while_they_live() {
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 21);
        let (c1, c2) = (key(1, 2, 1, 5000), key(1, 2, 2, 5001));
        x.adopt(c1, m, false);
        x.adopt(c2, m, true);
        assert_eq!(x.children_of(&m), 2);
        x.forget(&c1, false, true, 0);
        assert_eq!(x.children_of(&m), 1);
        x.forget(&c2, false, true, 0);
        x.forget(&c2, false, true, 0);
        assert_eq!(x.children_of(&m), 0);
        assert!(x.child_count.is_empty() && x.children.is_empty() && x.flags() == 0);
    }

    #[test]
    fn children_stay_with_the_master_that_left() {
        // oracle: helpers/ftp-master-reopened
        let mut x = Expectations::default();
        let m = key(1, 2, 40000, 21);
        let (c1, c2) = (key(1, 2, 1, 5000), key(1, 2, 2, 5001));
        x.adopt(c1, m, false);
        x.forget(&m, true, false, 0);
        // The same tuple again: a new entry, none of the old one's children.
        assert_eq!(x.children_of(&m), 0);
        x.adopt(c2, m, false);
        assert_eq!(x.children_of(&m), 1);
        // The old child leaving does not touch the new master's count.
        x.forget(&c1, false, true, 0);
        assert_eq!(x.children_of(&m), 1);
        x.forget(&c2, false, true, 0);
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
        let index = |n| ctrack_helpers::index_of(ctrack_helpers::by_name(n).unwrap());
        x.expect(&m, index("tftp"), e, one(1), 100, 0).unwrap();
        let sip = Spec {
            class: 0,
            permanent: true,
            inactive: true,
            ..Spec::plain(1, 180 * SEC)
        };
        let any = Expected {
            src: None,
            ..exp(0, 2, 5062)
        };
        x.expect(&key(2, 3, 5060, 5060), index("sip"), any, sip, 100, 0)
            .unwrap();
        let mut out = Vec::new();
        x.lines(SEC / 2, &mut out);
        let mut out: Vec<String> = out.into_iter().map(|(_, l)| l).collect();
        out.sort();
        assert_eq!(
            out,
            [
                "179 l3proto = 2 proto=6 src=0.0.0.0 dst=10.0.0.2 sport=0 dport=5062 \
                 PERMANENT,INACTIVE sip/signalling",
                "299 l3proto = 2 proto=17 src=10.0.0.1 dst=10.0.0.2 sport=0 dport=40000 tftp",
            ]
        );
    }

    impl Expectations<[u8; 4]> {
        /// The bookkeeping agrees with itself: the count, and each pending expectation listed
        /// once by its master (and nothing else listed).
        fn check(&self) {
            let all: Vec<_> = self.pending.values().flatten().collect();
            assert_eq!(self.count, all.len());
            for p in &all {
                let listed = self
                    .masters
                    .get(&p.master)
                    .map_or(0, |m| m.expecting.iter().filter(|e| **e == p.e).count());
                assert_eq!(listed, 1, "{p:?}");
                // The purge's bound never passes a pending expectation's end.
                assert!(p.fires >= self.next_expiry, "{p:?}");
            }
            for (k, m) in &self.masters {
                for e in &m.expecting {
                    assert!(self.find(e).is_some_and(|p| p.master == *k), "{e:?}");
                }
            }
            for (d, l) in &self.pending {
                assert!(!l.is_empty());
                assert!(l.iter().all(|p| p.e.dest() == *d));
            }
            // Each mapping is listed once under its lookup, as its master records it.
            let listed: usize = self.keymap.by_dest.values().map(Vec::len).sum();
            let held = (self.keymap.by_master.values())
                .map(|d| d.iter().flatten().count())
                .sum();
            assert_eq!(listed, held);
            for (d, l) in &self.keymap.by_dest {
                assert!(!l.is_empty());
                for &(m, dir, _) in l {
                    let mine = self
                        .keymap
                        .by_master
                        .get(&m)
                        .and_then(|x| x[usize::from(dir)]);
                    assert_eq!(mine, Some(*d));
                }
            }
            assert!(
                self.keymap
                    .by_master
                    .values()
                    .all(|d| d.iter().any(Option::is_some))
            );
            // An orphaned master is kept only while it has something pending.
            for k in &self.orphans {
                assert!(
                    self.masters.get(k).is_some_and(|m| !m.expecting.is_empty()),
                    "{k:?}"
                );
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Expect {
            m: u8,
            src: Option<u8>,
            dport: u8,
            class: u8,
            skip: bool,
            perm: bool,
            at: u8,
        },
        Take {
            src: u8,
            dport: u8,
            at: u8,
        },
        Flush {
            m: u8,
            media: bool,
        },
        Refresh {
            m: u8,
            dport: u8,
            at: u8,
        },
        Keymap {
            m: u8,
            dir: u8,
            key: u8,
        },
        Forget {
            m: u8,
        },
        Sweep {
            m: u8,
        },
        Bury {
            m: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..3u8,
                proptest::option::of(0..3u8),
                0..4u8,
                0..3u8,
                any::<bool>(),
                any::<bool>(),
                0..20u8
            )
                .prop_map(|(m, src, dport, class, skip, perm, at)| Op::Expect {
                    m,
                    src,
                    dport,
                    class,
                    skip,
                    perm,
                    at
                }),
            (0..3u8, 0..4u8, 0..20u8).prop_map(|(src, dport, at)| Op::Take { src, dport, at }),
            (0..3u8, any::<bool>()).prop_map(|(m, media)| Op::Flush { m, media }),
            (0..3u8, 0..4u8, 0..20u8).prop_map(|(m, dport, at)| Op::Refresh { m, dport, at }),
            (0..3u8, 0..2u8, 0..3u8).prop_map(|(m, dir, key)| Op::Keymap { m, dir, key }),
            (0..3u8).prop_map(|m| Op::Forget { m }),
            (0..3u8).prop_map(|m| Op::Sweep { m }),
            (0..3u8).prop_map(|m| Op::Bury { m }),
        ]
    }

    proptest! {
        /// Whatever helpers ask, in whatever order, the pending expectations, their masters'
        /// lists, the class limits and the key map stay consistent, and the expectation
        /// events tell the same story: each announced once until it goes, and gone once.
        #[test]
        fn bookkeeping_holds_under_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
            let q = Arc::new(EventQueue::new(1 << 16));
            let mut x = Expectations::reporting(Reporter(Some(q.clone())));
            let mut live = std::collections::HashMap::<String, u32>::new();
            let master = |m: u8| key(100 + m, 1, 5060, 5060);
            for o in ops {
                match o {
                    Op::Expect { m, src, dport, class, skip, perm, at } => {
                        let e = Expected {
                            src: src.map(|a| [10, 0, 0, a]),
                            sport: None,
                            dst: [10, 0, 0, 1],
                            dport: 40000 + u16::from(dport),
                            zone: 0,
                            proto: proto::UDP,
                        };
                        let spec = Spec {
                            class,
                            skip_master: skip,
                            permanent: perm,
                            inactive: perm,
                            ..Spec::plain(2, 10 * SEC)
                        };
                        let _ = x.expect(&master(m), 4, e, spec, 5, u64::from(at) * SEC);
                        let of_class = x.masters.get(&master(m)).map_or(0, |mm| {
                            mm.expecting.iter().filter(|e| x.find(e).is_some_and(|p| p.class == class)).count()
                        });
                        prop_assert!(of_class <= 2);
                    }
                    Op::Take { src, dport, at } => {
                        let k = Key { proto: proto::UDP, ..key(src, 1, 999, 40000 + u16::from(dport)) };
                        let _ = x.take(&k, u64::from(at) * SEC);
                    }
                    Op::Flush { m, media } => x.flush_sip(&master(m), media, 0),
                    Op::Refresh { m, dport, at } => {
                        let _ = x.refresh_signalling(&master(m), [10, 0, 0, 1], proto::UDP,
                            40000 + u16::from(dport), 30, u64::from(at) * SEC);
                    }
                    Op::Keymap { m, dir, key } => {
                        let _ = x.keymap_add(&master(m), dir, [10, 0, 0, m], [10, 0, 0, 1],
                            u16::from(key), 7);
                    }
                    Op::Forget { m } => x.forget(&master(m), true, false, 0),
                    Op::Sweep { m } => {
                        let pending = x.masters.get(&master(m)).map_or(0, |mm| mm.expecting.len());
                        x.swept(&master(m), true, false, 0);
                        // An orphan keeps what it expected; a master with nothing pending goes.
                        let kept = x.masters.get(&master(m)).map_or(0, |mm| mm.expecting.len());
                        prop_assert_eq!(kept, pending);
                        prop_assert_eq!(x.orphans.contains(&master(m)), pending > 0);
                    }
                    Op::Bury { m } => {
                        let orphan = x.orphans.contains(&master(m));
                        x.bury(&master(m).inverse().unwrap(), 0);
                        if orphan {
                            prop_assert!(!x.masters.contains_key(&master(m)));
                        }
                    }
                }
                x.check();
                for ev in q.take_expect() {
                    // The expectation and its master, without the time left and the flags
                    // (a refresh activates a registration's expectation in place).
                    let line = ev.line();
                    let who = (line.split_whitespace().skip(2))
                        .filter(|t| !t.starts_with("PERMANENT") && !t.starts_with("INACTIVE"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let n = live.entry(who).or_default();
                    match ev.kind {
                        EventKind::New => *n += 1,
                        _ => {
                            prop_assert!(*n > 0, "gone before it was announced: {}", ev.line());
                            *n -= 1;
                        }
                    }
                    prop_assert!(*n <= 1, "announced twice: {}", ev.line());
                }
                prop_assert_eq!(live.values().sum::<u32>() as usize, x.count);
            }
            for m in 0..3 {
                x.forget(&master(m), true, false, 0);
            }
            prop_assert!(x.none_pending() && !x.has_keymap());
            // Orphans that kept expectations go with the table's collection.
            x.bury_all(0);
            for ev in q.take_expect() {
                prop_assert_eq!(ev.kind, EventKind::Destroy);
            }
        }
    }
}
