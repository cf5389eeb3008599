//! Accumulator ↔ sealer: a batch closed (compressed, header and CRC written) on the sealer's
//! thread.

use actix::prelude::*;
use bytes::Bytes;
use herald::batch::{BatchBuilder, ProducerIds};
use herald::ProtocolError;

/// Accumulator → sealer: compress and close this batch under `ids`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Seal {
    /// The accumulator's id of the batch.
    pub(crate) batch_id: u64,
    /// The batch's records.
    pub(crate) builder: BatchBuilder,
    /// Producer id, epoch and base sequence to write into the header.
    pub(crate) ids: ProducerIds,
    /// Where the bytes go.
    pub(crate) reply: Recipient<Sealed>,
}

/// Sealer → accumulator: the closed batch, or why it could not be closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Sealed {
    /// The accumulator's id of the batch.
    pub(crate) batch_id: u64,
    /// Size of the records before compression.
    pub(crate) uncompressed: usize,
    /// The batch's bytes.
    pub(crate) result: Result<Bytes, ProtocolError>,
}
