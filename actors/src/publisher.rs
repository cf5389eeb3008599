//! Copies a producer's metrics to the [`metrics`] facade, so the application's recorder
//! (Prometheus, StatsD, ...) sees them without glue.
//!
//! ```text
//!  actors ──record (per batch / request / response)──▶ Sensors, counters (metrics.rs)
//!  publisher task (I/O arbiter, every INTERVAL) ──collect──▶ Samples ──emit──▶ facade
//! ```
//!
//! Why a periodic copy rather than facade calls at the event sites: Java's rates, averages
//! and maxima are windowed, so they change with time even when no event happens; a gauge
//! the facade holds must be refreshed anyway. Recording at the event sites stays a short lock
//! per batch, with no facade lookup on the record path. The cost is that a scrape lags by up
//! to [`INTERVAL`]; `Producer::close` publishes once more at the end.
//!
//! Names: the Java producer's metric names in snake case, under `kafka_producer_` for its
//! `producer-metrics` group, `kafka_producer_topic_` for `producer-topic-metrics` and
//! `kafka_producer_node_` for `producer-node-metrics`, so that a sum over one family never
//! adds a topic's figure to the producer's. Herald's own metrics start with `herald_`.
//! [`METRICS`] lists them all (the README's table is made from it).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Weak;
use std::time::Duration;

use metrics::{Label, Unit};

use crate::metrics::{Call, Metrics, Reading, NEVER};
use crate::shared::Shared;
use crate::supervisor::ActorKind;

/// How often the facade's values are refreshed.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// Which labels a metric carries besides `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Producer,
    Topic,
    Node,
    /// `kind`: the kind of actor.
    ActorKind,
}

/// Counter (monotonic) or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

/// One published metric.
#[derive(Debug)]
pub(crate) struct Def {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Read by the tests: the labels checked against what `collect` makes, and the README's
    /// table.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) scope: Scope,
    pub(crate) unit: Unit,
    pub(crate) help: &'static str,
}

macro_rules! defs {
    ($($name:literal $kind:ident $scope:ident $unit:ident $help:literal;)*) => {
        /// Every metric Herald publishes.
        pub(crate) const METRICS: &[Def] = &[$(Def {
            name: $name,
            kind: Kind::$kind,
            scope: Scope::$scope,
            unit: Unit::$unit,
            help: $help,
        }),*];
    };
}

defs! {
    "kafka_producer_record_send_rate" Gauge Producer CountPerSecond "records acknowledged per second";
    "kafka_producer_record_send_total" Counter Producer Count "records acknowledged";
    "kafka_producer_record_error_rate" Gauge Producer CountPerSecond "records failed per second";
    "kafka_producer_record_error_total" Counter Producer Count "records failed (by the broker, a timeout, or refused before sending)";
    "kafka_producer_record_retry_rate" Gauge Producer CountPerSecond "records of retried batches per second";
    "kafka_producer_record_retry_total" Counter Producer Count "records of retried batches, per retry";
    "kafka_producer_batch_size_avg" Gauge Producer Bytes "bytes per batch (after compression)";
    "kafka_producer_batch_size_max" Gauge Producer Bytes "largest batch in bytes";
    "kafka_producer_compression_rate_avg" Gauge Producer Count "compressed / uncompressed size of a batch";
    "kafka_producer_record_queue_time_avg" Gauge Producer Milliseconds "ms from a batch's first record to its first send";
    "kafka_producer_record_queue_time_max" Gauge Producer Milliseconds "longest such wait, ms";
    "kafka_producer_records_per_request_avg" Gauge Producer Count "records per ProduceRequest";
    "kafka_producer_request_latency_avg" Gauge Producer Milliseconds "ProduceRequest round trip, ms";
    "kafka_producer_request_latency_max" Gauge Producer Milliseconds "longest ProduceRequest round trip, ms";
    "kafka_producer_produce_throttle_time_avg" Gauge Producer Milliseconds "throttle time the brokers asked for, ms";
    "kafka_producer_produce_throttle_time_max" Gauge Producer Milliseconds "longest throttle time, ms";
    "kafka_producer_request_rate" Gauge Producer CountPerSecond "requests of every kind sent per second";
    "kafka_producer_request_total" Counter Producer Count "requests of every kind sent";
    "kafka_producer_request_size_avg" Gauge Producer Bytes "bytes per request";
    "kafka_producer_request_size_max" Gauge Producer Bytes "largest request in bytes";
    "kafka_producer_response_rate" Gauge Producer CountPerSecond "responses read per second";
    "kafka_producer_response_total" Counter Producer Count "responses read";
    "kafka_producer_outgoing_byte_rate" Gauge Producer Bytes "bytes written to brokers per second";
    "kafka_producer_outgoing_byte_total" Counter Producer Bytes "bytes written to brokers";
    "kafka_producer_incoming_byte_rate" Gauge Producer Bytes "bytes read from brokers per second";
    "kafka_producer_incoming_byte_total" Counter Producer Bytes "bytes read from brokers";
    "kafka_producer_buffer_total_bytes" Gauge Producer Bytes "buffer.memory";
    "kafka_producer_buffer_available_bytes" Gauge Producer Bytes "buffer.memory not reserved by batches";
    "kafka_producer_bufferpool_wait_time_ns_total" Counter Producer Nanoseconds "time the router waited for buffer.memory, ns";
    "kafka_producer_bufferpool_wait_ratio" Gauge Producer Count "fraction of time the router waited for buffer.memory";
    "kafka_producer_buffer_exhausted_rate" Gauge Producer CountPerSecond "records refused per second on a full buffer: after max.block.ms, or at once with QueueFull";
    "kafka_producer_buffer_exhausted_total" Counter Producer Count "records refused on a full buffer: after max.block.ms, or at once with QueueFull";
    "kafka_producer_waiting_threads" Gauge Producer Count "1 while the router (the one appender) waits for buffer.memory, else 0";
    "kafka_producer_connection_creation_rate" Gauge Producer CountPerSecond "connections established per second";
    "kafka_producer_connection_creation_total" Counter Producer Count "connections established";
    "kafka_producer_connection_close_rate" Gauge Producer CountPerSecond "connections closed (lost or shut down) per second";
    "kafka_producer_connection_close_total" Counter Producer Count "connections closed (lost or shut down)";
    "kafka_producer_connection_count" Gauge Producer Count "connections open now";
    "kafka_producer_requests_in_flight" Gauge Producer Count "requests awaiting their response, over every connection";
    "kafka_producer_metadata_age" Gauge Producer Seconds "seconds since metadata was last refreshed (NaN before the first)";
    "kafka_producer_batch_split_rate" Gauge Producer CountPerSecond "batches split after MESSAGE_TOO_LARGE per second";
    "kafka_producer_batch_split_total" Counter Producer Count "batches split after MESSAGE_TOO_LARGE";
    "kafka_producer_record_size_avg" Gauge Producer Bytes "bytes of each batch's largest record, as a batch holding it alone";
    "kafka_producer_record_size_max" Gauge Producer Bytes "largest record, as a batch holding it alone, bytes";
    "kafka_producer_flush_time_ns_total" Counter Producer Nanoseconds "time spent in flush, ns";
    "kafka_producer_txn_init_time_ns_total" Counter Producer Nanoseconds "time spent in init_transactions that succeeded, ns";
    "kafka_producer_txn_begin_time_ns_total" Counter Producer Nanoseconds "time spent in begin_transaction that succeeded, ns";
    "kafka_producer_txn_send_offsets_time_ns_total" Counter Producer Nanoseconds "time spent in send_offsets_to_transaction that succeeded, ns";
    "kafka_producer_txn_commit_time_ns_total" Counter Producer Nanoseconds "time spent in commit_transaction that succeeded, ns";
    "kafka_producer_txn_abort_time_ns_total" Counter Producer Nanoseconds "time spent in abort_transaction that succeeded, ns";
    "kafka_producer_successful_authentication_rate" Gauge Producer CountPerSecond "connections made ready per second (authenticated, or at once without SASL)";
    "kafka_producer_successful_authentication_total" Counter Producer Count "connections made ready (authenticated, or at once without SASL)";
    "kafka_producer_failed_authentication_rate" Gauge Producer CountPerSecond "connections refused per second by SASL or the TLS handshake";
    "kafka_producer_failed_authentication_total" Counter Producer Count "connections refused by SASL or the TLS handshake";
    "kafka_producer_successful_reauthentication_rate" Gauge Producer CountPerSecond "SASL re-authentications completed per second (KIP-368)";
    "kafka_producer_successful_reauthentication_total" Counter Producer Count "SASL re-authentications completed (KIP-368)";
    "kafka_producer_failed_reauthentication_rate" Gauge Producer CountPerSecond "SASL re-authentications refused per second";
    "kafka_producer_failed_reauthentication_total" Counter Producer Count "SASL re-authentications refused";
    "kafka_producer_reauthentication_latency_avg" Gauge Producer Milliseconds "ms a SASL re-authentication took";
    "kafka_producer_reauthentication_latency_max" Gauge Producer Milliseconds "longest SASL re-authentication, ms";
    "kafka_producer_topic_record_send_rate" Gauge Topic CountPerSecond "records of the topic acknowledged per second";
    "kafka_producer_topic_record_send_total" Counter Topic Count "records of the topic acknowledged";
    "kafka_producer_topic_record_error_rate" Gauge Topic CountPerSecond "records of the topic failed per second (after routing)";
    "kafka_producer_topic_record_error_total" Counter Topic Count "records of the topic failed (after routing)";
    "kafka_producer_topic_record_retry_rate" Gauge Topic CountPerSecond "records of the topic retried per second";
    "kafka_producer_topic_record_retry_total" Counter Topic Count "records of the topic retried";
    "kafka_producer_topic_byte_rate" Gauge Topic Bytes "batch bytes of the topic per second";
    "kafka_producer_topic_byte_total" Counter Topic Bytes "batch bytes of the topic";
    "kafka_producer_topic_compression_rate" Gauge Topic Count "compressed / uncompressed size of the topic's batches";
    "kafka_producer_node_request_rate" Gauge Node CountPerSecond "requests sent to the broker per second";
    "kafka_producer_node_request_total" Counter Node Count "requests sent to the broker";
    "kafka_producer_node_request_size_avg" Gauge Node Bytes "bytes per request to the broker";
    "kafka_producer_node_request_size_max" Gauge Node Bytes "largest request to the broker";
    "kafka_producer_node_response_rate" Gauge Node CountPerSecond "responses from the broker per second";
    "kafka_producer_node_response_total" Counter Node Count "responses from the broker";
    "kafka_producer_node_outgoing_byte_rate" Gauge Node Bytes "bytes written to the broker per second";
    "kafka_producer_node_outgoing_byte_total" Counter Node Bytes "bytes written to the broker";
    "kafka_producer_node_incoming_byte_rate" Gauge Node Bytes "bytes read from the broker per second";
    "kafka_producer_node_incoming_byte_total" Counter Node Bytes "bytes read from the broker";
    "kafka_producer_node_request_latency_avg" Gauge Node Milliseconds "ProduceRequest round trip to the broker, ms";
    "kafka_producer_node_request_latency_max" Gauge Node Milliseconds "longest ProduceRequest round trip to the broker, ms";
    "herald_in_flight_requests" Gauge Node Count "requests awaiting their response on the broker's connection";
    "herald_actor_restarts_total" Counter ActorKind Count "supervised restarts of actors of this kind (after a stop or a panic)";
    "herald_actor_panics_total" Counter ActorKind Count "panics caught in actors of this kind";
    "herald_intake_records" Gauge Producer Count "records of Producer::send and do_send the router has not taken yet";
    "herald_records_waiting_metadata" Gauge Producer Count "records held until their topic's metadata arrives";
    "herald_records_waiting_memory" Gauge Producer Count "records held while buffer.memory is exhausted";
    "herald_record_resend_unknown_total" Counter Producer Count "records sent again after their request was lost with its connection";
    "herald_record_requeue_unsent_total" Counter Producer Count "records their connection handed back unwritten and queued again";
    "herald_leader_hint_total" Counter Producer Count "partitions moved to a leader a Produce response named (KIP-951)";
    "herald_metadata_refresh_total" Counter Producer Count "metadata requests completed";
}

/// A value to publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Counter(u64),
    Gauge(f64),
}

/// One metric's value with its labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: &'static str,
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) value: Value,
}

/// Values that live outside [`Metrics`], read by the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outside {
    pub(crate) buffer_available: usize,
    pub(crate) buffer_total: usize,
    pub(crate) intake: usize,
    /// Restarts and panics per actor kind (the supervisors count them), by `ActorKind as usize`.
    pub(crate) restarts: [u64; ActorKind::ALL.len()],
    pub(crate) panics: [u64; ActorKind::ALL.len()],
}

/// Every metric's value at `now_ms`.
pub(crate) fn collect(
    metrics: &Metrics,
    client_id: &str,
    outside: Outside,
    now_ms: u64,
) -> Vec<Sample> {
    let mut out = Out {
        samples: Vec::with_capacity(METRICS.len()),
        labels: vec![("client_id", client_id.to_string())],
    };
    let p = &metrics.sensors;
    let send = p.record_send.read(now_ms);
    out.rate_total("kafka_producer_record_send", send);
    out.rate_total("kafka_producer_record_error", p.record_error.read(now_ms));
    out.rate_total("kafka_producer_record_retry", p.record_retry.read(now_ms));
    out.avg_max("kafka_producer_batch_size", p.batch_size.read(now_ms));
    let compression = p.compression_rate.read(now_ms);
    out.gauge("kafka_producer_compression_rate_avg", compression.avg);
    out.avg_max(
        "kafka_producer_record_queue_time",
        p.record_queue_time.read(now_ms),
    );
    let per_request = p.records_per_request.read(now_ms);
    out.gauge("kafka_producer_records_per_request_avg", per_request.avg);
    out.avg_max(
        "kafka_producer_request_latency",
        p.request_latency.read(now_ms),
    );
    let throttle = p.produce_throttle_time.read(now_ms);
    out.avg_max("kafka_producer_produce_throttle_time", throttle);
    out.requests(
        "kafka_producer",
        p.request.read(now_ms),
        p.response.read(now_ms),
    );
    out.gauge(
        "kafka_producer_buffer_total_bytes",
        outside.buffer_total as f64,
    );
    let available = outside.buffer_available as f64;
    out.gauge("kafka_producer_buffer_available_bytes", available);
    let wait = p.bufferpool_wait.read(now_ms);
    out.counter("kafka_producer_bufferpool_wait_time_ns_total", wait.total);
    out.gauge("kafka_producer_bufferpool_wait_ratio", wait.rate / 1e9);
    out.rate_total(
        "kafka_producer_buffer_exhausted",
        p.buffer_exhausted.read(now_ms),
    );
    let stalled = metrics.router_stalled.load(Relaxed);
    out.gauge(
        "kafka_producer_waiting_threads",
        if stalled { 1.0 } else { 0.0 },
    );
    let connections = p.connection_creation.read(now_ms);
    out.rate_total("kafka_producer_connection_creation", connections);
    let closed = p.connection_close.read(now_ms);
    out.rate_total("kafka_producer_connection_close", closed);
    let nodes = metrics.nodes();
    let open = nodes.iter().filter(|n| n.connected.load(Relaxed)).count();
    out.gauge("kafka_producer_connection_count", open as f64);
    let in_flight: usize = nodes.iter().map(|n| n.in_flight.load(Relaxed)).sum();
    out.gauge("kafka_producer_requests_in_flight", in_flight as f64);
    let updated = metrics.metadata_updated_ms.load(Relaxed);
    let age = if updated == NEVER {
        f64::NAN
    } else {
        now_ms.saturating_sub(updated) as f64 / 1000.0
    };
    out.gauge("kafka_producer_metadata_age", age);
    out.rate_total("kafka_producer_batch_split", p.batch_split.read(now_ms));
    out.avg_max("kafka_producer_record_size", p.record_size.read(now_ms));
    let calls = [
        (Call::Flush, "kafka_producer_flush_time_ns_total"),
        (Call::TxnInit, "kafka_producer_txn_init_time_ns_total"),
        (Call::TxnBegin, "kafka_producer_txn_begin_time_ns_total"),
        (
            Call::TxnSendOffsets,
            "kafka_producer_txn_send_offsets_time_ns_total",
        ),
        (Call::TxnCommit, "kafka_producer_txn_commit_time_ns_total"),
        (Call::TxnAbort, "kafka_producer_txn_abort_time_ns_total"),
    ];
    for (call, name) in calls {
        out.counter(name, metrics.call_time_ns(call) as f64);
    }
    let auth = [
        (
            "kafka_producer_successful_authentication",
            &p.successful_authentication,
        ),
        (
            "kafka_producer_failed_authentication",
            &p.failed_authentication,
        ),
        (
            "kafka_producer_successful_reauthentication",
            &p.successful_reauthentication,
        ),
        (
            "kafka_producer_failed_reauthentication",
            &p.failed_reauthentication,
        ),
    ];
    for (name, sensor) in auth {
        out.rate_total(name, sensor.read(now_ms));
    }
    let latency = p.reauthentication_latency.read(now_ms);
    out.avg_max("kafka_producer_reauthentication_latency", latency);

    for t in metrics.topics() {
        let mut topic = out.with(("topic", t.topic.to_string()));
        topic.rate_total(
            "kafka_producer_topic_record_send",
            t.record_send.read(now_ms),
        );
        topic.rate_total(
            "kafka_producer_topic_record_error",
            t.record_error.read(now_ms),
        );
        topic.rate_total(
            "kafka_producer_topic_record_retry",
            t.record_retry.read(now_ms),
        );
        topic.rate_total("kafka_producer_topic_byte", t.bytes.read(now_ms));
        let compression = t.compression_rate.read(now_ms);
        topic.gauge("kafka_producer_topic_compression_rate", compression.avg);
        out.samples.append(&mut topic.samples);
    }
    for n in nodes {
        let mut node = out.with(("node_id", n.node_id.to_string()));
        let (request, response) = (n.request.read(now_ms), n.response.read(now_ms));
        node.requests("kafka_producer_node", request, response);
        node.avg_max(
            "kafka_producer_node_request_latency",
            n.request_latency.read(now_ms),
        );
        node.gauge(
            "herald_in_flight_requests",
            n.in_flight.load(Relaxed) as f64,
        );
        out.samples.append(&mut node.samples);
    }
    for kind in ActorKind::ALL {
        let mut by_kind = out.with(("kind", kind.name().to_string()));
        let restarts = outside.restarts[kind as usize];
        by_kind.counter("herald_actor_restarts_total", restarts as f64);
        let panics = outside.panics[kind as usize];
        by_kind.counter("herald_actor_panics_total", panics as f64);
        out.samples.append(&mut by_kind.samples);
    }
    out.gauge("herald_intake_records", outside.intake as f64);
    let waiting = metrics.records_waiting_metadata.load(Relaxed);
    out.gauge("herald_records_waiting_metadata", waiting as f64);
    let waiting = metrics.records_waiting_memory.load(Relaxed);
    out.gauge("herald_records_waiting_memory", waiting as f64);
    let counters = [
        (
            "herald_record_resend_unknown_total",
            &metrics.record_resend_unknown_total,
        ),
        (
            "herald_record_requeue_unsent_total",
            &metrics.record_requeue_unsent_total,
        ),
        ("herald_leader_hint_total", &metrics.leader_hint_total),
        (
            "herald_metadata_refresh_total",
            &metrics.metadata_refresh_total,
        ),
    ];
    for (name, counter) in counters {
        out.counter(name, counter.load(Relaxed) as f64);
    }
    out.samples
}

/// Samples being collected, with the labels they get.
struct Out {
    samples: Vec<Sample>,
    labels: Vec<(&'static str, String)>,
}

impl Out {
    /// An empty collection with one more label.
    fn with(&self, label: (&'static str, String)) -> Out {
        let mut labels = self.labels.clone();
        labels.push(label);
        Out {
            samples: Vec::new(),
            labels,
        }
    }

    fn push(&mut self, name: &'static str, value: Value) {
        self.samples.push(Sample {
            name,
            labels: self.labels.clone(),
            value,
        });
    }

    fn gauge(&mut self, name: &'static str, value: f64) {
        self.push(name, Value::Gauge(value));
    }

    fn counter(&mut self, name: &'static str, value: f64) {
        self.push(name, Value::Counter(value as u64));
    }

    /// `<prefix>_rate` (values per second) and `<prefix>_total`.
    fn rate_total(&mut self, prefix: &'static str, r: Reading) {
        self.gauge(name(prefix, "_rate"), r.rate);
        self.counter(name(prefix, "_total"), r.total);
    }

    fn avg_max(&mut self, prefix: &'static str, r: Reading) {
        self.gauge(name(prefix, "_avg"), r.avg);
        self.gauge(name(prefix, "_max"), r.max);
    }

    /// Java's network metrics from a sensor of request bytes and one of response bytes.
    fn requests(&mut self, prefix: &'static str, request: Reading, response: Reading) {
        self.gauge(name(prefix, "_request_rate"), request.event_rate);
        self.counter(name(prefix, "_request_total"), request.events as f64);
        self.gauge(name(prefix, "_request_size_avg"), request.avg);
        self.gauge(name(prefix, "_request_size_max"), request.max);
        self.gauge(name(prefix, "_outgoing_byte_rate"), request.rate);
        self.counter(name(prefix, "_outgoing_byte_total"), request.total);
        self.gauge(name(prefix, "_response_rate"), response.event_rate);
        self.counter(name(prefix, "_response_total"), response.events as f64);
        self.gauge(name(prefix, "_incoming_byte_rate"), response.rate);
        self.counter(name(prefix, "_incoming_byte_total"), response.total);
    }
}

/// The metric of [`METRICS`] named `prefix` + `suffix` (names are `&'static str` for the
/// facade, so they come from the table rather than from a formatted string).
fn name(prefix: &str, suffix: &str) -> &'static str {
    METRICS
        .iter()
        .find(|d| {
            d.name.len() == prefix.len() + suffix.len()
                && d.name.starts_with(prefix)
                && d.name.ends_with(suffix)
        })
        .map(|d| d.name)
        .unwrap_or_else(|| panic!("{prefix}{suffix} is not in METRICS"))
}

/// Hands samples to the installed recorder (a no-op without one).
pub(crate) fn emit(samples: &[Sample]) {
    for s in samples {
        let labels: Vec<Label> = s
            .labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect();
        match s.value {
            Value::Counter(v) => metrics::counter!(s.name, labels).absolute(v),
            Value::Gauge(v) => metrics::gauge!(s.name, labels).set(v),
        }
    }
}

/// Describes every metric (help text and unit) to the installed recorder.
pub(crate) fn describe() {
    for d in METRICS {
        match d.kind {
            Kind::Counter => metrics::describe_counter!(d.name, d.unit, d.help),
            Kind::Gauge => metrics::describe_gauge!(d.name, d.unit, d.help),
        }
    }
}

/// Publishes `shared`'s metrics now.
pub(crate) fn publish(shared: &Shared) {
    let supervision = &shared.supervision;
    let outside = Outside {
        buffer_available: shared.memory.available(),
        buffer_total: shared.memory.limit(),
        intake: shared.intake.len(),
        restarts: ActorKind::ALL.map(|k| supervision.restarts(k)),
        panics: ActorKind::ALL.map(|k| supervision.panics(k)),
    };
    let m = &shared.metrics;
    emit(&collect(m, &shared.config.client_id, outside, m.now_ms()));
}

/// Publishes every [`INTERVAL`] on the current arbiter (the producer's I/O arbiter) until the
/// producer is gone.
pub(crate) fn start(shared: Weak<Shared>, io: &actix::ArbiterHandle) {
    io.spawn(async move {
        describe();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            publish(&shared);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use herald::ProducerConfig;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn metrics() -> Metrics {
        let config = ProducerConfig::builder()
            .bootstrap_servers("localhost:9092")
            .client_id("app-1")
            .build()
            .expect("a valid config");
        Metrics::new(&config)
    }

    const OUTSIDE: Outside = Outside {
        buffer_available: 1000,
        buffer_total: 4096,
        intake: 3,
        // One connection restarted after a panic.
        restarts: [0, 0, 0, 1, 0, 0, 0, 0],
        panics: [0, 0, 0, 1, 0, 0, 0, 0],
    };

    fn find<'a>(samples: &'a [Sample], name: &str, label: Option<(&str, &str)>) -> &'a Value {
        let found = samples.iter().find(|s| {
            s.name == name
                && label.is_none_or(|(k, v)| s.labels.iter().any(|(lk, lv)| *lk == k && lv == v))
        });
        &found
            .unwrap_or_else(|| panic!("{name} {label:?} not collected"))
            .value
    }

    #[test]
    fn every_metric_is_collected_and_every_collected_metric_is_listed() {
        let m = metrics();
        let topic: Arc<str> = Arc::from("t");
        m.topic(&topic);
        m.node(1);
        let samples = collect(&m, "app-1", OUTSIDE, 10);
        let collected: BTreeSet<&str> = samples.iter().map(|s| s.name).collect();
        let listed: BTreeSet<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(collected, listed);
        for s in &samples {
            let def = METRICS.iter().find(|d| d.name == s.name).expect("listed");
            let kind = match s.value {
                Value::Counter(_) => Kind::Counter,
                Value::Gauge(_) => Kind::Gauge,
            };
            assert_eq!(kind, def.kind, "{}", s.name);
            let keys: Vec<&str> = s.labels.iter().map(|(k, _)| *k).collect();
            let expected: &[&str] = match def.scope {
                Scope::Producer => &["client_id"],
                Scope::Topic => &["client_id", "topic"],
                Scope::Node => &["client_id", "node_id"],
                Scope::ActorKind => &["client_id", "kind"],
            };
            assert_eq!(keys, expected, "{}", s.name);
        }
    }

    #[test]
    fn windowed_values_and_totals_come_from_the_sensors() {
        let m = metrics();
        let topic = m.topic(&Arc::from("orders"));
        let node = m.node(2);
        // Two batches of 10 and 30 records acknowledged, 1 s apart.
        for (records, at) in [(10.0, 0), (30.0, 1_000)] {
            m.sensors.record_send.record(records, at);
            topic.record_send.record(records, at);
        }
        node.request.record(500.0, 0);
        node.request.record(1_500.0, 1_000);
        node.request_latency.record(4.0, 1_000);
        node.in_flight.store(2, Relaxed);
        m.records_waiting_metadata.store(7, Relaxed);
        let before = collect(&m, "app-1", OUTSIDE, 2_000);
        let Value::Gauge(age) = find(&before, "kafka_producer_metadata_age", None) else {
            panic!("a gauge")
        };
        assert!(age.is_nan(), "no metadata yet: {age}");
        m.metadata_updated_ms.store(500, Relaxed);
        let s = collect(&m, "app-1", OUTSIDE, 2_000);
        let age = find(&s, "kafka_producer_metadata_age", None);
        assert_eq!(*age, Value::Gauge(1.5));
        let in_flight = find(&s, "kafka_producer_requests_in_flight", None);
        assert_eq!(*in_flight, Value::Gauge(2.0), "the sum over connections");
        let send_total = find(&s, "kafka_producer_record_send_total", None);
        assert_eq!(*send_total, Value::Counter(40));
        // Java's default windows (2 x 30 s): 40 records over the 2 s elapsed plus the floor
        // of one full window.
        let rate = find(&s, "kafka_producer_record_send_rate", None);
        assert_eq!(*rate, Value::Gauge(40.0 / 32.0));
        let topic_total = find(
            &s,
            "kafka_producer_topic_record_send_total",
            Some(("topic", "orders")),
        );
        assert_eq!(*topic_total, Value::Counter(40));
        let node_id = Some(("node_id", "2"));
        assert_eq!(
            *find(&s, "kafka_producer_node_request_total", node_id),
            Value::Counter(2)
        );
        assert_eq!(
            *find(&s, "kafka_producer_node_outgoing_byte_total", node_id),
            Value::Counter(2_000)
        );
        assert_eq!(
            *find(&s, "kafka_producer_node_request_size_avg", node_id),
            Value::Gauge(1_000.0)
        );
        assert_eq!(
            *find(&s, "kafka_producer_node_request_size_max", node_id),
            Value::Gauge(1_500.0)
        );
        assert_eq!(
            *find(&s, "kafka_producer_node_request_latency_max", node_id),
            Value::Gauge(4.0)
        );
        assert_eq!(
            *find(&s, "herald_in_flight_requests", node_id),
            Value::Gauge(2.0)
        );
        let restarts = find(
            &s,
            "herald_actor_restarts_total",
            Some(("kind", "connection")),
        );
        assert_eq!(*restarts, Value::Counter(1));
        let panics = find(
            &s,
            "herald_actor_panics_total",
            Some(("kind", "connection")),
        );
        assert_eq!(*panics, Value::Counter(1));
        let router_restarts = find(&s, "herald_actor_restarts_total", Some(("kind", "router")));
        assert_eq!(*router_restarts, Value::Counter(0));
        assert_eq!(
            *find(&s, "herald_records_waiting_metadata", None),
            Value::Gauge(7.0)
        );
        assert_eq!(*find(&s, "herald_intake_records", None), Value::Gauge(3.0));
        assert_eq!(
            *find(&s, "kafka_producer_buffer_available_bytes", None),
            Value::Gauge(1000.0)
        );
        // Nothing recorded: Java's NaN for an average without events.
        let Value::Gauge(latency) = find(&s, "kafka_producer_produce_throttle_time_avg", None)
        else {
            panic!("a gauge")
        };
        assert!(latency.is_nan());
        // 61 s later the samples have expired: the rate falls to 0, the total stays.
        let later = collect(&m, "app-1", OUTSIDE, 62_000);
        assert_eq!(
            *find(&later, "kafka_producer_record_send_rate", None),
            Value::Gauge(0.0)
        );
        assert_eq!(
            *find(&later, "kafka_producer_record_send_total", None),
            Value::Counter(40)
        );
    }

    #[test]
    fn emitted_samples_reach_the_recorder_with_their_labels() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let m = metrics();
        m.sensors.record_send.record(5.0, 0);
        metrics::with_local_recorder(&recorder, || emit(&collect(&m, "app-1", OUTSIDE, 100)));
        let snapshot = snapshotter.snapshot().into_vec();
        let total = snapshot
            .iter()
            .find(|(key, ..)| key.key().name() == "kafka_producer_record_send_total")
            .expect("published");
        let labels: Vec<String> = total
            .0
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        assert_eq!(labels, ["client_id=app-1"]);
        assert_eq!(total.3, DebugValue::Counter(5));
        let gauges = snapshot
            .iter()
            .filter(|(_, _, _, v)| matches!(v, DebugValue::Gauge(_)))
            .count();
        assert!(gauges > 20, "{gauges} gauges");
    }

    /// The README's table of metrics, as [`METRICS`] makes it.
    fn readme_table() -> String {
        let mut table =
            String::from("| metric | type | labels | unit | meaning |\n|---|---|---|---|---|\n");
        for d in METRICS {
            let kind = match d.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let labels = match d.scope {
                Scope::Producer => "client_id",
                Scope::Topic => "client_id, topic",
                Scope::Node => "client_id, node_id",
                Scope::ActorKind => "client_id, kind",
            };
            let unit = d.unit.as_str();
            table += &format!(
                "| `{}` | {kind} | {labels} | {unit} | {} |\n",
                d.name, d.help
            );
        }
        table
    }

    #[test]
    fn readme_lists_every_metric() {
        let table = readme_table();
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(readme).expect("README.md");
        assert!(
            readme.contains(&table),
            "README.md's table of metrics differs from METRICS in actors/src/publisher.rs; \
             replace it with:\n\n{table}"
        );
    }
}
