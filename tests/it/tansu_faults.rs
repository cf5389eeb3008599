//! Lost requests on a broker that runs as a separate process: Tansu is frozen (SIGSTOP) for
//! longer than request.timeout.ms while records are in flight, so Herald times the requests
//! out, drops the connection and sends the batches again; then Tansu resumes (SIGCONT) and
//! also processes the requests it had already received. With idempotence the copies carry
//! the same producer id, epoch and sequence numbers, and Tansu, which deduplicates idempotent
//! producers, writes each record once: exactly once, in order, across lost requests.

use std::collections::HashMap;
use std::time::Duration;

use herald_actors::{Produce, Producer};

use crate::support::consumer::read_back;
use crate::support::tansu::Tansu;
use crate::support::{init_tracing, unique_topic};

#[actix_rt::test]
async fn tansu_frozen_mid_stream_one_in_flight() {
    frozen_mid_stream("1").await;
}

/// Java's pipelining (`max.in.flight.batches.per.partition=5`): up to 5 batches per partition
/// in flight; order across retries then rests on the broker rejecting out-of-order sequences,
/// which Tansu does.
#[actix_rt::test]
async fn tansu_frozen_mid_stream_five_in_flight() {
    frozen_mid_stream("5").await;
}

async fn frozen_mid_stream(max_in_flight: &str) {
    init_tracing();
    let tansu = Tansu::start();
    let topic = unique_topic("frozen");
    tansu.create_topic(&topic, 3);
    let producer = Producer::from_pairs([
        ("bootstrap.servers", tansu.bootstrap().as_str()),
        ("request.timeout.ms", "800"),
        ("delivery.timeout.ms", "30000"),
        ("retry.backoff.ms", "50"),
        ("reconnect.backoff.ms", "50"),
        ("max.in.flight.requests.per.connection", max_in_flight),
        ("max.in.flight.batches.per.partition", max_in_flight),
        ("linger.ms", "2"),
    ])
    .unwrap();
    let router = producer.router().clone();
    // Warm up: metadata, connection and producer id in place before the freeze.
    producer
        .send(Produce::new(topic.clone()).key("warm-up").value("-1"))
        .await
        .expect("warm-up record");
    let n = 6_000;
    let mut pending = Vec::with_capacity(n);
    let mut frozen_at = None;
    for i in 0..n {
        pending.push(
            router.send(
                Produce::new(topic.clone())
                    .key(format!("k{}", i % 31))
                    .value(i.to_string()),
            ),
        );
        if i == 3_000 {
            // Freeze before the records from here on are sent, and keep sending into the
            // frozen broker: their batches are written to it during the freeze, time out
            // after request.timeout.ms and are sent again. Freezing only after the first
            // half raced with the router, which runs on its own thread and often had every
            // earlier record acknowledged before the freeze, leaving nothing in flight
            // during it (CI saw 0 retries once).
            tansu.signal("-STOP");
            frozen_at = Some(std::time::Instant::now());
        }
        if i == 4_500 {
            // Thawed once a request has timed out, at least 1.5 s and at most 10 s after the
            // freeze: on a loaded machine the first request into the frozen broker can go
            // out late, and a fixed freeze could end before it timed out.
            let frozen_at = frozen_at.expect("frozen at record 3,000");
            loop {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                let timed_out = producer.metrics().await.record_retry_total > 0;
                let waited = frozen_at.elapsed();
                if (timed_out && waited >= Duration::from_millis(1_500))
                    || waited >= Duration::from_secs(10)
                {
                    break;
                }
            }
            tansu.signal("-CONT");
        }
    }
    let mut sent: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, o) in futures_util::future::join_all(pending)
        .await
        .into_iter()
        .enumerate()
    {
        let md = o
            .unwrap()
            .unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        sent.entry(md.partition).or_default().push(i);
    }
    let metrics = producer.metrics().await;
    assert!(producer.close(Duration::from_secs(10)).await);
    println!(
        "tansu frozen: {} retried, {} sent again after a lost request",
        metrics.record_retry_total, metrics.record_resend_unknown_total
    );
    assert!(
        metrics.record_retry_total > 0,
        "the freeze made requests time out"
    );

    let back = read_back(
        &tansu.bootstrap(),
        &topic,
        3,
        n + 1,
        Duration::from_secs(30),
    )
    .await;
    let mut duplicates = 0u64;
    for (p, indexes) in &sent {
        let got: Vec<usize> = back[p]
            .iter()
            .filter_map(|c| {
                String::from_utf8_lossy(c.value.as_deref().unwrap())
                    .parse()
                    .ok()
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let first: Vec<usize> = got.iter().copied().filter(|i| seen.insert(*i)).collect();
        duplicates += (got.len() - first.len()) as u64;
        assert_eq!(
            &first, indexes,
            "partition {p}: every success, in send order"
        );
    }
    println!("tansu frozen: {duplicates} duplicate records in the log");
    // Tansu deduplicates idempotent producers: records sent again after a lost request are
    // written once. This is the exactly-once claim for idempotence, against a real broker.
    assert!(
        metrics.record_resend_unknown_total > 0,
        "some requests were lost in flight"
    );
    assert_eq!(duplicates, 0, "exactly once: no record written twice");
}
