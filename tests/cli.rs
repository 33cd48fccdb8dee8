//! The `ctrack` command's contract: output format, and a one-line error with a non-zero exit
//! for every kind of bad input, never a panic.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

/// The `ctrack` binary as a command: run through `CTRACK_TEST_RUNNER` (an emulator and its
/// arguments, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`) when that is set, as `.ci/run`
/// sets it to test a build for another architecture.
fn ctrack_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_ctrack");
    let runner = std::env::var("CTRACK_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.args(words).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn ctrack(args: &[&str]) -> Output {
    ctrack_command().args(args).output().expect("run ctrack")
}

/// Runs ctrack with `bytes` written to its standard input (from another thread, so that a
/// large capture cannot fill the pipe while ctrack's output fills another).
fn ctrack_fed(args: &[&str], bytes: Vec<u8>) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = ctrack_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctrack");
    let mut stdin = child.stdin.take().unwrap();
    // ctrack may stop reading early (a bad header): a broken pipe is then no failure.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait for ctrack");
    feeder.join().unwrap();
    out
}

/// A directory of this test process's own for the files it writes, under the build's
/// directory for integration tests' files (`CARGO_TARGET_TMPDIR`), so that runs leave nothing
/// in the system's temporary directory.
fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ctrack-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = scratch();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts a clean failure: non-zero exit, nothing on stdout, exactly one stderr line that
/// mentions every `needle`.
fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded; stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    for n in needles {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
}

fn pcap_header(linktype: u32) -> Vec<u8> {
    let mut v = 0xa1b2c3d4u32.to_le_bytes().to_vec();
    v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
    v.extend_from_slice(&linktype.to_le_bytes());
    v
}

/// A record holding `data` whose on-the-wire length was `orig_len`.
fn record(data: &[u8], orig_len: u32) -> Vec<u8> {
    record_claiming(data, data.len() as u32, orig_len)
}

/// A record holding `data` but claiming `incl_len` captured bytes.
fn record_claiming(data: &[u8], incl_len: u32, orig_len: u32) -> Vec<u8> {
    let mut v = vec![1, 0, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(&incl_len.to_le_bytes());
    v.extend_from_slice(&orig_len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn missing_file() {
    let out = ctrack(&["replay", "/nonexistent/capture.pcap", "--verdicts"]);
    fails_with(&out, &["/nonexistent/capture.pcap", "no such file"]);
}

#[test]
fn directory_instead_of_file() {
    let dir = scratch();
    let out = ctrack(&["replay", dir.to_str().unwrap()]);
    fails_with(&out, &[dir.to_str().unwrap()]);
}

#[test]
fn empty_file() {
    let p = tmp("empty.pcap", b"");
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["empty.pcap", "empty"],
    );
}

#[test]
fn garbage_header() {
    let p = tmp("garbage.pcap", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["garbage.pcap", "not a pcap"],
    );
}

#[test]
fn truncated_header() {
    let p = tmp("short.pcap", &pcap_header(1)[..13]);
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["short.pcap", "truncated"],
    );
    let ng = tmp(
        "short.pcapng",
        &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c],
    );
    fails_with(
        &ctrack(&["replay", ng.to_str().unwrap()]),
        &["short.pcapng", "truncated"],
    );
}

#[test]
fn absurd_record_length() {
    let mut f = pcap_header(1);
    f.extend(record_claiming(b"abcd", 0xffff_fff0, 4));
    let p = tmp("absurd.pcap", &f);
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["absurd.pcap", "absurd length"],
    );
}

#[test]
fn truncated_record() {
    let mut f = pcap_header(1);
    f.extend(record(&[0u8; 60], 60));
    f.truncate(f.len() - 10);
    let p = tmp("cut.pcap", &f);
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["cut.pcap", "truncated record 0"],
    );
}

#[test]
fn unknown_link_type() {
    let p = tmp("wifi.pcap", &pcap_header(105));
    fails_with(
        &ctrack(&["replay", p.to_str().unwrap()]),
        &["wifi.pcap", "link type 105"],
    );
}

#[test]
fn bad_flags() {
    let mut f = pcap_header(1);
    f.extend(record(&[0u8; 14], 14));
    let p = tmp("ok.pcap", &f);
    let ps = p.to_str().unwrap();
    fails_with(
        &ctrack(&["replay", ps, "--sysctl", "nf_conntrack_bogus=1"]),
        &["nf_conntrack_bogus", "nf_conntrack_tcp_loose"],
    );
    fails_with(
        &ctrack(&["replay", ps, "--sysctl", "nf_conntrack_tcp_loose=7"]),
        &["nf_conntrack_tcp_loose", "0 to 1"],
    );
    fails_with(
        &ctrack(&["replay", ps, "--sysctl", "novalue"]),
        &["NAME=VALUE"],
    );
    fails_with(
        &ctrack(&["replay", ps, "--helper", "gopher:tcp:70"]),
        &["gopher", "ftp"],
    );
    fails_with(
        &ctrack(&["replay", ps, "--helper", "ftp:tcp"]),
        &["ftp:tcp"],
    );
    fails_with(&ctrack(&["replay", ps, "--frobnicate"]), &["--frobnicate"]);
    fails_with(&ctrack(&["replay"]), &["FILE"]);
    fails_with(&ctrack(&["bench", "--pcap", ps, "--repeat", "x"]), &["x"]);
    fails_with(
        &ctrack(&["bench", "--pcap", ps, "--zone", "65536"]),
        &["--zone", "65536"],
    );
    fails_with(
        &ctrack(&["replay", ps, "--shards", "0"]),
        &["--shards", "1 to 1024"],
    );
    fails_with(
        &ctrack(&["bench", "--workload", "est", "--payload", "1441"]),
        &["--payload", "0 to 1440"],
    );
    fails_with(
        &ctrack(&["bench", "--pcap", ps, "--repeat", "0"]),
        &["--repeat", "at least 1"],
    );
}

/// A workload that cannot be made is refused in one line before anything is allocated: no
/// flows, more connections than 32-bit flow numbers, more memory than an address space (or
/// this machine) holds.
#[test]
fn bench_refuses_impossible_workloads() {
    let bench = |kind: &str, flows: &str, packets: &str| workload(kind, flows, packets, &[]);
    fails_with(&bench("est", "0", "10"), &["--flows", "at least 1"]);
    fails_with(&bench("syn", "0", "10"), &["--flows", "at least 1"]);
    fails_with(
        &bench("est", "100000000000", "10"),
        &["100000000000 connections", "4294967295"],
    );
    fails_with(
        &bench("syn", "10", "4294967290"),
        &["4294967300 connections", "4294967295"],
    );
    fails_with(
        &bench("udp", "1", "18446744073709551615"),
        &["bytes of memory", "cannot be allocated"],
    );
    // 1.8 TB: more than a machine that runs the tests has (where it says how much it has).
    fails_with(&bench("est", "4000000000", "1"), &["bytes of memory"]);
}

#[test]
fn good_file_with_bad_frames_is_fine() {
    let mut f = pcap_header(1);
    f.extend(record(&[0u8; 3], 60)); // a frame too short for Ethernet
    let mut ipv4_cut = vec![0u8; 12];
    ipv4_cut.extend_from_slice(&[
        0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1,
    ]);
    f.extend(record(&ipv4_cut, 60)); // IPv4 cut inside its header
    let mut bad_ihl = vec![0u8; 12];
    bad_ihl.extend_from_slice(&[0x08, 0x00, 0x41]);
    bad_ihl.extend_from_slice(&[0u8; 40]);
    f.extend(record(&bad_ihl, 60));
    let p = tmp("frames.pcap", &f);
    let out = ctrack(&["replay", p.to_str().unwrap(), "--verdicts", "--table"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "0 skipped\n1 skipped\n2 invalid\n");
}

/// What a capture decides does not depend on how the table is sharded.
#[test]
fn replay_is_the_same_with_any_shard_count() {
    let cap = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/real/lan-noise.pcap");
    let run = |extra: &[&str]| {
        let mut args = vec!["replay", cap, "--verdicts", "--table"];
        args.extend_from_slice(extra);
        let out = ctrack(&args);
        assert!(out.status.success());
        out.stdout
    };
    let default = run(&[]);
    assert!(!default.is_empty());
    for n in ["1", "3", "1024"] {
        assert_eq!(run(&["--shards", n]), default, "--shards {n}");
    }
}

/// A capture whose timestamps step back is replayed on a clock that does not, as the kernel
/// meets it: the same decisions whatever the sharding (each shard keeps a clock of its own),
/// and the kernel's (its golden came from the oracle's `--realtime` replay).
#[test]
fn replay_time_never_goes_back() {
    let base = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pcaps/timers/timestamps-step-back"
    );
    let cap = format!("{base}.pcap");
    let golden = std::fs::read_to_string(format!("{base}.golden")).unwrap();
    let want: Vec<&str> = golden.lines().filter(|l| !l.starts_with('#')).collect();
    for n in ["1", "3", "16", "1024"] {
        let out = ctrack(&["replay", &cap, "--verdicts", "--shards", n]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), want, "--shards {n}");
    }
}

#[test]
fn replay_format_on_a_bundled_capture() {
    let cap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pcaps/udp/request-response.pcap"
    );
    let out = ctrack(&["replay", cap, "--verdicts", "--table", "--stats"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0 new,orig");
    assert_eq!(lines[1], "1 established,reply");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("# table ipv4     2 udp      17 "))
    );
    assert!(lines.last().unwrap().starts_with("# stats found="));
}

/// `--events` puts each packet's events after its verdict, in `conntrack -E`'s format.
#[test]
fn replay_prints_events_after_their_packets() {
    let cap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pcaps/udp/request-response.pcap"
    );
    let out = ctrack(&["replay", cap, "--verdicts", "--events"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0 new,orig");
    assert!(
        lines[1].starts_with("# event     [NEW] udp      17 30 src="),
        "{text}"
    );
    assert!(lines[1].contains("[UNREPLIED]"), "{text}");
    assert_eq!(lines[2], "1 established,reply");
    assert!(
        lines[3].starts_with("# event  [UPDATE] udp      17 30 src="),
        "{text}"
    );
    assert!(!lines[3].contains("[UNREPLIED]"), "{text}");
    // Without the flag, no event lines.
    let plain = ctrack(&["replay", cap, "--verdicts"]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("# event"));
}

/// `bench --events N` times the engine with a queue of N, taken after every burst, and says
/// how many events a queue too small for a burst lost.
#[test]
fn bench_with_an_event_stream() {
    let run = |n: &str| {
        let out = ctrack(&[
            "bench",
            "--workload",
            "syn",
            "--packets",
            "3000",
            "--events",
            n,
        ]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let roomy = run("100000");
    assert!(roomy.contains("tracked 3000 of 3000\n"), "{roomy}");
    assert!(roomy.contains("events lost 0\n"), "{roomy}");
    // Bursts of 256 new connections into a queue of 10.
    let small = run("10");
    assert!(!small.contains("events lost 0\n"), "{small}");
    fails_with(
        &ctrack(&["bench", "--workload", "syn", "--events", "x"]),
        &["x"],
    );
}

/// The packets of each `thread N packets P ...` line `bench --threads` prints, in order.
fn thread_shares(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("thread "))
        .filter_map(|l| l.split(' ').nth(2)?.parse().ok())
        .collect()
}

/// Asserts that `bench`'s output `text` ends with its figures for `n` timed packets.
fn assert_timed(text: &str, n: usize) {
    let want = format!("packets {n} seconds ");
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with(&want)),
        "{text}"
    );
}

/// Runs `ctrack bench --workload KIND --flows FLOWS --packets PACKETS` with `more` arguments.
fn workload(kind: &str, flows: &str, packets: &str, more: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--workload",
        kind,
        "--flows",
        flows,
        "--packets",
        packets,
    ];
    args.extend_from_slice(more);
    ctrack(&args)
}

/// `bench --zone N` tracks every packet in zone N: each workload (established flows in
/// bursts sorted by shard and in order, on two threads, new connections) and a capture
/// (its bursts split between threads by `queue_of` in that zone) track every packet.
#[test]
fn bench_in_a_zone() {
    let tracked = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("tracked "))
            .unwrap()
            .to_string();
        let n: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(n[1], n[3], "{line}");
        n[1].parse::<u64>().unwrap()
    };
    for more in [
        &["--zone", "3"][..],
        &["--zone", "3", "--in-order-entries", "0"],
        &["--zone", "65535", "--threads", "2"],
    ] {
        assert_eq!(tracked(&workload("est", "500", "20000", more)), 20000);
    }
    assert_eq!(
        tracked(&workload("syn", "10", "5000", &["--zone", "9"])),
        5000
    );
    let path = scratch().join("zoned.pcap");
    let p = path.to_str().unwrap();
    let setup = write_workload("est", "200", "4000", p);
    let s = setup.to_string();
    let out = ctrack(&[
        "bench",
        "--pcap",
        p,
        "--setup",
        &s,
        "--zone",
        "2",
        "--threads",
        "2",
    ]);
    // (The setup packets are counted too.)
    assert_eq!(tracked(&out), setup as u64 + 4000);
}

/// Writes `bench --workload KIND --flows FLOWS --packets PACKETS` to the capture `path` and
/// returns how many setup packets lead it (checking that the timed ones follow).
fn write_workload(kind: &str, flows: &str, packets: &str, path: &str) -> usize {
    let out = workload(kind, flows, packets, &["--write-pcap", path]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("setup "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(&format!(" timed {packets}")), "{text}");
    line.split(' ').next().unwrap().parse().unwrap()
}

/// A workload written with `--write-pcap` replays through `bench --pcap --setup K` with exactly
/// the workload's setup untimed and its timed packets timed.
#[test]
fn bench_written_workload_replays_with_its_setup() {
    let p = scratch().join("udp-workload.pcap");
    let ps = p.to_str().unwrap();
    assert_eq!(write_workload("udp", "10", "100", ps), 20);
    let out = ctrack(&["bench", "--pcap", ps, "--setup", "20", "--batch", "32"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tracked 120 of 120\n"), "{text}");
    assert_timed(&text, 100);
    fails_with(
        &ctrack(&["bench", "--pcap", ps, "--setup", "120"]),
        &["--setup 120", "120 packets"],
    );
    fails_with(
        &ctrack(&["bench", "--workload", "udp", "--setup", "1"]),
        &["--setup"],
    );
}

/// `bench --pcap` first replays copies of the capture's first 4,096 packets into a scratch
/// tracker (each thread into its own), and says so; `--no-warm-up` does not. Either way the
/// timed tracker tracks the same packets into the same table.
#[test]
fn bench_pcap_warms_up_on_copies_unless_told_not_to() {
    let p = scratch().join("udp-warm-up.pcap");
    let ps = p.to_str().unwrap();
    let setup = write_workload("udp", "10", "5000", ps).to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["bench", "--pcap", ps, "--setup", &setup, "--batch", "32"];
        args.extend(extra);
        let out = ctrack(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let warm_ups = |text: &str| -> Vec<(String, u64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("warm-up"))
            .map(|l| {
                let (who, rest) = l.split_once("packets ").unwrap();
                let k = rest.split(' ').next().unwrap().parse().unwrap();
                (who.trim().to_string(), k)
            })
            .collect()
    };
    let timed = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("tracked ") || l.starts_with("entries "))
            .map(|l| l.split(" memory").next().unwrap().to_string())
            .collect()
    };
    let warm = run(&[]);
    assert_eq!(warm_ups(&warm), [(String::new(), 4096)], "{warm}");
    let cold = run(&["--no-warm-up"]);
    assert!(warm_ups(&cold).is_empty(), "{cold}");
    assert_eq!(timed(&warm), timed(&cold));
    assert!(warm.contains("tracked 5020 of 5020\n"), "{warm}");
    let two = run(&["--threads", "2"]);
    assert_eq!(
        warm_ups(&two),
        [
            ("thread 0".to_string(), 4096),
            ("thread 1".to_string(), 4096)
        ],
        "{two}"
    );
    assert!(two.contains("tracked 5020 of 5020\n"), "{two}");
    assert_timed(&two, 5000);
    // A capture shorter than the warm-up is copied whole.
    let p = scratch().join("udp-warm-up-short.pcap");
    let ps = p.to_str().unwrap();
    write_workload("udp", "10", "100", ps);
    let out = ctrack(&["bench", "--pcap", ps]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(warm_ups(&text), [(String::new(), 120)], "{text}");
    fails_with(
        &ctrack(&["bench", "--workload", "udp", "--no-warm-up"]),
        &["--no-warm-up"],
    );
}

/// `bench --pcap --threads T` splits a capture's timed packets between T threads: a line per
/// thread, their shares adding up to every timed packet, each replayed `--repeat` times, and
/// every packet tracked into the same table as on one thread (once it took a single thread
/// whatever T was).
#[test]
fn bench_pcap_splits_a_capture_between_threads() {
    let p = scratch().join("est-threads.pcap");
    let ps = p.to_str().unwrap();
    let setup = write_workload("mix", "40", "3000", ps);
    let setup_s = setup.to_string();
    let mut entries = Vec::new();
    for threads in ["1", "2", "3"] {
        let out = ctrack(&[
            "bench",
            "--pcap",
            ps,
            "--setup",
            &setup_s,
            "--threads",
            threads,
            "--repeat",
            "2",
            "--batch",
            "16",
        ]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("threads {threads}\n")), "{text}");
        assert!(
            text.contains(&format!("tracked {} of {}\n", setup + 6000, setup + 6000)),
            "{text}"
        );
        let shares = thread_shares(&text);
        if threads == "1" {
            assert!(shares.is_empty(), "{text}");
        } else {
            assert_eq!(shares.len(), threads.parse::<usize>().unwrap(), "{text}");
            assert!(shares.iter().all(|&n| n > 0), "{text}");
            assert_eq!(shares.iter().sum::<u64>(), 6000, "{text}");
        }
        assert_timed(&text, 6000);
        entries.push(
            text.lines()
                .find(|l| l.starts_with("entries "))
                .and_then(|l| l.split(' ').nth(1))
                .unwrap()
                .to_string(),
        );
    }
    assert!(entries.iter().all(|e| *e == entries[0]), "{entries:?}");
}

/// A SYN flood is timed into a reserved table, or with `--no-reserve` into one that grows;
/// both track every packet, and a capture refuses the flag.
#[test]
fn bench_syn_flood_with_and_without_reserving() {
    for extra in [None, Some("--no-reserve")] {
        let mut args = vec!["bench", "--workload", "syn", "--packets", "3000"];
        args.extend(extra);
        let out = ctrack(&args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tracked 3000 of 3000\n"), "{text}");
        assert!(text.contains("entries 3000 memory "), "{text}");
    }
    fails_with(
        &ctrack(&[
            "bench",
            "--pcap",
            "pcaps/udp/dns-burst.pcap",
            "--no-reserve",
        ]),
        &["--no-reserve"],
    );
    // Steering by flow splits a workload between threads: alone it is a mistake.
    fails_with(
        &ctrack(&["bench", "--workload", "est", "--steer", "flow"]),
        &["--steer flow"],
    );
}

/// `--expectation` leaves an FTP expectation pending through the timed packets: every packet
/// is tracked (the control connection's own among the entries), in bursts over a table large
/// enough to be sorted, IPv4 and IPv6, and a flood's full table has room for the control
/// connection; without the FTP helper, or with a capture, it is refused.
#[test]
fn bench_with_an_expectation_pending() {
    for v6 in [false, true] {
        let mut args = vec![
            "bench",
            "--workload",
            "est",
            "--flows",
            "5000",
            "--packets",
            "20000",
            "--expectation",
            "--helper",
            "all",
        ];
        if v6 {
            args.push("--ipv6");
        }
        let out = ctrack(&args);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tracked 20000 of 20000\n"), "{text}");
        assert!(text.contains("entries 5001 memory "), "{text}");
    }
    // A flood's table holds its flows and the control connection, full: every SYN dropped.
    let out = ctrack(&[
        "bench",
        "--workload",
        "flood",
        "--flows",
        "500",
        "--packets",
        "2000",
        "--expectation",
        "--helper",
        "all",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tracked 0 of 2000\n"), "{text}");
    assert!(text.contains("entries 501 memory "), "{text}");
    fails_with(
        &ctrack(&["bench", "--workload", "est", "--expectation"]),
        &["--expectation", "FTP helper"],
    );
    fails_with(
        &ctrack(&[
            "bench",
            "--pcap",
            "pcaps/udp/dns-burst.pcap",
            "--expectation",
        ]),
        &["--expectation"],
    );
}

/// `--steer flow` gives each thread the packets of the flows it is assigned by number alone
/// (flow modulo threads), whatever the table's shards, as the workload generator numbers them.
#[test]
fn bench_steer_flow_splits_by_flow_number() {
    use ctrack::workload::{DEFAULT_PAYLOAD, Kind, Workload};
    let w = Workload::with_payload(Kind::Mix, 50, 4000, false, 0x00c0_ffee, DEFAULT_PAYLOAD);
    let mut want = [0u64; 3];
    for i in w.setup_len()..w.setup_len() + w.len() {
        want[w.flow(i) as usize % 3] += 1;
    }
    let out = ctrack(&[
        "bench",
        "--workload",
        "mix",
        "--flows",
        "50",
        "--packets",
        "4000",
        "--threads",
        "3",
        "--steer",
        "flow",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let shares = thread_shares(&text);
    assert_eq!(shares, want, "{text}");
}

/// Every thread count tracks every packet of a workload (each thread's packets copied into a
/// ring of its own), and leaves the same table, whether the threads are steered by shard or by
/// flow (sharing shards), and bursts tracked in order or sorted.
#[test]
fn bench_threads_track_every_packet() {
    for kind in ["est", "udp", "mix"] {
        let mut entries = Vec::new();
        for (threads, steer, in_order) in [
            ("1", "shard", "4096"),
            ("2", "shard", "4096"),
            ("3", "shard", "0"),
            ("2", "flow", "4096"),
            ("3", "flow", "0"),
        ] {
            let out = ctrack(&[
                "bench",
                "--workload",
                kind,
                "--flows",
                "50",
                "--packets",
                "4000",
                "--threads",
                threads,
                "--steer",
                steer,
                "--in-order-entries",
                in_order,
                "--batch",
                "7",
            ]);
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&format!("threads {threads} ")), "{text}");
            assert!(text.contains("tracked 4000 of 4000\n"), "{text}");
            // Past one thread, a line per thread: their shares add up to every packet.
            let shares = thread_shares(&text);
            let want = if threads == "1" {
                0
            } else {
                threads.parse().unwrap()
            };
            assert_eq!(shares.len(), want, "{text}");
            assert_eq!(shares.iter().sum::<u64>(), if want == 0 { 0 } else { 4000 });
            let n = text
                .split("entries ")
                .nth(1)
                .and_then(|t| t.split(' ').next());
            entries.push(n.map(str::to_owned));
        }
        // Established and UDP flows were all opened in the setup; the mix opens more.
        assert!(
            entries.iter().all(|n| n == &entries[0]),
            "{kind}: {entries:?}"
        );
        if kind != "mix" {
            assert_eq!(entries[0].as_deref(), Some("50"), "{kind}");
        }
    }
}

/// `replay` leaves layer-4 checksums unchecked unless told otherwise, as the kernel oracle
/// does: a datagram with a wrong UDP checksum is NEW by default and INVALID with the check on.
#[test]
fn replay_checks_l4_checksums_only_when_asked() {
    // 10.0.0.1:1000 -> 10.0.0.2:53, UDP checksum 0x1234 (wrong), valid IPv4 header checksum.
    let mut ip = vec![
        0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0, 53, 0,
        9, 0x12, 0x34, b'x',
    ];
    let sum: u32 = ip[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let mut file = pcap_header(101);
    file.extend(record(&ip, ip.len() as u32));
    let p = tmp("bad-udp-checksum.pcap", &file);
    let ps = p.to_str().unwrap();
    let out = ctrack(&["replay", ps, "--verdicts"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0 new,orig\n");
    let on = [
        "replay",
        ps,
        "--verdicts",
        "--sysctl",
        "nf_conntrack_checksum=1",
    ];
    let out = ctrack(&on);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0 invalid\n");
}

/// `--expect` lists pending expectations after the table, as the oracle does.
#[test]
fn replay_lists_expectations() {
    let cap = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/helpers/tftp.pcap");
    let out = ctrack(&[
        "replay",
        cap,
        "--helper",
        "tftp:udp:69",
        "--table",
        "--expect",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("# expect ")
            && last.ends_with(
                " l3proto = 2 proto=17 src=10.30.0.2 dst=10.30.0.3 sport=0 dport=42104 tftp"
            ),
        "{text}"
    );
    // Without helpers nothing is expected.
    let out = ctrack(&["replay", cap, "--expect"]);
    assert!(String::from_utf8(out.stdout).unwrap().is_empty());
}

/// `benches/misses.sh` refuses a count that is not a positive whole number in one line,
/// before it looks for valgrind (so this runs on any machine).
#[test]
fn misses_script_refuses_bad_counts() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/misses.sh");
    // Arguments, the simulated cache size (`LL`), the burst size (`BATCH`), the one refused.
    let cases = [
        (&["abc"][..], "1048576", "32", "flows"),
        (&["0"], "1048576", "32", "flows"),
        (&["100", "-5"], "1048576", "32", "packets"),
        (&["100", "10"], "1M", "32", "LL"),
        (&["100", "10"], "1048576", "32k", "BATCH"),
    ];
    for (args, ll, batch, what) in cases {
        let out = Command::new("bash")
            .arg(script)
            .args(args)
            .env("LL", ll)
            .env("BATCH", batch)
            .env("CTRACK", env!("CARGO_BIN_EXE_ctrack"))
            .output()
            .expect("run bash");
        fails_with(&out, &["misses.sh", what, "positive whole number"]);
        assert!(out.stdout.is_empty());
    }
}

/// `replay` reads a file a record at a time (twice: checked to the end, then replayed) and a
/// pipe whole: every bundled capture, with its scenario's arguments, prints the same either
/// way, given as `-` (standard input) or as `/dev/stdin`. With one `--seed` both runs lay out
/// the table alike, so even what the seed decides (the order of events of entries that time
/// out together, the `--stats` count of those not yet reaped) must match.
#[test]
fn replay_of_a_file_is_that_of_the_same_bytes_through_a_pipe() {
    let mut goldens = Vec::new();
    common::captures(
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps")),
        &mut goldens,
    );
    assert!(goldens.len() > 100, "{} captures", goldens.len());
    for (n, g) in goldens.into_iter().enumerate() {
        let (cap, args) = common::capture_of(&g);
        let mut argv = vec![
            "replay",
            "--verdicts",
            "--table",
            "--expect",
            "--stats",
            "--events",
            "--seed",
            "1",
        ];
        argv.extend(args.split_whitespace().filter(|&a| a != "--realtime"));
        let from_file = ctrack_command().args(&argv).arg(&cap).output().unwrap();
        argv.push(if n % 2 == 0 { "-" } else { "/dev/stdin" });
        let from_pipe = ctrack_fed(&argv, std::fs::read(&cap).unwrap());
        assert!(from_file.status.success(), "{}", cap.display());
        let (a, b) = (
            String::from_utf8_lossy(&from_file.stdout),
            String::from_utf8_lossy(&from_pipe.stdout),
        );
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(
            a == b,
            "{}: file and pipe differ at line {first:?} ({} and {} lines)",
            cap.display(),
            a.lines().count(),
            b.lines().count()
        );
        assert!(from_file.stderr.is_empty() && from_pipe.stderr.is_empty());
    }
}

/// `--seed` fixes the table's hash seed: a capture whose output the seed decides (six TCP
/// connections timing out in the same sweeps, their events in hash order) prints the same
/// bytes at every run with one seed, and other bytes with another. Without `--seed` each run
/// draws its own, and the order differs from run to run.
#[test]
fn replay_with_a_seed_prints_the_same_every_time() {
    let cap = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/timers/tcp-states.pcap");
    let args = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pcaps/timers/tcp-states.args"
    ))
    .unwrap();
    let run = |seed: &str| {
        let mut argv = vec![
            "replay",
            cap,
            "--verdicts",
            "--table",
            "--stats",
            "--events",
        ];
        argv.extend(args.split_whitespace().filter(|&a| a != "--realtime"));
        if !seed.is_empty() {
            argv.extend(["--seed", seed]);
        }
        let out = ctrack(&argv);
        assert!(out.status.success() && out.stderr.is_empty());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run("5");
    assert!(first.contains("# event [DESTROY]"));
    for _ in 0..4 {
        assert_eq!(run("5"), first);
    }
    assert_ne!(run("6"), first, "another seed, another order");
    let unseeded: std::collections::HashSet<String> = (0..4).map(|_| run("")).collect();
    assert!(
        unseeded.len() > 1,
        "random seeds gave one output four times"
    );
    let bad = ctrack(&["replay", cap, "--seed", "x"]);
    fails_with(&bad, &["--seed"]);
}

/// `-` reads the capture from standard input, for `bench --pcap` too; a bad one there is
/// refused in one line that names it.
#[test]
fn a_capture_on_standard_input() {
    let feed = ctrack_fed;
    let cap = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/udp/dns-burst.pcap");
    let bytes = std::fs::read(cap).unwrap();
    let out = feed(&["bench", "--pcap", "-", "--repeat", "2"], bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("packets ") && last.contains(" mpps "),
        "{last}"
    );
    for argv in [
        &["replay", "-", "--verdicts"][..],
        &["bench", "--pcap", "-"][..],
    ] {
        let out = feed(argv, b"not a capture at all".to_vec());
        fails_with(&out, &["-: "]);
        assert!(out.stdout.is_empty());
    }
}

/// Byte offsets of a classic little-endian pcap's records.
fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let (mut off, mut at) = (24, Vec::new());
    while off + 16 <= pcap.len() {
        at.push(off);
        off += 16 + u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
    }
    at
}

/// A capture the file ends inside (as a capture cut short leaves it): every record before the
/// cut is tracked and printed as the kernel oracle gives it (the golden's lines), the cut
/// record as the bytes the file holds (the oracle's reader sends those too), then the table;
/// the replay then fails with the truncation as its one-line error. The same through a pipe.
#[test]
fn a_capture_cut_short_replays_up_to_the_cut() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/udp/");
    let whole = std::fs::read(format!("{dir}dns-burst.pcap")).unwrap();
    let golden = std::fs::read_to_string(format!("{dir}dns-burst.golden")).unwrap();
    let at = record_offsets(&whole);
    let last = *at.last().unwrap();
    let n = at.len();
    assert!(n > 2 && whole.len() > last + 16 + 2);
    let cut = &whole[..last + 16 + (whole.len() - last - 16) / 2];
    let p = tmp("dns-burst-cut.pcap", cut);
    let args = ["replay", p.to_str().unwrap(), "--verdicts", "--table"];
    let out = ctrack(&args);
    let msg = format!("truncated record {}", n - 1);
    fails_with(&out, &["dns-burst-cut.pcap", &msg]);
    let text = String::from_utf8(out.stdout).unwrap();
    let verdicts: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let kernel: Vec<&str> = golden.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(verdicts.len(), n, "{text}");
    assert_eq!(verdicts[..n - 1], kernel[..n - 1]);
    assert!(verdicts[n - 1].starts_with(&format!("{} ", n - 1)));
    assert!(text.lines().any(|l| l.starts_with("# table ")), "{text}");
    // The same bytes on standard input: the same lines, the same error.
    let piped = ctrack_fed(&["replay", "-", "--verdicts", "--table"], cut.to_vec());
    fails_with(&piped, &["-: ", &msg]);
    assert_eq!(String::from_utf8(piped.stdout).unwrap(), text);
    // `bench --pcap` times the same packets, then fails with the same error.
    for (bench, input) in [
        (ctrack(&["bench", "--pcap", p.to_str().unwrap()]), None),
        (
            ctrack_fed(&["bench", "--pcap", "-"], cut.to_vec()),
            Some("-: "),
        ),
    ] {
        fails_with(&bench, &[input.unwrap_or("dns-burst-cut.pcap"), &msg]);
        let text = String::from_utf8(bench.stdout).unwrap();
        assert_timed(&text, n);
    }
}

/// A record that claims an impossible length, after good ones: those are tracked and printed,
/// nothing stands for the bad one, and the replay fails with it as its one-line error.
#[test]
fn a_bad_record_late_in_a_file_ends_the_replay_there() {
    let mut f = pcap_header(101);
    for _ in 0..3 {
        f.extend(record(&[0x45, 0, 0, 20], 4));
    }
    f.extend(record_claiming(b"abcd", 0xffff_fff0, 4));
    f.extend(record(&[0x45, 0, 0, 20], 4));
    let p = tmp("late-absurd.pcap", &f);
    let out = ctrack(&["replay", p.to_str().unwrap(), "--verdicts", "--table"]);
    fails_with(&out, &["late-absurd.pcap", "absurd length"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{i} ")), "{text}");
    }
    // `bench --pcap` times the three, then fails with the same error.
    let out = ctrack(&["bench", "--pcap", p.to_str().unwrap()]);
    fails_with(&out, &["late-absurd.pcap", "absurd length"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" of 3\n"), "{text}");
    assert_timed(&text, 3);
    // A first record that is bad: nothing to time, and the bad record is the error.
    let mut f = pcap_header(101);
    f.extend(record_claiming(b"abcd", 0xffff_fff0, 4));
    let p = tmp("first-absurd.pcap", &f);
    let out = ctrack(&["bench", "--pcap", p.to_str().unwrap()]);
    fails_with(&out, &["first-absurd.pcap", "absurd length"]);
    assert!(out.stdout.is_empty());
}
