//! The orchestrator: for each client and mode, a fresh worker process and a fresh topic: on a
//! fresh mock_broker process (`--broker mock`), on the one Apache Kafka node this process
//! started (`--broker kafka`), or on `--bootstrap-servers`; then the report.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::console_vs_kcat::{Setup, Summary};
use crate::kafka::{Kafka, Options};
use crate::mock_broker_process::MockBrokerProcess;
use crate::report::{
    medians, mode_label, print_medians, print_report, ratios, ratios_json, representatives,
};
use crate::security::{self, Security};
use crate::{kafka, plot, Api, Args, BrokerKind, Mode, Result, RunResult, Settings};

/// One Apache Kafka node for every run (its JVM dies with this process), a tokio runtime for
/// the harness's admin calls; its data, logs and certificates are removed at the end.
struct KafkaBroker {
    kafka: Option<Kafka>,
    rt: tokio::runtime::Runtime,
}

impl KafkaBroker {
    fn start() -> Result<KafkaBroker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The harness panics when Kafka cannot start; its message says why.
        let kafka = std::panic::catch_unwind(|| Kafka::start(Options::single()))
            .map_err(|_| "Apache Kafka did not start (see above)")?;
        Ok(KafkaBroker {
            kafka: Some(kafka),
            rt,
        })
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        if let Some(k) = &self.kafka {
            self.rt.block_on(k.create_topic(topic, partitions, 1));
        }
    }

    /// The bootstrap servers of the listener that speaks `security`.
    fn bootstrap(&self, security: Security) -> String {
        self.kafka
            .as_ref()
            .map(|k| k.bootstrap_on(security.listener()))
            .unwrap_or_default()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if let Some(k) = self.kafka.take() {
            let dir = k.dir().to_path_buf();
            drop(k);
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::remove_dir_all(&kafka::certs().dir);
        }
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    validate(args)?;
    let exe = std::env::current_exe()?;
    let broker_exe = exe.with_file_name("mock_broker");
    let own_mock = args.bootstrap_servers.is_none() && args.broker == BrokerKind::Mock;
    if own_mock && !broker_exe.exists() {
        return Err(format!(
            "{} not found; build it with `cargo build --release --examples` (or pass --bootstrap-servers)",
            broker_exe.display()
        )
        .into());
    }
    let modes: Vec<Mode> = args
        .modes
        .iter()
        .copied()
        .filter(|m| *m == Mode::Max || (*m == Mode::Rate && args.rate > 0))
        .collect();
    let rounds = args.runs.max(1);
    let plan: Vec<(usize, Mode, Api)> = (0..rounds)
        .flat_map(|round| {
            modes
                .iter()
                .flat_map(move |m| args.clients.iter().map(move |c| (round, *m, *c)))
        })
        .collect();
    let console = args.modes.contains(&Mode::Console);
    if plan.is_empty() && !console {
        return Err("nothing to run (check --modes, --clients and --rate)".into());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let kafka = match (&args.bootstrap_servers, args.broker) {
        (None, BrokerKind::Kafka) => Some(KafkaBroker::start()?),
        _ => None,
    };
    let java_libs = if args.clients.contains(&Api::Java) {
        Some(kafka::libs().to_path_buf())
    } else {
        None
    };

    let total = args.records * plan.len() as u64;
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {human_pos}/{human_len} records {msg}",
        )?
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));

    let mut results = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for (i, (round, mode, api)) in plan.iter().enumerate() {
        let done_before = args.records * i as u64;
        pb.set_position(done_before);
        let of_round = if rounds > 1 {
            format!(" (round {} of {rounds})", round + 1)
        } else {
            String::new()
        };
        pb.set_message(format!(
            "{} {}{of_round}",
            api.flag(),
            mode_label(*mode, args.rate)
        ));
        let topic = match &args.topic {
            Some(t) if args.bootstrap_servers.is_some() => t.clone(),
            Some(t) => format!("{t}-{}-{:?}", api.flag(), mode).to_lowercase(),
            None => format!("herald-bench-{}-{:?}-{stamp}", api.flag(), mode).to_lowercase(),
        };
        let broker = if own_mock {
            Some(MockBrokerProcess::start(
                &broker_exe,
                args.brokers,
                &topic,
                args.partitions,
            )?)
        } else {
            None
        };
        if let Some(k) = &kafka {
            k.create_topic(&topic, args.partitions);
        }
        let bootstrap = match (&broker, &kafka, &args.bootstrap_servers) {
            (Some(b), _, _) => b.bootstrap.clone(),
            (None, Some(k), _) => k.bootstrap(args.security),
            (None, None, Some(b)) => b.clone(),
            (None, None, None) => unreachable!("one of them is set"),
        };
        let mut cmd = Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .args(["--worker", api.flag(), "--worker-mode"])
            .arg(format!("{mode:?}").to_lowercase())
            .args(["--worker-bootstrap", &bootstrap, "--worker-topic", &topic]);
        if broker.is_some() || kafka.is_some() {
            cmd.arg("--worker-owned-broker");
        }
        if kafka.is_some() && args.security != Security::Plaintext {
            cmd.arg("--worker-ca").arg(kafka::certs().ca());
        }
        if let Some(libs) = &java_libs {
            cmd.env("HERALD_KAFKA_LIBS", libs);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        let mut result = None;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(n) = line.strip_prefix("progress ") {
                if let Ok(n) = n.parse::<u64>() {
                    pb.set_position(done_before + n.min(args.records));
                }
            } else if let Some(json) = line.strip_prefix("result ") {
                result = Some(serde_json::from_str::<RunResult>(json)?);
            }
        }
        let status = child.wait()?;
        drop(broker);
        // A client that fails (a setting it refuses, a broker it cannot reach) is reported
        // by its worker on stderr and skipped: the other clients still run and are reported.
        match result {
            Some(r) if status.success() => results.push(RunResult { round: *round, ..r }),
            _ => {
                let run = format!("{} {}{of_round}", api.flag(), mode_label(*mode, args.rate));
                // Not pb.println: it prints nothing when stderr is not a terminal.
                pb.suspend(|| eprintln!("bench: {run} failed ({status}), error above; skipped"));
                failed.push(run);
            }
        }
    }
    pb.finish_and_clear();
    drop(kafka);
    let console = if console {
        match console_mode(args, &exe) {
            Ok(summary) => Some(summary),
            Err(e) => {
                eprintln!("bench: console mode failed: {e}");
                failed.push("console".to_string());
                None
            }
        }
    } else {
        None
    };
    if results.is_empty() && console.is_none() {
        return Err(format!("every run failed: {}", failed.join(", ")).into());
    }

    let settings = Settings::of(args);
    let ratios = ratios(&results);
    let medians = medians(&results, &ratios);
    if !results.is_empty() {
        print_report(&settings, &results, &ratios);
        if rounds > 1 {
            print_medians(&settings, &medians);
        }
    }
    if let Some(c) = &console {
        print_console(c);
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "settings": settings,
            "runs": results,
            "ratios": ratios_json(&medians),
            "medians": medians,
            "console": console,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("\nJSON written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        // With several rounds, each client's run of median throughput stands for it.
        let shown = representatives(&results);
        plot::draw(path, &args.font, &settings, &shown, console.as_ref())
            .map_err(|e| format!("plot: {e}"))?;
        println!("chart written to {}", path.display());
    }
    if !failed.is_empty() {
        return Err(format!("failed, not in the report: {}", failed.join(", ")).into());
    }
    Ok(())
}

/// The console mode: `console_producer` against `kcat -P` on the same input, each on a fresh
/// mock cluster per run (see `common/console_vs_kcat.rs`).
fn console_mode(args: &Args, exe: &std::path::Path) -> Result<Summary> {
    if args.bootstrap_servers.is_some() || args.broker != BrokerKind::Mock {
        return Err(
            "it runs on its own mock clusters only (no --bootstrap-servers or \
                    --broker kafka)"
                .into(),
        );
    }
    let mut setup = Setup::beside(exe, args.records, args.record_size);
    setup.brokers = args.brokers;
    setup.partitions = args.partitions;
    setup.prepare()?;
    let rounds = args.console_rounds.max(1);
    let pb = indicatif::ProgressBar::new(2 * rounds as u64);
    pb.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} console runs {msg}",
    )?);
    pb.enable_steady_tick(Duration::from_millis(200));
    let summary = setup.compare(rounds, |_, client, _| {
        pb.set_message(client.name());
        pb.inc(1);
    });
    pb.finish_and_clear();
    summary
}

fn print_console(c: &Summary) {
    println!();
    println!(
        "console: console_producer against kcat -P, whole process, {} keyed lines of {} B \
         from stdin (-K : -X acks=all -X enable.idempotence=true -X linger.ms=5), a fresh \
         mock cluster per run, medians of {} rounds",
        c.records, c.line_size, c.rounds
    );
    println!("{:<18} {:>8} {:>8}", "", "wall s", "cpu s");
    println!(
        "{:<18} {:>8.3} {:>8.3}",
        "kcat", c.kcat_wall_s, c.kcat_cpu_s
    );
    println!(
        "{:<18} {:>8.3} {:>8.3}",
        "console_producer", c.herald_wall_s, c.herald_cpu_s
    );
    println!(
        "{:<18} {:>7.2}x {:>7.2}x",
        "herald / kcat", c.wall_ratio, c.cpu_ratio
    );
}

fn validate(args: &Args) -> Result<()> {
    security::validate(args)?;
    if args.clients.contains(&Api::Java)
        && args.broker == BrokerKind::Mock
        && args.bootstrap_servers.is_none()
    {
        return Err(
            "the java client needs Apache Kafka: pass --broker kafka (the Java producer \
                    does not get past start-up against librdkafka's mock cluster)"
                .into(),
        );
    }
    if args.clients.contains(&Api::Java) && args.key_size > 0 {
        eprintln!(
            "bench: note: the java client (ProducerPerformance) sends no keys; the others send \
             {} B keys (--key-size 0 for the same records)",
            args.key_size
        );
    }
    if args.records == 0 {
        return Err("--records must be at least 1".into());
    }
    let transactional = [Api::HeraldBatch, Api::RdkafkaFuture];
    if args.txn_records > 0 && args.clients.iter().any(|c| !transactional.contains(c)) {
        return Err(
            "--txn-records runs herald-batch and rdkafka-future only: pass --clients \
             herald-batch,rdkafka-future"
                .into(),
        );
    }
    if args.window == 0 || args.batch_records == 0 {
        return Err("--window and --batch-records must be at least 1".into());
    }
    if args.partitions < 1 || args.brokers < 1 {
        return Err("--partitions and --brokers must be at least 1".into());
    }
    if !["all", "-1", "1", "0"].contains(&args.acks.as_str()) {
        return Err(format!("--acks {}: use all, 1 or 0", args.acks).into());
    }
    if args.idempotence && !["all", "-1"].contains(&args.acks.as_str()) {
        return Err("idempotence needs --acks all (or pass --idempotence false)".into());
    }
    if herald::compression::Compression::from_name(&args.compression).is_none() {
        return Err(format!(
            "--compression {}: use none, gzip, snappy, lz4 or zstd",
            args.compression
        )
        .into());
    }
    Ok(())
}
