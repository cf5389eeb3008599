//! Test-only messages (feature `fault-injection`) that make actors misbehave on purpose, to
//! prove supervision and ordering under stress, and the registry of the actors they go to.
//! Reach the actors through [`Producer::fault_injection`](crate::Producer::fault_injection).

use std::sync::OnceLock;
use std::time::Duration;

use actix::prelude::*;

/// Test-only, to any actor of the producer: stop as if crashed; its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crash;

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
}
