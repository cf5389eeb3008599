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
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Serialized key; `None` is a null key (sticky partitioning).
    pub key: Option<Bytes>,
    /// Serialized value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// CreateTime in milliseconds since the epoch; `None` means "now" when accepted.
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
