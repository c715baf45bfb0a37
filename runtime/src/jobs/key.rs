//! The idempotency key of the job a served call is an attempt of.
//!
//! A job's key travels in its call's `Start` (PROTOCOL.md); the callee runs
//! the function with the key in a task-local, so the function can read it
//! with [`current_key`] and deduplicate its side effects. The key belongs
//! to that one call: calls the function makes in turn do not carry it.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static KEY: Option<Arc<str>>;
}

/// The idempotency key of the durable job whose attempt this remote function
/// is serving; `None` for an ordinary call (or outside a served call).
///
/// A job may run more than once (after a crash, or when an attempt's answer
/// was lost), always with the same key, so a function with side effects
/// records the keys it has acted on and skips a key it has seen:
///
/// ```no_run
/// #[actor::remote(idempotent)]
/// async fn ship(order: u64) -> actor::Result<()> {
///     let key = actor::jobs::current_key().unwrap_or_else(|| format!("order-{order}"));
///     // if `key` was shipped already: return Ok(()); else ship and remember `key`
///     Ok(())
/// }
/// ```
///
/// Read it in the function's own task: tasks it spawns do not inherit it. A
/// plain (blocking) `#[actor::remote] fn` sees it too.
pub fn current_key() -> Option<String> {
    raw().map(|k| k.to_string())
}

/// The key of the call this task serves, shared.
pub(crate) fn raw() -> Option<Arc<str>> {
    KEY.try_with(Clone::clone).ok().flatten()
}

/// Runs `fut` as a call carrying `key`.
pub(crate) async fn scope<F: Future>(key: Option<Arc<str>>, fut: F) -> F::Output {
    KEY.scope(key, fut).await
}

/// Runs `f` (on a blocking thread) as a call carrying `key`.
pub(crate) fn sync_scope<R>(key: Option<Arc<str>>, f: impl FnOnce() -> R) -> R {
    KEY.sync_scope(key, f)
}
