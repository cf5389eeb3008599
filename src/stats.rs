//! Windowed statistics with the Java client's semantics (`org.apache.kafka.common.metrics.stats.
//! SampledStat`, `Rate`, `Avg`, `Max`), so that Herald's `-rate`, `-avg` and `-max` metrics
//! mean what a Java producer's dashboard expects: values over the last
//! `metrics.num.samples` windows of `metrics.sample.window.ms` each, not over the producer's
//! lifetime.
//!
//! One [`SampledWindow`] keeps, per sample, the event count, the sum and the maximum of the
//! values recorded. Java keeps a separate `SampledStat` per statistic of a sensor, but every
//! statistic of one sensor is recorded at the same instants, so their samples start and
//! expire together: one set of samples answers all of them.
//!
//! Time is a caller's millisecond count (`now_ms`), so that tests drive it and the producer
//! reads its clock once per event rather than once per statistic.

use std::time::Duration;

/// One sample window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When the window started (Java's `lastWindowMs`).
    start_ms: u64,
    count: u64,
    sum: f64,
    max: f64,
}

impl Sample {
    fn new(now_ms: u64) -> Sample {
        Sample {
            start_ms: now_ms,
            count: 0,
            sum: 0.0,
            max: f64::NEG_INFINITY,
        }
    }
}

/// Samples of one sensor: `samples` windows of `window_ms` each, the oldest reused when a new
/// window starts.
#[derive(Debug, Clone)]
pub struct SampledWindow {
    window_ms: u64,
    samples_max: usize,
    /// Created on first use, as Java's `SampledStat` does; at most `samples_max`.
    samples: Vec<Sample>,
    current: usize,
}

impl SampledWindow {
    /// `samples` windows (`metrics.num.samples`) of `window` each (`metrics.sample.window.ms`).
    /// Both are at least 1 (ms, sample).
    pub fn new(window: Duration, samples: usize) -> SampledWindow {
        SampledWindow {
            window_ms: (window.as_millis() as u64).max(1),
            samples_max: samples.max(1),
            // Grown as windows start, not preallocated: `samples` may be any Java int.
            samples: Vec::new(),
            current: 0,
        }
    }

    /// The current sample, created at `now_ms` when there is none.
    fn current(&mut self, now_ms: u64) -> &mut Sample {
        if self.samples.is_empty() {
            self.samples.push(Sample::new(now_ms));
            self.current = 0;
        }
        &mut self.samples[self.current]
    }

    /// Records one event of `value` at `now_ms`. A new window starts (in the next sample,
    /// reset) once the current one is `window_ms` old.
    pub fn record(&mut self, value: f64, now_ms: u64) {
        let window_ms = self.window_ms;
        let complete = now_ms.saturating_sub(self.current(now_ms).start_ms) >= window_ms;
        if complete {
            self.current = (self.current + 1) % self.samples_max;
            if self.current >= self.samples.len() {
                self.samples.push(Sample::new(now_ms));
            } else {
                self.samples[self.current] = Sample::new(now_ms);
            }
        }
        let s = &mut self.samples[self.current];
        s.count += 1;
        s.sum += value;
        s.max = s.max.max(value);
    }

    /// Resets samples that started `samples * window_ms` or more before `now_ms` (Java's
    /// `purgeObsoleteSamples`): what they hold is outside every window now.
    fn purge(&mut self, now_ms: u64) {
        let expire = (self.samples_max as u64).saturating_mul(self.window_ms);
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.start_ms) >= expire {
                *s = Sample::new(now_ms);
            }
        }
    }

    /// The span the rates divide by, in milliseconds (Java's `Rate.windowSize`): from the start
    /// of the oldest live sample to `now_ms`, but never less than `samples - 1` full windows,
    /// so a burst right after start-up does not read as a huge rate.
    fn elapsed_ms(&mut self, now_ms: u64) -> u64 {
        self.purge(now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / self.window_ms;
        let min_full = self.samples_max as u64 - 1;
        if full < min_full {
            elapsed = elapsed.saturating_add((min_full - full).saturating_mul(self.window_ms));
        }
        elapsed.max(1)
    }

    /// The sum of the values recorded in the live windows, per second (Java's `Rate` over a
    /// `WindowedSum`: `record-send-rate`, `outgoing-byte-rate`).
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        let elapsed = self.elapsed_ms(now_ms);
        // A fold from +0.0: `Sum` for floats starts at -0.0, which exporters print as "-0".
        let sum = self.samples.iter().fold(0.0, |acc, s| acc + s.sum);
        sum * 1000.0 / elapsed as f64
    }

    /// Events recorded in the live windows, per second (Java's `Rate` over a `WindowedCount`:
    /// `request-rate`, `response-rate`).
    pub fn event_rate(&mut self, now_ms: u64) -> f64 {
        let elapsed = self.elapsed_ms(now_ms);
        let count: u64 = self.samples.iter().map(|s| s.count).sum();
        count as f64 * 1000.0 / elapsed as f64
    }

    /// The mean value of the events in the live windows; NaN without any (Java's `Avg`).
    pub fn avg(&mut self, now_ms: u64) -> f64 {
        self.purge(now_ms);
        let (sum, count) = self.samples.iter().fold((0.0, 0u64), |(sum, count), s| {
            (sum + s.sum, count + s.count)
        });
        if count == 0 {
            f64::NAN
        } else {
            sum / count as f64
        }
    }

    /// The largest value in the live windows; NaN without any event (Java's `Max`).
    pub fn max(&mut self, now_ms: u64) -> f64 {
        self.purge(now_ms);
        let live = self.samples.iter().filter(|s| s.count > 0);
        live.map(|s| s.max).fold(f64::NAN, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's defaults: two windows of 30 s.
    fn java_default() -> SampledWindow {
        SampledWindow::new(Duration::from_millis(30_000), 2)
    }

    #[test]
    fn nothing_recorded_reads_as_zero_rates_and_nan_averages() {
        let mut w = java_default();
        assert_eq!(w.rate(5_000), 0.0);
        assert!(w.rate(5_000).is_sign_positive(), "+0, not -0");
        assert_eq!(w.event_rate(5_000), 0.0);
        assert!(w.avg(5_000).is_nan());
        assert!(w.max(5_000).is_nan());
    }

    #[test]
    fn a_young_window_divides_by_at_least_samples_minus_one_windows() {
        let mut w = java_default();
        // 300 records in three events during the first second.
        for (t, n) in [(0, 100.0), (400, 100.0), (900, 100.0)] {
            w.record(n, t);
        }
        // Elapsed 1 s, but one full window (30 s) is the floor: 300 / 31 s.
        let rate = w.rate(1_000);
        assert!((rate - 300.0 / 31.0).abs() < 1e-9, "{rate}");
        assert!((w.event_rate(1_000) - 3.0 / 31.0).abs() < 1e-9);
        assert_eq!(w.avg(1_000), 100.0);
        assert_eq!(w.max(1_000), 100.0);
    }

    #[test]
    fn rates_cover_the_live_samples_only() {
        let mut w = java_default();
        w.record(600.0, 0); // sample 0 starts at 0
        w.record(60.0, 30_000); // sample 1 starts at 30 000
                                // At 45 s both samples are live: 660 over 45 s.
        assert!((w.rate(45_000) - 660.0 / 45.0).abs() < 1e-9);
        // A third window reuses sample 0: the 600 leaves the rate.
        w.record(30.0, 60_000);
        assert!(
            (w.rate(61_000) - 90.0 / 31.0).abs() < 1e-9,
            "{}",
            w.rate(61_000)
        );
        assert_eq!(w.avg(61_000), 45.0);
        assert_eq!(w.max(61_000), 60.0);
    }

    #[test]
    fn samples_older_than_every_window_are_purged() {
        let mut w = java_default();
        w.record(1_000.0, 0);
        w.record(7.0, 10_000);
        assert_eq!(w.max(59_999), 1_000.0);
        // 60 s after the sample started, it is outside both windows.
        assert!(w.max(60_000).is_nan());
        assert!(w.avg(60_000).is_nan());
        assert_eq!(w.rate(60_000), 0.0);
    }

    #[test]
    fn max_and_avg_follow_the_sliding_windows() {
        let mut w = SampledWindow::new(Duration::from_millis(1_000), 3);
        w.record(50.0, 0);
        w.record(10.0, 1_000);
        w.record(20.0, 2_000);
        assert_eq!(w.max(2_500), 50.0);
        assert!((w.avg(2_500) - 80.0 / 3.0).abs() < 1e-9);
        // At 3 s the first sample (started at 0) has aged three windows: gone.
        assert_eq!(w.max(3_000), 20.0);
        assert_eq!(w.avg(3_000), 15.0);
        // Three full windows of data: the rate divides by the elapsed span as it is.
        w.record(30.0, 3_000);
        assert!(
            (w.rate(3_500) - 60.0 / 2.5).abs() < 1e-9,
            "{}",
            w.rate(3_500)
        );
    }

    #[test]
    fn extreme_settings_neither_allocate_nor_overflow() {
        // metrics.num.samples and metrics.sample.window.ms at Java's maxima.
        let mut w = SampledWindow::new(Duration::from_millis(i64::MAX as u64), i32::MAX as usize);
        w.record(3.0, 10);
        assert_eq!(w.max(20), 3.0);
        assert!(w.rate(20) >= 0.0);
        assert_eq!(w.avg(u64::MAX), 3.0);
    }

    #[test]
    fn one_sample_counts_from_its_own_start() {
        let mut w = SampledWindow::new(Duration::from_millis(10_000), 1);
        w.record(10.0, 0);
        // No floor with one sample: 10 over the 4 s since it started.
        assert!((w.rate(4_000) - 2.5).abs() < 1e-9);
        w.record(5.0, 10_000);
        assert_eq!(w.rate(10_000), 5.0 * 1000.0);
        assert_eq!(w.max(12_000), 5.0);
    }
}
