//! The report: the table on stdout, Herald / librdkafka ratios, and their JSON form.

use serde::Serialize;

use crate::{Mode, RunResult, Settings};

pub(crate) fn mode_label(mode: Mode, rate: u64) -> String {
    match mode {
        Mode::Max => "max".to_string(),
        Mode::Rate => format!("rate {rate}/s"),
        Mode::Chaos => "chaos".to_string(),
        Mode::Console => "console".to_string(),
    }
}

/// Herald / librdkafka (or Herald / Java) for one pair of APIs in one mode.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    #[serde(skip)]
    mode: Mode,
    #[serde(skip)]
    pair: String,
    records_per_sec: f64,
    cpu_ns_per_record: f64,
    peak_rss_bytes: f64,
    latency_p50: f64,
    latency_p99: f64,
    latency_p999: f64,
}

/// Herald / librdkafka, then Herald / Java, for every pair of APIs, per mode, in the order the
/// runs were made. The Java pairs are named `<herald api>/java`.
pub(crate) fn ratios(results: &[RunResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for mode in [Mode::Max, Mode::Rate] {
        let of = |client: &str| -> Vec<&RunResult> {
            results
                .iter()
                .filter(|r| r.mode == mode && r.client == client)
                .collect()
        };
        let others = of("rdkafka").into_iter().chain(of("java"));
        let others: Vec<&RunResult> = others.collect();
        for h in of("herald") {
            for k in &others {
                let q = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
                let other = if k.client == "java" { "java" } else { &k.api };
                out.push(Ratio {
                    mode,
                    pair: format!("{}/{other}", h.api),
                    records_per_sec: q(h.records_per_sec, k.records_per_sec),
                    cpu_ns_per_record: q(h.cpu_ns_per_record, k.cpu_ns_per_record),
                    peak_rss_bytes: q(h.peak_rss_bytes as f64, k.peak_rss_bytes as f64),
                    latency_p50: q(h.latency_ms.p50, k.latency_ms.p50),
                    latency_p99: q(h.latency_ms.p99, k.latency_ms.p99),
                    latency_p999: q(h.latency_ms.p999, k.latency_ms.p999),
                });
            }
        }
    }
    out
}

/// `{"max": {"send/future": {...}, ...}, "rate": {...}}`
pub(crate) fn ratios_json(ratios: &[Ratio]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in ratios {
        let mode = out
            .entry(format!("{:?}", r.mode).to_lowercase())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(m) = mode.as_object_mut() {
            m.insert(r.pair.clone(), serde_json::to_value(r).unwrap_or_default());
        }
    }
    serde_json::Value::Object(out)
}

pub(crate) fn print_report(s: &Settings, results: &[RunResult], ratios: &[Ratio]) {
    let key = if s.key_size == 0 {
        "no key".to_string()
    } else {
        format!("{} B keys", s.key_size)
    };
    let vs = if results.iter().any(|r| r.client == "java") {
        "Herald vs librdkafka vs Java"
    } else {
        "Herald vs librdkafka"
    };
    println!(
        "{vs}: {} records of {} B ({key}), acks={}, linger.ms={}, batch.size={}, \
         compression={}, idempotence={}, {} partitions, buffer {} MiB, security.protocol={}, \
         broker: {}",
        s.records,
        s.record_size,
        s.acks,
        s.linger_ms,
        s.batch_size,
        s.compression,
        s.idempotence,
        s.partitions,
        s.buffer_memory >> 20,
        s.security.protocol(),
        s.bootstrap
    );
    println!();
    println!(
        "{:<13} {:<21} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "mode",
        "client",
        "rec/s",
        "MB/s",
        "cpu ns",
        "cores",
        "RSS+",
        "RSS+",
        "VmHWM",
        "p50",
        "p99",
        "p99.9",
        "max"
    );
    println!(
        "{:<13} {:<21} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "", "", "", "", "/record", "used", "MiB", "B/out", "MiB", "ms", "ms", "ms", "ms"
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for r in results {
        println!(
            "{:<13} {:<21} {:>10.0} {:>7.1} {:>8.0} {:>6.2} {:>7.1} {:>7} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            mode_label(r.mode, s.rate),
            r.label(),
            r.records_per_sec,
            r.mb_per_sec,
            r.cpu_ns_per_record,
            r.cpu_cores,
            mib(r.peak_rss_bytes),
            // Memory per record outstanding: RSS growth over the window of records.
            r.outstanding
                .filter(|&n| n > 0)
                .map_or("-".to_string(), |n| format!("{:.0}", r.peak_rss_bytes as f64 / n as f64)),
            mib(r.vm_hwm_bytes),
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            r.latency_ms.max
        );
    }
    if ratios.is_empty() {
        return;
    }
    println!();
    println!(
        "Herald / librdkafka and Herald / Java (rec/s above 1: Herald faster; cpu, RSS+, \
         latency below 1: Herald better)"
    );
    println!(
        "{:<13} {:<22} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "mode", "herald/rdkafka", "rec/s", "cpu/rec", "RSS+", "p50", "p99", "p99.9"
    );
    for r in ratios {
        println!(
            "{:<13} {:<22} {:>7.2} {:>8.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            mode_label(r.mode, s.rate),
            r.pair,
            r.records_per_sec,
            r.cpu_ns_per_record,
            r.peak_rss_bytes,
            r.latency_p50,
            r.latency_p99,
            r.latency_p999
        );
    }
    println!();
    println!(
        "RSS+: peak RSS growth over the client's run; B/out: RSS+ over the records the client \
         keeps outstanding at most (its window), the memory per outstanding record, batch \
         buffers included; full speed only (paced, the window is far from full)."
    );
    if results.iter().any(|r| r.client == "java") {
        println!();
        println!(
            "java-perf is Kafka's ProducerPerformance in its own JVM: records without keys and one \
             random payload for every record; rec/s and latencies are the tool's own figures \
             (latencies in whole ms); cpu is the JVM's whole life (start-up, JIT and GC \
             included); RSS+ is the JVM's peak RSS."
        );
    }
}
