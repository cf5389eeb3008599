//! Every codec x every acks value on Apache Kafka, read back with librdkafka's consumer: keys,
//! null keys, values, headers, timestamps, the murmur2 partition of every keyed record, and
//! reported offsets equal to the offsets read back (the checks of `crate::produce`).

use crate::produce::{produce_and_verify, ACKS, CODECS};
use crate::support::kafka::{shared, SharedLogsOnFailure};
use crate::support::{init_tracing, unique_topic};

#[actix_rt::test]
async fn kafka_every_codec_and_acks() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    for codec in CODECS {
        for acks in ACKS {
            let topic = unique_topic(&format!("kafka-{codec}-{acks}"));
            kafka.create_topic(&topic, 3, 1).await;
            // Apache Kafka reports -1 as LogAppendTime for CreateTime topics: the record's
            // own timestamp is the one reported, as in Java.
            produce_and_verify(
                &kafka.bootstrap(),
                &topic,
                3,
                500,
                &[("compression.type", codec), ("acks", acks)],
                None,
            )
            .await;
        }
    }
}

/// `batch.size=0`, which Java documents as "disables batching" and runs as 1: a Java config
/// with it starts, and a batch is ready at its first record, so records go without waiting
/// for `linger.ms` (a minute here, more than the time allowed). Records that arrive while
/// their partition's batch is out still share the next batch (see the README's `batch.size`).
#[actix_rt::test]
async fn kafka_batch_size_zero_sends_without_lingering() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("kafka-batch-size-0");
    kafka.create_topic(&topic, 3, 1).await;
    let bootstrap = kafka.bootstrap();
    let run = produce_and_verify(
        &bootstrap,
        &topic,
        3,
        300,
        &[("batch.size", "0"), ("linger.ms", "60000")],
        None,
    );
    tokio::time::timeout(std::time::Duration::from_secs(40), run)
        .await
        .expect("every record acknowledged and read back well before linger.ms");
}

/// `compression.lz4.level` other than Java's default 9 compresses with the hash-chain search
/// (LZ4 HC's method, as Java switches to LZ4 HC): batches of several 64 KiB blocks that the
/// broker (lz4-java) validates and librdkafka (liblz4, which refuses a frame that breaks the
/// block format's end rules) reads back.
#[actix_rt::test]
async fn kafka_lz4_levels() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    for level in ["1", "17"] {
        let topic = unique_topic(&format!("kafka-lz4-{level}"));
        kafka.create_topic(&topic, 3, 1).await;
        produce_and_verify(
            &kafka.bootstrap(),
            &topic,
            3,
            6_000,
            &[
                ("compression.type", "lz4"),
                ("compression.lz4.level", level),
                ("batch.size", "1000000"),
                ("linger.ms", "100"),
            ],
            None,
        )
        .await;
    }
}

/// `ProduceBatchTally` on Apache Kafka: the reply counts the delivered records and names each
/// failed one (refused before any batch: too large, a partition out of range) with its index
/// and error, in call order; what the count says was delivered is what a consumer reads back,
/// and nothing that failed is in the log. With an interceptor told of each acknowledgement
/// (the path that makes every record's metadata) the count is the same.
#[actix_rt::test]
async fn kafka_batch_tally_counts_deliveries_and_names_failed_records() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use herald::ErrorKind;
    use herald_actors::{Outcome, Produce, ProduceBatchTally, Producer, ProducerInterceptor};

    use crate::support::consumer::read_back;

    struct CountAcks(Arc<AtomicUsize>);
    impl ProducerInterceptor for CountAcks {
        fn name(&self) -> &str {
            "count-acks"
        }

        fn on_acknowledgement(&mut self, outcome: &Outcome) {
            if outcome.is_ok() {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    for intercepted in [false, true] {
        let topic = unique_topic("kafka-tally");
        kafka.create_topic(&topic, 3, 1).await;
        let acks = Arc::new(AtomicUsize::new(0));
        let config = herald::ProducerConfig::from_pairs([
            ("bootstrap.servers", kafka.bootstrap().as_str()),
            ("max.request.size", "4000"),
        ])
        .unwrap();
        let mut builder = Producer::builder(config);
        if intercepted {
            builder = builder.interceptor(CountAcks(acks.clone()));
        }
        let producer = builder.start().unwrap();
        let (too_large, out_of_range) = ([100, 900], 500);
        let records: Vec<Produce> = (0..1_000usize)
            .map(|i| {
                let p = Produce::new(topic.clone()).key(format!("k{}", i % 13));
                if too_large.contains(&i) {
                    p.value(vec![b'x'; 5_000])
                } else if i == out_of_range {
                    p.partition(7).value(i.to_string())
                } else {
                    p.value(i.to_string())
                }
            })
            .collect();
        let tally = producer
            .router()
            .send(ProduceBatchTally(records))
            .await
            .unwrap();
        assert_eq!(tally.delivered, 997, "intercepted: {intercepted}");
        let failed: Vec<usize> = tally.failed.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, [100, 500, 900], "failed records in call order");
        for (i, e) in &tally.failed {
            if *i == out_of_range {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::PartitionOutOfRange { partition: 7, .. }
                    ),
                    "{e}"
                );
            } else {
                assert!(matches!(e.kind(), ErrorKind::RecordTooLarge { .. }), "{e}");
            }
        }
        assert!(producer.close(Duration::from_secs(10)).await);
        if intercepted {
            // Acknowledgements reach the interceptor's actor as messages of their own.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while acks.load(Ordering::Relaxed) < 997 && std::time::Instant::now() < deadline {
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                acks.load(Ordering::Relaxed),
                997,
                "the interceptor saw each one"
            );
        }
        let back = read_back(&kafka.bootstrap(), &topic, 3, 997, Duration::from_secs(30)).await;
        let mut values: Vec<usize> = back
            .values()
            .flatten()
            .map(|c| {
                String::from_utf8_lossy(c.value.as_deref().unwrap())
                    .parse()
                    .unwrap()
            })
            .collect();
        values.sort_unstable();
        let expected: Vec<usize> = (0..1_000)
            .filter(|i| !too_large.contains(i) && *i != out_of_range)
            .collect();
        assert_eq!(values, expected, "exactly the delivered records, once each");
    }
}

/// What a producer holds, in batches and outside them, is bounded by buffer.memory. With its
/// broker frozen (SIGSTOP), a producer's batches fill buffer.memory and its router stalls;
/// then `Producer::send` takes one more record (which waits for memory), refusing the rest
/// at once with `QueueFull` and handing each back, instead of holding every record sent for
/// as long as the broker is away. `ready()` waits while that lasts and returns once the
/// broker is back, and `send_when_ready` waits for room instead of refusing; records sent
/// after `ready()` are all taken. Read back: every record once, the ones taken first in call
/// order, then the ones that waited, then the ones sent again.
#[actix_rt::test]
async fn kafka_a_full_queue_refuses_at_once_and_ready_waits_for_room() {
    use std::time::Duration;

    use futures_util::FutureExt;
    use herald::ErrorKind;
    use herald_actors::{Produce, Producer};

    use crate::support::consumer::{read_back, read_indexes};
    use crate::support::kafka::{Kafka, Options};

    init_tracing();
    let mut kafka = Kafka::start(Options::single());
    let topic = unique_topic("kafka-queue-full");
    kafka.create_topic(&topic, 1, 1).await;
    const LIMIT: usize = 131_072;
    const N: usize = 2_000;
    let limit = LIMIT.to_string();
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        ("buffer.memory", limit.as_str()),
        ("batch.size", "16384"),
        ("max.block.ms", "120000"),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    let value = |i: usize| format!("{i:0500}");
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    // Sends record `i`; tells whether it was refused.
    let mut send = |i: usize| {
        let mut fut = Box::pin(producer.send(Produce::new(topic.clone()).value(value(i))));
        match fut.as_mut().now_or_never() {
            None => pending.push((i, fut)),
            Some(Err(e)) if matches!(e.kind(), ErrorKind::QueueFull { .. }) => {
                let back = e.record().and_then(|r| r.value.clone());
                assert_eq!(back.as_deref(), Some(value(i).as_bytes()), "handed back");
                refused.push(i);
                return true;
            }
            Some(other) => panic!("record {i}: {other:?}"),
        }
        false
    };
    // Metadata, connection and producer id first.
    send(0);
    producer.flush().await;
    kafka.freeze(1);
    for i in 1..N {
        send(i);
    }
    // Once the router has taken what it could into batches and stalled, the intake fills
    // again: the next records are refused.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let mut n = N;
    while !send(n) {
        n += 1;
        assert!(n < 2 * N, "no record refused after buffer.memory filled");
    }
    let n = n + 1;
    let mut ready = Box::pin(producer.ready());
    assert!(
        actix_rt::time::timeout(Duration::from_secs(1), ready.as_mut())
            .await
            .is_err(),
        "ready while the queue is full"
    );
    // A take the router is still routing counts twice (its records, and the batches they
    // went into) until it is routed: on a loaded machine the router stalled only after the
    // refusal above, and the room that then appeared (no memory freed) took a record. Fill
    // it as any caller would, and the bound still holds.
    let mut n = n;
    while !send(n) {
        n += 1;
        assert!(n < 3 * N, "no record refused after the router stalled");
    }
    let n = n + 1;
    // Record 0 (delivered before the freeze), the records in batches (at most buffer.memory),
    // and one waiting for memory.
    assert!(
        pending.len() * 500 <= LIMIT + 2 * 500,
        "{} records of 500 bytes taken: more than buffer.memory holds",
        pending.len()
    );
    // `send_when_ready` waits for room instead: a loop of them stalls while the broker is
    // frozen and goes on once it is back, nothing refused.
    const WAITING: usize = 50;
    let handed_over = std::cell::Cell::new(0);
    let waiting = async {
        let mut outcomes = Vec::new();
        for i in n..n + WAITING {
            let p = Produce::new(topic.clone()).value(value(i));
            outcomes.push((i, producer.send_when_ready(p).await));
            handed_over.set(handed_over.get() + 1);
        }
        outcomes
    };
    let thaw = async {
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(handed_over.get(), 0, "handed over while the queue is full");
        kafka.thaw(1);
    };
    let (waited, ()) = futures_util::join!(waiting, thaw);
    let n = n + WAITING;
    actix_rt::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("ready once the broker is back");
    let mut again = Vec::new();
    for &i in &refused {
        producer.ready().await;
        let mut fut = Box::pin(producer.send(Produce::new(topic.clone()).value(value(i))));
        if let Some(Err(e)) = fut.as_mut().now_or_never() {
            panic!("record {i} refused after ready: {e}");
        }
        again.push((i, fut));
    }
    let mut order = Vec::new();
    type Outcome = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<herald::RecordMetadata, herald::ProduceError>>>,
    >;
    let waited = waited
        .into_iter()
        .map(|(i, fut)| (i, Box::pin(fut) as Outcome));
    let pending = pending.into_iter().map(|(i, fut)| (i, fut as Outcome));
    let again = again.into_iter().map(|(i, fut)| (i, fut as Outcome));
    for (offset, (i, fut)) in pending.chain(waited).chain(again).enumerate() {
        let meta = fut.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(meta.offset, offset as i64, "record {i}");
        order.push(i);
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, n, Duration::from_secs(30)).await;
    assert_eq!(
        read_indexes(&back, 0),
        order,
        "taken first, then sent again"
    );
    let mut sorted = order;
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "each record once");
}

/// A broker quota throttles the producer: Kafka answers a Produce request with
/// `throttle_time_ms` and then stops reading the connection for that long (KIP-219). Herald
/// holds its next request until the throttle ends, as Java does, so no request lies unread
/// on the muted socket: with request.timeout.ms shorter than the throttles, no request times
/// out and no record is sent again. Every record is read back once, in order.
#[actix_rt::test]
async fn kafka_a_throttled_producer_waits_out_the_throttle() {
    use std::time::Duration;

    use herald_actors::{Produce, Producer};

    use crate::support::consumer::{read_back, read_indexes};

    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("kafka-throttled");
    kafka.create_topic(&topic, 1, 1).await;
    let client_id = unique_topic("herald-throttled");
    kafka.set_producer_quota(&client_id, 200_000).await;
    const N: usize = 1_500;
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        ("client.id", client_id.as_str()),
        ("request.timeout.ms", "1000"),
        ("delivery.timeout.ms", "120000"),
        ("linger.ms", "20"),
        ("batch.size", "262144"),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    // The quota reaches the broker through the cluster's metadata: until it does, records go
    // through unthrottled. Send until a response carries a throttle.
    let mut futures = Vec::new();
    let started = std::time::Instant::now();
    while producer.metrics().await.produce_throttle_time_max == 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never throttled"
        );
        let i = futures.len();
        futures.push(producer.send(Produce::new(topic.clone()).value(format!("{i:01000}"))));
        if i % 100 == 99 {
            producer.flush().await;
        }
    }
    let first = futures.len();
    for i in first..first + N {
        futures.push(producer.send(Produce::new(topic.clone()).value(format!("{i:01000}"))));
    }
    let n = futures.len();
    for (i, f) in futures.into_iter().enumerate() {
        let meta = f.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(meta.offset, i as i64, "record {i}");
    }
    let m = producer.metrics().await;
    eprintln!(
        "{n} records in {:.1} s; longest throttle {} ms, {} requests, {} retries",
        started.elapsed().as_secs_f64(),
        m.produce_throttle_time_max,
        m.request_total,
        m.record_retry_total
    );
    assert!(
        m.produce_throttle_time_max > 1000.0,
        "throttles longer than request.timeout.ms: {} ms",
        m.produce_throttle_time_max
    );
    assert_eq!(
        m.record_retry_total, 0,
        "a request timed out on the muted socket"
    );
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, n, Duration::from_secs(30)).await;
    assert_eq!(
        read_indexes(&back, 0),
        (0..n).collect::<Vec<_>>(),
        "once each, in order"
    );
}

/// A batch answered while it still waits in its connection's queue is not written after:
/// the producer said it failed, so it must not be in the log. A quota throttles the
/// producer (KIP-219), its connection holds its batches while the throttle lasts, and their
/// delivery timeout (1 s) passes there. Each record read back must have been reported
/// delivered at its offset, or failed as possibly written; none reported "never sent" may
/// be in the log, and what is there is in order, once each. With idempotence too: Kafka
/// took such batches (when the connection still wrote them) at their old epoch.
#[actix_rt::test]
async fn kafka_a_batch_expired_in_its_connections_queue_is_not_written() {
    expired_in_the_connections_queue("false").await;
}

#[actix_rt::test]
async fn kafka_an_idempotent_batch_expired_in_its_connections_queue_is_not_written() {
    expired_in_the_connections_queue("true").await;
}

async fn expired_in_the_connections_queue(idempotence: &str) {
    use std::time::Duration;

    use herald_actors::{Produce, Producer};
    use rdkafka::consumer::{BaseConsumer, Consumer};

    use crate::support::consumer::{read_back, read_indexes};

    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic(&format!("kafka-expired-unsent-{idempotence}"));
    kafka.create_topic(&topic, 3, 1).await;
    let client_id = unique_topic(&format!("herald-expired-unsent-{idempotence}"));
    kafka.set_producer_quota(&client_id, 100_000).await;
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        ("client.id", client_id.as_str()),
        ("request.timeout.ms", "1000"),
        ("delivery.timeout.ms", "1000"),
        ("linger.ms", "0"),
        ("enable.idempotence", idempotence),
        // One request out at a time, so none is written to the muted socket: the others wait
        // in the connection's queue while the throttle lasts.
        ("max.in.flight.requests.per.connection", "1"),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    // Until the quota reaches the broker, records go through unthrottled; then a burst
    // outruns it, and what the throttle holds expires.
    let mut futures = Vec::new();
    let started = std::time::Instant::now();
    let mut burst_from = None;
    while burst_from.is_none_or(|from| futures.len() < from + 3_000) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never throttled"
        );
        let i = futures.len();
        let record = Produce::new(topic.clone()).partition(i as i32 % 3);
        futures.push(producer.send(record.value(format!("{i:01000}"))));
        if burst_from.is_none() {
            if producer.metrics().await.produce_throttle_time_max > 0.0 {
                burst_from = Some(futures.len());
            } else if i % 100 == 99 {
                producer.flush().await;
            }
        }
    }
    let mut outcomes = Outcomes::default();
    for (i, f) in futures.into_iter().enumerate() {
        outcomes.note(i, f.await);
    }
    // The connection writes what it still holds once the throttle ends: wait for that, with
    // a record of each partition sent after the rest and delivered.
    let mut next = outcomes.count;
    for p in 0..3 {
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "partition {p} never took a record after the burst"
            );
            let record = Produce::new(topic.clone())
                .partition(p)
                .value(format!("{next:01000}"));
            next += 1;
            if outcomes.note(next - 1, producer.send(record).await) {
                break;
            }
        }
    }
    let Outcomes {
        count: n,
        delivered,
        never_sent,
        unsent,
        maybe_written,
    } = outcomes;
    eprintln!(
        "{n} records: {} delivered, {} expired in their connection's queue, {unsent} in the \
         accumulator, {maybe_written} in flight; longest throttle {} ms",
        delivered.len(),
        never_sent.len(),
        producer.metrics().await.produce_throttle_time_max
    );
    assert!(
        !never_sent.is_empty(),
        "no batch expired while its connection held it"
    );
    assert!(producer.close(Duration::from_secs(10)).await);
    // What the log holds: every partition up to its end.
    let (bootstrap, t) = (kafka.bootstrap(), topic.clone());
    let in_log: usize = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        (0..3)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&t, p, Duration::from_secs(10))
                    .unwrap();
                (high - low) as usize
            })
            .sum()
    })
    .await
    .unwrap();
    let back = read_back(
        &kafka.bootstrap(),
        &topic,
        3,
        in_log,
        Duration::from_secs(30),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for p in 0..3 {
        let indexes = read_indexes(&back, p);
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: out of order or twice"
        );
        for (record, offset) in indexes.iter().zip(back[&p].iter().map(|c| c.offset)) {
            if let Some(&at) = delivered.get(record) {
                assert_eq!(
                    at,
                    (p, offset),
                    "record {record} is not where it was reported"
                );
            }
            seen.insert(*record);
        }
    }
    let written_after_failing: Vec<_> = never_sent.iter().filter(|i| seen.contains(i)).collect();
    assert!(
        written_after_failing.is_empty(),
        "{} records reported never sent are in the log: {:?}",
        written_after_failing.len(),
        &written_after_failing[..written_after_failing.len().min(10)]
    );
    let missing: Vec<_> = delivered.keys().filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "delivered but not in the log: {missing:?}"
    );
}

/// The records of [`expired_in_the_connections_queue`] by outcome.
#[derive(Default)]
struct Outcomes {
    count: usize,
    /// Record → (partition, offset) reported.
    delivered: std::collections::BTreeMap<usize, (i32, i64)>,
    /// Expired while their connection held them: never written.
    never_sent: Vec<usize>,
    /// Expired in the accumulator (never handed to a connection).
    unsent: usize,
    /// Expired after a request took them: possibly written.
    maybe_written: usize,
}

impl Outcomes {
    /// Notes record `i`'s outcome; true if delivered.
    fn note(
        &mut self,
        i: usize,
        outcome: Result<herald::RecordMetadata, herald::ProduceError>,
    ) -> bool {
        use herald::ErrorKind;
        self.count = self.count.max(i + 1);
        match outcome {
            Ok(meta) => {
                self.delivered.insert(i, (meta.partition, meta.offset));
                return true;
            }
            Err(e) => match e.kind() {
                ErrorKind::DeliveryTimeout { stage, .. } => match *stage {
                    "queued for its connection, never sent" => self.never_sent.push(i),
                    "in the accumulator" | "waiting to be sent" => self.unsent += 1,
                    "in flight"
                    | "waiting to be sent again, an earlier attempt may be in the log" => {
                        self.maybe_written += 1
                    }
                    other => panic!("record {i}: unknown stage {other}"),
                },
                other => panic!("record {i}: {other}"),
            },
        }
        false
    }
}

/// A batch the broker refuses for some of its records (KIP-467): on a compacted topic a
/// record without a key is invalid, and Apache Kafka refuses the whole batch with
/// INVALID_RECORD, naming that record by index in `record_errors`. As in Java, only the named
/// record fails with the broker's error, in the broker's words; the others fail as refused with their batch (Java:
/// "part of a batch which had one more more invalid records"), so the application can tell
/// them apart and send them again, and then they are written.
#[actix_rt::test]
async fn kafka_invalid_records_fail_alone_and_their_batch_mates_can_be_sent_again() {
    use std::time::Duration;

    use futures_util::future::join_all;
    use herald::{ErrorKind, KafkaCode};
    use herald_actors::{Produce, Producer};

    use crate::support::consumer::read_back;

    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("kafka-invalid-record");
    kafka
        .create_topic_with(&topic, 1, 1, &[("cleanup.policy", "compact")])
        .await;
    let producer = Producer::from_pairs([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        // One batch for the three records.
        ("linger.ms", "500"),
    ])
    .unwrap();
    let record = |i: usize| {
        let p = Produce::new(topic.clone())
            .partition(0)
            .value(format!("v{i}"));
        if i == 1 {
            p
        } else {
            p.key(format!("k{i}"))
        }
    };
    let outcomes = join_all((0..3).map(|i| producer.send(record(i)))).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let e = outcome.as_ref().expect_err("the batch is refused");
        if i == 1 {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Broker {
                        code: KafkaCode::INVALID_RECORD,
                        ..
                    }
                ),
                "record {i}: {e}"
            );
            // The broker's words for that record (not the partition's summary of all the
            // batch's record errors), as Java's exception carries them.
            let said = e.to_string();
            assert!(
                said.contains("Compacted topic cannot accept message without key")
                    && !said.contains("record errors in total"),
                "record {i}: {e}"
            );
        } else {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::RefusedWithBatch {
                        code: KafkaCode::INVALID_RECORD,
                        partition: 0,
                        ..
                    }
                ),
                "record {i}: {e}"
            );
        }
    }
    // The records refused with their batch go again, alone, and are written.
    for i in [0, 2] {
        producer.send(record(i)).await.expect("written");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, 2, Duration::from_secs(30)).await;
    let values: Vec<_> = back
        .values()
        .flatten()
        .map(|c| c.value.clone().unwrap())
        .collect();
    assert_eq!(values, [b"v0".to_vec(), b"v2".to_vec()]);
}

/// A negative timestamp is refused, with the record handed back, as Java's `ProducerRecord`
/// refuses it (Kafka reads -1 as "no timestamp"; Apache Kafka writes other negative ones as
/// they are); 0 is a timestamp like any other.
#[actix_rt::test]
async fn kafka_a_negative_timestamp_is_refused() {
    use std::time::Duration;

    use herald::ErrorKind;
    use herald_actors::{Produce, Producer};

    use crate::support::consumer::read_back;

    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("kafka-negative-timestamp");
    kafka.create_topic(&topic, 1, 1).await;
    let producer =
        Producer::from_pairs([("bootstrap.servers", kafka.bootstrap().as_str())]).unwrap();
    for timestamp in [-1, -5, i64::MIN] {
        let e = producer
            .send(
                Produce::new(topic.clone())
                    .value("negative")
                    .timestamp(timestamp),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(e.kind(), ErrorKind::InvalidTimestamp { timestamp: t } if *t == timestamp),
            "{e}"
        );
        assert_eq!(
            e.record().and_then(|r| r.timestamp),
            Some(timestamp),
            "handed back"
        );
    }
    producer
        .send(Produce::new(topic.clone()).value("zero").timestamp(0))
        .await
        .expect("written");
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, 1, Duration::from_secs(30)).await;
    let written: Vec<_> = back
        .values()
        .flatten()
        .map(|c| (c.value.clone().unwrap(), c.timestamp))
        .collect();
    assert_eq!(written, [(b"zero".to_vec(), Some(0))]);
}
