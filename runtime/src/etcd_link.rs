//! This actor's registration in etcd, for a tree that keeps its registry
//! there: what `arbiter_link` is to a tree with an arbiter.

use std::sync::Arc;

use crate::error::Result;
use crate::etcd_config::EtcdConfig;
use crate::etcd_registry::EtcdRegistry;
use crate::local::Actor;

/// Registers a root in etcd before its `main` runs, then keeps the
/// registration alive for the actor's lifetime (revoking it at the end).
///
/// # Errors
///
/// [`crate::Error::Arbiter`] if no member of `config` grants the lease and
/// stores the key within the request timeout (the message says whether
/// each endpoint accepts connections); [`crate::Error::Config`] for TLS
/// files that cannot be read.
pub(crate) async fn register_root(actor: &Arc<Actor>, config: &EtcdConfig) -> Result<()> {
    let registry = Arc::new(EtcdRegistry::connect(config, &actor.uid, &actor.listen).await?);
    let lease = registry.register_at_start().await?;
    tracing::debug!(etcd = %registry.url(), lease, "registered in etcd");
    actor.set_etcd(registry.clone());
    let token = actor.token().clone();
    actor.spawn(async move { registry.keep_registered(token, lease).await });
    Ok(())
}

/// Registers a child in etcd in the background, retrying while no member
/// answers (being found by name must not delay serving the parent), then
/// keeps the registration alive. Lookups work at once.
///
/// # Errors
///
/// As [`register_root`], except that etcd being unreachable is no error.
pub(crate) async fn register_child(actor: &Arc<Actor>, config: &EtcdConfig) -> Result<()> {
    let registry = Arc::new(EtcdRegistry::connect(config, &actor.uid, &actor.listen).await?);
    actor.set_etcd(registry.clone());
    let token = actor.token().clone();
    actor.spawn(async move {
        if let Some(lease) = registry.register_until_done(&token).await {
            registry.keep_registered(token, lease).await;
        }
    });
    Ok(())
}
