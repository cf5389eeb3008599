//! End to end: produce through the actor system to real brokers (librdkafka's mock cluster
//! with 3 brokers, and Tansu as a separate process), read everything back with librdkafka's
//! consumer, and check each record arrived once, in order per partition, with its key, value,
//! headers and timestamp, at the offset Herald reported.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_actors::{Produce, Producer};
use rdkafka::config::ClientConfig;

use crate::support::consumer::{read_back, read_back_with, Consumed};
use crate::support::mock::Mock;
use crate::support::tansu::Tansu;
use crate::support::{init_tracing, unique_topic};

const BASE_TS: i64 = 1_700_000_000_000;

/// What record `i` of a run looks like: every third record has a null key; keys repeat so
/// several records share a partition.
fn record(topic: &str, i: usize) -> Produce {
    let mut p = Produce::new(topic.to_string())
        .value(format!("value-{i}"))
        .header("idx", i.to_string())
        .header("kind", if i % 2 == 0 { "even" } else { "odd" })
        .timestamp(BASE_TS + i as i64);
    if i % 3 != 0 {
        p = p.key(format!("key-{}", i % 17));
    }
    p
}

/// Produces `n` records with the given config, checks every outcome and what the broker holds.
///
/// `log_append_time` is the LogAppendTime the broker reports for CreateTime topics: real Kafka
/// and Tansu send -1 (so the record's CreateTime is reported, as in Java), librdkafka's mock
/// always sends 1234 (`rdkafka_mock_handlers.c`), which Java and librdkafka report as is.
pub(crate) async fn produce_and_verify(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    extra: &[(&str, &str)],
    log_append_time: Option<i64>,
) {
    let mut read_back = ClientConfig::new();
    read_back.set("bootstrap.servers", bootstrap);
    produce_and_verify_with(
        bootstrap,
        read_back,
        topic,
        partitions,
        n,
        extra,
        log_append_time,
    )
    .await
}

/// [`produce_and_verify`], reading back with a consumer built from `read_back` (another
/// listener, or librdkafka's security settings).
pub(crate) async fn produce_and_verify_with(
    bootstrap: &str,
    read_back: ClientConfig,
    topic: &str,
    partitions: i32,
    n: usize,
    extra: &[(&str, &str)],
    log_append_time: Option<i64>,
) {
    let mut pairs = vec![
        ("bootstrap.servers", bootstrap),
        ("linger.ms", "5"),
        ("batch.size", "4096"),
    ];
    pairs.extend_from_slice(extra);
    let label = format!("{extra:?}");
    let producer = Producer::from_pairs(pairs).expect("valid config");
    let router = producer.router().clone();
    let sends: Vec<_> = (0..n).map(|i| router.send(record(topic, i))).collect();
    let outcomes = futures_util::future::join_all(sends).await;
    let mut sent: Vec<(i32, i64)> = Vec::with_capacity(n);
    for (i, o) in outcomes.into_iter().enumerate() {
        let md = o
            .expect("mailbox")
            .unwrap_or_else(|e| panic!("{label}: record {i} failed: {e}"));
        assert_eq!(&*md.topic, topic);
        let acks0 = extra.contains(&("acks", "0"));
        let expected_ts = match log_append_time {
            Some(t) if !acks0 => t,
            _ => BASE_TS + i as i64,
        };
        assert_eq!(
            md.timestamp, expected_ts,
            "{label}: timestamp of record {i}"
        );
        sent.push((md.partition, md.offset));
    }
    let metrics = producer.metrics().await;
    assert_eq!(
        metrics.record_send_total, n as u64,
        "{label}: record-send-total"
    );
    assert_eq!(metrics.record_error_total, 0, "{label}");
    assert!(
        producer.close(Duration::from_secs(10)).await,
        "{label}: close flushed everything"
    );

    let consumed = read_back_with(read_back, topic, partitions, n, Duration::from_secs(120)).await;
    verify(
        &label,
        topic,
        partitions,
        &sent,
        &consumed,
        extra.contains(&("acks", "0")),
    );
}

fn verify(
    label: &str,
    topic: &str,
    partitions: i32,
    sent: &[(i32, i64)],
    consumed: &BTreeMap<i32, Vec<Consumed>>,
    acks0: bool,
) {
    let total: usize = consumed.values().map(Vec::len).sum();
    assert_eq!(
        total,
        sent.len(),
        "{label}: every record exactly once ({topic})"
    );
    // Per partition, the broker's order is the send order.
    let mut expected: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, (p, _)) in sent.iter().enumerate() {
        expected.entry(*p).or_default().push(i);
    }
    for (p, indexes) in &expected {
        let got = &consumed[p];
        assert_eq!(got.len(), indexes.len(), "{label}: partition {p} count");
        for (c, &i) in got.iter().zip(indexes) {
            let want = record(topic, i);
            let r = want.record();
            assert_eq!(
                c.value.as_deref(),
                r.value.as_deref(),
                "{label}: value at {p}/{}",
                c.offset
            );
            assert_eq!(
                c.key.as_deref(),
                r.key.as_deref(),
                "{label}: key of record {i}"
            );
            if let Some(key) = &r.key {
                assert_eq!(
                    *p,
                    herald::partitioner::partition_for_key(key, partitions),
                    "{label}: record {i} is in the partition Java's murmur2 picks for its key"
                );
            }
            assert_eq!(
                c.timestamp,
                Some(BASE_TS + i as i64),
                "{label}: timestamp of record {i}"
            );
            let headers: Vec<(String, Option<Vec<u8>>)> = r
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.as_ref().map(|v| v.to_vec())))
                .collect();
            assert_eq!(c.headers, headers, "{label}: headers of record {i}");
            if !acks0 {
                assert_eq!(
                    sent[i].1, c.offset,
                    "{label}: reported offset of record {i}"
                );
            }
        }
    }
}

pub(crate) const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
pub(crate) const ACKS: [&str; 3] = ["all", "1", "0"];

#[actix_rt::test]
async fn mock_cluster_every_codec_and_acks() {
    init_tracing();
    let mock = Mock::start(3);
    for codec in CODECS {
        for acks in ACKS {
            let topic = unique_topic(&format!("e2e-{codec}-{acks}"));
            mock.create_topic(&topic, 4, 3);
            produce_and_verify(
                &mock.bootstrap(),
                &topic,
                4,
                600,
                &[("compression.type", codec), ("acks", acks)],
                Some(1234),
            )
            .await;
        }
    }
}

/// `Producer::send` goes through the intake: records are handed over when `send` is called
/// (a `flush` before any future is polled covers them all), every record gets exactly one
/// outcome, and the broker holds them once each, in call order per partition, at the offsets
/// reported.
#[actix_rt::test]
async fn producer_send_hands_records_over_at_the_call_in_order() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("intake");
    mock.create_topic(&topic, 4, 3);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "5"),
        ("batch.size", "4096"),
    ])
    .expect("valid config");
    let n = 3_000;
    let pending: Vec<_> = (0..n).map(|i| producer.send(record(&topic, i))).collect();
    producer.flush().await;
    let mut sent: Vec<(i32, i64)> = Vec::with_capacity(n);
    for (i, p) in pending.into_iter().enumerate() {
        // Polled once: after the flush every outcome must be there.
        let outcome = futures_util::FutureExt::now_or_never(p)
            .unwrap_or_else(|| panic!("record {i} has no outcome after flush"));
        let md = outcome.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        sent.push((md.partition, md.offset));
    }
    let metrics = producer.metrics().await;
    assert_eq!(metrics.record_send_total, n as u64, "record-send-total");
    assert_eq!(metrics.record_error_total, 0);
    assert!(producer.close(Duration::from_secs(10)).await);
    let consumed = read_back(&bootstrap, &topic, 4, n, Duration::from_secs(30)).await;
    verify("intake", &topic, 4, &sent, &consumed, false);
}

/// Keys and values copied from borrowed slices (`key_from_slice`, `value_from_slice`, and
/// the serializers, which copy into the thread's arena chunk): the application overwrites its
/// buffer after each call, records of several sizes (empty, small, and above the arena's
/// small limit) stay unanswered while their thread's chunks roll over many times, and a
/// second thread produces at the same time. The broker must hold every record once, with the
/// bytes it was given, in the partition Java's murmur2 picks for its serialized key.
#[actix_rt::test]
async fn records_copied_from_reused_buffers_arrive_as_given() {
    use herald::serializer::{IntegerSerializer, Serializer, StringSerializer};
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("copied");
    let partitions = 6;
    mock.create_topic(&topic, partitions, 3);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "5"),
    ])
    .expect("valid config");
    fn value_of(i: usize) -> Vec<u8> {
        let len = match i % 4 {
            0 => 0,
            1 => 7,
            2 => 300,
            _ => herald::arena::SMALL + 1 + i % 50,
        };
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }
    fn key_of(i: usize) -> String {
        format!("key-{}", i % 23)
    }
    // Record `i` from `buf`, which the caller overwrites with the next record's value.
    let make = |i: usize, buf: &mut Vec<u8>| -> Produce {
        buf.clear();
        buf.extend_from_slice(&value_of(i));
        // The record's index, as Java's IntegerSerializer writes it.
        let index = IntegerSerializer
            .serialize("t", &(i as i32))
            .expect("an int serializes")
            .expect("not null");
        let p = Produce::new(topic.clone())
            .value_from_slice(buf)
            .header("i", index);
        if i % 2 == 0 {
            p.key_from_slice(key_of(i).as_bytes())
        } else {
            p.key_with(&StringSerializer, key_of(i).as_str())
                .expect("a string key serializes")
        }
    };
    let n = 4_000;
    let half = n / 2;
    let (mine, theirs) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let mut buf = Vec::new();
            let pending: Vec<_> = (half..n)
                .map(|i| producer.send(make(i, &mut buf)))
                .collect();
            pending
        });
        let mut buf = Vec::new();
        let pending: Vec<_> = (0..half)
            .map(|i| producer.send(make(i, &mut buf)))
            .collect();
        (pending, other.join().expect("second producing thread"))
    });
    let mut sent = Vec::with_capacity(n);
    for (i, p) in mine.into_iter().chain(theirs).enumerate() {
        let md = p.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        sent.push((md.partition, md.offset));
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let consumed = read_back(&bootstrap, &topic, partitions, n, Duration::from_secs(30)).await;
    let total: usize = consumed.values().map(Vec::len).sum();
    assert_eq!(total, n, "every record exactly once");
    for (i, &(p, offset)) in sent.iter().enumerate() {
        let c = consumed[&p]
            .iter()
            .find(|c| c.offset == offset)
            .unwrap_or_else(|| panic!("record {i} not at {p}/{offset}"));
        // An empty value is a zero-length value, not a null one.
        assert_eq!(
            c.value.as_deref(),
            Some(&value_of(i)[..]),
            "value of record {i}"
        );
        assert_eq!(
            c.key.as_deref(),
            Some(key_of(i).as_bytes()),
            "key of record {i}"
        );
        assert_eq!(
            c.headers,
            vec![("i".to_string(), Some((i as i32).to_be_bytes().to_vec()))],
            "header of record {i}"
        );
        assert_eq!(
            p,
            herald::partitioner::partition_for_key(key_of(i).as_bytes(), partitions),
            "record {i} is in the partition Java's murmur2 picks for its key"
        );
    }
}

/// `Producer::do_send` (outcomes to a `Notifier`) and `Producer::send` share the intake, whose
/// router keeps looking while records come instead of being woken: a `flush` sent in the
/// middle of a stream, while the router is between looks, must still cover every record
/// appended before it. Rounds of 1 to 400 records, each followed at once by a flush, then
/// every outcome checked and the broker's log read back.
#[actix_rt::test]
async fn producer_do_send_and_flushes_between_looks_cover_every_record() {
    use actix::prelude::*;
    use herald_actors::{Deliveries, Notifier};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// `(tag, (partition, offset) or the error)` of every outcome.
    type Seen = Vec<(u64, Result<(i32, i64), String>)>;
    struct Collector(Rc<RefCell<Seen>>);
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<Deliveries> for Collector {
        type Result = ();
        fn handle(&mut self, d: Deliveries, _: &mut Context<Self>) {
            let mut seen = self.0.borrow_mut();
            for d in d.0 {
                let outcome = d.outcome.map(|md| (md.partition, md.offset));
                seen.push((d.tag, outcome.map_err(|e| e.to_string())));
            }
        }
    }

    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("do-send");
    mock.create_topic(&topic, 4, 3);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "20"),
        ("batch.size", "2048"),
    ])
    .expect("valid config");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let notifier = Notifier::new(Collector(seen.clone()).start().recipient());
    let mut sent: Vec<Option<(i32, i64)>> = Vec::new();
    let mut futures = Vec::new();
    let mut i = 0usize;
    for round in 0..40usize {
        let n = 1 + (round * 97) % 400;
        for _ in 0..n {
            if i % 2 == 0 {
                producer.do_send(record(&topic, i).tag(i as u64).notify(notifier.clone()));
            } else {
                futures.push((i, producer.send(record(&topic, i))));
            }
            sent.push(None);
            i += 1;
        }
        producer.flush().await;
        for (idx, f) in futures.drain(..) {
            let outcome = futures_util::FutureExt::now_or_never(f).unwrap_or_else(|| {
                panic!("round {round}: record {idx} has no outcome after flush")
            });
            let md = outcome.unwrap_or_else(|e| panic!("record {idx} failed: {e}"));
            sent[idx] = Some((md.partition, md.offset));
        }
    }
    // The notifier's outcomes travel as messages to the collector on this thread.
    let expected = i.div_ceil(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.borrow().len() < expected && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    for (tag, outcome) in seen.borrow().iter() {
        let at = outcome
            .clone()
            .unwrap_or_else(|e| panic!("record {tag} failed: {e}"));
        assert!(
            sent[*tag as usize].replace(at).is_none(),
            "record {tag} answered twice"
        );
    }
    let sent: Vec<(i32, i64)> = sent
        .into_iter()
        .enumerate()
        .map(|(idx, s)| s.unwrap_or_else(|| panic!("record {idx} has no outcome")))
        .collect();
    let metrics = producer.metrics().await;
    assert_eq!(metrics.record_send_total, i as u64, "record-send-total");
    assert_eq!(metrics.record_error_total, 0);
    assert!(producer.close(Duration::from_secs(10)).await);
    let consumed = read_back(&bootstrap, &topic, 4, i, Duration::from_secs(30)).await;
    verify("do_send", &topic, 4, &sent, &consumed, false);
}

/// The producer's actors run on a thread of their own, never the application's (a
/// partitioner, which runs in the router, records where it ran), unless the application
/// gives the producer an arbiter (`ProducerBuilder::arbiter`), where they run instead.
#[actix_rt::test]
async fn the_router_runs_on_its_own_thread_unless_given_an_arbiter() {
    use herald::partitioner::{Partitioner, TopicPartitions};
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;

    #[derive(Debug, Clone, Default)]
    struct Where(Arc<Mutex<Vec<ThreadId>>>);
    impl Partitioner for Where {
        fn partition(
            &mut self,
            _: &str,
            _: Option<&[u8]>,
            _: Option<&[u8]>,
            p: &TopicPartitions<'_>,
        ) -> i32 {
            self.0.lock().unwrap().push(std::thread::current().id());
            p.count - 1
        }
    }

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("arbiter");
    mock.create_topic(&topic, 2, 1);
    let bootstrap = mock.bootstrap();
    let here = std::thread::current().id();
    for given in [false, true] {
        let seen = Where::default();
        let config =
            herald::ProducerConfig::from_pairs([("bootstrap.servers", bootstrap.as_str())])
                .expect("valid config");
        let mut builder = Producer::builder(config).partitioner(seen.clone());
        if given {
            builder = builder.arbiter(actix::Arbiter::current());
        }
        let producer = builder.start().expect("started");
        for i in 0..20 {
            let md = producer
                .send(Produce::new(topic.clone()).value(format!("v{i}")))
                .await
                .expect("delivered");
            assert_eq!(md.partition, 1, "the partitioner chose");
        }
        assert!(producer.close(Duration::from_secs(10)).await);
        let threads = seen.0.lock().unwrap().clone();
        assert_eq!(threads.len(), 20, "the partitioner ran for every record");
        if given {
            assert!(threads.iter().all(|t| *t == here), "on the arbiter given");
        } else {
            assert!(
                threads.iter().all(|t| *t != here),
                "never on the caller's thread"
            );
        }
    }
    let consumed = read_back(&bootstrap, &topic, 2, 40, Duration::from_secs(30)).await;
    assert_eq!(
        consumed.get(&1).map_or(0, Vec::len),
        40,
        "all 40 in partition 1"
    );
}

/// A custom partitioner that answers a partition the topic does not have (beyond the count,
/// or negative) fails that record with `PartitionOutOfRange`, as the `Partitioner` contract
/// says; the record is not moved to a partition the application's rule did not choose. The
/// partitioner's other records are written where it put them.
#[actix_rt::test]
async fn a_partition_the_partitioner_makes_up_fails_its_record() {
    use herald::partitioner::{Partitioner, TopicPartitions};

    #[derive(Debug, Clone)]
    struct FromValue;
    impl Partitioner for FromValue {
        fn partition(
            &mut self,
            _: &str,
            _: Option<&[u8]>,
            value: Option<&[u8]>,
            _: &TopicPartitions<'_>,
        ) -> i32 {
            std::str::from_utf8(value.unwrap())
                .unwrap()
                .parse()
                .unwrap()
        }
    }

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("made-up-partition");
    mock.create_topic(&topic, 2, 1);
    let bootstrap = mock.bootstrap();
    let config = herald::ProducerConfig::from_pairs([("bootstrap.servers", bootstrap.as_str())])
        .expect("valid config");
    let producer = Producer::builder(config)
        .partitioner(FromValue)
        .start()
        .expect("started");
    for p in [1, 2, -1, 7, 0] {
        let outcome = producer
            .send(Produce::new(topic.clone()).value(p.to_string()))
            .await;
        match (p, outcome) {
            (0 | 1, Ok(md)) => assert_eq!(md.partition, p),
            (_, Err(e)) if !(0..2).contains(&p) => match e.kind() {
                herald::ErrorKind::PartitionOutOfRange {
                    partition,
                    partitions,
                    ..
                } => {
                    assert_eq!((*partition, *partitions), (p, 2), "{e}");
                    assert!(e.record().is_some(), "the record comes back");
                }
                other => panic!("partition {p}: {other}"),
            },
            (p, outcome) => panic!("partition {p}: {outcome:?}"),
        }
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let consumed = read_back(&bootstrap, &topic, 2, 2, Duration::from_secs(30)).await;
    let values = |p: i32| -> Vec<Option<Vec<u8>>> {
        consumed
            .get(&p)
            .map(|v| v.iter().map(|c| c.value.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(values(0), vec![Some(b"0".to_vec())]);
    assert_eq!(values(1), vec![Some(b"1".to_vec())], "nothing moved in");
}

#[actix_rt::test]
async fn tansu_every_codec_and_acks() {
    init_tracing();
    let tansu = Tansu::start();
    for codec in CODECS {
        for acks in ACKS {
            let topic = unique_topic(&format!("e2e-{codec}-{acks}"));
            tansu.create_topic(&topic, 3);
            produce_and_verify(
                &tansu.bootstrap(),
                &topic,
                3,
                300,
                &[("compression.type", codec), ("acks", acks)],
                None,
            )
            .await;
        }
    }
}

#[actix_rt::test]
async fn reply_to_and_batch_api_deliver_every_outcome() {
    use actix::prelude::*;
    use herald_actors::{Delivered, ProduceBatch};

    struct Collector(
        Vec<Delivered>,
        usize,
        Option<tokio::sync::oneshot::Sender<Vec<Delivered>>>,
    );
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<Delivered> for Collector {
        type Result = ();
        fn handle(&mut self, d: Delivered, _: &mut Context<Self>) {
            self.0.push(d);
            if self.0.len() == self.1 {
                let _ = self.2.take().unwrap().send(std::mem::take(&mut self.0));
            }
        }
    }

    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("reply-to");
    mock.create_topic(&topic, 3, 1);
    let producer =
        Producer::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())]).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let collector = Collector(Vec::new(), 500, Some(tx)).start();
    for i in 0..500u64 {
        producer.router().do_send(
            record(&topic, i as usize)
                .reply_to(collector.clone().recipient())
                .tag(i),
        );
    }
    let delivered = rx.await.unwrap();
    let mut tags: Vec<u64> = delivered.iter().map(|d| d.tag).collect();
    tags.sort_unstable();
    assert_eq!(
        tags,
        (0..500).collect::<Vec<_>>(),
        "each record answered once"
    );
    assert!(delivered.iter().all(|d| d.outcome.is_ok()));

    let batch: Vec<Produce> = (500..1500).map(|i| record(&topic, i)).collect();
    let outcomes = producer.router().send(ProduceBatch(batch)).await.unwrap();
    assert_eq!(outcomes.len(), 1000);
    assert!(outcomes.iter().all(|o| o.is_ok()));
    assert!(producer.close(Duration::from_secs(10)).await);
    let consumed = read_back(&mock.bootstrap(), &topic, 3, 1500, Duration::from_secs(30)).await;
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 1500);
}

/// `notify`: one `Deliveries` message per batch and notifier, every record answered once,
/// even when records of one batch name different sinks (two notifiers, `reply_to`, `send()`)
/// and when a record is refused before it reaches a batch.
#[actix_rt::test]
async fn notifier_answers_each_record_once_in_one_message_per_batch() {
    use std::sync::{Arc, Mutex};

    use actix::prelude::*;
    use herald::ErrorKind;
    use herald_actors::{Deliveries, Notifier};

    type Seen = Arc<Mutex<Vec<Vec<(u64, herald_actors::Outcome)>>>>;
    struct Inbox(Seen);
    impl Actor for Inbox {
        type Context = Context<Self>;
    }
    impl Handler<Deliveries> for Inbox {
        type Result = ();
        fn handle(&mut self, d: Deliveries, _: &mut Context<Self>) {
            let msg = d.0.into_iter().map(|d| (d.tag, d.outcome)).collect();
            self.0.lock().unwrap().push(msg);
        }
    }

    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("notify");
    mock.create_topic(&topic, 3, 1);
    let producer = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", "20"),
        ("max.request.size", "4000"),
    ])
    .unwrap();
    let (seen_a, seen_b): (Seen, Seen) = Default::default();
    let a = Notifier::new(Inbox(seen_a.clone()).start().recipient());
    let b = Notifier::new(Inbox(seen_b.clone()).start().recipient());
    let (outcomes, inbox) = crate::support::outcomes::Outcomes::start();
    let mut replies = Vec::new();
    const N: u64 = 3000;
    for i in 0..N {
        let mut p = record(&topic, i as usize).tag(i);
        if i == 7 {
            p = p.value(vec![0u8; 10_000]); // over max.request.size: refused at once
        }
        match i % 10 {
            0..=5 => producer.router().do_send(p.notify(a.clone())),
            6 | 7 => producer.router().do_send(p.notify(b.clone())),
            8 => producer.router().do_send(p.reply_to(inbox.clone())),
            _ => replies.push(producer.router().send(p)),
        }
    }
    for r in replies {
        assert!(r.await.unwrap().is_ok());
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    assert!(outcomes.wait_for(300, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await; // anything answered twice shows

    let mut answered = BTreeMap::new();
    for (seen, digits) in [(&seen_a, 0..=5), (&seen_b, 6..=7)] {
        let messages = seen.lock().unwrap().clone();
        let records: usize = messages.iter().map(Vec::len).sum();
        assert!(
            messages.len() * 10 < records,
            "{} messages for {records} records: not grouped per batch",
            messages.len()
        );
        for (tag, outcome) in messages.into_iter().flatten() {
            assert!(
                digits.contains(&(tag % 10)),
                "record {tag} went to the wrong notifier"
            );
            assert!(
                answered.insert(tag, outcome).is_none(),
                "record {tag} answered twice"
            );
        }
    }
    for (tag, mut o) in outcomes.drain_by_tag() {
        assert_eq!(o.len(), 1, "record {tag} answered twice");
        assert!(answered.insert(tag, o.pop().unwrap()).is_none());
    }
    let expected: Vec<u64> = (0..N).filter(|i| i % 10 != 9).collect();
    assert_eq!(answered.keys().copied().collect::<Vec<_>>(), expected);
    match &answered[&7] {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::RecordTooLarge { .. }),
            "record 7: {e}"
        ),
        Ok(md) => panic!("oversized record 7 was written: {md:?}"),
    }
    assert!(answered
        .iter()
        .filter(|(t, _)| **t != 7)
        .all(|(_, o)| o.is_ok()));
    let consumed = read_back(
        &mock.bootstrap(),
        &topic,
        3,
        N as usize - 1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        consumed.values().map(Vec::len).sum::<usize>(),
        N as usize - 1
    );
}

/// A producer whose router runs on the test's own thread: what `Producer::send` appends
/// waits in the intake until the test yields, so a test can fill the intake at will.
fn producer_on_this_thread(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
    let mut pairs = vec![("bootstrap.servers", bootstrap)];
    pairs.extend_from_slice(extra);
    let config = herald::ProducerConfig::from_pairs(pairs).expect("valid config");
    Producer::builder(config)
        .arbiter(actix::Arbiter::current())
        .start()
        .expect("started")
}

/// A record no batch could ever hold (past `buffer.memory` here) is refused as too large,
/// as Java's `send` checks the size before anything else, even while other records wait in
/// the intake: not with `QueueFull`, which tells the caller to try the same record again.
#[actix_rt::test]
async fn a_record_past_buffer_memory_is_too_large_even_behind_others() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("too-large-behind");
    mock.create_topic(&topic, 1, 1);
    let producer = producer_on_this_thread(&mock.bootstrap(), &[("buffer.memory", "65536")]);
    let first = producer.send(Produce::new(topic.clone()).value("first"));
    let huge = producer.send(Produce::new(topic.clone()).value(vec![7u8; 100_000]));
    let e = huge
        .await
        .expect_err("100,000 bytes past a 64 KiB buffer.memory");
    assert!(
        matches!(
            e.kind(),
            herald::ErrorKind::RecordTooLarge {
                key: "buffer.memory",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.record().and_then(|r| r.value.as_ref()).map(|v| v.len()),
        Some(100_000)
    );
    first.await.expect("the record before it is delivered");
    assert!(producer.close(Duration::from_secs(10)).await);
}

/// `send_when_ready` with a record larger than half of `buffer.memory` while another waits:
/// `ready` returns at once (half the limit is free) and the record is refused again until
/// the router takes what waits. With the router on the caller's thread that took a turn of
/// the thread, which the retry loop never gave: it spun until `max.block.ms` and failed the
/// record with `BufferExhausted`.
#[actix_rt::test]
async fn send_when_ready_lets_a_router_on_its_thread_make_room() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("ready-same-thread");
    mock.create_topic(&topic, 1, 1);
    let producer = producer_on_this_thread(
        &mock.bootstrap(),
        &[("buffer.memory", "65536"), ("max.block.ms", "5000")],
    );
    let first = producer.send(Produce::new(topic.clone()).value(vec![1u8; 30_000]));
    let big = producer
        .send_when_ready(Produce::new(topic.clone()).value(vec![2u8; 40_000]))
        .await;
    first.await.expect("the first record is delivered");
    big.await.expect("the second, once the first made room");
    assert!(producer.close(Duration::from_secs(10)).await);
}

/// A negative partition or timestamp is a record Java's `ProducerRecord` refuses to be: it
/// is refused at once, before the interceptors, and a transaction open meanwhile is not
/// doomed by it (the next record and the commit go through).
#[actix_rt::test]
async fn a_negative_partition_or_timestamp_is_refused_without_dooming_the_transaction() {
    use rdkafka::mocking::MockCoordinator;

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("malformed");
    mock.create_topic(&topic, 1, 1);
    let id = unique_topic("malformed-id");
    mock.cluster
        .coordinator(MockCoordinator::Transaction(id.clone()), 1)
        .unwrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("transactional.id", id.as_str()),
        ("max.block.ms", "5000"),
    ])
    .unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().await.unwrap();
    // A topic the cluster lacks: the refusal cannot wait for metadata either.
    let e = producer
        .send(Produce::new("no-such-topic").partition(-1).value("x"))
        .await
        .expect_err("a negative partition");
    assert_eq!(
        e.kind(),
        &herald::ErrorKind::InvalidPartition { partition: -1 }
    );
    let e = producer
        .send(Produce::new(topic.clone()).timestamp(-5).value("x"))
        .await
        .expect_err("a negative timestamp");
    assert_eq!(
        e.kind(),
        &herald::ErrorKind::InvalidTimestamp { timestamp: -5 }
    );
    producer
        .send(Produce::new(topic.clone()).value("kept"))
        .await
        .expect("a good record");
    producer
        .commit_transaction()
        .await
        .expect("the transaction was not doomed by the refused records");
    assert!(producer.close(Duration::from_secs(10)).await);
}

/// A record with neither key nor value (a tombstone) and a header whose value is null, read
/// back as such: null is not written as empty.
#[actix_rt::test]
async fn a_tombstone_with_a_null_header_value_reads_back_null() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("tombstone");
    mock.create_topic(&topic, 1, 1);
    let producer =
        Producer::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())]).expect("started");
    let mut record = herald::ProducerRecord::new(topic.clone());
    record.headers = vec![
        herald::Header {
            key: "null".into(),
            value: None,
        },
        herald::Header::new("empty", &b""[..]),
    ];
    producer
        .send(Produce::from_record(record))
        .await
        .expect("delivered");
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 1, Duration::from_secs(20)).await;
    let r = &back[&0][0];
    assert_eq!((r.key.as_deref(), r.value.as_deref()), (None, None));
    assert_eq!(
        r.headers,
        [
            ("null".to_string(), None),
            ("empty".to_string(), Some(Vec::new()))
        ]
    );
}
