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

/// Taken by each test for its whole run: the allocator's count is the process's, and another
/// test's allocations would show in it.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
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

/// Hands out its bytes one at a time, as a slow stream may, checking at every read that the
/// process holds no more than `limit` bytes.
struct Trickle<'a> {
    b: &'a [u8],
    limit: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let held = ALLOC.allocated();
        assert!(held < self.limit, "{held} bytes held at a read");
        let n = buf.len().min(self.b.len()).min(1);
        buf[..n].copy_from_slice(&self.b[..n]);
        self.b = &self.b[n..];
        Ok(n)
    }
}

/// A record that claims the most a record may hold (64 MiB) where the stream holds 100 KB,
/// handed out a byte at a time: refused as truncated, with memory for what was read, not for
/// what was claimed (a buffer of the claimed size, cleared for each read, made such a stream
/// cost 64 MiB of writing a byte).
#[test]
fn a_claimed_length_takes_no_memory_the_stream_does_not_fill() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let claim = ctrack::capture::MAX_RECORD;
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for w in [0, 0, claim, claim] {
        pcap.extend_from_slice(&w.to_le_bytes());
    }
    let mut ng = Vec::new();
    let block = |t: u32, body: &[u8], len: u32| {
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b
    };
    let shb = [
        0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    ng.extend(block(0x0a0d0d0a, &shb, 28));
    ng.extend_from_slice(&28u32.to_le_bytes());
    ng.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0], 20));
    ng.extend_from_slice(&20u32.to_le_bytes());
    ng.extend(block(6, &[0; 20], claim + 64));
    for mut file in [pcap, ng] {
        let head = file.len();
        file.resize(head + 100_000, 0x5a);
        let limit = ALLOC.allocated() + (1 << 20);
        let mut r = CaptureReader::new(Trickle { b: &file, limit }).unwrap();
        let problem = match r.next_packet() {
            Ok(Some(_)) => panic!("no packet is whole"),
            Ok(None) => panic!("the record runs past the end"),
            Err(p) => p,
        };
        assert!(
            matches!(problem, ctrack::capture::Problem::TruncatedRecord { .. }),
            "{problem}"
        );
        assert!(ALLOC.allocated() < limit);
    }
}
