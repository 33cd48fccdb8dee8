//! `ctrack bench`: the engine alone, timed on packets held in memory (a capture, or a
//! generated workload), on one or more threads.

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ctrack::workload::{Kind, MAX_CONNECTIONS, Workload, WorkloadError};
use ctrack::{Conntrack, LinkType, Nanos, Verdict};

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
    /// A SYN flood into a table of --flows established (ASSURED) connections, whose
    /// `nf_conntrack_max` is --flows unless set: nothing to evict, every SYN dropped.
    Flood,
}

/// How `bench --threads` splits the packets between its threads.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Steer {
    /// As `Conntrack::queue_of` advises: no two threads share a shard.
    Shard,
    /// By flow alone (a flow's packets stay on one thread), as a NIC's receive-side scaling
    /// that knows nothing of the table spreads them: every thread meets every shard.
    Flow,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["pcap", "workload"]))]
pub struct BenchArgs {
    /// A pcap or pcapng capture to load into memory and replay (`-`: standard input).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Replay the capture this many times through one tracker (timestamps shifted forward).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// With --pcap: track the first K packets untimed before timing the rest (a capture
    /// written by --write-pcap holds the workload's setup packets first).
    #[arg(long, value_name = "K", default_value_t = 0)]
    setup: usize,
    /// With --pcap: time each burst on its own after reading its frames untimed, so the engine
    /// finds them in cache as it would right after a datapath parsed them (two clock reads per
    /// burst are counted against the engine).
    #[arg(long)]
    hot: bool,
    /// With --pcap: skip the warm-up replay (see `WARM_UP`), so that the clock times the
    /// process's first pass through the engine's code, fetched from memory as it goes.
    #[arg(long)]
    no_warm_up: bool,
    /// Generate traffic instead of reading a capture.
    #[arg(long, value_enum)]
    workload: Option<WorkloadKind>,
    /// Flows in the generated workload.
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    /// Timed packets in the generated workload.
    #[arg(long, default_value_t = 5_000_000)]
    packets: usize,
    /// Worker threads sharing one tracker (a flow's packets stay on one thread). A capture's
    /// timed packets are split as `Conntrack::queue_of` advises, each thread replaying its
    /// share in capture order; its setup packets are tracked first, on one thread, untimed.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Generate IPv6 instead of IPv4.
    #[arg(long)]
    ipv6: bool,
    /// Payload bytes of each generated TCP data segment (0 to 1440; bulk transfers carry
    /// 1,400 and more, which the checksum then reads).
    #[arg(long, value_name = "BYTES", default_value_t = ctrack::workload::DEFAULT_PAYLOAD)]
    payload: usize,
    /// With --workload: the setup ends with an FTP control connection whose server answers a
    /// passive-mode request, leaving an expectation pending through the timed packets (needs
    /// the FTP helper: --helper all, or ftp:tcp:21). Bursts are then tracked in order, as a
    /// new connection in any shard may take it.
    #[arg(long)]
    expectation: bool,
    /// With --workload syn or mix: let the table grow on demand instead of reserving room for
    /// the workload's connections before the clock starts.
    #[arg(long)]
    no_reserve: bool,
    /// Packets handed to the engine per call.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// With --workload and --threads: how the packets are split between the threads.
    #[arg(long, value_enum, default_value = "shard")]
    steer: Steer,
    /// Track a burst in order, frame by frame, while the table holds at most this many
    /// entries (0: always sort a burst by shard; see `Config::in_order_entries`). The
    /// verdicts are the same either way.
    #[arg(long, value_name = "N", default_value_t = ctrack::Config::default().in_order_entries)]
    in_order_entries: usize,
    /// Also write the generated workload (setup packets first) to this pcap file (Ethernet
    /// link type), so other engines can be timed on exactly the same packets.
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    /// Record connection events in a queue of N, taken after every burst (timed with the
    /// engine); 0, the default, records none.
    #[arg(long, value_name = "N", default_value_t = 0)]
    events: usize,
    /// Track every packet in conntrack zone N (0, the default: the tracker's own calls; other
    /// zones track bursts in order, not sorted by shard).
    #[arg(long, value_name = "N", default_value_t = 0)]
    zone: u16,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    if a.threads == 0 || a.threads > 256 {
        return Err(format!("--threads must be 1 to 256, not {}", a.threads));
    }
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    if a.batch == 0 || a.batch > 4096 {
        return Err(format!("--batch must be 1 to 4096, not {}", a.batch));
    }
    if a.payload > ctrack::workload::MAX_PAYLOAD {
        return Err(format!(
            "--payload must be 0 to {}, not {}",
            ctrack::workload::MAX_PAYLOAD,
            a.payload
        ));
    }
    if (a.setup > 0 || a.hot || a.no_warm_up) && a.pcap.is_none() {
        return Err(
            "--setup, --hot and --no-warm-up apply to --pcap (a workload knows its own setup)"
                .into(),
        );
    }
    if a.no_reserve && a.pcap.is_some() {
        return Err(
            "--no-reserve applies to --workload (a capture's table always grows on demand)".into(),
        );
    }
    if a.expectation && a.pcap.is_some() {
        return Err("--expectation applies to --workload (a capture holds its own setup)".into());
    }
    if matches!(a.steer, Steer::Flow) && (a.pcap.is_some() || a.threads == 1) {
        return Err("--steer flow applies to --workload with --threads 2 or more".into());
    }
    match (&a.pcap, a.workload) {
        (Some(p), _) => bench_pcap(a, p),
        (None, Some(k)) => bench_workload(a, k),
        (None, None) => Err("give --pcap FILE or --workload KIND".into()),
    }
}

/// Takes the events a burst left (with `--events`), as a listener would.
#[inline]
fn take_events(ct: &Conntrack) {
    if ct.records_events() {
        std::hint::black_box(ct.events());
    }
}

fn report(ct: &Conntrack, n: u64, secs: f64) {
    if ct.records_events() {
        println!("events lost {}", ct.events_lost());
    }
    // Memory per entry held: not per entry counted (timed-out entries stay counted a while
    // after their memory is reused).
    let entries = ct.entries();
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

/// One thread's packets copied into memory of their own, in the order the thread meets them,
/// as a NIC's receive queue holds its packets in a ring of its own: a thread then reads no
/// cache line or page of another thread's packets (streaming both threads' packets through
/// each would double what each thread reads from memory). Each frame starts on a cache line
/// of its own and the next one follows its last line, as frames lie in a capture's blocks
/// (and in the buffer `--pcap` replays from). Slots of the longest frame's size, as a ring of
/// fixed buffers has, made a bulk transfer's 54-byte acknowledgements each cost a 1,472-byte
/// slot of memory bandwidth: the 1,400-byte workload ran at 7 Mpps where the same packets
/// from its capture ran at 11.7.
struct Ring {
    buf: Vec<u8>,
    lens: Vec<usize>,
}

/// The one-line refusal when a copy of `packets` packets (or of references to them) cannot
/// get its memory.
fn no_room(packets: usize) -> String {
    format!("cannot get the memory to hold a copy of {packets} packets")
}

/// The machine's memory in bytes, where the system tells it (Linux's `/proc/meminfo`).
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kb.checked_mul(1024)
}

/// Bytes a frame of `len` bytes takes in a [`Ring`]: whole cache lines.
fn ring_room(len: usize) -> usize {
    len.next_multiple_of(64)
}

impl Ring {
    /// Copies `frames` into a ring, each at the start of a cache line; or says that the
    /// memory for it cannot be had.
    fn new(frames: &[&[u8]]) -> Result<Ring, String> {
        let room: usize = frames.iter().map(|f| ring_room(f.len())).sum();
        let mut buf = Vec::new();
        buf.try_reserve_exact(room)
            .map_err(|_| no_room(frames.len()))?;
        buf.resize(room, 0);
        let mut lens = Vec::new();
        lens.try_reserve_exact(frames.len())
            .map_err(|_| no_room(frames.len()))?;
        let mut at = 0;
        for f in frames {
            buf[at..at + f.len()].copy_from_slice(f);
            at += ring_room(f.len());
            lens.push(f.len());
        }
        Ok(Ring { buf, lens })
    }

    /// The frames, in order.
    fn frames(&self) -> Vec<&[u8]> {
        let mut at = 0;
        self.lens
            .iter()
            .map(|&l| {
                let f = &self.buf[at..at + l];
                at += ring_room(l);
                f
            })
            .collect()
    }
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
    let mut cfg = a.engine.config()?;
    cfg.in_order_entries = a.in_order_entries;
    cfg.events = a.events;
    // A bad record ends the capture where it stands, as in a replay: the packets before it
    // are timed, then the problem is the error.
    let (cap, bad) = crate::load_capture(path)?;
    if cap.is_empty() {
        return Err(
            bad.unwrap_or_else(|| format!("{}: the capture holds no packets", path.display()))
        );
    }
    if a.setup >= cap.len() {
        return Err(format!(
            "--setup {} leaves none of the {} packets to time",
            a.setup,
            cap.len()
        ));
    }
    let reps = a.repeat as usize;
    // Room for every packet to open a flow unless the caller chose a limit, as for workloads.
    if !a.engine.sets("nf_conntrack_max") {
        let need = a
            .setup
            .saturating_add((cap.len() - a.setup).saturating_mul(reps));
        cfg.sysctl.nf_conntrack_max = cfg
            .sysctl
            .nf_conntrack_max
            .max(need.min(i32::MAX as usize) as u32);
    }
    let frames: Vec<_> = cap.packets_monotonic().collect();
    let (setup, timed) = frames.split_at(a.setup);
    let first = timed.iter().map(|f| f.0).min().unwrap_or(0);
    let span = timed.iter().map(|f| f.0).max().unwrap_or(0) - first + 1;
    // The warm-up's copies (see `WARM_UP`): one thread warms up here; several, each in its
    // own thread.
    let head = if a.no_warm_up {
        None
    } else {
        Some(WarmUp::new(&frames, a.setup)?)
    };
    let mut warmed = Vec::new();
    if let (Some(w), 1) = (&head, a.threads) {
        warmed.push(w.replay(a, &cfg));
    }
    let scratch_cfg = cfg.clone();
    let ct = a.engine.tracker(cfg);
    let mut out: Vec<Verdict> = Vec::with_capacity(a.batch);
    let mut tracked = Bursts::new(setup, a.batch)
        .track(&ct, a.zone, 0, false, &mut out)
        .0;
    let (secs, own) = if a.threads == 1 {
        let timed = Bursts::new(timed, a.batch);
        let start = Instant::now();
        let mut in_engine = Duration::ZERO;
        for r in 0..reps as u64 {
            let (t, d) = timed.track(&ct, a.zone, r * span, a.hot, &mut out);
            tracked += t;
            in_engine += d;
        }
        let secs = if a.hot {
            in_engine.as_secs_f64()
        } else {
            start.elapsed().as_secs_f64()
        };
        (secs, Vec::new())
    } else {
        // Each thread gets the timed frames `Conntrack::queue_of` gives it, in capture order,
        // in memory of its own (see `Ring`), and replays them `--repeat` times.
        let mut parts: Vec<Vec<(Nanos, LinkType, &[u8])>> = vec![Vec::new(); a.threads];
        for &f in timed {
            parts[ct.in_zone(a.zone).queue_of(f.2, f.1, a.threads)].push(f);
        }
        let rings = parts
            .iter()
            .map(|p| Ring::new(&p.iter().map(|f| f.2).collect::<Vec<_>>()))
            .collect::<Result<Vec<Ring>, String>>()?;
        let parts: Vec<Vec<(Nanos, LinkType, &[u8])>> = parts
            .iter()
            .zip(&rings)
            .map(|(p, r)| {
                p.iter()
                    .zip(r.frames())
                    .map(|(&(ts, link, _), f)| (ts, link, f))
                    .collect()
            })
            .collect();
        let bursts: Vec<Bursts> = parts.iter().map(|p| Bursts::new(p, a.batch)).collect();
        let prepare = |_: &Bursts| head.as_ref().map(|w| w.replay(a, &scratch_cfg));
        let (wall, own, ready) = run_threads(&bursts, prepare, |part| {
            let mut out: Vec<Verdict> = Vec::with_capacity(a.batch);
            let (mut tracked, mut in_engine) = (0, Duration::ZERO);
            for r in 0..reps as u64 {
                let (t, d) = part.track(&ct, a.zone, r * span, a.hot, &mut out);
                tracked += t;
                in_engine += d;
            }
            (tracked, a.hot.then_some(in_engine))
        });
        warmed.extend(ready.into_iter().flatten());
        tracked += own.iter().map(|t| t.0).sum::<u64>();
        // Hot, each thread counts its time in the engine: the slowest thread's is the run's.
        let secs = if a.hot {
            own.iter().map(|t| t.1).fold(0.0, f64::max)
        } else {
            wall
        };
        let own: Vec<(usize, f64)> = parts
            .iter()
            .zip(&own)
            .map(|(p, t)| (p.len() * reps, t.1))
            .collect();
        (secs, own)
    };
    let n = (timed.len() * reps) as u64;
    println!(
        "pcap {} setup {} batch {} hot {} threads {}",
        path.display(),
        setup.len(),
        a.batch,
        a.hot,
        a.threads
    );
    print_threads(&own);
    for (i, d) in warmed.iter().enumerate() {
        let thread = if a.threads > 1 {
            format!(" thread {i}")
        } else {
            String::new()
        };
        let k = head.as_ref().map_or(0, |w| w.frames.len());
        let secs = d.as_secs_f64();
        let m = k as f64 / secs / 1e6;
        println!("warm-up{thread} packets {k} seconds {secs:.6} mpps {m:.3}");
    }
    println!("tracked {tracked} of {}", n + setup.len() as u64);
    report(&ct, n, secs);
    bad.map_or(Ok(()), Err)
}

/// A frame of a capture as `bench --pcap` replays it: its time, link type and bytes.
type Frame<'a> = (Nanos, LinkType, &'a [u8]);

/// Packets of a capture that `bench --pcap` first replays into a scratch tracker, untimed
/// by the figure it reports (and at most [`WARM_UP_BYTES`] of frames). A new process meets the
/// engine's code for the first time in its first packets, each cache line of it fetched from
/// memory, and on a short capture that is most of the run: nDPI's 100-packet `ethernetIP.pcap`
/// ran at about 4 to 7 Mpps as a fresh process's first pass and 10 to 19 after a warm-up, on
/// this project's Zen 4 VM. A tracker in a packet path runs with its code in cache. So copies
/// of the capture's first packets (setup and timed alike, cut into bursts the same way) go
/// through a tracker made as the timed one is, which is then dropped; the timed tracker starts
/// from an empty table as before, and each thread of `--threads` warms up on its own. The
/// warm-up's time is printed, `warm-up packets K seconds S mpps M`: the first pass's figure.
/// `--no-warm-up` times the first pass instead.
const WARM_UP: usize = 4096;

/// Bytes of frames the warm-up copies at most.
const WARM_UP_BYTES: usize = 16 << 20;

/// The copies a warm-up replays (see [`WARM_UP`]): in memory of their own (a [`Ring`]), so that
/// the frames the clock times stay in the caches where loading the capture left them.
struct WarmUp {
    ring: Ring,
    /// Each copy's time and link type, in capture order.
    frames: Vec<(Nanos, LinkType)>,
    /// How many of them are setup packets.
    setup: usize,
}

impl WarmUp {
    /// Copies the first packets of `frames`, whose first `setup` are setup packets.
    fn new(frames: &[Frame], setup: usize) -> Result<WarmUp, String> {
        let mut bytes = 0;
        // The first frame always (a record may be larger than the byte bound).
        let head: Vec<&Frame> = frames
            .iter()
            .take(WARM_UP)
            .enumerate()
            .take_while(|(i, f)| {
                bytes += f.2.len();
                *i == 0 || bytes <= WARM_UP_BYTES
            })
            .map(|(_, f)| f)
            .collect();
        Ok(WarmUp {
            ring: Ring::new(&head.iter().map(|f| f.2).collect::<Vec<_>>())?,
            frames: head.iter().map(|f| (f.0, f.1)).collect(),
            setup: setup.min(head.len()),
        })
    }

    /// Replays the copies into a scratch tracker made as `a` says with `cfg`, in bursts as the
    /// bench cuts them (the setup's apart); returns how long that took.
    fn replay(&self, a: &BenchArgs, cfg: &ctrack::Config) -> Duration {
        let copy: Vec<Frame> = self
            .frames
            .iter()
            .zip(self.ring.frames())
            .map(|(&(ts, link), f)| (ts, link, f))
            .collect();
        let (setup, timed) = copy.split_at(self.setup);
        let (setup, timed) = (Bursts::new(setup, a.batch), Bursts::new(timed, a.batch));
        let ct = a.engine.tracker(cfg.clone());
        let mut out: Vec<Verdict> = Vec::with_capacity(a.batch);
        let start = Instant::now();
        setup.track(&ct, a.zone, 0, false, &mut out);
        timed.track(&ct, a.zone, 0, false, &mut out);
        start.elapsed()
    }
}

/// A capture's frames cut into bursts before the clock starts, as the OVS bench cuts its
/// own: the timed loop then only hands each burst to the engine.
struct Bursts<'a> {
    frames: Vec<&'a [u8]>,
    /// Each burst: where its frames end in `frames` (they start where the one before ended),
    /// its link type, and the time it is seen at (its first frame's).
    cuts: Vec<(usize, LinkType, Nanos)>,
}

impl<'a> Bursts<'a> {
    /// Cuts `part` into bursts of up to `batch` frames of one link type.
    fn new(part: &[(Nanos, LinkType, &'a [u8])], batch: usize) -> Self {
        let mut cuts = Vec::with_capacity(part.len().div_ceil(batch.max(1)) + 1);
        let mut i = 0;
        while i < part.len() {
            let (ts, link, _) = part[i];
            let end = i + part[i..]
                .iter()
                .take(batch.max(1))
                .take_while(|f| f.1 == link)
                .count();
            cuts.push((end, link, ts));
            i = end;
        }
        Bursts {
            frames: part.iter().map(|f| f.2).collect(),
            cuts,
        }
    }

    /// Tracks the bursts in conntrack zone `zone`, each seen at its time plus `shift` (a burst
    /// of one keeps every frame's own time); returns how many frames were tracked and, when
    /// `hot`, the time spent in the engine alone, each burst's frames having been read just
    /// before it.
    fn track(
        &self,
        ct: &Conntrack,
        zone: u16,
        shift: Nanos,
        hot: bool,
        out: &mut Vec<Verdict>,
    ) -> (u64, Duration) {
        let mut tracked = 0u64;
        let mut in_engine = Duration::ZERO;
        let mut from = 0;
        for &(end, link, ts) in &self.cuts {
            let burst = &self.frames[from..end];
            from = end;
            if hot {
                warm(burst);
                let t = Instant::now();
                ct.in_zone(zone).process_batch(burst, link, ts + shift, out);
                take_events(ct);
                in_engine += t.elapsed();
            } else {
                ct.in_zone(zone).process_batch(burst, link, ts + shift, out);
                take_events(ct);
            }
            tracked += out.iter().filter(|v| v.tracked()).count() as u64;
        }
        (tracked, in_engine)
    }
}

/// Runs `prepare` then, once every thread has prepared, `work` on each of `parts` in a thread
/// of its own, the threads released together; returns the seconds from their release until
/// the last one ended, each thread's tracked frames and seconds (its own clock from its
/// release, or the engine time `work` returns), and what each `prepare` returned.
fn run_threads<P: Sync, R: Send + Default>(
    parts: &[P],
    prepare: impl Fn(&P) -> R + Sync,
    work: impl Fn(&P) -> (u64, Option<Duration>) + Sync,
) -> (f64, Vec<(u64, f64)>, Vec<R>) {
    // Every thread has prepared at `prepared`; `go` releases them.
    let (prepared, go) = (Barrier::new(parts.len() + 1), Barrier::new(parts.len() + 1));
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                let (prepared, go, prepare, work) = (&prepared, &go, &prepare, &work);
                s.spawn(move || {
                    let ready = prepare(part);
                    prepared.wait();
                    go.wait();
                    let start = Instant::now();
                    let (tracked, in_engine) = work(part);
                    let own = in_engine.unwrap_or_else(|| start.elapsed());
                    ((tracked, own.as_secs_f64()), ready)
                })
            })
            .collect();
        // The clock starts before the workers are released, never after one has begun.
        prepared.wait();
        let start = Instant::now();
        go.wait();
        let (own, ready): (Vec<(u64, f64)>, Vec<R>) = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .unzip();
        (start.elapsed().as_secs_f64(), own, ready)
    })
}

/// Each thread's packets and rate (the total waits for the slowest); nothing for one thread.
fn print_threads(own: &[(usize, f64)]) {
    for (i, &(packets, secs)) in own.iter().enumerate() {
        let m = packets as f64 / secs / 1e6;
        println!("thread {i} packets {packets} seconds {secs:.6} mpps {m:.3}");
    }
}

/// Reads every cache line of the frames.
fn warm(frames: &[&[u8]]) {
    let mut sum = 0u8;
    for f in frames {
        for b in f.iter().step_by(64) {
            sum = sum.wrapping_add(*b);
        }
        sum = sum.wrapping_add(f.last().copied().unwrap_or(0));
    }
    std::hint::black_box(sum);
}

fn bench_workload(a: &BenchArgs, k: WorkloadKind) -> Result<(), String> {
    let mut cfg = a.engine.config()?;
    cfg.in_order_entries = a.in_order_entries;
    cfg.events = a.events;
    let kind = match k {
        WorkloadKind::Est => Kind::Established,
        WorkloadKind::Syn => Kind::Syn,
        WorkloadKind::Udp => Kind::Udp,
        WorkloadKind::Mix => Kind::Mix,
        WorkloadKind::Flood => Kind::Flood,
    };
    // Room for every flow the workload opens unless the caller chose a limit; a flood's table
    // is full once its established flows are open.
    if !a.engine.sets("nf_conntrack_max") {
        let cap = |n: usize| n.clamp(1, i32::MAX as usize) as u32;
        cfg.sysctl.nf_conntrack_max = if kind == Kind::Flood {
            // (The FTP control connection of --expectation is one more established flow.)
            cap(a.flows.saturating_add(usize::from(a.expectation)))
        } else {
            cfg.sysctl
                .nf_conntrack_max
                .max(cap(a.flows.saturating_add(a.packets)))
        };
    }
    let refuse = |e: WorkloadError| match e {
        WorkloadError::NoFlows => "--flows must be at least 1".to_string(),
        WorkloadError::TooManyConnections(n) => format!(
            "--flows {} and --packets {} open {n} connections, more than a workload can \
             number ({MAX_CONNECTIONS})",
            a.flows, a.packets
        ),
        WorkloadError::NoMemory(b) => {
            format!("the workload's packets need {b} bytes of memory, which cannot be allocated")
        }
    };
    let needs =
        Workload::needs(kind, a.flows, a.packets, a.payload, a.expectation).map_err(refuse)?;
    // The threads' copies of the timed packets (see `Ring`: at most a stride each) and the
    // references to them come on top of the workload's own.
    let copies = a.packets as u128 * (needs.stride + 3 * std::mem::size_of::<usize>()) as u128;
    let held = needs.bytes + copies;
    if let Some(total) = physical_memory().filter(|&m| held > m as u128) {
        return Err(format!(
            "the workload's packets and the threads' copies of them need {held} bytes of \
             memory, more than this machine's {total}"
        ));
    }
    let w = Workload::try_new(
        kind,
        a.flows,
        a.packets,
        a.ipv6,
        0x00c0_ffee,
        a.payload,
        a.expectation,
    )
    .map_err(refuse)?;
    if let Some(path) = &a.write_pcap {
        write_pcap(path, &w).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ct = a.engine.tracker(cfg);
    // When the timed packets open connections (SYN flood, mix), the table is sized for the
    // workload before the clock starts, as a deployment sizes its table for its limit: they
    // then find the memory committed (see `Conntrack::reserve`). Other workloads open all
    // their connections in the untimed setup, and grow the table on demand there.
    if !a.no_reserve && matches!(kind, Kind::Syn | Kind::Mix) {
        let max = ct.config().sysctl.nf_conntrack_max as usize;
        let room = if max == 0 { usize::MAX } else { max };
        ct.reserve(w.connections().min(room), a.ipv6)
            .map_err(|e| format!("cannot reserve the table for the workload: {e}"))?;
    }
    let t0: u64 = 1_000_000_000_000;
    let mut out = Vec::with_capacity(a.batch);
    let mut setup: Vec<&[u8]> = Vec::new();
    setup
        .try_reserve_exact(w.setup_len())
        .map_err(|_| no_room(w.setup_len()))?;
    setup.extend((0..w.setup_len()).map(|i| w.packet(i)));
    for chunk in setup.chunks(a.batch) {
        ct.in_zone(a.zone)
            .process_batch(chunk, LinkType::Raw, t0, &mut out);
    }
    if a.expectation {
        let mut pending = 0;
        ct.for_each_expectation(t0, |_| pending += 1);
        if pending == 0 {
            return Err(
                "--expectation: no expectation pending after the setup (assign the FTP helper, \
                 --helper all or --helper ftp:tcp:21, and leave nf_conntrack_max room for it)"
                    .into(),
            );
        }
    }
    // Each thread gets the packets of its flows, in order, steered as `Conntrack::queue_of`
    // advises (like a NIC's receive-side scaling): threads then share no shard; or, with
    // `--steer flow`, by flow alone. Each thread's packets lie in a ring of their own, as in a
    // receive queue's.
    let timed = w.setup_len()..w.setup_len() + w.len();
    let queue = |i: usize| match a.steer {
        Steer::Shard => ct
            .in_zone(a.zone)
            .queue_of(w.packet(i), LinkType::Raw, a.threads),
        Steer::Flow => w.flow(i) as usize % a.threads,
    };
    let mut shares = vec![0usize; a.threads];
    for i in timed.clone() {
        shares[queue(i)] += 1;
    }
    let mut parts: Vec<Vec<&[u8]>> = Vec::with_capacity(a.threads);
    for &share in &shares {
        let mut part = Vec::new();
        part.try_reserve_exact(share).map_err(|_| no_room(share))?;
        parts.push(part);
    }
    for i in timed {
        parts[queue(i)].push(w.packet(i));
    }
    let (n, setup_len) = (w.len() as u64, w.setup_len());
    let rings = parts
        .iter()
        .map(|p| Ring::new(p))
        .collect::<Result<Vec<Ring>, String>>()?;
    drop(parts);
    drop(setup);
    drop(w);
    let parts: Vec<Vec<&[u8]>> = rings.iter().map(Ring::frames).collect();
    let (secs, tracked, _) = run_threads(
        &parts,
        |_| (),
        |part| {
            let mut out: Vec<Verdict> = Vec::with_capacity(a.batch);
            let mut tracked = 0u64;
            for (b, chunk) in part.chunks(a.batch).enumerate() {
                ct.in_zone(a.zone).process_batch(
                    chunk,
                    LinkType::Raw,
                    t0 + 1_000 * b as u64,
                    &mut out,
                );
                take_events(&ct);
                tracked += out.iter().filter(|v| v.tracked()).count() as u64;
            }
            (tracked, None)
        },
    );
    println!(
        "workload {k:?} flows {} threads {} ipv6 {} batch {}",
        a.flows, a.threads, a.ipv6, a.batch
    );
    if a.threads > 1 {
        let own: Vec<(usize, f64)> = parts
            .iter()
            .zip(&tracked)
            .map(|(p, t)| (p.len(), t.1))
            .collect();
        print_threads(&own);
    }
    let tracked: u64 = tracked.iter().map(|t| t.0).sum();
    // The untimed setup packets lead a --write-pcap capture: `bench --pcap --setup` skips them.
    println!("setup {setup_len} timed {n}");
    println!("tracked {tracked} of {n}");
    report(&ct, n, secs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A warm-up copies the first `WARM_UP` frames, or fewer when they would pass
    /// `WARM_UP_BYTES`, and counts as setup only the setup frames among them.
    #[test]
    fn a_warm_up_copies_the_first_frames_within_its_bounds() {
        let small = [7u8; 60];
        let frames: Vec<Frame> = (0..5000u64)
            .map(|i| (i, LinkType::Ethernet, &small[..]))
            .collect();
        let w = WarmUp::new(&frames, 10).unwrap();
        assert_eq!((w.frames.len(), w.setup), (WARM_UP, 10));
        assert_eq!(w.frames[WARM_UP - 1].0, WARM_UP as u64 - 1);
        assert!(w.ring.frames().iter().all(|f| *f == &small[..]));
        let w = WarmUp::new(&frames[..3], 5).unwrap();
        assert_eq!((w.frames.len(), w.setup), (3, 3));
        let big = vec![1u8; 8192];
        let frames: Vec<Frame> = (0..5000u64).map(|i| (i, LinkType::Raw, &big[..])).collect();
        let w = WarmUp::new(&frames, 0).unwrap();
        assert_eq!(w.frames.len(), WARM_UP_BYTES / 8192);
        assert_eq!(w.ring.frames().len(), WARM_UP_BYTES / 8192);
        // A first frame over the byte bound is copied alone.
        let huge = vec![2u8; WARM_UP_BYTES + 1];
        let frames: Vec<Frame> = vec![
            (0, LinkType::Raw, &huge[..]),
            (1, LinkType::Raw, &small[..]),
        ];
        let w = WarmUp::new(&frames, 0).unwrap();
        assert_eq!(w.frames.len(), 1);
    }

    #[test]
    fn bursts_keep_every_frame_in_order_cut_at_the_batch_and_the_link_type() {
        let bytes: Vec<[u8; 1]> = (0..23u8).map(|b| [b]).collect();
        let link = |i: usize| match i {
            5..=6 => LinkType::Ethernet,
            7 => LinkType::Raw,
            8..=14 => LinkType::LinuxSll,
            _ => LinkType::Raw,
        };
        let part: Vec<(Nanos, LinkType, &[u8])> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (100 + i as Nanos, link(i), &b[..]))
            .collect();
        for batch in [1, 2, 3, 4, 32] {
            let b = Bursts::new(&part, batch);
            assert_eq!(b.frames, part.iter().map(|f| f.2).collect::<Vec<_>>());
            let mut from = 0;
            for &(end, l, ts) in &b.cuts {
                assert!(end > from && end - from <= batch, "batch {batch}");
                assert!(part[from..end].iter().all(|f| f.1 == l));
                assert_eq!(ts, part[from].0);
                // A burst ends full, at the end, or where the link type changes.
                assert!(end - from == batch || end == part.len() || part[end].1 != l);
                from = end;
            }
            assert_eq!(from, part.len());
        }
        assert!(Bursts::new(&[], 32).cuts.is_empty());
    }

    #[test]
    fn a_ring_holds_each_frame_whole_from_a_line_start_without_gaps_beyond_the_line() {
        let frames: Vec<Vec<u8>> = [60usize, 1, 64, 65, 1454, 0, 128]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b + i) as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let ring = Ring::new(&refs).unwrap();
        assert_eq!(ring.frames(), refs);
        let room: usize = refs.iter().map(|f| f.len().next_multiple_of(64)).sum();
        assert_eq!(ring.buf.len(), room);
        let base = ring.buf.as_ptr() as usize;
        for f in ring.frames() {
            assert_eq!((f.as_ptr() as usize - base) % 64, 0);
        }
    }
}
