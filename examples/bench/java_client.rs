//! The Java producer: Kafka's own `ProducerPerformance` tool (what `kafka-producer-perf-test.sh`
//! runs) in a JVM of its own, started through the test harness's `Jvm` so that no JVM outlives
//! the benchmark. The worker measures that process from `/proc/<pid>`: CPU (utime + stime of
//! the whole JVM life: start-up, JIT and GC included), wall time and peak RSS. Throughput and
//! latencies are the tool's own figures from its summary line:
//!
//! ```text
//! 500000 records sent, 81766.5 records/sec (7.80 MB/sec), 190.17 ms avg latency,
//!   581.00 ms max latency, 185 ms 50th, 389 ms 95th, 497 ms 99th, 565 ms 99.9th.
//! ```
//!
//! The tool sends records without keys, and one random payload of `--record-size` bytes for
//! every record; it has no warm-up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::{libs, Jvm};
use crate::measure::clock_ticks_per_sec;
use crate::security::ClientSecurity;
use crate::{Args, Latency, Mode, Result, RunResult, Settings, MAX_IN_FLIGHT};

/// The Kafka version of the jars in use (from `kafka-clients-<version>.jar`).
pub(crate) fn kafka_version() -> String {
    std::fs::read_dir(libs())
        .ok()
        .and_then(|dir| {
            dir.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("kafka-clients-")
                    .and_then(|v| v.strip_suffix(".jar"))
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

/// The `java` command line: the JVM options `kafka-producer-perf-test.sh` runs the tool with
/// (`-Xmx512M` and `kafka-run-class.sh`'s G1 settings), then the tool's arguments with the
/// same producer settings as the other clients; the security settings, if any, from the
/// `--producer.config` file `security_file` (`--producer-props` splits each pair at every `=`,
/// and a JAAS line holds several).
fn command(args: &Args, bootstrap: &str, topic: &str, security_file: Option<&Path>) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xmx512M",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        // Marks the process as ours, so scripts/test.sh can find strays.
        "-Dherald.kafka.test=1",
    ])
    .arg("-cp")
    .arg(format!("{}/*", libs().display()))
    .arg("org.apache.kafka.tools.ProducerPerformance")
    .args(["--topic", topic])
    .args(["--num-records", &args.records.to_string()])
    .args(["--record-size", &args.record_size.to_string()]);
    let throughput = match args.worker_mode {
        Mode::Rate => args.rate.to_string(),
        _ => "-1".to_string(),
    };
    cmd.args(["--throughput", &throughput])
        .arg("--producer-props")
        .arg(format!("bootstrap.servers={bootstrap}"))
        .arg(format!("acks={}", args.acks))
        .arg(format!("linger.ms={}", args.linger_ms))
        .arg(format!("batch.size={}", args.batch_size))
        .arg(format!("compression.type={}", args.compression))
        .arg(format!("enable.idempotence={}", args.idempotence))
        .arg(format!("buffer.memory={}", args.buffer_memory))
        .arg(format!(
            "max.in.flight.requests.per.connection={MAX_IN_FLIGHT}"
        ));
    if let Some(file) = security_file {
        cmd.arg("--producer.config").arg(file);
    }
    cmd
}

/// `pairs` as a Java properties file (backslashes escaped; values may hold `=`, `"` and
/// spaces as they are).
fn properties(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\")))
        .collect()
}

/// What `/proc/<pid>` says about the JVM.
#[derive(Debug, Default, Clone, Copy)]
struct ProcSample {
    zombie: bool,
    user_ticks: u64,
    sys_ticks: u64,
    rss_bytes: u64,
    hwm_bytes: u64,
}

fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let kb = |status: &str, field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Some(ProcSample {
        zombie: matches!(f.first(), Some(&"Z") | Some(&"X")),
        // Fields after the command: state(3) ... utime(14) stime(15).
        user_ticks: f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0),
        sys_ticks: f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0),
        rss_bytes: kb(&status, "VmRSS:"),
        hwm_bytes: kb(&status, "VmHWM:"),
    })
}

/// The tool's figures from one of its lines: progress lines carry the records of their
/// window, the summary (the line with percentiles) the totals.
#[derive(Debug, Default, Clone, PartialEq)]
struct Line {
    records: u64,
    records_per_sec: f64,
    avg_ms: f64,
    max_ms: f64,
    /// `(percentile, ms)`: 50th, 95th, 99th, 99.9th; empty on progress lines.
    percentiles: Vec<(String, f64)>,
}

fn parse_line(line: &str) -> Option<Line> {
    let mut out = Line::default();
    let mut parts = line.trim().trim_end_matches('.').split(", ");
    out.records = parts
        .next()?
        .strip_suffix(" records sent")?
        .trim()
        .parse()
        .ok()?;
    for part in parts {
        let num = |s: &str| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        };
        if part.contains("records/sec") {
            out.records_per_sec = num(part)?;
        } else if part.ends_with("ms avg latency") {
            out.avg_ms = num(part)?;
        } else if part.ends_with("ms max latency") {
            out.max_ms = num(part)?;
        } else if part.ends_with("th") {
            // `185 ms 50th`
            let w: Vec<&str> = part.split_whitespace().collect();
            if let [ms, "ms", name] = w[..] {
                out.percentiles.push((name.to_string(), ms.parse().ok()?));
            }
        }
    }
    Some(out)
}

/// Runs the tool once, measures its JVM, and reads its summary.
pub(crate) fn run(
    args: &Args,
    bootstrap: &str,
    topic: &str,
    security: &ClientSecurity,
) -> Result<RunResult> {
    let log: PathBuf = std::env::temp_dir().join(format!(
        "herald-bench-java-{}-{topic}.log",
        std::process::id()
    ));
    let pairs = security.java_pairs();
    let security_file = if pairs.is_empty() {
        None
    } else {
        let file = log.with_extension("properties");
        std::fs::write(&file, properties(&pairs))?;
        Some(file)
    };
    let started = Instant::now();
    let mut jvm = Jvm::spawn(
        command(args, bootstrap, topic, security_file.as_deref()),
        &log,
    );
    let pid = jvm.pid();
    let mut last = ProcSample::default();
    let mut peak_rss = 0u64;
    let mut hwm = 0u64;
    let mut reported = 0u64;
    let mut tick = 0u64;
    let wall = loop {
        match sample(pid) {
            Some(s) if !s.zombie => {
                peak_rss = peak_rss.max(s.rss_bytes);
                hwm = hwm.max(s.hwm_bytes);
                last = s;
            }
            // A zombie's stat still holds the CPU times of every thread; it has no memory.
            Some(s) => {
                last.user_ticks = last.user_ticks.max(s.user_ticks);
                last.sys_ticks = last.sys_ticks.max(s.sys_ticks);
                break started.elapsed();
            }
            None => break started.elapsed(),
        }
        tick += 1;
        if tick % 10 == 0 {
            let sent: u64 = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(parse_line)
                .filter(|l| l.percentiles.is_empty())
                .map(|l| l.records)
                .sum();
            if sent != reported {
                reported = sent;
                let mut out = std::io::stdout().lock();
                writeln!(out, "progress {sent}")?;
                out.flush()?;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = jvm.wait()?;
    drop(jvm);
    if let Some(file) = &security_file {
        let _ = std::fs::remove_file(file);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let summary = text
        .lines()
        .filter_map(parse_line)
        .find(|l| !l.percentiles.is_empty());
    let summary = match summary {
        Some(s) if status.success() && s.records == args.records => s,
        _ => {
            return Err(format!(
                "ProducerPerformance failed ({status}); its output:\n{}",
                text.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            )
            .into())
        }
    };
    let pct = |name: &str| {
        summary
            .percentiles
            .iter()
            .find(|(p, _)| p == name)
            .map_or(f64::NAN, |(_, ms)| *ms)
    };
    let hz = clock_ticks_per_sec();
    let user_s = last.user_ticks as f64 / hz;
    let sys_s = last.sys_ticks as f64 / hz;
    let cpu_s = user_s + sys_s;
    let n = args.records;
    let secs = n as f64 / summary.records_per_sec;
    let (partitions_written, log_records) = log_end(bootstrap, topic, args.partitions, security)?;
    Ok(RunResult {
        client: "java".into(),
        api: "perf".into(),
        mode: args.worker_mode,
        offered_rate: (args.worker_mode == Mode::Rate).then_some(args.rate),
        records: n,
        elapsed_s: secs,
        records_per_sec: summary.records_per_sec,
        mb_per_sec: n as f64 * args.record_size as f64 / secs / 1e6,
        cpu_s,
        cpu_user_s: user_s,
        cpu_sys_s: sys_s,
        cpu_ns_per_record: cpu_s * 1e9 / n as f64,
        cpu_cores: cpu_s / wall.as_secs_f64(),
        peak_rss_bytes: peak_rss,
        outstanding: None,
        baseline_rss_bytes: 0,
        vm_hwm_bytes: hwm,
        latency_ms: Latency {
            p50: pct("50th"),
            p99: pct("99th"),
            p999: pct("99.9th"),
            max: summary.max_ms,
            mean: summary.avg_ms,
        },
        partitions_written,
        // A fresh topic: its partitions hold exactly this run's records.
        offsets_verified: args.acks != "0" && log_records == n,
        client_metrics: Some(serde_json::json!({
            "tool": "org.apache.kafka.tools.ProducerPerformance",
            "kafka_version": kafka_version(),
            "jvm_wall_s": wall.as_secs_f64(),
            "latency_p95_ms": pct("95th"),
            "records_in_log": log_records,
            "note": "no keys; one random payload for all records; rec/s and latencies from the \
                     tool; cpu over the whole JVM life (start-up, JIT, GC)",
        })),
        settings: Settings::of(args),
        round: 0,
    })
}

/// Partitions of `topic` that hold records, and how many records they hold together (high
/// watermarks minus low watermarks).
pub(crate) fn log_end(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    security: &ClientSecurity,
) -> Result<(usize, u64)> {
    let (written, marks) = watermarks(bootstrap, topic, partitions, security)?;
    Ok((written, marks.iter().map(|(lo, hi)| (hi - lo) as u64).sum()))
}

/// Partitions of `topic` that hold records, and each partition's low and high watermarks.
pub(crate) fn watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    security: &ClientSecurity,
) -> Result<(usize, Vec<(i64, i64)>)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3");
    security.apply_rdkafka(&mut config);
    let consumer: BaseConsumer = config.create()?;
    let mut written = 0;
    let mut marks = Vec::new();
    for p in 0..partitions {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if hi > lo {
            written += 1;
        }
        marks.push((lo, hi));
    }
    Ok((written, marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_and_progress_lines() {
        let s = parse_line(
            "500000 records sent, 81766.5 records/sec (7.80 MB/sec), 190.17 ms avg latency, \
             581.00 ms max latency, 185 ms 50th, 389 ms 95th, 497 ms 99th, 565 ms 99.9th.",
        )
        .unwrap();
        assert_eq!(s.records, 500_000);
        assert_eq!(s.records_per_sec, 81766.5);
        assert_eq!(s.percentiles[3], ("99.9th".to_string(), 565.0));
        let p = parse_line(
            "408211 records sent, 81642.2 records/sec (7.79 MB/sec), 179.5 ms avg latency, \
             542.0 ms max latency.",
        )
        .unwrap();
        assert!(p.percentiles.is_empty());
        assert_eq!(p.records, 408_211);
        assert!(parse_line("SLF4J: something").is_none());
    }
}
