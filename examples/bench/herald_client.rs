//! Herald through the actor API: a `Producer` started from Java-style pairs, then one of
//! seven ways to hand it records and collect their outcomes:
//!
//! - `send`: `router.send(Produce)` per record, a window of futures outstanding.
//! - `producer_send`: `Producer::send(Produce)` per record, the same window: the per-record
//!   future without actix's request (records go to the router's intake in bulk).
//! - `do_send`: `producer.do_send(Produce::...notify(notifier).tag(slot))` (through the
//!   intake, as `producer_send`): outcomes arrive at a collector actor as one `Deliveries`
//!   message per batch (the fastest per-record path), or with `reply_to` as one `Delivered`
//!   message per record.
//! - `router_do_send`: the same with `router.do_send`, one actix message per record into the
//!   router's mailbox (on the router's thread, which each message wakes if it is idle).
//! - `batch`: `router.send(ProduceBatch(records))`, one message for many records.
//! - `batch_tally`: `router.send(ProduceBatchTally(records))`, the same answered with a count
//!   and the failed records (what the console producer sends): no outcome per record, so the
//!   worker checks the records in the log instead of each record's offset.

use std::cell::RefCell;
use std::rc::Rc;

use actix::prelude::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald_actors::{
    BeginTransaction, CommitTransaction, Delivered, Deliveries, Notifier, Outcome, Produce,
    ProduceBatch, ProduceBatchTally, Producer, Router,
};
use tracing::Instrument;

use std::time::{Duration, Instant};

use crate::measure::{Meter, Stats};
use crate::pace::{Pacer, Ticker};
use crate::worker::{Measured, RunCtx};
use crate::{Api, Observe, Result, MAX_IN_FLIGHT};

pub(crate) fn run(ctx: &RunCtx<'_>, api: Api) -> Result<Measured> {
    actix::System::new().block_on(run_in_system(ctx, api))
}

// Inlined, as an application building its records in its loop (the librdkafka clients
// build theirs in the loop): one move of the record fewer.
#[inline(always)]
fn produce(ctx: &RunCtx<'_>, i: u64, key_buf: &mut [u8]) -> Produce {
    // Copied from borrowed slices, as Herald's serializers copy them (into the thread's
    // arena chunk) and as librdkafka copies FutureRecord's borrowed key and payload.
    let mut p = Produce::new(ctx.topic).value_from_slice(ctx.payload.value(i));
    if let Some(k) = ctx.payload.key(i, key_buf) {
        p = p.key_from_slice(k);
    }
    p
}

fn check(outcome: Outcome, what: &str) -> Result<herald::RecordMetadata> {
    outcome.map_err(|e| format!("herald: {what} failed: {e}").into())
}

async fn run_in_system(ctx: &RunCtx<'_>, api: Api) -> Result<Measured> {
    let a = ctx.args;
    let mut pairs = vec![
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
    pairs.extend(ctx.security.java_pairs());
    let txn = a.txn_records > 0;
    if txn {
        pairs.push((
            "transactional.id",
            format!("bench-herald-{}", std::process::id()),
        ));
    }
    // Before the producer starts: it takes the global tracer provider and describes its
    // metrics to the recorder installed then.
    let observed = Observed::install(a.observe)?;
    let producer = Producer::from_pairs(pairs).map_err(|e| format!("herald config: {e}"))?;
    let router = producer.router().clone();
    let mut key_buf = vec![0u8; a.key_size];

    // Warm-up: metadata, connections, producer id, every partition's accumulator (and a
    // first transaction).
    if txn {
        producer.init_transactions().await?;
        router.send(BeginTransaction).await??;
    }
    let warm: Vec<Produce> = (0..a.warmup)
        .map(|i| produce(ctx, u64::MAX - i, &mut key_buf))
        .collect();
    for o in router.send(ProduceBatch(warm)).await? {
        check(o, "warm-up record")?;
    }
    if txn {
        router.send(CommitTransaction).await??;
    }

    let mut stats = Stats::new(ctx.progress.clone());
    let meter = Meter::start();
    let pacer = Pacer::new(ctx.rate, a.records);
    let run = async {
        match api {
            Api::HeraldSend => send(ctx, &router, pacer, &mut stats).await?,
            Api::HeraldProducerSend => producer_send(ctx, &producer, pacer, &mut stats).await?,
            Api::HeraldDoSend => {
                let to = |p| producer.do_send(p);
                stats = do_send(ctx, to, pacer, stats, true).await?
            }
            Api::HeraldRouterDoSend => {
                let to = |p| router.do_send(p);
                stats = do_send(ctx, to, pacer, stats, true).await?
            }
            Api::HeraldReplyTo => {
                let to = |p| producer.do_send(p);
                stats = do_send(ctx, to, pacer, stats, false).await?
            }
            Api::HeraldBatch if txn => transactions(ctx, &router, pacer, &mut stats).await?,
            Api::HeraldBatch => batch(ctx, &router, pacer, &mut stats).await?,
            Api::HeraldBatchTally => batch_tally(ctx, &router, pacer, &mut stats).await?,
            _ => unreachable!("not a herald client"),
        }
        Ok::<Stats, crate::BoxError>(stats)
    };
    // With tracing, every record is made inside this span (its context goes into the
    // headers).
    let stats = run.instrument(observed.span()).await?;
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
    let mut client_metrics = serde_json::json!({
        "batch_size_avg": m.batch_size_avg,
        "records_per_request_avg": m.records_per_request_avg,
        "request_total": m.request_total,
        "request_latency_avg_ms": m.request_latency_avg,
        "compression_rate_avg": m.compression_rate_avg,
    });
    if !producer.close(Duration::from_secs(30)).await {
        return Err("herald: close did not flush everything".into());
    }
    observed.report(&mut client_metrics, expected)?;
    Ok(Measured {
        metered,
        stats,
        client_metrics: Some(client_metrics),
    })
}

/// Transactions of `--txn-records` records, one after the other: begin, one `ProduceBatch`
/// of the transaction's records (as many as are due), commit. A record's latency runs from
/// its send until its transaction committed.
async fn transactions(
    ctx: &RunCtx<'_>,
    router: &Addr<Router>,
    pacer: Pacer,
    stats: &mut Stats,
) -> Result<()> {
    let ticker = Ticker::start(&pacer);
    let per_txn = ctx.args.txn_records;
    let mut key_buf = vec![0u8; ctx.args.key_size];
    let mut next = 0u64;
    while next < pacer.n {
        let end = (next + per_txn).min(pacer.n);
        router.send(BeginTransaction).await??;
        let t0 = Instant::now();
        let mut pending = Vec::new();
        while next < end {
            let due = pacer.due().min(end);
            if due > next {
                let records: Vec<Produce> =
                    (next..due).map(|i| produce(ctx, i, &mut key_buf)).collect();
                pending.push(router.send(ProduceBatch(records)));
                next = due;
            } else {
                Ticker::tick(&ticker).await;
            }
        }
        router.send(CommitTransaction).await??;
        let latency = t0.elapsed();
        for batch in pending {
            for o in batch.await? {
                let md = check(o, "record")?;
                stats.record(latency, md.partition, md.offset);
            }
        }
    }
    Ok(())
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
    windowed(ctx, pacer, stats, |p| {
        let req = router.send(p);
        async move {
            req.await
                .map_err(|e| format!("herald: mailbox: {e}").into())
        }
    })
    .await
}

/// `Producer::send()` per record, at most `window` futures outstanding, polled as `send`'s
/// are. Its future is a completion slot, not actix's reply channel (see `completion::slot`).
async fn producer_send(
    ctx: &RunCtx<'_>,
    producer: &Producer,
    pacer: Pacer,
    stats: &mut Stats,
) -> Result<()> {
    windowed(ctx, pacer, stats, |p| {
        let outcome = producer.send(p);
        async move { Ok(outcome.await) }
    })
    .await
}

/// Records as they are due, each handed to `send`, with at most `window` of the futures it
/// returns outstanding.
async fn windowed<F, Fut>(
    ctx: &RunCtx<'_>,
    pacer: Pacer,
    stats: &mut Stats,
    mut send: F,
) -> Result<()>
where
    F: FnMut(Produce) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>>,
{
    let ticker = Ticker::start(&pacer);
    let window = ctx.args.window;
    let mut key_buf = vec![0u8; ctx.args.key_size];
    let mut inflight = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        let due = pacer.due();
        while next < due && inflight.len() < window {
            let t0 = Instant::now();
            let outcome = send(produce(ctx, next, &mut key_buf));
            inflight.push(async move { (t0, outcome.await) });
            next += 1;
        }
        if next == pacer.n && inflight.is_empty() {
            return Ok(());
        }
        let paced = next < pacer.n && inflight.len() < window;
        tokio::select! {
            biased;
            Some((t0, o)) = inflight.next() => {
                let md = check(o?, "record")?;
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
    to: impl Fn(Produce),
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
                to(if batched {
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
    let send = |records| router.send(ProduceBatch(records));
    batched(ctx, pacer, stats, send, |stats, latency, _, outcomes| {
        for o in outcomes {
            let md = check(o, "record")?;
            stats.record(latency, md.partition, md.offset);
        }
        Ok(())
    })
    .await
}

/// As [`batch`], with `ProduceBatchTally`: any failed record ends the run.
async fn batch_tally(
    ctx: &RunCtx<'_>,
    router: &Addr<Router>,
    pacer: Pacer,
    stats: &mut Stats,
) -> Result<()> {
    let send = |records| router.send(ProduceBatchTally(records));
    batched(ctx, pacer, stats, send, |stats, latency, k, tally| {
        if let Some((i, e)) = tally.failed.first() {
            return Err(format!("herald: record {i} of a call failed: {e}").into());
        }
        if tally.delivered as u64 != k {
            return Err(format!("herald: {} of {k} records counted", tally.delivered).into());
        }
        stats.record_unplaced(latency, k);
        Ok(())
    })
    .await
}

/// Calls of `batch_records` records (full speed) or of the records due at each timer tick
/// (rate) through `send`, at most `window` records outstanding; `answer` takes each reply
/// with its latency and its number of records.
async fn batched<R, Fut>(
    ctx: &RunCtx<'_>,
    pacer: Pacer,
    stats: &mut Stats,
    send: impl Fn(Vec<Produce>) -> Fut,
    mut answer: impl FnMut(&mut Stats, Duration, u64, R) -> Result<()>,
) -> Result<()>
where
    Fut: std::future::Future<Output = std::result::Result<R, MailboxError>>,
{
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
            let req = send(records);
            inflight.push(async move { (t0, k, req.await) });
            next += k;
            outstanding += k;
        }
        if next == pacer.n && inflight.is_empty() {
            return Ok(());
        }
        let paced = next < pacer.n && outstanding < window;
        tokio::select! {
            biased;
            Some((t0, k, r)) = inflight.next() => {
                let reply = r.map_err(|e| format!("herald: mailbox: {e}"))?;
                outstanding -= k;
                answer(stats, t0.elapsed(), k, reply)?;
            }
            _ = Ticker::tick(&ticker), if paced => {}
        }
    }
}

/// What `--observe` installed for this worker: a Prometheus recorder, and OpenTelemetry
/// tracing (the global tracer provider with an in-memory exporter, and a `tracing`
/// subscriber that gives `tracing` spans their OpenTelemetry context).
struct Observed {
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    spans: Option<opentelemetry_sdk::trace::InMemorySpanExporter>,
}

impl Observed {
    fn install(observe: Observe) -> Result<Observed> {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        let prometheus = if observe.metrics() {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            Some(builder.install_recorder()?)
        } else {
            None
        };
        let spans = if observe.tracing() {
            let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
            Some(exporter)
        } else {
            None
        };
        Ok(Observed { prometheus, spans })
    }

    /// The span the records are made in (a disabled span without tracing).
    fn span(&self) -> tracing::Span {
        if self.spans.is_some() {
            tracing::info_span!("bench")
        } else {
            tracing::Span::none()
        }
    }

    /// Checks what the observers saw and adds it to the client's figures: the scraped
    /// `record-send-total` must be every record, and every record batch must have a span.
    fn report(&self, figures: &mut serde_json::Value, expected: u64) -> Result<()> {
        if let Some(prometheus) = &self.prometheus {
            let scrape = prometheus.render();
            let sent = scrape
                .lines()
                .find(|l| l.starts_with("kafka_producer_record_send_total{"))
                .and_then(|l| l.rsplit_once(' '))
                .and_then(|(_, v)| v.parse::<u64>().ok());
            if sent != Some(expected) {
                return Err(
                    format!("scraped record_send_total {sent:?}, expected {expected}").into(),
                );
            }
            figures["scraped_record_send_total"] = serde_json::json!(sent);
        }
        if let Some(exporter) = &self.spans {
            let spans = exporter.get_finished_spans()?;
            let send_spans = spans.iter().filter(|s| s.name.starts_with("send ")).count();
            if send_spans == 0 {
                return Err("tracing on, but no send span was exported".into());
            }
            figures["send_spans"] = serde_json::json!(send_spans);
        }
        Ok(())
    }
}
