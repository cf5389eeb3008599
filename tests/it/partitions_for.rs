//! `Producer::partitions_for` on librdkafka's mock cluster, and its errors.

use std::time::Duration;

use herald::ErrorKind;
use herald_actors::Producer;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::ClientConfig;

use crate::support::mock::Mock;
use crate::support::{init_tracing, unique_topic};

/// Replication factor 3 on three mock brokers: the answer is librdkafka's own metadata of the
/// topic, partition by partition.
#[actix_rt::test]
async fn partitions_for_matches_librdkafkas_metadata() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("partitions-for");
    mock.create_topic(&topic, 4, 3);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([("bootstrap.servers", bootstrap.as_str())]).unwrap();
    let infos = producer.partitions_for(&topic).await.unwrap();

    let (b, t) = (bootstrap.clone(), topic.clone());
    let expected: Vec<(i32, i32, Vec<i32>, Vec<i32>)> = tokio::task::spawn_blocking(move || {
        let client: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
        let md = client
            .client()
            .fetch_metadata(Some(&t), Duration::from_secs(5))
            .unwrap();
        let mut ps: Vec<_> = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
            .collect();
        ps.sort();
        ps
    })
    .await
    .unwrap();
    let got: Vec<(i32, i32, Vec<i32>, Vec<i32>)> = infos
        .iter()
        .map(|p| {
            let ids = |v: &[herald::Node]| v.iter().map(|n| n.id).collect::<Vec<_>>();
            (
                p.partition,
                p.leader.as_ref().map_or(-1, |n| n.id),
                ids(&p.replicas),
                ids(&p.in_sync_replicas),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(infos.iter().all(|p| p.replicas.len() == 3));
    for p in &infos {
        let leader = p.leader.as_ref().unwrap();
        assert!(
            bootstrap
                .split(',')
                .any(|a| a == format!("{}:{}", leader.host, leader.port)),
            "{leader:?} in {bootstrap}"
        );
    }
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// A name Kafka does not allow is refused at once; a topic whose metadata does not come
/// within max.block.ms fails with the connection errors behind the wait.
#[actix_rt::test]
async fn partitions_for_errors_name_the_cause() {
    init_tracing();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", "127.0.0.1:1"),
        ("max.block.ms", "300"),
    ])
    .unwrap();
    let e = producer.partitions_for("no spaces").await.unwrap_err();
    assert!(matches!(e, ErrorKind::InvalidTopic { .. }), "{e}");
    let started = std::time::Instant::now();
    let e = producer.partitions_for("t").await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&e, ErrorKind::MetadataTimeout { topic, waited_ms: 300, .. } if &**topic == "t"),
        "{e}"
    );
    assert!(e.to_string().contains("127.0.0.1:1 unreachable"), "{e}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// A lookup waiting for its topic when the metadata actor panics is answered once, by the
/// restarted actor, and the restart is counted.
#[actix_rt::test]
async fn a_lookup_outlives_a_metadata_panic() {
    use herald_actors::fault_injection::Crash;

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("partitions-for-panic");
    mock.create_topic(&topic, 2, 1);
    let producer = Producer::from_pairs([("bootstrap.servers", mock.bootstrap())]).unwrap();
    let metadata = producer.fault_injection().metadata().unwrap();
    // The lookup is queued first, so it waits for the refresh the panic interrupts.
    let (answer, ()) = futures_util::join!(producer.partitions_for(&topic), async {
        metadata.do_send(Crash::Panic);
    });
    let infos = answer.unwrap();
    assert_eq!(infos.len(), 2, "{infos:?}");
    assert_eq!(producer.fault_injection().restarts_of("metadata"), Some(1));
    assert!(producer.close(Duration::from_secs(5)).await);
}
