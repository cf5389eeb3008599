//! A partition's queue of open and full batches: the one piece of state the router and the
//! partition's accumulator share. The router appends records under its lock (no message per
//! record); the accumulator drains full batches and seals them.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use herald::batch::BatchBuilder;
use herald::partitioner::QueueLoad;

use crate::completion::Completion;
use crate::otel::RecordTrace;

/// Per-record bookkeeping kept beside the encoded bytes.
#[derive(Debug)]
pub(crate) struct RecordSlot {
    /// Where the outcome goes.
    pub(crate) completion: Completion,
    /// CreateTime of the record.
    pub(crate) timestamp: i64,
    /// Serialized key size, `-1` for null.
    pub(crate) key_size: i32,
    /// Serialized value size, `-1` for null.
    pub(crate) value_size: i32,
    /// The trace context in its headers (feature `opentelemetry`; empty without it).
    pub(crate) trace: RecordTrace,
}

/// A batch still accepting records (or full, waiting to be sealed).
#[derive(Debug)]
pub(crate) struct OpenBatch {
    /// Per-partition id; ids grow in creation order, which is also send order.
    pub(crate) id: u64,
    /// The encoder.
    pub(crate) builder: BatchBuilder,
    /// One slot per appended record.
    pub(crate) records: Vec<RecordSlot>,
    /// When the first record arrived (linger and delivery timeout count from here).
    pub(crate) created: Instant,
    /// Bytes reserved from buffer.memory.
    pub(crate) reserved: usize,
}

/// The part of a partition the router writes into directly (under a lock, no message).
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    /// The batch records are appended to.
    pub(crate) open: Option<OpenBatch>,
    /// Batches that filled up, oldest first.
    pub(crate) full: VecDeque<OpenBatch>,
    /// The id the next batch gets.
    pub(crate) next_id: u64,
    /// The partition cannot send now (its batches in flight take every slot, or batches
    /// wait ahead): set by the accumulator. While it cannot, or while a full batch waits in
    /// `full`, the open batch may grow past `batch.size` up to `growth_cap`, in steps of
    /// `batch.size` reserved like new batches. A slow link then carries in one batch per
    /// round trip what Java sends as several pipelined batches of `batch.size`, and a burst
    /// makes one full batch and one grown one rather than a queue of small ones, each
    /// waiting a round trip.
    pub(crate) waiting: bool,
    /// `max.request.size` (or `batch.size` if larger); lowered to `batch.size` by the
    /// accumulator once the broker refused a batch as too large.
    pub(crate) growth_cap: usize,
}

impl PartitionQueue {
    /// The size the open batch may grow to now; 0 when it may not grow.
    pub(crate) fn grow_to(&self) -> usize {
        if self.waiting || !self.full.is_empty() {
            self.growth_cap
        } else {
            0
        }
    }

    /// What adaptive partitioning weighs: the unsent batches in units of `batch_size` (a
    /// batch grown while its partition waited counts as the batches Java would have queued
    /// instead), and how long the oldest has been past `linger`.
    pub(crate) fn load(&self, batch_size: usize, linger: Duration, now: Instant) -> QueueLoad {
        let units = |b: &OpenBatch| {
            let n = b.builder.size_in_bytes().div_ceil(batch_size.max(1)).max(1);
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let batches = self
            .full
            .iter()
            .chain(self.open.as_ref())
            .fold(0u32, |sum, b| sum.saturating_add(units(b)));
        let ready_for = self
            .full
            .front()
            .or(self.open.as_ref())
            .map_or(Duration::ZERO, |b| {
                now.saturating_duration_since(b.created + linger)
            });
        QueueLoad { batches, ready_for }
    }
}

/// Shared between the router (appends) and the accumulator (drains).
#[derive(Debug, Default)]
pub(crate) struct PartitionShared {
    queue: Mutex<PartitionQueue>,
}

impl PartitionShared {
    /// A queue whose open batch may grow to `growth_cap` while the partition waits.
    pub(crate) fn new(growth_cap: usize) -> Self {
        PartitionShared {
            queue: Mutex::new(PartitionQueue {
                growth_cap,
                ..PartitionQueue::default()
            }),
        }
    }

    /// Locks the queue. A poisoned lock (a panic while holding it) is taken over: the queue's
    /// invariants hold between statements, and losing the records would be worse.
    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
