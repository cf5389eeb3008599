//! Pacing: when records are due (all at once in `max` mode, `--rate` per second in `rate`
//! mode), and a timer thread that wakes async sending loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When records are due: all at once (max) or `rate` per second from `start`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    start: Instant,
    rate: Option<f64>,
    pub(crate) n: u64,
}

impl Pacer {
    pub(crate) fn new(rate: Option<f64>, n: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            n,
        }
    }

    /// Records `0..due` may be sent now.
    pub(crate) fn due(&self) -> u64 {
        match self.rate {
            None => self.n,
            Some(r) => ((self.start.elapsed().as_secs_f64() * r) as u64 + 1).min(self.n),
        }
    }

    /// When record `next` is due, but at least 1 ms from now: the timer's tick, so both
    /// clients send the same bursts (tokio's timer has 1 ms resolution anyway).
    pub(crate) fn wake_at(&self, next: u64) -> Instant {
        let at = match self.rate {
            None => self.start,
            Some(r) => self.start + Duration::from_secs_f64(next as f64 / r),
        };
        at.max(Instant::now() + Duration::from_millis(1))
    }
}

/// Wakes an async sending loop every millisecond of the `rate` mode. tokio's timer fires up to
/// about 2 ms late on a runtime with little else to do (millisecond ticks, and the poller
/// rounds its wait up again), and how late depended on how often the client under test woke
/// that runtime: the offered bursts came every 1.1 ms for one client and every 2.3 ms for
/// another. A thread that sleeps with the kernel's resolution paces every client alike (the
/// BaseProducer loop sleeps the same way on its own thread).
pub(crate) struct Ticker {
    notify: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Ticks while the pacer has a rate; none for full speed.
    pub(crate) fn start(pacer: &Pacer) -> Option<Ticker> {
        pacer.rate?;
        let notify = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (n, st) = (notify.clone(), stop.clone());
        let start = pacer.start;
        let thread = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                let mut k = 1u32;
                while !st.load(Ordering::Relaxed) {
                    let at = start + Duration::from_millis(1) * k;
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    n.notify_one();
                    k += 1;
                }
            })
            .expect("pacer thread");
        Some(Ticker {
            notify,
            stop,
            thread: Some(thread),
        })
    }

    /// The next tick (at once if one passed since the last call); never, without a ticker.
    pub(crate) async fn tick(ticker: &Option<Ticker>) {
        match ticker {
            Some(t) => t.notify.notified().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
