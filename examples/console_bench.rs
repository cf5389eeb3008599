//! `console_producer` against kcat, whole process against whole process: both read the same
//! file of keyed lines on stdin and produce it with the same settings to a fresh librdkafka
//! mock cluster (`mock_broker`, in a process of its own) per run. Runs alternate between the
//! two (and swap which goes first every round); the medians of wall time and CPU (user +
//! system, of the producer's process alone) and their ratios are printed at the end.
//!
//! ```text
//! apt-get install kcat
//! cargo build --release --example console_producer --example mock_broker --example console_bench
//! ./target/release/examples/console_bench            # 1,000,000 lines of 100 bytes, 5 rounds
//! ```
//!
//! Both are run as
//! `-b BOOTSTRAP -t TOPIC -K : -X acks=all -X enable.idempotence=true -X linger.ms=5`
//! (kcat with `-P` in front), plus whatever `--herald-x` / `--kcat-x` add.
//!
//! CPU comes from this process's `cutime` and `cstime` in `/proc/self/stat` (the CPU of
//! reaped children, in 10 ms ticks) read around each producer's wait: the broker is reaped
//! only after the producer, so it is not counted.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "common/mock_broker_process.rs"]
mod mock_broker_process;
use mock_broker_process::MockBrokerProcess;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Parser)]
#[command(about = "Herald's console_producer against kcat -P, whole process")]
struct Args {
    /// Lines to produce.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per line, key and separator included, newline excluded.
    #[arg(long, default_value_t = 100)]
    line_size: usize,
    /// Rounds; each runs both producers once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Brokers of the mock cluster.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The kcat binary.
    #[arg(long, default_value = "kcat")]
    kcat: String,
    /// An extra `-X key=value` for console_producer only (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    herald_x: Vec<String>,
    /// An extra `-X key=value` for kcat only (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    kcat_x: Vec<String>,
    /// The console_producer binary (default: the one beside this one).
    #[arg(long)]
    console_producer: Option<PathBuf>,
    /// The input file; generated there (in the temp directory if not given) unless it exists.
    #[arg(long)]
    input: Option<PathBuf>,
}

/// The settings both producers get.
const COMMON: [&str; 8] = [
    "-K",
    ":",
    "-X",
    "acks=all",
    "-X",
    "enable.idempotence=true",
    "-X",
    "linger.ms=5",
];

const TOPIC: &str = "console-bench";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Kcat,
    Herald,
}

/// One producer run.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn main() {
    if let Err(e) = run(&Args::parse()) {
        eprintln!("console_bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let broker_exe = exe.with_file_name("mock_broker");
    let herald_exe = args
        .console_producer
        .clone()
        .unwrap_or_else(|| exe.with_file_name("console_producer"));
    for p in [&broker_exe, &herald_exe] {
        if !p.exists() {
            return Err(format!(
                "{} not found; build it with `cargo build --release --example console_producer \
                 --example mock_broker`",
                p.display()
            )
            .into());
        }
    }
    let input = args.input.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "herald-console-bench-{}x{}.txt",
            args.records, args.line_size
        ))
    });
    if !input.exists() {
        generate(&input, args.records, args.line_size)?;
    }
    println!(
        "input: {} ({} lines of {} bytes), {} broker(s), {} partitions, {} rounds",
        input.display(),
        args.records,
        args.line_size,
        args.brokers,
        args.partitions,
        args.rounds
    );

    let mut kcat = Vec::new();
    let mut herald = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Client::Kcat, Client::Herald]
        } else {
            [Client::Herald, Client::Kcat]
        };
        for client in order {
            let r = run_once(args, client, &herald_exe, &broker_exe, &input)?;
            println!(
                "round {}: {:<6} wall {:>6.3} s  cpu {:>6.3} s",
                round + 1,
                format!("{client:?}").to_lowercase(),
                r.wall.as_secs_f64(),
                r.cpu.as_secs_f64()
            );
            match client {
                Client::Kcat => kcat.push(r),
                Client::Herald => herald.push(r),
            }
        }
    }

    let med = |runs: &[Run], f: fn(&Run) -> Duration| median(runs.iter().map(f).collect());
    let (kw, kc) = (med(&kcat, |r| r.wall), med(&kcat, |r| r.cpu));
    let (hw, hc) = (med(&herald, |r| r.wall), med(&herald, |r| r.cpu));
    println!();
    println!("medians of {} runs each:", args.rounds);
    println!(
        "  kcat             wall {:.3} s  cpu {:.3} s",
        kw.as_secs_f64(),
        kc.as_secs_f64()
    );
    println!(
        "  console_producer wall {:.3} s  cpu {:.3} s",
        hw.as_secs_f64(),
        hc.as_secs_f64()
    );
    let wall_ratio = hw.as_secs_f64() / kw.as_secs_f64();
    let cpu_ratio = hc.as_secs_f64() / kc.as_secs_f64();
    println!("  herald / kcat    wall {wall_ratio:.2}x  cpu {cpu_ratio:.2}x  (target: wall <= 0.67x, cpu <= 0.50x)");
    Ok(())
}

/// Writes `records` lines `key-N:vvv...` of `line_size` bytes each (newline excluded).
fn generate(path: &Path, records: u64, line_size: usize) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = Vec::with_capacity(line_size + 1);
    for i in 0..records {
        line.clear();
        write!(line, "key-{i}:")?;
        let value_len = line_size.saturating_sub(line.len());
        line.extend((0..value_len).map(|j| b'a' + ((i as usize + j) % 26) as u8));
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}

/// A fresh mock cluster, one producer run on it, the cluster stopped.
fn run_once(
    args: &Args,
    client: Client,
    herald_exe: &Path,
    broker_exe: &Path,
    input: &Path,
) -> Result<Run> {
    let broker = MockBrokerProcess::start(broker_exe, args.brokers, TOPIC, args.partitions)
        .map_err(|e| e.to_string())?;
    let mut cmd = match client {
        Client::Kcat => {
            let mut c = Command::new(&args.kcat);
            c.arg("-P");
            c
        }
        Client::Herald => Command::new(herald_exe),
    };
    cmd.args(["-b", &broker.bootstrap, "-t", TOPIC])
        .args(COMMON);
    let extra = match client {
        Client::Kcat => &args.kcat_x,
        Client::Herald => &args.herald_x,
    };
    for x in extra {
        cmd.args(["-X", x]);
    }
    cmd.stdin(std::fs::File::open(input)?)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());

    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let output = child.wait_with_output()?;
    let wall = started.elapsed();
    let cpu = children_cpu()?.saturating_sub(cpu_before);
    drop(broker);

    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{client:?} failed ({}): {stderr}", output.status).into());
    }
    if client == Client::Herald {
        let summary: serde_json::Value =
            serde_json::from_str(stderr.lines().last().unwrap_or_default())?;
        if summary["delivered"].as_u64() != Some(args.records) {
            return Err(format!("console_producer did not deliver every line: {summary}").into());
        }
    } else if !stderr.trim().is_empty() {
        return Err(format!("kcat reported: {stderr}").into());
    }
    Ok(Run { wall, cpu })
}

/// CPU time of this process's reaped children: `cutime + cstime` of `/proc/self/stat`, in
/// clock ticks of 10 ms (USER_HZ is 100 on Linux).
fn children_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start with field 3, the state.
    let after = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |field: usize| -> Result<u64> {
        Ok(fields
            .get(field - 3)
            .ok_or("short /proc/self/stat")?
            .parse()?)
    };
    Ok(Duration::from_millis((ticks(16)? + ticks(17)?) * 10))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
