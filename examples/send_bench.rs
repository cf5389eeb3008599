//! The per-record future APIs side by side: Herald's `Producer::send` (the intake),
//! `router.send(Produce)` (one actix request per record, what `bench`'s `herald-send` client
//! measures) and librdkafka's `FutureProducer::send_result`, each with a window of
//! outstanding futures polled by one task, as `bench` does. Settings are `bench`'s defaults
//! (acks=all, idempotence, linger.ms=5, batch.size 16384, 100-byte values, 8-byte keys).
//!
//! Each run gets a fresh `mock_broker` process (3 brokers, 6 partitions), so this process
//! runs only the client under test and its CPU time (user + system, from `/proc/self/stat`)
//! is the client's. Clients alternate within each round; the medians are printed at the end.
//!
//! ```text
//! cargo build --release --examples
//! ./target/release/examples/send_bench --records 500000 --rounds 5
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald_actors::{Produce, Producer};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Parser)]
#[command(about = "Producer::send vs router.send vs FutureProducer, alternating")]
struct Args {
    /// Records per run.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Rounds (each runs every client once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Outstanding futures.
    #[arg(long, default_value_t = 10_000)]
    window: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    ProducerSend,
    RouterSend,
    Future,
}

const CLIENTS: [Client; 3] = [Client::ProducerSend, Client::RouterSend, Client::Future];

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::ProducerSend => "herald Producer::send",
            Client::RouterSend => "herald router.send",
            Client::Future => "rdkafka FutureProducer",
        }
    }
}

/// CPU time of this process (user + system) in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Broker(Child, String);

impl Broker {
    fn start() -> Result<Broker> {
        let exe = std::env::current_exe()?.with_file_name("mock_broker");
        let mut child = Command::new(exe)
            .args(["--brokers", "3", "--topic", "bench", "--partitions", "6"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
        Ok(Broker(child, line.trim().to_string()))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

// Copied from borrowed slices as `bench` copies them (see `herald::arena`).
fn key(i: u64) -> Bytes {
    herald::arena::copy(&i.to_be_bytes())
}

const VALUE: [u8; 100] = [b'x'; 100];

fn value() -> Bytes {
    herald::arena::copy(&VALUE)
}

/// Runs `n` sends through `send`, at most `window` outstanding; returns the failures.
async fn drive<F, Fut, T, E>(n: u64, window: usize, mut send: F) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut inflight = FuturesUnordered::new();
    let (mut next, mut failed) = (0u64, 0u64);
    loop {
        while next < n && inflight.len() < window {
            inflight.push(send(next));
            next += 1;
        }
        match inflight.next().await {
            Some(r) => failed += u64::from(r.is_err()),
            None => return failed,
        }
    }
}

async fn herald(client: Client, bootstrap: &str, args: &Args) -> Result<u64> {
    let producer = Producer::from_pairs([
        ("bootstrap.servers", bootstrap),
        ("acks", "all"),
        ("linger.ms", "5"),
        ("enable.idempotence", "true"),
        ("max.in.flight.requests.per.connection", "5"),
    ])?;
    drive(1_000, 1_000, |i| {
        producer.send(Produce::new("bench").key(key(i)).value(value()))
    })
    .await;
    let router = producer.router().clone();
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let failed = match client {
        Client::ProducerSend => {
            drive(args.records, args.window, |i| {
                producer.send(Produce::new("bench").key(key(i)).value(value()))
            })
            .await
        }
        _ => {
            drive(args.records, args.window, |i| {
                let r = router.send(Produce::new("bench").key(key(i)).value(value()));
                async move {
                    r.await
                        .map_err(|_| ())
                        .and_then(|o| o.map(drop).map_err(drop))
                }
            })
            .await
        }
    };
    report(client, args, t.elapsed(), cpu_seconds() - cpu);
    let m = producer.metrics().await;
    println!("    records per request {:.1}", m.records_per_request_avg);
    producer.close(Duration::from_secs(30)).await;
    Ok(failed)
}

async fn future(bootstrap: &str, args: &Args) -> Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("max.in.flight.requests.per.connection", "5")
        .set("queue.buffering.max.kbytes", "32768")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let send = |i: u64| {
        let k = i.to_be_bytes();
        let r = producer
            .send_result(FutureRecord::to("bench").key(&k[..]).payload(&VALUE[..]))
            .map_err(|(e, _)| e);
        async move {
            match r {
                Ok(f) => f
                    .await
                    .map_err(drop)
                    .and_then(|d| d.map(drop).map_err(drop)),
                Err(_) => Err(()),
            }
        }
    };
    drive(1_000, 1_000, send).await;
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let failed = drive(args.records, args.window, send).await;
    report(Client::Future, args, t.elapsed(), cpu_seconds() - cpu);
    Ok(failed)
}

fn report(client: Client, args: &Args, wall: Duration, cpu: f64) {
    let rate = args.records as f64 / wall.as_secs_f64();
    let ns = cpu * 1e9 / args.records as f64;
    println!(
        "  {:<24} {rate:>10.0} rec/s {ns:>7.0} CPU ns/record",
        client.name()
    );
    RESULTS.with(|r| r.borrow_mut().push((client, rate, ns)));
}

thread_local! {
    static RESULTS: std::cell::RefCell<Vec<(Client, f64, f64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[actix_rt::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for round in 0..args.rounds {
        println!("round {}", round + 1);
        // Rotate the order per round so no client always runs first.
        for k in 0..CLIENTS.len() {
            let client = CLIENTS[(k + round) % CLIENTS.len()];
            let broker = Broker::start()?;
            let failed = match client {
                Client::Future => future(&broker.1, &args).await?,
                c => herald(c, &broker.1, &args).await?,
            };
            if failed != 0 {
                return Err(format!("{}: {failed} records failed", client.name()).into());
            }
        }
    }
    let results = RESULTS.with(|r| r.borrow().clone());
    let of = |c: Client, f: fn(&(Client, f64, f64)) -> f64| -> Vec<f64> {
        results.iter().filter(|r| r.0 == c).map(f).collect()
    };
    println!("medians of {} rounds:", args.rounds);
    for c in CLIENTS {
        println!(
            "  {:<24} {:>10.0} rec/s {:>7.0} CPU ns/record",
            c.name(),
            median(of(c, |r| r.1)),
            median(of(c, |r| r.2))
        );
    }
    // Ratios per round, then their median (the machine's load moves whole rounds).
    let ratio = |a: Client, b: Client, f: fn(&(Client, f64, f64)) -> f64| {
        median(of(a, f).iter().zip(of(b, f)).map(|(x, y)| x / y).collect())
    };
    for other in [Client::Future, Client::RouterSend] {
        println!(
            "  Producer::send / {}: throughput {:.2}x, CPU/record {:.2}x",
            other.name(),
            ratio(Client::ProducerSend, other, |r| r.1),
            ratio(Client::ProducerSend, other, |r| r.2)
        );
    }
    Ok(())
}
