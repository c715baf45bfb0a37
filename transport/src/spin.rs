//! Readiness of channel sockets for a thread that polls briefly before it
//! sleeps: the runtime's opt-in low-latency mode.
//!
//! On a virtual machine an idle vCPU halts, and waking it for the next message
//! costs tens of microseconds, several times a round trip between two busy
//! processes. A thread that keeps polling its sockets for a few microseconds
//! after running out of work picks a quick reply up without that cost.
//! Tokio's epoll set is private to it, so every channel's socket is also put
//! in a second, level-triggered set of our own, which [`until_ready`] polls
//! without blocking. The kernel drops a socket from the set when it closes.

use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

static SET: OnceLock<Epoll> = OnceLock::new();

/// Starts collecting the sockets of channels built from now on, for
/// [`until_ready`]. Idempotent.
///
/// # Errors
///
/// The `epoll_create1` error, e.g. `EMFILE` when this process has no file
/// descriptor left.
pub fn enable() -> std::io::Result<()> {
    if SET.get().is_none() {
        let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        // A race with another enabling thread leaves one set; the other closes.
        let _ = SET.set(set);
    }
    Ok(())
}

/// Adds a channel's socket to the set, if [`enable`] was called. A socket
/// that cannot be added only misses the spin: the channel works as before.
pub(crate) fn watch(fd: BorrowedFd<'_>) {
    if let Some(set) = SET.get() {
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        if let Err(e) = set.add(fd, EpollEvent::new(interest, 0)) {
            tracing::debug!(error = %e, "a channel's socket is not watched by the low-latency spin");
        }
    }
}

/// Polls the watched sockets without blocking until one is readable (or
/// closed by its peer), an error occurs, or `bound` has passed, yielding the
/// CPU to any other runnable thread between polls. Returns at once if
/// [`enable`] was never called.
///
/// A socket whose data nobody is reading yet (a reader held back by a slow
/// consumer) ends every spin at once: the thread then parks as it would
/// without the spin.
pub fn until_ready(bound: Duration) {
    let Some(set) = SET.get() else { return };
    let start = Instant::now();
    let mut events = [EpollEvent::empty()];
    loop {
        match set.wait(&mut events, EpollTimeout::ZERO) {
            Ok(0) => {}
            Ok(_) | Err(_) => return,
        }
        if start.elapsed() >= bound {
            return;
        }
        // Not a busy loop: on a loaded machine the peer we wait for may need
        // this very CPU to send what we wait for.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_spin_ends_when_a_watched_socket_is_readable_and_at_its_bound_otherwise() {
        enable().expect("an epoll set");
        let (a, mut b) = UnixStream::pair().expect("a socket pair");
        watch(a.as_fd());
        // Nothing to read: the spin runs to its bound and returns.
        until_ready(Duration::from_millis(2));
        b.write_all(b"x").expect("write");
        // Readable: returns long before this bound, which only keeps a broken
        // spin from hanging the test.
        let start = Instant::now();
        until_ready(Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(30), "the spin did not see the readable socket");
    }
}
