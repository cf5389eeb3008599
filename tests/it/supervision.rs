//! Supervision: actors killed on purpose mid-stream (the test-only `Crash` messages of the
//! `fault-injection` feature) are restarted by their supervisors, and the exactly-once
//! accounting holds: every record gets one outcome, and with idempotence (the default) every
//! record that reported success is in the partition once, in send order.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use herald_actors::fault_injection::Crash;
use herald_actors::{Produce, Producer, ProducerInterceptor};

use crate::support::consumer::{read_back, read_indexes};
use crate::support::kafka::{self, SharedLogsOnFailure};
use crate::support::mock::Mock;
use crate::support::{init_tracing, unique_topic};

/// Which actors to crash, and after how many records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Router,
    Metadata,
    Accumulators,
    Connections,
    Interceptors,
}

struct PassThrough;

impl ProducerInterceptor for PassThrough {
    fn name(&self) -> &str {
        "pass-through"
    }
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
    produce_with_crashes_on(Broker::Mock, n, crashes).await;
}

async fn produce_with_crashes_on(broker: Broker, n: usize, crashes: &[(usize, Victim)]) {
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
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "2"),
        ("batch.size", "4096"),
        ("retry.backoff.ms", "20"),
    ])
    .unwrap();
    assert!(config.enable_idempotence, "idempotence is on by default");
    let with_interceptors = crashes.iter().any(|(_, v)| *v == Victim::Interceptors);
    let mut builder = Producer::builder(config);
    if with_interceptors {
        builder = builder.interceptor(PassThrough);
    }
    let producer = builder.start().unwrap();
    let router = producer.router().clone();
    let fi = producer.fault_injection();

    let mut outstanding = VecDeque::new();
    let mut outcomes = Vec::with_capacity(n);
    let mut crashed = 0u64;
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
                };
                let before = crashed;
                crashed += match victim {
                    Victim::Router => {
                        router.do_send(Crash);
                        1
                    }
                    Victim::Metadata => {
                        fi.metadata().unwrap().do_send(Crash);
                        1
                    }
                    Victim::Accumulators => {
                        let all = fi.accumulators().await;
                        assert!(!all.is_empty(), "accumulators exist by now");
                        for a in &all {
                            a.do_send(Crash);
                        }
                        all.len() as u64
                    }
                    Victim::Connections => {
                        let all = fi.connections();
                        assert!(!all.is_empty(), "connections exist by now");
                        for c in &all {
                            c.do_send(Crash);
                        }
                        all.len() as u64
                    }
                    Victim::Interceptors => {
                        fi.interceptors().unwrap().do_send(Crash);
                        1
                    }
                };
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
    let mut sent: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        let md = o
            .expect("the router answered")
            .unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        sent.entry(md.partition).or_default().push(i);
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
    assert_eq!(metrics.record_send_total, n as u64);
    assert!(producer.close(Duration::from_secs(10)).await);

    let back = read_back(&bootstrap, &topic, partitions, n, Duration::from_secs(60)).await;
    for (p, indexes) in &sent {
        let got: Vec<usize> = read_indexes(&back, *p);
        assert_eq!(
            &got, indexes,
            "partition {p}: each record once, in send order"
        );
    }
    assert_eq!(
        back.values().map(Vec::len).sum::<usize>(),
        n,
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
    produce_with_crashes_on(Broker::Kafka, 30_000, &EVERY_ACTOR).await;
}
