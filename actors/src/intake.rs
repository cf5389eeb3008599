//! The intake of [`Producer::send`](crate::Producer::send): records that callers append under
//! a lock and the router takes in bulk, one `DrainIntake` message per wake-up instead of one
//! actix request (envelope, mailbox node, reply channel) per record.
//!
//! Rules that keep `Producer::send` as safe as `router.send(Produce)`:
//! - **One drain message is queued whenever the intake is not empty.** The first record after
//!   a drain queues `DrainIntake`, and does so while holding the lock, so no caller can append
//!   behind a drain that is not in the router's mailbox yet. Hence a `Flush` or `Close` a
//!   caller sends after appending sits behind the drain that carries its record.
//! - **Order.** Every record of `Producer::send` goes through here (with `reply_to` and
//!   `notify` too), is drained in the order appended, and routed in that order. (A record
//!   sent to the router's mailbox directly is not ordered against records appended here
//!   after it, as a drain takes them all; a flush in between orders them.)
//! - **Bounded by the callers.** Like records in futures parked on a full mailbox, or
//!   `do_send` records, what waits here is what callers have outstanding; once routed,
//!   buffer.memory and max.block.ms apply as to any record (a stalled router leaves the
//!   drain in its mailbox).
//! - **Exactly one outcome.** A record's `Completion` moves with it into the router, which
//!   completes it as any other; if the router is gone the record is refused here.

use std::sync::{Mutex, MutexGuard};

use herald::{ErrorKind, ProduceError, ProducerRecord};

use crate::completion::Completion;

/// A record appended by `Producer::send` and where its outcome goes.
pub(crate) type Entry = (ProducerRecord, Completion);

/// Records waiting for the router (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Intake {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Entry>,
    /// A drain is queued (or being handled) and will take `records`.
    drain_queued: bool,
}

impl Intake {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record. `queue_drain` is called, under the intake's lock, when no drain is
    /// queued yet; it returns whether the drain message reached the router's mailbox. When
    /// it did not (the router is gone), the record is refused with `Closed` at once.
    pub(crate) fn append(
        &self,
        record: ProducerRecord,
        completion: Completion,
        queue_drain: impl FnOnce() -> bool,
    ) {
        let mut s = self.lock();
        if !s.drain_queued {
            if !queue_drain() {
                drop(s);
                completion.complete(Err(ProduceError::refused(ErrorKind::Closed, record)));
                return;
            }
            s.drain_queued = true;
        }
        s.records.push((record, completion));
    }

    /// Records waiting for the router now.
    pub(crate) fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Takes every waiting record, in the order appended, leaving `spare` (emptied) in their
    /// place so the two buffers are reused. The next append queues a new drain.
    pub(crate) fn drain(&self, spare: &mut Vec<Entry>) {
        spare.clear();
        let mut s = self.lock();
        std::mem::swap(&mut s.records, spare);
        s.drain_queued = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::slot;
    use std::cell::Cell;

    fn record(i: u8) -> ProducerRecord {
        let mut r = ProducerRecord::new("t");
        r.value = Some(bytes::Bytes::from(vec![i]));
        r
    }

    fn value(r: &ProducerRecord) -> u8 {
        r.value.as_ref().expect("a value")[0]
    }

    #[test]
    fn one_drain_is_queued_per_wake_up_and_records_keep_their_order() {
        let intake = Intake::default();
        let queued = Cell::new(0);
        let queue = || {
            queued.set(queued.get() + 1);
            true
        };
        let mut receivers = Vec::new();
        for i in 0..3 {
            let (tx, rx) = slot();
            receivers.push(rx);
            intake.append(record(i), Completion::slot(tx), queue);
        }
        assert_eq!(queued.get(), 1, "one drain for the three records");
        let mut taken = Vec::new();
        intake.drain(&mut taken);
        let values: Vec<u8> = taken.iter().map(|(r, _)| value(r)).collect();
        assert_eq!(values, [0, 1, 2]);
        let (tx, _rx) = slot();
        intake.append(record(3), Completion::slot(tx), queue);
        assert_eq!(
            queued.get(),
            2,
            "the first record after a drain queues the next"
        );
        let mut next = Vec::new();
        intake.drain(&mut next);
        assert_eq!(next.len(), 1);
        drop(receivers);
    }

    #[test]
    fn a_record_the_router_cannot_take_is_refused_with_its_record() {
        let intake = Intake::default();
        let (tx, rx) = slot();
        intake.append(record(9), Completion::slot(tx), || false);
        let err = futures_util::FutureExt::now_or_never(rx)
            .expect("answered")
            .expect_err("refused");
        assert!(matches!(err.kind(), ErrorKind::Closed));
        assert_eq!(value(&err.into_record().expect("the record")), 9);
        let mut taken = Vec::new();
        intake.drain(&mut taken);
        assert!(taken.is_empty(), "nothing waits");
    }
}
