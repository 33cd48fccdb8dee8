//! The event streams: what happened to entries (new, updated, destroyed), as the kernel's
//! `conntrack -E` reports it, and to expectations (announced, gone), as `conntrack -E expect`
//! reports them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ctrack_protocols::Nanos;
use parking_lot::Mutex;

use crate::format::{EntryView, ExpectView};
use crate::table::status;
use crate::tuple::{L4, Tuple, proto};

/// What happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The entry was confirmed: its first packet passed (the kernel's `IPCT_NEW`).
    New,
    /// A packet changed it: a new protocol state, its first reply, or ASSURED.
    Update,
    /// It left the table: timed out, killed by its tracker (a reopened or reset TCP
    /// connection), evicted by early drop or the pressure sweep, or taken down with its
    /// PPTP call.
    Destroy,
}

impl EventKind {
    /// The kind as `conntrack -E` labels it: `[NEW]`, `[UPDATE]`, `[DESTROY]`.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        }
    }
}

/// One event, with the entry as it was right after what happened.
///
/// ```
/// use ctrack::{Config, Conntrack, EventKind, LinkType};
/// let mut cfg = Config::default();
/// cfg.events = 1024;
/// cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
/// let ct = Conntrack::new(cfg);
/// // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53, then its answer.
/// let mut q = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
/// q.extend([0x03, 0xe8, 0, 53, 0, 8, 0, 0]);
/// let mut a = q.clone();
/// a[12..20].copy_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
/// a[20..24].copy_from_slice(&[0, 53, 0x03, 0xe8]);
/// for p in [&mut q, &mut a] {
///     let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &p[..20]));
///     p[10..12].copy_from_slice(&c.to_be_bytes());
/// }
/// ct.process(&q, LinkType::Raw, 1_000_000_000);
/// ct.process(&a, LinkType::Raw, 2_000_000_000);
/// let ev = ct.events();
/// assert_eq!(ev.len(), 2);
/// assert_eq!(ev[0].kind, EventKind::New);
/// assert_eq!(
///     ev[1].line(),
///     " [UPDATE] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=53 \
///      src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1000"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The engine's time when it happened (for an expiry: when the engine noticed it).
    pub time: Nanos,
    /// The entry right after the event (for [`EventKind::Destroy`], as it left).
    pub entry: EntryView,
    /// The entry's TCP or SCTP state changed (always true for a new entry): the kernel
    /// reports the state with an update only then.
    pub state_changed: bool,
    /// The connection's mark was set with this event (see
    /// [`Conntrack::set_mark`](crate::Conntrack::set_mark)): the kernel then reports the mark
    /// even when it is 0, which it leaves out otherwise.
    pub mark_changed: bool,
}

impl Event {
    /// The event as `conntrack -E` prints it (its default format, without the entry id):
    /// `    [NEW] tcp      6 120 SYN_SENT src=... [UNREPLIED] src=... helper=ftp`.
    /// Packet and byte counters (with `nf_conntrack_acct`) appear with destroy events only,
    /// as the kernel sends them only then.
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(200);
        let _ = self.write_line(&mut s);
        s
    }

    fn write_line(&self, s: &mut String) -> fmt::Result {
        let e = &self.entry;
        let kind = self.kind.label();
        let p = e.orig.proto;
        write!(s, "{kind:>9} {:<8} {p}", proto_name(p))?;
        // The kernel leaves the time out of a destroy event when none is left.
        if self.kind != EventKind::Destroy || e.seconds_left > 0 {
            write!(s, " {}", e.seconds_left)?;
        }
        if let Some(st) = e.tcp_state
            && (self.state_changed || self.kind != EventKind::Update)
        {
            write!(s, " {st}")?;
        }
        let counters = e.counters.filter(|_| self.kind == EventKind::Destroy);
        write_tuple(s, &e.orig)?;
        if let Some(c) = &counters {
            write!(s, " packets={} bytes={}", c.packets[0], c.bytes[0])?;
        }
        if e.status & status::SEEN_REPLY == 0 {
            s.push_str(" [UNREPLIED]");
        }
        write_tuple(s, &e.reply)?;
        if let Some(c) = &counters {
            write!(s, " packets={} bytes={}", c.packets[1], c.bytes[1])?;
        }
        if e.status & status::ASSURED != 0 {
            s.push_str(" [ASSURED]");
        }
        if e.mark != 0 || self.mark_changed {
            write!(s, " mark={}", e.mark)?;
        }
        if e.orig.zone != 0 {
            write!(s, " zone={}", e.orig.zone)?;
        }
        // A destroy event names no helper.
        if let Some(h) = e.helper.filter(|_| self.kind != EventKind::Destroy) {
            write!(s, " helper={h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// One expectation event: a helper announced a connection ([`EventKind::New`]), or the
/// announcement went ([`EventKind::Destroy`]: a connection took it, its helper replaced or
/// withdrew it, its class was full, its master left, or it ran out). The kernel has no
/// update event for an expectation; a refreshed SIP registration reports nothing.
///
/// ```
/// use ctrack::{Config, Conntrack, EventKind, LinkType};
/// let mut cfg = Config::default();
/// cfg.events = 1024;
/// cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
/// cfg.helpers = ctrack_helpers::parse_assignment("tftp:udp:69").unwrap();
/// let ct = Conntrack::new(cfg);
/// // A TFTP read request 10.0.0.1:1000 -> 10.0.0.2:69 ("f", octet mode).
/// let mut q = vec![0x45, 0, 0, 38, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
/// q.extend([0x03, 0xe8, 0, 69, 0, 18, 0, 0, 0, 1, b'f', 0]);
/// q.extend(b"octet\0");
/// let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &q[..20]));
/// q[10..12].copy_from_slice(&c.to_be_bytes());
/// ct.process(&q, LinkType::Raw, 1_000_000_000);
/// let ev = ct.expect_events();
/// assert_eq!(ev.len(), 1);
/// assert_eq!(ev[0].kind, EventKind::New);
/// assert_eq!(
///     ev[0].line(),
///     "    [NEW] 300 proto=17 src=10.0.0.2 dst=10.0.0.1 sport=0 dport=1000 \
///      mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 \
///      master-src=10.0.0.1 master-dst=10.0.0.2 sport=1000 dport=69 class=0 helper=tftp"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectEvent {
    /// What happened: [`EventKind::New`] or [`EventKind::Destroy`].
    pub kind: EventKind,
    /// The engine's time when it happened (for one that ran out: when the engine noticed).
    pub time: Nanos,
    /// The expectation (for [`EventKind::Destroy`], as it went).
    pub expect: ExpectView,
}

impl ExpectEvent {
    /// The event as `conntrack -E expect` prints it (its default format): the time left, the
    /// expected tuple, its mask, the master's tuple, flags, class and helper.
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(300);
        let _ = self.write_line(&mut s);
        s
    }

    fn write_line(&self, s: &mut String) -> fmt::Result {
        let x = &self.expect;
        let kind = self.kind.label();
        write!(s, "{kind:>9} {} proto={}", x.seconds_left, x.proto)?;
        let v6 = x.dst.is_ipv6();
        let addr = |ones: bool| -> IpAddr {
            match (v6, ones) {
                (false, o) => IpAddr::from(if o { [255u8; 4] } else { [0; 4] }),
                (true, o) => IpAddr::from(if o { [255u8; 16] } else { [0; 16] }),
            }
        };
        let gre = x.proto == proto::GRE;
        let l4 = |s: &mut String, sport: u16, dport: u16| {
            if gre {
                write!(s, " srckey={sport:#x} dstkey={dport:#x}")
            } else {
                write!(s, " sport={sport} dport={dport}")
            }
        };
        s.push_str(" src=");
        write_addr(s, &x.src.unwrap_or(addr(false)))?;
        s.push_str(" dst=");
        write_addr(s, &x.dst)?;
        l4(s, x.sport.unwrap_or(0), x.dport)?;
        s.push_str(" mask-src=");
        write_addr(s, &addr(x.src.is_some()))?;
        s.push_str(" mask-dst=");
        write_addr(s, &addr(true))?;
        l4(s, if x.sport.is_some() { 0xffff } else { 0 }, 0xffff)?;
        s.push_str(" master-src=");
        write_addr(s, &x.master.src)?;
        s.push_str(" master-dst=");
        write_addr(s, &x.master.dst)?;
        match x.master.l4 {
            L4::Ports { src, dst } => write!(s, " sport={src} dport={dst}")?,
            L4::Gre { src_key, dst_key } => write!(s, " srckey={src_key:#x} dstkey={dst_key:#x}")?,
            L4::Icmp { .. } | L4::None => {}
        }
        // No zone: `conntrack -E expect` shows none for an expectation in a zone
        // (pcaps/zones/ftp-expectation.expect-events).
        match (x.permanent, x.inactive) {
            (true, true) => s.push_str(" PERMANENT,INACTIVE"),
            (true, false) => s.push_str(" PERMANENT"),
            (false, true) => s.push_str(" INACTIVE"),
            (false, false) => {}
        }
        write!(s, " class={}", x.class)?;
        if let Some(h) = x.helper {
            write!(s, " helper={h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ExpectEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// DCCP's protocol number (the engine tracks it as a generic protocol).
const DCCP: u8 = 33;

/// A layer-4 protocol's name as `conntrack` prints it (by number, whatever the family).
fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::UDPLITE => "udplite",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        proto::SCTP => "sctp",
        proto::GRE => "gre",
        DCCP => "dccp",
        _ => "unknown",
    }
}

fn write_tuple(s: &mut String, t: &Tuple) -> fmt::Result {
    s.push_str(" src=");
    write_addr(s, &t.src)?;
    s.push_str(" dst=");
    write_addr(s, &t.dst)?;
    match t.l4 {
        L4::Ports { src, dst } => write!(s, " sport={src} dport={dst}"),
        L4::Icmp { id, kind, code } => write!(s, " type={kind} code={code} id={id}"),
        L4::Gre { src_key, dst_key } => write!(s, " srckey={src_key:#x} dstkey={dst_key:#x}"),
        // `conntrack` knows DCCP has ports, which the kernel's generic tracking leaves 0.
        L4::None if t.proto == DCCP => write!(s, " sport=0 dport=0"),
        L4::None => Ok(()),
    }
}

/// An address as the C library's `inet_ntop` writes it (which `conntrack` uses): IPv6 with
/// the first longest run of two or more zero groups as `::`, and the embedded IPv4 address
/// dotted in `::a.b.c.d` and `::ffff:a.b.c.d`.
fn write_addr(s: &mut String, a: &IpAddr) -> fmt::Result {
    let v6 = match a {
        IpAddr::V4(v4) => return write!(s, "{v4}"),
        IpAddr::V6(v6) => v6,
    };
    let w = v6.segments();
    // The first longest run of zero groups, when at least two long.
    let (mut best, mut best_len, mut i) = (0, 0, 0);
    while i < 8 {
        if w[i] == 0 {
            let start = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best {
            s.push(':');
            i += best_len;
            if i == 8 {
                s.push(':');
            }
            continue;
        }
        if i > 0 {
            s.push(':');
        }
        if i == 6
            && best == 0
            && best_len > 0
            && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))
        {
            let o = v6.octets();
            return write!(s, "{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
        }
        write!(s, "{:x}", w[i])?;
        i += 1;
    }
    Ok(())
}

/// The bounded queues events wait in until [`crate::Conntrack::events`] and
/// [`crate::Conntrack::expect_events`] take them, each of up to `capacity` events. Taken
/// after a shard lock or an expectation table's lock, never before one, and nothing else is
/// locked while one is held.
pub(crate) struct EventQueue {
    /// Which queue this is, among every tracker's (see [`EventQueue::packet_begins`]).
    id: u64,
    queue: Mutex<VecDeque<Event>>,
    expect: Mutex<VecDeque<ExpectEvent>>,
    capacity: usize,
    lost: AtomicU64,
    /// Connection events queued so far (changed under `queue`'s lock): the amendments below
    /// look only at those queued since a [`EventQueue::mark`], so that their cost is that of
    /// one packet's events, however many wait for a listener.
    pushed: AtomicU64,
}

/// Numbers the event queues: a thread's [`PACKET_START`] names its queue by it.
static QUEUES: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Where the connection events of the packet this thread handed a tracker last begin: the
    /// tracker's queue (by [`EventQueue::id`]) and its [`EventQueue::mark`] then.
    static PACKET_START: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            id: QUEUES.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(VecDeque::new()),
            expect: Mutex::new(VecDeque::new()),
            capacity,
            lost: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
        }
    }

    /// Queues the expectation event `ev`, or counts it lost as [`EventQueue::push`] does.
    pub(crate) fn push_expect(&self, ev: ExpectEvent) {
        let mut q = self.expect.lock();
        if q.len() >= self.capacity || q.try_reserve(1).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(ev);
    }

    pub(crate) fn take_expect(&self) -> Vec<ExpectEvent> {
        std::mem::take(&mut *self.expect.lock()).into()
    }

    /// Queues `ev`, or counts it lost when the queue is full or its memory cannot be had
    /// (as the kernel loses events a listener's socket has no room for).
    pub(crate) fn push(&self, ev: Event) {
        let mut q = self.queue.lock();
        if q.len() >= self.capacity || q.try_reserve(1).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(ev);
        self.pushed.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues the events in `staged`, in order, under one lock of the queue and in one copy;
    /// those it has no room for are counted lost as [`EventQueue::push`] counts them. Leaves
    /// `staged` empty (its room kept).
    pub(crate) fn push_all(&self, staged: &mut VecDeque<Event>) {
        let mut q = self.queue.lock();
        let room = self.capacity.saturating_sub(q.len()).min(staged.len());
        let room = if q.try_reserve(room).is_ok() { room } else { 0 };
        let lost = staged.len() - room;
        staged.truncate(room);
        q.append(staged);
        self.pushed.fetch_add(room as u64, Ordering::Relaxed);
        drop(q);
        if lost > 0 {
            self.lost.fetch_add(lost as u64, Ordering::Relaxed);
        }
    }

    /// Where the queue stands: what a packet's handling queues from here on is what the
    /// amendments below (given the mark) may touch.
    pub(crate) fn mark(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// This thread hands the tracker a packet (or has just handed it a batch, when `mark` is
    /// called after it): what it queues from here on is that packet's, which a mark set for
    /// its connection right after may amend (see [`EventQueue::amend_mark`]).
    #[inline]
    pub(crate) fn packet_begins(&self) {
        PACKET_START.set((self.id, self.mark()));
    }

    /// Sets the mark in the newest event of the connection whose original tuple is `orig`
    /// among those of the packet this thread handed the tracker last (see
    /// [`EventQueue::packet_begins`]), when that event is its new or updated entry: the kernel
    /// reports a mark its ruleset set while the packet passed with the packet's event. False
    /// when there is none such (the mark then needs an event of its own).
    pub(crate) fn amend_mark(&self, orig: &Tuple, mark: u32) -> bool {
        let (id, start) = PACKET_START.get();
        if id != self.id {
            return false;
        }
        let mut q = self.queue.lock();
        let n = self.since(&q, start);
        match q.iter_mut().rev().take(n).find(|e| e.entry.orig == *orig) {
            Some(e) if e.kind != EventKind::Destroy => {
                e.entry.mark = mark;
                e.mark_changed = true;
                true
            }
            _ => false,
        }
    }

    /// The events queued since `mark` (given the queue, locked), newest first; a few more
    /// when some were retracted meanwhile.
    fn since(&self, q: &VecDeque<Event>, mark: u64) -> usize {
        let n = self.pushed.load(Ordering::Relaxed).saturating_sub(mark);
        usize::try_from(n).map_or(q.len(), |n| n.min(q.len()))
    }

    /// Takes back the newest [`EventKind::New`] since `mark` of the connection whose original
    /// tuple is `orig`: its entry was removed before its first packet passed, so, as far as
    /// anyone outside can tell, it never was.
    pub(crate) fn retract_new(&self, orig: &Tuple, mark: u64) {
        let mut q = self.queue.lock();
        let n = self.since(&q, mark);
        if let Some(back) = q
            .iter()
            .rev()
            .take(n)
            .position(|e| e.kind == EventKind::New && e.entry.orig == *orig)
        {
            let i = q.len() - 1 - back;
            q.remove(i);
        }
    }

    /// Takes back the newest event since `mark` of the connection whose original tuple is
    /// `orig` when it is an update at `now` or later (its packet was then dropped before the
    /// kernel would report it); returns whether it moved the protocol state.
    pub(crate) fn retract_update(&self, orig: &Tuple, now: Nanos, mark: u64) -> Option<bool> {
        let mut q = self.queue.lock();
        let n = self.since(&q, mark);
        let back = q.iter().rev().take(n).position(|e| e.entry.orig == *orig)?;
        let i = q.len() - 1 - back;
        let e = &q[i];
        if e.kind != EventKind::Update || e.time < now {
            return None;
        }
        let moved = e.state_changed;
        q.remove(i);
        Some(moved)
    }

    /// Sets the time left in the newest event since `mark` of the connection whose original
    /// tuple is `orig`, when that event is its new or updated entry at `now` or later: a
    /// helper changed the entry's timeout while the packet that caused the event was still
    /// being handled.
    pub(crate) fn amend_seconds(&self, orig: &Tuple, now: Nanos, seconds_left: u64, mark: u64) {
        let mut q = self.queue.lock();
        let n = self.since(&q, mark);
        if let Some(e) = q.iter_mut().rev().take(n).find(|e| e.entry.orig == *orig)
            && e.kind != EventKind::Destroy
            && e.time >= now
        {
            e.entry.seconds_left = seconds_left;
        }
    }

    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.queue.lock()).into()
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> String {
        let mut o = String::new();
        write_addr(&mut o, &s.parse().unwrap()).unwrap();
        o
    }

    #[test]
    fn addresses_print_as_inet_ntop_prints_them() {
        for (a, want) in [
            ("10.1.2.3", "10.1.2.3"),
            ("::", "::"),
            ("::1", "::1"),
            ("fe80::1", "fe80::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"),
            ("1:2:3:4:5:6:0:0", "1:2:3:4:5:6::"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
            ("::10.0.0.1", "::10.0.0.1"),
            ("::1:0:0:1", "::1:0:0:1"),
            ("0:0:0:0:0:1:0:1", "::1:0:1"),
        ] {
            assert_eq!(addr(a), want, "{a}");
        }
    }

    #[test]
    fn expectation_lines_print_as_conntrack_prints_them() {
        let master = |src: &str, dst: &str, l4| Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: proto::TCP,
            zone: 0,
            l4,
        };
        let ev = |expect| ExpectEvent {
            kind: EventKind::Destroy,
            time: 0,
            expect,
        };
        // Any source (IRC DCC), IPv6, in a zone (not shown), permanent and inactive (a SIP
        // registration).
        let irc6 = ExpectView {
            proto: proto::TCP,
            src: None,
            dst: "2001:db8::1".parse().unwrap(),
            sport: None,
            dport: 5020,
            zone: 7,
            master: master(
                "2001:db8::1",
                "2001:db8::2",
                L4::Ports {
                    src: 43201,
                    dst: 6667,
                },
            ),
            seconds_left: 0,
            helper: Some("sip"),
            class: 0,
            permanent: true,
            inactive: true,
        };
        assert_eq!(
            ev(irc6).line(),
            "[DESTROY] 0 proto=6 src=:: dst=2001:db8::1 sport=0 dport=5020 mask-src=:: \
             mask-dst=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff sport=0 dport=65535 \
             master-src=2001:db8::1 master-dst=2001:db8::2 sport=43201 dport=6667 \
             PERMANENT,INACTIVE class=0 helper=sip"
        );
        // A PPTP call's GRE, keyed both ways.
        let gre = ExpectView {
            proto: proto::GRE,
            src: Some("10.43.1.1".parse().unwrap()),
            dst: "10.43.1.2".parse().unwrap(),
            sport: Some(0x1111),
            dport: 0x2222,
            zone: 0,
            master: master(
                "10.43.1.1",
                "10.43.1.2",
                L4::Ports {
                    src: 43001,
                    dst: 1723,
                },
            ),
            seconds_left: 300,
            helper: Some("pptp"),
            class: 0,
            permanent: false,
            inactive: false,
        };
        assert_eq!(
            ev(gre).line(),
            "[DESTROY] 300 proto=47 src=10.43.1.1 dst=10.43.1.2 srckey=0x1111 dstkey=0x2222 \
             mask-src=255.255.255.255 mask-dst=255.255.255.255 srckey=0xffff dstkey=0xffff \
             master-src=10.43.1.1 master-dst=10.43.1.2 sport=43001 dport=1723 class=0 \
             helper=pptp"
        );
    }

    /// A UDP connection's tuple from 10.0.0.1 port `port` to 10.0.0.2 port 5060.
    fn udp_tuple(port: u16) -> Tuple {
        Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: proto::UDP,
            zone: 0,
            l4: L4::Ports {
                src: port,
                dst: 5060,
            },
        }
    }

    /// An event of `kind` at `time` for the connection of [`udp_tuple`]`(port)`.
    fn udp_event(kind: EventKind, time: Nanos, port: u16) -> Event {
        Event {
            kind,
            time,
            entry: EntryView {
                orig: udp_tuple(port),
                reply: udp_tuple(port),
                status: 0,
                seconds_left: 30,
                tcp_state: None,
                gre_timeouts: None,
                helper: None,
                counters: None,
                age_seconds: None,
                mark: 0,
                children: 0,
            },
            state_changed: false,
            mark_changed: false,
        }
    }

    #[test]
    fn the_queue_holds_at_most_its_capacity() {
        let q = EventQueue::new(2);
        let t = udp_tuple(1);
        let ev = |kind| udp_event(kind, 0, 1);
        q.push(ev(EventKind::New));
        q.push(ev(EventKind::Update));
        q.push(ev(EventKind::Destroy));
        assert_eq!(q.lost(), 1);
        // Only what was queued since the mark is looked at.
        q.retract_new(&t, 2);
        assert_eq!(q.queue.lock().len(), 2);
        q.retract_new(&t, 0);
        let got = q.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, EventKind::Update);
        assert!(q.take().is_empty());
    }

    #[test]
    fn amendments_look_only_at_what_came_since_their_mark() {
        let q = EventQueue::new(100);
        let tuple = udp_tuple;
        let ev = |kind, port| udp_event(kind, 5, port);
        // An earlier packet's update of connection 1, then other connections' events.
        q.push(ev(EventKind::Update, 1));
        for port in 2..50 {
            q.push(ev(EventKind::New, port));
        }
        let mark = q.mark();
        assert_eq!(mark, 49);
        // Nothing of connection 1 since the mark: its earlier event stays as it was.
        q.amend_seconds(&tuple(1), 5, 3600, mark);
        assert_eq!(q.retract_update(&tuple(1), 5, mark), None);
        // This packet's own update is found, amended and retracted.
        q.push(ev(EventKind::Update, 1));
        q.amend_seconds(&tuple(1), 5, 3600, mark);
        assert_eq!(
            q.queue.lock().back().map(|e| e.entry.seconds_left),
            Some(3600)
        );
        assert_eq!(q.retract_update(&tuple(1), 5, mark), Some(false));
        let got = q.take();
        assert_eq!(got.len(), 49);
        assert_eq!(
            (got[0].kind, got[0].entry.seconds_left),
            (EventKind::Update, 30)
        );
    }
}
