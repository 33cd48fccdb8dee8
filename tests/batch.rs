//! `process_batch` must decide exactly what `process` decides frame by frame: same verdicts,
//! same final table, for every capture in `pcaps/` and for generated traffic.

use std::path::Path;

use ctrack::workload::{Kind, Workload};
use ctrack::{Config, Conntrack, HostModel, LinkType, capture};

fn table(ct: &Conntrack, now: u64) -> Vec<String> {
    let mut t = Vec::new();
    ct.for_each_entry(now, |e| t.push(e.proc_line()));
    t.sort();
    t
}

/// Runs `frames` (with one time per burst) both ways and compares.
fn compare(frames: &[(&[u8], LinkType)], burst: usize, cfg: &Config, what: &str) {
    let one = Conntrack::with_seed(cfg.clone(), 99);
    let many = Conntrack::with_seed(cfg.clone(), 99);
    let mut out = Vec::new();
    let mut now = 1_000_000_000_000u64;
    for (b, chunk) in frames.chunks(burst).enumerate() {
        now += 1_000_000 * b as u64;
        // A burst shares one link type in the API: split where it changes.
        let mut i = 0;
        while i < chunk.len() {
            let link = chunk[i].1;
            let run: Vec<&[u8]> = chunk[i..]
                .iter()
                .take_while(|f| f.1 == link)
                .map(|f| f.0)
                .collect();
            many.process_batch(&run, link, now, &mut out);
            for (k, f) in run.iter().enumerate() {
                let v = one.process(f, link, now);
                assert_eq!(v, out[k], "{what}: frame {} of burst {b}", i + k);
            }
            i += run.len();
        }
    }
    let (a, b) = (table(&one, now), table(&many, now));
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{what}: final tables differ ({} vs {} lines); first difference at {first}: {:?} vs {:?}",
            a.len(),
            b.len(),
            a.get(first),
            b.get(first)
        );
    }
    assert_eq!(one.stats(), many.stats(), "{what}: counters differ");
}

#[test]
fn batches_match_single_packets_on_every_capture() {
    every_capture("nf_conntrack_checksum=0");
}

/// With checksums checked, recorded captures' offloaded (unfinished) checksums and the
/// corrupted ones of the checksum scenarios are refused on both paths alike.
#[test]
fn batches_match_single_packets_on_every_capture_with_checksums() {
    every_capture("nf_conntrack_checksum=1");
}

fn every_capture(checksum: &str) {
    let mut cfg = Config {
        host: HostModel::Router,
        ..Config::default()
    };
    cfg.set_sysctl(checksum).unwrap();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps")];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                let cap = capture::load(&p).unwrap();
                let frames: Vec<(&[u8], LinkType)> =
                    cap.packets().map(|(_, l, f)| (f, l)).collect();
                for burst in [1, 7, 64, 300] {
                    compare(&frames, burst, &cfg, &p.display().to_string());
                }
                n += 1;
            }
        }
    }
    assert!(n > 50, "only {n} captures");
}

#[test]
fn batches_match_single_packets_on_generated_traffic() {
    for kind in [Kind::Established, Kind::Syn, Kind::Udp, Kind::Mix] {
        for v6 in [false, true] {
            let w = Workload::generate(kind, 300, 20_000, v6, 5);
            let frames: Vec<(&[u8], LinkType)> = w.all().map(|f| (f, LinkType::Raw)).collect();
            let mut cfg = Config::default();
            cfg.set_sysctl("nf_conntrack_max=2000").unwrap();
            cfg.shards = 8;
            compare(&frames, 256, &cfg, &format!("{kind:?} v6={v6}"));
        }
    }
}
