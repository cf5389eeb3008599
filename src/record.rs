//! The record a user produces and the metadata it is acknowledged with.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

/// A record header. Values may be null, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key (UTF-8 on the wire).
    pub key: Cow<'static, str>,
    /// Header value; `None` is a null value.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record as handed to the producer, before partitioning.
///
/// Topic is a `Cow` so that the common case of a `'static` topic name costs no allocation per
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: Cow<'static, str>,
    /// Explicit partition; `None` lets the partitioner choose. A negative one is refused
    /// (`ErrorKind::InvalidPartition`), as Java refuses it.
    pub partition: Option<i32>,
    /// Serialized key; `None` is a null key (sticky partitioning).
    pub key: Option<Bytes>,
    /// Serialized value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// CreateTime in milliseconds since the epoch; `None` means "now" when accepted. A
    /// negative one is refused (`ErrorKind::InvalidTimestamp`), as Java refuses it.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// An empty record for `topic`.
    pub fn new(topic: impl Into<Cow<'static, str>>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// What the broker acknowledged for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic; shared by every record of a batch.
    pub topic: Arc<str>,
    /// Partition the record was written to.
    pub partition: i32,
    /// Offset in the partition; `-1` when `acks=0` (the broker does not say).
    pub offset: i64,
    /// CreateTime of the record, or the broker's LogAppendTime if the topic uses it.
    pub timestamp: i64,
    /// Serialized key size in bytes (`-1` for a null key), as Java's `serializedKeySize`.
    pub serialized_key_size: i32,
    /// Serialized value size in bytes (`-1` for a null value).
    pub serialized_value_size: i32,
}

/// A broker as the cluster's metadata describes it (Java's `Node`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Node {
    /// The broker's id.
    pub id: i32,
    /// The host it advertises; empty for a replica on a broker the metadata does not list
    /// (down, fenced), as Java's placeholder node.
    pub host: String,
    /// The port it advertises; `-1` with an empty host.
    pub port: i32,
    /// Its `broker.rack`, if it has one.
    pub rack: Option<String>,
}

impl Node {
    /// A node the metadata names by id only.
    pub fn unlisted(id: i32) -> Node {
        Node {
            id,
            host: String::new(),
            port: -1,
            rack: None,
        }
    }

    /// A listed node.
    pub fn new(id: i32, host: impl Into<String>, port: i32, rack: Option<String>) -> Node {
        Node {
            id,
            host: host.into(),
            port,
            rack,
        }
    }
}

/// One partition of a topic as the producer's metadata knows it (Java's `PartitionInfo`,
/// the answer of `partitionsFor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The leader, if the partition has one on a broker the metadata lists; a leader
    /// learnt from a Produce response (KIP-951) counts, as in Java.
    pub leader: Option<Node>,
    /// The leader's epoch, `-1` when unknown.
    pub leader_epoch: i32,
    /// Every replica, the preferred one first.
    pub replicas: Vec<Node>,
    /// The in-sync replicas.
    pub in_sync_replicas: Vec<Node>,
    /// Replicas on brokers whose log directory is offline.
    pub offline_replicas: Vec<Node>,
}

/// Kafka's topic name rules (`org.apache.kafka.common.internals.Topic.validate`): why
/// `topic` is not a legal name, if it is not.
pub fn validate_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("topic name is empty");
    }
    if topic == "." || topic == ".." {
        return Err("topic name cannot be \".\" or \"..\"");
    }
    if topic.len() > 249 {
        return Err("topic name is longer than 249 characters");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("topic name may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}
