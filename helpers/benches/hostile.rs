//! Criterion benchmarks of the helpers' readers on crafted payloads: whole 64 KiB datagrams
//! or segments built to make a byte-at-a-time reader slow (no line end, nothing but line ends,
//! thousands of headers, continuation lines or contacts, an Amanda reply of 9,000 keywords),
//! beside an ordinary SIP call. Throughput is in bytes, so each line reads as the cost of a byte
//! of hostile text. Run with `cargo bench -p ctrack-helpers --bench hostile`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctrack_helpers::amanda;
use ctrack_helpers::sip::{self, Class, Conn, Expect, Master};

/// An expectation table that takes everything and keeps nothing.
struct Anything;

impl Expect for Anything {
    fn flush(&mut self, _: bool) {}
    fn media(&mut self, _: Class, _: [u8; 16], _: u16) -> bool {
        true
    }
    fn signalling(&mut self, _: [u8; 16], _: u8, _: u16) -> bool {
        true
    }
    fn refresh_signalling(&mut self, _: [u8; 16], _: u8, _: u16, _: u32) -> bool {
        false
    }
}

/// Largest UDP payload of an IPv4 datagram.
const MAX: usize = 65_507;

/// `head`, then `unit` repeated while the whole stays within [`MAX`] bytes with `tail`.
fn fill(head: &[u8], unit: &[u8], tail: &[u8]) -> Vec<u8> {
    let n = (MAX - head.len() - tail.len()) / unit.len();
    [head, &unit.repeat(n), tail].concat()
}

fn sip_payloads() -> Vec<(&'static str, Vec<u8>)> {
    let invite = b"INVITE sip:b@10.0.0.2 SIP/2.0\r\nCSeq: 1 INVITE\r\n";
    let sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
    let call = [
        &b"INVITE sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\n"[..],
        b"From: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:b@10.0.0.2>\r\nCall-ID: 1@10.0.0.1\r\n",
        b"CSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.1:5060>\r\n",
        b"Content-Type: application/sdp\r\n",
        format!("Content-Length: {}\r\n\r\n", sdp.len()).as_bytes(),
        sdp,
    ]
    .concat();
    vec![
        ("call", call),
        ("no-line-end", fill(b"INVITE sip:b SIP/2.0\r\n", b"a", b"")),
        ("line-ends", fill(b"INVITE sip:b SIP/2.0\r\n", b"\r", b"")),
        ("continuations", fill(invite, b"\r\n y", b"\r\n\r\n")),
        ("headers", fill(invite, b"Content-Length: 0\r\n", b"\r\n")),
        (
            "contacts",
            fill(
                b"REGISTER sip:r SIP/2.0\r\nCSeq: 1 REGISTER\r\n",
                b"Contact: <sip:a@10.0.0.1:5060;x=y;x=y;x=y;x=y>;expires=60\r\n",
                b"\r\n",
            ),
        ),
        (
            "contact-list",
            fill(
                b"REGISTER sip:r SIP/2.0\r\nCSeq: 1 REGISTER\r\nContact: ",
                b"<sip:a@10.0.0.1:5060>,",
                b"\r\n\r\n",
            ),
        ),
        (
            "media",
            fill(
                b"INVITE sip:b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nc=IN IP4 10.0.0.1\r\n",
                b"m=audio 4000 RTP/AVP 0\r\n",
                b"",
            ),
        ),
    ]
}

fn sip(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[10, 0, 0, 1]);
    let conn = Conn {
        v6: false,
        src: a,
        dst: a,
        expected: false,
    };
    for (name, p) in sip_payloads() {
        g.throughput(Throughput::Bytes(p.len() as u64));
        g.bench_function(BenchmarkId::new("udp", name), |b| {
            b.iter(|| sip::help_udp(&mut Master::default(), &conn, black_box(&p), &mut Anything))
        });
        g.bench_function(BenchmarkId::new("tcp", name), |b| {
            b.iter(|| sip::help_tcp(&mut Master::default(), &conn, black_box(&p), &mut Anything))
        });
    }
    g.finish();
}

fn amanda(c: &mut Criterion) {
    let mut g = c.benchmark_group("amanda");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let head = b"Amanda 2.6 REP HANDLE 000-1 SEQ 1\nCONNECT ";
    for (name, p) in [
        (
            "reply",
            b"Amanda 2.6 REP HANDLE 000-1 SEQ 1\nCONNECT DATA 50001 MESG 50002 INDEX 50003\n"
                .to_vec(),
        ),
        ("keywords", fill(head, b"DATA 1 ", b"\n")),
        ("no-line-end", fill(head, b"D", b"")),
        ("near-misses", fill(b"", b"CONNECT", b"")),
    ] {
        g.throughput(Throughput::Bytes(p.len() as u64));
        g.bench_function(name, |b| b.iter(|| amanda::ports(black_box(&p)).count()));
    }
    g.finish();
}

criterion_group!(benches, sip, amanda);
criterion_main!(benches);
