//! Router ↔ interceptor chain, and accumulator → interceptor chain: records on their way to
//! partitioning, and outcomes on their way back.

use actix::prelude::*;
use herald::ProducerRecord;

use crate::completion::{Completion, Outcome};

/// Router → interceptor chain: run `on_send` for one record, then hand it back for routing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct OnSend {
    pub(crate) record: ProducerRecord,
    pub(crate) completion: Completion,
    /// The transaction the router took the record into (a transactional producer's
    /// generation), handed back in [`Route`]: a commit or abort may come while the record
    /// is with the interceptors.
    pub(crate) txn: Option<u64>,
}

/// Interceptor chain → router: a record after the interceptors' `on_send`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Route {
    pub(crate) record: ProducerRecord,
    pub(crate) completion: Completion,
    /// [`OnSend::txn`], unchanged.
    pub(crate) txn: Option<u64>,
}

/// Interceptor chain → router: a record the chain lost to a panic of its own (the record's
/// completion was answered with the panic), so the router stops counting it as in the chain
/// and a flush or commit waiting for it goes on.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RouteLost;

/// Accumulator → interceptor chain: the outcomes of one batch, for `on_acknowledgement`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Acknowledged {
    /// One outcome per record of the batch.
    pub(crate) outcomes: Vec<Outcome>,
}
