//! Interceptors, as Java's `ProducerInterceptor`: `on_send` sees (and may change) every record
//! before it is partitioned; `on_acknowledgement` sees every outcome.
//!
//! They run in their own actor, in configured order, so that a slow or misbehaving
//! interceptor never runs inside the router or an accumulator. A failing interceptor (an
//! `Err` or a panic) is logged and skipped for that record, as in Java; a panic also restarts
//! the actor under its supervisor. Records reach the interceptor actor and come back to the
//! router through FIFO mailboxes, so their order is kept.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;
use herald::ProducerRecord;

use crate::completion::Outcome;
#[cfg(feature = "fault-injection")]
use crate::fault_injection::Crash;
use crate::messages::intercept::{Acknowledged, OnSend, Route, RouteLost};
use crate::messages::Shutdown;
use crate::shared::Shared;
#[cfg(feature = "fault-injection")]
use crate::supervisor::ActorKind;

/// A user's interceptor. Errors and panics are contained: the record goes on as it was
/// before the failing interceptor.
pub trait ProducerInterceptor: Send + 'static {
    /// A name for logs.
    fn name(&self) -> &str;

    /// Sees a record before partitioning; returns the record to send.
    fn on_send(
        &mut self,
        record: ProducerRecord,
    ) -> Result<ProducerRecord, Box<dyn std::error::Error + Send + Sync>> {
        Ok(record)
    }

    /// Sees the outcome of every record.
    fn on_acknowledgement(&mut self, outcome: &Outcome) {
        let _ = outcome;
    }
}

/// The actor records go back to after `on_send` (the router).
pub(crate) trait Downstream:
    Actor<Context = Context<Self>> + Handler<Route> + Handler<RouteLost>
{
}

impl<R: Actor<Context = Context<R>> + Handler<Route> + Handler<RouteLost>> Downstream for R {}

/// Tells the router about a record the handler holding it could not hand back (a panic
/// unwinding through it), unless disarmed once the record went on as `Route`.
struct HandBack<'a, R: Downstream> {
    router: &'a Addr<R>,
    armed: bool,
}

impl<R: Downstream> Drop for HandBack<'_, R> {
    fn drop(&mut self) {
        if self.armed {
            self.router.do_send(RouteLost);
        }
    }
}

/// The actor that runs the interceptor chain. Records go back as [`Route`] to `R` (the
/// router that started the chain), whose address is typed: no dynamic dispatch per record
/// beyond the interceptors' own.
pub(crate) struct InterceptorChain<R: Actor> {
    interceptors: Vec<Box<dyn ProducerInterceptor>>,
    router: Addr<R>,
    /// The producer's shared state (its fault-injection traps, in tests).
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    shared: Arc<Shared>,
    panicked: bool,
    terminated: bool,
}

impl<R: Actor> std::fmt::Debug for InterceptorChain<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.interceptors.iter().map(|i| i.name()).collect();
        f.debug_struct("InterceptorChain")
            .field("interceptors", &names)
            .finish()
    }
}

impl<R: Actor> InterceptorChain<R> {
    pub(crate) fn new(
        interceptors: Vec<Box<dyn ProducerInterceptor>>,
        router: Addr<R>,
        shared: Arc<Shared>,
    ) -> Self {
        InterceptorChain {
            interceptors,
            router,
            shared,
            panicked: false,
            terminated: false,
        }
    }
}

impl<R: Downstream> Actor for InterceptorChain<R> {
    type Context = Context<Self>;
}

impl<R: Downstream> Supervised for InterceptorChain<R> {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if !self.terminated {
            tracing::warn!("interceptor actor restarted");
        }
        self.panicked = false;
    }
}

impl<R: Downstream> Handler<OnSend> for InterceptorChain<R> {
    type Result = ();

    fn handle(&mut self, msg: OnSend, ctx: &mut Context<Self>) {
        // The fields apart: the guard borrows the router's address while the interceptors
        // run (no clone of it per record).
        let InterceptorChain {
            interceptors,
            router,
            panicked,
            ..
        } = self;
        let mut hand_back = HandBack {
            router,
            armed: true,
        };
        #[cfg(feature = "fault-injection")]
        self.shared.victims.trip(ActorKind::Interceptors);
        let mut record = msg.record;
        for i in interceptors.iter_mut() {
            let before = record.clone();
            match catch_unwind(AssertUnwindSafe(|| i.on_send(record))) {
                Ok(Ok(changed)) => record = changed,
                Ok(Err(e)) => {
                    tracing::warn!(interceptor = i.name(), error = %e, "on_send failed; skipped");
                    record = before;
                }
                Err(_) => {
                    tracing::error!(interceptor = i.name(), "on_send panicked; skipped");
                    record = before;
                    *panicked = true;
                }
            }
        }
        hand_back.armed = false;
        let mut completion = msg.completion;
        completion.mark_seen();
        router.do_send(Route {
            record,
            completion,
            txn: msg.txn,
        });
        if *panicked {
            ctx.stop();
        }
    }
}

impl<R: Downstream> Handler<Acknowledged> for InterceptorChain<R> {
    type Result = ();

    fn handle(&mut self, msg: Acknowledged, ctx: &mut Context<Self>) {
        for outcome in &msg.outcomes {
            for i in self.interceptors.iter_mut() {
                if catch_unwind(AssertUnwindSafe(|| i.on_acknowledgement(outcome))).is_err() {
                    tracing::error!(
                        interceptor = i.name(),
                        "on_acknowledgement panicked; skipped"
                    );
                    self.panicked = true;
                }
            }
        }
        if self.panicked {
            ctx.stop();
        }
    }
}

impl<R: Downstream> Handler<Shutdown> for InterceptorChain<R> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.terminated = true;
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl<R: Downstream> Handler<Crash> for InterceptorChain<R> {
    type Result = ();

    fn handle(&mut self, crash: Crash, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        crash.apply(ActorKind::Interceptors, &shared.victims, ctx);
    }
}
