//! Which new connections the surrounding host would confirm: the routing step between
//! conntrack's PREROUTING hook and confirmation, modelled for a plain Linux router.
//!
//! Linux only inserts a new entry into the table when its first packet survives to the last
//! netfilter hook (forwarded, delivered locally, or answered by an ICMP error the kernel sends,
//! which confirms the entry too). Packets the routing step silently discards (multicast groups
//! the host has not joined, martian sources) leave no entry behind. A firewall embedding ctrack
//! decides this itself and keeps [`HostModel::ConfirmAll`]; `ctrack replay` defaults to
//! [`HostModel::Router`], the host of the kernel oracle: IPv4 and IPv6 forwarding on, no
//! addresses of its own, a default route out of a second interface.

use crate::packet::IpPacket;
use crate::tuple::Addr;
use crate::verdict::{Dir, State, Verdict};

/// MTU of the router's way out (the oracle's second interface).
pub const ROUTER_MTU: usize = 65000;

/// What the router does with a tracked packet, seen from its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Forwarded as it is, or not at all for reasons the verdict already carries.
    Plain,
    /// Forwarded as this many fragments: bigger than [`ROUTER_MTU`], fragmentation allowed.
    Fragments(u16),
    /// Dropped and answered with an ICMP error of the router's own: bigger than
    /// [`ROUTER_MTU`] with DF set (fragmentation needed), or IPv4 options the router refuses
    /// (parameter problem). `tos` is the packet's type of service, which the error inherits.
    IcmpError {
        /// The packet's IPv4 type-of-service byte.
        tos: u8,
    },
}

/// What the host does with a packet after conntrack has seen it, as far as the connection
/// goes: whether a new entry is confirmed, and whether the kernel reports the packet's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Routed on (forwarded or delivered, unless its addresses say otherwise: see
    /// [`HostModel::confirms`]).
    Passes,
    /// Dropped silently (a source route, or what the host will not answer).
    Dropped,
    /// Dropped and answered with an ICMP error of the host's own (bad IPv4 options, too big
    /// for the way out): the error carries the packet's connection out of the host, so the
    /// kernel reports that connection's events, but it confirms no new entry.
    Answered,
}

/// How the host around the tracker treats a new connection's first packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostModel {
    /// Every accepted first packet confirms its entry.
    #[default]
    ConfirmAll,
    /// A forwarding Linux router without addresses: see the module documentation.
    Router,
}

impl HostModel {
    /// True when a new connection from `src` to `dst` would be confirmed.
    ///
    /// ```
    /// use ctrack::HostModel;
    /// let r = HostModel::Router;
    /// assert!(r.confirms(&[10, 0, 0, 1], &[10, 0, 0, 2]));
    /// assert!(!r.confirms(&[10, 0, 0, 1], &[224, 0, 0, 251])); // mDNS: group not joined
    /// assert!(r.confirms(&[10, 0, 0, 1], &[255, 255, 255, 255])); // delivered locally
    /// ```
    pub fn confirms<A: Addr>(&self, src: &A, dst: &A) -> bool {
        match self {
            HostModel::ConfirmAll => true,
            HostModel::Router => {
                if A::V6 {
                    router_v6(src.as_ref(), dst.as_ref())
                } else {
                    router_v4(src.as_ref(), dst.as_ref())
                }
            }
        }
    }
}

impl HostModel {
    /// False when the host drops the packet after conntrack has seen it (routing and
    /// forwarding come after the PREROUTING hook): IPv4 options that Linux's option parser
    /// refuses, or a source route, which a router without `accept_source_route` drops; a
    /// packet bigger than [`ROUTER_MTU`] that may not be fragmented (IPv4 with DF, any IPv6)
    /// on its way out. Such a packet is still tracked; only a new entry it would create is
    /// never confirmed.
    ///
    /// ```
    /// use ctrack::{HostModel, packet};
    /// // IPv4 with a loose source route option (type 131) in a 24-byte header.
    /// let mut ip = vec![0x46, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ///                   131, 3, 4, 0, 0, 0, 0, 0];
    /// let c = !packet::csum_fold(packet::csum_add(0, &ip[..24]));
    /// ip[10..12].copy_from_slice(&c.to_be_bytes());
    /// let p = packet::parse_ip(&ip).unwrap();
    /// assert!(!HostModel::Router.routes(&p));
    /// assert!(HostModel::ConfirmAll.routes(&p));
    /// ```
    #[inline(always)]
    pub fn routes(&self, p: &IpPacket<'_>) -> bool {
        self.route(p) == Route::Passes
    }

    /// [`HostModel::routes`], telling a silent drop from one the host answers with an ICMP
    /// error (see [`Route`]).
    #[inline(always)]
    pub fn route(&self, p: &IpPacket<'_>) -> Route {
        match self {
            HostModel::ConfirmAll => Route::Passes,
            // Its error held back by the rate limit: nothing answers it.
            HostModel::Router if p.unanswered => Route::Dropped,
            // The common case: small enough for the way out, and no IPv4 options.
            HostModel::Router if p.data.len() <= ROUTER_MTU && (p.v6 || p.l4_off == 20) => {
                Route::Passes
            }
            HostModel::Router => Self::router_route(p),
        }
    }

    /// [`HostModel::route`] for the router, past its common case.
    #[inline(never)]
    fn router_route(p: &IpPacket<'_>) -> Route {
        if Self::router_routes(p) {
            Route::Passes
        } else if p.v6 {
            // Too big: a packet-too-big error, but about an ICMPv6 error or to a group.
            let error =
                p.proto == crate::tuple::proto::ICMPV6 && p.l4().first().is_some_and(|&t| t < 128);
            if p.dst()[0] == 0xff || error {
                Route::Dropped
            } else {
                Route::Answered
            }
        } else if matches!(HostModel::Router.egress(p), Egress::IcmpError { .. }) {
            Route::Answered
        } else {
            Route::Dropped
        }
    }

    /// True when the router answers a packet from `src` to `dst` that it would otherwise
    /// route with an ICMP error of its own, for its addresses alone: an IPv6 link-local
    /// source it must not forward (beyond scope).
    pub fn answers<A: Addr>(&self, src: &A, dst: &A) -> bool {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        let link_local = |a: &[u8]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
        *self == HostModel::Router && A::V6 && link_local(src) && dst[0] != 0xff && !link_local(dst)
    }

    /// [`HostModel::routes`] for the router, past its common case.
    #[inline(never)]
    fn router_routes(p: &IpPacket<'_>) -> bool {
        let dst = p.dst();
        if p.reassembled {
            return v4_options(p) == Options::Kept;
        }
        if p.v6 {
            // Too big for the way out: dropped with a packet-too-big error.
            p.data.len() <= ROUTER_MTU || dst[0] == 0xff
        } else {
            let local = dst.iter().all(|&b| b == 255) || (224..240).contains(&dst[0]);
            let df = p.data[6] & 0x40 != 0;
            v4_options(p) == Options::Kept && (p.data.len() <= ROUTER_MTU || !df || local)
        }
    }

    /// What the router does with a whole (not fragmented) packet after tracking it: see
    /// [`Egress`]. Only IPv4 unicast the router forwards can be answered or fragmented; an
    /// IPv6 router neither fragments nor, in the oracle, shows its own errors.
    pub fn egress(&self, p: &IpPacket<'_>) -> Egress {
        if *self == HostModel::ConfirmAll || p.v6 || p.unanswered || !router_v4(p.src(), p.dst()) {
            return Egress::Plain;
        }
        let dst = p.dst();
        if dst.iter().all(|&b| b == 255) || (224..240).contains(&dst[0]) {
            return Egress::Plain; // delivered locally, never answered
        }
        let tos = p.data[1];
        match v4_options(p) {
            Options::SourceRoute => return Egress::Plain, // dropped silently
            Options::Refused if may_answer(p) => return Egress::IcmpError { tos },
            Options::Refused => return Egress::Plain,
            Options::Kept => {}
        }
        if p.data.len() <= ROUTER_MTU {
            return Egress::Plain;
        }
        let df = p.data[6] & 0x40 != 0;
        if !df {
            // At most 65535 bytes: always two pieces.
            Egress::Fragments(2)
        } else if may_answer(p) {
            Egress::IcmpError { tos }
        } else {
            Egress::Plain
        }
    }

    /// The verdict the oracle prints for a whole packet the router tracked as `v`: see
    /// [`HostModel::egress`]. An ICMP error of the router's own leaves with the class of
    /// service `0xc0 | (tos & 0x1e)`, which the oracle decodes as if it were its stamp: usually
    /// `unmarked`.
    pub fn after_tracking(&self, p: &IpPacket<'_>, v: Verdict) -> Verdict {
        if matches!(v.state, State::Dropped | State::Skipped | State::Held) {
            return v;
        }
        match self.egress(p) {
            Egress::Plain => v,
            Egress::Fragments(n) => Verdict { frames: n, ..v },
            Egress::IcmpError { tos } => {
                let stamped = |state| Verdict {
                    state,
                    dir: Dir::Original,
                    assured: true,
                    expected: true,
                    frames: 1,
                };
                match (tos >> 2) & 7 {
                    1 => stamped(State::New),
                    2 => stamped(State::Established),
                    3 => stamped(State::Related),
                    4 => Verdict::INVALID,
                    5 => Verdict::UNTRACKED,
                    _ => Verdict::UNMARKED,
                }
            }
        }
    }
}

/// An ICMP message of the router's own about a packet it routes, of the kinds its rate limit
/// weighs (see [`crate::ratelimit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited<'a> {
    /// An error to the packet's source (`to`), costing `cost` ticks of that peer's bucket:
    /// an IPv4 parameter problem, or an IPv6 beyond-scope error.
    Error {
        /// The error's destination.
        to: &'a [u8],
        /// Its cost in kernel ticks.
        cost: u64,
    },
    /// The redirect check of an IPv6 packet sent back out of the interface it came in on: a
    /// second from the bucket of `dst`, and when that allows, a second from that of `src`,
    /// when the source is on the link too.
    Redirect {
        /// The packet's destination.
        dst: &'a [u8],
        /// The packet's source, when it is on the link.
        src: Option<&'a [u8]>,
    },
}

impl HostModel {
    /// The rate-limited ICMP message the router sends about `p`, if any (`None` for
    /// [`HostModel::ConfirmAll`]). Whether it goes is the rate limit's to say; the host model
    /// marks a packet whose error does not go as [`IpPacket::unanswered`].
    ///
    /// ```
    /// use ctrack::{HostModel, packet};
    /// use ctrack::host::Limited;
    /// // UDP from fe80::1 to 2001:db8::2: the router must not forward a link-local source.
    /// let mut ip = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    /// ip.extend([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// ip.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    /// ip.extend([0, 53, 0x13, 0x88, 0, 8, 0, 0]);
    /// let p = packet::parse_ip(&ip).unwrap();
    /// assert!(matches!(HostModel::Router.limited(&p), Some(Limited::Error { cost: 25, .. })));
    /// assert_eq!(HostModel::ConfirmAll.limited(&p), None);
    /// ```
    pub fn limited<'a>(&self, p: &IpPacket<'a>) -> Option<Limited<'a>> {
        if *self == HostModel::ConfirmAll {
            return None;
        }
        let (src, dst) = (p.src(), p.dst());
        if !p.v6 {
            let answered = matches!(self.egress(p), Egress::IcmpError { .. });
            return (answered && v4_options(p) == Options::Refused).then_some(Limited::Error {
                to: src,
                cost: crate::ratelimit::V4_ERROR,
            });
        }
        let link_local = |a: &[u8]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
        let on_link = |a: &[u8]| a[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0];
        if link_local(dst) {
            // Routed back out of the way in only within fe80::/64 (see `router_v6`).
            return router_v6(src, dst).then(|| Limited::Redirect {
                dst,
                src: on_link(src).then_some(src),
            });
        }
        // Never an error about an ICMPv6 error (or one too short to say).
        let eligible =
            p.proto != crate::tuple::proto::ICMPV6 || p.l4().first().is_some_and(|&t| t >= 128);
        (link_local(src) && dst[0] != 0xff && eligible).then_some(Limited::Error {
            to: src,
            cost: crate::ratelimit::V6_ERROR,
        })
    }
}

/// Whether Linux's `icmp_send` answers a packet at all: never about an ICMP error (or an
/// ICMP message of an unknown type), nor about a packet too short to say.
fn may_answer(p: &IpPacket<'_>) -> bool {
    if p.proto != crate::tuple::proto::ICMP {
        return true;
    }
    match p.l4().first() {
        Some(&ty) => ty <= 18 && !matches!(ty, 3 | 4 | 5 | 11 | 12),
        None => false,
    }
}

/// How the router's option parser takes an IPv4 header's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Options {
    /// None, or all acceptable.
    Kept,
    /// A loose or strict source route: dropped silently (`accept_source_route` is off).
    SourceRoute,
    /// Malformed: dropped with a parameter-problem error.
    Refused,
}

fn v4_options(p: &IpPacket<'_>) -> Options {
    if p.v6 || p.l4_off <= 20 {
        return Options::Kept;
    }
    parse_v4_options(p.data.get(20..p.l4_off).unwrap_or(&[]))
}

/// Option types of the IPv4 header that the receive path interprets.
mod opt {
    pub const END: u8 = 0;
    pub const NOOP: u8 = 1;
    pub const RR: u8 = 7;
    pub const TIMESTAMP: u8 = 68;
    pub const LSRR: u8 = 131;
    pub const CIPSO: u8 = 134;
    pub const SSRR: u8 = 137;
    pub const RA: u8 = 148;
}

/// True when a forwarding Linux router keeps a packet with these IPv4 options (the bytes
/// between the fixed header and the end of the IHL): they parse as `ip_options_compile` does
/// for a received packet, and there is no source route.
///
/// Refused: an option whose length byte is under 2 or runs past the header; a second record
/// route, timestamp or source route; a record route or timestamp whose pointer is below its
/// minimum or leaves no room for the next entry; a full timestamp whose overflow counter is
/// already 15; a router alert shorter than 4 bytes; any CIPSO option (no DOI is configured);
/// any loose or strict source route. Unknown options are kept; everything after an
/// end-of-list option is ignored.
pub fn v4_options_accepted(opts: &[u8]) -> bool {
    parse_v4_options(opts) == Options::Kept
}

fn parse_v4_options(opts: &[u8]) -> Options {
    use Options::Refused;
    let (mut srr, mut rr, mut ts) = (false, false, false);
    let mut i = 0;
    while i < opts.len() {
        let ty = opts[i];
        match ty {
            opt::END => break,
            opt::NOOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let left = opts.len() - i;
        if left < 2 {
            return Refused;
        }
        let len = opts[i + 1] as usize;
        if len < 2 || len > left {
            return Refused;
        }
        let o = &opts[i..i + len];
        let ptr = o.get(2).map_or(0, |&b| b as usize);
        match ty {
            opt::LSRR | opt::SSRR => {
                if len < 3 || ptr < 4 || srr {
                    return Refused;
                }
                srr = true;
            }
            opt::RR => {
                if rr || len < 3 || ptr < 4 || (ptr <= len && ptr + 3 > len) {
                    return Refused;
                }
                rr = true;
            }
            opt::TIMESTAMP => {
                if ts || len < 4 || ptr < 5 {
                    return Refused;
                }
                let flags = o[3] & 0x0f;
                if ptr <= len {
                    // Room for a timestamp, and for an address too when the flags want one.
                    if ptr + 3 > len || (matches!(flags, 1 | 3) && ptr + 7 > len) {
                        return Refused;
                    }
                } else if flags != 3 && o[3] >> 4 == 15 {
                    return Refused; // full, and the overflow counter cannot count further
                }
                ts = true;
            }
            opt::RA if len < 4 => return Refused,
            opt::CIPSO => return Refused,
            _ => {}
        }
        i += len;
    }
    if srr {
        Options::SourceRoute
    } else {
        Options::Kept
    }
}

fn router_v4(src: &[u8], dst: &[u8]) -> bool {
    let word = |a: &[u8]| u32::from_be_bytes(a.try_into().unwrap_or([0; 4]));
    let (src, dst) = (word(src), word(dst));
    let multicast = |a: u32| a >> 28 == 0xe; // 224.0.0.0/4
    if multicast(src) || src == u32::MAX {
        return false; // martian source
    }
    if dst == u32::MAX || src == 0 && dst == 0 {
        return true; // limited broadcast: delivered locally
    }
    if multicast(dst) {
        return dst == 0xe000_0001; // only the all-hosts group (224.0.0.1) is joined
    }
    // Only the all-zero address is "this network" to the router (the rest of 0.0.0.0/8 is
    // routed like any unicast address).
    src != 0 && dst != 0
}

fn router_v6(src: &[u8], dst: &[u8]) -> bool {
    const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const ALL_ROUTERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const SITE_ROUTERS: [u8; 16] = [0xff, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let link_local = |a: &[u8]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
    if dst[0] == 0xff {
        // Delivered locally only to the groups a forwarding interface joins.
        return dst == ALL_NODES || dst == ALL_ROUTERS || dst == SITE_ROUTERS;
    }
    if src.iter().all(|&b| b == 0) {
        return false; // unspecified source: never forwarded
    }
    if link_local(dst) {
        // Looked up on the receiving interface alone, where only fe80::/64 has a route: a
        // destination there is answered with an ICMPv6 error, which confirms the entry; the
        // rest of fe80::/10 has no route at all and is dropped unconfirmed.
        return dst[2..8] == [0; 6] && dst[1] == 0x80;
    }
    !link_local(src) // a link-local source must not be forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    /// Cases checked against the kernel oracle.
    /// IPv4 options checked against the kernel oracle (a new UDP flow confirmed or not).
    #[test]
    fn v4_options_match_oracle() {
        let cases: [(&[u8], bool); 23] = [
            (b"\x01\x01\x01\x01", true),
            (b"\x00\x00\x00\x00", true),
            (b"\x07\x07\x04\0\0\0\0\x00", true),
            (b"\x07\x07\x08\x0a\0\0\x01\x00", true),
            (b"\x07\x07\x03\0\0\0\0\x00", false),
            (b"\x44\x0c\x05\x00\0\0\0\0\0\0\0\0", true),
            (b"\x44\x0c\x03\x00\0\0\0\0\0\0\0\0", false),
            (b"\x44\x0c\x0d\xf0\0\0\0\0\0\0\0\0", false),
            (b"\x83\x07\x04\x0a\x01\x00\x02\x00", false),
            (b"\x83\x07\x08\x0a\x01\x00\x02\x00", false),
            (b"\x89\x07\x04\x0a\x01\x00\x02\x00", false),
            (b"\x94\x04\x00\x00", true),
            (b"\x94\x04\x00\x01", true),
            (b"\x82\x0b\0\0\0\0\0\0\0\0\0\x00", true),
            (b"\x86\x0a\x00\x00\x00\x01\x01\x04\x00\x00\0\0", false),
            (b"\x1e\x04\x00\x00", true),
            (b"\x9e\x04\x00\x00", true),
            (b"\x1e\x01\x00\x00", false),
            (b"\x1e\x00\x00\x00", false),
            (b"\x1e\x08\x00\x00", false),
            (b"\x07\x03\x04\x07\x03\x04\x00\x00", false),
            (b"\x01\x01\x01\x07", false),
            (b"\x88\x04\x00\x01", true),
        ];
        for (o, want) in cases {
            assert_eq!(v4_options_accepted(o), want, "{o:02x?}");
        }
    }

    #[test]
    fn router_matches_oracle() {
        let r = HostModel::Router;
        let v4 = [
            ([10, 0, 0, 1], [224, 0, 0, 2], false),
            ([10, 0, 0, 1], [239, 255, 255, 250], false),
            ([0, 0, 0, 0], [255, 255, 255, 255], true),
            ([0, 0, 0, 0], [10, 0, 0, 2], false),
            ([10, 0, 0, 1], [0, 0, 0, 5], true),
            ([224, 0, 0, 5], [10, 0, 0, 2], false),
            ([255, 255, 255, 255], [10, 0, 0, 2], false),
            ([10, 0, 0, 1], [127, 0, 0, 1], true),
            ([169, 254, 1, 1], [169, 254, 1, 2], true),
            ([10, 0, 0, 1], [224, 0, 0, 1], true),
            ([10, 0, 0, 1], [240, 0, 0, 1], true),
            ([0, 1, 2, 3], [192, 168, 1, 23], true),
            ([192, 168, 1, 23], [0, 0, 0, 0], false),
            ([0, 0, 0, 0], [0, 0, 0, 0], true),
            ([0, 0, 0, 0], [224, 0, 0, 22], false),
            ([0, 0, 0, 0], [0, 0, 0, 7], false),
            ([0, 0, 0, 0], [10, 0, 0, 255], false),
            ([0, 9, 9, 9], [0, 0, 0, 0], false),
            ([0, 9, 9, 9], [255, 255, 255, 255], true),
            ([10, 0, 0, 1], [0, 255, 255, 255], true),
            ([0, 255, 255, 255], [10, 0, 0, 1], true),
        ];
        for (s, d, want) in v4 {
            assert_eq!(r.confirms(&s, &d), want, "{s:?} -> {d:?}");
        }
        let six = [
            ("fe80::1", "ff02::2", true),
            ("2001:db8::1", "ff02::1", true),
            ("2001:db8::1", "ff05::2", true),
            ("2001:db8::1", "ff02::1:ff00:1", false),
            ("fe80::1", "2001:db8::2", false),
            ("2001:db8::1", "fe80::2", true),
            ("::", "ff02::16", false),
            ("::", "2001:db8::2", false),
            ("2001:db8::1", "::", true),
            ("2001:db8::1", "ff0e::1", false),
            ("fe80::1", "ff02::fb", false),
            ("fe80::1", "fe80::2", true),
            ("febf:ffff::1", "fe80::9", true),
            ("fe80:1::1", "fe80::7", true),
            ("fe80::1", "fe80:0:0:1::2", false),
            ("fe80::1", "fe80:0:ff:ffff:f000::2", false),
            ("fe80::1", "febf::2", false),
            ("2001:db8::1", "fe80:1::2", false),
            ("fe80:1::1", "fe80:2::7", false),
            ("fe80::1", "ff02::1", true),
            ("fc00::1", "fc00::2", true),
        ];
        for (s, d, want) in six {
            assert_eq!(r.confirms(&v6(s), &v6(d)), want, "{s} -> {d}");
        }
    }
}

#[cfg(test)]
mod limited_tests {
    use super::*;
    use crate::packet::{csum_add, csum_fold, parse_ip};
    use crate::ratelimit::{V4_ERROR, V6_ERROR};

    fn v6(src: &str, dst: &str, nh: u8, l4: &[u8]) -> Vec<u8> {
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut ip = vec![0x60, 0, 0, 0, 0, l4.len() as u8, nh, 64];
        ip.extend(a(src));
        ip.extend(a(dst));
        ip.extend(l4);
        ip
    }

    fn v4(opts: &[u8], df: bool, payload: usize) -> Vec<u8> {
        let hl = 20 + opts.len();
        let tot = (hl + 8 + payload) as u16;
        let mut ip = vec![0x40 | (hl / 4) as u8, 0];
        ip.extend(tot.to_be_bytes());
        ip.extend([0, 1, if df { 0x40 } else { 0 }, 0, 64, 17, 0, 0]);
        ip.extend([10, 0, 0, 2, 10, 0, 0, 1]);
        ip.extend(opts);
        let c = !csum_fold(csum_add(0, &ip[..hl]));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend([0, 53, 0x13, 0x88]);
        ip.extend(((8 + payload) as u16).to_be_bytes());
        ip.extend([0, 0]);
        ip.resize(tot as usize, b'r');
        ip
    }

    #[test]
    fn which_messages_the_rate_limit_weighs() {
        type Want = for<'a> fn(&'a [u8], &'a [u8]) -> Option<Limited<'a>>;
        let check = |ip: Vec<u8>, want: Want| {
            let p = parse_ip(&ip).unwrap();
            assert_eq!(
                HostModel::Router.limited(&p),
                want(p.src(), p.dst()),
                "{ip:02x?}"
            );
            assert_eq!(HostModel::ConfirmAll.limited(&p), None);
        };
        let none: Want = |_, _| None;
        let udp = [0, 53, 0x13, 0x88, 0, 8, 0, 0];
        // A link-local source the router would route elsewhere: a beyond-scope error.
        let beyond: Want = |to, _| Some(Limited::Error { to, cost: V6_ERROR });
        check(v6("fe80::1", "2001:db8::2", 17, &udp), beyond);
        // Nothing answers an ICMPv6 error, or one too short to tell; a query is answered.
        check(v6("fe80::1", "2001:db8::2", 58, &[1, 0, 0, 0]), none);
        check(v6("fe80::1", "2001:db8::2", 58, &[]), none);
        check(v6("fe80::1", "2001:db8::2", 58, &[128, 0, 0, 0]), beyond);
        // To a group: not forwarded, not answered.
        check(v6("fe80::1", "ff02::fb", 17, &udp), none);
        // Back out of the way in: a redirect check, of the source too when it is on the link.
        check(v6("2001:db8::2", "fe80::1", 17, &udp), |_, dst| {
            Some(Limited::Redirect { dst, src: None })
        });
        check(v6("fe80::2", "fe80::1", 17, &udp), |src, dst| {
            Some(Limited::Redirect {
                dst,
                src: Some(src),
            })
        });
        // Link-local outside fe80::/64 has no route: nothing is sent.
        check(v6("2001:db8::2", "fe80:1::1", 17, &udp), none);
        check(v6("2001:db8::2", "2001:db8::3", 17, &udp), none);
        // IPv4: a parameter problem for refused options costs a second; fragmentation needed
        // (too big with DF) is exempt.
        check(v4(b"\x07\x07\x03\0\0\0\0\x00", false, 0), |to, _| {
            Some(Limited::Error { to, cost: V4_ERROR })
        });
        check(v4(&[], true, ROUTER_MTU), none);
        check(v4(&[], false, 10), none);
    }

    #[test]
    fn an_unanswered_packet_is_dropped_silently() {
        let r = HostModel::Router;
        let ip = v4(b"\x07\x07\x03\0\0\0\0\x00", false, 0);
        let mut p = parse_ip(&ip).unwrap();
        let v = Verdict::bare(State::New);
        assert_eq!(r.route(&p), Route::Answered);
        assert_eq!(r.after_tracking(&p, v).state, State::Unmarked);
        p.unanswered = true;
        assert_eq!(r.route(&p), Route::Dropped);
        assert_eq!(r.after_tracking(&p, v), v);
        // IPv6: the link-local source's packet passes routing until its error is held back.
        let ip = v6(
            "fe80::1",
            "2001:db8::2",
            17,
            &[0, 53, 0x13, 0x88, 0, 8, 0, 0],
        );
        let mut p = parse_ip(&ip).unwrap();
        assert_eq!(r.route(&p), Route::Passes);
        p.unanswered = true;
        assert_eq!(r.route(&p), Route::Dropped);
    }
}
