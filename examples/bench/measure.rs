//! Measuring on the worker side: CPU time and RSS from `/proc`, the latency histogram, and
//! the check that every record got exactly one outcome at gap-free offsets.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{Latency, Result};

/// CPU time of this process so far.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// Sum of every live thread's time on CPU, ns.
    sched_ns: u64,
    /// utime and stime in clock ticks (dead threads included).
    user_ticks: u64,
    sys_ticks: u64,
}

fn cpu_now() -> Cpu {
    let (mut user_ticks, mut sys_ticks) = (0, 0);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields after the command: state(3) ... utime(14) stime(15).
            user_ticks = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            sys_ticks = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut sched_ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Cpu {
        sched_ns,
        user_ticks,
        sys_ticks,
    }
}

pub(crate) fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Wall and CPU time of the measured part of a run.
#[derive(Debug)]
pub(crate) struct Meter {
    start: Instant,
    cpu: Cpu,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Metered {
    pub(crate) elapsed: Duration,
    pub(crate) cpu_s: f64,
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
}

impl Meter {
    pub(crate) fn start() -> Meter {
        let cpu = cpu_now();
        Meter {
            start: Instant::now(),
            cpu,
        }
    }

    pub(crate) fn stop(self) -> Metered {
        let elapsed = self.start.elapsed();
        let end = cpu_now();
        let hz = clock_ticks_per_sec();
        let user_s = end.user_ticks.saturating_sub(self.cpu.user_ticks) as f64 / hz;
        let sys_s = end.sys_ticks.saturating_sub(self.cpu.sys_ticks) as f64 / hz;
        let sched_s = end.sched_ns.saturating_sub(self.cpu.sched_ns) as f64 / 1e9;
        // schedstat has ns resolution but misses threads that exited meanwhile; the tick
        // counts have 1/hz resolution and miss nothing.
        let cpu_s = if self.cpu.sched_ns == 0 || user_s + sys_s > sched_s + 3.0 / hz {
            user_s + sys_s
        } else {
            sched_s
        };
        Metered {
            elapsed,
            cpu_s,
            user_s,
            sys_s,
        }
    }
}

/// A `Name: N kB` field of a /proc file, in bytes.
fn proc_kb_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix(field))?;
    v.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

pub(crate) fn page_size() -> u64 {
    proc_kb_field("/proc/self/smaps", "KernelPageSize:").unwrap_or(4096)
}

pub(crate) fn rss_bytes(page: u64) -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

pub(crate) fn vm_hwm_bytes() -> u64 {
    proc_kb_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Samples RSS every 10 ms and reports progress every 100 ms on stdout.
pub(crate) struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(progress: Arc<AtomicU64>) -> Sampler {
        let page = page_size();
        let peak = Arc::new(AtomicU64::new(rss_bytes(page)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut tick = 0u64;
                let mut last = u64::MAX;
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(rss_bytes(page), Ordering::Relaxed);
                    tick += 1;
                    let done = progress.load(Ordering::Relaxed);
                    if tick % 10 == 0 && done != last {
                        last = done;
                        println!("progress {done}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn sampler thread");
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the peak RSS seen.
    pub(crate) fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak
            .load(Ordering::Relaxed)
            .max(rss_bytes(page_size()))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    min: i64,
    max: i64,
    count: u64,
}

/// Outcomes of the measured records: latency histogram (µs), counts, offsets per partition.
pub(crate) struct Stats {
    hist: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) partitions: Vec<Option<Span>>,
    /// Records acknowledged without their partition and offset.
    unplaced: u64,
    progress: Arc<AtomicU64>,
}

impl Stats {
    pub(crate) fn new(progress: Arc<AtomicU64>) -> Stats {
        Stats {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            ok: 0,
            partitions: Vec::new(),
            unplaced: 0,
            progress,
        }
    }

    /// One record acknowledged `latency` after it was enqueued.
    pub(crate) fn record(&mut self, latency: Duration, partition: i32, offset: i64) {
        self.hist
            .saturating_record((latency.as_micros() as u64).max(1));
        self.ok += 1;
        let p = partition.max(0) as usize;
        if p >= self.partitions.len() {
            self.partitions.resize(p + 1, None);
        }
        let span = self.partitions[p].get_or_insert(Span {
            min: i64::MAX,
            max: i64::MIN,
            count: 0,
        });
        span.min = span.min.min(offset);
        span.max = span.max.max(offset);
        span.count += 1;
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` records acknowledged together `latency` after they were enqueued, without their
    /// partitions and offsets (a `ProduceBatchTally` reply): [`verify`](Self::verify) cannot
    /// check their offsets, the caller checks the log instead.
    pub(crate) fn record_unplaced(&mut self, latency: Duration, n: u64) {
        self.hist
            .saturating_record_n((latency.as_micros() as u64).max(1), n);
        self.ok += n;
        self.unplaced += n;
        self.progress.fetch_add(n, Ordering::Relaxed);
    }

    /// Every record has exactly one successful outcome; with acks, each partition's offsets of
    /// this run form one gap-free range (nothing lost, nothing written twice). `false` when
    /// the offsets are not known here (acks=0, or records acknowledged without them).
    pub(crate) fn verify(&self, n: u64, acks0: bool) -> Result<bool> {
        if self.ok != n {
            return Err(format!("{} of {n} records acknowledged", self.ok).into());
        }
        if acks0 || self.unplaced > 0 {
            return Ok(false);
        }
        for (p, span) in self.partitions.iter().enumerate() {
            if let Some(s) = span {
                if s.min < 0 || (s.max - s.min + 1) as u64 != s.count {
                    return Err(format!(
                        "partition {p}: {} records acknowledged at offsets {}..={}: lost or duplicated records",
                        s.count, s.min, s.max
                    )
                    .into());
                }
            }
        }
        Ok(true)
    }

    pub(crate) fn latency(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(self.hist.value_at_quantile(0.50)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
            mean: self.hist.mean() / 1000.0,
        }
    }
}
