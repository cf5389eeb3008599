//! The producer: [`Producer`] and [`ProducerBuilder`], which start a producer's actors and
//! wire them together. The only module that starts the router, the metadata actor and the
//! sealer (the router starts accumulators and the interceptor chain, the metadata actor
//! starts connections).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;

use crate::supervisor::{ActorKind, RestartLimit, Supervision, Supervisor};
use crate::token_endpoint::EndpointTokens;
use herald::partitioner::{DefaultPartitioner, Partitioner};
use herald::sasl::{EndpointUrl, OAuthTokens, SaslSettings};
use herald::{ConfigError, ErrorKind, PartitionInfo, ProduceError, ProducerConfig, ProducerRecord};

use crate::clock::Clock;
use crate::cluster::ClusterView;
use crate::completion::{slot, Completion, Outcome};
#[cfg(feature = "fault-injection")]
use crate::fault_injection::{Crash, GetAccumulators, Stall};
use crate::intake::{Intake, Refusal};
use crate::interceptor::ProducerInterceptor;
use crate::memory::MemoryPool;
use crate::messages::application::{
    AbortTransaction, BeginTransaction, Close, CommitTransaction, ConsumerGroupMetadata,
    DrainIntake, Expedite, Flush, InitTransactions, Produce, ReplyTo, SendOffsetsToTransaction,
    TopicPartitionOffset, TransactionResult,
};
use crate::messages::cluster::Subscribe;
use crate::metadata::Metadata;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::otel::Tracing;
use crate::publisher;
use crate::router::Router;
use crate::sealer::Sealer;
use crate::shared::{MetadataLink, Shared, TransactionLink};
use crate::tls::Tls;
use crate::token::{Refresh, TokenProvider, TokenSource};
use crate::transaction::TransactionManager;
use crate::txn_status::TxnStatus;
use herald::TransactionError;

/// Options beyond the Java config keys: a custom partitioner and interceptors.
pub struct ProducerBuilder {
    config: ProducerConfig,
    partitioner: Option<Box<dyn Partitioner>>,
    interceptors: Vec<Box<dyn ProducerInterceptor>>,
    token_provider: Option<Arc<dyn TokenProvider>>,
    /// A `create` span per record (feature `opentelemetry`).
    record_spans: bool,
    /// Transaction protocol version 2 may be used where brokers offer it (see
    /// `max_transaction_version`).
    transaction_v2: bool,
    /// Where the router and its peers run; `None`: an arbiter of their own.
    arbiter: Option<ArbiterHandle>,
    restart_limit: RestartLimit,
}

impl std::fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("config", &self.config)
            .field("partitioner", &self.partitioner)
            .field("interceptors", &self.interceptors.len())
            .field("token_provider", &self.token_provider.is_some())
            .field("record_spans", &self.record_spans)
            .field("own_arbiter", &self.arbiter.is_none())
            .field("restart_limit", &self.restart_limit)
            .finish()
    }
}

impl ProducerBuilder {
    /// Replaces the default (Java-compatible) partitioner.
    pub fn partitioner(mut self, partitioner: impl Partitioner + 'static) -> Self {
        self.partitioner = Some(Box::new(partitioner));
        self
    }

    /// Supplies OAUTHBEARER tokens (with `sasl.mechanism=OAUTHBEARER`, instead of
    /// `sasl.jaas.config`). Each connection asks for a token when it authenticates, from a
    /// future of its own; a token is reused until it is due for renewal
    /// (`sasl.login.refresh.*`, 80-85% of its lifetime by default).
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.token_provider = Some(Arc::new(provider));
        self
    }

    /// Gives every record an OpenTelemetry `create` span of its own, a child of the context
    /// it was made in, whose context goes into the record's headers instead (by default the
    /// headers carry the context the record was made in, and no span per record is made: a
    /// span per record costs). Feature `opentelemetry`.
    #[cfg(feature = "opentelemetry")]
    pub fn record_spans(mut self, on: bool) -> Self {
        self.record_spans = on;
        self
    }

    /// Test-only: the highest transaction protocol version to use (1 or 2), so version 1 can
    /// be tested on brokers that offer version 2 (KIP-890).
    #[cfg(feature = "fault-injection")]
    pub fn max_transaction_version(mut self, version: i16) -> Self {
        self.transaction_v2 = version >= 2;
        self
    }

    /// Runs the router, the accumulators, the interceptors, the metadata actor and the
    /// transaction manager on `arbiter` instead of an arbiter of their own (connections and
    /// compression keep theirs). For an application whose own thread does nothing but feed
    /// the producer from another thread, as the console producer's main task relays what its
    /// reader thread reads: there the router's own thread was one more hop per message, and
    /// cost the console producer about a fifth of its CPU. Elsewhere, leave the producer its
    /// own thread: routing on the caller's thread halves a single-threaded application's
    /// throughput.
    pub fn arbiter(mut self, arbiter: ArbiterHandle) -> Self {
        self.arbiter = Some(arbiter);
        self
    }

    /// Bounds restart storms: an actor that panics more than `max_panics` times within
    /// `window` is not restarted again, and the producer is broken (every record it holds and
    /// every later one fails with `ErrorKind::Broken`; see [`Producer::broken`]). By default
    /// more than 10 panics within 30 s. An application whose partitioner, serializer or
    /// interceptor may panic on some records, and that would rather fail those records for
    /// longer than stop producing, raises it; one that must not run on after a panic at all
    /// sets 0. The error reports the window in whole seconds, rounded up.
    pub fn restart_limit(mut self, max_panics: u32, window: Duration) -> Self {
        self.restart_limit = RestartLimit { max_panics, window };
        self
    }

    /// Adds an interceptor; interceptors run in the order added.
    pub fn interceptor(mut self, interceptor: impl ProducerInterceptor) -> Self {
        self.interceptors.push(Box::new(interceptor));
        self
    }

    /// Starts the producer's actors: the router, accumulators, interceptors, metadata and
    /// transactions on an arbiter of their own (or the one given to
    /// [`arbiter`](Self::arbiter)), connections on another, compression on a third, linger
    /// deadlines on a thread. Must be called inside a running actix system.
    pub fn start(self) -> Result<Producer, ConfigError> {
        let config = self.config;
        let tokens = match self.token_provider {
            Some(_) => OAuthTokens::FromApplication,
            None => OAuthTokens::FromConfig,
        };
        config.validate_supported_for(tokens)?;
        let tls = Tls::from_config(&config)?;
        let sasl = SaslSettings::from_config(&config, tokens)?;
        let endpoint = sasl.as_ref().and_then(|s| s.token_endpoint.clone());
        let refresh = Refresh::from_config(&config);
        let tokens = match (self.token_provider, endpoint) {
            (Some(provider), _) => Some(TokenSource::new(provider, refresh)),
            (None, Some(endpoint)) => {
                let tls = match endpoint.url {
                    EndpointUrl::Http { tls: true, .. } => {
                        Some(crate::tls::token_endpoint_tls(&config)?)
                    }
                    _ => None,
                };
                let provider = Arc::new(EndpointTokens::new(endpoint, tls)?);
                Some(TokenSource::new(provider, refresh))
            }
            (None, None) => None,
        };
        let io = Arbiter::new();
        let compress =
            (config.compression != herald::compression::Compression::None).then(Arbiter::new);
        // Like `Arbiter::new`, a thread the OS refuses is a panic, not a config error.
        let supervision = Arc::new(Supervision::with_limit(self.restart_limit));
        let clock =
            Clock::start(supervision.clone()).expect("cannot spawn the herald-linger thread");
        let partitioner = self.partitioner.unwrap_or_else(|| {
            Box::new(
                DefaultPartitioner::new(config.batch_size, config.partitioner_ignore_keys)
                    .adaptive(
                        config.partitioner_adaptive_partitioning_enable,
                        config.partitioner_availability_timeout,
                    ),
            )
        });
        let sealer = compress.as_ref().map(|a| {
            Supervisor::start_in_arbiter(
                &a.handle(),
                ActorKind::Sealer,
                supervision.clone(),
                |_| Sealer::default(),
            )
        });
        let metrics = Metrics::new(&config);
        let tracing = Tracing::new(self.record_spans, &config.client_id);
        let txn = config
            .transactional_id
            .is_some()
            .then(|| TxnStatus::new(self.transaction_v2));
        let memory = Arc::new(MemoryPool::new(config.buffer_memory, config.batch_size));
        let shared = Arc::new(Shared {
            txn,
            close: Default::default(),
            abort: Default::default(),
            transaction: OnceLock::new(),
            intake: Intake::new(memory.clone(), config.max_request_size),
            memory,
            config,
            cluster: ClusterView::default(),
            metrics,
            tracing,
            tls,
            sasl,
            tokens,
            clock,
            io: io.handle(),
            sealer: sealer.as_ref().map(|s| s.clone().recipient()),
            supervision,
            metadata: OnceLock::new(),
            #[cfg(feature = "fault-injection")]
            victims: Default::default(),
        });
        #[cfg(feature = "fault-injection")]
        if let Some(s) = &sealer {
            let _ = shared.victims.sealer.set(s.clone().recipient());
            let _ = shared.victims.sealer_crash.set(s.clone().recipient());
        }
        let (s, interceptors) = (shared.clone(), self.interceptors);
        // The router, its accumulators and the interceptor chain get a thread of their own,
        // as librdkafka's and Java's producers do their batching off the application's
        // threads: the callers' threads only hand records over, and an application on one
        // thread gets a second core's worth of producing.
        let (routing, handle) = match self.arbiter {
            Some(handle) => (None, handle),
            None => {
                let own = Arbiter::new();
                let handle = own.handle();
                (Some(own), handle)
            }
        };
        let router = Supervisor::start_in_arbiter_with(
            &handle,
            // Fixed before the address is handed out: actix enqueues a `send()` at once only
            // while the mailbox has room; past it the message waits inside the caller's
            // future and is enqueued when polled, which is slow and orders records by poll,
            // not call.
            Router::MAILBOX_CAPACITY,
            ActorKind::Router,
            shared.supervision.clone(),
            move |ctx: &mut Context<Router>| Router::new(s, partitioner, interceptors, ctx),
        );
        let _ = shared.supervision.router.set(router.clone().recipient());
        let s = shared.clone();
        let metadata = Supervisor::start_in_arbiter(
            &handle,
            ActorKind::Metadata,
            shared.supervision.clone(),
            move |_| Metadata::new(s),
        );
        metadata.do_send(Subscribe(router.clone().recipient()));
        #[cfg(feature = "fault-injection")]
        let _ = shared.victims.metadata.set(metadata.clone().recipient());
        let _ = shared.metadata.set(MetadataLink {
            add_topics: metadata.clone().recipient(),
            forget_topics: metadata.clone().recipient(),
            subscribe: metadata.clone().recipient(),
            refresh: metadata.clone().recipient(),
            bump_epoch: metadata.clone().recipient(),
            broker_named: metadata.clone().recipient(),
            partitions_for: metadata.clone().recipient(),
            shutdown: metadata.recipient(),
        });
        publisher::start(Arc::downgrade(&shared), &shared.io);
        if shared.txn.is_some() {
            let s = shared.clone();
            let manager = Supervisor::start_in_arbiter(
                &handle,
                ActorKind::Transaction,
                shared.supervision.clone(),
                move |_| TransactionManager::new(s),
            );
            #[cfg(feature = "fault-injection")]
            let _ = shared.victims.transaction.set(manager.clone().recipient());
            let _ = shared.transaction.set(TransactionLink {
                init: manager.clone().recipient(),
                begin: manager.clone().recipient(),
                send_offsets: manager.clone().recipient(),
                end: manager.clone().recipient(),
                add_partition: manager.clone().recipient(),
                shutdown: manager.recipient(),
            });
        }
        tracing::info!(client_id = %shared.config.client_id, "producer started");
        Ok(Producer {
            router,
            shared,
            routing,
            io: Some(io),
            compress,
        })
    }
}

/// A running producer: a handle on its router. Dropping it does not flush; call
/// [`Producer::close`].
#[derive(Debug)]
pub struct Producer {
    router: Addr<Router>,
    shared: Arc<Shared>,
    /// The router's arbiter, when it has one of its own.
    routing: Option<Arbiter>,
    io: Option<Arbiter>,
    /// The sealer's arbiter (with compression only).
    compress: Option<Arbiter>,
}

impl Producer {
    /// Starts a producer with default partitioner and no interceptors.
    pub fn start(config: ProducerConfig) -> Result<Producer, ConfigError> {
        Self::builder(config).start()
    }

    /// Starts a producer from Java-style `(key, value)` config pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Producer, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::start(ProducerConfig::from_pairs(pairs)?)
    }

    /// A builder for a producer with custom partitioner or interceptors.
    pub fn builder(config: ProducerConfig) -> ProducerBuilder {
        ProducerBuilder {
            config,
            partitioner: None,
            interceptors: Vec::new(),
            token_provider: None,
            record_spans: false,
            transaction_v2: true,
            arbiter: None,
            restart_limit: RestartLimit::default(),
        }
    }

    /// The router's address: send `Produce`, `ProduceBatch`, `Flush`, `Close`, `GetMetrics`,
    /// and the transaction messages (`InitTransactions`, `BeginTransaction`, ...).
    pub fn router(&self) -> &Addr<Router> {
        &self.router
    }

    /// The effective configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Produces one record; the future resolves to its outcome.
    ///
    /// The record is handed over when `send` is called, not when the future is first polled:
    /// records keep the order of the calls, and a later [`flush`](Self::flush) or
    /// [`close`](Self::close) covers them. It goes into the producer's intake, which the
    /// router drains in bulk (one message per wake-up rather than one actix request per
    /// record). The intake, with the records the router holds waiting for metadata or
    /// memory, takes only what the batches leave of `buffer.memory`: past that the record
    /// is refused at once with `QueueFull` (its record handed back), where Java's `send`
    /// would block its thread; await [`ready`](Self::ready) first when records may come
    /// faster than the brokers take them, or use [`send_when_ready`](Self::send_when_ready).
    /// buffer.memory and max.block.ms then apply as to any record.
    /// With [`Produce::reply_to`] or [`Produce::notify`] the outcome goes there and the
    /// future resolves to `Closed` at once, as `router().send` of such a record does once
    /// routed. Records sent with `router().send` are not ordered against records sent here
    /// later unless a flush comes between. A transactional producer takes records only
    /// between [`begin_transaction`](Self::begin_transaction) and the commit or abort; the
    /// record's transaction is the one open when `send` is called.
    pub fn send(&self, produce: Produce) -> impl Future<Output = Outcome> + Send + 'static {
        let (tx, rx) = slot();
        self.hand_over(produce, Completion::slot(tx), self.queue_full());
        rx
    }

    /// Produces one record as [`send`](Self::send) does, but where `send` would refuse it
    /// with `QueueFull`, this waits for room for up to `max.block.ms`, as Java's `send` blocks
    /// its thread and FutureProducer's `send` waits out a full queue. Awaiting it hands the
    /// record over, so records keep the order of the awaits; what it returns resolves to the
    /// record's outcome, so a caller can hand records over one after another and await their
    /// outcomes later. Past `max.block.ms` without room the outcome is `BufferExhausted`, the
    /// record handed back. Records sent with `send` meanwhile may pass a record that waits,
    /// and in a transactional producer the record belongs to the transaction open when it is
    /// handed over.
    pub async fn send_when_ready(
        &self,
        produce: Produce,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let (tx, rx) = slot();
        let mut back = None;
        let keep = |r, c, why| match why {
            Refusal::Full { .. } => back = Some((r, c)),
            other => self.refuse(other, r, c),
        };
        self.hand_over(produce, Completion::slot(tx), keep);
        if back.is_none() {
            return rx;
        }
        // No room: the batches that linger go now, as they do while the router waits for
        // memory.
        self.router.do_send(Expedite);
        let max_block = self.shared.config.max_block;
        let deadline = tokio::time::Instant::now() + max_block;
        while let Some((record, completion)) = back.take() {
            let room = tokio::time::timeout_at(deadline, self.ready())
                .await
                .is_ok();
            if !room || tokio::time::Instant::now() >= deadline {
                self.shared.metrics.refused(true);
                let kind = ErrorKind::BufferExhausted {
                    waited_ms: max_block.as_millis() as u64,
                };
                completion.complete(Err(ProduceError::refused(kind, record)));
                break;
            }
            // `ready` also returns for a producer that will take nothing more: say why
            // rather than wait out max.block.ms.
            let broken = self.shared.supervision.broken().cloned();
            let closed = || (!self.router.connected()).then_some(ErrorKind::Closed);
            if let Some(why) = broken.or_else(closed) {
                self.refuse(Refusal::Final(why), record, completion);
                break;
            }
            let alive = || self.router.connected();
            let keep = |r, c, why| match why {
                Refusal::Full { .. } => back = Some((r, c)),
                other => self.refuse(other, r, c),
            };
            self.shared
                .intake
                .append(record, completion, self.drain_request(), alive, keep);
            if back.is_some() {
                // Refused again: `ready` returns at once while half the limit is free, and a
                // record larger than that fits only once the router has taken what waits.
                // Without a turn for the router's tasks (on this thread, if it runs here)
                // this would spin until max.block.ms.
                tokio::task::yield_now().await;
            }
        }
        rx
    }

    /// Waits until the producer's batches and the records waiting for them (see
    /// [`send`](Self::send)) hold at most half of `buffer.memory`, so that a record sent next
    /// is not refused with `QueueFull` (unless other callers fill the room first). This is
    /// where an async caller waits where Java's `send` blocks: `producer.ready().await`
    /// before each send, or before each burst, bounds what a fast source piles up while a
    /// broker is away ([`send_when_ready`](Self::send_when_ready) does it per record).
    /// Returns at once while there is room, and when the producer is broken or closed
    /// (the send then says why).
    pub async fn ready(&self) {
        let give_up = || self.shared.supervision.broken().is_some() || !self.router.connected();
        let exhausted = || self.router.do_send(Expedite);
        self.shared.intake.ready(give_up, exhausted).await
    }

    /// Produces one record whose outcome goes where [`Produce::notify`] or
    /// [`Produce::reply_to`] names, or, with neither, only into the metrics; no future.
    ///
    /// `router().do_send(produce)` does the same through the router's mailbox, one actix
    /// message per record, and the router's thread is woken for every one that finds it idle.
    /// This goes through the intake as [`send`](Self::send) does: one wake-up for all the
    /// records appended while the router works, and the same order and flush guarantees.
    pub fn do_send(&self, produce: Produce) {
        self.hand_over(produce, Completion::discard(), self.queue_full());
    }

    /// Appends a record to the intake; its outcome goes to `reply` unless the record names a
    /// mailbox of its own, and `on_refused` takes it if the intake does not (see `Refusal`).
    /// Inlined into `send` and `do_send`, as `Intake::append` is into it, so the record is
    /// not copied once more on the way (callgrind: one `memcpy` of the record per call less; so is a call between
    /// this and `Intake::append` that takes the record, even inlined).
    #[inline(always)]
    fn hand_over(
        &self,
        produce: Produce,
        reply: Completion,
        on_refused: impl FnOnce(ProducerRecord, Completion, Refusal),
    ) {
        let Produce {
            mut record,
            reply_to,
            tag,
            trace,
        } = produce;
        self.shared.tracing.inject(&mut record, &trace);
        let completion = match reply_to {
            ReplyTo::Reply => reply,
            ReplyTo::Recipient(to) => Completion::notify(to, tag),
            ReplyTo::Notifier(to) => Completion::notify_batched(to, tag),
        };
        if let Some(why) = self.shared.supervision.broken() {
            return self.refuse(Refusal::Final(why.clone()), record, completion);
        }
        let alive = || self.router.connected();
        self.shared
            .intake
            .append(record, completion, self.drain_request(), alive, on_refused);
    }

    /// Queues `DrainIntake` for the router; `false` if it is gone.
    #[inline(always)]
    fn drain_request(&self) -> impl FnOnce() -> bool + '_ {
        let router = &self.router;
        move || match router.try_send(DrainIntake) {
            Ok(()) => true,
            // `do_send` ignores the mailbox's capacity; the drain must be queued.
            Err(SendError::Full(m)) => {
                router.do_send(m);
                true
            }
            Err(SendError::Closed(_)) => false,
        }
    }

    /// Refuses a record the intake did not take (with `QueueFull` when it had no room),
    /// counted as refused.
    fn queue_full(&self) -> impl FnOnce(ProducerRecord, Completion, Refusal) + '_ {
        move |record, completion, why| self.refuse(why, record, completion)
    }

    /// Answers a record the producer did not take, counted in `record-error-total` (and, when
    /// it found no room, `buffer-exhausted-total`) as the router counts those it refuses.
    #[cold]
    fn refuse(&self, why: Refusal, record: ProducerRecord, completion: Completion) {
        let full = matches!(why, Refusal::Full { .. });
        self.shared.metrics.refused(full);
        why.answer(&self.shared.intake, record, completion);
    }

    /// Why the producer is broken, if one of its actors panicked past the restart limit
    /// (then every record is refused with this error; close the producer and start another).
    pub fn broken(&self) -> Option<ErrorKind> {
        self.shared.supervision.broken().cloned()
    }

    /// Obtains the producer id for `transactional.id`, fencing any older producer with the
    /// same id and aborting what it left open. Call once before the first transaction.
    pub async fn init_transactions(&self) -> TransactionResult {
        self.transact(InitTransactions).await
    }

    /// Opens a transaction: records sent from now until the commit or abort belong to it.
    pub async fn begin_transaction(&self) -> TransactionResult {
        self.transact(BeginTransaction).await
    }

    /// Flushes the transaction's records, then commits it. An abortable error means the
    /// transaction must be aborted; see [`TransactionError::class`].
    pub async fn commit_transaction(&self) -> TransactionResult {
        self.transact(CommitTransaction).await
    }

    /// Aborts the transaction: records not yet sent fail with
    /// [`TransactionError::Aborted`], none of the transaction becomes visible to
    /// read_committed consumers.
    ///
    /// A record of the transaction waiting for `buffer.memory` fails as aborted at once
    /// rather than holding the abort back (as Java's abort does not wait for a `send`
    /// blocked for memory).
    pub async fn abort_transaction(&self) -> TransactionResult {
        if self.shared.txn.is_none() {
            return self.transact(AbortTransaction).await;
        }
        // Before the message: a router waiting for buffer.memory reads its mailbox only once
        // the wait ends, which this ends.
        let request = self.shared.abort.request();
        let answer = self.router.send(AbortTransaction).await;
        if answer.is_ok() {
            request.answered();
        }
        answer.unwrap_or(Err(TransactionError::Closed))
    }

    /// Commits a consumer group's offsets with the open transaction (consume-transform-
    /// produce): they move only if the transaction commits.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: Vec<TopicPartitionOffset>,
        group_metadata: ConsumerGroupMetadata,
    ) -> TransactionResult {
        self.transact(SendOffsetsToTransaction {
            offsets,
            group_metadata,
        })
        .await
    }

    async fn transact<M>(&self, msg: M) -> TransactionResult
    where
        M: Message<Result = TransactionResult> + Send + 'static,
        Router: Handler<M>,
    {
        self.router
            .send(msg)
            .await
            .unwrap_or(Err(TransactionError::Closed))
    }

    /// The partitions of `topic` as the producer's metadata has them (Java's
    /// `partitionsFor`): each one's leader, replicas, in-sync and offline replicas. A topic
    /// the producer has no metadata for is fetched first, as a record for it would be, for
    /// up to max.block.ms; a broker that creates topics on demand creates it then.
    ///
    /// Errors: [`ErrorKind::InvalidTopic`] for a name Kafka does not allow,
    /// [`ErrorKind::MetadataTimeout`] (naming the connection errors behind it, if any) when
    /// the topic did not come within max.block.ms, [`ErrorKind::Broker`] for a topic error
    /// such as TOPIC_AUTHORIZATION_FAILED, [`ErrorKind::Authentication`], and the producer's
    /// own state (broken, closed).
    pub async fn partitions_for(&self, topic: &str) -> Result<Vec<PartitionInfo>, ErrorKind> {
        self.shared.partitions_for(topic).await
    }

    /// Waits until every record sent before the call has its outcome.
    pub async fn flush(&self) {
        let _ = self.router.send(Flush).await;
    }

    /// A snapshot of the metrics. Answered at once, not through the router's mailbox, which a
    /// record waiting for `buffer.memory` blocks (as Java's `metrics()` does not wait for a
    /// `send` blocked for memory); `async` only to keep the signature callers use.
    pub async fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics_snapshot()
    }

    /// Flushes for at most `timeout`, fails what remains with `Aborted`, and stops every actor
    /// of this producer. Returns `true` when everything was flushed.
    ///
    /// `timeout` counts from this call even when the router is waiting for `buffer.memory`:
    /// records still waiting for memory when it is up fail with `Closed`.
    pub async fn close(mut self, timeout: Duration) -> bool {
        // Before the message: a router waiting for buffer.memory reads its mailbox only
        // once the wait ends, which this bounds by the close's own time.
        self.shared.close.request(timeout);
        let flushed = self.router.send(Close { timeout }).await.unwrap_or(false);
        // The last figures, as the periodic publisher stops with the I/O arbiter.
        publisher::publish(&self.shared);
        if let Some(io) = self.io.take() {
            // Connections have closed gracefully by now (Close waits for them).
            io.stop();
        }
        if let Some(compress) = self.compress.take() {
            compress.stop();
        }
        if let Some(routing) = self.routing.take() {
            routing.stop();
        }
        flushed
    }

    /// Test-only handles on the producer's actors, to crash them on purpose.
    #[cfg(feature = "fault-injection")]
    pub fn fault_injection(&self) -> FaultInjection<'_> {
        FaultInjection { producer: self }
    }
}

/// Access to the producer's actors for fault-injection tests: each as the recipient of the
/// [`fault_injection`](crate::fault_injection) message it takes.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub struct FaultInjection<'a> {
    producer: &'a Producer,
}

#[cfg(feature = "fault-injection")]
impl FaultInjection<'_> {
    /// The metadata actor.
    pub fn metadata(&self) -> Option<Recipient<Crash>> {
        self.producer.shared.victims.metadata.get().cloned()
    }

    /// The transaction manager, with `transactional.id`.
    pub fn transaction_manager(&self) -> Option<Recipient<Crash>> {
        self.producer.shared.victims.transaction.get().cloned()
    }

    /// The interceptor actor, if interceptors are configured.
    pub fn interceptors(&self) -> Option<Recipient<Crash>> {
        self.producer.shared.victims.interceptors.get().cloned()
    }

    /// Connection actors of the brokers known now.
    pub fn connections(&self) -> Vec<Recipient<Crash>> {
        let brokers = &self.producer.shared.cluster.brokers;
        brokers.iter().map(|e| e.value().crash()).collect()
    }

    /// The sealer, if the producer compresses.
    pub fn sealer(&self) -> Option<Recipient<Stall>> {
        self.producer.shared.victims.sealer.get().cloned()
    }

    /// The sealer, for crashes, if the producer compresses.
    pub fn sealer_crash(&self) -> Option<Recipient<Crash>> {
        self.producer.shared.victims.sealer_crash.get().cloned()
    }

    /// Panics caught so far in the producer's actors.
    pub fn panics(&self) -> u64 {
        self.producer.shared.supervision.panics_total()
    }

    /// Accumulators started so far.
    pub async fn accumulators(&self) -> Vec<Recipient<Crash>> {
        self.producer
            .router
            .send(GetAccumulators)
            .await
            .unwrap_or_default()
    }

    /// Supervised restarts so far of the actors of one kind, named as the `kind` label of
    /// `herald_actor_restarts_total` (`router`, `accumulator`, `connection`, `metadata`,
    /// `interceptor`, `sealer`); `None` for another name.
    pub fn restarts_of(&self, kind: &str) -> Option<u64> {
        let kind = ActorKind::ALL.into_iter().find(|k| k.name() == kind)?;
        Some(self.producer.shared.supervision.restarts(kind))
    }

    /// The transaction protocol version of the open (or last) transaction: `None` without
    /// `transactional.id` or before the first begin.
    pub fn transaction_version(&self) -> Option<i16> {
        let status = self.producer.shared.txn.as_ref()?;
        (status.generation() > 0).then(|| if status.v2() { 2 } else { 1 })
    }

    /// Arms [`Crash::PanicWhileHolding`] for the actors of one kind (named as for
    /// [`restarts_of`](Self::restarts_of)) at once, not through their mailboxes: a router
    /// waiting for `buffer.memory` reads none until the wait ends. `false` for another name.
    pub fn arm_panic_while_holding(&self, kind: &str) -> bool {
        let Some(kind) = ActorKind::ALL.into_iter().find(|k| k.name() == kind) else {
            return false;
        };
        let victims = &self.producer.shared.victims;
        victims.armed[kind as usize].store(true, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Makes the linger clock's thread panic (it runs again, counted as kind `clock`).
    pub fn crash_clock(&self) {
        self.producer.shared.clock.crash();
    }

    /// Supervised restarts so far.
    pub fn restarts(&self) -> u64 {
        self.producer.shared.supervision.restarts_total()
    }
}
