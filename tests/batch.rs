//! `process_batch` must decide exactly what `process` decides frame by frame, and both what
//! the general path (`process_ip`) decides: same verdicts, same final table, same counters,
//! for every capture in `pcaps/` and for generated traffic. The batch is run both ways it
//! tracks a burst: sorted by shard, and in order (while the table is small). With an event
//! stream (frame by frame, and sorted) the verdicts stay the same, every connection's events
//! are the same whichever way its packets went, and the events tell the table's story: a
//! connection is new once until destroyed, updated only in between, and those not destroyed
//! are the table's entries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ctrack::workload::{Kind, Workload};
use ctrack::{Config, Conntrack, Event, EventKind, HostModel, LinkType, Verdict, capture, packet};

fn table(ct: &Conntrack, now: u64) -> Vec<String> {
    let mut t = Vec::new();
    ct.for_each_entry(now, |e| t.push(e.proc_line()));
    t.sort();
    t
}

/// What `process` decided before it had a shortcut for the common frame: every frame through
/// the general parse and tracking.
fn general(ct: &Conntrack, frame: &[u8], link: LinkType, now: u64) -> Verdict {
    match packet::ip_of_frame(frame, link) {
        Some(ip) => ct.process_ip(ip, now),
        None => Verdict::SKIPPED,
    }
}

/// Runs `frames` (with one time per burst) through the general path and through `process`
/// frame by frame, and through `process_batch` with its bursts sorted by shard and with
/// `cfg`'s choice (in order while the table is small), and compares them all.
fn compare(frames: &[(&[u8], LinkType)], burst: usize, cfg: &Config, what: &str) {
    let reference = Conntrack::with_seed(cfg.clone(), 99);
    let reporting = Config {
        events: 1 << 20,
        ..cfg.clone()
    };
    let one = Conntrack::with_seed(reporting.clone(), 99);
    let sorted = Config {
        in_order_entries: 0,
        ..reporting
    };
    let mut events: [Vec<Event>; 2] = Default::default();
    let mut expects: [Vec<String>; 2] = Default::default();
    let batches = [
        ("sorted", Conntrack::with_seed(sorted, 99)),
        ("as configured", Conntrack::with_seed(cfg.clone(), 99)),
    ];
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
            let want: Vec<Verdict> = run
                .iter()
                .map(|f| general(&reference, f, link, now))
                .collect();
            for (k, f) in run.iter().enumerate() {
                let v = one.process(f, link, now);
                assert_eq!(v, want[k], "{what}: process, frame {} of burst {b}", i + k);
            }
            events[0].extend(one.events());
            expects[0].extend(one.expect_events().iter().map(|e| e.line()));
            for (how, many) in &batches {
                many.process_batch(&run, link, now, &mut out);
                assert_eq!(out.len(), run.len());
                for (k, v) in out.iter().enumerate() {
                    assert_eq!(
                        *v,
                        want[k],
                        "{what}: batch {how}, frame {} of burst {b}",
                        i + k
                    );
                }
            }
            events[1].extend(batches[0].1.events());
            expects[1].extend(batches[0].1.expect_events().iter().map(|e| e.line()));
            i += run.len();
        }
    }
    let want = table(&reference, now);
    let others = [("process", &one), ("batch sorted", &batches[0].1)];
    for (how, ct) in others
        .into_iter()
        .chain([("batch as configured", &batches[1].1)])
    {
        let got = table(ct, now);
        if got != want {
            let first = want
                .iter()
                .zip(&got)
                .position(|(x, y)| x != y)
                .unwrap_or(want.len().min(got.len()));
            panic!(
                "{what}: {how}: final tables differ ({} vs {} lines); first difference at {first}: {:?} vs {:?}",
                want.len(),
                got.len(),
                want.get(first),
                got.get(first)
            );
        }
        assert_eq!(
            reference.stats(),
            ct.stats(),
            "{what}: {how}: counters differ"
        );
    }
    assert_eq!(
        by_connection(&events[0]),
        by_connection(&events[1]),
        "{what}: the batch's events differ from process's"
    );
    // Expectations are announced and taken one packet at a time on every path.
    assert_eq!(
        expects[0], expects[1],
        "{what}: the batch's expectation events differ from process's"
    );
    for ((ct, ev), ex) in [&one, &batches[0].1]
        .into_iter()
        .zip(events.iter_mut())
        .zip(expects.iter_mut())
    {
        ct.expire(now);
        ev.extend(ct.events());
        ex.extend(ct.expect_events().iter().map(|e| e.line()));
        assert_eq!(ct.events_lost(), 0);
        tells_the_tables_story(ct, ev, now, what);
        let announced = ex
            .iter()
            .filter(|l| l.trim_start().starts_with("[NEW]"))
            .count();
        let mut pending = 0;
        ct.for_each_expectation(now, |_| pending += 1);
        assert_eq!(
            announced - (ex.len() - announced),
            pending,
            "{what}: expectations announced less those gone are not those pending"
        );
    }
}

/// Each connection's event lines, in order, by its original tuple (what a burst sorted by
/// shard keeps in order; connections of different shards may interleave differently).
fn by_connection(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        m.entry(format!("{:?}", e.entry.orig))
            .or_default()
            .push(e.line());
    }
    m
}

/// A connection is new while not already open, updated and destroyed only while open, and
/// the open ones at the end are the table's entries.
fn tells_the_tables_story(ct: &Conntrack, events: &[Event], now: u64, what: &str) {
    let mut open = BTreeSet::new();
    for e in events {
        let k = format!("{:?}", e.entry.orig);
        match e.kind {
            EventKind::New => assert!(open.insert(k), "{what}: new twice: {}", e.line()),
            EventKind::Update => assert!(open.contains(&k), "{what}: update of none: {}", e.line()),
            EventKind::Destroy => assert!(open.remove(&k), "{what}: destroy of none: {}", e.line()),
        }
    }
    let mut entries = BTreeSet::new();
    ct.for_each_entry(now, |e| {
        entries.insert(format!("{:?}", e.orig));
    });
    let only_events: Vec<_> = open.difference(&entries).take(3).collect();
    let only_table: Vec<_> = entries.difference(&open).take(3).collect();
    assert!(
        only_events.is_empty() && only_table.is_empty(),
        "{what}: the events' open connections ({}) are not the table ({}): not in the table \
         {only_events:?}, no event {only_table:?}",
        open.len(),
        entries.len()
    );
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

/// With every helper assigned (`--helper all`), the helper captures' helpers announce
/// expectations and their data connections take them: the batch tracks the helpers' packets
/// one by one and everything in order while an expectation is pending.
#[test]
fn batches_match_single_packets_on_every_capture_with_helpers() {
    every_capture_with(helped(Config {
        host: HostModel::Router,
        ..Config::default()
    }));
}

fn helped(mut cfg: Config) -> Config {
    cfg.helpers = ctrack_helpers::parse_assignments(["all"]).unwrap();
    cfg
}

fn every_capture(checksum: &str) {
    let mut cfg = Config {
        host: HostModel::Router,
        ..Config::default()
    };
    cfg.set_sysctl(checksum).unwrap();
    every_capture_with(cfg);
}

fn every_capture_with(cfg: Config) {
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
    // Shard counts from one (one group per burst) to many (groups of a packet or two).
    let kinds = [
        Kind::Established,
        Kind::Syn,
        Kind::Udp,
        Kind::Mix,
        Kind::Flood,
    ];
    for (kind, shards) in kinds.into_iter().zip([1, 4, 8, 64, 16]) {
        for v6 in [false, true] {
            let w = Workload::generate(kind, 300, 20_000, v6, 5);
            let frames: Vec<(&[u8], LinkType)> = w.all().map(|f| (f, LinkType::Raw)).collect();
            let mut cfg = Config::default();
            cfg.set_sysctl("nf_conntrack_max=2000").unwrap();
            cfg.shards = shards;
            // In order all along, or until the table passes 150 entries.
            for (burst, in_order) in [(32, 4096), (256, 4096), (32, 150)] {
                cfg.in_order_entries = in_order;
                compare(
                    &frames,
                    burst,
                    &cfg,
                    &format!("{kind:?} v6={v6} shards={shards} in order to {in_order}"),
                );
            }
        }
    }
}

/// The helper captures' Ethernet frames with established traffic of many other connections
/// between them, in bursts: the other connections' packets are batched while no expectation
/// is pending and tracked in order while one is, and the helpers' own packets always in order.
#[test]
fn batches_with_helpers_match_single_packets_amid_other_traffic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let w = Workload::generate(Kind::Established, 200, 6_000, false, 7);
    // The workload's raw IP packets behind an Ethernet header.
    let other: Vec<Vec<u8>> = w
        .all()
        .map(|p| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
            f.extend_from_slice(p);
            f
        })
        .collect();
    let mut n = 0;
    for name in [
        "helpers/ftp-passive.pcap",
        "helpers/ftp-active.pcap",
        "helpers/ftp-extended.pcap",
        "helpers/ftp-one-per-master.pcap",
        "helpers/tftp.pcap",
        "real/recorded/ftp.pcap",
        "real/recorded/tftp.pcap",
    ] {
        let cap = capture::load(&root.join(name)).unwrap();
        let helper: Vec<&[u8]> = cap
            .packets()
            .filter(|(_, l, _)| *l == LinkType::Ethernet)
            .map(|(_, _, f)| f)
            .collect();
        assert!(!helper.is_empty(), "{name}: no Ethernet frames");
        // The workload's setup first, then each helper frame followed by a few others.
        let (setup, rest) = other.split_at(w.setup_len());
        let mut frames: Vec<(&[u8], LinkType)> =
            setup.iter().map(|f| (&f[..], LinkType::Ethernet)).collect();
        let mut more = rest.iter();
        for f in &helper {
            frames.push((f, LinkType::Ethernet));
            frames.extend(more.by_ref().take(20).map(|f| (&f[..], LinkType::Ethernet)));
        }
        frames.extend(more.map(|f| (&f[..], LinkType::Ethernet)));
        for burst in [5, 64, 256] {
            compare(&frames, burst, &helped(Config::default()), name);
        }
        n += 1;
    }
    assert_eq!(n, 7);
}

/// A pending expectation goes to the first new connection that matches it, in the order of
/// the burst: several SYNs for one passive-FTP data port (different source ports, so they land
/// in different shards) arrive together, and only the first is RELATED, whichever shard the
/// batch would reach first.
#[test]
fn a_pending_expectation_goes_to_the_first_match_in_a_burst() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/helpers/ftp-passive.pcap");
    let cap = capture::load(&path).unwrap();
    let frames: Vec<&[u8]> = cap.packets().map(|(_, _, f)| f).collect();
    let mut cfg = helped(Config::default());
    cfg.set_sysctl("nf_conntrack_checksum=0").unwrap();
    // The first data connection's SYN: the first packet a one-by-one replay calls related.
    let probe = Conntrack::with_seed(cfg.clone(), 99);
    let at = frames
        .iter()
        .position(|f| probe.process(f, LinkType::Ethernet, 1).state == ctrack::State::Related)
        .expect("a related packet");
    let syn = frames[at];
    let l4 = 14 + usize::from(syn[14] & 0x0f) * 4;
    let sport = u16::from_be_bytes([syn[l4], syn[l4 + 1]]);
    // Copies of that SYN from other source ports, each in its own burst after the control
    // connection's packets, which announced the expectation.
    let mut ordered_wrongly = 0;
    for k in 1..=16u16 {
        let mut copy = syn.to_vec();
        copy[l4..l4 + 2].copy_from_slice(&sport.wrapping_add(k).to_be_bytes());
        let mut run: Vec<(&[u8], LinkType)> = frames[..at]
            .iter()
            .map(|f| (*f, LinkType::Ethernet))
            .collect();
        run.push((&copy, LinkType::Ethernet));
        run.push((syn, LinkType::Ethernet));
        compare(&run, 64, &cfg, &format!("copy {k}"));
        // Which of the two the batch would have tracked first, had it gone by shards.
        let ct = Conntrack::with_seed(cfg.clone(), 99);
        let q = |f: &[u8]| ct.queue_of(f, LinkType::Ethernet, 16);
        ordered_wrongly += usize::from(q(syn) < q(&copy));
    }
    // The race was there to lose: in some runs the later SYN's shard comes first.
    assert!(ordered_wrongly > 0);
}
