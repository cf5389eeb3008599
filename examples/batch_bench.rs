//! Micro-benchmark of the core's hot path: `BatchBuilder::try_append` and `close` (compression
//! and CRC-32C), no actors, no I/O.
//!
//! Fills a 1 MiB batch with 100-byte records with 8-byte keys, for every codec, several times,
//! and prints the median ns per appended record, separating append time and close time.
//!
//! ```text
//! cargo build --release --examples && ./target/release/examples/batch_bench
//! ```

#[path = "common/payload.rs"]
mod payload;
use payload::payload_template;

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use herald::batch::{BatchBuilder, ProducerIds};
use herald::compression::Compression;

/// ns per record of the record batch builder, per codec.
#[derive(Debug, Parser)]
struct Args {
    /// Batch size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    batch_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Key size in bytes (0: no key).
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Timed iterations per codec (after one untimed warm-up); the median is reported.
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// Codecs to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,gzip,snappy,lz4,zstd"
    )]
    codecs: Vec<String>,
}

struct Sample {
    records: usize,
    append: Duration,
    close: Duration,
    bytes_in: usize,
    bytes_out: usize,
}

fn fill_and_close(args: &Args, codec: Compression, template: &[u8]) -> Sample {
    let span = template.len() - args.record_size;
    let mut key = [0u8; 64];
    let key_len = args.key_size.min(key.len());
    let mut builder = BatchBuilder::new(args.batch_size, codec, None);
    let base_ts = 1_700_000_000_000i64;
    let start = Instant::now();
    let mut i = 0usize;
    loop {
        let off = (i * 7919) % span;
        let value = &template[off..off + args.record_size];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let key = (key_len > 0).then(|| &key[..key_len]);
        if builder
            .try_append(base_ts + (i as i64 >> 6), key, Some(value), &[])
            .is_err()
        {
            break;
        }
        i += 1;
        if builder.is_full() {
            break;
        }
    }
    let append = start.elapsed();
    let bytes_in = builder.size_in_bytes();
    let start = Instant::now();
    let batch = builder.close(ProducerIds::NONE).expect("close");
    let close = start.elapsed();
    let bytes_out = black_box(batch).len();
    Sample {
        records: i,
        append,
        close,
        bytes_in,
        bytes_out,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    assert!(args.iterations > 0, "--iterations must be at least 1");
    let template = payload_template(256 * 1024 + args.record_size);
    println!(
        "BatchBuilder: {} B records, {} B keys, {} KiB batches, median of {} iterations",
        args.record_size,
        args.key_size,
        args.batch_size / 1024,
        args.iterations
    );
    println!(
        "{:<8} {:>8} {:>11} {:>10} {:>11} {:>10} {:>10} {:>8}",
        "codec", "records", "append", "close", "close", "total", "MB/s in", "ratio"
    );
    println!(
        "{:<8} {:>8} {:>11} {:>10} {:>11} {:>10} {:>10} {:>8}",
        "", "/batch", "ns/record", "us/batch", "ns/record", "ns/record", "", "out/in"
    );
    for name in &args.codecs {
        let Some(codec) = Compression::from_name(name) else {
            eprintln!("unknown codec {name}: use none, gzip, snappy, lz4, zstd");
            std::process::exit(2);
        };
        black_box(fill_and_close(&args, codec, &template));
        let samples: Vec<Sample> = (0..args.iterations)
            .map(|_| fill_and_close(&args, codec, &template))
            .collect();
        let records = samples[0].records;
        let per = |d: Duration, n: usize| d.as_nanos() as f64 / n as f64;
        let append = median(samples.iter().map(|s| per(s.append, s.records)).collect());
        let close_us = median(
            samples
                .iter()
                .map(|s| s.close.as_secs_f64() * 1e6)
                .collect(),
        );
        let close = median(samples.iter().map(|s| per(s.close, s.records)).collect());
        let total = median(
            samples
                .iter()
                .map(|s| per(s.append + s.close, s.records))
                .collect(),
        );
        let mbps = median(
            samples
                .iter()
                .map(|s| s.bytes_in as f64 / (s.append + s.close).as_secs_f64() / 1e6)
                .collect(),
        );
        let ratio = samples[0].bytes_out as f64 / samples[0].bytes_in as f64;
        println!(
            "{:<8} {:>8} {:>11.1} {:>10.1} {:>11.1} {:>10.1} {:>10.0} {:>8.3}",
            codec.name(),
            records,
            append,
            close_us,
            close,
            total,
            mbps,
            ratio
        );
    }
}
