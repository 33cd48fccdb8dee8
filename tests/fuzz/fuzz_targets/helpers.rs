//! Payload in, announcements out: the helpers' readers (SIP, IRC, Amanda, SANE, PPTP) on any
//! bytes must not panic, and SIP's and PPTP's state must stay consistent over a run of
//! messages.
//!
//! The input is one selector byte (helper, SIP over UDP or TCP, direction, IPv6), then
//! messages separated by the byte sequence `\xff\x00\xff`, each read in turn by one
//! connection's helper state.

#![no_main]

use ctrack_helpers::sip::{self, Class, Conn, Expect};
use ctrack_helpers::{amanda, irc, pptp, sane};
use libfuzzer_sys::fuzz_target;

/// An expectation table that accepts everything and counts what it is asked.
#[derive(Default)]
struct Table {
    asked: u64,
    refresh: bool,
}

impl Expect for Table {
    fn flush(&mut self, _media: bool) {
        self.asked += 1;
    }
    fn media(&mut self, _class: Class, _addr: [u8; 16], port: u16) -> bool {
        self.asked += 1;
        port & 1 == 0 || self.refresh
    }
    fn signalling(&mut self, _addr: [u8; 16], proto: u8, _port: u16) -> bool {
        self.asked += 1;
        proto == 17 || proto == 6
    }
    fn refresh_signalling(&mut self, _addr: [u8; 16], _proto: u8, _port: u16, _s: u32) -> bool {
        self.asked += 1;
        self.refresh
    }
}

fn messages(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = rest.windows(3).position(|w| w == b"\xff\x00\xff");
        let (m, r) = match cut {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = r;
        Some(m)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let from_client = sel & 8 == 0;
    let v6 = sel & 16 != 0;
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    if v6 {
        addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    }
    let mut peer = addr;
    peer[15] ^= 3;
    match sel & 7 {
        0 | 1 => {
            let mut m = sip::Master::default();
            let mut t = Table {
                refresh: sel & 32 != 0,
                ..Table::default()
            };
            for msg in messages(body) {
                let (src, dst) = if from_client { (addr, peer) } else { (peer, addr) };
                let c = Conn {
                    v6,
                    src,
                    dst,
                    expected: sel & 64 != 0,
                };
                let _ = if sel & 7 == 1 {
                    sip::help_tcp(&mut m, &c, msg, &mut t)
                } else {
                    sip::help_udp(&mut m, &c, msg, &mut t)
                };
            }
        }
        2 => {
            for msg in messages(body) {
                let _ = irc::offer(msg);
            }
        }
        3 => {
            for msg in messages(body) {
                let _ = amanda::ports(msg);
            }
        }
        4 => {
            let mut s = sane::Sane::default();
            for (i, msg) in messages(body).enumerate() {
                if (i % 2 == 0) == from_client {
                    s.client(msg);
                } else {
                    let _ = s.server(msg);
                }
            }
        }
        _ => {
            let mut p = pptp::Pptp::default();
            for (i, msg) in messages(body).enumerate() {
                let _ = p.read((i + usize::from(from_client)) % 2 == 0, msg);
            }
        }
    }
});
