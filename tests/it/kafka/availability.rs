//! Availability under faults on Apache Kafka (issue 12): a new leader learnt from the old
//! leader's refusal (KIP-951), read back with librdkafka's consumer.

use std::time::Duration;

use herald_actors::Produce;

use crate::support::consumer::{read_back, read_indexes};
use crate::support::kafka::cluster;
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
