//! Heartbeats for every link of this process, checked from one plain thread.
//!
//! A reader only counts the messages it receives. Every third of the peer
//! timeout this thread looks at each link: one that heard nothing gets a
//! ping; one silent for the whole timeout has its reader stopped and is
//! ended, its calls failing with the reason. Keeping this off the actor's
//! runtime matters for latency: a timer always pending there makes every
//! idle wait of the event loop arm a kernel timer, about a microsecond per
//! round trip.
//!
//! The thread starts [`THREAD_START_DELAY`] after the first link, not with
//! it: creating a thread, and killing it again at exit, is on the path of
//! an actor that serves one call and exits (`run_in_actor`), which is gone
//! by then.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::conn::Conn;

/// What a link does when its peer has been silent too long.
pub(crate) type OnSilence = Box<dyn FnOnce(&Conn, &str) + Send>;

/// One watched link.
struct Watched {
    conn: Weak<Conn>,
    heard: Arc<AtomicU64>,
    reader: AbortHandle,
    on_silence: Option<OnSilence>,
    last: u64,
    silent: u32,
}

struct Heartbeats {
    links: Mutex<Vec<Watched>>,
    /// The period, fixed by the first link.
    tick: Duration,
    /// [`IDLE`], [`SCHEDULED`] or [`RUNNING`].
    thread: AtomicU8,
}

/// No thread, and none scheduled (or the runtime that was to start it is gone).
const IDLE: u8 = 0;
/// A task of some runtime starts the thread soon.
const SCHEDULED: u8 = 1;
/// The thread runs (or could not be created: that was said once).
const RUNNING: u8 = 2;

static HEARTBEATS: OnceLock<Heartbeats> = OnceLock::new();

fn lock(h: &Heartbeats) -> MutexGuard<'_, Vec<Watched>> {
    h.links.lock().unwrap_or_else(|p| p.into_inner())
}

/// Watches `conn`, whose reader counts received messages in `heard`; after
/// `timeout` of silence `reader` is stopped and `on_silence` runs. The first
/// call fixes the period for the process (every link of an actor shares its
/// configuration).
pub(crate) fn watch(
    conn: &Arc<Conn>,
    heard: Arc<AtomicU64>,
    reader: AbortHandle,
    timeout: Duration,
    on_silence: OnSilence,
) {
    let beats = HEARTBEATS.get_or_init(|| Heartbeats {
        links: Mutex::new(Vec::new()),
        tick: timeout / 3,
        thread: AtomicU8::new(IDLE),
    });
    lock(beats).push(Watched {
        conn: Arc::downgrade(conn),
        heard,
        reader,
        on_silence: Some(on_silence),
        last: 0,
        silent: 0,
    });
    if beats.thread.compare_exchange(IDLE, SCHEDULED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        start_thread_soon(beats);
    }
}

/// How long after the first link the heartbeat thread starts; its first
/// check still comes one tick after that link.
const THREAD_START_DELAY: Duration = Duration::from_millis(20);

/// Starts the thread [`THREAD_START_DELAY`] from now on the current
/// runtime (at once outside one, or when a tick is that short). Should
/// that runtime end first, the next link schedules it again.
fn start_thread_soon(beats: &'static Heartbeats) {
    let tick = beats.tick;
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if tick > THREAD_START_DELAY => {
            /// Gives the start back to the next link if the task is dropped
            /// (its runtime shut down) before it ran.
            struct Rearm(&'static Heartbeats);
            impl Drop for Rearm {
                fn drop(&mut self) {
                    let _ =
                        self.0.thread.compare_exchange(SCHEDULED, IDLE, Ordering::AcqRel, Ordering::Acquire);
                }
            }
            let rearm = Rearm(beats);
            rt.spawn(async move {
                // Moved in whole (a field alone would be captured), so it
                // is dropped with the task.
                let rearm = rearm;
                tokio::time::sleep(THREAD_START_DELAY).await;
                start_thread(rearm.0, tick - THREAD_START_DELAY);
            });
        }
        _ => start_thread(beats, tick),
    }
}

/// Starts the thread, whose first check comes after `first`.
fn start_thread(beats: &'static Heartbeats, first: Duration) {
    beats.thread.store(RUNNING, Ordering::Release);
    let tick = beats.tick;
    let spawned = std::thread::Builder::new().name("actor-heartbeat".into()).spawn(move || {
        std::thread::sleep(first);
        loop {
            check(beats, tick);
            std::thread::sleep(tick);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the heartbeat thread; silent peers are found by TCP keepalive only");
    }
}

/// One look at every link: pings the silent, ends the dead.
fn check(beats: &Heartbeats, tick: Duration) {
    let mut silent_links = Vec::new();
    lock(beats).retain_mut(|w| {
        let Some(conn) = w.conn.upgrade().filter(|c| !c.is_closed()) else { return false };
        let now = w.heard.load(Ordering::Relaxed);
        if now != w.last {
            (w.last, w.silent) = (now, 0);
            return true;
        }
        w.silent += 1;
        // The first tick can come at any time after the link's last
        // message: four silent ticks make at least the whole timeout.
        if w.silent <= 3 {
            conn.ping(u64::from(w.silent));
            return true;
        }
        w.reader.abort();
        silent_links.push((conn, w.on_silence.take()));
        false
    });
    // Outside the lock: ending a link may register or end others.
    for (conn, on_silence) in silent_links {
        let timeout = tick * 3;
        tracing::warn!(peer = %conn.peer(), ?timeout, "the peer stopped answering; closing the channel");
        let reason = format!("the peer did not answer for {timeout:?} (stopped, hung, or the link broke)");
        if let Some(f) = on_silence {
            f(&conn, &reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeats(tick: Duration) -> &'static Heartbeats {
        Box::leak(Box::new(Heartbeats {
            links: Mutex::new(Vec::new()),
            tick,
            thread: AtomicU8::new(SCHEDULED),
        }))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// A runtime that ends before the delay leaves the start to the next
    /// link, rather than leaving links unwatched for good.
    #[test]
    fn a_start_scheduled_on_a_runtime_that_ends_is_given_back() {
        let beats = heartbeats(Duration::from_secs(60));
        let rt = runtime();
        rt.block_on(async { start_thread_soon(beats) });
        assert_eq!(beats.thread.load(Ordering::Acquire), SCHEDULED);
        drop(rt);
        assert_eq!(beats.thread.load(Ordering::Acquire), IDLE);
    }

    #[test]
    fn the_thread_starts_after_the_delay() {
        let beats = heartbeats(Duration::from_secs(60));
        runtime().block_on(async {
            start_thread_soon(beats);
            assert_eq!(beats.thread.load(Ordering::Acquire), SCHEDULED);
            // The delay is a floor, not a promise: wait for the start itself,
            // bounded so a start that never comes fails the test.
            let started = async {
                while beats.thread.load(Ordering::Acquire) != RUNNING {
                    tokio::time::sleep(THREAD_START_DELAY).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), started).await.expect("the thread never started");
        });
    }

    #[test]
    fn outside_a_runtime_the_thread_starts_at_once() {
        let beats = heartbeats(Duration::from_secs(60));
        start_thread_soon(beats);
        assert_eq!(beats.thread.load(Ordering::Acquire), RUNNING);
    }
}
