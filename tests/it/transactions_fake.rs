//! Transaction-manager paths that need a coordinator to answer on cue, on the scripted fake
//! broker (`support/fake_broker.rs`): one broker (node 1) that is also the transaction
//! coordinator. Apache Kafka cannot be made to hold a commit's markers pending for as long
//! as a test needs, nor to expire a transactional id mid-transaction, and librdkafka's mock
//! cluster refuses an EndTxn before it looks at it and offers transaction protocol version 1
//! only (`kafka::transactions` and `transactions_mock` cover the rest).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::{ErrorClass, TransactionError};
use herald_actors::{Produce, Producer};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::api_versions_response::FinalizedFeatureKey;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    ApiVersionsResponse, BrokerId, EndTxnRequest, EndTxnResponse, FindCoordinatorResponse,
    InitProducerIdRequest, ProduceRequest, ProducerId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::support::fake_broker::{self, Action, FakeBroker, RequestContext};
use crate::support::init_tracing;
use crate::support::producer::start_producer;

const TOPIC: &str = "txn-fake";
const PRODUCER_ID: i64 = 7;

/// What the broker advertises: the transactional APIs beside the standard ones, without a
/// finalized `transaction.version` (so protocol version 1).
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::EndTxn, 0, 3),
];

/// What Kafka 2.4 offers of the transactional APIs: InitProducerId up to v2, without the
/// producer id and epoch KIP-360 added in 2.5, so no epoch can be bumped.
const KAFKA_2_4: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 8),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 2),
    (ApiKey::AddPartitionsToTxn, 0, 1),
    (ApiKey::EndTxn, 0, 1),
];

/// The coordinator's state, as the script moves it.
#[derive(Debug, Default)]
struct Coordinator {
    /// An EndTxn(commit) arrived: the coordinator is in PrepareCommit, then CompleteCommit.
    committed: AtomicBool,
    /// The commit's markers are still being written: a repeated EndTxn(commit) is answered
    /// CONCURRENT_TRANSACTIONS, as Kafka answers it in PrepareCommit.
    markers_pending: AtomicBool,
    /// The producer epoch handed out last.
    epoch: AtomicI16,
    /// Error codes to answer the next EndTxn requests with, one each, before the states above
    /// are looked at (as Kafka answers a coordinator that is loading or has moved).
    end_txn_errors: Mutex<VecDeque<i16>>,
    /// While not 0, every partition of an AddPartitionsToTxn is answered with this code.
    add_partitions_error: AtomicI16,
    /// Milliseconds to hold each EndTxn's answer back.
    end_txn_delay_ms: AtomicU64,
    /// While not 0, every partition of a TxnOffsetCommit is answered with this code.
    offset_commit_error: AtomicI16,
}

impl Coordinator {
    /// Answers the transactional requests as Kafka's coordinator does in the states the
    /// script puts it in; the rest as a healthy broker (`standard_handler`).
    fn start(self: &Arc<Self>) -> FakeBroker {
        self.start_with(APIS)
    }

    /// [`start`](Self::start), with two partitions.
    fn start_two_partitions(self: &Arc<Self>) -> FakeBroker {
        self.start_serving(APIS, 2)
    }

    /// [`start`](Self::start), advertising `apis`.
    fn start_with(self: &Arc<Self>, apis: &'static [(ApiKey, i16, i16)]) -> FakeBroker {
        self.start_serving(apis, 1)
    }

    fn start_serving(
        self: &Arc<Self>,
        apis: &'static [(ApiKey, i16, i16)],
        partitions: i32,
    ) -> FakeBroker {
        let standard = fake_broker::standard_handler(&[(TOPIC, partitions)]);
        let txn = self.clone();
        FakeBroker::start(move |ctx| match ctx.api() {
            Some(ApiKey::ApiVersions) => vec![Action::Respond(
                fake_broker::api_versions_response_with(ctx.api_version, apis),
            )],
            Some(ApiKey::FindCoordinator) => vec![Action::Respond(find_coordinator(ctx))],
            Some(ApiKey::InitProducerId) => {
                let epoch = txn.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                vec![Action::Respond(fake_broker::init_producer_id_response(
                    ctx.api_version,
                    0,
                    PRODUCER_ID,
                    epoch,
                ))]
            }
            Some(ApiKey::AddPartitionsToTxn) => vec![Action::Respond(add_partitions(
                ctx,
                txn.add_partitions_error.load(Ordering::SeqCst),
            ))],
            Some(ApiKey::AddOffsetsToTxn) => vec![Action::Respond(fake_broker::encode(
                &AddOffsetsToTxnResponse::default(),
                ctx.api_version,
            ))],
            Some(ApiKey::TxnOffsetCommit) => vec![Action::Respond(commit_offsets(
                ctx,
                txn.offset_commit_error.load(Ordering::SeqCst),
            ))],
            Some(ApiKey::EndTxn) => {
                let request: EndTxnRequest = ctx.decode();
                let scripted = txn
                    .end_txn_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                let code = if let Some(code) = scripted {
                    code
                } else if request.committed {
                    txn.committed.store(true, Ordering::SeqCst);
                    if txn.markers_pending.load(Ordering::SeqCst) {
                        51 // CONCURRENT_TRANSACTIONS
                    } else {
                        0
                    }
                } else if txn.committed.load(Ordering::SeqCst) {
                    48 // INVALID_TXN_STATE: an abort of a committed transaction
                } else {
                    0
                };
                let response = EndTxnResponse::default().with_error_code(code);
                let delay = txn.end_txn_delay_ms.load(Ordering::SeqCst);
                vec![
                    Action::Delay(Duration::from_millis(delay)),
                    Action::Respond(fake_broker::encode(&response, ctx.api_version)),
                ]
            }
            _ => standard(ctx),
        })
    }
}

fn find_coordinator(ctx: &RequestContext) -> bytes::Bytes {
    let response = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(1))
        .with_host(StrBytes::from_string(ctx.broker_addr.ip().to_string()))
        .with_port(ctx.broker_addr.port().into());
    fake_broker::encode(&response, ctx.api_version)
}

fn commit_offsets(ctx: &RequestContext, code: i16) -> bytes::Bytes {
    let request: TxnOffsetCommitRequest = ctx.decode();
    let topics = request
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    let response = TxnOffsetCommitResponse::default().with_topics(topics);
    fake_broker::encode(&response, ctx.api_version)
}

fn add_partitions(ctx: &RequestContext, code: i16) -> bytes::Bytes {
    let request: AddPartitionsToTxnRequest = ctx.decode();
    let topics = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    let response = AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    fake_broker::encode(&response, ctx.api_version)
}

fn producer(fake: &FakeBroker) -> Producer {
    producer_blocking(fake, "1000")
}

/// [`producer`] with `max.block.ms` at `max_block`.
fn producer_blocking(fake: &FakeBroker, max_block: &str) -> Producer {
    start_producer(
        &fake.bootstrap(),
        &[
            ("transactional.id", "txn-fake-id"),
            ("linger.ms", "0"),
            ("retry.backoff.ms", "20"),
            ("retry.backoff.max.ms", "50"),
            ("max.block.ms", max_block),
        ],
        &[],
    )
}

/// Initialises `p` and begins a transaction with one record written to partition 0.
async fn begin_with_a_record(p: &Producer) {
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(0).value("r"))
        .await
        .expect("written");
}

/// The EndTxn requests the broker received: `true` for a commit.
fn end_txns(fake: &FakeBroker) -> Vec<bool> {
    fake.requests_for(ApiKey::EndTxn)
        .iter()
        .map(|r| r.decode::<EndTxnRequest>().committed)
        .collect()
}

/// The four EndTxn errors Java retries (CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS,
/// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE) are each waited out and the commit asked
/// again, the last two after looking the coordinator up again; the commit then succeeds.
/// (`transactions_mock::mock_retriable_end_txn_errors_are_retried` meets the same codes from
/// librdkafka's mock, which cannot show the requests.)
#[actix_rt::test]
async fn retriable_end_txn_errors_are_retried_until_the_commit() {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator
        .end_txn_errors
        .lock()
        .unwrap()
        .extend([51, 14, 16, 15]);
    let fake = coordinator.start();
    let p = producer(&fake);
    begin_with_a_record(&p).await;
    let lookups = fake.requests_for(ApiKey::FindCoordinator).len();
    p.commit_transaction()
        .await
        .expect("four retriable EndTxn errors, then the commit");
    assert_eq!(
        end_txns(&fake),
        [true; 5],
        "one EndTxn(commit) per error, then the one answered"
    );
    assert_eq!(
        fake.requests_for(ApiKey::FindCoordinator).len() - lookups,
        2,
        "the coordinator looked up again after NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE"
    );
    p.close(Duration::from_secs(5)).await;
}

/// A transaction with one record whose commit timed out: its EndTxn reached the coordinator,
/// which holds the markers back (`markers_pending`) until the test lets it finish.
async fn commit_timed_out() -> (Arc<Coordinator>, FakeBroker, Producer) {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator.markers_pending.store(true, Ordering::SeqCst);
    let fake = coordinator.start();
    let p = producer(&fake);
    begin_with_a_record(&p).await;
    let commit = p.commit_transaction().await.unwrap_err();
    assert!(
        matches!(commit, TransactionError::TimedOut { .. }),
        "{commit}"
    );
    assert!(coordinator.committed.load(Ordering::SeqCst));
    (coordinator, fake, p)
}

/// A commit whose EndTxn reached the coordinator times out while the coordinator writes its
/// markers. An abort then would be answered INVALID_TXN_STATE, which looks like a
/// transaction the coordinator aborted itself, and the application would be told "aborted"
/// of a transaction that commits. As Java's producer, Herald refuses the abort (naming the
/// commit to call again) and sends nothing; the repeated commit then completes.
#[actix_rt::test]
async fn an_abort_after_a_timed_out_commit_is_refused() {
    let (coordinator, fake, p) = commit_timed_out().await;

    let abort = p.abort_transaction().await.unwrap_err();
    assert_eq!(
        abort,
        TransactionError::Unfinished {
            operation: "abort_transaction",
            unfinished: "commit_transaction",
        }
    );
    assert_eq!(abort.class(), ErrorClass::Retriable);
    assert!(
        end_txns(&fake).iter().all(|&commit| commit),
        "no EndTxn(abort) was sent: {:?}",
        end_txns(&fake)
    );
    let begin = p.begin_transaction().await.unwrap_err();
    assert!(
        matches!(begin, TransactionError::Unfinished { .. }),
        "{begin}"
    );

    // The markers are written: the commit, called again, completes, and the producer goes on.
    coordinator.markers_pending.store(false, Ordering::SeqCst);
    p.commit_transaction().await.expect("the commit, again");
    p.begin_transaction().await.expect("a new transaction");
    p.send(Produce::new(TOPIC).partition(0).value("w"))
        .await
        .expect("written");
    p.commit_transaction().await.expect("commit");
    assert!(end_txns(&fake).iter().all(|&commit| commit));
    p.close(Duration::from_secs(5)).await;
}

/// `close` after a commit timed out leaves the transaction to the coordinator: it sends no
/// EndTxn(abort) (the commit may have reached the coordinator) and does not hang.
#[actix_rt::test]
async fn close_after_a_timed_out_commit_does_not_abort() {
    let (_coordinator, fake, p) = commit_timed_out().await;
    let ends = end_txns(&fake).len();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), p.close(Duration::from_secs(5)))
            .await
            .expect("close returns")
    );
    assert_eq!(end_txns(&fake).len(), ends, "close sent no EndTxn");
}

/// A transaction with a record written to partition 0, and a record for partition 1 whose
/// AddPartitionsToTxn the coordinator answers CONCURRENT_TRANSACTIONS until the test lets it
/// through: that record waits, unsent. The standard handler serves two partitions.
async fn a_partition_waiting_to_be_added() -> (
    Arc<Coordinator>,
    FakeBroker,
    Producer,
    impl std::future::Future<Output = herald_actors::Outcome>,
) {
    a_partition_waiting_to_be_added_for("1000").await
}

/// [`a_partition_waiting_to_be_added`], with `max.block.ms` at `max_block`: how long the
/// partition's add is retried before its record fails.
async fn a_partition_waiting_to_be_added_for(
    max_block: &str,
) -> (
    Arc<Coordinator>,
    FakeBroker,
    Producer,
    impl std::future::Future<Output = herald_actors::Outcome>,
) {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    let fake = coordinator.start_two_partitions();
    let p = producer_blocking(&fake, max_block);
    begin_with_a_record(&p).await;
    coordinator.add_partitions_error.store(51, Ordering::SeqCst);
    let waiting = p.send(Produce::new(TOPIC).partition(1).value("r1"));
    (coordinator, fake, p, waiting)
}

/// An abort while a commit still flushes (its caller stopped waiting for it) is refused,
/// naming the commit to call again, and fails or discards nothing: the commit goes on and
/// commits the whole transaction. Taken, the abort failed the waiting record as aborted and
/// both ends reached the transaction manager, which sent the later one, usually the commit:
/// the record before it committed, the one after reported "not written", and the
/// application told its abort failed.
#[actix_rt::test]
async fn an_abort_while_a_commit_flushes_is_refused() {
    let (coordinator, fake, p, waiting) = a_partition_waiting_to_be_added().await;
    let (waiting, ()) = futures_util::join!(waiting, async {
        let commit = tokio::time::timeout(Duration::from_millis(500), p.commit_transaction());
        assert!(commit.await.is_err(), "the commit waits for r1");
        let abort = p.abort_transaction().await.unwrap_err();
        assert_eq!(
            abort,
            TransactionError::Unfinished {
                operation: "abort_transaction",
                unfinished: "commit_transaction",
            }
        );
        coordinator.add_partitions_error.store(0, Ordering::SeqCst);
    });
    waiting.expect("r1 is written once its partition is added");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while end_txns(&fake).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(end_txns(&fake), [true], "the commit's EndTxn, and no abort");
    p.close(Duration::from_secs(5)).await;
}

/// A commit while an abort is under way is refused, naming the abort: the abort failed the
/// transaction's unsent records, and its end sent as a commit would commit what was written
/// before them. Taken, the commit's end replaced the abort's and r0 was committed.
#[actix_rt::test]
async fn a_commit_while_an_abort_waits_is_refused() {
    let (coordinator, fake, p, waiting) = a_partition_waiting_to_be_added().await;
    let abort = p.abort_transaction();
    let (waiting, abort, ()) = futures_util::join!(waiting, abort, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let commit = p.commit_transaction().await.unwrap_err();
        assert_eq!(
            commit,
            TransactionError::Unfinished {
                operation: "commit_transaction",
                unfinished: "abort_transaction",
            }
        );
        coordinator.add_partitions_error.store(0, Ordering::SeqCst);
    });
    let e = waiting.expect_err("r1 was discarded by the abort");
    assert!(
        matches!(
            e.kind(),
            herald::ErrorKind::Transaction(TransactionError::Aborted)
        ),
        "{e}"
    );
    abort.expect("the abort completes once the partition's add is answered");
    assert_eq!(
        end_txns(&fake),
        [false],
        "the abort's EndTxn, and no commit"
    );
    p.close(Duration::from_secs(5)).await;
}

/// A transaction whose commit failed (a record's partition refused by the coordinator:
/// TOPIC_AUTHORIZATION_FAILED, abortable) and that the application did not abort is aborted
/// by `close`, as Java's close aborts while the transaction manager has an ongoing
/// transaction (ABORTABLE_ERROR included): read_committed consumers need not wait for
/// transaction.timeout.ms. Before, only a transaction still open was.
#[actix_rt::test]
async fn close_aborts_a_transaction_whose_commit_failed() {
    let (coordinator, fake, p, waiting) = a_partition_waiting_to_be_added().await;
    coordinator.add_partitions_error.store(29, Ordering::SeqCst);
    let e = waiting.await.expect_err("r1's partition refused");
    assert!(e.to_string().contains("TOPIC_AUTHORIZATION_FAILED"), "{e}");
    let commit = p.commit_transaction().await.unwrap_err();
    assert_eq!(commit.class(), ErrorClass::Abortable, "{commit}");
    assert!(end_txns(&fake).is_empty(), "{:?}", end_txns(&fake));
    assert!(p.close(Duration::from_secs(5)).await);
    assert_eq!(
        end_txns(&fake),
        [false],
        "close aborted the failed transaction"
    );
}

/// A commit under way when the application closes the producer (a shutdown hook while the
/// commit runs, say) is let finish: its EndTxn is answered and the commit reports it,
/// rather than the transaction manager stopping with the request in flight, the commit
/// answered `Closed` and the transaction's outcome left to chance (as Java's close runs the
/// sender while the transaction manager is completing).
#[actix_rt::test]
async fn close_lets_a_commit_under_way_finish() {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator.end_txn_delay_ms.store(500, Ordering::SeqCst);
    let fake = coordinator.start();
    let p = producer(&fake);
    begin_with_a_record(&p).await;
    // Through the router's address: `close` takes the producer.
    let commit = p.router().send(herald_actors::CommitTransaction);
    let (commit, closed) = futures_util::join!(commit, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.close(Duration::from_secs(5)).await
    });
    commit
        .expect("the router answered")
        .expect("the commit finished before the producer stopped");
    assert!(closed);
    assert_eq!(end_txns(&fake), [true], "the commit, and no abort at close");
}

/// `close(timeout)` is one deadline, as Java's: the flush's time (3 s: a record whose
/// partition the coordinator answers CONCURRENT_TRANSACTIONS until max.block.ms fails it)
/// comes out of the time left for the abort of the transaction (an EndTxn the coordinator
/// holds for 10 s), which before had a whole `timeout` of its own after it (3 + 4 s, and the
/// connection's graceful close after, at most a second, either way).
#[actix_rt::test]
async fn close_keeps_to_its_timeout_with_a_transaction_to_abort() {
    let (coordinator, fake, p, waiting) = a_partition_waiting_to_be_added_for("3000").await;
    coordinator.end_txn_delay_ms.store(10_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (_, waiting) = futures_util::join!(p.close(Duration::from_secs(4)), waiting);
    let took = started.elapsed();
    waiting.expect_err("r1's partition was never added");
    assert!(
        took < Duration::from_millis(6500),
        "close(4 s) took {took:?}: the abort had a timeout of its own"
    );
    assert_eq!(end_txns(&fake), [false], "the abort was sent");
}

/// A `send_offsets_to_transaction` that timed out (TxnOffsetCommit answered
/// COORDINATOR_LOAD_IN_PROGRESS past max.block.ms) may have left the offsets out of the
/// transaction: a commit then is refused, naming the call to repeat, rather than committing
/// the records without the offsets (the input would be read again after a restart: not
/// exactly once). Called again once the coordinator answers, the offsets go in and the
/// commit goes out.
#[actix_rt::test]
async fn a_commit_after_offsets_timed_out_waits_for_them() {
    use herald_actors::{ConsumerGroupMetadata, TopicPartitionOffset};

    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator.offset_commit_error.store(14, Ordering::SeqCst);
    let fake = coordinator.start();
    let p = producer(&fake);
    begin_with_a_record(&p).await;
    let offsets = vec![TopicPartitionOffset::new("input", 0, 42)];
    let group = ConsumerGroupMetadata::new("group");
    let e = p
        .send_offsets_to_transaction(offsets.clone(), group.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, TransactionError::TimedOut { .. }), "{e}");
    let commit = p.commit_transaction().await.unwrap_err();
    assert_eq!(
        commit,
        TransactionError::Unfinished {
            operation: "commit_transaction",
            unfinished: "send_offsets_to_transaction",
        }
    );
    assert!(end_txns(&fake).is_empty(), "{:?}", end_txns(&fake));
    coordinator.offset_commit_error.store(0, Ordering::SeqCst);
    p.send_offsets_to_transaction(offsets, group)
        .await
        .expect("the offsets, again");
    p.commit_transaction().await.expect("the commit");
    assert_eq!(end_txns(&fake), [true]);
    p.close(Duration::from_secs(5)).await;
}

/// What a Kafka 4.x broker with `transaction.version` 2 finalized advertises, as far as the
/// producer uses it: Produce v12 adds partitions to the transaction, EndTxn v5 bumps the
/// epoch at every end.
const APIS_V2: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::EndTxn, 0, 5),
];

/// A coordinator (and partition leader) of transaction protocol version 2 that can forget
/// the transactional id, as Kafka does once it expires (`transactional.id.expiration.ms`).
#[derive(Debug, Default)]
struct ForgetfulCoordinator {
    /// The transactional id expired: its producer id is unknown, and Produce and EndTxn
    /// are answered INVALID_PRODUCER_ID_MAPPING until InitProducerId creates a new one.
    expired: AtomicBool,
    /// The producer id and epoch handed out last.
    producer_id: std::sync::atomic::AtomicI64,
    epoch: AtomicI16,
}

impl ForgetfulCoordinator {
    fn start(self: &Arc<Self>) -> FakeBroker {
        let txn = self.clone();
        txn.producer_id.store(PRODUCER_ID, Ordering::SeqCst);
        let offset = std::sync::atomic::AtomicI64::new(0);
        FakeBroker::start(move |ctx| match ctx.api() {
            Some(ApiKey::ApiVersions) => vec![Action::Respond(api_versions_v2(ctx.api_version))],
            Some(ApiKey::Metadata) => fake_broker::standard_handler(&[(TOPIC, 2)])(ctx),
            Some(ApiKey::FindCoordinator) => vec![Action::Respond(find_coordinator(ctx))],
            Some(ApiKey::InitProducerId) => {
                let request: InitProducerIdRequest = ctx.decode();
                let (pid, epoch) = if txn.expired.swap(false, Ordering::SeqCst) {
                    // A new transactional id's metadata: a new producer id, whatever the
                    // request named (Kafka accepts the producer's old id and epoch then).
                    (txn.producer_id.fetch_add(1, Ordering::SeqCst) + 1, 0)
                } else {
                    assert!(
                        request.producer_id.0 == -1
                            || request.producer_id.0 == txn.producer_id.load(Ordering::SeqCst)
                    );
                    let epoch = txn.epoch.load(Ordering::SeqCst) + 1;
                    (txn.producer_id.load(Ordering::SeqCst), epoch)
                };
                txn.epoch.store(epoch, Ordering::SeqCst);
                vec![Action::Respond(fake_broker::init_producer_id_response(
                    ctx.api_version,
                    0,
                    pid,
                    epoch,
                ))]
            }
            Some(ApiKey::Produce) => {
                let request: ProduceRequest = ctx.decode();
                let expired = txn.expired.load(Ordering::SeqCst);
                let mut acks = Vec::new();
                for topic in &request.topic_data {
                    for partition in &topic.partition_data {
                        let at = offset.fetch_add(1, Ordering::SeqCst);
                        let code = if expired { 49 } else { 0 };
                        acks.push((topic.name.to_string(), partition.index, at, code));
                    }
                }
                let acks: Vec<(&str, i32, i64, i16)> = acks
                    .iter()
                    .map(|(t, p, o, e)| (t.as_str(), *p, *o, *e))
                    .collect();
                vec![Action::Respond(fake_broker::produce_response_with_errors(
                    ctx.api_version,
                    &acks,
                ))]
            }
            Some(ApiKey::EndTxn) => {
                let mut response = EndTxnResponse::default();
                if txn.expired.load(Ordering::SeqCst) {
                    response = response
                        .with_error_code(49)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                } else {
                    let epoch = txn.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    response = response
                        .with_producer_id(ProducerId(txn.producer_id.load(Ordering::SeqCst)))
                        .with_producer_epoch(epoch);
                }
                vec![Action::Respond(fake_broker::encode(
                    &response,
                    ctx.api_version,
                ))]
            }
            _ => vec![Action::Close],
        })
    }
}

/// An ApiVersions response advertising [`APIS_V2`] and `transaction.version` 2 finalized.
fn api_versions_v2(version: i16) -> bytes::Bytes {
    let body = fake_broker::api_versions_response_with(version, APIS_V2);
    if version < 3 {
        return body;
    }
    let mut response = ApiVersionsResponse::decode(&mut body.clone(), version).expect("decodes");
    response.finalized_features_epoch = 1;
    response.finalized_features.push(
        FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str("transaction.version"))
            .with_min_version_level(2)
            .with_max_version_level(2),
    );
    fake_broker::encode(&response, version)
}

/// Transaction protocol version 2: the coordinator expired the transactional id
/// mid-transaction, so a record's implicit add fails with INVALID_PRODUCER_ID_MAPPING. The
/// coordinator answers an EndTxn the same way, so the abort asks for a new producer id
/// without one (as Java's `beginCompletingTransaction` does); sending EndTxn(abort), the
/// producer could never abort. Then a new transaction commits under the new id.
#[actix_rt::test]
async fn an_abort_after_invalid_producer_id_mapping_gets_a_new_producer_id() {
    init_tracing();
    let coordinator = Arc::new(ForgetfulCoordinator::default());
    let fake = coordinator.start();
    let p = producer(&fake);
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(0).value("a"))
        .await
        .expect("written");
    assert_eq!(p.fault_injection().transaction_version(), Some(2));

    coordinator.expired.store(true, Ordering::SeqCst);
    let failed = p
        .send(Produce::new(TOPIC).partition(1).value("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            failed.kind(),
            herald::ErrorKind::Broker {
                code: herald::KafkaCode::INVALID_PRODUCER_ID_MAPPING,
                ..
            }
        ),
        "{failed}"
    );
    let e = p.commit_transaction().await.unwrap_err();
    assert!(
        matches!(e, TransactionError::InvalidProducerIdMapping(_)),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Abortable);
    let ends = end_txns(&fake).len();
    p.abort_transaction()
        .await
        .expect("the abort, with a new producer id");
    assert_eq!(
        end_txns(&fake).len(),
        ends,
        "no EndTxn: the coordinator refuses it"
    );
    let inits: Vec<InitProducerIdRequest> = fake
        .requests_for(ApiKey::InitProducerId)
        .iter()
        .map(|r| r.decode())
        .collect();
    assert_eq!(inits.len(), 2, "init_transactions, then the abort's");

    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(1).value("c"))
        .await
        .expect("written under the new producer id");
    p.commit_transaction().await.expect("commit");
    let produced: Vec<i64> = fake
        .requests_for(ApiKey::Produce)
        .iter()
        .map(|r| r.decode::<ProduceRequest>())
        .flat_map(|r| r.topic_data.into_iter())
        .flat_map(|t| t.partition_data.into_iter())
        .filter_map(|d| {
            let records = d.records?;
            let batch = herald::batch::decode::decode_batches(&records).ok()?;
            batch.first().map(|b| b.producer_id)
        })
        .collect();
    assert_eq!(produced.last(), Some(&(PRODUCER_ID + 1)), "{produced:?}");
    p.close(Duration::from_secs(5)).await;
}

/// On a broker before Kafka 2.5 (InitProducerId up to v2: no epoch bump, KIP-360) an abort
/// completes and the next transaction commits. The new epoch after the abort (the aborted
/// batches took sequence numbers) comes from InitProducerId with the transactional id
/// alone, as `initTransactions` asks for one there, which the coordinator answers with the
/// producer's next epoch; the next transaction's batch starts at sequence 0 under it.
#[actix_rt::test]
async fn an_abort_completes_on_a_broker_before_2_5() {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    let fake = coordinator.start_with(KAFKA_2_4);
    let p = producer(&fake);
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(0).value("aborted"))
        .await
        .expect("written");
    p.abort_transaction().await.expect("the abort completes");
    p.begin_transaction().await.expect("a new transaction");
    p.send(Produce::new(TOPIC).partition(0).value("committed"))
        .await
        .expect("written");
    p.commit_transaction().await.expect("committed");
    assert_eq!(end_txns(&fake), [false, true]);
    let inits: Vec<(i16, i64, i16)> = fake
        .requests_for(ApiKey::InitProducerId)
        .iter()
        .map(|r| {
            let q: InitProducerIdRequest = r.decode();
            (r.api_version, q.producer_id.0, q.producer_epoch)
        })
        .collect();
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert!(
        inits
            .iter()
            .all(|&(v, pid, epoch)| v <= 2 && pid == -1 && epoch == -1),
        "InitProducerId at the versions 2.4 has, with no producer id: {inits:?}"
    );
    let produced: Vec<(i16, i32)> = fake
        .requests_for(ApiKey::Produce)
        .iter()
        .flat_map(|r| {
            let q: ProduceRequest = r.decode();
            q.topic_data
                .iter()
                .flat_map(|t| t.partition_data.iter())
                .filter_map(|pd| pd.records.as_ref())
                .map(|b| {
                    let (batch, _) = herald::batch::decode::decode_batch(b).expect("a v2 batch");
                    (batch.producer_epoch, batch.base_sequence)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        produced,
        [(1, 0), (2, 0)],
        "each transaction's batch at sequence 0 of its epoch"
    );
    p.close(Duration::from_secs(5)).await;
}
