//! Supervision that also survives panics.
//!
//! actix's `Supervisor` restarts an actor that stops, but a panic inside a handler unwinds
//! through the actor's future, and the task that runs it is dropped with the actor, its mailbox
//! and every record it held. Here the future is polled under `catch_unwind`: a panic restarts
//! the actor exactly as a stop does (`Supervised::restarting`, then `started`, with the actor's
//! struct and mailbox kept), so the records in its state carry on; the records the handler
//! held on its stack are dropped by the unwinding, and their [`Completion`]s come here
//! ([`orphaned`]) to be answered with the panic's message ([`ErrorKind::Panicked`]).
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

impl<A> Future for Supervisor<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    ContextFut<A, Context<A>>: Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let place = this.kind.name();
        loop {
            let Some(fut) = this.fut.as_mut() else {
                return Poll::Ready(());
            };
            let state = &this.state;
            let polled = collecting(
                || catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx))),
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
            );
            match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => {
                    // Stopped: restart unless nobody can reach the actor any more.
                    if !fut.restart() {
                        return Poll::Ready(());
                    }
                    this.state.restarted(this.kind);
                }
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(actor = place, panic = %message, "actor panicked; restarting it");
                    let kind = this.kind;
                    if let Some(why) =
                        this.state
                            .panicked_within_limit(kind, &message, &this.recent)
                    {
                        // Drop the actor here, so the records it held are answered with why.
                        let fut = this.fut.take();
                        this.state.answer_dropped(why, || drop(fut));
                        return Poll::Ready(());
                    }
                    if !fut.restart() {
                        return Poll::Ready(());
                    }
                    this.state.restarted(this.kind);
                }
            }
        }
    }
}
