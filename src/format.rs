//! Listing formats: an entry as a line of `/proc/net/nf_conntrack`, and the snapshots of
//! entries and expectations that listings and events carry.

use std::fmt::{self, Write};
use std::net::IpAddr;

use ctrack_protocols::{NANOS_PER_SEC, Nanos};

use crate::table::{Counters, Entry, ProtoState, status};
use crate::tuple::{Addr, L4, Tuple, proto};

/// The helpers the kernel has for IPv4 only: an IPv6 connection assigned one has none.
const IPV4_ONLY_HELPERS: [&str; 4] = ["irc", "pptp", "snmp", "netbios-ns"];

/// A snapshot of one entry, independent of its address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// Original-direction tuple.
    pub orig: Tuple,
    /// Reply-direction tuple.
    pub reply: Tuple,
    /// Kernel-numbered status bits (see [`crate::table::status`]).
    pub status: u8,
    /// Whole seconds until expiry, as the kernel prints them.
    pub seconds_left: u64,
    /// TCP or SCTP state name, for TCP and SCTP entries.
    pub tcp_state: Option<&'static str>,
    /// GRE timeouts (seconds) stored with the entry.
    pub gre_timeouts: Option<(u32, u32)>,
    /// Name of the assigned helper.
    pub helper: Option<&'static str>,
    /// Packet and byte counters (with `nf_conntrack_acct`).
    pub counters: Option<Counters>,
    /// Whole seconds since the entry was created (with `nf_conntrack_timestamp`).
    pub age_seconds: Option<u64>,
    /// The connection's mark (the kernel's `ct mark`, 0 until set; see
    /// [`Conntrack::set_mark`](crate::Conntrack::set_mark)).
    pub mark: u32,
    /// Live connections created through this entry's expectations (each holds a reference
    /// to it, which the kernel's `use=` counts).
    pub children: u32,
}

impl EntryView {
    pub(crate) fn new<A: Addr>(
        e: &Entry<A>,
        now: Nanos,
        counters: Option<Counters>,
        born: Option<Nanos>,
        mark: u32,
    ) -> Self {
        let reply = e.key.inverse().unwrap_or(e.key);
        let (tcp_state, gre_timeouts) = match &e.proto {
            ProtoState::Gre(g) => (None, Some((g.timeout, g.stream_timeout))),
            ProtoState::Tcp(t) => (Some(ctrack_protocols::tcp::state_name(t)), None),
            ProtoState::Sctp(t) => (Some(t.state().name()), None),
            _ => (None, None),
        };
        EntryView {
            orig: e.key.to_tuple(),
            reply: reply.to_tuple(),
            status: e.status & status::KERNEL,
            // The kernel counts what is left in ticks from the tick of the entry's last
            // refresh: to the nearest tick, as for expectations (an entry killed in the tick
            // that refreshed it, 20 us after a packet gave it 1 s, still has 1 s, not 0).
            seconds_left: e
                .expires
                .saturating_sub(now)
                .saturating_add(ctrack_protocols::HALF_JIFFY)
                / NANOS_PER_SEC,
            tcp_state,
            gre_timeouts,
            helper: ctrack_helpers::at_index(e.helper)
                .map(|h| h.name)
                .filter(|n| !(A::V6 && IPV4_ONLY_HELPERS.contains(n))),
            counters,
            age_seconds: born.map(|b| now.saturating_sub(b) / NANOS_PER_SEC),
            mark,
            children: 0,
        }
    }

    /// The entry as `/proc/net/nf_conntrack` prints it (without the trailing newline).
    pub fn proc_line(&self) -> String {
        let mut s = String::with_capacity(200);
        let _ = self.write_proc(&mut s);
        s
    }

    fn write_proc(&self, s: &mut String) -> fmt::Result {
        let (l3, l3num) = if self.orig.src.is_ipv6() {
            ("ipv6", 10)
        } else {
            ("ipv4", 2)
        };
        let p = self.orig.proto;
        let l4name = match p {
            proto::TCP => "tcp",
            proto::UDP => "udp",
            proto::UDPLITE => "udplite",
            proto::SCTP => "sctp",
            proto::GRE => "gre",
            proto::ICMP if l3num == 2 => "icmp",
            proto::ICMPV6 if l3num == 10 => "icmpv6",
            _ => "unknown",
        };
        write!(s, "{l3:<8} {l3num} {l4name:<8} {p} {} ", self.seconds_left)?;
        if let Some(st) = self.tcp_state {
            write!(s, "{st} ")?;
        }
        if let Some((t, st)) = self.gre_timeouts {
            write!(s, "timeout={t}, stream_timeout={st} ")?;
        }
        write_tuple(s, &self.orig)?;
        if let Some(c) = &self.counters {
            write!(s, "packets={} bytes={} ", c.packets[0], c.bytes[0])?;
        }
        if self.status & status::SEEN_REPLY == 0 {
            s.push_str("[UNREPLIED] ");
        }
        write_tuple(s, &self.reply)?;
        if let Some(c) = &self.counters {
            write!(s, "packets={} bytes={} ", c.packets[1], c.bytes[1])?;
        }
        if self.status & status::ASSURED != 0 {
            s.push_str("[ASSURED] ");
        }
        write!(s, "mark={} zone={} ", self.mark, self.orig.zone)?;
        if let Some(age) = self.age_seconds {
            write!(s, "delta-time={age} ")?;
        }
        // The table's reference, the reader's, and one per expected connection.
        write!(s, "use={}", 2 + self.children)
    }
}

/// A snapshot of one pending expectation: the connection a helper announced, its master and
/// what is left of its life, independent of its address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectView {
    /// Layer-4 protocol of the expected connection.
    pub proto: u8,
    /// Its source address; `None`: any.
    pub src: Option<IpAddr>,
    /// Its destination address.
    pub dst: IpAddr,
    /// Its source port (for GRE, its source key); `None`: any.
    pub sport: Option<u16>,
    /// Its destination port (for GRE, its destination key).
    pub dport: u16,
    /// Conntrack zone.
    pub zone: u16,
    /// The master connection's original tuple.
    pub master: Tuple,
    /// Whole seconds until it runs out, as the kernel reports them (0 once it has).
    pub seconds_left: u64,
    /// Name of the helper that announced it.
    pub helper: Option<&'static str>,
    /// Expectation class in the helper's policy (SIP: 0 signalling, 1 audio, 2 video,
    /// 3 image; 0 for the other helpers).
    pub class: u8,
    /// Every matching connection takes it, and it stays.
    pub permanent: bool,
    /// Not matched until its helper activates it.
    pub inactive: bool,
}

/// Appends an address as the kernel's `/proc` files print it.
pub(crate) fn push_addr(s: &mut String, a: &std::net::IpAddr) {
    let _ = write_addr(s, a);
}

fn write_addr(s: &mut String, a: &std::net::IpAddr) -> fmt::Result {
    match a {
        std::net::IpAddr::V4(v4) => write!(s, "{v4}"),
        std::net::IpAddr::V6(v6) => {
            for (i, seg) in v6.segments().iter().enumerate() {
                if i > 0 {
                    s.push(':');
                }
                write!(s, "{seg:04x}")?;
            }
            Ok(())
        }
    }
}

fn write_tuple(s: &mut String, t: &Tuple) -> fmt::Result {
    s.push_str("src=");
    write_addr(s, &t.src)?;
    s.push_str(" dst=");
    write_addr(s, &t.dst)?;
    s.push(' ');
    match t.l4 {
        L4::Ports { src, dst } => write!(s, "sport={src} dport={dst} "),
        L4::Icmp { id, kind, code } => write!(s, "type={kind} code={code} id={id} "),
        L4::Gre { src_key, dst_key } => write!(s, "srckey={src_key:#x} dstkey={dst_key:#x} "),
        L4::None => Ok(()),
    }
}
