//! The published cluster view: what the metadata actor learnt, read by the router and the
//! accumulators without a message round trip. Written by the metadata actor, except one
//! narrow path: an accumulator that a broker told of a newer leader for its partition
//! (KIP-951) records it with [`ClusterView::learn_leader`], which only ever moves a
//! partition to a higher leader epoch (and the metadata actor never moves one back).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use actix::prelude::*;
use dashmap::DashMap;

#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::delivery::SendBatches;
use crate::messages::request::Transact;

/// Leadership of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    /// Leader's broker id, `-1` when there is none.
    pub(crate) leader: i32,
    /// Leader epoch, `-1` when unknown.
    pub(crate) leader_epoch: i32,
}

/// What the cluster says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    /// The topic's name (each partition's accumulator keeps a copy of its own for its
    /// records' metadata, see `Accumulator::new`).
    pub(crate) name: Arc<str>,
    /// The topic id (Metadata v10+; `None` before, or when the broker sent the zero id): a
    /// topic deleted and created again under the same name has a new one.
    pub(crate) topic_id: Option<u128>,
    /// Indexed by partition id.
    pub(crate) partitions: Vec<PartitionMeta>,
    /// Partitions with a leader, for sticky partitioning.
    pub(crate) available: Vec<i32>,
    /// Of those, the ones led in the producer's rack (`partitioner.rack.aware` with
    /// `client.rack`; always empty without), which sticky partitioning prefers (KIP-1123).
    pub(crate) local: Vec<i32>,
}

/// The partitions whose leader is one of `in_rack`, in order.
pub(crate) fn local(partitions: &[PartitionMeta], in_rack: &BTreeSet<i32>) -> Vec<i32> {
    if in_rack.is_empty() {
        return Vec::new();
    }
    (0..partitions.len() as i32)
        .filter(|&i| in_rack.contains(&partitions[i as usize].leader))
        .collect()
}

/// The partitions that have a leader, in order.
pub(crate) fn available(partitions: &[PartitionMeta]) -> Vec<i32> {
    (0..partitions.len() as i32)
        .filter(|&i| partitions[i as usize].leader >= 0)
        .collect()
}

/// Merges a metadata response's view of a topic's partitions (`fetched`, of topic id
/// `topic_id`) with what is `known`, partition by partition ([`merge_partition`]). A response
/// that names another topic id than the known one replaces the known view instead: the
/// topic was deleted and created again, its leader epochs began again at 0, and merging
/// would keep the old topic's leaders until the new epochs climbed past the old ones
/// (KAFKA-12257; Java's `Metadata.updateLatestMetadata` resets the epochs when the id
/// changes, also from an unknown one). A response without an id is merged.
pub(crate) fn merge_topic(
    known: Option<&TopicMeta>,
    topic_id: Option<u128>,
    fetched: Vec<PartitionMeta>,
) -> Vec<PartitionMeta> {
    let Some(known) = known.filter(|k| topic_id.is_none() || k.topic_id == topic_id) else {
        return fetched;
    };
    fetched
        .into_iter()
        .enumerate()
        .map(|(i, p)| merge_partition(known.partitions.get(i).copied(), p))
        .collect()
}

/// Merges a metadata response's view of a partition with what is known: a response that
/// names an older leader epoch than one already learnt (from a Produce response's hint,
/// KIP-951, or from another broker's fresher metadata) is stale for that partition, and the
/// known leader stays, as in Java's `Metadata.updateLatestMetadata`.
pub(crate) fn merge_partition(
    known: Option<PartitionMeta>,
    fetched: PartitionMeta,
) -> PartitionMeta {
    match known {
        Some(k) if fetched.leader_epoch >= 0 && k.leader_epoch > fetched.leader_epoch => k,
        _ => fetched,
    }
}

/// How an accumulator reaches one broker's connection actor without knowing its type. A
/// clone is one reference count.
#[derive(Debug, Clone)]
pub(crate) struct BrokerLink(Arc<BrokerRecipients>);

#[derive(Debug)]
struct BrokerRecipients {
    batches: Recipient<SendBatches>,
    transact: Recipient<Transact>,
    #[cfg(feature = "fault-injection")]
    crash: Recipient<Crash>,
}

impl BrokerLink {
    /// A link from the connection actor's recipients.
    pub(crate) fn new(
        batches: Recipient<SendBatches>,
        transact: Recipient<Transact>,
        #[cfg(feature = "fault-injection")] crash: Recipient<Crash>,
    ) -> Self {
        BrokerLink(Arc::new(BrokerRecipients {
            batches,
            transact,
            #[cfg(feature = "fault-injection")]
            crash,
        }))
    }

    /// Hands batches to the connection.
    pub(crate) fn send(&self, batches: SendBatches) {
        self.0.batches.do_send(batches);
    }

    /// The connection, for the transaction manager's requests.
    pub(crate) fn transact(&self) -> &Recipient<Transact> {
        &self.0.transact
    }

    /// The connection, for fault injection.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn crash(&self) -> Recipient<Crash> {
        self.0.crash.clone()
    }
}

/// The published cluster view.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    /// Known topics.
    pub(crate) topics: DashMap<Arc<str>, Arc<TopicMeta>>,
    /// Connections of the known brokers, by broker id.
    pub(crate) brokers: DashMap<i32, BrokerLink>,
    /// Producer id and epoch, once obtained (idempotence only).
    producer: RwLock<ProducerIdState>,
    /// The connection errors of the metadata requests that failed since the last one that
    /// succeeded, one line per address, for the error of a record whose topic never
    /// arrived.
    unreachable: RwLock<Option<Arc<str>>>,
    /// Per topic, why the last responses left it out: the brokers' "no such topic" or an
    /// unusable listing.
    topic_causes: RwLock<HashMap<Arc<str>, Arc<str>>>,
    /// The brokers in the producer's rack, as the last metadata response gave their racks
    /// (empty unless rack-aware partitioning is on).
    in_rack: RwLock<BTreeSet<i32>>,
    /// Topics asked about with `Producer::partitions_for`, and when last: the router's idle
    /// check counts that as use (Java's `partitionsFor` keeps a topic as a `send` does), and
    /// forgets a topic only asked about once it has been idle for `metadata.max.idle.ms`.
    looked_up: Mutex<HashMap<Arc<str>, Instant>>,
}

/// Where the idempotent producer's identity stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ProducerIdState {
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
    /// `topic` was asked about with `Producer::partitions_for` now.
    pub(crate) fn looked_up(&self, topic: &Arc<str>) {
        self.lock_looked_up().insert(topic.clone(), Instant::now());
    }

    /// When `topic` was last asked about with `Producer::partitions_for`, if it was.
    pub(crate) fn last_looked_up(&self, topic: &str) -> Option<Instant> {
        self.lock_looked_up().get(topic).copied()
    }

    /// Removes and returns the topics last asked about before `before`.
    pub(crate) fn take_looked_up_before(&self, before: Instant) -> Vec<Arc<str>> {
        let mut old = Vec::new();
        self.lock_looked_up().retain(|t, at| {
            let keep = *at >= before;
            if !keep {
                old.push(t.clone());
            }
            keep
        });
        old
    }

    fn lock_looked_up(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Instant>> {
        self.looked_up.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The producer id state now.
    pub(crate) fn producer_state(&self) -> ProducerIdState {
        self.read_producer().clone()
    }

    /// Replaces the producer id state.
    pub(crate) fn set_producer_state(&self, state: ProducerIdState) {
        *self.write_producer() = state;
    }

    /// A restarted metadata actor lost its InitProducerId in flight: `Pending` goes back to
    /// `NotNeeded`, so the next refresh asks again.
    pub(crate) fn forget_pending_producer_id(&self) {
        let mut s = self.write_producer();
        if *s == ProducerIdState::Pending {
            *s = ProducerIdState::NotNeeded;
        }
    }

    /// Why brokers could not be asked for metadata lately, if they could not.
    pub(crate) fn unreachable(&self) -> Option<Arc<str>> {
        self.unreachable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the reason of [`unreachable`](Self::unreachable) (the metadata actor only).
    pub(crate) fn set_unreachable(&self, why: Option<Arc<str>>) {
        *self.unreachable.write().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Replaces the per-topic causes (the metadata actor only).
    pub(crate) fn set_topic_causes(&self, causes: HashMap<Arc<str>, Arc<str>>) {
        *self.topic_causes.write().unwrap_or_else(|e| e.into_inner()) = causes;
    }

    /// Why `topic` is not in the metadata, as far as the producer knows: what the brokers
    /// said of it, then why brokers could not be asked.
    pub(crate) fn metadata_cause(&self, topic: &str) -> Option<Arc<str>> {
        let of_topic = self
            .topic_causes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned();
        match (of_topic, self.unreachable()) {
            (Some(t), Some(u)) => Some(Arc::from(format!("{t}; {u}"))),
            (t, u) => t.or(u),
        }
    }

    /// The brokers in the producer's rack now.
    pub(crate) fn in_rack(&self) -> BTreeSet<i32> {
        self.in_rack
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the brokers in the producer's rack (a poisoned lock is taken over: the set
    /// is replaced whole).
    pub(crate) fn set_in_rack(&self, brokers: BTreeSet<i32>) {
        *self.in_rack.write().unwrap_or_else(|e| e.into_inner()) = brokers;
    }

    // One rule for a poisoned lock, reading or writing: it is taken over. The state is a plain
    // value replaced in one assignment, so a panic elsewhere cannot leave it half written.
    fn read_producer(&self) -> RwLockReadGuard<'_, ProducerIdState> {
        self.producer.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_producer(&self) -> RwLockWriteGuard<'_, ProducerIdState> {
        self.producer.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a newer leader for `topic`-`partition`, as a Produce response named it
    /// (KIP-951). Applied only when `leader_epoch` is above the known one, so a stale hint
    /// never undoes a newer fact; returns whether the view changed.
    pub(crate) fn learn_leader(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    ) -> bool {
        let Some(mut entry) = self.topics.get_mut(topic) else {
            return false;
        };
        let Ok(i) = usize::try_from(partition) else {
            return false;
        };
        match entry.partitions.get(i) {
            Some(p) if leader >= 0 && leader_epoch > p.leader_epoch => {}
            _ => return false,
        }
        let mut meta = TopicMeta::clone(&entry);
        meta.partitions[i] = PartitionMeta {
            leader,
            leader_epoch,
        };
        meta.available = available(&meta.partitions);
        meta.local = local(&meta.partitions, &self.in_rack());
        *entry = Arc::new(meta);
        true
    }

    /// The leader of `topic`-`partition` and its connection, if both are known.
    pub(crate) fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<(i32, BrokerLink)> {
        let meta = self.topics.get(topic)?;
        let leader = meta.partitions.get(partition as usize)?.leader;
        if leader < 0 {
            return None;
        }
        let conn = self.brokers.get(&leader)?;
        Some((leader, conn.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: i32, leader_epoch: i32) -> ClusterView {
        let view = ClusterView::default();
        let p = PartitionMeta {
            leader,
            leader_epoch,
        };
        let meta = TopicMeta {
            name: Arc::from("t"),
            topic_id: Some(1),
            partitions: vec![p, p],
            available: vec![0, 1],
            local: Vec::new(),
        };
        view.topics.insert(Arc::from("t"), Arc::new(meta));
        view
    }

    fn partition(view: &ClusterView, i: usize) -> PartitionMeta {
        view.topics.get("t").unwrap().partitions[i]
    }

    /// A leader learnt from a Produce response (KIP-951) moves its partition into or out
    /// of the producer's rack for sticky partitioning (KIP-1123) at once.
    #[test]
    fn a_leader_hint_updates_the_partitions_led_in_the_rack() {
        let v = view(1, 5);
        v.set_in_rack([2].into());
        assert!(v.learn_leader("t", 1, 2, 6));
        assert_eq!(v.topics.get("t").unwrap().local, vec![1]);
        assert!(v.learn_leader("t", 1, 3, 7));
        assert!(v.topics.get("t").unwrap().local.is_empty());
    }

    #[test]
    fn a_newer_leader_hint_moves_only_its_partition() {
        let v = view(1, 5);
        assert!(v.learn_leader("t", 0, 2, 6));
        assert_eq!(
            partition(&v, 0),
            PartitionMeta {
                leader: 2,
                leader_epoch: 6
            }
        );
        assert_eq!(
            partition(&v, 1),
            PartitionMeta {
                leader: 1,
                leader_epoch: 5
            }
        );
    }

    #[test]
    fn a_stale_or_unusable_hint_changes_nothing() {
        let v = view(1, 5);
        assert!(!v.learn_leader("t", 0, 2, 5), "same epoch");
        assert!(!v.learn_leader("t", 0, 2, 4), "older epoch");
        assert!(!v.learn_leader("t", 0, -1, 9), "no leader");
        assert!(!v.learn_leader("t", 7, 2, 9), "no such partition");
        assert!(!v.learn_leader("u", 0, 2, 9), "no such topic");
        assert_eq!(partition(&v, 0).leader, 1);
    }

    #[test]
    fn a_metadata_response_older_than_a_learnt_leader_keeps_the_leader() {
        let known = PartitionMeta {
            leader: 2,
            leader_epoch: 6,
        };
        let stale = PartitionMeta {
            leader: 1,
            leader_epoch: 5,
        };
        let fresh = PartitionMeta {
            leader: 3,
            leader_epoch: 7,
        };
        let unknown_epoch = PartitionMeta {
            leader: 3,
            leader_epoch: -1,
        };
        assert_eq!(merge_partition(Some(known), stale), known);
        assert_eq!(merge_partition(Some(known), fresh), fresh);
        assert_eq!(merge_partition(Some(known), unknown_epoch), unknown_epoch);
        assert_eq!(merge_partition(None, stale), stale);
    }

    /// KAFKA-12257: the topic was deleted and created again (a new topic id); its leader
    /// epochs began again at 0, below the old topic's.
    #[test]
    fn a_new_topic_id_replaces_the_known_leaders() {
        let old = |leader| PartitionMeta {
            leader,
            leader_epoch: 5,
        };
        let known = TopicMeta {
            name: Arc::from("t"),
            topic_id: Some(1),
            partitions: vec![old(1), old(1)],
            available: vec![0, 1],
            local: Vec::new(),
        };
        let new = |leader| PartitionMeta {
            leader,
            leader_epoch: 0,
        };
        let fetched = vec![new(2), new(3), new(2)];
        assert_eq!(
            merge_topic(Some(&known), Some(2), fetched.clone()),
            fetched,
            "another topic id: the response replaces what was known"
        );
        assert_eq!(
            merge_topic(Some(&known), Some(1), fetched.clone()),
            vec![old(1), old(1), new(2)],
            "the same topic: an older epoch is stale"
        );
        assert_eq!(
            merge_topic(Some(&known), None, fetched.clone()),
            vec![old(1), old(1), new(2)],
            "no id in the response (Metadata before v10): merged"
        );
        let unknown_id = TopicMeta {
            topic_id: None,
            ..known.clone()
        };
        assert_eq!(
            merge_topic(Some(&unknown_id), Some(2), fetched.clone()),
            fetched,
            "an id where none was known: replaced, as Java does"
        );
        assert_eq!(merge_topic(None, Some(2), fetched.clone()), fetched);
    }
}
