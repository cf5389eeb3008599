//! Compression off the application's thread.
//!
//! Routing, batching and completions run on the arbiter that started the producer, usually
//! the application's own. Compressing a batch there capped a `send()` caller at the
//! compressor's speed (lz4 about 270 ns a record, gzip 6 µs) while librdkafka compresses on
//! its broker threads. Accumulators of a producer with compression hand each closed batch to
//! the sealer, an actor on an arbiter of its own, which compresses it, writes its header and
//! CRC, and sends the bytes back; uncompressed batches are still sealed in place (a CRC over
//! the batch costs less than the hop).

use actix::prelude::*;
use bytes::Bytes;
use herald::batch::{BatchBuilder, ProducerIds};
use herald::ProtocolError;

/// Accumulator → sealer: compress and close this batch under `ids`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Seal {
    /// The accumulator's id of the batch.
    pub batch_id: u64,
    /// The batch's records.
    pub builder: BatchBuilder,
    /// Producer id, epoch and base sequence to write into the header.
    pub ids: ProducerIds,
    /// Where the bytes go.
    pub reply: Recipient<Sealed>,
}

/// Sealer → accumulator: the closed batch, or why it could not be closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Sealed {
    /// The accumulator's id of the batch.
    pub batch_id: u64,
    /// Size of the records before compression.
    pub uncompressed: usize,
    /// The batch's bytes.
    pub result: Result<Bytes, ProtocolError>,
}

/// The sealer actor: stateless, one per producer that compresses.
#[derive(Debug, Default)]
pub struct Sealer;

impl Actor for Sealer {
    type Context = Context<Self>;
}

impl Handler<Seal> for Sealer {
    type Result = ();

    fn handle(&mut self, s: Seal, _: &mut Context<Self>) {
        let uncompressed = s.builder.size_in_bytes();
        s.reply.do_send(Sealed {
            batch_id: s.batch_id,
            uncompressed,
            result: s.builder.close(s.ids),
        });
    }
}

/// Test-only: block the sealer's thread for a while, as a slow codec would.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stall(pub std::time::Duration);

#[cfg(feature = "fault-injection")]
impl Handler<Stall> for Sealer {
    type Result = ();

    fn handle(&mut self, s: Stall, _: &mut Context<Self>) {
        std::thread::sleep(s.0);
    }
}
