//! Any bytes as a capture file: a clean error or a capture whose every record replays
//! through the engine, never a panic; and the same bytes read as a stream, in reads of any
//! size, give the same packets (or, where the file is refused, some of them and then the same
//! problem, with a record cut by the file's end given as the file's last bytes).

#![no_main]

use ctrack::{Config, Conntrack, capture};
use libfuzzer_sys::fuzz_target;

/// Hands out the bytes in reads of 1 to 37 bytes, a size the bytes themselves choose.
struct Chunks<'a> {
    b: &'a [u8],
    k: usize,
}

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.k = self.k.wrapping_mul(31).wrapping_add(7) ^ self.b.len();
        let n = buf.len().min(self.k % 37 + 1).min(self.b.len());
        buf[..n].copy_from_slice(&self.b[..n]);
        self.b = &self.b[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = capture::parse(data.to_vec());
    let mut streamed = Vec::new();
    // The streamed packets and, after them, a record cut by the file's end.
    let mut cut = None;
    let problem = match capture::CaptureReader::new(Chunks { b: data, k: 0 }) {
        Err(p) => Some(p),
        Ok(mut r) => loop {
            match r.next_packet() {
                Ok(Some((ts, link, f))) => streamed.push((ts, link, f.to_vec())),
                Ok(None) => break None,
                Err(p) => {
                    // A record the file ends inside comes as the file's last bytes.
                    if let Some((ts, link, f)) = r.cut_short() {
                        assert!(matches!(p, capture::Problem::TruncatedRecord { .. }), "{p:?}");
                        assert!(data.ends_with(f));
                        cut = Some((ts, link, f.to_vec()));
                    }
                    break Some(p);
                }
            }
        },
    };
    // Read as far as it can be, in memory: the streamed packets, the cut record, the problem
    // (a file refused at its header is refused there too).
    match capture::parse_prefix(data.to_vec()) {
        Err(p) => {
            assert_eq!(problem.as_ref(), Some(&p));
            assert!(streamed.is_empty());
        }
        Ok((cap, p)) => {
            assert_eq!(p, problem);
            let whole = streamed.iter().cloned().chain(cut);
            assert!(cap.packets().map(|(t, l, f)| (t, l, f.to_vec())).eq(whole));
        }
    }
    let cap = match parsed {
        Err(p) => {
            assert_eq!(problem, Some(p));
            return;
        }
        Ok(cap) => cap,
    };
    assert_eq!(problem, None);
    assert!(cap.packets().map(|(t, l, f)| (t, l, f.to_vec())).eq(streamed));
    let ct = Conntrack::new(Config::default());
    let mut last = 0;
    for (ts, link, frame) in cap.packets() {
        last = last.max(ts);
        let v = ct.process(frame, link, ts);
        let mut line = String::new();
        let _ = v.write_line(&mut line);
    }
    ct.for_each_entry(last, |e| {
        let _ = e.proc_line();
    });
});
