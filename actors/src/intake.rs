//! The intake of [`Producer::send`](crate::Producer::send) and
//! [`Producer::do_send`](crate::Producer::do_send): records that callers append under a lock
//! and the router takes in bulk, instead of one actix message (envelope, mailbox node, reply
//! channel) per record.
//!
//! Rules that keep `Producer::send` as safe as `router.send(Produce)`:
//! - **The router comes whenever the intake is not empty.** `router_coming` is set while a
//!   `DrainIntake` is in the router's mailbox, or while the router, having just taken
//!   records, will look again once the other tasks of its thread had a turn. The first
//!   record appended while it is clear queues `DrainIntake`, under the lock, so no record
//!   waits without the router coming. While records keep coming the router keeps looking,
//!   and callers never wake its thread: one wake-up per burst, not per handful of records
//!   (the router's thread parking and being woken for every drain cost more than routing
//!   the records did).
//! - **Order.** Every record of `Producer::send` and `Producer::do_send` goes through here,
//!   is taken in the order appended, and routed in that order. The router takes what waits
//!   here before it handles `Flush`, `Close` or a transaction's begin, commit or abort, so
//!   those cover (or precede) exactly the records appended before them. (A record sent to
//!   the router's mailbox directly is not ordered against records appended here after it.)
//! - **Bounded by buffer.memory, with the batches.** The records here, with those the router
//!   holds parked (waiting for metadata or for memory), may take only what the batches leave
//!   of `buffer.memory` (their reservations and the spare buffers kept for them, which give
//!   way as they do to a batch): a record that would take the whole past it is refused at
//!   once with `QueueFull`, its record handed back, and [`Intake::ready`] waits for room.
//!   Java blocks the sending thread instead; an async caller cannot be blocked, and a fast
//!   one would otherwise pile records up here for as long as a broker is away (librdkafka
//!   refuses with QUEUE_FULL the same way). Batches are not limited by what waits here: the
//!   records parked for memory wait for batches, so counting them against the batches'
//!   reservations would leave both waiting for each other. One record is always taken when
//!   nothing waits outside batches, and a record that no batch could ever hold (past
//!   `max.request.size` or `buffer.memory`, [`too_large`]) is taken whatever waits (one at
//!   a time), so it reaches the router and fails with its own reason (`RecordTooLarge`, as
//!   Java's `send` checks the size first), not with `QueueFull`, which says to try again; one that finds
//!   the batches full waits there for memory up to `max.block.ms`, as a record sent to the
//!   router does.
//! - **Exactly one outcome.** A record's `Completion` moves with it into the router, which
//!   completes it as any other; if the router is gone the record is refused here.
//! - **Freed where made.** Routed records come back ([`Intake::spent`]) with their
//!   completions moved on, and the next caller drops them: their buffers return to the
//!   allocator of the thread that made them. An idle router drops them itself.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use herald::batch::{record_size, RECORD_BATCH_OVERHEAD};
use herald::{ErrorKind, ProduceError, ProducerRecord};
use tokio::sync::Notify;

use crate::completion::Completion;
use crate::memory::MemoryPool;

/// A record appended by `Producer::send` and where its outcome goes.
pub(crate) type Entry = (ProducerRecord, Completion);

/// Records waiting for the router (see the module docs).
#[derive(Debug)]
pub(crate) struct Intake {
    state: Mutex<State>,
    /// `buffer.memory`, shared with the batches (see the module docs).
    pool: Arc<MemoryPool>,
    limit: usize,
    /// `max.request.size`: a record past it (or past `limit`) never fits a batch.
    max_request_size: usize,
    /// Bytes of the records the router holds parked (see `router::Parked`).
    parked: AtomicUsize,
    /// Bytes of the records the router took last and is routing: still held, until it
    /// says they are routed (into batches, or parked and counted there). Stored, not
    /// added: one take is routed at a time, so a router that panicked mid-route leaves a
    /// stale count only until its next take.
    routing: AtomicUsize,
    /// A caller waits in [`Intake::ready`]; whoever makes room wakes it.
    wanted: AtomicBool,
    room: Notify,
    /// Why the router went for good (see `State::gone`).
    gone_why: std::sync::OnceLock<ErrorKind>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Entry>,
    /// What `records` hold, by [`held_size`].
    bytes: usize,
    /// The router will take `records` without being asked (see the module docs).
    router_coming: bool,
    /// Records the router has routed, for the next caller to drop (see [`Intake::spent`]).
    spent: Vec<Entry>,
    /// `spent`'s buffer once a caller emptied it, for the router's next take.
    emptied: Vec<Entry>,
    /// The router is gone for good (the producer broke): it took what waited as it went
    /// ([`Intake::shut`]), and a record appended later is refused with `Intake::gone_why`.
    /// A caller that found the producer whole a moment before would otherwise leave its
    /// record here, its outcome never given. Read only when the router is not coming
    /// (`shut` clears that), off the path of every record.
    gone: bool,
    /// A record no batch could hold (see [`too_large`]) waits, taken past the limit: one
    /// such record at a time, so that a caller sending them while the router is held up
    /// cannot pile them up beyond the limit.
    oversized: bool,
    /// The most records one take took since the router last asked (see
    /// [`Intake::shrink_if_quiet`]).
    largest_take: usize,
}

/// What a record held outside a batch is counted as: its buffers, and the entry that holds
/// it and each header (so that a flood of empty records, or of empty headers, is not free).
#[inline(always)]
pub(crate) fn held_size(record: &ProducerRecord) -> usize {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, bytes::Bytes::len);
    let mut size = std::mem::size_of::<Entry>() + len(&record.key) + len(&record.value);
    for h in &record.headers {
        size += std::mem::size_of::<herald::record::Header>() + h.key.len() + len(&h.value);
    }
    size
}

/// `RecordTooLarge` for a record that cannot go even as a batch of its own: past
/// `max.request.size`, or past `buffer.memory` (Java's `ensureValidRecordSize`).
pub(crate) fn too_large(
    record: &ProducerRecord,
    max_request_size: usize,
    buffer_memory: usize,
) -> Option<ErrorKind> {
    if fits_surely(record, max_request_size.min(buffer_memory)) {
        return None;
    }
    let size = RECORD_BATCH_OVERHEAD
        + record_size(
            0,
            0,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
    let limits = [
        (
            max_request_size,
            "max.request.size",
            "the maximum request size",
        ),
        (buffer_memory, "buffer.memory", "the total memory buffer"),
    ];
    let &(max, key, limit) = limits.iter().find(|(max, ..)| size > *max)?;
    Some(ErrorKind::RecordTooLarge {
        size,
        max,
        key,
        limit,
    })
}

/// Whether a record is surely within `max` bytes as a batch of its own, without computing its
/// exact encoded size (which costs about as much as encoding it): a record without headers
/// takes at most 21 bytes beyond its key and value (the length, attributes, timestamp and
/// offset deltas, the key and value lengths and the header count, as varints).
#[inline(always)]
pub(crate) fn fits_surely(record: &ProducerRecord, max: usize) -> bool {
    const MOST_FIELDS: usize = 21;
    let key = record.key.as_ref().map_or(0, |k| k.len());
    let value = record.value.as_ref().map_or(0, |v| v.len());
    record.headers.is_empty()
        && RECORD_BATCH_OVERHEAD
            .saturating_add(MOST_FIELDS)
            .saturating_add(key)
            .saturating_add(value)
            <= max
}

impl Intake {
    /// An intake that holds, with the router's parked records, what the batches leave of
    /// `pool`'s limit.
    pub(crate) fn new(pool: Arc<MemoryPool>, max_request_size: usize) -> Self {
        Intake {
            state: Mutex::default(),
            limit: pool.limit(),
            max_request_size,
            pool,
            parked: AtomicUsize::new(0),
            routing: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
            room: Notify::new(),
            gone_why: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held in all (outside batches and by them), if another `size` bytes would take
    /// them past the limit (nothing outside batches: room for any one record).
    #[inline(always)]
    fn full(&self, queued: usize, size: usize) -> Option<usize> {
        let outside = queued + self.parked.load(Relaxed) + self.routing.load(Relaxed);
        if outside == 0 || outside + size + self.pool.held() <= self.limit {
            return None;
        }
        self.full_but_spares(outside, size)
    }

    /// The slow half of [`full`](Self::full): spare buffers may give way.
    #[cold]
    #[inline(never)]
    fn full_but_spares(&self, outside: usize, size: usize) -> Option<usize> {
        if self.pool.fits(outside + size, self.limit) {
            return None;
        }
        Some(outside + self.pool.held())
    }

    /// Waits until what is held, outside batches and by them, is at most half the limit, or
    /// `give_up` says the router will not come (a broken or closed producer). Registers
    /// before it looks, so room made between the look and the wait is not missed: a take
    /// routed, a parked record leaving, a batch's memory released. Looks again every 100 ms
    /// besides, for a router that went away while it waited. Calls `exhausted` (once) when it
    /// has to wait with no room left at all, for the lingering batches to go.
    pub(crate) async fn ready(&self, give_up: impl Fn() -> bool, exhausted: impl FnOnce()) {
        let mut exhausted = Some(exhausted);
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let released = self.pool.released();
            tokio::pin!(released);
            released.as_mut().enable();
            self.wanted.store(true, SeqCst);
            std::sync::atomic::fence(SeqCst);
            let queued = self.lock().bytes;
            let outside = queued + self.parked.load(SeqCst) + self.routing.load(SeqCst);
            if self.pool.fits(outside, self.limit / 2) || give_up() {
                return;
            }
            if outside + self.pool.held() >= self.limit {
                if let Some(f) = exhausted.take() {
                    f();
                }
            }
            let room = futures_util::future::select(notified, released);
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), room).await;
        }
    }

    /// Counts `bytes` of a record the router parked (see `router::Parked`).
    pub(crate) fn park(&self, bytes: usize) {
        self.parked.fetch_add(bytes, Relaxed);
    }

    /// A parked record left its queue: its bytes no longer count, and waiters may go on.
    pub(crate) fn unpark(&self, bytes: usize) {
        self.parked.fetch_sub(bytes, SeqCst);
        self.made_room();
    }

    /// The router has routed what it took last: those records are in batches now, or parked
    /// and counted as such.
    pub(crate) fn routed(&self) {
        self.routing.store(0, SeqCst);
        self.made_room();
    }

    /// Wakes the callers waiting in [`ready`](Self::ready), if any: once a take is routed, or
    /// when a parked record leaves. A fence and a relaxed load when nobody waits (per take, not per
    /// record).
    #[inline]
    fn made_room(&self) {
        std::sync::atomic::fence(SeqCst);
        if self.wanted.load(Relaxed) && self.wanted.swap(false, Relaxed) {
            self.room.notify_waiters();
        }
    }

    /// Appends a record. When the router is not coming, `queue_drain` is called under the
    /// intake's lock to send it `DrainIntake`; when it is, `alive` tells whether the router
    /// still runs. A record not taken goes to `on_refused` with why ([`Refusal`]): past the
    /// limit, the caller refuses it ([`Intake::refuse_full`]) or keeps it to try again;
    /// otherwise (the router gone, a record no batch could hold) it answers it with the
    /// error, counted where the caller counts refusals. Inlined into its callers, so that
    /// the record is moved once, from the caller's frame into the intake (callgrind: one
    /// `memcpy` per record less).
    #[inline(always)]
    pub(crate) fn append(
        &self,
        record: ProducerRecord,
        completion: Completion,
        queue_drain: impl FnOnce() -> bool,
        alive: impl FnOnce() -> bool,
        on_refused: impl FnOnce(ProducerRecord, Completion, Refusal),
    ) {
        let mut size = held_size(&record);
        let mut s = self.lock();
        if let Some(held) = self.full(s.bytes, size) {
            if s.oversized || self.never_fits(&record).is_none() {
                drop(s);
                return on_refused(record, completion, Refusal::Full { held });
            }
            // No room would help it: taken past the limit (one such record at a time), so
            // that the router refuses it as too large, as any other (the interceptors and
            // an open transaction hear of it), not as full, which says to try again.
            // Counted as its entry meanwhile, so that no caller is refused for room it will
            // never take.
            s.oversized = true;
            size = std::mem::size_of::<Entry>();
        }
        let reachable = if s.router_coming {
            alive()
        } else if s.gone {
            drop(s);
            let why = self.gone_why.get().cloned().unwrap_or(ErrorKind::Closed);
            return on_refused(record, completion, Refusal::Final(why));
        } else {
            let queued = queue_drain();
            s.router_coming = queued;
            queued
        };
        if !reachable {
            drop(s);
            return on_refused(record, completion, Refusal::Final(ErrorKind::Closed));
        }
        s.records.push((record, completion));
        s.bytes += size;
        if s.spent.is_empty() {
            return;
        }
        let spent = std::mem::take(&mut s.spent);
        drop(s);
        self.free(spent);
    }

    /// Why `record` could not go even as a batch of its own (see [`too_large`]).
    #[cold]
    #[inline(never)]
    fn never_fits(&self, record: &ProducerRecord) -> Option<ErrorKind> {
        too_large(record, self.max_request_size, self.limit)
    }

    /// Drops spent records no caller came to drop: the router calls it when a look finds
    /// nothing, so an idle producer does not keep them.
    pub(crate) fn drop_spent(&self) {
        let spent = std::mem::take(&mut self.lock().spent);
        if !spent.is_empty() {
            self.free(spent);
        }
    }

    /// Shrinks the buffers a burst grew (see [`shrink_idle`]) if no take since the last call
    /// took more than [`KEEP_IDLE`] records, and says whether it was so: the router calls it
    /// once a second, and shrinks its own spare buffer likewise. Under repeated bursts the
    /// room stays, rather than be grown again under the lock at each.
    pub(crate) fn shrink_if_quiet(&self) -> bool {
        let mut s = self.lock();
        let quiet = s.largest_take <= KEEP_IDLE;
        s.largest_take = 0;
        if quiet {
            shrink_idle(&mut s.records);
            shrink_idle(&mut s.emptied);
            shrink_idle(&mut s.spent);
        }
        quiet
    }

    /// Drops `spent`'s records outside the lock and keeps its buffer for the router's next
    /// take (the larger one, if one is kept already).
    #[inline(never)]
    fn free(&self, mut spent: Vec<Entry>) {
        spent.clear();
        let mut s = self.lock();
        if s.emptied.capacity() < spent.capacity() {
            s.emptied = spent;
        }
    }

    /// Gives back records the router has routed (their keys and values copied into batches,
    /// their completions moved on), for the next caller to drop, and returns a buffer for
    /// the router's next take. Dropped on the router's thread, the buffers of records made
    /// on a caller's thread went into the router's allocator caches, and the caller's next
    /// allocations missed its own: in `perf`, two thirds of `_int_malloc`'s 11.6% of the
    /// process was the first read of a chunk the router's thread had freed. Freed by the
    /// caller, they are the caller's next allocations. When the previous spent records are
    /// still there (no caller came), the router drops these itself.
    pub(crate) fn spent(&self, mut routed: Vec<Entry>) -> Vec<Entry> {
        let mut s = self.lock();
        if s.spent.is_empty() && !routed.is_empty() {
            std::mem::swap(&mut s.spent, &mut routed);
        }
        let mut spare = std::mem::take(&mut s.emptied);
        drop(s);
        if !routed.is_empty() {
            routed.clear();
            if routed.capacity() > spare.capacity() {
                spare = routed;
            }
        }
        spare
    }

    /// Refuses a record over the limit with `QueueFull`, `held` bytes being held.
    #[cold]
    pub(crate) fn refuse_full(&self, record: ProducerRecord, completion: Completion, held: usize) {
        let kind = ErrorKind::QueueFull {
            held_bytes: held as u64,
            limit_bytes: self.limit as u64,
        };
        completion.complete(Err(ProduceError::refused(kind, record)));
    }

    /// Takes every waiting record for a router that is gone for good, `why`, and refuses
    /// every later one with that, in one step under the lock: no append falls between.
    pub(crate) fn shut(&self, taken: &mut Vec<Entry>, why: ErrorKind) {
        let _ = self.gone_why.set(why);
        let mut s = self.lock();
        std::mem::swap(&mut s.records, taken);
        s.bytes = 0;
        s.oversized = false;
        s.router_coming = false;
        s.gone = true;
    }

    /// Records waiting for the router now.
    pub(crate) fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Takes every waiting record, in the order appended, leaving `spare` (emptied) in their
    /// place so the two buffers are reused. For the router's `DrainIntake` (`answering`) it
    /// settles the promise: it returns whether the router must come back (it took records,
    /// and callers rely on it to look again; when it took none, the next append queues a
    /// `DrainIntake`). Other takers (a flush taking what waits first) leave the promise to
    /// whatever made it, and get `false`. The taken records stay counted against the limit
    /// until the router says they are [`routed`](Self::routed).
    pub(crate) fn take(&self, spare: &mut Vec<Entry>, answering: bool) -> bool {
        spare.clear();
        let mut s = self.lock();
        std::mem::swap(&mut s.records, spare);
        s.oversized = false;
        s.largest_take = s.largest_take.max(spare.len());
        // Under the lock, so that an append never sees the taken records counted nowhere.
        self.routing.store(std::mem::take(&mut s.bytes), Relaxed);
        if answering {
            s.router_coming = !spare.is_empty();
        }
        answering && s.router_coming
    }
}

/// Entries a buffer of the intake keeps once takes are small (see [`shrink_idle`]).
pub(crate) const KEEP_IDLE: usize = 16_384;

/// Shrinks a buffer of entries that holds room for more than four times [`KEEP_IDLE`] to
/// that. The intake's three buffers (its own, the router's spare and the one emptied of
/// spent records) grow to what the router takes at once, up to `buffer.memory`'s worth of
/// entries after a burst (an entry is 168 bytes however small its record: 200,000 of
/// them, 34 MB each, for 32 MiB of empty records), and kept that room for the producer's
/// lifetime, beside `buffer.memory`. Below the bound the room is kept: fresh pages cost
/// more than the reuse saves (see [`Intake::spent`]); and it shrinks only after a second of
/// small takes ([`Intake::shrink_if_quiet`]).
pub(crate) fn shrink_idle(buffer: &mut Vec<Entry>) {
    if buffer.capacity() > 4 * KEEP_IDLE {
        buffer.shrink_to(KEEP_IDLE);
    }
}

/// Why [`Intake::append`] did not take a record.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No room now, `held` bytes being held (outside batches and by them).
    Full { held: usize },
    /// Refused for good with this: no router will take it (`Closed`, or why the producer
    /// broke), or no batch could hold it (`RecordTooLarge`).
    Final(ErrorKind),
}

impl Refusal {
    /// Answers a record refused for good; a record past the limit is refused as full.
    #[cold]
    pub(crate) fn answer(self, intake: &Intake, record: ProducerRecord, completion: Completion) {
        match self {
            Refusal::Full { held } => intake.refuse_full(record, completion, held),
            Refusal::Final(kind) => completion.complete(Err(ProduceError::refused(kind, record))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::slot;
    use futures_util::FutureExt;
    use std::cell::Cell;

    fn record(i: u8) -> ProducerRecord {
        let mut r = ProducerRecord::new("t");
        r.value = Some(bytes::Bytes::from(vec![i]));
        r
    }

    /// Refuses a record past the limit, as `Producer::send` does.
    fn refusing(intake: &Intake) -> impl FnOnce(ProducerRecord, Completion, Refusal) + '_ {
        move |r, c, why| why.answer(intake, r, c)
    }

    /// Notes a refusal as full in `full`; answers one for good.
    fn noting_full<'a>(
        intake: &'a Intake,
        full: &'a Cell<bool>,
    ) -> impl FnOnce(ProducerRecord, Completion, Refusal) + 'a {
        move |r, c, why| match why {
            Refusal::Full { .. } => full.set(true),
            other => other.answer(intake, r, c),
        }
    }

    /// Appends record `i` to a router that is coming; its outcome, if any.
    fn append_to(intake: &Intake, i: u8) -> crate::completion::SlotReceiver {
        let (tx, rx) = slot();
        intake.append(
            record(i),
            Completion::slot(tx),
            || true,
            || true,
            refusing(intake),
        );
        rx
    }

    /// An intake with a pool of `limit` bytes of its own.
    fn intake_of(limit: usize) -> Intake {
        Intake::new(Arc::new(MemoryPool::new(limit, 16)), usize::MAX)
    }

    fn value(r: &ProducerRecord) -> u8 {
        r.value.as_ref().expect("a value")[0]
    }

    /// Each header is counted with the struct that holds it: 10,000 empty headers encode
    /// to about 20 KB but hold 10,000 `Header`s (two words of key, four of value).
    #[test]
    fn empty_headers_are_not_free() {
        let bare = held_size(&record(0));
        let mut r = record(0);
        r.headers = (0..10_000)
            .map(|_| herald::Header::new("", bytes::Bytes::new()))
            .collect();
        assert_eq!(
            held_size(&r) - bare,
            10_000 * std::mem::size_of::<herald::Header>()
        );
    }

    /// A record past `max.request.size` or `buffer.memory` is taken though others wait and
    /// the limit is reached, so that the router refuses it as too large (not as full), and it
    /// counts as its entry alone meanwhile; but one at a time: before, every such record was
    /// taken, and a caller sending them while the router was held up kept them all in
    /// memory. One that merely does not fit now is refused as full.
    #[test]
    fn a_record_no_batch_could_hold_is_taken_for_the_router_to_refuse_one_at_a_time() {
        let entry = std::mem::size_of::<Entry>();
        let intake = Intake::new(Arc::new(MemoryPool::new(2 * entry + 250, 16)), 400);
        let _first = append_to(&intake, 1);
        let with_value = |n: usize| {
            let mut r = record(0);
            r.value = Some(bytes::Bytes::from(vec![0u8; n]));
            r
        };
        // Offers a record of `n` bytes of value; whether it was refused as full.
        let refused_as_full = |n: usize| {
            let full = Cell::new(false);
            let on_full = noting_full(&intake, &full);
            intake.append(
                with_value(n),
                Completion::discard(),
                || true,
                || true,
                on_full,
            );
            full.get()
        };
        assert!(
            !refused_as_full(600),
            "past max.request.size: taken, for the router to refuse"
        );
        assert_eq!(intake.len(), 2);
        assert_eq!(intake.lock().bytes, held_size(&record(1)) + entry);
        for _ in 0..1000 {
            assert!(
                refused_as_full(600),
                "one such record waits already: refused as full"
            );
        }
        assert_eq!(intake.len(), 2, "one oversized record held, not a thousand");
        assert!(
            refused_as_full(300),
            "within the limits but not now: refused as full"
        );
        // Once the router took them, the next one is taken again.
        let mut taken = Vec::new();
        intake.take(&mut taken, true);
        intake.routed();
        assert!(!refused_as_full(100));
        assert!(!refused_as_full(600), "the next oversized record is taken");
        assert_eq!(intake.len(), 2);
    }

    /// A router gone for good takes what waits and leaves the intake refusing: a record
    /// appended after it, by a caller that found the producer whole a moment before (the
    /// router still counted as coming), is refused with the reason at once. Before, it
    /// stayed in the intake with nobody to take it, its outcome never given.
    #[test]
    fn a_record_appended_after_the_router_went_is_refused_with_the_reason() {
        let intake = intake_of(1 << 20);
        let _first = append_to(&intake, 1);
        let mut taken = Vec::new();
        let why = ErrorKind::Closed;
        intake.shut(&mut taken, why.clone());
        assert_eq!(taken.len(), 1);
        let e = append_to(&intake, 2)
            .now_or_never()
            .expect("answered at once")
            .expect_err("refused");
        assert_eq!(e.kind(), &why);
        assert_eq!(intake.len(), 0, "nothing left behind");
    }

    /// After a burst the buffers the router and the intake pass between them shrink once
    /// a look finds nothing: before, each kept room for the whole burst for good.
    #[test]
    fn buffers_a_burst_grew_shrink_once_the_router_finds_nothing() {
        let intake = intake_of(1 << 30);
        let burst = 10 * KEEP_IDLE;
        let mut spare = Vec::new();
        for _ in 0..3 {
            for i in 0..burst {
                let r = record(i as u8);
                intake.append(
                    r,
                    Completion::discard(),
                    || true,
                    || true,
                    refusing(&intake),
                );
            }
            assert!(intake.take(&mut spare, true));
            assert_eq!(spare.len(), burst);
            intake.routed();
            spare = intake.spent(spare);
        }
        let capacities = |spare: &Vec<Entry>| {
            let s = intake.lock();
            [
                s.records.capacity(),
                s.emptied.capacity(),
                s.spent.capacity(),
                spare.capacity(),
            ]
        };
        assert!(
            capacities(&spare).iter().filter(|&&c| c >= burst).count() >= 2,
            "the burst grew the buffers: {:?}",
            capacities(&spare)
        );
        // The router's next look finds nothing; its check within the second of the burst
        // keeps the room, the next one, after a second of small takes, shrinks it.
        assert!(!intake.take(&mut spare, true));
        intake.drop_spent();
        assert!(!intake.shrink_if_quiet(), "a large take in this second");
        assert!(capacities(&spare).iter().filter(|&&c| c >= burst).count() >= 2);
        assert!(intake.shrink_if_quiet(), "only small takes since");
        shrink_idle(&mut spare);
        let after = capacities(&spare);
        assert!(
            after.iter().all(|&c| c <= 4 * KEEP_IDLE),
            "kept after the burst: {after:?}"
        );
    }

    #[test]
    fn the_router_is_asked_once_and_looks_again_while_records_come() {
        let intake = intake_of(1 << 20);
        let queued = Cell::new(0);
        let queue = || {
            queued.set(queued.get() + 1);
            true
        };
        let alive = || true;
        let mut receivers = Vec::new();
        let mut append = |i: u8| {
            let (tx, rx) = slot();
            receivers.push(rx);
            intake.append(
                record(i),
                Completion::slot(tx),
                queue,
                alive,
                refusing(&intake),
            );
        };
        for i in 0..3 {
            append(i);
        }
        assert_eq!(queued.get(), 1, "one drain for the three records");
        let mut taken = Vec::new();
        assert!(
            intake.take(&mut taken, true),
            "it took records: it comes back"
        );
        let values: Vec<u8> = taken.iter().map(|(r, _)| value(r)).collect();
        assert_eq!(values, [0, 1, 2]);
        append(3);
        assert_eq!(queued.get(), 1, "the router comes back: no new drain");
        let mut other = Vec::new();
        intake.take(&mut other, false);
        assert_eq!(other.len(), 1, "a flush takes what waits");
        assert!(
            !intake.take(&mut taken, true),
            "nothing left: it stops looking"
        );
        assert!(taken.is_empty());
        append(4);
        assert_eq!(queued.get(), 2, "the first record after that asks again");
        assert!(intake.take(&mut taken, true));
        assert_eq!(taken.len(), 1);
        drop(receivers);
    }

    #[test]
    fn a_record_the_router_cannot_take_is_refused_with_its_record() {
        let intake = intake_of(1 << 20);
        let (tx, rx) = slot();
        intake.append(
            record(9),
            Completion::slot(tx),
            || false,
            || true,
            refusing(&intake),
        );
        let err = futures_util::FutureExt::now_or_never(rx)
            .expect("answered")
            .expect_err("refused");
        assert!(matches!(err.kind(), ErrorKind::Closed));
        assert_eq!(value(&err.into_record().expect("the record")), 9);
        let mut taken = Vec::new();
        intake.take(&mut taken, true);
        assert!(taken.is_empty(), "nothing waits");

        // The router was coming, and is gone before it came.
        let (tx, _rx) = slot();
        intake.append(
            record(1),
            Completion::slot(tx),
            || true,
            || true,
            refusing(&intake),
        );
        let (tx, rx) = slot();
        intake.append(
            record(2),
            Completion::slot(tx),
            || true,
            || false,
            refusing(&intake),
        );
        let err = futures_util::FutureExt::now_or_never(rx)
            .expect("answered")
            .expect_err("refused");
        assert!(matches!(err.kind(), ErrorKind::Closed));
        assert_eq!(value(&err.into_record().expect("the record")), 2);
    }

    /// A value buffer that notes the thread it is freed on.
    struct Noted(std::sync::Arc<Mutex<Option<std::thread::ThreadId>>>);

    impl AsRef<[u8]> for Noted {
        fn as_ref(&self) -> &[u8] {
            b"v"
        }
    }

    impl Drop for Noted {
        fn drop(&mut self) {
            *self.0.lock().expect("note") = Some(std::thread::current().id());
        }
    }

    /// A record whose value notes where it is freed, and that note.
    fn noted() -> (
        ProducerRecord,
        std::sync::Arc<Mutex<Option<std::thread::ThreadId>>>,
    ) {
        let freed = std::sync::Arc::new(Mutex::new(None));
        let mut r = ProducerRecord::new("t");
        r.value = Some(bytes::Bytes::from_owner(Noted(freed.clone())));
        (r, freed)
    }

    #[test]
    fn routed_records_are_freed_by_the_next_caller_or_by_an_idle_router() {
        let intake = std::sync::Arc::new(intake_of(1 << 20));
        let (r, freed) = noted();
        intake.append(
            r,
            Completion::discard(),
            || true,
            || true,
            refusing(&intake),
        );
        // The router, on a thread of its own: takes, routes (here: nothing), gives back.
        let router = {
            let intake = intake.clone();
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                intake.take(&mut taken, true);
                assert_eq!(taken.len(), 1);
                let spare = intake.spent(taken);
                assert!(spare.is_empty(), "a spare for the next take");
                std::thread::current().id()
            })
        }
        .join()
        .expect("router thread");
        assert_eq!(
            *freed.lock().expect("note"),
            None,
            "kept for the next caller"
        );
        intake.append(
            record(1),
            Completion::discard(),
            || true,
            || true,
            refusing(&intake),
        );
        let caller = std::thread::current().id();
        assert_eq!(
            *freed.lock().expect("note"),
            Some(caller),
            "freed by the caller"
        );
        assert_ne!(caller, router);

        // Nobody appends after the router gave its records back: the router's next look
        // finds nothing and frees them.
        let (r, freed) = noted();
        intake.append(
            r,
            Completion::discard(),
            || true,
            || true,
            refusing(&intake),
        );
        let mut taken = Vec::new();
        intake.take(&mut taken, true);
        assert_eq!(taken.len(), 2);
        let mut spare = intake.spent(taken);
        assert!(!intake.take(&mut spare, true), "nothing waits");
        assert_eq!(*freed.lock().expect("note"), None);
        intake.drop_spent();
        assert!(
            freed.lock().expect("note").is_some(),
            "freed by the idle router"
        );
        assert!(
            intake.spent(Vec::new()).capacity() >= 2,
            "its buffer kept for the router's next take"
        );

        // Spent records not yet freed when the router gives back more: it frees those.
        let (first, first_freed) = noted();
        let (second, second_freed) = noted();
        let _ = intake.spent(vec![(first, Completion::discard())]);
        let _ = intake.spent(vec![(second, Completion::discard())]);
        assert!(
            second_freed.lock().expect("note").is_some(),
            "freed at once"
        );
        assert_eq!(
            *first_freed.lock().expect("note"),
            None,
            "still the caller's"
        );
    }

    #[tokio::test]
    async fn past_the_limit_records_are_refused_and_ready_waits_for_room() {
        let one = held_size(&record(0));
        let intake = intake_of(4 * one);
        let append = |i: u8| append_to(&intake, i);
        let mut taken: Vec<_> = (0..3).map(append).collect();
        intake.park(one);
        let mut refused = append(3);
        let err = futures_util::FutureExt::now_or_never(&mut refused)
            .expect("answered at once")
            .expect_err("refused");
        let ErrorKind::QueueFull {
            held_bytes,
            limit_bytes,
        } = err.kind()
        else {
            panic!("{err}");
        };
        assert_eq!(
            (*held_bytes, *limit_bytes),
            (4 * one as u64, 4 * one as u64)
        );
        assert_eq!(value(err.record().expect("handed back")), 3);
        for rx in &mut taken {
            assert!(futures_util::FutureExt::now_or_never(rx).is_none(), "taken");
        }

        // Waits while more than half the limit is held; a take (or a parked record leaving)
        // wakes it.
        let ready = intake.ready(|| false, || ());
        tokio::pin!(ready);
        assert!(futures_util::FutureExt::now_or_never(ready.as_mut()).is_none());
        let mut spare = Vec::new();
        intake.take(&mut spare, true);
        assert_eq!(spare.len(), 3);
        assert!(
            futures_util::FutureExt::now_or_never(ready.as_mut()).is_none(),
            "taken records are held until routed"
        );
        let mut refused = append(4);
        assert!(
            futures_util::FutureExt::now_or_never(&mut refused).is_some(),
            "refused while the take is routed"
        );
        intake.routed();
        tokio::time::timeout(std::time::Duration::from_millis(50), ready)
            .await
            .expect("woken once the take is routed, not by the 100 ms look");
        let ready = intake.ready(|| false, || ());
        assert!(
            futures_util::FutureExt::now_or_never(ready).is_some(),
            "one parked record is a quarter"
        );
        intake.park(2 * one);
        let ready = intake.ready(|| false, || ());
        tokio::pin!(ready);
        assert!(futures_util::FutureExt::now_or_never(ready.as_mut()).is_none());
        intake.unpark(2 * one);
        tokio::time::timeout(std::time::Duration::from_millis(50), ready)
            .await
            .expect("woken by the parked record leaving");
        assert!(
            futures_util::FutureExt::now_or_never(intake.ready(|| true, || ())).is_some(),
            "a router that will not come: no wait"
        );
        intake.unpark(one);

        // Nothing held: one record is taken whatever its size, to fail with its own reason.
        let small = intake_of(1);
        let (tx, mut rx) = slot();
        small.append(
            record(7),
            Completion::slot(tx),
            || true,
            || true,
            refusing(&small),
        );
        assert!(
            futures_util::FutureExt::now_or_never(&mut rx).is_none(),
            "taken"
        );
        // Past buffer.memory (1 byte) as any record is: taken too, for the router to refuse
        // as too large, not refused as full.
        let (tx, mut rx) = slot();
        small.append(
            record(8),
            Completion::slot(tx),
            || true,
            || true,
            refusing(&small),
        );
        assert!(
            futures_util::FutureExt::now_or_never(&mut rx).is_none(),
            "taken"
        );
        // Room for one record: a second one that would fit alone is refused as full.
        let tight = intake_of(held_size(&record(0)));
        let _first = append_to(&tight, 9);
        let (tx, rx) = slot();
        tight.append(
            record(10),
            Completion::slot(tx),
            || true,
            || true,
            refusing(&tight),
        );
        assert!(futures_util::FutureExt::now_or_never(rx)
            .expect("refused")
            .is_err());
    }
    /// The batches' memory and the intake share buffer.memory: the intake takes only what the
    /// batches leave, `ready` is woken when a batch gives memory back, and spare buffers give
    /// way to records as they do to batches.
    #[tokio::test]
    async fn the_intake_takes_what_the_batches_leave() {
        let one = held_size(&record(0));
        let pool = Arc::new(MemoryPool::new(8 * one, one));
        let intake = Intake::new(pool.clone(), usize::MAX);
        let append = |i: u8| {
            let mut rx = append_to(&intake, i);
            futures_util::FutureExt::now_or_never(&mut rx).map(|o| o.expect_err("refused"))
        };
        assert!(pool.try_reserve(6 * one), "batches hold six of eight");
        assert!(
            append(0).is_none() && append(1).is_none(),
            "two fit beside them"
        );
        let err = append(2).expect("the third does not");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::QueueFull { held_bytes, .. } if *held_bytes == 8 * one as u64
            ),
            "{err}"
        );
        // Eight of eight held: ready waits until a batch gives memory back, and asks for the
        // lingering batches to go.
        let expedited = Cell::new(0);
        let ready = intake.ready(|| false, || expedited.set(expedited.get() + 1));
        tokio::pin!(ready);
        assert!(futures_util::FutureExt::now_or_never(ready.as_mut()).is_none());
        assert!(futures_util::FutureExt::now_or_never(ready.as_mut()).is_none());
        assert_eq!(expedited.get(), 1, "asked once, with no room left");
        pool.release(4 * one);
        tokio::time::timeout(std::time::Duration::from_millis(50), ready)
            .await
            .expect("woken by the release, not by the 100 ms look");

        // The records leave for batches; the batches complete and their buffer is kept as a
        // spare of six.
        let mut taken = Vec::new();
        intake.take(&mut taken, true);
        intake.routed();
        pool.release(2 * one);
        // Batches of the pooled size asked for spares, so a grown buffer is worth keeping.
        assert!(pool.take_spare(one, true).is_none());
        pool.offer_spare(6 * one, bytes::BytesMut::with_capacity(one), Vec::new());
        assert_eq!(pool.held(), 6 * one, "the spare counts");
        assert!(append(3).is_none() && append(4).is_none());
        assert!(append(5).is_none(), "the spare gave way");
        assert_eq!(pool.held(), 0, "dropped for the records");
    }
}
