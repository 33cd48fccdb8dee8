//! TCP option walking: the window-scale and SACK-permitted options of SYNs, and the highest
//! SACK right edge of other segments.
//!
//! The walk follows the kernel's simplified parser: `EOL` ends the list, `NOP` is one byte, any
//! other option needs a length byte of at least 2 that fits in what is left, else parsing stops.

use super::after;

/// Option kind: end of option list.
pub const OPT_EOL: u8 = 0;
/// Option kind: no operation (padding).
pub const OPT_NOP: u8 = 1;
/// Option kind: window scale (RFC 7323), length 3.
pub const OPT_WSCALE: u8 = 3;
/// Option kind: SACK permitted (RFC 2018), length 2.
pub const OPT_SACK_PERM: u8 = 4;
/// Option kind: SACK blocks (RFC 2018), length 2 + 8 per block.
pub const OPT_SACK: u8 = 5;
/// Option kind: timestamps (RFC 7323), length 10.
pub const OPT_TIMESTAMP: u8 = 8;

/// Largest window-scale shift RFC 7323 allows; larger advertised values are cut to it.
pub const MAX_WSCALE: u8 = 14;

/// What a SYN's options announce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// A window-scale option was present.
    pub wscale_present: bool,
    /// Its shift, capped at [`MAX_WSCALE`] (0 when absent).
    pub wscale: u8,
    /// A SACK-permitted option was present.
    pub sack_perm: bool,
}

/// One step of the option walk: `(kind, body)` for a well-formed option, or `None` to stop.
struct Walk<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Walk<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        loop {
            let (&kind, tail) = self.rest.split_first()?;
            match kind {
                OPT_EOL => return None,
                OPT_NOP => {
                    self.rest = tail;
                    continue;
                }
                _ => {
                    let &size = tail.first()?;
                    let size = usize::from(size);
                    if size < 2 || size > self.rest.len() {
                        return None;
                    }
                    let body = self.rest.get(2..size)?;
                    self.rest = self.rest.get(size..)?;
                    return Some((kind, body));
                }
            }
        }
    }
}

fn walk(opts: &[u8]) -> Walk<'_> {
    Walk { rest: opts }
}

/// Reads the window-scale and SACK-permitted options. `None` when there are no option bytes at
/// all: the kernel then leaves the side's previous scale and flags untouched.
pub fn syn_options(opts: &[u8]) -> Option<SynOptions> {
    if opts.is_empty() {
        return None;
    }
    let mut out = SynOptions::default();
    for (kind, body) in walk(opts) {
        match (kind, body.len()) {
            (OPT_SACK_PERM, 0) => out.sack_perm = true,
            (OPT_WSCALE, 1) => {
                out.wscale_present = true;
                out.wscale = body.first().copied().unwrap_or(0).min(MAX_WSCALE);
            }
            _ => {}
        }
    }
    Some(out)
}

/// Returns the highest SACK right edge after `ack` (mod 2^32), or `ack` itself when the
/// options carry no usable SACK block. Only the first SACK option counts; a lone aligned
/// timestamp option is recognised and skipped at once.
pub fn highest_sack(opts: &[u8], ack: u32) -> u32 {
    const TS_ALIGNED: [u8; 4] = [OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10];
    if opts.len() == 12 && opts.get(..4) == Some(&TS_ALIGNED[..]) {
        return ack;
    }
    let mut sack = ack;
    for (kind, body) in walk(opts) {
        if kind == OPT_SACK && body.len() >= 8 && body.len() % 8 == 0 {
            for block in body.chunks_exact(8) {
                let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                if after(right, sack) {
                    sack = right;
                }
            }
            return sack;
        }
    }
    sack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_options_walk() {
        assert_eq!(syn_options(&[]), None);
        // MSS, SACK_PERM, TS, NOP, WS 7 (a Linux SYN).
        let linux = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(
            syn_options(&linux),
            Some(SynOptions {
                wscale_present: true,
                wscale: 7,
                sack_perm: true
            })
        );
        // Scale capped at 14.
        assert_eq!(
            syn_options(&[3, 3, 20, 0]),
            Some(SynOptions {
                wscale_present: true,
                wscale: 14,
                sack_perm: false
            })
        );
        // Wrong lengths are not the options.
        assert_eq!(
            syn_options(&[3, 4, 5, 0, 4, 3, 0, 0]),
            Some(SynOptions::default())
        );
        // A silly length stops the walk.
        assert_eq!(syn_options(&[2, 1, 4, 2]), Some(SynOptions::default()));
        // An option longer than what is left stops the walk.
        assert_eq!(
            syn_options(&[4, 2, 3, 4, 1]).map(|o| o.sack_perm),
            Some(true)
        );
        assert_eq!(
            syn_options(&[4, 2, 3, 4, 1]).map(|o| o.wscale_present),
            Some(false)
        );
        // EOL stops.
        assert_eq!(syn_options(&[0, 4, 2]), Some(SynOptions::default()));
        // A lone kind byte at the end.
        assert_eq!(syn_options(&[1, 1, 1, 3]), Some(SynOptions::default()));
    }

    #[test]
    fn sack_edges() {
        let mut o = vec![1, 1, 5, 18];
        o.extend_from_slice(&100u32.to_be_bytes());
        o.extend_from_slice(&200u32.to_be_bytes());
        o.extend_from_slice(&300u32.to_be_bytes());
        o.extend_from_slice(&400u32.to_be_bytes());
        assert_eq!(highest_sack(&o, 50), 400);
        assert_eq!(highest_sack(&o, 500), 500);
        // Wraps: an edge just past 2^32 is after one just below.
        let mut w = vec![5, 10];
        w.extend_from_slice(&0u32.to_be_bytes());
        w.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(highest_sack(&w, u32::MAX - 3), 5);
        // Bad block length: ignored.
        assert_eq!(highest_sack(&[5, 6, 0, 0, 0, 0], 7), 7);
        // Timestamp fast path.
        assert_eq!(highest_sack(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 9), 9);
    }
}
