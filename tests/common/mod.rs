//! Frames the integration tests build by hand, and the scenario captures of `pcaps/` with the
//! engine configuration their arguments ask for.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ctrack::packet::{csum_add, csum_fold};
use ctrack::{Config, HostModel, LinkType};

/// The goldens under `dir` (each beside its capture and arguments), recursively.
pub fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            captures(&p, out);
        } else if p.extension().is_some_and(|x| x == "golden") {
            out.push(p);
        }
    }
}

/// The capture beside a golden (`NAME.pcap` or `NAME.pcapng`) and the arguments it was
/// replayed with (`NAME.args`, empty when there is none).
pub fn capture_of(golden: &Path) -> (PathBuf, String) {
    let base = golden.with_extension("");
    let cap = ["pcap", "pcapng"]
        .iter()
        .map(|e| base.with_extension(e))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no capture beside {}", golden.display()));
    let args = std::fs::read_to_string(base.with_extension("args")).unwrap_or_default();
    (cap, args)
}

/// Whether a golden's capture is a zone scenario (`NAME.zones` beside it, see
/// `pcaps/gen/ktrace_rules.py`): its packets are tracked in the zone [`zone_of`] gives.
pub fn zoned(golden: &Path) -> bool {
    golden.with_extension("zones").exists()
}

/// The conntrack zone of a zone scenario's packet, by the rule `pcaps/gen/ktrace_rules.py`
/// gives the kernel: N for an IPv4 TTL or IPv6 hop limit of 100 + N (N = 1 to 9), else 0.
pub fn zone_of(frame: &[u8], link: LinkType) -> u16 {
    let ip = ctrack::packet::ip_of_frame(frame, link).unwrap_or_default();
    let ttl = match ip.first().map(|b| b >> 4) {
        Some(4) => ip.get(8),
        Some(6) => ip.get(7),
        _ => None,
    };
    match ttl {
        Some(&t) if (101..=109).contains(&t) => u16::from(t - 100),
        _ => 0,
    }
}

/// Whether a golden's capture is a mark scenario (`NAME.marks` beside it, see
/// `pcaps/gen/ktrace_rules.py`): a packet that [`mark_of`] gives a mark sets its connection's
/// mark (see [`apply_mark`]).
pub fn marked(golden: &Path) -> bool {
    golden.with_extension("marks").exists()
}

/// The connection mark a mark scenario's packet sets, by the rule `pcaps/gen/ktrace_rules.py`
/// gives the kernel: N for DSCP N (1 to 9), 0 for DSCP 10, none for any other.
pub fn mark_of(frame: &[u8], link: LinkType) -> Option<u32> {
    let ip = ctrack::packet::ip_of_frame(frame, link)?;
    let dscp = match ip.first()? >> 4 {
        4 => ip.get(1)? >> 2,
        6 => (ip.first()? & 0x0f) << 2 | ip.get(1)? >> 6,
        _ => return None,
    };
    match dscp {
        1..=9 => Some(u32::from(dscp)),
        10 => Some(0),
        _ => None,
    }
}

/// A mark scenario's rule for a packet just tracked: when [`mark_of`] gives it a mark and it
/// has a connection (a packet the kernel leaves without one marks nothing), the connection
/// gets the mark (found by `tuple_of`: an ICMP error's is the connection it is about, as the
/// kernel attaches that one to the error).
pub fn apply_mark(
    ct: &ctrack::Conntrack,
    v: ctrack::Verdict,
    frame: &[u8],
    link: LinkType,
    zone: u16,
    now: u64,
) {
    let carries = v.tracked() || v.state == ctrack::State::Unmarked;
    let tuple = ct.in_zone(zone).tuple_of(frame, link);
    if let (true, Some(mark), Some(t)) = (carries, mark_of(frame, link), tuple) {
        ct.set_mark(&t, mark, now);
    }
}

/// The engine configuration for a scenario's arguments (as given to ktrace).
pub fn config(args: &str) -> Config {
    let mut cfg = Config {
        host: HostModel::Router,
        ..Config::default()
    };
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    let mut it = args.split_whitespace();
    let mut helpers = Vec::new();
    while let Some(a) = it.next() {
        match a {
            "--sysctl" => {
                cfg.set_sysctl(it.next().expect("--sysctl value")).unwrap();
            }
            "--helper" => helpers.push(it.next().expect("--helper value").to_string()),
            "--timeout-policy" => {
                cfg.add_timeout_rule(it.next().expect("--timeout-policy value"))
                    .unwrap();
            }
            "--realtime" => {}
            other => panic!("unknown scenario argument {other}"),
        }
    }
    cfg.helpers = ctrack_helpers::parse_assignments(helpers.iter().map(String::as_str)).unwrap();
    cfg
}

/// A raw IPv4 TCP segment without options or payload, its IPv4 header checksum right (the
/// TCP checksum is left zero: the tests that use it turn `nf_conntrack_checksum` off).
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut p = ipv4(src, dst, 6, 20);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

/// A 20-byte IPv4 header (DF set, TTL 64) for `l4_len` bytes of protocol `proto`, its
/// checksum right.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> Vec<u8> {
    let tot = (20 + l4_len).to_be_bytes();
    let mut p = vec![0x45, 0, tot[0], tot[1], 0, 0, 0x40, 0, 64, proto, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = !csum_fold(csum_add(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// A raw IPv4 UDP datagram with 4 bytes of payload (the UDP checksum left zero, which means
/// none).
pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = ipv4(src, dst, 17, 12);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
    p
}
