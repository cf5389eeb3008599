//! Producer metrics, named as the Java producer names them. Plain atomics: every actor
//! updates them in place, `GetMetrics` reads a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters shared by all actors of one producer.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) record_send_total: AtomicU64,
    pub(crate) record_error_total: AtomicU64,
    pub(crate) record_retry_total: AtomicU64,
    pub(crate) record_resend_unknown_total: AtomicU64,
    pub(crate) batch_count: AtomicU64,
    pub(crate) batch_bytes: AtomicU64,
    pub(crate) batch_uncompressed_bytes: AtomicU64,
    pub(crate) request_count: AtomicU64,
    pub(crate) request_records: AtomicU64,
    pub(crate) request_latency_us: AtomicU64,
    pub(crate) response_count: AtomicU64,
    pub(crate) connection_creation_total: AtomicU64,
    pub(crate) metadata_refresh_total: AtomicU64,
    pub(crate) successful_reauthentication_total: AtomicU64,
    pub(crate) leader_hint_total: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self, buffer_available: usize, buffer_total: usize) -> MetricsSnapshot {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let l = |c: &AtomicU64| c.load(Relaxed);
        MetricsSnapshot {
            record_send_total: l(&self.record_send_total),
            record_error_total: l(&self.record_error_total),
            record_retry_total: l(&self.record_retry_total),
            record_resend_unknown_total: l(&self.record_resend_unknown_total),
            batch_size_avg: ratio(l(&self.batch_bytes), l(&self.batch_count)),
            records_per_request_avg: ratio(l(&self.request_records), l(&self.request_count)),
            request_latency_avg: ratio(l(&self.request_latency_us), l(&self.response_count))
                / 1000.0,
            request_total: l(&self.request_count),
            buffer_available_bytes: buffer_available as u64,
            buffer_total_bytes: buffer_total as u64,
            compression_rate_avg: ratio(l(&self.batch_bytes), l(&self.batch_uncompressed_bytes)),
            actor_restart_total: 0,
            actor_panic_total: 0,
            connection_creation_total: l(&self.connection_creation_total),
            metadata_refresh_total: l(&self.metadata_refresh_total),
            successful_reauthentication_total: l(&self.successful_reauthentication_total),
            leader_hint_total: l(&self.leader_hint_total),
        }
    }
}

/// A point-in-time copy of the metrics. Field names are the Java metric names in snake case.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Records acknowledged successfully.
    pub record_send_total: u64,
    /// Records that ended with an error.
    pub record_error_total: u64,
    /// Record sends that were retried (counted per record of each retried batch).
    pub record_retry_total: u64,
    /// Records sent again after their request was lost with its connection, so the broker
    /// may have them already (Herald-specific). With idempotence a deduplicating broker
    /// drops the copy; without, this bounds the duplicates a run can have.
    pub record_resend_unknown_total: u64,
    /// Average bytes per batch sent (after compression).
    pub batch_size_avg: f64,
    /// Average records per ProduceRequest.
    pub records_per_request_avg: f64,
    /// Average ProduceRequest round trip in milliseconds.
    pub request_latency_avg: f64,
    /// ProduceRequests sent.
    pub request_total: u64,
    /// `buffer.memory` not reserved by batches.
    pub buffer_available_bytes: u64,
    /// `buffer.memory`.
    pub buffer_total_bytes: u64,
    /// Compressed / uncompressed bytes of sent batches (1.0 without compression).
    pub compression_rate_avg: f64,
    /// Supervised actor restarts.
    pub actor_restart_total: u64,
    /// Panics caught in the producer's actors (each restarted the actor, until the limit).
    pub actor_panic_total: u64,
    /// TCP connections opened.
    pub connection_creation_total: u64,
    /// Metadata requests completed.
    pub metadata_refresh_total: u64,
    /// SASL re-authentications completed on open connections (KIP-368).
    pub successful_reauthentication_total: u64,
    /// Partitions moved to a new leader that a Produce response named (KIP-951), before any
    /// metadata refresh did (Herald-specific).
    pub leader_hint_total: u64,
}
