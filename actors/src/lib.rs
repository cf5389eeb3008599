//! Herald: a pure-Rust Kafka producer as an actix actor system.
//!
//! Start a [`Producer`] inside a running actix system and send [`router::Produce`] messages
//! to its router; every record comes back with exactly one outcome, either as the reply to
//! `send()`, as a [`Delivered`] message to the mailbox named with `reply_to`, or inside a
//! [`Deliveries`] message to a [`Notifier`] (one message per batch, the cheapest per-record path).
//!
//! ```text
//!              Produce / ProduceBatch
//!  application ───────────────────────▶ Router ──(interceptors: OnSend ▶ Route)──┐
//!                                         │ partition from ClusterView (no message) │
//!                                         ▼                                        ◀┘
//!                           PartitionQueue (append under a lock)
//!                                         │ BatchStarted / BatchFilled (per batch)
//!                                         ▼
//!   Metadata ──ClusterChanged──▶ Accumulator (one per partition) ──SendBatches──▶ Connection
//!      │  publishes ClusterView            ▲                                  (one per broker,
//!      └──Call(Metadata, InitProducerId)───┼──────────────────────────────▶   own arbiter)
//!                                          └────────── BatchCompleted ◀────────┘
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use herald_actors::{Produce, Producer};
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let producer = Producer::from_pairs([("bootstrap.servers", "localhost:9092")])?;
//!     let md = producer
//!         .send(Produce::new("events").key("user-42").value("hello"))
//!         .await?;
//!     println!("{}-{} @ {}", md.topic, md.partition, md.offset);
//!     producer.close(Duration::from_secs(10)).await;
//!     Ok(())
//! }
//! ```
//!
//! Module map: [`router`] (front door, partitioning), [`accumulator`] (batches, retries,
//! completions), [`connection`] (sockets, in-flight queue), [`metadata`] (cluster view,
//! producer id), [`interceptor`], [`completion`] (outcome sinks), [`memory`]
//! (`buffer.memory`), [`metrics`], [`backoff`], [`messages`] (shared notifications).

pub mod accumulator;
pub mod backoff;
pub mod clock;
pub mod completion;
pub mod connection;
pub mod interceptor;
pub mod memory;
pub mod messages;
pub mod metadata;
pub mod metrics;
pub mod router;
pub mod sealer;
mod tls;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use herald::partitioner::{DefaultPartitioner, Partitioner};
use herald::{ConfigError, ErrorKind, ProduceError, ProducerConfig};

pub use completion::{Delivered, Deliveries, Notifier, Outcome};
pub use interceptor::ProducerInterceptor;
pub use metrics::MetricsSnapshot;
pub use router::{Close, Flush, GetMetrics, Produce, ProduceBatch, Router};

use interceptor::InterceptorChain;
use memory::MemoryPool;
use metadata::{ClusterView, Metadata};

/// State every actor of one producer shares. Only the named pieces are shared and mutable:
/// the cluster view (written by the metadata actor), the memory budget and the metrics.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: ProducerConfig,
    pub(crate) cluster: ClusterView,
    pub(crate) memory: MemoryPool,
    pub(crate) metrics: metrics::Metrics,
    /// Linger deadlines (a thread of its own; see [`clock`]).
    pub(crate) clock: clock::Clock,
    /// The arbiter (thread) that runs connection actors, away from the application's.
    pub(crate) io: ArbiterHandle,
    /// Compresses batches on a thread of its own; none without compression.
    pub(crate) sealer: Option<Addr<sealer::Sealer>>,
    pub(crate) metadata: OnceLock<Addr<Metadata>>,
    pub(crate) interceptors: OnceLock<Addr<InterceptorChain>>,
}

impl Shared {
    pub(crate) fn request_metadata_refresh(&self) {
        if let Some(m) = self.metadata.get() {
            m.do_send(metadata::Refresh);
        }
    }
}

/// Options beyond the Java config keys: a custom partitioner and interceptors.
pub struct ProducerBuilder {
    config: ProducerConfig,
    partitioner: Option<Box<dyn Partitioner>>,
    interceptors: Vec<Box<dyn ProducerInterceptor>>,
}

impl std::fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("config", &self.config)
            .field("partitioner", &self.partitioner)
            .field("interceptors", &self.interceptors.len())
            .finish()
    }
}

impl ProducerBuilder {
    /// Replaces the default (Java-compatible) partitioner.
    pub fn partitioner(mut self, partitioner: impl Partitioner + 'static) -> Self {
        self.partitioner = Some(Box::new(partitioner));
        self
    }

    /// Adds an interceptor; interceptors run in the order added.
    pub fn interceptor(mut self, interceptor: impl ProducerInterceptor) -> Self {
        self.interceptors.push(Box::new(interceptor));
        self
    }

    /// Starts the producer's actors on the current actix arbiter (connections get their own
    /// arbiter, compression another, linger deadlines a thread). Must be called inside a
    /// running actix system.
    pub fn start(self) -> Result<Producer, ConfigError> {
        let config = self.config;
        config.validate_supported()?;
        let io = Arbiter::new();
        let compress =
            (config.compression != herald::compression::Compression::None).then(Arbiter::new);
        // Like `Arbiter::new`, a thread the OS refuses is a panic, not a config error.
        let clock = clock::Clock::start().expect("cannot spawn the herald-linger thread");
        let partitioner = self.partitioner.unwrap_or_else(|| {
            Box::new(DefaultPartitioner::new(
                config.batch_size,
                config.partitioner_ignore_keys,
            ))
        });
        let shared = Arc::new(Shared {
            memory: MemoryPool::new(config.buffer_memory),
            config,
            cluster: ClusterView::default(),
            metrics: metrics::Metrics::default(),
            clock,
            io: io.handle(),
            sealer: compress
                .as_ref()
                .map(|a| sealer::Sealer::start_in_arbiter(&a.handle(), |_| sealer::Sealer)),
            metadata: OnceLock::new(),
            interceptors: OnceLock::new(),
        });
        let s = shared.clone();
        let router = Supervisor::start(move |ctx: &mut Context<Router>| {
            // Set before the address is handed out: actix enqueues a `send()` at once only while
            // the mailbox has room; past it the message waits inside the caller's future and
            // is enqueued when polled, which is slow and orders records by poll, not call.
            ctx.set_mailbox_capacity(router::MAILBOX_CAPACITY);
            Router::new(s, partitioner)
        });
        if !self.interceptors.is_empty() {
            let (i, r, s) = (self.interceptors, router.clone(), shared.clone());
            let chain = Supervisor::start(move |_| InterceptorChain::new(i, r, s));
            let _ = shared.interceptors.set(chain);
        }
        let s = shared.clone();
        let metadata = Supervisor::start(move |_| Metadata::new(s));
        metadata.do_send(metadata::Subscribe(router.clone().recipient()));
        let _ = shared.metadata.set(metadata);
        tracing::info!(client_id = %shared.config.client_id, "producer started");
        Ok(Producer {
            router,
            shared,
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
        }
    }

    /// The router's address: send `Produce`, `ProduceBatch`, `Flush`, `Close`, `GetMetrics`.
    pub fn router(&self) -> &Addr<Router> {
        &self.router
    }

    /// The effective configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Produces one record and waits for its outcome.
    pub async fn send(&self, produce: Produce) -> Outcome {
        self.router
            .send(produce)
            .await
            .unwrap_or_else(|_| Err(ProduceError::new(ErrorKind::Closed)))
    }

    /// Waits until every record sent before the call has its outcome.
    pub async fn flush(&self) {
        let _ = self.router.send(Flush).await;
    }

    /// A snapshot of the metrics.
    pub async fn metrics(&self) -> MetricsSnapshot {
        match self.router.send(GetMetrics).await {
            Ok(m) => m,
            Err(_) => self
                .shared
                .metrics
                .snapshot(self.shared.memory.available(), self.shared.memory.limit()),
        }
    }

    /// Flushes for at most `timeout`, fails what remains with `Aborted`, and stops every actor
    /// of this producer. Returns `true` when everything was flushed.
    pub async fn close(mut self, timeout: Duration) -> bool {
        let flushed = self.router.send(Close { timeout }).await.unwrap_or(false);
        if let Some(io) = self.io.take() {
            // Connections have closed gracefully by now (Close waits for them).
            io.stop();
        }
        if let Some(compress) = self.compress.take() {
            compress.stop();
        }
        flushed
    }

    /// Test-only handles on the producer's actors, to crash them on purpose.
    #[cfg(feature = "fault-injection")]
    pub fn fault_injection(&self) -> FaultInjection<'_> {
        FaultInjection { producer: self }
    }
}

/// Access to the producer's actors for fault-injection tests.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub struct FaultInjection<'a> {
    producer: &'a Producer,
}

#[cfg(feature = "fault-injection")]
impl FaultInjection<'_> {
    /// The metadata actor.
    pub fn metadata(&self) -> Option<Addr<Metadata>> {
        self.producer.shared.metadata.get().cloned()
    }

    /// The interceptor actor, if interceptors are configured.
    pub fn interceptors(&self) -> Option<Addr<InterceptorChain>> {
        self.producer.shared.interceptors.get().cloned()
    }

    /// Connection actors of the brokers known now.
    pub fn connections(&self) -> Vec<Addr<connection::Connection>> {
        self.producer
            .shared
            .cluster
            .brokers
            .iter()
            .map(|e| e.value().clone())
            .collect()
    }

    /// The sealer, if the producer compresses.
    pub fn sealer(&self) -> Option<Addr<sealer::Sealer>> {
        self.producer.shared.sealer.clone()
    }

    /// Accumulators started so far.
    pub async fn accumulators(&self) -> Vec<Addr<accumulator::Accumulator>> {
        self.producer
            .router
            .send(router::GetAccumulators)
            .await
            .unwrap_or_default()
    }

    /// Supervised restarts so far.
    pub fn restarts(&self) -> u64 {
        self.producer
            .shared
            .metrics
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
