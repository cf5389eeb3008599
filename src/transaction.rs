//! Transaction errors and their classes, as KIP-1050 names them
//! (<https://cwiki.apache.org/confluence/display/KAFKA/KIP-1050%3A+Consistent+error+handling+for+Transactions>).
//!
//! A transactional producer meets three kinds of error, and what the application must do
//! differs for each, so the class is decided in one place ([`classify`]) and carried by the
//! error the application sees ([`TransactionError::class`]):
//!
//! - **retriable**: the coordinator is loading, moved, or still finishing the previous
//!   transaction. The producer retries on its own (finding the coordinator again where it
//!   moved) until `max.block.ms`; only then does the operation fail, and the same call may be
//!   made again. Until a timed-out commit, abort or init is called again and completes, every
//!   other operation is refused ([`TransactionError::Unfinished`]): a commit may have reached
//!   the coordinator, so an abort cannot stand in for it.
//! - **abortable**: this transaction cannot commit (a record failed, a topic or group was
//!   refused, the group moved on). Abort it; the producer then begins new ones.
//! - **fatal**: the producer cannot go on (another producer with the same `transactional.id`
//!   fenced it, it is not authorized for the id, the broker's state is inconsistent with
//!   ours). Every later operation fails with the same error; close the producer.

use std::sync::Arc;

use crate::error::KafkaCode;

/// What an application must do about a transaction error (KIP-1050).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Retried by the producer; surfaces only when `max.block.ms` ran out. The same call may
    /// be made again ([`TransactionError::Unfinished`]: the call that timed out).
    Retriable,
    /// The transaction must be aborted; the producer goes on afterwards.
    Abortable,
    /// The producer cannot go on; close it.
    Fatal,
}

/// How a broker error code answering a transactional request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Retry after a backoff; `refind_coordinator`: ask FindCoordinator again first.
    Retry {
        /// The coordinator moved or is unknown.
        refind_coordinator: bool,
    },
    /// Not retried: fail the operation with this class.
    Fail(ErrorClass),
}

/// The class of a broker error code met by a transactional producer (in a response to
/// FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
/// EndTxn or Produce), as the Java client and KIP-1050 handle it.
pub fn classify(code: KafkaCode) -> Handling {
    use KafkaCode as K;
    match code {
        K::NOT_COORDINATOR | K::COORDINATOR_NOT_AVAILABLE => Handling::Retry {
            refind_coordinator: true,
        },
        K::COORDINATOR_LOAD_IN_PROGRESS
        | K::CONCURRENT_TRANSACTIONS
        | K::UNKNOWN_TOPIC_OR_PARTITION
        | K::REQUEST_TIMED_OUT
        | K::NETWORK_EXCEPTION
        | K::NOT_ENOUGH_REPLICAS
        | K::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | K::KAFKA_STORAGE_ERROR
        | K::THROTTLING_QUOTA_EXCEEDED
        | K::REBALANCE_IN_PROGRESS => Handling::Retry {
            refind_coordinator: false,
        },
        K::PRODUCER_FENCED
        | K::INVALID_PRODUCER_EPOCH
        | K::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        | K::TRANSACTION_COORDINATOR_FENCED
        | K::CLUSTER_AUTHORIZATION_FAILED
        | K::INVALID_TXN_STATE
        | K::INVALID_TRANSACTION_TIMEOUT
        | K::UNSUPPORTED_VERSION
        | K::UNSUPPORTED_FOR_MESSAGE_FORMAT => Handling::Fail(ErrorClass::Fatal),
        _ => Handling::Fail(ErrorClass::Abortable),
    }
}

/// Why a transaction operation failed, or why a transactional producer refused or failed a
/// record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// A transaction operation on a producer without `transactional.id`.
    #[error("not a transactional producer: transactional.id is not set")]
    NotTransactional,
    /// The operation is not allowed in the producer's transaction state (e.g. commit without
    /// begin, begin before init_transactions).
    #[error("{operation} is not allowed in transaction state {state}")]
    InvalidState {
        /// The operation asked for.
        operation: &'static str,
        /// The state the producer is in (Java's state names).
        state: &'static str,
    },
    /// A commit, abort or init is unfinished (typically it timed out): only that operation
    /// may be called now, until it succeeds or fails. After a timed-out commit the
    /// coordinator may have committed, so an abort must not be taken for one (as Java's
    /// `TransactionManager` refuses it).
    #[error(
        "{operation} cannot be called: the previous {unfinished} has not completed; if it \
         timed out, call {unfinished} again until it succeeds or fails"
    )]
    Unfinished {
        /// The operation asked for.
        operation: &'static str,
        /// The operation that must be called again.
        unfinished: &'static str,
    },
    /// A record sent to a transactional producer while no transaction is open.
    #[error(
        "record sent outside a transaction: a transactional producer takes records only \
         between begin_transaction (after init_transactions) and commit_transaction / \
         abort_transaction"
    )]
    NotInTransaction,
    /// The record's transaction was aborted before the record was written.
    #[error("transaction aborted: the record was not written")]
    Aborted,
    /// The transaction cannot commit; abort it, then begin a new one.
    #[error("abortable transaction error: {0}; abort the transaction and begin a new one")]
    Abortable(Arc<str>),
    /// The transaction coordinator no longer knows the producer id (INVALID_PRODUCER_ID_MAPPING,
    /// e.g. the `transactional.id` expired): abortable. The abort asks for a new producer id
    /// without sending EndTxn, which the coordinator would refuse the same way (Java's
    /// `beginCompletingTransaction` after an `InvalidPidMappingException`).
    #[error(
        "abortable transaction error: {0}; the transaction coordinator no longer knows this \
         producer id; abort the transaction (a new producer id is obtained) and begin a new one"
    )]
    InvalidProducerIdMapping(Arc<str>),
    /// The producer cannot go on; close it.
    #[error("fatal transaction error: {0}; the producer must be closed")]
    Fatal(Arc<str>),
    /// Another producer with the same `transactional.id` took over (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH): fatal, close this producer.
    #[error("fenced: another producer with this transactional.id took over ({0}); the producer must be closed")]
    Fenced(Arc<str>),
    /// Retriable errors went on for `max.block.ms`; the operation may be called again.
    #[error("{operation} timed out after {waited_ms} ms (max.block.ms): {last}")]
    TimedOut {
        /// The operation.
        operation: &'static str,
        /// How long it was retried.
        waited_ms: u64,
        /// The last error met.
        last: Arc<str>,
    },
    /// The producer is closed.
    #[error("producer is closed")]
    Closed,
}

impl TransactionError {
    /// What the application must do (KIP-1050). A record refused outside a transaction or
    /// an invalid call is the application's to fix and changes nothing: abortable, as Java
    /// leaves the producer usable. A transaction call on a producer without
    /// `transactional.id` is fatal to the call, not to the producer: no call of the kind can
    /// ever succeed there, while its records go on as before (Java's `IllegalStateException`). An operation refused because a timed-out one is
    /// unfinished is retriable: the timed-out call is to be made again, and neither aborting
    /// nor closing is the answer (the transaction may have committed).
    pub fn class(&self) -> ErrorClass {
        match self {
            TransactionError::TimedOut { .. } | TransactionError::Unfinished { .. } => {
                ErrorClass::Retriable
            }
            TransactionError::Fatal(_)
            | TransactionError::Fenced(_)
            | TransactionError::NotTransactional
            | TransactionError::Closed => ErrorClass::Fatal,
            TransactionError::InvalidState { .. }
            | TransactionError::NotInTransaction
            | TransactionError::Aborted
            | TransactionError::Abortable(_)
            | TransactionError::InvalidProducerIdMapping(_) => ErrorClass::Abortable,
        }
    }

    /// Whether another producer with the same `transactional.id` fenced this one.
    pub fn is_fenced(&self) -> bool {
        matches!(self, TransactionError::Fenced(_))
    }

    /// The error of a code that [`classify`] does not retry: fenced, fatal or abortable,
    /// with `why` as its text.
    pub fn from_code(code: KafkaCode, why: Arc<str>) -> TransactionError {
        match (code, classify(code)) {
            (KafkaCode::PRODUCER_FENCED | KafkaCode::INVALID_PRODUCER_EPOCH, _) => {
                TransactionError::Fenced(why)
            }
            (KafkaCode::INVALID_PRODUCER_ID_MAPPING, _) => {
                TransactionError::InvalidProducerIdMapping(why)
            }
            (_, Handling::Fail(ErrorClass::Fatal)) => TransactionError::Fatal(why),
            _ => TransactionError::Abortable(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_moves_are_retried_after_finding_it_again() {
        for code in [
            KafkaCode::NOT_COORDINATOR,
            KafkaCode::COORDINATOR_NOT_AVAILABLE,
        ] {
            assert_eq!(
                classify(code),
                Handling::Retry {
                    refind_coordinator: true
                }
            );
        }
        for code in [
            KafkaCode::CONCURRENT_TRANSACTIONS,
            KafkaCode::COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(
                classify(code),
                Handling::Retry {
                    refind_coordinator: false
                }
            );
        }
    }

    #[test]
    fn fencing_and_authorization_are_fatal_the_rest_abortable() {
        for code in [
            KafkaCode::PRODUCER_FENCED,
            KafkaCode::INVALID_PRODUCER_EPOCH,
            KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ] {
            assert_eq!(classify(code), Handling::Fail(ErrorClass::Fatal), "{code}");
        }
        for code in [
            KafkaCode::TOPIC_AUTHORIZATION_FAILED,
            KafkaCode::GROUP_AUTHORIZATION_FAILED,
            KafkaCode::TRANSACTION_ABORTABLE,
            KafkaCode::UNKNOWN_PRODUCER_ID,
            KafkaCode::ILLEGAL_GENERATION,
            KafkaCode::Unknown(999),
        ] {
            assert_eq!(
                classify(code),
                Handling::Fail(ErrorClass::Abortable),
                "{code}"
            );
        }
    }

    #[test]
    fn errors_carry_their_class() {
        let why = || Arc::from("EndTxn: PRODUCER_FENCED (90)");
        let fenced = TransactionError::from_code(KafkaCode::PRODUCER_FENCED, why());
        assert_eq!(fenced, TransactionError::Fenced(why()));
        assert_eq!(fenced.class(), ErrorClass::Fatal);
        assert!(fenced.is_fenced());
        assert!(fenced.to_string().contains("fenced"), "{fenced}");
        let epoch = TransactionError::from_code(KafkaCode::INVALID_PRODUCER_EPOCH, why());
        assert!(epoch.is_fenced());
        let unauthorized =
            TransactionError::from_code(KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, why());
        assert_eq!(unauthorized, TransactionError::Fatal(why()));
        assert!(!unauthorized.is_fenced());
        let topic = TransactionError::from_code(KafkaCode::TOPIC_AUTHORIZATION_FAILED, why());
        assert_eq!(topic, TransactionError::Abortable(why()));
        let unknown_id = TransactionError::from_code(KafkaCode::INVALID_PRODUCER_ID_MAPPING, why());
        assert_eq!(
            unknown_id,
            TransactionError::InvalidProducerIdMapping(why())
        );
        assert_eq!(unknown_id.class(), ErrorClass::Abortable);
        let abortable = TransactionError::Abortable(Arc::from("a record failed"));
        assert_eq!(abortable.class(), ErrorClass::Abortable);
        assert!(!abortable.is_fenced());
        let timed_out = TransactionError::TimedOut {
            operation: "commit_transaction",
            waited_ms: 60_000,
            last: Arc::from("COORDINATOR_LOAD_IN_PROGRESS (14)"),
        };
        assert_eq!(timed_out.class(), ErrorClass::Retriable);
    }
}
