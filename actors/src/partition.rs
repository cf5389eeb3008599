//! A partition's queue of open and full batches: the one piece of state the router and the
//! partition's accumulator share. The router appends records under its lock (no message per
//! record); the accumulator drains full batches and seals them.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use herald::batch::BatchBuilder;
use herald::partitioner::QueueLoad;

use crate::completion::RecordSlot;
use crate::memory::Reservation;

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
    pub(crate) reserved: Reservation,
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
    /// Batches the accumulator sealed that wait to be sent (retries, batches behind one in
    /// flight), as it last published them: adaptive partitioning counts them with the open
    /// and full ones, as Java counts every batch in a partition's queue.
    pub(crate) sealed: Unsent,
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
        let queued = Unsent::of(
            self.full
                .iter()
                .chain(self.open.as_ref())
                .map(|b| (b.builder.size_in_bytes(), b.created)),
            batch_size,
        );
        let batches = queued.batches.saturating_add(self.sealed.batches);
        let oldest = queued.oldest.into_iter().chain(self.sealed.oldest).min();
        let ready_for = oldest.map_or(Duration::ZERO, |created| {
            now.saturating_duration_since(created + linger)
        });
        QueueLoad { batches, ready_for }
    }
}

/// Batches of a partition that wait to be sent, in units of `batch.size` (at least one
/// each), and when the oldest was started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Unsent {
    pub(crate) batches: u32,
    pub(crate) oldest: Option<Instant>,
}

impl Unsent {
    /// From each batch's bytes and creation time.
    pub(crate) fn of(batches: impl Iterator<Item = (usize, Instant)>, batch_size: usize) -> Self {
        let mut unsent = Unsent::default();
        for (bytes, created) in batches {
            let units = bytes.div_ceil(batch_size.max(1)).max(1);
            unsent.batches = unsent
                .batches
                .saturating_add(u32::try_from(units).unwrap_or(u32::MAX));
            unsent.oldest = Some(unsent.oldest.map_or(created, |o| o.min(created)));
        }
        unsent
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPool;
    use herald::compression::Compression;
    use std::sync::Arc;

    fn open_batch(created: Instant, value_bytes: usize, records: usize) -> OpenBatch {
        let mut builder = BatchBuilder::new(1 << 20, Compression::None, None);
        let value = vec![7u8; value_bytes];
        for _ in 0..records {
            builder.try_append(0, None, Some(&value), &[]).unwrap();
        }
        OpenBatch {
            id: 0,
            builder,
            records: Vec::new(),
            created,
            reserved: Reservation::new(&Arc::new(MemoryPool::new(0, 0)), 0),
        }
    }

    /// Adaptive partitioning's view of a queue: every unsent batch counts in units of
    /// batch.size (a grown open batch as the batches it stands for, the accumulator's sealed
    /// ones as published), and the wait is the oldest batch's, past linger.ms.
    #[test]
    fn a_queue_load_counts_open_full_and_sealed_batches_by_batch_size() {
        let now = Instant::now();
        let linger = Duration::from_millis(5);
        let mut q = PartitionQueue::default();
        assert_eq!(q.load(1000, linger, now), QueueLoad::default());

        // An open batch of about 2,500 bytes: three units of 1,000.
        q.open = Some(open_batch(now - Duration::from_millis(20), 490, 5));
        let load = q.load(1000, linger, now);
        assert_eq!(load.batches, 3);
        assert_eq!(load.ready_for, Duration::from_millis(15));

        // A full batch ahead of it (one small record still counts one) and two sealed ones
        // (2,000 and 1 reserved bytes: 2 and 1), the oldest 100 ms old.
        q.full
            .push_back(open_batch(now - Duration::from_millis(40), 10, 1));
        q.sealed = Unsent::of(
            [
                (2000, now - Duration::from_millis(100)),
                (1, now - Duration::from_millis(50)),
            ]
            .into_iter(),
            1000,
        );
        let load = q.load(1000, linger, now);
        assert_eq!(load.batches, 3 + 1 + 3);
        assert_eq!(load.ready_for, Duration::from_millis(95));

        // Before linger.ms has passed nothing has waited yet.
        let fresh = PartitionQueue {
            open: Some(open_batch(now, 10, 1)),
            ..PartitionQueue::default()
        };
        assert_eq!(fresh.load(1000, linger, now).ready_for, Duration::ZERO);
    }
}
