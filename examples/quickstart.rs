//! Herald in one minute: produce 100,000 records from inside an actix system, then read them
//! back with an independent consumer (librdkafka's) to see what really reached the broker.
//!
//! ```text
//! cargo run --release --example quickstart                      # embedded broker, no setup
//! cargo run --release --example quickstart -- --bootstrap-servers localhost:9092
//! KAFKA_BOOTSTRAP_SERVERS=localhost:9092 cargo run --release --example quickstart
//! ```
//!
//! Without a broker address it starts an embedded one: librdkafka's mock cluster, three brokers
//! inside this process, with the topic created with 6 partitions. Against a real cluster the
//! topic must exist or be auto-created; Herald waits for its metadata up to `max.block.ms`.
//!
//! Exits non-zero if any record failed or the consumer did not read back every record.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use herald_actors::{Produce, Producer};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

#[path = "common/key_value.rs"]
mod key_value;

/// How many records may await their acknowledgement at once. About 750 fill a 16 KiB batch on
/// each of the 6 partitions, so no batch waits for `linger.ms`; more keeps the brokers busy
/// while acknowledgements travel. Stay well below the router's mailbox capacity
/// (`Router::MAILBOX_CAPACITY`): sends beyond it park inside actix and throughput drops
/// sharply.
const MAX_IN_FLIGHT: usize = 2_048;

/// Each record's value: about 100 bytes, starting with the record's number.
const VALUE_LEN: usize = 100;

#[derive(Debug, Parser)]
#[command(about = "Produce records with Herald and read them back with librdkafka")]
struct Args {
    /// Kafka brokers (host:port,...). Falls back to KAFKA_BOOTSTRAP_SERVERS, then to an
    /// embedded broker.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic to produce to.
    #[arg(long, default_value = "herald-quickstart")]
    topic: String,
    /// How many records to produce.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// A producer setting (repeatable), e.g. `-X security.protocol=SASL_SSL`. Settings that
    /// librdkafka also knows by that name (security.protocol, ssl.ca.location,
    /// ssl.certificate.location, ssl.key.location, ssl.key.password, sasl.mechanisms,
    /// sasl.username, sasl.password, ssl.endpoint.identification.algorithm) are passed to the
    /// read-back consumer too, so the librdkafka names reach a secured cluster with both.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = key_value::KeyValue)]
    config: Vec<(String, String)>,
}

/// The `-X` keys that mean the same to Herald and to librdkafka's read-back consumer.
const SHARED_KEYS: [&str; 9] = [
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.endpoint.identification.algorithm",
];

// `actix_rt::main` runs `main` inside an actix system: Herald's actors need one.
#[actix_rt::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    // Keep the embedded broker alive until the end: dropping it stops the brokers.
    let (bootstrap, _embedded) = match args
        .bootstrap_servers
        .clone()
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok())
    {
        Some(servers) => (servers, None),
        None => {
            let cluster = MockCluster::new(3)?;
            cluster.create_topic(&args.topic, 6, 3)?;
            let servers = cluster.bootstrap_servers();
            println!(
                "No --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS: started an embedded broker"
            );
            println!("(librdkafka's mock cluster, 3 brokers in this process) at {servers}");
            (servers, Some(cluster))
        }
    };

    // Where each partition ends before we produce, so that only this run's records are read
    // back even when the topic already holds records.
    let shared: Vec<(String, String)> = args
        .config
        .iter()
        .filter(|(k, _)| SHARED_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    let (b, t, c) = (bootstrap.clone(), args.topic.clone(), shared.clone());
    let start = blocking(move || ReadBack::new(&b, &t, &c)?.end_offsets()).await?;

    // The Java producer's keys and defaults: any key the Java client accepts can go here,
    // and -X adds or overrides any of them.
    let mut pairs = vec![
        ("bootstrap.servers".to_string(), bootstrap.clone()),
        ("client.id".to_string(), "herald-quickstart".to_string()),
        // How long a batch that is not full waits for more records (5 ms is the default).
        ("linger.ms".to_string(), "5".to_string()),
    ];
    pairs.extend(args.config.iter().cloned());
    let producer = Producer::from_pairs(pairs)?;
    println!("Producing {} records to {} ...", args.records, args.topic);

    let progress = ProgressBar::new(args.records as u64).with_style(ProgressStyle::with_template(
        "{bar:40.cyan/blue} {pos:>7}/{len:7} {per_sec:>14} eta {eta}",
    )?);
    let filler = "-".repeat(VALUE_LEN);
    let started = Instant::now();
    let (mut payload_bytes, mut failed) = (0u64, 0u64);

    // The producing loop. `router.send(produce)` enqueues the record at once and returns a
    // future of its outcome; `buffer_unordered` keeps up to MAX_IN_FLIGHT of them outstanding
    // and yields outcomes as acknowledgements arrive. Backpressure is built in: when
    // MAX_IN_FLIGHT records wait, no new record is taken from the iterator.
    let router = producer.router().clone();
    let records = (0..args.records).map(|i| {
        let key = format!("user-{}", i % 1_000);
        let value = format!("{i:08} {}", &filler[..VALUE_LEN - 9]);
        let record = Produce::new(args.topic.clone())
            .key(key)
            .value(Bytes::from(value))
            .header("source", "quickstart");
        router.send(record)
    });
    let mut outcomes = futures_util::stream::iter(records).buffer_unordered(MAX_IN_FLIGHT);
    while let Some(outcome) = outcomes.next().await {
        let error = match outcome {
            // Acknowledged: `metadata` has the partition, offset and timestamp.
            Ok(Ok(metadata)) => {
                payload_bytes += (metadata.serialized_key_size.max(0)
                    + metadata.serialized_value_size.max(0))
                    as u64;
                None
            }
            // Herald's error: this record failed (after retries, if they could help).
            Ok(Err(e)) => Some(e.to_string()),
            // actix's error: the router's mailbox closed, the producer stopped.
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = error {
            failed += 1;
            if failed <= 5 {
                progress.suspend(|| eprintln!("record failed: {e}"));
            }
        }
        progress.inc(1);
    }
    drop(outcomes);
    // Every outcome is in, so nothing is pending. Code that fires records without awaiting
    // them (`do_send`) needs this before it reads back or exits.
    producer.flush().await;
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let secs = elapsed.as_secs_f64();
    println!(
        "Produced {} records in {:.2} s: {:.0} records/s, {:.1} MB/s of keys and values ({failed} failed)",
        args.records,
        secs,
        args.records as f64 / secs,
        payload_bytes as f64 / secs / 1e6,
    );
    println!("Herald metrics: {:#?}", producer.metrics().await);
    // Close flushes what is left (nothing here) and stops the producer's actors.
    producer.close(Duration::from_secs(10)).await;

    // Read back on a blocking thread: librdkafka's consumer blocks, the actix thread must not.
    let (b, t) = (bootstrap.clone(), args.topic.clone());
    let c = shared.clone();
    let arrived = blocking(move || ReadBack::new(&b, &t, &c)?.read_since(&start)).await?;
    let total: u64 = arrived.values().map(|p| p.count).sum();
    println!("Read back {total} records from {}:", args.topic);
    for (partition, p) in &arrived {
        println!(
            "  partition {partition}: {:>7} records, offsets {}..={}",
            p.count, p.first, p.last
        );
    }

    let ok = failed == 0 && total == args.records as u64;
    if !ok {
        eprintln!(
            "FAILED: {failed} records failed, {total} of {} read back",
            args.records
        );
    }
    Ok(ok)
}

/// Runs librdkafka's blocking calls away from the actix thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> Result<T, Box<dyn std::error::Error>> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// What arrived in one partition.
#[derive(Debug)]
struct PartitionRead {
    count: u64,
    first: i64,
    last: i64,
}

/// An independent consumer: librdkafka's, assigned to every partition of the topic.
struct ReadBack {
    consumer: BaseConsumer,
    topic: String,
}

impl ReadBack {
    const TIMEOUT: Duration = Duration::from_secs(30);

    fn new(bootstrap: &str, topic: &str, extra: &[(String, String)]) -> KafkaResult<ReadBack> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "herald-quickstart-readback")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (k, v) in extra {
            config.set(k, v);
        }
        let consumer = config.create()?;
        Ok(ReadBack {
            consumer,
            topic: topic.to_string(),
        })
    }

    /// The topic's partitions as the cluster reports them now (none if it does not exist).
    fn partitions(&self) -> KafkaResult<Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), Self::TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// The next offset of every partition (its high watermark).
    fn end_offsets(self) -> KafkaResult<HashMap<i32, i64>> {
        let mut ends = HashMap::new();
        for p in self.partitions()? {
            let (_low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Self::TIMEOUT)?;
            ends.insert(p, high);
        }
        Ok(ends)
    }

    /// Reads every partition from `start` (or its beginning, for partitions that did not
    /// exist then) up to its current end.
    fn read_since(self, start: &HashMap<i32, i64>) -> KafkaResult<BTreeMap<i32, PartitionRead>> {
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut end: HashMap<i32, i64> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in self.partitions()? {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Self::TIMEOUT)?;
            let from = start.get(&p).copied().unwrap_or(low).max(low);
            assignment.add_partition_offset(&self.topic, p, Offset::Offset(from))?;
            next.insert(p, from);
            end.insert(p, high);
        }
        self.consumer.assign(&assignment)?;

        let mut read: BTreeMap<i32, PartitionRead> = BTreeMap::new();
        let deadline = Instant::now() + Self::TIMEOUT;
        while next.iter().any(|(p, n)| *n < end[p]) {
            if Instant::now() > deadline {
                eprintln!("read-back timed out after {:?}", Self::TIMEOUT);
                break;
            }
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message?;
            let (p, offset) = (message.partition(), message.offset());
            read.entry(p)
                .and_modify(|r| {
                    r.count += 1;
                    r.last = offset;
                })
                .or_insert(PartitionRead {
                    count: 1,
                    first: offset,
                    last: offset,
                });
            next.insert(p, offset + 1);
        }
        Ok(read)
    }
}
