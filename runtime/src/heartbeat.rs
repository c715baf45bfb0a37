//! Heartbeats for every link of this process, checked from one plain thread.
//!
//! A reader only counts the messages it receives. Every third of the peer
//! timeout this thread looks at each link: one that heard nothing gets a
//! ping; one silent for the whole timeout has its reader stopped and is
//! ended, its calls failing with the reason. Keeping this off the actor's
//! runtime matters for latency: a timer always pending there makes every
//! idle wait of the event loop arm a kernel timer, about a microsecond per
//! round trip.

use std::sync::atomic::{AtomicU64, Ordering};
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
}

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
    let beats = HEARTBEATS.get_or_init(|| {
        let tick = timeout / 3;
        if let Err(e) = std::thread::Builder::new().name("actor-heartbeat".into()).spawn(move || run(tick)) {
            tracing::warn!(error = %e, "cannot start the heartbeat thread; silent peers are found by TCP keepalive only");
        }
        Heartbeats { links: Mutex::new(Vec::new()) }
    });
    lock(beats).push(Watched {
        conn: Arc::downgrade(conn),
        heard,
        reader,
        on_silence: Some(on_silence),
        last: 0,
        silent: 0,
    });
}

fn run(tick: Duration) {
    loop {
        std::thread::sleep(tick);
        let Some(beats) = HEARTBEATS.get() else { continue };
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
            let reason =
                format!("the peer did not answer for {timeout:?} (stopped, hung, or the link broke)");
            if let Some(f) = on_silence {
                f(&conn, &reason);
            }
        }
    }
}
