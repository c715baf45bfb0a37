//! Introspection: what an actor reports about itself to a peer of its tree
//! (the built-in [`INTROSPECT_FN`]), for tools such as the `actor` command.
//!
//! Only what the actor knows anyway is reported, so answering costs a few
//! lock acquisitions: its channels (tracked here as they open) give its
//! parent and its calls in flight; its nurseries' children (tracked here as
//! they start) give its children and their restart counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use actor_transport::{CallId, CallKind, Completion, ErrorKind, RemoteError, Uid};
use serde::{Deserialize, Serialize};

use crate::conn::Conn;
use crate::local::Actor;
use crate::portal::ChildControl;
use crate::relation::Peer;

/// The function every actor serves to describe itself to a peer of its
/// tree: no arguments, result an [`Introspection`].
pub const INTROSPECT_FN: &str = "actor::introspect";

/// What an actor reports about itself (see [`Portal::introspect`](crate::Portal::introspect)).
///
/// Non-exhaustive: later versions may add fields, at the end of its wire
/// form (see PROTOCOL.md), so build none yourself; read the ones you need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Introspection {
    /// The actor's uid.
    pub uid: Uid,
    /// Its process id, on its host.
    pub pid: u32,
    /// The name of the host it runs on.
    pub host: String,
    /// The actor that spawned it; `None` for a root or standalone actor.
    pub parent: Option<Uid>,
    /// When it started, in milliseconds since the Unix epoch (its host's clock).
    pub started_at_ms: u64,
    /// Calls open on its channels right now, served or made (this
    /// introspection call not counted).
    pub calls_in_flight: u64,
    /// The children its nurseries run now, in start order.
    pub children: Vec<ChildReport>,
    /// Calls of its remote functions it has served since it started (each
    /// counted when admitted; built-in calls such as this one not counted).
    /// Two reports a known time apart give its call rate, as `actor top`
    /// shows. Zero from an actor that predates the field.
    #[serde(default)]
    pub calls_served: u64,
}

/// One child of an actor, as that actor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChildReport {
    /// The uid of the process serving the child now (each restart has its own).
    pub uid: Uid,
    /// How many times its nursery has restarted it.
    pub restarts: u32,
}

/// What this process tracks to answer: one actor per process, so the
/// registries are process-wide rather than fields of [`Actor`].
struct Tracked {
    links: Vec<(Weak<Conn>, Peer)>,
    children: Vec<ChildControl>,
}

static TRACKED: Mutex<Tracked> = Mutex::new(Tracked { links: Vec::new(), children: Vec::new() });
static STARTED: OnceLock<SystemTime> = OnceLock::new();
static SERVED: AtomicU64 = AtomicU64::new(0);

fn tracked() -> MutexGuard<'static, Tracked> {
    TRACKED.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tracked {
    /// Forgets closed channels and finished children, so the lists stay as
    /// long as what is alive.
    fn prune(&mut self) {
        self.links.retain(|(c, _)| c.upgrade().is_some_and(|c| !c.is_closed()));
        self.children.retain(|c| !c.done.is_cancelled());
    }
}

/// Records the moment this process's actor started.
pub(crate) fn mark_started() {
    let _ = STARTED.set(SystemTime::now());
}

/// Counts a call of a remote function this actor admitted.
pub(crate) fn count_served() {
    SERVED.fetch_add(1, Ordering::Relaxed);
}

/// Tracks a channel just opened to a peer that is our `relation`.
pub(crate) fn track_link(conn: &Arc<Conn>, relation: Peer) {
    let mut t = tracked();
    t.prune();
    t.links.push((Arc::downgrade(conn), relation));
}

/// Tracks a child a nursery just started, until its last process is reaped.
pub(crate) fn track_child(control: &ChildControl) {
    let mut t = tracked();
    t.prune();
    t.children.push(control.clone());
}

/// This actor's report, now.
fn snapshot(actor: &Actor) -> Introspection {
    let mut t = tracked();
    t.prune();
    let live: Vec<(Arc<Conn>, Peer)> = t.links.iter().filter_map(|(c, r)| Some((c.upgrade()?, *r))).collect();
    let children = t
        .children
        .iter()
        .map(|c| ChildReport {
            uid: c.current().conn.peer().clone(),
            restarts: c.restarts.load(Ordering::SeqCst),
        })
        .collect();
    drop(t);
    let started = STARTED.get().copied().unwrap_or(UNIX_EPOCH);
    Introspection {
        uid: actor.uid.clone(),
        pid: std::process::id(),
        host: hostname(),
        parent: live.iter().find(|(_, r)| *r == Peer::Parent).map(|(c, _)| c.peer().clone()),
        started_at_ms: started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        calls_in_flight: live.iter().map(|(c, _)| c.open_calls() as u64).sum(),
        children,
        calls_served: SERVED.load(Ordering::Relaxed),
    }
}

/// The host name to report: an agent's own, or `ACTOR_HOST` (which a host
/// agent sets for the actors it starts), else the kernel's (Linux only,
/// like the rest of the runtime).
fn hostname() -> String {
    let configured = crate::agent::host_name().or_else(|| std::env::var(crate::config::ENV_HOST).ok());
    if let Some(host) = configured.filter(|h| !h.is_empty()) {
        return host;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}

/// Serves the peer's [`INTROSPECT_FN`] call `cid`. Any peer admitted here
/// proved it belongs to the tree, so any may ask; the arguments are ignored.
pub(crate) fn serve(conn: &Arc<Conn>, actor: &Arc<Actor>, cid: CallId, kind: CallKind) {
    if kind != CallKind::Single {
        let e = RemoteError::new(
            actor.uid.clone(),
            ErrorKind::Protocol,
            "actor::WrongCallKind",
            format!("`{INTROSPECT_FN}` is a single call"),
        );
        return conn.refuse(cid, e);
    }
    // Taken before the call is admitted, so it does not count itself.
    let report = snapshot(actor);
    conn.admit(cid, CallKind::Single, 0, actor.token().child_token());
    let how = match crate::registry::encode(&report, || format!("the result of `{INTROSPECT_FN}`")) {
        Ok(value) => Completion::Returned(value),
        Err(e) => Completion::Failed(Box::new(e.to_remote(&actor.uid))),
    };
    let conn = conn.clone();
    actor.spawn(async move { conn.complete(cid, INTROSPECT_FN, how).await });
}
