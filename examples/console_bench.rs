//! `console_producer` against kcat, whole process against whole process, and nothing else
//! (`bench`'s `console` mode runs the same beside the API comparisons): see
//! `common/console_vs_kcat.rs` for what is run and how it is measured. The medians of wall
//! time and CPU (user + system, of the producer's process alone) and their ratios are
//! printed at the end.
//!
//! ```text
//! apt-get install kcat
//! cargo build --release --example console_producer --example mock_broker --example console_bench
//! ./target/release/examples/console_bench            # 1,000,000 lines of 100 bytes, 5 rounds
//! ```

use std::path::PathBuf;

use clap::Parser;

#[path = "common/mock_broker_process.rs"]
mod mock_broker_process;

#[path = "common/console_vs_kcat.rs"]
mod console_vs_kcat;
use console_vs_kcat::Setup;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Parser)]
#[command(about = "Herald's console_producer against kcat -P, whole process")]
struct Args {
    /// Lines to produce.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per line, key and separator included, newline excluded.
    #[arg(long, default_value_t = 100)]
    line_size: usize,
    /// Rounds; each runs both producers once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Brokers of the mock cluster.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The kcat binary.
    #[arg(long, default_value = "kcat")]
    kcat: String,
    /// An extra `-X key=value` for console_producer only (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    herald_x: Vec<String>,
    /// An extra `-X key=value` for kcat only (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    kcat_x: Vec<String>,
    /// The console_producer binary (default: the one beside this one).
    #[arg(long)]
    console_producer: Option<PathBuf>,
    /// The input file; generated there (in the temp directory if not given) unless it exists.
    #[arg(long)]
    input: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(&Args::parse()) {
        eprintln!("console_bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut setup = Setup::beside(&exe, args.records, args.line_size);
    setup.brokers = args.brokers;
    setup.partitions = args.partitions;
    setup.kcat = args.kcat.clone();
    setup.herald_x = args.herald_x.clone();
    setup.kcat_x = args.kcat_x.clone();
    if let Some(p) = &args.console_producer {
        setup.console_producer = p.clone();
    }
    if let Some(p) = &args.input {
        setup.input = p.clone();
    }
    setup.prepare()?;
    println!(
        "input: {} ({} lines of {} bytes), {} broker(s), {} partitions, {} rounds",
        setup.input.display(),
        args.records,
        args.line_size,
        args.brokers,
        args.partitions,
        args.rounds
    );
    let s = setup.compare(args.rounds, |round, client, r| {
        println!(
            "round {}: {:<6} wall {:>6.3} s  cpu {:>6.3} s",
            round + 1,
            client.name(),
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64()
        );
    })?;
    println!();
    println!("medians of {} runs each:", args.rounds);
    println!(
        "  kcat             wall {:.3} s  cpu {:.3} s",
        s.kcat_wall_s, s.kcat_cpu_s
    );
    println!(
        "  console_producer wall {:.3} s  cpu {:.3} s",
        s.herald_wall_s, s.herald_cpu_s
    );
    println!(
        "  herald / kcat    wall {:.2}x  cpu {:.2}x  (target: wall <= 0.67x, cpu <= 0.50x)",
        s.wall_ratio, s.cpu_ratio
    );
    Ok(())
}
