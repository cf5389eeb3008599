//! A small model of a Kafka partition leader's producer state, served by our scripted fake
//! broker, for the idempotence tests (`tests/it/idempotence.rs`, whose module docs describe
//! the rules it keeps). librdkafka's mock cluster checks sequences only for transactional
//! producers; Apache Kafka's own tests (`tests/it/kafka/`) cannot inject these faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use herald::KafkaCode;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest};

use crate::support::fake_broker::{self, Action, FakeBroker, RequestContext};

pub(crate) const TOPIC: &str = "idempotence";
pub(crate) const PARTITIONS: i32 = 2;
/// The producer id the broker hands out first, and its epoch.
pub(crate) const FIRST_PID: i64 = 4242;
pub(crate) const FIRST_EPOCH: i16 = 3;
/// The producer id handed out second (epoch 0).
pub(crate) const SECOND_PID: i64 = 5353;
/// How long a faulty batch's answer is held, so that the batches after it are in flight.
pub(crate) const HOLD: Duration = Duration::from_millis(150);

pub(crate) const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code();
pub(crate) const DUPLICATE_SEQUENCE_NUMBER: i16 = KafkaCode::DUPLICATE_SEQUENCE_NUMBER.code();
pub(crate) const INVALID_PRODUCER_EPOCH: i16 = KafkaCode::INVALID_PRODUCER_EPOCH.code();
pub(crate) const INVALID_PRODUCER_ID_MAPPING: i16 = KafkaCode::INVALID_PRODUCER_ID_MAPPING.code();
pub(crate) const UNKNOWN_PRODUCER_ID: i16 = KafkaCode::UNKNOWN_PRODUCER_ID.code();
pub(crate) const NOT_ENOUGH_REPLICAS: i16 = KafkaCode::NOT_ENOUGH_REPLICAS.code();
pub(crate) const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 =
    KafkaCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND.code();
pub(crate) const REQUEST_TIMED_OUT: i16 = KafkaCode::REQUEST_TIMED_OUT.code();
pub(crate) const NOT_LEADER_OR_FOLLOWER: i16 = KafkaCode::NOT_LEADER_OR_FOLLOWER.code();
pub(crate) const INVALID_RECORD: i16 = KafkaCode::INVALID_RECORD.code();

/// What a fault hook sees of a batch before the broker handles it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchView {
    pub(crate) partition: i32,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
    /// Position among all batches of this partition the broker received, from 0.
    pub(crate) nth: usize,
    /// How often this partition received this producer id, epoch and sequence before.
    pub(crate) attempt: usize,
}

/// A fault for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inject {
    /// Answer this error code without writing the batch (sequence state unchanged).
    Refuse(i16),
    /// Forget this producer's state on this partition first (as after retention removed
    /// it), then handle the batch as usual.
    ForgetProducer,
    /// Write the batch, but answer DUPLICATE_SEQUENCE_NUMBER (as an older broker that found it
    /// already written).
    WriteAnswerDuplicate,
    /// Write the batch, then close the connection without answering (the answer is lost).
    WriteThenClose,
    /// As `Refuse`, but hold the answer three times longer.
    RefuseLate(i16),
    /// Write the batch, then answer this error code (as Kafka's REQUEST_TIMED_OUT when
    /// followers did not catch up within the request's timeout, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND: the leader has the batch all the same).
    WriteThenRefuse(i16),
}

pub(crate) type Hook = Box<dyn FnMut(&BatchView) -> Option<Inject> + Send>;

/// One batch as the broker received it, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct BatchSeen {
    pub(crate) partition: i32,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) tags: Vec<u64>,
    /// 0 when written (or a duplicate answered with its offset), else the error code.
    pub(crate) answer: i16,
    /// Whether this copy was appended to the log.
    pub(crate) written: bool,
    /// The offset answered (-1 with an error).
    pub(crate) base_offset: i64,
}

/// One InitProducerId request and the answer `(error, producer id, epoch)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitSeen {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) answer: (i16, i64, i16),
}

/// A partition leader's state for one producer id.
#[derive(Debug, Clone)]
pub(crate) struct ProducerState {
    pub(crate) epoch: i16,
    pub(crate) last_sequence: i32,
    /// `(first sequence, last sequence, base offset)` of the last five batches written.
    pub(crate) recent: VecDeque<(i32, i32, i64)>,
}

pub(crate) enum Check {
    Append,
    Duplicate(i64),
    Refuse(i16),
}

pub(crate) struct BrokerState {
    pub(crate) hook: Hook,
    pub(crate) refuse_bumps: bool,
    /// Producer ids still to hand out, with their first epoch.
    pub(crate) fresh_ids: VecDeque<(i64, i16)>,
    /// The coordinator's current epoch per producer id.
    pub(crate) epochs: HashMap<i64, i16>,
    pub(crate) producers: HashMap<(i64, i32), ProducerState>,
    /// Per partition, the tag of the record at each offset.
    pub(crate) log: BTreeMap<i32, Vec<u64>>,
    pub(crate) batches: Vec<BatchSeen>,
    pub(crate) inits: Vec<InitSeen>,
    /// Things a Kafka broker would refuse outright (e.g. two batches of a partition in one
    /// request); a test fails when this is not empty.
    pub(crate) violations: Vec<String>,
}

impl BrokerState {
    pub(crate) fn check(&self, partition: i32, b: &BatchView, last: i32) -> Check {
        let Some(s) = self.producers.get(&(b.producer_id, partition)) else {
            return if b.base_sequence == 0 {
                Check::Append
            } else {
                Check::Refuse(UNKNOWN_PRODUCER_ID)
            };
        };
        if b.epoch < s.epoch {
            return Check::Refuse(INVALID_PRODUCER_EPOCH);
        }
        if b.epoch > s.epoch {
            return if b.base_sequence == 0 {
                Check::Append
            } else {
                Check::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if let Some(&(_, _, offset)) = s
            .recent
            .iter()
            .find(|(first, l, _)| *first == b.base_sequence && *l == last)
        {
            return Check::Duplicate(offset);
        }
        if b.base_sequence != s.last_sequence.wrapping_add(1) {
            return Check::Refuse(OUT_OF_ORDER_SEQUENCE_NUMBER);
        }
        Check::Append
    }

    /// Appends the batch; returns its base offset.
    pub(crate) fn append(&mut self, partition: i32, b: &BatchView, last: i32, tags: &[u64]) -> i64 {
        let log = self.log.entry(partition).or_default();
        let base_offset = log.len() as i64;
        log.extend_from_slice(tags);
        let s = self
            .producers
            .entry((b.producer_id, partition))
            .or_insert(ProducerState {
                epoch: b.epoch,
                last_sequence: -1,
                recent: VecDeque::new(),
            });
        if s.epoch != b.epoch {
            s.epoch = b.epoch;
            s.recent.clear();
        }
        s.last_sequence = last;
        s.recent.push_back((b.base_sequence, last, base_offset));
        if s.recent.len() > 5 {
            s.recent.pop_front();
        }
        base_offset
    }

    pub(crate) fn init_producer_id(&mut self, ctx: &RequestContext) -> Vec<Action> {
        let request: InitProducerIdRequest = ctx.decode();
        let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
        let answer = if pid < 0 {
            // Past the ids a case chose: 9000, 9001, ... at epoch 0.
            let (new, e) = self
                .fresh_ids
                .pop_front()
                .unwrap_or((9000 + self.inits.len() as i64, 0));
            self.epochs.insert(new, e);
            (0, new, e)
        } else if self.refuse_bumps {
            (INVALID_PRODUCER_ID_MAPPING, -1, -1)
        } else {
            match self.epochs.get_mut(&pid) {
                Some(current) if *current == epoch => {
                    *current += 1;
                    (0, pid, *current)
                }
                Some(_) => (INVALID_PRODUCER_EPOCH, -1, -1),
                None => (INVALID_PRODUCER_ID_MAPPING, -1, -1),
            }
        };
        self.inits.push(InitSeen {
            producer_id: pid,
            epoch,
            answer,
        });
        vec![Action::Respond(fake_broker::init_producer_id_response(
            ctx.api_version,
            answer.0,
            answer.1,
            answer.2,
        ))]
    }

    pub(crate) fn produce(&mut self, ctx: &RequestContext) -> Vec<Action> {
        let mut acks: Vec<(i32, i64, i16)> = Vec::new();
        let mut hold = Duration::ZERO;
        let mut close = false;
        for part in fake_broker::produce_request_batches(ctx) {
            let p = part.partition;
            let batches = match part.batches {
                Ok(b) if b.len() == 1 && part.topic == TOPIC => b,
                other => {
                    self.violations.push(format!(
                        "{}-{p}: not exactly one decodable batch: {other:?}",
                        part.topic
                    ));
                    acks.push((p, -1, INVALID_RECORD));
                    continue;
                }
            };
            let batch = &batches[0];
            let tags: Vec<u64> = batch
                .records
                .iter()
                .map(|r| tag_of(r.value.as_deref().unwrap_or_default()))
                .collect();
            let last = batch
                .base_sequence
                .wrapping_add(tags.len() as i32)
                .wrapping_sub(1);
            let view = BatchView {
                partition: p,
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                base_sequence: batch.base_sequence,
                nth: self.batches.iter().filter(|s| s.partition == p).count(),
                attempt: self
                    .batches
                    .iter()
                    .filter(|s| {
                        s.partition == p
                            && s.producer_id == batch.producer_id
                            && s.epoch == batch.producer_epoch
                            && s.base_sequence == batch.base_sequence
                    })
                    .count(),
            };
            let inject = (self.hook)(&view);
            hold = hold.max(match inject {
                None => Duration::ZERO,
                Some(Inject::RefuseLate(_)) => HOLD * 3,
                Some(_) => HOLD,
            });
            if inject == Some(Inject::ForgetProducer) {
                self.producers.remove(&(view.producer_id, p));
            }
            let (answer, written, base_offset) = match inject {
                Some(Inject::Refuse(code) | Inject::RefuseLate(code)) => (code, false, -1),
                Some(Inject::WriteAnswerDuplicate) => {
                    self.append(p, &view, last, &tags);
                    (DUPLICATE_SEQUENCE_NUMBER, true, -1)
                }
                Some(Inject::WriteThenRefuse(code)) => {
                    self.append(p, &view, last, &tags);
                    (code, true, -1)
                }
                Some(Inject::WriteThenClose) => {
                    close = true;
                    let offset = self.append(p, &view, last, &tags);
                    (0, true, offset)
                }
                Some(Inject::ForgetProducer) | None => match self.check(p, &view, last) {
                    Check::Append => (0, true, self.append(p, &view, last, &tags)),
                    Check::Duplicate(offset) => (0, false, offset),
                    Check::Refuse(code) => (code, false, -1),
                },
            };
            self.batches.push(BatchSeen {
                partition: p,
                producer_id: view.producer_id,
                epoch: view.epoch,
                base_sequence: view.base_sequence,
                tags,
                answer,
                written,
                base_offset,
            });
            acks.push((p, base_offset, answer));
        }
        let mut actions = Vec::new();
        if hold > Duration::ZERO {
            actions.push(Action::Delay(hold));
        }
        if close {
            actions.push(Action::Close);
            return actions;
        }
        let acks: Vec<(&str, i32, i64, i16)> =
            acks.iter().map(|&(p, o, e)| (TOPIC, p, o, e)).collect();
        actions.push(Action::Respond(fake_broker::produce_response_with_errors(
            ctx.api_version,
            &acks,
        )));
        actions
    }
}

/// What Kafka 2.4 offers of the APIs a producer uses: InitProducerId up to v2 (v3, with the
/// producer id and epoch of KIP-360, came with 2.5) and Produce up to v8 (Herald's floor is
/// v3).
pub(crate) const KAFKA_2_4: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 8),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 2),
];

/// The fake broker(s) running the model: node ids 1, 2, ...; partition `p` is led by node
/// `p % brokers + 1`.
pub(crate) struct Broker {
    pub(crate) fakes: Vec<FakeBroker>,
    pub(crate) state: Arc<Mutex<BrokerState>>,
    /// The `client.id` of the one producer this model serves. Tests run side by side, and
    /// a port freed by one test's broker can be this one's: a producer of that test still
    /// reconnecting would otherwise be served too (its InitProducerId was once counted here
    /// as a bump). Requests from any other client close their connection.
    pub(crate) client_id: String,
}

impl Broker {
    /// One broker whose faults come from `hook`; `refuse_bumps` makes InitProducerId with a
    /// producer id fail with INVALID_PRODUCER_ID_MAPPING.
    pub(crate) fn start(
        refuse_bumps: bool,
        hook: impl FnMut(&BatchView) -> Option<Inject> + Send + 'static,
    ) -> Broker {
        Broker::start_cluster(1, refuse_bumps, hook)
    }

    /// One broker as Kafka 2.4 (InitProducerId up to v2, before KIP-360: no epoch bump)
    /// whose faults come from `hook`.
    pub(crate) fn start_before_kip_360(
        hook: impl FnMut(&BatchView) -> Option<Inject> + Send + 'static,
    ) -> Broker {
        Broker::start_cluster_with(1, false, KAFKA_2_4, hook)
    }

    /// `brokers` brokers sharing one model (the partitions' states are independent anyway).
    pub(crate) fn start_cluster(
        brokers: usize,
        refuse_bumps: bool,
        hook: impl FnMut(&BatchView) -> Option<Inject> + Send + 'static,
    ) -> Broker {
        Broker::start_cluster_with(brokers, refuse_bumps, fake_broker::ADVERTISED, hook)
    }

    /// [`Broker::start_cluster`] advertising `apis` in ApiVersions.
    fn start_cluster_with(
        brokers: usize,
        refuse_bumps: bool,
        apis: &'static [(ApiKey, i16, i16)],
        hook: impl FnMut(&BatchView) -> Option<Inject> + Send + 'static,
    ) -> Broker {
        let state = Arc::new(Mutex::new(BrokerState {
            hook: Box::new(hook),
            refuse_bumps,
            fresh_ids: VecDeque::from([(FIRST_PID, FIRST_EPOCH), (SECOND_PID, 0)]),
            epochs: HashMap::new(),
            producers: HashMap::new(),
            log: BTreeMap::new(),
            batches: Vec::new(),
            inits: Vec::new(),
            violations: Vec::new(),
        }));
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_id = format!("idempotence-{}-{n}", std::process::id());
        let addresses: Arc<OnceLock<Vec<SocketAddr>>> = Arc::new(OnceLock::new());
        let fakes: Vec<FakeBroker> = (0..brokers)
            .map(|_| {
                let st = state.clone();
                let addresses = addresses.clone();
                let ours = client_id.clone();
                FakeBroker::start(move |ctx| match ctx.api() {
                    _ if ctx.client_id.as_deref() != Some(ours.as_str()) => vec![Action::Close],
                    Some(ApiKey::ApiVersions) => vec![Action::Respond(
                        fake_broker::api_versions_response_with(ctx.api_version, apis),
                    )],
                    Some(ApiKey::Metadata) => {
                        let addrs = addresses.get().expect("addresses are set");
                        let hosts: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                        let nodes: Vec<(i32, &str, u16)> = addrs
                            .iter()
                            .zip(&hosts)
                            .enumerate()
                            .map(|(i, (a, h))| (i as i32 + 1, h.as_str(), a.port()))
                            .collect();
                        let leaders: Vec<i32> = (0..PARTITIONS)
                            .map(|p| p % addrs.len() as i32 + 1)
                            .collect();
                        vec![Action::Respond(
                            fake_broker::metadata_response_with_leaders(
                                ctx.api_version,
                                &nodes,
                                &[(TOPIC, leaders)],
                            ),
                        )]
                    }
                    Some(ApiKey::InitProducerId) => st.lock().unwrap().init_producer_id(ctx),
                    Some(ApiKey::Produce) => st.lock().unwrap().produce(ctx),
                    _ => vec![Action::Close],
                })
            })
            .collect();
        let _ = addresses.set(fakes.iter().map(|f| f.addr).collect());
        Broker {
            fakes,
            state,
            client_id,
        }
    }

    pub(crate) fn batches(&self) -> Vec<BatchSeen> {
        self.state.lock().unwrap().batches.clone()
    }

    pub(crate) fn inits(&self) -> Vec<InitSeen> {
        self.state.lock().unwrap().inits.clone()
    }

    /// The batches of `partition` the broker received, in arrival order.
    pub(crate) fn partition_batches(&self, partition: i32) -> Vec<BatchSeen> {
        self.batches()
            .into_iter()
            .filter(|b| b.partition == partition)
            .collect()
    }

    /// The answers the broker gave with this error code.
    pub(crate) fn answered(&self, code: i16) -> Vec<BatchSeen> {
        self.batches()
            .into_iter()
            .filter(|b| b.answer == code)
            .collect()
    }
}

pub(crate) fn value_of(tag: u64) -> String {
    // Padded so that a small batch.size holds only a few records.
    format!("record-{tag:06}-{}", "x".repeat(40))
}

pub(crate) fn tag_of(value: &[u8]) -> u64 {
    let s = std::str::from_utf8(value).expect("utf-8 value");
    s.strip_prefix("record-")
        .and_then(|s| s.get(..6))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a test record: {s:?}"))
}

pub(crate) fn partition_of(tag: u64) -> i32 {
    (tag % PARTITIONS as u64) as i32
}
