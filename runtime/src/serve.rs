//! Serving the peer's calls: find the function, run it as a task of this
//! actor under its own cancellation token, and send how it ended.

use std::sync::Arc;

use actor_transport::{CallId, CallKind, CallStart, Completion, ErrorKind, RemoteError, Uid};
use bytes::Bytes;
use tracing::Instrument;

use crate::builtin::CANCEL_FN;
use crate::conn::{Conn, ServedIo};
use crate::local::{Actor, ExitHook};
use crate::registry::{self, Failure, Handler};

/// Serves the peer's call `cid` of `func`, or refuses it. `from_parent`
/// says the peer is this actor's parent, whose first call to a
/// `run_in_actor` child is its main call.
pub(crate) fn start(conn: &Arc<Conn>, actor: &Arc<Actor>, from_parent: bool, call: CallStart) {
    let CallStart { cid, func, kind, args, window, timeout_ms, key, trace } = call;
    let me = &actor.uid;
    let refuse = |kind, type_name: &str, message: String| {
        conn.refuse(cid, RemoteError::new(me.clone(), kind, type_name, message));
    };
    if func == CANCEL_FN {
        return cancel_requested(conn, actor, cid, kind, &args);
    }
    if func == crate::introspect::INTROSPECT_FN {
        return crate::introspect::serve(conn, actor, cid, kind);
    }
    // A host agent's functions, served only by an agent, whatever else it links.
    let Some(handler) = crate::agent::handler(&func).or_else(|| registry::lookup(&func)) else {
        return refuse(
            ErrorKind::UnknownFunction,
            "actor::UnknownFunction",
            format!("no function `{func}` is registered in actor `{me}`"),
        );
    };
    if handler.kind() != kind {
        return refuse(
            ErrorKind::Protocol,
            "actor::WrongCallKind",
            format!("`{func}` is a {:?} function but was called as {kind:?}", handler.kind()),
        );
    }
    if !actor.exposes(&func) {
        return refuse(
            ErrorKind::NotExposed,
            "actor::NotExposed",
            format!("actor `{me}` does not expose `{func}`"),
        );
    }
    let token = actor.token().child_token();
    let (shared, items) = conn.admit(cid, kind, window, token.clone());
    crate::introspect::count_served();
    // Only a stream or context has items to hand on before its end; a
    // single call keeps no extra handle on its state, which would make its
    // end spell out a reason nobody reads.
    let items_of = (kind != CallKind::Single).then(|| shared.clone());
    let io = ServedIo { conn: conn.clone(), cid, shared, items };
    let served = match handler {
        Handler::Single(f) => f(args),
        Handler::Stream(f) => f(args, io),
        Handler::Context(f) => f(args, io),
    };
    // The caller's deadline: calls this one makes inherit it, and the call
    // is cancelled when it passes.
    let deadline = timeout_ms.map(crate::deadline::from_timeout_ms);
    let served: crate::registry::Served = match deadline {
        Some(at) => Box::pin(crate::deadline::within(at, served)),
        None => served,
    };
    // A job's attempt: the function reads its key (jobs/key.rs).
    let served: crate::registry::Served = match key {
        Some(key) => Box::pin(crate::jobs::key::scope(Some(Arc::from(key)), served)),
        None => served,
    };
    // The call's span, a child of the caller's: calls the function makes
    // carry it on (trace.rs).
    let trace = crate::trace::Span::serving(trace);
    let conn = conn.clone();
    let actor2 = actor.clone();
    // The name comes from the peer: escaped, so it cannot forge log lines.
    let span = tracing::info_span!(
        "actor.call",
        func = %actor_transport::Escaped(&func),
        cid,
        actor = %me,
        trace_id = %trace.ctx.trace_id(),
        span_id = %trace.ctx.span_id(),
        parent_span_id = trace.parent.map(tracing::field::display),
    );
    let main = from_parent && actor.claim_main();
    #[cfg(feature = "otel")]
    let exported = crate::otel::enabled().then(std::time::SystemTime::now);
    actor.spawn(
        async move {
            tracing::debug!("started");
            // A call with a nursery open lets the nursery handle a cancel, so
            // failures of its children are not lost (see scope.rs).
            let expire = async {
                match deadline {
                    Some(at) => {
                        tokio::time::sleep_until(at).await;
                        token.cancel();
                    }
                    None => std::future::pending().await,
                }
                std::future::pending::<()>().await
            };
            let outcome = tokio::select! {
                outcome = crate::trace::scope(trace, crate::scope::serve(served, &token)) => outcome,
                () = expire => None,
            };
            let expired = deadline.is_some_and(|at| tokio::time::Instant::now() >= at);
            let me = &actor2.uid;
            let how = match outcome {
                Some(Ok(value)) => Completion::Returned(value),
                Some(Err(failure)) => Completion::Failed(Box::new(failure_to_remote(failure, me))),
                None => {
                    let (canceller, reason) = match conn.canceller(cid) {
                        Some(c) => (Some(c), "cancelled by the caller".to_owned()),
                        None if expired => (None, format!("the deadline of `{func}` passed")),
                        None => actor2.cancel_reason(),
                    };
                    let mut e =
                        RemoteError::new(me.clone(), ErrorKind::Cancelled, "actor::Error::Cancelled", reason);
                    e.canceller = canceller;
                    Completion::Cancelled(Box::new(e))
                }
            };
            tracing::debug!("finished");
            #[cfg(feature = "otel")]
            if let Some(start) = exported {
                crate::otel::record(crate::otel::Record {
                    ctx: trace.ctx,
                    parent: trace.parent,
                    name: func.clone(),
                    kind: crate::otel::Kind::Server,
                    start,
                    end: std::time::SystemTime::now(),
                    error: match &how {
                        Completion::Returned(_) => None,
                        Completion::Failed(e) | Completion::Cancelled(e) => Some(e.message.clone()),
                    },
                });
            }
            // Items the function sent go before its end. A call that ended
            // already (cancelled by the caller, or its channel gone) has no
            // use for them: that error is no one's to hear.
            if let Some(shared) = items_of {
                if let Err(e) = conn.flush(cid, &shared).await {
                    tracing::debug!(error = %e, "cannot hand the last stream items on");
                }
            }
            conn.complete(cid, &func, how).await;
            if main {
                actor2.cancel(None, "its main function returned".into());
            }
        }
        .instrument(span),
    );
}

/// A peer asks this actor to cancel itself (the [`CANCEL_FN`] call). Every
/// peer admitted here proved it belongs to the tree (its spawn token, the
/// tree's secret or a certificate the tree trusts), so any may; the answer
/// goes out once the actor has wound down, just before it exits.
fn cancel_requested(conn: &Arc<Conn>, actor: &Arc<Actor>, cid: CallId, kind: CallKind, args: &[u8]) {
    let me = &actor.uid;
    let refuse = |kind, type_name: &str, message: String| {
        conn.refuse(cid, RemoteError::new(me.clone(), kind, type_name, message));
    };
    if kind != CallKind::Single {
        return refuse(
            ErrorKind::Protocol,
            "actor::WrongCallKind",
            format!("`{CANCEL_FN}` is a single call"),
        );
    }
    let reason = match registry::decode::<(String,)>(args, || format!("arguments of `{CANCEL_FN}`")) {
        Ok((reason,)) => reason,
        Err(e) => return refuse(ErrorKind::BadArguments, "actor::BadArguments", e.to_string()),
    };
    let canceller: Uid = conn.peer().clone();
    tracing::info!(%canceller, %reason, "cancel requested by a peer");
    conn.admit(cid, CallKind::Single, 0, actor.token().child_token());
    let reply = conn.clone();
    let answer: ExitHook = Box::new(move || {
        Box::pin(async move {
            reply.complete(cid, CANCEL_FN, Completion::Returned(Bytes::from_static(b"\xc0"))).await
        })
    });
    actor.cancel_by_peer(canceller, reason, answer);
}

fn failure_to_remote(failure: Failure, me: &Uid) -> RemoteError {
    match failure {
        Failure::BadArguments(msg) => {
            RemoteError::new(me.clone(), ErrorKind::BadArguments, "actor::BadArguments", msg)
        }
        Failure::Panicked(msg) => RemoteError::new(me.clone(), ErrorKind::Panic, "panic", msg),
        Failure::Failed(e) => e.to_remote(me),
    }
}
