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

#[cfg(feature = "fault-injection")]
use crate::fault_injection::Stall;
use crate::messages::seal::{Seal, Sealed};

/// The sealer actor: stateless, one per producer that compresses.
#[derive(Debug, Default)]
pub(crate) struct Sealer;

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

#[cfg(feature = "fault-injection")]
impl Handler<Stall> for Sealer {
    type Result = ();

    fn handle(&mut self, s: Stall, _: &mut Context<Self>) {
        std::thread::sleep(s.0);
    }
}
