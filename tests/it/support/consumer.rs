//! An independent consumer (librdkafka's) that reads back what really reached the broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// One record as the broker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// Reads partitions `0..partitions` of `topic` from the beginning until `expected` records
/// arrived or `timeout` passed; returns them per partition in offset order. Runs on a blocking
/// thread so actors keep running.
pub async fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Consumed>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    read_back_with(config, topic, partitions, expected, timeout).await
}

/// [`read_back`] with a consumer built from `config` (bootstrap servers and security
/// settings, e.g. `Kafka::rdkafka_config`).
pub async fn read_back_with(
    config: ClientConfig,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Consumed>> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        read_back_blocking(config, &topic, partitions, expected, timeout)
    })
    .await
    .expect("consumer thread")
}

/// Partition `p` as read back, each value parsed as the record index the tests send as value
/// (no records if `p` is absent), to compare with the indexes sent there.
pub fn read_indexes(back: &BTreeMap<i32, Vec<Consumed>>, p: i32) -> Vec<usize> {
    back.get(&p)
        .map(|v| {
            v.iter()
                .map(|c| {
                    String::from_utf8_lossy(c.value.as_deref().unwrap())
                        .parse()
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read_back_blocking(
    mut config: ClientConfig,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Consumed>> {
    let consumer: BaseConsumer = config
        .set(
            "group.id",
            format!("herald-readback-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create read-back consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign partitions");
    let mut out: BTreeMap<i32, Vec<Consumed>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + timeout;
    while n < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                            .collect()
                    })
                    .unwrap_or_default();
                out.entry(m.partition()).or_default().push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    value: m.payload().map(|v| v.to_vec()),
                    headers,
                    timestamp: m.timestamp().to_millis(),
                });
                n += 1;
            }
            Some(Err(e)) => panic!("read-back consumer error: {e}"),
            None => {}
        }
    }
    // A short grace period to catch records that should not be there (duplicates).
    let grace = Instant::now() + Duration::from_millis(300);
    while Instant::now() < grace {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.entry(m.partition()).or_default().push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                headers: Vec::new(),
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
    out
}
