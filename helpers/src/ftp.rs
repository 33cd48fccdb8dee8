//! The FTP helper's reading of a control connection (the kernel's `nf_conntrack_ftp`): which
//! segments it reads, and the data-connection address a command or reply announces.
//!
//! Only a segment that starts a line is read: one whose sequence number follows a segment
//! that ended in a newline (up to two such positions are remembered per direction), so the
//! first segment each way is never read. The client's `PORT` and `EPRT` commands and the
//! server's `227` and `229` replies announce an address; a segment that begins like one of
//! them but does not finish it (too short, or unreadable numbers) is dropped by the kernel.
//!
//! ```
//! use ctrack_helpers::ftp::{Found, Lines, parse};
//! use ctrack_protocols::Dir;
//! let mut lines = Lines::default();
//! // The first reply is not read, but its end starts the next line.
//! assert!(!lines.starts_line(Dir::Reply, 100));
//! lines.note_segment(Dir::Reply, 100, b"220 hi\r\n");
//! assert!(lines.starts_line(Dir::Reply, 108));
//! let r = b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n";
//! assert_eq!(
//!     parse(Dir::Reply, r, false),
//!     Found::Address { v4: Some([10, 0, 0, 2]), v6: None, port: 50000 }
//! );
//! ```

use ctrack_protocols::Dir;

/// Line starts remembered per direction (the kernel's `NUM_SEQ_TO_REMEMBER`).
const REMEMBERED: usize = 2;

/// Where lines start in each direction of a control connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    after_nl: [[u32; REMEMBERED]; 2],
    count: [u8; 2],
}

impl Lines {
    /// True when a segment from `dir` with sequence number `seq` starts a line (and is read).
    pub fn starts_line(&self, dir: Dir, seq: u32) -> bool {
        let d = dir.idx();
        self.after_nl[d][..usize::from(self.count[d])].contains(&seq)
    }

    /// Records the segment (`seq`, `payload`) from `dir`: when it ends in a newline, the
    /// sequence number after it starts a line. With both places taken, the newer position
    /// replaces the older one if it lies after it.
    pub fn note_segment(&mut self, dir: Dir, seq: u32, payload: &[u8]) {
        if payload.last() != Some(&b'\n') {
            return;
        }
        let next = seq.wrapping_add(payload.len() as u32);
        let d = dir.idx();
        let n = usize::from(self.count[d]);
        if self.after_nl[d][..n].contains(&next) {
            return;
        }
        if n < REMEMBERED {
            self.after_nl[d][n] = next;
            self.count[d] += 1;
        } else {
            // Sequence order as TCP compares it: `x` is before `y` when `x - y` is negative
            // as a 32-bit number, and after it when `y` is before `x`. Exactly 2^31 apart,
            // each is before the other, so the newer position then replaces the older.
            let before = |x: u32, y: u32| (x.wrapping_sub(y) as i32) < 0;
            let [a, b] = self.after_nl[d];
            let oldest = if before(a, b) { 0 } else { 1 };
            if before(self.after_nl[d][oldest], next) {
                self.after_nl[d][oldest] = next;
            }
        }
    }
}

/// What a line-starting segment announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing the helper looks for.
    Nothing,
    /// The start of a command or reply the helper reads, not completed: the kernel drops the
    /// segment.
    Partial,
    /// A data-connection endpoint: an IPv4 address (`PORT`, `227`, `EPRT |1|`), an IPv6
    /// address (`EPRT |2|`), or none (`229`: the sender's own), and the port.
    Address {
        /// Announced IPv4 address.
        v4: Option<[u8; 4]>,
        /// Announced IPv6 address.
        v6: Option<[u8; 16]>,
        /// Announced port.
        port: u16,
    },
}

/// What one pattern's number reader produced: `None` when it could not read one.
type Reader = fn(&[u8], bool) -> Option<Found>;

/// The patterns read in each direction: the text, the character to skip to (0: none) and the
/// reader of what follows.
const PATTERNS: [[(&[u8], u8, Reader); 2]; 2] = [
    [(b"PORT", b' ', port_cmd), (b"EPRT", b' ', eprt)],
    [(b"227 ", 0, pasv_reply), (b"229 ", b'(', epsv_reply)],
];

/// Reads a line-starting segment from `dir` of a control connection (`v6`: over IPv6). A
/// segment without payload is not read.
pub fn parse(dir: Dir, data: &[u8], v6: bool) -> Found {
    if data.is_empty() {
        return Found::Nothing;
    }
    for &(pattern, skip, read) in &PATTERNS[dir.idx()] {
        match find(data, pattern, skip, read, v6) {
            Found::Nothing => continue,
            found => return found,
        }
    }
    Found::Nothing
}

/// One pattern: `Nothing` unless the data starts with it (case-insensitively); `Partial` when
/// it starts with part of it, or with all of it but nothing readable after.
fn find(data: &[u8], pattern: &[u8], skip: u8, read: Reader, v6: bool) -> Found {
    if data.len() <= pattern.len() {
        return if data.eq_ignore_ascii_case(&pattern[..data.len()]) {
            Found::Partial
        } else {
            Found::Nothing
        };
    }
    if !data[..pattern.len()].eq_ignore_ascii_case(pattern) {
        return Found::Nothing;
    }
    let mut i = pattern.len();
    if skip != 0 {
        // Past the first skip character.
        match data[i..].iter().position(|&c| c == skip) {
            Some(k) => i += k + 1,
            None => return Found::Partial,
        }
    }
    read(&data[i..], v6).unwrap_or(Found::Partial)
}

/// Up to `N` decimal numbers separated by `sep`, ended by `term` (any character when `term`
/// is 0) after the last one. Returns the numbers, or `None`.
fn numbers<const N: usize>(data: &[u8], sep: u8, term: u8) -> Option<[u32; N]> {
    let mut out = [0u32; N];
    let mut i = 0;
    for &c in data {
        if c.is_ascii_digit() {
            out[i] = out[i].wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        } else if c == sep {
            i += 1;
            if i == N {
                return None;
            }
        } else {
            return ((c == term || term == 0) && i == N - 1).then_some(out);
        }
    }
    None
}

/// `h1,h2,h3,h4,p1,p2` ended by `term`: an IPv4 address and a port (each number taken modulo
/// its byte, as the kernel shifts them into place).
fn six(data: &[u8], term: u8) -> Option<Found> {
    let n = numbers::<6>(data, b',', term)?;
    let ip = (n[0] << 24 | n[1] << 16 | n[2] << 8 | n[3]).to_be_bytes();
    Some(Found::Address {
        v4: Some(ip),
        v6: None,
        port: (n[4] << 8 | n[5]) as u16,
    })
}

/// `PORT h1,h2,h3,h4,p1,p2\r`.
fn port_cmd(data: &[u8], _v6: bool) -> Option<Found> {
    six(data, b'\r')
}

/// `227 ...`: the six numbers start at the first digit (RFC 1123: the parentheses are
/// optional) and may end with anything.
fn pasv_reply(data: &[u8], _v6: bool) -> Option<Found> {
    let first = data.iter().position(u8::is_ascii_digit)?;
    six(&data[first..], 0)
}

/// A port of at least one digit up to `delim` (a zero port is refused).
fn port_until(data: &[u8], delim: u8) -> Option<u16> {
    let mut port: u16 = 0;
    for &c in data {
        if c == delim {
            return (port != 0).then_some(port);
        }
        if !c.is_ascii_digit() {
            return None;
        }
        port = port.wrapping_mul(10).wrapping_add(u16::from(c - b'0'));
    }
    None
}

/// A delimiter as RFC 2428 allows it: printable, not a digit.
fn delimiter(c: u8) -> bool {
    (33..=126).contains(&c) && !c.is_ascii_digit()
}

/// `EPRT |1|a.b.c.d|port|` (IPv4 connections) or `EPRT |2|addr|port|` (IPv6).
fn eprt(data: &[u8], v6: bool) -> Option<Found> {
    if data.len() <= 3 || !delimiter(data[0]) || data[2] != data[0] {
        return None;
    }
    let d = data[0];
    if data[1] != if v6 { b'2' } else { b'1' } {
        return None;
    }
    let rest = &data[3..];
    let end = rest.iter().position(|&c| c == d)?;
    let (v4, v6a) = if v6 {
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        let a: std::net::Ipv6Addr = text.parse().ok()?;
        (None, Some(a.octets()))
    } else {
        let n = numbers::<4>(rest, b'.', d)?;
        (
            Some((n[0] << 24 | n[1] << 16 | n[2] << 8 | n[3]).to_be_bytes()),
            None,
        )
    };
    let port = port_until(&rest[end + 1..], d)?;
    Some(Found::Address { v4, v6: v6a, port })
}

/// `229 ... (|||port|)`: three delimiters, then the port.
fn epsv_reply(data: &[u8], _v6: bool) -> Option<Found> {
    if data.len() <= 3 || !delimiter(data[0]) || data[1] != data[0] || data[2] != data[0] {
        return None;
    }
    let port = port_until(&data[3..], data[0])?;
    Some(Found::Address {
        v4: None,
        v6: None,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(v4: [u8; 4], port: u16) -> Found {
        Found::Address {
            v4: Some(v4),
            v6: None,
            port,
        }
    }

    #[test]
    fn commands_and_replies() {
        let o = Dir::Original;
        let r = Dir::Reply;
        assert_eq!(
            parse(o, b"PORT 10,0,0,1,4,1\r\n", false),
            addr([10, 0, 0, 1], 1025)
        );
        assert_eq!(
            parse(o, b"port 10,0,0,1,4,1\r\n", false),
            addr([10, 0, 0, 1], 1025)
        );
        assert_eq!(
            parse(o, b"EPRT |1|10.0.0.1|6275|\r\n", false),
            addr([10, 0, 0, 1], 6275)
        );
        let six = parse(o, b"EPRT |2|2001:db8::1|6275|\r\n", true);
        let want: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            six,
            Found::Address {
                v4: None,
                v6: Some(want.octets()),
                port: 6275
            }
        );
        assert_eq!(
            parse(
                r,
                b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n",
                false
            ),
            addr([10, 0, 0, 2], 50000)
        );
        assert_eq!(
            parse(r, b"227 ok 10,0,0,2,195,80\r\n", false),
            addr([10, 0, 0, 2], 50000)
        );
        assert_eq!(
            parse(
                r,
                b"229 Entering Extended Passive Mode (|||50001|)\r\n",
                false
            ),
            Found::Address {
                v4: None,
                v6: None,
                port: 50001
            }
        );
        // Each direction reads only its own patterns.
        assert_eq!(parse(r, b"PORT 10,0,0,1,4,1\r\n", false), Found::Nothing);
        assert_eq!(
            parse(o, b"227 (10,0,0,2,195,80)\r\n", false),
            Found::Nothing
        );
        assert_eq!(parse(o, b"USER anonymous\r\n", false), Found::Nothing);
        assert_eq!(parse(r, b"230 ok\r\n", false), Found::Nothing);
    }

    #[test]
    fn partial_matches_are_refused() {
        let original: &[&[u8]] = &[
            b"PO",
            b"PORT",
            b"PORT\r\n",
            b"PORT 10,0,0,1,4\r\n",
            b"PORT 1,2,3,4,5,6,7\r\n",
            b"PORT 10,0,0,1,4,1\n",
            b"EPRT |2|10.0.0.1|5|\r\n",
            b"EPRT |1|10.0.0.1|0|\r\n",
            b"EPRT 1\r\n",
        ];
        let reply: &[&[u8]] = &[
            b"22",
            b"227 ",
            b"227 no numbers\r\n",
            b"229 (|||x|)\r\n",
            b"229 no paren\r\n",
            b"229 (",
        ];
        for (dir, bad) in [(Dir::Original, original), (Dir::Reply, reply)] {
            for b in bad {
                let text = String::from_utf8_lossy(b);
                assert_eq!(parse(dir, b, false), Found::Partial, "{text:?}");
            }
        }
        // A segment without payload is not read; the skip character may be the last byte.
        assert_eq!(parse(Dir::Original, b"", false), Found::Nothing);
    }

    #[test]
    fn line_starts() {
        let mut l = Lines::default();
        let o = Dir::Original;
        l.note_segment(o, 10, b"USER x\r\n");
        l.note_segment(o, 18, b"no newline");
        assert!(l.starts_line(o, 18) && !l.starts_line(o, 28) && !l.starts_line(Dir::Reply, 18));
        l.note_segment(o, 28, b"x\n");
        l.note_segment(o, 30, b"y\n");
        // Two places: 30 replaced the older 18.
        assert!(!l.starts_line(o, 18) && l.starts_line(o, 30) && l.starts_line(o, 32));
        l.note_segment(o, 0, b"old\n");
        assert!(!l.starts_line(o, 4));
    }

    /// A new line start exactly 2^31 past the older remembered one replaces it: in TCP's
    /// sequence order each of the two is before the other.
    #[test]
    fn line_start_half_the_sequence_space_away() {
        let r = Dir::Reply;
        let far = 2_147_481_511u32;
        let mut l = Lines::default();
        l.note_segment(r, far - 3, b"x\r\n");
        l.note_segment(r, 4_294_965_097, b"331 password\r\n");
        let next = 4_294_965_111u32.wrapping_add(48);
        assert_eq!(next.wrapping_sub(far), 1 << 31);
        l.note_segment(
            r,
            4_294_965_111,
            &[b'x'; 48][..47]
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<_>>(),
        );
        assert!(l.starts_line(r, next) && l.starts_line(r, 4_294_965_111));
        assert!(!l.starts_line(r, far));
        // Up to 2^31 past the older place (at 1), the newer position replaces it; one more
        // and it lies before it, and is forgotten.
        for (gap, kept) in [
            ((1u32 << 31) - 1, true),
            (1 << 31, true),
            ((1 << 31) + 1, false),
        ] {
            let mut l = Lines::default();
            l.note_segment(r, 0, b"\n");
            l.note_segment(r, 100, b"\n");
            l.note_segment(r, gap, b"\n");
            assert_eq!(l.starts_line(r, gap + 1), kept, "{gap}");
            assert_eq!(l.starts_line(r, 1), !kept, "{gap}");
        }
    }
}
