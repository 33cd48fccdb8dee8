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

use crate::tuple::Addr;

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

fn router_v4(src: &[u8], dst: &[u8]) -> bool {
    let bcast = |a: &[u8]| a.iter().all(|&b| b == 255);
    if src[0] >= 224 && src[0] < 240 || bcast(src) {
        return false; // martian source
    }
    if bcast(dst) {
        return true; // limited broadcast: delivered locally
    }
    if src[0] == 0 {
        return false; // zero-network source towards a unicast destination
    }
    if (224..240).contains(&dst[0]) {
        return dst == [224, 0, 0, 1]; // only the all-hosts group is joined
    }
    true
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
        return true; // no route: the kernel's ICMPv6 error confirms the entry
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
            ("fe80::1", "ff02::1", true),
            ("fc00::1", "fc00::2", true),
        ];
        for (s, d, want) in six {
            assert_eq!(r.confirms(&v6(s), &v6(d)), want, "{s} -> {d}");
        }
    }
}
