//! Router → accumulator: what happened in a partition's queue, and the router's commands.
//! Records themselves never travel in a message: the router appends them into the
//! [`PartitionQueue`](crate::partition::PartitionQueue) under its lock.

use actix::prelude::*;

/// Router → accumulator: a new batch was started (arm the linger timer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BatchStarted;

/// Router → accumulator: a batch filled up; send it without waiting for linger.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BatchFilled;

/// Router → accumulator: resolve when every batch of the partition that exists now is
/// complete (the router's answer to the application's `Flush`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct FlushPartition;

/// Router → accumulator (at close, past its timeout): fail everything not yet acknowledged
/// with `Aborted` and stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Abort;

/// Router → accumulator (aborting a transaction): fail the records not yet sent with
/// "transaction aborted", and resolve once the batches in flight are answered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct DiscardUnsent;
