//! One actor per broker: the only place that touches sockets.
//!
//! ```text
//!  accumulators ──SendBatches──▶ pending ──coalesce (≤ max.request.size, one batch per
//!                                  │         partition per request)──▶ writer task ─▶ TCP
//!  metadata ──Call──▶ calls ───────┘
//!                                in_flight (≤ max.in.flight, request order)
//!  TCP ─▶ reader task ─Received─▶ connection: correlation id must match the head of in_flight
//!                        ─▶ BatchCompleted to each batch's accumulator / Call reply
//! ```
//!
//! The connection owns no record: it holds batch ids and bytes, and every batch it was given
//! is answered with exactly one `BatchCompleted` (written, broker error, lost with the
//! connection, or never sent). Whatever goes wrong with the socket or the bytes on it, the
//! connection is dropped and rebuilt with reconnect backoff; nothing here panics on input.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use herald::protocol::{self, responses, NegotiatedVersions};
use herald::{KafkaCode, ProtocolError};
use kafka_protocol::messages::{
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, ApiVersionsRequest, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, FramedRead};

use crate::accumulator::{BatchCompleted, BatchResult};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::Shared;

/// How long a TCP connect may take (Java's `socket.connection.setup.timeout.ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often deadlines of in-flight requests are checked.
const TICK: Duration = Duration::from_millis(50);

/// A closed batch on its way to the broker.
#[derive(Debug, Clone)]
pub struct OutgoingBatch {
    /// Topic of the batch.
    pub topic: Arc<str>,
    /// Partition of the batch.
    pub partition: i32,
    /// The accumulator's id for the batch.
    pub batch_id: u64,
    /// The encoded record batch.
    pub records: Bytes,
    /// Records in the batch (for metrics).
    pub record_count: u32,
    /// Where the result goes.
    pub reply: Recipient<BatchCompleted>,
}

/// Accumulator → connection: batches ready for this broker, in the order they must be sent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SendBatches(pub Vec<OutgoingBatch>);

/// A request other than Produce, made by the metadata actor.
#[derive(Debug)]
pub enum CallRequest {
    /// Cluster metadata.
    Metadata(MetadataRequest),
    /// A producer id for idempotence.
    InitProducerId(InitProducerIdRequest),
}

/// The answer to a [`CallRequest`].
#[derive(Debug)]
pub enum CallResponse {
    /// Cluster metadata.
    Metadata(Box<MetadataResponse>),
    /// A producer id.
    InitProducerId(InitProducerIdResponse),
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connection could not be made or was lost.
    #[error("connection to {0} failed: {1}")]
    Connection(String, String),
    /// The broker lacks a version of the API.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Metadata actor → connection: send one request and answer with its response.
#[derive(Debug, Message)]
#[rtype(result = "Result<CallResponse, CallError>")]
pub struct Call(pub CallRequest);

#[cfg(feature = "fault-injection")]
pub use crate::messages::Crash;
pub use crate::messages::Shutdown;

/// A frame for the writer task. acks=0 batches ride along: they are answered by the writer
/// once their bytes are in the socket, since no response will ever come, or, when a write
/// fails, as lost (the failed frame) or never sent (every frame still queued behind it).
#[derive(Debug)]
struct WriterItem {
    frame: Bytes,
    fire_and_forget: Vec<OutgoingBatch>,
}

/// Writer task → connection: the socket failed while writing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct WriteFailed {
    generation: u64,
    error: String,
}

#[derive(Debug)]
enum InFlightKind {
    ApiVersions {
        version: i16,
    },
    Produce {
        batches: Vec<OutgoingBatch>,
    },
    Call {
        api: ApiKey,
        reply: oneshot::Sender<Result<CallResponse, CallError>>,
    },
}

#[derive(Debug)]
struct InFlight {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    sent_at: Instant,
    kind: InFlightKind,
}

#[derive(Debug)]
struct PendingCall {
    request: CallRequest,
    reply: oneshot::Sender<Result<CallResponse, CallError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Negotiating,
    Ready,
}

/// The broker connection actor.
#[derive(Debug)]
pub struct Connection {
    node_id: i32,
    address: String,
    shared: Arc<Shared>,
    client_id: StrBytes,
    state: State,
    /// Bumped on every connect; events from older sockets are ignored.
    generation: u64,
    writer: Option<mpsc::UnboundedSender<WriterItem>>,
    /// The reader task: detached from this actor's context so that a supervised restart of
    /// the actor does not cut a healthy socket (responses to in-flight requests keep coming,
    /// and the in-flight queue lives in `self`, which survives the restart).
    reader: Option<tokio::task::JoinHandle<()>>,
    in_flight: VecDeque<InFlight>,
    /// Correlation ids of recent acks=0 produce requests: some brokers (Tansu) answer them
    /// although Kafka brokers do not, and such an answer must not cost the connection.
    unanswered: VecDeque<i32>,
    pending: VecDeque<OutgoingBatch>,
    calls: VecDeque<PendingCall>,
    versions: Option<NegotiatedVersions>,
    next_correlation_id: i32,
    backoff: Backoff,
    /// No connect attempt before this instant (reconnect backoff).
    connect_not_before: Option<Instant>,
    connect_started: Option<Instant>,
    connect_timer: Option<SpawnHandle>,
    /// Set while shutting down gracefully: fired when the broker closes its side.
    closing: Option<oneshot::Sender<()>>,
    terminated: bool,
    /// Every event of this connection carries its broker id and address.
    span: tracing::Span,
}

impl Connection {
    /// A connection to `address` (`host:port`) for broker `node_id` (negative for bootstrap
    /// entries whose id is not known yet).
    pub fn new(node_id: i32, address: String, shared: Arc<Shared>) -> Self {
        let span = tracing::info_span!("connection", node = node_id, address = %address);
        let config = &shared.config;
        let backoff = Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max);
        Connection {
            node_id,
            address,
            client_id: StrBytes::from_string(config.client_id.clone()),
            shared,
            state: State::Idle,
            generation: 0,
            writer: None,
            reader: None,
            in_flight: VecDeque::new(),
            unanswered: VecDeque::new(),
            pending: VecDeque::new(),
            calls: VecDeque::new(),
            versions: None,
            next_correlation_id: 0,
            backoff,
            connect_not_before: None,
            connect_started: None,
            connect_timer: None,
            closing: None,
            terminated: false,
            span,
        }
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty() || !self.calls.is_empty()
    }

    /// Connects now, or schedules the connect for when the reconnect backoff allows it.
    fn ensure_connected(&mut self, ctx: &mut Context<Self>) {
        if self.state != State::Idle || self.terminated || !self.has_work() {
            return;
        }
        if let Some(at) = self.connect_not_before {
            let now = Instant::now();
            if at > now {
                if self.connect_timer.is_none() {
                    self.connect_timer = Some(ctx.run_later(at - now, |act, ctx| {
                        act.connect_timer = None;
                        act.connect_not_before = None;
                        act.ensure_connected(ctx);
                    }));
                }
                return;
            }
        }
        self.connect(ctx);
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.state = State::Connecting;
        self.generation += 1;
        self.connect_started = Some(Instant::now());
        let generation = self.generation;
        let address = self.address.clone();
        tracing::debug!(node = self.node_id, %address, "connecting");
        let fut = async move {
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.generation != generation || act.state != State::Connecting {
                return;
            }
            match res {
                Ok(stream) => act.connected(stream, ctx),
                Err(e) => act.disconnect(format!("connect failed: {e}")),
            }
        }));
    }

    fn connected(&mut self, stream: TcpStream, ctx: &mut Context<Self>) {
        let _ = stream.set_nodelay(true);
        Metrics::add(&self.shared.metrics.connection_creation_total, 1);
        let (read, mut write) = stream.into_split();
        let generation = self.generation;
        let addr = ctx.address();
        let reader_addr = addr.clone();
        self.reader = Some(actix::spawn(async move {
            let mut frames = FramedRead::new(read, FrameCodec);
            while let Some(item) = frames.next().await {
                let failed = item.is_err();
                reader_addr.do_send(Received {
                    generation,
                    item: Some(item),
                });
                if failed {
                    return;
                }
            }
            reader_addr.do_send(Received {
                generation,
                item: None,
            });
        }));
        let (tx, mut rx) = mpsc::unbounded_channel::<WriterItem>();
        actix::spawn(async move {
            while let Some(item) = rx.recv().await {
                if let Err(e) = write.write_all(&item.frame).await {
                    for b in item.fire_and_forget {
                        b.reply.do_send(BatchCompleted {
                            batch_id: b.batch_id,
                            result: BatchResult::Lost(format!("write failed: {e}")),
                        });
                    }
                    // The frames queued behind the failed one will never be written. Their
                    // acks=0 batches are owned by the queue alone (no in-flight entry), so
                    // dropping the queue would leave them unanswered until
                    // delivery.timeout.ms; answer them now as never sent, so the accumulators
                    // retry them at once. (Frames that expect a response are in `in_flight`
                    // and answered by `disconnect`.) `close` first: nothing new can be queued
                    // while draining.
                    rx.close();
                    while let Ok(queued) = rx.try_recv() {
                        for b in queued.fire_and_forget {
                            b.reply.do_send(BatchCompleted {
                                batch_id: b.batch_id,
                                result: BatchResult::NotSent(format!(
                                    "not written: an earlier write failed: {e}"
                                )),
                            });
                        }
                    }
                    addr.do_send(WriteFailed {
                        generation,
                        error: e.to_string(),
                    });
                    return;
                }
                for b in item.fire_and_forget {
                    b.reply.do_send(BatchCompleted {
                        batch_id: b.batch_id,
                        result: BatchResult::Written {
                            base_offset: -1,
                            log_append_time: -1,
                        },
                    });
                }
            }
            let _ = write.shutdown().await;
        });
        self.writer = Some(tx);
        self.state = State::Negotiating;
        tracing::debug!(node = self.node_id, address = %self.address, "connected, negotiating versions");
        self.send_api_versions(3);
    }

    fn send_api_versions(&mut self, version: i16) {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("herald"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let request = if version >= 3 {
            request
        } else {
            ApiVersionsRequest::default()
        };
        self.write_request(
            protocol::API_VERSIONS,
            version,
            &request,
            InFlightKind::ApiVersions { version },
        );
    }

    fn write_request<R>(
        &mut self,
        api: protocol::ApiSupport,
        version: i16,
        body: &R,
        kind: InFlightKind,
    ) where
        R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
    {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut buf = BytesMut::new();
        if let Err(e) = protocol::encode_request(
            &mut buf,
            api,
            version,
            correlation_id,
            &self.client_id,
            body,
        ) {
            // Our own request cannot be encoded at this version: answer the requester, keep the
            // connection.
            tracing::error!(node = self.node_id, error = %e, "request encoding failed");
            self.fail_kind(kind, &e.to_string());
            return;
        }
        let Some(writer) = &self.writer else {
            self.fail_kind(kind, "not connected");
            return;
        };
        let expects_response =
            !matches!(kind, InFlightKind::Produce { .. }) || self.shared.config.acks.as_i16() != 0;
        let (kind, fire_and_forget) = match kind {
            InFlightKind::Produce { batches, .. } if !expects_response => (None, batches),
            kind => (Some(kind), Vec::new()),
        };
        let item = WriterItem {
            frame: buf.freeze(),
            fire_and_forget,
        };
        if let Err(mpsc::error::SendError(item)) = writer.send(item) {
            for b in item.fire_and_forget {
                b.reply.do_send(BatchCompleted {
                    batch_id: b.batch_id,
                    result: BatchResult::NotSent("writer stopped".into()),
                });
            }
            if let Some(kind) = kind {
                self.fail_kind(kind, "writer stopped");
            }
            self.disconnect("writer stopped".into());
            return;
        }
        match kind {
            Some(kind) => self.in_flight.push_back(InFlight {
                correlation_id,
                api: api.key,
                version,
                sent_at: Instant::now(),
                kind,
            }),
            None => {
                if self.unanswered.len() == 64 {
                    self.unanswered.pop_front();
                }
                self.unanswered.push_back(correlation_id);
            }
        }
    }

    /// Answers a request that never reached the wire.
    fn fail_kind(&mut self, kind: InFlightKind, reason: &str) {
        match kind {
            InFlightKind::ApiVersions { .. } => {}
            InFlightKind::Produce { batches, .. } => {
                for b in batches {
                    b.reply.do_send(BatchCompleted {
                        batch_id: b.batch_id,
                        result: BatchResult::NotSent(reason.into()),
                    });
                }
            }
            InFlightKind::Call { reply, .. } => {
                let _ = reply.send(Err(CallError::Connection(
                    self.address.clone(),
                    reason.into(),
                )));
            }
        }
    }

    /// Sends whatever the in-flight limit allows: calls first (metadata unblocks batches), then
    /// batches coalesced into ProduceRequests.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.state != State::Ready {
            self.ensure_connected(ctx);
            return;
        }
        let Some(versions) = self.versions else {
            return;
        };
        let max_in_flight = self.shared.config.max_in_flight_requests_per_connection;
        while self.in_flight.len() < max_in_flight && self.state == State::Ready {
            if let Some(call) = self.calls.pop_front() {
                match call.request {
                    CallRequest::Metadata(req) => self.write_request(
                        protocol::METADATA,
                        versions.metadata,
                        &req,
                        InFlightKind::Call {
                            api: ApiKey::Metadata,
                            reply: call.reply,
                        },
                    ),
                    CallRequest::InitProducerId(req) => match versions.init_producer_id {
                        Some(v) => self.write_request(
                            protocol::INIT_PRODUCER_ID,
                            v,
                            &req,
                            InFlightKind::Call {
                                api: ApiKey::InitProducerId,
                                reply: call.reply,
                            },
                        ),
                        None => {
                            let _ = call.reply.send(Err(CallError::Protocol(
                                ProtocolError::MissingApi {
                                    api: "InitProducerId",
                                },
                            )));
                        }
                    },
                }
                continue;
            }
            if self.pending.is_empty() {
                break;
            }
            self.send_produce(versions.produce);
        }
    }

    fn send_produce(&mut self, version: i16) {
        let max_size = self.shared.config.max_request_size;
        let mut taken = Vec::new();
        let mut size = 0usize;
        let mut blocked: HashSet<(Arc<str>, i32)> = HashSet::new();
        let mut rest = VecDeque::with_capacity(self.pending.len());
        while let Some(batch) = self.pending.pop_front() {
            let key = (batch.topic.clone(), batch.partition);
            // One batch per partition per request, and a partition whose earlier batch stays
            // behind keeps all its later ones behind too (order).
            if blocked.contains(&key)
                || (!taken.is_empty() && size + batch.records.len() > max_size)
            {
                blocked.insert(key);
                rest.push_back(batch);
                continue;
            }
            size += batch.records.len();
            blocked.insert(key);
            taken.push(batch);
        }
        self.pending = rest;

        let config = &self.shared.config;
        let mut request = ProduceRequest::default()
            .with_acks(config.acks.as_i16())
            .with_timeout_ms(config.request_timeout.as_millis().min(i32::MAX as u128) as i32);
        let mut records = 0u64;
        for b in &taken {
            records += b.record_count as u64;
            let data = PartitionProduceData::default()
                .with_index(b.partition)
                .with_records(Some(b.records.clone()));
            match request
                .topic_data
                .iter_mut()
                .find(|t| *t.name.0 == *b.topic)
            {
                Some(t) => t.partition_data.push(data),
                None => request.topic_data.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(b.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let metrics = &self.shared.metrics;
        Metrics::add(&metrics.request_count, 1);
        Metrics::add(&metrics.request_records, records);
        self.write_request(
            protocol::PRODUCE,
            version,
            &request,
            InFlightKind::Produce { batches: taken },
        );
    }

    /// Drops the socket and answers everything that was in flight or waiting: batches go back
    /// to their accumulators (which retry or fail them), calls fail.
    fn disconnect(&mut self, reason: String) {
        if self.state == State::Idle && self.in_flight.is_empty() && !self.has_work() {
            return;
        }
        if self.terminated || reason == "producer closed" {
            tracing::debug!(node = self.node_id, address = %self.address, "connection closed");
        } else {
            tracing::warn!(node = self.node_id, address = %self.address, %reason, "connection lost");
        }
        if let Some(h) = self.reader.take() {
            h.abort();
        }
        self.writer = None;
        let was_ready = self.state == State::Ready;
        self.state = State::Idle;
        self.versions = None;
        self.unanswered.clear();
        self.generation += 1;
        for f in std::mem::take(&mut self.in_flight) {
            match f.kind {
                InFlightKind::Produce { batches, .. } => {
                    for b in batches {
                        b.reply.do_send(BatchCompleted {
                            batch_id: b.batch_id,
                            result: BatchResult::Lost(reason.clone()),
                        });
                    }
                }
                kind => self.fail_kind(kind, &reason),
            }
        }
        for b in std::mem::take(&mut self.pending) {
            b.reply.do_send(BatchCompleted {
                batch_id: b.batch_id,
                result: BatchResult::NotSent(reason.clone()),
            });
        }
        for c in std::mem::take(&mut self.calls) {
            let _ = c.reply.send(Err(CallError::Connection(
                self.address.clone(),
                reason.clone(),
            )));
        }
        if !was_ready {
            self.connect_not_before = Some(Instant::now() + self.backoff.next_delay());
        } else {
            self.backoff.reset();
            self.connect_not_before = Some(Instant::now() + self.backoff.next_delay());
        }
        self.shared.request_metadata_refresh();
    }

    /// How long a closing connection waits for the broker to read what was written.
    const CLOSE_LINGER: Duration = Duration::from_secs(1);

    fn on_frame(&mut self, frame: BytesMut, ctx: &mut Context<Self>) {
        if !self.unanswered.is_empty() && frame.len() >= 4 {
            let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if let Some(pos) = self.unanswered.iter().position(|&u| u == id) {
                if self
                    .in_flight
                    .front()
                    .is_none_or(|h| h.correlation_id != id)
                {
                    tracing::trace!(
                        node = self.node_id,
                        correlation_id = id,
                        "ignoring answer to an acks=0 request"
                    );
                    self.unanswered.drain(..=pos);
                    return;
                }
            }
        }
        let Some(head) = self.in_flight.front() else {
            self.disconnect("response with no request in flight".into());
            return;
        };
        let header_version = protocol::response_header_version(head.api, head.version);
        let (correlation_id, header_len) =
            match responses::decode_response_header(&frame, header_version) {
                Ok(h) => h,
                Err(e) => return self.disconnect(format!("bad response header: {e}")),
            };
        if correlation_id != head.correlation_id {
            let e = ProtocolError::CorrelationMismatch {
                expected: head.correlation_id,
                actual: correlation_id,
            };
            return self.disconnect(e.to_string());
        }
        let f = self.in_flight.pop_front().expect("head exists");
        let body = &frame[header_len..];
        match f.kind {
            InFlightKind::ApiVersions { version } => self.on_api_versions(body, version, ctx),
            InFlightKind::Produce { batches, .. } => {
                let metrics = &self.shared.metrics;
                Metrics::add(&metrics.response_count, 1);
                Metrics::add(
                    &metrics.request_latency_us,
                    f.sent_at.elapsed().as_micros() as u64,
                );
                match responses::decode_produce_response(body, f.version) {
                    Ok(resp) => complete_produce(batches, &resp),
                    Err(e) => {
                        // The request may have been written; answer its batches as lost, then
                        // rebuild the connection.
                        let reason = format!("undecodable produce response: {e}");
                        for b in batches {
                            b.reply.do_send(BatchCompleted {
                                batch_id: b.batch_id,
                                result: BatchResult::Lost(reason.clone()),
                            });
                        }
                        return self.disconnect(reason);
                    }
                }
            }
            InFlightKind::Call { api, reply } => {
                let result = match api {
                    ApiKey::Metadata => responses::decode_metadata_response(body, f.version)
                        .map(|r| CallResponse::Metadata(Box::new(r))),
                    _ => responses::decode_init_producer_id_response(body, f.version)
                        .map(CallResponse::InitProducerId),
                };
                match result {
                    Ok(r) => {
                        let _ = reply.send(Ok(r));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(CallError::Protocol(e.clone())));
                        return self.disconnect(format!("undecodable response: {e}"));
                    }
                }
            }
        }
        self.pump(ctx);
    }

    fn on_api_versions(&mut self, body: &[u8], version: i16, ctx: &mut Context<Self>) {
        let resp = match responses::decode_api_versions_response(body, version) {
            Ok(r) => r,
            Err(e) if version > 0 => {
                // Some brokers answer an unknown ApiVersions version in v0 format.
                tracing::debug!(node = self.node_id, error = %e, "ApiVersions v{version} undecodable, retrying v0");
                return self.send_api_versions(0);
            }
            Err(e) => return self.disconnect(format!("bad ApiVersions response: {e}")),
        };
        if resp.error_code == KafkaCode::UNSUPPORTED_VERSION.code() && version > 0 {
            let v = resp
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map(|k| k.max_version.min(protocol::API_VERSIONS.max))
                .unwrap_or(0);
            return self.send_api_versions(if v < version { v } else { 0 });
        }
        match protocol::negotiate(&resp) {
            Ok(v) => {
                tracing::debug!(
                    node = self.node_id,
                    produce = v.produce,
                    metadata = v.metadata,
                    "versions negotiated"
                );
                self.versions = Some(v);
                self.state = State::Ready;
                self.backoff.reset();
                self.connect_started = None;
                self.pump(ctx);
            }
            Err(e) => {
                tracing::error!(node = self.node_id, error = %e, "version negotiation failed");
                // Answer the calls with the reason; batches go back to their accumulators.
                for c in std::mem::take(&mut self.calls) {
                    let _ = c.reply.send(Err(CallError::Protocol(e.clone())));
                }
                self.disconnect(e.to_string());
            }
        }
    }

    fn tick(&mut self) {
        let timeout = self.shared.config.request_timeout;
        if let Some(head) = self.in_flight.front() {
            if head.sent_at.elapsed() > timeout {
                let reason = format!("request timed out after {} ms", timeout.as_millis());
                return self.disconnect(reason);
            }
        }
        if matches!(self.state, State::Negotiating) {
            if let Some(started) = self.connect_started {
                if started.elapsed() > timeout {
                    self.disconnect("version negotiation timed out".into());
                }
            }
        }
    }
}

/// Answers every batch of a produce request from its response.
fn complete_produce(batches: Vec<OutgoingBatch>, resp: &kafka_protocol::messages::ProduceResponse) {
    for b in batches {
        let part = resp
            .responses
            .iter()
            .filter(|t| *t.name.0 == *b.topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == b.partition);
        let result = match part {
            None => BatchResult::Lost("partition missing from produce response".into()),
            Some(p) => match KafkaCode::from_code(p.error_code) {
                None => BatchResult::Written {
                    base_offset: p.base_offset,
                    log_append_time: p.log_append_time_ms,
                },
                Some(code) => BatchResult::Broker {
                    code,
                    message: p.error_message.as_ref().map(|m| m.to_string()),
                },
            },
        };
        b.reply.do_send(BatchCompleted {
            batch_id: b.batch_id,
            result,
        });
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(TICK, |act, _| act.tick());
    }
}

impl Supervised for Connection {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        Metrics::add(&self.shared.metrics.restarts, 1);
        if self.terminated {
            return;
        }
        tracing::warn!(node = self.node_id, "connection actor restarted");
        // The socket's reader and writer tasks are detached and survive, and so do the
        // in-flight queue and pending batches in `self`: the connection carries on. Only work
        // tied to the old context is gone: timers (re-armed in `started`) and a connect in
        // progress, which is started again.
        self.connect_timer = None;
        if self.state == State::Connecting {
            self.state = State::Idle;
            self.generation += 1;
            self.connect_not_before = None;
        }
        self.pump(ctx);
    }
}

impl Handler<SendBatches> for Connection {
    type Result = ();

    fn handle(&mut self, msg: SendBatches, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if self.terminated {
            for b in msg.0 {
                b.reply.do_send(BatchCompleted {
                    batch_id: b.batch_id,
                    result: BatchResult::NotSent("producer closed".into()),
                });
            }
            return;
        }
        self.pending.extend(msg.0);
        self.pump(ctx);
    }
}

impl Handler<Call> for Connection {
    type Result = ResponseFuture<Result<CallResponse, CallError>>;

    fn handle(&mut self, msg: Call, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        let address = self.address.clone();
        if self.terminated {
            let _ = tx.send(Err(CallError::Connection(address.clone(), "closed".into())));
        } else {
            self.calls.push_back(PendingCall {
                request: msg.0,
                reply: tx,
            });
            self.pump(ctx);
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(CallError::Connection(
                    address,
                    "connection actor stopped".into(),
                ))
            })
        })
    }
}

impl Handler<Shutdown> for Connection {
    type Result = ResponseActFuture<Self, ()>;

    /// Graceful close: stop writing (FIN once the writer has drained its queue), keep reading
    /// until the broker closes its side or `CLOSE_LINGER` passes, then drop everything. A broker
    /// reads every request sent before our FIN, so acks=0 records written before close are not
    /// cut off by the close itself.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        self.terminated = true;
        let (tx, rx) = oneshot::channel();
        if self.writer.take().is_some() && self.reader.is_some() {
            self.closing = Some(tx);
        } else {
            let _ = tx.send(());
        }
        let wait = async move {
            let _ = tokio::time::timeout(Self::CLOSE_LINGER, rx).await;
        };
        Box::pin(wait.into_actor(self).map(|_, act, ctx| {
            act.closing = None;
            act.disconnect("producer closed".into());
            ctx.stop();
        }))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Connection {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        tracing::warn!(node = self.node_id, "crashing on request (fault injection)");
        ctx.stop();
    }
}

impl Handler<WriteFailed> for Connection {
    type Result = ();

    fn handle(&mut self, msg: WriteFailed, _: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if msg.generation == self.generation {
            self.disconnect(format!("write failed: {}", msg.error));
        }
    }
}

/// Reader task → connection: one frame from the socket, or its end (`None`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Received {
    generation: u64,
    item: Option<Result<BytesMut, ReadError>>,
}

impl Handler<Received> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Received, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if msg.generation != self.generation {
            return;
        }
        match msg.item {
            Some(Ok(frame)) => self.on_frame(frame, ctx),
            Some(Err(e)) => self.disconnect(e.to_string()),
            None if self.closing.is_some() => {
                if let Some(tx) = self.closing.take() {
                    let _ = tx.send(());
                }
            }
            None => self.disconnect("connection closed by broker".into()),
        }
    }
}

/// Why reading from the socket stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Splits the byte stream into size-prefixed frames, refusing oversized prefixes before
/// allocating.
#[derive(Debug)]
struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ReadError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ReadError> {
        Ok(protocol::split_frame(src, protocol::MAX_RESPONSE_SIZE)?)
    }
}
