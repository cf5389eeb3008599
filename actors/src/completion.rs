//! Where a record's outcome goes: every accepted record carries exactly one [`Completion`],
//! and completing consumes it, so an outcome cannot be delivered twice by construction.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use actix::dev::OneshotSender;
use actix::prelude::*;
use herald::{ErrorKind, ProduceError, RecordMetadata};

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

/// The outcome of one record.
pub type Outcome = Result<RecordMetadata, ProduceError>;

/// Sent by a partition accumulator to the mailbox named with `Produce::reply_to`, once per
/// record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Delivered {
    /// Metadata of the acknowledged record, or why it failed.
    pub outcome: Outcome,
    /// The tag given with `Produce::tag`, so the receiver can tell records apart.
    pub tag: u64,
}

/// Outcomes of several records for one [`Notifier`], in the order each partition
/// acknowledged them: one message per batch rather than one per record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Deliveries(pub Vec<Delivered>);

/// A requester's mailbox for outcomes delivered per batch (see [`Deliveries`]).
///
/// Clone it per record: a clone is one reference count, where cloning a `Recipient` allocates.
/// Records of one batch that name the same notifier share one message.
#[derive(Debug, Clone)]
pub struct Notifier(Arc<Recipient<Deliveries>>);

impl Notifier {
    /// Outcomes go to `recipient`.
    pub fn new(recipient: Recipient<Deliveries>) -> Self {
        Notifier(Arc::new(recipient))
    }

    fn same(&self, other: &Notifier) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn send(&self, outcomes: Vec<Delivered>) {
        self.0.do_send(Deliveries(outcomes));
    }
}

/// The sink of one record's outcome. Completing consumes it, so an outcome cannot be delivered
/// twice; dropping it unanswered (only a panic unwinding through the actor that held it does,
/// or dropping a broken actor) still answers it, with the error the supervisor names (see
/// [`supervisor`](crate::supervisor)), so no record is left without an outcome.
#[derive(Debug)]
pub struct Completion(Option<Sink>);

// The interceptors' mark (`Sink`'s `seen`) costs a completion no room.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Completion>() == 32);

/// Where the outcome goes.
///
/// Each variant carries `seen`: the interceptors' `on_send` saw the record, so a record a
/// supervisor answers (dropped unanswered, see [`collecting`]) is told to their
/// `on_acknowledgement` too, as the records the accumulators and the router answer are.
/// It sits in every variant rather than beside the enum: there it takes a byte of the room
/// after the discriminant, where a field of `Completion` would make every record's
/// completion 8 bytes larger.
#[derive(Debug)]
pub(crate) enum Sink {
    /// The reply to `router.send(Produce)`: actix's own response channel, stored without an
    /// extra channel or spawned future.
    Reply {
        tx: OneshotSender<Outcome>,
        seen: bool,
    },
    /// A `Delivered` message to a requester's mailbox.
    Notify {
        /// Requester.
        to: Recipient<Delivered>,
        /// Caller's tag.
        tag: u64,
        seen: bool,
    },
    /// Part of a [`Deliveries`] message to a [`Notifier`].
    NotifyBatched {
        /// Requester.
        to: Notifier,
        /// Caller's tag.
        tag: u64,
        seen: bool,
    },
    /// One slot of a `ProduceBatch` reply.
    Batch {
        /// Shared collector of the batch call.
        collector: Arc<BatchCollector>,
        /// Index of the record in the call.
        index: usize,
        seen: bool,
    },
    /// One record of a `ProduceBatchTally` call.
    Tally {
        /// Shared tally of the call.
        collector: Arc<TallyCollector>,
        /// Index of the record in the call.
        index: usize,
        seen: bool,
    },
    /// The future returned by `Producer::send` (see [`slot`]).
    Slot { tx: SlotSender, seen: bool },
    /// `do_send` without `reply_to`: the outcome is only counted in metrics.
    Discard { seen: bool },
}

impl Completion {
    /// The reply to `router.send(Produce)`.
    pub(crate) fn reply(tx: OneshotSender<Outcome>) -> Self {
        Completion(Some(Sink::Reply { tx, seen: false }))
    }

    /// A `Delivered` message to `to`.
    pub(crate) fn notify(to: Recipient<Delivered>, tag: u64) -> Self {
        Completion(Some(Sink::Notify {
            to,
            tag,
            seen: false,
        }))
    }

    /// Part of a `Deliveries` message to `to`.
    pub(crate) fn notify_batched(to: Notifier, tag: u64) -> Self {
        Completion(Some(Sink::NotifyBatched {
            to,
            tag,
            seen: false,
        }))
    }

    /// Slot `index` of a `ProduceBatch` reply.
    pub(crate) fn batch(collector: Arc<BatchCollector>, index: usize) -> Self {
        Completion(Some(Sink::Batch {
            collector,
            index,
            seen: false,
        }))
    }

    /// Record `index` of a `ProduceBatchTally` call.
    pub(crate) fn tally(collector: Arc<TallyCollector>, index: usize) -> Self {
        Completion(Some(Sink::Tally {
            collector,
            index,
            seen: false,
        }))
    }

    /// Whether the outcome is only counted when the record is delivered: then its
    /// `RecordMetadata` need not be made (see [`Completer::delivered`]).
    pub(crate) fn counts_only(&self) -> bool {
        matches!(self.0, Some(Sink::Tally { .. } | Sink::Discard { .. }))
    }

    /// The future of `Producer::send`.
    pub(crate) fn slot(tx: SlotSender) -> Self {
        Completion(Some(Sink::Slot { tx, seen: false }))
    }

    /// Reads a `Producer::send` slot's line ahead of its settling, so that a batch's misses
    /// overlap (see `Accumulator::complete_batch`); nothing for other sinks.
    pub(crate) fn warm(&self) {
        if let Some(Sink::Slot {
            tx: SlotSender(Some(slot)),
            ..
        }) = &self.0
        {
            std::hint::black_box(Arc::strong_count(slot));
        }
    }

    /// Nobody waits for the outcome.
    pub(crate) fn discard() -> Self {
        Completion(Some(Sink::Discard { seen: false }))
    }

    /// The interceptors' `on_send` has seen the record (the chain marks it as it hands the
    /// record back): from here on, however it is answered, `on_acknowledgement` sees it.
    pub(crate) fn mark_seen(&mut self) {
        if let Some(sink) = &mut self.0 {
            *sink.seen_mut() = true;
        }
    }

    /// Delivers the outcome. Consumes `self`: a record is answered exactly once.
    pub fn complete(mut self, outcome: Outcome) {
        if let Some(sink) = self.0.take() {
            sink.complete(outcome);
        }
    }

    fn take(mut self) -> Sink {
        self.0.take().unwrap_or(Sink::Discard { seen: false })
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        match self.0.take() {
            // A discarded outcome the interceptors saw is still theirs to be told.
            None | Some(Sink::Discard { seen: false }) => {}
            Some(sink) => orphaned(sink),
        }
    }
}

impl Sink {
    pub(crate) fn complete(self, outcome: Outcome) {
        match self {
            Sink::Reply { tx, .. } => {
                let _ = tx.send(outcome);
            }
            Sink::Notify { to, tag, .. } => to.do_send(Delivered { outcome, tag }),
            Sink::NotifyBatched { to, tag, .. } => to.send(vec![Delivered { outcome, tag }]),
            Sink::Batch {
                collector, index, ..
            } => collector.set_many([(index, outcome)]),
            Sink::Tally {
                collector, index, ..
            } => match outcome {
                Ok(_) => collector.add(1, Vec::new()),
                Err(e) => collector.add(0, vec![(index, e)]),
            },
            Sink::Slot { tx, .. } => tx.send(outcome),
            Sink::Discard { .. } => {}
        }
    }

    fn seen_mut(&mut self) -> &mut bool {
        match self {
            Sink::Reply { seen, .. }
            | Sink::Notify { seen, .. }
            | Sink::NotifyBatched { seen, .. }
            | Sink::Batch { seen, .. }
            | Sink::Tally { seen, .. }
            | Sink::Slot { seen, .. }
            | Sink::Discard { seen } => seen,
        }
    }
}

thread_local! {
    /// Completions dropped unanswered while a supervised actor runs on this thread.
    static ORPHANS: RefCell<Option<Vec<Sink>>> = const { RefCell::new(None) };
}

/// A completion was dropped without an outcome. Inside a supervised actor (a panic unwinding,
/// or the actor dropped after a restart storm) it waits for the supervisor, which knows why;
/// anywhere else the producer is going away, and the record is answered as closed.
pub(crate) fn orphaned(sink: Sink) {
    let sink = ORPHANS.with(|o| match o.try_borrow_mut() {
        Ok(mut o) => match o.as_mut() {
            Some(v) => {
                v.push(sink);
                None
            }
            None => Some(sink),
        },
        Err(_) => Some(sink),
    });
    if let Some(sink) = sink {
        sink.complete(Err(ProduceError::new(ErrorKind::Closed)));
    }
}

/// Runs `f` collecting the completions it drops, and answers them with `why` (the supervisor
/// runs each poll of an actor so, see [`supervisor`](crate::supervisor)). The outcomes of
/// those the interceptors' `on_send` saw go to `acknowledge`, once, for their
/// `on_acknowledgement`: Java tells the interceptors of every record `onSend` saw, whatever
/// ended it.
pub(crate) fn collecting<R>(
    f: impl FnOnce() -> R,
    why: impl FnOnce(&R) -> ErrorKind,
    acknowledge: impl FnOnce(Vec<Outcome>),
) -> R {
    let outer = ORPHANS.with(|o| o.borrow_mut().replace(Vec::new()));
    let r = f();
    let dropped = ORPHANS.with(|o| std::mem::replace(&mut *o.borrow_mut(), outer));
    let dropped = dropped.unwrap_or_default();
    if !dropped.is_empty() {
        let kind = why(&r);
        let mut seen = Vec::new();
        for mut sink in dropped {
            let outcome: Outcome = Err(ProduceError::new(kind.clone()));
            if *sink.seen_mut() {
                seen.push(outcome.clone());
            }
            sink.complete(outcome);
        }
        if !seen.is_empty() {
            acknowledge(seen);
        }
    }
    r
}

/// Completes the records of one batch, answering records that share a sink together: the
/// records of one [`Notifier`] become one [`Deliveries`] message (in batch order); the slots
/// of one `ProduceBatch` call are filled [`RUN`] at a time under the collector's lock, from a
/// buffer the completer reuses (a call's records sit together in a batch). Gathering a whole
/// call's outcomes first took a vector per call per batch, fresh memory whose page faults
/// showed in profiles. Whatever is gathered goes out when the completer is dropped, so nothing
/// is lost. A batch names few notifiers, so a linear search finds a record's group.
#[derive(Debug, Default)]
pub struct Completer {
    notify: Vec<(Notifier, Vec<Delivered>)>,
    /// The notifier clones of records whose group is already in `notify`, dropped together
    /// when the completer is: the application clones its notifier on its own thread, and
    /// dropping each clone here between records made the two cores take the reference
    /// count's line from each other per record (5% of the process in `perf` of `do_send` +
    /// `notify`).
    notifier_clones: Vec<Notifier>,
    /// The `ProduceBatch` call whose outcomes are being gathered, and those outcomes.
    run: Option<Arc<BatchCollector>>,
    slots: Slots,
    /// The `ProduceBatchTally` call whose outcomes are being counted, and the count.
    tally: Option<(Arc<TallyCollector>, BatchTally)>,
    /// How many outcomes are still to come, at most: a notifier's `Deliveries` gets room for
    /// them all when its first record arrives, instead of growing by reallocation (in
    /// callgrind of `do_send` + `notify`, 2.6% of all instructions, most of them copying).
    remaining: usize,
}

/// Outcomes of one `ProduceBatch` call handed to its collector at once, at most.
const RUN: usize = 64;

/// `(index in the call, outcome)` of some records of one `ProduceBatch` call.
type Slots = Vec<(usize, Outcome)>;

impl Completer {
    /// A completer for the `records` outcomes of one batch.
    pub fn for_records(records: usize) -> Self {
        let mut c = Completer::default();
        c.remaining = records;
        c
    }

    /// Delivers (or gathers) one record's outcome.
    pub fn complete(&mut self, completion: Completion, outcome: Outcome) {
        let remaining = self.remaining;
        self.remaining = remaining.saturating_sub(1);
        match completion.take() {
            Sink::NotifyBatched { to, tag, .. } => {
                let d = Delivered { outcome, tag };
                match self.notify.iter_mut().find(|(n, _)| n.same(&to)) {
                    Some((_, v)) => {
                        v.push(d);
                        if self.notifier_clones.capacity() == 0 {
                            self.notifier_clones.reserve_exact(remaining);
                        }
                        self.notifier_clones.push(to);
                    }
                    None => {
                        let mut v = Vec::with_capacity(remaining.max(1));
                        v.push(d);
                        self.notify.push((to, v));
                    }
                }
            }
            Sink::Batch {
                collector, index, ..
            } => {
                let same = self
                    .run
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, &collector));
                if !same || self.slots.len() == RUN {
                    self.hand_over();
                    if self.slots.capacity() == 0 {
                        self.slots.reserve_exact(RUN);
                    }
                    self.run = Some(collector);
                }
                self.slots.push((index, outcome));
            }
            Sink::Tally {
                collector, index, ..
            } => {
                let tally = self.tally_of(collector);
                match outcome {
                    Ok(_) => tally.delivered += 1,
                    Err(e) => tally.failed.push((index, e)),
                }
            }
            other => other.complete(outcome),
        }
    }

    /// Answers a delivered record, making its metadata with `md` only if its sink wants it:
    /// a `ProduceBatchTally` call only counts its delivered records, and nobody reads a
    /// discarded outcome.
    pub fn delivered(&mut self, completion: Completion, md: impl FnOnce() -> RecordMetadata) {
        if completion.counts_only() {
            self.remaining = self.remaining.saturating_sub(1);
            if let Sink::Tally { collector, .. } = completion.take() {
                self.tally_of(collector).delivered += 1;
            }
        } else {
            self.complete(completion, Ok(md()));
        }
    }

    /// The count of `collector`'s call, handing over the count of the call before (a call's
    /// records sit together in a batch).
    fn tally_of(&mut self, collector: Arc<TallyCollector>) -> &mut BatchTally {
        let same = self
            .tally
            .as_ref()
            .is_some_and(|(c, _)| Arc::ptr_eq(c, &collector));
        if !same {
            self.hand_over_tally();
            self.tally = Some((collector, BatchTally::default()));
        }
        &mut self.tally.as_mut().expect("set above").1
    }

    fn hand_over_tally(&mut self) {
        if let Some((collector, tally)) = self.tally.take() {
            collector.add(tally.delivered, tally.failed);
        }
    }

    /// Gives the gathered outcomes of the current call to its collector.
    fn hand_over(&mut self) {
        if let Some(collector) = self.run.take() {
            collector.set_many(self.slots.drain(..));
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        for (to, outcomes) in self.notify.drain(..) {
            to.send(outcomes);
        }
        self.hand_over();
        self.hand_over_tally();
    }
}

/// Gathers the outcomes of one `ProduceBatch` call and replies once all are in.
#[derive(Debug)]
pub struct BatchCollector {
    state: Mutex<CollectorState>,
}

#[derive(Debug)]
struct CollectorState {
    /// Empty until the first outcome arrives (see `set_many`), then one slot per record.
    outcomes: Vec<Option<Outcome>>,
    len: usize,
    missing: usize,
    tx: Option<OneshotSender<Vec<Outcome>>>,
}

impl BatchCollector {
    /// A collector for `len` records answering on `tx` (none for `do_send`).
    pub fn new(len: usize, tx: Option<OneshotSender<Vec<Outcome>>>) -> Arc<Self> {
        let collector = Arc::new(BatchCollector {
            state: Mutex::new(CollectorState {
                outcomes: Vec::new(),
                len,
                missing: len,
                tx,
            }),
        });
        if len == 0 {
            collector.finish_if_done();
        }
        collector
    }

    fn set_many(&self, outcomes: impl IntoIterator<Item = (usize, Outcome)>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The slots are made when the first outcomes come, not when the call is accepted: a
        // call waits for its batches while up to buffer.memory of others are accepted after
        // it, and slots made at acceptance were out of the caches by then (filling them was
        // most of the completion's cost in `perf`; a 512-record call's slots are 32 KiB).
        if s.outcomes.is_empty() {
            let len = s.len;
            s.outcomes.resize_with(len, || None);
        }
        for (index, outcome) in outcomes {
            let slot = &mut s.outcomes[index];
            debug_assert!(slot.is_none(), "record {index} answered twice");
            if slot.is_none() {
                *slot = Some(outcome);
                s.missing -= 1;
            }
        }
        Self::finish_locked(&mut s);
    }

    fn finish_if_done(&self) {
        Self::finish_locked(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn finish_locked(s: &mut CollectorState) {
        if s.missing == 0 {
            if let Some(tx) = s.tx.take() {
                let outcomes = std::mem::take(&mut s.outcomes)
                    .into_iter()
                    .map(|o| o.expect("every slot filled"))
                    .collect();
                let _ = tx.send(outcomes);
            }
        }
    }
}

/// The reply to `ProduceBatchTally`: how the call's records went.
#[derive(Debug, Default, Clone)]
pub struct BatchTally {
    /// Records acknowledged (written, for `acks=0` sent).
    pub delivered: usize,
    /// The records that failed: each one's index in the call and why, in call order.
    pub failed: Vec<(usize, ProduceError)>,
}

/// Counts the outcomes of one `ProduceBatchTally` call and replies once all are in.
#[derive(Debug)]
pub struct TallyCollector {
    state: Mutex<TallyState>,
}

#[derive(Debug)]
struct TallyState {
    missing: usize,
    tally: BatchTally,
    tx: Option<OneshotSender<BatchTally>>,
}

impl TallyCollector {
    /// A tally of `len` records answering on `tx` (none for `do_send`).
    pub fn new(len: usize, tx: Option<OneshotSender<BatchTally>>) -> Arc<Self> {
        let collector = Arc::new(TallyCollector {
            state: Mutex::new(TallyState {
                missing: len,
                tally: BatchTally::default(),
                tx,
            }),
        });
        if len == 0 {
            // Nothing will come: an empty call is answered at once.
            collector.add(0, Vec::new());
        }
        collector
    }

    fn add(&self, delivered: usize, failed: Vec<(usize, ProduceError)>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = delivered + failed.len();
        debug_assert!(n <= s.missing, "a record of the call answered twice");
        s.missing = s.missing.saturating_sub(n);
        s.tally.delivered += delivered;
        if s.tally.failed.is_empty() {
            s.tally.failed = failed;
        } else {
            s.tally.failed.extend(failed);
        }
        if s.missing == 0 {
            if let Some(tx) = s.tx.take() {
                let mut tally = std::mem::take(&mut s.tally);
                tally.failed.sort_unstable_by_key(|(index, _)| *index);
                let _ = tx.send(tally);
            }
        }
    }
}

/// A one-record reply channel for `Producer::send`: its receiver is a plain future that does
/// not take part in tokio's cooperative budget. tokio's `oneshot` (actix's reply channel) does,
/// and an application that polls thousands of outcomes from one `FuturesUnordered` exhausts
/// the budget after 128 of them: every further ready receiver answers `Pending`, wakes itself
/// again and is polled again, which cost several times the work of producing the record
/// (measured with `examples/send_bench.rs`). librdkafka's `DeliveryFuture` (a futures-channel
/// oneshot) has no budget either.
pub(crate) fn slot() -> (SlotSender, SlotReceiver) {
    let slot = SPARE_SLOTS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| {
            Arc::new(Slot {
                state: Mutex::new(SlotState::Waiting(None)),
            })
        });
    (SlotSender(Some(slot.clone())), SlotReceiver(Some(slot)))
}

/// Slots at most kept per thread for reuse. A slot is allocated on the application's
/// thread for each `Producer::send`; when its receiver drops it as the last holder (after the
/// outcome), it goes back to that thread's spares instead of to the allocator: half the
/// `malloc` calls of a `herald-producer-send` worker (callgrind: 421,708 → 230,283 for
/// 200,000 records, 1.5% of its instructions).
const SPARE_SLOTS_MAX: usize = 1024;

thread_local! {
    /// Slots whose two halves are gone, for this thread's next `slot()`.
    static SPARE_SLOTS: RefCell<Vec<Arc<Slot>>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug)]
enum SlotState {
    /// No outcome yet; the receiver's waker, once polled.
    Waiting(Option<Waker>),
    Done(Outcome),
    /// The sender was dropped without an outcome (the router is gone).
    Dropped,
    /// The receiver took the outcome.
    Taken,
}

impl Slot {
    /// Settles the slot (once: a settled slot keeps its state) and wakes the receiver.
    /// The sender's reference goes before the wake, so that the receiver, woken on the
    /// application's thread, is the last holder and can keep the slot for that thread's next
    /// `send` (see `SPARE_SLOTS`).
    fn settle(self: Arc<Self>, to: SlotState) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *s {
                SlotState::Waiting(w) => {
                    let w = w.take();
                    *s = to;
                    w
                }
                _ => None,
            }
        };
        drop(self);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The sending half of [`slot`]; sending consumes it, dropping it unsent answers `Closed`.
#[derive(Debug)]
pub struct SlotSender(Option<Arc<Slot>>);

impl SlotSender {
    fn send(mut self, outcome: Outcome) {
        if let Some(slot) = self.0.take() {
            slot.settle(SlotState::Done(outcome));
        }
    }
}

impl Drop for SlotSender {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.settle(SlotState::Dropped);
        }
    }
}

/// The receiving half of [`slot`]: resolves to the record's outcome.
#[derive(Debug)]
pub(crate) struct SlotReceiver(Option<Arc<Slot>>);

impl Drop for SlotReceiver {
    fn drop(&mut self) {
        let Some(mut slot) = self.0.take() else {
            return;
        };
        if let Some(s) = Arc::get_mut(&mut slot) {
            *s.state.get_mut().unwrap_or_else(|e| e.into_inner()) = SlotState::Waiting(None);
            let _ = SPARE_SLOTS.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_SLOTS_MAX {
                    spare.push(slot);
                }
            });
        }
    }
}

impl Future for SlotReceiver {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let slot = self
            .0
            .as_ref()
            .expect("a receiver holds its slot until dropped");
        let mut s = slot.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *s, SlotState::Taken) {
            SlotState::Waiting(w) => {
                let waker = match w {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *s = SlotState::Waiting(Some(waker));
                Poll::Pending
            }
            SlotState::Done(outcome) => Poll::Ready(outcome),
            SlotState::Dropped => Poll::Ready(Err(ProduceError::new(ErrorKind::Closed))),
            SlotState::Taken => panic!("SlotReceiver polled after it resolved"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use herald::RecordMetadata;

    fn metadata(offset: i64) -> RecordMetadata {
        RecordMetadata {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp: 0,
            serialized_key_size: -1,
            serialized_value_size: -1,
        }
    }

    #[test]
    fn a_slot_resolves_to_the_outcome_sent_before_or_after_the_first_poll() {
        let (tx, rx) = slot();
        tx.send(Ok(metadata(7)));
        assert_eq!(rx.now_or_never().expect("ready").expect("ok").offset, 7);

        let (tx, mut rx) = slot();
        assert!(
            (&mut rx).now_or_never().is_none(),
            "pending before the outcome"
        );
        Completion::slot(tx).complete(Ok(metadata(8)));
        assert_eq!(rx.now_or_never().expect("ready").expect("ok").offset, 8);
    }

    /// Outcomes come per partition batch, interleaved across calls and out of call order;
    /// the reply still lists them in call order, once all are in.
    #[test]
    fn a_batch_call_is_answered_in_call_order_whatever_order_its_outcomes_come_in() {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let call = BatchCollector::new(200, Some(tx));
        // Another call's records (i = 0, 50, 100, 150) come in between.
        let (other_tx, mut other_rx) = tokio::sync::oneshot::channel();
        let other = BatchCollector::new(4, Some(other_tx));
        let mut other_index = 0;
        let mut completions: Vec<Option<Completion>> = (0..200)
            .map(|i| Some(Completion::batch(call.clone(), i)))
            .collect();
        // Three "partitions": indexes by remainder, each answered as one batch, runs broken
        // up by another call's records and by the completer's RUN limit.
        for part in [2, 0, 1] {
            let mut completer = Completer::default();
            for i in (part..200).step_by(3) {
                let c = completions[i].take().expect("answered once");
                completer.complete(c, Ok(metadata(i as i64)));
                if i % 50 == 0 {
                    completer.complete(
                        Completion::batch(other.clone(), other_index),
                        Err(ProduceError::new(ErrorKind::Closed)),
                    );
                    other_index += 1;
                }
            }
            drop(completer);
            if part != 1 {
                assert!(
                    rx.try_recv().is_err(),
                    "no reply before every outcome is in"
                );
            }
        }
        let outcomes = rx.try_recv().expect("replied once all were in");
        let offsets: Vec<i64> = outcomes
            .iter()
            .map(|o| o.as_ref().unwrap().offset)
            .collect();
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
        assert_eq!(other_rx.try_recv().expect("the other call too").len(), 4);
    }

    /// A tally counts each record once, whether it came through `complete` (with metadata
    /// or an error), `delivered` (no metadata) or a completion answered on its own (an
    /// orphan), across calls interleaved in one batch; the failed records come in call order,
    /// and the reply only once every record is in.
    #[test]
    fn a_tally_counts_every_record_once_and_lists_failures_in_call_order() {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let call = TallyCollector::new(6, Some(tx));
        let (other_tx, mut other_rx) = tokio::sync::oneshot::channel();
        let other = TallyCollector::new(2, Some(other_tx));
        let closed = || Err(ProduceError::new(ErrorKind::Closed));
        let c = |i| Completion::tally(call.clone(), i);
        // A tally's delivered records get no metadata made.
        let no_md = || -> RecordMetadata { panic!("metadata made for a counted record") };
        let probe = TallyCollector::new(1, None);
        assert!(Completion::tally(probe, 0).counts_only() && Completion::discard().counts_only());

        let mut completer = Completer::default();
        completer.complete(c(4), closed());
        completer.delivered(c(0), no_md);
        completer.complete(Completion::tally(other.clone(), 0), Ok(metadata(1)));
        completer.complete(c(1), Ok(metadata(2)));
        completer.complete(c(3), closed());
        drop(completer);
        assert!(rx.try_recv().is_err(), "two records still out");
        // A completion dropped unanswered is answered on its own.
        drop(c(2));
        let mut completer = Completer::default();
        completer.delivered(c(5), no_md);
        completer.delivered(Completion::tally(other.clone(), 1), no_md);
        // Nor does a discarded outcome (`do_send` with nobody to notify).
        completer.delivered(Completion::discard(), no_md);
        // Any other sink gets the metadata.
        let (slot_tx, slot_rx) = slot();
        completer.delivered(Completion::slot(slot_tx), || metadata(9));
        assert_eq!(
            slot_rx.now_or_never().expect("ready").expect("ok").offset,
            9
        );
        drop(completer);

        let tally = rx.try_recv().expect("every record in");
        assert_eq!(tally.delivered, 3);
        let failed: Vec<usize> = tally.failed.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, [2, 3, 4]);
        let other = other_rx.try_recv().expect("the other call is answered too");
        assert_eq!((other.delivered, other.failed.len()), (2, 0));

        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let _ = TallyCollector::new(0, Some(tx));
        assert_eq!(rx.try_recv().expect("an empty call at once").delivered, 0);
    }

    /// A batch's records that name one notifier reach it as one `Deliveries` in batch order,
    /// its room made once, when the first of them arrives, for every outcome still to come
    /// (growing it by reallocation copied it several times per batch).
    #[actix_rt::test]
    async fn a_notifier_gets_its_records_of_a_batch_in_one_message_allocated_once() {
        use actix::prelude::*;
        use std::sync::Mutex;

        type Seen = Arc<Mutex<Vec<(usize, Vec<u64>)>>>;
        struct Sink(Seen);
        impl Actor for Sink {
            type Context = Context<Self>;
        }
        impl Handler<Deliveries> for Sink {
            type Result = ();
            fn handle(&mut self, d: Deliveries, _: &mut Context<Self>) {
                let tags = d.0.iter().map(|d| d.tag).collect();
                self.0.lock().unwrap().push((d.0.capacity(), tags));
            }
        }
        let (a_seen, b_seen): (Seen, Seen) = Default::default();
        let a = Notifier::new(Sink(a_seen.clone()).start().recipient());
        let b = Notifier::new(Sink(b_seen.clone()).start().recipient());

        let mut completer = Completer::for_records(10);
        // Records 0..10 of the batch: b's are 2, 3, 7 and 9.
        for i in 0..10u64 {
            let to = if [2, 3, 7, 9].contains(&i) { &b } else { &a };
            completer.complete(
                Completion::notify_batched(to.clone(), i),
                Ok(metadata(i as i64)),
            );
        }
        drop(completer);
        for _ in 0..500 {
            if !a_seen.lock().unwrap().is_empty() && !b_seen.lock().unwrap().is_empty() {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // `Vec::with_capacity` gives exactly the room asked for: a's first record had all ten
        // outcomes still to come, b's first (record 2) eight.
        assert_eq!(*a_seen.lock().unwrap(), [(10, vec![0, 1, 4, 5, 6, 8])]);
        assert_eq!(*b_seen.lock().unwrap(), [(8, vec![2, 3, 7, 9])]);
    }

    /// A slot both of whose halves are gone serves the thread's next `send` with a fresh
    /// state; one whose sender is still out is not taken back.
    #[test]
    fn a_spent_slot_is_reused_fresh_and_a_held_one_is_not() {
        std::thread::spawn(|| {
            // (The allocator would often hand the same address back anyway: count spares.)
            let spares = || SPARE_SLOTS.with(|s| s.borrow().len());
            let (tx, mut rx) = slot();
            tx.send(Ok(metadata(1)));
            assert_eq!((&mut rx).now_or_never().unwrap().unwrap().offset, 1);
            assert_eq!(spares(), 0);
            drop(rx);
            assert_eq!(spares(), 1, "the spent slot is kept");

            let (tx, mut rx) = slot();
            assert_eq!(spares(), 0, "and handed out again");
            assert!((&mut rx).now_or_never().is_none(), "fresh: no outcome yet");
            tx.send(Ok(metadata(2)));
            assert_eq!(rx.now_or_never().unwrap().unwrap().offset, 2);
            assert_eq!(spares(), 1);

            // Its receiver dropped first, the slot is still the sender's: not kept.
            let (held_tx, held_rx) = slot();
            drop(held_rx);
            assert_eq!(spares(), 0, "a slot its sender holds is not kept");
            held_tx.send(Ok(metadata(3)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_slot_whose_sender_is_dropped_answers_closed() {
        let (tx, rx) = slot();
        drop(tx);
        let err = rx.now_or_never().expect("ready").expect_err("closed");
        assert!(matches!(err.kind(), ErrorKind::Closed));
    }
}
