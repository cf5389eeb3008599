//! The intake of [`Producer::send`](crate::Producer::send): records that callers append under
//! a lock and the router takes in bulk, one `DrainIntake` message per wake-up instead of one
//! actix request (envelope, mailbox node, reply channel) per record.
//!
//! Rules that keep `Producer::send` equivalent to `router.send(Produce)`:
//! - **One drain message is queued whenever the intake is not empty.** The first record after
//!   a drain queues `DrainIntake`, and does so while holding the lock, so no caller can append
//!   behind a drain that is not in the router's mailbox yet. Hence a `Flush`, `Close` or
//!   `Produce` a caller sends after appending sits behind the drain that carries its record.
//! - **Order.** Records are drained in the order appended, and routed in that order.
//! - **Bounded like the mailbox.** At most `capacity` records wait here (the producer gives
//!   the router's mailbox capacity); past it a
//!   caller goes through the mailbox (`router.send`), behind the queued drain, so order holds
//!   and a stalled router (buffer.memory, max.block.ms) holds callers back as before.
//! - **Exactly one outcome.** A record's reply channel moves with it into the router, which
//!   completes it as any `send()` reply; if the router is gone the records are failed here.

use std::sync::{Mutex, MutexGuard};

use herald::{ErrorKind, ProduceError, ProducerRecord};

use crate::completion::{Completion, SlotSender};

/// A record appended by `Producer::send` and where its outcome goes.
pub(crate) type Entry = (ProducerRecord, SlotSender);

/// Records waiting for the router (see the module docs).
#[derive(Debug)]
pub(crate) struct Intake {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Entry>,
    /// A drain is queued (or being handled) and will take `records`.
    drain_queued: bool,
}

/// What [`Intake::append`] did with a record.
#[derive(Debug)]
pub(crate) enum Appended {
    /// In the intake; a drain will take it.
    Queued,
    /// The intake is full: the record comes back for the mailbox path (its reply channel is
    /// dropped unused; the mailbox path brings its own).
    Full(ProducerRecord),
    /// The drain could not be queued (the router is gone): the record is refused.
    Refused,
}

impl Intake {
    /// An intake that holds at most `capacity` records.
    pub(crate) fn new(capacity: usize) -> Self {
        Intake {
            state: Mutex::default(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record. `queue_drain` is called, under the intake's lock, when no drain is
    /// queued yet; it returns whether the drain message reached the router's mailbox.
    pub(crate) fn append(
        &self,
        record: ProducerRecord,
        reply: SlotSender,
        queue_drain: impl FnOnce() -> bool,
    ) -> Appended {
        let mut s = self.lock();
        if s.records.len() >= self.capacity {
            return Appended::Full(record);
        }
        if !s.drain_queued {
            if !queue_drain() {
                drop(s);
                Completion::Slot(reply)
                    .complete(Err(ProduceError::refused(ErrorKind::Closed, record)));
                return Appended::Refused;
            }
            s.drain_queued = true;
        }
        s.records.push((record, reply));
        Appended::Queued
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
        let intake = Intake::new(16);
        let queued = Cell::new(0);
        let queue = || {
            queued.set(queued.get() + 1);
            true
        };
        let mut receivers = Vec::new();
        for i in 0..3 {
            let (tx, rx) = crate::completion::slot();
            receivers.push(rx);
            assert!(matches!(
                intake.append(record(i), tx, queue),
                Appended::Queued
            ));
        }
        assert_eq!(queued.get(), 1, "one drain for the three records");
        let mut taken = Vec::new();
        intake.drain(&mut taken);
        assert_eq!(
            taken.iter().map(|(r, _)| value(r)).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let (tx, _rx) = crate::completion::slot();
        intake.append(record(3), tx, queue);
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
    fn a_full_intake_hands_the_record_back() {
        let intake = Intake::new(4);
        for i in 0..4 {
            let (tx, _rx) = crate::completion::slot();
            assert!(matches!(
                intake.append(record(i as u8), tx, || true),
                Appended::Queued
            ));
        }
        let (tx, _rx) = crate::completion::slot();
        match intake.append(record(7), tx, || panic!("a drain is queued already")) {
            Appended::Full(r) => assert_eq!(value(&r), 7),
            other => panic!("expected Full, got {other:?}"),
        }
    }

    #[test]
    fn a_record_the_router_cannot_take_is_refused_with_its_record() {
        let intake = Intake::new(16);
        let (tx, rx) = crate::completion::slot();
        assert!(matches!(
            intake.append(record(9), tx, || false),
            Appended::Refused
        ));
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
