//! Notifications that several kinds of actor receive.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use herald::KafkaCode;

/// Metadata → router and accumulators: the cluster view was refreshed (leaders may have
/// moved, topics appeared, the producer id arrived). Carries the topics that failed for good.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct ClusterChanged {
    /// Topics whose metadata request failed with an error that waiting will not fix.
    pub errors: Arc<HashMap<Arc<str>, KafkaCode>>,
}

/// Router (at close) or metadata → any actor of the producer: stop for good. Accumulators
/// first fail whatever is still in them with `Aborted`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Test-only, to any actor of the producer: stop as if crashed; its supervisor restarts it.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crash;
