//! Shared test helpers: brokers to produce to and consumers that read back.

#![allow(dead_code)]

pub mod consumer;
pub mod fake_broker;
pub mod idempotent_broker;
pub mod kafka;
pub mod mock;
pub mod outcomes;
pub mod producer;
pub mod tansu;

use std::sync::Once;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

/// A topic name unique within this test run.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub use kafka::PortBand;
