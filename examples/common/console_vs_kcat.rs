//! `console_producer` against `kcat -P`, whole process against whole process: both read the
//! same file of keyed lines on stdin and produce it with the same settings to a fresh
//! librdkafka mock cluster (`mock_broker`, a process of its own) per run. Shared by
//! `console_bench` (this comparison alone) and `bench` (its `console` mode, beside the API
//! comparisons).
//!
//! Both are run as
//! `-b BOOTSTRAP -t TOPIC -K : -X acks=all -X enable.idempotence=true -X linger.ms=5`
//! (kcat with `-P` in front), plus whatever `herald_x` / `kcat_x` add. Runs alternate between
//! the two, and which goes first swaps every round.
//!
//! CPU comes from `getrusage(RUSAGE_CHILDREN)` (user and system time of reaped children, to
//! the microsecond) read around each producer's wait: the broker is reaped only after the
//! producer, so it is not counted. `/proc/self/stat`'s `cutime` and `cstime` counted 10 ms
//! ticks, too coarse for a short run: a 3,000-line Herald run read as 0 s.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mock_broker_process::MockBrokerProcess;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The topic both producers write.
const TOPIC: &str = "console-bench";

/// The settings both producers get.
const COMMON: [&str; 8] = [
    "-K",
    ":",
    "-X",
    "acks=all",
    "-X",
    "enable.idempotence=true",
    "-X",
    "linger.ms=5",
];

/// What to run, and on what.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Lines to produce.
    pub records: u64,
    /// Bytes per line, key and separator included, newline excluded.
    pub line_size: usize,
    /// Brokers of the mock cluster.
    pub brokers: i32,
    /// Partitions of the topic.
    pub partitions: i32,
    /// The kcat binary.
    pub kcat: String,
    /// Extra `-X key=value` for console_producer only.
    pub herald_x: Vec<String>,
    /// Extra `-X key=value` for kcat only.
    pub kcat_x: Vec<String>,
    /// The console_producer binary.
    pub console_producer: PathBuf,
    /// The mock_broker binary.
    pub mock_broker: PathBuf,
    /// The input file; generated unless it exists.
    pub input: PathBuf,
}

/// One of the two producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Kcat,
    Herald,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Kcat => "kcat",
            Client::Herald => "console_producer",
        }
    }
}

/// One producer run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub wall: Duration,
    pub cpu: Duration,
}

/// Medians of every round, per producer, and Herald's over kcat's.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rounds: usize,
    pub records: u64,
    pub line_size: usize,
    pub kcat_wall_s: f64,
    pub kcat_cpu_s: f64,
    pub herald_wall_s: f64,
    pub herald_cpu_s: f64,
    /// console_producer / kcat.
    pub wall_ratio: f64,
    /// console_producer / kcat.
    pub cpu_ratio: f64,
}

impl Setup {
    /// Both binaries beside `exe` (the running example), the input in the temp directory.
    pub fn beside(exe: &Path, records: u64, line_size: usize) -> Setup {
        Setup {
            records,
            line_size,
            brokers: 3,
            partitions: 6,
            kcat: "kcat".to_string(),
            herald_x: Vec::new(),
            kcat_x: Vec::new(),
            console_producer: exe.with_file_name("console_producer"),
            mock_broker: exe.with_file_name("mock_broker"),
            input: std::env::temp_dir()
                .join(format!("herald-console-bench-{records}x{line_size}.txt")),
        }
    }

    /// Checks that everything needed is there, and writes the input if it is missing.
    pub fn prepare(&self) -> Result<()> {
        for p in [&self.mock_broker, &self.console_producer] {
            if !p.exists() {
                return Err(format!(
                    "{} not found; build it with `cargo build --release --example \
                     console_producer --example mock_broker`",
                    p.display()
                )
                .into());
            }
        }
        let kcat = Command::new(&self.kcat)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !kcat.is_ok_and(|s| s.success()) {
            return Err(format!(
                "{} not found or not working (`apt-get install kcat` on Debian)",
                self.kcat
            )
            .into());
        }
        if !self.input.exists() {
            generate(&self.input, self.records, self.line_size)?;
        }
        Ok(())
    }

    /// `rounds` rounds of both producers; `each` sees every run as it ends.
    pub fn compare(
        &self,
        rounds: usize,
        mut each: impl FnMut(usize, Client, Run),
    ) -> Result<Summary> {
        let mut kcat = Vec::new();
        let mut herald = Vec::new();
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Client::Kcat, Client::Herald]
            } else {
                [Client::Herald, Client::Kcat]
            };
            for client in order {
                let r = self.run_once(client)?;
                each(round, client, r);
                match client {
                    Client::Kcat => kcat.push(r),
                    Client::Herald => herald.push(r),
                }
            }
        }
        let med = |runs: &[Run], f: fn(&Run) -> Duration| {
            median(runs.iter().map(f).collect()).as_secs_f64()
        };
        let (kcat_wall_s, kcat_cpu_s) = (med(&kcat, |r| r.wall), med(&kcat, |r| r.cpu));
        let (herald_wall_s, herald_cpu_s) = (med(&herald, |r| r.wall), med(&herald, |r| r.cpu));
        Ok(Summary {
            rounds,
            records: self.records,
            line_size: self.line_size,
            kcat_wall_s,
            kcat_cpu_s,
            herald_wall_s,
            herald_cpu_s,
            wall_ratio: herald_wall_s / kcat_wall_s,
            cpu_ratio: herald_cpu_s / kcat_cpu_s,
        })
    }

    /// A fresh mock cluster, one producer run on it, the cluster stopped.
    fn run_once(&self, client: Client) -> Result<Run> {
        let broker =
            MockBrokerProcess::start(&self.mock_broker, self.brokers, TOPIC, self.partitions)?;
        let mut cmd = match client {
            Client::Kcat => {
                let mut c = Command::new(&self.kcat);
                c.arg("-P");
                c
            }
            Client::Herald => Command::new(&self.console_producer),
        };
        cmd.args(["-b", &broker.bootstrap, "-t", TOPIC])
            .args(COMMON);
        let extra = match client {
            Client::Kcat => &self.kcat_x,
            Client::Herald => &self.herald_x,
        };
        for x in extra {
            cmd.args(["-X", x]);
        }
        cmd.stdin(std::fs::File::open(&self.input)?)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());

        let cpu_before = children_cpu()?;
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let output = child.wait_with_output()?;
        let wall = started.elapsed();
        let cpu = children_cpu()?.saturating_sub(cpu_before);
        drop(broker);

        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("{} failed ({}): {stderr}", client.name(), output.status).into());
        }
        if client == Client::Herald {
            let summary: serde_json::Value =
                serde_json::from_str(stderr.lines().last().unwrap_or_default())?;
            if summary["delivered"].as_u64() != Some(self.records) {
                return Err(
                    format!("console_producer did not deliver every line: {summary}").into(),
                );
            }
        } else if !stderr.trim().is_empty() {
            return Err(format!("kcat reported: {stderr}").into());
        }
        Ok(Run { wall, cpu })
    }
}

/// Writes `records` lines `key-N:vvv...` of `line_size` bytes each (newline excluded), under
/// another name first and renamed when complete: a run cut short leaves no partial input
/// that a later run would take as written.
fn generate(path: &Path, records: u64, line_size: usize) -> Result<()> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    write_lines(&partial, records, line_size)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

fn write_lines(path: &Path, records: u64, line_size: usize) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = Vec::with_capacity(line_size + 1);
    for i in 0..records {
        line.clear();
        write!(line, "key-{i}:")?;
        let value_len = line_size.saturating_sub(line.len());
        line.extend((0..value_len).map(|j| b'a' + ((i as usize + j) % 26) as u8));
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}

/// CPU time (user and system) of this process's reaped children so far.
fn children_cpu() -> Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let us = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(us(usage.user_time()) + us(usage.system_time()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
