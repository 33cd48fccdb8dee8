//! The tuple by which a packet finds its connection, for an embedder's rules that act on the
//! packet's connection (see [`Conntrack::tuple_of`]).

use super::*;

impl Conntrack {
    /// The tuple by which `frame` finds its connection, in zone 0 (for another zone, see
    /// [`InZone::tuple_of`]): the packet's own for TCP, UDP, UDP-Lite, SCTP, ICMP and ICMPv6
    /// queries and answers, GRE (with the source key a PPTP call mapped) and other protocols
    /// (addresses only, as the kernel's generic tracking keys them); for an ICMP or ICMPv6
    /// error (or an IPv6 redirect quoting a packet), the tuple of the connection it is about,
    /// as the packet it quotes carries it. `None` for a frame that carries none: not IP, a
    /// fragment past the first (a datagram's connection is its first fragment's), a header
    /// too short for its ports, ICMP of the other family or of a type without a tuple.
    ///
    /// Either direction's tuple finds the connection in [`Conntrack::get`],
    /// [`Conntrack::remove`] and [`Conntrack::set_mark`], so a rule that acts on the
    /// connection of a packet just tracked (one whose verdict is
    /// [`Verdict::tracked`](crate::Verdict::tracked)) passes this. It only reads the frame (and
    /// for GRE the PPTP key map): it neither checks the packet as tracking does nor changes
    /// anything.
    ///
    /// ```
    /// use ctrack::{Conntrack, Config, L4, LinkType};
    /// # let mut cfg = Config::default();
    /// # cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    /// # let ct = Conntrack::new(cfg);
    /// // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53, and a port unreachable about it.
    /// let mut q = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    /// q.extend([0x03, 0xe8, 0, 53, 0, 8, 0, 0]);
    /// let mut err = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
    /// for p in [&mut q, &mut err] {
    ///     let c = !ctrack::packet::csum_fold(ctrack::packet::csum_add(0, &p[..20]));
    ///     p[10..12].copy_from_slice(&c.to_be_bytes());
    /// }
    /// err.extend([3, 3, 0, 0, 0, 0, 0, 0]);
    /// err.extend(&q);
    /// let ours = ct.tuple_of(&q, LinkType::Raw).unwrap();
    /// assert_eq!(ours.l4, L4::Ports { src: 1000, dst: 53 });
    /// // The error's connection is the datagram's.
    /// assert_eq!(ct.tuple_of(&err, LinkType::Raw), Some(ours));
    /// assert_eq!(ct.tuple_of(&[0u8; 10], LinkType::Ethernet), None);
    /// ```
    pub fn tuple_of(&self, frame: &[u8], link: LinkType) -> Option<Tuple> {
        self.tuple_in_zone(frame, link, 0)
    }

    /// [`Conntrack::tuple_of`] in zone `zone`.
    pub(crate) fn tuple_in_zone(&self, frame: &[u8], link: LinkType, zone: u16) -> Option<Tuple> {
        let ip = packet::ip_of_frame(frame, link)?;
        if ip.len() < 20 || !matches!(ip[0] >> 4, 4 | 6) {
            return None;
        }
        let p = IpPacket {
            zone,
            ..packet::parse_ip(ip).ok()?
        };
        if p.frag.is_some_and(|f| f.offset != 0) {
            return None;
        }
        if p.v6 {
            self.key_of(&self.v6, &p).map(|k| k.to_tuple())
        } else {
            self.key_of(&self.v4, &p).map(|k| k.to_tuple())
        }
    }

    fn key_of<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>) -> Option<Key<A>> {
        let l4 = p.l4();
        let mut key = addr_key::<A>(p);
        match p.proto {
            proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
                key.sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
                key.dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
            }
            proto::ICMP | proto::ICMPV6 => {
                if (p.proto == proto::ICMPV6) != A::V6 {
                    return None;
                }
                let (ty, code) = (*l4.first()?, *l4.get(1)?);
                if A::V6 && ty == icmp::V6_REDIRECT {
                    let hop_limit = p.data.get(7).copied().unwrap_or(0);
                    return match icmp_error::v6_redirect(l4, hop_limit, p.src()) {
                        Redirect::Quoted(q) => self.quoted_key(t, p, q),
                        Redirect::Refused | Redirect::NotError => None,
                    };
                }
                let class = if A::V6 {
                    icmp::classify_v6(ty)
                } else {
                    icmp::classify_v4(ty)
                };
                match class {
                    Class::Error => return self.quoted_key(t, p, l4.get(8..)?),
                    Class::Query { .. } | Class::Answer { .. } => {}
                    Class::Untracked | Class::Invalid => return None,
                }
                key.sport = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
                key.dport = u16::from(ty) << 8 | u16::from(code);
            }
            proto::GRE => match gre::key(l4) {
                gre::GreKey::Unsupported => return None,
                gre::GreKey::Unkeyed => {}
                gre::GreKey::CallId(k) => {
                    key.dport = k;
                    key.sport = self.gre_source_key(t, &key);
                }
            },
            _ => {}
        }
        Some(key)
    }

    /// The tuple of the connection an ICMP error about the packet quoted in `inner` is
    /// about, in the error's zone.
    fn quoted_key<A: Addr>(&self, t: &Table<A>, p: &IpPacket<'_>, inner: &[u8]) -> Option<Key<A>> {
        let (mut quoted, call) = icmp_error::quoted::<A>(inner)?;
        quoted.zone = p.zone;
        if call {
            quoted.sport = self.gre_source_key(t, &quoted);
        }
        Some(quoted)
    }
}
