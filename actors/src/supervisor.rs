//! Supervision that also survives panics.
//!
//! actix's `Supervisor` restarts an actor that stops, but a panic inside a handler unwinds
//! through the actor's future, and the task that runs it is dropped with the actor, its mailbox
//! and every record it held. Here the future is polled under `catch_unwind`: a panic restarts
//! the actor exactly as a stop does (`Supervised::restarting`, then `started`, with the actor's
//! struct and mailbox kept), so the records in its state carry on; the records the handler
//! held on its stack are dropped by the unwinding, and their [`Completion`]s come here
//! ([`orphaned`]) to be answered with the panic's message ([`ErrorKind::Panicked`]).
//! The restart runs the actor's code too (`restarting`), so it is guarded the same way: a
//! panic there is one more panic, and the restart is tried again, as a systematic bug (a
//! connection's `restarting` sends its next request, which panics again) must end at the
//! restart limit below, not in a dead task with a live-looking address.
//!
//! A restart storm is bounded: an actor that panics more than [`MAX_PANICS`] times within
//! [`PANIC_WINDOW`] (or the [`RestartLimit`] the application gave) is not restarted again.
//! The producer is then broken ([`Supervision::broken`]): the actor is dropped (each record
//! it held answered with [`ErrorKind::Broken`]), the router is told ([`ProducerBroken`]) and
//! fails what it holds, and every later record is refused with that error.
//!
//! [`Completion`]: crate::completion::Completion

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::dev::channel::channel;
use actix::dev::ContextFut;
use actix::prelude::*;
use actix::WeakRecipient;
use herald::ErrorKind;

use crate::completion::{collecting, Outcome};
use crate::messages::intercept::Acknowledged;
use crate::messages::ProducerBroken;

/// More panics than this within [`PANIC_WINDOW`] break the producer.
pub(crate) const MAX_PANICS: u32 = 10;
/// The window of [`MAX_PANICS`].
pub(crate) const PANIC_WINDOW: Duration = Duration::from_secs(30);

/// One actor's recent panics, for the restart limit. Its supervisor counts the actor's own
/// panics here, and an actor whose tasks run beside it (a connection's socket reader and
/// writer) counts theirs in the same window, so that one actor cannot panic up to twice the
/// limit, half in itself and half in its tasks.
pub(crate) type PanicWindow = Arc<Mutex<VecDeque<Instant>>>;

/// How many panics of one actor within how long break the producer (see
/// [`ProducerBuilder::restart_limit`](crate::ProducerBuilder::restart_limit)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartLimit {
    pub(crate) max_panics: u32,
    pub(crate) window: Duration,
}

impl Default for RestartLimit {
    fn default() -> Self {
        RestartLimit {
            max_panics: MAX_PANICS,
            window: PANIC_WINDOW,
        }
    }
}

/// The kinds of actor a producer runs, for restart counts (the `kind` label of
/// `herald_actor_restarts_total`) and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActorKind {
    Router,
    Metadata,
    Accumulator,
    Connection,
    Interceptors,
    Sealer,
    Transaction,
    /// Not an actor: the linger clock's thread (`clock.rs`), restarted the same way.
    Clock,
}

impl ActorKind {
    pub(crate) const ALL: [ActorKind; 8] = [
        ActorKind::Router,
        ActorKind::Metadata,
        ActorKind::Accumulator,
        ActorKind::Connection,
        ActorKind::Interceptors,
        ActorKind::Sealer,
        ActorKind::Transaction,
        ActorKind::Clock,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ActorKind::Router => "router",
            ActorKind::Metadata => "metadata",
            ActorKind::Accumulator => "accumulator",
            ActorKind::Connection => "connection",
            ActorKind::Interceptors => "interceptor",
            ActorKind::Sealer => "sealer",
            ActorKind::Transaction => "transaction",
            ActorKind::Clock => "clock",
        }
    }
}

/// A producer's supervision state, shared by the supervisors of all its actors.
#[derive(Debug, Default)]
pub(crate) struct Supervision {
    restarts: [AtomicU64; ActorKind::ALL.len()],
    panics: [AtomicU64; ActorKind::ALL.len()],
    broken: OnceLock<ErrorKind>,
    /// The router's mailbox for [`ProducerBroken`], set when the router starts.
    pub(crate) router: OnceLock<Recipient<ProducerBroken>>,
    /// The interceptor chain's mailbox, set when the router starts it: the records a
    /// supervisor answers that the interceptors' `on_send` saw are told to it. Weak: the
    /// chain holds this state, and it stops once the router and the accumulators let go of
    /// it.
    pub(crate) interceptors: OnceLock<WeakRecipient<Acknowledged>>,
    limit: RestartLimit,
}

impl Supervision {
    pub(crate) fn with_limit(limit: RestartLimit) -> Supervision {
        Supervision {
            limit,
            ..Supervision::default()
        }
    }

    /// Panics caught so far, per actor kind (each one a restart, until the limit).
    pub(crate) fn panics(&self, kind: ActorKind) -> u64 {
        self.panics[kind as usize].load(Ordering::Relaxed)
    }

    /// Restarts so far (after a stop or a panic) of actors of `kind`.
    pub(crate) fn restarts(&self, kind: ActorKind) -> u64 {
        self.restarts[kind as usize].load(Ordering::Relaxed)
    }

    /// Restarts so far (after a stop or a panic), in all actors.
    pub(crate) fn restarts_total(&self) -> u64 {
        self.restarts
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    fn restarted(&self, kind: ActorKind) {
        self.restarts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Panics caught so far in all actors.
    pub(crate) fn panics_total(&self) -> u64 {
        ActorKind::ALL.iter().map(|k| self.panics(*k)).sum()
    }

    /// Why the producer is broken, once an actor went past the restart limit.
    pub(crate) fn broken(&self) -> Option<&ErrorKind> {
        self.broken.get()
    }

    fn panicked(&self, kind: ActorKind) {
        self.panics[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a panic of `kind` in `recent` (its recent panics); past the restart limit,
    /// breaks the producer and returns why.
    fn panicked_within_limit(
        &self,
        kind: ActorKind,
        message: &Arc<str>,
        recent: &Mutex<VecDeque<Instant>>,
    ) -> Option<ErrorKind> {
        self.panicked(kind);
        let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
        let why = storm(&mut recent, kind, message, self.limit)?;
        drop(recent);
        self.break_down(why.clone());
        Some(why)
    }

    /// A panic in a task an actor of `kind` runs beside itself (a connection's socket reader
    /// or writer), or on the linger clock's thread, which no supervisor polls: counted as a
    /// panic and a restart of `kind` (what the task served is rebuilt), and bounded as the
    /// actors' own panics are, in `recent` (the actor's own window, for a task of an actor).
    /// Past the limit the producer is broken, and the error is returned.
    pub(crate) fn task_panicked(
        &self,
        kind: ActorKind,
        message: &Arc<str>,
        recent: &Mutex<VecDeque<Instant>>,
    ) -> Option<ErrorKind> {
        let broken = self.panicked_within_limit(kind, message, recent);
        if broken.is_none() {
            self.restarted(kind);
        }
        broken
    }

    /// Tells the interceptors the outcomes of records a supervisor answered. The chain's own
    /// drops are never among them (a record it holds has not been through `on_send` yet),
    /// so its panics do not come back to it.
    fn acknowledge(&self, outcomes: Vec<Outcome>) {
        if let Some(chain) = self.interceptors.get().and_then(WeakRecipient::upgrade) {
            chain.do_send(Acknowledged { outcomes });
        }
    }

    /// Runs `f`, answering the completions it drops with `why`.
    pub(crate) fn answer_dropped(&self, why: ErrorKind, f: impl FnOnce()) {
        collecting(f, |_| why, |seen| self.acknowledge(seen));
    }

    fn break_down(&self, why: ErrorKind) {
        if self.broken.set(why.clone()).is_ok() {
            tracing::error!(error = %why, "producer broken: failing its records");
            if let Some(r) = self.router.get() {
                r.do_send(ProducerBroken(why));
            }
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("(a panic without a message)")
    }
}

/// Runs an actor under supervision: restarts after a stop (as actix's `Supervisor`) and after
/// a panic, until a restart storm breaks the producer.
pub(crate) struct Supervisor<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    fut: Option<ContextFut<A, Context<A>>>,
    kind: ActorKind,
    state: Arc<Supervision>,
    recent: PanicWindow,
}

impl<A> Supervisor<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    ContextFut<A, Context<A>>: Unpin,
{
    /// Starts the actor on the current arbiter.
    pub(crate) fn start(
        kind: ActorKind,
        state: Arc<Supervision>,
        f: impl FnOnce(&mut Context<A>) -> A,
    ) -> Addr<A> {
        let ctx = Context::new();
        let addr = ctx.address();
        Self::run(ctx, kind, state, PanicWindow::default(), f);
        addr
    }

    /// Builds the actor in `ctx` and runs it under supervision on the current arbiter.
    fn run(
        mut ctx: Context<A>,
        kind: ActorKind,
        state: Arc<Supervision>,
        recent: PanicWindow,
        f: impl FnOnce(&mut Context<A>) -> A,
    ) {
        let act = f(&mut ctx);
        actix::spawn(Supervisor {
            fut: Some(ctx.into_future(act)),
            kind,
            state,
            recent,
        });
    }

    /// Starts the actor on another arbiter (thread), with actix's default mailbox capacity
    /// (as actix's own `Supervisor::start_in_arbiter`).
    pub(crate) fn start_in_arbiter(
        arbiter: &ArbiterHandle,
        kind: ActorKind,
        state: Arc<Supervision>,
        f: impl FnOnce(&mut Context<A>) -> A + Send + 'static,
    ) -> Addr<A> {
        Self::start_in_arbiter_with(arbiter, 16, kind, state, f)
    }

    /// As [`start_in_arbiter`](Self::start_in_arbiter), counting the actor's panics in
    /// `recent`, a window the actor shares with the tasks it runs beside itself (see
    /// [`PanicWindow`]).
    pub(crate) fn start_in_arbiter_counting(
        arbiter: &ArbiterHandle,
        kind: ActorKind,
        state: Arc<Supervision>,
        recent: PanicWindow,
        f: impl FnOnce(&mut Context<A>) -> A + Send + 'static,
    ) -> Addr<A> {
        Self::spawn_in(arbiter, 16, kind, state, recent, f)
    }

    /// Starts the actor on another arbiter with a mailbox of `capacity` messages. The
    /// capacity is the channel's from the start: set from inside `f`, it would apply only
    /// once the other thread got to it, after the address was handed out.
    pub(crate) fn start_in_arbiter_with(
        arbiter: &ArbiterHandle,
        capacity: usize,
        kind: ActorKind,
        state: Arc<Supervision>,
        f: impl FnOnce(&mut Context<A>) -> A + Send + 'static,
    ) -> Addr<A> {
        Self::spawn_in(arbiter, capacity, kind, state, PanicWindow::default(), f)
    }

    fn spawn_in(
        arbiter: &ArbiterHandle,
        capacity: usize,
        kind: ActorKind,
        state: Arc<Supervision>,
        recent: PanicWindow,
        f: impl FnOnce(&mut Context<A>) -> A + Send + 'static,
    ) -> Addr<A> {
        let (tx, rx) = channel(capacity);
        arbiter.spawn_fn(move || Self::run(Context::with_receiver(rx), kind, state, recent, f));
        Addr::new(tx)
    }
}

/// Counts a panic of `kind` in `recent`; past the limit, the error that breaks the producer.
fn storm(
    recent: &mut VecDeque<Instant>,
    kind: ActorKind,
    message: &Arc<str>,
    limit: RestartLimit,
) -> Option<ErrorKind> {
    let now = Instant::now();
    recent.push_back(now);
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) > limit.window)
    {
        recent.pop_front();
    }
    let panics = recent.len() as u32;
    (panics > limit.max_panics).then(|| ErrorKind::Broken {
        actor: kind.name(),
        panics,
        // Whole seconds, rounded up, as the error reports them.
        window_s: limit.window.as_millis().div_ceil(1000) as u64,
        message: message.clone(),
    })
}

impl<A> Supervisor<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    ContextFut<A, Context<A>>: Unpin,
{
    /// Runs `f` on the actor under `catch_unwind`, answering the completions it drops with
    /// the panic's message: a handler, `started` and the `restarting` hook all run the
    /// actor's code, and a panic in any of them must not unwind out of the task.
    fn guarded<R>(
        &mut self,
        f: impl FnOnce(&mut ContextFut<A, Context<A>>) -> R,
    ) -> Option<std::thread::Result<R>> {
        let fut = self.fut.as_mut()?;
        let place = self.kind.name();
        let state = &self.state;
        Some(collecting(
            || catch_unwind(AssertUnwindSafe(|| f(fut))),
            |r| match r {
                Err(payload) => ErrorKind::Panicked {
                    place,
                    message: panic_message(payload.as_ref()),
                },
                // Dropped without a panic: a bug; the record must still be answered.
                Ok(_) => ErrorKind::Panicked {
                    place,
                    message: Arc::from("record dropped without an outcome"),
                },
            },
            |seen| state.acknowledge(seen),
        ))
    }

    /// Counts a panic against the restart limit. Past it the actor is dropped here, so that
    /// the records it held are answered as broken, and `false` says the task is done.
    fn survive(&mut self, payload: &(dyn std::any::Any + Send), restarting: bool) -> bool {
        let message = panic_message(payload);
        let place = self.kind.name();
        if restarting {
            tracing::error!(actor = place, panic = %message, "actor panicked while restarting; restarting it again");
        } else {
            tracing::error!(actor = place, panic = %message, "actor panicked; restarting it");
        }
        match self
            .state
            .panicked_within_limit(self.kind, &message, &self.recent)
        {
            Some(why) => {
                let fut = self.fut.take();
                self.state.answer_dropped(why, || drop(fut));
                false
            }
            None => true,
        }
    }

    /// Restarts the actor; `false` once nobody can reach it or the producer broke. A panic
    /// in the restart (the actor's `restarting` hook) is one more panic, and the restart is
    /// tried again: a hook that always panics then ends at the restart limit, rather than
    /// unwinding out of the task and leaving an address whose messages are lost.
    fn restart(&mut self) -> bool {
        loop {
            match self.guarded(|fut| fut.restart()) {
                None | Some(Ok(false)) => return false,
                Some(Ok(true)) => {
                    self.state.restarted(self.kind);
                    return true;
                }
                Some(Err(payload)) => {
                    // It was a restart all the same (the actor's context was reset), so
                    // that each panic within the limit stays one restart.
                    self.state.restarted(self.kind);
                    if !self.survive(payload.as_ref(), true) {
                        return false;
                    }
                }
            }
        }
    }
}

impl<A> Future for Supervisor<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    ContextFut<A, Context<A>>: Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this.guarded(|fut| Pin::new(fut).poll(cx)) {
                None => return Poll::Ready(()),
                Some(Ok(Poll::Pending)) => return Poll::Pending,
                // Stopped: restart unless nobody can reach the actor any more (below), or
                // the producer is broken: its actors then stop for good (an accumulator the
                // router's drop aborted), and a restart would count as one.
                Some(Ok(Poll::Ready(()))) => {
                    if this.state.broken().is_some() {
                        return Poll::Ready(());
                    }
                }
                Some(Err(payload)) => {
                    if !this.survive(payload.as_ref(), false) {
                        return Poll::Ready(());
                    }
                }
            }
            if !this.restart() {
                return Poll::Ready(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::{slot, Completion, SlotReceiver};
    use futures_util::FutureExt;

    /// An actor whose `restarting` hook panics the first `hook_panics` times it runs, each
    /// time with a record on its stack (to be answered as orphaned).
    struct Fragile {
        hook_panics: u32,
        /// Taken by the hook, one per run, so that its panic drops one unanswered.
        on_restart: Vec<Completion>,
        /// Held in the actor's state: answered only if the actor is dropped.
        held: Vec<Completion>,
    }

    impl Actor for Fragile {
        type Context = Context<Self>;
    }

    impl Supervised for Fragile {
        fn restarting(&mut self, _: &mut Context<Self>) {
            let _on_stack = self.on_restart.pop();
            if self.hook_panics > 0 {
                self.hook_panics -= 1;
                panic!("restarting hook failed");
            }
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Crash;

    impl Handler<Crash> for Fragile {
        type Result = ();
        fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
            panic!("handler failed");
        }
    }

    #[derive(Message)]
    #[rtype(result = "usize")]
    struct Held;

    impl Handler<Held> for Fragile {
        type Result = usize;
        fn handle(&mut self, _: Held, _: &mut Context<Self>) -> usize {
            self.held.len()
        }
    }

    fn records(n: usize) -> (Vec<Completion>, Vec<SlotReceiver>) {
        (0..n)
            .map(|_| {
                let (tx, rx) = slot();
                (Completion::slot(tx), rx)
            })
            .unzip()
    }

    fn start(
        state: &Arc<Supervision>,
        hook_panics: u32,
        orphans: usize,
    ) -> (Addr<Fragile>, Vec<SlotReceiver>, SlotReceiver) {
        let (on_restart, orphaned) = records(orphans);
        let (held, mut held_rx) = records(1);
        let addr = Supervisor::start(ActorKind::Sealer, state.clone(), move |_| Fragile {
            hook_panics,
            on_restart,
            held,
        });
        (addr, orphaned, held_rx.pop().unwrap())
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// A hook that panics on every restart is a storm like any other: each of its panics
    /// counted, the producer broken past the limit, and the records the actor held and
    /// those its panics dropped answered, instead of the task dying with the actor's address.
    #[actix_rt::test]
    async fn a_restarting_hook_that_always_panics_breaks_the_producer_past_the_limit() {
        let limit = RestartLimit {
            max_panics: 3,
            window: Duration::from_secs(60),
        };
        let state = Arc::new(Supervision::with_limit(limit));
        let (addr, orphaned, held) = start(&state, u32::MAX, 10);
        addr.do_send(Crash);
        until("the producer is broken", || state.broken().is_some()).await;

        // The handler's panic, then one per restart until the fourth panic passed the limit.
        assert_eq!(state.panics(ActorKind::Sealer), 4);
        assert_eq!(state.restarts(ActorKind::Sealer), 3);
        let Some(ErrorKind::Broken {
            actor,
            panics,
            message,
            ..
        }) = state.broken()
        else {
            panic!("broken with {:?}", state.broken());
        };
        assert_eq!((*actor, *panics), ("sealer", 4));
        assert_eq!(&**message, "restarting hook failed");

        let held = held.now_or_never().expect("the held record is answered");
        assert!(
            matches!(held.unwrap_err().kind(), ErrorKind::Broken { .. }),
            "a held record is answered as broken"
        );
        // The hook ran three times, each run dropping one record with its panic; the rest
        // went with the actor.
        for (i, rx) in orphaned.into_iter().rev().enumerate() {
            let err = rx.now_or_never().expect("answered").unwrap_err();
            if i < 3 {
                assert!(
                    matches!(err.kind(), ErrorKind::Panicked { place: "sealer", message }
                        if &**message == "restarting hook failed"),
                    "a record the hook dropped is answered with its panic, not {:?}",
                    err.kind()
                );
            } else {
                assert!(
                    matches!(err.kind(), ErrorKind::Broken { .. }),
                    "{:?}",
                    err.kind()
                );
            }
        }
        // The supervisor's task ended with the actor.
        let err = addr.send(Held).await.expect_err("the actor is gone");
        assert!(matches!(err, MailboxError::Closed));
        assert_eq!(state.panics(ActorKind::Sealer), 4, "and no more restarts");
    }

    /// A hook that panics once is restarted again, and the actor serves its mailbox after.
    #[actix_rt::test]
    async fn a_restarting_hook_that_panics_once_is_restarted_and_serves_messages() {
        let state = Arc::new(Supervision::default());
        let (addr, orphaned, mut held) = start(&state, 1, 2);
        addr.do_send(Crash);
        let served = actix_rt::time::timeout(Duration::from_secs(5), addr.send(Held))
            .await
            .expect("served in time")
            .expect("the actor is alive");
        assert_eq!(served, 1, "its state was kept");
        // The handler's panic and the hook's, each followed by a restart.
        assert_eq!(state.panics(ActorKind::Sealer), 2);
        assert_eq!(state.restarts(ActorKind::Sealer), 2);
        assert!(state.broken().is_none());
        assert!(
            (&mut held).now_or_never().is_none(),
            "the held record waits"
        );

        // The panicking hook's drop, then the successful restart's: both answered.
        for rx in orphaned.into_iter().rev() {
            let err = rx.now_or_never().expect("answered").unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Panicked { .. }),
                "{:?}",
                err.kind()
            );
        }
    }
}
