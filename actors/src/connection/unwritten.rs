//! When the frames handed to a socket's writer task were queued, until the writer says it
//! wrote them. A request awaiting a response is timed by the in-flight queue, but an acks=0
//! Produce request awaits none: without this, a broker that stops reading leaves the writer
//! blocked and its frames queued until delivery.timeout.ms. Java keeps such a send among its
//! in-flight requests until the send completes, so request.timeout.ms applies to it; here the
//! connection is dropped when the oldest unwritten frame is older than that. The writer counts
//! frames written in an atomic; nothing is sent per frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The frames of one socket not known to be written yet, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    /// When each frame not yet seen written was queued.
    queued_at: VecDeque<Instant>,
    /// Frames queued before the front of `queued_at` (all written).
    retired: u64,
    /// Frames the writer has written, counted by the writer.
    written: Arc<AtomicU64>,
}

impl Unwritten {
    /// The counter the writer task of this socket bumps after each frame it wrote.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// A frame was handed to the writer at `at`.
    pub(crate) fn queued(&mut self, at: Instant) {
        self.queued_at.push_back(at);
    }

    /// Whether the oldest frame not yet written was queued more than `timeout` before `now`.
    pub(crate) fn timed_out(&mut self, timeout: Duration, now: Instant) -> bool {
        let written = self.written.load(Ordering::Acquire);
        while self.retired < written && self.queued_at.pop_front().is_some() {
            self.retired += 1;
        }
        self.queued_at
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_frame_still_unwritten_times_out() {
        let mut u = Unwritten::default();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        assert!(
            !u.timed_out(timeout, t0 + Duration::from_secs(10)),
            "none queued"
        );
        u.queued(t0);
        u.queued(t0 + Duration::from_millis(500));
        assert!(!u.timed_out(timeout, t0 + Duration::from_millis(900)));
        assert!(u.timed_out(timeout, t0 + Duration::from_millis(1100)));
        // The first frame written: the second, younger one is now the oldest.
        u.counter().fetch_add(1, Ordering::Release);
        assert!(!u.timed_out(timeout, t0 + Duration::from_millis(1100)));
        assert!(u.timed_out(timeout, t0 + Duration::from_millis(1600)));
        u.counter().fetch_add(1, Ordering::Release);
        assert!(!u.timed_out(timeout, t0 + Duration::from_secs(10)));
        // Frames queued later count from where the written ones left off.
        u.queued(t0 + Duration::from_secs(10));
        assert!(u.timed_out(timeout, t0 + Duration::from_secs(12)));
    }
}
