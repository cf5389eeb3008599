//! The `chaos` mode: Herald and librdkafka one after another under the same seeded fault
//! schedule on librdkafka's mock cluster, with the same explicit settings.
//!
//! ```text
//!   bench --modes chaos (this process: the mock cluster, the schedule, the read-back)
//!     │ per scenario (a set of fault kinds), seed and client
//!     ├── MockCluster (3 brokers, topic of 6 partitions, replication factor 3), fresh
//!     ├── spawns bench --worker <client> --worker-chaos-seed S ──▶ "ready", "progress N",
//!     │        "result {json}" (outcomes, retries, delivered records over time)
//!     ├── from "ready" on, one fault every --fault-interval-ms until the result (or the end
//!     │        of --fault-window-s, or the cap): Schedule::step decides, apply() acts on
//!     │        the cluster
//!     └── faults undone, the log read back with librdkafka's consumer: duplicates, order
//!              violations and lost records per partition (values carry the record's index)
//! ```
//!
//! The schedule is a function of the seed and the tick number only, so both clients get the
//! same faults at the same times after their start. The mock cluster does not check
//! sequence numbers for non-transactional producers (`rd_kafka_mock_validate_records`), so a
//! batch written twice after a lost request shows up as duplicates here, whereas a real
//! broker would drop the copy.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::chaos_client::ClientReport;
use crate::chaos_report::{print_report, ChaosRun, LogCheck};
use crate::{chaos_report, Api, Args, Result};

/// One kind of fault the schedule can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FaultKind {
    /// One broker down (connections cut, new ones refused) for `--down-ticks` ticks.
    Down,
    /// A partition's leader moved to another broker that is up.
    Leader,
    /// The next 1-3 Produce requests answered with an error, or their connection cut.
    Errors,
    /// A broker's round-trip time set to 0-300 ms (until a later fault sets it again).
    Latency,
}

impl FaultKind {
    const ALL: [FaultKind; 4] = [
        FaultKind::Down,
        FaultKind::Leader,
        FaultKind::Errors,
        FaultKind::Latency,
    ];

    fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(name.trim()))
    }
}

/// A set of fault kinds switched on together, as `--faults` named it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) kinds: Vec<FaultKind>,
}

impl Scenario {
    pub(crate) fn parse(spec: &str) -> Result<Scenario> {
        let mut kinds = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => kinds.push(FaultKind::parse(part).ok_or_else(|| {
                    format!("--faults {part}: use down, leader, errors, latency, all or none")
                })?),
            }
        }
        kinds.sort();
        kinds.dedup();
        let name = if kinds.len() == FaultKind::ALL.len() {
            "all".to_string()
        } else if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(|k| format!("{k:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join("+")
        };
        Ok(Scenario { name, kinds })
    }
}

/// The most round-trip time a latency fault sets.
const MAX_RTT_MS: u64 = 300;

/// The Produce errors an `errors` fault draws from; `transport` makes the mock cut the
/// connection the request came on (librdkafka's `ERR__TRANSPORT`, never sent by a broker).
const PRODUCE_ERRORS: [(&str, RDKafkaRespErr); 6] = [
    (
        "NOT_LEADER_OR_FOLLOWER",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    ),
    (
        "REQUEST_TIMED_OUT",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ),
    (
        "NOT_ENOUGH_REPLICAS",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    ),
    (
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ),
    (
        "LEADER_NOT_AVAILABLE",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
    ),
    ("transport", RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT),
];

/// A fault the schedule decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub(crate) enum Fault {
    BrokerDown { broker: i32 },
    LeaderMoved { partition: i32, broker: i32 },
    ProduceErrors { errors: Vec<&'static str> },
    RoundTrip { broker: i32, ms: u64 },
}

impl Fault {
    pub(crate) fn kind(&self) -> FaultKind {
        match self {
            Fault::BrokerDown { .. } => FaultKind::Down,
            Fault::LeaderMoved { .. } => FaultKind::Leader,
            Fault::ProduceErrors { .. } => FaultKind::Errors,
            Fault::RoundTrip { .. } => FaultKind::Latency,
        }
    }
}

/// What happens at one tick: a broker's down time ends, and a fault begins.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) broker_up: Option<i32>,
    pub(crate) fault: Option<Fault>,
}

/// The seeded schedule: a pure function of the seed and the tick number.
#[derive(Debug)]
pub(crate) struct Schedule {
    rng: fastrand::Rng,
    kinds: Vec<FaultKind>,
    brokers: i32,
    partitions: i32,
    /// The broker that is down and the tick it comes back up.
    down: Option<(i32, u64)>,
    /// How many ticks a broker stays down.
    down_ticks: u64,
}

impl Schedule {
    pub(crate) fn new(
        seed: u64,
        kinds: &[FaultKind],
        brokers: i32,
        partitions: i32,
        down_ticks: u64,
    ) -> Self {
        Schedule {
            rng: fastrand::Rng::with_seed(seed),
            kinds: kinds.to_vec(),
            brokers,
            partitions,
            down: None,
            down_ticks,
        }
    }

    /// Tick `tick` (1, 2, ...): ticks must come in order.
    pub(crate) fn step(&mut self, tick: u64) -> Step {
        let mut step = Step::default();
        if let Some((broker, until)) = self.down {
            if tick >= until {
                step.broker_up = Some(broker);
                self.down = None;
            }
        }
        // A second broker is not taken down while one is: leave `down` out then.
        let choices: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| *k != FaultKind::Down || self.down.is_none())
            .collect();
        if choices.is_empty() {
            return step;
        }
        let up: Vec<i32> = (1..=self.brokers)
            .filter(|b| self.down.is_none_or(|(d, _)| d != *b))
            .collect();
        let fault = match choices[self.rng.usize(0..choices.len())] {
            FaultKind::Down => {
                let broker = self.rng.i32(1..=self.brokers);
                self.down = Some((broker, tick + self.down_ticks));
                Fault::BrokerDown { broker }
            }
            FaultKind::Leader => Fault::LeaderMoved {
                partition: self.rng.i32(0..self.partitions),
                broker: up[self.rng.usize(0..up.len())],
            },
            FaultKind::Errors => Fault::ProduceErrors {
                errors: (0..self.rng.usize(1..=3))
                    .map(|_| PRODUCE_ERRORS[self.rng.usize(0..PRODUCE_ERRORS.len())].0)
                    .collect(),
            },
            FaultKind::Latency => Fault::RoundTrip {
                broker: self.rng.i32(1..=self.brokers),
                ms: self.rng.u64(0..=MAX_RTT_MS),
            },
        };
        step.fault = Some(fault);
        step
    }
}

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// Acts on the cluster as `step` says.
fn apply(cluster: &Cluster, topic: &str, step: &Step) -> Result<()> {
    if let Some(b) = step.broker_up {
        cluster.broker_up(b)?;
    }
    match &step.fault {
        None => {}
        Some(Fault::BrokerDown { broker }) => cluster.broker_down(*broker)?,
        Some(Fault::LeaderMoved { partition, broker }) => {
            cluster.partition_leader(topic, *partition, Some(*broker))?
        }
        Some(Fault::ProduceErrors { errors }) => {
            let codes: Vec<RDKafkaRespErr> = errors
                .iter()
                .filter_map(|e| PRODUCE_ERRORS.iter().find(|(n, _)| n == e).map(|(_, c)| *c))
                .collect();
            // The next one to three requests, not one to three more behind those of earlier
            // faults: the mock's error queue is consumed one per Produce request, so queued
            // errors would pile up against a client that sends fewer requests than faults
            // arrive (one request per broker per round, or a retry per backoff) and cut or
            // refuse every request it sends from then on.
            cluster.clear_request_errors(RDKafkaApiKey::Produce);
            cluster.request_errors(RDKafkaApiKey::Produce, &codes);
        }
        Some(Fault::RoundTrip { broker, ms }) => {
            cluster.broker_round_trip_time(*broker, Duration::from_millis(*ms))?
        }
    }
    Ok(())
}

/// Runs the mock cluster's commands promptly. The mock's thread serves a command when it
/// wakes, and its wake-up for commands can be lost: measured here, `broker_up` and
/// `broker_round_trip_time` returned after up to 1 s, when the client under test next sent
/// a request (or the thread's 1 s sleep ended). A fault then took effect when the client
/// next talked to the mock, and the clients met the schedule at different times: the one
/// that sends more often (Herald's metadata refresh every retry.backoff.ms while a leader is
/// missing, against librdkafka's 1 s scan) saw a broker come back sooner. While a command
/// waits, a thread connects to the brokers every 2 ms: an accepted connection wakes the
/// mock's thread, which then serves the command.
struct Nudge {
    brokers: Vec<std::net::SocketAddr>,
    /// The longest a command took, for the report.
    slowest: std::cell::Cell<Duration>,
}

impl Nudge {
    fn new(bootstrap: &str) -> Nudge {
        Nudge {
            brokers: bootstrap
                .split(',')
                .filter_map(|a| a.parse().ok())
                .collect(),
            slowest: std::cell::Cell::new(Duration::ZERO),
        }
    }

    fn run<T>(&self, command: impl FnOnce() -> T) -> T {
        let done = std::sync::atomic::AtomicBool::new(false);
        let began = Instant::now();
        let brokers = &self.brokers;
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(2));
                    for a in brokers {
                        // A broker that is down refuses at once; one that is up accepts.
                        let _ = std::net::TcpStream::connect_timeout(a, Duration::from_millis(50));
                    }
                }
            });
            let out = command();
            done.store(true, std::sync::atomic::Ordering::Release);
            out
        });
        self.slowest.set(self.slowest.get().max(began.elapsed()));
        out
    }
}

/// Every broker up, no added round-trip time, no queued errors.
fn undo_all(cluster: &Cluster, brokers: i32) {
    for b in 1..=brokers {
        let _ = cluster.broker_up(b);
        let _ = cluster.broker_round_trip_time(b, Duration::ZERO);
    }
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
}

/// A fault as it was applied: when (seconds after the client's start) and which.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Applied {
    pub(crate) at_s: f64,
    #[serde(flatten)]
    pub(crate) fault: Fault,
}

/// What the worker's stdout said.
enum WorkerLine {
    Ready,
    Progress(u64),
    Result(Box<ClientReport>),
    Closed,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let scenarios = validate(args)?;
    let seeds = if args.seeds.is_empty() {
        vec![args.seed]
    } else {
        args.seeds.clone()
    };
    let exe = std::env::current_exe()?;
    let mut plan: Vec<(&Scenario, u64, Api)> = Vec::new();
    for s in &scenarios {
        for seed in &seeds {
            for c in &args.clients {
                plan.push((s, *seed, *c));
            }
        }
    }
    let pb = indicatif::ProgressBar::new(args.records * plan.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {human_pos}/{human_len} records {msg}",
        )?
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let mut runs = Vec::new();
    for (i, (scenario, seed, api)) in plan.iter().enumerate() {
        let before = args.records * i as u64;
        pb.set_position(before);
        pb.set_message(format!(
            "{} faults={} seed={seed}",
            api.flag(),
            scenario.name
        ));
        let run = run_one(args, &exe, scenario, *seed, *api, &|n| {
            pb.set_position(before + n.min(args.records))
        })?;
        runs.push(run);
    }
    pb.finish_and_clear();
    let settings = chaos_report::Settings::of(args);
    let medians = chaos_report::medians(&runs);
    print_report(&settings, &runs, &medians);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "settings": settings,
            "scenarios": scenarios,
            "seeds": seeds,
            "runs": runs,
            "medians": medians,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("\nJSON written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        chaos_report::draw(path, &args.font, &settings, &runs).map_err(|e| format!("plot: {e}"))?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

fn validate(args: &Args) -> Result<Vec<Scenario>> {
    if args.modes.len() != 1 {
        return Err("--modes chaos runs alone (not with max or rate)".into());
    }
    if args.security != crate::security::Security::Plaintext {
        return Err(
            "the chaos mode runs on the mock cluster, which speaks PLAINTEXT only: \
                    drop --security"
                .into(),
        );
    }
    if args.bootstrap_servers.is_some() || args.broker != crate::BrokerKind::Mock {
        return Err(
            "the chaos mode injects faults into the mock cluster it starts itself: \
                    drop --bootstrap-servers and --broker"
                .into(),
        );
    }
    for c in &args.clients {
        if !matches!(c, Api::HeraldDoSend | Api::RdkafkaBase) {
            return Err(format!(
                "--clients {}: the chaos mode runs herald-do-send and rdkafka-base",
                c.flag()
            )
            .into());
        }
    }
    if args.records == 0 || args.records > 9_999_999_999 {
        return Err("--records: 1 to 9,999,999,999 in chaos mode".into());
    }
    if !(args.fault_window_s.is_finite() && args.fault_window_s >= 0.0) {
        return Err("--fault-window-s: 0 (faults to the end) or a number of seconds".into());
    }
    if args.brokers < 2
        || args.partitions < 1
        || args.fault_interval_ms == 0
        || args.down_ticks == 0
    {
        return Err(
            "chaos needs --brokers 2 or more, --partitions 1 or more and a \
                    --fault-interval-ms and --down-ticks above 0"
                .into(),
        );
    }
    args.faults.iter().map(|f| Scenario::parse(f)).collect()
}

fn run_one(
    args: &Args,
    exe: &std::path::Path,
    scenario: &Scenario,
    seed: u64,
    api: Api,
    progress: &dyn Fn(u64),
) -> Result<ChaosRun> {
    let cluster: Cluster = MockCluster::new(args.brokers)?;
    let topic = format!("herald-chaos-{}-{seed}-{}", scenario.name, api.flag()).replace('+', "-");
    cluster.create_topic(&topic, args.partitions, args.brokers.min(3))?;
    let bootstrap = cluster.bootstrap_servers();
    let nudge = Nudge::new(&bootstrap);
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .args([
            "--worker",
            api.flag(),
            "--worker-chaos-seed",
            &seed.to_string(),
        ])
        .args(["--worker-bootstrap", &bootstrap, "--worker-topic", &topic])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("worker stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let msg = if line == "ready" {
                WorkerLine::Ready
            } else if let Some(n) = line.strip_prefix("progress ") {
                WorkerLine::Progress(n.parse().unwrap_or(0))
            } else if let Some(json) = line.strip_prefix("result ") {
                match serde_json::from_str::<ClientReport>(json) {
                    Ok(r) => WorkerLine::Result(Box::new(r)),
                    Err(e) => {
                        eprintln!("bench: unreadable chaos result: {e}");
                        WorkerLine::Closed
                    }
                }
            } else {
                continue;
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
        let _ = tx.send(WorkerLine::Closed);
    });

    // Until the worker has its producer: no faults yet.
    let started = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(WorkerLine::Ready) => break Instant::now(),
            Ok(WorkerLine::Progress(_)) => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("chaos worker {} did not start", api.flag()).into());
            }
        }
    };
    let interval = Duration::from_millis(args.fault_interval_ms);
    // The worker stops itself at the cap; this is the backstop if it cannot.
    let backstop = started + Duration::from_secs(args.cap_s + 30);
    let mut schedule = Schedule::new(
        seed,
        &scenario.kinds,
        args.brokers,
        args.partitions,
        args.down_ticks,
    );
    let mut applied = Vec::new();
    let mut tick = 1u64;
    let mut report = None;
    // The end of the fault window: from then on every fault is undone and none comes.
    let window_end =
        (args.fault_window_s > 0.0).then(|| started + Duration::from_secs_f64(args.fault_window_s));
    let mut faulting = true;
    let mut undone_at = None;
    loop {
        let mut next_at = started + interval * tick as u32;
        // The window closes between two ticks: undo everything at its end, not at the tick
        // before, so that a window of 10.1 s brings brokers back at 10.1 s. A tick at the
        // end itself is outside the window (it would be undone a few milliseconds later).
        let closing = match window_end {
            Some(end) if faulting && next_at >= end => {
                next_at = end;
                true
            }
            _ => false,
        };
        if !faulting {
            next_at = backstop;
        }
        match rx.recv_timeout(next_at.saturating_duration_since(Instant::now())) {
            Ok(WorkerLine::Progress(n)) => progress(n),
            Ok(WorkerLine::Result(r)) => {
                report = Some(*r);
                break;
            }
            Ok(WorkerLine::Ready) => {}
            Ok(WorkerLine::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= backstop {
                    eprintln!("bench: chaos worker {} ignored its cap; killed", api.flag());
                    let _ = child.kill();
                    break;
                }
                if closing {
                    nudge.run(|| undo_all(&cluster, args.brokers));
                    undone_at = Some(started.elapsed().as_secs_f64());
                    faulting = false;
                    continue;
                }
                let step = schedule.step(tick);
                nudge.run(|| apply(&cluster, &topic, &step))?;
                if let Some(fault) = step.fault {
                    applied.push(Applied {
                        at_s: next_at.duration_since(started).as_secs_f64(),
                        fault,
                    });
                }
                tick += 1;
            }
        }
    }
    nudge.run(|| undo_all(&cluster, args.brokers));
    let status = child.wait()?;
    let _ = reader.join();
    let report = match report {
        Some(r) => r,
        None => {
            return Err(format!(
                "chaos worker {} (seed {seed}, faults {}) gave no result: {status}",
                api.flag(),
                scenario.name
            )
            .into())
        }
    };
    let log = read_log(&bootstrap, &topic, args.partitions)?;
    let check = LogCheck::of(&log, args.records, &report);
    drop(cluster);
    let slowest_command_ms = nudge.slowest.get().as_secs_f64() * 1e3;
    Ok(ChaosRun::new(
        scenario,
        seed,
        report,
        check,
        applied,
        undone_at,
        slowest_command_ms,
    ))
}

/// Every record in `topic`, per partition in offset order, as the index its value starts with.
pub(crate) fn read_log(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<Vec<u64>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "herald-chaos-read-back")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("log_level", "3")
        .create()?;
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        ends.push(hi);
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))?;
    }
    consumer.assign(&tpl)?;
    let mut log: Vec<Vec<u64>> = vec![Vec::new(); partitions as usize];
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |next: &BTreeMap<i32, i64>| {
        (0..partitions).all(|p| next.get(&p).copied().unwrap_or(0) >= ends[p as usize])
    };
    while !done(&next) {
        if Instant::now() > deadline {
            return Err(format!("read-back of {topic} did not reach the end of the log").into());
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        let index = m
            .payload()
            .and_then(|v| v.get(..10))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| format!("a record without an index at offset {}", m.offset()))?;
        log[m.partition() as usize].push(index);
        next.insert(m.partition(), m.offset() + 1);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_replays_from_its_seed() {
        let run = |seed| {
            let mut s = Schedule::new(seed, &FaultKind::ALL, 3, 6, 4);
            (1..200).map(|t| s.step(t)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn one_broker_down_at_a_time_for_four_ticks() {
        let mut s = Schedule::new(3, &[FaultKind::Down], 3, 6, 4);
        let steps: Vec<Step> = (1..=10).map(|t| s.step(t)).collect();
        assert!(matches!(steps[0].fault, Some(Fault::BrokerDown { .. })));
        assert!(steps[1..4].iter().all(|s| *s == Step::default()));
        assert!(steps[4].broker_up.is_some() && steps[4].fault.is_some());
    }

    #[test]
    fn scenarios_parse() {
        assert_eq!(Scenario::parse("all").unwrap().kinds, FaultKind::ALL);
        assert_eq!(
            Scenario::parse("latency,down").unwrap().name,
            "down+latency"
        );
        assert!(Scenario::parse("none").unwrap().kinds.is_empty());
        assert!(Scenario::parse("flood").is_err());
    }
}
