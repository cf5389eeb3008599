//! `Producer::partitions_for` against Apache Kafka, compared with what librdkafka's metadata
//! says of the same topic.

use std::time::{Duration, Instant};

use herald::Node;
use herald_actors::Producer;

use crate::partitions_for::as_states;
use crate::support::kafka::{cluster, shared, SharedLogsOnFailure};
use crate::support::{init_tracing, unique_topic};

/// Three brokers, replication factor 3: every partition's leader, replicas and in-sync
/// replicas are librdkafka's, the nodes carry the addresses the brokers advertise. With the
/// leader of partition 0 stopped, the answer follows the cluster (once a refresh has it):
/// another leader, the stopped broker out of the in-sync replicas and, no longer listed, a
/// replica known by id only (Java's placeholder node).
#[actix_rt::test]
async fn kafka_partitions_for_follows_the_clusters_metadata() {
    init_tracing();
    let mut kafka = cluster().await;
    let topic = unique_topic("partitions-for");
    kafka.create_topic(&topic, 3, 3).await;
    kafka.wait_in_sync(&topic, Duration::from_secs(60)).await;
    let bootstrap = kafka.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("metadata.max.age.ms", "500"),
    ])
    .unwrap();

    let infos = producer.partitions_for(&topic).await.unwrap();
    assert_eq!(as_states(&infos), kafka.partitions(&topic).await);
    for p in &infos {
        assert_eq!(&*p.topic, topic.as_str());
        assert_eq!(p.replicas.len(), 3, "{p:?}");
        assert!(p.offline_replicas.is_empty(), "{p:?}");
        assert!(p.leader_epoch >= 0, "{p:?}");
        for n in p.replicas.iter().chain(&p.leader) {
            let address = format!("{}:{}", n.host, n.port);
            assert!(
                bootstrap.split(',').any(|a| a == address),
                "{n:?} is not one of {bootstrap}"
            );
        }
    }

    let stopped = infos[0].leader.as_ref().unwrap().id;
    kafka.stop(stopped).await;
    // librdkafka's view first, then Herald's, both without the stopped broker.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = loop {
        let now = kafka.partitions(&topic).await;
        if now
            .iter()
            .all(|p| p.leader >= 0 && !p.isr.contains(&stopped))
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not shrink: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let infos = loop {
        let infos = producer.partitions_for(&topic).await.unwrap();
        if as_states(&infos) == expected {
            break infos;
        }
        assert!(
            Instant::now() < deadline,
            "Herald's view {:?} never became librdkafka's {expected:?}",
            as_states(&infos)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for p in &infos {
        assert_ne!(p.leader.as_ref().map(|n| n.id), Some(stopped), "{p:?}");
        let gone = p.replicas.iter().find(|n| n.id == stopped);
        assert_eq!(gone, Some(&Node::unlisted(stopped)), "{p:?}");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
}

/// A topic the producer has no metadata for is fetched first: on a broker that creates
/// topics on demand (Kafka's default), asking creates it, as Java's `partitionsFor` does.
#[actix_rt::test]
async fn kafka_partitions_for_an_unseen_topic_fetches_it() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("partitions-for-new");
    let producer = Producer::from_pairs([("bootstrap.servers", kafka.bootstrap())]).unwrap();
    let infos = producer.partitions_for(&topic).await.unwrap();
    assert_eq!(as_states(&infos), kafka.partitions(&topic).await);
    assert_eq!(
        infos.len(),
        1,
        "num.partitions of the test broker: {infos:?}"
    );
    assert!(producer.close(Duration::from_secs(10)).await);
}
