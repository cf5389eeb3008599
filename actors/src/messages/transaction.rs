//! Router and accumulators ↔ transaction manager: ending a transaction, and adding a
//! partition to it before its first batch goes out (AddPartitionsToTxn, transaction
//! version 1).

use std::sync::Arc;

use actix::prelude::*;
use herald::TransactionError;

use super::application::TransactionResult;

/// Router → transaction manager: end the open transaction (EndTxn). The router sends it once
/// the transaction's records are flushed (commit) or discarded and settled (abort).
#[derive(Debug, Message)]
#[rtype(result = "TransactionResult")]
pub(crate) struct EndTransaction {
    /// Commit (true) or abort (false).
    pub(crate) commit: bool,
    /// The producer's close asks: abort whatever transaction is still going on (open, failed
    /// abortably, or an abort that timed out), and nothing else (not a commit that timed
    /// out, which may have reached the coordinator), as Java's close does while
    /// `hasOngoingTransaction`. Answered `InvalidState` when there is none.
    pub(crate) at_close: bool,
}

/// Accumulator → transaction manager: this partition has a batch of the transaction
/// `generation` to send; add it to the transaction first. Requests that arrive while an
/// AddPartitionsToTxn is in flight go together in the next one.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct AddPartition {
    /// The topic.
    pub(crate) topic: Arc<str>,
    /// The partition.
    pub(crate) partition: i32,
    /// The transaction the batch belongs to (see `TxnStatus::generation`).
    pub(crate) generation: u64,
    /// Where the answer goes.
    pub(crate) reply: Recipient<PartitionAdded>,
}

/// Transaction manager → accumulator: the answer to [`AddPartition`]. On an error the
/// accumulator fails the transaction's batches it holds with it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PartitionAdded {
    /// The transaction the partition was added to.
    pub(crate) generation: u64,
    /// Whether it was.
    pub(crate) result: Result<(), TransactionError>,
}
