//! The arbiter server: an accept loop, one task per connection, and the protocol
//! each connection speaks after the handshake.
//!
//! A connection accepts only `Msg::Start` (a single-result call of one of the
//! arbiter's functions) and `Msg::Cancel` (of one of its pending
//! [`crate::WAIT_FOR`] calls). Anything else is a protocol violation that closes
//! that connection, and only that one.
//!
//! Frames to and from the arbiter are at most [`MAX_FRAME`] bytes: every request
//! is small, every stored length is capped (see [`crate::registry`]), and replies
//! listing entries are pages that fit a frame, so a peer can make the arbiter
//! hold only a small, fixed amount per connection.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actor_transport::{
    Addr, Admission, AdmissionConfig, Auth, CallApp, CallId, CallKind, CallStart, ChannelConfig,
    ChannelError, Completion, End, ErrorKind, FrameError, HandshakeConfig, Incoming, Limits, Listener, Msg,
    RemoteError, Secret, Sender, Session, Side, Stream, TlsConfig, Uid, accept, accept_log,
    admission::Pending,
};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::registry::{self, ConnId, MAX_PAGE_ENTRIES, Page, Refusal, Registry, RegistryError};
use crate::{FIND, FIND_PAGE, FUNCTIONS, LIST, LIST_PAGE, REGISTER, UNREGISTER, WAIT_FOR};

/// How many [`crate::WAIT_FOR`] calls one connection may have pending at once.
pub const MAX_WAITERS_PER_CONNECTION: usize = 1024;

/// The bounds each connection's session enforces: its open calls are the
/// pending `wait_for`s (every other call is answered as it arrives), capped
/// with a typed refusal in [`Conn::wait_for`] before the session's own cap
/// could refuse anything; no client call carries items.
fn limits() -> Limits {
    Limits { max_served: MAX_WAITERS_PER_CONNECTION + 1, max_served_window: 0, ..Limits::default() }
}

/// The largest frame the arbiter reads or writes, in bytes (64 KiB). Requests
/// need far less; a reply page is at most [`registry::MAX_PAGE_BYTES`] plus a
/// little framing. Larger frames (a hello with a huge uid, a huge address) are
/// refused before they are buffered, and close the connection.
pub const MAX_FRAME: usize = 64 * 1024;

/// How long closing a connection may wait for queued replies to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Settings of an arbiter server.
#[derive(Clone, Debug)]
pub struct ArbiterConfig {
    /// The arbiter's own identity, sent in the handshake and as the source of every
    /// error it reports.
    pub uid: Uid,
    /// When set, every client must prove it holds this token in the handshake;
    /// when `None`, any client is admitted.
    pub token: Option<Secret>,
    /// A client must finish the handshake within this time or is disconnected.
    pub handshake_timeout: Duration,
    /// Caps on clients in the handshake at once and open connections; excess
    /// connections are closed as soon as they are accepted.
    pub admission: AdmissionConfig,
}

impl ArbiterConfig {
    /// A configuration with uid `uid`, no token, a 5-second handshake timeout
    /// and the default connection caps.
    pub fn new(uid: Uid) -> Self {
        ArbiterConfig {
            uid,
            token: None,
            handshake_timeout: Duration::from_secs(5),
            admission: AdmissionConfig::default(),
        }
    }
}

/// Serves the arbiter protocol on `listener` until `shutdown` is cancelled, with a
/// fresh, empty [`Registry`].
///
/// Each connection handshakes (requiring `config.token` if set) and is served in
/// its own task; a failed handshake or a misbehaving client is logged and
/// disconnected without disturbing the others. On shutdown it stops accepting,
/// closes every connection and returns once their tasks have ended.
///
/// # Errors
///
/// Returns an error only if accepting fails in a way that retrying cannot fix
/// (transient failures such as running out of file descriptors are logged and
/// retried); the open connections are closed first.
pub async fn serve(listener: Listener, config: ArbiterConfig, shutdown: CancellationToken) -> io::Result<()> {
    serve_registry(listener, config, Arc::new(Registry::new()), shutdown).await
}

/// As [`serve`], accepting only mutual-TLS connections when `tls` is given: each
/// accepted connection must complete a TLS handshake with a client certificate
/// signed by the CA of `tls` (within `config.handshake_timeout`) before the actor
/// handshake, which then runs inside TLS (and still requires `config.token` if
/// set). A connection that fails the TLS handshake (plaintext, no certificate, an
/// untrusted one) is logged in one line and closed. With `None` this is [`serve`].
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_tls(
    listener: Listener,
    config: ArbiterConfig,
    tls: Option<TlsConfig>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_registry_tls(listener, config, tls, Arc::new(Registry::new()), shutdown).await
}

/// As [`serve`], on a registry the caller supplies (and may inspect).
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_registry(
    listener: Listener,
    config: ArbiterConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_registry_tls(listener, config, None, registry, shutdown).await
}

/// As [`serve_registry`], accepting only mutual-TLS connections when `tls` is
/// given (see [`serve_tls`]).
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_registry_tls(
    listener: Listener,
    config: ArbiterConfig,
    tls: Option<TlsConfig>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let server = Arc::new(Server {
        handshake: HandshakeConfig {
            uid: config.uid.clone(),
            timeout: config.handshake_timeout,
            channel: ChannelConfig { max_frame: MAX_FRAME, ..ChannelConfig::default() },
        },
        auth: match &config.token {
            Some(token) => Auth::Require(token.clone()),
            None => Auth::Open,
        },
        uid: config.uid,
        registry,
        tls,
    });
    // Past either cap a new connection is closed before it costs anything:
    // the listener's, and the registry's own limit on connections.
    let mut caps = config.admission;
    caps.max_connections = caps.max_connections.min(server.registry.limits().max_connections);
    let admission = Admission::new(caps);
    let tracker = TaskTracker::new();
    // Cancelled on shutdown and on a fatal accept error: closes every connection.
    let conns = shutdown.child_token();
    tracing::info!(
        addr = %listener.local_addr(),
        uid = %server.uid,
        auth = config.token.is_some(),
        tls = server.tls.is_some(),
        "arbiter serving"
    );
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer_addr)) => match admission.try_admit() {
                    Ok(pending) => {
                        let span = tracing::info_span!("arbiter_conn", peer_addr = %peer_addr);
                        let conn = server.clone().connection(stream, pending, peer_addr, conns.clone());
                        tracker.spawn(conn.instrument(span));
                    }
                    // Dropping the stream closes it before anything is read.
                    Err(refusal) => tracing::debug!(%peer_addr, "{refusal}"),
                },
                Err(e) if is_transient(&e) => {
                    accept_log::accept_failed(&e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; the arbiter stops");
                    break Err(e);
                }
            },
        }
    };
    drop(listener);
    conns.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!("arbiter stopped");
    result
}

/// Accept errors after which the listener is still usable.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: resource exhaustion that may pass.
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock | K::TimedOut
    ) || matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// A running arbiter started by [`spawn_embedded`]. Dropping it shuts the arbiter
/// down without waiting.
#[derive(Debug)]
pub struct ArbiterHandle {
    addr: Addr,
    uid: Uid,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Starts an arbiter on `listener` in a task of the current tokio runtime and
/// returns its handle. Never fails: errors of the running server are returned by
/// [`ArbiterHandle::shutdown`].
///
/// # Panics
///
/// Panics if called outside a tokio runtime.
pub async fn spawn_embedded(listener: Listener, config: ArbiterConfig) -> ArbiterHandle {
    spawn_embedded_tls(listener, config, None).await
}

/// As [`spawn_embedded`], accepting only mutual-TLS connections when `tls` is
/// given (see [`serve_tls`]). Never fails.
///
/// # Panics
///
/// Panics if called outside a tokio runtime.
pub async fn spawn_embedded_tls(
    listener: Listener,
    config: ArbiterConfig,
    tls: Option<TlsConfig>,
) -> ArbiterHandle {
    let registry = Arc::new(Registry::new());
    let shutdown = CancellationToken::new();
    let addr = listener.local_addr().clone();
    let uid = config.uid.clone();
    let task = tokio::spawn(serve_registry_tls(listener, config, tls, registry.clone(), shutdown.clone()));
    ArbiterHandle { addr, uid, registry, shutdown, task: Some(task) }
}

impl ArbiterHandle {
    /// The address the arbiter listens on (with the real port if port 0 was bound).
    pub fn local_addr(&self) -> &Addr {
        &self.addr
    }

    /// The arbiter's uid.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// The arbiter's registry, for in-process lookups and inspection.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Whether the server task has stopped (after a shutdown or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops accepting, closes every connection and waits for the server to end.
    ///
    /// # Errors
    ///
    /// The server's fatal accept error if it had stopped because of one, or an
    /// error of kind `Other` if its task panicked.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => {
                task.await.map_err(|e| io::Error::other(format!("the arbiter task failed: {e}")))?
            }
            None => Ok(()),
        }
    }
}

impl Drop for ArbiterHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What every connection task shares.
struct Server {
    uid: Uid,
    handshake: HandshakeConfig,
    auth: Auth,
    registry: Arc<Registry>,
    /// When set, every connection must pass a mutual-TLS handshake first.
    tls: Option<TlsConfig>,
}

/// Removes a connection's entries however its task ends.
struct Cleanup {
    registry: Arc<Registry>,
    conn: ConnId,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for entry in self.registry.remove_connection(self.conn) {
            tracing::info!(uid = %entry.uid, addr = %entry.addr, "unregistered: connection closed");
        }
    }
}

/// One authenticated client connection.
struct Conn {
    server: Arc<Server>,
    peer: Uid,
    id: ConnId,
    sender: Sender,
    /// The call protocol; the calls in it are pending `wait_for`s (every
    /// other call is answered as it arrives).
    session: Mutex<Session<Waiter>>,
    /// Cancelled when the connection closes: ends every waiter without a reply.
    closing: CancellationToken,
    tasks: TaskTracker,
}

/// A pending `wait_for`, as the session sees it: its task's cancel token.
struct Waiter(CancellationToken);

impl CallApp for Waiter {
    fn started(&mut self, _: Bytes) {}
    fn item(&mut self, _: Bytes) {}
    fn stopped(&mut self) {}
    fn credit(&mut self) {}
    fn cancel_requested(&mut self, _: &Uid) {
        self.0.cancel();
    }
    fn ended(self, _: End) {
        self.0.cancel();
    }
}

/// What the reader does after a message.
enum Next {
    Continue,
    Close(String),
}

impl Server {
    async fn connection(
        self: Arc<Self>,
        stream: Stream,
        pending: Pending,
        from: String,
        shutdown: CancellationToken,
    ) {
        let stream = match &self.tls {
            None => stream,
            Some(tls) => {
                let upgraded = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    res = tls.accept(stream, self.handshake.timeout) => res,
                };
                match upgraded {
                    Ok(s) => s,
                    Err(e) => return accept_log::tls_failed(&from, &e),
                }
            }
        };
        let auth = self.auth.clone();
        let handshake = tokio::select! {
            _ = shutdown.cancelled() => return,
            res = accept(stream, &self.handshake, |_| auth) => res,
        };
        let (channel, peer) = match handshake {
            Ok(ok) => ok,
            Err(e) => return accept_log::handshake_failed(&from, &e),
        };
        pending.authenticated().hold_until_closed(channel.sender());
        tracing::debug!(peer = %peer, "client connected");
        let (sender, mut receiver) = channel.split();
        let id = self.registry.connection();
        let cleanup = Cleanup { registry: self.registry.clone(), conn: id };
        let conn = Arc::new(Conn {
            server: self.clone(),
            peer,
            id,
            sender,
            session: Mutex::new(Session::new(Side::Acceptor, self.uid.clone(), limits())),
            closing: shutdown.child_token(),
            tasks: TaskTracker::new(),
        });
        let reason = loop {
            let step = async {
                match receiver.recv().await {
                    Ok(Some(msg)) => conn.handle(msg).await,
                    Ok(None) => Next::Close("the client closed the connection".into()),
                    Err(e) => {
                        if e.is_io() {
                            tracing::debug!(peer = %conn.peer, error = %e, "connection broke");
                        } else {
                            tracing::warn!(peer = %conn.peer, error = %e, "closing the connection after a bad frame");
                        }
                        Next::Close(e.to_string())
                    }
                }
            };
            tokio::select! {
                biased;
                _ = conn.closing.cancelled() => break "the arbiter is shutting down".to_owned(),
                next = step => if let Next::Close(reason) = next { break reason },
            }
        };
        tracing::debug!(peer = %conn.peer, %reason, "client disconnected");
        conn.closing.cancel();
        conn.session().close(&reason);
        // Entries go before the channel finishes closing, so lookups stop
        // returning a dead actor as early as possible.
        drop(cleanup);
        conn.tasks.close();
        conn.tasks.wait().await;
        drop(receiver);
        if tokio::time::timeout(CLOSE_GRACE, conn.sender.close()).await.is_err() {
            tracing::debug!(peer = %conn.peer, "the client did not read its last replies; dropping them");
        }
    }
}

impl Conn {
    fn session(&self) -> MutexGuard<'_, Session<Waiter>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, kind: ErrorKind, type_name: &str, message: impl Into<String>) -> Box<RemoteError> {
        Box::new(RemoteError::new(self.server.uid.clone(), kind, type_name, message))
    }

    /// Sends a reply. One too large for a frame is answered with an error
    /// instead, so the caller is never left waiting (pages keep replies small,
    /// this is the backstop).
    async fn reply(&self, msg: Msg) {
        let cid = match &msg {
            Msg::Return { cid, .. } => Some(*cid),
            _ => None,
        };
        match self.sender.send(&msg).await {
            Ok(()) => {}
            Err(ChannelError::Frame(f)) if matches!(*f, FrameError::TooLarge { .. }) => {
                let Some(cid) = cid else {
                    tracing::warn!(peer = %self.peer, error = %f, "an error reply does not fit a frame");
                    return;
                };
                tracing::warn!(peer = %self.peer, cid, error = %f, "a reply does not fit a frame");
                let e = self.error(
                    ErrorKind::Application,
                    Refusal::ReplyTooLarge.type_name(),
                    format!("the reply does not fit a frame: {f}"),
                );
                if let Err(e) = self.sender.send(&Msg::Error { cid, error: e }).await {
                    tracing::debug!(peer = %self.peer, error = %e, "cannot send a reply");
                }
            }
            Err(e) => tracing::debug!(peer = %self.peer, error = %e, "cannot send a reply"),
        }
    }

    async fn handle(self: &Arc<Self>, msg: Msg) -> Next {
        let handled = self.session().handle(msg);
        let refusals: Vec<Msg> = std::iter::from_fn(|| self.session().poll_transmit()).collect();
        for m in refusals {
            self.reply(m).await;
        }
        match handled {
            Ok(None) => Next::Continue,
            Ok(Some(Incoming::Call(CallStart { cid, func, kind, args, .. }))) => {
                self.start(cid, func, kind, args).await
            }
            Ok(Some(Incoming::CancelActor { .. } | Incoming::CancelActorAck)) => {
                let reason = "protocol violation: an actor control message sent to the arbiter".to_owned();
                tracing::warn!(peer = %self.peer, %reason, "closing the connection");
                Next::Close(reason)
            }
            Err(violation) => {
                let reason = format!("protocol violation: {violation}");
                tracing::warn!(peer = %self.peer, %reason, "closing the connection");
                Next::Close(reason)
            }
        }
    }

    /// Answers call `cid` at once with `outcome`.
    async fn answer(&self, cid: CallId, outcome: Result<Bytes, Box<RemoteError>>) {
        let msg = match outcome {
            Ok(value) => Msg::Return { cid, value },
            Err(error) => self.session().refuse(cid, *error),
        };
        self.reply(msg).await;
    }

    async fn start(self: &Arc<Self>, cid: CallId, func: String, kind: CallKind, args: Bytes) -> Next {
        tracing::debug!(peer = %self.peer, cid, %func, "call");
        if kind != CallKind::Single {
            let e = self.error(
                ErrorKind::Protocol,
                "arbiter::ProtocolError",
                format!("`{func}` must be called as a single-result call, not as {kind:?}"),
            );
            self.answer(cid, Err(e)).await;
            return Next::Continue;
        }
        let registry = &self.server.registry;
        let outcome = match func.as_str() {
            REGISTER => self.decode::<(Addr,)>(&func, &args).and_then(|(addr,)| {
                match registry.register(self.id, self.peer.clone(), addr.clone()) {
                    Ok(previous) => {
                        tracing::info!(uid = %self.peer, %addr, replaced = ?previous, "registered");
                        self.encode(&func, &())
                    }
                    Err(e) => Err(self.refusal(&e)),
                }
            }),
            UNREGISTER => self.decode_unit(&func, &args).and_then(|()| {
                match registry.unregister(self.id, &self.peer) {
                    Ok(Some(entry)) => tracing::info!(uid = %entry.uid, addr = %entry.addr, "unregistered"),
                    Ok(None) => {}
                    Err(e) => return Err(self.refusal(&e)),
                }
                self.encode(&func, &())
            }),
            FIND => self
                .decode::<(String,)>(&func, &args)
                .and_then(|(name,)| self.whole(&func, registry.find_page(&name, None, MAX_PAGE_ENTRIES))),
            FIND_PAGE => {
                self.decode::<(String, Option<String>, u32)>(&func, &args).and_then(|(name, after, limit)| {
                    self.encode(&func, &registry.find_page(&name, after.as_deref(), limit as usize))
                })
            }
            LIST => self
                .decode_unit(&func, &args)
                .and_then(|()| self.whole(&func, registry.list_page(None, MAX_PAGE_ENTRIES))),
            LIST_PAGE => self.decode::<(Option<Uid>, u32)>(&func, &args).and_then(|(after, limit)| {
                self.encode(&func, &registry.list_page(after.as_ref(), limit as usize))
            }),
            WAIT_FOR => match self.decode::<(String,)>(&func, &args) {
                Ok((name,)) => {
                    self.wait_for(cid, name).await;
                    return Next::Continue;
                }
                Err(e) => Err(e),
            },
            _ => Err(self.error(
                ErrorKind::UnknownFunction,
                "arbiter::UnknownFunction",
                format!("the arbiter has no function `{func}`; it serves {}", FUNCTIONS.join(", ")),
            )),
        };
        self.answer(cid, outcome).await;
        Next::Continue
    }

    async fn wait_for(self: &Arc<Self>, cid: CallId, name: String) {
        // A name that could never be registered is refused before it is held.
        if let Err(e) = registry::check_name(&name) {
            self.answer(cid, Err(self.refusal(&e))).await;
            return;
        }
        let found = self.server.registry.find_page(&name, None, MAX_PAGE_ENTRIES).entries;
        if !found.is_empty() {
            let outcome = self.encode(WAIT_FOR, &found);
            self.answer(cid, outcome).await;
            return;
        }
        // The session counts pending waiters against its call cap and routes
        // the client's Cancel to the token.
        let token = self.closing.child_token();
        let admitted = {
            let mut session = self.session();
            let admitted = session.open_calls() < MAX_WAITERS_PER_CONNECTION;
            if admitted {
                session.admit(cid, CallKind::Single, 0, Waiter(token.clone()));
            }
            admitted
        };
        if !admitted {
            let e = self.error(
                ErrorKind::Application,
                Refusal::TooManyWaiters.type_name(),
                format!(
                    "this connection already has {MAX_WAITERS_PER_CONNECTION} pending `{WAIT_FOR}` calls"
                ),
            );
            self.answer(cid, Err(e)).await;
            return;
        }
        let conn = self.clone();
        self.tasks.spawn(
            async move {
                let found = tokio::select! {
                    biased;
                    _ = token.cancelled() => None,
                    found = conn.server.registry.wait_for(&name) => Some(found),
                };
                let how = match found {
                    Some(Ok(found)) => match conn.encode(WAIT_FOR, &found) {
                        Ok(value) => Completion::Returned(value),
                        Err(error) => Completion::Failed(error),
                    },
                    Some(Err(refused)) => Completion::Failed(conn.refusal(&refused)),
                    // The connection is closing: nobody to answer.
                    None if conn.closing.is_cancelled() => return,
                    None => Completion::Cancelled(conn.error(
                        ErrorKind::Cancelled,
                        "arbiter::Cancelled",
                        "wait_for cancelled",
                    )),
                };
                let Some(msg) = conn.session().complete(cid, how) else { return };
                // A client that stopped reading must not hold up closing.
                tokio::select! {
                    _ = conn.closing.cancelled() => {}
                    _ = conn.reply(msg) => {}
                }
            }
            .in_current_span(),
        );
    }

    fn refusal(&self, e: &RegistryError) -> Box<RemoteError> {
        self.error(ErrorKind::Application, e.refusal().type_name(), e.to_string())
    }

    /// Encodes a whole listing as a plain list of entries, refusing with
    /// [`Refusal::ReplyTooLarge`] if it needs more than one page.
    fn whole(&self, func: &str, page: Page) -> Result<Bytes, Box<RemoteError>> {
        if page.more {
            let paged = if func == FIND { FIND_PAGE } else { LIST_PAGE };
            return Err(self.error(
                ErrorKind::Application,
                Refusal::ReplyTooLarge.type_name(),
                format!("the result of `{func}` does not fit one reply; call `{paged}` to page through it"),
            ));
        }
        self.encode(func, &page.entries)
    }

    fn decode<T: DeserializeOwned>(&self, func: &str, args: &[u8]) -> Result<T, Box<RemoteError>> {
        rmp_serde::from_slice(args).map_err(|e| self.bad_args(func, &e))
    }

    /// Decodes the empty argument tuple, encoded as nil (`()`) or an empty array.
    fn decode_unit(&self, func: &str, args: &[u8]) -> Result<(), Box<RemoteError>> {
        match rmp_serde::from_slice::<()>(args) {
            Ok(()) => Ok(()),
            Err(e) => match rmp_serde::from_slice::<[u8; 0]>(args) {
                Ok(_) => Ok(()),
                Err(_) => Err(self.bad_args(func, &e)),
            },
        }
    }

    fn bad_args(&self, func: &str, e: &rmp_serde::decode::Error) -> Box<RemoteError> {
        let mut err = self.error(
            ErrorKind::BadArguments,
            "arbiter::BadArguments",
            format!("cannot decode the arguments of `{func}`: {e}"),
        );
        err.causes.push(e.to_string());
        err
    }

    fn encode<T: Serialize + ?Sized>(&self, func: &str, value: &T) -> Result<Bytes, Box<RemoteError>> {
        rmp_serde::to_vec(value).map(Bytes::from).map_err(|e| {
            self.error(
                ErrorKind::Protocol,
                "arbiter::EncodeError",
                format!("cannot encode the result of `{func}`: {e}"),
            )
        })
    }
}
