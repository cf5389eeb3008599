//! Compression off the router's thread.
//!
//! Routing, batching and completions run on the router's arbiter (its own, or the one the
//! application gave it; when this was written, the application's own). Compressing a batch
//! there capped a `send()` caller at the compressor's speed (lz4 about 270 ns a record, gzip
//! 6 µs) while librdkafka compresses on its broker threads. Accumulators of a producer with
//! compression hand each closed batch to the sealer, an actor on an arbiter of its own, which
//! compresses it, writes its header and CRC, and sends the bytes back; uncompressed batches
//! are still sealed in place (a CRC over the batch costs less than the hop).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use actix::prelude::*;
use herald::ProtocolError;

#[cfg(feature = "fault-injection")]
use crate::fault_injection::{Crash, Stall};
use crate::messages::seal::{Seal, Sealed};

/// The sealer actor: one per producer that compresses; no state but a test's trap.
#[derive(Debug, Default)]
pub(crate) struct Sealer {
    /// Panic while sealing the next batch (`Crash::PanicWhileHolding`).
    #[cfg(feature = "fault-injection")]
    armed: bool,
}

impl Actor for Sealer {
    type Context = Context<Self>;
}

/// Stateless: a restart (after a panic while compressing) changes nothing.
impl Supervised for Sealer {}

impl Sealer {
    fn seal(&mut self, s: Seal) {
        let uncompressed = s.builder.size_in_bytes();
        #[cfg(feature = "fault-injection")]
        let armed = std::mem::take(&mut self.armed);
        let (builder, ids) = (s.builder, s.ids);
        let sealed = catch_unwind(AssertUnwindSafe(move || {
            #[cfg(feature = "fault-injection")]
            if armed {
                panic!("fault injection: the sealer panics while holding records");
            }
            builder.close(ids)
        }));
        let (result, panic) = match sealed {
            Ok(result) => (result, None),
            // The accumulator waits for this batch: answer it (it fails the batch), then let
            // the panic go on to the supervisor, which restarts the sealer and counts it.
            Err(payload) => (
                Err(ProtocolError::Compression {
                    codec: "sealer",
                    reason: "the sealer panicked while compressing the batch".into(),
                }),
                Some(payload),
            ),
        };
        s.reply.do_send(Sealed {
            batch_id: s.batch_id,
            uncompressed,
            result,
        });
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
    }
}

impl Handler<Seal> for Sealer {
    type Result = ();

    fn handle(&mut self, s: Seal, _: &mut Context<Self>) {
        self.seal(s);
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Stall> for Sealer {
    type Result = ();

    fn handle(&mut self, s: Stall, _: &mut Context<Self>) {
        std::thread::sleep(s.0);
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Sealer {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        match crash {
            Crash::PanicWhileHolding => self.armed = true,
            Crash::Stop => ctx.stop(),
            Crash::Panic | Crash::PanicInSocketTask | Crash::PanicAfterAnswering => {
                panic!("fault injection: the sealer panics")
            }
        }
    }
}
