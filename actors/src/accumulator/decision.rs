//! What an answer for a batch means. [`classify`] is a pure function of the batch, the answer
//! and the partition's state; the accumulator carries its [`Decision`] out in a second step
//! (`Accumulator::on_result`). Every class of answer is decided here and tested below.
//!
//! The rules, as Java's `Sender` and `TransactionManager` keep them for an idempotent
//! producer (KIP-98, KIP-360):
//! - written, or `DUPLICATE_SEQUENCE_NUMBER` under idempotence: done;
//! - a retriable broker error, or an attempt lost with its connection or never sent: retry
//!   while retries and the delivery timeout allow; when the refusal names another broker as
//!   the partition's leader (KIP-951), retry there at once, without backoff;
//! - `OUT_OF_ORDER_SEQUENCE_NUMBER`, `UNKNOWN_PRODUCER_ID`, `INVALID_PRODUCER_EPOCH` under
//!   idempotence: a new epoch, then retry (unless an earlier batch failed first, which the
//!   bump already repairs); an attempt that may have been written under an identity that is
//!   gone cannot be resolved and fails with "outcome unknown";
//!   A transactional producer does not repair them: the batch fails, which makes its
//!   transaction abortable (or fatal when fenced), as Java's `TransactionManager` does,
//!   except for `OUT_OF_ORDER_SEQUENCE_NUMBER` while an earlier batch is unresolved: it is
//!   retried behind that one;
//! - `MESSAGE_TOO_LARGE`: split a batch of several records in two (Java's
//!   `splitAndReenqueue`); a record alone in its batch fails with `RecordTooLarge`;
//! - any other broker error: fail.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::{ErrorKind, KafkaCode};

use super::SealedBatch;
use crate::messages::delivery::{BatchResult, LeaderHint};

/// What the accumulator knows besides the batch and its answer.
#[derive(Debug)]
pub(super) struct State<'a> {
    pub(super) topic: &'a Arc<str>,
    pub(super) partition: i32,
    /// The partition's other batches handed to a connection.
    pub(super) in_flight: &'a VecDeque<SealedBatch>,
    /// The partition's batches waiting to be sent.
    pub(super) ready: &'a VecDeque<SealedBatch>,
    /// The broker the batch was sent to (the partition's in-flight leader).
    pub(super) sent_to: Option<i32>,
    /// Producer id and epoch new batches would be stamped with now; `(-1, -1)` when none.
    pub(super) identity: (i64, i16),
    /// `retries`.
    pub(super) retries: u32,
    /// The producer has a `transactional.id`: a broken sequence or epoch is not repaired
    /// under the transaction (its epoch is the coordinator's); the batch fails and the
    /// transaction must be aborted.
    pub(super) transactional: bool,
    /// `delivery.timeout.ms`.
    pub(super) delivery_timeout: Duration,
    pub(super) now: Instant,
}

impl State<'_> {
    /// Whether a batch older than `id` is still unresolved.
    fn earlier_pending(&self, id: u64) -> bool {
        self.in_flight
            .iter()
            .chain(self.ready.iter())
            .any(|o| o.id < id)
    }

    fn broker_error(&self, code: KafkaCode, message: Option<&Arc<str>>) -> ErrorKind {
        ErrorKind::Broker {
            code,
            topic: self.topic.clone(),
            partition: self.partition,
            message: message.cloned(),
        }
    }
}

/// `base_offset` if a log can hold the batch's records from there, else `-1` (unknown). A
/// base offset whose last record would lie past `i64::MAX` is garbage from the network, but
/// the broker still said it has the batch: the batch completes with its offsets unknown, as
/// with a negative base offset (and as acks=0 reports them), instead of failing or going
/// again, which would write it twice; Java would report the wrapped sums.
fn holdable_base_offset(base_offset: i64, records: usize) -> i64 {
    let last = i64::try_from(records.saturating_sub(1))
        .ok()
        .and_then(|n| base_offset.checked_add(n));
    if base_offset < 0 || last.is_none() {
        -1
    } else {
        base_offset
    }
}

/// What to do with an answered batch.
#[derive(Debug, PartialEq)]
pub(super) enum Decision {
    /// The broker has the batch: complete its records (offsets from `base_offset`; `-1`
    /// when unknown).
    Complete {
        base_offset: i64,
        log_append_time: i64,
    },
    /// Send the batch again after a backoff.
    Retry {
        /// Why, for the log.
        reason: String,
        /// Leadership may have moved: ask for fresh metadata.
        refresh_metadata: bool,
        /// The broker lost or rejects the producer's sequence state: ask for a new epoch.
        bump_epoch: bool,
        /// What the failed attempt says about whether the broker holds the batch.
        attempt: Attempt,
        /// The refusal named another broker as the leader (KIP-951): record it in the
        /// cluster view and send there without waiting out a backoff.
        new_leader: Option<LeaderHint>,
    },
    /// The broker refused the batch as too large: split it into smaller batches that take
    /// its place (and its sequence numbers).
    Split,
    /// Fail the batch's records with `error`.
    Fail {
        error: ErrorKind,
        /// Ask for a new epoch: the failed batch leaves a gap in the partition's sequence.
        bump_epoch: bool,
        cause: Cause,
    },
}

/// What a failed attempt says about whether the broker may already hold the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Nothing new.
    Unchanged,
    /// Lost with its connection: the broker may have written it.
    Lost,
    /// Refused with an error Kafka also answers after appending the batch (see
    /// [`refused_after_append`]): the broker may have written it.
    Refused,
    /// The broker's sequence is below the batch's: an earlier lost attempt was not written,
    /// so the batch may take a new identity.
    NotWritten,
    /// Never sent: the connection could not be made. Not an attempt (as in Java, where a
    /// batch waits in the accumulator until its node is ready): it neither counts against
    /// `retries` nor lengthens the backoff.
    NotSent,
}

/// Why a batch fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The broker refused it with an error that no retry fixes.
    Refused,
    /// Retries ran out, or the delivery timeout passed, while retrying.
    GaveUp,
    /// An attempt was lost and the identity it went under is gone: whether it was written
    /// cannot be learnt.
    OutcomeUnknown,
}

/// Whether Kafka may answer `code` for a batch it has appended: the leader appends before
/// it waits for its followers (acks=all), then answers REQUEST_TIMED_OUT when they did not
/// catch up within the request's timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the in-sync
/// replicas shrank meanwhile, and NOT_LEADER_OR_FOLLOWER when it lost the leadership
/// meanwhile (the new leader may have the batch). Such a batch keeps its identity and
/// sequence until resolved, as one lost with its connection does: restamped under a new
/// epoch, a batch already in the log is written again. (Java keeps every batch's sequence
/// once it has one, except on the partition whose failure bumped the epoch.)
fn refused_after_append(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::REQUEST_TIMED_OUT
            | KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | KafkaCode::NOT_LEADER_OR_FOLLOWER
    )
}

/// Decides what `answer` means for `batch`.
pub(super) fn classify(batch: &SealedBatch, answer: &BatchResult, state: &State<'_>) -> Decision {
    let idempotent = batch.ids.base_sequence >= 0;
    // A failed batch leaves a gap in the partition's sequence, which a new epoch repairs;
    // a transactional producer's epoch is the coordinator's, bumped after the abort.
    let repairable = idempotent && !state.transactional;
    let new_leader = match answer {
        BatchResult::Broker {
            code,
            leader: Some(hint),
            ..
        } if code.retriable() && Some(hint.leader) != state.sent_to => Some(hint.clone()),
        _ => None,
    };
    let (reason, refresh_metadata, bump_epoch, attempt) = match answer {
        BatchResult::Written {
            base_offset,
            log_append_time,
        } => {
            return Decision::Complete {
                base_offset: holdable_base_offset(*base_offset, batch.records.len()),
                log_append_time: *log_append_time,
            }
        }
        BatchResult::Broker { code, .. }
            if idempotent && *code == KafkaCode::DUPLICATE_SEQUENCE_NUMBER =>
        {
            // The broker already has this batch: success, offset unknown.
            return Decision::Complete {
                base_offset: -1,
                log_append_time: -1,
            };
        }
        BatchResult::Broker { code, .. } if code.retriable() => (
            code.to_string(),
            code.needs_metadata_refresh(),
            false,
            if refused_after_append(*code) {
                Attempt::Refused
            } else {
                Attempt::Unchanged
            },
        ),
        BatchResult::Broker { code, .. }
            if idempotent
                && state.transactional
                && *code == KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                && state.earlier_pending(batch.id) =>
        {
            // Not the next batch in sequence: one before it was refused first and goes again
            // ahead of it, so this one follows, and the transaction need not abort (Java's
            // `TransactionManager::canRetry`).
            (code.to_string(), false, false, Attempt::Unchanged)
        }
        BatchResult::Broker { code, .. }
            if idempotent
                && !state.transactional
                && matches!(
                    code,
                    KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                        | KafkaCode::UNKNOWN_PRODUCER_ID
                        | KafkaCode::INVALID_PRODUCER_EPOCH
                ) =>
        {
            let out_of_order = *code == KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
            // An earlier batch of ours failed first: this one follows it on retry. Otherwise
            // the broker lost or rejects our sequence state: a new epoch restarts sequences
            // at 0 without reordering (KIP-360). A failure under an identity already replaced
            // is ignored by the metadata actor.
            let bump_epoch = !(out_of_order && state.earlier_pending(batch.id));
            let replaced = (batch.ids.producer_id, batch.ids.producer_epoch) != state.identity;
            let mut attempt = Attempt::Unchanged;
            if batch.maybe_written && replaced {
                if !out_of_order {
                    // The old identity is gone (fenced or forgotten): whether the lost attempt
                    // was written cannot be learnt. Say so rather than risk writing it twice.
                    let error = ErrorKind::Idempotence(Arc::from(format!(
                        "outcome unknown: an attempt may have been written (lost with its \
                         connection, or refused after the broker may have appended it) and \
                         the producer identity changed before it could be resolved ({code})"
                    )));
                    return Decision::Fail {
                        error,
                        bump_epoch,
                        cause: Cause::OutcomeUnknown,
                    };
                }
                // The broker's sequence is below this batch's: the lost attempt was not
                // written, so the batch may take the new identity.
                attempt = Attempt::NotWritten;
            }
            (code.to_string(), false, bump_epoch, attempt)
        }
        BatchResult::Broker { code, .. } if *code == KafkaCode::MESSAGE_TOO_LARGE => {
            if batch.records.len() > 1 && batch.span > 1 {
                return Decision::Split;
            }
            return Decision::Fail {
                error: ErrorKind::RecordTooLarge {
                    size: batch.bytes.len(),
                    max: 0,
                    key: "max.message.bytes",
                    limit: "what the broker accepts for the topic",
                },
                bump_epoch: repairable,
                cause: Cause::Refused,
            };
        }
        BatchResult::Broker { code, message, .. } => {
            return Decision::Fail {
                error: state.broker_error(*code, message.as_ref()),
                bump_epoch: repairable,
                cause: Cause::Refused,
            }
        }
        BatchResult::Lost(why) => (why.clone(), true, false, Attempt::Lost),
        BatchResult::NotSent(why) => (why.clone(), true, false, Attempt::NotSent),
        BatchResult::AuthenticationFailed(why) => {
            return Decision::Fail {
                error: ErrorKind::Authentication(why.clone()),
                // As for a refused batch: its sequence was never written, so the ones after
                // it need a new epoch.
                bump_epoch: repairable,
                cause: Cause::Refused,
            };
        }
    };
    let expired = state.now.saturating_duration_since(batch.created) >= state.delivery_timeout;
    // A batch never sent has used no retry; only delivery.timeout.ms bounds its wait.
    let gave_up = attempt != Attempt::NotSent && batch.attempts >= state.retries;
    if expired || gave_up {
        let error = match answer {
            // Says whether the batch may be in the log, as the expiry of a waiting batch
            // does: "retrying" alone reads as never written, safe to send again.
            _ if expired => ErrorKind::DeliveryTimeout {
                timeout_ms: state.delivery_timeout.as_millis() as u64,
                stage: match attempt {
                    Attempt::Lost => "in flight",
                    Attempt::Refused => "refused after it may have been written",
                    _ if batch.may_be_in_log() => {
                        "waiting to be sent again, an earlier attempt may be in the log"
                    }
                    _ => "retrying",
                },
                last_error: Some(Arc::from(reason)),
            },
            BatchResult::Broker { code, message, .. } => {
                state.broker_error(*code, message.as_ref())
            }
            // Java's NetworkException ("Disconnected from node N"), with what happened to
            // the last attempt: a timeout, a reset and a refused connection need different
            // fixes, and the code alone cannot tell them apart.
            _ => state.broker_error(KafkaCode::NETWORK_EXCEPTION, Some(&Arc::from(reason))),
        };
        return Decision::Fail {
            error,
            bump_epoch: bump_epoch || repairable,
            cause: Cause::GaveUp,
        };
    }
    Decision::Retry {
        reason,
        refresh_metadata,
        bump_epoch,
        attempt,
        new_leader,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use herald::batch::ProducerIds;

    use super::*;

    const PID: i64 = 7;
    const EPOCH: i16 = 3;
    const TIMEOUT: Duration = Duration::from_secs(120);

    fn batch(id: u64, ids: ProducerIds) -> SealedBatch {
        let pool = std::sync::Arc::new(crate::memory::MemoryPool::new(0, 0));
        let reserved = crate::memory::Reservation::new(&pool, 0);
        SealedBatch::new(
            (id, Vec::new(), Instant::now(), reserved),
            Bytes::new(),
            ids,
        )
    }

    fn idempotent(id: u64) -> SealedBatch {
        batch(
            id,
            ProducerIds {
                producer_id: PID,
                producer_epoch: EPOCH,
                base_sequence: 10,
            },
        )
    }

    /// A record slot whose outcome nobody awaits.
    fn slot() -> crate::completion::RecordSlot {
        let (tx, _) = tokio::sync::oneshot::channel();
        crate::completion::RecordSlot {
            completion: crate::completion::Completion::reply(tx),
            timestamp: 0,
            key_size: -1,
            value_size: -1,
            trace: Default::default(),
        }
    }

    fn plain(id: u64) -> SealedBatch {
        batch(id, ProducerIds::NONE)
    }

    /// Decides with no other batch pending, the batch's own identity current, retries left.
    fn decide(b: &SealedBatch, answer: BatchResult) -> Decision {
        decide_with(b, answer, &VecDeque::new(), (PID, EPOCH), 5)
    }

    fn decide_with(
        b: &SealedBatch,
        answer: BatchResult,
        pending: &VecDeque<SealedBatch>,
        identity: (i64, i16),
        retries: u32,
    ) -> Decision {
        decide_as(b, answer, pending, identity, retries, false)
    }

    fn decide_as(
        b: &SealedBatch,
        answer: BatchResult,
        pending: &VecDeque<SealedBatch>,
        identity: (i64, i16),
        retries: u32,
        transactional: bool,
    ) -> Decision {
        let topic: Arc<str> = Arc::from("t");
        let empty = VecDeque::new();
        let state = State {
            topic: &topic,
            partition: 2,
            in_flight: pending,
            ready: &empty,
            sent_to: Some(1),
            identity,
            retries,
            transactional,
            delivery_timeout: TIMEOUT,
            now: Instant::now(),
        };
        classify(b, &answer, &state)
    }

    #[test]
    fn a_transactional_producer_fails_a_broken_sequence_instead_of_bumping() {
        let b = batch(3, ProducerIds::NONE);
        let b = SealedBatch {
            ids: ProducerIds {
                producer_id: PID,
                producer_epoch: EPOCH,
                base_sequence: 0,
            },
            ..b
        };
        for code in [
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            KafkaCode::UNKNOWN_PRODUCER_ID,
            KafkaCode::INVALID_PRODUCER_EPOCH,
            KafkaCode::PRODUCER_FENCED,
        ] {
            let d = decide_as(&b, broker(code), &VecDeque::new(), (PID, EPOCH), 5, true);
            assert!(
                matches!(
                    d,
                    Decision::Fail {
                        bump_epoch: false,
                        ..
                    }
                ),
                "{code}: {d:?}"
            );
        }
    }

    /// A transactional batch refused as out of order while an earlier one is unresolved is
    /// not the next in sequence: it goes again behind that one (Java's `canRetry`); alone,
    /// the gap is real and it fails.
    #[test]
    fn a_transactional_batch_out_of_order_behind_an_earlier_one_is_retried() {
        let b = idempotent(5);
        let earlier: VecDeque<SealedBatch> = [idempotent(3)].into();
        let code = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
        assert_eq!(
            decide_as(&b, broker(code), &earlier, (PID, EPOCH), 5, true),
            retry(code.to_string(), false, false, Attempt::Unchanged)
        );
        assert!(matches!(
            decide_as(&b, broker(code), &VecDeque::new(), (PID, EPOCH), 5, true),
            Decision::Fail {
                bump_epoch: false,
                ..
            }
        ));
    }

    fn broker(code: KafkaCode) -> BatchResult {
        BatchResult::Broker {
            code,
            message: None,
            leader: None,
            invalid_records: Vec::new(),
        }
    }

    fn broker_error(code: KafkaCode) -> ErrorKind {
        ErrorKind::Broker {
            code,
            topic: Arc::from("t"),
            partition: 2,
            message: None,
        }
    }

    fn retry(reason: String, refresh: bool, bump: bool, attempt: Attempt) -> Decision {
        Decision::Retry {
            reason,
            refresh_metadata: refresh,
            bump_epoch: bump,
            attempt,
            new_leader: None,
        }
    }

    #[test]
    fn written_completes_with_the_offsets() {
        let answer = BatchResult::Written {
            base_offset: 42,
            log_append_time: 1000,
        };
        let expected = Decision::Complete {
            base_offset: 42,
            log_append_time: 1000,
        };
        assert_eq!(decide(&idempotent(1), answer.clone()), expected);
        assert_eq!(decide(&plain(1), answer), expected);
    }

    /// A base offset whose records would run past `i64::MAX` (garbage from the network)
    /// completes the batch with offsets unknown; the last offset a log can hold is kept.
    #[test]
    fn an_overflowing_base_offset_completes_with_offsets_unknown() {
        let written = |base_offset| BatchResult::Written {
            base_offset,
            log_append_time: -1,
        };
        let complete = |base_offset| Decision::Complete {
            base_offset,
            log_append_time: -1,
        };
        let mut b = plain(1);
        b.records = (0..3).map(|_| slot()).collect();
        assert_eq!(decide(&b, written(i64::MAX)), complete(-1));
        assert_eq!(decide(&b, written(i64::MAX - 1)), complete(-1));
        assert_eq!(decide(&b, written(i64::MAX - 2)), complete(i64::MAX - 2));
        assert_eq!(decide(&b, written(-7)), complete(-1));
        b.records.truncate(1);
        assert_eq!(decide(&b, written(i64::MAX)), complete(i64::MAX));
    }

    #[test]
    fn duplicate_sequence_is_success_only_under_idempotence() {
        let dup = broker(KafkaCode::DUPLICATE_SEQUENCE_NUMBER);
        assert_eq!(
            decide(&idempotent(1), dup.clone()),
            Decision::Complete {
                base_offset: -1,
                log_append_time: -1
            }
        );
        assert_eq!(
            decide(&plain(1), dup),
            Decision::Fail {
                error: broker_error(KafkaCode::DUPLICATE_SEQUENCE_NUMBER),
                bump_epoch: false,
                cause: Cause::Refused,
            }
        );
    }

    #[test]
    fn retriable_broker_errors_retry_and_refresh_metadata_when_leadership_moved() {
        let code = KafkaCode::NOT_LEADER_OR_FOLLOWER;
        assert_eq!(
            decide(&idempotent(1), broker(code)),
            retry(code.to_string(), true, false, Attempt::Refused)
        );
        let code = KafkaCode::REQUEST_TIMED_OUT;
        assert_eq!(
            decide(&plain(1), broker(code)),
            retry(code.to_string(), false, false, Attempt::Refused)
        );
    }

    /// Errors Kafka answers only before appending leave the batch as it was; those it also
    /// answers after appending say it may be in the log.
    #[test]
    fn errors_kafka_answers_after_appending_say_the_batch_may_be_written() {
        for (code, attempt) in [
            (KafkaCode::NOT_ENOUGH_REPLICAS, Attempt::Unchanged),
            (
                KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                Attempt::Refused,
            ),
            (KafkaCode::REQUEST_TIMED_OUT, Attempt::Refused),
            (KafkaCode::NOT_LEADER_OR_FOLLOWER, Attempt::Refused),
            (KafkaCode::LEADER_NOT_AVAILABLE, Attempt::Unchanged),
            (KafkaCode::UNKNOWN_TOPIC_OR_PARTITION, Attempt::Unchanged),
        ] {
            match decide(&idempotent(1), broker(code)) {
                Decision::Retry { attempt: a, .. } => assert_eq!(a, attempt, "{code}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_refusal_naming_another_leader_retries_there_at_once() {
        // Sent to broker 1 (see `decide_with`); broker 1 names broker 2 at epoch 9.
        let hint = LeaderHint {
            leader: 2,
            leader_epoch: 9,
            address: Some("b2:9092".into()),
        };
        for code in [
            KafkaCode::NOT_LEADER_OR_FOLLOWER,
            KafkaCode::FENCED_LEADER_EPOCH,
        ] {
            let answer = BatchResult::Broker {
                code,
                message: None,
                leader: Some(hint.clone()),
                invalid_records: Vec::new(),
            };
            assert_eq!(
                decide(&idempotent(1), answer),
                Decision::Retry {
                    reason: code.to_string(),
                    refresh_metadata: true,
                    bump_epoch: false,
                    attempt: if code == KafkaCode::NOT_LEADER_OR_FOLLOWER {
                        Attempt::Refused
                    } else {
                        Attempt::Unchanged
                    },
                    new_leader: Some(hint.clone()),
                },
                "{code}"
            );
        }
        // A hint naming the broker that refused moves nothing: an ordinary retry.
        let same = BatchResult::Broker {
            code: KafkaCode::NOT_LEADER_OR_FOLLOWER,
            message: None,
            leader: Some(LeaderHint {
                leader: 1,
                ..hint.clone()
            }),
            invalid_records: Vec::new(),
        };
        assert_eq!(
            decide(&plain(1), same),
            retry(
                KafkaCode::NOT_LEADER_OR_FOLLOWER.to_string(),
                true,
                false,
                Attempt::Refused
            )
        );
        // Out of retries, a hint does not keep the batch alive.
        let mut b = plain(1);
        b.attempts = 5;
        let answer = BatchResult::Broker {
            code: KafkaCode::NOT_LEADER_OR_FOLLOWER,
            message: None,
            leader: Some(hint),
            invalid_records: Vec::new(),
        };
        assert!(matches!(
            decide(&b, answer),
            Decision::Fail {
                cause: Cause::GaveUp,
                ..
            }
        ));
    }

    #[test]
    fn retries_exhausted_fail_with_the_last_error_and_bump_under_idempotence() {
        let code = KafkaCode::NOT_LEADER_OR_FOLLOWER;
        let mut b = idempotent(1);
        b.attempts = 3;
        assert_eq!(
            decide_with(&b, broker(code), &VecDeque::new(), (PID, EPOCH), 3),
            Decision::Fail {
                error: broker_error(code),
                bump_epoch: true,
                cause: Cause::GaveUp,
            }
        );
        let mut b = plain(1);
        b.attempts = 3;
        let lost = BatchResult::Lost("connection reset".into());
        assert_eq!(
            decide_with(&b, lost, &VecDeque::new(), (PID, EPOCH), 3),
            Decision::Fail {
                error: ErrorKind::Broker {
                    code: KafkaCode::NETWORK_EXCEPTION,
                    topic: Arc::from("t"),
                    partition: 2,
                    message: Some(Arc::from("connection reset")),
                },
                bump_epoch: false,
                cause: Cause::GaveUp,
            }
        );
    }

    #[test]
    fn delivery_timeout_while_retrying_fails_the_batch() {
        let mut b = plain(1);
        b.created = Instant::now() - TIMEOUT;
        assert_eq!(
            decide(&b, BatchResult::NotSent("not connected".into())),
            Decision::Fail {
                error: ErrorKind::DeliveryTimeout {
                    timeout_ms: TIMEOUT.as_millis() as u64,
                    stage: "retrying",
                    last_error: Some(Arc::from("not connected")),
                },
                bump_epoch: false,
                cause: Cause::GaveUp,
            }
        );
    }

    /// An attempt lost in flight, or an earlier one lost without idempotence, may be in the
    /// log: the delivery timeout says so rather than "retrying".
    #[test]
    fn delivery_timeout_after_a_lost_attempt_says_it_may_be_in_the_log() {
        let mut b = plain(1);
        b.created = Instant::now() - TIMEOUT;
        let stage = |b: &SealedBatch, answer| match decide(b, answer) {
            Decision::Fail {
                error: ErrorKind::DeliveryTimeout { stage, .. },
                ..
            } => stage,
            other => panic!("{other:?}"),
        };
        assert_eq!(stage(&b, BatchResult::Lost("reset".into())), "in flight");
        b.lost_unresolvable = true;
        assert_eq!(
            stage(
                &b,
                BatchResult::NotSent("connection closed by broker".into())
            ),
            "waiting to be sent again, an earlier attempt may be in the log"
        );
    }

    #[test]
    fn a_batch_never_sent_has_used_no_retry() {
        let mut b = plain(1);
        b.attempts = 1_000;
        assert_eq!(
            decide(&b, BatchResult::NotSent("connect failed".into())),
            retry("connect failed".into(), true, false, Attempt::NotSent)
        );
    }

    #[test]
    fn lost_and_not_sent_retry_with_a_metadata_refresh() {
        assert_eq!(
            decide(&idempotent(1), BatchResult::Lost("reset".into())),
            retry("reset".into(), true, false, Attempt::Lost)
        );
        assert_eq!(
            decide(&plain(1), BatchResult::NotSent("closed".into())),
            retry("closed".into(), true, false, Attempt::NotSent)
        );
    }

    #[test]
    fn sequence_state_errors_bump_the_epoch_and_retry() {
        for code in [
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            KafkaCode::UNKNOWN_PRODUCER_ID,
            KafkaCode::INVALID_PRODUCER_EPOCH,
        ] {
            assert_eq!(
                decide(&idempotent(1), broker(code)),
                retry(code.to_string(), false, true, Attempt::Unchanged),
                "{code}"
            );
        }
    }

    #[test]
    fn out_of_order_behind_an_earlier_pending_batch_follows_it_without_a_bump() {
        let code = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
        let earlier: VecDeque<_> = [idempotent(1)].into();
        assert_eq!(
            decide_with(&idempotent(2), broker(code), &earlier, (PID, EPOCH), 5),
            retry(code.to_string(), false, false, Attempt::Unchanged)
        );
        // A younger pending batch does not hold the bump back.
        let later: VecDeque<_> = [idempotent(3)].into();
        assert_eq!(
            decide_with(&idempotent(2), broker(code), &later, (PID, EPOCH), 5),
            retry(code.to_string(), false, true, Attempt::Unchanged)
        );
        // Other sequence errors bump regardless.
        let code = KafkaCode::UNKNOWN_PRODUCER_ID;
        assert_eq!(
            decide_with(&idempotent(2), broker(code), &earlier, (PID, EPOCH), 5),
            retry(code.to_string(), false, true, Attempt::Unchanged)
        );
    }

    #[test]
    fn a_maybe_written_batch_under_a_replaced_identity() {
        let mut b = idempotent(1);
        b.maybe_written = true;
        let new_identity = (PID, EPOCH + 1);
        let none = VecDeque::new();
        // Out of order: the broker's sequence shows the lost attempt was not written.
        let code = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
        assert_eq!(
            decide_with(&b, broker(code), &none, new_identity, 5),
            retry(code.to_string(), false, true, Attempt::NotWritten)
        );
        // Fenced or forgotten: the outcome cannot be learnt.
        for code in [
            KafkaCode::UNKNOWN_PRODUCER_ID,
            KafkaCode::INVALID_PRODUCER_EPOCH,
        ] {
            let Decision::Fail {
                error: ErrorKind::Idempotence(why),
                bump_epoch: true,
                cause: Cause::OutcomeUnknown,
            } = decide_with(&b, broker(code), &none, new_identity, 5)
            else {
                panic!("{code}: not an outcome-unknown failure");
            };
            assert!(why.starts_with("outcome unknown"), "{why}");
        }
        // Under its own (current) identity it is simply retried.
        let code = KafkaCode::UNKNOWN_PRODUCER_ID;
        assert_eq!(
            decide_with(&b, broker(code), &none, (PID, EPOCH), 5),
            retry(code.to_string(), false, true, Attempt::Unchanged)
        );
    }

    #[test]
    fn sequence_errors_without_idempotence_are_refusals() {
        let code = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
        assert_eq!(
            decide(&plain(1), broker(code)),
            Decision::Fail {
                error: broker_error(code),
                bump_epoch: false,
                cause: Cause::Refused,
            }
        );
    }

    #[test]
    fn message_too_large_splits_a_batch_of_several_records() {
        let mut b = idempotent(1);
        b.records = (0..3).map(|_| slot()).collect();
        let too_large = broker(KafkaCode::MESSAGE_TOO_LARGE);
        assert_eq!(decide(&b, too_large.clone()), Decision::Split);
        b.ids = ProducerIds::NONE;
        assert_eq!(decide(&b, too_large.clone()), Decision::Split);
        // Out of ids to give the pieces: refused as it stands.
        b.span = 1;
        assert!(matches!(
            decide(&b, too_large),
            Decision::Fail {
                error: ErrorKind::Broker { .. } | ErrorKind::RecordTooLarge { .. },
                cause: Cause::Refused,
                ..
            }
        ));
    }

    #[test]
    fn message_too_large_fails_a_single_record_as_too_large() {
        let mut b = idempotent(1);
        b.records = vec![slot()];
        b.bytes = Bytes::from(vec![0u8; 5000]);
        assert_eq!(
            decide(&b, broker(KafkaCode::MESSAGE_TOO_LARGE)),
            Decision::Fail {
                error: ErrorKind::RecordTooLarge {
                    size: 5000,
                    max: 0,
                    key: "max.message.bytes",
                    limit: "what the broker accepts for the topic",
                },
                bump_epoch: true,
                cause: Cause::Refused,
            }
        );
    }

    #[test]
    fn a_refusal_carries_the_brokers_message() {
        let code = KafkaCode::INVALID_RECORD;
        let said: Arc<str> = Arc::from("One or more records have been rejected");
        let answer = BatchResult::Broker {
            code,
            message: Some(said.clone()),
            leader: None,
            invalid_records: Vec::new(),
        };
        assert_eq!(
            decide(&plain(1), answer),
            Decision::Fail {
                error: ErrorKind::Broker {
                    code,
                    topic: Arc::from("t"),
                    partition: 2,
                    message: Some(said),
                },
                bump_epoch: false,
                cause: Cause::Refused,
            }
        );
    }

    #[test]
    fn other_broker_errors_fail_and_bump_under_idempotence() {
        for code in [KafkaCode::RECORD_LIST_TOO_LARGE, KafkaCode::CORRUPT_MESSAGE] {
            assert_eq!(
                decide(&idempotent(1), broker(code)),
                Decision::Fail {
                    error: broker_error(code),
                    bump_epoch: true,
                    cause: Cause::Refused,
                }
            );
            assert_eq!(
                decide(&plain(1), broker(code)),
                Decision::Fail {
                    error: broker_error(code),
                    bump_epoch: false,
                    cause: Cause::Refused,
                }
            );
        }
    }
}
