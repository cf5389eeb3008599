//! Herald's integration tests: one binary, modules beside it, shared helpers in `support/`.
//! Tests that need a broker start one (librdkafka's mock cluster in process, or Tansu as a
//! separate process) and fail, never skip, when it cannot be started.

mod support;

mod availability;
mod batch_fixtures;
mod behaviour;
mod connection_setup;
mod examples;
mod faults;
mod idempotence;
mod kafka;
mod metrics;
mod network_garbage;
mod partitioner;
mod partitions_for;
mod produce;
mod supervision;
mod tansu_faults;
mod tracing;
mod transactions_fake;
mod transactions_mock;
