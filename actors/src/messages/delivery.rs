//! Accumulator ↔ connection: sealed batches out to the leader's connection, and exactly one
//! [`BatchCompleted`] back for every batch handed over that its accumulator did not take back
//! first ([`SendClaim`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use herald::KafkaCode;

use crate::otel::BatchLinks;

/// A closed batch on its way to the broker. It is answered exactly once: [`answer`] consumes
/// it, and dropping it unanswered answers it as lost (see the `Drop` impl); one its
/// accumulator cancelled is answered already, and neither sends anything.
///
/// [`answer`]: OutgoingBatch::answer
#[derive(Debug)]
pub(crate) struct OutgoingBatch {
    /// Topic of the batch.
    pub(crate) topic: Arc<str>,
    /// Partition of the batch.
    pub(crate) partition: i32,
    /// The accumulator's id for the batch.
    pub(crate) batch_id: u64,
    /// The encoded record batch.
    pub(crate) records: Bytes,
    /// Records in the batch (for metrics).
    pub(crate) record_count: u32,
    /// The records' distinct trace contexts, for the `send` span's links (feature
    /// `opentelemetry`).
    pub(crate) links: BatchLinks,
    /// Where the result goes; taken when answered.
    pub(crate) reply: Option<Recipient<BatchCompleted>>,
    /// Whether a request has taken this attempt yet, or its accumulator has answered it first.
    pub(crate) claim: SendClaim,
}

impl OutgoingBatch {
    /// Answers for this batch (unless its accumulator answered it already: cancelled).
    pub(crate) fn answer(mut self, result: BatchResult) {
        if let Some(reply) = self.reply.take().filter(|_| !self.claim.cancelled()) {
            reply.do_send(BatchCompleted {
                batch_id: self.batch_id,
                result,
            });
        }
    }
}

/// One attempt of a batch, between the accumulator that handed it to a connection and the
/// connection's queue. A batch waits there while the connection's in-flight slots are full or
/// the broker throttles it, and meanwhile its accumulator can answer it (its delivery timeout
/// passes, the producer is closed with a timeout). Answered as failed, it must not be written
/// afterwards: the application would be told it failed while it sits in the log. Whichever
/// side comes first wins: the connection taking it into a request (after which the accumulator
/// can only say it was in flight, as Java's expired in-flight batches), or the accumulator
/// cancelling it (after which the connection drops it unwritten).
#[derive(Debug, Clone, Default)]
pub(crate) struct SendClaim(Arc<AtomicU8>);

impl SendClaim {
    const QUEUED: u8 = 0;
    const TAKEN: u8 = 1;
    const CANCELLED: u8 = 2;

    /// The connection's side: true if the batch is now taken into a request.
    pub(crate) fn take(&self) -> bool {
        self.0
            .compare_exchange(
                Self::QUEUED,
                Self::TAKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The accumulator's side: true if no request took the batch, which then never will.
    pub(crate) fn cancel(&self) -> bool {
        self.0
            .compare_exchange(
                Self::QUEUED,
                Self::CANCELLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::CANCELLED
    }
}

/// A connection that panics while a batch is on its stack (taken from its queue into a
/// request, or out of the in-flight queue to read its response) unwinds past the code that
/// would answer it, and its accumulator would wait for `delivery.timeout.ms`. Dropped
/// unanswered, the batch goes back as lost: it may have been written, so it is retried as a
/// send that may have landed (idempotence deduplicates it).
impl Drop for OutgoingBatch {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take().filter(|_| !self.claim.cancelled()) {
            reply.do_send(BatchCompleted {
                batch_id: self.batch_id,
                result: BatchResult::Lost("the connection dropped the batch unanswered".into()),
            });
        }
    }
}

/// Accumulator → connection: batches ready for this broker, in the order they must be sent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct SendBatches(pub(crate) Vec<OutgoingBatch>);

/// How a connection answered for one batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BatchResult {
    /// The broker wrote it.
    Written {
        /// Offset of the first record (`-1` with acks=0).
        base_offset: i64,
        /// LogAppendTime, or `-1` for CreateTime topics.
        log_append_time: i64,
    },
    /// The broker answered with an error.
    Broker {
        /// The error.
        code: KafkaCode,
        /// The broker's message, if any: carried into the records' errors, as Java's
        /// exception carries it (bounded: see [`broker_message`]).
        message: Option<Arc<str>>,
        /// The leader the broker names in its refusal (KIP-951), if any.
        leader: Option<LeaderHint>,
        /// The records the broker found invalid (KIP-467 `record_errors`); empty when it
        /// names none, and then the error is every record's.
        invalid_records: Vec<InvalidRecord>,
    },
    /// Sent, but the connection died before the answer: it may or may not be written.
    Lost(String),
    /// Never left this client.
    NotSent(String),
    /// Never left this client: the broker refused to authenticate it (SASL or TLS). Not
    /// retried.
    AuthenticationFailed(Arc<str>),
}

/// A record a broker refused within its batch (KIP-467).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidRecord {
    /// Its index in the batch.
    pub(crate) index: i32,
    /// Why, in the broker's words (e.g. "Compacted topic cannot accept message without key
    /// in topic partition t-0."); the batch's message stands in when absent, as in Java.
    pub(crate) message: Option<Arc<str>>,
}

/// The most of a broker's error message kept. A message is cloned into every record of its
/// batch only as a reference, but it is the network's to size: a broker (or garbage) sending
/// a megabyte of text must not have it held by every outcome and written into every log line.
pub(crate) const BROKER_MESSAGE_MAX: usize = 1024;

/// A broker's error message as kept: cut to [`BROKER_MESSAGE_MAX`] bytes at a character
/// boundary (marked with `…`), `None` when absent or empty.
pub(crate) fn broker_message(m: Option<&str>) -> Option<Arc<str>> {
    let m = m?;
    if m.is_empty() {
        return None;
    }
    if m.len() <= BROKER_MESSAGE_MAX {
        return Some(Arc::from(m));
    }
    let mut end = BROKER_MESSAGE_MAX;
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    Some(Arc::from(format!("{}…", &m[..end])))
}

/// A partition's current leader as a broker named it in a Produce response (KIP-951,
/// Produce v10+): with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH the old leader says who
/// leads now, and where that broker listens when the client may not know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    /// The new leader's broker id.
    pub(crate) leader: i32,
    /// Its leader epoch.
    pub(crate) leader_epoch: i32,
    /// `host:port` of the new leader, from the response's `node_endpoints`.
    pub(crate) address: Option<String>,
}

/// Connection → accumulator: the result for one batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BatchCompleted {
    /// The batch.
    pub(crate) batch_id: u64,
    /// What happened.
    pub(crate) result: BatchResult,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Keeps what it is told.
    struct Inbox(Arc<Mutex<Vec<(u64, BatchResult)>>>);

    impl Actor for Inbox {
        type Context = Context<Self>;
    }

    impl Handler<BatchCompleted> for Inbox {
        type Result = ();

        fn handle(&mut self, msg: BatchCompleted, _: &mut Context<Self>) {
            self.0.lock().unwrap().push((msg.batch_id, msg.result));
        }
    }

    fn batch(id: u64, reply: &Recipient<BatchCompleted>) -> OutgoingBatch {
        OutgoingBatch {
            topic: Arc::from("t"),
            partition: 0,
            batch_id: id,
            records: Bytes::new(),
            record_count: 1,
            links: BatchLinks::default(),
            reply: Some(reply.clone()),
            claim: SendClaim::default(),
        }
    }

    #[actix_rt::test]
    async fn a_batch_is_answered_once_and_a_dropped_one_as_lost() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Inbox(seen.clone()).start().recipient();
        batch(1, &reply).answer(BatchResult::NotSent("x".into()));
        drop(batch(2, &reply));
        // A panic unwinding past a batch drops it too.
        let b = batch(3, &reply);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = b;
            panic!("a connection's handler panics");
        }));
        assert!(unwound.is_err());
        // Answered by its accumulator while it waited: refused by the request, and not
        // answered again when dropped.
        let cancelled = batch(4, &reply);
        assert!(cancelled.claim.clone().cancel());
        assert!(cancelled.claim.cancelled());
        assert!(!cancelled.claim.take());
        drop(cancelled);
        let taken = batch(5, &reply);
        assert!(taken.claim.take());
        assert!(!taken.claim.cancel(), "taken into a request first");
        taken.answer(BatchResult::NotSent("y".into()));
        // Cancelled and then dropped or answered (the connection lost) without a request
        // taking it: its accumulator has its answer already.
        let dropped = batch(6, &reply);
        assert!(dropped.claim.cancel());
        drop(dropped);
        let answered = batch(7, &reply);
        assert!(answered.claim.cancel());
        answered.answer(BatchResult::NotSent("z".into()));
        for _ in 0..100 {
            if seen.lock().unwrap().len() >= 4 {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Time for a second answer to any of them to arrive, were there one.
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "one answer per batch: {seen:?}");
        assert_eq!(seen[0], (1, BatchResult::NotSent("x".into())));
        assert!(matches!(&seen[1], (2, BatchResult::Lost(_))));
        assert!(matches!(&seen[2], (3, BatchResult::Lost(_))));
        assert_eq!(seen[3], (5, BatchResult::NotSent("y".into())));
    }

    #[test]
    fn a_brokers_message_is_kept_whole_up_to_a_kilobyte_and_cut_at_a_character() {
        assert_eq!(broker_message(None), None);
        assert_eq!(broker_message(Some("")), None);
        assert_eq!(broker_message(Some("why")).as_deref(), Some("why"));
        let whole = "é".repeat(BROKER_MESSAGE_MAX / 2);
        assert_eq!(
            broker_message(Some(&whole)).as_deref(),
            Some(whole.as_str())
        );
        // One byte over, in the middle of a two-byte character: cut before it.
        let long = format!("x{whole}");
        let kept = broker_message(Some(&long)).unwrap();
        assert!(kept.ends_with('…'));
        assert!(kept.len() <= BROKER_MESSAGE_MAX + '…'.len_utf8());
        assert!(long.starts_with(kept.trim_end_matches('…')));
        let huge = "y".repeat(1 << 20);
        assert_eq!(
            broker_message(Some(&huge)).unwrap().len(),
            BROKER_MESSAGE_MAX + '…'.len_utf8()
        );
    }
}
