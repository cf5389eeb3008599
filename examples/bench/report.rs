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
    /// The round both runs belong to (`--runs`).
    round: usize,
    records_per_sec: f64,
    cpu_ns_per_record: f64,
    peak_rss_bytes: f64,
    latency_p50: f64,
    latency_p99: f64,
    latency_p999: f64,
}

/// Herald / librdkafka, then Herald / Java, for every pair of APIs, per round and mode, in
/// the order the runs were made; a ratio pairs two runs of one round. The Java pairs are named
/// `<herald api>/java`.
pub(crate) fn ratios(results: &[RunResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let rounds = results.iter().map(|r| r.round + 1).max().unwrap_or(0);
    for (round, mode) in (0..rounds).flat_map(|r| [(r, Mode::Max), (r, Mode::Rate)]) {
        let of = |client: &str| -> Vec<&RunResult> {
            results
                .iter()
                .filter(|r| r.round == round && r.mode == mode && r.client == client)
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
                    round,
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

/// `{"max": {"send/future": {...}, ...}, "rate": {...}}`: each pair's median ratios over the
/// rounds (with one round, its ratios), and under `rounds` the ratios of every round.
pub(crate) fn ratios_json(m: &Medians) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for p in &m.pairs {
        let mode = out
            .entry(format!("{:?}", p.mode).to_lowercase())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(by_pair) = mode.as_object_mut() {
            by_pair.insert(p.pair.clone(), serde_json::to_value(p).unwrap_or_default());
        }
    }
    serde_json::Value::Object(out)
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One client's medians over the rounds of one mode.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientMedians {
    mode: Mode,
    client: String,
    runs: usize,
    records_per_sec: f64,
    cpu_ns_per_record: f64,
    peak_rss_bytes: f64,
    latency_p99: f64,
}

/// One pair's median ratios over the rounds of one mode, and the ratios of every round.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PairMedians {
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
    rounds: Vec<Ratio>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Medians {
    clients: Vec<ClientMedians>,
    /// In the JSON as `ratios` (see [`ratios_json`]).
    #[serde(skip)]
    pairs: Vec<PairMedians>,
}

/// The distinct keys of `items`, in first-seen order.
fn distinct<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<K> {
    let mut keys = Vec::new();
    for item in items {
        let k = key(item);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// Each client's and each pair's medians over the rounds (`--runs`), in first-seen order.
pub(crate) fn medians(results: &[RunResult], ratios: &[Ratio]) -> Medians {
    let clients = distinct(results, |r| (r.mode, r.label()))
        .into_iter()
        .map(|(mode, client)| {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.mode == mode && r.label() == client)
                .collect();
            let m = |f: fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
            ClientMedians {
                mode,
                runs: runs.len(),
                records_per_sec: m(|r| r.records_per_sec),
                cpu_ns_per_record: m(|r| r.cpu_ns_per_record),
                peak_rss_bytes: m(|r| r.peak_rss_bytes as f64),
                latency_p99: m(|r| r.latency_ms.p99),
                client,
            }
        })
        .collect();
    let pairs = distinct(ratios, |r| (r.mode, r.pair.clone()))
        .into_iter()
        .map(|(mode, pair)| {
            let rounds: Vec<Ratio> = ratios
                .iter()
                .filter(|r| r.mode == mode && r.pair == pair)
                .cloned()
                .collect();
            let m = |f: fn(&Ratio) -> f64| median(rounds.iter().map(f).collect());
            PairMedians {
                mode,
                records_per_sec: m(|r| r.records_per_sec),
                cpu_ns_per_record: m(|r| r.cpu_ns_per_record),
                peak_rss_bytes: m(|r| r.peak_rss_bytes),
                latency_p50: m(|r| r.latency_p50),
                latency_p99: m(|r| r.latency_p99),
                latency_p999: m(|r| r.latency_p999),
                pair,
                rounds,
            }
        })
        .collect();
    Medians { clients, pairs }
}

/// Per mode and client, the run of median throughput (the lower middle one for an even
/// count): what the chart shows when there were several rounds.
pub(crate) fn representatives(results: &[RunResult]) -> Vec<RunResult> {
    distinct(results, |r| (r.mode, r.label()))
        .into_iter()
        .map(|(mode, label)| {
            let mut same: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.mode == mode && r.label() == label)
                .collect();
            same.sort_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec));
            same[(same.len() - 1) / 2].clone()
        })
        .collect()
}

/// Medians over the rounds: each client's, then each pair's with its ratio in every round.
pub(crate) fn print_medians(s: &Settings, m: &Medians) {
    let rounds = m.clients.iter().map(|c| c.runs).max().unwrap_or(0);
    println!();
    println!("Medians of {rounds} rounds (each round ran every client once, in turn)");
    println!(
        "{:<13} {:<21} {:>10} {:>8} {:>7} {:>8}",
        "mode", "client", "rec/s", "cpu ns", "RSS+", "p99"
    );
    println!(
        "{:<13} {:<21} {:>10} {:>8} {:>7} {:>8}",
        "", "", "", "/record", "MiB", "ms"
    );
    for c in &m.clients {
        println!(
            "{:<13} {:<21} {:>10.0} {:>8.0} {:>7.1} {:>8.2}",
            mode_label(c.mode, s.rate),
            c.client,
            c.records_per_sec,
            c.cpu_ns_per_record,
            c.peak_rss_bytes / (1024.0 * 1024.0),
            c.latency_p99
        );
    }
    println!();
    println!(
        "{:<13} {:<22} {:>7} {:>8} {:>7}   rec/s | cpu/rec in each round",
        "mode", "herald/rdkafka", "rec/s", "cpu/rec", "p99"
    );
    let list = |rounds: &[Ratio], f: fn(&Ratio) -> f64| {
        rounds
            .iter()
            .map(|r| format!("{:.2}", f(r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for p in &m.pairs {
        println!(
            "{:<13} {:<22} {:>7.2} {:>8.2} {:>7.2}   {} | {}",
            mode_label(p.mode, s.rate),
            p.pair,
            p.records_per_sec,
            p.cpu_ns_per_record,
            p.latency_p99,
            list(&p.rounds, |r| r.records_per_sec),
            list(&p.rounds, |r| r.cpu_ns_per_record)
        );
    }
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
        "{:<16} {:<21} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
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
        "{:<16} {:<21} {:>10} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "", "", "", "", "/record", "used", "MiB", "B/out", "MiB", "ms", "ms", "ms", "ms"
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    // With several rounds each row names its round: `max #2`.
    let rounds = results.iter().any(|r| r.round > 0);
    let label = |mode: Mode, round: usize| {
        if rounds {
            format!("{} #{}", mode_label(mode, s.rate), round + 1)
        } else {
            mode_label(mode, s.rate)
        }
    };
    for r in results {
        println!(
            "{:<16} {:<21} {:>10.0} {:>7.1} {:>8.0} {:>6.2} {:>7.1} {:>7} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            label(r.mode, r.round),
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
        "{:<16} {:<22} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "mode", "herald/rdkafka", "rec/s", "cpu/rec", "RSS+", "p50", "p99", "p99.9"
    );
    for r in ratios {
        println!(
            "{:<16} {:<22} {:>7.2} {:>8.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            label(r.mode, r.round),
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
