//! Exponential backoff with jitter, as Java's `ExponentialBackoff` (factor 2, jitter 20%).

use std::time::Duration;

/// Backoff state for one retried thing (a connection, a batch, a metadata fetch).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    /// Starts at `base`, doubles up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempts: 0,
        }
    }

    /// The wait before the next attempt; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay(self.base, self.max, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        d
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// The wait before attempt `attempts + 1`: `base * 2^attempts`, capped at `max`, ±20%.
pub fn delay(base: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX));
    let capped = exp.min(max.max(base));
    let jitter = 0.8 + fastrand::f64() * 0.4;
    capped.mul_f64(jitter).min(max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        // Doubling from 100 ms, each within 20% of its step, then held at 1 s (a step of
        // 1,600 ms and more, cut to the cap after the jitter: 800 ms to 1 s).
        for (attempt, (low, high)) in [(80, 120), (160, 240), (320, 480), (640, 960)]
            .into_iter()
            .chain(std::iter::repeat_n((800, 1000), 20))
            .enumerate()
        {
            let d = b.next_delay();
            assert!(
                d >= ms(low) && d <= ms(high),
                "attempt {attempt}: {d:?} outside {low}..={high} ms"
            );
        }
        b.reset();
        let d = b.next_delay();
        assert!(d >= ms(80) && d <= ms(120), "after a reset: {d:?}");
    }
}
