//! Capture files: classic pcap (micro- and nanosecond, either byte order) and pcapng
//! (sections, interfaces with their own link types and timestamp resolutions; enhanced,
//! simple and obsolete packet blocks), read whole into memory ([`load`]) or one record at a
//! time ([`open`]).
//!
//! Every malformation of the file itself is an error naming the problem; what the frames
//! contain is the engine's business.

use std::fmt;
use std::path::{Path, PathBuf};

use ctrack_protocols::Nanos;

use crate::packet::LinkType;

/// Largest record ctrack believes (a capture claiming more is corrupt).
pub const MAX_RECORD: u32 = 64 << 20;

/// The latest time a capture gives a packet, in nanoseconds since 1970: the latest a signed
/// 64-bit count of nanoseconds holds (Linux's `ktime_t`), in the year 2262. A pcapng timestamp
/// past it (64 bits of units, as a damaged file may hold) is read as this time, so that the
/// timeouts a replay adds to it cannot overflow. Classic pcap's 32-bit seconds end in 2106.
pub const MAX_TIME: u64 = i64::MAX as u64;

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
    let data = std::fs::read(path).map_err(|e| err(io_problem(path, &e)))?;
    parse(data).map_err(err)
}

/// Parses a capture held in memory; any problem is an error.
pub fn parse(data: Vec<u8>) -> Result<Capture, Problem> {
    match parse_prefix(data)? {
        (cap, None) => Ok(cap),
        (_, Some(problem)) => Err(problem),
    }
}

/// Reads a capture file as far as it can be read: see [`parse_prefix`].
pub fn load_prefix(path: &Path) -> Result<(Capture, Option<CaptureError>), CaptureError> {
    let err = |problem| CaptureError {
        path: path.to_path_buf(),
        problem,
    };
    let data = std::fs::read(path).map_err(|e| err(io_problem(path, &e)))?;
    let (cap, problem) = parse_prefix(data).map_err(err)?;
    Ok((cap, problem.map(err)))
}

/// Parses as much of a capture held in memory as can be read, as a replay reads it: the
/// records before the first bad one, a classic pcap record the data ends inside as the bytes
/// it holds (see [`CaptureReader::cut_short`]), and the problem that stopped the reading, if
/// any. A problem with the file's header is an error: nothing can be read.
///
/// ```
/// let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
/// pcap.extend_from_slice(&[0; 8]);
/// pcap.extend_from_slice(&65535u32.to_le_bytes());
/// pcap.extend_from_slice(&101u32.to_le_bytes()); // raw IP
/// for held in [1, 3] {
///     pcap.extend_from_slice(&[0; 8]);
///     pcap.extend_from_slice(&20u32.to_le_bytes()); // claims 20 bytes
///     pcap.extend_from_slice(&20u32.to_le_bytes());
///     pcap.extend_from_slice(&vec![0x45; if held == 1 { 20 } else { held }]);
/// }
/// let (cap, problem) = ctrack::capture::parse_prefix(pcap).unwrap();
/// assert_eq!(cap.len(), 2); // the whole record, and the 3 bytes of the cut one
/// assert_eq!(cap.packets().nth(1).unwrap().2, &[0x45; 3][..]);
/// assert!(problem.unwrap().to_string().contains("truncated record"));
/// ```
pub fn parse_prefix(data: Vec<u8>) -> Result<(Capture, Option<Problem>), Problem> {
    let mut reader = Reader::new(Mem { b: &data, at: 0 })?;
    let mut records = Vec::new();
    let problem = loop {
        match reader.next() {
            Ok(Some(p)) => records.push(Record {
                ts: p.ts,
                link: p.link,
                start: p.start,
                len: p.frame.len(),
            }),
            Ok(None) => break None,
            Err(problem) => {
                // A cut record's header is whole; its frame is the rest of the data.
                let start = reader.src.at + 16;
                if let Some((ts, link)) = reader.cut
                    && start <= data.len()
                {
                    records.push(Record {
                        ts,
                        link,
                        start,
                        len: data.len() - start,
                    });
                }
                break Some(problem);
            }
        }
    };
    drop(reader);
    Ok((Capture { data, records }, problem))
}

/// Opens a capture file to read its packets one at a time, in file order, holding no more
/// than one record in memory (see [`CaptureReader`]). Problems with the file's header are
/// found at once, those of a later record when it is reached.
pub fn open(path: &Path) -> Result<CaptureReader<std::io::BufReader<std::fs::File>>, CaptureError> {
    let err = |problem| CaptureError {
        path: path.to_path_buf(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| err(io_problem(path, &e)))?;
    if path.is_dir() {
        return Err(err(Problem::Io("is a directory".into())));
    }
    CaptureReader::new(std::io::BufReader::with_capacity(1 << 16, file)).map_err(err)
}

/// What a failed read of `path` is called.
fn io_problem(path: &Path, e: &std::io::Error) -> Problem {
    Problem::Io(match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ if path.is_dir() => "is a directory".to_string(),
        _ => e.to_string(),
    })
}

/// A capture read as a stream, one record at a time: the same packets, times and problems as
/// [`parse`] finds in the same bytes, in memory bounded by the largest record
/// ([`MAX_RECORD`]) whatever the capture's size.
///
/// ```
/// let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
/// pcap.extend_from_slice(&[0; 8]);
/// pcap.extend_from_slice(&65535u32.to_le_bytes());
/// pcap.extend_from_slice(&101u32.to_le_bytes()); // raw IP
/// for secs in [5u32, 3] {
///     pcap.extend_from_slice(&secs.to_le_bytes());
///     pcap.extend_from_slice(&[0; 4]);
///     pcap.extend_from_slice(&1u32.to_le_bytes());
///     pcap.extend_from_slice(&1u32.to_le_bytes());
///     pcap.push(0x45);
/// }
/// let mut r = ctrack::capture::CaptureReader::new(&pcap[..]).unwrap();
/// let (ts, _, frame) = r.next_packet().unwrap().unwrap();
/// assert_eq!((ts, frame), (5_000_000_000, &[0x45][..]));
/// assert_eq!(r.next_packet().unwrap().unwrap().0, 3_000_000_000);
/// assert!(r.next_packet().unwrap().is_none());
/// ```
pub struct CaptureReader<R> {
    inner: Reader<Stream<R>>,
}

impl<R: std::io::Read> CaptureReader<R> {
    /// Reads the capture's header from `r`.
    pub fn new(r: R) -> Result<Self, Problem> {
        Ok(CaptureReader {
            inner: Reader::new(Stream {
                r,
                buf: Vec::new(),
                eof: false,
            })?,
        })
    }

    /// The next packet as (time, link type, frame), with the capture's own timestamp; `None`
    /// at the end of the file. After a problem, every call returns it again.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Problem> {
        Ok(self.inner.next()?.map(|p| (p.ts, p.link, p.frame)))
    }

    /// After [`CaptureReader::next_packet`] gave [`Problem::TruncatedRecord`] for a classic
    /// pcap record whose 16-byte header is whole but whose data the file ends inside: that
    /// record as a packet of the bytes the file holds, as a frame cut short by the capture's
    /// snapshot length would be (the kernel oracle's reader sends it so). `None` otherwise,
    /// and for pcapng, whose blocks end with their length.
    ///
    /// ```
    /// let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    /// pcap.extend_from_slice(&[0; 8]);
    /// pcap.extend_from_slice(&65535u32.to_le_bytes());
    /// pcap.extend_from_slice(&101u32.to_le_bytes()); // raw IP
    /// pcap.extend_from_slice(&7u32.to_le_bytes());
    /// pcap.extend_from_slice(&[0; 4]);
    /// pcap.extend_from_slice(&40u32.to_le_bytes()); // claims 40 bytes
    /// pcap.extend_from_slice(&40u32.to_le_bytes());
    /// pcap.extend_from_slice(&[0x45, 0, 0, 40]); // holds 4
    /// let mut r = ctrack::capture::CaptureReader::new(&pcap[..]).unwrap();
    /// assert!(r.next_packet().is_err());
    /// let (ts, _, frame) = r.cut_short().unwrap();
    /// assert_eq!((ts, frame), (7_000_000_000, &[0x45, 0, 0, 40][..]));
    /// ```
    pub fn cut_short(&mut self) -> Option<Packet<'_>> {
        let (ts, link) = self.inner.cut?;
        let held = match self.inner.src.fill(usize::MAX).ok()? {
            Fill::Short(n) => n,
            Fill::Got(_) => return None,
        };
        match self.inner.src.fill(held).ok()? {
            Fill::Got(b) => Some((ts, link, b.get(16..)?)),
            Fill::Short(_) => None,
        }
    }
}

/// A packet as (time, link type, frame).
pub type Packet<'a> = (Nanos, LinkType, &'a [u8]);

/// What a record's bytes are asked for: all `n` of them, or how many the file still holds.
enum Fill<'a> {
    Got(&'a [u8]),
    Short(usize),
}

/// Where a [`Reader`] takes a capture's bytes from, one record or block at a time.
trait Source {
    /// The first `n` bytes from where the last record ended (see [`Source::consume`]).
    fn fill(&mut self, n: usize) -> Result<Fill<'_>, Problem>;
    /// Moves past `n` bytes, all of which [`Source::fill`] gave.
    fn consume(&mut self, n: usize);
}

/// A capture held whole in memory.
struct Mem<'a> {
    b: &'a [u8],
    at: usize,
}

impl Source for Mem<'_> {
    fn fill(&mut self, n: usize) -> Result<Fill<'_>, Problem> {
        let rest = &self.b[self.at..];
        Ok(match rest.get(..n) {
            Some(s) => Fill::Got(s),
            None => Fill::Short(rest.len()),
        })
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

/// A capture read from a stream: `buf` holds the bytes read past the last record, never
/// more than the largest `fill` asked for, nor more than the stream held.
struct Stream<R> {
    r: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: std::io::Read> Source for Stream<R> {
    fn fill(&mut self, n: usize) -> Result<Fill<'_>, Problem> {
        if self.buf.len() < n && !self.eof {
            // Up to the `n` bytes asked for, or the end: the buffer grows with what is read,
            // not with what a record claims (a file may claim 64 MiB and hold a few bytes,
            // which a stream may hand out a few at a time).
            use std::io::Read as _;
            let want = (n - self.buf.len()) as u64;
            let got = (&mut self.r)
                .take(want)
                .read_to_end(&mut self.buf)
                .map_err(|e| Problem::Io(e.to_string()))?;
            self.eof = (got as u64) < want;
        }
        Ok(match self.buf.get(..n) {
            Some(s) => Fill::Got(s),
            None => Fill::Short(self.buf.len()),
        })
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }
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

/// What the file's header said, and what its blocks have said since (pcapng).
enum Format {
    Pcap {
        be: bool,
        nano: bool,
        link: LinkType,
    },
    Pcapng {
        be: bool,
        ifaces: Vec<Iface>,
    },
}

/// One packet a [`Reader`] found: its frame starts at byte `start` of the file.
struct Found<'a> {
    ts: Nanos,
    link: LinkType,
    start: usize,
    frame: &'a [u8],
}

/// Where [`Reader::step`] found the next packet: its time and link type, its frame's offset
/// and length in its record, and the record's length.
struct Next {
    ts: Nanos,
    link: LinkType,
    at: usize,
    len: usize,
    rec: usize,
}

/// Reads the records of a capture from a [`Source`], in order, each checked as it comes.
struct Reader<S> {
    src: S,
    fmt: Format,
    /// Byte offset of the current record or block in the file.
    off: usize,
    /// Bytes of the last packet's record still to be consumed.
    pending: usize,
    /// Blocks read (pcapng), for problems' numbers.
    blocks: usize,
    /// Packets found.
    packets: usize,
    /// The last packet's time (a pcapng simple packet block carries none and keeps it).
    last_ts: Nanos,
    /// The problem that stopped the reading, given again to every later call.
    failed: Option<Problem>,
    /// When that problem is a classic pcap record whose header is whole but whose data the
    /// file ends inside: the record's time and link type (its bytes stay in the source).
    cut: Option<(Nanos, LinkType)>,
}

/// Block type of a pcapng section header, and the pcapng file magic.
const SHB: u32 = 0x0a0d0d0a;

impl<S: Source> Reader<S> {
    fn new(mut src: S) -> Result<Self, Problem> {
        let magic = match src.fill(4)? {
            Fill::Got(b) => [b[0], b[1], b[2], b[3]],
            Fill::Short(0) => return Err(Problem::Empty),
            Fill::Short(_) => return Err(Problem::TruncatedHeader),
        };
        let (fmt, off) = match u32::from_le_bytes(magic) {
            m @ (0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1) => {
                let Fill::Got(h) = src.fill(24)? else {
                    return Err(Problem::TruncatedHeader);
                };
                let be = matches!(m, 0xd4c3b2a1 | 0x4d3cb2a1);
                let nano = matches!(m, 0xa1b23c4d | 0x4d3cb2a1);
                let dlt = Rd { b: h, be }.u32(20).ok_or(Problem::TruncatedHeader)? & 0x0fff_ffff;
                let link = link_of(dlt & 0xffff)?;
                src.consume(24);
                (Format::Pcap { be, nano, link }, 24)
            }
            SHB => (
                Format::Pcapng {
                    be: false,
                    ifaces: Vec::new(),
                },
                0,
            ),
            _ => return Err(Problem::NotACapture(u32::from_be_bytes(magic))),
        };
        Ok(Reader {
            src,
            fmt,
            off,
            pending: 0,
            blocks: 0,
            packets: 0,
            last_ts: 0,
            failed: None,
            cut: None,
        })
    }

    /// The next packet, or `None` at the end of the file.
    fn next(&mut self) -> Result<Option<Found<'_>>, Problem> {
        if let Some(p) = &self.failed {
            return Err(p.clone());
        }
        if self.pending > 0 {
            self.src.consume(self.pending);
            self.off += self.pending;
            self.pending = 0;
        }
        match self.step() {
            Ok(Some(Next {
                ts,
                link,
                at,
                len,
                rec,
            })) => {
                self.packets += 1;
                self.last_ts = ts;
                self.pending = rec;
                let start = self.off + at;
                // The record's bytes stay in the source until consumed: this reads nothing.
                match self.src.fill(rec)? {
                    Fill::Got(b) => Ok(Some(Found {
                        ts,
                        link,
                        start,
                        frame: &b[at..at + len],
                    })),
                    Fill::Short(_) => Err(Problem::Io("the capture changed while read".into())),
                }
            }
            Ok(None) => Ok(None),
            Err(p) => {
                self.failed = Some(p.clone());
                Err(p)
            }
        }
    }

    /// Reads up to the next packet; `None` at the end of the file.
    fn step(&mut self) -> Result<Option<Next>, Problem> {
        match &mut self.fmt {
            Format::Pcap { be, nano, link } => {
                let (be, nano, link) = (*be, *nano, *link);
                let index = self.packets;
                let off = self.off;
                let truncated = Problem::TruncatedRecord { index, offset: off };
                let h = match self.src.fill(16)? {
                    Fill::Got(h) => Rd { b: h, be },
                    Fill::Short(0) => return Ok(None),
                    Fill::Short(_) => return Err(truncated),
                };
                let (sec, frac, incl) = match (h.u32(0), h.u32(4), h.u32(8)) {
                    (Some(a), Some(b), Some(c)) => (a, b, c),
                    _ => return Err(truncated),
                };
                if incl > MAX_RECORD {
                    return Err(Problem::AbsurdLength {
                        index,
                        offset: off,
                        len: incl as u64,
                    });
                }
                let rec = 16 + incl as usize;
                let ts = sec as u64 * 1_000_000_000
                    + if nano {
                        frac as u64
                    } else {
                        frac as u64 * 1000
                    };
                if let Fill::Short(_) = self.src.fill(rec)? {
                    self.cut = Some((ts, link));
                    return Err(truncated);
                }
                Ok(Some(Next {
                    ts,
                    link,
                    at: 16,
                    len: incl as usize,
                    rec,
                }))
            }
            Format::Pcapng { be, ifaces } => loop {
                let (off, block) = (self.off, self.blocks);
                let truncated = Problem::TruncatedRecord {
                    index: block,
                    offset: off,
                };
                let head = match self.src.fill(12)? {
                    Fill::Got(h) => h,
                    Fill::Short(0) => return Ok(None),
                    Fill::Short(_) if off == 0 => return Err(Problem::TruncatedHeader),
                    Fill::Short(_) => return Err(truncated),
                };
                // The section header's type reads the same either way round; every other
                // block's type is in its section's byte order.
                let le = Rd { b: head, be: false };
                if le.u32(0) == Some(SHB) {
                    // Section header: its byte-order magic decides the section's endianness.
                    match le.u32(8) {
                        Some(0x1a2b3c4d) => *be = false,
                        Some(0x4d3c2b1a) => *be = true,
                        _ => {
                            return Err(Problem::Malformed(
                                "bad byte-order magic in section header",
                            ));
                        }
                    }
                    ifaces.clear();
                }
                let head = Rd { b: head, be: *be };
                let btype = head.u32(0).unwrap_or(0);
                let blen = head.u32(4).unwrap_or(0) as usize;
                if blen < 12 || !blen.is_multiple_of(4) || blen as u64 > MAX_RECORD as u64 + 64 {
                    return Err(Problem::AbsurdLength {
                        index: block,
                        offset: off,
                        len: blen as u64,
                    });
                }
                let data = match self.src.fill(blen)? {
                    Fill::Got(d) => d,
                    Fill::Short(_) if btype == SHB && off == 0 => {
                        return Err(Problem::TruncatedHeader);
                    }
                    Fill::Short(_) => return Err(truncated),
                };
                let r = Rd { b: data, be: *be };
                let (body, body_end) = (8, blen - 4);
                let mut packet = None;
                match btype {
                    SHB => {
                        // Another major version may lay out blocks differently; 1.1 was never
                        // defined.
                        let short = Problem::Malformed("short section header");
                        if body + 16 > body_end {
                            return Err(short);
                        }
                        let major = r.u16(body + 4).ok_or(short.clone())?;
                        let minor = r.u16(body + 6).ok_or(short)?;
                        if major != 1 || !matches!(minor, 0 | 2) {
                            return Err(Problem::UnsupportedVersion { major, minor });
                        }
                        // Nothing in them is used, but they must fit, as libpcap and Wireshark
                        // insist.
                        if options(&r, body + 16, body_end).any(|o| o.is_none()) {
                            return Err(Problem::Malformed("section option runs past its block"));
                        }
                    }
                    1 => ifaces.push(interface(&r, body, body_end)?),
                    6 | 2 | 3 => {
                        let (iface_id, ts_units, cap, data_at) = packet_fields(&r, btype, ifaces)?;
                        if data_at + cap > body_end {
                            return Err(Problem::AbsurdLength {
                                index: self.packets,
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
                                ns.clamp(0, MAX_TIME as i128) as u64
                            }
                            // Simple packet blocks carry no time: keep the previous packet's.
                            None => self.last_ts,
                        };
                        packet = Some(Next {
                            ts,
                            link,
                            at: data_at,
                            len: cap,
                            rec: blen,
                        });
                    }
                    _ => {}
                }
                self.blocks += 1;
                if packet.is_some() {
                    return Ok(packet);
                }
                self.src.consume(blen);
                self.off += blen;
            },
        }
    }
}

/// An interface description block's link type, snapshot length and timestamp options.
fn interface(r: &Rd<'_>, body: usize, body_end: usize) -> Result<Iface, Problem> {
    let dlt = r
        .u16(body)
        .ok_or(Problem::Malformed("short interface block"))? as u32;
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
    for opt in options(r, body + 8, body_end) {
        let (code, v, len) =
            opt.ok_or(Problem::Malformed("interface option runs past its block"))?;
        match code {
            9 if len >= 1 => {
                let res = r.b[v];
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
                let hi = r.u32(if r.be { v } else { v + 4 }).unwrap_or(0) as u64;
                let lo = r.u32(if r.be { v + 4 } else { v }).unwrap_or(0) as u64;
                iface.offset = (hi << 32 | lo) as i64;
            }
            _ => {}
        }
    }
    Ok(iface)
}

/// A packet block's interface, timestamp units (none in a simple packet block), captured
/// length and where its data starts, all within the block.
fn packet_fields(
    r: &Rd<'_>,
    btype: u32,
    ifaces: &[Iface],
) -> Result<(u32, Option<u64>, usize, usize), Problem> {
    let body = 8;
    let ts = |hi: u32, lo: u32| Some((hi as u64) << 32 | lo as u64);
    Ok(match btype {
        6 => match (
            r.u32(body),
            r.u32(body + 4),
            r.u32(body + 8),
            r.u32(body + 12),
        ) {
            (Some(id), Some(hi), Some(lo), Some(cap)) => (id, ts(hi, lo), cap as usize, body + 20),
            _ => return Err(Problem::Malformed("short enhanced packet block")),
        },
        2 => match (
            r.u16(body),
            r.u32(body + 4),
            r.u32(body + 8),
            r.u32(body + 12),
        ) {
            (Some(id), Some(hi), Some(lo), Some(cap)) => {
                (id as u32, ts(hi, lo), cap as usize, body + 20)
            }
            _ => return Err(Problem::Malformed("short packet block")),
        },
        _ => {
            let orig = r
                .u32(body)
                .ok_or(Problem::Malformed("short simple packet block"))?
                as usize;
            let room = (r.b.len() - 4).saturating_sub(body + 4);
            let snap = ifaces.first().map_or(u32::MAX, |i| i.snaplen) as usize;
            let snap = if snap == 0 { usize::MAX } else { snap };
            (0, None, orig.min(room).min(snap), body + 4)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stream that hands out at most the next of `sizes` bytes a read (cycling), and fails
    /// with an I/O error once `fail_at` bytes have been read.
    struct Chunky<'a> {
        b: &'a [u8],
        sizes: Vec<usize>,
        k: usize,
        read: usize,
        fail_at: usize,
    }

    impl std::io::Read for Chunky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.read >= self.fail_at {
                return Err(std::io::Error::other("disk on fire"));
            }
            self.k += 1;
            let want = self.sizes[self.k % self.sizes.len()];
            if want == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(want).min(self.b.len());
            buf[..n].copy_from_slice(&self.b[..n]);
            self.b = &self.b[n..];
            self.read += n;
            Ok(n)
        }
    }

    /// A packet's time, link type and a copy of its frame.
    type Owned = (Nanos, LinkType, Vec<u8>);

    /// Everything a streamed read of `b` gives: its packets, then its end or its problem.
    fn streamed(b: &[u8], sizes: Vec<usize>, fail_at: usize) -> (Vec<Owned>, Option<Problem>) {
        let src = Chunky {
            b,
            sizes,
            k: 0,
            read: 0,
            fail_at,
        };
        let mut got = Vec::new();
        let mut r = match CaptureReader::new(src) {
            Ok(r) => r,
            Err(p) => return (got, Some(p)),
        };
        loop {
            match r.next_packet() {
                Ok(Some((ts, link, f))) => got.push((ts, link, f.to_vec())),
                Ok(None) => return (got, None),
                Err(p) => {
                    // Fused: the problem again, and no more packets.
                    assert_eq!(r.next_packet().unwrap_err(), p);
                    return (got, Some(p));
                }
            }
        }
    }

    /// A valid capture of a few packets: classic pcap either way round, or pcapng (either byte
    /// order) with two interfaces (one of nanoseconds) and every kind of packet block.
    fn sample(kind: u8, frames: &[Vec<u8>]) -> Vec<u8> {
        match kind % 3 {
            0 => {
                let recs: Vec<(u32, u32, &[u8])> = frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (i as u32 * 3, 7, &f[..]))
                    .collect();
                pcap(&recs, kind & 4 != 0, 1)
            }
            _ => {
                // pcapng, little-endian (kind % 3 == 1) or big-endian (2).
                let be = kind % 3 == 2;
                let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
                let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
                let blk = |t: u32, body: &[u8]| {
                    let len = 12 + body.len().div_ceil(4) * 4;
                    let mut v = w32(t).to_vec();
                    v.extend_from_slice(&w32(len as u32));
                    v.extend_from_slice(body);
                    v.resize(len - 4, 0);
                    v.extend_from_slice(&w32(len as u32));
                    v
                };
                let mut v = blk(
                    0x0a0d0d0a,
                    &[&w32(0x1a2b3c4d)[..], &w16(1), &w16(0), &[0xff; 8]].concat(),
                );
                v.extend(blk(1, &[&w16(1)[..], &w16(0), &w32(0x40000)].concat()));
                // Raw IP, nanoseconds (if_tsresol = 9).
                let opts = [&w16(9)[..], &w16(1), &[9, 0, 0, 0], &w16(0), &w16(0)].concat();
                v.extend(blk(
                    1,
                    &[&w16(101)[..], &w16(0), &w32(0x40000), &opts].concat(),
                ));
                for (i, f) in frames.iter().enumerate() {
                    let mut b = Vec::new();
                    match i % 3 {
                        0 | 1 => {
                            if i % 3 == 0 {
                                b.extend_from_slice(&w32((i % 2) as u32));
                            } else {
                                b.extend_from_slice(&w16((i % 2) as u16));
                                b.extend_from_slice(&[0, 0]);
                            }
                            b.extend_from_slice(&w32(0));
                            b.extend_from_slice(&w32(i as u32 * 1000 + 5));
                            b.extend_from_slice(&w32(f.len() as u32));
                            b.extend_from_slice(&w32(f.len() as u32));
                            b.extend_from_slice(f);
                            v.extend(blk(if i % 3 == 0 { 6 } else { 2 }, &b));
                        }
                        _ => {
                            b.extend_from_slice(&w32(f.len() as u32));
                            b.extend_from_slice(f);
                            v.extend(blk(3, &b));
                        }
                    }
                }
                v
            }
        }
    }

    #[test]
    fn pcapng_reads_the_same_either_byte_order() {
        // The same packets in a little-endian and a big-endian section (every block type and
        // field, the interfaces' link types and time resolutions) read alike.
        let frames: Vec<Vec<u8>> = (0..7u8).map(|i| vec![0x45, i, 1, 2, 3]).collect();
        let (le, be) = (
            parse(sample(1, &frames)).unwrap(),
            parse(sample(2, &frames)).unwrap(),
        );
        let read = |c: &Capture| -> Vec<(Nanos, LinkType, Vec<u8>)> {
            c.packets().map(|(t, l, f)| (t, l, f.to_vec())).collect()
        };
        assert_eq!(le.len(), 7);
        assert_eq!(read(&le), read(&be));
        assert_eq!(
            (read(&be)[0].0, read(&be)[0].1),
            (5_000, LinkType::Ethernet)
        );
        assert_eq!((read(&be)[3].0, read(&be)[3].1), (3_005, LinkType::Raw));
    }

    proptest! {
        /// A capture read as a stream, whatever sizes its reads come in, gives what `parse`
        /// finds in the same bytes: the same packets, or, where `parse` refuses the file, some
        /// of its packets and then the same problem; and an I/O error as a problem of its own.
        #[test]
        fn a_stream_reads_what_memory_parses(
            kind in any::<u8>(),
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..8),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            sizes in proptest::collection::vec(0usize..40, 1..6),
            fail in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut b = sample(kind, &frames);
            if flips.is_empty() && cut.is_none() {
                // Unharmed, the sample holds every frame.
                let c = parse(b.clone()).unwrap();
                let all: Vec<&[u8]> = c.packets().map(|p| p.2).collect();
                prop_assert_eq!(all, frames.iter().map(|f| &f[..]).collect::<Vec<_>>());
            }
            for (at, x) in flips {
                let i = at.index(b.len());
                b[i] ^= x;
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len() + 1));
            }
            let sizes = if sizes.iter().all(|&s| s == 0) { vec![1] } else { sizes };
            let fail_at = fail.map_or(usize::MAX, |f| f.index(b.len() + 1));
            let (got, problem) = streamed(&b, sizes, fail_at);
            if let Some(Problem::Io(e)) = &problem {
                prop_assert!(e.contains("disk on fire"));
                prop_assert!(fail_at <= b.len());
                return Ok(());
            }
            // The same bytes in memory, read record by record as `parse` reads them.
            let mut want = Vec::new();
            let mut want_problem = None;
            match Reader::new(Mem { b: &b, at: 0 }) {
                Err(p) => want_problem = Some(p),
                Ok(mut r) => loop {
                    match r.next() {
                        Ok(Some(p)) => want.push((p.ts, p.link, p.frame.to_vec())),
                        Ok(None) => break,
                        Err(p) => {
                            want_problem = Some(p);
                            break;
                        }
                    }
                },
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(&problem, &want_problem);
            match parse(b.clone()) {
                Ok(c) => {
                    prop_assert_eq!(problem, None);
                    let all: Vec<_> = c.packets().map(|(t, l, f)| (t, l, f.to_vec())).collect();
                    prop_assert_eq!(got, all);
                }
                Err(p) => prop_assert_eq!(problem, Some(p)),
            }
        }
    }

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
    fn a_record_cut_by_the_files_end_is_given_as_the_bytes_it_holds() {
        let whole = pcap(&[(1, 0, b"abcd"), (2, 0, b"efghij")], false, 101);
        let reader = |b: &[u8]| CaptureReader::new(std::io::Cursor::new(b.to_vec()));
        // Cut inside the last record's data: the first record, then its bytes so far.
        let cut = &whole[..whole.len() - 2];
        let mut r = reader(cut).unwrap();
        assert_eq!(r.next_packet().unwrap().unwrap().2, b"abcd");
        assert!(r.cut_short().is_none());
        assert!(matches!(
            r.next_packet(),
            Err(Problem::TruncatedRecord { index: 1, .. })
        ));
        assert_eq!(
            r.cut_short(),
            Some((2_000_000_000, LinkType::Raw, &b"efgh"[..]))
        );
        // Asked again, the same bytes: nothing was consumed.
        assert_eq!(r.cut_short().map(|p| p.2.len()), Some(4));
        // Cut right after the record's header: an empty frame, as the oracle reads it; cut
        // inside the header: no record at all.
        for (end, held) in [(whole.len() - 6, Some(0)), (whole.len() - 6 - 16 + 5, None)] {
            let mut r = reader(&whole[..end]).unwrap();
            r.next_packet().unwrap();
            assert!(r.next_packet().is_err());
            assert_eq!(r.cut_short().map(|p| p.2.len()), held, "{end}");
        }
        // A whole file: nothing cut.
        let mut r = reader(&whole).unwrap();
        while r.next_packet().unwrap().is_some() {}
        assert!(r.cut_short().is_none());
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
        // A time past 2262 (2^64 - 1 nanoseconds, or a hundredth of that many microseconds) is
        // read as the latest there is.
        let mut late = f.clone();
        late.extend(epb(1, u64::MAX, b"z"));
        late.extend(epb(0, u64::MAX / 100, b"z"));
        let c = parse(late).unwrap();
        assert_eq!((c.records[2].ts, c.records[3].ts), (MAX_TIME, MAX_TIME));
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
