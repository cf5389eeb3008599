//! Application → router: the messages an application sends to a producer's router, and the
//! only messages of the crate that are public.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use herald::serializer::Serializer;
use herald::{ErrorKind, Header, PartitionInfo, ProduceError, ProducerRecord, TransactionError};

use crate::completion::{BatchTally, Delivered, Notifier, Outcome};
use crate::metrics::MetricsSnapshot;
use crate::otel::Captured;

/// Application → router: produce one record. Resolves to its outcome once acknowledged per
/// `acks`; with [`Produce::reply_to`] the outcome goes to that mailbox instead.
#[derive(Debug)]
pub struct Produce {
    pub(crate) record: ProducerRecord,
    pub(crate) reply_to: ReplyTo,
    pub(crate) tag: u64,
    /// The trace context where the record was made (feature `opentelemetry`; nothing
    /// without it), injected into its headers when the producer takes it.
    pub(crate) trace: Captured,
}

/// Where a `Produce` outcome goes besides the `send()` reply.
#[derive(Debug)]
pub(crate) enum ReplyTo {
    /// The reply to `send()` (nothing with `do_send`).
    Reply,
    /// A [`Delivered`] message.
    Recipient(Recipient<Delivered>),
    /// Part of a [`Deliveries`](crate::Deliveries) message.
    Notifier(Notifier),
}

impl Message for Produce {
    type Result = Outcome;
}

impl Produce {
    /// A record for `topic` with null key and value.
    #[inline]
    pub fn new(topic: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Produce::from_record(ProducerRecord::new(topic))
    }

    /// Wraps a record built elsewhere.
    #[inline]
    pub fn from_record(record: ProducerRecord) -> Self {
        Produce {
            record,
            reply_to: ReplyTo::Reply,
            tag: 0,
            trace: Captured::now(),
        }
    }

    /// As [`from_record`](Self::from_record), in a trace context read before: for many
    /// records made in one place, which then read it once.
    pub fn from_record_in(record: ProducerRecord, context: &TraceContext) -> Self {
        Produce {
            record,
            reply_to: ReplyTo::Reply,
            tag: 0,
            trace: context.0.clone(),
        }
    }

    /// Sets the serialized key.
    #[inline]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.record.key = Some(key.into());
        self
    }

    /// Sets the serialized value.
    #[inline]
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.record.value = Some(value.into());
        self
    }

    /// Sets the key to a copy of `key`. Small keys share a chunk with the thread's other
    /// copies instead of an allocation each (see [`herald::arena`]); for a key borrowed
    /// from a buffer the application reuses, as librdkafka copies a borrowed one.
    #[inline]
    pub fn key_from_slice(mut self, key: &[u8]) -> Self {
        self.record.key = Some(herald::arena::copy(key));
        self
    }

    /// Sets the value to a copy of `value`, as [`key_from_slice`](Self::key_from_slice).
    #[inline]
    pub fn value_from_slice(mut self, value: &[u8]) -> Self {
        self.record.value = Some(herald::arena::copy(value));
        self
    }

    /// Serializes and sets the key.
    pub fn key_with<T: ?Sized, S: Serializer<T>>(
        mut self,
        serializer: &S,
        key: &T,
    ) -> Result<Self, ProduceError> {
        self.record.key = self.serialize(serializer, key)?;
        Ok(self)
    }

    /// Serializes and sets the value.
    pub fn value_with<T: ?Sized, S: Serializer<T>>(
        mut self,
        serializer: &S,
        value: &T,
    ) -> Result<Self, ProduceError> {
        self.record.value = self.serialize(serializer, value)?;
        Ok(self)
    }

    fn serialize<T: ?Sized, S: Serializer<T>>(
        &self,
        s: &S,
        data: &T,
    ) -> Result<Option<Bytes>, ProduceError> {
        s.serialize(&self.record.topic, data).map_err(|e| {
            ProduceError::refused(
                ErrorKind::Serialization(Arc::from(e.to_string())),
                self.record.clone(),
            )
        })
    }

    /// Adds a header.
    #[inline]
    pub fn header(
        mut self,
        key: impl Into<std::borrow::Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Self {
        self.record.headers.push(Header::new(key, value));
        self
    }

    /// Sends to this partition instead of asking the partitioner.
    #[inline]
    pub fn partition(mut self, partition: i32) -> Self {
        self.record.partition = Some(partition);
        self
    }

    /// Sets the CreateTime (milliseconds since the epoch); default is when the router accepts it.
    #[inline]
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.record.timestamp = Some(millis);
        self
    }

    /// Delivers the outcome as a [`Delivered`] message to `recipient` (use with `do_send`).
    #[inline]
    pub fn reply_to(mut self, recipient: Recipient<Delivered>) -> Self {
        self.reply_to = ReplyTo::Recipient(recipient);
        self
    }

    /// Delivers the outcome inside a [`Deliveries`](crate::Deliveries) message to `notifier`, together with the
    /// outcomes of the other records of its batch that name the same notifier (use with
    /// `do_send`). The cheapest per-record path: one message per batch instead of one per
    /// record, and a clone of the notifier costs no allocation.
    #[inline]
    pub fn notify(mut self, notifier: Notifier) -> Self {
        self.reply_to = ReplyTo::Notifier(notifier);
        self
    }

    /// A caller's tag echoed in [`Delivered::tag`].
    #[inline]
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// The record.
    pub fn record(&self) -> &ProducerRecord {
        &self.record
    }
}

/// Application → router: many records at once; resolves when every one has its outcome, in
/// the order given. Cheaper than one `Produce` each: one message for all of them.
#[derive(Debug)]
pub struct ProduceBatch(pub Vec<Produce>);

impl Message for ProduceBatch {
    type Result = Vec<Outcome>;
}

impl ProduceBatch {
    /// The records, all made where this is called (see [`TraceContext`]).
    pub fn of_records(records: Vec<ProducerRecord>) -> ProduceBatch {
        let context = TraceContext::current();
        ProduceBatch(
            records
                .into_iter()
                .map(|record| Produce::from_record_in(record, &context))
                .collect(),
        )
    }
}

/// Application → router: many records at once, as [`ProduceBatch`], answered with a
/// [`BatchTally`] (how many were delivered, and which failed and why) instead of every
/// record's metadata. For callers that count deliveries and report failures, as kcat does
/// with its delivery reports and the console producer does: no metadata is made, kept or
/// handed back per delivered record (in `perf` of the console producer, gathering and
/// handing back a `ProduceBatch`'s per-record outcomes was about a sixth of its CPU).
#[derive(Debug)]
pub struct ProduceBatchTally(pub Vec<Produce>);

impl Message for ProduceBatchTally {
    type Result = BatchTally;
}

/// The trace context (feature `opentelemetry`) current where records are made, read once for
/// many of them: [`Produce::from_record`] reads it per record, which was a fifth of the
/// console producer's cost per line on its reader thread. Records that go into one
/// [`ProduceBatch`] are usually made in one place. Without the feature it is nothing.
#[derive(Debug, Clone)]
pub struct TraceContext(Captured);

impl TraceContext {
    /// The context current here: the `tracing` span's OpenTelemetry context, or else the
    /// OpenTelemetry API's.
    pub fn current() -> TraceContext {
        TraceContext(Captured::now())
    }
}

/// Producer (`Producer::send`, `Producer::do_send`) → router, and the router to itself: take
/// the records waiting in the producer's intake; sent only when the router is not coming
/// back anyway ([`intake`](crate::intake)).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct DrainIntake;

/// Producer (`Producer::send_when_ready`, `Producer::ready` with no room left) → router:
/// someone waits for `buffer.memory`, so the batches that linger go now (Java's accumulator
/// makes every batch sendable while a thread waits for memory), rather than hold the memory
/// until `linger.ms` or the waiter's `max.block.ms`, whichever comes first.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Expedite;

/// Application → router: resolves when every record sent before it has its outcome.
/// (Not the accumulators' `FlushPartition`, which the router sends each of them then.)
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Application → router: refuse new records, flush for at most `timeout`, then fail whatever
/// is still unacknowledged with `Aborted` and stop the producer's actors. `Duration::ZERO`
/// aborts at once. Resolves to `true` when everything was flushed; a later `Close` resolves
/// with the first one's outcome, once it is known (the first one's time counts).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Close {
    /// How long to flush before aborting.
    pub timeout: Duration,
}

/// Application → router: the partitions of a topic as the producer's metadata has them
/// (Java's `partitionsFor`), for code that holds the router's address; answered as
/// [`Producer::partitions_for`](crate::Producer::partitions_for) answers.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<PartitionInfo>, ErrorKind>")]
pub struct GetPartitions(pub String);

/// Application → router: a snapshot of the producer's metrics.
#[derive(Debug, Message)]
#[rtype(result = "MetricsSnapshot")]
pub struct GetMetrics;

/// What a transaction operation resolves to (see [`TransactionError::class`] for what to do
/// about an error).
pub type TransactionResult = Result<(), TransactionError>;

/// Application → router → transaction manager: obtain the producer id for `transactional.id`
/// (fencing older producers with the same id and aborting what they left open). Once, before
/// the first transaction; may be called again after it timed out.
#[derive(Debug, Message)]
#[rtype(result = "TransactionResult")]
pub struct InitTransactions;

/// Application → router → transaction manager: open a transaction. Records sent from now on
/// (until commit or abort) belong to it.
#[derive(Debug, Message)]
#[rtype(result = "TransactionResult")]
pub struct BeginTransaction;

/// Application → router: flush every record of the transaction, then commit it. Records
/// sent after this message are refused until the next begin.
#[derive(Debug, Message)]
#[rtype(result = "TransactionResult")]
pub struct CommitTransaction;

/// Application → router: abort the transaction. Its records not yet sent fail with
/// [`TransactionError::Aborted`]; those in flight are awaited; then the broker aborts the
/// rest, so none of it becomes visible to read_committed consumers.
#[derive(Debug, Message)]
#[rtype(result = "TransactionResult")]
pub struct AbortTransaction;

/// Application → router → transaction manager: commit a consumer group's offsets as part of
/// the open transaction (consume-transform-produce, KIP-98 / KIP-447): the group's offsets
/// move only if the transaction commits.
#[derive(Debug, Clone, Message)]
#[rtype(result = "TransactionResult")]
pub struct SendOffsetsToTransaction {
    /// The offsets to commit: for each partition, the offset of the next record to consume.
    pub offsets: Vec<TopicPartitionOffset>,
    /// The consumer group, as its consumer knows it.
    pub group_metadata: ConsumerGroupMetadata,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to consume (last processed + 1).
    pub offset: i64,
}

impl TopicPartitionOffset {
    /// An offset to commit for `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        TopicPartitionOffset {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

/// A consumer group member as its consumer knows it (Java's `ConsumerGroupMetadata`). With
/// the generation and member id of a live member the broker refuses offsets from a member
/// the group has moved on from (KIP-447); [`ConsumerGroupMetadata::new`] names the group
/// only, which the broker accepts without that check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The group generation, -1 when unknown.
    pub generation_id: i32,
    /// The member id, empty when unknown.
    pub member_id: String,
    /// The static member's instance id, if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// The group `group_id`, without member details.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}
