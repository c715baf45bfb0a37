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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    pub calls_served: u64,
}

/// One child of an actor, as that actor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChildReport {
    /// The uid of the process serving the child now (each restart has its own).
    pub uid: Uid,
    /// How many times its nursery has restarted it.
    pub restarts: u32,
}

// Read by hand, not derived: fields may be added at the end of the wire
// form (PROTOCOL.md), and a derived reader refuses an array longer than the
// fields it knows, so a newer actor would be unreadable to an older tool.
impl<'de> Deserialize<'de> for Introspection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Introspection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an introspection: an array of at least 7 fields, or a map of them")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Introspection, A::Error> {
                const AT_LEAST: &str = "an introspection of at least 7 fields";
                let report = Introspection {
                    uid: required(&mut seq, 0, AT_LEAST)?,
                    pid: required(&mut seq, 1, AT_LEAST)?,
                    host: required(&mut seq, 2, AT_LEAST)?,
                    parent: required(&mut seq, 3, AT_LEAST)?,
                    started_at_ms: required(&mut seq, 4, AT_LEAST)?,
                    calls_in_flight: required(&mut seq, 5, AT_LEAST)?,
                    children: required(&mut seq, 6, AT_LEAST)?,
                    // Absent from actors that predate it.
                    calls_served: seq.next_element()?.unwrap_or(0),
                };
                skip_rest(seq)?;
                Ok(report)
            }
            /// The named form, as a tool's JSON holds it.
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Introspection, A::Error> {
                #[derive(Deserialize)]
                struct Named {
                    uid: Uid,
                    pid: u32,
                    host: String,
                    parent: Option<Uid>,
                    started_at_ms: u64,
                    calls_in_flight: u64,
                    children: Vec<ChildReport>,
                    #[serde(default)]
                    calls_served: u64,
                }
                let n = Named::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Introspection {
                    uid: n.uid,
                    pid: n.pid,
                    host: n.host,
                    parent: n.parent,
                    started_at_ms: n.started_at_ms,
                    calls_in_flight: n.calls_in_flight,
                    children: n.children,
                    calls_served: n.calls_served,
                })
            }
        }
        d.deserialize_any(Fields)
    }
}

impl<'de> Deserialize<'de> for ChildReport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ChildReport;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a child report: an array of at least 2 fields, or a map of them")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ChildReport, A::Error> {
                const AT_LEAST: &str = "a child report of at least 2 fields";
                let report = ChildReport {
                    uid: required(&mut seq, 0, AT_LEAST)?,
                    restarts: required(&mut seq, 1, AT_LEAST)?,
                };
                skip_rest(seq)?;
                Ok(report)
            }
            /// The named form, as a tool's JSON holds it.
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ChildReport, A::Error> {
                #[derive(Deserialize)]
                struct Named {
                    uid: Uid,
                    restarts: u32,
                }
                let n = Named::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ChildReport { uid: n.uid, restarts: n.restarts })
            }
        }
        d.deserialize_any(Fields)
    }
}

/// The next element of `seq`, which must be there: it is field `index`.
fn required<'de, A: serde::de::SeqAccess<'de>, T: Deserialize<'de>>(
    seq: &mut A,
    index: usize,
    expected: &'static str,
) -> Result<T, A::Error> {
    seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(index, &expected))
}

/// Reads past the fields a later version added.
fn skip_rest<'de, A: serde::de::SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Introspection, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }

    #[test]
    fn a_report_with_fields_added_later_is_read_and_one_without_calls_served_too() {
        let (a, b) = (Uid::new("a"), Uid::new("b"));
        let child = (b.clone(), 2u32, "a field added later");
        let longer = rmp_serde::to_vec(&(&a, 7u32, "h", Some(&b), 1u64, 3u64, vec![&child], 9u64, "added"))
            .expect("encode");
        let report = decode(&longer).expect("a longer report");
        assert_eq!((report.pid, report.calls_served, report.children.len()), (7, 9, 1));
        assert_eq!((&report.children[0].uid, report.children[0].restarts), (&b, 2));
        let older = rmp_serde::to_vec(&(&a, 7u32, "h", None::<Uid>, 1u64, 3u64, Vec::<(Uid, u32)>::new()))
            .expect("encode");
        assert_eq!(decode(&older).expect("an older report").calls_served, 0);
        let short = rmp_serde::to_vec(&(&a, 7u32, "h", None::<Uid>, 1u64, 3u64)).expect("encode");
        assert!(decode(&short).is_err());
        // And what this version writes, it reads.
        let same = Introspection { calls_served: 5, ..decode(&longer).expect("a longer report") };
        assert_eq!(decode(&rmp_serde::to_vec(&same).expect("encode")).expect("its own"), same);
    }
}
