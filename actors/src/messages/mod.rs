//! Messages that cross between actors, grouped by conversation. Nothing here knows an actor
//! type: a message that needs an answer either is answered as the reply to `send()` or
//! carries a [`Recipient`] for it, so actor modules depend on these modules
//! and never on each other for a message.
//!
//! - [`application`]: application → router (the public API: `Produce`, `Flush`, ...).
//! - [`intercept`]: router ↔ interceptor chain, and accumulator → interceptor chain.
//! - [`batching`]: router → accumulator (a batch started or filled, flush, abort).
//! - [`seal`]: accumulator ↔ sealer (compression off the application's thread).
//! - [`delivery`]: accumulator ↔ connection (batches out, one answer per batch back).
//! - [`request`]: metadata and transaction manager → connection (one message per Kafka
//!   request kind; the transactional ones share `Transact`).
//! - [`cluster`]: metadata ↔ everyone (cluster changes, refreshes, epoch bumps).
//! - [`transaction`]: router and accumulators ↔ transaction manager (end a transaction, add
//!   a partition to it).
//!
//! Test-only messages live in [`fault_injection`](crate::fault_injection); linger deadlines
//! ([`LingerDue`](crate::clock::LingerDue)) in the clock, which sends them.

pub(crate) mod application;
pub(crate) mod batching;
pub(crate) mod cluster;
pub(crate) mod delivery;
pub(crate) mod intercept;
pub(crate) mod request;
pub(crate) mod seal;
pub(crate) mod transaction;

use actix::prelude::*;

/// Router (at close) or metadata → any actor of the producer: stop for good. Accumulators
/// first fail whatever is still in them with `Aborted`; connections close gracefully.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Supervisor of any actor → router: an actor went past the restart limit, so the producer is
/// broken; the router fails what it holds and refuses every later record with this error.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ProducerBroken(pub(crate) herald::ErrorKind);
