//! The metadata actor: bootstraps from `bootstrap.servers`, keeps the cluster view fresh and
//! publishes it in [`ClusterView`], which the router and accumulators read without a message
//! round trip. It also starts the connection actors for the brokers it learns, and obtains the
//! producer id for idempotence.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use herald::KafkaCode;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    InitProducerIdRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::backoff::Backoff;
use crate::connection::{self, Call, CallRequest, CallResponse, Connection};
use crate::messages::ClusterChanged;
use crate::metrics::Metrics;
use crate::Shared;

/// Leadership of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Leader's broker id, `-1` when there is none.
    pub leader: i32,
    /// Leader epoch, `-1` when unknown.
    pub leader_epoch: i32,
}

/// What the cluster says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic's name, shared with every record's metadata.
    pub name: Arc<str>,
    /// Indexed by partition id.
    pub partitions: Vec<PartitionMeta>,
    /// Partitions with a leader, for sticky partitioning.
    pub available: Vec<i32>,
}

/// The published cluster view: written by the metadata actor only, read by everyone.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// Known topics.
    pub topics: DashMap<Arc<str>, Arc<TopicMeta>>,
    /// Connection actors by broker id.
    pub brokers: DashMap<i32, Addr<Connection>>,
    /// Producer id and epoch, once obtained (idempotence only).
    pub producer: RwLock<ProducerIdState>,
}

/// Where the idempotent producer's identity stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProducerIdState {
    /// Idempotence off, or not asked yet.
    #[default]
    NotNeeded,
    /// InitProducerId is under way.
    Pending,
    /// Obtained.
    Ready {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        epoch: i16,
    },
    /// The broker refused for good (e.g. authorization); batches fail with this reason.
    Failed(Arc<str>),
}

impl ClusterView {
    /// The producer id state now. A poisoned lock is read through: the state is a plain value.
    pub fn producer_state(&self) -> ProducerIdState {
        match self.producer.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The connection of the leader of `topic`-`partition`, if leader and connection are known.
    pub fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<(i32, Addr<Connection>)> {
        let meta = self.topics.get(topic)?;
        let leader = meta.partitions.get(partition as usize)?.leader;
        if leader < 0 {
            return None;
        }
        let conn = self.brokers.get(&leader)?;
        Some((leader, conn.clone()))
    }
}

/// Router → metadata: these topics are wanted; fetch them now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AddTopics(pub Vec<Arc<str>>);

/// Anyone → metadata: leadership looks stale; refresh soon (coalesced).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Refresh;

/// Router → metadata: send `ClusterChanged` to this recipient after every refresh.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<ClusterChanged>);

/// Accumulator → metadata: the broker rejected our producer id or sequence in a way that
/// needs a new epoch (KIP-360); obtain one.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BumpEpoch {
    /// The producer id the caller saw fail.
    pub producer_id: i64,
    /// The epoch the caller saw fail. A failure under an identity the producer has already
    /// replaced (another id, or an older epoch) bumps nothing.
    pub failed_epoch: i16,
}

#[cfg(feature = "fault-injection")]
pub use crate::messages::Crash;
pub use crate::messages::Shutdown;

/// The metadata actor.
#[derive(Debug)]
pub struct Metadata {
    shared: Arc<Shared>,
    bootstrap: Vec<Addr<Connection>>,
    addresses: HashMap<i32, String>,
    wanted: BTreeSet<Arc<str>>,
    /// When each topic was last asked for by the router; a topic the cluster does not have is
    /// forgotten once nobody has asked for it for max.block.ms (its records have failed by
    /// then), so it is not polled for ever.
    requested: HashMap<Arc<str>, Instant>,
    subscribers: Vec<Recipient<ClusterChanged>>,
    refreshing: bool,
    again: bool,
    /// Rotates the node asked, so a dead broker is not asked twice in a row.
    next_node: usize,
    backoff: Backoff,
    /// Topics some record waits for that the cluster does not have (yet).
    missing: BTreeSet<Arc<str>>,
    refresh_timer: Option<SpawnHandle>,
    init_pid_in_flight: bool,
    terminated: bool,
}

impl Metadata {
    /// A metadata actor for the producer's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        Metadata {
            shared,
            bootstrap: Vec::new(),
            addresses: HashMap::new(),
            wanted: BTreeSet::new(),
            requested: HashMap::new(),
            subscribers: Vec::new(),
            refreshing: false,
            again: false,
            next_node: 0,
            backoff,
            missing: BTreeSet::new(),
            refresh_timer: None,
            init_pid_in_flight: false,
            terminated: false,
        }
    }

    fn start_connection(&self, node_id: i32, address: String) -> Addr<Connection> {
        let shared = self.shared.clone();
        Supervisor::start_in_arbiter(&self.shared.io, move |_| {
            Connection::new(node_id, address, shared)
        })
    }

    /// A connection to ask: known brokers first, bootstrap entries when none is known.
    fn pick_node(&mut self) -> Option<Addr<Connection>> {
        let mut nodes: Vec<(i32, Addr<Connection>)> = self
            .shared
            .cluster
            .brokers
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        nodes.sort_by_key(|(id, _)| *id);
        let mut candidates: Vec<Addr<Connection>> = nodes.into_iter().map(|(_, a)| a).collect();
        candidates.extend(self.bootstrap.iter().cloned());
        if candidates.is_empty() {
            return None;
        }
        let pick = candidates[self.next_node % candidates.len()].clone();
        Some(pick)
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        if self.refreshing {
            self.again = true;
            return;
        }
        let Some(conn) = self.pick_node() else { return };
        self.refreshing = true;
        self.again = false;
        let topics = self
            .wanted
            .iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
            })
            .collect();
        let request = MetadataRequest::default()
            .with_topics(Some(topics))
            .with_allow_auto_topic_creation(true);
        let started = Instant::now();
        ctx.spawn(
            conn.send(Call(CallRequest::Metadata(request)))
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.refreshing = false;
                    match res {
                        Ok(Ok(CallResponse::Metadata(resp))) => {
                            Metrics::add(&act.shared.metrics.metadata_refresh_total, 1);
                            tracing::debug!(
                                took_ms = started.elapsed().as_millis() as u64,
                                "metadata refreshed"
                            );
                            act.backoff.reset();
                            act.apply(&resp, ctx);
                        }
                        Ok(Ok(_)) => unreachable!("metadata call answered with another response"),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "metadata request failed");
                            act.next_node += 1;
                            let wait = act.backoff.next_delay();
                            act.schedule_refresh(wait, ctx);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "metadata connection unavailable");
                            act.next_node += 1;
                            let wait = act.backoff.next_delay();
                            act.schedule_refresh(wait, ctx);
                        }
                    }
                    if act.again {
                        act.refresh(ctx);
                    }
                }),
        );
    }

    fn schedule_refresh(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if let Some(h) = self.refresh_timer.take() {
            ctx.cancel_future(h);
        }
        self.refresh_timer = Some(ctx.run_later(after, |act, ctx| {
            act.refresh_timer = None;
            act.refresh(ctx);
        }));
    }

    fn apply(&mut self, resp: &MetadataResponse, ctx: &mut Context<Self>) {
        let _span = tracing::info_span!(
            "metadata_update",
            brokers = resp.brokers.len(),
            topics = resp.topics.len()
        )
        .entered();
        let cluster = &self.shared.cluster;
        for b in &resp.brokers {
            let id = b.node_id.0;
            let address = format!("{}:{}", b.host.as_str(), b.port);
            if self.addresses.get(&id) != Some(&address) {
                tracing::info!(broker = id, %address, "broker learned");
                let conn = self.start_connection(id, address.clone());
                if let Some(old) = cluster.brokers.insert(id, conn) {
                    old.do_send(connection::Shutdown);
                }
                self.addresses.insert(id, address);
            }
        }
        let mut errors = HashMap::new();
        let mut incomplete = false;
        self.missing.clear();
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            let name: Arc<str> = match self.wanted.get(name.0.as_str()) {
                Some(n) => n.clone(),
                None => Arc::from(name.0.as_str()),
            };
            match KafkaCode::from_code(t.error_code) {
                None => {}
                Some(
                    code
                    @ (KafkaCode::UNKNOWN_TOPIC_OR_PARTITION | KafkaCode::LEADER_NOT_AVAILABLE),
                ) => {
                    tracing::debug!(topic = %name, %code, "topic not available yet");
                    self.missing.insert(name);
                    continue;
                }
                Some(code) => {
                    tracing::warn!(topic = %name, %code, "topic metadata error");
                    errors.insert(name, code);
                    continue;
                }
            }
            let count = t
                .partitions
                .iter()
                .map(|p| p.partition_index + 1)
                .max()
                .unwrap_or(0)
                .max(0);
            let mut partitions = vec![
                PartitionMeta {
                    leader: -1,
                    leader_epoch: -1
                };
                count as usize
            ];
            for p in &t.partitions {
                if p.partition_index < 0 {
                    continue;
                }
                let leader = if KafkaCode::from_code(p.error_code).is_some() && p.leader_id.0 < 0 {
                    -1
                } else {
                    p.leader_id.0
                };
                partitions[p.partition_index as usize] = PartitionMeta {
                    leader,
                    leader_epoch: p.leader_epoch,
                };
            }
            let available: Vec<i32> = (0..count)
                .filter(|&i| partitions[i as usize].leader >= 0)
                .collect();
            if available.len() < count as usize || count == 0 {
                incomplete = true;
            }
            let meta = TopicMeta {
                name: name.clone(),
                partitions,
                available,
            };
            let changed = cluster
                .topics
                .get(&*name)
                .map(|old| **old != meta)
                .unwrap_or(true);
            if changed {
                tracing::info!(topic = %name, partitions = count, "topic metadata updated");
                cluster.topics.insert(name, Arc::new(meta));
            }
        }
        let max_block = self.shared.config.max_block;
        let stale: Vec<Arc<str>> = self
            .missing
            .iter()
            .filter(|t| {
                self.requested
                    .get(*t)
                    .is_none_or(|at| at.elapsed() >= max_block)
            })
            .cloned()
            .collect();
        for t in stale {
            tracing::debug!(topic = %t, "forgetting a topic the cluster does not have");
            self.missing.remove(&t);
            self.wanted.remove(&t);
            self.requested.remove(&t);
        }
        self.ensure_producer_id(ctx);
        let note = ClusterChanged {
            errors: Arc::new(errors),
        };
        for s in &self.subscribers {
            s.do_send(note.clone());
        }
        let retry = self.shared.config.retry_backoff;
        if incomplete || !self.missing.is_empty() {
            self.schedule_refresh(retry, ctx);
        } else {
            self.schedule_refresh(self.shared.config.metadata_max_age, ctx);
        }
    }

    /// Starts InitProducerId when idempotence needs an id and none is held or pending.
    fn ensure_producer_id(&mut self, ctx: &mut Context<Self>) {
        if !self.shared.config.enable_idempotence || self.init_pid_in_flight {
            return;
        }
        let current = self.shared.cluster.producer_state();
        let (pid, epoch) = match current {
            ProducerIdState::Ready { .. } | ProducerIdState::Failed(_) => return,
            ProducerIdState::NotNeeded | ProducerIdState::Pending => (-1, -1),
        };
        self.request_producer_id(pid, epoch, ctx);
    }

    fn request_producer_id(&mut self, pid: i64, epoch: i16, ctx: &mut Context<Self>) {
        let Some(conn) = self.pick_node() else { return };
        self.init_pid_in_flight = true;
        if let Ok(mut s) = self.shared.cluster.producer.write() {
            *s = ProducerIdState::Pending;
        }
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(self.shared.config.transaction_timeout.as_millis() as i32)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch);
        ctx.spawn(
            conn.send(Call(CallRequest::InitProducerId(request)))
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.init_pid_in_flight = false;
                    let retry = |act: &mut Self, ctx: &mut Context<Self>, why: String| {
                        tracing::warn!(reason = %why, "InitProducerId failed, retrying");
                        act.next_node += 1;
                        let wait = act.backoff.next_delay();
                        ctx.run_later(wait, move |act, ctx| {
                            act.request_producer_id(pid, epoch, ctx)
                        });
                    };
                    match res {
                        Ok(Ok(CallResponse::InitProducerId(r))) => {
                            match KafkaCode::from_code(r.error_code) {
                                None => {
                                    tracing::info!(
                                        producer_id = r.producer_id.0,
                                        epoch = r.producer_epoch,
                                        "producer id obtained"
                                    );
                                    if let Ok(mut s) = act.shared.cluster.producer.write() {
                                        *s = ProducerIdState::Ready {
                                            producer_id: r.producer_id.0,
                                            epoch: r.producer_epoch,
                                        };
                                    }
                                    let note = ClusterChanged::default();
                                    for s in &act.subscribers {
                                        s.do_send(note.clone());
                                    }
                                }
                                Some(code)
                                    if code.retriable()
                                        || code == KafkaCode::COORDINATOR_NOT_AVAILABLE =>
                                {
                                    retry(act, ctx, code.to_string())
                                }
                                Some(code) if pid >= 0 => {
                                    // The broker cannot bump this id's epoch (before KIP-360,
                                    // or it lost the id): a fresh producer id restarts
                                    // sequences just as well; the Java client falls back alike.
                                    tracing::warn!(%code, "epoch bump refused; requesting a new producer id");
                                    act.request_producer_id(-1, -1, ctx);
                                }
                                Some(code) => {
                                    tracing::error!(%code, "InitProducerId refused");
                                    if let Ok(mut s) = act.shared.cluster.producer.write() {
                                        *s = ProducerIdState::Failed(Arc::from(format!(
                                            "InitProducerId failed: {code}"
                                        )));
                                    }
                                    let note = ClusterChanged::default();
                                    for s in &act.subscribers {
                                        s.do_send(note.clone());
                                    }
                                }
                            }
                        }
                        Ok(Ok(_)) => {
                            unreachable!("InitProducerId call answered with another response")
                        }
                        Ok(Err(e)) => retry(act, ctx, e.to_string()),
                        Err(e) => retry(act, ctx, e.to_string()),
                    }
                }),
        );
    }
}

impl Actor for Metadata {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.bootstrap.is_empty() {
            let servers = self.shared.config.bootstrap_servers.clone();
            for (i, address) in servers.into_iter().enumerate() {
                let conn = self.start_connection(-1 - i as i32, address);
                self.bootstrap.push(conn);
            }
        }
        self.refresh(ctx);
    }
}

impl Supervised for Metadata {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        Metrics::add(&self.shared.metrics.restarts, 1);
        if self.terminated {
            return;
        }
        tracing::warn!("metadata actor restarted; refetching");
        // Timers and the request in flight died with the old context.
        self.refreshing = false;
        self.init_pid_in_flight = false;
        self.refresh_timer = None;
        if let Ok(mut s) = self.shared.cluster.producer.write() {
            if *s == ProducerIdState::Pending {
                *s = ProducerIdState::NotNeeded;
            }
        }
    }
}

impl Handler<AddTopics> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: AddTopics, ctx: &mut Context<Self>) {
        let mut new = false;
        let now = Instant::now();
        for t in msg.0 {
            self.requested.insert(t.clone(), now);
            new |= self.wanted.insert(t);
        }
        if new || !self.missing.is_empty() {
            self.refresh(ctx);
        }
    }
}

impl Handler<Refresh> for Metadata {
    type Result = ();

    fn handle(&mut self, _: Refresh, ctx: &mut Context<Self>) {
        // Coalesce bursts (a broker failure makes every partition ask): at most one refresh
        // per retry.backoff.ms unless one is already scheduled sooner.
        if self.refresh_timer.is_none() || !self.refreshing {
            let backoff = self.shared.config.retry_backoff;
            self.schedule_refresh(backoff.min(Duration::from_millis(50)), ctx);
        }
    }
}

impl Handler<Subscribe> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<BumpEpoch> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: BumpEpoch, ctx: &mut Context<Self>) {
        let current = self.shared.cluster.producer_state();
        if let ProducerIdState::Ready { producer_id, epoch } = current {
            if (producer_id, epoch) == (msg.producer_id, msg.failed_epoch)
                && !self.init_pid_in_flight
            {
                tracing::warn!(producer_id, epoch, "bumping producer epoch");
                self.request_producer_id(producer_id, epoch, ctx);
            }
        }
    }
}

impl Handler<Shutdown> for Metadata {
    type Result = ResponseActFuture<Self, ()>;

    /// Closes every connection gracefully and resolves when all are closed.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.terminated = true;
        let mut closing: Vec<_> = self
            .bootstrap
            .drain(..)
            .map(|c| c.send(connection::Shutdown))
            .collect();
        closing.extend(
            self.shared
                .cluster
                .brokers
                .iter()
                .map(|e| e.value().send(connection::Shutdown)),
        );
        self.shared.cluster.brokers.clear();
        self.subscribers.clear();
        let all = futures_util::future::join_all(closing);
        Box::pin(all.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Metadata {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        tracing::warn!("metadata actor crashing on request (fault injection)");
        ctx.stop();
    }
}
