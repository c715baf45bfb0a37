//! The actor living in this process: its identity, listener, cancellation
//! token, background tasks, and the children it is waiting to hear from.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actor_arbiter::{ArbiterClient, ArbiterHandle};
use actor_transport::{
    Addr, Admission, Auth, Channel, HandshakeConfig, Listener, Secret, Sender, Uid, accept_log,
};
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::spawn::Spawner;

/// A child we spawned and expect to connect back with its one-time token.
struct PendingSpawn {
    uid: Uid,
    token: Secret,
    deliver: oneshot::Sender<Channel>,
}

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
    pending: Mutex<HashMap<String, PendingSpawn>>,
    pub spawner: Spawner,
    states: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    span: tracing::Span,
    main_claimed: AtomicBool,
    /// The arbiter connection, or why there is none; set once.
    arbiter: OnceLock<std::result::Result<Arc<ArbiterClient>, String>>,
    arbiter_known: CancellationToken,
    /// Where the tree's arbiter is, handed down to children.
    arbiter_addr: OnceLock<Addr>,
    embedded: Mutex<Option<ArbiterHandle>>,
    peers: Mutex<HashMap<Uid, Arc<Conn>>>,
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
    /// Creates this process's actor and starts accepting connections.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the spawner thread cannot start; [`Error::NotRunning`] if
    /// an actor already runs in this process.
    pub(crate) fn install(
        uid: Uid,
        config: Config,
        listener: Listener,
        role: Option<ChildRole>,
    ) -> Result<Arc<Actor>> {
        let actor = Arc::new(Actor {
            listen: advertised(listener.local_addr()),
            config,
            role,
            token: CancellationToken::new(),
            cancellation: Mutex::new(Cancellation::default()),
            tasks: TaskTracker::new(),
            pending: Mutex::new(HashMap::new()),
            spawner: Spawner::start(tokio::runtime::Handle::current())?,
            states: Mutex::new(HashMap::new()),
            span: tracing::info_span!(parent: None, "actor", name = %uid.name, uid = %uid.id),
            main_claimed: AtomicBool::new(false),
            arbiter: OnceLock::new(),
            arbiter_known: CancellationToken::new(),
            arbiter_addr: OnceLock::new(),
            embedded: Mutex::new(None),
            peers: Mutex::new(HashMap::new()),
            uid,
        });
        CURRENT.set(actor.clone()).map_err(|_| Error::NotRunning)?;
        tokio::spawn(accept_loop(actor.clone(), listener).instrument(actor.span()));
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

    /// The arbiter client, waiting for the registration still under way.
    pub(crate) async fn arbiter_client(&self) -> Result<Arc<ArbiterClient>> {
        let bound = self.config.handshake_timeout * 2;
        if tokio::time::timeout(bound, self.arbiter_known.cancelled()).await.is_err() {
            return Err(Error::Arbiter(format!("still not registered with the arbiter after {bound:?}")));
        }
        match self.arbiter.get() {
            Some(Ok(client)) => Ok(client.clone()),
            Some(Err(reason)) => Err(Error::Arbiter(reason.clone())),
            None => Err(Error::Arbiter("this actor has no arbiter".into())),
        }
    }

    /// Records the arbiter connection (and the embedded arbiter, if hosted
    /// here), or why there is none.
    pub(crate) fn set_arbiter(
        &self,
        client: std::result::Result<ArbiterClient, String>,
        embedded: Option<ArbiterHandle>,
    ) {
        let _ = self.arbiter.set(client.map(Arc::new));
        *lock(&self.embedded) = embedded;
        self.arbiter_known.cancel();
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

    /// A live connection to `uid` made earlier, if any.
    pub(crate) fn peer_conn(&self, uid: &Uid) -> Option<Arc<Conn>> {
        let mut peers = lock(&self.peers);
        match peers.get(uid) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                peers.remove(uid);
                None
            }
            None => None,
        }
    }

    /// Keeps `conn` for reuse by later lookups of its peer.
    pub(crate) fn remember_peer(&self, conn: Arc<Conn>) {
        lock(&self.peers).insert(conn.peer().clone(), conn);
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
        self.role.as_ref().is_some_and(|r| r.main) && !self.main_claimed.swap(true, Ordering::SeqCst)
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

    /// Expects child `uid` to connect back proving `token`; the returned
    /// receiver gets its channel.
    pub(crate) fn expect_child(&self, uid: &Uid, token: Secret) -> oneshot::Receiver<Channel> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(uid.id.clone(), PendingSpawn { uid: uid.clone(), token, deliver: tx });
        rx
    }

    /// Stops expecting child `uid` (it failed to start).
    pub(crate) fn forget_child(&self, uid: &Uid) {
        lock(&self.pending).remove(&uid.id);
    }

    fn auth_for(&self, peer: &Uid) -> Auth {
        if let Some(p) = lock(&self.pending).get(&peer.id) {
            return if p.uid == *peer {
                Auth::Require(p.token.clone())
            } else {
                Auth::Refuse("unknown child".into())
            };
        }
        match &self.config.token {
            Some(t) => Auth::Require(t.clone()),
            None => Auth::Open,
        }
    }

    fn admit(self: &Arc<Self>, channel: Channel, peer: Uid) {
        let pending = lock(&self.pending).remove(&peer.id);
        match pending {
            Some(p) => {
                if p.deliver.send(channel).is_err() {
                    tracing::debug!(%peer, "child connected after its spawn was abandoned");
                }
            }
            None => {
                tracing::debug!(%peer, "peer connected");
                link::start(channel, peer, actor_transport::Side::Acceptor, Peer::Other, self.clone());
            }
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

/// Accepts connections for `actor` until the process ends: each admitted one
/// (see [`Admission`]) runs the TLS (if configured) and actor handshakes in its
/// own task and is handed to [`Actor::admit`].
async fn accept_loop(actor: Arc<Actor>, listener: Listener) {
    let admission = Admission::new(actor.config.admission);
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Typically EMFILE: back off briefly rather than spin.
                accept_log::accept_failed(&e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let pending = match admission.try_admit() {
            Ok(p) => p,
            Err(refusal) => {
                // Dropping the stream closes it before anything is read.
                tracing::debug!(%from, "{refusal}");
                continue;
            }
        };
        let actor2 = actor.clone();
        tokio::spawn(
            async move {
                let config = actor2.handshake_config();
                let stream = match &actor2.config.tls {
                    Some(tls) => match tls.accept(stream, config.timeout).await {
                        Ok(s) => s,
                        Err(e) => return accept_log::tls_failed(&from, &e),
                    },
                    None => stream,
                };
                match actor_transport::accept(stream, &config, |uid| actor2.auth_for(uid)).await {
                    Ok((channel, peer)) => {
                        pending.authenticated().hold_until_closed(channel.sender());
                        actor2.admit(channel, peer)
                    }
                    Err(e) => accept_log::handshake_failed(&from, &e),
                }
            }
            .instrument(actor.span()),
        );
    }
}
