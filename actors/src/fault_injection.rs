//! Test-only messages (feature `fault-injection`) that make actors misbehave on purpose, to
//! prove supervision and ordering under stress, and the registry of the actors they go to.
//! Reach the actors through [`Producer::fault_injection`](crate::Producer::fault_injection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use actix::prelude::*;

use crate::supervisor::ActorKind;

/// Test-only, to any actor of the producer: fail as a bug would; its supervisor restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum Crash {
    /// Stop (as `ctx.stop()`).
    Stop,
    /// Panic in the handler of this message.
    Panic,
    /// Panic at the next place where the actor holds records on its stack: the router
    /// routing a record, an accumulator completing a batch, the interceptor chain passing a
    /// record on, the sealer compressing a batch. Those records are answered with
    /// `ErrorKind::Panicked`. A connection panics with the batches of a ProduceRequest taken
    /// from its queue, not yet written: they go back to their accumulators as lost and are
    /// sent again (a connection holds no record's outcome). The metadata actor and the
    /// transaction manager hold neither, so for them this is `Panic`.
    PanicWhileHolding,
    /// Connections: the socket's reader task panics (at once, between frames); a connection
    /// without a socket panics in the handler. Other actors: as `Panic`.
    PanicInSocketTask,
    /// Accumulators: panic once the next completed batch's records all have their outcome,
    /// before the interceptors are told of them, which they must be all the same. Other
    /// actors: as `Panic`.
    PanicAfterAnswering,
}

impl Crash {
    /// Carries the crash out in the handler of an actor of kind `kind`.
    pub(crate) fn apply<A>(self, kind: ActorKind, victims: &Victims, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        match self {
            Crash::Stop => {
                tracing::warn!(actor = kind.name(), "stopping on request (fault injection)");
                ctx.stop();
            }
            Crash::Panic | Crash::PanicInSocketTask => {
                panic!("fault injection: the {} panics", kind.name())
            }
            Crash::PanicAfterAnswering => match kind {
                ActorKind::Accumulator => victims.after_answering.store(true, Ordering::Relaxed),
                _ => panic!("fault injection: the {} panics", kind.name()),
            },
            Crash::PanicWhileHolding => match kind {
                ActorKind::Metadata | ActorKind::Transaction => {
                    panic!("fault injection: the {} panics", kind.name())
                }
                _ => victims.armed[kind as usize].store(true, Ordering::Relaxed),
            },
        }
    }
}

/// Test-only, to the sealer: block its thread for a while, as a slow codec would.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stall(pub Duration);

/// Test-only, fault-injection handle → router: the accumulators started so far.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Recipient<Crash>>")]
pub(crate) struct GetAccumulators;

/// The actors a test may crash that no other actor holds an address of.
#[derive(Debug, Default)]
pub(crate) struct Victims {
    pub(crate) metadata: OnceLock<Recipient<Crash>>,
    pub(crate) interceptors: OnceLock<Recipient<Crash>>,
    pub(crate) transaction: OnceLock<Recipient<Crash>>,
    pub(crate) sealer: OnceLock<Recipient<Stall>>,
    pub(crate) sealer_crash: OnceLock<Recipient<Crash>>,
    /// Per actor kind: panic at the next place where it holds records (`PanicWhileHolding`).
    pub(crate) armed: [AtomicBool; ActorKind::ALL.len()],
    /// An accumulator panics once it has answered a batch (`PanicAfterAnswering`).
    pub(crate) after_answering: AtomicBool,
}

impl Victims {
    /// Panics if `kind` was armed with [`Crash::PanicWhileHolding`] (once).
    pub(crate) fn trip(&self, kind: ActorKind) {
        // A load first: records pass here one by one, and a swap would write every time.
        let armed = &self.armed[kind as usize];
        if armed.load(Ordering::Relaxed) && armed.swap(false, Ordering::Relaxed) {
            panic!(
                "fault injection: the {} panics while holding records",
                kind.name()
            );
        }
    }

    /// Panics if an accumulator was armed with [`Crash::PanicAfterAnswering`] (once).
    pub(crate) fn trip_after_answering(&self) {
        let armed = &self.after_answering;
        if armed.load(Ordering::Relaxed) && armed.swap(false, Ordering::Relaxed) {
            panic!("fault injection: the accumulator panics after answering a batch");
        }
    }
}
