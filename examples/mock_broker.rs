//! A Kafka cluster in its own process, for benchmarks: librdkafka's mock cluster with N
//! brokers and one topic. It prints its bootstrap servers as the first line on stdout and runs
//! until stdin closes (or it is killed), so the producer under test is the only thing running
//! in the benchmark's process and its CPU time can be measured alone.
//!
//! ```text
//! cargo build --release --examples
//! ./target/release/examples/mock_broker --brokers 3 --topic bench --partitions 6
//! ```

use std::io::{Read, Write};

use clap::Parser;
use rdkafka::mocking::MockCluster;

/// Start librdkafka's mock cluster and keep it running until stdin closes.
#[derive(Debug, Parser)]
struct Args {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Topic to create (with replication factor min(3, brokers)); none if absent.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("mock_broker: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.brokers < 1 || args.partitions < 1 {
        return Err("--brokers and --partitions must be at least 1".into());
    }
    let cluster = MockCluster::new(args.brokers)?;
    if let Some(topic) = &args.topic {
        cluster.create_topic(topic, args.partitions, args.brokers.min(3))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", cluster.bootstrap_servers())?;
    out.flush()?;
    drop(out);
    // The brokers run on librdkafka's threads; this one only waits for stdin to close.
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    while let Ok(1..) = stdin.read(&mut buf) {}
    drop(cluster);
    Ok(())
}
