//! One client of the `chaos` mode, in a worker process: the seeded records, the same explicit
//! settings for both clients, every record's outcome, and delivered records over time.
//!
//! - Herald: `Producer::do_send` with `notify` (one `Deliveries` message per batch to a collector
//!   actor); outstanding records bounded by their bytes, at most `buffer.memory`.
//! - librdkafka: `BaseProducer::send`, a delivery callback, a polling thread; its queue
//!   bounded by `queue.buffering.max.kbytes` = `buffer.memory`, QueueFull waits.
//!
//! The worker prints `ready` when its producer exists (the schedule starts then), `progress N`
//! (records acknowledged) and one `result {json}`. At `--cap-s` it stops waiting and reports
//! the run as unfinished.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use herald_actors::{Deliveries, Notifier, Produce, Producer};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use crate::pace::Pacer;
use crate::{Api, Args, Result};

/// The records of a seed: keyed (`key-0000` to `key-4999`), values of 10 to 110 bytes that
/// start with the record's index as 10 decimal digits (the read-back parses it).
pub(crate) struct Records {
    keys: Vec<u16>,
    sizes: Vec<u8>,
    filler: Vec<u8>,
}

pub(crate) const VALUE_MIN: usize = 10;
pub(crate) const VALUE_MAX: usize = 110;
const KEYS: u16 = 5_000;

impl Records {
    pub(crate) fn new(seed: u64, n: u64) -> Records {
        // Not the schedule's stream: the records do not change when fault kinds do.
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5EED_0F4E_C04D_5EED);
        let keys = (0..n).map(|_| rng.u16(0..KEYS)).collect();
        let sizes = (0..n)
            .map(|_| rng.usize(VALUE_MIN..=VALUE_MAX) as u8)
            .collect();
        Records {
            keys,
            sizes,
            filler: (0..VALUE_MAX).map(|i| b'a' + (i % 26) as u8).collect(),
        }
    }

    pub(crate) fn key(&self, i: u64) -> String {
        format!("key-{:04}", self.keys[i as usize])
    }

    pub(crate) fn value(&self, i: u64) -> Vec<u8> {
        let mut v = format!("{i:010}").into_bytes();
        let size = self.sizes[i as usize] as usize;
        v.extend_from_slice(&self.filler[..size - VALUE_MIN]);
        v
    }

    /// Key and value bytes of record `i`.
    fn bytes(&self, i: u64) -> usize {
        8 + self.sizes[i as usize] as usize
    }
}

/// The outcome of each record: 0 none yet, 1 acknowledged, 2 failed.
const PENDING: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;

/// What a chaos worker reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClientReport {
    pub(crate) client: String,
    pub(crate) api: String,
    /// Every record had its outcome before the cap.
    pub(crate) finished: bool,
    pub(crate) records: u64,
    pub(crate) acknowledged: u64,
    pub(crate) failed: u64,
    /// Records without an outcome at the cap.
    pub(crate) pending: u64,
    /// First send to last outcome (or to the cap).
    pub(crate) elapsed_s: f64,
    /// Records sent again, for any reason (Herald: `record_retry_total`; librdkafka: records
    /// transmitted (`txmsgs`) minus records sent).
    pub(crate) records_sent_again: Option<u64>,
    /// Records sent again after their request was lost with its connection (Herald's
    /// `record_resend_unknown_total`; librdkafka has no such count).
    pub(crate) resent_after_lost_request: Option<u64>,
    /// Produce requests sent again (librdkafka's `txretries`; Herald has no such count).
    pub(crate) requests_retried: Option<u64>,
    /// Why records failed, and how many for each reason.
    pub(crate) failure_reasons: BTreeMap<String, u64>,
    pub(crate) failed_records: Vec<u64>,
    pub(crate) pending_records: Vec<u64>,
    /// `(seconds since the first send, records acknowledged)` every 50 ms.
    pub(crate) timeline: Vec<(f64, u64)>,
}

/// Outcomes as they arrive, shared with the timeline thread.
struct Outcomes {
    status: Vec<u8>,
    acknowledged: Arc<AtomicU64>,
    failed: u64,
    reasons: BTreeMap<String, u64>,
}

impl Outcomes {
    fn new(n: u64, acknowledged: Arc<AtomicU64>) -> Outcomes {
        Outcomes {
            status: vec![PENDING; n as usize],
            acknowledged,
            failed: 0,
            reasons: BTreeMap::new(),
        }
    }

    /// The outcome of record `i`; `false` if it had one already.
    fn set(&mut self, i: u64, error: Option<String>) -> bool {
        let Some(s) = self.status.get_mut(i as usize) else {
            return false;
        };
        if *s != PENDING {
            return false;
        }
        match error {
            None => {
                *s = OK;
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Some(why) => {
                *s = FAILED;
                self.failed += 1;
                // Reasons without the record-specific tail, so they group.
                let key: String = why.chars().take(80).collect();
                *self.reasons.entry(key).or_insert(0) += 1;
            }
        }
        true
    }

    fn done(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed) + self.failed
    }

    fn with(&self, wanted: u8) -> Vec<u64> {
        (0..self.status.len() as u64)
            .filter(|i| self.status[*i as usize] == wanted)
            .collect()
    }
}

/// Samples the acknowledged count every 50 ms for the timeline, and prints progress.
struct Timeline {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(f64, u64)>>>,
}

impl Timeline {
    fn start(acknowledged: Arc<AtomicU64>) -> Timeline {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut points = vec![(0.0, 0)];
            let mut k = 1u32;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(
                    (start + Duration::from_millis(50) * k)
                        .saturating_duration_since(Instant::now()),
                );
                let n = acknowledged.load(Ordering::Relaxed);
                points.push((start.elapsed().as_secs_f64(), n));
                if k % 2 == 0 {
                    println!("progress {n}");
                }
                k += 1;
            }
            points.push((
                start.elapsed().as_secs_f64(),
                acknowledged.load(Ordering::Relaxed),
            ));
            points
        });
        Timeline {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// The settings both clients get, as Java-style pairs (librdkafka knows them by these names,
/// except `buffer.memory`, which becomes `queue.buffering.max.kbytes`).
fn settings(args: &Args, bootstrap: &str) -> Vec<(&'static str, String)> {
    vec![
        ("bootstrap.servers", bootstrap.to_string()),
        ("acks", args.acks.clone()),
        ("enable.idempotence", args.idempotence.to_string()),
        (
            "max.in.flight.requests.per.connection",
            args.chaos_max_in_flight.to_string(),
        ),
        ("linger.ms", args.linger_ms.to_string()),
        ("batch.size", args.batch_size.to_string()),
        ("compression.type", args.compression.clone()),
        ("request.timeout.ms", args.request_timeout_ms.to_string()),
        ("delivery.timeout.ms", args.delivery_timeout_ms.to_string()),
        ("retry.backoff.ms", "100".to_string()),
        ("retry.backoff.max.ms", "1000".to_string()),
        ("reconnect.backoff.ms", "50".to_string()),
        ("reconnect.backoff.max.ms", "1000".to_string()),
    ]
}

/// The settings every chaos run uses besides the command line's, for the report.
pub(crate) const FIXED_SETTINGS: &str = "retry.backoff.ms=100, retry.backoff.max.ms=1000, \
     reconnect.backoff.ms=50, reconnect.backoff.max.ms=1000";

/// When records are due: all at once, or `--chaos-rate` per second from now.
fn pacer(args: &Args) -> Pacer {
    let rate = (args.chaos_rate > 0).then_some(args.chaos_rate as f64);
    Pacer::new(rate, args.records)
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

pub(crate) fn main(args: &Args, api: Api, seed: u64) -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let (bootstrap, topic) = crate::worker::target(args)?;
    let records = Records::new(seed, args.records);
    let report = match api {
        Api::HeraldDoSend => {
            actix::System::new().block_on(herald(args, &bootstrap, topic, &records))?
        }
        Api::RdkafkaBase => rdkafka(args, &bootstrap, topic, &records)?,
        other => return Err(format!("{} has no chaos client", other.flag()).into()),
    };
    say(&format!("result {}", serde_json::to_string(&report)?))?;
    // An unfinished client may have threads that never end: leave without waiting for them.
    std::process::exit(0);
}

/// Records the outcomes of Herald's `do_send` records (tag = record index).
struct Collector {
    outcomes: Rc<RefCell<Outcomes>>,
    in_flight_bytes: Rc<RefCell<usize>>,
    records: Rc<Vec<u16>>,
    wake: Rc<tokio::sync::Notify>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Deliveries> for Collector {
    type Result = ();

    fn handle(&mut self, batch: Deliveries, _: &mut Context<Self>) {
        let mut o = self.outcomes.borrow_mut();
        let mut bytes = self.in_flight_bytes.borrow_mut();
        for d in batch.0 {
            let error = d.outcome.err().map(|e| e.to_string());
            if o.set(d.tag, error) {
                *bytes -= self.records[d.tag as usize] as usize;
            }
        }
        self.wake.notify_one();
    }
}

async fn herald(
    args: &Args,
    bootstrap: &str,
    topic: &'static str,
    records: &Records,
) -> Result<ClientReport> {
    let producer = Producer::from_pairs(
        settings(args, bootstrap)
            .into_iter()
            .chain([("buffer.memory", args.buffer_memory.to_string())])
            .map(|(k, v)| (k.to_string(), v))
            .chain(args.herald_set.iter().cloned()),
    )
    .map_err(|e| format!("herald config: {e}"))?;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let outcomes = Rc::new(RefCell::new(Outcomes::new(
        args.records,
        acknowledged.clone(),
    )));
    let in_flight_bytes = Rc::new(RefCell::new(0usize));
    let wake = Rc::new(tokio::sync::Notify::new());
    let sizes: Rc<Vec<u16>> = Rc::new((0..args.records).map(|i| records.bytes(i) as u16).collect());
    let collector = Collector {
        outcomes: outcomes.clone(),
        in_flight_bytes: in_flight_bytes.clone(),
        records: sizes.clone(),
        wake: wake.clone(),
    }
    .start();
    let notifier = Notifier::new(collector.recipient::<Deliveries>());
    say("ready")?;
    let start = Instant::now();
    let timeline = Timeline::start(acknowledged);
    let cap = Duration::from_secs(args.cap_s);
    let budget = args.buffer_memory;
    let n = args.records;
    let pacer = pacer(args);
    let mut next = 0u64;
    let finished = loop {
        let due = pacer.due();
        while next < due {
            let size = sizes[next as usize] as usize;
            {
                let mut bytes = in_flight_bytes.borrow_mut();
                if *bytes > 0 && *bytes + size > budget {
                    break;
                }
                *bytes += size;
            }
            let p = Produce::new(topic)
                .key(Bytes::from(records.key(next)))
                .value(Bytes::from(records.value(next)))
                .tag(next)
                .notify(notifier.clone());
            producer.do_send(p);
            next += 1;
        }
        if outcomes.borrow().done() == n {
            break true;
        }
        if start.elapsed() >= cap {
            break false;
        }
        let wait = if next < n && next >= due {
            pacer
                .wake_at(next)
                .saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    };
    let elapsed = start.elapsed();
    let timeline = timeline.stop();
    let metrics = tokio::time::timeout(Duration::from_secs(10), producer.metrics())
        .await
        .ok();
    if finished {
        let _ = tokio::time::timeout(
            Duration::from_secs(15),
            producer.close(Duration::from_secs(10)),
        )
        .await;
    }
    let o = outcomes.borrow();
    Ok(ClientReport {
        client: "herald".into(),
        api: "do_send".into(),
        finished,
        records: n,
        acknowledged: o.acknowledged.load(Ordering::Relaxed),
        failed: o.failed,
        pending: n - o.done(),
        elapsed_s: elapsed.as_secs_f64(),
        records_sent_again: metrics.as_ref().map(|m| m.record_retry_total),
        resent_after_lost_request: metrics.as_ref().map(|m| m.record_resend_unknown_total),
        requests_retried: None,
        failure_reasons: o.reasons.clone(),
        failed_records: o.with(FAILED),
        pending_records: o.with(PENDING),
        timeline,
    })
}

/// librdkafka's delivery callbacks and statistics.
struct RdCtx {
    outcomes: Mutex<Outcomes>,
    /// Latest statistics: (`txmsgs`, sum of brokers' `txretries`, when it arrived).
    stats: Mutex<Option<(i64, u64, Instant)>>,
}

impl ClientContext for RdCtx {
    fn stats(&self, s: Statistics) {
        let retries = s.brokers.values().map(|b| b.txretries).sum();
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((s.txmsgs, retries, Instant::now()));
    }
}

impl ProducerContext for RdCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        self.outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(i as u64, error);
    }
}

fn rdkafka(args: &Args, bootstrap: &str, topic: &str, records: &Records) -> Result<ClientReport> {
    let mut config = ClientConfig::new();
    for (k, v) in settings(args, bootstrap) {
        config.set(k, v);
    }
    config
        .set("partitioner", "murmur2_random")
        .set(
            "queue.buffering.max.kbytes",
            (args.buffer_memory / 1024).max(1).to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            args.records.clamp(100_000, i32::MAX as u64).to_string(),
        )
        .set("statistics.interval.ms", "200")
        .set("log_level", "3");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let ctx = RdCtx {
        outcomes: Mutex::new(Outcomes::new(args.records, acknowledged.clone())),
        stats: Mutex::new(None),
    };
    let producer: Arc<BaseProducer<RdCtx>> = Arc::new(config.create_with_context(ctx)?);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (p, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                p.poll(Duration::from_millis(20));
            }
        })
    };
    let done = || {
        producer
            .context()
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done()
    };
    say("ready")?;
    let start = Instant::now();
    let timeline = Timeline::start(acknowledged);
    let cap = Duration::from_secs(args.cap_s);
    let n = args.records;
    let mut capped = false;
    let pacer = pacer(args);
    'send: for i in 0..n {
        while i >= pacer.due() {
            std::thread::sleep(pacer.wake_at(i).saturating_duration_since(Instant::now()));
        }
        let (key, value) = (records.key(i), records.value(i));
        loop {
            let r = BaseRecord::with_opaque_to(topic, i as usize)
                .key(key.as_bytes())
                .payload(&value);
            match producer.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if start.elapsed() >= cap {
                        capped = true;
                        break 'send;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    producer
                        .context()
                        .outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .set(i, Some(format!("send: {e}")));
                    break;
                }
            }
        }
    }
    let finished = !capped
        && loop {
            if done() == n {
                break true;
            }
            if start.elapsed() >= cap {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
    let elapsed = start.elapsed();
    let timeline = timeline.stop();
    // Statistics from after the last outcome.
    let end = Instant::now();
    let deadline = end + Duration::from_secs(2);
    let stats = loop {
        let s = *producer
            .context()
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match s {
            Some(s) if s.2 > end => break Some(s),
            _ if Instant::now() > deadline => break s,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let o = producer
        .context()
        .outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Ok(ClientReport {
        client: "rdkafka".into(),
        api: "base".into(),
        finished,
        records: n,
        acknowledged: o.acknowledged.load(Ordering::Relaxed),
        failed: o.failed,
        pending: n - o.done(),
        elapsed_s: elapsed.as_secs_f64(),
        records_sent_again: stats.map(|(tx, _, _)| (tx.max(0) as u64).saturating_sub(n)),
        resent_after_lost_request: None,
        requests_retried: stats.map(|(_, r, _)| r),
        failure_reasons: o.reasons.clone(),
        failed_records: o.with(FAILED),
        pending_records: o.with(PENDING),
        timeline,
    })
}
