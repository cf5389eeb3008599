//! Where a record's outcome goes: every accepted record carries exactly one [`Completion`],
//! and completing consumes it, so an outcome cannot be delivered twice by construction.

use std::sync::{Arc, Mutex};

use actix::dev::OneshotSender;
use actix::prelude::*;
use herald::{ProduceError, RecordMetadata};

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

/// The sink of one record's outcome.
#[derive(Debug)]
pub enum Completion {
    /// The reply to `router.send(Produce)`: actix's own response channel, stored without an
    /// extra channel or spawned future.
    Reply(OneshotSender<Outcome>),
    /// A `Delivered` message to a requester's mailbox.
    Notify {
        /// Requester.
        to: Recipient<Delivered>,
        /// Caller's tag.
        tag: u64,
    },
    /// One slot of a `ProduceBatch` reply.
    Batch {
        /// Shared collector of the batch call.
        collector: Arc<BatchCollector>,
        /// Index of the record in the call.
        index: usize,
    },
    /// `do_send` without `reply_to`: the outcome is only counted in metrics.
    Discard,
}

impl Completion {
    /// Delivers the outcome. Consumes `self`: a record is answered exactly once.
    pub fn complete(self, outcome: Outcome) {
        match self {
            Completion::Reply(tx) => {
                let _ = tx.send(outcome);
            }
            Completion::Notify { to, tag } => to.do_send(Delivered { outcome, tag }),
            Completion::Batch { collector, index } => collector.set(index, outcome),
            Completion::Discard => {}
        }
    }
}

/// Gathers the outcomes of one `ProduceBatch` call and replies once all are in.
#[derive(Debug)]
pub struct BatchCollector {
    state: Mutex<CollectorState>,
}

#[derive(Debug)]
struct CollectorState {
    outcomes: Vec<Option<Outcome>>,
    missing: usize,
    tx: Option<OneshotSender<Vec<Outcome>>>,
}

impl BatchCollector {
    /// A collector for `len` records answering on `tx` (none for `do_send`).
    pub fn new(len: usize, tx: Option<OneshotSender<Vec<Outcome>>>) -> Arc<Self> {
        let collector = Arc::new(BatchCollector {
            state: Mutex::new(CollectorState {
                outcomes: (0..len).map(|_| None).collect(),
                missing: len,
                tx,
            }),
        });
        if len == 0 {
            collector.finish_if_done();
        }
        collector
    }

    fn set(&self, index: usize, outcome: Outcome) {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let slot = &mut s.outcomes[index];
            debug_assert!(slot.is_none(), "record {index} answered twice");
            if slot.is_none() {
                *slot = Some(outcome);
                s.missing -= 1;
            }
        }
        self.finish_if_done();
    }

    fn finish_if_done(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
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
