//! The metadata actor: bootstraps from `bootstrap.servers`, keeps the cluster view fresh and
//! publishes it in [`ClusterView`](crate::cluster::ClusterView), which the router and
//! accumulators read without a message round trip. It also starts the connection actors for
//! the brokers it learns (and publishes a [`BrokerLink`] to each), and obtains the producer
//! id for idempotence.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use herald::{ErrorKind, KafkaCode, MetadataRecoveryStrategy, Node, PartitionInfo, ProtocolError};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::backoff::Backoff;
use crate::cluster::{
    available, local, merge_topic, BrokerLink, PartitionMeta, ProducerIdState, TopicMeta,
};
use crate::connection::Connection;
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::cluster::{
    topic_error, AddTopics, BrokerListed, BrokerNamed, BumpEpoch, ClusterChanged, ForgetTopics,
    PartitionsFor, Refresh, Subscribe,
};
use crate::messages::request::{GetMetadata, InitProducerId, RequestError};
use crate::messages::Shutdown;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::supervisor::{ActorKind, PanicWindow, Supervisor};

/// A broker learnt from metadata, and the connection this actor started for it.
#[derive(Debug)]
struct Broker {
    address: String,
    connection: Addr<Connection>,
}

/// A partition's replica sets as the last metadata response gave them, for
/// [`PartitionsFor`] (the cluster view keeps only what routing needs).
#[derive(Debug, Clone, Default)]
struct Replicas {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline: Vec<i32>,
}

/// A [`PartitionsFor`] waiting for its topic's metadata.
#[derive(Debug)]
struct Lookup {
    since: Instant,
    reply: tokio::sync::oneshot::Sender<Result<Vec<PartitionInfo>, ErrorKind>>,
}

/// What a request to a connection came back with.
type Answered<T> = Result<Result<T, RequestError>, MailboxError>;

/// The metadata actor.
#[derive(Debug)]
pub(crate) struct Metadata {
    shared: Arc<Shared>,
    /// Connections to the `bootstrap.servers` entries, with their addresses.
    bootstrap: Vec<(String, Addr<Connection>)>,
    /// Known brokers by id (their links are published in the cluster view).
    brokers: BTreeMap<i32, Broker>,
    /// The brokers the last metadata response listed (see `BrokerListed`).
    listed: BTreeSet<i32>,
    wanted: BTreeSet<Arc<str>>,
    /// When each topic was last asked for by the router; a topic the cluster does not have is
    /// forgotten once nobody has asked for it for max.block.ms (its records have failed by
    /// then), so it is not polled for ever, unless the view has it (it is in use, and the
    /// router forgets it when idle).
    requested: HashMap<Arc<str>, Instant>,
    subscribers: Vec<Recipient<ClusterChanged>>,
    refreshing: bool,
    again: bool,
    /// The next refresh goes without waiting out retry.backoff.ms since the last request:
    /// a broker was lost (see `Refresh::BrokerLost`).
    skip_pacing: bool,
    /// Rotates the node asked, so a dead broker is not asked twice in a row.
    next_node: usize,
    backoff: Backoff,
    /// Topics some record waits for that the cluster does not have (yet).
    missing: BTreeSet<Arc<str>>,
    refresh_timer: Option<SpawnHandle>,
    /// When `refresh_timer` fires.
    refresh_due: Option<Instant>,
    init_pid_in_flight: bool,
    terminated: bool,
    /// The last connection error of each node asked since the last successful metadata
    /// request, by address, and under the empty key the last broker Herald could not speak
    /// to (no common version of an API it needs); published as `ClusterView::unreachable`.
    unreachable: BTreeMap<String, String>,
    /// Topics whose partitions the last metadata response listed in a way that cannot be
    /// used (see [`partition_count`]), with why; kept out of the cluster view.
    unusable: BTreeMap<Arc<str>, String>,
    /// Topics the brokers answered for with an error meaning "not there (yet)"
    /// (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE), with the code and when it was
    /// last given: named in the error of a record whose topic never arrives. Kept a while
    /// after nobody asks for the topic any more, for the records whose wait ends then.
    absent: BTreeMap<Arc<str>, (KafkaCode, Instant)>,
    /// Nodes whose last metadata request failed to connect, by address: not asked again
    /// before the instant given while another node may be up.
    down: HashMap<String, Instant>,
    /// When the last metadata request was sent: refreshes are paced by retry.backoff.ms.
    last_sent: Option<Instant>,
    /// Since when metadata requests have failed without a success between (KIP-1102's
    /// rebootstrap trigger counts from here).
    failing_since: Option<Instant>,
    /// The brokers the last metadata response listed, for [`PartitionsFor`].
    nodes: BTreeMap<i32, Node>,
    /// Each topic's replica sets by partition, from the last response that had it.
    replicas: HashMap<Arc<str>, Vec<Replicas>>,
    /// `PartitionsFor` calls waiting for their topic, answered at the refresh that brings it
    /// (or fails it), or at max.block.ms.
    lookups: HashMap<Arc<str>, Vec<Lookup>>,
    lookup_timer: Option<SpawnHandle>,
}

impl Metadata {
    /// A metadata actor for the producer's shared state.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        Metadata {
            shared,
            bootstrap: Vec::new(),
            brokers: BTreeMap::new(),
            listed: BTreeSet::new(),
            wanted: BTreeSet::new(),
            requested: HashMap::new(),
            subscribers: Vec::new(),
            refreshing: false,
            again: false,
            skip_pacing: false,
            next_node: 0,
            backoff,
            missing: BTreeSet::new(),
            refresh_timer: None,
            refresh_due: None,
            init_pid_in_flight: false,
            terminated: false,
            unreachable: BTreeMap::new(),
            unusable: BTreeMap::new(),
            absent: BTreeMap::new(),
            down: HashMap::new(),
            last_sent: None,
            failing_since: None,
            nodes: BTreeMap::new(),
            replicas: HashMap::new(),
            lookups: HashMap::new(),
            lookup_timer: None,
        }
    }

    fn start_connection(&self, node_id: i32, address: String) -> Addr<Connection> {
        let shared = self.shared.clone();
        // One window for the connection's own panics and its socket tasks'.
        let panics = PanicWindow::default();
        let counted = panics.clone();
        Supervisor::start_in_arbiter_counting(
            &self.shared.io,
            ActorKind::Connection,
            self.shared.supervision.clone(),
            panics,
            move |_| Connection::new(node_id, address, shared, counted),
        )
    }

    /// A connection to ask: the least loaded of the known brokers, or of the
    /// `bootstrap.servers` entries before any broker is known and, with
    /// `metadata.recovery.strategy=rebootstrap` (KIP-899), while every known broker is down
    /// ([`use_bootstrap`]); skipping nodes known to be down, ties broken by the rotation
    /// (`next_node`, moved on after a failure) ([`pick`]).
    ///
    /// Least loaded, as Java's `leastLoadedNode`: a broker serves a connection's requests one
    /// at a time, so a metadata request behind Produce requests waits for them. When a
    /// leader dies, every acks=all request to the other brokers waits for the dead follower
    /// to leave the ISR, and a metadata request queued behind them came back after 6 s on the
    /// three-node cluster (librdkafka's after 4 s). The bootstrap entries' connections, which
    /// carry no Produce requests, are candidates too with the default `rebootstrap` strategy,
    /// after any idle connected broker, as librdkafka's bootstrap brokers are; a node without
    /// a socket comes after the idle connected ones (it may be the one that died). Only the
    /// brokers the last response listed are asked, as Java's `leastLoadedNode` takes the
    /// nodes of the current metadata: a broker that left the cluster (its connection kept
    /// in case it comes back) would otherwise be tried first, a socketless node scoring
    /// below a busy live one, at the cost of a failed connect each time.
    fn pick_node(&self) -> Option<Addr<Connection>> {
        let now = Instant::now();
        let known: Vec<(i32, &Broker)> = self
            .brokers
            .iter()
            .filter(|(id, _)| self.listed.is_empty() || self.listed.contains(*id))
            .map(|(id, b)| (*id, b))
            .collect();
        let brokers: Vec<(&str, &Addr<Connection>)> = known
            .iter()
            .map(|(_, b)| (b.address.as_str(), &b.connection))
            .collect();
        let down_of = |list: &[(&str, &Addr<Connection>)]| -> Vec<Option<Instant>> {
            list.iter()
                .map(|(address, _)| self.down.get(*address).copied())
                .collect()
        };
        let load = |node_id: i32, bootstrap: bool| {
            let sensors = self.shared.metrics.node(node_id);
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            node_load(
                sensors.in_flight.load(relaxed),
                sensors.connected.load(relaxed),
                bootstrap,
            )
        };
        let config = &self.shared.config;
        let recovery = Recovery {
            strategy: config.metadata_recovery_strategy,
            failing_since: self.failing_since,
            trigger: config.metadata_recovery_rebootstrap_trigger,
        };
        let bootstrap = self
            .bootstrap
            .iter()
            .enumerate()
            .map(|(i, (a, c))| ((a.as_str(), c), bootstrap_id(i)));
        let (candidates, load): (Vec<(&str, &Addr<Connection>)>, Vec<usize>) =
            if use_bootstrap(&down_of(&brokers), recovery, now) {
                if !brokers.is_empty() {
                    tracing::info!(
                        "every known broker is unreachable, or metadata requests failed for \
                         metadata.recovery.rebootstrap.trigger.ms: rebootstrapping"
                    );
                }
                bootstrap.map(|(c, id)| (c, load(id, false))).unzip()
            } else {
                // With `metadata.recovery.strategy=none` the bootstrap entries are never
                // asked again once brokers are known, as in Java.
                let spares = recovery.strategy == MetadataRecoveryStrategy::Rebootstrap;
                known
                    .iter()
                    .zip(&brokers)
                    .map(|((id, _), c)| (*c, load(*id, false)))
                    .chain(
                        bootstrap
                            .filter(|_| spares)
                            .map(|(c, id)| (c, load(id, true))),
                    )
                    .unzip()
            };
        let i = pick(&down_of(&candidates), &load, self.next_node, now)?;
        Some(candidates[i].1.clone())
    }

    /// Tells every subscriber (router, accumulators) that the cluster view changed.
    fn broadcast(&self, note: ClusterChanged) {
        for s in &self.subscribers {
            s.do_send(note.clone());
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        if self.refreshing {
            self.again = true;
            return;
        }
        let now = Instant::now();
        if let Some(at) = self.paced_until(now) {
            self.schedule_refresh_by(at - now, ctx);
            return;
        }
        let Some(conn) = self.pick_node() else { return };
        self.refreshing = true;
        self.again = false;
        self.skip_pacing = false;
        self.last_sent = Some(now);
        Metrics::add(&self.shared.metrics.metadata_requests_sent, 1);
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
            conn.send(GetMetadata(request))
                .into_actor(self)
                .map(move |res, act, ctx| act.on_metadata(res, started, ctx)),
        );
    }

    fn on_metadata(
        &mut self,
        res: Answered<MetadataResponse>,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        self.refreshing = false;
        if !matches!(res, Ok(Ok(_))) {
            self.failing_since.get_or_insert_with(Instant::now);
        }
        match res {
            Ok(Ok(resp)) => {
                let m = &self.shared.metrics;
                Metrics::add(&m.metadata_refresh_total, 1);
                m.metadata_updated_ms
                    .store(m.now_ms(), std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    took_ms = started.elapsed().as_millis() as u64,
                    "metadata refreshed"
                );
                self.backoff.reset();
                self.failing_since = None;
                self.unreachable.clear();
                self.down.clear();
                self.apply(&resp, ctx);
            }
            Ok(Err(RequestError::Authentication(why))) => {
                // Waiting will not fix it: records waiting for metadata fail now. Refreshes go
                // on (with backoff), so a fixed credential or certificate is picked up.
                tracing::error!(error = %why, "metadata request failed: authentication");
                self.fail_lookups(ErrorKind::Authentication(why.clone()));
                self.broadcast(ClusterChanged {
                    authentication: Some(why),
                    ..ClusterChanged::default()
                });
                self.next_node += 1;
                let wait = self.backoff.next_delay();
                self.schedule_refresh(wait, ctx);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metadata request failed");
                match &e {
                    RequestError::Connection(address, reason) => {
                        self.note_unreachable(address, reason);
                        let until = Instant::now() + self.shared.config.reconnect_backoff_max;
                        self.down.insert(address.clone(), until);
                    }
                    // A broker Herald cannot speak to (too old, or not Kafka): named in the
                    // error of the records waiting for their topic, until a request succeeds.
                    RequestError::Protocol(
                        p @ (ProtocolError::NoCommonVersion { .. }
                        | ProtocolError::MissingApi { .. }),
                    ) => {
                        self.unreachable
                            .insert(String::new(), format!("a broker cannot be used: {p}"));
                        self.publish_causes();
                    }
                    // One undecodable response says nothing of the broker's versions.
                    RequestError::Protocol(_) | RequestError::Authentication(_) => {}
                }
                self.next_node += 1;
                let wait = self.backoff.next_delay();
                self.schedule_refresh(wait, ctx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metadata connection unavailable");
                self.next_node += 1;
                let wait = self.backoff.next_delay();
                self.schedule_refresh(wait, ctx);
            }
        }
        if self.again {
            self.refresh(ctx);
        }
    }

    /// Remembers why `address` could not be asked, and publishes every such reason so that
    /// a record whose topic never arrives says why.
    fn note_unreachable(&mut self, address: &str, reason: &str) {
        let bootstrap = !self.brokers.values().any(|b| b.address == address);
        let role = if bootstrap { "bootstrap" } else { "broker" };
        self.unreachable.insert(
            address.to_string(),
            format!("{role} {address} unreachable: {reason}"),
        );
        self.publish_causes();
    }

    /// Publishes why metadata is missing (connection errors; per topic, an unusable listing
    /// or the brokers' "no such topic"), for the error of a record or lookup whose topic
    /// never arrives.
    fn publish_causes(&self) {
        let all: Vec<&str> = self.unreachable.values().map(String::as_str).collect();
        let why = (!all.is_empty()).then(|| Arc::from(all.join("; ")));
        if why != self.shared.cluster.unreachable() {
            self.shared.cluster.set_unreachable(why);
        }
        let mut topics: HashMap<Arc<str>, Arc<str>> = self
            .absent
            .iter()
            .map(|(t, (code, _))| (t.clone(), Arc::from(absent_cause(t, *code))))
            .collect();
        for (t, why) in &self.unusable {
            topics.insert(t.clone(), Arc::from(why.as_str()));
        }
        self.shared.cluster.set_topic_causes(topics);
    }

    /// `topic`'s partitions as the cluster view and the last response give them; `None`
    /// while the view does not have the topic.
    fn partitions_of(&self, topic: &str) -> Option<Vec<PartitionInfo>> {
        let meta = self.shared.cluster.topics.get(topic)?.clone();
        if meta.partitions.is_empty() {
            return None;
        }
        let sets = self.replicas.get(topic);
        let nodes = |ids: Option<&Vec<i32>>| -> Vec<Node> {
            ids.map(|ids| ids.iter().map(|id| self.node(*id)).collect())
                .unwrap_or_default()
        };
        let infos = meta
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let set = sets.and_then(|s| s.get(i));
                PartitionInfo {
                    topic: meta.name.clone(),
                    partition: i as i32,
                    leader: (p.leader >= 0).then(|| self.leader_node(p.leader)),
                    leader_epoch: p.leader_epoch,
                    replicas: nodes(set.map(|s| &s.replicas)),
                    in_sync_replicas: nodes(set.map(|s| &s.isr)),
                    offline_replicas: nodes(set.map(|s| &s.offline)),
                }
            })
            .collect();
        Some(infos)
    }

    /// Broker `id` as the last response listed it, or by id only (Java's placeholder for a
    /// replica on a broker the response leaves out).
    fn node(&self, id: i32) -> Node {
        self.nodes
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Node::unlisted(id))
    }

    /// A leader as [`node`](Self::node), or, if a Produce response named it (KIP-951) and no
    /// response has listed it yet, at the address that response gave.
    fn leader_node(&self, id: i32) -> Node {
        if self.nodes.contains_key(&id) {
            return self.node(id);
        }
        let named = self.brokers.get(&id).and_then(|b| {
            let (host, port) = b.address.rsplit_once(':')?;
            Some(Node::new(id, host, port.parse().ok()?, None))
        });
        named.unwrap_or_else(|| Node::unlisted(id))
    }

    /// Answers the lookups whose topic this refresh brought or failed.
    fn answer_lookups(&mut self, errors: &HashMap<Arc<str>, KafkaCode>, ctx: &mut Context<Self>) {
        let topics: Vec<Arc<str>> = self.lookups.keys().cloned().collect();
        for topic in topics {
            let answer = match errors.get(&topic) {
                Some(code) => Err(topic_error(&topic, *code)),
                None => match self.partitions_of(&topic) {
                    Some(p) => Ok(p),
                    None => continue,
                },
            };
            for l in self.lookups.remove(&topic).unwrap_or_default() {
                let _ = l.reply.send(answer.clone());
            }
        }
        self.arm_lookup_expiry(ctx);
    }

    /// Answers every waiting lookup with `kind`.
    fn fail_lookups(&mut self, kind: ErrorKind) {
        for l in std::mem::take(&mut self.lookups).into_values().flatten() {
            let _ = l.reply.send(Err(kind.clone()));
        }
    }

    /// Times the oldest waiting lookup out at max.block.ms.
    fn arm_lookup_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.lookup_timer.take() {
            ctx.cancel_future(h);
        }
        let Some(oldest) = self.lookups.values().flatten().map(|l| l.since).min() else {
            return;
        };
        let due = (oldest + self.shared.config.max_block).saturating_duration_since(Instant::now());
        self.lookup_timer = Some(ctx.run_later(due, |act, ctx| {
            act.lookup_timer = None;
            act.expire_lookups(ctx);
        }));
    }

    /// Fails the lookups that waited max.block.ms, as records that wait that long for their
    /// topic fail, naming the connection errors behind the wait.
    fn expire_lookups(&mut self, ctx: &mut Context<Self>) {
        let max_block = self.shared.config.max_block;
        let now = Instant::now();
        for (topic, waiting) in self.lookups.iter_mut() {
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(waiting)
                .into_iter()
                .partition(|l| now.duration_since(l.since) >= max_block);
            *waiting = kept;
            for l in expired {
                let _ = l.reply.send(Err(ErrorKind::MetadataTimeout {
                    topic: topic.clone(),
                    waited_ms: max_block.as_millis() as u64,
                    cause: self.shared.cluster.metadata_cause(topic),
                }));
            }
        }
        self.lookups.retain(|_, waiting| !waiting.is_empty());
        self.arm_lookup_expiry(ctx);
    }

    /// Adds `topics` to the wanted set and fetches the new ones now.
    fn add_topics(&mut self, topics: Vec<Arc<str>>, ctx: &mut Context<Self>) {
        let mut new = false;
        let now = Instant::now();
        for t in topics {
            self.requested.insert(t.clone(), now);
            new |= self.wanted.insert(t);
        }
        if new {
            // A topic nobody asked for yet goes out at once, not after the pacing (as Java's
            // requestUpdateForNewTopics).
            self.last_sent = None;
        }
        // A topic already wanted is asked for again too (paced by retry.backoff.ms), as
        // Java's `send` requests an update for a topic it waits for: its records wait for
        // a response newer than they are (a route forgotten as idle, a topic whose last
        // answer was an error an ACL change may since have fixed), and the next periodic
        // refresh is metadata.max.age.ms away.
        self.refresh(ctx);
    }

    /// Until when a refresh must wait: retry.backoff.ms after the last request was sent
    /// (Java's `refreshBackoffMs`), so bursts of requests for a refresh become one request
    /// per backoff. `None`: it may go now.
    fn paced_until(&self, now: Instant) -> Option<Instant> {
        if self.skip_pacing {
            return None;
        }
        let at = self.last_sent? + self.shared.config.retry_backoff;
        (at > now).then_some(at)
    }

    /// Schedules a refresh in `after` unless one is already due sooner: a stream of refresh
    /// requests must not keep pushing the refresh back.
    fn schedule_refresh_by(&mut self, after: Duration, ctx: &mut Context<Self>) {
        let due = Instant::now() + after;
        if self.refresh_due.is_some_and(|d| d <= due) && self.refresh_timer.is_some() {
            return;
        }
        self.schedule_refresh(after, ctx);
    }

    fn schedule_refresh(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.refresh_due = Some(Instant::now() + after);
        if let Some(h) = self.refresh_timer.take() {
            ctx.cancel_future(h);
        }
        self.refresh_timer = Some(ctx.run_later(after, |act, ctx| {
            act.refresh_timer = None;
            act.refresh_due = None;
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
        let was_listed = std::mem::take(&mut self.listed);
        self.nodes.clear();
        for b in &resp.brokers {
            let id = b.node_id.0;
            let address = format!("{}:{}", b.host.as_str(), b.port);
            self.listed.insert(id);
            let rack = b.rack.as_ref().map(|r| r.to_string());
            self.nodes
                .insert(id, Node::new(id, b.host.as_str(), b.port, rack));
            let known = self.brokers.get(&id).filter(|b| b.address == address);
            if let Some(known) = known {
                if !was_listed.is_empty() && !was_listed.contains(&id) {
                    tracing::debug!(broker = id, "broker listed again");
                    known.connection.do_send(BrokerListed);
                }
            } else {
                tracing::info!(broker = id, %address, "broker learned");
                let connection = self.start_connection(id, address.clone());
                cluster.brokers.insert(id, link(&connection));
                let new = Broker {
                    address,
                    connection,
                };
                if let Some(old) = self.brokers.insert(id, new) {
                    old.connection.do_send(Shutdown);
                }
            }
        }
        if let Some(rack) = self.shared.config.partitioning_rack() {
            let in_rack = resp
                .brokers
                .iter()
                .filter(|b| b.rack.as_deref() == Some(rack))
                .map(|b| b.node_id.0)
                .collect();
            cluster.set_in_rack(in_rack);
        }
        let in_rack = cluster.in_rack();
        let mut errors = HashMap::new();
        let mut listed = HashSet::new();
        let mut incomplete = false;
        self.missing.clear();
        self.unusable.clear();
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
                    self.absent.insert(name.clone(), (code, Instant::now()));
                    self.missing.insert(name);
                    continue;
                }
                Some(code) => {
                    tracing::warn!(topic = %name, %code, "topic metadata error");
                    errors.insert(name, code);
                    continue;
                }
            }
            // Garbage from the network drops this topic's part of the response, never the
            // process: the view keeps what it knew, and the topic is asked for again.
            let count = match partition_count(&t.partitions) {
                Ok(count) => count,
                Err(bad) => {
                    tracing::warn!(topic = %name, error = %bad, "unusable topic metadata ignored");
                    let why = format!("metadata for topic {name} unusable: {bad}");
                    self.unusable.insert(name, why);
                    incomplete = true;
                    continue;
                }
            };
            self.absent.remove(&name);
            let mut partitions = vec![
                PartitionMeta {
                    leader: -1,
                    leader_epoch: -1
                };
                count
            ];
            let known = cluster.topics.get(&*name).map(|m| Arc::clone(&m));
            let mut replicas = vec![Replicas::default(); count];
            for p in &t.partitions {
                let ids =
                    |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
                replicas[p.partition_index as usize] = Replicas {
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                    offline: ids(&p.offline_replicas),
                };
                // A leader the response does not list among the brokers is not registered
                // (fenced, stopped, down): no leader, as in Java's `Cluster` (its leader node
                // is null). Records wait for the partition instead of for the reconnect
                // backoff of a broker that is gone, sticky partitioning leaves it out, and
                // the refresh comes at retry.backoff.ms until a leader is listed.
                let leader = if self.listed.contains(&p.leader_id.0) {
                    p.leader_id.0
                } else {
                    -1
                };
                partitions[p.partition_index as usize] = PartitionMeta {
                    leader,
                    leader_epoch: p.leader_epoch,
                };
            }
            let topic_id = Some(t.topic_id.as_u128()).filter(|&id| id != 0);
            let recreated = known.as_ref().is_some_and(|k| {
                k.topic_id.is_some() && topic_id.is_some() && k.topic_id != topic_id
            });
            if recreated {
                tracing::info!(topic = %name, "new topic id (deleted and created again): its leaders are replaced, not merged");
            }
            let partitions = merge_topic(known.as_deref(), topic_id, partitions);
            let available = available(&partitions);
            if available.len() < count || count == 0 {
                incomplete = true;
            }
            let local = local(&partitions, &in_rack);
            self.replicas.insert(name.clone(), replicas);
            let meta = TopicMeta {
                name: name.clone(),
                topic_id,
                partitions,
                available,
                local,
            };
            let changed = cluster
                .topics
                .get(&*name)
                .map(|old| **old != meta)
                .unwrap_or(true);
            listed.insert(name.clone());
            if changed {
                tracing::info!(topic = %name, partitions = count, "topic metadata updated");
                cluster.topics.insert(name, Arc::new(meta));
            }
        }
        // A topic the view has is in use: the router forgets it once idle for
        // metadata.max.idle.ms (`ForgetTopics`), and until then a refresh that finds it
        // missing (being deleted, or created again) must not drop it from the requests, or
        // none would name it again and its old leaders would stay for good (Java keeps it).
        let max_block = self.shared.config.max_block;
        let stale: Vec<Arc<str>> = self
            .missing
            .iter()
            .filter(|t| !cluster.topics.contains_key(&***t))
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
        // A record whose wait began before the topic was last asked for fails within
        // max.block.ms of that: by twice that, nobody can still be told of the answer.
        self.absent
            .retain(|_, (_, at)| at.elapsed() < max_block.saturating_mul(2));
        self.publish_causes();
        self.ensure_producer_id(ctx);
        self.answer_lookups(&errors, ctx);
        self.broadcast(ClusterChanged {
            errors: Arc::new(errors),
            authentication: None,
            listed: Arc::new(listed),
        });
        let retry = self.shared.config.retry_backoff;
        if incomplete || !self.missing.is_empty() {
            self.schedule_refresh(retry, ctx);
        } else {
            self.schedule_refresh(self.shared.config.metadata_max_age, ctx);
        }
    }

    /// Starts InitProducerId when idempotence needs an id and none is held or pending.
    /// A transactional producer's id comes from the transaction manager (InitProducerId with
    /// the transactional id, sent to the transaction coordinator).
    fn ensure_producer_id(&mut self, ctx: &mut Context<Self>) {
        let config = &self.shared.config;
        if !config.enable_idempotence
            || config.transactional_id.is_some()
            || self.init_pid_in_flight
        {
            return;
        }
        let current = self.shared.cluster.producer_state();
        let (pid, epoch) = match current {
            ProducerIdState::Ready { .. } | ProducerIdState::Failed(_) => return,
            ProducerIdState::NotNeeded | ProducerIdState::Pending => (-1, -1),
        };
        self.request_producer_id(pid, epoch, ctx);
    }

    /// Asks for a producer id (`pid` -1), or a new epoch of `pid` after `epoch` (KIP-360).
    fn request_producer_id(&mut self, pid: i64, epoch: i16, ctx: &mut Context<Self>) {
        let Some(conn) = self.pick_node() else {
            self.init_pid_in_flight = false;
            return;
        };
        self.init_pid_in_flight = true;
        self.shared
            .cluster
            .set_producer_state(ProducerIdState::Pending);
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(self.shared.config.transaction_timeout.as_millis() as i32)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch);
        ctx.spawn(
            conn.send(InitProducerId(request))
                .into_actor(self)
                .map(move |res, act, ctx| act.on_producer_id(pid, epoch, res, ctx)),
        );
    }

    fn on_producer_id(
        &mut self,
        pid: i64,
        epoch: i16,
        res: Answered<InitProducerIdResponse>,
        ctx: &mut Context<Self>,
    ) {
        self.init_pid_in_flight = false;
        let r = match res {
            Ok(Ok(r)) => r,
            Ok(Err(e @ RequestError::Protocol(ProtocolError::EpochBumpUnsupported { .. }))) => {
                // A broker before Kafka 2.5 cannot take the bump: a fresh producer id
                // restarts sequences just as well (the fallback below for a refused bump).
                tracing::warn!(error = %e, "requesting a new producer id instead");
                return self.request_producer_id(-1, -1, ctx);
            }
            Ok(Err(e)) => return self.retry_producer_id(pid, epoch, e.to_string(), ctx),
            Err(e) => return self.retry_producer_id(pid, epoch, e.to_string(), ctx),
        };
        match KafkaCode::from_code(r.error_code) {
            None => {
                tracing::info!(
                    producer_id = r.producer_id.0,
                    epoch = r.producer_epoch,
                    "producer id obtained"
                );
                self.publish_producer_state(ProducerIdState::Ready {
                    producer_id: r.producer_id.0,
                    epoch: r.producer_epoch,
                });
            }
            Some(code) if code.retriable() || code == KafkaCode::COORDINATOR_NOT_AVAILABLE => {
                self.retry_producer_id(pid, epoch, code.to_string(), ctx)
            }
            Some(code) if pid >= 0 => {
                // The broker cannot bump this id's epoch (before KIP-360, or it lost the id):
                // a fresh producer id restarts sequences just as well; the Java client falls
                // back alike.
                tracing::warn!(%code, "epoch bump refused; requesting a new producer id");
                self.request_producer_id(-1, -1, ctx);
            }
            Some(code) => {
                tracing::error!(%code, "InitProducerId refused");
                let why = Arc::from(format!("InitProducerId failed: {code}"));
                self.publish_producer_state(ProducerIdState::Failed(why));
            }
        }
    }

    fn retry_producer_id(&mut self, pid: i64, epoch: i16, why: String, ctx: &mut Context<Self>) {
        tracing::warn!(reason = %why, "InitProducerId failed, retrying");
        self.next_node += 1;
        let wait = self.backoff.next_delay();
        // The request counts as in flight while it waits: a metadata update meanwhile must
        // not start a second one. (Two answered requests are two producer ids; batches
        // stamped with the first are then restamped. Seen on Apache Kafka, whose coordinator
        // answers COORDINATOR_LOAD_IN_PROGRESS right after it starts.)
        self.init_pid_in_flight = true;
        ctx.run_later(wait, move |act, ctx| {
            act.init_pid_in_flight = false;
            act.request_producer_id(pid, epoch, ctx)
        });
    }

    /// Publishes the producer id state and tells the subscribers.
    fn publish_producer_state(&self, state: ProducerIdState) {
        self.shared.cluster.set_producer_state(state);
        self.broadcast(ClusterChanged::default());
    }
}

/// What [`use_bootstrap`] needs of the config and the history of metadata requests.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    strategy: MetadataRecoveryStrategy,
    /// Since when metadata requests have failed, none succeeding.
    failing_since: Option<Instant>,
    /// `metadata.recovery.rebootstrap.trigger.ms`.
    trigger: Duration,
}

/// Whether to ask the `bootstrap.servers` entries rather than the known brokers (their
/// `down` instants given): when none is known, and with `rebootstrap` when every known one is
/// down at `now` (KIP-899) or metadata requests have failed for the trigger time, e.g.
/// brokers that accept connections but no longer answer for the cluster (KIP-1102).
fn use_bootstrap(known_down: &[Option<Instant>], recovery: Recovery, now: Instant) -> bool {
    let rebootstrap = recovery.strategy == MetadataRecoveryStrategy::Rebootstrap;
    known_down.is_empty()
        || (rebootstrap
            && known_down
                .iter()
                .all(|d| d.is_some_and(|until| until > now)))
        || (rebootstrap
            && recovery
                .failing_since
                .is_some_and(|since| now.saturating_duration_since(since) >= recovery.trigger))
}

/// Which of the candidates (their `down` instants, `None` when not known to be down) to ask:
/// the first from `start` (rotating) that is not down at `now`; when all are, the one that
/// comes back first. `None` without candidates.
fn pick(down: &[Option<Instant>], load: &[usize], start: usize, now: Instant) -> Option<usize> {
    let n = down.len();
    if n == 0 {
        return None;
    }
    let order = (0..n).map(|k| (start + k) % n);
    // `min_by_key` keeps the first of equals: the rotation breaks ties.
    let up = order
        .clone()
        .filter(|&i| down[i].is_none_or(|until| until <= now))
        .min_by_key(|&i| load.get(i).copied().unwrap_or(0));
    up.or_else(|| order.min_by_key(|&i| down[i]))
}

/// How busy a node is for a metadata request ([`pick`] takes the least): four per request
/// awaiting an answer, two without a socket (it has to connect first, and may be the node that
/// just died), one for a bootstrap entry. So an idle connected broker first, then an idle
/// connected bootstrap entry, then the others.
fn node_load(in_flight: usize, connected: bool, bootstrap: bool) -> usize {
    4 * in_flight + 2 * usize::from(!connected) + usize::from(bootstrap)
}

/// The node id of the `i`th `bootstrap.servers` entry's connection (negative, as Java's).
/// Why a topic's partitions in a Metadata response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadPartitions {
    /// An index outside `0..listed`: the view is a vector indexed by partition, and sizing
    /// it by an index read off the wire (2,000,000,000) would take gigabytes.
    #[error("partition index {index} with {listed} partitions listed")]
    OutOfRange { index: i32, listed: usize },
    /// An index listed twice.
    #[error("partition {0} listed twice")]
    Duplicate(i32),
}

/// The partition count of a topic whose response lists `partitions`: brokers list each of
/// `0..n` exactly once, so anything else is garbage. Its length is bounded by the bytes
/// the response holds (the decoder checks counts against them), an index is not.
fn partition_count(partitions: &[MetadataResponsePartition]) -> Result<usize, BadPartitions> {
    let listed = partitions.len();
    let mut seen = vec![false; listed];
    for p in partitions {
        let index = p.partition_index;
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < listed)
            .ok_or(BadPartitions::OutOfRange { index, listed })?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(BadPartitions::Duplicate(index));
        }
    }
    Ok(listed)
}

fn bootstrap_id(i: usize) -> i32 {
    -1 - i as i32
}

/// How other actors reach a connection this actor started.
fn link(connection: &Addr<Connection>) -> BrokerLink {
    BrokerLink::new(
        connection.clone().recipient(),
        connection.clone().recipient(),
        #[cfg(feature = "fault-injection")]
        connection.clone().recipient(),
    )
}

impl Actor for Metadata {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.bootstrap.is_empty() {
            let servers = self.shared.config.bootstrap_servers.clone();
            for (i, address) in servers.into_iter().enumerate() {
                let conn = self.start_connection(bootstrap_id(i), address.clone());
                self.bootstrap.push((address, conn));
            }
        }
        self.refresh(ctx);
    }
}

impl Supervised for Metadata {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        tracing::warn!("metadata actor restarted; refetching");
        // Timers and the request in flight died with the old context.
        self.refreshing = false;
        self.init_pid_in_flight = false;
        self.refresh_timer = None;
        self.refresh_due = None;
        self.shared.cluster.forget_pending_producer_id();
        // Waiting lookups are kept; their timer is re-armed in the new context.
        self.lookup_timer = None;
        self.arm_lookup_expiry(ctx);
    }
}

impl Handler<AddTopics> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: AddTopics, ctx: &mut Context<Self>) {
        self.add_topics(msg.0, ctx);
    }
}

impl Handler<PartitionsFor> for Metadata {
    type Result = ResponseFuture<Result<Vec<PartitionInfo>, ErrorKind>>;

    /// Answers from the view when it has the topic; otherwise asks for the topic as a
    /// record for it would, and answers when a refresh brings it.
    fn handle(&mut self, msg: PartitionsFor, ctx: &mut Context<Self>) -> Self::Result {
        let topic = msg.0;
        let now = |r| -> Self::Result { Box::pin(std::future::ready(r)) };
        if let Err(reason) = herald::record::validate_topic(&topic) {
            return now(Err(ErrorKind::InvalidTopic { topic, reason }));
        }
        if self.terminated {
            return now(Err(ErrorKind::Closed));
        }
        self.shared.cluster.looked_up(&topic);
        if let Some(partitions) = self.partitions_of(&topic) {
            return now(Ok(partitions));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let since = Instant::now();
        self.lookups
            .entry(topic.clone())
            .or_default()
            .push(Lookup { since, reply });
        self.arm_lookup_expiry(ctx);
        self.add_topics(vec![topic], ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(ErrorKind::Closed)) })
    }
}

impl Handler<ForgetTopics> for Metadata {
    type Result = ();

    /// Java's `retainTopic`: an idle topic leaves the requests and the view. A record for it
    /// later asks for it again (the router's `AddTopics`), and so does a batch of it that
    /// needs a leader (`Shared::want_topic`).
    fn handle(&mut self, msg: ForgetTopics, _: &mut Context<Self>) {
        for t in msg.0 {
            if self.lookups.contains_key(&t) {
                // A `partitions_for` still waits for it, which is use (Java's waitOnMetadata
                // re-adds the topic on each loop): asked about as of now instead.
                self.shared.cluster.looked_up(&t);
                continue;
            }
            self.replicas.remove(&t);
            tracing::debug!(topic = %t, idle_ms = self.shared.config.metadata_max_idle.as_millis() as u64, "removing an unused topic from the metadata");
            self.wanted.remove(&t);
            self.requested.remove(&t);
            self.missing.remove(&t);
            self.absent.remove(&t);
            self.shared.cluster.topics.remove(&*t);
        }
    }
}

impl Handler<Refresh> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: Refresh, ctx: &mut Context<Self>) {
        // Coalesce bursts (a broker failure makes every partition ask): one refresh soon,
        // unless one is due sooner or under way (then `again` runs one after it); `refresh`
        // paces them by retry.backoff.ms, except the next one after a lost broker.
        let lost = matches!(msg, Refresh::BrokerLost);
        self.skip_pacing |= lost;
        if self.refreshing {
            self.again = true;
            return;
        }
        let soon = if lost {
            Duration::ZERO
        } else {
            self.shared
                .config
                .retry_backoff
                .min(Duration::from_millis(50))
        };
        self.schedule_refresh_by(soon, ctx);
    }
}

impl Handler<Subscribe> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<BrokerNamed> for Metadata {
    type Result = ();

    /// A new leader a Produce response named (KIP-951) that metadata has not shown yet:
    /// connect to it now, so the partition's batches need not wait for a refresh. A later
    /// refresh that lists it at the same address keeps this connection.
    fn handle(&mut self, msg: BrokerNamed, _: &mut Context<Self>) {
        if self.terminated || self.brokers.contains_key(&msg.node_id) {
            return;
        }
        tracing::info!(broker = msg.node_id, address = %msg.address, "broker learned from a produce response");
        let connection = self.start_connection(msg.node_id, msg.address.clone());
        self.shared
            .cluster
            .brokers
            .insert(msg.node_id, link(&connection));
        self.brokers.insert(
            msg.node_id,
            Broker {
                address: msg.address,
                connection,
            },
        );
        self.broadcast(ClusterChanged::default());
    }
}

impl Handler<BumpEpoch> for Metadata {
    type Result = ();

    fn handle(&mut self, msg: BumpEpoch, ctx: &mut Context<Self>) {
        if self.shared.config.transactional_id.is_some() {
            // A transactional producer's epoch belongs to the transaction coordinator: the
            // failed batch makes the transaction abortable, and the transaction manager
            // bumps the epoch after the abort.
            return;
        }
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
        self.fail_lookups(ErrorKind::Closed);
        let brokers = std::mem::take(&mut self.brokers);
        let closing: Vec<_> = self
            .bootstrap
            .drain(..)
            .map(|(_, c)| c)
            .chain(brokers.into_values().map(|b| b.connection))
            .map(|c| c.send(Shutdown))
            .collect();
        self.shared.cluster.brokers.clear();
        self.subscribers.clear();
        let all = futures_util::future::join_all(closing);
        Box::pin(all.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<Crash> for Metadata {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        crash.apply(ActorKind::Metadata, &shared.victims, ctx);
    }
}

/// Why a topic the brokers answered `code` for is not in the metadata, in a record's error.
fn absent_cause(topic: &str, code: KafkaCode) -> String {
    let meaning = match code {
        KafkaCode::UNKNOWN_TOPIC_OR_PARTITION => {
            "it does not exist, and the brokers did not create it"
        }
        _ => "it has no leader yet (being created, or its leaders are down)",
    };
    format!("the brokers answered {code} for topic {topic}: {meaning}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(indexes: &[i32]) -> Vec<MetadataResponsePartition> {
        indexes
            .iter()
            .map(|&i| MetadataResponsePartition::default().with_partition_index(i))
            .collect()
    }

    #[test]
    fn partition_indexes_off_the_wire_are_checked_before_they_size_anything() {
        assert_eq!(partition_count(&listing(&[])), Ok(0));
        assert_eq!(partition_count(&listing(&[2, 0, 1])), Ok(3));
        for index in [2_000_000_000, i32::MAX, 3, -1, i32::MIN] {
            assert_eq!(
                partition_count(&listing(&[0, index, 1])),
                Err(BadPartitions::OutOfRange { index, listed: 3 }),
                "{index}"
            );
        }
        assert_eq!(
            partition_count(&listing(&[1, 0, 1])),
            Err(BadPartitions::Duplicate(1))
        );
        let bad = partition_count(&listing(&[2_000_000_000])).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "partition index 2000000000 with 1 partitions listed"
        );
    }

    fn recovery(strategy: MetadataRecoveryStrategy) -> Recovery {
        Recovery {
            strategy,
            failing_since: None,
            trigger: Duration::from_secs(300),
        }
    }

    #[test]
    fn bootstrap_is_asked_before_any_broker_is_known_and_to_rebootstrap() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(1));
        let re = recovery(MetadataRecoveryStrategy::Rebootstrap);
        let none = recovery(MetadataRecoveryStrategy::None);
        for strategy in [re, none] {
            assert!(use_bootstrap(&[], strategy, now), "nothing known yet");
            assert!(!use_bootstrap(&[None, later], strategy, now), "one is up");
            assert!(
                !use_bootstrap(&[Some(now), later], strategy, now),
                "one is back"
            );
        }
        assert!(
            use_bootstrap(&[later, later], re, now),
            "every known broker down"
        );
        assert!(!use_bootstrap(&[later, later], none, now), "no rebootstrap");
    }

    #[test]
    fn metadata_failing_for_the_trigger_time_rebootstraps_though_brokers_seem_up() {
        let start = Instant::now();
        let up = [None, None];
        let failing = |strategy| Recovery {
            failing_since: Some(start),
            ..recovery(strategy)
        };
        let re = failing(MetadataRecoveryStrategy::Rebootstrap);
        let just_before = start + Duration::from_millis(299_999);
        let at = start + Duration::from_secs(300);
        assert!(!use_bootstrap(&up, re, just_before), "not yet");
        assert!(use_bootstrap(&up, re, at), "failing for trigger.ms");
        assert!(
            !use_bootstrap(&up, failing(MetadataRecoveryStrategy::None), at),
            "no rebootstrap with none"
        );
        assert!(
            !use_bootstrap(&up, recovery(MetadataRecoveryStrategy::Rebootstrap), at),
            "nothing failing"
        );
    }

    #[test]
    fn pick_skips_nodes_known_to_be_down() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let much_later = now + Duration::from_secs(2);
        let idle = [0; 3];
        assert_eq!(pick(&[], &[], 0, now), None);
        assert_eq!(
            pick(&[None, None, None], &idle, 4, now),
            Some(1),
            "rotation"
        );
        assert_eq!(pick(&[Some(later), None, None], &idle, 0, now), Some(1));
        assert_eq!(
            pick(&[None, Some(later), Some(later)], &idle, 1, now),
            Some(0)
        );
        assert_eq!(
            pick(&[Some(now), Some(later)], &idle, 1, now),
            Some(0),
            "back up"
        );
        assert_eq!(
            pick(&[Some(much_later), Some(later)], &idle, 0, now),
            Some(1),
            "all down: the first to come back"
        );
    }

    /// Metadata goes to the least loaded node that is up: a broker serves a connection's
    /// requests in order, so one behind Produce requests waits for them.
    #[test]
    fn pick_prefers_the_least_loaded_node_that_is_up() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let up = [None, None, None, None];
        let (busy, idle, unconnected) = (
            node_load(5, true, false),
            node_load(0, true, false),
            node_load(0, false, false),
        );
        let (idle_bootstrap, busy_bootstrap) = (node_load(0, true, true), node_load(5, true, true));
        let pick_up = |load: &[usize], start| pick(&up, load, start, now);
        let least_busy = node_load(1, true, false);
        assert_eq!(
            pick_up(&[busy, busy, idle, idle_bootstrap], 0),
            Some(2),
            "the idle broker"
        );
        assert_eq!(
            pick_up(&[busy, busy, unconnected, idle_bootstrap], 0),
            Some(3),
            "the idle bootstrap entry before a broker without a socket"
        );
        assert_eq!(
            pick_up(&[busy, least_busy, busy, busy_bootstrap], 0),
            Some(1),
            "the least busy"
        );
        assert_eq!(
            pick_up(&[unconnected, unconnected, unconnected, busy_bootstrap], 1),
            Some(1),
            "equals: the rotation"
        );
        let down = [None, Some(later), None, None];
        let busy_over_down = pick(&down, &[busy, idle, busy, busy_bootstrap], 0, now);
        assert_eq!(busy_over_down, Some(0), "a busy node over a down one");
    }
}
