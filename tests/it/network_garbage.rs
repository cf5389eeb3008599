//! Network garbage: Herald against a broker that misbehaves on the wire, scripted with our own
//! fake broker (`support/fake_broker.rs`). Each test makes the broker misbehave for one request
//! (a truncated frame, a wrong correlation id, an absurd size prefix, an undecodable body, an
//! unknown error code, a connection cut mid-response, an unsolicited frame, silence, a garbage
//! Metadata response, an absurd partition index in one, a connection cut in its handshake,
//! a broker too old to speak to),
//! then behave, and checks that Herald
//!
//! - neither panics nor hangs: every record gets exactly one outcome (outcomes are delivered
//!   with `reply_to` and counted per tag, and counting goes on for a while after the last one
//!   arrived, so a second answer for a record would be seen);
//! - drops the connection and builds a new one (the next requests arrive on another TCP
//!   connection of the fake broker, and `connection_creation_total` grows);
//! - retries the batches that were in flight on it (`record_retry_total`), so that every record
//!   ends acknowledged, at an offset where the broker really holds that very record;
//! - duplicates only what the protocol cannot avoid without idempotence: the records of a
//!   request that the broker appended and then answered with garbage (written, answer lost)
//!   are held twice, every other record exactly once.
//!
//! The fake broker does not implement idempotence (`standard_handler` closes the connection
//! on InitProducerId), so the producer runs with `enable.idempotence=false` and `acks=1`.
//!
//! Broker model ([`Scripted`], around `standard_handler`):
//! - ApiVersions and Metadata are answered by `standard_handler`;
//! - Produce is answered here: each partition's records are appended to a per-partition log of
//!   record tags, and the ack carries the offset at which they were appended;
//! - the one faulty request gets the case's actions instead; whether the broker appended its
//!   records first is the case's choice ([`Fault::stores`]);
//! - after the fault the connection normally goes silent ([`Fault::mute`]): later requests on
//!   it are read and logged, but neither appended nor answered, as a Kafka broker that stopped
//!   processing a connection. A client that did not drop the connection on its own would then
//!   recover only through `request.timeout.ms`, which these tests set to 5 s and check was not
//!   needed (the whole burst must complete sooner).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use herald::protocol::responses;
use herald::{ErrorKind, KafkaCode, ProduceError};
use herald_actors::{Delivered, MetricsSnapshot, Outcome, Produce, Producer};
use kafka_protocol::messages::{ApiKey, MetadataResponse, ProduceRequest};
use kafka_protocol::protocol::Decodable;

use crate::support::fake_broker::{self, Action, FakeBroker, RequestContext};
use crate::support::init_tracing;
use crate::support::outcomes::{
    assert_one_outcome_each, one_outcome, settle_and_close, Outcomes, SETTLE,
};
use crate::support::producer::start_producer;

const TOPIC: &str = "network-garbage";
const PARTITIONS: i32 = 2;
/// Records sent after the warm-up record (tag 0); their tags are `1..=BURST`.
const BURST: u64 = 40;
/// `request.timeout.ms` of the garbage cases: far longer than recovery should take, so a test
/// that needed it fails the elapsed-time check.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(5000);
/// After the last expected outcome, how long to keep counting for a second answer.
/// The burst is sent in this many waves of `BURST / WAVES` records, [`WAVE_GAP`] apart, so
/// that it makes several Produce requests.
const WAVES: u64 = 4;
const WAVE_GAP: Duration = Duration::from_millis(10);
/// How long the broker holds the faulty Produce request before misbehaving: the waves sent
/// meanwhile are in flight behind it when the connection breaks.
const HOLD: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------------------------
// The scripted broker.

/// What the broker knows about a request when deciding whether it is the faulty one.
struct Probe<'a> {
    /// Its position among the requests of its API (over all connections, muted ones excepted),
    /// from 0.
    nth: usize,
    /// For Produce: the tags of the records of each partition it carries.
    partitions: &'a [(i32, Vec<u64>)],
    /// How many requests were faulty before it.
    faults: usize,
}

type When = Box<dyn Fn(&Probe<'_>) -> bool + Send + Sync>;
type Actions = Box<dyn Fn(&RequestContext, Bytes) -> Vec<Action> + Send + Sync>;

/// How the broker misbehaves.
struct Fault {
    /// The API of the faulty request.
    api: ApiKey,
    /// Whether this request (of `api`) is faulty.
    when: When,
    /// Produce only: whether the broker appends the request's records before misbehaving.
    stores: bool,
    /// Produce only: this partition is refused with this error code (and not appended).
    refuse: Option<(i32, i16)>,
    /// Whether the connection goes silent after the faulty request.
    mute: bool,
    /// What the broker does instead of answering; gets the body a healthy broker would have
    /// sent (for Produce: acking what was appended).
    actions: Actions,
}

impl Fault {
    /// The `nth` (from 0) Produce request is held for [`HOLD`] (so that the batches sent
    /// after it are in flight behind it on the same connection), then answered with
    /// `actions`, its records appended first if `stores`; then its connection goes silent.
    fn produce(
        nth: usize,
        stores: bool,
        actions: impl Fn(&RequestContext, Bytes) -> Vec<Action> + Send + Sync + 'static,
    ) -> Fault {
        Fault {
            api: ApiKey::Produce,
            when: Box::new(move |p| p.nth == nth && p.faults == 0),
            stores,
            refuse: None,
            mute: true,
            actions: Box::new(move |ctx, valid| {
                let mut out = vec![Action::Delay(HOLD)];
                out.extend(actions(ctx, valid));
                out
            }),
        }
    }

    /// Every request of `api` that `when` picks gets `actions` instead of an answer (nothing
    /// appended); then its connection goes silent.
    fn muting(
        api: ApiKey,
        when: impl Fn(&Probe<'_>) -> bool + Send + Sync + 'static,
        actions: impl Fn(&RequestContext, Bytes) -> Vec<Action> + Send + Sync + 'static,
    ) -> Fault {
        Fault {
            api,
            when: Box::new(when),
            stores: false,
            refuse: None,
            mute: true,
            actions: Box::new(actions),
        }
    }
}

/// One request as the scripted broker saw it.
#[derive(Debug, Clone)]
struct Seen {
    api_key: i16,
    connection: usize,
    /// The faulty request.
    faulty: bool,
    /// Arrived on a muted connection (read, neither appended nor answered).
    muted: bool,
    /// Produce: tags per partition.
    partitions: Vec<(i32, Vec<u64>)>,
}

#[derive(Debug, Default)]
struct BrokerState {
    /// Per partition, the tag of the record at each offset.
    log: BTreeMap<i32, Vec<u64>>,
    seen: Vec<Seen>,
    counts: HashMap<i16, usize>,
    muted: HashSet<usize>,
}

/// The fake broker with a [`Fault`] and a record log.
struct Scripted {
    fake: FakeBroker,
    state: Arc<Mutex<BrokerState>>,
}

impl Scripted {
    fn start(fault: Fault) -> Scripted {
        let state = Arc::new(Mutex::new(BrokerState::default()));
        let st = state.clone();
        let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
        let fake = FakeBroker::start(move |ctx| {
            let mut s = st.lock().unwrap();
            let api = ctx.api();
            let partitions = if api == Some(ApiKey::Produce) {
                produce_tags(ctx)
            } else {
                Vec::new()
            };
            if s.muted.contains(&ctx.connection) {
                s.seen.push(Seen {
                    api_key: ctx.api_key,
                    connection: ctx.connection,
                    faulty: false,
                    muted: true,
                    partitions,
                });
                return vec![Action::NoResponse];
            }
            let nth = {
                let c = s.counts.entry(ctx.api_key).or_default();
                *c += 1;
                *c - 1
            };
            let faults = s.seen.iter().filter(|x| x.faulty).count();
            let faulty = api == Some(fault.api)
                && (fault.when)(&Probe {
                    nth,
                    partitions: &partitions,
                    faults,
                });
            s.seen.push(Seen {
                api_key: ctx.api_key,
                connection: ctx.connection,
                faulty,
                muted: false,
                partitions: partitions.clone(),
            });
            let valid = if api == Some(ApiKey::Produce) {
                let store = !faulty || fault.stores;
                let refuse = if faulty { fault.refuse } else { None };
                let mut acks = Vec::new();
                for (p, tags) in &partitions {
                    match refuse {
                        Some((rp, code)) if rp == *p => acks.push((TOPIC, *p, -1, code)),
                        _ if store => {
                            let log = s.log.entry(*p).or_default();
                            acks.push((TOPIC, *p, log.len() as i64, 0));
                            log.extend(tags);
                        }
                        _ => acks.push((TOPIC, *p, -1, 0)),
                    }
                }
                fake_broker::produce_response_with_errors(ctx.api_version, &acks)
            } else {
                match standard(ctx).as_slice() {
                    [Action::Respond(body)] => body.clone(),
                    other => return other.to_vec(),
                }
            };
            if !faulty {
                return vec![Action::Respond(valid)];
            }
            if fault.mute {
                s.muted.insert(ctx.connection);
            }
            (fault.actions)(ctx, valid)
        });
        Scripted { fake, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn log(&self) -> BTreeMap<i32, Vec<u64>> {
        self.state.lock().unwrap().log.clone()
    }

    /// The faulty request; panics unless there was exactly one.
    fn faulty(&self) -> Seen {
        let faulty: Vec<Seen> = self.seen().into_iter().filter(|s| s.faulty).collect();
        assert_eq!(faulty.len(), 1, "exactly one faulty request: {faulty:?}");
        faulty.into_iter().next().unwrap()
    }
}

/// The record tags of a Produce request, per partition.
fn produce_tags(ctx: &RequestContext) -> Vec<(i32, Vec<u64>)> {
    let request: ProduceRequest = ctx.decode();
    assert_eq!(request.acks, 1, "the tests produce with acks=1");
    let mut out = Vec::new();
    for topic in &request.topic_data {
        assert_eq!(&*topic.name.0, TOPIC);
        for partition in &topic.partition_data {
            let records = partition.records.clone().unwrap_or_default();
            let batches =
                herald::batch::decode::decode_batches(&records).expect("Herald's batches decode");
            let tags = batches
                .iter()
                .flat_map(|b| b.records.iter())
                .map(|r| tag_of(r.value.as_deref().expect("records have values")))
                .collect();
            out.push((partition.index, tags));
        }
    }
    out
}

fn value_of(tag: u64) -> String {
    format!("rec-{tag}")
}

fn tag_of(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.strip_prefix("rec-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("unexpected record value {value:?}"))
}

/// `len` pseudo-random bytes (fixed seeds, so every run sends the same bytes): those of the
/// first seed that `undecodable` accepts. Random bytes can happen to decode (a decoder ignores
/// trailing bytes, and a short count prefix makes a valid empty response), which would turn
/// the case into another one; the predicate rules that out.
fn garbage(len: usize, undecodable: impl Fn(&[u8]) -> bool) -> Bytes {
    (1u64..10_000)
        .map(|seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()
        })
        .find(|b| undecodable(b))
        .expect("some seed gives undecodable bytes")
        .into()
}

// ---------------------------------------------------------------------------------------------
// The client side.

struct Client {
    producer: Producer,
    outcomes: Outcomes,
    inbox: Recipient<Delivered>,
}

/// What a run ended with.
struct Finished {
    /// Every outcome received, by tag.
    outcomes: BTreeMap<u64, Vec<Outcome>>,
    metrics: MetricsSnapshot,
}

impl Client {
    /// A producer on `fake` with the tests' defaults, overridden by `extra`.
    fn start(fake: &FakeBroker, extra: &[(&'static str, &'static str)]) -> Client {
        let producer = start_producer(
            &fake.bootstrap(),
            &[
                ("enable.idempotence", "false"),
                ("acks", "1"),
                // Java's pipelining: the cases hold a request so that younger batches of the
                // same partitions are in flight behind it on its connection, and check that
                // they are sent again too when the connection is dropped. (With the default,
                // one batch per partition in flight, only other partitions' batches can be.)
                ("max.in.flight.batches.per.partition", "5"),
                ("linger.ms", "0"),
                ("retry.backoff.ms", "20"),
                ("reconnect.backoff.ms", "20"),
                ("request.timeout.ms", "5000"),
                ("delivery.timeout.ms", "8000"),
                ("max.block.ms", "5000"),
            ],
            extra,
        );
        let (outcomes, inbox) = Outcomes::start();
        Client {
            producer,
            outcomes,
            inbox,
        }
    }

    /// Sends records with these tags (partition = tag % PARTITIONS) without waiting.
    fn send(&self, tags: impl IntoIterator<Item = u64>) {
        for tag in tags {
            self.producer.router().do_send(
                Produce::new(TOPIC)
                    .value(value_of(tag))
                    .partition((tag % PARTITIONS as u64) as i32)
                    .tag(tag)
                    .reply_to(self.inbox.clone()),
            );
        }
    }

    /// Sends records `1..=BURST` in [`WAVES`] waves.
    async fn send_waves(&self) {
        let per_wave = BURST / WAVES;
        for w in 0..WAVES {
            self.send(1 + w * per_wave..=(w + 1) * per_wave);
            tokio::time::sleep(WAVE_GAP).await;
        }
    }

    /// Sends records `0..n` at once, waits up to `within` for their outcomes and finishes; checks
    /// that every record was answered, once. Returns the run and how long the answers took.
    async fn send_all(self, n: u64, within: Duration) -> (Finished, Duration) {
        let start = Instant::now();
        self.send(0..n);
        let all = self.wait_for(n as usize, within).await;
        let elapsed = start.elapsed();
        let run = self.finish().await;
        assert!(all, "every record answered");
        run.assert_tags(n);
        (run, elapsed)
    }

    /// Waits until `n` outcomes have arrived; false if `within` passes first.
    async fn wait_for(&self, n: usize, within: Duration) -> bool {
        self.outcomes.wait_for(n, within).await
    }

    /// Keeps counting for [`SETTLE`] (a second answer would show), then closes the producer.
    async fn finish(self) -> Finished {
        let metrics = settle_and_close(self.producer, SETTLE).await;
        let outcomes = self.outcomes.drain_by_tag();
        Finished { outcomes, metrics }
    }
}

impl Finished {
    /// The one outcome of `tag`; panics unless there is exactly one.
    fn one(&self, tag: u64) -> &Outcome {
        one_outcome(&self.outcomes, tag)
    }

    /// The error of `tag`, which must have failed: success is impossible with `broker`.
    fn failure(&self, tag: u64, broker: &str) -> &ProduceError {
        match self.one(tag) {
            Err(e) => e,
            Ok(md) => panic!("record {tag} acknowledged by {broker}: {md:?}"),
        }
    }

    /// Records `0..n`, and no others, have exactly one outcome each; no batch kept its
    /// `buffer.memory` reservation; no actor was restarted.
    fn assert_tags(&self, n: u64) {
        assert_one_outcome_each(&self.outcomes, n);
        let m = &self.metrics;
        assert_eq!(
            m.buffer_available_bytes, m.buffer_total_bytes,
            "every batch gave its memory back: {m:?}"
        );
        assert_eq!(m.actor_restart_total, 0, "no actor restarted: {m:?}");
    }
}

/// How many copies of each record the broker holds.
fn copies(log: &BTreeMap<i32, Vec<u64>>) -> HashMap<u64, usize> {
    let mut out = HashMap::new();
    for tags in log.values() {
        for &t in tags {
            *out.entry(t).or_default() += 1;
        }
    }
    out
}

/// Checks that the ack of `tag` names an offset where the broker holds that very record.
fn assert_acked_where_stored(tag: u64, outcome: &Outcome, log: &BTreeMap<i32, Vec<u64>>) {
    let md = outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("record {tag} failed: {e}"));
    assert_eq!(
        md.partition,
        (tag % PARTITIONS as u64) as i32,
        "record {tag}: partition"
    );
    let at = log
        .get(&md.partition)
        .and_then(|l| l.get(md.offset as usize))
        .copied();
    assert_eq!(
        at,
        Some(tag),
        "record {tag}: acknowledged at {}/{}, broker holds {at:?} there",
        md.partition,
        md.offset
    );
}

/// The standard scenario: warm-up record 0 (Produce #0, answered), then records `1..=BURST`
/// at once; the broker misbehaves as `fault` says. Returns the run's end state and how long
/// the burst took.
async fn run(
    fault: Fault,
    extra: &[(&'static str, &'static str)],
) -> (Scripted, Finished, Duration) {
    init_tracing();
    let broker = Scripted::start(fault);
    let client = Client::start(&broker.fake, extra);
    client.send([0]);
    assert!(
        client.wait_for(1, Duration::from_secs(5)).await,
        "warm-up record answered"
    );
    let burst = Instant::now();
    client.send_waves().await;
    let all = client
        .wait_for(BURST as usize + 1, Duration::from_secs(9))
        .await;
    let elapsed = burst.elapsed();
    let finished = client.finish().await;
    assert!(
        all,
        "every record answered within 9 s: got {} tags",
        finished.outcomes.len()
    );
    (broker, finished, elapsed)
}

/// The assertions of every "connection must be dropped" case. `stores`: the broker appended
/// the faulty request's records before misbehaving, so exactly those are held twice (request
/// written, answer lost: at-least-once without idempotence); every other record exactly once.
fn assert_recovered(broker: &Scripted, run: &Finished, stores: bool) {
    let faulty = broker.faulty();
    let faulted: HashSet<u64> = faulty
        .partitions
        .iter()
        .flat_map(|(_, t)| t.iter().copied())
        .collect();
    assert!(!faulted.is_empty(), "the faulty request carried records");
    let log = broker.log();
    run.assert_tags(BURST + 1);
    for tag in 0..=BURST {
        assert_acked_where_stored(tag, run.one(tag), &log);
    }
    let copies = copies(&log);
    for tag in 0..=BURST {
        let want = if stores && faulted.contains(&tag) {
            2
        } else {
            1
        };
        assert_eq!(
            copies.get(&tag).copied().unwrap_or(0),
            want,
            "record {tag}: copies held by the broker (faulty request held {faulted:?}, appended: {stores})"
        );
    }
    let m = &run.metrics;
    assert_eq!(m.record_send_total, BURST + 1, "record-send-total: {m:?}");
    assert_eq!(m.record_error_total, 0, "record-error-total: {m:?}");
    // The faulty request's records, and those of the batches in flight behind it (held up
    // by HOLD), were retried.
    assert!(
        m.record_retry_total > faulted.len() as u64,
        "the faulty request's {} records and the batches behind it were retried: {m:?}",
        faulted.len()
    );
    // Bootstrap connection + broker 1's first connection + at least one rebuilt.
    assert!(
        m.connection_creation_total >= 3,
        "connection rebuilt: {m:?}"
    );
    let seen = broker.seen();
    assert!(
        seen.iter().any(|s| s.api_key == ApiKey::Produce as i16
            && s.connection > faulty.connection
            && !s.muted),
        "Produce requests went on over a new connection (faulty one: {})",
        faulty.connection
    );
}

/// The end state when nothing was in flight as the connection broke (`why`): every record
/// acknowledged where the broker holds it, held once, none retried; the connection rebuilt.
fn assert_held_once_without_retry(broker: &Scripted, run: &Finished, why: &str) {
    let log = broker.log();
    let copies = copies(&log);
    for tag in 0..=BURST {
        assert_acked_where_stored(tag, run.one(tag), &log);
        assert_eq!(copies.get(&tag), Some(&1), "record {tag} held once");
    }
    let m = &run.metrics;
    assert_eq!(m.record_send_total, BURST + 1, "{m:?}");
    assert_eq!(m.record_retry_total, 0, "{why}: {m:?}");
    assert!(
        m.connection_creation_total >= 3,
        "connection rebuilt: {m:?}"
    );
}

fn produce_cfg() -> Vec<(&'static str, &'static str)> {
    vec![
        ("request.timeout.ms", "5000"),
        ("delivery.timeout.ms", "8000"),
    ]
}

/// `request.timeout.ms` 500 and `delivery.timeout.ms` 3000: for the cases that only the request
/// timeout can free.
const SHORT_TIMEOUTS: &[(&str, &str)] = &[
    ("request.timeout.ms", "500"),
    ("delivery.timeout.ms", "3000"),
];

/// With [`SHORT_TIMEOUTS`]: the connection was freed by the request timeout, and the records
/// recovered before the delivery timeout.
fn assert_recovered_by_request_timeout(elapsed: Duration) {
    assert!(
        elapsed >= Duration::from_millis(500),
        "recovered through the request timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3000),
        "within the delivery timeout: {elapsed:?}"
    );
}

/// The garbage was detected as garbage, not by the request timeout.
fn assert_no_timeout_needed(elapsed: Duration) {
    assert!(
        elapsed < REQUEST_TIMEOUT,
        "recovery took {elapsed:?}: the connection was not dropped on the garbage itself (request.timeout.ms = {REQUEST_TIMEOUT:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// 1. The broker appends the first burst request, writes a response frame whose size prefix
/// promises 100 bytes more than follow, then closes: the frame is cut mid-way. Herald sees the
/// end of the stream inside a frame, drops the connection and resends everything in flight;
/// the faulty request's records are held twice (appended, answer lost).
#[actix_rt::test]
async fn truncated_frame_then_close() {
    let fault = Fault::produce(1, true, |ctx, valid| {
        let full = fake_broker::frame_response(ctx, ctx.correlation_id, &valid);
        let mut cut = BytesMut::from(&full[..]);
        let promised = (full.len() - 4 + 100) as i32;
        cut[..4].copy_from_slice(&promised.to_be_bytes());
        vec![Action::Raw(cut.freeze()), Action::Close]
    });
    let (broker, run, elapsed) = run(fault, &produce_cfg()).await;
    assert_recovered(&broker, &run, true);
    assert_no_timeout_needed(elapsed);
}

/// 2. The broker appends the first burst request and answers it (valid body) with a
/// correlation id 1000 above the right one, and keeps its side of the connection open. Herald
/// must refuse the answer (it cannot tell which request it belongs to), drop the connection
/// and resend; the faulty request's records are held twice.
#[actix_rt::test]
async fn wrong_correlation_id() {
    let fault = Fault::produce(1, true, |ctx, valid| {
        vec![Action::RespondWithCorrelation(
            ctx.correlation_id.wrapping_add(1000),
            valid,
        )]
    });
    let (broker, run, elapsed) = run(fault, &produce_cfg()).await;
    assert_recovered(&broker, &run, true);
    assert_no_timeout_needed(elapsed);
}

/// 3. Instead of answering (and without appending), the broker writes a size prefix of
/// 0x7fff_ffff and a few bytes, and keeps the connection open. The frame decoder refuses any
/// prefix above 64 MiB before allocating or waiting for the body; had it waited for 2 GiB,
/// only the request timeout (5 s) would have freed the connection, which the elapsed-time
/// check rules out. Nothing was appended, so every record is held once.
#[actix_rt::test]
async fn oversized_length_prefix() {
    let fault = Fault::produce(1, false, |ctx, _| {
        let mut raw = BytesMut::new();
        raw.put_i32(0x7fff_ffff);
        raw.put_i32(ctx.correlation_id);
        raw.put_slice(&[0u8; 24]);
        vec![Action::Raw(raw.freeze())]
    });
    let (broker, run, elapsed) = run(fault, &produce_cfg()).await;
    assert_recovered(&broker, &run, false);
    assert_no_timeout_needed(elapsed);
}

/// 4. The broker appends the first burst request and answers with a correctly framed response
/// (right correlation id) whose body is 48 pseudo-random bytes that do not decode as a
/// ProduceResponse of the request's version. Herald answers the batches as lost, drops the
/// connection and resends; the faulty request's records are held twice.
#[actix_rt::test]
async fn garbage_produce_body() {
    let fault = Fault::produce(1, true, |ctx, _| {
        let version = ctx.api_version;
        let body = garbage(48, |b| {
            responses::decode_produce_response(b, version).is_err()
        });
        vec![Action::Raw(fake_broker::frame_response(
            ctx,
            ctx.correlation_id,
            &body,
        ))]
    });
    let (broker, run, elapsed) = run(fault, &produce_cfg()).await;
    assert_recovered(&broker, &run, true);
    assert_no_timeout_needed(elapsed);
}

/// 5. The first burst request that carries partition 0 is answered with error code 9999 (a
/// code no Kafka version defines) for partition 0 and normally for partition 1. That is a
/// well-formed answer: the connection stays, the partition-0 batch fails with that code named
/// in the error (unknown codes are not retriable: no retry), and every other batch, in the
/// same request or not, is acknowledged once.
#[actix_rt::test]
async fn unknown_error_code_fails_only_that_batch() {
    let fault = Fault {
        api: ApiKey::Produce,
        when: Box::new(|p| {
            p.nth >= 1 && p.faults == 0 && p.partitions.iter().any(|(part, _)| *part == 0)
        }),
        stores: true,
        refuse: Some((0, 9999)),
        mute: false,
        actions: Box::new(|_, valid| vec![Action::Respond(valid)]),
    };
    let (broker, run, _) = run(fault, &produce_cfg()).await;
    let faulty = broker.faulty();
    let refused: HashSet<u64> = faulty
        .partitions
        .iter()
        .filter(|(p, _)| *p == 0)
        .flat_map(|(_, t)| t.iter().copied())
        .collect();
    assert!(!refused.is_empty());
    let log = broker.log();
    let copies = copies(&log);
    run.assert_tags(BURST + 1);
    for tag in 0..=BURST {
        let outcome = run.one(tag);
        if refused.contains(&tag) {
            let e = outcome.as_ref().expect_err("refused record fails");
            match e.kind() {
                ErrorKind::Broker {
                    code, partition, ..
                } => {
                    assert_eq!(*code, KafkaCode::Unknown(9999), "record {tag}");
                    assert_eq!(*partition, 0);
                }
                other => panic!("record {tag}: expected the broker's error, got {other}"),
            }
            assert!(
                e.to_string().contains("9999"),
                "the error names the code: {e}"
            );
            assert_eq!(copies.get(&tag), None, "refused record {tag} is not held");
        } else {
            assert_acked_where_stored(tag, outcome, &log);
            assert_eq!(copies.get(&tag), Some(&1), "record {tag} held once");
        }
    }
    let m = &run.metrics;
    assert_eq!(
        m.record_retry_total, 0,
        "unknown codes are not retried: {m:?}"
    );
    assert_eq!(m.record_error_total, refused.len() as u64, "{m:?}");
    assert_eq!(
        m.record_send_total,
        BURST + 1 - refused.len() as u64,
        "{m:?}"
    );
    assert_eq!(
        m.connection_creation_total, 2,
        "bootstrap + broker 1, never rebuilt: {m:?}"
    );
    let produce_connections: HashSet<usize> = broker
        .seen()
        .iter()
        .filter(|s| s.api_key == ApiKey::Produce as i16)
        .map(|s| s.connection)
        .collect();
    assert_eq!(
        produce_connections.len(),
        1,
        "every Produce on one connection"
    );
}

/// 6. The broker appends the first burst request, writes the first half of the valid response
/// frame, and closes the connection (FIN): the answer is cut mid-body. Herald drops the
/// connection and resends; the faulty request's records are held twice.
#[actix_rt::test]
async fn connection_closed_mid_response() {
    let fault = Fault::produce(1, true, |ctx, valid| {
        let full = fake_broker::frame_response(ctx, ctx.correlation_id, &valid);
        vec![Action::Raw(full.slice(..full.len() / 2)), Action::Close]
    });
    let (broker, run, elapsed) = run(fault, &produce_cfg()).await;
    assert_recovered(&broker, &run, true);
    assert_no_timeout_needed(elapsed);
}

/// 6b. As 6, but the broker keeps the connection open and says nothing more: the rest of the
/// frame never comes. Only the request timeout (500 ms here) can free the connection; Herald
/// must not wait for the frame forever. The faulty request's records are held twice.
#[actix_rt::test]
async fn half_response_then_silence() {
    let fault = Fault::produce(1, true, |ctx, valid| {
        let full = fake_broker::frame_response(ctx, ctx.correlation_id, &valid);
        vec![Action::Raw(full.slice(..full.len() / 2))]
    });
    let (broker, run, elapsed) = run(fault, SHORT_TIMEOUTS).await;
    assert_recovered(&broker, &run, true);
    assert_recovered_by_request_timeout(elapsed);
}

/// 6c. acks=0: the connection is reset while Produce requests are still queued for the
/// socket. With acks=0 no request waits for an answer, so every batch the connection took is
/// either written or sits in the writer's queue; a broker that stops reading (the socket
/// buffers fill up, the writer blocks) and then closes with unread data (the kernel answers
/// with a reset) makes the blocked write fail with requests still queued behind it. Every one
/// of those batches must still be answered at once (never written: retried on the new
/// connection), not left to `delivery.timeout.ms`.
///
/// acks=0 cannot tell a batch that reached the broker from one that only reached our socket
/// buffer: batches written before the reset are reported written though the broker never read
/// them (acks=0 loses them by design), so this test checks outcomes and timing only.
#[actix_rt::test]
async fn acks0_reset_with_writes_queued() {
    use std::sync::atomic::{AtomicBool, Ordering};
    init_tracing();
    let first = AtomicBool::new(true);
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let fake = FakeBroker::start(move |ctx| {
        if ctx.api() == Some(ApiKey::Produce) && first.swap(false, Ordering::SeqCst) {
            // Stop reading while the client fills the socket, then close with unread data.
            return vec![Action::Delay(Duration::from_millis(300)), Action::Close];
        }
        standard(ctx)
    });
    let client = Client::start(
        &fake,
        &[
            ("acks", "0"),
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "5000"),
            ("batch.size", "300000"),
        ],
    );
    // 96 records of 256 KiB (24 MiB): far more than loopback socket buffers hold.
    const N: u64 = 96;
    let value = vec![b'x'; 256 * 1024];
    let start = Instant::now();
    for tag in 0..N {
        client.producer.router().do_send(
            Produce::new(TOPIC)
                .value(value.clone())
                .partition((tag % PARTITIONS as u64) as i32)
                .tag(tag)
                .reply_to(client.inbox.clone()),
        );
    }
    let all = client.wait_for(N as usize, Duration::from_secs(8)).await;
    let elapsed = start.elapsed();
    let run = client.finish().await;
    assert!(all, "every record answered: got {}", run.outcomes.len());
    run.assert_tags(N);
    for tag in 0..N {
        if let Err(e) = run.one(tag) {
            panic!("record {tag} failed although the broker came back at once: {e}");
        }
    }
    assert!(
        elapsed < Duration::from_millis(4000),
        "answered without waiting for the delivery timeout: {elapsed:?}"
    );
    let m = &run.metrics;
    assert!(
        m.record_retry_total > 0,
        "batches not written were retried: {m:?}"
    );
    assert!(
        m.connection_creation_total >= 3,
        "connection rebuilt: {m:?}"
    );
}

/// Large records (400 KiB each, one partition, so one batch per Produce request) that fill a
/// stalled connection's socket buffers many times over: the broker's receive buffer is fixed
/// at 16 KiB and the client's send buffer at 4 KiB.
const STALL_RECORDS: u64 = 6;
const STALL_VALUE: usize = 400 * 1024;

/// A fake broker whose first Produce request stops its connection: the broker reads nothing
/// more on it for `stall`, then reads on but answers nothing there. Every other connection is
/// a healthy broker's. Returns the broker and the stalled connection's index once known.
fn stalling_broker(stall: Duration) -> (FakeBroker, Arc<Mutex<Option<usize>>>) {
    let stalled: Arc<Mutex<Option<usize>>> = Arc::default();
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let which = stalled.clone();
    let fake = FakeBroker::start_with_receive_buffer(Some(16 * 1024), move |ctx| {
        if ctx.api() == Some(ApiKey::Produce) {
            let mut stalled = which.lock().unwrap();
            match *stalled {
                None => {
                    *stalled = Some(ctx.connection);
                    return vec![Action::Delay(stall), Action::NoResponse];
                }
                Some(c) if c == ctx.connection => return vec![Action::NoResponse],
                Some(_) => {}
            }
        }
        standard(ctx)
    });
    (fake, stalled)
}

/// Sends [`STALL_RECORDS`] large records to partition 0, tagged `0..`, at once.
fn send_large(client: &Client) {
    for tag in 0..STALL_RECORDS {
        client.producer.router().do_send(
            Produce::new(TOPIC)
                .value(vec![b'x'; STALL_VALUE])
                .partition(0)
                .tag(tag)
                .reply_to(client.inbox.clone()),
        );
    }
}

/// 6d. A dropped connection writes nothing more. The broker stops reading the connection of
/// the first Produce request (without closing it) while the next four wait to be written;
/// after `request.timeout.ms` (1 s) Herald gives the connection up, answers the five as lost
/// and sends them again on a new one, where they are acknowledged. When the broker reads the
/// old connection again (after 4 s), nothing but what already lay in the socket buffers may
/// come: the old writer must have stopped with the connection (as Java closes the channel),
/// not gone on writing requests already answered and sent again (here: four more Produce
/// requests on the old connection, which a real broker would append a second time).
#[actix_rt::test]
async fn a_dropped_connection_writes_nothing_more() {
    init_tracing();
    const STALL: Duration = Duration::from_secs(4);
    let (fake, stalled) = stalling_broker(STALL);
    let client = Client::start(
        &fake,
        &[
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "30000"),
            ("send.buffer.bytes", "4096"),
        ],
    );
    let start = Instant::now();
    send_large(&client);
    let all = client
        .wait_for(STALL_RECORDS as usize, Duration::from_secs(15))
        .await;
    // The broker reads the old connection again from STALL on; give it time to read
    // whatever comes.
    tokio::time::sleep(
        (start + STALL + Duration::from_secs(2)).saturating_duration_since(Instant::now()),
    )
    .await;
    let run = client.finish().await;
    assert!(all, "every record answered: got {}", run.outcomes.len());
    run.assert_tags(STALL_RECORDS);
    for tag in 0..STALL_RECORDS {
        if let Err(e) = run.one(tag) {
            panic!("record {tag} failed although a new connection was healthy: {e}");
        }
    }
    assert!(run.metrics.record_retry_total > 0, "{:?}", run.metrics);
    let stalled = stalled.lock().unwrap().expect("a Produce request stalled");
    let on_stalled: Vec<usize> = fake
        .requests_for(ApiKey::Produce)
        .iter()
        .filter(|r| r.connection == stalled)
        .map(|r| r.request_index)
        .collect();
    assert_eq!(
        on_stalled.len(),
        1,
        "only the stalled request came on the dropped connection, got requests {on_stalled:?}"
    );
}

/// 6e. acks=0 and a broker that stops reading a connection without closing it (for 30 s,
/// far past the test). No request on it awaits a response, so only the writes can time out:
/// a frame not written within `request.timeout.ms` (1 s) must drop the connection, as Java
/// keeps an acks=0 send among its in-flight requests until it completes. The batches not
/// written then are answered as never sent (or, the one cut mid-write, as lost), sent again
/// on a new connection, and written there: every record is answered, once and successfully,
/// soon after the request timeout, not at `delivery.timeout.ms` (60 s) or when the broker
/// reads again.
#[actix_rt::test]
async fn acks0_writes_time_out_on_a_broker_that_stopped_reading() {
    init_tracing();
    let (fake, stalled) = stalling_broker(Duration::from_secs(30));
    let client = Client::start(
        &fake,
        &[
            ("acks", "0"),
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "60000"),
            ("send.buffer.bytes", "4096"),
        ],
    );
    let start = Instant::now();
    send_large(&client);
    let all = client
        .wait_for(STALL_RECORDS as usize, Duration::from_secs(8))
        .await;
    let elapsed = start.elapsed();
    let answered = client.outcomes.count();
    let run = client.finish().await;
    assert!(all, "every record answered within 8 s: got {answered}");
    run.assert_tags(STALL_RECORDS);
    for tag in 0..STALL_RECORDS {
        if let Err(e) = run.one(tag) {
            panic!("record {tag} failed although a new connection was healthy: {e}");
        }
    }
    assert!(
        elapsed >= Duration::from_millis(1000),
        "the stalled writes were given up after request.timeout.ms: {elapsed:?}"
    );
    let m = &run.metrics;
    assert!(
        m.record_retry_total > 0,
        "unwritten batches went again: {m:?}"
    );
    assert!(
        stalled.lock().unwrap().is_some(),
        "a Produce request stalled"
    );
    let connections: std::collections::HashSet<usize> = fake
        .requests_for(ApiKey::Produce)
        .iter()
        .map(|r| r.connection)
        .collect();
    assert!(
        connections.len() >= 2,
        "Produce went again on a new connection: {connections:?}"
    );
}

/// 7. The broker answers the warm-up request correctly, then, 100 ms later, when nothing is in
/// flight, writes a second Produce response with a correlation id Herald never used. Herald
/// must drop the connection (its stream can no longer be trusted): the metadata refresh that
/// a drop triggers shows up on a new connection, and the burst goes there, all answered once.
/// Nothing was in flight when the stray frame came, so nothing is retried.
#[actix_rt::test]
async fn response_for_request_never_sent() {
    const STRAY: i32 = 0x5EED_0000;
    init_tracing();
    let fault = Fault::produce(0, true, |ctx, valid| {
        vec![
            Action::Respond(valid.clone()),
            Action::Delay(Duration::from_millis(100)),
            Action::Raw(fake_broker::frame_response(ctx, STRAY, &valid)),
        ]
    });
    let broker = Scripted::start(fault);
    let client = Client::start(&broker.fake, &produce_cfg());
    client.send([0]);
    assert!(
        client.wait_for(1, Duration::from_secs(5)).await,
        "warm-up record answered"
    );
    let faulty_connection = broker.faulty().connection;
    // The drop asks for a metadata refresh, on a connection other than the dropped one (the
    // least loaded: the bootstrap entry's, or broker 1's new one).
    let refreshed_after_the_drop = || {
        let seen = broker.seen();
        let faulty_at = seen.iter().position(|s| s.faulty);
        faulty_at.is_some_and(|at| {
            seen[at..]
                .iter()
                .any(|s| s.api_key == ApiKey::Metadata as i16 && s.connection != faulty_connection)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !refreshed_after_the_drop() {
        assert!(
            Instant::now() < deadline,
            "no metadata refresh 3 s after a response for a request never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.send_waves().await;
    let all = client
        .wait_for(BURST as usize + 1, Duration::from_secs(9))
        .await;
    let run = client.finish().await;
    assert!(all, "every record answered");
    run.assert_tags(BURST + 1);
    assert_held_once_without_retry(&broker, &run, "nothing was in flight");
    let seen = broker.seen();
    assert!(
        !seen.iter().any(|s| s.muted),
        "nothing was sent on the connection after the stray frame: {seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.api_key == ApiKey::Produce as i16 && !s.faulty)
            .all(|s| s.connection > faulty_connection),
        "the burst went over the new connection"
    );
}

/// 8a. A broker that stalls: it reads the first burst request and never answers it (nor
/// anything after it on that connection; it does not append it either). With
/// `request.timeout.ms=500` Herald gives up on the connection after 500 ms, resends on a new
/// one, where the broker answers: every record succeeds, each held once.
#[actix_rt::test]
async fn silent_broker_then_recovers() {
    let fault = Fault::produce(1, false, |_, _| vec![Action::NoResponse]);
    let (broker, run, elapsed) = run(fault, SHORT_TIMEOUTS).await;
    assert_recovered(&broker, &run, false);
    assert_recovered_by_request_timeout(elapsed);
}

/// 8b. A broker that answers ApiVersions and Metadata but never a Produce request (each one
/// silences its connection). Every attempt times out after `request.timeout.ms=500` and is
/// retried on a new connection until `delivery.timeout.ms=3000`: every record fails, once,
/// with a delivery timeout, and none was appended.
#[actix_rt::test]
async fn silent_broker_delivery_timeout() {
    init_tracing();
    let fault = Fault::muting(ApiKey::Produce, |_| true, |_, _| vec![Action::NoResponse]);
    let broker = Scripted::start(fault);
    let client = Client::start(&broker.fake, SHORT_TIMEOUTS);
    const N: u64 = 10;
    let (run, elapsed) = client.send_all(N, Duration::from_secs(8)).await;
    for tag in 0..N {
        let e = run.failure(tag, "a broker that never answers");
        assert!(
            matches!(
                e.kind(),
                ErrorKind::DeliveryTimeout {
                    timeout_ms: 3000,
                    ..
                }
            ),
            "record {tag}: {e}"
        );
    }
    assert!(broker.log().values().all(Vec::is_empty), "nothing appended");
    assert!(
        elapsed >= Duration::from_millis(2900),
        "failed at the delivery timeout, not before: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(6000),
        "failed soon after the delivery timeout: {elapsed:?}"
    );
    let m = &run.metrics;
    assert_eq!(m.record_error_total, N, "{m:?}");
    assert_eq!(m.record_send_total, 0, "{m:?}");
    assert!(
        m.record_retry_total > 0,
        "timed-out attempts were retried: {m:?}"
    );
    assert!(
        m.connection_creation_total >= 4,
        "a new connection after each timeout: {m:?}"
    );
    let produce_connections: HashSet<usize> = broker
        .seen()
        .iter()
        .filter(|s| s.api_key == ApiKey::Produce as i16)
        .map(|s| s.connection)
        .collect();
    assert!(
        produce_connections.len() >= 2,
        "Produce retried over new connections: {produce_connections:?}"
    );
}

/// 8c. A broker that accepts TCP connections and never answers anything, not even
/// ApiVersions. Version negotiation times out after `request.timeout.ms` and the connection is
/// rebuilt; records wait for metadata and fail, once, with a metadata timeout after
/// `max.block.ms`. Close does not hang.
#[actix_rt::test]
async fn mute_broker_metadata_timeout() {
    init_tracing();
    let fake = FakeBroker::start(|_| vec![Action::NoResponse]);
    let client = Client::start(
        &fake,
        &[
            ("request.timeout.ms", "300"),
            ("delivery.timeout.ms", "3000"),
            ("max.block.ms", "1000"),
        ],
    );
    const N: u64 = 5;
    let (run, elapsed) = client.send_all(N, Duration::from_secs(5)).await;
    for tag in 0..N {
        let e = run.failure(tag, "a mute broker");
        assert!(
            matches!(e.kind(), ErrorKind::MetadataTimeout { .. }),
            "record {tag}: {e}"
        );
    }
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(4000), "{elapsed:?}");
    assert!(
        run.metrics.connection_creation_total >= 2,
        "negotiation timed out, connection rebuilt: {:?}",
        run.metrics
    );
    let connections: HashSet<usize> = fake.requests().iter().map(|r| r.connection).collect();
    assert!(
        connections.len() >= 2,
        "ApiVersions asked again on a new connection: {connections:?}"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.api() == Some(ApiKey::ApiVersions)),
        "nothing but ApiVersions before negotiation"
    );
}

/// 9. The first Metadata request (on the bootstrap connection) is answered with a correctly
/// framed response whose body is pseudo-random bytes that do not decode as a MetadataResponse
/// of the request's version. The metadata request fails, the connection is dropped and
/// rebuilt, the retried Metadata request is answered, and every record is then produced once.
/// No record had been sent, so none is retried.
#[actix_rt::test]
async fn garbage_metadata_response() {
    let fault = Fault::muting(
        ApiKey::Metadata,
        |p| p.nth == 0,
        |ctx, _| {
            let version = ctx.api_version;
            let body = garbage(64, |b| {
                responses::decode_metadata_response(b, version).is_err()
            });
            vec![Action::Raw(fake_broker::frame_response(
                ctx,
                ctx.correlation_id,
                &body,
            ))]
        },
    );
    init_tracing();
    let broker = Scripted::start(fault);
    let client = Client::start(&broker.fake, &produce_cfg());
    let (run, elapsed) = client.send_all(BURST + 1, Duration::from_secs(9)).await;
    assert_held_once_without_retry(&broker, &run, "no record was in flight");
    let faulty = broker.faulty();
    let seen = broker.seen();
    assert!(
        seen.iter().any(|s| s.api_key == ApiKey::Metadata as i16
            && s.connection > faulty.connection
            && !s.muted),
        "Metadata asked again on a new connection"
    );
    assert_no_timeout_needed(elapsed);
}

/// 10. Metadata responses that list the topic's one partition under index `i32::MAX` (well
/// formed, but the index would size the partition table: `i32::MAX + 1` overflows, and an
/// index of 2,000,000,000 would ask for gigabytes). The topic's part of the response is
/// dropped, not the process: the records fail after `max.block.ms` with a metadata timeout
/// that names the unusable index, no actor panics, and once the broker lists the partitions
/// properly the next records are written.
#[actix_rt::test]
async fn metadata_with_an_absurd_partition_index() {
    init_tracing();
    let garbage = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let answering_garbage = garbage.clone();
    let fake = FakeBroker::start(move |ctx| {
        let mut actions = standard(ctx);
        let garbage = answering_garbage.load(std::sync::atomic::Ordering::SeqCst);
        if ctx.api() == Some(ApiKey::Metadata) && garbage {
            let Some(Action::Respond(body)) = actions.first_mut() else {
                panic!("the standard handler answers Metadata");
            };
            let mut response: MetadataResponse =
                Decodable::decode(&mut body.clone(), ctx.api_version).expect("decodes");
            for t in &mut response.topics {
                t.partitions.truncate(1);
                t.partitions[0].partition_index = i32::MAX;
            }
            *body = fake_broker::encode(&response, ctx.api_version);
        }
        actions
    });
    let client = Client::start(&fake, &[("max.block.ms", "1000")]);
    client.send(0..4);
    assert!(
        client.wait_for(4, Duration::from_secs(10)).await,
        "every record answered"
    );
    garbage.store(false, std::sync::atomic::Ordering::SeqCst);
    client.send(4..8);
    let answered = client.wait_for(8, Duration::from_secs(10)).await;
    let run = client.finish().await;
    assert!(answered, "every record answered");
    run.assert_tags(8);
    for tag in 0..4 {
        let e = run.failure(tag, "a broker listing no usable partition");
        let ErrorKind::MetadataTimeout {
            cause: Some(cause), ..
        } = e.kind()
        else {
            panic!("record {tag}: {e}");
        };
        assert!(
            cause.contains("partition index 2147483647"),
            "record {tag}: {e}"
        );
    }
    for tag in 4..8 {
        assert!(run.one(tag).is_ok(), "record {tag}: {:?}", run.one(tag));
    }
}

/// 11. The leader's connection is closed by the broker in its handshake (at ApiVersions), three
/// times, while the first records wait for it. Nothing reached the broker: the records are
/// handed back unwritten and queued again, counted as such (`record_requeue_unsent_total`)
/// and not as retries (`retries` is not spent), and each is written once when a handshake
/// succeeds. (ApiVersions number 0 is the bootstrap connection's, which is left alone.)
#[actix_rt::test]
async fn a_connection_closed_in_its_handshake_queues_its_records_again_unsent() {
    init_tracing();
    let fault = Fault::muting(
        ApiKey::ApiVersions,
        |p| p.nth >= 1 && p.faults < 3,
        |_, _| vec![Action::Close],
    );
    let broker = Scripted::start(fault);
    let client = Client::start(&broker.fake, &produce_cfg());
    let (run, _) = client.send_all(BURST + 1, Duration::from_secs(9)).await;
    let closed = broker.seen().iter().filter(|s| s.faulty).count();
    assert_eq!(closed, 3, "three handshakes cut: {:?}", broker.seen());
    assert_held_once_without_retry(&broker, &run, "nothing reached the broker");
    let m = &run.metrics;
    assert!(
        m.record_requeue_unsent_total > 0,
        "records waited on the failing connection and were queued again: {m:?}"
    );
    assert!(
        m.record_requeue_unsent_total <= 3 * (BURST + 1),
        "at most each record once per cut handshake: {m:?}"
    );
}

/// 12. With `retries=0`, the broker closes the connection instead of answering the first
/// Produce request. Its record fails, as Java's with `NetworkException`, with
/// NETWORK_EXCEPTION, and the error says what became of the request: that code alone
/// cannot tell a closed connection from a timeout or a refused one.
#[actix_rt::test]
async fn a_request_lost_without_retries_fails_naming_what_happened() {
    init_tracing();
    let broker = Scripted::start(Fault::produce(0, false, |_, _| vec![Action::Close]));
    let client = Client::start(&broker.fake, &[("retries", "0")]);
    client.send([0]);
    let answered = client.wait_for(1, Duration::from_secs(5)).await;
    let run = client.finish().await;
    assert!(answered, "the record answered");
    run.assert_tags(1);
    let e = run.failure(
        0,
        "a broker that closed the connection instead of answering",
    );
    let ErrorKind::Broker {
        code: KafkaCode::NETWORK_EXCEPTION,
        message: Some(message),
        ..
    } = e.kind()
    else {
        panic!("not a network exception naming its cause: {e:?}");
    };
    assert!(message.contains("connection closed by broker"), "{message}");
    assert!(e.to_string().contains("connection closed by broker"), "{e}");
    assert_eq!(run.metrics.record_retry_total, 0, "{:?}", run.metrics);
}

/// 13. A broker too old to speak to (it advertises Produce 0..=2, Kafka 0.10's; Herald needs
/// 3 or later): every connection fails its version negotiation, so no metadata comes. The
/// records fail at max.block.ms with a metadata timeout that names the version mismatch,
/// not only "not present in metadata".
#[actix_rt::test]
async fn a_broker_too_old_is_named_in_the_metadata_timeout() {
    init_tracing();
    let old: Vec<(ApiKey, i16, i16)> = fake_broker::ADVERTISED
        .iter()
        .map(|&(api, min, max)| match api {
            ApiKey::Produce => (api, 0, 2),
            _ => (api, min, max),
        })
        .collect();
    let cause = metadata_timeout_cause(move |version| {
        fake_broker::api_versions_response_with(version, &old)
    })
    .await;
    assert!(
        cause.contains("no common version of Produce") && cause.contains("0..=2"),
        "{cause}"
    );
}

/// The cause the metadata timeout of one record names (max.block.ms 2 s) when the broker
/// answers ApiVersions (asked at the version given) with `api_versions`.
async fn metadata_timeout_cause(
    api_versions: impl Fn(i16) -> Bytes + Send + Sync + 'static,
) -> String {
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let fake = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::ApiVersions) => vec![Action::Respond(api_versions(ctx.api_version))],
        _ => standard(ctx),
    });
    let client = Client::start(&fake, &[("max.block.ms", "2000")]);
    client.send([0]);
    let answered = client.wait_for(1, Duration::from_secs(10)).await;
    let run = client.finish().await;
    assert!(answered, "the record answered");
    run.assert_tags(1);
    let e = run.failure(0, "a broker Herald cannot use");
    let ErrorKind::MetadataTimeout {
        cause: Some(cause), ..
    } = e.kind()
    else {
        panic!("not a metadata timeout naming its cause: {e}");
    };
    cause.to_string()
}

/// 13b. A broker that refuses ApiVersions (Kafka answers INVALID_REQUEST, listing no API,
/// when it does not take the client's software name or version) is not used, and the
/// metadata timeout names its refusal. Before, Herald went on as if the response were an
/// answer, and reported "broker does not support Metadata".
#[actix_rt::test]
async fn a_refused_api_versions_is_named_in_the_metadata_timeout() {
    use kafka_protocol::messages::ApiVersionsResponse;

    init_tracing();
    let cause = metadata_timeout_cause(|version| {
        let refused = ApiVersionsResponse::default().with_error_code(42);
        fake_broker::encode(&refused, version)
    })
    .await;
    assert!(
        cause.contains("refused ApiVersions") && cause.contains("INVALID_REQUEST"),
        "{cause}"
    );
}

/// 13c. A broker that answers ApiVersions with UNSUPPORTED_VERSION in the version asked,
/// naming a garbage maximum for ApiVersions (-1): the client asks again at v0. Before, it
/// asked at v-1, which could not be encoded, and the connection waited for an answer to a
/// request never sent until request.timeout.ms (30 s) dropped it.
#[actix_rt::test]
async fn an_api_versions_fallback_to_a_garbage_version_asks_at_v0() {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiVersionsResponse;

    init_tracing();
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let fake = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::ApiVersions) if ctx.api_version > 0 => {
            let garbage = ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(-1);
            let response = ApiVersionsResponse::default()
                .with_error_code(35)
                .with_api_keys(vec![garbage]);
            vec![Action::Respond(fake_broker::encode(
                &response,
                ctx.api_version,
            ))]
        }
        _ => standard(ctx),
    });
    let client = Client::start(&fake, &[("max.block.ms", "3000")]);
    client.send([0]);
    let answered = client.wait_for(1, Duration::from_secs(10)).await;
    let run = client.finish().await;
    assert!(answered, "the record answered");
    run.assert_tags(1);
    assert!(run.one(0).is_ok(), "delivered: {:?}", run.one(0));
}

/// 14. The broker closes the connection on the first Produce request instead of answering,
/// and every connection after that in its handshake, until the record's delivery timeout.
/// Its one attempt was lost with its connection: without idempotence nothing can tell
/// whether the broker wrote it, so the expiry must not say it never was ("queued for its
/// connection, never sent" or "waiting to be sent", which an application may read as safe
/// to send again). Before, it said one of those, depending on where the batch waited.
#[actix_rt::test]
async fn a_batch_lost_once_then_expired_is_not_reported_unwritten() {
    use std::sync::atomic::{AtomicBool, Ordering};

    init_tracing();
    let produced = AtomicBool::new(false);
    let standard = fake_broker::standard_handler(&[(TOPIC, PARTITIONS)]);
    let fake = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::Produce) if !produced.swap(true, Ordering::SeqCst) => vec![Action::Close],
        Some(ApiKey::ApiVersions) if produced.load(Ordering::SeqCst) => vec![Action::Close],
        _ => standard(ctx),
    });
    let client = Client::start(
        &fake,
        &[
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "3000"),
        ],
    );
    client.send([0]);
    let answered = client.wait_for(1, Duration::from_secs(10)).await;
    let run = client.finish().await;
    assert!(answered, "the record answered");
    run.assert_tags(1);
    let e = run.failure(0, "a broker that never answered");
    let ErrorKind::DeliveryTimeout { stage, .. } = e.kind() else {
        panic!("not a delivery timeout: {e}");
    };
    assert!(
        [
            "in flight",
            "waiting to be sent again, an earlier attempt may be in the log"
        ]
        .contains(stage),
        "{e}"
    );
    assert!(run.metrics.record_resend_unknown_total > 0 || run.metrics.record_retry_total > 0);
}
