//! The SIP helper's reading (the kernel's `nf_conntrack_sip`, over UDP): which requests and
//! responses it reads, the media streams and registrations it expects from them, and when it
//! drops the packet.
//!
//! This is the behaviour of Linux 6.18 (with the 6.18-stable backport of "netfilter:
//! nf_conntrack_sip: don't use simple_strtoul", upstream 8cf6809cddcb, which the kernel oracle
//! runs) with `sip_direct_media=1`, `sip_direct_signalling=1`, `sip_external_media=0` and no
//! NAT, reproduced decision for decision, including its quirks: headers are searched in the
//! whole datagram (the SDP body too), a header name that matches but is not followed by a colon
//! ends the search, an SDP media line only counts towards the limit of three when it is
//! handled, a SIP address must be followed by something (a port or any byte) before the end of
//! the payload, and numbers are decimal, at most 11 digits and at most `u32::MAX` (anything
//! else does not read as a number at all).
//!
//! Where the kernel still reads a byte past the end of the payload (the colon after a header
//! name that ends the payload, a `transport=` value at its very end), this reader sees a NUL
//! byte: the bytes the kernel would find there are not part of the packet.
//!
//! ```
//! use ctrack_helpers::sip::{Class, Conn, Expect, Master, Outcome, help_udp};
//!
//! #[derive(Default)]
//! struct Log(Vec<(Class, u16)>);
//! impl Expect for Log {
//!     fn flush(&mut self, _media: bool) {}
//!     fn media(&mut self, class: Class, _addr: [u8; 16], port: u16) -> bool {
//!         self.0.push((class, port));
//!         true
//!     }
//!     fn signalling(&mut self, _: [u8; 16], _: u8, _: u16) -> bool { true }
//!     fn refresh_signalling(&mut self, _: [u8; 16], _: u8, _: u16, _: u32) -> bool { false }
//! }
//!
//! let ip = |a: [u8; 4]| { let mut x = [0; 16]; x[..4].copy_from_slice(&a); x };
//! let conn = Conn { v6: false, src: ip([10, 0, 0, 1]), dst: ip([10, 0, 0, 2]), expected: false };
//! let msg = b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n\
//!             v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 49170 RTP/AVP 0\r\n";
//! let (mut master, mut log) = (Master::default(), Log::default());
//! assert_eq!(help_udp(&mut master, &conn, msg, &mut log), Outcome::Accept);
//! assert_eq!(log.0, [(Class::Audio, 49170)]);
//! assert_eq!(master.invite_cseq, 1);
//! ```

/// The master connection's timeout the helper sets on every packet with a payload (seconds).
pub const SIP_TIMEOUT: u32 = 3600;

/// The port a SIP URI without one means.
const SIP_PORT: u16 = 5060;

/// Shortest payload the helper reads: the length of `"SIP/2.0 200"`.
const SHORTEST: usize = 11;

/// Layer-4 protocol numbers of the transports a Contact may name.
const UDP: u8 = 17;
const TCP: u8 = 6;

/// Expectation classes, numbered as the kernel numbers them (index into the helper's policies:
/// signalling 1 per master, audio 4, video 4, image 2, each 180 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Class {
    /// Incoming calls to a registered contact (`REGISTER`).
    Signalling = 0,
    /// An SDP `m=audio` stream.
    Audio = 1,
    /// An SDP `m=video` stream.
    Video = 2,
    /// An SDP `m=image` stream (T.38 fax).
    Image = 3,
}

/// What the helper keeps per master connection (the kernel's `nf_ct_sip_master`, minus NAT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Master {
    /// CSeq of the last `REGISTER` request the helper accepted; a `REGISTER` response is only
    /// read when its CSeq equals it.
    pub register_cseq: u32,
    /// CSeq of the last `INVITE` request the helper accepted; an error response to
    /// `INVITE`, `UPDATE` or `PRACK` with this CSeq removes the media expectations.
    pub invite_cseq: u32,
}

/// The connection as a packet in direction `dir` sees it. Addresses are 16 bytes; an IPv4
/// address fills the first 4 and the rest is zero.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The connection is IPv6 (addresses in the message are read as IPv6 ones).
    pub v6: bool,
    /// `tuple[dir].src`: the sender of this packet.
    pub src: [u8; 16],
    /// `tuple[dir].dst`: its receiver.
    pub dst: [u8; 16],
    /// The connection has the EXPECTED status (it was itself expected).
    pub expected: bool,
}

/// What the helper asks of the expectation table (the engine implements it).
///
/// Calls come in message order, at most one message per packet (UDP); a call returning
/// `false` ends the reading with [`Outcome::Drop`] at once.
pub trait Expect {
    /// flush_expectations(ct, media): media = true removes every media (non-signalling)
    /// expectation of this master; false removes the first signalling one.
    fn flush(&mut self, media: bool);
    /// set_expected_rtp_rtcp after its direct-media check has passed (the parser checks that
    /// `addr` equals `Conn::src` and silently accepts otherwise): the engine expects UDP from the
    /// peer to `addr` on the RTP/RTCP pair of `port`. Returns false when the packet must be
    /// dropped (NF_DROP).
    ///
    /// `port` is the SDP port as written (1024..=65535, possibly odd); the kernel first looks
    /// for an existing expectation on exactly (peer, `addr`, UDP, `port`) of another master
    /// with the same helper and `class`, and when there is one, accepts without expecting.
    /// Otherwise it expects `port & !1` (RTP) then `(port & !1) + 1` (RTCP), both with
    /// `NF_CT_EXP_F_SKIP_MASTER`, treating `-EALREADY` as success, removing the RTP one if
    /// the RTCP one fails after the RTP one was newly added.
    fn media(&mut self, class: Class, addr: [u8; 16], port: u16) -> bool;
    /// process_register_request's expectation for incoming signalling from the peer to `addr`:`port`
    /// over `proto` (17 UDP or 6 TCP). Returns false when the packet must be dropped.
    ///
    /// `proto` is the connection's own (a Contact asking for another transport is ignored). The
    /// kernel's expectation is permanent and inactive, gets the SIP helper for the connection
    /// it creates, and is added without flags (replacing this master's identical one).
    fn signalling(&mut self, addr: [u8; 16], proto: u8, port: u16) -> bool;
    /// refresh_signalling_expectation(addr, proto, port, expires): true when one was found and refreshed.
    ///
    /// The kernel rearms the first pending signalling expectation of this master on exactly
    /// (`addr`, `proto`, `port`) to `expires * HZ` jiffies from now (an `unsigned int`
    /// product, so it wraps), and clears its inactive flag.
    fn refresh_signalling(&mut self, addr: [u8; 16], proto: u8, port: u16, expires: u32) -> bool;
}

/// The helper's verdict on the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// NF_ACCEPT.
    Accept,
    /// NF_DROP.
    Drop,
}

/// Reads one UDP payload of a SIP connection (what `sip_help_udp` does after refreshing the
/// master, which the engine does itself for any non-empty payload): payloads shorter than
/// "SIP/2.0 200" are accepted unread; then process_sip_msg.
pub fn help_udp(m: &mut Master, c: &Conn, payload: &[u8], x: &mut impl Expect) -> Outcome {
    if payload.len() < SHORTEST {
        return Outcome::Accept;
    }
    message(m, c, payload, x, UDP)
}

/// Reads one TCP segment's payload of an established SIP connection (what `sip_help_tcp`
/// does after refreshing the master, which the engine does itself): payloads shorter than
/// "SIP/2.0 200" are accepted unread; then each whole message in turn, a message being framed
/// by its `Content-Length` and the blank line after it. Reading stops at a message without a
/// readable length or blank line, and a message that runs past the segment is not read.
///
/// ```
/// use ctrack_helpers::sip::{Class, Conn, Expect, Master, Outcome, help_tcp};
/// struct Asked(Vec<u16>);
/// impl Expect for Asked {
///     fn flush(&mut self, _: bool) {}
///     fn media(&mut self, _: Class, _: [u8; 16], port: u16) -> bool {
///         self.0.push(port);
///         true
///     }
///     fn signalling(&mut self, _: [u8; 16], _: u8, _: u16) -> bool { true }
///     fn refresh_signalling(&mut self, _: [u8; 16], _: u8, _: u16, _: u32) -> bool { false }
/// }
/// let mut a = [0u8; 16];
/// a[..4].copy_from_slice(&[10, 0, 0, 1]);
/// let c = Conn { v6: false, src: a, dst: a, expected: false };
/// let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
/// let msg = format!(
///     "ACK sip:b@10.0.0.2 SIP/2.0\r\nCSeq: 1 ACK\r\nContent-Length: {}\r\n\r\n{sdp}",
///     sdp.len()
/// );
/// let mut x = Asked(vec![]);
/// let two = format!("{msg}{msg}");
/// assert_eq!(help_tcp(&mut Master::default(), &c, two.as_bytes(), &mut x), Outcome::Accept);
/// assert_eq!(x.0, [4000, 4000]);
/// ```
pub fn help_tcp(m: &mut Master, c: &Conn, payload: &[u8], x: &mut impl Expect) -> Outcome {
    if payload.len() < SHORTEST {
        return Outcome::Accept;
    }
    let mut rest = payload;
    loop {
        let t = Text { b: rest, v6: c.v6 };
        let Hit::Found { off, .. } = t.header(0, &CONTENT_LENGTH) else {
            break;
        };
        let (clen, end) = t.uint(off, t.len());
        if end == off {
            break;
        }
        let Some(blank) = rest
            .get(end..)
            .and_then(|r| memchr::memmem::find(r, b"\r\n\r\n"))
        else {
            break;
        };
        let len = end + blank + 4 + clen as usize;
        let Some(msg) = rest.get(..len) else {
            return Outcome::Accept;
        };
        let out = message(m, c, msg, x, TCP);
        if out != Outcome::Accept {
            return out;
        }
        rest = &rest[len..];
    }
    Outcome::Accept
}

/// One SIP message (`process_sip_msg`) on a connection of protocol `proto`: a response when
/// it starts with "SIP/2.0 ", a request otherwise.
fn message(m: &mut Master, c: &Conn, payload: &[u8], x: &mut impl Expect, proto: u8) -> Outcome {
    let mut r = Reader {
        t: Text {
            b: payload,
            v6: c.v6,
        },
        c,
        m,
        x,
        proto,
    };
    if r.t.eq_nocase(0, b"SIP/2.0 ") {
        r.response()
    } else {
        r.request()
    }
}

// ---------------------------------------------------------------------------------------------
// Methods

/// The methods the helper reads, in the order it tries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Invite,
    Update,
    Ack,
    Prack,
    Bye,
    Register,
}

const METHODS: [(&[u8], Method); 6] = [
    (b"INVITE", Method::Invite),
    (b"UPDATE", Method::Update),
    (b"ACK", Method::Ack),
    (b"PRACK", Method::Prack),
    (b"BYE", Method::Bye),
    (b"REGISTER", Method::Register),
];

impl Method {
    /// Whether the helper reads responses to this method (every method has a request reader).
    fn reads_responses(self) -> bool {
        !matches!(self, Method::Ack | Method::Bye)
    }
}

// ---------------------------------------------------------------------------------------------
// Byte classes (the kernel's <linux/ctype.h>, whose letters include Latin-1 ones)

fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 0xc0 && c != 0xd7 && c != 0xf7)
}

fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

fn is_eol(c: u8) -> bool {
    c == b'\r' || c == b'\n'
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Where `a` or `b` first occurs in `s`: the first [`NEAR`] bytes a word at a time (lines and
/// words are mostly short, and a crafted message may be all line ends, so this part must cost
/// little per call), the rest by memchr's vector search (a crafted message may also be 64 KiB
/// without either byte).
#[inline(always)]
fn find2(a: u8, b: u8, s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let (wa, wb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut i = 0;
    while i < NEAR {
        let Some(w) = s.get(i..i + 8) else {
            // Fewer than eight bytes left: one by one.
            return s
                .get(i..)?
                .iter()
                .position(|&c| c == a || c == b)
                .map(|k| i + k);
        };
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // A byte of `x` or `y` is zero where `w` holds `a` or `b`; the lowest flagged byte
        // is the first such (a borrow only flags bytes above a zero one).
        let (x, y) = (w ^ wa, w ^ wb);
        let z = (x.wrapping_sub(ONES) & !x | y.wrapping_sub(ONES) & !y) & HIGH;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    find2_far(a, b, &s[i..]).map(|k| i + k)
}

/// How many bytes [`find2`] looks at before it hands over to memchr.
const NEAR: usize = 64;

#[inline(never)]
fn find2_far(a: u8, b: u8, s: &[u8]) -> Option<usize> {
    memchr::memchr2(a, b, s)
}

// ---------------------------------------------------------------------------------------------
// Address literals (the kernel's in4_pton / in6_pton with no delimiter: any byte that is not a
// hex digit, '.' or ':' ends the address, and so does the end of the given length)

// Byte classes, and (as a state) the classes that may come next: a hex digit, a decimal digit,
// a colon (single, second of "::", or either), a dot, the end, and "no word to store".
const X_HEX: u32 = 0x0001_0000;
const X_DEC: u32 = 0x0002_0000;
const X_COLON_MASK: u32 = 0x0070_0000;
const X_COLON_1: u32 = 0x0010_0000;
const X_COLON_2: u32 = 0x0020_0000;
const X_COLON_1_2: u32 = 0x0040_0000;
const X_DOT: u32 = 0x0080_0000;
const X_END: u32 = 0x1000_0000;
const X_NONE: u32 = 0x2000_0000;

/// Classifies one byte of an address literal: its value with flags, or what separates.
fn classify(c: u8) -> u32 {
    match c {
        b':' => X_COLON_MASK,
        b'.' => X_DOT,
        _ => match (c as char).to_digit(16) {
            Some(v) if v < 10 => v | X_HEX | X_DEC,
            Some(v) => v | X_HEX,
            None => X_END,
        },
    }
}

/// A text the address parsers read, each call given where to start and how many bytes it may
/// read.
struct Lit<'a> {
    b: &'a [u8],
}

impl Lit<'_> {
    /// The byte at `i` when `left` bytes may still be read, else NUL.
    fn byte(&self, i: usize, left: isize) -> u8 {
        if left > 0 {
            self.b.get(i).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Dotted quad at `src` within `len` bytes: the address and where it ends.
    fn v4(&self, src: usize, len: isize) -> Option<([u8; 4], usize)> {
        let (mut s, mut left) = (src, len);
        let mut out = [0u8; 4];
        let mut n = 0usize;
        let mut w: u32 = 0;
        loop {
            let c = classify(self.byte(s, left));
            if c & (X_DEC | X_DOT | X_END | X_COLON_MASK) == 0 {
                return None;
            }
            if c & (X_DOT | X_END | X_COLON_MASK) != 0 {
                if w == 0 {
                    return None;
                }
                *out.get_mut(n)? = w as u8;
                w = 0;
                n += 1;
                if c & (X_END | X_COLON_MASK) != 0 {
                    if n != 4 {
                        return None;
                    }
                    return Some((out, s));
                }
            } else {
                // The flag bits ride along, so a seen digit never leaves w at zero.
                w = w.wrapping_mul(10).wrapping_add(c);
                if w & 0xffff > 255 {
                    return None;
                }
            }
            if n >= 4 {
                return None;
            }
            s += 1;
            left -= 1;
        }
    }

    /// IPv6 literal at `src` within `len` bytes (with `::` and a dotted-quad tail): the
    /// address and where it ends.
    fn v6(&self, src: usize, len: isize) -> Option<([u8; 16], usize)> {
        let mut buf = [0u8; 16];
        let (mut s, mut left) = (src, len);
        let mut d = 0usize;
        let mut gap: Option<usize> = None;
        let mut word_start: Option<usize> = None;
        let mut state = X_COLON_1_2 | X_HEX | X_NONE;
        let mut w: u32 = 0;
        loop {
            let c = classify(self.byte(s, left));
            if c & state == 0 {
                return None;
            }
            if c & (X_END | X_COLON_MASK) != 0 {
                if state & X_NONE == 0 {
                    *buf.get_mut(d)? = (w >> 8) as u8;
                    *buf.get_mut(d + 1)? = w as u8;
                    d += 2;
                }
                w = 0;
                if c & X_END != 0 {
                    break;
                }
                state = match state & X_COLON_MASK {
                    X_COLON_2 => {
                        gap = Some(d);
                        if d >= 16 {
                            X_HEX | X_END | X_NONE
                        } else {
                            X_HEX | X_END
                        }
                    }
                    x if x == X_COLON_1 | X_COLON_1_2 => X_HEX | X_COLON_2,
                    X_COLON_1 => X_HEX,
                    X_COLON_1_2 => X_COLON_2,
                    _ => 0,
                };
                word_start = Some(s + 1);
            } else if c & X_DOT != 0 {
                // The last word was the first part of a dotted quad: read that from its start.
                let from = word_start.unwrap_or(s);
                let back = s.saturating_sub(from) as isize;
                let (q, end) = self.v4(from, left.saturating_add(back))?;
                buf.get_mut(d..d + 4)?.copy_from_slice(&q);
                d += 4;
                s = end;
                break;
            } else {
                w = (w << 4) | (c & 0xff);
                state = X_COLON_1 | X_END;
                if w & 0xf000 == 0 {
                    state |= X_HEX;
                }
                if gap.is_none() && d + 2 < 16 {
                    state |= X_COLON_1_2;
                    state &= !X_END;
                }
                if d + 2 >= 16 {
                    state &= !(X_COLON_1 | X_COLON_1_2);
                }
            }
            if (gap.is_some() && d + 4 < 16) || d + 4 == 16 {
                state |= X_DOT;
            }
            if d >= 16 {
                state &= !(X_HEX | X_COLON_MASK);
            }
            s += 1;
            left -= 1;
        }
        let out = match gap {
            None => buf,
            Some(g) => {
                // Words after the gap go to the end, zeros fill the gap.
                let mut out = [0u8; 16];
                let tail = d.checked_sub(g)?;
                out.get_mut(16usize.checked_sub(tail)?..)?
                    .copy_from_slice(buf.get(g..d)?);
                out.get_mut(..g)?.copy_from_slice(buf.get(..g)?);
                out
            }
        };
        Some((out, s))
    }
}

// ---------------------------------------------------------------------------------------------
// Headers

/// How the value of a header (after its search string, if any) is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    /// Decimal digits.
    Digits,
    /// `[user@]address[:digits]`, the user part skipped (and not counted).
    Uri,
    /// An SDP address (no brackets).
    SdpAddr,
    /// An SDP media: letters, a space, digits.
    Media,
}

/// A header (or SDP line) the helper looks for.
struct Field {
    /// Full name (`CSeq`) or SDP line type (`m=`), case-insensitive.
    name: &'static [u8],
    /// Compact form (`m` for Contact), which must not be followed by a letter.
    compact: Option<&'static [u8]>,
    /// What the value is searched for first (`sip:`), the value proper following it.
    search: Option<&'static [u8]>,
    value: Value,
}

impl Field {
    /// Whether a line starting with `c` may hold this field: its name's or its compact form's
    /// first byte, without case (a cheap test before the whole name is compared).
    #[inline(always)]
    fn may_start(&self, c: u8) -> bool {
        let starts = |s: &[u8]| s.first().is_none_or(|f| f.eq_ignore_ascii_case(&c));
        starts(self.name) || self.compact.is_some_and(starts)
    }
}

/// How the line walks find things (see [`Text::header_with`]).
trait Walk {
    /// Lines whose first byte cannot start the field are passed over before any comparison.
    const FIRST_BYTE: bool;
    fn line_after(t: &Text<'_>, p: usize) -> Option<usize>;
    fn in_header(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize>;
    fn in_line(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize>;
}

/// The searches the helper uses.
struct Fast;

impl Walk for Fast {
    const FIRST_BYTE: bool = true;
    #[inline(always)]
    fn line_after(t: &Text<'_>, p: usize) -> Option<usize> {
        t.line_after(p)
    }
    fn in_header(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        t.search_header(i, limit, needle)
    }
    fn in_line(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        t.search_line(i, limit, needle)
    }
}

const CSEQ: Field = Field {
    name: b"CSeq",
    compact: None,
    search: None,
    value: Value::Digits,
};
const CONTACT: Field = Field {
    name: b"Contact",
    compact: Some(b"m"),
    search: Some(b"sip:"),
    value: Value::Uri,
};
const CONTENT_LENGTH: Field = Field {
    name: b"Content-Length",
    compact: Some(b"l"),
    search: None,
    value: Value::Digits,
};
const EXPIRES: Field = Field {
    name: b"Expires",
    compact: None,
    search: None,
    value: Value::Digits,
};
const SDP_VERSION: Field = Field {
    name: b"v=",
    compact: None,
    search: None,
    value: Value::Digits,
};
const SDP_MEDIA: Field = Field {
    name: b"m=",
    compact: None,
    search: None,
    value: Value::Media,
};
const SDP_CONN_V4: Field = Field {
    name: b"c=",
    compact: None,
    search: Some(b"IN IP4 "),
    value: Value::SdpAddr,
};
const SDP_CONN_V6: Field = Field {
    name: b"c=",
    compact: None,
    search: Some(b"IN IP6 "),
    value: Value::SdpAddr,
};

/// SDP media types and their classes (the type includes its trailing space).
const MEDIA_TYPES: [(&[u8], Class); 3] = [
    (b"audio ", Class::Audio),
    (b"video ", Class::Video),
    (b"image ", Class::Image),
];

/// Result of looking for a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hit {
    /// The value at `off`, `len` bytes long.
    Found { off: usize, len: usize },
    /// No such header (from there on).
    Absent,
    /// The header is there but its value does not read; a walk resumes at `resume`.
    Bad { resume: usize },
}

/// Result of reading a URI header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Uri {
    /// The address (at `off`, `len` bytes with the port), its port, and where the port ends.
    Found {
        addr: [u8; 16],
        port: u16,
        off: usize,
        len: usize,
        end: usize,
    },
    Absent,
    /// The port is not one of 1024..=65535 (the kernel's -1).
    Bad,
}

/// Result of reading a numeric header parameter.
enum Num {
    Found(u32),
    Absent,
    /// The name is there without a number after it.
    Bad,
}

/// A SIP message as the kernel's parsers see it.
struct Text<'a> {
    b: &'a [u8],
    v6: bool,
}

impl Text<'_> {
    fn len(&self) -> usize {
        self.b.len()
    }

    /// The byte at `i`, NUL past the end.
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// `strncasecmp(b + i, needle, needle.len()) == 0`.
    fn eq_nocase(&self, i: usize, needle: &[u8]) -> bool {
        needle
            .iter()
            .enumerate()
            .all(|(k, n)| self.at(i + k).eq_ignore_ascii_case(n))
    }

    /// `strncmp(b + i, needle, needle.len()) == 0`.
    fn eq_case(&self, i: usize, needle: &[u8]) -> bool {
        needle.iter().enumerate().all(|(k, &n)| self.at(i + k) == n)
    }

    /// How many bytes from `i` (before `limit`) satisfy `f`.
    fn run(&self, i: usize, limit: usize, f: impl Fn(u8) -> bool) -> usize {
        self.b
            .get(i..limit.min(self.len()))
            .map_or(0, |s| s.iter().take_while(|&&c| f(c)).count())
    }

    /// A decimal number at `i` read as the kernel's `sip_strtouint` does with `limit - i`
    /// bytes: the value and where its digits end. More than 11 digits (leading zeros
    /// included) or a value above `u32::MAX` is no number: `(0, i)`.
    fn uint(&self, i: usize, limit: usize) -> (u32, usize) {
        // The kernel caps the length at sizeof("4294967295"), its NUL included.
        const MOST: usize = 11;
        let mut left = limit.saturating_sub(i);
        let mut budget = left.min(MOST);
        let mut v: u32 = 0;
        let mut p = i;
        while left > 0 && is_digit(self.at(p)) {
            if budget == 0 {
                return (0, i);
            }
            let digit = u32::from(self.at(p) - b'0');
            let Some(next) = v.checked_mul(10).and_then(|v| v.checked_add(digit)) else {
                return (0, i);
            };
            v = next;
            p += 1;
            budget -= 1;
            left -= 1;
        }
        (v, p)
    }

    /// A decimal number at `i` running at most to the end, 0 when there is none.
    fn number(&self, i: usize) -> u32 {
        self.uint(i, self.len()).0
    }

    /// The port after a SIP address ending at `i` (`sip_parse_port`): none (5060) when the next
    /// byte is not a colon, else 1 to 5 digits making 1024..=65535 that do not run up to
    /// `limit`. The port and where it ends; `None` when malformed, or at `limit` already.
    fn port(&self, i: usize, limit: usize) -> Option<(u16, usize)> {
        if i >= limit {
            return None;
        }
        if self.at(i) != b':' {
            return Some((SIP_PORT, i));
        }
        let digits = self.run(i + 1, limit, is_digit);
        if digits == 0 || digits > 5 || i + 1 + digits >= limit {
            return None;
        }
        let end = i + 1 + digits;
        let p = self
            .b
            .get(i + 1..end)?
            .iter()
            .fold(0u32, |p, &c| p * 10 + u32::from(c - b'0'));
        let p = u16::try_from(p).ok().filter(|&p| p >= 1024)?;
        Some((p, end))
    }

    /// Bytes the kernel allows an address parser to read from `cp` up to `limit`.
    fn span(cp: usize, limit: usize) -> isize {
        // A negative length makes the kernel read to a NUL; past the payload we see one.
        if limit >= cp {
            (limit - cp) as isize
        } else {
            isize::MAX / 2
        }
    }

    /// An address in a SIP header (`sip_parse_addr`); with `brackets`, an IPv6 one must be
    /// in `[...]`. The address and where it ends.
    fn sip_addr(&self, cp: usize, limit: usize, brackets: bool) -> Option<([u8; 16], usize)> {
        let lit = Lit { b: self.b };
        let mut a = [0u8; 16];
        if !self.v6 {
            let (q, end) = lit.v4(cp, Self::span(cp, limit))?;
            a[..4].copy_from_slice(&q);
            return Some((a, end));
        }
        let mut cp = cp;
        if cp < limit && self.at(cp) == b'[' {
            cp += 1;
        } else if brackets {
            return None;
        }
        let (q, mut end) = lit.v6(cp, Self::span(cp, limit))?;
        if end < limit && self.at(end) == b']' {
            end += 1;
        } else if brackets {
            return None;
        }
        Some((q, end))
    }

    /// An address in SDP (`sdp_parse_addr`): no brackets.
    fn sdp_addr(&self, cp: usize, limit: usize) -> Option<([u8; 16], usize)> {
        let lit = Lit { b: self.b };
        let mut a = [0u8; 16];
        if self.v6 {
            lit.v6(cp, Self::span(cp, limit))
        } else {
            let (q, end) = lit.v4(cp, Self::span(cp, limit))?;
            a[..4].copy_from_slice(&q);
            Some((a, end))
        }
    }

    /// `address[:port]` at `i`: its length, 0 when the address or the port does not read.
    fn endpoint_len(&self, i: usize, limit: usize) -> usize {
        let Some((_, e)) = self.sip_addr(i, limit, true) else {
            return 0;
        };
        let Some((_, e)) = self.port(e, limit) else {
            return 0;
        };
        e - i
    }

    /// The length of a value at `i` measured as `how`, and how far it really starts after
    /// `i` (the user part of a URI).
    fn value_len(&self, how: Value, i: usize, limit: usize) -> (usize, usize) {
        match how {
            Value::Digits => (self.run(i, limit, is_digit), 0),
            Value::SdpAddr => (self.sdp_addr(i, limit).map_or(0, |(_, e)| e - i), 0),
            Value::Media => {
                let p = i + self.run(i, limit, is_alpha);
                if p >= limit || self.at(p) != b' ' {
                    return (0, 0);
                }
                (p + 1 - i + self.run(p + 1, limit, is_digit), 0)
            }
            Value::Uri => {
                // Skip a user part: up to an '@' on this line, if there is one.
                let user = self.run(i, limit, |c| c != b'@' && !is_eol(c));
                let skip = if i + user < limit && self.at(i + user) == b'@' {
                    user + 1
                } else {
                    0
                };
                (self.endpoint_len(i + skip, limit), skip)
            }
        }
    }

    /// Past a line end at `i` (CR, LF or CRLF): where the continuation line's text starts,
    /// `None` when the next line is not a continuation (or there is none before `limit`).
    fn continuation(&self, i: usize, limit: usize) -> Option<usize> {
        let mut p = i + 1;
        if p >= limit {
            return None;
        }
        if self.at(p - 1) == b'\r' && self.at(p) == b'\n' {
            p += 1;
            if p >= limit {
                return None;
            }
        }
        if !is_blank(self.at(p)) {
            return None;
        }
        Some(p + self.run(p, limit, is_blank))
    }

    /// Skips blanks and at most one line end into a continuation line; `None` at a line end
    /// that is not followed by a continuation.
    fn skip_space(&self, i: usize, limit: usize) -> Option<usize> {
        let mut p = i;
        while p < limit {
            let c = self.at(p);
            if is_blank(c) {
                p += 1;
                continue;
            }
            if is_eol(c) {
                return self.continuation(p, limit);
            }
            break;
        }
        Some(p)
    }

    /// Case-insensitive search for `needle` from `i` within one header (its continuation
    /// lines included), the needle ending before `limit`.
    fn search_header(&self, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        let limit = limit.checked_sub(needle.len())?;
        let mut p = i;
        while p < limit {
            let eol = self.eol(p, limit);
            if let Some(q) = self.find_in(p, eol, needle, false) {
                return Some(q);
            }
            if eol >= limit {
                return None;
            }
            // The first byte of the continuation's text is stepped over, as in the kernel.
            p = self.continuation(eol, limit)? + 1;
        }
        None
    }

    /// The first line end at or after `p` and before `limit`, or `limit`: the next two bytes
    /// looked at directly (a crafted message may be all line ends), then [`find2`] (it may also
    /// hold 64 KiB without one).
    #[inline(always)]
    fn eol(&self, p: usize, limit: usize) -> usize {
        let end = limit.min(self.len());
        // The next two bytes first: a line may be all but empty.
        let near = end.min(p + 2);
        for q in p..near {
            if is_eol(self.b[q]) {
                return q;
            }
        }
        self.b
            .get(near..end)
            .and_then(|s| find2(b'\r', b'\n', s))
            .map_or(limit, |k| near + k)
    }

    /// The first position in `from..to` where `needle` starts, compared with or without case
    /// (the comparison may read past `to`): candidates are found by their first byte with
    /// [`find2`], so that text without it costs next to nothing.
    fn find_in(&self, from: usize, to: usize, needle: &[u8], case: bool) -> Option<usize> {
        let Some(&first) = needle.first() else {
            return (from < to).then_some(from);
        };
        let hay = self.b.get(from..to.min(self.len()))?;
        let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
        let mut k = 0;
        while k < hay.len() {
            let rest = &hay[k..];
            let q = if case {
                find2(first, first, rest)
            } else {
                find2(lo, up, rest)
            }?;
            let at = from + k + q;
            let hit = if case {
                self.eq_case(at, needle)
            } else {
                self.eq_nocase(at, needle)
            };
            if hit {
                return Some(at);
            }
            k += q + 1;
        }
        None
    }

    /// Case-sensitive search for `needle` from `i` within one SDP line.
    fn search_line(&self, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        let limit = limit.checked_sub(needle.len())?;
        if i >= limit {
            return None;
        }
        self.find_in(i, self.eol(i, limit), needle, true)
    }

    /// The start of the line after a line end at `p`, `None` when none starts before the end.
    fn next_line(&self, p: usize) -> Option<usize> {
        let limit = self.len();
        let mut p = p + 1;
        if p >= limit {
            return None;
        }
        if self.at(p - 1) == b'\r' && self.at(p) == b'\n' {
            p += 1;
            if p >= limit {
                return None;
            }
        }
        Some(p)
    }

    /// The start of the first line that begins after a line end at or after `p` (`None` when
    /// there is none before the end).
    #[inline(always)]
    fn line_after(&self, p: usize) -> Option<usize> {
        let limit = self.len();
        let eol = self.eol(p, limit);
        if eol >= limit {
            return None;
        }
        self.next_line(eol)
    }

    /// The first header `f` on a line starting after `from` (`ct_sip_get_header`).
    fn header(&self, from: usize, f: &Field) -> Hit {
        self.header_with::<Fast>(from, f)
    }

    /// [`Text::header`] with the searches of `W` (the tests pass the byte loops it had).
    #[inline(always)]
    fn header_with<W: Walk>(&self, from: usize, f: &Field) -> Hit {
        let limit = self.len();
        let mut p = from;
        while let Some(q) = W::line_after(self, p) {
            p = q;
            let c = self.at(p);
            if is_blank(c) || (W::FIRST_BYTE && !f.may_start(c)) {
                p += 1;
                continue;
            }
            let compact = f.compact.filter(|c| {
                limit - p > c.len() && self.eq_nocase(p, c) && !is_alpha(self.at(p + c.len()))
            });
            if limit - p >= f.name.len() && self.eq_nocase(p, f.name) {
                p += f.name.len();
            } else if let Some(c) = compact {
                p += c.len();
            } else {
                p += 1;
                continue;
            }
            // A name without its colon ends the search.
            let Some(q) = self.skip_space(p, limit) else {
                break;
            };
            p = q;
            if self.at(p) != b':' {
                break;
            }
            p += 1;
            if p >= limit {
                break;
            }
            let Some(q) = self.skip_space(p, limit) else {
                break;
            };
            return self.field_value(q, f, W::in_header);
        }
        Hit::Absent
    }

    /// The value of field `f` starting at `value`: its search string first when it has one
    /// (looked for with `search`), then as long as its kind of value reads; a value that is
    /// not there, or reads empty, is bad (the reader resumes at `value`).
    fn field_value(
        &self,
        value: usize,
        f: &Field,
        search: fn(&Self, usize, usize, &[u8]) -> Option<usize>,
    ) -> Hit {
        let limit = self.len();
        let mut p = value;
        if let Some(s) = f.search {
            let Some(q) = search(self, p, limit, s) else {
                return Hit::Bad { resume: value };
            };
            p = q + s.len();
        }
        let (len, skip) = self.value_len(f.value, p, limit);
        if len == 0 {
            return Hit::Bad { resume: value };
        }
        Hit::Found { off: p + skip, len }
    }

    /// The next value of a comma-separated header after `from` (`ct_sip_next_header`).
    fn next_in_list(&self, from: usize, f: &Field) -> Hit {
        let limit = self.len();
        let Some(search) = f.search else {
            return Hit::Absent;
        };
        let Some(p) = self.search_header(from, limit, b",") else {
            return Hit::Absent;
        };
        let Some(p) = self.search_header(p, limit, search) else {
            return Hit::Absent;
        };
        let p = p + search.len();
        let (len, skip) = self.value_len(f.value, p, limit);
        if len == 0 {
            return Hit::Bad { resume: p };
        }
        Hit::Found { off: p + skip, len }
    }

    /// The next readable value of header `f` (`ct_sip_walk_headers`): within the current
    /// header's list first when `in_list` says a walk is in one, then on later lines.
    fn walk(&self, from: usize, f: &Field, in_list: Option<&mut bool>) -> Option<(usize, usize)> {
        let mut from = from;
        let within = in_list.as_ref().is_some_and(|b| **b);
        if within {
            loop {
                match self.next_in_list(from, f) {
                    Hit::Found { off, len } => return Some((off, len)),
                    Hit::Absent => break,
                    Hit::Bad { resume } => from = resume,
                }
            }
        }
        let found = loop {
            match self.header(from, f) {
                Hit::Found { off, len } => break (off, len),
                Hit::Absent => {
                    if let Some(b) = in_list {
                        if within {
                            *b = false;
                        }
                    }
                    return None;
                }
                Hit::Bad { resume } => from = resume,
            }
        };
        if let Some(b) = in_list {
            *b = true;
        }
        Some(found)
    }

    /// A URI header's address and port (`ct_sip_parse_header_uri`).
    fn header_uri(&self, from: usize, f: &Field, in_list: Option<&mut bool>) -> Uri {
        let Some((off, len)) = self.walk(from, f, in_list) else {
            return Uri::Absent;
        };
        // The walk has already read both, so neither fails here.
        let Some((addr, c)) = self.sip_addr(off, self.len(), true) else {
            return Uri::Bad;
        };
        let Some((port, end)) = self.port(c, self.len()) else {
            return Uri::Bad;
        };
        Uri::Found {
            addr,
            port,
            off,
            len,
            end,
        }
    }

    /// Where the header value after `from` ends for its parameters: at a comma, else anywhere.
    fn param_limit(&self, from: usize) -> usize {
        self.search_header(from, self.len(), b",")
            .unwrap_or(self.len())
    }

    /// The start of parameter `name`'s value after `from` (`ct_sip_parse_param`, whose
    /// length nothing here needs).
    fn param(&self, from: usize, name: &[u8]) -> Option<usize> {
        let limit = self.param_limit(from);
        Some(self.search_header(from, limit, name)? + name.len())
    }

    /// The Contact's transport (`ct_sip_parse_transport`) on a connection of protocol
    /// `conn`: `conn` when not given, `None` when it is another protocol.
    fn transport(&self, from: usize, conn: u8) -> Option<u8> {
        let Some(v) = self.param(from, b"transport=") else {
            return Some(conn);
        };
        let proto = if self.eq_nocase(v, b"TCP") {
            TCP
        } else if self.eq_nocase(v, b"UDP") {
            UDP
        } else {
            return None;
        };
        (proto == conn).then_some(proto)
    }

    /// A numeric parameter (`ct_sip_parse_numerical_param`), its number ending by the comma
    /// that ends the value, if any.
    fn numeric_param(&self, from: usize, name: &[u8]) -> Num {
        let limit = self.param_limit(from);
        let Some(p) = self.search_header(from, limit, name) else {
            return Num::Absent;
        };
        let start = p + name.len();
        let (v, end) = self.uint(start, limit);
        if end == start {
            return Num::Bad;
        }
        Num::Found(v)
    }

    /// The first SDP line `f` after `from`, stopping at a line `stop` (`ct_sip_get_sdp_header`).
    fn sdp_line(&self, from: usize, f: &Field, stop: Option<&Field>) -> Hit {
        self.sdp_line_with::<Fast>(from, f, stop)
    }

    /// [`Text::sdp_line`] with the searches of `W`.
    #[inline(always)]
    fn sdp_line_with<W: Walk>(&self, from: usize, f: &Field, stop: Option<&Field>) -> Hit {
        let limit = self.len();
        let mut p = from;
        while let Some(q) = W::line_after(self, p) {
            p = q;
            let c = self.at(p);
            if W::FIRST_BYTE && !f.may_start(c) && !stop.is_some_and(|t| t.may_start(c)) {
                p += 1;
                continue;
            }
            if stop.is_some_and(|t| limit - p >= t.name.len() && self.eq_nocase(p, t.name)) {
                break;
            }
            if limit - p >= f.name.len() && self.eq_nocase(p, f.name) {
                p += f.name.len();
            } else {
                p += 1;
                continue;
            }
            return self.field_value(p, f, W::in_line);
        }
        Hit::Absent
    }

    /// The address of the first `c=` line after `from`, before any `m=` line
    /// (`ct_sip_parse_sdp_addr`); `None` when there is none or the first does not read.
    fn sdp_connection(&self, from: usize) -> Option<[u8; 16]> {
        let f = if self.v6 { &SDP_CONN_V6 } else { &SDP_CONN_V4 };
        match self.sdp_line(from, f, Some(&SDP_MEDIA)) {
            Hit::Found { off, len } => self.sdp_addr(off, off + len).map(|(a, _)| a),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

struct Reader<'a, X: Expect> {
    t: Text<'a>,
    c: &'a Conn,
    m: &'a mut Master,
    x: &'a mut X,
    /// The connection's protocol (UDP or TCP): a Contact's transport must be it.
    proto: u8,
}

impl<X: Expect> Reader<'_, X> {
    /// The CSeq number (`None`: the packet is dropped).
    fn cseq(&self) -> Option<(u32, usize, usize)> {
        let Hit::Found { off, len } = self.t.header(0, &CSEQ) else {
            return None;
        };
        // Digits are there (the header read), but too many or too large is no number.
        let (cseq, end) = self.t.uint(off, self.t.len());
        if end == off {
            return None;
        }
        Some((cseq, off, len))
    }

    /// `process_sip_request`.
    fn request(&mut self) -> Outcome {
        for (name, method) in METHODS {
            let n = name.len();
            if self.t.len() < n + 2 || !self.t.eq_nocase(0, name) {
                continue;
            }
            if self.t.at(n) != b' ' || !is_alpha(self.t.at(n + 1)) {
                continue;
            }
            let Some((cseq, _, _)) = self.cseq() else {
                return Outcome::Drop;
            };
            return match method {
                Method::Invite => {
                    self.x.flush(true);
                    let v = self.sdp();
                    if v == Outcome::Accept {
                        self.m.invite_cseq = cseq;
                    }
                    v
                }
                Method::Update | Method::Ack | Method::Prack => self.sdp(),
                Method::Bye => {
                    self.x.flush(true);
                    Outcome::Accept
                }
                Method::Register => self.register_request(cseq),
            };
        }
        Outcome::Accept
    }

    /// `process_sip_response`.
    fn response(&mut self) -> Outcome {
        let code = self.t.number(b"SIP/2.0 ".len());
        if code == 0 {
            return Outcome::Drop;
        }
        let Some((cseq, off, len)) = self.cseq() else {
            return Outcome::Drop;
        };
        // The method follows the number after exactly one byte.
        let at = off + len + 1;
        for (name, method) in METHODS {
            if !method.reads_responses()
                || self.t.len() < at + name.len()
                || !self.t.eq_nocase(at, name)
            {
                continue;
            }
            if method == Method::Register {
                return self.register_response(cseq, code);
            }
            // INVITE, UPDATE and PRACK responses read alike.
            if (100..=299).contains(&code) {
                return self.sdp();
            }
            if self.m.invite_cseq == cseq {
                self.x.flush(true);
            }
            return Outcome::Accept;
        }
        Outcome::Accept
    }

    /// `process_sdp`: up to three media streams expected.
    fn sdp(&mut self) -> Outcome {
        let t = &self.t;
        let Hit::Found { off: start, .. } = t.sdp_line(0, &SDP_VERSION, None) else {
            return Outcome::Accept;
        };
        let session = t.sdp_connection(start);
        let mut at = start;
        let mut handled = 0;
        while handled < MEDIA_TYPES.len() {
            let Hit::Found { off, len } = t.sdp_line(at, &SDP_MEDIA, None) else {
                break;
            };
            at = off;
            let Some(&(name, class)) = MEDIA_TYPES
                .iter()
                .find(|(name, _)| len >= name.len() && t.eq_case(off, name))
            else {
                // Unknown media do not count.
                at += len;
                continue;
            };
            at += name.len();
            let (port, end) = t.uint(at, t.len());
            if port == 0 || end == at {
                // Inactive (or no number), and not counted either.
                continue;
            }
            let Some(port) = u16::try_from(port).ok().filter(|&p| p >= 1024) else {
                return Outcome::Drop;
            };
            let Some(addr) = t.sdp_connection(at).or(session) else {
                return Outcome::Drop;
            };
            if addr == self.c.src && !self.x.media(class, addr, port) {
                return Outcome::Drop;
            }
            handled += 1;
        }
        Outcome::Accept
    }

    /// `process_register_request`.
    fn register_request(&mut self, cseq: u32) -> Outcome {
        if self.c.expected {
            return Outcome::Accept;
        }
        let t = &self.t;
        let mut expires = match t.header(0, &EXPIRES) {
            Hit::Found { off, .. } => t.number(off),
            _ => 0,
        };
        let (addr, port, params) = match t.header_uri(0, &CONTACT, None) {
            Uri::Found {
                addr,
                port,
                off,
                len,
                ..
            } => (addr, port, off + len),
            Uri::Absent => return Outcome::Accept,
            Uri::Bad => return Outcome::Drop,
        };
        // Third-party registrations are not followed.
        if addr != self.c.src {
            return Outcome::Accept;
        }
        let Some(proto) = t.transport(params, self.proto) else {
            return Outcome::Accept;
        };
        match t.numeric_param(params, b"expires=") {
            Num::Found(v) => expires = v,
            Num::Absent => {}
            Num::Bad => return Outcome::Drop,
        }
        if expires != 0 && !self.x.signalling(addr, proto, port) {
            return Outcome::Drop;
        }
        self.m.register_cseq = cseq;
        Outcome::Accept
    }

    /// `process_register_response`.
    fn register_response(&mut self, cseq: u32, code: u32) -> Outcome {
        if self.m.register_cseq != cseq || (100..=199).contains(&code) {
            return Outcome::Accept;
        }
        if (200..=299).contains(&code) {
            let t = &self.t;
            let expires = match t.header(0, &EXPIRES) {
                Hit::Found { off, .. } => t.number(off),
                _ => 0,
            };
            let mut from = 0;
            let mut in_list = false;
            loop {
                let (addr, port, params) = match t.header_uri(from, &CONTACT, Some(&mut in_list)) {
                    Uri::Found {
                        addr,
                        port,
                        off,
                        len,
                        end,
                    } => {
                        from = end;
                        (addr, port, off + len)
                    }
                    Uri::Absent => break,
                    Uri::Bad => return Outcome::Drop,
                };
                if addr != self.c.dst {
                    continue;
                }
                let Some(proto) = t.transport(params, self.proto) else {
                    continue;
                };
                let this = match t.numeric_param(params, b"expires=") {
                    Num::Found(v) => v,
                    Num::Absent => expires,
                    Num::Bad => return Outcome::Drop,
                };
                if this == 0 {
                    break;
                }
                if self.x.refresh_signalling(addr, proto, port, this) {
                    return Outcome::Accept;
                }
            }
        }
        self.x.flush(false);
        Outcome::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Call {
        Flush(bool),
        Media(Class, [u8; 16], u16),
        Signalling([u8; 16], u8, u16),
        Refresh([u8; 16], u8, u16, u32),
    }

    /// Records every call; `media`/`signalling` succeed unless `refuse`, `refresh_signalling`
    /// finds one when `found`.
    #[derive(Default)]
    struct Rec {
        calls: Vec<Call>,
        refuse: bool,
        found: bool,
    }

    impl Expect for Rec {
        fn flush(&mut self, media: bool) {
            self.calls.push(Call::Flush(media));
        }
        fn media(&mut self, class: Class, addr: [u8; 16], port: u16) -> bool {
            self.calls.push(Call::Media(class, addr, port));
            !self.refuse
        }
        fn signalling(&mut self, addr: [u8; 16], proto: u8, port: u16) -> bool {
            self.calls.push(Call::Signalling(addr, proto, port));
            !self.refuse
        }
        fn refresh_signalling(&mut self, addr: [u8; 16], proto: u8, port: u16, exp: u32) -> bool {
            self.calls.push(Call::Refresh(addr, proto, port, exp));
            self.found
        }
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    const ALICE: [u8; 16] = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const BOB: [u8; 16] = [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// Alice's packets to Bob.
    fn from_alice() -> Conn {
        Conn {
            v6: false,
            src: ALICE,
            dst: BOB,
            expected: false,
        }
    }

    /// Bob's packets to Alice.
    fn from_bob() -> Conn {
        Conn {
            v6: false,
            src: BOB,
            dst: ALICE,
            expected: false,
        }
    }

    fn run(m: &mut Master, c: &Conn, msg: &str) -> (Outcome, Vec<Call>) {
        run_with(m, c, msg.as_bytes(), Rec::default())
    }

    fn run_with(m: &mut Master, c: &Conn, msg: &[u8], mut x: Rec) -> (Outcome, Vec<Call>) {
        let v = help_udp(m, c, msg, &mut x);
        (v, x.calls)
    }

    fn invite(cseq: u32, sdp: &str) -> String {
        format!(
            "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:alice@10.0.0.1>;tag=1\r\n\
             To: <sip:bob@10.0.0.2>\r\n\
             Call-ID: abc@10.0.0.1\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:alice@10.0.0.1>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    fn response(status: &str, cseq: &str, extra: &str, sdp: &str) -> String {
        format!(
            "SIP/2.0 {status}\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:alice@10.0.0.1>;tag=1\r\n\
             To: <sip:bob@10.0.0.2>;tag=2\r\n\
             Call-ID: abc@10.0.0.1\r\n\
             CSeq: {cseq}\r\n{extra}\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    fn sdp(addr: &str, media: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n{media}",)
    }

    fn register(cseq: u32, contact: &str, extra: &str) -> String {
        format!(
            "REGISTER sip:10.0.0.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n\
             From: <sip:alice@10.0.0.2>;tag=3\r\n\
             To: <sip:alice@10.0.0.2>\r\n\
             Call-ID: reg@10.0.0.1\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: {contact}\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn basic_call() {
        let mut m = Master::default();
        let offer = sdp("10.0.0.1", "m=audio 49170 RTP/AVP 0\r\n");
        let (v, calls) = run(&mut m, &from_alice(), &invite(7, &offer));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(
            calls,
            [Call::Flush(true), Call::Media(Class::Audio, ALICE, 49170)]
        );
        assert_eq!(m.invite_cseq, 7);

        let answer = sdp("10.0.0.2", "m=audio 3456 RTP/AVP 0\r\n");
        let ok = response("200 OK", "7 INVITE", "", &answer);
        let (v, calls) = run(&mut m, &from_bob(), &ok);
        assert_eq!(v, Outcome::Accept);
        assert_eq!(calls, [Call::Media(Class::Audio, BOB, 3456)]);

        // ACK, UPDATE and PRACK requests read SDP too, without touching invite_cseq.
        for method in ["ACK", "UPDATE", "PRACK"] {
            let msg = format!(
                "{method} sip:bob@10.0.0.2 SIP/2.0\r\nCSeq: 9 {method}\r\n\r\n{}",
                sdp("10.0.0.1", "m=video 5000 RTP/AVP 31\r\n")
            );
            let (v, calls) = run(&mut m, &from_alice(), &msg);
            assert_eq!(v, Outcome::Accept);
            assert_eq!(calls, [Call::Media(Class::Video, ALICE, 5000)], "{method}");
            assert_eq!(m.invite_cseq, 7);
        }
    }

    #[test]
    fn refused_expectation_drops() {
        let mut m = Master::default();
        let offer = sdp(
            "10.0.0.1",
            "m=audio 49170 RTP/AVP 0\r\nm=video 5000 RTP/AVP 0\r\n",
        );
        let refuse = Rec {
            refuse: true,
            ..Rec::default()
        };
        let (v, calls) = run_with(&mut m, &from_alice(), invite(3, &offer).as_bytes(), refuse);
        assert_eq!(v, Outcome::Drop);
        assert_eq!(
            calls,
            [Call::Flush(true), Call::Media(Class::Audio, ALICE, 49170)]
        );
        // A refused INVITE does not become the current one.
        assert_eq!(m.invite_cseq, 0);
    }

    #[test]
    fn foreign_media_address_is_ignored() {
        let mut m = Master::default();
        let offer = sdp("192.168.1.9", "m=audio 49170 RTP/AVP 0\r\n");
        let (v, calls) = run(&mut m, &from_alice(), &invite(1, &offer));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(calls, [Call::Flush(true)]);
        assert_eq!(m.invite_cseq, 1);
    }

    #[test]
    fn media_level_connection_overrides_session() {
        let mut m = Master::default();
        let media = "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.9\r\n\
                     m=video 4002 RTP/AVP 0\r\n\
                     m=image 4004 udptl t38\r\nc=IN IP4 bogus\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(1, &sdp("10.0.0.1", media)));
        assert_eq!(v, Outcome::Accept);
        // The first stream goes elsewhere (no expectation); an unreadable one falls back.
        assert_eq!(
            calls,
            [
                Call::Flush(true),
                Call::Media(Class::Video, ALICE, 4002),
                Call::Media(Class::Image, ALICE, 4004)
            ]
        );
    }

    #[test]
    fn no_connection_address_drops() {
        let mut m = Master::default();
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), &invite(1, body)).0,
            Outcome::Drop
        );
        // A session c= that does not read counts as none.
        let body = "v=0\r\nc=IN IP4 host.example\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), &invite(1, body)).0,
            Outcome::Drop
        );
        // ... but a port-0 stream needs no address.
        let body = "v=0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), &invite(1, body)).0,
            Outcome::Accept
        );
        // No v= line: no SDP at all.
        let body = "c=IN IP4 10.0.0.1\r\nm=audio 80 RTP/AVP 0\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(1, body));
        assert_eq!((v, calls), (Outcome::Accept, vec![Call::Flush(true)]));
    }

    #[test]
    fn ports() {
        let mut m = Master::default();
        let media = "m=audio 0 RTP/AVP 0\r\nm=video 5000 RTP/AVP 31\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(1, &sdp("10.0.0.1", media)));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(
            calls,
            [Call::Flush(true), Call::Media(Class::Video, ALICE, 5000)]
        );
        for bad in ["80", "1023", "65536", "99999999"] {
            let media = format!("m=audio {bad} RTP/AVP 0\r\n");
            let (v, _) = run(&mut m, &from_alice(), &invite(2, &sdp("10.0.0.1", &media)));
            assert_eq!(v, Outcome::Drop, "{bad}");
            assert_eq!(m.invite_cseq, 1);
        }
        // A port that is no number (beyond 32 bits, more than 11 digits) is skipped like 0;
        // 11 digits with leading zeros are fine.
        let media = "m=audio 99999999999 RTP/AVP 0\r\nm=audio 000000004000 RTP/AVP 0\r\n\
                     m=audio 00000004002 RTP/AVP 0\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(3, &sdp("10.0.0.1", media)));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(calls[1..], [Call::Media(Class::Audio, ALICE, 4002)]);
        // Odd ports go to the engine as written; 1024 and 65535 are fine.
        let media = "m=audio 1024 RTP/AVP 0\r\nm=video 65535 RTP/AVP 0\r\n";
        let (_, calls) = run(&mut m, &from_alice(), &invite(4, &sdp("10.0.0.1", media)));
        assert_eq!(
            calls[1..],
            [
                Call::Media(Class::Audio, ALICE, 1024),
                Call::Media(Class::Video, ALICE, 65535)
            ]
        );
    }

    #[test]
    fn at_most_three_handled_media() {
        let mut m = Master::default();
        // Inactive and unknown media do not count; foreign-address ones do.
        let media = "m=audio 0 RTP/AVP 0\r\nm=text 3000 RTP/AVP 0\r\nm=audio 0 RTP/AVP 0\r\n\
                     m=application 9 x\r\n\
                     m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\n\
                     m=video 4002 RTP/AVP 0\r\nm=image 4004 udptl t38\r\n\
                     m=audio 4006 RTP/AVP 0\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(1, &sdp("10.0.0.1", media)));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(
            calls,
            [
                Call::Flush(true),
                Call::Media(Class::Video, ALICE, 4002),
                Call::Media(Class::Image, ALICE, 4004)
            ]
        );
        // A fourth stream is never read: not even its bad port drops.
        let media = "m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\n\
                     m=audio 4004 RTP/AVP 0\r\nm=audio 80 RTP/AVP 0\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(2, &sdp("10.0.0.1", media)));
        assert_eq!(v, Outcome::Accept);
        assert_eq!(calls.len(), 4);
        // Media types are case-sensitive; an "m=" line without a space ends the media.
        let media = "m=AUDIO 4000 RTP/AVP 0\r\nm=audio\r\nm=audio 4002 RTP/AVP 0\r\n";
        let (v, calls) = run(&mut m, &from_alice(), &invite(3, &sdp("10.0.0.1", media)));
        assert_eq!((v, calls), (Outcome::Accept, vec![Call::Flush(true)]));
    }

    #[test]
    fn bye_flushes_media() {
        let mut m = Master::default();
        let bye = "BYE sip:bob@10.0.0.2 SIP/2.0\r\nCSeq: 2 BYE\r\n\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), bye),
            (Outcome::Accept, vec![Call::Flush(true)])
        );
        // Responses to BYE are not read.
        let ok = response("200 OK", "2 BYE", "", "");
        assert_eq!(run(&mut m, &from_bob(), &ok), (Outcome::Accept, vec![]));
    }

    #[test]
    fn invite_error_responses() {
        let mut m = Master {
            invite_cseq: 5,
            ..Master::default()
        };
        for method in ["INVITE", "UPDATE", "PRACK"] {
            let busy = response("486 Busy Here", &format!("5 {method}"), "", "");
            assert_eq!(
                run(&mut m, &from_bob(), &busy),
                (Outcome::Accept, vec![Call::Flush(true)]),
                "{method}"
            );
        }
        let stale = response("486 Busy Here", "4 INVITE", "", "");
        assert_eq!(run(&mut m, &from_bob(), &stale), (Outcome::Accept, vec![]));
        // Provisional responses read SDP.
        let ringing = response(
            "183 Session Progress",
            "5 INVITE",
            "",
            &sdp("10.0.0.2", "m=audio 7000 RTP/AVP 0\r\n"),
        );
        assert_eq!(
            run(&mut m, &from_bob(), &ringing),
            (Outcome::Accept, vec![Call::Media(Class::Audio, BOB, 7000)])
        );
        // Code 99 is an error response too; a code of 0 or none drops.
        let odd = response("99 Odd", "5 INVITE", "", "");
        assert_eq!(run(&mut m, &from_bob(), &odd).1, [Call::Flush(true)]);
        for status in ["0 Zero", "OK", " 200 OK"] {
            let bad = response(status, "5 INVITE", "", "");
            assert_eq!(run(&mut m, &from_bob(), &bad), (Outcome::Drop, vec![]));
        }
        // The method follows the number after exactly one byte.
        let two = response("486 Busy", "5  INVITE", "", "");
        assert_eq!(run(&mut m, &from_bob(), &two), (Outcome::Accept, vec![]));
        let tab = response("486 Busy", "5\tinvite", "", "");
        assert_eq!(run(&mut m, &from_bob(), &tab).1, [Call::Flush(true)]);
    }

    #[test]
    fn register_over_tcp_expects_tcp_signalling() {
        // The Contact's transport defaults to the connection's protocol and must match it.
        let tcp = |m: &mut Master, msg: &str| {
            let mut x = Rec::default();
            (help_tcp(m, &from_alice(), msg.as_bytes(), &mut x), x.calls)
        };
        let mut m = Master::default();
        for (contact, want) in [
            (
                "<sip:alice@10.0.0.1:5070>",
                vec![Call::Signalling(ALICE, 6, 5070)],
            ),
            (
                "<sip:10.0.0.1;transport=TCP>",
                vec![Call::Signalling(ALICE, 6, 5060)],
            ),
            ("<sip:10.0.0.1;transport=udp>", vec![]),
        ] {
            let reg = register(21, contact, "Expires: 60\r\n");
            assert_eq!(tcp(&mut m, &reg), (Outcome::Accept, want), "{contact}");
        }
        let ok = response(
            "200 OK",
            "21 REGISTER",
            "Contact: <sip:10.0.0.1:5070>;expires=30\r\n",
            "",
        );
        let mut x = Rec {
            found: true,
            ..Rec::default()
        };
        assert_eq!(
            help_tcp(&mut m, &from_bob(), ok.as_bytes(), &mut x),
            Outcome::Accept
        );
        assert_eq!(x.calls, [Call::Refresh(ALICE, 6, 5070, 30)]);
    }

    #[test]
    fn register_expects_signalling() {
        let mut m = Master::default();
        let reg = register(11, "<sip:alice@10.0.0.1:5070>", "Expires: 3600\r\n");
        assert_eq!(
            run(&mut m, &from_alice(), &reg),
            (Outcome::Accept, vec![Call::Signalling(ALICE, 17, 5070)])
        );
        assert_eq!(m.register_cseq, 11);

        // No port: 5060. Contact params: expires= overrides Expires, in decimal.
        let reg = register(12, "<sip:10.0.0.1>;expires=0x10", "Expires: 3600\r\n");
        assert_eq!(run(&mut m, &from_alice(), &reg), (Outcome::Accept, vec![]));
        assert_eq!(m.register_cseq, 12);
        let reg = register(13, "<sip:10.0.0.1;transport=UDP>;expires=010", "");
        assert_eq!(
            run(&mut m, &from_alice(), &reg).1,
            [Call::Signalling(ALICE, 17, 5060)]
        );
        // No expiry at all is zero: the cseq is kept without an expectation.
        let reg = register(14, "<sip:10.0.0.1>", "");
        assert_eq!(run(&mut m, &from_alice(), &reg), (Outcome::Accept, vec![]));
        assert_eq!(m.register_cseq, 14);
        // "expires=" without a number, or with one too large, drops; an Expires header too
        // large is none (zero).
        for contact in [
            "<sip:10.0.0.1>;expires=never",
            "<sip:10.0.0.1>;expires=4294967296",
        ] {
            let reg = register(15, contact, "Expires: 60\r\n");
            assert_eq!(run(&mut m, &from_alice(), &reg), (Outcome::Drop, vec![]));
            assert_eq!(m.register_cseq, 14);
        }
        let reg = register(15, "<sip:10.0.0.1>", "Expires: 4294967296\r\n");
        assert_eq!(run(&mut m, &from_alice(), &reg), (Outcome::Accept, vec![]));
        assert_eq!(m.register_cseq, 15);
        // Another transport, a third party, a bad port (no contact at all then), no SIP URI:
        // nothing, cseq untouched.
        for contact in [
            "<sip:10.0.0.1;transport=tcp>",
            "<sip:10.0.0.1;transport=sctp>",
            "<sip:alice@10.0.0.7>",
            "<sip:10.0.0.1:80>",
            "<sip:10.0.0.1:005060>",
            "*",
        ] {
            let reg = register(16, contact, "Expires: 60\r\n");
            assert_eq!(
                run(&mut m, &from_alice(), &reg),
                (Outcome::Accept, vec![]),
                "{contact}"
            );
            assert_eq!(m.register_cseq, 15);
        }
        // An address (or port) running up to the end of the payload does not read.
        let tail =
            "REGISTER sip:x SIP/2.0\r\nCSeq: 17 REGISTER\r\nExpires: 60\r\nContact: sip:10.0.0.1";
        for end in ["", ":5070"] {
            let reg = format!("{tail}{end}");
            assert_eq!(run(&mut m, &from_alice(), &reg), (Outcome::Accept, vec![]));
            let reg = format!("{tail}{end}>");
            assert_eq!(run(&mut m, &from_alice(), &reg).1.len(), 1);
        }
        // A contact with a bad port is passed over for the next one.
        let reg = register(
            16,
            "<sip:10.0.0.1:80>\r\nm: <sip:10.0.0.1:5090>",
            "Expires: 5\r\n",
        );
        assert_eq!(
            run(&mut m, &from_alice(), &reg).1,
            [Call::Signalling(ALICE, 17, 5090)]
        );
        m.register_cseq = 14;
        // A refused expectation drops, and the cseq is not kept.
        let reg = register(17, "<sip:10.0.0.1>", "Expires: 60\r\n");
        let refuse = Rec {
            refuse: true,
            ..Rec::default()
        };
        assert_eq!(
            run_with(&mut m, &from_alice(), reg.as_bytes(), refuse).0,
            Outcome::Drop
        );
        assert_eq!(m.register_cseq, 14);
    }

    #[test]
    fn register_from_expected_connection() {
        let mut m = Master::default();
        let c = Conn {
            expected: true,
            ..from_alice()
        };
        let reg = register(11, "<sip:alice@10.0.0.1:5070>", "Expires: 3600\r\n");
        assert_eq!(run(&mut m, &c, &reg), (Outcome::Accept, vec![]));
        assert_eq!(m.register_cseq, 0);
        // Not even the CSeq-less drop is skipped: that comes first.
        assert_eq!(
            run(&mut m, &c, "REGISTER sip:x SIP/2.0\r\n\r\n").0,
            Outcome::Drop
        );
    }

    #[test]
    fn register_responses() {
        let mut m = Master {
            register_cseq: 11,
            ..Master::default()
        };
        let contact = "Contact: <sip:alice@10.0.0.1:5070>;expires=1800\r\n";
        let ok = response("200 OK", "11 REGISTER", contact, "");
        let found = Rec {
            found: true,
            ..Rec::default()
        };
        assert_eq!(
            run_with(&mut m, &from_bob(), ok.as_bytes(), found),
            (Outcome::Accept, vec![Call::Refresh(ALICE, 17, 5070, 1800)])
        );
        // Nothing to refresh: the signalling expectation goes.
        assert_eq!(
            run(&mut m, &from_bob(), &ok).1,
            [Call::Refresh(ALICE, 17, 5070, 1800), Call::Flush(false)]
        );
        // Several contacts (a list and further headers); others' are skipped, Expires is
        // the default.
        let contacts = "Contact: <sip:carol@10.0.0.8:5070>, <sip:10.0.0.1:5072>;expires=60\r\n\
                        m: <sip:10.0.0.1:5074>\r\nExpires: 90\r\n";
        let ok = response("200 OK", "11 REGISTER", contacts, "");
        assert_eq!(
            run(&mut m, &from_bob(), &ok).1,
            [
                Call::Refresh(ALICE, 17, 5072, 60),
                Call::Refresh(ALICE, 17, 5074, 90),
                Call::Flush(false)
            ]
        );
        // A zero expiry stops the walk.
        let contacts = "Contact: <sip:10.0.0.1:5072>;expires=0, <sip:10.0.0.1:5074>\r\n";
        let ok = response("200 OK", "11 REGISTER", contacts, "");
        assert_eq!(run(&mut m, &from_bob(), &ok).1, [Call::Flush(false)]);
        // A contact with a bad port is passed over, and with it the rest of its line: the
        // search resumes at the next line. A bad expires= drops.
        let contacts = "Contact: <sip:10.0.0.1:99>, <sip:10.0.0.1:5072>\r\n\
                        Contact: <sip:10.0.0.1:5074>\r\nExpires: 5\r\n";
        let ok = response("200 OK", "11 REGISTER", contacts, "");
        assert_eq!(
            run(&mut m, &from_bob(), &ok),
            (
                Outcome::Accept,
                vec![Call::Refresh(ALICE, 17, 5074, 5), Call::Flush(false)]
            )
        );
        let contacts =
            "Contact: <sip:10.0.0.1:5072>, <sip:10.0.0.1:5074>;expires=x\r\nExpires: 5\r\n";
        let ok = response("200 OK", "11 REGISTER", contacts, "");
        assert_eq!(
            run(&mut m, &from_bob(), &ok),
            (Outcome::Drop, vec![Call::Refresh(ALICE, 17, 5072, 5)])
        );

        // Errors flush, provisional and stale responses do nothing.
        let denied = response("401 Unauthorized", "11 REGISTER", "", "");
        assert_eq!(
            run(&mut m, &from_bob(), &denied),
            (Outcome::Accept, vec![Call::Flush(false)])
        );
        let trying = response("100 Trying", "11 REGISTER", contact, "");
        assert_eq!(run(&mut m, &from_bob(), &trying), (Outcome::Accept, vec![]));
        let stale = response("401 Unauthorized", "10 REGISTER", "", "");
        assert_eq!(run(&mut m, &from_bob(), &stale), (Outcome::Accept, vec![]));
    }

    #[test]
    fn compact_headers() {
        let mut m = Master::default();
        let reg = "REGISTER sip:10.0.0.2 SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1\r\n\
                   Max-Forwards: 70\r\nm : <sip:10.0.0.1:5080>\r\nCSEQ: 4 REGISTER\r\n\
                   EXPIRES: 60\r\nl: 0\r\n\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), reg).1,
            [Call::Signalling(ALICE, 17, 5080)]
        );
        // "m" followed by a letter is not Contact, not even a Latin-1 one.
        let reg = "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 4 REGISTER\r\nExpires: 60\r\n\
                   mx: <sip:10.0.0.1:5080>\r\n\r\n";
        assert_eq!(run(&mut m, &from_alice(), reg).1, []);
        let mut reg = b"REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 4 REGISTER\r\nExpires: 60\r\n\
                        m\xe9: <sip:10.0.0.1:5080>\r\n\r\n"
            .to_vec();
        assert_eq!(run_with(&mut m, &from_alice(), &reg, Rec::default()).1, []);
        let at = reg.iter().position(|&c| c == 0xe9).unwrap();
        reg[at] = 0xd7; // the multiplication sign is no letter
        assert_eq!(
            run_with(&mut m, &from_alice(), &reg, Rec::default()),
            (Outcome::Accept, vec![])
        );
    }

    #[test]
    fn continuation_lines() {
        let mut m = Master::default();
        let reg = "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq:\r\n  4 REGISTER\r\n\
                   Contact\r\n\t:\r\n <sip:10.0.0.1:5080>\r\n   ;expires=30\r\n\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), reg),
            (Outcome::Accept, vec![Call::Signalling(ALICE, 17, 5080)])
        );
        assert_eq!(m.register_cseq, 4);
        // Bare LF and bare CR line ends.
        let reg = "REGISTER sip:10.0.0.2 SIP/2.0\nCSeq: 5 REGISTER\rContact: \
                   <sip:10.0.0.1:5082>\nExpires: 9\n\n";
        assert_eq!(
            run(&mut m, &from_alice(), reg).1,
            [Call::Signalling(ALICE, 17, 5082)]
        );
        // A name without its colon ends the search, even with a good header later.
        let inv = "INVITE sip:b@10.0.0.2 SIP/2.0\r\nCSeq 1 INVITE\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(run(&mut m, &from_alice(), inv), (Outcome::Drop, vec![]));
        // A header at the very start of the payload is not one (it needs a line end first).
        let inv = "INVITE sip:b@10.0.0.2 SIP/2.0 CSeq: 1 INVITE\r\n\r\n";
        assert_eq!(run(&mut m, &from_alice(), inv), (Outcome::Drop, vec![]));
    }

    #[test]
    fn ipv6() {
        let a = v6("2001:db8::1");
        let b = v6("2001:db8::2");
        let c = Conn {
            v6: true,
            src: a,
            dst: b,
            expected: false,
        };
        let mut m = Master::default();
        let body = "v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n\
                    m=video 4002 RTP/AVP 0\r\nc=IN IP6 ::ffff:10.0.0.1\r\n";
        let inv = format!("INVITE sip:[2001:db8::2] SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n{body}");
        assert_eq!(
            run(&mut m, &c, &inv),
            (
                Outcome::Accept,
                vec![Call::Flush(true), Call::Media(Class::Audio, a, 4000)]
            )
        );
        // An IPv4 c= line on an IPv6 connection does not read.
        let inv = "INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nc=IN IP4 10.0.0.1\r\n\
                   m=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(run(&mut m, &c, inv).0, Outcome::Drop);

        let reg = "REGISTER sip:[2001:db8::2] SIP/2.0\r\nCSeq: 2 REGISTER\r\n\
                   Contact: <sip:alice@[2001:db8::1]:5070>\r\nExpires: 60\r\n\r\n";
        assert_eq!(run(&mut m, &c, reg).1, [Call::Signalling(a, 17, 5070)]);
        // Without brackets a SIP address does not read on IPv6.
        let reg = "REGISTER sip:x SIP/2.0\r\nCSeq: 3 REGISTER\r\n\
                   Contact: <sip:2001:db8::1>\r\nExpires: 60\r\n\r\n";
        assert_eq!(run(&mut m, &c, reg), (Outcome::Accept, vec![]));
        assert_eq!(m.register_cseq, 2);
    }

    #[test]
    fn cseq_and_methods() {
        let mut m = Master::default();
        // Each message alone: its outcome, and nothing asked of the table.
        let only = |m: &mut Master, want: Outcome, msgs: &[&str]| {
            for msg in msgs {
                assert_eq!(run(m, &from_alice(), msg), (want, vec![]), "{msg}");
            }
        };
        only(
            &mut m,
            Outcome::Drop,
            &[
                "INVITE sip:b@10.0.0.2 SIP/2.0\r\nTo: <sip:b@10.0.0.2>\r\n\r\n",
                "BYE sip:b@10.0.0.2 SIP/2.0\r\nCSeq: x BYE\r\n\r\n",
                "BYE sip:b@10.0.0.2 SIP/2.0\r\nCSeq:\r\n\r\n",
                "ACK sip:b@10.0.0.2 SIP/2.0\r\nCSeq: 4294967296 ACK\r\n\r\n",
                "SIP/2.0 200 OK\r\nTo: <sip:b@10.0.0.2>\r\n\r\n",
                "SIP/2.0 200",
            ],
        );
        // CSeq 0 is a number; lowercase methods match; CSeq is only needed by read methods.
        let bye = "bye sip:b@10.0.0.2 SIP/2.0\r\nCSeq: 0 BYE\r\n\r\n";
        assert_eq!(run(&mut m, &from_alice(), bye).1, [Call::Flush(true)]);
        only(
            &mut m,
            Outcome::Accept,
            &[
                "OPTIONS sip:b@10.0.0.2 SIP/2.0\r\n\r\n",
                "CANCEL sip:b@10.0.0.2 SIP/2.0\r\n\r\n",
                "BYEX sip:b@10.0.0.2 SIP/2.0\r\n\r\n",
                "BYE <sip:b@10.0.0.2> SIP/2.0\r\n\r\n",
                "BYE  sip:b@10.0.0.2 SIP/2.0\r\n\r\n",
                "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n",
                "SIP/2.0 20",
                "",
            ],
        );
        // "SIP/2.0 " is matched case-insensitively.
        let resp = "sip/2.0 abc\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(run(&mut m, &from_alice(), resp).0, Outcome::Drop);
    }

    #[test]
    fn headers_in_the_body_count() {
        // The kernel searches the whole datagram, SDP body included.
        let mut m = Master::default();
        let msg = "BYE sip:b@10.0.0.2 SIP/2.0\r\nTo: x\r\n\r\nCSeq: 3 BYE\r\n";
        assert_eq!(run(&mut m, &from_alice(), msg).1, [Call::Flush(true)]);
        // ... and SDP before a blank line is SDP all the same.
        let msg = "ACK sip:b@10.0.0.2 SIP/2.0\r\nv=0\r\nc=IN IP4 10.0.0.1\r\n\
                   CSeq: 3 ACK\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            run(&mut m, &from_alice(), msg).1,
            [Call::Media(Class::Audio, ALICE, 4000)]
        );
    }

    #[test]
    fn numbers() {
        let t = |s: &str| {
            let x = Text {
                b: s.as_bytes(),
                v6: false,
            };
            x.uint(0, s.len())
        };
        assert_eq!(t("123abc"), (123, 3));
        assert_eq!(t(" 1"), (0, 0));
        assert_eq!(t("+1"), (0, 0));
        assert_eq!(t("0x1f"), (0, 1));
        assert_eq!(t("4294967295"), (u32::MAX, 10));
        assert_eq!(t("4294967296"), (0, 0));
        assert_eq!(t("00000000001"), (1, 11));
        assert_eq!(t("000000000001"), (0, 0));
        // Only the given length is read: the digits before it make the number.
        let x = Text {
            b: b"000000000001",
            v6: false,
        };
        assert_eq!(x.uint(0, 5), (0, 5));
        assert_eq!(x.uint(7, 12), (1, 12));

        let port = |s: &str| {
            let x = Text {
                b: s.as_bytes(),
                v6: false,
            };
            x.port(0, s.len())
        };
        assert_eq!(port(">"), Some((5060, 0)));
        assert_eq!(port(":5070>"), Some((5070, 5)));
        assert_eq!(port(":01024;"), Some((1024, 6)));
        for bad in [
            "", ":", ":>", ":5070", ":1023>", ":65536>", ":005060>", ":99999>",
        ] {
            assert_eq!(port(bad), None, "{bad}");
        }
    }

    #[test]
    fn address_literals() {
        fn four(s: &str) -> Option<([u8; 4], usize)> {
            Lit { b: s.as_bytes() }.v4(0, s.len() as isize)
        }
        fn six(s: &str) -> Option<([u8; 16], usize)> {
            Lit { b: s.as_bytes() }.v6(0, s.len() as isize)
        }
        assert_eq!(four("10.0.0.1"), Some(([10, 0, 0, 1], 8)));
        assert_eq!(four("010.000.0.255>"), Some(([10, 0, 0, 255], 13)));
        assert_eq!(four("1.2.3.4:5060"), Some(([1, 2, 3, 4], 7)));
        assert_eq!(four("1.2.3.4g"), Some(([1, 2, 3, 4], 7)));
        for bad in [
            "1.2.3.4a",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "256.1.1.1",
            ".1.2.3.4",
            "",
        ] {
            assert_eq!(four(bad), None, "{bad}");
        }
        // Only the given length is read.
        assert_eq!(Lit { b: b"1.2.3.45" }.v4(0, 7), Some(([1, 2, 3, 4], 7)));

        for good in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "::ffff:10.0.0.1",
            "1:2:3:4:5:6:1.2.3.4",
            "fe80::abcd:1.2.3.4",
            "0000:0:00:0::FFFF",
        ] {
            let std: Ipv6Addr = good.parse().unwrap();
            assert_eq!(six(good), Some((std.octets(), good.len())), "{good}");
        }
        assert_eq!(six("::1]:5060").map(|(_, e)| e), Some(3));
        for bad in [
            "",
            ":",
            ":::",
            "1:2",
            "1:::2",
            "1::2::3",
            "12345::",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "::1.2.3",
            "::1.2.3.4a",
            "1.2.3.4",
        ] {
            assert_eq!(six(bad), None, "{bad}");
        }
    }

    #[test]
    fn never_panics() {
        let body = sdp(
            "10.0.0.1",
            "m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 0\r\n",
        );
        let samples = [
            invite(1, &body),
            response("200 OK", "1 INVITE", "", &body),
            register(
                2,
                "\"x\" <sip:alice@10.0.0.1:5070;transport=udp>;expires=0x10, <sip:[::1]>",
                "Expires: 60\r\n",
            ),
            response(
                "200 OK",
                "2 REGISTER",
                "Contact: <sip:10.0.0.1:5070>;expires=60,<sip:10.0.0.1>\r\n",
                "",
            ),
            "REGISTER sip:[2001:db8::2] SIP/2.0\r\nCSeq: 2 REGISTER\r\nContact:\r\n \
             <sip:u@[2001:db8::1]:5070>\r\nExpires: 60\r\n\r\nv=0\r\nc=IN IP6 ::1.2.3.4\r\n\
             m=image 6000 udptl\r\n"
                .to_string(),
        ];
        let flips = [
            0u8, b'\r', b'\n', b' ', b'\t', b':', b'@', b'[', b']', b'.', b',', b';', b'0', b'9',
            b'x', b'm', 0xc0, 0xff,
        ];
        let conns = [
            from_alice(),
            Conn {
                v6: true,
                src: v6("2001:db8::1"),
                dst: [0; 16],
                expected: false,
            },
        ];
        let mut n = 0usize;
        for s in &samples {
            let s = s.as_bytes();
            for c in &conns {
                for cut in 0..=s.len() {
                    for m in [
                        Master::default(),
                        Master {
                            register_cseq: 2,
                            invite_cseq: 1,
                        },
                    ] {
                        let mut m = m;
                        help_udp(&mut m, c, &s[..cut], &mut Rec::default());
                        help_udp(&mut m, c, &s[cut..], &mut Rec::default());
                        n += 2;
                    }
                }
                for i in 0..s.len() {
                    for &f in &flips {
                        let mut t = s.to_vec();
                        t[i] = f;
                        let mut m = Master {
                            register_cseq: 2,
                            invite_cseq: 1,
                        };
                        let x = &mut Rec {
                            found: i % 2 == 0,
                            ..Rec::default()
                        };
                        help_udp(&mut m, c, &t, x);
                        help_udp(&mut m, c, &t[..i], x);
                        n += 2;
                    }
                }
            }
        }
        assert!(n > 10_000);
        // Pseudo-random bytes over a SIP-ish alphabet.
        let alphabet =
            b"SIP/2.0 INVITEREGISTERCSeqContactm:v=c=IN IP4 IP6 1.2.3.4::[]@,;\r\n \t0x9";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut t = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 200) as usize;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = (seed >> 32) as usize;
                t.push(if k % 16 == 0 {
                    k as u8
                } else {
                    alphabet[k % alphabet.len()]
                });
            }
            if seed % 3 == 0 {
                t.splice(
                    0..0,
                    b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n".iter().copied(),
                );
            }
            for c in &conns {
                let mut m = Master::default();
                help_udp(&mut m, c, &t, &mut Rec::default());
            }
        }
    }
}

/// The searches against the byte-at-a-time loops they replaced (the kernel's own way of
/// reading), on texts made of the bytes that matter to them.
#[cfg(test)]
mod search_tests {
    use super::*;
    use proptest::prelude::*;

    fn search_header_model(t: &Text, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        let limit = limit.checked_sub(needle.len())?;
        let mut p = i;
        while p < limit {
            if is_eol(t.at(p)) {
                p = t.continuation(p, limit)? + 1;
                continue;
            }
            if t.eq_nocase(p, needle) {
                return Some(p);
            }
            p += 1;
        }
        None
    }

    fn search_line_model(t: &Text, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
        let limit = limit.checked_sub(needle.len())?;
        let mut p = i;
        while p < limit {
            if is_eol(t.at(p)) {
                return None;
            }
            if t.eq_case(p, needle) {
                return Some(p);
            }
            p += 1;
        }
        None
    }

    fn line_after_model(t: &Text, p: usize) -> Option<usize> {
        let eol = (p..t.len()).find(|&i| is_eol(t.at(i)))?;
        t.next_line(eol)
    }

    /// The line walks with the byte loops and without the first-byte test.
    struct Slow;

    impl Walk for Slow {
        const FIRST_BYTE: bool = false;
        fn line_after(t: &Text<'_>, p: usize) -> Option<usize> {
            line_after_model(t, p)
        }
        fn in_header(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
            search_header_model(t, i, limit, needle)
        }
        fn in_line(t: &Text<'_>, i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
            search_line_model(t, i, limit, needle)
        }
    }

    fn header_model(t: &Text, from: usize, f: &Field) -> Hit {
        t.header_with::<Slow>(from, f)
    }

    fn sdp_line_model(t: &Text, from: usize, f: &Field, stop: Option<&Field>) -> Hit {
        t.sdp_line_with::<Slow>(from, f, stop)
    }

    /// Texts of the bytes the searches stop at or look for, in runs long enough to cross the
    /// word-at-a-time part and reach the vector search.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => proptest::sample::select(&b"\r\n \t,;:=sSiIpPcCmM0129aZ"[..]).prop_map(|b| vec![b]),
            1 => proptest::sample::select(&WORDS[..]).prop_map(<[u8]>::to_vec),
            1 => (1usize..200).prop_map(|n| vec![b'x'; n]),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    const WORDS: [&[u8]; 18] = [
        b"\r\nm:",
        b"\nl :",
        b"\r\nContent-Length:",
        b"\r\nCSeq:",
        b"\nExpires: ",
        b"\r\nm=audio ",
        b"\r\nc=IN IP4 ",
        b"sip:",
        b"SIP:",
        b"CSeq",
        b"Contact",
        b"m=",
        b"c=",
        b"IN IP4 ",
        b"transport=",
        b"expires=",
        b"\r\n ",
        b"\r\n",
    ];
    const NEEDLES: [&[u8]; 6] = [b",", b"sip:", b"transport=", b"IN IP4 ", b"expires=", b"m"];
    const FIELDS: [&Field; 6] = [
        &CSEQ,
        &CONTACT,
        &CONTENT_LENGTH,
        &EXPIRES,
        &SDP_MEDIA,
        &SDP_VERSION,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn searches_agree_with_byte_loops(b in text(), from in 0usize..400, cut in 0usize..400) {
            let t = Text { b: &b, v6: false };
            let from = from.min(b.len());
            let limit = b.len() - cut.min(b.len());
            for needle in NEEDLES {
                prop_assert_eq!(
                    t.search_header(from, limit, needle),
                    search_header_model(&t, from, limit, needle)
                );
                prop_assert_eq!(
                    t.search_line(from, limit, needle),
                    search_line_model(&t, from, limit, needle)
                );
            }
            prop_assert_eq!(t.line_after(from), line_after_model(&t, from));
            for f in FIELDS {
                prop_assert_eq!(t.header(from, f), header_model(&t, from, f));
                prop_assert_eq!(
                    t.sdp_line(from, f, Some(&SDP_MEDIA)),
                    sdp_line_model(&t, from, f, Some(&SDP_MEDIA))
                );
                prop_assert_eq!(t.sdp_line(from, f, None), sdp_line_model(&t, from, f, None));
            }
        }

        #[test]
        fn find2_finds_the_first_of_two_bytes(
            s in proptest::collection::vec(proptest::sample::select(&b"abc\r\n"[..]), 0..300),
            a in proptest::sample::select(&b"abc\r\n"[..]),
            b in proptest::sample::select(&b"abc\r\n"[..]),
            skip in 0usize..300,
        ) {
            // Long runs without either byte, then the rest.
            let mut s2 = vec![b'z'; skip];
            s2.extend_from_slice(&s);
            prop_assert_eq!(find2(a, b, &s2), s2.iter().position(|&c| c == a || c == b));
        }
    }
}
