//! Availability under faults on Apache Kafka (issue 12): a new leader learnt from the old
//! leader's refusal (KIP-951), batches too large for the topic split and sent again; and
//! where partitions are chosen: rack-aware partitioning (KIP-1123). Read back with
//! librdkafka's consumer.

use std::time::Duration;

use herald::partitioner::partition_for_key;
use herald::ErrorKind;
use herald_actors::{Outcome, Produce};

use crate::support::consumer::{read_back, read_indexes};
use crate::support::kafka::{cluster, shared, SharedLogsOnFailure};
use crate::support::outcomes::Outcomes;
use crate::support::producer::start_producer;
use crate::support::{init_tracing, unique_topic};

/// The leader moves while the producer knows the old one, with the periodic refresh 10
/// minutes away and a retry backoff of 20 s. The old leader's NOT_LEADER_OR_FOLLOWER names
/// the new leader (Produce v10+, KIP-951): Herald records it and sends there at once, before
/// any metadata refresh could have told it (`leader_hint_total` counts exactly that).
#[actix_rt::test]
async fn kafka_leader_named_in_a_refusal_is_followed() {
    init_tracing();
    let kafka = cluster().await;
    let topic = unique_topic("leader-hint");
    kafka.create_topic(&topic, 1, 3).await;
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[
            ("metadata.max.age.ms", "600000"),
            ("retry.backoff.ms", "20000"),
            ("retry.backoff.max.ms", "20000"),
        ],
    );
    let first = producer
        .send(Produce::new(topic.clone()).value("0"))
        .await
        .expect("record before the move");
    let state = kafka.partitions(&topic).await[0].clone();
    let to = *state.replicas.iter().find(|r| **r != state.leader).unwrap();
    kafka.move_leader(&topic, 0, to).await;
    let second = producer
        .send(Produce::new(topic.clone()).value("1"))
        .await
        .expect("record after the move");
    let m = producer.metrics().await;
    assert!(
        m.record_retry_total >= 1,
        "the old leader refused the batch"
    );
    assert_eq!(
        m.leader_hint_total, 1,
        "the partition moved to the leader the refusal named"
    );
    assert_eq!(second.offset, first.offset + 1);
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, 2, Duration::from_secs(30)).await;
    assert_eq!(
        read_indexes(&back, 0),
        vec![0, 1],
        "each record once, in order"
    );
}

/// The topic takes batches of at most 4 KiB (`max.message.bytes`) while the producer fills
/// batches of 64 KiB: the broker refuses them with MESSAGE_TOO_LARGE, and Herald splits them
/// (halving until they fit, as Java does) with their own sequence numbers, so every record
/// arrives once and in order under idempotence with 5 requests in flight. A record too large
/// alone fails with RecordTooLarge, and the records after it are written.
#[actix_rt::test]
async fn kafka_batches_too_large_for_the_topic_are_split() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("split");
    kafka
        .create_topic_with(&topic, 1, 1, &[("max.message.bytes", "4096")])
        .await;
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[("batch.size", "65536"), ("linger.ms", "50")],
    );
    const N: u64 = 2000;
    // 200-byte values that parse as their index.
    let value = |i: u64| format!("{i:0>200}");
    let (outcomes, inbox) = Outcomes::start();
    for i in 0..N {
        producer.router().do_send(
            Produce::new(topic.clone())
                .value(value(i))
                .partition(0)
                .tag(i)
                .reply_to(inbox.clone()),
        );
    }
    assert!(
        outcomes.wait_for(N as usize, Duration::from_secs(60)).await,
        "{} of {N} outcomes",
        outcomes.count()
    );
    for (tag, (outcome, _)) in outcomes.drain_once() {
        match outcome {
            Outcome::Ok(md) => assert_eq!(md.offset, tag as i64, "offset of record {tag}: {md:?}"),
            Outcome::Err(e) => panic!("record {tag} failed: {e}"),
        }
    }
    let err = producer
        .send(
            Produce::new(topic.clone())
                .value("x".repeat(10_000))
                .partition(0),
        )
        .await
        .expect_err("a record larger than max.message.bytes");
    assert!(
        matches!(err.kind(), ErrorKind::RecordTooLarge { .. }),
        "expected RecordTooLarge, got {err}"
    );
    let last = producer
        .send(Produce::new(topic.clone()).value(value(N)).partition(0))
        .await
        .expect("the record after the refused one");
    assert_eq!(last.offset, N as i64);
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(
        &kafka.bootstrap(),
        &topic,
        1,
        N as usize + 1,
        Duration::from_secs(30),
    )
    .await;
    let expected: Vec<usize> = (0..=N as usize).collect();
    assert_eq!(
        read_indexes(&back, 0),
        expected,
        "each record once, in order"
    );
}

/// `metadata.max.idle.ms`: a topic nothing was produced to for that long leaves the
/// producer's metadata requests, as in Java. Seen from the broker, which creates a topic a
/// metadata request names (`auto.create.topics.enable`, on by default): deleted after it went
/// idle, it stays deleted under a producer with a 5 s idle limit, while a producer with the
/// default limit (5 minutes) names it again within a refresh and the broker creates it anew.
/// The next record for the forgotten topic asks for it again and is delivered.
#[actix_rt::test]
async fn kafka_idle_topic_leaves_the_metadata_requests() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let producer = |idle: &'static str| {
        start_producer(
            &kafka.bootstrap(),
            &[],
            &[
                ("metadata.max.idle.ms", idle),
                ("metadata.max.age.ms", "500"),
                ("linger.ms", "0"),
            ],
        )
    };
    let (forgetful, keeping) = (producer("5000"), producer("300000"));
    let mut topics = Vec::new();
    for (name, p) in [("idle-forgotten", &forgetful), ("idle-kept", &keeping)] {
        let (once, busy) = (unique_topic(name), unique_topic(&format!("{name}-busy")));
        kafka.create_topic(&once, 1, 1).await;
        kafka.create_topic(&busy, 1, 1).await;
        p.send(Produce::new(once.clone()).value("before"))
            .await
            .unwrap_or_else(|e| panic!("{once}: {e}"));
        topics.push((once, busy));
    }
    // Both producers stay busy with a topic of their own meanwhile: 7 s, past the 5 s limit
    // and the router's 1 s check.
    for i in 0..28 {
        for (p, (_, busy)) in [&forgetful, &keeping].into_iter().zip(&topics) {
            p.send(Produce::new(busy.clone()).value(i.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{busy}: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let [(forgotten, _), (kept, _)] = &topics[..] else {
        unreachable!()
    };
    kafka.delete_topic(forgotten).await;
    kafka.delete_topic(kept).await;
    // Six refreshes of each producer (metadata.max.age.ms 500).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listed = kafka.topics().await;
    assert!(
        listed.contains(kept),
        "the producer with the default limit names {kept} in its refreshes, and the broker creates it again"
    );
    // Created anew, not left undeleted: its record before the deletion is gone.
    let old = read_back(&kafka.bootstrap(), kept, 1, 1, Duration::from_secs(3)).await;
    assert!(
        old.values().all(|v| v.is_empty()),
        "{kept} was deleted and created again, empty: {old:?}"
    );
    assert!(
        !listed.contains(forgotten),
        "{forgotten} was idle for more than metadata.max.idle.ms, yet a metadata request named it after its deletion"
    );
    // Asked for again: the broker creates it (one partition), and the record lands there.
    let md = forgetful
        .send(Produce::new(forgotten.clone()).value("after"))
        .await
        .unwrap_or_else(|e| panic!("{forgotten} after it was forgotten: {e}"));
    assert_eq!(md.partition, 0);
    let back = read_back(&kafka.bootstrap(), forgotten, 1, 1, Duration::from_secs(20)).await;
    let values: Vec<_> = back
        .get(&0)
        .map(|v| v.iter().map(|c| c.value.clone()).collect())
        .unwrap_or_default();
    assert_eq!(values, vec![Some(b"after".to_vec())]);
    assert!(forgetful.close(Duration::from_secs(5)).await);
    assert!(keeping.close(Duration::from_secs(5)).await);
}

/// `Producer::partitions_for` counts as use under `metadata.max.idle.ms`, as Java's
/// `partitionsFor` does: a topic only asked about leaves the metadata requests once the
/// question is older than the limit, and a topic whose records stopped stays while it is
/// asked about. Seen from the broker, which creates a topic a metadata request names: both
/// deleted 10 s in, with an 8 s limit, the one asked about at the start stays deleted, and the
/// one produced to at the start but asked about 6 s in is named again and created anew.
#[actix_rt::test]
async fn kafka_partitions_for_counts_as_use_of_a_topic() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[
            ("metadata.max.idle.ms", "8000"),
            ("metadata.max.age.ms", "500"),
            ("linger.ms", "0"),
        ],
    );
    let (asked, produced) = (unique_topic("idle-asked"), unique_topic("idle-produced"));
    kafka.create_topic(&asked, 1, 1).await;
    kafka.create_topic(&produced, 1, 1).await;
    let start = tokio::time::Instant::now();
    let infos = producer.partitions_for(&asked).await.expect("asked topic");
    assert_eq!(infos.len(), 1);
    producer
        .send(Produce::new(produced.clone()).value("before"))
        .await
        .unwrap_or_else(|e| panic!("{produced}: {e}"));
    tokio::time::sleep_until(start + Duration::from_secs(6)).await;
    let infos = producer
        .partitions_for(&produced)
        .await
        .expect("produced topic");
    assert_eq!(infos.len(), 1);
    tokio::time::sleep_until(start + Duration::from_secs(10)).await;
    kafka.delete_topic(&asked).await;
    kafka.delete_topic(&produced).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listed = kafka.topics().await;
    assert!(
        !listed.contains(&asked),
        "{asked} was only asked about, more than metadata.max.idle.ms ago, yet a metadata request named it after its deletion"
    );
    assert!(
        listed.contains(&produced),
        "{produced} was asked about within metadata.max.idle.ms, so the producer names it in its refreshes and the broker creates it again"
    );
    let old = read_back(&kafka.bootstrap(), &produced, 1, 1, Duration::from_secs(3)).await;
    assert!(
        old.values().all(|v| v.is_empty()),
        "{produced} was deleted and created again, empty: {old:?}"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// Partitions added to a topic while the producer holds its metadata: a record naming one
/// of them waits for metadata that lists it, as Java's `send` does, instead of failing
/// because the producer's view still has the old count (the periodic refresh is 10 minutes
/// away). A partition the topic does not have either fails after one metadata response
/// says so, not after `max.block.ms`; later records for it fail at once, but ask for
/// metadata all the same, so once the partition is added a record for it is delivered
/// (before, nothing asked until the periodic refresh).
#[actix_rt::test]
async fn kafka_a_record_for_a_partition_just_added_waits_for_metadata_that_lists_it() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("grown-explicit");
    kafka.create_topic(&topic, 2, 1).await;
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[
            ("metadata.max.age.ms", "600000"),
            ("max.block.ms", "60000"),
            ("linger.ms", "0"),
        ],
    );
    producer
        .send(Produce::new(topic.clone()).value("before").partition(1))
        .await
        .unwrap_or_else(|e| panic!("{topic}: {e}"));
    kafka.add_partitions(&topic, 4).await;
    let md = producer
        .send(Produce::new(topic.clone()).value("new").partition(3))
        .await
        .unwrap_or_else(|e| panic!("a record for partition 3, just added: {e}"));
    assert_eq!(md.partition, 3);
    let asked = std::time::Instant::now();
    let err = producer
        .send(Produce::new(topic.clone()).value("none").partition(9))
        .await
        .expect_err("the topic has no partition 9");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::PartitionOutOfRange {
                partition: 9,
                partitions: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "refused after a metadata response, not max.block.ms: {:?}",
        asked.elapsed()
    );
    kafka.add_partitions(&topic, 10).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match producer
            .send(Produce::new(topic.clone()).value("nine").partition(9))
            .await
        {
            Ok(md) => {
                assert_eq!(md.partition, 9);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::PartitionOutOfRange { .. }) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "partition 9, added, still refused: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("a record for partition 9, added: {e}"),
        }
    }
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 10, 3, Duration::from_secs(20)).await;
    let values = |p: i32| -> Vec<Option<Vec<u8>>> {
        back.get(&p)
            .map(|v| v.iter().map(|c| c.value.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(values(1), vec![Some(b"before".to_vec())]);
    assert_eq!(values(3), vec![Some(b"new".to_vec())]);
    assert_eq!(values(9), vec![Some(b"nine".to_vec())]);
}

/// A record for a topic forgotten as idle (`metadata.max.idle.ms`) waits for the topic's
/// metadata, as Java's `send` does, and is partitioned by the partitions the topic has then:
/// the topic grew from 2 to 4 partitions meanwhile, and with the periodic refresh 10
/// minutes away only the forgotten topic's new metadata can say so. Routed with the
/// partitions known before, the keyed records below would land on partition 0 or 1.
#[actix_rt::test]
async fn kafka_a_forgotten_topic_is_partitioned_by_its_new_metadata() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("idle-grown");
    kafka.create_topic(&topic, 2, 1).await;
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[
            ("metadata.max.idle.ms", "5000"),
            ("metadata.max.age.ms", "600000"),
            ("linger.ms", "0"),
        ],
    );
    producer
        .send(Produce::new(topic.clone()).key("first").value("before"))
        .await
        .unwrap_or_else(|e| panic!("{topic}: {e}"));
    kafka.add_partitions(&topic, 4).await;
    // Past the 5 s limit and the router's 1 s check: the topic is forgotten.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    // Keys that Java's partitioner puts on the new partitions (2 and 3) of four.
    let keys: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| partition_for_key(k.as_bytes(), 4) >= 2)
        .take(20)
        .collect();
    // All sent at once: each is routed before the first is answered.
    let outcomes: Vec<_> = keys
        .iter()
        .map(|k| producer.send(Produce::new(topic.clone()).key(k.clone()).value(k.clone())))
        .collect();
    for (key, outcome) in keys.iter().zip(outcomes) {
        let md = outcome
            .await
            .unwrap_or_else(|e| panic!("{key} after the topic was forgotten: {e}"));
        assert_eq!(
            md.partition,
            partition_for_key(key.as_bytes(), 4),
            "{key}: partitioned by the topic's four partitions"
        );
    }
    assert!(producer.close(Duration::from_secs(5)).await);
    let back = read_back(
        &kafka.bootstrap(),
        &topic,
        4,
        keys.len() + 1,
        Duration::from_secs(20),
    )
    .await;
    for (p, records) in &back {
        for c in records {
            let key = String::from_utf8_lossy(c.key.as_deref().unwrap_or_default()).into_owned();
            let expected = if key == "first" {
                partition_for_key(b"first", 2)
            } else {
                partition_for_key(key.as_bytes(), 4)
            };
            assert_eq!(*p, expected, "{key} read back from partition {p}");
        }
    }
    let total: usize = back.values().map(Vec::len).sum();
    assert_eq!(total, keys.len() + 1, "every record once: {back:?}");
}

/// KIP-1123 on the three-node cluster, each node in a rack of its own (`rack-<id>`): a
/// producer with `partitioner.rack.aware` and the `client.rack` of one node puts every keyless
/// record on the partitions that node leads, read back by librdkafka's consumer.
#[actix_rt::test]
async fn kafka_rack_aware_partitioning_stays_in_the_clients_rack() {
    use herald_actors::Producer;

    init_tracing();
    let kafka = cluster().await;
    let topic = unique_topic("rack-aware");
    kafka.create_topic(&topic, 6, 3).await;
    let leaders: Vec<i32> = kafka
        .partitions(&topic)
        .await
        .iter()
        .map(|p| p.leader)
        .collect();
    let node = leaders[0];
    let local: Vec<i32> = (0..6).filter(|&p| leaders[p as usize] == node).collect();
    assert!(local.len() < 6, "every leader on node {node}: {leaders:?}");
    let rack = format!("rack-{node}");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        ("partitioner.rack.aware", "true"),
        ("client.rack", rack.as_str()),
        ("batch.size", "1024"),
        ("linger.ms", "0"),
    ])
    .expect("valid config");
    const RECORDS: usize = 1_000;
    let outcomes: Vec<_> = (0..RECORDS)
        .map(|i| producer.send(Produce::new(topic.clone()).value(format!("{i:0>100}"))))
        .collect();
    for o in outcomes {
        o.await.expect("acknowledged");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(
        &kafka.bootstrap(),
        &topic,
        6,
        RECORDS,
        Duration::from_secs(30),
    )
    .await;
    let per_partition: Vec<usize> = (0..6).map(|p| read_indexes(&back, p).len()).collect();
    assert_eq!(
        per_partition.iter().sum::<usize>(),
        RECORDS,
        "{per_partition:?}"
    );
    for (p, n) in per_partition.iter().enumerate() {
        let in_rack = local.contains(&(p as i32));
        assert!(
            in_rack || *n == 0,
            "partition {p} (leader {}) is outside {rack}: {per_partition:?}",
            leaders[p]
        );
    }
}

/// KAFKA-12257: a topic deleted and created again (by the producer's own refreshes, as
/// brokers auto-create a topic a metadata request names) has a new topic id, and its leader
/// epochs begin again at 0. The old topic's leader moved three times first, so its epoch is
/// above the new topic's, and the new topic is led by another broker. Merged by epoch, the
/// view would keep the old leader, which refuses the record as NOT_LEADER_OR_FOLLOWER (its
/// KIP-951 hint carries the lower epoch too) until delivery.timeout.ms; with the new topic id
/// the response replaces the old leaders, and the record is written.
#[actix_rt::test]
async fn kafka_a_topic_created_again_is_led_by_its_new_leader() {
    topic_created_again("60000").await;
}

/// As above, with the topic in use for longer than max.block.ms: the refreshes that find it
/// being created again (LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION) must not drop it
/// from the metadata requests, or no request names it again and the view keeps the old
/// topic's leader for good (Java keeps a topic in its requests while it is in use,
/// `metadata.max.idle.ms`).
#[actix_rt::test]
async fn kafka_a_topic_in_use_past_max_block_and_created_again_is_followed() {
    topic_created_again("1000").await;
}

async fn topic_created_again(max_block_ms: &str) {
    init_tracing();
    let kafka = cluster().await;
    let topic = unique_topic("created-again");
    kafka.create_topic(&topic, 1, 3).await;
    let producer = start_producer(
        &kafka.bootstrap(),
        &[],
        &[
            ("metadata.max.age.ms", "500"),
            ("linger.ms", "0"),
            ("request.timeout.ms", "5000"),
            ("delivery.timeout.ms", "20000"),
            ("max.block.ms", max_block_ms),
        ],
    );
    let send = |value: &str| producer.send(Produce::new(topic.clone()).value(value.to_string()));
    let other_than = |leader: i32| *kafka.ids().iter().find(|&&id| id != leader).unwrap();
    for round in 0..3 {
        send(&format!("old {round}"))
            .await
            .unwrap_or_else(|e| panic!("before move {round}: {e}"));
        let leader = kafka.leader(&topic, 0).await;
        kafka.move_leader(&topic, 0, other_than(leader)).await;
    }
    send("old 3").await.expect("after the moves");
    let old = producer
        .partitions_for(&topic)
        .await
        .expect("the old topic");
    let old_leader = old[0].leader.as_ref().expect("a leader").id;
    assert!(old[0].leader_epoch >= 3, "{old:?}");

    kafka.delete_topic(&topic).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Waits for the deletion, then for the producer's refreshes to create it again.
        if kafka.topics().await.contains(&topic) && kafka.leader(&topic, 0).await >= 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} was not created again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kafka.wait_in_sync(&topic, Duration::from_secs(30)).await;
    if kafka.leader(&topic, 0).await == old_leader {
        kafka.move_leader(&topic, 0, other_than(old_leader)).await;
    }
    let new_leader = kafka.leader(&topic, 0).await;

    let written = send("new")
        .await
        .expect("written to the topic created again");
    assert_eq!(written.partition, 0);
    let now = producer
        .partitions_for(&topic)
        .await
        .expect("the new topic");
    assert_eq!(now[0].leader.as_ref().map(|n| n.id), Some(new_leader));
    assert!(now[0].leader_epoch < old[0].leader_epoch, "{now:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&kafka.bootstrap(), &topic, 1, 1, Duration::from_secs(30)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(values, vec![Some(b"new".to_vec())], "only the new record");
}
