//! The per-process limit on open files (`RLIMIT_NOFILE`): raising it to what
//! the system allows, and naming it when it runs out.
//!
//! A parent actor holds a few descriptors per live child (its channel, the
//! arbiter's connection, the pidfd tokio reaps it through), so a soft limit
//! of 1024, the usual default, stops one root near 300 children although
//! the hard limit is often far higher. The soft limit is the process's own to
//! raise up to the hard one; the hard limit only an administrator raises.
//! Limits are inherited, so a root that raised its own hands the higher
//! limit to every process of its tree.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft and hard limits on open files, after a [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimits {
    /// The limit that applies: opening one more file past it fails.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// When this process last ran out of descriptors, as seen by
/// [`note_exhausted`], and its explanation.
static LAST_EXHAUSTED: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// Wakes the waiters of [`next_exhaustion`].
static EXHAUSTION: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The highest soft limit [`raise`] sets: enough for thousands of actors,
/// while programs the tree starts that walk every possible descriptor (a
/// `close` loop up to the limit, `select`) are not slowed by a hard limit of
/// millions.
pub const RAISE_CAP: u64 = 65_536;

/// Raises this process's soft limit on open files to its hard limit, at
/// most [`RAISE_CAP`].
///
/// Returns the limits in force afterwards (unchanged if the soft limit was
/// already that high).
///
/// # Errors
///
/// The `getrlimit(2)` or `setrlimit(2)` error; the limits are then unchanged.
pub fn raise() -> io::Result<NofileLimits> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let target = hard.min(RAISE_CAP);
    if soft >= target {
        return Ok(NofileLimits { soft, hard });
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok(NofileLimits { soft: target, hard })
}

/// The limits on open files in force now, or `None` if they cannot be read.
pub fn current() -> Option<NofileLimits> {
    getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(soft, hard)| NofileLimits { soft, hard })
}

/// Whether `error` says this process (EMFILE) or the whole system (ENFILE)
/// has no file descriptor left to give.
pub fn is_exhausted(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE))
}

/// For an `error` that [`is_exhausted`]: a sentence naming the limit that was
/// hit and how to raise it; `None` for any other error. Also remembers the
/// moment and the sentence, for [`exhausted_within`].
pub fn note_exhausted(error: &io::Error) -> Option<String> {
    let text = match error.raw_os_error()? {
        nix::libc::EMFILE => match current() {
            Some(NofileLimits { soft, hard }) => format!(
                "this process has reached its limit of {soft} open files (RLIMIT_NOFILE, soft {soft}, hard \
                 {hard}; the runtime raises the soft limit to the hard one, at most 65536, at start): raise the hard limit \
                 (`ulimit -Hn`, `prlimit --nofile`, LimitNOFILE= in a systemd unit, nofile in \
                 /etc/security/limits.conf)"
            ),
            None => "this process has reached its limit of open files (RLIMIT_NOFILE): raise it with \
                     `ulimit -n` or `prlimit --nofile`"
                .to_owned(),
        },
        nix::libc::ENFILE => {
            "the system has reached its limit of open files (the sysctl fs.file-max): raise \
                              it, or close files elsewhere"
                .to_owned()
        }
        _ => return None,
    };
    *LAST_EXHAUSTED.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), text.clone()));
    EXHAUSTION.notify_waiters();
    Some(text)
}

/// Waits until a [`note_exhausted`] sees descriptors run out (in any task or
/// thread of this process), then returns its explanation: a spawn whose
/// child's connection a listener cannot accept fails at once instead of at
/// its timeout.
///
/// # Cancel safety
///
/// Cancel-safe.
pub async fn next_exhaustion() -> String {
    EXHAUSTION.notified().await;
    let last = LAST_EXHAUSTED.lock().unwrap_or_else(|p| p.into_inner());
    last.as_ref().map(|(_, text)| text.clone()).unwrap_or_default()
}

/// If a [`note_exhausted`] saw descriptors run out in the last `window`, its
/// explanation: a wait that timed out meanwhile (for a child whose
/// connection could not be accepted) may owe its failure to that.
pub fn exhausted_within(window: Duration) -> Option<String> {
    let last = LAST_EXHAUSTED.lock().unwrap_or_else(|p| p.into_inner());
    last.as_ref().filter(|(at, _)| at.elapsed() <= window).map(|(_, text)| text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptor_exhaustion_is_explained() {
        let other = io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert!(!is_exhausted(&other));
        assert_eq!(note_exhausted(&other), None);
        let emfile = io::Error::from_raw_os_error(nix::libc::EMFILE);
        assert!(is_exhausted(&emfile));
        let text = note_exhausted(&emfile).expect("EMFILE is explained");
        assert!(text.contains("RLIMIT_NOFILE"), "{text}");
        assert_eq!(exhausted_within(Duration::from_secs(60)), Some(text));
        let enfile = io::Error::from_raw_os_error(nix::libc::ENFILE);
        assert!(note_exhausted(&enfile).expect("ENFILE is explained").contains("fs.file-max"));
    }

    #[tokio::test]
    async fn a_waiter_hears_of_the_next_exhaustion() {
        let waiter = tokio::spawn(next_exhaustion());
        // Until the waiter is registered, a notification would be lost.
        while !waiter.is_finished() {
            tokio::task::yield_now().await;
            note_exhausted(&io::Error::from_raw_os_error(nix::libc::EMFILE));
        }
        let text = waiter.await.expect("the waiter finishes");
        // Another test may have noted ENFILE meanwhile: either sentence.
        assert!(text.contains("open files"), "{text}");
    }

    #[test]
    fn raising_brings_the_soft_limit_to_the_hard_one_at_most_the_cap() {
        let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let after = raise().expect("raising to the hard limit needs no privilege");
        // A soft limit already above the cap is left as it is.
        assert_eq!(after, NofileLimits { soft: before.max(hard.min(RAISE_CAP)), hard });
        assert_eq!(current(), Some(after));
    }
}
