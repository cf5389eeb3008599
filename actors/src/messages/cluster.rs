//! Metadata ↔ everyone: the published cluster view changed, and requests to refresh it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use herald::{ErrorKind, KafkaCode, PartitionInfo};

/// Metadata → router and accumulators (every subscriber): the cluster view was refreshed
/// (leaders may have moved, topics appeared, the producer id arrived). Carries the topics
/// that failed for good.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub(crate) struct ClusterChanged {
    /// Topics whose metadata request failed with an error that waiting will not fix.
    pub(crate) errors: Arc<HashMap<Arc<str>, KafkaCode>>,
    /// Set when the metadata request failed because the broker refused to authenticate
    /// this client: records waiting for metadata fail with it instead of waiting out
    /// max.block.ms.
    pub(crate) authentication: Option<Arc<str>>,
    /// Topics this refresh's response listed with usable metadata, changed or not: a
    /// route waiting for metadata newer than the record (a topic forgotten as idle) takes
    /// the view's entry once a response after it listed the topic, even an identical one.
    pub(crate) listed: Arc<HashSet<Arc<str>>>,
}

/// Producer (for the router) and router (for each accumulator) → metadata: send
/// `ClusterChanged` to this recipient after every refresh.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Subscribe(pub(crate) Recipient<ClusterChanged>);

/// Router → metadata: these topics are wanted; fetch them now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct AddTopics(pub(crate) Vec<Arc<str>>);

/// Router → metadata: topics nothing was produced to for `metadata.max.idle.ms`; leave them
/// out of metadata requests and the cluster view until they are added again (Java's
/// `ProducerMetadata.retainTopic`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetTopics(pub(crate) Vec<Arc<str>>);

/// Accumulator or connection → metadata: the cluster view may be stale; refresh.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum Refresh {
    /// A batch's leader refused it or is not known: refresh soon, coalesced with the others
    /// and paced (retry.backoff.ms after the last request), as Java's sender asks.
    Stale,
    /// An established connection to a broker was lost. That is news about the cluster (a
    /// broker stopped, or is on its way back), so the refresh goes at once rather than
    /// retry.backoff.ms after the last one, as librdkafka asks when a broker goes down: a
    /// broker that came back meanwhile is listed again, and its partitions go up to a
    /// backoff sooner. One unpaced request per lost connection, and a connection is lost at
    /// most once per connect, which its reconnect backoff paces.
    BrokerLost,
}

/// Accumulator → metadata: a Produce response named broker `node_id` at `address` as a
/// partition's new leader (KIP-951); start a connection to it unless it is known.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BrokerNamed {
    /// The broker's id.
    pub(crate) node_id: i32,
    /// Its `host:port`.
    pub(crate) address: String,
}

/// Metadata → connection: the broker is listed in the metadata again after a response that
/// left it out. A cluster lists only the brokers registered with it (Kafka drops a fenced or
/// stopped broker; librdkafka's mock one that is down), so the broker is back: try it now
/// instead of waiting out the reconnect backoff its refused attempts built up, as
/// librdkafka's producer connects to a broker that reappears.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BrokerListed;

/// Accumulator → metadata: the broker rejected our producer id or sequence in a way that
/// needs a new epoch (KIP-360); obtain one.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BumpEpoch {
    /// The producer id the caller saw fail.
    pub(crate) producer_id: i64,
    /// The epoch the caller saw fail. A failure under an identity the producer has already
    /// replaced (another id, or an older epoch) bumps nothing.
    pub(crate) failed_epoch: i16,
}

/// Producer → metadata: a topic's partitions (Java's `partitionsFor`), answered once its
/// metadata is in, or with why not: a topic error, a refused authentication, or
/// max.block.ms passed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<PartitionInfo>, ErrorKind>")]
pub(crate) struct PartitionsFor(pub(crate) Arc<str>);

/// The error a topic's metadata error means for what waits for the topic (records, lookups).
pub(crate) fn topic_error(topic: &Arc<str>, code: KafkaCode) -> ErrorKind {
    match code {
        KafkaCode::INVALID_TOPIC_EXCEPTION => ErrorKind::InvalidTopic {
            topic: topic.clone(),
            reason: "the broker rejected the topic name",
        },
        code => ErrorKind::Broker {
            code,
            topic: topic.clone(),
            partition: -1,
            message: None,
        },
    }
}
