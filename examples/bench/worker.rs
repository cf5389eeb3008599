//! The worker: one client, one mode, one process. It measures the run and prints
//! `progress N` lines and one `result {json}` line for the orchestrator.

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::measure::{page_size, rss_bytes, vm_hwm_bytes, Metered, Sampler, Stats};
use crate::payload::payload_template;
use crate::security::ClientSecurity;
use crate::{
    herald_client, java_client, rdkafka_client, Api, Args, Mode, Result, RunResult, Settings,
};

/// What one run needs to know.
pub(crate) struct RunCtx<'a> {
    pub(crate) args: &'a Args,
    pub(crate) bootstrap: &'a str,
    pub(crate) topic: &'static str,
    pub(crate) payload: &'a Payload,
    pub(crate) rate: Option<f64>,
    pub(crate) progress: Arc<AtomicU64>,
    /// `--security` in each client's dialect.
    pub(crate) security: &'a ClientSecurity,
}

/// What a client run hands back.
pub(crate) struct Measured {
    pub(crate) metered: Metered,
    pub(crate) stats: Stats,
    pub(crate) client_metrics: Option<serde_json::Value>,
}

/// The broker and topic a worker process was given by the orchestrator. The topic is leaked:
/// it lives as long as the worker, and `Produce` takes it as `&'static str` without a copy.
pub(crate) fn target(args: &Args) -> Result<(String, &'static str)> {
    let bootstrap = args
        .worker_bootstrap
        .clone()
        .ok_or("--worker needs --worker-bootstrap")?;
    let topic: &'static str = Box::leak(
        args.worker_topic
            .clone()
            .ok_or("--worker needs --worker-topic")?
            .into_boxed_str(),
    );
    Ok((bootstrap, topic))
}

pub(crate) fn main(args: &Args, api: Api) -> Result<()> {
    let (bootstrap, topic) = target(args)?;
    let security = ClientSecurity::of(args)?;
    if api == Api::Java {
        let result = java_client::run(args, &bootstrap, topic, &security)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "result {}", serde_json::to_string(&result)?)?;
        out.flush()?;
        return Ok(());
    }
    let payload = Payload::new(args.record_size, args.key_size);
    let progress = Arc::new(AtomicU64::new(0));
    let baseline = rss_bytes(page_size());
    let sampler = Sampler::start(progress.clone());
    let mode = args.worker_mode;
    let rate = match mode {
        Mode::Max | Mode::Chaos | Mode::Console => None,
        Mode::Rate => Some(args.rate as f64),
    };
    let ctx = RunCtx {
        args,
        bootstrap: &bootstrap,
        topic,
        payload: &payload,
        rate,
        progress,
        security: &security,
    };
    let measured = match api {
        Api::HeraldSend
        | Api::HeraldProducerSend
        | Api::HeraldDoSend
        | Api::HeraldRouterDoSend
        | Api::HeraldReplyTo
        | Api::HeraldBatch
        | Api::HeraldBatchTally => herald_client::run(&ctx, api)?,
        Api::RdkafkaFuture => rdkafka_client::run_future(&ctx)?,
        Api::RdkafkaBase => rdkafka_client::run_base(&ctx)?,
        Api::Java => unreachable!("the java client returned above"),
    };
    let peak = sampler.stop();
    let acks0 = args.acks == "0";
    // Transactions leave a commit marker's offset between transactions: the offsets of a
    // partition are no longer one gap-free range, so only the count is checked.
    // A tally carries no offsets: its records are counted in the log instead, which only a
    // fresh topic (no `--topic`) allows.
    let tally = api == Api::HeraldBatchTally;
    let unverifiable = acks0 || args.txn_records > 0 || (tally && args.topic.is_some());
    let mut offsets_verified = measured.stats.verify(args.records, unverifiable)?;
    let mut partitions_written = measured.stats.partitions.iter().flatten().count();
    if tally && !unverifiable {
        // The run's topic must hold exactly the run's records and the warm-up's: its
        // partitions' end offsets (from 0; librdkafka's mock cluster drops old segments, so
        // the low watermarks can have moved).
        let (_, marks) = java_client::watermarks(&bootstrap, topic, args.partitions, &security)?;
        let in_log: u64 = marks.iter().map(|&(_, hi)| hi as u64).sum();
        partitions_written = marks.iter().filter(|&&(_, hi)| hi > 0).count();
        let expected = args.records + args.warmup;
        if in_log != expected {
            return Err(format!("{in_log} records in the log, {expected} sent").into());
        }
        offsets_verified = true;
    }
    if args.worker_owned_broker && !unverifiable && !offsets_verified {
        return Err("offsets could not be verified".into());
    }
    let m = measured.metered;
    let secs = m.elapsed.as_secs_f64();
    let n = args.records;
    let result = RunResult {
        client: api.client().into(),
        api: api.api().into(),
        mode,
        offered_rate: rate.map(|r| r as u64),
        records: n,
        elapsed_s: secs,
        records_per_sec: n as f64 / secs,
        mb_per_sec: (n as f64 * payload.bytes_per_record() as f64) / secs / 1e6,
        cpu_s: m.cpu_s,
        cpu_user_s: m.user_s,
        cpu_sys_s: m.sys_s,
        cpu_ns_per_record: m.cpu_s * 1e9 / n as f64,
        cpu_cores: m.cpu_s / secs,
        peak_rss_bytes: peak.saturating_sub(baseline),
        // Only at full speed is the window full; paced, far fewer records are outstanding.
        outstanding: match (api, mode) {
            (Api::RdkafkaBase | Api::Java, _) | (_, Mode::Rate) => None,
            _ => Some(args.window as u64),
        },
        baseline_rss_bytes: baseline,
        vm_hwm_bytes: vm_hwm_bytes(),
        latency_ms: measured.stats.latency(),
        partitions_written,
        offsets_verified,
        client_metrics: measured.client_metrics,
        settings: Settings::of(args),
        round: 0,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "result {}", serde_json::to_string(&result)?)?;
    out.flush()?;
    Ok(())
}

/// Key and value bytes of record `i`: values are windows into a text-like buffer (so
/// compression has something realistic to do), keys are `i`'s little-endian bytes repeated.
pub(crate) struct Payload {
    template: Vec<u8>,
    record_size: usize,
    key_size: usize,
}

impl Payload {
    fn new(record_size: usize, key_size: usize) -> Payload {
        Payload {
            template: payload_template(256 * 1024 + record_size + 1),
            record_size,
            key_size,
        }
    }

    pub(crate) fn value(&self, i: u64) -> &[u8] {
        let span = self.template.len() - self.record_size;
        let off = (i as usize).wrapping_mul(7919) % span;
        &self.template[off..off + self.record_size]
    }

    /// Writes the key of record `i` into `buf` (key_size long); `None` without keys.
    pub(crate) fn key<'a>(&self, i: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.key_size == 0 {
            return None;
        }
        let b = i.to_le_bytes();
        for (j, k) in buf[..self.key_size].iter_mut().enumerate() {
            *k = b[j % 8];
        }
        Some(&buf[..self.key_size])
    }

    fn bytes_per_record(&self) -> usize {
        self.record_size + self.key_size
    }
}
