//! Herald: a pure-Rust Kafka producer as an actix actor system.
//!
//! Start a [`Producer`] inside a running actix system and send [`Produce`] messages to its
//! [`Router`]; every record comes back with exactly one outcome, either as the reply to
//! `send()`, as a [`Delivered`] message to the mailbox named with `reply_to`, or inside a
//! [`Deliveries`] message to a [`Notifier`] (one message per batch, the cheapest per-record
//! path). How a record travels through the actors, and the invariants they keep, is drawn
//! and described in `ARCHITECTURE.md` at the root of the repository.
//!
//! ```no_run
//! use std::time::Duration;
//! use herald_actors::{Produce, Producer};
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let producer = Producer::from_pairs([("bootstrap.servers", "localhost:9092")])?;
//!     let md = producer
//!         .send(Produce::new("events").key("user-42").value("hello"))
//!         .await?;
//!     println!("{}-{} @ {}", md.topic, md.partition, md.offset);
//!     producer.close(Duration::from_secs(10)).await;
//!     Ok(())
//! }
//! ```
//!
//! Observability: every producer publishes the Java producer's metrics (windowed rates,
//! averages and maxima, per producer, topic and broker) and Herald's own through the
//! [`metrics`](https://docs.rs/metrics) facade, for whatever recorder the application installs;
//! [`GetMetrics`] answers with lifetime figures. With the feature `opentelemetry`, records carry
//! the W3C trace context of the span they were made in, and Produce requests get spans. The
//! README lists every metric and span attribute.
//!
//! Module map (all but `fault_injection` internal):
//! - `producer`: [`Producer`], [`ProducerBuilder`]; starts and wires the actors.
//! - Actors: `router` (front door, partitioning), `accumulator` (one per partition: batches,
//!   retries, completions), `connection` (one per broker: transport (TCP or TLS), SASL
//!   exchange and re-authentication, in-flight queue, coalescing), `metadata` (cluster view, producer id), `interceptor` (the
//!   [`ProducerInterceptor`] chain), `sealer` (compression on its own thread),
//!   `transaction` (the transaction manager: coordinators, InitProducerId with the
//!   transactional id, AddPartitionsToTxn, offsets, EndTxn).
//! - State and messages no actor owns: `messages` (grouped by conversation), `cluster` (the
//!   published cluster view), `shared` (what every actor of a producer shares), `partition`
//!   (a partition's queue, shared by router and accumulator), `completion` (outcome sinks),
//!   `clock` (linger deadlines), `memory` (`buffer.memory`), `metrics` (counters and windowed
//!   sensors), `publisher` (copies them to the `metrics` facade), `otel` (feature
//!   `opentelemetry`: trace context in record headers, spans), `supervisor` (runs every
//!   actor: restarts after a stop or a panic, the restart-storm limit), `backoff`, `tls`
//!   (the rustls configuration built at start), `token` ([`TokenProvider`]: OAUTHBEARER
//!   tokens from the application), `token_endpoint` (tokens from
//!   `sasl.oauthbearer.token.endpoint.url`), `txn_status` (the open transaction's generation and
//!   failure, read on the record path).
//! - `fault_injection` (feature `fault-injection`): test-only messages.

#![warn(missing_docs)]

mod accumulator;
mod backoff;
mod clock;
mod cluster;
mod completion;
mod connection;
#[cfg(feature = "fault-injection")]
pub mod fault_injection;
mod intake;
mod interceptor;
mod jks;
mod memory;
mod messages;
mod metadata;
mod metrics;
mod otel;
mod partition;
mod producer;
mod publisher;
mod router;
mod sealer;
mod shared;
mod supervisor;
mod tls;
mod token;
mod token_endpoint;
mod transaction;
mod txn_status;

pub use completion::{BatchTally, Delivered, Deliveries, Notifier, Outcome};
pub use interceptor::ProducerInterceptor;
pub use messages::application::{
    AbortTransaction, BeginTransaction, Close, CommitTransaction, ConsumerGroupMetadata, Flush,
    GetMetrics, GetPartitions, InitTransactions, Produce, ProduceBatch, ProduceBatchTally,
    SendOffsetsToTransaction, TopicPartitionOffset, TraceContext, TransactionResult,
};
pub use metrics::MetricsSnapshot;
#[cfg(feature = "fault-injection")]
pub use producer::FaultInjection;
pub use producer::{Producer, ProducerBuilder};
pub use router::Router;
pub use token::{TokenError, TokenProvider};

#[cfg(test)]
mod architecture;
