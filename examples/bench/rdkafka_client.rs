//! librdkafka through the rdkafka crate, with the same settings as Herald: `FutureProducer`
//! (`send_result`, a window of delivery futures) and `BaseProducer` (`send`, a delivery
//! callback context and a polling thread).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{
    BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext,
};
use rdkafka::ClientContext;

use crate::measure::{Meter, Stats};
use crate::pace::{Pacer, Ticker};
use crate::worker::{Measured, RunCtx};
use crate::{Result, MAX_IN_FLIGHT};

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
    ctx.security.apply_rdkafka(&mut c);
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
        let txn = a.txn_records > 0;
        let mut c = config(ctx);
        if txn {
            c.set(
                "transactional.id",
                format!("bench-rdkafka-{}", std::process::id()),
            );
        }
        let producer: FutureProducer = c.create()?;
        let txn_timeout = Duration::from_secs(60);
        if txn {
            producer.init_transactions(txn_timeout)?;
            producer.begin_transaction()?;
        }
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
        if txn {
            producer.commit_transaction(txn_timeout)?;
        }
        for f in warm {
            f.await?
                .map_err(|(e, _)| format!("rdkafka: warm-up record failed: {e}"))?;
        }
        if txn {
            let (stats, metered) =
                transactions(ctx, &producer, &send, &mut key_buf, txn_timeout).await?;
            return Ok(Measured {
                metered,
                stats,
                client_metrics: None,
            });
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

/// Transactions of `--txn-records` records, one after the other (as Herald's): begin, send
/// the transaction's records as they are due, commit (which flushes); a record's latency
/// runs from its send until its transaction committed.
async fn transactions<F>(
    ctx: &RunCtx<'_>,
    producer: &FutureProducer,
    send: &F,
    key_buf: &mut [u8],
    timeout: Duration,
) -> Result<(Stats, crate::measure::Metered)>
where
    F: Fn(u64, &mut [u8]) -> std::result::Result<rdkafka::producer::DeliveryFuture, KafkaError>,
{
    let a = ctx.args;
    let mut stats = Stats::new(ctx.progress.clone());
    let meter = Meter::start();
    let pacer = Pacer::new(ctx.rate, a.records);
    let ticker = Ticker::start(&pacer);
    let mut next = 0u64;
    while next < pacer.n {
        let end = (next + a.txn_records).min(pacer.n);
        producer.begin_transaction()?;
        let t0 = Instant::now();
        let mut pending = Vec::new();
        while next < end {
            if pacer.due() <= next {
                Ticker::tick(&ticker).await;
                continue;
            }
            match send(next, key_buf) {
                Ok(f) => {
                    pending.push(f);
                    next += 1;
                }
                Err(e) if is_queue_full(&e) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => return Err(format!("rdkafka: send record {next}: {e}").into()),
            }
        }
        producer.commit_transaction(timeout)?;
        let latency = t0.elapsed();
        for f in pending {
            let d = f
                .await
                .map_err(|_| "rdkafka: delivery future canceled")?
                .map_err(|(e, _)| format!("rdkafka: record failed: {e}"))?;
            stats.record(latency, d.partition, d.offset);
        }
    }
    Ok((stats, meter.stop()))
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
    let producer: Arc<BaseProducer<BaseCtx>> = Arc::new(config(ctx).create_with_context(context)?);
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
