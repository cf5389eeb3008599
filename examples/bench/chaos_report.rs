//! The `chaos` mode's report: what the read-back found, one row per run, medians over seeds
//! per scenario and client, the JSON, and a chart of delivered records over time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::chaos::{Applied, Scenario};
use crate::chaos_client::{ClientReport, FIXED_SETTINGS, VALUE_MAX, VALUE_MIN};
use crate::{Args, Result};

/// The settings of a chaos run, as both clients got them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    records: u64,
    value_bytes: String,
    keys: &'static str,
    brokers: i32,
    partitions: i32,
    replication_factor: i32,
    acks: String,
    idempotence: bool,
    max_in_flight: u32,
    linger_ms: u64,
    batch_size: usize,
    compression: String,
    buffer_memory: usize,
    request_timeout_ms: u64,
    delivery_timeout_ms: u64,
    also: &'static str,
    /// `--herald-set`: settings Herald's client alone had, on top of these.
    herald_only: Vec<String>,
    fault_interval_ms: u64,
    /// A `down` fault lasts this many intervals.
    down_ticks: u64,
    /// Records offered per second; 0: as fast as each client goes.
    offered_rate: u64,
    /// Faults stop this many seconds after the client's start; 0: at its last outcome.
    fault_window_s: f64,
    cap_s: u64,
}

impl Settings {
    pub(crate) fn of(a: &Args) -> Settings {
        Settings {
            records: a.records,
            value_bytes: format!("{VALUE_MIN}-{VALUE_MAX}"),
            keys: "key-0000 to key-4999",
            brokers: a.brokers,
            partitions: a.partitions,
            replication_factor: a.brokers.min(3),
            acks: a.acks.clone(),
            idempotence: a.idempotence,
            max_in_flight: a.chaos_max_in_flight,
            linger_ms: a.linger_ms,
            batch_size: a.batch_size,
            compression: a.compression.clone(),
            buffer_memory: a.buffer_memory,
            request_timeout_ms: a.request_timeout_ms,
            delivery_timeout_ms: a.delivery_timeout_ms,
            also: FIXED_SETTINGS,
            herald_only: a
                .herald_set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            fault_interval_ms: a.fault_interval_ms,
            down_ticks: a.down_ticks,
            offered_rate: a.chaos_rate,
            fault_window_s: a.fault_window_s,
            cap_s: a.cap_s,
        }
    }
}

/// What the log holds, against what the client reported.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct LogCheck {
    /// Records in the log, copies included.
    pub(crate) in_log: u64,
    /// Copies beyond a record's first.
    pub(crate) duplicates: u64,
    /// First copies that sit after a later record of their partition.
    pub(crate) order_violations: u64,
    /// Acknowledged records that are not in the log.
    pub(crate) lost: u64,
    /// Records reported failed that are in the log all the same.
    pub(crate) failed_but_written: u64,
}

impl LogCheck {
    /// `log`: the record indexes per partition, in offset order.
    pub(crate) fn of(log: &[Vec<u64>], n: u64, report: &ClientReport) -> LogCheck {
        let mut check = LogCheck::default();
        let mut seen: HashSet<u64> = HashSet::new();
        for partition in log {
            let mut highest = None;
            for &i in partition {
                check.in_log += 1;
                if !seen.insert(i) {
                    check.duplicates += 1;
                    continue;
                }
                if highest.is_some_and(|h| i < h) {
                    check.order_violations += 1;
                }
                highest = highest.max(Some(i));
            }
        }
        let failed: HashSet<u64> = report.failed_records.iter().copied().collect();
        let pending: HashSet<u64> = report.pending_records.iter().copied().collect();
        for i in 0..n {
            let written = seen.contains(&i);
            if failed.contains(&i) {
                check.failed_but_written += u64::from(written);
            } else if !pending.contains(&i) && !written {
                check.lost += 1;
            }
        }
        check
    }
}

/// One client under one scenario and seed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChaosRun {
    scenario: String,
    seed: u64,
    client: String,
    api: String,
    finished: bool,
    records: u64,
    acknowledged: u64,
    failed: u64,
    pending: u64,
    /// First send to last outcome; `None` when the client did not finish within the cap.
    time_to_deliver_s: Option<f64>,
    elapsed_s: f64,
    /// Records acknowledged per second between the first and the last fault.
    records_per_sec_under_faults: f64,
    records_sent_again: Option<u64>,
    resent_after_lost_request: Option<u64>,
    requests_retried: Option<u64>,
    failure_reasons: BTreeMap<String, u64>,
    #[serde(flatten)]
    log: LogCheck,
    faults_by_kind: BTreeMap<String, u64>,
    faults: Vec<Applied>,
    /// When the fault window closed and every fault was undone (seconds after the start),
    /// if it closed before the client finished.
    faults_undone_at_s: Option<f64>,
    /// The longest one of the mock's fault commands took to be served (see `Nudge`).
    slowest_command_ms: f64,
    timeline: Vec<(f64, u64)>,
}

impl ChaosRun {
    pub(crate) fn new(
        scenario: &Scenario,
        seed: u64,
        r: ClientReport,
        log: LogCheck,
        faults: Vec<Applied>,
        faults_undone_at_s: Option<f64>,
        slowest_command_ms: f64,
    ) -> ChaosRun {
        let mut by_kind = BTreeMap::new();
        for f in &faults {
            *by_kind
                .entry(format!("{:?}", f.fault.kind()).to_lowercase())
                .or_insert(0) += 1;
        }
        let overall = r.acknowledged as f64 / r.elapsed_s.max(1e-9);
        let under = match (faults.first(), faults.last()) {
            (Some(a), Some(b)) if b.at_s - a.at_s > 0.05 => {
                (at(&r.timeline, b.at_s) - at(&r.timeline, a.at_s)) / (b.at_s - a.at_s)
            }
            _ => overall,
        };
        ChaosRun {
            scenario: scenario.name.clone(),
            seed,
            client: r.client,
            api: r.api,
            finished: r.finished,
            records: r.records,
            acknowledged: r.acknowledged,
            failed: r.failed,
            pending: r.pending,
            time_to_deliver_s: r.finished.then_some(r.elapsed_s),
            elapsed_s: r.elapsed_s,
            records_per_sec_under_faults: under,
            records_sent_again: r.records_sent_again,
            resent_after_lost_request: r.resent_after_lost_request,
            requests_retried: r.requests_retried,
            failure_reasons: r.failure_reasons,
            log,
            faults_by_kind: by_kind,
            faults,
            faults_undone_at_s,
            slowest_command_ms,
            timeline: r.timeline,
        }
    }
}

/// Records acknowledged at `t` seconds, interpolated between the timeline's samples.
fn at(timeline: &[(f64, u64)], t: f64) -> f64 {
    let after = timeline.iter().position(|(s, _)| *s >= t);
    match after {
        Some(0) => timeline[0].1 as f64,
        Some(k) => {
            let (t0, n0) = timeline[k - 1];
            let (t1, n1) = timeline[k];
            n0 as f64 + (n1 as f64 - n0 as f64) * (t - t0) / (t1 - t0).max(1e-9)
        }
        None => timeline.last().map_or(0.0, |p| p.1 as f64),
    }
}

/// Medians over the seeds of one scenario and client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Median {
    scenario: String,
    client: String,
    seeds: usize,
    finished: usize,
    /// `None` when most seeds did not finish (an unfinished run counts as endless).
    time_to_deliver_s: Option<f64>,
    records_per_sec_under_faults: f64,
    records_sent_again: Option<f64>,
    resent_after_lost_request: Option<f64>,
    requests_retried: Option<f64>,
    failed: f64,
    pending: f64,
    duplicates: f64,
    order_violations: f64,
    lost: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub(crate) fn medians(runs: &[ChaosRun]) -> Vec<Median> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.scenario.clone(), r.client.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(scenario, client)| {
            let of: Vec<&ChaosRun> = runs
                .iter()
                .filter(|r| r.scenario == scenario && r.client == client)
                .collect();
            let m = |f: &dyn Fn(&ChaosRun) -> f64| median(of.iter().map(|r| f(r)).collect());
            let opt = |f: &dyn Fn(&ChaosRun) -> Option<u64>| {
                let v: Vec<f64> = of.iter().filter_map(|r| f(r)).map(|x| x as f64).collect();
                (!v.is_empty()).then(|| median(v))
            };
            let time = m(&|r| r.time_to_deliver_s.unwrap_or(f64::INFINITY));
            Median {
                seeds: of.len(),
                finished: of.iter().filter(|r| r.finished).count(),
                time_to_deliver_s: time.is_finite().then_some(time),
                records_per_sec_under_faults: m(&|r| r.records_per_sec_under_faults),
                records_sent_again: opt(&|r| r.records_sent_again),
                resent_after_lost_request: opt(&|r| r.resent_after_lost_request),
                requests_retried: opt(&|r| r.requests_retried),
                failed: m(&|r| r.failed as f64),
                pending: m(&|r| r.pending as f64),
                duplicates: m(&|r| r.log.duplicates as f64),
                order_violations: m(&|r| r.log.order_violations as f64),
                lost: m(&|r| r.log.lost as f64),
                scenario,
                client,
            }
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

pub(crate) fn print_report(s: &Settings, runs: &[ChaosRun], medians: &[Median]) {
    println!(
        "Herald vs librdkafka under faults: {} keyed records of {} B, {} brokers, {} partitions, \
         RF {}, acks={}, idempotence={}, linger.ms={}, batch.size={}, compression={}, \
         buffer.memory={} MiB, request.timeout.ms={}, delivery.timeout.ms={}, {}, \
         max.in.flight={}{}; one fault \
         every {} ms {}, a broker down for {} ms; {}; cap {} s per client",
        s.records,
        s.value_bytes,
        s.brokers,
        s.partitions,
        s.replication_factor,
        s.acks,
        s.idempotence,
        s.linger_ms,
        s.batch_size,
        s.compression,
        s.buffer_memory >> 20,
        s.request_timeout_ms,
        s.delivery_timeout_ms,
        s.also,
        s.max_in_flight,
        if s.herald_only.is_empty() {
            String::new()
        } else {
            format!("; Herald alone: {}", s.herald_only.join(", "))
        },
        s.fault_interval_ms,
        if s.fault_window_s == 0.0 {
            "until the client's last outcome".to_string()
        } else {
            format!("for the first {} s", s.fault_window_s)
        },
        s.fault_interval_ms * s.down_ticks,
        if s.offered_rate == 0 {
            "records offered as fast as each client takes them".to_string()
        } else {
            format!("{} records/s offered", s.offered_rate)
        },
        s.cap_s
    );
    println!();
    println!(
        "{:<22} {:>5} {:<8} {:>8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6}",
        "faults",
        "seed",
        "client",
        "time s",
        "rec/s",
        "sent",
        "resent",
        "failed",
        "pending",
        "dups",
        "order",
        "lost",
        "faults"
    );
    println!(
        "{:<22} {:>5} {:<8} {:>8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6}",
        "", "", "", "", "(faults)", "again", "(lost)", "", "", "", "viol.", "", ""
    );
    for r in runs {
        println!(
            "{:<22} {:>5} {:<8} {:>8} {:>9.0} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6}",
            r.scenario,
            r.seed,
            r.client,
            r.time_to_deliver_s
                .map_or("unfinished".into(), |t| format!("{t:.2}")),
            r.records_per_sec_under_faults,
            opt(r.records_sent_again.map(|v| v as f64)),
            opt(r.resent_after_lost_request.map(|v| v as f64)),
            r.failed,
            r.pending,
            r.log.duplicates,
            r.log.order_violations,
            r.log.lost,
            r.faults.len()
        );
    }
    if runs.len() == medians.len() {
        return;
    }
    println!();
    println!("Medians over the seeds");
    println!(
        "{:<22} {:<8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>6} {:>5}",
        "faults",
        "client",
        "finished",
        "time s",
        "rec/s",
        "sent",
        "resent",
        "failed",
        "dups",
        "order",
        "lost"
    );
    for m in medians {
        println!(
            "{:<22} {:<8} {:>8} {:>8} {:>9.0} {:>8} {:>8} {:>7.0} {:>7.0} {:>6.0} {:>5.0}",
            m.scenario,
            m.client,
            format!("{}/{}", m.finished, m.seeds),
            m.time_to_deliver_s
                .map_or("unfinished".into(), |t| format!("{t:.2}")),
            m.records_per_sec_under_faults,
            opt(m.records_sent_again),
            opt(m.resent_after_lost_request),
            m.failed,
            m.duplicates,
            m.order_violations,
            m.lost
        );
    }
    println!();
    println!(
        "sent again: Herald's record_retry_total; librdkafka's txmsgs minus records (records \
         transmitted more than once). resent (lost): records sent again after their request was \
         lost with its connection (Herald only). dups, order, lost: read back with librdkafka's \
         consumer; the mock does not deduplicate idempotent batches."
    );
}

const HERALD: RGBColor = RGBColor(0xE0, 0x6C, 0x1F);
const RDKAFKA: RGBColor = RGBColor(0x2B, 0x6C, 0xB0);

/// Delivered records over time, one panel per scenario, a line per client and seed.
pub(crate) fn draw(path: &Path, font: &Path, s: &Settings, runs: &[ChaosRun]) -> Result<()> {
    let text = match std::fs::read(font) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    };
    let mut scenarios: Vec<&str> = Vec::new();
    for r in runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let cols = scenarios.len().clamp(1, 3);
    let rows = scenarios.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (600 * cols as u32, 60 + 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = if text {
        let (title, body) = root.split_vertically(60);
        let style = ("sans-serif", 16).into_font().color(&BLACK);
        title.draw(&Text::new(
            format!(
                "Records acknowledged over time: {} records, a fault every {} ms, {}",
                s.records,
                s.fault_interval_ms,
                if s.offered_rate == 0 {
                    "full speed".to_string()
                } else {
                    format!("{} records/s offered", s.offered_rate)
                }
            ),
            (15, 8),
            style.clone(),
        ))?;
        title.draw(&Text::new(
            "orange: Herald, blue: librdkafka; a line per seed",
            (15, 32),
            style,
        ))?;
        body
    } else {
        root.clone()
    };
    let panels = body.split_evenly((rows, cols));
    for (scenario, area) in scenarios.iter().zip(panels.iter()) {
        let of: Vec<&ChaosRun> = runs.iter().filter(|r| r.scenario == *scenario).collect();
        let t_max = of
            .iter()
            .filter_map(|r| r.timeline.last().map(|p| p.0))
            .fold(1.0, f64::max);
        let mut b = ChartBuilder::on(area);
        b.margin(15)
            .x_label_area_size(if text { 35 } else { 5 })
            .y_label_area_size(if text { 60 } else { 5 });
        if text {
            b.caption(format!("faults: {scenario}"), ("sans-serif", 18));
        }
        let mut chart = b.build_cartesian_2d(0f64..t_max * 1.02, 0f64..s.records as f64 * 1.05)?;
        if text {
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("records acknowledged")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 13))
                .draw()?;
        }
        for r in of {
            let c = if r.client == "herald" {
                HERALD
            } else {
                RDKAFKA
            };
            chart.draw_series(LineSeries::new(
                r.timeline.iter().map(|(t, n)| (*t, *n as f64)),
                c.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failed: Vec<u64>) -> ClientReport {
        ClientReport {
            client: "x".into(),
            api: "y".into(),
            finished: true,
            records: 6,
            acknowledged: 6 - failed.len() as u64,
            failed: failed.len() as u64,
            pending: 0,
            elapsed_s: 1.0,
            records_sent_again: None,
            resent_after_lost_request: None,
            requests_retried: None,
            failure_reasons: BTreeMap::new(),
            failed_records: failed,
            pending_records: Vec::new(),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn counts_duplicates_order_violations_and_losses() {
        // Partition 0: 0 2 1 2 (1 is out of order, 2 twice); partition 1: 3 5.
        let log = vec![vec![0, 2, 1, 2], vec![3, 5]];
        let c = LogCheck::of(&log, 6, &report(vec![5]));
        assert_eq!(c.in_log, 6);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.order_violations, 1);
        assert_eq!(c.lost, 1, "record 4 was acknowledged but is missing");
        assert_eq!(c.failed_but_written, 1);
    }
}
