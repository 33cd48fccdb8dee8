//! Test-only mini engine: replays the kernel-stamped TCP scenario captures under `pcaps/tcp/`
//! through [`new_conn`]/[`track_full`] with a tiny connection table, and compares every
//! packet's verdict and the final table with the kernel's golden output.
//!
//! It knows just enough of the engine's job for TCP-only captures: Ethernet / raw / SLL2
//! framing, IPv4 and IPv6 without extension headers, lookup in both directions, expiry,
//! SEEN_REPLY/ASSURED bits and the `new`/`established` packet states.

use super::*;
use crate::Nanos;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Original-direction key: (source address, destination address, source port, dest port).
type Key = (Vec<u8>, Vec<u8>, u16, u16);

struct Entry {
    orig: Key,
    st: TcpState,
    seen_reply: bool,
    assured: bool,
    expires: Nanos,
}

/// The mini engine's table.
#[derive(Default)]
pub(super) struct Table {
    entries: Vec<Entry>,
    index: HashMap<Key, (usize, Dir)>,
}

fn reverse(k: &Key) -> Key {
    (k.1.clone(), k.0.clone(), k.3, k.2)
}

impl Table {
    fn rebuild(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            self.index.insert(e.orig.clone(), (i, Dir::Original));
            self.index.insert(reverse(&e.orig), (i, Dir::Reply));
        }
    }

    fn remove(&mut self, i: usize) {
        self.entries.remove(i);
        self.rebuild();
    }

    fn insert(&mut self, e: Entry) {
        self.entries.push(e);
        self.rebuild();
    }

    /// Processes one TCP segment (`l4`) of flow `key` at `now`; returns the verdict as ktrace
    /// prints it.
    pub(super) fn packet(&mut self, key: Key, l4: &[u8], now: Nanos, s: &Sysctl) -> String {
        if let Some(&(i, _)) = self.index.get(&key) {
            if self.entries[i].expires <= now {
                self.remove(i);
            }
        }
        let seg = match parse(l4) {
            Ok(seg) => seg,
            Err(_) => return "invalid".into(),
        };
        if let Some(&(i, dir)) = self.index.get(&key) {
            let e = &mut self.entries[i];
            let ctx = Ctx {
                dir,
                confirmed: true,
                seen_reply: e.seen_reply,
                assured: e.assured,
                now,
                expires: e.expires,
            };
            let state = match (dir, e.seen_reply) {
                (Dir::Reply, _) => "established,reply",
                (Dir::Original, true) => "established,orig",
                (Dir::Original, false) => "new,orig",
            };
            let v = track_full(&mut e.st, &seg, &ctx, s);
            let mut kill = false;
            match v.decision {
                Decision::Invalid => {
                    if let Some(t) = v.lower_timeout {
                        e.expires = now + t;
                    }
                    return "invalid".into();
                }
                Decision::Reopen => {
                    self.remove(i);
                    return self.create(key, &seg, now, s);
                }
                Decision::Ignore => {}
                Decision::Accept(a) => {
                    if let Some(t) = a.timeout {
                        e.expires = now + t;
                    }
                    e.assured |= a.assured;
                    kill = a.kill;
                }
            }
            if dir == Dir::Reply {
                e.seen_reply = true;
            }
            let out = format!("{state}{}", if e.assured { "+assured" } else { "" });
            if kill {
                self.remove(i);
            }
            return out;
        }
        self.create(key, &seg, now, s)
    }

    fn create(&mut self, key: Key, seg: &Segment<'_>, now: Nanos, s: &Sysctl) -> String {
        let Some(mut st) = new_conn(seg, s) else {
            return "invalid".into();
        };
        let ctx = Ctx {
            dir: Dir::Original,
            confirmed: false,
            seen_reply: false,
            assured: false,
            now,
            expires: 0,
        };
        let mut e = Entry {
            orig: key,
            st,
            seen_reply: false,
            assured: false,
            expires: now,
        };
        match track_full(&mut st, seg, &ctx, s).decision {
            Decision::Accept(a) => {
                e.expires = now + a.timeout.unwrap_or(0);
                e.assured = a.assured;
                if a.kill {
                    return "new,orig".into();
                }
            }
            Decision::Ignore => {}
            Decision::Invalid | Decision::Reopen => return "invalid".into(),
        }
        e.st = st;
        self.insert(e);
        "new,orig".into()
    }

    /// The live entries at `now` as comparable rows: (orig tuple text, state, seconds left,
    /// unreplied, assured).
    pub(super) fn rows(&self, now: Nanos) -> Vec<(String, String, i64, bool, bool)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.expires > now)
            .map(|e| {
                (
                    tuple_text(&e.orig),
                    state_name(&e.st).to_string(),
                    ((e.expires - now) / crate::NANOS_PER_SEC) as i64,
                    !e.seen_reply,
                    e.assured,
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn addr_text(a: &[u8]) -> String {
    if a.len() == 4 {
        format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
    } else {
        let mut s = String::new();
        for (i, w) in a.chunks(2).enumerate() {
            if i > 0 {
                s.push(':');
            }
            let _ = write!(s, "{:02x}{:02x}", w[0], w.get(1).copied().unwrap_or(0));
        }
        s
    }
}

fn tuple_text(k: &Key) -> String {
    format!(
        "src={} dst={} sport={} dport={}",
        addr_text(&k.0),
        addr_text(&k.1),
        k.2,
        k.3
    )
}

/// A capture's packets: (time, link-layer frame), and its link type.
fn read_pcap(path: &Path) -> (u32, Vec<(Nanos, Vec<u8>)>) {
    let data = std::fs::read(path).expect("read pcap");
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let nano = match magic {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        m => panic!("{}: unexpected pcap magic {m:#x}", path.display()),
    };
    let link = u32::from_le_bytes(data[20..24].try_into().unwrap());
    let mut off = 24;
    let mut out = Vec::new();
    while off + 16 <= data.len() {
        let w = |i: usize| u32::from_le_bytes(data[off + i..off + i + 4].try_into().unwrap());
        let (sec, frac, incl) = (w(0), w(4), w(8) as usize);
        let t = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nano { 1 } else { 1000 };
        out.push((t, data[off + 16..off + 16 + incl].to_vec()));
        off += 16 + incl;
    }
    (link, out)
}

/// The IP packet of a frame.
fn ip_of(frame: &[u8], link: u32) -> Option<&[u8]> {
    match link {
        1 => {
            let et = u16::from_be_bytes([frame[12], frame[13]]);
            (et == 0x0800 || et == 0x86dd).then(|| &frame[14..])
        }
        101 | 228 | 229 => Some(frame),
        276 => Some(&frame[20..]),
        _ => None,
    }
}

/// (flow key, TCP segment) of an unfragmented IPv4 or extension-free IPv6 TCP packet.
fn tcp_of(ip: &[u8]) -> Option<(Key, &[u8])> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 15) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if ip[9] != 6 || frag != 0 {
                return None;
            }
            let l4 = ip.get(ihl..total)?;
            let key = (
                ip[12..16].to_vec(),
                ip[16..20].to_vec(),
                port(l4, 0)?,
                port(l4, 2)?,
            );
            Some((key, l4))
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ip[6] != 6 {
                return None;
            }
            let l4 = ip.get(40..40 + plen)?;
            let key = (
                ip[8..24].to_vec(),
                ip[24..40].to_vec(),
                port(l4, 0)?,
                port(l4, 2)?,
            );
            Some((key, l4))
        }
        _ => None,
    }
}

fn port(l4: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]))
}

/// A golden table line as a comparable row.
fn golden_row(line: &str) -> Option<(String, String, i64, bool, bool)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.get(2) != Some(&"tcp") {
        return None;
    }
    let secs: i64 = f[4].parse().ok()?;
    let state = f[5].to_string();
    let tuple = f[6..10].join(" ");
    Some((
        tuple,
        state,
        secs,
        line.contains("[UNREPLIED]"),
        line.contains("[ASSURED]"),
    ))
}

/// Replays one scenario; returns the differences from its golden output.
pub(super) fn replay(pcap: &Path) -> Vec<String> {
    let golden_path = pcap.with_extension("golden");
    let args_path = pcap.with_extension("args");
    let golden = std::fs::read_to_string(&golden_path).expect("golden");
    let args = std::fs::read_to_string(&args_path).unwrap_or_default();
    let mut s = Sysctl::default();
    let words: Vec<&str> = args.split_whitespace().collect();
    for w in words.windows(2) {
        if w[0] == "--sysctl" {
            s.apply(w[1]).expect("sysctl");
        }
    }
    let (link, frames) = read_pcap(pcap);
    let mut table = Table::default();
    let mut diffs = Vec::new();
    let expected: HashMap<usize, &str> = golden
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(i, v)| (i.parse().expect("index"), v))
        .collect();
    let mut last = 0;
    for (i, (t, frame)) in frames.iter().enumerate() {
        last = *t;
        let Some((key, l4)) = ip_of(frame, link).and_then(tcp_of) else {
            continue;
        };
        let got = table.packet(key, l4, *t, &s);
        let want = expected.get(&i).copied().unwrap_or("?");
        if got != want {
            diffs.push(format!("packet {i}: kernel {want}, ours {got}"));
        }
    }
    let mut want: Vec<_> = golden
        .lines()
        .filter_map(|l| l.strip_prefix("# table "))
        .filter_map(golden_row)
        .collect();
    want.sort();
    let got = table.rows(last);
    let same = want.len() == got.len()
        && want.iter().zip(&got).all(|(w, g)| {
            w.0 == g.0 && w.1 == g.1 && w.3 == g.3 && w.4 == g.4 && (w.2 - g.2).abs() <= 1
        });
    if !same {
        diffs.push(format!("table: kernel {want:?}\n       ours   {got:?}"));
    }
    diffs
}

/// Every scenario capture under `pcaps/tcp/`.
pub(super) fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/tcp");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn kernel_goldens() {
    let all = scenarios();
    assert!(
        all.len() >= 25,
        "expected the TCP scenario captures under pcaps/tcp"
    );
    let mut report = String::new();
    for p in &all {
        let diffs = replay(p);
        if !diffs.is_empty() {
            let _ = writeln!(report, "{}:", p.file_stem().unwrap().to_string_lossy());
            for d in diffs {
                let _ = writeln!(report, "  {d}");
            }
        }
    }
    assert!(report.is_empty(), "differences from the kernel:\n{report}");
}
