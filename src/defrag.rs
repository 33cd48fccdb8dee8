//! IPv4 and IPv6 reassembly before tracking, with the kernel's rules for overlaps,
//! duplicates, bad lengths, timeouts (30 s for IPv4, `nf_conntrack_frag6_timeout` for IPv6),
//! IPv4's distance between a datagram's fragments, and a memory ceiling.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;

use ctrack_protocols::sysctl::Sysctl;
use ctrack_protocols::{Nanos, secs};

use crate::packet::{FragInfo, IpPacket, csum_add, csum_fold};
use crate::timer::kernel_timer_fires;

/// IPv4 reassembly timeout (`net.ipv4.ipfrag_time`).
const V4_TIMEOUT_SECS: u32 = 30;
/// IPv4 memory ceiling (`net.ipv4.ipfrag_high_thresh`).
const V4_HIGH_THRESH: usize = 4 * 1024 * 1024;
/// Most fragments from one IPv4 source that may arrive between two fragments of a datagram
/// (`net.ipv4.ipfrag_max_dist`): past that, the datagram's fragments so far are thrown away
/// and it starts again from the one that came.
const V4_MAX_DIST: u32 = 64;
/// Largest IPv6 payload a reassembled datagram may have.
const V6_MAX_PAYLOAD: u32 = 65535;

/// Outcome of adding one fragment.
#[derive(Debug)]
pub enum Reassembled {
    /// Kept until the rest arrives.
    Held,
    /// Refused (malformed, overlapping, over the memory ceiling); the datagram may be gone.
    Dropped,
    /// Not reassembled: the fragment goes on to tracking as it is.
    Passed,
    /// The datagram is complete: here it is, as one unfragmented IP packet.
    Complete {
        /// The reassembled packet.
        packet: Vec<u8>,
        /// How many fragments it was made of.
        fragments: u16,
        /// The largest fragment's IP length (header included): what the router keeps as the
        /// most it may send on in one frame (`frag_max_size`).
        max_frag: u32,
        /// Length of the unfragmentable part (IPv4 header, or IPv6 header and the extension
        /// headers before the fragment header).
        head_len: u32,
        /// How many bytes past the unfragmentable part fragment zero carried.
        first_len: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct QKey {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    /// The conntrack zone: the kernel gathers each zone's fragments apart.
    zone: u16,
}

#[derive(Debug)]
struct Queue {
    seq: u64,
    /// Unfragmentable part taken from the first fragment: the IPv4 header, or the IPv6
    /// header and the extension headers before the fragment header.
    head: Option<Vec<u8>>,
    /// For IPv6: where the next-header byte pointing at the fragment header sits in `head`,
    /// and the protocol after the fragment header.
    v6_nh: Option<(usize, u8)>,
    /// (offset, end, where its bytes start in `data`), never overlapping, in arrival order
    /// (sorted when the datagram is built: inserting each in place cost a crafted datagram of
    /// thousands of fragments in falling order quadratic time).
    pieces: Vec<(u32, u32, u32)>,
    /// The pieces' bytes, one after the other in arrival order: one buffer a queue, which
    /// grows as a `Vec` does, where a copy of each fragment of its own cost an allocation and
    /// a release per fragment (nDPI's `ip_fragmented_garbage.pcap`, 9,048 fragments held in
    /// 29 queues: 12.8 million instructions in `process_batch` with a copy each, 9.1 million
    /// with this buffer).
    data: Vec<u8>,
    /// Fragment runs (start, end), sorted: a fragment that starts where the highest one ends
    /// extends that one's run; any other starts a run of its own. A fragment inside a run is a
    /// duplicate, one straddling a run's edge an overlap.
    runs: Runs,
    /// Total payload length, known once the last fragment is in.
    len: u32,
    last_in: bool,
    meat: u32,
    bytes: usize,
    /// IP length of the largest fragment taken in.
    max_frag: u32,
    /// IPv4: its source's fragment count when its last fragment came (see [`Peer`]).
    rid: u32,
    /// ECN codepoints seen among the fragments taken in, one bit each.
    ecn: u8,
}

/// What the kernel keeps of an IPv4 source for reassembly: how many fragments it has sent,
/// counted as they reach their queues. A datagram whose next fragment finds more than
/// [`V4_MAX_DIST`] counted since its previous one starts over. Only the differences matter, so
/// a source is kept only while it has datagrams queued.
#[derive(Debug, Default)]
struct Peer {
    rid: u32,
    queues: u32,
}

/// Files a queue's deadline in its family's order: at the back, unless a shorter timeout set
/// since ([`Defrag::configure`]) brings it before deadlines filed earlier. Room for one more
/// is reserved by the caller.
fn file(order: &mut VecDeque<(Nanos, u64, QKey)>, d: (Nanos, u64, QKey)) {
    if order.back().is_none_or(|b| b.0 <= d.0) {
        order.push_back(d);
    } else {
        let at = order.partition_point(|x| x.0 <= d.0);
        order.insert(at, d);
    }
}

/// Deadlines of gone datagrams kept in [`Defrag`]'s order beyond twice the live queues.
const ORDER_SLACK: usize = 64;

/// The reassembly queues.
#[derive(Debug)]
pub struct Defrag {
    /// Keyed by a seeded hash: fragment identifiers are the sender's to choose.
    queues: HashMap<QKey, Queue, FixedState>,
    /// IPv4 sources with queued datagrams (`ipfrag_max_dist`).
    peers: HashMap<[u8; 4], Peer, FixedState>,
    /// Each family's queues by when their timers fire (IPv4's, then IPv6's), in order: one
    /// timeout per family keeps each in order as it is appended to (a shorter timeout set
    /// since files a deadline in its place, see `file`), where one list for both would keep a
    /// queue of the family with the shorter timeout waiting behind the other's.
    order: [VecDeque<(Nanos, u64, QKey)>; 2],
    seq: u64,
    bytes: usize,
    high: usize,
    timeout_v4: Nanos,
    timeout_v6: Nanos,
}

impl Defrag {
    /// Empty queues with the timeouts and ceiling of `s`, hashed with `seed` (keep it secret
    /// from senders, as the connection table's).
    pub fn new(s: &Sysctl, seed: u64) -> Self {
        let mut d = Defrag {
            queues: HashMap::with_hasher(FixedState::with_seed(seed)),
            peers: HashMap::with_hasher(FixedState::with_seed(seed.rotate_left(17))),
            order: [VecDeque::new(), VecDeque::new()],
            seq: 0,
            bytes: 0,
            high: 0,
            timeout_v4: secs(V4_TIMEOUT_SECS),
            timeout_v6: 0,
        };
        d.configure(s);
        d
    }

    /// Takes the timeout and ceiling of `s` for the queues opened from now on (those open keep
    /// their deadlines).
    pub fn configure(&mut self, s: &Sysctl) {
        self.high = V4_HIGH_THRESH.max(s.nf_conntrack_frag6_high_thresh as usize);
        self.timeout_v6 = secs(s.nf_conntrack_frag6_timeout);
    }

    /// Drops queues whose timer has fired (their timeout, and up to a kernel timer's lateness
    /// more: see `timer::kernel_timer_fires`).
    pub fn expire(&mut self, now: Nanos) {
        for family in 0..2 {
            while let Some(&(deadline, seq, key)) = self.order[family].front() {
                if deadline > now {
                    break;
                }
                self.order[family].pop_front();
                if self.queues.get(&key).is_some_and(|q| q.seq == seq) {
                    self.kill(&key);
                }
            }
        }
    }

    fn kill(&mut self, key: &QKey) {
        self.remove(key);
    }

    /// Takes queue `key` out, with its bytes and its hold on its source.
    fn remove(&mut self, key: &QKey) -> Option<Queue> {
        let q = self.queues.remove(key)?;
        self.bytes -= q.bytes;
        if !key.v6 {
            let src = peer_of(key);
            if let Some(p) = self.peers.get_mut(&src) {
                p.queues -= 1;
                if p.queues == 0 {
                    self.peers.remove(&src);
                }
            }
        }
        Some(q)
    }

    /// Adds fragment `p` (with fragment facts `fi`) seen at `now`.
    pub fn add(&mut self, p: &IpPacket<'_>, fi: FragInfo, now: Nanos) -> Reassembled {
        self.expire(now);
        let mut key = QKey {
            v6: p.v6,
            src: [0; 16],
            dst: [0; 16],
            id: fi.id,
            proto: if p.v6 { 0 } else { p.proto },
            zone: p.zone,
        };
        key.src[..p.src().len()].copy_from_slice(p.src());
        key.dst[..p.dst().len()].copy_from_slice(p.dst());

        let (payload, head_len) = if p.v6 {
            let start = fi.hdr_off as usize + 8;
            (&p.data[start.min(p.data.len())..], fi.hdr_off as usize)
        } else {
            (&p.data[p.l4_off..], p.l4_off)
        };
        let offset = fi.offset;
        let mut end = offset + payload.len() as u32;
        if p.v6 && end > V6_MAX_PAYLOAD {
            return Reassembled::Dropped;
        }
        // A datagram completed or given up leaves its deadline behind in `order` until the
        // timeout: once those outnumber the live queues, they are swept out, so that a stream
        // of short-lived datagrams cannot pile up a timeout's worth of them (amortised: a
        // sweep leaves one per live queue, and the next waits for as many new ones again).
        if self.order[0].len() + self.order[1].len() >= 2 * self.queues.len() + ORDER_SLACK {
            let queues = &self.queues;
            for order in self.order.iter_mut() {
                order.retain(|&(_, seq, k)| queues.get(&k).is_some_and(|q| q.seq == seq));
            }
        }
        let order = usize::from(p.v6);
        // Room for a new queue first (the lookup below makes one when there is none); without
        // it, a fragment of a datagram not queued yet is dropped, as the kernel drops one
        // whose queue it cannot allocate.
        let order_room = self.order[order].try_reserve(1).is_ok();
        if (self.queues.try_reserve(1).is_err()
            || !order_room
            || (!p.v6 && self.peers.try_reserve(1).is_err()))
            && !self.queues.contains_key(&key)
        {
            return Reassembled::Dropped;
        }
        // One lookup finds the queue or makes it.
        let q = match self.queues.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                if self.bytes >= self.high {
                    return Reassembled::Dropped;
                }
                self.seq += 1;
                let timeout = if p.v6 {
                    self.timeout_v6
                } else {
                    self.timeout_v4
                };
                file(
                    &mut self.order[order],
                    (kernel_timer_fires(now, timeout), self.seq, key),
                );
                if !p.v6 {
                    self.peers.entry(peer_of(&key)).or_default().queues += 1;
                }
                v.insert(Queue {
                    seq: self.seq,
                    head: None,
                    v6_nh: None,
                    pieces: Vec::new(),
                    data: Vec::new(),
                    runs: Runs::default(),
                    len: 0,
                    last_in: false,
                    meat: 0,
                    bytes: 0,
                    max_frag: 0,
                    rid: 0,
                    ecn: 0,
                })
            }
        };
        // Every IPv4 fragment that reaches its queue counts for its source. One that finds
        // more than `V4_MAX_DIST` counted since its datagram's previous fragment finds the
        // datagram's fragments thrown away and its timer started again: it goes on into the
        // emptied queue as if it were the first.
        let peer = if p.v6 {
            None
        } else {
            self.peers.get_mut(&peer_of(&key))
        };
        if let Some(peer) = peer {
            peer.rid = peer.rid.wrapping_add(1);
            let since = peer.rid.wrapping_sub(q.rid);
            q.rid = peer.rid;
            if !q.pieces.is_empty() && since > V4_MAX_DIST {
                if !order_room {
                    // No room for the new deadline: the datagram goes, with this fragment (as
                    // the kernel gives one up whose timer it cannot start again).
                    self.kill(&key);
                    return Reassembled::Dropped;
                }
                self.bytes -= q.bytes;
                q.bytes = 0;
                q.pieces.clear();
                q.data.clear();
                q.runs = Runs::default();
                q.head = None;
                q.len = 0;
                q.last_in = false;
                q.meat = 0;
                q.ecn = 0;
                // The queue's old deadline stays behind in `order`, stale; room for the new one
                // was reserved above.
                self.seq += 1;
                q.seq = self.seq;
                file(
                    &mut self.order[order],
                    (kernel_timer_fires(now, self.timeout_v4), self.seq, key),
                );
            }
        }
        if !fi.more {
            if end < q.len || (q.last_in && end != q.len) {
                // IPv4 gives up the datagram; IPv6 only refuses this fragment.
                if !p.v6 {
                    self.kill(&key);
                }
                return Reassembled::Dropped;
            }
            q.last_in = true;
            q.len = end;
        } else {
            if end & 7 != 0 {
                if p.v6 {
                    // The datagram is given up, and this fragment passes on as it is.
                    self.kill(&key);
                    return Reassembled::Passed;
                }
                end &= !7;
            }
            if end > q.len {
                if q.last_in {
                    if !p.v6 {
                        self.kill(&key);
                    }
                    return Reassembled::Dropped;
                }
                q.len = end;
            }
        }
        if end == offset {
            if !p.v6 {
                self.kill(&key);
            }
            return Reassembled::Dropped;
        }
        // Room for the fragment's bytes and its piece before its piece is taken in: without
        // the memory, this fragment is dropped and the queue waits for it again (a queue it
        // made, holding nothing, goes with it).
        let len = (end - offset) as usize;
        // The first piece makes room for the whole datagram when its last fragment has told
        // its length, else for twice the piece: most datagrams are two or three fragments,
        // the first of them the longest.
        let room = if q.data.capacity() == 0 {
            let want = if q.last_in { q.len as usize } else { 2 * len };
            q.data.try_reserve_exact(want.max(len))
        } else {
            q.data.try_reserve(len)
        };
        // And the datagram's own buffer when this fragment is the one that completes it, so
        // that a datagram that cannot be built keeps its queue and waits for the fragment again.
        let completes =
            (offset == 0 || q.head.is_some()) && q.last_in && q.meat + (end - offset) == q.len;
        let whole = q.len as usize + q.head.as_ref().map_or(head_len, Vec::len);
        let (mut head, mut out) = (Vec::new(), Vec::new());
        if room.is_err()
            || u32::try_from(q.data.len() + len).is_err()
            || (offset == 0 && head.try_reserve_exact(head_len).is_err())
            || q.pieces.try_reserve(1).is_err()
            || (completes && out.try_reserve_exact(whole).is_err())
        {
            if q.pieces.is_empty() {
                self.kill(&key);
            }
            return Reassembled::Dropped;
        }
        // Insert by the kernel's run rules: overlaps kill the datagram, duplicates are ignored.
        match insert_run(&mut q.runs, offset, end) {
            Insert::Ok => {}
            Insert::Duplicate => return Reassembled::Held,
            Insert::NoMemory => {
                if q.pieces.is_empty() {
                    self.kill(&key);
                }
                return Reassembled::Dropped;
            }
            Insert::Overlap => {
                self.kill(&key);
                return Reassembled::Dropped;
            }
        }
        let at = q.data.len() as u32;
        q.data.extend_from_slice(&payload[..len]);
        let cost = len + 64;
        q.pieces.push((offset, end, at));
        q.meat += end - offset;
        // IPv4 counts the fragment as trimmed to a multiple of 8; IPv6 as its length field says.
        let size = if p.v6 {
            p.data.len() as u32
        } else {
            (head_len as u32) + (end - offset)
        };
        q.max_frag = q.max_frag.max(size);
        let ecn = if p.v6 { p.data[1] >> 4 } else { p.data[1] } & 3;
        q.ecn |= 1 << ecn;
        q.bytes += cost;
        self.bytes += cost;
        if offset == 0 {
            head.extend_from_slice(&p.data[..head_len]);
            q.head = Some(head);
            if p.v6 {
                let next = p.data.get(fi.hdr_off as usize).copied().unwrap_or(59);
                q.v6_nh = Some((fi.prev_nh_off as usize, next));
            }
        }
        if q.head.is_some() && q.last_in && q.meat == q.len {
            let Some(q) = self.remove(&key) else {
                return Reassembled::Dropped;
            };
            return build(q, p.v6, out);
        }
        Reassembled::Held
    }
}

/// The source address of IPv4 queue `key`, which its [`Peer`] is kept under.
fn peer_of(key: &QKey) -> [u8; 4] {
    [key.src[0], key.src[1], key.src[2], key.src[3]]
}

/// How many frames the router sends reassembled datagram `len` bytes long on in, when it no
/// longer has the fragments it came in (a helper linearised it) and must cut it again itself:
/// each piece as large as the largest fragment it received (`max_frag`; for IPv6 at least the
/// 1280-byte minimum MTU, and a fragment header added), all but the last cut down to a
/// multiple of 8.
pub fn refragmented_frames(v6: bool, len: u32, head_len: u32, max_frag: u32) -> u16 {
    let room = if v6 {
        max_frag.max(1280).saturating_sub(head_len + 8)
    } else {
        max_frag.saturating_sub(head_len)
    };
    let payload = len.saturating_sub(head_len);
    let step = room & !7;
    if payload <= room || step == 0 {
        return 1;
    }
    (1 + (payload - room).div_ceil(step)).min(u16::MAX as u32) as u16
}

/// True when IPv6 fragment zero `p` (parsed past its fragment header and the extension headers
/// that follow it) ends before its upper-layer header does: a TCP header needs 20 bytes, UDP
/// and ICMPv6 headers 8, any other protocol one. Linux's conntrack defragmenter (RFC 8200
/// section 4.5) does not queue such a fragment; it passes on unreassembled.
pub fn v6_head_truncated(p: &IpPacket<'_>) -> bool {
    let need = match p.proto {
        6 => 20,
        17 | 58 => 8,
        // No next header: the kernel's walk finds no upper layer to measure.
        59 => return false,
        _ => 1,
    };
    p.data.len().saturating_sub(p.l4_off) < need
}

enum Insert {
    Ok,
    Duplicate,
    Overlap,
    /// The memory for it could not be had (nothing changed).
    NoMemory,
}

/// Fragment runs (start, end), sorted and disjoint, in blocks of at most [`RUN_BLOCK`]: an
/// insertion moves at most a block's runs and the list of blocks, where one sorted list moved
/// every run after it (quadratic in a datagram of thousands of fragments in falling order).
#[derive(Debug, Default)]
struct Runs {
    /// Each block sorted and non-empty; each block's runs before the next block's.
    blocks: Vec<Vec<(u32, u32)>>,
}

/// Most runs in one block of [`Runs`].
const RUN_BLOCK: usize = 64;

impl Runs {
    fn last(&self) -> Option<&(u32, u32)> {
        self.blocks.last().and_then(|b| b.last())
    }

    fn last_mut(&mut self) -> Option<&mut (u32, u32)> {
        self.blocks.last_mut().and_then(|b| b.last_mut())
    }

    /// Block and place of the first run that ends after `offset` (the block count when none
    /// does).
    fn find(&self, offset: u32) -> (usize, usize) {
        let b = (self.blocks).partition_point(|b| b.last().is_some_and(|r| r.1 <= offset));
        let i = self
            .blocks
            .get(b)
            .map_or(0, |v| v.partition_point(|r| r.1 <= offset));
        (b, i)
    }

    fn get(&self, (b, i): (usize, usize)) -> Option<&(u32, u32)> {
        self.blocks.get(b).and_then(|v| v.get(i))
    }

    /// A block with room for [`RUN_BLOCK`] runs, `None` when the memory cannot be had (also
    /// for its place in the list of blocks).
    fn new_block(&mut self) -> Option<Vec<(u32, u32)>> {
        let mut v = Vec::new();
        v.try_reserve_exact(RUN_BLOCK).ok()?;
        self.blocks.try_reserve(1).ok()?;
        Some(v)
    }

    /// Inserts `run` at block `b`, place `i` (as [`Runs::find`] gives them); false when the
    /// memory for a new block cannot be had, and nothing changes. Blocks are made with room
    /// for [`RUN_BLOCK`] runs, so only a new block allocates.
    fn insert(&mut self, (b, i): (usize, usize), run: (u32, u32)) -> bool {
        if b == self.blocks.len() {
            // After every run: into the last block, or a new one.
            if let Some(last) = self.blocks.last_mut().filter(|v| v.len() < RUN_BLOCK) {
                last.push(run);
                return true;
            }
            let Some(mut v) = self.new_block() else {
                return false;
            };
            v.push(run);
            self.blocks.push(v);
            return true;
        }
        let (b, i) = if self.blocks[b].len() < RUN_BLOCK {
            (b, i)
        } else {
            // Full: its upper half moves to a new block after it.
            let Some(mut upper) = self.new_block() else {
                return false;
            };
            let half = RUN_BLOCK / 2;
            upper.extend(self.blocks[b].drain(half..));
            self.blocks.insert(b + 1, upper);
            if i > half { (b + 1, i - half) } else { (b, i) }
        };
        self.blocks[b].insert(i, run);
        true
    }
}

fn insert_run(runs: &mut Runs, offset: u32, end: u32) -> Insert {
    let after_all = (runs.blocks.len(), 0);
    let add = |runs: &mut Runs, at| {
        if runs.insert(at, (offset, end)) {
            Insert::Ok
        } else {
            Insert::NoMemory
        }
    };
    let Some(&(_, tail_end)) = runs.last() else {
        return add(runs, after_all);
    };
    if tail_end < end {
        if offset < tail_end {
            return Insert::Overlap;
        }
        if offset == tail_end {
            if let Some(last) = runs.last_mut() {
                last.1 = end;
            }
            return Insert::Ok;
        }
        return add(runs, after_all);
    }
    let at = runs.find(offset);
    match runs.get(at) {
        Some(&(s, e)) if s < end => {
            if offset >= s && end <= e {
                Insert::Duplicate
            } else {
                Insert::Overlap
            }
        }
        _ => add(runs, at),
    }
}

/// The datagram of complete queue `q`, written into `pkt` (empty; room for it reserved by the
/// caller, or else here).
fn build(mut q: Queue, v6: bool, mut pkt: Vec<u8>) -> Reassembled {
    let Some(head) = q.head.take() else {
        return Reassembled::Dropped;
    };
    let head_len = head.len();
    if pkt.try_reserve_exact(head_len + q.len as usize).is_err() {
        return Reassembled::Dropped;
    }
    pkt.extend_from_slice(&head);
    // RFC 3168 section 5.3: fragments that are not ECN-capable mixed with ones that are (or
    // carry congestion experienced) make no datagram.
    if q.ecn & 1 != 0 && q.ecn & !1 != 0 {
        return Reassembled::Dropped;
    }
    // Kept in arrival order: the datagram's in offset order (never overlapping).
    q.pieces.sort_unstable_by_key(|p| p.0);
    let n = q.pieces.len().min(u16::MAX as usize) as u16;
    let first_len = q.pieces.first().map_or(0, |&(o, e, _)| e - o);
    let total = head_len + q.len as usize;
    if v6 {
        if total - 40 > V6_MAX_PAYLOAD as usize {
            return Reassembled::Dropped;
        }
        if let Some((nh_off, next)) = q.v6_nh
            && let Some(b) = pkt.get_mut(nh_off)
        {
            *b = next;
        }
        let plen = (total - 40) as u16;
        pkt[4..6].copy_from_slice(&plen.to_be_bytes());
    } else {
        if total > 65535 {
            return Reassembled::Dropped;
        }
        pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[6] = 0;
        pkt[7] = 0;
        pkt[10] = 0;
        pkt[11] = 0;
        let c = !csum_fold(csum_add(0, &pkt[..head_len]));
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    for &(offset, end, at) in &q.pieces {
        let at = at as usize;
        let Some(d) = q.data.get(at..at + (end - offset) as usize) else {
            return Reassembled::Dropped;
        };
        pkt.extend_from_slice(d);
    }
    Reassembled::Complete {
        packet: pkt,
        fragments: n,
        max_frag: q.max_frag,
        head_len: head_len as u32,
        first_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse_ip;

    fn v4_frag(id: u16, off: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let tot = 20 + payload.len();
        let fo = (off / 8) | if more { 0x2000 } else { 0 };
        let mut h = vec![
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            (id >> 8) as u8,
            id as u8,
            (fo >> 8) as u8,
            fo as u8,
            64,
            17,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let c = !csum_fold(csum_add(0, &h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// An IPv6 fragment (UDP inside) of datagram `id`, from fd00::1 to fd00::2.
    fn v6_frag(id: u32, off: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let plen = (8 + payload.len()) as u16;
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&plen.to_be_bytes());
        h.extend_from_slice(&[44, 64]);
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(&[17, 0]);
        h.extend_from_slice(&(off | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn add(d: &mut Defrag, pkt: &[u8], now: Nanos) -> Reassembled {
        let p = parse_ip(pkt).unwrap();
        d.add(&p, p.frag.unwrap(), now)
    }

    /// The run rules on one sorted list, as [`insert_run`] applied them before [`Runs`].
    fn insert_run_model(runs: &mut Vec<(u32, u32)>, offset: u32, end: u32) -> &'static str {
        let Some(&(_, tail_end)) = runs.last() else {
            runs.push((offset, end));
            return "ok";
        };
        if tail_end < end {
            if offset < tail_end {
                return "overlap";
            }
            if offset == tail_end {
                runs.last_mut().unwrap().1 = end;
            } else {
                runs.push((offset, end));
            }
            return "ok";
        }
        let i = runs.partition_point(|&(_, e)| e <= offset);
        match runs.get(i) {
            Some(&(s, e)) if s < end => {
                if offset >= s && end <= e {
                    "duplicate"
                } else {
                    "overlap"
                }
            }
            _ => {
                runs.insert(i, (offset, end));
                "ok"
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn runs_in_blocks_follow_the_rules(
            frags in proptest::collection::vec((0u32..3000, 1u32..4), 1..1500),
        ) {
            let (mut runs, mut model) = (Runs::default(), Vec::new());
            for (start, len) in frags {
                let (offset, end) = (start * 8, (start + len) * 8);
                let got = match insert_run(&mut runs, offset, end) {
                    Insert::Ok => "ok",
                    Insert::Duplicate => "duplicate",
                    Insert::Overlap => "overlap",
                    Insert::NoMemory => "no memory",
                };
                proptest::prop_assert_eq!(got, insert_run_model(&mut model, offset, end));
                let flat: Vec<_> = runs.blocks.iter().flatten().copied().collect();
                proptest::prop_assert_eq!(&flat, &model);
                proptest::prop_assert!(runs.blocks.iter().all(|b| !b.is_empty() && b.len() <= RUN_BLOCK));
            }
        }
    }

    #[test]
    fn runs_in_blocks_split_and_agree_in_long_orders() {
        let n = 8191u32;
        let mut orders: Vec<Vec<u32>> = vec![(0..n).rev().collect()];
        // Every other unit rising, then the gaps falling, then a scattered order.
        orders.push((0..n).step_by(2).chain((1..n).step_by(2).rev()).collect());
        orders.push(
            (0..n)
                .map(|k| (u64::from(k) * 4099 % u64::from(n)) as u32)
                .collect(),
        );
        for order in orders {
            let (mut runs, mut model) = (Runs::default(), Vec::new());
            for k in order {
                let (offset, end) = (k * 8, k * 8 + 8);
                let got = matches!(insert_run(&mut runs, offset, end), Insert::Ok);
                assert_eq!(got, insert_run_model(&mut model, offset, end) == "ok");
            }
            assert!(runs.blocks.len() > 1);
            let flat: Vec<_> = runs.blocks.iter().flatten().copied().collect();
            assert_eq!(flat, model);
        }
    }

    #[test]
    fn gone_datagrams_leave_no_deadlines_piling_up() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        // 200,000 datagrams of two fragments within one timeout, each complete at once, while
        // one stays incomplete throughout.
        assert!(matches!(
            add(&mut d, &v4_frag(0, 0, true, &[9; 8]), 0),
            Reassembled::Held
        ));
        for n in 0..200_000u32 {
            let id = 1 + (n % 60_000) as u16;
            assert!(matches!(
                add(&mut d, &v4_frag(id, 0, true, &[1; 8]), u64::from(n)),
                Reassembled::Held
            ));
            assert!(matches!(
                add(&mut d, &v4_frag(id, 8, false, &[2; 8]), u64::from(n)),
                Reassembled::Complete { .. }
            ));
            assert!(d.order[0].len() <= 2 * d.queues.len() + ORDER_SLACK + 1);
        }
        assert_eq!(d.queues.len(), 1);
        // The live one keeps its deadline, and still expires.
        d.expire(kernel_timer_fires(0, secs(V4_TIMEOUT_SECS)));
        assert!(d.queues.is_empty());
    }

    #[test]
    fn a_datagram_too_far_behind_starts_over_and_sources_go_with_their_queues() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        let first = v4_frag(7, 0, true, &[1; 16]);
        let last = v4_frag(7, 16, false, &[2; 5]);
        assert!(matches!(add(&mut d, &first, 0), Reassembled::Held));
        // The count wraps around without effect.
        d.peers.get_mut(&[10, 0, 0, 1]).unwrap().rid = u32::MAX - 10;
        d.queues.values_mut().for_each(|q| q.rid = u32::MAX - 10);
        for id in 100..100 + V4_MAX_DIST as u16 {
            assert!(matches!(
                add(&mut d, &v4_frag(id, 0, true, &[3; 8]), 1),
                Reassembled::Held
            ));
        }
        // 65 counted since the first fragment: it is thrown away, the last one kept.
        assert!(matches!(add(&mut d, &last, 2), Reassembled::Held));
        let q = &d.queues[&d.order[0].back().unwrap().2];
        assert_eq!((q.meat, q.pieces.len(), q.head.is_none()), (5, 1, true));
        assert_eq!(
            d.order[0].back().unwrap().0,
            kernel_timer_fires(2, secs(V4_TIMEOUT_SECS))
        );
        // Its first fragment again completes it.
        assert!(matches!(
            add(&mut d, &first, 3),
            Reassembled::Complete { fragments: 2, .. }
        ));
        assert_eq!(d.peers[&[10, 0, 0, 1]].queues, V4_MAX_DIST);
        d.expire(kernel_timer_fires(1, secs(V4_TIMEOUT_SECS)));
        assert!(d.queues.is_empty() && d.peers.is_empty());
        assert_eq!(d.bytes, 0);
        // At the limit (64 counted), nothing is thrown away.
        assert!(matches!(add(&mut d, &first, 100), Reassembled::Held));
        for id in 100..100 + V4_MAX_DIST as u16 - 1 {
            add(&mut d, &v4_frag(id, 0, true, &[3; 8]), 100);
        }
        assert!(matches!(
            add(&mut d, &last, 100),
            Reassembled::Complete { .. }
        ));
    }

    #[test]
    fn out_of_order_with_duplicate() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        let a = v4_frag(7, 0, true, &[1; 16]);
        let b = v4_frag(7, 16, true, &[2; 16]);
        let c = v4_frag(7, 32, false, &[3; 5]);
        assert!(matches!(add(&mut d, &c, 0), Reassembled::Held));
        assert!(matches!(add(&mut d, &b, 0), Reassembled::Held));
        assert!(matches!(add(&mut d, &b, 0), Reassembled::Held));
        match add(&mut d, &a, 0) {
            Reassembled::Complete {
                packet, fragments, ..
            } => {
                assert_eq!(fragments, 3);
                let p = parse_ip(&packet).unwrap();
                assert!(p.frag.is_none());
                assert_eq!(p.l4().len(), 37);
                assert_eq!(&p.l4()[16..32], &[2; 16]);
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(d.bytes, 0);
    }

    #[test]
    fn inside_a_run_is_a_duplicate() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        assert!(matches!(
            add(&mut d, &v4_frag(11, 0, true, &[1; 16]), 0),
            Reassembled::Held
        ));
        assert!(matches!(
            add(&mut d, &v4_frag(11, 16, true, &[2; 16]), 0),
            Reassembled::Held
        ));
        // Inside the run [0, 32): ignored, not an overlap.
        assert!(matches!(
            add(&mut d, &v4_frag(11, 8, true, &[9; 16]), 0),
            Reassembled::Held
        ));
        match add(&mut d, &v4_frag(11, 32, false, &[3; 4]), 0) {
            Reassembled::Complete {
                fragments, packet, ..
            } => {
                assert_eq!(fragments, 3);
                assert_eq!(packet[20 + 8], 1);
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn overlap_kills_and_timeout_expires() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        assert!(matches!(
            add(&mut d, &v4_frag(9, 0, true, &[0; 16]), 0),
            Reassembled::Held
        ));
        assert!(matches!(
            add(&mut d, &v4_frag(9, 8, true, &[0; 16]), 0),
            Reassembled::Dropped
        ));
        assert!(d.queues.is_empty());
        assert!(matches!(
            add(&mut d, &v4_frag(10, 0, true, &[0; 16]), 0),
            Reassembled::Held
        ));
        // The kernel's timer for 30 s fires up to 2.048 s late (a granule of 512 ticks of its
        // wheel): the queue is there until the middle of that window, 31.024 s.
        d.expire(secs(31));
        assert_eq!(d.queues.len(), 1);
        d.expire(secs(31) + 24_000_000 - 1);
        assert_eq!(d.queues.len(), 1);
        d.expire(secs(31) + 24_000_000);
        assert!(d.queues.is_empty());
        assert_eq!(d.bytes, 0);
    }

    #[test]
    fn each_family_runs_out_on_its_own_timeout() {
        // IPv6 with the longer timeout first, then IPv4: the IPv4 queue does not wait for the
        // IPv6 one (it did when one list held both families' deadlines).
        let mut d = Defrag::new(&Sysctl::default(), 1);
        assert!(matches!(
            add(&mut d, &v6_frag(5, 0, true, &[1; 16]), 0),
            Reassembled::Held
        ));
        assert!(matches!(
            add(&mut d, &v4_frag(5, 0, true, &[1; 16]), secs(1)),
            Reassembled::Held
        ));
        d.expire(secs(34));
        assert_eq!(d.queues.keys().map(|k| k.v6).collect::<Vec<_>>(), [true]);
        d.expire(secs(63));
        assert!(d.queues.is_empty());
        // IPv6 with the shorter timeout (20 s) after IPv4: it runs out first.
        let s = Sysctl {
            nf_conntrack_frag6_timeout: 20,
            ..Sysctl::default()
        };
        let started = || {
            let mut d = Defrag::new(&s, 1);
            assert!(matches!(
                add(&mut d, &v4_frag(6, 0, true, &[1; 16]), 0),
                Reassembled::Held
            ));
            assert!(matches!(
                add(&mut d, &v6_frag(6, 0, true, &[1; 16]), secs(1)),
                Reassembled::Held
            ));
            d
        };
        // The IPv6 datagram completes until its timer fires (about 22 s), not after.
        assert!(matches!(
            add(&mut started(), &v6_frag(6, 16, false, &[2; 8]), secs(22)),
            Reassembled::Complete { fragments: 2, .. }
        ));
        let mut d = started();
        d.expire(secs(23));
        assert_eq!(d.queues.keys().map(|k| k.v6).collect::<Vec<_>>(), [false]);
    }

    #[test]
    fn a_shorter_timeout_set_later_runs_out_before_older_queues() {
        let mut d = Defrag::new(&Sysctl::default(), 1);
        assert!(matches!(
            add(&mut d, &v6_frag(7, 0, true, &[1; 16]), 0),
            Reassembled::Held
        ));
        d.configure(&Sysctl {
            nf_conntrack_frag6_timeout: 10,
            ..Sysctl::default()
        });
        assert!(matches!(
            add(&mut d, &v6_frag(8, 0, true, &[1; 16]), secs(1)),
            Reassembled::Held
        ));
        // The new queue's timer fires about 11 s in, before the older one's (61 s): it is
        // filed before it, not behind it.
        d.expire(secs(12));
        assert_eq!(d.queues.keys().map(|k| k.id).collect::<Vec<_>>(), [7]);
        d.expire(secs(62));
        assert!(d.queues.is_empty());
    }
}
