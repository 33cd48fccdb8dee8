//! Early drop at the kernel's scale: SYN floods into a full table of the default size
//! (262,144 entries, as many hash chains), mostly ASSURED, against the kernel oracle's
//! summaries of the same floods (`pcaps/scale/`, written by `pcaps/gen/regen_scale.sh`).
//!
//! Which SYN the kernel drops depends on its random hash seed, so the test compares counts:
//! how many of the flood's SYNs found nothing to evict, in all and per window, must
//! be within four standard deviations (of such counts' spread) of the kernel's, and the table
//! left the same size. The kernel walks 8 hash chains of about 2 tuples each: a flood into a
//! table nine tenths ASSURED is dropped about one time in five, where walking 8 of this
//! table's 10-slot buckets dropped almost nothing, and an immediate garbage-collection pass
//! after the first drop emptied the table of its unreplied entries (the kernel's pass comes
//! later: its drops run on through the flood, and its table stays full). The flood replayed
//! in real time outlives its first SYNs (SYN_SENT times out after 120 s): the kernel counts
//! a timed-out entry until something meets it or its collector runs, so its drops go on as
//! before, and its table lists fewer entries than it counts. Freeing them at once instead
//! let a third fewer SYNs be dropped from then on. A last flood fills the table's last tenth
//! with SYNs that time out after 5 s, and 35 s later sends a burst of new ones: every
//! unreplied entry has timed out, so early drop evicts nothing, and a new SYN gets in only
//! where its lookup, or an earlier SYN's early drop, reaped timed-out entries (freeing them at
//! once, the table had room for the whole burst).

use ctrack::workload::{Kind, Workload};
use ctrack::{Config, Conntrack, LinkType, NANOS_PER_SEC, State};

struct Summary {
    name: String,
    flows: usize,
    syns: usize,
    /// Nanoseconds between SYNs when the kernel replayed them in real time; 0: at once.
    spacing: u64,
    /// After how many SYNs the flood pauses, and for how many nanoseconds (the kernel then
    /// replayed it in real time); 0: no pause.
    pause_after: usize,
    pause: u64,
    /// A sysctl the oracle ran with, if any.
    sysctl: Option<String>,
    dropped: u64,
    window: usize,
    windows: Vec<u64>,
    table: usize,
    assured: usize,
}

fn summaries() -> Vec<Summary> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/scale");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("pcaps/scale") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "summary") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let field = |key: &str| -> Vec<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{}: no {key}", path.display()))
                .split(' ')
                .map(|n| n.parse().unwrap())
                .collect()
        };
        let windows = field("windows");
        let pause = field("pause");
        let sysctl = text
            .lines()
            .find_map(|l| l.strip_prefix("sysctl "))
            .unwrap_or_else(|| panic!("{}: no sysctl", path.display()));
        out.push(Summary {
            name: path.file_stem().unwrap().to_string_lossy().into(),
            flows: field("flows")[0] as usize,
            syns: field("syns")[0] as usize,
            spacing: field("spacing_us")[0] * 1_000,
            pause_after: pause[0] as usize,
            pause: pause[1] * NANOS_PER_SEC,
            sysctl: (sysctl != "-").then(|| sysctl.to_string()),
            dropped: field("dropped")[0],
            window: windows[0] as usize,
            windows: windows[1..].to_vec(),
            table: field("table")[0] as usize,
            assured: field("assured")[0] as usize,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Four standard deviations of the difference of two counts near `n` (each about Poisson),
/// and never under 40.
fn slack(n: u64) -> u64 {
    ((2.0 * n as f64).sqrt() * 4.0).max(40.0) as u64
}

#[test]
fn floods_into_a_full_default_table_are_dropped_as_often_as_by_the_kernel() {
    let all = summaries();
    assert!(all.len() >= 3, "{} summaries", all.len());
    for s in all {
        // The generator and seed `ctrack bench --workload flood --write-pcap` uses.
        let w = Workload::generate(Kind::Flood, s.flows, s.syns, false, 0x00c0_ffee);
        assert_eq!(w.len(), s.syns, "{}", s.name);
        let mut cfg = Config::default();
        // As the oracle runs (its checksums are valid anyway).
        cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
        if let Some(set) = &s.sysctl {
            cfg.set_sysctl(set).unwrap();
        }
        // Another hash seed (`EARLY_DROP_SEED=N`) checks that agreement does not hang on one.
        let seed = std::env::var("EARLY_DROP_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5eed);
        let ct = Conntrack::with_seed(cfg, seed);
        let mut windows = vec![0u64; s.windows.len()];
        // The setup one microsecond apart, as the capture has it; the SYNs too, or, for a
        // flood the kernel replayed in real time, a second later and `spacing` apart. The
        // collector's runs are modelled on the minute, here 40 s, 100 s and 160 s after `t0`:
        // none between the first timeouts and the flood's end, as in the kernel's replay
        // (whose drops show no run reaping its timed-out SYNs then; its phase is its own).
        let t0 = 1_700_000_000_000_000_000u64;
        let setup = w.setup_len();
        let flood_at = t0 + setup as u64 * 1_000 + NANOS_PER_SEC;
        let at = |i: usize| match s.spacing {
            0 if s.pause != 0 && i - setup >= s.pause_after => t0 + i as u64 * 1_000 + s.pause,
            0 => t0 + i as u64 * 1_000,
            gap => flood_at + (i - setup) as u64 * gap,
        };
        for (i, p) in w.all().enumerate() {
            let now = if i < setup {
                t0 + i as u64 * 1_000
            } else {
                at(i)
            };
            let v = ct.process(p, LinkType::Raw, now);
            if i < setup {
                assert!(v.tracked(), "{}: setup packet {i}: {v}", s.name);
            } else if v.state == State::Dropped {
                windows[(i - setup) / s.window] += 1;
            } else {
                assert_eq!(v.state, State::New, "{}: SYN {i}", s.name);
            }
        }
        let dropped: u64 = windows.iter().sum();
        assert!(
            s.spacing != 0 || dropped.abs_diff(s.dropped) <= slack(s.dropped),
            "{}: {dropped} SYNs dropped, the kernel {} (windows {windows:?}, kernel {:?})",
            s.name,
            s.dropped,
            s.windows
        );
        for (k, (&ours, &kernel)) in windows.iter().zip(&s.windows).enumerate() {
            assert!(
                ours.abs_diff(kernel) <= slack(kernel),
                "{}: window {k}: {ours} dropped, the kernel {kernel} (all: {windows:?}, kernel {:?})",
                s.name,
                s.windows
            );
        }
        let end = at(setup + s.syns - 1);
        let (mut assured, mut listed) = (0usize, 0usize);
        ct.for_each_entry(end, |e| {
            listed += 1;
            assured += usize::from(e.status & ctrack::table::status::ASSURED != 0)
        });
        assert_eq!(assured, s.assured, "{}: ASSURED entries left", s.name);
        let full = ct.count();
        if s.spacing == 0 && s.pause == 0 {
            assert!(
                full.abs_diff(s.table) <= s.table / 1000,
                "{}: {full} entries left, the kernel {}",
                s.name,
                s.table
            );
        } else {
            // A flood that outlives its first SYNs leaves a table listing fewer entries than
            // it counts: the kernel counts a timed-out entry against the limit until
            // something meets it or its collector runs, and lists only those still live.
            assert!(
                listed.abs_diff(s.table) <= slack((full - s.table) as u64) as usize,
                "{}: {listed} entries listed of {full}, the kernel {}",
                s.name,
                s.table
            );
        }
    }
}
