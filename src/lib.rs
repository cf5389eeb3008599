//! Herald's core: everything a Kafka producer needs that is neither an actor nor I/O.
//!
//! The actor system that applications embed lives in the `herald-actors` crate; this crate is
//! the part of it that can be tested and fuzzed without sockets, runtimes or clocks.
//!
//! Module map:
//! - [`arena`]: copies of small keys and values that share a chunk instead of an
//!   allocation each.
//! - [`config`]: `ProducerConfig`, the Java producer's keys and defaults, and their validation.
//! - [`record`]: the record a user produces and the metadata it is acknowledged with.
//! - [`batch`]: the v2 record batch builder (the hot path) and a batch decoder.
//! - [`compression`]: gzip, snappy, lz4 (Kafka's frame) and zstd for the records section.
//! - [`protocol`]: framing and version negotiation around the `kafka-protocol` message types,
//!   and bounded decoders for the responses a producer reads from the network.
//! - [`partitioner`]: Java-compatible murmur2 and sticky partitioning, round-robin, and the
//!   `Partitioner` trait for custom ones.
//! - [`sasl`]: the client side of SASL PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER as I/O-free
//!   state machines, and the parser of `sasl.jaas.config`.
//! - [`serializer`]: key and value serializers as the Java client has them.
//! - [`stats`]: windowed rates, averages and maxima with the Java client's sample semantics.
//! - [`transaction`]: the transaction errors and their classes (KIP-1050): which error a
//!   transactional producer retries, which leave the transaction to abort, which are fatal.
//! - [`error`]: Kafka error codes, protocol errors and the per-record outcome error.
//! - [`varint`]: the zig-zag varints of the record format.

pub mod arena;
pub mod batch;
pub mod compression;
pub mod config;
pub mod error;
pub mod partitioner;
pub mod protocol;
pub mod record;
pub mod sasl;
pub mod serializer;
pub mod stats;
pub mod transaction;
pub mod varint;

pub use config::{Acks, ConfigError, MetadataRecoveryStrategy, ProducerConfig, SecurityProtocol};
pub use error::{ErrorKind, KafkaCode, ProduceError, ProtocolError};
pub use record::{Header, Node, PartitionInfo, ProducerRecord, RecordMetadata};
pub use transaction::{ErrorClass, TransactionError};
