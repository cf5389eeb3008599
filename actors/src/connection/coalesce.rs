//! Batches waiting for a request, and how they are coalesced into ProduceRequests: in
//! arrival order, at most one batch per partition per request (a broker takes one batch per
//! partition), at most `max.request.size` bytes unless a single batch is larger, and a
//! partition whose batch stays behind keeps all its later batches behind too, so a
//! partition's batches go out in order. No socket here.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::messages::delivery::{OutgoingBatch, SendClaim};

/// What the coalescer needs to know of a batch.
pub(crate) trait Coalesce {
    fn topic(&self) -> &Arc<str>;
    fn partition(&self) -> i32;
    /// The encoded record batch.
    fn records(&self) -> &Bytes;
    /// Records in the batch.
    fn record_count(&self) -> u32;
    /// Who has the batch: a request that took it, or its accumulator that answered it first.
    fn send_claim(&self) -> &SendClaim;
}

impl Coalesce for OutgoingBatch {
    fn topic(&self) -> &Arc<str> {
        &self.topic
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn records(&self) -> &Bytes {
        &self.records
    }
    fn record_count(&self) -> u32 {
        self.record_count
    }
    fn send_claim(&self) -> &SendClaim {
        &self.claim
    }
}

/// Batches handed to the connection and not yet written, in arrival order.
#[derive(Debug)]
pub(crate) struct Coalescer<B> {
    pending: VecDeque<B>,
}

impl<B> Default for Coalescer<B> {
    fn default() -> Self {
        Coalescer {
            pending: VecDeque::new(),
        }
    }
}

impl<B: Coalesce> Coalescer<B> {
    /// Queues batches behind those already waiting, dropping those their accumulators
    /// answered meanwhile: while a throttle holds the connection, batches expire and their
    /// accumulators send the next ones, and the expired ones' memory is already given back.
    pub(crate) fn extend(&mut self, batches: impl IntoIterator<Item = B>) {
        self.pending.retain(|b| !b.send_claim().cancelled());
        self.pending.extend(batches);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a batch waits that its accumulator has not taken back: work worth a
    /// connection (one holding only taken-back batches need not connect, nor stay open).
    pub(crate) fn has_live(&self) -> bool {
        self.pending.iter().any(|b| !b.send_claim().cancelled())
    }

    /// Takes every waiting batch (the connection is gone).
    pub(crate) fn take_all(&mut self) -> VecDeque<B> {
        std::mem::take(&mut self.pending)
    }

    /// Takes the batches of the next ProduceRequest; the rest keep their order. Batches their
    /// accumulators answered while they waited are dropped unwritten. Empty when nothing is
    /// left to write.
    pub(crate) fn next_request(&mut self, max_request_size: usize) -> Vec<B> {
        let mut taken = Vec::new();
        let mut size = 0usize;
        let mut blocked: HashSet<(Arc<str>, i32)> = HashSet::new();
        let mut rest = VecDeque::with_capacity(self.pending.len());
        while let Some(batch) = self.pending.pop_front() {
            if batch.send_claim().cancelled() {
                continue;
            }
            let key = (batch.topic().clone(), batch.partition());
            // One batch per partition per request, and a partition whose earlier batch stays
            // behind keeps all its later ones behind too (order).
            if blocked.contains(&key)
                || (!taken.is_empty() && size + batch.records().len() > max_request_size)
            {
                blocked.insert(key);
                rest.push_back(batch);
                continue;
            }
            if !batch.send_claim().take() {
                continue;
            }
            size += batch.records().len();
            blocked.insert(key);
            taken.push(batch);
        }
        self.pending = rest;
        taken
    }
}

/// The ProduceRequest carrying `batches` (grouped by topic, in order), and its record count.
pub(crate) fn produce_request<B: Coalesce>(
    batches: &[B],
    acks: i16,
    timeout_ms: i32,
) -> (ProduceRequest, u64) {
    let mut request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms);
    let mut records = 0u64;
    for b in batches {
        records += b.record_count() as u64;
        let data = PartitionProduceData::default()
            .with_index(b.partition())
            .with_records(Some(b.records().clone()));
        match request
            .topic_data
            .iter_mut()
            .find(|t| *t.name.0 == **b.topic())
        {
            Some(t) => t.partition_data.push(data),
            None => request.topic_data.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(b.topic().to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    (request, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct B {
        topic: Arc<str>,
        partition: i32,
        records: Bytes,
        id: u32,
        claim: SendClaim,
    }

    impl Coalesce for B {
        fn topic(&self) -> &Arc<str> {
            &self.topic
        }
        fn partition(&self) -> i32 {
            self.partition
        }
        fn records(&self) -> &Bytes {
            &self.records
        }
        fn record_count(&self) -> u32 {
            self.id
        }
        fn send_claim(&self) -> &SendClaim {
            &self.claim
        }
    }

    /// Batch `id` of `topic`-`partition`, `size` bytes long.
    fn b(id: u32, topic: &str, partition: i32, size: usize) -> B {
        B {
            topic: Arc::from(topic),
            partition,
            records: Bytes::from(vec![0u8; size]),
            id,
            claim: SendClaim::default(),
        }
    }

    fn ids(batches: &[B]) -> Vec<u32> {
        batches.iter().map(|b| b.id).collect()
    }

    fn coalescer(batches: impl IntoIterator<Item = B>) -> Coalescer<B> {
        let mut c = Coalescer::default();
        c.extend(batches);
        c
    }

    #[test]
    fn one_batch_per_partition_per_request_in_order() {
        let mut c = coalescer([
            b(1, "t", 0, 10),
            b(2, "t", 0, 10),
            b(3, "t", 1, 10),
            b(4, "u", 0, 10),
            b(5, "t", 1, 10),
        ]);
        assert_eq!(ids(&c.next_request(1000)), [1, 3, 4]);
        assert_eq!(ids(&c.next_request(1000)), [2, 5]);
        assert!(c.is_empty());
        assert!(c.next_request(1000).is_empty());
    }

    #[test]
    fn the_size_limit_holds_back_later_batches_and_their_partitions() {
        let mut c = coalescer([
            b(1, "t", 0, 60),
            b(2, "t", 1, 60),
            b(3, "t", 2, 30),
            b(4, "t", 1, 10),
        ]);
        // 2 does not fit beside 1; 3 does; 4 stays behind 2, its partition's older batch.
        assert_eq!(ids(&c.next_request(100)), [1, 3]);
        assert_eq!(ids(&c.next_request(100)), [2]);
        assert_eq!(ids(&c.next_request(100)), [4]);
    }

    #[test]
    fn a_batch_larger_than_the_limit_goes_alone() {
        let mut c = coalescer([b(1, "t", 0, 500), b(2, "t", 1, 10)]);
        assert_eq!(ids(&c.next_request(100)), [1]);
        assert_eq!(ids(&c.next_request(100)), [2]);
    }

    #[test]
    fn a_batch_answered_while_it_waits_is_never_written() {
        let batches = [
            b(1, "t", 0, 10),
            b(2, "t", 0, 10),
            b(3, "t", 1, 10),
            b(4, "t", 2, 10),
        ];
        let cancel = |i: usize| batches[i].claim.cancel();
        let mut c = coalescer(batches.clone());
        assert!(cancel(2), "3 was not taken yet");
        let first = c.next_request(1000);
        assert_eq!(ids(&first), [1, 4]);
        // Taken into a request: too late to take back.
        assert!(!cancel(0) && !cancel(3));
        // 2 waited behind 1 and was answered meanwhile: dropped, not written next.
        assert!(cancel(1));
        assert!(c.next_request(1000).is_empty());
        assert!(c.is_empty());
        // Answered while a throttle holds the queue: gone when the next batches come.
        let waiting = [b(5, "t", 0, 10), b(6, "t", 1, 10)];
        c.extend(waiting.clone());
        assert!(waiting[0].claim.cancel());
        let seventh = b(7, "t", 2, 10);
        c.extend([seventh.clone()]);
        assert!(c.has_live());
        assert!(waiting[1].claim.cancel() && seventh.claim.cancel());
        // Queued still, but nothing left worth a connection.
        assert!(!c.is_empty() && !c.has_live());
        assert_eq!(ids(&Vec::from(c.take_all())), [6, 7]);
    }

    #[test]
    fn take_all_returns_what_waits_in_order() {
        let mut c = coalescer([b(1, "t", 0, 1), b(2, "t", 0, 1)]);
        c.extend([b(3, "u", 0, 1)]);
        assert_eq!(ids(&Vec::from(c.take_all())), [1, 2, 3]);
        assert!(c.is_empty());
    }

    #[test]
    fn the_request_groups_partitions_by_topic() {
        let batches = [b(1, "t", 0, 3), b(2, "u", 4, 2), b(3, "t", 1, 1)];
        let (request, records) = produce_request(&batches, -1, 30_000);
        assert_eq!(records, 6, "the sum of record counts");
        assert_eq!((request.acks, request.timeout_ms), (-1, 30_000));
        let layout: Vec<(String, Vec<(i32, usize)>)> = request
            .topic_data
            .iter()
            .map(|t| {
                let parts = t
                    .partition_data
                    .iter()
                    .map(|p| (p.index, p.records.as_ref().map_or(0, |r| r.len())))
                    .collect();
                (t.name.0.to_string(), parts)
            })
            .collect();
        assert_eq!(
            layout,
            [
                ("t".to_string(), vec![(0, 3), (1, 1)]),
                ("u".to_string(), vec![(4, 2)]),
            ]
        );
    }
}
