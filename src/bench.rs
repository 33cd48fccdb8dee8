//! `ctrack bench`: the engine alone, timed on packets held in memory (a capture, or a
//! generated workload), on one or more threads.

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Instant;

use clap::{Args, ValueEnum};
use ctrack::workload::{Kind, Workload};
use ctrack::{Conntrack, LinkType, Verdict, capture};

use crate::EngineArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkloadKind {
    /// Established TCP flows with window tracking.
    Est,
    /// A SYN flood into an empty table: every packet a new connection.
    Syn,
    /// UDP flows in both directions.
    Udp,
    /// 70% established TCP, 20% UDP, 10% new connections.
    Mix,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["pcap", "workload"]))]
pub struct BenchArgs {
    /// A pcap or pcapng capture to load into memory and replay.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Replay the capture this many times through one tracker (timestamps shifted forward).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Generate traffic instead of reading a capture.
    #[arg(long, value_enum)]
    workload: Option<WorkloadKind>,
    /// Flows in the generated workload.
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    /// Timed packets in the generated workload.
    #[arg(long, default_value_t = 5_000_000)]
    packets: usize,
    /// Worker threads sharing one tracker (a flow's packets stay on one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Generate IPv6 instead of IPv4.
    #[arg(long)]
    ipv6: bool,
    /// Packets handed to the engine per call.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Also write the generated workload (setup packets first) to this pcap file (Ethernet
    /// link type), so other engines can be timed on exactly the same packets.
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    if a.threads == 0 || a.threads > 256 {
        return Err(format!("--threads must be 1 to 256, not {}", a.threads));
    }
    if a.batch == 0 || a.batch > 4096 {
        return Err(format!("--batch must be 1 to 4096, not {}", a.batch));
    }
    match (&a.pcap, a.workload) {
        (Some(p), _) => bench_pcap(a, p),
        (None, Some(k)) => bench_workload(a, k),
        (None, None) => Err("give --pcap FILE or --workload KIND".into()),
    }
}

fn report(ct: &Conntrack, n: u64, secs: f64) {
    let entries = ct.count();
    println!(
        "entries {entries} memory {} bytes-per-entry {}",
        ct.memory(),
        ct.memory() / entries.max(1)
    );
    println!(
        "packets {n} seconds {secs:.6} mpps {:.3}",
        n as f64 / secs / 1e6
    );
}

/// Writes a workload as a classic Ethernet pcap, one microsecond apart.
fn write_pcap(path: &std::path::Path, w: &Workload) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    f.write_all(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
    f.write_all(&65535u32.to_le_bytes())?;
    f.write_all(&1u32.to_le_bytes())?;
    for (i, p) in w.all().enumerate() {
        let t = 1_700_000_000_000_000u64 + i as u64;
        let len = (p.len() + 14) as u32;
        f.write_all(&((t / 1_000_000) as u32).to_le_bytes())?;
        f.write_all(&((t % 1_000_000) as u32).to_le_bytes())?;
        f.write_all(&len.to_le_bytes())?;
        f.write_all(&len.to_le_bytes())?;
        let ethertype: [u8; 2] = if p[0] >> 4 == 6 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        };
        f.write_all(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])?;
        f.write_all(&ethertype)?;
        f.write_all(p)?;
    }
    f.flush()
}

fn bench_pcap(a: &BenchArgs, path: &std::path::Path) -> Result<(), String> {
    let cfg = a.engine.config()?;
    let cap = capture::load(path).map_err(|e| e.to_string())?;
    if cap.is_empty() {
        return Err(format!("{}: the capture holds no packets", path.display()));
    }
    let frames: Vec<_> = cap.packets().collect();
    let first = frames.iter().map(|f| f.0).min().unwrap_or(0);
    let span = frames.iter().map(|f| f.0).max().unwrap_or(0) - first + 1;
    let ct = Conntrack::new(cfg);
    let mut tracked = 0u64;
    let start = Instant::now();
    for r in 0..a.repeat.max(1) as u64 {
        let shift = r * span;
        for &(ts, link, frame) in &frames {
            tracked += ct.process(frame, link, ts + shift).tracked() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = frames.len() as u64 * a.repeat.max(1) as u64;
    println!("tracked {tracked} of {n}");
    report(&ct, n, secs);
    Ok(())
}

fn bench_workload(a: &BenchArgs, k: WorkloadKind) -> Result<(), String> {
    let mut cfg = a.engine.config()?;
    let kind = match k {
        WorkloadKind::Est => Kind::Established,
        WorkloadKind::Syn => Kind::Syn,
        WorkloadKind::Udp => Kind::Udp,
        WorkloadKind::Mix => Kind::Mix,
    };
    // Room for every flow the workload opens unless the caller chose a limit.
    if !a.engine.sets("nf_conntrack_max") {
        let need = a.flows + a.packets;
        cfg.sysctl.nf_conntrack_max = cfg
            .sysctl
            .nf_conntrack_max
            .max(need.min(i32::MAX as usize) as u32);
    }
    let w = Workload::generate(kind, a.flows, a.packets, a.ipv6, 0x00c0_ffee);
    if let Some(path) = &a.write_pcap {
        write_pcap(path, &w).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ct = Conntrack::new(cfg);
    let t0: u64 = 1_000_000_000_000;
    let mut out = Vec::with_capacity(a.batch);
    let setup: Vec<&[u8]> = (0..w.setup_len()).map(|i| w.packet(i)).collect();
    for chunk in setup.chunks(a.batch) {
        ct.process_batch(chunk, LinkType::Raw, t0, &mut out);
    }
    // Each thread gets the packets of its flows, in order.
    let mut parts: Vec<Vec<&[u8]>> = vec![Vec::new(); a.threads];
    for i in w.setup_len()..w.setup_len() + w.len() {
        parts[w.flow(i) as usize % a.threads].push(w.packet(i));
    }
    let barrier = Barrier::new(a.threads + 1);
    let (secs, tracked) = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                let (ct, barrier, batch) = (&ct, &barrier, a.batch);
                s.spawn(move || {
                    let mut out: Vec<Verdict> = Vec::with_capacity(batch);
                    let mut tracked = 0u64;
                    barrier.wait();
                    for (b, chunk) in part.chunks(batch).enumerate() {
                        ct.process_batch(chunk, LinkType::Raw, t0 + 1_000 * b as u64, &mut out);
                        tracked += out.iter().filter(|v| v.tracked()).count() as u64;
                    }
                    tracked
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let tracked: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        (start.elapsed().as_secs_f64(), tracked)
    });
    let n = w.len() as u64;
    println!(
        "workload {k:?} flows {} threads {} ipv6 {} batch {}",
        a.flows, a.threads, a.ipv6, a.batch
    );
    println!("tracked {tracked} of {n}");
    report(&ct, n, secs);
    Ok(())
}
