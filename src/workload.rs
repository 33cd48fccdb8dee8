//! Synthetic traffic for benchmarks: established TCP flows with live sequence numbers, SYN
//! floods, UDP flows, and a mix; valid IPv4/IPv6 headers and checksums, held in memory.
//!
//! ```
//! use ctrack::workload::{Kind, Workload};
//! let w = Workload::generate(Kind::Udp, 10, 100, false, 1);
//! assert_eq!(w.len(), 100);
//! assert_eq!(w.setup_len(), 20); // one request and one reply per flow before timing
//! ```

use crate::packet::{csum_add, csum_add_u32, csum_fold};

/// Which traffic to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Established TCP flows: data one way, acknowledgements the other, in window.
    Established,
    /// A SYN flood: every packet opens a new connection.
    Syn,
    /// UDP flows talking both ways.
    Udp,
    /// 70% established TCP, 20% UDP, 10% new TCP connections.
    Mix,
    /// A SYN flood into a table of established TCP flows: the setup opens every flow (each
    /// ASSURED by its handshake), then every packet opens a new connection. With
    /// `nf_conntrack_max` at the number of flows, early drop finds nothing to evict, and
    /// every packet is dropped after its walk: the costliest new connection there is.
    Flood,
}

/// Payload of each data segment unless [`Workload::with_payload`] says otherwise.
pub const DEFAULT_PAYLOAD: usize = 64;
/// The largest payload a data segment can carry: an IPv6 packet of 1500 bytes.
pub const MAX_PAYLOAD: usize = 1440;

/// What a data segment carries: byte `k` is `k` (mod 256).
const PATTERN: [u8; MAX_PAYLOAD] = {
    let mut p = [0u8; MAX_PAYLOAD];
    let mut k = 0;
    while k < MAX_PAYLOAD {
        p[k] = k as u8;
        k += 1;
    }
    p
};

/// The most connections a workload numbers: its flows, the FTP control connection and the
/// new connections of its timed packets together (each takes its addresses from a 32-bit
/// number).
pub const MAX_CONNECTIONS: usize = u32::MAX as usize;

/// Packets of the FTP session that leaves an expectation pending (see
/// [`Workload::with_ftp_expectation`]).
const FTP_PACKETS: usize = 7;

/// Why a workload cannot be generated (see [`Workload::try_new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadError {
    /// No flows were asked for.
    NoFlows,
    /// More connections than [`MAX_CONNECTIONS`]: this many.
    TooManyConnections(u128),
    /// The packets need more memory than can be had: this many bytes.
    NoMemory(u128),
}

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkloadError::NoFlows => write!(f, "a workload needs at least one flow"),
            WorkloadError::TooManyConnections(n) => write!(
                f,
                "{n} connections are more than a workload can number ({MAX_CONNECTIONS})"
            ),
            WorkloadError::NoMemory(b) => {
                write!(
                    f,
                    "its packets need {b} bytes of memory, which cannot be allocated"
                )
            }
        }
    }
}

impl std::error::Error for WorkloadError {}

/// What a workload holds (see [`Workload::needs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Its packets, setup included.
    pub packets: usize,
    /// The bytes its packets and flows take.
    pub bytes: u128,
    /// The bytes each packet takes in it (see [`Workload::stride`]).
    pub stride: usize,
}

/// A generated workload: setup packets (untimed: handshakes, first exchanges) and the timed
/// packets, all raw IP, each with the flow it belongs to.
#[derive(Clone, Debug)]
pub struct Workload {
    buf: Vec<u8>,
    /// Bytes from one packet's start to the next's in `buf` (every packet gets a slot).
    stride: usize,
    /// Payload of each TCP data segment.
    payload: usize,
    lens: Vec<u16>,
    flows: Vec<u32>,
    setup: usize,
    /// Connections the workload opens (setup flows and new connections).
    conns: usize,
}

/// The workload an infallible constructor promised, or a panic saying why there is none.
fn made(w: Result<Workload, WorkloadError>) -> Workload {
    w.unwrap_or_else(|e| panic!("cannot generate the workload: {e}"))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Flow {
    client: [u8; 16],
    server: [u8; 16],
    cport: u16,
    sport: u16,
    cseq: u32,
    sseq: u32,
    /// Whose turn it is: data and acknowledgements alternate, so the data never outruns the
    /// window.
    client_turn: bool,
}

impl Workload {
    /// Generates `packets` timed packets over `flows` flows (a SYN flood ignores `flows`: every
    /// packet is a new flow). `seed` makes it reproducible.
    pub fn generate(kind: Kind, flows: usize, packets: usize, v6: bool, seed: u64) -> Workload {
        Workload::with_payload(kind, flows, packets, v6, seed, DEFAULT_PAYLOAD)
    }

    /// [`Workload::generate`] with TCP data segments of `payload` bytes (at most
    /// [`MAX_PAYLOAD`]; more is cut to it), as bulk transfers carry.
    ///
    /// ```
    /// use ctrack::workload::{Kind, Workload};
    /// let w = Workload::with_payload(Kind::Established, 10, 100, false, 1, 1400);
    /// let longest = (0..w.len()).map(|i| w.packet(w.setup_len() + i).len()).max();
    /// assert_eq!(longest, Some(20 + 20 + 1400));
    /// ```
    pub fn with_payload(
        kind: Kind,
        flows: usize,
        packets: usize,
        v6: bool,
        seed: u64,
        payload: usize,
    ) -> Workload {
        made(Self::try_new(
            kind,
            flows.max(1),
            packets,
            v6,
            seed,
            payload,
            false,
        ))
    }

    /// [`Workload::with_payload`] whose setup ends with an FTP control connection (to port
    /// 21) whose server answers a passive-mode request (227, or 229 over IPv6): with the FTP
    /// helper assigned, an expectation is then pending through the timed packets (for five
    /// minutes of their time), as it often is where a helper is in use.
    ///
    /// ```
    /// use ctrack::workload::{Kind, Workload};
    /// use ctrack::{Config, Conntrack, LinkType};
    /// let w = Workload::with_ftp_expectation(Kind::Established, 10, 100, false, 1, 64);
    /// let mut cfg = Config::default();
    /// cfg.helpers = ctrack_helpers::parse_assignment("ftp:tcp:21").unwrap();
    /// let ct = Conntrack::new(cfg);
    /// for i in 0..w.setup_len() {
    ///     ct.process(w.packet(i), LinkType::Raw, 1);
    /// }
    /// let mut pending = 0;
    /// ct.for_each_expectation(1, |_| pending += 1);
    /// assert_eq!(pending, 1);
    /// ```
    pub fn with_ftp_expectation(
        kind: Kind,
        flows: usize,
        packets: usize,
        v6: bool,
        seed: u64,
        payload: usize,
    ) -> Workload {
        made(Self::try_new(
            kind,
            flows.max(1),
            packets,
            v6,
            seed,
            payload,
            true,
        ))
    }

    /// A workload of `packets` timed packets over `flows` flows, as
    /// [`Workload::with_payload`] generates it (or [`Workload::with_ftp_expectation`], when
    /// `ftp`), or why it cannot be: no flows, more connections than its flow numbers tell
    /// apart, or more memory than can be had. The constructors above take 0 flows as 1 and
    /// panic where this returns an error.
    ///
    /// ```
    /// use ctrack::workload::{Kind, Workload, WorkloadError};
    /// assert_eq!(
    ///     Workload::try_new(Kind::Established, 0, 10, false, 1, 64, false).unwrap_err(),
    ///     WorkloadError::NoFlows
    /// );
    /// let w = Workload::try_new(Kind::Syn, 1, 10, false, 1, 64, false).unwrap();
    /// assert_eq!(w.connections(), 10);
    /// ```
    pub fn try_new(
        kind: Kind,
        flows: usize,
        packets: usize,
        v6: bool,
        seed: u64,
        payload: usize,
        ftp: bool,
    ) -> Result<Workload, WorkloadError> {
        let need = Self::needs(kind, flows, packets, payload, ftp)?;
        let payload = payload.min(MAX_PAYLOAD);
        let stride = Self::stride_for(payload);
        let no_memory = |_| WorkloadError::NoMemory(need.bytes);
        let mut w = Workload {
            buf: Vec::new(),
            stride,
            payload,
            lens: Vec::new(),
            flows: Vec::new(),
            setup: 0,
            conns: 0,
        };
        w.buf
            .try_reserve_exact(need.packets * stride)
            .map_err(no_memory)?;
        w.lens.try_reserve_exact(need.packets).map_err(no_memory)?;
        w.flows.try_reserve_exact(need.packets).map_err(no_memory)?;
        let mut fl: Vec<Flow> = Vec::new();
        fl.try_reserve_exact(flows).map_err(no_memory)?;
        let mut rng = Rng(seed | 1);
        fl.extend((0..flows).map(|i| flow_addrs(i as u32, &mut rng)));
        // Setup: open every TCP flow (handshake) and every UDP flow (request and reply).
        let tcp_part = |i: usize| match kind {
            Kind::Mix => i % 10 < 7,
            _ => true,
        };
        if kind != Kind::Syn {
            for (i, f) in fl.iter_mut().enumerate() {
                if kind == Kind::Udp || (kind == Kind::Mix && !tcp_part(i)) {
                    w.push_udp(f, true, v6, i as u32);
                    w.push_udp(f, false, v6, i as u32);
                } else {
                    w.push_tcp(f, true, 0x02, 0, v6, i as u32);
                    f.cseq = f.cseq.wrapping_add(1);
                    w.push_tcp(f, false, 0x12, 0, v6, i as u32);
                    f.sseq = f.sseq.wrapping_add(1);
                    w.push_tcp(f, true, 0x10, 0, v6, i as u32);
                }
            }
        }
        if kind != Kind::Syn {
            w.conns = flows;
        }
        if ftp {
            w.push_ftp_passive(flows as u32, v6, seed);
        }
        w.setup = w.lens.len();
        let mut next_new = flows as u32;
        for _ in 0..packets {
            let r = rng.next();
            let new_conn = match kind {
                Kind::Syn | Kind::Flood => true,
                Kind::Mix => r % 10 == 9,
                _ => false,
            };
            if new_conn {
                let mut f = flow_addrs(next_new, &mut rng);
                w.push_tcp(&mut f, true, 0x02, 0, v6, next_new);
                next_new = next_new.wrapping_add(1);
                w.conns += 1;
                continue;
            }
            let i = (r >> 8) as usize % flows;
            let f = &mut fl[i];
            let to_server = f.client_turn;
            f.client_turn = !f.client_turn;
            if kind == Kind::Udp || (kind == Kind::Mix && !tcp_part(i)) {
                w.push_udp(f, to_server, v6, i as u32);
            } else if to_server {
                // Data from the client, acknowledging everything the server sent.
                w.push_tcp(f, true, 0x18, w.payload, v6, i as u32);
                f.cseq = f.cseq.wrapping_add(w.payload as u32);
            } else {
                w.push_tcp(f, false, 0x10, 0, v6, i as u32);
            }
        }
        Ok(w)
    }

    /// Bytes from one packet's start to the next's for data segments of `payload` bytes:
    /// room for the largest packet (an IPv6 data segment, or the FTP reply), in whole cache
    /// lines.
    fn stride_for(payload: usize) -> usize {
        (40 + 20 + payload.clamp(64, MAX_PAYLOAD)).next_multiple_of(64)
    }

    /// What a workload of these parameters holds (see [`Workload::try_new`]): its packets,
    /// setup included, and the bytes they and their flows take; or why it cannot be made.
    ///
    /// ```
    /// use ctrack::workload::{Kind, Workload, WorkloadError};
    /// // Three setup packets a flow, then the timed ones.
    /// assert_eq!(Workload::needs(Kind::Established, 1000, 5000, 64, false).unwrap().packets, 8000);
    /// // Flow numbers are 32 bits: the flows and every new connection each need one.
    /// assert!(matches!(
    ///     Workload::needs(Kind::Syn, 1 << 31, 1 << 31, 64, false),
    ///     Err(WorkloadError::TooManyConnections(_))
    /// ));
    /// ```
    pub fn needs(
        kind: Kind,
        flows: usize,
        packets: usize,
        payload: usize,
        ftp: bool,
    ) -> Result<Needs, WorkloadError> {
        if flows == 0 {
            return Err(WorkloadError::NoFlows);
        }
        let (flows, timed) = (flows as u128, packets as u128);
        // Every flow gets a number, the FTP control connection the next, and each new
        // connection the ones after (a SYN flood numbers its connections after its flows).
        let numbered = flows
            + u128::from(ftp)
            + match kind {
                Kind::Syn | Kind::Flood | Kind::Mix => timed,
                Kind::Established | Kind::Udp => 0,
            };
        if numbered > MAX_CONNECTIONS as u128 {
            return Err(WorkloadError::TooManyConnections(numbered));
        }
        // The setup: a handshake of three a TCP flow (two packets a UDP flow, which three
        // covers; none for a SYN flood, which still numbers its flows), the FTP session's.
        let setup = if kind == Kind::Syn { 0 } else { 3 * flows };
        let all = setup + timed + if ftp { FTP_PACKETS as u128 } else { 0 };
        let per_packet = Self::stride_for(payload) + std::mem::size_of::<u16>() + 4;
        let bytes = all * per_packet as u128 + flows * std::mem::size_of::<Flow>() as u128;
        match usize::try_from(all) {
            Ok(packets) if bytes <= isize::MAX as u128 => Ok(Needs {
                packets,
                bytes,
                stride: Self::stride_for(payload),
            }),
            _ => Err(WorkloadError::NoMemory(bytes)),
        }
    }

    fn slot(&mut self) -> &mut [u8] {
        let at = self.buf.len();
        self.buf.resize(at + self.stride, 0);
        &mut self.buf[at..]
    }

    /// An FTP control connection (flow `id`, addresses of their own) to the moment its server
    /// has answered a passive-mode request after its banner, and the client has acknowledged
    /// the answer.
    fn push_ftp_passive(&mut self, id: u32, v6: bool, seed: u64) {
        let mut f = flow_addrs(id, &mut Rng(seed ^ 0x0f7b_5eed | 1));
        f.sport = 21;
        self.push_tcp(&mut f, true, 0x02, 0, v6, id);
        f.cseq = f.cseq.wrapping_add(1);
        self.push_tcp(&mut f, false, 0x12, 0, v6, id);
        f.sseq = f.sseq.wrapping_add(1);
        self.push_tcp(&mut f, true, 0x10, 0, v6, id);
        // The helper reads a line only where one ended before (the banner's line is not read).
        let banner = b"220 ready\r\n";
        self.push_segment(&mut f, false, 0x18, banner, v6, id);
        f.sseq = f.sseq.wrapping_add(banner.len() as u32);
        let pasv: &[u8] = if v6 { b"EPSV\r\n" } else { b"PASV\r\n" };
        self.push_segment(&mut f, true, 0x18, pasv, v6, id);
        f.cseq = f.cseq.wrapping_add(pasv.len() as u32);
        let port: u16 = 50_000;
        let reply = if v6 {
            format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
        } else {
            let s = f.server;
            let (hi, lo) = (port >> 8, port & 255);
            format!(
                "227 Entering Passive Mode ({},{},{},{},{hi},{lo})\r\n",
                s[0], s[1], s[2], s[3]
            )
        };
        self.push_segment(&mut f, false, 0x18, reply.as_bytes(), v6, id);
        f.sseq = f.sseq.wrapping_add(reply.len() as u32);
        self.push_tcp(&mut f, true, 0x10, 0, v6, id);
        self.conns += 1;
    }

    /// A TCP segment with `payload` bytes of a fixed pattern.
    fn push_tcp(
        &mut self,
        f: &mut Flow,
        from_client: bool,
        flags: u8,
        payload: usize,
        v6: bool,
        id: u32,
    ) {
        self.push_segment(f, from_client, flags, &PATTERN[..payload], v6, id);
    }

    /// A TCP segment carrying `data`.
    fn push_segment(
        &mut self,
        f: &mut Flow,
        from_client: bool,
        flags: u8,
        data: &[u8],
        v6: bool,
        id: u32,
    ) {
        let payload = data.len();
        let (src, dst, sp, dp, seq, ack) = if from_client {
            (f.client, f.server, f.cport, f.sport, f.cseq, f.sseq)
        } else {
            (f.server, f.client, f.sport, f.cport, f.sseq, f.cseq)
        };
        let mut l4 = [0u8; 20 + MAX_PAYLOAD];
        l4[0..2].copy_from_slice(&sp.to_be_bytes());
        l4[2..4].copy_from_slice(&dp.to_be_bytes());
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4[8..12].copy_from_slice(&(if flags & 0x10 != 0 { ack } else { 0 }).to_be_bytes());
        l4[12] = 0x50;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
        l4[20..20 + payload].copy_from_slice(data);
        let len = self.emit(&src, &dst, 6, &mut l4[..20 + payload], 16, v6);
        self.lens.push(len);
        self.flows.push(id);
    }

    fn push_udp(&mut self, f: &mut Flow, from_client: bool, v6: bool, id: u32) {
        let (src, dst, sp, dp) = if from_client {
            (f.client, f.server, f.cport, f.sport)
        } else {
            (f.server, f.client, f.sport, f.cport)
        };
        let mut l4 = [0u8; 8 + 32];
        l4[0..2].copy_from_slice(&sp.to_be_bytes());
        l4[2..4].copy_from_slice(&dp.to_be_bytes());
        let ulen = l4.len() as u16;
        l4[4..6].copy_from_slice(&ulen.to_be_bytes());
        let len = self.emit(&src, &dst, 17, &mut l4, 6, v6);
        self.lens.push(len);
        self.flows.push(id);
    }

    /// Writes an IP header around `l4`, filling in the layer-4 checksum at `csum_at`.
    fn emit(
        &mut self,
        src: &[u8; 16],
        dst: &[u8; 16],
        proto: u8,
        l4: &mut [u8],
        csum_at: usize,
        v6: bool,
    ) -> u16 {
        let (s, d): (&[u8], &[u8]) = if v6 {
            (src, dst)
        } else {
            (&src[..4], &dst[..4])
        };
        let mut sum = csum_add(0, s);
        sum = csum_add(sum, d);
        sum = csum_add_u32(sum, proto as u32 + l4.len() as u32);
        sum = csum_add(sum, l4);
        let c = !csum_fold(sum);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        let out = self.slot();
        let hl = if v6 { 40 } else { 20 };
        if v6 {
            out[0] = 0x60;
            out[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            out[6] = proto;
            out[7] = 64;
            out[8..24].copy_from_slice(s);
            out[24..40].copy_from_slice(d);
        } else {
            let tot = (20 + l4.len()) as u16;
            out[0] = 0x45;
            out[2..4].copy_from_slice(&tot.to_be_bytes());
            out[8] = 64;
            out[9] = proto;
            out[12..16].copy_from_slice(s);
            out[16..20].copy_from_slice(d);
            let c = !csum_fold(csum_add(0, &out[..20]));
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        out[hl..hl + l4.len()].copy_from_slice(l4);
        (hl + l4.len()) as u16
    }

    /// Timed packets.
    pub fn len(&self) -> usize {
        self.lens.len() - self.setup
    }

    /// True when there are no timed packets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Untimed setup packets (handshakes and first exchanges).
    pub fn setup_len(&self) -> usize {
        self.setup
    }

    /// Connections the workload opens, setup flows and new connections together: the entries
    /// a table needs for it when nothing expires.
    pub fn connections(&self) -> usize {
        self.conns
    }

    /// Bytes from one packet's start to the next's in the workload's memory: a multiple of 64
    /// with room for the longest packet.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Packet `i` of all (setup first), as raw IP.
    #[inline]
    pub fn packet(&self, i: usize) -> &[u8] {
        let at = i * self.stride;
        &self.buf[at..at + self.lens[i] as usize]
    }

    /// The flow packet `i` belongs to.
    #[inline]
    pub fn flow(&self, i: usize) -> u32 {
        self.flows[i]
    }

    /// Every packet, setup first.
    pub fn all(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.lens.len()).map(|i| self.packet(i))
    }
}

fn flow_addrs(i: u32, rng: &mut Rng) -> Flow {
    let r = rng.next();
    let mut client = [0u8; 16];
    let mut server = [0u8; 16];
    // IPv4 in the first four bytes; IPv6 uses all sixteen (2001:db8::/32 prefixes).
    client[..4].copy_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    server[..4].copy_from_slice(&[
        172,
        16 + (r >> 60) as u8,
        (r >> 8) as u8,
        (r >> 16) as u8 | 1,
    ]);
    client[4..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    server[4..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb9]);
    client[8..12].copy_from_slice(&i.to_be_bytes());
    server[8..16].copy_from_slice(&r.to_be_bytes());
    Flow {
        client,
        server,
        cport: 1024 + (r as u16 % 60000),
        sport: [80u16, 443, 53, 8080][(r >> 40) as usize % 4],
        cseq: (r >> 32) as u32,
        sseq: r as u32,
        client_turn: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Conntrack, LinkType, State};

    #[test]
    fn needs_counts_the_packets_and_memory_it_reserves() {
        for kind in [
            Kind::Established,
            Kind::Syn,
            Kind::Udp,
            Kind::Mix,
            Kind::Flood,
        ] {
            for ftp in [false, true] {
                for payload in [0, 64, 1400] {
                    let n = Workload::needs(kind, 30, 500, payload, ftp).unwrap();
                    let w = Workload::try_new(kind, 30, 500, false, 3, payload, ftp).unwrap();
                    let made = w.setup_len() + w.len();
                    // UDP flows open with two packets where three are counted.
                    let udp_flows = match kind {
                        Kind::Udp => 30,
                        Kind::Mix => (0..30).filter(|i| i % 10 >= 7).count(),
                        _ => 0,
                    };
                    let case = format!("{kind:?} ftp {ftp} payload {payload}");
                    assert_eq!(n.packets, made + udp_flows, "{case}");
                    assert_eq!(w.buf.capacity(), n.packets * w.stride(), "{case}");
                    assert_eq!(w.buf.len(), made * w.stride(), "{case}");
                    assert!(n.bytes >= w.buf.capacity() as u128, "{case}");
                }
            }
        }
    }

    #[test]
    fn impossible_workloads_are_refused() {
        let t = |k, f, p, ftp| Workload::try_new(k, f, p, false, 1, 64, ftp).map(|w| w.len());
        assert_eq!(t(Kind::Udp, 0, 10, false), Err(WorkloadError::NoFlows));
        let max = MAX_CONNECTIONS;
        // Established flows number only the flows; a SYN flood its new connections too.
        assert_eq!(
            Workload::needs(Kind::Established, max, 1 << 40, 64, false)
                .unwrap()
                .packets,
            3 * max + (1 << 40)
        );
        assert_eq!(
            t(Kind::Established, max, 1, true),
            Err(WorkloadError::TooManyConnections(max as u128 + 1))
        );
        assert_eq!(
            t(Kind::Syn, 10, max - 9, false),
            Err(WorkloadError::TooManyConnections(max as u128 + 1))
        );
        assert_eq!(
            t(Kind::Mix, 1, usize::MAX, false),
            Err(WorkloadError::TooManyConnections(usize::MAX as u128 + 1))
        );
        // More bytes than an address space holds: refused before anything is allocated.
        assert!(matches!(
            t(Kind::Established, 1, usize::MAX / 64, false),
            Err(WorkloadError::NoMemory(b)) if b > usize::MAX as u128
        ));
        // Old constructors still take no flows as one.
        assert_eq!(
            Workload::generate(Kind::Udp, 0, 10, false, 1).setup_len(),
            2
        );
    }

    #[test]
    fn generated_traffic_is_all_tracked() {
        for kind in [
            Kind::Established,
            Kind::Syn,
            Kind::Udp,
            Kind::Mix,
            Kind::Flood,
        ] {
            for v6 in [false, true] {
                let w = Workload::generate(kind, 50, 2000, v6, 7);
                let ct = Conntrack::new(Config::default());
                for (i, p) in w.all().enumerate() {
                    let v = ct.process(p, LinkType::Raw, 1_000_000 + i as u64);
                    assert!(
                        matches!(v.state, State::New | State::Established),
                        "{kind:?} v6={v6} packet {i}: {v}"
                    );
                    if i >= w.setup_len() && kind == Kind::Established {
                        assert_eq!(v.state, State::Established);
                    }
                }
                assert_eq!(ct.count(), w.connections(), "{kind:?} v6={v6}");
            }
        }
    }

    #[test]
    fn a_flood_into_a_table_full_of_its_flows_is_dropped_whole() {
        for v6 in [false, true] {
            let w = Workload::generate(Kind::Flood, 40, 500, v6, 3);
            let mut cfg = Config::default();
            cfg.set_sysctl("nf_conntrack_max=40").unwrap();
            cfg.shards = 4;
            let ct = Conntrack::new(cfg);
            for (i, p) in w.all().enumerate() {
                let v = ct.process(p, LinkType::Raw, 1_000_000 + i as u64);
                if i < w.setup_len() {
                    assert!(v.tracked(), "v6={v6} setup packet {i}: {v}");
                } else {
                    assert_eq!(v, crate::Verdict::DROPPED, "v6={v6} packet {i}");
                }
            }
            // The established flows all stay, ASSURED.
            let mut assured = 0;
            ct.for_each_entry(2_000_000, |e| {
                assured += usize::from(e.status & crate::table::status::ASSURED != 0)
            });
            assert_eq!((ct.count(), assured), (40, 40), "v6={v6}");
            assert_eq!(w.connections(), 540);
        }
    }
}
