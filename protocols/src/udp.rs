//! UDP and UDP-Lite pseudo-connections: header checks, the 2-second stream rule, ASSURED.

use crate::sysctl::Sysctl;
use crate::{Accept, Ctx, Decision, HALF_JIFFY, NANOS_PER_SEC, Nanos, Refresh, secs};

/// How long after its first packet an entry must still be talking to count as a stream.
pub const STREAM_DELAY: Nanos = 2 * NANOS_PER_SEC;

/// Per-entry UDP state: when the entry stops being "young".
///
/// The time is kept as two 32-bit halves, so that the state needs only 4-byte alignment and a
/// connection table entry can hold it beside TCP's 52-byte state without padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpState {
    /// The first packet's time plus [`STREAM_DELAY`], low half then high half.
    stream_ts: [u32; 2],
}

impl UdpState {
    /// The first packet's time plus [`STREAM_DELAY`]: from then on, a packet with a reply
    /// seen makes the entry a stream.
    #[inline]
    pub fn stream_ts(&self) -> Nanos {
        u64::from(self.stream_ts[0]) | u64::from(self.stream_ts[1]) << 32
    }

    #[inline]
    fn set_stream_ts(&mut self, t: Nanos) {
        self.stream_ts = [t as u32, (t >> 32) as u32];
    }
}

/// Why a UDP or UDP-Lite header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 8 bytes of header.
    Short,
    /// UDP: the length field is under 8 or longer than the datagram.
    BadLength,
    /// UDP-Lite: checksum coverage under 8 or longer than the datagram.
    BadCoverage,
    /// UDP-Lite: a zero checksum, which UDP-Lite forbids.
    MissingChecksum,
}

/// What the checksum check must cover once the header is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumScope {
    /// The sender left the checksum out (UDP checksum 0): nothing to verify.
    None,
    /// Verify over this many bytes of the L4 segment, starting at the UDP header.
    Bytes(usize),
}

/// Checks a UDP header the way the kernel's `udp_error` does; `l4` is the datagram from the UDP
/// header to the end of the IP payload.
pub fn check_udp(l4: &[u8]) -> Result<ChecksumScope, HeaderError> {
    if l4.len() < 8 {
        return Err(HeaderError::Short);
    }
    let len = u16::from_be_bytes([l4[4], l4[5]]) as usize;
    if len > l4.len() || len < 8 {
        return Err(HeaderError::BadLength);
    }
    if l4[6] == 0 && l4[7] == 0 {
        return Ok(ChecksumScope::None);
    }
    // The kernel checksums the whole IP payload, not just `len` bytes.
    Ok(ChecksumScope::Bytes(l4.len()))
}

/// Checks a UDP-Lite header the way the kernel's `udplite_error` does.
pub fn check_udplite(l4: &[u8]) -> Result<ChecksumScope, HeaderError> {
    if l4.len() < 8 {
        return Err(HeaderError::Short);
    }
    let mut cscov = u16::from_be_bytes([l4[4], l4[5]]) as usize;
    if cscov == 0 {
        cscov = l4.len();
    } else if cscov < 8 || cscov > l4.len() {
        return Err(HeaderError::BadCoverage);
    }
    if l4[6] == 0 && l4[7] == 0 {
        return Err(HeaderError::MissingChecksum);
    }
    Ok(ChecksumScope::Bytes(cscov))
}

/// Tracks one accepted-header UDP or UDP-Lite packet.
///
/// The first packet stamps the stream deadline. Before any reply the entry lives
/// `nf_conntrack_udp_timeout`; once replied, a packet more than half a kernel tick after the
/// stream deadline (see [`crate::HALF_JIFFY`]) extends it to `nf_conntrack_udp_timeout_stream`
/// and makes the entry ASSURED.
pub fn track(st: &mut UdpState, ctx: &Ctx, s: &Sysctl) -> Decision {
    Decision::Accept(refresh(st, ctx, s).into())
}

/// [`track`] as the [`Refresh`] it always is: a UDP packet with a checked header is never
/// refused by its entry.
#[inline]
pub fn refresh(st: &mut UdpState, ctx: &Ctx, s: &Sysctl) -> Refresh {
    if !ctx.confirmed {
        st.set_stream_ts(ctx.now.saturating_add(STREAM_DELAY));
    }
    let mut timeout = secs(s.nf_conntrack_udp_timeout);
    let mut assured = false;
    // The kernel's "after the stream deadline" passes at some time in the tick after it
    // (see `HALF_JIFFY`).
    if ctx.seen_reply && ctx.now > st.stream_ts().saturating_add(HALF_JIFFY) {
        timeout = secs(s.nf_conntrack_udp_timeout_stream);
        assured = !ctx.assured;
    }
    Refresh { timeout, assured }
}

/// Tracks one UDP-Lite packet. Unlike UDP there is no stream delay: once a reply has been seen,
/// every packet refreshes to `nf_conntrack_udp_timeout_stream` and makes the entry ASSURED.
pub fn track_lite(ctx: &Ctx, s: &Sysctl) -> Decision {
    if ctx.seen_reply {
        Decision::Accept(Accept {
            timeout: Some(secs(s.nf_conntrack_udp_timeout_stream)),
            assured: !ctx.assured,
            kill: false,
            changed: false,
        })
    } else {
        Decision::refresh(secs(s.nf_conntrack_udp_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dir;

    fn ctx(dir: Dir, confirmed: bool, seen_reply: bool, now: Nanos) -> Ctx {
        Ctx {
            dir,
            confirmed,
            seen_reply,
            assured: false,
            now,
            expires: 0,
        }
    }

    #[test]
    fn stream_rule() {
        let s = Sysctl::default();
        let mut st = UdpState::default();
        assert_eq!(
            track(&mut st, &ctx(Dir::Original, false, false, 10), &s),
            Decision::refresh(secs(30))
        );
        assert_eq!(st.stream_ts(), 10 + STREAM_DELAY);
        let mut far = UdpState::default();
        far.set_stream_ts(u64::MAX - 1);
        assert_eq!(far.stream_ts(), u64::MAX - 1);
        // The first reply: SEEN_REPLY is not yet set when the tracker runs.
        assert_eq!(
            track(&mut st, &ctx(Dir::Reply, true, false, 20), &s),
            Decision::refresh(secs(30))
        );
        // Replied but still young: up to half a tick past the deadline.
        for at in [10 + STREAM_DELAY, 10 + STREAM_DELAY + crate::HALF_JIFFY] {
            assert_eq!(
                track(&mut st, &ctx(Dir::Original, true, true, at), &s),
                Decision::refresh(secs(30))
            );
        }
        // Past that: stream timeout and ASSURED.
        let d = track(
            &mut st,
            &ctx(
                Dir::Original,
                true,
                true,
                11 + STREAM_DELAY + crate::HALF_JIFFY,
            ),
            &s,
        );
        assert_eq!(
            d,
            Decision::Accept(Accept {
                timeout: Some(secs(120)),
                assured: true,
                kill: false,
                changed: false
            })
        );
    }

    #[test]
    fn udplite_has_no_stream_delay() {
        let s = Sysctl::default();
        assert_eq!(
            track_lite(&ctx(Dir::Original, false, false, 0), &s),
            Decision::refresh(secs(30))
        );
        assert_eq!(
            track_lite(&ctx(Dir::Original, true, true, 1), &s),
            Decision::Accept(Accept {
                timeout: Some(secs(120)),
                assured: true,
                kill: false,
                changed: false
            })
        );
    }

    #[test]
    fn headers() {
        assert_eq!(check_udp(&[0; 7]), Err(HeaderError::Short));
        let mut h = [0u8, 1, 0, 2, 0, 9, 0, 0];
        assert_eq!(check_udp(&h), Err(HeaderError::BadLength));
        h[5] = 7;
        assert_eq!(check_udp(&h), Err(HeaderError::BadLength));
        h[5] = 8;
        assert_eq!(check_udp(&h), Ok(ChecksumScope::None));
        h[7] = 1;
        assert_eq!(check_udp(&h), Ok(ChecksumScope::Bytes(8)));
        let mut l = [0u8, 1, 0, 2, 0, 0, 0, 0, 1, 2];
        assert_eq!(check_udplite(&l), Err(HeaderError::MissingChecksum));
        l[7] = 1;
        assert_eq!(check_udplite(&l), Ok(ChecksumScope::Bytes(10)));
        l[5] = 11;
        assert_eq!(check_udplite(&l), Err(HeaderError::BadCoverage));
        l[5] = 9;
        assert_eq!(check_udplite(&l), Ok(ChecksumScope::Bytes(9)));
    }
}
