//! Linger deadlines kept to a fraction of a millisecond.
//!
//! tokio's timer has millisecond ticks and fires at the first tick after a deadline, and its
//! poller rounds the wait up to a whole millisecond again; on an arbiter with little else to do
//! a 5 ms linger lasted 6 to 7 ms, which put p99 latency at a fixed rate 25% above
//! librdkafka's (its broker threads wait on condition variables). One thread per producer
//! sleeps until the earliest deadline with the kernel's resolution and messages the
//! accumulator whose batch is due. Retry backoff and delivery timeouts stay on tokio's timer:
//! a millisecond there changes nothing a user sees.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use actix::prelude::*;

use crate::supervisor::{panic_message, ActorKind, Supervision};

/// Clock → accumulator: the linger deadline set with this generation has passed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct LingerDue {
    /// Generation of the [`Alarm`] when it was set.
    pub generation: u64,
}

/// The producer's deadline thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    /// Test-only: panic at the top of the next loop (`FaultInjection::crash_clock`).
    #[cfg(feature = "fault-injection")]
    panic_next: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    stop: bool,
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    seq: u64,
    alarm: Arc<AtomicU64>,
    /// The alarm's generation when set; a later `set` or `cancel` makes the entry stale.
    generation: u64,
    to: Recipient<LingerDue>,
}

impl Entry {
    fn stale(&self) -> bool {
        self.alarm.load(Ordering::Acquire) != self.generation
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Clock {
    /// Starts the thread. A panic on it (a bug here) runs the loop again on the same state
    /// (the heap is behind a mutex whose poisoning is ignored, so no deadline is lost), and
    /// counts as a panic and a restart of kind `clock` under the producer's restart limit;
    /// past the limit the producer is broken and the thread ends.
    pub fn start(supervision: Arc<Supervision>) -> std::io::Result<Clock> {
        let inner = Arc::new(Inner::default());
        let run = inner.clone();
        std::thread::Builder::new()
            .name("herald-linger".into())
            .spawn(move || {
                let recent = Mutex::new(VecDeque::new());
                while let Err(payload) = catch_unwind(AssertUnwindSafe(|| run.run())) {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(panic = %message, "the linger clock panicked; running it again");
                    if supervision
                        .task_panicked(ActorKind::Clock, &message, &recent)
                        .is_some()
                    {
                        return;
                    }
                }
            })?;
        Ok(Clock { inner })
    }

    /// Test-only: the thread panics at once (then runs again).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn crash(&self) {
        self.inner.panic_next.store(true, Ordering::Release);
        let _st = self.inner.lock();
        self.inner.wake.notify_one();
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.wake.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            #[cfg(feature = "fault-injection")]
            if self.panic_next.swap(false, Ordering::AcqRel) {
                panic!("fault injection: the linger clock panics");
            }
            // A batch that filled up before its linger ran out cancelled its entry: drop such
            // entries before sleeping, so the thread does not wake for them.
            while st.heap.peek().is_some_and(|e| e.0.stale()) {
                st.heap.pop();
            }
            let now = Instant::now();
            let Some(next) = st.heap.peek().map(|e| e.0.due) else {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            if next > now {
                st = self
                    .wake
                    .wait_timeout(st, next - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let mut due = Vec::new();
            while st.heap.peek().is_some_and(|e| e.0.due <= now) {
                due.extend(st.heap.pop().map(|e| e.0));
            }
            drop(st);
            for e in due.into_iter().filter(|e| !e.stale()) {
                e.to.do_send(LingerDue {
                    generation: e.generation,
                });
            }
            st = self.lock();
        }
    }
}

/// One accumulator's linger deadline: at most one live entry in the clock's heap.
#[derive(Debug, Default)]
pub struct Alarm {
    generation: Arc<AtomicU64>,
    armed: Option<Instant>,
}

impl Alarm {
    /// Wakes `to` with [`LingerDue`] at `due` (replacing an earlier deadline).
    pub fn set(&mut self, clock: &Clock, due: Instant, to: impl FnOnce() -> Recipient<LingerDue>) {
        if self.armed == Some(due) {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.armed = Some(due);
        let mut st = clock.inner.lock();
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Reverse(Entry {
            due,
            seq,
            alarm: self.generation.clone(),
            generation,
            to: to(),
        }));
        let earliest = st.heap.peek().is_some_and(|e| e.0.seq == seq);
        drop(st);
        if earliest {
            clock.inner.wake.notify_one();
        }
    }

    /// No wake-up any more (the batch went out early, or the actor stops).
    pub fn cancel(&mut self) {
        if self.armed.take().is_some() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A [`LingerDue`] arrived: true if it is the live deadline (the alarm is then unset).
    pub fn fired(&mut self, generation: u64) -> bool {
        if self.armed.is_some() && self.generation.load(Ordering::Acquire) == generation {
            self.armed = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Which generation fired, and when.
    type Fired = Arc<Mutex<Vec<(u64, Instant)>>>;

    /// Records every `LingerDue`.
    struct Sink(Fired);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<LingerDue> for Sink {
        type Result = ();
        fn handle(&mut self, m: LingerDue, _: &mut Context<Self>) {
            self.0.lock().unwrap().push((m.generation, Instant::now()));
        }
    }

    fn sink() -> (Fired, Recipient<LingerDue>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (seen.clone(), Sink(seen).start().recipient())
    }

    #[actix_rt::test]
    async fn fires_each_live_deadline_once_not_before_it_and_in_order() {
        let clock = Clock::start(Arc::default()).unwrap();
        let (seen, to) = sink();
        let t0 = Instant::now();
        let (mut late, mut early, mut cancelled, mut moved) = Default::default();
        let ms = Duration::from_millis;
        Alarm::set(&mut late, &clock, t0 + ms(60), || to.clone());
        Alarm::set(&mut early, &clock, t0 + ms(20), || to.clone());
        Alarm::set(&mut cancelled, &clock, t0 + ms(10), || to.clone());
        Alarm::cancel(&mut cancelled);
        Alarm::set(&mut moved, &clock, t0 + ms(5), || to.clone());
        Alarm::set(&mut moved, &clock, t0 + ms(40), || to.clone());
        // Setting the same deadline again adds nothing.
        Alarm::set(&mut moved, &clock, t0 + ms(40), || to.clone());
        tokio::time::sleep(ms(200)).await;

        let fired = seen.lock().unwrap().clone();
        assert_eq!(fired.len(), 3, "one message per live deadline: {fired:?}");
        let gen = |a: &Alarm| a.generation.load(Ordering::Acquire);
        let order: Vec<u64> = fired.iter().map(|(g, _)| *g).collect();
        assert_eq!(order, vec![gen(&early), gen(&moved), gen(&late)]);
        for ((_, at), due) in fired.iter().zip([20, 40, 60]) {
            assert!(*at >= t0 + ms(due), "fired before its deadline");
        }
        assert!(early.fired(gen(&early)));
        assert!(!early.fired(gen(&early)), "a deadline fires once");
        assert!(
            !cancelled.fired(gen(&cancelled)),
            "a cancelled alarm is not armed"
        );
    }

    #[actix_rt::test]
    async fn stops_with_its_owner() {
        let clock = Clock::start(Arc::default()).unwrap();
        let inner = Arc::downgrade(&clock.inner);
        drop(clock);
        for _ in 0..100 {
            if inner.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the clock thread outlived its owner");
    }
}
