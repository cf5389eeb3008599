//! Herald against librdkafka, same broker, same settings, one invocation.
//!
//! Every client run goes to a fresh worker process (this executable with hidden `--worker`
//! flags) and, unless `--bootstrap-servers` is given, to a fresh broker process
//! (`mock_broker`: librdkafka's mock cluster) with a fresh topic. So the CPU time and memory
//! of one run are those of one client alone: the broker is another process, and no run
//! inherits the heap or the threads of the one before.
//!
//! ```text
//!   bench (orchestrator: progress bar, table, JSON, PNG)
//!     │ per client and mode
//!     ├── spawns mock_broker ──▶ prints bootstrap servers, runs until its stdin closes
//!     └── spawns bench --worker ──▶ warm-up, measured run ──▶ "progress N" / "result {json}"
//!                 │ samples /proc/self/statm every 10 ms (RSS peak), /proc CPU times around
//!                 └ the measured run, hdrhistogram of enqueue → outcome latency
//! ```
//!
//! Clients: `herald-send` (`router.send(Produce)` with a window of outstanding futures),
//! `herald-do-send` (`do_send` with `notify`: outcomes to a collector actor, one message per
//! batch), `herald-reply-to` (`do_send` with `reply_to`: one `Delivered` message per record),
//! `herald-batch`
//! (`ProduceBatch`), `rdkafka-future` (`FutureProducer::send_result`), `rdkafka-base`
//! (`BaseProducer::send`, a delivery-callback context and a polling thread).
//! Modes: `max` (as fast as the client goes) and `rate` (`--rate` records/s, paced by a timer).
//!
//! ```text
//! cargo build --release --examples
//! ./target/release/examples/bench --records 200000 --json /tmp/bench.json --plot /tmp/bench.png
//! ```
//!
//! MB/s counts key + value bytes (10^6 bytes). CPU is user + system time of the worker
//! process over the measured run (the sum of its threads' run time from
//! `/proc/self/task/*/schedstat`, ns resolution; the user/system split comes from
//! `/proc/self/stat`, the same accounting `getrusage(RUSAGE_SELF)` reads). Workspace lints
//! forbid `unsafe`, so `/proc` stands in for `libc::getrusage`.

#[path = "common/payload.rs"]
mod payload;
use payload::payload_template;

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::{ArgAction, Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Herald vs librdkafka: throughput, CPU per record, memory and delivery latency.
#[derive(Debug, Clone, Parser)]
#[command(
    after_help = "Without --bootstrap-servers each run starts its own mock_broker process \
                        (build it with `cargo build --release --examples`)."
)]
struct Args {
    /// Brokers to use instead of starting mock_broker; the topic must exist or be auto-created.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic (default: a fresh topic per run).
    #[arg(long)]
    topic: Option<String>,
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Key size in bytes; 0 = no key (sticky partitioning).
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// compression.type: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    /// Partitions of the topic (when the benchmark creates it).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// enable.idempotence (`--idempotence false` to turn off).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    idempotence: bool,
    /// Offered rate of the `rate` mode, records/s (0 skips that mode).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Modes to run, in order: max (full speed), rate (`--rate`).
    #[arg(long, value_delimiter = ',', default_value = "max,rate")]
    modes: Vec<Mode>,
    /// Clients to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "herald-send,herald-do-send,herald-reply-to,herald-batch,rdkafka-future,rdkafka-base"
    )]
    clients: Vec<Api>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and latency as a PNG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Brokers of the mock cluster.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// buffer.memory of Herald; librdkafka gets the same as queue.buffering.max.kbytes.
    #[arg(long, default_value_t = 32 << 20)]
    buffer_memory: usize,
    /// Records outstanding at most (herald send/do_send/batch, rdkafka future).
    #[arg(long, default_value_t = 10_000)]
    window: usize,
    /// Records per ProduceBatch (herald-batch, full speed).
    #[arg(long, default_value_t = 1_000)]
    batch_records: usize,
    /// Records sent and acknowledged before measuring (connections, metadata, producer id).
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// TrueType font for the chart; without it the chart has no text.
    #[arg(long, default_value = DEFAULT_FONT)]
    font: PathBuf,
    #[arg(long, hide = true)]
    worker: Option<Api>,
    #[arg(long, hide = true, default_value = "max")]
    worker_mode: Mode,
    #[arg(long, hide = true)]
    worker_bootstrap: Option<String>,
    #[arg(long, hide = true)]
    worker_topic: Option<String>,
    #[arg(long, hide = true)]
    worker_owned_broker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Max,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    HeraldSend,
    HeraldDoSend,
    HeraldReplyTo,
    HeraldBatch,
    RdkafkaFuture,
    RdkafkaBase,
}

impl Api {
    fn client(self) -> &'static str {
        match self {
            Api::HeraldSend | Api::HeraldDoSend | Api::HeraldReplyTo | Api::HeraldBatch => "herald",
            Api::RdkafkaFuture | Api::RdkafkaBase => "rdkafka",
        }
    }

    fn api(self) -> &'static str {
        match self {
            Api::HeraldSend => "send",
            Api::HeraldDoSend => "do_send",
            Api::HeraldReplyTo => "reply_to",
            Api::HeraldBatch => "batch",
            Api::RdkafkaFuture => "future",
            Api::RdkafkaBase => "base",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Api::HeraldSend => "herald-send",
            Api::HeraldDoSend => "herald-do-send",
            Api::HeraldReplyTo => "herald-reply-to",
            Api::HeraldBatch => "herald-batch",
            Api::RdkafkaFuture => "rdkafka-future",
            Api::RdkafkaBase => "rdkafka-base",
        }
    }
}

/// The settings of a run, as both clients got them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    bootstrap: String,
    records: u64,
    record_size: usize,
    key_size: usize,
    acks: String,
    compression: String,
    linger_ms: u64,
    batch_size: usize,
    partitions: i32,
    idempotence: bool,
    buffer_memory: usize,
    max_in_flight: u32,
    window: usize,
    batch_records: usize,
    warmup: u64,
    rate: u64,
}

impl Settings {
    fn of(args: &Args) -> Settings {
        Settings {
            bootstrap: match &args.bootstrap_servers {
                Some(b) => b.clone(),
                None => format!("mock_broker ({} brokers, own process)", args.brokers),
            },
            records: args.records,
            record_size: args.record_size,
            key_size: args.key_size,
            acks: args.acks.clone(),
            compression: args.compression.clone(),
            linger_ms: args.linger_ms,
            batch_size: args.batch_size,
            partitions: args.partitions,
            idempotence: args.idempotence,
            buffer_memory: args.buffer_memory,
            max_in_flight: MAX_IN_FLIGHT,
            window: args.window,
            batch_records: args.batch_records,
            warmup: args.warmup,
            rate: args.rate,
        }
    }
}

/// In-flight requests per connection for both clients (the idempotent maximum).
const MAX_IN_FLIGHT: u32 = 5;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

/// One client run, as the worker reports it and the JSON holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    client: String,
    api: String,
    mode: Mode,
    offered_rate: Option<u64>,
    records: u64,
    elapsed_s: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    cpu_s: f64,
    cpu_user_s: f64,
    cpu_sys_s: f64,
    cpu_ns_per_record: f64,
    /// CPU seconds per wall-clock second: the cores the client kept busy.
    cpu_cores: f64,
    /// Peak RSS during the run minus RSS before the client was created.
    peak_rss_bytes: u64,
    baseline_rss_bytes: u64,
    /// VmHWM of the worker process (lifetime peak, baseline included).
    vm_hwm_bytes: u64,
    latency_ms: Latency,
    partitions_written: usize,
    /// Each partition's offsets form one gap-free range holding exactly this run's records.
    offsets_verified: bool,
    client_metrics: Option<serde_json::Value>,
    settings: Settings,
}

impl RunResult {
    fn label(&self) -> String {
        format!("{}-{}", self.client, self.api.replace('_', "-"))
    }
}

fn main() {
    let args = Args::parse();
    let outcome = match args.worker {
        Some(api) => worker::main(&args, api),
        None => orchestrate(&args),
    };
    if let Err(e) = outcome {
        eprintln!("bench: error: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Orchestrator
// ---------------------------------------------------------------------------------------------

/// The mock cluster in its own process; stopped by closing its stdin.
struct BrokerProcess {
    child: Child,
    bootstrap: String,
}

impl BrokerProcess {
    fn start(exe: &Path, brokers: i32, topic: &str, partitions: i32) -> Result<BrokerProcess> {
        let mut child = Command::new(exe)
            .args(["--brokers", &brokers.to_string(), "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("mock_broker stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let bootstrap = line.trim().to_string();
        if bootstrap.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("mock_broker exited without printing its bootstrap servers".into());
        }
        Ok(BrokerProcess { child, bootstrap })
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn orchestrate(args: &Args) -> Result<()> {
    validate(args)?;
    let exe = std::env::current_exe()?;
    let broker_exe = exe.with_file_name("mock_broker");
    if args.bootstrap_servers.is_none() && !broker_exe.exists() {
        return Err(format!(
            "{} not found; build it with `cargo build --release --examples` (or pass --bootstrap-servers)",
            broker_exe.display()
        )
        .into());
    }
    let modes: Vec<Mode> = args
        .modes
        .iter()
        .copied()
        .filter(|m| *m == Mode::Max || args.rate > 0)
        .collect();
    let plan: Vec<(Mode, Api)> = modes
        .iter()
        .flat_map(|m| args.clients.iter().map(move |c| (*m, *c)))
        .collect();
    if plan.is_empty() {
        return Err("nothing to run (check --modes, --clients and --rate)".into());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let total = args.records * plan.len() as u64;
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {human_pos}/{human_len} records {msg}",
        )?
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));

    let mut results = Vec::new();
    for (i, (mode, api)) in plan.iter().enumerate() {
        let done_before = args.records * i as u64;
        pb.set_position(done_before);
        pb.set_message(format!("{} {}", api.flag(), mode_label(*mode, args.rate)));
        let topic = match &args.topic {
            Some(t) if args.bootstrap_servers.is_some() => t.clone(),
            Some(t) => format!("{t}-{}-{:?}", api.flag(), mode).to_lowercase(),
            None => format!("herald-bench-{}-{:?}-{stamp}", api.flag(), mode).to_lowercase(),
        };
        let broker = match &args.bootstrap_servers {
            Some(_) => None,
            None => Some(BrokerProcess::start(
                &broker_exe,
                args.brokers,
                &topic,
                args.partitions,
            )?),
        };
        let bootstrap = match (&broker, &args.bootstrap_servers) {
            (Some(b), _) => b.bootstrap.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => unreachable!("one of them is set"),
        };
        let mut cmd = Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .args(["--worker", api.flag(), "--worker-mode"])
            .arg(format!("{mode:?}").to_lowercase())
            .args(["--worker-bootstrap", &bootstrap, "--worker-topic", &topic]);
        if broker.is_some() {
            cmd.arg("--worker-owned-broker");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        let mut result = None;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(n) = line.strip_prefix("progress ") {
                if let Ok(n) = n.parse::<u64>() {
                    pb.set_position(done_before + n.min(args.records));
                }
            } else if let Some(json) = line.strip_prefix("result ") {
                result = Some(serde_json::from_str::<RunResult>(json)?);
            }
        }
        let status = child.wait()?;
        drop(broker);
        match result {
            Some(r) if status.success() => results.push(r),
            _ => {
                pb.abandon_with_message(format!(
                    "{} {} failed",
                    api.flag(),
                    mode_label(*mode, args.rate)
                ));
                return Err(
                    format!("worker for {} ({:?}) failed: {status}", api.flag(), mode).into(),
                );
            }
        }
    }
    pb.finish_and_clear();

    let settings = Settings::of(args);
    let ratios = ratios(&results);
    print_report(&settings, &results, &ratios);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "settings": settings,
            "runs": results,
            "ratios": ratios_json(&ratios),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("\nJSON written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &args.font, &settings, &results).map_err(|e| format!("plot: {e}"))?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

fn validate(args: &Args) -> Result<()> {
    if args.records == 0 {
        return Err("--records must be at least 1".into());
    }
    if args.window == 0 || args.batch_records == 0 {
        return Err("--window and --batch-records must be at least 1".into());
    }
    if args.partitions < 1 || args.brokers < 1 {
        return Err("--partitions and --brokers must be at least 1".into());
    }
    if !["all", "-1", "1", "0"].contains(&args.acks.as_str()) {
        return Err(format!("--acks {}: use all, 1 or 0", args.acks).into());
    }
    if args.idempotence && !["all", "-1"].contains(&args.acks.as_str()) {
        return Err("idempotence needs --acks all (or pass --idempotence false)".into());
    }
    if herald::compression::Compression::from_name(&args.compression).is_none() {
        return Err(format!(
            "--compression {}: use none, gzip, snappy, lz4 or zstd",
            args.compression
        )
        .into());
    }
    Ok(())
}

fn mode_label(mode: Mode, rate: u64) -> String {
    match mode {
        Mode::Max => "max".to_string(),
        Mode::Rate => format!("rate {rate}/s"),
    }
}

/// Herald / librdkafka for one pair of APIs in one mode.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    #[serde(skip)]
    mode: Mode,
    #[serde(skip)]
    pair: String,
    records_per_sec: f64,
    cpu_ns_per_record: f64,
    peak_rss_bytes: f64,
    latency_p50: f64,
    latency_p99: f64,
    latency_p999: f64,
}

/// Herald / librdkafka for every pair of APIs, per mode, in the order the runs were made.
fn ratios(results: &[RunResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for mode in [Mode::Max, Mode::Rate] {
        let of = |client: &str| -> Vec<&RunResult> {
            results
                .iter()
                .filter(|r| r.mode == mode && r.client == client)
                .collect()
        };
        for h in of("herald") {
            for k in of("rdkafka") {
                let q = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
                out.push(Ratio {
                    mode,
                    pair: format!("{}/{}", h.api, k.api),
                    records_per_sec: q(h.records_per_sec, k.records_per_sec),
                    cpu_ns_per_record: q(h.cpu_ns_per_record, k.cpu_ns_per_record),
                    peak_rss_bytes: q(h.peak_rss_bytes as f64, k.peak_rss_bytes as f64),
                    latency_p50: q(h.latency_ms.p50, k.latency_ms.p50),
                    latency_p99: q(h.latency_ms.p99, k.latency_ms.p99),
                    latency_p999: q(h.latency_ms.p999, k.latency_ms.p999),
                });
            }
        }
    }
    out
}

/// `{"max": {"send/future": {...}, ...}, "rate": {...}}`
fn ratios_json(ratios: &[Ratio]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in ratios {
        let mode = out
            .entry(format!("{:?}", r.mode).to_lowercase())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(m) = mode.as_object_mut() {
            m.insert(r.pair.clone(), serde_json::to_value(r).unwrap_or_default());
        }
    }
    serde_json::Value::Object(out)
}

fn print_report(s: &Settings, results: &[RunResult], ratios: &[Ratio]) {
    let key = if s.key_size == 0 {
        "no key".to_string()
    } else {
        format!("{} B keys", s.key_size)
    };
    println!(
        "Herald vs librdkafka: {} records of {} B ({key}), acks={}, linger.ms={}, batch.size={}, \
         compression={}, idempotence={}, {} partitions, buffer {} MiB, broker: {}",
        s.records,
        s.record_size,
        s.acks,
        s.linger_ms,
        s.batch_size,
        s.compression,
        s.idempotence,
        s.partitions,
        s.buffer_memory >> 20,
        s.bootstrap
    );
    println!();
    println!(
        "{:<13} {:<15} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "mode",
        "client",
        "rec/s",
        "MB/s",
        "cpu ns",
        "cores",
        "RSS+",
        "VmHWM",
        "p50",
        "p99",
        "p99.9",
        "max"
    );
    println!(
        "{:<13} {:<15} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "", "", "", "", "/record", "used", "MiB", "MiB", "ms", "ms", "ms", "ms"
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for r in results {
        println!(
            "{:<13} {:<15} {:>10.0} {:>7.1} {:>8.0} {:>6.2} {:>7.1} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            mode_label(r.mode, s.rate),
            r.label(),
            r.records_per_sec,
            r.mb_per_sec,
            r.cpu_ns_per_record,
            r.cpu_cores,
            mib(r.peak_rss_bytes),
            mib(r.vm_hwm_bytes),
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            r.latency_ms.max
        );
    }
    if ratios.is_empty() {
        return;
    }
    println!();
    println!(
        "Herald / librdkafka (rec/s above 1: Herald faster; cpu, RSS+, latency below 1: Herald better)"
    );
    println!(
        "{:<13} {:<15} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "mode", "herald/rdkafka", "rec/s", "cpu/rec", "RSS+", "p50", "p99", "p99.9"
    );
    for r in ratios {
        println!(
            "{:<13} {:<15} {:>7.2} {:>8.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            mode_label(r.mode, s.rate),
            r.pair,
            r.records_per_sec,
            r.cpu_ns_per_record,
            r.peak_rss_bytes,
            r.latency_p50,
            r.latency_p99,
            r.latency_p999
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring: CPU, RSS, latency, delivery checks (worker side)
// ---------------------------------------------------------------------------------------------

/// CPU time of this process so far.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// Sum of every live thread's time on CPU, ns.
    sched_ns: u64,
    /// utime and stime in clock ticks (dead threads included).
    user_ticks: u64,
    sys_ticks: u64,
}

fn cpu_now() -> Cpu {
    let (mut user_ticks, mut sys_ticks) = (0, 0);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields after the command: state(3) ... utime(14) stime(15).
            user_ticks = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            sys_ticks = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut sched_ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Cpu {
        sched_ns,
        user_ticks,
        sys_ticks,
    }
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Wall and CPU time of the measured part of a run.
#[derive(Debug)]
struct Meter {
    start: Instant,
    cpu: Cpu,
}

#[derive(Debug, Clone, Copy)]
struct Metered {
    elapsed: Duration,
    cpu_s: f64,
    user_s: f64,
    sys_s: f64,
}

impl Meter {
    fn start() -> Meter {
        let cpu = cpu_now();
        Meter {
            start: Instant::now(),
            cpu,
        }
    }

    fn stop(self) -> Metered {
        let elapsed = self.start.elapsed();
        let end = cpu_now();
        let hz = clock_ticks_per_sec();
        let user_s = end.user_ticks.saturating_sub(self.cpu.user_ticks) as f64 / hz;
        let sys_s = end.sys_ticks.saturating_sub(self.cpu.sys_ticks) as f64 / hz;
        let sched_s = end.sched_ns.saturating_sub(self.cpu.sched_ns) as f64 / 1e9;
        // schedstat has ns resolution but misses threads that exited meanwhile; the tick
        // counts have 1/hz resolution and miss nothing.
        let cpu_s = if self.cpu.sched_ns == 0 || user_s + sys_s > sched_s + 3.0 / hz {
            user_s + sys_s
        } else {
            sched_s
        };
        Metered {
            elapsed,
            cpu_s,
            user_s,
            sys_s,
        }
    }
}

/// A `Name: N kB` field of a /proc file, in bytes.
fn proc_kb_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix(field))?;
    v.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

fn page_size() -> u64 {
    proc_kb_field("/proc/self/smaps", "KernelPageSize:").unwrap_or(4096)
}

fn rss_bytes(page: u64) -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

fn vm_hwm_bytes() -> u64 {
    proc_kb_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Samples RSS every 10 ms and reports progress every 100 ms on stdout.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(progress: Arc<AtomicU64>) -> Sampler {
        let page = page_size();
        let peak = Arc::new(AtomicU64::new(rss_bytes(page)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut tick = 0u64;
                let mut last = u64::MAX;
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(rss_bytes(page), Ordering::Relaxed);
                    tick += 1;
                    let done = progress.load(Ordering::Relaxed);
                    if tick % 10 == 0 && done != last {
                        last = done;
                        println!("progress {done}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn sampler thread");
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the peak RSS seen.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak
            .load(Ordering::Relaxed)
            .max(rss_bytes(page_size()))
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    min: i64,
    max: i64,
    count: u64,
}

/// Outcomes of the measured records: latency histogram (µs), counts, offsets per partition.
struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    partitions: Vec<Option<Span>>,
    progress: Arc<AtomicU64>,
}

impl Stats {
    fn new(progress: Arc<AtomicU64>) -> Stats {
        Stats {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            ok: 0,
            partitions: Vec::new(),
            progress,
        }
    }

    /// One record acknowledged `latency` after it was enqueued.
    fn record(&mut self, latency: Duration, partition: i32, offset: i64) {
        self.hist
            .saturating_record((latency.as_micros() as u64).max(1));
        self.ok += 1;
        let p = partition.max(0) as usize;
        if p >= self.partitions.len() {
            self.partitions.resize(p + 1, None);
        }
        let span = self.partitions[p].get_or_insert(Span {
            min: i64::MAX,
            max: i64::MIN,
            count: 0,
        });
        span.min = span.min.min(offset);
        span.max = span.max.max(offset);
        span.count += 1;
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Every record has exactly one successful outcome; with acks, each partition's offsets of
    /// this run form one gap-free range (nothing lost, nothing written twice).
    fn verify(&self, n: u64, acks0: bool) -> Result<bool> {
        if self.ok != n {
            return Err(format!("{} of {n} records acknowledged", self.ok).into());
        }
        if acks0 {
            return Ok(false);
        }
        for (p, span) in self.partitions.iter().enumerate() {
            if let Some(s) = span {
                if s.min < 0 || (s.max - s.min + 1) as u64 != s.count {
                    return Err(format!(
                        "partition {p}: {} records acknowledged at offsets {}..={}: lost or duplicated records",
                        s.count, s.min, s.max
                    )
                    .into());
                }
            }
        }
        Ok(true)
    }

    fn latency(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(self.hist.value_at_quantile(0.50)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
            mean: self.hist.mean() / 1000.0,
        }
    }
}

/// When records are due: all at once (max) or `rate` per second from `start`.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    start: Instant,
    rate: Option<f64>,
    n: u64,
}

impl Pacer {
    fn new(rate: Option<f64>, n: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            n,
        }
    }

    /// Records `0..due` may be sent now.
    fn due(&self) -> u64 {
        match self.rate {
            None => self.n,
            Some(r) => ((self.start.elapsed().as_secs_f64() * r) as u64 + 1).min(self.n),
        }
    }

    /// When record `next` is due, but at least 1 ms from now: the timer's tick, so both
    /// clients send the same bursts (tokio's timer has 1 ms resolution anyway).
    fn wake_at(&self, next: u64) -> Instant {
        let at = match self.rate {
            None => self.start,
            Some(r) => self.start + Duration::from_secs_f64(next as f64 / r),
        };
        at.max(Instant::now() + Duration::from_millis(1))
    }
}

/// Wakes an async sending loop every millisecond of the `rate` mode. tokio's timer fires up to
/// about 2 ms late on a runtime with little else to do (millisecond ticks, and the poller
/// rounds its wait up again), and how late depended on how often the client under test woke
/// that runtime: the offered bursts came every 1.1 ms for one client and every 2.3 ms for
/// another. A thread that sleeps with the kernel's resolution paces every client alike (the
/// BaseProducer loop sleeps the same way on its own thread).
struct Ticker {
    notify: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Ticks while the pacer has a rate; none for full speed.
    fn start(pacer: &Pacer) -> Option<Ticker> {
        pacer.rate?;
        let notify = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (n, st) = (notify.clone(), stop.clone());
        let start = pacer.start;
        let thread = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                let mut k = 1u32;
                while !st.load(Ordering::Relaxed) {
                    let at = start + Duration::from_millis(1) * k;
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    n.notify_one();
                    k += 1;
                }
            })
            .expect("pacer thread");
        Some(Ticker {
            notify,
            stop,
            thread: Some(thread),
        })
    }

    /// The next tick (at once if one passed since the last call); never, without a ticker.
    async fn tick(ticker: &Option<Ticker>) {
        match ticker {
            Some(t) => t.notify.notified().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Key and value bytes of record `i`: values are windows into a text-like buffer (so
/// compression has something realistic to do), keys are `i`'s little-endian bytes repeated.
struct Payload {
    template: Vec<u8>,
    record_size: usize,
    key_size: usize,
}

impl Payload {
    fn new(record_size: usize, key_size: usize) -> Payload {
        Payload {
            template: payload_template(256 * 1024 + record_size + 1),
            record_size,
            key_size,
        }
    }

    fn value(&self, i: u64) -> &[u8] {
        let span = self.template.len() - self.record_size;
        let off = (i as usize).wrapping_mul(7919) % span;
        &self.template[off..off + self.record_size]
    }

    /// Writes the key of record `i` into `buf` (key_size long); `None` without keys.
    fn key<'a>(&self, i: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.key_size == 0 {
            return None;
        }
        let b = i.to_le_bytes();
        for (j, k) in buf[..self.key_size].iter_mut().enumerate() {
            *k = b[j % 8];
        }
        Some(&buf[..self.key_size])
    }

    fn bytes_per_record(&self) -> usize {
        self.record_size + self.key_size
    }
}

// ---------------------------------------------------------------------------------------------
// Worker: one client, one mode, one process
// ---------------------------------------------------------------------------------------------

mod worker {
    use super::*;

    /// What one run needs to know.
    pub(crate) struct RunCtx<'a> {
        pub(crate) args: &'a Args,
        pub(crate) bootstrap: &'a str,
        pub(crate) topic: &'static str,
        pub(crate) payload: &'a Payload,
        pub(crate) rate: Option<f64>,
        pub(crate) progress: Arc<AtomicU64>,
    }

    /// What a client run hands back.
    pub(crate) struct Measured {
        pub(crate) metered: Metered,
        pub(crate) stats: Stats,
        pub(crate) client_metrics: Option<serde_json::Value>,
    }

    pub(crate) fn main(args: &Args, api: Api) -> Result<()> {
        let bootstrap = args
            .worker_bootstrap
            .clone()
            .ok_or("--worker needs --worker-bootstrap")?;
        let topic: &'static str = Box::leak(
            args.worker_topic
                .clone()
                .ok_or("--worker needs --worker-topic")?
                .into_boxed_str(),
        );
        let payload = Payload::new(args.record_size, args.key_size);
        let progress = Arc::new(AtomicU64::new(0));
        let baseline = rss_bytes(page_size());
        let sampler = Sampler::start(progress.clone());
        let mode = args.worker_mode;
        let rate = match mode {
            Mode::Max => None,
            Mode::Rate => Some(args.rate as f64),
        };
        let ctx = RunCtx {
            args,
            bootstrap: &bootstrap,
            topic,
            payload: &payload,
            rate,
            progress,
        };
        let measured = match api {
            Api::HeraldSend | Api::HeraldDoSend | Api::HeraldReplyTo | Api::HeraldBatch => {
                herald_client::run(&ctx, api)?
            }
            Api::RdkafkaFuture => rdkafka_client::run_future(&ctx)?,
            Api::RdkafkaBase => rdkafka_client::run_base(&ctx)?,
        };
        let peak = sampler.stop();
        let acks0 = args.acks == "0";
        let offsets_verified = measured.stats.verify(args.records, acks0)?;
        if args.worker_owned_broker && !acks0 && !offsets_verified {
            return Err("offsets could not be verified".into());
        }
        let m = measured.metered;
        let secs = m.elapsed.as_secs_f64();
        let n = args.records;
        let result = RunResult {
            client: api.client().into(),
            api: api.api().into(),
            mode,
            offered_rate: rate.map(|r| r as u64),
            records: n,
            elapsed_s: secs,
            records_per_sec: n as f64 / secs,
            mb_per_sec: (n as f64 * payload.bytes_per_record() as f64) / secs / 1e6,
            cpu_s: m.cpu_s,
            cpu_user_s: m.user_s,
            cpu_sys_s: m.sys_s,
            cpu_ns_per_record: m.cpu_s * 1e9 / n as f64,
            cpu_cores: m.cpu_s / secs,
            peak_rss_bytes: peak.saturating_sub(baseline),
            baseline_rss_bytes: baseline,
            vm_hwm_bytes: vm_hwm_bytes(),
            latency_ms: measured.stats.latency(),
            partitions_written: measured.stats.partitions.iter().flatten().count(),
            offsets_verified,
            client_metrics: measured.client_metrics,
            settings: Settings::of(args),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "result {}", serde_json::to_string(&result)?)?;
        out.flush()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Herald through the actor API
// ---------------------------------------------------------------------------------------------

mod herald_client {
    use std::cell::RefCell;
    use std::rc::Rc;

    use actix::prelude::*;
    use bytes::Bytes;
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use herald_actors::{
        Delivered, Deliveries, Notifier, Outcome, Produce, ProduceBatch, Producer, Router,
    };

    use super::worker::{Measured, RunCtx};
    use super::*;

    pub(crate) fn run(ctx: &RunCtx<'_>, api: Api) -> Result<Measured> {
        actix::System::new().block_on(run_in_system(ctx, api))
    }

    fn produce(ctx: &RunCtx<'_>, i: u64, key_buf: &mut [u8]) -> Produce {
        // Owned buffers per record, as a serializer hands them over.
        let mut p = Produce::new(ctx.topic).value(Bytes::copy_from_slice(ctx.payload.value(i)));
        if let Some(k) = ctx.payload.key(i, key_buf) {
            p = p.key(Bytes::copy_from_slice(k));
        }
        p
    }

    fn check(outcome: Outcome, what: &str) -> Result<herald::RecordMetadata> {
        outcome.map_err(|e| format!("herald: {what} failed: {e}").into())
    }

    async fn run_in_system(ctx: &RunCtx<'_>, api: Api) -> Result<Measured> {
        let a = ctx.args;
        let pairs = [
            ("bootstrap.servers", ctx.bootstrap.to_string()),
            ("acks", a.acks.clone()),
            ("linger.ms", a.linger_ms.to_string()),
            ("batch.size", a.batch_size.to_string()),
            ("compression.type", a.compression.clone()),
            ("enable.idempotence", a.idempotence.to_string()),
            ("buffer.memory", a.buffer_memory.to_string()),
            (
                "max.in.flight.requests.per.connection",
                MAX_IN_FLIGHT.to_string(),
            ),
        ];
        let producer = Producer::from_pairs(pairs).map_err(|e| format!("herald config: {e}"))?;
        let router = producer.router().clone();
        let mut key_buf = vec![0u8; a.key_size];

        // Warm-up: metadata, connections, producer id, every partition's accumulator.
        let warm: Vec<Produce> = (0..a.warmup)
            .map(|i| produce(ctx, u64::MAX - i, &mut key_buf))
            .collect();
        for o in router.send(ProduceBatch(warm)).await? {
            check(o, "warm-up record")?;
        }

        let mut stats = Stats::new(ctx.progress.clone());
        let meter = Meter::start();
        let pacer = Pacer::new(ctx.rate, a.records);
        match api {
            Api::HeraldSend => send(ctx, &router, pacer, &mut stats).await?,
            Api::HeraldDoSend => stats = do_send(ctx, &router, pacer, stats, true).await?,
            Api::HeraldReplyTo => stats = do_send(ctx, &router, pacer, stats, false).await?,
            Api::HeraldBatch => batch(ctx, &router, pacer, &mut stats).await?,
            _ => unreachable!("not a herald client"),
        }
        let metered = meter.stop();

        let m = producer.metrics().await;
        let expected = a.records + a.warmup;
        if m.record_error_total != 0 || m.record_send_total != expected {
            return Err(format!(
                "herald metrics: {} sent, {} errors; expected {expected} sent",
                m.record_send_total, m.record_error_total
            )
            .into());
        }
        let client_metrics = serde_json::json!({
            "batch_size_avg": m.batch_size_avg,
            "records_per_request_avg": m.records_per_request_avg,
            "request_total": m.request_total,
            "request_latency_avg_ms": m.request_latency_avg,
            "compression_rate_avg": m.compression_rate_avg,
        });
        if !producer.close(Duration::from_secs(30)).await {
            return Err("herald: close did not flush everything".into());
        }
        Ok(Measured {
            metered,
            stats,
            client_metrics: Some(client_metrics),
        })
    }

    /// `router.send()` per record, at most `window` futures outstanding in a
    /// `FuturesUnordered` polled by this task. A spawned task per record measured about half
    /// the throughput (a task allocation and a scheduler round per record); the outcomes
    /// arrive on actix's own reply channel either way.
    async fn send(
        ctx: &RunCtx<'_>,
        router: &Addr<Router>,
        pacer: Pacer,
        stats: &mut Stats,
    ) -> Result<()> {
        let ticker = Ticker::start(&pacer);
        let window = ctx.args.window;
        let mut key_buf = vec![0u8; ctx.args.key_size];
        let mut inflight = FuturesUnordered::new();
        let mut next = 0u64;
        loop {
            let due = pacer.due();
            while next < due && inflight.len() < window {
                let t0 = Instant::now();
                let req = router.send(produce(ctx, next, &mut key_buf));
                inflight.push(async move { (t0, req.await) });
                next += 1;
            }
            if next == pacer.n && inflight.is_empty() {
                return Ok(());
            }
            let paced = next < pacer.n && inflight.len() < window;
            tokio::select! {
                biased;
                Some((t0, r)) = inflight.next() => {
                    let md = check(r.map_err(|e| format!("herald: mailbox: {e}"))?, "record")?;
                    stats.record(t0.elapsed(), md.partition, md.offset);
                }
                _ = Ticker::tick(&ticker), if paced => {}
            }
        }
    }

    struct DoSendState {
        stats: Stats,
        /// `(record, enqueued)` of each outstanding record; the record's tag is its slot.
        slots: Vec<Option<(u64, Instant)>>,
        free: Vec<usize>,
        done: u64,
        error: Option<String>,
    }

    /// Receives the outcomes of `do_send` records: one `Deliveries` message per batch
    /// (`notify`) or one `Delivered` per record (`reply_to`).
    struct Collector {
        state: Rc<RefCell<DoSendState>>,
        wake: Rc<tokio::sync::Notify>,
    }

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl DoSendState {
        fn take(&mut self, d: Delivered) {
            let slot = self.slots.get_mut(d.tag as usize).and_then(Option::take);
            if slot.is_some() {
                self.free.push(d.tag as usize);
            }
            match (slot, d.outcome) {
                (Some((_, t0)), Ok(md)) => {
                    self.stats.record(t0.elapsed(), md.partition, md.offset);
                }
                (_, Err(e)) => {
                    self.error
                        .get_or_insert_with(|| format!("herald: record {} failed: {e}", d.tag));
                }
                (None, Ok(md)) => {
                    self.error.get_or_insert_with(|| {
                        format!(
                            "herald: unexpected or repeated outcome ({md:?}), tag {}",
                            d.tag
                        )
                    });
                }
            }
            self.done += 1;
        }
    }

    impl Handler<Deliveries> for Collector {
        type Result = ();

        fn handle(&mut self, batch: Deliveries, _: &mut Context<Self>) {
            let mut s = self.state.borrow_mut();
            for d in batch.0 {
                s.take(d);
            }
            drop(s);
            self.wake.notify_one();
        }
    }

    impl Handler<Delivered> for Collector {
        type Result = ();

        fn handle(&mut self, d: Delivered, _: &mut Context<Self>) {
            self.state.borrow_mut().take(d);
            self.wake.notify_one();
        }
    }

    /// `do_send` with `notify` (`batched`: a `Notifier` of a collector actor) or `reply_to`
    /// (the collector's `Recipient<Delivered>`), and a tag; the tag is a slot of a table of
    /// `window` slots that holds the enqueue time (outcomes come back out of order across
    /// partitions, so slots are recycled through a free list). `do_send` ignores mailbox
    /// capacity, so the window is the backpressure.
    async fn do_send(
        ctx: &RunCtx<'_>,
        router: &Addr<Router>,
        pacer: Pacer,
        stats: Stats,
        batched: bool,
    ) -> Result<Stats> {
        let ticker = Ticker::start(&pacer);
        let window = ctx.args.window;
        let mut key_buf = vec![0u8; ctx.args.key_size];
        let state = Rc::new(RefCell::new(DoSendState {
            stats,
            slots: vec![None; window],
            free: (0..window).rev().collect(),
            done: 0,
            error: None,
        }));
        let wake = Rc::new(tokio::sync::Notify::new());
        let collector = Collector {
            state: state.clone(),
            wake: wake.clone(),
        }
        .start();
        let notifier = Notifier::new(collector.clone().recipient::<Deliveries>());
        let recipient = collector.recipient::<Delivered>();
        let mut next = 0u64;
        loop {
            let due = pacer.due();
            let done = {
                let mut s = state.borrow_mut();
                if let Some(e) = s.error.take() {
                    return Err(e.into());
                }
                while next < due && next - s.done < window as u64 {
                    let slot = s.free.pop().expect("a free slot while under the window");
                    s.slots[slot] = Some((next, Instant::now()));
                    let p = produce(ctx, next, &mut key_buf).tag(slot as u64);
                    router.do_send(if batched {
                        p.notify(notifier.clone())
                    } else {
                        p.reply_to(recipient.clone())
                    });
                    next += 1;
                }
                s.done
            };
            if done == pacer.n {
                break;
            }
            let paced = next < pacer.n && next - done < window as u64;
            tokio::select! {
                biased;
                _ = wake.notified() => {}
                _ = Ticker::tick(&ticker), if paced => {}
            }
        }
        let mut s = state.borrow_mut();
        if let Some(e) = s.error.take() {
            return Err(e.into());
        }
        Ok(std::mem::replace(
            &mut s.stats,
            Stats::new(ctx.progress.clone()),
        ))
    }

    /// `ProduceBatch` of `batch_records` records (full speed) or of the records due at each
    /// timer tick (rate), at most `window` records outstanding.
    async fn batch(
        ctx: &RunCtx<'_>,
        router: &Addr<Router>,
        pacer: Pacer,
        stats: &mut Stats,
    ) -> Result<()> {
        let ticker = Ticker::start(&pacer);
        let window = ctx.args.window as u64;
        let per_batch = ctx.args.batch_records as u64;
        let mut key_buf = vec![0u8; ctx.args.key_size];
        let mut inflight = FuturesUnordered::new();
        let mut outstanding = 0u64;
        let mut next = 0u64;
        loop {
            let due = pacer.due();
            while next < due
                && (outstanding == 0 || outstanding + (due - next).min(per_batch) <= window)
            {
                let k = (due - next).min(per_batch);
                let records: Vec<Produce> = (next..next + k)
                    .map(|i| produce(ctx, i, &mut key_buf))
                    .collect();
                let t0 = Instant::now();
                let req = router.send(ProduceBatch(records));
                inflight.push(async move { (t0, req.await) });
                next += k;
                outstanding += k;
            }
            if next == pacer.n && inflight.is_empty() {
                return Ok(());
            }
            let paced = next < pacer.n && outstanding < window;
            tokio::select! {
                biased;
                Some((t0, r)) = inflight.next() => {
                    let outcomes = r.map_err(|e| format!("herald: mailbox: {e}"))?;
                    let latency = t0.elapsed();
                    outstanding -= outcomes.len() as u64;
                    for o in outcomes {
                        let md = check(o, "record")?;
                        stats.record(latency, md.partition, md.offset);
                    }
                }
                _ = Ticker::tick(&ticker), if paced => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// librdkafka through the rdkafka crate
// ---------------------------------------------------------------------------------------------

mod rdkafka_client {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use rdkafka::config::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::message::{DeliveryResult, Message};
    use rdkafka::producer::{
        BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext,
    };
    use rdkafka::ClientContext;

    use super::worker::{Measured, RunCtx};
    use super::*;

    fn config(ctx: &RunCtx<'_>) -> ClientConfig {
        let a = ctx.args;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", ctx.bootstrap)
            .set("acks", &a.acks)
            .set("linger.ms", a.linger_ms.to_string())
            .set("batch.size", a.batch_size.to_string())
            .set("compression.type", &a.compression)
            .set("enable.idempotence", a.idempotence.to_string())
            .set("partitioner", "murmur2_random")
            .set(
                "max.in.flight.requests.per.connection",
                MAX_IN_FLIGHT.to_string(),
            )
            // The same memory budget as Herald's buffer.memory; the message count never binds.
            .set(
                "queue.buffering.max.kbytes",
                (a.buffer_memory / 1024).max(1).to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                (a.records + a.warmup)
                    .clamp(100_000, i32::MAX as u64)
                    .to_string(),
            );
        c
    }

    fn is_queue_full(e: &KafkaError) -> bool {
        matches!(
            e,
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        )
    }

    /// `FutureProducer::send_result` per record, at most `window` futures outstanding; on
    /// QueueFull wait for an outcome (or 1 ms) and retry. Latency counts from the first try.
    pub(crate) fn run_future(ctx: &RunCtx<'_>) -> Result<Measured> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let a = ctx.args;
            let producer: FutureProducer = config(ctx).create()?;
            let mut key_buf = vec![0u8; a.key_size];
            let send = |i: u64, key_buf: &mut [u8]| {
                let mut r = FutureRecord::<[u8], [u8]>::to(ctx.topic).payload(ctx.payload.value(i));
                let key = ctx.payload.key(i, key_buf);
                if let Some(k) = key {
                    r = r.key(k);
                }
                producer.send_result(r).map_err(|(e, _)| e)
            };

            let mut warm = Vec::new();
            for i in 0..a.warmup {
                loop {
                    match send(u64::MAX - i, &mut key_buf) {
                        Ok(f) => break warm.push(f),
                        Err(e) if is_queue_full(&e) => {
                            tokio::time::sleep(Duration::from_millis(1)).await
                        }
                        Err(e) => return Err(format!("rdkafka: warm-up send: {e}").into()),
                    }
                }
            }
            for f in warm {
                f.await?
                    .map_err(|(e, _)| format!("rdkafka: warm-up record failed: {e}"))?;
            }

            let mut stats = Stats::new(ctx.progress.clone());
            let meter = Meter::start();
            let pacer = Pacer::new(ctx.rate, a.records);
            let ticker = Ticker::start(&pacer);
            let window = a.window;
            let mut inflight = FuturesUnordered::new();
            let mut next = 0u64;
            let mut first_try: Option<Instant> = None;
            loop {
                let due = pacer.due();
                let mut queue_full = false;
                while next < due && inflight.len() < window {
                    let t0 = *first_try.get_or_insert_with(Instant::now);
                    match send(next, &mut key_buf) {
                        Ok(f) => {
                            first_try = None;
                            inflight.push(async move { (t0, f.await) });
                            next += 1;
                        }
                        Err(e) if is_queue_full(&e) => {
                            queue_full = true;
                            break;
                        }
                        Err(e) => return Err(format!("rdkafka: send record {next}: {e}").into()),
                    }
                }
                if next == pacer.n && inflight.is_empty() {
                    break;
                }
                let paced = next < pacer.n && inflight.len() < window && !queue_full;
                tokio::select! {
                    biased;
                    Some((t0, r)) = inflight.next() => {
                        let d = r
                            .map_err(|_| "rdkafka: delivery future canceled")?
                            .map_err(|(e, _)| format!("rdkafka: record failed: {e}"))?;
                        stats.record(t0.elapsed(), d.partition, d.offset);
                    }
                    _ = Ticker::tick(&ticker), if paced => {}
                    _ = tokio::time::sleep(Duration::from_millis(1)), if queue_full => {}
                }
            }
            let metered = meter.stop();
            producer.flush(Duration::from_secs(30))?;
            Ok(Measured {
                metered,
                stats,
                client_metrics: None,
            })
        })
    }

    struct BaseState {
        stats: Stats,
        warm_ok: u64,
        error: Option<String>,
    }

    /// Delivery callback context of the BaseProducer: records latency and offsets. The opaque
    /// is the enqueue time in ns since `start` plus one; 0 marks a warm-up record.
    struct BaseCtx {
        start: Instant,
        state: Mutex<BaseState>,
        changed: Condvar,
        warm_target: u64,
        target: u64,
    }

    impl ClientContext for BaseCtx {}

    impl ProducerContext for BaseCtx {
        type DeliveryOpaque = usize;

        fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
            let now = self.start.elapsed().as_nanos() as u64;
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(m) if opaque == 0 => {
                    let _ = m;
                    s.warm_ok += 1;
                }
                Ok(m) => {
                    let latency = Duration::from_nanos(now.saturating_sub(opaque as u64 - 1));
                    s.stats.record(latency, m.partition(), m.offset());
                }
                Err((e, _)) => {
                    s.error
                        .get_or_insert_with(|| format!("rdkafka: record failed: {e}"));
                }
            }
            if s.error.is_some() || s.warm_ok == self.warm_target || s.stats.ok == self.target {
                self.changed.notify_all();
            }
        }
    }

    /// `BaseProducer::send` from this thread, delivery callbacks served by a polling thread;
    /// on QueueFull poll for 1 ms and retry. Latency counts from the first try.
    pub(crate) fn run_base(ctx: &RunCtx<'_>) -> Result<Measured> {
        let a = ctx.args;
        let context = BaseCtx {
            start: Instant::now(),
            state: Mutex::new(BaseState {
                stats: Stats::new(ctx.progress.clone()),
                warm_ok: 0,
                error: None,
            }),
            changed: Condvar::new(),
            warm_target: a.warmup,
            target: a.records,
        };
        let producer: Arc<BaseProducer<BaseCtx>> =
            Arc::new(config(ctx).create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (p, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rdkafka-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        p.poll(Duration::from_millis(100));
                    }
                })?
        };
        let mut key_buf = vec![0u8; a.key_size];
        let send = |i: u64, opaque: usize, key_buf: &mut [u8]| -> Result<()> {
            loop {
                let mut r = BaseRecord::<[u8], [u8], usize>::with_opaque_to(ctx.topic, opaque)
                    .payload(ctx.payload.value(i));
                let key = ctx.payload.key(i, key_buf);
                if let Some(k) = key {
                    r = r.key(k);
                }
                match producer.send(r) {
                    Ok(()) => return Ok(()),
                    Err((e, _)) if is_queue_full(&e) => producer.poll(Duration::from_millis(1)),
                    Err((e, _)) => return Err(format!("rdkafka: send record: {e}").into()),
                }
            }
        };
        let wait_until = |done: &dyn Fn(&BaseState) -> bool| -> Result<()> {
            let ctx = producer.context();
            let mut s = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
            while !done(&s) && s.error.is_none() {
                s = ctx.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            match s.error.take() {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        };

        for i in 0..a.warmup {
            send(u64::MAX - i, 0, &mut key_buf)?;
        }
        wait_until(&|s| s.warm_ok == a.warmup)?;

        let start = producer.context().start;
        let meter = Meter::start();
        let pacer = Pacer::new(ctx.rate, a.records);
        let mut next = 0u64;
        while next < pacer.n {
            let due = pacer.due();
            while next < due {
                send(next, start.elapsed().as_nanos() as usize + 1, &mut key_buf)?;
                next += 1;
            }
            if next < pacer.n {
                std::thread::sleep(
                    pacer
                        .wake_at(next)
                        .saturating_duration_since(Instant::now()),
                );
                if let Some(e) = producer
                    .context()
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .error
                    .take()
                {
                    return Err(e.into());
                }
            }
        }
        wait_until(&|s| s.stats.ok == a.records)?;
        let metered = meter.stop();

        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        producer.flush(Duration::from_secs(30))?;
        let stats = {
            let mut s = producer
                .context()
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut s.stats, Stats::new(ctx.progress.clone()))
        };
        Ok(Measured {
            metered,
            stats,
            client_metrics: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Chart
// ---------------------------------------------------------------------------------------------

mod plot {
    use plotters::coord::types::RangedCoordf64;
    use plotters::coord::Shift;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    use super::*;

    const HERALD: RGBColor = RGBColor(0xE0, 0x6C, 0x1F);
    const RDKAFKA: RGBColor = RGBColor(0x2B, 0x6C, 0xB0);
    const PCT: [(&str, RGBColor); 3] = [
        ("p50", RGBColor(0x7F, 0xB8, 0x00)),
        ("p99", RGBColor(0xF0, 0xA2, 0x02)),
        ("p99.9", RGBColor(0xC0, 0x39, 0x2B)),
    ];

    type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

    /// Registers the font; `false` (draw no text) when it cannot be read.
    fn load_font(path: &Path) -> bool {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            }
            Err(_) => false,
        }
    }

    pub(crate) fn draw(path: &Path, font: &Path, s: &Settings, runs: &[RunResult]) -> Result<()> {
        let text = load_font(font);
        if !text {
            eprintln!(
                "bench: font {} unavailable; the chart has no text",
                font.display()
            );
        }
        let root = BitMapBackend::new(path, (1800, 760)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = if text {
            let (title, body) = root.split_vertically(56);
            let key = if s.key_size == 0 {
                "no key".into()
            } else {
                format!("{} B key", s.key_size)
            };
            title.draw(&Text::new(
                format!(
                    "Herald vs librdkafka: {} records of {} B, {key}, acks={}, linger.ms={}, batch.size={}, \
                     compression={}, idempotence={}, {} partitions",
                    s.records, s.record_size, s.acks, s.linger_ms, s.batch_size, s.compression, s.idempotence, s.partitions
                ),
                (900, 30),
                ("sans-serif", 22).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            body
        } else {
            root.clone()
        };
        let max: Vec<&RunResult> = runs.iter().filter(|r| r.mode == Mode::Max).collect();
        let rate: Vec<&RunResult> = runs.iter().filter(|r| r.mode == Mode::Rate).collect();
        let mut lat: Vec<(String, &[&RunResult])> = Vec::new();
        if !max.is_empty() {
            lat.push(("Latency at full speed (ms, log scale)".into(), &max));
        }
        if !rate.is_empty() {
            lat.push((
                format!("Latency at {} records/s (ms, log scale)", s.rate),
                &rate,
            ));
        }
        // Throughput takes 28% of the width, the latency panels share the rest.
        let w = body.dim_in_pixel().0 as i32;
        let tw = if lat.is_empty() { w } else { w * 28 / 100 };
        let breaks: Vec<i32> = (0..lat.len())
            .map(|i| tw + (w - tw) * i as i32 / lat.len() as i32)
            .collect();
        let panels = body.split_by_breakpoints(breaks, Vec::<i32>::new());
        let tput = if max.is_empty() { &rate } else { &max };
        throughput(&root, &panels[0], tput, text)?;
        for (i, (title, runs)) in lat.iter().enumerate() {
            latency(&root, &panels[i + 1], title, runs, text)?;
        }
        root.present()?;
        Ok(())
    }

    /// Client names under the x axis, on two lines.
    fn x_names(
        root: &Area<'_>,
        at: impl Fn(usize) -> (i32, i32),
        runs: &[&RunResult],
    ) -> Result<()> {
        let style = ("sans-serif", 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (i, r) in runs.iter().enumerate() {
            let (x, y) = at(i);
            root.draw(&Text::new(r.client.clone(), (x, y + 8), style.clone()))?;
            root.draw(&Text::new(r.api.clone(), (x, y + 26), style.clone()))?;
        }
        Ok(())
    }

    fn color(r: &RunResult) -> RGBColor {
        if r.client == "herald" {
            HERALD
        } else {
            RDKAFKA
        }
    }

    fn throughput(root: &Area<'_>, area: &Area<'_>, runs: &[&RunResult], text: bool) -> Result<()> {
        let n = runs.len().max(1) as f64;
        let top = runs.iter().map(|r| r.records_per_sec).fold(1.0, f64::max) * 1.15;
        let mut b = ChartBuilder::on(area);
        b.margin(18)
            .x_label_area_size(if text { 50 } else { 5 })
            .y_label_area_size(if text { 70 } else { 5 });
        if text {
            let title = match runs.first().map(|r| r.mode) {
                Some(Mode::Rate) => "Throughput at the offered rate (records/s)",
                _ => "Throughput at full speed (records/s)",
            };
            b.caption(title, ("sans-serif", 20));
        }
        let mut chart = b.build_cartesian_2d(0f64..n, 0f64..top)?;
        if text {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_label_formatter(&|v| si(*v))
                .y_label_style(("sans-serif", 14))
                .draw()?;
        } else {
            axes(&mut chart, n, 0.0, top)?;
        }
        chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, r.records_per_sec)],
                color(r).filled(),
            )
        }))?;
        if text {
            let label = ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                Text::new(
                    si(r.records_per_sec),
                    (i as f64 + 0.5, r.records_per_sec * 1.01),
                    label.clone(),
                )
            }))?;
            x_names(root, |i| chart.backend_coord(&(i as f64 + 0.5, 0.0)), runs)?;
        }
        Ok(())
    }

    fn latency(
        root: &Area<'_>,
        area: &Area<'_>,
        title: &str,
        runs: &[&RunResult],
        text: bool,
    ) -> Result<()> {
        let n = runs.len().max(1) as f64;
        let values = |r: &RunResult| [r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.p999];
        let all: Vec<f64> = runs
            .iter()
            .flat_map(|r| values(r))
            .filter(|v| *v > 0.0)
            .collect();
        let top = all.iter().copied().fold(1.0, f64::max) * 2.0;
        let bottom = (all.iter().copied().fold(f64::INFINITY, f64::min) / 2.0).clamp(0.001, 1.0);
        let mut b = ChartBuilder::on(area);
        b.margin(18)
            .x_label_area_size(if text { 50 } else { 5 })
            .y_label_area_size(if text { 70 } else { 5 });
        if text {
            b.caption(title, ("sans-serif", 20));
        }
        let mut chart = b.build_cartesian_2d(0f64..n, (bottom..top).log_scale())?;
        if text {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_label_formatter(&|v| format!("{v}"))
                .y_label_style(("sans-serif", 14))
                .draw()?;
        } else {
            axes(&mut chart, n, bottom, top)?;
        }
        let width = 0.22;
        for (j, (name, c)) in PCT.iter().enumerate() {
            let series = chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                let x = i as f64 + 0.17 + j as f64 * width;
                let v = values(r)[j].max(bottom);
                Rectangle::new([(x, bottom), (x + width * 0.9, v)], c.filled())
            }))?;
            if text {
                series.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled())
                });
            }
        }
        if text {
            let label = ("sans-serif", 10)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            for j in 0..PCT.len() {
                chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                    let x = i as f64 + 0.17 + j as f64 * width + width * 0.45;
                    let v = values(r)[j].max(bottom);
                    Text::new(short(v), (x, v * 1.05), label.clone())
                }))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
            x_names(
                root,
                |i| chart.backend_coord(&(i as f64 + 0.5, bottom)),
                runs,
            )?;
        }
        Ok(())
    }

    /// The two axes as plain lines: a mesh draws labels, which need a font.
    fn axes<Y>(
        chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
        n: f64,
        bottom: f64,
        top: f64,
    ) -> Result<()>
    where
        Y: Ranged<ValueType = f64>,
    {
        chart.draw_series([
            PathElement::new(vec![(0.0, bottom), (n, bottom)], BLACK),
            PathElement::new(vec![(0.0, bottom), (0.0, top)], BLACK),
        ])?;
        Ok(())
    }

    fn si(v: f64) -> String {
        if v >= 1e6 {
            format!("{:.2}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.0}k", v / 1e3)
        } else {
            format!("{v:.0}")
        }
    }

    fn short(v: f64) -> String {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    }
}
