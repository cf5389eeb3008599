//! Producer semantics against librdkafka's mock cluster: linger and flush, batch.size,
//! buffer.memory and max.block.ms, both kinds of close, unknown topics, oversized records,
//! bad input, interceptors, and supervised restarts with exactly-once accounting.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::{ErrorKind, ProducerRecord};
use herald_actors::{GetMetrics, Outcome, Produce, ProduceBatch, Producer, ProducerInterceptor};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::consumer::read_back;
use crate::support::mock::Mock;
use crate::support::producer::until_batches_hold_all_memory;
use crate::support::{init_tracing, unique_topic};

fn start(mock: &Mock, extra: &[(&str, &str)]) -> Producer {
    let bootstrap = mock.bootstrap();
    let mut pairs = vec![("bootstrap.servers", bootstrap.as_str())];
    pairs.extend_from_slice(extra);
    Producer::from_pairs(pairs).expect("valid config")
}

/// A producer whose 16 KiB batches linger ten minutes: what holds memory stays unless
/// something sends it.
fn lingering(mock: &Mock, buffer_memory: &str, max_block: &str) -> Producer {
    lingering_with(mock, buffer_memory, max_block, &[])
}

/// [`lingering`], with `extra` settings.
fn lingering_with(
    mock: &Mock,
    buffer_memory: &str,
    max_block: &str,
    extra: &[(&str, &str)],
) -> Producer {
    let mut pairs = vec![
        ("buffer.memory", buffer_memory),
        ("batch.size", "16384"),
        ("linger.ms", "600000"),
        ("delivery.timeout.ms", "900000"),
        ("max.block.ms", max_block),
    ];
    pairs.extend_from_slice(extra);
    start(mock, &pairs)
}

fn value(i: usize) -> String {
    format!("{i:0>100}")
}

#[actix_rt::test]
async fn flush_sends_without_waiting_for_linger() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("flush");
    mock.create_topic(&topic, 1, 1);
    // A linger far longer than the test may take: only flush can get these records out.
    let producer = start(
        &mock,
        &[("linger.ms", "600000"), ("delivery.timeout.ms", "900000")],
    );
    let router = producer.router().clone();
    let sends: Vec<_> = (0..50)
        .map(|i| router.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    let started = Instant::now();
    producer.flush().await;
    for o in futures_util::future::join_all(sends).await {
        o.unwrap().expect("delivered by flush");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "flush ignored linger.ms"
    );
    let m = producer.metrics().await;
    assert_eq!(m.record_send_total, 50);
    assert!(producer.close(Duration::from_secs(5)).await);
}

#[actix_rt::test]
async fn linger_gathers_records_into_one_batch() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("linger");
    mock.create_topic(&topic, 1, 1);
    let producer = start(&mock, &[("linger.ms", "300")]);
    let router = producer.router().clone();
    let started = Instant::now();
    let sends: Vec<_> = (0..40)
        .map(|i| router.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    for o in futures_util::future::join_all(sends).await {
        o.unwrap().unwrap();
    }
    // The batch was held for linger.ms (a lower bound is behaviour, not performance).
    assert!(started.elapsed() >= Duration::from_millis(300));
    let m = producer.metrics().await;
    assert_eq!(m.request_total, 1, "all 40 records went in one request");
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// Sends 200 records of about 112 bytes at once to one partition, and returns the producer's
/// metrics after every record was delivered (and read back).
async fn burst_of_200(extra: &[(&str, &str)]) -> herald_actors::MetricsSnapshot {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("batch-size");
    mock.create_topic(&topic, 1, 1);
    let mut config = vec![("batch.size", "1024"), ("linger.ms", "50")];
    config.extend_from_slice(extra);
    let producer = start(&mock, &config);
    let router = producer.router().clone();
    let sends: Vec<_> = (0..200)
        .map(|i| {
            router.send(
                Produce::new(topic.clone())
                    .key(format!("k{i}"))
                    .value(value(i)),
            )
        })
        .collect();
    for o in futures_util::future::join_all(sends).await {
        o.unwrap().unwrap();
    }
    let m = producer.metrics().await;
    assert!(m.record_send_total == 200);
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 200, Duration::from_secs(20)).await;
    assert_eq!(back[&0].len(), 200);
    m
}

/// With Java's pipelining (`max.in.flight.batches.per.partition` above 1) batch.size bounds
/// every batch, as in Java.
#[actix_rt::test]
async fn batch_size_bounds_batches() {
    let m = burst_of_200(&[("max.in.flight.batches.per.partition", "5")]).await;
    // ~112 bytes per record: at most 8 fit in 1024 bytes with the 61-byte header.
    assert!(
        m.batch_size_max <= 1024,
        "batch-size-max {} over batch.size",
        m.batch_size_max
    );
    // And batches were filled (the burst waits out linger.ms): the largest had no room for
    // one more record, so 200 records took at least 25 batches, one per request here.
    assert!(
        m.batch_size_max > 1024 - 120,
        "batch-size-max {}: no batch was filled",
        m.batch_size_max
    );
    assert!(
        m.request_total >= 25,
        "{} requests for 200 records",
        m.request_total
    );
}

/// With one batch per partition in flight (the default) the batch that waits behind the one in
/// flight grows past batch.size, by steps of batch.size, never past max.request.size.
#[actix_rt::test]
async fn a_waiting_batch_grows_up_to_max_request_size() {
    let m = burst_of_200(&[("max.request.size", "4096")]).await;
    assert!(
        m.batch_size_max > 1024,
        "a batch grew past batch.size: batch-size-max {}",
        m.batch_size_max
    );
    assert!(
        m.batch_size_max <= 4096,
        "batch-size-max {} over max.request.size",
        m.batch_size_max
    );
}

/// A one-broker mock cluster with a fresh topic of `partitions` partitions (replication
/// factor 1), its broker answering every request after `round_trip`.
fn slow_mock(name: &str, partitions: i32, round_trip: Duration) -> (Mock, String) {
    let mock = Mock::start(1);
    let topic = unique_topic(name);
    mock.create_topic(&topic, partitions, 1);
    mock.cluster.broker_round_trip_time(1, round_trip).unwrap();
    (mock, topic)
}

/// At a low rate, with `max.in.flight.batches.per.partition=0`, an idempotent producer sends
/// a partition's next batch while the one before is out, as long as those out hold fewer than
/// 5 records (librdkafka's idempotent producer's rule) and a batch of the partition was
/// acknowledged (the broker holds the producer's state): a record does not wait a round trip
/// for the answer before it. By default (1) it does, and the waiting records go together
/// once the answer comes. Either way the records arrive once each, in order.
#[actix_rt::test]
async fn small_batches_go_beside_the_one_in_flight_with_0() {
    init_tracing();
    for (setting, want_requests) in [(Some("0"), 4), (None, 2)] {
        // A round trip far longer than the 120 ms over which the four records below come.
        let (mock, topic) = slow_mock("small-in-flight", 1, Duration::from_millis(400));
        let mut extra = vec![("linger.ms", "0")];
        extra.extend(setting.map(|n| ("max.in.flight.batches.per.partition", n)));
        let producer = start(&mock, &extra);
        let record = |i: usize| Produce::new(topic.clone()).partition(0).value(value(i));
        producer
            .send(record(0))
            .await
            .expect("the first record delivered");
        let before = producer.metrics().await.request_total;
        let mut sends = Vec::new();
        for i in 1..=4 {
            sends.push(producer.send(record(i)));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        for o in futures_util::future::join_all(sends).await {
            o.expect("delivered");
        }
        let requests = producer.metrics().await.request_total - before;
        assert_eq!(
            requests, want_requests,
            "Produce requests for four records 40 ms apart, {setting:?} batches per partition"
        );
        assert!(producer.close(Duration::from_secs(5)).await);
        let back = read_back(&mock.bootstrap(), &topic, 1, 5, Duration::from_secs(30)).await;
        let got: Vec<Vec<u8>> = back[&0]
            .iter()
            .map(|c| c.value.clone().expect("a value"))
            .collect();
        let want: Vec<Vec<u8>> = (0..5).map(|i| value(i).into_bytes()).collect();
        assert!(got == want, "once each, in order ({setting:?}): {got:?}");
    }
}

/// Grown batches' buffers are kept and serve later batches that grow (see `memory.rs`): the
/// records moved into them arrive whole and in order, and buffer.memory comes back to the
/// byte, though such a batch reserves its spare's bytes rather than batch.size.
#[actix_rt::test]
async fn grown_batch_buffers_serve_later_batches_and_memory_comes_back_whole() {
    init_tracing();
    // A round trip long enough for batches to grow behind the one in flight.
    let (mock, topic) = slow_mock("grown-spares", 2, Duration::from_millis(30));
    let producer = start(
        &mock,
        &[
            ("batch.size", "1024"),
            ("max.request.size", "8192"),
            ("buffer.memory", "262144"),
            ("linger.ms", "1"),
            // Memory lost to a miscount fails records in seconds, not minutes.
            ("max.block.ms", "3000"),
        ],
    );
    let (waves, per_wave) = (4, 1500);
    for wave in 0..waves {
        // A wave is more than buffer.memory holds, in batches and outside them: each record
        // waits for room (`ready`) rather than being refused.
        let mut sends = Vec::new();
        for i in wave * per_wave..(wave + 1) * per_wave {
            producer.ready().await;
            sends.push(
                producer.send(
                    Produce::new(topic.clone())
                        .partition((i % 2) as i32)
                        .value(value(i)),
                ),
            );
        }
        let outcomes = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(sends),
        )
        .await
        .unwrap_or_else(|_| panic!("wave {wave} not answered within 60 s"));
        for o in outcomes {
            o.expect("delivered");
        }
    }
    let m = producer.metrics().await;
    assert!(
        m.batch_size_max > 1024,
        "batches grew: batch-size-max {}",
        m.batch_size_max
    );
    assert_eq!(
        m.buffer_available_bytes, 262144,
        "every reservation released, spares' bytes included"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
    let total = waves * per_wave;
    let back = read_back(&mock.bootstrap(), &topic, 2, total, Duration::from_secs(30)).await;
    for p in 0..2 {
        let got: Vec<Vec<u8>> = back[&(p as i32)]
            .iter()
            .map(|c| c.value.clone().expect("a value"))
            .collect();
        let want: Vec<Vec<u8>> = (0..total)
            .filter(|i| i % 2 == p)
            .map(|i| value(i).into_bytes())
            .collect();
        assert_eq!(got.len(), want.len(), "partition {p}: every record once");
        assert!(got == want, "partition {p}: records whole and in order");
    }
}

#[actix_rt::test]
async fn full_buffer_memory_blocks_for_max_block_then_refuses_with_the_record() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("buffer");
    mock.create_topic(&topic, 3, 1);
    // Two batches fill buffer.memory. The router waiting for memory sends them at once (see
    // the test below), but the broker now takes 3 s to answer: the third partition's record
    // gets no memory and is refused after max.block.ms.
    let producer = lingering(&mock, "32768", "400");
    let router = producer.router().clone();
    let a = router.send(Produce::new(topic.clone()).partition(0).value("a"));
    let b = router.send(Produce::new(topic.clone()).partition(1).value("b"));
    until_batches_hold_all_memory(&producer).await;
    mock.cluster
        .broker_round_trip_time(1, Duration::from_secs(3))
        .unwrap();
    let started = Instant::now();
    let c = router
        .send(Produce::new(topic.clone()).partition(2).value("c"))
        .await
        .unwrap();
    let err = c.expect_err("no memory for a third batch");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "refused before max.block.ms"
    );
    assert!(
        matches!(err.kind(), ErrorKind::BufferExhausted { .. }),
        "{err}"
    );
    assert_eq!(
        err.record().and_then(|r| r.value.as_deref()),
        Some(&b"c"[..]),
        "record handed back"
    );
    // As it was sent: its own partition, and no timestamp (the one it was routed with
    // would go with it if it were sent again).
    let back = err.record().unwrap();
    assert_eq!((back.partition, back.timestamp), (Some(2), None));
    assert_eq!(producer.metrics().await.buffer_available_bytes, 0);
    producer.flush().await;
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(
        producer.metrics().await.buffer_available_bytes,
        32768,
        "memory released"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// Records of one `ProduceBatch` that each need a batch of their own, with no memory for
/// any (two lingering batches hold all of buffer.memory): each waits max.block.ms from when
/// it began to wait, as each blocked Java `send` does, so all fail within about max.block.ms
/// of the call. Before, each record's stall began when the one in front of it failed, and
/// the n-th failed after n times max.block.ms (the router's mailbox blocked all along).
#[actix_rt::test]
async fn records_waiting_for_memory_each_wait_max_block_not_one_after_another() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("buffer-queue");
    mock.create_topic(&topic, 6, 1);
    let producer = lingering(&mock, "32768", "800");
    let router = producer.router().clone();
    let a = router.send(Produce::new(topic.clone()).partition(0).value("a"));
    let b = router.send(Produce::new(topic.clone()).partition(1).value("b"));
    until_batches_hold_all_memory(&producer).await;
    // The batches go when a record waits for memory: answered too late to free any.
    mock.cluster
        .broker_round_trip_time(1, Duration::from_secs(4))
        .unwrap();
    let started = Instant::now();
    let records = (2..6)
        .map(|p| {
            Produce::new(topic.clone())
                .partition(p)
                .value(format!("{p}"))
        })
        .collect();
    let outcomes = router.send(ProduceBatch(records)).await.unwrap();
    let took = started.elapsed();
    for o in &outcomes {
        let err = o.as_ref().expect_err("no memory for another batch");
        assert!(
            matches!(err.kind(), ErrorKind::BufferExhausted { waited_ms: 800 }),
            "{err}"
        );
    }
    assert!(
        took < Duration::from_millis(2000),
        "four records refused after {took:?}: they waited one after another (3.2 s)"
    );
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(0))
        .unwrap();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert!(producer.close(Duration::from_secs(15)).await);
}

/// `Producer::send_when_ready` waits for room for up to max.block.ms, then gives the record
/// back with `BufferExhausted`, as Java's `send` throws after blocking that long (where
/// `Producer::send` refuses at once with `QueueFull`).
#[actix_rt::test]
async fn send_when_ready_waits_max_block_for_room_then_gives_the_record_back() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("when-ready");
    mock.create_topic(&topic, 1, 1);
    // One batch is all of buffer.memory.
    let producer = lingering(&mock, "16384", "500");
    let big = |c: u8| vec![c; 12_000];
    // Send, so that it can be spawned on a multi-threaded runtime.
    fn send<T: Send>(t: T) -> T {
        t
    }
    let first = send(producer.send_when_ready(Produce::new(topic.clone()).value(big(b'a')))).await;
    // Once the first record's batch has all the memory, and the broker takes 2 s to answer,
    // the second record is taken (none waits outside batches) and waits in the router for
    // memory (the first batch goes, and is answered too late); the third has no room.
    until_batches_hold_all_memory(&producer).await;
    mock.cluster
        .broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    let second = producer.send(Produce::new(topic.clone()).value(big(b'b')));
    let started = Instant::now();
    let third = producer
        .send_when_ready(Produce::new(topic.clone()).value(big(b'c')))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "handed over or refused before max.block.ms: {:?}",
        started.elapsed()
    );
    let err = third.await.expect_err("no room within max.block.ms");
    assert!(
        matches!(err.kind(), ErrorKind::BufferExhausted { waited_ms: 500 }),
        "{err}"
    );
    assert_eq!(
        err.record().and_then(|r| r.value.as_deref()),
        Some(&big(b'c')[..]),
        "record handed back"
    );
    let err = second.await.expect_err("no memory within max.block.ms");
    assert!(
        matches!(err.kind(), ErrorKind::BufferExhausted { .. }),
        "{err}"
    );
    // Routed before it waited, but handed back as sent: the partitioner chooses again and
    // the timestamp is new if it is sent again, as for any new record.
    let back = err.record().expect("record handed back");
    assert_eq!((back.partition, back.timestamp), (None, None));
    producer.flush().await;
    first.await.expect("the first record delivered");
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(30)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(values, [Some(big(b'a'))], "only the first record");
}

/// While a record waits for memory, the batches that linger go at once, as Java's accumulator
/// makes every batch sendable while a thread waits for memory: here linger.ms is ten
/// minutes, and the two batches that hold all of buffer.memory are delivered without a flush
/// once a third record needs memory, which it then gets.
#[actix_rt::test]
async fn lingering_batches_go_when_a_record_waits_for_memory() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("expedite");
    mock.create_topic(&topic, 2, 1);
    let producer = lingering(&mock, "32768", "60000");
    let big = |c: u8| vec![c; 12_000];
    let send =
        |p: i32, c: u8| producer.send(Produce::new(topic.clone()).partition(p).value(big(c)));
    let (a, b) = (send(0, b'a'), send(1, b'b'));
    until_batches_hold_all_memory(&producer).await;
    let c = producer
        .send_when_ready(Produce::new(topic.clone()).partition(0).value(big(b'c')))
        .await;
    for (name, outcome) in [("a", a), ("b", b)] {
        actix_rt::time::timeout(Duration::from_secs(30), outcome)
            .await
            .unwrap_or_else(|_| panic!("{name} still lingers while a record waits for memory"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    producer.flush().await;
    c.await.expect("the record that waited gets memory");
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 2, 3, Duration::from_secs(30)).await;
    let values = |p: i32| -> Vec<_> { back[&p].iter().map(|r| r.value.clone()).collect() };
    assert_eq!(values(0), [Some(big(b'a')), Some(big(b'c'))]);
    assert_eq!(values(1), [Some(big(b'b'))]);
}

/// Two lingering batches (partitions 0 and 1, records "a" and "b") hold all of
/// buffer.memory, the broker then answers after `rtt`, and a third record ("c", partition 2)
/// waits for memory (max.block.ms a minute: only the answers or a close end the wait).
/// Returns the mock, the topic, the producer and the three outcomes.
async fn waiting_for_memory(
    prefix: &str,
    rtt: Duration,
) -> (Mock, String, Producer, [impl Future<Output = Outcome>; 3]) {
    waiting_for_memory_in(prefix, rtt, false).await
}

/// [`waiting_for_memory`]; with `transactional`, the three records are sent in one open
/// transaction of a transactional producer.
async fn waiting_for_memory_in(
    prefix: &str,
    rtt: Duration,
    transactional: bool,
) -> (Mock, String, Producer, [impl Future<Output = Outcome>; 3]) {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic(prefix);
    mock.create_topic(&topic, 3, 1);
    let id = format!("{topic}-id");
    let extra = [("transactional.id", id.as_str())];
    let extra = if transactional { &extra[..] } else { &[] };
    let producer = lingering_with(&mock, "32768", "60000", extra);
    if transactional {
        producer.init_transactions().await.expect("init");
        producer.begin_transaction().await.expect("begin");
    }
    let send =
        |p: i32, v: &'static str| producer.send(Produce::new(topic.clone()).partition(p).value(v));
    let (a, b) = (send(0, "a"), send(1, "b"));
    until_batches_hold_all_memory(&producer).await;
    mock.cluster.broker_round_trip_time(1, rtt).unwrap();
    let c = send(2, "c");
    // Time for the router to take `c` and start waiting (its mailbox, and so `metrics()`,
    // is blocked from then on); the results do not depend on it.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    (mock, topic, producer, [a, b, c])
}

/// A close while a record waits for buffer.memory: the wait blocks the router's mailbox, so
/// before the fix the close waited behind it until memory freed or max.block.ms passed (a
/// minute here: with 20 s round trips the batches holding the memory are not even answered
/// in that time) before its own 2 s began. Now the close's timeout bounds the wait: the
/// record that waited is refused as closed (as Java's closed buffer pool fails the send
/// blocked in it), and the batches still unanswered when the 2 s are up are aborted.
#[actix_rt::test]
async fn close_during_a_memory_wait_keeps_its_own_timeout() {
    let (_mock, _, producer, [a, b, c]) =
        waiting_for_memory("close-stalled", Duration::from_secs(20)).await;
    let started = Instant::now();
    let flushed = producer.close(Duration::from_secs(2)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "close(2 s) took {took:?}: it waited for the memory the record waited for"
    );
    assert!(!flushed, "the broker answers nothing within 2 s");
    let err = c.await.expect_err("the record waiting for memory");
    assert!(matches!(err.kind(), ErrorKind::Closed), "{err}");
    assert_eq!(
        err.record().and_then(|r| r.value.as_deref()),
        Some(&b"c"[..]),
        "record handed back"
    );
    for (name, outcome) in [("a", a), ("b", b)] {
        let err = outcome
            .await
            .expect_err("unanswered when the close's time was up");
        assert!(matches!(err.kind(), ErrorKind::Aborted), "{name}: {err}");
    }
}

/// `metrics()` while a record waits for buffer.memory: Java's `metrics()` reads the registry
/// without going near the accumulator, so a send blocked for memory does not hold it. Before
/// the fix it went through the router's mailbox and waited for the stall (a minute here,
/// max.block.ms, as 20 s round trips answer nothing sooner).
#[actix_rt::test]
async fn metrics_answer_while_a_record_waits_for_memory() {
    let (_mock, _, producer, [_, _, c]) =
        waiting_for_memory("metrics-stalled", Duration::from_secs(20)).await;
    let started = Instant::now();
    let snapshot = actix_rt::time::timeout(Duration::from_secs(5), producer.metrics())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "metrics() still unanswered after {:?}: it waited behind the memory wait",
                started.elapsed()
            )
        });
    assert_eq!(
        snapshot.buffer_available_bytes, 0,
        "the batches hold it all"
    );
    assert!(!producer.close(Duration::ZERO).await);
    let err = c.await.expect_err("the record waiting for memory");
    assert!(matches!(err.kind(), ErrorKind::Closed), "{err}");
}

/// An abort while a record of the transaction waits for buffer.memory: the record is one the
/// abort fails anyway, and Java's `abortTransaction` does not wait for a `send` blocked for
/// memory. Before the fix the abort waited behind the stall in the router's mailbox, and the
/// record waited for memory until the batches ahead were answered (20 s round trips here),
/// or max.block.ms. Now the abort ends the wait: the record fails as aborted at once, its
/// record handed back, while the abort itself goes on (it waits for the batches in flight).
#[actix_rt::test]
async fn abort_fails_a_record_waiting_for_memory_at_once() {
    let (_mock, _, producer, [_a, _b, c]) =
        waiting_for_memory_in("abort-stalled", Duration::from_secs(20), true).await;
    let started = Instant::now();
    let abort = Box::pin(producer.abort_transaction());
    let c = Box::pin(actix_rt::time::timeout(Duration::from_secs(5), c));
    match futures_util::future::select(abort, c).await {
        futures_util::future::Either::Right((Ok(outcome), _abort)) => {
            let err = outcome.expect_err("the record waiting for memory");
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Transaction(herald::TransactionError::Aborted)
                ),
                "{err}"
            );
            assert_eq!(
                err.record().and_then(|r| r.value.as_deref()),
                Some(&b"c"[..]),
                "record handed back"
            );
        }
        futures_util::future::Either::Right((Err(_), _)) => panic!(
            "the record waiting for memory still had no outcome {:?} after the abort",
            started.elapsed()
        ),
        futures_util::future::Either::Left((r, _)) => {
            panic!("the abort answered ({r:?}) before the record waiting for memory")
        }
    }
    assert!(!producer.close(Duration::ZERO).await);
}

/// The close's timeout bounds a wait for memory but does not cut it short: a record that
/// gets its memory within the close's time was sent before the close and is delivered.
#[actix_rt::test]
async fn close_delivers_a_record_that_gets_memory_within_its_timeout() {
    let (mock, topic, producer, [a, b, c]) =
        waiting_for_memory("close-stalled-delivered", Duration::from_secs(1)).await;
    assert!(producer.close(Duration::from_secs(20)).await, "flushed");
    for (name, outcome) in [("a", a), ("b", b), ("c", c)] {
        outcome.await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let back = read_back(&mock.bootstrap(), &topic, 3, 3, Duration::from_secs(30)).await;
    let values = |p: i32| -> Vec<_> { back[&p].iter().map(|r| r.value.clone()).collect() };
    assert_eq!(values(0), [Some(b"a".to_vec())]);
    assert_eq!(values(1), [Some(b"b".to_vec())]);
    assert_eq!(values(2), [Some(b"c".to_vec())]);
}

#[actix_rt::test]
async fn buffer_memory_backpressure_still_delivers_everything() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("backpressure");
    mock.create_topic(&topic, 2, 1);
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(20))
        .unwrap();
    let producer = start(
        &mock,
        &[
            ("buffer.memory", "65536"),
            ("batch.size", "8192"),
            ("linger.ms", "1"),
        ],
    );
    let router = producer.router().clone();
    let sends: Vec<_> = (0..3000)
        .map(|i| router.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    for o in futures_util::future::join_all(sends).await {
        o.unwrap().expect("slow broker still gets everything");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&mock.bootstrap(), &topic, 2, 3000, Duration::from_secs(30)).await;
    assert_eq!(back.values().map(Vec::len).sum::<usize>(), 3000);
}

/// A partition's outcomes keep their order when its batches fail together, wherever each
/// waits: in flight (the broker takes 2 s to answer), sealed behind it, full and open in the
/// accumulator (`max.request.size` fits one record per batch). `close(0)` aborts them all;
/// the oldest is answered first, as Java fails its in-flight batches before its queued ones.
/// Before, the open and full batches were answered first and the one in flight last.
#[actix_rt::test]
async fn batches_failed_together_answer_their_records_in_order() {
    use actix::prelude::*;
    use herald_actors::Delivered;

    struct Inbox(Arc<std::sync::Mutex<Vec<u64>>>);
    impl Actor for Inbox {
        type Context = Context<Self>;
    }
    impl Handler<Delivered> for Inbox {
        type Result = ();
        fn handle(&mut self, d: Delivered, _: &mut Context<Self>) {
            assert!(d.outcome.is_err(), "{:?}", d.outcome);
            self.0.lock().unwrap().push(d.tag);
        }
    }

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("fail-order");
    mock.create_topic(&topic, 1, 1);
    let producer = start(
        &mock,
        &[
            ("linger.ms", "0"),
            ("batch.size", "100"),
            ("max.request.size", "400"),
            ("delivery.timeout.ms", "900000"),
        ],
    );
    let router = producer.router().clone();
    producer
        .send(Produce::new(topic.clone()).value("warm"))
        .await
        .expect("the warm-up record");
    mock.cluster
        .broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let inbox = Inbox(seen.clone()).start();
    for tag in 0..6u64 {
        router.do_send(
            Produce::new(topic.clone())
                .value(vec![b'x'; 250])
                .reply_to(inbox.clone().recipient())
                .tag(tag),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.send(GetMetrics).await.expect("router running");
    assert!(!producer.close(Duration::ZERO).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*seen.lock().unwrap(), (0..6).collect::<Vec<u64>>());
}

#[actix_rt::test]
async fn close_zero_aborts_unacknowledged_and_later_records_are_refused() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("close0");
    mock.create_topic(&topic, 1, 1);
    let producer = start(
        &mock,
        &[("linger.ms", "600000"), ("delivery.timeout.ms", "900000")],
    );
    let router = producer.router().clone();
    // A warm producer (metadata, producer id and connection ready), so that nothing but
    // close(0) itself keeps the lingering batches from their broker.
    let warm = router.send(Produce::new(topic.clone()).value("warm"));
    producer.flush().await;
    warm.await.unwrap().expect("the warm-up record");
    let sends: Vec<_> = (0..20)
        .map(|i| router.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    // Let the router take them in before closing (`GetMetrics` through its mailbox, behind
    // them; `Producer::metrics` does not go through the mailbox).
    router.send(GetMetrics).await.expect("router running");
    assert!(
        !producer.close(Duration::ZERO).await,
        "close(0) cannot flush"
    );
    for o in futures_util::future::join_all(sends).await {
        let err = o.unwrap().expect_err("aborted");
        assert_eq!(err.kind(), &ErrorKind::Aborted);
    }
    let after = router.send(Produce::new(topic.clone()).value("late")).await;
    match after {
        Ok(Err(e)) => {
            assert_eq!(e.kind(), &ErrorKind::Closed);
            assert_eq!(
                e.record().and_then(|r| r.value.as_deref()),
                Some(&b"late"[..])
            );
        }
        // The router may already be gone: the mailbox error is the refusal then.
        Err(_) => {}
        Ok(Ok(md)) => panic!("record accepted after close: {md:?}"),
    }
    let back = read_back(&mock.bootstrap(), &topic, 1, 21, Duration::from_secs(3)).await;
    let values: Vec<_> = back.values().flatten().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"warm".to_vec())],
        "aborted records must not reach the broker"
    );
}

/// A producer whose batches linger (for 10 minutes) on a one-broker mock, and a topic of one
/// partition there.
fn lingering_on_one_partition(name: &str) -> (Mock, String, Producer) {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic(name);
    mock.create_topic(&topic, 1, 1);
    let producer = start(
        &mock,
        &[("linger.ms", "600000"), ("delivery.timeout.ms", "900000")],
    );
    (mock, topic, producer)
}

/// `close(Duration::MAX)`, the Rust spelling of Java's `close()` (which waits for
/// `Long.MAX_VALUE` ms), flushes like any other close. Before the fix the close's deadline
/// was `now + timeout`, which overflows: the call panicked in the application's task.
#[actix_rt::test]
async fn close_without_a_time_limit_flushes() {
    let (mock, topic, producer) = lingering_on_one_partition("close-max");
    let sent = producer.send(Produce::new(topic.clone()).value("v"));
    assert!(producer.close(Duration::MAX).await, "flushed");
    sent.await.expect("delivered by the close");
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(20)).await;
    assert_eq!(back.values().map(Vec::len).sum::<usize>(), 1);
}

/// The same through a `Close` sent to the router directly: its deadline was `now + timeout`,
/// which overflowed and panicked the router's handler (the caller got a mailbox error, and
/// the router, restarted, stayed closed without ever shutting).
#[actix_rt::test]
async fn a_close_sent_to_the_router_without_a_time_limit_flushes() {
    let (mock, topic, producer) = lingering_on_one_partition("close-router-max");
    let router = producer.router().clone();
    let sent = router.send(Produce::new(topic.clone()).value("v"));
    let closed = router.send(herald_actors::Close {
        timeout: Duration::MAX,
    });
    assert_eq!(closed.await.ok(), Some(true), "flushed");
    sent.await
        .expect("answered")
        .expect("delivered by the close");
    assert_eq!(producer.fault_injection().panics(), 0);
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(20)).await;
    assert_eq!(back.values().map(Vec::len).sum::<usize>(), 1);
}

/// A close after another resolves with the first one's outcome: after `Close` with no time
/// (which aborts what it holds), `Producer::close` says nothing was flushed. Before, every
/// close after the first resolved to `true` at once, whatever became of the records.
#[actix_rt::test]
async fn a_close_after_another_reports_the_first_ones_outcome() {
    let (_mock, topic, producer) = lingering_on_one_partition("close-twice");
    let router = producer.router().clone();
    let sent = router.send(Produce::new(topic.clone()).value("v"));
    let first = router.send(herald_actors::Close {
        timeout: Duration::ZERO,
    });
    let again = router.send(herald_actors::Close {
        timeout: Duration::from_secs(5),
    });
    assert_eq!(first.await.ok(), Some(false), "close(0) flushes nothing");
    let err = sent.await.expect("answered").expect_err("aborted");
    assert_eq!(err.kind(), &ErrorKind::Aborted);
    assert_eq!(again.await.ok(), Some(false), "the first close's outcome");
    assert!(!producer.close(Duration::from_secs(5)).await);
}

/// A later close waits for the first one's outcome no longer than its own timeout: the
/// broker down, a close with no time limit cannot end, and a close of one second after it
/// says `false` after about a second.
#[actix_rt::test]
async fn a_later_close_keeps_to_its_own_timeout() {
    let (mock, topic, producer) = lingering_on_one_partition("close-later-timeout");
    let router = producer.router().clone();
    // Metadata and a connection first (a flush sends without waiting for linger.ms).
    let warm = router.send(Produce::new(topic.clone()).value("first"));
    producer.flush().await;
    warm.await.expect("answered").expect("delivered");
    mock.cluster.broker_down(1).unwrap();
    let sent = router.send(Produce::new(topic.clone()).value("v"));
    let first = router.send(herald_actors::Close {
        timeout: Duration::MAX,
    });
    let started = Instant::now();
    let later = router.send(herald_actors::Close {
        timeout: Duration::from_secs(1),
    });
    let later = tokio::time::timeout(Duration::from_secs(10), later)
        .await
        .expect("the later close keeps to its timeout");
    assert_eq!(later.ok(), Some(false));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The first close goes on, and ends once the broker is back.
    mock.cluster.broker_up(1).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first close ends once the broker is back");
    assert_eq!(first.ok(), Some(true));
    sent.await
        .expect("answered")
        .expect("delivered by the close");
}

#[actix_rt::test]
async fn close_with_timeout_flushes_everything() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("close");
    mock.create_topic(&topic, 2, 1);
    let producer = start(
        &mock,
        &[("linger.ms", "600000"), ("delivery.timeout.ms", "900000")],
    );
    let router = producer.router().clone();
    let sends: Vec<_> = (0..100)
        .map(|i| router.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    router.send(GetMetrics).await.expect("router running");
    assert!(producer.close(Duration::from_secs(10)).await);
    for o in futures_util::future::join_all(sends).await {
        o.unwrap().expect("flushed by close");
    }
    let back = read_back(&mock.bootstrap(), &topic, 2, 100, Duration::from_secs(20)).await;
    assert_eq!(back.values().map(Vec::len).sum::<usize>(), 100);
}

#[actix_rt::test]
async fn a_batch_refused_on_every_attempt_fails_at_delivery_timeout_naming_the_error() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("refused");
    mock.create_topic(&topic, 1, 1);
    let producer = start(
        &mock,
        &[
            ("linger.ms", "0"),
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "1500"),
            ("retry.backoff.ms", "1000"),
            ("retry.backoff.max.ms", "1000"),
        ],
    );
    // Refused at once, and again after 0.8-1 s; the next attempt would come after the
    // timeout, so the batch expires waiting out its backoff.
    let refusals = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 10];
    mock.cluster
        .request_errors(RDKafkaApiKey::Produce, &refusals);
    let started = Instant::now();
    let err = producer
        .send(Produce::new(topic.clone()).value("x"))
        .await
        .expect_err("every attempt is refused");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    match err.kind() {
        ErrorKind::DeliveryTimeout {
            timeout_ms: 1500,
            stage,
            last_error: Some(last),
        } => {
            assert_eq!(*stage, "waiting to be sent");
            assert!(last.starts_with("NOT_ENOUGH_REPLICAS"), "{last}");
        }
        other => panic!("expected a delivery timeout naming the refusal, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("(waiting to be sent; its last failed attempt: NOT_ENOUGH_REPLICAS"),
        "{err}"
    );
    assert_eq!(producer.metrics().await.record_retry_total, 2);
}

/// A Produce refusal that says the producer's metadata is stale (Java's
/// `InvalidMetadataException` codes, REPLICA_NOT_AVAILABLE and NETWORK_EXCEPTION among them)
/// asks for metadata before the retry, as Java's `Sender` does; one that says nothing of
/// metadata (REQUEST_TIMED_OUT) is only retried. The periodic refresh is ten minutes away.
#[actix_rt::test]
async fn refusals_naming_stale_metadata_refresh_it_and_others_do_not() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("stale-refusal");
    mock.create_topic(&topic, 1, 1);
    let producer = start(
        &mock,
        &[
            ("linger.ms", "0"),
            ("retry.backoff.ms", "50"),
            ("metadata.max.age.ms", "600000"),
        ],
    );
    producer
        .send(Produce::new(topic.clone()).value("warm"))
        .await
        .expect("warm-up");
    let refreshes = || async { producer.metrics().await.metadata_refresh_total };
    use RDKafkaRespErr::*;
    for (error, refreshed) in [
        (RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, false),
        (RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE, true),
        (RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION, true),
        (RD_KAFKA_RESP_ERR_LISTENER_NOT_FOUND, true),
        (RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, true),
    ] {
        let before = refreshes().await;
        mock.cluster
            .request_errors(RDKafkaApiKey::Produce, &[error]);
        producer
            .send(Produce::new(topic.clone()).value(format!("{error:?}")))
            .await
            .unwrap_or_else(|e| panic!("retried after {error:?}: {e}"));
        // The refresh is asked for with the retry; give it time to be made.
        let asked = Instant::now();
        while refreshes().await == before && asked.elapsed() < Duration::from_secs(2) {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            refreshes().await > before,
            refreshed,
            "{error:?}: a metadata refresh expected: {refreshed}"
        );
    }
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 6, Duration::from_secs(10)).await;
    assert_eq!(back[&0].len(), 6, "every record written once");
}

/// Two records for a topic the cluster does not have yet, sent 600 ms apart with a
/// max.block.ms of 1 s: the first fails at its time, and the second, still waiting, keeps
/// the topic asked for, so it is delivered once the topic appears. (The metadata actor stops
/// asking for a missing topic max.block.ms after it was last asked to; before the router
/// asked again for the records still waiting, the second failed though the topic came.)
#[actix_rt::test]
async fn a_record_behind_an_expired_one_keeps_its_topic_asked_for() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("late-topic");
    let missing = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    mock.cluster.topic_error(&topic, missing).unwrap();
    let producer = start(
        &mock,
        &[("max.block.ms", "1000"), ("retry.backoff.ms", "50")],
    );
    // Partition 0: the mock makes the topic with partitions of its own choosing.
    let first = producer.send(Produce::new(topic.clone()).partition(0).value("first"));
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let second = producer.send(Produce::new(topic.clone()).partition(0).value("second"));
    let err = first.await.expect_err("the topic does not exist yet");
    assert!(
        matches!(err.kind(), ErrorKind::MetadataTimeout { .. }),
        "{err}"
    );
    // Past the first record's max.block.ms, when the metadata actor would drop the topic.
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    mock.cluster
        .topic_error(&topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    let md = second.await.expect("delivered once the topic appeared");
    assert_eq!(md.offset, 0);
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(10)).await;
    assert_eq!(back[&0].len(), 1, "the second record, once");
}

#[actix_rt::test]
async fn unknown_topic_fails_after_max_block_naming_the_topic() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("nosuch");
    mock.cluster
        .topic_error(
            &topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    let producer = start(
        &mock,
        &[("max.block.ms", "500"), ("retry.backoff.ms", "50")],
    );
    let started = Instant::now();
    let err = producer
        .send(Produce::new(topic.clone()).value("x"))
        .await
        .expect_err("topic does not exist");
    assert!(started.elapsed() >= Duration::from_millis(500));
    match err.kind() {
        ErrorKind::MetadataTimeout {
            topic: t, cause, ..
        } => {
            assert_eq!(&**t, topic);
            // Java's message says no more than "not present in metadata"; the broker's
            // answer tells a missing topic from an unreachable cluster.
            let cause = cause.as_deref().expect("the broker's answer named");
            assert!(
                cause.contains("UNKNOWN_TOPIC_OR_PARTITION")
                    && cause.contains(&topic)
                    && cause.contains("does not exist"),
                "{cause}"
            );
            assert!(
                !cause.contains("unreachable"),
                "the broker was reachable: {cause}"
            );
        }
        other => panic!("expected a metadata timeout, got {other}"),
    }
    assert!(err.to_string().contains(&topic), "{err}");
    assert!(err.record().is_some(), "record handed back");
    // Nobody waits for the topic any more: the metadata actor stops asking for it (before
    // the fix it refreshed every retry.backoff.ms, 50 ms here, for ever).
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let before = producer.metrics().await.metadata_refresh_total;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let after = producer.metrics().await.metadata_refresh_total;
    assert!(
        after - before <= 1,
        "still polling for a topic nobody wants: {before} -> {after}"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// A topic the brokers refuse (TOPIC_AUTHORIZATION_FAILED in metadata) fails each record
/// with the brokers' answer, the second as fast as the first: each record for a topic it
/// waits for asks for it again, as Java's `send` does, rather than waiting for the periodic
/// refresh (metadata.max.age.ms, minutes away) and failing at max.block.ms with no cause.
/// Once the refusal is lifted (an ACL granted), the next record is delivered.
#[actix_rt::test]
async fn a_refused_topic_fails_every_record_with_the_refusal_and_recovers() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("refused");
    mock.create_topic(&topic, 1, 1);
    mock.cluster
        .topic_error(
            &topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let producer = start(&mock, &[("max.block.ms", "20000")]);
    for i in 0..2 {
        let started = Instant::now();
        let err = producer
            .send(Produce::new(topic.clone()).value("refused"))
            .await
            .expect_err("the topic is refused");
        match err.kind() {
            ErrorKind::Broker { code, topic: t, .. } => {
                assert_eq!(code.code(), 29, "record {i}: {err}");
                assert_eq!(&**t, topic);
            }
            other => panic!("record {i}: expected the brokers' refusal, got {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "record {i} waited {:?} for a refusal the brokers give at once",
            started.elapsed()
        );
    }
    mock.cluster
        .topic_error(&topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    producer
        .send(Produce::new(topic.clone()).value("granted"))
        .await
        .expect("the refusal lifted");
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(10)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(values, vec![Some(b"granted".to_vec())]);
}

/// A flush waits for the records sent before it, not for those sent after. Records for a
/// topic that has no metadata arrive every 300 ms, before and after the flush, each waiting
/// max.block.ms (2 s), so one always waits while the stream lasts: the flush returns once
/// those sent before it are done (the last within 2 s), and the lingering record it was
/// called for is delivered. Before, it waited until no record waited at all, for as long
/// as the stream went on (as it would with interceptors that always hold a record).
#[actix_rt::test]
async fn a_flush_is_not_held_by_records_sent_after_it() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("flush-stream");
    mock.create_topic(&topic, 1, 1);
    let missing = unique_topic("flush-stream-missing");
    mock.cluster
        .topic_error(
            &missing,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    let producer = start(
        &mock,
        &[
            ("linger.ms", "600000"),
            ("delivery.timeout.ms", "900000"),
            ("max.block.ms", "2000"),
        ],
    );
    let router = producer.router().clone();
    let lingering = router.send(Produce::new(topic.clone()).value("before"));
    let streaming = router.clone();
    let stream = actix_rt::spawn(async move {
        for i in 0..30 {
            streaming.do_send(Produce::new(missing.clone()).value(format!("{i}")));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), producer.flush())
        .await
        .expect("the flush returned while records were still sent after it");
    println!("flush took {:?}", started.elapsed());
    lingering
        .await
        .unwrap()
        .expect("the record before the flush is delivered");
    stream.abort();
    producer.close(Duration::ZERO).await;
}

/// Nothing listens at the bootstrap address: the metadata wait fails naming the refused
/// connections behind it, not only the missing topic.
#[actix_rt::test]
async fn unreachable_bootstrap_is_named_in_the_metadata_timeout() {
    init_tracing();
    let address = {
        let listener = crate::support::PortBand::Listeners
            .bind(1, |p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .pop()
            .unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let producer = Producer::from_pairs([
        ("bootstrap.servers", address.as_str()),
        ("max.block.ms", "1000"),
        ("reconnect.backoff.ms", "20"),
        ("reconnect.backoff.max.ms", "50"),
    ])
    .unwrap();
    let err = producer
        .send(Produce::new("t").value("x"))
        .await
        .expect_err("nothing is reachable");
    let ErrorKind::MetadataTimeout {
        cause: Some(cause), ..
    } = err.kind()
    else {
        panic!("expected a metadata timeout with a cause, got {err}");
    };
    let expected = format!("bootstrap {address} unreachable: ");
    assert!(cause.starts_with(&expected), "{cause}");
    assert!(cause.to_lowercase().contains("refused"), "{cause}");
    let text = err.to_string();
    assert!(
        text.starts_with("topic t not present in metadata after 1000 ms"),
        "{text}"
    );
    assert!(text.contains(&expected), "{text}");
    assert!(err.record().is_some(), "record handed back");
    assert!(producer.close(Duration::from_secs(5)).await);
}

#[actix_rt::test]
async fn bad_input_gets_specific_errors_and_disturbs_nothing() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("bad-input");
    mock.create_topic(&topic, 2, 1);
    let producer = start(&mock, &[("max.request.size", "2000")]);
    let router = producer.router().clone();
    let good1 = router.send(Produce::new(topic.clone()).value("before"));
    let too_large = router.send(Produce::new(topic.clone()).value(vec![0u8; 5000]));
    let bad_topic = router.send(Produce::new("no spaces allowed").value("x"));
    let bad_partition = router.send(Produce::new(topic.clone()).partition(7).value("x"));
    let good2 = router.send(Produce::new(topic.clone()).value("after"));

    let err = too_large.await.unwrap().expect_err("too large");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::RecordTooLarge {
                key: "max.request.size",
                max: 2000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.into_record().and_then(|r| r.value).map(|v| v.len()),
        Some(5000)
    );
    let err = bad_topic.await.unwrap().expect_err("invalid topic");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidTopic { .. }),
        "{err}"
    );
    let err = bad_partition
        .await
        .unwrap()
        .expect_err("partition out of range");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::PartitionOutOfRange {
                partition: 7,
                partitions: 2,
                ..
            }
        ),
        "{err}"
    );
    good1.await.unwrap().expect("unaffected");
    good2.await.unwrap().expect("unaffected");
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// Adds a header to every record and counts what it sees.
struct Tagging {
    sent: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
}

impl ProducerInterceptor for Tagging {
    fn name(&self) -> &str {
        "tagging"
    }

    fn on_send(
        &mut self,
        mut record: ProducerRecord,
    ) -> Result<ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        record
            .headers
            .push(herald::Header::new("intercepted", "yes"));
        Ok(record)
    }

    fn on_acknowledgement(&mut self, outcome: &Outcome) {
        if outcome.is_ok() {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Fails or panics on some records: must be logged and skipped.
struct Faulty;

impl ProducerInterceptor for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }

    fn on_send(
        &mut self,
        mut record: ProducerRecord,
    ) -> Result<ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        let v = record.value.clone().unwrap_or_default();
        if v.ends_with(b"7") {
            panic!("faulty interceptor panics on purpose");
        }
        if v.ends_with(b"3") {
            return Err("faulty interceptor fails on purpose".into());
        }
        record.headers.push(herald::Header::new("faulty", "passed"));
        Ok(record)
    }
}

#[actix_rt::test]
async fn interceptors_see_every_record_and_failures_are_skipped() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("interceptors");
    mock.create_topic(&topic, 1, 1);
    let (sent, acked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let config =
        herald::ProducerConfig::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())])
            .unwrap();
    let producer = Producer::builder(config)
        .interceptor(Tagging {
            sent: sent.clone(),
            acked: acked.clone(),
        })
        .interceptor(Faulty)
        .start()
        .unwrap();
    let router = producer.router().clone();
    let sends: Vec<_> = (0..100)
        .map(|i| router.send(Produce::new(topic.clone()).value(format!("{i}"))))
        .collect();
    for o in futures_util::future::join_all(sends).await {
        o.unwrap()
            .expect("a failing interceptor does not fail the record");
    }
    assert!(producer.close(Duration::from_secs(5)).await);
    assert_eq!(sent.load(Ordering::Relaxed), 100);
    assert_eq!(acked.load(Ordering::Relaxed), 100);
    let back = read_back(&mock.bootstrap(), &topic, 1, 100, Duration::from_secs(20)).await;
    let records = &back[&0];
    assert_eq!(records.len(), 100);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.value.as_deref(),
            Some(format!("{i}").as_bytes()),
            "order kept through interceptors"
        );
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        let faulty_skipped = i % 10 == 3 || i % 10 == 7;
        let expected: &[&str] = if faulty_skipped {
            &["intercepted"]
        } else {
            &["intercepted", "faulty"]
        };
        assert_eq!(names, expected, "headers of record {i}");
    }
}

/// Counts what the interceptors see: records in `on_send`, and acknowledgements of either
/// kind.
#[derive(Clone, Default)]
struct Counting {
    sent: Arc<AtomicUsize>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ProducerInterceptor for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn on_send(
        &mut self,
        record: ProducerRecord,
    ) -> Result<ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(record)
    }

    fn on_acknowledgement(&mut self, outcome: &Outcome) {
        let n = if outcome.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        n.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counting {
    /// Waits (up to 10 s) until `on_acknowledgement` has seen `ok` and `failed` outcomes:
    /// they reach the interceptors in a message of their own, after the record's outcome.
    async fn wait_acknowledged(&self, ok: usize, failed: usize) {
        let seen = || {
            (
                self.ok.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            )
        };
        let since = Instant::now();
        while seen() != (ok, failed) && since.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen(), (ok, failed), "acknowledged (ok, failed)");
    }
}

/// Records sent before `close` that are still with the interceptors when it is handled were
/// sent before it: the close flushes them like any other, instead of refusing them as closed
/// once they come back (and still reporting everything flushed).
#[actix_rt::test]
async fn close_flushes_records_still_with_the_interceptors() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("close-intercepted");
    mock.create_topic(&topic, 1, 1);
    let counting = Counting::default();
    let config =
        herald::ProducerConfig::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())])
            .unwrap();
    let producer = Producer::builder(config)
        .interceptor(counting.clone())
        .start()
        .unwrap();
    // `Producer::send` leaves the records in the intake: the close takes them in, hands
    // them to the interceptors, and only then can they come back.
    let sends: Vec<_> = (0..200)
        .map(|i| producer.send(Produce::new(topic.clone()).value(value(i))))
        .collect();
    assert!(producer.close(Duration::from_secs(10)).await);
    for (i, o) in futures_util::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        o.unwrap_or_else(|e| panic!("record {i} sent before close: {e}"));
    }
    counting.wait_acknowledged(200, 0).await;
    let back = read_back(&mock.bootstrap(), &topic, 1, 200, Duration::from_secs(20)).await;
    assert_eq!(back[&0].len(), 200);
}

/// Every record the interceptors' `on_send` saw gets one `on_acknowledgement`, refused
/// records too (Java's `onSendError`): too large, a partition the topic lacks, and a topic
/// whose metadata never comes.
#[actix_rt::test]
async fn interceptors_acknowledge_refused_records_too() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("ack-refused");
    mock.create_topic(&topic, 2, 1);
    let missing = unique_topic("ack-refused-missing");
    mock.cluster
        .topic_error(
            &missing,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    let counting = Counting::default();
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("max.request.size", "10000"),
        ("max.block.ms", "1000"),
    ])
    .unwrap();
    let producer = Producer::builder(config)
        .interceptor(counting.clone())
        .start()
        .unwrap();
    producer
        .send(Produce::new(topic.clone()).value("fine"))
        .await
        .expect("a record that fits");
    let too_large = producer
        .send(Produce::new(topic.clone()).value("x".repeat(20_000)))
        .await
        .expect_err("larger than max.request.size");
    assert!(
        matches!(too_large.kind(), ErrorKind::RecordTooLarge { .. }),
        "{too_large}"
    );
    let out_of_range = producer
        .send(Produce::new(topic.clone()).value("p7").partition(7))
        .await
        .expect_err("no partition 7");
    assert!(
        matches!(out_of_range.kind(), ErrorKind::PartitionOutOfRange { .. }),
        "{out_of_range}"
    );
    let no_metadata = producer
        .send(Produce::new(missing.clone()).value("lost"))
        .await
        .expect_err("its topic never shows up");
    assert!(
        matches!(no_metadata.kind(), ErrorKind::MetadataTimeout { .. }),
        "{no_metadata}"
    );
    assert_eq!(counting.sent.load(Ordering::Relaxed), 4);
    counting.wait_acknowledged(1, 3).await;
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// Records of a topic whose first record waits for metadata keep their order when a memory
/// stall comes between them: the take [first (T), u (U, needs memory), second (T)] parks
/// `first` for T's metadata, stalls on `u`, and queues `second` behind the stall. T's
/// metadata arrives during the stall (U's leader answers slowly, so memory frees later);
/// when the stall ends, `second` must not be routed ahead of `first`, which still waits.
#[actix_rt::test]
async fn a_memory_stall_does_not_let_a_record_pass_its_topics_waiting_records() {
    use herald_actors::ProduceBatch;

    init_tracing();
    let mock = Mock::start(3);
    let slow = unique_topic("stall-order-slow");
    mock.create_topic(&slow, 3, 1);
    let topic = unique_topic("stall-order");
    mock.create_topic(&topic, 1, 1);
    for p in 0..3 {
        mock.cluster.partition_leader(&slow, p, Some(1)).unwrap();
    }
    mock.cluster.partition_leader(&topic, 0, Some(2)).unwrap();
    // Bootstrapped from broker 2 alone, and nothing sent to broker 1 before the take: its
    // connection is not open when T's metadata is asked for, so the bootstrap connection is
    // asked (broker 2, quick), and T's metadata is in before U's batches are answered.
    let broker2 = {
        let bootstrap = mock.bootstrap();
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .expect("metadata client");
            let md = rdkafka::consumer::Consumer::fetch_metadata(
                &consumer,
                None,
                Duration::from_secs(10),
            )
            .expect("metadata");
            let b = md.brokers().iter().find(|b| b.id() == 2).expect("broker 2");
            format!("{}:{}", b.host(), b.port())
        })
        .await
        .unwrap()
    };
    let producer = Producer::from_pairs([
        ("bootstrap.servers", broker2.as_str()),
        ("buffer.memory", "32768"),
        ("batch.size", "16384"),
        ("linger.ms", "600000"),
        ("delivery.timeout.ms", "900000"),
        ("max.block.ms", "20000"),
    ])
    .expect("valid config");
    let router = producer.router().clone();
    // Two lingering batches hold all of buffer.memory.
    let lingering: Vec<_> = (0..2)
        .map(|p| router.send(Produce::new(slow.clone()).value("held").partition(p)))
        .collect();
    until_batches_hold_all_memory(&producer).await;
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(1500))
        .unwrap();
    let take = router.send(ProduceBatch(vec![
        Produce::new(topic.clone()).value("first").partition(0),
        Produce::new(slow.clone()).value("u").partition(2),
        Produce::new(topic.clone()).value("second").partition(0),
    ]));
    // T's batch lingers: a flush, queued behind the take, sends it.
    let (outcomes, ()) = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join(take, producer.flush()),
    )
    .await
    .expect("the take is answered");
    let outcomes = outcomes.unwrap();
    for o in &outcomes {
        o.as_ref().expect("every record of the take is written");
    }
    for o in futures_util::future::join_all(lingering).await {
        o.unwrap().expect("the lingering records");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    mock.cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .unwrap();
    let back = read_back(&mock.bootstrap(), &topic, 1, 2, Duration::from_secs(20)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"first".to_vec()), Some(b"second".to_vec())],
        "T's records in the order sent"
    );
}

/// A record waiting for its topic's metadata when `close(timeout)` is called, whose metadata
/// comes during the close, starts its partition's accumulator then; its leader is down, so
/// the close times out. The abort must reach that accumulator too: the record is answered
/// `Aborted` by the time `close` returns. Before, the close aborted only the accumulators it
/// found when it began, and the record was left to whatever came later.
#[actix_rt::test]
async fn close_aborts_a_partition_started_during_the_close() {
    init_tracing();
    let mock = Mock::start(2);
    let topic = unique_topic("close-late-partition");
    mock.create_topic(&topic, 1, 1);
    mock.cluster.partition_leader(&topic, 0, Some(2)).unwrap();
    let missing = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    mock.cluster.topic_error(&topic, missing).unwrap();
    mock.cluster.broker_down(2).unwrap();
    let producer = start(
        &mock,
        &[
            ("max.block.ms", "30000"),
            ("retry.backoff.ms", "50"),
            ("linger.ms", "0"),
        ],
    );
    let record = producer.send(Produce::new(topic.clone()).value("late"));
    // Waiting for the topic.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let appear = async {
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        mock.cluster
            .topic_error(&topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
            .unwrap();
    };
    let (flushed, ()) =
        futures_util::future::join(producer.close(Duration::from_secs(3)), appear).await;
    assert!(
        !flushed,
        "the leader being down kept the close from flushing"
    );
    let outcome = tokio::time::timeout(Duration::from_millis(200), record)
        .await
        .expect("answered by the time close returned");
    let err = outcome.expect_err("aborted");
    assert!(matches!(err.kind(), ErrorKind::Aborted), "{err}");
}
