//! Outcomes delivered with `reply_to`, collected by tag, and the checks tests make of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use herald_actors::{Delivered, MetricsSnapshot, Outcome, Producer};

/// The outcomes received so far, in arrival order, each with its tag and arrival time.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<Vec<(u64, Outcome, Instant)>>>);

/// The actor that `reply_to` points at: records every `Delivered` it gets.
struct Collector(Outcomes);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Delivered> for Collector {
    type Result = ();

    fn handle(&mut self, d: Delivered, _: &mut Context<Self>) {
        self.0
             .0
            .lock()
            .unwrap()
            .push((d.tag, d.outcome, Instant::now()));
    }
}

impl Outcomes {
    /// Starts a collector; returns what it collects and the recipient to pass to `reply_to`.
    pub fn start() -> (Outcomes, Recipient<Delivered>) {
        let outcomes = Outcomes::default();
        let inbox = Collector(outcomes.clone()).start().recipient();
        (outcomes, inbox)
    }

    /// How many outcomes arrived and were not drained yet.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The tags of the outcomes not drained yet, in arrival order.
    pub fn tags(&self) -> Vec<u64> {
        self.0.lock().unwrap().iter().map(|(t, _, _)| *t).collect()
    }

    /// Waits until `n` outcomes have arrived; false if `within` passes first.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Takes every outcome, grouped by tag, repeats kept: a second answer for a record shows.
    pub fn drain_by_tag(&self) -> BTreeMap<u64, Vec<Outcome>> {
        let mut out: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
        for (tag, o, _) in self.0.lock().unwrap().drain(..) {
            out.entry(tag).or_default().push(o);
        }
        out
    }

    /// Takes every outcome with its arrival time by tag; panics if a record was answered twice.
    pub fn drain_once(&self) -> BTreeMap<u64, (Outcome, Instant)> {
        let mut out = BTreeMap::new();
        for (tag, o, at) in self.0.lock().unwrap().drain(..) {
            assert!(
                out.insert(tag, (o, at)).is_none(),
                "record {tag} answered twice"
            );
        }
        out
    }
}

/// After the last expected outcome, how long tests keep counting for a second answer.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Waits `settle` (a late second answer would arrive meanwhile), takes the metrics, and checks
/// that closing the producer returns within 5 s.
pub async fn settle_and_close(producer: Producer, settle: Duration) -> MetricsSnapshot {
    tokio::time::sleep(settle).await;
    let metrics = producer.metrics().await;
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        producer.close(Duration::from_secs(2)),
    )
    .await;
    assert!(closed.is_ok(), "close returned");
    metrics
}

/// The one outcome of `tag`; panics unless there is exactly one (none: lost; two: answered twice).
pub fn one_outcome(outcomes: &BTreeMap<u64, Vec<Outcome>>, tag: u64) -> &Outcome {
    let got = outcomes.get(&tag).map(Vec::as_slice).unwrap_or_default();
    assert_eq!(
        got.len(),
        1,
        "record {tag} must have exactly one outcome, has {}: {got:?}",
        got.len()
    );
    &got[0]
}

/// No outcome carries a tag from `n` on: only records `0..n` were sent, so others are bogus.
pub fn assert_no_tags_from(outcomes: &BTreeMap<u64, Vec<Outcome>>, n: u64) {
    let unexpected: Vec<u64> = outcomes.keys().copied().filter(|t| *t >= n).collect();
    assert!(
        unexpected.is_empty(),
        "outcomes for unknown tags {unexpected:?}"
    );
}

/// Records `0..n`, and no others, have exactly one outcome each.
pub fn assert_one_outcome_each(outcomes: &BTreeMap<u64, Vec<Outcome>>, n: u64) {
    assert_no_tags_from(outcomes, n);
    for tag in 0..n {
        one_outcome(outcomes, tag);
    }
}
