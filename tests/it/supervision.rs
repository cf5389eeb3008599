//! Supervision: actors killed on purpose mid-stream (the test-only `Crash` messages of the
//! `fault-injection` feature) are restarted by their supervisors, and the exactly-once
//! accounting holds: every record gets one outcome, and with idempotence (the default) every
//! record that reported success is in the partition once, in send order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::ProducerRecord;
use herald_actors::fault_injection::Crash;
use herald_actors::{Outcome, Produce, Producer, ProducerInterceptor};

use crate::support::consumer::{read_back, read_indexes};
use crate::support::kafka::{self, SharedLogsOnFailure};
use crate::support::mock::Mock;
use crate::support::producer::until_batches_hold_all_memory;
use crate::support::{init_tracing, unique_topic};

/// Which actors to crash, and after how many records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Router,
    Metadata,
    Accumulators,
    Connections,
    Interceptors,
    /// Needs compression: the producer then compresses with lz4.
    Sealer,
    /// The linger clock's thread (not an actor): it panics whatever `Crash` says.
    Clock,
}

/// Counts what the interceptors see: records in `on_send`, and acknowledgements by outcome
/// (see [`class`]).
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<Counted>>);

#[derive(Debug, Default)]
struct Counted {
    sent: usize,
    acknowledged: BTreeMap<String, usize>,
}

impl ProducerInterceptor for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn on_send(
        &mut self,
        record: ProducerRecord,
    ) -> Result<ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().sent += 1;
        Ok(record)
    }

    fn on_acknowledgement(&mut self, outcome: &Outcome) {
        *self
            .0
            .lock()
            .unwrap()
            .acknowledged
            .entry(class(outcome))
            .or_default() += 1;
    }
}

impl Counting {
    fn sent(&self) -> usize {
        self.0.lock().unwrap().sent
    }

    /// Waits until `on_send` has seen `n` records, for up to 10 s.
    async fn until_sent(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.sent() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "on_send saw {} of {n} records in 10 s",
                self.sent()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The acknowledgements once as many as `on_send` saw have come (they reach the
    /// interceptors in messages of their own, after the records' outcomes), and a while
    /// longer, so that one too many would be counted too.
    async fn settled(&self) -> BTreeMap<String, usize> {
        let pending = || {
            let c = self.0.lock().unwrap();
            c.sent != c.acknowledged.values().sum::<usize>()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pending() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.lock().unwrap().acknowledged.clone()
    }
}

/// An outcome as the interceptors and the application are compared by: delivered, the
/// panic of an actor kind, broken, or the error's own words.
fn class(outcome: &Outcome) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err(e) => match e.kind() {
            herald::ErrorKind::Panicked { place, .. } => format!("panicked in the {place}"),
            herald::ErrorKind::Broken { actor, .. } => format!("broken by the {actor}"),
            _ => e.to_string(),
        },
    }
}

/// The outcomes the application got, counted by [`class`].
fn classes<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> BTreeMap<String, usize> {
    let mut counted = BTreeMap::new();
    for o in outcomes {
        *counted.entry(class(o)).or_default() += 1;
    }
    counted
}

/// The broker a supervision run produces to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// librdkafka's mock cluster, 3 brokers (it does not check idempotent sequences).
    Mock,
    /// The shared Apache Kafka broker, which rejects out-of-order and deduplicates repeated
    /// sequences: the exactly-once accounting is checked against the real rules.
    Kafka,
}

/// Produces `n` keyed records to the mock cluster, crashing `victims` at the given record
/// indexes, and checks the exactly-once accounting against what the broker holds.
async fn produce_with_crashes(n: usize, crashes: &[(usize, Victim)]) {
    produce_with_crashes_on(Broker::Mock, Crash::Stop, n, crashes).await;
}

/// Produces `n` keyed records to `broker`, crashing `victims` with `how` at the given record
/// indexes. Every record gets one outcome: success, or (only for `PanicWhileHolding`, for the
/// records the panicking handler held) `ErrorKind::Panicked`. Successful records are in the
/// partition once each, in send order; a record that failed with `Panicked` at most once
/// (it may have been written before the accumulator panicked completing it). With
/// interceptors (when they are among the victims), see [`produce_intercepted_with_crashes`].
async fn produce_with_crashes_on(
    broker: Broker,
    how: Crash,
    n: usize,
    crashes: &[(usize, Victim)],
) {
    let intercepted = crashes.iter().any(|(_, v)| *v == Victim::Interceptors);
    produce_with_crashes_checked(broker, how, n, crashes, intercepted).await;
}

/// [`produce_with_crashes_on`] with an interceptor, whatever the victims: besides the
/// accounting there, every record its `on_send` saw gets exactly one
/// `on_acknowledgement`, with the outcome the application got (Java's contract), those the
/// supervisors answered (`Panicked`) too; a record the interceptor chain lost to its own
/// panic before `on_send` gets none.
async fn produce_intercepted_with_crashes(
    broker: Broker,
    how: Crash,
    n: usize,
    crashes: &[(usize, Victim)],
) {
    produce_with_crashes_checked(broker, how, n, crashes, true).await;
}

async fn produce_with_crashes_checked(
    broker: Broker,
    how: Crash,
    n: usize,
    crashes: &[(usize, Victim)],
    intercepted: bool,
) {
    init_tracing();
    let _logs = (broker == Broker::Kafka).then_some(SharedLogsOnFailure);
    let topic = unique_topic("supervision");
    let partitions = 6;
    let mock;
    let bootstrap = match broker {
        Broker::Mock => {
            mock = Mock::start(3);
            mock.create_topic(&topic, partitions, 3);
            mock.bootstrap()
        }
        Broker::Kafka => {
            let kafka = kafka::shared();
            kafka.create_topic(&topic, partitions, 1).await;
            kafka.bootstrap()
        }
    };
    let with_sealer = crashes.iter().any(|(_, v)| *v == Victim::Sealer);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "2"),
        ("batch.size", "4096"),
        ("retry.backoff.ms", "20"),
        ("compression.type", if with_sealer { "lz4" } else { "none" }),
    ])
    .unwrap();
    assert!(config.enable_idempotence, "idempotence is on by default");
    let counting = Counting::default();
    let mut builder = Producer::builder(config);
    if intercepted {
        builder = builder.interceptor(counting.clone());
    }
    let producer = builder.start().unwrap();
    let router = producer.router().clone();
    let fi = producer.fault_injection();

    let mut outstanding = VecDeque::new();
    let mut outcomes = Vec::with_capacity(n);
    let mut crashed = 0u64;
    let mut armed = std::collections::BTreeSet::new();
    let mut crashed_by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for i in 0..n {
        for (at, victim) in crashes {
            if *at == i {
                let kind = match victim {
                    Victim::Router => "router",
                    Victim::Metadata => "metadata",
                    Victim::Accumulators => "accumulator",
                    Victim::Connections => "connection",
                    Victim::Interceptors => "interceptor",
                    Victim::Sealer => "sealer",
                    Victim::Clock => "clock",
                };
                if *victim == Victim::Clock {
                    fi.crash_clock();
                    crashed += 1;
                    *crashed_by_kind.entry(kind).or_default() += 1;
                    continue;
                }
                let before = crashed;
                let mut targets = match victim {
                    Victim::Router => vec![router.clone().recipient()],
                    Victim::Metadata => vec![fi.metadata().unwrap()],
                    Victim::Accumulators => {
                        let all = fi.accumulators().await;
                        assert!(!all.is_empty(), "accumulators exist by now");
                        all
                    }
                    Victim::Connections => {
                        let all = fi.connections();
                        assert!(!all.is_empty(), "connections exist by now");
                        all
                    }
                    Victim::Interceptors => vec![fi.interceptors().unwrap()],
                    Victim::Sealer => vec![fi.sealer_crash().unwrap()],
                    Victim::Clock => unreachable!("the clock was crashed above"),
                };
                // A trap set with `PanicWhileHolding` is one per actor kind and fires once,
                // in whichever actor of the kind holds records (a connection: batches) first;
                // the metadata actor panics at once. A connection's dropped batches are
                // retried like a lost request; with one batch per partition in flight (the
                // default) nothing younger of their partitions was sent meanwhile, so order
                // holds on the mock too, which does not check sequences.
                // `PanicAfterAnswering` is a trap too, for the accumulators (one, shared).
                let traps = match how {
                    Crash::PanicWhileHolding => victim != &Victim::Metadata,
                    Crash::PanicAfterAnswering => victim == &Victim::Accumulators,
                    _ => false,
                };
                if traps {
                    // One trap per kind: arming it from several actors could re-arm it after
                    // it fired.
                    targets.truncate(1);
                }
                crashed += if traps {
                    u64::from(armed.insert((i, *victim as u8)))
                } else {
                    targets.len() as u64
                };
                for t in &targets {
                    t.do_send(how);
                }
                *crashed_by_kind.entry(kind).or_default() += crashed - before;
            }
        }
        let p = Produce::new(topic.clone())
            .key(format!("key-{}", i % 97))
            .value(format!("{i}"));
        outstanding.push_back(router.send(p));
        if outstanding.len() >= 2000 {
            outcomes.push(outstanding.pop_front().unwrap().await);
        }
    }
    while let Some(f) = outstanding.pop_front() {
        outcomes.push(f.await);
    }
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|o| o.expect("the router answered"))
        .collect();
    if intercepted {
        let mut acknowledged = counting.settled().await;
        let mut expected = classes(&outcomes);
        // Records the chain lost to its own panic never reached `on_send`; the router's
        // panic fails the record it held, back from `on_send` or not yet sent there.
        let lost = expected.remove("panicked in the interceptor").unwrap_or(0);
        let router = "panicked in the router";
        let (failed, told) = (
            expected.remove(router).unwrap_or(0),
            acknowledged.remove(router).unwrap_or(0),
        );
        assert!(told <= failed, "{told} of {failed} acknowledged");
        assert_eq!(
            counting.sent(),
            n - lost - (failed - told),
            "records on_send saw: each acknowledged once"
        );
        assert_eq!(
            acknowledged, expected,
            "one on_acknowledgement per record on_send saw, with its outcome"
        );
    }
    let mut sent: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut panicked = std::collections::HashSet::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            Ok(md) => sent.entry(md.partition).or_default().push(i),
            Err(e) if how == Crash::PanicWhileHolding => {
                assert!(
                    matches!(e.kind(), herald::ErrorKind::Panicked { .. })
                        || e.to_string().contains("sealer panicked"),
                    "record {i} failed with something else than the panic: {e}"
                );
                panicked.insert(i);
            }
            Err(e) => panic!("record {i} failed: {e}"),
        }
    }
    // A connection holds batches, not outcomes: what it held is sent again, and nothing
    // fails. Any other actor that panics while holding records fails them.
    if how == Crash::PanicWhileHolding {
        if crashes.iter().all(|(_, v)| *v == Victim::Connections) {
            assert!(
                panicked.is_empty(),
                "{} records failed, though only connections panicked: {:?}",
                panicked.len(),
                panicked.iter().min()
            );
        } else {
            assert!(
                !panicked.is_empty(),
                "a handler that panics while holding records fails them"
            );
        }
    }
    let restarts = fi.restarts();
    assert_eq!(
        restarts, crashed,
        "every crash was followed by exactly one restart"
    );
    for kind in [
        "router",
        "metadata",
        "accumulator",
        "connection",
        "interceptor",
        "sealer",
        "clock",
    ] {
        let expected = crashed_by_kind.get(kind).copied().unwrap_or(0);
        assert_eq!(
            fi.restarts_of(kind),
            Some(expected),
            "restarts of the {kind} actors (herald_actor_restarts_total)"
        );
    }
    let metrics = producer.metrics().await;
    assert_eq!(metrics.actor_restart_total, crashed);
    assert_eq!(metrics.record_send_total, (n - panicked.len()) as u64);
    let panics = if how == Crash::Stop { 0 } else { crashed };
    assert_eq!(fi.panics(), panics, "panics caught");
    assert_eq!(metrics.actor_panic_total, panics);
    assert!(producer.broken().is_none(), "a few panics do not break it");
    assert!(producer.close(Duration::from_secs(10)).await);

    let expect = n - panicked.len();
    let back = read_back(
        &bootstrap,
        &topic,
        partitions,
        expect,
        Duration::from_secs(60),
    )
    .await;
    let mut extra = 0;
    for p in 0..partitions {
        let got: Vec<usize> = read_indexes(&back, p);
        let mut seen = std::collections::HashSet::new();
        for i in &got {
            assert!(seen.insert(*i), "partition {p}: record {i} twice");
        }
        // What the panics failed may be there (written before the panic) or not.
        let delivered: Vec<usize> = got
            .iter()
            .copied()
            .filter(|i| !panicked.contains(i))
            .collect();
        extra += got.len() - delivered.len();
        assert_eq!(
            delivered,
            sent.get(&p).cloned().unwrap_or_default(),
            "partition {p}: each delivered record once, in send order"
        );
    }
    assert_eq!(
        back.values().map(Vec::len).sum::<usize>(),
        expect + extra,
        "nothing extra in the topic"
    );
}

#[actix_rt::test]
async fn router_crash_loses_nothing() {
    produce_with_crashes(20_000, &[(5_000, Victim::Router), (12_000, Victim::Router)]).await;
}

#[actix_rt::test]
async fn metadata_crash_loses_nothing() {
    produce_with_crashes(
        20_000,
        &[(5_000, Victim::Metadata), (12_000, Victim::Metadata)],
    )
    .await;
}

#[actix_rt::test]
async fn accumulator_crash_loses_nothing() {
    produce_with_crashes(
        20_000,
        &[
            (5_000, Victim::Accumulators),
            (12_000, Victim::Accumulators),
        ],
    )
    .await;
}

#[actix_rt::test]
async fn connection_crash_loses_nothing_and_duplicates_nothing() {
    produce_with_crashes(
        20_000,
        &[(5_000, Victim::Connections), (12_000, Victim::Connections)],
    )
    .await;
}

#[actix_rt::test]
async fn interceptor_crash_loses_nothing() {
    produce_with_crashes(
        20_000,
        &[
            (5_000, Victim::Interceptors),
            (12_000, Victim::Interceptors),
        ],
    )
    .await;
}

/// Every actor kind crashed once in one run of 30,000 records (connections twice).
const EVERY_ACTOR: [(usize, Victim); 6] = [
    (3_000, Victim::Connections),
    (6_000, Victim::Accumulators),
    (9_000, Victim::Router),
    (12_000, Victim::Metadata),
    (15_000, Victim::Interceptors),
    (18_000, Victim::Connections),
];

#[actix_rt::test]
async fn every_actor_crashing_in_one_run() {
    produce_with_crashes(30_000, &EVERY_ACTOR).await;
}

/// The same on Apache Kafka: every actor kind crashed mid-stream, and Kafka's own sequence
/// checks find each record once, in send order.
#[actix_rt::test]
async fn kafka_every_actor_crashing_in_one_run() {
    produce_with_crashes_on(Broker::Kafka, Crash::Stop, 30_000, &EVERY_ACTOR).await;
}

/// Every actor kind, the sealer too (the producer compresses), panicking mid-stream.
const EVERY_ACTOR_AND_SEALER: [(usize, Victim); 7] = [
    (3_000, Victim::Connections),
    (6_000, Victim::Accumulators),
    (9_000, Victim::Router),
    (12_000, Victim::Metadata),
    (15_000, Victim::Interceptors),
    (18_000, Victim::Sealer),
    (21_000, Victim::Connections),
];

/// A panic in a handler restarts the actor like a stop does: nothing it holds in its state is
/// lost, every record is delivered once, in order.
#[actix_rt::test]
async fn every_actor_panicking_in_one_run() {
    produce_with_crashes_on(Broker::Mock, Crash::Panic, 30_000, &EVERY_ACTOR_AND_SEALER).await;
}

/// A handler that panics while records are on its stack: those records fail with
/// `ErrorKind::Panicked` (one outcome each), the rest are delivered once, in order.
#[actix_rt::test]
async fn every_actor_panicking_while_holding_records() {
    produce_with_crashes_on(
        Broker::Mock,
        Crash::PanicWhileHolding,
        30_000,
        &EVERY_ACTOR_AND_SEALER,
    )
    .await;
}

/// The same on Apache Kafka, whose sequence checks decide exactly-once.
#[actix_rt::test]
async fn kafka_every_actor_panicking_while_holding_records() {
    produce_with_crashes_on(
        Broker::Kafka,
        Crash::PanicWhileHolding,
        30_000,
        &EVERY_ACTOR_AND_SEALER,
    )
    .await;
}

/// The accumulators, three times mid-stream.
const ACCUMULATORS_THRICE: [(usize, Victim); 3] = [
    (4_000, Victim::Accumulators),
    (9_000, Victim::Accumulators),
    (14_000, Victim::Accumulators),
];

/// Accumulators that panic mid-stream while completing a batch, three times, with an
/// interceptor: the records of those batches fail with `Panicked`, answered by the
/// supervisor, and the interceptor's `on_acknowledgement` sees each of them once, as it sees
/// each delivered record once (before, it never heard of the panicked ones).
#[actix_rt::test]
async fn interceptors_acknowledge_the_records_of_a_panicking_accumulator() {
    produce_intercepted_with_crashes(
        Broker::Mock,
        Crash::PanicWhileHolding,
        20_000,
        &ACCUMULATORS_THRICE,
    )
    .await;
}

/// The same on Apache Kafka.
#[actix_rt::test]
async fn kafka_interceptors_acknowledge_the_records_of_a_panicking_accumulator() {
    produce_intercepted_with_crashes(
        Broker::Kafka,
        Crash::PanicWhileHolding,
        20_000,
        &ACCUMULATORS_THRICE,
    )
    .await;
}

/// Accumulators that panic once a batch's records all have their outcome, before the
/// interceptors are told of them, three times: every record is delivered, and the
/// interceptor's `on_acknowledgement` still sees each once (before, the panicking batch's
/// acknowledgements were lost with it).
#[actix_rt::test]
async fn interceptors_acknowledge_a_batch_answered_before_its_accumulator_panicked() {
    produce_intercepted_with_crashes(
        Broker::Mock,
        Crash::PanicAfterAnswering,
        20_000,
        &ACCUMULATORS_THRICE,
    )
    .await;
}

/// Connections that panic with a ProduceRequest's batches on their stack (taken from the
/// queue, not yet written), twice: those batches go back to their accumulators as lost and
/// are sent again, before anything younger of their partitions (one batch per partition in
/// flight), so every record is delivered once and in order. (Before, they waited for
/// `delivery.timeout.ms` and failed.) On the mock, which does not check sequences, order
/// comes from the client alone.
#[actix_rt::test]
async fn connections_panicking_with_batches_on_their_stack_lose_nothing() {
    produce_with_crashes_on(
        Broker::Mock,
        Crash::PanicWhileHolding,
        20_000,
        &[(5_000, Victim::Connections), (12_000, Victim::Connections)],
    )
    .await;
}

/// The same on Apache Kafka, whose sequence checks decide exactly-once.
#[actix_rt::test]
async fn kafka_connections_panicking_with_batches_on_their_stack_lose_nothing() {
    produce_with_crashes_on(
        Broker::Kafka,
        Crash::PanicWhileHolding,
        20_000,
        &[(5_000, Victim::Connections), (12_000, Victim::Connections)],
    )
    .await;
}

/// The linger clock's thread panics twice mid-stream (batch.size 4096 and linger.ms 2, so
/// many batches close by linger): it runs again with its deadlines, every record is
/// delivered once and in order, and the panics count as kind `clock`.
#[actix_rt::test]
async fn linger_clock_panics_lose_nothing() {
    produce_with_crashes_on(
        Broker::Mock,
        Crash::Panic,
        20_000,
        &[(5_000, Victim::Clock), (12_000, Victim::Clock)],
    )
    .await;
}

/// A connection's socket tasks run beside the actor, where no supervisor polls them: a panic
/// in the reader task (mid-stream, in every connection, twice) drops that socket like a lost
/// connection and counts as the connection's panic and restart. The requests in flight on
/// it are sent again, so this runs on Apache Kafka, which drops the copies (the mock would
/// write them twice).
#[actix_rt::test]
async fn kafka_connection_socket_task_panics_lose_nothing() {
    produce_with_crashes_on(
        Broker::Kafka,
        Crash::PanicInSocketTask,
        30_000,
        &[(5_000, Victim::Connections), (15_000, Victim::Connections)],
    )
    .await;
}

/// A one-broker mock with a one-partition topic, and a producer (`linger.ms=0`) that
/// breaks past `max_panics` panics of one actor a minute.
fn with_restart_limit(prefix: &str, max_panics: u32) -> (Mock, String, Producer) {
    with_restart_limit_and(prefix, max_panics, 1, &[("linger.ms", "0")])
}

/// [`with_restart_limit`] with `partitions` partitions and the settings `extra`.
fn with_restart_limit_and(
    prefix: &str,
    max_panics: u32,
    partitions: i32,
    extra: &[(&str, &str)],
) -> (Mock, String, Producer) {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic(prefix);
    mock.create_topic(&topic, partitions, 1);
    let bootstrap = mock.bootstrap();
    let config = herald::ProducerConfig::from_pairs(
        [("bootstrap.servers", bootstrap.as_str())]
            .into_iter()
            .chain(extra.iter().copied()),
    )
    .unwrap();
    let producer = Producer::builder(config)
        .restart_limit(max_panics, Duration::from_secs(60))
        .start()
        .unwrap();
    (mock, topic, producer)
}

/// Waits (up to 10 s) until the producer's actors have panicked `n` times in all.
async fn until_panics(producer: &Producer, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while producer.fault_injection().panics() < n {
        assert!(std::time::Instant::now() < deadline, "{n} panics not seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that the producer broke (`what` says why it should have) because `actor` panicked
/// `panics` times within the minute `with_restart_limit` sets.
fn assert_broken_by(producer: &Producer, actor: &str, panics: u32, what: &str) {
    let why = producer.broken().expect(what);
    assert!(
        matches!(
            why,
            herald::ErrorKind::Broken {
                actor: a,
                panics: p,
                window_s: 60,
                ..
            } if a == actor && p == panics
        ),
        "{why}"
    );
}

/// The application sets the restart limit: with at most 2 panics a minute, two panics of an
/// accumulator leave the producer delivering, and the third breaks it.
#[actix_rt::test]
async fn the_restart_limit_is_the_applications_to_set() {
    let (_mock, topic, producer) = with_restart_limit("storm-limit", 2);
    let send = |v: &'static str| producer.send(Produce::new(topic.clone()).key("k").value(v));
    send("first").await.expect("delivered");
    let fi = producer.fault_injection();
    let accumulator = fi.accumulators().await.remove(0);
    let panics = |n: u64| until_panics(&producer, n);
    accumulator.do_send(Crash::Panic);
    accumulator.do_send(Crash::Panic);
    panics(2).await;
    send("after two")
        .await
        .expect("two panics are within the limit");
    assert!(producer.broken().is_none());
    accumulator.do_send(Crash::Panic);
    panics(3).await;
    assert_broken_by(
        &producer,
        "accumulator",
        3,
        "the third panic breaks the producer",
    );
    let errors = producer.metrics().await.record_error_total;
    let refused = send("after three").await.expect_err("refused");
    assert!(
        matches!(refused.kind(), herald::ErrorKind::Broken { .. }),
        "{refused}"
    );
    // Refused before it reached the router, and counted all the same.
    assert_eq!(producer.metrics().await.record_error_total, errors + 1);
    producer.close(Duration::from_secs(5)).await;
}

/// A connection's own panics and its socket tasks' panics count against one limit: with at
/// most 2 panics a minute, one panic of the connection actor and one of its reader task
/// leave the producer delivering, and a second of the reader task breaks it (counted apart,
/// one connection could panic twice as often as the limit says).
#[actix_rt::test]
async fn a_connections_panics_and_its_socket_tasks_count_against_one_limit() {
    let (_mock, topic, producer) = with_restart_limit("storm-connection", 2);
    let send = |v: &'static str| producer.send(Produce::new(topic.clone()).key("k").value(v));
    // Delivered: the connection has a socket, whose reader task the crashes below reach.
    send("first").await.expect("delivered");
    let fi = producer.fault_injection();
    let mut connections = fi.connections();
    assert_eq!(connections.len(), 1, "one broker");
    let connection = connections.remove(0);
    let panics = |n: u64| until_panics(&producer, n);
    connection.do_send(Crash::Panic);
    panics(1).await;
    send("after the actor's panic")
        .await
        .expect("one panic is within the limit");
    connection.do_send(Crash::PanicInSocketTask);
    panics(2).await;
    // Sent on a new socket: the reader's panic dropped the old one.
    send("after the reader's panic")
        .await
        .expect("two panics are within the limit");
    assert!(producer.broken().is_none());
    connection.do_send(Crash::PanicInSocketTask);
    panics(3).await;
    assert_broken_by(
        &producer,
        "connection",
        3,
        "the third panic of the connection breaks the producer",
    );
    producer.close(Duration::from_secs(5)).await;
}

/// A router that panics past the limit is gone, and `Producer::metrics` then reads the
/// producer's own counters: the panics that broke it are still counted there.
#[actix_rt::test]
async fn metrics_count_the_panics_of_a_router_that_broke() {
    let (_mock, topic, producer) = with_restart_limit("storm-router", 1);
    producer
        .send(Produce::new(topic.clone()).value("first"))
        .await
        .expect("delivered");
    producer.router().do_send(Crash::Panic);
    producer.router().do_send(Crash::Panic);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while producer.broken().is_none() {
        assert!(std::time::Instant::now() < deadline, "not broken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = producer.metrics().await;
    assert_eq!(metrics.actor_panic_total, 2, "{metrics:?}");
    assert_eq!(metrics.actor_restart_total, 1, "{metrics:?}");
    producer.close(Duration::from_secs(5)).await;
}

/// An actor that keeps panicking breaks the producer instead of spinning: the records it
/// held and every later one fail with `ErrorKind::Broken`, each exactly once.
#[actix_rt::test]
async fn a_restart_storm_breaks_the_producer() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("storm");
    mock.create_topic(&topic, 3, 1);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", "50"),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    let router = producer.router().clone();
    // One record delivered first, so that the topic's metadata is in and accumulators exist.
    producer
        .send(Produce::new(topic.clone()).key("k0").value("v"))
        .await
        .expect("delivered");
    // Records waiting in open batches (linger.ms=50) when the storm comes.
    let mut waiting = Vec::new();
    for i in 0..100 {
        waiting.push(router.send(Produce::new(topic.clone()).key(format!("k{i}")).value("v")));
    }
    let fi = producer.fault_injection();
    let accumulators = fi.accumulators().await;
    assert!(!accumulators.is_empty());
    // One accumulator panics past the limit (11 within the window).
    for _ in 0..11 {
        accumulators[0].do_send(Crash::Panic);
    }
    let mut broken = 0;
    for w in waiting {
        match w.await.expect("the router answered") {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        herald::ErrorKind::Broken {
                            actor: "accumulator",
                            panics: 11,
                            ..
                        }
                    ),
                    "{e}"
                );
                broken += 1;
            }
        }
    }
    let why = producer.broken().expect("the producer says it is broken");
    assert!(
        why.to_string()
            .contains("accumulator actor panicked 11 times"),
        "{why}"
    );
    assert!(broken > 0, "the broken accumulator's records failed");
    // Later records are refused at once, with the record handed back.
    let refused = producer
        .send(Produce::new(topic.clone()).value("after"))
        .await
        .expect_err("refused");
    assert!(
        matches!(refused.kind(), herald::ErrorKind::Broken { .. }),
        "{refused}"
    );
    assert!(
        refused.into_record().is_some(),
        "the refused record comes back"
    );
    let refused = router
        .send(Produce::new(topic.clone()).value("after"))
        .await
        .expect("the router answered")
        .expect_err("refused");
    assert!(
        matches!(refused.kind(), herald::ErrorKind::Broken { .. }),
        "{refused}"
    );
    assert_eq!(fi.panics(), 11);
    producer.close(Duration::from_secs(5)).await;
}

/// A restart storm of one accumulator with an interceptor: every record its `on_send` saw
/// gets exactly one `on_acknowledgement`, with the outcome the application got, those the
/// producer's breaking failed with `Broken` too: in open batches of the broken
/// accumulator's partition (`held_by_broker_down` false: linger.ms keeps them there; the
/// router drops them), or sealed and held by the broken accumulator itself, its broker down
/// (dropped with it). A record refused once the producer is broken never reached `on_send`
/// and gets none.
async fn storm_with_interceptors(prefix: &str, held_by_broker_down: bool) {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic(prefix);
    mock.create_topic(&topic, 3, 1);
    let linger = if held_by_broker_down { "0" } else { "60000" };
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", linger),
    ])
    .unwrap();
    let counting = Counting::default();
    let producer = Producer::builder(config)
        .interceptor(counting.clone())
        .start()
        .unwrap();
    let router = producer.router().clone();
    // One record delivered first, so that the topic's metadata is in and accumulators exist.
    let first = producer.send(Produce::new(topic.clone()).key("k0").value("v"));
    producer.flush().await;
    let first = first.await;
    assert!(first.is_ok(), "{first:?}");
    if held_by_broker_down {
        mock.cluster.broker_down(1).unwrap();
    }
    let mut waiting = Vec::new();
    for i in 0..300 {
        waiting.push(router.send(Produce::new(topic.clone()).key(format!("k{i}")).value("v")));
    }
    // Through the interceptors and into their batches (and, with linger.ms=0, sealed and
    // waiting for the broker) before the storm.
    counting.until_sent(301).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counting.sent(), 301, "on_send saw every record once");
    let fi = producer.fault_injection();
    let accumulators = fi.accumulators().await;
    assert_eq!(accumulators.len(), 3);
    for _ in 0..11 {
        accumulators[0].do_send(Crash::Panic);
    }
    let mut outcomes = vec![first];
    for w in waiting {
        outcomes.push(w.await.expect("the router answered"));
    }
    assert!(producer.broken().is_some(), "the storm broke the producer");
    let expected = classes(&outcomes);
    assert!(
        expected
            .get("broken by the accumulator")
            .copied()
            .unwrap_or(0)
            > 0,
        "records failed with Broken: {expected:?}"
    );
    let refused = producer
        .send(Produce::new(topic.clone()).value("after"))
        .await
        .expect_err("refused once broken");
    assert!(
        matches!(refused.kind(), herald::ErrorKind::Broken { .. }),
        "{refused}"
    );
    let acknowledged = counting.settled().await;
    assert_eq!(
        counting.sent(),
        301,
        "the refused record never reached on_send"
    );
    assert_eq!(
        acknowledged, expected,
        "one on_acknowledgement per record on_send saw, with its outcome"
    );
    producer.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_restart_storm_acknowledges_the_records_of_open_batches() {
    storm_with_interceptors("storm-ack-open", false).await;
}

#[actix_rt::test]
async fn a_restart_storm_acknowledges_the_records_the_broken_accumulator_held() {
    storm_with_interceptors("storm-ack-held", true).await;
}

/// A router that breaks (two panics, past a limit of one) while it holds records back from
/// the interceptors, waiting for their topic's metadata: it is dropped with them, they
/// fail with `Broken`, and the interceptors' `on_acknowledgement` is told of each once.
#[actix_rt::test]
async fn a_broken_router_acknowledges_the_records_it_held() {
    use rdkafka::types::RDKafkaRespErr;

    init_tracing();
    let mock = Mock::start(1);
    let missing = unique_topic("storm-ack-router");
    mock.cluster
        .topic_error(
            &missing,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("max.block.ms", "60000"),
    ])
    .unwrap();
    let counting = Counting::default();
    let producer = Producer::builder(config)
        .interceptor(counting.clone())
        .restart_limit(1, Duration::from_secs(60))
        .start()
        .unwrap();
    let router = producer.router().clone();
    let waiting: Vec<_> = (0..50)
        .map(|i| router.send(Produce::new(missing.clone()).value(format!("{i}"))))
        .collect();
    counting.until_sent(50).await;
    // Back in the router, waiting for metadata that does not come.
    tokio::time::sleep(Duration::from_millis(200)).await;
    router.do_send(Crash::Panic);
    router.do_send(Crash::Panic);
    let mut outcomes = Vec::new();
    for w in waiting {
        outcomes.push(w.await.expect("answered, if by the router's drop"));
    }
    assert!(producer.broken().is_some(), "two panics broke it");
    let expected = classes(&outcomes);
    assert_eq!(
        expected,
        BTreeMap::from([("broken by the router".to_string(), 50)]),
        "the records the router held"
    );
    assert_eq!(
        counting.settled().await,
        expected,
        "one on_acknowledgement per record on_send saw, with its outcome"
    );
    producer.close(Duration::from_secs(1)).await;
}

/// A router that breaks while records wait in an accumulator (lingering for a minute): they
/// fail with `Broken` at once, as the records of any other broken actor. The router's own
/// break cannot tell it to abort them (its mailbox goes with it), so its state aborts the
/// accumulators as it is dropped; before, they waited for their linger and were delivered
/// by a producer that called itself broken.
#[actix_rt::test]
async fn a_broken_router_aborts_the_records_its_accumulators_hold() {
    let (_mock, topic, producer) =
        with_restart_limit_and("storm-router-linger", 1, 1, &[("linger.ms", "60000")]);
    let router = producer.router().clone();
    // Metadata and the accumulator first, so that the records below wait in it.
    producer.partitions_for(&topic).await.unwrap();
    let waiting: Vec<_> = (0..3)
        .map(|i| router.send(Produce::new(topic.clone()).value(format!("{i}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.do_send(Crash::Panic);
    router.do_send(Crash::Panic);
    let outcomes = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(waiting),
    )
    .await
    .expect("answered at once, not after the linger");
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("answered")).collect();
    assert!(producer.broken().is_some(), "two panics broke it");
    assert_eq!(
        classes(&outcomes),
        BTreeMap::from([("broken by the router".to_string(), 3)]),
        "the records the accumulator held"
    );
    producer.close(Duration::from_secs(1)).await;
}

/// Accumulators broken past their restart limit while one's batch waits in its connection's
/// queue (one request in flight per connection, the broker slow): that batch's records are
/// answered `Broken`, and the connection must not write it afterwards. The batch is dropped
/// with its accumulator; before, nothing took its attempt back and it was written once the
/// request ahead of it was answered, records in the log that were reported failed.
#[actix_rt::test]
async fn a_broken_accumulators_queued_batch_is_not_written() {
    let (mock, topic, producer) = with_restart_limit_and(
        "storm-queued",
        1,
        2,
        &[
            ("max.in.flight.requests.per.connection", "1"),
            ("enable.idempotence", "false"),
            ("linger.ms", "0"),
        ],
    );
    let router = producer.router().clone();
    producer
        .send(Produce::new(topic.clone()).partition(0).value("warm"))
        .await
        .expect("warm-up");
    mock.cluster
        .broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    let ahead = router.send(Produce::new(topic.clone()).partition(0).value("ahead"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = router.send(Produce::new(topic.clone()).partition(1).value("queued"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fi = producer.fault_injection();
    for _ in 0..2 {
        for a in fi.accumulators().await {
            a.do_send(Crash::Panic);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = queued.await.expect("answered");
    assert_eq!(class(&queued), "broken by the accumulator", "{queued:?}");
    let _ = ahead.await;
    assert!(producer.broken().is_some());
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(0))
        .unwrap();
    // The request ahead is answered after 2 s; the queued batch would follow it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    producer.close(Duration::from_secs(1)).await;
    let back = read_back(&mock.bootstrap(), &topic, 2, 3, Duration::from_secs(3)).await;
    assert_eq!(
        back.get(&1).map_or(0, Vec::len),
        0,
        "a batch answered Broken was written"
    );
}

/// A partitioner (application code run by the router) that panics fails only the record it
/// was partitioning, with the record handed back; the producer goes on.
#[actix_rt::test]
async fn a_panicking_partitioner_fails_only_its_record() {
    use herald::partitioner::{Partitioner, TopicPartitions};
    #[derive(Debug)]
    struct Boom;
    impl Partitioner for Boom {
        fn partition(
            &mut self,
            _topic: &str,
            key: Option<&[u8]>,
            _value: Option<&[u8]>,
            partitions: &TopicPartitions<'_>,
        ) -> i32 {
            assert!(key != Some(b"boom"), "this partitioner cannot handle boom");
            partitions.count - 1
        }
    }
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("partitioner-panic");
    mock.create_topic(&topic, 2, 1);
    let config =
        herald::ProducerConfig::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())])
            .unwrap();
    let producer = Producer::builder(config).partitioner(Boom).start().unwrap();
    let ok = producer.send(Produce::new(topic.clone()).key("a").value("1"));
    let bad = producer.send(Produce::new(topic.clone()).key("boom").value("2"));
    let ok2 = producer.send(Produce::new(topic.clone()).key("b").value("3"));
    assert_eq!(ok.await.expect("delivered").partition, 1);
    let err = bad.await.expect_err("refused");
    assert!(
        matches!(
            err.kind(),
            herald::ErrorKind::Panicked {
                place: "partitioner",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("cannot handle boom"), "{err}");
    assert_eq!(
        err.into_record().expect("record back").value.as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(ok2.await.expect("delivered").partition, 1);
    assert_eq!(
        producer.metrics().await.actor_panic_total,
        0,
        "no actor panicked"
    );
    producer.close(Duration::from_secs(5)).await;
}

/// An accumulator that panics while it fails several batches at once (here their delivery
/// timeout, with the partition's only broker down) answers every record once (the batch it
/// was completing with the timeout, the others `Panicked`) and gives back the
/// `buffer.memory` of every batch, those the panic kept it from reaching too. Before, their
/// memory was lost for good, and in time a producer waited for memory nobody held.
#[actix_rt::test]
async fn an_accumulator_panicking_while_failing_batches_gives_their_memory_back() {
    use herald_actors::ProduceBatch;

    let memory: u64 = 1 << 20;
    let (_mock, topic, producer) =
        batches_of_1024_then_broker_down("panic-memory", memory, "2000").await;
    let router = producer.router().clone();
    // Several batches, made in one call, wait for the broker together and expire together.
    // A record of 963 bytes (954 of value) fills a batch of 1024 to the byte, so none is
    // left open: they expire from the queue of sealed batches, the failing of which the
    // panic interrupts.
    let waiting = router.send(ProduceBatch(
        (0..30)
            .map(|i| Produce::new(topic.clone()).value(vec![i as u8; 954]))
            .collect(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fi = producer.fault_injection();
    for a in fi.accumulators().await {
        a.send(Crash::PanicWhileHolding).await.unwrap();
    }
    let outcomes = waiting.await.expect("the router answered");
    let (mut timed_out, mut panicked) = (0, 0);
    for o in outcomes {
        match o {
            Err(e) if matches!(e.kind(), herald::ErrorKind::DeliveryTimeout { .. }) => {
                timed_out += 1
            }
            Err(e) if matches!(e.kind(), herald::ErrorKind::Panicked { .. }) => panicked += 1,
            other => panic!("expected a timeout or a panic, got {other:?}"),
        }
    }
    assert!(timed_out > 0, "the batch being failed when the panic came");
    assert!(
        panicked > 0,
        "the batches after it, answered as the panic dropped them"
    );
    assert_eq!(fi.panics(), 1, "one panic");
    let m = producer.metrics().await;
    assert_eq!(
        m.buffer_available_bytes, memory,
        "every batch's buffer.memory is back ({timed_out} records timed out, {panicked} panicked)"
    );
    producer.close(Duration::from_secs(1)).await;
}

/// A producer on a one-broker mock whose batches hold 1024 bytes at most (they do not grow
/// while they wait, so each stays one batch), with `buffer.memory` bytes and the delivery
/// timeout given (request.timeout.ms 1000, max.block.ms 10 s). It has delivered one record
/// (the topic's metadata and the partition's accumulator are there), and the broker is down.
async fn batches_of_1024_then_broker_down(
    name: &str,
    memory: u64,
    delivery_timeout_ms: &str,
) -> (Mock, String, Producer) {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic(name);
    mock.create_topic(&topic, 1, 1);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", "0"),
        ("batch.size", "1024"),
        ("max.request.size", "1024"),
        ("buffer.memory", &memory.to_string()),
        ("request.timeout.ms", "1000"),
        ("delivery.timeout.ms", delivery_timeout_ms),
        ("retry.backoff.ms", "50"),
        ("max.block.ms", "10000"),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    producer
        .send(Produce::new(topic.clone()).value("first"))
        .await
        .expect("delivered");
    mock.cluster.broker_down(1).unwrap();
    (mock, topic, producer)
}

/// Waits (up to 5 s) until none of `memory` is reserved, then says whether it came to that.
async fn until_all_memory_is_free(producer: &Producer, memory: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let available = producer.metrics().await.buffer_available_bytes;
        if available == memory || std::time::Instant::now() > deadline {
            return available;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An accumulator that panics while it completes an answered batch, the batch off every
/// queue and still holding its memory, gives that `buffer.memory` back. Before, the memory
/// went back only where the batch was answered, and each such panic shrank the buffer for
/// good.
#[actix_rt::test]
async fn an_accumulator_panicking_while_completing_a_batch_gives_its_memory_back() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("panic-complete-memory");
    mock.create_topic(&topic, 1, 1);
    let memory: u64 = 1 << 20;
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", "0"),
        ("buffer.memory", &memory.to_string()),
    ])
    .unwrap();
    let producer = Producer::builder(config).start().unwrap();
    // The topic's metadata and the partition's accumulator first.
    producer
        .send(Produce::new(topic.clone()).value("first"))
        .await
        .expect("delivered");
    let fi = producer.fault_injection();
    for a in fi.accumulators().await {
        a.send(Crash::PanicWhileHolding).await.unwrap();
    }
    let e = producer
        .send(Produce::new(topic.clone()).value("second"))
        .await
        .expect_err("the panic came as its batch was completed");
    assert!(
        matches!(e.kind(), herald::ErrorKind::Panicked { .. }),
        "{e:?}"
    );
    until_panics(&producer, 1).await;
    assert_eq!(
        until_all_memory_is_free(&producer, memory).await,
        memory,
        "the batch's buffer.memory is back"
    );
    assert_eq!(fi.panics(), 1, "one panic");
    producer
        .send(Produce::new(topic.clone()).value("third"))
        .await
        .expect("the restarted accumulator delivers");
    producer.close(Duration::from_secs(1)).await;
}

/// A record that waited for `buffer.memory` holds what it waited for until it is in a batch:
/// a router that panics as it appends the record gives that memory back (the record is
/// answered `Panicked`). Before, the router gave it back only where the record did not need
/// it, and the panic kept a batch's worth for good.
#[actix_rt::test]
async fn a_router_panicking_with_a_record_that_waited_for_memory_gives_the_memory_back() {
    // Two batches, of a record each, hold all of buffer.memory.
    let memory: u64 = 2048;
    let (_mock, topic, producer) =
        batches_of_1024_then_broker_down("panic-stall-memory", memory, "1500").await;
    let router = producer.router().clone();
    // 954 bytes of value fill a batch of 1024 to the byte.
    let held = [
        router.send(Produce::new(topic.clone()).value(vec![1u8; 954])),
        router.send(Produce::new(topic.clone()).value(vec![2u8; 954])),
    ];
    until_batches_hold_all_memory(&producer).await;
    // This one waits for memory, which the two batches give back when they expire.
    let waiting = router.send(Produce::new(topic.clone()).value(vec![3u8; 954]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fi = producer.fault_injection();
    assert!(fi.arm_panic_while_holding("router"));
    for h in held {
        let e = h.await.expect("answered").expect_err("the broker is down");
        assert!(
            matches!(e.kind(), herald::ErrorKind::DeliveryTimeout { .. }),
            "{e:?}"
        );
    }
    let e = waiting
        .await
        .expect("answered")
        .expect_err("the panic came as it was appended");
    assert!(
        matches!(e.kind(), herald::ErrorKind::Panicked { .. }),
        "{e:?}"
    );
    until_panics(&producer, 1).await;
    assert_eq!(
        until_all_memory_is_free(&producer, memory).await,
        memory,
        "the memory the record waited for is back"
    );
    assert_eq!(fi.panics(), 1, "one panic");
    producer.close(Duration::from_secs(1)).await;
}

/// Records waiting in the intake when the router breaks (here: appended behind the two
/// panics that break it, the router on the test's thread so that nothing takes them first)
/// are answered with the break, their records handed back. They live outside the router
/// actor: before, dropping it left them unanswered until the producer itself was dropped.
#[actix_rt::test]
async fn records_waiting_in_the_intake_when_the_router_breaks_are_answered() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("storm-intake");
    mock.create_topic(&topic, 1, 1);
    let config =
        herald::ProducerConfig::from_pairs([("bootstrap.servers", mock.bootstrap().as_str())])
            .unwrap();
    let producer = Producer::builder(config)
        .arbiter(actix::Arbiter::current())
        .restart_limit(1, Duration::from_secs(60))
        .start()
        .unwrap();
    producer.router().do_send(Crash::Panic);
    producer.router().do_send(Crash::Panic);
    let waiting: Vec<_> = (0..50)
        .map(|i| producer.send(Produce::new(topic.clone()).value(format!("{i}"))))
        .collect();
    let outcomes = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(waiting),
    )
    .await
    .expect("every waiting record answered");
    for o in outcomes {
        let e = o.expect_err("the router broke before taking it");
        assert!(matches!(e.kind(), herald::ErrorKind::Broken { .. }), "{e}");
        assert!(e.record().is_some(), "handed back");
    }
    producer.close(Duration::from_secs(5)).await;
}

/// A router that panics on the first record of a `ProduceBatch` answers every record of the
/// call, not only the one it held: the call's reply waits for every index, and the records
/// the router had not reached got no outcome, so the whole call ended in a mailbox error.
#[actix_rt::test]
async fn a_router_panicking_midway_through_a_produce_batch_answers_every_record() {
    let (_mock, topic, producer) = with_restart_limit("batch-panic", 10);
    producer
        .send(Produce::new(topic.clone()).value("first"))
        .await
        .expect("delivered");
    producer.router().do_send(Crash::PanicWhileHolding);
    let records = (0..10)
        .map(|i| Produce::new(topic.clone()).value(format!("{i}")))
        .collect();
    let outcomes = producer
        .router()
        .send(herald_actors::ProduceBatch(records))
        .await
        .expect("the call is answered");
    assert_eq!(outcomes.len(), 10);
    for o in outcomes {
        let e = o.expect_err("the router panicked on the call");
        assert!(
            matches!(e.kind(), herald::ErrorKind::Panicked { .. }),
            "{e}"
        );
    }
    producer
        .send(Produce::new(topic.clone()).value("after"))
        .await
        .expect("the restarted router goes on");
    producer.close(Duration::from_secs(5)).await;
}

/// An interceptor chain that breaks (two panics, past a limit of one) with records still in
/// its mailbox: they fail with `Broken`, and `flush` and `close` still end. Before, the
/// router kept counting them as with the interceptors, and every later flush waited for
/// them for ever (and a close took its whole timeout).
#[actix_rt::test]
async fn flush_ends_after_the_interceptor_chain_broke_holding_records() {
    use herald_actors::ProduceBatch;

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("storm-chain-flush");
    mock.create_topic(&topic, 1, 1);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("linger.ms", "0"),
    ])
    .unwrap();
    let counting = Counting::default();
    let producer = Producer::builder(config)
        .interceptor(counting.clone())
        .restart_limit(1, Duration::from_secs(60))
        .start()
        .unwrap();
    producer
        .send(Produce::new(topic.clone()).value("first"))
        .await
        .expect("delivered");
    let chain = producer.fault_injection().interceptors().expect("a chain");
    // In the chain's mailbox ahead of the records: a trap, then a panic that restarts the
    // chain (one, within the limit); the first record springs the trap (the second panic,
    // which breaks the producer) while the rest wait behind it. One call, so the router
    // hands the chain every record at once.
    chain.do_send(Crash::PanicWhileHolding);
    chain.do_send(Crash::Panic);
    let records = (0..200)
        .map(|i| Produce::new(topic.clone()).value(format!("v{i}")))
        .collect();
    let outcomes = producer
        .router()
        .send(ProduceBatch(records))
        .await
        .expect("the router answered");
    assert_broken_by(&producer, "interceptor", 2, "the second panic breaks it");
    let broken = outcomes
        .iter()
        .filter(|o| matches!(o, Err(e) if matches!(e.kind(), herald::ErrorKind::Broken { .. })))
        .count();
    assert!(broken > 0, "records dropped with the chain: {outcomes:?}");
    tokio::time::timeout(Duration::from_secs(5), producer.flush())
        .await
        .expect("flush ends once the chain is gone");
    assert!(
        tokio::time::timeout(
            Duration::from_secs(10),
            producer.close(Duration::from_secs(5))
        )
        .await
        .is_ok(),
        "close ends"
    );
}

/// A router that panics as a memory stall ends (here the partitioner's `on_append`,
/// application code, for the record the stall was for) restarts and stalls again on the
/// record queued behind that one, which was never routed. When memory comes it must be
/// routed then, by the partitioner: before, it went into partition 0's batch (the partition
/// it did not name, `unwrap_or(0)`), passing over the partitioner.
#[actix_rt::test]
async fn a_record_behind_a_stall_keeps_its_partitioner_across_a_router_panic() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use herald::partitioner::{Partitioner, TopicPartitions};
    use herald_actors::ProduceBatch;

    /// Key `p1` to partition 1, any other key to 2; `on_append` panics once for partition
    /// 2 when armed.
    #[derive(Debug)]
    struct ByKey(Arc<AtomicBool>);
    impl Partitioner for ByKey {
        fn partition(
            &mut self,
            _topic: &str,
            key: Option<&[u8]>,
            _value: Option<&[u8]>,
            _partitions: &TopicPartitions<'_>,
        ) -> i32 {
            if key == Some(b"p1") {
                1
            } else {
                2
            }
        }

        fn on_append(&mut self, _topic: &str, partition: i32, _bytes: usize, _full: bool) {
            if partition == 2 && self.0.swap(false, Ordering::SeqCst) {
                panic!("on_append cannot take partition 2 now");
            }
        }
    }

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("stall-restart-partition");
    mock.create_topic(&topic, 3, 1);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("buffer.memory", "32768"),
        ("batch.size", "16384"),
        ("linger.ms", "600000"),
        ("delivery.timeout.ms", "900000"),
        ("max.block.ms", "20000"),
    ])
    .unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let producer = Producer::builder(config)
        .partitioner(ByKey(armed.clone()))
        .start()
        .unwrap();
    let router = producer.router().clone();
    // Two lingering batches, of partitions 0 and 1, hold all of buffer.memory.
    let held = [
        router.send(Produce::new(topic.clone()).value("p0").partition(0)),
        router.send(Produce::new(topic.clone()).key("p1").value("p1")),
    ];
    until_batches_hold_all_memory(&producer).await;
    armed.store(true, Ordering::SeqCst);
    // One call: `first` needs a batch of partition 2 and stalls the router, and `second`,
    // routed in the same call, queues behind it unrouted. While they wait the lingering
    // batches go, and their memory ends the stall.
    let take = router.send(ProduceBatch(vec![
        Produce::new(topic.clone()).key("a").value("first"),
        Produce::new(topic.clone()).key("b").value("second"),
    ]));
    // Their batch lingers: a flush, queued behind the take, sends it.
    let (outcomes, ()) = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join(take, producer.flush()),
    )
    .await
    .expect("answered within 30 s");
    let outcomes = outcomes.expect("the router answered");
    for h in held {
        h.await.expect("answered").expect("delivered");
    }
    let [first, second]: [herald::RecordMetadata; 2] = outcomes
        .into_iter()
        .map(|o| o.expect("delivered"))
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "on_append panicked");
    assert_eq!(
        producer.metrics().await.actor_panic_total,
        1,
        "the router panicked"
    );
    assert_eq!(first.partition, 2);
    assert_eq!(second.partition, 2, "the partitioner's partition");
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&mock.bootstrap(), &topic, 3, 4, Duration::from_secs(10)).await;
    let values = |p: i32| -> Vec<Option<Vec<u8>>> {
        back.get(&p)
            .map(|c| c.iter().map(|r| r.value.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(values(0), vec![Some(b"p0".to_vec())]);
    assert_eq!(
        values(2),
        vec![Some(b"first".to_vec()), Some(b"second".to_vec())]
    );
}
