//! OpenTelemetry tracing (feature `opentelemetry`), as the OpenTelemetry semantic conventions
//! for messaging describe it for Kafka:
//!
//! - **Context propagation.** A [`Produce`](crate::Produce) captures the trace context current
//!   where it is made ([`Captured`]); when the producer takes the record, the context goes
//!   into its headers as W3C Trace Context (`traceparent`, and `tracestate` when set), so a
//!   consumer continues the trace. A record that already has a `traceparent` keeps it.
//! - **A `create` span per record**, only when asked for
//!   ([`ProducerBuilder::record_spans`](crate::ProducerBuilder::record_spans)): a child of the
//!   captured context, whose own context then goes into the headers, so every record has a
//!   context of its own even when many are sent from one span (it costs a span per record).
//! - **A `send` span per partition of every Produce request** ([`SendSpans`]), from the
//!   request's write to its answer, with `messaging.system=kafka`, the destination topic and
//!   partition, and the batch's record count; its status is an error when the batch failed.
//!   They are roots (a request carries records of many traces) with a link to each
//!   distinct context among the batch's records ([`RecordTrace`], [`BatchLinks`]), as the
//!   conventions ask of a batch send.
//!
//! Where the context comes from: the current `tracing` span's OpenTelemetry context (through
//! `tracing-opentelemetry`), since Herald and most actix applications instrument with
//! `tracing`; if that span carries no valid context (no OpenTelemetry layer, or no span),
//! `opentelemetry::Context::current()`, for applications that use the OpenTelemetry API
//! directly. Spans go to the global tracer provider as it is when the producer starts.
//!
//! Without the feature every type here is empty and every function does nothing.

#[cfg(feature = "opentelemetry")]
pub(crate) use enabled::*;

/// A batch of a Produce request, as its `send` span names it. (Plain values: this module
/// knows no message type, since `Produce` holds a [`Captured`].)
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))] // read by the spans only
pub(crate) struct Sent<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) record_count: u32,
    pub(crate) links: &'a BatchLinks,
}

/// The context a record carries in its `traceparent` header, kept beside the record (in its
/// `RecordSlot`) for the link from its batch's `send` span. Empty without the feature. Boxed:
/// every record has a slot and few have a context, and unboxed it doubled the slot (112
/// bytes instead of 56), which is memory written per record.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RecordTrace(
    #[cfg(feature = "opentelemetry")] Option<Box<opentelemetry::trace::SpanContext>>,
);

/// The distinct contexts of a batch's records, for its `send` span's links. Empty without
/// the feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BatchLinks(
    #[cfg(feature = "opentelemetry")] Vec<opentelemetry::trace::SpanContext>,
);

/// How a batch was answered, as its `send` span ends.
#[derive(Debug)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))] // read by the spans only
pub(crate) enum Answered {
    /// Written at `base_offset` (-1 when unknown, acks=0).
    Written { base_offset: i64 },
    /// Failed: `error_type` as the conventions' `error.type`, and why.
    Failed { error_type: String, message: String },
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) use disabled::*;

#[cfg(feature = "opentelemetry")]
mod enabled {
    use bytes::Bytes;
    use herald::{Header, ProducerRecord};
    use opentelemetry::trace::{
        Link, Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
        TraceState, Tracer,
    };
    use opentelemetry::{global, Context, KeyValue};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Answered, BatchLinks, RecordTrace, Sent};

    /// The W3C Trace Context headers (the messaging conventions' carrier for Kafka).
    const TRACEPARENT: &str = "traceparent";
    const TRACESTATE: &str = "tracestate";

    /// The trace context where a record was made.
    #[derive(Debug, Clone)]
    pub(crate) struct Captured(pub(super) Context);

    impl Captured {
        /// The current `tracing` span's OpenTelemetry context, or else the OpenTelemetry API's
        /// current context.
        pub(crate) fn now() -> Captured {
            // Every record pays this with the feature on. Without a `tracing` dispatcher there
            // is no span to ask: `Span::current`, and dropping the span it returns, would
            // still consult the no-op dispatcher (two thirds of this function's instructions
            // in callgrind). A disabled span (no subscriber wants it) is skipped without
            // asking the subscriber for its context.
            if tracing::dispatcher::has_been_set() {
                let span = tracing::Span::current();
                if !span.is_disabled() {
                    let from_tracing = span.context();
                    if from_tracing.span().span_context().is_valid() {
                        return Captured(from_tracing);
                    }
                }
            }
            Captured(Context::current())
        }
    }

    /// Most links a `send` span gets (the SDK's default limit per span).
    const MAX_LINKS: usize = 128;

    impl RecordTrace {
        /// The context in a record's `traceparent` header, if it has a valid one.
        pub(crate) fn of(headers: &[Header]) -> RecordTrace {
            let parsed = headers
                .iter()
                .find(|h| h.key == TRACEPARENT)
                .and_then(|h| h.value.as_deref())
                .and_then(parse_traceparent);
            RecordTrace(parsed.map(Box::new))
        }
    }

    impl BatchLinks {
        /// The distinct contexts of `records`, in order (records made in one span, the
        /// common case, are one link), at most [`MAX_LINKS`]. The check for a context seen
        /// before scans the links so far: at most `MAX_LINKS` comparisons per record.
        pub(crate) fn of<'a>(records: impl Iterator<Item = &'a RecordTrace>) -> BatchLinks {
            let mut links: Vec<SpanContext> = Vec::new();
            for sc in records.filter_map(|r| r.0.as_deref()) {
                if links.len() == MAX_LINKS {
                    break;
                }
                if !links.contains(sc) {
                    links.push(sc.clone());
                }
            }
            BatchLinks(links)
        }
    }

    /// A W3C `traceparent` (version 00) as a remote span context.
    fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
        let sc = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        sc.is_valid().then_some(sc)
    }

    /// A producer's tracing: its tracer, and whether each record gets a span.
    #[derive(Debug)]
    pub(crate) struct Tracing {
        tracer: global::BoxedTracer,
        record_spans: bool,
        client_id: String,
    }

    impl Tracing {
        pub(crate) fn new(record_spans: bool, client_id: &str) -> Tracing {
            let scope = opentelemetry::InstrumentationScope::builder("herald")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            Tracing {
                tracer: global::tracer_with_scope(scope),
                record_spans,
                client_id: client_id.to_string(),
            }
        }

        /// Puts the record's context into its headers (after a `create` span with record
        /// spans on). Nothing for a record without a valid context or with a `traceparent`.
        pub(crate) fn inject(&self, record: &mut ProducerRecord, captured: &Captured) {
            let parent = &captured.0;
            if !parent.span().span_context().is_valid()
                || record.headers.iter().any(|h| h.key == TRACEPARENT)
            {
                return;
            }
            let context = if self.record_spans {
                let topic = record.topic.to_string();
                let span = self
                    .tracer
                    .span_builder(format!("create {topic}"))
                    .with_kind(SpanKind::Producer)
                    .with_attributes([
                        KeyValue::new("messaging.system", "kafka"),
                        KeyValue::new("messaging.operation.type", "create"),
                        KeyValue::new("messaging.operation.name", "create"),
                        KeyValue::new("messaging.destination.name", topic),
                        KeyValue::new("messaging.client.id", self.client_id.clone()),
                    ])
                    .start_with_context(&self.tracer, parent);
                // Ends when the context is dropped below: the span covers the record's creation.
                parent.with_span(span)
            } else {
                parent.clone()
            };
            let span = context.span();
            let sc = span.span_context();
            let traceparent = format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            );
            record
                .headers
                .push(Header::new(TRACEPARENT, Bytes::from(traceparent)));
            let state = sc.trace_state().header();
            if !state.is_empty() {
                record
                    .headers
                    .push(Header::new(TRACESTATE, Bytes::from(state)));
            }
        }

        /// Starts a `send` span for each batch of a Produce request to `server` (`host:port`).
        pub(crate) fn send_spans<'a>(
            &self,
            batches: impl Iterator<Item = Sent<'a>>,
            server: &str,
        ) -> SendSpans {
            let (host, port) = server.rsplit_once(':').unwrap_or((server, ""));
            let port: i64 = port.parse().unwrap_or(-1);
            let spans = batches
                .map(|b| {
                    let topic = b.topic.to_string();
                    let mut attributes = vec![
                        KeyValue::new("messaging.system", "kafka"),
                        KeyValue::new("messaging.operation.type", "send"),
                        KeyValue::new("messaging.operation.name", "send"),
                        KeyValue::new("messaging.destination.name", topic.clone()),
                        KeyValue::new(
                            "messaging.destination.partition.id",
                            b.partition.to_string(),
                        ),
                        KeyValue::new(
                            "messaging.kafka.destination.partition",
                            i64::from(b.partition),
                        ),
                        KeyValue::new("messaging.batch.message_count", i64::from(b.record_count)),
                        KeyValue::new("messaging.client.id", self.client_id.clone()),
                        KeyValue::new("server.address", host.to_string()),
                    ];
                    if port >= 0 {
                        attributes.push(KeyValue::new("server.port", port));
                    }
                    let links = b.links.0.iter().map(|sc| Link::with_context(sc.clone()));
                    self.tracer
                        .span_builder(format!("send {topic}"))
                        .with_kind(SpanKind::Producer)
                        .with_attributes(attributes)
                        .with_links(links.collect())
                        .start_with_context(&self.tracer, &Context::new())
                })
                .collect();
            SendSpans(spans)
        }
    }

    /// The `send` spans of one Produce request, in the order of its batches.
    #[derive(Debug, Default)]
    pub(crate) struct SendSpans(Vec<global::BoxedSpan>);

    impl SendSpans {
        /// Ends the span of batch `index` with its answer.
        pub(crate) fn answer(&mut self, index: usize, answer: Answered) {
            let Some(span) = self.0.get_mut(index) else {
                return;
            };
            match answer {
                Answered::Written { base_offset } => {
                    if base_offset >= 0 {
                        span.set_attribute(KeyValue::new("messaging.kafka.offset", base_offset));
                    }
                }
                Answered::Failed {
                    error_type,
                    message,
                } => {
                    span.set_attribute(KeyValue::new("error.type", error_type));
                    span.set_status(Status::error(message));
                }
            }
            span.end();
        }

        /// Ends every span not answered yet as failed for `reason`.
        pub(crate) fn fail(mut self, reason: &str) {
            for span in &mut self.0 {
                if span.is_recording() {
                    span.set_attribute(KeyValue::new("error.type", "connection"));
                    span.set_status(Status::error(reason.to_string()));
                    span.end();
                }
            }
        }
    }
}

#[cfg(not(feature = "opentelemetry"))]
mod disabled {
    use herald::{Header, ProducerRecord};

    use super::{Answered, BatchLinks, RecordTrace, Sent};

    impl RecordTrace {
        pub(crate) fn of(_headers: &[Header]) -> RecordTrace {
            RecordTrace()
        }
    }

    impl BatchLinks {
        pub(crate) fn of<'a>(_records: impl Iterator<Item = &'a RecordTrace>) -> BatchLinks {
            BatchLinks()
        }
    }

    /// Nothing without the feature.
    #[derive(Debug, Clone)]
    pub(crate) struct Captured;

    impl Captured {
        pub(crate) fn now() -> Captured {
            Captured
        }
    }

    /// Nothing without the feature.
    #[derive(Debug)]
    pub(crate) struct Tracing;

    impl Tracing {
        pub(crate) fn new(_record_spans: bool, _client_id: &str) -> Tracing {
            Tracing
        }

        pub(crate) fn inject(&self, _record: &mut ProducerRecord, _captured: &Captured) {}

        pub(crate) fn send_spans<'a>(
            &self,
            _batches: impl Iterator<Item = Sent<'a>>,
            _server: &str,
        ) -> SendSpans {
            SendSpans
        }
    }

    /// Nothing without the feature.
    #[derive(Debug, Default)]
    pub(crate) struct SendSpans;

    impl SendSpans {
        pub(crate) fn answer(&mut self, _index: usize, _answer: Answered) {}

        pub(crate) fn fail(self, _reason: &str) {}
    }
}

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use bytes::Bytes;
    use herald::Header;

    use super::{BatchLinks, Captured, RecordTrace};

    fn record(traceparent: &str) -> RecordTrace {
        RecordTrace::of(&[
            Header::new("other", Bytes::from_static(b"x")),
            Header::new("traceparent", Bytes::from(traceparent.to_string())),
        ])
    }

    #[test]
    fn traceparent_headers_parse_and_garbage_does_not() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = record(good).0.expect("a valid traceparent");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "not a traceparent",
        ] {
            assert_eq!(record(bad), RecordTrace(None), "{bad}");
        }
        assert_eq!(RecordTrace::of(&[]), RecordTrace(None));
    }

    /// `Captured::now` skips `tracing` when no dispatcher was ever set; the OpenTelemetry API's
    /// context must be captured either way.
    #[test]
    fn a_record_captures_the_opentelemetry_context_with_or_without_a_tracing_dispatcher() {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
        let captured = |what: &str| {
            let attached = cx.clone().attach();
            let c = Captured::now();
            assert_eq!(c.0.span().span_context(), &sc, "{what}");
            drop(attached);
            let outside = Captured::now();
            assert!(!outside.0.span().span_context().is_valid(), "{what}");
        };
        // Whether another test of this process set a dispatcher before is not known here.
        captured("before this thread has a dispatcher");
        let _d = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        assert!(tracing::dispatcher::has_been_set());
        captured("with a dispatcher that wants no span");
    }

    #[test]
    fn a_batch_links_each_distinct_context_once_in_order() {
        let a = record("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let b = record("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01");
        let none = RecordTrace(None);
        let links = BatchLinks::of([&a, &a, &none, &b, &a].into_iter());
        let spans: Vec<String> = links.0.iter().map(|sc| sc.span_id().to_string()).collect();
        assert_eq!(spans, ["00f067aa0ba902b7", "00f067aa0ba902b8"]);
    }
}
