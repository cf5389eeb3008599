//! `Producer::partitions_for` on librdkafka's mock cluster, and its errors.

use std::time::Duration;

use herald::{ErrorKind, Node, PartitionInfo};
use herald_actors::{GetPartitions, Producer};

use crate::support::kafka::{partitions_of, PartitionState};
use crate::support::mock::Mock;
use crate::support::{init_tracing, unique_topic};

/// Herald's answer in the shape of librdkafka's view (`support::kafka::partitions_of`).
pub(crate) fn as_states(infos: &[PartitionInfo]) -> Vec<PartitionState> {
    let ids = |nodes: &[Node]| nodes.iter().map(|n| n.id).collect();
    infos
        .iter()
        .map(|p| PartitionState {
            id: p.partition,
            leader: p.leader.as_ref().map_or(-1, |n| n.id),
            replicas: ids(&p.replicas),
            isr: ids(&p.in_sync_replicas),
        })
        .collect()
}

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
    let expected = tokio::task::spawn_blocking(move || partitions_of(&b, &t).unwrap())
        .await
        .unwrap();
    assert_eq!(as_states(&infos), expected);
    assert!(infos.iter().all(|p| p.replicas.len() == 3));
    // The same answer through the router's address, for code that holds only that.
    let via_router = producer
        .router()
        .send(GetPartitions(topic.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(via_router, infos);
    let invalid = producer
        .router()
        .send(GetPartitions("bad/name".into()))
        .await
        .unwrap();
    assert!(
        matches!(invalid, Err(ErrorKind::InvalidTopic { .. })),
        "{invalid:?}"
    );
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

/// A lookup that waits longer than `metadata.max.idle.ms` (its only broker down) is use of
/// its topic, as Java's `waitOnMetadata` re-adds the topic while it waits: the topic stays in
/// the metadata requests, and the lookup is answered once the broker is back, not at
/// max.block.ms.
#[actix_rt::test]
async fn a_lookup_waiting_past_the_idle_limit_keeps_its_topic() {
    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("partitions-for-idle");
    mock.create_topic(&topic, 3, 1);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("metadata.max.idle.ms", "5000"),
        ("max.block.ms", "30000"),
    ])
    .unwrap();
    mock.cluster.broker_down(1).unwrap();
    let started = std::time::Instant::now();
    let (answer, ()) = futures_util::join!(producer.partitions_for(&topic), async {
        // Past the 5 s limit and the router's idle check a second later.
        tokio::time::sleep(Duration::from_secs(8)).await;
        mock.cluster.broker_up(1).unwrap();
    });
    let infos = answer.unwrap_or_else(|e| panic!("answered once the broker is back: {e}"));
    assert_eq!(infos.len(), 3, "{infos:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(20),
        "answered when the broker came back, not before nor at max.block.ms: {waited:?}"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// A topic forgotten as idle (`metadata.max.idle.ms`) and then asked about is back in the
/// view while its route is still forgotten; the next record for it waits for metadata newer
/// than itself. By then the topic is wanted already and its metadata has not changed: the
/// record is routed once a refresh lists the topic, not failed at max.block.ms for want of
/// a changed entry.
#[actix_rt::test]
async fn a_forgotten_topic_asked_about_again_takes_records_again() {
    use herald_actors::Produce;

    init_tracing();
    let mock = Mock::start(1);
    let topic = unique_topic("forgotten-asked");
    mock.create_topic(&topic, 3, 1);
    let bootstrap = mock.bootstrap();
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("metadata.max.idle.ms", "5000"),
        ("max.block.ms", "4000"),
    ])
    .unwrap();
    producer
        .send(Produce::new(topic.clone()).value("before").partition(1))
        .await
        .expect("the first record");
    // Past the 5 s limit and the router's idle check a second later: the topic is forgotten.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let infos = producer.partitions_for(&topic).await.unwrap();
    assert_eq!(infos.len(), 3, "{infos:?}");
    let md = producer
        .send(Produce::new(topic.clone()).value("after").partition(1))
        .await
        .unwrap_or_else(|e| panic!("a record after the topic was asked about again: {e}"));
    assert_eq!(md.partition, 1);
    assert!(producer.close(Duration::from_secs(5)).await);
    let back =
        crate::support::consumer::read_back(&bootstrap, &topic, 3, 2, Duration::from_secs(10))
            .await;
    let values: Vec<_> = back[&1].iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"before".to_vec()), Some(b"after".to_vec())]
    );
}
