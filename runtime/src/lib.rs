//! A supervised actor runtime across processes and hosts: structured
//! concurrency for OS processes.
//!
//! A program starts with [`run`]. Inside, [`open_nursery`] gives a [`Nursery`]
//! that spawns *actors*: child processes running the same binary. A [`Portal`]
//! calls functions marked [`#[actor::remote]`](remote) in another actor, with
//! argument and result types checked at compile time. Errors in remote actors
//! come back as [`Error::Remote`] with the source actor and cause chain; the
//! nursery then cancels its other actors and returns the errors, or, opened
//! with [`open_nursery_with`] and a [`Strategy`], restarts the actor that
//! ended (one-for-one, rest-for-one) within a restart intensity. No actor
//! outlives its parent: not when it fails, not when the parent is cancelled,
//! not even when the parent is killed with SIGKILL. Through a host [`agent`]
//! a nursery spawns actors on other hosts too
//! ([`ActorBuilder::on_host`]), under the same guarantees. [`jobs`] adds
//! durable jobs and workflows: calls recorded in a journal, retried, and
//! replayed after a crash so that finished steps do not run again. Every
//! call carries its caller's trace context, so one request across actors is
//! one trace ([`trace`]).
//!
//! Linux only. The package is `procactor` on crates.io; the library is
//! imported as `actor`. Its feature `tls` (on by default) builds mutual TLS
//! with rustls (without it, asking for TLS is a configuration error); `jobs`
//! (on by default) builds the durable-jobs journal on SQLite; without both
//! the crate needs no C compiler. Its feature `etcd` (off by default) can put
//! the registry in etcd (`ACTOR_ARBITER=etcd://host:2379`, [`EtcdConfig`]);
//! `otel` (off by default) exports the spans of calls over OTLP/HTTP
//! (`actor::otel`).
//!
//! ```no_run
//! #[actor::remote]
//! async fn cellar_door(name: String) -> actor::Result<String> {
//!     Ok(format!("{name}: quoth the raven, nevermore"))
//! }
//!
//! fn main() -> actor::Result<()> {
//!     actor::run(async {
//!         actor::open_nursery(|n| async move {
//!             let portal = n.run_in_actor("some_linguist", cellar_door, ("poe".into(),)).await?;
//!             let line: String = portal.result().await?;
//!             println!("{line}");
//!             Ok(())
//!         })
//!         .await
//!     })
//! }
//! ```
#![warn(missing_docs, unreachable_pub)]

// Process trees rely on Linux: PR_SET_PDEATHSIG, child subreapers, /proc/self/exe.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "the `actor` runtime supports Linux only: it relies on PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER and /proc"
);

extern crate self as actor;

mod accept;
pub mod agent;
mod arbiter_link;
mod arbiter_slot;
mod builtin;
mod children;
mod clone_spawn;
mod config;
mod conn;
mod context;
mod deadline;
mod discovery;
mod error;
#[cfg(feature = "etcd")]
mod etcd_config;
#[cfg(feature = "etcd")]
mod etcd_keys;
#[cfg(feature = "etcd")]
mod etcd_link;
#[cfg(feature = "etcd")]
mod etcd_registry;
mod fork_server;
mod heartbeat;
mod introspect;
pub mod jobs;
mod link;
mod local;
mod logging;
mod low_latency;
mod nursery;
#[cfg(feature = "otel")]
pub mod otel;
mod outbox;
mod parent_death;
mod peers;
mod portal;
mod registration_bench;
mod registry;
mod relation;
mod retry;
mod run;
mod scope;
mod serve;
mod spawn;
mod state;
mod stream;
mod supervise;
pub mod trace;
mod tree_watch;

pub use actor_arbiter as arbiter;
pub use actor_arbiter::Entry;
pub use actor_macros::remote;
pub use actor_transport as transport;
pub use actor_transport::{Addr, ErrorKind, RemoteError, Secret, TlsConfig, Uid};
pub use actor_transport::{ENV_TOKEN_FILE, default_token_path, load_or_create_token};
pub use agent::HostSelector;
pub use config::default_token;
pub use config::{
    ARBITER_PRIVATE, Config, ENV_ARBITER, ENV_BIND, ENV_HOST, ENV_INSECURE, ENV_LOG, ENV_NAME,
    ENV_NO_FORK_SERVER, ENV_PEER_TIMEOUT, ENV_THREADS, ENV_TOKEN, MIN_PEER_TIMEOUT,
};
pub use conn::{RESULT_BUDGET, STREAM_WINDOW};
pub use context::{Context, ContextHandle};
pub use deadline::remaining_time;
pub use discovery::{
    connect_to_entry, find_actor, get_arbiter, list_actors, wait_for_actor, wait_for_actor_within,
};
pub use error::{AppError, Error, Leaf, Leaves, Result};
#[cfg(feature = "etcd")]
pub use etcd_config::{
    DEFAULT_ETCD_PREFIX, ENV_ETCD_CA, ENV_ETCD_CERT, ENV_ETCD_KEY, ENV_ETCD_LEASE_TTL, ENV_ETCD_PREFIX,
    EtcdConfig,
};
pub use introspect::{ChildReport, INTROSPECT_FN, Introspection};
pub use low_latency::{ENV_LOW_LATENCY, MAX_SPIN};
pub use nursery::{ActorBuilder, Nursery, open_nursery, open_nursery_with};
pub use portal::{Portal, ResultPortal};
pub use registry::{RemoteContextFn, RemoteFn, RemoteStreamFn, is_registered};
pub use retry::{Idempotent, RetryPolicy};
pub use run::{is_child, run, run_with, serve};
pub use state::{State, state};
pub use stream::{StreamReceiver, StreamSender, Subscriber, Yielder};
pub use supervise::{Backoff, Restart, Strategy, Supervision};
pub use tree_watch::ENV_TREE;

/// The uid of the actor running in this process.
///
/// # Errors
///
/// [`Error::NotRunning`] outside [`run`].
pub fn uid() -> Result<Uid> {
    Ok(local::current()?.uid.clone())
}

/// The address this actor listens on for other actors.
///
/// # Errors
///
/// [`Error::NotRunning`] outside [`run`].
pub fn addr() -> Result<Addr> {
    Ok(local::current()?.listen.clone())
}

/// The address of the tree's arbiter, if it has one.
///
/// # Errors
///
/// [`Error::NotRunning`] outside [`run`]; [`Error::Arbiter`] if the tree runs
/// without an arbiter (the message says so, and where its registry is if
/// it keeps it in etcd).
pub fn arbiter_addr() -> Result<Addr> {
    let actor = local::current()?;
    #[cfg(feature = "etcd")]
    if let Some(etcd) = actor.etcd() {
        return Err(Error::Arbiter(format!(
            "the tree keeps its registry in etcd at {}, not in an arbiter",
            etcd.url()
        )));
    }
    actor.arbiter_addr().ok_or_else(|| Error::Arbiter("the tree runs without an arbiter".into()))
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
