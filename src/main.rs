//! The `ctrack` command: replay captures through the engine, benchmark it.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ctrack::{Config, Conntrack, HostModel, capture};

mod bench;

#[derive(Parser)]
#[command(
    name = "ctrack",
    version,
    about = "Userspace Linux-conntrack engine: replay and benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a capture through the tracker and print its decisions like the kernel oracle.
    ///
    /// Like the oracle, layer-4 checksums are not checked unless
    /// `--sysctl nf_conntrack_checksum=1` is given.
    Replay(ReplayArgs),
    /// Time the engine alone on a capture held in memory, or on a generated workload.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Host {
    /// The kernel oracle's host: a router with no addresses (multicast it has not joined
    /// and martian sources never confirm an entry).
    Router,
    /// Every accepted first packet confirms its entry.
    ConfirmAll,
}

/// Options shared by every command that builds a tracker.
#[derive(Args, Clone, Debug)]
pub struct EngineArgs {
    /// Assign helpers: `all`, or NAME:PROTO:PORT (e.g. ftp:tcp:21). Repeatable.
    #[arg(long = "helper", value_name = "all|NAME:PROTO:PORT")]
    helpers: Vec<String>,
    /// Set a sysctl, NAME=VALUE, with or without `net.netfilter.`. Repeatable.
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    sysctls: Vec<String>,
    /// Give the connections whose first packet matches a timeout policy, as nftables' `ct
    /// timeout set` does: PROTO[:PORT]:STATE=SECONDS,... (e.g. udp:53:unreplied=5,replied=10;
    /// PROTO tcp or udp, PORT the destination port, states by nft's names). Repeatable: the
    /// last rule that matches wins. Its states not named take Linux's defaults, not --sysctl's.
    #[arg(long = "timeout-policy", value_name = "PROTO[:PORT]:STATE=SECS,...")]
    timeout_rules: Vec<String>,
    /// What the host around the tracker confirms.
    #[arg(long, value_enum, default_value = "router")]
    host: Host,
    /// Lock shards per address family (rounded up to a power of two, 1 to 1024).
    #[arg(long, default_value_t = ctrack::Config::default().shards)]
    shards: usize,
    /// Fix the table's hash seed, so that runs print the same bytes (the order of events
    /// of entries that time out together, the `--stats` count of entries timed out but not
    /// yet reaped). Without it each run draws a random seed, as the kernel does.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

impl EngineArgs {
    /// True when a `--sysctl` sets `name` (with or without `net.netfilter.`).
    pub fn sets(&self, name: &str) -> bool {
        self.sysctls.iter().any(|s| {
            let n = s.split('=').next().unwrap_or("").trim();
            n.strip_prefix("net.netfilter.").unwrap_or(n) == name
        })
    }

    /// Builds the configuration, or a one-line error.
    pub fn config(&self) -> Result<Config, String> {
        let mut cfg = Config::default();
        for s in &self.sysctls {
            cfg.set_sysctl(s).map_err(|e| e.to_string())?;
        }
        cfg.helpers = ctrack_helpers::parse_assignments(self.helpers.iter().map(String::as_str))
            .map_err(|e| e.to_string())?;
        for r in &self.timeout_rules {
            cfg.add_timeout_rule(r).map_err(|e| e.to_string())?;
        }
        if self.shards == 0 || self.shards > ctrack::MAX_SHARDS {
            return Err(format!(
                "--shards must be 1 to {}, not {}",
                ctrack::MAX_SHARDS,
                self.shards
            ));
        }
        cfg.shards = self.shards;
        cfg.host = match self.host {
            Host::Router => HostModel::Router,
            Host::ConfirmAll => HostModel::ConfirmAll,
        };
        Ok(cfg)
    }

    /// A tracker for `cfg`, with the `--seed` given or a random one.
    pub fn tracker(&self, cfg: Config) -> Conntrack {
        match self.seed {
            Some(seed) => Conntrack::with_seed(cfg, seed),
            None => Conntrack::new(cfg),
        }
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// A pcap or pcapng capture; `-` reads it from standard input.
    file: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// Print `<index> <verdict>` for every packet.
    #[arg(long)]
    verdicts: bool,
    /// Print the table left at the time of the last packet, as `# table` lines.
    #[arg(long)]
    table: bool,
    /// Print pending expectations as `# expect` lines.
    #[arg(long)]
    expect: bool,
    /// Print counters like `conntrack -S` as a `# stats` line.
    #[arg(long)]
    stats: bool,
    /// Print the events each packet causes after its verdict: those of expectations as
    /// `conntrack -E expect` prints them, in `# expect-event` lines, then those of
    /// connections as `conntrack -E` prints them, in `# event` lines; those of entries and
    /// expectations found expired after the last packet come last.
    #[arg(long)]
    events: bool,
}

fn replay(a: &ReplayArgs) -> Result<(), String> {
    let mut cfg = a.engine.config()?;
    if !a.engine.sets("nf_conntrack_checksum") {
        // The kernel oracle replays with layer-4 checksums unchecked (captures taken where
        // checksums are offloaded carry unfinished ones); `replay` models the same host.
        cfg.set_sysctl("nf_conntrack_checksum=0")
            .map_err(|e| e.to_string())?;
    }
    if a.events {
        // Taken after every packet: the queue never holds more than one packet's events.
        cfg.events = 1 << 16;
    }
    let ct = a.engine.tracker(cfg);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut line = String::new();
    // Each packet at the time a replay meets it (see `Capture::packets_monotonic`).
    let mut last = 0;
    let mut i = 0usize;
    let mut track = |ts: u64, link, frame: &[u8], out: &mut BufWriter<_>| {
        last = ts.max(last);
        let v = ct.process(frame, link, last);
        if a.verdicts {
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(line, "{i} ");
            let _ = v.write_line(&mut line);
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(io_err)?;
        }
        i += 1;
        if a.events {
            write_events(out, &ct)?;
        }
        Ok::<_, String>(())
    };
    // Read a record at a time, in one pass: memory stays that of one record whatever the
    // capture's size. A bad record ends the replay there, as tcpdump's reading does: what came
    // before it is tracked and printed (and the table as it then stands), and the problem is
    // the one-line error the replay then fails with. A classic pcap record that the file ends
    // inside is tracked first as the bytes it holds, as the kernel oracle's reader sends it.
    let stopped = if a.file.as_os_str() == "-" {
        let r = capture::CaptureReader::new(io::stdin().lock()).map_err(|p| problem(&a.file, p))?;
        feed(r, &a.file, |ts, link, frame| {
            track(ts, link, frame, &mut out)
        })?
    } else {
        let r = capture::open(&a.file).map_err(|e| e.to_string())?;
        feed(r, &a.file, |ts, link, frame| {
            track(ts, link, frame, &mut out)
        })?
    };
    if a.table {
        let mut lines = Vec::new();
        ct.for_each_entry(last, |e| lines.push(e.proc_line()));
        lines.sort();
        for l in lines {
            writeln!(out, "# table {l}").map_err(io_err)?;
        }
    }
    if a.expect {
        let mut lines = Vec::new();
        ct.for_each_expectation(last, |l| lines.push(l));
        lines.sort();
        for l in lines {
            writeln!(out, "# expect {l}").map_err(io_err)?;
        }
    }
    if a.stats {
        writeln!(out, "# stats {}", ct.stats()).map_err(io_err)?;
    }
    if a.events {
        ct.expire(last);
        write_events(&mut out, &ct)?;
    }
    out.flush().map_err(io_err)?;
    stopped.map_or(Ok(()), Err)
}

/// Hands every packet of `r` to `track`, in file order. `Ok(Some(error))` when a bad record
/// stopped the reading (after a classic pcap record cut short by the file's end went to
/// `track` as the bytes it holds); `Err` when `track` failed.
fn feed<R: Read>(
    mut r: capture::CaptureReader<R>,
    path: &std::path::Path,
    mut track: impl FnMut(u64, ctrack::LinkType, &[u8]) -> Result<(), String>,
) -> Result<Option<String>, String> {
    loop {
        match r.next_packet() {
            Ok(Some((ts, link, frame))) => track(ts, link, frame)?,
            Ok(None) => return Ok(None),
            Err(p) => {
                if let Some((ts, link, frame)) = r.cut_short() {
                    track(ts, link, frame)?;
                }
                return Ok(Some(problem(path, p)));
            }
        }
    }
}

/// Reads a capture into memory, the file at `path` or standard input for `-`, as far as it can
/// be read (as a replay reads it, see [`capture::parse_prefix`]), with the one-line problem
/// that stopped the reading, if any.
pub fn load_capture(path: &std::path::Path) -> Result<(capture::Capture, Option<String>), String> {
    if path.as_os_str() != "-" {
        let (cap, bad) = capture::load_prefix(path).map_err(|e| e.to_string())?;
        return Ok((cap, bad.map(|e| e.to_string())));
    }
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("-: reading standard input: {e}"))?;
    let (cap, bad) = capture::parse_prefix(bytes).map_err(|p| problem(path, p))?;
    Ok((cap, bad.map(|p| problem(path, p))))
}

/// The one-line refusal of a capture with a problem.
fn problem(path: &std::path::Path, problem: capture::Problem) -> String {
    capture::CaptureError {
        path: path.to_path_buf(),
        problem,
    }
    .to_string()
}

fn write_events(out: &mut impl Write, ct: &Conntrack) -> Result<(), String> {
    for e in ct.expect_events() {
        writeln!(out, "# expect-event {}", e.line()).map_err(io_err)?;
    }
    for e in ct.events() {
        writeln!(out, "# event {}", e.line()).map_err(io_err)?;
    }
    Ok(())
}

fn io_err(e: io::Error) -> String {
    format!("writing output: {e}")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's message without its usage block.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("ctrack: {msg} (see ctrack --help)");
            return ExitCode::from(2);
        }
    };
    let r = match &cli.cmd {
        Cmd::Replay(a) => replay(a),
        Cmd::Bench(b) => bench::run(b),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctrack: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine flags reach the configuration (the shard count is invisible in the output).
    #[test]
    fn engine_flags_set_the_configuration() {
        let cli = Cli::try_parse_from(["ctrack", "replay", "x.pcap", "--shards", "4"]).unwrap();
        let Cmd::Replay(r) = cli.cmd else {
            panic!("not replay");
        };
        assert_eq!(r.engine.config().unwrap().shards, 4);
    }
}
