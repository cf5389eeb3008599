//! A soak run: produce without pause for `--seconds` to an in-process mock cluster (librdkafka's,
//! 3 brokers, one topic with 6 partitions and replication factor 3) while a broker flaps, with
//! a small `buffer.memory`, acks=all and idempotence. It checks that memory stays bounded.
//!
//! ```text
//! cargo run --release --example soak                        # 180 s, buffer.memory 4 MiB
//! cargo run --release --example soak -- --seconds 60 --buffer-memory 8388608 --seed 7
//! ```
//!
//! - Records (keyed, 100-byte values) go with `do_send` + `reply_to` to a counting actor, at
//!   most `--window` of them without an outcome (so the router's mailbox stays bounded too).
//! - Partition `p` is led by broker `p % 3 + 1`. The flapping is seeded (`--seed`): a random
//!   broker goes down for 1-3 s, then the cluster is whole for 2-5 s, and again. The mock
//!   keeps leaders where they are, so the down broker's two partitions wait for it: records
//!   for them fill `buffer.memory`, then the router stalls (as Java's `send()` blocks) until
//!   the broker is back.
//! - Every second it prints: elapsed time, records acknowledged and failed, records/s over the
//!   last second, RSS (from `/proc/self/statm`), `buffer-available-bytes`, retried records.
//!
//! At the end it prints the largest RSS growth over the baseline (RSS at 10 s, when the
//! producer, the mock cluster and its logs have warmed up; the mock keeps at most about 5 MB of
//! log per partition) and exits non-zero unless
//!
//! - `buffer-available-bytes` never exceeded `buffer.memory` (and the total reported is
//!   `buffer.memory`), and all of it was given back once every record had its outcome;
//! - RSS growth stayed below `buffer.memory` + [`OVERHEAD`];
//! - every record had exactly one outcome, and none failed (delivery.timeout.ms, 120 s by
//!   default, is far above the longest outage).
//!
//! Metrics are read through the router; while it is stalled on `buffer.memory` (its mailbox
//! waits) a sample is skipped and printed as `stalled`.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use clap::Parser;
use herald_actors::{Delivered, MetricsSnapshot, Produce, Producer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Allowed RSS growth beyond `buffer.memory`: actix and tokio (mailboxes, task allocations),
/// the allocator's retained free memory, and librdkafka's mock cluster (its in-memory logs,
/// bounded per partition, and per-connection buffers).
const OVERHEAD: u64 = 64 << 20;
/// The RSS baseline is taken this long after the start.
const BASELINE_AT: Duration = Duration::from_secs(10);
const TOPIC: &str = "herald-soak";
const BROKERS: i32 = 3;
const PARTITIONS: i32 = 6;
const VALUE_LEN: usize = 100;

#[derive(Debug, Parser)]
#[command(about = "Soak run: produce while a broker flaps; check that memory stays bounded")]
struct Args {
    /// How long to produce.
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// buffer.memory in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    buffer_memory: u64,
    /// Seed of the flapping schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most records without an outcome at any time. Above what buffer.memory holds (about
    /// 30,000 of these records in 4 MiB), so that buffer.memory, not the window, is what
    /// stops the producing loop when a broker is down.
    #[arg(long, default_value_t = 50_000)]
    window: u64,
}

/// Counts outcomes.
#[derive(Debug, Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

#[derive(Debug)]
struct Counter(Arc<Counts>);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Delivered> for Counter {
    type Result = ();

    fn handle(&mut self, d: Delivered, _: &mut Context<Self>) {
        match d.outcome {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_errors.lock().unwrap();
                if first.len() < 5 {
                    first.push(format!("record {}: {e}", d.tag));
                }
            }
        }
    }
}

/// The seeded flapping schedule.
#[derive(Debug)]
struct Flapper {
    rng: fastrand::Rng,
    down: Option<i32>,
    next: Instant,
    outages: u32,
}

impl Flapper {
    fn new(seed: u64, now: Instant) -> Flapper {
        let mut rng = fastrand::Rng::with_seed(seed);
        let next = now + Duration::from_millis(rng.u64(2_000..=5_000));
        Flapper {
            rng,
            down: None,
            next,
            outages: 0,
        }
    }

    /// Takes a broker down or brings it back when its time has come.
    fn step(
        &mut self,
        now: Instant,
        cluster: &MockCluster<'_, DefaultProducerContext>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if now < self.next {
            return Ok(());
        }
        match self.down.take() {
            Some(broker) => {
                cluster.broker_up(broker)?;
                self.next = now + Duration::from_millis(self.rng.u64(2_000..=5_000));
            }
            None => {
                let broker = self.rng.i32(1..=BROKERS);
                cluster.broker_down(broker)?;
                self.down = Some(broker);
                self.outages += 1;
                self.next = now + Duration::from_millis(self.rng.u64(1_000..=3_000));
            }
        }
        Ok(())
    }

    fn all_up(&mut self, cluster: &MockCluster<'_, DefaultProducerContext>) {
        if let Some(broker) = self.down.take() {
            let _ = cluster.broker_up(broker);
        }
    }
}

/// Resident set size in bytes: `/proc/self/statm`'s resident pages times the page size.
fn rss_bytes(page_size: u64) -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size)
}

/// The page size, from the first mapping's `KernelPageSize` in `/proc/self/smaps` (no libc:
/// unsafe code is forbidden in this workspace); 4 KiB if that cannot be read.
fn page_size() -> u64 {
    std::fs::File::open("/proc/self/smaps")
        .ok()
        .and_then(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| {
                    let kb = l.strip_prefix("KernelPageSize:")?;
                    kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                })
        })
        .map_or(4096, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Metrics, unless the router does not answer within 200 ms (stalled on buffer.memory).
async fn metrics(producer: &Producer) -> Option<MetricsSnapshot> {
    tokio::time::timeout(Duration::from_millis(200), producer.metrics())
        .await
        .ok()
}

#[actix_rt::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(BROKERS)?;
    cluster.create_topic(TOPIC, PARTITIONS, 3)?;
    // The mock picks leaders at random among the replicas; spread them, so that every outage
    // takes the leaders of two partitions.
    for p in 0..PARTITIONS {
        cluster.partition_leader(TOPIC, p, Some(p % BROKERS + 1))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let buffer_memory = args.buffer_memory.to_string();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("client.id", "herald-soak"),
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("buffer.memory", buffer_memory.as_str()),
        ("retry.backoff.ms", "50"),
        ("retry.backoff.max.ms", "500"),
        ("reconnect.backoff.ms", "50"),
        ("reconnect.backoff.max.ms", "500"),
        ("request.timeout.ms", "5000"),
    ])?;
    if !producer.config().enable_idempotence {
        return Err("idempotence is off".into());
    }
    let counts = Arc::new(Counts::default());
    let inbox = Counter(counts.clone()).start().recipient::<Delivered>();
    let router = producer.router().clone();
    let page = page_size();
    let filler = "-".repeat(VALUE_LEN);

    println!(
        "soak: {} s, buffer.memory {} bytes ({:.1} MiB), seed {}, window {}, mock cluster {bootstrap} \
         ({BROKERS} brokers, {PARTITIONS} partitions, rf 3)",
        args.seconds,
        args.buffer_memory,
        mib(args.buffer_memory),
        args.seed,
        args.window
    );
    println!(
        "{:>6} {:>11} {:>7} {:>9} {:>9} {:>14} {:>10} {:>6}",
        "t (s)", "acked", "failed", "rec/s", "RSS MiB", "buffer avail", "retried", "down"
    );

    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut flapper = Flapper::new(args.seed, start);
    let mut next_tick = start + Duration::from_secs(1);
    let mut sent = 0u64;
    let mut last_acked = 0u64;
    let mut baseline: Option<u64> = None;
    let mut first_rss: Option<u64> = None;
    let mut max_rss_after_baseline = 0u64;
    let mut max_available = 0u64;
    let mut min_available = u64::MAX;
    let mut totals_ok = true;
    let mut stalled_samples = 0u32;
    let mut samples = 0u32;

    while Instant::now() < end {
        flapper.step(Instant::now(), &cluster)?;
        let done = counts.acked.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
        let room = args.window.saturating_sub(sent - done).min(2_000);
        for _ in 0..room {
            let value = format!("{sent:012} {}", &filler[..VALUE_LEN - 13]);
            router.do_send(
                Produce::new(TOPIC)
                    .key(format!("key-{}", sent % 10_000))
                    .value(Bytes::from(value))
                    .tag(sent)
                    .reply_to(inbox.clone()),
            );
            sent += 1;
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let elapsed = start.elapsed();
            let rss = rss_bytes(page);
            first_rss.get_or_insert(rss);
            if elapsed >= BASELINE_AT {
                let b = *baseline.get_or_insert(rss);
                max_rss_after_baseline = max_rss_after_baseline.max(rss.max(b));
            }
            let m = metrics(&producer).await;
            let acked = counts.acked.load(Ordering::Relaxed);
            let failed = counts.failed.load(Ordering::Relaxed);
            let (avail, retried) = match &m {
                Some(m) => {
                    samples += 1;
                    max_available = max_available.max(m.buffer_available_bytes);
                    min_available = min_available.min(m.buffer_available_bytes);
                    totals_ok &= m.buffer_total_bytes == args.buffer_memory;
                    (
                        m.buffer_available_bytes.to_string(),
                        m.record_retry_total.to_string(),
                    )
                }
                None => {
                    stalled_samples += 1;
                    ("stalled".to_string(), "-".to_string())
                }
            };
            println!(
                "{:>6.1} {:>11} {:>7} {:>9} {:>9.1} {:>14} {:>10} {:>6}",
                elapsed.as_secs_f64(),
                acked,
                failed,
                acked - last_acked,
                mib(rss),
                avail,
                retried,
                flapper.down.map_or("-".to_string(), |b| format!("b{b}")),
            );
            last_acked = acked;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Bring the cluster back, wait for every outcome (delivery.timeout.ms bounds it), close.
    flapper.all_up(&cluster);
    let produced_for = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(150);
    while counts.acked.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < sent
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late second answers would show here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let final_metrics = producer.metrics().await;
    let final_rss = rss_bytes(page);
    let closed = producer.close(Duration::from_secs(30)).await;
    let acked = counts.acked.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);

    let baseline = baseline.or(first_rss).unwrap_or(final_rss);
    let growth = max_rss_after_baseline
        .max(final_rss)
        .saturating_sub(baseline);
    let growth_limit = args.buffer_memory + OVERHEAD;
    println!();
    println!(
        "produced for {:.1} s: {sent} records sent, {acked} acknowledged, {failed} failed \
         ({:.0} records/s); {} broker outages; {} records retried, {} resent after a lost request",
        produced_for.as_secs_f64(),
        acked as f64 / produced_for.as_secs_f64(),
        flapper.outages,
        final_metrics.record_retry_total,
        final_metrics.record_resend_unknown_total,
    );
    println!(
        "RSS: baseline {:.1} MiB at {} s, max growth over it {:.1} MiB (limit: buffer.memory {:.1} MiB + {:.0} MiB = {:.1} MiB), final {:.1} MiB",
        mib(baseline),
        BASELINE_AT.as_secs(),
        mib(growth),
        mib(args.buffer_memory),
        mib(OVERHEAD),
        mib(growth_limit),
        mib(final_rss),
    );
    println!(
        "buffer-available-bytes: min {} max {} over {} samples ({} skipped: router stalled), final {} of {}",
        if min_available == u64::MAX { 0 } else { min_available },
        max_available,
        samples,
        stalled_samples,
        final_metrics.buffer_available_bytes,
        final_metrics.buffer_total_bytes,
    );
    for e in counts.first_errors.lock().unwrap().iter() {
        println!("  failure: {e}");
    }

    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("{} {what}", if pass { "ok  " } else { "FAIL" });
        ok &= pass;
    };
    check(
        max_available <= args.buffer_memory
            && final_metrics.buffer_available_bytes <= args.buffer_memory
            && totals_ok
            && final_metrics.buffer_total_bytes == args.buffer_memory,
        format!(
            "buffer-available-bytes never exceeded buffer.memory ({} bytes)",
            args.buffer_memory
        ),
    );
    check(
        final_metrics.buffer_available_bytes == final_metrics.buffer_total_bytes,
        "all of buffer.memory given back once every record had its outcome".to_string(),
    );
    check(
        growth < growth_limit,
        format!(
            "RSS growth {:.1} MiB below buffer.memory + {:.0} MiB",
            mib(growth),
            mib(OVERHEAD)
        ),
    );
    check(
        acked + failed == sent,
        format!("every record has exactly one outcome ({acked} + {failed} of {sent})"),
    );
    check(failed == 0, format!("no record failed ({failed})"));
    check(closed, "closed cleanly".to_string());
    Ok(ok)
}
