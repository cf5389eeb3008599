//! Producer metrics, named as the Java producer names them, in two layers:
//!
//! - Lifetime counters (plain atomics in [`Metrics`]) that `GetMetrics` answers with.
//! - [`Sensor`]s: windowed statistics with Java's sample semantics
//!   ([`herald::stats::SampledWindow`]) plus a cumulative total, per producer
//!   ([`ProducerSensors`]), per topic ([`TopicSensors`]) and per broker ([`NodeSensors`]).
//!   Actors record into them once per batch, request or response, never per record; the
//!   [`publisher`](crate::publisher) copies them to the `metrics` facade once a second.
//!
//! A sensor's lock is taken once per event by one actor at a time in practice (a topic's
//! sensors by its partitions' accumulators, which share the router's thread; a node's by its
//! connection), and once a second by the publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::stats::SampledWindow;
use herald::ProducerConfig;

/// Counters shared by all actors of one producer.
#[derive(Debug)]
pub struct Metrics {
    pub(crate) record_send_total: AtomicU64,
    pub(crate) record_error_total: AtomicU64,
    pub(crate) record_retry_total: AtomicU64,
    pub(crate) record_resend_unknown_total: AtomicU64,
    pub(crate) record_requeue_unsent_total: AtomicU64,
    pub(crate) batch_count: AtomicU64,
    pub(crate) batch_bytes: AtomicU64,
    /// The largest batch sealed so far, bytes.
    pub(crate) batch_bytes_max: AtomicU64,
    pub(crate) batch_uncompressed_bytes: AtomicU64,
    pub(crate) request_count: AtomicU64,
    pub(crate) request_records: AtomicU64,
    pub(crate) request_latency_us: AtomicU64,
    pub(crate) response_count: AtomicU64,
    pub(crate) connection_creation_total: AtomicU64,
    pub(crate) metadata_refresh_total: AtomicU64,
    /// Metadata requests sent (not a published metric): with `metadata_refresh_total`, the
    /// router tells a response to a request sent after a record came from one already on
    /// its way then.
    pub(crate) metadata_requests_sent: AtomicU64,
    pub(crate) leader_hint_total: AtomicU64,
    /// Records the router holds until their topic's metadata arrives.
    pub(crate) records_waiting_metadata: AtomicUsize,
    /// Records the router holds while buffer.memory is exhausted.
    pub(crate) records_waiting_memory: AtomicUsize,
    /// The router is blocked on buffer.memory (Java's `waiting-threads`: the router is the
    /// one appender that can wait).
    pub(crate) router_stalled: AtomicBool,
    /// When metadata was last refreshed, on the sensors' clock ([`NEVER`] before the first).
    pub(crate) metadata_updated_ms: AtomicU64,
    /// Nanoseconds spent in each [`Call`], by `Call as usize`.
    call_time_ns: [AtomicU64; Call::ALL.len()],
    /// Windowed statistics of the whole producer.
    pub(crate) sensors: ProducerSensors,
    topics: Mutex<HashMap<Arc<str>, Arc<TopicSensors>>>,
    nodes: Mutex<HashMap<i32, Arc<NodeSensors>>>,
    window: Duration,
    samples: usize,
    /// Time zero of the sensors' millisecond clock.
    epoch: Instant,
}

/// The calls whose time Java's `KafkaProducerMetrics` sums as `<name>-time-ns-total`: from
/// the call to its answer, a transaction call's only when it succeeded (as Java records
/// them after the call returns, not when it throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Flush,
    TxnInit,
    TxnBegin,
    TxnSendOffsets,
    TxnCommit,
    TxnAbort,
}

impl Call {
    pub(crate) const ALL: [Call; 6] = [
        Call::Flush,
        Call::TxnInit,
        Call::TxnBegin,
        Call::TxnSendOffsets,
        Call::TxnCommit,
        Call::TxnAbort,
    ];
}

/// `metadata_updated_ms` before any refresh.
pub(crate) const NEVER: u64 = u64::MAX;

impl Metrics {
    /// Metrics for a producer with `config`'s sample windows.
    pub(crate) fn new(config: &ProducerConfig) -> Metrics {
        let window = config.metrics_sample_window;
        let samples = config.metrics_num_samples;
        Metrics {
            record_send_total: AtomicU64::new(0),
            record_error_total: AtomicU64::new(0),
            record_retry_total: AtomicU64::new(0),
            record_resend_unknown_total: AtomicU64::new(0),
            record_requeue_unsent_total: AtomicU64::new(0),
            batch_count: AtomicU64::new(0),
            batch_bytes: AtomicU64::new(0),
            batch_bytes_max: AtomicU64::new(0),
            batch_uncompressed_bytes: AtomicU64::new(0),
            request_count: AtomicU64::new(0),
            request_records: AtomicU64::new(0),
            request_latency_us: AtomicU64::new(0),
            response_count: AtomicU64::new(0),
            connection_creation_total: AtomicU64::new(0),
            metadata_refresh_total: AtomicU64::new(0),
            metadata_requests_sent: AtomicU64::new(0),
            leader_hint_total: AtomicU64::new(0),
            records_waiting_metadata: AtomicUsize::new(0),
            records_waiting_memory: AtomicUsize::new(0),
            router_stalled: AtomicBool::new(false),
            metadata_updated_ms: AtomicU64::new(NEVER),
            call_time_ns: Default::default(),
            sensors: ProducerSensors::new(window, samples),
            topics: Mutex::default(),
            nodes: Mutex::default(),
            window,
            samples,
            epoch: Instant::now(),
        }
    }

    /// Counts a record refused before any batch: an error, and a full buffer's as well when
    /// memory was the reason (after max.block.ms, or the intake's `QueueFull`).
    pub(crate) fn refused(&self, buffer_full: bool) {
        Metrics::add(&self.record_error_total, 1);
        let now = self.now_ms();
        self.sensors.record_error.record(1.0, now);
        if buffer_full {
            self.sensors.buffer_exhausted.record(1.0, now);
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Raises a lifetime maximum to `n` if it is below.
    pub(crate) fn raise(max: &AtomicU64, n: u64) {
        max.fetch_max(n, Relaxed);
    }

    /// Adds the time since `started` to `call`'s total.
    pub(crate) fn add_call_time(&self, call: Call, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Metrics::add(&self.call_time_ns[call as usize], ns);
    }

    /// Nanoseconds spent in `call` so far.
    pub(crate) fn call_time_ns(&self, call: Call) -> u64 {
        self.call_time_ns[call as usize].load(Relaxed)
    }

    /// Milliseconds on the sensors' clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The sensors of `topic`, made on first use. Actors keep the `Arc`: no lookup per event.
    pub(crate) fn topic(&self, topic: &Arc<str>) -> Arc<TopicSensors> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.clone())
            .or_insert_with(|| {
                Arc::new(TopicSensors::new(topic.clone(), self.window, self.samples))
            })
            .clone()
    }

    /// The sensors of broker `node_id` (negative for a bootstrap entry), made on first use.
    pub(crate) fn node(&self, node_id: i32) -> Arc<NodeSensors> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .entry(node_id)
            .or_insert_with(|| Arc::new(NodeSensors::new(node_id, self.window, self.samples)))
            .clone()
    }

    /// Every topic's sensors so far.
    pub(crate) fn topics(&self) -> Vec<Arc<TopicSensors>> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.values().cloned().collect()
    }

    /// Every node's sensors so far.
    pub(crate) fn nodes(&self) -> Vec<Arc<NodeSensors>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.values().cloned().collect()
    }

    pub(crate) fn snapshot(&self, buffer_available: usize, buffer_total: usize) -> MetricsSnapshot {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let l = |c: &AtomicU64| c.load(Relaxed);
        let now = self.now_ms();
        let events = |s: &Sensor| s.read(now).events;
        MetricsSnapshot {
            record_send_total: l(&self.record_send_total),
            record_error_total: l(&self.record_error_total),
            record_retry_total: l(&self.record_retry_total),
            record_resend_unknown_total: l(&self.record_resend_unknown_total),
            record_requeue_unsent_total: l(&self.record_requeue_unsent_total),
            batch_size_avg: ratio(l(&self.batch_bytes), l(&self.batch_count)),
            batch_size_max: l(&self.batch_bytes_max),
            records_per_request_avg: ratio(l(&self.request_records), l(&self.request_count)),
            request_latency_avg: ratio(l(&self.request_latency_us), l(&self.response_count))
                / 1000.0,
            request_total: l(&self.request_count),
            buffer_available_bytes: buffer_available as u64,
            buffer_total_bytes: buffer_total as u64,
            compression_rate_avg: ratio(l(&self.batch_bytes), l(&self.batch_uncompressed_bytes)),
            actor_restart_total: 0,
            actor_panic_total: 0,
            connection_creation_total: l(&self.connection_creation_total),
            metadata_refresh_total: l(&self.metadata_refresh_total),
            successful_reauthentication_total: events(&self.sensors.successful_reauthentication),
            leader_hint_total: l(&self.leader_hint_total),
            // An empty window reads NaN, which `f64::max` turns into 0.
            produce_throttle_time_max: self.sensors.produce_throttle_time.read(now).max.max(0.0),
            record_size_max: self.sensors.record_size.read(now).max.max(0.0),
            successful_authentication_total: events(&self.sensors.successful_authentication),
            failed_authentication_total: events(&self.sensors.failed_authentication),
            failed_reauthentication_total: events(&self.sensors.failed_reauthentication),
            reauthentication_latency_max: self
                .sensors
                .reauthentication_latency
                .read(now)
                .max
                .max(0.0),
            flush_time_ns_total: self.call_time_ns(Call::Flush),
            txn_init_time_ns_total: self.call_time_ns(Call::TxnInit),
            txn_begin_time_ns_total: self.call_time_ns(Call::TxnBegin),
            txn_send_offsets_time_ns_total: self.call_time_ns(Call::TxnSendOffsets),
            txn_commit_time_ns_total: self.call_time_ns(Call::TxnCommit),
            txn_abort_time_ns_total: self.call_time_ns(Call::TxnAbort),
        }
    }
}

/// A point-in-time copy of the metrics. Field names are the Java metric names in snake case.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Records acknowledged successfully.
    pub record_send_total: u64,
    /// Records that ended with an error.
    pub record_error_total: u64,
    /// Record sends that were retried (counted per record of each retried batch).
    pub record_retry_total: u64,
    /// Records sent again after their request was lost with its connection, so the broker
    /// may have them already (Herald-specific). With idempotence a deduplicating broker
    /// drops the copy; without, this bounds the duplicates a run can have.
    pub record_resend_unknown_total: u64,
    /// Records their connection handed back unwritten (its broker was down or refused the
    /// connection, or it was lost before writing them) and queued again (Herald-specific).
    /// Not a retry: nothing reached the broker, and `retries` is not spent. A broker that
    /// goes away shows here when no request of the producer's was in flight to it.
    pub record_requeue_unsent_total: u64,
    /// Average bytes per batch sent (after compression).
    pub batch_size_avg: f64,
    /// The largest batch sent so far, bytes (after compression).
    pub batch_size_max: u64,
    /// Average records per ProduceRequest.
    pub records_per_request_avg: f64,
    /// Average ProduceRequest round trip in milliseconds.
    pub request_latency_avg: f64,
    /// ProduceRequests sent.
    pub request_total: u64,
    /// `buffer.memory` not reserved by batches.
    pub buffer_available_bytes: u64,
    /// `buffer.memory`.
    pub buffer_total_bytes: u64,
    /// Compressed / uncompressed bytes of sent batches (1.0 without compression).
    pub compression_rate_avg: f64,
    /// Supervised actor restarts.
    pub actor_restart_total: u64,
    /// Panics caught in the producer's actors (each restarted the actor, until the limit).
    pub actor_panic_total: u64,
    /// TCP connections opened.
    pub connection_creation_total: u64,
    /// Metadata requests completed.
    pub metadata_refresh_total: u64,
    /// SASL re-authentications completed on open connections (KIP-368).
    pub successful_reauthentication_total: u64,
    /// Partitions moved to a new leader that a Produce response named (KIP-951), before any
    /// metadata refresh did (Herald-specific).
    pub leader_hint_total: u64,
    /// The longest throttle a broker asked for in a Produce response within the metrics
    /// window, ms; 0 without one (quotas; Herald waits it out before writing to that broker
    /// again).
    pub produce_throttle_time_max: f64,
    /// The largest record within the metrics window, as a batch holding it alone would be,
    /// bytes (Java's `record-size-max`); 0 without one.
    pub record_size_max: f64,
    /// Connections made ready: authenticated with SASL, or at once without it (Java's
    /// `successful-authentication-total`, which counts every channel that becomes ready).
    pub successful_authentication_total: u64,
    /// Connections the broker refused, by SASL or in the TLS handshake.
    pub failed_authentication_total: u64,
    /// SASL re-authentications the broker refused.
    pub failed_reauthentication_total: u64,
    /// The longest SASL re-authentication within the metrics window, ms; 0 without one.
    pub reauthentication_latency_max: f64,
    /// Nanoseconds spent in `flush` (Java's `flush-time-ns-total`).
    pub flush_time_ns_total: u64,
    /// Nanoseconds spent in `init_transactions` calls that succeeded.
    pub txn_init_time_ns_total: u64,
    /// Nanoseconds spent in `begin_transaction` calls that succeeded.
    pub txn_begin_time_ns_total: u64,
    /// Nanoseconds spent in `send_offsets_to_transaction` calls that succeeded.
    pub txn_send_offsets_time_ns_total: u64,
    /// Nanoseconds spent in `commit_transaction` calls that succeeded.
    pub txn_commit_time_ns_total: u64,
    /// Nanoseconds spent in `abort_transaction` calls that succeeded.
    pub txn_abort_time_ns_total: u64,
}

/// A Java `Sensor`: one kind of event (a value each time), read as a windowed rate of the
/// values, a windowed rate of the events, a windowed average and maximum, and lifetime totals.
#[derive(Debug)]
pub(crate) struct Sensor {
    state: Mutex<SensorState>,
}

#[derive(Debug)]
struct SensorState {
    window: SampledWindow,
    total: f64,
    events: u64,
}

/// What a [`Sensor`] reads at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Sum of the values per second over the live windows.
    pub(crate) rate: f64,
    /// Events per second over the live windows.
    pub(crate) event_rate: f64,
    /// Mean value over the live windows (NaN without events).
    pub(crate) avg: f64,
    /// Largest value over the live windows (NaN without events).
    pub(crate) max: f64,
    /// Sum of every value recorded.
    pub(crate) total: f64,
    /// Events recorded.
    pub(crate) events: u64,
}

impl Sensor {
    pub(crate) fn new(window: Duration, samples: usize) -> Sensor {
        Sensor {
            state: Mutex::new(SensorState {
                window: SampledWindow::new(window, samples),
                total: 0.0,
                events: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SensorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One event of `value` at `now_ms` (see [`Metrics::now_ms`]).
    pub(crate) fn record(&self, value: f64, now_ms: u64) {
        let mut s = self.lock();
        s.window.record(value, now_ms);
        s.total += value;
        s.events += 1;
    }

    pub(crate) fn read(&self, now_ms: u64) -> Reading {
        let mut s = self.lock();
        Reading {
            rate: s.window.rate(now_ms),
            event_rate: s.window.event_rate(now_ms),
            avg: s.window.avg(now_ms),
            max: s.window.max(now_ms),
            total: s.total,
            events: s.events,
        }
    }
}

/// The producer-wide sensors (Java's `producer-metrics` group).
#[derive(Debug)]
pub(crate) struct ProducerSensors {
    /// Records acknowledged, per completed batch.
    pub(crate) record_send: Sensor,
    /// Records failed: per failed batch, and per record the router refuses.
    pub(crate) record_error: Sensor,
    /// Records of retried batches, per retry.
    pub(crate) record_retry: Sensor,
    /// Bytes of each sealed batch (after compression).
    pub(crate) batch_size: Sensor,
    /// Compressed / uncompressed size of each sealed batch.
    pub(crate) compression_rate: Sensor,
    /// Milliseconds from a batch's first record to its first hand-over to a connection.
    pub(crate) record_queue_time: Sensor,
    /// Records per ProduceRequest.
    pub(crate) records_per_request: Sensor,
    /// Milliseconds from writing a ProduceRequest to reading its response.
    pub(crate) request_latency: Sensor,
    /// Throttle time a Produce response asks for, in milliseconds.
    pub(crate) produce_throttle_time: Sensor,
    /// Bytes of every request written, to any broker.
    pub(crate) request: Sensor,
    /// Bytes of every response read, from any broker.
    pub(crate) response: Sensor,
    /// Nanoseconds the router was blocked on buffer.memory, per stall.
    pub(crate) bufferpool_wait: Sensor,
    /// Records refused because buffer.memory stayed full for max.block.ms.
    pub(crate) buffer_exhausted: Sensor,
    /// Connections established.
    pub(crate) connection_creation: Sensor,
    /// Connections closed (lost or shut down).
    pub(crate) connection_close: Sensor,
    /// Batches split after MESSAGE_TOO_LARGE.
    pub(crate) batch_split: Sensor,
    /// Per sealed batch, its largest record as a batch holding it alone, bytes (Java
    /// records the same per batch sent, as an upper bound).
    pub(crate) record_size: Sensor,
    /// Connections made ready: authenticated by SASL, or at once without it (as Java's
    /// selector counts every channel that becomes ready).
    pub(crate) successful_authentication: Sensor,
    /// Connections the broker refused: SASL, or the TLS handshake.
    pub(crate) failed_authentication: Sensor,
    /// SASL re-authentications completed (KIP-368).
    pub(crate) successful_reauthentication: Sensor,
    /// SASL re-authentications refused.
    pub(crate) failed_reauthentication: Sensor,
    /// Milliseconds from a re-authentication's start to its end, per success.
    pub(crate) reauthentication_latency: Sensor,
}

impl ProducerSensors {
    fn new(window: Duration, samples: usize) -> ProducerSensors {
        let s = || Sensor::new(window, samples);
        ProducerSensors {
            record_send: s(),
            record_error: s(),
            record_retry: s(),
            batch_size: s(),
            compression_rate: s(),
            record_queue_time: s(),
            records_per_request: s(),
            request_latency: s(),
            produce_throttle_time: s(),
            request: s(),
            response: s(),
            bufferpool_wait: s(),
            buffer_exhausted: s(),
            connection_creation: s(),
            connection_close: s(),
            batch_split: s(),
            record_size: s(),
            successful_authentication: s(),
            failed_authentication: s(),
            successful_reauthentication: s(),
            failed_reauthentication: s(),
            reauthentication_latency: s(),
        }
    }
}

/// One topic's sensors (Java's `producer-topic-metrics`).
#[derive(Debug)]
pub(crate) struct TopicSensors {
    pub(crate) topic: Arc<str>,
    pub(crate) record_send: Sensor,
    pub(crate) record_error: Sensor,
    pub(crate) record_retry: Sensor,
    /// Bytes of each sealed batch of the topic.
    pub(crate) bytes: Sensor,
    pub(crate) compression_rate: Sensor,
}

impl TopicSensors {
    fn new(topic: Arc<str>, window: Duration, samples: usize) -> TopicSensors {
        let s = || Sensor::new(window, samples);
        TopicSensors {
            topic,
            record_send: s(),
            record_error: s(),
            record_retry: s(),
            bytes: s(),
            compression_rate: s(),
        }
    }
}

/// One broker connection's sensors (Java's `producer-node-metrics`).
#[derive(Debug)]
pub(crate) struct NodeSensors {
    pub(crate) node_id: i32,
    /// Bytes of each request written.
    pub(crate) request: Sensor,
    /// Bytes of each response read.
    pub(crate) response: Sensor,
    /// Produce round trips in milliseconds.
    pub(crate) request_latency: Sensor,
    /// Requests awaiting their response now.
    pub(crate) in_flight: AtomicUsize,
    /// The connection has a socket now.
    pub(crate) connected: AtomicBool,
}

impl NodeSensors {
    fn new(node_id: i32, window: Duration, samples: usize) -> NodeSensors {
        let s = || Sensor::new(window, samples);
        NodeSensors {
            node_id,
            request: s(),
            response: s(),
            request_latency: s(),
            in_flight: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
        }
    }
}
