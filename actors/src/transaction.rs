//! The transaction manager: one actor per transactional producer that speaks to the
//! transaction coordinator (and, for offsets, to the group coordinator), with the Java
//! client's state machine (`TransactionManager.State`).
//!
//! Two transaction protocols, chosen at every begin (`TxnStatus::set_v2`):
//! - version 2 (KIP-890) when the brokers finalized `transaction.version` 2 (Kafka 4.x):
//!   Produce v12 adds a partition to the transaction implicitly and TxnOffsetCommit v5 the
//!   group, so no AddPartitionsToTxn or AddOffsetsToTxn is sent; EndTxn v5 ends the
//!   transaction with a new epoch, which the producer takes.
//! - version 1 (KIP-98, KIP-447) otherwise: partitions are added with AddPartitionsToTxn
//!   before their first batch is sent, the group with AddOffsetsToTxn, and Produce,
//!   TxnOffsetCommit and EndTxn stay below the versions of version 2
//!   (`herald::protocol::transaction_version_cap`).
//!
//! ```text
//!  UNINITIALIZED ─init─▶ INITIALIZING ─InitProducerId─▶ READY ─begin─▶ IN_TRANSACTION
//!  IN_TRANSACTION ─commit (router flushes first)─▶ COMMITTING ─EndTxn(commit)─▶ READY
//!  IN_TRANSACTION / ABORTABLE_ERROR ─abort (router discards unsent, awaits in flight)─▶
//!        ABORTING ─EndTxn(abort), InitProducerId(id, epoch): a new epoch─▶ READY
//!  any ─abortable error─▶ ABORTABLE_ERROR          any ─fatal error─▶ FATAL_ERROR (final)
//! ```
//!
//! An init, commit or abort that timed out (max.block.ms) stays in INITIALIZING, COMMITTING
//! or ABORTING, and only the same call is taken until it completes (`Unfinished` answers the
//! rest, as Java's `handleCachedTransactionRequestResult` does): a commit's EndTxn may have
//! reached the coordinator, and an abort then would be answered INVALID_TXN_STATE, which
//! reads like a transaction the coordinator aborted itself.
//!
//! Accumulators ask for their partition ([`AddPartition`]) when they have a batch of the
//! open transaction to send and hold it back until the answer; requests that arrive while an
//! AddPartitionsToTxn is in flight go out together in the next one. Every request is retried
//! on retriable errors with backoff until `max.block.ms`, finding the coordinator again when
//! it moved or its connection failed; what cannot be retried is classified by
//! [`herald::transaction::classify`] (KIP-1050).
//!
//! After an abort the producer's epoch is bumped (InitProducerId with the current id and
//! epoch, KIP-360): batches of the aborted transaction that were sealed but never sent took
//! sequence numbers, and a new epoch starts every partition's sequence at 0 again. It also
//! recovers from a transaction the coordinator aborted on timeout (KIP-588).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use herald::transaction::{classify, ErrorClass, Handling};
use herald::{KafkaCode, ProtocolError, TransactionError};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{BrokerLink, ProducerIdState};
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::application::{
    BeginTransaction, InitTransactions, SendOffsetsToTransaction, TransactionResult,
};
use crate::messages::cluster::BrokerNamed;
use crate::messages::request::{RequestError, Transact, TxnAnswer, TxnCall};
use crate::messages::transaction::{AddPartition, EndTransaction, PartitionAdded};
use crate::messages::Shutdown;
use crate::shared::Shared;
#[cfg(feature = "fault-injection")]
use crate::supervisor::ActorKind;
use crate::txn_status::TxnStatus;

/// FindCoordinator's key types.
const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

/// The Java client's transaction states.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TxnState {
    Uninitialized,
    Initializing,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    AbortableError(TransactionError),
    FatalError(TransactionError),
}

impl TxnState {
    /// Java's name of the state, for errors.
    fn name(&self) -> &'static str {
        match self {
            TxnState::Uninitialized => "UNINITIALIZED",
            TxnState::Initializing => "INITIALIZING",
            TxnState::Ready => "READY",
            TxnState::InTransaction => "IN_TRANSACTION",
            TxnState::Committing => "COMMITTING_TRANSACTION",
            TxnState::Aborting => "ABORTING_TRANSACTION",
            TxnState::AbortableError(_) => "ABORTABLE_ERROR",
            TxnState::FatalError(_) => "FATAL_ERROR",
        }
    }
}

/// Whether `operation` may run in `state`: `Ok`, or the error to answer with. A pure
/// function of the two, so the transitions the Java client allows are checked in one place
/// (and tested below).
fn check(operation: Operation, state: &TxnState) -> Result<(), TransactionError> {
    use Operation as O;
    use TxnState as S;
    let allowed = match (operation, state) {
        (_, S::FatalError(e)) => return Err(e.clone()),
        // A timed-out init, commit or abort may be called again, and only it (Java's rule,
        // `handleCachedTransactionRequestResult`): an EndTxn(commit) that timed out may have
        // reached the coordinator, which then answers an abort's EndTxn with
        // INVALID_TXN_STATE, and the abort would be reported though the transaction commits.
        (O::Init, S::Uninitialized | S::Initializing) => true,
        (O::Send, S::Committing) => true,
        (O::Commit, S::Committing) | (O::Abort, S::Aborting) => true,
        (o, S::Initializing | S::Committing | S::Aborting) if o != O::Send => {
            return Err(TransactionError::Unfinished {
                operation: o.name(),
                unfinished: match state {
                    S::Initializing => O::Init,
                    S::Committing => O::Commit,
                    _ => O::Abort,
                }
                .name(),
            })
        }
        (O::Begin, S::Ready) => true,
        (O::SendOffsets | O::Send, S::InTransaction) => true,
        (O::SendOffsets | O::Send | O::Commit, S::AbortableError(e)) => return Err(e.clone()),
        (O::Commit, S::InTransaction) => true,
        (O::Abort, S::InTransaction | S::AbortableError(_)) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(TransactionError::InvalidState {
            operation: operation.name(),
            state: state.name(),
        })
    }
}

/// What the application (or an accumulator, for `Send`) asks of the transaction manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Init,
    Begin,
    Send,
    SendOffsets,
    Commit,
    Abort,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Init => "init_transactions",
            Operation::Begin => "begin_transaction",
            Operation::Send => "send",
            Operation::SendOffsets => "send_offsets_to_transaction",
            Operation::Commit => "commit_transaction",
            Operation::Abort => "abort_transaction",
        }
    }
}

/// The transaction manager actor.
#[derive(Debug)]
pub(crate) struct TransactionManager {
    shared: Arc<Shared>,
    transactional_id: String,
    state: TxnState,
    caller: Caller,
    /// Producer id and epoch, once InitProducerId answered.
    producer: Option<(i64, i16)>,
    /// Partitions added to the open transaction.
    added: BTreeSet<(Arc<str>, i32)>,
    /// Asked for, waiting for the next AddPartitionsToTxn.
    pending: Vec<AddPartition>,
    /// Asked for and sent in the AddPartitionsToTxn in flight. Kept here, not only in its
    /// future: a supervised restart drops the future, and they are asked for again.
    adding: Vec<AddPartition>,
    /// An EndTransaction that waits for the AddPartitionsToTxn in flight.
    end_waiting: Option<(bool, tokio::sync::oneshot::Sender<TransactionResult>)>,
    /// AddOffsetsToTxn succeeded in the open transaction (so it needs an EndTxn even without
    /// records).
    offsets_added: bool,
    /// The last send_offsets_to_transaction of the open transaction timed out: its offsets
    /// may be missing from it (a TxnOffsetCommit still refused), so a commit would commit
    /// the transaction's records without them, and the input would be read again after a
    /// restart. Java's commit waits for the offsets' requests, still retrying; here the
    /// commit is refused until send_offsets_to_transaction is called again and succeeds (or
    /// the transaction is aborted).
    offsets_unfinished: bool,
    /// The init, send-offsets or end under way, with its reply. Kept here for the same
    /// reason: after a supervised restart `started` runs it again.
    underway: Option<Underway>,
    /// Shut down for good: a restart is not one.
    terminated: bool,
}

/// Where an operation's answer goes.
type Reply = tokio::sync::oneshot::Sender<TransactionResult>;

/// An operation of the application under way at the coordinators.
#[derive(Debug)]
enum Underway {
    Init(Reply),
    SendOffsets(SendOffsetsToTransaction, Reply),
    End { commit: bool, reply: Reply },
}

impl Underway {
    fn reply(self) -> Reply {
        match self {
            Underway::Init(reply)
            | Underway::SendOffsets(_, reply)
            | Underway::End { reply, .. } => reply,
        }
    }
}

impl TransactionManager {
    /// The transaction manager of a producer with `transactional.id`.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let transactional_id = shared
            .config
            .transactional_id
            .clone()
            .expect("started only for a transactional producer");
        TransactionManager {
            caller: Caller {
                shared: shared.clone(),
                coordinators: Arc::default(),
            },
            shared,
            transactional_id,
            state: TxnState::Uninitialized,
            producer: None,
            added: BTreeSet::new(),
            pending: Vec::new(),
            adding: Vec::new(),
            end_waiting: None,
            offsets_added: false,
            offsets_unfinished: false,
            underway: None,
            terminated: false,
        }
    }

    fn status(&self) -> &TxnStatus {
        self.shared
            .txn
            .as_ref()
            .expect("a transactional producer has a status")
    }

    /// Takes over a failure an accumulator recorded (a failed batch), so the state says it.
    fn sync_failure(&mut self) {
        if let Some(e) = self.status().failure() {
            self.enter_failure(e);
        }
    }

    /// Moves to ABORTABLE_ERROR or FATAL_ERROR for `error` (a fatal state stays).
    fn enter_failure(&mut self, error: TransactionError) {
        if matches!(self.state, TxnState::FatalError(_)) {
            return;
        }
        match error.class() {
            ErrorClass::Fatal => {
                tracing::error!(error = %error, "transactional producer failed");
                self.state = TxnState::FatalError(error.clone());
            }
            _ => {
                if !matches!(self.state, TxnState::AbortableError(_)) {
                    tracing::warn!(error = %error, "transaction must be aborted");
                }
                self.state = TxnState::AbortableError(error.clone());
            }
        }
        self.status().fail(error);
    }

    fn transaction_key(&self) -> CoordinatorKey {
        CoordinatorKey {
            key_type: TRANSACTION_KEY,
            key: self.transactional_id.clone(),
        }
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.transactional_id.clone()))
    }

    fn init_request(&self, current: Option<(i64, i16)>) -> InitProducerIdRequest {
        let (pid, epoch) = current.unwrap_or((-1, -1));
        let timeout = self.shared.config.transaction_timeout.as_millis();
        InitProducerIdRequest::default()
            .with_transactional_id(Some(self.txn_id()))
            .with_transaction_timeout_ms(timeout.min(i32::MAX as u128) as i32)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
    }

    /// Publishes the producer identity accumulators stamp batches with.
    fn publish_producer(&mut self, pid: i64, epoch: i16) {
        tracing::info!(
            producer_id = pid,
            epoch,
            "transactional producer id obtained"
        );
        self.producer = Some((pid, epoch));
        self.shared
            .cluster
            .set_producer_state(ProducerIdState::Ready {
                producer_id: pid,
                epoch,
            });
    }

    /// Sends the partitions asked for since the last AddPartitionsToTxn, unless one is in
    /// flight (its answer sends the next).
    fn send_adds(&mut self, ctx: &mut Context<Self>) {
        if !self.adding.is_empty() || self.pending.is_empty() {
            return;
        }
        // IN_TRANSACTION implies a producer id; its absence is answered as an error too.
        let ids = check(Operation::Send, &self.state).and_then(|()| {
            self.producer.ok_or(TransactionError::InvalidState {
                operation: Operation::Send.name(),
                state: self.state.name(),
            })
        });
        let (pid, epoch) = match ids {
            Ok(ids) => ids,
            Err(e) => {
                for p in self.pending.drain(..) {
                    p.reply.do_send(PartitionAdded {
                        generation: p.generation,
                        result: Err(e.clone()),
                    });
                }
                return;
            }
        };
        if self.status().v2() {
            // Version 2: the partition joins the transaction with its first Produce.
            for p in self.pending.drain(..) {
                self.added.insert((p.topic.clone(), p.partition));
                p.reply.do_send(PartitionAdded {
                    generation: p.generation,
                    result: Ok(()),
                });
            }
            return;
        }
        let asked = std::mem::take(&mut self.pending);
        let mut topics: BTreeMap<Arc<str>, BTreeSet<i32>> = BTreeMap::new();
        for p in &asked {
            topics
                .entry(p.topic.clone())
                .or_default()
                .insert(p.partition);
        }
        let topics = topics
            .into_iter()
            .map(|(t, ps)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps.into_iter().collect())
            })
            .collect();
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.txn_id())
            .with_v3_and_below_producer_id(pid.into())
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics);
        self.adding = asked;
        self.run_adds(request, ctx);
    }

    fn run_adds(&mut self, request: AddPartitionsToTxnRequest, ctx: &mut Context<Self>) {
        let caller = self.caller.clone();
        let key = self.transaction_key();
        let call = async move {
            caller
                .call(
                    Operation::Send,
                    &key,
                    TxnCall::AddPartitions(request),
                    add_partitions_error,
                )
                .await
        };
        ctx.spawn(
            call.into_actor(self)
                .map(move |res, act, ctx| act.on_added(res, ctx)),
        );
    }

    fn on_added(&mut self, result: Result<TxnAnswer, TransactionError>, ctx: &mut Context<Self>) {
        let asked = std::mem::take(&mut self.adding);
        let result = result.map(|_| ());
        match &result {
            Ok(()) => {
                for p in &asked {
                    self.added.insert((p.topic.clone(), p.partition));
                }
                tracing::debug!(
                    partitions = asked.len(),
                    "partitions added to the transaction"
                );
            }
            Err(e @ TransactionError::TimedOut { .. }) => {
                // The batches cannot wait for ever: the transaction cannot commit now.
                let why = Arc::from(format!("adding partitions to the transaction: {e}"));
                self.enter_failure(TransactionError::Abortable(why));
            }
            Err(e) => self.enter_failure(e.clone()),
        }
        let result = match (&result, &self.state) {
            (Err(_), TxnState::AbortableError(e) | TxnState::FatalError(e)) => Err(e.clone()),
            _ => result,
        };
        for p in asked {
            p.reply.do_send(PartitionAdded {
                generation: p.generation,
                result: result.clone(),
            });
        }
        if let Some((commit, reply)) = self.end_waiting.take() {
            self.start_end(commit, reply, ctx);
        }
        self.send_adds(ctx);
    }

    /// Ends the transaction: EndTxn, and after an abort a new epoch.
    fn start_end(
        &mut self,
        commit: bool,
        reply: tokio::sync::oneshot::Sender<TransactionResult>,
        ctx: &mut Context<Self>,
    ) {
        let operation = if commit {
            Operation::Commit
        } else {
            Operation::Abort
        };
        self.sync_failure();
        if let Err(e) = check(operation, &self.state) {
            let _ = reply.send(Err(e));
            return;
        }
        if commit && self.offsets_unfinished && self.state == TxnState::InTransaction {
            let _ = reply.send(Err(TransactionError::Unfinished {
                operation: Operation::Commit.name(),
                unfinished: Operation::SendOffsets.name(),
            }));
            return;
        }
        self.offsets_unfinished = false;
        let Some((pid, epoch)) = self.producer else {
            let _ = reply.send(Err(TransactionError::InvalidState {
                operation: operation.name(),
                state: self.state.name(),
            }));
            return;
        };
        self.state = if commit {
            TxnState::Committing
        } else {
            TxnState::Aborting
        };
        self.underway = Some(Underway::End { commit, reply });
        self.run_end(pid, epoch, ctx);
    }

    /// The coordinator's part of an end: EndTxn, and after an abort a new epoch.
    fn run_end(&mut self, pid: i64, epoch: i16, ctx: &mut Context<Self>) {
        let Some(Underway::End { commit, .. }) = self.underway else {
            return;
        };
        let operation = if commit {
            Operation::Commit
        } else {
            Operation::Abort
        };
        // Nothing reached the coordinator: there is no transaction there to end. Nor when it
        // no longer knows the producer id: it refuses EndTxn with INVALID_PRODUCER_ID_MAPPING
        // again, and only a new id ends the transaction (Java's beginCompletingTransaction).
        let id_unknown = !commit && self.status().producer_id_unknown();
        let needs_end_txn = (!self.added.is_empty() || self.offsets_added) && !id_unknown;
        let end = EndTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let rejoin = self.init_request(Some((pid, epoch)));
        let fresh = self.init_request(None);
        let v2 = self.status().v2();
        let caller = self.caller.clone();
        let key = self.transaction_key();
        let work = async move {
            // `before_2_5`: what to ask instead where the broker cannot bump an epoch.
            let init = |caller: Caller,
                        key: CoordinatorKey,
                        request,
                        before_2_5: Option<InitProducerIdRequest>| async move {
                let answer = caller
                    .call_or(
                        operation,
                        &key,
                        TxnCall::InitProducerId(request),
                        before_2_5.map(TxnCall::InitProducerId),
                        init_error,
                    )
                    .await?;
                producer_ids(&answer).ok_or(TransactionError::Fatal(Arc::from(
                    "InitProducerId answered with another response kind",
                )))
            };
            if needs_end_txn {
                let end = caller
                    .call(
                        operation,
                        &key,
                        TxnCall::EndTxn(end),
                        end_txn_error_but_state,
                    )
                    .await;
                let already_ended = match &end {
                    Ok(answer) => end_txn_code(answer) == Some(KafkaCode::INVALID_TXN_STATE),
                    Err(e) => e.is_fenced(),
                };
                match end {
                    // Another producer took the id, or the coordinator aborted this
                    // transaction itself when it outlived transaction.timeout.ms and bumped
                    // the epoch (KIP-588): the epoch is then refused as fenced (version 1)
                    // or the end as INVALID_TXN_STATE (version 2, where the epoch moves at
                    // every end). InitProducerId with our epoch tells them apart: the
                    // coordinator refuses it as fenced only when another producer took over.
                    _ if already_ended => {
                        let ids = init(caller, key, rejoin, None).await?;
                        return Ok(Ended::AbortedByCoordinator(ids));
                    }
                    // Version 2: the end came with the producer's next epoch.
                    Ok(answer) if v2 => {
                        if let Some(ids) = end_txn_ids(&answer) {
                            return Ok(Ended::Done(Some(ids)));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            // (A version-2 EndTxn that named no epoch falls through to ask for one.)
            if commit && !(v2 && needs_end_txn) {
                return Ok(Ended::Done(None));
            }
            // A broker before 2.5 cannot bump the epoch; there InitProducerId with the
            // transactional id alone, as `initTransactions` asks, gives the next epoch too,
            // without the bump's check that no other producer took the id meanwhile (such a
            // broker cannot make it; Java's `initTransactions` there does not either).
            Ok(Ended::Done(Some(
                init(caller, key, rejoin, Some(fresh)).await?,
            )))
        };
        ctx.spawn(work.into_actor(self).map(
            move |res: Result<Ended, TransactionError>, act, _| {
                let Some(reply) = act.underway.take().map(Underway::reply) else {
                    return;
                };
                let outcome = match res {
                    Ok(Ended::Done(ids)) => {
                        if let Some((pid, epoch)) = ids {
                            act.publish_producer(pid, epoch);
                        }
                        if !commit {
                            act.status().clear_abortable();
                        }
                        act.state = TxnState::Ready;
                        tracing::info!(commit, "transaction ended");
                        Ok(())
                    }
                    Ok(Ended::AbortedByCoordinator((pid, epoch))) => {
                        act.publish_producer(pid, epoch);
                        // Nothing of it is left at the coordinator.
                        act.added.clear();
                        act.offsets_added = false;
                        if commit {
                            let e = TransactionError::Abortable(Arc::from(
                                "the transaction coordinator no longer held the transaction \
                                 open and it is aborted (typically it outlived \
                                 transaction.timeout.ms)",
                            ));
                            act.enter_failure(e.clone());
                            Err(e)
                        } else {
                            act.status().clear_abortable();
                            act.state = TxnState::Ready;
                            Ok(())
                        }
                    }
                    // Timed out: the same call may be made again.
                    Err(e @ TransactionError::TimedOut { .. }) => Err(e),
                    Err(e) => {
                        act.enter_failure(e.clone());
                        Err(e)
                    }
                };
                let _ = reply.send(outcome);
            },
        ));
    }
}

/// How ending a transaction came out at the coordinator.
#[derive(Debug)]
enum Ended {
    /// As asked; after an abort, with the producer's new epoch.
    Done(Option<(i64, i16)>),
    /// The coordinator had already aborted it (transaction.timeout.ms) and bumped the
    /// epoch; the producer rejoined with the epoch given.
    AbortedByCoordinator((i64, i16)),
}

impl Actor for TransactionManager {
    type Context = Context<Self>;

    /// After a supervised restart: what was under way at the coordinators when the old
    /// context died runs again (each request is safe to repeat: AddPartitionsToTxn of
    /// partitions already added and EndTxn of a transaction already ended succeed again).
    fn started(&mut self, ctx: &mut Context<Self>) {
        match &self.underway {
            Some(Underway::Init(_)) => self.run_init(ctx),
            Some(Underway::SendOffsets(..)) => self.run_send_offsets(ctx),
            // (An end is only started with a producer id.)
            Some(Underway::End { .. }) => {
                if let Some((pid, epoch)) = self.producer {
                    self.run_end(pid, epoch, ctx);
                }
            }
            None => {}
        }
        self.send_adds(ctx);
    }
}

impl Supervised for TransactionManager {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        tracing::warn!("transaction manager restarted; resuming what was under way");
        // The AddPartitionsToTxn in flight died with the context: ask for its partitions
        // again, ahead of those asked for since.
        let again = std::mem::take(&mut self.adding);
        self.pending.splice(0..0, again);
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for TransactionManager {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        crash.apply(ActorKind::Transaction, &shared.victims, ctx);
    }
}

impl Handler<InitTransactions> for TransactionManager {
    type Result = ResponseFuture<TransactionResult>;

    fn handle(&mut self, _: InitTransactions, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match check(Operation::Init, &self.state).and_then(|()| self.not_busy()) {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(()) => {
                self.state = TxnState::Initializing;
                self.shared
                    .cluster
                    .set_producer_state(ProducerIdState::Pending);
                self.underway = Some(Underway::Init(tx));
                self.run_init(ctx);
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(TransactionError::Closed)) })
    }
}

impl TransactionManager {
    fn run_init(&mut self, ctx: &mut Context<Self>) {
        let request = self.init_request(None);
        let caller = self.caller.clone();
        let key = self.transaction_key();
        let work = async move {
            caller
                .call(
                    Operation::Init,
                    &key,
                    TxnCall::InitProducerId(request),
                    init_error,
                )
                .await
        };
        ctx.spawn(work.into_actor(self).map(|res, act, _| {
            let Some(reply) = act.underway.take().map(Underway::reply) else {
                return;
            };
            let ids = res.and_then(|a| {
                producer_ids(&a).ok_or(TransactionError::Fatal(Arc::from(
                    "InitProducerId answered with another response kind",
                )))
            });
            let outcome = match ids {
                Ok((pid, epoch)) => {
                    act.publish_producer(pid, epoch);
                    act.state = TxnState::Ready;
                    Ok(())
                }
                Err(e @ TransactionError::TimedOut { .. }) => Err(e),
                Err(e) => {
                    // Nothing to abort yet: whatever refused the id is final.
                    let e = match e {
                        TransactionError::Abortable(why)
                        | TransactionError::InvalidProducerIdMapping(why) => {
                            TransactionError::Fatal(why)
                        }
                        e => e,
                    };
                    act.enter_failure(e.clone());
                    Err(e)
                }
            };
            let _ = reply.send(outcome);
        }));
    }
}

impl TransactionManager {
    fn not_busy(&self) -> Result<(), TransactionError> {
        if self.underway.is_some() {
            Err(TransactionError::InvalidState {
                operation: "a transaction operation while another is under way",
                state: self.state.name(),
            })
        } else {
            Ok(())
        }
    }
}

impl Handler<BeginTransaction> for TransactionManager {
    type Result = TransactionResult;

    fn handle(&mut self, _: BeginTransaction, _: &mut Context<Self>) -> TransactionResult {
        self.sync_failure();
        check(Operation::Begin, &self.state)?;
        self.added.clear();
        self.offsets_added = false;
        self.offsets_unfinished = false;
        // Nothing of an earlier transaction is in flight: the protocol may change here.
        let v2 = self.status().v2_available();
        self.status().set_v2(v2);
        let generation = self.status().begin();
        tracing::debug!(
            generation,
            protocol = if v2 { 2 } else { 1 },
            "transaction begun"
        );
        self.state = TxnState::InTransaction;
        Ok(())
    }
}

impl Handler<AddPartition> for TransactionManager {
    type Result = ();

    fn handle(&mut self, msg: AddPartition, ctx: &mut Context<Self>) {
        if msg.generation != self.status().generation() {
            // A batch of a transaction that is over: its accumulator ignores the answer.
            return;
        }
        self.sync_failure();
        if let Err(e) = check(Operation::Send, &self.state) {
            msg.reply.do_send(PartitionAdded {
                generation: msg.generation,
                result: Err(e),
            });
            return;
        }
        if self.added.contains(&(msg.topic.clone(), msg.partition)) {
            msg.reply.do_send(PartitionAdded {
                generation: msg.generation,
                result: Ok(()),
            });
            return;
        }
        self.pending.push(msg);
        self.send_adds(ctx);
    }
}

impl Handler<SendOffsetsToTransaction> for TransactionManager {
    type Result = ResponseFuture<TransactionResult>;

    fn handle(&mut self, msg: SendOffsetsToTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync_failure();
        let ready = check(Operation::SendOffsets, &self.state).and_then(|()| self.not_busy());
        match ready {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(()) => {
                self.underway = Some(Underway::SendOffsets(msg, tx));
                self.run_send_offsets(ctx);
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(TransactionError::Closed)) })
    }
}

impl TransactionManager {
    fn run_send_offsets(&mut self, ctx: &mut Context<Self>) {
        let Some(Underway::SendOffsets(msg, _)) = &self.underway else {
            return;
        };
        let msg = msg.clone();
        let Some((pid, epoch)) = self.producer else {
            let reply = self.underway.take().map(Underway::reply);
            if let Some(reply) = reply {
                let _ = reply.send(Err(TransactionError::InvalidState {
                    operation: Operation::SendOffsets.name(),
                    state: self.state.name(),
                }));
            }
            return;
        };
        let group = msg.group_metadata;
        let group_id = GroupId(StrBytes::from_string(group.group_id.clone()));
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_group_id(group_id.clone());
        let mut by_topic: BTreeMap<String, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for o in msg.offsets {
            by_topic.entry(o.topic).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(o.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::from_static_str(""))),
            );
        }
        let topics = by_topic
            .into_iter()
            .map(|(t, ps)| {
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect();
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(self.txn_id())
            .with_group_id(group_id)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_generation_id(group.generation_id)
            .with_member_id(StrBytes::from_string(group.member_id))
            .with_group_instance_id(group.group_instance_id.map(StrBytes::from_string))
            .with_topics(topics);
        let caller = self.caller.clone();
        let txn_key = self.transaction_key();
        let group_key = CoordinatorKey {
            key_type: GROUP_KEY,
            key: group.group_id,
        };
        let op = Operation::SendOffsets;
        let v2 = self.status().v2();
        // Two steps: whether the first succeeded matters even when the second fails (the
        // coordinator then holds the group in the transaction, which must be ended). In
        // version 2 TxnOffsetCommit v5 adds the group itself.
        let work = async move {
            if !v2 {
                caller
                    .call(op, &txn_key, TxnCall::AddOffsets(add), add_offsets_error)
                    .await?;
            }
            let second = caller
                .call(
                    op,
                    &group_key,
                    TxnCall::CommitOffsets(commit),
                    commit_offsets_error,
                )
                .await;
            Ok::<_, TransactionError>(second.map(|_| ()))
        };
        ctx.spawn(work.into_actor(self).map(move |res, act, _| {
            let Some(reply) = act.underway.take().map(Underway::reply) else {
                return;
            };
            let res = match res {
                Ok(second) => {
                    act.offsets_added |= !v2 || second.is_ok();
                    second
                }
                Err(e) => Err(e),
            };
            act.offsets_unfinished = matches!(res, Err(TransactionError::TimedOut { .. }));
            match &res {
                Ok(()) | Err(TransactionError::TimedOut { .. }) => {}
                Err(e) => act.enter_failure(e.clone()),
            }
            let _ = reply.send(res);
        }));
    }
}

impl Handler<EndTransaction> for TransactionManager {
    type Result = ResponseFuture<TransactionResult>;

    fn handle(&mut self, msg: EndTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync_failure();
        let ongoing = matches!(
            self.state,
            TxnState::InTransaction | TxnState::AbortableError(_) | TxnState::Aborting
        );
        if msg.at_close && !ongoing {
            let _ = tx.send(Err(TransactionError::InvalidState {
                operation: "abort_transaction at close",
                state: self.state.name(),
            }));
        } else if let Err(e) = self.not_busy() {
            let _ = tx.send(Err(e));
        } else if !self.adding.is_empty() {
            // Its answer decides whether the transaction can commit; the end follows it.
            if let Some((_, earlier)) = self.end_waiting.replace((msg.commit, tx)) {
                let _ = earlier.send(Err(TransactionError::InvalidState {
                    operation: "a second commit or abort",
                    state: self.state.name(),
                }));
            }
        } else {
            self.start_end(msg.commit, tx, ctx);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(TransactionError::Closed)) })
    }
}

impl Handler<Shutdown> for TransactionManager {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        for p in self.pending.drain(..) {
            p.reply.do_send(PartitionAdded {
                generation: p.generation,
                result: Err(TransactionError::Closed),
            });
        }
        for p in self.adding.drain(..) {
            p.reply.do_send(PartitionAdded {
                generation: p.generation,
                result: Err(TransactionError::Closed),
            });
        }
        if let Some((_, reply)) = self.end_waiting.take() {
            let _ = reply.send(Err(TransactionError::Closed));
        }
        if let Some(u) = self.underway.take() {
            let _ = u.reply().send(Err(TransactionError::Closed));
        }
        self.terminated = true;
        ctx.stop();
    }
}

/// A coordinator lookup key: the transactional id (key type 1) or a group id (0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CoordinatorKey {
    key_type: i8,
    key: String,
}

/// Sends transactional requests to coordinators, retrying what KIP-1050 calls retriable.
/// Cloned into the futures of the operations; the coordinators found are shared.
#[derive(Debug, Clone)]
struct Caller {
    shared: Arc<Shared>,
    coordinators: Arc<Mutex<HashMap<CoordinatorKey, i32>>>,
}

/// Why one attempt did not succeed.
#[derive(Debug)]
enum Miss {
    /// Try again after a backoff; `refind`: look the coordinator up again first.
    Retry { why: String, refind: bool },
    /// Give up with this error.
    Fail(TransactionError),
    /// The coordinator's broker is older than 2.5 and cannot bump an epoch (KIP-360).
    BumpUnsupported(ProtocolError),
}

/// The error code a response carries, if any.
type ErrorOf = fn(&TxnAnswer) -> Option<KafkaCode>;

/// A request the coordinator's broker cannot take, for good.
fn cannot_take(e: &ProtocolError) -> TransactionError {
    TransactionError::Fatal(Arc::from(format!(
        "the broker cannot take the request: {e}"
    )))
}

impl Caller {
    /// Sends `call` to the coordinator of `to` until it succeeds, fails for good, or
    /// `max.block.ms` passes.
    async fn call(
        &self,
        operation: Operation,
        to: &CoordinatorKey,
        call: TxnCall,
        error_of: ErrorOf,
    ) -> Result<TxnAnswer, TransactionError> {
        self.call_or(operation, to, call, None, error_of).await
    }

    /// [`call`](Self::call), asking `before_2_5` instead where the coordinator's broker
    /// cannot bump an epoch (InitProducerId below v3, before Kafka 2.5).
    async fn call_or(
        &self,
        operation: Operation,
        to: &CoordinatorKey,
        mut call: TxnCall,
        mut before_2_5: Option<TxnCall>,
        error_of: ErrorOf,
    ) -> Result<TxnAnswer, TransactionError> {
        let config = &self.shared.config;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let why = match self.attempt(operation, to, &call, error_of).await {
                Ok(answer) => return Ok(answer),
                Err(Miss::Fail(e)) => return Err(e),
                Err(Miss::BumpUnsupported(e)) => match before_2_5.take() {
                    Some(instead) => {
                        tracing::info!(operation = operation.name(), reason = %e, "the coordinator's broker cannot bump an epoch; asking as initTransactions does");
                        call = instead;
                        continue;
                    }
                    None => return Err(cannot_take(&e)),
                },
                Err(Miss::Retry { why, refind }) => {
                    if refind {
                        self.forget(to);
                    }
                    why
                }
            };
            if started.elapsed() >= config.max_block {
                return Err(TransactionError::TimedOut {
                    operation: operation.name(),
                    waited_ms: config.max_block.as_millis() as u64,
                    last: Arc::from(why),
                });
            }
            tracing::debug!(operation = operation.name(), reason = %why, "retrying transactional request");
            let wait =
                crate::backoff::delay(config.retry_backoff, config.retry_backoff_max, attempt);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        operation: Operation,
        to: &CoordinatorKey,
        call: &TxnCall,
        error_of: ErrorOf,
    ) -> Result<TxnAnswer, Miss> {
        let known = self.lock().get(to).copied();
        let node = match known {
            Some(node) => node,
            None => self.find(operation, to).await?,
        };
        let Some(link) = self.shared.cluster.brokers.get(&node).map(|l| l.clone()) else {
            return Err(Miss::Retry {
                why: format!("coordinator {node} is not connected yet"),
                refind: false,
            });
        };
        let answer = self.send(&link, call.clone()).await?;
        match error_of(&answer) {
            None => Ok(answer),
            Some(code) => Err(miss(operation, code)),
        }
    }

    /// FindCoordinator, asked of any known broker; connects to the coordinator if metadata
    /// did not name it yet.
    async fn find(&self, operation: Operation, to: &CoordinatorKey) -> Result<i32, Miss> {
        let brokers: Vec<BrokerLink> = self
            .shared
            .cluster
            .brokers
            .iter()
            .map(|e| e.value().clone())
            .collect();
        if brokers.is_empty() {
            self.shared.request_metadata_refresh();
            return Err(Miss::Retry {
                why: "no broker known yet".into(),
                refind: false,
            });
        }
        let link = &brokers[fastrand::usize(..brokers.len())];
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(to.key.clone()))
            .with_key_type(to.key_type);
        let answer = self.send(link, TxnCall::FindCoordinator(request)).await?;
        let TxnAnswer::FindCoordinator(r) = answer else {
            return Err(unexpected(operation));
        };
        if let Some(code) = KafkaCode::from_code(r.error_code) {
            return Err(miss(operation, code));
        }
        let node = r.node_id.0;
        if !self.shared.cluster.brokers.contains_key(&node) {
            if let Some(m) = self.shared.metadata.get() {
                m.broker_named.do_send(BrokerNamed {
                    node_id: node,
                    address: format!("{}:{}", r.host.as_str(), r.port),
                });
            }
        }
        tracing::debug!(key_type = to.key_type, node, "coordinator found");
        self.lock().insert(to.clone(), node);
        Ok(node)
    }

    async fn send(&self, link: &BrokerLink, call: TxnCall) -> Result<TxnAnswer, Miss> {
        match link.transact().send(Transact(call)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(RequestError::Protocol(e @ ProtocolError::EpochBumpUnsupported { .. }))) => {
                Err(Miss::BumpUnsupported(e))
            }
            Ok(Err(RequestError::Protocol(e))) => Err(Miss::Fail(cannot_take(&e))),
            Ok(Err(RequestError::Authentication(why))) => {
                Err(Miss::Fail(TransactionError::Fatal(why)))
            }
            Ok(Err(e @ RequestError::Connection(..))) => Err(Miss::Retry {
                why: e.to_string(),
                refind: true,
            }),
            Err(e) => Err(Miss::Retry {
                why: format!("connection unavailable: {e}"),
                refind: true,
            }),
        }
    }

    fn forget(&self, to: &CoordinatorKey) {
        self.lock().remove(to);
    }

    // A poisoned lock is taken over: the map holds plain values, each written in one step.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CoordinatorKey, i32>> {
        self.coordinators.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a broker error code means for an attempt (KIP-1050's classes).
fn miss(operation: Operation, code: KafkaCode) -> Miss {
    let why = format!("{}: {code}", operation.name());
    match classify(code) {
        Handling::Retry { refind_coordinator } => Miss::Retry {
            why,
            refind: refind_coordinator,
        },
        Handling::Fail(_) => Miss::Fail(TransactionError::from_code(code, Arc::from(why))),
    }
}

fn unexpected(operation: Operation) -> Miss {
    Miss::Fail(TransactionError::Fatal(Arc::from(format!(
        "{}: the connection answered with another response kind",
        operation.name()
    ))))
}

/// Every response's error, for [`Caller::call`]; a response of another kind (which the
/// connection never returns) counts as UNKNOWN_SERVER_ERROR.
fn init_error(a: &TxnAnswer) -> Option<KafkaCode> {
    match a {
        TxnAnswer::InitProducerId(r) => KafkaCode::from_code(r.error_code),
        _ => Some(KafkaCode::UNKNOWN_SERVER_ERROR),
    }
}

fn add_partitions_error(a: &TxnAnswer) -> Option<KafkaCode> {
    let TxnAnswer::AddPartitions(r) = a else {
        return Some(KafkaCode::UNKNOWN_SERVER_ERROR);
    };
    let codes = r
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter())
        .filter_map(|p| KafkaCode::from_code(p.partition_error_code));
    // OPERATION_NOT_ATTEMPTED only says another partition failed: name that one.
    let mut not_attempted = None;
    for code in codes {
        if code == KafkaCode::OPERATION_NOT_ATTEMPTED {
            not_attempted = Some(code);
        } else {
            return Some(code);
        }
    }
    KafkaCode::from_code(r.error_code).or(not_attempted)
}

fn add_offsets_error(a: &TxnAnswer) -> Option<KafkaCode> {
    match a {
        TxnAnswer::AddOffsets(r) => KafkaCode::from_code(r.error_code),
        _ => Some(KafkaCode::UNKNOWN_SERVER_ERROR),
    }
}

fn commit_offsets_error(a: &TxnAnswer) -> Option<KafkaCode> {
    let TxnAnswer::CommitOffsets(r) = a else {
        return Some(KafkaCode::UNKNOWN_SERVER_ERROR);
    };
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find_map(|p| KafkaCode::from_code(p.error_code))
}

fn end_txn_code(a: &TxnAnswer) -> Option<KafkaCode> {
    match a {
        TxnAnswer::EndTxn(r) => KafkaCode::from_code(r.error_code),
        _ => Some(KafkaCode::UNKNOWN_SERVER_ERROR),
    }
}

/// EndTxn's error, except INVALID_TXN_STATE, which the end itself looks into (it can mean
/// that the coordinator already aborted the transaction).
fn end_txn_error_but_state(a: &TxnAnswer) -> Option<KafkaCode> {
    end_txn_code(a).filter(|c| *c != KafkaCode::INVALID_TXN_STATE)
}

/// The producer id and epoch an EndTxn v5 answer carries (transaction version 2); `None`
/// before v5.
fn end_txn_ids(a: &TxnAnswer) -> Option<(i64, i16)> {
    match a {
        TxnAnswer::EndTxn(r) if r.producer_id.0 >= 0 && r.producer_epoch >= 0 => {
            Some((r.producer_id.0, r.producer_epoch))
        }
        _ => None,
    }
}

/// The producer id and epoch of an InitProducerId answer.
fn producer_ids(a: &TxnAnswer) -> Option<(i64, i16)> {
    match a {
        TxnAnswer::InitProducerId(r) => Some((r.producer_id.0, r.producer_epoch)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::AddPartitionsToTxnResponse;

    fn abortable() -> TransactionError {
        TransactionError::Abortable(Arc::from("a record failed"))
    }

    #[test]
    fn transitions_follow_the_java_state_machine() {
        use Operation as O;
        use TxnState as S;
        let ok = |o, s: S| check(o, &s).is_ok();
        assert!(ok(O::Init, S::Uninitialized));
        assert!(
            ok(O::Init, S::Initializing),
            "a timed-out init may be repeated"
        );
        assert!(!ok(O::Init, S::Ready));
        assert!(!ok(O::Begin, S::Uninitialized), "begin before init");
        assert!(ok(O::Begin, S::Ready));
        assert!(!ok(O::Begin, S::InTransaction), "begin twice");
        assert!(ok(O::Send, S::InTransaction));
        assert!(
            ok(O::Send, S::Committing),
            "commit flushes: its batches are added"
        );
        assert!(!ok(O::Send, S::Ready));
        assert!(ok(O::Commit, S::InTransaction));
        assert!(
            ok(O::Commit, S::Committing),
            "a timed-out commit may be repeated"
        );
        assert!(!ok(O::Commit, S::Ready), "commit without begin");
        assert!(ok(O::Abort, S::InTransaction));
        assert!(ok(O::Abort, S::AbortableError(abortable())));
        assert!(
            ok(O::Abort, S::Aborting),
            "a timed-out abort may be repeated"
        );
        assert!(!ok(O::Abort, S::Ready));
        assert!(!ok(O::SendOffsets, S::Ready));
    }

    #[test]
    fn only_the_timed_out_operation_may_follow_it() {
        use Operation as O;
        use TxnState as S;
        let unfinished = |operation, unfinished| {
            Err(TransactionError::Unfinished {
                operation,
                unfinished,
            })
        };
        // The commit may have reached the coordinator: an abort must not stand in for it.
        assert_eq!(
            check(O::Abort, &S::Committing),
            unfinished("abort_transaction", "commit_transaction")
        );
        assert_eq!(
            check(O::Commit, &S::Aborting),
            unfinished("commit_transaction", "abort_transaction")
        );
        for o in [O::Init, O::Begin, O::SendOffsets] {
            assert_eq!(
                check(o, &S::Committing),
                unfinished(o.name(), "commit_transaction")
            );
            assert_eq!(
                check(o, &S::Aborting),
                unfinished(o.name(), "abort_transaction")
            );
        }
        assert_eq!(
            check(O::Begin, &S::Initializing),
            unfinished("begin_transaction", "init_transactions")
        );
        let e = check(O::Abort, &S::Committing).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retriable);
        let text = e.to_string();
        assert!(
            text.contains("abort_transaction") && text.contains("call commit_transaction again"),
            "{text}"
        );
        // Records still join the commit's flush; those of an abort are refused.
        assert!(check(O::Send, &S::Committing).is_ok());
        assert!(matches!(
            check(O::Send, &S::Aborting),
            Err(TransactionError::InvalidState { .. })
        ));
    }

    #[test]
    fn an_abortable_state_refuses_all_but_abort_with_its_error() {
        let s = TxnState::AbortableError(abortable());
        for o in [Operation::Commit, Operation::Send, Operation::SendOffsets] {
            assert_eq!(check(o, &s), Err(abortable()));
        }
        assert_eq!(
            check(Operation::Begin, &s),
            Err(TransactionError::InvalidState {
                operation: "begin_transaction",
                state: "ABORTABLE_ERROR"
            })
        );
    }

    #[test]
    fn a_fatal_state_refuses_everything_with_its_error() {
        let fenced = TransactionError::Fenced(Arc::from("PRODUCER_FENCED (90)"));
        let s = TxnState::FatalError(fenced.clone());
        for o in [
            Operation::Init,
            Operation::Begin,
            Operation::Send,
            Operation::SendOffsets,
            Operation::Commit,
            Operation::Abort,
        ] {
            assert_eq!(check(o, &s), Err(fenced.clone()), "{o:?}");
        }
    }

    #[test]
    fn add_partitions_names_the_partition_that_failed() {
        let partition = |i, code: KafkaCode| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(i)
                .with_partition_error_code(code.code())
        };
        let response = |ps| {
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
                AddPartitionsToTxnTopicResult::default().with_results_by_partition(ps),
            ])
        };
        let a = TxnAnswer::AddPartitions(response(vec![
            partition(0, KafkaCode::OPERATION_NOT_ATTEMPTED),
            partition(1, KafkaCode::TOPIC_AUTHORIZATION_FAILED),
        ]));
        assert_eq!(
            add_partitions_error(&a),
            Some(KafkaCode::TOPIC_AUTHORIZATION_FAILED)
        );
        let fine = TxnAnswer::AddPartitions(response(vec![
            AddPartitionsToTxnPartitionResult::default().with_partition_index(0),
        ]));
        assert_eq!(add_partitions_error(&fine), None);
        assert!(matches!(
            miss(Operation::Commit, KafkaCode::PRODUCER_FENCED),
            Miss::Fail(TransactionError::Fenced(_))
        ));
        assert!(matches!(
            miss(Operation::Commit, KafkaCode::NOT_COORDINATOR),
            Miss::Retry { refind: true, .. }
        ));
        assert!(matches!(
            miss(Operation::Send, KafkaCode::CONCURRENT_TRANSACTIONS),
            Miss::Retry { refind: false, .. }
        ));
    }
}
