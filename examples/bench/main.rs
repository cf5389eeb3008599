//! Herald against librdkafka and the Java producer, same broker, same settings, one
//! invocation.
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
//! `herald-producer-send` (`Producer::send(Produce)`, the same window),
//! `herald-do-send` (`Producer::do_send` with `notify`: outcomes to a collector actor, one
//! message per batch), `herald-router-do-send` (the same through `router().do_send`, one
//! actix message per record), `herald-reply-to` (`Producer::do_send` with `reply_to`: one
//! `Delivered` message per record),
//! `herald-batch`
//! (`ProduceBatch`), `herald-batch-tally` (`ProduceBatchTally`: a count and the failed records
//! per call, no outcome per record; the records are checked in the log), `rdkafka-future` (`FutureProducer::send_result`), `rdkafka-base`
//! (`BaseProducer::send`, a delivery-callback context and a polling thread).
//! Modes: `max` (as fast as the client goes), `rate` (`--rate` records/s, paced by a timer),
//! and `console` (`console_producer` against `kcat -P`, whole process against whole process,
//! `--console-rounds` rounds of `--records` keyed lines of `--record-size` bytes; kcat needed).
//! `--runs N` repeats the max and rate modes in N rounds, each running every client once in
//! turn, and reports medians (ratios pair the runs of one round).
//! `--txn-records N` makes the runs transactional (herald-batch and rdkafka-future): every N
//! records are one transaction, begun, sent and committed before the next; a record's
//! latency then runs until its transaction committed.
//!
//! ```text
//! cargo build --release --examples
//! ./target/release/examples/bench --records 200000 --json /tmp/bench.json --plot /tmp/bench.png
//! # With the Java producer, on Apache Kafka (java and mvn needed, see scripts/kafka/install.sh):
//! ./target/release/examples/bench --broker kafka --records 500000 --modes max \
//!     --clients herald-do-send,herald-batch,rdkafka-future,rdkafka-base,java
//! # Under faults on the mock cluster, each fault kind alone and all together, three seeds:
//! ./target/release/examples/bench --modes chaos --seeds 1,2,3 \
//!     --faults down --faults leader --faults errors --faults latency --faults all
//! ```
//!
//! MB/s counts key + value bytes (10^6 bytes). CPU is user + system time of the worker
//! process over the measured run (the sum of its threads' run time from
//! `/proc/self/task/*/schedstat`, ns resolution; the user/system split comes from
//! `/proc/self/stat`, the same accounting `getrusage(RUSAGE_SELF)` reads). Workspace lints
//! forbid `unsafe`, so `/proc` stands in for `libc::getrusage`.

//! The files of this example, in the order a run goes through them:
//!
//! - `main.rs`: the command line, and the run settings and results both processes share.
//! - `orchestrator.rs`: starts a broker and a worker process per client and mode.
//! - `worker.rs`: one client, one mode, in one process; reports its result as JSON.
//! - `herald_client.rs`: Herald through the actor API (`send`, `do_send` with `notify` or
//!   `reply_to`, `ProduceBatch`). The part to read to learn the API's fast paths.
//! - `rdkafka_client.rs`: librdkafka through the rdkafka crate (`FutureProducer`,
//!   `BaseProducer`).
//! - `pace.rs`: when records are due in the `rate` mode, and a timer thread to wake senders.
//! - `measure.rs`: CPU time, RSS, latency histogram and the offsets check.
//! - `report.rs`: the table, the Herald / librdkafka ratios and the JSON.
//! - `plot.rs`: the PNG chart.
//! - `security.rs`: `--security`, in each client's dialect.
//! - `java_client.rs`: the Java producer (Kafka's `ProducerPerformance` tool) in a JVM of
//!   its own, measured from `/proc` by the worker.
//! - `chaos.rs`, `chaos_client.rs`, `chaos_report.rs`: the `chaos` mode (Herald and
//!   librdkafka under one seeded fault schedule on the mock cluster).
//!
//! Brokers: `--broker mock` (default; librdkafka's mock cluster, a `mock_broker` process per
//! run), `--broker kafka` (one Apache Kafka node started through the test harness,
//! `tests/it/support/kafka.rs`, a fresh topic per run; needed by the `java` client, which does
//! not get past start-up against the mock cluster), or `--bootstrap-servers` (a broker you run).
//! `--security SSL|SASL_SSL` (with `--broker kafka`) puts every client on that node's TLS or
//! SASL_SSL listener (`security.rs`).

#[path = "../common/console_vs_kcat.rs"]
mod console_vs_kcat;
#[path = "../common/mock_broker_process.rs"]
mod mock_broker_process;
#[path = "../common/payload.rs"]
mod payload;

// The Apache Kafka the integration tests start, shared rather than copied.
#[allow(dead_code)]
#[path = "../../tests/it/support/kafka.rs"]
mod kafka;

mod chaos;
mod chaos_client;
mod chaos_report;
mod herald_client;
mod java_client;
mod measure;
mod orchestrator;
mod pace;
mod plot;
mod rdkafka_client;
mod report;
mod security;
mod worker;

use std::error::Error;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::security::Security;

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Herald vs librdkafka: throughput, CPU per record, memory and delivery latency.
#[derive(Debug, Clone, Parser)]
#[command(
    after_help = "Without --bootstrap-servers each run starts its own mock_broker process \
                        (build it with `cargo build --release --examples`); with --broker kafka \
                        one Apache Kafka node serves every run."
)]
struct Args {
    /// Brokers to use instead of starting one; the topic must exist or be auto-created.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// The broker the benchmark starts: mock (librdkafka's mock cluster, a process per run) or
    /// kafka (one Apache Kafka node through the test harness; jars from
    /// scripts/kafka/install.sh or HERALD_KAFKA_LIBS).
    #[arg(long, default_value = "mock")]
    broker: BrokerKind,
    /// Security protocol of every client: PLAINTEXT, SSL (TLS, the test CA) or SASL_SSL
    /// (SCRAM-SHA-512 over TLS); other than PLAINTEXT only with --broker kafka.
    #[arg(long, default_value = "PLAINTEXT", ignore_case = true)]
    security: Security,
    /// Topic (default: a fresh topic per run).
    #[arg(long)]
    topic: Option<String>,
    /// Records per run (chaos mode: 100,000 unless given).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Key size in bytes; 0 = no key (sticky partitioning). With --broker kafka 0 unless
    /// given: the java client (ProducerPerformance) sends no keys.
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
    /// Modes to run, in order: max (full speed), rate (`--rate`), console (console_producer
    /// against kcat -P, own mock cluster only); or chaos alone (Herald and librdkafka under a
    /// seeded fault schedule on the mock cluster).
    #[arg(long, value_delimiter = ',', default_value = "max,rate,console")]
    modes: Vec<Mode>,
    /// Max and rate modes: rounds, each running every client once, in turn, so a change in
    /// the machine's load falls on every client alike; with more than one the report adds
    /// each client's medians and each pair's median ratio (ratios pair runs of one round).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Console mode: rounds, each running console_producer and kcat once; the report gives
    /// medians.
    #[arg(long, default_value_t = 5)]
    console_rounds: usize,
    /// Clients to run, in order (`java`: the Java producer, needs --broker kafka; the chaos
    /// mode runs herald-do-send and rdkafka-base unless given).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "herald-send,herald-producer-send,herald-do-send,herald-router-do-send,herald-reply-to,herald-batch,herald-batch-tally,rdkafka-future,rdkafka-base"
    )]
    clients: Vec<Api>,
    /// What Herald's clients run with besides producing: none; metrics (a Prometheus recorder
    /// installed, so the producer's metrics reach an exporter every second); tracing
    /// (OpenTelemetry: every record made inside a span, its context injected into the
    /// headers, a span per batch of each request, exported to memory); both. Compare runs
    /// with and without to see the cost.
    #[arg(long, default_value = "none")]
    observe: Observe,
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
    /// Transactional runs: commit every this many records (0: not transactional). Clients:
    /// herald-batch and rdkafka-future.
    #[arg(long, default_value_t = 0)]
    txn_records: u64,
    /// Records sent and acknowledged before measuring (connections, metadata, producer id).
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// TrueType font for the chart; without it the chart has no text.
    #[arg(long, default_value = DEFAULT_FONT)]
    font: PathBuf,
    /// Chaos: the fault kinds of one scenario, comma-separated: down (a broker down for 0.8 s),
    /// leader (a partition's leader moved), errors (1-3 Produce requests answered with an
    /// error or a cut connection), latency (a broker's round-trip time set to 0-300 ms), all,
    /// none. Repeat the flag for several scenarios.
    #[arg(long, default_value = "all")]
    faults: Vec<String>,
    /// Chaos: the seed of the fault schedule and of the records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Chaos: several seeds, each run in turn; the report gives medians (overrides --seed).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Chaos: one fault every this many milliseconds.
    #[arg(long, default_value_t = 200)]
    fault_interval_ms: u64,
    /// Chaos: a `down` fault keeps its broker down for this many fault intervals (4: 0.8 s
    /// at the default interval). Whether a client's reconnect attempt lands just after the
    /// broker is back depends on it (see the README's chaos section).
    #[arg(long, default_value_t = 4)]
    down_ticks: u64,
    /// Chaos: faults stop this many seconds after the client's start (0: they go on until
    /// it has every outcome). With faults to the end, a client's last batch meets an error
    /// the schedule queued on every attempt once it is the only one left (one attempt per
    /// retry backoff against one fault per interval), so its time to finish is down to
    /// luck; a window gives both clients the same faults, then measures their recovery.
    #[arg(long, default_value_t = 0.0)]
    fault_window_s: f64,
    /// Chaos: a client that has not had every outcome after this many seconds is stopped
    /// and reported as unfinished.
    #[arg(long, default_value_t = 120)]
    cap_s: u64,
    /// Chaos: records offered per second (0: as fast as each client goes). A client that
    /// finishes in well under a second meets few faults at full speed; a rate keeps both
    /// under the schedule for records / rate seconds.
    #[arg(long, default_value_t = 0)]
    chaos_rate: u64,
    /// Chaos: max.in.flight.requests.per.connection for both clients. A partition has one
    /// batch in flight in Herald whatever this is (max.in.flight.batches.per.partition=1,
    /// the default), which keeps order on a broker that does not check idempotent sequences
    /// (the mock); librdkafka's idempotent producer allows more while fewer than 5 of the
    /// partition's records are in flight.
    #[arg(long, default_value_t = MAX_IN_FLIGHT)]
    chaos_max_in_flight: u32,
    /// Chaos: a setting for Herald's client alone, as KEY=VALUE (repeatable), on top of the
    /// settings both clients share; the report names it. For experiments such as
    /// `--herald-set max.request.size=16384`, which keeps a connection's requests in flight
    /// to librdkafka's five of one partition's batch each.
    #[arg(long, value_parser = herald_setting)]
    herald_set: Vec<(String, String)>,
    /// Chaos: request.timeout.ms of both clients.
    #[arg(long, default_value_t = 5_000)]
    request_timeout_ms: u64,
    /// Chaos: delivery.timeout.ms of both clients.
    #[arg(long, default_value_t = 60_000)]
    delivery_timeout_ms: u64,
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
    #[arg(long, hide = true)]
    worker_ca: Option<PathBuf>,
    #[arg(long, hide = true)]
    worker_chaos_seed: Option<u64>,
}

impl Args {
    /// Parses the command line, then applies the defaults that depend on other flags:
    /// 100,000 records in chaos mode, no keys with `--broker kafka` (the Java tool sends none).
    fn parse_resolved() -> Args {
        let matches = Args::command().get_matches();
        let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
        if args.modes.contains(&Mode::Chaos) && defaulted("records") {
            args.records = 100_000;
        }
        if args.broker == BrokerKind::Kafka && defaulted("key_size") {
            args.key_size = 0;
        }
        if args.modes.contains(&Mode::Chaos) && defaulted("clients") {
            args.clients = vec![Api::HeraldDoSend, Api::RdkafkaBase];
        }
        args
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Observe {
    None,
    Metrics,
    Tracing,
    Both,
}

impl Observe {
    fn metrics(self) -> bool {
        matches!(self, Observe::Metrics | Observe::Both)
    }

    fn tracing(self) -> bool {
        matches!(self, Observe::Tracing | Observe::Both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BrokerKind {
    Mock,
    Kafka,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Max,
    Rate,
    Chaos,
    Console,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    HeraldSend,
    HeraldProducerSend,
    HeraldDoSend,
    HeraldRouterDoSend,
    HeraldReplyTo,
    HeraldBatch,
    HeraldBatchTally,
    RdkafkaFuture,
    RdkafkaBase,
    /// The Java producer: Kafka's `ProducerPerformance` tool in a JVM of its own.
    Java,
}

impl Api {
    fn client(self) -> &'static str {
        match self {
            Api::HeraldSend
            | Api::HeraldProducerSend
            | Api::HeraldDoSend
            | Api::HeraldRouterDoSend
            | Api::HeraldReplyTo
            | Api::HeraldBatch
            | Api::HeraldBatchTally => "herald",
            Api::RdkafkaFuture | Api::RdkafkaBase => "rdkafka",
            Api::Java => "java",
        }
    }

    fn api(self) -> &'static str {
        match self {
            Api::HeraldSend => "send",
            Api::HeraldProducerSend => "producer_send",
            Api::HeraldDoSend => "do_send",
            Api::HeraldRouterDoSend => "router_do_send",
            Api::HeraldReplyTo => "reply_to",
            Api::HeraldBatch => "batch",
            Api::HeraldBatchTally => "batch_tally",
            Api::RdkafkaFuture => "future",
            Api::RdkafkaBase => "base",
            Api::Java => "perf",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Api::HeraldSend => "herald-send",
            Api::HeraldProducerSend => "herald-producer-send",
            Api::HeraldDoSend => "herald-do-send",
            Api::HeraldRouterDoSend => "herald-router-do-send",
            Api::HeraldReplyTo => "herald-reply-to",
            Api::HeraldBatch => "herald-batch",
            Api::HeraldBatchTally => "herald-batch-tally",
            Api::RdkafkaFuture => "rdkafka-future",
            Api::RdkafkaBase => "rdkafka-base",
            Api::Java => "java",
        }
    }
}

/// The settings of a run, as both clients got them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    bootstrap: String,
    /// `security.protocol` of every client.
    security: Security,
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
    /// Records per transaction; 0: not transactional.
    txn_records: u64,
}

impl Settings {
    fn of(args: &Args) -> Settings {
        Settings {
            bootstrap: match (&args.bootstrap_servers, args.broker) {
                (Some(b), _) => b.clone(),
                (None, BrokerKind::Mock) => {
                    format!("mock_broker ({} brokers, own process)", args.brokers)
                }
                (None, BrokerKind::Kafka) => format!(
                    "Apache Kafka {} (1 node, own JVM, test harness)",
                    java_client::kafka_version()
                ),
            },
            security: args.security,
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
            txn_records: args.txn_records,
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
    /// Records the client kept outstanding at most (its window), for clients that have one:
    /// `peak_rss_bytes` over it is the memory per outstanding record.
    #[serde(default)]
    outstanding: Option<u64>,
    baseline_rss_bytes: u64,
    /// VmHWM of the worker process (lifetime peak, baseline included).
    vm_hwm_bytes: u64,
    latency_ms: Latency,
    partitions_written: usize,
    /// Each partition's offsets form one gap-free range holding exactly this run's records.
    offsets_verified: bool,
    client_metrics: Option<serde_json::Value>,
    settings: Settings,
    /// The round (`--runs`) this run belongs to, counted from 0; set by the orchestrator.
    #[serde(default)]
    round: usize,
}

impl RunResult {
    fn label(&self) -> String {
        format!("{}-{}", self.client, self.api.replace('_', "-"))
    }
}

fn main() {
    let args = Args::parse_resolved();
    let outcome = match (args.worker, args.worker_chaos_seed) {
        (Some(api), Some(seed)) => chaos_client::main(&args, api, seed),
        (Some(api), None) => worker::main(&args, api),
        (None, _) if args.modes.contains(&Mode::Chaos) => chaos::run(&args),
        (None, _) => orchestrator::run(&args),
    };
    if let Err(e) = outcome {
        eprintln!("bench: error: {e}");
        std::process::exit(1);
    }
}

/// `--herald-set`'s KEY=VALUE.
fn herald_setting(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
