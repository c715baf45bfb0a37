//! One trace across processes: every call carries its caller's trace
//! context, so the spans of one request in every actor join one trace.
//!
//! The context of the call a task serves lives in a task-local, like the
//! call's deadline (deadline.rs): a remote function's own calls pick it up
//! without being passed anything. Serving a call opens a new span whose
//! parent is the caller's span (the context in the call's `Start`); a call
//! made where there is no context starts a new trace. The served function
//! runs inside a `tracing` span `actor.call` that names the ids, so logs of
//! one request can be joined across actors; with the `otel` feature the
//! spans are also exported over OTLP.
//!
//! ```no_run
//! #[actor::remote]
//! async fn lookup(id: u64) -> actor::Result<String> {
//!     // The trace of the request this call is part of.
//!     let ctx = actor::trace::current().expect("a served call has a trace");
//!     Ok(format!("{id} in trace {}", ctx.trace_id()))
//! }
//! ```

use std::future::Future;

pub use actor_transport::{SpanId, TraceContext, TraceId, TraceParseError};

tokio::task_local! {
    static CURRENT: Span;
}

/// The span a task runs in: its context and its parent's span id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// The span's trace and id.
    pub(crate) ctx: TraceContext,
    /// The caller's span; `None` for a span that started its trace.
    pub(crate) parent: Option<SpanId>,
}

impl Span {
    /// The span that serves a call whose caller sent `incoming`: its child,
    /// or the root of a new trace when the caller sent none (or a bad one).
    pub(crate) fn serving(incoming: Option<TraceContext>) -> Span {
        match incoming {
            Some(caller) => Span { ctx: caller.child(), parent: Some(caller.span_id()) },
            None => Span { ctx: TraceContext::new_root(), parent: None },
        }
    }
}

/// The trace context of the span this task runs in: inside a served remote
/// function, its own span (a child of its caller's); inside
/// [`in_context`], the context given there; `None` elsewhere.
///
/// Read it in the function's own task: tasks it spawns do not inherit it
/// (wrap them in [`in_context`] to carry it along).
pub fn current() -> Option<TraceContext> {
    current_span().map(|s| s.ctx)
}

/// The span id of the caller of the call this task serves: the parent of
/// [`current`]'s span. `None` outside a served call, and for a call whose
/// caller sent no trace context (its span starts a new trace).
pub fn parent_span_id() -> Option<SpanId> {
    current_span().and_then(|s| s.parent)
}

/// Runs `fut` with `ctx` as its current trace context: the calls it makes
/// carry `ctx`, so their spans join `ctx`'s trace as children of its span.
/// Use it at the edge of a tree, with a context parsed from an incoming
/// request's `traceparent` ([`TraceContext::parse`]), or to hand the
/// current context to a spawned task.
pub async fn in_context<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(Span { ctx, parent: None }, fut).await
}

pub(crate) fn current_span() -> Option<Span> {
    CURRENT.try_with(|s| *s).ok()
}

/// The context a call started now carries, and whether it starts a new
/// trace: the current one, or a new trace's root when there is none, so
/// every call belongs to a trace.
pub(crate) fn outgoing() -> (TraceContext, bool) {
    match current() {
        Some(ctx) => (ctx, false),
        None => (TraceContext::new_root(), true),
    }
}

/// Runs `fut` (a served call) in `span`.
pub(crate) async fn scope<F: Future>(span: Span, fut: F) -> F::Output {
    CURRENT.scope(span, fut).await
}

/// Runs `f` (on a blocking thread) in `span`, if any.
pub(crate) fn sync_scope<R>(span: Option<Span>, f: impl FnOnce() -> R) -> R {
    match span {
        Some(span) => CURRENT.sync_scope(span, f),
        None => f(),
    }
}
