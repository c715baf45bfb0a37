//! A typed client of the arbiter.
//!
//! One connection, one background reader task routing replies to their callers by
//! call id, so many requests may be in flight at once. The client registers and
//! unregisters *itself*: the arbiter takes the name from the uid this client
//! authenticated with ([`HandshakeConfig::uid`]). Entries it registered vanish
//! when the client is dropped or its connection breaks.
//!
//! Every request but [`ArbiterClient::wait_for`] is bounded by the client's
//! request timeout ([`DEFAULT_REQUEST_TIMEOUT`] unless set with
//! [`ArbiterClient::with_request_timeout`]), so an arbiter that stops answering
//! is an error ([`ClientError::Timeout`]), never a hang.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actor_transport::{
    Addr, CallApp, CallId, CallKind, CallStart, ChannelError, End, ErrorKind, HandshakeConfig,
    HandshakeError, Incoming, Limits, Receiver, RemoteError, Secret, Sender, Session, SessionError, Side,
    TlsConfig, Uid, connect, connect_tls,
};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::{Entry, Page, Refusal};
use crate::{FIND_PAGE, LIST_PAGE, REGISTER, UNREGISTER, WAIT_FOR};

/// How long a request to the arbiter may take unless configured otherwise
/// ([`ArbiterClient::with_request_timeout`]): 5 s, far above a healthy arbiter's
/// sub-millisecond answers, short enough that a root does not seem to hang.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting or the handshake failed: nothing listens there, the token was
    /// refused, or the peer does not speak the actor protocol.
    #[error("cannot connect to the arbiter at {addr}: {source}{}", hint(source))]
    Handshake {
        /// Where we tried to connect.
        addr: Addr,
        /// What went wrong.
        #[source]
        source: Box<HandshakeError>,
    },
    /// The peer speaks the actor protocol but does not serve the arbiter's
    /// functions (it is an ordinary actor), or did not answer like an arbiter.
    #[error("{addr} is not an arbiter: {reason}")]
    NotAnArbiter {
        /// The peer's address.
        addr: Addr,
        /// What gave it away.
        reason: String,
    },
    /// The connection to the arbiter is closed or broke; pending and later
    /// requests fail with this.
    #[error("lost the connection to the arbiter at {addr}: {reason}")]
    Disconnected {
        /// The arbiter's address.
        addr: Addr,
        /// Why the connection ended.
        reason: String,
    },
    /// The arbiter answered with an error (unknown function, bad arguments, or a
    /// refusal such as an invalid name).
    #[error("the arbiter answered with an error: {0}")]
    Remote(Box<RemoteError>),
    /// The request's arguments could not be encoded.
    #[error("cannot encode the arguments of `{func}`: {source}")]
    Encode {
        /// The function called.
        func: &'static str,
        /// The encoder's error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// The arbiter's reply did not decode into the expected type.
    #[error("cannot decode the arbiter's reply to `{func}`: {source}")]
    Decode {
        /// The function called.
        func: &'static str,
        /// The decoder's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// The arbiter did not answer a request in time (see
    /// [`ArbiterClient::with_request_timeout`]). The request is cancelled.
    #[error("the arbiter at {addr} did not answer `{request}` within {timeout:?}")]
    Timeout {
        /// The arbiter's address.
        addr: Addr,
        /// The function called, e.g. [`crate::REGISTER`].
        request: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The arbiter broke the protocol (an unexpected message or reply).
    #[error("protocol violation by the arbiter at {addr}: {reason}")]
    Protocol {
        /// The arbiter's address.
        addr: Addr,
        /// What it did.
        reason: String,
    },
}

impl ClientError {
    /// The arbiter's refusal, if this is one: a registration of a uid another
    /// connection owns ([`Refusal::Claimed`]), a length or count past a limit,
    /// and so on. `None` for any other error.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ClientError::Remote(e) if e.kind == ErrorKind::Application => {
                Refusal::from_type_name(&e.type_name)
            }
            _ => None,
        }
    }
}

fn hint(e: &HandshakeError) -> &'static str {
    match e {
        HandshakeError::Channel(_)
        | HandshakeError::Unexpected { .. }
        | HandshakeError::Closed
        | HandshakeError::Timeout(_) => " (is an arbiter listening there?)",
        _ => "",
    }
}

/// A request's application side in the session: where its reply goes.
struct Slot(Option<oneshot::Sender<End>>);

impl CallApp for Slot {
    fn started(&mut self, _: Bytes) {}
    fn item(&mut self, _: Bytes) {}
    fn stopped(&mut self) {}
    fn credit(&mut self) {}
    fn cancel_requested(&mut self, _: &Uid) {}
    fn ended(mut self, end: End) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(end);
        }
    }
}

struct Shared {
    /// This client's uid, the source of the errors it sends.
    me: Uid,
    session: Mutex<Session<Slot>>,
    closed: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Session<Slot>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection to an arbiter.
///
/// Requests take `&self` and may run concurrently (share the client in an `Arc`).
/// Dropping the client closes the connection, which removes its registration.
pub struct ArbiterClient {
    addr: Addr,
    uid: Uid,
    arbiter: Uid,
    sender: Sender,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    request_timeout: Duration,
}

impl std::fmt::Debug for ArbiterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArbiterClient")
            .field("addr", &self.addr)
            .field("uid", &self.uid)
            .field("arbiter", &self.arbiter)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ArbiterClient {
    /// Connects to the arbiter at `addr` and authenticates as `handshake.uid`,
    /// proving `secret` if given. The connect and handshake are bounded by
    /// `handshake.timeout`, so a peer that is not an arbiter (or says nothing) is
    /// an error, never a hang.
    ///
    /// # Errors
    ///
    /// [`ClientError::Handshake`] if the connection cannot be made, the arbiter
    /// refuses the token, or the peer does not complete the handshake in time.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub async fn connect(
        addr: &Addr,
        handshake: &HandshakeConfig,
        secret: Option<&Secret>,
    ) -> Result<ArbiterClient, ClientError> {
        ArbiterClient::connect_with(addr, handshake, secret, None).await
    }

    /// As [`ArbiterClient::connect`], over mutual TLS when `tls` is given (the
    /// arbiter's certificate is verified against the CA of `tls` for the host of
    /// `addr`, and ours is presented); plain [`ArbiterClient::connect`] when `None`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Handshake`] as for [`ArbiterClient::connect`], and also when
    /// the TLS handshake fails: an arbiter whose certificate does not verify, one
    /// that does not speak TLS, or one that refuses our certificate.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub async fn connect_with(
        addr: &Addr,
        handshake: &HandshakeConfig,
        secret: Option<&Secret>,
        tls: Option<&TlsConfig>,
    ) -> Result<ArbiterClient, ClientError> {
        let connected = match tls {
            Some(tls) => connect_tls(addr, handshake, secret, tls).await,
            None => connect(addr, handshake, secret).await,
        };
        let (channel, arbiter) =
            connected.map_err(|e| ClientError::Handshake { addr: addr.clone(), source: Box::new(e) })?;
        let (sender, receiver) = channel.split();
        let session = Session::new(Side::Connector, handshake.uid.clone(), Limits::default());
        let shared = Arc::new(Shared {
            me: handshake.uid.clone(),
            session: Mutex::new(session),
            closed: CancellationToken::new(),
        });
        let reader = tokio::spawn(read_loop(shared.clone(), sender.clone(), receiver, arbiter.clone()));
        tracing::debug!(%addr, %arbiter, "connected to the arbiter");
        Ok(ArbiterClient {
            addr: addr.clone(),
            uid: handshake.uid.clone(),
            arbiter,
            sender,
            shared,
            reader,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Bounds every later request but [`ArbiterClient::wait_for`] by `timeout`
    /// (default [`DEFAULT_REQUEST_TIMEOUT`]); a paged listing bounds each page.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The bound on each request ([`ArbiterClient::with_request_timeout`]).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The arbiter's address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// This client's uid: the identity it registers as.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// The arbiter's uid, from the handshake.
    pub fn arbiter_uid(&self) -> &Uid {
        &self.arbiter
    }

    /// Whether the connection has closed or broken; requests fail from then on.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves once the connection has closed or broken.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Registers this client's uid under its name at `addr` (the address of its
    /// listener). Registering again over the same client replaces the address.
    ///
    /// # Errors
    ///
    /// [`ClientError::Remote`] if the arbiter refuses ([`ClientError::refusal`]
    /// tells why: [`Refusal::Claimed`] if another connection registered this uid,
    /// a name, id or address too long, a registry full),
    /// [`ClientError::Disconnected`] if the connection is gone,
    /// [`ClientError::Timeout`] if the arbiter does not answer in time.
    pub async fn register(&self, addr: &Addr) -> Result<(), ClientError> {
        self.call(REGISTER, &(addr,)).await
    }

    /// Removes this client's entry; succeeds also if there was none.
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`] if the connection is gone,
    /// [`ClientError::Remote`] if the arbiter refuses ([`Refusal::Claimed`]:
    /// another connection registered this uid) or reports an error,
    /// [`ClientError::Timeout`] if it does not answer in time.
    pub async fn unregister(&self) -> Result<(), ClientError> {
        self.call(UNREGISTER, &()).await
    }

    /// The entries registered under `name`, sorted by uid; empty if none. Asks
    /// page by page ([`ArbiterClient::find_page`]), so any number of entries
    /// arrives; entries registered or removed meanwhile may or may not appear.
    ///
    /// # Errors
    ///
    /// As [`ArbiterClient::find_page`].
    pub async fn find(&self, name: &str) -> Result<Vec<Entry>, ClientError> {
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let after = entries.last().map(|e| e.uid.id.as_str());
            let page = self.find_page(name, after, 0).await?;
            let more = self.check_page(FIND_PAGE, &page, entries.last())?;
            entries.extend(page.entries);
            if !more {
                return Ok(entries);
            }
        }
    }

    /// One page of the entries under `name`: those whose id follows `after`
    /// (from the first with `None`), at most `limit` (0: as many as fit).
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`] if the connection is gone,
    /// [`ClientError::Timeout`] if the arbiter does not answer in time,
    /// [`ClientError::Remote`] or [`ClientError::Decode`] if it answers badly.
    pub async fn find_page(&self, name: &str, after: Option<&str>, limit: u32) -> Result<Page, ClientError> {
        self.call(FIND_PAGE, &(name, after, limit)).await
    }

    /// Waits until at least one entry is registered under `name` and returns the
    /// entries (at once if there is one). It may wait forever: bound it with a
    /// timeout. Dropping the future cancels the wait in the arbiter.
    ///
    /// # Errors
    ///
    /// As [`ArbiterClient::find`].
    pub async fn wait_for(&self, name: &str) -> Result<Vec<Entry>, ClientError> {
        self.call_unbounded(WAIT_FOR, &(name,)).await
    }

    /// Every entry, sorted by name then uid, asked page by page
    /// ([`ArbiterClient::list_page`]) so any number of entries arrives; not a
    /// snapshot: entries registered or removed meanwhile may or may not appear.
    ///
    /// # Errors
    ///
    /// As [`ArbiterClient::list_page`].
    pub async fn list(&self) -> Result<Vec<Entry>, ClientError> {
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let after = entries.last().map(|e| &e.uid);
            let page = self.list_page(after, 0).await?;
            let more = self.check_page(LIST_PAGE, &page, entries.last())?;
            entries.extend(page.entries);
            if !more {
                return Ok(entries);
            }
        }
    }

    /// One page of all entries: those after the uid `after` (from the first
    /// with `None`), at most `limit` (0: as many as fit).
    ///
    /// # Errors
    ///
    /// As [`ArbiterClient::find_page`].
    pub async fn list_page(&self, after: Option<&Uid>, limit: u32) -> Result<Page, ClientError> {
        self.call(LIST_PAGE, &(after, limit)).await
    }

    /// Whether another page follows `page`; an error if the arbiter's pages do
    /// not advance (which would make the listing loop forever).
    fn check_page(
        &self,
        func: &'static str,
        page: &Page,
        cursor: Option<&Entry>,
    ) -> Result<bool, ClientError> {
        let advances = match (page.entries.first(), cursor) {
            (Some(first), Some(cursor)) => first.uid > cursor.uid,
            (Some(_), None) => true,
            (None, _) => !page.more,
        };
        if !advances {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                reason: format!("a page of `{func}` does not advance past the previous one"),
            });
        }
        Ok(page.more)
    }

    /// Closes the connection after the queued requests are written; the arbiter
    /// then drops this client's registration. Never fails.
    pub async fn close(self) {
        self.sender.close().await;
    }

    fn disconnected(&self, reason: String) -> ClientError {
        ClientError::Disconnected { addr: self.addr.clone(), reason }
    }

    /// As [`ArbiterClient::call_unbounded`], failing with [`ClientError::Timeout`]
    /// (and cancelling the call) after the request timeout.
    async fn call<A, R>(&self, func: &'static str, args: &A) -> Result<R, ClientError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let timeout = self.request_timeout;
        tokio::time::timeout(timeout, self.call_unbounded(func, args))
            .await
            .unwrap_or_else(|_| Err(ClientError::Timeout { addr: self.addr.clone(), request: func, timeout }))
    }

    /// Calls `func` with `args` and decodes its result; dropping the future sends
    /// `Cancel` for the call.
    async fn call_unbounded<A, R>(&self, func: &'static str, args: &A) -> Result<R, ClientError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let args = rmp_serde::to_vec(args).map_err(|source| ClientError::Encode { func, source })?;
        let (tx, rx) = oneshot::channel();
        let opened = self.shared.lock().open(func, CallKind::Single, args.into(), Slot(Some(tx)));
        let (cid, start) = opened.map_err(|e| match e {
            SessionError::Closed(reason) => self.disconnected(reason),
            other => self.disconnected(other.to_string()),
        })?;
        let guard = CallGuard { client: self, cid };
        if let Err(e) = self.sender.send(&start).await {
            drop(guard);
            return Err(match e {
                ChannelError::Closed { reason } => self.disconnected(reason),
                other => self.disconnected(format!("cannot send the request: {other}")),
            });
        }
        let reply = rx.await;
        // The call has left the session: the guard has nothing to cancel.
        drop(guard);
        match reply {
            Ok(End::Returned(value)) => {
                rmp_serde::from_slice(&value).map_err(|source| ClientError::Decode { func, source })
            }
            Ok(End::Failed(e)) => Err(ClientError::Remote(e)),
            Ok(End::Closed(reason)) => Err(self.disconnected(reason)),
            Ok(other) => Err(ClientError::Protocol {
                addr: self.addr.clone(),
                reason: format!("call {cid} of `{func}` ended unexpectedly: {other:?}"),
            }),
            Err(_) => Err(self.disconnected("the reader task stopped".into())),
        }
    }
}

impl Drop for ArbiterClient {
    fn drop(&mut self) {
        // The sender closes the connection as it drops; the reader would see the
        // arbiter close its side, but need not wait for that.
        self.reader.abort();
    }
}

/// Gives up on a request whose future is dropped before its reply arrived:
/// the call leaves the session and the arbiter is asked to cancel it.
struct CallGuard<'a> {
    client: &'a ArbiterClient,
    cid: CallId,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let cancel = self.client.shared.lock().abandon(self.cid);
        if let Some(cancel) = cancel {
            if let Err(e) = self.client.sender.send_now(&cancel) {
                tracing::debug!(cid = self.cid, error = %e, "cannot send Cancel to the arbiter");
            }
        }
    }
}

async fn read_loop(shared: Arc<Shared>, sender: Sender, mut receiver: Receiver, arbiter: Uid) {
    let reason = loop {
        let msg = match receiver.recv().await {
            Ok(Some(msg)) => msg,
            Ok(None) => break "the arbiter closed the connection".to_owned(),
            Err(e) => break format!("the connection broke: {e}"),
        };
        let handled = shared.lock().handle(msg);
        match handled {
            Ok(None) => {}
            // An arbiter calls nothing on its clients; a polite refusal keeps
            // the connection, and the registration, alive.
            Ok(Some(Incoming::Call(CallStart { cid, func, .. }))) => {
                let error = RemoteError::new(
                    shared.me.clone(),
                    ErrorKind::UnknownFunction,
                    "arbiter::UnknownFunction",
                    format!("an arbiter client serves no functions (asked for `{func}`)"),
                );
                let refusal = shared.lock().refuse(cid, error);
                let _ = sender.send_now(&refusal);
            }
            Ok(Some(Incoming::CancelActor { .. } | Incoming::CancelActorAck)) => {
                tracing::debug!(%arbiter, "ignoring an actor control message from the arbiter");
            }
            Err(violation) => {
                let reason = format!("protocol violation by the arbiter: {violation}");
                tracing::warn!(%arbiter, %reason, "closing the connection to the arbiter");
                break reason;
            }
        }
    };
    tracing::debug!(%arbiter, %reason, "arbiter connection ended");
    shared.lock().close(&reason);
    shared.closed.cancel();
}

/// Checks that an arbiter answers at `addr`: connects, handshakes and asks for
/// one page of its entries, all within `handshake.timeout`. Returns the arbiter's
/// uid.
///
/// # Errors
///
/// [`ClientError::Handshake`] if nothing speaking the actor protocol answers
/// (connection refused, an HTTP server, garbage, silence, a refused token),
/// [`ClientError::NotAnArbiter`] if an actor answers that does not serve the
/// arbiter's functions, [`ClientError::Timeout`] if the listing does not come back
/// in time.
pub async fn probe(
    addr: &Addr,
    handshake: &HandshakeConfig,
    secret: Option<&Secret>,
) -> Result<Uid, ClientError> {
    let client =
        ArbiterClient::connect(addr, handshake, secret).await?.with_request_timeout(handshake.timeout);
    match client.list_page(None, 1).await {
        Ok(_) => Ok(client.arbiter.clone()),
        Err(ClientError::Remote(e))
            if matches!(e.kind, ErrorKind::UnknownFunction | ErrorKind::NotExposed) =>
        {
            Err(ClientError::NotAnArbiter { addr: addr.clone(), reason: e.message })
        }
        Err(ClientError::Decode { source, .. }) => Err(ClientError::NotAnArbiter {
            addr: addr.clone(),
            reason: format!("its answer to `{LIST_PAGE}` is not a page of entries: {source}"),
        }),
        Err(e) => Err(e),
    }
}

/// Whether an arbiter answers at `addr` (see [`probe`]); `false` on any failure.
pub async fn is_arbiter(addr: &Addr, handshake: &HandshakeConfig, secret: Option<&Secret>) -> bool {
    probe(addr, handshake, secret).await.is_ok()
}
