//! One thing a benchmark needs and the public API does not give: new
//! registrations, made the way a starting actor makes its own, at a chosen
//! rate, with whichever registry the tree uses (benches/registry.rs).

use std::time::{Duration, Instant};

use actor_arbiter::ArbiterClient;
use actor_transport::{HandshakeConfig, Uid};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::local::{self, Actor};

/// Registers `count` made-up actors (`bench-<i>`, at this actor's address)
/// with the tree's registry, `concurrency` at a time, each over a connection
/// of its own as a new actor process would; returns how long all took.
/// An arbiter entry leaves when its connection closes right after; an etcd
/// entry when its lease expires.
///
/// # Errors
///
/// The first registration that fails ([`Error::Arbiter`]), or
/// [`Error::NotRunning`] outside `actor::run`.
pub async fn register_many(count: usize, concurrency: usize) -> Result<Duration> {
    let actor = local::current()?;
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| register_one(&actor, Uid::new(format!("bench-{i}"))))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

async fn register_one(actor: &Actor, uid: Uid) -> Result<()> {
    #[cfg(feature = "etcd")]
    if let Some(config) = &actor.config.etcd {
        let registry = crate::etcd_registry::EtcdRegistry::connect(config, &uid, &actor.listen).await?;
        registry.register().await?;
        return Ok(());
    }
    let addr =
        actor.arbiter_addr().ok_or_else(|| Error::Arbiter("the tree runs without an arbiter".into()))?;
    let hs = HandshakeConfig { uid, timeout: actor.config.handshake_timeout, channel: Default::default() };
    let client =
        ArbiterClient::connect_with(&addr, &hs, actor.config.token.as_ref(), actor.config.tls.as_ref())
            .await
            .map_err(|e| Error::Arbiter(e.to_string()))?;
    client.register(&actor.listen).await.map_err(|e| Error::Arbiter(e.to_string()))?;
    client.close().await;
    Ok(())
}
