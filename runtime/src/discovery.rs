//! Discovery: finding actors by name through the arbiter.
//!
//! The root actor connects to the arbiter at the configured address, or hosts
//! one itself when nothing listens there. Every actor registers its uid and
//! listening address and keeps that connection open for its lifetime, so its
//! entry disappears when the actor does, however it ends. If the arbiter goes
//! first, the actor registers again on the next one (`arbiter_link`); this
//! module says how to reach or host one, and asks it. A tree that keeps its
//! registry in etcd (the `etcd` feature) asks etcd instead, through the same
//! functions (`etcd_registry`).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::{ArbiterClient, ArbiterConfig, ClientError, Entry};
use actor_transport::{Addr, HandshakeError, Listener, Uid};

use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::{self, Actor};
use crate::portal::Portal;

/// Connects to the arbiter at `config.arbiter`, or hosts one there if nothing
/// listens (or at once on a free loopback port, for a private arbiter);
/// returns the client and, when hosted, the embedded arbiter.
pub(crate) async fn connect_or_host(
    actor: &Actor,
) -> Result<(ArbiterClient, Option<actor_arbiter::ArbiterHandle>)> {
    if actor.config.private_arbiter {
        let addr = Addr::loopback(0);
        return match host_at(actor, &addr).await? {
            Some(hosted) => Ok(hosted),
            None => Err(Error::Arbiter(format!("cannot host a private arbiter at {addr}"))),
        };
    }
    connect_or_host_at(actor, &actor.config.arbiter, actor.config.embed_arbiter).await
}

/// Connects to the arbiter at `addr`, or, if `host` and nothing listens,
/// hosts one there; with several programs racing to host, the loser
/// connects to the winner's.
async fn connect_or_host_at(
    actor: &Actor,
    addr: &Addr,
    host: bool,
) -> Result<(ArbiterClient, Option<actor_arbiter::ArbiterHandle>)> {
    let hs = actor.handshake_config();
    let token = actor.config.token.as_ref();
    let tls = actor.config.tls.as_ref();
    for _ in 0..3 {
        match ArbiterClient::connect_with(addr, &hs, token, tls).await {
            Ok(client) => return Ok((client, None)),
            Err(ClientError::Handshake { source, .. }) if refused(&source) && host && hostable(addr) => {}
            Err(e) => return Err(arbiter_error(addr, e)),
        }
        if let Some(hosted) = host_at(actor, addr).await? {
            return Ok(hosted);
        }
    }
    Err(Error::Arbiter(format!("cannot reach or host an arbiter at {addr}")))
}

/// Hosts an embedded arbiter at `addr` and connects to it; `None` if another
/// program bound it first.
async fn host_at(
    actor: &Actor,
    addr: &Addr,
) -> Result<Option<(ArbiterClient, Option<actor_arbiter::ArbiterHandle>)>> {
    // The embedded arbiter is a listener like any other: no plaintext
    // beyond this host (the rule the daemon and ACTOR_BIND follow).
    actor.config.check_listen(addr).map_err(|e| match e {
        Error::Config(reason) => Error::Config(format!("cannot host an embedded arbiter: {reason}")),
        other => other,
    })?;
    let listener = match Listener::bind(addr).await {
        Ok(l) => l,
        // Another root won the race to host it: connect to theirs.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(None),
        Err(e) => return Err(Error::Arbiter(format!("cannot host an arbiter at {addr}: {e}"))),
    };
    let mut config = ArbiterConfig::new(embedded_uid());
    config.token = actor.config.token.clone();
    config.handshake_timeout = actor.config.handshake_timeout;
    let handle = actor_arbiter::spawn_embedded_tls(listener, config, actor.config.tls.clone()).await;
    let hosted = handle.local_addr().clone();
    // At INFO, so that a tree's log says which process holds the registry.
    tracing::info!(addr = %hosted, pid = std::process::id(), "this process hosts the arbiter");
    let hs = actor.handshake_config();
    let client =
        ArbiterClient::connect_with(&hosted, &hs, actor.config.token.as_ref(), actor.config.tls.as_ref())
            .await
            .map_err(|e| arbiter_error(&hosted, e))?;
    Ok(Some((client, Some(handle))))
}

/// The uid of an arbiter embedded in this process: its id says so, and
/// which process hosts it, to everyone who connects.
fn embedded_uid() -> Uid {
    let random = Uid::new("arbiter");
    Uid { name: random.name, id: format!("{EMBEDDED_PREFIX}{}-{}", std::process::id(), random.id) }
}

/// How the id of an embedded arbiter's uid begins.
const EMBEDDED_PREFIX: &str = "embedded-";

/// Whether `arbiter` is an arbiter embedded in a program (not a daemon):
/// only such an address is taken over when its host goes away, so that a
/// restarted daemon finds its address free.
pub(crate) fn is_embedded(arbiter: &Uid) -> bool {
    arbiter.id.starts_with(EMBEDDED_PREFIX)
}

/// Whether an arbiter could be hosted at `addr` by this process: a Unix
/// socket or a TCP address that is not obviously another host's. A remote
/// address where nothing answers is an arbiter that is down, not a vacancy.
fn hostable(addr: &Addr) -> bool {
    match addr {
        Addr::Unix(_) => true,
        Addr::Tcp { host, .. } => match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip.is_unspecified() || local_ip(ip),
            Err(_) => host == "localhost",
        },
    }
}

/// Whether `ip` belongs to an interface of this host: binding a UDP socket
/// to it (port 0) succeeds only then, and sends nothing.
fn local_ip(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Connects to the arbiter at `addr` again after losing it (hosting one
/// there if `host` and nothing answers) and registers this actor.
pub(crate) async fn reconnect(actor: &Actor, addr: &Addr, host: bool) -> Result<ArbiterClient> {
    let (client, embedded) = connect_or_host_at(actor, addr, host).await?;
    if embedded.is_some() {
        tracing::info!(%addr, pid = std::process::id(), "took over hosting the arbiter after its host went away");
        actor.set_embedded(embedded);
    }
    client.register(&actor.listen).await.map_err(|e| Error::Arbiter(e.to_string()))?;
    Ok(client)
}

fn refused(e: &HandshakeError) -> bool {
    matches!(e, HandshakeError::Connect { source, .. }
        if matches!(source.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable | io::ErrorKind::NotFound))
}

fn arbiter_error(addr: &Addr, e: ClientError) -> Error {
    match e {
        // An arbiter that refuses our secret belongs to another tree (another
        // user's, or one started with another token): say so, not "not an arbiter".
        ClientError::Handshake { ref source, .. } if matches!(**source, HandshakeError::Refused { .. }) => {
            Error::Arbiter(format!(
                "the arbiter at {addr} refused us ({e}); it serves a tree with another secret: \
                 set {} (or {}) to that tree's secret, or point {} at another arbiter",
                crate::ENV_TOKEN,
                crate::ENV_TOKEN_FILE,
                crate::ENV_ARBITER
            ))
        }
        // Nothing accepted the connection (refused, unroutable, or silent
        // until the connect timed out): the arbiter is down or elsewhere.
        ClientError::Handshake { ref source, .. } if matches!(**source, HandshakeError::Connect { .. }) => {
            Error::Arbiter(format!(
                "no arbiter answers at {addr} ({e}); start it there, or point {} at the cluster's arbiter",
                crate::ENV_ARBITER
            ))
        }
        ClientError::Handshake { .. } | ClientError::NotAnArbiter { .. } => Error::Arbiter(format!(
            "something that is not a working arbiter answers at {addr} ({e}); \
             stop it, or point ACTOR_ARBITER at the cluster's arbiter"
        )),
        other => Error::Arbiter(other.to_string()),
    }
}

/// Runs `op` on the live arbiter client; if the arbiter is lost meanwhile,
/// again on the next one, all within the actor's bound for reaching an
/// arbiter ([`Actor::arbiter_wait`]): a lookup made while the link
/// reconnects is answered by the new arbiter instead of failing.
async fn ask<T, F, Fut>(op: F) -> Result<(Arc<Actor>, T)>
where
    F: Fn(Arc<ArbiterClient>) -> Fut,
    Fut: Future<Output = std::result::Result<T, ClientError>>,
{
    let actor = local::current()?;
    let deadline = tokio::time::Instant::now() + actor.arbiter_wait();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let client = actor.arbiter_link().client(Some(left)).await?;
        match op(client).await {
            Err(ClientError::Disconnected { .. }) if tokio::time::Instant::now() < deadline => {
                // Let the link's task see the loss before asking it again.
                tokio::task::yield_now().await;
            }
            r => return r.map(|v| (actor, v)).map_err(|e| Error::Arbiter(e.to_string())),
        }
    }
}

/// This actor and the tree's registry in etcd, if it keeps it there.
#[cfg(feature = "etcd")]
fn in_etcd() -> Result<Option<(Arc<Actor>, Arc<crate::etcd_registry::EtcdRegistry>)>> {
    let actor = local::current()?;
    Ok(actor.etcd().cloned().map(|etcd| (actor, etcd)))
}

async fn client() -> Result<(Arc<Actor>, Arc<ArbiterClient>)> {
    let actor = local::current()?;
    let client = actor.arbiter_client().await?;
    Ok((actor, client))
}

/// A portal to the actor registered as `entry`, reusing a live connection.
pub(crate) async fn connect_to(actor: &Arc<Actor>, entry: &Entry) -> Result<Portal> {
    Ok(Portal::peer(connect_conn(actor, entry).await?))
}

/// The channel to the actor registered as `entry`, reusing a live one.
pub(crate) async fn connect_conn(actor: &Arc<Actor>, entry: &Entry) -> Result<Arc<Conn>> {
    if let Some(conn) = actor.peers.get(&entry.uid) {
        return Ok(conn);
    }
    let (channel, peer) = actor.connect(&entry.addr, actor.config.token.as_ref()).await?;
    if peer != entry.uid {
        return Err(Error::Arbiter(format!(
            "{} is registered at {} but `{peer}` answered there",
            entry.uid, entry.addr
        )));
    }
    let conn = link::start(channel, peer, actor_transport::Side::Connector, Peer::Other, actor.clone());
    actor.peers.remember(conn.clone());
    Ok(conn)
}

/// Every entry registered under `name`, asking the live arbiter as
/// [`find_actor`] does.
pub(crate) async fn find_all(name: &str) -> Result<Vec<Entry>> {
    let (_, entries) = ask(|c| async move { c.find(name).await }).await?;
    Ok(entries)
}

/// Finds an actor registered under `name` and returns a portal to it, or
/// `None` if no actor has that name. With several, picks the first by uid.
///
/// While this actor reconnects to a lost arbiter, the lookup waits for the
/// next one, at most twice the handshake timeout (10 s by default).
///
/// # Errors
///
/// [`Error::Arbiter`] if the arbiter cannot be asked (the message says
/// whether it was unreachable or did not answer); [`Error::Handshake`] if
/// the actor cannot be reached; [`Error::NotRunning`] outside `actor::run`.
pub async fn find_actor(name: &str) -> Result<Option<Portal>> {
    #[cfg(feature = "etcd")]
    if let Some((actor, etcd)) = in_etcd()? {
        let entries = etcd.find(name).await?;
        return match entries.first() {
            Some(entry) => Ok(Some(connect_to(&actor, entry).await?)),
            None => Ok(None),
        };
    }
    let (actor, entries) = ask(|c| async move { c.find(name).await }).await?;
    match entries.first() {
        Some(entry) => Ok(Some(connect_to(&actor, entry).await?)),
        None => Ok(None),
    }
}

/// Waits until an actor registers under `name`, then returns a portal to it.
/// Dropping the future stops waiting (the arbiter is told). If the arbiter is
/// lost meanwhile, the wait goes on at the next one once this actor has
/// reconnected.
///
/// # Errors
///
/// As [`find_actor`].
pub async fn wait_for_actor(name: &str) -> Result<Portal> {
    #[cfg(feature = "etcd")]
    if let Some((actor, etcd)) = in_etcd()? {
        let entries = etcd.wait_for(name).await?;
        let entry = entries
            .first()
            .ok_or_else(|| Error::Arbiter(format!("etcd woke a waiter for `{name}` with no entry")))?;
        return connect_to(&actor, entry).await;
    }
    let actor = local::current()?;
    let entries = loop {
        // No bound here: the caller bounds the whole wait if it wants one.
        let client = actor.arbiter_link().client(None).await?;
        match client.wait_for(name).await {
            Err(ClientError::Disconnected { .. }) => tokio::task::yield_now().await,
            r => break r.map_err(|e| Error::Arbiter(e.to_string()))?,
        }
    };
    let entry = entries
        .first()
        .ok_or_else(|| Error::Arbiter(format!("the arbiter woke a waiter for `{name}` with no entry")))?;
    connect_to(&actor, entry).await
}

/// As [`wait_for_actor`], giving up after `timeout`.
///
/// # Errors
///
/// [`Error::Timeout`] if no actor registered as `name` in time; otherwise as
/// [`find_actor`].
pub async fn wait_for_actor_within(name: &str, timeout: Duration) -> Result<Portal> {
    tokio::time::timeout(timeout, wait_for_actor(name)).await.map_err(|_| {
        // Say which it was: nobody registered the name, or no arbiter was
        // there to ask.
        let arbiter = match local::current() {
            Ok(actor) => reachability(&actor),
            Err(_) => "no actor runs here",
        };
        Error::Timeout { what: format!("an actor named `{name}` to register ({arbiter})"), after: timeout }
    })?
}

/// Whether the registry answers this actor now, for messages.
fn reachability(actor: &Actor) -> &'static str {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = actor.etcd() {
        return if etcd.is_reachable() {
            "etcd is reachable"
        } else {
            "etcd is unreachable; this actor keeps retrying"
        };
    }
    if actor.arbiter_link().is_live() {
        "the arbiter is reachable"
    } else {
        "the arbiter is unreachable; this actor keeps trying to reconnect"
    }
}

/// Every registered actor: `(uid, address)` entries sorted by name then uid.
///
/// # Errors
///
/// As [`find_actor`].
pub async fn list_actors() -> Result<Vec<Entry>> {
    #[cfg(feature = "etcd")]
    if let Some((_, etcd)) = in_etcd()? {
        return etcd.list().await;
    }
    let (_, entries) = ask(|c| async move { c.list().await }).await?;
    Ok(entries)
}

/// A portal to the arbiter this actor uses. The arbiter serves the functions
/// named in [`actor_arbiter`] (e.g. `portal.run_by_name(actor::arbiter::LIST, &())`).
///
/// # Errors
///
/// [`Error::Arbiter`] if this actor has no arbiter; [`Error::Handshake`] if it
/// cannot be reached; [`Error::NotRunning`] outside `actor::run`.
pub async fn get_arbiter() -> Result<Portal> {
    let (actor, client) = client().await?;
    let entry = Entry { uid: client.arbiter_uid().clone(), addr: client.addr().clone() };
    connect_to(&actor, &entry).await
}

/// A portal to the actor registered as `entry` (one of
/// [`list_actors`](crate::list_actors)), reusing a live connection to it:
/// reaches one actor of several sharing a name, which
/// [`find_actor`](crate::find_actor) cannot choose between.
///
/// # Errors
///
/// [`Error::Handshake`] if it cannot be reached; [`Error::Arbiter`] if
/// another actor answers at its address; [`Error::NotRunning`] outside
/// `actor::run`.
pub async fn connect_to_entry(entry: &actor_arbiter::Entry) -> Result<Portal> {
    connect_to(&crate::local::current()?, entry).await
}
