//! Frames to IP packets: link-layer decoding, IPv4/IPv6 header checks, extension headers.
//!
//! Zero-copy: every result borrows the caller's frame. The rules follow what reaches Linux
//! conntrack through the receive path: a frame is IP when its link layer says so and the
//! version nibble is 4 or 6 (the nibble, not the link layer, picks the family); the IP layer's
//! own checks (header length, total length, IPv4 header checksum) come before tracking.

pub use crate::checksum::{csum_add, csum_add_u32, csum_fold, csum_ok};

/// How frames are framed: the link types ctrack reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with any number of 802.1Q / 802.1ad tags (pcap link type 1).
    Ethernet,
    /// Raw IP, family from the version nibble (link types 101, 12, 14, 228, 229).
    Raw,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order (type 0).
    Loopback,
    /// Linux cooked capture v1 (type 113).
    LinuxSll,
    /// Linux cooked capture v2 (type 276).
    LinuxSll2,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type number to a [`LinkType`].
    ///
    /// ```
    /// use ctrack::LinkType;
    /// assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
    /// assert_eq!(LinkType::from_dlt(229), Some(LinkType::Raw));
    /// assert_eq!(LinkType::from_dlt(105), None);
    /// ```
    pub fn from_dlt(dlt: u32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            101 | 12 | 14 | 228 | 229 => LinkType::Raw,
            0 => LinkType::Loopback,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const ETH_P_8021Q: u16 = 0x8100;
pub(crate) const ETH_P_8021AD: u16 = 0x88a8;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The ethertype that a BSD loopback frame's 4-byte address family (in the byte order of the
/// machine that captured it) stands for: IPv4 for family 2, IPv6 for 24, 28 or 30 (each BSD's
/// own number); `None` for any other family or a frame too short to hold one.
#[inline]
pub fn loopback_ethertype(frame: &[u8]) -> Option<u16> {
    let h: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    let fam = if h[0] == 0 && h[1] == 0 {
        u32::from_be_bytes(h)
    } else {
        u32::from_le_bytes(h)
    };
    match fam {
        2 => Some(ETH_P_IP),
        24 | 28 | 30 => Some(ETH_P_IPV6),
        _ => None,
    }
}

/// Returns the IP packet a frame carries, or `None` when the frame is not IP (`skipped`).
///
/// The IP packet is trimmed to its own length field (dropping link-layer padding); a length
/// field longer than the frame is left for [`parse_ip`] to refuse.
#[inline]
pub fn ip_of_frame(frame: &[u8], link: LinkType) -> Option<&[u8]> {
    let ip = match link {
        LinkType::Ethernet => {
            let mut et = be16(frame, 12)?;
            let mut off = 14;
            while et == ETH_P_8021Q || et == ETH_P_8021AD {
                et = be16(frame, off + 2)?;
                off += 4;
            }
            if et != ETH_P_IP && et != ETH_P_IPV6 {
                return None;
            }
            frame.get(off..)?
        }
        LinkType::Raw => frame,
        LinkType::Loopback => {
            loopback_ethertype(frame)?;
            frame.get(4..)?
        }
        LinkType::LinuxSll => {
            let et = be16(frame, 14)?;
            if et != ETH_P_IP && et != ETH_P_IPV6 {
                return None;
            }
            frame.get(16..)?
        }
        LinkType::LinuxSll2 => {
            let et = be16(frame, 0)?;
            if et != ETH_P_IP && et != ETH_P_IPV6 {
                return None;
            }
            frame.get(20..)?
        }
    };
    if ip.len() < 20 || !matches!(ip[0] >> 4, 4 | 6) {
        return None;
    }
    let len = if ip[0] >> 4 == 4 {
        be16(ip, 2)? as usize
    } else {
        40 + be16(ip, 4)? as usize
    };
    // A length field under the minimum header is left for parse_ip to refuse.
    Some(if (20..ip.len()).contains(&len) {
        &ip[..len]
    } else {
        ip
    })
}

/// Why the IP layer refused a packet before tracking (the kernel drops these in its receive
/// path; ctrack reports them as `invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    /// IPv4 header length under 20 bytes or past the packet.
    BadHeaderLength,
    /// The total/payload length field disagrees with the bytes present.
    BadTotalLength,
    /// IPv4 header checksum mismatch.
    BadChecksum,
    /// An extension header runs past the end of the packet.
    TruncatedExtension,
    /// IPv6 "no next header": nothing to track.
    NoNextHeader,
    /// A multicast source address, or an address the receive path refuses.
    BadAddress,
    /// An IPv6 hop-by-hop options header the receive path refuses (it drops the packet before
    /// conntrack sees it): see [`hop_by_hop_ok`].
    BadHopByHop,
}

/// Fragment facts of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragInfo {
    /// Offset of this fragment's data in bytes.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
    /// Fragment identification (IPv4's 16 bits widened, or IPv6's 32).
    pub id: u32,
    /// For IPv6: offset of the fragment header inside the packet.
    pub hdr_off: u16,
    /// For IPv6: the header that precedes the fragment header's next-header byte.
    pub prev_nh_off: u16,
}

/// A checked IP packet, ready for tuple extraction.
#[derive(Clone, Copy, Debug)]
pub struct IpPacket<'a> {
    /// True for IPv6.
    pub v6: bool,
    /// The whole IP packet (header, extensions and payload), trimmed to its length field.
    pub data: &'a [u8],
    /// The layer-4 protocol number after extension headers.
    pub proto: u8,
    /// Where the layer-4 header starts in `data`.
    pub l4_off: usize,
    /// Set when the packet is a fragment that needs reassembly.
    pub frag: Option<FragInfo>,
    /// True for a datagram put together from fragments (a router sends it on as fragments of
    /// the sizes it came in, whatever its own MTU).
    pub reassembled: bool,
    /// True when the host would answer the packet with an ICMP error of its own, but its rate
    /// limit for the error's destination holds the error back (see [`crate::ratelimit`]): the
    /// packet is then dropped silently.
    pub unanswered: bool,
    /// The conntrack zone the packet is tracked in (0 unless the caller gives one, see
    /// [`crate::Conntrack::in_zone`]): part of its tuple, and of its reassembly queue's key.
    pub zone: u16,
}

impl<'a> IpPacket<'a> {
    /// Source address bytes (4 or 16).
    #[inline(always)]
    pub fn src(&self) -> &'a [u8] {
        if self.v6 {
            &self.data[8..24]
        } else {
            &self.data[12..16]
        }
    }

    /// Destination address bytes (4 or 16).
    #[inline(always)]
    pub fn dst(&self) -> &'a [u8] {
        if self.v6 {
            &self.data[24..40]
        } else {
            &self.data[16..20]
        }
    }

    /// The layer-4 bytes: header and payload.
    #[inline(always)]
    pub fn l4(&self) -> &'a [u8] {
        &self.data[self.l4_off..]
    }
}

/// True when `covered` (the L4 bytes under the checksum) sums correctly with the pseudo-header
/// of `ip` for protocol `proto` and length `l4_len`.
#[inline(always)]
pub fn l4_checksum_ok(ip: &IpPacket<'_>, proto: u8, l4_len: usize, covered: &[u8]) -> bool {
    PendingSum::new(ip, proto, l4_len, covered).ok()
}

/// A layer-4 checksum still to be verified: the pseudo-header's running sum and the bytes
/// under the checksum. Lets a caller store what it parsed before the (out-of-line) sum runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingSum<'a> {
    start: u64,
    covered: &'a [u8],
}

impl<'a> PendingSum<'a> {
    /// The checksum of `covered` under the pseudo-header of `ip` for `proto` and `l4_len`.
    #[inline(always)]
    pub(crate) fn new(ip: &IpPacket<'_>, proto: u8, l4_len: usize, covered: &'a [u8]) -> Self {
        // Source and destination lie side by side in both headers: one pass covers both.
        let addrs = if ip.v6 {
            &ip.data[8..40]
        } else {
            &ip.data[12..20]
        };
        PendingSum {
            start: csum_add_u32(csum_add(0, addrs), proto as u32 + l4_len as u32),
            covered,
        }
    }

    /// The checksum of `covered` under a pseudo-header: `addrs` is the IP header's source and
    /// destination as they lie side by side, `l4_len` the layer-4 length.
    #[inline(always)]
    pub(crate) fn pseudo(addrs: &[u8], proto: u8, l4_len: usize, covered: &'a [u8]) -> Self {
        PendingSum {
            start: csum_add_u32(csum_add(0, addrs), proto as u32 + l4_len as u32),
            covered,
        }
    }

    /// True when the checksum is right.
    #[inline(always)]
    pub(crate) fn ok(self) -> bool {
        sum_is_zero(self.start, self.covered)
    }
}

/// True when `covered` added to the running sum `s` folds to zero (all ones): out of line,
/// and with nothing but numbers and a slice for arguments, so that callers keep their parsed
/// headers in registers.
#[inline(never)]
fn sum_is_zero(s: u64, covered: &[u8]) -> bool {
    crate::checksum::adds_up(s, covered)
}

/// True when `data` sums to zero (ICMPv4: no pseudo-header).
pub fn plain_checksum_ok(data: &[u8]) -> bool {
    csum_ok(csum_add(0, data))
}

/// Parses and checks the IP header of `ip` (as returned by [`ip_of_frame`]).
#[inline(always)]
pub fn parse_ip(ip: &[u8]) -> Result<IpPacket<'_>, IpError> {
    if ip[0] >> 4 == 4 {
        parse_v4(ip)
    } else {
        parse_v6(ip)
    }
}

/// [`parse_ip`] for a packet whose version nibble is 4.
#[inline(always)]
pub(crate) fn parse_v4(ip: &[u8]) -> Result<IpPacket<'_>, IpError> {
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ihl < 20 || ihl > ip.len() {
        return Err(IpError::BadHeaderLength);
    }
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if tot > ip.len() || tot < ihl {
        return Err(IpError::BadTotalLength);
    }
    let data = &ip[..tot];
    // The common header without options is summed with its length known: three loads.
    let head = match data.first_chunk::<20>() {
        Some(h) if ihl == 20 => csum_add(0, h),
        _ => csum_add(0, &data[..ihl]),
    };
    if !csum_ok(head) {
        return Err(IpError::BadChecksum);
    }
    let fo = u16::from_be_bytes([data[6], data[7]]);
    let offset = (fo & 0x1fff) as u32 * 8;
    let more = fo & 0x2000 != 0;
    let frag = (offset != 0 || more).then(|| FragInfo {
        offset,
        more,
        id: u16::from_be_bytes([data[4], data[5]]) as u32,
        hdr_off: 0,
        prev_nh_off: 0,
    });
    Ok(IpPacket {
        v6: false,
        data,
        proto: data[9],
        l4_off: ihl,
        frag,
        reassembled: false,
        unanswered: false,
        zone: 0,
    })
}

const NH_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AUTH: u8 = 51;
const NH_NONE: u8 = 59;
const NH_DEST: u8 = 60;

/// Whether the addresses of an IPv6 fixed header are ones the receive path takes without a
/// second look: not a multicast or loopback source, not a loopback destination, not a
/// multicast destination of interface-local or reserved scope.
#[inline(always)]
pub(crate) fn v6_addrs_plain(fixed: &[u8; 40]) -> bool {
    // `::1`, compared as two words as they lie in memory (no byte swapping).
    let loopback = |o: usize| {
        let half = |o: usize| u64::from_ne_bytes(fixed[o..o + 8].try_into().unwrap_or([0; 8]));
        half(o) | (half(o + 8) ^ u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1])) == 0
    };
    fixed[8] != 0xff && !loopback(8) && !loopback(24) && (fixed[24] != 0xff || fixed[25] & 0x0f > 1)
}

/// [`parse_ip`] for a packet whose version nibble is 6. A packet whose layer-4 header follows
/// the fixed header directly, as most do, is parsed here; extension headers and refusals out
/// of line.
#[inline(always)]
pub(crate) fn parse_v6(ip: &[u8]) -> Result<IpPacket<'_>, IpError> {
    if let Some(fixed) = ip.first_chunk::<40>() {
        let plen = u16::from_be_bytes([fixed[4], fixed[5]]) as usize;
        let nh = fixed[6];
        // What `parse_v6_general` refuses or walks: anything but a plain layer-4 header right
        // after the fixed one, or addresses it looks at again.
        if 40 + plen <= ip.len()
            && !matches!(
                nh,
                NH_HOP | NH_ROUTING | NH_DEST | NH_AUTH | NH_FRAGMENT | NH_NONE
            )
            && v6_addrs_plain(fixed)
        {
            return Ok(IpPacket {
                v6: true,
                data: &ip[..40 + plen],
                proto: nh,
                l4_off: 40,
                frag: None,
                reassembled: false,
                unanswered: false,
                zone: 0,
            });
        }
    }
    parse_v6_general(ip)
}

/// [`parse_v6`] for every packet: extension headers walked, bad ones refused.
#[inline(never)]
fn parse_v6_general(ip: &[u8]) -> Result<IpPacket<'_>, IpError> {
    if ip.len() < 40 {
        return Err(IpError::BadTotalLength);
    }
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    if 40 + plen > ip.len() {
        return Err(IpError::BadTotalLength);
    }
    let data = &ip[..40 + plen];
    // The receive path drops multicast sources, loopback addresses arriving on a wire, and
    // multicast destinations of interface-local or reserved scope.
    let src = &data[8..24];
    let dst = &data[24..40];
    let loopback = |a: &[u8]| a[..15].iter().all(|&b| b == 0) && a[15] == 1;
    if src[0] == 0xff || loopback(src) || loopback(dst) || (dst[0] == 0xff && dst[1] & 0x0f <= 1) {
        return Err(IpError::BadAddress);
    }
    let mut nh = data[6];
    if nh == NH_HOP {
        // Hop-by-hop options are parsed on receipt, before the PREROUTING hook.
        let len = data.get(41).map_or(8, |&l| (l as usize + 1) * 8);
        match data.get(40..40 + len) {
            Some(h) if hop_by_hop_ok(h) => {}
            Some(_) => return Err(IpError::BadHopByHop),
            None => return Err(IpError::TruncatedExtension),
        }
    }
    let mut off = 40usize;
    let mut prev_nh_off = 6usize;
    let mut frag = None;
    loop {
        match nh {
            NH_HOP | NH_ROUTING | NH_DEST | NH_AUTH => {
                let h = data.get(off..off + 2).ok_or(IpError::TruncatedExtension)?;
                let len = if nh == NH_AUTH {
                    (h[1] as usize + 2) * 4
                } else {
                    (h[1] as usize + 1) * 8
                };
                // Linux reads only these two bytes: a header running past the end leaves no
                // upper-layer header, which only protocols that read none can track.
                prev_nh_off = off;
                nh = h[0];
                off += len;
            }
            NH_FRAGMENT => {
                let Some(h) = data.get(off..off + 8) else {
                    // A fragment header the payload length cuts short is no fragment to
                    // reassembly, which lets it through as it is; the tracker then reads
                    // its next header and offset (its first four bytes) as of a first
                    // fragment's, and finds the upper-layer header past the end.
                    let h = data.get(off..off + 4).ok_or(IpError::TruncatedExtension)?;
                    if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                        return Err(IpError::TruncatedExtension);
                    }
                    prev_nh_off = off;
                    nh = h[0];
                    off += 8;
                    continue;
                };
                let fo = u16::from_be_bytes([h[2], h[3]]);
                let offset = (fo & 0xfff8) as u32;
                let more = fo & 1 != 0;
                // Even an atomic fragment (offset 0, no more) goes through reassembly, which
                // takes its fragment header off; only the first fragment header counts.
                if frag.is_none() {
                    frag = Some(FragInfo {
                        offset,
                        more,
                        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        hdr_off: off as u16,
                        prev_nh_off: prev_nh_off as u16,
                    });
                }
                prev_nh_off = off;
                nh = h[0];
                off += 8;
                if offset != 0 {
                    break;
                }
            }
            NH_NONE => {
                if frag.is_some() {
                    break;
                }
                return Err(IpError::NoNextHeader);
            }
            _ => break,
        }
    }
    Ok(IpPacket {
        v6: true,
        data,
        proto: nh,
        l4_off: off.min(data.len()),
        frag,
        reassembled: false,
        unanswered: false,
        zone: 0,
    })
}

/// Most options (other than padding) Linux accepts in one hop-by-hop header
/// (`net.ipv6.max_hbh_opts_number`).
const MAX_HBH_OPTS: usize = 8;

/// True when Linux's receive path accepts an IPv6 hop-by-hop options header `h` (the whole
/// header, `(h[1] + 1) * 8` bytes) of a packet it forwards, as `ip6_parse_tlv` decides:
/// options fill the header exactly; runs of padding (Pad1, PadN) are at most 7 bytes and PadN
/// carries only zeroes; at most eight other options; a router alert is 2 bytes
/// long; jumbo payload and CALIPSO options are refused (no jumbogram fits the checks here, no
/// CALIPSO DOI is configured); IOAM is ignored (disabled) unless misaligned; an unknown option
/// is skipped only when its two high bits are 00.
///
/// ```
/// use ctrack::packet::hop_by_hop_ok;
/// assert!(hop_by_hop_ok(&[17, 0, 5, 2, 0, 0, 1, 0])); // router alert + PadN(0)
/// assert!(!hop_by_hop_ok(&[17, 0, 0x9e, 2, 0, 0, 1, 0])); // unknown, "discard" action
/// ```
pub fn hop_by_hop_ok(h: &[u8]) -> bool {
    const PAD1: u8 = 0;
    const PADN: u8 = 1;
    const ROUTER_ALERT: u8 = 5;
    const CALIPSO: u8 = 7;
    const IOAM: u8 = 0x31;
    const JUMBO: u8 = 0xc2;
    let mut off = 2;
    let (mut pad, mut count) = (0, 0);
    while off < h.len() {
        let ty = h[off];
        if ty == PAD1 {
            pad += 1;
            if pad > 7 {
                return false;
            }
            off += 1;
            continue;
        }
        let Some(&l) = h.get(off + 1) else {
            return false;
        };
        let optlen = l as usize + 2;
        let Some(o) = h.get(off..off + optlen) else {
            return false;
        };
        if ty == PADN {
            pad += optlen;
            if pad > 7 || o[2..].iter().any(|&b| b != 0) {
                return false;
            }
        } else {
            count += 1;
            if count > MAX_HBH_OPTS {
                return false;
            }
            let ok = match ty {
                ROUTER_ALERT => l == 2,
                IOAM => off & 3 == 0,
                JUMBO | CALIPSO => false,
                _ => ty >> 6 == 0,
            };
            if !ok {
                return false;
            }
            pad = 0;
        }
        off += optlen;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let tot = 20 + payload.len();
        let mut h = vec![
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            0,
            1,
            0,
            0,
            64,
            proto,
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
        h[10] = (c >> 8) as u8;
        h[11] = c as u8;
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn v6_common_case_is_the_general_parse() {
        // Addresses at the edges of what the receive path refuses.
        let mut addrs: Vec<[u8; 16]> = vec![[0; 16], [0x20; 16]];
        let mut one = [0; 16];
        one[15] = 1;
        addrs.push(one);
        one[0] = 0x20;
        addrs.push(one);
        for scope in [0u8, 1, 2, 0x0e, 0x11, 0xf1] {
            let mut m = [0; 16];
            m[0] = 0xff;
            m[1] = scope;
            addrs.push(m);
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (s, d) = (
                addrs[x as usize % addrs.len()],
                addrs[(x >> 8) as usize % addrs.len()],
            );
            let nh = [6u8, 17, 58, 0, 43, 44, 59, 60, 51, 132, 255][(x >> 16) as usize % 11];
            let body = (x >> 24) as usize % 48;
            let mut p = vec![0x60, 0, 0, 0, 0, 0, nh, 64];
            p.extend_from_slice(&s);
            p.extend_from_slice(&d);
            p.extend((0..body).map(|i| ((i as u64).wrapping_mul(x) >> 5) as u8));
            // Payload lengths that fit, fall short and overshoot.
            let plen = (body as u64 + (x >> 40) % 5).saturating_sub(2) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            let cut = p.len() - (x >> 50) as usize % 3;
            let ip = &p[..cut.max(40)];
            assert_eq!(
                format!("{:?}", parse_v6(ip)),
                format!("{:?}", parse_v6_general(ip)),
                "{ip:02x?}"
            );
        }
    }

    #[test]
    fn ethernet_vlan_and_padding() {
        let ip = v4(17, &[0; 8]);
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0xee; 10]);
        let got = ip_of_frame(&f, LinkType::Ethernet).unwrap();
        assert_eq!(got, &ip[..]);
        let p = parse_ip(got).unwrap();
        assert_eq!((p.proto, p.l4_off, p.l4().len()), (17, 20, 8));
    }

    #[test]
    fn non_ip_is_skipped() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        assert!(ip_of_frame(&f, LinkType::Ethernet).is_none());
        assert!(ip_of_frame(&[0x45; 19], LinkType::Raw).is_none());
        assert!(ip_of_frame(&[0x55; 40], LinkType::Raw).is_none());
        assert!(ip_of_frame(&[], LinkType::LinuxSll2).is_none());
    }

    #[test]
    fn v4_checks() {
        let mut ip = v4(6, &[0; 20]);
        assert!(parse_ip(&ip).is_ok());
        ip[11] ^= 1;
        assert_eq!(parse_ip(&ip).unwrap_err(), IpError::BadChecksum);
        let mut ip = v4(6, &[0; 20]);
        ip[0] = 0x44;
        assert_eq!(parse_ip(&ip).unwrap_err(), IpError::BadHeaderLength);
    }

    #[test]
    fn v4_header_checksum_covers_every_header_byte_with_or_without_options() {
        // Without options (the fixed-length sum) and with one option word (the general one):
        // any changed header byte fails the check.
        for words in [5usize, 6] {
            let hl = words * 4;
            let mut ip = v4(17, &[0; 8]);
            ip.splice(20..20, std::iter::repeat_n(1u8, hl - 20));
            ip[0] = 0x40 | words as u8;
            let tot = ip.len() as u16;
            ip[2..4].copy_from_slice(&tot.to_be_bytes());
            ip[10..12].fill(0);
            let sum = !csum_fold(csum_add(0, &ip[..hl]));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(parse_ip(&ip).unwrap().l4_off, hl);
            for b in (0..hl).filter(|&b| !(2..4).contains(&b) && b != 0) {
                let mut bad = ip.clone();
                bad[b] ^= 0x10;
                assert_eq!(
                    parse_ip(&bad).unwrap_err(),
                    IpError::BadChecksum,
                    "{hl} {b}"
                );
            }
        }
    }

    /// An IPv6 fixed header from 2001:db8::1 to 2001:db8::2 with payload length `plen` and
    /// next header `nh`.
    fn v6_fixed(plen: u16, nh: u8) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&plen.to_be_bytes());
        ip.extend_from_slice(&[nh, 64]);
        for last in [1, 2] {
            ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            ip.extend_from_slice(&[0; 11]);
            ip.push(last);
        }
        ip
    }

    #[test]
    fn v6_extension_headers() {
        let mut ip = v6_fixed(0, 0);
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP
        ip.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        ip.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let plen = ip.len() - 40;
        ip[4] = (plen >> 8) as u8;
        ip[5] = plen as u8;
        ip[6] = 0;
        let p = parse_ip(&ip).unwrap();
        assert_eq!((p.proto, p.l4_off), (17, 64));
        ip[40 + 8] = NH_NONE;
        assert_eq!(parse_ip(&ip).unwrap_err(), IpError::NoNextHeader);
        // An unknown hop-by-hop option whose action is "discard": dropped before tracking.
        ip[40 + 8] = 17;
        ip[42..46].copy_from_slice(&[0x5e, 2, 0, 0]);
        assert_eq!(parse_ip(&ip).unwrap_err(), IpError::BadHopByHop);
    }

    #[test]
    fn v6_fragment_header_cut_short_is_no_fragment() {
        // A fragment header (next header 99, offset 0, more fragments) of which the payload
        // length keeps `kept` bytes, the frame holding all eight and eight more.
        let packet = |kept: usize, frag_off: u16| {
            let mut ip = v6_fixed(kept as u16, NH_FRAGMENT);
            ip.extend_from_slice(&[99, 0]);
            ip.extend_from_slice(&frag_off.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 7]);
            ip.extend_from_slice(&[0xb3; 8]);
            ip
        };
        for kept in 4..8 {
            let ip = packet(kept, 1);
            let p = parse_ip(&ip).unwrap();
            assert_eq!((p.proto, p.l4_off, p.frag), (99, 40 + kept, None), "{kept}");
        }
        let whole = packet(8, 1);
        let p = parse_ip(&whole).unwrap();
        assert_eq!((p.proto, p.l4_off), (99, 48));
        assert!(p.frag.is_some());
        assert_eq!(
            parse_ip(&packet(3, 1)).unwrap_err(),
            IpError::TruncatedExtension
        );
        assert_eq!(
            parse_ip(&packet(6, 8 | 1)).unwrap_err(),
            IpError::TruncatedExtension
        );
    }

    /// Hop-by-hop headers checked against the kernel oracle (dropped before tracking or not).
    #[test]
    fn hop_by_hop_matches_oracle() {
        let cases: [(&[u8], bool); 7] = [
            (&[17, 0, 0x1e, 2, b'a', b'b', 1, 0], true),
            (&[17, 0, 0x5e, 2, b'a', b'b', 1, 0], false),
            (&[17, 0, 0x9e, 2, b'a', b'b', 1, 0], false),
            (&[17, 0, 0xde, 2, b'a', b'b', 1, 0], false),
            (&[17, 1, 1, 6, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0], false),
            (&[17, 0, 5, 2, 0, 0, 1, 0], true),
            (&[17, 0, 1, 4, 1, 2, 3, 4], false),
        ];
        for (h, want) in cases {
            assert_eq!(hop_by_hop_ok(h), want, "{h:?}");
        }
        assert!(hop_by_hop_ok(&[17, 0, 1, 4, 0, 0, 0, 0]));
        assert!(hop_by_hop_ok(&[17, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!hop_by_hop_ok(&[17, 0, 1, 5, 0, 0, 0, 0]));
    }
}
