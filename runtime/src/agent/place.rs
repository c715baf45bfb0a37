//! The parent's side, first step: finding the agent a [`HostSelector`]
//! asks for, and what its host is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use actor_arbiter::Entry;
use actor_transport::{Addr, Uid};

use super::select::HostSelector;
use super::wire::{AGENT_NAME, HostInfo, INFO_FN};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::{self, Actor};
use crate::registry::{decode, encode_args};

/// The agent chosen for a spawn: the channel to it, and what it said of its
/// host.
pub(crate) struct Placement {
    pub conn: Arc<Conn>,
    pub info: HostInfo,
    /// Where the agent listens.
    pub addr: Addr,
}

/// Finds the agent `selector` asks for: directly at its address, or among
/// the agents registered with the arbiter. An agent's name and labels never
/// change, so what an agent said of its host is remembered by its uid:
/// agents known not to match are not contacted (a host cut off delays no
/// spawn elsewhere), and a name or address needs no fresh description. A
/// label asks every candidate (at once, each within the handshake timeout)
/// for its load, to pick the least busy.
///
/// # Errors
///
/// A message saying what was looked for and what was found: no agent at
/// all, none that matches (naming the hosts there are, and agents that did
/// not answer), a name several agents claim.
pub(crate) async fn place(
    actor: &Arc<Actor>,
    selector: &HostSelector,
) -> std::result::Result<Placement, String> {
    let (agents, skipped) = match selector.direct() {
        Some(addr) => {
            let conn = connect_direct(actor, addr).await.map_err(|e| e.to_string());
            (vec![(conn, addr.clone())], Vec::new())
        }
        None => {
            let entries = crate::discovery::find_all(AGENT_NAME)
                .await
                .map_err(|e| format!("cannot look host agents up: {e}"))?;
            let (candidates, skipped) = sift(entries, selector);
            let connects = candidates.into_iter().map(|entry| async move {
                let conn = crate::discovery::connect_conn(actor, &entry).await.map_err(|e| e.to_string());
                (conn, entry.addr)
            });
            (futures::future::join_all(connects).await, skipped)
        }
    };
    let bound = actor.config.handshake_timeout;
    let fresh = selector.weighs_load();
    let asked = agents.into_iter().map(|(conn, addr)| async move {
        let conn = conn.map_err(|e| format!("{addr}: {e}"))?;
        if let Some(info) = with_known(|k| k.get(conn.peer()).cloned()).filter(|_| !fresh) {
            return Ok((conn, info, addr));
        }
        let info = match tokio::time::timeout(bound, info(&conn)).await {
            Ok(r) => r.map_err(|e| format!("{addr}: {e}"))?,
            Err(_) => {
                return Err(format!("{addr}: {} did not describe its host within {bound:?}", conn.peer()));
            }
        };
        with_known(|k| k.insert(conn.peer().clone(), info.clone()));
        Ok((conn, info, addr))
    });
    let mut hosts = Vec::new();
    let mut silent = Vec::new();
    for r in futures::future::join_all(asked).await {
        match r {
            Ok(found) => hosts.push(found),
            Err(e) => silent.push(e),
        }
    }
    // Agents skipped as known not to match come last: they only name the
    // hosts there are, should nothing match.
    let described: Vec<(Uid, HostInfo)> =
        hosts.iter().map(|(c, h, _)| (c.peer().clone(), h.clone())).chain(skipped).collect();
    match selector.choose(&described) {
        Ok(i) if i < hosts.len() => {
            let (conn, info, addr) = hosts.swap_remove(i);
            Ok(Placement { conn, info, addr })
        }
        Ok(_) => Err(format!("internal: {selector} chose an agent it did not ask")),
        Err(e) if silent.is_empty() => Err(e),
        Err(e) => Err(format!("{e}; unreachable: {}", silent.join("; "))),
    }
}

/// What each agent said of its host, by agent uid.
static KNOWN: Mutex<Option<HashMap<Uid, HostInfo>>> = Mutex::new(None);

fn with_known<T>(f: impl FnOnce(&mut HashMap<Uid, HostInfo>) -> T) -> T {
    f(KNOWN.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new))
}

/// Splits the registered agents into those to contact and those known not
/// to match `selector` (with what they said); forgets agents no longer
/// registered.
fn sift(entries: Vec<Entry>, selector: &HostSelector) -> (Vec<Entry>, Vec<(Uid, HostInfo)>) {
    with_known(|known| {
        known.retain(|uid, _| entries.iter().any(|e| e.uid == *uid));
        let mut skipped = Vec::new();
        let mut candidates = Vec::new();
        for entry in entries {
            match known.get(&entry.uid) {
                Some(info) if !selector.matches(info) => skipped.push((entry.uid, info.clone())),
                _ => candidates.push(entry),
            }
        }
        (candidates, skipped)
    })
}

/// Channels to agents reached by address, kept for reuse.
static DIRECT: Mutex<Vec<(Addr, Weak<Conn>)>> = Mutex::new(Vec::new());

/// The channel to the agent at `addr`, reusing a live one.
async fn connect_direct(actor: &Arc<Actor>, addr: &Addr) -> Result<Arc<Conn>> {
    let known = {
        let mut direct = DIRECT.lock().unwrap_or_else(|p| p.into_inner());
        direct.retain(|(_, c)| c.upgrade().is_some_and(|c| !c.is_closed()));
        direct.iter().find(|(a, _)| a == addr).and_then(|(_, c)| c.upgrade())
    };
    if let Some(conn) = known {
        return Ok(conn);
    }
    let (channel, peer) = actor.connect(addr, actor.config.token.as_ref()).await?;
    if peer.name != AGENT_NAME {
        return Err(Error::msg(format!("`{peer}` answers at {addr}, which is not a host agent")));
    }
    let conn = link::start(channel, peer, actor_transport::Side::Connector, Peer::Other, actor.clone());
    DIRECT.lock().unwrap_or_else(|p| p.into_inner()).push((addr.clone(), Arc::downgrade(&conn)));
    Ok(conn)
}

/// Asks the agent behind `conn` to describe its host.
async fn info(conn: &Arc<Conn>) -> Result<HostInfo> {
    let args = encode_args(&(), || format!("arguments of `{INFO_FN}`"))?;
    let bytes = conn.call(INFO_FN, args).await?;
    decode(&bytes, || format!("the host description from `{}`", conn.peer()))
}

/// Every host whose agent is registered with this tree's arbiter and
/// answers, sorted by name, each as its agent describes it now. Agents that
/// do not answer within the handshake timeout are left out.
///
/// # Errors
///
/// [`Error::Arbiter`] if the arbiter cannot be asked; [`Error::NotRunning`]
/// outside `actor::run`.
pub async fn list_hosts() -> Result<Vec<HostInfo>> {
    let actor = local::current()?;
    let entries = crate::discovery::find_all(AGENT_NAME).await?;
    let bound = actor.config.handshake_timeout;
    let asked = entries.iter().map(|entry| {
        let actor = actor.clone();
        async move {
            let conn = crate::discovery::connect_conn(&actor, entry).await.ok()?;
            tokio::time::timeout(bound, info(&conn)).await.ok()?.ok()
        }
    });
    let mut hosts: Vec<HostInfo> = futures::future::join_all(asked).await.into_iter().flatten().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hosts)
}
