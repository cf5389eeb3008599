//! OpenTelemetry tracing (feature `opentelemetry`, on for the test suite): the trace context
//! of the span a record is produced in reaches an independent consumer (librdkafka's) in the
//! record's `traceparent` header, and the spans Herald exports carry the messaging
//! attributes and link the records' contexts. Spans are collected by the SDK's in-memory exporter.

use std::collections::HashMap;
use std::time::Duration;

use herald::ProducerConfig;
use herald_actors::{Produce, ProduceBatch, Producer};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::{global, KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::consumer::{read_back, Consumed};
use crate::support::mock::Mock;
use crate::support::unique_topic;

/// `traceparent` (W3C Trace Context, version 00) parsed: trace id, parent span id, flags.
fn parse_traceparent(value: &[u8]) -> (TraceId, SpanId, u8) {
    let text = std::str::from_utf8(value).expect("traceparent is ASCII");
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {text}");
    assert_eq!(parts[0], "00", "version of {text}");
    assert_eq!(
        (parts[1].len(), parts[2].len(), parts[3].len()),
        (32, 16, 2),
        "{text}"
    );
    let trace = TraceId::from_hex(parts[1]).expect("a hex trace id");
    let span = SpanId::from_hex(parts[2]).expect("a hex span id");
    let flags = u8::from_str_radix(parts[3], 16).expect("hex flags");
    (trace, span, flags)
}

fn header<'a>(record: &'a Consumed, key: &str) -> Option<&'a [u8]> {
    let mut found = record.headers.iter().filter(|(k, _)| k == key);
    let value = found
        .next()
        .map(|(_, v)| v.as_deref().expect("a header value"));
    assert!(found.next().is_none(), "{key} appears once");
    value
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> &'a Value {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
        .unwrap_or_else(|| panic!("span {} has no {key}: {:?}", span.name, span.attributes))
}

/// Produces `n` records inside a `tracing` span, half through `Producer::send` and half in a
/// `ProduceBatch` to the router; returns the span's trace and span ids.
async fn produce_in_span(producer: &Producer, topic: &str, n: usize) -> (TraceId, SpanId) {
    let span = tracing::info_span!("checkout");
    let context = span.context();
    let ids = (
        context.span().span_context().trace_id(),
        context.span().span_context().span_id(),
    );
    assert!(
        context.span().span_context().is_valid(),
        "the test's span has a context"
    );
    let (sends, batch) = {
        let _in_span = span.enter();
        let sends: Vec<_> = (0..n / 2)
            .map(|i| {
                producer.send(
                    Produce::new(topic.to_string())
                        .key(format!("k{i}"))
                        .value(format!("{i}")),
                )
            })
            .collect();
        let batch: Vec<Produce> = (n / 2..n)
            .map(|i| {
                Produce::new(topic.to_string())
                    .key(format!("k{i}"))
                    .value(format!("{i}"))
            })
            .collect();
        (sends, producer.router().send(ProduceBatch(batch)))
    };
    for outcome in futures_util::future::join_all(sends).await {
        outcome.expect("record acknowledged");
    }
    for outcome in batch.await.expect("router reachable") {
        outcome.expect("record acknowledged");
    }
    ids
}

/// The headers of a record produced in a span carry that span's context, as the consumer
/// reads them; without record spans the parent is the span itself, with them a `create` span
/// of its own (a child of the span). Each Produce request's batches have `send` spans with
/// the messaging attributes, whose record counts add up to what was produced.
#[actix_rt::test]
async fn trace_context_reaches_a_consumer_and_spans_carry_messaging_attributes() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // Herald's spans go to the global provider (set before the producers start); the test's
    // own span comes from `tracing`, with the OpenTelemetry layer for this thread.
    global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _subscriber = tracing::subscriber::set_default(subscriber);

    let mock = Mock::start(1);
    const N: usize = 20;
    for record_spans in [false, true] {
        let topic = unique_topic("tracing");
        mock.create_topic(&topic, 2, 1);
        let config = ProducerConfig::builder()
            .bootstrap_servers(mock.bootstrap())
            .client_id(format!("tracing-it-{record_spans}"))
            .build()
            .expect("config");
        let producer = Producer::builder(config)
            .record_spans(record_spans)
            .start()
            .expect("producer");
        let (trace_id, span_id) = produce_in_span(&producer, &topic, N).await;
        assert!(producer.close(Duration::from_secs(10)).await);
        provider.force_flush().expect("spans exported");
        let spans = exporter.get_finished_spans().expect("finished spans");

        let back = read_back(&mock.bootstrap(), &topic, 2, N, Duration::from_secs(30)).await;
        let records: Vec<&Consumed> = back.values().flatten().collect();
        assert_eq!(records.len(), N);
        let mut parents = Vec::new();
        for r in &records {
            let traceparent = header(r, "traceparent").expect("a traceparent header");
            let (trace, parent, flags) = parse_traceparent(traceparent);
            assert_eq!(
                trace, trace_id,
                "the record continues the producing span's trace"
            );
            assert_eq!(flags & 1, 1, "sampled");
            assert!(header(r, "tracestate").is_none(), "no trace state was set");
            parents.push(parent);
        }
        let creates: HashMap<SpanId, &SpanData> = spans
            .iter()
            .filter(|s| s.name == format!("create {topic}"))
            .map(|s| (s.span_context.span_id(), s))
            .collect();
        if record_spans {
            // Every record has a create span of its own, a child of the producing span.
            assert_eq!(creates.len(), N);
            for parent in &parents {
                let create = creates.get(parent).expect("the header names a create span");
                assert_eq!(create.parent_span_id, span_id);
                assert_eq!(create.span_context.trace_id(), trace_id);
                assert_eq!(attribute(create, "messaging.system"), &Value::from("kafka"));
                assert_eq!(
                    attribute(create, "messaging.destination.name"),
                    &Value::from(topic.clone())
                );
            }
        } else {
            assert!(creates.is_empty(), "no span per record unless asked for");
            assert!(
                parents.iter().all(|p| *p == span_id),
                "the header names the producing span"
            );
        }

        let sends: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == format!("send {topic}"))
            .collect();
        assert!(!sends.is_empty(), "send spans for {topic}");
        let mut counted = 0;
        for s in &sends {
            assert_eq!(s.span_kind, opentelemetry::trace::SpanKind::Producer);
            assert_eq!(attribute(s, "messaging.system"), &Value::from("kafka"));
            assert_eq!(
                attribute(s, "messaging.operation.type"),
                &Value::from("send")
            );
            assert_eq!(
                attribute(s, "messaging.destination.name"),
                &Value::from(topic.clone())
            );
            let Value::I64(partition) = attribute(s, "messaging.kafka.destination.partition")
            else {
                panic!("an integer partition")
            };
            assert!((0..2).contains(partition), "{partition}");
            let Value::I64(count) = attribute(s, "messaging.batch.message_count") else {
                panic!("an integer count")
            };
            assert!(*count >= 1);
            counted += *count as usize;
            assert_eq!(
                s.status,
                opentelemetry::trace::Status::Unset,
                "{:?}",
                s.status
            );
        }
        assert_eq!(counted, N, "the send spans' record counts add up");
        // Each send span links the distinct contexts of its batch's records: the producing
        // span once per batch, or with record spans every record's create span.
        let mut linked: Vec<SpanId> = Vec::new();
        for s in &sends {
            assert!(
                !s.links.links.is_empty(),
                "a send span links its records' contexts"
            );
            for link in &s.links.links {
                assert_eq!(link.span_context.trace_id(), trace_id);
                linked.push(link.span_context.span_id());
            }
        }
        if record_spans {
            let mut want: Vec<String> = parents.iter().map(|p| p.to_string()).collect();
            let mut got: Vec<String> = linked.iter().map(|p| p.to_string()).collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "one link per record, to its create span");
        } else {
            assert_eq!(linked.len(), sends.len(), "one link per batch: {linked:?}");
            assert!(
                linked.iter().all(|l| *l == span_id),
                "to the producing span"
            );
        }
    }
}
