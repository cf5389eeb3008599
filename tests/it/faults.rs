//! The fault-injection suite: while 200,000 keyed records are produced with acks=all and
//! idempotence to librdkafka's mock cluster (3 brokers, replicated topic), a seeded schedule
//! moves partition leaders, takes brokers down and up, injects Produce errors
//! (NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NETWORK_EXCEPTION) and
//! adds round-trip delays. Then an independent consumer reads everything back.
//!
//! Asserted: every record has exactly one outcome and is delivered (every injected error is
//! retriable, and the faults end long before `delivery.timeout.ms`); every record is in its
//! partition, and the first occurrences per partition are in send order. Duplicates: the mock checks sequence numbers only for transactional producers
//! (`rdkafka_mock.c`, `rd_kafka_mock_validate_records`), so a batch whose request was lost
//! with its connection (a broker taken down mid-request) and sent again may be written twice
//! there. Herald counts such records (`record_resend_unknown_total`); the test asserts the
//! duplicates never exceed that count, which on a deduplicating broker means none.
//!
//! The schedule is a function of the seed and the record index, so a failing seed replays
//! the same faults: `HERALD_FAULT_SEED=<seed> cargo test --test it faults`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use herald_actors::{Produce, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::consumer::{read_back, read_indexes};
use crate::support::mock::Mock;
use crate::support::{init_tracing, unique_topic};

const RECORDS: usize = 200_000;
const PARTITIONS: i32 = 6;
const BROKERS: i32 = 3;

#[derive(Debug)]
enum Undo {
    BrokerUp(i32),
    ResetRtt(i32),
}

/// Applies the fault for record `i`, if the schedule has one; returns an undo step and when
/// to run it. Undo goes by time, not by record: a broker that is down holds back the very
/// records whose index would bring it back.
fn fault_at(
    rng: &mut fastrand::Rng,
    mock: &Mock,
    topic: &str,
    i: usize,
    down: &mut Option<i32>,
) -> Option<(Instant, Undo)> {
    if i == 0 || i % 4_000 != 0 {
        return None;
    }
    let broker = rng.i32(1..=BROKERS);
    match rng.u8(0..4) {
        0 => {
            let p = rng.i32(0..PARTITIONS);
            tracing::info!(i, partition = p, broker, "fault: leader moves");
            mock.cluster
                .partition_leader(topic, p, Some(broker))
                .unwrap();
            None
        }
        1 if down.is_none() => {
            tracing::info!(i, broker, "fault: broker down");
            mock.cluster.broker_down(broker).unwrap();
            *down = Some(broker);
            Some((
                Instant::now() + Duration::from_millis(rng.u64(100..1_500)),
                Undo::BrokerUp(broker),
            ))
        }
        2 => {
            let kinds = [
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
            ];
            let errors: Vec<_> = (0..rng.usize(1..6))
                .map(|_| kinds[rng.usize(0..kinds.len())])
                .collect();
            tracing::info!(i, ?errors, "fault: produce errors");
            mock.cluster.request_errors(RDKafkaApiKey::Produce, &errors);
            None
        }
        _ => {
            let rtt = Duration::from_millis(rng.u64(20..150));
            tracing::info!(i, broker, ?rtt, "fault: round-trip delay");
            mock.cluster.broker_round_trip_time(broker, rtt).unwrap();
            Some((
                Instant::now() + Duration::from_millis(rng.u64(100..2_000)),
                Undo::ResetRtt(broker),
            ))
        }
    }
}

async fn run(seed: u64) {
    init_tracing();
    println!("fault-injection seed {seed} (replay with HERALD_FAULT_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mock = Mock::start(BROKERS);
    let topic = unique_topic("faults");
    mock.create_topic(&topic, PARTITIONS, 3);
    let producer = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("acks", "all"),
        ("linger.ms", "5"),
        ("retry.backoff.ms", "20"),
        ("retry.backoff.max.ms", "200"),
        ("reconnect.backoff.ms", "20"),
        ("reconnect.backoff.max.ms", "200"),
        // Above the largest injected round-trip delay: a timeout would be a lost request.
        ("request.timeout.ms", "5000"),
        // The mock does not enforce sequence numbers for non-transactional producers, so
        // order under retries must come from the client: it does with the defaults (one
        // batch per partition in flight, max.in.flight.batches.per.partition=1, and up to
        // 5 requests per connection).
        ("delivery.timeout.ms", "60000"),
    ])
    .unwrap();
    assert!(producer.config().enable_idempotence);
    let router = producer.router().clone();

    let mut undo: Vec<(Instant, Undo)> = Vec::new();
    let mut down = None;
    let mut outstanding = VecDeque::new();
    let mut outcomes = Vec::with_capacity(RECORDS);
    let run_undo = |undo: &mut Vec<(Instant, Undo)>, down: &mut Option<i32>, all: bool| {
        let now = Instant::now();
        undo.retain(|(at, step)| {
            if !all && *at > now {
                return true;
            }
            match step {
                Undo::BrokerUp(b) => {
                    tracing::info!(broker = b, "fault ends: broker up");
                    mock.cluster.broker_up(*b).unwrap();
                    *down = None;
                }
                Undo::ResetRtt(b) => mock
                    .cluster
                    .broker_round_trip_time(*b, Duration::ZERO)
                    .unwrap(),
            }
            false
        });
    };
    for i in 0..RECORDS {
        if let Some(u) = fault_at(&mut rng, &mock, &topic, i, &mut down) {
            undo.push(u);
        }
        run_undo(&mut undo, &mut down, false);
        let p = Produce::new(topic.clone())
            .key(format!("key-{}", rng.u32(0..5_000)))
            .value(i.to_string());
        outstanding.push_back(Box::pin(router.send(p)));
        while outstanding.len() >= 5_000 {
            // Wait for the oldest record, but keep the fault schedule's clock running.
            let front = outstanding.front_mut().unwrap();
            match tokio::time::timeout(Duration::from_millis(20), front).await {
                Ok(o) => {
                    outstanding.pop_front();
                    outcomes.push(o);
                }
                Err(_) => run_undo(&mut undo, &mut down, false),
            }
        }
    }
    run_undo(&mut undo, &mut down, true);
    while let Some(f) = outstanding.pop_front() {
        outcomes.push(f.await);
    }

    let mut sent: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut failed = Vec::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o.expect("one outcome per record") {
            Ok(md) => sent.entry(md.partition).or_default().push(i),
            Err(e) => failed.push((i, e)),
        }
    }
    let metrics = producer.metrics().await;
    println!(
        "seed {seed}: {} ok, {} failed, {} retried, {} resent after a lost request",
        RECORDS - failed.len(),
        failed.len(),
        metrics.record_retry_total,
        metrics.record_resend_unknown_total
    );
    assert!(
        failed.is_empty(),
        "seed {seed}: {} records failed under retriable faults, the first: {:?}",
        failed.len(),
        failed.first().map(|(i, e)| format!("record {i}: {e}"))
    );
    assert!(
        metrics.record_retry_total > 0,
        "the faults made retries happen"
    );
    assert!(producer.close(Duration::from_secs(30)).await);

    let delivered: usize = sent.values().map(Vec::len).sum();
    assert_eq!(delivered, RECORDS);
    let back = read_back(
        &mock.bootstrap(),
        &topic,
        PARTITIONS,
        delivered,
        Duration::from_secs(120),
    )
    .await;
    let mut duplicates = 0u64;
    for (p, indexes) in &sent {
        let got: Vec<usize> = read_indexes(&back, *p);
        let mut seen: HashMap<usize, u32> = HashMap::new();
        let mut first: Vec<usize> = Vec::new();
        for &i in &got {
            let n = seen.entry(i).or_insert(0);
            *n += 1;
            if *n == 1 {
                first.push(i);
            } else {
                duplicates += 1;
            }
        }
        // Every record succeeded: the log's first occurrences are exactly them, in send order.
        let first_successes = first;
        if &first_successes != indexes {
            let at = first_successes
                .iter()
                .zip(indexes)
                .position(|(a, b)| a != b)
                .unwrap_or(indexes.len().min(first_successes.len()));
            panic!(
                "seed {seed}: partition {p}: successes not once in send order: {} in the log, {} sent; first difference at {at}: log {:?} vs sent {:?}",
                first_successes.len(),
                indexes.len(),
                first_successes.get(at.saturating_sub(2)..(at + 3).min(first_successes.len())),
                indexes.get(at.saturating_sub(2)..(at + 3).min(indexes.len())),
            );
        }
    }
    assert!(
        duplicates <= metrics.record_resend_unknown_total,
        "seed {seed}: {duplicates} duplicates but only {} records were resent after a lost request",
        metrics.record_resend_unknown_total
    );
}

fn seeds() -> Vec<u64> {
    match std::env::var("HERALD_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("HERALD_FAULT_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    }
}

#[actix_rt::test]
async fn faults_do_not_lose_reorder_or_duplicate() {
    for seed in seeds() {
        run(seed).await;
    }
}
