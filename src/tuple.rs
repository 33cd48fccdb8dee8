//! Connection tuples: the compact per-family key the table stores, its inverse, and the
//! public [`Tuple`] view.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctrack_protocols::icmp;

/// Protocol numbers ctrack has trackers for.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

mod sealed {
    /// Only the two address widths are addresses: [`super::Key::same`] relies on their layout.
    pub trait Sealed {}
    impl Sealed for [u8; 4] {}
    impl Sealed for [u8; 16] {}
}

/// An IP address of one family, stored as plain bytes: `[u8; 4]` or `[u8; 16]` (sealed).
pub trait Addr:
    Copy + Eq + Ord + Hash + Default + Debug + Send + Sync + AsRef<[u8]> + sealed::Sealed + 'static
{
    /// True for IPv6.
    const V6: bool;
    /// Reads the address from exactly `Self`'s width of bytes.
    fn from_bytes(b: &[u8]) -> Self;
    /// An endpoint (address and port) as two words that order and hash it.
    fn endpoint(&self, port: u16) -> [u64; 2];
    /// The standard library's view.
    fn ip(&self) -> IpAddr;
}

impl Addr for [u8; 4] {
    const V6: bool = false;
    #[inline]
    fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0; 4];
        a.copy_from_slice(&b[..4]);
        a
    }
    #[inline]
    fn endpoint(&self, port: u16) -> [u64; 2] {
        [(u32::from_ne_bytes(*self) as u64) << 16 | port as u64, 0]
    }
    fn ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(*self))
    }
}

impl Addr for [u8; 16] {
    const V6: bool = true;
    #[inline]
    fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0; 16];
        a.copy_from_slice(&b[..16]);
        a
    }
    #[inline]
    fn endpoint(&self, port: u16) -> [u64; 2] {
        let (a, b) = self.split_at(8);
        [
            u64::from_ne_bytes(a.try_into().unwrap_or([0; 8])),
            u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) ^ (port as u64) << 48,
        ]
    }
    fn ip(&self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(*self))
    }
}

/// The original-direction tuple of a connection, as stored in the table.
///
/// `sport`/`dport` hold ports for TCP, UDP, UDP-Lite and SCTP; for ICMP `sport` is the
/// identifier and `dport` is `type << 8 | code`; for GRE they are the source and destination
/// keys; other protocols leave them zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Key<A> {
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// Source port, ICMP id or GRE source key.
    pub sport: u16,
    /// Destination port, ICMP type/code or GRE destination key.
    pub dport: u16,
    /// Conntrack zone.
    pub zone: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// A packet's tuple as the words [`Key::same`] reads from a stored one, for both directions
/// (see [`Key::probe`]): the word at `FIELDS - 8` (`tail`) and, for IPv4, the two addresses
/// (`addrs`); `rtail` and `raddrs` the same for the tuple with addresses and ports swapped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    tail: u64,
    rtail: u64,
    addrs: u64,
    raddrs: u64,
}

/// The word at `FIELDS - 8` of a tuple whose destination address ends in `last`, from its
/// other fields.
#[inline(always)]
fn tail_word(last: u8, sport: u16, dport: u16, zone: u16, proto: u8) -> u64 {
    let (l, s, d, z, p) = (
        u64::from(last),
        u64::from(sport),
        u64::from(dport),
        u64::from(zone),
        u64::from(proto),
    );
    if cfg!(target_endian = "little") {
        l | s << 8 | d << 24 | z << 40 | p << 56
    } else {
        l << 56 | s << 40 | d << 24 | z << 8 | p
    }
}

/// The first word of an IPv4 tuple from `src` to `dst` (each as its four bytes in memory).
#[inline(always)]
fn address_word(src: u32, dst: u32) -> u64 {
    let (a, b) = (u64::from(src), u64::from(dst));
    if cfg!(target_endian = "little") {
        a | b << 32
    } else {
        a << 32 | b
    }
}

impl<A: Addr> Key<A> {
    /// Bytes of the tuple before its one byte of trailing padding: the two addresses, then
    /// sport, dport and zone (two bytes each) and proto, as `repr(C)` lays them out for an
    /// address of bytes (alignment 1).
    const FIELDS: usize = 2 * std::mem::size_of::<A>() + 7;

    /// `self == other`, without a branch per field (the lookup's hot comparison): the bytes
    /// after the addresses in one word that overlaps the addresses' last byte (so that the
    /// padding byte is never read), and the addresses in one more word (IPv4) or as two
    /// 16-byte arrays (IPv6).
    #[inline(always)]
    pub fn same(&self, other: &Key<A>) -> bool {
        const { assert!(std::mem::size_of::<Key<A>>() == Key::<A>::FIELDS + 1) };
        const { assert!(std::mem::offset_of!(Key<A>, proto) == Key::<A>::FIELDS - 1) };
        let word = |k: &Key<A>, at: usize| {
            debug_assert!(at + 8 <= Self::FIELDS);
            // SAFETY: `at + 8 <= FIELDS` (the callers' offsets, all constants), and the first
            // `FIELDS` bytes of a `Key<A>` are its fields with no padding between them (the
            // assertions above; `Addr` is sealed to byte arrays, which have alignment 1 and no
            // padding of their own), so the read is in bounds and initialised; unaligned reads
            // are allowed by `read_unaligned`.
            unsafe {
                std::ptr::read_unaligned((k as *const Key<A>).cast::<u8>().add(at).cast::<u64>())
            }
        };
        let tail = word(self, Self::FIELDS - 8) == word(other, Self::FIELDS - 8);
        if A::V6 {
            // Sixteen-byte addresses compare in vector registers.
            (self.src == other.src) & (self.dst == other.dst) & tail
        } else {
            (word(self, 0) == word(other, 0)) & tail
        }
    }

    /// This packet tuple's [`Probe`], for [`Key::same_probe`].
    #[inline(always)]
    pub(crate) fn probe(&self) -> Probe {
        // Each field read on its own, at its own width: a packet's tuple has usually just
        // been stored field by field, and a load that spans several of those stores waits
        // until they have all reached the cache (store forwarding fails), where a load of
        // exactly one store's bytes gets them at once. Volatile, so that the compiler cannot
        // merge the reads back into the wide loads this avoids.
        // SAFETY: each pointer comes from a reference to a field of `self`, so it is valid,
        // aligned and initialised for a read of its type.
        let (sport, dport, zone, proto) = unsafe {
            (
                std::ptr::read_volatile(&self.sport),
                std::ptr::read_volatile(&self.dport),
                std::ptr::read_volatile(&self.zone),
                std::ptr::read_volatile(&self.proto),
            )
        };
        // An IPv6 probe needs only each address's last byte (its addresses are compared as
        // they are, see `same_probe`): reading all 16 bytes took 16 loads per address.
        let (src_last, dst_last, src_first, dst_first) = if A::V6 {
            let n = std::mem::size_of::<A>();
            let (src, dst) = (self.src.as_ref().as_ptr(), self.dst.as_ref().as_ptr());
            // SAFETY: `src` and `dst` come from references to `self`'s 16-byte addresses, so
            // their byte `n - 1` is valid and initialised for a read (alignment 1).
            unsafe {
                (
                    std::ptr::read_volatile(src.add(n - 1)),
                    std::ptr::read_volatile(dst.add(n - 1)),
                    0,
                    0,
                )
            }
        } else {
            // SAFETY: references to `self`'s address fields: valid, aligned and initialised
            // for a read of their type.
            let (s, d) = unsafe {
                (
                    std::ptr::read_volatile(&self.src),
                    std::ptr::read_volatile(&self.dst),
                )
            };
            let first = |a: &A| {
                let b = a.as_ref();
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
            };
            (s.as_ref()[3], d.as_ref()[3], first(&s), first(&d))
        };
        Probe {
            tail: tail_word(dst_last, sport, dport, zone, proto),
            rtail: tail_word(src_last, dport, sport, zone, proto),
            addrs: address_word(src_first, dst_first),
            raddrs: address_word(dst_first, src_first),
        }
    }

    /// `self` equals the tuple `p` was built from (`reverse`: that tuple with its addresses
    /// and ports swapped; never for ICMP, whose inverse also changes the type), `other`
    /// being that tuple: [`Key::same`] without reading `other` as words.
    #[inline(always)]
    pub(crate) fn same_probe(&self, other: &Key<A>, p: &Probe, reverse: bool) -> bool {
        let word = |at: usize| {
            debug_assert!(at + 8 <= Self::FIELDS);
            // SAFETY: as in `same`: `at + 8 <= FIELDS`, the first `FIELDS` bytes of a tuple
            // being its fields with no padding between them.
            unsafe {
                std::ptr::read_unaligned((self as *const Key<A>).cast::<u8>().add(at).cast::<u64>())
            }
        };
        let (tail, addrs) = if reverse {
            (p.rtail, p.raddrs)
        } else {
            (p.tail, p.addrs)
        };
        let tail = word(Self::FIELDS - 8) == tail;
        if A::V6 {
            let (s, d) = if reverse {
                (&other.dst, &other.src)
            } else {
                (&other.src, &other.dst)
            };
            (self.src == *s) & (self.dst == *d) & tail
        } else {
            (word(0) == addrs) & tail
        }
    }

    /// True when the tuple is its own inverse: the same address and port at both ends (as a
    /// LAND attack sends, or a resolver on a loopback talking to itself from port 53), in any
    /// protocol but ICMP, whose inverse changes the type. The kernel files such an entry under
    /// the same tuple twice, the reply direction first in the chain, so every packet after the
    /// first is found in the reply direction.
    #[inline(always)]
    pub fn is_own_inverse(&self) -> bool {
        // One compare on the hot path: ports differ in nearly every packet.
        self.sport == self.dport && self.same_ends()
    }

    /// [`Key::is_own_inverse`] once the ports are equal.
    #[cold]
    #[inline(never)]
    fn same_ends(&self) -> bool {
        self.src == self.dst && !self.is_icmp()
    }

    /// True for the ICMP family of this address width.
    #[inline]
    pub fn is_icmp(&self) -> bool {
        self.proto == if A::V6 { proto::ICMPV6 } else { proto::ICMP }
    }

    /// The tuple of the other direction, or `None` when it has none (ICMP types that are not
    /// part of a query/answer pair).
    #[inline]
    pub fn inverse(&self) -> Option<Key<A>> {
        if self.is_icmp() {
            let ty = icmp::inverse(A::V6, (self.dport >> 8) as u8)?;
            Some(Key {
                src: self.dst,
                dst: self.src,
                sport: self.sport,
                dport: (ty as u16) << 8 | (self.dport & 0xff),
                zone: self.zone,
                proto: self.proto,
            })
        } else {
            Some(self.swapped())
        }
    }

    /// The inverse of a tuple whose ports swap with its addresses (every protocol but ICMP and
    /// ICMPv6, whose inverse also changes the type).
    #[inline(always)]
    pub(crate) fn swapped(&self) -> Key<A> {
        Key {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            zone: self.zone,
            proto: self.proto,
        }
    }

    /// A hash that is the same for a tuple and its inverse, so one index slot serves both
    /// directions: the two endpoints are put in a canonical order before hashing. IPv4 hashes
    /// three words, IPv6 five.
    #[inline]
    pub fn symmetric_hash<S: BuildHasher>(&self, state: &S) -> u64 {
        let (mut sp, mut dp) = (self.sport, self.dport);
        let mut extra = (self.proto as u64) << 16 | self.zone as u64;
        if self.is_icmp() {
            // Both ends carry the identifier; query and answer types fold onto one.
            let ty = (self.dport >> 8) as u8;
            let q = match icmp::inverse(A::V6, ty) {
                Some(other) => ty.min(other),
                None => ty,
            };
            extra |= ((q as u64) << 8 | (self.dport & 0xff) as u64) << 32;
            sp = self.sport;
            dp = self.sport;
        }
        let a = self.src.endpoint(sp);
        let b = self.dst.endpoint(dp);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = state.build_hasher();
        h.write_u64(lo[0]);
        h.write_u64(hi[0]);
        if A::V6 {
            h.write_u64(lo[1]);
            h.write_u64(hi[1]);
        }
        h.write_u64(extra);
        h.finish()
    }

    /// The key whose public view is `t` ([`Key::to_tuple`] read backwards); `None` when
    /// `t`'s addresses are not of this family, or its layer-4 part is not the kind its
    /// protocol has (no entry can have such a tuple).
    pub fn from_tuple(t: &Tuple) -> Option<Key<A>> {
        let addr = |ip: IpAddr| match ip {
            IpAddr::V4(a) if !A::V6 => Some(A::from_bytes(&a.octets())),
            IpAddr::V6(a) if A::V6 => Some(A::from_bytes(&a.octets())),
            _ => None,
        };
        let (sport, dport) = match t.l4 {
            L4::Ports { src, dst } => (src, dst),
            L4::Icmp { id, kind, code } => (id, u16::from(kind) << 8 | u16::from(code)),
            L4::Gre { src_key, dst_key } => (src_key, dst_key),
            L4::None => (0, 0),
        };
        let k = Key {
            src: addr(t.src)?,
            dst: addr(t.dst)?,
            sport,
            dport,
            zone: t.zone,
            proto: t.proto,
        };
        (k.to_tuple() == *t).then_some(k)
    }

    /// The public view of this tuple.
    pub fn to_tuple(&self) -> Tuple {
        let l4 = match self.proto {
            p if self.is_icmp() => {
                let _ = p;
                L4::Icmp {
                    id: self.sport,
                    kind: (self.dport >> 8) as u8,
                    code: self.dport as u8,
                }
            }
            proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => L4::Ports {
                src: self.sport,
                dst: self.dport,
            },
            proto::GRE => L4::Gre {
                src_key: self.sport,
                dst_key: self.dport,
            },
            _ => L4::None,
        };
        Tuple {
            src: self.src.ip(),
            dst: self.dst.ip(),
            proto: self.proto,
            zone: self.zone,
            l4,
        }
    }
}

/// Layer-4 part of a [`Tuple`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP, UDP, UDP-Lite, SCTP.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP or ICMPv6.
    Icmp {
        /// Identifier.
        id: u16,
        /// Message type.
        kind: u8,
        /// Message code.
        code: u8,
    },
    /// GRE keys (PPTP call IDs).
    Gre {
        /// Source key.
        src_key: u16,
        /// Destination key.
        dst_key: u16,
    },
    /// Protocols tracked by address only.
    None,
}

/// A connection tuple in one direction, family-independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Conntrack zone.
    pub zone: u16,
    /// Ports, ICMP id/type/code or GRE keys.
    pub l4: L4,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 10.0.0.1:`sport` -> 10.0.0.2:`dport`.
    fn v4_key(sport: u16, dport: u16, zone: u16, proto: u8) -> Key<[u8; 4]> {
        Key {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            sport,
            dport,
            zone,
            proto,
        }
    }

    #[test]
    fn inverse_and_symmetry() {
        let k = v4_key(1000, 53, 0, proto::UDP);
        let r = k.inverse().unwrap();
        assert_eq!((r.src, r.sport, r.dport), ([10, 0, 0, 2], 53, 1000));
        let st = foldhash::fast::FixedState::with_seed(3);
        assert_eq!(k.symmetric_hash(&st), r.symmetric_hash(&st));
        assert_eq!(r.inverse().unwrap(), k);
    }

    proptest! {
        /// A tuple is its own inverse exactly when inverting it gives it back.
        #[test]
        fn own_inverse_is_exactly_a_fixed_point(
            same_addr in any::<bool>(),
            same_port in any::<bool>(),
            p in prop::sample::select(vec![proto::TCP, proto::UDP, proto::ICMP, 47, 99]),
            sport in any::<u16>(),
            dport in any::<u16>(),
        ) {
            let mut k = v4_key(sport, if same_port { sport } else { dport }, 0, p);
            if same_addr {
                k.dst = k.src;
            }
            let fixed = k.inverse().is_some_and(|i| i == k);
            prop_assert_eq!(k.is_own_inverse(), fixed, "{:?}", k);
        }
    }

    #[test]
    fn icmp_inverse() {
        let k = Key::<[u8; 16]> {
            src: [1; 16],
            dst: [2; 16],
            sport: 7,
            dport: 128 << 8,
            zone: 0,
            proto: proto::ICMPV6,
        };
        let r = k.inverse().unwrap();
        assert_eq!((r.sport, r.dport), (7, 129 << 8));
        let st = foldhash::fast::FixedState::with_seed(3);
        assert_eq!(k.symmetric_hash(&st), r.symmetric_hash(&st));
        let bad = Key {
            dport: 135 << 8,
            ..k
        };
        assert!(bad.inverse().is_none());
    }

    #[test]
    fn same_is_equality() {
        let k = v4_key(1234, 80, 3, proto::TCP);
        let variants = [
            k,
            Key {
                src: [10, 0, 0, 9],
                ..k
            },
            Key {
                dst: [10, 0, 0, 9],
                ..k
            },
            Key { sport: 1235, ..k },
            Key { dport: 81, ..k },
            Key { zone: 4, ..k },
            Key {
                proto: proto::UDP,
                ..k
            },
            Key {
                sport: 80,
                dport: 1234,
                ..k
            },
            k.inverse().unwrap(),
            Key::default(),
        ];
        for a in &variants {
            for b in &variants {
                assert_eq!(a.same(b), a == b, "{a:?} {b:?}");
                let p = b.probe();
                assert_eq!(a.same_probe(b, &p, false), a == b, "{a:?} {b:?}");
                assert_eq!(a.same_probe(b, &p, true), *a == b.swapped(), "{a:?} {b:?}");
            }
        }
    }

    /// [`Key::same_probe`] is [`Key::same`] against the packet's tuple or its swap, whatever
    /// the two tuples (random ones, and ones a byte apart from each other).
    fn probe_agrees<A: Addr>(a: Key<A>, b: Key<A>) {
        let p = b.probe();
        assert_eq!(a.same_probe(&b, &p, false), a.same(&b), "{a:?} {b:?}");
        assert_eq!(
            a.same_probe(&b, &p, true),
            a.same(&b.swapped()),
            "{a:?} {b:?}"
        );
    }

    fn any_key<A: Addr + 'static>(
        addr: impl Strategy<Value = A> + Clone,
    ) -> impl Strategy<Value = Key<A>> {
        (
            addr.clone(),
            addr,
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(src, dst, sport, dport, zone, proto)| Key {
                src,
                dst,
                sport,
                dport,
                zone,
                proto,
            })
    }

    proptest! {
        #[test]
        fn probe_matches_same_v4(a in any_key(any::<[u8; 4]>()), b in any_key(any::<[u8; 4]>()), pick in 0usize..4) {
            // Half of the cases compare a tuple with itself or its swap, which random pairs
            // almost never are.
            let b = [b, a, a.swapped(), b][pick];
            probe_agrees(a, b);
        }

        #[test]
        fn probe_matches_same_v6(a in any_key(any::<[u8; 16]>()), b in any_key(any::<[u8; 16]>()), pick in 0usize..4) {
            let b = [b, a, a.swapped(), b][pick];
            probe_agrees(a, b);
        }
    }

    /// Every byte of every field counts, in both widths: one byte changed anywhere (each
    /// address byte, each port, zone and protocol byte) makes two keys differ.
    #[test]
    fn same_sees_every_byte() {
        fn check<A: Addr>(k: Key<A>, with: impl Fn(&mut Key<A>, usize)) {
            assert!(k.same(&k));
            for at in 0..Key::<A>::FIELDS {
                let mut o = k;
                with(&mut o, at);
                assert_ne!(o, k, "byte {at}");
                assert!(!k.same(&o) && !o.same(&k), "byte {at}: {k:?} {o:?}");
                assert!(
                    !k.same_probe(&o, &o.probe(), false),
                    "byte {at}: {k:?} {o:?}"
                );
                let (ks, os) = (k.swapped(), o.swapped());
                assert!(
                    !ks.same_probe(&o, &o.probe(), true),
                    "byte {at}: {k:?} {o:?}"
                );
                assert!(
                    ks.same_probe(&k, &k.probe(), true) && !os.same_probe(&k, &k.probe(), true)
                );
            }
        }
        fn flip<A: Addr + AsMut<[u8]>>(k: &mut Key<A>, at: usize) {
            let n = std::mem::size_of::<A>();
            let port = |p: &mut u16, b: usize| *p ^= 0x5a << (8 * b);
            match at {
                _ if at < n => k.src.as_mut()[at] ^= 0x5a,
                _ if at < 2 * n => k.dst.as_mut()[at - n] ^= 0x5a,
                _ => match at - 2 * n {
                    b @ 0..=1 => port(&mut k.sport, b),
                    b @ 2..=3 => port(&mut k.dport, b - 2),
                    b @ 4..=5 => port(&mut k.zone, b - 4),
                    _ => k.proto ^= 0x5a,
                },
            }
        }
        check(v4_key(1234, 80, 3, proto::TCP), flip);
        let k6 = Key {
            src: [0x20, 1, 0xd, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            dst: [0x20, 1, 0xd, 0xb8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1],
            sport: 40000,
            dport: 443,
            zone: 7,
            proto: proto::UDP,
        };
        check(k6, flip);
    }
}
