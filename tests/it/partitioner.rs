//! Herald's key partitioning against librdkafka's `murmur2_random`, which matches Java's
//! default partitioner: both must put every key on the same partition, or keyed ordering
//! breaks when Herald and other clients produce to one topic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use herald::partitioner::{partition_for_key, DefaultPartitioner, Partitioner, TopicPartitions};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITION_COUNTS: [i32; 6] = [1, 3, 6, 7, 12, 50];
const KEYS_PER_TOPIC: usize = 10_000;

/// Keys from REFERENCE.md's murmur2 test vectors, always included.
const VECTOR_KEYS: [&[u8]; 7] = [
    b"21",
    b"foobar",
    b"abc",
    b"a-little-bit-long-string",
    b"a-little-bit-longer-string",
    b"kafka",
    b"",
];

/// Random keys of 0..64 bytes (some empty), plus the test-vector keys.
fn random_keys(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = VECTOR_KEYS.iter().map(|k| k.to_vec()).collect();
    while keys.len() < KEYS_PER_TOPIC {
        // One key in 50 is empty, beyond the 1-in-64 chance of the random length.
        let len = if rng.u8(0..50) == 0 {
            0
        } else {
            rng.usize(0..64)
        };
        let mut key = vec![0u8; len];
        rng.fill(&mut key);
        keys.push(key);
    }
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn default_partitioner_matches_librdkafka_murmur2_random() {
    let seed = std::env::var("HERALD_PARTITIONER_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    println!("partitioner seed = {seed} (rerun with HERALD_PARTITIONER_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mock_cluster = MockCluster::new(3).expect("mock cluster");
    for &n in &PARTITION_COUNTS {
        mock_cluster
            .create_topic(&format!("murmur2-{n}"), n, 1)
            .expect("create topic");
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", mock_cluster.bootstrap_servers())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");

    let run = async {
        let mut checked = 0usize;
        for &n in &PARTITION_COUNTS {
            let topic = format!("murmur2-{n}");
            let keys = random_keys(&mut rng);

            // Enqueue the whole topic at once (well under queue.buffering.max.messages), then
            // await all deliveries together so the run takes a few lingers, not 10,000.
            let deliveries = keys.iter().map(|key| {
                let record = FutureRecord::<[u8], [u8]>::to(&topic)
                    .key(key.as_slice())
                    .payload(b"v");
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            });
            let deliveries: Vec<_> = deliveries.collect();
            let results = join_all(deliveries).await;

            let mut default_partitioner = DefaultPartitioner::with_seed(16_384, false, seed);
            let all = TopicPartitions {
                count: n,
                available: &[],
            };
            for (i, (key, result)) in keys.iter().zip(results).enumerate() {
                let delivery = result
                    .expect("delivery future cancelled")
                    .unwrap_or_else(|(e, _)| panic!("delivery failed on {topic}: {e}"));
                let expected = partition_for_key(key, n);
                assert_eq!(
                    delivery.partition,
                    expected,
                    "seed {seed}: topic {topic} ({n} partitions), key #{i} 0x{} (len {})",
                    hex(key),
                    key.len()
                );
                if i < 200 {
                    // Keys ignore availability: hashing all partitions must hold even when
                    // only one partition has a leader.
                    let only_first = TopicPartitions {
                        count: n,
                        available: &[0],
                    };
                    for parts in [&all, &only_first] {
                        assert_eq!(
                            default_partitioner.partition(&topic, Some(key), Some(b"v"), parts),
                            delivery.partition,
                            "seed {seed}: DefaultPartitioner on {topic}, key 0x{}",
                            hex(key)
                        );
                    }
                }
                checked += 1;
            }
        }
        checked
    };
    let checked = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("producing to the mock cluster took more than 60 s");
    assert_eq!(checked, PARTITION_COUNTS.len() * KEYS_PER_TOPIC);
    println!("{checked} keys placed identically by herald and librdkafka");
}
