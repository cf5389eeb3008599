//! One accumulator actor per topic-partition: the single owner of every record's completion
//! from the moment the router appends it until its outcome is delivered.
//!
//! ```text
//!  router ──append (lock, no message)──▶ PartitionQueue { open, full }
//!         ──BatchStarted / BatchFilled (one message per batch)──▶ Accumulator
//!  Accumulator: seal (compress, stamp producer id + sequence) ─▶ ready ─▶ SendBatches ─▶ leader
//!  connection ──BatchCompleted { id, result }──▶ Accumulator: complete records, or retry
//!             (back into `ready` in id order, i.e. at the head), or fail them
//! ```
//!
//! Exactly-once accounting: a batch lives in exactly one of `PartitionQueue`, `ready` or
//! `in_flight`, and its records' completions move with it. An answer for a batch id that is
//! no longer in flight (already expired, aborted, or answered) is ignored, so no record is
//! answered twice; every path that removes a batch completes its records, so none is lost.

mod decision;
mod hold;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use herald::batch::ProducerIds;
use herald::config::SMALL_IN_FLIGHT;
use herald::transaction::{self, Handling};
use herald::{ErrorKind, ProduceError, ProtocolError, RecordMetadata, TransactionError};
use tokio::sync::oneshot;

use crate::clock::{Alarm, LingerDue};
use crate::cluster::ProducerIdState;
use crate::completion::{Completer, Completion, Outcome, RecordSlot};
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::memory::Reservation;
use crate::messages::batching::{Abort, BatchFilled, BatchStarted, DiscardUnsent, FlushPartition};
use crate::messages::cluster::{BrokerNamed, BumpEpoch, ClusterChanged};
use crate::messages::delivery::{
    BatchCompleted, BatchResult, InvalidRecord, LeaderHint, OutgoingBatch, SendBatches, SendClaim,
};
use crate::messages::intercept::Acknowledged;
use crate::messages::seal::{Seal, Sealed};
use crate::messages::transaction::{AddPartition, PartitionAdded};
use crate::messages::Shutdown;
use crate::metrics::{Metrics, TopicSensors};
use crate::otel::BatchLinks;
use crate::partition::{OpenBatch, PartitionShared, Unsent};
use crate::shared::Shared;
#[cfg(feature = "fault-injection")]
use crate::supervisor::ActorKind;
use decision::{classify, Attempt, Cause, Decision, State};

/// A closed batch: its bytes are final (until an epoch bump restamps them).
///
/// Batches are taken off the queues to be answered one after the other (expiry, failing
/// everything, an answer, a split). Should a panic come meanwhile, those on the stack are
/// dropped as it unwinds, and dropping one does what answering it would have: the connection
/// that still queues its attempt is told not to write it (`claim`, declared first so that
/// this happens before its records are told they failed), its completions answer its
/// records (`Panicked`), and its reservation gives back its `buffer.memory`.
#[derive(Debug)]
struct SealedBatch {
    /// The attempt handed to a connection and not answered yet: cancelled when the batch is
    /// answered first, so that a connection still holding it does not write it.
    claim: Option<HeldAttempt>,
    id: u64,
    bytes: Bytes,
    records: Vec<RecordSlot>,
    created: Instant,
    reserved: Reservation,
    attempts: u32,
    retry_at: Option<Instant>,
    ids: ProducerIds,
    /// An attempt was lost with its connection, or refused with an error Kafka also answers
    /// after appending (see `decision::refused_after_append`): the broker may hold this
    /// batch under `ids`. Such a batch keeps its identity across an epoch change until
    /// resolved, so a deduplicating broker can recognise it.
    maybe_written: bool,
    /// As `maybe_written`, without idempotence: nothing can tell whether the broker wrote
    /// it, so the batch may be in the log whatever comes next.
    lost_unresolvable: bool,
    /// Its bytes are still being compressed by the sealer (`bytes` is empty until then).
    sealing: bool,
    /// Ids `id .. id + span` belong to this batch: the pieces it is split into take them, so
    /// they sort before every younger batch (see [`sealed_id`]).
    span: u64,
    /// A piece of a batch split after MESSAGE_TOO_LARGE.
    piece: bool,
    /// Why its last attempt failed, for the delivery timeout's error.
    last_error: Option<Arc<str>>,
}

/// The batch's hold on its attempt, which takes the attempt back when dropped: a batch
/// dropped with its accumulator (broken past its restart limit, its records answered
/// `Broken`) or by a panic's unwinding (its records answered `Panicked`) is then not written
/// by the connection that still queues it, after its records were told they failed.
#[derive(Debug)]
struct HeldAttempt(SendClaim);

impl Drop for HeldAttempt {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Bits of a sealed batch's id below the router's id of its open batch: room for the pieces
/// of a batch split after MESSAGE_TOO_LARGE, each split halving the span, so a batch can be
/// halved this many times (down to single records for batches of up to 2^20 records).
const SPLIT_BITS: u32 = 20;

/// The sealed id of the router's batch `open_id`: ids keep their order, and the ids between
/// two of them are free for the pieces of a split.
fn sealed_id(open_id: u64) -> u64 {
    open_id << SPLIT_BITS
}

impl SealedBatch {
    /// A sealed batch from an open one's parts, not yet sent.
    fn new(open: OpenBatchParts, bytes: Bytes, ids: ProducerIds) -> Self {
        let (id, records, created, reserved) = open;
        SealedBatch {
            id,
            bytes,
            records,
            created,
            reserved,
            attempts: 0,
            retry_at: None,
            ids,
            maybe_written: false,
            lost_unresolvable: false,
            sealing: false,
            span: 1 << SPLIT_BITS,
            piece: false,
            last_error: None,
            claim: None,
        }
    }

    /// Takes back the attempt its connection holds, if no request took it yet: true if this
    /// attempt will then never be written.
    fn cancel_attempt(&mut self) -> bool {
        self.claim.take().is_some_and(|c| c.0.cancel())
    }
}

impl SealedBatch {
    /// Whether an earlier attempt may be in the log: an expiry must not report the batch
    /// as never written.
    fn may_be_in_log(&self) -> bool {
        self.maybe_written || self.lost_unresolvable
    }
}

/// The producer identity batches must carry now.
#[derive(Debug)]
enum Identity {
    /// Idempotence is off: batches carry no producer id.
    Off,
    /// This producer id and epoch.
    Ready { producer_id: i64, epoch: i16 },
    /// Not known yet (InitProducerId is under way).
    Pending,
    /// The broker refused a producer id for good.
    Failed(Arc<str>),
}

/// What an open batch keeps besides its builder: id, record slots, creation time, reserved
/// memory.
type OpenBatchParts = (u64, Vec<RecordSlot>, Instant, Reservation);

/// How long before a linger deadline the accumulator hands the wait from tokio's timer (which
/// fires up to about 2 ms late) to the clock thread.
const LINGER_LEAD: Duration = Duration::from_millis(3);

/// The outcomes of a batch's records for the interceptors' `on_acknowledgement`, sent when
/// dropped: at the end of the batch's completion, or while a panic unwinds midway through it.
/// The records answered before such a panic are acknowledged here; the supervisor answers
/// and acknowledges the rest, whose completions the unwinding drops. An outcome goes in
/// only once its record is answered, so no record is acknowledged twice.
struct Acks<'a> {
    to: &'a Recipient<Acknowledged>,
    outcomes: Vec<Outcome>,
}

impl Acks<'_> {
    /// Answers a record, then keeps its outcome for the interceptors: in that order, so that
    /// a panic while answering leaves the record to the supervisor alone.
    fn answer(&mut self, completer: &mut Completer, completion: Completion, outcome: Outcome) {
        let ack = outcome.clone();
        completer.complete(completion, outcome);
        self.outcomes.push(ack);
    }
}

impl Drop for Acks<'_> {
    fn drop(&mut self) {
        let outcomes = std::mem::take(&mut self.outcomes);
        if !outcomes.is_empty() {
            self.to.do_send(Acknowledged { outcomes });
        }
    }
}

/// The accumulator actor of one topic-partition.
#[derive(Debug)]
pub(crate) struct Accumulator {
    topic: Arc<str>,
    partition: i32,
    shared: Arc<Shared>,
    part: Arc<PartitionShared>,
    /// The topic's windowed metrics, shared with the topic's other partitions.
    sensors: Arc<TopicSensors>,
    /// The interceptor chain, if interceptors are configured: every outcome goes there too.
    acknowledged: Option<Recipient<Acknowledged>>,
    /// Sealed batches waiting for a leader or a retry, in id order.
    ready: VecDeque<SealedBatch>,
    /// Handed to a connection, in id order.
    in_flight: VecDeque<SealedBatch>,
    /// The broker whose connection holds `in_flight`.
    in_flight_leader: Option<i32>,
    /// Producer id and epoch the sequences below belong to.
    epoch: Option<(i64, i16)>,
    next_sequence: i32,
    /// First stage of the linger wait (tokio's timer, see `arm_timers`).
    linger_timer: Option<(Instant, SpawnHandle)>,
    /// Second stage: the producer's clock thread.
    linger: Alarm,
    wake_timer: Option<(Instant, SpawnHandle)>,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Pieces of split batches not yet complete. While there are any, one batch at a time
    /// is in flight: a piece that still is too large must not let the next one be written
    /// first (a broker that holds no state for this producer yet takes any sequence).
    pieces: usize,
    /// A batch sent under `epoch` was acknowledged: the broker holds this producer's state
    /// for the partition, so it refuses a batch that does not follow the last one it wrote
    /// (a first write takes any sequence). Small batches go beside one in flight only then.
    acked: bool,
    /// The `waiting` last set in the shared queue (`PartitionQueue::waiting`).
    waiting: bool,
    /// The `sealed` last set in the shared queue (`PartitionQueue::sealed`).
    sealed: Unsent,
    /// Transactional producers: the transaction (generation) this partition was added to,
    /// and the one it asked to be added to. Its batches go out only once the first is the
    /// open transaction.
    txn_added: Option<u64>,
    txn_asked: Option<u64>,
    terminated: bool,
    /// Clones of `topic` for the `RecordMetadata` of a batch's records, made together (see
    /// `complete_batch`); empty between batches, kept for its room.
    topic_clones: Vec<Arc<str>>,
}

impl Accumulator {
    /// An accumulator for `topic`-`partition`, draining `part`.
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        shared: Arc<Shared>,
        part: Arc<PartitionShared>,
        acknowledged: Option<Recipient<Acknowledged>>,
    ) -> Self {
        Accumulator {
            sensors: shared.metrics.topic(&topic),
            // A copy of the partition's own: every record's `RecordMetadata` holds it, and
            // the application drops those on its thread while other partitions' batches
            // are completed here; with one allocation for the whole topic, their clones
            // and its drops met on one cache line (`do_send` + `notify`: 566, 568, 577 ns
            // of CPU per record with it, 521, 532, 474 with a copy per partition, three
            // pairs of invocations alternating the builds).
            topic: Arc::from(&*topic),
            partition,
            shared,
            part,
            acknowledged,
            ready: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_leader: None,
            epoch: None,
            next_sequence: 0,
            linger_timer: None,
            linger: Alarm::default(),
            wake_timer: None,
            flush_waiters: Vec::new(),
            pieces: 0,
            acked: false,
            waiting: false,
            sealed: Unsent::default(),
            txn_added: None,
            txn_asked: None,
            terminated: false,
            topic_clones: Vec::new(),
        }
    }

    fn flushing(&self) -> bool {
        !self.flush_waiters.is_empty()
    }

    /// The producer identity batches must carry now.
    fn identity(&self) -> Identity {
        if !self.shared.config.enable_idempotence {
            return Identity::Off;
        }
        match self.shared.cluster.producer_state() {
            ProducerIdState::Ready { producer_id, epoch } => Identity::Ready { producer_id, epoch },
            ProducerIdState::Failed(why) => Identity::Failed(why),
            ProducerIdState::NotNeeded | ProducerIdState::Pending => Identity::Pending,
        }
    }

    /// Moves batches from the shared queue to `ready` (sealing them) and sends what can go.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        let ids = match self.identity() {
            Identity::Off => None,
            Identity::Ready { producer_id, epoch } => Some((producer_id, epoch)),
            Identity::Failed(why) => {
                // Idempotence cannot work: fail everything rather than send unsequenced.
                self.fail_all(ErrorKind::Idempotence(why));
                return;
            }
            Identity::Pending => {
                // Wait for the producer id (ClusterChanged wakes us), but keep linger timing.
                self.arm_timers(ctx);
                return;
            }
        };
        if ids != self.epoch {
            // A new producer id or epoch: sequences restart at 0, once nothing sent under the
            // old identity is unresolved (as the Java client does). First every answer to what
            // is in flight; then batches that may already be written go again under their old
            // identity, so the broker recognises them as duplicates; only then the rest is
            // restamped.
            // (A batch still with the sealer carries the old identity too; it is restamped
            // once its bytes are back.)
            if !self.in_flight.is_empty() || self.ready.iter().any(|b| b.sealing) {
                self.arm_timers(ctx);
                return;
            }
            if let Some(last) = self.ready.iter().rposition(|b| b.maybe_written) {
                self.send_ready(ctx, Some(last + 1));
                self.arm_timers(ctx);
                return;
            }
            self.epoch = ids;
            self.next_sequence = 0;
            self.acked = false;
            let batches: Vec<SealedBatch> = self.ready.drain(..).collect();
            for mut b in batches {
                let stamp = self.stamp_for(b.records.len());
                match herald::batch::restamp(&b.bytes, stamp) {
                    Ok(bytes) => {
                        b.bytes = bytes;
                        b.ids = stamp;
                        self.ready.push_back(b);
                    }
                    Err(e) => self.complete_batch(b, Err(ErrorKind::Protocol(Arc::new(e)))),
                }
            }
        }
        let full: Vec<OpenBatch> = self.part.lock().full.drain(..).collect();
        for batch in full {
            self.seal(batch, ctx);
        }
        self.send_ready(ctx, None);
        // The open batch is closed once linger.ms has passed only if it can go out now. While
        // the partition cannot send (its in-flight slots taken, or batches waiting ahead), it
        // stays open and keeps taking records until it is full, as the Java client's batches
        // do until drained and librdkafka's message sets until a request is built. Closing it
        // at linger.ms regardless left a slow link with a queue of linger-sized batches,
        // each a request slot: 5 slots of 17 records per 300 ms round trip.
        let now = Instant::now();
        let linger = self.shared.config.linger;
        let batch_size = self.shared.config.batch_size;
        let flushing = self.flushing();
        let can_send = self.can_send_more();
        let open = {
            let mut q = self.part.lock();
            let due = q.open.as_ref().is_some_and(|o| {
                flushing
                    || (can_send
                        // batch.size reached: a batch that grew while the partition waited
                        // is full as Java's would be, and goes without waiting for linger.
                        && (o.builder.size_in_bytes() >= batch_size
                            || now.duration_since(o.created) >= linger))
            });
            if due {
                q.open.take()
            } else {
                None
            }
        };
        if let Some(open) = open {
            self.seal(open, ctx);
            self.send_ready(ctx, None);
        }
        let waiting = !self.can_send_more();
        // By the bytes each batch holds: a batch in a grown batch's spare buffer reserved
        // more than it holds (see `MemoryPool::take_spare`). One still being compressed
        // counts as what it reserved.
        let sealed = Unsent::of(
            self.ready.iter().map(|b| {
                let held = if b.bytes.is_empty() {
                    b.reserved.bytes()
                } else {
                    b.bytes.len()
                };
                (held, b.created)
            }),
            batch_size,
        );
        if waiting != self.waiting || sealed != self.sealed {
            self.waiting = waiting;
            self.sealed = sealed;
            let mut q = self.part.lock();
            q.waiting = waiting;
            q.sealed = sealed;
        }
        self.arm_timers(ctx);
    }

    /// Batches of this partition that may be in flight now.
    ///
    /// By default (`max.in.flight.batches.per.partition=1`) one whatever max.in.flight
    /// (which bounds the requests on a connection): a retried batch can then never land
    /// behind a younger one, on a broker that checks idempotent sequences or not, and what
    /// Java would pipeline as several batches goes as one grown batch per round trip instead
    /// (`PartitionQueue::waiting`). With 0, the same while the batches in flight hold
    /// `SMALL_IN_FLIGHT` (5) records or more; while they hold fewer (a low rate: a few
    /// records per linger.ms), an idempotent producer sends the next batch at once, as
    /// librdkafka's idempotent producer does, instead of holding its records for a round
    /// trip; only once the broker holds the producer's state for the partition (`acked`),
    /// so that it refuses a batch that overtook a refused one. Above 1, that many, whatever
    /// they hold: Java's pipelining, order resting on the broker, as on Kafka.
    fn in_flight_limit(&self) -> usize {
        if self.pieces > 0 {
            return 1;
        }
        let config = &self.shared.config;
        // `acked` implies idempotence: it is set only for a batch stamped with `epoch`.
        if config.pipelines_small_batches() && self.acked {
            let records: usize = self.in_flight.iter().map(|b| b.records.len()).sum();
            if records < SMALL_IN_FLIGHT {
                return (self.in_flight.len() + 1)
                    .min(config.max_in_flight_requests_per_connection.max(1));
            }
        }
        config.partition_in_flight()
    }

    /// Whether a batch closed now would go out at once: nothing waits ahead of it and an
    /// in-flight slot is free.
    fn can_send_more(&self) -> bool {
        self.ready.is_empty() && self.in_flight.len() < self.in_flight_limit()
    }

    fn stamp_for(&mut self, records: usize) -> ProducerIds {
        match self.epoch {
            Some((producer_id, producer_epoch)) => {
                let base_sequence = self.next_sequence;
                // Sequences wrap at i32::MAX as in Java's DefaultRecordBatch.incrementSequence.
                self.next_sequence =
                    ((self.next_sequence as i64 + records as i64) % (i32::MAX as i64 + 1)) as i32;
                ProducerIds {
                    producer_id,
                    producer_epoch,
                    base_sequence,
                }
            }
            None => ProducerIds::NONE,
        }
    }

    fn seal(&mut self, open: OpenBatch, ctx: &mut Context<Self>) {
        let OpenBatch {
            id,
            builder,
            records,
            created,
            reserved,
        } = open;
        let id = sealed_id(id);
        let uncompressed = builder.size_in_bytes();
        let m = &self.shared.metrics;
        let largest = builder.max_record_size() as f64;
        m.sensors.record_size.record(largest, m.now_ms());
        let stamp = self.stamp_for(records.len());
        let parts = (id, records, created, reserved);
        if let Some(sealer) = &self.shared.sealer {
            // Compression runs on the sealer's thread; the batch keeps its place in `ready`
            // and nothing behind it goes out before its bytes are back.
            let mut batch = SealedBatch::new(parts, Bytes::new(), stamp);
            batch.sealing = true;
            self.ready.push_back(batch);
            sealer.do_send(Seal {
                batch_id: id,
                builder,
                ids: stamp,
                reply: ctx.address().recipient(),
            });
            return;
        }
        let result = builder.close(stamp);
        self.ready
            .push_back(SealedBatch::new(parts, Bytes::new(), stamp));
        self.on_sealed(id, uncompressed, result);
    }

    /// Puts a batch's final bytes in place (or fails the batch if it could not be closed).
    fn on_sealed(&mut self, id: u64, uncompressed: usize, result: Result<Bytes, ProtocolError>) {
        // Not found: the batch expired or was aborted while the sealer had it.
        let Some(at) = self.ready.iter().rposition(|b| b.id == id) else {
            return;
        };
        match result {
            Ok(bytes) => {
                let m = &self.shared.metrics;
                Metrics::add(&m.batch_count, 1);
                Metrics::add(&m.batch_bytes, bytes.len() as u64);
                Metrics::raise(&m.batch_bytes_max, bytes.len() as u64);
                Metrics::add(&m.batch_uncompressed_bytes, uncompressed as u64);
                let (now, size) = (m.now_ms(), bytes.len() as f64);
                let ratio = if uncompressed == 0 {
                    1.0
                } else {
                    size / uncompressed as f64
                };
                m.sensors.batch_size.record(size, now);
                m.sensors.compression_rate.record(ratio, now);
                self.sensors.bytes.record(size, now);
                self.sensors.compression_rate.record(ratio, now);
                let b = &mut self.ready[at];
                b.bytes = bytes;
                b.sealing = false;
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "sealing batch failed");
                let batch = self.ready.remove(at).expect("position found");
                self.complete_batch(batch, Err(ErrorKind::Protocol(Arc::new(e))));
            }
        }
    }

    /// Hands every batch that may go now to the leader's connection, in order.
    /// `only`: send at most this many batches from the front (the unresolved ones during an
    /// epoch change).
    fn send_ready(&mut self, ctx: &mut Context<Self>, only: Option<usize>) {
        if self.ready.is_empty() || !self.added_to_transaction(ctx) {
            return;
        }
        let Some((leader, conn)) = self
            .shared
            .cluster
            .leader_connection(&self.topic, self.partition)
        else {
            self.shared.request_metadata_refresh();
            self.shared.want_topic(&self.topic);
            return;
        };
        // Never have batches of one partition in flight on two connections: after a leader
        // change, the old leader's answers come first, so a retry cannot land behind a
        // younger batch written by the new leader.
        if !self.in_flight.is_empty() && self.in_flight_leader != Some(leader) {
            return;
        }
        let now = Instant::now();
        let reply = ctx.address().recipient::<BatchCompleted>();
        let metrics = &self.shared.metrics;
        let now_ms = metrics.now_ms();
        let mut out = Vec::new();
        while let Some(b) = self.ready.front() {
            // Recomputed for each batch: by default it depends on what is in flight.
            let limit = self.in_flight_limit();
            if self.in_flight.len() >= only.map_or(limit, |n| n.min(limit)) {
                break;
            }
            // A batch waiting out its retry backoff holds back everything behind it (order).
            if b.retry_at.is_some_and(|at| at > now) || b.sealing {
                break;
            }
            let mut b = self.ready.pop_front().expect("front exists");
            let claim = SendClaim::default();
            b.claim = Some(HeldAttempt(claim.clone()));
            if b.attempts == 0 && !b.piece {
                let queued = now.saturating_duration_since(b.created).as_secs_f64() * 1000.0;
                metrics.sensors.record_queue_time.record(queued, now_ms);
            }
            out.push(OutgoingBatch {
                topic: self.topic.clone(),
                partition: self.partition,
                batch_id: b.id,
                records: b.bytes.clone(),
                record_count: b.records.len() as u32,
                links: BatchLinks::of(b.records.iter().map(|r| &r.trace)),
                reply: Some(reply.clone()),
                claim,
            });
            self.in_flight.push_back(b);
        }
        self.in_flight_leader = Some(leader);
        if !out.is_empty() {
            conn.send(SendBatches(out));
        }
    }

    /// Whether this partition's batches may go out as far as the transaction is concerned:
    /// always without `transactional.id`; otherwise once the partition is part of the open
    /// transaction. Asks the transaction manager to add it (once per transaction) when not.
    fn added_to_transaction(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(status) = &self.shared.txn else {
            return true;
        };
        let generation = status.generation();
        if self.txn_added == Some(generation) {
            return true;
        }
        if self.txn_asked != Some(generation) {
            if let Some(t) = self.shared.transaction.get() {
                self.txn_asked = Some(generation);
                t.add_partition.do_send(AddPartition {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    generation,
                    reply: ctx.address().recipient(),
                });
            }
        }
        false
    }

    /// Fails every batch not handed to a connection (in the shared queue or `ready`) with
    /// `kind`; batches in flight are left to their answers.
    fn fail_unsent(&mut self, kind: ErrorKind) {
        // Oldest first, so a partition's outcomes keep their order: the sealed batches, then
        // the full ones, then the open one.
        let unsent: Vec<SealedBatch> = self.ready.drain(..).collect();
        for b in unsent {
            self.complete_batch(b, Err(kind.clone()));
        }
        let open: Vec<OpenBatch> = {
            let mut q = self.part.lock();
            let mut out: Vec<OpenBatch> = q.full.drain(..).collect();
            out.extend(q.open.take());
            out
        };
        for b in open {
            self.fail_open(b, kind.clone());
        }
        self.check_flush();
    }

    /// A transactional producer's batch failed: its transaction cannot commit. Records the
    /// failure for the router and the transaction manager, classified as KIP-1050 says.
    fn fail_transaction(&self, kind: &ErrorKind) {
        let Some(status) = &self.shared.txn else {
            return;
        };
        let error = match kind {
            ErrorKind::Transaction(TransactionError::Aborted) => return,
            ErrorKind::Transaction(e) => e.clone(),
            ErrorKind::Broker { code, .. } => {
                let why = Arc::from(format!(
                    "a record for {}-{} failed: {kind}",
                    self.topic, self.partition
                ));
                match transaction::classify(*code) {
                    // A retriable code reached here because retries ran out.
                    Handling::Retry { .. } => TransactionError::Abortable(why),
                    Handling::Fail(_) => TransactionError::from_code(*code, why),
                }
            }
            other => TransactionError::Abortable(Arc::from(format!(
                "a record for {}-{} failed: {other}",
                self.topic, self.partition
            ))),
        };
        status.fail(error);
    }

    /// Arms the timers this actor needs: linger expiry of the open batch (on the producer's
    /// [`Clock`](crate::clock::Clock), precise to a fraction of a millisecond), and one wake-up
    /// for the earliest of the end of a retry backoff and the next delivery timeout.
    fn arm_timers(&mut self, ctx: &mut Context<Self>) {
        let linger = self.shared.config.linger;
        // No linger deadline while the partition cannot send: an answer or the end of a
        // retry backoff wakes it (see `drain`).
        let open_due = if self.can_send_more() || self.flushing() {
            self.part.lock().open.as_ref().map(|o| o.created + linger)
        } else {
            None
        };
        // Two stages: tokio's timer until shortly before the deadline, then the clock thread.
        // Most batches of a busy partition fill up before the first stage ends and never cost
        // the clock thread a wake-up (one per batch measured ~100 ns per record at 1M rec/s).
        let coarse = open_due
            .and_then(|due| due.checked_sub(LINGER_LEAD))
            .filter(|at| *at > Instant::now());
        match (open_due, coarse) {
            (Some(_), Some(at)) => {
                self.linger.cancel();
                self.arm(ctx, at, |a| &mut a.linger_timer, |a, ctx| a.drain(ctx));
            }
            (Some(due), None) => {
                self.cancel_timer(ctx, |a| &mut a.linger_timer);
                self.linger
                    .set(&self.shared.clock, due, || ctx.address().recipient());
            }
            (None, _) => {
                self.cancel_timer(ctx, |a| &mut a.linger_timer);
                self.linger.cancel();
            }
        }
        let now = Instant::now();
        // A wake-up already due and not yet run does the same work at once.
        if self.wake_timer.as_ref().is_some_and(|(at, _)| *at <= now) {
            return;
        }
        let next = hold::next_wake(
            self.ready.front().and_then(|b| b.retry_at),
            self.next_expiry(),
            now,
            self.shared.config.retry_backoff,
        );
        if let Some(due) = next {
            self.arm(
                ctx,
                due,
                |a| &mut a.wake_timer,
                |a, ctx| {
                    a.expire(ctx);
                    a.drain(ctx);
                },
            );
        }
    }

    fn cancel_timer(
        &mut self,
        ctx: &mut Context<Self>,
        slot: fn(&mut Self) -> &mut Option<(Instant, SpawnHandle)>,
    ) {
        if let Some((_, h)) = slot(self).take() {
            ctx.cancel_future(h);
        }
    }

    /// (Re)arms the timer in `slot` for `due`, unless it is already set for that instant.
    fn arm(
        &mut self,
        ctx: &mut Context<Self>,
        due: Instant,
        slot: fn(&mut Self) -> &mut Option<(Instant, SpawnHandle)>,
        fire: fn(&mut Self, &mut Context<Self>),
    ) {
        if slot(self).as_ref().map(|(at, _)| *at) == Some(due) {
            return;
        }
        if let Some((_, h)) = slot(self).take() {
            ctx.cancel_future(h);
        }
        let wait = due.saturating_duration_since(Instant::now());
        let h = ctx.run_later(wait, move |act, ctx| {
            *slot(act) = None;
            fire(act, ctx);
        });
        *slot(self) = Some((due, h));
    }

    fn delivery_timeout(&self) -> Duration {
        self.shared.config.delivery_timeout
    }

    fn next_expiry(&self) -> Option<Instant> {
        let t = self.delivery_timeout();
        self.min_over_batches(|b| b.created, |b| b.created)
            .map(|c| c + t)
    }

    /// The least of `open(b)` / `sealed(b)` over every batch this partition holds, wherever
    /// it waits: in the shared queue, ready, or in flight.
    fn min_over_batches<T: Ord>(
        &self,
        open: fn(&OpenBatch) -> T,
        sealed: fn(&SealedBatch) -> T,
    ) -> Option<T> {
        let q = self.part.lock();
        q.full
            .iter()
            .chain(q.open.iter())
            .map(open)
            .chain(self.ready.iter().chain(self.in_flight.iter()).map(sealed))
            .min()
    }

    /// Fails every batch whose delivery timeout has passed, wherever it waits.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.delivery_timeout();
        let now = Instant::now();
        let expired = |created: Instant| now.duration_since(created) >= timeout;
        let timeout_ms = timeout.as_millis() as u64;
        if let Some(b) = self.ready.front().filter(|b| expired(b.created)) {
            // Says which wait outlived the delivery timeout: a broker that never came back and
            // a wake-up that never came look the same to the record's owner.
            tracing::warn!(topic = %self.topic, partition = self.partition, held_by = %self.held_by(now), attempts = b.attempts, last_error = b.last_error.as_deref().unwrap_or("none"), "unsent batch expired");
        }
        let mut gap: Option<ProducerIds> = None;
        // Oldest first, so a partition's outcomes keep their order (as Java fails its expired
        // in-flight batches before its queued ones): in flight, waiting, then the batches
        // still open in the accumulator (below).
        for (queue, stage) in [(false, "in flight"), (true, "waiting to be sent")] {
            let list = if queue {
                &mut self.ready
            } else {
                &mut self.in_flight
            };
            let (dead, live): (Vec<_>, Vec<_>) = list.drain(..).partition(|b| expired(b.created));
            *list = live.into();
            for mut b in dead {
                if b.ids.base_sequence >= 0 && (!queue || gap.is_none()) {
                    gap = Some(b.ids);
                }
                // Still in its connection's queue: taken back there, so it is not written
                // after being reported failed. Unless an earlier attempt was lost with its
                // connection, it is then surely not in the log. Waiting to go again after
                // such a loss, it may be: said, so that its records are not sent again as
                // if surely unwritten.
                let stage = if b.cancel_attempt() && !b.may_be_in_log() {
                    "queued for its connection, never sent"
                } else if queue && b.may_be_in_log() {
                    "waiting to be sent again, an earlier attempt may be in the log"
                } else {
                    stage
                };
                let last_error = b.last_error.clone();
                let kind = ErrorKind::DeliveryTimeout {
                    timeout_ms,
                    stage,
                    last_error,
                };
                self.complete_batch(b, Err(kind));
            }
        }
        let open_expired: Vec<OpenBatch> = {
            let mut q = self.part.lock();
            let mut out = Vec::new();
            while q.full.front().is_some_and(|b| expired(b.created)) {
                out.extend(q.full.pop_front());
            }
            if q.open.as_ref().is_some_and(|b| expired(b.created)) {
                out.extend(q.open.take());
            }
            out
        };
        for b in open_expired {
            self.fail_open(
                b,
                ErrorKind::DeliveryTimeout {
                    timeout_ms,
                    stage: "in the accumulator",
                    last_error: None,
                },
            );
        }
        if let Some(ids) = gap {
            // Expired batches leave a hole in this partition's sequence: a new epoch repairs it.
            self.request_epoch_bump(ids);
        }
        self.check_flush();
        let _ = ctx;
    }

    /// What keeps the front of `ready` from going out at `now` ([`hold::first_hold`]).
    fn held_by(&self, now: Instant) -> hold::Hold {
        let front = self.ready.front();
        let leader = self
            .shared
            .cluster
            .leader_connection(&self.topic, self.partition)
            .map(|(leader, _)| leader);
        hold::first_hold(&hold::Facts {
            awaiting_transaction: self
                .shared
                .txn
                .as_ref()
                .is_some_and(|status| self.txn_added != Some(status.generation())),
            identity: self.identity(),
            epoch: self.epoch,
            leader,
            in_flight_leader: self.in_flight_leader,
            in_flight: self.in_flight.len(),
            in_flight_limit: self.in_flight_limit(),
            sealing: front.is_some_and(|b| b.sealing),
            backing_off: front.is_some_and(|b| b.retry_at.is_some_and(|at| at > now)),
        })
    }

    /// Asks for a new epoch because something sent under `ids` failed in a way that leaves a
    /// gap or a lost producer state.
    fn request_epoch_bump(&self, ids: ProducerIds) {
        if ids.producer_id < 0 {
            return;
        }
        if let Some(m) = self.shared.metadata.get() {
            m.bump_epoch.do_send(BumpEpoch {
                producer_id: ids.producer_id,
                failed_epoch: ids.producer_epoch,
            });
        }
    }

    fn fail_open(&mut self, b: OpenBatch, kind: ErrorKind) {
        let parts = (sealed_id(b.id), b.records, b.created, b.reserved);
        self.complete_batch(
            SealedBatch::new(parts, Bytes::new(), ProducerIds::NONE),
            Err(kind),
        );
    }

    /// Completes every record of a batch and gives its memory back.
    fn complete_batch(&mut self, b: SealedBatch, result: Result<(i64, i64), ErrorKind>) {
        self.complete_batch_naming(b, result, &[]);
    }

    /// [`complete_batch`](Self::complete_batch) where a failure is only the `invalid` records'
    /// (by index in the batch; all of them when empty): the others fail as refused with the
    /// batch, as Java's `Sender` fails them (KIP-467).
    fn complete_batch_naming(
        &mut self,
        mut b: SealedBatch,
        result: Result<(i64, i64), ErrorKind>,
        invalid: &[InvalidRecord],
    ) {
        if b.piece {
            self.pieces -= 1;
        }
        // Off every queue, holding its memory: a panic here gives it back as the batch is
        // dropped.
        #[cfg(feature = "fault-injection")]
        self.shared.victims.trip(ActorKind::Accumulator);
        let reserved = b.reserved.give_back();
        let m = &self.shared.metrics;
        let n = b.records.len() as u64;
        // Declared before the completer, so that it goes after it, on a panic too: the
        // completer hands over the outcomes it gathered when it is dropped.
        let mut acks = self.acknowledged.as_ref().map(|to| Acks {
            to,
            outcomes: Vec::with_capacity(b.records.len()),
        });
        let mut completer = Completer::for_records(b.records.len());
        if result.is_ok() && self.epoch == Some((b.ids.producer_id, b.ids.producer_epoch)) {
            self.acked = true;
        }
        let SealedBatch {
            bytes, mut records, ..
        } = b;
        match result {
            Ok((base_offset, log_append_time)) => {
                Metrics::add(&m.record_send_total, n);
                let now = m.now_ms();
                m.sensors.record_send.record(n as f64, now);
                self.sensors.record_send.record(n as f64, now);
                // Every record's metadata holds the topic, and the application drops it on
                // its own thread: cloning it record by record here, between other work,
                // made the two cores take the reference count's line from each other per
                // record (in `perf` of `do_send` + `notify`, the clone and the drop 9% of
                // the process). Cloned in one burst, the line moves once per batch.
                // Each `Producer::send` slot's line was last written on the application's
                // thread, and settling it takes its lock: one miss per record, each behind
                // the locked instruction before it. Reading every slot first lets the
                // misses overlap (in `perf` of `herald-producer-send`, `Slot::settle` 11.4%
                // -> 8.6% of the process, the reads 0.4%).
                for r in &records {
                    r.completion.warm();
                }
                let mut topics = std::mem::take(&mut self.topic_clones);
                if acks.is_some() || records.first().is_some_and(|s| !s.completion.counts_only()) {
                    topics.extend(std::iter::repeat_n(self.topic.clone(), records.len()));
                }
                for (i, slot) in records.drain(..).enumerate() {
                    let topic = &self.topic;
                    let mut md = || RecordMetadata {
                        topic: topics.pop().unwrap_or_else(|| topic.clone()),
                        partition: self.partition,
                        // No overflow: `classify` made a base offset whose records run
                        // past i64::MAX unknown (-1).
                        offset: if base_offset < 0 {
                            -1
                        } else {
                            base_offset + i as i64
                        },
                        timestamp: if log_append_time >= 0 {
                            log_append_time
                        } else {
                            slot.timestamp
                        },
                        serialized_key_size: slot.key_size,
                        serialized_value_size: slot.value_size,
                    };
                    match acks.as_mut() {
                        Some(a) => a.answer(&mut completer, slot.completion, Ok(md())),
                        None => completer.delivered(slot.completion, md),
                    }
                }
                topics.clear();
                self.topic_clones = topics;
            }
            Err(kind) => {
                self.fail_transaction(&kind);
                Metrics::add(&m.record_error_total, n);
                let now = m.now_ms();
                m.sensors.record_error.record(n as f64, now);
                self.sensors.record_error.record(n as f64, now);
                tracing::debug!(topic = %self.topic, partition = self.partition, records = n, error = %kind, "batch failed");
                let innocent = match &kind {
                    ErrorKind::Broker {
                        code,
                        topic,
                        partition,
                        ..
                    } if !invalid.is_empty() => Some(ErrorKind::RefusedWithBatch {
                        code: *code,
                        topic: topic.clone(),
                        partition: *partition,
                    }),
                    _ => None,
                };
                for (i, slot) in records.drain(..).enumerate() {
                    let named = invalid.iter().find(|r| r.index == i as i32);
                    let kind = match (&innocent, named, &kind) {
                        (Some(k), None, _) => k.clone(),
                        // Its own words when the broker gave them, else the batch's.
                        (
                            _,
                            Some(InvalidRecord {
                                message: Some(own), ..
                            }),
                            ErrorKind::Broker {
                                code,
                                topic,
                                partition,
                                ..
                            },
                        ) => ErrorKind::Broker {
                            code: *code,
                            topic: topic.clone(),
                            partition: *partition,
                            message: Some(own.clone()),
                        },
                        _ => kind.clone(),
                    };
                    let outcome: Outcome = Err(ProduceError::new(kind));
                    match acks.as_mut() {
                        Some(a) => a.answer(&mut completer, slot.completion, outcome),
                        None => completer.complete(slot.completion, outcome),
                    }
                }
            }
        }
        drop(completer);
        // `Crash::PanicAfterAnswering`: every record has its outcome, and the interceptors
        // still hear of them (from `acks`, dropped by the unwinding).
        #[cfg(feature = "fault-injection")]
        self.shared.victims.trip_after_answering();
        drop(acks);
        // Once the batch is answered its request has been written and dropped, so nothing
        // else holds the bytes (if something still does, the buffer is simply not kept) and
        // the buffer can serve the next batches.
        if let Ok(buf) = bytes.try_into_mut() {
            self.shared.memory.offer_spare(reserved, buf, records);
        }
    }

    /// Fails every batch, those in flight too (their answers, if any come, are ignored).
    fn fail_all(&mut self, kind: ErrorKind) {
        // The batches in flight are the oldest (Java fails them first too).
        let in_flight: Vec<SealedBatch> = self.in_flight.drain(..).collect();
        for mut b in in_flight {
            b.cancel_attempt();
            self.complete_batch(b, Err(kind.clone()));
        }
        self.fail_unsent(kind);
    }

    /// Resolves flush waiters whose batches are all complete.
    fn check_flush(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let oldest = self.min_over_batches(|b| sealed_id(b.id), |b| b.id);
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flush_waiters)
            .into_iter()
            .partition(|(target, _)| oldest.is_none_or(|o| o > *target));
        self.flush_waiters = keep;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// An answer for a batch: decide what it means ([`classify`]), then carry it out.
    fn on_result(&mut self, id: u64, result: BatchResult, ctx: &mut Context<Self>) {
        let Some(pos) = self.in_flight.iter().position(|b| b.id == id) else {
            // Already answered (expired or aborted): the late answer changes nothing.
            tracing::debug!(topic = %self.topic, partition = self.partition, batch = id, "answer for unknown batch ignored");
            return;
        };
        let mut b = self.in_flight.remove(pos).expect("position is valid");
        // This attempt is answered; a retry gets a claim of its own.
        b.claim = None;
        let config = &self.shared.config;
        let state = State {
            topic: &self.topic,
            partition: self.partition,
            in_flight: &self.in_flight,
            ready: &self.ready,
            sent_to: self.in_flight_leader,
            identity: match self.identity() {
                Identity::Ready { producer_id, epoch } => (producer_id, epoch),
                _ => (
                    ProducerIds::NONE.producer_id,
                    ProducerIds::NONE.producer_epoch,
                ),
            },
            retries: config.retries,
            transactional: self.shared.txn.is_some(),
            delivery_timeout: config.delivery_timeout,
            now: Instant::now(),
        };
        let decision = classify(&b, &result, &state);
        match decision {
            Decision::Complete {
                base_offset,
                log_append_time,
            } => {
                // The partition's next batch goes first: with one batch in flight, the broker
                // works on it while this batch's records are completed here.
                self.drain(ctx);
                self.complete_batch(b, Ok((base_offset, log_append_time)));
            }
            Decision::Fail {
                error,
                bump_epoch,
                cause,
            } => {
                if let (Cause::Refused, BatchResult::Broker { code, message, .. }) =
                    (cause, &result)
                {
                    tracing::warn!(topic = %self.topic, partition = self.partition, %code, message = message.as_deref().unwrap_or(""), "batch failed");
                }
                if bump_epoch {
                    self.request_epoch_bump(b.ids);
                }
                let invalid = match (cause, &result) {
                    (
                        Cause::Refused,
                        BatchResult::Broker {
                            invalid_records, ..
                        },
                    ) => invalid_records.as_slice(),
                    _ => &[],
                };
                self.complete_batch_naming(b, Err(error), invalid);
            }
            Decision::Split => self.split(b),
            Decision::Retry {
                reason,
                refresh_metadata,
                bump_epoch,
                attempt,
                new_leader,
            } => {
                if bump_epoch {
                    self.request_epoch_bump(b.ids);
                }
                let moved = new_leader.is_some_and(|hint| self.follow_leader(hint));
                self.retry(b, &reason, refresh_metadata, attempt, moved);
            }
        }
        self.after_change(ctx);
    }

    /// Splits a batch the broker refused as too large into two halves (Java's
    /// `splitAndReenqueue`), which go back at the head of `ready`, ahead of every younger
    /// batch. Their sequences are the refused batch's own, so the batches after it keep
    /// theirs (those the broker refused as out of order meanwhile are retried behind them).
    fn split(&mut self, b: SealedBatch) {
        let n = b.records.len();
        let level = self.shared.config.compression_level();
        let pieces = match herald::batch::split_batch(&b.bytes, n.div_ceil(2), level) {
            Ok(p) => p,
            Err(e) => return self.complete_batch(b, Err(ErrorKind::Protocol(Arc::new(e)))),
        };
        tracing::info!(topic = %self.topic, partition = self.partition, batch = b.id, records = n, pieces = pieces.len(), "batch too large for the broker, split");
        let m = &self.shared.metrics;
        m.sensors.batch_split.record(1.0, m.now_ms());
        // This partition's batches no longer grow past batch.size: the broker's limit is
        // below max.request.size.
        self.part.lock().growth_cap = self.shared.config.batch_size;
        if b.piece {
            self.pieces -= 1;
        }
        self.pieces += pieces.len();
        let step = b.span / pieces.len() as u64;
        let mut records = b.records.into_iter();
        let total = b.reserved.bytes();
        let mut reserved_left = b.reserved;
        let count = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let reserved = if i + 1 == count {
                reserved_left.split_off(total)
            } else {
                reserved_left.split_off(total * piece.records / n)
            };
            let parts = (
                b.id + i as u64 * step,
                records.by_ref().take(piece.records).collect(),
                b.created,
                reserved,
            );
            let mut half = SealedBatch::new(parts, piece.bytes, piece.ids);
            half.span = step;
            half.piece = true;
            half.attempts = b.attempts;
            let at = self
                .ready
                .iter()
                .position(|o| o.id > half.id)
                .unwrap_or(self.ready.len());
            self.ready.insert(at, half);
        }
    }

    /// Records the leader a refusal named (KIP-951) in the cluster view, and asks the
    /// metadata actor to connect to it if it is a broker not known yet. Returns whether the
    /// partition now has a leader other than the broker that refused the batch, so the
    /// retry need not wait out a backoff (Java skips it alike when the leader changed).
    fn follow_leader(&mut self, hint: LeaderHint) -> bool {
        let cluster = &self.shared.cluster;
        if cluster.learn_leader(&self.topic, self.partition, hint.leader, hint.leader_epoch) {
            Metrics::add(&self.shared.metrics.leader_hint_total, 1);
            tracing::debug!(topic = %self.topic, partition = self.partition, leader = hint.leader, epoch = hint.leader_epoch, "leader learned from a produce response");
        }
        if !cluster.brokers.contains_key(&hint.leader) {
            if let (Some(address), Some(m)) = (hint.address, self.shared.metadata.get()) {
                m.broker_named.do_send(BrokerNamed {
                    node_id: hint.leader,
                    address,
                });
            }
        }
        let now = cluster
            .topics
            .get(&*self.topic)
            .and_then(|t| t.partitions.get(self.partition as usize).map(|p| p.leader));
        now == Some(hint.leader)
    }

    /// Puts a batch back into `ready` to go again once its backoff has passed (at once when
    /// `moved`: the partition's leader changed since the attempt).
    fn retry(
        &mut self,
        mut b: SealedBatch,
        reason: &str,
        refresh_metadata: bool,
        attempt: Attempt,
        moved: bool,
    ) {
        let config = &self.shared.config;
        let sent = attempt != Attempt::NotSent;
        let wait = match (moved, sent) {
            (true, _) => Duration::ZERO,
            // Back to the connection after the base backoff: it reconnects with its own
            // (exponential) backoff, and this batch goes as soon as it is up.
            (false, false) => {
                crate::backoff::delay(config.retry_backoff, config.retry_backoff_max, 0)
            }
            (false, true) => {
                crate::backoff::delay(config.retry_backoff, config.retry_backoff_max, b.attempts)
            }
        };
        b.retry_at = Some(Instant::now() + wait);
        b.last_error = Some(Arc::from(reason));
        let records = b.records.len() as u64;
        if sent {
            b.attempts += 1;
            let m = &self.shared.metrics;
            Metrics::add(&m.record_retry_total, records);
            let now = m.now_ms();
            m.sensors.record_retry.record(records as f64, now);
            self.sensors.record_retry.record(records as f64, now);
        }
        match attempt {
            Attempt::Unchanged => {}
            Attempt::NotSent => {
                Metrics::add(&self.shared.metrics.record_requeue_unsent_total, records)
            }
            Attempt::Lost | Attempt::Refused => {
                if attempt == Attempt::Lost {
                    Metrics::add(&self.shared.metrics.record_resend_unknown_total, records);
                }
                // Only a deduplicating (idempotent) send can be resolved later.
                b.maybe_written = b.ids.base_sequence >= 0;
                b.lost_unresolvable |= b.ids.base_sequence < 0;
            }
            Attempt::NotWritten => b.maybe_written = false,
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, batch = b.id, attempt = b.attempts, records, %reason, "retrying batch");
        if refresh_metadata {
            self.shared.request_metadata_refresh();
        }
        // Back to the head: ready is kept in id order, so the retry goes before any batch
        // created after it.
        let at = self
            .ready
            .iter()
            .position(|o| o.id > b.id)
            .unwrap_or(self.ready.len());
        self.ready.insert(at, b);
    }

    fn after_change(&mut self, ctx: &mut Context<Self>) {
        self.check_flush();
        self.drain(ctx);
    }
}

impl Actor for Accumulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.linger_timer = None;
        self.linger.cancel();
        self.wake_timer = None;
        self.drain(ctx);
    }
}

impl Supervised for Accumulator {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.terminated {
            tracing::warn!(topic = %self.topic, partition = self.partition, "accumulator restarted");
        }
        // Batches and completions live in `self`, which survives; only timers are rebuilt
        // (in `started`). A panic may have taken a batch that a flush waits for.
        self.check_flush();
    }
}

impl Handler<LingerDue> for Accumulator {
    type Result = ();

    fn handle(&mut self, due: LingerDue, ctx: &mut Context<Self>) {
        if self.linger.fired(due.generation) {
            self.drain(ctx);
        }
    }
}

impl Handler<BatchStarted> for Accumulator {
    type Result = ();

    fn handle(&mut self, _: BatchStarted, ctx: &mut Context<Self>) {
        if self.flushing() {
            self.drain(ctx);
        } else {
            self.arm_timers(ctx);
        }
    }
}

impl Handler<BatchFilled> for Accumulator {
    type Result = ();

    fn handle(&mut self, _: BatchFilled, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl Handler<Sealed> for Accumulator {
    type Result = ();

    fn handle(&mut self, msg: Sealed, ctx: &mut Context<Self>) {
        self.on_sealed(msg.batch_id, msg.uncompressed, msg.result);
        self.drain(ctx);
    }
}

impl Handler<BatchCompleted> for Accumulator {
    type Result = ();

    fn handle(&mut self, msg: BatchCompleted, ctx: &mut Context<Self>) {
        self.on_result(msg.batch_id, msg.result, ctx);
    }
}

impl Handler<ClusterChanged> for Accumulator {
    type Result = ();

    fn handle(&mut self, _: ClusterChanged, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl Handler<FlushPartition> for Accumulator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushPartition, ctx: &mut Context<Self>) -> Self::Result {
        let target = sealed_id(self.part.lock().next_id).saturating_sub(1);
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push((target, tx));
        self.check_flush();
        if self.flushing() {
            self.drain(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<PartitionAdded> for Accumulator {
    type Result = ();

    fn handle(&mut self, msg: PartitionAdded, ctx: &mut Context<Self>) {
        let current = self.shared.txn.as_ref().map(|s| s.generation());
        if current != Some(msg.generation) {
            return;
        }
        match msg.result {
            Ok(()) => {
                self.txn_added = Some(msg.generation);
                self.drain(ctx);
            }
            // The transaction cannot commit: its batches here fail with the reason (the
            // router refuses further records until the abort).
            Err(e) => self.fail_unsent(ErrorKind::Transaction(e)),
        }
    }
}

impl Handler<DiscardUnsent> for Accumulator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: DiscardUnsent, _: &mut Context<Self>) -> Self::Result {
        // `txn_added` stays: a batch in flight that comes back to be retried still belongs
        // to this transaction (the next begin changes the generation anyway).
        self.fail_unsent(ErrorKind::Transaction(TransactionError::Aborted));
        // What is left is in flight: resolve once it is answered.
        let target = sealed_id(self.part.lock().next_id).saturating_sub(1);
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push((target, tx));
        self.check_flush();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Abort> for Accumulator {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        let why = self.shared.supervision.broken().cloned();
        self.fail_all(why.unwrap_or(ErrorKind::Aborted));
        self.terminated = true;
        ctx.stop();
    }
}

impl Handler<Shutdown> for Accumulator {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // Anything still here (a record routed after the flush) must not be lost.
        self.fail_all(ErrorKind::Aborted);
        self.terminated = true;
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Accumulator {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        tracing::warn!(topic = %self.topic, partition = self.partition, ?crash, "fault injection");
        let shared = self.shared.clone();
        crash.apply(ActorKind::Accumulator, &shared.victims, ctx);
    }
}
