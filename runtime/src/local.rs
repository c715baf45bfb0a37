//! The actor living in this process: its identity, configuration,
//! cancellation, background tasks and actor-local state. Who may connect and
//! how is `accept.rs`; the children it waits for, `children.rs`; the
//! connections it made, `peers.rs`.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actor_arbiter::{ArbiterClient, ArbiterHandle};
use actor_transport::{Addr, Channel, HandshakeConfig, Listener, Secret, Sender, Uid};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::arbiter_slot::{ArbiterLink, LinkState};
use crate::children::PendingChildren;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::peers::Peers;
use crate::spawn::Spawner;

/// Who cancelled this actor, why, and whether the parent wants an ack.
#[derive(Default)]
struct Cancellation {
    canceller: Option<Uid>,
    reason: String,
    ack_to: Option<Sender>,
    /// Answers owed to peers that asked this actor to cancel itself, sent
    /// once it has wound down.
    answers: Vec<ExitHook>,
}

/// Work to do just before the actor exits, once it has wound down.
pub(crate) type ExitHook = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// What makes an actor a child rather than a root.
pub(crate) struct ChildRole {
    /// It runs one main call and exits when it returns.
    pub main: bool,
    /// When set, only these functions may be called.
    pub expose: Option<HashSet<String>>,
    /// The initial value of the actor-local state.
    pub state: Option<Bytes>,
}

/// The actor of this process. There is exactly one, set by `actor::run`.
pub(crate) struct Actor {
    pub uid: Uid,
    pub config: Config,
    pub listen: Addr,
    role: Option<ChildRole>,
    token: CancellationToken,
    cancellation: Mutex<Cancellation>,
    tasks: TaskTracker,
    /// Children spawned and expected to connect back.
    pub children: PendingChildren,
    pub spawner: Spawner,
    states: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    span: tracing::Span,
    main_claimed: AtomicBool,
    /// Fired once the main call is claimed (never, without one).
    main_started: CancellationToken,
    /// The live arbiter client, replaced when the arbiter is lost.
    arbiter: ArbiterLink,
    /// Where the tree's arbiter is, handed down to children.
    arbiter_addr: OnceLock<Addr>,
    embedded: Mutex<Option<ArbiterHandle>>,
    /// The registry in etcd, when the tree keeps it there instead.
    #[cfg(feature = "etcd")]
    etcd: OnceLock<Arc<crate::etcd_registry::EtcdRegistry>>,
    /// Connections this actor made to peers found by name, for reuse.
    pub peers: Peers,
}

static CURRENT: OnceLock<Arc<Actor>> = OnceLock::new();

/// The actor of this process.
///
/// # Errors
///
/// [`Error::NotRunning`] outside `actor::run`.
pub(crate) fn current() -> Result<Arc<Actor>> {
    CURRENT.get().cloned().ok_or(Error::NotRunning)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Actor {
    /// Creates this process's actor, to listen on `listener` (the caller
    /// starts accepting: [`crate::accept::serve`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] if an actor already runs in this process.
    pub(crate) fn install(
        uid: Uid,
        config: Config,
        listener: &Listener,
        role: Option<ChildRole>,
    ) -> Result<Arc<Actor>> {
        let actor = Arc::new(Actor {
            listen: advertised(listener.local_addr()),
            config,
            role,
            token: CancellationToken::new(),
            cancellation: Mutex::new(Cancellation::default()),
            tasks: TaskTracker::new(),
            children: PendingChildren::default(),
            spawner: Spawner::new(tokio::runtime::Handle::current()),
            states: Mutex::new(HashMap::new()),
            span: tracing::info_span!(parent: None, "actor", name = %uid.name, uid = %uid.id),
            main_claimed: AtomicBool::new(false),
            main_started: CancellationToken::new(),
            arbiter: ArbiterLink::default(),
            arbiter_addr: OnceLock::new(),
            embedded: Mutex::new(None),
            #[cfg(feature = "etcd")]
            etcd: OnceLock::new(),
            peers: Peers::default(),
            uid,
        });
        CURRENT.set(actor.clone()).map_err(|_| Error::NotRunning)?;
        #[cfg(feature = "otel")]
        crate::otel::start(&actor.uid);
        Ok(actor)
    }

    /// The span carrying this actor's name and uid; every task of the actor
    /// runs inside it.
    pub(crate) fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// Spawns a task that this actor waits for before it exits.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut.instrument(self.span()));
    }

    /// Waits until every tracked task has finished.
    pub(crate) async fn wait_tasks(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Where the tree's arbiter is, if it has one.
    pub(crate) fn arbiter_addr(&self) -> Option<Addr> {
        self.arbiter_addr.get().cloned()
    }

    /// Records where the tree's arbiter is.
    pub(crate) fn set_arbiter_addr(&self, addr: Addr) {
        let _ = self.arbiter_addr.set(addr);
    }

    /// The live arbiter client, waiting (boundedly) for the registration
    /// under way at start-up or after the arbiter was lost.
    pub(crate) async fn arbiter_client(&self) -> Result<Arc<ArbiterClient>> {
        self.arbiter.client(Some(self.arbiter_wait())).await
    }

    /// How long a lookup waits for a live arbiter: two handshakes, enough
    /// for several reconnection attempts at the capped backoff.
    pub(crate) fn arbiter_wait(&self) -> std::time::Duration {
        self.config.handshake_timeout * 2
    }

    /// The tree's registry in etcd, if it keeps it there.
    #[cfg(feature = "etcd")]
    pub(crate) fn etcd(&self) -> Option<&Arc<crate::etcd_registry::EtcdRegistry>> {
        self.etcd.get()
    }

    /// Keeps this actor's registry in etcd: lookups go there, and the
    /// arbiter link says there is no arbiter.
    #[cfg(feature = "etcd")]
    pub(crate) fn set_etcd(&self, registry: Arc<crate::etcd_registry::EtcdRegistry>) {
        let reason = format!("the tree keeps its registry in etcd at {}, not in an arbiter", registry.url());
        let _ = self.etcd.set(registry);
        self.arbiter.set(LinkState::Absent(reason));
    }

    /// The link to the arbiter: the live client, or the state of reconnecting.
    pub(crate) fn arbiter_link(&self) -> &ArbiterLink {
        &self.arbiter
    }

    /// Records the arbiter connection (and the embedded arbiter, if hosted
    /// here), or why there is none.
    pub(crate) fn set_arbiter(
        &self,
        client: std::result::Result<ArbiterClient, String>,
        embedded: Option<ArbiterHandle>,
    ) {
        if embedded.is_some() {
            self.set_embedded(embedded);
        }
        self.arbiter.set(match client {
            Ok(c) => LinkState::Live(Arc::new(c)),
            Err(reason) => LinkState::Absent(reason),
        });
    }

    /// Records the embedded arbiter this actor now hosts (at start-up, or
    /// having taken the address over from a host that exited).
    pub(crate) fn set_embedded(&self, embedded: Option<ArbiterHandle>) {
        *lock(&self.embedded) = embedded;
    }

    /// Shuts the embedded arbiter down, if this actor hosts one.
    pub(crate) async fn stop_embedded_arbiter(&self) {
        let handle = lock(&self.embedded).take();
        if let Some(h) = handle {
            if let Err(e) = h.shutdown().await {
                tracing::warn!(error = %e, "the embedded arbiter stopped with an error");
            }
        }
    }

    /// The token cancelled when this actor is cancelled.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Cancels the actor: every call it serves and every nursery it runs.
    /// The first reason given is kept.
    pub(crate) fn cancel(&self, canceller: Option<Uid>, reason: String) {
        {
            let mut c = lock(&self.cancellation);
            if !self.token.is_cancelled() {
                c.canceller = canceller;
                c.reason = reason;
            }
        }
        self.token.cancel();
    }

    /// Cancels the actor on its parent's request; the parent gets an ack once
    /// the actor has wound down.
    pub(crate) fn cancel_by_parent(&self, canceller: Uid, reason: String, ack_to: Sender) {
        lock(&self.cancellation).ack_to = Some(ack_to);
        self.cancel(Some(canceller), reason);
    }

    /// Cancels the actor on the request of a peer of its tree; `answer`
    /// runs once the actor has wound down ([`Actor::answer_cancel_requests`]).
    pub(crate) fn cancel_by_peer(&self, canceller: Uid, reason: String, answer: ExitHook) {
        lock(&self.cancellation).answers.push(answer);
        self.cancel(Some(canceller), reason);
    }

    /// Answers every peer that asked this actor to cancel itself; returns
    /// whether any had.
    pub(crate) async fn answer_cancel_requests(&self) -> bool {
        let answers = std::mem::take(&mut lock(&self.cancellation).answers);
        let any = !answers.is_empty();
        for answer in answers {
            answer().await;
        }
        any
    }

    /// Who cancelled this actor and why.
    pub(crate) fn cancel_reason(&self) -> (Option<Uid>, String) {
        let c = lock(&self.cancellation);
        (c.canceller.clone(), c.reason.clone())
    }

    /// The channel to acknowledge a parent's cancel request on, if one came.
    pub(crate) fn take_ack(&self) -> Option<Sender> {
        lock(&self.cancellation).ack_to.take()
    }

    /// Whether a call from the parent is this actor's main call: true once,
    /// for the first, in an actor started with `run_in_actor` (whose parent
    /// sends the main call before anything else).
    pub(crate) fn claim_main(&self) -> bool {
        let claimed = self.has_main() && !self.main_claimed.swap(true, Ordering::SeqCst);
        if claimed {
            self.main_started.cancel();
        }
        claimed
    }

    /// Whether this actor was started with `run_in_actor`: a main call is due.
    pub(crate) fn has_main(&self) -> bool {
        self.role.as_ref().is_some_and(|r| r.main)
    }

    /// Completes once the main call is claimed (see [`Actor::claim_main`]);
    /// never in an actor without one.
    pub(crate) async fn main_started(&self) {
        self.main_started.cancelled().await
    }

    /// Whether `func` may be called here.
    pub(crate) fn exposes(&self, func: &str) -> bool {
        match self.role.as_ref().and_then(|r| r.expose.as_ref()) {
            Some(allowed) => allowed.contains(func),
            None => true,
        }
    }

    /// The actor-local state of type `S`, decoded from the initial value on
    /// first use and shared by every later call.
    pub(crate) fn state<S>(&self) -> Result<Arc<tokio::sync::Mutex<S>>>
    where
        S: serde::de::DeserializeOwned + Send + 'static,
    {
        let mut states = lock(&self.states);
        if let Some(any) = states.get(&TypeId::of::<S>()) {
            return any
                .clone()
                .downcast::<tokio::sync::Mutex<S>>()
                .map_err(|_| Error::State("stored under a different type".into()));
        }
        let initial = self
            .role
            .as_ref()
            .and_then(|r| r.state.as_ref())
            .ok_or_else(|| Error::State(format!("actor `{}` was started without state", self.uid)))?;
        let value: S = crate::registry::decode(initial, || "the actor's initial state".into())?;
        let shared = Arc::new(tokio::sync::Mutex::new(value));
        states.insert(TypeId::of::<S>(), shared.clone());
        Ok(shared)
    }

    /// The handshake settings for connections made or accepted by this actor.
    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            uid: self.uid.clone(),
            timeout: self.config.handshake_timeout,
            channel: Default::default(),
        }
    }

    /// Connects to the actor at `addr` over the tree's transport (TLS when
    /// configured) and runs the handshake; returns the channel and the peer's uid.
    pub(crate) async fn connect(
        &self,
        addr: &Addr,
        secret: Option<&Secret>,
    ) -> std::result::Result<(Channel, Uid), actor_transport::HandshakeError> {
        let hs = self.handshake_config();
        match &self.config.tls {
            Some(tls) => actor_transport::connect_tls(addr, &hs, secret, tls).await,
            None => actor_transport::connect(addr, &hs, secret).await,
        }
    }
}

/// The address to give others for a listener: an unspecified host (`0.0.0.0`,
/// `::`) is not an address anyone can connect to, so it is advertised as
/// loopback; bind a specific address to be reachable from other hosts.
fn advertised(bound: &Addr) -> Addr {
    match bound {
        Addr::Tcp { host, port } if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) => {
            Addr::loopback(*port)
        }
        other => other.clone(),
    }
}
