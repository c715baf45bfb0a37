//! The opt-in low-latency mode, and the tokio runtime every actor runs on.
//!
//! An idle vCPU of a virtual machine halts, and waking it when the next
//! message arrives costs tens of microseconds: on the 2-vCPU machines this
//! project is measured on, a loopback round trip between two processes on
//! different vCPUs takes about 57 us when both sleep between messages, and
//! about 8 us when neither does. With the mode on, an actor's thread that
//! runs out of work first polls its channels' sockets for up to the set
//! time, and sleeps only if nothing arrives. The cost is CPU: at most that
//! much busy time each time the thread runs out of work.

use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable turning the low-latency mode on: how long, in
/// microseconds, an actor's thread polls for a message before it sleeps
/// (`0` or unset: off; at most [`MAX_SPIN`]). Actors spawned by a process
/// inherit it.
pub const ENV_LOW_LATENCY: &str = "ACTOR_LOW_LATENCY_US";

/// The longest poll the low-latency mode allows: 1 ms.
pub const MAX_SPIN: Duration = Duration::from_millis(1);

/// The low-latency setting in the environment.
///
/// # Errors
///
/// [`Error::Config`] if [`ENV_LOW_LATENCY`] is not a whole number of
/// microseconds or is above [`MAX_SPIN`].
pub(crate) fn from_env() -> Result<Option<Duration>> {
    let Ok(value) = std::env::var(ENV_LOW_LATENCY) else { return Ok(None) };
    let micros: u64 = value.trim().parse().map_err(|_| {
        Error::Config(format!("{ENV_LOW_LATENCY} must be a whole number of microseconds, got `{value}`"))
    })?;
    checked(Some(Duration::from_micros(micros)))
}

/// `spin`, or `None` for a zero spin.
///
/// # Errors
///
/// [`Error::Config`] if `spin` is above [`MAX_SPIN`].
fn checked(spin: Option<Duration>) -> Result<Option<Duration>> {
    match spin {
        Some(d) if d > MAX_SPIN => Err(Error::Config(format!(
            "the low-latency poll is at most {} us, got {} us",
            MAX_SPIN.as_micros(),
            d.as_micros()
        ))),
        Some(d) if d.is_zero() => Ok(None),
        other => Ok(other),
    }
}

/// The environment that hands `spin` down to a spawned actor.
pub(crate) fn child_env(spin: Option<Duration>) -> Option<(&'static str, String)> {
    spin.map(|d| (ENV_LOW_LATENCY, d.as_micros().to_string()))
}

/// The runtime of an actor: `threads` worker threads (0 or 1: one thread,
/// like tractor's trio actors, so the hot paths have no cross-thread
/// wake-ups), polling for up to `spin` before each sleep.
///
/// # Errors
///
/// [`Error::Config`] for a `spin` above [`MAX_SPIN`]; [`Error::Io`] if the
/// runtime or the socket set for the poll cannot be created.
pub(crate) fn runtime(threads: usize, spin: Option<Duration>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder.enable_all();
    if let Some(spin) = checked(spin)? {
        actor_transport::spin::enable()?;
        builder.on_thread_park(move || actor_transport::spin::until_ready(spin));
    }
    Ok(builder.build()?)
}
