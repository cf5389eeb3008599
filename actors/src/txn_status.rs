//! [`TxnStatus`]: what the router and the accumulators must know of a transactional
//! producer's transaction without a message round trip: which transaction is open (its
//! generation, so an accumulator knows whether its partition was added to this one), and
//! whether it has failed (so the router refuses records and the accumulators stop sending).
//!
//! It also says which transaction protocol the open transaction uses (KIP-890's version 2,
//! or version 1), which connections need to pick Produce, TxnOffsetCommit and EndTxn
//! versions, and the broker's finalized `transaction.version` that connections learn from
//! ApiVersions.
//!
//! Written by the transaction manager, except two narrow paths: connections record the
//! feature level brokers advertise, and an accumulator whose batch
//! failed marks the transaction failed ([`TxnStatus::fail`]), which only ever makes it worse
//! (open → abortable → fatal); only the transaction manager clears an abortable failure,
//! once the transaction is aborted.

use std::sync::atomic::{AtomicBool, AtomicI16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use herald::{ErrorClass, TransactionError};

/// The shared status of a transactional producer's transaction.
#[derive(Debug, Default)]
pub(crate) struct TxnStatus {
    /// Transaction protocol version 2 may be used when brokers offer it (tests turn it off
    /// to exercise version 1 on brokers that offer both).
    allow_v2: bool,
    /// The highest `transaction.version` a broker finalized, from ApiVersions.
    advertised: AtomicI16,
    /// The open transaction uses version 2.
    v2: AtomicBool,
    /// Counts transactions begun; 0 before the first.
    generation: AtomicU64,
    /// `failure` is set: lets the record path skip the lock.
    failed: AtomicBool,
    /// A failure of this transaction was INVALID_PRODUCER_ID_MAPPING (whichever was recorded
    /// first): the coordinator no longer knows the producer id, so the abort skips EndTxn.
    producer_id_unknown: AtomicBool,
    failure: Mutex<Option<TransactionError>>,
}

impl TxnStatus {
    /// The status of a producer that may use transaction protocol version 2 (`allow_v2`)
    /// when the brokers offer it.
    pub(crate) fn new(allow_v2: bool) -> Self {
        TxnStatus {
            allow_v2,
            ..TxnStatus::default()
        }
    }

    /// A connection's broker finalized `transaction.version` at `level`.
    pub(crate) fn note_broker_level(&self, level: i16) {
        self.advertised.fetch_max(level, Ordering::AcqRel);
    }

    /// Whether the next transaction may use version 2: allowed, and offered by the brokers.
    pub(crate) fn v2_available(&self) -> bool {
        self.allow_v2 && self.advertised.load(Ordering::Acquire) >= 2
    }

    /// Whether the open transaction uses version 2.
    pub(crate) fn v2(&self) -> bool {
        self.v2.load(Ordering::Acquire)
    }

    /// Sets the protocol version of the transaction about to begin (the transaction manager
    /// only, while no batch is in flight).
    pub(crate) fn set_v2(&self, v2: bool) {
        self.v2.store(v2, Ordering::Release);
    }

    /// The transaction open now (or the last one).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A new transaction begins (the transaction manager only); returns its generation.
    pub(crate) fn begin(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Why the transaction cannot commit, if it cannot.
    pub(crate) fn failure(&self) -> Option<TransactionError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.lock().clone()
    }

    /// Records a failure, unless a worse one (or an earlier one of the same class) is
    /// already recorded: the first abortable reason is the one reported, a fatal one wins.
    pub(crate) fn fail(&self, error: TransactionError) {
        if matches!(error, TransactionError::InvalidProducerIdMapping(_)) {
            self.producer_id_unknown.store(true, Ordering::Release);
        }
        let mut f = self.lock();
        let replace = match f.as_ref() {
            None => true,
            Some(old) => old.class() != ErrorClass::Fatal && error.class() == ErrorClass::Fatal,
        };
        if replace {
            *f = Some(error);
            self.failed.store(true, Ordering::Release);
        }
    }

    /// Whether the coordinator answered INVALID_PRODUCER_ID_MAPPING in this transaction.
    pub(crate) fn producer_id_unknown(&self) -> bool {
        self.producer_id_unknown.load(Ordering::Acquire)
    }

    /// The transaction was aborted: an abortable failure is over (a fatal one stays).
    pub(crate) fn clear_abortable(&self) {
        self.producer_id_unknown.store(false, Ordering::Release);
        let mut f = self.lock();
        if f.as_ref().is_some_and(|e| e.class() != ErrorClass::Fatal) {
            *f = None;
            self.failed.store(false, Ordering::Release);
        }
    }

    // A poisoned lock is taken over: the value is replaced in one assignment.
    fn lock(&self) -> MutexGuard<'_, Option<TransactionError>> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn failures_only_get_worse_until_an_abort_clears_the_abortable_one() {
        let s = TxnStatus::default();
        assert_eq!(s.failure(), None);
        let first = TransactionError::Abortable(Arc::from("first"));
        s.fail(first.clone());
        s.fail(TransactionError::Abortable(Arc::from("second")));
        assert_eq!(s.failure(), Some(first));
        s.clear_abortable();
        assert_eq!(s.failure(), None);
        let fatal = TransactionError::Fatal(Arc::from("PRODUCER_FENCED (90)"));
        s.fail(TransactionError::Abortable(Arc::from("a")));
        s.fail(fatal.clone());
        s.fail(TransactionError::Abortable(Arc::from("b")));
        assert_eq!(s.failure(), Some(fatal.clone()));
        s.clear_abortable();
        assert_eq!(
            s.failure(),
            Some(fatal),
            "an abort does not clear a fatal error"
        );
    }

    /// The abort skips EndTxn when any failure of the transaction was
    /// INVALID_PRODUCER_ID_MAPPING, also one recorded after the failure reported.
    #[test]
    fn an_unknown_producer_id_is_remembered_until_the_abort() {
        let s = TxnStatus::default();
        s.fail(TransactionError::Abortable(Arc::from("a record timed out")));
        assert!(!s.producer_id_unknown());
        s.fail(TransactionError::InvalidProducerIdMapping(Arc::from(
            "INVALID_PRODUCER_ID_MAPPING (49)",
        )));
        assert!(s.producer_id_unknown());
        assert!(matches!(s.failure(), Some(TransactionError::Abortable(_))));
        s.clear_abortable();
        assert!(!s.producer_id_unknown());
    }

    #[test]
    fn version_2_needs_both_the_brokers_and_the_producer() {
        let s = TxnStatus::new(true);
        assert!(!s.v2_available(), "no broker heard from yet");
        s.note_broker_level(1);
        assert!(!s.v2_available());
        s.note_broker_level(2);
        s.note_broker_level(0);
        assert!(s.v2_available(), "the highest level any broker finalized");
        let capped = TxnStatus::new(false);
        capped.note_broker_level(2);
        assert!(!capped.v2_available(), "capped at version 1");
        assert!(!s.v2());
        s.set_v2(true);
        assert!(s.v2());
    }

    #[test]
    fn generations_count_transactions() {
        let s = TxnStatus::default();
        assert_eq!(s.generation(), 0);
        assert_eq!(s.begin(), 1);
        assert_eq!(s.begin(), 2);
        assert_eq!(s.generation(), 2);
    }
}
