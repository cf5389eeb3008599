//! Transaction error paths on librdkafka's mock cluster, which can inject an error into the
//! next requests of an API (`request_errors`) and move a coordinator: retriable EndTxn
//! errors are retried, a moved coordinator is found again, an abortable AddPartitionsToTxn
//! error fails the records and leaves the producer able to abort and go on, and a fatal
//! error fails the producer. The mock offers transaction protocol version 1 only. (What needs the real coordinator's state, fencing and
//! timeouts, is tested on Apache Kafka: `kafka::transactions`.)

use std::time::Duration;

use herald::{ErrorClass, ErrorKind, TransactionError};
use herald_actors::fault_injection::Crash;
use herald_actors::{Produce, Producer};
use rdkafka::mocking::MockCoordinator;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::mock::Mock;
use crate::support::{init_tracing, unique_topic};

fn producer(mock: &Mock, id: &str) -> Producer {
    Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("transactional.id", id),
        ("linger.ms", "1"),
        ("retry.backoff.ms", "20"),
    ])
    .expect("a transactional producer starts")
}

/// Sends `n` records to `topic` in one transaction (partitions round robin) and waits for
/// their outcomes; returns how many were written.
async fn send_all(p: &Producer, topic: &str, n: usize) -> usize {
    let outcomes: Vec<_> = (0..n)
        .map(|i| {
            p.send(
                Produce::new(topic.to_string())
                    .partition((i % 3) as i32)
                    .value(i.to_string()),
            )
        })
        .collect();
    p.flush().await;
    let mut written = 0;
    for o in outcomes {
        if o.await.is_ok() {
            written += 1;
        }
    }
    written
}

#[actix_rt::test]
async fn mock_retriable_end_txn_errors_are_retried() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-retry");
    mock.create_topic(&topic, 3, 3);
    let p = producer(&mock, &unique_topic("mock-txn-retry-id"));
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    assert_eq!(send_all(&p, &topic, 30).await, 30);
    mock.cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        ],
    );
    let committing = std::time::Instant::now();
    p.commit_transaction()
        .await
        .expect("four retriable EndTxn errors, then the commit");
    // The mock keeps no transaction state to read back, so the retries show in the time the
    // commit took: each error is waited out by retry.backoff.ms, doubling from 20 ms with
    // +-20% jitter (at least 0.8 x (20 + 40 + 80 + 160) ms). A producer that took an error
    // answer for a commit would be done in one round trip. (`transactions_fake` counts the
    // EndTxn requests of the same case.)
    let took = committing.elapsed();
    assert!(
        took >= Duration::from_millis(240),
        "the commit took {took:?}: not four backoffs"
    );
    // The errors were all used up by the commit: the next one goes straight through.
    p.begin_transaction().await.unwrap();
    assert_eq!(send_all(&p, &topic, 3).await, 3);
    p.commit_transaction().await.expect("a plain commit");
    p.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn mock_a_moved_coordinator_is_found_again() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-move");
    mock.create_topic(&topic, 3, 3);
    let id = unique_topic("mock-txn-move-id");
    mock.cluster
        .coordinator(MockCoordinator::Transaction(id.clone()), 1)
        .unwrap();
    let p = producer(&mock, &id);
    p.init_transactions().await.expect("init");
    for to in [2, 3, 1] {
        p.begin_transaction().await.unwrap();
        assert_eq!(send_all(&p, &topic, 9).await, 9);
        // The coordinator moves mid-transaction: the old one answers NOT_COORDINATOR.
        mock.cluster
            .coordinator(MockCoordinator::Transaction(id.clone()), to)
            .unwrap();
        p.commit_transaction()
            .await
            .unwrap_or_else(|e| panic!("commit with the coordinator moved to {to}: {e}"));
    }
    p.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn mock_an_abortable_add_partitions_error_is_aborted_and_the_producer_goes_on() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-abortable");
    mock.create_topic(&topic, 3, 3);
    let p = producer(&mock, &unique_topic("mock-txn-abortable-id"));
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    mock.cluster.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let failed = p
        .send(Produce::new(topic.clone()).partition(0).value("x"))
        .await
        .unwrap_err();
    let ErrorKind::Transaction(e) = failed.kind() else {
        panic!("the record fails with the transaction's error: {failed}")
    };
    assert_eq!(e.class(), ErrorClass::Abortable, "{e}");
    assert!(e.to_string().contains("TOPIC_AUTHORIZATION_FAILED"), "{e}");
    // Further records are refused with the same error until the abort.
    let refused = p
        .send(Produce::new(topic.clone()).partition(1).value("y"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), failed.kind());
    assert!(refused.record().is_some(), "a refused record comes back");
    let commit = p.commit_transaction().await.unwrap_err();
    assert_eq!(commit.class(), ErrorClass::Abortable, "{commit}");
    // Java's txn-*-time-ns-total count calls that succeeded: the refused commit adds none.
    let m = p.metrics().await;
    assert!(
        m.txn_init_time_ns_total > 0 && m.txn_begin_time_ns_total > 0,
        "{m:?}"
    );
    assert_eq!(m.txn_commit_time_ns_total, 0, "{m:?}");
    assert_eq!(m.txn_abort_time_ns_total, 0, "{m:?}");
    p.abort_transaction()
        .await
        .expect("abort after an abortable error");
    let aborted = p.metrics().await;
    assert!(aborted.txn_abort_time_ns_total > 0, "{aborted:?}");
    assert_eq!(aborted.txn_begin_time_ns_total, m.txn_begin_time_ns_total);

    p.begin_transaction().await.expect("a new transaction");
    assert_eq!(send_all(&p, &topic, 12).await, 12);
    p.commit_transaction()
        .await
        .expect("commit after the abort");
    let m = p.metrics().await;
    assert!(
        m.txn_begin_time_ns_total > aborted.txn_begin_time_ns_total,
        "{m:?}"
    );
    assert!(m.txn_commit_time_ns_total > 0, "{m:?}");
    assert!(m.flush_time_ns_total > 0, "send_all flushed: {m:?}");
    assert_eq!(m.txn_init_time_ns_total, aborted.txn_init_time_ns_total);
    assert_eq!(m.txn_send_offsets_time_ns_total, 0, "{m:?}");
    p.close(Duration::from_secs(5)).await;
}

/// A record still waiting for its topic's metadata when the commit is asked for belongs to
/// the transaction: the commit waits for it, and when it fails (here after max.block.ms, its
/// topic unknown) the commit fails with it instead of committing without it.
#[actix_rt::test]
async fn mock_a_record_that_fails_while_the_commit_waits_for_it_fails_the_commit() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-parked");
    mock.create_topic(&topic, 3, 3);
    let missing = unique_topic("mock-txn-parked-missing");
    mock.cluster
        .topic_error(
            &missing,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    let p = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        (
            "transactional.id",
            unique_topic("mock-txn-parked-id").as_str(),
        ),
        ("linger.ms", "1"),
        ("retry.backoff.ms", "20"),
        ("max.block.ms", "1500"),
    ])
    .expect("a transactional producer starts");
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(topic.clone()).partition(0).value("written"))
        .await
        .expect("a record of the transaction");
    let parked = p.send(Produce::new(missing.clone()).value("parked"));
    let commit = p
        .commit_transaction()
        .await
        .expect_err("the commit cannot succeed without the parked record");
    assert_eq!(commit.class(), ErrorClass::Abortable, "{commit}");
    assert!(commit.to_string().contains("refused"), "{commit}");
    let failed = parked.await.expect_err("its topic never shows up");
    assert!(
        matches!(failed.kind(), ErrorKind::MetadataTimeout { .. }),
        "{failed}"
    );
    p.abort_transaction()
        .await
        .expect("abort after the failed commit");
    p.begin_transaction().await.expect("a new transaction");
    assert_eq!(send_all(&p, &topic, 3).await, 3);
    p.commit_transaction().await.expect("a plain commit");
    p.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn mock_fatal_errors_fail_the_producer_for_good() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-fatal");
    mock.create_topic(&topic, 3, 3);

    // Refused at init: nothing can be done with this id.
    mock.cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );
    let p = producer(&mock, &unique_topic("mock-txn-fatal-id"));
    let e = p.init_transactions().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
    assert!(
        e.to_string()
            .contains("TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
        "{e}"
    );
    assert_eq!(p.begin_transaction().await.unwrap_err(), e);
    p.close(Duration::from_secs(5)).await;

    // Refused at commit.
    let p = producer(&mock, &unique_topic("mock-txn-fatal-id"));
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    assert_eq!(send_all(&p, &topic, 6).await, 6);
    mock.cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );
    let e = p.commit_transaction().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
    assert!(matches!(e, TransactionError::Fatal(_)), "{e}");
    assert_eq!(p.abort_transaction().await.unwrap_err(), e);
    let refused = p
        .send(Produce::new(topic.clone()).partition(0).value("z"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::Transaction(e));
    p.close(Duration::from_secs(5)).await;
}

/// The transaction manager crashed (and restarted by its supervisor) while an
/// AddPartitionsToTxn and while an EndTxn is being retried: what was under way runs again,
/// the records and the commit succeed, and the producer goes on.
#[actix_rt::test]
async fn mock_a_crashed_transaction_manager_resumes_what_was_under_way() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("mock-txn-crash");
    mock.create_topic(&topic, 3, 3);
    let p = producer(&mock, &unique_topic("mock-txn-crash-id"));
    let manager = p
        .fault_injection()
        .transaction_manager()
        .expect("a transactional producer has a transaction manager");
    p.init_transactions().await.expect("init");

    // Mid-AddPartitionsToTxn: the coordinator keeps answering CONCURRENT_TRANSACTIONS.
    p.begin_transaction().await.unwrap();
    mock.cluster.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS; 4],
    );
    let record = p.send(Produce::new(topic.clone()).partition(0).value("a"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    manager.do_send(Crash::Stop);
    tokio::time::timeout(Duration::from_secs(10), record)
        .await
        .expect("the record's partition is added again after the restart, not forgotten")
        .expect("written once the partition is added");

    // Mid-EndTxn.
    mock.cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 4],
    );
    let router = p.router().clone();
    let commit =
        actix_rt::spawn(async move { router.send(herald_actors::CommitTransaction).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    // A panic this time: supervised like a stop, the actor's state kept.
    manager.do_send(Crash::Panic);
    tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("the commit resumes after the restart, not forgotten")
        .unwrap()
        .expect("mailbox")
        .expect("the commit resumed after the restart");
    assert_eq!(p.fault_injection().restarts(), 2);
    assert_eq!(p.fault_injection().restarts_of("transaction"), Some(2));
    assert_eq!(p.fault_injection().panics(), 1);

    p.begin_transaction().await.unwrap();
    assert_eq!(send_all(&p, &topic, 6).await, 6);
    p.commit_transaction()
        .await
        .expect("a commit after the restarts");
    p.close(Duration::from_secs(5)).await;
}

/// Two batches of a partition in flight (`max.in.flight.batches.per.partition` 2, Java's
/// pipelining): the first is refused with a retriable error, so the mock (which checks a
/// transactional producer's sequences) refuses the second as OUT_OF_ORDER_SEQUENCE_NUMBER.
/// Java's `TransactionManager::canRetry` retries a batch that is not the next in sequence
/// behind the one before it; both are then written and the transaction commits.
#[actix_rt::test]
async fn mock_a_batch_out_of_order_behind_a_retried_one_is_retried_not_failed() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("mock-txn-ooo");
    mock.create_topic(&topic, 1, 1);
    let p = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("transactional.id", unique_topic("mock-txn-ooo-id").as_str()),
        ("linger.ms", "0"),
        ("retry.backoff.ms", "20"),
        ("max.in.flight.batches.per.partition", "2"),
    ])
    .expect("a transactional producer starts");
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    // The partition is added to the transaction and holds the producer's sequence state.
    p.send(Produce::new(topic.clone()).partition(0).value("first"))
        .await
        .expect("the first record");
    // Slow answers, so that the second batch goes while the first is out.
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    mock.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS],
    );
    let a = p.send(Produce::new(topic.clone()).partition(0).value("a"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = p.send(Produce::new(topic.clone()).partition(0).value("b"));
    let (a, b) = tokio::join!(a, b);
    let a = a.expect("the batch refused with NOT_ENOUGH_REPLICAS is retried");
    let b = b.expect("the batch refused as out of order behind it is retried too");
    assert!(a.offset < b.offset, "in order: {} {}", a.offset, b.offset);
    p.commit_transaction().await.expect("the commit");
    p.close(Duration::from_secs(5)).await;
}
