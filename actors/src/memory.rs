//! `buffer.memory`: one budget shared by every partition, reserved per batch when the batch
//! starts and released when it completes (as Java's `BufferPool`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The shared budget.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
}

impl MemoryPool {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryPool {
            limit,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Reserves `bytes` if they are free now.
    pub fn try_reserve(&self, bytes: usize) -> bool {
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
