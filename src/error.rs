//! Errors of the core layer: Kafka error codes, wire-protocol failures, and the outcome
//! error every record can end with.
//!
//! One enum per concern, `#[non_exhaustive]`, so variants can be added without breaking
//! callers. The outcome error ([`ProduceError`]) is `Clone` and cheap to clone, because one
//! broker error fans out to every record of a batch.

use std::fmt;
use std::sync::Arc;

use crate::record::ProducerRecord;

macro_rules! kafka_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $retriable:literal; )*) => {
        /// A Kafka protocol error code, named as the Java client names it.
        ///
        /// Codes that a producer can meet are named; anything else decodes as
        /// [`KafkaCode::Unknown`] and is treated as not retriable.
        /// Variants are spelled as the protocol spells them so that logs and `name()` match
        /// the Kafka documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[allow(non_camel_case_types)]
        pub enum KafkaCode {
            $( $(#[$doc])* $name, )*
            /// A code this client does not know.
            Unknown(i16),
        }

        impl KafkaCode {
            /// Maps a wire code; `0` (no error) maps to `None`.
            pub fn from_code(code: i16) -> Option<KafkaCode> {
                match code {
                    0 => None,
                    $( $code => Some(KafkaCode::$name), )*
                    other => Some(KafkaCode::Unknown(other)),
                }
            }

            /// The wire code.
            pub const fn code(self) -> i16 {
                match self {
                    $( KafkaCode::$name => $code, )*
                    KafkaCode::Unknown(c) => c,
                }
            }

            /// Whether the Java producer retries a batch that failed with this code.
            pub fn retriable(self) -> bool {
                match self {
                    $( KafkaCode::$name => $retriable, )*
                    KafkaCode::Unknown(_) => false,
                }
            }

            /// The Java client's upper-snake-case name, e.g. `NOT_LEADER_OR_FOLLOWER`.
            pub fn name(self) -> &'static str {
                match self {
                    $( KafkaCode::$name => stringify!($name), )*
                    KafkaCode::Unknown(_) => "UNKNOWN_CODE",
                }
            }
        }
    };
}

kafka_codes! {
    UNKNOWN_SERVER_ERROR = -1, false;
    OFFSET_OUT_OF_RANGE = 1, false;
    /// Not retried: a batch the broker found corrupt is resent byte for byte, so it would fail
    /// again (the Java client retries it; librdkafka does not).
    CORRUPT_MESSAGE = 2, false;
    UNKNOWN_TOPIC_OR_PARTITION = 3, true;
    INVALID_FETCH_SIZE = 4, false;
    LEADER_NOT_AVAILABLE = 5, true;
    NOT_LEADER_OR_FOLLOWER = 6, true;
    REQUEST_TIMED_OUT = 7, true;
    BROKER_NOT_AVAILABLE = 8, false;
    REPLICA_NOT_AVAILABLE = 9, true;
    MESSAGE_TOO_LARGE = 10, false;
    STALE_CONTROLLER_EPOCH = 11, false;
    OFFSET_METADATA_TOO_LARGE = 12, false;
    NETWORK_EXCEPTION = 13, true;
    COORDINATOR_LOAD_IN_PROGRESS = 14, true;
    COORDINATOR_NOT_AVAILABLE = 15, true;
    NOT_COORDINATOR = 16, true;
    INVALID_TOPIC_EXCEPTION = 17, false;
    RECORD_LIST_TOO_LARGE = 18, false;
    NOT_ENOUGH_REPLICAS = 19, true;
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20, true;
    INVALID_REQUIRED_ACKS = 21, false;
    ILLEGAL_GENERATION = 22, false;
    INVALID_GROUP_ID = 24, false;
    UNKNOWN_MEMBER_ID = 25, false;
    REBALANCE_IN_PROGRESS = 27, false;
    TOPIC_AUTHORIZATION_FAILED = 29, false;
    GROUP_AUTHORIZATION_FAILED = 30, false;
    CLUSTER_AUTHORIZATION_FAILED = 31, false;
    INVALID_TIMESTAMP = 32, false;
    UNSUPPORTED_SASL_MECHANISM = 33, false;
    ILLEGAL_SASL_STATE = 34, false;
    UNSUPPORTED_VERSION = 35, false;
    TOPIC_ALREADY_EXISTS = 36, false;
    NOT_CONTROLLER = 41, false;
    INVALID_REQUEST = 42, false;
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43, false;
    POLICY_VIOLATION = 44, false;
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45, false;
    DUPLICATE_SEQUENCE_NUMBER = 46, false;
    INVALID_PRODUCER_EPOCH = 47, false;
    INVALID_TXN_STATE = 48, false;
    INVALID_PRODUCER_ID_MAPPING = 49, false;
    INVALID_TRANSACTION_TIMEOUT = 50, false;
    CONCURRENT_TRANSACTIONS = 51, true;
    TRANSACTION_COORDINATOR_FENCED = 52, false;
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53, false;
    OPERATION_NOT_ATTEMPTED = 55, false;
    KAFKA_STORAGE_ERROR = 56, true;
    SASL_AUTHENTICATION_FAILED = 58, false;
    UNKNOWN_PRODUCER_ID = 59, false;
    /// A leader without the listener the metadata was asked on (a broker's listeners being
    /// updated); Java's `ListenerNotFoundException`, a stale-metadata error.
    LISTENER_NOT_FOUND = 72, true;
    FENCED_LEADER_EPOCH = 74, true;
    UNKNOWN_LEADER_EPOCH = 75, true;
    UNSUPPORTED_COMPRESSION_TYPE = 76, false;
    FENCED_INSTANCE_ID = 82, false;
    INVALID_RECORD = 87, false;
    THROTTLING_QUOTA_EXCEEDED = 89, true;
    PRODUCER_FENCED = 90, false;
    UNKNOWN_TOPIC_ID = 100, true;
    INCONSISTENT_TOPIC_ID = 103, true;
    TRANSACTION_ABORTABLE = 120, false;
}

impl KafkaCode {
    /// Whether the error means our view of partition leadership is stale, so metadata must be
    /// refreshed before the retry: the codes of Java's `InvalidMetadataException` subclasses,
    /// whose `Sender` asks for metadata on each of them.
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            KafkaCode::NOT_LEADER_OR_FOLLOWER
                | KafkaCode::LEADER_NOT_AVAILABLE
                | KafkaCode::REPLICA_NOT_AVAILABLE
                | KafkaCode::NETWORK_EXCEPTION
                | KafkaCode::LISTENER_NOT_FOUND
                | KafkaCode::UNKNOWN_TOPIC_OR_PARTITION
                | KafkaCode::FENCED_LEADER_EPOCH
                | KafkaCode::UNKNOWN_LEADER_EPOCH
                | KafkaCode::KAFKA_STORAGE_ERROR
                | KafkaCode::UNKNOWN_TOPIC_ID
                | KafkaCode::INCONSISTENT_TOPIC_ID
        )
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// A failure to speak the wire protocol: bytes we could not decode, or a peer we cannot talk
/// to. The connection that meets one is dropped and rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The input ended before the structure did.
    #[error("truncated input: needed {needed} more bytes while decoding {context}")]
    Truncated {
        /// What was being decoded.
        context: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A length or count field is impossible (negative, or larger than the input left).
    #[error("invalid length {length} for {context}")]
    InvalidLength {
        /// What the length belonged to.
        context: &'static str,
        /// The length read from the wire.
        length: i64,
    },
    /// A frame's size prefix exceeds what we accept.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size from the prefix.
        size: i64,
        /// Our limit.
        max: usize,
    },
    /// Structurally wrong content.
    #[error("malformed {context}: {reason}")]
    Malformed {
        /// What was being decoded.
        context: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A version we cannot encode or decode.
    #[error("unsupported version {version} of {api}")]
    UnsupportedVersion {
        /// The API's name.
        api: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// The broker and this client share no version of an API we need.
    #[error(
        "no common version of {api}: broker supports {broker_min}..={broker_max}, \
         herald supports {ours_min}..={ours_max}"
    )]
    NoCommonVersion {
        /// The API's name.
        api: &'static str,
        /// Broker's range.
        broker_min: i16,
        /// Broker's range.
        broker_max: i16,
        /// Our range.
        ours_min: i16,
        /// Our range.
        ours_max: i16,
    },
    /// The broker does not offer an API we need at all.
    #[error("broker does not support {api}")]
    MissingApi {
        /// The API's name.
        api: &'static str,
    },
    /// A response arrived for a request we did not send next.
    #[error("correlation id mismatch: expected {expected}, got {actual}")]
    CorrelationMismatch {
        /// The head of our in-flight queue.
        expected: i32,
        /// What the broker sent.
        actual: i32,
    },
    /// A record batch's CRC-32C does not match its content.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC over the bytes.
        computed: u32,
    },
    /// Compressing or decompressing a batch failed.
    #[error("{codec} codec failed: {reason}")]
    Compression {
        /// Codec name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// An epoch bump (InitProducerId carrying the producer's id and epoch, KIP-360) asked of
    /// a broker whose InitProducerId is below v3 (before Kafka 2.5), which has no fields for
    /// them: the producer takes a new producer id instead, as Java's does.
    #[error("InitProducerId v{version} cannot bump a producer's epoch (KIP-360 needs v3)")]
    EpochBumpUnsupported {
        /// The InitProducerId version negotiated with the broker.
        version: i16,
    },
    /// kafka-protocol refused to encode a request.
    #[error("could not encode {api}: {reason}")]
    Encode {
        /// The API's name.
        api: &'static str,
        /// kafka-protocol's message.
        reason: String,
    },
}

/// What went wrong with one record. Cheap to clone: a batch failure is cloned into every
/// record of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The broker answered with an error that is not retried, or retries ran out.
    #[error(
        "broker error {code} for {}{}",
        place(topic, *partition),
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Broker {
        /// The broker's error.
        code: KafkaCode,
        /// Topic of the batch.
        topic: Arc<str>,
        /// Partition of the batch; -1 for an error of the whole topic (a metadata error
        /// such as TOPIC_AUTHORIZATION_FAILED).
        partition: i32,
        /// The broker's own words, when it gave any (e.g. "Compacted topic cannot accept
        /// message without key in topic partition t-0."): for a record it named as invalid
        /// (KIP-467) its own message, else the partition's, as Java's exception carries it.
        /// At most about a kilobyte of it is kept. For `NETWORK_EXCEPTION` once retries ran
        /// out (Java's `NetworkException`), the client's words instead: what became of the
        /// last request (timed out, its connection reset or closed).
        message: Option<Arc<str>>,
    },
    /// The broker refused the record's batch because of other records in it, which its answer
    /// names (KIP-467 `record_errors`; those fail with [`ErrorKind::Broker`]). This record was
    /// not found at fault and was not written: sending it again may succeed. Java fails such
    /// a record with "Failed to append record because it was part of a batch which had one
    /// or more invalid records".
    #[error("record not written: its batch for {topic}-{partition} was refused for other records in it ({code})")]
    RefusedWithBatch {
        /// The error the broker gave the batch (the invalid records').
        code: KafkaCode,
        /// Topic of the batch.
        topic: Arc<str>,
        /// Partition of the batch.
        partition: i32,
    },
    /// The serialized record is larger than `max.request.size` or `buffer.memory`, or the
    /// broker refused it alone in its batch with MESSAGE_TOO_LARGE (then `max` is 0: the
    /// broker does not say its limit, the topic's `max.message.bytes`).
    #[error(
        "record of {size} bytes is larger than {limit} ({key}{})",
        if *max > 0 { format!(" = {max}") } else { String::new() }
    )]
    RecordTooLarge {
        /// The record's size in a batch.
        size: usize,
        /// The limit it broke; 0 when the broker did not say.
        max: usize,
        /// Which config key set that limit.
        key: &'static str,
        /// Human wording of the limit.
        limit: &'static str,
    },
    /// The record's timestamp is negative. Java's `ProducerRecord` refuses one alike: Kafka
    /// reads -1 as "no timestamp", and a broker takes other negative ones as they are.
    #[error("invalid timestamp {timestamp}: a record's timestamp must be non-negative (or unset, for now)")]
    InvalidTimestamp {
        /// The timestamp given.
        timestamp: i64,
    },
    /// The record names a negative partition. Java's `ProducerRecord` refuses one alike.
    #[error("invalid partition {partition}: a record's partition must be non-negative (or unset, for the partitioner)")]
    InvalidPartition {
        /// The partition given.
        partition: i32,
    },
    /// No metadata for the topic arrived within `max.block.ms`. A topic that does not exist
    /// ends here, as Java's `send` ends in its `TimeoutException` ("Topic ... not present in
    /// metadata after ... ms"), with the brokers' UNKNOWN_TOPIC_OR_PARTITION in `cause`.
    #[error(
        "topic {topic} not present in metadata after {waited_ms} ms (max.block.ms){}",
        cause.as_deref().map(|c| format!("; {c}")).unwrap_or_default()
    )]
    MetadataTimeout {
        /// The topic.
        topic: Arc<str>,
        /// How long we waited.
        waited_ms: u64,
        /// Why, as far as the producer knows: what the brokers answered for the topic
        /// (`the brokers answered UNKNOWN_TOPIC_OR_PARTITION (3) for topic t: it does not
        /// exist, ...`), why their listing of it could not be used, and the last connection
        /// errors behind the wait when brokers could not be reached (e.g. `bootstrap
        /// 127.0.0.1:1 unreachable: connect failed: Connection refused`).
        cause: Option<Arc<str>>,
    },
    /// `buffer.memory` stayed exhausted for `max.block.ms`.
    #[error("buffer.memory exhausted for {waited_ms} ms (max.block.ms)")]
    BufferExhausted {
        /// How long we waited.
        waited_ms: u64,
    },
    /// The producer's batches and the records waiting for them (the intake of
    /// `Producer::send` and `do_send`, and records the router holds while it waits for
    /// memory or metadata) already hold `buffer.memory` bytes. An async caller cannot be
    /// blocked the way Java's `send` blocks its thread, so the record is refused at once, as
    /// librdkafka refuses with QUEUE_FULL: await `Producer::ready()` and send it again.
    #[error("producer queue full: batches and the records waiting for them hold {held_bytes} bytes of buffer.memory's {limit_bytes}; await Producer::ready() before sending more")]
    QueueFull {
        /// Bytes held by batches and by records outside them when the record came.
        held_bytes: u64,
        /// The limit: `buffer.memory`.
        limit_bytes: u64,
    },
    /// The record was not acknowledged within `delivery.timeout.ms`.
    #[error("delivery timeout: record not acknowledged within {timeout_ms} ms ({stage}{})", last_failure(.last_error))]
    DeliveryTimeout {
        /// The configured timeout.
        timeout_ms: u64,
        /// Where the batch was when it expired.
        stage: &'static str,
        /// Why its last attempt failed, when it had been sent: a partition whose every
        /// attempt was refused and one that was never sent look alike otherwise.
        last_error: Option<Arc<str>>,
    },
    /// The topic name is not a legal Kafka topic name.
    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic {
        /// The name.
        topic: Arc<str>,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// An explicit partition, or one a custom partitioner chose, that the topic does not have.
    #[error("partition {partition} out of range for topic {topic} with {partitions} partitions")]
    PartitionOutOfRange {
        /// The topic.
        topic: Arc<str>,
        /// Requested partition.
        partition: i32,
        /// How many the topic has.
        partitions: i32,
    },
    /// The producer was closed before the record was accepted.
    #[error("producer is closed")]
    Closed,
    /// The record was accepted but the producer was closed (without enough time to flush)
    /// before it was acknowledged.
    #[error("aborted: producer closed before the record was acknowledged")]
    Aborted,
    /// A serializer refused the key or value.
    #[error("serialization failed: {0}")]
    Serialization(Arc<str>),
    /// The idempotent producer could not be initialised, or lost its producer id in a way that
    /// cannot be repaired without reordering.
    #[error("idempotence failure: {0}")]
    Idempotence(Arc<str>),
    /// Something this client got wrong talking to the broker.
    #[error("protocol error: {0}")]
    Protocol(Arc<ProtocolError>),
    /// The broker refused to authenticate this client (SASL), or the TLS handshake failed (an
    /// untrusted or expired certificate, a host-name mismatch, a missing client certificate).
    /// Not retried, as Java's `AuthenticationException`. The text names the broker and the
    /// mechanism or the TLS reason, never a credential.
    #[error("authentication failed: {0}")]
    Authentication(Arc<str>),
    /// Code that runs inside the producer panicked while it held the record: one of the
    /// producer's actors (which its supervisor then restarts), or application code called
    /// there (a partitioner). Whether the record was written is unknown when it was already
    /// in a request.
    #[error("the producer's {place} panicked while holding the record: {message}")]
    Panicked {
        /// Where: the actor kind (`router`, `accumulator`, ...) or `partitioner`.
        place: &'static str,
        /// The panic's message.
        message: Arc<str>,
    },
    /// An actor of the producer panicked again and again, past the restart limit: the
    /// producer stopped restarting it and fails every record instead of spinning. Close it
    /// and start a new one.
    #[error("producer broken: its {actor} actor panicked {panics} times within {window_s} s (last: {message})")]
    Broken {
        /// The actor kind that kept panicking.
        actor: &'static str,
        /// Panics counted within the window.
        panics: u32,
        /// The window, in seconds.
        window_s: u64,
        /// The last panic's message.
        message: Arc<str>,
    },
    /// A transactional producer could not take or keep the record: it was sent outside a
    /// transaction, the transaction it belonged to was aborted, or the transaction failed.
    #[error("{0}")]
    Transaction(crate::transaction::TransactionError),
}

impl ErrorKind {
    /// The broker code behind this outcome, if any.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            ErrorKind::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The error outcome of one record. When the record was refused before it entered a batch,
/// it comes back inside, so the caller loses nothing.
///
/// Its `Debug` shows the record's shape, not its bytes: errors end up in logs and in the
/// panic message of an `unwrap`, and a value or header (an `authorization` header, say) may
/// hold what must not be logged. [`record`](Self::record) gives the record itself.
#[derive(Clone, thiserror::Error)]
#[error("{kind}")]
pub struct ProduceError {
    kind: ErrorKind,
    record: Option<Box<ProducerRecord>>,
}

impl ProduceError {
    /// An error for a record that is already inside a batch.
    pub fn new(kind: ErrorKind) -> Self {
        ProduceError { kind, record: None }
    }

    /// An error that hands the refused record back.
    pub fn refused(kind: ErrorKind, record: ProducerRecord) -> Self {
        ProduceError {
            kind,
            record: Some(Box::new(record)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The refused record, if it never entered a batch.
    pub fn record(&self) -> Option<&ProducerRecord> {
        self.record.as_deref()
    }

    /// Takes the refused record back.
    pub fn into_record(self) -> Option<ProducerRecord> {
        self.record.map(|b| *b)
    }
}

impl fmt::Debug for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProduceError")
            .field("kind", &self.kind)
            .field("record", &self.record.as_deref().map(Shape))
            .finish()
    }
}

/// A record as its error's `Debug` shows it: where it was going and how large its parts are.
struct Shape<'a>(&'a ProducerRecord);

/// The size of a key, value or header value, never its bytes.
struct Len(usize);

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl fmt::Debug for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let len = |b: &Option<bytes::Bytes>| b.as_ref().map(|b| Len(b.len()));
        let headers: Vec<(&str, Option<Len>)> = r
            .headers
            .iter()
            .map(|h| (h.key.as_ref(), len(&h.value)))
            .collect();
        f.debug_struct("ProducerRecord")
            .field("topic", &r.topic)
            .field("partition", &r.partition)
            .field("key", &len(&r.key))
            .field("value", &len(&r.value))
            .field("headers", &headers)
            .field("timestamp", &r.timestamp)
            .finish()
    }
}

impl From<ErrorKind> for ProduceError {
    fn from(kind: ErrorKind) -> Self {
        ProduceError::new(kind)
    }
}

/// `t-0` for a partition, `topic t` for an error of the whole topic (partition -1).
fn place(topic: &str, partition: i32) -> String {
    if partition < 0 {
        format!("topic {topic}")
    } else {
        format!("{topic}-{partition}")
    }
}

/// The tail of a delivery timeout's message that names its batch's last failed attempt.
fn last_failure(last_error: &Option<Arc<str>>) -> String {
    match last_error {
        Some(e) => format!("; its last failed attempt: {e}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_records_debug_shows_its_shape_not_its_bytes() {
        let mut record = ProducerRecord::new("payments");
        record.partition = Some(3);
        record.key = Some(bytes::Bytes::from_static(b"customer-42"));
        record.value = Some(bytes::Bytes::from_static(b"card=4111111111111111"));
        record.headers = vec![
            crate::Header::new("authorization", "Bearer hunter2"),
            crate::Header {
                key: "trace".into(),
                value: None,
            },
        ];
        let e = ProduceError::refused(ErrorKind::Closed, record);
        let debug = format!("{e:?}");
        for secret in ["customer-42", "4111", "hunter2", "Bearer"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert_eq!(
            debug,
            "ProduceError { kind: Closed, record: Some(ProducerRecord { topic: \"payments\", \
             partition: Some(3), key: Some(11 bytes), value: Some(21 bytes), headers: \
             [(\"authorization\", Some(14 bytes)), (\"trace\", None)], timestamp: None }) }"
        );
        // The record itself is still the caller's, whole.
        assert_eq!(
            e.record().and_then(|r| r.value.as_deref()),
            Some(&b"card=4111111111111111"[..])
        );
        assert_eq!(
            format!("{:?}", ProduceError::new(ErrorKind::Closed)),
            "ProduceError { kind: Closed, record: None }"
        );
    }

    #[test]
    fn a_topic_error_names_the_topic_not_partition_minus_one() {
        let kind = |partition| ErrorKind::Broker {
            code: KafkaCode::TOPIC_AUTHORIZATION_FAILED,
            topic: Arc::from("orders"),
            partition,
            message: None,
        };
        assert_eq!(
            kind(-1).to_string(),
            "broker error TOPIC_AUTHORIZATION_FAILED (29) for topic orders"
        );
        assert_eq!(
            kind(2).to_string(),
            "broker error TOPIC_AUTHORIZATION_FAILED (29) for orders-2"
        );
    }

    #[test]
    fn codes_round_trip_and_classify() {
        assert_eq!(KafkaCode::from_code(0), None);
        let c = KafkaCode::from_code(6).unwrap();
        assert_eq!(c, KafkaCode::NOT_LEADER_OR_FOLLOWER);
        assert!(c.retriable());
        assert!(c.needs_metadata_refresh());
        assert_eq!(c.name(), "NOT_LEADER_OR_FOLLOWER");
        for code in [5, 3, 7, 13, 19, 20, 56, 74, 75] {
            assert!(KafkaCode::from_code(code).unwrap().retriable(), "{code}");
        }
        for code in [10, 18, 17, 29, 2, 87, 45, 59, 9999] {
            assert!(!KafkaCode::from_code(code).unwrap().retriable(), "{code}");
        }
        // Java's InvalidMetadataException subclasses: retried after a metadata refresh.
        for code in [3, 5, 6, 9, 13, 56, 72, 74, 75, 100, 103] {
            let c = KafkaCode::from_code(code).unwrap();
            assert!(c.retriable() && c.needs_metadata_refresh(), "{c}");
        }
        for code in [7, 19, 20, 89] {
            let c = KafkaCode::from_code(code).unwrap();
            assert!(c.retriable() && !c.needs_metadata_refresh(), "{c}");
        }
        assert_eq!(KafkaCode::from_code(9999), Some(KafkaCode::Unknown(9999)));
        assert_eq!(KafkaCode::Unknown(9999).code(), 9999);
        assert_eq!(
            KafkaCode::MESSAGE_TOO_LARGE.to_string(),
            "MESSAGE_TOO_LARGE (10)"
        );
    }

    #[test]
    fn a_delivery_timeout_names_the_last_failed_attempt() {
        let kind = |last_error: Option<&str>| ErrorKind::DeliveryTimeout {
            timeout_ms: 60_000,
            stage: "waiting to be sent",
            last_error: last_error.map(Arc::from),
        };
        assert_eq!(
            kind(None).to_string(),
            "delivery timeout: record not acknowledged within 60000 ms (waiting to be sent)"
        );
        assert_eq!(
            kind(Some("NOT_ENOUGH_REPLICAS (19)")).to_string(),
            "delivery timeout: record not acknowledged within 60000 ms (waiting to be sent; \
             its last failed attempt: NOT_ENOUGH_REPLICAS (19))"
        );
    }
}
