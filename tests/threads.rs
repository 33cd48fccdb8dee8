//! One tracker shared by several threads: it is `Send + Sync`, and concurrent traffic on
//! disjoint and shared connections leaves a consistent table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctrack::workload::{Kind, Workload};
use ctrack::{Config, Conntrack, EventKind, LinkType, State};

#[test]
fn conntrack_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Conntrack>();
}

#[test]
fn threads_on_disjoint_flows_agree_with_one_thread() {
    let w = Workload::generate(Kind::Mix, 2_000, 40_000, false, 11);
    let single = Conntrack::with_seed(Config::default(), 1);
    for p in w.all() {
        single.process(p, LinkType::Raw, 1_000);
    }
    let shared = Arc::new(Conntrack::with_seed(Config::default(), 1));
    // Setup first (in order), then each thread takes the flows that hash to it.
    for i in 0..w.setup_len() {
        shared.process(w.packet(i), LinkType::Raw, 1_000);
    }
    let w = Arc::new(w);
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let (ct, w) = (Arc::clone(&shared), Arc::clone(&w));
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                let mut out = Vec::new();
                for i in w.setup_len()..w.setup_len() + w.len() {
                    if w.flow(i) % 4 == t {
                        batch.push(w.packet(i));
                        if batch.len() == 64 {
                            ct.process_batch(&batch, LinkType::Raw, 1_000, &mut out);
                            assert!(out.iter().all(|v| v.state != State::Invalid));
                            batch.clear();
                        }
                    }
                }
                ct.process_batch(&batch, LinkType::Raw, 1_000, &mut out);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let table = |ct: &Conntrack| {
        let mut t = Vec::new();
        ct.for_each_entry(1_000, |e| t.push(e.proc_line()));
        t.sort();
        t
    };
    assert_eq!(single.count(), shared.count());
    assert_eq!(table(&single), table(&shared));
}

#[test]
fn threads_hammering_the_same_flows_keep_the_count_consistent() {
    let w = Arc::new(Workload::generate(Kind::Udp, 50, 20_000, true, 3));
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_max=40").unwrap();
    cfg.events = 1 << 20;
    let ct = Arc::new(Conntrack::new(cfg));
    let handles = three_threads(&ct, &w, |t, ct, w| {
        for (i, p) in w.all().enumerate() {
            let v = ct.process(p, LinkType::Raw, 1_000 + i as u64 * 1_000_000 + t);
            assert!(v.state != State::Invalid);
            // Entries being created by the other threads may be counted a moment early.
            assert!(ct.count() <= 40 + 3);
        }
    });
    join_consistent(handles, &ct);
    assert!(ct.count() <= 40);
    // The events of all three threads, in the order they reached the queue, tell the table's
    // story: an entry's events are reported under its shard's lock.
    tells_the_story(&ct);
}

/// Checks that the events, in the order they reached the queue, tell the table's story (each
/// entry new once, then updated, then destroyed; what is left open is what the table holds,
/// reaped or not) and that none was lost. Returns how many entries were destroyed.
fn tells_the_story(ct: &Conntrack) -> usize {
    let mut open = std::collections::BTreeSet::new();
    let mut destroyed = 0;
    for e in ct.events() {
        let k = format!("{:?}", e.entry.orig);
        match e.kind {
            EventKind::New => assert!(open.insert(k), "new twice: {}", e.line()),
            EventKind::Update => assert!(open.contains(&k), "update of none: {}", e.line()),
            EventKind::Destroy => {
                destroyed += 1;
                assert!(open.remove(&k), "destroy of none: {}", e.line())
            }
        }
    }
    assert_eq!(ct.events_lost(), 0);
    let mut listed = std::collections::BTreeSet::new();
    ct.for_each_entry(0, |e| {
        listed.insert(format!("{:?}", e.orig));
    });
    assert_eq!(open, listed);
    destroyed
}

#[test]
fn threads_in_bursts_on_the_same_flows_report_a_consistent_story() {
    // Bursts lock a shard for a group of packets, and its events are staged until the lock
    // is released: the events of all threads must still tell each entry's story in order.
    // A small limit (early drop) and time running out (expiry in the advance) add destroys.
    let w = Arc::new(Workload::generate(Kind::Mix, 600, 30_000, false, 5));
    let mut cfg = Config::default();
    cfg.set_sysctl("nf_conntrack_max=400").unwrap();
    // Few hash chains, each holding about eight entries, so that early drop meets
    // unreplied entries (see `Conntrack::early_drop`).
    cfg.set_sysctl("nf_conntrack_buckets=100").unwrap();
    cfg.set_sysctl("nf_conntrack_udp_timeout=1").unwrap();
    cfg.set_sysctl("nf_conntrack_tcp_timeout_syn_sent=1")
        .unwrap();
    cfg.in_order_entries = 0;
    cfg.events = 1 << 20;
    let ct = Arc::new(Conntrack::new(cfg));
    let handles = three_threads(&ct, &w, |t, ct, w| {
        let frames: Vec<&[u8]> = w.all().collect();
        let mut out = Vec::new();
        for (b, burst) in frames.chunks(128).enumerate() {
            // A burst every 50 ms: an unreplied flow's second runs out now and then.
            let now = 1_000 + b as u64 * 50_000_000 + t;
            ct.process_batch(burst, LinkType::Raw, now, &mut out);
        }
    });
    join_consistent(handles, &ct);
    let destroyed = tells_the_story(&ct);
    assert!(destroyed > 100, "{destroyed} destroyed");
}

#[test]
fn removing_entries_while_threads_track_keeps_the_story_consistent() {
    // Two threads track bursts while the third edits the table as an embedder would between
    // packets: removing single connections, dropping the UDP ones, and flushing now and
    // then. Every removal goes under the entry's shard lock, so the events still tell each
    // entry's story and the count stays the number of entries.
    static REMOVED: AtomicUsize = AtomicUsize::new(0);
    static TRACKING: AtomicUsize = AtomicUsize::new(2);
    let w = Arc::new(Workload::generate(Kind::Mix, 600, 30_000, false, 9));
    let ct = Arc::new(Conntrack::new(Config {
        events: 1 << 20,
        ..Config::default()
    }));
    let handles = three_threads(&ct, &w, |t, ct, w| {
        if t < 2 {
            let frames: Vec<&[u8]> = w.all().collect();
            let mut out = Vec::new();
            for (b, burst) in frames.chunks(128).enumerate() {
                let now = 1_000 + b as u64 * 1_000_000 + t;
                ct.process_batch(burst, LinkType::Raw, now, &mut out);
            }
            TRACKING.fetch_sub(1, Ordering::Release);
            return;
        }
        // Edits while the trackers run, and five rounds after they are done.
        let (mut round, mut after) = (0u64, 0);
        while after < 5 {
            if TRACKING.load(Ordering::Acquire) == 0 {
                after += 1;
            }
            let now = 1_000 + round * 1_000_000;
            let n = match round % 50 {
                49 => ct.flush(now),
                k if k % 5 == 0 => ct.retain(now, |e| e.orig.proto != 17),
                _ => {
                    let mut some = None;
                    ct.for_each_entry(now, |e| some = some.or(Some(e.reply)));
                    some.and_then(|r| ct.remove(&r, now)).map_or(0, |_| 1)
                }
            };
            REMOVED.fetch_add(n, Ordering::Relaxed);
            round += 1;
        }
    });
    join_consistent(handles, &ct);
    let destroyed = tells_the_story(&ct);
    let removed = REMOVED.load(Ordering::Relaxed);
    assert!(removed > 0, "nothing removed");
    assert!(
        destroyed >= removed,
        "{destroyed} destroyed, {removed} removed"
    );
}

/// Runs `f` on three threads, each given its number, the tracker and the workload.
fn three_threads(
    ct: &Arc<Conntrack>,
    w: &Arc<Workload>,
    f: impl Fn(u64, &Conntrack, &Workload) + Send + Copy + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..3u64)
        .map(|t| {
            let (ct, w) = (Arc::clone(ct), Arc::clone(w));
            std::thread::spawn(move || f(t, &ct, &w))
        })
        .collect()
}

/// Waits for the threads, then checks that the count is the number of entries listed.
fn join_consistent(handles: Vec<std::thread::JoinHandle<()>>, ct: &Conntrack) {
    for h in handles {
        h.join().unwrap();
    }
    let mut listed = 0;
    ct.for_each_entry(0, |_| listed += 1);
    assert_eq!(listed, ct.count());
}

#[test]
fn threads_flooding_in_bursts_never_pass_the_limit() {
    // Bursts claim table units a group at a time; near the limit each creation claims its
    // own, so concurrent floods fill the table up to the limit and never past it. (An early
    // drop clears every unassured entry of a hash chain, so the last ones may leave it a
    // few short.) With a quarter as many hash chains as the limit, each holds about eight
    // entries, and early drop always meets one of the unreplied flood.
    let max = 3_000;
    let mut cfg = Config::default();
    cfg.set_sysctl(&format!("nf_conntrack_max={max}")).unwrap();
    cfg.set_sysctl(&format!("nf_conntrack_buckets={}", max / 4))
        .unwrap();
    let ct = Arc::new(Conntrack::new(cfg));
    let handles: Vec<_> = (0..3u64)
        .map(|t| {
            let ct = Arc::clone(&ct);
            std::thread::spawn(move || {
                let w = Workload::generate(Kind::Syn, 1, 6_000, false, 100 + t);
                let frames: Vec<&[u8]> = w.all().collect();
                let mut out = Vec::new();
                for (b, burst) in frames.chunks(256).enumerate() {
                    ct.process_batch(burst, LinkType::Raw, 1_000 + b as u64, &mut out);
                    assert!(out.iter().all(|v| v.state == State::New), "{t} {b}");
                }
            })
        })
        .collect();
    join_consistent(handles, &ct);
    assert!(
        ct.count() <= max && ct.count() > max - 100,
        "{}",
        ct.count()
    );
}
