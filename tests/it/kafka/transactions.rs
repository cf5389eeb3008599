//! Transactions on Apache Kafka 4.1.2, which finalizes `transaction.version` 2: Herald uses
//! protocol version 2 there (KIP-890) unless a test caps it at 1 (explicit
//! AddPartitionsToTxn); the tests that differ between the two run with both. Read back by
//! librdkafka's consumer with `isolation.level`
//! read_committed (what a transaction promises) and read_uncommitted (to prove the aborted
//! records really reached the log, so their invisibility is the broker's markers at work,
//! not records that were never sent).

use std::collections::BTreeMap;
use std::time::Duration;

use herald::{ErrorClass, ErrorKind, KafkaCode, ProducerConfig, TransactionError};
use herald_actors::{ConsumerGroupMetadata, Produce, Producer, TopicPartitionOffset};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::examples::{console_producer, example, summary};
use crate::support::consumer::{read_back_with, read_indexes, Consumed};
use crate::support::kafka::{cluster, shared, SharedLogsOnFailure};
use crate::support::{init_tracing, unique_topic};

const WAIT: Duration = Duration::from_secs(30);

fn transactional(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> Producer {
    transactional_v(bootstrap, id, extra, 2)
}

/// A transactional producer that uses at most transaction protocol `version`.
fn transactional_v(bootstrap: &str, id: &str, extra: &[(&str, &str)], version: i16) -> Producer {
    let mut pairs = vec![
        ("bootstrap.servers", bootstrap),
        ("transactional.id", id),
        ("linger.ms", "2"),
    ];
    pairs.extend_from_slice(extra);
    let config = ProducerConfig::from_pairs(pairs).expect("a valid config");
    Producer::builder(config)
        .max_transaction_version(version)
        .start()
        .expect("a transactional producer starts")
}

fn consumer_config(bootstrap: &str, isolation: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation);
    c
}

/// Reads `topic` with the given isolation until `expected` records arrived (plus a grace
/// period for any that should not be there).
async fn read(
    bootstrap: &str,
    isolation: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> BTreeMap<i32, Vec<Consumed>> {
    let config = consumer_config(bootstrap, isolation);
    read_back_with(config, topic, partitions, expected, WAIT).await
}

/// Sends record `i` (value = `i`) to `topic`-`partition`; the future resolves to its outcome.
fn send(
    p: &Producer,
    topic: &str,
    partition: i32,
    i: usize,
) -> impl std::future::Future<Output = herald_actors::Outcome> {
    p.send(
        Produce::new(topic.to_string())
            .partition(partition)
            .value(i.to_string()),
    )
}

/// Every value read back, per partition, in offset order.
fn per_partition(back: &BTreeMap<i32, Vec<Consumed>>, partitions: i32) -> Vec<Vec<usize>> {
    (0..partitions).map(|p| read_indexes(back, p)).collect()
}

fn total(back: &BTreeMap<i32, Vec<Consumed>>) -> usize {
    back.values().map(Vec::len).sum()
}

#[actix_rt::test]
async fn kafka_committed_visible_once_in_order_aborted_never_v2() {
    committed_visible_aborted_never(2).await;
}

#[actix_rt::test]
async fn kafka_committed_visible_once_in_order_aborted_never_v1() {
    committed_visible_aborted_never(1).await;
}

async fn committed_visible_aborted_never(version: i16) {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let (a, b) = (unique_topic("txn-a"), unique_topic("txn-b"));
    kafka.create_topic(&a, 3, 1).await;
    kafka.create_topic(&b, 2, 1).await;
    let p = transactional_v(&bootstrap, &unique_topic("txn-id"), &[], version);

    // Before init and outside a transaction a record is refused, and comes back.
    let refused = send(&p, &a, 0, 9999).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        &ErrorKind::Transaction(TransactionError::NotInTransaction)
    );
    assert_eq!(refused.record().and_then(|r| r.partition), Some(0));
    assert!(matches!(
        p.begin_transaction().await,
        Err(TransactionError::InvalidState { .. })
    ));
    p.init_transactions().await.expect("init_transactions");

    // Committed: 300 records over both topics, five partitions.
    p.begin_transaction().await.unwrap();
    let mut outcomes = Vec::new();
    for i in 0..300 {
        let (topic, partition) = if i % 2 == 0 {
            (&a, (i / 2 % 3) as i32)
        } else {
            (&b, (i / 2 % 2) as i32)
        };
        outcomes.push(send(&p, topic, partition, i));
    }
    p.commit_transaction().await.expect("commit");
    for o in outcomes {
        o.await.expect("a committed record is written");
    }
    assert_eq!(
        p.fault_injection().transaction_version(),
        Some(version),
        "Kafka 4.1.2 offers transaction protocol version 2"
    );

    // Aborted: written to the log first (flush), then aborted.
    p.begin_transaction().await.unwrap();
    let mut aborted = Vec::new();
    for i in 1000..1100 {
        aborted.push(send(
            &p,
            if i % 2 == 0 { &a } else { &b },
            (i % 2) as i32,
            i,
        ));
    }
    p.flush().await;
    for o in aborted {
        o.await.expect("flushed before the abort: written");
    }
    // Sent just before the abort: it belongs to the transaction. Waiting for linger, it
    // fails as aborted, or it was written before the abort reached its partition; either
    // way it never becomes visible.
    let unsent = send(&p, &a, 1, 1500);
    p.abort_transaction().await.expect("abort");
    match unsent.await {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), &ErrorKind::Transaction(TransactionError::Aborted)),
    }
    // Between transactions a record is refused, not slipped into the next one.
    let between = send(&p, &a, 0, 1999).await.unwrap_err();
    assert_eq!(
        between.kind(),
        &ErrorKind::Transaction(TransactionError::NotInTransaction)
    );
    assert!(matches!(
        p.commit_transaction().await,
        Err(TransactionError::InvalidState { .. })
    ));

    // Committed after the aborts.
    p.begin_transaction().await.unwrap();
    let mut outcomes = Vec::new();
    for i in 2000..2100 {
        outcomes.push(send(
            &p,
            if i % 2 == 0 { &a } else { &b },
            (i % 2) as i32,
            i,
        ));
    }
    p.commit_transaction().await.expect("commit after abort");
    for o in outcomes {
        o.await.expect("written");
    }
    assert!(p.close(Duration::from_secs(10)).await);

    for (topic, partitions) in [(&a, 3), (&b, 2)] {
        // What was sent to each partition, in order, committed ones only.
        let mut expected = vec![Vec::new(); partitions as usize];
        for i in (0..300).chain(2000..2100) {
            let (t, partition) = if i < 300 {
                if i % 2 == 0 {
                    (&a, i / 2 % 3)
                } else {
                    (&b, i / 2 % 2)
                }
            } else {
                (if i % 2 == 0 { &a } else { &b }, i % 2)
            };
            if t == topic {
                expected[partition].push(i);
            }
        }
        let n: usize = expected.iter().map(Vec::len).sum();
        let back = read(&bootstrap, "read_committed", topic, partitions, n).await;
        assert_eq!(
            per_partition(&back, partitions),
            expected,
            "read_committed {topic}: every committed record once, in order, nothing aborted"
        );
        // The log itself: the aborted records flushed before the abort sit between the two
        // committed runs, where they were sent (1000..1100 go where 2000..2100 go), and 1500
        // after them if it was written before the abort reached its partition.
        // Half of 1000..1100 went to each topic.
        let uncommitted = read(&bootstrap, "read_uncommitted", topic, partitions, n + 50).await;
        let written_1500 = per_partition(&uncommitted, partitions)
            .iter()
            .flatten()
            .any(|&i| i == 1500);
        let mut in_log = vec![Vec::new(); partitions as usize];
        for i in (0..300)
            .chain(1000..1100)
            .chain(written_1500.then_some(1500))
            .chain(2000..2100)
        {
            let (t, partition) = match i {
                0..300 if i % 2 == 0 => (&a, i / 2 % 3),
                0..300 => (&b, i / 2 % 2),
                1500 => (&a, 1),
                _ => (if i % 2 == 0 { &a } else { &b }, i % 2),
            };
            if t == topic {
                in_log[partition].push(i);
            }
        }
        assert_eq!(
            per_partition(&uncommitted, partitions),
            in_log,
            "read_uncommitted {topic}: the aborted records that reached the log, where sent"
        );
    }
}

#[actix_rt::test]
async fn kafka_a_second_producer_fences_the_first() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-fence");
    kafka.create_topic(&topic, 2, 1).await;
    let id = unique_topic("txn-fence-id");

    let first = transactional(&bootstrap, &id, &[]);
    first.init_transactions().await.unwrap();
    first.begin_transaction().await.unwrap();
    for i in 0..20 {
        send(&first, &topic, (i % 2) as i32, i).await.unwrap();
    }
    first.commit_transaction().await.unwrap();

    // The first opens a transaction and writes into it; then the second starts.
    first.begin_transaction().await.unwrap();
    for i in 100..110 {
        send(&first, &topic, (i % 2) as i32, i).await.unwrap();
    }
    let second = transactional(&bootstrap, &id, &[]);
    second
        .init_transactions()
        .await
        .expect("the second takes over");

    // The first's next operation fails as fenced, for good.
    // (Partition 0 is in the transaction already: the broker itself refuses the batch.)
    let fenced = send(&first, &topic, 0, 200).await.unwrap_err();
    match fenced.kind() {
        ErrorKind::Broker { code, .. } => assert!(
            matches!(
                code,
                KafkaCode::INVALID_PRODUCER_EPOCH | KafkaCode::PRODUCER_FENCED
            ),
            "{fenced}"
        ),
        ErrorKind::Transaction(e) => assert!(e.is_fenced(), "{e}"),
        other => panic!("a fenced producer's record: {other}"),
    }
    // A partition new to the transaction: AddPartitionsToTxn is refused as fenced.
    let fenced = send(&first, &topic, 1, 201).await.unwrap_err();
    let ErrorKind::Transaction(e) = fenced.kind() else {
        panic!("a fenced producer's record fails with a transaction error: {fenced}")
    };
    assert!(e.is_fenced(), "{e}");
    assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
    let commit = first.commit_transaction().await.unwrap_err();
    assert!(commit.is_fenced(), "commit of a fenced producer: {commit}");
    assert_eq!(commit.class(), ErrorClass::Fatal);
    assert!(first.abort_transaction().await.unwrap_err().is_fenced());
    assert!(first.begin_transaction().await.unwrap_err().is_fenced());

    second.begin_transaction().await.unwrap();
    for i in 300..320 {
        send(&second, &topic, (i % 2) as i32, i).await.unwrap();
    }
    second.commit_transaction().await.unwrap();
    first.close(Duration::from_secs(5)).await;
    second.close(Duration::from_secs(5)).await;

    let back = read(&bootstrap, "read_committed", &topic, 2, 40).await;
    let mut expected = vec![Vec::new(), Vec::new()];
    for i in (0..20).chain(300..320) {
        expected[i % 2].push(i);
    }
    assert_eq!(
        per_partition(&back, 2),
        expected,
        "the fenced producer's open transaction was aborted by the second's init"
    );
}

/// The group's committed offset of `topic`-0, as an rdkafka consumer of the group reads it
/// (`None` when the group has none).
async fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        match committed.elements()[0].offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn kafka_consume_transform_produce_moves_offsets_only_on_commit_v2() {
    consume_transform_produce(2).await;
}

#[actix_rt::test]
async fn kafka_consume_transform_produce_moves_offsets_only_on_commit_v1() {
    consume_transform_produce(1).await;
}

async fn consume_transform_produce(version: i16) {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let (input, output) = (unique_topic("ctp-in"), unique_topic("ctp-out"));
    kafka.create_topic(&input, 1, 1).await;
    kafka.create_topic(&output, 1, 1).await;
    let group = unique_topic("ctp-group");

    // The input, written by a plain (idempotent) producer.
    let plain = Producer::from_pairs([("bootstrap.servers", bootstrap.as_str())]).unwrap();
    for i in 0..20 {
        send(&plain, &input, 0, i).await.unwrap();
    }
    plain.close(Duration::from_secs(5)).await;
    let records = read(&bootstrap, "read_committed", &input, 1, 20).await;
    let records = &records[&0];

    let p = transactional_v(&bootstrap, &unique_topic("ctp-id"), &[], version);
    p.init_transactions().await.unwrap();
    let transform = |c: &Consumed| -> usize {
        String::from_utf8_lossy(c.value.as_deref().unwrap())
            .parse::<usize>()
            .unwrap()
            + 1000
    };

    // The first ten, transformed, with their offsets: aborted.
    p.begin_transaction().await.unwrap();
    for c in &records[..10] {
        send(&p, &output, 0, transform(c)).await.unwrap();
    }
    let offsets = vec![TopicPartitionOffset::new(&input, 0, records[9].offset + 1)];
    p.send_offsets_to_transaction(offsets, ConsumerGroupMetadata::new(&group))
        .await
        .expect("send offsets");
    p.abort_transaction().await.unwrap();
    assert_eq!(
        committed_offset(&bootstrap, &group, &input).await,
        None,
        "an aborted transaction commits no offset"
    );

    // Processed again, and all twenty: committed.
    p.begin_transaction().await.unwrap();
    for c in records {
        send(&p, &output, 0, transform(c)).await.unwrap();
    }
    let next = records[19].offset + 1;
    let offsets = vec![TopicPartitionOffset::new(&input, 0, next)];
    p.send_offsets_to_transaction(offsets, ConsumerGroupMetadata::new(&group))
        .await
        .unwrap();
    p.commit_transaction().await.unwrap();
    assert_eq!(
        committed_offset(&bootstrap, &group, &input).await,
        Some(next),
        "the commit moved the group's offset"
    );
    // Java's txn-*-time-ns-total: every call here took time with a coordinator round trip.
    let m = p.metrics().await;
    for (name, ns) in [
        ("init", m.txn_init_time_ns_total),
        ("begin", m.txn_begin_time_ns_total),
        ("send offsets", m.txn_send_offsets_time_ns_total),
        ("commit", m.txn_commit_time_ns_total),
        ("abort", m.txn_abort_time_ns_total),
    ] {
        assert!(ns > 0, "{name}: {m:?}");
    }
    p.close(Duration::from_secs(5)).await;

    let back = read(&bootstrap, "read_committed", &output, 1, 20).await;
    assert_eq!(read_indexes(&back, 0), (1000..1020).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn kafka_transaction_timeout_aborts_and_the_producer_goes_on_v2() {
    transaction_timeout(2).await;
}

#[actix_rt::test]
async fn kafka_transaction_timeout_aborts_and_the_producer_goes_on_v1() {
    transaction_timeout(1).await;
}

async fn transaction_timeout(version: i16) {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-timeout");
    kafka.create_topic(&topic, 1, 1).await;
    let p = transactional_v(
        &bootstrap,
        &unique_topic("txn-timeout-id"),
        &[("transaction.timeout.ms", "1000")],
        version,
    );
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    for i in 0..10 {
        send(&p, &topic, 0, i).await.unwrap();
    }
    // The broker looks for expired transactions every 10 s
    // (transaction.abort.timed.out.transaction.cleanup.interval.ms).
    tokio::time::sleep(Duration::from_secs(13)).await;
    let e = p
        .commit_transaction()
        .await
        .expect_err("the coordinator aborted the transaction");
    println!("commit after the timeout: {e}");
    assert_eq!(e.class(), ErrorClass::Abortable, "{e}");
    assert!(e.to_string().contains("transaction.timeout.ms"), "{e}");
    p.abort_transaction()
        .await
        .expect("abort after the timeout");

    p.begin_transaction().await.expect("a new transaction");
    for i in 100..110 {
        send(&p, &topic, 0, i).await.unwrap();
    }
    p.commit_transaction().await.expect("commit after recovery");
    p.close(Duration::from_secs(5)).await;

    let back = read(&bootstrap, "read_committed", &topic, 1, 10).await;
    assert_eq!(read_indexes(&back, 0), (100..110).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn kafka_console_producer_commits_every_n_records() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("console-txn");
    kafka.create_topic(&topic, 1, 1).await;
    let id = unique_topic("console-txn-id");
    let input: String = (0..25).map(|i| format!("{i}\n")).collect();
    let output = console_producer(
        &[
            "-b",
            &bootstrap,
            "-t",
            &topic,
            "-X",
            &format!("transactional.id={id}"),
            "--txn-records",
            "10",
        ],
        input.into_bytes(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let s = summary(&output);
    assert_eq!(
        (
            s["records"].as_u64(),
            s["committed"].as_u64(),
            s["transactions"].as_u64()
        ),
        (Some(25), Some(25), Some(3)),
        "10 + 10 + 5 at EOF: {stderr}"
    );
    let back = read(&bootstrap, "read_committed", &topic, 1, 25).await;
    assert_eq!(read_indexes(&back, 0), (0..25).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn kafka_console_producer_aborts_on_a_failed_record_and_exits_1() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("console-txn-fail");
    kafka.create_topic(&topic, 2, 1).await;
    let id = unique_topic("console-txn-fail-id");
    // Partition 7 does not exist: every record is refused, which dooms the transaction.
    let output = console_producer(
        &[
            "-b",
            &bootstrap,
            "-t",
            &topic,
            "-p",
            "7",
            "-X",
            &format!("transactional.id={id}"),
        ],
        b"a\nb\nc\n".to_vec(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("transaction aborted"), "{stderr}");
    let s = summary(&output);
    assert_eq!(
        (s["committed"].as_u64(), s["transactions"].as_u64()),
        (Some(0), Some(0)),
        "{stderr}"
    );
    // Nothing reached the log: a record after the run, on each partition, is the first there.
    // (Reading for nothing would only wait a grace period, too short to prove an absence.)
    let plain = Producer::from_pairs([("bootstrap.servers", bootstrap.as_str())]).unwrap();
    for partition in 0..2 {
        send(&plain, &topic, partition, 1000 + partition as usize)
            .await
            .unwrap();
    }
    plain.close(Duration::from_secs(5)).await;
    let back = read(&bootstrap, "read_uncommitted", &topic, 2, 2).await;
    assert_eq!(
        per_partition(&back, 2),
        [vec![1000], vec![1001]],
        "nothing but the records written after the run"
    );
}

/// The partition of `__transaction_state` that holds `transactional_id` (Kafka's
/// `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`), whose
/// leader is the transaction coordinator.
fn transaction_state_partition(transactional_id: &str, partitions: i32) -> i32 {
    let hash = transactional_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

#[actix_rt::test]
async fn kafka_coordinator_killed_mid_transaction_is_never_half_visible_v2() {
    coordinator_killed(2).await;
}

#[actix_rt::test]
async fn kafka_coordinator_killed_mid_transaction_is_never_half_visible_v1() {
    coordinator_killed(1).await;
}

async fn coordinator_killed(version: i16) {
    init_tracing();
    let mut kafka = cluster().await;
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-coordinator-kill");
    kafka.create_topic(&topic, 3, 3).await;
    let id = unique_topic("txn-coordinator-kill-id");
    let p = transactional_v(&bootstrap, &id, &[], version);
    p.init_transactions().await.unwrap();

    p.begin_transaction().await.unwrap();
    let mut outcomes = Vec::new();
    for i in 0..300 {
        outcomes.push(send(&p, &topic, (i % 3) as i32, i));
    }
    for o in outcomes {
        o.await.expect("written before the kill");
    }
    // The harness starts the cluster with five transaction log partitions.
    let state = transaction_state_partition(&id, 5);
    let coordinator = kafka.leader("__transaction_state", state).await;
    println!("killing the transaction coordinator, node {coordinator}");
    kafka.kill(coordinator);
    // A commit that timed out may have reached the coordinator: only calling it again
    // settles it (an abort is refused meanwhile).
    let mut attempts = 0;
    let committed = loop {
        attempts += 1;
        match p.commit_transaction().await {
            Ok(()) => break true,
            Err(e @ TransactionError::TimedOut { .. }) if attempts < 3 => {
                println!("commit with the coordinator killed timed out: {e}");
                let abort = p.abort_transaction().await.unwrap_err();
                assert!(
                    matches!(abort, TransactionError::Unfinished { .. }),
                    "{abort}"
                );
            }
            Err(e) => {
                println!("commit with the coordinator killed: {e}");
                assert_ne!(e.class(), ErrorClass::Fatal, "{e}");
                assert!(!matches!(e, TransactionError::TimedOut { .. }), "{e}");
                p.abort_transaction().await.expect("abort");
                break false;
            }
        }
    };
    println!(
        "the transaction was {}",
        if committed { "committed" } else { "aborted" }
    );

    // The producer goes on with the new coordinator.
    p.begin_transaction().await.unwrap();
    let mut outcomes = Vec::new();
    for i in 1000..1030 {
        outcomes.push(send(&p, &topic, (i % 3) as i32, i));
    }
    p.commit_transaction()
        .await
        .expect("commit with the new coordinator");
    for o in outcomes {
        o.await.unwrap();
    }
    p.close(Duration::from_secs(10)).await;
    // The read-back consumer takes a dead broker's transport errors for failures.
    kafka.restart(coordinator).await;

    let first: Vec<usize> = if committed {
        (0..300).collect()
    } else {
        Vec::new()
    };
    let mut expected = vec![Vec::new(); 3];
    for i in first.into_iter().chain(1000..1030) {
        expected[i % 3].push(i);
    }
    let n: usize = expected.iter().map(Vec::len).sum();
    let back = read(&bootstrap, "read_committed", &topic, 3, n).await;
    assert_eq!(
        per_partition(&back, 3),
        expected,
        "all of the transaction or none of it, never part"
    );
}

/// examples/transactional.rs, which the README shows, against Apache Kafka: it commits its
/// two records and the group's offset.
#[actix_rt::test]
async fn kafka_the_transactional_example_commits() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    // The example's own names (this test is the only one that uses them).
    for topic in ["orders", "enriched", "audit"] {
        kafka.create_topic(topic, 1, 1).await;
    }
    let run = std::process::Command::new(example("transactional"))
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .output()
        .expect("run the transactional example");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.starts_with("committed: "),
        "stdout: {stdout} stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for topic in ["enriched", "audit"] {
        let back = read(&bootstrap, "read_committed", topic, 1, 1).await;
        assert_eq!(total(&back), 1, "{topic}");
    }
    assert_eq!(
        committed_offset(&bootstrap, "enricher", "orders").await,
        Some(42)
    );
}

#[actix_rt::test]
async fn kafka_abort_while_records_are_in_flight_v2() {
    abort_in_flight(2).await;
}

#[actix_rt::test]
async fn kafka_abort_while_records_are_in_flight_v1() {
    abort_in_flight(1).await;
}

/// An abort called while thousands of records are queued, sealed and in flight: every
/// record gets exactly one outcome (written, or failed as aborted), the ones reported
/// written are exactly the ones read_uncommitted finds, and read_committed finds none.
async fn abort_in_flight(version: i16) {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-abort-in-flight");
    kafka.create_topic(&topic, 3, 1).await;
    let p = transactional_v(
        &bootstrap,
        &unique_topic("txn-abort-in-flight-id"),
        // Batches of 2,000 bytes that do not grow while their partition waits (a batch
        // grows up to max.request.size): 20,000 small records then take dozens of round
        // trips, so the abort after 20 ms finds records in flight and records unsent.
        // (With growth, three grown batches carried them all within the 20 ms.)
        &[("batch.size", "2000"), ("max.request.size", "2000")],
        version,
    );
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let n = 20_000;
    // The first record of each partition is awaited: metadata is in, the partitions are
    // in the transaction, and the rest flows without waiting for either.
    let mut written = Vec::new();
    for i in 0..3 {
        let md = send(&p, &topic, i as i32, i).await.unwrap();
        written.push((md.partition, md.offset, i));
    }
    let outcomes: Vec<_> = (3..n)
        .map(|i| send(&p, &topic, (i % 3) as i32, i))
        .collect();
    // Let some of it reach the broker, then abort with the rest queued or in flight.
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.abort_transaction().await.expect("abort");
    let mut aborted = 0;
    for (i, o) in (3..).zip(outcomes) {
        match o.await {
            Ok(md) => written.push((md.partition, md.offset, i)),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    &ErrorKind::Transaction(TransactionError::Aborted),
                    "record {i}"
                );
                aborted += 1;
            }
        }
    }
    println!(
        "protocol v{version}: {} written before the abort, {aborted} failed as aborted",
        written.len()
    );
    assert_eq!(written.len() + aborted, n);
    assert!(
        written.len() > 3,
        "records were in flight when the abort came"
    );
    assert!(aborted > 0, "records were still unsent when the abort came");

    // A committed transaction after it, to know when read_committed has seen everything.
    p.begin_transaction().await.unwrap();
    for i in 0..3 {
        send(&p, &topic, i, 100_000 + i as usize).await.unwrap();
    }
    p.commit_transaction().await.unwrap();
    p.close(Duration::from_secs(10)).await;

    let committed = read(&bootstrap, "read_committed", &topic, 3, 3).await;
    assert_eq!(
        per_partition(&committed, 3),
        vec![vec![100_000], vec![100_001], vec![100_002]],
        "nothing of the aborted transaction is visible"
    );
    let uncommitted = read(&bootstrap, "read_uncommitted", &topic, 3, written.len() + 3).await;
    let mut seen: Vec<(i32, i64, usize)> = uncommitted
        .values()
        .flatten()
        .map(|c| {
            let i = String::from_utf8_lossy(c.value.as_deref().unwrap())
                .parse()
                .unwrap();
            (c.partition, c.offset, i)
        })
        .filter(|&(_, _, i)| i < n)
        .collect();
    seen.sort();
    written.sort();
    assert_eq!(
        seen, written,
        "the records reported written are in the log at their offsets, and no others"
    );
}

#[actix_rt::test]
async fn kafka_close_aborts_an_open_transaction() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-close");
    kafka.create_topic(&topic, 1, 1).await;
    let p = transactional(&bootstrap, &unique_topic("txn-close-id"), &[]);
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    for i in 0..10 {
        send(&p, &topic, 0, i).await.unwrap();
    }
    assert!(p.close(Duration::from_secs(10)).await);

    // Records of a plain producer after the transaction: a read_committed consumer reads
    // past the transaction's records only once it is over (the last stable offset), which
    // without the abort at close would take transaction.timeout.ms (60 s).
    let plain = Producer::from_pairs([("bootstrap.servers", bootstrap.as_str())]).unwrap();
    for i in 100..105 {
        send(&plain, &topic, 0, i).await.unwrap();
    }
    plain.close(Duration::from_secs(5)).await;
    let back = read(&bootstrap, "read_committed", &topic, 1, 5).await;
    assert_eq!(read_indexes(&back, 0), (100..105).collect::<Vec<_>>());
}

/// An interceptor that only counts what it sees.
struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl herald_actors::ProducerInterceptor for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn on_send(
        &mut self,
        record: herald::ProducerRecord,
    ) -> Result<herald::ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(record)
    }
}

/// With interceptors, records take a detour through the interceptor chain before they are
/// routed: a commit (or abort) called right after them must still cover them.
#[actix_rt::test]
async fn kafka_commit_and_abort_cover_records_still_in_the_interceptors() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("txn-interceptors");
    kafka.create_topic(&topic, 3, 1).await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let config = ProducerConfig::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("transactional.id", &unique_topic("txn-interceptors-id")),
    ])
    .unwrap();
    let p = Producer::builder(config)
        .interceptor(Counting(seen.clone()))
        .start()
        .unwrap();
    p.init_transactions().await.unwrap();
    for round in 0..5usize {
        // Committed, with the commit asked for at once.
        p.begin_transaction().await.unwrap();
        let base = round * 10_000;
        let outcomes: Vec<_> = (0..1000)
            .map(|i| send(&p, &topic, (i % 3) as i32, base + i))
            .collect();
        p.commit_transaction().await.expect("commit");
        for (i, o) in outcomes.into_iter().enumerate() {
            o.await
                .unwrap_or_else(|e| panic!("record {i} of round {round}: {e}"));
        }
        // Aborted, with the abort asked for at once: every record fails as aborted or was
        // written (and is aborted by the broker).
        p.begin_transaction().await.unwrap();
        let outcomes: Vec<_> = (0..1000)
            .map(|i| send(&p, &topic, (i % 3) as i32, base + 5000 + i))
            .collect();
        p.abort_transaction().await.expect("abort");
        for o in outcomes {
            if let Err(e) = o.await {
                assert_eq!(e.kind(), &ErrorKind::Transaction(TransactionError::Aborted));
            }
        }
    }
    p.close(Duration::from_secs(10)).await;
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    let back = read(&bootstrap, "read_committed", &topic, 3, 5000).await;
    let mut got: Vec<usize> = per_partition(&back, 3).into_iter().flatten().collect();
    got.sort_unstable();
    let expected: Vec<usize> = (0..5)
        .flat_map(|r| (r * 10_000)..(r * 10_000 + 1000))
        .collect();
    assert_eq!(
        got, expected,
        "every committed record, once; no aborted one"
    );
}

/// Compressed transactional batches (closed on the sealer's thread): the transactional
/// attribute and the codec share the batch header.
#[actix_rt::test]
async fn kafka_compressed_transactions() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("txn-{codec}"));
        kafka.create_topic(&topic, 3, 1).await;
        let p = transactional(
            &bootstrap,
            &unique_topic("txn-codec-id"),
            &[("compression.type", codec)],
        );
        p.init_transactions().await.unwrap();
        p.begin_transaction().await.unwrap();
        let aborted: Vec<_> = (0..300)
            .map(|i| send(&p, &topic, (i % 3) as i32, 10_000 + i))
            .collect();
        p.abort_transaction().await.unwrap();
        for o in aborted {
            if let Err(e) = o.await {
                assert_eq!(e.kind(), &ErrorKind::Transaction(TransactionError::Aborted));
            }
        }
        p.begin_transaction().await.unwrap();
        let outcomes: Vec<_> = (0..300)
            .map(|i| send(&p, &topic, (i % 3) as i32, i))
            .collect();
        p.commit_transaction().await.expect("commit");
        for o in outcomes {
            o.await.unwrap();
        }
        p.close(Duration::from_secs(10)).await;
        let back = read(&bootstrap, "read_committed", &topic, 3, 300).await;
        let mut expected = vec![Vec::new(); 3];
        for i in 0..300 {
            expected[i % 3].push(i);
        }
        assert_eq!(per_partition(&back, 3), expected, "{codec}");
    }
}
