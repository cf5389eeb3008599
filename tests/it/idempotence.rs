//! The idempotent producer against a broker that enforces sequences as Kafka does.
//!
//! librdkafka's mock cluster checks sequence numbers only for transactional producers, so
//! these tests use our scripted fake broker (`support/fake_broker.rs`) with a small model of a
//! Kafka partition leader's producer state (`support/idempotent_broker.rs`, [`Broker`]):
//!
//! - InitProducerId with `-1`/`-1` hands out a new producer id (first [`FIRST_PID`] at epoch
//!   [`FIRST_EPOCH`], then [`SECOND_PID`] at epoch 0); with a producer id and its current epoch
//!   it bumps the epoch (KIP-360), unless the case makes it refuse bumps with
//!   INVALID_PRODUCER_ID_MAPPING.
//! - Produce: each partition's batch (decoded with `herald::batch::decode::decode_batch`) is
//!   checked as Kafka's `ProducerAppendInfo` does: an unknown producer must start at sequence
//!   0 (else UNKNOWN_PRODUCER_ID), an older epoch is fenced (INVALID_PRODUCER_EPOCH), a newer
//!   epoch must start at sequence 0, within an epoch a batch must follow the last one
//!   (else OUT_OF_ORDER_SEQUENCE_NUMBER) unless it repeats one of the last five, which is a
//!   duplicate: answered with the offset it was written at and not written again.
//! - A case injects one fault for one batch ([`Inject`]), chosen by partition, position and
//!   attempt ([`BatchView`]); everything else follows from the model. Requests on a connection
//!   are handled in order, as a broker does, and a fault can hold its answer back so that the
//!   batches sent after it are in flight behind it.
//!
//! Every test checks the same end state ([`Run::assert_exactly_once_in_order`]): every record
//! has exactly one outcome, a success; each partition's log holds every record once, in send
//! order; each success names the offset where the log holds that record; whatever was written
//! under one producer id and epoch carries sequences 0, n0, n0+n1, ...; and a batch sent again
//! under the same sequence carries the same records.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use herald::batch::BatchBuilder;
use herald::compression::Compression;
use herald_actors::{Delivered, MetricsSnapshot, Outcome, Produce, Producer};
use kafka_protocol::messages::ApiKey;

use crate::support::idempotent_broker::*;
use crate::support::init_tracing;
use crate::support::outcomes::{
    assert_no_tags_from, one_outcome, settle_and_close, Outcomes, SETTLE,
};
use crate::support::producer::start_producer;

// ---------------------------------------------------------------------------------------------
// The client side.

struct Client {
    producer: Producer,
    outcomes: Outcomes,
    inbox: Recipient<Delivered>,
    sent: u64,
}

/// What a run ended with.
struct Run {
    outcomes: BTreeMap<u64, Vec<Outcome>>,
    metrics: MetricsSnapshot,
    sent: u64,
}

impl Client {
    /// An idempotent producer (acks=all) on `broker`, with `extra` overriding the defaults.
    fn start(broker: &Broker, extra: &[(&'static str, &'static str)]) -> Client {
        init_tracing();
        let producer = start_producer(
            &broker.fakes[0].bootstrap(),
            &[
                ("client.id", broker.client_id.as_str()),
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("max.in.flight.requests.per.connection", "5"),
                // Java's pipelining (up to 5 batches per partition in flight): the repairs
                // below are those of batches in flight behind a refused one. The default
                // of one is `one_batch_in_flight_per_partition_never_needs_a_repair`.
                ("max.in.flight.batches.per.partition", "5"),
                ("linger.ms", "50"),
                ("retry.backoff.ms", "20"),
                ("retry.backoff.max.ms", "100"),
                ("reconnect.backoff.ms", "20"),
                ("reconnect.backoff.max.ms", "100"),
                ("request.timeout.ms", "5000"),
                ("delivery.timeout.ms", "20000"),
                ("max.block.ms", "5000"),
            ],
            extra,
        );
        assert!(producer.config().enable_idempotence);
        let (outcomes, inbox) = Outcomes::start();
        Client {
            producer,
            outcomes,
            inbox,
            sent: 0,
        }
    }

    /// Sends the next `n` records (tags count up from 0; partition = tag % PARTITIONS)
    /// without waiting.
    fn send(&mut self, n: u64) {
        for tag in self.sent..self.sent + n {
            self.producer.router().do_send(
                Produce::new(TOPIC)
                    .value(value_of(tag))
                    .partition(partition_of(tag))
                    .tag(tag)
                    .reply_to(self.inbox.clone()),
            );
        }
        self.sent += n;
    }

    /// Sends `n` records and waits until every record sent so far has an outcome.
    async fn send_and_wait(&mut self, n: u64) {
        self.send(n);
        self.wait_all().await;
    }

    /// Waits until every record sent so far has an outcome (panics after 15 s).
    async fn wait_all(&self) {
        let all = self
            .outcomes
            .wait_for(self.sent as usize, Duration::from_secs(15))
            .await;
        assert!(
            all,
            "only {} of {} records have an outcome after 15 s",
            self.outcomes.count(),
            self.sent
        );
    }

    /// Waits for every outcome, keeps counting for [`SETTLE`] (a second answer would show),
    /// then closes the producer.
    async fn finish(self) -> Run {
        self.wait_all().await;
        let metrics = settle_and_close(self.producer, SETTLE).await;
        Run {
            outcomes: self.outcomes.drain_by_tag(),
            metrics,
            sent: self.sent,
        }
    }
}

impl Run {
    /// The end state every case must reach; see the module documentation.
    fn assert_exactly_once_in_order(&self, broker: &Broker) {
        let state = broker.state.lock().unwrap();
        assert!(
            state.violations.is_empty(),
            "requests a Kafka broker refuses: {:?}",
            state.violations
        );
        // Every record: exactly one outcome, a success.
        assert_no_tags_from(&self.outcomes, self.sent);
        for tag in 0..self.sent {
            let md = one_outcome(&self.outcomes, tag)
                .as_ref()
                .unwrap_or_else(|e| panic!("record {tag} failed: {e}"));
            assert_eq!(md.partition, partition_of(tag), "record {tag}: partition");
            if md.offset >= 0 {
                let at = state
                    .log
                    .get(&md.partition)
                    .and_then(|l| l.get(md.offset as usize));
                assert_eq!(
                    at,
                    Some(&tag),
                    "record {tag} acknowledged at offset {}, the log holds {at:?} there",
                    md.offset
                );
            } else {
                // Offset -1 only for a batch the broker answered DUPLICATE_SEQUENCE_NUMBER.
                assert!(
                    state
                        .batches
                        .iter()
                        .any(|b| b.answer == DUPLICATE_SEQUENCE_NUMBER && b.tags.contains(&tag)),
                    "record {tag} acknowledged without an offset"
                );
            }
        }
        // Every partition's log: every record once, in send order.
        for p in 0..PARTITIONS {
            let expected: Vec<u64> = (0..self.sent).filter(|t| partition_of(*t) == p).collect();
            let log = state.log.get(&p).cloned().unwrap_or_default();
            assert_eq!(log, expected, "partition {p}: log differs from send order");
        }
        // Whatever was written under one producer id and epoch is numbered 0, n0, n0+n1, ...
        for p in 0..PARTITIONS {
            let mut next: HashMap<(i64, i16), i32> = HashMap::new();
            for b in state
                .batches
                .iter()
                .filter(|b| b.partition == p && b.written)
            {
                let expect = next.entry((b.producer_id, b.epoch)).or_insert(0);
                assert_eq!(
                    b.base_sequence, *expect,
                    "partition {p}: batch {b:?} written out of sequence"
                );
                *expect += b.tags.len() as i32;
            }
        }
        // The same sequence always carries the same records.
        let mut by_sequence: HashMap<(i32, i64, i16, i32), &Vec<u64>> = HashMap::new();
        for b in &state.batches {
            let key = (b.partition, b.producer_id, b.epoch, b.base_sequence);
            if let Some(first) = by_sequence.insert(key, &b.tags) {
                assert_eq!(
                    first, &b.tags,
                    "partition {}: sequence {} sent again with other records",
                    b.partition, b.base_sequence
                );
            }
        }
        let m = &self.metrics;
        assert_eq!(
            m.buffer_available_bytes, m.buffer_total_bytes,
            "every batch gave its memory back: {m:?}"
        );
        assert_eq!(m.record_error_total, 0, "no record failed: {m:?}");
        assert_eq!(m.actor_restart_total, 0, "no actor restarted: {m:?}");
    }
}

/// The batches of `partition` under `producer_id` and `epoch`, in arrival order.
fn epoch_batches(broker: &Broker, partition: i32, producer_id: i64, epoch: i16) -> Vec<BatchSeen> {
    broker
        .partition_batches(partition)
        .into_iter()
        .filter(|b| b.producer_id == producer_id && b.epoch == epoch)
        .collect()
}

/// Scenario shared by the repair cases: a first wave (acknowledged) so that the partitions
/// have a sequence state, then a burst of small batches, several in flight per partition; the
/// fault hits partition 0's second batch (the lowest unacknowledged one once the first wave is
/// done) on its first attempt.
async fn repair_run(broker: &Broker, extra: &[(&'static str, &'static str)]) -> Run {
    let mut config = vec![("batch.size", "200"), ("linger.ms", "5")];
    config.extend_from_slice(extra);
    let mut client = Client::start(broker, &config);
    client.send_and_wait(4).await;
    client.send(60);
    client.finish().await
}

/// A repair case: one broker (`refuse_bumps` as in [`Broker::start`]) that injects `inject`
/// into partition 0's second batch, a [`repair_run`] on it, and the end state every case must
/// reach.
async fn repair_case(refuse_bumps: bool, inject: Inject) -> (Broker, Run) {
    repair_case_with(refuse_bumps, inject, &[]).await
}

/// [`repair_case`] with extra producer config.
async fn repair_case_with(
    refuse_bumps: bool,
    inject: Inject,
    extra: &[(&'static str, &'static str)],
) -> (Broker, Run) {
    let broker = Broker::start(refuse_bumps, second_batch_of_p0(inject));
    let run = repair_run(&broker, extra).await;
    run.assert_exactly_once_in_order(&broker);
    (broker, run)
}

/// The fault for [`repair_run`]: partition 0's second batch, first attempt, first epoch.
fn second_batch_of_p0(inject: Inject) -> impl FnMut(&BatchView) -> Option<Inject> + Send {
    move |b| {
        (b.partition == 0
            && b.nth == 1
            && b.attempt == 0
            && b.producer_id == FIRST_PID
            && b.epoch == FIRST_EPOCH)
            .then_some(inject)
    }
}

/// After a repair of partition 0 under `(pid, epoch)`: the batch that hit the fault was sent
/// again first, under the new identity at sequence 0, and the new identity's batches hold the
/// rest of partition 0's records in send order, from that batch's first record on.
fn assert_resent_from_zero(broker: &Broker, faulty: &BatchSeen, pid: i64, epoch: i16) {
    let after = epoch_batches(broker, 0, pid, epoch);
    let first = after
        .first()
        .unwrap_or_else(|| panic!("no batch of partition 0 under {pid}/{epoch}"));
    assert_eq!(first.base_sequence, 0, "the repair restarts sequences at 0");
    assert_eq!(
        first.tags.first(),
        faulty.tags.first(),
        "the refused batch goes first under the new identity: {first:?} vs {faulty:?}"
    );
    let resent: Vec<u64> = after
        .iter()
        .filter(|b| b.written)
        .flat_map(|b| b.tags.iter().copied())
        .collect();
    let from = faulty.tags[0];
    let expected: Vec<u64> = (from..)
        .step_by(PARTITIONS as usize)
        .take(resent.len())
        .collect();
    assert_eq!(resent, expected, "resent in the original order");
    // Nothing of partition 0 was written under the old identity after the fault.
    let all = broker.partition_batches(0);
    let at = all
        .iter()
        .position(|b| b.tags == faulty.tags)
        .expect("the faulty batch was received");
    let stale: Vec<&BatchSeen> = all[at + 1..]
        .iter()
        .filter(|b| b.written && (b.producer_id, b.epoch) != (pid, epoch))
        .collect();
    assert!(
        stale.is_empty(),
        "written under the old identity after the fault: {stale:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// (a) The producer obtains a producer id, and its batches carry it with sequences 0, n0,
/// n0+n1, ... per partition.
#[actix_rt::test]
async fn batches_carry_producer_id_and_running_sequences() {
    let broker = Broker::start(false, |_| None);
    let mut client = Client::start(&broker, &[]);
    // One batch per partition per wave (linger.ms=50, flush after each wave): partition 0
    // gets 3, 1, 5, 2 records, partition 1 as many.
    for per_partition in [3u64, 1, 5, 2] {
        client.send(per_partition * PARTITIONS as u64);
        client.producer.flush().await;
    }
    let run = client.finish().await;
    run.assert_exactly_once_in_order(&broker);

    assert_eq!(
        broker.inits(),
        vec![InitSeen {
            producer_id: -1,
            epoch: -1,
            answer: (0, FIRST_PID, FIRST_EPOCH)
        }],
        "one InitProducerId, asking for a new id"
    );
    for p in 0..PARTITIONS {
        let got: Vec<(i64, i16, i32, usize)> = broker
            .partition_batches(p)
            .iter()
            .map(|b| (b.producer_id, b.epoch, b.base_sequence, b.tags.len()))
            .collect();
        let expected: Vec<(i64, i16, i32, usize)> = [(0, 3), (3, 1), (4, 5), (9, 2)]
            .iter()
            .map(|&(seq, n)| (FIRST_PID, FIRST_EPOCH, seq, n))
            .collect();
        assert_eq!(
            got, expected,
            "partition {p}: (pid, epoch, sequence, records)"
        );
    }
    assert_eq!(run.metrics.record_retry_total, 0);
}

/// The InitProducerId exchanges of a run that obtained [`FIRST_PID`] and then asked for one
/// bump of its first epoch, answered with `bump_answer`.
fn init_then_bump(bump_answer: (i16, i64, i16)) -> Vec<InitSeen> {
    vec![
        InitSeen {
            producer_id: -1,
            epoch: -1,
            answer: (0, FIRST_PID, FIRST_EPOCH),
        },
        InitSeen {
            producer_id: FIRST_PID,
            epoch: FIRST_EPOCH,
            answer: bump_answer,
        },
    ]
}

/// The one batch the broker answered with `code` first (the injected fault).
fn first_answered(broker: &Broker, code: i16) -> BatchSeen {
    broker
        .answered(code)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the broker never answered error {code}"))
}

/// (b) OUT_OF_ORDER_SEQUENCE_NUMBER for the lowest unacknowledged batch of a partition: the
/// producer bumps its epoch (InitProducerId with its producer id and epoch) and sends the same
/// records again under the new epoch from sequence 0, in the original order. The batches in
/// flight behind the refused one (answered OUT_OF_ORDER_SEQUENCE_NUMBER as well, since their
/// predecessor is missing) follow it; no record fails, none is answered twice.
#[actix_rt::test]
async fn out_of_order_sequence_bumps_epoch_and_resends_in_order() {
    let (broker, run) = repair_case(false, Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)).await;

    let faulty = first_answered(&broker, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!((faulty.partition, faulty.epoch), (0, FIRST_EPOCH));
    assert!(
        broker.answered(OUT_OF_ORDER_SEQUENCE_NUMBER).len() >= 2,
        "batches were in flight behind the refused one: {:?}",
        broker.partition_batches(0)
    );
    assert_eq!(
        broker.inits(),
        init_then_bump((0, FIRST_PID, FIRST_EPOCH + 1)),
        "one epoch bump carrying the current producer id and epoch"
    );
    assert_resent_from_zero(&broker, &faulty, FIRST_PID, FIRST_EPOCH + 1);
    assert!(run.metrics.record_retry_total > 0);
}

/// (b') The same repair with compression: compressed batches are closed on the sealer's
/// thread, so the repair must wait for batches still being compressed under the old identity
/// and restamp them once their bytes are back.
#[actix_rt::test]
async fn compressed_batches_are_repaired_like_uncompressed_ones() {
    for codec in ["lz4", "zstd", "gzip"] {
        for inject in [
            Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER),
            Inject::ForgetProducer,
        ] {
            let (broker, _run) =
                repair_case_with(false, inject, &[("compression.type", codec)]).await;
            let code = match inject {
                Inject::ForgetProducer => UNKNOWN_PRODUCER_ID,
                _ => OUT_OF_ORDER_SEQUENCE_NUMBER,
            };
            let faulty = first_answered(&broker, code);
            assert_eq!(
                broker.inits(),
                init_then_bump((0, FIRST_PID, FIRST_EPOCH + 1)),
                "{codec}: one epoch bump"
            );
            assert_resent_from_zero(&broker, &faulty, FIRST_PID, FIRST_EPOCH + 1);
        }
    }
}

/// (b'') An epoch change while batches are with the sealer: they were closed under the old
/// identity, so they must neither go out nor be restamped before their bytes are back. The
/// sealer is stalled while the refused batch's answer is held, and records sent meanwhile
/// wait there across the repair.
#[actix_rt::test]
async fn epoch_change_waits_for_batches_being_compressed() {
    let broker = Broker::start(
        false,
        second_batch_of_p0(Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)),
    );
    let mut client = Client::start(
        &broker,
        &[
            ("batch.size", "200"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
        ],
    );
    client.send_and_wait(4).await;
    client.send(60);
    tokio::time::sleep(HOLD / 3).await; // the refused batch's answer is held for HOLD
    let sealer = client
        .producer
        .fault_injection()
        .sealer()
        .expect("a sealer");
    sealer.do_send(herald_actors::fault_injection::Stall(HOLD * 2));
    client.send(60);
    let run = client.finish().await;
    run.assert_exactly_once_in_order(&broker);
    assert_eq!(
        broker.inits(),
        init_then_bump((0, FIRST_PID, FIRST_EPOCH + 1)),
        "one epoch bump"
    );
}

/// (c) UNKNOWN_PRODUCER_ID (the broker lost the producer's state for a partition, as after
/// retention removed it; it then refuses every batch of that producer whose sequence is not
/// 0): the same repair.
#[actix_rt::test]
async fn unknown_producer_id_bumps_epoch_and_resends_in_order() {
    let (broker, _run) = repair_case(false, Inject::ForgetProducer).await;

    let faulty = first_answered(&broker, UNKNOWN_PRODUCER_ID);
    assert_eq!((faulty.partition, faulty.epoch), (0, FIRST_EPOCH));
    assert_eq!(
        broker.inits(),
        init_then_bump((0, FIRST_PID, FIRST_EPOCH + 1)),
        "one epoch bump carrying the current producer id and epoch"
    );
    assert_resent_from_zero(&broker, &faulty, FIRST_PID, FIRST_EPOCH + 1);
}

/// (d) The broker refuses the bump (INVALID_PRODUCER_ID_MAPPING for an InitProducerId that
/// carries a producer id): the producer takes a new producer id (InitProducerId with -1/-1)
/// and sends again from sequence 0 under it.
#[actix_rt::test]
async fn refused_bump_takes_a_new_producer_id() {
    let (broker, _run) = repair_case(true, Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)).await;

    let faulty = first_answered(&broker, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let mut expected = init_then_bump((INVALID_PRODUCER_ID_MAPPING, -1, -1));
    expected.push(InitSeen {
        producer_id: -1,
        epoch: -1,
        answer: (0, SECOND_PID, 0),
    });
    assert_eq!(
        broker.inits(),
        expected,
        "bump refused, then a new producer id"
    );
    assert_resent_from_zero(&broker, &faulty, SECOND_PID, 0);
    // Partition 1 moved to the new producer id too (from sequence 0: checked by
    // assert_exactly_once_in_order) for what it sent after the switch.
    let p1 = epoch_batches(&broker, 1, SECOND_PID, 0);
    assert!(
        !p1.is_empty() && p1.iter().all(|b| b.written),
        "partition 1 under the new producer id: {p1:?}"
    );
}

/// (d') A broker before Kafka 2.5, whose InitProducerId (up to v2) carries no producer id or
/// epoch, so it cannot bump one (KIP-360): the repair takes a new producer id instead, without
/// sending the bump the broker could not read, and sends again from sequence 0 under it.
#[actix_rt::test]
async fn a_broker_without_epoch_bumps_gives_a_new_producer_id() {
    let broker = Broker::start_before_kip_360(second_batch_of_p0(Inject::Refuse(
        OUT_OF_ORDER_SEQUENCE_NUMBER,
    )));
    let run = repair_run(&broker, &[]).await;
    run.assert_exactly_once_in_order(&broker);

    let faulty = first_answered(&broker, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let fresh = |answer| InitSeen {
        producer_id: -1,
        epoch: -1,
        answer,
    };
    assert_eq!(
        broker.inits(),
        vec![
            fresh((0, FIRST_PID, FIRST_EPOCH)),
            fresh((0, SECOND_PID, 0))
        ],
        "a new producer id where a bump was needed"
    );
    assert_resent_from_zero(&broker, &faulty, SECOND_PID, 0);
    let requests = broker.fakes[0].requests();
    for (api, max) in [(ApiKey::InitProducerId, 2), (ApiKey::Produce, 8)] {
        let versions: Vec<i16> = requests
            .iter()
            .filter(|r| r.api() == Some(api))
            .map(|r| r.api_version)
            .collect();
        assert!(
            !versions.is_empty() && versions.iter().all(|v| *v <= max),
            "{api:?} at the versions the broker offers: {versions:?}"
        );
    }
}

/// (e) DUPLICATE_SEQUENCE_NUMBER for a batch (the broker has it already): a success, without
/// offsets, and no retry.
#[actix_rt::test]
async fn duplicate_sequence_is_success_without_retry() {
    let (broker, run) = repair_case(false, Inject::WriteAnswerDuplicate).await;

    let dup = first_answered(&broker, DUPLICATE_SEQUENCE_NUMBER);
    for tag in &dup.tags {
        let md = run.outcomes[tag][0].as_ref().expect("a success");
        assert_eq!(
            md.offset, -1,
            "record {tag}: offset unknown for a duplicate"
        );
    }
    let copies = broker
        .partition_batches(0)
        .iter()
        .filter(|b| b.base_sequence == dup.base_sequence && b.epoch == dup.epoch)
        .count();
    assert_eq!(copies, 1, "the duplicate batch was not sent again");
    assert_eq!(run.metrics.record_retry_total, 0, "no retry");
    assert_eq!(broker.inits().len(), 1, "no epoch bump");
}

/// (e, as it happens) A request is written but its answer is lost with the connection: the
/// producer sends the batch again under the same sequence, and the broker recognises the
/// duplicate (answering with the offset it was written at) instead of writing it twice.
#[actix_rt::test]
async fn lost_answer_resent_with_same_sequence_is_not_written_twice() {
    let (broker, run) = repair_case(false, Inject::WriteThenClose).await;

    let p0 = broker.partition_batches(0);
    let first = p0[1].clone();
    assert!(first.written, "the first copy was written: {first:?}");
    let again: Vec<&BatchSeen> = p0[2..]
        .iter()
        .filter(|b| (b.epoch, b.base_sequence) == (first.epoch, first.base_sequence))
        .collect();
    assert!(
        !again.is_empty()
            && again
                .iter()
                .all(|b| !b.written && b.answer == 0 && b.base_offset == first.base_offset),
        "sent again under the same sequence, answered as a duplicate with its offset: {again:?}"
    );
    assert!(run.metrics.record_resend_unknown_total > 0);
    assert_eq!(broker.inits().len(), 1, "no epoch bump");
}

/// (f) A retriable error (NOT_ENOUGH_REPLICAS) for batch N while N+1 is in flight: the broker,
/// missing N, answers N+1 with OUT_OF_ORDER_SEQUENCE_NUMBER. The producer retries N, then N+1,
/// with their original sequences (no epoch bump), and the log holds N before N+1.
#[actix_rt::test]
async fn retriable_error_then_out_of_order_keeps_sequences() {
    let (broker, run) = repair_case(false, Inject::Refuse(NOT_ENOUGH_REPLICAS)).await;

    let n = first_answered(&broker, NOT_ENOUGH_REPLICAS);
    let next = first_answered(&broker, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(next.partition, 0);
    assert_eq!(
        next.base_sequence,
        n.base_sequence + n.tags.len() as i32,
        "N+1 was in flight behind N and refused as out of order"
    );
    assert_eq!(
        broker.inits().len(),
        1,
        "no epoch bump: {:?}",
        broker.inits()
    );
    assert!(
        broker
            .batches()
            .iter()
            .all(|b| (b.producer_id, b.epoch) == (FIRST_PID, FIRST_EPOCH)),
        "every batch under the first producer id and epoch"
    );
    // N and N+1 were written later with their original sequences, N first.
    let written: Vec<i32> = broker
        .partition_batches(0)
        .iter()
        .filter(|b| b.written)
        .map(|b| b.base_sequence)
        .collect();
    let at_n = written.iter().position(|s| *s == n.base_sequence);
    let at_next = written.iter().position(|s| *s == next.base_sequence);
    assert!(
        matches!((at_n, at_next), (Some(a), Some(b)) if a < b),
        "N (sequence {}) written before N+1 (sequence {}): {written:?}",
        n.base_sequence,
        next.base_sequence
    );
    assert!(run.metrics.record_retry_total > 0);
}

/// (g) The default, one batch per partition in flight (`max.in.flight.batches.per.partition`
/// = 1): a retriable error for partition 0's second batch holds back everything behind it, so
/// the broker never sees a gap in a partition's sequences. The retry is the next batch of
/// partition 0 the broker receives; nothing is refused as out of order and the epoch is never
/// bumped. The records that came while a batch was out went in batches grown past batch.size,
/// not in more batches.
#[actix_rt::test]
async fn one_batch_in_flight_per_partition_never_needs_a_repair() {
    let broker = Broker::start(
        false,
        second_batch_of_p0(Inject::Refuse(NOT_ENOUGH_REPLICAS)),
    );
    let run = repair_run(&broker, &[("max.in.flight.batches.per.partition", "1")]).await;
    run.assert_exactly_once_in_order(&broker);

    let p0 = broker.partition_batches(0);
    let refused = p0
        .iter()
        .position(|b| b.answer == NOT_ENOUGH_REPLICAS)
        .expect("the fault was injected");
    assert_eq!(
        p0.get(refused + 1).map(|b| &b.tags),
        Some(&p0[refused].tags),
        "the refused batch went again before any younger batch of its partition: {p0:?}"
    );
    assert!(
        broker.answered(OUT_OF_ORDER_SEQUENCE_NUMBER).is_empty(),
        "no batch followed a refused one: {:?}",
        broker.batches()
    );
    assert_eq!(
        broker.inits().len(),
        1,
        "no epoch bump: {:?}",
        broker.inits()
    );
    let fits_batch_size = |tags: &[u64]| {
        let mut b = BatchBuilder::new(200, Compression::None, None);
        tags.iter().all(|t| {
            b.try_append(0, None, Some(value_of(*t).as_bytes()), &[])
                .is_ok()
        })
    };
    assert!(
        broker.batches().iter().any(|b| !fits_batch_size(&b.tags)),
        "a batch that waited for its partition's batch in flight grew past batch.size: {:?}",
        broker.batches()
    );
    assert!(run.metrics.record_retry_total > 0);
}

/// An epoch bump must not give a new sequence to a batch that may already be written. Two
/// brokers: partition 0 on node 1, partition 1 on node 2. Partition 1's batch M is written,
/// but its answer is lost with the connection, so the producer will send it again (after
/// retry.backoff.ms); meanwhile partition 0 gets OUT_OF_ORDER_SEQUENCE_NUMBER and the producer
/// bumps its epoch. M must go again under its original producer id, epoch and sequence (as the
/// Java client does: a batch that has a sequence keeps it, and a partition moves to the new
/// epoch only once nothing sent under the old one is unresolved), so that the broker
/// recognises it as a duplicate. Restamped under the new epoch at sequence 0, it is a new
/// batch to the broker and is written twice.
#[actix_rt::test]
async fn epoch_bump_keeps_sequences_of_batches_that_may_be_written() {
    let m = bump_while_partition_1_gets(Inject::WriteThenClose).await;
    assert_eq!(m.answer, 0, "M's answer was lost: {m:?}");
}

/// As above, with M written and then refused: Kafka appends a batch before it waits for
/// its followers, and answers REQUEST_TIMED_OUT when they do not catch up within the
/// request's timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the in-sync replicas shrank, and
/// NOT_LEADER_OR_FOLLOWER when leadership moved meanwhile: the batch may be in the log (on
/// the new leader too), and must keep its identity across the epoch bump. Before, only an
/// attempt lost with its connection counted as maybe written, and M was restamped under
/// the new epoch at sequence 0: written twice.
#[actix_rt::test]
async fn epoch_bump_keeps_sequences_of_batches_refused_after_they_were_written() {
    for code in [
        REQUEST_TIMED_OUT,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        NOT_LEADER_OR_FOLLOWER,
    ] {
        let m = bump_while_partition_1_gets(Inject::WriteThenRefuse(code)).await;
        assert_eq!(m.answer, code, "M was refused: {m:?}");
    }
}

/// Two brokers: partition 0 on node 1, partition 1 on node 2. Partition 1's second batch, M,
/// is written and meets `inject`; partition 0's is refused with OUT_OF_ORDER_SEQUENCE_NUMBER
/// and bumps the epoch well before M goes again (retry.backoff.ms 600). Asserts M went again
/// under its first identity and sequence, and every record is in the log once, in order.
/// Returns M as the broker first saw it.
async fn bump_while_partition_1_gets(inject: Inject) -> BatchSeen {
    let broker = Broker::start_cluster(2, false, move |b| {
        if b.nth != 1 || b.attempt != 0 || (b.producer_id, b.epoch) != (FIRST_PID, FIRST_EPOCH) {
            return None;
        }
        match b.partition {
            0 => Some(Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)),
            _ => Some(inject),
        }
    });
    let mut client = Client::start(
        &broker,
        &[
            ("batch.size", "200"),
            ("linger.ms", "5"),
            // M's resend comes well after the bump.
            ("retry.backoff.ms", "600"),
            ("retry.backoff.max.ms", "600"),
        ],
    );
    client.send_and_wait(4).await;
    client.send(60);
    let run = client.finish().await;

    let bumped = broker.inits();
    assert_eq!(
        bumped,
        init_then_bump((0, FIRST_PID, FIRST_EPOCH + 1)),
        "partition 0's fault bumped the epoch ({inject:?})"
    );
    let p1 = broker.partition_batches(1);
    let m = p1[1].clone();
    assert!(m.written, "M was written the first time: {m:?}");
    let again: Vec<&BatchSeen> = p1[2..].iter().filter(|b| b.tags == m.tags).collect();
    assert!(
        !again.is_empty()
            && again
                .iter()
                .all(|b| (b.producer_id, b.epoch, b.base_sequence)
                    == (m.producer_id, m.epoch, m.base_sequence)),
        "M sent again under its original identity and sequence ({inject:?}): first {m:?}, \
         again {again:?}"
    );
    run.assert_exactly_once_in_order(&broker);
    m
}

/// A failure reported for a batch sent under a producer id the producer has already replaced
/// must not bump the new one. Two brokers; the broker refuses bumps, and the second producer id
/// it hands out has the same epoch as the first. Partition 0 gets OUT_OF_ORDER_SEQUENCE_NUMBER:
/// the bump is refused, the producer takes the new producer id. Partition 1's batch, sent
/// under the old id, is answered OUT_OF_ORDER_SEQUENCE_NUMBER only after that: it is resent
/// under the new id anyway, so nothing needs a further bump. (`BumpEpoch` carries only
/// the failed epoch, and the accumulator compares only epochs, so the new id, having the same
/// epoch, is bumped for nothing.)
#[actix_rt::test]
async fn stale_failure_does_not_bump_a_new_producer_id() {
    let broker = Broker::start_cluster(2, true, |b| {
        if b.nth != 1 || b.attempt != 0 || (b.producer_id, b.epoch) != (FIRST_PID, 0) {
            return None;
        }
        match b.partition {
            0 => Some(Inject::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)),
            _ => Some(Inject::RefuseLate(OUT_OF_ORDER_SEQUENCE_NUMBER)),
        }
    });
    broker.state.lock().unwrap().fresh_ids = VecDeque::from([(FIRST_PID, 0), (SECOND_PID, 0)]);
    let run = repair_run(&broker, &[]).await;
    run.assert_exactly_once_in_order(&broker);
    let p1_refused = broker
        .answered(OUT_OF_ORDER_SEQUENCE_NUMBER)
        .into_iter()
        .find(|b| b.partition == 1)
        .expect("partition 1 was refused");
    assert_eq!(p1_refused.producer_id, FIRST_PID);
    let expected = vec![
        InitSeen {
            producer_id: -1,
            epoch: -1,
            answer: (0, FIRST_PID, 0),
        },
        InitSeen {
            producer_id: FIRST_PID,
            epoch: 0,
            answer: (INVALID_PRODUCER_ID_MAPPING, -1, -1),
        },
        InitSeen {
            producer_id: -1,
            epoch: -1,
            answer: (0, SECOND_PID, 0),
        },
    ];
    assert_eq!(
        broker.inits(),
        expected,
        "one refused bump, one new producer id, nothing more"
    );
}
