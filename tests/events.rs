//! Replays every capture in `pcaps/` that has the kernel's events beside it (`NAME.events`,
//! written by `pcaps/gen/regen_events.sh` from `conntrack -E`) and compares ctrack's event
//! stream with them.
//!
//! - New, update and destroy-by-packet events: the same lines in the same order, except the
//!   seconds left, where the kernel may say one less (a jiffy may pass between the packet and
//!   the report).
//! - Destroy events of entries that timed out (0 seconds left): the kernel reports them when
//!   its collector finds them, at no fixed point of the replay, so they are compared as a set,
//!   and one the kernel had not found yet when its replay ended may be missing there. ctrack's
//!   run ends a second after the last packet, to cover those the kernel found in the moment
//!   its listener waited after the replay.
//!
//! Expectation events (`NAME.expect-events`, from `conntrack -E expect`; no file: none) come
//! from a listener of their own, so they are compared apart:
//!
//! - New ones: the same lines in the same order, the seconds left within one.
//! - Destroyed ones: each of the kernel's must be one of ctrack's, and each ctrack reported
//!   at a packet must be one of the kernel's (seconds within one where both are at a packet).
//!   Their order is not compared: an expectation also goes when its master times out, which
//!   the kernel's collector finds at no fixed point of the replay.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ctrack::{Config, Conntrack, capture};

mod common;
use common::{apply_mark, capture_of, captures, config, marked, zone_of, zoned};

/// A line split into its kind, seconds left and the rest.
struct Line {
    kind: String,
    secs: Option<i64>,
    rest: String,
}

fn parse(line: &str) -> Line {
    let toks: Vec<&str> = line.split_whitespace().collect();
    // A destroy event without time left has no seconds field.
    let secs = toks.get(3).and_then(|s| s.parse().ok());
    let rest: Vec<&str> = toks
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && !(i == 3 && secs.is_some()))
        .map(|(_, t)| *t)
        .collect();
    Line {
        kind: toks.first().copied().unwrap_or("").to_string(),
        secs,
        rest: rest.join(" "),
    }
}

fn is_expiry(l: &Line) -> bool {
    l.kind == "[DESTROY]" && l.secs.is_none()
}

/// What a replay reported: connection events, and expectation events each with whether it
/// came at a packet (not at the expiry after the last one).
struct Reported {
    events: Vec<String>,
    expect: Vec<(String, bool)>,
}

/// Replays a capture; with `zones`, each packet in the zone `common::zone_of` gives; with
/// `marks`, each marking its connection as `common::apply_mark` says.
fn replay(path: &Path, mut cfg: Config, zones: bool, marks: bool) -> Reported {
    cfg.events = 1 << 16;
    let cap = capture::load(path).unwrap_or_else(|e| panic!("{e}"));
    let ct = Conntrack::new(cfg);
    let mut out = Reported {
        events: Vec::new(),
        expect: Vec::new(),
    };
    let mut last = 0;
    for (ts, link, frame) in cap.packets_monotonic() {
        last = ts;
        let zone = if zones { zone_of(frame, link) } else { 0 };
        let v = ct.in_zone(zone).process(frame, link, ts);
        if marks {
            apply_mark(&ct, v, frame, link, zone, ts);
        }
        out.events.extend(ct.events().iter().map(|e| e.line()));
        out.expect
            .extend(ct.expect_events().iter().map(|e| (e.line(), true)));
    }
    // The kernel's listener stays a moment after the replay's last packet, and its
    // collector may report entries that time out meanwhile.
    ct.expire(last + ctrack::NANOS_PER_SEC);
    out.events.extend(ct.events().iter().map(|e| e.line()));
    out.expect
        .extend(ct.expect_events().iter().map(|e| (e.line(), false)));
    assert_eq!(ct.events_lost(), 0);
    out
}

/// An expectation event split into its kind, seconds left and the rest.
fn parse_expect(line: &str) -> (String, i64, String) {
    let mut toks = line.split_whitespace();
    let kind = toks.next().unwrap_or("").to_string();
    let secs = toks.next().and_then(|t| t.parse().ok()).unwrap_or(-1);
    (kind, secs, toks.collect::<Vec<_>>().join(" "))
}

fn compare_expect(want: &[String], got: &[(String, bool)], errs: &mut String) {
    let want: Vec<_> = want.iter().map(|l| parse_expect(l)).collect();
    let got: Vec<_> = got
        .iter()
        .map(|(l, at_packet)| (parse_expect(l), *at_packet))
        .collect();
    let new = |k: &String| k == "[NEW]";
    let (wn, gn): (Vec<_>, Vec<_>) = (
        want.iter().filter(|w| new(&w.0)).collect(),
        got.iter().filter(|g| new(&g.0.0)).map(|g| &g.0).collect(),
    );
    for (i, (w, g)) in wn.iter().zip(&gn).enumerate() {
        if w.2 != g.2 || (w.1 - g.1).abs() > 1 {
            let _ = writeln!(
                errs,
                "  new expectation {i}: kernel {} {}\n  {:>width$}  ctrack {} {}",
                w.1,
                w.2,
                "",
                g.1,
                g.2,
                width = i.to_string().len() + 16
            );
            return;
        }
    }
    if wn.len() != gn.len() {
        let _ = writeln!(
            errs,
            "  {} new expectations from the kernel, {} from ctrack",
            wn.len(),
            gn.len()
        );
    }
    // Destroyed: the kernel's each matched to one of ctrack's, one at a packet with the
    // seconds within one first.
    let mut left: Vec<&((String, i64, String), bool)> =
        got.iter().filter(|g| !new(&g.0.0)).collect();
    for w in want.iter().filter(|w| !new(&w.0)) {
        let near = left
            .iter()
            .position(|g| g.1 && g.0.2 == w.2 && (g.0.1 - w.1).abs() <= 1);
        match near.or_else(|| left.iter().position(|g| g.0.2 == w.2)) {
            Some(i) => {
                left.remove(i);
            }
            None => {
                let _ = writeln!(errs, "  kernel only: destroyed expectation {} {}", w.1, w.2);
            }
        }
    }
    for g in left.iter().filter(|g| g.1) {
        let _ = writeln!(
            errs,
            "  ctrack only: destroyed expectation {} {}",
            g.0.1, g.0.2
        );
    }
}

fn compare(want: &[String], got: &[String], errs: &mut String) {
    let (want, got): (Vec<Line>, Vec<Line>) = (
        want.iter().map(|l| parse(l)).collect(),
        got.iter().map(|l| parse(l)).collect(),
    );
    let (w, g): (Vec<&Line>, Vec<&Line>) = (
        want.iter().filter(|l| !is_expiry(l)).collect(),
        got.iter().filter(|l| !is_expiry(l)).collect(),
    );
    for (i, (w, g)) in w.iter().zip(&g).enumerate() {
        let near = match (w.secs, g.secs) {
            (Some(w), Some(g)) => (g - 1..=g + 1).contains(&w),
            (w, g) => w == g,
        };
        if w.kind != g.kind || w.rest != g.rest || !near {
            let _ = writeln!(
                errs,
                "  event {i}: kernel {} {:?} {}\n  {:>width$}  ctrack {} {:?} {}",
                w.kind,
                w.secs,
                w.rest,
                "",
                g.kind,
                g.secs,
                g.rest,
                width = i.to_string().len() + 6
            );
            return;
        }
    }
    if w.len() != g.len() {
        let _ = writeln!(
            errs,
            "  {} events from the kernel, {} from ctrack",
            w.len(),
            g.len()
        );
        for l in w.iter().skip(g.len()) {
            let _ = writeln!(errs, "    kernel only: {} {}", l.kind, l.rest);
        }
        for l in g.iter().skip(w.len()) {
            let _ = writeln!(errs, "    ctrack only: {} {}", l.kind, l.rest);
        }
    }
    let mut ours: BTreeMap<&str, usize> = BTreeMap::new();
    for l in got.iter().filter(|l| is_expiry(l)) {
        *ours.entry(&l.rest).or_default() += 1;
    }
    for l in want.iter().filter(|l| is_expiry(l)) {
        match ours.get_mut(l.rest.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                let _ = writeln!(errs, "  kernel only, timed out: {}", l.rest);
            }
        }
    }
}

#[test]
fn every_capture_reports_the_kernels_events() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let mut goldens = Vec::new();
    captures(&root, &mut goldens);
    goldens.retain(|g| g.with_extension("events").exists());
    goldens.sort();
    assert!(
        !goldens.is_empty(),
        "no events files under {}",
        root.display()
    );
    let mut failures = String::new();
    let (mut events, mut expect_events) = (0, 0);
    for g in &goldens {
        let (cap, args) = capture_of(g);
        let want: Vec<String> = std::fs::read_to_string(g.with_extension("events"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let want_expect: Vec<String> = std::fs::read_to_string(g.with_extension("expect-events"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        events += want.len();
        expect_events += want_expect.len();
        let got = replay(&cap, config(&args), zoned(g), marked(g));
        let mut errs = String::new();
        compare(&want, &got.events, &mut errs);
        compare_expect(&want_expect, &got.expect, &mut errs);
        if !errs.is_empty() {
            let _ = writeln!(failures, "{}:\n{errs}", cap.display());
        }
    }
    eprintln!(
        "events: {} captures, {events} kernel events, {expect_events} expectation events",
        goldens.len()
    );
    assert!(
        failures.is_empty(),
        "event streams that differ from the kernel's:\n{failures}"
    );
}

/// Without `Config::events`, nothing is recorded; with `nf_conntrack_events=0`, neither.
#[test]
fn events_are_recorded_only_when_asked_for() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/tcp/ack_bounds.pcap");
    let run = |cfg: Config| {
        let c = capture::load(&cap).unwrap();
        let ct = Conntrack::new(cfg);
        for (ts, link, frame) in c.packets() {
            ct.process(frame, link, ts);
        }
        ct.events().len()
    };
    assert_eq!(run(config("")), 0);
    let mut on = config("");
    on.events = 100;
    assert_eq!(run(on.clone()), 3);
    on.set_sysctl("nf_conntrack_events=0").unwrap();
    assert_eq!(run(on), 0);
}

/// A full queue loses the newest events and counts them.
#[test]
fn a_full_queue_counts_what_it_loses() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/tcp/ack_bounds.pcap");
    let c = capture::load(&cap).unwrap();
    let mut cfg = config("");
    cfg.events = 2;
    let ct = Conntrack::new(cfg);
    for (ts, link, frame) in c.packets() {
        ct.process(frame, link, ts);
    }
    let ev = ct.events();
    assert_eq!(ev.len(), 2);
    assert_eq!(ct.events_lost(), 1);
    assert!(
        ev[0]
            .line()
            .starts_with("    [NEW] tcp      6 120 SYN_SENT src=10.20.0.1")
    );
}
