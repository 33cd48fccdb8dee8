//! The packet an ICMP error quotes: its tuple, read as the kernel reads it (often only the
//! first 8 bytes of its layer-4 header are there).

use ctrack_protocols::gre;

use crate::tuple::{Addr, Key, proto};

/// The tuple of the packet quoted in `inner` (the bytes after the 8-byte ICMP header), or
/// `None` when it cannot be read: too short, a non-first fragment, an extension chain that
/// runs out, or layer-4 ports that are not all there.
///
/// The quote is read as the kernel reads it: as a header of the error's own family whatever
/// its version nibble says; an IPv4 header length is taken as given (even below 5 words, when
/// the "layer 4" bytes start inside the IP header), as long as it does not point past the
/// quote; only as much layer 4 as the tuple needs must be there (ports: 4 bytes, ICMP: 8).
pub fn quoted_tuple<A: Addr>(inner: &[u8]) -> Option<Key<A>> {
    quoted(inner).map(|(k, _)| k)
}

/// [`quoted_tuple`], and whether the quote is enhanced (PPTP) GRE keyed by a call ID, whose
/// source key the kernel looks up in the GRE key map as it does for such a packet itself.
pub(crate) fn quoted<A: Addr>(inner: &[u8]) -> Option<(Key<A>, bool)> {
    let (src, dst, proto_num, l4) = if A::V6 {
        let (src, dst) = (inner.get(8..24)?, inner.get(24..40)?);
        let (nh, off) = skip_v6_extensions(inner, *inner.get(6)?, 40)?;
        (src, dst, nh, inner.get(off..).unwrap_or(&[]))
    } else {
        let hdr = inner.get(..20)?;
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
            return None;
        }
        let off = (hdr[0] & 0x0f) as usize * 4;
        (&hdr[12..16], &hdr[16..20], hdr[9], inner.get(off..)?)
    };
    let mut key = Key {
        src: A::from_bytes(src),
        dst: A::from_bytes(dst),
        sport: 0,
        dport: 0,
        zone: 0,
        proto: proto_num,
    };
    let mut call = false;
    match proto_num {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            let &[s0, s1, d0, d1, ..] = l4 else {
                return None;
            };
            key.sport = u16::from_be_bytes([s0, s1]);
            key.dport = u16::from_be_bytes([d0, d1]);
        }
        proto::ICMP | proto::ICMPV6 => {
            let &[ty, code, _, _, id0, id1, _, _, ..] = l4 else {
                return None;
            };
            key.sport = u16::from_be_bytes([id0, id1]);
            key.dport = (ty as u16) << 8 | code as u16;
        }
        proto::GRE => match gre::key(l4) {
            gre::GreKey::Unsupported => return None,
            gre::GreKey::Unkeyed => {}
            gre::GreKey::CallId(k) => {
                key.dport = k;
                call = true;
            }
        },
        _ => {}
    }
    Some((key, call))
}

/// Length of an ICMPv6 redirect message before its options: the ICMPv6 header, the target
/// address and the destination address.
pub const V6_REDIRECT_LEN: usize = 40;

/// The neighbour-discovery option that carries the redirected packet.
const ND_OPT_REDIRECTED_HEADER: u8 = 4;

/// What conntrack makes of an ICMPv6 redirect (type 137).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirect<'a> {
    /// Not handled as an error (a code other than 0, or a first option that is not the
    /// redirected header): it is tracked like any other type without a tuple, so invalid,
    /// counted as `invalid`.
    NotError,
    /// Refused as a bad error (counted as `error`): shorter than the fixed part, not sent
    /// the way neighbour discovery requires (hop limit 255, link-local source), or no option.
    Refused,
    /// The quoted packet: everything after the redirected-header option's 8-byte header.
    Quoted(&'a [u8]),
}

/// Finds the packet an ICMPv6 redirect quotes. `l4` starts at the ICMPv6 header; `hop_limit`
/// and `src` come from the IPv6 header. Only the first option is looked at, and the quoted
/// packet runs to the end of the message whatever the option's length says.
pub fn v6_redirect<'a>(l4: &'a [u8], hop_limit: u8, src: &[u8]) -> Redirect<'a> {
    if l4.len() < V6_REDIRECT_LEN {
        return Redirect::Refused;
    }
    if l4.get(1) != Some(&0) {
        return Redirect::NotError;
    }
    let link_local = matches!(src, [0xfe, b, ..] if b & 0xc0 == 0x80);
    if hop_limit != 255 || !link_local {
        return Redirect::Refused;
    }
    match l4.get(V6_REDIRECT_LEN..V6_REDIRECT_LEN + 2) {
        Some(&[kind, len]) if len != 0 => {
            if kind == ND_OPT_REDIRECTED_HEADER {
                Redirect::Quoted(l4.get(V6_REDIRECT_LEN + 8..).unwrap_or(&[]))
            } else {
                Redirect::NotError
            }
        }
        _ => Redirect::Refused,
    }
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

    fn redirect(code: u8, opt: &[u8], quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![137, code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        m.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        m.extend_from_slice(opt);
        m.extend_from_slice(quoted);
        m
    }

    #[test]
    fn v6_redirect_quote_is_after_the_option_header() {
        let ll = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let global = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let opt = [4, 7, 0, 0, 0, 0, 0, 0];
        let m = redirect(0, &opt, b"quoted packet");
        assert_eq!(
            v6_redirect(&m, 255, &ll),
            Redirect::Quoted(b"quoted packet")
        );
        // The option's length does not bound the quote; a quote may be empty.
        let m = redirect(0, &[4, 1, 0, 0, 0, 0, 0, 0], b"longer than 8 bytes");
        assert_eq!(
            v6_redirect(&m, 255, &ll),
            Redirect::Quoted(b"longer than 8 bytes")
        );
        assert_eq!(v6_redirect(&m[..46], 255, &ll), Redirect::Quoted(b""));
        // Neighbour discovery's conditions.
        let m = redirect(0, &opt, b"q");
        assert_eq!(v6_redirect(&m, 64, &ll), Redirect::Refused);
        assert_eq!(v6_redirect(&m, 255, &global), Redirect::Refused);
        assert_eq!(v6_redirect(&m, 255, &[]), Redirect::Refused);
        // A nonzero code is checked before them and makes it a non-error.
        let m = redirect(1, &opt, b"q");
        assert_eq!(v6_redirect(&m, 64, &global), Redirect::NotError);
        // Short message, no option, zero-length option, another option first.
        assert_eq!(v6_redirect(&m[..39], 255, &ll), Redirect::Refused);
        let m = redirect(0, &[], b"");
        assert_eq!(v6_redirect(&m, 255, &ll), Redirect::Refused);
        assert_eq!(
            v6_redirect(&redirect(0, &[4], b""), 255, &ll),
            Redirect::Refused
        );
        let m = redirect(0, &[4, 0, 0, 0, 0, 0, 0, 0], b"q");
        assert_eq!(v6_redirect(&m, 255, &ll), Redirect::Refused);
        let m = redirect(0, &[2, 1, 0, 0, 0, 0, 0, 1], b"q");
        assert_eq!(v6_redirect(&m, 255, &ll), Redirect::NotError);
    }

    #[test]
    fn v4_quote_reads_ports_where_ihl_says() {
        // IHL 3: the ports are the inner source address (10.9.0.1 -> 2569, 1).
        let mut q = vec![
            0x43, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
        ];
        q.extend_from_slice(&[0xbf, 0x68, 0x03, 0xe8, 0, 9, 0, 0]);
        let k = quoted_tuple::<[u8; 4]>(&q).unwrap();
        assert_eq!((k.sport, k.dport), (2569, 1));
        // The version nibble is not looked at.
        q[0] = 0x65;
        let k = quoted_tuple::<[u8; 4]>(&q).unwrap();
        assert_eq!((k.sport, k.dport), (0xbf68, 1000));
        // IHL 15 past the end of the quote.
        q[0] = 0x4f;
        assert!(quoted_tuple::<[u8; 4]>(&q).is_none());
        // A first fragment (MF, offset 0) is fine.
        q[0] = 0x45;
        q[6] = 0x20;
        assert!(quoted_tuple::<[u8; 4]>(&q).is_some());
    }

    #[test]
    fn v6_quote_refuses_later_fragments_and_cut_chains() {
        let mut q = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        q.extend_from_slice(&[0xaa; 16]);
        q.extend_from_slice(&[0xbb; 16]);
        q.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]); // offset 0, more fragments
        q.extend_from_slice(&[0, 80, 1, 187]);
        assert_eq!(quoted_tuple::<[u8; 16]>(&q).map(|k| k.dport), Some(443));
        q[42] = 0x03; // offset 96
        assert!(quoted_tuple::<[u8; 16]>(&q).is_none());
        q[6] = 60; // destination options claiming 16 bytes, cut after 12
        q[41] = 1;
        assert!(quoted_tuple::<[u8; 16]>(&q[..52]).is_none());
        q[6] = 59; // no next header
        assert!(quoted_tuple::<[u8; 16]>(&q).is_none());
        assert!(quoted_tuple::<[u8; 16]>(&q[..39]).is_none());
    }

    #[test]
    fn quotes_of_other_protocols() {
        let ip = |proto: u8, l4: &[u8]| {
            let mut q = vec![
                0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            q.extend_from_slice(l4);
            q
        };
        // ICMP needs its whole 8-byte header; generic protocols need nothing.
        let k = quoted_tuple::<[u8; 4]>(&ip(1, &[8, 0, 0, 0, 0x12, 0x34, 0, 1])).unwrap();
        assert_eq!((k.sport, k.dport), (0x1234, 8 << 8));
        assert!(quoted_tuple::<[u8; 4]>(&ip(1, &[8, 0, 0, 0, 0x12, 0x34, 0])).is_none());
        assert!(quoted_tuple::<[u8; 4]>(&ip(253, &[])).is_some());
        // GRE: version 1 PPP keyed by call ID, other payloads refused, short ones unkeyed.
        let k = quoted_tuple::<[u8; 4]>(&ip(47, &[0x30, 0x81, 0x88, 0x0b, 0, 4, 0, 42])).unwrap();
        assert_eq!((k.sport, k.dport), (0, 42));
        assert!(quoted_tuple::<[u8; 4]>(&ip(47, &[0x30, 0x81, 8, 0, 0, 4, 0, 42])).is_none());
        let k = quoted_tuple::<[u8; 4]>(&ip(47, &[0x30, 0x81, 0x88, 0x0b, 0, 4])).unwrap();
        assert_eq!((k.sport, k.dport), (0, 0));
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
