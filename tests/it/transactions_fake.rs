//! Transaction-manager paths that need a coordinator to answer on cue, on the scripted fake
//! broker (`support/fake_broker.rs`): one broker (node 1) that is also the transaction
//! coordinator, offering transaction protocol version 1. Apache Kafka cannot be made to hold
//! a commit's markers pending for as long as a test needs, and librdkafka's mock cluster
//! refuses an EndTxn before it looks at it, so neither can show a commit that reached the
//! coordinator and timed out (`kafka::transactions` and `transactions_mock` cover the rest).

use std::sync::atomic::{AtomicBool, AtomicI16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald::{ErrorClass, TransactionError};
use herald_actors::{Produce, Producer};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, BrokerId, EndTxnRequest,
    EndTxnResponse, FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;

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
    (ApiKey::EndTxn, 0, 3),
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
}

impl Coordinator {
    /// Answers the transactional requests as Kafka's coordinator does in the states the
    /// script puts it in; the rest as a healthy broker (`standard_handler`).
    fn start(self: &Arc<Self>) -> FakeBroker {
        let standard = fake_broker::standard_handler(&[(TOPIC, 1)]);
        let txn = self.clone();
        FakeBroker::start(move |ctx| match ctx.api() {
            Some(ApiKey::ApiVersions) => vec![Action::Respond(
                fake_broker::api_versions_response_with(ctx.api_version, APIS),
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
            Some(ApiKey::AddPartitionsToTxn) => vec![Action::Respond(add_partitions(ctx))],
            Some(ApiKey::EndTxn) => {
                let request: EndTxnRequest = ctx.decode();
                let code = if request.committed {
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
                vec![Action::Respond(fake_broker::encode(
                    &response,
                    ctx.api_version,
                ))]
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

fn add_partitions(ctx: &RequestContext) -> bytes::Bytes {
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
                            AddPartitionsToTxnPartitionResult::default().with_partition_index(p)
                        })
                        .collect(),
                )
        })
        .collect();
    let response = AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    fake_broker::encode(&response, ctx.api_version)
}

fn producer(fake: &FakeBroker) -> Producer {
    start_producer(
        &fake.bootstrap(),
        &[
            ("transactional.id", "txn-fake-id"),
            ("linger.ms", "0"),
            ("retry.backoff.ms", "20"),
            ("retry.backoff.max.ms", "50"),
            ("max.block.ms", "1000"),
        ],
        &[],
    )
}

/// The EndTxn requests the broker received: `true` for a commit.
fn end_txns(fake: &FakeBroker) -> Vec<bool> {
    fake.requests_for(ApiKey::EndTxn)
        .iter()
        .map(|r| r.decode::<EndTxnRequest>().committed)
        .collect()
}

/// A commit whose EndTxn reached the coordinator times out while the coordinator writes its
/// markers. An abort then would be answered INVALID_TXN_STATE, which looks like a
/// transaction the coordinator aborted itself, and the application would be told "aborted"
/// of a transaction that commits. As Java's producer, Herald refuses the abort (naming the
/// commit to call again) and sends nothing; the repeated commit then completes.
#[actix_rt::test]
async fn an_abort_after_a_timed_out_commit_is_refused() {
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator.markers_pending.store(true, Ordering::SeqCst);
    let fake = coordinator.start();
    let p = producer(&fake);
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(0).value("v"))
        .await
        .expect("written");

    let commit = p.commit_transaction().await.unwrap_err();
    assert!(
        matches!(commit, TransactionError::TimedOut { .. }),
        "{commit}"
    );
    assert!(coordinator.committed.load(Ordering::SeqCst));

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
    init_tracing();
    let coordinator = Arc::new(Coordinator::default());
    coordinator.markers_pending.store(true, Ordering::SeqCst);
    let fake = coordinator.start();
    let p = producer(&fake);
    p.init_transactions().await.expect("init");
    p.begin_transaction().await.unwrap();
    p.send(Produce::new(TOPIC).partition(0).value("v"))
        .await
        .expect("written");
    let commit = p.commit_transaction().await.unwrap_err();
    assert!(
        matches!(commit, TransactionError::TimedOut { .. }),
        "{commit}"
    );
    let ends = end_txns(&fake).len();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), p.close(Duration::from_secs(5)))
            .await
            .expect("close returns")
    );
    assert_eq!(end_txns(&fake).len(), ends, "close sent no EndTxn");
}
