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
                local: &[],
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
                        local: &[],
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

/// KIP-1123 on librdkafka's mock cluster, whose Metadata responses carry each broker's rack:
/// with `partitioner.rack.aware` and `client.rack`, keyless records go only to the partitions
/// led in that rack (read back by an independent consumer), keyed records still hash over
/// every partition, and with a rack no broker is in, keyless records spread over all.
#[actix_rt::test]
async fn rack_aware_partitioning_keeps_keyless_records_in_the_clients_rack() {
    use herald_actors::{Produce, Producer};

    use crate::support::consumer::read_back;
    use crate::support::mock::Mock;
    use crate::support::{init_tracing, unique_topic};

    init_tracing();
    let mock = Mock::start(3);
    for (broker, rack) in [(1, "az-a"), (2, "az-b"), (3, "az-c")] {
        mock.cluster.broker_rack(broker, rack).expect("rack");
    }
    let bootstrap = mock.bootstrap();
    // Partitions 1 and 4 are led by broker 2, in az-b.
    let topic_with_leaders = |prefix: &str| {
        let topic = unique_topic(prefix);
        mock.create_topic(&topic, 6, 3);
        for p in 0..6 {
            mock.cluster
                .partition_leader(&topic, p, Some(p % 3 + 1))
                .expect("leader");
        }
        topic
    };
    const KEYLESS: usize = 2_000;
    const KEYED: usize = 60;
    for (rack, expect_local) in [("az-b", true), ("az-x", false)] {
        let topic = topic_with_leaders("rack-aware");
        let producer = Producer::from_pairs([
            ("bootstrap.servers", bootstrap.as_str()),
            ("partitioner.rack.aware", "true"),
            ("client.rack", rack),
            // Small batches: the sticky partition is drawn again every kilobyte or so.
            ("batch.size", "1024"),
            ("linger.ms", "0"),
        ])
        .expect("valid config");
        let keyless =
            (0..KEYLESS).map(|i| Produce::new(topic.clone()).value(format!("n{i:0>100}")));
        let keyed = (0..KEYED).map(|i| {
            Produce::new(topic.clone())
                .key(format!("k{i}"))
                .value(format!("k{i}"))
        });
        let outcomes: Vec<_> = keyless.chain(keyed).map(|r| producer.send(r)).collect();
        for o in outcomes {
            o.await.expect("acknowledged");
        }
        assert!(producer.close(Duration::from_secs(5)).await);

        let back = read_back(
            &bootstrap,
            &topic,
            6,
            KEYLESS + KEYED,
            Duration::from_secs(30),
        )
        .await;
        let mut keyless_at = [0usize; 6];
        for (p, records) in &back {
            for c in records {
                let value = String::from_utf8_lossy(c.value.as_deref().unwrap()).to_string();
                if let Some(key) = value.strip_prefix('k') {
                    let key = format!("k{key}");
                    assert_eq!(*p, partition_for_key(key.as_bytes(), 6), "{key} hashed");
                } else {
                    keyless_at[*p as usize] += 1;
                }
            }
        }
        assert_eq!(keyless_at.iter().sum::<usize>(), KEYLESS, "{keyless_at:?}");
        if expect_local {
            assert_eq!(
                keyless_at[1] + keyless_at[4],
                KEYLESS,
                "{rack}: {keyless_at:?}"
            );
        } else {
            assert!(
                keyless_at.iter().all(|&n| n > 0),
                "{rack} has no leader here: every partition, {keyless_at:?}"
            );
        }
    }
}

/// Records without a key stay on their sticky partition until its last batch is full after
/// an append, or 2 x batch.size went there (Java's `allBatchesFull` and its cap): the
/// record that starts a new batch does not switch, which would leave that one record's
/// batch behind. Read back, the keyless records sent in a row to one partition (a run) hold
/// about two batches each, not one.
#[actix_rt::test]
async fn keyless_records_stay_until_the_partitions_last_batch_is_full() {
    use herald_actors::{Produce, Producer};

    use crate::support::consumer::read_back;
    use crate::support::mock::Mock;
    use crate::support::{init_tracing, unique_topic};

    const RECORDS: usize = 6_000;
    const BATCH_SIZE: usize = 16_384;
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("sticky-runs");
    mock.create_topic(&topic, 6, 1);
    let bootstrap = mock.bootstrap();
    let batch_size = BATCH_SIZE.to_string();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("batch.size", batch_size.as_str()),
        ("linger.ms", "1000"),
    ])
    .expect("valid config");
    // 100-byte values that parse as the record's index.
    let sends: Vec<_> = (0..RECORDS)
        .map(|i| producer.send(Produce::new(topic.clone()).value(format!("{i:0>100}"))))
        .collect();
    for (i, o) in join_all(sends).await.into_iter().enumerate() {
        o.unwrap_or_else(|e| panic!("record {i}: {e}"));
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&bootstrap, &topic, 6, RECORDS, Duration::from_secs(30)).await;
    let mut partition_of = vec![-1; RECORDS];
    for (p, records) in &back {
        for r in records {
            let value = r.value.as_deref().expect("a value");
            let i: usize = std::str::from_utf8(value).unwrap().parse().unwrap();
            partition_of[i] = *p;
        }
    }
    assert!(
        partition_of.iter().all(|p| *p >= 0),
        "every record read back"
    );
    let mut runs = vec![1usize];
    for i in 1..RECORDS {
        if partition_of[i] == partition_of[i - 1] {
            *runs.last_mut().unwrap() += 1;
        } else {
            runs.push(1);
        }
    }
    runs.pop(); // The last run ends with the records, not with a switch.
                // A record takes about 108 bytes in its batch: about 151 to a batch of 16 KiB. Switching
                // when a record starts a new batch gives runs of one batch and that record; the switch
                // at 2 x batch.size gives runs of about twice that.
    let per_batch = BATCH_SIZE / 108;
    assert!(runs.len() >= 5, "the sticky partition moved: {runs:?}");
    assert!(
        runs.iter().all(|n| *n >= per_batch * 3 / 2),
        "runs of keyless records on one partition (records per batch about {per_batch}): {runs:?}"
    );
}
