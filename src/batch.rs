//! The batch path: a burst of frames is parsed and hashed first (prefetching each one's index
//! bucket as soon as its hash is known), then tracked shard by shard, one lock per shard,
//! each shard locked and its entries prefetched a few shards before its turn.
//!
//! Verdicts and table effects are exactly those of calling [`Conntrack::process`] on each
//! frame in order: packets of one connection always share a shard and keep their order within
//! it; packets whose effects reach beyond their own shard (ICMP errors, fragments) and every
//! protocol without a dedicated path are tracked one by one at their place in the burst, after
//! everything before them. With helpers configured, or when a burst could fill the table (so
//! that which packet meets a full table would depend on the order across shards), the burst
//! is tracked strictly in order.

use std::cell::RefCell;

use parking_lot::MutexGuard;

use crate::conntrack::{Conntrack, Ready, ShardBox, Table};
use crate::packet::{self, LinkType};
use crate::tuple::{Addr, proto};
use crate::verdict::Verdict;
use ctrack_protocols::Nanos;

/// Frames planned and tracked together.
const CHUNK: usize = 256;

/// How many shard groups ahead of the one being tracked their entries are prefetched.
const AHEAD: usize = 4;

/// A packet ready for its shard: position in the chunk, shard, hash, checked headers.
struct Planned<'a, A> {
    shard: u32,
    pos: u32,
    h: u64,
    /// Slab index of the entry the lookup will probably find (see `Shard::prefetch_entry`).
    hint: u32,
    ready: Ready<'a, A>,
}

/// The index buffers of the shard sort, kept per thread so that a burst allocates none.
#[derive(Default)]
struct Scratch {
    start: Vec<u32>,
    fill: Vec<u32>,
    order: Vec<u32>,
    busy: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
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
        out.clear();
        if !self.config().helpers.is_empty() {
            // Helpers announce expectations that any shard's new connections may match:
            // only strict order is safe.
            out.extend(frames.iter().map(|f| self.process(f, link, now)));
            return;
        }
        out.resize(frames.len(), Verdict::INVALID);
        let mut v4: Vec<Planned<'_, [u8; 4]>> = Vec::with_capacity(CHUNK.min(frames.len()));
        let mut v6: Vec<Planned<'_, [u8; 16]>> = Vec::new();
        let max = self.config().sysctl.nf_conntrack_max as usize;
        for (chunk, verdicts) in frames.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            if max != 0 && self.count() + chunk.len() > max {
                // Near the limit, which packet meets a full table depends on the order of
                // insertions across shards: keep it.
                for (v, f) in verdicts.iter_mut().zip(chunk) {
                    *v = self.process(f, link, now);
                }
                continue;
            }
            for (i, frame) in chunk.iter().enumerate() {
                match self.plan(frame, link, i, &mut v4, &mut v6, &mut verdicts[i]) {
                    Plan::Done | Plan::Queued => {}
                    Plan::Alone => {
                        // Everything before it first, then it.
                        self.run_queued(&self.v4, &mut v4, verdicts, now);
                        self.run_queued(&self.v6, &mut v6, verdicts, now);
                        verdicts[i] = self.process(frame, link, now);
                    }
                }
            }
            self.run_queued(&self.v4, &mut v4, verdicts, now);
            self.run_queued(&self.v6, &mut v6, verdicts, now);
        }
    }

    /// Parses one frame and queues it for its shard when it is an ordinary TCP or UDP packet.
    fn plan<'a>(
        &self,
        frame: &'a [u8],
        link: LinkType,
        pos: usize,
        v4: &mut Vec<Planned<'a, [u8; 4]>>,
        v6: &mut Vec<Planned<'a, [u8; 16]>>,
        out: &mut Verdict,
    ) -> Plan {
        let Some(ip) = packet::ip_of_frame(frame, link) else {
            *out = Verdict::SKIPPED;
            return Plan::Done;
        };
        // One path per family from here, so that neither parse result meets the other's in
        // memory.
        if ip[0] >> 4 == 4 {
            match packet::parse_v4(ip) {
                // IPv4 options or a size the router may answer or fragment: the ordinary path.
                Ok(p) if p.l4_off > 20 || p.data.len() > crate::host::ROUTER_MTU => Plan::Alone,
                Ok(p) => self.queue(&self.v4, p, pos, v4, out),
                // Malformed IP headers take the ordinary path (which counts them).
                Err(_) => Plan::Alone,
            }
        } else {
            match packet::parse_v6(ip) {
                Ok(p) => self.queue(&self.v6, p, pos, v6, out),
                Err(_) => Plan::Alone,
            }
        }
    }

    /// Queues a parsed packet for its shard when it is an ordinary TCP or UDP packet.
    #[inline(always)]
    fn queue<'a, A: Addr>(
        &self,
        t: &Table<A>,
        p: packet::IpPacket<'a>,
        pos: usize,
        q: &mut Vec<Planned<'a, A>>,
        out: &mut Verdict,
    ) -> Plan {
        if p.frag.is_some() {
            return Plan::Alone;
        }
        let ready = match p.proto {
            proto::TCP => self.ready_tcp::<A>(&p),
            proto::UDP => self.ready_udp::<A>(&p),
            _ => return Plan::Alone,
        };
        match ready {
            Ok((ready, sum)) => {
                let h = self.hash(ready.key());
                let shard = t.shard_of(h);
                t.shards[shard].prefetch_bucket(h);
                q.push(Planned {
                    shard: shard as u32,
                    pos: pos as u32,
                    h,
                    hint: crate::timer::NIL,
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
            // Only if a caller re-entered the engine from inside it: fresh buffers.
            Err(_) => self.run_sorted(t, q, out, now, &mut Scratch::default()),
        });
        q.clear();
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
        // shard's packets keep their order.
        let shards = t.shards.len();
        let Scratch {
            start,
            fill,
            order,
            busy,
        } = sc;
        start.clear();
        start.resize(shards + 1, 0);
        for p in q.iter() {
            start[p.shard as usize + 1] += 1;
        }
        for s in 0..shards {
            start[s + 1] += start[s];
        }
        order.clear();
        order.resize(q.len(), 0);
        fill.clear();
        fill.extend_from_slice(start);
        for (i, p) in q.iter().enumerate() {
            let f = &mut fill[p.shard as usize];
            order[*f as usize] = i as u32;
            *f += 1;
        }
        // The shards with packets, in order. Each shard is locked once, `AHEAD` groups before
        // its packets are tracked, and its entries are prefetched then (the bucket read needs
        // the lock), so that the memory arrives while earlier groups are worked on. Up to
        // `AHEAD + 1` shards are held at once, always taken in ascending order and never
        // while holding a higher one, so two bursts on two threads cannot deadlock.
        busy.clear();
        busy.extend((0..shards as u32).filter(|&s| start[s as usize] != start[s as usize + 1]));
        let (start, order, busy) = (&*start, &*order, &*busy);
        let group = |s: u32| &order[start[s as usize] as usize..start[s as usize + 1] as usize];
        let take = |q: &mut [Planned<'_, A>], s: u32| {
            let g = t.shards[s as usize].lock.lock();
            for &i in group(s) {
                let p = &mut q[i as usize];
                p.hint = g.shard.prefetch_entry(p.h);
            }
            g
        };
        // Guards by position in `busy`, modulo the window.
        let mut held: [Option<MutexGuard<'_, ShardBox<A>>>; AHEAD + 1] = Default::default();
        for (k, &s) in busy.iter().enumerate().take(AHEAD) {
            held[k] = Some(take(q, s));
        }
        for (k, &shard) in busy.iter().enumerate() {
            if let Some(&next) = busy.get(k + AHEAD) {
                held[(k + AHEAD) % (AHEAD + 1)] = Some(take(q, next));
            }
            let Some(mut g) = held[k % (AHEAD + 1)].take() else {
                continue; // never: taken above
            };
            let slot = &t.shards[shard as usize];
            // Once per group: `now` is the burst's, so the shard's time moves only here.
            let at = self.advance(t, &mut g, now);
            g.credit_want = group(shard).len() as u32 - 1;
            for &i in group(shard) {
                let p = &q[i as usize];
                out[p.pos as usize] = match self.run_refresh(slot, &mut g, &p.ready, p.hint, at) {
                    Some(v) => v,
                    None => self.run_ready_locked(t, slot, &mut g, &p.ready, p.h, p.hint, now),
                };
            }
            self.settle(&mut g);
        }
    }
}
