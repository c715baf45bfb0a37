//! Wire protocol and channels for the `actor` runtime.
//!
//! This crate knows nothing of actors. It provides:
//!
//! - [`wire`]: the versioned message set every actor speaks ([`Msg`]),
//! - [`batch`]: many stream items in one frame ([`BatchBuilder`]),
//! - [`codec`]: length-prefixed msgpack frames with a maximum size checked before
//!   any allocation ([`FrameCodec`]),
//! - [`channel`]: a framed, batching, split-able [`Channel`] over any byte stream
//!   (TCP, Unix sockets, TLS),
//! - [`addr`]: `tcp://host:port` and `unix:///path` addresses ([`Addr`]),
//! - [`exposure`]: the rule that plaintext listeners stay on this host
//!   ([`check_exposure`]),
//! - [`handshake`]: the hello exchange that checks protocol versions and proves
//!   possession of a shared secret without sending it ([`connect`], [`accept`]),
//! - [`session`]: the call protocol of one channel as a state machine without
//!   IO ([`Session`]), with per-call flow control ([`flow`]),
//! - [`secret_file`]: the per-user secret a tree uses when no token is set,
//! - [`listener`]: a listener with a deep accept backlog ([`Listener`]),
//! - [`admission`]: per-listener caps on handshakes and connections
//!   ([`Admission`]),
//! - [`accept_log`]: escaped, rate-limited logging of refused connections,
//! - [`liveness`]: TCP keepalive so a vanished peer is detected within a bound,
//! - [`escape`]: peer-supplied text made safe for logs ([`Escaped`]),
//! - [`spin`]: readiness of channel sockets, for the runtime's low-latency
//!   mode that polls briefly before sleeping,
//! - [`stream`]: the connected byte streams channels run over ([`Stream`]),
//! - [`trace`]: the W3C trace context a call carries ([`TraceContext`]),
//! - [`tls`]: mutual TLS from PEM files ([`TlsConfig`]; the actor handshake over
//!   it is [`connect_tls`]).
#![warn(missing_docs, unreachable_pub)]

pub mod accept_log;
pub mod addr;
pub mod admission;
pub mod batch;
pub mod channel;
pub mod codec;
pub mod escape;
pub mod exposure;
pub mod fd_limit;
pub mod flow;
pub mod handshake;
pub mod listener;
pub mod liveness;
mod read_pool;
pub mod secret_file;
pub mod session;
pub mod spin;
pub mod stream;
// Without the `tls` feature, a stand-in with the same API in which no
// `TlsConfig` can be made, so callers need no cfgs of their own.
#[cfg_attr(not(feature = "tls"), path = "tls_disabled.rs")]
pub mod tls;
pub mod trace;
pub mod wire;

pub use addr::{Addr, AddrParseError};
pub use admission::{Admission, AdmissionConfig, Refusal};
pub use batch::{BatchBuilder, next_item};
pub use channel::{Channel, ChannelConfig, ChannelError, Receiver, Sender};
pub use codec::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, WRITE_SHARED_AT, bin_payload};
pub use escape::{Escaped, escape_for_log};
pub use exposure::{ExposureError, check_exposure};
pub use flow::{FlowControl, MIN_ITEM_COST, Unclaimed, item_cost};
pub use handshake::{
    Arranged, Auth, HandshakeConfig, HandshakeError, MIN_SECRET_LEN, Nonce, PRE_AUTH_MAX_FRAME, Secret,
    SecretError, accept, accept_on, connect, connect_arranged, connect_on, connect_tls,
};
pub use listener::Listener;
pub use secret_file::{ENV_TOKEN_FILE, default_token_path, load_or_create_token};
pub use session::{
    CallApp, CallStart, Completion, End, Incoming, Limits, Session, SessionError, Side, StartOptions,
    Violation,
};
pub use stream::Stream;
pub use tls::{ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, TlsConfig, TlsError};
pub use trace::{SpanId, TraceContext, TraceId, TraceParseError};
pub use wire::{BytesItem, CallId, CallKind, ErrorKind, Msg, PROTOCOL_VERSION, RemoteError, Uid};
