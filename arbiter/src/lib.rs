//! The arbiter: the name registry of the actor runtime.
//!
//! Actors register `(uid, address)` entries under their own names, and anyone can
//! look names up or wait for one to appear. The arbiter speaks the actors' own wire
//! protocol ([`actor_transport::Msg`]), so a portal can call it like any actor:
//! every operation is a single-result call ([`actor_transport::CallKind::Single`])
//! of one of the functions named by the constants below, with its arguments as a
//! msgpack-encoded tuple and its result as a msgpack document.
//!
//! | function            | arguments         | result            |
//! |---------------------|-------------------|-------------------|
//! | [`REGISTER`]        | `(addr: Addr,)`   | `()`              |
//! | [`UNREGISTER`]      | `()`              | `()`              |
//! | [`FIND`]            | `(name: String,)` | `Vec<Entry>`      |
//! | [`FIND_PAGE`]       | `(name: String, after: Option<String>, limit: u32)` | [`Page`] |
//! | [`WAIT_FOR`]        | `(name: String,)` | `Vec<Entry>`      |
//! | [`LIST`]            | `()`              | `Vec<Entry>`      |
//! | [`LIST_PAGE`]       | `(after: Option<Uid>, limit: u32)` | [`Page`] |
//!
//! The name an actor registers under is always the name of the uid it
//! authenticated with in the handshake: an actor can register only itself. An
//! entry belongs to the connection that registered it: another connection
//! claiming the same uid can neither replace nor remove it (refused with
//! [`Refusal::Claimed`]), and entries registered over a connection are removed
//! when that connection closes or breaks. A [`WAIT_FOR`] call may be cancelled
//! with `Msg::Cancel`, answered by `Msg::CancelAck`.
//!
//! Everything is bounded: names (255 bytes), uid ids (64), addresses (1 KiB),
//! entries, waiters and connections ([`Limits`]), frames ([`server::MAX_FRAME`]). Replies
//! listing entries never exceed a frame: [`FIND`] and [`LIST`] refuse with
//! [`Refusal::ReplyTooLarge`] when their result needs more than one page, and
//! [`FIND_PAGE`] / [`LIST_PAGE`] page through any number of entries
//! ([`ArbiterClient::find`] and [`ArbiterClient::list`] do so). A refusal comes
//! back as an `Application` remote error whose `type_name` is
//! [`Refusal::type_name`] ([`ClientError::refusal`]).
//!
//! - [`registry`]: the state, without sockets ([`Registry`]),
//! - [`server`]: the accept loop and per-connection protocol ([`serve`],
//!   [`spawn_embedded`]),
//! - [`client`]: a typed client ([`ArbiterClient`]).
#![warn(missing_docs)]

pub mod client;
pub mod registry;
pub mod server;

pub use client::{ArbiterClient, ClientError, is_arbiter, probe};
pub use registry::{ConnId, Entry, Limits, Page, Refusal, Registry, RegistryError};
pub use server::{
    ArbiterConfig, ArbiterHandle, serve, serve_registry, serve_registry_tls, serve_tls, spawn_embedded,
    spawn_embedded_tls,
};

/// Registers the caller (its handshake uid, under `uid.name`) at an address, owned
/// by this connection; refused with [`Refusal::Claimed`] if another live
/// connection registered that uid. Arguments `(addr: Addr,)`, result `()`.
pub const REGISTER: &str = "arbiter::register";
/// Removes the caller's own entry; succeeds if there was none, refused with
/// [`Refusal::Claimed`] if another connection registered the caller's uid.
/// Arguments `()`, result `()`.
pub const UNREGISTER: &str = "arbiter::unregister";
/// Looks a name up. Arguments `(name: String,)`, result `Vec<Entry>` (maybe
/// empty); refused with [`Refusal::ReplyTooLarge`] if the entries do not fit one
/// page (use [`FIND_PAGE`]).
pub const FIND: &str = "arbiter::find";
/// Waits until a name has at least one entry. Arguments `(name: String,)`, result
/// `Vec<Entry>`: the first page of the name's entries (never empty). Cancellable
/// with `Msg::Cancel`.
pub const WAIT_FOR: &str = "arbiter::wait_for";
/// Lists every entry. Arguments `()`, result `Vec<Entry>` sorted by name then uid;
/// refused with [`Refusal::ReplyTooLarge`] if they do not fit one page (use
/// [`LIST_PAGE`]).
pub const LIST: &str = "arbiter::list";
/// One page of a name's entries: those whose id follows `after` (from the first
/// with `None`), at most `limit` (0 means the maximum). Arguments
/// `(name: String, after: Option<String>, limit: u32)`, result [`Page`].
pub const FIND_PAGE: &str = "arbiter::find_page";
/// One page of all entries: those after the uid `after` (from the first with
/// `None`), at most `limit` (0 means the maximum). Arguments
/// `(after: Option<Uid>, limit: u32)`, result [`Page`].
pub const LIST_PAGE: &str = "arbiter::list_page";

/// Every function the arbiter serves.
pub const FUNCTIONS: [&str; 7] = [REGISTER, UNREGISTER, FIND, FIND_PAGE, WAIT_FOR, LIST, LIST_PAGE];

/// The address an arbiter listens on unless configured otherwise.
pub const DEFAULT_ADDR: &str = "tcp://127.0.0.1:1616";
/// Environment variable naming the arbiter's address.
pub const ENV_ADDR: &str = "ACTOR_ARBITER";
/// Environment variable holding the cluster token, as hex.
pub const ENV_TOKEN: &str = "ACTOR_TOKEN";
/// Environment variable holding the log filter (a `tracing` `EnvFilter`).
pub const ENV_LOG: &str = "ACTOR_LOG";
