//! [`Shared`]: the state every actor of one producer shares, and the links through which
//! actors reach the ones they did not start (as [`Recipient`]s: nothing here knows an actor
//! type).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use herald::sasl::SaslSettings;
use herald::{ErrorKind, PartitionInfo, ProducerConfig};

use crate::clock::Clock;
use crate::cluster::ClusterView;
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Victims;
use crate::intake::Intake;
use crate::memory::MemoryPool;
use crate::messages::application::{BeginTransaction, InitTransactions, SendOffsetsToTransaction};
use crate::messages::cluster::{
    AddTopics, BrokerNamed, BumpEpoch, ForgetTopics, PartitionsFor, Refresh, Subscribe,
};
use crate::messages::seal::Seal;
use crate::messages::transaction::{AddPartition, EndTransaction};
use crate::messages::Shutdown;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::otel::Tracing;
use crate::supervisor::Supervision;
use crate::tls::Tls;
use crate::token::TokenSource;
use crate::txn_status::TxnStatus;

/// State every actor of one producer shares. Only the named pieces are shared and mutable:
/// the cluster view (written by the metadata actor), the memory budget and the metrics.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ProducerConfig,
    pub(crate) cluster: ClusterView,
    /// `buffer.memory`; the intake holds it too, to take only what the batches leave.
    pub(crate) memory: Arc<MemoryPool>,
    pub(crate) metrics: Metrics,
    /// Trace context propagation and spans (feature `opentelemetry`; nothing without it).
    pub(crate) tracing: Tracing,
    /// TLS for every connection (SSL, SASL_SSL), built once at start.
    pub(crate) tls: Option<Tls>,
    /// SASL mechanism and credentials (SASL_PLAINTEXT, SASL_SSL), checked once at start.
    pub(crate) sasl: Option<SaslSettings>,
    /// OAUTHBEARER tokens from the application's provider, if it set one.
    pub(crate) tokens: Option<TokenSource>,
    /// Records of `Producer::send` waiting for the router (see [`intake`](crate::intake)).
    pub(crate) intake: Intake,
    /// Linger deadlines (a thread of its own; see [`clock`](crate::clock)).
    pub(crate) clock: Clock,
    /// The arbiter (thread) that runs connection actors, away from the application's.
    pub(crate) io: ArbiterHandle,
    /// Compresses batches on a thread of its own; none without compression.
    pub(crate) sealer: Option<Recipient<Seal>>,
    /// Panics caught per actor kind, and whether a restart storm broke the producer.
    pub(crate) supervision: Arc<Supervision>,
    /// The metadata actor, set once it is started.
    pub(crate) metadata: OnceLock<MetadataLink>,
    /// The transaction's status, with `transactional.id` only.
    pub(crate) txn: Option<TxnStatus>,
    /// Set by `Producer::close` before its `Close` enters the router's mailbox (see
    /// [`CloseSignal`]).
    pub(crate) close: CloseSignal,
    /// Set by `Producer::abort_transaction` before its abort enters the router's mailbox (see
    /// [`AbortSignal`]).
    pub(crate) abort: AbortSignal,
    /// The transaction manager, with `transactional.id` only, set once it is started.
    pub(crate) transaction: OnceLock<TransactionLink>,
    /// Actors for fault-injection tests.
    #[cfg(feature = "fault-injection")]
    pub(crate) victims: Victims,
}

impl Shared {
    /// Java's `partitionsFor`, for `Producer::partitions_for` and the router's
    /// `GetPartitions`: the metadata actor's answer, or the producer's own state (broken,
    /// closed).
    pub(crate) fn partitions_for(
        &self,
        topic: &str,
    ) -> impl std::future::Future<Output = Result<Vec<PartitionInfo>, ErrorKind>> + 'static {
        let asked = match (self.supervision.broken(), self.metadata.get()) {
            (Some(why), _) => Err(why.clone()),
            (None, None) => Err(ErrorKind::Closed),
            (None, Some(m)) => Ok(m.partitions_for.send(PartitionsFor(Arc::from(topic)))),
        };
        async move {
            match asked {
                Ok(answer) => answer.await.unwrap_or(Err(ErrorKind::Closed)),
                Err(e) => Err(e),
            }
        }
    }

    /// The metrics as `GetMetrics` and `Producer::metrics` answer them. Read here rather than
    /// in the router so that `Producer::metrics` does not queue behind a router waiting for
    /// `buffer.memory` (Java's `metrics()` reads its registry without the accumulator).
    pub(crate) fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self
            .metrics
            .snapshot(self.memory.available(), self.memory.limit());
        snapshot.actor_restart_total = self.supervision.restarts_total();
        snapshot.actor_panic_total = self.supervision.panics_total();
        snapshot
    }

    /// Asks the metadata actor for a refresh soon (it coalesces bursts).
    pub(crate) fn request_metadata_refresh(&self) {
        if let Some(m) = self.metadata.get() {
            m.refresh.do_send(Refresh::Stale);
        }
    }

    /// Tells metadata that an established connection was lost: it refreshes at once (see
    /// [`Refresh::BrokerLost`]).
    pub(crate) fn report_broker_lost(&self) {
        if let Some(m) = self.metadata.get() {
            m.refresh.do_send(Refresh::BrokerLost);
        }
    }

    /// Asks metadata for `topic`, which a partition's batches need a leader for: the topic
    /// may have been left out as idle (`metadata.max.idle.ms`) while batches of it were still
    /// out, as Java's sender adds the topics of leaderless batches back.
    pub(crate) fn want_topic(&self, topic: &Arc<str>) {
        if let Some(m) = self.metadata.get() {
            m.add_topics.do_send(AddTopics(vec![topic.clone()]));
        }
    }
}

/// The end of the time `Producer::close` gave, known to the router before it can read the
/// `Close` message: a record waiting for `buffer.memory` blocks the router's mailbox, and
/// without this the close would wait behind it for up to `max.block.ms` before its own
/// timeout even began. With it, records that wait for memory wait no longer than the close
/// allows (they are the records sent before the close, which it should still deliver if it
/// can), and are refused once that time is up, as Java's closed buffer pool fails the sends
/// blocked in it.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    deadline: OnceLock<tokio::time::Instant>,
    requested: tokio_util::sync::CancellationToken,
}

impl CloseSignal {
    /// Records the close's deadline and returns the one in force: the first close counts. A
    /// timeout past what the clock holds (`Duration::MAX`, for Java's `close()` without one)
    /// is a deadline 30 years out, as `tokio::time::timeout` makes of it, rather than an
    /// overflow panic.
    pub(crate) fn request(&self, timeout: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let far = || now + Duration::from_secs(86_400 * 365 * 30);
        let deadline = *self
            .deadline
            .get_or_init(|| now.checked_add(timeout).unwrap_or_else(far));
        self.requested.cancel();
        deadline
    }

    /// Resolves once a close was requested and its time is up.
    pub(crate) async fn passed(&self) {
        self.requested.cancelled().await;
        if let Some(deadline) = self.deadline.get() {
            tokio::time::sleep_until(*deadline).await;
        }
    }
}

/// Aborts `Producer::abort_transaction` asked for that the router has not handled yet, known
/// to the router before it can read them: a record waiting for `buffer.memory` blocks the
/// router's mailbox, and the abort would wait behind it (for the batches ahead to be
/// answered, or `max.block.ms`) only to fail that record as aborted. With this the wait
/// ends at once and the record fails as aborted then, as do later ones that would wait for
/// memory before the abort is handled: all were sent before the abort, in its transaction.
/// Java's `abortTransaction` does not wait for a `send` blocked for memory either.
#[derive(Debug, Default)]
pub(crate) struct AbortSignal {
    pending: std::sync::atomic::AtomicUsize,
    asked: tokio::sync::Notify,
}

impl AbortSignal {
    /// An abort is on its way to the router, until the router has handled it or the
    /// returned guard is dropped unanswered: an abort whose message never reaches the router
    /// (the caller dropped its future while the message still waited for room in the
    /// mailbox) would otherwise end every later wait for memory as aborted.
    pub(crate) fn request(&self) -> AbortRequest<'_> {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.asked.notify_waiters();
        AbortRequest {
            signal: self,
            answered: false,
        }
    }

    /// The router has handled an abort (one sent to its address directly counts nothing).
    pub(crate) fn handled(&self) {
        let _ = self.pending.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
    }

    /// Resolves once an abort is on its way (at once if one is). Registers before it looks,
    /// so a request between the look and the wait is not missed.
    pub(crate) async fn requested(&self) {
        loop {
            let asked = self.asked.notified();
            tokio::pin!(asked);
            asked.as_mut().enable();
            if self.pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return;
            }
            asked.await;
        }
    }
}

/// An abort counted in [`AbortSignal`]; dropped before [`answered`](Self::answered), it
/// counts itself handled. Counting one twice (the router handled it, and the caller dropped
/// its future before the answer came) only lets a later wait for memory run its course.
#[derive(Debug)]
pub(crate) struct AbortRequest<'a> {
    signal: &'a AbortSignal,
    answered: bool,
}

impl AbortRequest<'_> {
    /// The router answered: it counted the abort handled itself.
    pub(crate) fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for AbortRequest<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.signal.handled();
        }
    }
}

/// The metadata actor's mailbox, as the actors that did not start it reach it.
#[derive(Debug)]
pub(crate) struct MetadataLink {
    /// Router → metadata.
    pub(crate) add_topics: Recipient<AddTopics>,
    /// Router → metadata, for topics idle for `metadata.max.idle.ms`.
    pub(crate) forget_topics: Recipient<ForgetTopics>,
    /// Router → metadata, for each accumulator it starts.
    pub(crate) subscribe: Recipient<Subscribe>,
    /// Accumulators and connections → metadata (through [`Shared::request_metadata_refresh`]).
    pub(crate) refresh: Recipient<Refresh>,
    /// Accumulators → metadata.
    pub(crate) bump_epoch: Recipient<BumpEpoch>,
    /// Accumulators → metadata, when a Produce response names a broker as a new leader.
    pub(crate) broker_named: Recipient<BrokerNamed>,
    /// Producer and router → metadata (`Shared::partitions_for`).
    pub(crate) partitions_for: Recipient<PartitionsFor>,
    /// Router → metadata, at close.
    pub(crate) shutdown: Recipient<Shutdown>,
}

/// The transaction manager's mailbox, as the actors that did not start it reach it.
#[derive(Debug)]
pub(crate) struct TransactionLink {
    /// Router → transaction manager.
    pub(crate) init: Recipient<InitTransactions>,
    /// Router → transaction manager.
    pub(crate) begin: Recipient<BeginTransaction>,
    /// Router → transaction manager.
    pub(crate) send_offsets: Recipient<SendOffsetsToTransaction>,
    /// Router → transaction manager.
    pub(crate) end: Recipient<EndTransaction>,
    /// Accumulators → transaction manager.
    pub(crate) add_partition: Recipient<AddPartition>,
    /// Router → transaction manager, at close.
    pub(crate) shutdown: Recipient<Shutdown>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// The router ends a wait for memory while an abort is on its way, and only then: an
    /// abort it handled, or one whose message was dropped on the way, no longer counts.
    #[test]
    fn an_abort_counts_until_handled_or_dropped_unanswered() {
        let signal = AbortSignal::default();
        assert!(signal.requested().now_or_never().is_none(), "none asked");
        // Answered: the router counted it handled.
        let request = signal.request();
        assert!(signal.requested().now_or_never().is_some(), "on its way");
        signal.handled();
        request.answered();
        assert!(signal.requested().now_or_never().is_none(), "handled");
        // Its future dropped before the message reached the router.
        drop(signal.request());
        assert!(
            signal.requested().now_or_never().is_none(),
            "a dropped abort ends no later wait"
        );
        // Handled, then dropped before the answer came: counted twice, never below zero.
        let (first, second) = (signal.request(), signal.request());
        signal.handled();
        drop(first);
        assert!(signal.requested().now_or_never().is_none());
        drop(second);
        assert!(signal.requested().now_or_never().is_none());
    }
}
