//! The published cluster view: what the metadata actor learnt, read by the router and the
//! accumulators without a message round trip. Written by the metadata actor only.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::prelude::*;
use dashmap::DashMap;

#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::delivery::SendBatches;

/// Leadership of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    /// Leader's broker id, `-1` when there is none.
    pub(crate) leader: i32,
    /// Leader epoch, `-1` when unknown.
    pub(crate) leader_epoch: i32,
}

/// What the cluster says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    /// The topic's name, shared with every record's metadata.
    pub(crate) name: Arc<str>,
    /// Indexed by partition id.
    pub(crate) partitions: Vec<PartitionMeta>,
    /// Partitions with a leader, for sticky partitioning.
    pub(crate) available: Vec<i32>,
}

/// How an accumulator reaches one broker's connection actor without knowing its type. A
/// clone is one reference count.
#[derive(Debug, Clone)]
pub(crate) struct BrokerLink(Arc<BrokerRecipients>);

#[derive(Debug)]
struct BrokerRecipients {
    batches: Recipient<SendBatches>,
    #[cfg(feature = "fault-injection")]
    crash: Recipient<Crash>,
}

impl BrokerLink {
    /// A link from the connection actor's recipients.
    pub(crate) fn new(
        batches: Recipient<SendBatches>,
        #[cfg(feature = "fault-injection")] crash: Recipient<Crash>,
    ) -> Self {
        BrokerLink(Arc::new(BrokerRecipients {
            batches,
            #[cfg(feature = "fault-injection")]
            crash,
        }))
    }

    /// Hands batches to the connection.
    pub(crate) fn send(&self, batches: SendBatches) {
        self.0.batches.do_send(batches);
    }

    /// The connection, for fault injection.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn crash(&self) -> Recipient<Crash> {
        self.0.crash.clone()
    }
}

/// The published cluster view.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    /// Known topics.
    pub(crate) topics: DashMap<Arc<str>, Arc<TopicMeta>>,
    /// Connections of the known brokers, by broker id.
    pub(crate) brokers: DashMap<i32, BrokerLink>,
    /// Producer id and epoch, once obtained (idempotence only).
    producer: RwLock<ProducerIdState>,
}

/// Where the idempotent producer's identity stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ProducerIdState {
    /// Idempotence off, or not asked yet.
    #[default]
    NotNeeded,
    /// InitProducerId is under way.
    Pending,
    /// Obtained.
    Ready {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        epoch: i16,
    },
    /// The broker refused for good (e.g. authorization); batches fail with this reason.
    Failed(Arc<str>),
}

impl ClusterView {
    /// The producer id state now.
    pub(crate) fn producer_state(&self) -> ProducerIdState {
        self.read_producer().clone()
    }

    /// Replaces the producer id state.
    pub(crate) fn set_producer_state(&self, state: ProducerIdState) {
        *self.write_producer() = state;
    }

    /// A restarted metadata actor lost its InitProducerId in flight: `Pending` goes back to
    /// `NotNeeded`, so the next refresh asks again.
    pub(crate) fn forget_pending_producer_id(&self) {
        let mut s = self.write_producer();
        if *s == ProducerIdState::Pending {
            *s = ProducerIdState::NotNeeded;
        }
    }

    // One rule for a poisoned lock, reading or writing: it is taken over. The state is a plain
    // value replaced in one assignment, so a panic elsewhere cannot leave it half written.
    fn read_producer(&self) -> RwLockReadGuard<'_, ProducerIdState> {
        self.producer.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_producer(&self) -> RwLockWriteGuard<'_, ProducerIdState> {
        self.producer.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The leader of `topic`-`partition` and its connection, if both are known.
    pub(crate) fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<(i32, BrokerLink)> {
        let meta = self.topics.get(topic)?;
        let leader = meta.partitions.get(partition as usize)?.leader;
        if leader < 0 {
            return None;
        }
        let conn = self.brokers.get(&leader)?;
        Some((leader, conn.clone()))
    }
}
