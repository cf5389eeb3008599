//! The router: the producer's front door. It accepts `Produce` messages, runs them past the
//! interceptors, assigns partitions from the published cluster view, and appends each record
//! straight into its partition's queue.
//!
//! Per record this costs one actix message (the user's) and one uncontended lock: the reply
//! channel actix creates for `send()` is stored in the record's slot (see [`Accept`]), and
//! accumulators are only messaged when a batch starts or fills.
//!
//! The router starts the partitions' accumulators and the interceptor chain, and keeps their
//! typed addresses: its messages to them on the record path need no dynamic dispatch.
//!
//! Order: records from one sender to one partition keep their order. Everything that can make
//! a record wait (unknown topic metadata, exhausted `buffer.memory`) queues it behind the
//! records of its topic that already wait, and a memory stall blocks the whole mailbox (for
//! no longer than a requested close allows: see `CloseSignal`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use herald::batch::{record_size, BatchBuilder, BatchFull, RECORD_BATCH_OVERHEAD};
use herald::partitioner::{PartitionLoad, Partitioner, QueueLoad, TopicPartitions};
use herald::{
    ErrorKind, PartitionInfo, ProduceError, ProducerConfig, ProducerRecord, TransactionError,
};

use crate::accumulator::Accumulator;
use crate::cluster::TopicMeta;
use crate::completion::{
    BatchCollector, BatchTally, Completion, Outcome, RecordSlot, TallyCollector,
};
#[cfg(feature = "fault-injection")]
use crate::fault_injection::{Crash, GetAccumulators};
use crate::intake::{held_size, too_large, Entry as IntakeEntry};
use crate::interceptor::{InterceptorChain, ProducerInterceptor};
use crate::memory::Reservation;
use crate::messages::application::{
    AbortTransaction, BeginTransaction, Close, CommitTransaction, DrainIntake, Expedite, Flush,
    GetMetrics, GetPartitions, InitTransactions, Produce, ProduceBatch, ProduceBatchTally, ReplyTo,
    SendOffsetsToTransaction, TransactionResult,
};
use crate::messages::batching::{Abort, BatchFilled, BatchStarted, DiscardUnsent, FlushPartition};
use crate::messages::cluster::{topic_error, AddTopics, ClusterChanged, ForgetTopics, Subscribe};
use crate::messages::intercept::{Acknowledged, OnSend, Route, RouteLost};
use crate::messages::transaction::EndTransaction;
use crate::messages::{ProducerBroken, Shutdown};
use crate::metrics::Call;
use crate::otel::RecordTrace;
use crate::partition::{OpenBatch, PartitionShared};
use crate::shared::Shared;
use crate::supervisor::{self, ActorKind, Supervisor};

#[derive(Debug)]
struct PartitionHandle {
    part: Arc<PartitionShared>,
    addr: Addr<Accumulator>,
}

#[derive(Debug)]
struct TopicRoute {
    meta: Arc<TopicMeta>,
    partitions: Vec<Option<PartitionHandle>>,
    /// Whether records came since the last idle check, or the topic was forgotten: one
    /// compare on the per-record path, which reads no clock.
    usage: Usage,
    /// The idle check that last found it `Used`.
    last_used: Instant,
    /// A record named a partition beyond `meta`'s count: how many metadata requests had been
    /// sent then (`metadata_requests_sent`). Such records wait for a response to a later
    /// one, as Java's `send` waits for metadata that lists the partition (partitions added
    /// to the topic); past that, the partition is taken not to exist until the topic's
    /// metadata shows more partitions.
    partition_asked: Option<u64>,
}

/// A route's part in `metadata.max.idle.ms` (Java's `retainTopic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usage {
    /// A record came since the last idle check.
    Used,
    /// None came since the last check.
    Unused,
    /// Idle past the limit: left out of metadata requests and the cluster view.
    Forgotten,
    /// A record came for the forgotten topic and asked for it again. Records wait for the
    /// topic's metadata, as Java's `send` waits for a topic it no longer has: routed with the
    /// partitions known before, they would miss partitions added meanwhile.
    Refreshing,
}

impl TopicRoute {
    fn new(meta: Arc<TopicMeta>) -> Self {
        let n = meta.partitions.len();
        TopicRoute {
            meta,
            partitions: (0..n).map(|_| None).collect(),
            usage: Usage::Used,
            last_used: Instant::now(),
            partition_asked: None,
        }
    }
}

/// How often the router looks for topics idle for `metadata.max.idle.ms` (at least 5 s).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A route's partition queues as the partitioner sees them when it draws (adaptive
/// partitioning). Each call locks one queue; the accumulators run on the router's thread, so
/// the lock is not contended, and a sticky partitioner asks only once per batch.
struct RouteLoad<'a> {
    partitions: &'a [Option<PartitionHandle>],
    /// The route's metadata, for each partition's leader.
    meta: &'a TopicMeta,
    batch_size: usize,
    linger: Duration,
}

impl PartitionLoad for RouteLoad<'_> {
    fn load(&self, partition: i32) -> Option<QueueLoad> {
        let handle = self
            .partitions
            .get(usize::try_from(partition).ok()?)?
            .as_ref()?;
        let load = handle
            .part
            .lock()
            .load(self.batch_size, self.linger, Instant::now());
        Some(load)
    }

    fn leader(&self, partition: i32) -> Option<i32> {
        let meta = self.meta.partitions.get(usize::try_from(partition).ok()?)?;
        (meta.leader >= 0).then_some(meta.leader)
    }
}

/// The router's topics. Consecutive records nearly always name the topic of the record
/// before (one topic per producer is the common case), so the route found last is compared
/// first: a length check and a `memcmp`, where hashing the name and probing the table took
/// 3-4% of the console producer's CPU in `perf`. Routes are only added, or all dropped at
/// once, so an index stays valid.
#[derive(Debug, Default)]
struct Routes {
    list: Vec<TopicRoute>,
    /// Topic names are the application's own, hence foldhash.
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// Position in `list` of the route found last.
    last: usize,
}

impl Routes {
    fn get_mut(&mut self, topic: &str) -> Option<&mut TopicRoute> {
        let at = match self.list.get(self.last) {
            Some(r) if *r.meta.name == *topic => self.last,
            _ => {
                let at = *self.index.get(topic)?;
                self.last = at;
                at
            }
        };
        Some(&mut self.list[at])
    }

    fn get(&self, topic: &str) -> Option<&TopicRoute> {
        self.index.get(topic).map(|&at| &self.list[at])
    }

    /// Adds the route of a topic that has none.
    fn insert(&mut self, route: TopicRoute) -> &mut TopicRoute {
        debug_assert!(!self.index.contains_key(&*route.meta.name));
        let at = self.list.len();
        self.index.insert(route.meta.name.clone(), at);
        self.list.push(route);
        self.last = at;
        &mut self.list[at]
    }

    fn iter(&self) -> impl Iterator<Item = &TopicRoute> {
        self.list.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut TopicRoute> {
        self.list.iter_mut()
    }

    fn clear(&mut self) {
        self.list.clear();
        self.index.clear();
        self.last = 0;
    }
}

#[derive(Debug)]
struct Waiting {
    record: ProducerRecord,
    completion: Completion,
    /// Its place in the order records were first parked in (kept when it is parked again):
    /// a flush waits for the records parked before it, not for those that came after.
    seq: u64,
    /// When the record started waiting; stamped only when it has to wait, so the common path
    /// reads no clock for it.
    since: Option<Instant>,
    /// Counts the record against the intake's limit while it waits (the intake refuses
    /// `Producer::send` records past what the batches leave of buffer.memory).
    _parked: Parked,
    /// The partition and timestamp it was routed with, when it waits for memory to go into
    /// that partition's batch. Kept here, not in the record: a record refused after the wait
    /// goes back to its sender as it was sent, to be sent again as a new one.
    routed: Option<(i32, i64)>,
}

/// A record's share of the intake's count of parked bytes while the router holds it parked;
/// given back when the record leaves the queue it waited in, whichever way it leaves.
struct Parked {
    shared: Arc<Shared>,
    bytes: usize,
}

/// The bytes only: the producer's whole shared state would print with every waiting record.
impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Parked {
    fn new(shared: &Arc<Shared>, record: &ProducerRecord) -> Self {
        let bytes = held_size(record);
        shared.intake.park(bytes);
        Parked {
            shared: shared.clone(),
            bytes,
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.shared.intake.unpark(self.bytes);
    }
}

/// A record and its completion where the caller holds them, while the router decides what
/// to do with them (see [`RouterCore::accept`]).
#[derive(Debug)]
struct Held<'a> {
    record: &'a mut ProducerRecord,
    completion: &'a mut Completion,
}

impl Held<'_> {
    /// Takes the record and completion out, to keep them: an empty record (no allocation)
    /// and a completion that answers nowhere are left behind.
    fn take(self) -> (ProducerRecord, Completion) {
        (
            std::mem::replace(self.record, ProducerRecord::new("")),
            std::mem::replace(self.completion, Completion::discard()),
        )
    }

    /// Takes them out to park, waiting since `since` (`None`: not stamped yet; a record that
    /// waits for its topic is stamped in `wait_for_topic`, one that waits for memory is not
    /// timed on its own).
    /// `seq`: the record's place if it was parked before, else the next of `next`.
    fn park(
        self,
        since: Option<Instant>,
        seq: Option<u64>,
        next: &mut u64,
        shared: &Arc<Shared>,
    ) -> Waiting {
        let seq = seq.unwrap_or_else(|| {
            *next += 1;
            *next
        });
        let (record, completion) = self.take();
        Waiting {
            _parked: Parked::new(shared, &record),
            record,
            completion,
            seq,
            since,
            routed: None,
        }
    }
}

/// A flush waiting for the records accepted before it (see
/// `RouterCore::maybe_run_deferred_flushes`).
#[derive(Debug)]
struct DeferredFlush {
    tx: OneshotSender<()>,
    /// `intercept_sent` when it was asked.
    intercepted: u64,
    /// Once the records it waits for are back from the interceptors: `park_seq` then. The
    /// records parked up to there are waited for.
    parked: Option<u64>,
}

/// Router state, behind `Rc<RefCell<_>>` so that [`Accept`] can reach it after the handler
/// returned (actix hands out the reply channel only then). The actor is single-threaded and
/// handlers never nest, so the borrow never conflicts.
#[derive(Debug)]
struct RouterCore {
    shared: Arc<Shared>,
    partitioner: Box<dyn Partitioner>,
    /// The interceptor chain this router started, if interceptors are configured.
    interceptors: Option<Addr<InterceptorChain<Router>>>,
    /// Looked up per record.
    routes: Routes,
    /// Records whose topic has no metadata yet, per topic, in arrival order.
    waiting: HashMap<Arc<str>, VecDeque<Waiting>>,
    /// Records held while `buffer.memory` is exhausted; the head is the one waiting.
    stalled: VecDeque<Waiting>,
    stall_active: bool,
    /// When the current buffer.memory stall began (for `bufferpool-wait-time-ns-total`).
    stall_since: Option<Instant>,
    deferred_flushes: Vec<DeferredFlush>,
    /// The last `Waiting::seq` given out.
    park_seq: u64,
    /// `close` was called: new records are refused. Records already in the interceptors
    /// were sent before it and are still taken, as the close flushes them.
    closed: bool,
    /// The first close's outcome, once known, for later ones.
    close_outcome: Option<tokio::sync::watch::Receiver<Option<bool>>>,
    /// The close has flushed what it could (or gave up): nothing is taken any more, not even
    /// a record coming back from the interceptors late, since the accumulators are shut.
    shut: bool,
    metadata_timer: Option<(Instant, SpawnHandle)>,
    /// The intake's second buffer (see the `DrainIntake` handler).
    intake_spare: Vec<IntakeEntry>,
    /// Transactional producers: a transaction is open and records are taken. Set when the
    /// transaction manager confirmed a begin, cleared the moment a commit or abort arrives,
    /// so a record sent after either is refused rather than slipping into the transaction.
    in_txn: bool,
    /// A commit (`Some(true)`) or abort (`Some(false)`) is under way: records of the
    /// transaction that come back from the interceptors still join it while it commits,
    /// and fail as aborted while it aborts.
    txn_ending: Option<bool>,
    /// Records handed to the interceptor chain so far, and those back from it (`Route`, or
    /// `RouteLost` for one it lost). The chain answers in the order it was handed them, so a
    /// flush asked when `intercept_sent` was n waits for `intercept_back` to reach n.
    intercept_sent: u64,
    intercept_back: u64,
    /// The wall clock, read once for the records of one `ProduceBatch` or intake drain that
    /// have no timestamp of their own: a clock read per record was 5% of the router's time
    /// in the ProduceBatch benchmark. Set only while such a message is routed.
    stamp: Option<i64>,
}

/// The router actor: the producer's front door. Send it [`Produce`], [`ProduceBatch`],
/// [`Flush`], [`Close`] and [`GetMetrics`] (its address is [`Producer::router`](crate::Producer::router)).
#[derive(Debug)]
pub struct Router {
    core: Rc<RefCell<RouterCore>>,
}

impl Router {
    /// How many messages the router's mailbox holds before `send()` callers wait. Large,
    /// because actix's path for a full mailbox is slow and orders messages by poll instead of
    /// by call; memory is still bounded by buffer.memory, because a memory stall stops the
    /// router from taking messages, and the messages it holds are the callers' records
    /// either way. Keep the `send()`s an application has outstanding below it.
    pub const MAILBOX_CAPACITY: usize = 1 << 16;

    /// A router for a producer's shared state, in the context it will run in; starts the
    /// interceptor chain when there are interceptors.
    pub(crate) fn new(
        shared: Arc<Shared>,
        partitioner: Box<dyn Partitioner>,
        interceptors: Vec<Box<dyn ProducerInterceptor>>,
        ctx: &mut Context<Router>,
    ) -> Self {
        let interceptors = (!interceptors.is_empty()).then(|| {
            let (router, s) = (ctx.address(), shared.clone());
            let chain = Supervisor::start(
                ActorKind::Interceptors,
                shared.supervision.clone(),
                move |_| InterceptorChain::new(interceptors, router, s),
            );
            let _ = shared
                .supervision
                .interceptors
                .set(chain.downgrade().recipient());
            #[cfg(feature = "fault-injection")]
            let _ = shared.victims.interceptors.set(chain.clone().recipient());
            chain
        });
        Router {
            core: Rc::new(RefCell::new(RouterCore {
                shared,
                partitioner,
                interceptors,
                routes: Routes::default(),
                waiting: HashMap::new(),
                stalled: VecDeque::new(),
                stall_active: false,
                stall_since: None,
                deferred_flushes: Vec::new(),
                park_seq: 0,
                closed: false,
                close_outcome: None,
                shut: false,
                metadata_timer: None,
                intake_spare: Vec::new(),
                in_txn: false,
                txn_ending: None,
                intercept_sent: 0,
                intercept_back: 0,
                stamp: None,
            })),
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a wait for buffer.memory ended.
#[derive(Debug)]
enum Unstalled {
    /// The bytes the record waited for are reserved for it.
    Reserved(Reservation),
    /// max.block.ms passed.
    TimedOut,
    /// The time `Producer::close` gave is up.
    Closing,
    /// `Producer::abort_transaction` was called: the record is one the abort fails.
    Aborting,
}

/// What [`append`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appended {
    /// The record is in its partition's queue.
    Added {
        /// The record's size in the batch.
        bytes: usize,
        /// The batch it went into is full after it, so the partition has no batch that takes
        /// more (what the partitioner's `on_append` calls `batch_full`).
        batch_full: bool,
    },
    /// The partition needs a new batch and buffer.memory has no room for `need` bytes; the
    /// record was not taken.
    NeedMemory { need: usize },
}

impl RouterCore {
    /// Refuses a record that has been through the interceptors' `on_send`, if there are
    /// interceptors: every refusal but the few `accept` makes before the chain.
    fn refuse(&self, kind: ErrorKind, record: ProducerRecord, completion: Completion) {
        self.refuse_seen(kind, record, completion, self.interceptors.is_some());
    }

    /// `seen`: the interceptors' `on_send` saw the record, so their `on_acknowledgement`
    /// sees its failure too (Java's `onSendError`): every record `on_send` saw gets exactly
    /// one acknowledgement.
    fn refuse_seen(
        &self,
        kind: ErrorKind,
        record: ProducerRecord,
        completion: Completion,
        seen: bool,
    ) {
        let buffer_full = matches!(kind, ErrorKind::BufferExhausted { .. });
        self.shared.metrics.refused(buffer_full);
        // While a commit flushes, `in_txn` is already false but the records still parked
        // (waiting for metadata or memory) or in the interceptors belong to the transaction
        // being committed: losing one of them must fail the commit too.
        let open = self.in_txn || self.txn_ending == Some(true);
        if let (Some(status), true) = (&self.shared.txn, open) {
            // A record of the open transaction is lost to it: the transaction cannot commit
            // (Java's `maybeTransitionToErrorState`).
            if !matches!(kind, ErrorKind::Transaction(_)) {
                let why = format!("a record of the transaction was refused: {kind}");
                status.fail(TransactionError::Abortable(Arc::from(why)));
            }
        }
        let outcome: Outcome = Err(ProduceError::refused(kind, record));
        if let (true, Some(chain)) = (seen, &self.interceptors) {
            chain.do_send(Acknowledged {
                outcomes: vec![outcome.clone()],
            });
        }
        completion.complete(outcome);
    }

    /// Publishes how many records wait for metadata and for memory. Called where those queues
    /// change, which a record on the common path never does.
    fn note_waiting(&self) {
        let m = &self.shared.metrics;
        let metadata = self.waiting.values().map(VecDeque::len).sum();
        m.records_waiting_metadata.store(metadata, Relaxed);
        m.records_waiting_memory.store(self.stalled.len(), Relaxed);
        m.router_stalled.store(self.stall_active, Relaxed);
    }

    /// Entry point of every record.
    /// `intercepted`: the record comes back from the interceptors, taken into transaction
    /// `txn` when it was sent (`None` without `transactional.id`).
    ///
    /// The record and its completion are borrowed from where the caller holds them (a
    /// `ProduceBatch`'s vector, the intake's buffer) and taken out (see [`Held::take`]) only
    /// where they are kept: refused, handed to the interceptors, or parked. A record that is
    /// appended at once, nearly every one, is read where it lies: moved by value through
    /// accept and route it was copied four times, as many bytes as the record's own on the
    /// console producer's run.
    fn accept(
        &mut self,
        held: Held<'_>,
        intercepted: Option<Option<u64>>,
        ctx: &mut Context<Router>,
    ) {
        // Refusals before the chain: the interceptors saw the record only if it is back
        // from them.
        let seen = intercepted.is_some();
        if self.shut || (self.closed && !seen) {
            return self.refuse_held_seen(ErrorKind::Closed, held, seen);
        }
        if let Some(why) = self.shared.supervision.broken() {
            return self.refuse_held_seen(why.clone(), held, seen);
        }
        // What Java's `ProducerRecord` cannot even be built with: the caller's mistake, not a
        // send, so neither the interceptors nor an open transaction hear of it.
        if !seen {
            if let Some(kind) = malformed(held.record) {
                self.shared.metrics.refused(false);
                let (record, completion) = held.take();
                return completion.complete(Err(ProduceError::refused(kind, record)));
            }
        }
        #[cfg(feature = "fault-injection")]
        self.shared.victims.trip(ActorKind::Router);
        let txn = match self.transaction_of(intercepted) {
            Ok(txn) => txn,
            Err(e) => return self.refuse_held_seen(ErrorKind::Transaction(e), held, seen),
        };
        if intercepted.is_none() {
            if let Some(chain) = &self.interceptors {
                self.intercept_sent += 1;
                let (record, completion) = held.take();
                chain.do_send(OnSend {
                    record,
                    completion,
                    txn,
                });
                return;
            }
        }
        let config = &self.shared.config;
        let record = &*held.record;
        // Checked above for a record the interceptors did not see; one they passed on may
        // have been made so by them, a send that went wrong (refused as any other).
        if let Some(kind) = seen.then(|| malformed(record)).flatten() {
            return self.refuse_held(kind, held);
        }
        if let Some(kind) = too_large(record, config.max_request_size, config.buffer_memory) {
            return self.refuse_held(kind, held);
        }
        self.take_in(held, ctx)
    }

    fn refuse_held(&self, kind: ErrorKind, held: Held<'_>) {
        let (record, completion) = held.take();
        self.refuse(kind, record, completion);
    }

    fn refuse_held_seen(&self, kind: ErrorKind, held: Held<'_>, seen: bool) {
        let (record, completion) = held.take();
        self.refuse_seen(kind, record, completion, seen);
    }

    /// Routes an accepted record now, or queues it behind the records that wait.
    fn take_in(&mut self, held: Held<'_>, ctx: &mut Context<Router>) {
        if !self.stalled.is_empty() {
            // Stamped: its own max.block.ms runs from here (see `stall`).
            let w = held.park(Some(Instant::now()), None, &mut self.park_seq, &self.shared);
            self.stalled.push_back(w);
            self.note_waiting();
            return;
        }
        if !self.waiting.is_empty() {
            if let Some(q) = self.waiting.get_mut(held.record.topic.as_ref()) {
                q.push_back(held.park(
                    Some(Instant::now()),
                    None,
                    &mut self.park_seq,
                    &self.shared,
                ));
                self.note_waiting();
                return;
            }
        }
        self.route(held, None, None, ctx);
    }

    /// Routes a parked record whose turn it is.
    fn route_waiting(&mut self, mut w: Waiting, ctx: &mut Context<Router>) {
        // The close gave up and stopped the accumulators: a record it held back (for
        // metadata that came, or memory its aborts freed) would start a partition nobody
        // stops, and outlive the close.
        if self.shut {
            return self.refuse(ErrorKind::Aborted, w.record, w.completion);
        }
        let held = Held {
            record: &mut w.record,
            completion: &mut w.completion,
        };
        self.route(held, w.since, Some(w.seq), ctx);
    }

    /// Routes one record whose turn it is (waiting `since` then, if it waited). Parks it if
    /// its topic or memory is not there yet.
    fn route(
        &mut self,
        held: Held<'_>,
        since: Option<Instant>,
        seq: Option<u64>,
        ctx: &mut Context<Router>,
    ) {
        let topic_name = held.record.topic.as_ref();
        // One hash lookup per record on the common path.
        let route = match self.routes.get_mut(topic_name) {
            Some(route) => route,
            None => {
                if let Err(reason) = herald::record::validate_topic(topic_name) {
                    let kind = ErrorKind::InvalidTopic {
                        topic: Arc::from(topic_name),
                        reason,
                    };
                    return self.refuse_held(kind, held);
                }
                let known = self
                    .shared
                    .cluster
                    .topics
                    .get(topic_name)
                    .map(|m| m.value().clone());
                match known {
                    Some(meta) if !meta.partitions.is_empty() => {
                        self.routes.insert(TopicRoute::new(meta))
                    }
                    _ => {
                        let w = held.park(since, seq, &mut self.park_seq, &self.shared);
                        return self.wait_for_topic(w, ctx);
                    }
                }
            }
        };
        match route.usage {
            Usage::Used => {}
            Usage::Unused => route.usage = Usage::Used,
            Usage::Forgotten | Usage::Refreshing => {
                // Metadata left the topic out as idle: wait for it (`wait_for_topic` asks
                // for it) and route with the partitions it has then.
                route.usage = Usage::Refreshing;
                let w = held.park(since, seq, &mut self.park_seq, &self.shared);
                return self.wait_for_topic(w, ctx);
            }
        }
        let count = route.meta.partitions.len() as i32;
        let out_of_range = |meta: &TopicMeta, partition| ErrorKind::PartitionOutOfRange {
            topic: meta.name.clone(),
            partition,
            partitions: count,
        };
        let partition = match held.record.partition {
            Some(p) if p < 0 || p >= count => {
                // Partitions may have been added since the metadata the route has: ask, and
                // wait for the next response (records of the topic queue behind this one,
                // as behind Java's blocked `send`). One response that still lacks it and the
                // partition is taken not to exist.
                if p >= 0 {
                    let m = &self.shared.metrics;
                    let responses = m.metadata_refresh_total.load(Relaxed);
                    // Requests sent so far: the response that decides is one to a request
                    // sent after this, not one already on its way when the record came.
                    let sent = m.metadata_requests_sent.load(Relaxed);
                    let asked = *route.partition_asked.get_or_insert(sent);
                    self.shared.request_metadata_refresh();
                    if responses <= asked {
                        let w = held.park(since, seq, &mut self.park_seq, &self.shared);
                        return self.wait_for_topic(w, ctx);
                    }
                    // Refused at once (see above), the refresh asked for all the same: a
                    // partition added to the topic later is then found by the next record,
                    // rather than after metadata.max.age.ms.
                }
                let kind = out_of_range(&route.meta, p);
                return self.refuse_held(kind, held);
            }
            Some(p) => p,
            None => {
                let partitioner = &mut self.partitioner;
                let record = &*held.record;
                let (available, local) = (&route.meta.available, &route.meta.local);
                let load = RouteLoad {
                    partitions: &route.partitions,
                    meta: &route.meta,
                    batch_size: self.shared.config.batch_size,
                    linger: self.shared.config.linger,
                };
                // Application code: a panic there fails this record (as an exception from
                // Java's partitioner fails its send), and the router goes on.
                match catch_unwind(AssertUnwindSafe(|| {
                    partitioner.partition_with_load(
                        topic_name,
                        record.key.as_deref(),
                        record.value.as_deref(),
                        &TopicPartitions {
                            count,
                            available,
                            local,
                        },
                        &load,
                    )
                })) {
                    Ok(p) => p,
                    Err(payload) => {
                        let kind = ErrorKind::Panicked {
                            place: "partitioner",
                            message: supervisor::panic_message(payload.as_ref()),
                        };
                        tracing::error!(error = %kind, "partitioner panicked; record refused");
                        return self.refuse_held(kind, held);
                    }
                }
            }
        };
        if !(0..count).contains(&partition) {
            // A custom partitioner's mistake: failed, not moved to another partition, so the
            // record never lands where the application's rule did not put it (Java refuses a
            // negative one outright and never redirects any).
            let kind = out_of_range(&route.meta, partition);
            tracing::error!(error = %kind, "the partitioner chose a partition the topic does not have; record refused");
            return self.refuse_held(kind, held);
        }
        let slot = &mut route.partitions[partition as usize];
        let handle = slot.get_or_insert_with(|| {
            start_accumulator(
                &self.shared,
                self.interceptors.as_ref(),
                route.meta.name.clone(),
                partition,
            )
        });
        let stamp = self.stamp;
        let timestamp = held
            .record
            .timestamp
            .unwrap_or_else(|| stamp.unwrap_or_else(now_millis));
        match append(
            &self.shared,
            handle,
            held.record,
            timestamp,
            held.completion,
            None,
        ) {
            Appended::Added { bytes, batch_full } => {
                self.partitioner
                    .on_append(topic_name, partition, bytes, batch_full);
            }
            Appended::NeedMemory { need } => {
                let since = Some(since.unwrap_or_else(Instant::now));
                let mut w = held.park(since, seq, &mut self.park_seq, &self.shared);
                w.routed = Some((partition, timestamp));
                self.stalled.push_front(w);
                self.stall(need, ctx);
                self.note_waiting();
            }
        }
    }

    fn wait_for_topic(&mut self, mut w: Waiting, ctx: &mut Context<Router>) {
        w.since.get_or_insert_with(Instant::now);
        let topic: Arc<str> = Arc::from(w.record.topic.as_ref());
        let q = self.waiting.entry(topic.clone()).or_default();
        q.push_back(w);
        if q.len() == 1 {
            tracing::debug!(%topic, "waiting for topic metadata");
            if let Some(m) = self.shared.metadata.get() {
                m.add_topics.do_send(AddTopics(vec![topic]));
            }
        }
        self.note_waiting();
        self.arm_metadata_timer(ctx);
    }

    /// Java's `metadata.max.idle.ms`: a topic nothing was produced to for that long is left
    /// out of metadata requests, so a producer that wrote to many topics once does not fetch
    /// them all for ever.
    ///
    /// `Producer::partitions_for` counts as use, as Java's `partitionsFor` does: a route
    /// asked about lately stays, and a topic only asked about (no route, or its route
    /// forgotten before the question brought it back) is forgotten once the question is
    /// that old.
    fn forget_idle_topics(&mut self) {
        let idle = self.shared.config.metadata_max_idle;
        let now = Instant::now();
        let cluster = &self.shared.cluster;
        let mut idle_topics: Vec<Arc<str>> = match now.checked_sub(idle) {
            Some(before) => cluster.take_looked_up_before(before),
            None => Vec::new(),
        };
        idle_topics.retain(|t| {
            self.routes
                .get(t)
                .is_none_or(|r| r.usage == Usage::Forgotten)
        });
        for route in self.routes.iter_mut() {
            match route.usage {
                Usage::Used => {
                    route.usage = Usage::Unused;
                    route.last_used = now;
                }
                Usage::Unused if now.duration_since(route.last_used) >= idle => {
                    match cluster.last_looked_up(&route.meta.name) {
                        Some(at) => route.last_used = route.last_used.max(at),
                        None => {
                            route.usage = Usage::Forgotten;
                            idle_topics.push(route.meta.name.clone());
                        }
                    }
                }
                Usage::Unused | Usage::Forgotten | Usage::Refreshing => {}
            }
        }
        if idle_topics.is_empty() {
            return;
        }
        if let Some(m) = self.shared.metadata.get() {
            m.forget_topics.do_send(ForgetTopics(idle_topics));
        }
    }

    /// One timer for all waiting topics: fires when the oldest waiting record reaches
    /// max.block.ms.
    fn arm_metadata_timer(&mut self, ctx: &mut Context<Router>) {
        let max_block = self.shared.config.max_block;
        let oldest = self
            .waiting
            .values()
            .filter_map(|q| q.front())
            .filter_map(|w| w.since)
            .min();
        let Some(oldest) = oldest else { return };
        let due = oldest + max_block;
        if self
            .metadata_timer
            .as_ref()
            .is_some_and(|(at, _)| *at <= due)
        {
            return;
        }
        if let Some((_, h)) = self.metadata_timer.take() {
            ctx.cancel_future(h);
        }
        let wait = due.saturating_duration_since(Instant::now());
        let h = ctx.run_later(wait, |act, ctx| {
            let mut core = act.core.borrow_mut();
            core.metadata_timer = None;
            core.expire_waiting(ctx);
        });
        self.metadata_timer = Some((due, h));
    }

    fn expire_waiting(&mut self, ctx: &mut Context<Router>) {
        let max_block = self.shared.config.max_block;
        let now = Instant::now();
        let mut failed = Vec::new();
        for (topic, q) in self.waiting.iter_mut() {
            while q
                .front()
                .is_some_and(|w| w.since.is_none_or(|t| now.duration_since(t) >= max_block))
            {
                failed.push((topic.clone(), q.pop_front().expect("front exists")));
            }
        }
        self.waiting.retain(|_, q| !q.is_empty());
        self.note_waiting();
        // The metadata actor stops asking for a missing topic max.block.ms after it was last
        // asked to (its `requested`); a record queued behind the one that just expired has
        // waited less, and would otherwise wait out its time with nobody asking. Java's
        // `send` asks again for every record.
        let renew: Vec<Arc<str>> = self
            .waiting
            .keys()
            .filter(|t| failed.iter().any(|(f, _)| f == *t))
            .cloned()
            .collect();
        if let (false, Some(m)) = (renew.is_empty(), self.shared.metadata.get()) {
            m.add_topics.do_send(AddTopics(renew));
        }
        for (topic, w) in failed {
            let kind = ErrorKind::MetadataTimeout {
                cause: self.shared.cluster.metadata_cause(&topic),
                topic,
                waited_ms: max_block.as_millis() as u64,
            };
            self.refuse(kind, w.record, w.completion);
        }
        self.arm_metadata_timer(ctx);
        self.maybe_run_deferred_flushes();
    }

    /// Blocks the mailbox until `need` bytes of buffer.memory are free, max.block.ms passes,
    /// or the time of a requested close is up.
    fn stall(&mut self, need: usize, ctx: &mut Context<Router>) {
        if self.stall_active {
            return;
        }
        self.stall_active = true;
        self.stall_since = Some(Instant::now());
        let shared = self.shared.clone();
        // max.block.ms from when the record in front began to wait (for metadata, or behind
        // an earlier stall), as Java's `send` blocks at most that long from its call: a
        // stall per record, each of a whole max.block.ms, would keep the n-th record waiting
        // n times that.
        let waited = self
            .stalled
            .front()
            .and_then(|w| w.since)
            .map_or(Duration::ZERO, |since| since.elapsed());
        let max_block = self.shared.config.max_block.saturating_sub(waited);
        tracing::debug!(need, "buffer.memory exhausted, blocking");
        self.expedite();
        let fut = async move {
            tokio::select! {
                biased;
                ok = shared.memory.reserve(need, max_block) => {
                    if ok {
                        Unstalled::Reserved(Reservation::new(&shared.memory, need))
                    } else {
                        Unstalled::TimedOut
                    }
                }
                () = shared.close.passed() => Unstalled::Closing,
                () = shared.abort.requested() => Unstalled::Aborting,
            }
        };
        ctx.wait(
            actix::fut::wrap_future::<_, Router>(fut).map(move |why, act, ctx| {
                let core = act.core.clone();
                core.borrow_mut().unstall(why, ctx);
            }),
        );
    }

    fn unstall(&mut self, why: Unstalled, ctx: &mut Context<Router>) {
        self.stall_active = false;
        if let Some(since) = self.stall_since.take() {
            let m = &self.shared.metrics;
            let waited = since.elapsed().as_nanos() as f64;
            m.sensors.bufferpool_wait.record(waited, m.now_ms());
        }
        // Memory reserved for nobody goes back as `why` is dropped.
        let Some(mut w) = self.stalled.pop_front() else {
            return;
        };
        match why {
            Unstalled::TimedOut => {
                let max_block = self.shared.config.max_block;
                let kind = ErrorKind::BufferExhausted {
                    waited_ms: max_block.as_millis() as u64,
                };
                self.refuse(kind.clone(), w.record, w.completion);
                // Those behind it that have waited as long fail with it, in order (they
                // queued later, so they are the front of the queue).
                while self
                    .stalled
                    .front()
                    .is_some_and(|n| n.since.is_some_and(|s| s.elapsed() >= max_block))
                {
                    let next = self.stalled.pop_front().expect("looked at above");
                    self.refuse(kind.clone(), next.record, next.completion);
                }
            }
            // Java's closed buffer pool fails the send blocked in it the same way.
            Unstalled::Closing => self.refuse(ErrorKind::Closed, w.record, w.completion),
            Unstalled::Aborting => {
                let kind = ErrorKind::Transaction(TransactionError::Aborted);
                self.refuse(kind, w.record, w.completion);
            }
            Unstalled::Reserved(reserved) => {
                let topic_name = w.record.topic.as_ref();
                // The stall's front record is the one that asked for the memory, routed;
                // after a router restart (`started` stalls again on whatever is in front)
                // it may be one that queued behind it, never routed: it goes as those
                // behind it go (below), through the partitioner, not into a partition
                // guessed here. After a close gave up, every record goes that way, to be
                // refused (`route_waiting`).
                let Some((partition, ts)) = w.routed.filter(|_| !self.shut) else {
                    drop(reserved);
                    self.stalled.push_front(w);
                    return self.drain_stalled(ctx);
                };
                let handle = self
                    .routes
                    .get(topic_name)
                    .and_then(|r| r.partitions.get(partition as usize))
                    .and_then(|p| p.as_ref());
                match handle {
                    Some(h) => {
                        // The record and the memory it waited for are on the stack here.
                        #[cfg(feature = "fault-injection")]
                        self.shared.victims.trip(ActorKind::Router);
                        let appended = append(
                            &self.shared,
                            h,
                            &w.record,
                            ts,
                            &mut w.completion,
                            Some(reserved),
                        );
                        // With memory reserved, a record is always taken.
                        if let Appended::Added { bytes, batch_full } = appended {
                            self.partitioner
                                .on_append(topic_name, partition, bytes, batch_full);
                        }
                    }
                    None => {
                        drop(reserved);
                        self.route_waiting(w, ctx);
                    }
                }
            }
        }
        self.drain_stalled(ctx);
    }

    /// Routes what queued behind a stall that ended, in order, until one stalls again.
    fn drain_stalled(&mut self, ctx: &mut Context<Router>) {
        while !self.stall_active {
            let Some(mut next) = self.stalled.pop_front() else {
                break;
            };
            // Its topic's earlier records still wait for metadata (which may have reached
            // the cluster view during the stall, its `ClusterChanged` held behind the
            // stall): it queues behind them rather than passing them.
            if let Some(q) = self.waiting.get_mut(next.record.topic.as_ref()) {
                next.since.get_or_insert_with(Instant::now);
                q.push_back(next);
                continue;
            }
            self.route_waiting(next, ctx);
        }
        if !self.stall_active {
            self.release_waiting(ctx);
            self.maybe_run_deferred_flushes();
        }
        self.note_waiting();
    }

    /// Routes the records of topics whose metadata has arrived, and fails those of topics
    /// that failed for good.
    fn on_cluster_changed(&mut self, note: &ClusterChanged, ctx: &mut Context<Router>) {
        if let Some(why) = &note.authentication {
            for w in std::mem::take(&mut self.waiting).into_values().flatten() {
                self.refuse(
                    ErrorKind::Authentication(why.clone()),
                    w.record,
                    w.completion,
                );
            }
        }
        for (topic, code) in note.errors.iter() {
            if let Some(q) = self.waiting.remove(topic) {
                for w in q {
                    self.refuse(topic_error(topic, *code), w.record, w.completion);
                }
            }
        }
        // Partition counts can grow; new partitions get accumulators on first use.
        for route in self.routes.iter_mut() {
            if let Some(meta) = self.shared.cluster.topics.get(route.meta.name.as_ref()) {
                let newer = !Arc::ptr_eq(&route.meta, meta.value());
                if newer {
                    route.meta = meta.value().clone();
                    if route.meta.partitions.len() > route.partitions.len() {
                        // New partitions: a record beyond them asks again.
                        route.partition_asked = None;
                    }
                    let n = route.meta.partitions.len();
                    if n > route.partitions.len() {
                        route.partitions.resize_with(n, || None);
                    }
                }
                // A forgotten topic's metadata is back: newer than what the route had, or
                // listed by a response that came after the record that asked for it (an
                // unchanged topic keeps its entry, and the view may have taken that entry
                // back while the route was forgotten, from a question about the topic or a
                // response already on its way). Its waiting records go below.
                if route.usage == Usage::Refreshing
                    && (newer || note.listed.contains(&route.meta.name))
                {
                    route.usage = Usage::Used;
                }
            }
        }
        if !self.stall_active {
            self.release_waiting(ctx);
        }
        self.note_waiting();
        self.maybe_run_deferred_flushes();
    }

    fn release_waiting(&mut self, ctx: &mut Context<Router>) {
        let ready: Vec<Arc<str>> = self
            .waiting
            .keys()
            .filter(|t| {
                // A forgotten topic's records wait for metadata newer than its route's
                // (the view may still hold the old until the metadata actor forgets it).
                self.shared
                    .cluster
                    .topics
                    .get(t.as_ref())
                    .is_some_and(|m| !m.partitions.is_empty())
                    && self
                        .routes
                        .get(t)
                        .is_none_or(|r| r.usage != Usage::Refreshing)
            })
            .cloned()
            .collect();
        for topic in ready {
            let Some(q) = self.waiting.remove(&topic) else {
                continue;
            };
            let mut q = q.into_iter();
            while let Some(w) = q.next() {
                if self.stall_active {
                    // Keep order: the rest waits behind the stalled record.
                    self.stalled.push_back(w);
                    self.stalled.extend(q.by_ref());
                    break;
                }
                self.route_waiting(w, ctx);
            }
        }
    }

    /// A flush (or a commit's, or a close's) that waits for the records accepted before it to
    /// leave the interceptors and the router's queues.
    fn defer_flush(&mut self, tx: OneshotSender<()>) {
        self.deferred_flushes.push(DeferredFlush {
            tx,
            intercepted: self.intercept_sent,
            parked: None,
        });
        self.maybe_run_deferred_flushes();
    }

    /// Runs the deferred flushes whose records are all routed: those handed to the
    /// interceptors before the flush are back (they come back in order), and those parked
    /// (for metadata or memory) before them have left. Records sent after a flush do not
    /// hold it, as Java's flush waits only for what was sent before it: with records
    /// streaming to a topic that has no metadata yet, or through the interceptors, a flush
    /// would otherwise wait as long as the stream lasts.
    fn maybe_run_deferred_flushes(&mut self) {
        if self.deferred_flushes.is_empty() {
            return;
        }
        // Records with a chain that broke were dropped with its mailbox and answered by its
        // supervisor (`Broken`), not handed back: once the producer is broken none of them
        // can come, and waiting for them would hold every flush for ever.
        let broken = self.shared.supervision.broken().is_some();
        let back = self.intercept_back;
        let park_seq = self.park_seq;
        // Parked records in each topic's queue are in `seq` order; the stalled ones need not
        // be (a record that asked for memory goes to the front).
        let oldest = self
            .waiting
            .values()
            .filter_map(|q| q.front().map(|w| w.seq))
            .chain(self.stalled.iter().map(|w| w.seq))
            .min();
        let mut due = Vec::new();
        for mut f in std::mem::take(&mut self.deferred_flushes) {
            if f.parked.is_none() && (broken || back >= f.intercepted) {
                // Every record before the flush is parked or routed now; what is parked
                // from here on came after it.
                f.parked = Some(park_seq);
            }
            match f.parked {
                Some(before) if oldest.is_none_or(|o| o > before) => due.push(f.tx),
                _ => self.deferred_flushes.push(f),
            }
        }
        if due.is_empty() {
            return;
        }
        let flush = self.flush_all();
        actix::spawn(async move {
            flush.await;
            for tx in due {
                let _ = tx.send(());
            }
        });
    }

    /// Sends every batch that lingers now (see [`Expedite`]): each accumulator flushes what it
    /// holds, and nobody waits for the answer.
    fn expedite(&self) {
        for addr in self.accumulators() {
            addr.do_send(FlushPartition);
        }
    }

    /// A future that resolves when every accumulator has flushed what it holds now.
    fn flush_all(&self) -> impl std::future::Future<Output = ()> + 'static {
        let requests: Vec<_> = self
            .routes
            .iter()
            .flat_map(|r| r.partitions.iter().flatten())
            .map(|h| h.addr.send(FlushPartition))
            .collect();
        async move {
            futures_util::future::join_all(requests).await;
        }
    }

    fn accumulators(&self) -> Vec<Addr<Accumulator>> {
        self.routes
            .iter()
            .flat_map(|r| r.partitions.iter().flatten())
            .map(|h| h.addr.clone())
            .collect()
    }

    fn fail_parked(&mut self, kind: ErrorKind) {
        let parked: Vec<Waiting> = self
            .stalled
            .drain(..)
            .chain(self.waiting.drain().flat_map(|(_, q)| q))
            .collect();
        for w in parked {
            self.refuse(kind.clone(), w.record, w.completion);
        }
        self.note_waiting();
    }
}

/// What is wrong with a record's own fields, as Java's `ProducerRecord` constructor checks
/// them: a negative timestamp or partition.
#[inline(always)]
fn malformed(record: &ProducerRecord) -> Option<ErrorKind> {
    if let Some(timestamp) = record.timestamp.filter(|t| *t < 0) {
        return Some(ErrorKind::InvalidTimestamp { timestamp });
    }
    let partition = record.partition.filter(|p| *p < 0)?;
    Some(ErrorKind::InvalidPartition { partition })
}

/// What a partition's batch may grow to while the partition waits. Batches grow only with
/// one batch per partition in flight; with more, Java's pipelining carries a slow link's
/// load, in batches of batch.size. Grown, a batch that does not compress must still fit
/// max.request.size compressed (see `Compression::fit_within`), or the broker refuses it
/// and it is split.
fn growth_cap(config: &ProducerConfig) -> usize {
    if config.partition_in_flight() > 1 {
        config.batch_size
    } else {
        let cap = config.compression.fit_within(config.max_request_size);
        cap.max(config.batch_size)
    }
}

fn start_accumulator(
    shared: &Arc<Shared>,
    interceptors: Option<&Addr<InterceptorChain<Router>>>,
    topic: Arc<str>,
    partition: i32,
) -> PartitionHandle {
    let part = Arc::new(PartitionShared::new(growth_cap(&shared.config)));
    let shared_for_actor = shared.clone();
    let p = part.clone();
    let acknowledged = interceptors.map(|c| c.clone().recipient::<Acknowledged>());
    // Accumulators stay on the router's arbiter: they complete records, and a completion
    // across threads costs a cross-thread wake per record (measured: send() 0.85x -> 0.51x
    // of rdkafka's FutureProducer when accumulators ran on the I/O arbiter).
    let addr = Supervisor::start(
        ActorKind::Accumulator,
        shared.supervision.clone(),
        move |_| Accumulator::new(topic, partition, shared_for_actor, p, acknowledged),
    );
    if let Some(m) = shared.metadata.get() {
        m.subscribe.do_send(Subscribe(addr.clone().recipient()));
    }
    PartitionHandle { part, addr }
}

/// Makes room in a batch's buffer and slots for it to grow to `grow_to` bytes of records of
/// about `record_size` bytes, at once, so neither is copied as it grows.
fn room_to_grow(
    builder: &mut BatchBuilder,
    records: &mut Vec<RecordSlot>,
    grow_to: usize,
    record_size: usize,
) {
    builder.reserve_capacity(grow_to);
    records.reserve((grow_to / record_size.max(1)).min(1 << 16));
}

/// Raises the open batch's limit by a `batch.size` step (at most to `grow_to`) so that a
/// record of `record_size` bytes fits, with the step's memory: `reserved` if the caller holds
/// it, else reserved now. The bytes reserved, or `None` when the batch may not grow (the
/// partition can send, the batch is at `grow_to`, or the memory is not free).
fn grow(
    shared: &Shared,
    open: &mut OpenBatch,
    grow_to: usize,
    record_size: usize,
    reserved: Option<usize>,
) -> Option<usize> {
    let limit = open.builder.limit();
    let step = shared.config.batch_size.max(record_size);
    let new_limit = (limit + step).min(grow_to);
    if new_limit < open.builder.size_in_bytes() + record_size {
        return None;
    }
    let batch_size = shared.config.batch_size;
    if limit == batch_size {
        // The first step: move into a grown batch's buffer if one is kept, and make room
        // for what the batch may grow to at once, rather than copying the buffer each time
        // it doubles (see `BatchBuilder::reserve_capacity`). Moving copies the batch so far
        // to spare the fresh pages it would grow into: worth it only when those are more
        // (not for the console producer's 1 MB batches, a few KiB short of
        // max.request.size, which a reallocation extends in place).
        let worth_moving = 2 * batch_size <= grow_to;
        if let Some(mut spare) = worth_moving
            .then(|| shared.memory.take_grown(open.reserved.bytes()))
            .flatten()
        {
            let old = open.builder.move_to(spare.buf);
            spare.slots.append(&mut open.records);
            let old_slots = std::mem::replace(&mut open.records, spare.slots);
            // The old buffer's bytes are in the spare's now held by the batch: it is kept
            // as a spare of its own (within the limit, as the bytes moved from spare to
            // reserved).
            let held = open.reserved.bytes();
            open.reserved.add(spare.bytes.saturating_sub(held));
            shared.memory.offer_spare(held, old, old_slots);
        }
        room_to_grow(&mut open.builder, &mut open.records, grow_to, record_size);
    }
    let extra = match reserved {
        Some(r) => r,
        // A batch in a grown batch's buffer holds that batch's reservation already.
        None if open.reserved.bytes() >= new_limit => 0,
        None if shared.memory.try_reserve(step) => step,
        None => return None,
    };
    open.builder.raise_limit(new_limit);
    Some(extra)
}

/// Appends one record to its partition's open batch, starting a batch when needed (with the
/// memory `reserved` for it, if the caller holds that). `NeedMemory` when a new batch cannot
/// reserve its memory: the record is untouched then.
fn append(
    shared: &Shared,
    handle: &PartitionHandle,
    record: &ProducerRecord,
    timestamp: i64,
    completion: &mut Completion,
    mut reserved: Option<Reservation>,
) -> Appended {
    let config = &shared.config;
    let key = record.key.as_deref();
    let value = record.value.as_deref();
    let slot = |completion: &mut Completion| RecordSlot {
        completion: std::mem::replace(completion, Completion::discard()),
        timestamp,
        key_size: key.map_or(-1, |k| k.len() as i32),
        value_size: value.map_or(-1, |v| v.len() as i32),
        trace: RecordTrace::of(&record.headers),
    };
    let mut q = handle.part.lock();
    let grow_to = q.grow_to();
    let mut filled = false;
    if let Some(open) = q.open.as_mut() {
        let mut appended = open
            .builder
            .try_append(timestamp, key, value, &record.headers);
        if let Err(BatchFull { record_size }) = appended {
            let held = reserved.as_ref().map(Reservation::bytes);
            if let Some(extra) = grow(shared, open, grow_to, record_size, held) {
                match reserved.take() {
                    Some(r) => open.reserved.absorb(r),
                    None => open.reserved.add(extra),
                }
                appended = open
                    .builder
                    .try_append(timestamp, key, value, &record.headers);
                debug_assert!(appended.is_ok(), "grown by at least the record's size");
            }
        }
        match appended {
            Ok(size) => {
                open.records.push(slot(completion));
                let full = open.builder.is_full() && open.builder.limit() >= grow_to;
                if full {
                    let b = q.open.take().expect("open exists");
                    q.full.push_back(b);
                }
                drop(q);
                // Memory reserved for a new batch the record did not need.
                drop(reserved);
                if full {
                    handle.addr.do_send(BatchFilled);
                }
                // Java enables the sticky switch only when the partition's last batch is
                // full after the append (`allBatchesFull`): a batch that grew by a step is
                // not, any more than the new batch Java would have started there.
                return Appended::Added {
                    bytes: size,
                    batch_full: full,
                };
            }
            Err(_) => {
                let b = q.open.take().expect("open exists");
                q.full.push_back(b);
                filled = true;
            }
        }
    }
    let size = RECORD_BATCH_OVERHEAD + record_size(0, 0, key, value, &record.headers);
    let need = config.batch_size.max(size);
    let mut reserved = match reserved {
        Some(r) => r,
        None if shared.memory.try_reserve(need) => Reservation::new(&shared.memory, need),
        None => {
            drop(q);
            if filled {
                handle.addr.do_send(BatchFilled);
            }
            return Appended::NeedMemory { need };
        }
    };
    let reserved_now = reserved.bytes();
    // Sized for a batch of records like this one, so the slots are not regrown.
    let slots_wanted = (reserved_now / size.max(1)).clamp(1, 4096);
    // Its partition waits: this batch will likely grow to `grow_to` (see `grow`).
    let growing = grow_to > reserved_now;
    let (mut builder, mut records) = match shared.memory.take_spare(reserved_now, growing) {
        Some(spare) => {
            // A grown batch's buffer comes with its reservation (see `MemoryPool`).
            reserved.add(spare.bytes.saturating_sub(reserved_now));
            (
                BatchBuilder::with_buffer(
                    spare.buf,
                    reserved_now,
                    config.compression,
                    config.compression_level(),
                ),
                spare.slots,
            )
        }
        None => (
            BatchBuilder::new(reserved_now, config.compression, config.compression_level()),
            Vec::with_capacity(slots_wanted),
        ),
    };
    records.reserve(slots_wanted);
    if growing {
        room_to_grow(&mut builder, &mut records, grow_to, size);
    }
    builder.set_transactional(shared.txn.is_some());
    let appended = builder
        .try_append(timestamp, key, value, &record.headers)
        .expect("the first record always fits");
    let full = builder.is_full() && builder.limit() >= grow_to;
    records.push(slot(completion));
    let batch = OpenBatch {
        id: q.next_id,
        builder,
        records,
        created: Instant::now(),
        reserved,
    };
    q.next_id += 1;
    if full {
        q.full.push_back(batch);
    } else {
        q.open = Some(batch);
    }
    drop(q);
    if filled || full {
        handle.addr.do_send(BatchFilled);
    }
    if !full {
        handle.addr.do_send(BatchStarted);
    }
    // A new batch was started for this record: it is full only if the record alone filled
    // it. Switching here would leave this one record's batch behind on the old partition
    // (Java keeps the partition until its last batch is full or 2 x batch.size went there).
    Appended::Added {
        bytes: appended,
        batch_full: full,
    }
}

/// Dropped for good (its restarts spent: the producer is broken), the router answers the
/// records waiting in the intake, which no router will take any more; they live in the
/// producer's shared state, not in the actor, so dropping the actor does not reach them.
/// It also aborts its accumulators, as `ProducerBroken` does when another actor broke: the
/// supervisor sends that message to the router, whose mailbox goes with it here, and the
/// accumulators would otherwise hold their records to their linger and deliver them for a
/// producer that reports itself broken. Dropped for a restart, or after a close, it leaves
/// them: the next router takes them, or the close answered them.
impl Drop for Router {
    fn drop(&mut self) {
        let Ok(core) = self.core.try_borrow() else {
            return;
        };
        let shared = &core.shared;
        let Some(why) = shared.supervision.broken().cloned() else {
            return;
        };
        let mut waiting = Vec::new();
        shared.intake.shut(&mut waiting, why.clone());
        shared.intake.routed();
        for (record, completion) in waiting {
            shared.metrics.refused(false);
            completion.complete(Err(ProduceError::refused(why.clone(), record)));
        }
        for a in core.accumulators() {
            a.do_send(Abort);
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let mut core = core.borrow_mut();
        core.stall_active = false;
        // A panic while routing a message may have left its clock reading behind.
        core.stamp = None;
        core.stall_since = None;
        core.metadata_timer = None;
        core.arm_metadata_timer(ctx);
        ctx.run_interval(IDLE_CHECK, |act, _| {
            let mut core = act.core.borrow_mut();
            core.forget_idle_topics();
            if core.shared.intake.shrink_if_quiet() {
                crate::intake::shrink_idle(&mut core.intake_spare);
            }
        });
        // A restart dropped the look-again the intake may be counting on.
        ctx.notify(DrainIntake);
        if !core.stalled.is_empty() {
            let size = core.stalled.front().map_or(0, |w| {
                RECORD_BATCH_OVERHEAD
                    + record_size(
                        0,
                        0,
                        w.record.key.as_deref(),
                        w.record.value.as_deref(),
                        &w.record.headers,
                    )
            });
            let need = core.shared.config.batch_size.max(size);
            core.stall(need, ctx);
        }
    }
}

impl Supervised for Router {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!("router restarted");
        // All state lives in `core`, which survives; `started` re-arms timers and stalls.
    }
}

/// The reply of the `Produce` handler: routing happens in [`MessageResponse::handle`], where
/// actix hands over the `send()` reply channel, so the channel itself becomes the record's
/// completion. No extra channel, no spawned future per record.
#[derive(Debug)]
pub struct Accept {
    core: Rc<RefCell<RouterCore>>,
    produce: Produce,
}

impl MessageResponse<Router, Produce> for Accept {
    fn handle(self, ctx: &mut Context<Router>, tx: Option<OneshotSender<Outcome>>) {
        let Produce {
            mut record,
            reply_to,
            tag,
            trace,
        } = self.produce;
        let mut completion = match (reply_to, tx) {
            (ReplyTo::Recipient(to), _) => Completion::notify(to, tag),
            (ReplyTo::Notifier(to), _) => Completion::notify_batched(to, tag),
            (ReplyTo::Reply, Some(tx)) => Completion::reply(tx),
            (ReplyTo::Reply, None) => Completion::discard(),
        };
        let mut core = self.core.borrow_mut();
        core.shared.tracing.inject(&mut record, &trace);
        let held = Held {
            record: &mut record,
            completion: &mut completion,
        };
        core.accept(held, None, ctx);
    }
}

impl Handler<Produce> for Router {
    type Result = Accept;

    fn handle(&mut self, produce: Produce, _: &mut Context<Self>) -> Accept {
        Accept {
            core: self.core.clone(),
            produce,
        }
    }
}

/// The reply of the `ProduceBatch` and `ProduceBatchTally` handlers (see [`Accept`]).
#[derive(Debug)]
pub struct AcceptBatch {
    core: Rc<RefCell<RouterCore>>,
    records: Vec<Produce>,
}

impl AcceptBatch {
    /// Accepts every record, in order, with the completion `completion(index)` makes.
    fn accept_all(self, ctx: &mut Context<Router>, completion: impl Fn(usize) -> Completion) {
        let mut core = self.core.borrow_mut();
        // Each record is routed where it lies (see `RouterCore::accept`); the vector, with
        // what the router did not keep, is dropped at the end.
        let mut records = self.records;
        let mut unreached = Unreached {
            next: 0,
            end: records.len(),
            completion,
        };
        core.stamp = Some(now_millis());
        for (index, p) in records.iter_mut().enumerate() {
            let mut completion = (unreached.completion)(index);
            unreached.next = index + 1;
            core.shared.tracing.inject(&mut p.record, &p.trace);
            let held = Held {
                record: &mut p.record,
                completion: &mut completion,
            };
            core.accept(held, None, ctx);
        }
        core.stamp = None;
    }
}

/// The records of a call the router had not reached when it panicked: the call's collector
/// waits for every index, so without an outcome for these it would never answer, and the
/// outcomes of the records before the panic would be lost with it. Their completions are
/// made and dropped as the panic unwinds, which the supervisor answers as every record a
/// panicking actor held (`Panicked`).
struct Unreached<F: Fn(usize) -> Completion> {
    next: usize,
    end: usize,
    completion: F,
}

impl<F: Fn(usize) -> Completion> Drop for Unreached<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for index in self.next..self.end {
                drop((self.completion)(index));
            }
        }
    }
}

impl MessageResponse<Router, ProduceBatch> for AcceptBatch {
    fn handle(self, ctx: &mut Context<Router>, tx: Option<OneshotSender<Vec<Outcome>>>) {
        let collector = BatchCollector::new(self.records.len(), tx);
        self.accept_all(ctx, |index| Completion::batch(collector.clone(), index));
    }
}

impl MessageResponse<Router, ProduceBatchTally> for AcceptBatch {
    fn handle(self, ctx: &mut Context<Router>, tx: Option<OneshotSender<BatchTally>>) {
        let collector = TallyCollector::new(self.records.len(), tx);
        self.accept_all(ctx, |index| Completion::tally(collector.clone(), index));
    }
}

impl Handler<ProduceBatch> for Router {
    type Result = AcceptBatch;

    fn handle(&mut self, batch: ProduceBatch, _: &mut Context<Self>) -> AcceptBatch {
        AcceptBatch {
            core: self.core.clone(),
            records: batch.0,
        }
    }
}

impl Handler<ProduceBatchTally> for Router {
    type Result = AcceptBatch;

    fn handle(&mut self, batch: ProduceBatchTally, _: &mut Context<Self>) -> AcceptBatch {
        AcceptBatch {
            core: self.core.clone(),
            records: batch.0,
        }
    }
}

impl Router {
    /// Routes every record appended to the intake so far, in order. The two buffers swap
    /// places, so taking allocates nothing once they have grown. From `DrainIntake`
    /// (`answering`) it returns whether the router must look again (see [`intake`]); other
    /// handlers take what waits before they act, so the records appended before their message
    /// are routed first, and leave the intake's promise as it is.
    ///
    /// [`intake`]: crate::intake
    fn route_intake(&mut self, answering: bool, ctx: &mut Context<Self>) -> bool {
        let mut core = self.core.borrow_mut();
        let mut records = std::mem::take(&mut core.intake_spare);
        let again = core.shared.clone().intake.take(&mut records, answering);
        if !records.is_empty() {
            core.stamp = Some(now_millis());
            for (record, completion) in records.iter_mut() {
                core.accept(Held { record, completion }, None, ctx);
            }
            core.stamp = None;
            core.shared.intake.routed();
            records = core.shared.intake.spent(records);
        } else {
            core.shared.intake.drop_spent();
        }
        core.intake_spare = records;
        again
    }
}

impl Handler<DrainIntake> for Router {
    type Result = ();

    fn handle(&mut self, _: DrainIntake, ctx: &mut Context<Self>) {
        if self.route_intake(true, ctx) {
            // Look again once the thread's other tasks (accumulators, linger deadlines,
            // answers) had a turn. A self-sent message would be handled before them.
            ctx.spawn(
                fut::wrap_future(tokio::task::yield_now())
                    .map(|(), act: &mut Router, ctx| act.handle(DrainIntake, ctx)),
            );
        }
    }
}

impl Handler<Expedite> for Router {
    type Result = ();

    fn handle(&mut self, _: Expedite, _: &mut Context<Self>) {
        self.core.borrow().expedite();
    }
}

impl Handler<Route> for Router {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        let mut core = self.core.borrow_mut();
        let Route {
            mut record,
            mut completion,
            txn,
        } = msg;
        let held = Held {
            record: &mut record,
            completion: &mut completion,
        };
        core.accept(held, Some(txn), ctx);
        // Counted back once it is parked or routed: a flush that waits for it then waits
        // for its queue too.
        core.intercept_back += 1;
        // A flush (or a commit) may have waited for this record.
        core.maybe_run_deferred_flushes();
    }
}

impl Handler<RouteLost> for Router {
    type Result = ();

    fn handle(&mut self, _: RouteLost, _: &mut Context<Self>) {
        let mut core = self.core.borrow_mut();
        core.intercept_back += 1;
        core.maybe_run_deferred_flushes();
    }
}

impl Handler<ClusterChanged> for Router {
    type Result = ();

    fn handle(&mut self, note: ClusterChanged, ctx: &mut Context<Self>) {
        self.core.borrow_mut().on_cluster_changed(&note, ctx);
    }
}

impl Handler<Flush> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        self.route_intake(false, ctx);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut core = self.core.borrow_mut();
        core.defer_flush(tx);
        let shared = core.shared.clone();
        Box::pin(async move {
            let _ = rx.await;
            shared.metrics.add_call_time(Call::Flush, started);
        })
    }
}

impl Handler<GetPartitions> for Router {
    type Result = ResponseFuture<Result<Vec<PartitionInfo>, ErrorKind>>;

    fn handle(&mut self, msg: GetPartitions, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.core.borrow().shared.partitions_for(&msg.0))
    }
}

impl Handler<GetMetrics> for Router {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.borrow().shared.metrics_snapshot())
    }
}

impl Handler<Close> for Router {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) -> Self::Result {
        self.route_intake(false, ctx);
        let mut core = self.core.borrow_mut();
        if core.closed {
            // A later close (only `Close` sent to the router directly can be one) resolves
            // with the first one's outcome once it is known: `true` at once told a caller
            // that records the first close was still flushing, or had aborted, were
            // delivered. It waits no longer than its own timeout (`false` then); it does not
            // shorten the first close's time (Java's later `close` with a shorter timeout
            // forces the close sooner).
            let outcome = core.close_outcome.clone();
            let timeout = msg.timeout;
            return Box::pin(async move {
                let Some(mut outcome) = outcome else {
                    return false;
                };
                let first = async { outcome.wait_for(Option::is_some).await.map(|o| *o) };
                let known = tokio::time::timeout(timeout, first).await;
                matches!(known, Ok(Ok(Some(true))))
            });
        }
        core.closed = true;
        // From `Producer::close`, the deadline it recorded when it was called: a wait for
        // buffer.memory may have held this message back. A `Close` sent directly records
        // its own, so that records waiting for memory keep to it too.
        let deadline = core.shared.close.request(msg.timeout);
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (outcome_tx, outcome_rx) = tokio::sync::watch::channel(None);
        core.close_outcome = Some(outcome_rx);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // close(0) sends nothing more (Java's forced close aborts the batches it holds
        // without draining them): a flush here would hand the lingering batches to their
        // connections just before the abort fails their records, and the broker would write
        // records reported as aborted.
        if !timeout.is_zero() {
            core.defer_flush(tx);
        }
        let shared = core.shared.clone();
        // A transaction left open is aborted once its records are settled (as Java's
        // producer does at close), so read_committed consumers need not wait for
        // transaction.timeout.ms; close(0) leaves it to the coordinator.
        // The transaction manager decides whether one is still going on: one whose commit
        // failed, or whose abort timed out, is aborted too; one whose commit timed out is
        // left to the coordinator.
        core.in_txn = false;
        let abort_txn = (!timeout.is_zero())
            .then(|| core.shared.transaction.get().map(|t| t.end.clone()))
            .flatten();
        let core_rc = self.core.clone();
        drop(core);
        tracing::info!(timeout_ms = timeout.as_millis() as u64, "closing producer");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let core_shut = self.core.clone();
        // Runs detached from the router's context so that a router restart cannot drop it.
        actix::spawn(async move {
            let flushed = !timeout.is_zero() && tokio::time::timeout(timeout, rx).await.is_ok();
            // From here the accumulators stop: a record the interceptors hand back later
            // would find none to take it. All of them, those started during the close too
            // (a topic whose metadata came, a record back from the interceptors).
            let accumulators = {
                let mut core = core_shut.borrow_mut();
                core.shut = true;
                core.accumulators()
            };
            if !flushed {
                tracing::warn!("close timed out; aborting unacknowledged records");
            }
            for a in &accumulators {
                if flushed {
                    let _ = a.send(Shutdown).await;
                } else {
                    let _ = a.send(Abort).await;
                }
            }
            let _ = done_tx.send(flushed);
            drop(shared);
        });
        Box::pin(async move {
            let flushed = done_rx.await.unwrap_or(false);
            // A commit or abort the application started is let finish before the transaction
            // manager stops (Java's close runs the sender while the transaction manager is
            // completing), within the close's time: stopped, it would drop an EndTxn in
            // flight and leave the transaction's outcome to chance.
            while core_rc.borrow().txn_ending.is_some() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(end) = abort_txn {
                let abort = end.send(EndTransaction {
                    commit: false,
                    at_close: true,
                });
                // One deadline for the whole close, as Java's close(timeout).
                match tokio::time::timeout_at(deadline, abort).await {
                    Ok(Ok(Ok(()))) => tracing::info!("open transaction aborted at close"),
                    Ok(Ok(Err(TransactionError::InvalidState { state, .. }))) => {
                        tracing::debug!(state, "no transaction to abort at close")
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::warn!(error = %e, "aborting the open transaction at close failed")
                    }
                    _ => tracing::warn!("aborting the open transaction at close did not finish"),
                }
            }
            // Parked records cannot be flushed any more: they were refused with Aborted
            // below if close timed out, or there were none.
            let (metadata, interceptors, transaction) = {
                let mut core = core_rc.borrow_mut();
                core.fail_parked(ErrorKind::Aborted);
                core.routes.clear();
                (
                    core.shared.metadata.get().map(|m| m.shutdown.clone()),
                    core.interceptors.clone(),
                    core.shared.transaction.get().map(|t| t.shutdown.clone()),
                )
            };
            if let Some(i) = interceptors {
                i.do_send(Shutdown);
            }
            if let Some(t) = transaction {
                t.do_send(Shutdown);
            }
            if let Some(m) = metadata {
                let _ = m.send(Shutdown).await;
            }
            let _ = outcome_tx.send(Some(flushed));
            flushed
        })
    }
}

impl Handler<ProducerBroken> for Router {
    type Result = ();

    fn handle(&mut self, ProducerBroken(why): ProducerBroken, _: &mut Context<Self>) {
        let mut core = self.core.borrow_mut();
        core.fail_parked(why.clone());
        for a in core.accumulators() {
            a.do_send(Abort);
        }
        core.maybe_run_deferred_flushes();
        // A partition whose accumulator is gone for good holds its records only here now.
        let supervision = core.shared.supervision.clone();
        supervision.answer_dropped(why, || core.routes.clear());
    }
}

impl RouterCore {
    /// The transaction a record joins (its generation; `None` without `transactional.id`),
    /// or why it is refused. A record back from the interceptors (`intercepted`, with the
    /// transaction it was taken into) joins that one while it is open or committing; a
    /// fresh record joins only an open transaction. A fatal error says more than "not in a
    /// transaction": the producer is done.
    fn transaction_of(
        &self,
        intercepted: Option<Option<u64>>,
    ) -> Result<Option<u64>, TransactionError> {
        let Some(status) = &self.shared.txn else {
            return Ok(None);
        };
        let generation = status.generation();
        let failure = status.failure();
        if let Some(e) = failure
            .as_ref()
            .filter(|e| e.class() == herald::ErrorClass::Fatal)
        {
            return Err(e.clone());
        }
        let joins = match intercepted {
            None => self.in_txn,
            Some(taken) => {
                let current = taken == Some(generation);
                if !(current && (self.in_txn || self.txn_ending == Some(true))) {
                    return Err(TransactionError::Aborted);
                }
                true
            }
        };
        match (joins, failure) {
            (false, _) => Err(TransactionError::NotInTransaction),
            (true, Some(e)) => Err(e),
            (true, None) => Ok(Some(generation)),
        }
    }

    /// The transaction manager, or the answer for a producer without one.
    fn transaction(&self) -> Result<&crate::shared::TransactionLink, TransactionError> {
        if self.closed {
            return Err(TransactionError::Closed);
        }
        self.shared
            .transaction
            .get()
            .ok_or(TransactionError::NotTransactional)
    }
}

/// What a transaction manager's answer comes to when its mailbox is gone.
fn answered(r: Result<TransactionResult, MailboxError>) -> TransactionResult {
    r.unwrap_or(Err(TransactionError::Closed))
}

/// Adds a transaction call's time, from its message's arrival (`started`) to its answer, to
/// `call`'s total when it succeeded.
fn timed(
    shared: &Shared,
    call: Call,
    started: Instant,
    result: TransactionResult,
) -> TransactionResult {
    if result.is_ok() {
        shared.metrics.add_call_time(call, started);
    }
    result
}

impl Handler<InitTransactions> for Router {
    type Result = ResponseFuture<TransactionResult>;

    fn handle(&mut self, msg: InitTransactions, _: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let core = self.core.borrow();
        let (to, shared) = (
            core.transaction().map(|t| t.init.clone()),
            core.shared.clone(),
        );
        Box::pin(async move {
            let result = answered(to?.send(msg).await);
            timed(&shared, Call::TxnInit, started, result)
        })
    }
}

impl Handler<BeginTransaction> for Router {
    type Result = ResponseActFuture<Self, TransactionResult>;

    fn handle(&mut self, msg: BeginTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        // Records appended before `begin` belong to no transaction.
        self.route_intake(false, ctx);
        let to = match self.core.borrow().transaction() {
            Ok(t) => t.begin.clone(),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        // Records are taken from the moment the answer is here, before the application
        // sees it: whatever it sends after `begin` resolved belongs to the transaction.
        Box::pin(
            async move { answered(to.send(msg).await) }
                .into_actor(self)
                .map(move |res, act, _| {
                    let mut core = act.core.borrow_mut();
                    if res.is_ok() {
                        core.in_txn = true;
                    }
                    timed(&core.shared, Call::TxnBegin, started, res)
                }),
        )
    }
}

impl Handler<SendOffsetsToTransaction> for Router {
    type Result = ResponseFuture<TransactionResult>;

    fn handle(&mut self, msg: SendOffsetsToTransaction, _: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let core = self.core.borrow();
        let to = core.transaction().map(|t| t.send_offsets.clone());
        let shared = core.shared.clone();
        Box::pin(async move {
            let result = answered(to?.send(msg).await);
            timed(&shared, Call::TxnSendOffsets, started, result)
        })
    }
}

/// The answer to a commit or abort while the other is under way (see their handlers).
fn unfinished(
    operation: &'static str,
    unfinished: &'static str,
) -> ResponseFuture<TransactionResult> {
    Box::pin(async move {
        Err(TransactionError::Unfinished {
            operation,
            unfinished,
        })
    })
}

impl Handler<CommitTransaction> for Router {
    type Result = ResponseFuture<TransactionResult>;

    /// Stops taking records, flushes every record of the transaction (as `Flush`), then has
    /// the transaction manager commit. A record that failed meanwhile makes the transaction
    /// abortable, which the commit then reports.
    fn handle(&mut self, _: CommitTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        self.route_intake(false, ctx);
        let mut core = self.core.borrow_mut();
        let to = match core.transaction() {
            Ok(t) => t.end.clone(),
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        if core.txn_ending == Some(false) {
            // An abort under way has failed the transaction's unsent records; its end going
            // out as a commit would commit what was written before them (Java's
            // TransactionManager refuses the transition from aborting to committing).
            return unfinished("commit_transaction", "abort_transaction");
        }
        core.in_txn = false;
        core.txn_ending = Some(true);
        let (tx, rx) = tokio::sync::oneshot::channel();
        core.defer_flush(tx);
        let core_rc = self.core.clone();
        Box::pin(async move {
            let _ = rx.await;
            let result = answered(
                to.send(EndTransaction {
                    commit: true,
                    at_close: false,
                })
                .await,
            );
            let mut core = core_rc.borrow_mut();
            core.txn_ending = None;
            timed(&core.shared, Call::TxnCommit, started, result)
        })
    }
}

impl Handler<AbortTransaction> for Router {
    type Result = ResponseFuture<TransactionResult>;

    /// Stops taking records, fails the transaction's records not yet sent (parked here or
    /// unsent in an accumulator) with "transaction aborted", waits for the batches in flight,
    /// then has the transaction manager abort.
    fn handle(&mut self, _: AbortTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        self.route_intake(false, ctx);
        let mut core = self.core.borrow_mut();
        // The records sent before this abort are routed or failed now: a later wait for
        // memory is no longer this abort's to end.
        core.shared.abort.handled();
        let to = match core.transaction() {
            Ok(t) => t.end.clone(),
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        if core.txn_ending == Some(true) {
            // A commit is still flushing (its caller may have stopped waiting for it): the
            // coordinator may be told to commit whatever this abort does, so the abort is
            // refused, as Java's producer refuses an abort after a commit timed out, and
            // nothing of the transaction is failed or discarded. The application calls the
            // commit again for its outcome.
            return unfinished("abort_transaction", "commit_transaction");
        }
        core.in_txn = false;
        core.txn_ending = Some(false);
        core.fail_parked(ErrorKind::Transaction(TransactionError::Aborted));
        let discards: Vec<_> = core
            .accumulators()
            .into_iter()
            .map(|a| a.send(DiscardUnsent))
            .collect();
        let core_rc = self.core.clone();
        Box::pin(async move {
            futures_util::future::join_all(discards).await;
            let result = answered(
                to.send(EndTransaction {
                    commit: false,
                    at_close: false,
                })
                .await,
            );
            let mut core = core_rc.borrow_mut();
            core.txn_ending = None;
            timed(&core.shared, Call::TxnAbort, started, result)
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<GetAccumulators> for Router {
    type Result = MessageResult<GetAccumulators>;

    fn handle(&mut self, _: GetAccumulators, _: &mut Context<Self>) -> Self::Result {
        let all = self.core.borrow().accumulators();
        MessageResult(all.into_iter().map(|a| a.recipient()).collect())
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Router {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        let shared = self.core.borrow().shared.clone();
        crash.apply(ActorKind::Router, &shared.victims, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PartitionMeta;
    use crate::intake::fits_surely;
    use bytes::Bytes;

    /// A batch grows to max.request.size uncompressed, and with compression to what
    /// surely fits it compressed; never below batch.size, and not at all with more than one
    /// batch per partition in flight.
    #[test]
    fn batches_grow_to_what_fits_a_request_once_compressed() {
        let cap = |pairs: &[(&str, &str)]| {
            let mut all = vec![("bootstrap.servers", "b:9092")];
            all.extend_from_slice(pairs);
            growth_cap(&ProducerConfig::from_pairs(all).unwrap())
        };
        assert_eq!(cap(&[]), 1_048_576);
        let gzip = cap(&[("compression.type", "gzip")]);
        assert_eq!(
            gzip,
            herald::compression::Compression::Gzip.fit_within(1_048_576)
        );
        assert!(gzip < 1_048_576);
        assert_eq!(
            cap(&[("compression.type", "lz4"), ("batch.size", "2000000")]),
            2_000_000
        );
        assert_eq!(cap(&[("max.in.flight.batches.per.partition", "2")]), 16_384);
    }

    /// The route found last is tried first; any other topic still finds its own.
    #[test]
    fn routes_find_each_topic_whatever_was_looked_up_last() {
        let route = |name: &str, partitions: usize| {
            TopicRoute::new(Arc::new(TopicMeta {
                name: Arc::from(name),
                topic_id: None,
                partitions: vec![
                    PartitionMeta {
                        leader: 0,
                        leader_epoch: 0
                    };
                    partitions
                ],
                available: Vec::new(),
                local: Vec::new(),
            }))
        };
        let mut routes = Routes::default();
        assert!(routes.get_mut("a").is_none());
        routes.insert(route("a", 1));
        routes.insert(route("ab", 2));
        routes.insert(route("b", 3));
        for (topic, n) in [("a", 1), ("a", 1), ("b", 3), ("ab", 2), ("ab", 2), ("a", 1)] {
            assert_eq!(routes.get_mut(topic).expect(topic).partitions.len(), n);
            assert_eq!(&*routes.get_mut(topic).unwrap().meta.name, topic);
            assert_eq!(routes.get(topic).unwrap().partitions.len(), n);
        }
        assert!(routes.get_mut("c").is_none() && routes.get_mut("").is_none());
        assert_eq!(routes.iter().count(), 3);
        routes.clear();
        assert!(routes.get_mut("a").is_none() && routes.get("b").is_none());
        routes.insert(route("b", 4));
        assert_eq!(routes.get_mut("b").unwrap().partitions.len(), 4);
    }

    /// `fits_surely` may only say yes when the exact size fits: it lets records skip the
    /// exact check.
    #[test]
    fn a_record_that_surely_fits_does_fit() {
        for key in [None, Some(0), Some(1), Some(127), Some(128), Some(20_000)] {
            for value in [
                None,
                Some(0),
                Some(63),
                Some(64),
                Some(16_383),
                Some(16_384),
            ] {
                let record = ProducerRecord {
                    key: key.map(|n| Bytes::from(vec![b'k'; n])),
                    value: value.map(|n| Bytes::from(vec![b'v'; n])),
                    ..ProducerRecord::new("t")
                };
                let exact = RECORD_BATCH_OVERHEAD
                    + record_size(
                        0,
                        0,
                        record.key.as_deref(),
                        record.value.as_deref(),
                        &record.headers,
                    );
                for max in [exact - 1, exact, exact + 20, exact + 21, exact + 100] {
                    if fits_surely(&record, max) {
                        assert!(exact <= max, "key {key:?} value {value:?} max {max}");
                    }
                }
                assert!(fits_surely(&record, exact + 21), "the bound is 21 bytes");
            }
        }
        let with_header = ProducerRecord {
            headers: vec![herald::Header::new("h", Bytes::from_static(b"v"))],
            ..ProducerRecord::new("t")
        };
        assert!(
            !fits_surely(&with_header, usize::MAX),
            "headers take the exact path"
        );
    }
}
