//! One actor per broker: the only place that touches sockets.
//!
//! ```text
//!  accumulators ──SendBatches──▶ Coalescer ──(≤ max.request.size, one batch per partition
//!                                  │          per request)──▶ writer task ─▶ Transport
//!  metadata ──GetMetadata / InitProducerId──▶ requests ──┘
//!                                InFlightQueue (≤ max.in.flight, request order)
//!  Transport ─▶ reader task ─Received─▶ connection: correlation id must match the head
//!                        ─▶ BatchCompleted to each batch's accumulator / the request's reply
//! ```
//!
//! Three parts the actor drives: [`transport`] (the byte stream: plain TCP today, TLS and
//! SASL later), [`in_flight`] (the ordered queue of requests awaiting a response) and
//! [`coalesce`] (batches waiting to be written, and how they become ProduceRequests). The
//! latter two are plain structs, tested without a socket.
//!
//! The connection owns no record: it holds batch ids and bytes, and every batch it was given
//! is answered with exactly one `BatchCompleted` (written, broker error, lost with the
//! connection, or never sent). Whatever goes wrong with the socket or the bytes on it, the
//! connection is dropped and rebuilt with reconnect backoff; nothing here panics on input.

mod coalesce;
mod in_flight;
mod transport;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use herald::protocol::{self, responses, NegotiatedVersions};
use herald::{KafkaCode, ProtocolError};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, FramedRead};

use crate::backoff::Backoff;
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::delivery::{BatchResult, OutgoingBatch, SendBatches};
use crate::messages::request::{GetMetadata, InitProducerId, RequestError};
use crate::messages::Shutdown;
use crate::metrics::Metrics;
use crate::shared::Shared;
use coalesce::Coalescer;
use in_flight::{Answer, InFlightQueue};
use transport::Transport;

/// How long a TCP connect may take (Java's `socket.connection.setup.timeout.ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often deadlines of in-flight requests are checked.
const TICK: Duration = Duration::from_millis(50);
/// The connection's mailbox (batches and requests waiting for the actor).
const MAILBOX_CAPACITY: usize = 1024;

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

/// Where the answer to a request goes.
type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What a request on the wire awaits.
#[derive(Debug)]
enum InFlightKind {
    ApiVersions {
        version: i16,
    },
    Produce {
        batches: Vec<OutgoingBatch>,
    },
    Metadata {
        reply: Reply<MetadataResponse>,
    },
    InitProducerId {
        reply: Reply<InitProducerIdResponse>,
    },
}

impl InFlightKind {
    /// Answers a request that got no response (never written, or its connection is gone).
    fn fail(self, address: &str, reason: &str, lost: bool) {
        let error = || RequestError::Connection(address.to_string(), reason.to_string());
        match self {
            InFlightKind::ApiVersions { .. } => {}
            InFlightKind::Produce { batches } => {
                for b in batches {
                    b.answer(if lost {
                        BatchResult::Lost(reason.into())
                    } else {
                        BatchResult::NotSent(reason.into())
                    });
                }
            }
            InFlightKind::Metadata { reply } => {
                let _ = reply.send(Err(error()));
            }
            InFlightKind::InitProducerId { reply } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

/// A request other than Produce waiting to be written, oldest first (before any batch).
#[derive(Debug)]
enum PendingRequest {
    Metadata {
        request: MetadataRequest,
        reply: Reply<MetadataResponse>,
    },
    InitProducerId {
        request: InitProducerIdRequest,
        reply: Reply<InitProducerIdResponse>,
    },
}

impl PendingRequest {
    fn fail(self, error: RequestError) {
        match self {
            PendingRequest::Metadata { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            PendingRequest::InitProducerId { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
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
pub(crate) struct Connection {
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
    in_flight: InFlightQueue<InFlightKind>,
    /// Batches waiting to be written.
    pending: Coalescer<OutgoingBatch>,
    /// Requests other than Produce waiting to be written.
    requests: VecDeque<PendingRequest>,
    /// A pump is due at the end of the current mailbox burst (see `schedule_pump`).
    pump_scheduled: bool,
    versions: Option<NegotiatedVersions>,
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
    pub(crate) fn new(node_id: i32, address: String, shared: Arc<Shared>) -> Self {
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
            in_flight: InFlightQueue::default(),
            pending: Coalescer::default(),
            requests: VecDeque::new(),
            pump_scheduled: false,
            versions: None,
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
        !self.pending.is_empty() || !self.requests.is_empty()
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
        let fut = async move { Transport::connect(&address, CONNECT_TIMEOUT).await };
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

    fn connected(&mut self, stream: Transport, ctx: &mut Context<Self>) {
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
                        b.answer(BatchResult::Lost(format!("write failed: {e}")));
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
                            b.answer(BatchResult::NotSent(format!(
                                "not written: an earlier write failed: {e}"
                            )));
                        }
                    }
                    addr.do_send(WriteFailed {
                        generation,
                        error: e.to_string(),
                    });
                    return;
                }
                for b in item.fire_and_forget {
                    b.answer(BatchResult::Written {
                        base_offset: -1,
                        log_append_time: -1,
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
        let correlation_id = self.in_flight.next_correlation_id();
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
                b.answer(BatchResult::NotSent("writer stopped".into()));
            }
            if let Some(kind) = kind {
                self.fail_kind(kind, "writer stopped");
            }
            self.disconnect("writer stopped".into());
            return;
        }
        match kind {
            Some(kind) => self.in_flight.push(correlation_id, api.key, version, kind),
            None => self.in_flight.push_unanswered(correlation_id),
        }
    }

    /// Answers a request that never reached the wire.
    fn fail_kind(&mut self, kind: InFlightKind, reason: &str) {
        kind.fail(&self.address, reason, false);
    }

    /// Sends whatever the in-flight limit allows: requests first (metadata unblocks batches), then
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
            if let Some(request) = self.requests.pop_front() {
                self.write_pending_request(request, versions);
                continue;
            }
            if self.pending.is_empty() {
                break;
            }
            self.send_produce(versions.produce);
        }
    }

    /// Pumps once the actor has handled every message already in its mailbox, rather than
    /// now: actix polls the futures spawned on a context after draining the mailbox, so the
    /// `SendBatches` of all partitions that arrived together (several accumulators sealed
    /// batches while this thread was busy) are coalesced into one ProduceRequest instead of
    /// going out as one request each. Nothing waits for a timer: the pump runs in the same
    /// wake-up.
    fn schedule_pump(&mut self, ctx: &mut Context<Self>) {
        if self.pump_scheduled {
            return;
        }
        self.pump_scheduled = true;
        ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
            act.pump_scheduled = false;
            act.pump(ctx);
        }));
    }

    fn write_pending_request(&mut self, request: PendingRequest, versions: NegotiatedVersions) {
        match request {
            PendingRequest::Metadata { request, reply } => self.write_request(
                protocol::METADATA,
                versions.metadata,
                &request,
                InFlightKind::Metadata { reply },
            ),
            PendingRequest::InitProducerId { request, reply } => match versions.init_producer_id {
                Some(v) => self.write_request(
                    protocol::INIT_PRODUCER_ID,
                    v,
                    &request,
                    InFlightKind::InitProducerId { reply },
                ),
                None => {
                    let missing = ProtocolError::MissingApi {
                        api: "InitProducerId",
                    };
                    let _ = reply.send(Err(RequestError::Protocol(missing)));
                }
            },
        }
    }

    fn send_produce(&mut self, version: i16) {
        let config = &self.shared.config;
        let batches = self.pending.next_request(config.max_request_size);
        let (request, records) = coalesce::produce_request(
            &batches,
            config.acks.as_i16(),
            config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        );
        let metrics = &self.shared.metrics;
        Metrics::add(&metrics.request_count, 1);
        Metrics::add(&metrics.request_records, records);
        self.write_request(
            protocol::PRODUCE,
            version,
            &request,
            InFlightKind::Produce { batches },
        );
    }

    /// Drops the socket and answers everything that was in flight or waiting: batches go back
    /// to their accumulators (which retry or fail them), requests fail.
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
        self.generation += 1;
        for f in self.in_flight.take_all() {
            // Written, maybe read: lost. (Requests other than Produce just fail.)
            f.kind.fail(&self.address, &reason, true);
        }
        for b in self.pending.take_all() {
            b.answer(BatchResult::NotSent(reason.clone()));
        }
        for r in std::mem::take(&mut self.requests) {
            r.fail(RequestError::Connection(
                self.address.clone(),
                reason.clone(),
            ));
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
        let (f, body_at) = match self.in_flight.answer(&frame) {
            Answer::Response { request, body_at } => (request, body_at),
            Answer::Ignored { correlation_id } => {
                tracing::trace!(
                    node = self.node_id,
                    correlation_id,
                    "ignoring answer to an acks=0 request"
                );
                return;
            }
            Answer::Broken(reason) => return self.disconnect(reason),
        };
        let body = &frame[body_at..];
        match f.kind {
            InFlightKind::ApiVersions { version } => self.on_api_versions(body, version, ctx),
            InFlightKind::Produce { batches } => {
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
                            b.answer(BatchResult::Lost(reason.clone()));
                        }
                        return self.disconnect(reason);
                    }
                }
            }
            InFlightKind::Metadata { reply } => {
                let decoded = responses::decode_metadata_response(body, f.version);
                if !self.reply(reply, decoded) {
                    return;
                }
            }
            InFlightKind::InitProducerId { reply } => {
                let decoded = responses::decode_init_producer_id_response(body, f.version);
                if !self.reply(reply, decoded) {
                    return;
                }
            }
        }
        // Other responses and batches may be next in the mailbox: coalesce them first.
        self.schedule_pump(ctx);
    }

    /// Answers a request with its decoded response. An undecodable response also drops the
    /// connection (the stream cannot be trusted); returns whether the connection is kept.
    fn reply<T>(&mut self, reply: Reply<T>, decoded: Result<T, ProtocolError>) -> bool {
        match decoded {
            Ok(r) => {
                let _ = reply.send(Ok(r));
                true
            }
            Err(e) => {
                let _ = reply.send(Err(RequestError::Protocol(e.clone())));
                self.disconnect(format!("undecodable response: {e}"));
                false
            }
        }
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
                // Answer the requests with the reason; batches go back to their accumulators.
                for r in std::mem::take(&mut self.requests) {
                    r.fail(RequestError::Protocol(e.clone()));
                }
                self.disconnect(e.to_string());
            }
        }
    }

    fn tick(&mut self) {
        let timeout = self.shared.config.request_timeout;
        if self.in_flight.head_timed_out(timeout, Instant::now()) {
            let reason = format!("request timed out after {} ms", timeout.as_millis());
            return self.disconnect(reason);
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
        b.answer(result);
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
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
        // progress, which is started again, and a scheduled pump (run below).
        self.connect_timer = None;
        self.pump_scheduled = false;
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
                b.answer(BatchResult::NotSent("producer closed".into()));
            }
            return;
        }
        self.pending.extend(msg.0);
        self.schedule_pump(ctx);
    }
}

impl Connection {
    /// Queues a request other than Produce; the future resolves with its answer.
    fn enqueue<T: Send + 'static>(
        &mut self,
        request: impl FnOnce(Reply<T>) -> PendingRequest,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<T, RequestError>> {
        let _span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        let address = self.address.clone();
        if self.terminated {
            let _ = tx.send(Err(RequestError::Connection(
                address.clone(),
                "closed".into(),
            )));
        } else {
            self.requests.push_back(request(tx));
            self.pump(ctx);
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(RequestError::Connection(
                    address,
                    "connection actor stopped".into(),
                ))
            })
        })
    }
}

impl Handler<GetMetadata> for Connection {
    type Result = ResponseFuture<Result<MetadataResponse, RequestError>>;

    fn handle(&mut self, msg: GetMetadata, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(
            |reply| PendingRequest::Metadata {
                request: msg.0,
                reply,
            },
            ctx,
        )
    }
}

impl Handler<InitProducerId> for Connection {
    type Result = ResponseFuture<Result<InitProducerIdResponse, RequestError>>;

    fn handle(&mut self, msg: InitProducerId, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(
            |reply| PendingRequest::InitProducerId {
                request: msg.0,
                reply,
            },
            ctx,
        )
    }
}

impl Handler<Shutdown> for Connection {
    type Result = ResponseActFuture<Self, ()>;

    /// Graceful close: stop writing (FIN once the writer has drained its queue), keep reading
    /// until the broker closes its side or `CLOSE_LINGER` passes, then drop everything. A broker
    /// reads every request sent before our FIN, so acks=0 records written before close are not
    /// cut off by the close itself.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        // Batches that arrived in this burst are written before the FIN, as they were before
        // pumps were deferred to the end of the burst.
        if self.pump_scheduled {
            self.pump(ctx);
        }
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
