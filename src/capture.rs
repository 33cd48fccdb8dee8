//! Capture files: classic pcap (micro- and nanosecond, either byte order) and pcapng
//! (sections, interfaces with their own link types and timestamp resolutions; enhanced,
//! simple and obsolete packet blocks), read whole into memory.
//!
//! Every malformation of the file itself is an error naming the problem; what the frames
//! contain is the engine's business.

use std::fmt;
use std::path::{Path, PathBuf};

use ctrack_protocols::Nanos;

use crate::packet::LinkType;

/// Largest record ctrack believes (a capture claiming more is corrupt).
pub const MAX_RECORD: u32 = 64 << 20;

/// One packet of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts: Nanos,
    /// How the frame is framed.
    pub link: LinkType,
    start: usize,
    len: usize,
}

/// A capture loaded into memory.
#[derive(Clone, Debug)]
pub struct Capture {
    data: Vec<u8>,
    /// The packets in file order.
    pub records: Vec<Record>,
}

impl Capture {
    /// The frame bytes of record `r`.
    #[inline]
    pub fn frame(&self, r: &Record) -> &[u8] {
        &self.data[r.start..r.start + r.len]
    }

    /// Every packet as (time, link type, frame), with the capture's own timestamps.
    pub fn packets(&self) -> impl Iterator<Item = (Nanos, LinkType, &[u8])> + '_ {
        self.records.iter().map(|r| (r.ts, r.link, self.frame(r)))
    }

    /// Every packet as (time, link type, frame), at the time a replay meets it: a timestamp
    /// that steps back from the latest before it (merged captures, reordering queues) is
    /// taken as that latest time, as the kernel's clock never goes back and as the oracle's
    /// `--realtime` schedule sends such a packet at once. [`crate::Conntrack::process`] wants
    /// its times so.
    ///
    /// ```
    /// let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    /// pcap.extend_from_slice(&[0; 8]);
    /// pcap.extend_from_slice(&65535u32.to_le_bytes());
    /// pcap.extend_from_slice(&101u32.to_le_bytes()); // raw IP
    /// for secs in [5u32, 3, 7] {
    ///     pcap.extend_from_slice(&secs.to_le_bytes());
    ///     pcap.extend_from_slice(&[0; 4]);
    ///     pcap.extend_from_slice(&1u32.to_le_bytes());
    ///     pcap.extend_from_slice(&1u32.to_le_bytes());
    ///     pcap.push(0x45);
    /// }
    /// let cap = ctrack::capture::parse(pcap).unwrap();
    /// let s: Vec<u64> = cap.packets_monotonic().map(|(t, _, _)| t / 1_000_000_000).collect();
    /// assert_eq!(s, [5, 5, 7]);
    /// ```
    pub fn packets_monotonic(&self) -> impl Iterator<Item = (Nanos, LinkType, &[u8])> + '_ {
        let mut latest = 0;
        self.packets().map(move |(t, link, frame)| {
            latest = t.max(latest);
            (latest, link, frame)
        })
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the capture holds no packets.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What is wrong with a capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file could not be read.
    Io(String),
    /// Zero bytes.
    Empty,
    /// Neither pcap nor pcapng magic.
    NotACapture(u32),
    /// The file header is cut short.
    TruncatedHeader,
    /// A record or block runs past the end of the file.
    TruncatedRecord {
        /// Packet or block number (from 0).
        index: usize,
        /// Byte offset of its header.
        offset: usize,
    },
    /// A record claims an impossible length.
    AbsurdLength {
        /// Packet or block number (from 0).
        index: usize,
        /// Byte offset of its header.
        offset: usize,
        /// The length it claims.
        len: u64,
    },
    /// A link type ctrack cannot decode.
    UnknownLinkType(u32),
    /// A pcapng packet names an interface the section does not describe.
    UnknownInterface(u32),
    /// A pcapng section header of a version this reader does not know (as libpcap and
    /// Wireshark, it reads 1.0 and the 1.2 some writers put).
    UnsupportedVersion {
        /// The section's major version.
        major: u16,
        /// Its minor version.
        minor: u16,
    },
    /// A pcapng structure is malformed.
    Malformed(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Io(e) => write!(f, "cannot read: {e}"),
            Problem::Empty => f.write_str("empty file, not a pcap or pcapng capture"),
            Problem::NotACapture(m) => {
                write!(f, "not a pcap or pcapng capture (starts with 0x{m:08x})")
            }
            Problem::TruncatedHeader => f.write_str("truncated capture header"),
            Problem::TruncatedRecord { index, offset } => write!(
                f,
                "truncated record {index} at byte {offset}: the file ends inside it"
            ),
            Problem::AbsurdLength { index, offset, len } => write!(
                f,
                "record {index} at byte {offset} claims an absurd length of {len} bytes"
            ),
            Problem::UnknownLinkType(t) => write!(
                f,
                "unsupported link type {t} (ctrack reads Ethernet 1, raw IP 101/12/14/228/229, \
                 BSD loopback 0, Linux cooked 113/276)"
            ),
            Problem::UnknownInterface(i) => {
                write!(
                    f,
                    "a packet names interface {i}, which the file never describes"
                )
            }
            Problem::UnsupportedVersion { major, minor } => write!(
                f,
                "unsupported pcapng section version {major}.{minor} (ctrack reads 1.0 and 1.2)"
            ),
            Problem::Malformed(what) => write!(f, "malformed pcapng: {what}"),
        }
    }
}

/// A capture that could not be loaded: the file and the problem, on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for CaptureError {}

/// Reads and parses a capture file.
pub fn load(path: &Path) -> Result<Capture, CaptureError> {
    let err = |problem| CaptureError {
        path: path.to_path_buf(),
        problem,
    };
    let data = std::fs::read(path).map_err(|e| {
        let msg = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ if path.is_dir() => "is a directory".to_string(),
            _ => e.to_string(),
        };
        err(Problem::Io(msg))
    })?;
    parse(data).map_err(err)
}

/// Parses a capture held in memory.
pub fn parse(data: Vec<u8>) -> Result<Capture, Problem> {
    if data.is_empty() {
        return Err(Problem::Empty);
    }
    if data.len() < 4 {
        return Err(Problem::TruncatedHeader);
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let records = match magic {
        0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1 => parse_pcap(&data)?,
        0x0a0d0d0a => parse_pcapng(&data)?,
        _ => {
            return Err(Problem::NotACapture(u32::from_be_bytes([
                data[0], data[1], data[2], data[3],
            ])));
        }
    };
    Ok(Capture { data, records })
}

#[derive(Clone, Copy)]
struct Rd<'a> {
    b: &'a [u8],
    be: bool,
}

impl Rd<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.be {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.be {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }
}

/// The options of a pcapng block from byte `from` to `end` (its trailing length): code, value
/// offset and value length of each up to the end-of-options one, or `None` (and no more) for
/// one that runs past `end`.
fn options<'a>(
    r: &'a Rd<'a>,
    from: usize,
    end: usize,
) -> impl Iterator<Item = Option<(u16, usize, usize)>> + 'a {
    let mut o = Some(from);
    std::iter::from_fn(move || {
        let at = o.filter(|&at| at + 4 <= end)?;
        let code = r.u16(at).unwrap_or(0);
        let len = r.u16(at + 2).unwrap_or(0) as usize;
        let v = at + 4;
        if v + len > end {
            o = None;
            return Some(None);
        }
        o = (code != 0).then(|| v + len.div_ceil(4) * 4);
        (code != 0).then_some(Some((code, v, len)))
    })
}

fn link_of(dlt: u32) -> Result<LinkType, Problem> {
    LinkType::from_dlt(dlt).ok_or(Problem::UnknownLinkType(dlt))
}

fn parse_pcap(data: &[u8]) -> Result<Vec<Record>, Problem> {
    if data.len() < 24 {
        return Err(Problem::TruncatedHeader);
    }
    let m = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let be = matches!(m, 0xd4c3b2a1 | 0x4d3cb2a1);
    let nano = matches!(m, 0xa1b23c4d | 0x4d3cb2a1);
    let r = Rd { b: data, be };
    let dlt = r.u32(20).ok_or(Problem::TruncatedHeader)? & 0x0fff_ffff;
    let link = link_of(dlt & 0xffff)?;
    let mut out = Vec::new();
    let mut off = 24;
    while off < data.len() {
        let index = out.len();
        if off + 16 > data.len() {
            return Err(Problem::TruncatedRecord { index, offset: off });
        }
        let (sec, frac, incl) = match (r.u32(off), r.u32(off + 4), r.u32(off + 8)) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(Problem::TruncatedRecord { index, offset: off }),
        };
        if incl > MAX_RECORD {
            return Err(Problem::AbsurdLength {
                index,
                offset: off,
                len: incl as u64,
            });
        }
        let start = off + 16;
        if start + incl as usize > data.len() {
            return Err(Problem::TruncatedRecord { index, offset: off });
        }
        let ts = sec as u64 * 1_000_000_000
            + if nano {
                frac as u64
            } else {
                frac as u64 * 1000
            };
        out.push(Record {
            ts,
            link,
            start,
            len: incl as usize,
        });
        off = start + incl as usize;
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Iface {
    link: Option<LinkType>,
    dlt: u32,
    snaplen: u32,
    /// Timestamp units per second.
    per_sec: u64,
    /// Added to every timestamp, seconds.
    offset: i64,
}

fn parse_pcapng(data: &[u8]) -> Result<Vec<Record>, Problem> {
    let mut out = Vec::new();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut be = false;
    let mut off = 0usize;
    let mut block = 0usize;
    while off < data.len() {
        if off + 12 > data.len() {
            return Err(if off == 0 {
                Problem::TruncatedHeader
            } else {
                Problem::TruncatedRecord {
                    index: block,
                    offset: off,
                }
            });
        }
        let le = Rd { b: data, be: false };
        let btype = le.u32(off).unwrap_or(0);
        if btype == 0x0a0d0d0a {
            // Section header: its byte-order magic decides the section's endianness.
            match le.u32(off + 8) {
                Some(0x1a2b3c4d) => be = false,
                Some(0x4d3c2b1a) => be = true,
                _ => return Err(Problem::Malformed("bad byte-order magic in section header")),
            }
            ifaces.clear();
        }
        let r = Rd { b: data, be };
        let blen = r.u32(off + 4).unwrap_or(0) as usize;
        if blen < 12 || blen % 4 != 0 {
            return Err(Problem::AbsurdLength {
                index: block,
                offset: off,
                len: blen as u64,
            });
        }
        if blen as u64 > MAX_RECORD as u64 + 64 {
            return Err(Problem::AbsurdLength {
                index: block,
                offset: off,
                len: blen as u64,
            });
        }
        if off + blen > data.len() {
            return Err(if btype == 0x0a0d0d0a && off == 0 {
                Problem::TruncatedHeader
            } else {
                Problem::TruncatedRecord {
                    index: block,
                    offset: off,
                }
            });
        }
        let body = off + 8;
        let body_end = off + blen - 4;
        match btype {
            0x0a0d0d0a => {
                // Another major version may lay out blocks differently; 1.1 was never defined.
                let short = Problem::Malformed("short section header");
                if body + 16 > body_end {
                    return Err(short);
                }
                let major = r.u16(body + 4).ok_or(short.clone())?;
                let minor = r.u16(body + 6).ok_or(short)?;
                if major != 1 || !matches!(minor, 0 | 2) {
                    return Err(Problem::UnsupportedVersion { major, minor });
                }
                // Nothing in them is used, but they must fit, as libpcap and Wireshark insist.
                if options(&r, body + 16, body_end).any(|o| o.is_none()) {
                    return Err(Problem::Malformed("section option runs past its block"));
                }
            }
            1 => {
                let dlt = r
                    .u16(body)
                    .ok_or(Problem::Malformed("short interface block"))?
                    as u32;
                let snaplen = r
                    .u32(body + 4)
                    .ok_or(Problem::Malformed("short interface block"))?;
                let mut iface = Iface {
                    link: LinkType::from_dlt(dlt),
                    dlt,
                    snaplen,
                    per_sec: 1_000_000,
                    offset: 0,
                };
                for opt in options(&r, body + 8, body_end) {
                    let (code, v, len) =
                        opt.ok_or(Problem::Malformed("interface option runs past its block"))?;
                    match code {
                        9 if len >= 1 => {
                            let res = data[v];
                            let per = if res & 0x80 != 0 {
                                1u64.checked_shl((res & 0x7f) as u32)
                            } else {
                                10u64.checked_pow(res as u32)
                            };
                            iface.per_sec = per
                                .filter(|&p| p > 0)
                                .ok_or(Problem::Malformed("impossible timestamp resolution"))?;
                        }
                        14 if len >= 8 => {
                            let hi = r.u32(if be { v } else { v + 4 }).unwrap_or(0) as u64;
                            let lo = r.u32(if be { v + 4 } else { v }).unwrap_or(0) as u64;
                            iface.offset = (hi << 32 | lo) as i64;
                        }
                        _ => {}
                    }
                }
                ifaces.push(iface);
            }
            6 | 2 | 3 => {
                let (iface_id, ts_units, cap, data_at) = match btype {
                    6 => {
                        let id = r.u32(body);
                        let hi = r.u32(body + 4);
                        let lo = r.u32(body + 8);
                        let cap = r.u32(body + 12);
                        match (id, hi, lo, cap) {
                            (Some(id), Some(hi), Some(lo), Some(cap)) => (
                                id,
                                Some((hi as u64) << 32 | lo as u64),
                                cap as usize,
                                body + 20,
                            ),
                            _ => return Err(Problem::Malformed("short enhanced packet block")),
                        }
                    }
                    2 => {
                        let id = r.u16(body);
                        let hi = r.u32(body + 4);
                        let lo = r.u32(body + 8);
                        let cap = r.u32(body + 12);
                        match (id, hi, lo, cap) {
                            (Some(id), Some(hi), Some(lo), Some(cap)) => (
                                id as u32,
                                Some((hi as u64) << 32 | lo as u64),
                                cap as usize,
                                body + 20,
                            ),
                            _ => return Err(Problem::Malformed("short packet block")),
                        }
                    }
                    _ => {
                        let orig = r
                            .u32(body)
                            .ok_or(Problem::Malformed("short simple packet block"))?
                            as usize;
                        let room = body_end.saturating_sub(body + 4);
                        let snap = ifaces.first().map_or(u32::MAX, |i| i.snaplen) as usize;
                        let snap = if snap == 0 { usize::MAX } else { snap };
                        (0, None, orig.min(room).min(snap), body + 4)
                    }
                };
                if data_at + cap > body_end {
                    return Err(Problem::AbsurdLength {
                        index: out.len(),
                        offset: off,
                        len: cap as u64,
                    });
                }
                let ifc = *ifaces
                    .get(iface_id as usize)
                    .ok_or(Problem::UnknownInterface(iface_id))?;
                let link = ifc.link.ok_or(Problem::UnknownLinkType(ifc.dlt))?;
                let ts = match ts_units {
                    Some(u) => {
                        let ns = (u as u128 * 1_000_000_000 / ifc.per_sec as u128) as i128
                            + ifc.offset as i128 * 1_000_000_000;
                        ns.clamp(0, u64::MAX as i128) as u64
                    }
                    // Simple packet blocks carry no time: keep the previous packet's.
                    None => out.last().map_or(0, |p: &Record| p.ts),
                };
                out.push(Record {
                    ts,
                    link,
                    start: data_at,
                    len: cap,
                });
            }
            _ => {}
        }
        off += blen;
        block += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(records: &[(u32, u32, &[u8])], nano: bool, dlt: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(if nano { 0xa1b23c4du32 } else { 0xa1b2c3d4 }).to_le_bytes());
        v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        v.extend_from_slice(&dlt.to_le_bytes());
        for (s, f, d) in records {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&f.to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    #[test]
    fn classic_pcap() {
        let c = parse(pcap(&[(1, 5, b"abc"), (2, 0, b"")], false, 1)).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.records[0].ts, 1_000_005_000);
        assert_eq!(c.frame(&c.records[0]), b"abc");
        let c = parse(pcap(&[(1, 5, b"abc")], true, 101)).unwrap();
        assert_eq!(c.records[0].ts, 1_000_000_005);
        assert_eq!(c.records[0].link, LinkType::Raw);
    }

    #[test]
    fn bad_files() {
        assert_eq!(parse(vec![]).unwrap_err(), Problem::Empty);
        assert_eq!(
            parse(vec![0xd4, 0xc3]).unwrap_err(),
            Problem::TruncatedHeader
        );
        assert!(matches!(
            parse(b"hello world, not a capture".to_vec()),
            Err(Problem::NotACapture(_))
        ));
        let good = pcap(&[(1, 0, b"abcdef")], false, 1);
        assert_eq!(
            parse(good[..20].to_vec()).unwrap_err(),
            Problem::TruncatedHeader
        );
        assert!(matches!(
            parse(good[..good.len() - 2].to_vec()),
            Err(Problem::TruncatedRecord { index: 0, .. })
        ));
        let mut absurd = good.clone();
        absurd[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(absurd), Err(Problem::AbsurdLength { .. })));
        assert_eq!(
            parse(pcap(&[], false, 147)).unwrap_err(),
            Problem::UnknownLinkType(147)
        );
    }

    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut v = Vec::new();
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(body);
        v.resize(len - 4, 0);
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v
    }

    #[test]
    fn pcapng_resolutions_and_interfaces() {
        let mut f = block(
            0x0a0d0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        // Interface 0: Ethernet, default microseconds.
        f.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
        // Interface 1: raw IP, nanoseconds (if_tsresol = 9).
        f.extend(block(
            1,
            &[101, 0, 0, 0, 0, 0, 4, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        ));
        let epb = |iface: u32, ts: u64, d: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&iface.to_le_bytes());
            b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ts as u32).to_le_bytes());
            b.extend_from_slice(&(d.len() as u32).to_le_bytes());
            b.extend_from_slice(&(d.len() as u32).to_le_bytes());
            b.extend_from_slice(d);
            block(6, &b)
        };
        f.extend(epb(0, 2_000_000, b"xyz"));
        f.extend(epb(1, 3_000_000_123, b"ab"));
        let c = parse(f.clone()).unwrap();
        assert_eq!(c.records[0].ts, 2_000_000_000);
        assert_eq!(c.records[0].link, LinkType::Ethernet);
        assert_eq!(c.frame(&c.records[0]), b"xyz");
        assert_eq!(c.records[1].ts, 3_000_000_123);
        assert_eq!(c.records[1].link, LinkType::Raw);
        let mut bad = f.clone();
        bad.extend(epb(7, 0, b"q"));
        assert_eq!(parse(bad).unwrap_err(), Problem::UnknownInterface(7));
        let cut = f[..f.len() - 3].to_vec();
        assert!(matches!(parse(cut), Err(Problem::TruncatedRecord { .. })));
        // Section versions: 1.2 is read as 1.0; 0.1, 1.1 and 2.0 are refused, in any section.
        let versioned = |major: u16, minor: u16| {
            let mut v = f.clone();
            v[12..14].copy_from_slice(&major.to_le_bytes());
            v[14..16].copy_from_slice(&minor.to_le_bytes());
            v
        };
        assert_eq!(parse(versioned(1, 2)).unwrap().len(), 2);
        // A section header too short to hold its version and section length.
        let mut short = block(0x0a0d0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0]);
        short.extend_from_slice(&f[28..]);
        assert_eq!(
            parse(short).unwrap_err(),
            Problem::Malformed("short section header")
        );
        // Options must fit their block, in the section header as in interface blocks (a
        // comment of 4 bytes fits; one that claims 0x3030 bytes does not).
        let shb = |opt: &[u8]| {
            let head = [0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
            [
                block(0x0a0d0d0a, &[&head[..], &[0xff; 4], opt].concat()),
                f[28..].to_vec(),
            ]
            .concat()
        };
        assert_eq!(
            parse(shb(&[1, 0, 4, 0, b'h', b'i', b'!', 0]))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse(shb(&[1, 0, 0x30, 0x30, b'h', b'i', b'!', 0])).unwrap_err(),
            Problem::Malformed("section option runs past its block")
        );
        let mut idb = f[..28].to_vec();
        idb.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0, 9, 0, 8, 0, 6, 0, 0, 0]));
        assert_eq!(
            parse(idb).unwrap_err(),
            Problem::Malformed("interface option runs past its block")
        );
        for (major, minor) in [(0, 1), (1, 1), (2, 0)] {
            assert_eq!(
                parse(versioned(major, minor)).unwrap_err(),
                Problem::UnsupportedVersion { major, minor }
            );
            let mut two = f.clone();
            two.extend_from_slice(&versioned(major, minor)[..28]);
            assert_eq!(
                parse(two).unwrap_err(),
                Problem::UnsupportedVersion { major, minor }
            );
        }
    }
}
