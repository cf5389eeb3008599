//! A kcat-style console producer: every line of stdin becomes one record.
//!
//! ```text
//! console_producer -b HOST:PORT -t TOPIC [-K SEP] [-p PARTITION] [-H key=value]... [-X config.key=value]...
//!
//! seq 1000 | cargo run --example console_producer -- -b localhost:9092 -t numbers
//! printf 'k1:v1\nk2:v2\n' | cargo run --example console_producer -- -b localhost:9092 -t t -K : \
//!     -H source=console -X acks=1 -X compression.type=zstd
//! ```
//!
//! - The trailing newline is stripped; an empty line is a record with an empty value. Lines are
//!   bytes, not necessarily UTF-8.
//! - With `-K SEP`, the text before the first SEP is the key and the rest the value; a line
//!   without SEP is all value, with a null key (as kcat does).
//! - `-X` accepts every producer config key Herald knows (the Java producer's names).
//!
//! At the end one JSON line goes to stderr:
//! `{"records":N,"delivered":D,"failed":F,"elapsed_ms":T}`, after one line per failed record.
//! Exit status: 0 if every record was delivered, 1 if any failed, 2 for bad arguments or config.
//! Set `RUST_LOG=herald_actors=debug` to watch the producer work.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use herald_actors::{Produce, Producer};

/// Records waiting for their acknowledgement at most. This bounds memory however large the
/// input is: when it is reached, reading stdin pauses. Keep it below the router's mailbox
/// capacity (`Router::MAILBOX_CAPACITY`), past which actix parks senders and throughput
/// drops.
const MAX_IN_FLIGHT: usize = 2_048;

/// How long `close` may take to deliver what is left at EOF.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "Produce stdin lines as Kafka records with Herald (kcat -P style)")]
struct Args {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(short = 'b', value_name = "HOST:PORT")]
    brokers: String,
    /// Topic to produce to.
    #[arg(short = 't', value_name = "TOPIC")]
    topic: String,
    /// Key delimiter: the text before the first SEP is the key.
    #[arg(short = 'K', value_name = "SEP")]
    key_delimiter: Option<String>,
    /// Partition to produce to (default: the partitioner picks).
    #[arg(short = 'p', value_name = "PARTITION")]
    partition: Option<i32>,
    /// A header for every record (repeatable).
    #[arg(short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// A producer config setting (repeatable), e.g. -X acks=1 -X linger.ms=20.
    #[arg(short = 'X', value_name = "CONFIG.KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got \"{s}\""))
}

#[actix_rt::main]
async fn main() -> ExitCode {
    // clap exits with 2 on bad arguments, like a bad config below.
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }

    // -b first, then every -X in order: later settings win, so -X can override anything.
    let pairs = std::iter::once(("bootstrap.servers".to_string(), args.brokers.clone()))
        .chain(args.config.clone());
    let producer = match Producer::from_pairs(pairs) {
        Ok(p) => p,
        Err(e) => {
            // ConfigError's message names the offending key.
            eprintln!("console_producer: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();

    // stdin is read on its own thread, because reading blocks. The bounded channel passes
    // lines on as they come and stops the reader when producing falls behind.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if tx.blocking_send(line).is_err() {
                return Ok(());
            }
        }
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|line| (line, rx))
    });

    // Each line becomes a `Produce`; `router.send` returns the future of its outcome, and
    // `buffer_unordered` keeps at most MAX_IN_FLIGHT of them outstanding.
    let router = producer.router().clone();
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Bytes::from(v.clone())))
        .collect();
    let outcomes = lines
        .enumerate()
        .map(|(n, line)| {
            let record = to_record(&args, &headers, line);
            let sent = router.send(record);
            async move { (n, sent.await) }
        })
        .buffer_unordered(MAX_IN_FLIGHT);
    let mut outcomes = std::pin::pin!(outcomes);

    let (mut records, mut delivered, mut failed) = (0u64, 0u64, 0u64);
    while let Some((n, outcome)) = outcomes.next().await {
        records += 1;
        let error = match outcome {
            Ok(Ok(_metadata)) => None,
            // Herald's error: this record failed (after retries, if they could help).
            Ok(Err(e)) => Some(e.to_string()),
            // actix's error: the router's mailbox closed, the producer stopped.
            Err(e) => Some(e.to_string()),
        };
        match error {
            None => delivered += 1,
            Some(e) => {
                failed += 1;
                eprintln!("line {} failed: {e}", n + 1);
            }
        }
    }

    let read_error = match reader.join() {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("stdin reader panicked".to_string()),
    };
    if let Some(e) = &read_error {
        eprintln!("console_producer: reading stdin failed: {e}");
    }
    // Every outcome is in; close stops the producer's actors (and would flush leftovers).
    producer.close(CLOSE_TIMEOUT).await;

    // Written by hand to keep the keys in this order for scripts that match the line.
    let elapsed_ms = started.elapsed().as_millis();
    eprintln!(
        r#"{{"records":{records},"delivered":{delivered},"failed":{failed},"elapsed_ms":{elapsed_ms}}}"#
    );
    if failed == 0 && read_error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One stdin line as a record, split into key and value if asked to.
fn to_record(args: &Args, headers: &[(String, Bytes)], line: Vec<u8>) -> Produce {
    let mut record = Produce::new(args.topic.clone());
    let split = args
        .key_delimiter
        .as_deref()
        .and_then(|sep| find(&line, sep.as_bytes()).map(|at| (at, sep.len())));
    record = match split {
        Some((at, sep_len)) => {
            let line = Bytes::from(line);
            // Slices of one buffer: key and value share the line's allocation.
            record
                .key(line.slice(..at))
                .value(line.slice(at + sep_len..))
        }
        None => record.value(line),
    };
    for (k, v) in headers {
        record = record.header(k.clone(), v.clone());
    }
    if let Some(p) = args.partition {
        record = record.partition(p);
    }
    record
}

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
