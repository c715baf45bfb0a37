//! What an accept loop logs about connections that did not become channels.
//!
//! Before authentication a peer controls what we log: its uid, the bytes that
//! make our decode errors, and how often it fails. So peer-supplied text is
//! escaped ([`Escaped`]), a peer that merely hangs up or resets (routine: an
//! actor exiting as it starts, a port probe) is logged at debug, and real
//! refusals (a wrong token, another protocol version, garbage) are warnings
//! limited to a burst per minute, with a count of what was suppressed.

use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::escape::Escaped;
use crate::handshake::HandshakeError;
use crate::stream::is_hangup;

/// Refusal warnings logged per minute, per process, before suppressing.
const BURST: u32 = 10;

static REFUSALS: WarnLimit = WarnLimit::new(BURST, Duration::from_secs(60));

/// Accept failures (running out of file descriptors) repeat every few
/// milliseconds while they last; one limit for them, apart from refusals.
static ACCEPT_FAILURES: WarnLimit = WarnLimit::new(BURST, Duration::from_secs(60));

/// Logs a failed `accept` (typically EMFILE) as a rate-limited warning; the
/// caller backs off and retries. Out of descriptors, the warning names the limit and how to raise it.
pub fn accept_failed(error: &io::Error) {
    let limit = crate::fd_limit::note_exhausted(error);
    if let WarnVerdict::Log { suppressed } = ACCEPT_FAILURES.check() {
        match (limit, suppressed) {
            (Some(limit), 0) => tracing::warn!(error = %error, "accept failed; retrying shortly: {limit}"),
            (Some(limit), _) => {
                tracing::warn!(error = %error, suppressed, "accept failed; retrying shortly: {limit}")
            }
            (None, 0) => tracing::warn!(error = %error, "accept failed; retrying shortly"),
            (None, _) => tracing::warn!(error = %error, suppressed, "accept failed; retrying shortly"),
        }
    }
}

/// Logs a failed handshake with the peer at `from`: debug for a hang-up,
/// otherwise a rate-limited warning; peer-controlled text is escaped.
pub fn handshake_failed(from: &str, error: &HandshakeError) {
    if error.is_hangup() {
        tracing::debug!(%from, error = %Escaped(error), "a peer hung up during the handshake");
    } else if let WarnVerdict::Log { suppressed } = REFUSALS.check() {
        if suppressed == 0 {
            tracing::warn!(%from, error = %Escaped(error), "refused a connection");
        } else {
            tracing::warn!(%from, error = %Escaped(error), suppressed, "refused a connection");
        }
    }
}

/// Logs a failed TLS handshake with the peer at `from`, as [`handshake_failed`].
pub fn tls_failed(from: &str, error: &io::Error) {
    if is_hangup(error) {
        tracing::debug!(%from, error = %Escaped(error), "a peer hung up during the TLS handshake");
    } else if let WarnVerdict::Log { suppressed } = REFUSALS.check() {
        let what = "refused a connection that failed the TLS handshake";
        if suppressed == 0 {
            tracing::warn!(%from, error = %Escaped(error), "{what}");
        } else {
            tracing::warn!(%from, error = %Escaped(error), suppressed, "{what}");
        }
    }
}

/// Lets at most `burst` warnings through per `period`, counting the rest so the
/// next warning let through can say how many were suppressed.
#[derive(Debug)]
pub struct WarnLimit {
    burst: u32,
    period: Duration,
    state: Mutex<WarnWindow>,
}

#[derive(Debug)]
struct WarnWindow {
    start: Option<Instant>,
    sent: u32,
    suppressed: u64,
}

/// The verdict of [`WarnLimit::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarnVerdict {
    /// Log it; `suppressed` warnings were dropped since the last one logged.
    Log {
        /// How many were dropped before this one.
        suppressed: u64,
    },
    /// Drop it (counted).
    Suppress,
}

impl fmt::Display for WarnVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarnVerdict::Log { suppressed: 0 } | WarnVerdict::Suppress => Ok(()),
            WarnVerdict::Log { suppressed } => write!(f, " ({suppressed} similar warnings suppressed)"),
        }
    }
}

impl WarnLimit {
    /// At most `burst` warnings per `period`.
    pub const fn new(burst: u32, period: Duration) -> Self {
        WarnLimit { burst, period, state: Mutex::new(WarnWindow { start: None, sent: 0, suppressed: 0 }) }
    }

    /// Whether to log one more warning now.
    pub fn check(&self) -> WarnVerdict {
        let now = Instant::now();
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.is_none_or(|s| now.duration_since(s) >= self.period) {
            w.start = Some(now);
            w.sent = 0;
        }
        if w.sent < self.burst {
            w.sent += 1;
            WarnVerdict::Log { suppressed: std::mem::take(&mut w.suppressed) }
        } else {
            w.suppressed += 1;
            WarnVerdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_per_period() {
        let l = WarnLimit::new(2, Duration::from_secs(3600));
        assert_eq!(l.check(), WarnVerdict::Log { suppressed: 0 });
        assert_eq!(l.check(), WarnVerdict::Log { suppressed: 0 });
        assert_eq!(l.check(), WarnVerdict::Suppress);
        assert_eq!(l.check(), WarnVerdict::Suppress);
        let l0 = WarnLimit::new(1, Duration::ZERO);
        assert_eq!(l0.check(), WarnVerdict::Log { suppressed: 0 });
        assert_eq!(l0.check(), WarnVerdict::Log { suppressed: 0 });
    }
}
