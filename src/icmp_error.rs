//! The packet an ICMP error quotes: its tuple, read as the kernel reads it (often only the
//! first 8 bytes of its layer-4 header are there).

use ctrack_protocols::gre;

use crate::tuple::{Addr, Key, proto};

/// The tuple of the packet quoted in `inner` (the bytes after the 8-byte ICMP header), or
/// `None` when it cannot be read: too short, a non-first fragment, an extension chain that
/// runs out, or layer-4 ports that are not all there.
pub fn quoted_tuple<A: Addr>(inner: &[u8]) -> Option<Key<A>> {
    let (src, dst, proto_num, l4) = if A::V6 {
        if inner.len() < 40 {
            return None;
        }
        let (nh, off) = skip_v6_extensions(inner, inner[6], 40)?;
        (
            &inner[8..24],
            &inner[24..40],
            nh,
            inner.get(off..).unwrap_or(&[]),
        )
    } else {
        if inner.len() < 20 {
            return None;
        }
        if u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0 {
            return None;
        }
        let off = (inner[0] & 0x0f) as usize * 4;
        if off > inner.len() {
            return None;
        }
        (&inner[12..16], &inner[16..20], inner[9], &inner[off..])
    };
    let mut key = Key {
        src: A::from_bytes(src),
        dst: A::from_bytes(dst),
        sport: 0,
        dport: 0,
        zone: 0,
        proto: proto_num,
    };
    match proto_num {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            if l4.len() < 4 {
                return None;
            }
            key.sport = u16::from_be_bytes([l4[0], l4[1]]);
            key.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        proto::ICMP | proto::ICMPV6 => {
            if l4.len() < 8 {
                return None;
            }
            key.sport = u16::from_be_bytes([l4[4], l4[5]]);
            key.dport = (l4[0] as u16) << 8 | l4[1] as u16;
        }
        proto::GRE => match gre::key(l4) {
            gre::GreKey::Unsupported => return None,
            gre::GreKey::Unkeyed => {}
            gre::GreKey::CallId(k) => key.dport = k,
        },
        _ => {}
    }
    Some(key)
}

/// Walks IPv6 extension headers from `off` (with `nh` the first next-header value) the way
/// the kernel's `ipv6_skip_exthdr` does: reading only each header's first two bytes, stopping
/// at a non-first fragment (which the caller must refuse). Returns the final protocol and the
/// offset of its header.
pub fn skip_v6_extensions(pkt: &[u8], mut nh: u8, mut off: usize) -> Option<(u8, usize)> {
    loop {
        match nh {
            0 | 43 | 60 | 51 => {
                let h = pkt.get(off..off + 2)?;
                let len = if nh == 51 {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
                nh = h[0];
                off += len;
            }
            44 => {
                let h = pkt.get(off..off + 4)?;
                if u16::from_be_bytes([h[2], h[3]]) & !7 != 0 {
                    return None;
                }
                nh = h[0];
                off += 8;
            }
            59 => return None,
            _ => return Some((nh, off)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_quote_of_udp_with_8_bytes() {
        let mut q = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        q.extend_from_slice(&[0x04, 0x00, 0x00, 0x35, 0, 20, 0, 0]);
        let k = quoted_tuple::<[u8; 4]>(&q).unwrap();
        assert_eq!(
            (k.src, k.dst, k.sport, k.dport),
            ([10, 0, 0, 1], [10, 0, 0, 2], 1024, 53)
        );
        assert!(quoted_tuple::<[u8; 4]>(&q[..23]).is_none());
        let mut frag = q.clone();
        frag[7] = 1;
        assert!(quoted_tuple::<[u8; 4]>(&frag).is_none());
    }

    #[test]
    fn v6_quote_skips_extensions() {
        let mut q = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        q.extend_from_slice(&[0xaa; 16]);
        q.extend_from_slice(&[0xbb; 16]);
        q.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(&[0, 80, 1, 187]);
        let k = quoted_tuple::<[u8; 16]>(&q).unwrap();
        assert_eq!((k.proto, k.sport, k.dport), (6, 80, 443));
    }
}
