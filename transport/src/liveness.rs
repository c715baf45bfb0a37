//! Detecting a vanished TCP peer at the socket level.
//!
//! A peer behind a partition (or a host that lost power) sends no FIN or RST:
//! without help, a connection waiting to read stays open forever, and one with
//! unacknowledged writes retries for about 15 minutes. Every TCP connection we
//! make or accept therefore gets keepalive probes and, on Linux,
//! `TCP_USER_TIMEOUT`, both tuned so a dead peer is detected within one bound.
//! (A live but stopped peer, e.g. SIGSTOPped, still acknowledges at the TCP
//! level; that takes an application heartbeat.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Environment variable: seconds after which a silent TCP peer is declared
/// dead (default [`DEFAULT_DEAD_AFTER`]; at least 3).
pub const ENV_TCP_DEAD_AFTER: &str = "ACTOR_TCP_DEAD_AFTER";

/// The default bound for detecting a vanished TCP peer: 30 seconds.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(30);

/// Keepalive probes sent after the idle time before the peer is declared dead.
const PROBES: u32 = 4;

/// Milliseconds; 0 means "not set yet: read the environment".
static DEAD_AFTER_MS: AtomicU64 = AtomicU64::new(0);

/// Sets the bound for detecting a vanished TCP peer, for connections made or
/// accepted from now on. Values under 3 seconds are raised to 3 seconds
/// (keepalive works in whole seconds).
pub fn set_dead_after(bound: Duration) {
    let ms = bound.max(Duration::from_secs(3)).as_millis();
    DEAD_AFTER_MS.store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// The current bound: set by [`set_dead_after`], else from
/// `ACTOR_TCP_DEAD_AFTER` (whole seconds), else [`DEFAULT_DEAD_AFTER`]. An
/// unparsable environment value falls back to the default.
pub fn dead_after() -> Duration {
    let ms = DEAD_AFTER_MS.load(Ordering::Relaxed);
    if ms != 0 {
        return Duration::from_millis(ms);
    }
    let from_env = std::env::var(ENV_TCP_DEAD_AFTER).ok().and_then(|v| v.trim().parse::<u64>().ok());
    set_dead_after(from_env.map_or(DEFAULT_DEAD_AFTER, Duration::from_secs));
    Duration::from_millis(DEAD_AFTER_MS.load(Ordering::Relaxed))
}

/// Enables keepalive (and `TCP_USER_TIMEOUT` on Linux) on `stream` so a dead
/// peer is detected within [`dead_after`].
///
/// # Errors
///
/// The `setsockopt` error; the connection itself is unaffected.
pub fn apply(stream: &TcpStream) -> std::io::Result<()> {
    let bound = dead_after();
    // Idle for a third of the bound, then PROBES probes spread over the rest:
    // idle + PROBES * interval == bound.
    let idle = (bound / 3).max(Duration::from_secs(1));
    let interval = ((bound - idle) / PROBES).max(Duration::from_secs(1));
    let keepalive = TcpKeepalive::new().with_time(idle).with_interval(interval).with_retries(PROBES);
    let sock = SockRef::from(stream);
    sock.set_tcp_keepalive(&keepalive)?;
    // Keepalive only probes an idle connection; this bounds how long sent data
    // may stay unacknowledged.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(bound))?;
    Ok(())
}
