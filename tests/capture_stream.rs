//! A capture read as a stream (`capture::open`, `CaptureReader`, and so `ctrack replay` of a
//! file) holds one record at a time: memory stays flat however long the capture. The
//! allocator of this test binary counts what is held.

use std::alloc::System;
use std::io::Read;

use cap::Cap;
use ctrack::LinkType;
use ctrack::capture::CaptureReader;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// A classic pcap of `left` records generated as it is read: record `i` is `60 + i % 1400`
/// bytes at second `i`.
struct Endless {
    pending: Vec<u8>,
    at: usize,
    i: u32,
    left: u32,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.left -= 1;
            let len = 60 + self.i % 1400;
            self.pending.clear();
            for w in [self.i, 0, len, len] {
                self.pending.extend_from_slice(&w.to_le_bytes());
            }
            self.pending.resize(16 + len as usize, self.i as u8);
            self.at = 0;
            self.i += 1;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_long_capture_is_read_in_flat_memory() {
    const PACKETS: u32 = 1_000_000;
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    let records = Endless {
        pending: Vec::with_capacity(2048),
        at: 0,
        i: 0,
        left: PACKETS,
    };
    let before = ALLOC.allocated();
    let mut r = CaptureReader::new(std::io::BufReader::new((&header[..]).chain(records))).unwrap();
    let (mut n, mut bytes, mut peak) = (0u32, 0u64, 0usize);
    while let Some((ts, link, frame)) = r.next_packet().unwrap() {
        assert_eq!(ts, n as u64 * 1_000_000_000);
        assert_eq!(link, LinkType::Ethernet);
        assert_eq!(frame.len() as u32, 60 + n % 1400);
        assert!(frame.iter().all(|&b| b == n as u8));
        bytes += frame.len() as u64;
        n += 1;
        peak = peak.max(ALLOC.allocated());
    }
    assert_eq!(n, PACKETS);
    // About 760 MB went through; what the reader and its stream held stayed under 128 KiB.
    assert!(bytes > 700_000_000);
    let held = peak - before;
    assert!(held < 128 << 10, "held {held} bytes");
}
