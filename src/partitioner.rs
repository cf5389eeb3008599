//! Choosing a partition for a record: Java-compatible murmur2 key hashing, sticky
//! partitioning for records without a key, round-robin, and the [`Partitioner`] trait for
//! custom strategies.
//!
//! [`DefaultPartitioner`] follows the Java producer's default (Kafka 3.3+, the
//! `BuiltInPartitioner` together with `KafkaProducer.partition`):
//!
//! - A record with a key (an empty key is still a key) goes to
//!   `to_positive(murmur2(key)) % partition_count`, over *all* partitions, leaderless ones too.
//!   [`murmur2`] is a port of `org.apache.kafka.common.utils.Utils.murmur2` and must match it
//!   byte for byte: keyed ordering only works if every producer of a topic (Java clients,
//!   librdkafka with `partitioner=murmur2_random`, Herald) sends the same key to the same
//!   partition, and Kafka Streams and compacted topics rely on that too. Hashing all
//!   partitions rather than the available ones keeps the mapping stable while a leader moves.
//! - A record without a key is *sticky* (KIP-480, refined by KIP-794's strictly uniform sticky
//!   partitioner): all of a topic's keyless records go to one partition until about
//!   `batch.size` bytes went there and its batch is full (or `2 x batch.size` bytes
//!   regardless), then a new partition is drawn. Filling one batch at a time gives fewer,
//!   larger requests than spreading every record; switching by bytes rather than by batch
//!   keeps the distribution uniform when some brokers are slower than others (KIP-794).
//!
//! - With adaptive partitioning (`partitioner.adaptive.partitioning.enable`, on by default as
//!   in Java), the draw of a new sticky partition is weighted against partitions whose queues
//!   of unsent batches are deep: a partition led by a slow or overloaded broker has batches
//!   piling up, and keyless records, which may go anywhere, are better spent elsewhere. The
//!   weights are Java's (`BuiltInPartitioner.updatePartitionLoadStats`): each partition weighs
//!   `max queue + 1 - its queue`, drawn through a cumulative frequency table. With
//!   `partitioner.availability.timeout.ms` above zero, the partitions of a leader that has
//!   kept a ready batch waiting longer than that are left out of the draw, empty ones too, as
//!   Java leaves out a node not drained for that long. The router supplies the queues through
//!   [`PartitionLoad`] only when a partitioner draws, so the per-record path pays nothing.
//!
//! librdkafka's own default (`consistent_random`, CRC32) places keys differently; only its
//! `murmur2_random` matches Java and Herald.

use std::collections::HashMap;
use std::time::Duration;

/// Partition count and leader availability of one topic, as the router knows them from
/// metadata.
#[derive(Debug, Clone, Copy)]
pub struct TopicPartitions<'a> {
    /// Number of partitions of the topic (all of them, with or without a leader).
    pub count: i32,
    /// Partitions that currently have a leader, in ascending order. May be empty (metadata
    /// without leaders); then partitioners choose among all `0..count`.
    pub available: &'a [i32],
    /// Of `available`, those whose leader is in the producer's rack, in ascending order,
    /// when `partitioner.rack.aware` and `client.rack` are set (KIP-1123); empty otherwise,
    /// or when no leader is in that rack. The default partitioner draws its sticky
    /// partitions from these when there are any.
    pub local: &'a [i32],
}

/// What the router knows of one partition's unsent batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueLoad {
    /// Batches waiting to be sent (not those in flight), in units of `batch.size`: a batch
    /// that grew past `batch.size` while its partition waited counts as the batches Java
    /// would have queued in its place.
    pub batches: u32,
    /// How long the oldest waiting batch has been ready to go (past `linger.ms`) without
    /// being sent: the time its broker has kept the partition from sending. Zero when
    /// nothing waits.
    pub ready_for: Duration,
}

/// The queues of a topic's partitions, as the router sees them when a partitioner draws.
pub trait PartitionLoad {
    /// The load of `partition`; `None` while nothing has been queued for it yet (its load is
    /// unknown, so weighting would leave it out of every draw).
    fn load(&self, partition: i32) -> Option<QueueLoad>;

    /// The broker that leads `partition`, if known: `partitioner.availability.timeout.ms`
    /// leaves out every partition of a leader that has kept a batch from being sent for
    /// longer, as Java's does. Without it, each partition is judged by its own queue.
    fn leader(&self, _partition: i32) -> Option<i32> {
        None
    }
}

/// A topic whose every partition's load is unknown, for callers that have no queues.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLoad;

impl PartitionLoad for NoLoad {
    fn load(&self, _partition: i32) -> Option<QueueLoad> {
        None
    }
}

/// Chooses the partition of a record that does not name one.
///
/// Takes `&mut self` because the router actor owns its partitioner: state such as sticky
/// partitions or round-robin counters needs no locking on the hot path.
///
/// The result must lie in `0..partitions.count`; the router fails the record otherwise.
/// `key` and `value` are the *serialized* bytes (see [`crate::serializer`]).
///
/// # Implementing a custom partitioner
///
/// ```
/// use herald::partitioner::{partition_for_key, Partitioner, TopicPartitions};
///
/// /// Reserves partition 0 for keys starting with `vip:`; hashes other keys over the rest.
/// #[derive(Debug, Default)]
/// struct VipPartitioner;
///
/// impl Partitioner for VipPartitioner {
///     fn partition(
///         &mut self,
///         _topic: &str,
///         key: Option<&[u8]>,
///         _value: Option<&[u8]>,
///         partitions: &TopicPartitions<'_>,
///     ) -> i32 {
///         match key {
///             Some(key) if partitions.count > 1 && !key.starts_with(b"vip:") => {
///                 1 + partition_for_key(key, partitions.count - 1)
///             }
///             _ => 0,
///         }
///     }
/// }
///
/// let mut partitioner = VipPartitioner;
/// let partitions = TopicPartitions { count: 4, available: &[], local: &[] };
/// assert_eq!(partitioner.partition("orders", Some(b"vip:alice"), None, &partitions), 0);
/// assert_ne!(partitioner.partition("orders", Some(b"bob"), None, &partitions), 0);
/// ```
pub trait Partitioner: Send + std::fmt::Debug {
    /// Returns the partition for a record of `topic`.
    fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> i32;

    /// As [`partition`](Self::partition), with the partitions' queues at hand. The router
    /// calls this one; the default ignores `load`. Override it to steer records away from
    /// partitions whose batches pile up (as [`DefaultPartitioner`] does with adaptive
    /// partitioning). `load` locks a partition's queue for each call, so ask only when
    /// choosing anew, not for every record.
    fn partition_with_load(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
        load: &dyn PartitionLoad,
    ) -> i32 {
        let _ = load;
        self.partition(topic, key, value, partitions)
    }

    /// Called by the router after each append of a record to `partition`, so that a sticky
    /// partitioner can decide to switch. `appended_bytes` is the record's size in the batch;
    /// `batch_full` is true when, after this append, the partition has no batch that can take
    /// more records (Java's `allBatchesFull`): not when the record started a new batch, which
    /// is not full yet. The default does nothing.
    fn on_append(&mut self, topic: &str, partition: i32, appended_bytes: usize, batch_full: bool) {
        let _ = (topic, partition, appended_bytes, batch_full);
    }
}

impl<P: Partitioner + ?Sized> Partitioner for Box<P> {
    fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> i32 {
        (**self).partition(topic, key, value, partitions)
    }

    fn partition_with_load(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
        load: &dyn PartitionLoad,
    ) -> i32 {
        (**self).partition_with_load(topic, key, value, partitions, load)
    }

    fn on_append(&mut self, topic: &str, partition: i32, appended_bytes: usize, batch_full: bool) {
        (**self).on_append(topic, partition, appended_bytes, batch_full)
    }
}

/// Murmur2 (32-bit) exactly as Kafka's `Utils.murmur2` computes it, returned as Java's `int`.
///
/// Wrapping `u32` arithmetic stands in for Java's overflowing `int`; `>>` on `u32` is Java's
/// `>>>`. Any deviation would send keys to other partitions than Java clients do.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java hashes an int length; keys longer than i32::MAX cannot exist there either.
    let mut h = SEED ^ data.len() as u32;

    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail falls through like Java's switch: 3 bytes mix in all three.
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Clears the sign bit, as Kafka's `Utils.toPositive`. Not `abs`: `abs(i32::MIN)` overflows,
/// and `abs` maps a negative hash to a different partition than Java does.
#[inline]
pub fn to_positive(h: i32) -> i32 {
    h & 0x7fff_ffff
}

/// The partition Java's default partitioner chooses for a (serialized) key:
/// `to_positive(murmur2(key)) % num_partitions`, over all partitions.
///
/// `num_partitions` must be positive; for a non-positive count this returns 0, which the
/// router rejects as out of range rather than dividing by zero.
#[inline]
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// Sticky state of one topic.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    /// Partition keyless records currently go to; negative when a new one must be drawn.
    current: i32,
    /// The partition just switched away from, avoided by the next draw.
    previous: i32,
    /// Bytes appended to `current` by keyless records since it was chosen.
    produced: usize,
}

/// Java's default partitioning (Kafka 3.3+): murmur2 for keys, strictly uniform sticky
/// partitioning (KIP-794) for records without a key or with `partitioner.ignore.keys`.
#[derive(Debug)]
pub struct DefaultPartitioner {
    batch_size: usize,
    ignore_keys: bool,
    rng: fastrand::Rng,
    topics: HashMap<String, Sticky>,
    /// Whether the latest `partition` call placed its record stickily. Java counts only the
    /// bytes of records its sticky logic placed (keyed records and records with an explicit
    /// partition do not move the sticky partition), so `on_append` consumes this flag.
    last_sticky: bool,
    /// `partitioner.adaptive.partitioning.enable`.
    adaptive: bool,
    /// `partitioner.availability.timeout.ms`; zero leaves no partition out.
    availability_timeout: Duration,
    /// The weighted draw's table, kept between draws.
    table: Vec<(i32, u64)>,
}

impl Default for DefaultPartitioner {
    /// `batch.size` 16384, keys honoured: the Java producer's defaults.
    fn default() -> Self {
        Self::new(16_384, false)
    }
}

impl DefaultPartitioner {
    /// A partitioner that switches sticky partitions after about `batch_size` bytes (the
    /// producer's `batch.size`); with `ignore_keys` (`partitioner.ignore.keys`) keyed records
    /// are placed stickily too.
    pub fn new(batch_size: usize, ignore_keys: bool) -> Self {
        Self::from_rng(batch_size, ignore_keys, fastrand::Rng::new())
    }

    /// As [`new`](Self::new) with a fixed seed for the partition draws, for reproducible tests.
    pub fn with_seed(batch_size: usize, ignore_keys: bool, seed: u64) -> Self {
        Self::from_rng(batch_size, ignore_keys, fastrand::Rng::with_seed(seed))
    }

    fn from_rng(batch_size: usize, ignore_keys: bool, rng: fastrand::Rng) -> Self {
        Self {
            batch_size,
            ignore_keys,
            rng,
            topics: HashMap::new(),
            last_sticky: false,
            adaptive: true,
            availability_timeout: Duration::ZERO,
            table: Vec::new(),
        }
    }

    /// Switches adaptive partitioning (`partitioner.adaptive.partitioning.enable`, on by
    /// default) and sets `partitioner.availability.timeout.ms` (zero, the default, leaves no
    /// partition out of a draw).
    pub fn adaptive(mut self, enable: bool, availability_timeout: Duration) -> Self {
        self.adaptive = enable;
        self.availability_timeout = availability_timeout;
        self
    }

    fn sticky_partition(
        &mut self,
        topic: &str,
        partitions: &TopicPartitions<'_>,
        load: &dyn PartitionLoad,
    ) -> i32 {
        // Look up by &str; allocate the topic's String only the first time it is seen.
        let state = match self.topics.get_mut(topic) {
            Some(state) => state,
            None => self.topics.entry(topic.to_owned()).or_insert(Sticky {
                current: -1,
                previous: -1,
                produced: 0,
            }),
        };
        if partitions.count <= 0 {
            return 0; // Out of range: the router fails the record.
        }
        // Partition counts only grow in Kafka; the range check guards against inconsistent
        // input.
        if state.current < 0 || state.current >= partitions.count {
            // KIP-1123: the partitions led in the producer's rack, when there are any, are
            // the ones drawn from (with their loads when adaptive), as Java's rack-aware
            // BuiltInPartitioner; otherwise every available one.
            let pool = if partitions.local.is_empty() {
                *partitions
            } else {
                TopicPartitions {
                    count: partitions.count,
                    available: partitions.local,
                    local: &[],
                }
            };
            let partitions = &pool;
            let weighted = if self.adaptive {
                draw_weighted(
                    &mut self.rng,
                    &mut self.table,
                    partitions,
                    load,
                    self.availability_timeout,
                )
            } else {
                None
            };
            state.current =
                weighted.unwrap_or_else(|| draw(&mut self.rng, partitions, state.previous));
            state.produced = 0;
        }
        state.current
    }
}

/// Java's adaptive draw (`BuiltInPartitioner.updatePartitionLoadStats` and `nextPartition`):
/// among the partitions with a leader (less those unsent for longer than
/// `availability_timeout`, when it is above zero), each weighs `max + 1 - queue`, and a
/// uniform number below the weights' sum picks one through the cumulative table. `None`
/// where Java has no load statistics and draws uniformly: a partition's load unknown (Java
/// waits until every partition has had a batch), fewer than two partitions, or every queue
/// equal with none left out.
fn draw_weighted(
    rng: &mut fastrand::Rng,
    table: &mut Vec<(i32, u64)>,
    partitions: &TopicPartitions<'_>,
    load: &dyn PartitionLoad,
    availability_timeout: Duration,
) -> Option<i32> {
    if partitions.count < 2 || partitions.available.is_empty() {
        return None;
    }
    table.clear();
    let stalled = stalled_leaders(partitions, load, availability_timeout)?;
    for p in 0..partitions.count {
        let l = load.load(p)?;
        let led = partitions.available.binary_search(&p).is_ok();
        let unavailable = !availability_timeout.is_zero()
            && match load.leader(p) {
                Some(leader) => stalled.contains(&leader),
                None => l.ready_for > availability_timeout,
            };
        if led && !unavailable {
            table.push((p, u64::from(l.batches)));
        }
    }
    let first = table.first()?.1;
    let all_equal = table.iter().all(|&(_, q)| q == first);
    if all_equal && table.len() == partitions.count as usize {
        return None;
    }
    let max_plus_1 = table.iter().map(|&(_, q)| q).max().unwrap_or(0) + 1;
    let mut sum = 0;
    for entry in table.iter_mut() {
        sum += max_plus_1 - entry.1;
        entry.1 = sum;
    }
    // Java: `toPositive(nextInt()) % cft[last]`, then the first entry strictly greater.
    let weighted = u64::from(rng.u32(0..=i32::MAX as u32)) % sum;
    let index = table.partition_point(|&(_, c)| c <= weighted);
    table.get(index).map(|&(p, _)| p)
}

/// The leaders (as `load` names them) of a partition whose oldest ready batch has waited
/// longer than `availability_timeout`: Java's `readyTimeMs - drainTimeMs` of a node past the
/// timeout, seen from its queues. Empty with no timeout; `None` while a partition's load is
/// unknown (the draw is uniform then).
fn stalled_leaders(
    partitions: &TopicPartitions<'_>,
    load: &dyn PartitionLoad,
    availability_timeout: Duration,
) -> Option<Vec<i32>> {
    let mut stalled = Vec::new();
    if availability_timeout.is_zero() {
        return Some(stalled);
    }
    for p in 0..partitions.count {
        if load.load(p)?.ready_for > availability_timeout {
            if let Some(leader) = load.leader(p) {
                if !stalled.contains(&leader) {
                    stalled.push(leader);
                }
            }
        }
    }
    Some(stalled)
}

/// Draws uniformly among the available partitions (all when none is), avoiding `previous`
/// when another choice exists so that a switch really moves to another partition.
fn draw(rng: &mut fastrand::Rng, partitions: &TopicPartitions<'_>, previous: i32) -> i32 {
    let available = partitions.available;
    if available.is_empty() {
        let n = partitions.count;
        if n > 1 && (0..n).contains(&previous) {
            let p = rng.i32(0..n - 1);
            return if p >= previous { p + 1 } else { p };
        }
        return rng.i32(0..n);
    }
    let n = available.len();
    if n > 1 {
        if let Some(skip) = available.iter().position(|&p| p == previous) {
            let i = rng.usize(0..n - 1);
            return available[if i >= skip { i + 1 } else { i }];
        }
    }
    available[rng.usize(0..n)]
}

impl Partitioner for DefaultPartitioner {
    fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> i32 {
        self.partition_with_load(topic, key, value, partitions, &NoLoad)
    }

    fn partition_with_load(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
        load: &dyn PartitionLoad,
    ) -> i32 {
        match key {
            Some(key) if !self.ignore_keys => {
                self.last_sticky = false;
                partition_for_key(key, partitions.count)
            }
            _ => {
                self.last_sticky = true;
                self.sticky_partition(topic, partitions, load)
            }
        }
    }

    /// Counts the bytes of the record placed by the immediately preceding
    /// [`partition`](Partitioner::partition) call if it was placed stickily; switches after
    /// `batch_size` bytes once the batch is full, or after `2 x batch_size` bytes regardless
    /// (a partition whose batches never fill, e.g. under a long `linger.ms`, must not keep
    /// all keyless traffic).
    fn on_append(&mut self, topic: &str, partition: i32, appended_bytes: usize, batch_full: bool) {
        if !std::mem::take(&mut self.last_sticky) {
            return;
        }
        let Some(state) = self.topics.get_mut(topic) else {
            return;
        };
        if state.current != partition {
            return;
        }
        state.produced = state.produced.saturating_add(appended_bytes);
        if (state.produced >= self.batch_size && batch_full)
            || state.produced >= self.batch_size.saturating_mul(2)
        {
            state.previous = state.current;
            state.current = -1;
            state.produced = 0;
        }
    }
}

/// Java's `RoundRobinPartitioner`: every record, keyed or not, goes to the next partition of
/// its topic in turn, among available partitions (all when none is available).
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    /// Per-topic counter; an `i32` wrapping like Java's `AtomicInteger`.
    counters: HashMap<String, i32>,
}

impl RoundRobinPartitioner {
    /// A partitioner with every topic's counter at 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_value(&mut self, topic: &str) -> i32 {
        let counter = match self.counters.get_mut(topic) {
            Some(counter) => counter,
            None => self.counters.entry(topic.to_owned()).or_insert(0),
        };
        let value = *counter;
        *counter = value.wrapping_add(1);
        value
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &mut self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> i32 {
        let next = to_positive(self.next_value(topic));
        if !partitions.available.is_empty() {
            partitions.available[next as usize % partitions.available.len()]
        } else if partitions.count > 0 {
            next % partitions.count
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: TopicPartitions<'static> = TopicPartitions {
        count: 6,
        available: &[],
        local: &[],
    };

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"kafka"), 0xd067_cf64_u32 as i32);
        assert_eq!(murmur2(b""), 0x106e_08d9_u32 as i32);
    }

    #[test]
    fn tail_lengths_all_differ() {
        // 0..=3 tail bytes after a full word exercise every fall-through case.
        let hashes: Vec<i32> = (4..8).map(|n| murmur2(&b"abcdefgh"[..n])).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn masks_rather_than_abs() {
        // This 4-byte key hashes to exactly i32::MIN (found by exhaustive search): `abs`
        // would overflow, the mask gives 0.
        let key = [167, 214, 80, 108];
        assert_eq!(murmur2(&key), i32::MIN);
        assert_eq!(to_positive(i32::MIN), 0);
        for n in [1, 3, 7, 50] {
            assert_eq!(partition_for_key(&key, n), 0);
        }
        // A negative hash: the mask and abs disagree, Java uses the mask.
        let h = murmur2(b"21");
        assert_eq!(to_positive(h), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_ne!(partition_for_key(b"21", 7), h.abs() % 7);
    }

    #[test]
    fn keyed_records_hash_over_all_partitions() {
        let mut p = DefaultPartitioner::with_seed(100, false, 1);
        let only_one = TopicPartitions {
            count: 6,
            available: &[2],
            local: &[],
        };
        for key in [&b"foobar"[..], b"abc", b"", b"kafka"] {
            assert_eq!(
                p.partition("t", Some(key), None, &only_one),
                partition_for_key(key, 6)
            );
        }
        assert_eq!(partition_for_key(b"", 6), to_positive(0x106e_08d9) % 6);
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn sticky_stays_until_batch_size_and_full_batch() {
        let mut p = DefaultPartitioner::with_seed(100, false, 7);
        let first = p.partition("t", None, None, &ALL);
        // 150 bytes without a full batch: stays.
        for _ in 0..15 {
            assert_eq!(p.partition("t", None, None, &ALL), first);
            p.on_append("t", first, 10, false);
        }
        assert_eq!(p.partition("t", None, None, &ALL), first);
        // Past batch_size and the batch is full: switches, to another partition.
        p.on_append("t", first, 10, true);
        let second = p.partition("t", None, None, &ALL);
        assert_ne!(second, first);
        // A full batch before batch_size bytes does not switch.
        p.on_append("t", second, 10, true);
        assert_eq!(p.partition("t", None, None, &ALL), second);
    }

    #[test]
    fn sticky_switches_unconditionally_after_twice_batch_size() {
        let mut p = DefaultPartitioner::with_seed(100, false, 11);
        let first = p.partition("t", None, None, &ALL);
        for _ in 0..19 {
            p.on_append("t", first, 10, false);
            assert_eq!(p.partition("t", None, None, &ALL), first);
        }
        p.on_append("t", first, 10, false); // 200 bytes = 2 x batch_size
        assert_ne!(p.partition("t", None, None, &ALL), first);
    }

    #[test]
    fn sticky_ignores_keyed_and_other_partition_appends() {
        let mut p = DefaultPartitioner::with_seed(100, false, 3);
        let first = p.partition("t", None, None, &ALL);
        // A keyed record landing on the sticky partition does not count.
        let keyed = p.partition("t", Some(b"k"), None, &ALL);
        p.on_append("t", keyed, 1000, true);
        // Nor does an append without a preceding partition call (explicit partition).
        p.on_append("t", first, 1000, true);
        assert_eq!(p.partition("t", None, None, &ALL), first);
        // Topics are independent.
        let other = p.partition("u", None, None, &ALL);
        p.on_append("u", other, 1000, true);
        assert_eq!(p.partition("t", None, None, &ALL), first);
    }

    #[test]
    fn sticky_draws_only_among_available() {
        let available = [1, 4];
        let parts = TopicPartitions {
            count: 6,
            available: &available,
            local: &[],
        };
        let mut p = DefaultPartitioner::with_seed(10, false, 5);
        let mut seen = [false; 6];
        for _ in 0..100 {
            let cur = p.partition("t", None, None, &parts);
            assert!(available.contains(&cur), "{cur} not available");
            seen[cur as usize] = true;
            p.on_append("t", cur, 10, true);
            let next = p.partition("t", None, None, &parts);
            assert_ne!(
                next, cur,
                "a switch must move when another partition exists"
            );
        }
        assert!(seen[1] && seen[4]);

        // A single available partition: switching stays there.
        let single = TopicPartitions {
            count: 6,
            available: &[3],
            local: &[],
        };
        let mut p = DefaultPartitioner::with_seed(10, false, 5);
        for _ in 0..10 {
            let cur = p.partition("s", None, None, &single);
            assert_eq!(cur, 3);
            p.on_append("s", cur, 10, true);
        }
    }

    #[test]
    fn sticky_is_roughly_uniform() {
        let mut p = DefaultPartitioner::with_seed(10, false, 99);
        let mut counts = [0u32; 6];
        for _ in 0..6000 {
            let cur = p.partition("t", None, None, &ALL);
            counts[cur as usize] += 1;
            p.on_append("t", cur, 10, true);
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    /// Fixed queues for the adaptive draw; `None` for a partition with no queue yet.
    struct Loads(Vec<Option<QueueLoad>>);

    impl PartitionLoad for Loads {
        fn load(&self, partition: i32) -> Option<QueueLoad> {
            self.0.get(partition as usize).copied().flatten()
        }
    }

    fn queues(batches: &[u32]) -> Loads {
        Loads(
            batches
                .iter()
                .map(|&b| {
                    Some(QueueLoad {
                        batches: b,
                        ready_for: Duration::ZERO,
                    })
                })
                .collect(),
        )
    }

    /// Counts the partitions of `switches` sticky draws, each after a full batch.
    fn draws(
        p: &mut DefaultPartitioner,
        parts: &TopicPartitions<'_>,
        load: &dyn PartitionLoad,
        switches: usize,
    ) -> Vec<u32> {
        let mut counts = vec![0u32; parts.count as usize];
        for _ in 0..switches {
            let cur = p.partition_with_load("t", None, None, parts, load);
            counts[cur as usize] += 1;
            p.on_append("t", cur, 10, true);
        }
        counts
    }

    #[test]
    fn adaptive_draw_weighs_partitions_by_their_queues_as_java_does() {
        // Java's own example: queues 0 3 1 weigh 4 1 3 (cumulative 4 5 8).
        let parts = TopicPartitions {
            count: 3,
            available: &[0, 1, 2],
            local: &[],
        };
        let mut p = DefaultPartitioner::with_seed(10, false, 21);
        let counts = draws(&mut p, &parts, &queues(&[0, 3, 1]), 80_000);
        for (count, weight) in counts.iter().zip([4.0, 1.0, 3.0]) {
            let share = f64::from(*count) / 80_000.0;
            assert!(
                (share - weight / 8.0).abs() < 0.01,
                "shares {counts:?}, expected 4:1:3"
            );
        }
        // Keyed records are not weighed.
        assert_eq!(
            p.partition_with_load("t", Some(b"abc"), None, &parts, &queues(&[0, 9, 9])),
            partition_for_key(b"abc", 3)
        );
    }

    /// KIP-1123: with partitions led in the producer's rack, sticky draws stay among them,
    /// weighed by their queues (here 0 and 2 batches: 3 to 1) with adaptive partitioning,
    /// uniform without; keyed records still hash over every partition.
    #[test]
    fn rack_aware_draws_stay_among_the_local_partitions() {
        let parts = TopicPartitions {
            count: 6,
            available: &[0, 1, 2, 3, 4, 5],
            local: &[1, 4],
        };
        let load = queues(&[0, 0, 0, 0, 2, 0]);
        let mut adaptive = DefaultPartitioner::with_seed(10, false, 3);
        let counts = draws(&mut adaptive, &parts, &load, 40_000);
        let local: u32 = counts[1] + counts[4];
        assert_eq!(local, 40_000, "{counts:?}");
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "weights 3:1, got {counts:?}");
        let mut uniform = DefaultPartitioner::with_seed(10, false, 3).adaptive(false, ms(0));
        let counts = draws(&mut uniform, &parts, &load, 40_000);
        assert_eq!(counts[1] + counts[4], 40_000, "{counts:?}");
        assert!((18_000..22_000).contains(&counts[1]), "{counts:?}");
        assert_eq!(
            adaptive.partition_with_load("t", Some(b"abc"), None, &parts, &load),
            partition_for_key(b"abc", 6)
        );
        // No local partition: every available one, as without the rack.
        let none_local = TopicPartitions {
            local: &[],
            ..parts
        };
        let counts = draws(&mut uniform, &none_local, &load, 6_000);
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn adaptive_draw_is_uniform_without_full_statistics() {
        let parts = TopicPartitions {
            count: 3,
            available: &[0, 1, 2],
            local: &[],
        };
        // Equal queues, a partition never queued to, and adaptive switched off: uniform
        // (and a switch moves, as the uniform draw avoids the partition left).
        let unknown = Loads(vec![
            Some(QueueLoad::default()),
            None,
            Some(QueueLoad {
                batches: 7,
                ready_for: Duration::ZERO,
            }),
        ]);
        let off = DefaultPartitioner::with_seed(10, false, 4).adaptive(false, Duration::ZERO);
        for (mut p, load) in [
            (
                DefaultPartitioner::with_seed(10, false, 4),
                &queues(&[2, 2, 2]),
            ),
            (DefaultPartitioner::with_seed(10, false, 4), &unknown),
            (off, &queues(&[0, 0, 50])),
        ] {
            let counts = draws(&mut p, &parts, load, 30_000);
            for c in &counts {
                assert!((9_000..11_000).contains(c), "{counts:?}");
            }
        }
    }

    #[test]
    fn adaptive_draw_leaves_out_leaderless_and_unavailable_partitions() {
        // Partition 1 has no leader; partition 3 has waited past the availability timeout.
        let parts = TopicPartitions {
            count: 4,
            available: &[0, 2, 3],
            local: &[],
        };
        let mut load = queues(&[0, 0, 0, 0]);
        load.0[3] = Some(QueueLoad {
            batches: 0,
            ready_for: Duration::from_millis(300),
        });
        let mut p = DefaultPartitioner::with_seed(10, false, 8).adaptive(true, ms(200));
        let counts = draws(&mut p, &parts, &load, 20_000);
        assert_eq!((counts[1], counts[3]), (0, 0), "{counts:?}");
        assert!(counts[0] > 9_000 && counts[2] > 9_000, "{counts:?}");
        // Without a timeout partition 3 is drawn again; equal queues but a leaderless
        // partition still go through the table (Java's `length < queueSizes.length`).
        let mut p = DefaultPartitioner::with_seed(10, false, 8);
        let counts = draws(&mut p, &parts, &load, 30_000);
        assert_eq!(counts[1], 0, "{counts:?}");
        for c in [counts[0], counts[2], counts[3]] {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    /// Loads with the partitions' leaders.
    struct Led(Loads, Vec<i32>);

    impl PartitionLoad for Led {
        fn load(&self, partition: i32) -> Option<QueueLoad> {
            self.0.load(partition)
        }
        fn leader(&self, partition: i32) -> Option<i32> {
            self.1.get(partition as usize).copied()
        }
    }

    /// As Java's: a leader that kept a batch waiting past the availability timeout has all
    /// its partitions left out, the one with nothing queued too; another leader's are drawn.
    #[test]
    fn adaptive_draw_leaves_out_every_partition_of_a_stalled_leader() {
        let parts = TopicPartitions {
            count: 4,
            available: &[0, 1, 2, 3],
            local: &[],
        };
        let mut loads = queues(&[0, 0, 0, 0]);
        loads.0[1] = Some(QueueLoad {
            batches: 1,
            ready_for: ms(300),
        });
        // Partitions 0 and 1 on broker 7 (1 stalled, 0 empty), 2 and 3 on broker 8.
        let led = Led(loads, vec![7, 7, 8, 8]);
        let mut p = DefaultPartitioner::with_seed(10, false, 8).adaptive(true, ms(200));
        let counts = draws(&mut p, &parts, &led, 20_000);
        assert_eq!((counts[0], counts[1]), (0, 0), "{counts:?}");
        assert!(counts[2] > 9_000 && counts[3] > 9_000, "{counts:?}");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ignore_keys_uses_sticky() {
        let mut p = DefaultPartitioner::with_seed(100, true, 13);
        let first = p.partition("t", Some(b"a"), None, &ALL);
        for key in [&b"b"[..], b"c", b"foobar", b"kafka"] {
            assert_eq!(p.partition("t", Some(key), None, &ALL), first);
            p.on_append("t", first, 10, false);
        }
        assert_eq!(p.partition("t", Some(b"d"), None, &ALL), first);
        p.on_append("t", first, 200, false);
        assert_ne!(p.partition("t", Some(b"a"), None, &ALL), first);
    }

    #[test]
    fn round_robin_cycles() {
        let mut p = RoundRobinPartitioner::new();
        let got: Vec<i32> = (0..8)
            .map(|_| {
                p.partition(
                    "t",
                    Some(b"same"),
                    None,
                    &TopicPartitions {
                        count: 3,
                        available: &[],
                        local: &[],
                    },
                )
            })
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0, 1]);

        let available = TopicPartitions {
            count: 6,
            available: &[1, 3, 5],
            local: &[],
        };
        let got: Vec<i32> = (0..4)
            .map(|_| p.partition("u", None, None, &available))
            .collect();
        assert_eq!(got, [1, 3, 5, 1]);

        // Counters are per topic.
        assert_eq!(
            p.partition(
                "t",
                None,
                None,
                &TopicPartitions {
                    count: 3,
                    available: &[],
                    local: &[]
                }
            ),
            2
        );
    }

    #[test]
    fn round_robin_wraps_like_java() {
        let mut p = RoundRobinPartitioner::new();
        p.counters.insert("t".to_owned(), i32::MAX);
        let parts = TopicPartitions {
            count: 10,
            available: &[],
            local: &[],
        };
        assert_eq!(p.partition("t", None, None, &parts), i32::MAX % 10);
        // i32::MIN masks to 0, as Java's toPositive(Integer.MIN_VALUE).
        assert_eq!(p.partition("t", None, None, &parts), 0);
        assert_eq!(p.partition("t", None, None, &parts), 1);
    }

    #[test]
    fn boxed_partitioner_delegates() {
        let mut p: Box<dyn Partitioner> = Box::new(RoundRobinPartitioner::new());
        assert_eq!(p.partition("t", None, None, &ALL), 0);
        assert_eq!(p.partition("t", None, None, &ALL), 1);
    }
}
