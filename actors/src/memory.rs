//! `buffer.memory`: one budget shared by every partition, reserved per batch when the batch
//! starts and released when it completes (as Java's `BufferPool`).
//!
//! Like Java's pool it also keeps the buffers of completed batches of `batch.size` for new
//! ones ([`Spare`]), with their record slots. A fresh buffer is fresh memory: the kernel
//! zeroes every page on first touch and the allocator hands large blocks back to it when
//! they are freed, and on the console producer's run (1 MB batches) that page churn was a
//! third of the router thread's time. Spare buffers count against `buffer.memory` as free
//! memory does in Java: reserved plus spare bytes stay within the limit, and a reservation
//! that needs the room drops spares first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::partition::RecordSlot;

/// The buffer and record slots of a completed batch, emptied, for a new batch.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) buf: BytesMut,
    pub(crate) slots: Vec<RecordSlot>,
}

/// The shared budget.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
    /// `batch.size`: only buffers of this size are kept.
    poolable: usize,
    spares: Mutex<Vec<Spare>>,
    /// `spares.len()`, readable without the lock.
    spare_count: AtomicUsize,
}

impl MemoryPool {
    /// A pool of `limit` bytes that keeps spare buffers of `poolable` bytes.
    pub fn new(limit: usize, poolable: usize) -> Self {
        MemoryPool {
            limit,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
            poolable,
            spares: Mutex::new(Vec::new()),
            spare_count: AtomicUsize::new(0),
        }
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A spare for a batch that reserved `reserved` bytes, if one is kept.
    pub(crate) fn take_spare(&self, reserved: usize) -> Option<Spare> {
        if reserved != self.poolable || self.spare_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut spares = self.spares();
        let spare = spares.pop();
        self.spare_count.store(spares.len(), Ordering::Relaxed);
        spare
    }

    /// Keeps the buffer and slots of a completed batch that had reserved `reserved` bytes for
    /// a new batch, if the batch was of the pooled size and there is room within the limit.
    /// Only such batches: a spare counts as `batch.size` bytes, and the buffer of a batch made
    /// for one large record (or a compressed batch's) is another size. Call after releasing
    /// the batch's reservation.
    pub(crate) fn offer_spare(
        &self,
        reserved: usize,
        mut buf: BytesMut,
        mut slots: Vec<RecordSlot>,
    ) {
        if reserved != self.poolable || buf.capacity() < self.poolable || self.poolable == 0 {
            return;
        }
        let mut spares = self.spares();
        let used = self.used.load(Ordering::Relaxed);
        if used + (spares.len() + 1) * self.poolable > self.limit {
            return;
        }
        buf.clear();
        slots.clear();
        spares.push(Spare { buf, slots });
        self.spare_count.store(spares.len(), Ordering::Relaxed);
    }

    /// Drops spares until reserved and spare bytes fit the limit again.
    fn trim_spares(&self) {
        if self.spare_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut spares = self.spares();
        let used = self.used.load(Ordering::Relaxed);
        while !spares.is_empty() && used + spares.len() * self.poolable > self.limit {
            spares.pop();
        }
        self.spare_count.store(spares.len(), Ordering::Relaxed);
    }

    /// Reserves `bytes` if they are free now (spare buffers in the way are dropped).
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let reserved = self.reserve_bytes(bytes);
        if reserved {
            self.trim_spares();
        }
        reserved
    }

    fn reserve_bytes(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + bytes > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Waits up to `max_block` for `bytes` to become free; no polling, woken by releases.
    pub async fn reserve(&self, bytes: usize, max_block: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max_block;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_reserve(bytes) {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_reserve(bytes);
            }
        }
    }

    /// Returns `bytes` to the pool.
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(before >= bytes, "released more than reserved");
        self.freed.notify_waiters();
    }

    /// Bytes not reserved (Java's `buffer-available-bytes`).
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// The configured `buffer.memory`.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_count(pool: &MemoryPool) -> usize {
        pool.spares().len()
    }

    /// Reserved and spare bytes together never pass the limit, and a spare serves only a
    /// reservation of the pooled size.
    #[test]
    fn spares_stay_within_the_limit_and_make_room_for_reservations() {
        let pool = MemoryPool::new(4 * 100, 100);
        assert!(pool.try_reserve(100) && pool.try_reserve(100));
        // Both batches complete: their buffers are kept.
        for _ in 0..2 {
            pool.release(100);
            pool.offer_spare(100, BytesMut::with_capacity(100), Vec::new());
        }
        assert_eq!(spare_count(&pool), 2);
        assert_eq!(pool.available(), 400, "spare buffers count as available");
        // A small buffer is not kept, nor one of a batch that reserved another size.
        pool.offer_spare(100, BytesMut::with_capacity(10), Vec::new());
        pool.offer_spare(150, BytesMut::with_capacity(150), Vec::new());
        assert_eq!(spare_count(&pool), 2);
        // A reservation of another size gets no spare.
        assert!(pool.take_spare(150).is_none());
        // Three batches reserved: only one spare still fits beside them.
        assert!(pool.try_reserve(100) && pool.try_reserve(100) && pool.try_reserve(100));
        assert_eq!(spare_count(&pool), 1);
        let spare = pool
            .take_spare(100)
            .expect("a spare for a batch of the pooled size");
        assert!(spare.buf.is_empty() && spare.buf.capacity() >= 100);
        assert!(spare.slots.is_empty());
        // With the limit reached by reservations, a completed buffer is not kept.
        assert!(pool.try_reserve(100));
        pool.offer_spare(100, BytesMut::with_capacity(100), Vec::new());
        assert_eq!(spare_count(&pool), 0);
    }
}
