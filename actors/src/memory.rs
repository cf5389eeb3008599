//! `buffer.memory`: one budget shared by every partition, reserved per batch when the batch
//! starts and released when it completes (as Java's `BufferPool`).
//!
//! Like Java's pool it also keeps the buffers of completed batches for new ones ([`Spare`]),
//! with their record slots. A fresh buffer is fresh memory: the kernel zeroes every page on
//! first touch and the allocator hands large blocks back to it when they are freed, and on
//! the console producer's run (1 MB batches) that page churn was a third of the router
//! thread's time. Spare buffers count against `buffer.memory` as free memory does in Java:
//! reserved plus spare bytes stay within the limit, and a reservation that needs the room
//! drops spares first.
//!
//! Java keeps only buffers of `batch.size`. Herald's batches also grow past it while their
//! partition waits for the batch before (see `router::grow`), and at full speed most batches
//! do: freeing those buffers made every such batch fresh memory again (a third of
//! `do_send`'s page faults, the rest its copies as it grew). So a grown batch's buffer is
//! kept too, counted at the bytes its batch had reserved (the most it was written to), and
//! handed only to a batch that will likely grow, which reserves those bytes in full.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::completion::RecordSlot;

/// The buffer and record slots of a completed batch, emptied, for a new batch.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) buf: BytesMut,
    pub(crate) slots: Vec<RecordSlot>,
    /// What the spare counts against the limit, and what the batch that takes it reserves:
    /// the reservation of the batch it served (at least the pooled size).
    pub(crate) bytes: usize,
}

#[derive(Debug, Default)]
struct Spares {
    /// Buffers of batches that reserved exactly `batch.size`.
    exact: Vec<Spare>,
    /// Buffers of batches that reserved more (grown ones, mostly).
    grown: Vec<Spare>,
    /// Sum of every spare's `bytes`.
    bytes: usize,
}

impl Spares {
    /// A spare of the given kind (grown or exact), if one is kept.
    fn pop(&mut self, grown: bool) -> Option<Spare> {
        let s = if grown {
            self.grown.pop()
        } else {
            self.exact.pop()
        }?;
        self.bytes -= s.bytes;
        Some(s)
    }
}

/// Bytes of `buffer.memory` that one batch (or one record waiting to start or grow a batch)
/// holds, given back to the pool when dropped. A batch is off every queue while it is
/// answered, sealed, split or handed to a connection: a panic there drops it while the stack
/// unwinds, where no explicit release runs, and each such panic shrank the buffer for good.
pub(crate) struct Reservation {
    bytes: usize,
    pool: Arc<MemoryPool>,
}

impl Reservation {
    /// Takes charge of `bytes` already reserved from `pool`.
    pub(crate) fn new(pool: &Arc<MemoryPool>, bytes: usize) -> Self {
        Reservation {
            bytes,
            pool: pool.clone(),
        }
    }

    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes charge of `extra` more bytes, already reserved from the pool.
    pub(crate) fn add(&mut self, extra: usize) {
        self.bytes += extra;
    }

    /// Takes charge of what `other` holds (of the same pool).
    pub(crate) fn absorb(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.pool, &other.pool), "one pool");
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Hands `bytes` of these (at most all of them) to a reservation of their own.
    pub(crate) fn split_off(&mut self, bytes: usize) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Reservation::new(&self.pool, bytes)
    }

    /// Gives the bytes back now, and says how many they were; nothing is left to give back
    /// when dropped.
    pub(crate) fn give_back(&mut self) -> usize {
        let bytes = std::mem::take(&mut self.bytes);
        self.pool.release(bytes);
        bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reservation").field(&self.bytes).finish()
    }
}

/// The shared budget.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
    /// `batch.size`: buffers smaller than this are not kept.
    poolable: usize,
    spares: Mutex<Spares>,
    /// Spares kept, readable without the lock.
    spare_count: AtomicUsize,
    /// Their bytes (`Spares::bytes`), readable without the lock.
    spare_bytes: AtomicUsize,
    /// A batch of the pooled size has asked for a spare. Only such a batch takes a grown
    /// buffer, so until one has, grown buffers are not kept: with a `batch.size` below any
    /// batch's size (0, taken as 1) none ever would, and every completed batch's buffer
    /// would be kept, up to `buffer.memory`, for nothing.
    pooled_asked: AtomicBool,
}

impl MemoryPool {
    /// A pool of `limit` bytes that keeps spare buffers of at least `poolable` bytes.
    pub fn new(limit: usize, poolable: usize) -> Self {
        MemoryPool {
            limit,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
            poolable,
            spares: Mutex::new(Spares::default()),
            spare_count: AtomicUsize::new(0),
            spare_bytes: AtomicUsize::new(0),
            pooled_asked: AtomicBool::new(false),
        }
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, spares: &Spares) {
        self.spare_count
            .store(spares.exact.len() + spares.grown.len(), Ordering::Relaxed);
        self.spare_bytes.store(spares.bytes, Ordering::Relaxed);
    }

    /// A spare for a batch that reserved `reserved` bytes, if one is kept. A batch that will
    /// likely grow (`growing`) may get a grown batch's buffer: its reservation then rises to
    /// the spare's bytes (returned as the spare's `bytes`), reserved here, so that what the
    /// buffer may hold stays counted. Other batches get only a buffer of their own size.
    pub(crate) fn take_spare(&self, reserved: usize, growing: bool) -> Option<Spare> {
        self.take(reserved, growing, true)
    }

    /// A grown batch's buffer for a batch of the pooled size that starts to grow: it moves
    /// its records there (see `router::grow`) rather than into fresh memory, and holds the
    /// spare's bytes from now on (reserved here).
    pub(crate) fn take_grown(&self, reserved: usize) -> Option<Spare> {
        self.take(reserved, true, false)
    }

    /// A grown spare if `grown` allows one and one is kept, else an exact one if `exact`
    /// allows it; only for batches that reserved the pooled size.
    fn take(&self, reserved: usize, grown: bool, exact: bool) -> Option<Spare> {
        if reserved != self.poolable {
            return None;
        }
        if !self.pooled_asked.load(Ordering::Relaxed) {
            self.pooled_asked.store(true, Ordering::Relaxed);
        }
        if self.spare_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut spares = self.spares();
        let taken = match grown.then(|| spares.pop(true)).flatten() {
            Some(s) => {
                // The spare's bytes were counted as spare; now they are the batch's. This
                // cannot pass the limit: they were within it as a spare.
                self.used
                    .fetch_add(s.bytes.saturating_sub(reserved), Ordering::AcqRel);
                Some(s)
            }
            None if exact => spares.pop(false),
            None => None,
        };
        self.count(&spares);
        taken
    }

    /// Keeps the buffer and slots of a completed batch that had reserved `reserved` bytes for
    /// a new batch, if there is room within the limit. Only buffers of at least the pooled
    /// size, of batches that reserved at least that: a spare counts as what its batch
    /// reserved, which bounds what was written to it. Call after releasing the batch's
    /// reservation.
    pub(crate) fn offer_spare(
        &self,
        reserved: usize,
        mut buf: BytesMut,
        mut slots: Vec<RecordSlot>,
    ) {
        if reserved < self.poolable || buf.capacity() < self.poolable || self.poolable == 0 {
            return;
        }
        if reserved > self.poolable && !self.pooled_asked.load(Ordering::Relaxed) {
            return;
        }
        let mut spares = self.spares();
        let used = self.used.load(Ordering::Relaxed);
        if used + spares.bytes + reserved > self.limit {
            return;
        }
        buf.clear();
        slots.clear();
        let spare = Spare {
            buf,
            slots,
            bytes: reserved,
        };
        spares.bytes += reserved;
        if reserved == self.poolable {
            spares.exact.push(spare);
        } else {
            spares.grown.push(spare);
        }
        self.count(&spares);
    }

    /// Drops spares (grown ones first) until reserved and spare bytes fit the limit again.
    fn trim_spares(&self) {
        if self.spare_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut spares = self.spares();
        let used = self.used.load(Ordering::Relaxed);
        while used + spares.bytes > self.limit
            && spares.pop(true).or_else(|| spares.pop(false)).is_some()
        {}
        self.count(&spares);
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

    /// Bytes the batches hold: reserved, and kept as spare buffers.
    #[inline(always)]
    pub(crate) fn held(&self) -> usize {
        self.used.load(Ordering::Relaxed) + self.spare_bytes.load(Ordering::Relaxed)
    }

    /// Whether `outside` more bytes (records held outside batches, see `intake`) fit within
    /// `bound` beside the batches. Spare buffers in the way are dropped, as they are for a
    /// reservation: they are memory the records would otherwise have to share.
    pub(crate) fn fits(&self, outside: usize, bound: usize) -> bool {
        let used = self.used.load(Ordering::Relaxed);
        if used + outside > bound {
            return false;
        }
        if self.spare_count.load(Ordering::Relaxed) > 0 {
            let mut spares = self.spares();
            while used + outside + spares.bytes > bound
                && spares.pop(true).or_else(|| spares.pop(false)).is_some()
            {}
            self.count(&spares);
        }
        true
    }

    /// Woken by the next release (see [`reserve`](Self::reserve)); for callers that wait for
    /// room beside the batches.
    pub(crate) fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
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
        let s = pool.spares();
        s.exact.len() + s.grown.len()
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
        // A small buffer is not kept, nor one of a batch that reserved less than the pooled
        // size.
        pool.offer_spare(100, BytesMut::with_capacity(10), Vec::new());
        pool.offer_spare(50, BytesMut::with_capacity(150), Vec::new());
        assert_eq!(spare_count(&pool), 2);
        // A reservation of another size gets no spare.
        assert!(pool.take_spare(150, true).is_none());
        // Three batches reserved: only one spare still fits beside them.
        assert!(pool.try_reserve(100) && pool.try_reserve(100) && pool.try_reserve(100));
        assert_eq!(spare_count(&pool), 1);
        let spare = pool
            .take_spare(100, false)
            .expect("a spare for a batch of the pooled size");
        assert!(spare.buf.is_empty() && spare.buf.capacity() >= 100);
        assert!(spare.slots.is_empty());
        // With the limit reached by reservations, a completed buffer is not kept.
        assert!(pool.try_reserve(100));
        pool.offer_spare(100, BytesMut::with_capacity(100), Vec::new());
        assert_eq!(spare_count(&pool), 0);
    }

    /// A grown batch's buffer is kept at what its batch reserved, goes only to a batch that
    /// will likely grow, and brings that reservation along; trimming drops it first.
    #[test]
    fn a_grown_buffer_serves_a_growing_batch_with_its_reservation() {
        let pool = MemoryPool::new(1000, 100);
        // Batches of the pooled size ask for spares (there is none yet).
        assert!(pool.take_spare(100, true).is_none());
        // A batch grew to 300 bytes and completed.
        assert!(pool.try_reserve(300));
        pool.release(300);
        pool.offer_spare(300, BytesMut::with_capacity(512), Vec::new());
        assert_eq!(spare_count(&pool), 1);
        assert_eq!(pool.available(), 1000);
        // A batch that will not grow gets no grown buffer.
        assert!(pool.try_reserve(100));
        assert!(pool.take_spare(100, false).is_none());
        // One that will: it holds the spare's 300 bytes from now on.
        let spare = pool.take_spare(100, true).expect("the grown buffer");
        assert_eq!(spare.bytes, 300);
        assert!(spare.buf.capacity() >= 300);
        assert_eq!(pool.available(), 700);
        pool.release(spare.bytes);
        pool.offer_spare(spare.bytes, spare.buf, spare.slots);
        // Spares and reservations together stay within the limit: reserving 800 leaves
        // room for no spare of 300, so it is dropped.
        assert!(pool.try_reserve(800));
        assert_eq!(spare_count(&pool), 0);
        assert!(pool.take_spare(100, true).is_none());
        // And a grown buffer is not kept when it would pass the limit.
        pool.offer_spare(300, BytesMut::with_capacity(300), Vec::new());
        assert_eq!(spare_count(&pool), 0);
    }

    /// A reservation gives its bytes back when dropped, once, whatever it was split into or
    /// merged with on the way.
    #[test]
    fn a_reservation_gives_back_what_it_holds_when_dropped() {
        let pool = Arc::new(MemoryPool::new(1000, 100));
        assert!(pool.try_reserve(300));
        let mut a = Reservation::new(&pool, 300);
        let b = a.split_off(100);
        assert_eq!((a.bytes(), b.bytes()), (200, 100));
        drop(b);
        assert_eq!(pool.available(), 800);
        assert!(pool.try_reserve(50));
        let mut c = Reservation::new(&pool, 50);
        c.absorb(a);
        assert_eq!(pool.available(), 750, "merging gives nothing back");
        assert!(pool.try_reserve(25));
        c.add(25);
        assert_eq!(c.give_back(), 275);
        assert_eq!(pool.available(), 1000);
        drop(c);
        assert_eq!(pool.available(), 1000, "given back once");
    }

    /// A grown buffer is kept only once a batch of the pooled size has asked for a spare:
    /// with batch.size 1 (0 as Java takes it) every batch is larger, none takes a grown
    /// buffer, and keeping them would fill buffer.memory with buffers nobody reuses.
    #[test]
    fn grown_buffers_are_kept_only_when_a_batch_of_the_pooled_size_could_take_them() {
        let pool = MemoryPool::new(1000, 1);
        for _ in 0..3 {
            assert!(pool.take_spare(150, false).is_none());
            assert!(pool.try_reserve(150));
            pool.release(150);
            pool.offer_spare(150, BytesMut::with_capacity(150), Vec::new());
        }
        assert_eq!(spare_count(&pool), 0, "no batch could take them");
        // Once a batch of the pooled size has asked, a grown buffer is worth keeping.
        assert!(pool.take_spare(1, true).is_none());
        pool.offer_spare(150, BytesMut::with_capacity(150), Vec::new());
        assert_eq!(spare_count(&pool), 1);
        assert_eq!(
            pool.take_spare(1, true).expect("the grown buffer").bytes,
            150
        );
    }
}
