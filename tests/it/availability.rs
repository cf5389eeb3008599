//! Availability: one bad broker must not hold back the partitions the others lead, and a
//! broker that comes back is used again. librdkafka's mock cluster (3 brokers), a topic with 6
//! partitions and replication factor 1, so that each broker leads some partitions and a stuck
//! leader cannot be replaced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use herald::ErrorKind;
use herald_actors::{Delivered, Outcome, Produce, Producer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::support::consumer::read_back;
use crate::support::mock::Mock;
use crate::support::outcomes::Outcomes;
use crate::support::producer::start_producer;
use crate::support::{init_tracing, unique_topic};

const BROKERS: i32 = 3;
const PARTITIONS: i32 = 6;
/// Records sent to each partition in a burst.
const PER_PARTITION: u64 = 20;

/// The leader of each partition of `topic`, as the cluster's metadata says (asked with
/// librdkafka, on a blocking thread).
async fn leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("metadata client");
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("fetch metadata");
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .expect("topic in metadata");
        let mut out = vec![-1; PARTITIONS as usize];
        for p in t.partitions() {
            out[p.id() as usize] = p.leader();
        }
        out
    })
    .await
    .expect("metadata thread")
}

/// A producer with an outcome collector.
struct Client {
    producer: Producer,
    outcomes: Outcomes,
    inbox: Recipient<Delivered>,
    topic: String,
}

impl Client {
    fn start(mock: &Mock, topic: &str, extra: &[(&'static str, &'static str)]) -> Client {
        let producer = start_producer(
            &mock.bootstrap(),
            &[
                ("acks", "all"),
                ("linger.ms", "5"),
                ("retry.backoff.ms", "50"),
                ("retry.backoff.max.ms", "200"),
                ("reconnect.backoff.ms", "50"),
                ("reconnect.backoff.max.ms", "200"),
            ],
            extra,
        );
        let (outcomes, inbox) = Outcomes::start();
        Client {
            producer,
            outcomes,
            inbox,
            topic: topic.to_string(),
        }
    }

    /// One record to each partition, each acknowledged (connections and metadata are warm).
    async fn probe_all(&self) {
        for p in 0..PARTITIONS {
            let md = self
                .producer
                .send(Produce::new(self.topic.clone()).value("probe").partition(p))
                .await
                .unwrap_or_else(|e| panic!("probe of partition {p} failed: {e}"));
            assert_eq!(md.partition, p);
        }
    }

    /// Sends record `tag` to partition `tag / 1000` without waiting.
    fn send(&self, tag: u64) {
        self.producer.router().do_send(
            Produce::new(self.topic.clone())
                .value(format!("record-{tag}"))
                .partition((tag / 1000) as i32)
                .tag(tag)
                .reply_to(self.inbox.clone()),
        );
    }

    /// Waits until `n` outcomes arrived (panics after `within`); returns them by tag.
    async fn wait_for(&self, n: usize, within: Duration) -> BTreeMap<u64, (Outcome, Instant)> {
        let all = self.outcomes.wait_for(n, within).await;
        let got = self.outcomes.count();
        assert!(all, "{got} of {n} outcomes after {within:?}");
        self.outcomes.drain_once()
    }
}

/// The cluster, a new topic (named from `prefix`) and its partitions' leaders, and a client
/// (with `extra` settings) that has produced to every partition once, so that faults hit a
/// warm producer.
async fn warm_client(
    prefix: &str,
    extra: &[(&'static str, &'static str)],
) -> (Mock, Vec<i32>, Client) {
    init_tracing();
    let mock = Mock::start(BROKERS);
    let topic = unique_topic(prefix);
    mock.create_topic(&topic, PARTITIONS, 1);
    let leaders = leaders(&mock.bootstrap(), &topic).await;
    let client = Client::start(&mock, &topic, extra);
    client.probe_all().await;
    (mock, leaders, client)
}

impl Client {
    /// Waits until the producer's metadata gives none of `partitions` a leader. Keyless
    /// records avoid them only from then on: one the sticky partitioner put on such a
    /// partition before stays there, as in Java, until its leader is back. The refresh the
    /// lost connection asks for is answered by the mock's thread, which a fixed pause did
    /// not always wait for in a loaded CI run (a keyless record then waited for a broker the
    /// test brings back only after it).
    async fn wait_leaderless(&self, partitions: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let view = self
                .producer
                .partitions_for(&self.topic)
                .await
                .expect("the topic's partitions");
            let led: Vec<i32> = view
                .iter()
                .filter(|p| partitions.contains(&p.partition) && p.leader.is_some())
                .map(|p| p.partition)
                .collect();
            if led.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "partitions {led:?} still have a leader 10 s after it went down"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Takes the leader of partition 0 down; returns it and the partitions it leads.
fn down_first_leader(mock: &Mock, leaders: &[i32]) -> (i32, Vec<i32>) {
    let broker = leaders[0];
    let its = (0..PARTITIONS)
        .filter(|&p| leaders[p as usize] == broker)
        .collect();
    mock.cluster.broker_down(broker).unwrap();
    (broker, its)
}

/// A leader that stops answering (30 s round trip) holds back only its own partitions: with
/// request.timeout.ms=1000 and delivery.timeout.ms=3000, every record for the other brokers'
/// partitions is acknowledged before the first record of the stuck broker's partitions fails,
/// and those fail with a delivery timeout that names the stage the batch was in.
#[actix_rt::test]
async fn stuck_broker_holds_back_only_its_partitions() {
    let (mock, leaders, client) = warm_client(
        "availability-stuck",
        &[
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "3000"),
        ],
    )
    .await;

    let stuck_broker = leaders[0];
    let stuck: Vec<i32> = (0..PARTITIONS)
        .filter(|&p| leaders[p as usize] == stuck_broker)
        .collect();
    let healthy: Vec<i32> = (0..PARTITIONS)
        .filter(|&p| leaders[p as usize] != stuck_broker)
        .collect();
    assert!(
        !healthy.is_empty(),
        "leaders are spread over the brokers: {leaders:?}"
    );
    mock.cluster
        .broker_round_trip_time(stuck_broker, Duration::from_secs(30))
        .unwrap();

    let sent_at = Instant::now();
    // Interleaved, so that records for healthy partitions come after stuck ones too.
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            client.send(p as u64 * 1000 + i);
        }
    }
    // A second wave for the healthy partitions only, while the stuck broker's connection is
    // timing out (request.timeout.ms) and being rebuilt, and metadata is being refreshed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..PER_PARTITION {
        for &p in &healthy {
            client.send(p as u64 * 1000 + 500 + i);
        }
    }
    let total = (PER_PARTITION * (PARTITIONS as usize + healthy.len()) as u64) as usize;
    let outcomes = client.wait_for(total, Duration::from_secs(20)).await;
    mock.cluster
        .broker_round_trip_time(stuck_broker, Duration::ZERO)
        .unwrap();

    let mut stages = std::collections::BTreeSet::new();
    let mut last_healthy_ack: Option<Instant> = None;
    let mut first_stuck_failure: Option<Instant> = None;
    for (&tag, (outcome, at)) in &outcomes {
        let p = (tag / 1000) as i32;
        if healthy.contains(&p) {
            let md = outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("record {tag} (healthy partition {p}) failed: {e}"));
            assert_eq!(md.partition, p);
            last_healthy_ack = Some(last_healthy_ack.map_or(*at, |l| l.max(*at)));
        } else {
            let e = match outcome {
                Ok(md) => panic!("record {tag} (partition {p} of stuck broker {stuck_broker}) acknowledged: {md:?}"),
                Err(e) => e,
            };
            match e.kind() {
                ErrorKind::DeliveryTimeout {
                    timeout_ms, stage, ..
                } => {
                    assert_eq!(*timeout_ms, 3000);
                    assert!(!stage.is_empty());
                    stages.insert(*stage);
                    assert!(
                        e.to_string().contains(stage),
                        "the error names the stage: {e}"
                    );
                }
                other => panic!("record {tag}: expected a delivery timeout, got {other:?}"),
            }
            first_stuck_failure = Some(first_stuck_failure.map_or(*at, |f| f.min(*at)));
        }
    }
    let (last_healthy_ack, first_stuck_failure) = (
        last_healthy_ack.expect("healthy outcomes"),
        first_stuck_failure.expect("stuck outcomes"),
    );
    println!(
        "leaders {leaders:?}; broker {stuck_broker} stuck; last healthy ack after {:?}, first stuck failure after {:?} ({stages:?})",
        last_healthy_ack.duration_since(sent_at),
        first_stuck_failure.duration_since(sent_at),
    );
    assert!(
        last_healthy_ack < first_stuck_failure,
        "every healthy partition's record ({healthy:?}) was acknowledged before the first record of the stuck broker's partitions ({stuck:?}) failed; the last ack came {:?} after that failure",
        last_healthy_ack.duration_since(first_stuck_failure)
    );
    assert!(client.producer.close(Duration::from_secs(5)).await);
}

/// A broker that goes down and comes back is used again: a record sent while it is down waits
/// (its partition has no other replica) and records sent after it is up are acknowledged on
/// its partitions, over a new connection.
#[actix_rt::test]
async fn broker_back_up_is_used_again() {
    let (mock, leaders, client) = warm_client(
        "availability-down-up",
        &[
            ("request.timeout.ms", "2000"),
            ("delivery.timeout.ms", "30000"),
        ],
    )
    .await;
    let (broker, its) = down_first_leader(&mock, &leaders);
    // While it is down: records for its partitions wait, the others' go through.
    for &p in &its {
        client.send(p as u64 * 1000);
    }
    let others: Vec<i32> = (0..PARTITIONS).filter(|p| !its.contains(p)).collect();
    for &p in &others {
        client.send(p as u64 * 1000);
    }
    let during = client.wait_for(others.len(), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late: Vec<u64> = client.outcomes.tags();
    for (&tag, (o, _)) in &during {
        let p = (tag / 1000) as i32;
        assert!(
            others.contains(&p),
            "record {tag} of down broker {broker} has an outcome while it is down: {o:?}"
        );
        o.as_ref()
            .unwrap_or_else(|e| panic!("record {tag} (partition {p}) failed: {e}"));
    }
    assert!(
        late.is_empty(),
        "records of the down broker's partitions answered while it is down: {late:?}"
    );
    let connections_before = client.producer.metrics().await.connection_creation_total;

    mock.cluster.broker_up(broker).unwrap();
    // The record sent while it was down is delivered now, and new ones too.
    for &p in &its {
        for i in 1..=PER_PARTITION {
            client.send(p as u64 * 1000 + i);
        }
    }
    let n = its.len() * (1 + PER_PARTITION as usize);
    let after = client.wait_for(n, Duration::from_secs(20)).await;
    for (&tag, (o, _)) in &after {
        let p = (tag / 1000) as i32;
        assert!(its.contains(&p));
        let md = o
            .as_ref()
            .unwrap_or_else(|e| panic!("record {tag} (partition {p}, broker back up) failed: {e}"));
        assert_eq!(md.partition, p);
        assert!(md.offset >= 1, "after the probe at offset 0: {md:?}");
    }
    // Offsets per partition follow send order.
    for &p in &its {
        let offsets: Vec<i64> = (0..=PER_PARTITION)
            .map(|i| after[&(p as u64 * 1000 + i)].0.as_ref().unwrap().offset)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: offsets in send order: {offsets:?}"
        );
    }
    let m = client.producer.metrics().await;
    assert!(
        m.connection_creation_total > connections_before,
        "a new connection to the broker that came back: {m:?}"
    );
    assert!(client.producer.close(Duration::from_secs(5)).await);
}

/// A cluster lists only the brokers that are up (Kafka drops a fenced or stopped broker from
/// its metadata; the mock one that is down). While a broker is unlisted its partitions have
/// no leader: records without a key go to the other partitions (sticky partitioning leaves
/// those out, as Java's does) and are all acknowledged. When it is listed again, its
/// connection is tried at once, not after the reconnect backoff that its refused attempts
/// built up: with reconnect.backoff.ms=5000 the attempt after the first refused one would
/// come 8-12 s later, and the records for its partitions are acknowledged well before.
#[actix_rt::test]
async fn a_broker_listed_again_is_tried_at_once() {
    let (mock, leaders, client) = warm_client(
        "availability-listed-again",
        &[
            ("reconnect.backoff.ms", "5000"),
            ("reconnect.backoff.max.ms", "20000"),
            ("request.timeout.ms", "2000"),
            ("delivery.timeout.ms", "60000"),
        ],
    )
    .await;
    let (broker, its) = down_first_leader(&mock, &leaders);
    let down_at = Instant::now();
    // Its partitions' records wait; keyless ones go elsewhere once the metadata shows it gone.
    for &p in &its {
        client.send(p as u64 * 1000);
    }
    client.wait_leaderless(&its).await;
    let keyless: Vec<_> = (0..50)
        .map(|i| {
            client
                .producer
                .send(Produce::new(client.topic.clone()).value(format!("keyless-{i}")))
        })
        .collect();
    for (i, md) in futures_util::future::join_all(keyless)
        .await
        .into_iter()
        .enumerate()
    {
        let md = md.unwrap_or_else(|e| panic!("keyless record {i} failed: {e}"));
        assert!(
            !its.contains(&md.partition),
            "keyless record {i} went to partition {} of the unlisted broker {broker}",
            md.partition
        );
    }
    assert!(
        client.outcomes.tags().is_empty(),
        "records of the down broker's partitions answered while it is down"
    );
    // Past its first reconnect attempt (4-6 s after the connection was lost), refused.
    tokio::time::sleep(
        (down_at + Duration::from_secs(7)).saturating_duration_since(Instant::now()),
    )
    .await;
    mock.cluster.broker_up(broker).unwrap();
    let up_at = Instant::now();
    let back = client.wait_for(its.len(), Duration::from_secs(30)).await;
    for (&tag, (o, at)) in &back {
        let md = o
            .as_ref()
            .unwrap_or_else(|e| panic!("record {tag} failed after the broker came back: {e}"));
        assert_eq!(md.partition, (tag / 1000) as i32);
        let after = at.duration_since(up_at);
        assert!(
            after < Duration::from_secs(4),
            "record {tag} acknowledged {after:?} after the broker was back: the connection \
             waited out its reconnect backoff"
        );
    }
    assert!(client.producer.close(Duration::from_secs(5)).await);
}

/// A fake broker whose first Metadata answer names broker 1 at an address where nothing
/// listens (a broker that moved), and every later one at its own address.
fn moved_broker(dead: String) -> crate::support::fake_broker::FakeBroker {
    use crate::support::fake_broker::{metadata_response, standard_handler, Action, FakeBroker};
    use kafka_protocol::messages::ApiKey;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let standard = standard_handler(&[("t", 1)]);
    let metadata_answered = AtomicUsize::new(0);
    FakeBroker::start(move |ctx| {
        if ctx.api() == Some(ApiKey::Metadata)
            && metadata_answered.fetch_add(1, Ordering::SeqCst) == 0
        {
            let (host, port) = dead.rsplit_once(':').unwrap();
            return vec![Action::Respond(metadata_response(
                ctx.api_version,
                1,
                host,
                port.parse().unwrap(),
                &[("t", 1)],
            ))];
        }
        standard(ctx)
    })
}

/// KIP-899: the only broker the producer knows is unreachable (it moved); with
/// `metadata.recovery.strategy=rebootstrap` (the default) the producer asks
/// `bootstrap.servers` again, learns the new address and delivers; with `none` it keeps
/// asking the dead address and the record times out.
#[actix_rt::test]
async fn rebootstrap_finds_a_broker_that_moved() {
    init_tracing();
    let dead = {
        let listener = crate::support::PortBand::Listeners
            .bind(1, |p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .pop()
            .unwrap();
        listener.local_addr().unwrap().to_string()
    };
    for strategy in ["rebootstrap", "none"] {
        let broker = moved_broker(dead.clone());
        let producer = start_producer(
            &broker.bootstrap(),
            &[
                ("retry.backoff.ms", "50"),
                ("retry.backoff.max.ms", "100"),
                ("reconnect.backoff.ms", "50"),
                ("reconnect.backoff.max.ms", "100"),
                ("linger.ms", "0"),
                ("request.timeout.ms", "1000"),
                ("delivery.timeout.ms", "3000"),
                // The fake broker's standard handler answers no InitProducerId.
                ("enable.idempotence", "false"),
            ],
            &[("metadata.recovery.strategy", strategy)],
        );
        let outcome = producer.send(Produce::new("t").value("x")).await;
        match (strategy, outcome) {
            ("rebootstrap", Ok(md)) => assert_eq!(md.offset, 0),
            ("none", Err(e)) => assert!(
                matches!(e.kind(), ErrorKind::DeliveryTimeout { .. }),
                "none: {e}"
            ),
            (s, other) => panic!("{s}: unexpected outcome {other:?}"),
        }
        assert!(producer.close(Duration::from_secs(5)).await);
    }
}

/// `connections.max.idle.ms`: a connection in use (requests at shorter intervals) stays
/// open; one left unused past the limit is closed, and the next records open it again and
/// are delivered without a retry. With -1 (Java's "never") nothing is closed. librdkafka's
/// consumer reads every record back.
#[actix_rt::test]
async fn idle_connections_close_after_connections_max_idle_and_reopen_when_needed() {
    init_tracing();
    let mock = Mock::start(3);
    let bootstrap = mock.bootstrap();
    for (idle, closes) in [("500", true), ("-1", false)] {
        let topic = unique_topic("idle");
        mock.create_topic(&topic, 3, 3);
        let producer = Producer::from_pairs([
            ("bootstrap.servers", bootstrap.as_str()),
            ("linger.ms", "1"),
            ("connections.max.idle.ms", idle),
        ])
        .expect("valid config");
        let mut sent = 0;
        let round = |producer: &Producer, sent: &mut usize| {
            let pending: Vec<_> = (0..3)
                .map(|p| {
                    producer.send(
                        Produce::new(topic.clone())
                            .partition(p)
                            .value(format!("{}", *sent + p as usize)),
                    )
                })
                .collect();
            *sent += 3;
            async move {
                for o in futures_util::future::join_all(pending).await {
                    o.expect("record delivered");
                }
            }
        };
        round(&producer, &mut sent).await;

        // In use every 50 ms for 1.2 s: nothing is closed, so nothing is opened.
        let opened = producer.metrics().await.connection_creation_total;
        for _ in 0..24 {
            round(&producer, &mut sent).await;
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            producer.metrics().await.connection_creation_total,
            opened,
            "idle={idle}: a connection in use was closed"
        );

        // Unused for 2 s, four times the limit.
        actix_rt::time::sleep(Duration::from_millis(2_000)).await;
        round(&producer, &mut sent).await;
        let m = producer.metrics().await;
        if closes {
            assert!(
                m.connection_creation_total > opened,
                "idle={idle}: the idle connections were not closed and opened again"
            );
        } else {
            assert_eq!(
                m.connection_creation_total, opened,
                "idle={idle}: a connection was closed although idle connections never close"
            );
        }
        assert_eq!(
            (m.record_retry_total, m.record_error_total),
            (0, 0),
            "idle={idle}: closing idle connections cost no retry and no failure"
        );
        assert!(producer.close(Duration::from_secs(10)).await);
        let back = read_back(&bootstrap, &topic, 3, sent, Duration::from_secs(30)).await;
        assert_eq!(
            back.values().map(Vec::len).sum::<usize>(),
            sent,
            "idle={idle}: every record once"
        );
    }
}

/// Keyless records at 3,200/s for 2.5 s, while the leader of partition 0 answers after 3 s
/// (a broker that hangs, within request.timeout.ms); returns the share of them, and of their
/// second half, that the independent consumer finds on that broker's partitions, and that
/// share under uniform draws.
async fn slow_leader_share(
    prefix: &str,
    extra: &[(&'static str, &'static str)],
) -> (f64, f64, f64) {
    const BURSTS: u64 = 250;
    const PER_BURST: u64 = 48;
    let (mock, leaders, client) = warm_client(prefix, extra).await;
    let slow_broker = leaders[0];
    let slow: Vec<i32> = (0..PARTITIONS)
        .filter(|&p| leaders[p as usize] == slow_broker)
        .collect();
    mock.cluster
        .broker_round_trip_time(slow_broker, Duration::from_millis(3000))
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for burst in 0..BURSTS {
        tick.tick().await;
        for i in 0..PER_BURST {
            let tag = burst * PER_BURST + i;
            client.producer.router().do_send(
                Produce::new(client.topic.clone())
                    .value(format!("{tag:0>100}"))
                    .tag(tag)
                    .reply_to(client.inbox.clone()),
            );
        }
    }
    let total = (BURSTS * PER_BURST) as usize;
    let outcomes = client.wait_for(total, Duration::from_secs(30)).await;
    for (tag, (outcome, _)) in &outcomes {
        if let Err(e) = outcome {
            panic!("record {tag} failed: {e}");
        }
    }
    mock.cluster
        .broker_round_trip_time(slow_broker, Duration::ZERO)
        .unwrap();
    assert!(client.producer.close(Duration::from_secs(5)).await);
    // The probes (one per partition) are read back too.
    let back = read_back(
        &mock.bootstrap(),
        &client.topic,
        PARTITIONS,
        total + PARTITIONS as usize,
        Duration::from_secs(30),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut per_partition = vec![0usize; PARTITIONS as usize];
    // Records of the second half, once the slow leader's queues had time to build.
    let mut late_on_slow = 0usize;
    for p in 0..PARTITIONS {
        for c in back.get(&p).map_or(&[][..], |v| &v[..]) {
            if c.value.as_deref() == Some(&b"probe"[..]) {
                continue;
            }
            let tag: u64 = String::from_utf8_lossy(c.value.as_deref().unwrap_or_default())
                .parse()
                .expect("a record's value is its tag");
            assert!(seen.insert(tag), "record {tag} read back twice");
            per_partition[p as usize] += 1;
            if tag >= total as u64 / 2 && slow.contains(&p) {
                late_on_slow += 1;
            }
        }
    }
    assert_eq!(
        seen.len(),
        total,
        "every record read back: {per_partition:?}"
    );
    let on_slow: usize = slow.iter().map(|&p| per_partition[p as usize]).sum();
    let share = on_slow as f64 / total as f64;
    let late = late_on_slow as f64 / (total - total / 2) as f64;
    let uniform = slow.len() as f64 / PARTITIONS as f64;
    println!(
        "{prefix}: leaders {leaders:?}, broker {slow_broker} slow; per partition {per_partition:?}; share on the slow broker {share:.3}, in the second half {late:.3} (uniform {uniform:.3})"
    );
    (share, late, uniform)
}

/// Adaptive partitioning (on by default, as in Java) sends fewer keyless records to the
/// partitions of a leader whose batches pile up; switched off, the draws are uniform; with
/// partitioner.availability.timeout.ms below the leader's round trip, its partitions are
/// left out of the draws while their batches wait.
#[actix_rt::test]
async fn adaptive_partitioning_steers_keyless_records_from_a_slow_leader() {
    // 2 KiB batches: the sticky partition moves once its last batch is full, about every
    // 38 records (4 KiB), so about 320 draws per run and 160 in its second half. The shares
    // below are counts of draws: fewer draws (4 KiB batches gave half as many) left the
    // adaptive share of the second half within reach of its bound by chance alone.
    const SMALL: (&str, &str) = ("batch.size", "2048");
    let (off, _, uniform) = slow_leader_share(
        "adaptive-off",
        &[SMALL, ("partitioner.adaptive.partitioning.enable", "false")],
    )
    .await;
    let (_, on, _) = slow_leader_share("adaptive-on", &[SMALL]).await;
    let (_, timeout, _) = slow_leader_share(
        "adaptive-timeout",
        &[SMALL, ("partitioner.availability.timeout.ms", "100")],
    )
    .await;
    // Switched off, the share of the whole run; on, the share of its second half, once the
    // slow leader's queues had time to build. In trial runs: off 0.31-0.37, on 0.03-0.07,
    // with the timeout 0.000.
    assert!(
        off > 0.5 * uniform,
        "uniform draws put {off:.3} on the slow broker (its partitions' share {uniform:.3})"
    );
    assert!(
        on < 0.35 * uniform,
        "adaptive draws put {on:.3} of the second half on the slow broker (uniform {uniform:.3})"
    );
    assert!(
        timeout < 0.01,
        "with the availability timeout {timeout:.3} of the second half went to the slow broker, whose batches wait 3 s"
    );
}

/// A topic forgotten as idle (`metadata.max.idle.ms`) while a batch of it waits: its
/// partition's leader is down (the mock lists it no more, so the partition has no leader)
/// for 8 s, past the 5 s limit, and no record is routed to the topic meanwhile. The waiting
/// batch asks for its topic again, so once the leader is back a refresh names it and the
/// record is delivered, instead of waiting for a leader no refresh would name until
/// delivery.timeout.ms.
#[actix_rt::test]
async fn a_batch_waiting_when_its_topic_goes_idle_gets_its_leader_back() {
    init_tracing();
    let mock = Mock::start(2);
    let topic = unique_topic("idle-waiting");
    mock.create_topic(&topic, PARTITIONS, 1);
    let leaders = leaders(&mock.bootstrap(), &topic).await;
    let producer = start_producer(
        &mock.bootstrap(),
        &[],
        &[
            ("metadata.max.idle.ms", "5000"),
            ("request.timeout.ms", "5000"),
            ("delivery.timeout.ms", "20000"),
            ("retry.backoff.max.ms", "200"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    producer
        .send(Produce::new(topic.clone()).value("warm").partition(0))
        .await
        .expect("the first record");
    mock.cluster.broker_down(leaders[0]).unwrap();
    let sent = Instant::now();
    let outcome = producer.send(Produce::new(topic.clone()).value("waiting").partition(0));
    tokio::time::sleep(Duration::from_secs(8)).await;
    mock.cluster.broker_up(leaders[0]).unwrap();
    let md = outcome
        .await
        .unwrap_or_else(|e| panic!("the batch that waited while its topic was forgotten: {e}"));
    println!("acknowledged after {:?}", sent.elapsed());
    assert!(producer.close(Duration::from_secs(5)).await);
    assert_eq!(md.partition, 0);
    let back = read_back(
        &mock.bootstrap(),
        &topic,
        PARTITIONS,
        2,
        Duration::from_secs(10),
    )
    .await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"warm".to_vec()), Some(b"waiting".to_vec())]
    );
}

/// A lost connection is news about the cluster: metadata is asked at once, not
/// retry.backoff.ms after the last request (librdkafka asks at once too; Java waits out the
/// backoff). With the backoff at a minute, the refresh that follows a leader going down
/// comes at once, and when that broker is back as another goes down (as in the chaos
/// mode's `down` schedule), the second loss brings a refresh that lists it again: the record
/// that waited for it is acknowledged at once rather than after the paced minute.
#[actix_rt::test]
async fn a_lost_connection_refreshes_metadata_at_once() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("lost-refresh");
    mock.create_topic(&topic, 3, 1);
    for (p, broker) in [(0, 1), (1, 2), (2, 3)] {
        mock.cluster
            .partition_leader(&topic, p, Some(broker))
            .unwrap();
    }
    let producer = start_producer(
        &mock.bootstrap(),
        &[],
        &[
            ("linger.ms", "0"),
            ("retry.backoff.ms", "60000"),
            ("retry.backoff.max.ms", "60000"),
            ("reconnect.backoff.ms", "50"),
            ("reconnect.backoff.max.ms", "200"),
            ("metadata.max.age.ms", "600000"),
            ("request.timeout.ms", "30000"),
            ("delivery.timeout.ms", "180000"),
        ],
    );
    for p in 0..3 {
        producer
            .send(Produce::new(topic.clone()).value("warm").partition(p))
            .await
            .unwrap_or_else(|e| panic!("warm-up of partition {p}: {e}"));
    }
    let refreshes = || async { producer.metrics().await.metadata_refresh_total };
    let before = refreshes().await;
    mock.cluster.broker_down(1).unwrap();
    let lost_at = Instant::now();
    while refreshes().await == before {
        assert!(
            lost_at.elapsed() < Duration::from_secs(20),
            "no metadata refresh within 20 s of losing broker 1 (paced, it would come after 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Partition 0 has no leader now (the mock lists broker 1 no more): this record waits.
    let waiting = producer.send(Produce::new(topic.clone()).value("waited").partition(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    mock.cluster.broker_up(1).unwrap();
    mock.cluster.broker_down(2).unwrap();
    let md = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("acknowledged after the refresh broker 2's loss brought, not the paced one")
        .unwrap_or_else(|e| panic!("the record that waited for broker 1: {e}"));
    assert_eq!(md.partition, 0);
    mock.cluster.broker_up(2).unwrap();
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&mock.bootstrap(), &topic, 3, 4, Duration::from_secs(10)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"warm".to_vec()), Some(b"waited".to_vec())]
    );
}

/// KIP-951 with a leader no Metadata response has listed: broker 3 is down when the producer
/// starts (the mock lists only brokers that are up), then comes back and takes the
/// partition's leadership. The old leader's refusal names broker 3 and its endpoint, and
/// Herald connects to it from that alone: with the retry backoff (which paces metadata
/// refreshes) at a minute and the periodic refresh ten minutes away, the record is written
/// by broker 3 before any Metadata request is sent.
#[actix_rt::test]
async fn a_leader_no_metadata_listed_is_reached_from_the_refusal_naming_it() {
    init_tracing();
    let mock = Mock::start(3);
    let topic = unique_topic("unlisted-leader");
    mock.create_topic(&topic, 1, 3);
    mock.cluster.partition_leader(&topic, 0, Some(1)).unwrap();
    mock.cluster.broker_down(3).unwrap();
    let listed = {
        let bootstrap = mock.bootstrap();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .expect("metadata client");
            let md = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .expect("fetch metadata");
            md.brokers()
                .iter()
                .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
                .collect::<Vec<_>>()
        })
        .await
        .expect("metadata thread")
    };
    assert!(
        listed.iter().all(|(id, _)| *id != 3),
        "the mock lists a broker that is down: {listed:?}"
    );
    // Bootstrap from the listed brokers only: nothing in the producer has seen broker 3.
    let bootstrap = listed
        .iter()
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let producer = start_producer(
        &bootstrap,
        &[],
        &[
            ("linger.ms", "0"),
            ("retry.backoff.ms", "60000"),
            ("retry.backoff.max.ms", "60000"),
            ("metadata.max.age.ms", "600000"),
            ("request.timeout.ms", "30000"),
            ("delivery.timeout.ms", "180000"),
        ],
    );
    producer
        .send(Produce::new(topic.clone()).value("before").partition(0))
        .await
        .unwrap_or_else(|e| panic!("the record before the move: {e}"));
    let before = producer.metrics().await;
    mock.cluster.broker_up(3).unwrap();
    mock.cluster.partition_leader(&topic, 0, Some(3)).unwrap();
    let md = tokio::time::timeout(
        Duration::from_secs(20),
        producer.send(Produce::new(topic.clone()).value("after").partition(0)),
    )
    .await
    .expect("acknowledged through the named broker, not after the paced minute")
    .unwrap_or_else(|e| panic!("the record after the move: {e}"));
    assert_eq!(md.partition, 0);
    let after = producer.metrics().await;
    assert_eq!(
        after.leader_hint_total - before.leader_hint_total,
        1,
        "the partition followed the leader the refusal named"
    );
    assert_eq!(
        after.metadata_refresh_total, before.metadata_refresh_total,
        "no Metadata request told the producer of broker 3"
    );
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(&mock.bootstrap(), &topic, 1, 2, Duration::from_secs(10)).await;
    let values: Vec<_> = back[&0].iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"before".to_vec()), Some(b"after".to_vec())],
        "each record once, in order"
    );
}

/// A broker that left the cluster (listed by the first metadata answer, by none after) is
/// not asked for metadata again, as Java's `leastLoadedNode` takes only the nodes of the
/// current metadata. Broker 1 stays busy (each Produce answered after 1 s) while metadata is
/// refreshed every 300 ms; a node without a socket scored below a busy one, so before,
/// refreshes went to the departed broker (a failed connect each, up to
/// `socket.connection.setup.timeout.ms`, where the host is gone). Here the departed broker
/// still answers, and counts what it is asked.
#[actix_rt::test]
async fn a_broker_that_left_the_cluster_is_not_asked_for_metadata() {
    use crate::support::fake_broker::{
        metadata_response_with_leaders, standard_handler, Action, FakeBroker,
    };
    use kafka_protocol::messages::ApiKey;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    init_tracing();
    // Broker 1's address, for the departed broker's answers (which list broker 1 only).
    let main_addr: Arc<OnceLock<(String, u16)>> = Arc::default();
    let for_departed = main_addr.clone();
    let standard = standard_handler(&[("t", 1)]);
    let departed = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::Metadata) => {
            let (host, port) = for_departed.get().expect("set before any request").clone();
            vec![Action::Respond(metadata_response_with_leaders(
                ctx.api_version,
                &[(1, &host, port)],
                &[("t", vec![1])],
            ))]
        }
        _ => standard(ctx),
    });
    let departed_addr = departed.addr;
    let answered = AtomicUsize::new(0);
    let standard = standard_handler(&[("t", 1)]);
    let main = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::Metadata) => {
            let own = (ctx.broker_addr.ip().to_string(), ctx.broker_addr.port());
            let mut brokers = vec![(1, own.0.as_str(), own.1)];
            let departed_host = departed_addr.ip().to_string();
            if answered.fetch_add(1, Ordering::SeqCst) == 0 {
                brokers.push((3, departed_host.as_str(), departed_addr.port()));
            }
            vec![Action::Respond(metadata_response_with_leaders(
                ctx.api_version,
                &brokers,
                &[("t", vec![1])],
            ))]
        }
        Some(ApiKey::Produce) => {
            let mut actions = vec![Action::Delay(Duration::from_secs(1))];
            actions.extend(standard(ctx));
            actions
        }
        _ => standard(ctx),
    });
    let _ = main_addr.set((main.addr.ip().to_string(), main.addr.port()));
    let producer = start_producer(
        &main.bootstrap(),
        &[
            ("linger.ms", "0"),
            ("metadata.max.age.ms", "300"),
            ("enable.idempotence", "false"),
        ],
        &[("metadata.recovery.strategy", "none")],
    );
    for i in 0..5 {
        producer
            .send(Produce::new("t").value(format!("{i}")))
            .await
            .expect("delivered");
    }
    let asked = departed.requests_for(ApiKey::Metadata).len();
    assert!(
        asked <= 1,
        "the departed broker was asked for metadata {asked} times after it left"
    );
    assert!(producer.close(Duration::from_secs(5)).await);
}

/// A record naming a partition beyond the topic's count waits for a metadata response to a
/// request sent after it, not for one already on its way: that one may have been answered
/// before the partition was added. Here every Metadata answer is held back 1 s and the
/// topic grows from 2 to 4 partitions while one is on its way; the record for partition 3
/// is delivered (before, the answer on its way, still saying 2, refused it).
#[actix_rt::test]
async fn a_partition_beyond_the_count_waits_for_a_response_sent_after_it() {
    use crate::support::fake_broker::{metadata_response, standard_handler, Action, FakeBroker};
    use kafka_protocol::messages::ApiKey;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;

    init_tracing();
    let partitions = Arc::new(AtomicI32::new(2));
    let counted = partitions.clone();
    let standard = standard_handler(&[("t", 4)]);
    let fake = FakeBroker::start(move |ctx| match ctx.api() {
        Some(ApiKey::Metadata) => vec![
            Action::Delay(Duration::from_secs(1)),
            Action::Respond(metadata_response(
                ctx.api_version,
                1,
                &ctx.broker_addr.ip().to_string(),
                ctx.broker_addr.port(),
                &[("t", counted.load(Ordering::SeqCst))],
            )),
        ],
        _ => standard(ctx),
    });
    let producer = start_producer(
        &fake.bootstrap(),
        &[
            ("linger.ms", "0"),
            ("enable.idempotence", "false"),
            ("max.block.ms", "10000"),
            ("metadata.max.age.ms", "1500"),
        ],
        &[],
    );
    producer
        .send(Produce::new("t").value("warm").partition(1))
        .await
        .expect("the warm-up record");
    // Wait for the next periodic request; its answer (2 partitions) is then on its way.
    let before = fake.requests_for(ApiKey::Metadata).len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.requests_for(ApiKey::Metadata).len() == before {
        assert!(Instant::now() < deadline, "no periodic metadata request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    partitions.store(4, Ordering::SeqCst);
    let md = producer
        .send(Produce::new("t").value("three").partition(3))
        .await
        .unwrap_or_else(|e| panic!("partition 3, added while an answer was on its way: {e}"));
    assert_eq!(md.partition, 3);
    assert!(producer.close(Duration::from_secs(5)).await);
}
