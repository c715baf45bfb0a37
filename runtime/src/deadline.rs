//! Call deadlines: the time a caller gives a call travels with it (the
//! `timeout_ms` of its `Start`), is enforced by the callee, and is inherited
//! by every call the callee makes while serving it.
//!
//! The deadline of the current call lives in a task-local, so nested calls
//! pick it up without being passed anything. On the wire it travels as the
//! time remaining, not as a clock reading, since hosts' clocks differ.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the call this task serves or makes, if any.
pub(crate) fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// The time left before the deadline of the call this task is serving (set
/// by its caller) or making (with
/// [`Portal::run_with_timeout`](crate::Portal::run_with_timeout)); `None`
/// when there is none. Calls made from this task carry it along, so a whole
/// chain of calls shares one deadline.
pub fn remaining_time() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// Runs `fut` with deadline `at`, or the current deadline if that is
/// earlier: an inner call never gets more time than its caller has.
pub(crate) async fn within<F: Future>(at: Instant, fut: F) -> F::Output {
    let at = current().map_or(at, |outer| outer.min(at));
    DEADLINE.scope(at, fut).await
}

/// The `timeout_ms` to send with a call started now: the milliseconds left
/// before the current deadline, rounded up so that a call with time left
/// never arrives with zero.
pub(crate) fn timeout_ms() -> Option<u64> {
    remaining_time().map(|d| {
        let ms = d.as_micros().div_ceil(1000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    })
}

/// The deadline of a call that arrived with `timeout_ms`.
pub(crate) fn from_timeout_ms(timeout_ms: u64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_millis(timeout_ms))
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}
