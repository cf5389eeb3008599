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
//! - **Bounded by the callers.** Like records in futures parked on a full mailbox, or
//!   `do_send` records, what waits here is what callers have outstanding; once routed,
//!   buffer.memory and max.block.ms apply as to any record.
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
    /// The router will take `records` without being asked (see the module docs).
    router_coming: bool,
}

impl Intake {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record. When the router is not coming, `queue_drain` is called under the
    /// intake's lock to send it `DrainIntake`; when it is, `alive` tells whether the router
    /// still runs. Either answering `false` (the router is gone) refuses the record with
    /// `Closed` at once.
    pub(crate) fn append(
        &self,
        record: ProducerRecord,
        completion: Completion,
        queue_drain: impl FnOnce() -> bool,
        alive: impl FnOnce() -> bool,
    ) {
        let mut s = self.lock();
        let reachable = if s.router_coming {
            alive()
        } else {
            let queued = queue_drain();
            s.router_coming = queued;
            queued
        };
        if !reachable {
            drop(s);
            completion.complete(Err(ProduceError::refused(ErrorKind::Closed, record)));
            return;
        }
        s.records.push((record, completion));
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
    /// whatever made it, and get `false`.
    pub(crate) fn take(&self, spare: &mut Vec<Entry>, answering: bool) -> bool {
        spare.clear();
        let mut s = self.lock();
        std::mem::swap(&mut s.records, spare);
        if answering {
            s.router_coming = !spare.is_empty();
        }
        answering && s.router_coming
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
    fn the_router_is_asked_once_and_looks_again_while_records_come() {
        let intake = Intake::default();
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
            intake.append(record(i), Completion::slot(tx), queue, alive);
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
        let intake = Intake::default();
        let (tx, rx) = slot();
        intake.append(record(9), Completion::slot(tx), || false, || true);
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
        intake.append(record(1), Completion::slot(tx), || true, || true);
        let (tx, rx) = slot();
        intake.append(record(2), Completion::slot(tx), || true, || false);
        let err = futures_util::FutureExt::now_or_never(rx)
            .expect("answered")
            .expect_err("refused");
        assert!(matches!(err.kind(), ErrorKind::Closed));
        assert_eq!(value(&err.into_record().expect("the record")), 2);
    }
}
