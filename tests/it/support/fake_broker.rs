//! Herald's own scripted fake broker: a TCP server that speaks just enough of the Kafka wire
//! protocol for tests to decide, request by request, what a "broker" answers. It is not a
//! Kafka broker and stores nothing; it exists for what real brokers (and librdkafka's mock
//! cluster) cannot do: hand a test the exact bytes a client sent, and misbehave on cue
//! (garbage frames, wrong correlation ids, delays, connections cut mid-frame).
//!
//! ```text
//!  client ──frame──▶ read size + header ──▶ RequestContext ──▶ handler(&ctx) -> Vec<Action>
//!         ◀──────── Respond / Raw / Delay / Close, in order ◀───────────────┘
//! ```
//!
//! - The broker runs on its own thread with its own single-threaded tokio runtime, so it works
//!   under any test runtime (actix, tokio with paused time, none) and its `Delay`s are real
//!   time. Dropping the [`FakeBroker`] stops it and closes every connection.
//! - Requests on one connection are handled one at a time, in order, as a real broker does
//!   (it mutes a connection until the response to its current request is written).
//! - Request headers are parsed with kafka-protocol (input from the clients under test is
//!   trusted); `RequestContext::decode` decodes a body the same way.
//! - Every request is recorded before the handler sees it: [`FakeBroker::requests`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, InitProducerIdResponse, ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Largest request frame the fake broker reads; a bigger size prefix closes the connection.
pub const MAX_REQUEST_SIZE: usize = 100 << 20;

/// One request as the fake broker received it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Request API key (`ApiKey as i16`).
    pub api_key: i16,
    /// Request API version.
    pub api_version: i16,
    /// Correlation id from the request header.
    pub correlation_id: i32,
    /// Client id from the request header.
    pub client_id: Option<String>,
    /// The request body: everything after the request header.
    pub body: Bytes,
    /// Which connection it came on: 0 for the first accepted, counting up.
    pub connection: usize,
    /// Its position on that connection: 0 for the connection's first request.
    pub request_index: usize,
    /// The fake broker's own address (what a Metadata response must advertise).
    pub broker_addr: SocketAddr,
}

impl RequestContext {
    /// The API, if kafka-protocol knows the key.
    pub fn api(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }

    /// Decodes the body as `T` at the request's version. Panics on failure: the clients under
    /// test are trusted to send valid requests, and a failure is a test failure.
    pub fn decode<T: Decodable>(&self) -> T {
        let mut body = self.body.clone();
        T::decode(&mut body, self.api_version).unwrap_or_else(|e| {
            panic!(
                "fake broker: cannot decode {} v{} body: {e:#}",
                std::any::type_name::<T>(),
                self.api_version
            )
        })
    }
}

/// What the fake broker does in answer to a request; a handler returns a list, carried out
/// in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Sends this response body, framed and behind the right response header for the
    /// request's API and version (v0, or flexible v1; ApiVersions always v0), with the
    /// request's correlation id.
    Respond(Bytes),
    /// As `Respond`, with another correlation id.
    RespondWithCorrelation(i32, Bytes),
    /// Writes these bytes as they are: no size prefix, no header.
    Raw(Bytes),
    /// Closes the connection; later actions are not carried out.
    Close,
    /// Waits (real time) before the next action. The connection reads nothing meanwhile.
    Delay(Duration),
    /// Does nothing: the request stays unanswered.
    NoResponse,
}

type Handler = dyn Fn(&RequestContext) -> Vec<Action> + Send + Sync + 'static;

/// A running fake broker; dropping it shuts it down.
pub struct FakeBroker {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RequestContext>>>,
    /// What the handler panicked with: its task is not the test's, so such a panic would
    /// only close a connection. The broker fails the test when it is dropped.
    panics: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeBroker {
    /// Binds a loopback port out of the ephemeral range (`PortBand`) and serves every
    /// connection with `handler`.
    pub fn start(
        handler: impl Fn(&RequestContext) -> Vec<Action> + Send + Sync + 'static,
    ) -> FakeBroker {
        FakeBroker::start_with_receive_buffer(None, handler)
    }

    /// As [`FakeBroker::start`], with each connection's receive buffer (SO_RCVBUF) fixed at
    /// `receive_buffer` bytes (`None`: the system's, which Linux grows to megabytes as a
    /// connection is read), so that a test knows how little a connection the broker stopped
    /// reading holds.
    pub fn start_with_receive_buffer(
        receive_buffer: Option<u32>,
        handler: impl Fn(&RequestContext) -> Vec<Action> + Send + Sync + 'static,
    ) -> FakeBroker {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let panics = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let panicked = panics.clone();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-broker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake broker runtime");
                rt.block_on(async move {
                    // Set before listening: accepted connections inherit it, and the window
                    // scale offered in their SYN-ACK follows it.
                    // Out of the ephemeral range, where a mock cluster's broker brought back
                    // up must find its old port free (`PortBand`).
                    let listener = crate::support::PortBand::Listeners
                        .bind(1, |port| {
                            let socket = TcpSocket::new_v4().expect("socket");
                            if let Some(n) = receive_buffer {
                                socket.set_recv_buffer_size(n).expect("SO_RCVBUF");
                            }
                            socket.bind(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
                            socket.listen(128).ok()
                        })
                        .pop()
                        .expect("a listener");
                    let addr = listener.local_addr().expect("local address");
                    bound.send(addr).expect("report the address");
                    serve(listener, addr, handler, recorded, panicked, stop).await
                });
                // Dropping the runtime drops every connection task and its socket.
            })
            .expect("spawn fake broker thread");
        let addr = addr.recv().expect("fake broker bound");
        FakeBroker {
            addr,
            requests,
            panics,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestContext> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests received so far for one API.
    pub fn requests_for(&self, api: ApiKey) -> Vec<RequestContext> {
        self.requests()
            .into_iter()
            .filter(|r| r.api_key == api as i16)
            .collect()
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let panics = std::mem::take(&mut *self.panics.lock().unwrap_or_else(|e| e.into_inner()));
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("the fake broker's handler panicked: {panics:?}");
        }
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    handler: Arc<Handler>,
    requests: Arc<Mutex<Vec<RequestContext>>>,
    panics: Arc<Mutex<Vec<String>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connection = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    addr,
                    connection,
                    handler.clone(),
                    requests.clone(),
                    panics.clone(),
                ));
                connection += 1;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    addr: SocketAddr,
    connection: usize,
    handler: Arc<Handler>,
    requests: Arc<Mutex<Vec<RequestContext>>>,
    panics: Arc<Mutex<Vec<String>>>,
) {
    for request_index in 0.. {
        let Some(frame) = read_frame(&mut stream).await else {
            return;
        };
        let Some(ctx) = parse_request(frame, addr, connection, request_index) else {
            return;
        };
        requests.lock().unwrap().push(ctx.clone());
        let actions = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&ctx))) {
            Ok(actions) => actions,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                let request = format!("api key {} v{}", ctx.api_key, ctx.api_version);
                panics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{request}: {message}"));
                return;
            }
        };
        for action in actions {
            let written = match action {
                Action::Respond(body) => {
                    stream
                        .write_all(&frame_response(&ctx, ctx.correlation_id, &body))
                        .await
                }
                Action::RespondWithCorrelation(id, body) => {
                    stream.write_all(&frame_response(&ctx, id, &body)).await
                }
                Action::Raw(bytes) => stream.write_all(&bytes).await,
                Action::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
                Action::Delay(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
                Action::NoResponse => Ok(()),
            };
            if written.is_err() {
                return;
            }
        }
    }
}

/// Reads one size-prefixed frame; `None` when the peer closed or sent an impossible size.
async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let size = stream.read_i32().await.ok()?;
    if size < 0 || size as usize > MAX_REQUEST_SIZE {
        return None;
    }
    let mut frame = vec![0u8; size as usize];
    stream.read_exact(&mut frame).await.ok()?;
    Some(frame.into())
}

fn parse_request(
    mut frame: Bytes,
    broker_addr: SocketAddr,
    connection: usize,
    request_index: usize,
) -> Option<RequestContext> {
    if frame.len() < 8 {
        return None;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    // Unknown APIs are assumed to use header v1 (key, version, correlation id, client id).
    let header_version = ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(api_version))
        .unwrap_or(1);
    let header = RequestHeader::decode(&mut frame, header_version).ok()?;
    Some(RequestContext {
        api_key,
        api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body: frame,
        connection,
        request_index,
        broker_addr,
    })
}

/// Size prefix, response header (v0 or v1 per the request's API and version), body: a response
/// frame as the broker writes one, for tests that write raw (and possibly wrong) frames.
pub fn frame_response(ctx: &RequestContext, correlation_id: i32, body: &[u8]) -> Bytes {
    let header_version = ctx
        .api()
        .map(|k| k.response_header_version(ctx.api_version))
        .unwrap_or(0);
    let mut header = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut header, header_version)
        .expect("encode response header");
    let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
    out.put_i32((header.len() + body.len()) as i32);
    out.put_slice(&header);
    out.put_slice(body);
    out.freeze()
}

/// Encodes a kafka-protocol message (a response body) at `version`.
pub fn encode<T: Encodable>(message: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    message
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode {} v{version}: {e:#}", std::any::type_name::<T>()));
    buf.freeze()
}

/// What [`api_versions_response`] advertises: Produce 3..=9 (3 is Kafka 4.0's floor, 9 the
/// first flexible version; 10+ add fields we do not fill in), Metadata 1..=9, ApiVersions
/// 0..=3, InitProducerId 0..=4.
///
/// Fetch 4..=12 and FindCoordinator 0..=3 are advertised but not served
/// ([`standard_handler`] closes the connection on them): librdkafka derives its features from
/// the advertised APIs and, without them, writes v0 message sets (MsgVer2 needs Fetch 4+) and
/// refuses zstd (Fetch 10+) and lz4 (FindCoordinator).
pub const ADVERTISED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
];

/// An ApiVersions response body advertising [`ADVERTISED`].
pub fn api_versions_response(version: i16) -> Bytes {
    api_versions_response_with(version, ADVERTISED)
}

/// An ApiVersions response body advertising `apis`. A request version above 3 is answered
/// as a broker does: v0 with UNSUPPORTED_VERSION, so the client retries with one we know.
pub fn api_versions_response_with(version: i16, apis: &[(ApiKey, i16, i16)]) -> Bytes {
    let (version, error_code) = if version > 3 { (0, 35) } else { (version, 0) };
    let response = ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            apis.iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        );
    encode(&response, version)
}

/// A Metadata response body naming one broker (`node_id` at `host:port`) as controller and
/// leader (with itself the only replica) of every partition of `topics`: `(name,
/// partition count)`.
pub fn metadata_response(
    version: i16,
    node_id: i32,
    host: &str,
    port: u16,
    topics: &[(&str, i32)],
) -> Bytes {
    let topics: Vec<(&str, Vec<i32>)> = topics
        .iter()
        .map(|&(name, partitions)| (name, vec![node_id; partitions.max(0) as usize]))
        .collect();
    metadata_response_with_leaders(version, &[(node_id, host, port)], &topics)
}

/// A Metadata response body naming `brokers` (`(node id, host, port)`; the first is the
/// controller) and, for each of `topics`, the leader of each partition (`leaders[p]`, also
/// its only replica).
pub fn metadata_response_with_leaders(
    version: i16,
    brokers: &[(i32, &str, u16)],
    topics: &[(&str, Vec<i32>)],
) -> Bytes {
    let response = MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|&(node_id, host, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(node_id))
                        .with_host(StrBytes::from_string(host.to_owned()))
                        .with_port(port.into())
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_static_str("herald-fake-broker")))
        .with_controller_id(BrokerId(brokers.first().map_or(-1, |b| b.0)))
        .with_topics(
            topics
                .iter()
                .map(|(name, leaders)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
                        .with_partitions(
                            leaders
                                .iter()
                                .enumerate()
                                .map(|(p, &leader)| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p as i32)
                                        .with_leader_id(BrokerId(leader))
                                        .with_leader_epoch(0)
                                        .with_replica_nodes(vec![BrokerId(leader)])
                                        .with_isr_nodes(vec![BrokerId(leader)])
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    encode(&response, version)
}

/// A Produce response body acknowledging `(topic, partition, base_offset)` without error.
pub fn produce_response(version: i16, partitions: &[(&str, i32, i64)]) -> Bytes {
    produce_response_with_errors(
        version,
        &partitions
            .iter()
            .map(|&(t, p, o)| (t, p, o, 0))
            .collect::<Vec<_>>(),
    )
}

/// A Produce response body: `(topic, partition, base_offset, error_code)`.
pub fn produce_response_with_errors(version: i16, partitions: &[(&str, i32, i64, i16)]) -> Bytes {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for &(topic, partition, base_offset, error_code) in partitions {
        let name = TopicName(StrBytes::from_string(topic.to_owned()));
        let index = match topics.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                topics.push(TopicProduceResponse::default().with_name(name));
                topics.len() - 1
            }
        };
        topics[index].partition_responses.push(
            PartitionProduceResponse::default()
                .with_index(partition)
                .with_error_code(error_code)
                .with_base_offset(if error_code == 0 { base_offset } else { -1 })
                .with_log_append_time_ms(-1)
                .with_log_start_offset(0),
        );
    }
    encode(&ProduceResponse::default().with_responses(topics), version)
}

/// An InitProducerId response body: `error_code` (0 for none), and the producer id and epoch
/// handed out (`-1`/`-1` with an error, as a broker answers).
pub fn init_producer_id_response(
    version: i16,
    error_code: i16,
    producer_id: i64,
    producer_epoch: i16,
) -> Bytes {
    let (producer_id, producer_epoch) = if error_code == 0 {
        (producer_id, producer_epoch)
    } else {
        (-1, -1)
    };
    let response = InitProducerIdResponse::default()
        .with_error_code(error_code)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch);
    encode(&response, version)
}

/// The record batches of one partition of a Produce request.
#[derive(Debug, Clone)]
pub struct ProducedPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The batches, decoded one by one with `herald::batch::decode::decode_batch`; `Err` when
    /// the records do not decode (what a broker refuses with CORRUPT_MESSAGE).
    pub batches: Result<Vec<herald::batch::decode::DecodedBatch>, String>,
}

/// Decodes every partition's record batches of a Produce request (`ctx` must be one).
pub fn produce_request_batches(ctx: &RequestContext) -> Vec<ProducedPartition> {
    let request: ProduceRequest = ctx.decode();
    let mut out = Vec::new();
    for topic in &request.topic_data {
        for partition in &topic.partition_data {
            let records = partition.records.clone().unwrap_or_default();
            let mut rest: &[u8] = &records;
            let mut batches = Ok(Vec::new());
            while !rest.is_empty() {
                match herald::batch::decode::decode_batch(rest) {
                    Ok((batch, used)) => {
                        if let Ok(b) = batches.as_mut() {
                            b.push(batch);
                        }
                        rest = &rest[used..];
                    }
                    Err(e) => {
                        batches = Err(e.to_string());
                        break;
                    }
                }
            }
            out.push(ProducedPartition {
                topic: topic.name.to_string(),
                partition: partition.index,
                batches,
            });
        }
    }
    out
}

/// A handler that behaves like a healthy single broker (node id 1) hosting `topics`:
/// answers ApiVersions, Metadata (always all of `topics`) and Produce. Offsets count up per
/// partition from 0 by the records each batch holds (decoded with Herald's own decoder; a
/// batch that does not decode is refused with CORRUPT_MESSAGE, as a broker does). Any other
/// request closes the connection.
pub fn standard_handler(
    topics: &[(&str, i32)],
) -> impl Fn(&RequestContext) -> Vec<Action> + Send + Sync + 'static {
    let topics: Vec<(String, i32)> = topics.iter().map(|&(t, p)| (t.to_owned(), p)).collect();
    let next_offsets: Mutex<HashMap<(String, i32), i64>> = Mutex::new(HashMap::new());
    move |ctx| match ctx.api() {
        Some(ApiKey::ApiVersions) => vec![Action::Respond(api_versions_response(ctx.api_version))],
        Some(ApiKey::Metadata) => {
            let topics: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
            vec![Action::Respond(metadata_response(
                ctx.api_version,
                1,
                &ctx.broker_addr.ip().to_string(),
                ctx.broker_addr.port(),
                &topics,
            ))]
        }
        Some(ApiKey::Produce) => {
            let request: ProduceRequest = ctx.decode();
            let mut acks = Vec::new();
            let mut offsets = next_offsets.lock().unwrap();
            for topic in &request.topic_data {
                for partition in &topic.partition_data {
                    let records = partition.records.clone().unwrap_or_default();
                    let key = (topic.name.to_string(), partition.index);
                    match herald::batch::decode::decode_batches(&records) {
                        Ok(batches) => {
                            let count: i64 = batches.iter().map(|b| b.records.len() as i64).sum();
                            let next = offsets.entry(key.clone()).or_insert(0);
                            acks.push((key.0, key.1, *next, 0));
                            *next += count;
                        }
                        Err(_) => acks.push((key.0, key.1, -1, 2)),
                    }
                }
            }
            if request.acks == 0 {
                return vec![Action::NoResponse];
            }
            let acks: Vec<(&str, i32, i64, i16)> = acks
                .iter()
                .map(|(t, p, o, e)| (t.as_str(), *p, *o, *e))
                .collect();
            vec![Action::Respond(produce_response_with_errors(
                ctx.api_version,
                &acks,
            ))]
        }
        _ => vec![Action::Close],
    }
}
