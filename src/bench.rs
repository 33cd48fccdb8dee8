//! `ctrack bench`: the engine alone, timed on packets held in memory.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ctrack::{Conntrack, capture};

use crate::EngineArgs;

#[derive(Args)]
pub struct BenchArgs {
    /// A pcap or pcapng capture to load into memory and replay.
    #[arg(long)]
    pcap: PathBuf,
    /// Replay the capture this many times through one tracker (timestamps shifted forward).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    let cfg = a.engine.config()?;
    let cap = capture::load(&a.pcap).map_err(|e| e.to_string())?;
    if cap.is_empty() {
        return Err(format!(
            "{}: the capture holds no packets",
            a.pcap.display()
        ));
    }
    let frames: Vec<_> = cap.packets().collect();
    let span = frames.iter().map(|f| f.0).max().unwrap_or(0)
        - frames.iter().map(|f| f.0).min().unwrap_or(0)
        + 1;
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
    let entries = ct.count().max(1);
    println!(
        "entries {} bytes-per-entry {}",
        ct.count(),
        ct.memory() / entries
    );
    println!("tracked {tracked}");
    println!(
        "packets {n} seconds {secs:.6} mpps {:.3}",
        n as f64 / secs / 1e6
    );
    Ok(())
}
