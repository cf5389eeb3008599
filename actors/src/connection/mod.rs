//! One actor per broker: the only place that touches sockets.
//!
//! ```text
//!  accumulators ──SendBatches──▶ Coalescer ──(≤ max.request.size, one batch per partition
//!                                  │          per request)──▶ writer task ─▶ Transport
//!  metadata ──GetMetadata / InitProducerId──▶ requests ──┘
//!  transaction manager ──Transact──────────▶ requests
//!                                InFlightQueue (≤ max.in.flight, request order)
//!  Transport ─▶ reader task ─Received─▶ connection: correlation id must match the head
//!                        ─▶ BatchCompleted to each batch's accumulator / the request's reply
//! ```
//!
//! Steps of a new connection: TCP, the TLS handshake (SSL, SASL_SSL; in [`transport`]),
//! ApiVersions, then with SASL: SaslHandshake v1 naming the mechanism and SaslAuthenticate
//! requests carrying the mechanism's bytes until it is done (KIP-43, KIP-152). Only then is
//! the connection ready for other requests. When the broker gives the session a lifetime
//! (KIP-368), the same exchange runs again on the same connection at a random point between
//! 85% and 95% of it: new requests wait, requests in flight are answered as usual (the
//! handshake requests queue behind them in the ordered in-flight queue).
//! A refusal (a SASL error code, a TLS certificate or alert) is no reason to retry: waiting
//! batches and requests fail at once with the reason ([`BatchResult::AuthenticationFailed`],
//! [`RequestError::Authentication`]), as Java fails the send with an AuthenticationException.
//!
//! Three parts the actor drives: [`transport`] (the byte stream: plain TCP or TLS),
//! [`in_flight`] (the ordered queue of requests awaiting a response) and
//! [`coalesce`] (batches waiting to be written, and how they become ProduceRequests). The
//! latter two are plain structs, tested without a socket.
//!
//! The connection owns no record: it holds batch ids and bytes, and every batch it was given
//! is answered with exactly one `BatchCompleted` (written, broker error, lost with the
//! connection, or never sent). Whatever goes wrong with the socket or the bytes on it, the
//! connection is dropped and rebuilt with reconnect backoff; nothing here panics on input.

mod coalesce;
mod frame;
mod in_flight;
mod transport;
mod unwritten;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use herald::protocol::{self, responses, NegotiatedVersions};
use herald::sasl::{SaslClient, Step};
use herald::{KafkaCode, ProtocolError};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backoff::Backoff;
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::cluster::BrokerListed;
use crate::messages::delivery::{
    broker_message, BatchResult, InvalidRecord, LeaderHint, OutgoingBatch, SendBatches,
};
use crate::messages::request::{
    GetMetadata, InitProducerId, RequestError, Transact, TxnAnswer, TxnCall,
};
use crate::messages::Shutdown;
use crate::metrics::{Metrics, NodeSensors};
use crate::otel::{Answered, SendSpans, Sent};
use crate::shared::Shared;
use crate::supervisor::{panic_message, ActorKind, PanicWindow};
use coalesce::Coalescer;
use frame::Frame;
use in_flight::{Answer, InFlightQueue};
use transport::{ConnectError, SocketOptions, Transport, WriteHalf};
use unwritten::Unwritten;

/// How often deadlines of in-flight requests are checked.
const TICK: Duration = Duration::from_millis(50);
/// The connection's mailbox (batches and requests waiting for the actor).
const MAILBOX_CAPACITY: usize = 1024;
/// Kafka refuses a re-authentication within one second of the connection's previous one
/// (`MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`); 50 ms more for the clocks' rounding.
const REAUTH_INTERVAL: Duration = Duration::from_millis(1050);

/// A frame for the writer task. acks=0 batches ride along: they are answered by the writer
/// once their bytes are in the socket, since no response will ever come, or, when a write
/// fails, as lost (the failed frame) or never sent (every frame still queued behind it).
struct WriterItem {
    frame: Frame,
    fire_and_forget: Vec<OutgoingBatch>,
}

/// Sizes only, as [`Frame`]'s: the frame may carry SASL credentials.
impl std::fmt::Debug for WriterItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterItem")
            .field("frame", &self.frame)
            .field("fire_and_forget", &self.fire_and_forget.len())
            .finish()
    }
}

/// Writer task → connection: the socket failed while writing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct WriteFailed {
    generation: u64,
    error: String,
}

/// Reader or writer task → connection: the task panicked (a bug in Herald's framing or
/// completion code). The socket it served is dropped like a lost connection, and the
/// panic counts as the connection's, under the same restart limit.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct SocketTaskPanicked {
    generation: u64,
    task: &'static str,
    message: Arc<str>,
}

/// Runs a socket task, reporting a panic to the connection instead of losing it with the
/// task (no supervisor polls these tasks).
async fn guarded(
    task: &'static str,
    generation: u64,
    addr: Addr<Connection>,
    body: impl Future<Output = ()>,
) {
    if let Err(payload) = futures_util::FutureExt::catch_unwind(AssertUnwindSafe(body)).await {
        addr.do_send(SocketTaskPanicked {
            generation,
            task,
            message: panic_message(payload.as_ref()),
        });
    }
}

/// The writer task of one socket: writes the frames queued for it in order, answering the
/// acks=0 batches riding along as it goes; when the queue's sender is dropped, shuts the
/// socket's sending side down (FIN). Counts the frames it wrote in `frames_written` (see
/// [`Unwritten`]). `stop` ends it at once, wherever it is: the frames not
/// written are abandoned (their acks=0 batches answered as never sent, the one cut mid-write
/// as lost), and dropping the socket's half closes it, as Java's selector closes a channel it
/// gives up on.
async fn write_frames(
    mut write: WriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriterItem>,
    stop: CancellationToken,
    frames_written: Arc<AtomicU64>,
    generation: u64,
    addr: Addr<Connection>,
) {
    loop {
        let item = tokio::select! {
            biased;
            () = stop.cancelled() => return abandon_queue(&mut rx, "the connection was dropped"),
            item = rx.recv() => item,
        };
        let Some(mut item) = item else { break };
        let size = item.frame.remaining();
        let written = {
            // Flushed after every frame: when the socket is full, TLS (tokio-rustls) keeps the
            // tail of its records in its own buffer and still reports the write done, and
            // nothing would push that tail out before the next write, leaving the broker
            // waiting for the end of the request until request.timeout.ms. On plain TCP the
            // flush does nothing.
            let write_one = async {
                write.write_all_buf(&mut item.frame).await?;
                write.flush().await
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => None,
                r = write_one => Some(r),
            }
        };
        let Some(written) = written else {
            let reason = "the connection was dropped";
            let begun = item.frame.remaining() < size;
            for b in item.fire_and_forget {
                b.answer(if begun {
                    BatchResult::Lost(format!("partly written: {reason}"))
                } else {
                    BatchResult::NotSent(format!("not written: {reason}"))
                });
            }
            return abandon_queue(&mut rx, reason);
        };
        if let Err(e) = written {
            for b in item.fire_and_forget {
                b.answer(BatchResult::Lost(format!("write failed: {e}")));
            }
            // (Frames that expect a response are in `in_flight` and answered by
            // `disconnect`.)
            abandon_queue(&mut rx, &format!("an earlier write failed: {e}"));
            addr.do_send(WriteFailed {
                generation,
                error: e.to_string(),
            });
            return;
        }
        frames_written.fetch_add(1, Release);
        for b in item.fire_and_forget {
            b.answer(BatchResult::Written {
                base_offset: -1,
                log_append_time: -1,
            });
        }
    }
    tokio::select! {
        biased;
        () = stop.cancelled() => {}
        _ = write.shutdown() => {}
    }
}

/// The frames still queued for a writer that stops will never be written. Their acks=0
/// batches are owned by the queue alone (no in-flight entry), so dropping the queue would
/// leave them to delivery.timeout.ms (or to the drop guard, as lost); they are answered now
/// as never sent, and the accumulators retry them at once. `close` first: nothing new can be
/// queued while draining.
fn abandon_queue(rx: &mut mpsc::UnboundedReceiver<WriterItem>, reason: &str) {
    rx.close();
    while let Ok(queued) = rx.try_recv() {
        for b in queued.fire_and_forget {
            b.answer(BatchResult::NotSent(format!("not written: {reason}")));
        }
    }
}

/// What a connection's wait for an OAUTHBEARER token from the application's provider came to.
#[derive(Debug)]
enum TokenWait {
    Token(herald::sasl::Token),
    /// The provider's error, as text (it names no secret: see `TokenError`).
    Failed(String),
    /// No answer within the connection's setup timeout.
    TimedOut,
}

/// Where the answer to a request goes.
type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What a request on the wire awaits.
#[derive(Debug)]
enum InFlightKind {
    ApiVersions {
        version: i16,
    },
    SaslHandshake,
    SaslAuthenticate,
    Produce {
        batches: Vec<OutgoingBatch>,
        /// Their `send` spans (feature `opentelemetry`).
        spans: SendSpans,
    },
    Metadata {
        reply: Reply<MetadataResponse>,
    },
    InitProducerId {
        reply: Reply<InitProducerIdResponse>,
    },
    Transact {
        kind: TxnKind,
        reply: Reply<TxnAnswer>,
    },
}

/// Which transactional response a `Transact` request awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnKind {
    FindCoordinator,
    InitProducerId,
    AddPartitions,
    AddOffsets,
    CommitOffsets,
    EndTxn,
}

impl TxnKind {
    fn of(call: &TxnCall) -> Self {
        match call {
            TxnCall::FindCoordinator(_) => TxnKind::FindCoordinator,
            TxnCall::InitProducerId(_) => TxnKind::InitProducerId,
            TxnCall::AddPartitions(_) => TxnKind::AddPartitions,
            TxnCall::AddOffsets(_) => TxnKind::AddOffsets,
            TxnCall::CommitOffsets(_) => TxnKind::CommitOffsets,
            TxnCall::EndTxn(_) => TxnKind::EndTxn,
        }
    }

    /// The API and its negotiated version, or why the broker cannot take it.
    fn version(
        self,
        v: &NegotiatedVersions,
        transaction_v2: bool,
    ) -> Result<(protocol::ApiSupport, i16), ProtocolError> {
        let t = &v.transactions;
        let (api, version) = match self {
            TxnKind::FindCoordinator => (protocol::FIND_COORDINATOR, t.find_coordinator),
            TxnKind::InitProducerId => (protocol::INIT_PRODUCER_ID, v.init_producer_id),
            TxnKind::AddPartitions => (protocol::ADD_PARTITIONS_TO_TXN, t.add_partitions_to_txn),
            TxnKind::AddOffsets => (protocol::ADD_OFFSETS_TO_TXN, t.add_offsets_to_txn),
            TxnKind::CommitOffsets => (protocol::TXN_OFFSET_COMMIT, t.txn_offset_commit),
            TxnKind::EndTxn => (protocol::END_TXN, t.end_txn),
        };
        let version = version.ok_or(ProtocolError::MissingApi { api: api.name })?;
        let version = match protocol::transaction_version_cap(api.key, transaction_v2) {
            Some(cap) => version.min(cap),
            None => version,
        };
        Ok((api, version))
    }

    fn decode(self, body: &[u8], version: i16) -> Result<TxnAnswer, ProtocolError> {
        Ok(match self {
            TxnKind::FindCoordinator => TxnAnswer::FindCoordinator(
                responses::decode_find_coordinator_response(body, version)?,
            ),
            TxnKind::InitProducerId => TxnAnswer::InitProducerId(
                responses::decode_init_producer_id_response(body, version)?,
            ),
            TxnKind::AddPartitions => TxnAnswer::AddPartitions(
                responses::decode_add_partitions_to_txn_response(body, version)?,
            ),
            TxnKind::AddOffsets => TxnAnswer::AddOffsets(
                responses::decode_add_offsets_to_txn_response(body, version)?,
            ),
            TxnKind::CommitOffsets => TxnAnswer::CommitOffsets(
                responses::decode_txn_offset_commit_response(body, version)?,
            ),
            TxnKind::EndTxn => {
                TxnAnswer::EndTxn(responses::decode_end_txn_response(body, version)?)
            }
        })
    }
}

impl InFlightKind {
    /// Answers a request that got no response (never written, or its connection is gone).
    fn fail(self, address: &str, reason: &str, lost: bool) {
        let error = || RequestError::Connection(address.to_string(), reason.to_string());
        match self {
            InFlightKind::ApiVersions { .. }
            | InFlightKind::SaslHandshake
            | InFlightKind::SaslAuthenticate => {}
            InFlightKind::Produce { batches, spans } => {
                for b in batches {
                    b.answer(if lost {
                        BatchResult::Lost(reason.into())
                    } else {
                        BatchResult::NotSent(reason.into())
                    });
                }
                spans.fail(reason);
            }
            InFlightKind::Metadata { reply } => {
                let _ = reply.send(Err(error()));
            }
            InFlightKind::InitProducerId { reply } => {
                let _ = reply.send(Err(error()));
            }
            InFlightKind::Transact { reply, .. } => {
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
    Transact {
        call: TxnCall,
        reply: Reply<TxnAnswer>,
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
            PendingRequest::Transact { reply, .. } => {
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
    /// The SASL exchange of a new connection.
    Authenticating,
    Ready,
    /// Re-authenticating (KIP-368): requests in flight are answered, new ones wait.
    Reauthenticating,
}

/// The broker connection actor.
#[derive(Debug)]
pub(crate) struct Connection {
    node_id: i32,
    address: String,
    shared: Arc<Shared>,
    /// This broker's windowed metrics.
    sensors: Arc<NodeSensors>,
    client_id: StrBytes,
    /// `transactional.id`, named in every ProduceRequest of a transactional producer.
    transactional_id: Option<kafka_protocol::messages::TransactionalId>,
    state: State,
    /// Bumped on every connect; events from older sockets are ignored.
    generation: u64,
    writer: Option<mpsc::UnboundedSender<WriterItem>>,
    /// Stops the writer task when dropped (see [`write_frames`]): a socket given up on an
    /// error or a timeout must not go on writing requests already answered as lost or never
    /// sent and sent again elsewhere. Kept past `writer` while a graceful close lets the
    /// writer finish its queue; disarmed when an idle socket is closed.
    writer_stop: Option<DropGuard>,
    /// When the frames handed to this socket's writer and not yet written were queued: one
    /// older than request.timeout.ms drops the connection, as a request awaiting its response
    /// does (this is what times out acks=0 requests, which await none).
    unwritten: Unwritten,
    /// The reader task: detached from this actor's context so that a supervised restart of
    /// the actor does not cut a healthy socket (responses to in-flight requests keep coming,
    /// and the in-flight queue lives in `self`, which survives the restart).
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Recent panics of this connection and its socket tasks, for the restart limit: the
    /// window its supervisor counts the actor's own panics in.
    panics: PanicWindow,
    /// Test-only: makes the current socket's reader task panic (`Crash::PanicInSocketTask`).
    #[cfg(feature = "fault-injection")]
    reader_crash: Arc<tokio::sync::Notify>,
    in_flight: InFlightQueue<InFlightKind>,
    /// Batches waiting to be written.
    pending: Coalescer<OutgoingBatch>,
    /// Requests other than Produce waiting to be written.
    requests: VecDeque<PendingRequest>,
    /// A pump is due at the end of the current mailbox burst (see `schedule_pump`).
    pump_scheduled: bool,
    versions: Option<NegotiatedVersions>,
    /// The SaslHandshake version negotiated on this connection.
    sasl_handshake_version: i16,
    /// The SaslAuthenticate version negotiated on this connection.
    sasl_authenticate_version: i16,
    /// The SASL exchange under way, if any.
    sasl: Option<Box<dyn SaslClient>>,
    /// When the last SaslHandshake was answered: the broker took it before then, and refuses
    /// another within [`REAUTH_INTERVAL`] of it.
    handshake_answered: Option<Instant>,
    /// When the re-authentication under way began (`reauthentication-latency-*`).
    reauth_started: Option<Instant>,
    /// When this socket's session is due for re-authentication (KIP-368). Kept here, not only
    /// in its timer: a supervised restart cancels the context's timers, and `restarting`
    /// arms the timer again from this.
    reauth_at: Option<Instant>,
    backoff: Backoff,
    /// `socket.connection.setup.timeout.ms`, doubling with each attempt that failed since
    /// the connection was last ready, up to its `.max.ms` (Java's `ClusterConnectionStates`).
    setup_backoff: Backoff,
    /// This attempt's setup timeout, drawn from `setup_backoff` when it began.
    setup_timeout: Duration,
    /// Connect attempts so far: each starts at the next of the broker's addresses.
    connect_attempts: usize,
    /// No connect attempt before this instant (reconnect backoff).
    connect_not_before: Option<Instant>,
    connect_started: Option<Instant>,
    connect_timer: Option<SpawnHandle>,
    /// When this socket last wrote a request or read a response (`connections.max.idle.ms`).
    last_used: Instant,
    /// Nothing is written before this instant: the broker asked this client to wait
    /// (KIP-219: a response's `throttle_time_ms`, after which the broker stops reading the
    /// connection for that long), as Java's `NetworkClient` holds a throttled node. A request
    /// written meanwhile would lie unread on the muted socket, its request.timeout.ms
    /// running. Kept across reconnects: the broker throttles the client, not the socket.
    throttled_until: Option<Instant>,
    /// The pump that runs when the throttle ends.
    throttle_timer: Option<SpawnHandle>,
    /// Set while shutting down gracefully: fired when the broker closes its side.
    closing: Option<oneshot::Sender<()>>,
    terminated: bool,
    /// Every event of this connection carries its broker id and address.
    span: tracing::Span,
}

impl Connection {
    /// A connection to `address` (`host:port`) for broker `node_id` (negative for bootstrap
    /// entries whose id is not known yet).
    pub(crate) fn new(
        node_id: i32,
        address: String,
        shared: Arc<Shared>,
        panics: PanicWindow,
    ) -> Self {
        let span = tracing::info_span!("connection", node = node_id, address = %address);
        let config = &shared.config;
        let backoff = Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max);
        let setup_backoff = Backoff::new(
            config.socket_connection_setup_timeout,
            config.socket_connection_setup_timeout_max,
        );
        Connection {
            sensors: shared.metrics.node(node_id),
            node_id,
            address,
            client_id: StrBytes::from_string(config.client_id.clone()),
            transactional_id: config
                .transactional_id
                .clone()
                .map(|id| kafka_protocol::messages::TransactionalId(StrBytes::from_string(id))),
            shared,
            state: State::Idle,
            generation: 0,
            writer: None,
            writer_stop: None,
            unwritten: Unwritten::default(),
            reader: None,
            panics,
            #[cfg(feature = "fault-injection")]
            reader_crash: Arc::default(),
            in_flight: InFlightQueue::default(),
            pending: Coalescer::default(),
            requests: VecDeque::new(),
            pump_scheduled: false,
            versions: None,
            sasl_handshake_version: 0,
            sasl_authenticate_version: 0,
            sasl: None,
            handshake_answered: None,
            reauth_started: None,
            reauth_at: None,
            backoff,
            setup_backoff,
            setup_timeout: Duration::ZERO,
            connect_attempts: 0,
            connect_not_before: None,
            connect_started: None,
            connect_timer: None,
            last_used: Instant::now(),
            throttled_until: None,
            throttle_timer: None,
            closing: None,
            terminated: false,
            span,
        }
    }

    fn has_work(&self) -> bool {
        self.pending.has_live() || !self.requests.is_empty()
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
        let tls = self.shared.tls.clone();
        let config = &self.shared.config;
        let options = SocketOptions {
            send_buffer: config.send_buffer_bytes,
            receive_buffer: config.receive_buffer_bytes,
        };
        self.setup_timeout = self.setup_backoff.next_delay();
        let (timeout, attempt) = (self.setup_timeout, self.connect_attempts);
        self.connect_attempts = self.connect_attempts.wrapping_add(1);
        let fut = async move { Transport::connect(&address, timeout, tls, options, attempt).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.generation != generation || act.state != State::Connecting {
                return;
            }
            match res {
                Ok(stream) => act.connected(stream, ctx),
                Err(ConnectError::Tls(reason)) => act.authentication_failed(format!(
                    "TLS handshake with broker {} failed: {reason}",
                    act.address
                )),
                Err(e @ ConnectError::Io(_)) => act.disconnect(e.to_string()),
            }
        }));
    }

    fn connected(&mut self, stream: Transport, ctx: &mut Context<Self>) {
        let m = &self.shared.metrics;
        Metrics::add(&m.connection_creation_total, 1);
        m.sensors.connection_creation.record(1.0, m.now_ms());
        self.sensors.connected.store(true, Relaxed);
        let (read, write) = stream.into_split();
        let generation = self.generation;
        let addr = ctx.address();
        let reader_addr = addr.clone();
        #[cfg(feature = "fault-injection")]
        let crash = {
            self.reader_crash = Arc::default();
            self.reader_crash.clone()
        };
        let reading = async move {
            let mut frames = FramedRead::new(read, FrameCodec);
            loop {
                #[cfg(feature = "fault-injection")]
                let item = tokio::select! {
                    item = frames.next() => item,
                    () = crash.notified() => panic!("fault injection: the connection's reader task panics"),
                };
                #[cfg(not(feature = "fault-injection"))]
                let item = frames.next().await;
                let Some(item) = item else { break };
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
        };
        self.reader = Some(actix::spawn(guarded(
            "reader",
            generation,
            addr.clone(),
            reading,
        )));
        let (tx, rx) = mpsc::unbounded_channel::<WriterItem>();
        let stop = CancellationToken::new();
        self.unwritten = Unwritten::default();
        let writing = write_frames(
            write,
            rx,
            stop.clone(),
            self.unwritten.counter(),
            generation,
            addr.clone(),
        );
        actix::spawn(guarded("writer", generation, addr, writing));
        self.writer = Some(tx);
        self.writer_stop = Some(stop.drop_guard());
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
        let frame = self.whole_frame(api, version, correlation_id, body);
        self.write_frame(api, version, correlation_id, frame, kind);
    }

    /// `body` encoded by kafka-protocol, as a frame of one piece.
    fn whole_frame<R>(
        &self,
        api: protocol::ApiSupport,
        version: i16,
        correlation_id: i32,
        body: &R,
    ) -> Result<Frame, ProtocolError>
    where
        R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
    {
        let mut buf = BytesMut::new();
        protocol::encode_request(
            &mut buf,
            api,
            version,
            correlation_id,
            &self.client_id,
            body,
        )?;
        Ok(Frame::new([buf.freeze()]))
    }

    /// A ProduceRequest: its batches go into the frame by reference
    /// (`herald::protocol::produce`), not copied into one buffer.
    fn write_produce(&mut self, version: i16, request: &ProduceRequest, kind: InFlightKind) {
        let correlation_id = self.in_flight.next_correlation_id();
        let frame = match protocol::produce::encode_produce(
            version,
            correlation_id,
            &self.client_id,
            request,
        ) {
            Ok(Some(pieces)) => Ok(Frame::new(pieces)),
            Ok(None) => self.whole_frame(protocol::PRODUCE, version, correlation_id, request),
            Err(e) => Err(e),
        };
        self.write_frame(protocol::PRODUCE, version, correlation_id, frame, kind);
    }

    fn write_frame(
        &mut self,
        api: protocol::ApiSupport,
        version: i16,
        correlation_id: i32,
        frame: Result<Frame, ProtocolError>,
        kind: InFlightKind,
    ) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // Our own request cannot be encoded at this version: answer the requester,
                // keep the connection.
                tracing::error!(node = self.node_id, error = %e, "request encoding failed");
                self.fail_kind(kind, &e.to_string());
                return;
            }
        };
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
        let bytes = frame.remaining() as f64;
        let item = WriterItem {
            frame,
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
        self.last_used = Instant::now();
        self.unwritten.queued(self.last_used);
        let m = &self.shared.metrics;
        let now = m.now_ms();
        m.sensors.request.record(bytes, now);
        self.sensors.request.record(bytes, now);
        self.note_in_flight();
    }

    /// Counts the socket this connection just gave up (`connection-close-*`,
    /// `connection-count`).
    fn closed_socket(&self) {
        let m = &self.shared.metrics;
        m.sensors.connection_close.record(1.0, m.now_ms());
        self.sensors.connected.store(false, Relaxed);
    }

    /// Publishes the number of requests awaiting a response on this connection.
    fn note_in_flight(&self) {
        self.sensors.in_flight.store(self.in_flight.len(), Relaxed);
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
        // A session that came due while the connection was idle is renewed before anything
        // more is written (the work waits for it, as behind a timer's re-authentication).
        if self.reauthentication_due() && self.has_work() {
            self.begin_reauthentication(ctx);
            return;
        }
        if self.throttled(ctx) {
            return;
        }
        let max_in_flight = self.shared.config.max_in_flight_requests_per_connection;
        while self.in_flight.len() < max_in_flight && self.state == State::Ready {
            if let Some(request) = self.requests.pop_front() {
                self.write_pending_request(request, versions);
                continue;
            }
            if self.pending.is_empty() {
                break;
            }
            let cap = self
                .shared
                .txn
                .as_ref()
                .and_then(|t| protocol::transaction_version_cap(ApiKey::Produce, t.v2()));
            let produce = cap.map_or(versions.produce, |c| versions.produce.min(c));
            self.send_produce(produce);
        }
    }

    /// Whether the broker's throttle still holds this connection; if so, a pump is due when
    /// it ends.
    fn throttled(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(until) = self.throttled_until else {
            return false;
        };
        let now = Instant::now();
        if until <= now {
            self.throttled_until = None;
            return false;
        }
        if self.throttle_timer.is_none() {
            let wake = ctx.run_later(until - now, |act, ctx| {
                act.throttle_timer = None;
                act.pump(ctx);
            });
            self.throttle_timer = Some(wake);
        }
        true
    }

    /// Notes a response's throttle time, for the versions where the broker expects the client
    /// to wait it out, having muted the connection after answering (KIP-219: Produce and
    /// Metadata from v6, FindCoordinator from v2, InitProducerId and the transaction calls
    /// from v1, as Java's `shouldClientThrottle`); older versions delayed the response
    /// itself.
    fn note_throttle(&mut self, throttle_ms: i32, version: i16, client_throttles_from: i16) {
        if throttle_ms <= 0 || version < client_throttles_from {
            return;
        }
        let until = Instant::now() + Duration::from_millis(throttle_ms as u64);
        if self.throttled_until.is_none_or(|t| t < until) {
            tracing::debug!(node = self.node_id, throttle_ms, "throttled by the broker");
            self.throttled_until = Some(until);
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
                // kafka-protocol would refuse to encode it; the requester is told why, so that
                // it asks for a new producer id rather than for the bump again.
                Some(version) if bump_unsupported(version, &request) => {
                    let refused = ProtocolError::EpochBumpUnsupported { version };
                    let _ = reply.send(Err(RequestError::Protocol(refused)));
                }
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
            PendingRequest::Transact { call, reply } => {
                let kind = TxnKind::of(&call);
                let v2 = self.shared.txn.as_ref().is_some_and(|t| t.v2());
                let (api, version) = match kind.version(&versions, v2) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(Err(RequestError::Protocol(e)));
                        return;
                    }
                };
                // As on the idempotent path: said, so that the transaction manager can ask
                // as a broker of that age takes it.
                if let TxnCall::InitProducerId(r) = &call {
                    if bump_unsupported(version, r) {
                        let refused = ProtocolError::EpochBumpUnsupported { version };
                        let _ = reply.send(Err(RequestError::Protocol(refused)));
                        return;
                    }
                }
                let in_flight = InFlightKind::Transact { kind, reply };
                match &call {
                    TxnCall::FindCoordinator(r) => self.write_request(api, version, r, in_flight),
                    TxnCall::InitProducerId(r) => self.write_request(api, version, r, in_flight),
                    TxnCall::AddPartitions(r) => self.write_request(api, version, r, in_flight),
                    TxnCall::AddOffsets(r) => self.write_request(api, version, r, in_flight),
                    TxnCall::CommitOffsets(r) => self.write_request(api, version, r, in_flight),
                    TxnCall::EndTxn(r) => self.write_request(api, version, r, in_flight),
                }
            }
        }
    }

    fn send_produce(&mut self, version: i16) {
        let config = &self.shared.config;
        let batches = self.pending.next_request(config.max_request_size);
        if batches.is_empty() {
            // Every batch left was answered by its accumulator while it waited.
            return;
        }
        #[cfg(feature = "fault-injection")]
        self.shared.victims.trip(ActorKind::Connection);
        let sent = batches.iter().map(|b| Sent {
            topic: &b.topic,
            partition: b.partition,
            record_count: b.record_count,
            links: &b.links,
        });
        let spans = self.shared.tracing.send_spans(sent, &self.address);
        let (mut request, records) = coalesce::produce_request(
            &batches,
            config.acks.as_i16(),
            config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        );
        // The broker authorizes transactional batches against the request's transactional
        // id; without it they are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
        request.transactional_id = self.transactional_id.clone();
        let metrics = &self.shared.metrics;
        Metrics::add(&metrics.request_count, 1);
        Metrics::add(&metrics.request_records, records);
        let per_request = &metrics.sensors.records_per_request;
        per_request.record(records as f64, metrics.now_ms());
        self.write_produce(version, &request, InFlightKind::Produce { batches, spans });
    }

    /// Drops the socket and answers everything that was in flight or waiting: batches go back
    /// to their accumulators (which retry or fail them), requests fail.
    fn disconnect(&mut self, reason: String) {
        if self.state == State::Idle && self.in_flight.is_empty() && !self.has_work() {
            return;
        }
        let closing = self.terminated || reason == "producer closed";
        if closing {
            tracing::debug!(node = self.node_id, address = %self.address, "connection closed");
        } else {
            tracing::warn!(node = self.node_id, address = %self.address, %reason, "connection lost");
        }
        let was_ready = matches!(self.state, State::Ready | State::Reauthenticating);
        self.drop_socket();
        for f in self.in_flight.take_all() {
            // Written, maybe read: lost. (Requests other than Produce just fail.)
            f.kind.fail(&self.address, &reason, true);
        }
        self.note_in_flight();
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
        if was_ready && !closing {
            self.shared.report_broker_lost();
        } else {
            self.shared.request_metadata_refresh();
        }
    }

    /// How long a closing connection waits for the broker to read what was written.
    const CLOSE_LINGER: Duration = Duration::from_secs(1);

    fn on_frame(&mut self, frame: BytesMut, ctx: &mut Context<Self>) {
        self.last_used = Instant::now();
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
        self.note_in_flight();
        let m = &self.shared.metrics;
        let now = m.now_ms();
        // The frame without its 4-byte size prefix, which counts as received bytes too.
        let bytes = (frame.len() + 4) as f64;
        m.sensors.response.record(bytes, now);
        self.sensors.response.record(bytes, now);
        let body = &frame[body_at..];
        match f.kind {
            InFlightKind::ApiVersions { version } => self.on_api_versions(body, version, ctx),
            InFlightKind::SaslHandshake => return self.on_sasl_handshake(body, f.version),
            InFlightKind::SaslAuthenticate => {
                return self.on_sasl_authenticate(body, f.version, ctx)
            }
            InFlightKind::Produce { batches, spans } => {
                let metrics = &self.shared.metrics;
                Metrics::add(&metrics.response_count, 1);
                let latency = f.sent_at.elapsed();
                Metrics::add(&metrics.request_latency_us, latency.as_micros() as u64);
                let latency_ms = latency.as_secs_f64() * 1000.0;
                metrics.sensors.request_latency.record(latency_ms, now);
                self.sensors.request_latency.record(latency_ms, now);
                match responses::decode_produce_response(body, f.version) {
                    Ok(resp) => {
                        let throttle = f64::from(resp.throttle_time_ms.max(0));
                        metrics.sensors.produce_throttle_time.record(throttle, now);
                        complete_produce(batches, &resp, spans);
                        self.note_throttle(resp.throttle_time_ms, f.version, 6);
                    }
                    Err(e) => {
                        // The request may have been written; answer its batches as lost, then
                        // rebuild the connection.
                        let reason = format!("undecodable produce response: {e}");
                        for b in batches {
                            b.answer(BatchResult::Lost(reason.clone()));
                        }
                        spans.fail(&reason);
                        return self.disconnect(reason);
                    }
                }
            }
            InFlightKind::Metadata { reply } => {
                let decoded = responses::decode_metadata_response(body, f.version);
                if let Ok(m) = &decoded {
                    self.note_throttle(m.throttle_time_ms, f.version, 6);
                }
                if !self.reply(reply, decoded) {
                    return;
                }
            }
            InFlightKind::InitProducerId { reply } => {
                let decoded = responses::decode_init_producer_id_response(body, f.version);
                if let Ok(r) = &decoded {
                    self.note_throttle(r.throttle_time_ms, f.version, 1);
                }
                if !self.reply(reply, decoded) {
                    return;
                }
            }
            InFlightKind::Transact { kind, reply } => {
                let decoded = kind.decode(body, f.version);
                if let Ok(answer) = &decoded {
                    let from = if kind == TxnKind::FindCoordinator {
                        2
                    } else {
                        1
                    };
                    self.note_throttle(answer.throttle_time_ms(), f.version, from);
                }
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
                .unwrap_or(0)
                // A garbage maximum could not be encoded, and the connection would wait for
                // an answer to a request never sent.
                .max(0);
            return self.send_api_versions(if v < version { v } else { 0 });
        }
        if let Some(code) = KafkaCode::from_code(resp.error_code) {
            // Any other refusal ends the connection, as Java's NetworkClient ends it: Kafka
            // answers INVALID_REQUEST with no APIs listed when it does not take the client's
            // software name or version. Going on, Herald reported "broker does not support
            // Metadata", or used a broker that had refused it.
            return self.disconnect(format!("the broker refused ApiVersions v{version}: {code}"));
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
                if let Some(t) = &self.shared.txn {
                    t.note_broker_level(v.transaction_version);
                }
                if self.shared.sasl.is_some() {
                    self.start_sasl(&resp, ctx);
                } else {
                    self.ready(ctx);
                }
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

    /// The connection may carry requests.
    fn ready(&mut self, ctx: &mut Context<Self>) {
        if self.state != State::Reauthenticating {
            let m = &self.shared.metrics;
            m.sensors.successful_authentication.record(1.0, m.now_ms());
        }
        self.state = State::Ready;
        self.backoff.reset();
        self.setup_backoff.reset();
        self.connect_started = None;
        self.pump(ctx);
    }

    /// Starts a SASL exchange: the first on a new connection (`Authenticating`, with the
    /// broker's ApiVersions answer) or a re-authentication (`Reauthenticating`).
    fn start_sasl(&mut self, api_versions: &ApiVersionsResponse, ctx: &mut Context<Self>) {
        let handshake = protocol::pick_version(protocol::SASL_HANDSHAKE, api_versions);
        let authenticate = protocol::pick_version(protocol::SASL_AUTHENTICATE, api_versions);
        let (handshake, authenticate) = match (handshake, authenticate) {
            (Ok(h), Ok(a)) => (h, a),
            (Err(e), _) | (_, Err(e)) => {
                return self.authentication_failed(format!(
                    "broker {} cannot authenticate with SASL: {e}",
                    self.address
                ))
            }
        };
        self.sasl_handshake_version = handshake;
        self.sasl_authenticate_version = authenticate;
        self.begin_sasl_exchange(State::Authenticating, ctx);
    }

    /// Makes the exchange's client (first fetching a token from the application's provider,
    /// in a future of its own, when it supplies them) and sends SaslHandshake. In `state`
    /// meanwhile, so nothing else is written.
    fn begin_sasl_exchange(&mut self, state: State, ctx: &mut Context<Self>) {
        let Some(settings) = self.shared.sasl.clone() else {
            return;
        };
        self.state = state;
        let handshake_version = self.sasl_handshake_version;
        let source = self.shared.tokens.clone();
        if let (true, Some(source)) = (settings.needs_application_token(), source) {
            let generation = self.generation;
            // Bounded by the connection's setup timeout: a first authentication is bounded
            // by it anyway (from the connect on, `tick`), and nothing else would end a
            // re-authentication whose provider never answers while new requests wait.
            // Timing out also drops the provider's future, which holds the token source's
            // lock for every other connection.
            let limit = self.setup_timeout;
            let fetch = async move {
                match tokio::time::timeout(limit, source.token()).await {
                    Ok(Ok(token)) => TokenWait::Token(token),
                    Ok(Err(e)) => TokenWait::Failed(e.to_string()),
                    Err(_) => TokenWait::TimedOut,
                }
            };
            ctx.spawn(fetch.into_actor(self).map(move |res, act, _| {
                if act.generation != generation || act.state != state {
                    return;
                }
                let _span = act.span.clone().entered();
                let token = match res {
                    TokenWait::Token(token) => Ok(token),
                    TokenWait::Failed(e) => Err(e),
                    TokenWait::TimedOut => {
                        let ms = limit.as_millis();
                        return act.disconnect(format!(
                            "OAUTHBEARER token for broker {}: the token provider did not answer \
                             within {ms} ms",
                            act.address
                        ));
                    }
                };
                match token.and_then(|t| settings.client_with_token(t).map_err(|e| e.to_string())) {
                    Ok(client) => act.send_sasl_handshake(client, handshake_version),
                    Err(e) => {
                        let reason = format!(
                            "OAUTHBEARER token for broker {}: the token provider failed: {e}",
                            act.address
                        );
                        act.authentication_failed(reason);
                    }
                }
            }));
            return;
        }
        match settings.client(SystemTime::now()) {
            Ok(client) => self.send_sasl_handshake(client, handshake_version),
            Err(e) => {
                let reason = format!(
                    "{} login for broker {}: {e}",
                    settings.mechanism, self.address
                );
                self.authentication_failed(reason)
            }
        }
    }

    fn send_sasl_handshake(&mut self, client: Box<dyn SaslClient>, handshake_version: i16) {
        tracing::debug!(node = self.node_id, mechanism = %client.mechanism(), "SASL handshake");
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(client.mechanism().name()));
        self.sasl = Some(client);
        self.write_request(
            protocol::SASL_HANDSHAKE,
            handshake_version,
            &request,
            InFlightKind::SaslHandshake,
        );
    }

    fn on_sasl_handshake(&mut self, body: &[u8], version: i16) {
        let resp = match responses::decode_sasl_handshake_response(body, version) {
            Ok(r) => r,
            Err(e) => return self.disconnect(format!("bad SaslHandshake response: {e}")),
        };
        let Some(client) = self.sasl.as_mut() else {
            return self.disconnect("SaslHandshake response without an exchange".into());
        };
        let mechanism = client.mechanism();
        self.handshake_answered = Some(Instant::now());
        if let Some(code) = KafkaCode::from_code(resp.error_code) {
            let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            let reason = format!(
                "broker {} refused SASL mechanism {mechanism}: {code} (it enables: {})",
                self.address,
                enabled.join(", ")
            );
            return self.authentication_failed(reason);
        }
        match client.initial_response() {
            Ok(bytes) => self.send_sasl_authenticate(bytes.into_vec()),
            Err(e) => {
                let reason = format!("{mechanism} with broker {}: {e}", self.address);
                self.authentication_failed(reason)
            }
        }
    }

    fn send_sasl_authenticate(&mut self, auth_bytes: Vec<u8>) {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(auth_bytes));
        self.write_request(
            protocol::SASL_AUTHENTICATE,
            self.sasl_authenticate_version,
            &request,
            InFlightKind::SaslAuthenticate,
        );
    }

    fn on_sasl_authenticate(&mut self, body: &[u8], version: i16, ctx: &mut Context<Self>) {
        let resp = match responses::decode_sasl_authenticate_response(body, version) {
            Ok(r) => r,
            Err(e) => return self.disconnect(format!("bad SaslAuthenticate response: {e}")),
        };
        let Some(client) = self.sasl.as_mut() else {
            return self.disconnect("SaslAuthenticate response without an exchange".into());
        };
        let step = if resp.error_code != 0 {
            Err(client.rejected(resp.error_code, resp.error_message.as_deref()))
        } else {
            client.step(&resp.auth_bytes)
        };
        match step {
            Ok(Step::Send(bytes)) => self.send_sasl_authenticate(bytes.into_vec()),
            Ok(Step::Done) => {
                let reauth = self.state == State::Reauthenticating;
                if reauth {
                    let m = &self.shared.metrics;
                    let now = m.now_ms();
                    m.sensors.successful_reauthentication.record(1.0, now);
                    if let Some(started) = self.reauth_started.take() {
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        m.sensors.reauthentication_latency.record(ms, now);
                    }
                }
                self.sasl = None;
                tracing::debug!(
                    node = self.node_id,
                    session_lifetime_ms = resp.session_lifetime_ms,
                    reauth,
                    "authenticated"
                );
                self.schedule_reauthentication(resp.session_lifetime_ms, ctx);
                self.ready(ctx);
            }
            Err(e) => {
                let reason = format!("broker {}: {e}", self.address);
                self.authentication_failed(reason)
            }
        }
    }

    /// Arms re-authentication at a random point between 85% and 95% of the session's
    /// lifetime, as the Java client does (KIP-368); nothing for a lifetime of 0. Never within
    /// [`REAUTH_INTERVAL`] of the last handshake: the broker would answer ILLEGAL_SASL_STATE
    /// (a session that short can only come from an OAUTHBEARER token about to expire, which
    /// the token source no longer hands out, see `token.rs`).
    fn schedule_reauthentication(&mut self, lifetime_ms: i64, ctx: &mut Context<Self>) {
        if lifetime_ms <= 0 {
            return;
        }
        let at = Duration::from_millis(lifetime_ms as u64).mul_f64(0.85 + 0.10 * fastrand::f64());
        let floor = self.handshake_answered.map_or(Duration::ZERO, |answered| {
            (answered + REAUTH_INTERVAL).saturating_duration_since(Instant::now())
        });
        self.reauth_at = Some(Instant::now() + at.max(floor));
        self.arm_reauthentication(ctx);
    }

    /// Arms the timer of the re-authentication due at `reauth_at`, if any (at once if that
    /// passed while no timer ran).
    fn arm_reauthentication(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.reauth_at else {
            return;
        };
        let generation = self.generation;
        ctx.run_later(
            at.saturating_duration_since(Instant::now()),
            move |act, ctx| {
                if act.generation != generation || act.state != State::Ready {
                    return;
                }
                // Nothing to send: re-authenticated only when something is (`pump`), as
                // Java's client does. A re-authentication now would count as use and keep
                // an idle connection open past connections.max.idle.ms for good.
                if act.in_flight.is_empty() && !act.has_work() {
                    tracing::debug!(
                        node = act.node_id,
                        "re-authentication due; waiting for work"
                    );
                    return;
                }
                act.begin_reauthentication(ctx);
                act.pump(ctx);
            },
        );
    }

    /// Whether a re-authentication is due (its time passed while nothing was to be sent).
    fn reauthentication_due(&self) -> bool {
        self.reauth_at.is_some_and(|at| at <= Instant::now())
    }

    fn begin_reauthentication(&mut self, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        tracing::debug!(node = self.node_id, "re-authenticating");
        self.reauth_at = None;
        self.reauth_started = Some(Instant::now());
        // The handshake requests queue behind those in flight, and time out as any
        // request does (at the head of the queue).
        self.begin_sasl_exchange(State::Reauthenticating, ctx);
    }

    /// The broker refused this client (SASL, or the TLS handshake): what waits for this
    /// connection fails now instead of retrying until its timeout, then the connection is
    /// dropped (and tried again, with backoff, when new work arrives).
    fn authentication_failed(&mut self, reason: String) {
        tracing::error!(node = self.node_id, address = %self.address, %reason, "authentication failed");
        let m = &self.shared.metrics;
        let failed = if self.state == State::Reauthenticating {
            &m.sensors.failed_reauthentication
        } else {
            &m.sensors.failed_authentication
        };
        failed.record(1.0, m.now_ms());
        self.reauth_started = None;
        let why: Arc<str> = Arc::from(reason.as_str());
        if let Some(source) = self.shared.tokens.clone() {
            // The broker may have refused the token: the next attempt asks for a new one.
            actix::spawn(async move { source.forget().await });
        }
        for b in self.pending.take_all() {
            b.answer(BatchResult::AuthenticationFailed(why.clone()));
        }
        for r in std::mem::take(&mut self.requests) {
            r.fail(RequestError::Authentication(why.clone()));
        }
        self.disconnect(reason);
    }

    fn tick(&mut self) {
        let timeout = self.shared.config.request_timeout;
        let now = Instant::now();
        if self.in_flight.head_timed_out(timeout, now) {
            let reason = format!("request timed out after {} ms", timeout.as_millis());
            return self.disconnect(reason);
        }
        if self.unwritten.timed_out(timeout, now) {
            let ms = timeout.as_millis();
            return self.disconnect(format!("request not written within {ms} ms"));
        }
        if matches!(self.state, State::Negotiating | State::Authenticating) {
            // As in Java: with SASL, the handshake (ApiVersions first) is part of setting up
            // the connection; without, ApiVersions is a request like any other.
            let limit = if self.shared.sasl.is_some() {
                self.setup_timeout
            } else {
                timeout
            };
            if let Some(started) = self.connect_started {
                if started.elapsed() > limit {
                    let ms = limit.as_millis();
                    self.disconnect(format!("{:?} timed out after {ms} ms", self.state));
                }
            }
        }
        let idle = self.shared.config.connections_max_idle;
        if self.state == State::Ready
            && self.closing.is_none()
            && !self.terminated
            && self.in_flight.is_empty()
            && !self.has_work()
            && self.last_used.elapsed() >= idle
        {
            self.close_idle(idle);
        }
    }

    /// Closes a socket nothing used for `connections.max.idle.ms`, as Java's selector does.
    /// Java's default, 9 minutes, is below the broker's own (10), so the client closes first
    /// and never writes a request into a socket the broker is dropping. Nothing was waiting
    /// on it: no backoff, no metadata refresh; the next request connects again.
    fn close_idle(&mut self, idle: Duration) {
        tracing::debug!(
            node = self.node_id,
            address = %self.address,
            idle_ms = idle.as_millis() as u64,
            "closing idle connection"
        );
        // Nothing is queued: the writer ends on its own, with a FIN (and TLS close_notify).
        if let Some(stop) = self.writer_stop.take() {
            stop.disarm();
        }
        self.drop_socket();
        self.backoff.reset();
        self.connect_not_before = None;
    }

    /// Stops the socket's tasks (the writer at once, wherever it is, unless its stop was
    /// disarmed) and forgets what was negotiated on it; a new generation, so
    /// that whatever its tasks and timers still send is ignored. What was in flight or
    /// waiting is the caller's to answer.
    fn drop_socket(&mut self) {
        if let Some(h) = self.reader.take() {
            h.abort();
        }
        // Stops the writer (the guard's drop), unless a graceful close disarmed it.
        self.writer_stop = None;
        self.unwritten = Unwritten::default();
        if self.writer.take().is_some() {
            self.closed_socket();
        }
        self.state = State::Idle;
        self.versions = None;
        // A re-authentication timer of this socket sees the new generation and does nothing.
        self.sasl = None;
        self.reauth_at = None;
        self.generation += 1;
    }
}

/// Whether `request` asks to bump an existing producer's epoch (KIP-360), which only
/// InitProducerId v3 and later can carry, of a broker whose `version` is below (before
/// Kafka 2.5): kafka-protocol would refuse to encode it.
fn bump_unsupported(version: i16, request: &InitProducerIdRequest) -> bool {
    version < 3 && (request.producer_id.0 != -1 || request.producer_epoch != -1)
}

/// Answers every batch of a produce request from its response.
fn complete_produce(
    batches: Vec<OutgoingBatch>,
    resp: &kafka_protocol::messages::ProduceResponse,
    mut spans: SendSpans,
) {
    for (i, b) in batches.into_iter().enumerate() {
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
                    message: broker_message(p.error_message.as_deref()),
                    leader: leader_hint(code, p, resp),
                    invalid_records: p
                        .record_errors
                        .iter()
                        .map(|e| InvalidRecord {
                            index: e.batch_index,
                            message: broker_message(e.batch_index_error_message.as_deref()),
                        })
                        .collect(),
                },
            },
        };
        spans.answer(i, span_answer(&result));
        b.answer(result);
    }
}

/// How a batch's `send` span ends (feature `opentelemetry`).
fn span_answer(result: &BatchResult) -> Answered {
    let failed = |error_type: &str, message: String| Answered::Failed {
        error_type: error_type.to_string(),
        message,
    };
    match result {
        BatchResult::Written { base_offset, .. } => Answered::Written {
            base_offset: *base_offset,
        },
        BatchResult::Broker { code, .. } => failed(&code.to_string(), code.to_string()),
        BatchResult::Lost(why) | BatchResult::NotSent(why) => failed("connection", why.clone()),
        BatchResult::AuthenticationFailed(why) => failed("authentication", why.to_string()),
    }
}

/// The new leader a refusal names (KIP-951): only with NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH, and only a leader the response actually names (id and epoch set; an
/// older broker or an unknown leader leaves them at -1).
fn leader_hint(
    code: KafkaCode,
    p: &kafka_protocol::messages::produce_response::PartitionProduceResponse,
    resp: &kafka_protocol::messages::ProduceResponse,
) -> Option<LeaderHint> {
    if !matches!(
        code,
        KafkaCode::NOT_LEADER_OR_FOLLOWER | KafkaCode::FENCED_LEADER_EPOCH
    ) {
        return None;
    }
    let l = &p.current_leader;
    if l.leader_id.0 < 0 || l.leader_epoch < 0 {
        return None;
    }
    let address = resp
        .node_endpoints
        .iter()
        .find(|n| n.node_id == l.leader_id)
        .map(|n| format!("{}:{}", n.host.as_str(), n.port));
    Some(LeaderHint {
        leader: l.leader_id.0,
        leader_epoch: l.leader_epoch,
        address,
    })
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
        if self.terminated {
            return;
        }
        tracing::warn!(node = self.node_id, "connection actor restarted");
        // The socket's reader and writer tasks are detached and survive, and so do the
        // in-flight queue and pending batches in `self`: the connection carries on. Only work
        // tied to the old context is gone: timers (the tick is re-armed in `started`, the
        // re-authentication's below, from `reauth_at`), a connect or a SASL token fetch in
        // progress, each started again, and a scheduled pump (run below). Batches the
        // panic dropped off the stack went back to their accumulators as lost (the
        // `OutgoingBatch` drop guard); those queued here are younger and go on, and a broker
        // that checks sequences refuses them until the retried one is in.
        self.connect_timer = None;
        self.throttle_timer = None;
        self.pump_scheduled = false;
        match self.state {
            State::Connecting => {
                self.state = State::Idle;
                self.generation += 1;
                self.connect_not_before = None;
            }
            // The session's re-authentication timer went with the old context.
            State::Ready => self.arm_reauthentication(ctx),
            // A SASL exchange without its client is one still fetching its token, in a future
            // that went with the old context. Left alone, a re-authentication would hold every
            // new request back until the broker closed the socket (a first authentication
            // until the setup timeout); it starts again instead.
            State::Authenticating | State::Reauthenticating if self.sasl.is_none() => {
                self.begin_sasl_exchange(self.state, ctx)
            }
            _ => {}
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

impl Handler<Transact> for Connection {
    type Result = ResponseFuture<Result<TxnAnswer, RequestError>>;

    fn handle(&mut self, msg: Transact, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(|reply| PendingRequest::Transact { call: msg.0, reply }, ctx)
    }
}

impl Handler<BrokerListed> for Connection {
    type Result = ();

    /// The broker registered again: the backoff built by refused attempts no longer says
    /// anything about it. Connects now if work waits (a connection already up or under way
    /// is left alone).
    fn handle(&mut self, _: BrokerListed, ctx: &mut Context<Self>) {
        if self.state != State::Idle {
            return;
        }
        self.backoff.reset();
        self.connect_not_before = None;
        if let Some(timer) = self.connect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.ensure_connected(ctx);
    }
}

impl Handler<Shutdown> for Connection {
    type Result = ResponseActFuture<Self, ()>;

    /// Graceful close: stop writing (FIN once the writer has drained its queue), keep reading
    /// until the broker closes its side or `CLOSE_LINGER` passes, then drop everything (a
    /// writer still blocked on a broker that stopped reading is stopped then). A broker
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
        let had_socket = self.writer.take().is_some();
        if had_socket {
            self.closed_socket();
        }
        if had_socket && self.reader.is_some() {
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

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if crash == Crash::PanicInSocketTask && self.reader.is_some() {
            self.reader_crash.notify_one();
            return;
        }
        let shared = self.shared.clone();
        crash.apply(ActorKind::Connection, &shared.victims, ctx);
    }
}

impl Handler<SocketTaskPanicked> for Connection {
    type Result = ();

    fn handle(&mut self, msg: SocketTaskPanicked, _: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        tracing::error!(
            node = self.node_id,
            task = msg.task,
            panic = %msg.message,
            "the connection's socket task panicked; dropping the socket"
        );
        let supervision = self.shared.supervision.clone();
        let broken = supervision.task_panicked(ActorKind::Connection, &msg.message, &self.panics);
        if msg.generation == self.generation {
            let reason = match broken {
                Some(why) => why.to_string(),
                None => format!(
                    "the connection's {} task panicked: {}",
                    msg.task, msg.message
                ),
            };
            self.disconnect(reason);
        }
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
            Some(Err(ReadError::Io(e)))
                if matches!(self.state, State::Negotiating | State::Authenticating)
                    && transport::tls_failure(&e).is_some() =>
            {
                // A TLS alert before the connection was ever ready, e.g. the broker refusing
                // our (missing) client certificate, which TLS 1.3 reports only after the
                // client's side of the handshake. (Later, a TLS error is a lost connection.)
                let reason = transport::tls_failure(&e).unwrap_or_default();
                self.authentication_failed(format!("TLS with broker {}: {reason}", self.address))
            }
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse,
    };
    use kafka_protocol::messages::BrokerId;

    use super::*;

    fn response(leader: i32, epoch: i32) -> (PartitionProduceResponse, ProduceResponse) {
        let p = PartitionProduceResponse::default()
            .with_error_code(KafkaCode::NOT_LEADER_OR_FOLLOWER.code())
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch),
            );
        let resp = ProduceResponse::default().with_node_endpoints(vec![NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(StrBytes::from_static_str("b2"))
            .with_port(9093)]);
        (p, resp)
    }

    #[test]
    fn a_refusal_names_the_new_leader_and_its_endpoint() {
        let (p, resp) = response(2, 7);
        assert_eq!(
            leader_hint(KafkaCode::NOT_LEADER_OR_FOLLOWER, &p, &resp),
            Some(LeaderHint {
                leader: 2,
                leader_epoch: 7,
                address: Some("b2:9093".into()),
            })
        );
        assert_eq!(
            leader_hint(KafkaCode::FENCED_LEADER_EPOCH, &p, &resp).map(|h| h.leader),
            Some(2)
        );
        // A leader without an endpoint in the response: known by id only.
        let (p, resp) = response(3, 7);
        assert_eq!(
            leader_hint(KafkaCode::NOT_LEADER_OR_FOLLOWER, &p, &resp).and_then(|h| h.address),
            None
        );
    }

    #[test]
    fn no_hint_without_a_named_leader_or_for_other_errors() {
        let (p, resp) = response(-1, -1);
        assert_eq!(
            leader_hint(KafkaCode::NOT_LEADER_OR_FOLLOWER, &p, &resp),
            None
        );
        let (p, resp) = response(2, 7);
        assert_eq!(leader_hint(KafkaCode::REQUEST_TIMED_OUT, &p, &resp), None);
    }
}
