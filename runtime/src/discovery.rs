//! Discovery: finding actors by name through the arbiter.
//!
//! The root actor connects to the arbiter at the configured address, or hosts
//! one itself when nothing listens there. Every actor registers its uid and
//! listening address and keeps that connection open for its lifetime, so its
//! entry disappears when the actor does, however it ends.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::{ArbiterClient, ArbiterConfig, ClientError, Entry};
use actor_transport::{Addr, HandshakeError, Listener, Uid};

use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::{self, Actor};
use crate::portal::Portal;

/// Connects to the arbiter at `config.arbiter`, or hosts one there if nothing
/// listens; returns the client and, when hosted, the embedded arbiter.
pub(crate) async fn connect_or_host(
    actor: &Actor,
) -> Result<(ArbiterClient, Option<actor_arbiter::ArbiterHandle>)> {
    let addr = actor.config.arbiter.clone();
    let hs = actor.handshake_config();
    let token = actor.config.token.as_ref();
    let tls = actor.config.tls.as_ref();
    for _ in 0..3 {
        match ArbiterClient::connect_with(&addr, &hs, token, tls).await {
            Ok(client) => return Ok((client, None)),
            Err(ClientError::Handshake { source, .. }) if refused(&source) && actor.config.embed_arbiter => {}
            Err(e) => return Err(arbiter_error(&addr, e)),
        }
        // The embedded arbiter is a listener like any other: no plaintext
        // beyond this host (the rule the daemon and ACTOR_BIND follow).
        actor.config.check_listen(&addr).map_err(|e| match e {
            Error::Config(reason) => Error::Config(format!("cannot host an embedded arbiter: {reason}")),
            other => other,
        })?;
        let listener = match Listener::bind(&addr).await {
            Ok(l) => l,
            // Another root won the race to host it: connect to theirs.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::Arbiter(format!("cannot host an arbiter at {addr}: {e}"))),
        };
        let mut config = ArbiterConfig::new(Uid::new("arbiter"));
        config.token = actor.config.token.clone();
        config.handshake_timeout = actor.config.handshake_timeout;
        let handle = actor_arbiter::spawn_embedded_tls(listener, config, actor.config.tls.clone()).await;
        let hosted = handle.local_addr().clone();
        tracing::info!(addr = %hosted, "hosting an embedded arbiter");
        let client = ArbiterClient::connect_with(&hosted, &hs, token, tls)
            .await
            .map_err(|e| arbiter_error(&hosted, e))?;
        return Ok((client, Some(handle)));
    }
    Err(Error::Arbiter(format!("cannot reach or host an arbiter at {addr}")))
}

fn refused(e: &HandshakeError) -> bool {
    matches!(e, HandshakeError::Connect { source, .. }
        if matches!(source.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable))
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
        ClientError::Handshake { .. } | ClientError::NotAnArbiter { .. } => Error::Arbiter(format!(
            "something that is not a working arbiter answers at {addr} ({e}); \
             stop it, or point ACTOR_ARBITER at the cluster's arbiter"
        )),
        other => Error::Arbiter(other.to_string()),
    }
}

/// Connects to the arbiter at `addr` and registers this actor there.
pub(crate) async fn register(actor: &Actor, addr: &Addr) -> Result<ArbiterClient> {
    let client = ArbiterClient::connect_with(
        addr,
        &actor.handshake_config(),
        actor.config.token.as_ref(),
        actor.config.tls.as_ref(),
    )
    .await
    .map_err(|e| arbiter_error(addr, e))?;
    client.register(&actor.listen).await.map_err(|e| Error::Arbiter(e.to_string()))?;
    Ok(client)
}

async fn client() -> Result<(Arc<Actor>, Arc<ArbiterClient>)> {
    let actor = local::current()?;
    let client = actor.arbiter_client().await?;
    Ok((actor, client))
}

/// A portal to the actor registered as `entry`, reusing a live connection.
pub(crate) async fn connect_to(actor: &Arc<Actor>, entry: &Entry) -> Result<Portal> {
    if let Some(conn) = actor.peers.get(&entry.uid) {
        return Ok(Portal::peer(conn));
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
    Ok(Portal::peer(conn))
}

/// Finds an actor registered under `name` and returns a portal to it, or
/// `None` if no actor has that name. With several, picks the first by uid.
///
/// # Errors
///
/// [`Error::Arbiter`] if the arbiter cannot be asked; [`Error::Handshake`] if
/// the actor cannot be reached; [`Error::NotRunning`] outside `actor::run`.
pub async fn find_actor(name: &str) -> Result<Option<Portal>> {
    let (actor, client) = client().await?;
    let entries = client.find(name).await.map_err(|e| Error::Arbiter(e.to_string()))?;
    match entries.first() {
        Some(entry) => Ok(Some(connect_to(&actor, entry).await?)),
        None => Ok(None),
    }
}

/// Waits until an actor registers under `name`, then returns a portal to it.
/// Dropping the future stops waiting (the arbiter is told).
///
/// # Errors
///
/// As [`find_actor`].
pub async fn wait_for_actor(name: &str) -> Result<Portal> {
    let (actor, client) = client().await?;
    let entries = client.wait_for(name).await.map_err(|e| Error::Arbiter(e.to_string()))?;
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
    tokio::time::timeout(timeout, wait_for_actor(name)).await.map_err(|_| Error::Timeout {
        what: format!("an actor named `{name}` to register"),
        after: timeout,
    })?
}

/// Every registered actor: `(uid, address)` entries sorted by name then uid.
///
/// # Errors
///
/// As [`find_actor`].
pub async fn list_actors() -> Result<Vec<Entry>> {
    let (_, client) = client().await?;
    client.list().await.map_err(|e| Error::Arbiter(e.to_string()))
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
