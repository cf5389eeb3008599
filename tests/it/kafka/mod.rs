//! Against Apache Kafka, the broker our users run (`support::kafka`): the single shared broker
//! for what needs only a topic of its own, the three-node cluster for failover, and private
//! brokers where a test changes broker settings or freezes the broker.
//!
//! `cargo test --test it kafka::` runs exactly these.

mod availability;
mod exactly_once;
mod listeners;
mod oauth_endpoint;
mod partitions_for;
mod produce;
mod security;
mod transactions;
