//! The cancel scope of a served call, as nurseries see it.
//!
//! A served call is cancelled by dropping its future when its token fires.
//! That is right for plain code, but a call with a nursery open may be
//! holding failures of its children that arrived just before the cancel (or
//! arrive while the nursery reaps them): dropping it would replace those
//! failures by "cancelled", and one-cancels-all one level up would lose them.
//! So while a call has a nursery open, a cancel is left to the nursery: it
//! observes the call's token itself, cancels and reaps its actors (a bounded
//! wait: cancel grace, then kill grace), and returns what failed, which
//! becomes the call's reply. Once no nursery is open, the call is dropped as
//! before.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::registry::Failure;

tokio::task_local! {
    static SCOPE: Arc<CallScope>;
}

/// One served call: its token and how many nurseries it has open.
struct CallScope {
    token: CancellationToken,
    open: AtomicUsize,
    closed: Notify,
}

/// The token that cancels the served call this task is running, if any.
/// A nursery opened in that call observes it.
pub(crate) fn call_token() -> Option<CancellationToken> {
    SCOPE.try_with(|s| s.token.clone()).ok()
}

/// Marks a nursery open in the current call (if any) until dropped.
pub(crate) struct NurseryOpen(Option<Arc<CallScope>>);

impl NurseryOpen {
    pub(crate) fn enter() -> Self {
        let scope = SCOPE.try_with(Arc::clone).ok();
        if let Some(s) = &scope {
            s.open.fetch_add(1, Ordering::SeqCst);
        }
        NurseryOpen(scope)
    }
}

impl Drop for NurseryOpen {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.open.fetch_sub(1, Ordering::SeqCst);
            s.closed.notify_waiters();
        }
    }
}

/// Runs served call `served` until it finishes or `token` is cancelled.
///
/// Returns `Some(outcome)` when the call finished on its own, or finished
/// with a real failure while its nurseries handled the cancel; `None` when
/// it was cancelled (dropped, or it ended in a cancellation error).
pub(crate) async fn serve<T, F>(served: F, token: &CancellationToken) -> Option<Result<T, Failure>>
where
    F: Future<Output = Result<T, Failure>>,
{
    let scope =
        Arc::new(CallScope { token: token.clone(), open: AtomicUsize::new(0), closed: Notify::new() });
    let served = SCOPE.scope(scope.clone(), served);
    tokio::pin!(served);
    tokio::select! {
        biased;
        r = &mut served => return Some(r),
        _ = token.cancelled() => {}
    }
    loop {
        // Registered before the check, so a nursery closing in between wakes us.
        let closed = scope.closed.notified();
        if scope.open.load(Ordering::SeqCst) == 0 {
            return None;
        }
        tokio::select! {
            biased;
            r = &mut served => {
                return match r {
                    Err(Failure::Failed(e)) if e.is_cancelled() => None,
                    r => Some(r),
                };
            }
            _ = closed => {}
        }
    }
}
